//! The content-addressed build cache: a folder of self-checking entries.
//!
//! Every entry is one file named after the SHA-256 of its key text, in a
//! subfolder per kind (`hash/`, `res/`, `chunks/`, `export/`, `verify/`,
//! `keys/`). It starts with
//! a header — magic, the key text itself, the body length and the SHA-256 of
//! the body — so a reader can tell a corrupted, truncated or misplaced entry
//! from a good one: such an entry is removed and reported as a miss, never
//! used. Entries are written to a temporary file in the cache folder and
//! renamed into place, so readers (other builds included) only ever see
//! complete entries; two builds putting the same key both write valid
//! entries and the last rename wins.
//!
//! Least-recently-used eviction: a hit sets the entry's modification time to
//! now (an export body counts as used with its entry), and after a put the oldest entries are removed until the cache is
//! below its size limit. The clock is only used for this bookkeeping, never
//! for anything that ends up in an artefact.
//!
//! The cache is an accelerator: a failure to write an entry is counted and
//! otherwise ignored, and no lookup ever turns into a build error.

pub mod hashes;
pub mod keys;
pub mod resources;
pub mod status;

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"MBCACHE1";
/// Entry kinds, one subfolder each.
pub const KINDS: [&str; 6] = ["hash", "res", "chunks", "export", "verify", "keys"];
/// Default size limit: 20 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 20 << 30;

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
/// The caller must hash what it reads and compare with `sha256` before
/// trusting it (see [`Cache::reject`] when it does not match).
pub struct Entry {
    pub reader: File,
    pub len: u64,
    pub sha256: [u8; 32],
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
}

/// `$XDG_CACHE_HOME/mediabuild`, else `$HOME/.cache/mediabuild`.
pub fn default_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("mediabuild"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("mediabuild"))
}

fn encode_header(key: &Key, len: u64, sha: &[u8; 32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(52 + key.text.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(key.text.len() as u32).to_le_bytes());
    h.extend_from_slice(key.text.as_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(sha);
    h
}

impl Cache {
    /// Opens (creating) the cache at `dir` with a size limit in bytes.
    pub fn open(dir: &Path, max_size: u64) -> Result<Cache, CacheError> {
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
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(key.kind).join(key.file_name())
    }

    /// Opens the entry for `key` and checks its header (magic, key, length
    /// against the file size). The body digest is the caller's to check.
    pub fn open_entry(&self, key: &Key) -> Option<Entry> {
        self.open_entry_as(key, true)
    }

    /// [`open_entry`](Self::open_entry); `used: false` is a look that
    /// neither counts as a hit or miss nor makes the entry recent.
    fn open_entry_as(&self, key: &Key, used: bool) -> Option<Entry> {
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
        match read_header(&mut f, key) {
            Some((len, sha256, body_offset)) if !used => Some(Entry {
                reader: f,
                len,
                sha256,
                body_offset,
                path,
            }),
            Some((len, sha256, body_offset)) => {
                // LRU: a hit is a use. Failing to touch only ages the entry.
                let _ = f.set_modified(std::time::SystemTime::now());
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(Entry {
                    reader: f,
                    len,
                    sha256,
                    body_offset,
                    path,
                })
            }
            None if !used => None,
            None => {
                self.drop_file(&path);
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
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
        let mut e = self.open_entry_as(key, used)?;
        let mut body = Vec::with_capacity(e.len.min(1 << 24) as usize);
        let ok = (&mut e.reader)
            .take(e.len + 1)
            .read_to_end(&mut body)
            .is_ok()
            && body.len() as u64 == e.len
            && <[u8; 32]>::from(Sha256::digest(&body)) == e.sha256;
        if ok {
            Some(body)
        } else {
            if used {
                self.reject_path(&e.path);
            }
            None
        }
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
        self.drop_file(path);
        // It was counted as a hit when opened; it was not one.
        self.counters.hits.fetch_sub(1, Ordering::Relaxed);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    fn drop_file(&self, path: &Path) {
        if std::fs::remove_file(path).is_ok() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stores `body` under `key` (atomically).
    pub fn put(&self, key: &Key, body: &[u8]) {
        self.put_with(key, body.len() as u64, &mut |w| w.write_all(body));
    }

    /// Stores `prefix` followed by the `(offset, len)` ranges of `src`, in
    /// order, as the body of `key`. True when stored.
    pub fn put_file_ranges(
        &self,
        key: &Key,
        prefix: &[u8],
        src: &Path,
        ranges: &[(u64, u64)],
    ) -> bool {
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        self.put_with(key, prefix.len() as u64 + total, &mut |w| {
            w.write_all(prefix)?;
            let mut f = File::open(src)?;
            let mut buf = vec![0u8; 1 << 20];
            for &(offset, len) in ranges {
                f.seek(SeekFrom::Start(offset))?;
                let mut left = len;
                while left > 0 {
                    let n = f.read(&mut buf[..left.min(1 << 20) as usize])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    w.write_all(&buf[..n])?;
                    left -= n as u64;
                }
            }
            Ok(())
        })
    }

    /// Writes an entry: placeholder header, body (hashed on the way), real
    /// header, rename. True when stored.
    fn put_with(
        &self,
        key: &Key,
        len: u64,
        body: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> bool {
        let target = self.path(key);
        let tmp = self.dir.join("tmp").join(format!(
            "{}.{}.{}",
            key.file_name(),
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        let res = (|| -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            let placeholder = encode_header(key, len, &[0; 32]);
            f.write_all(&placeholder)?;
            let sha: [u8; 32] = {
                let mut w = Hashing {
                    inner: io::BufWriter::with_capacity(1 << 20, &mut f),
                    h: Sha256::new(),
                };
                body(&mut w)?;
                w.inner.flush()?;
                w.h.finalize().into()
            };
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&encode_header(key, len, &sha))?;
            if f.metadata()?.len() != placeholder.len() as u64 + len {
                return Err(io::Error::other("entry body has the wrong length"));
            }
            // No fsync: an entry lost or torn by a crash is detected on read.
            drop(f);
            std::fs::rename(&tmp, &target)
        })();
        match res {
            Ok(()) => {
                self.counters.puts.fetch_add(1, Ordering::Relaxed);
                self.evict();
                true
            }
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
                self.counters.put_failures.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Every entry: (kind, path, size, mtime).
    fn entries(&self) -> Vec<(&'static str, PathBuf, u64, std::time::SystemTime)> {
        let mut v = Vec::new();
        for kind in KINDS {
            let Ok(rd) = std::fs::read_dir(self.dir.join(kind)) else {
                continue;
            };
            for e in rd.flatten() {
                if let Ok(md) = e.metadata() {
                    if md.is_file() {
                        let mut t = md.modified().unwrap_or(std::time::UNIX_EPOCH);
                        // An export body is as recent as its entry, which a
                        // hit touches (the body is not touched: its stamp
                        // is what lets a restore trust it unread).
                        let path = e.path();
                        if kind == "export" && path.extension().is_some_and(|x| x == "wim") {
                            let entry = path.with_extension("");
                            if let Some(m) = std::fs::metadata(entry)
                                .ok()
                                .and_then(|m| m.modified().ok())
                            {
                                t = t.max(m);
                            }
                        }
                        v.push((kind, path, md.len(), t));
                    }
                }
            }
        }
        v
    }

    /// Removes least-recently-used entries while the cache is over its limit
    /// (down to 90 % of it, so that puts do not evict one by one).
    pub fn evict(&self) {
        let mut all = self.entries();
        let mut total: u64 = all.iter().map(|e| e.2).sum();
        if total <= self.max_size {
            return;
        }
        all.sort_by(|a, b| a.3.cmp(&b.3).then_with(|| a.1.cmp(&b.1)));
        let goal = self.max_size / 10 * 9;
        for (_, path, size, _) in all {
            if total <= goal {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            }
            total = total.saturating_sub(size);
        }
    }

    /// Totals per kind.
    pub fn stats(&self) -> Stats {
        let all = self.entries();
        let kinds = KINDS
            .iter()
            .map(|k| {
                let of: Vec<_> = all.iter().filter(|e| e.0 == *k).collect();
                (k.to_string(), of.len() as u64, of.iter().map(|e| e.2).sum())
            })
            .collect();
        Stats {
            dir: self.dir.clone(),
            max_size: self.max_size,
            entries: all.len() as u64,
            bytes: all.iter().map(|e| e.2).sum(),
            kinds,
        }
    }

    /// Removes every entry and leftover temporary file; returns (entries, bytes) removed.
    pub fn clean(&self) -> Result<(u64, u64), CacheError> {
        let (mut n, mut bytes) = (0, 0);
        for (_, path, size, _) in self.entries() {
            std::fs::remove_file(&path).map_err(|source| CacheError::Io {
                what: "clean",
                path,
                source,
            })?;
            n += 1;
            bytes += size;
        }
        // Temporary files of builds still running would fail their rename:
        // they are only left over after a crash, so take them too.
        if let Ok(rd) = std::fs::read_dir(self.dir.join("tmp")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
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

/// Reads and checks an entry header; returns (body length, body sha256, body offset).
fn read_header(f: &mut File, key: &Key) -> Option<(u64, [u8; 32], u64)> {
    let mut fixed = [0u8; 12];
    f.read_exact(&mut fixed).ok()?;
    if &fixed[..8] != MAGIC {
        return None;
    }
    let klen = u32::from_le_bytes(fixed[8..12].try_into().ok()?) as usize;
    if klen != key.text.len() {
        return None;
    }
    let mut text = vec![0u8; klen];
    f.read_exact(&mut text).ok()?;
    if text != key.text.as_bytes() {
        return None;
    }
    let mut tail = [0u8; 40];
    f.read_exact(&mut tail).ok()?;
    let len = u64::from_le_bytes(tail[..8].try_into().ok()?);
    let sha: [u8; 32] = tail[8..].try_into().ok()?;
    let body_offset = 12 + klen as u64 + 40;
    // A truncated (or extended) entry is caught here, before any body read.
    if f.metadata().ok()?.len() != body_offset + len {
        return None;
    }
    Some((len, sha, body_offset))
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    h: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.h.update(&buf[..n]);
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
        // Use k0: it becomes the most recent; the next put evicts k1 first.
        assert!(c.get(&keys[0]).is_some());
        c.put(&Key::new("res", "k3".into()), &[9u8; 900]);
        assert!(c.get(&keys[0]).is_some());
        assert!(c.get(&keys[1]).is_none());
        assert!(c.stats().bytes <= 3000);
    }
}
