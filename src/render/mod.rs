//! Renderers: one per output format, same contract (genimage's handler model).
//! A renderer writes its artefact to a temporary path and verifies it; the
//! build renames it into place. Registered in [`for_output`].

pub mod creator;
pub mod disk;
mod native;
pub(crate) mod wim;

use crate::exec::{BuildError, Resolved};
use crate::plan::{OutputKind, PlannedOutput};
use std::path::Path;

pub(crate) use crate::exec::Ctx;

/// A file of an artefact as the manifest lists it, when it differs from the
/// media tree (e.g. `.swm` parts on a disk image).
#[derive(Debug, Clone)]
pub(crate) struct ArtefactMember {
    pub path: String,
    pub size: u64,
    /// None: the same bytes as the media member at `path` (hash known already).
    pub sha256: Option<[u8; 32]>,
    pub group: String,
}

/// The members' SHA-256s when an artefact lists exactly the media members,
/// each with a digest computed while writing it.
pub(crate) fn member_hashes(
    members: &[Resolved],
    listed: &[ArtefactMember],
) -> Option<Vec<[u8; 32]>> {
    if members.len() != listed.len() {
        return None;
    }
    members
        .iter()
        .zip(listed)
        .map(|(m, l)| (m.path == l.path).then_some(l.sha256).flatten())
        .collect()
}

impl ArtefactMember {
    pub fn same(m: &Resolved) -> ArtefactMember {
        ArtefactMember {
            path: m.path.clone(),
            size: m.size,
            sha256: None,
            group: m.group.clone(),
        }
    }
}

/// One output format.
pub(crate) trait Renderer: Sync {
    fn name(&self) -> &'static str;
    /// Writes the artefact for `out` to `tmp`.
    fn render(
        &self,
        ctx: &Ctx,
        members: &[Resolved],
        out: &PlannedOutput,
        tmp: &Path,
    ) -> Result<Option<Vec<ArtefactMember>>, BuildError>;
    /// Checks the artefact at `tmp` with an independent reader.
    fn verify(&self, ctx: &Ctx, out: &PlannedOutput, tmp: &Path) -> Result<(), BuildError>;
}

/// The registry of renderers.
pub(crate) fn for_output(kind: OutputKind) -> Result<Box<dyn Renderer>, BuildError> {
    match kind {
        OutputKind::Wim => Ok(Box::new(wim::WimRenderer)),
        OutputKind::Disk => Ok(Box::new(disk::DiskRenderer)),
        OutputKind::CreatorPackage => Ok(Box::new(creator::CreatorRenderer)),
    }
}
