//! Writing a whole image: plan and check first, then a sparse file of the final size,
//! each partition's volume at its offset, and the partition table around them.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use super::layout::{FileSystem, PlacedPartition, SizeRule};
use super::table::table_runs;
use super::{DiskError, DiskIds, DiskLayout};
use mediabuild_fat32::{self as fat32, FatError, FatFile, FatLayout, FatParams};
use mediabuild_fsutil::direct::{DirectFile, StreamedHash};

/// Plans the volume of every partition of the image without touching any file:
/// validates each partition's file list (`files[i]` goes to `layout.partitions[i]`)
/// and states whether (and by how much) the content misses its partition.
///
/// A FAT32 volume's `hidden_sectors` is replaced by its partition's start LBA, the
/// value the boot sector must carry on this disk. When the partition sized
/// [`SizeRule::Rest`] is too small for its content, the error names the smallest disk
/// that holds it; a fixed-size partition too small for its content is an error of the
/// layout.
pub fn plan_image(
    layout: &DiskLayout,
    files: &[Vec<FatFile>],
) -> Result<Vec<FatLayout>, DiskError> {
    if files.len() != layout.partitions.len() {
        return Err(DiskError::FilesPerPartition {
            partitions: layout.partitions.len(),
            given: files.len(),
        });
    }
    layout
        .partitions
        .iter()
        .zip(files)
        .map(|(p, files)| match &p.spec.fs {
            FileSystem::Fat32(params) => plan_fat32(layout, p, files, params),
        })
        .collect()
}

fn plan_fat32(
    layout: &DiskLayout,
    p: &PlacedPartition,
    files: &[FatFile],
    params: &FatParams,
) -> Result<FatLayout, DiskError> {
    let params = FatParams {
        hidden_sectors: u32::try_from(p.start_lba()).unwrap_or(u32::MAX),
        ..params.clone()
    };
    let rest = p.spec.size == SizeRule::Rest;
    fat32::plan(files, p.bytes, &params).map_err(|e| match e {
        FatError::DoesNotFit {
            short_by,
            min_partition_bytes,
            ..
        } if rest => DiskError::DoesNotFit {
            disk_bytes: layout.disk_bytes,
            short_by,
            min_disk_bytes: layout.min_disk_bytes(min_partition_bytes),
        },
        FatError::TooFewClusters {
            min_partition_bytes,
            ..
        } if rest => DiskError::TooSmall {
            scheme: layout.scheme,
            disk_bytes: layout.disk_bytes,
            min_disk_bytes: layout.min_disk_bytes(min_partition_bytes),
        },
        FatError::DoesNotFit {
            min_partition_bytes,
            ..
        }
        | FatError::TooFewClusters {
            min_partition_bytes,
            ..
        } => DiskError::PartitionTooSmall {
            number: p.number,
            partition_bytes: p.bytes,
            min_partition_bytes,
        },
        other => DiskError::Fat(other),
    })
}

/// Writes a disk image of `layout` to `path` (created or truncated), partition `i`
/// holding `files[i]`. The caller provides the temporary path and renames it into
/// place.
///
/// Every check (names, sizes, sources on the host, for every partition) runs before
/// the file is created. `progress` receives the running total of bytes done, up to the
/// sum of [`FatLayout::bytes_to_write`] of the planned volumes. The image is written
/// front to back around the page cache
/// ([`DirectFile`](mediabuild_fsutil::direct::DirectFile)) — MBR and primary GPT, each
/// volume in disk order, the backup GPT — and synced to disk before returning, so a
/// following rename publishes a complete image. Returns the image's SHA-256 computed on
/// the way out, but for the zeros after the last write ([`StreamedHash::digest`] adds
/// them); `None` only if a write went backwards, which this order never does.
pub fn write_image(
    path: &Path,
    layout: &DiskLayout,
    ids: &DiskIds,
    files: &[Vec<FatFile>],
    progress: &mut dyn FnMut(u64),
) -> Result<Option<StreamedHash>, DiskError> {
    let volumes = plan_image(layout, files)?;
    for (volume, files) in volumes.iter().zip(files) {
        fat32::check_sources(volume, files)?;
    }
    let mut table = table_runs(path, layout, ids)?.into_iter().peekable();
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
    let mut put = |file: &mut DirectFile, before: u64| -> Result<(), DiskError> {
        while let Some((offset, bytes)) = table.next_if(|(offset, _)| *offset < before) {
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(&bytes))
                .map_err(io("write the partition table to"))?;
        }
        Ok(())
    };
    let mut done = 0u64;
    for ((p, volume), files) in layout.partitions.iter().zip(&volumes).zip(files) {
        put(&mut file, p.start)?;
        fat32::write(volume, files, &mut file, p.start, &mut |n| {
            progress(done + n)
        })?;
        done += volume.bytes_to_write();
    }
    put(&mut file, u64::MAX)?;
    file.finish().map_err(io("write"))
}
