//! The plan: every name, directory size and cluster decided before any byte is written.
//!
//! Clusters are handed out in one fixed order (§1): the root directory gets cluster 2,
//! then the other directories breadth-first, then the files in the same order. Every
//! object is one contiguous run; empty files get no cluster (§9).

use std::fmt::Write as _;

use super::dir::{Stamp, SLOT};
use super::geometry::{smallest_volume, Geometry, GeometryError, SECTOR};
use super::names::{assign, is_short_char, NameForm};
use super::tree::{self, Child};
use super::{FatError, FatFile, FatParams};

/// Most slots in one directory (§8; Linux enforces it).
const MAX_DIR_SLOTS: u64 = 65_536;

/// What a planned directory entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Index into [`FatLayout::dirs`].
    Dir(usize),
    /// Index into [`FatLayout::files`].
    File(usize),
}

/// One entry of a directory.
#[derive(Debug, Clone)]
pub(crate) struct EntryPlan {
    pub form: NameForm,
    pub target: Target,
}

/// One directory: its place on the volume and its entries in order.
#[derive(Debug, Clone)]
pub(crate) struct DirPlan {
    pub path: String,
    pub parent: Option<usize>,
    pub slots: u64,
    pub first_cluster: u32,
    pub clusters: u32,
    pub entries: Vec<EntryPlan>,
}

/// One file: where its bytes go.
#[derive(Debug, Clone)]
pub(crate) struct FilePlan {
    /// Index in the caller's file list.
    pub input: usize,
    pub path: String,
    pub size: u64,
    /// 0 for an empty file.
    pub first_cluster: u32,
    pub clusters: u32,
}

/// Pure geometry and directory plan of a FAT32 volume; see [`plan`].
#[derive(Debug, Clone)]
pub struct FatLayout {
    pub(crate) geometry: Geometry,
    pub(crate) volume_id: u32,
    pub(crate) label: Option<[u8; 11]>,
    pub(crate) hidden_sectors: u32,
    pub(crate) stamp: Stamp,
    /// Breadth-first; index 0 is the root.
    pub(crate) dirs: Vec<DirPlan>,
    /// In cluster order.
    pub(crate) files: Vec<FilePlan>,
    /// Clusters in use, the root included.
    pub(crate) used_clusters: u32,
}

/// Plans a volume of `partition_bytes` holding `files`.
///
/// Finds every problem of the file list at once (invalid names, duplicates, files of
/// 4 GiB or more, oversized directories) and then checks the size: fewer than 65,525
/// clusters, or content that does not fit, are errors that state the minimum size.
pub fn plan(
    files: &[FatFile],
    partition_bytes: u64,
    params: &FatParams,
) -> Result<FatLayout, FatError> {
    let label = label_bytes(&params.label);
    let named = analyse(files, label.is_some())?;
    let geometry = match Geometry::for_volume(partition_bytes) {
        Ok(g) => g,
        Err(GeometryError::TooLarge) => {
            return Err(FatError::PartitionTooLarge { partition_bytes });
        }
        Err(GeometryError::TooFewClusters {
            cluster_bytes,
            clusters,
        }) => {
            return Err(FatError::TooFewClusters {
                partition_bytes,
                cluster_bytes,
                clusters,
                min_partition_bytes: named.min_bytes()?,
            });
        }
    };
    let cluster_bytes = geometry.cluster_bytes();
    let needed = named.clusters_needed(cluster_bytes);
    let available = u64::from(geometry.cluster_count);
    if needed > available {
        return Err(FatError::DoesNotFit {
            needed_bytes: needed * cluster_bytes,
            available_bytes: available * cluster_bytes,
            short_by: (needed - available) * cluster_bytes,
            min_partition_bytes: named.min_bytes()?,
        });
    }
    let Named {
        mut dirs,
        mut files,
    } = named;
    // Fits, so every number below is < cluster_count + 2 < 2^28.
    let mut next = 2u32;
    for dir in &mut dirs {
        dir.first_cluster = next;
        dir.clusters = dir_clusters(dir.slots, cluster_bytes) as u32;
        next += dir.clusters;
    }
    for file in &mut files {
        if file.size > 0 {
            file.first_cluster = next;
            file.clusters = file.size.div_ceil(cluster_bytes) as u32;
            next += file.clusters;
        }
    }
    Ok(FatLayout {
        geometry,
        volume_id: params.volume_id,
        label,
        hidden_sectors: params.hidden_sectors,
        stamp: Stamp::from_unix(params.epoch),
        dirs,
        files,
        used_clusters: next - 2,
    })
}

/// Smallest partition (in bytes, a whole number of sectors) that holds `files`.
/// Round it up as the partition table needs; the cluster-size rows are whole MiB, so
/// rounding up to a MiB never makes the content stop fitting.
pub fn min_partition_bytes(files: &[FatFile], params: &FatParams) -> Result<u64, FatError> {
    analyse(files, label_bytes(&params.label).is_some())?.min_bytes()
}

/// Smallest FAT32 volume this writer accepts (65,525 clusters of 512 bytes + metadata).
pub fn min_volume_bytes() -> u64 {
    smallest_volume(|_| 1).unwrap_or(u64::MAX / SECTOR) * SECTOR
}

/// Names and directory sizes, before clusters are given out.
struct Named {
    dirs: Vec<DirPlan>,
    files: Vec<FilePlan>,
}

impl Named {
    /// Clusters the content takes at a given cluster size.
    fn clusters_needed(&self, cluster_bytes: u64) -> u64 {
        let dirs: u64 = self
            .dirs
            .iter()
            .map(|d| dir_clusters(d.slots, cluster_bytes))
            .sum();
        let files: u64 = self
            .files
            .iter()
            .map(|f| f.size.div_ceil(cluster_bytes))
            .sum();
        dirs + files
    }

    fn min_bytes(&self) -> Result<u64, FatError> {
        smallest_volume(|cb| self.clusters_needed(cb))
            .map(|sectors| sectors * SECTOR)
            .ok_or_else(|| FatError::ContentTooLarge {
                needed_bytes: self.clusters_needed(32_768) * 32_768,
            })
    }
}

fn dir_clusters(slots: u64, cluster_bytes: u64) -> u64 {
    (slots * SLOT as u64).div_ceil(cluster_bytes).max(1)
}

/// Validates the files, names every entry and counts every directory's slots.
fn analyse(files: &[FatFile], has_label: bool) -> Result<Named, FatError> {
    let sorted = tree::build(files)?;
    let mut dirs = Vec::with_capacity(sorted.len());
    let mut plans = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for dir in sorted {
        let names: Vec<&str> = dir.children.iter().map(|(n, _)| n.as_str()).collect();
        let forms = assign(&names);
        let mut slots = match dir.parent {
            None => u64::from(has_label),
            Some(_) => 2,
        };
        let mut entries = Vec::with_capacity(forms.len());
        for (form, (_, child)) in forms.into_iter().zip(&dir.children) {
            slots += 1 + form.lfn_slots() as u64;
            let target = match *child {
                Child::Dir(d) => Target::Dir(d),
                Child::File(input) => {
                    plans.push(FilePlan {
                        input,
                        path: files[input].path.clone(),
                        size: files[input].size,
                        first_cluster: 0,
                        clusters: 0,
                    });
                    Target::File(plans.len() - 1)
                }
            };
            entries.push(EntryPlan { form, target });
        }
        if slots > MAX_DIR_SLOTS {
            errors.push(FatError::DirectoryTooLarge {
                path: if dir.path.is_empty() {
                    "/".into()
                } else {
                    dir.path.clone()
                },
                slots,
            });
        }
        dirs.push(DirPlan {
            path: dir.path,
            parent: dir.parent,
            slots,
            first_cluster: 0,
            clusters: 0,
            entries,
        });
    }
    FatError::from_list(errors)?;
    Ok(Named { dirs, files: plans })
}

/// `BASE.EXT` (or `BASE`) from a stored 11-byte name.
fn short_display(short: &[u8; 11]) -> String {
    let text = String::from_utf8_lossy(short);
    let (base, ext) = text.split_at(8);
    match ext.trim_end() {
        "" => base.trim_end().to_string(),
        ext => format!("{}.{ext}", base.trim_end()),
    }
}

/// The label as stored: upper case, FAT characters (others become `_`), at most 11
/// bytes, space-padded. `None` for an empty label, and for `NO NAME`, which fsck.fat
/// reads as "no label" in the boot sector and would then find an unexpected entry.
/// The volume label a FAT32 volume gets for `label` (as [`label_bytes`]
/// stores it, trailing spaces removed).
pub fn volume_label(label: &str) -> Option<String> {
    label_bytes(label).map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
}

fn label_bytes(label: &str) -> Option<[u8; 11]> {
    let mapped: Vec<u8> = label
        .trim_start_matches(' ')
        .chars()
        .map(|c| {
            let up = c.to_ascii_uppercase();
            if c == ' ' || (up.is_ascii() && is_short_char(up as u8)) {
                up as u8
            } else {
                b'_'
            }
        })
        .take(11)
        .collect();
    let len = mapped.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    if len == 0 || &mapped[..len] == b"NO NAME" {
        return None;
    }
    let mut out = [b' '; 11];
    out[..len].copy_from_slice(&mapped[..len]);
    Some(out)
}

impl FatLayout {
    /// Bytes from the volume start to the end of the last used cluster: the part of the
    /// partition that the metadata and the content occupy.
    pub fn used_bytes(&self) -> u64 {
        self.geometry.cluster_offset(2) + u64::from(self.used_clusters) * self.cluster_bytes()
    }

    /// Geometry of the volume.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        self.geometry.cluster_bytes()
    }

    /// Data clusters of the volume.
    pub fn cluster_count(&self) -> u32 {
        self.geometry.cluster_count
    }

    /// Clusters in use (directories and files).
    pub fn used_clusters(&self) -> u32 {
        self.used_clusters
    }

    /// Free clusters, as written to FSInfo.
    pub fn free_clusters(&self) -> u32 {
        self.geometry.cluster_count - self.used_clusters
    }

    /// Free space in bytes.
    pub fn free_bytes(&self) -> u64 {
        u64::from(self.free_clusters()) * self.cluster_bytes()
    }

    /// Size of the volume (BPB_TotSec32 × 512; may be a little less than the partition).
    pub fn volume_bytes(&self) -> u64 {
        self.geometry.volume_bytes()
    }

    /// The stored label, `None` when the volume has none.
    pub fn label(&self) -> Option<String> {
        self.label
            .map(|l| String::from_utf8_lossy(&l).trim_end().to_string())
    }

    /// Total that the progress callback of [`write`](super::write) counts up to.
    pub fn bytes_to_write(&self) -> u64 {
        let head = 8 * SECTOR;
        let fats = 2 * self.fat_bytes_written();
        let dirs: u64 = self
            .dirs
            .iter()
            .map(|d| u64::from(d.clusters) * self.cluster_bytes())
            .sum();
        let files: u64 = self.files.iter().map(|f| f.size).sum();
        head + fats + dirs + files
    }

    /// Non-zero prefix of one FAT: entries 0 and 1 plus one per used cluster.
    pub(crate) fn fat_bytes_written(&self) -> u64 {
        4 * (u64::from(self.used_clusters) + 2)
    }

    /// Byte offset of a planned file's data inside the volume, by its path in the list.
    pub fn file_offset(&self, path: &str) -> Option<u64> {
        let f = self.files.iter().find(|f| f.path == path)?;
        (f.first_cluster >= 2).then(|| self.geometry.cluster_offset(f.first_cluster))
    }

    /// The stored 8.3 path of a planned file (upper case, '/'-separated), e.g.
    /// `MANY/ARATHE~1.TXT`: what readers without long-name support see.
    pub fn short_path(&self, path: &str) -> Option<String> {
        let file = self.files.iter().position(|f| f.path == path)?;
        let mut parts = Vec::new();
        let mut target = Target::File(file);
        loop {
            let (dir, entry) = self.dirs.iter().enumerate().find_map(|(d, dir)| {
                dir.entries
                    .iter()
                    .find(|e| e.target == target)
                    .map(|e| (d, e))
            })?;
            parts.push(short_display(&entry.form.short));
            if dir == 0 {
                break;
            }
            target = Target::Dir(dir);
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// A readable listing of the plan: geometry, then every directory and file with its
    /// clusters and stored short name. Stable, for snapshot tests and `--plan` output.
    pub fn describe(&self) -> String {
        let g = &self.geometry;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "FAT32: {} sectors, {}-byte clusters, {} clusters, FAT {} sectors x2, data at sector {}",
            g.total_sectors,
            g.cluster_bytes(),
            g.cluster_count,
            g.fat_sectors,
            g.data_start_sector()
        );
        let _ = writeln!(
            s,
            "label {:?}, volume id {:08X}, hidden sectors {}, used {} clusters, free {}",
            self.label().unwrap_or_default(),
            self.volume_id,
            self.hidden_sectors,
            self.used_clusters,
            self.free_clusters()
        );
        for d in &self.dirs {
            let _ = writeln!(
                s,
                "dir  /{} @{}+{} ({} slots)",
                d.path, d.first_cluster, d.clusters, d.slots
            );
            for e in &d.entries {
                let short = String::from_utf8_lossy(&e.form.short).into_owned();
                let lfn = if e.form.long.is_some() { " +lfn" } else { "" };
                match e.target {
                    Target::Dir(_) => {
                        let _ = writeln!(s, "     [{short}] nt={:02X}{lfn}", e.form.nt_case);
                    }
                    Target::File(f) => {
                        let f = &self.files[f];
                        let _ = writeln!(
                            s,
                            "     [{short}] nt={:02X}{lfn} {} bytes @{}+{}",
                            e.form.nt_case, f.size, f.first_cluster, f.clusters
                        );
                    }
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FatFile;

    fn params() -> FatParams {
        FatParams {
            volume_id: 0x1234_ABCD,
            label: String::new(),
            hidden_sectors: 2048,
            epoch: 1_704_110_400,
        }
    }

    fn file(path: &str, size: usize) -> FatFile {
        FatFile::from_bytes(path, vec![0x5Au8; size])
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn worked_example_plan() {
        let files = [
            file("EFI/BOOT/BOOTX64.EFI", 1 << 20),
            file("sources/readme.txt", 5),
        ];
        let l = plan(&files, 300 * MIB, &params()).unwrap();
        let clusters: Vec<(String, u32, u32)> = l
            .dirs
            .iter()
            .map(|d| (d.path.clone(), d.first_cluster, d.clusters))
            .collect();
        assert_eq!(
            clusters,
            [
                ("".into(), 2, 1),
                ("EFI".into(), 3, 1),
                ("sources".into(), 4, 1),
                ("EFI/BOOT".into(), 5, 1)
            ]
        );
        let files: Vec<(&str, u32, u32)> = l
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.first_cluster, f.clusters))
            .collect();
        assert_eq!(
            files,
            [
                ("sources/readme.txt", 6, 1),
                ("EFI/BOOT/BOOTX64.EFI", 7, 256)
            ]
        );
        assert_eq!(l.used_clusters(), 261);
        assert_eq!(l.free_clusters(), 76_385);
        assert_eq!(l.used_bytes(), (1232 + 261 * 8) * 512);
        assert_eq!(
            l.short_path("sources/readme.txt").unwrap(),
            "SOURCES/README.TXT"
        );
        assert_eq!(l.short_path("nope"), None);
    }

    #[test]
    fn order_does_not_depend_on_input_order() {
        let a = [file("b/x", 1), file("A/y", 2), file("a/Z", 3), file("c", 0)];
        let b = [file("c", 0), file("a/Z", 3), file("b/x", 1), file("A/y", 2)];
        let la = plan(&a, 40 * MIB, &params()).unwrap();
        let lb = plan(&b, 40 * MIB, &params()).unwrap();
        assert_eq!(la.describe(), lb.describe());
        // "A" and "a" are one directory, spelled with the smallest spelling.
        assert_eq!(la.dirs.len(), 3);
        assert_eq!(la.dirs[1].path, "A");
    }

    #[test]
    fn empty_files_get_no_cluster_and_dirs_grow() {
        let mut files = vec![file("empty.txt", 0)];
        // 40 long names → 40 × (1 + 3 LFN slots) + 2 = 162 slots > 16 per 512 B cluster.
        for i in 0..40 {
            files.push(file(&format!("dir/a rather long file name {i:02}.txt"), 1));
        }
        let l = plan(&files, 40 * MIB, &params()).unwrap();
        let empty = l.files.iter().find(|f| f.path == "empty.txt").unwrap();
        assert_eq!((empty.first_cluster, empty.clusters), (0, 0));
        assert_eq!(l.dirs[1].slots, 2 + 40 * 4);
        assert_eq!(l.dirs[1].clusters, (162 * 32usize).div_ceil(512) as u32);
    }

    #[test]
    fn labels() {
        assert_eq!(label_bytes(""), None);
        assert_eq!(label_bytes("   "), None);
        assert_eq!(label_bytes("no name"), None);
        assert_eq!(&label_bytes("Win11 Media").unwrap(), b"WIN11 MEDIA");
        assert_eq!(&label_bytes("  ccc.d:eé").unwrap(), b"CCC_D_E_   ");
        assert_eq!(&label_bytes("a very long label").unwrap(), b"A VERY LONG");
        assert_eq!(&label_bytes("abcdefghij k").unwrap(), b"ABCDEFGHIJ ");
    }

    fn err(files: &[FatFile], bytes: u64) -> String {
        plan(files, bytes, &params()).unwrap_err().to_string()
    }

    #[test]
    fn error_messages() {
        let msg = err(&[file("a/b", 1), file("A/B", 1)], 40 * MIB);
        assert!(msg.contains("duplicate path \"A/B\""), "{msg}");
        assert!(msg.contains("\"a/b\""), "{msg}");

        let msg = err(&[file("a", 1), file("a/b", 1)], 40 * MIB);
        assert!(msg.starts_with("path conflict: \"a\" is a file"), "{msg}");
        let msg = err(&[file("a/b", 1), file("A", 1)], 40 * MIB);
        assert!(
            msg.starts_with("path conflict: \"A\" is a file, but \"a/b\""),
            "{msg}"
        );

        let msg = err(&[file("x/a:b", 1)], 40 * MIB);
        assert!(msg.contains("invalid path \"x/a:b\""), "{msg}");
        assert!(msg.contains("':'"), "{msg}");
        for bad in ["/abs", "a//b", "a/", ""] {
            let msg = err(&[file(bad, 1)], 40 * MIB);
            assert!(msg.starts_with("invalid path"), "{bad}: {msg}");
        }

        let big = FatFile::from_path("sources/install.wim", "/nonexistent", 1 << 32);
        let msg = err(&[big], 40 * MIB);
        assert!(
            msg.contains("\"sources/install.wim\" is 4294967296 bytes"),
            "{msg}"
        );
        assert!(msg.contains(".swm"), "{msg}");

        let mut lying = file("x", 3);
        lying.size = 4;
        assert!(err(&[lying], 40 * MIB).contains("has 3 bytes but the file list says 4"));

        // All problems at once.
        let msg = err(&[file("a:", 1), file("b", 1), file("B", 1)], 40 * MIB);
        assert!(msg.starts_with("2 problems:"), "{msg}");
    }

    #[test]
    fn size_errors() {
        let msg = err(&[file("a", 1)], 32 * MIB);
        assert!(msg.starts_with("too few clusters for FAT32"), "{msg}");
        assert!(msg.contains("at least 34089472 bytes"), "{msg}");
        assert_eq!(min_volume_bytes(), 66_581 * 512);

        let files = [file("a", 30 << 20), file("b", 10 << 20)];
        let e = plan(&files, 40 * MIB, &params()).unwrap_err();
        let FatError::DoesNotFit {
            short_by,
            min_partition_bytes: min,
            ..
        } = e
        else {
            panic!("{e}")
        };
        assert!(short_by > 0);
        assert!(plan(&files, min, &params()).is_ok());
        assert!(plan(&files, min - 512, &params()).is_err());
        assert_eq!(min_partition_bytes(&files, &params()).unwrap(), min);
    }

    #[test]
    fn directory_limit() {
        // 65 535 short names + `.` and `..` = 65 537 slots.
        let files: Vec<FatFile> = (0..65_535).map(|i| file(&format!("d/{i}"), 0)).collect();
        let msg = err(&files, 40 * MIB);
        assert!(msg.contains("directory \"d\" needs 65537"), "{msg}");
    }
}
