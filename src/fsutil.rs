//! Walking content folders deterministically.

use std::io;
use std::path::{Path, PathBuf};

/// One regular file found under a source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Walked {
    /// Path relative to the source, '/'-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
}

/// Every regular file under `root` (or `root` itself when it is a file),
/// sorted by relative path. Symlinks are followed; anything else that is not
/// a regular file or folder is an error naming it.
pub fn walk(root: &Path) -> io::Result<Vec<Walked>> {
    let md = std::fs::metadata(root)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    let mut out = Vec::new();
    if md.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::File::open(root)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
        out.push(Walked {
            rel: name,
            abs: root.to_path_buf(),
            size: md.len(),
        });
        return Ok(out);
    }
    walk_dir(root, "", &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk_dir(dir: &Path, prefix: &str, out: &mut Vec<Walked>) -> io::Result<()> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let mut entries: Vec<_> = rd.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let md = std::fs::metadata(&path)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
        if md.is_dir() {
            walk_dir(&path, &rel, out)?;
        } else if md.is_file() {
            std::fs::File::open(&path)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
            out.push(Walked {
                rel,
                abs: path,
                size: md.len(),
            });
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file or folder", path.display()),
            ));
        }
    }
    Ok(())
}

/// Sets access and modification times of `root` and everything under it to
/// `epoch`, children before parents (setting a child's time does not touch the
/// parent's, but creating files does). Used on trees the build itself controls.
pub fn set_tree_times(root: &Path, epoch: i64) -> io::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    let times = std::fs::FileTimes::new().set_accessed(t).set_modified(t);
    fn visit(p: &Path, times: std::fs::FileTimes) -> io::Result<()> {
        let md = std::fs::symlink_metadata(p)?;
        if md.is_dir() {
            for e in std::fs::read_dir(p)? {
                visit(&e?.path(), times)?;
            }
        }
        std::fs::File::open(p)?.set_times(times)
    }
    visit(root, times)
}

/// Creates `path`'s parent folders, then writes `bytes` to it.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, bytes)
}
