//! A member of a prestaged `.wim` read straight from its resource, without
//! extracting it to a file.
//!
//! Extracting 50,000 small members to a scratch folder to hash them costs
//! more than reading them: every file is created and deleted again, and on
//! ext4 without a journal each creation after many deletions probes the
//! recently deleted inodes one by one (issue 18: measured there, most of
//! `verify`'s time on a WIM).
//! Here a member's resource is read in place, in the order of the WIM file
//! (through [`BlockReader`]: large reads), its chunks decompressed with
//! wimlib's decompressor (`shared/reference/wim-format.md` §3).
//!
//! wimlib stays the judge: a member counts as read only when the SHA-1 of
//! what came out equals the SHA-1 wimlib lists for it. Anything else — a
//! damaged chunk, a WIM that may hold solid resources (version 0xE00), a
//! layout this reader does not know — makes the caller extract that member
//! with wimlib, which says what is wrong as before.

use super::source::{Digests, Hasher};
use crate::fsutil::blockread::BlockReader;
use crate::recipe::Compression;
use crate::wim::compressor::{CompressorKind, Decompressor};
use crate::wim::{DirEntry, WimInfo};
use sha1::{Digest, Sha1};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The version of a WIM without solid resources.
const VERSION_PLAIN: u32 = 0x0001_0D00;
/// Uncompressed resources are streamed in pieces of this size.
const PIECE: usize = 1 << 20;

/// The resources of one WIM file.
pub struct Resources {
    r: BlockReader<std::fs::File>,
    chunk: usize,
    dec: Option<Decompressor>,
    stored: Vec<u8>,
    out: Vec<u8>,
}

impl Resources {
    /// `None` when members must be extracted by wimlib instead: a WIM that
    /// may hold solid resources, or one this reader cannot open.
    pub fn open(path: &Path, info: &WimInfo) -> Option<Resources> {
        let f = std::fs::File::open(path).ok()?;
        let len = f.metadata().ok()?.len();
        let mut r = BlockReader::new(f, 0, len);
        let mut head = [0u8; 16];
        r.read_exact(&mut head).ok()?;
        if u32::from_le_bytes([head[12], head[13], head[14], head[15]]) != VERSION_PLAIN {
            return None;
        }
        let kind = match info.compression {
            Compression::None => None,
            Compression::Xpress => Some(CompressorKind::Xpress),
            Compression::Lzx => Some(CompressorKind::Lzx),
            Compression::Lzms => Some(CompressorKind::Lzms),
        };
        let chunk = info.chunk_size as usize;
        let dec = match kind {
            Some(k) => Some(Decompressor::new(k, chunk).ok()?),
            None => None,
        };
        Some(Resources {
            r,
            chunk,
            dec,
            stored: Vec::new(),
            out: Vec::new(),
        })
    }

    /// The digests of the member `e` at `path`, or `None` when it could not
    /// be read here or does not match wimlib's SHA-1 (the caller extracts it).
    pub fn digests(&mut self, e: &DirEntry, path: &str) -> Option<Digests> {
        let mut h = Hasher::new(path);
        if e.size == 0 {
            return Some(h.finish());
        }
        let mut sha1 = Sha1::new();
        self.stream(e, &mut |b| {
            sha1.update(b);
            // Writing to a hasher cannot fail.
            let _ = h.write_all(b);
        })
        .ok()?;
        (<[u8; 20]>::from(sha1.finalize()) == e.sha1).then(|| h.finish())
    }

    /// Streams the uncompressed bytes of `e`'s resource to `sink`.
    fn stream(&mut self, e: &DirEntry, sink: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        if e.stored_size == e.size {
            // Stored as is (wimlib stores a blob raw whenever compressing
            // would not make it smaller).
            self.r.seek(SeekFrom::Start(e.offset))?;
            let mut left = e.size;
            self.out.resize(PIECE, 0);
            while left > 0 {
                let n = left.min(PIECE as u64) as usize;
                self.r.read_exact(&mut self.out[..n])?;
                sink(&self.out[..n]);
                left -= n as u64;
            }
            return Ok(());
        }
        if self.dec.is_none() || self.chunk == 0 {
            return Err(bad("a compressed resource in an uncompressed WIM"));
        }
        // The chunk table: n − 1 entries, each the offset of the next chunk
        // from the end of the table; 8 bytes wide above 4 GiB.
        let chunk = self.chunk as u64;
        let n = e.size.div_ceil(chunk);
        let width: u64 = if e.size > u64::from(u32::MAX) { 8 } else { 4 };
        let table_bytes = (n - 1) * width;
        if table_bytes > e.stored_size {
            return Err(bad("chunk table larger than the resource"));
        }
        let mut table = vec![0u8; table_bytes as usize];
        self.r.seek(SeekFrom::Start(e.offset))?;
        self.r.read_exact(&mut table)?;
        let data = e.stored_size - table_bytes;
        let mut starts: Vec<u64> = vec![0];
        starts.extend(table.chunks_exact(width as usize).map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(b)
        }));
        starts.push(data);
        for i in 0..n as usize {
            let (from, to) = (starts[i], starts[i + 1]);
            let raw_len = (e.size - i as u64 * chunk).min(chunk) as usize;
            if to <= from || to - from > raw_len as u64 {
                return Err(bad("chunk table out of order"));
            }
            let len = (to - from) as usize;
            self.stored.resize(len, 0);
            self.r.read_exact(&mut self.stored)?;
            if len == raw_len {
                sink(&self.stored);
            } else {
                self.out.resize(raw_len, 0);
                let dec = self.dec.as_mut().expect("checked above");
                if !dec.decompress(&self.stored, &mut self.out[..raw_len]) {
                    return Err(bad("a chunk does not decompress"));
                }
                sink(&self.out[..raw_len]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::source::{Artefact, Listed};
    use crate::wim::Wim;
    use crate::wimwrite::testgen::{noise, text};
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;

    /// A WIM written by wimlib from files of every shape a resource takes:
    /// empty, one chunk, many chunks, incompressible (stored raw), duplicate.
    fn wim(
        dir: &Path,
        compression: Compression,
    ) -> (std::path::PathBuf, BTreeMap<String, Vec<u8>>) {
        let files: BTreeMap<String, Vec<u8>> = [
            ("empty.txt", Vec::new()),
            ("a/small.txt", text(700, 1)),
            ("a/b/many chunks.txt", text(300_000, 2)),
            ("a/b/noise.bin", noise(100_000, 3)),
            ("a/same as small.txt", text(700, 1)),
            ("sources/boot.wim", text(50_000, 4)),
        ]
        .into_iter()
        .map(|(p, b)| (p.to_string(), b))
        .collect();
        let src = dir.join("src");
        for (p, b) in &files {
            let f = src.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b).unwrap();
        }
        let dest = dir.join(format!("{compression:?}.wim"));
        let mut w = Wim::create(compression).unwrap();
        w.add_image_from_dir(&src, "t").unwrap();
        w.write_deterministic(&dest, 0, 1, &mut |_, _| {}, &AtomicBool::new(false))
            .unwrap();
        (dest, files)
    }

    fn want(path: &str, bytes: &[u8]) -> Digests {
        let mut h = Hasher::new(path);
        h.write_all(bytes).unwrap();
        h.finish()
    }

    #[test]
    fn every_member_is_read_in_place_with_the_digests_of_its_bytes() {
        let t = tempfile::tempdir().unwrap();
        for c in [Compression::Lzx, Compression::Xpress, Compression::None] {
            let (path, files) = wim(t.path(), c);
            let Artefact::Wim(w) = Artefact::open(&path).unwrap() else {
                panic!("not a WIM")
            };
            let mut res = Resources::open(&path, &w.info).expect("a plain WIM");
            let entries = w.wim.list(w.index).unwrap();
            for e in entries.iter().filter(|e| !e.is_dir) {
                let got = res.digests(e, &e.path);
                assert_eq!(
                    got,
                    Some(want(&e.path, &files[&e.path])),
                    "{c:?} {}",
                    e.path
                );
            }
        }
    }

    #[test]
    fn a_damaged_member_is_left_to_wimlib_which_names_it() {
        let t = tempfile::tempdir().unwrap();
        let (path, files) = wim(t.path(), Compression::Lzx);
        let art = Artefact::open(&path).unwrap();
        let Artefact::Wim(w) = &art else {
            panic!("not a WIM")
        };
        let entries = w.wim.list(w.index).unwrap();
        let e = entries
            .iter()
            .find(|e| e.path == "a/b/many chunks.txt")
            .unwrap();
        // A byte inside its last chunk.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(e.offset + e.stored_size - 10) as usize] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();

        let art = Artefact::open(&path).unwrap();
        let Artefact::Wim(w) = &art else {
            panic!("not a WIM")
        };
        let mut res = Resources::open(&path, &w.info).unwrap();
        assert_eq!(res.digests(e, &e.path), None);
        let listed: Vec<Listed> = art.list().unwrap();
        let mut got = BTreeMap::new();
        art.hash_all(&listed, &mut |l, r| {
            got.insert(l.path.clone(), r);
        })
        .unwrap();
        for (p, b) in &files {
            if p == &e.path {
                assert!(got[p].is_err(), "{p}: {:?}", got[p]);
            } else {
                assert_eq!(got[p], Ok(want(p, b)), "{p}");
            }
        }
    }
}
