//! The blob table ("lookup table"): one 50-byte entry per resource.
//!
//! Rules that readers enforce (reference §4): metadata entries come first in
//! image order (their position binds them to images), every hash appears
//! once (7-Zip refuses duplicates), no entry for empty content, and the
//! reference count equals the number of dentries naming the blob (7-Zip
//! warns otherwise). The table itself is always stored uncompressed.

use super::header::Reshdr;

/// Bytes per entry.
pub const ENTRY_SIZE: usize = 50;

/// One resource as the blob table lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    /// Where the resource is and how it is stored.
    pub reshdr: Reshdr,
    /// Number of dentries referring to it (1 for a metadata resource).
    pub refcnt: u32,
    /// SHA-1 of the uncompressed content.
    pub sha1: [u8; 20],
}

impl BlobEntry {
    /// The 50 on-disk bytes.
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..24].copy_from_slice(&self.reshdr.encode());
        b[24..26].copy_from_slice(&1u16.to_le_bytes()); // part number
        b[26..30].copy_from_slice(&self.refcnt.to_le_bytes());
        b[30..50].copy_from_slice(&self.sha1);
        b
    }
}

/// Serialises a whole table, entries in the given order.
pub fn encode_table(entries: &[BlobEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_SIZE);
    for e in entries {
        out.extend_from_slice(&e.encode());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_layout() {
        let e = BlobEntry {
            reshdr: Reshdr::raw(208, 5, 0),
            refcnt: 3,
            sha1: [0xAA; 20],
        };
        let b = e.encode();
        assert_eq!(&b[0..8], &[5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[8..16], &208u64.to_le_bytes());
        assert_eq!(&b[24..26], &[1, 0]);
        assert_eq!(&b[26..30], &3u32.to_le_bytes());
        assert_eq!(&b[30..], &[0xAA; 20]);
        assert_eq!(encode_table(&[e.clone(), e]).len(), 100);
    }
}
