//! Renderers: one per output format, same contract (genimage's handler model).
//! A renderer writes its artefact to a temporary path and verifies it; the
//! build renames it into place. Registered in [`for_output`].

mod wim;

use crate::build::{BuildError, Resolved};
use crate::plan::{OutputKind, PlannedOutput};
use std::path::Path;

pub(crate) use crate::build::Ctx;

/// Whether this build renders `outputs.disk`.
pub(crate) const DISK_SUPPORTED: bool = false;

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
    ) -> Result<(), BuildError>;
    /// Checks the artefact at `tmp` with an independent reader.
    fn verify(&self, ctx: &Ctx, tmp: &Path) -> Result<(), BuildError>;
}

/// The registry of renderers.
pub(crate) fn for_output(kind: OutputKind) -> Result<Box<dyn Renderer>, BuildError> {
    match kind {
        OutputKind::Wim => Ok(Box::new(wim::WimRenderer)),
        other => Err(BuildError::Render(format!(
            "output kind {other:?} is not implemented in this version of mediabuild"
        ))),
    }
}
