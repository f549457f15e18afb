//! Writing a whole image: plan and check first, then a sparse file of the final size,
//! the FAT32 volume at the partition offset, and the partition table last.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use super::layout::min_disk_bytes;
use super::table::table_runs;
use super::{DiskError, DiskIds, DiskLayout, Scheme};
use mediabuild_fat32::{self as fat32, FatError, FatFile, FatLayout, FatParams};
use mediabuild_fsutil::direct::{DirectFile, StreamedHash};

/// Plans the FAT32 volume of the image without touching any file: validates the file
/// list and states whether (and by how much) the content misses the disk.
///
/// `params.hidden_sectors` is replaced by the partition's start LBA, the value the
/// boot sector must carry on this disk.
pub fn plan_image(
    scheme: Scheme,
    layout: &DiskLayout,
    files: &[FatFile],
    params: &FatParams,
) -> Result<FatLayout, DiskError> {
    if layout.scheme != scheme {
        return Err(DiskError::SchemeMismatch {
            layout: layout.scheme,
            requested: scheme,
        });
    }
    let params = FatParams {
        hidden_sectors: u32::try_from(layout.partition_start_lba()).unwrap_or(u32::MAX),
        ..params.clone()
    };
    fat32::plan(files, layout.partition_bytes, &params).map_err(|e| match e {
        FatError::DoesNotFit {
            short_by,
            min_partition_bytes,
            ..
        } => DiskError::DoesNotFit {
            disk_bytes: layout.disk_bytes,
            short_by,
            min_disk_bytes: min_disk_bytes(scheme, min_partition_bytes),
        },
        FatError::TooFewClusters {
            min_partition_bytes,
            ..
        } => DiskError::TooSmall {
            scheme,
            disk_bytes: layout.disk_bytes,
            min_disk_bytes: min_disk_bytes(scheme, min_partition_bytes),
        },
        other => DiskError::Fat(other),
    })
}

/// Writes a disk image with one FAT32 partition holding `files` to `path` (created or
/// truncated). The caller provides the temporary path and renames it into place.
///
/// Every check (names, sizes, sources on the host) runs before the file is created.
/// `progress` receives the running total of bytes done, up to
/// [`FatLayout::bytes_to_write`] of the planned volume. The image is written front to
/// back around the page cache ([`DirectFile`](mediabuild_fsutil::direct::DirectFile)) —
/// MBR and primary GPT, the volume, the backup GPT — and synced to disk before
/// returning, so a following rename publishes a complete image. Returns the image's
/// SHA-256 computed on the way out, but for the zeros after the last write
/// ([`StreamedHash::digest`] adds them); `None` only if a write went backwards, which
/// this order never does.
pub fn write_image(
    path: &Path,
    scheme: Scheme,
    layout: &DiskLayout,
    ids: &DiskIds,
    files: &[FatFile],
    params: &FatParams,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<StreamedHash>, DiskError> {
    let volume = plan_image(scheme, layout, files, params)?;
    fat32::check_sources(&volume, files)?;
    let table = table_runs(path, layout, ids)?;
    let io = |action: &'static str| {
        move |source| DiskError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    // Created empty and sized: it reads as zeros and owns no blocks, so free space is
    // never written.
    let mut file = DirectFile::create(path, layout.disk_bytes, true).map_err(io("create"))?;
    let (head, tail): (Vec<_>, Vec<_>) = table
        .into_iter()
        .partition(|(offset, _)| *offset < layout.partition_start);
    let put = |file: &mut DirectFile, runs: Vec<(u64, Vec<u8>)>| -> Result<(), DiskError> {
        for (offset, bytes) in runs {
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(&bytes))
                .map_err(io("write the partition table to"))?;
        }
        Ok(())
    };
    put(&mut file, head)?;
    fat32::write(&volume, files, &mut file, layout.partition_start, progress)?;
    put(&mut file, tail)?;
    file.finish().map_err(io("write"))
}
