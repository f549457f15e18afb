//! One door to a built artefact, whatever its format: list its files, read a
//! small one, copy one out, hash them all. A prestaged `.wim` is read through
//! wimlib (`crate::wim`), a disk image through its partition table and FAT
//! volume (`super::disk`).

use super::disk::{self, DiskImage};
use super::wimread::Resources;
use super::InspectError;
use crate::wim::{DirEntry, Wim, WimError, WimInfo};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// WIM files start with this magic (`reference/wim-format.md`).
const WIM_MAGIC: &[u8] = b"MSWIM\0\0\0";
/// Files extracted from a WIM per batch for hashing: bounds the temporary space.
const BATCH_BYTES: u64 = 256 << 20;
/// Buffer for hashing a member: a small file in one read.
const READ_BYTES: usize = 256 << 10;

/// A file of the artefact.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
}

/// An opened prestaged media file.
pub struct WimArtefact {
    pub wim: Wim,
    pub info: WimInfo,
    /// The image holding the media (prestaged media have exactly one).
    pub index: u32,
}

pub enum Artefact {
    Wim(WimArtefact),
    Disk(DiskImage),
}

/// What the first bytes say a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Wim,
    Disk,
    Manifest,
}

/// Recognises a file by its first bytes (a manifest by its leading `{`).
pub fn sniff(path: &Path) -> Result<Format, InspectError> {
    let head = disk::head(path, 512).map_err(|e| InspectError::io("read", path, e))?;
    if head.starts_with(WIM_MAGIC) {
        Ok(Format::Wim)
    } else if disk::looks_like_disk(&head) {
        Ok(Format::Disk)
    } else if head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        Ok(Format::Manifest)
    } else {
        Err(InspectError::Unknown {
            path: path.to_path_buf(),
        })
    }
}

impl Artefact {
    pub fn open(path: &Path) -> Result<Artefact, InspectError> {
        match sniff(path)? {
            Format::Wim => {
                let wim = Wim::open(path).map_err(|e| match e {
                    WimError::Lib { msg, code, .. } => InspectError::Damaged {
                        path: path.to_path_buf(),
                        what: format!(
                            "wimlib cannot open it: {msg} (wimlib error {code}); the file is truncated or damaged"
                        ),
                    },
                    e => InspectError::Wim(e),
                })?;
                let info = wim.info();
                let index = if info.boot_index > 0 {
                    info.boot_index
                } else {
                    1
                };
                Ok(Artefact::Wim(WimArtefact { wim, info, index }))
            }
            Format::Disk => Ok(Artefact::Disk(DiskImage::open(path)?)),
            Format::Manifest => Err(InspectError::NotAnArtefact {
                path: path.to_path_buf(),
            }),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Artefact::Wim(_) => "wim",
            Artefact::Disk(_) => "disk",
        }
    }

    /// Every file (not folder), sorted by path.
    pub fn list(&self) -> Result<Vec<Listed>, String> {
        match self {
            Artefact::Wim(w) => Ok(w
                .wim
                .list(w.index)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|e| !e.is_dir)
                .map(|e| Listed {
                    path: e.path,
                    size: e.size,
                })
                .collect()),
            Artefact::Disk(d) => Ok(d
                .list()?
                .into_iter()
                .map(|(path, size)| Listed { path, size })
                .collect()),
        }
    }

    /// Copies the file at `path` out to a file inside `dir`; returns it.
    pub fn copy_out(&self, path: &str, dir: &Path) -> Result<PathBuf, String> {
        match self {
            Artefact::Wim(w) => {
                w.wim
                    .extract(w.index, dir, &[path])
                    .map_err(|e| e.to_string())?;
                Ok(dir.join(path))
            }
            Artefact::Disk(d) => {
                let dest = dir.join(path);
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
                }
                let mut f = std::fs::File::create(&dest).map_err(|e| e.to_string())?;
                d.read_into(path, &mut f)?;
                f.flush().map_err(|e| e.to_string())?;
                Ok(dest)
            }
        }
    }

    /// The bytes of a small file.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        match self {
            Artefact::Wim(_) => {
                let tmp = scratch().map_err(|e| e.to_string())?;
                let f = self.copy_out(path, tmp.path())?;
                std::fs::read(f).map_err(|e| e.to_string())
            }
            Artefact::Disk(d) => {
                let mut v = Vec::new();
                d.read_into(path, &mut v)?;
                Ok(v)
            }
        }
    }

    /// Hashes every file of `files`, calling `each` with its digests (or why
    /// it could not be read), in the order of `files`. A WIM member is read
    /// in place from its resource, else extracted by wimlib in batches of at
    /// most [`BATCH_BYTES`]; a disk image is walked once.
    pub fn hash_all(
        &self,
        files: &[Listed],
        each: &mut dyn FnMut(&Listed, Result<Digests, String>),
    ) -> Result<(), InspectError> {
        match self {
            Artefact::Disk(d) => hash_disk(d, files, each),
            Artefact::Wim(w) => hash_wim(w, files, each)?,
        }
        Ok(())
    }
}

/// Hashes `files` of a disk image in one walk of the volume (each folder
/// read once, each file as it is met), then hands the digests out in the
/// order of `files`.
fn hash_disk(
    d: &DiskImage,
    files: &[Listed],
    each: &mut dyn FnMut(&Listed, Result<Digests, String>),
) {
    let paths: Vec<&str> = files.iter().map(|l| l.path.as_str()).collect();
    let mut got: Vec<Option<Result<Digests, String>>> = vec![None; files.len()];
    let mut buf = vec![0u8; READ_BYTES];
    let whole = d.read_each(&paths, &mut |i, r| {
        got[i] = Some(r.and_then(|r| {
            hash_reader(r, paths[i], &mut buf).map_err(|e| format!("cannot read: {e}"))
        }));
    });
    for (l, r) in files.iter().zip(got) {
        // Not visited: the volume itself could not be opened.
        let r = r.unwrap_or_else(|| Err(whole.clone().err().unwrap_or_default()));
        each(l, r);
    }
}

/// SHA-256 (and the GUID-blind one) of a stream, read through `buf`.
pub(super) fn hash_reader(
    r: &mut dyn Read,
    member: &str,
    buf: &mut [u8],
) -> std::io::Result<Digests> {
    let mut h = Hasher::new(member);
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.write_all(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A temporary folder for extracted files (under `TMPDIR`).
pub fn scratch() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(".mediabuild-inspect-")
        .tempdir()
}

/// Hashes `files` of a WIM: each member read in place from its resource
/// (`wimread`, in the order of the file) when its SHA-1 comes out as wimlib
/// lists it; the rest (a damaged member, a WIM with solid resources) are
/// extracted by wimlib in batches. The digests are handed out in the order
/// of `files`.
fn hash_wim(
    w: &WimArtefact,
    files: &[Listed],
    each: &mut dyn FnMut(&Listed, Result<Digests, String>),
) -> Result<(), InspectError> {
    let mut got: Vec<Option<Result<Digests, String>>> = vec![None; files.len()];
    let entries = w.wim.list(w.index).unwrap_or_default();
    let by_path: BTreeMap<&str, &DirEntry> = entries
        .iter()
        .filter(|e| !e.is_dir)
        .map(|e| (e.path.as_str(), e))
        .collect();
    if let Some(mut res) = Resources::open(w.wim.path(), &w.info) {
        let mut order: Vec<(u64, usize, &DirEntry)> = files
            .iter()
            .enumerate()
            .filter_map(|(i, l)| by_path.get(l.path.as_str()).map(|e| (e.offset, i, *e)))
            .collect();
        order.sort_by_key(|&(offset, i, _)| (offset, i));
        for (_, i, e) in order {
            got[i] = res.digests(e, &files[i].path).map(Ok);
        }
    }
    let rest: Vec<(usize, &Listed)> = files
        .iter()
        .enumerate()
        .filter(|(i, _)| got[*i].is_none())
        .collect();
    let mut batch: Vec<(usize, &Listed)> = Vec::new();
    let mut bytes = 0;
    for (k, &(i, l)) in rest.iter().enumerate() {
        batch.push((i, l));
        bytes += l.size;
        if bytes >= BATCH_BYTES || k + 1 == rest.len() {
            hash_wim_batch(w, &batch, &mut got)?;
            batch.clear();
            bytes = 0;
        }
    }
    for (l, r) in files.iter().zip(got) {
        each(l, r.unwrap_or_else(|| Err("not hashed".into())));
    }
    Ok(())
}

/// Extracts `batch` (index in `got`, file) in one wimlib call and hashes
/// it. A batch that fails is halved until the damaged file is alone, so that
/// it is named: a few calls per damaged file rather than one per file.
fn hash_wim_batch(
    w: &WimArtefact,
    batch: &[(usize, &Listed)],
    got: &mut [Option<Result<Digests, String>>],
) -> Result<(), InspectError> {
    let tmp = scratch()
        .map_err(|e| InspectError::io("create a temporary folder in", &std::env::temp_dir(), e))?;
    let paths: Vec<&str> = batch.iter().map(|(_, l)| l.path.as_str()).collect();
    match w.wim.extract(w.index, tmp.path(), &paths) {
        Ok(()) => {
            let mut buf = vec![0u8; READ_BYTES];
            for &(i, l) in batch {
                got[i] = Some(hash_file(&tmp.path().join(&l.path), &l.path, &mut buf));
                let _ = std::fs::remove_file(tmp.path().join(&l.path));
            }
        }
        Err(e) if batch.len() == 1 => got[batch[0].0] = Some(Err(e.to_string())),
        Err(_) => {
            drop(tmp);
            let (a, b) = batch.split_at(batch.len() / 2);
            hash_wim_batch(w, a, got)?;
            hash_wim_batch(w, b, got)?;
        }
    }
    Ok(())
}

fn hash_file(p: &Path, member: &str, buf: &mut [u8]) -> Result<Digests, String> {
    let mut f = std::fs::File::open(p).map_err(|e| e.to_string())?;
    hash_reader(&mut f, member, buf).map_err(|e| e.to_string())
}

/// The digests of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Digests {
    pub sha256: [u8; 32],
    /// For a WIM or `.swm` file: SHA-256 with the header GUID (bytes 24–39)
    /// zeroed. Exported images get a GUID derived from the recipe digest, so
    /// this is what says whether the image itself changed.
    pub content: Option<[u8; 32]>,
}

/// SHA-256 of a stream, and the GUID-blind one for WIM files.
pub struct Hasher {
    full: Sha256,
    content: Option<Sha256>,
    pos: u64,
}

impl Hasher {
    pub fn new(path: &str) -> Hasher {
        let lower = path.to_ascii_lowercase();
        let wim = lower.ends_with(".wim") || lower.ends_with(".swm");
        Hasher {
            full: Sha256::new(),
            content: wim.then(Sha256::new),
            pos: 0,
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: self.full.finalize().into(),
            content: self.content.map(|c| c.finalize().into()),
        }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.full.update(buf);
        if let Some(c) = &mut self.content {
            let (start, end) = (self.pos, self.pos + buf.len() as u64);
            if end <= 24 || start >= 40 {
                c.update(buf);
            } else {
                let mut b = buf.to_vec();
                for (i, x) in b.iter_mut().enumerate() {
                    let at = start + i as u64;
                    if (24..40).contains(&at) {
                        *x = 0;
                    }
                }
                c.update(&b);
            }
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_ignores_only_the_guid() {
        let mut a = b"MSWIM\0\0\0".to_vec();
        a.resize(64, 7);
        let mut b = a.clone();
        b[30] = 1; // inside the GUID
        let digest = |bytes: &[u8], chunk: usize| {
            let mut h = Hasher::new("x/install.wim");
            for c in bytes.chunks(chunk) {
                h.write_all(c).unwrap();
            }
            h.finish()
        };
        let (da, db) = (digest(&a, 5), digest(&b, 64));
        assert_ne!(da.sha256, db.sha256);
        assert_eq!(da.content, db.content);
        let mut c = a.clone();
        c[40] = 1; // just past it
        assert_ne!(digest(&c, 3).content, da.content);
        assert_eq!(Hasher::new("a.txt").finish().content, None);
    }
}
