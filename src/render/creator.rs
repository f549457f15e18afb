//! The Windows To Go Creator package (`outputs.creator_package`, S19): a
//! ConfigMgr package source folder holding
//!
//! - `NAME.wim` — the prestaged media (`NAME` = `media.name`): the very file
//!   this build rendered for `outputs.wim` (hard-linked, else copied), or, when
//!   the recipe has no `outputs.wim`, one rendered here by the WIM renderer;
//! - `WTGCreator.exe` — the admin-supplied creator tool, copied under that name;
//! - `program.json` — the program to create in the package: name, command
//!   line `WTGCreator.exe /wim:NAME.wim [/enableBootRedirect]`, estimated disk
//!   space (the size of this folder, `program.json` included), maximum run
//!   time, run with administrative rights, and the equivalent `New-CMProgram`
//!   command. JSON because a script reads it; ConfigMgr has no file format for
//!   a program.

use super::{ArtefactMember, Ctx, Renderer};
use crate::exec::{BuildError, Resolved};
use crate::plan::{OutputKind, OutputSpec, PlannedOutput};
use crate::recipe::CreatorPackage;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub(crate) struct CreatorRenderer;

/// The program description file in the package folder.
pub const PROGRAM_FILE: &str = "program.json";
/// The creator tool's name in the package (the command line runs it).
pub const CREATOR_FILE: &str = "WTGCreator.exe";
use crate::configmgr::DEFAULT_MAX_RUN_TIME;

/// `program.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Format version of this file.
    pub format: u32,
    pub package_name: String,
    pub program_name: String,
    pub command_line: String,
    /// Size of the package folder (all files, this one included), rounded up.
    pub estimated_disk_space_kb: u64,
    pub max_run_time_minutes: u32,
    pub run_with_administrative_rights: bool,
    /// The prestaged media file in the folder.
    pub wim: String,
    /// The same settings as a ConfigMgr PowerShell command.
    pub new_cm_program: String,
}

/// The prestaged .wim's name inside the package.
pub fn wim_name(media_name: &str) -> String {
    format!("{media_name}.wim")
}

/// `WTGCreator.exe /wim:NAME.wim [/enableBootRedirect]`.
pub fn command_line(media_name: &str, c: &CreatorPackage) -> String {
    let mut s = format!("{CREATOR_FILE} /wim:{}", wim_name(media_name));
    if c.enable_boot_redirect {
        s.push_str(" /enableBootRedirect");
    }
    s
}

/// `program.json` for a folder whose other files total `others` bytes.
fn program_json(media_name: &str, c: &CreatorPackage, others: u64) -> Vec<u8> {
    let package_name = format!("Windows To Go Creator - {media_name}");
    let program_name = "Windows To Go Creator".to_string();
    let max = c.max_run_time_minutes.unwrap_or(DEFAULT_MAX_RUN_TIME);
    let cmd = command_line(media_name, c);
    // The file's size depends on the number it holds: iterate to the fixed point.
    let mut kb = others.div_ceil(1024);
    loop {
        let p = Program {
            format: 1,
            package_name: package_name.clone(),
            program_name: program_name.clone(),
            command_line: cmd.clone(),
            estimated_disk_space_kb: kb,
            max_run_time_minutes: max,
            run_with_administrative_rights: true,
            wim: wim_name(media_name),
            new_cm_program: format!(
                "New-CMProgram -PackageName '{package_name}' -StandardProgramName '{program_name}' -CommandLine '{cmd}' -DiskSpaceRequirement {kb} -DiskSpaceUnit KB -Duration {max} -RunMode RunWithAdministrativeRights"
            ),
        };
        let mut bytes = serde_json::to_vec_pretty(&p).unwrap_or_default();
        bytes.push(b'\n');
        let total = (others + bytes.len() as u64).div_ceil(1024);
        if total == kb {
            return bytes;
        }
        kb = total;
    }
}

/// Hard-links `from` to `to` (same file system, no copy), else copies it.
/// True when linked: `to` is then the very file `from` is.
fn link_or_copy(from: &Path, to: &Path) -> Result<bool, BuildError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(true);
    }
    std::fs::copy(from, to)
        .map(|_| false)
        .map_err(|e| BuildError::io("copy", from, e))
}

fn size(p: &Path) -> Result<u64, BuildError> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| BuildError::io("read", p, e))
}

impl Renderer for CreatorRenderer {
    fn name(&self) -> &'static str {
        "creator"
    }

    fn render(
        &self,
        ctx: &Ctx,
        members: &[Resolved],
        out: &PlannedOutput,
        tmp: &Path,
    ) -> Result<Option<Vec<ArtefactMember>>, BuildError> {
        let plan = ctx.plan;
        let name = plan.media_name.as_str();
        let OutputSpec::CreatorPackage { package: c } = &out.spec else {
            return Err(BuildError::NotPlanned("outputs.creator_package"));
        };
        std::fs::create_dir_all(tmp).map_err(|e| BuildError::io("create", tmp, e))?;
        let wim = tmp.join(wim_name(name));
        // Outputs render in plan order, the .wim first: reuse its bytes.
        let rendered = plan
            .outputs
            .iter()
            .find(|o| o.kind == OutputKind::Wim)
            .map(|o| crate::exec::partial_path(&o.path))
            .filter(|p| p.is_file());
        match rendered {
            Some(src) => {
                // The same inode: its digest is the .wim artefact's, not read again.
                if link_or_copy(&src, &wim)? {
                    ctx.remember_sha256(&wim, ctx.artefact_sha256(&src)?);
                }
            }
            None => {
                let w = super::for_output(OutputKind::Wim)?;
                let o = PlannedOutput {
                    kind: OutputKind::Wim,
                    path: wim.clone(),
                    spec: OutputSpec::Wim {},
                };
                w.render(ctx, members, &o, &wim)?;
                w.verify(ctx, &o, &wim)?;
            }
        }
        ctx.check_cancel()?;
        let creator_src = plan.dir.join(&c.creator);
        let creator = tmp.join(CREATOR_FILE);
        std::fs::copy(&creator_src, &creator)
            .map_err(|e| BuildError::io("copy", &creator_src, e))?;
        let others = size(&wim)? + size(&creator)?;
        let program = tmp.join(PROGRAM_FILE);
        std::fs::write(&program, program_json(name, c, others))
            .map_err(|e| BuildError::io("write", &program, e))?;
        let mut listed = Vec::new();
        for (p, group) in [
            (&wim, "prestaged media"),
            (&creator, "creator tool"),
            (&program, "program"),
        ] {
            listed.push(ArtefactMember {
                path: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                size: size(p)?,
                sha256: None,
                group: group.into(),
            });
        }
        Ok(Some(listed))
    }

    /// Reads the folder back: `program.json` parses, names a .wim that is
    /// there, and its disk space is the folder's size.
    fn verify(&self, ctx: &Ctx, out: &PlannedOutput, tmp: &Path) -> Result<(), BuildError> {
        let bad = |m: String| BuildError::Verify(format!("creator package: {m}"));
        let text = std::fs::read(tmp.join(PROGRAM_FILE))
            .map_err(|e| bad(format!("{PROGRAM_FILE}: {e}")))?;
        let p: Program =
            serde_json::from_slice(&text).map_err(|e| bad(format!("{PROGRAM_FILE}: {e}")))?;
        let files = crate::fsutil::walk(tmp).map_err(|e| bad(e.to_string()))?;
        let total: u64 = files.iter().map(|f| f.size).sum();
        if p.estimated_disk_space_kb != total.div_ceil(1024) {
            return Err(bad(format!(
                "disk space {} KB, folder holds {total} bytes",
                p.estimated_disk_space_kb
            )));
        }
        for name in [p.wim.as_str(), CREATOR_FILE] {
            if !files.iter().any(|f| f.rel == name) {
                return Err(bad(format!("{name} is missing")));
            }
        }
        let OutputSpec::CreatorPackage { package: c } = &out.spec else {
            return Err(BuildError::NotPlanned("outputs.creator_package"));
        };
        if command_line(&ctx.plan.media_name, c) != p.command_line {
            return Err(bad("unexpected command line".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Recipe;

    fn recipe(redirect: bool, max: Option<u32>) -> (Recipe, CreatorPackage) {
        let mut r = Recipe::default();
        r.media.name = "demo-wtg".into();
        let c = CreatorPackage {
            path: "pkg".into(),
            creator: "WTGCreator.exe".into(),
            enable_boot_redirect: redirect,
            max_run_time_minutes: max,
        };
        (r, c)
    }

    #[test]
    fn command_line_is_exact() {
        let (r, c) = recipe(false, None);
        assert_eq!(
            command_line(&r.media.name, &c),
            "WTGCreator.exe /wim:demo-wtg.wim"
        );
        let (r, c) = recipe(true, None);
        assert_eq!(
            command_line(&r.media.name, &c),
            "WTGCreator.exe /wim:demo-wtg.wim /enableBootRedirect"
        );
    }

    #[test]
    fn disk_space_counts_the_program_file_itself() {
        for others in [0u64, 1000, 1023 * 1024 + 700, 5 << 30] {
            let (r, c) = recipe(true, Some(720));
            let bytes = program_json(&r.media.name, &c, others);
            let p: Program = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(
                p.estimated_disk_space_kb,
                (others + bytes.len() as u64).div_ceil(1024)
            );
            assert_eq!(p.max_run_time_minutes, 720);
            assert!(p.run_with_administrative_rights);
            assert!(p.new_cm_program.contains("-Duration 720"));
        }
        let (r, c) = recipe(false, None);
        let p: Program = serde_json::from_slice(&program_json(&r.media.name, &c, 10)).unwrap();
        assert_eq!(p.max_run_time_minutes, 120);
    }
}
