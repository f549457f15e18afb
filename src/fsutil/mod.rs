//! File-system helpers: walking content folders deterministically, sparse
//! regions, removal, artefact files written around the page cache
//! ([`direct`]), large reads under small readers ([`blockread`]) and a
//! streaming SHA-256 with a zero-run memo ([`sha256`]).

use std::io;
use std::path::{Path, PathBuf};

pub mod blockread;
pub mod direct;
pub mod sha256;

/// One regular file found under a source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Walked {
    /// Path relative to the source, '/'-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
}

/// Every regular file under `root` (or `root` itself when it is a file),
/// sorted by relative path. Symbolic links are followed when they stay
/// inside `root` (stored as the file or folder they point at, as archivers
/// that dereference do); a link that leads out of `root`, or back into a
/// folder above it (a loop), is an error naming it — a content folder cannot
/// pull `/etc/shadow` into the media by a link. Anything else that is not a
/// regular file or folder is an error naming it.
pub fn walk(root: &Path) -> io::Result<Vec<Walked>> {
    walk_all(root).map(|(files, _)| files)
}

/// [`walk`], and the folders under `root` that hold nothing (relative,
/// sorted; `""` when `root` itself is an empty folder): installers can
/// expect them, so the media keep them.
pub fn walk_all(root: &Path) -> io::Result<(Vec<Walked>, Vec<String>)> {
    let mut empty = Vec::new();
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
        return Ok((out, empty));
    }
    let real = root
        .canonicalize()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    walk_dir(root, "", &real, &mut out, &mut empty)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    empty.sort();
    Ok((out, empty))
}

fn walk_dir(
    dir: &Path,
    prefix: &str,
    real_root: &Path,
    out: &mut Vec<Walked>,
    empty: &mut Vec<String>,
) -> io::Result<()> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let mut entries: Vec<_> = rd.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    if entries.is_empty() {
        empty.push(prefix.to_string());
    }
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if e.file_type().is_ok_and(|t| t.is_symlink()) {
            let target = path.canonicalize().map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("{}: a broken symbolic link ({err})", path.display()),
                )
            })?;
            let dir_real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            if !target.starts_with(real_root) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: a symbolic link to {}, outside the source folder (links are followed only inside it: copy the file in)",
                        path.display(),
                        target.display()
                    ),
                ));
            }
            if dir_real.starts_with(&target) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: a symbolic link to a folder above it (a loop)",
                        path.display()
                    ),
                ));
            }
        }
        let md = std::fs::metadata(&path)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
        if md.is_dir() {
            walk_dir(&path, &rel, real_root, out, empty)?;
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

/// Largest recipe, secret or certificate file read into memory.
pub const SMALL_FILE_MAX: u64 = 16 << 20;

/// Reads a small file that must be a regular file of at most `max` bytes
/// (a recipe, a secret, a certificate): opened without blocking, so that a
/// FIFO does not hang, and checked on the open descriptor, so that a device
/// or an endless file is refused before anything is read.
pub fn read_small(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = open_regular(path)?;
    let md = f.metadata()?;
    if md.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} bytes, more than the {} this file may hold",
                md.len(),
                crate::units::human(max)
            ),
        ));
    }
    let mut buf = Vec::with_capacity(md.len() as usize);
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it grows past {} while read", crate::units::human(max)),
        ));
    }
    Ok(buf)
}

/// Opens `path` for reading if it is a regular file, without blocking on a
/// FIFO or a device (refused, naming what it is).
pub fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let t = f.metadata()?.file_type();
    if !t.is_file() {
        let what = if t.is_dir() {
            "a folder"
        } else if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file"),
        ));
    }
    // O_NONBLOCK changes nothing for a regular file's reads.
    Ok(f)
}

/// [`read_small`] as UTF-8 text.
pub fn read_small_text(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read_small(path, max)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Creates `path`'s parent folders, then writes `bytes` to it.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, bytes)
}

/// The data and hole regions of the first `len` bytes of `f`, in order, as
/// `(start, end, is_data)`. A file system that cannot tell (or an error)
/// gives one data region: reading it is always right, only slower.
pub fn regions(f: &std::fs::File, len: u64) -> Vec<(u64, u64, bool)> {
    use std::os::unix::io::AsRawFd;
    let fd = f.as_raw_fd();
    let seek = |pos: u64, whence: libc::c_int| -> Option<u64> {
        // SAFETY: lseek on a descriptor we own; it only moves the file offset.
        let r = unsafe { libc::lseek(fd, pos as libc::off_t, whence) };
        (r >= 0).then_some(r as u64)
    };
    let whole = vec![(0, len, true)];
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        // ENXIO: no data after `pos`, the rest is a hole.
        let data = match seek(pos, libc::SEEK_DATA) {
            Some(d) => d.min(len),
            None if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => len,
            None => return whole,
        };
        if data > pos {
            out.push((pos, data, false));
        }
        if data >= len {
            break;
        }
        let Some(hole) = seek(data, libc::SEEK_HOLE) else {
            return whole;
        };
        let hole = hole.clamp(data + 1, len);
        out.push((data, hole, true));
        pos = hole;
    }
    out
}

/// Removes `p`, a folder (with its contents) or a file; a missing path is fine.
pub fn remove_any(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
    let _ = std::fs::remove_file(p);
}
