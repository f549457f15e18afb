//! The input hash cache: SHA-1 and SHA-256 of a file, known without reading it.
//!
//! Content cannot be known without reading it, so the key is what the file
//! system says about the file: absolute path, size, modification time (ns),
//! status-change time (ns), inode and device. The ctime is what makes this
//! safe: `touch -d` or `utimensat` can set the mtime back to its old value
//! after a rewrite, but any write or time change sets the ctime to the
//! current time, and the ctime cannot be set by an unprivileged program. A
//! same-size rewrite with a forged mtime therefore changes the key.
//!
//! "Racy" entries are not stored: when the file's ctime is less than one
//! second old, a further write within the same timestamp tick could leave
//! every field of the key unchanged (git's "racy clean" problem), so such a
//! file is hashed again next time.
//!
//! The rows live in one index per scope (a recipe's folder; the whole cache
//! without one), like git's index: one `hash/` entry read once when first
//! needed and written back once at the end of the build, only if a row
//! changed. A build of 14,000 files costs one read and at most one write,
//! not 28,000 entries (issue 18). The row of a path also says what changed
//! about a file whose digests are no longer known (`plan`). Two builds of
//! one folder that both change rows merge at the write: the rows each
//! touched win, the rest is kept; a row lost to a race is a re-hash.

use super::{Cache, Key};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Digests of a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
}

/// What the file system says about a file: the hash cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub path: std::path::PathBuf,
    pub size: u64,
    pub id: Identity,
}

/// Which file, and which version of it, by the file system's account:
/// inode, device, mtime and ctime (any write or time change sets the ctime,
/// which no unprivileged program can set back). Shared with the resource
/// store's record of a stored body (`resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub ino: u64,
    pub dev: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Identity {
    pub fn of(md: &std::fs::Metadata) -> Identity {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Identity {
            ino: md.ino(),
            dev: md.dev(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec()),
            ctime_ns: ns(md.ctime(), md.ctime_nsec()),
        }
    }
}

impl Stamp {
    pub fn of(path: &Path) -> std::io::Result<Stamp> {
        let abs = std::path::absolute(path)?;
        let md = std::fs::metadata(&abs)?;
        Ok(Stamp {
            path: abs,
            size: md.len(),
            id: Identity::of(&md),
        })
    }

    /// True when the ctime is too recent to trust the stamp (see module doc).
    fn racy(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as i128;
        now - self.id.ctime_ns < 1_000_000_000
    }
}

/// One file's row: its stamp when hashed, and the digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    size: u64,
    id: Identity,
    digests: Digests,
}

impl Row {
    fn matches(&self, st: &Stamp) -> bool {
        self.size == st.size && self.id == st.id && self.digests.size == st.size
    }
}

const INDEX_MAGIC: &[u8; 8] = b"MBHIDX2\0";
/// Bytes of a row after its path.
const ROW_LEN: usize = 8 + 8 + 8 + 16 + 16 + 20 + 32;

/// The rows of one scope, loaded on first use.
#[derive(Debug, Default)]
struct Rows {
    loaded: bool,
    rows: BTreeMap<PathBuf, Row>,
    /// Paths whose row this build set (they win a merge).
    touched: BTreeSet<PathBuf>,
    /// Paths looked up (kept when stale rows are pruned).
    seen: BTreeSet<PathBuf>,
}

/// The input hash index of one scope (see the module doc).
#[derive(Debug)]
pub struct Index {
    scope: Option<PathBuf>,
    rows: Mutex<Rows>,
}

fn encode_rows(rows: &BTreeMap<PathBuf, Row>) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + rows.len() * (ROW_LEN + 64));
    v.extend_from_slice(INDEX_MAGIC);
    v.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for (p, r) in rows {
        let b = p.as_os_str().as_bytes();
        v.extend_from_slice(&(b.len() as u32).to_le_bytes());
        v.extend_from_slice(b);
        v.extend_from_slice(&r.size.to_le_bytes());
        v.extend_from_slice(&r.id.ino.to_le_bytes());
        v.extend_from_slice(&r.id.dev.to_le_bytes());
        v.extend_from_slice(&r.id.mtime_ns.to_le_bytes());
        v.extend_from_slice(&r.id.ctime_ns.to_le_bytes());
        v.extend_from_slice(&r.digests.sha1);
        v.extend_from_slice(&r.digests.sha256);
    }
    v
}

fn decode_rows(b: &[u8]) -> Option<BTreeMap<PathBuf, Row>> {
    if b.len() < 12 || &b[..8] != INDEX_MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(b[8..12].try_into().ok()?) as usize;
    let mut at: usize = 12;
    let mut take = |k: usize| -> Option<&[u8]> {
        let s = b.get(at..at.checked_add(k)?)?;
        at += k;
        Some(s)
    };
    let mut rows = BTreeMap::new();
    for _ in 0..n {
        let plen = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let path = PathBuf::from(std::ffi::OsString::from_vec(take(plen)?.to_vec()));
        let r = take(ROW_LEN)?;
        let u64at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or_default());
        let i128at = |i: usize| i128::from_le_bytes(r[i..i + 16].try_into().unwrap_or_default());
        let size = u64at(0);
        rows.insert(
            path,
            Row {
                size,
                id: Identity {
                    ino: u64at(8),
                    dev: u64at(16),
                    mtime_ns: i128at(24),
                    ctime_ns: i128at(40),
                },
                digests: Digests {
                    size,
                    sha1: r[56..76].try_into().ok()?,
                    sha256: r[76..108].try_into().ok()?,
                },
            },
        );
    }
    (at == b.len()).then_some(rows)
}

impl Index {
    pub(crate) fn new(scope: Option<PathBuf>) -> Index {
        Index {
            scope,
            rows: Mutex::new(Rows::default()),
        }
    }

    fn key(&self) -> Key {
        let scope = match &self.scope {
            Some(s) => s.as_os_str().as_bytes().to_vec(),
            None => b"*".to_vec(),
        };
        Key::new(
            "hash",
            format!("index2\0{}", String::from_utf8_lossy(&scope)),
        )
    }

    /// The rows, loaded from the cache on first use.
    fn rows<'a>(&'a self, cache: &Cache) -> std::sync::MutexGuard<'a, Rows> {
        let mut g = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if !g.loaded {
            g.loaded = true;
            let key = self.key();
            if let Some(body) = cache.get(&key) {
                match decode_rows(&body) {
                    Some(rows) => g.rows = rows,
                    None => cache.reject(&key),
                }
            }
        }
        g
    }

    /// Writes the rows back if this build changed any (see the module doc).
    pub(crate) fn save(&self, cache: &Cache) {
        let mut g = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if g.touched.is_empty() {
            return;
        }
        let key = self.key();
        // Rows another build wrote since we loaded are kept, ours win.
        let mut merged = cache
            .peek(&key)
            .and_then(|b| decode_rows(&b))
            .unwrap_or_default();
        for p in &g.touched {
            if let Some(r) = g.rows.get(p) {
                merged.insert(p.clone(), *r);
            }
        }
        // Rows of files that are gone are dropped, when there are many
        // more rows than this build used (a stat each, so not every time).
        if merged.len() > 2 * g.seen.len().max(g.touched.len()) + 1000 {
            let seen = &g.seen;
            merged.retain(|p, _| seen.contains(p) || p.exists());
        }
        cache.put(&key, &encode_rows(&merged));
        g.rows = merged;
        g.touched.clear();
    }

    fn lookup(&self, cache: &Cache, st: &Stamp, used: bool) -> Option<Digests> {
        let mut g = self.rows(cache);
        if used {
            g.seen.insert(st.path.clone());
        }
        let hit = g
            .rows
            .get(&st.path)
            .filter(|r| r.matches(st))
            .map(|r| r.digests);
        if used {
            let c = if hit.is_some() {
                &cache.counters.hits
            } else {
                &cache.counters.misses
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    fn insert(&self, cache: &Cache, st: &Stamp, d: &Digests) {
        let row = Row {
            size: st.size,
            id: st.id,
            digests: *d,
        };
        let mut g = self.rows(cache);
        if g.rows.get(&st.path) != Some(&row) {
            g.rows.insert(st.path.clone(), row);
            g.touched.insert(st.path.clone());
        }
    }

    fn last(&self, cache: &Cache, path: &Path) -> Option<Row> {
        self.rows(cache).rows.get(path).copied()
    }
}

/// The digests last recorded for the file at `path` (absolute) when it had
/// `size` bytes, whatever its stamp now: a guess of its content after a
/// fresh checkout or a `touch`, to be confirmed by reading it.
pub fn last_known(cache: &Cache, path: &Path, size: u64) -> Option<Digests> {
    let abs = std::path::absolute(path).ok()?;
    cache
        .hash_index()
        .last(cache, &abs)
        .filter(|r| r.size == size)
        .map(|r| r.digests)
}

/// The cached digests of the file at `path`, if its stamp is known.
pub fn lookup(cache: &Cache, path: &Path) -> Option<Digests> {
    let st = Stamp::of(path).ok()?;
    lookup_stamp(cache, &st)
}

/// [`lookup`] for a prediction: not counted.
pub fn peek(cache: &Cache, path: &Path) -> Option<Digests> {
    let st = Stamp::of(path).ok()?;
    cache.hash_index().lookup(cache, &st, false)
}

/// [`lookup_stamp`] for a prediction: not counted.
pub fn peek_stamp(cache: &Cache, st: &Stamp) -> Option<Digests> {
    cache.hash_index().lookup(cache, st, false)
}

pub fn lookup_stamp(cache: &Cache, st: &Stamp) -> Option<Digests> {
    cache.hash_index().lookup(cache, st, true)
}

/// Records digests computed from a read that started when the file had
/// stamp `before`; kept only if the stamp is unchanged now and not racy. A
/// row that already says this costs nothing (no second stat).
pub fn record(cache: &Cache, path: &Path, before: &Stamp, d: &Digests) {
    if cache.hash_index().lookup(cache, before, false) == Some(*d) {
        return;
    }
    match Stamp::of(path) {
        Ok(now) if &now == before && !now.racy() && d.size == now.size => {
            cache.hash_index().insert(cache, &now, d);
        }
        _ => {}
    }
}

/// Why the digests of `path` are not known (for `plan`): what differs from
/// the stamp last recorded for that path.
pub fn why_unknown(cache: &Cache, path: &Path) -> String {
    let Ok(now) = Stamp::of(path) else {
        return "cannot read it".into();
    };
    let Some(last) = cache.hash_index().last(cache, &now.path) else {
        return "not hashed before".into();
    };
    let mut diffs = Vec::new();
    if last.size != now.size {
        diffs.push(format!("size {} → {}", last.size, now.size));
    }
    for (name, changed) in [
        ("mtime", last.id.mtime_ns != now.id.mtime_ns),
        ("ctime", last.id.ctime_ns != now.id.ctime_ns),
        ("inode", last.id.ino != now.id.ino),
        ("device", last.id.dev != now.id.dev),
    ] {
        if changed {
            diffs.push(format!("{name} changed"));
        }
    }
    if diffs.is_empty() {
        "changed too recently to trust its time stamps".into()
    } else {
        format!("changed since it was cached ({})", diffs.join(", "))
    }
}

/// Digests of `path`: from the cache when its stamp is known, else by
/// reading it (one pass, both digests) and recording the result.
pub fn file_digests(cache: Option<&Cache>, path: &Path) -> std::io::Result<Digests> {
    let before = Stamp::of(path)?;
    if let Some(d) = cache.and_then(|c| lookup_stamp(c, &before)) {
        return Ok(d);
    }
    let d = read_digests(path)?;
    if let Some(c) = cache {
        record(c, path, &before, &d);
    }
    Ok(d)
}

/// SHA-1 and SHA-256 of a file in one read.
pub fn read_digests(path: &Path) -> std::io::Result<Digests> {
    let mut f = std::fs::File::open(path)?;
    let mut h1 = Sha1::new();
    let mut h2 = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h1.update(&buf[..n]);
        h2.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digests {
        size,
        sha1: h1.finalize().into(),
        sha256: h2.finalize().into(),
    })
}

/// Total size, and SHA-256 over `path\0size\0sha256\n` of every file (as for folder inputs).
pub fn tree_digest(files: &[(String, u64, [u8; 32])]) -> (u64, [u8; 32]) {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (p, size, d) in files {
        h.update(format!("{p}\0{size}\0{}\n", crate::ids::hex(d)).as_bytes());
    }
    (files.iter().map(|f| f.1).sum(), h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two builds of one recipe folder record rows at the same time: both
    /// rows survive (the second save merges), and one entry holds them.
    #[test]
    fn builds_of_one_folder_share_one_index_and_merge_their_rows() {
        let t = tempfile::tempdir().unwrap();
        let files: Vec<std::path::PathBuf> = (0..3)
            .map(|i| {
                let f = t.path().join(format!("f{i}"));
                std::fs::write(&f, format!("file {i}")).unwrap();
                f
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1100));
        let dir = t.path().join("c");
        let scope = t.path().join("recipes");
        let a = Cache::open(&dir, 1 << 30).unwrap().with_scope(&scope);
        let b = Cache::open(&dir, 1 << 30).unwrap().with_scope(&scope);
        let da = file_digests(Some(&a), &files[0]).unwrap();
        // b loads the (empty) index before a saves.
        let db = file_digests(Some(&b), &files[1]).unwrap();
        a.flush();
        b.flush();
        drop((a, b));
        let c = Cache::open(&dir, 1 << 30).unwrap().with_scope(&scope);
        assert_eq!(lookup(&c, &files[0]), Some(da));
        assert_eq!(lookup(&c, &files[1]), Some(db));
        assert_eq!(lookup(&c, &files[2]), None);
        let index_files = || -> Vec<(std::path::PathBuf, SystemTime)> {
            let mut v = Vec::new();
            for shard in std::fs::read_dir(dir.join("hash")).unwrap().flatten() {
                for e in std::fs::read_dir(shard.path()).unwrap().flatten() {
                    v.push((e.path(), e.metadata().unwrap().modified().unwrap()));
                }
            }
            v
        };
        assert_eq!(index_files().len(), 1, "one index, not an entry per file");
        // Another folder's index does not see them.
        let other = Cache::open(&dir, 1 << 30).unwrap().with_scope(t.path());
        assert_eq!(peek(&other, &files[0]), None);
        // A lookup-only build writes nothing.
        let before = index_files();
        c.flush();
        assert_eq!(index_files(), before);
    }

    #[test]
    fn a_rewrite_with_the_old_mtime_restored_is_not_served_stale() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(&t.path().join("c"), 1 << 20).unwrap();
        let f = t.path().join("f.bin");
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let write_with_mtime = |bytes: &[u8]| {
            std::fs::write(&f, bytes).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        };
        write_with_mtime(b"version one");
        // Age the ctime past the racy window.
        std::thread::sleep(Duration::from_millis(1100));
        let d1 = file_digests(Some(&c), &f).unwrap();
        assert_eq!(lookup(&c, &f), Some(d1), "stored after the first read");
        // Same size, other bytes, mtime forged back.
        write_with_mtime(b"version two");
        assert_eq!(
            Stamp::of(&f).unwrap().id.mtime_ns,
            1_000_000 * 1_000_000_000
        );
        assert_eq!(lookup(&c, &f), None, "the ctime changed: no stale hit");
        assert!(
            why_unknown(&c, &f).contains("ctime changed"),
            "{}",
            why_unknown(&c, &f)
        );
        let d2 = file_digests(Some(&c), &f).unwrap();
        assert_ne!(d1.sha256, d2.sha256);
        assert_eq!(d2, read_digests(&f).unwrap());
    }
}
