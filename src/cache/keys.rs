//! The self-signed media certificate's RSA key, kept encrypted (`keys/`).
//!
//! The key derives from a secret seed (PBKDF2 of the media password and the
//! recipe digest, `crate::security::cert`); finding its primes is the
//! slowest step of a rebuild that changed no recipe (~0.3–1 s). The cache
//! keeps the PKCS#8 DER of the key, and nothing of it in clear:
//!
//! * the entry is named after a value derived from the seed, so the name
//!   says nothing about the password without the 600 000-round KDF;
//! * the body is AES-256-CBC of the DER under a key derived from the seed,
//!   followed by an HMAC-SHA256 of the ciphertext under another: only the
//!   holder of the seed can read it, and an entry that was not written with
//!   this seed (damaged, swapped, forged) fails the MAC and is dropped;
//! * the entry key names the versions of the crates that turn the seed into
//!   the key (`build.rs`), so another binary never takes a key it would not
//!   have derived itself.
//!
//! The key is only ever as secret as the media: the media carry it in
//! Variables.dat under the same password.

use super::{Cache, Key};
use crate::security::cert::{self, RSA_BITS};
use crate::security::SecurityError;
use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::Sha256;

const TAG: usize = 32;
/// The crates that derive the key from the seed, as `build.rs` found them.
const KEYGEN: &str = env!("MEDIABUILD_KEYGEN_CRATES");

fn entry_key(seed: &[u8; 32]) -> Key {
    let id = cert::sub(seed, "cache entry name v1");
    Key::new(
        "keys",
        format!(
            "rsa1\0{}\0{RSA_BITS}\0{KEYGEN}\0mediabuild {}",
            crate::ids::hex(&id),
            env!("CARGO_PKG_VERSION")
        ),
    )
}

fn mac(seed: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(&cert::sub(seed, "cache mac key v1"))
        .expect("HMAC takes any key length")
}

fn cipher_key_iv(seed: &[u8; 32]) -> ([u8; 32], [u8; 16]) {
    let iv = cert::sub(seed, "cache iv v1");
    let mut v = [0u8; 16];
    v.copy_from_slice(&iv[..16]);
    (cert::sub(seed, "cache encryption key v1"), v)
}

/// The body of the entry for `key` under `seed`.
fn seal(seed: &[u8; 32], key: &RsaPrivateKey) -> Option<Vec<u8>> {
    let der = key.to_pkcs8_der().ok()?;
    let (k, iv) = cipher_key_iv(seed);
    let mut body = cbc::Encryptor::<aes::Aes256>::new(&k.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(der.as_bytes());
    let mut m = mac(seed);
    m.update(&body);
    body.extend_from_slice(&m.finalize().into_bytes());
    Some(body)
}

/// The key in `body`, when it was sealed with `seed` and is a whole key.
fn open(seed: &[u8; 32], body: &[u8]) -> Option<RsaPrivateKey> {
    let (ct, tag) = body.split_at(body.len().checked_sub(TAG)?);
    let mut m = mac(seed);
    m.update(ct);
    m.verify_slice(tag).ok()?;
    let (k, iv) = cipher_key_iv(seed);
    let der = cbc::Decryptor::<aes::Aes256>::new(&k.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ct)
        .ok()?;
    let key = RsaPrivateKey::from_pkcs8_der(&der).ok()?;
    (key.n().bits() == RSA_BITS && key.validate().is_ok()).then_some(key)
}

/// The RSA key of `seed`: from the cache when it holds a good entry,
/// otherwise derived (and stored). A bad entry is dropped.
pub fn rsa_key(cache: Option<&Cache>, seed: &[u8; 32]) -> Result<RsaPrivateKey, SecurityError> {
    let Some(cache) = cache.filter(|_| !KEYGEN.is_empty()) else {
        return cert::derive_key(seed);
    };
    let k = entry_key(seed);
    if let Some(body) = cache.get(&k) {
        if let Some(key) = open(seed, &body) {
            return Ok(key);
        }
        cache.reject(&k);
    }
    let key = cert::derive_key(seed)?;
    if let Some(body) = seal(seed, &key) {
        cache.put(&k, &body);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::super::local::entry_path;
    use super::*;

    #[test]
    fn the_key_comes_back_only_for_its_seed_and_never_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), 1 << 30).unwrap();
        let seed = [7u8; 32];
        let fresh = cert::derive_key(&seed).unwrap();
        let a = rsa_key(Some(&cache), &seed).unwrap();
        assert_eq!(a, fresh);
        let path = entry_path(dir.path(), &entry_key(&seed));
        let stored = std::fs::read(&path).unwrap();
        // No part of the key's DER is in the entry.
        let der = fresh.to_pkcs8_der().unwrap();
        for w in der.as_bytes().chunks(16).filter(|w| w.len() == 16) {
            assert!(
                !stored.windows(16).any(|s| s == w),
                "key bytes in clear in the cache entry"
            );
        }
        // Served from the cache: the same key.
        let hits = cache.summary();
        assert_eq!(rsa_key(Some(&cache), &seed).unwrap(), fresh);
        assert_ne!(hits, cache.summary());
        // Another seed neither finds nor opens this entry.
        assert!(open(&[8u8; 32], &seal(&seed, &fresh).unwrap()).is_none());
        assert_ne!(entry_key(&seed).text, entry_key(&[8u8; 32]).text);
    }

    #[test]
    fn a_damaged_or_forged_entry_is_dropped_and_the_key_derived_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), 1 << 30).unwrap();
        let seed = [9u8; 32];
        let fresh = rsa_key(Some(&cache), &seed).unwrap();
        // A well-formed cache entry (its own checksum is right) whose body
        // was not sealed with this seed: the MAC refuses it.
        let mut body = seal(&seed, &fresh).unwrap();
        body[3] ^= 1;
        cache.put(&entry_key(&seed), &body);
        assert_eq!(rsa_key(Some(&cache), &seed).unwrap(), fresh);
        let good = std::fs::read(entry_path(dir.path(), &entry_key(&seed))).unwrap();
        assert_eq!(
            open(&seed, &cache.get(&entry_key(&seed)).unwrap()).as_ref(),
            Some(&fresh),
            "the entry was rewritten"
        );
        // Truncated on disk: the cache's own check drops it.
        std::fs::write(
            entry_path(dir.path(), &entry_key(&seed)),
            &good[..good.len() - 5],
        )
        .unwrap();
        assert_eq!(rsa_key(Some(&cache), &seed).unwrap(), fresh);
    }

    /// The same round trip through a store that is not the cache folder:
    /// stored sealed, served, a damaged entry dropped and the key derived
    /// again; and the entry is one that never leaves the machine.
    #[test]
    fn the_key_round_trips_through_any_store() {
        let mem = super::super::memory::MemStore::default();
        let cache = Cache::with_store(Box::new(mem.clone()));
        let seed = [11u8; 32];
        let fresh = rsa_key(Some(&cache), &seed).unwrap();
        assert_eq!(mem.kinds_put(), vec!["keys"]);
        assert!(!entry_key(&seed).may_leave_machine());
        let hits = cache
            .counters
            .hits
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(rsa_key(Some(&cache), &seed).unwrap(), fresh);
        assert_eq!(
            cache
                .counters
                .hits
                .load(std::sync::atomic::Ordering::Relaxed),
            hits + 1
        );
        assert!(mem.damage(&entry_key(&seed)));
        assert_eq!(rsa_key(Some(&cache), &seed).unwrap(), fresh);
        assert_eq!(
            cache
                .counters
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(mem.kinds_put(), vec!["keys", "keys"], "stored again");
    }
}
