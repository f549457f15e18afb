//! One-pass FAT32 writer for a file list that is known up front.
//!
//! The phases are visible in the API: [`plan`] validates every path and computes the whole
//! volume (geometry, short and long names, directory sizes, cluster of every object) before
//! any byte is written; [`write`] then streams the volume to a `Write + Seek` target in
//! increasing offset order. Everything is laid out contiguously: the root directory at
//! cluster 2, then the other directories breadth-first, then the files in the same order,
//! each directory's children sorted by case-folded name. The result depends only on the
//! file list and [`FatParams`], never on the clock or the input order.
//!
//! Free space and the zero tails of the metadata are never written: the target range must
//! read as zeros beforehand (a file freshly extended with `set_len`), which keeps images
//! sparse. Field-by-field rules are in `shared/reference/fat32-format.md`; section numbers
//! in comments (§n) refer to it.

#![deny(unsafe_code)]

mod dir;
mod geometry;
mod names;
mod plan;
mod tree;
mod write;

#[cfg(any(test, feature = "testutil"))]
pub mod fixtures;
#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

use std::path::PathBuf;
use std::sync::Arc;

pub use geometry::{Geometry, MIN_CLUSTERS};
pub use plan::{min_partition_bytes, min_volume_bytes, plan, volume_label, FatLayout};
pub use write::{check_sources, write};

/// Largest FAT32 file: the size field is 32 bits (§9).
pub const MAX_FILE_SIZE: u64 = 0xFFFF_FFFF;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// Read from this file on the host while writing (never loaded whole into memory).
    Path(PathBuf),
    /// Bytes already in memory (small generated files).
    Bytes(Arc<[u8]>),
    /// Not a file: an empty directory at `path` (other directories are
    /// implied by the paths of their files).
    Dir,
}

/// One file of the volume. Directories are implied by the paths.
#[derive(Debug, Clone)]
pub struct FatFile {
    /// Relative, '/'-separated path inside the volume, e.g. `EFI/Boot/bootx64.efi`.
    pub path: String,
    /// Size in bytes; must match the source when writing.
    pub size: u64,
    /// Where the bytes come from.
    pub source: FileSource,
}

impl FatFile {
    /// An empty directory.
    pub fn dir(path: impl Into<String>) -> FatFile {
        FatFile {
            path: path.into(),
            size: 0,
            source: FileSource::Dir,
        }
    }

    /// A file whose content is held in memory.
    pub fn from_bytes(path: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> FatFile {
        let bytes: Arc<[u8]> = bytes.into();
        FatFile {
            path: path.into(),
            size: bytes.len() as u64,
            source: FileSource::Bytes(bytes),
        }
    }

    /// A file read from the host at write time; `size` comes from an earlier scan.
    pub fn from_path(path: impl Into<String>, source: impl Into<PathBuf>, size: u64) -> FatFile {
        FatFile {
            path: path.into(),
            size,
            source: FileSource::Path(source.into()),
        }
    }
}

/// Volume-wide values, all chosen by the caller so that the output is reproducible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatParams {
    /// Volume serial number (BS_VolID).
    pub volume_id: u32,
    /// Media label. Upper-cased, characters FAT does not allow become `_`, cut to 11
    /// bytes; empty (or `NO NAME`) means no label.
    pub label: String,
    /// Partition start LBA (BPB_HiddSec); 0 for a bare volume.
    pub hidden_sectors: u32,
    /// Unix seconds used for every timestamp, written as if UTC were local time.
    pub epoch: i64,
}

/// Everything that can go wrong when planning or writing a FAT32 volume.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// A path or one of its components is not a valid FAT long name.
    #[error("invalid path \"{path}\": {reason}")]
    InvalidName {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Two paths name the same file (FAT compares names ignoring case).
    #[error(
        "duplicate path \"{path}\": it names the same file as \"{other}\" \
         (FAT names are case-insensitive); keep only one of them"
    )]
    DuplicatePath {
        /// The later path.
        path: String,
        /// The earlier path naming the same file.
        other: String,
    },

    /// A path uses a file as if it were a directory, or the reverse.
    #[error(
        "path conflict: \"{file}\" is a file, but \"{other}\" needs a directory \
         of the same name (names compared ignoring case)"
    )]
    PathConflict {
        /// The path listed as a file.
        file: String,
        /// A path that needs it to be a directory.
        other: String,
    },

    /// A file of 4 GiB or more.
    #[error(
        "file \"{path}\" is {size} bytes; FAT32 files must be smaller than 4 GiB \
         (at most 4294967295 bytes): split it (e.g. into .swm parts) before building the image"
    )]
    FileTooLarge {
        /// The file's path.
        path: String,
        /// Its size in bytes.
        size: u64,
    },

    /// A directory with more than 65,536 slots (§8).
    #[error(
        "directory \"{path}\" needs {slots} 32-byte entries (long names included); \
         FAT allows at most 65536: spread its files over subdirectories or shorten their names"
    )]
    DirectoryTooLarge {
        /// The directory's path (`/` for the root).
        path: String,
        /// 32-byte slots it would need.
        slots: u64,
    },

    /// The partition is too small to hold the 65,525 clusters FAT32 needs.
    #[error(
        "too few clusters for FAT32: a partition of {} gives {clusters} clusters of \
         {cluster_bytes} bytes, but FAT32 needs at least 65525 (UEFI firmware rejects fewer); \
         use a partition of at least {}",
        bytes(*partition_bytes), bytes(*min_partition_bytes)
    )]
    TooFewClusters {
        /// The partition size given.
        partition_bytes: u64,
        /// Cluster size chosen for it.
        cluster_bytes: u64,
        /// Clusters it would have.
        clusters: u64,
        /// Smallest partition that works (and holds the content).
        min_partition_bytes: u64,
    },

    /// The partition has more sectors than a FAT32 BPB can count.
    #[error(
        "a partition of {} is too large for FAT32 with 512-byte sectors \
         (at most 4294967295 sectors, about 2 TiB)",
        bytes(*partition_bytes)
    )]
    PartitionTooLarge {
        /// The partition size given.
        partition_bytes: u64,
    },

    /// The content does not fit into the partition.
    #[error(
        "content does not fit: it needs {} of clusters but the volume has {}, \
         {} too much; the partition must be at least {}",
        bytes(*needed_bytes), bytes(*available_bytes), bytes(*short_by), bytes(*min_partition_bytes)
    )]
    DoesNotFit {
        /// Bytes of whole clusters the directories and files take.
        needed_bytes: u64,
        /// Bytes of clusters the volume has.
        available_bytes: u64,
        /// `needed_bytes - available_bytes`.
        short_by: u64,
        /// Smallest partition that holds the content.
        min_partition_bytes: u64,
    },

    /// The content would not fit even the largest FAT32 volume.
    #[error("content needs {}, more than any FAT32 volume can hold", bytes(*needed_bytes))]
    ContentTooLarge {
        /// Bytes of clusters the content takes at the largest cluster size.
        needed_bytes: u64,
    },

    /// A source has a different size from the one in the file list.
    #[error(
        "source of \"{path}\" has {actual} bytes but the file list says {expected}: \
         the file changed after it was scanned; scan it again"
    )]
    SizeMismatch {
        /// The file's path in the volume.
        path: String,
        /// Size in the file list.
        expected: u64,
        /// Size of the source.
        actual: u64,
    },

    /// A source file could not be opened or read.
    #[error("cannot read the source of \"{path}\" ({}): {source}", source_path.display())]
    Source {
        /// The file's path in the volume.
        path: String,
        /// The host file.
        source_path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Writing the output failed.
    #[error("cannot write the image at byte offset {offset}: {source}")]
    Write {
        /// Absolute offset in the output.
        offset: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// `write` was given another file list than the one `plan` saw.
    #[error("the file list does not match the layout planned from it: {0}")]
    LayoutMismatch(String),

    /// Several problems, all found before any byte was written.
    #[error("{} problems:{}", .0.len(), list(.0))]
    Multiple(Vec<FatError>),
}

impl FatError {
    /// One error as is, several as [`FatError::Multiple`].
    pub(crate) fn from_list(mut errors: Vec<FatError>) -> Result<(), FatError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(FatError::Multiple(errors)),
        }
    }
}

fn list(errors: &[FatError]) -> String {
    errors.iter().map(|e| format!("\n  - {e}")).collect()
}

/// "34603008 bytes (33.0 MiB)": exact for scripts, rounded for people.
pub fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n < 1 << 20 {
        format!("{n} bytes")
    } else if n < 1 << 30 {
        format!("{n} bytes ({:.1} MiB)", n as f64 / MIB)
    } else {
        format!("{n} bytes ({:.2} GiB)", n as f64 / MIB / 1024.0)
    }
}
