//! Disk layouts and their geometry.
//!
//! A [`Layout`] is a list of partitions, in disk order, each with its entry in the
//! partition table ([`PartitionType`]), its size rule ([`SizeRule`]) and its file system
//! ([`FileSystem`]). [`layout`] places them on a disk of a given size: the first starts at
//! 1 MiB (LBA 2048, what Windows and parted use: aligned for every flash erase block and
//! 4K-sector disk) and every size is a whole number of MiB, so every partition starts and
//! ends on an alignment boundary. With MBR the partitions may fill the disk up to that
//! rounding; with GPT the last 33 sectors hold the backup table, so a partition that
//! takes the rest of a MiB-multiple disk ends one MiB before its end.
//!
//! [`Layout::single`] is the media layout: one FAT32 partition filling the disk.

use super::{DiskError, Scheme};
use mediabuild_fat32::{self as fat32, FatParams};

/// Partition alignment and start of the first partition: 1 MiB.
pub const ALIGNMENT: u64 = 1 << 20;
const SECTOR: u64 = 512;
/// Backup GPT: 32 sectors of entries and the backup header.
const GPT_BACKUP_BYTES: u64 = 33 * SECTOR;
/// An MBR entry counts sectors with 32 bits.
const MBR_MAX_DISK_BYTES: u64 = (1 << 32) * SECTOR;
/// Primary partitions of a classic MBR.
pub const MBR_MAX_PARTITIONS: usize = 4;
/// Entries of the GPT partition array this crate writes.
pub const GPT_MAX_PARTITIONS: usize = 128;
/// A GPT partition name holds at most 36 UTF-16 code units.
const GPT_NAME_UNITS: usize = 36;

/// MBR partition type of the media partition: FAT32 with LBA addressing.
pub const MBR_PARTITION_TYPE: u8 = 0x0C;
/// GPT partition type of the media partition: Microsoft basic data (see the crate docs
/// for why not the EFI System Partition type).
pub const GPT_PARTITION_TYPE: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
/// GPT name of the media partition.
pub const GPT_PARTITION_NAME: &str = "MEDIA";
/// MBR partition type of an EFI System Partition.
pub const MBR_ESP_TYPE: u8 = 0xEF;
/// GPT partition type of an EFI System Partition.
pub const GPT_ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// A disk layout: its partitions in disk order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The partitions, first to last; MBR holds at most 4, GPT at most 128.
    pub partitions: Vec<PartitionSpec>,
}

/// One partition of a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Its entry in the partition table.
    pub kind: PartitionType,
    /// How large it is.
    pub size: SizeRule,
    /// The file system written into it.
    pub fs: FileSystem,
}

/// The table entry of a partition, for either scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionType {
    /// MBR partition type byte (e.g. `0x0C` FAT32 LBA, `0xEF` EFI System).
    pub mbr_type: u8,
    /// MBR: marked active (status `0x80`).
    pub mbr_active: bool,
    /// GPT partition type GUID, text form (e.g. [`GPT_PARTITION_TYPE`]).
    pub gpt_type: String,
    /// GPT partition name (at most 36 UTF-16 code units).
    pub gpt_name: String,
}

impl PartitionType {
    /// The media partition: MBR `0x0C`, active; GPT Microsoft basic data named `MEDIA`.
    pub fn media() -> PartitionType {
        PartitionType {
            mbr_type: MBR_PARTITION_TYPE,
            mbr_active: true,
            gpt_type: GPT_PARTITION_TYPE.into(),
            gpt_name: GPT_PARTITION_NAME.into(),
        }
    }

    /// An EFI System Partition: MBR `0xEF`, not active; GPT EFI System named `name`.
    pub fn efi_system(name: &str) -> PartitionType {
        PartitionType {
            mbr_type: MBR_ESP_TYPE,
            mbr_active: false,
            gpt_type: GPT_ESP_TYPE.into(),
            gpt_name: name.into(),
        }
    }
}

/// How large a partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    /// This many bytes, rounded up to whole MiB.
    Bytes(u64),
    /// Whatever the other partitions leave of the disk, rounded down to whole MiB (at
    /// most one partition of a layout).
    Rest,
}

/// The file system of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSystem {
    /// FAT32 written by `mediabuild-fat32` with these parameters (`hidden_sectors` is
    /// replaced by the partition's start LBA). Its files are given to
    /// [`plan_image`](crate::plan_image) and [`write_image`](crate::write_image).
    Fat32(FatParams),
}

impl FileSystem {
    /// Smallest partition this file system can be made in (FAT32: the 65525 clusters
    /// UEFI firmware requires).
    pub fn min_bytes(&self) -> u64 {
        match self {
            FileSystem::Fat32(_) => fat32::min_volume_bytes(),
        }
    }
}

impl Layout {
    /// The media layout `single`: one FAT32 partition of type [`PartitionType::media`]
    /// filling the disk.
    pub fn single(params: FatParams) -> Layout {
        Layout {
            partitions: vec![PartitionSpec {
                kind: PartitionType::media(),
                size: SizeRule::Rest,
                fs: FileSystem::Fat32(params),
            }],
        }
    }

    /// Smallest disk (a whole number of MiB) on which [`layout`] gives the partition
    /// sized [`SizeRule::Rest`] at least `rest_bytes_needed` bytes (without such a
    /// partition: the smallest disk that holds the fixed ones).
    pub fn min_disk_bytes(&self, scheme: Scheme, rest_bytes_needed: u64) -> u64 {
        min_disk(scheme, self.partitions.iter(), rest_bytes_needed)
    }
}

fn round_up(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGNMENT).saturating_mul(ALIGNMENT)
}

fn min_disk<'a>(
    scheme: Scheme,
    partitions: impl Iterator<Item = &'a PartitionSpec>,
    rest_bytes_needed: u64,
) -> u64 {
    let mut total = ALIGNMENT;
    for p in partitions {
        total = total.saturating_add(match p.size {
            SizeRule::Bytes(n) => round_up(n),
            SizeRule::Rest => round_up(rest_bytes_needed.max(1)),
        });
    }
    let tail = match scheme {
        Scheme::Mbr => 0,
        Scheme::Gpt => ALIGNMENT,
    };
    total.saturating_add(tail)
}

/// A partition of a [`Layout`] placed on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPartition {
    /// Its number in the table, from 1 (the MBR entry, the GPT entry).
    pub number: u32,
    /// Start in bytes (a MiB multiple).
    pub start: u64,
    /// Size in bytes (a whole number of MiB).
    pub bytes: u64,
    /// What the layout says of it.
    pub spec: PartitionSpec,
}

impl PlacedPartition {
    /// First LBA (also the FAT's hidden-sectors value).
    pub fn start_lba(&self) -> u64 {
        self.start / SECTOR
    }

    /// Length in sectors.
    pub fn sectors(&self) -> u64 {
        self.bytes / SECTOR
    }

    /// First byte after it.
    pub fn end(&self) -> u64 {
        self.start + self.bytes
    }
}

/// A [`Layout`] placed on a disk of a given size and scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// The scheme this layout was computed for.
    pub scheme: Scheme,
    /// Size of the image file.
    pub disk_bytes: u64,
    /// The partitions in disk order.
    pub partitions: Vec<PlacedPartition>,
}

impl DiskLayout {
    /// Disk length in sectors.
    pub fn disk_sectors(&self) -> u64 {
        self.disk_bytes / SECTOR
    }

    /// See [`Layout::min_disk_bytes`].
    pub fn min_disk_bytes(&self, rest_bytes_needed: u64) -> u64 {
        min_disk(
            self.scheme,
            self.partitions.iter().map(|p| &p.spec),
            rest_bytes_needed,
        )
    }
}

/// What is wrong with a layout itself, whatever the disk size.
fn check_spec(scheme: Scheme, spec: &Layout) -> Result<(), String> {
    let n = spec.partitions.len();
    if n == 0 {
        return Err("it has no partition".into());
    }
    let max = match scheme {
        Scheme::Mbr => MBR_MAX_PARTITIONS,
        Scheme::Gpt => GPT_MAX_PARTITIONS,
    };
    if n > max {
        return Err(format!(
            "it has {n} partitions; {scheme} holds at most {max}"
        ));
    }
    let rest = spec
        .partitions
        .iter()
        .filter(|p| p.size == SizeRule::Rest)
        .count();
    if rest > 1 {
        return Err(format!(
            "{rest} partitions take the rest of the disk; at most one can"
        ));
    }
    for (i, p) in spec.partitions.iter().enumerate() {
        let number = i + 1;
        if let SizeRule::Bytes(b) = p.size {
            let min = p.fs.min_bytes();
            if round_up(b) < min {
                return Err(format!(
                    "partition {number} is {b} bytes; its file system needs at least {min}"
                ));
            }
        }
        match scheme {
            Scheme::Mbr if p.kind.mbr_type == 0 || p.kind.mbr_type == 0xEE => {
                return Err(format!(
                    "partition {number} has the MBR type 0x{:02X}, which does not mark a partition",
                    p.kind.mbr_type
                ));
            }
            Scheme::Gpt => {
                let t = &p.kind.gpt_type;
                let hex_ok = t.len() == 36
                    && t.char_indices().all(|(i, c)| {
                        if [8, 13, 18, 23].contains(&i) {
                            c == '-'
                        } else {
                            c.is_ascii_hexdigit()
                        }
                    });
                if !hex_ok || t.chars().all(|c| c == '0' || c == '-') {
                    return Err(format!(
                        "partition {number} has the GPT type {t:?}, not a partition type GUID"
                    ));
                }
                if p.kind.gpt_name.encode_utf16().count() > GPT_NAME_UNITS {
                    return Err(format!(
                        "partition {number} has the GPT name {:?}, longer than 36 characters",
                        p.kind.gpt_name
                    ));
                }
            }
            Scheme::Mbr => {}
        }
    }
    Ok(())
}

/// Places `spec` on a `disk_bytes` disk; errors when the layout itself is invalid, the
/// disk is not whole sectors, too small for the partitions (a FAT32 partition needs
/// 65525 clusters) or (MBR) larger than 2 TiB.
pub fn layout(scheme: Scheme, disk_bytes: u64, spec: &Layout) -> Result<DiskLayout, DiskError> {
    check_spec(scheme, spec).map_err(|reason| DiskError::InvalidLayout { scheme, reason })?;
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
    let fixed: u64 = spec
        .partitions
        .iter()
        .map(|p| match p.size {
            SizeRule::Bytes(b) => round_up(b),
            SizeRule::Rest => 0,
        })
        .fold(0, u64::saturating_add);
    let rest_bytes = end.saturating_sub(ALIGNMENT).saturating_sub(fixed) / ALIGNMENT * ALIGNMENT;
    let mut partitions = Vec::with_capacity(spec.partitions.len());
    let mut start = ALIGNMENT;
    for (i, p) in spec.partitions.iter().enumerate() {
        let bytes = match p.size {
            SizeRule::Bytes(b) => round_up(b),
            SizeRule::Rest => {
                let min = p.fs.min_bytes();
                if rest_bytes < min {
                    return Err(DiskError::TooSmall {
                        scheme,
                        disk_bytes,
                        min_disk_bytes: spec.min_disk_bytes(scheme, min),
                    });
                }
                rest_bytes
            }
        };
        partitions.push(PlacedPartition {
            number: i as u32 + 1,
            start,
            bytes,
            spec: p.clone(),
        });
        start = start.saturating_add(bytes);
    }
    if start > end {
        return Err(DiskError::TooSmallForLayout {
            scheme,
            disk_bytes,
            partitions: spec.partitions.len(),
            min_disk_bytes: spec.min_disk_bytes(scheme, 0),
        });
    }
    Ok(DiskLayout {
        scheme,
        disk_bytes,
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn params() -> FatParams {
        FatParams {
            volume_id: 1,
            label: "T".into(),
            hidden_sectors: 0,
            epoch: 0,
        }
    }

    fn single() -> Layout {
        Layout::single(params())
    }

    /// Only the partition of the single layout.
    fn one(scheme: Scheme, disk_bytes: u64) -> Result<PlacedPartition, DiskError> {
        let l = layout(scheme, disk_bytes, &single())?;
        assert_eq!(l.partitions.len(), 1);
        Ok(l.partitions[0].clone())
    }

    /// A small ESP-typed FAT32 partition, then a data partition filling the rest.
    fn two() -> Layout {
        Layout {
            partitions: vec![
                PartitionSpec {
                    kind: PartitionType::efi_system("EFI"),
                    size: SizeRule::Bytes(40 * MIB),
                    fs: FileSystem::Fat32(params()),
                },
                PartitionSpec {
                    kind: PartitionType::media(),
                    size: SizeRule::Rest,
                    fs: FileSystem::Fat32(params()),
                },
            ],
        }
    }

    #[test]
    fn mbr_fills_the_disk() {
        let p = one(Scheme::Mbr, 301 * MIB).unwrap();
        assert_eq!((p.number, p.start, p.bytes), (1, MIB, 300 * MIB));
        assert_eq!((p.start_lba(), p.sectors()), (2048, 614_400));
        assert_eq!(p.spec, single().partitions[0]);
        // A disk that is not whole MiB: the partition is rounded down.
        let p = one(Scheme::Mbr, 301 * MIB + 4096).unwrap();
        assert_eq!(p.bytes, 300 * MIB);
    }

    #[test]
    fn gpt_leaves_room_for_the_backup() {
        let l = layout(Scheme::Gpt, 302 * MIB, &single()).unwrap();
        let p = &l.partitions[0];
        assert_eq!(p.bytes, 300 * MIB);
        let last_partition_lba = p.start_lba() + p.sectors() - 1;
        let last_usable_lba = l.disk_sectors() - 34;
        assert!(last_partition_lba <= last_usable_lba);
        // 33 sectors more than a MiB are enough for the partition to keep its size.
        let p = one(Scheme::Gpt, 301 * MIB + 33 * 512).unwrap();
        assert_eq!(p.bytes, 300 * MIB);
        let p = one(Scheme::Gpt, 301 * MIB + 32 * 512).unwrap();
        assert_eq!(p.bytes, 299 * MIB);
    }

    #[test]
    fn min_disk_round_trips() {
        for spec in [single(), two()] {
            for scheme in [Scheme::Mbr, Scheme::Gpt] {
                for need in [1u64, 34_089_472, 300 * MIB, 300 * MIB + 1, 5000 * MIB - 7] {
                    let need = need.max(fat32::min_volume_bytes());
                    let disk = spec.min_disk_bytes(scheme, need);
                    assert_eq!(disk % MIB, 0);
                    let l = layout(scheme, disk, &spec).unwrap();
                    let rest = l.partitions.last().unwrap();
                    assert!(rest.bytes >= need, "{scheme} {need}");
                    assert_eq!(l.min_disk_bytes(need), disk);
                    if let Ok(smaller) = layout(scheme, disk - MIB, &spec) {
                        assert!(
                            smaller.partitions.last().unwrap().bytes < need,
                            "{scheme} {need}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn partitions_follow_each_other_aligned() {
        for scheme in [Scheme::Mbr, Scheme::Gpt] {
            let l = layout(scheme, 200 * MIB, &two()).unwrap();
            let [esp, data] = &l.partitions[..] else {
                panic!("{l:?}")
            };
            assert_eq!((esp.number, esp.start, esp.bytes), (1, MIB, 40 * MIB));
            assert_eq!((data.number, data.start), (2, 41 * MIB));
            let tail = if scheme == Scheme::Gpt { MIB } else { 0 };
            assert_eq!(data.end(), 200 * MIB - tail, "{scheme}");
            assert_eq!(esp.spec.kind.mbr_type, 0xEF);
        }
        // A fixed size is rounded up to whole MiB.
        let mut spec = two();
        spec.partitions[0].size = SizeRule::Bytes(40 * MIB + 1);
        let l = layout(Scheme::Mbr, 200 * MIB, &spec).unwrap();
        assert_eq!(l.partitions[0].bytes, 41 * MIB);
        assert_eq!(l.partitions[1].start, 42 * MIB);
        // Only fixed sizes: the disk may be larger than they are.
        spec.partitions[1].size = SizeRule::Bytes(50 * MIB);
        let l = layout(Scheme::Gpt, 200 * MIB, &spec).unwrap();
        assert_eq!(l.partitions[1].end(), 92 * MIB);
        assert_eq!(spec.min_disk_bytes(Scheme::Gpt, 0), 93 * MIB);
        assert!(layout(Scheme::Gpt, 93 * MIB, &spec).is_ok());
        let e = layout(Scheme::Gpt, 92 * MIB, &spec)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot hold the 2 partitions"), "{e}");
        assert!(e.ends_with("at least 97517568 bytes (93.0 MiB)"), "{e}");
    }

    #[test]
    fn invalid_layouts() {
        let check = |scheme, spec: &Layout, want: &str| {
            let e = layout(scheme, 4096 * MIB, spec).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        check(Scheme::Mbr, &Layout { partitions: vec![] }, "no partition");
        let five = Layout {
            partitions: vec![two().partitions[0].clone(); 5],
        };
        check(Scheme::Mbr, &five, "5 partitions; MBR holds at most 4");
        assert!(layout(Scheme::Gpt, 4096 * MIB, &five).is_ok());
        let mut rests = two();
        rests.partitions[0].size = SizeRule::Rest;
        check(Scheme::Gpt, &rests, "2 partitions take the rest");
        let mut tiny = two();
        tiny.partitions[0].size = SizeRule::Bytes(MIB);
        check(Scheme::Mbr, &tiny, "partition 1 is 1048576 bytes");
        let mut bad = two();
        bad.partitions[1].kind.gpt_type = "EFI".into();
        check(Scheme::Gpt, &bad, "not a partition type GUID");
        assert!(layout(Scheme::Mbr, 4096 * MIB, &bad).is_ok());
        let mut long = two();
        long.partitions[1].kind.gpt_name = "x".repeat(37);
        check(Scheme::Gpt, &long, "longer than 36");
        let mut zero = two();
        zero.partitions[1].kind.mbr_type = 0;
        check(Scheme::Mbr, &zero, "MBR type 0x00");
    }

    #[test]
    fn errors() {
        let s = single();
        let e = layout(Scheme::Mbr, 100 * MIB + 1, &s)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "disk size 104857601 bytes is not a multiple of 512-byte sectors; \
             use 104857600 or 104858112 bytes"
        );
        let e = layout(Scheme::Gpt, 34 * MIB, &s).unwrap_err().to_string();
        assert!(
            e.starts_with("a GPT disk of 35651584 bytes (34.0 MiB) is too small"),
            "{e}"
        );
        assert!(e.ends_with("at least 36700160 bytes (35.0 MiB)"), "{e}");
        assert!(layout(Scheme::Mbr, 34 * MIB, &s).is_ok());
        assert!(layout(Scheme::Mbr, 33 * MIB, &s).is_err());
        let e = layout(Scheme::Mbr, 3 << 40, &s).unwrap_err().to_string();
        assert!(e.contains("use GPT"), "{e}");
        assert!(layout(Scheme::Mbr, 2 << 40, &s).is_ok());
        assert!(layout(Scheme::Gpt, 3 << 40, &s).is_ok());
        // The rest of a two-partition disk too small for FAT32: the minimum counts
        // the fixed partition.
        let e = layout(Scheme::Mbr, 60 * MIB, &two()).unwrap_err();
        let DiskError::TooSmall { min_disk_bytes, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(
            min_disk_bytes,
            two().min_disk_bytes(Scheme::Mbr, fat32::min_volume_bytes())
        );
        assert!(layout(Scheme::Mbr, min_disk_bytes, &two()).is_ok());
    }
}
