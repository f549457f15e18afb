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

use super::{Cache, Key};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
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

    fn key(&self) -> Key {
        Key::new(
            "hash",
            format!(
                "hash1\0{}\0{}\0{}\0{}\0{}\0{}",
                self.path.display(),
                self.size,
                self.id.mtime_ns,
                self.id.ctime_ns,
                self.id.ino,
                self.id.dev
            ),
        )
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

fn decode(b: &[u8]) -> Option<Digests> {
    if b.len() != 60 {
        return None;
    }
    Some(Digests {
        size: u64::from_le_bytes(b[..8].try_into().ok()?),
        sha1: b[8..28].try_into().ok()?,
        sha256: b[28..60].try_into().ok()?,
    })
}

fn encode(d: &Digests) -> Vec<u8> {
    let mut v = Vec::with_capacity(60);
    v.extend_from_slice(&d.size.to_le_bytes());
    v.extend_from_slice(&d.sha1);
    v.extend_from_slice(&d.sha256);
    v
}

/// The cached digests of the file at `path`, if its stamp is known.
pub fn lookup(cache: &Cache, path: &Path) -> Option<Digests> {
    let st = Stamp::of(path).ok()?;
    lookup_stamp(cache, &st)
}

/// [`lookup`] for a prediction: not counted (`Cache::peek`).
pub fn peek(cache: &Cache, path: &Path) -> Option<Digests> {
    let st = Stamp::of(path).ok()?;
    cache
        .peek(&st.key())
        .and_then(|b| decode(&b))
        .filter(|d| d.size == st.size)
}

pub fn lookup_stamp(cache: &Cache, st: &Stamp) -> Option<Digests> {
    cache
        .get(&st.key())
        .and_then(|b| decode(&b))
        .filter(|d| d.size == st.size)
}

/// Records digests computed from a read that started when the file had
/// stamp `before`; stored only if the stamp is unchanged now and not racy.
/// The stamp is also remembered by path, so that `plan` can say what
/// changed about a file whose digests are no longer known.
pub fn record(cache: &Cache, path: &Path, before: &Stamp, d: &Digests) {
    match Stamp::of(path) {
        Ok(now) if &now == before && !now.racy() && d.size == now.size => {
            cache.put(&now.key(), &encode(d));
            cache.put(&last_key(&now.path), now.fields().as_bytes());
        }
        _ => {}
    }
}

fn last_key(abs: &Path) -> Key {
    Key::new("hash", format!("last1\0{}", abs.display()))
}

impl Stamp {
    fn fields(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.size, self.id.mtime_ns, self.id.ctime_ns, self.id.ino, self.id.dev
        )
    }
}

/// Why the digests of `path` are not known (for `plan`): what differs from
/// the stamp last recorded for that path.
pub fn why_unknown(cache: &Cache, path: &Path) -> String {
    let Ok(now) = Stamp::of(path) else {
        return "cannot read it".into();
    };
    let Some(last) = cache.get(&last_key(&now.path)) else {
        return "not hashed before".into();
    };
    let last = String::from_utf8_lossy(&last).into_owned();
    let old: Vec<&str> = last.split(' ').collect();
    let new = now.fields();
    let new: Vec<&str> = new.split(' ').collect();
    let names = ["size", "mtime", "ctime", "inode", "device"];
    let diffs: Vec<String> = names
        .iter()
        .zip(old.iter().zip(&new))
        .filter(|(_, (a, b))| a != b)
        .map(|(n, (a, b))| {
            if *n == "size" {
                format!("size {a} → {b}")
            } else {
                format!("{n} changed")
            }
        })
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

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
