//! Our one door to wimlib: open, inspect, extract, export, capture, split, verify.
//!
//! Every `unsafe` of the crate is in an item marked `#[allow(unsafe_code)]`
//! (the crate denies it elsewhere). We call wimlib's C API (`wimlib::sys`)
//! directly rather than through the `wimlib` crate's wrapper, whose progress
//! bridge panics inside C callbacks on messages it cannot map
//! (`reference/wimlib.md`). A [`Wim`] is neither `Send` nor `Sync`, like
//! wimlib's `WIMStruct`: use each on one thread; separate ones run in parallel.

#![deny(unsafe_code)]

mod compression;
#[allow(unsafe_code)]
pub mod compressor;

pub use compression::Compression;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use wimlib::sys;

/// The wimlib version we link (bundled, pinned: output bytes depend on it).
#[allow(unsafe_code)]
pub fn version() -> String {
    // SAFETY: wimlib_get_version_string returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(sys::wimlib_get_version_string()) }
        .to_string_lossy()
        .into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum WimError {
    #[error("{op} {path}: {msg} (wimlib error {code})")]
    Lib {
        op: &'static str,
        path: PathBuf,
        code: i32,
        msg: String,
    },
    #[error("{path}: image {index} does not exist (the file has {count} image(s))")]
    NoImage {
        path: PathBuf,
        index: u32,
        count: u32,
    },
    #[error("path contains a NUL byte: {0}")]
    Nul(String),
    #[error("cancelled")]
    Cancelled,
}

impl WimError {
    /// wimlib could not write a file (it keeps no errno: a full disk, or a
    /// file system that refused the write).
    pub fn is_write_failure(&self) -> bool {
        matches!(self, WimError::Lib { code, .. }
            if *code == sys::wimlib_error_code_WIMLIB_ERR_WRITE as i32)
    }
}

const ERR_ABORTED_BY_PROGRESS: c_int =
    sys::wimlib_error_code_WIMLIB_ERR_ABORTED_BY_PROGRESS as c_int;

#[allow(unsafe_code)]
fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: called once before any other wimlib call; flags 0 are valid.
        unsafe { sys::wimlib_global_init(0) };
    });
}

#[allow(unsafe_code)]
fn check(code: c_int, op: &'static str, path: &Path) -> Result<(), WimError> {
    if code == 0 {
        return Ok(());
    }
    if code == ERR_ABORTED_BY_PROGRESS {
        return Err(WimError::Cancelled);
    }
    // SAFETY: wimlib_get_error_string returns a static string (or NULL for unknown codes).
    let p = unsafe { sys::wimlib_get_error_string(code as _) };
    let msg = if p.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: non-null, static, NUL-terminated.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    };
    Err(WimError::Lib {
        op,
        path: path.to_path_buf(),
        code,
        msg,
    })
}

fn cpath(p: &Path) -> Result<CString, WimError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| WimError::Nul(p.display().to_string()))
}

fn cstr(s: &str) -> Result<CString, WimError> {
    CString::new(s).map_err(|_| WimError::Nul(s.to_string()))
}

pub(crate) fn ctype(c: Compression) -> sys::wimlib_compression_type {
    match c {
        Compression::None => sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_NONE,
        Compression::Xpress => sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_XPRESS,
        Compression::Lzx => sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_LZX,
        Compression::Lzms => sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_LZMS,
    }
}

fn from_ctype(t: i32) -> Compression {
    match t as sys::wimlib_compression_type {
        sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_XPRESS => Compression::Xpress,
        sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_LZX => Compression::Lzx,
        sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_LZMS => Compression::Lzms,
        _ => Compression::None,
    }
}

/// Windows FILETIME pieces (100 ns since 1601) for an XML time property.
fn filetime(epoch: i64) -> (u32, u32) {
    let ft = (epoch + 11_644_473_600).max(0) as u64 * 10_000_000;
    ((ft >> 32) as u32, ft as u32)
}

/// Header facts of a WIM.
#[derive(Debug, Clone)]
pub struct WimInfo {
    pub image_count: u32,
    pub boot_index: u32,
    pub compression: Compression,
    pub chunk_size: u32,
    pub guid: [u8; 16],
    /// Part number and part count of a split WIM (`.swm`); 1 and 1 otherwise.
    pub part_number: u16,
    pub total_parts: u16,
}

/// One file or directory inside an image.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Path inside the image, '/'-separated, no leading slash.
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    pub sha1: [u8; 20],
    /// Compressed size of the file's blob in the WIM; for a blob inside a
    /// solid resource (ESD), its share of that resource's compressed size.
    pub stored_size: u64,
    /// The blob lies inside a solid resource (an ESD's LZMS block).
    pub solid: bool,
    /// Offset of the blob's resource in the WIM file (0 for an empty file).
    pub offset: u64,
}

/// How to write an exported image.
#[derive(Debug, Clone, Copy)]
pub struct ExportSpec {
    /// Mark the image bootable (boot index 1).
    pub bootable: bool,
    pub guid: [u8; 16],
    /// Unix time for the XML creation/modification times.
    pub epoch: i64,
    /// wimlib threads (0 = one per CPU).
    pub threads: u32,
    /// Write with this compression instead of the source's, every blob
    /// recompressed and none solid: how an ESD (solid LZMS) becomes a
    /// `.wim` that ConfigMgr and FAT32 splitting can use.
    pub convert: Option<Compression>,
}

/// An open WIM file.
pub struct Wim {
    raw: *mut sys::WIMStruct,
    path: PathBuf,
}

#[allow(unsafe_code)]
impl Drop for Wim {
    fn drop(&mut self) {
        // SAFETY: raw came from wimlib_open_wim/create_new_wim and is freed once.
        unsafe { sys::wimlib_free(self.raw) };
    }
}

/// Progress bridge: passed to wimlib as the callback context.
struct ProgressCtx<'a> {
    report: &'a mut dyn FnMut(u64, u64),
    cancel: &'a AtomicBool,
}

#[allow(unsafe_code)]
unsafe extern "C" fn progress_cb(
    msg: sys::wimlib_progress_msg,
    info: *mut sys::wimlib_progress_info,
    ctx: *mut c_void,
) -> sys::wimlib_progress_status {
    // SAFETY: ctx is the &mut ProgressCtx registered by `with_progress`, alive for the call.
    let ctx = unsafe { &mut *(ctx as *mut ProgressCtx) };
    if msg == sys::wimlib_progress_msg_WIMLIB_PROGRESS_MSG_WRITE_STREAMS && !info.is_null() {
        // SAFETY: for WRITE_STREAMS, wimlib fills the write_streams member of the union.
        let ws = unsafe { &(*info).write_streams };
        (ctx.report)(ws.completed_bytes, ws.total_bytes);
    }
    if ctx.cancel.load(Ordering::Relaxed) {
        sys::wimlib_progress_status_WIMLIB_PROGRESS_STATUS_ABORT
    } else {
        sys::wimlib_progress_status_WIMLIB_PROGRESS_STATUS_CONTINUE
    }
}

#[allow(unsafe_code)]
impl Wim {
    /// Opens an existing WIM read-only.
    pub fn open(path: &Path) -> Result<Wim, WimError> {
        Self::open_flags(path, 0)
    }

    fn open_flags(path: &Path, flags: u32) -> Result<Wim, WimError> {
        init();
        let c = cpath(path)?;
        let mut raw = ptr::null_mut();
        // SAFETY: c is a valid C string; raw receives a new WIMStruct on success.
        let code = unsafe { sys::wimlib_open_wim(c.as_ptr(), flags as c_int, &mut raw) };
        check(code, "open", path)?;
        Ok(Wim {
            raw,
            path: path.to_path_buf(),
        })
    }

    /// A new, empty in-memory WIM.
    pub fn create(compression: Compression) -> Result<Wim, WimError> {
        init();
        let mut raw = ptr::null_mut();
        // SAFETY: raw receives a new WIMStruct on success.
        let code = unsafe { sys::wimlib_create_new_wim(ctype(compression), &mut raw) };
        check(code, "create", Path::new("<new wim>"))?;
        Ok(Wim {
            raw,
            path: PathBuf::from("<new wim>"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self) -> WimInfo {
        // SAFETY: wimlib_wim_info is plain data; zeroed is a valid initial value.
        let mut info: sys::wimlib_wim_info = unsafe { std::mem::zeroed() };
        // SAFETY: self.raw is valid; info is a valid out pointer.
        unsafe { sys::wimlib_get_wim_info(self.raw, &mut info) };
        WimInfo {
            image_count: info.image_count,
            boot_index: info.boot_index,
            compression: from_ctype(info.compression_type),
            chunk_size: info.chunk_size,
            guid: info.guid,
            part_number: info.part_number,
            total_parts: info.total_parts,
        }
    }

    fn check_index(&self, index: u32) -> Result<(), WimError> {
        let count = self.info().image_count;
        if index == 0 || index > count {
            return Err(WimError::NoImage {
                path: self.path.clone(),
                index,
                count,
            });
        }
        Ok(())
    }

    /// An XML property of an image (`NAME`, `WINDOWS/ARCH`, `FLAGS`, …).
    pub fn property(&self, index: u32, name: &str) -> Option<String> {
        let c = cstr(name).ok()?;
        // SAFETY: valid WIM and C string; the result is owned by the WIMStruct and
        // copied out before any further call.
        let p = unsafe { sys::wimlib_get_image_property(self.raw, index as c_int, c.as_ptr()) };
        if p.is_null() {
            None
        } else {
            // SAFETY: non-null NUL-terminated string owned by wimlib.
            Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        }
    }

    pub fn set_property(&mut self, index: u32, name: &str, value: &str) -> Result<(), WimError> {
        let (n, v) = (cstr(name)?, cstr(value)?);
        // SAFETY: valid WIM and C strings.
        let code = unsafe {
            sys::wimlib_set_image_property(self.raw, index as c_int, n.as_ptr(), v.as_ptr())
        };
        check(code, "set property", &self.path)
    }

    /// Sets the XML creation and modification times of an image.
    pub fn set_times(&mut self, index: u32, epoch: i64) -> Result<(), WimError> {
        let (hi, lo) = filetime(epoch);
        for which in ["CREATIONTIME", "LASTMODIFICATIONTIME"] {
            self.set_property(index, &format!("{which}/HIGHPART"), &format!("0x{hi:08X}"))?;
            self.set_property(index, &format!("{which}/LOWPART"), &format!("0x{lo:08X}"))?;
        }
        Ok(())
    }

    /// Sets the header GUID and boot index.
    pub fn set_guid_boot(&mut self, guid: [u8; 16], boot_index: u32) -> Result<(), WimError> {
        // SAFETY: zeroed wimlib_wim_info is valid; only the fields named by `which` are read.
        let mut info: sys::wimlib_wim_info = unsafe { std::mem::zeroed() };
        info.guid = guid;
        info.boot_index = boot_index;
        let which = sys::WIMLIB_CHANGE_GUID | sys::WIMLIB_CHANGE_BOOT_INDEX;
        // SAFETY: valid WIM; info outlives the call.
        let code = unsafe { sys::wimlib_set_wim_info(self.raw, &info, which as c_int) };
        check(code, "set info", &self.path)
    }

    /// Every file and directory of an image, sorted by path.
    pub fn list(&self, index: u32) -> Result<Vec<DirEntry>, WimError> {
        self.check_index(index)?;
        let mut out: Vec<DirEntry> = Vec::new();
        unsafe extern "C" fn cb(d: *const sys::wimlib_dir_entry, ctx: *mut c_void) -> c_int {
            // SAFETY: ctx is the &mut Vec passed below; d is valid for the callback.
            let (out, d) = unsafe { (&mut *(ctx as *mut Vec<DirEntry>), &*d) };
            if d.depth == 0 {
                return 0; // the root
            }
            // SAFETY: full_path is a NUL-terminated string valid during the callback.
            let full = unsafe { CStr::from_ptr(d.full_path) }.to_string_lossy();
            let is_dir = d.attributes & 0x10 != 0;
            // SAFETY: streams has at least one entry (the unnamed stream), per wimlib.h.
            let s0 = unsafe { &*d.streams.as_ptr() };
            let solid = s0.resource.packed() != 0;
            out.push(DirEntry {
                path: full.trim_start_matches('/').to_string(),
                is_dir,
                size: if is_dir {
                    0
                } else {
                    s0.resource.uncompressed_size
                },
                sha1: s0.resource.sha1_hash,
                stored_size: if solid {
                    let r = &s0.resource;
                    (r.uncompressed_size as u128 * r.raw_resource_compressed_size as u128
                        / r.raw_resource_uncompressed_size.max(1) as u128)
                        as u64
                } else {
                    s0.resource.compressed_size
                },
                solid,
                offset: s0.resource.offset,
            });
            0
        }
        let root = cstr("/")?;
        let flags = sys::WIMLIB_ITERATE_DIR_TREE_FLAG_RECURSIVE;
        // SAFETY: valid WIM, C string, callback and context living across the call.
        let code = unsafe {
            sys::wimlib_iterate_dir_tree(
                self.raw,
                index as c_int,
                root.as_ptr(),
                flags as c_int,
                Some(cb),
                &mut out as *mut _ as *mut c_void,
            )
        };
        check(code, "list", &self.path)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Extracts `paths` (image paths) of image `index` under `target`, keeping
    /// their directory structure.
    pub fn extract(&self, index: u32, target: &Path, paths: &[&str]) -> Result<(), WimError> {
        self.check_index(index)?;
        let t = cpath(target)?;
        let cs: Vec<CString> = paths
            .iter()
            .map(|p| cstr(&format!("/{}", p.trim_start_matches('/'))))
            .collect::<Result<_, _>>()?;
        let ptrs: Vec<*const c_char> = cs.iter().map(|c| c.as_ptr()).collect();
        let flags = sys::WIMLIB_EXTRACT_FLAG_NO_ACLS;
        // SAFETY: valid WIM; all strings and the pointer array outlive the call.
        let code = unsafe {
            sys::wimlib_extract_paths(
                self.raw,
                index as c_int,
                t.as_ptr(),
                ptrs.as_ptr(),
                ptrs.len(),
                flags as c_int,
            )
        };
        check(code, "extract from", &self.path)
    }

    /// Writes image `index` alone to `dest` as a new WIM with the same
    /// compression (resources are copied, not recompressed), the given GUID,
    /// XML times from `epoch`, and boot index 1 when `bootable`.
    pub fn export_to(
        &self,
        index: u32,
        dest: &Path,
        spec: &ExportSpec,
        report: &mut dyn FnMut(u64, u64),
        cancel: &AtomicBool,
    ) -> Result<(), WimError> {
        let ExportSpec {
            bootable,
            guid,
            epoch,
            threads,
            convert,
        } = *spec;
        self.check_index(index)?;
        let info = self.info();
        let mut out = Wim::create(convert.unwrap_or(info.compression))?;
        if convert.is_none() && info.compression != Compression::None && info.chunk_size != 0 {
            // SAFETY: valid WIM; chunk size taken from a WIM wimlib opened.
            let code = unsafe { sys::wimlib_set_output_chunk_size(out.raw, info.chunk_size) };
            check(code, "set chunk size", dest)?;
        }
        let flags = if bootable {
            sys::WIMLIB_EXPORT_FLAG_BOOT
        } else {
            0
        };
        // SAFETY: both WIMs valid; NULL name/description keep the source's.
        let code = unsafe {
            sys::wimlib_export_image(
                self.raw,
                index as c_int,
                out.raw,
                ptr::null(),
                ptr::null(),
                flags as c_int,
            )
        };
        check(code, "export from", &self.path)?;
        out.set_guid_boot(guid, u32::from(bootable))?;
        let extra = if convert.is_some() {
            sys::WIMLIB_WRITE_FLAG_RECOMPRESS
        } else {
            0
        };
        out.write_flags(dest, epoch, threads, extra, report, cancel)
    }

    /// Makes the other parts of a split WIM (`install2.swm`, …) available to
    /// this one, its first part, so that its images can be exported.
    pub fn reference_parts(&mut self, parts: &[PathBuf]) -> Result<(), WimError> {
        if parts.is_empty() {
            return Ok(());
        }
        let c: Vec<CString> = parts.iter().map(|p| cpath(p)).collect::<Result<_, _>>()?;
        let ptrs: Vec<*const c_char> = c.iter().map(|s| s.as_ptr()).collect();
        // SAFETY: valid WIM; ptrs point at C strings living across the call.
        let code = unsafe {
            sys::wimlib_reference_resource_files(self.raw, ptrs.as_ptr(), ptrs.len() as u32, 0, 0)
        };
        check(code, "reference the parts of", &self.path)
    }

    /// Writes this (new) WIM to `dest` reproducibly: fixed GUID (set before),
    /// then XML times rewritten to `epoch` (wimlib stamps "now" on write).
    pub fn write_deterministic(
        &mut self,
        dest: &Path,
        epoch: i64,
        threads: u32,
        report: &mut dyn FnMut(u64, u64),
        cancel: &AtomicBool,
    ) -> Result<(), WimError> {
        self.write_flags(dest, epoch, threads, 0, report, cancel)
    }

    fn write_flags(
        &mut self,
        dest: &Path,
        epoch: i64,
        threads: u32,
        extra: u32,
        report: &mut dyn FnMut(u64, u64),
        cancel: &AtomicBool,
    ) -> Result<(), WimError> {
        let c = cpath(dest)?;
        let flags = sys::WIMLIB_WRITE_FLAG_RETAIN_GUID | extra;
        self.with_progress(report, cancel, |raw| {
            // SAFETY: valid WIM and C string; ALL_IMAGES writes every image.
            unsafe {
                sys::wimlib_write(
                    raw,
                    c.as_ptr(),
                    sys::WIMLIB_ALL_IMAGES,
                    flags as c_int,
                    threads,
                )
            }
        })
        .and_then(|code| check(code, "write", dest))?;
        let mut w = Wim::open_flags(dest, sys::WIMLIB_OPEN_FLAG_WRITE_ACCESS)?;
        for i in 1..=w.info().image_count {
            w.set_times(i, epoch)?;
        }
        // SAFETY: valid WIM opened with write access; rewrites only the XML.
        let code =
            unsafe { sys::wimlib_overwrite(w.raw, sys::WIMLIB_WRITE_FLAG_RETAIN_GUID as c_int, 1) };
        check(code, "finish", dest)
    }

    fn with_progress(
        &mut self,
        report: &mut dyn FnMut(u64, u64),
        cancel: &AtomicBool,
        f: impl FnOnce(*mut sys::WIMStruct) -> c_int,
    ) -> Result<c_int, WimError> {
        let mut ctx = ProgressCtx { report, cancel };
        // SAFETY: ctx outlives the wrapped call; the callback is cleared before returning.
        unsafe {
            sys::wimlib_register_progress_function(
                self.raw,
                Some(progress_cb),
                &mut ctx as *mut ProgressCtx as *mut c_void,
            )
        };
        let code = f(self.raw);
        // SAFETY: clearing the callback; ctx dies after this.
        unsafe { sys::wimlib_register_progress_function(self.raw, None, ptr::null_mut()) };
        Ok(code)
    }

    /// Adds a directory as a new image (no ACLs; names, times and sizes as on disk).
    pub fn add_image_from_dir(&mut self, dir: &Path, name: &str) -> Result<u32, WimError> {
        let (d, n) = (cpath(dir)?, cstr(name)?);
        let flags = sys::WIMLIB_ADD_FLAG_NO_ACLS;
        // SAFETY: valid WIM and C strings; NULL config = default capture config.
        let code = unsafe {
            sys::wimlib_add_image(
                self.raw,
                d.as_ptr(),
                n.as_ptr(),
                ptr::null(),
                flags as c_int,
            )
        };
        check(code, "capture", dir)?;
        Ok(self.info().image_count)
    }

    /// Splits this WIM into `dest` (`x.swm`, `x2.swm`, …) of at most `part_size` bytes.
    pub fn split(&mut self, dest: &Path, part_size: u64) -> Result<(), WimError> {
        let c = cpath(dest)?;
        // SAFETY: valid WIM and C string.
        let code = unsafe { sys::wimlib_split(self.raw, c.as_ptr(), part_size, 0) };
        check(code, "split", &self.path)
    }

    /// Full verification: metadata and every blob's SHA-1.
    pub fn verify(&mut self) -> Result<(), WimError> {
        // SAFETY: valid WIM; flags 0.
        let code = unsafe { sys::wimlib_verify_wim(self.raw, 0) };
        check(code, "verify", &self.path)
    }
}

/// The architecture an image declares in its XML (`WINDOWS/ARCH`).
pub fn arch_name(code: &str) -> &'static str {
    match code {
        "0" => "x86",
        "9" => "x64",
        "5" => "arm",
        "12" => "arm64",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetime_of_unix_epoch() {
        // 1970-01-01 = 116444736000000000 in FILETIME.
        let (hi, lo) = filetime(0);
        assert_eq!(((hi as u64) << 32) | lo as u64, 116_444_736_000_000_000);
    }

    #[test]
    fn version_is_pinned() {
        assert!(version().starts_with("1.14"), "{}", version());
    }
}
