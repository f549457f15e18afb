//! Image sources inside an optical-disc image (`source: Win11.iso`): the
//! file is read out of the ISO by our reader (`crates/isoread`: UDF 1.02,
//! ISO 9660, Joliet — no mount, no root, no extraction by the user) and
//! staged once, as a private copy, in the user's cache folder
//! (`$XDG_CACHE_HOME/mediabuild-iso/`), because wimlib opens WIMs only by
//! path. The copy is named after the ISO's file identity (device, inode,
//! size, modification and change times) and the path inside, so a changed
//! ISO is read again and an unchanged one never twice; the previous copy of
//! the same ISO path is removed when a new one is staged.

use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Paths tried inside an ISO when the recipe gives no `iso_path`.
pub(crate) const OS_IMAGE_PATHS: [&str; 3] = [
    "sources/install.wim",
    "sources/install.esd",
    "sources/install.swm",
];
pub(crate) const BOOT_IMAGE_PATHS: [&str; 1] = ["sources/boot.wim"];

/// The folder staged copies live in.
fn staging_dir() -> PathBuf {
    match crate::fsutil::user_cache_dir() {
        Some(d) => {
            let mut s = d.into_os_string();
            s.push("-iso");
            PathBuf::from(s)
        }
        None => std::env::temp_dir().join(format!("mediabuild-iso-{}", uid())),
    }
}

/// This process's user id (the owner of `/proc/self`).
fn uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An image file found inside an ISO and staged: the path wimlib opens and
/// the file's own name (`install.esd`). The parts of a split WIM are staged
/// beside it under the same prefix, where `open_wim` finds them by name.
pub(crate) struct Staged {
    pub path: PathBuf,
    pub name: String,
    /// The path inside the ISO, as the ISO spells it.
    pub inner: String,
}

/// Finds `inner` (or the first of `defaults`) in the ISO at `iso` and stages
/// it — and, for a `.swm`, every `<stem>N.swm` beside it in the ISO.
pub(crate) fn stage(iso: &Path, inner: Option<&str>, defaults: &[&str]) -> Result<Staged, String> {
    let image = isoread::Iso::open(iso).map_err(|e| e.to_string())?;
    let entry = match inner {
        Some(p) => image
            .find(p)
            .filter(|e| !e.is_dir)
            .ok_or_else(|| format!("the ISO ({}) has no file {p}", image.kind()))?,
        None => defaults
            .iter()
            .find_map(|p| image.find(p).filter(|e| !e.is_dir))
            .ok_or_else(|| {
                format!(
                    "the ISO ({}) has none of {}",
                    image.kind(),
                    defaults.join(", ")
                )
            })?,
    };
    let md = std::fs::metadata(iso).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    h.update(
        std::fs::canonicalize(iso)
            .unwrap_or_else(|_| iso.to_path_buf())
            .as_os_str()
            .as_encoded_bytes(),
    );
    h.update(b"\0");
    h.update(entry.path.to_ascii_lowercase().as_bytes());
    let place = hex(&h.finalize()[..8]);
    let mut h = Sha256::new();
    for v in [
        md.dev(),
        md.ino(),
        md.size(),
        md.mtime() as u64,
        md.mtime_nsec() as u64,
        md.ctime() as u64,
        md.ctime_nsec() as u64,
    ] {
        h.update(v.to_le_bytes());
    }
    let identity = hex(&h.finalize()[..8]);
    let dir = staging_dir();
    create_private_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = entry
        .path
        .rsplit('/')
        .next()
        .unwrap_or(&entry.path)
        .to_string();
    let prefix = format!("{place}-{identity}-");
    let mut files = vec![entry.clone()];
    if let Some(stem) = name
        .strip_suffix(".swm")
        .or_else(|| name.strip_suffix(".SWM"))
    {
        let folder = entry.path[..entry.path.len() - name.len()].to_string();
        for n in 2.. {
            match image.find(&format!("{folder}{stem}{n}.swm")) {
                Some(e) if !e.is_dir => files.push(e.clone()),
                _ => break,
            }
        }
    }
    let mut staged = Vec::new();
    for e in &files {
        let base = e.path.rsplit('/').next().unwrap_or(&e.path);
        let dst = dir.join(format!("{prefix}{base}"));
        let fresh = std::fs::metadata(&dst).is_ok_and(|m| m.len() == e.size);
        if !fresh {
            copy_out(&image, e, &dst).map_err(|err| {
                format!(
                    "reading {} out of the ISO into {}: {err}",
                    e.path,
                    dst.display()
                )
            })?;
        }
        staged.push(dst);
    }
    // Copies of an older state of this ISO path go.
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for f in rd.flatten() {
            let n = f.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{place}-")) && !n.starts_with(&prefix) {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
    Ok(Staged {
        path: staged.remove(0),
        name,
        inner: entry.path.clone(),
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Copies one file out of the ISO: to a private temporary beside `dst`,
/// synced, then renamed, so a killed copy never looks complete.
fn copy_out(image: &isoread::Iso, e: &isoread::Entry, dst: &Path) -> std::io::Result<()> {
    let mut r = image.reader(e)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dst.parent().unwrap_or(Path::new(".")))?;
    let n = std::io::copy(&mut r, tmp.as_file_mut())?;
    if n != e.size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{n} bytes read of {}", e.size),
        ));
    }
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all()?;
    tmp.persist(dst).map_err(|e| e.error)?;
    Ok(())
}
