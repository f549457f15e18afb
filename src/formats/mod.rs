//! The output formats as the model sees them. Each format owns its typed
//! spec (what the plan carries for it, read from its recipe section once),
//! its plan entry and its validation; the registry is [`plan_outputs`] and
//! [`checks`]. Each has one renderer in `render/` (registered in
//! `render::for_output`). Adding a format: a variant of [`OutputKind`] and
//! [`OutputSpec`], its module here and its renderer; the compiler lists the
//! `match`es that must learn it.

pub mod disk;

use crate::diag::Diagnostic;
use crate::media::MediaTree;
use crate::recipe::{CreatorPackage, Outputs, Scheme};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Wim,
    Disk,
    CreatorPackage,
}

/// What one format needs to render its artefact, typed (the plan carries
/// this, never the recipe section).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum OutputSpec {
    /// Prestaged media: everything it needs is the media tree.
    Wim {},
    /// A raw disk image.
    Disk(disk::DiskSpec),
    /// The Windows To Go Creator package folder.
    CreatorPackage {
        #[serde(skip)]
        package: CreatorPackage,
    },
}

/// One artefact the build produces.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedOutput {
    pub kind: OutputKind,
    pub path: PathBuf,
    #[serde(flatten)]
    pub spec: OutputSpec,
}

impl PlannedOutput {
    /// The disk's size in bytes (a disk output whose size parsed).
    pub fn disk_size(&self) -> Option<u64> {
        match &self.spec {
            OutputSpec::Disk(d) => d.size,
            _ => None,
        }
    }
    /// The disk's partition table.
    pub fn scheme(&self) -> Option<Scheme> {
        match &self.spec {
            OutputSpec::Disk(d) => Some(d.scheme),
            _ => None,
        }
    }
}

/// The outputs of a recipe, in the order they render (the `.wim` first: the
/// creator package reuses its bytes).
pub fn plan_outputs(outputs: &Outputs, out_dir: &Path) -> Vec<PlannedOutput> {
    let mut v = Vec::new();
    if let Some(w) = &outputs.wim {
        v.push(PlannedOutput {
            kind: OutputKind::Wim,
            path: out_dir.join(w),
            spec: OutputSpec::Wim {},
        });
    }
    if let Some(d) = &outputs.disk {
        v.push(PlannedOutput {
            kind: OutputKind::Disk,
            path: out_dir.join(&d.path),
            spec: OutputSpec::Disk(disk::DiskSpec::of(d)),
        });
    }
    if let Some(c) = &outputs.creator_package {
        v.push(PlannedOutput {
            kind: OutputKind::CreatorPackage,
            path: out_dir.join(&c.path),
            spec: OutputSpec::CreatorPackage { package: c.clone() },
        });
    }
    v
}

/// Every format's validation of the planned outputs.
pub fn checks(
    outputs: &[PlannedOutput],
    media: &MediaTree,
    vol: &disk::Volume,
    total_size: u64,
) -> Vec<Diagnostic> {
    let mut d = Vec::new();
    for o in outputs {
        if let OutputSpec::Disk(spec) = &o.spec {
            d.extend(disk::check(spec, media, vol, total_size));
        }
    }
    d
}
