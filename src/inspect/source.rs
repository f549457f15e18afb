//! One door to a built artefact, whatever its format: list its files, read a
//! small one, copy one out, hash them all. A prestaged `.wim` is read through
//! wimlib (`crate::wim`), a disk image through its partition table and FAT
//! volume (`super::disk`).

use super::disk::{self, DiskImage};
use super::InspectError;
use crate::wim::{Wim, WimError, WimInfo};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// WIM files start with this magic (`reference/wim-format.md`).
const WIM_MAGIC: &[u8] = b"MSWIM\0\0\0";
/// Files extracted from a WIM per batch for hashing: bounds the temporary space.
const BATCH_BYTES: u64 = 256 << 20;

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
    /// it could not be read). A WIM is extracted in batches of at most
    /// [`BATCH_BYTES`]; a batch that fails is retried file by file, so that a
    /// damaged file is named.
    pub fn hash_all(
        &self,
        files: &[Listed],
        each: &mut dyn FnMut(&Listed, Result<Digests, String>),
    ) -> Result<(), InspectError> {
        match self {
            Artefact::Disk(d) => {
                for l in files {
                    let mut h = Hasher::new(&l.path);
                    let r = d.read_into(&l.path, &mut h).map(|_| h.finish());
                    each(l, r);
                }
            }
            Artefact::Wim(w) => {
                let mut batch: Vec<&Listed> = Vec::new();
                let mut bytes = 0;
                for (i, l) in files.iter().enumerate() {
                    batch.push(l);
                    bytes += l.size;
                    if bytes >= BATCH_BYTES || i + 1 == files.len() {
                        hash_wim_batch(w, &batch, each)?;
                        batch.clear();
                        bytes = 0;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A temporary folder for extracted files (under `TMPDIR`).
pub fn scratch() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(".mediabuild-inspect-")
        .tempdir()
}

fn hash_wim_batch(
    w: &WimArtefact,
    batch: &[&Listed],
    each: &mut dyn FnMut(&Listed, Result<Digests, String>),
) -> Result<(), InspectError> {
    let tmp = scratch()
        .map_err(|e| InspectError::io("create a temporary folder in", &std::env::temp_dir(), e))?;
    let paths: Vec<&str> = batch.iter().map(|l| l.path.as_str()).collect();
    let whole = w.wim.extract(w.index, tmp.path(), &paths);
    for l in batch {
        let r = match &whole {
            Ok(()) => hash_file(&tmp.path().join(&l.path), &l.path),
            // Retry alone: which file is damaged?
            Err(_) => {
                let one = scratch().map_err(|e| e.to_string());
                one.and_then(|d| {
                    w.wim
                        .extract(w.index, d.path(), &[l.path.as_str()])
                        .map_err(|e| e.to_string())?;
                    hash_file(&d.path().join(&l.path), &l.path)
                })
            }
        };
        let _ = std::fs::remove_file(tmp.path().join(&l.path));
        each(l, r);
    }
    Ok(())
}

fn hash_file(p: &Path, member: &str) -> Result<Digests, String> {
    let mut f = std::fs::File::open(p).map_err(|e| e.to_string())?;
    let mut h = Hasher::new(member);
    std::io::copy(&mut f, &mut h).map_err(|e| e.to_string())?;
    Ok(h.finish())
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
