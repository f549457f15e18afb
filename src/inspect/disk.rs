//! A raw disk image read back without its recipe: the partition table (MBR
//! through `mbrman`, GPT through `gpt`), the FAT32 volume through a window
//! limited to the partition (`fatfs` for names and contents), and our own
//! consistency walk of the FAT (`fatcheck`). Nothing here writes.

use super::fatcheck;
use super::InspectError;
use crate::render::disk::Window;
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One partition of the table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartitionFacts {
    pub number: u32,
    /// Byte offset and length.
    pub start: u64,
    pub size: u64,
    /// MBR type byte (`0x0C`) or GPT type GUID.
    pub r#type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
}

/// The partition table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableFacts {
    /// `mbr` or `gpt`.
    pub scheme: String,
    /// MBR disk signature (hex) or GPT disk GUID.
    pub disk_id: String,
    pub partitions: Vec<PartitionFacts>,
}

/// The file system of the media partition.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FsFacts {
    pub r#type: String,
    pub label: String,
    pub volume_id: String,
    pub cluster_size: u32,
    pub clusters: u32,
    pub free_clusters: u32,
}

/// An opened disk image: where its media partition is.
pub struct DiskImage {
    path: PathBuf,
    pub len: u64,
    pub table: TableFacts,
    part_start: u64,
    part_len: u64,
    /// Structural problems found while opening (a truncated image, a table
    /// pointing past the end).
    pub problems: Vec<String>,
}

type Fs = fatfs::FileSystem<Window>;

impl DiskImage {
    pub fn open(path: &Path) -> Result<DiskImage, InspectError> {
        let io = |e| InspectError::io("read", path, e);
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let mbr = mbrman::MBR::read_from(&mut f, 512).map_err(|e| InspectError::Damaged {
            path: path.to_path_buf(),
            what: format!("cannot read the MBR: {e}"),
        })?;
        let mut problems = Vec::new();
        let protective = mbr.iter().any(|(_, p)| p.is_used() && p.sys == 0xEE);
        let table = if protective {
            gpt_table(&mut f, path, &mut problems)?
        } else {
            let partitions = mbr
                .iter()
                .filter(|(_, p)| p.is_used())
                .map(|(i, p)| PartitionFacts {
                    number: i as u32,
                    start: u64::from(p.starting_lba) * 512,
                    size: u64::from(p.sectors) * 512,
                    r#type: format!("0x{:02X}", p.sys),
                    active: Some(p.is_active()),
                    name: None,
                    guid: None,
                })
                .collect();
            TableFacts {
                scheme: "mbr".into(),
                disk_id: format!("0x{:08X}", u32::from_le_bytes(mbr.header.disk_signature)),
                partitions,
            }
        };
        let Some(first) = table.partitions.first().cloned() else {
            return Err(InspectError::Damaged {
                path: path.to_path_buf(),
                what: "the partition table has no partition".into(),
            });
        };
        for p in &table.partitions {
            if p.start + p.size > len {
                problems.push(format!(
                    "partition {} ends at byte {} but the image has only {len} bytes: the image is truncated",
                    p.number,
                    p.start + p.size
                ));
            }
        }
        Ok(DiskImage {
            path: path.to_path_buf(),
            len,
            part_start: first.start,
            part_len: first.size,
            table,
            problems,
        })
    }

    fn window(&self) -> Result<Window, String> {
        let f = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        Ok(Window::new(f, self.part_start, self.part_len))
    }

    fn fs(&self) -> Result<Fs, String> {
        fatfs::FileSystem::new(self.window()?, fatfs::FsOptions::new())
            .map_err(|e| format!("not a readable FAT volume: {e}"))
    }

    /// Facts of the volume (label, id, clusters).
    pub fn fs_facts(&self) -> Result<FsFacts, String> {
        let fs = self.fs()?;
        let stats = fs.stats().map_err(|e| e.to_string())?;
        Ok(FsFacts {
            r#type: format!("{:?}", fs.fat_type()).to_uppercase(),
            label: fs.volume_label().trim_end().to_string(),
            volume_id: format!("{:08X}", fs.volume_id()),
            cluster_size: stats.cluster_size(),
            clusters: stats.total_clusters(),
            free_clusters: stats.free_clusters(),
        })
    }

    /// Every file of the volume: (path, size), sorted by path.
    pub fn list(&self) -> Result<Vec<(String, u64)>, String> {
        let fs = self.fs()?;
        let mut out = Vec::new();
        walk(fs.root_dir(), "", 0, &mut out)?;
        out.sort();
        Ok(out)
    }

    /// Streams the file at `path` into `sink` (the volume is case-insensitive).
    pub fn read_into(&self, path: &str, sink: &mut dyn std::io::Write) -> Result<u64, String> {
        let fs = self.fs()?;
        let mut f = fs.root_dir().open_file(path).map_err(|e| e.to_string())?;
        std::io::copy(&mut f, sink).map_err(|e| format!("cannot read: {e}"))
    }

    /// Our own walk of every directory and cluster chain of the FAT.
    pub fn fat_check(&self) -> Vec<String> {
        match self.window() {
            Ok(mut w) => fatcheck::check(&mut w),
            Err(e) => vec![e],
        }
    }
}

fn walk<T: fatfs::ReadWriteSeek>(
    dir: fatfs::Dir<T>,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, u64)>,
) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("{prefix}: directories nested deeper than 64"));
    }
    for e in dir.iter() {
        let e = e.map_err(|e| format!("{prefix}/: cannot read the directory: {e}"))?;
        let name = e.file_name();
        if name == "." || name == ".." || e.attributes().contains(fatfs::FileAttributes::VOLUME_ID)
        {
            continue;
        }
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if e.is_dir() {
            walk(e.to_dir(), &path, depth + 1, out)?;
        } else {
            out.push((path, e.len()));
        }
    }
    Ok(())
}

fn gpt_table(
    f: &mut std::fs::File,
    path: &Path,
    problems: &mut Vec<String>,
) -> Result<TableFacts, InspectError> {
    f.seek(SeekFrom::Start(0))
        .map_err(|e| InspectError::io("read", path, e))?;
    let disk = gpt::GptConfig::new()
        .writable(false)
        .only_valid_headers(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open_from_device(&mut *f)
        .map_err(|e| InspectError::Damaged {
            path: path.to_path_buf(),
            what: format!("cannot read the GPT: {e}"),
        })?;
    if disk.primary_header().is_err() {
        problems.push("the primary GPT header is damaged".into());
    }
    if disk.backup_header().is_err() {
        problems.push(
            "the backup GPT header (at the end of the disk) is missing or damaged: the image may be truncated"
                .into(),
        );
    }
    let partitions = disk
        .partitions()
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p)| PartitionFacts {
            number: *n,
            start: p.first_lba * 512,
            size: (p.last_lba + 1 - p.first_lba) * 512,
            r#type: p.part_type_guid.guid.to_string().to_uppercase(),
            active: None,
            name: Some(p.name.clone()),
            guid: Some(p.part_guid.to_string().to_uppercase()),
        })
        .collect();
    Ok(TableFacts {
        scheme: "gpt".into(),
        disk_id: disk.guid().to_string().to_uppercase(),
        partitions,
    })
}

/// Whether `path` starts like a disk image (an MBR boot signature).
pub fn looks_like_disk(head: &[u8]) -> bool {
    head.len() >= 512 && head[510] == 0x55 && head[511] == 0xAA
}

/// Reads up to `n` bytes from the start of `path`.
pub fn head(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(n);
    f.by_ref().take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}
