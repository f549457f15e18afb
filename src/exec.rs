//! What a build's stages share: the build context ([`Ctx`]) renderers work
//! in, the members they render ([`Resolved`]), the build's error type,
//! temporary paths removed unless kept, and file hashing. `render` and
//! `build` both stand on this module; it knows neither.

use crate::plan::Plan;
use crate::progress::{Cancel, Reporter};
use crate::recipe::secret::{Secret, SecretError};
use crate::wim::WimError;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{key}: {source}")]
    Secret { key: String, source: SecretError },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Wim(WimError),
    /// The plan lacks what a renderer needs (a planning bug, not bad input).
    #[error("the plan has no {0}")]
    NotPlanned(&'static str),
    #[error("outputs.disk.size: {0:?} is not a size")]
    NotASize(String),
    #[error("outputs.disk: {0}")]
    Disk(crate::disk::DiskError),
    #[error("writing the WIM: {0}")]
    WimWrite(crate::wimwrite::WimWriteError),
    #[error("{0}")]
    Manifest(serde_json::Error),
    #[error("cannot start worker threads: {0}")]
    Threads(rayon::ThreadPoolBuildError),
    #[error("{0}")]
    Cache(crate::cache::CacheError),
    /// A thread of the build ended without an answer.
    #[error("{0}")]
    Stopped(&'static str),
    #[error("the output failed verification: {0}")]
    Verify(String),
    /// An input image failed its check (wimlib's full verification of the
    /// exported image: every blob decompressed and its SHA-1 compared).
    #[error("{key}: the input {shown} is damaged (image {index}: {detail}); `wimlib-imagex verify {}` checks it; use a good copy", .path.display())]
    DamagedInput {
        key: &'static str,
        /// The source as the user names it (`Win11.iso!sources/install.wim`).
        shown: String,
        /// The file wimlib read.
        path: PathBuf,
        index: u32,
        detail: String,
    },
    #[error("cancelled; nothing was written to the output paths")]
    Cancelled,
    #[error("fault injected at {0} (MEDIABUILD_FAULT_INJECT)")]
    Fault(String),
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// A cache entry turned out corrupted while being used; it was dropped
    /// and the output is rendered again without it.
    #[error("cache entry {0} is corrupted")]
    CacheCorrupt(String),
}

impl From<WimError> for BuildError {
    fn from(e: WimError) -> Self {
        match e {
            WimError::Cancelled => BuildError::Cancelled,
            e => BuildError::Wim(e),
        }
    }
}

impl BuildError {
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> BuildError {
        BuildError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Which WIM writer writes the prestaged media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WimWriter {
    /// mediabuild's own parallel writer (the default).
    #[default]
    Native,
    /// wimlib's own writer: the reference and the benchmark baseline.
    Wimlib,
}

/// A media member with the file that holds its bytes.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub path: String,
    pub file: PathBuf,
    pub size: u64,
    pub group: String,
    /// True when `file` is inside the staging tree at `tree/<path>`.
    pub in_tree: bool,
    /// Digests known without reading `file` (an export restored from the cache).
    pub known: Option<crate::wimwrite::KnownDigests>,
    /// Never served from nor stored in the cache (generated, secret-derived).
    pub never_cache: bool,
    /// `file` is a hard link to a cache body that other builds link and
    /// unlink too (a restored export): its ctime may move while it is read.
    pub shared: bool,
    /// Where to record this member's digests once a writer knows them, so
    /// that the next build knows them without reading (a boot file,
    /// extracted anew every build).
    pub remember: Option<crate::cache::Key>,
}

/// Shared state of one build.
pub(crate) struct Ctx<'a> {
    pub plan: &'a Plan,
    pub staging: PathBuf,
    pub jobs: usize,
    pub rep: &'a dyn Reporter,
    pub cancel: &'a Cancel,
    pub password: Option<Secret>,
    pub writer: WimWriter,
    pub cache: Option<std::sync::Arc<crate::cache::Cache>>,
    /// SHA-256 of rendered artefacts, computed once (verify and finalize share it).
    pub artefact_sha: std::sync::Mutex<std::collections::BTreeMap<PathBuf, [u8; 32]>>,
    /// Export bodies whose stamp is recorded once the staging folder is gone.
    pub restamps: std::sync::Mutex<Vec<crate::cache::resources::Restamp>>,
    /// Work that the end of the build waits for (storing into the cache).
    pub background: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Exports linked into the cache whose entries wait for their digests
    /// (from the WIM writer, else read at the end of the build).
    pub pending_exports: std::sync::Mutex<Vec<crate::cache::resources::PendingExport>>,
    /// Variable name → fingerprint of its value, for the manifest.
    pub fingerprints: std::collections::BTreeMap<String, String>,
}

impl Ctx<'_> {
    /// Records `r` to apply when the build's links into the cache are gone.
    pub(crate) fn restamp(&self, r: crate::cache::resources::Restamp) {
        self.restamps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    /// Runs `work` beside the build (in line with one job); the build waits
    /// for it before it ends ([`Ctx::join_background`]).
    pub(crate) fn background(&self, work: impl FnOnce() + Send + 'static) {
        if self.jobs <= 1 {
            return work();
        }
        // No thread to be had: the work is skipped (the cache is an
        // accelerator), the build goes on.
        if let Ok(h) = std::thread::Builder::new()
            .name("cache-store".into())
            .spawn(work)
        {
            self.background
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(h);
        }
    }

    /// Waits for the work started by [`Ctx::background`].
    pub(crate) fn join_background(&self) {
        let handles =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }

    /// Completes the pending export entries: those whose staged file is in
    /// `known` with its digests, or all of them (`known` None: read them).
    pub(crate) fn complete_exports(
        &self,
        known: Option<&std::collections::BTreeMap<PathBuf, crate::wimwrite::KnownDigests>>,
    ) {
        let Some(c) = &self.cache else { return };
        let pending = std::mem::take(
            &mut *self
                .pending_exports
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut left = Vec::new();
        for p in pending {
            let digests = match known {
                Some(k) => match k.get(&p.staged) {
                    Some(d) => Some(*d),
                    None => {
                        left.push(p);
                        continue;
                    }
                },
                None => None,
            };
            if let Some(r) = p.complete(c, digests) {
                self.restamp(r);
            }
        }
        *self
            .pending_exports
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = left;
    }

    /// SHA-256 of the artefact file at `tmp`, read once per build.
    pub fn artefact_sha256(&self, tmp: &Path) -> Result<[u8; 32], BuildError> {
        let memo = |m: &std::sync::Mutex<std::collections::BTreeMap<PathBuf, [u8; 32]>>| {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(tmp)
                .copied()
        };
        if let Some(d) = memo(&self.artefact_sha) {
            return Ok(d);
        }
        // Around the page cache: artefacts are written that way and not read again.
        let d = crate::fsutil::direct::sha256_direct(tmp, &|| self.cancel.is_cancelled()).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::Interrupted if self.cancel.is_cancelled() => {
                    BuildError::Cancelled
                }
                _ => BuildError::io("read", tmp, e),
            },
        )?;
        self.artefact_sha
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tmp.to_path_buf(), d);
        Ok(d)
    }

    /// Records the SHA-256 of `path`, known without reading it (hashed while it
    /// was written, or a hard link of a file already hashed).
    pub fn remember_sha256(&self, path: &Path, digest: [u8; 32]) {
        self.artefact_sha
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_path_buf(), digest);
    }

    pub fn tree_dir(&self) -> PathBuf {
        self.staging.join("tree")
    }
    pub fn check_cancel(&self) -> Result<(), BuildError> {
        if self.cancel.is_cancelled() {
            Err(BuildError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// A folder (or file) removed when dropped unless kept.
pub(crate) struct TempPath {
    path: PathBuf,
    keep: bool,
}

impl TempPath {
    pub fn new(path: PathBuf) -> TempPath {
        TempPath { path, keep: false }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.keep {
            crate::fsutil::remove_any(&self.path);
        }
    }
}

/// `dir/.NAME.partial-PID` beside `target`.
pub(crate) fn partial_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// [`crate::fsutil::sha256::sha256_file`] with the build's errors.
pub(crate) fn sha256_file(
    path: &Path,
    on_bytes: &dyn Fn(u64),
    cancel: &dyn Fn() -> bool,
) -> Result<[u8; 32], BuildError> {
    crate::fsutil::sha256::sha256_file(path, on_bytes, cancel).map_err(|e| {
        if e.kind() == std::io::ErrorKind::Interrupted && cancel() {
            BuildError::Cancelled
        } else {
            BuildError::io("read", path, e)
        }
    })
}
