//! PKCS#12 (.pfx) reading and writing: just what a media certificate needs.
//!
//! **Reading** (an imported PKI certificate) accepts what Windows and OpenSSL
//! write: DER, password integrity (HMAC with SHA-1/SHA-256/SHA-384/SHA-512),
//! bags encrypted with PBES2 (PBKDF2 + AES-CBC or DES-EDE3-CBC) or the legacy
//! PKCS#12 schemes (SHA-1 + 3-key 3DES, SHA-1 + 40-bit RC2), plain or shrouded
//! key bags, X.509 certificate bags. Anything else is refused by name.
//!
//! **Writing** (`_SMSTSMediaPFX`) uses the legacy profile every Windows since
//! XP imports — SHA-1 + 3DES for the certificates and the key, HMAC-SHA-1 —
//! because WinPE 5 (Windows 8.1) cannot import AES-protected PFX files. That
//! is no weakening: the PFX password is the first 31 characters of
//! `_SMSMediaGuid`, which sits in the same Variables.dat; the real protection
//! is the media password. Salts come from the caller, so the bytes are
//! deterministic.

use cms::content_info::{CmsVersion, ContentInfo};
use cms::encrypted_data::EncryptedData;
use cms::enveloped_data::EncryptedContentInfo;
use der::asn1::{Any, ObjectIdentifier as Oid, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence};
use hmac::{Hmac, Mac};
use pkcs12::cert_type::CertBag;
use pkcs12::digest_info::DigestInfo;
use pkcs12::kdf::{derive_key_utf8, Pkcs12KeyType};
use pkcs12::mac_data::MacData;
use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pkcs12PbeParams};
use pkcs12::pfx::{Pfx, Version};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;

const ID_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.6");
const PBES2: Oid = Oid::new_unwrap("1.2.840.113549.1.5.13");
const PBE_SHA1_3DES: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.3");
const PBE_SHA1_RC2_40: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.6");
const KEY_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.1");
const SHROUDED_KEY_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.2");
const CERT_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.3");
const X509_CERT: Oid = Oid::new_unwrap("1.2.840.113549.1.9.22.1");
const LOCAL_KEY_ID: Oid = Oid::new_unwrap("1.2.840.113549.1.9.21");
const SHA1_OID: Oid = Oid::new_unwrap("1.3.14.3.2.26");
const SHA256_OID: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384_OID: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512_OID: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");

/// Iterations of the key derivations we write (OpenSSL's and Windows' order of magnitude).
pub const ITERATIONS: i32 = 2048;

/// Why a PKCS#12 file cannot be read. Never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PfxError {
    #[error("not a PKCS#12 (.pfx) file: {0}")]
    Format(String),
    #[error("wrong password (the file's integrity check fails with it)")]
    WrongPassword,
    #[error("unsupported PKCS#12 feature: {0}")]
    Unsupported(String),
}

fn format(e: der::Error) -> PfxError {
    PfxError::Format(e.to_string())
}

/// `SafeBag` (RFC 7292 §4.2). Own type: `pkcs12::safe_bag::SafeBag` does not
/// decode what it encodes.
#[derive(Clone, Debug, Sequence)]
struct Bag {
    bag_id: Oid,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    bag_value: Any,
    bag_attributes: Option<SetOfVec<Attribute>>,
}

/// What a PKCS#12 file holds: DER certificates and PKCS#8 DER private keys, in file order.
#[derive(Default)]
pub struct Contents {
    pub certs: Vec<Vec<u8>>,
    pub keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Contents {{ certs: {}, keys: <{} redacted> }}",
            self.certs.len(),
            self.keys.len()
        )
    }
}

/// Reads a DER PKCS#12 file protected by `password`.
pub fn read(bytes: &[u8], password: &str) -> Result<Contents, PfxError> {
    let pfx = Pfx::from_der(bytes).map_err(format)?;
    if pfx.version != Version::V3 {
        return Err(PfxError::Format("version is not 3".into()));
    }
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(PfxError::Unsupported(format!(
            "public-key integrity mode (content type {})",
            pfx.auth_safe.content_type
        )));
    }
    let auth = pfx
        .auth_safe
        .content
        .decode_as::<OctetString>()
        .map_err(format)?;
    if let Some(mac) = &pfx.mac_data {
        verify_mac(mac, password, auth.as_bytes())?;
    }
    let mut out = Contents::default();
    for ci in Vec::<ContentInfo>::from_der(auth.as_bytes()).map_err(format)? {
        let safe = if ci.content_type == ID_DATA {
            ci.content
                .decode_as::<OctetString>()
                .map_err(format)?
                .into_bytes()
        } else if ci.content_type == ID_ENCRYPTED_DATA {
            let ed = ci.content.decode_as::<EncryptedData>().map_err(format)?;
            let eci = ed.enc_content_info;
            let ct = eci
                .encrypted_content
                .ok_or_else(|| PfxError::Format("encrypted data without content".into()))?;
            decrypt(&eci.content_enc_alg, password, ct.as_bytes())?
        } else {
            return Err(PfxError::Unsupported(format!(
                "content type {} (only data and encryptedData)",
                ci.content_type
            )));
        };
        for bag in Vec::<Bag>::from_der(&safe).map_err(format)? {
            let value = bag.bag_value.to_der().map_err(format)?;
            if bag.bag_id == CERT_BAG {
                let cb = CertBag::from_der(&value).map_err(format)?;
                if cb.cert_id == X509_CERT {
                    out.certs.push(cb.cert_value.into_bytes());
                }
            } else if bag.bag_id == SHROUDED_KEY_BAG {
                let epki = EncryptedPrivateKeyInfo::from_der(&value).map_err(format)?;
                out.keys.push(decrypt(
                    &epki.encryption_algorithm,
                    password,
                    epki.encrypted_data.as_bytes(),
                )?);
            } else if bag.bag_id == KEY_BAG {
                out.keys.push(value);
            }
        }
    }
    Ok(out)
}

/// HMAC over `data` with a key from the PKCS#12 KDF (RFC 7292 appendix B), for one digest.
macro_rules! pkcs12_hmac {
    ($d:ty, $password:expr, $salt:expr, $iter:expr, $data:expr) => {{
        let len = <$d as sha2::Digest>::output_size();
        let key = derive_key_utf8::<$d>($password, $salt, Pkcs12KeyType::Mac, $iter, len)
            .map_err(format)?;
        let mut m = <Hmac<$d> as Mac>::new_from_slice(&key)
            .map_err(|_| PfxError::Format("bad MAC key".into()))?;
        m.update($data);
        m.finalize().into_bytes().to_vec()
    }};
}

fn verify_mac(mac: &MacData, password: &str, data: &[u8]) -> Result<(), PfxError> {
    let alg = mac.mac.algorithm.oid;
    let (salt, iter) = (mac.mac_salt.as_bytes(), mac.iterations);
    let got = if alg == SHA1_OID {
        pkcs12_hmac!(Sha1, password, salt, iter, data)
    } else if alg == SHA256_OID {
        pkcs12_hmac!(Sha256, password, salt, iter, data)
    } else if alg == SHA384_OID {
        pkcs12_hmac!(Sha384, password, salt, iter, data)
    } else if alg == SHA512_OID {
        pkcs12_hmac!(Sha512, password, salt, iter, data)
    } else {
        return Err(PfxError::Unsupported(format!("MAC digest {alg}")));
    };
    if got.as_slice() == mac.mac.digest.as_bytes() {
        Ok(())
    } else {
        Err(PfxError::WrongPassword)
    }
}

fn decrypt(
    alg: &AlgorithmIdentifierOwned,
    password: &str,
    data: &[u8],
) -> Result<Vec<u8>, PfxError> {
    if alg.oid == PBES2 {
        let der = alg.to_der().map_err(format)?;
        let scheme = pkcs5::EncryptionScheme::try_from(der.as_slice())
            .map_err(|e| PfxError::Unsupported(format!("PBES2 parameters: {e}")))?;
        return scheme
            .decrypt(password.as_bytes(), data)
            .map_err(|_| PfxError::WrongPassword);
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or_else(|| PfxError::Format("encryption without parameters".into()))?
        .decode_as::<Pkcs12PbeParams>()
        .map_err(format)?;
    let salt = params.salt.as_bytes();
    if alg.oid == PBE_SHA1_3DES {
        use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
        let (key, iv) = pbe_key_iv(password, salt, params.iterations, 24)?;
        cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
            .map_err(|_| PfxError::Format("bad 3DES key".into()))?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(|_| PfxError::WrongPassword)
    } else if alg.oid == PBE_SHA1_RC2_40 {
        use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, InnerIvInit};
        let (key, iv) = pbe_key_iv(password, salt, params.iterations, 5)?;
        let rc2 = rc2::Rc2::new_with_eff_key_len(&key, 40);
        cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(rc2, &iv)
            .map_err(|_| PfxError::Format("bad RC2 IV".into()))?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(|_| PfxError::WrongPassword)
    } else {
        Err(PfxError::Unsupported(format!(
            "encryption {} (supported: PBES2, pbeWithSHAAnd3-KeyTripleDES-CBC, pbeWithSHAAnd40BitRC2-CBC)",
            alg.oid
        )))
    }
}

fn pbe_key_iv(
    password: &str,
    salt: &[u8],
    iter: i32,
    key_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), PfxError> {
    let key = derive_key_utf8::<Sha1>(password, salt, Pkcs12KeyType::EncryptionKey, iter, key_len)
        .map_err(format)?;
    let iv = derive_key_utf8::<Sha1>(password, salt, Pkcs12KeyType::Iv, iter, 8).map_err(format)?;
    Ok((key, iv))
}

fn encrypt_3des(
    password: &str,
    salt: &[u8],
    data: &[u8],
) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), PfxError> {
    use cbc::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    let (key, iv) = pbe_key_iv(password, salt, ITERATIONS, 24)?;
    let ct = cbc::Encryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
        .map_err(|_| PfxError::Format("bad 3DES key".into()))?
        .encrypt_padded_vec_mut::<Pkcs7>(data);
    let params = Pkcs12PbeParams {
        salt: OctetString::new(salt).map_err(format)?,
        iterations: ITERATIONS,
    };
    let alg = AlgorithmIdentifierOwned {
        oid: PBE_SHA1_3DES,
        parameters: Some(Any::encode_from(&params).map_err(format)?),
    };
    Ok((alg, ct))
}

/// Salts for one PKCS#12 file (certificates, key, MAC), chosen by the caller.
pub struct Salts {
    pub certs: [u8; 8],
    pub key: [u8; 8],
    pub mac: [u8; 8],
}

fn data_info(bytes: Vec<u8>) -> Result<ContentInfo, PfxError> {
    Ok(ContentInfo {
        content_type: ID_DATA,
        content: Any::encode_from(&OctetString::new(bytes).map_err(format)?).map_err(format)?,
    })
}

/// Writes a PKCS#12 file: `certs` (DER, the key's certificate first) and the
/// PKCS#8 DER `key`, both encrypted with SHA-1 + 3DES, HMAC-SHA-1 integrity.
pub fn write(
    certs: &[Vec<u8>],
    key: &[u8],
    password: &str,
    salts: &Salts,
) -> Result<Vec<u8>, PfxError> {
    use sha1::Digest;
    let first = certs
        .first()
        .ok_or_else(|| PfxError::Format("no certificate to write".into()))?;
    // localKeyId ties the key to its certificate: SHA-1 of the certificate, as OpenSSL does.
    let key_id = Attribute {
        oid: LOCAL_KEY_ID,
        values: SetOfVec::try_from(vec![Any::encode_from(
            &OctetString::new(Sha1::digest(first).to_vec()).map_err(format)?,
        )
        .map_err(format)?])
        .map_err(format)?,
    };
    let attrs = || SetOfVec::try_from(vec![key_id.clone()]).map_err(format);

    let mut cert_bags = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let cb = CertBag {
            cert_id: X509_CERT,
            cert_value: OctetString::new(c.clone()).map_err(format)?,
        };
        cert_bags.push(Bag {
            bag_id: CERT_BAG,
            bag_value: Any::encode_from(&cb).map_err(format)?,
            bag_attributes: if i == 0 { Some(attrs()?) } else { None },
        });
    }
    let (alg, ct) = encrypt_3des(password, &salts.certs, &cert_bags.to_der().map_err(format)?)?;
    let certs_info = ContentInfo {
        content_type: ID_ENCRYPTED_DATA,
        content: Any::encode_from(&EncryptedData {
            version: CmsVersion::V0,
            enc_content_info: EncryptedContentInfo {
                content_type: ID_DATA,
                content_enc_alg: alg,
                encrypted_content: Some(OctetString::new(ct).map_err(format)?),
            },
            unprotected_attrs: None,
        })
        .map_err(format)?,
    };

    let (alg, ct) = encrypt_3des(password, &salts.key, key)?;
    let epki = EncryptedPrivateKeyInfo {
        encryption_algorithm: alg,
        encrypted_data: OctetString::new(ct).map_err(format)?,
    };
    let key_bags = vec![Bag {
        bag_id: SHROUDED_KEY_BAG,
        bag_value: Any::encode_from(&epki).map_err(format)?,
        bag_attributes: Some(attrs()?),
    }];
    let key_info = data_info(key_bags.to_der().map_err(format)?)?;

    let auth = vec![certs_info, key_info].to_der().map_err(format)?;
    let mac = pkcs12_hmac!(Sha1, password, &salts.mac, ITERATIONS, &auth);
    let pfx = Pfx {
        version: Version::V3,
        auth_safe: data_info(auth)?,
        mac_data: Some(MacData {
            mac: DigestInfo {
                algorithm: AlgorithmIdentifierOwned {
                    oid: SHA1_OID,
                    parameters: Some(Any::null()),
                },
                digest: OctetString::new(mac).map_err(format)?,
            },
            mac_salt: OctetString::new(salts.mac.to_vec()).map_err(format)?,
            iterations: ITERATIONS,
        }),
    };
    pfx.to_der().map_err(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn salts() -> Salts {
        Salts {
            certs: [1; 8],
            key: [2; 8],
            mac: [3; 8],
        }
    }

    #[test]
    fn round_trip_and_wrong_password() {
        // Arbitrary DER blobs stand in for a certificate and a key here; the
        // format does not look inside them.
        let cert = OctetString::new(vec![7u8; 40]).unwrap().to_der().unwrap();
        let key = OctetString::new(vec![9u8; 50]).unwrap().to_der().unwrap();
        let bytes = write(std::slice::from_ref(&cert), &key, "pw-0123456789", &salts()).unwrap();
        let c = read(&bytes, "pw-0123456789").unwrap();
        assert_eq!(c.certs, vec![cert]);
        assert_eq!(c.keys, vec![key.clone()]);
        assert_eq!(read(&bytes, "other").unwrap_err(), PfxError::WrongPassword);
        // Deterministic: same inputs and salts, same bytes.
        assert_eq!(
            bytes,
            write(&[c.certs[0].clone()], &key, "pw-0123456789", &salts()).unwrap()
        );
        assert!(format!("{c:?}").contains("redacted"));
    }

    #[test]
    fn garbage_is_a_format_error() {
        assert!(matches!(read(b"hello", "x"), Err(PfxError::Format(_))));
    }
}
