//! Media variables and `SMS/data/Variables.dat` in ConfigMgr's format
//! (`reference/configmgr.md`, docs/configmgr.md): a 24-byte header, AES-128-CBC
//! (zero IV, PKCS#7, as CryptEncrypt with Final=TRUE pads) of UTF-16LE XML
//! ending in a UTF-16 NUL (counted in the header's plain length), key from
//! CryptDeriveKey(SHA-1) of the UTF-16LE password, then a 16-byte trailer
//! whose meaning is unknown — we write zeros. Why 16 and the NUL: the public
//! readers (PXEThief, pxethiefy) decrypt `raw[24:-8]` floored to 16 bytes and
//! cut the text at its last U+0000; they succeed on real media, and a real
//! prestaged file of 24,248 bytes is 24 + a multiple of 16. With an 8-byte
//! trailer the sizes disagree; with none, those readers would drop the last
//! block (and the NUL in it); 16 bytes satisfies both.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};

pub use crate::configmgr::DEFAULT_PASSWORD;

const MAGIC: u32 = 0xECED_0000;
const CALG_AES_128: u32 = 0x660E;
const HEADER: usize = 24;
const TRAILER: usize = 16;

type Enc = cbc::Encryptor<aes::Aes128>;
type Dec = cbc::Decryptor<aes::Aes128>;

/// One media variable. Values of secret variables are only held in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaVar {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

impl std::fmt::Debug for MediaVar {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let v = if self.secret {
            "<redacted>"
        } else {
            &self.value
        };
        write!(f, "{}={v}", self.name)
    }
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// CryptDeriveKey(CALG_SHA1 → CALG_AES_128) of the UTF-16LE password.
pub fn derive_key(password: &str) -> [u8; 16] {
    let d = Sha1::digest(utf16le(password));
    let mut b1 = [0x36u8; 64];
    let mut b2 = [0x5Cu8; 64];
    for (i, x) in d.iter().enumerate() {
        b1[i] ^= x;
        b2[i] ^= x;
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&Sha1::digest(b1)[..16]);
    key
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plaintext XML (as a Rust string; encoded to UTF-16LE for encryption).
pub fn xml(vars: &[MediaVar]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-16\"?><MediaVarList Version=\"4.00.5345.0000\">",
    );
    for v in vars {
        s.push_str(&format!(
            "<var name=\"{}\">{}</var>",
            escape(&v.name),
            escape(&v.value)
        ));
    }
    s.push_str("</MediaVarList>");
    s
}

/// The plaintext of Variables.dat: the XML in UTF-16LE, then a UTF-16 NUL.
pub fn plaintext(vars: &[MediaVar]) -> Vec<u8> {
    let mut p = utf16le(&xml(vars));
    p.extend_from_slice(&[0, 0]);
    p
}

/// Encrypts `vars` into the bytes of Variables.dat.
pub fn encode(vars: &[MediaVar], password: Option<&str>) -> Vec<u8> {
    encrypt_plain(&plaintext(vars), password.unwrap_or(DEFAULT_PASSWORD))
}

/// Encrypts a UTF-16LE plaintext with the Variables.dat framing.
pub fn encrypt_plain(plain: &[u8], password: &str) -> Vec<u8> {
    let key = derive_key(password);
    let ct = Enc::new(&key.into(), &[0u8; 16].into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    let mut out = Vec::with_capacity(HEADER + ct.len() + TRAILER);
    for v in [
        MAGIC,
        20,
        plain.len() as u32,
        ct.len() as u32,
        CALG_AES_128,
        0,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&ct);
    out.extend_from_slice(&[0u8; TRAILER]);
    out
}

/// Size of Variables.dat before secrets are known (each secret counted as 16 characters).
pub fn estimate_size(planned: &[super::PlannedVar]) -> u64 {
    let vars: Vec<MediaVar> = planned
        .iter()
        .map(|p| MediaVar {
            name: p.name.clone(),
            // A media certificate's PFX is a few KiB of hex; other secrets are short.
            value: match &p.value {
                super::VarValue::Literal(v) => v.clone(),
                super::VarValue::MediaPfx => "x".repeat(8192),
                super::VarValue::Secret { .. } => "x".repeat(16),
            },
            secret: p.literal().is_none(),
        })
        .collect();
    let plain = plaintext(&vars).len() as u64;
    (HEADER + TRAILER) as u64 + (plain / 16 + 1) * 16
}

/// PBKDF2 rounds of a secret variable's fingerprint: slow, so that a
/// manifest is no fast oracle for guessing a short secret (a PIN).
pub const FINGERPRINT_ROUNDS: u32 = 200_000;

/// The fingerprint of one media variable, as the manifest records it: values
/// are compared by it and never shown. A non-secret value gets
/// `sha256:` SHA-256(`name\0value`). A secret value gets `pbkdf2:`
/// PBKDF2-HMAC-SHA256 over `media password \0 value` (the password is empty
/// for media without one), salted with the site code, media name and variable
/// name, [`FINGERPRINT_ROUNDS`] rounds: keyed with the media password, the
/// fingerprint is no weaker than the media itself (Variables.dat is keyed by
/// that password), and the salt keeps it stable from one build of the same
/// media to the next, so `diff` sees a secret change (README: Inspect).
pub fn fingerprint(v: &MediaVar, password: Option<&str>, site: &str, media: &str) -> String {
    fingerprint_rounds(v, password, site, media, FINGERPRINT_ROUNDS)
}

fn fingerprint_rounds(
    v: &MediaVar,
    password: Option<&str>,
    site: &str,
    media: &str,
    rounds: u32,
) -> String {
    if !v.secret {
        let mut h = sha2::Sha256::new();
        sha2::Digest::update(&mut h, format!("{}\0{}", v.name, v.value).as_bytes());
        return format!("sha256:{}", crate::ids::hex(&sha2::Digest::finalize(h)));
    }
    let key = format!("{}\0{}", password.unwrap_or(""), v.value);
    let salt = format!(
        "mediabuild variable fingerprint v1\0{site}\0{media}\0{}",
        v.name
    );
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(key.as_bytes(), salt.as_bytes(), rounds, &mut out);
    format!("pbkdf2:{}", crate::ids::hex(&out))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a Variables.dat file (bad header)")]
    Header,
    #[error("cannot decrypt: wrong password or damaged file")]
    Decrypt,
}

/// Decrypts Variables.dat bytes to the XML text.
pub fn decode(bytes: &[u8], password: Option<&str>) -> Result<String, DecodeError> {
    if bytes.len() < HEADER {
        return Err(DecodeError::Header);
    }
    let word =
        |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap_or_default());
    let (plain_len, ct_len) = (word(2) as usize, word(3) as usize);
    if word(0) != MAGIC || word(4) != CALG_AES_128 || bytes.len() < HEADER + ct_len {
        return Err(DecodeError::Header);
    }
    let key = derive_key(password.unwrap_or(DEFAULT_PASSWORD));
    let pt = Dec::new(&key.into(), &[0u8; 16].into())
        .decrypt_padded_vec_mut::<Pkcs7>(&bytes[HEADER..HEADER + ct_len])
        .map_err(|_| DecodeError::Decrypt)?;
    if pt.len() != plain_len || pt.len() % 2 != 0 {
        return Err(DecodeError::Decrypt);
    }
    let mut units: Vec<u16> = pt
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    // The terminator (media written before it was known have none).
    while units.last() == Some(&0) {
        units.pop();
    }
    String::from_utf16(&units).map_err(|_| DecodeError::Decrypt)
}

/// Parses the XML back into (name, value) pairs.
pub fn parse_xml(xml: &str) -> Vec<(String, String)> {
    let unescape = |s: &str| {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
    };
    xml.split("<var name=\"")
        .skip(1)
        .filter_map(|part| {
            let (name, rest) = part.split_once("\">")?;
            let (value, _) = rest.split_once("</var>")?;
            Some((unescape(name), unescape(value)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(n: &str, v: &str) -> MediaVar {
        MediaVar {
            name: n.into(),
            value: v.into(),
            secret: false,
        }
    }

    #[test]
    fn round_trip_with_and_without_password() {
        let vars = vec![var("_SMSTSMediaType", "OEMMedia"), var("X", "a<b&\"c\"")];
        for pw in [None, Some("correct horse battery")] {
            let bytes = encode(&vars, pw);
            let xml = decode(&bytes, pw).unwrap();
            assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-16\"?>"));
            let back = parse_xml(&xml);
            assert_eq!(back[1], ("X".to_string(), "a<b&\"c\"".to_string()));
            assert_eq!(&bytes[bytes.len() - 16..], &[0u8; 16]);
            assert!(!xml.contains('\0'));
        }
        let bytes = encode(&vars, Some("right password"));
        assert_eq!(
            decode(&bytes, Some("wrong password")),
            Err(DecodeError::Decrypt)
        );
    }

    /// Vector computed independently with Python's `cryptography` (see
    /// tests/vectors/variables_dat.py): key derivation, AES-CBC, framing.
    #[test]
    fn matches_independent_vector() {
        let mut plain = utf16le("<?xml version=\"1.0\" encoding=\"utf-16\"?><MediaVarList><var name=\"A\">1</var></MediaVarList>");
        plain.extend_from_slice(&[0, 0]);
        let got = encrypt_plain(&plain, "Pa55word!Media");
        let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
        // The header's fixed words and the first AES block are those of the
        // vector before the terminator and the 16-byte trailer (wave 1).
        assert!(hex.starts_with("0000edec14000000"));
        assert_eq!(&hex[32..48], "0e66000000000000");
        assert_eq!(&hex[48..80], "a8b587fba12b9d9de9b22eb12283d7a6");
        assert_eq!(
            hex,
            include_str!("../../tests/vectors/variables_dat.hex").trim()
        );
        assert_eq!(
            derive_key("Pa55word!Media")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            include_str!("../../tests/vectors/variables_key.hex").trim()
        );
    }

    #[test]
    fn fingerprints_hide_values_and_see_changes() {
        // Few rounds here (unoptimized test builds are slow); the real count is checked below.
        let fingerprint =
            |v: &MediaVar, pw, site, media| fingerprint_rounds(v, pw, site, media, 1000);
        let plain = var("OSDComputerName", "WTG-01");
        let f = fingerprint(&plain, None, "PS1", "m");
        assert!(f.starts_with("sha256:") && !f.contains("WTG-01"));
        assert_ne!(
            f,
            fingerprint(&var("OSDComputerName", "WTG-02"), None, "PS1", "m")
        );
        let pin = MediaVar {
            name: "OSDBitLockerPIN".into(),
            value: "1234".into(),
            secret: true,
        };
        let a = fingerprint(&pin, Some("media pw"), "PS1", "m");
        assert!(a.starts_with("pbkdf2:"));
        // Stable for the same media, other for another password, media or value.
        assert_eq!(a, fingerprint(&pin, Some("media pw"), "PS1", "m"));
        assert_ne!(a, fingerprint(&pin, Some("other pw"), "PS1", "m"));
        assert_ne!(a, fingerprint(&pin, Some("media pw"), "PS1", "n"));
        let pin2 = MediaVar {
            value: "1235".into(),
            ..pin.clone()
        };
        assert_ne!(a, fingerprint(&pin2, Some("media pw"), "PS1", "m"));
        const { assert!(FINGERPRINT_ROUNDS >= 100_000) };
    }

    #[test]
    fn secret_values_are_redacted_in_debug() {
        let v = MediaVar {
            name: "OSDBitLockerPIN".into(),
            value: "s3cret".into(),
            secret: true,
        };
        assert!(!format!("{v:?}").contains("s3cret"));
    }
}
