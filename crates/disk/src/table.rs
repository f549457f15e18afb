//! Partition tables: a classic MBR through `mbrman`, or a protective MBR plus primary
//! and backup GPT through `gpt`, one entry per partition of the layout, every
//! identifier taken from [`DiskIds`].

use std::collections::BTreeMap;
use std::io::{Cursor, Seek, Write};
use std::path::Path;
use std::str::FromStr;

use mbrman::{MBRHeader, MBRPartitionEntry, CHS};

use mediabuild_ids::guid_string;

use super::{DiskError, DiskIds, DiskLayout, Scheme};

/// CHS translation used by BIOSes for LBA disks: 255 heads, 63 sectors per track.
const HEADS: u64 = 255;
const SECTORS_PER_TRACK: u64 = 63;

/// The partition table of `layout` as byte runs `(offset, bytes)`, sorted and
/// disjoint: the MBR (and primary GPT) before the first partition, the backup GPT
/// after the last. Rendering into memory lets the image be written front to back.
pub(crate) fn table_runs(
    path: &Path,
    layout: &DiskLayout,
    ids: &DiskIds,
) -> Result<Vec<(u64, Vec<u8>)>, DiskError> {
    let fail = |message: String| DiskError::PartitionTable {
        scheme: layout.scheme,
        path: path.to_path_buf(),
        message,
    };
    let mut disk = Overlay::new(layout.disk_bytes);
    match layout.scheme {
        Scheme::Mbr => {
            let entries: Vec<MbrEntry> = layout
                .partitions
                .iter()
                .map(|p| MbrEntry {
                    start_lba: p.start_lba(),
                    sectors: p.sectors(),
                    partition_type: p.spec.kind.mbr_type,
                    active: p.spec.kind.mbr_active,
                })
                .collect();
            let sector = mbr_sector(&entries, ids.mbr_signature).map_err(fail)?;
            disk.writes.push((0, sector.to_vec()));
        }
        Scheme::Gpt => write_gpt(&mut disk, layout, ids).map_err(fail)?,
    }
    Ok(disk.runs())
}

/// A disk of `len` zero bytes in memory that records what is written to it.
#[derive(Debug)]
struct Overlay {
    len: u64,
    pos: u64,
    writes: Vec<(u64, Vec<u8>)>,
}

impl Overlay {
    fn new(len: u64) -> Overlay {
        Overlay {
            len,
            pos: 0,
            writes: Vec::new(),
        }
    }

    /// The written bytes as sorted, disjoint runs (later writes win).
    fn runs(&self) -> Vec<(u64, Vec<u8>)> {
        let mut spans: Vec<(u64, u64)> = self
            .writes
            .iter()
            .map(|(o, b)| (*o, *o + b.len() as u64))
            .filter(|(s, e)| e > s)
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
            .into_iter()
            .map(|(s, e)| {
                let mut run = vec![0u8; (e - s) as usize];
                self.overlay(s, &mut run);
                (s, run)
            })
            .collect()
    }

    /// Puts the recorded writes that overlap `[at, at + buf.len())` into `buf`.
    fn overlay(&self, at: u64, buf: &mut [u8]) {
        let end = at + buf.len() as u64;
        for (o, b) in &self.writes {
            let (s, e) = (*o.max(&at), (*o + b.len() as u64).min(end));
            if s < e {
                buf[(s - at) as usize..(e - at) as usize]
                    .copy_from_slice(&b[(s - o) as usize..(e - o) as usize]);
            }
        }
    }
}

impl std::io::Read for Overlay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        buf[..n].fill(0);
        self.overlay(self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Overlay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writes.push((self.pos, buf.to_vec()));
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Overlay {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(n) => i128::from(n),
            std::io::SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
            std::io::SeekFrom::End(d) => i128::from(self.len) + i128::from(d),
        };
        self.pos = u64::try_from(target).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// One primary partition of a classic MBR.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MbrEntry {
    pub start_lba: u64,
    pub sectors: u64,
    pub partition_type: u8,
    pub active: bool,
}

/// A whole MBR sector with up to four primary partitions (entry `i` in slot `i + 1`),
/// CHS fields filled in as fdisk does.
pub(crate) fn mbr_sector(entries: &[MbrEntry], signature: u32) -> Result<[u8; 512], String> {
    if entries.len() > 4 {
        return Err(format!(
            "{} partitions; an MBR holds at most 4 primary partitions",
            entries.len()
        ));
    }
    let mut header = MBRHeader::new(signature.to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let (start_lba, sectors) = (e.start_lba, e.sectors);
        let too_large = || format!("partition {start_lba}+{sectors} exceeds 32-bit sector numbers");
        let start = u32::try_from(start_lba).map_err(|_| too_large())?;
        let count = u32::try_from(sectors).map_err(|_| too_large())?;
        if count == 0 {
            return Err(format!("partition {} has no sectors", i + 1));
        }
        let entry = MBRPartitionEntry {
            boot: if e.active { 0x80 } else { 0x00 },
            first_chs: chs(start_lba),
            sys: e.partition_type,
            last_chs: chs(start_lba + sectors - 1),
            starting_lba: start,
            sectors: count,
        };
        *match i {
            0 => &mut header.partition_1,
            1 => &mut header.partition_2,
            2 => &mut header.partition_3,
            _ => &mut header.partition_4,
        } = entry;
    }
    let mut cursor = Cursor::new(vec![0u8; 512]);
    header.write_into(&mut cursor).map_err(|e| e.to_string())?;
    let bytes = cursor.into_inner();
    let mut sector = [0u8; 512];
    sector.copy_from_slice(&bytes[..512]);
    Ok(sector)
}

/// CHS address of an LBA with 255×63 translation; beyond cylinder 1023 the conventional
/// "too large" value 1023/254/63.
fn chs(lba: u64) -> CHS {
    let per_cylinder = HEADS * SECTORS_PER_TRACK;
    let cylinder = lba / per_cylinder;
    if cylinder > 1023 {
        return CHS::new(1023, 254, 63);
    }
    let rest = lba % per_cylinder;
    CHS::new(
        cylinder as u16,
        (rest / SECTORS_PER_TRACK) as u8,
        (rest % SECTORS_PER_TRACK + 1) as u8,
    )
}

/// Protective MBR, primary GPT (LBA 1–33) and backup GPT (last 33 sectors).
fn write_gpt(file: &mut Overlay, layout: &DiskLayout, ids: &DiskIds) -> Result<(), String> {
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(&mut *file, Some(parse_guid(&ids.disk_guid)?))
        .map_err(|e| e.to_string())?;
    let mut partitions = BTreeMap::new();
    for p in &layout.partitions {
        let part_type_guid: gpt::partition_types::Type =
            p.spec.kind.gpt_type.parse().map_err(|e| {
                format!(
                    "partition {}: type {:?}: {e}",
                    p.number, p.spec.kind.gpt_type
                )
            })?;
        let partition = gpt::partition::Partition {
            part_type_guid,
            // Set here, not by `add_partition`, which would draw a random GUID.
            part_guid: parse_guid(&ids.partition_guid(p.number))?,
            first_lba: p.start_lba(),
            last_lba: p.start_lba() + p.sectors() - 1,
            flags: 0,
            name: p.spec.kind.gpt_name.clone(),
        };
        partitions.insert(p.number, partition);
    }
    disk.update_partitions(partitions)
        .map_err(|e| e.to_string())?;
    disk.write().map_err(|e| e.to_string())?;
    // `GptDisk::write` leaves LBA 0 alone: add the protective MBR covering the disk.
    let covered = u32::try_from(layout.disk_sectors() - 1).unwrap_or(u32::MAX);
    let mut mbr = gpt::mbr::ProtectiveMBR::with_lb_size(covered);
    mbr.set_disk_signature(ids.mbr_signature.to_le_bytes());
    mbr.overwrite_lba0(file).map_err(|e| e.to_string())?;
    Ok(())
}

/// The `gpt` crate's GUID type, built from its text form so that this crate needs no
/// direct dependency on `uuid`.
fn parse_guid<T: FromStr>(bytes: &[u8; 16]) -> Result<T, String> {
    let text = guid_string(bytes);
    text.parse()
        .map_err(|_| format!("cannot parse GUID {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn worked_example_mbr_is_golden() {
        // fat32-format.md §13: type 0xEF, not active, 2048 + 614 400, signature 0x1234ABCD.
        let esp = MbrEntry {
            start_lba: 2048,
            sectors: 614_400,
            partition_type: 0xEF,
            active: false,
        };
        let sector = mbr_sector(&[esp], 0x1234_ABCD).unwrap();
        assert_eq!(&sector[440..444], &[0xCD, 0xAB, 0x34, 0x12]);
        assert_eq!(
            &sector[446..462],
            &[
                0x00, 0x20, 0x21, 0x00, 0xEF, 0x5E, 0x38, 0x26, 0x00, 0x08, 0x00, 0x00, 0x00, 0x60,
                0x09, 0x00
            ]
        );
        let hash: String = Sha256::digest(sector)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hash,
            "b0e062e39223a2fc87ade864585c650e2aa94aef5fb52b72e8f1f48f6c6603fb"
        );
    }

    fn media(start_lba: u64, sectors: u64) -> MbrEntry {
        MbrEntry {
            start_lba,
            sectors,
            partition_type: crate::MBR_PARTITION_TYPE,
            active: true,
        }
    }

    #[test]
    fn media_mbr_entry() {
        let sector = mbr_sector(&[media(2048, 67_106_816)], 7).unwrap();
        assert_eq!(sector[446], 0x80);
        assert_eq!(sector[450], 0x0C);
        // End beyond cylinder 1023: CHS 1023/254/63 = FE FF FF.
        assert_eq!(&sector[451..454], &[0xFE, 0xFF, 0xFF]);
        assert_eq!(&sector[462..510], &[0u8; 48][..], "entries 2-4 stay empty");
        assert_eq!(&sector[510..], &[0x55, 0xAA]);
        assert!(mbr_sector(&[media(2048, 1 << 32)], 0).is_err());
    }

    #[test]
    fn mbr_entries_fill_their_slots_in_order() {
        let esp = MbrEntry {
            start_lba: 2048,
            sectors: 81_920,
            partition_type: 0xEF,
            active: false,
        };
        let sector = mbr_sector(&[esp, media(83_968, 100_000)], 9).unwrap();
        assert_eq!((sector[446], sector[450]), (0x00, 0xEF));
        assert_eq!((sector[462], sector[466]), (0x80, 0x0C));
        assert_eq!(&sector[470..474], &83_968u32.to_le_bytes());
        assert_eq!(&sector[474..478], &100_000u32.to_le_bytes());
        assert_eq!(&sector[478..510], &[0u8; 32][..]);
        // The first entry alone is what a one-entry MBR holds.
        let one = mbr_sector(&[esp], 9).unwrap();
        assert_eq!(&sector[..462], &one[..462]);
        assert!(mbr_sector(&[esp; 5], 9).is_err());
        assert!(mbr_sector(&[media(2048, 0)], 9).is_err());
    }
}
