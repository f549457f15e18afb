//! FAT32 geometry: cluster size, FAT size and cluster count for a volume size (§3).
//!
//! Cluster size follows Microsoft's DskTableFAT32 (the same limits as mkfs.fat), with
//! 512 B clusters below 260 MiB. The FAT is the smallest one that can describe every
//! cluster, grown until the data region starts on a cluster boundary, as mkfs.fat does:
//! with a 1 MiB-aligned partition every cluster is then aligned on the disk too.

/// Bytes per sector; the only size this writer produces.
pub(crate) const SECTOR: u64 = 512;
/// Reserved sectors before the first FAT (boot sector, FSInfo, backups at 6 and 7).
pub(crate) const RESERVED_SECTORS: u32 = 32;
/// Number of FAT copies.
pub(crate) const NUM_FATS: u32 = 2;
/// Fewest clusters of a FAT32 volume: below this the spec calls it FAT16 and OVMF
/// refuses to mount it (§3).
pub const MIN_CLUSTERS: u32 = 65_525;
/// Most clusters a FAT32 volume may have.
pub(crate) const MAX_CLUSTERS: u32 = 0x0FFF_FFF5;
/// FAT entries per FAT sector.
const ENTRIES_PER_SECTOR: u64 = SECTOR / 4;

/// First row whose sector limit is ≥ the volume size gives the sectors per cluster.
/// Rows are whole MiB, so rounding a size up to a MiB never changes the row.
const CLUSTER_TABLE: [(u64, u32); 5] = [
    (532_480, 1),
    (16_777_216, 8),
    (33_554_432, 16),
    (67_108_864, 32),
    (u32::MAX as u64, 64),
];

/// Geometry of one FAT32 volume, in 512-byte sectors relative to the volume start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// BPB_TotSec32.
    pub total_sectors: u32,
    /// BPB_SecPerClus.
    pub sectors_per_cluster: u32,
    /// BPB_RsvdSecCnt.
    pub reserved_sectors: u32,
    /// BPB_FATSz32: sectors of one FAT.
    pub fat_sectors: u32,
    /// Data clusters, numbered 2 ..= cluster_count + 1.
    pub cluster_count: u32,
}

/// Why a volume size cannot hold FAT32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GeometryError {
    TooFewClusters { cluster_bytes: u64, clusters: u64 },
    TooLarge,
}

impl Geometry {
    /// Geometry for a volume of `volume_bytes` (rounded down to whole sectors).
    pub(crate) fn for_volume(volume_bytes: u64) -> Result<Geometry, GeometryError> {
        let total = volume_bytes / SECTOR;
        if total > u64::from(u32::MAX) {
            return Err(GeometryError::TooLarge);
        }
        let spc = table_sectors_per_cluster(total);
        let g = Geometry::with_cluster_size(total as u32, spc);
        if g.cluster_count < MIN_CLUSTERS {
            return Err(GeometryError::TooFewClusters {
                cluster_bytes: u64::from(spc) * SECTOR,
                clusters: u64::from(g.cluster_count),
            });
        }
        Ok(g)
    }

    /// Smallest aligned FAT for `total` sectors and `spc` sectors per cluster.
    pub(crate) fn with_cluster_size(total: u32, spc: u32) -> Geometry {
        let total_u = u64::from(total);
        let rsvd = u64::from(RESERVED_SECTORS);
        let fats = u64::from(NUM_FATS);
        let spc_u = u64::from(spc);
        let clusters = |f: u64| total_u.saturating_sub(rsvd + fats * f) / spc_u;
        let fits = |f: u64| f * ENTRIES_PER_SECTOR >= clusters(f) + 2;
        // The closed form of §3 lands on the minimum or one above; walk to the minimum.
        let mut f = (total_u.saturating_sub(rsvd) + 2 * spc_u)
            .div_ceil(spc_u * ENTRIES_PER_SECTOR + fats)
            .max(1);
        while f > 1 && fits(f - 1) {
            f -= 1;
        }
        while !fits(f) {
            f += 1;
        }
        // A larger FAT is harmless (its tail stays zero) and aligns the data region.
        while (rsvd + fats * f) % spc_u != 0 {
            f += 1;
        }
        let count = clusters(f).min(u64::from(MAX_CLUSTERS));
        Geometry {
            total_sectors: total,
            sectors_per_cluster: spc,
            reserved_sectors: RESERVED_SECTORS,
            fat_sectors: f as u32,
            cluster_count: count as u32,
        }
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR
    }

    /// First sector of the data region (cluster 2).
    pub fn data_start_sector(&self) -> u64 {
        u64::from(self.reserved_sectors) + u64::from(NUM_FATS) * u64::from(self.fat_sectors)
    }

    /// Byte offset of FAT copy `copy` (0 or 1) inside the volume.
    pub fn fat_offset(&self, copy: u32) -> u64 {
        (u64::from(self.reserved_sectors) + u64::from(copy) * u64::from(self.fat_sectors)) * SECTOR
    }

    /// Byte offset of cluster `cluster` (≥ 2) inside the volume.
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_start_sector() * SECTOR + u64::from(cluster - 2) * self.cluster_bytes()
    }

    /// Size of the volume in bytes.
    pub fn volume_bytes(&self) -> u64 {
        u64::from(self.total_sectors) * SECTOR
    }
}

/// Sectors per cluster for a volume of `total` sectors (DskTableFAT32; below its first
/// row only 512 B clusters can possibly reach 65,525 clusters).
pub(crate) fn table_sectors_per_cluster(total: u64) -> u32 {
    CLUSTER_TABLE
        .iter()
        .find(|(limit, _)| total <= *limit)
        .map_or(64, |&(_, spc)| spc)
}

/// Smallest volume (in sectors) whose table-chosen cluster size leaves at least
/// `needed(cluster_bytes)` clusters, and never fewer than [`MIN_CLUSTERS`].
///
/// The content's cluster count depends on the cluster size, which depends on the volume
/// size, so each table row is tried from the smallest: within a row the row's cluster
/// size is fixed and the answer is direct. `None` when not even the largest volume fits.
pub(crate) fn smallest_volume(needed: impl Fn(u64) -> u64) -> Option<u64> {
    let rsvd = u64::from(RESERVED_SECTORS);
    let fats = u64::from(NUM_FATS);
    let mut row_start = 0u64;
    for &(limit, spc) in &CLUSTER_TABLE {
        let spc_u = u64::from(spc);
        let clusters = needed(spc_u * SECTOR).max(u64::from(MIN_CLUSTERS));
        let mut f = (clusters + 2).div_ceil(ENTRIES_PER_SECTOR);
        while (rsvd + fats * f) % spc_u != 0 {
            f += 1;
        }
        let total = (rsvd + fats * f + clusters * spc_u).max(row_start + 1);
        if total <= limit && clusters <= u64::from(MAX_CLUSTERS) {
            // The minimal FAT for `total` is never larger than `f`, so the real
            // geometry has at least `clusters` clusters; check it anyway.
            let g = Geometry::with_cluster_size(total as u32, spc);
            if u64::from(g.cluster_count) >= clusters {
                return Some(total);
            }
        }
        row_start = limit;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn worked_example_geometry() {
        // §13: 300 MiB → 4 KiB clusters, FAT 600 sectors, data at 1232, 76 646 clusters.
        let g = Geometry::for_volume(300 * MIB).unwrap();
        assert_eq!(g.sectors_per_cluster, 8);
        assert_eq!(g.fat_sectors, 600);
        assert_eq!(g.data_start_sector(), 1232);
        assert_eq!(g.cluster_count, 76_646);
        assert_eq!(g.total_sectors, 614_400);
    }

    #[test]
    fn cluster_size_follows_table() {
        let spc = |bytes: u64| Geometry::for_volume(bytes).unwrap().sectors_per_cluster;
        assert_eq!(spc(40 * MIB), 1);
        assert_eq!(spc(260 * MIB), 1);
        assert_eq!(spc(261 * MIB), 8);
        assert_eq!(spc(8 * 1024 * MIB), 8);
        assert_eq!(spc(8 * 1024 * MIB + 512), 16);
        assert_eq!(spc(16 * 1024 * MIB), 16);
        assert_eq!(spc(32 * 1024 * MIB - MIB), 32);
        assert_eq!(spc(32 * 1024 * MIB), 32);
        assert_eq!(spc(33 * 1024 * MIB), 64);
    }

    #[test]
    fn fat_is_minimal_aligned_and_large_enough() {
        for mib in [
            33u64, 40, 64, 100, 259, 260, 261, 300, 1000, 4096, 8192, 8193, 20_000,
        ] {
            for extra in [0u64, 512, 7 * 512, MIB - 512] {
                let g = Geometry::for_volume(mib * MIB + extra).unwrap();
                let entries = u64::from(g.fat_sectors) * 128;
                assert!(entries >= u64::from(g.cluster_count) + 2, "{mib} MiB");
                assert_eq!(g.data_start_sector() % u64::from(g.sectors_per_cluster), 0);
                let used = g.data_start_sector()
                    + u64::from(g.cluster_count) * u64::from(g.sectors_per_cluster);
                assert!(used <= u64::from(g.total_sectors));
                // Fewer than one more cluster is left over.
                assert!(
                    u64::from(g.total_sectors) - used < u64::from(g.sectors_per_cluster),
                    "{mib} MiB"
                );
                // One aligned step smaller would not describe every cluster.
                let step = u64::from(g.sectors_per_cluster / 2).max(1);
                let f = u64::from(g.fat_sectors) - step;
                let c =
                    (u64::from(g.total_sectors) - 32 - 2 * f) / u64::from(g.sectors_per_cluster);
                assert!(f * 128 < c + 2 || (32 + 2 * f) % u64::from(g.sectors_per_cluster) != 0);
            }
        }
    }

    #[test]
    fn mkfs_fat_33_gib_matches() {
        // §3: mkfs.fat for 33 GiB uses Rsvd 64 and TotSec rounded to 63; with our Rsvd 32
        // the cluster size must agree and the count must be close.
        let g = Geometry::for_volume(69_206_004 * 512).unwrap();
        assert_eq!(g.sectors_per_cluster, 64);
        assert!(g.cluster_count.abs_diff(1_081_078) <= 1);
    }

    #[test]
    fn too_small_and_too_large() {
        assert!(matches!(
            Geometry::for_volume(32 * MIB),
            Err(GeometryError::TooFewClusters {
                cluster_bytes: 512,
                ..
            })
        ));
        assert!(Geometry::for_volume(66_581 * 512).is_ok());
        assert!(Geometry::for_volume(66_580 * 512).is_err());
        assert_eq!(Geometry::for_volume(4 << 40), Err(GeometryError::TooLarge));
    }

    #[test]
    fn smallest_volume_is_minimal() {
        // Empty content: the smallest FAT32 volume (§3 table: 66 581 sectors).
        assert_eq!(smallest_volume(|_| 1), Some(66_581));
        for need_bytes in [0u64, 40 * MIB, 300 * MIB, 9000 * MIB, 40_000 * MIB] {
            let needed = |cb: u64| need_bytes.div_ceil(cb) + 1;
            let total = smallest_volume(needed).unwrap();
            let g = Geometry::for_volume(total * 512).unwrap();
            assert!(u64::from(g.cluster_count) >= needed(g.cluster_bytes()));
            let smaller = Geometry::for_volume((total - 1) * 512);
            if let Ok(s) = smaller {
                assert!(
                    u64::from(s.cluster_count) < needed(s.cluster_bytes()),
                    "{need_bytes}: {total} is not minimal"
                );
            }
        }
        assert_eq!(smallest_volume(|_| u64::from(u32::MAX)), None);
    }
}
