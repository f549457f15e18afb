//! What the build caches besides input hashes: compressed WIM resources,
//! exported images and "this artefact passed verification" marks.
//!
//! * `res/`: one data resource of our WIM writer, keyed by the content's
//!   SHA-1 and size, the parameters that shape its bytes (compression, chunk
//!   size, level, probe, window, overflow policy) and the compressor version
//!   (wimlib's and ours). Body: one flag byte (1 = compressed) + the
//!   resource bytes, written verbatim at the new offset on a hit; or only
//!   the flag 2 for a resource stored raw — the content itself —, which the
//!   next build copies from the content file (whose digests it knows)
//!   instead of keeping a second copy of every exported image here.
//! * `export/`: an image exported alone from a WIM (`sources/boot.wim`, the
//!   OS image), keyed by the source file's SHA-256, the index, the bootable
//!   flag, the derived GUID, the epoch and wimlib's version. Its body is a
//!   file body of the store ([`Store::link_file`](super::Store::link_file),
//!   [`Store::restore_file`](super::Store::restore_file)), known by its
//!   length, SHA-256 and SHA-1: the local store keeps it as a plain `.wim`
//!   beside the entry, which a restore hard-links into the staging folder.
//! * `chunks/`: the raw SHA-1 of every chunk of the resource last written
//!   for a media path (keyed by the path, the resource parameters and the
//!   versions; body: content SHA-1, size, one SHA-1 per chunk). When that
//!   file changes, its unchanged chunks are copied from the old resource
//!   (`res/`, checked whole on read) instead of being compressed again.
//! * `verify/`: an artefact of this SHA-256 and size already passed the
//!   check named in the key (wimlib's verify, the disk read-back).
//!
//! Never cached: `SMS/data/Variables.dat` and the other generated members
//! (secret-derived or tiny); the store refuses to serve or keep them.

use super::hashes::{self, Digests, Stamp};
use super::{Cache, Entry, Key};
use crate::ids::hex;
use crate::wimwrite::{
    KnownDigests, PrevChunks, ResourceParams, ResourceStore, Splice, Stored, StoredCheck,
    StoredResource, WimReport,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `res/` flag of a raw resource whose bytes are not kept (the content is).
const RAW_MARKER: u8 = 2;
/// `res/` flag of a compressed resource kept without its raw chunks: then
/// `size_in_wim` (u64 LE), the chunk table, the other chunks.
const SPLICED: u8 = 3;
/// Raw chunks worth leaving out of an entry (else it is kept whole).
const SPLICE_MIN: u64 = 1 << 20;

fn versions() -> String {
    format!(
        "wimlib {} mediabuild {}",
        crate::wim::version(),
        env!("CARGO_PKG_VERSION")
    )
}

/// Key of a stored resource.
pub fn resource_key(sha1: &[u8; 20], size: u64, params: &ResourceParams) -> Key {
    Key::new(
        "res",
        format!(
            "res1\0{}\0{size}\0{}\0{}",
            hex(sha1),
            params.text(),
            versions()
        ),
    )
}

/// Key of the chunk digests of the resource last written for `wim_path`.
pub fn chunks_key(wim_path: &str, params: &ResourceParams) -> Key {
    Key::new(
        "chunks",
        format!("chunks1\0{wim_path}\0{}\0{}", params.text(), versions()),
    )
}

/// Largest previous resource read whole for chunk reuse; a larger changed
/// file is compressed again in full.
const PREV_LIMIT: u64 = 256 << 20;

/// Bytes of the chunk table of a compressed resource of `size` bytes in
/// `chunk`-byte chunks (no entry for the first chunk; 8-byte entries past
/// 4 GiB).
fn table_len(size: u64, chunk: u64) -> usize {
    let n = size.div_ceil(chunk.max(1)) as usize;
    let entry = if size > u64::from(u32::MAX) { 8 } else { 4 };
    n.saturating_sub(1) * entry
}

/// Each chunk's stored bytes as a range of the chunk area (`area` bytes
/// after the table), read from the chunk `table`. None when the table does
/// not describe such an area.
fn chunk_spans(
    table: &[u8],
    size: u64,
    chunk: u64,
    area: u64,
) -> Option<Vec<std::ops::Range<u64>>> {
    let n = size.div_ceil(chunk.max(1)) as usize;
    let entry = if size > u64::from(u32::MAX) { 8 } else { 4 };
    if n == 0 || table.len() != table_len(size, chunk) {
        return None;
    }
    let mut starts = vec![0u64];
    for e in table.chunks_exact(entry) {
        let mut v = [0u8; 8];
        v[..entry].copy_from_slice(e);
        starts.push(u64::from_le_bytes(v));
    }
    starts.push(area);
    let mut out = Vec::with_capacity(n);
    for w in starts.windows(2) {
        if w[0] > w[1] || w[1] - w[0] > chunk {
            return None;
        }
        out.push(w[0]..w[1]);
    }
    Some(out)
}

/// Uncompressed bytes of chunk `i`.
fn chunk_size(i: usize, size: u64, chunk: u64) -> u64 {
    chunk.min(size - i as u64 * chunk)
}

/// The chunk area of a compressed resource of `size` bytes in `chunk`-byte
/// chunks: each chunk's stored bytes as a range of `bytes`. None when the
/// chunk table does not describe `bytes`.
fn chunk_ranges(bytes: &[u8], size: u64, chunk: u64) -> Option<Vec<std::ops::Range<usize>>> {
    let table = table_len(size, chunk);
    let area = bytes.len().checked_sub(table)?;
    let spans = chunk_spans(&bytes[..table], size, chunk, area as u64)?;
    Some(
        spans
            .into_iter()
            .map(|r| table + r.start as usize..table + r.end as usize)
            .collect(),
    )
}

/// What an export reads: the source WIM (or the first part of a split one),
/// its other parts, and whether it is converted (an ESD) and to what.
pub struct ExportInput<'a> {
    pub sha256: &'a [u8; 32],
    pub parts: &'a [[u8; 32]],
    pub convert: Option<crate::recipe::Compression>,
}

/// Key of an exported image. A plain source keeps the key it always had;
/// parts and a conversion are appended.
pub fn export_key(
    input: &ExportInput,
    index: u32,
    bootable: bool,
    guid: &[u8; 16],
    epoch: i64,
) -> Key {
    let mut extra = String::new();
    for p in input.parts {
        extra.push_str("\0part:");
        extra.push_str(&hex(p));
    }
    if let Some(c) = input.convert {
        extra.push_str("\0convert:");
        extra.push_str(c.as_str());
    }
    Key::new(
        "export",
        format!(
            "export1\0{}\0{index}\0{bootable}\0{}\0{epoch}\0{}{extra}",
            hex(input.sha256),
            hex(guid),
            versions()
        ),
    )
}

/// Key of the digests of the file at `path` in image `index` of the WIM of
/// SHA-256 `wim_sha256` (a boot file, extracted anew every build).
pub fn boot_file_key(wim_sha256: &[u8; 32], index: u32, path: &str) -> Key {
    Key::new(
        "hash",
        format!(
            "bootfile1\0{}\0{index}\0{path}\0{}",
            hex(wim_sha256),
            versions()
        ),
    )
}

/// The digests recorded under `key` for a file of `staged`'s size.
pub fn boot_file_digests(cache: &Cache, key: &Key, staged: &Path) -> Option<KnownDigests> {
    let b = cache.get(key)?;
    let size = std::fs::metadata(staged).ok()?.len();
    (b.len() == 60 && b[..8] == size.to_le_bytes()).then(|| KnownDigests {
        sha1: b[8..28].try_into().unwrap_or_default(),
        sha256: b[28..60].try_into().unwrap_or_default(),
    })
}

/// Records the digests of a file of `size` bytes under `key`.
pub fn remember_digests(cache: &Cache, key: &Key, size: u64, d: &KnownDigests) {
    let mut b = Vec::with_capacity(60);
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&d.sha1);
    b.extend_from_slice(&d.sha256);
    cache.put_new(key, &b);
}

/// Key of a verification mark.
pub fn verified_key(check: &str, sha256: &[u8; 32], size: u64) -> Key {
    Key::new(
        "verify",
        format!("verify1\0{check}\0{}\0{size}\0{}", hex(sha256), versions()),
    )
}

/// True when `check` already passed for an artefact with this digest.
pub fn is_verified(cache: &Cache, check: &str, sha256: &[u8; 32], size: u64) -> bool {
    cache.get(&verified_key(check, sha256, size)).as_deref() == Some(b"ok")
}

pub fn mark_verified(cache: &Cache, check: &str, sha256: &[u8; 32], size: u64) {
    cache.put(&verified_key(check, sha256, size), b"ok");
}

/// The writer's view of the cache for one WIM.
pub struct WimStore {
    cache: Arc<Cache>,
    /// Digests known without a hash-cache lookup (restored exports, boot
    /// files an earlier build recorded).
    known: BTreeMap<PathBuf, KnownDigests>,
    /// Files that are hard links to a cache body other builds link too.
    shared: BTreeSet<PathBuf>,
    /// The content files' stamps, taken once before the write (a lookup
    /// by path would stat the file again, twice per file).
    stamps: BTreeMap<PathBuf, Stamp>,
    /// Files never served from nor stored in the cache.
    never: BTreeSet<PathBuf>,
    /// Their media paths.
    never_paths: BTreeSet<String>,
    /// The keys of the entries served, by the name the writer hands back
    /// when one does not match its digest ([`ResourceStore::corrupt`]).
    served: Mutex<BTreeMap<String, Key>>,
}

impl WimStore {
    pub fn new(
        cache: Arc<Cache>,
        known: BTreeMap<PathBuf, KnownDigests>,
        shared: BTreeSet<PathBuf>,
        never: BTreeSet<PathBuf>,
        never_paths: BTreeSet<String>,
    ) -> WimStore {
        WimStore {
            cache,
            known,
            shared,
            stamps: BTreeMap::new(),
            never,
            never_paths,
            served: Mutex::default(),
        }
    }

    /// Remembers which entry `id` names, for [`ResourceStore::corrupt`].
    fn serve(&self, id: &str, key: &Key) {
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), key.clone());
    }
}

/// Reads the head of a spliced `res/` entry (after its flag): the resource
/// size, the chunk table, which chunks are raw. None when it is malformed.
fn spliced(mut e: Entry, size: u64, chunk: u64) -> Option<StoredResource> {
    let mut head = [0u8; 8];
    e.reader.read_exact(&mut head).ok()?;
    let size_in_wim = u64::from_le_bytes(head);
    let mut table = vec![0u8; table_len(size, chunk)];
    e.reader.read_exact(&mut table).ok()?;
    let area = size_in_wim.checked_sub(table.len() as u64)?;
    let spans = chunk_spans(&table, size, chunk, area)?;
    let chunks: Vec<(u32, bool)> = spans
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                (r.end - r.start) as u32,
                r.end - r.start == chunk_size(i, size, chunk),
            )
        })
        .collect();
    let kept: u64 = chunks.iter().filter(|c| !c.1).map(|c| u64::from(c.0)).sum();
    if e.len != 1 + 8 + table.len() as u64 + kept {
        return None;
    }
    let mut hasher = Box::new(super::Checker::new());
    hasher.update(&[SPLICED]);
    hasher.update(&head);
    hasher.update(&table);
    let reader = std::io::BufReader::with_capacity(1 << 20, e.reader.take(kept));
    Some(StoredResource {
        reader: Box::new(reader),
        len: size_in_wim,
        compressed: true,
        check: StoredCheck::Digest {
            hasher,
            expected: e.check,
        },
        id: e.id,
        splice: Some(Splice {
            table,
            chunks,
            chunk,
            source: None,
        }),
    })
}

impl WimStore {
    /// The stamps of the content files, taken just before the write.
    pub fn with_stamps(mut self, stamps: BTreeMap<PathBuf, Stamp>) -> WimStore {
        self.stamps = stamps;
        self
    }

    /// The hash cache's digests of `source` (through its stamp taken before
    /// the write when there is one); `used: false` for a prediction.
    fn hashed(&self, source: &Path, used: bool) -> Option<Digests> {
        match (self.stamps.get(source), used) {
            (Some(st), true) => hashes::lookup_stamp(&self.cache, st),
            (Some(st), false) => hashes::peek_stamp(&self.cache, st),
            (None, true) => hashes::lookup(&self.cache, source),
            (None, false) => hashes::peek(&self.cache, source),
        }
    }
}

impl WimStore {
    /// Reads through every stored resource this store could serve for
    /// `sources` (file and size) and drops the damaged ones: after one was
    /// found in the middle of a write, the next write then meets none
    /// (rather than one per attempt, issue 21).
    pub fn sweep(&self, sources: &[(PathBuf, u64)], params: &ResourceParams) {
        let mut seen = BTreeSet::new();
        for (file, size) in sources {
            if self.never.contains(file) {
                continue;
            }
            // A file the hash cache does not know is read (and recorded):
            // this only runs after damage was found.
            let sha1 = match self.known.get(file) {
                Some(k) => k.sha1,
                None => match hashes::file_digests(Some(&self.cache), file) {
                    Ok(d) if d.size == *size => d.sha1,
                    _ => continue,
                },
            };
            if seen.insert(sha1) {
                self.cache.check_entry(&resource_key(&sha1, *size, params));
            }
        }
    }
}

impl ResourceStore for WimStore {
    /// Restored exports are hard links to a cache body that concurrent
    /// builds link and unlink too.
    fn linked_by_others(&self, source: &Path) -> bool {
        self.shared.contains(source)
    }

    fn likely_stored(&self, source: &Path, size: u64, params: &ResourceParams) -> bool {
        if self.never.contains(source) {
            return false;
        }
        // A file whose stamp moved is guessed by its last digests.
        let sha1 = match self.known.get(source) {
            Some(k) => k.sha1,
            None => match self
                .hashed(source, false)
                .or_else(|| hashes::last_known(&self.cache, source, size))
            {
                Some(d) if d.size == size => d.sha1,
                _ => return false,
            },
        };
        self.cache.contains(&resource_key(&sha1, size, params))
    }

    fn seen_at(&self, source: &Path, size: u64) -> bool {
        !self.never.contains(source) && hashes::last_known(&self.cache, source, size).is_some()
    }

    fn digests(&self, source: &Path, size: u64) -> Option<KnownDigests> {
        if self.never.contains(source) {
            return None;
        }
        if let Some(k) = self.known.get(source) {
            return Some(*k);
        }
        self.hashed(source, true)
            .filter(|d| d.size == size)
            .map(|d| KnownDigests {
                sha1: d.sha1,
                sha256: d.sha256,
            })
    }

    /// Entry body: a flag byte — 1 compressed, 0 raw (bytes follow), 2 raw
    /// and not kept (the content file is the resource) — then the bytes.
    fn resource(&self, sha1: &[u8; 20], size: u64, params: &ResourceParams) -> Option<Stored> {
        let key = resource_key(sha1, size, params);
        let mut e = self.cache.open_entry(&key)?;
        let mut flag = [0u8; 1];
        if e.len < 1 || e.reader.read_exact(&mut flag).is_err() || flag[0] > SPLICED {
            self.cache.reject(&key);
            return None;
        }
        if flag[0] == SPLICED {
            let id = e.id.clone();
            let spliced = spliced(e, size, u64::from(params.chunk));
            match &spliced {
                Some(_) => self.serve(&id, &key),
                None => self.cache.reject(&key),
            }
            return spliced.map(Stored::Spliced);
        }
        if flag[0] == RAW_MARKER {
            // The whole body is the flag: check it like any entry.
            if e.len != 1 || xxhash_rust::xxh3::xxh3_128(&flag) != e.check {
                self.cache.reject(&key);
                return None;
            }
            return Some(Stored::Raw);
        }
        self.serve(&e.id, &key);
        let mut hasher = Box::new(super::Checker::new());
        hasher.update(&flag);
        let len = e.len - 1;
        Some(Stored::Entry(StoredResource {
            reader: Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                e.reader.take(len),
            )),
            len,
            compressed: flag[0] == 1,
            check: StoredCheck::Digest {
                hasher,
                expected: e.check,
            },
            id: e.id,
            splice: None,
        }))
    }

    fn corrupt(&self, id: &str) {
        let key = self
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if let Some(key) = key {
            self.cache.reject(&key);
        }
    }

    /// The chunk digests last recorded for `wim_path` and the resource they
    /// describe, read whole and checked against its digest (a bad entry is
    /// dropped and nothing is reused).
    fn previous(&self, wim_path: &str, params: &ResourceParams) -> Option<PrevChunks> {
        if self.never_paths.contains(wim_path) {
            return None;
        }
        let key = chunks_key(wim_path, params);
        let body = self.cache.get(&key)?;
        let bad = || {
            self.cache.reject(&key);
            None
        };
        if body.len() < 28 || (body.len() - 28) % 20 != 0 {
            return bad();
        }
        let sha1: [u8; 20] = body[..20].try_into().ok()?;
        let size = u64::from_le_bytes(body[20..28].try_into().ok()?);
        let digests: Vec<[u8; 20]> = body[28..]
            .chunks_exact(20)
            .filter_map(|c| c.try_into().ok())
            .collect();
        if digests.len() as u64 != size.div_ceil(u64::from(params.chunk.max(1))) {
            return bad();
        }
        if size > PREV_LIMIT {
            return None;
        }
        let Some(Stored::Entry(mut res)) = self.resource(&sha1, size, params) else {
            return None;
        };
        let StoredCheck::Digest {
            hasher: mut h,
            expected,
        } = res.check
        else {
            return None;
        };
        if !res.compressed || res.len > PREV_LIMIT {
            return None;
        }
        let mut bytes = Vec::with_capacity(res.len as usize);
        let read = (&mut res.reader).take(res.len).read_to_end(&mut bytes);
        h.update(&bytes);
        if read.is_err() || bytes.len() as u64 != res.len || h.digest128() != expected {
            self.corrupt(&res.id);
            return None;
        }
        let ranges = chunk_ranges(&bytes, size, u64::from(params.chunk))?;
        Some(PrevChunks {
            digests,
            ranges,
            bytes,
        })
    }
}

/// After a WIM was written at `wim`: stores every resource compressed now
/// (not those of `never` contents, nor those served from the store) and records
/// the digests of the content files whose stamps were taken before the
/// write. The chunk digests of a path are kept only for resources of more
/// than one chunk (a one-chunk file has nothing to reuse from).
pub fn store_after_write(
    cache: &Cache,
    wim: &Path,
    report: &WimReport,
    params: &ResourceParams,
    never_paths: &BTreeSet<String>,
    stamps: &[(String, PathBuf, Stamp)],
) {
    let staging = super::Staging::new(cache);
    store_from(
        &staging,
        std::fs::File::open(wim).as_ref().ok(),
        report,
        params,
        never_paths,
        stamps,
    );
    staging.commit();
}

/// [`store_after_write`] from the WIM open as `file` (None: only the digests
/// are recorded), the entries staged until the caller commits them.
pub fn store_from(
    staging: &super::Staging<'_>,
    file: Option<&std::fs::File>,
    report: &WimReport,
    params: &ResourceParams,
    never_paths: &BTreeSet<String>,
    stamps: &[(String, PathBuf, Stamp)],
) {
    let cache = staging.cache();
    let never: BTreeSet<[u8; 20]> = report
        .files
        .iter()
        .filter(|f| never_paths.contains(&f.path))
        .map(|f| f.sha1)
        .collect();
    let mut by_sha1: BTreeMap<[u8; 20], Vec<&str>> = BTreeMap::new();
    for f in &report.files {
        if !never_paths.contains(&f.path) {
            by_sha1.entry(f.sha1).or_default().push(&f.path);
        }
    }
    for r in report.resources.iter().filter(|r| !r.from_store) {
        if never.contains(&r.sha1) {
            continue;
        }
        // Written now, not served: there was no usable entry when the
        // writer asked (or it could not ask: a file it did not know), so an
        // entry found under the key now may be a damaged one: replaced.
        let key = resource_key(&r.sha1, r.size, params);
        if !r.compressed {
            // The content is the resource: the next build copies the file.
            staging.put(&key, &[RAW_MARKER]);
            continue;
        }
        let Some(file) = file else {
            continue;
        };
        // Chunk digests go with resources stored whole now: a spliced one
        // (an exported image) is not read back for reuse.
        if store_spliced(staging, &key, file, r, u64::from(params.chunk))
            || !staging.put_file_ranges(&key, &[1], file, &[(r.offset, r.size_in_wim)])
        {
            continue;
        }
        let Some(digests) = r.chunk_sha1.as_ref().filter(|d| d.len() > 1) else {
            continue;
        };
        let mut body = Vec::with_capacity(28 + 20 * digests.len());
        body.extend_from_slice(&r.sha1);
        body.extend_from_slice(&r.size.to_le_bytes());
        for d in digests {
            body.extend_from_slice(d);
        }
        for path in by_sha1.get(&r.sha1).into_iter().flatten() {
            staging.put(&chunks_key(path, params), &body);
        }
    }
    let by_path: BTreeMap<&str, &crate::wimwrite::FileDigest> =
        report.files.iter().map(|f| (f.path.as_str(), f)).collect();
    for (wim_path, file, stamp) in stamps {
        if let Some(f) = by_path.get(wim_path.as_str()) {
            let d = Digests {
                size: f.size,
                sha1: f.sha1,
                sha256: f.sha256,
            };
            hashes::record(cache, file, stamp, &d);
        }
    }
}

/// Stores the compressed resource `r` of `wim` without its raw chunks when
/// those are worth leaving out; false when it should be stored whole.
fn store_spliced(
    staging: &super::Staging<'_>,
    key: &Key,
    wim: &std::fs::File,
    r: &crate::wimwrite::ResourceInfo,
    chunk: u64,
) -> bool {
    use std::os::unix::fs::FileExt;
    // A resource of fewer raw bytes than are worth leaving out: whole.
    if r.size < SPLICE_MIN {
        return false;
    }
    let mut table = vec![0u8; table_len(r.size, chunk)];
    let read = wim.read_exact_at(&mut table, r.offset);
    let Some(area) = r.size_in_wim.checked_sub(table.len() as u64) else {
        return false;
    };
    let Some(spans) = read
        .ok()
        .and_then(|()| chunk_spans(&table, r.size, chunk, area))
    else {
        return false;
    };
    let raw = |i: usize, s: &std::ops::Range<u64>| s.end - s.start == chunk_size(i, r.size, chunk);
    let raw_bytes: u64 = spans
        .iter()
        .enumerate()
        .filter(|(i, s)| raw(*i, s))
        .map(|(_, s)| s.end - s.start)
        .sum();
    if raw_bytes < SPLICE_MIN {
        return false;
    }
    // The kept chunks as ranges of the WIM, adjacent ones merged.
    let base = r.offset + table.len() as u64;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (_, s) in spans.iter().enumerate().filter(|(i, s)| !raw(*i, s)) {
        match ranges.last_mut() {
            Some(last) if last.0 + last.1 == base + s.start => last.1 += s.end - s.start,
            _ => ranges.push((base + s.start, s.end - s.start)),
        }
    }
    let mut prefix = vec![SPLICED];
    prefix.extend_from_slice(&r.size_in_wim.to_le_bytes());
    prefix.extend_from_slice(&table);
    staging.put_file_ranges(key, &prefix, wim, &ranges);
    true
}

/// The stamp of an export body to record once the build no longer holds a
/// link to it ([`Store::release_file`](super::Store::release_file): the
/// local store records the body's file-system stamp then, after the build's
/// staging folder is gone).
pub struct Restamp {
    key: Key,
}

impl Restamp {
    /// Tells the store the build no longer holds the body (see the type's doc).
    pub fn apply(self, cache: &Cache) {
        cache.release_file(&self.key);
    }
}

/// Restores an exported image at `dst` from the store (the local store: a
/// hard link to its body, read to check its SHA-256 only when its stamp
/// moved); its digests. None on a miss or a bad entry (removed; `dst`
/// removed too).
pub fn restore_export(cache: &Cache, key: &Key, dst: &Path) -> Option<(KnownDigests, Restamp)> {
    let digests = cache.restore_file(key, dst)?;
    Some((digests, Restamp { key: key.clone() }))
}

/// A freshly exported image taken into the cache, whose entry waits for
/// its digests: the WIM writer computes them when it reads the image for
/// the media, so hashing it here as well would read 100s of MB twice.
pub struct PendingExport {
    key: Key,
    /// The exported file in the build's staging folder (the local store: a
    /// link to its body).
    pub staged: PathBuf,
}

/// Takes the freshly exported image at `file` into the cache under `key`
/// (the local store links it, or copies it); its entry is written by
/// [`PendingExport::complete`].
pub fn link_export(cache: &Cache, key: &Key, file: &Path) -> Option<PendingExport> {
    cache.link_file(key, file).then(|| PendingExport {
        key: key.clone(),
        staged: file.to_path_buf(),
    })
}

impl PendingExport {
    /// Writes the entry with the image's digests — given by a reader of the
    /// staged file, or read from the body when `None`. What the store
    /// records once the build's own link to the body is gone is the
    /// returned [`Restamp`]'s; None when the body changed since it was
    /// linked (then no entry: the next build exports again).
    pub fn complete(self, cache: &Cache, digests: Option<KnownDigests>) -> Option<Restamp> {
        cache
            .complete_file(&self.key, digests)
            .then_some(Restamp { key: self.key })
    }
}

#[cfg(test)]
mod tests {
    use super::super::local::entry_path;
    use super::*;
    use crate::wimwrite::{testgen, write_wim, Content, EntryKind, WimEntry, WriteOptions};
    use sha2::{Digest, Sha256};
    use std::sync::atomic::AtomicBool;

    fn write(entries: &[WimEntry], out: &Path, store: Option<Arc<WimStore>>) -> WimReport {
        let opts = WriteOptions {
            threads: 2,
            store: store.map(|s| crate::wimwrite::StoreHandle(s as Arc<dyn ResourceStore>)),
            ..WriteOptions::default()
        };
        let mut f = std::fs::File::create(out).unwrap();
        write_wim(
            entries,
            &mut f,
            &opts,
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
        .unwrap()
    }

    /// Flips the byte `back` bytes from the end of the cache entry `entry`;
    /// the next write with `opts` must fail as `CacheCorrupt` and drop it.
    fn damaged_entry_fails_the_write(
        entry: &Path,
        back: usize,
        entries: &[WimEntry],
        opts: &WriteOptions,
        dir: &Path,
    ) {
        let mut raw = std::fs::read(entry).unwrap();
        let at = raw.len() - back;
        raw[at] ^= 1;
        std::fs::write(entry, raw).unwrap();
        let mut f = std::fs::File::create(dir.join("damaged.wim")).unwrap();
        let e = write_wim(
            entries,
            &mut f,
            opts,
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(
            matches!(e, crate::wimwrite::WimWriteError::CacheCorrupt(_)),
            "{e}"
        );
        assert!(!entry.exists());
    }

    /// The digests the build would know of `files` (as [`entries_in`] names them).
    fn known_digests(src: &Path, files: &[(&str, Vec<u8>)]) -> BTreeMap<PathBuf, KnownDigests> {
        files
            .iter()
            .map(|(p, bytes)| {
                let d = KnownDigests {
                    sha1: sha1::Sha1::digest(bytes).into(),
                    sha256: Sha256::digest(bytes).into(),
                };
                (src.join(p.replace('/', "_")), d)
            })
            .collect()
    }

    /// Writes `files` under `src` (one flat folder) and lists them as entries.
    fn entries_in(src: &Path, files: &[(&str, Vec<u8>)]) -> Vec<WimEntry> {
        files
            .iter()
            .map(|(p, bytes)| {
                let f = src.join(p.replace('/', "_"));
                std::fs::write(&f, bytes).unwrap();
                WimEntry {
                    path: (*p).into(),
                    kind: EntryKind::File {
                        size: bytes.len() as u64,
                        content: Content::Path(f),
                    },
                }
            })
            .collect()
    }

    /// A changed file's unchanged chunks come from its previous resource,
    /// and the WIM is the bytes of a write without any cache.
    #[test]
    fn changed_files_reuse_their_unchanged_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(&dir.path().join("cache"), 1 << 30).unwrap());
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let files = [
            ("drivers/net.sys", testgen::binary(40 * 32768 + 123, 7)),
            ("docs/readme.txt", testgen::text(9 * 32768, 8)),
            ("pkg/data.cab", testgen::noise(3 * 32768, 9)),
        ];
        let entries = entries_in(&src, &files);
        let store = || {
            Arc::new(WimStore::new(
                Arc::clone(&cache),
                BTreeMap::new(),
                BTreeSet::new(),
                BTreeSet::new(),
                BTreeSet::new(),
            ))
        };
        let first = dir.path().join("first.wim");
        let rep = write(&entries, &first, Some(store()));
        assert_eq!(rep.chunks_reused, 0);
        store_after_write(
            &cache,
            &first,
            &rep,
            &rep.resource_params,
            &BTreeSet::new(),
            &[],
        );

        // One byte of chunk 17 of the driver changes, in place.
        let drv = src.join("drivers_net.sys");
        let mut bytes = std::fs::read(&drv).unwrap();
        bytes[17 * 32768 + 5] ^= 0x5A;
        std::fs::write(&drv, &bytes).unwrap();
        let second = dir.path().join("second.wim");
        let rep2 = write(&entries, &second, Some(store()));
        // The driver's 40 other chunks, and the text's 9, reused; the
        // noise is a raw resource (nothing to reuse).
        assert_eq!(rep2.chunks_reused, 40 + 9, "{rep2:?}");
        let clean = dir.path().join("clean.wim");
        write(&entries, &clean, None);
        assert_eq!(
            std::fs::read(&second).unwrap(),
            std::fs::read(&clean).unwrap()
        );
        crate::wim::Wim::open(&second).unwrap().verify().unwrap();

        // A corrupted previous resource is detected, dropped and not used.
        store_after_write(
            &cache,
            &second,
            &rep2,
            &rep2.resource_params,
            &BTreeSet::new(),
            &[],
        );
        let d = rep2
            .files
            .iter()
            .find(|f| f.path == "drivers/net.sys")
            .unwrap();
        let key = resource_key(&d.sha1, d.size, &rep2.resource_params);
        let entry = entry_path(&dir.path().join("cache"), &key);
        let mut raw = std::fs::read(&entry).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 1;
        std::fs::write(&entry, raw).unwrap();
        bytes[3 * 32768] ^= 0x33;
        std::fs::write(&drv, &bytes).unwrap();
        let third = dir.path().join("third.wim");
        let rep3 = write(&entries, &third, Some(store()));
        assert_eq!(rep3.chunks_reused, 9, "only the text's chunks: {rep3:?}");
        assert!(!entry.exists(), "the corrupted entry is dropped");
        write(&entries, &clean, None);
        assert_eq!(
            std::fs::read(&third).unwrap(),
            std::fs::read(&clean).unwrap()
        );
    }

    /// Raw resources and the raw chunks of compressed ones are not kept in
    /// the cache: a rebuild copies them from the content files, with the
    /// same bytes; a corrupted entry or a changed content file is caught.
    #[test]
    fn raw_bytes_come_from_the_content_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(&dir.path().join("cache"), 1 << 30).unwrap());
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        // An image-like file: compressible head, then 9 MiB that is not
        // (a compressed resource whose chunks are mostly raw); a cab (a raw
        // resource); a text file (compressed, kept whole).
        let mut image = testgen::text(2 << 20, 1);
        image.extend(testgen::noise(9 << 20, 2));
        let files = [
            ("sources/install.wim", image),
            ("pkg/data.cab", testgen::noise(12 << 20, 3)),
            ("docs/readme.txt", testgen::text(300 << 10, 4)),
        ];
        let entries = entries_in(&src, &files);
        let known: BTreeMap<PathBuf, KnownDigests> = files
            .iter()
            .map(|(p, bytes)| {
                (
                    src.join(p.replace('/', "_")),
                    KnownDigests {
                        sha1: sha1::Sha1::digest(bytes).into(),
                        sha256: Sha256::digest(bytes).into(),
                    },
                )
            })
            .collect();
        let store = || {
            Arc::new(WimStore::new(
                Arc::clone(&cache),
                known.clone(),
                known.keys().cloned().collect(),
                BTreeSet::new(),
                BTreeSet::new(),
            ))
        };
        let first = dir.path().join("first.wim");
        let rep = write(&entries, &first, Some(store()));
        store_after_write(
            &cache,
            &first,
            &rep,
            &rep.resource_params,
            &BTreeSet::new(),
            &[],
        );
        let entry_of = |path: &str| {
            let f = rep.files.iter().find(|f| f.path == path).unwrap();
            entry_path(
                &dir.path().join("cache"),
                &resource_key(&f.sha1, f.size, &rep.resource_params),
            )
        };
        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        let (image_entry, cab_entry) = (entry_of("sources/install.wim"), entry_of("pkg/data.cab"));
        assert!(
            len(&image_entry) < (2 << 20),
            "raw chunks left out: {}",
            len(&image_entry)
        );
        assert!(len(&cab_entry) < 4096, "a raw resource is only a mark");
        assert!(len(&entry_of("docs/readme.txt")) > 4096);

        let second = dir.path().join("second.wim");
        let rep2 = write(&entries, &second, Some(store()));
        assert!(rep2.resources.iter().all(|r| r.from_store), "{rep2:?}");
        let clean = dir.path().join("clean.wim");
        write(&entries, &clean, None);
        assert!(std::fs::read(&second).unwrap() == std::fs::read(&clean).unwrap());
        crate::wim::Wim::open(&second).unwrap().verify().unwrap();

        // A flipped byte in the spliced entry: detected, dropped, written again.
        let opts = WriteOptions {
            threads: 2,
            store: Some(crate::wimwrite::StoreHandle(
                store() as Arc<dyn ResourceStore>
            )),
            ..WriteOptions::default()
        };
        damaged_entry_fails_the_write(&image_entry, 10, &entries, &opts, dir.path());
        let third = dir.path().join("third.wim");
        write(&entries, &third, Some(store()));
        assert!(std::fs::read(&third).unwrap() == std::fs::read(&clean).unwrap());
    }

    #[test]
    fn a_replayed_write_is_the_clean_file_written_front_to_back_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(&dir.path().join("cache"), 1 << 30).unwrap());
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut image = testgen::text(1 << 20, 11);
        image.extend(testgen::noise(5 << 20, 12));
        let old = [
            ("sources/install.wim", image),
            ("pkg/data.cab", testgen::noise(3 << 20, 13)),
            ("docs/readme.txt", testgen::text(300 << 10, 14)),
            ("docs/small.txt", testgen::text(5000, 15)),
        ];
        let known = known_digests(&src, &old);
        let store = || {
            crate::wimwrite::StoreHandle(Arc::new(WimStore::new(
                Arc::clone(&cache),
                known.clone(),
                known.keys().cloned().collect(),
                BTreeSet::new(),
                BTreeSet::new(),
            )) as Arc<dyn ResourceStore>)
        };
        let first = dir.path().join("first.wim");
        let entries = entries_in(&src, &old);
        let opts = WriteOptions {
            threads: 2,
            store: Some(store()),
            ..WriteOptions::default()
        };
        assert!(
            !crate::wimwrite::replay_pays(&entries, &opts),
            "nothing is stored yet"
        );
        let rep = write(&entries, &first, None);
        store_after_write(
            &cache,
            &first,
            &rep,
            &rep.resource_params,
            &BTreeSet::new(),
            &[],
        );

        // The rebuild: one new file (compressed now), the rest stored.
        let mut files = old.to_vec();
        files.insert(2, ("drivers/new.sys", testgen::text(700 << 10, 16)));
        let entries = entries_in(&src, &files);
        let clean = dir.path().join("clean.wim");
        write(&entries, &clean, None);
        let opts = WriteOptions {
            replay: true,
            ..opts
        };
        assert!(crate::wimwrite::replay_pays(&entries, &opts));
        let out = dir.path().join("replayed.wim");
        let mut f = crate::fsutil::direct::DirectFile::create(&out, 0, true).unwrap();
        let rep = write_wim(
            &entries,
            &mut f,
            &opts,
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        let digest = f.finish().unwrap().expect("written forward").digest();
        assert_eq!(rep.resources.iter().filter(|r| !r.from_store).count(), 1);
        let bytes = std::fs::read(&out).unwrap();
        assert!(
            bytes == std::fs::read(&clean).unwrap(),
            "replay changed bytes"
        );
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&bytes)));
        crate::wim::Wim::open(&out).unwrap().verify().unwrap();

        // A stored entry damaged after the layout was recorded: found while
        // copying, dropped, and the write fails for the caller to retry.
        let f = rep
            .files
            .iter()
            .find(|f| f.path == "docs/readme.txt")
            .unwrap();
        let entry = entry_path(
            &dir.path().join("cache"),
            &resource_key(&f.sha1, f.size, &rep.resource_params),
        );
        damaged_entry_fails_the_write(&entry, 3, &entries, &opts, dir.path());
    }

    /// The resource cache's round trips through a store that is not the
    /// cache folder (`MemStore`: no paths, headers, renames or links):
    /// stored, spliced and raw resources served, chunks reused, a damaged
    /// entry dropped through the name the writer hands back, an export
    /// taken in and restored — so the layer above uses the store only.
    #[test]
    fn resources_and_exports_round_trip_through_any_store() {
        let dir = tempfile::tempdir().unwrap();
        let mem = super::super::memory::MemStore::default();
        let cache = Arc::new(Cache::with_store(Box::new(mem.clone())));
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut image = testgen::text(1 << 20, 31);
        image.extend(testgen::noise(2 << 20, 32));
        let files = [
            ("sources/install.wim", image),
            ("drivers/net.sys", testgen::binary(40 * 32768 + 123, 33)),
            ("pkg/data.cab", testgen::noise(3 * 32768, 34)),
            ("docs/readme.txt", testgen::text(9 * 32768, 35)),
        ];
        let entries = entries_in(&src, &files);
        let mut known = known_digests(&src, &files);
        let store = |known: &BTreeMap<PathBuf, KnownDigests>| {
            Arc::new(WimStore::new(
                Arc::clone(&cache),
                known.clone(),
                BTreeSet::new(),
                BTreeSet::new(),
                BTreeSet::new(),
            ))
        };
        let clean = dir.path().join("clean.wim");
        write(&entries, &clean, None);
        let first = dir.path().join("first.wim");
        let rep = write(&entries, &first, Some(store(&known)));
        store_after_write(
            &cache,
            &first,
            &rep,
            &rep.resource_params,
            &BTreeSet::new(),
            &[],
        );
        assert_eq!(mem.count("res"), 4, "{:?}", mem.kinds_put());
        assert!(mem.count("chunks") >= 1);

        let second = dir.path().join("second.wim");
        let rep2 = write(&entries, &second, Some(store(&known)));
        assert!(rep2.resources.iter().all(|r| r.from_store), "{rep2:?}");
        assert!(std::fs::read(&second).unwrap() == std::fs::read(&clean).unwrap());

        // One byte of the driver changes: its other chunks are reused.
        let drv = src.join("drivers_net.sys");
        known.remove(&drv);
        let mut bytes = std::fs::read(&drv).unwrap();
        bytes[17 * 32768 + 5] ^= 0x5A;
        std::fs::write(&drv, &bytes).unwrap();
        let third = dir.path().join("third.wim");
        let rep3 = write(&entries, &third, Some(store(&known)));
        assert_eq!(rep3.chunks_reused, 40, "{rep3:?}");
        write(&entries, &clean, None);
        assert!(std::fs::read(&third).unwrap() == std::fs::read(&clean).unwrap());

        // A damaged entry fails the write, is dropped by the key the store
        // served it under, and the next write is the clean bytes again.
        let f = rep
            .files
            .iter()
            .find(|f| f.path == "docs/readme.txt")
            .unwrap();
        let key = resource_key(&f.sha1, f.size, &rep.resource_params);
        assert!(mem.damage(&key));
        let opts = WriteOptions {
            threads: 2,
            store: Some(crate::wimwrite::StoreHandle(
                store(&known) as Arc<dyn ResourceStore>
            )),
            ..WriteOptions::default()
        };
        let mut out = std::fs::File::create(dir.path().join("damaged.wim")).unwrap();
        let e = write_wim(
            &entries,
            &mut out,
            &opts,
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(
            matches!(e, crate::wimwrite::WimWriteError::CacheCorrupt(_)),
            "{e}"
        );
        assert!(!cache.contains(&key), "the damaged entry is dropped");
        assert_eq!(
            cache
                .counters
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let fourth = dir.path().join("fourth.wim");
        write(&entries, &fourth, Some(store(&known)));
        assert!(std::fs::read(&fourth).unwrap() == std::fs::read(&clean).unwrap());

        // An exported image: taken in, its entry written with the digests
        // read, restored elsewhere with them.
        let input = ExportInput {
            sha256: &[5; 32],
            parts: &[],
            convert: None,
        };
        let key = export_key(&input, 1, true, &[6; 16], 0);
        let staged = dir.path().join("boot.wim");
        let body = testgen::binary(200_000, 36);
        std::fs::write(&staged, &body).unwrap();
        let r = link_export(&cache, &key, &staged)
            .and_then(|p| p.complete(&cache, None))
            .expect("stored");
        r.apply(&cache);
        let dst = dir.path().join("restored.wim");
        let (d, r) = restore_export(&cache, &key, &dst).expect("restored");
        r.apply(&cache);
        assert_eq!(std::fs::read(&dst).unwrap(), body);
        assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&body)));
        assert!(restore_export(&cache, &export_key(&input, 2, true, &[6; 16], 0), &dst).is_none());

        // Verification marks and boot-file digests are plain entries.
        assert!(!is_verified(&cache, "wimlib-verify", &[7; 32], 9));
        mark_verified(&cache, "wimlib-verify", &[7; 32], 9);
        assert!(is_verified(&cache, "wimlib-verify", &[7; 32], 9));
        let bk = boot_file_key(&[8; 32], 1, "Windows/Boot/EFI/bootmgfw.efi");
        remember_digests(&cache, &bk, body.len() as u64, &d);
        assert_eq!(boot_file_digests(&cache, &bk, &dst), Some(d));
        assert!(cache.summary().starts_with("cache memory: "));
    }

    #[test]
    fn chunk_tables_are_read_as_written() {
        // Three chunks of 8 bytes stored as 3, 8 (raw) and 2 bytes.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&11u32.to_le_bytes());
        bytes.extend_from_slice(&[1u8; 13]);
        let r = chunk_ranges(&bytes, 20, 8).unwrap();
        assert_eq!(r, vec![8..11, 11..19, 19..21]);
        // A table pointing past the area, or a chunk longer than the chunk size.
        assert!(chunk_ranges(&bytes[..12], 20, 8).is_none());
        let mut long = bytes.clone();
        long[4..8].copy_from_slice(&12u32.to_le_bytes());
        long.extend_from_slice(&[0; 4]);
        assert!(chunk_ranges(&long, 20, 8).is_none());
    }
}
