//! Media certificates: the self-signed one we generate, and the PKI one we
//! import. Either way the result is a certificate chain (the media
//! certificate first) and its PKCS#8 private key, written into the media as
//! `_SMSTSMediaPFX`.
//!
//! **Determinism without a public key.** The self-signed key pair and serial
//! derive from a seed = PBKDF2-HMAC-SHA256(media password, "mediabuild media
//! certificate v1" ‖ recipe digest, [`KDF_ITERATIONS`]). The recipe digest
//! alone is public (it is in every manifest), so a key derived only from it
//! would be known to anyone who reads the recipe; the media password is the
//! secret seed. It is never written out, and it is exactly the secret that
//! already guards the key inside the media (Variables.dat), so the key is as
//! secret as the media, no less. The slow KDF keeps the certificate — which
//! the site sees — from being a fast oracle for guessing the password. The
//! RSA key generation is that of the pinned `rsa` crate (Cargo.lock): another
//! version could turn the same seed into another key.

use super::pfx::{self, PfxError};
use super::SecurityError;
use der::asn1::{GeneralizedTime, ObjectIdentifier as Oid};
use der::referenced::OwnedToRef;
use der::{Decode, Encode};
use rand_chacha::rand_core::SeedableRng;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use std::str::FromStr;
use std::time::Duration;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// PBKDF2 iterations of the certificate seed (OWASP's figure for PBKDF2-HMAC-SHA256).
pub const KDF_ITERATIONS: u32 = 600_000;
/// RSA modulus size of the self-signed media certificate.
pub const RSA_BITS: usize = 2048;

const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const CLIENT_AUTH: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.2");

/// A certificate chain (media certificate first) and its PKCS#8 DER key.
pub struct Chain {
    pub certs: Vec<Vec<u8>>,
    pub key: Vec<u8>,
    /// Validity of the media certificate, in days since 1970-01-01 (floor).
    pub not_before_days: i64,
    pub not_after_days: i64,
    /// Subject of the media certificate, for messages.
    pub subject: String,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Chain {{ subject: {:?}, certs: {}, key: <redacted> }}",
            self.subject,
            self.certs.len()
        )
    }
}

/// The secret seed of the self-signed certificate (see the module doc).
pub fn derive_seed(password: &str, recipe_digest: &[u8; 32]) -> [u8; 32] {
    let mut salt = b"mediabuild media certificate v1".to_vec();
    salt.extend_from_slice(recipe_digest);
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, KDF_ITERATIONS, &mut out);
    out
}

/// A 32-byte value for one `purpose`, derived from the secret `seed`.
pub(crate) fn sub(seed: &[u8; 32], purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(purpose.as_bytes());
    h.finalize().into()
}

fn create(e: impl std::fmt::Display) -> SecurityError {
    SecurityError::Create(e.to_string())
}

/// `days` since 1970-01-01 plus `secs` as an X.509 time (UTCTime before 2050).
fn time(days: i64, secs: u64) -> Result<Time, SecurityError> {
    let days = u64::try_from(days).map_err(|_| create("dates before 1970 are not supported"))?;
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(days * 86_400 + secs))
        .map_err(create)?;
    Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
}

/// The RSA key of the self-signed certificate of `seed` (the slow part:
/// prime search, ~0.3–1 s; the build cache keeps it, encrypted, see
/// `crate::cache::keys`).
pub fn derive_key(seed: &[u8; 32]) -> Result<RsaPrivateKey, SecurityError> {
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(sub(seed, "rsa key"));
    RsaPrivateKey::new(&mut rng, RSA_BITS).map_err(create)
}

/// Generates the self-signed media certificate valid from the first second
/// of `from_days` to the last second of `until_days` (UTC).
pub fn self_signed(
    media_name: &str,
    site_code: &str,
    from_days: i64,
    until_days: i64,
    seed: &[u8; 32],
) -> Result<Chain, SecurityError> {
    self_signed_with(
        media_name,
        site_code,
        from_days,
        until_days,
        seed,
        derive_key(seed)?,
    )
}

/// [`self_signed`] with the key of `seed` already at hand ([`derive_key`]).
pub fn self_signed_with(
    media_name: &str,
    site_code: &str,
    from_days: i64,
    until_days: i64,
    seed: &[u8; 32],
    key: RsaPrivateKey,
) -> Result<Chain, SecurityError> {
    let mut serial = sub(seed, "serial");
    // 16 bytes, positive, first byte non-zero: a fixed-length DER INTEGER.
    serial[0] = (serial[0] & 0x7F) | 0x40;
    let subject_text =
        format!("CN=mediabuild media certificate,OU={media_name},O=ConfigMgr site {site_code}");
    let subject = Name::from_str(&subject_text).map_err(create)?;
    let validity = Validity {
        not_before: time(from_days, 0)?,
        not_after: time(until_days, 86_399)?,
    };
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).map_err(create)?;
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let mut b = CertificateBuilder::new(
        Profile::Leaf {
            issuer: subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: true,
        },
        SerialNumber::new(&serial[..16]).map_err(create)?,
        validity,
        subject,
        spki,
        &signer,
    )
    .map_err(create)?;
    b.add_extension(&ExtendedKeyUsage(vec![CLIENT_AUTH]))
        .map_err(create)?;
    let cert = b
        .build::<rsa::pkcs1v15::Signature>()
        .map_err(create)?
        .to_der()
        .map_err(create)?;
    let key = key.to_pkcs8_der().map_err(create)?.as_bytes().to_vec();
    Ok(Chain {
        certs: vec![cert],
        key,
        not_before_days: from_days,
        not_after_days: until_days,
        subject: subject_text,
    })
}

fn days(t: &Time) -> i64 {
    t.to_unix_duration().as_secs() as i64 / 86_400
}

/// Imports a PKCS#12 file: it must hold an RSA private key and the
/// certificate of that key; other certificates (the CA chain) come along.
pub fn import(bytes: &[u8], password: &str) -> Result<Chain, SecurityError> {
    let contents = pfx::read(bytes, password).map_err(SecurityError::Pfx)?;
    let Some(key_der) = contents.keys.first() else {
        return Err(SecurityError::NoPrivateKey);
    };
    let info = pkcs8::PrivateKeyInfo::from_der(key_der)
        .map_err(|e| SecurityError::Pfx(PfxError::Format(format!("private key: {e}"))))?;
    if info.algorithm.oid != RSA_ENCRYPTION {
        return Err(SecurityError::NotRsa(info.algorithm.oid.to_string()));
    }
    let public = RsaPrivateKey::from_pkcs8_der(key_der)
        .map_err(|e| SecurityError::Pfx(PfxError::Format(format!("RSA private key: {e}"))))?
        .to_public_key();
    let mut parsed = Vec::new();
    for der in &contents.certs {
        let c = Certificate::from_der(der)
            .map_err(|e| SecurityError::Pfx(PfxError::Format(format!("certificate: {e}"))))?;
        parsed.push((der.clone(), c));
    }
    let pos = parsed
        .iter()
        .position(|(_, c)| {
            RsaPublicKey::try_from(c.tbs_certificate.subject_public_key_info.owned_to_ref())
                .is_ok_and(|p| p == public)
        })
        .ok_or(SecurityError::KeyMismatch)?;
    let (leaf_der, leaf) = parsed.remove(pos);
    let v = &leaf.tbs_certificate.validity;
    let mut certs = vec![leaf_der];
    certs.extend(parsed.into_iter().map(|(d, _)| d));
    Ok(Chain {
        not_before_days: days(&v.not_before),
        not_after_days: days(&v.not_after),
        subject: leaf.tbs_certificate.subject.to_string(),
        certs,
        key: key_der.clone(),
    })
}

/// A problem with a certificate's validity period, relative to `today`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateProblem {
    /// Ends on or before it starts (an error).
    Inverted,
    /// Has already expired (an error).
    Expired,
    /// Starts after today (an error: the media would be refused until then).
    NotYetValid,
    /// Expires within 30 days (a warning).
    ExpiresSoon,
}

/// The problem of a validity period `from..=until` (days) seen on `today`, if any.
pub fn date_problem(from: i64, until: i64, today: i64) -> Option<DateProblem> {
    if until <= from {
        Some(DateProblem::Inverted)
    } else if until < today {
        Some(DateProblem::Expired)
    } else if from > today {
        Some(DateProblem::NotYetValid)
    } else if until < today + 30 {
        Some(DateProblem::ExpiresSoon)
    } else {
        None
    }
}

/// `YYYY-MM-DD` of a day number, for messages.
pub fn ymd(days: i64) -> String {
    let (y, m, d, ..) = crate::units::civil(days * 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Reads an X.509 certificate file, DER or PEM (`-----BEGIN CERTIFICATE-----`),
/// and returns its DER bytes, checked to parse as a certificate.
pub fn read_certificate_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = crate::fsutil::read_small(path, crate::fsutil::SMALL_FILE_MAX)
        .map_err(|e| format!("cannot read file: {e}"))?;
    certificate_der(&bytes)
}

/// The DER of a certificate given as DER or PEM bytes.
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let text =
            std::str::from_utf8(bytes).map_err(|_| "not a DER or PEM certificate".to_string())?;
        let (label, der) = der::pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        if label != "CERTIFICATE" {
            return Err(format!("a PEM `{label}`, not a CERTIFICATE"));
        }
        der
    } else {
        bytes.to_vec()
    };
    Certificate::from_der(&der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(der)
}

/// A certificate as people recognise it: subject and SHA-1 thumbprint (the
/// console's and certlm's "Thumbprint").
pub fn describe(der: &[u8]) -> String {
    use sha1::Digest as _;
    let thumb = crate::ids::hex(&sha1::Sha1::digest(der)).to_ascii_uppercase();
    match Certificate::from_der(der) {
        Ok(c) => format!("{} (thumbprint {thumb})", c.tbs_certificate.subject),
        Err(_) => format!("not a certificate ({} bytes, SHA-1 {thumb})", der.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_date;

    #[test]
    fn self_signed_is_deterministic_and_importable() {
        let seed = [5u8; 32];
        let (f, u) = (
            parse_date("2025-11-28").unwrap(),
            parse_date("2035-11-27").unwrap(),
        );
        let a = self_signed("demo-wtg", "PS1", f, u, &seed).unwrap();
        let b = self_signed("demo-wtg", "PS1", f, u, &seed).unwrap();
        assert_eq!(a.certs, b.certs);
        assert_eq!(a.key, b.key);
        let other = self_signed("demo-wtg", "PS1", f, u, &[6u8; 32]).unwrap();
        assert_ne!(a.key, other.key, "another seed, another key");

        let c = Certificate::from_der(&a.certs[0]).unwrap();
        let v = &c.tbs_certificate.validity;
        assert_eq!(v.not_before.to_string(), "2025-11-28T00:00:00Z");
        assert_eq!(v.not_after.to_string(), "2035-11-27T23:59:59Z");
        assert_eq!(c.tbs_certificate.issuer, c.tbs_certificate.subject);

        // Through a PFX and back: the key matches the certificate.
        let salts = pfx::Salts {
            certs: [1; 8],
            key: [2; 8],
            mac: [3; 8],
        };
        let bytes = pfx::write(&a.certs, &a.key, "0123456789ABCDEF", &salts).unwrap();
        let back = import(&bytes, "0123456789ABCDEF").unwrap();
        assert_eq!(back.certs, a.certs);
        assert_eq!((back.not_before_days, back.not_after_days), (f, u));
        assert!(back.subject.contains("mediabuild media certificate"));
        assert!(!format!("{back:?}").contains("key: ["));
    }

    #[test]
    fn import_refuses_a_mismatched_key() {
        let f = parse_date("2025-01-01").unwrap();
        let a = self_signed("a", "PS1", f, f + 400, &[1u8; 32]).unwrap();
        let b = self_signed("b", "PS1", f, f + 400, &[2u8; 32]).unwrap();
        let salts = pfx::Salts {
            certs: [1; 8],
            key: [2; 8],
            mac: [3; 8],
        };
        let bytes = pfx::write(&a.certs, &b.key, "pw", &salts).unwrap();
        assert!(matches!(
            import(&bytes, "pw"),
            Err(SecurityError::KeyMismatch)
        ));
    }

    #[test]
    fn date_problems() {
        let t = 20_000;
        assert_eq!(date_problem(t, t, t), Some(DateProblem::Inverted));
        assert_eq!(date_problem(t - 90, t - 1, t), Some(DateProblem::Expired));
        assert_eq!(
            date_problem(t + 1, t + 400, t),
            Some(DateProblem::NotYetValid)
        );
        assert_eq!(
            date_problem(t - 1, t + 29, t),
            Some(DateProblem::ExpiresSoon)
        );
        assert_eq!(date_problem(t, t + 30, t), None);
        assert_eq!(ymd(parse_date("2026-02-28").unwrap()), "2026-02-28");
    }
}
