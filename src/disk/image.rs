//! Writing a whole image: plan and check first, then a sparse file of the final size,
//! the FAT32 volume at the partition offset, and the partition table last.

use std::fs::OpenOptions;
use std::path::Path;

use super::layout::min_disk_bytes;
use super::table::write_table;
use super::{DiskError, DiskIds, DiskLayout, Scheme};
use crate::fat32::{self, FatError, FatFile, FatLayout, FatParams};

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
/// [`FatLayout::bytes_to_write`] of the planned volume. The data is synced to disk
/// before returning, so a following rename publishes a complete image.
pub fn write_image(
    path: &Path,
    scheme: Scheme,
    layout: &DiskLayout,
    ids: &DiskIds,
    files: &[FatFile],
    params: &FatParams,
    progress: &mut dyn FnMut(u64),
) -> Result<(), DiskError> {
    let volume = plan_image(scheme, layout, files, params)?;
    fat32::check_sources(&volume, files)?;
    let io = |action: &'static str| {
        move |source| DiskError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io("create"))?;
    // Truncating to zero and growing gives a file that reads as zeros and owns no
    // blocks: free space is never written.
    file.set_len(layout.disk_bytes)
        .map_err(io("set the size of"))?;
    fat32::write(
        &volume,
        files,
        &mut crate::fsutil::Writeback::new(&file),
        layout.partition_start,
        progress,
    )?;
    write_table(&mut file, path, layout, ids)?;
    file.sync_all().map_err(io("sync"))?;
    Ok(())
}
