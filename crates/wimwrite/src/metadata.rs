//! The image metadata resource: security block, root dentry and the child
//! list of every directory.
//!
//! Layout (reference §5): an empty security block (`total_length` 8, no
//! descriptors, every dentry's security id −1), the root dentry, an 8-byte
//! end marker, then each directory's children back to back followed by an
//! 8-byte zero marker, lists placed in directory pre-order exactly as wimlib
//! places them. 7-Zip adds up every dentry and marker it visits and rejects
//! the image unless they fill the resource exactly, so there are no gaps.
//! Dentries are 102 bytes + name + UTF-16 NUL, padded to 8 (never packed).

use super::tree::{NodeKind, Tree};

/// FILE_ATTRIBUTE_DIRECTORY.
pub const ATTR_DIRECTORY: u32 = 0x10;
/// FILE_ATTRIBUTE_ARCHIVE: what Windows gives a freshly written file and what
/// DISM captures; wimlib on Linux would write NORMAL (0x80), both are valid.
pub const ATTR_ARCHIVE: u32 = 0x20;

const DENTRY_FIXED: usize = 102;
const SECURITY_BLOCK: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0];
const END_MARKER: [u8; 8] = [0; 8];

/// FILETIME (100 ns since 1601-01-01 UTC) for Unix seconds, or None when it
/// falls outside the FILETIME range.
pub fn filetime_from_unix(secs: i64) -> Option<u64> {
    let ticks = i128::from(secs) * 10_000_000 + 116_444_736_000_000_000;
    u64::try_from(ticks).ok().filter(|&t| t < 1 << 63)
}

/// On-disk length of a dentry with `name_units` UTF-16 units.
pub fn dentry_len(name_units: usize) -> usize {
    let raw = if name_units == 0 {
        DENTRY_FIXED
    } else {
        DENTRY_FIXED + 2 * name_units + 2
    };
    (raw + 7) & !7
}

fn put_dentry(
    out: &mut Vec<u8>,
    name: &[u16],
    attributes: u32,
    subdir_offset: u64,
    time: u64,
    hash: &[u8; 20],
) {
    let len = dentry_len(name.len());
    let start = out.len();
    out.extend_from_slice(&(len as u64).to_le_bytes()); // 0x00 length
    out.extend_from_slice(&attributes.to_le_bytes()); // 0x08
    out.extend_from_slice(&u32::MAX.to_le_bytes()); // 0x0C security_id = -1
    out.extend_from_slice(&subdir_offset.to_le_bytes()); // 0x10
    out.extend_from_slice(&[0u8; 16]); // 0x18 unused_1, unused_2
    for _ in 0..3 {
        out.extend_from_slice(&time.to_le_bytes()); // 0x28 creation, access, write
    }
    out.extend_from_slice(hash); // 0x40 main hash
    out.extend_from_slice(&[0u8; 4]); // 0x54 padding before the 8-byte union
    out.extend_from_slice(&[0u8; 8]); // 0x58 hard link group / reparse
    out.extend_from_slice(&0u16.to_le_bytes()); // 0x60 extra streams
    out.extend_from_slice(&0u16.to_le_bytes()); // 0x62 short name bytes
    out.extend_from_slice(&((name.len() * 2) as u16).to_le_bytes()); // 0x64
    debug_assert_eq!(out.len() - start, DENTRY_FIXED);
    for &u in name {
        out.extend_from_slice(&u.to_le_bytes());
    }
    if !name.is_empty() {
        out.extend_from_slice(&[0, 0]); // NUL terminator, not counted
    }
    out.resize(start + len, 0);
}

/// Serialises the metadata resource. `file_hash(node)` gives each file's
/// SHA-1 (all zero for empty files); `time` is the FILETIME used for all
/// three timestamps of every entry.
pub fn build(tree: &Tree, time: u64, file_hash: &dyn Fn(usize) -> [u8; 20]) -> Vec<u8> {
    // Pass 1: where each directory's child list starts.
    let mut list_offset = vec![0u64; tree.nodes.len()];
    let mut cursor = (SECURITY_BLOCK.len() + dentry_len(0) + END_MARKER.len()) as u64;
    for &d in &tree.dirs {
        list_offset[d] = cursor;
        let list: usize = tree.nodes[d]
            .children
            .iter()
            .map(|&c| dentry_len(tree.nodes[c].name.len()))
            .sum();
        cursor += (list + END_MARKER.len()) as u64;
    }

    // Pass 2: bytes, in the same order.
    let mut out = Vec::with_capacity(cursor as usize);
    out.extend_from_slice(&SECURITY_BLOCK);
    put_dentry(
        &mut out,
        &[],
        ATTR_DIRECTORY,
        list_offset[0],
        time,
        &[0; 20],
    );
    out.extend_from_slice(&END_MARKER);
    for &d in &tree.dirs {
        debug_assert_eq!(out.len() as u64, list_offset[d]);
        for &c in &tree.nodes[d].children {
            let node = &tree.nodes[c];
            match node.kind {
                NodeKind::Dir { .. } => put_dentry(
                    &mut out,
                    &node.name,
                    ATTR_DIRECTORY,
                    list_offset[c],
                    time,
                    &[0; 20],
                ),
                NodeKind::File { .. } => {
                    put_dentry(&mut out, &node.name, ATTR_ARCHIVE, 0, time, &file_hash(c))
                }
            }
        }
        out.extend_from_slice(&END_MARKER);
    }
    debug_assert_eq!(out.len() as u64, cursor);
    out
}

#[cfg(test)]
mod tests {
    use super::super::tree;
    use super::super::{Content, EntryKind, WimEntry};
    use super::*;
    use sha1::{Digest, Sha1};
    use std::sync::Arc;

    #[test]
    fn dentry_lengths_match_reference_formula() {
        assert_eq!(dentry_len(0), 104);
        assert_eq!(dentry_len(1), 112);
        assert_eq!(dentry_len(4), 112);
        assert_eq!(dentry_len(5), 120);
        assert_eq!(dentry_len(9), 128);
    }

    #[test]
    fn filetime_conversion() {
        // 2024-01-01 00:00:00 UTC, reference §13.
        assert_eq!(
            filetime_from_unix(1_704_067_200),
            Some(0x01DA_3C45_7689_C000)
        );
        assert_eq!(filetime_from_unix(-11_644_473_600), Some(0));
        assert_eq!(filetime_from_unix(-11_644_473_601), None);
    }

    #[test]
    fn reproduces_reference_walkthrough_byte_for_byte() {
        // reference §13: /dir/hello.txt = "hello", ARCHIVE attribute, times
        // 0x01DA3C457689C000: 376 bytes, SHA-1 9978d5ca….
        let t = tree::build(&[WimEntry {
            path: "dir/hello.txt".into(),
            kind: EntryKind::File {
                size: 5,
                content: Content::Bytes(Arc::from(&b"hello"[..])),
            },
        }])
        .unwrap();
        let hello: [u8; 20] = Sha1::digest(b"hello").into();
        let m = build(&t, 0x01DA_3C45_7689_C000, &|_| hello);
        assert_eq!(m.len(), 376);
        let digest: [u8; 20] = Sha1::digest(&m).into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "9978d5ca77981e9a7d098395959d0a63e392d5e4");
        // Offsets from the walkthrough map.
        assert_eq!(&m[8 + 0x10..8 + 0x18], &120u64.to_le_bytes());
        assert_eq!(&m[120 + 0x10..120 + 0x18], &240u64.to_le_bytes());
    }

    #[test]
    fn empty_directory_gets_its_own_end_marker() {
        let t = tree::build(&[WimEntry {
            path: "e".into(),
            kind: EntryKind::Dir,
        }])
        .unwrap();
        let m = build(&t, 0, &|_| [0; 20]);
        // 8 + 104 + 8 + (112 + 8) + 8
        assert_eq!(m.len(), 248);
        assert_eq!(&m[120 + 0x10..120 + 0x18], &240u64.to_le_bytes());
        assert_eq!(&m[240..], &[0u8; 8]);
    }
}
