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
//!   flag, the derived GUID, the epoch and wimlib's version. Body: length,
//!   SHA-256 and SHA-1 of the exported WIM, which sits beside the entry as a
//!   plain `.wim` file: a restore hard-links it into the staging folder (one
//!   read to check it, no copy).
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
use super::{Cache, Key};
use crate::ids::hex;
use crate::wimwrite::{
    KnownDigests, PrevChunks, ResourceParams, ResourceStore, Splice, Stored, StoredCheck,
    StoredResource, WimReport,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        }
    }
}

/// Reads the head of a spliced `res/` entry (after its flag): the resource
/// size, the chunk table, which chunks are raw. None when it is malformed.
fn spliced(e: &mut super::Entry, size: u64, chunk: u64) -> Option<StoredResource> {
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
    let reader = std::io::BufReader::with_capacity(1 << 20, e.reader.try_clone().ok()?.take(kept));
    Some(StoredResource {
        reader: Box::new(reader),
        len: size_in_wim,
        compressed: true,
        check: StoredCheck::Digest {
            hasher,
            expected: e.check,
        },
        id: e.path.display().to_string(),
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
        let mut e = self.cache.open_entry(&resource_key(sha1, size, params))?;
        let mut flag = [0u8; 1];
        if e.len < 1 || e.reader.read_exact(&mut flag).is_err() || flag[0] > SPLICED {
            self.cache.reject(&e);
            return None;
        }
        if flag[0] == SPLICED {
            let spliced = spliced(&mut e, size, u64::from(params.chunk));
            if spliced.is_none() {
                self.cache.reject(&e);
            }
            return spliced.map(Stored::Spliced);
        }
        if flag[0] == RAW_MARKER {
            // The whole body is the flag: check it like any entry.
            if e.len != 1 || xxhash_rust::xxh3::xxh3_128(&flag) != e.check {
                self.cache.reject(&e);
                return None;
            }
            return Some(Stored::Raw);
        }
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
            id: e.path.display().to_string(),
            splice: None,
        }))
    }

    fn corrupt(&self, id: &str) {
        self.cache.reject_path(Path::new(id));
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
            self.cache.reject_path(&self.cache.path(&key));
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

/// The body of an export entry: a plain WIM file beside the entry, so that
/// a restore is a hard link instead of a copy.
fn export_body(cache: &Cache, key: &Key) -> PathBuf {
    let mut p = cache.path(key).into_os_string();
    p.push(".wim");
    PathBuf::from(p)
}

/// Hard-links `src` to `dst`, or copies it when they are on different file systems.
fn link_or_copy(src: &Path, dst: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(_) => std::fs::copy(src, dst).map(|_| ()),
    }
}

/// What an export entry records about its body besides the digests: the
/// file system's stamp of it (inode, device, mtime, ctime; the size is the
/// entry's length). A body whose stamp is unchanged is trusted without
/// reading it — the rule of the input hash cache (`hashes`): any write or
/// time change sets the ctime, which no unprivileged program can set back.
type BodyStamp = super::hashes::Identity;

/// An export entry: length, SHA-256 and SHA-1 of the body, then (from v2
/// on) the body's stamp.
fn encode_export(len: u64, d: &KnownDigests, stamp: Option<BodyStamp>) -> Vec<u8> {
    let mut meta = Vec::with_capacity(108);
    meta.extend_from_slice(&len.to_le_bytes());
    meta.extend_from_slice(&d.sha256);
    meta.extend_from_slice(&d.sha1);
    if let Some(s) = stamp {
        meta.extend_from_slice(&s.ino.to_le_bytes());
        meta.extend_from_slice(&s.dev.to_le_bytes());
        meta.extend_from_slice(&s.mtime_ns.to_le_bytes());
        meta.extend_from_slice(&s.ctime_ns.to_le_bytes());
    }
    meta
}

fn decode_export(meta: &[u8]) -> Option<(u64, KnownDigests, Option<BodyStamp>)> {
    if meta.len() != 60 && meta.len() != 108 {
        return None;
    }
    let len = u64::from_le_bytes(meta[..8].try_into().ok()?);
    let d = KnownDigests {
        sha256: meta[8..40].try_into().ok()?,
        sha1: meta[40..60].try_into().ok()?,
    };
    let stamp = if meta.len() == 108 {
        Some(BodyStamp {
            ino: u64::from_le_bytes(meta[60..68].try_into().ok()?),
            dev: u64::from_le_bytes(meta[68..76].try_into().ok()?),
            mtime_ns: i128::from_le_bytes(meta[76..92].try_into().ok()?),
            ctime_ns: i128::from_le_bytes(meta[92..108].try_into().ok()?),
        })
    } else {
        None
    };
    Some((len, d, stamp))
}

/// The stamp of an export body to record once the build no longer holds a
/// link to it. Linking the body into the build's staging folder and
/// unlinking it there both set its ctime, so the stamp a restore checks
/// would never match again; this is taken after the staging folder is
/// gone, and only if the body's mtime and size are still those of the bytes
/// this build checked (a write since then moves the mtime, and the entry is
/// then left to be read in full next time).
pub struct Restamp {
    key: Key,
    body: PathBuf,
    len: u64,
    digests: KnownDigests,
    checked: BodyStamp,
}

impl Restamp {
    /// Records the body's current stamp in its entry (see the type's doc).
    pub fn apply(self, cache: &Cache) {
        let Ok(md) = std::fs::metadata(&self.body) else {
            return;
        };
        let now = BodyStamp::of(&md);
        let same = md.len() == self.len
            && (now.ino, now.dev, now.mtime_ns)
                == (self.checked.ino, self.checked.dev, self.checked.mtime_ns);
        if same && now != self.checked {
            cache.put(
                &self.key,
                &encode_export(self.len, &self.digests, Some(now)),
            );
        }
    }
}

/// Restores an exported image at `dst`: the entry (length, SHA-256, SHA-1
/// of the body and the body's stamp, itself checked) and its body,
/// hard-linked (or copied). The body is read to check its SHA-256 only when
/// its stamp changed since the entry recorded it (an older entry, a
/// concurrent build, a write). None on a miss or a bad entry (removed; `dst`
/// removed too).
pub fn restore_export(cache: &Cache, key: &Key, dst: &Path) -> Option<(KnownDigests, Restamp)> {
    let meta = cache.get(key)?;
    let body = export_body(cache, key);
    let bad = |why_dst: bool| {
        if why_dst {
            let _ = std::fs::remove_file(dst);
        }
        let _ = std::fs::remove_file(&body);
        cache.reject_path(&cache.path(key));
        None
    };
    let Some((len, digests, stamp)) = decode_export(&meta) else {
        return bad(false);
    };
    let Ok(md) = std::fs::metadata(&body) else {
        return bad(false);
    };
    if md.len() != len {
        return bad(false);
    }
    let before = BodyStamp::of(&md);
    let trusted = stamp == Some(before);
    if link_or_copy(&body, dst).is_err() {
        return bad(true);
    }
    if !trusted {
        match crate::fsutil::sha256::sha256_file(dst, &|_| {}, &|| false) {
            Ok(d) if d == digests.sha256 => {}
            _ => return bad(true),
        }
    }
    let restamp = Restamp {
        key: key.clone(),
        body,
        len,
        digests,
        checked: before,
    };
    Some((digests, restamp))
}

/// A freshly exported image linked into the cache, whose entry waits for
/// its digests: the WIM writer computes them when it reads the image for
/// the media, so hashing it here as well would read 100s of MB twice.
pub struct PendingExport {
    key: Key,
    body: PathBuf,
    /// The exported file in the build's staging folder (a link to `body`).
    pub staged: PathBuf,
    len: u64,
    linked: BodyStamp,
}

/// Links the freshly exported image at `file` into the cache under `key`
/// (or copies it); its entry is written by [`PendingExport::complete`].
pub fn link_export(cache: &Cache, key: &Key, file: &Path) -> Option<PendingExport> {
    let tmp = cache.tmp_path(key);
    let body = export_body(cache, key);
    let res = (|| -> std::io::Result<PendingExport> {
        let md0 = std::fs::metadata(file)?;
        link_or_copy(file, &tmp)?;
        cache.place(&tmp, &body)?;
        cache.account(md0.len() as i64);
        Ok(PendingExport {
            key: key.clone(),
            body: body.clone(),
            staged: file.to_path_buf(),
            len: md0.len(),
            linked: BodyStamp::of(&md0),
        })
    })();
    match res {
        Ok(p) => Some(p),
        Err(_) => {
            let _ = std::fs::remove_file(&tmp);
            cache
                .counters
                .put_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    }
}

impl PendingExport {
    /// Writes the entry with the image's digests — given by a reader of the
    /// staged file, or read from the body when `None`. The stamp is recorded
    /// by the returned [`Restamp`], once the build's own link to the body is
    /// gone; None when the body changed since it was linked (then no entry:
    /// the next build exports again).
    pub fn complete(self, cache: &Cache, digests: Option<KnownDigests>) -> Option<Restamp> {
        let md = std::fs::metadata(&self.body).ok()?;
        let now = BodyStamp::of(&md);
        // A link shares the staged file's inode and must not have moved; a
        // copy (another file system) is entered unstamped: a restore then
        // reads it to check it.
        let linked = (now.ino, now.dev) == (self.linked.ino, self.linked.dev);
        if md.len() != self.len || (linked && now.mtime_ns != self.linked.mtime_ns) {
            return None;
        }
        let digests = match digests {
            Some(d) => d,
            None => {
                let d = hashes::read_digests(&self.body).ok()?;
                if d.size != self.len {
                    return None;
                }
                KnownDigests {
                    sha1: d.sha1,
                    sha256: d.sha256,
                }
            }
        };
        cache.put(&self.key, &encode_export(self.len, &digests, None));
        linked.then_some(Restamp {
            key: self.key,
            body: self.body,
            len: self.len,
            digests,
            checked: now,
        })
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn an_export_body_is_trusted_by_its_stamp_and_read_again_when_it_moved() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c"), 1 << 30).unwrap();
        let input = ExportInput {
            sha256: &[1; 32],
            parts: &[],
            convert: None,
        };
        let key = export_key(&input, 1, false, &[2; 16], 0);
        let staged = dir.path().join("staged.wim");
        let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&staged, &body).unwrap();
        let want = hashes::read_digests(&staged).unwrap();
        let r = link_export(&cache, &key, &staged)
            .and_then(|p| p.complete(&cache, None))
            .expect("stored");
        // The build's link goes away, then the stamp is recorded.
        std::fs::remove_file(&staged).unwrap();
        r.apply(&cache);
        let meta = cache.get(&key).unwrap();
        assert_eq!(meta.len(), 108, "the entry holds the body's stamp");
        let dst = dir.path().join("restored.wim");
        let (d, r) = restore_export(&cache, &key, &dst).expect("restored");
        assert_eq!((d.sha1, d.sha256), (want.sha1, want.sha256));
        assert_eq!(std::fs::read(&dst).unwrap(), body);
        std::fs::remove_file(&dst).unwrap();
        r.apply(&cache);

        // Same size, one byte changed, the old mtime put back: the ctime
        // moved, so the body is read, found wrong and dropped.
        let path = export_body(&cache, &key);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut bad = body.clone();
        bad[123_456] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(restore_export(&cache, &key, &dst).is_none());
        assert!(!dst.exists() && !path.exists(), "entry and copy removed");
        assert!(cache.get(&key).is_none());
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
        let entry = cache.path(&key);
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
            cache.path(&resource_key(&f.sha1, f.size, &rep.resource_params))
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
        let known: BTreeMap<PathBuf, KnownDigests> = old
            .iter()
            .map(|(p, bytes)| {
                let d = KnownDigests {
                    sha1: sha1::Sha1::digest(bytes).into(),
                    sha256: Sha256::digest(bytes).into(),
                };
                (src.join(p.replace('/', "_")), d)
            })
            .collect();
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
        let entry = cache.path(&resource_key(&f.sha1, f.size, &rep.resource_params));
        damaged_entry_fails_the_write(&entry, 3, &entries, &opts, dir.path());
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
