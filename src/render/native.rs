//! Bridge from the media tree to our own parallel WIM writer (`crate::wimwrite`).

use crate::build::{BuildError, Resolved};
use crate::recipe::Compression;
use crate::wimwrite::{self, Content, EntryKind, WimEntry, WimReport, WimWriteError, WriteOptions};
use std::path::Path;
use std::sync::atomic::AtomicBool;

impl From<WimWriteError> for BuildError {
    fn from(e: WimWriteError) -> Self {
        match e {
            WimWriteError::Cancelled => BuildError::Cancelled,
            e => BuildError::Render(format!("writing the WIM: {e}")),
        }
    }
}

fn compression(c: Compression) -> wimwrite::Compression {
    match c {
        Compression::None => wimwrite::Compression::None,
        Compression::Xpress => wimwrite::Compression::Xpress,
        Compression::Lzx => wimwrite::Compression::Lzx,
        Compression::Lzms => wimwrite::Compression::Lzms,
    }
}

/// One entry per media member, read from wherever the member's bytes are.
pub fn entries(members: &[Resolved]) -> Vec<WimEntry> {
    members
        .iter()
        .map(|m| WimEntry {
            path: m.path.clone(),
            kind: EntryKind::File {
                size: m.size,
                content: Content::Path(m.file.clone()),
            },
        })
        .collect()
}

/// One entry per file under `dir` (the benchmark's input).
pub fn entries_from_dir(dir: &Path) -> Result<Vec<WimEntry>, BuildError> {
    let files = crate::fsutil::walk(dir).map_err(|e| BuildError::io("read", dir, e))?;
    Ok(files
        .into_iter()
        .map(|f| WimEntry {
            path: f.rel,
            kind: EntryKind::File {
                size: f.size,
                content: Content::Path(f.abs),
            },
        })
        .collect())
}

/// What to write.
pub struct NativeSpec<'a> {
    pub compression: Compression,
    pub threads: usize,
    pub guid: [u8; 16],
    pub epoch: i64,
    pub name: &'a str,
    pub description: Option<&'a str>,
}

/// Writes `entries` as a one-image WIM to `out`.
pub fn write(
    entries: &[WimEntry],
    out: &Path,
    spec: &NativeSpec,
    report: &mut dyn FnMut(u64, u64),
    cancel: &AtomicBool,
) -> Result<WimReport, BuildError> {
    let opts = WriteOptions {
        compression: compression(spec.compression),
        threads: spec.threads,
        guid: spec.guid,
        epoch: spec.epoch,
        image_name: spec.name.to_string(),
        image_description: spec.description.map(str::to_string),
        ..Default::default()
    };
    let mut f = std::fs::File::create(out).map_err(|e| BuildError::io("create", out, e))?;
    let rep = wimwrite::write_wim(entries, &mut f, &opts, report, cancel)?;
    f.sync_all().map_err(|e| BuildError::io("sync", out, e))?;
    Ok(rep)
}
