//! File-system helpers: walking content folders deterministically, sparse
//! regions, removal, artefact files written around the page cache
//! ([`direct`]), large reads under small readers ([`blockread`]) and a
//! streaming SHA-256 with a zero-run memo ([`sha256`]).

#![deny(unsafe_code)]

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
    walk_all(root).map(|t| t.files)
}

/// What [`walk_all`] found under a source folder.
#[derive(Debug, Default)]
pub struct Tree {
    /// Regular files, sorted by relative path.
    pub files: Vec<Walked>,
    /// Folders that hold nothing (relative, sorted; `""` for an empty root).
    pub empty: Vec<String>,
    /// Symbolic links followed (relative path of the link, its real target),
    /// sorted: `plan` shows each.
    pub links: Vec<(String, PathBuf)>,
}

/// [`walk`], and the folders under `root` that hold nothing (relative,
/// sorted; `""` when `root` itself is an empty folder): installers can
/// expect them, so the media keep them.
pub fn walk_all(root: &Path) -> io::Result<Tree> {
    let mut t = Tree::default();
    let md = std::fs::metadata(root)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    let mut out = Vec::new();
    if md.is_file() {
        let name = match root.file_name() {
            Some(n) => utf8_name(n, root)?,
            None => String::new(),
        };
        std::fs::File::open(root)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
        out.push(Walked {
            rel: name,
            abs: root.to_path_buf(),
            size: md.len(),
        });
        t.files = out;
        return Ok(t);
    }
    let real = root
        .canonicalize()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    walk_dir(root, "", &real, &mut out, &mut t)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    t.files = out;
    t.empty.sort();
    t.links.sort();
    Ok(t)
}

/// A file name as UTF-8, or an error showing its bytes. Windows names are
/// Unicode; a name that is not UTF-8 (a Latin-1 name out of an old archive)
/// has no defined Windows spelling, and guessing one could make two names
/// one or break the scripts that name the file: it is refused.
fn utf8_name(name: &std::ffi::OsStr, path: &Path) -> io::Result<String> {
    if let Some(s) = name.to_str() {
        return Ok(s.to_string());
    }
    let bytes = name.as_encoded_bytes();
    let shown: String = bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) && b != b'\\' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    let dir = path.parent().unwrap_or(Path::new(""));
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}/{shown}: the name is not UTF-8 (bytes {}); rename it to a UTF-8 name (e.g. `convmv -f latin1 -t utf8 --notest -r {}` for names out of a Latin-1 archive)",
            dir.display(),
            bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
            dir.display()
        ),
    ))
}

fn walk_dir(
    dir: &Path,
    prefix: &str,
    real_root: &Path,
    out: &mut Vec<Walked>,
    t: &mut Tree,
) -> io::Result<()> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let mut entries: Vec<_> = rd.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    if entries.is_empty() {
        t.empty.push(prefix.to_string());
    }
    for e in entries {
        let path = e.path();
        let name = utf8_name(&e.file_name(), &path)?;
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
            t.links.push((rel.clone(), target));
        }
        let md = std::fs::metadata(&path)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
        if md.is_dir() {
            walk_dir(&path, &rel, real_root, out, t)?;
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
                mediabuild_units::human(max)
            ),
        ));
    }
    let mut buf = Vec::with_capacity(md.len() as usize);
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it grows past {} while read", mediabuild_units::human(max)),
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
    decode_text(read_small(path, max)?)
}

/// Text as Windows editors save it: UTF-8 (a byte-order mark is kept for the
/// reader to skip), or UTF-16 with its byte-order mark (PowerShell 5's
/// `Out-File` default). Bytes that are neither are an error saying where.
pub fn decode_text(bytes: Vec<u8>) -> io::Result<String> {
    let utf16 = |be: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks(2)
            .map(|c| {
                let pair = [c[0], *c.get(1).unwrap_or(&0)];
                if be {
                    u16::from_be_bytes(pair)
                } else {
                    u16::from_le_bytes(pair)
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "not text: broken UTF-16 after a UTF-16 byte-order mark",
            )
        })
    };
    match bytes.get(..2) {
        Some([0xff, 0xfe]) => return utf16(false),
        Some([0xfe, 0xff]) => return utf16(true),
        _ => {}
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let bad = e.as_bytes()[good.len()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text: the byte 0x{bad:02X} at line {line}, column {col} is not UTF-8 (save the file as UTF-8)"),
        )
    })
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
#[allow(unsafe_code)]
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

/// The file system holding `path` (or its nearest existing ancestor): the
/// device or source it is mounted from, its mount point, and the bytes free
/// to an unprivileged writer. None when it cannot be told.
#[allow(unsafe_code)]
pub fn space(path: &Path) -> Option<(String, PathBuf, u64)> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let p = std::fs::canonicalize(&p).ok()?;
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct from a valid C string path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    // mountinfo: id parent major:minor root MOUNT opts… - fstype SOURCE superopts
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (source, mount) = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mount = PathBuf::from(f.get(4)?.replace("\\040", " "));
            let dash = f.iter().position(|x| *x == "-")?;
            let source = f.get(dash + 2)?.to_string();
            p.starts_with(&mount).then_some((source, mount))
        })
        .max_by_key(|(_, m)| m.as_os_str().len())?;
    Some((source, mount, free))
}

/// Whether `e` or one of its causes is "no space left on device".
pub fn is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::ENOSPC) || io.kind() == io::ErrorKind::StorageFull {
                return true;
            }
        }
        // Some errors keep only their cause's text.
        if x.to_string()
            .contains(&format!("(os error {})", libc::ENOSPC))
        {
            return true;
        }
        cur = x.source();
    }
    false
}

/// The user's cache folder for mediabuild: `$XDG_CACHE_HOME/mediabuild`,
/// else `$HOME/.cache/mediabuild`.
pub fn user_cache_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("mediabuild"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("mediabuild"))
}
