//! A raw disk image read back without its recipe: the partition table (MBR
//! read from its four entries, GPT through `gpt`), every partition's FAT32
//! volume through a window limited to the partition (`fatfs` for names and
//! contents), and our own consistency walk of each FAT (`fatcheck`). Both
//! read through a block cache (`blockread`): the image is read in large
//! calls, never field by field. The files of the image are those of all its
//! volumes, in partition order (a path on two volumes is the first one's).
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

/// The file system of a partition.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FsFacts {
    pub r#type: String,
    pub label: String,
    pub volume_id: String,
    pub cluster_size: u32,
    pub clusters: u32,
    pub free_clusters: u32,
}

/// An opened disk image: where its partitions are.
pub struct DiskImage {
    path: PathBuf,
    pub len: u64,
    pub table: TableFacts,
    /// Structural problems found while opening (a truncated image, a table
    /// pointing past the end, overlapping partitions).
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
        if table.partitions.is_empty() {
            return Err(InspectError::Damaged {
                path: path.to_path_buf(),
                what: "the partition table has no partition".into(),
            });
        }
        for p in &table.partitions {
            if p.start + p.size > len {
                problems.push(format!(
                    "partition {} ends at byte {} but the image has only {len} bytes: the image is truncated",
                    p.number,
                    p.start + p.size
                ));
            }
        }
        let mut by_start: Vec<&PartitionFacts> = table.partitions.iter().collect();
        by_start.sort_by_key(|p| (p.start, p.number));
        for w in by_start.windows(2) {
            if w[0].start + w[0].size > w[1].start {
                problems.push(format!(
                    "partitions {} and {} overlap",
                    w[0].number, w[1].number
                ));
            }
        }
        Ok(DiskImage {
            path: path.to_path_buf(),
            len,
            table,
            problems,
        })
    }

    /// The partition at `index` of the table, as a window of the image.
    fn window(&self, index: usize) -> Result<Reader, String> {
        let p = &self.table.partitions[index];
        let f = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        Ok(BlockReader::new(f, p.start, p.size))
    }

    fn fs(&self, index: usize) -> Result<Fs, String> {
        open_fs(self.window(index)?)
    }

    /// `e` of partition `index`, named by its number when there are several.
    fn of_partition(&self, index: usize, e: String) -> String {
        if self.table.partitions.len() > 1 {
            format!("partition {}: {e}", self.table.partitions[index].number)
        } else {
            e
        }
    }

    /// Every partition's volume, opened (or why it cannot be), in table order.
    fn volumes(&self) -> Vec<Result<Fs, String>> {
        (0..self.table.partitions.len())
            .map(|i| self.fs(i).map_err(|e| self.of_partition(i, e)))
            .collect()
    }

    /// Facts of every partition's volume (label, id, clusters), with the
    /// partition's number, in table order.
    pub fn volume_facts(&self) -> Vec<(u32, Result<FsFacts, String>)> {
        self.table
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (p.number, guarded(|| self.fs_facts_unguarded(i))))
            .collect()
    }

    fn fs_facts_unguarded(&self, index: usize) -> Result<FsFacts, String> {
        let fs = self.fs(index)?;
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

    /// Every file of every volume: (path, size), sorted by path; a path on
    /// two volumes (FAT names compared ignoring case) is the first one's.
    pub fn list(&self) -> Result<Vec<(String, u64)>, String> {
        guarded(|| {
            let mut out: Vec<(String, u64)> = Vec::new();
            for (i, fs) in self.volumes().into_iter().enumerate() {
                let files = list_fs(&fs?).map_err(|e| self.of_partition(i, e))?;
                if out.is_empty() {
                    out = files;
                    continue;
                }
                let earlier: std::collections::BTreeSet<String> =
                    out.iter().map(|(p, _)| p.to_lowercase()).collect();
                out.extend(
                    files
                        .into_iter()
                        .filter(|(p, _)| !earlier.contains(&p.to_lowercase())),
                );
            }
            out.sort();
            Ok(out)
        })
    }

    /// Streams each file of `paths` (as [`DiskImage::list`] gives them) to
    /// `visit` with its index in `paths`, in one walk of each volume (see
    /// [`read_each`]); `visit` gets why when a file cannot be opened. An
    /// error only when no volume can be opened (nothing is visited then).
    pub fn read_each(&self, paths: &[&str], visit: &mut Visit<'_>) -> Result<(), String> {
        guarded(|| {
            let (fss, errors): (Vec<_>, Vec<_>) =
                self.volumes().into_iter().partition(Result::is_ok);
            let fss: Vec<Fs> = fss.into_iter().filter_map(Result::ok).collect();
            if fss.is_empty() {
                return Err(errors.into_iter().find_map(Result::err).unwrap_or_default());
            }
            read_each(&fss, paths, visit);
            Ok(())
        })
    }

    /// Streams the file at `path` into `sink` from the first volume that has
    /// it (the volumes are case-insensitive).
    pub fn read_into(&self, path: &str, sink: &mut dyn std::io::Write) -> Result<u64, String> {
        guarded(|| {
            let mut why = None;
            for fs in self.volumes() {
                let fs = match fs {
                    Ok(fs) => fs,
                    Err(e) => {
                        why.get_or_insert(e);
                        continue;
                    }
                };
                let opened = fs.root_dir().open_file(path);
                let copied = match opened {
                    Ok(mut f) => std::io::copy(&mut f, sink),
                    Err(e) => {
                        why.get_or_insert(e.to_string());
                        continue;
                    }
                };
                return copied.map_err(|e| format!("cannot read: {e}"));
            }
            Err(why.unwrap_or_default())
        })
    }

    /// Our own walk of every directory and cluster chain of each partition's
    /// FAT (a problem names its partition when there are several).
    pub fn fat_check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for i in 0..self.table.partitions.len() {
            let found = match self.window(i) {
                Ok(mut w) => fatcheck::check(&mut w),
                Err(e) => vec![e],
            };
            problems.extend(found.into_iter().map(|e| self.of_partition(i, e)));
        }
        problems
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
/// walk of each volume in turn ([`each_file`]) as they are met, then any
/// other (in an unreadable folder, spelled in another case) opened by its
/// path on the first volume that has it, or why the first volume cannot
/// give it. A path given twice, or on two volumes, is visited once.
fn read_each<T: fatfs::ReadWriteSeek>(
    fss: &[fatfs::FileSystem<T>],
    paths: &[&str],
    visit: &mut Visit<'_>,
) {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in paths.iter().enumerate() {
        index.entry(p).or_insert(i);
    }
    let mut met = vec![false; paths.len()];
    for fs in fss {
        each_file(fs, &mut |path, r| {
            if let Some(&i) = index.get(path) {
                if !met[i] {
                    met[i] = true;
                    visit(i, Ok(r));
                }
            }
        });
    }
    for (i, p) in paths.iter().enumerate() {
        if met[i] {
            continue;
        }
        let mut why = None;
        for fs in fss {
            match fs.root_dir().open_file(p) {
                Ok(mut f) => {
                    met[i] = true;
                    visit(i, Ok(&mut f));
                    break;
                }
                Err(e) => {
                    why.get_or_insert(e.to_string());
                }
            }
        }
        if !met[i] {
            visit(i, Err(why.unwrap_or_default()));
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
    use crate::disk::{DiskIds, Layout, Scheme};
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
        let layout = crate::disk::layout(Scheme::Mbr, 80 * MIB, &Layout::single(params)).unwrap();
        let ids = DiskIds::from_seed(b"issue 18");
        crate::disk::write_image(&img, &layout, &ids, &[files], &mut |_| {}).unwrap();
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

/// A disk of two FAT32 partitions — a small one typed as an EFI System
/// Partition and a data partition filling the rest, as a future layout may
/// make them — read back: both entries, both volumes, the files of both.
#[cfg(test)]
mod two_partitions {
    use crate::disk::{
        DiskIds, FileSystem, Layout, PartitionSpec, PartitionType, Scheme, SizeRule,
    };
    use crate::fat32::{FatFile, FatParams};
    use crate::inspect::source::Artefact;
    use crate::inspect::verify::{verify, VerifyOptions};
    use crate::inspect::{inspect, Options};
    use std::io::{Seek, SeekFrom, Write};

    const MIB: u64 = 1 << 20;

    fn params(label: &str, volume_id: u32) -> FatParams {
        FatParams {
            volume_id,
            label: label.into(),
            hidden_sectors: 0,
            epoch: 1_704_110_400,
        }
    }

    fn layout() -> Layout {
        Layout {
            partitions: vec![
                PartitionSpec {
                    kind: PartitionType::efi_system("EFI system partition"),
                    size: SizeRule::Bytes(36 * MIB),
                    fs: FileSystem::Fat32(params("ESP", 0x1111_2222)),
                },
                PartitionSpec {
                    kind: PartitionType::media(),
                    size: SizeRule::Rest,
                    fs: FileSystem::Fat32(params("TWO PARTS", 0x3333_4444)),
                },
            ],
        }
    }

    fn files() -> [Vec<FatFile>; 2] {
        [
            vec![
                FatFile::from_bytes("EFI/Boot/bootx64.efi", b"loader on the ESP".to_vec()),
                FatFile::from_bytes("EFI/Microsoft/Boot/BCD", vec![7u8; 5000]),
            ],
            vec![
                FatFile::from_bytes("MediaLabel.txt", b"label=TWO PARTS\r\n".to_vec()),
                FatFile::from_bytes("sources/boot.wim", vec![1u8; 300_000]),
                FatFile::from_bytes("SMS/PKG/PS100101/setup.cmd", b"@echo off\r\n".to_vec()),
                // Variables.dat is then encrypted: inspect reads none.
                FatFile::from_bytes(
                    "SMS/data/TsmBootstrap.ini",
                    b"[MediaInfo]\r\nPasswordRequired=true\r\n".to_vec(),
                ),
            ],
        ]
    }

    fn build(dir: &std::path::Path, scheme: Scheme) -> std::path::PathBuf {
        let img = dir.join(format!("two-{scheme}.img"));
        let l = crate::disk::layout(scheme, 100 * MIB, &layout()).unwrap();
        crate::disk::write_image(&img, &l, &DiskIds::from_seed(b"two"), &files(), &mut |_| {})
            .unwrap();
        img
    }

    #[test]
    fn the_reader_lists_both_partitions_and_the_files_of_both_volumes() {
        let t = tempfile::tempdir().unwrap();
        for scheme in [Scheme::Mbr, Scheme::Gpt] {
            let img = build(t.path(), scheme);
            let art = Artefact::open(&img).unwrap();
            let Artefact::Disk(d) = &art else {
                panic!("not read as a disk image")
            };
            assert_eq!(d.problems, Vec::<String>::new());
            let p = &d.table.partitions;
            assert_eq!(p.len(), 2, "{scheme}: {p:?}");
            assert_eq!((p[0].number, p[0].start, p[0].size), (1, MIB, 36 * MIB));
            assert_eq!((p[1].number, p[1].start), (2, 37 * MIB));
            match scheme {
                Scheme::Mbr => {
                    assert_eq!(d.table.scheme, "mbr");
                    assert_eq!((p[0].r#type.as_str(), p[0].active), ("0xEF", Some(false)));
                    assert_eq!((p[1].r#type.as_str(), p[1].active), ("0x0C", Some(true)));
                    assert_eq!(p[1].size, 63 * MIB);
                }
                Scheme::Gpt => {
                    assert_eq!(d.table.scheme, "gpt");
                    assert_eq!(p[0].r#type, crate::disk::GPT_ESP_TYPE);
                    assert_eq!(p[1].r#type, crate::disk::GPT_PARTITION_TYPE);
                    assert_eq!(p[0].name.as_deref(), Some("EFI system partition"));
                    assert_eq!(p[1].name.as_deref(), Some("MEDIA"));
                    assert_ne!(p[0].guid, p[1].guid);
                    assert_eq!(p[1].size, 62 * MIB);
                }
            }
            // Both volumes, each with its own label and id.
            let v = d.volume_facts();
            let labels: Vec<(u32, String, String)> = v
                .iter()
                .map(|(n, f)| {
                    let f = f.as_ref().unwrap();
                    assert_eq!(f.r#type, "FAT32");
                    (*n, f.label.clone(), f.volume_id.clone())
                })
                .collect();
            assert_eq!(
                labels,
                [
                    (1, "ESP".to_string(), "11112222".to_string()),
                    (2, "TWO PARTS".to_string(), "33334444".to_string())
                ]
            );
            // The files of both volumes, read back with their bytes.
            let listed = art.list().unwrap();
            let mut want: Vec<(String, u64)> = files()
                .iter()
                .flatten()
                .map(|f| (f.path.clone(), f.size))
                .collect();
            want.sort();
            let got: Vec<(String, u64)> = listed.iter().map(|l| (l.path.clone(), l.size)).collect();
            assert_eq!(got, want, "{scheme}");
            assert_eq!(
                art.read("EFI/Boot/bootx64.efi").unwrap(),
                b"loader on the ESP"
            );
            assert_eq!(
                art.read("SMS/PKG/PS100101/setup.cmd").unwrap(),
                b"@echo off\r\n"
            );
            let mut hashed = 0;
            art.hash_all(&listed, &mut |_, r| {
                r.unwrap();
                hashed += 1;
            })
            .unwrap();
            assert_eq!(hashed, 6);
            assert_eq!(d.fat_check(), Vec::<String>::new());

            // inspect: both entries, both file systems, in text and JSON.
            let i = inspect(&img, &Options::default()).unwrap();
            assert_eq!(i.partition_table.as_ref().unwrap().partitions.len(), 2);
            assert_eq!(i.filesystem.as_ref().unwrap().label, "ESP");
            assert_eq!(i.other_filesystems.len(), 1);
            assert_eq!(i.other_filesystems[0].partition, 2);
            assert_eq!(i.other_filesystems[0].filesystem.label, "TWO PARTS");
            let text = i.render();
            let type_1 = if scheme == Scheme::Mbr {
                "0xEF"
            } else {
                crate::disk::GPT_ESP_TYPE
            };
            assert!(
                text.contains(&format!("  1 type {type_1} at 1048576 size 36.0 MiB")),
                "{text}"
            );
            assert!(text.contains("  2 type "), "{text}");
            assert!(text.contains("filesystem: FAT32 label \"ESP\""), "{text}");
            assert!(
                text.contains("filesystem of partition 2: FAT32 label \"TWO PARTS\""),
                "{text}"
            );
            let json = serde_json::to_value(&i).unwrap();
            assert_eq!(
                json["partition_table"]["partitions"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            assert_eq!(json["other_filesystems"][0]["partition"], 2);
            assert_eq!(json["other_filesystems"][0]["label"], "TWO PARTS");

            // verify checks both volumes.
            let rep = verify(&img, &VerifyOptions::default()).unwrap();
            assert_eq!(rep.problems, Vec::<String>::new());
            let scheme_name = d.table.scheme.clone();
            assert!(
                rep.checked
                    .contains(&format!("partition table ({scheme_name}, 2 partition(s))")),
                "{:?}",
                rep.checked
            );
            assert!(
                rep.checked
                    .iter()
                    .any(|c| c.ends_with("of each of the 2 volumes")),
                "{:?}",
                rep.checked
            );
        }
    }

    #[test]
    fn a_damaged_second_volume_is_named() {
        let t = tempfile::tempdir().unwrap();
        let img = build(t.path(), Scheme::Gpt);
        // Partition 2's boot sector loses its signature.
        let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.seek(SeekFrom::Start(37 * MIB + 510)).unwrap();
        f.write_all(&[0, 0]).unwrap();
        drop(f);
        let rep = verify(&img, &VerifyOptions::default()).unwrap();
        assert!(
            rep.problems.contains(
                &"FAT32: partition 2: the partition does not start with a FAT32 boot sector"
                    .to_string()
            ),
            "{:?}",
            rep.problems
        );
        assert!(
            rep.problems
                .iter()
                .any(|p| p.contains("partition 2: not a readable FAT volume")),
            "{:?}",
            rep.problems
        );
        let art = Artefact::open(&img).unwrap();
        let Artefact::Disk(d) = &art else { panic!() };
        // Partition 1 still reads.
        assert!(d.volume_facts()[0].1.is_ok());
        assert!(d.volume_facts()[1].1.is_err());
        assert_eq!(
            art.read("EFI/Boot/bootx64.efi").unwrap(),
            b"loader on the ESP"
        );
    }
}
