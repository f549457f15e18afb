//! The prestaged media .wim, written by wimlib's own writer.
//!
//! wimlib captures from a directory, so the staging tree is completed with
//! copies of the content files (copy_file_range: cheap on the same file
//! system), every time set to the build epoch, then captured as one image.

use super::{Ctx, Renderer};
use crate::exec::{BuildError, Resolved};
use crate::fsutil::set_tree_times;
use crate::ids;
use crate::plan::PlannedOutput;
use crate::progress::Event;
use crate::wim::Wim;
use std::path::Path;
use std::time::Instant;

pub(crate) struct WimRenderer;

/// Completes the staging tree with copies of the content files (which stay
/// outside it until now) and sets every time to the build epoch; returns it.
pub(crate) fn complete_tree(
    ctx: &Ctx,
    members: &[Resolved],
) -> Result<std::path::PathBuf, BuildError> {
    let tree = ctx.tree_dir();
    for m in members.iter().filter(|m| !m.in_tree) {
        ctx.check_cancel()?;
        let dst = tree.join(&m.path);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(|e| BuildError::io("create", p, e))?;
        }
        std::fs::copy(&m.file, &dst).map_err(|e| BuildError::io("copy", &m.file, e))?;
    }
    for m in members.iter().filter(|m| m.in_tree) {
        ctx.check_cancel()?;
        unshare(&tree.join(&m.path))?;
    }
    for d in &ctx.plan.media.dirs {
        let p = tree.join(d);
        std::fs::create_dir_all(&p).map_err(|e| BuildError::io("create", &p, e))?;
    }
    set_tree_times(&tree, ctx.plan.epoch).map_err(|e| BuildError::io("set times in", &tree, e))?;
    Ok(tree)
}

/// Replaces a file of the staging tree that is hard-linked elsewhere (an
/// export restored from or stored into the cache is the cache's body) by a
/// private copy, so that setting its times does not touch a file other
/// builds are reading (they check its mtime).
fn unshare(path: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).map_err(|e| BuildError::io("read", path, e))?;
    if md.nlink() <= 1 {
        return Ok(());
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".unshared");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::copy(path, &tmp).map_err(|e| BuildError::io("copy", path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| BuildError::io("rename", &tmp, e))
}

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
        let plan = ctx.plan;
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
        let guid = ids::derive16(&plan.digest, "wim-guid");
        let listed = match ctx.writer {
            WimWriter::Native => {
                let spec = super::native::NativeSpec {
                    compression: plan.compression,
                    threads: ctx.jobs,
                    guid,
                    epoch: plan.epoch,
                    name: &plan.media_name,
                    description: plan.comment.as_deref(),
                };
                let rep = super::native::write_members(
                    ctx,
                    members,
                    tmp,
                    &spec,
                    &mut report,
                    ctx.cancel.flag(),
                )?;
                let by_path: std::collections::BTreeMap<&str, [u8; 32]> = rep
                    .files
                    .iter()
                    .map(|f| (f.path.as_str(), f.sha256))
                    .collect();
                Some(
                    members
                        .iter()
                        .map(|m| super::ArtefactMember {
                            sha256: by_path.get(m.path.as_str()).copied(),
                            ..super::ArtefactMember::same(m)
                        })
                        .collect(),
                )
            }
            WimWriter::Wimlib => {
                let tree = complete_tree(ctx, members)?;
                let mut wim = Wim::create(plan.compression)?;
                let idx = wim.add_image_from_dir(&tree, &plan.media_name)?;
                if let Some(c) = &plan.comment {
                    wim.set_property(idx, "DESCRIPTION", c)?;
                }
                wim.set_guid_boot(guid, 0)?;
                wim.write_deterministic(
                    tmp,
                    plan.epoch,
                    ctx.jobs as u32,
                    &mut report,
                    ctx.cancel.flag(),
                )?;
                None
            }
        };
        ctx.rep.event(Event::End {
            phase: "write wim",
            elapsed: started.elapsed(),
        });
        Ok(listed)
    }

    fn verify(&self, ctx: &Ctx, _out: &PlannedOutput, tmp: &Path) -> Result<(), BuildError> {
        let started = Instant::now();
        ctx.rep.event(Event::Begin {
            phase: "verify wim",
            total: 0,
        });
        // A WIM with these very bytes already passed wimlib's verify: the
        // mark in the cache is keyed by its SHA-256 (which finalize needs anyway).
        let mark = match &ctx.cache {
            Some(c) => {
                let sha = ctx.artefact_sha256(tmp)?;
                let size = std::fs::metadata(tmp)
                    .map_err(|e| BuildError::io("read", tmp, e))?
                    .len();
                Some((c, sha, size))
            }
            None => None,
        };
        let done = mark.as_ref().is_some_and(|(c, sha, size)| {
            crate::cache::resources::is_verified(c, "wimlib-verify", sha, *size)
        });
        if !done {
            let mut w = Wim::open(tmp)?;
            w.verify().map_err(|e| BuildError::Verify(e.to_string()))?;
            if let Some((c, sha, size)) = &mark {
                crate::cache::resources::mark_verified(c, "wimlib-verify", sha, *size);
            }
        }
        ctx.rep.event(Event::End {
            phase: "verify wim",
            elapsed: started.elapsed(),
        });
        Ok(())
    }
}

pub use crate::exec::WimWriter;

/// Writes the folder `tree` as a one-image WIM at `out` with `writer` (the
/// benchmark's unit of work; the build goes through the renderer).
pub fn write_tree(
    writer: WimWriter,
    tree: &Path,
    out: &Path,
    compression: crate::recipe::Compression,
    threads: usize,
) -> Result<(), BuildError> {
    let never = std::sync::atomic::AtomicBool::new(false);
    match writer {
        WimWriter::Wimlib => {
            let mut wim = Wim::create(compression)?;
            wim.add_image_from_dir(tree, "media")?;
            wim.set_guid_boot([0x4D; 16], 0)?;
            wim.write_deterministic(
                out,
                crate::ids::DEFAULT_EPOCH,
                threads as u32,
                &mut |_, _| {},
                &never,
            )?;
            Ok(())
        }
        WimWriter::Native => {
            let entries = super::native::entries_from_dir(tree)?;
            let spec = super::native::NativeSpec {
                compression,
                threads,
                guid: [0x4D; 16],
                epoch: crate::ids::DEFAULT_EPOCH,
                name: "media",
                description: None,
            };
            super::native::write(&entries, out, &spec, &mut |_, _| {}, &never).map(|_| ())
        }
    }
}
