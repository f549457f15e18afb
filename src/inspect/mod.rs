//! What is on a built artefact, read back without Windows: `inspect` (media
//! identity, images, packages, variables, TsmBootstrap.ini, partitions),
//! `verify` (structure, every member against the manifest, the recipe against
//! the media) and `diff` (two artefacts or manifests).
//!
//! The media itself is the first source (its files, TsmBootstrap.ini, the
//! decrypted Variables.dat, the embedded images' XML); the manifest beside the
//! artefact (`NAME.manifest.json`, the build's `Manifest` type) adds what the
//! media cannot say: package names and kinds, source indexes, fingerprints.

pub mod diff;
mod disk;
mod facts;
mod fatcheck;
pub mod source;
pub mod verify;
mod wimread;

pub use disk::{FsFacts, PartitionFacts, TableFacts};
pub use facts::{
    inspect, ImageInfo, Inspection, MediaInfo, MemberInfo, PackageInfo, PartitionFs, VarInfo,
    VariablesInfo, WimFacts,
};

use crate::build::Manifest;
use crate::recipe::secret::Secret;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Damaged { path: PathBuf, what: String },
    #[error("{path}: neither a WIM file, a disk image nor a manifest; give a built .wim or .img, or its NAME.manifest.json")]
    Unknown { path: PathBuf },
    #[error("{path} is a manifest, not an artefact; give the .wim or .img it describes (use --manifest for the manifest)")]
    NotAnArtefact { path: PathBuf },
    #[error("{path}: not a mediabuild manifest: {msg}")]
    Manifest { path: PathBuf, msg: String },
    #[error(
        "SMS/data/Variables.dat: {0}; check the media password (--password-env / --password-file)"
    )]
    Variables(crate::media::variables::DecodeError),
    #[error("--show-values needs the media password, which this media requires: give --password-env NAME or --password-file PATH")]
    NeedPassword,
    #[error(transparent)]
    Wim(#[from] crate::wim::WimError),
}

impl InspectError {
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> InspectError {
        InspectError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How to read an artefact.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// The manifest; default `NAME.manifest.json` beside the artefact, when present.
    pub manifest: Option<PathBuf>,
    /// The media password, to decrypt Variables.dat of media that require one.
    pub password: Option<Secret>,
    /// Show the values of variables the manifest marks non-secret.
    pub show_values: bool,
}

/// `NAME.manifest.json` beside `artefact`.
pub fn manifest_beside(artefact: &Path) -> PathBuf {
    crate::recipe::manifest_path(artefact)
}

/// Reads a manifest file.
pub fn read_manifest(path: &Path) -> Result<Manifest, InspectError> {
    let text = std::fs::read_to_string(path).map_err(|e| InspectError::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| InspectError::Manifest {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// The manifest for `artefact`: the one given, else the one beside it if any.
pub fn find_manifest(
    artefact: &Path,
    given: Option<&Path>,
) -> Result<Option<(PathBuf, Manifest)>, InspectError> {
    match given {
        Some(p) => Ok(Some((p.to_path_buf(), read_manifest(p)?))),
        None => {
            let p = manifest_beside(artefact);
            if p.is_file() {
                Ok(Some((p.clone(), read_manifest(&p)?)))
            } else {
                Ok(None)
            }
        }
    }
}

/// The group of a member path when no manifest says: the package folder's
/// ID, else the role of the file on the media.
pub fn group_of(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("SMS/PKG/") {
        return rest.split('/').next().unwrap_or_default().to_string();
    }
    match path {
        "sources/boot.wim" => "boot image".into(),
        "MediaLabel.txt" => "media data".into(),
        p if p.starts_with("SMS/data/") => "media data".into(),
        _ => "boot files".into(),
    }
}
