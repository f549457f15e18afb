//! The writer's narrow interface to a resource cache (kept out of the
//! pipeline's logic: one check in the reader, one copy in the writer loop).
//!
//! A data resource's bytes — chunk table and chunks, or the raw bytes — do
//! not depend on where it sits in the file: chunk-table entries are offsets
//! relative to the end of the table (reference §3.9) and only the blob
//! table's reshdr holds the absolute offset. They depend only on the content
//! and on the parameters in [`ResourceParams`]. So a stored resource can be
//! written verbatim at a new offset.
//!
//! Before a file is read, the store is asked for its digests
//! ([`ResourceStore::digests`]; an input hash cache). Knowing the SHA-1, the
//! writer either recognises a duplicate without reading anything or asks for
//! a stored resource. The writer hashes the stored bytes as it copies them
//! and fails the write with [`WimWriteError::CacheCorrupt`] when they do not
//! match: the caller drops the entry and writes again, so a corrupted entry
//! is never part of a finished WIM.
//!
//! A resource stored raw (an exported image, a cab: nothing to gain from
//! compression) is the content itself, so the store keeps only that fact
//! ([`Stored::Raw`]) and the writer copies the content file, whose digests
//! the store already knew. That copy is not hashed again; the file must keep
//! its size, times and inode from before to after the copy, else the write
//! fails with [`WimWriteError::ContentChanged`]. This keeps a second copy of
//! every exported image out of the cache and a hashing pass out of rebuilds.
//!
//! [`WimWriteError::ContentChanged`]: super::WimWriteError::ContentChanged
//!
//! [`WimWriteError::CacheCorrupt`]: super::WimWriteError::CacheCorrupt

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything besides the content that shapes a resource's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceParams {
    /// Compression format name.
    pub compression: &'static str,
    /// Chunk size.
    pub chunk: u32,
    /// Compressor level.
    pub level: u32,
    /// Probe on/off.
    pub probe: bool,
    /// Undecided window in bytes.
    pub window_bytes: u64,
    /// Overflow policy name.
    pub overflow: &'static str,
}

impl ResourceParams {
    /// Canonical text, part of a cache key (with the compressor version,
    /// which the store adds).
    pub fn text(&self) -> String {
        format!(
            "{} chunk={} level={} probe={} window={} overflow={}",
            self.compression, self.chunk, self.level, self.probe, self.window_bytes, self.overflow
        )
    }
}

/// A stored resource, ready to be copied.
pub struct StoredResource {
    /// Yields the entry's remaining bytes: all `len` resource bytes, or
    /// with a [`Splice`] only the stored (compressed) chunks.
    pub reader: Box<dyn Read + Send>,
    /// Bytes of the resource (`size_in_wim`).
    pub len: u64,
    /// A chunked, compressed resource (else raw).
    pub compressed: bool,
    /// How the copied bytes are known to be right.
    pub check: StoredCheck,
    /// The store's name for the entry, handed back in [`ResourceStore::corrupt`].
    pub id: String,
    /// Kept without its raw chunks.
    pub splice: Option<Splice>,
}

/// How the bytes of a [`StoredResource`] are checked while copied. (One per
/// resource being copied: the size of the variants does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum StoredCheck {
    /// An entry of the store. `hasher` was already fed with whatever the
    /// store read before; after the bytes read from the entry it must give
    /// `expected` (the XXH3-128 of the entry's body: the store's check
    /// against damage).
    Digest {
        hasher: Box<xxhash_rust::xxh3::Xxh3>,
        expected: u128,
    },
    /// The content file itself ([`Stored::Raw`]).
    Unchanged(SourceFile),
}

/// A compressed resource kept without the chunks that are stored raw: those
/// are the content's own bytes (chunk `i` at `i * chunk`), copied from the
/// content file; the entry keeps the chunk table and the other chunks.
pub struct Splice {
    /// The resource's chunk table (already fed to the entry's hasher).
    pub table: Vec<u8>,
    /// Per chunk: stored length, and whether it is raw (from the content).
    pub chunks: Vec<(u32, bool)>,
    /// Chunk size.
    pub chunk: u64,
    /// The content file, attached by the writer.
    pub source: Option<SourceFile>,
}

/// A content file copied as (part of) a stored resource. Its digests were
/// known without reading it, so the copy is not hashed again; instead it
/// must keep its size, times and inode from before to after the copy.
pub struct SourceFile {
    /// Path inside the WIM (for the error).
    pub wim_path: String,
    pub path: PathBuf,
    pub file: std::fs::File,
    pub before: std::fs::Metadata,
    /// Whether the ctime must stay too. Not for a file other builds may
    /// hard-link and unlink while it is read (an image restored from the
    /// cache, [`ResourceStore::linked_by_others`]): a link count change
    /// moves the ctime without touching the content; a write still moves
    /// the mtime.
    pub ctime: bool,
}

impl SourceFile {
    /// None if the file cannot be opened or has another size than `size`
    /// (the writer then reads it as usual and reports what is wrong).
    pub fn open(wim_path: &str, path: &Path, size: u64) -> Option<SourceFile> {
        let file = std::fs::File::open(path).ok()?;
        let before = file.metadata().ok()?;
        (before.len() == size).then(|| SourceFile {
            wim_path: wim_path.to_string(),
            path: path.to_path_buf(),
            file,
            before,
            ctime: true,
        })
    }

    /// Fails when the file changed since it was opened.
    pub fn check(&self) -> Result<(), super::WimWriteError> {
        use std::os::unix::fs::MetadataExt;
        let a = &self.before;
        let how = match self.file.metadata() {
            Err(e) => format!("its metadata could not be read again ({e})"),
            Ok(b) => {
                let moved: Vec<&str> = [
                    (a.len() != b.len(), "size"),
                    ((a.ino(), a.dev()) != (b.ino(), b.dev()), "inode"),
                    (
                        (a.mtime(), a.mtime_nsec()) != (b.mtime(), b.mtime_nsec()),
                        "modification time",
                    ),
                    (
                        self.ctime && (a.ctime(), a.ctime_nsec()) != (b.ctime(), b.ctime_nsec()),
                        "change time",
                    ),
                ]
                .into_iter()
                .filter_map(|(m, what)| m.then_some(what))
                .collect();
                if moved.is_empty() {
                    return Ok(());
                }
                format!(
                    "its {} moved while its stored copy was written",
                    moved.join(", ")
                )
            }
        };
        Err(super::WimWriteError::ContentChanged {
            path: self.wim_path.clone(),
            source_path: self.path.clone(),
            how,
        })
    }
}

impl StoredResource {
    /// The raw resource that is the content of `source` itself.
    pub fn from_source(wim_path: &str, source: &Path, size: u64) -> Option<StoredResource> {
        StoredResource::from_file(SourceFile::open(wim_path, source, size)?, size)
    }

    /// The raw resource that is the content of the opened `src`.
    pub fn from_file(src: SourceFile, size: u64) -> Option<StoredResource> {
        let reader = src.file.try_clone().ok()?.take(size);
        Some(StoredResource {
            reader: Box::new(reader),
            len: size,
            compressed: false,
            id: src.path.display().to_string(),
            check: StoredCheck::Unchanged(src),
            splice: None,
        })
    }
}

impl std::fmt::Debug for StoredResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredResource")
            .field("len", &self.len)
            .field("compressed", &self.compressed)
            .field("id", &self.id)
            .field("spliced", &self.splice.is_some())
            .finish()
    }
}

/// What a store holds for a content.
#[derive(Debug)]
pub enum Stored {
    /// Its resource, to copy verbatim.
    Entry(StoredResource),
    /// Its resource is raw, i.e. the content itself: copy the content file.
    Raw,
    /// Its resource without the raw chunks ([`Splice`]; the writer attaches
    /// the content file).
    Spliced(StoredResource),
}

/// Content digests known without reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownDigests {
    /// SHA-1 (the WIM's blob key).
    pub sha1: [u8; 20],
    /// SHA-256 (the manifest's).
    pub sha256: [u8; 32],
}

/// What the writer needs from a cache.
pub trait ResourceStore: Send + Sync {
    /// Digests of the `size` bytes of `source`, when known without reading.
    fn digests(&self, source: &Path, size: u64) -> Option<KnownDigests>;
    /// What is stored for the content with this SHA-1 and size.
    fn resource(&self, sha1: &[u8; 20], size: u64, params: &ResourceParams) -> Option<Stored>;
    /// The entry `id` did not match its digest while being copied.
    fn corrupt(&self, id: &str);
    /// The previous version's chunks of the file at `wim_path`, when known.
    fn previous(&self, wim_path: &str, params: &ResourceParams) -> Option<PrevChunks> {
        let _ = (wim_path, params);
        None
    }
    /// A guess, without reading `source` or counting a lookup: will the
    /// write serve these `size` bytes from the store? (It decides whether
    /// a WIM is laid out before it is written, see `write_wim`.)
    fn likely_stored(&self, source: &Path, size: u64, params: &ResourceParams) -> bool {
        let _ = (source, size, params);
        false
    }
    /// Whether the store saw a file of this size at `source` before, whose
    /// digests it no longer knows without reading (its stamp moved): the
    /// writer then hashes it first and asks [`resource`](Self::resource).
    fn seen_at(&self, source: &Path, size: u64) -> bool {
        let _ = (source, size);
        false
    }
    /// Whether `source` is a file of the store that other builds may link
    /// and unlink while this one reads it (see [`SourceFile::ctime`]).
    fn linked_by_others(&self, source: &Path) -> bool {
        let _ = source;
        false
    }
}

/// Where a store's resource for a file comes from again at replay time.
#[derive(Clone, Debug)]
pub struct Reopen {
    pub sha1: [u8; 20],
    pub size: u64,
    pub wim_path: String,
    pub source: PathBuf,
}

/// Opens what `store` holds for the file `source` (media path `wim_path`)
/// whose content has this SHA-1 and size: the entry, or the content file
/// itself for a raw resource (with a spliced entry, both). None when the
/// store has nothing usable.
pub fn open_stored(
    store: &dyn ResourceStore,
    r: &Reopen,
    params: &ResourceParams,
) -> Option<StoredResource> {
    let open = || {
        let mut src = SourceFile::open(&r.wim_path, &r.source, r.size)?;
        src.ctime = !store.linked_by_others(&r.source);
        Some(src)
    };
    match store.resource(&r.sha1, r.size, params)? {
        Stored::Entry(res) => Some(res),
        Stored::Raw => StoredResource::from_file(open()?, r.size),
        Stored::Spliced(mut res) => {
            let src = open()?;
            if let Some(sp) = res.splice.as_mut() {
                sp.source = Some(src);
            }
            Some(res)
        }
    }
}

/// A shareable handle in [`WriteOptions`](super::WriteOptions).
#[derive(Clone)]
pub struct StoreHandle(pub Arc<dyn ResourceStore>);

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreHandle")
    }
}

/// Where one data resource of the written WIM came from (in blob order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// SHA-1 of the content.
    pub sha1: [u8; 20],
    /// Uncompressed size.
    pub size: u64,
    /// Offset in the WIM.
    pub offset: u64,
    /// Bytes in the WIM.
    pub size_in_wim: u64,
    /// Chunked, compressed.
    pub compressed: bool,
    /// Copied from the store (not compressed now).
    pub from_store: bool,
    /// Raw SHA-1 of every chunk (a resource compressed now, written with a
    /// store): what the next build compares a changed file's chunks with.
    pub chunk_sha1: Option<Vec<[u8; 20]>>,
}

/// The previous version of a file's resource, for chunk reuse: a file that
/// changed in place keeps most chunks, and a chunk with the same raw SHA-1
/// at the same position has the same stored form (the compressor's output
/// depends on the chunk alone), so it is copied instead of compressed.
#[derive(Debug)]
pub struct PrevChunks {
    /// Raw SHA-1 of each chunk.
    pub digests: Vec<[u8; 20]>,
    /// Stored form of each chunk (compressed, or raw when it did not shrink),
    /// as ranges into `bytes`.
    pub ranges: Vec<std::ops::Range<usize>>,
    /// The resource's chunk area.
    pub bytes: Vec<u8>,
}

impl PrevChunks {
    /// The stored form of chunk `i` if its raw SHA-1 is `digest`.
    pub fn chunk(&self, i: usize, digest: &[u8; 20]) -> Option<&[u8]> {
        if self.digests.get(i)? != digest {
            return None;
        }
        self.bytes.get(self.ranges.get(i)?.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{testgen, write_wim, Content, EntryKind, WimEntry, WimWriteError, WriteOptions};
    use sha1::Digest as _;
    use std::collections::BTreeMap;
    use std::io::Cursor;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    /// SHA-1 → (compressed, resource bytes).
    type Resources = BTreeMap<[u8; 20], (bool, Vec<u8>)>;

    /// An in-memory store: digests by path, resources by SHA-1.
    #[derive(Default)]
    struct Mem {
        digests: BTreeMap<PathBuf, KnownDigests>,
        res: Mutex<Resources>,
        corrupted: Mutex<Vec<String>>,
        flip: bool,
        /// Answer `Stored::Raw` for raw resources (as the cache does).
        raw_marker: bool,
    }

    impl ResourceStore for Mem {
        fn digests(&self, source: &Path, _size: u64) -> Option<KnownDigests> {
            self.digests.get(source).copied()
        }
        fn resource(&self, sha1: &[u8; 20], _: u64, _: &ResourceParams) -> Option<Stored> {
            let (compressed, bytes) = self.res.lock().unwrap().get(sha1)?.clone();
            if !compressed && self.raw_marker {
                return Some(Stored::Raw);
            }
            let expected = xxhash_rust::xxh3::xxh3_128(&bytes);
            let mut served = bytes.clone();
            if self.flip {
                let mid = served.len() / 2;
                served[mid] ^= 1;
            }
            Some(Stored::Entry(StoredResource {
                len: served.len() as u64,
                reader: Box::new(Cursor::new(served)),
                compressed,
                check: StoredCheck::Digest {
                    hasher: Box::default(),
                    expected,
                },
                id: mediabuild_ids::hex(sha1),
                splice: None,
            }))
        }
        fn corrupt(&self, id: &str) {
            self.corrupted.lock().unwrap().push(id.to_string());
        }
    }

    #[test]
    fn a_link_by_another_build_moves_the_ctime_only_where_that_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("install.wim");
        std::fs::write(&f, vec![7u8; 5000]).unwrap();
        let strict = SourceFile::open("x", &f, 5000).unwrap();
        let mut shared = SourceFile::open("x", &f, 5000).unwrap();
        shared.ctime = false;
        // ctime has a coarse clock: make sure the link lands in a later tick.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::hard_link(&f, dir.path().join("other-build.wim")).unwrap();
        assert!(shared.check().is_ok(), "a link does not change the content");
        let e = strict
            .check()
            .expect_err("a content file must keep its ctime");
        assert!(e.to_string().contains("its change time moved"), "{e}");
        // A write still moves the mtime.
        let shared2 = SourceFile {
            ctime: false,
            ..SourceFile::open("x", &f, 5000).unwrap()
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, vec![8u8; 5000]).unwrap();
        let e = shared2.check().expect_err("a write moves the mtime");
        assert!(e.to_string().contains("modification time"), "{e}");
    }

    #[test]
    fn stored_resources_are_written_verbatim_at_new_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(String, Vec<u8>)> = vec![
            ("a/text.txt".into(), testgen::text(300 << 10, 1)),
            ("b/drv.sys".into(), testgen::binary(200 << 10, 2)),
            ("c/noise.cab".into(), testgen::noise(100 << 10, 3)),
        ];
        let mut entries = Vec::new();
        let mut store = Mem::default();
        for (p, bytes) in &files {
            let f = dir.path().join(p.replace('/', "_"));
            std::fs::write(&f, bytes).unwrap();
            store.digests.insert(
                f.clone(),
                KnownDigests {
                    sha1: sha1::Sha1::digest(bytes).into(),
                    sha256: sha2::Sha256::digest(bytes).into(),
                },
            );
            entries.push(WimEntry {
                path: p.clone(),
                kind: EntryKind::File {
                    size: bytes.len() as u64,
                    content: Content::Path(f),
                },
            });
        }
        let never = AtomicBool::new(false);
        let write = |entries: &[WimEntry], store: Option<Arc<Mem>>| {
            let o = WriteOptions {
                threads: 2,
                store: store.map(|s| StoreHandle(s as Arc<dyn ResourceStore>)),
                ..WriteOptions::default()
            };
            let mut out = Cursor::new(Vec::new());
            let r = write_wim(entries, &mut out, &o, &mut |_, _| {}, &never);
            r.map(|rep| (out.into_inner(), rep))
        };
        let (clean, rep) = write(&entries, None).unwrap();
        // Fill the store from the clean write, then write the entries in
        // another order: every resource moves, the bytes must equal a clean
        // write of that order.
        for r in &rep.resources {
            let bytes = clean[r.offset as usize..(r.offset + r.size_in_wim) as usize].to_vec();
            store
                .res
                .lock()
                .unwrap()
                .insert(r.sha1, (r.compressed, bytes));
        }
        entries.reverse();
        let (reordered_clean, _) = write(&entries, None).unwrap();
        let store = Arc::new(store);
        let (cached, rep2) = write(&entries, Some(Arc::clone(&store))).unwrap();
        assert!(rep2.resources.iter().all(|r| r.from_store));
        assert_eq!(cached, reordered_clean);
        assert_eq!(rep2.files, write(&entries, None).unwrap().1.files);

        // A stored resource that does not match its digest fails the write.
        let bad = Arc::new(Mem {
            digests: store.digests.clone(),
            res: Mutex::new(store.res.lock().unwrap().clone()),
            flip: true,
            ..Mem::default()
        });
        let e = write(&entries, Some(Arc::clone(&bad))).unwrap_err();
        assert!(matches!(e, WimWriteError::CacheCorrupt(_)), "{e}");
        assert_eq!(bad.corrupted.lock().unwrap().len(), 1);

        // A store that keeps only "raw" for raw resources: the writer copies
        // the content files instead, with the same bytes.
        let marker = Arc::new(Mem {
            digests: store.digests.clone(),
            res: Mutex::new(store.res.lock().unwrap().clone()),
            raw_marker: true,
            ..Mem::default()
        });
        assert!(
            rep.resources.iter().any(|r| !r.compressed),
            "the noise is stored raw"
        );
        let (from_files, rep3) = write(&entries, Some(Arc::clone(&marker))).unwrap();
        assert!(rep3.resources.iter().all(|r| r.from_store));
        assert_eq!(from_files, reordered_clean);
    }

    #[test]
    fn a_content_file_of_another_size_is_not_copied_as_the_stored_raw_resource() {
        // The store says "raw" for the old content; the file now has another
        // size than the entry lists, so it is not copied as that resource but
        // read, and the change is reported.
        let dir = tempfile::tempdir().unwrap();
        let old = testgen::noise(100 << 10, 5);
        let f = dir.path().join("noise.cab");
        std::fs::write(&f, &old).unwrap();
        let entries = |len: usize| {
            vec![WimEntry {
                path: "noise.cab".into(),
                kind: EntryKind::File {
                    size: len as u64,
                    content: Content::Path(f.clone()),
                },
            }]
        };
        let never = AtomicBool::new(false);
        let write = |entries: &[WimEntry], store: Option<Arc<Mem>>| {
            let o = WriteOptions {
                threads: 1,
                store: store.map(|s| StoreHandle(s as Arc<dyn ResourceStore>)),
                ..WriteOptions::default()
            };
            let mut out = Cursor::new(Vec::new());
            write_wim(entries, &mut out, &o, &mut |_, _| {}, &never).map(|r| (out.into_inner(), r))
        };
        let (_, rep) = write(&entries(old.len()), None).unwrap();
        let mut store = Mem {
            raw_marker: true,
            ..Mem::default()
        };
        store.digests.insert(
            f.clone(),
            KnownDigests {
                sha1: sha1::Sha1::digest(&old).into(),
                sha256: sha2::Sha256::digest(&old).into(),
            },
        );
        store
            .res
            .lock()
            .unwrap()
            .insert(rep.resources[0].sha1, (false, Vec::new()));
        let new = testgen::noise(90 << 10, 6);
        std::fs::write(&f, &new).unwrap();
        let e = write(&entries(old.len()), Some(Arc::new(store))).unwrap_err();
        assert!(matches!(e, WimWriteError::SizeChanged { .. }), "{e}");
    }
}
