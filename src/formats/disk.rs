//! The raw disk image (`outputs.disk`) as the model sees it: the layout
//! `outputs.disk.layout` selects ([`select_layout`], the one place a layout
//! name becomes partitions), the rules that decide how the media tree lands
//! on FAT32 (members of 4 GiB or more split into `.swm` parts), the volumes'
//! parameters, and the validation of a planned disk — files FAT32 cannot
//! hold, and whether the content fits each partition. `render::disk` writes
//! it with these same rules.

use crate::diag::Diagnostic;
use crate::disk;
use crate::fat32::{self, FatFile, FatParams};
use crate::ids;
use crate::media::{MediaTree, Source};
use crate::recipe::{DiskLayoutKind, DiskOutput, Scheme};
use crate::units::human;
use std::path::PathBuf;

/// Largest `.swm` part we ask wimlib for: 4095 MiB (a single resource larger
/// than that still makes a larger part, which the FAT writer then refuses).
pub const SWM_PART_BYTES: u64 = 4095 << 20;

/// The test override of the split threshold, read in one place.
fn test_split_bytes() -> Option<u64> {
    std::env::var("MEDIABUILD_TEST_SPLIT_BYTES")
        .ok()?
        .parse()
        .ok()
}

/// Members above this size are split. FAT32's limit is 4 GiB − 1; tests may
/// lower it (and the part size with it) to exercise splitting on small inputs.
pub(crate) fn split_threshold() -> u64 {
    test_split_bytes().unwrap_or(fat32::MAX_FILE_SIZE)
}

/// Largest file an image may hold for a FAT32 disk: FAT32's limit (the test
/// override lowers it, as a > 4 GiB file takes too long to make in a test).
fn image_file_limit() -> u64 {
    std::env::var("MEDIABUILD_TEST_FAT_MAX_FILE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fat32::MAX_FILE_SIZE)
}

pub(crate) fn part_bytes() -> u64 {
    test_split_bytes().map(|v| v / 2).unwrap_or(SWM_PART_BYTES)
}

pub(crate) fn scheme(s: Scheme) -> disk::Scheme {
    match s {
        Scheme::Mbr => disk::Scheme::Mbr,
        Scheme::Gpt => disk::Scheme::Gpt,
    }
}

/// The disk layout a recipe selects, and which partition each file of the
/// media tree goes to.
pub(crate) struct MediaLayout {
    /// The partitions.
    pub layout: disk::Layout,
    /// Index in `layout.partitions` of the partition a media path goes to.
    route: fn(&str) -> usize,
}

impl MediaLayout {
    /// The files of the media tree, one list per partition of the layout.
    pub fn files(&self, files: Vec<FatFile>) -> Vec<Vec<FatFile>> {
        let mut out = vec![Vec::new(); self.layout.partitions.len()];
        for f in files {
            out[(self.route)(&f.path)].push(f);
        }
        out
    }
}

/// The layout of `outputs.disk.layout`: the one place a layout name becomes
/// partitions of the disk engine's model.
///
/// - `single`: one FAT32 partition filling the disk (MBR `0x0C` active, GPT
///   Microsoft basic data named `MEDIA`) holding the whole media tree.
///
/// A new layout is a new [`DiskLayoutKind`] and an arm here: its partitions
/// (type, size rule, file system) and where each media path goes
/// (`docs/media.md`, "Disk layouts").
pub(crate) fn select_layout(kind: DiskLayoutKind, vol: &Volume) -> MediaLayout {
    match kind {
        DiskLayoutKind::Single => MediaLayout {
            layout: disk::Layout::single(params(vol)),
            route: |_| 0,
        },
    }
}

/// A planned disk image: `outputs.disk`, typed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiskSpec {
    /// Size in bytes (None: `outputs.disk.size` is not a size, which
    /// validation reports).
    #[serde(rename = "disk_size", skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub scheme: Scheme,
    /// The partition layout (`outputs.disk.layout`).
    #[serde(skip)]
    pub layout: DiskLayoutKind,
    /// The size as written in the recipe (for messages).
    #[serde(skip)]
    pub size_text: String,
}

impl DiskSpec {
    pub fn of(d: &DiskOutput) -> DiskSpec {
        DiskSpec {
            size: d.size_bytes(),
            scheme: d.scheme,
            layout: d.layout,
            size_text: d.size.clone(),
        }
    }
}

/// What a disk's FAT volume takes from the plan.
pub struct Volume<'a> {
    pub label: &'a str,
    /// The recipe digest (the volume id derives from it).
    pub digest: &'a [u8; 32],
    /// Timestamp of every directory entry.
    pub epoch: i64,
}

pub(crate) fn params(v: &Volume) -> FatParams {
    let id = ids::derive16(v.digest, "fat-volume-id");
    FatParams {
        volume_id: u32::from_le_bytes([id[0], id[1], id[2], id[3]]),
        label: v.label.to_string(),
        hidden_sectors: 0,
        epoch: v.epoch,
    }
}

/// `a/b/install.wim` → `a/b/install` (the stem the `.swm` parts are named after).
pub(crate) fn swm_stem(path: &str) -> String {
    path.strip_suffix(".wim")
        .or_else(|| path.strip_suffix(".WIM"))
        .unwrap_or(path)
        .to_string()
}

/// Name of part `n` (1-based) as wimlib writes them: `x.swm`, `x2.swm`, …
pub(crate) fn part_name(stem: &str, n: u64) -> String {
    if n == 1 {
        format!("{stem}.swm")
    } else {
        format!("{stem}{n}.swm")
    }
}

/// Validation of a planned disk output: files FAT32 cannot hold, and whether
/// the content (with estimated image sizes) fits each partition of the
/// layout on a disk of this size.
pub fn check(d: &DiskSpec, media: &MediaTree, vol: &Volume, total_size: u64) -> Vec<Diagnostic> {
    let Some(disk_bytes) = d.size else {
        return Vec::new();
    };
    let mut diags = Vec::new();
    let mut files = Vec::new();
    for m in &media.members {
        if let Source::WimExport { largest_file, .. } = &m.source {
            // A split WIM holds each file's data whole in one part: a file
            // of 4 GiB or more makes a part FAT32 cannot hold, however the
            // image is split.
            if *largest_file > image_file_limit() {
                diags.push(
                    Diagnostic::error(
                        "outputs.disk",
                        format!(
                            "the image for {} holds a single file of {} — no FAT32 volume can hold it, and splitting the image into .swm parts does not split a file",
                            m.path,
                            human(*largest_file)
                        ),
                    )
                    .fix("build only `outputs.wim` for this image (drop `outputs.disk`), or remove that file from the image"),
                );
                continue;
            }
        }
        if m.size > split_threshold() {
            if !matches!(m.source, Source::WimExport { .. }) {
                diags.push(
                    Diagnostic::error(
                        "outputs.disk",
                        format!(
                            "{} is {} — FAT32 cannot hold a file of 4 GiB or more",
                            m.path,
                            human(m.size)
                        ),
                    )
                    .fix("split the file in its source folder, or build only `outputs.wim`"),
                );
                continue;
            }
            let stem = swm_stem(&m.path);
            let parts = m.size.div_ceil(part_bytes()) + 1;
            for n in 1..=parts {
                files.push(FatFile::from_path(
                    part_name(&stem, n),
                    PathBuf::new(),
                    m.size / parts + (1 << 20),
                ));
            }
        } else {
            // Only sizes matter for planning; exported images are estimates, so
            // leave a margin for their metadata and XML.
            let size = if m.estimated {
                m.size + m.size / 100 + (1 << 20)
            } else {
                m.size
            };
            files.push(FatFile::from_path(m.path.clone(), PathBuf::new(), size));
        }
    }
    files.extend(media.dirs.iter().map(FatFile::dir));
    let chosen = select_layout(d.layout, vol);
    let layout = match disk::layout(scheme(d.scheme), disk_bytes, &chosen.layout) {
        Ok(l) => l,
        Err(e) => {
            diags.push(Diagnostic::error("outputs.disk.size", e.to_string()).value(&d.size_text));
            return diags;
        }
    };
    // Every partition is planned with its files; the first that misses is
    // reported.
    match disk::plan_image(&layout, &chosen.files(files)) {
        Ok(_) => {}
        Err(disk::DiskError::DoesNotFit {
            short_by,
            min_disk_bytes,
            ..
        }) => diags.push(
            Diagnostic::error(
                "outputs.disk.size",
                format!(
                    "the media ({}) does not fit: the disk is short by {}",
                    human(total_size),
                    human(short_by)
                ),
            )
            .value(&d.size_text)
            .fix(format!(
                "use at least `size: {}MiB`",
                min_disk_bytes.div_ceil(1 << 20)
            )),
        ),
        Err(e) => diags.push(Diagnostic::error("outputs.disk", e.to_string()).value(&d.size_text)),
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_selects_one_fat32_media_partition_holding_every_file() {
        let digest = [7u8; 32];
        let vol = Volume {
            label: "MEDIA",
            digest: &digest,
            epoch: 0,
        };
        let chosen = select_layout(DiskLayoutKind::Single, &vol);
        assert_eq!(chosen.layout, disk::Layout::single(params(&vol)));
        let [p] = &chosen.layout.partitions[..] else {
            panic!("{:?}", chosen.layout)
        };
        assert_eq!(p.kind, disk::PartitionType::media());
        assert_eq!(p.size, disk::SizeRule::Rest);
        assert_eq!(p.fs, disk::FileSystem::Fat32(params(&vol)));
        let files = vec![
            FatFile::from_bytes("EFI/Boot/bootx64.efi", b"x".to_vec()),
            FatFile::dir("SMS/PKG"),
            FatFile::from_bytes("sources/boot.wim", b"y".to_vec()),
        ];
        let per = chosen.files(files);
        assert_eq!(per.len(), 1);
        let paths: Vec<&str> = per[0].iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["EFI/Boot/bootx64.efi", "SMS/PKG", "sources/boot.wim"]
        );
    }
}
