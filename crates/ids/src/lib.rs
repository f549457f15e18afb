//! Identity without randomness: every GUID, serial and volume id derived from
//! the recipe digest (DESIGN.md §5; the digest itself and the build epoch are
//! the product's, in its recipe module).

#![deny(unsafe_code)]

use sha2::{Digest, Sha256};

/// Default build epoch when neither the recipe nor `SOURCE_DATE_EPOCH` sets one: 2000-01-01.
pub const DEFAULT_EPOCH: i64 = 946_684_800;

/// 16 bytes derived from the digest for one purpose (`"wim-guid"`, `"media-guid"`, …).
pub fn derive16(digest: &[u8; 32], purpose: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(digest);
    h.update(purpose.as_bytes());
    let out = h.finalize();
    let mut g = [0u8; 16];
    g.copy_from_slice(&out[..16]);
    // RFC 4122 variant, version 5-like (name-based, SHA) so it reads as a GUID.
    g[6] = (g[6] & 0x0F) | 0x50;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

/// `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, upper case.
pub fn guid_string(g: &[u8; 16]) -> String {
    let h: String = g.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Bytes of a hex string (either case); `None` if it is not hex.
pub fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
