//! The local store: the cache folder of self-checking entries (the first
//! [`Store`]; `docs/cache.md`).
//!
//! Every entry is one file named after the SHA-256 of its key text, in a
//! subfolder per kind and a shard folder per first two hex digits
//! (`KIND/XX/NAME`). It starts with a header — magic, the key text itself,
//! the body length and the XXH3-128 of the body — so a reader can tell a
//! corrupted, truncated or misplaced entry from a good one: such an entry
//! is removed and reported as a miss, never used. Entries are written to a
//! temporary file in the cache folder (`tmp/`) and renamed into place, so
//! readers (other builds included) only ever see complete entries; two
//! builds putting the same key both write valid entries and the last rename
//! wins.
//!
//! The folder is marked by a `CACHEDIR.TAG` (the Cache Directory Tagging
//! convention, plus our format version): a folder that is neither empty nor
//! tagged nor laid out as an earlier mediabuild cache is refused, and
//! eviction and `clean` only ever delete files whose header proves they are
//! entries (and the `.wim` bodies of export entries).
//!
//! Size accounting is a running total in `usage`, updated under a file lock
//! once per build (or per 64 MiB stored); the folder is walked only when the
//! total passes the limit (then least recently used entries are removed down
//! to 90 % of it) or is older than a week. A hit makes an entry recent by
//! its modification time only when that is more than an hour old.
//!
//! File bodies (exported images) sit beside their entry as `NAME.wim`: a
//! restore hard-links them, trusted unread while the file system's stamp of
//! the body is the one the entry recorded (see [`LocalStore::restore_file`]).
//!
//! The clock is only used for this bookkeeping, never for anything that
//! ends up in an artefact.

use super::hashes;
use super::store::{Body, Entry, Found, Look, Put, Staged, Store};
use super::{CacheError, Checker, Key, Stats, KINDS};
use crate::wimwrite::KnownDigests;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

const MAGIC: &[u8; 8] = b"MBCACHE2";
/// Header bytes besides the key text: magic, key length, body length, check.
const HEAD: usize = 8 + 4 + 8 + 16;
/// The tag file (<https://bford.info/cachedir/>): its first line is fixed by
/// the convention, the rest is ours.
pub(super) const TAG: &str = "CACHEDIR.TAG";
const TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";
pub(super) const FORMAT: u32 = 2;
/// The running total of the entries' bytes.
const USAGE: &str = "usage";
/// Stored bytes after which a build adds its share to the running total
/// (and evicts if needed) without waiting for its end.
const FLUSH_BYTES: i64 = 64 << 20;
/// A running total older than this is recomputed by a walk.
const RECOUNT_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// A hit makes an entry recent only if its time is older than this.
const TOUCH_AFTER: Duration = Duration::from_secs(3600);

/// The file name of the entry for `key`: the SHA-256 of its text.
fn file_name(key: &Key) -> String {
    crate::ids::hex(&Sha256::digest(key.text.as_bytes()))
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

/// The cache folder (see the module doc).
#[derive(Debug)]
pub struct LocalStore {
    dir: PathBuf,
    max_size: u64,
    tmp_seq: AtomicU64,
    /// Bytes this process added to the entries (removals negative) and not
    /// yet added to the running total.
    pending: AtomicI64,
    /// Entries removed by eviction since the store was opened.
    evicted: AtomicU64,
    /// File bodies linked in whose entries wait for their digests.
    linked: Mutex<Vec<(Key, Linked)>>,
    /// File bodies the build holds a link to, whose stamps are recorded
    /// when it lets them go.
    lent: Mutex<Vec<(Key, Lent)>>,
}

/// An entry opened and its header checked; the reader's position is
/// anywhere.
struct Opened {
    file: File,
    len: u64,
    check: u128,
    body_offset: u64,
    path: PathBuf,
}

/// An entry written to the cache's `tmp/` and not yet in place.
struct LocalStaged<'s> {
    store: &'s LocalStore,
    /// None once committed.
    tmp: Option<PathBuf>,
    target: PathBuf,
    size: u64,
}

impl Staged for LocalStaged<'_> {
    /// Renames the entry into place.
    fn commit(mut self: Box<Self>) -> bool {
        let Some(tmp) = self.tmp.take() else {
            return false;
        };
        if self.store.place(&tmp, &self.target).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return false;
        }
        // The entry replaced (if any) is not known here without a stat per
        // put: the total may overcount a rewritten key, which the next walk
        // corrects (it only makes eviction early).
        self.store.account(self.size as i64);
        true
    }
}

impl Drop for LocalStaged<'_> {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl LocalStore {
    /// Opens (creating and tagging) the cache folder at `dir` with a size
    /// limit in bytes.
    pub fn open(dir: &Path, max_size: u64) -> Result<LocalStore, CacheError> {
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
        Ok(LocalStore {
            dir: dir.to_path_buf(),
            max_size,
            tmp_seq: AtomicU64::new(0),
            pending: AtomicI64::new(0),
            evicted: AtomicU64::new(0),
            linked: Mutex::default(),
            lent: Mutex::default(),
        })
    }

    /// Where the entry for `key` lives: `KIND/XX/NAME`, `XX` the first two
    /// hex digits of the name — 256 folders a kind, so that no folder holds
    /// more than a few thousand entries in a cache of a million (git's object
    /// store does the same; a lookup in one huge folder slowed rebuilds).
    fn path(&self, key: &Key) -> PathBuf {
        entry_path(&self.dir, key)
    }

    /// The file body of `key`: a plain file beside the entry (`NAME.wim`:
    /// file bodies are exported images), so that a restore is a hard link
    /// instead of a copy.
    fn body_path(&self, key: &Key) -> PathBuf {
        body_path(&self.dir, key)
    }

    /// Renames `tmp` to `target`, creating the target's shard folder first
    /// when it is not there yet.
    fn place(&self, tmp: &Path, target: &Path) -> io::Result<()> {
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

    /// Opens the entry, reads its header and up to `want` body bytes in one
    /// read, and checks the header. Err(dropped) on a miss; a bad entry is
    /// removed when `used`.
    fn open_head(&self, key: &Key, used: bool, want: usize) -> Result<(Opened, Vec<u8>), bool> {
        let path = self.path(key);
        let Ok(mut f) = File::open(&path) else {
            return Err(false);
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
                Ok((
                    Opened {
                        file: f,
                        len,
                        check,
                        body_offset,
                        path,
                    },
                    body,
                ))
            }
            None if used => {
                // An entry of an earlier format is not damage: it goes
                // quietly.
                if buf.starts_with(b"MBCACHE") && !buf.starts_with(MAGIC) {
                    if std::fs::remove_file(&path).is_ok() {
                        self.account(-(md.map_or(0, |m| m.len()) as i64));
                    }
                    Err(false)
                } else {
                    Err(self.drop_file(&path, md.map(|m| m.len())))
                }
            }
            None => Err(false),
        }
    }

    /// A fresh temporary path in the cache folder (same file system as the entries).
    fn tmp_path(&self, key: &Key) -> PathBuf {
        self.dir.join("tmp").join(format!(
            "{}.{}.{}",
            file_name(key),
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Removes a damaged entry; true when removed.
    fn drop_file(&self, path: &Path, size: Option<u64>) -> bool {
        let size = size.or_else(|| std::fs::metadata(path).ok().map(|m| m.len()));
        let removed = std::fs::remove_file(path).is_ok();
        if removed {
            self.account(-(size.unwrap_or(0) as i64));
        }
        removed
    }

    /// Adds `delta` bytes to this process's share of the running total;
    /// past [`FLUSH_BYTES`] the share is added to the total now.
    fn account(&self, delta: i64) {
        let p = self.pending.fetch_add(delta, Ordering::Relaxed) + delta;
        if p > FLUSH_BYTES {
            self.flush_usage();
        }
    }

    /// An entry written to `tmp/`, not yet renamed into place: header and
    /// body (hashed on the way, the header written last).
    fn write_tmp(&self, key: &Key, body: Body<'_>) -> Option<LocalStaged<'_>> {
        let len = body.size();
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
                body.write_to(&mut w)?;
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
            Ok(()) => Some(LocalStaged {
                store: self,
                tmp: Some(tmp),
                target: self.path(key),
                size: placeholder.len() as u64 + len,
            }),
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
                None
            }
        }
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
                self.evicted.fetch_add(1, Ordering::Relaxed);
                total = total.saturating_sub(e.size);
            }
        }
        total
    }
}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn open(&self, key: &Key, look: Look) -> Found<Entry> {
        let mut o = match self.open_head(key, look == Look::Use, 0) {
            Ok((o, _)) => o,
            Err(dropped) => return Found::Miss { dropped },
        };
        if o.file.seek(SeekFrom::Start(o.body_offset)).is_err() {
            return Found::Miss { dropped: false };
        }
        Found::Hit(Entry {
            reader: Box::new(o.file),
            len: o.len,
            check: o.check,
            id: o.path.display().to_string(),
        })
    }

    fn get(&self, key: &Key, look: Look) -> Found<Vec<u8>> {
        let used = look == Look::Use;
        // Most small entries come whole with the header's read.
        let (mut o, mut body) = match self.open_head(key, used, 4096) {
            Ok(x) => x,
            Err(dropped) => return Found::Miss { dropped },
        };
        let ok = o.len <= isize::MAX as u64 && {
            if (body.len() as u64) < o.len {
                body.reserve((o.len - body.len() as u64).min(1 << 24) as usize);
                let _ = (&mut o.file)
                    .take(o.len - body.len() as u64 + 1)
                    .read_to_end(&mut body);
            }
            body.len() as u64 == o.len && xxhash_rust::xxh3::xxh3_128(&body) == o.check
        };
        if ok {
            Found::Hit(body)
        } else {
            Found::Miss {
                dropped: used && self.drop_file(&o.path, None),
            }
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.path(key).is_file()
    }

    fn stage<'s>(&'s self, key: &Key, body: Body<'_>) -> Option<Box<dyn Staged + 's>> {
        let staged: Box<dyn Staged + 's> = Box::new(self.write_tmp(key, body)?);
        Some(staged)
    }

    fn remove(&self, key: &Key) -> bool {
        self.drop_file(&self.path(key), None)
    }

    fn link_file(&self, key: &Key, file: &Path) -> bool {
        let tmp = self.tmp_path(key);
        let body = self.body_path(key);
        let res = (|| -> io::Result<Linked> {
            let md0 = std::fs::metadata(file)?;
            link_or_copy(file, &tmp)?;
            self.place(&tmp, &body)?;
            self.account(md0.len() as i64);
            Ok(Linked {
                body: body.clone(),
                len: md0.len(),
                linked: BodyStamp::of(&md0),
            })
        })();
        match res {
            Ok(l) => {
                guard(&self.linked).push((key.clone(), l));
                true
            }
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
                false
            }
        }
    }

    /// The entry of a linked body, unstamped: the stamp is recorded by
    /// [`release_file`](Store::release_file) once the build's own link to
    /// the body is gone. Skipped when the body changed since it was linked
    /// (then no entry: the next build exports again).
    fn complete_file(&self, key: &Key, digests: Option<KnownDigests>) -> Put {
        let Some(l) = take(&self.linked, key) else {
            return Put::Skipped;
        };
        let Ok(md) = std::fs::metadata(&l.body) else {
            return Put::Skipped;
        };
        let now = BodyStamp::of(&md);
        // A link shares the staged file's inode and must not have moved; a
        // copy (another file system) is entered unstamped: a restore then
        // reads it to check it.
        let linked = (now.ino, now.dev) == (l.linked.ino, l.linked.dev);
        if md.len() != l.len || (linked && now.mtime_ns != l.linked.mtime_ns) {
            return Put::Skipped;
        }
        let digests = match digests {
            Some(d) => d,
            None => match hashes::read_digests(&l.body) {
                Ok(d) if d.size == l.len => KnownDigests {
                    sha1: d.sha1,
                    sha256: d.sha256,
                },
                _ => return Put::Skipped,
            },
        };
        let stored = self.put(key, Body::Bytes(&encode_export(l.len, &digests, None)));
        if linked {
            guard(&self.lent).push((
                key.clone(),
                Lent {
                    body: l.body,
                    len: l.len,
                    digests,
                    checked: now,
                },
            ));
        }
        if stored {
            Put::Stored
        } else {
            Put::Failed
        }
    }

    /// The entry (length, SHA-256, SHA-1 of the body and the body's stamp,
    /// itself checked) and its body, hard-linked (or copied) to `dst`. The
    /// body is read to check its SHA-256 only when its stamp changed since
    /// the entry recorded it (an older entry, a concurrent build, a write).
    /// A bad entry is removed with its body (and `dst`).
    fn restore_file(&self, key: &Key, dst: &Path) -> Found<KnownDigests> {
        let meta = match self.get(key, Look::Use) {
            Found::Hit(m) => m,
            Found::Miss { dropped } => return Found::Miss { dropped },
        };
        let body = self.body_path(key);
        let bad = |why_dst: bool| {
            if why_dst {
                let _ = std::fs::remove_file(dst);
            }
            let _ = std::fs::remove_file(&body);
            Found::Miss {
                dropped: self.remove(key),
            }
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
        guard(&self.lent).push((
            key.clone(),
            Lent {
                body: body.clone(),
                len,
                digests,
                checked: before,
            },
        ));
        Found::Hit(digests)
    }

    /// Records the body's current stamp in its entry (see [`Lent`]).
    fn release_file(&self, key: &Key) -> Put {
        let Some(l) = take(&self.lent, key) else {
            return Put::Skipped;
        };
        let Ok(md) = std::fs::metadata(&l.body) else {
            return Put::Skipped;
        };
        let now = BodyStamp::of(&md);
        let same = md.len() == l.len
            && (now.ino, now.dev, now.mtime_ns)
                == (l.checked.ino, l.checked.dev, l.checked.mtime_ns);
        if !same || now == l.checked {
            return Put::Skipped;
        }
        if self.put(
            key,
            Body::Bytes(&encode_export(l.len, &l.digests, Some(now))),
        ) {
            Put::Stored
        } else {
            Put::Failed
        }
    }

    fn stats(&self) -> Stats {
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

    /// Removes every entry and leftover temporary file. Files in the cache
    /// that are not entries stay.
    fn clean(&self) -> Result<(u64, u64), CacheError> {
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

    /// Adds this build's bytes to the running total (evicting if needed).
    fn flush(&self) {
        self.flush_usage();
    }

    fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the first record for `key` out of `list`.
fn take<T>(list: &Mutex<Vec<(Key, T)>>, key: &Key) -> Option<T> {
    let mut g = guard(list);
    let i = g.iter().position(|(k, _)| k == key)?;
    Some(g.remove(i).1)
}

/// The entry file of `key` in the cache folder `dir`.
pub(super) fn entry_path(dir: &Path, key: &Key) -> PathBuf {
    let name = file_name(key);
    dir.join(key.kind).join(&name[..2]).join(name)
}

/// The file body of `key` in the cache folder `dir`.
pub(super) fn body_path(dir: &Path, key: &Key) -> PathBuf {
    let mut p = entry_path(dir, key).into_os_string();
    p.push(".wim");
    PathBuf::from(p)
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

/// Hard-links `src` to `dst`, or copies it when they are on different file systems.
fn link_or_copy(src: &Path, dst: &Path) -> io::Result<()> {
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
type BodyStamp = hashes::Identity;

/// A body linked in by [`LocalStore::link_file`], its entry not written yet.
#[derive(Debug)]
struct Linked {
    body: PathBuf,
    len: u64,
    /// The staged file's stamp when it was linked.
    linked: BodyStamp,
}

/// A body the build holds a link to. Linking the body into the build's
/// staging folder and unlinking it there both set its ctime, so the stamp a
/// restore checks would never match again; the stamp is recorded once the
/// staging folder is gone ([`Store::release_file`]), and only if the body's
/// mtime and size are still those of the bytes this build checked (a write
/// since then moves the mtime, and the entry is then left to be read in
/// full next time).
#[derive(Debug)]
struct Lent {
    body: PathBuf,
    len: u64,
    digests: KnownDigests,
    checked: BodyStamp,
}

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

#[cfg(test)]
mod tests {
    use super::super::resources::{export_key, link_export, restore_export, ExportInput};
    use super::super::Cache;
    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path(), 1 << 20).unwrap();
        (t, c)
    }

    #[test]
    fn put_get_and_corruption_is_a_miss() {
        let (t, c) = cache();
        let k = Key::new("hash", "k1".into());
        assert_eq!(c.get(&k), None);
        c.put(&k, b"hello body");
        assert_eq!(c.get(&k).as_deref(), Some(&b"hello body"[..]));
        // Flip the last byte of the body: detected and removed.
        let p = entry_path(t.path(), &k);
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
        let (t, c) = cache();
        let a = Key::new("hash", "a".into());
        let b = Key::new("hash", "b".into());
        c.put(&a, b"A");
        let pb = entry_path(t.path(), &b);
        std::fs::create_dir_all(pb.parent().unwrap()).unwrap();
        std::fs::copy(entry_path(t.path(), &a), &pb).unwrap();
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
                .open(entry_path(t.path(), k))
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
        assert!(!c.summary().contains(" 0 evicted"), "{}", c.summary());
    }

    #[test]
    fn an_export_body_is_trusted_by_its_stamp_and_read_again_when_it_moved() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("c");
        let cache = Cache::open(&cdir, 1 << 30).unwrap();
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
        let path = body_path(&cdir, &key);
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
}
