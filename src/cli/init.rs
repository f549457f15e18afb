//! `mediabuild init [DIR]`: writes the commented recipe skeleton
//! (`templates/recipe.yaml`, embedded in the binary) to `DIR/recipe.yaml`.
//! It never replaces an existing file unless `--force`, and it never leaves a
//! half-written one: the text goes to a file beside the target first.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// The skeleton: every key of the format, each with what it means.
pub const TEMPLATE: &str = include_str!("../../templates/recipe.yaml");

pub fn init(dir: &Path, force: bool) -> Result<i32> {
    let target = dir.join("recipe.yaml");
    let exists = || {
        format!(
            "{} already exists; nothing was written. Choose another folder, or pass --force to overwrite it",
            target.display()
        )
    };
    if !force && target.symlink_metadata().is_ok() {
        bail!(exists());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".recipe.yaml.")
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    tmp.write_all(TEMPLATE.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    // A recipe is not a secret: the usual mode, not the temp file's 600.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set the mode of {}", tmp.path().display()))?;
    }
    // Without --force the rename refuses a file that appeared meanwhile.
    let persisted = if force {
        tmp.persist(&target)
    } else {
        tmp.persist_noclobber(&target)
    };
    if let Err(e) = persisted {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            bail!(exists());
        }
        return Err(e.error).with_context(|| format!("cannot write {}", target.display()));
    }
    println!("wrote {}", target.display());
    println!(
        "next: fill in the values marked REPLACE, then `mediabuild check {}`",
        target.display()
    );
    Ok(0)
}
