//! Materialize: turn every media member into a file on disk. Boot files are
//! extracted, images exported, generated files and Variables.dat written into
//! the staging tree; content files stay where they are.

use super::{BuildError, Ctx, Resolved};
use crate::ids;
use crate::media::variables::{self, MediaVar};
use crate::media::Source;
use crate::progress::Event;
use crate::wim::{ExportSpec, Wim};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `vars` gives the variables' values when Variables.dat is written: that
/// member is written last, so the key work behind the values (run beside
/// this) has the most time.
pub(super) fn materialize(
    ctx: &Ctx,
    vars: &mut dyn FnMut() -> Result<Vec<MediaVar>, BuildError>,
) -> Result<Vec<Resolved>, BuildError> {
    let plan = ctx.plan;
    let tree = ctx.tree_dir();

    // Boot files: one extraction per source image, then copied into place
    // (copies, not links: a link would become a hard link inside the WIM).
    let mut by_image: BTreeMap<(PathBuf, u32), Vec<&str>> = BTreeMap::new();
    for m in &plan.media.members {
        if let Source::WimFile { wim, index, path } = &m.source {
            by_image
                .entry((wim.clone(), *index))
                .or_default()
                .push(path);
        }
    }
    let bootx = ctx.staging.join("bootfiles");
    for ((wim, index), paths) in &by_image {
        let mut paths = paths.clone();
        paths.sort();
        paths.dedup();
        Wim::open(wim)?.extract(*index, &bootx, &paths)?;
    }

    let total: u64 = plan.media.members.iter().map(|m| m.size).sum();
    let started = Instant::now();
    ctx.rep.event(Event::Begin {
        phase: "prepare",
        total,
    });
    let mut done = 0u64;
    let (last, first): (Vec<_>, Vec<_>) = plan
        .media
        .members
        .iter()
        .enumerate()
        .partition(|(_, m)| matches!(m.source, Source::MediaVariables));
    let mut slots: Vec<Option<Resolved>> = vec![None; plan.media.members.len()];
    let mut values: Option<Vec<MediaVar>> = None;
    for (i, m) in first.into_iter().chain(last) {
        ctx.check_cancel()?;
        let dst = tree.join(&m.path);
        let mkparent = |p: &Path| {
            std::fs::create_dir_all(p.parent().unwrap_or(p))
                .map_err(|e| BuildError::io("create folder for", p, e))
        };
        let mut known = None;
        let mut remember = None;
        let mut shared = false;
        let never_cache = matches!(m.source, Source::Generated { .. } | Source::MediaVariables);
        let (file, in_tree) = match &m.source {
            Source::File { path } => (path.clone(), false),
            Source::WimFile { wim, index, path } => {
                mkparent(&dst)?;
                std::fs::copy(bootx.join(path), &dst)
                    .map_err(|e| BuildError::io("copy boot file", &dst, e))?;
                // Its digests, when an earlier build recorded them for this
                // file of this very image (a new copy has a new stamp, so
                // the input hash cache cannot know it).
                if let Some(c) = &ctx.cache {
                    let src = crate::cache::hashes::file_digests(Some(c), wim)
                        .map_err(|e| BuildError::io("read", wim, e))?;
                    let key = crate::cache::resources::boot_file_key(&src.sha256, *index, path);
                    known = crate::cache::resources::boot_file_digests(c, &key, &dst);
                    remember = known.is_none().then_some(key);
                }
                (dst, true)
            }
            Source::WimExport {
                wim,
                index,
                bootable,
                parts,
                convert,
                ..
            } => {
                mkparent(&dst)?;
                let guid = ids::derive16(&plan.digest, &format!("export:{}", m.path));
                let base = done;
                let mut report = |d: u64, _t: u64| {
                    ctx.rep.event(Event::Progress {
                        phase: "prepare",
                        done: base + d.min(m.size),
                        total,
                    });
                };
                let spec = ExportSpec {
                    bootable: *bootable,
                    guid,
                    epoch: plan.epoch,
                    threads: ctx.jobs as u32,
                    convert: *convert,
                };
                let key = match &ctx.cache {
                    Some(c) => {
                        let src = crate::cache::hashes::file_digests(Some(c), wim)
                            .map_err(|e| BuildError::io("read", wim, e))?;
                        let mut rest = Vec::new();
                        for p in parts {
                            let d = crate::cache::hashes::file_digests(Some(c), p)
                                .map_err(|e| BuildError::io("read", p, e))?;
                            rest.push(d.sha256);
                        }
                        Some(crate::cache::resources::export_key(
                            &crate::cache::resources::ExportInput {
                                sha256: &src.sha256,
                                parts: &rest,
                                convert: *convert,
                            },
                            *index,
                            *bootable,
                            &guid,
                            plan.epoch,
                        ))
                    }
                    None => None,
                };
                known = match (&ctx.cache, &key) {
                    (Some(c), Some(k)) => {
                        crate::cache::resources::restore_export(c, k, &dst).map(|(d, r)| {
                            ctx.restamp(r);
                            d
                        })
                    }
                    _ => None,
                };
                // Restored or stored, the file is a link to the cache's body.
                shared = known.is_some();
                if known.is_none() {
                    let mut w = Wim::open(wim)?;
                    w.reference_parts(parts)?;
                    w.export_to(*index, &dst, &spec, &mut report, ctx.cancel.flag())?;
                    // The export copies compressed data as it is: a damaged
                    // source would reach the media unnoticed. Every blob of the
                    // exported image is decompressed and its SHA-1 checked
                    // once, before it is cached or used.
                    let (what, image) = if *bootable {
                        ("boot_image.source", &plan.boot_image)
                    } else {
                        ("os_image.source", &plan.os_image)
                    };
                    let damaged = |detail: String| BuildError::DamagedInput {
                        key: what,
                        shown: image.shown(),
                        path: wim.clone(),
                        index: *index,
                        detail,
                    };
                    Wim::open(&dst)
                        .and_then(|mut x| x.verify())
                        .map_err(|e| match e {
                            crate::wim::WimError::Lib { msg, .. } => damaged(msg),
                            other => damaged(other.to_string()),
                        })?;
                    if let (Some(c), Some(k)) = (&ctx.cache, &key) {
                        if let Some(p) = crate::cache::resources::link_export(c, k, &dst) {
                            shared = true;
                            ctx.pending_exports
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(p);
                        }
                    }
                }
                (dst, true)
            }
            Source::Generated { bytes, .. } => {
                mkparent(&dst)?;
                std::fs::write(&dst, bytes).map_err(|e| BuildError::io("write", &dst, e))?;
                (dst, true)
            }
            Source::MediaVariables => {
                mkparent(&dst)?;
                if values.is_none() {
                    values = Some(vars()?);
                }
                let vars = values.as_deref().unwrap_or_default();
                let bytes = variables::encode(vars, ctx.password.as_ref().map(|p| p.expose()));
                // Its staging copy is as private as the secrets it holds.
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&dst)
                    .and_then(|mut f| f.write_all(&bytes))
                    .map_err(|e| BuildError::io("write", &dst, e))?;
                (dst, true)
            }
        };
        // Sizes are re-read: a source may have changed since planning.
        let size = std::fs::metadata(&file)
            .map_err(|e| BuildError::io("read source", &file, e))?
            .len();
        done += m.size;
        ctx.rep.event(Event::Progress {
            phase: "prepare",
            done,
            total,
        });
        slots[i] = Some(Resolved {
            path: m.path.clone(),
            file,
            size,
            group: m.group.clone(),
            in_tree,
            known,
            never_cache,
            shared,
            remember,
        });
    }
    ctx.rep.event(Event::End {
        phase: "prepare",
        elapsed: started.elapsed(),
    });
    Ok(slots.into_iter().flatten().collect())
}
