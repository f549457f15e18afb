//! The prestaged media .wim, written by wimlib's own writer.
//!
//! wimlib captures from a directory, so the staging tree is completed with
//! copies of the content files (copy_file_range: cheap on the same file
//! system), every time set to the build epoch, then captured as one image.

use super::{Ctx, Renderer};
use crate::build::{BuildError, Resolved};
use crate::fsutil::set_tree_times;
use crate::ids;
use crate::plan::PlannedOutput;
use crate::progress::Event;
use crate::wim::Wim;
use std::path::Path;
use std::time::Instant;

pub(crate) struct WimRenderer;

impl Renderer for WimRenderer {
    fn name(&self) -> &'static str {
        "wim"
    }

    fn render(
        &self,
        ctx: &Ctx,
        members: &[Resolved],
        _out: &PlannedOutput,
        tmp: &Path,
    ) -> Result<Option<Vec<super::ArtefactMember>>, BuildError> {
        let tree = ctx.tree_dir();
        for m in members.iter().filter(|m| !m.in_tree) {
            ctx.check_cancel()?;
            let dst = tree.join(&m.path);
            if let Some(p) = dst.parent() {
                std::fs::create_dir_all(p).map_err(|e| BuildError::io("create", p, e))?;
            }
            std::fs::copy(&m.file, &dst).map_err(|e| BuildError::io("copy", &m.file, e))?;
        }
        set_tree_times(&tree, ctx.plan.epoch)
            .map_err(|e| BuildError::io("set times in", &tree, e))?;
        let plan = ctx.plan;
        let mut wim = Wim::create(plan.compression)?;
        let idx = wim.add_image_from_dir(&tree, &plan.media_name)?;
        if let Some(c) = &plan.recipe.media.comment {
            wim.set_property(idx, "DESCRIPTION", c)?;
        }
        wim.set_guid_boot(ids::derive16(&plan.digest, "wim-guid"), 0)?;
        let total: u64 = members.iter().map(|m| m.size).sum();
        let started = Instant::now();
        ctx.rep.event(Event::Begin {
            phase: "write wim",
            total,
        });
        let mut report = |done: u64, t: u64| {
            ctx.rep.event(Event::Progress {
                phase: "write wim",
                done,
                total: t,
            })
        };
        wim.write_deterministic(
            tmp,
            plan.epoch,
            ctx.jobs as u32,
            &mut report,
            ctx.cancel.flag(),
        )?;
        ctx.rep.event(Event::End {
            phase: "write wim",
            elapsed: started.elapsed(),
        });
        Ok(None)
    }

    fn verify(&self, ctx: &Ctx, tmp: &Path) -> Result<(), BuildError> {
        let started = Instant::now();
        ctx.rep.event(Event::Begin {
            phase: "verify wim",
            total: 0,
        });
        let mut w = Wim::open(tmp)?;
        w.verify().map_err(|e| BuildError::Verify(e.to_string()))?;
        ctx.rep.event(Event::End {
            phase: "verify wim",
            elapsed: started.elapsed(),
        });
        Ok(())
    }
}
