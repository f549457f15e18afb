//! The content-addressed build cache: a folder of self-checking entries.
//!
//! Every entry is one file named after the SHA-256 of its key text, in a
//! subfolder per kind (`hash/`, `res/`, `chunks/`, `export/`, `verify/`,
//! `keys/`). It starts with
//! a header — magic, the key text itself, the body length and the XXH3-128
//! of the body — so a reader can tell a corrupted, truncated or misplaced
//! entry from a good one: such an entry is removed and reported as a miss,
//! never used. The check is against accidents (a torn write, a flipped bit,
//! a truncated copy), which a 128-bit checksum catches as surely as SHA-256
//! at a tenth of the cost; an unkeyed SHA-256 would not stop someone who can
//! write into the cache either (they would write its digest too). Entries are written to a temporary file in the cache folder and
//! renamed into place, so readers (other builds included) only ever see
//! complete entries; two builds putting the same key both write valid
//! entries and the last rename wins.
//!
//! The folder is marked by a `CACHEDIR.TAG` (the Cache Directory Tagging
//! convention, plus our format version): a folder that is neither empty nor
//! tagged nor laid out as an earlier mediabuild cache is refused, and
//! eviction and `clean` only ever delete files whose header proves they are
//! entries (and the `.wim` bodies of export entries).
//!
//! Costs grow with what a build touches, not with the cache (issue 18: a
//! walk of the whole folder after every put made builds of many small files
//! quadratic):
//! * size accounting is a running total in `usage`, updated under a file
//!   lock once per build (or per 64 MiB stored), from each put's size minus
//!   the size of the entry it replaced; the folder is walked only when the
//!   total passes the limit (then entries are removed down to 90 % of it, so
//!   walks are at least a tenth of the limit apart) or when the total is
//!   older than a week (it drifts when builds are killed or race);
//! * least recently used by the entries' modification times, which a hit
//!   refreshes only when they are more than an hour old: repeated hits do
//!   not write;
//! * what a build takes from the cache is not written again, and the input
//!   hash cache is one index per recipe folder (`hashes`), written only
//!   when it changed.
//!
//! The clock is only used for this bookkeeping, never for anything that
//! ends up in an artefact. The cache is an accelerator: a failure to write an
//! entry is counted and otherwise ignored, and no lookup ever turns into a
//! build error.

pub mod hashes;
pub mod keys;
pub mod resources;
pub mod status;

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

const MAGIC: &[u8; 8] = b"MBCACHE2";
/// Header bytes besides the key text: magic, key length, body length, check.
const HEAD: usize = 8 + 4 + 8 + 16;
/// Entry kinds, one subfolder each.
pub const KINDS: [&str; 6] = ["hash", "res", "chunks", "export", "verify", "keys"];
/// Default size limit: 20 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 20 << 30;
/// The tag file (<https://bford.info/cachedir/>): its first line is fixed by
/// the convention, the rest is ours.
const TAG: &str = "CACHEDIR.TAG";
const TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";
const FORMAT: u32 = 2;
/// The running total of the entries' bytes.
const USAGE: &str = "usage";
/// Stored bytes after which a build adds its share to the running total
/// (and evicts if needed) without waiting for its end.
const FLUSH_BYTES: i64 = 64 << 20;
/// A running total older than this is recomputed by a walk.
const RECOUNT_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// A hit makes an entry recent only if its time is older than this.
const TOUCH_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot {what} cache folder {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no cache folder: set XDG_CACHE_HOME or HOME, or pass --cache-dir")]
    NoDir,
    #[error(
        "{path} is not a mediabuild cache (no {TAG}, and it holds {found:?}): \
         pass --cache-dir with an empty or new folder, or move those files away"
    )]
    Foreign { path: PathBuf, found: String },
    #[error("{path} is a mediabuild cache of format {found}, this mediabuild writes format {FORMAT}: run `mediabuild cache clean --cache-dir {path}` or use another folder")]
    Format { path: PathBuf, found: String },
}

/// A cache key: its kind (subfolder) and its canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kind: &'static str,
    pub text: String,
}

impl Key {
    pub fn new(kind: &'static str, text: String) -> Key {
        debug_assert!(KINDS.contains(&kind));
        Key { kind, text }
    }
    fn file_name(&self) -> String {
        crate::ids::hex(&Sha256::digest(self.text.as_bytes()))
    }
}

/// Counts of one build's cache traffic (for the report).
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub puts: AtomicU64,
    /// Entries found corrupted or truncated, removed.
    pub dropped: AtomicU64,
    /// Puts that failed (disk full, permissions); the build went on.
    pub put_failures: AtomicU64,
    pub evicted: AtomicU64,
    /// Chunks of changed files copied from their previous version.
    pub chunks_reused: AtomicU64,
}

/// Totals of the cache folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub dir: PathBuf,
    pub max_size: u64,
    pub entries: u64,
    pub bytes: u64,
    /// Per kind: (entries, bytes).
    pub kinds: Vec<(String, u64, u64)>,
}

/// An entry opened for streaming: the reader is positioned at the body.
/// The caller must check what it reads ([`Cache::checker`]) against `check`
/// before trusting it (see [`Cache::reject`] when it does not match).
pub struct Entry {
    pub reader: File,
    pub len: u64,
    /// XXH3-128 of the body.
    pub check: u128,
    pub body_offset: u64,
    pub path: PathBuf,
}

/// An open cache folder.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    max_size: u64,
    pub counters: Counters,
    tmp_seq: AtomicU64,
    /// Bytes this process added to the entries (removals negative) and not
    /// yet added to the running total.
    pending: AtomicI64,
    /// The input hash index of this build's recipe folder.
    hashes: hashes::Index,
}

/// `$XDG_CACHE_HOME/mediabuild`, else `$HOME/.cache/mediabuild`.
pub fn default_dir() -> Option<PathBuf> {
    crate::fsutil::user_cache_dir()
}

fn encode_header(key: &Key, len: u64, check: u128) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEAD + key.text.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(key.text.len() as u32).to_le_bytes());
    h.extend_from_slice(key.text.as_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&check.to_le_bytes());
    h
}

/// The check of an entry's body, streaming.
pub type Checker = xxhash_rust::xxh3::Xxh3;

fn tag_text() -> String {
    format!(
        "{TAG_SIGNATURE}\n# This file is a cache directory tag created by mediabuild: the folder holds\n# its build cache (see https://bford.info/cachedir/). Backups may skip it.\nmediabuild-cache-format: {FORMAT}\n"
    )
}

/// Checks that `dir` is ours (tagged, empty, or laid out as a mediabuild
/// cache of before the tag), then tags it.
fn claim(dir: &Path) -> Result<(), CacheError> {
    let io_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheError::Io { what, path, source }
    };
    let tag = dir.join(TAG);
    match std::fs::read_to_string(&tag) {
        Ok(text) if text.starts_with(TAG_SIGNATURE) => {
            let format = text
                .lines()
                .find_map(|l| l.strip_prefix("mediabuild-cache-format: "))
                .unwrap_or("none");
            if format == FORMAT.to_string() {
                return Ok(());
            }
            return Err(CacheError::Format {
                path: dir.to_path_buf(),
                found: format.to_string(),
            });
        }
        _ => {}
    }
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    // Untagged: adopt it only if nothing in it is foreign.
    let ours = |n: &str| KINDS.contains(&n) || n == "tmp" || n == USAGE || n == TAG;
    let mut foreign: Vec<String> = std::fs::read_dir(dir)
        .map_err(io_err("read", dir))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !ours(n))
        .collect();
    if !foreign.is_empty() {
        foreign.sort();
        foreign.truncate(3);
        return Err(CacheError::Foreign {
            path: dir.to_path_buf(),
            found: foreign.join(", "),
        });
    }
    // A folder laid out as a cache of before the tag holds format-1 entries,
    // which this version cannot read: they go now, not one miss at a time.
    for kind in KINDS.iter().chain(&["tmp"]) {
        if let Ok(rd) = std::fs::read_dir(dir.join(kind)) {
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                let stem = name.split('.').next().unwrap_or_default();
                if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    crate::fsutil::write_file(&tag, tag_text().as_bytes()).map_err(io_err("tag", &tag))
}

/// The running total: bytes, and when the folder was last walked (Unix s).
fn read_usage(path: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    let bytes = it.next()?.parse().ok()?;
    let walked = it.next()?.parse().ok()?;
    Some((bytes, walked))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True when the file holds a cache entry (its header's magic).
fn is_entry(path: &Path) -> bool {
    let mut m = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut m))
        .is_ok()
        && &m == MAGIC
}

/// One file the cache owns: an entry, or the `.wim` body beside an export
/// entry (which counts as recent as its entry).
struct Owned {
    kind: &'static str,
    path: PathBuf,
    size: u64,
    time: SystemTime,
}

/// The file `e` of a shard of `kind`, if it is named like one of ours.
fn owned(kind: &'static str, e: &std::fs::DirEntry) -> Option<Owned> {
    let path = e.path();
    let name = e.file_name();
    let name = name.to_string_lossy();
    let (stem, body) = match name.strip_suffix(".wim") {
        Some(stem) if kind == "export" => (stem, true),
        _ => (&*name, false),
    };
    // Entry names are 64 hex digits; anything else is not ours.
    if stem.len() != 64 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let md = e.metadata().ok().filter(|m| m.is_file())?;
    let mut time = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if body {
        // An export body is as recent as its entry, which a hit touches
        // (the body is not touched: its stamp is what lets a restore
        // trust it unread).
        if let Some(m) = std::fs::metadata(path.with_extension(""))
            .ok()
            .and_then(|m| m.modified().ok())
        {
            time = time.max(m);
        }
    }
    Some(Owned {
        kind,
        path,
        size: md.len(),
        time,
    })
}

impl Cache {
    /// Opens (creating and tagging) the cache at `dir` with a size limit in
    /// bytes. Input hashes are kept in one index for the whole cache; a
    /// build uses one per recipe folder ([`Cache::with_scope`]).
    pub fn open(dir: &Path, max_size: u64) -> Result<Cache, CacheError> {
        claim(dir)?;
        // Private to its owner: entries hold media content and sealed keys.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        for k in KINDS.iter().chain(&["tmp"]) {
            let p = dir.join(k);
            std::fs::create_dir_all(&p).map_err(|source| CacheError::Io {
                what: "create",
                path: p,
                source,
            })?;
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            max_size,
            counters: Counters::default(),
            tmp_seq: AtomicU64::new(0),
            pending: AtomicI64::new(0),
            hashes: hashes::Index::new(None),
        })
    }

    /// The input hash index used is the one of `scope` (a recipe's folder):
    /// builds of the recipes of one folder share it, and its size is what
    /// they hash, not what the whole cache ever saw.
    pub fn with_scope(mut self, scope: &Path) -> Cache {
        self.hashes = hashes::Index::new(Some(std::path::absolute(scope).unwrap_or(scope.into())));
        self
    }

    pub(crate) fn hash_index(&self) -> &hashes::Index {
        &self.hashes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `key` lives: `KIND/XX/NAME`, `XX` the first two
    /// hex digits of the name — 256 folders a kind, so that no folder holds
    /// more than a few thousand entries in a cache of a million (git's object
    /// store does the same; a lookup in one huge folder slowed rebuilds).
    pub(crate) fn path(&self, key: &Key) -> PathBuf {
        let name = key.file_name();
        self.dir.join(key.kind).join(&name[..2]).join(name)
    }

    /// Renames `tmp` to `target`, creating the target's shard folder first
    /// when it is not there yet.
    pub(crate) fn place(&self, tmp: &Path, target: &Path) -> io::Result<()> {
        match std::fs::rename(tmp, target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tmp.exists() => {
                if let Some(p) = target.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::fs::rename(tmp, target)
            }
            r => r,
        }
    }

    /// Opens the entry for `key` and checks its header (magic, key, length
    /// against the file size). The body digest is the caller's to check.
    pub fn open_entry(&self, key: &Key) -> Option<Entry> {
        self.open_entry_as(key, true)
    }

    /// [`open_entry`](Self::open_entry); `used: false` is a look that
    /// neither counts as a hit or miss nor makes the entry recent.
    fn open_entry_as(&self, key: &Key, used: bool) -> Option<Entry> {
        let (mut e, _) = self.open_head(key, used, 0)?;
        e.reader.seek(SeekFrom::Start(e.body_offset)).ok()?;
        Some(e)
    }

    /// Opens the entry, reads its header and up to `want` body bytes in one
    /// read, and checks the header; the reader's position is then anywhere.
    fn open_head(&self, key: &Key, used: bool, want: usize) -> Option<(Entry, Vec<u8>)> {
        let path = self.path(key);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(_) => {
                if used {
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                }
                return None;
            }
        };
        let head_len = HEAD + key.text.len();
        let mut buf = vec![0u8; head_len + want];
        let mut got = 0;
        // One read in the common case; a short read goes on.
        while got < buf.len() {
            match f.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        buf.truncate(got);
        let md = f.metadata().ok();
        let parsed = parse_header(&buf, key)
            .filter(|(len, _, off)| md.as_ref().is_some_and(|m| m.len() == off + len));
        match parsed {
            Some((len, check, body_offset)) => {
                if used {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    // LRU: a hit is a use; an entry touched within the hour
                    // is recent enough. Failing to touch only ages it.
                    let now = SystemTime::now();
                    let old = md
                        .and_then(|m| m.modified().ok())
                        .is_none_or(|t| now.duration_since(t).is_ok_and(|d| d > TOUCH_AFTER));
                    if old {
                        let _ = f.set_modified(now);
                    }
                }
                let body = buf.split_off(head_len.min(buf.len()));
                Some((
                    Entry {
                        reader: f,
                        len,
                        check,
                        body_offset,
                        path,
                    },
                    body,
                ))
            }
            None => {
                if used {
                    // An entry of an earlier format is not damage: it goes
                    // quietly.
                    if buf.starts_with(b"MBCACHE") && !buf.starts_with(MAGIC) {
                        if std::fs::remove_file(&path).is_ok() {
                            self.account(-(md.map_or(0, |m| m.len()) as i64));
                        }
                    } else {
                        self.drop_file(&path, md.map(|m| m.len()));
                    }
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        }
    }

    /// A small entry read whole and checked; None (and the entry removed)
    /// when it is missing, corrupted or truncated.
    pub fn get(&self, key: &Key) -> Option<Vec<u8>> {
        self.get_as(key, true)
    }

    /// [`get`](Self::get) for a prediction: not counted, not made recent,
    /// and a bad entry is left for the real lookup to drop.
    pub fn peek(&self, key: &Key) -> Option<Vec<u8>> {
        self.get_as(key, false)
    }

    /// Whether an entry for `key` is there (not checked, not counted).
    pub fn contains(&self, key: &Key) -> bool {
        self.path(key).is_file()
    }

    fn get_as(&self, key: &Key, used: bool) -> Option<Vec<u8>> {
        // Most small entries come whole with the header's read.
        let (mut e, mut body) = self.open_head(key, used, 4096)?;
        let ok = e.len <= isize::MAX as u64 && {
            if (body.len() as u64) < e.len {
                body.reserve((e.len - body.len() as u64).min(1 << 24) as usize);
                let _ = (&mut e.reader)
                    .take(e.len - body.len() as u64 + 1)
                    .read_to_end(&mut body);
            }
            body.len() as u64 == e.len && xxhash_rust::xxh3::xxh3_128(&body) == e.check
        };
        if ok {
            Some(body)
        } else {
            if used {
                self.reject_path(&e.path);
            }
            None
        }
    }

    /// Reads the entry for `key` through and checks it; a bad one is
    /// removed. True when it is there and good. (Not counted as a use.)
    pub fn check_entry(&self, key: &Key) -> bool {
        let Some(mut e) = self.open_entry_as(key, false) else {
            return false;
        };
        let mut h = Checker::new();
        let mut buf = vec![0u8; (e.len.min(1 << 20) as usize).max(1)];
        let mut left = e.len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            if e.reader.read_exact(&mut buf[..n]).is_err() {
                break;
            }
            h.update(&buf[..n]);
            left -= n as u64;
        }
        let good = left == 0 && h.digest128() == e.check;
        if !good {
            self.drop_file(&e.path, Some(e.body_offset + e.len));
        }
        good
    }

    /// Removes an entry a reader found bad (digest mismatch).
    pub fn reject(&self, entry: &Entry) {
        self.reject_path(&entry.path);
    }

    /// A fresh temporary path in the cache folder (same file system as the entries).
    pub(crate) fn tmp_path(&self, key: &Key) -> PathBuf {
        self.dir.join("tmp").join(format!(
            "{}.{}.{}",
            key.file_name(),
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ))
    }

    pub(crate) fn reject_path(&self, path: &Path) {
        self.drop_file(path, None);
        // It was counted as a hit when opened; it was not one.
        self.counters.hits.fetch_sub(1, Ordering::Relaxed);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    fn drop_file(&self, path: &Path, size: Option<u64>) {
        let size = size.or_else(|| std::fs::metadata(path).ok().map(|m| m.len()));
        if std::fs::remove_file(path).is_ok() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.account(-(size.unwrap_or(0) as i64));
        }
    }

    /// Adds `delta` bytes to this process's share of the running total;
    /// past [`FLUSH_BYTES`] the share is added to the total now.
    pub(crate) fn account(&self, delta: i64) {
        let p = self.pending.fetch_add(delta, Ordering::Relaxed) + delta;
        if p > FLUSH_BYTES {
            self.flush_usage();
        }
    }

    /// Stores `body` under `key` (atomically).
    pub fn put(&self, key: &Key, body: &[u8]) {
        self.put_with(key, body.len() as u64, &mut |w| w.write_all(body));
    }

    /// Stores `body` under a content-addressed `key` unless an entry is
    /// already there (it holds the same bytes, or is found bad on use).
    pub fn put_new(&self, key: &Key, body: &[u8]) {
        if !self.contains(key) {
            self.put(key, body);
        }
    }

    /// Writes an entry: header and body to a temporary file (the body
    /// hashed on the way, the header written last), then the rename. True
    /// when stored.
    fn put_with(
        &self,
        key: &Key,
        len: u64,
        body: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> bool {
        match self.write_tmp(key, len, body) {
            Some(staged) => self.commit_ref(&staged),
            None => false,
        }
    }

    /// An entry written to `tmp/`, not yet renamed into place.
    fn write_tmp(
        &self,
        key: &Key,
        len: u64,
        body: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Option<StagedEntry> {
        let tmp = self.tmp_path(key);
        let placeholder = encode_header(key, len, 0);
        let res = (|| -> io::Result<()> {
            // Entries are private (the cache folder is 0700 too): some
            // hold key material or media content.
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?
            };
            let check = {
                let mut w = Hashing {
                    inner: io::BufWriter::with_capacity(
                        (placeholder.len() as u64 + len).min(1 << 20) as usize,
                        &mut f,
                    ),
                    h: Checker::new(),
                    n: 0,
                };
                w.inner.write_all(&placeholder)?;
                body(&mut w)?;
                w.inner.flush()?;
                if w.n != len {
                    return Err(io::Error::other("entry body has the wrong length"));
                }
                w.h.digest128()
            };
            use std::os::unix::fs::FileExt;
            // No fsync: an entry lost or torn by a crash is detected on read.
            f.write_all_at(&encode_header(key, len, check), 0)
        })();
        match res {
            Ok(()) => Some(StagedEntry {
                tmp,
                target: self.path(key),
                size: placeholder.len() as u64 + len,
            }),
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
                self.counters.put_failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Renames a staged entry into place. True when stored.
    fn commit_ref(&self, e: &StagedEntry) -> bool {
        if self.place(&e.tmp, &e.target).is_err() {
            let _ = std::fs::remove_file(&e.tmp);
            self.counters.put_failures.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        // The entry replaced (if any) is not known here without a stat per
        // put: the total may overcount a rewritten key, which the next walk
        // corrects (it only makes eviction early).
        self.account(e.size as i64);
        true
    }

    /// Every file the cache owns (entries and export bodies), with its
    /// size and time; foreign files in the kind folders are left out.
    fn entries(&self) -> Vec<Owned> {
        let mut v = Vec::new();
        for kind in KINDS {
            let Ok(rd) = std::fs::read_dir(self.dir.join(kind)) else {
                continue;
            };
            for shard in rd.flatten() {
                let name = shard.file_name();
                let name = name.to_string_lossy();
                let is_shard = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
                if !is_shard || !shard.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Ok(rd) = std::fs::read_dir(shard.path()) else {
                    continue;
                };
                for e in rd.flatten() {
                    if let Some(o) = owned(kind, &e) {
                        v.push(o);
                    }
                }
            }
        }
        v
    }

    /// Adds this process's pending bytes to the running total, under the
    /// total's file lock; evicts when the total is over the limit (or
    /// recounts it when it is stale).
    fn flush_usage(&self) {
        let delta = self.pending.swap(0, Ordering::Relaxed);
        let path = self.dir.join(USAGE);
        let Ok(f) = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        else {
            return;
        };
        if f.lock().is_err() {
            return;
        }
        let now = unix_now();
        let (total, walked) = match read_usage(&path) {
            Some((bytes, walked)) => (bytes.saturating_add_signed(delta), walked),
            None => (u64::MAX, 0),
        };
        let stale = now.saturating_sub(walked) > RECOUNT_AFTER.as_secs();
        let (total, walked) = if total > self.max_size || stale {
            (self.evict_walk(), now)
        } else {
            (total, walked)
        };
        use std::os::unix::fs::FileExt;
        let _ = f.set_len(0);
        let _ = f.write_all_at(format!("{total} {walked}\n").as_bytes(), 0);
        let _ = f.unlock();
    }

    /// Ends a build's use of the cache: the input hash index written if it
    /// changed, the running total brought up to date (evicting if needed).
    /// Also done when the cache is dropped.
    pub fn flush(&self) {
        self.hashes.save(self);
        self.flush_usage();
    }

    /// Walks the folder: removes least-recently-used entries while it is
    /// over its limit (down to 90 % of it, so that walks are rare); returns
    /// the bytes left.
    fn evict_walk(&self) -> u64 {
        let mut all = self.entries();
        let mut total: u64 = all.iter().map(|e| e.size).sum();
        if total <= self.max_size {
            return total;
        }
        all.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.path.cmp(&b.path)));
        let goal = self.max_size / 10 * 9;
        for e in all {
            if total <= goal {
                break;
            }
            let body = e.kind == "export" && e.path.extension().is_some_and(|x| x == "wim");
            if (body || is_entry(&e.path)) && std::fs::remove_file(&e.path).is_ok() {
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                total = total.saturating_sub(e.size);
            }
        }
        total
    }

    /// Totals per kind.
    pub fn stats(&self) -> Stats {
        let all = self.entries();
        let kinds = KINDS
            .iter()
            .map(|k| {
                let of: Vec<_> = all.iter().filter(|e| e.kind == *k).collect();
                (
                    k.to_string(),
                    of.len() as u64,
                    of.iter().map(|e| e.size).sum(),
                )
            })
            .collect();
        Stats {
            dir: self.dir.clone(),
            max_size: self.max_size,
            entries: all.len() as u64,
            bytes: all.iter().map(|e| e.size).sum(),
            kinds,
        }
    }

    /// Removes every entry and leftover temporary file; returns (entries,
    /// bytes) removed. Files in the cache that are not entries stay.
    pub fn clean(&self) -> Result<(u64, u64), CacheError> {
        let (mut n, mut bytes) = (0, 0);
        for e in self.entries() {
            let body = e.kind == "export" && e.path.extension().is_some_and(|x| x == "wim");
            if !body && !is_entry(&e.path) {
                continue;
            }
            std::fs::remove_file(&e.path).map_err(|source| CacheError::Io {
                what: "clean",
                path: e.path.clone(),
                source,
            })?;
            n += 1;
            bytes += e.size;
        }
        // Temporary files of builds still running would fail their rename:
        // they are only left over after a crash, so take them too (ours
        // only: named after an entry, a process and a sequence number).
        if let Ok(rd) = std::fs::read_dir(self.dir.join("tmp")) {
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                let ours = name.len() > 66
                    && name.as_bytes()[64] == b'.'
                    && name[..64].bytes().all(|b| b.is_ascii_hexdigit());
                if ours {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.pending.store(0, Ordering::Relaxed);
        let _ = std::fs::write(self.dir.join(USAGE), format!("0 {}\n", unix_now()));
        Ok((n, bytes))
    }

    /// One-line summary of this build's traffic.
    pub fn summary(&self) -> String {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "cache {}: {} hits, {} misses, {} stored, {} corrupted dropped, {} evicted, {} chunks reused{}",
            self.dir.display(),
            g(&c.hits),
            g(&c.misses),
            g(&c.puts),
            g(&c.dropped),
            g(&c.evicted),
            g(&c.chunks_reused),
            match g(&c.put_failures) {
                0 => String::new(),
                n => format!(", {n} could not be stored"),
            }
        )
    }
}

/// An entry written to the cache's `tmp/` and not yet in place.
struct StagedEntry {
    tmp: PathBuf,
    target: PathBuf,
    size: u64,
}

/// Puts that become visible together, later: entries are written now (to
/// `tmp/`) and renamed into place by [`Staging::commit`] — or removed when
/// the staging is dropped uncommitted. A build stores the resources of a
/// new WIM this way while wimlib still verifies it, and commits only if the
/// WIM passed.
pub struct Staging<'a> {
    cache: &'a Cache,
    staged: std::sync::Mutex<Vec<StagedEntry>>,
}

impl<'a> Staging<'a> {
    pub fn new(cache: &'a Cache) -> Staging<'a> {
        Staging {
            cache,
            staged: Default::default(),
        }
    }

    pub fn cache(&self) -> &'a Cache {
        self.cache
    }

    fn push(&self, e: Option<StagedEntry>) -> bool {
        let ok = e.is_some();
        if let Some(e) = e {
            self.staged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e);
        }
        ok
    }

    /// [`Cache::put`], staged.
    pub fn put(&self, key: &Key, body: &[u8]) -> bool {
        self.push(
            self.cache
                .write_tmp(key, body.len() as u64, &mut |w| w.write_all(body)),
        )
    }

    /// Stores `prefix` followed by the `(offset, len)` ranges of `src`, in
    /// order, as the body of `key` (staged). True when written.
    pub fn put_file_ranges(
        &self,
        key: &Key,
        prefix: &[u8],
        src: &File,
        ranges: &[(u64, u64)],
    ) -> bool {
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        self.push(
            self.cache
                .write_tmp(key, prefix.len() as u64 + total, &mut |w| {
                    copy_ranges(w, prefix, src, ranges, total)
                }),
        )
    }

    /// Renames every staged entry into place; returns how many.
    pub fn commit(self) -> usize {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|p| p.into_inner()));
        staged
            .into_iter()
            .filter(|e| self.cache.commit_ref(e))
            .count()
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        for e in self
            .staged
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = std::fs::remove_file(&e.tmp);
        }
    }
}

/// Writes `prefix` then the `(offset, len)` ranges of `src` (`total` bytes).
fn copy_ranges(
    w: &mut dyn Write,
    prefix: &[u8],
    src: &File,
    ranges: &[(u64, u64)],
    total: u64,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    w.write_all(prefix)?;
    let mut buf = vec![0u8; (total.min(1 << 20) as usize).max(1)];
    for &(offset, len) in ranges {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            src.read_exact_at(&mut buf[..n], offset + done)?;
            w.write_all(&buf[..n])?;
            done += n as u64;
        }
    }
    Ok(())
}

/// The effect of long runs of zeros on a running SHA-256 (a disk image's
/// free space; `fsutil::sha256`): 32 bytes an entry, under `hash/`.
impl crate::fsutil::sha256::ZeroRuns for Cache {
    fn get(&self, state: &[u32; 8], blocks: u64) -> Option<[u32; 8]> {
        let body = self.get(&zero_run_key(state, blocks))?;
        let mut after = [0u32; 8];
        for (w, b) in after.iter_mut().zip(body.chunks_exact(4)) {
            *w = u32::from_le_bytes(b.try_into().ok()?);
        }
        (body.len() == 32).then_some(after)
    }

    fn put(&self, state: &[u32; 8], blocks: u64, after: &[u32; 8]) {
        let body: Vec<u8> = after.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.put(&zero_run_key(state, blocks), &body);
    }
}

fn zero_run_key(state: &[u32; 8], blocks: u64) -> Key {
    let s: String = state.iter().map(|w| format!("{w:08x}")).collect();
    Key::new("hash", format!("zeros1\0{s}\0{blocks}"))
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Parses and checks an entry header at the start of `buf`; returns (body
/// length, body check, body offset). The caller checks the file's length.
fn parse_header(buf: &[u8], key: &Key) -> Option<(u64, u128, u64)> {
    let klen = key.text.len();
    if buf.len() < HEAD + klen || &buf[..8] != MAGIC {
        return None;
    }
    if u32::from_le_bytes(buf[8..12].try_into().ok()?) as usize != klen
        || &buf[12..12 + klen] != key.text.as_bytes()
    {
        return None;
    }
    let tail = &buf[12 + klen..HEAD + klen];
    let len = u64::from_le_bytes(tail[..8].try_into().ok()?);
    let check = u128::from_le_bytes(tail[8..].try_into().ok()?);
    Some((len, check, (HEAD + klen) as u64))
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    h: Checker,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.h.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path(), 1 << 20).unwrap();
        (t, c)
    }

    #[test]
    fn put_get_and_corruption_is_a_miss() {
        let (_t, c) = cache();
        let k = Key::new("hash", "k1".into());
        assert_eq!(c.get(&k), None);
        c.put(&k, b"hello body");
        assert_eq!(c.get(&k).as_deref(), Some(&b"hello body"[..]));
        // Flip the last byte of the body: detected and removed.
        let p = c.path(&k);
        let mut bytes = std::fs::read(&p).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(c.get(&k), None);
        assert!(!p.exists());
        // Truncated entry.
        c.put(&k, b"hello body");
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(30).unwrap();
        assert_eq!(c.get(&k), None);
        assert_eq!(c.counters.dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_entry_under_another_key_is_not_served() {
        let (_t, c) = cache();
        let a = Key::new("hash", "a".into());
        let b = Key::new("hash", "b".into());
        c.put(&a, b"A");
        std::fs::create_dir_all(c.path(&b).parent().unwrap()).unwrap();
        std::fs::copy(c.path(&a), c.path(&b)).unwrap();
        assert_eq!(c.get(&b), None);
        assert_eq!(c.get(&a).as_deref(), Some(&b"A"[..]));
    }

    #[test]
    fn eviction_removes_least_recently_used_first() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path(), 3000).unwrap();
        let keys: Vec<Key> = (0..3).map(|i| Key::new("res", format!("k{i}"))).collect();
        for (i, k) in keys.iter().enumerate() {
            c.put(k, &vec![i as u8; 900]);
            let old =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(c.path(k))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        // Use k0: it becomes the most recent; the next put evicts k1 first,
        // when the build's bytes are added to the running total.
        assert!(c.get(&keys[0]).is_some());
        c.put(&Key::new("res", "k3".into()), &[9u8; 900]);
        assert!(c.stats().bytes > 3000, "no walk per put");
        c.flush();
        assert!(c.get(&keys[0]).is_some());
        assert!(c.get(&keys[1]).is_none());
        assert!(c.stats().bytes <= 3000);
    }
}
