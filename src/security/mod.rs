//! Media security (S8, S9): the media password policy ([`password`]), the
//! media certificate — generated self-signed or imported PKI ([`cert`]) — and
//! its PKCS#12 form ([`pfx`]) carried in the media as `_SMSTSMediaPFX`:
//! upper-case hex of a PKCS#12 file whose password is the first 31 characters
//! of `_SMSMediaGuid` (`reference/configmgr.md`).
//!
//! Nothing here prints, and no error or `Debug` output holds a password, a
//! passphrase or key material.

pub mod cert;
pub mod password;
pub mod pfx;

use crate::recipe::secret::{Secret, SecretError};
use crate::recipe::{Certificate, Recipe};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub use crate::configmgr::pfx_password;
/// The media variable holding the certificate.
pub const PFX_VARIABLE: &str = crate::configmgr::var::MEDIA_PFX;
/// The recipe key a planned `_SMSTSMediaPFX` comes from (`VarValue::MediaPfx`).
pub const PFX_SOURCE: &str = "security.certificate";

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("a self-signed media certificate needs `security.password`: its private key is derived from that secret and protected by it")]
    NeedsPassword,
    #[error("{0}")]
    WeakPassword(String),
    #[error("{0}")]
    Pfx(pfx::PfxError),
    #[error("the .pfx holds no private key; export the certificate with its private key")]
    NoPrivateKey,
    #[error("no certificate in the .pfx belongs to its private key")]
    KeyMismatch,
    #[error("the .pfx private key is not RSA (algorithm {0}); ConfigMgr media certificates use RSA keys")]
    NotRsa(String),
    #[error("cannot create the media certificate: {0}")]
    Create(String),
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{key}: {source}")]
    Secret { key: String, source: SecretError },
    #[error("{key}: not a date")]
    Date { key: String },
}

fn date(key: &str, s: &str) -> Result<i64, SecurityError> {
    crate::units::parse_date(s).ok_or_else(|| SecurityError::Date { key: key.into() })
}

/// Opens the recipe's PKI certificate (`security.certificate.pki`) with its
/// password. `dir` is the recipe's folder.
pub fn import_pki(r: &Recipe, dir: &Path) -> Result<Option<cert::Chain>, SecurityError> {
    import_pki_of(r.security.certificate.as_ref(), dir)
}

/// [`import_pki`] of the `security.certificate` section `c`.
fn import_pki_of(
    c: Option<&Certificate>,
    dir: &Path,
) -> Result<Option<cert::Chain>, SecurityError> {
    let Some(p) = c.and_then(|c| c.pki.as_ref()) else {
        return Ok(None);
    };
    let password = p
        .password
        .resolve(dir)
        .map_err(|source| SecurityError::Secret {
            key: "security.certificate.pki.password".into(),
            source,
        })?;
    let path = dir.join(&p.file);
    let bytes = crate::fsutil::read_small(&path, crate::fsutil::SMALL_FILE_MAX)
        .map_err(|e| SecurityError::Io(path.clone(), e))?;
    cert::import(&bytes, password.expose()).map(Some)
}

/// Where the self-signed certificate's RSA key comes from, given its seed:
/// [`cert::derive_key`], or the build cache in front of it.
pub type KeySource<'a> = &'a dyn Fn(&[u8; 32]) -> Result<rsa::RsaPrivateKey, SecurityError>;

/// The media certificate chain of `c`.
fn chain(
    c: &Certificate,
    i: &PfxInputs,
    media_password: Option<&Secret>,
    keys: KeySource,
) -> Result<cert::Chain, SecurityError> {
    if let Some(s) = &c.self_signed {
        let pw = media_password.ok_or(SecurityError::NeedsPassword)?;
        let from = date("security.certificate.self_signed.valid_from", &s.valid_from)?;
        let until = date(
            "security.certificate.self_signed.valid_until",
            &s.valid_until,
        )?;
        let seed = cert::derive_seed(pw.expose(), i.digest);
        let key = keys(&seed)?;
        return cert::self_signed_with(i.media_name, i.site_code, from, until, &seed, key);
    }
    import_pki_of(Some(c), i.dir)?
        .ok_or_else(|| SecurityError::Create("no certificate in the recipe".into()))
}

/// Eight deterministic salt bytes for one part of the PKCS#12 file. They need
/// no secrecy: the PFX password sits beside the PFX in Variables.dat.
fn salt(digest: &[u8; 32], purpose: &str) -> [u8; 8] {
    let h = Sha256::new()
        .chain_update(digest)
        .chain_update(b"pfx salt ")
        .chain_update(purpose.as_bytes())
        .finalize();
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[..8]);
    s
}

/// What the media certificate's PKCS#12 file is made from.
pub struct PfxInputs<'a> {
    /// `security.certificate`.
    pub certificate: Option<&'a Certificate>,
    /// The media name (the self-signed certificate's subject).
    pub media_name: &'a str,
    pub site_code: &'a str,
    /// The recipe's folder (a PKI `.pfx` is relative to it).
    pub dir: &'a Path,
    /// The recipe digest: the seed of the salts and the derived key.
    pub digest: &'a [u8; 32],
    /// The value of `_SMSMediaGuid`, whose first 31 characters protect the file.
    pub media_guid: Option<&'a str>,
}

/// The value of `_SMSTSMediaPFX`: upper-case hex of the PKCS#12 file holding
/// the media certificate (chain) and its private key, protected with the
/// first 31 characters of `_SMSMediaGuid`.
pub fn media_pfx_hex(
    i: &PfxInputs,
    media_password: Option<&Secret>,
    keys: KeySource,
) -> Result<String, SecurityError> {
    let c = i
        .certificate
        .ok_or_else(|| SecurityError::Create("no certificate in the recipe".into()))?;
    let guid = i
        .media_guid
        .ok_or_else(|| SecurityError::Create("the plan has no _SMSMediaGuid".into()))?;
    let chain = chain(c, i, media_password, keys)?;
    let salts = pfx::Salts {
        certs: salt(i.digest, "certificates"),
        key: salt(i.digest, "key"),
        mac: salt(i.digest, "mac"),
    };
    let bytes = pfx::write(&chain.certs, &chain.key, &pfx_password(guid), &salts)
        .map_err(SecurityError::Pfx)?;
    Ok(bytes.iter().map(|b| format!("{b:02X}")).collect())
}

/// Applies the password policy at build time: an error for a weak password,
/// or — with `allow_weak` — the loud warning to report.
pub fn enforce_password(
    password: Option<&Secret>,
    allow_weak: bool,
) -> Result<Option<String>, SecurityError> {
    let Some(why) = password.and_then(|p| password::weakness(p.expose())) else {
        return Ok(None);
    };
    if allow_weak {
        Ok(Some(format!(
            "WEAK MEDIA PASSWORD accepted because of --allow-weak-password: {why}; anyone holding the media can recover it by offline guessing"
        )))
    } else {
        Err(SecurityError::WeakPassword(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_password_is_refused_or_warned_without_echo() {
        let weak = Secret::for_test("short-pw");
        let e = enforce_password(Some(&weak), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shorter than 12"), "{e}");
        assert!(!e.contains("short-pw"), "{e}");
        let w = enforce_password(Some(&weak), true).unwrap().unwrap();
        assert!(
            w.contains("WEAK MEDIA PASSWORD") && !w.contains("short-pw"),
            "{w}"
        );
        let strong = Secret::for_test("a long enough media passphrase");
        assert!(enforce_password(Some(&strong), false).unwrap().is_none());
        assert!(enforce_password(None, false).unwrap().is_none());
    }

    #[test]
    fn salts_differ_by_purpose() {
        let d = [1u8; 32];
        assert_ne!(salt(&d, "key"), salt(&d, "mac"));
        assert_eq!(salt(&d, "key"), salt(&d, "key"));
    }
}
