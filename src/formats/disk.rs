//! The raw disk image (`outputs.disk`) as the model sees it: the rules
//! that decide how the media tree lands on FAT32 (members of 4 GiB or more
//! split into `.swm` parts), the volume's parameters, and the validation of
//! a planned disk — files FAT32 cannot hold, and whether the content fits.
//! `render::disk` writes it with these same rules.

use crate::diag::Diagnostic;
use crate::disk;
use crate::fat32::{self, FatFile, FatParams};
use crate::ids;
use crate::media::{MediaTree, Source};
use crate::recipe::{DiskOutput, Scheme};
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

/// A planned disk image: `outputs.disk`, typed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiskSpec {
    /// Size in bytes (None: `outputs.disk.size` is not a size, which
    /// validation reports).
    #[serde(rename = "disk_size", skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub scheme: Scheme,
    /// The size as written in the recipe (for messages).
    #[serde(skip)]
    pub size_text: String,
}

impl DiskSpec {
    pub fn of(d: &DiskOutput) -> DiskSpec {
        DiskSpec {
            size: d.size_bytes(),
            scheme: d.scheme,
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
/// the content (with estimated image sizes) fits the disk size.
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
    let s = scheme(d.scheme);
    let layout = match disk::layout(s, disk_bytes) {
        Ok(l) => l,
        Err(e) => {
            diags.push(Diagnostic::error("outputs.disk.size", e.to_string()).value(&d.size_text));
            return diags;
        }
    };
    match disk::plan_image(s, &layout, &files, &params(vol)) {
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
