//! What the build caches besides input hashes: compressed WIM resources,
//! exported images and "this artefact passed verification" marks.
//!
//! * `res/`: one data resource of our WIM writer, keyed by the content's
//!   SHA-1 and size, the parameters that shape its bytes (compression, chunk
//!   size, level, probe, window, overflow policy) and the compressor version
//!   (wimlib's and ours). Body: one flag byte (1 = compressed) + the
//!   resource bytes, written verbatim at the new offset on a hit.
//! * `export/`: an image exported alone from a WIM (`sources/boot.wim`, the
//!   OS image), keyed by the source file's SHA-256, the index, the bootable
//!   flag, the derived GUID, the epoch and wimlib's version. Body: length,
//!   SHA-256 and SHA-1 of the exported WIM, which sits beside the entry as a
//!   plain `.wim` file: a restore hard-links it into the staging folder (one
//!   read to check it, no copy).
//! * `verify/`: an artefact of this SHA-256 and size already passed the
//!   check named in the key (wimlib's verify, the disk read-back).
//!
//! Never cached: `SMS/data/Variables.dat` and the other generated members
//! (secret-derived or tiny); the store refuses to serve or keep them.

use super::hashes::{self, Digests, Stamp};
use super::{Cache, Key};
use crate::ids::hex;
use crate::wimwrite::{KnownDigests, ResourceParams, ResourceStore, StoredResource, WimReport};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Key of an exported image.
pub fn export_key(
    source_sha256: &[u8; 32],
    index: u32,
    bootable: bool,
    guid: &[u8; 16],
    epoch: i64,
) -> Key {
    Key::new(
        "export",
        format!(
            "export1\0{}\0{index}\0{bootable}\0{}\0{epoch}\0{}",
            hex(source_sha256),
            hex(guid),
            versions()
        ),
    )
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
    /// Digests known without a hash-cache lookup (restored exports).
    known: BTreeMap<PathBuf, KnownDigests>,
    /// Files never served from nor stored in the cache.
    never: BTreeSet<PathBuf>,
}

impl WimStore {
    pub fn new(
        cache: Arc<Cache>,
        known: BTreeMap<PathBuf, KnownDigests>,
        never: BTreeSet<PathBuf>,
    ) -> WimStore {
        WimStore {
            cache,
            known,
            never,
        }
    }
}

impl ResourceStore for WimStore {
    fn digests(&self, source: &Path, size: u64) -> Option<KnownDigests> {
        if self.never.contains(source) {
            return None;
        }
        if let Some(k) = self.known.get(source) {
            return Some(*k);
        }
        hashes::lookup(&self.cache, source)
            .filter(|d| d.size == size)
            .map(|d| KnownDigests {
                sha1: d.sha1,
                sha256: d.sha256,
            })
    }

    fn resource(
        &self,
        sha1: &[u8; 20],
        size: u64,
        params: &ResourceParams,
    ) -> Option<StoredResource> {
        let mut e = self.cache.open_entry(&resource_key(sha1, size, params))?;
        let mut flag = [0u8; 1];
        if e.len < 1 || e.reader.read_exact(&mut flag).is_err() || flag[0] > 1 {
            self.cache.reject(&e);
            return None;
        }
        let mut hasher = Sha256::new();
        hasher.update(flag);
        let len = e.len - 1;
        Some(StoredResource {
            reader: Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                e.reader.take(len),
            )),
            len,
            compressed: flag[0] == 1,
            hasher,
            expected: e.sha256,
            id: e.path.display().to_string(),
        })
    }

    fn corrupt(&self, id: &str) {
        self.cache.reject_path(Path::new(id));
    }
}

/// After a WIM was written at `wim`: stores every resource compressed now
/// (not those of `never` contents) and records the digests of the content
/// files whose stamps were taken before the write.
pub fn store_after_write(
    cache: &Cache,
    wim: &Path,
    report: &WimReport,
    params: &ResourceParams,
    never_paths: &BTreeSet<String>,
    stamps: &[(String, PathBuf, Stamp)],
) {
    let never: BTreeSet<[u8; 20]> = report
        .files
        .iter()
        .filter(|f| never_paths.contains(&f.path))
        .map(|f| f.sha1)
        .collect();
    for r in report.resources.iter().filter(|r| !r.from_store) {
        if never.contains(&r.sha1) {
            continue;
        }
        let key = resource_key(&r.sha1, r.size, params);
        let flag = [u8::from(r.compressed)];
        cache.put_file_range(&key, &flag, wim, r.offset, r.size_in_wim);
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

/// Restores an exported image at `dst`: the entry (length, SHA-256, SHA-1
/// of the body, itself checked) and its body, hard-linked (or copied), then
/// read once to check the SHA-256. None on a miss or a bad entry (removed;
/// `dst` removed too).
pub fn restore_export(cache: &Cache, key: &Key, dst: &Path) -> Option<KnownDigests> {
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
    if meta.len() != 60 {
        return bad(false);
    }
    let len = u64::from_le_bytes(meta[..8].try_into().ok()?);
    let sha256: [u8; 32] = meta[8..40].try_into().ok()?;
    let sha1: [u8; 20] = meta[40..60].try_into().ok()?;
    if std::fs::metadata(&body).map(|m| m.len()).ok() != Some(len) {
        return bad(false);
    }
    if link_or_copy(&body, dst).is_err() {
        return bad(true);
    }
    let _ = std::fs::File::options()
        .write(true)
        .open(&body)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    match crate::build::hash::sha256_file(dst, &|_| {}, &|| false) {
        Ok(d) if d == sha256 => Some(KnownDigests { sha1, sha256 }),
        _ => bad(true),
    }
}

/// Stores the freshly exported image at `file` under `key`: its body
/// linked (or copied) into the cache, then the entry with its digests.
pub fn store_export(cache: &Cache, key: &Key, file: &Path) {
    let tmp = cache.tmp_path(key);
    let res = (|| -> std::io::Result<()> {
        let d = hashes::read_digests(file)?;
        link_or_copy(file, &tmp)?;
        std::fs::rename(&tmp, export_body(cache, key))?;
        let mut meta = Vec::with_capacity(60);
        meta.extend_from_slice(&d.size.to_le_bytes());
        meta.extend_from_slice(&d.sha256);
        meta.extend_from_slice(&d.sha1);
        cache.put(key, &meta);
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        cache
            .counters
            .put_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}
