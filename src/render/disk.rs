//! The raw disk image (`outputs.disk`): the partitions of the layout
//! `outputs.disk.layout` selects (`formats::disk::select_layout`; `single`:
//! one FAT32 partition holding the whole media tree, MBR 0x0C active or GPT
//! Microsoft basic data), written sparse by our own FAT32 writer
//! (`crate::fat32`, `crate::disk`), each partition with its share of the
//! media tree.
//!
//! FAT32 cannot hold a file of 4 GiB or more: such a member (the OS image) is
//! split with wimlib into `.swm` parts of at most 4095 MiB — `install.swm`,
//! `install2.swm`, `install3.swm`, … in the same folder — and the manifest
//! lists the parts instead of the whole file.

use super::{ArtefactMember, Ctx, Renderer};
use crate::disk::{self, DiskIds, DiskLayout, FileSystem};
use crate::exec::{sha256_file, BuildError, Resolved};
use crate::fat32::FatFile;
use crate::formats::disk::{
    part_bytes, part_name, scheme, select_layout, split_threshold, swm_stem, DiskSpec,
};
use crate::plan::{OutputSpec, Plan, PlannedOutput};
use crate::progress::Event;
use crate::wim::Wim;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The disk spec of `out` and its size in bytes.
fn spec(out: &PlannedOutput) -> Result<(&DiskSpec, u64), BuildError> {
    let OutputSpec::Disk(d) = &out.spec else {
        return Err(BuildError::NotPlanned("outputs.disk"));
    };
    let bytes = d
        .size
        .ok_or_else(|| BuildError::NotASize(d.size_text.clone()))?;
    Ok((d, bytes))
}

fn volume(plan: &Plan) -> crate::formats::disk::Volume<'_> {
    crate::formats::disk::Volume {
        label: &plan.label,
        digest: &plan.digest,
        epoch: plan.epoch,
    }
}

pub(crate) struct DiskRenderer;

impl DiskRenderer {
    /// Splits members too large for FAT32 into `.swm` parts in the staging folder.
    fn files(
        &self,
        ctx: &Ctx,
        members: &[Resolved],
    ) -> Result<(Vec<FatFile>, Vec<ArtefactMember>), BuildError> {
        let mut files = Vec::new();
        let mut listed = Vec::new();
        for m in members {
            if m.size <= split_threshold() {
                files.push(FatFile::from_path(m.path.clone(), m.file.clone(), m.size));
                listed.push(ArtefactMember::same(m));
                continue;
            }
            ctx.check_cancel()?;
            let dir = ctx.staging.join("swm").join(&m.group);
            std::fs::create_dir_all(&dir).map_err(|e| BuildError::io("create", &dir, e))?;
            let stem = swm_stem(&m.path);
            let base = Path::new(&stem)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let first = dir.join(format!("{base}.swm"));
            let started = Instant::now();
            ctx.rep.event(Event::Begin {
                phase: "split",
                total: m.size,
            });
            Wim::open(&m.file)?.split(&first, part_bytes())?;
            ctx.rep.event(Event::End {
                phase: "split",
                elapsed: started.elapsed(),
            });
            for n in 1.. {
                let file: PathBuf = dir.join(part_name(&base, n));
                let Ok(md) = std::fs::metadata(&file) else {
                    break;
                };
                let path = part_name(&stem, n);
                let sha = sha256_file(&file, &|_| {}, &|| ctx.cancel.is_cancelled())?;
                files.push(FatFile::from_path(path.clone(), file, md.len()));
                listed.push(ArtefactMember {
                    path,
                    size: md.len(),
                    sha256: Some(sha),
                    group: m.group.clone(),
                });
            }
        }
        files.extend(ctx.plan.media.dirs.iter().map(FatFile::dir));
        Ok((files, listed))
    }
}

impl Renderer for DiskRenderer {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn render(
        &self,
        ctx: &Ctx,
        members: &[Resolved],
        out: &PlannedOutput,
        tmp: &Path,
    ) -> Result<Option<Vec<ArtefactMember>>, BuildError> {
        let plan = ctx.plan;
        let (d, disk_bytes) = spec(out)?;
        let (files, listed) = self.files(ctx, members)?;
        let chosen = select_layout(d.layout, &volume(plan));
        let layout =
            disk::layout(scheme(d.scheme), disk_bytes, &chosen.layout).map_err(BuildError::Disk)?;
        let ids = DiskIds::from_seed(&plan.digest);
        let total: u64 = files.iter().map(|f| f.size).sum();
        let started = Instant::now();
        ctx.rep.event(Event::Begin {
            phase: "write disk",
            total,
        });
        let mut report = |done: u64| {
            ctx.rep.event(Event::Progress {
                phase: "write disk",
                done,
                total,
            })
        };
        let sha = disk::write_image(tmp, &layout, &ids, &chosen.files(files), &mut report)
            .map_err(BuildError::Disk)?;
        // Hashed on the way out: the manifest and the verify cache need not read it back.
        // The free space's zeros come from the cache when it has seen them.
        if let Some(sha) = sha {
            let memo = ctx
                .cache
                .as_deref()
                .map(|c| c as &dyn crate::fsutil::sha256::ZeroRuns);
            ctx.remember_sha256(tmp, sha.digest_with(memo));
        }
        ctx.rep.event(Event::End {
            phase: "write disk",
            elapsed: started.elapsed(),
        });
        Ok(Some(listed))
    }

    fn verify(&self, ctx: &Ctx, out: &PlannedOutput, tmp: &Path) -> Result<(), BuildError> {
        let (d, disk_bytes) = spec(out)?;
        let chosen = select_layout(d.layout, &volume(ctx.plan));
        let layout = disk::layout(scheme(d.scheme), disk_bytes, &chosen.layout)
            .map_err(|e| BuildError::Verify(e.to_string()))?;
        let started = Instant::now();
        ctx.rep.event(Event::Begin {
            phase: "verify disk",
            total: 0,
        });
        // Like the WIM's verify: an image with these very bytes was read back before.
        let mark = match &ctx.cache {
            Some(c) => Some((c, ctx.artefact_sha256(tmp)?, disk_bytes)),
            None => None,
        };
        let done = mark.as_ref().is_some_and(|(c, sha, size)| {
            crate::cache::resources::is_verified(c, "disk-read-back", sha, *size)
        });
        if !done {
            read_back(tmp, &layout).map_err(BuildError::Verify)?;
            if let Some((c, sha, size)) = &mark {
                crate::cache::resources::mark_verified(c, "disk-read-back", sha, *size);
            }
        }
        ctx.rep.event(Event::End {
            phase: "verify disk",
            elapsed: started.elapsed(),
        });
        Ok(())
    }
}

/// Reads every written volume back with an independent FAT reader (the
/// `fatfs` crate): every directory of each can be walked, none is empty, and
/// the boot loader is on one of them.
fn read_back(image: &Path, layout: &DiskLayout) -> Result<(), String> {
    let many = layout.partitions.len() > 1;
    let mut loader = false;
    for p in &layout.partitions {
        let read = match &p.spec.fs {
            FileSystem::Fat32(_) => read_back_fat(image, p.start, p.bytes),
        };
        let found = read.map_err(|e| {
            if many {
                format!("partition {}: {e}", p.number)
            } else {
                e
            }
        })?;
        loader |= found;
    }
    if !loader {
        return Err("no EFI/Boot/boot*.efi on the volume".into());
    }
    Ok(())
}

/// Walks the FAT volume at `start` (`bytes` long); whether it holds a boot
/// loader `EFI/Boot/boot*.efi`.
fn read_back_fat(image: &Path, start: u64, bytes: u64) -> Result<bool, String> {
    let f = std::fs::File::open(image).map_err(|e| e.to_string())?;
    // Through a block cache: fatfs reads FAT entries and directory fields a
    // few bytes at a time.
    let w = crate::fsutil::blockread::BlockReader::new(f, start, bytes);
    let fs = fatfs::FileSystem::new(w, fatfs::FsOptions::new())
        .map_err(|e| format!("not a FAT volume: {e}"))?;
    fn walk<T: fatfs::ReadWriteSeek>(
        dir: fatfs::Dir<T>,
        depth: usize,
        n: &mut usize,
    ) -> Result<(), String> {
        for e in dir.iter() {
            let e = e.map_err(|e| e.to_string())?;
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            *n += 1;
            if e.is_dir() && depth < 64 {
                walk(e.to_dir(), depth + 1, n)?;
            }
        }
        Ok(())
    }
    let mut n = 0;
    walk(fs.root_dir(), 0, &mut n)?;
    if n == 0 {
        return Err("empty volume".into());
    }
    let root = fs.root_dir();
    let Ok(efi) = root.open_dir("EFI/Boot") else {
        return Ok(false);
    };
    let has_loader = efi.iter().filter_map(Result::ok).any(|e| {
        e.file_name().to_ascii_lowercase().starts_with("boot")
            && e.file_name().to_ascii_lowercase().ends_with(".efi")
    });
    Ok(has_loader)
}
