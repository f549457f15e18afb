//! Disk geometry: where the single partition starts and how large it is.
//!
//! The partition starts at 1 MiB (LBA 2048, what Windows and parted use: aligned for
//! every flash erase block and 4K-sector disk) and its length is rounded down to whole
//! MiB, so it ends on an alignment boundary too. With MBR it fills the disk up to that
//! rounding; with GPT the last 33 sectors hold the backup table, so the partition ends
//! one MiB earlier on a MiB-multiple disk.

use super::{DiskError, Scheme};
use mediabuild_fat32 as fat32;

/// Partition alignment and start: 1 MiB.
pub const ALIGNMENT: u64 = 1 << 20;
const SECTOR: u64 = 512;
/// Backup GPT: 32 sectors of entries and the backup header.
const GPT_BACKUP_BYTES: u64 = 33 * SECTOR;
/// An MBR entry counts sectors with 32 bits.
const MBR_MAX_DISK_BYTES: u64 = (1 << 32) * SECTOR;

/// Where the partition sits on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLayout {
    /// The scheme this layout was computed for.
    pub scheme: Scheme,
    /// Size of the image file.
    pub disk_bytes: u64,
    /// Partition start in bytes (1 MiB).
    pub partition_start: u64,
    /// Partition size in bytes (a whole number of MiB).
    pub partition_bytes: u64,
}

impl DiskLayout {
    /// First LBA of the partition (also the FAT's hidden-sectors value).
    pub fn partition_start_lba(&self) -> u64 {
        self.partition_start / SECTOR
    }

    /// Partition length in sectors.
    pub fn partition_sectors(&self) -> u64 {
        self.partition_bytes / SECTOR
    }

    /// Disk length in sectors.
    pub fn disk_sectors(&self) -> u64 {
        self.disk_bytes / SECTOR
    }
}

/// The layout of a `disk_bytes` disk; errors when the disk is not whole sectors, too
/// small for FAT32 or (MBR) larger than 2 TiB.
pub fn layout(scheme: Scheme, disk_bytes: u64) -> Result<DiskLayout, DiskError> {
    if !disk_bytes.is_multiple_of(SECTOR) {
        return Err(DiskError::NotSectorMultiple { disk_bytes });
    }
    if scheme == Scheme::Mbr && disk_bytes > MBR_MAX_DISK_BYTES {
        return Err(DiskError::TooLargeForMbr {
            disk_bytes,
            max_disk_bytes: MBR_MAX_DISK_BYTES,
        });
    }
    let end = match scheme {
        Scheme::Mbr => disk_bytes,
        Scheme::Gpt => disk_bytes.saturating_sub(GPT_BACKUP_BYTES),
    };
    let partition_bytes = end.saturating_sub(ALIGNMENT) / ALIGNMENT * ALIGNMENT;
    let min_partition = fat32::min_volume_bytes();
    if partition_bytes < min_partition {
        return Err(DiskError::TooSmall {
            scheme,
            disk_bytes,
            min_disk_bytes: min_disk_bytes(scheme, min_partition),
        });
    }
    Ok(DiskLayout {
        scheme,
        disk_bytes,
        partition_start: ALIGNMENT,
        partition_bytes,
    })
}

/// Smallest disk (a whole number of MiB) whose [`layout`] gives a partition of at least
/// `partition_bytes_needed` bytes.
pub fn min_disk_bytes(scheme: Scheme, partition_bytes_needed: u64) -> u64 {
    let partition = partition_bytes_needed.max(1).div_ceil(ALIGNMENT) * ALIGNMENT;
    let tail = match scheme {
        Scheme::Mbr => 0,
        Scheme::Gpt => ALIGNMENT,
    };
    ALIGNMENT + partition + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn mbr_fills_the_disk() {
        let l = layout(Scheme::Mbr, 301 * MIB).unwrap();
        assert_eq!((l.partition_start, l.partition_bytes), (MIB, 300 * MIB));
        assert_eq!(
            (l.partition_start_lba(), l.partition_sectors()),
            (2048, 614_400)
        );
        // A disk that is not whole MiB: the partition is rounded down.
        let l = layout(Scheme::Mbr, 301 * MIB + 4096).unwrap();
        assert_eq!(l.partition_bytes, 300 * MIB);
    }

    #[test]
    fn gpt_leaves_room_for_the_backup() {
        let l = layout(Scheme::Gpt, 302 * MIB).unwrap();
        assert_eq!(l.partition_bytes, 300 * MIB);
        let last_partition_lba = l.partition_start_lba() + l.partition_sectors() - 1;
        let last_usable_lba = l.disk_sectors() - 34;
        assert!(last_partition_lba <= last_usable_lba);
        // 33 sectors more than a MiB are enough for the partition to keep its size.
        let l = layout(Scheme::Gpt, 301 * MIB + 33 * 512).unwrap();
        assert_eq!(l.partition_bytes, 300 * MIB);
        let l = layout(Scheme::Gpt, 301 * MIB + 32 * 512).unwrap();
        assert_eq!(l.partition_bytes, 299 * MIB);
    }

    #[test]
    fn min_disk_round_trips() {
        for scheme in [Scheme::Mbr, Scheme::Gpt] {
            for need in [1u64, 34_089_472, 300 * MIB, 300 * MIB + 1, 5000 * MIB - 7] {
                let need = need.max(fat32::min_volume_bytes());
                let disk = min_disk_bytes(scheme, need);
                assert_eq!(disk % MIB, 0);
                let l = layout(scheme, disk).unwrap();
                assert!(l.partition_bytes >= need, "{scheme} {need}");
                if let Ok(smaller) = layout(scheme, disk - MIB) {
                    assert!(smaller.partition_bytes < need, "{scheme} {need}");
                }
            }
        }
    }

    #[test]
    fn errors() {
        let e = layout(Scheme::Mbr, 100 * MIB + 1).unwrap_err().to_string();
        assert_eq!(
            e,
            "disk size 104857601 bytes is not a multiple of 512-byte sectors; \
             use 104857600 or 104858112 bytes"
        );
        let e = layout(Scheme::Gpt, 34 * MIB).unwrap_err().to_string();
        assert!(
            e.starts_with("a GPT disk of 35651584 bytes (34.0 MiB) is too small"),
            "{e}"
        );
        assert!(e.ends_with("at least 36700160 bytes (35.0 MiB)"), "{e}");
        assert!(layout(Scheme::Mbr, 34 * MIB).is_ok());
        assert!(layout(Scheme::Mbr, 33 * MIB).is_err());
        let e = layout(Scheme::Mbr, 3 << 40).unwrap_err().to_string();
        assert!(e.contains("use GPT"), "{e}");
        assert!(layout(Scheme::Mbr, 2 << 40).is_ok());
        assert!(layout(Scheme::Gpt, 3 << 40).is_ok());
    }
}
