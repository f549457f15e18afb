//! A raw disk image read back without its recipe: the partition table (MBR
//! through `mbrman`, GPT through `gpt`), the FAT32 volume through a window
//! limited to the partition (`fatfs` for names and contents), and our own
//! consistency walk of the FAT (`fatcheck`). Both read through a block cache
//! (`blockread`): the image is read in large calls, never field by field.
//! Nothing here writes.

use super::fatcheck;
use super::InspectError;
use crate::fsutil::blockread::{BlockReader, ReadAt};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
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

type Reader = BlockReader<std::fs::File>;
type Fs = fatfs::FileSystem<Reader>;

/// Called with a file's index and its content, or why it cannot be opened.
pub type Visit<'a> = dyn FnMut(usize, Result<&mut dyn Read, String>) + 'a;

impl DiskImage {
    pub fn open(path: &Path) -> Result<DiskImage, InspectError> {
        let io = |e| InspectError::io("read", path, e);
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let damaged = |what: String| InspectError::Damaged {
            path: path.to_path_buf(),
            what,
        };
        let mbr = read_mbr(&mut f).map_err(damaged)?;
        let mut problems = Vec::new();
        let protective = mbr.entries.iter().any(|e| e.sys == 0xEE);
        let table = if protective {
            // A third-party reader: whatever it meets, a damaged table is an
            // error of the image, never a crash of the tool.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                gpt_table(&mut f, path, &mut problems)
            }));
            match read {
                Ok(t) => t?,
                Err(_) => return Err(damaged("cannot read the GPT: it is malformed".into())),
            }
        } else {
            let partitions = mbr
                .entries
                .iter()
                .map(|e| PartitionFacts {
                    number: e.number,
                    start: u64::from(e.start) * 512,
                    size: u64::from(e.sectors) * 512,
                    r#type: format!("0x{:02X}", e.sys),
                    active: Some(e.status == 0x80),
                    name: None,
                    guid: None,
                })
                .collect();
            TableFacts {
                scheme: "mbr".into(),
                disk_id: format!("0x{:08X}", mbr.disk_id),
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

    fn window(&self) -> Result<Reader, String> {
        let f = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        Ok(BlockReader::new(f, self.part_start, self.part_len))
    }

    fn fs(&self) -> Result<Fs, String> {
        open_fs(self.window()?)
    }

    /// Facts of the volume (label, id, clusters).
    pub fn fs_facts(&self) -> Result<FsFacts, String> {
        guarded(|| self.fs_facts_unguarded())
    }

    fn fs_facts_unguarded(&self) -> Result<FsFacts, String> {
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
        guarded(|| list_fs(&self.fs()?))
    }

    /// Streams each file of `paths` (as [`DiskImage::list`] gives them) to
    /// `visit` with its index in `paths`, in one walk of the volume (see
    /// [`read_each`]); `visit` gets why when a file cannot be opened.
    pub fn read_each(&self, paths: &[&str], visit: &mut Visit<'_>) -> Result<(), String> {
        guarded(|| {
            read_each(&self.fs()?, paths, visit);
            Ok(())
        })
    }

    /// Streams the file at `path` into `sink` (the volume is case-insensitive).
    pub fn read_into(&self, path: &str, sink: &mut dyn std::io::Write) -> Result<u64, String> {
        guarded(|| {
            let fs = self.fs()?;
            let mut f = fs.root_dir().open_file(path).map_err(|e| e.to_string())?;
            std::io::copy(&mut f, sink).map_err(|e| format!("cannot read: {e}"))
        })
    }

    /// Our own walk of every directory and cluster chain of the FAT.
    pub fn fat_check(&self) -> Vec<String> {
        match self.window() {
            Ok(mut w) => fatcheck::check(&mut w),
            Err(e) => vec![e],
        }
    }
}

/// `fatfs` is a third-party reader: whatever it meets in a damaged volume
/// (the fuzz target found an arithmetic overflow on a crafted cluster
/// number), a panic inside it is an error of the volume, never a crash of
/// the tool. Our own check (`fatcheck`) says what is wrong.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!(
            "the FAT volume is malformed (the FAT reader stopped: {why})"
        ))
    })
}

fn open_fs<S: ReadAt>(r: BlockReader<S>) -> Result<fatfs::FileSystem<BlockReader<S>>, String> {
    fatfs::FileSystem::new(r, fatfs::FsOptions::new())
        .map_err(|e| format!("not a readable FAT volume: {e}"))
}

fn list_fs<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    walk(fs.root_dir(), "", 0, &mut out)?;
    out.sort();
    Ok(out)
}

/// Every file of the volume met in one breadth-first walk, its content
/// streamed to `visit` as it is met: each directory is read once, and the
/// FAT32 writer lays files out in this order, so the reads run forward. The
/// rest of a directory that cannot be read is skipped; deeper than 64 is
/// not walked.
fn each_file<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    visit: &mut dyn FnMut(&str, &mut dyn Read),
) {
    let mut queue = VecDeque::from([(String::new(), fs.root_dir(), 0usize)]);
    while let Some((prefix, dir, depth)) = queue.pop_front() {
        for e in dir.iter() {
            let Ok(e) = e else { break };
            let name = e.file_name();
            if name == "."
                || name == ".."
                || e.attributes().contains(fatfs::FileAttributes::VOLUME_ID)
            {
                continue;
            }
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if e.is_dir() {
                if depth < 64 {
                    queue.push_back((path, e.to_dir(), depth + 1));
                }
            } else {
                visit(&path, &mut e.to_file());
            }
        }
    }
}

/// Streams each file of `paths` to `visit(index, content)`: those met in one
/// walk of the volume ([`each_file`]) as they are met, then any other (in an
/// unreadable folder, spelled in another case) opened by its path, which
/// says why it cannot be read. A path given twice is visited once.
fn read_each<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    paths: &[&str],
    visit: &mut Visit<'_>,
) {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in paths.iter().enumerate() {
        index.entry(p).or_insert(i);
    }
    let mut met = vec![false; paths.len()];
    each_file(fs, &mut |path, r| {
        if let Some(&i) = index.get(path) {
            if !met[i] {
                met[i] = true;
                visit(i, Ok(r));
            }
        }
    });
    for (i, p) in paths.iter().enumerate() {
        if !met[i] {
            match fs.root_dir().open_file(p) {
                Ok(mut f) => visit(i, Ok(&mut f)),
                Err(e) => visit(i, Err(e.to_string())),
            }
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

/// The four primary entries of a classic MBR, read from the layout itself
/// (boot signature 0x55AA at byte 510; entries of 16 bytes from byte 446:
/// status, CHS start, type, CHS end, first LBA and sector count, little
/// endian). Only used entries (type not 0) are kept.
struct Mbr {
    disk_id: u32,
    entries: Vec<MbrEntry>,
}

struct MbrEntry {
    number: u32,
    status: u8,
    sys: u8,
    start: u32,
    sectors: u32,
}

fn read_mbr(f: &mut std::fs::File) -> Result<Mbr, String> {
    let mut s = [0u8; 512];
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_exact(&mut s))
        .map_err(|e| format!("cannot read the MBR: {e}"))?;
    if s[510..512] != [0x55, 0xAA] {
        return Err("no MBR: the boot signature 0x55AA at byte 510 is missing".into());
    }
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut entries = Vec::new();
    for i in 0..4 {
        let e = &s[446 + 16 * i..446 + 16 * (i + 1)];
        if e[4] == 0 {
            continue;
        }
        let (start, sectors) = (le32(&e[8..12]), le32(&e[12..16]));
        if e[0] != 0 && e[0] != 0x80 {
            return Err(format!(
                "MBR entry {} has the status 0x{:02X} (only 0x00 and 0x80 exist)",
                i + 1,
                e[0]
            ));
        }
        if e[4] != 0xEE && (start == 0 || sectors == 0) {
            return Err(format!(
                "MBR entry {} (type 0x{:02X}) starts at sector {start} with {sectors} sectors: sector 0 is the MBR itself and a partition holds at least one sector",
                i + 1,
                e[4]
            ));
        }
        entries.push(MbrEntry {
            number: i as u32 + 1,
            status: e[0],
            sys: e[4],
            start,
            sectors,
        });
    }
    Ok(Mbr {
        disk_id: le32(&s[440..444]),
        entries,
    })
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

#[cfg(test)]
mod tests {
    use crate::disk::{DiskIds, Scheme};
    use crate::fat32::{FatFile, FatParams, FileSource};
    use crate::fsutil::blockread::counts;
    use crate::inspect::source::Artefact;
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;

    const MIB: u64 = 1 << 20;

    /// Issue 18: `fatfs` straight on the image file read a few bytes per
    /// system call, and every member read walked its path from the root:
    /// hundreds of millions of calls for 50,000 files. Listing, hashing every
    /// file and the FAT check of a disk image of a few thousand small files
    /// must each read the image in far fewer calls than there are files,
    /// about once, and ask the reader a bounded number of reads per file
    /// (one walk, not one per file).
    #[test]
    fn listing_hashing_and_checking_many_small_files_take_few_large_reads() {
        let n = 3000u64;
        let files: Vec<FatFile> = (0..n)
            .map(|i| {
                // 150 folders, 6 deep, a few non-ASCII names.
                let d = i % 150;
                let dir = format!("SMS/PKG/PS100203/d{}/e{}/f{d}", d % 5, d % 30);
                let name = if i % 500 == 0 {
                    format!("Übersicht {i}.txt")
                } else {
                    format!("file{i:05}.bin")
                };
                let bytes: Vec<u8> = (0..200 + (i * 37) % 3000)
                    .map(|k| (k * 31 + i) as u8)
                    .collect();
                FatFile::from_bytes(format!("{dir}/{name}"), bytes)
            })
            .collect();
        let want: BTreeMap<String, [u8; 32]> = files
            .iter()
            .map(|f| {
                let FileSource::Bytes(b) = &f.source else {
                    unreachable!()
                };
                (f.path.clone(), Sha256::digest(b).into())
            })
            .collect();
        let data: u64 = files.iter().map(|f| f.size).sum();
        let params = FatParams {
            volume_id: 1,
            label: "T".into(),
            hidden_sectors: 0,
            epoch: 0,
        };
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("t.img");
        let layout = crate::disk::layout(Scheme::Mbr, 80 * MIB).unwrap();
        let ids = DiskIds::from_seed(b"issue 18");
        crate::disk::write_image(
            &img,
            Scheme::Mbr,
            &layout,
            &ids,
            &files,
            &params,
            &mut |_| {},
        )
        .unwrap();
        let art = Artefact::open(&img).unwrap();
        let Artefact::Disk(disk) = &art else {
            panic!("not read as a disk image")
        };
        let bound = |what: &str| {
            let (calls, bytes, asked) = counts::take();
            assert!(
                calls <= 16 + n / 20,
                "{what}: {calls} read calls on the image for {n} files"
            );
            assert!(
                bytes <= 4 * data + 8 * MIB,
                "{what}: {bytes} bytes read for {data} bytes of files"
            );
            assert!(
                asked <= 64 * n,
                "{what}: {asked} reads asked of the reader for {n} files"
            );
        };

        counts::take();
        let listed = art.list().unwrap();
        assert_eq!(
            listed.iter().map(|l| &l.path).collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        bound("list");

        let mut got = BTreeMap::new();
        art.hash_all(&listed, &mut |l, r| {
            got.insert(l.path.clone(), r.unwrap().sha256);
        })
        .unwrap();
        assert_eq!(got, want);
        bound("hash every file");

        assert_eq!(disk.fat_check(), Vec::<String>::new());
        bound("FAT check");
    }
}
