//! Rules that open the inputs: WIM images (index, name, architecture, boot
//! files), content folders and files. What is learnt is kept as [`InputFacts`]
//! so the plan does not open everything a second time.

use crate::bootfiles;
use crate::diag::Diagnostic;
use crate::fsutil::{self, Walked};
use crate::recipe::*;
use crate::wim::{self, DirEntry, Wim};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One image inside a WIM, as listed for messages and plans.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    pub index: u32,
    pub name: String,
    pub arch: String,
    pub edition: Option<String>,
}

/// What validation learnt about one WIM input.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    pub path: PathBuf,
    /// The image chosen by the recipe.
    pub index: u32,
    pub name: String,
    pub arch: String,
    pub edition: Option<String>,
    pub compression: Compression,
    pub images: Vec<ImageSummary>,
    /// Files of the chosen image (the boot image's are used for boot files).
    pub files: Vec<DirEntry>,
    /// The other parts of a split WIM (`install2.swm`, …), in order; the
    /// first part is `path`.
    pub parts: Vec<PathBuf>,
    /// Some of the image's data lies in solid resources (an ESD): it is
    /// converted to a plain `.wim` when exported.
    pub solid: bool,
    /// The image file's own name (`install.esd`), also when it came out of
    /// an ISO (then `path` is the staged copy).
    pub file_name: String,
    /// For an image out of an ISO: `ISO!path/inside` (the ISO as the
    /// recipe names it), what manifests and the lockfile show as its path.
    pub origin: Option<String>,
}

impl ImageFacts {
    /// Estimated size of the image exported alone: its distinct blobs as
    /// stored. A blob of a solid resource (ESD) is recompressed on export:
    /// its share of the solid LZMS block times 1.4 (LZX in 32 KiB chunks
    /// against LZMS over the whole block: Windows 10/11 `install.wim` against
    /// `install.esd` of the same editions), never more than its own size, or
    /// its size when the conversion stores data uncompressed.
    pub fn export_estimate(&self, convert: Option<Compression>) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        self.files
            .iter()
            .filter(|f| !f.is_dir && f.size > 0 && seen.insert(f.sha1))
            .map(|f| match (f.solid, convert) {
                (true, Some(Compression::None)) => f.size,
                (true, _) => (f.stored_size + f.stored_size * 2 / 5).min(f.size),
                (false, _) => f.stored_size,
            })
            .sum::<u64>()
            + 4096
    }

    /// The largest single file of the image, with its path.
    pub fn largest_file(&self) -> Option<&DirEntry> {
        self.files
            .iter()
            .filter(|f| !f.is_dir)
            .max_by_key(|f| f.size)
    }

    /// How the export must be written: `Some(c)` converts a solid image to
    /// compression `c`; `None` keeps the source's compression.
    pub fn conversion(&self, c: Compression) -> Option<Compression> {
        self.solid.then_some(c)
    }
}

/// Everything validation learnt about the inputs.
#[derive(Debug, Default)]
pub struct InputFacts {
    pub boot: Option<ImageFacts>,
    pub os: Option<ImageFacts>,
    /// Files of each content source, keyed by the source path as written.
    pub trees: BTreeMap<PathBuf, Vec<Walked>>,
    /// Empty folders of each content source (relative; `""` for an empty
    /// source folder), keyed like `trees`.
    pub empty_dirs: BTreeMap<PathBuf, Vec<String>>,
    /// Symbolic links followed inside each content source (relative path,
    /// real target), keyed like `trees`.
    pub links: BTreeMap<PathBuf, Vec<(String, PathBuf)>>,
    /// DER of `site.root_ca_certificates`, in order.
    pub site_root_cas: Vec<Vec<u8>>,
    /// DER of `site.signing_certificate`.
    pub site_signing: Option<Vec<u8>>,
}

pub(super) fn check(r: &Recipe, dir: &Path, d: &mut Vec<Diagnostic>) -> InputFacts {
    let mut facts = InputFacts {
        boot: boot_image(r, dir, d),
        os: os_image(r, dir, d),
        ..Default::default()
    };
    let mut sources: Vec<(String, &Path)> = Vec::new();
    for (sec, list) in [
        ("applications", &r.applications),
        ("packages", &r.packages),
        ("driver_packages", &r.driver_packages),
    ] {
        for (i, c) in list.iter().enumerate() {
            sources.push((format!("{sec}[{i}].source"), &c.source));
        }
    }
    if let Some(f) = r.prestart.as_ref().and_then(|p| p.files.as_ref()) {
        sources.push(("prestart.files".into(), f));
    }
    for (key, src) in sources {
        let abs = dir.join(src);
        match fsutil::walk_all(&abs) {
            Ok(fsutil::Tree {
                files,
                empty,
                links,
            }) => {
                if !empty.is_empty() {
                    facts.empty_dirs.insert(src.to_path_buf(), empty);
                }
                if !links.is_empty() {
                    facts.links.insert(src.to_path_buf(), links);
                }
                // Names Windows cannot open (the media are read by Windows PE).
                let reserved: Vec<&str> = files
                    .iter()
                    .filter(|w| w.rel.split('/').any(super::rules::is_reserved_windows_name))
                    .map(|w| w.rel.as_str())
                    .take(3)
                    .collect();
                if !reserved.is_empty() {
                    d.push(
                        Diagnostic::error(key.clone(), "holds a file Windows cannot open: its name is a device name (CON, PRN, AUX, NUL, COM1–9, LPT1–9)")
                            .value(reserved.join(", "))
                            .fix("rename or remove it in the source folder"),
                    );
                }
                facts.trees.insert(src.to_path_buf(), files);
            }
            Err(e) => {
                let fix = match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                        "check the path (relative to the recipe's folder) and its permissions"
                    }
                    // A link out of the folder, a name that is not UTF-8, …:
                    // the message says what to change in the source folder.
                    _ => "change what the message names in the source folder",
                };
                d.push(
                    Diagnostic::error(key, format!("cannot read source: {e}"))
                        .value(src.display())
                        .fix(fix),
                )
            }
        }
    }
    for (key, f) in [
        (
            "security.certificate.pki.file",
            r.security
                .certificate
                .as_ref()
                .and_then(|c| c.pki.as_ref())
                .map(|p| &p.file),
        ),
        (
            "outputs.creator_package.creator",
            r.outputs.creator_package.as_ref().map(|c| &c.creator),
        ),
    ] {
        if let Some(f) = f {
            if let Err(e) = fsutil::open_regular(&dir.join(f)) {
                d.push(
                    Diagnostic::error(key, format!("cannot read file: {e}"))
                        .value(f.display())
                        .fix("check the path (relative to the recipe's folder)"),
                );
            }
        }
    }
    creator_tool(r, dir, d);
    pki_certificate(r, dir, d);
    site_certificates(r, dir, d, &mut facts);
    if let Some(b) = &r.bitlocker {
        if let Some(p) = r.packages.iter().find(|p| p.id == b.package) {
            if let Some(files) = facts.trees.get(&p.source) {
                let has = files
                    .iter()
                    .any(|w| w.rel.eq_ignore_ascii_case("i386/osdbitlocker_wtg.exe"));
                if !has {
                    d.push(
                        Diagnostic::error("bitlocker.package", "the package does not hold i386/osdbitlocker_wtg.exe")
                            .value(&b.package)
                            .fix("point `bitlocker.package` at the package with the Windows To Go BitLocker tool"),
                    );
                }
            }
        }
    }
    facts
}

/// `outputs.creator_package.creator` must be a Windows program (an unreadable
/// one is reported above).
fn creator_tool(r: &Recipe, dir: &Path, d: &mut Vec<Diagnostic>) {
    use std::io::Read;
    let Some(c) = &r.outputs.creator_package else {
        return;
    };
    let key = "outputs.creator_package.creator";
    let path = dir.join(&c.creator);
    if path.is_dir() {
        d.push(
            Diagnostic::error(key, "a folder, not the creator tool")
                .value(c.creator.display())
                .fix("give the path of WTGCreator.exe itself"),
        );
        return;
    }
    let mut magic = [0u8; 2];
    let Ok(mut f) = fsutil::open_regular(&path) else {
        return;
    };
    if f.read_exact(&mut magic).is_err() || &magic != b"MZ" {
        d.push(
            Diagnostic::error(key, "not a Windows program (no MZ header)")
                .value(c.creator.display())
                .fix("give the WTGCreator.exe supplied with your Windows To Go tooling"),
        );
    }
}

/// `security.certificate.pki`: the .pfx opens with its password, holds an
/// RSA private key and its certificate, and the certificate's dates suit
/// today. Skipped when the password is not available yet (`secrets` says so).
fn pki_certificate(r: &Recipe, dir: &Path, d: &mut Vec<Diagnostic>) {
    use crate::security::{cert, SecurityError};
    let Some(p) = r.security.certificate.as_ref().and_then(|c| c.pki.as_ref()) else {
        return;
    };
    if p.password.resolve(dir).is_err() || fsutil::open_regular(&dir.join(&p.file)).is_err() {
        return;
    }
    let file = "security.certificate.pki.file";
    match crate::security::import_pki(r, dir) {
        Ok(Some(chain)) => {
            let (f, u) = (chain.not_before_days, chain.not_after_days);
            let values = (cert::ymd(f), cert::ymd(u));
            if let Some(diag) =
                super::rules::date_diags("security.certificate.pki", f, u, (&values.0, &values.1))
            {
                let msg = format!("{} ({})", diag.message, chain.subject);
                d.push(
                    Diagnostic {
                        message: msg,
                        ..diag
                    }
                    .value(p.file.display()),
                );
            }
        }
        Ok(None) => {}
        Err(e) => {
            let (key, fix) = match &e {
                SecurityError::Pfx(crate::security::pfx::PfxError::WrongPassword) => (
                    "security.certificate.pki.password",
                    "give the password the .pfx was exported with",
                ),
                SecurityError::NoPrivateKey | SecurityError::KeyMismatch => (
                    file,
                    "export the certificate again from the certificate store with \"Yes, export the private key\"",
                ),
                SecurityError::NotRsa(_) => (file, "request a client authentication certificate with an RSA key"),
                _ => (file, "give a PKCS#12 (.pfx) file exported with its private key"),
            };
            let mut diag = Diagnostic::error(key, e.to_string()).fix(fix);
            diag = if key == file {
                diag.value(p.file.display())
            } else {
                diag.secret()
            };
            d.push(diag);
        }
    }
}

/// Opens an image source: a `.wim`, an `.esd` (solid), or the first part of
/// a split WIM (`install.swm`), whose other parts are found by wimlib's and
/// DISM's naming (`install2.swm`, `install3.swm`, … beside it) and checked
/// to belong to it.
fn open(
    key: &str,
    dir: &Path,
    src: &Path,
    iso_path: Option<&str>,
    defaults: &[&str],
    d: &mut Vec<Diagnostic>,
) -> Option<Opened> {
    let abs = dir.join(src);
    if let Err(e) = fsutil::open_regular(&abs) {
        d.push(
            Diagnostic::error(key, format!("cannot read the WIM file: {e}"))
                .value(src.display())
                .fix("check the path (relative to the recipe's folder)"),
        );
        return None;
    }
    let iso_key = format!("{}.iso_path", key.trim_end_matches(".source"));
    if isoread::Iso::is_iso(&abs) {
        return match super::iso::stage(&abs, iso_path, defaults) {
            Ok(s) => {
                let (wim, parts) = open_wim(key, &s.path, src, d)?;
                Some(Opened {
                    wim,
                    parts,
                    name: s.name,
                    origin: Some(format!("{}!{}", src.display(), s.inner)),
                })
            }
            Err(e) => {
                d.push(
                    Diagnostic::error(
                        if iso_path.is_some() { iso_key.as_str() } else { key },
                        format!("cannot take the image out of the ISO: {e}"),
                    )
                    .value(iso_path.map_or_else(|| src.display().to_string(), str::to_string))
                    .fix("give the image's path inside the ISO with `iso_path:` (e.g. `sources/install.wim`), or point `source:` at the .wim"),
                );
                None
            }
        };
    }
    let named_iso = src
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("iso"));
    if named_iso {
        d.push(
            Diagnostic::error(
                key,
                "named .iso but not an ISO image: no ISO 9660 or UDF volume descriptor at 32 KiB",
            )
            .value(src.display())
            .fix("a damaged or partial download? check it against its published checksum, or download it again"),
        );
        return None;
    }
    if iso_path.is_some() {
        d.push(
            Diagnostic::error(
                iso_key.as_str(),
                "`iso_path` is for a `source:` that is an ISO image",
            )
            .value(src.display())
            .fix("remove `iso_path`, or point `source:` at the ISO"),
        );
        return None;
    }
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (wim, parts) = open_wim(key, &abs, src, d)?;
    Some(Opened {
        wim,
        parts,
        name,
        origin: None,
    })
}

/// An opened image source: the WIM (first part), its other parts, and the
/// image file's own name (`install.esd`, also when it came out of an ISO).
struct Opened {
    wim: Wim,
    parts: Vec<PathBuf>,
    name: String,
    origin: Option<String>,
}

/// Opens a WIM file and, for the first part of a split WIM, finds and checks
/// the other parts beside it.
fn open_wim(
    key: &str,
    abs: &Path,
    src: &Path,
    d: &mut Vec<Diagnostic>,
) -> Option<(Wim, Vec<PathBuf>)> {
    let w = match Wim::open(abs) {
        Ok(w) => w,
        Err(e) => {
            d.push(
                Diagnostic::error(key, format!("not a readable WIM: {e}"))
                    .value(src.display())
                    .fix("give a .wim, .esd or the first .swm part of a split WIM"),
            );
            return None;
        }
    };
    let info = w.info();
    if info.total_parts <= 1 {
        return Some((w, Vec::new()));
    }
    if info.part_number != 1 {
        d.push(
            Diagnostic::error(
                key,
                format!(
                    "this is part {} of {} of a split WIM",
                    info.part_number, info.total_parts
                ),
            )
            .value(src.display())
            .fix("give the first part (`install.swm`); the others are found beside it"),
        );
        return None;
    }
    let parts = split_parts(abs, info.total_parts);
    let mut ok = Vec::new();
    for (n, p) in parts.iter().enumerate() {
        let n = n as u16 + 2;
        let problem = match fsutil::open_regular(p)
            .map_err(|e| e.to_string())
            .and_then(|_| Wim::open(p).map_err(|e| e.to_string()))
        {
            Err(e) => Some(format!(
                "part {n} of {} of the split WIM, {}, is missing or unreadable ({e})",
                info.total_parts,
                p.display()
            )),
            Ok(pw) => {
                let pi = pw.info();
                if pi.guid != info.guid || pi.part_number != n || pi.total_parts != info.total_parts
                {
                    Some(format!(
                        "{} is not part {n} of this split WIM (it is part {} of {}, {})",
                        p.display(),
                        pi.part_number,
                        pi.total_parts,
                        if pi.guid == info.guid {
                            "same WIM"
                        } else {
                            "another WIM"
                        }
                    ))
                } else {
                    None
                }
            }
        };
        match problem {
            Some(m) => d.push(
                Diagnostic::error(key, m)
                    .value(p.display())
                    .fix("put every part of the split WIM beside the first (`install.swm`, `install2.swm`, …), as DISM /Split-Image wrote them"),
            ),
            None => ok.push(p.clone()),
        }
    }
    (ok.len() == parts.len()).then_some((w, parts))
}

/// The files beside a `.swm` first part that are named like its other
/// parts (`install2.swm`, …), whatever the header says.
fn swm_siblings(first: &Path) -> Vec<PathBuf> {
    let is_swm = first
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("swm"));
    let (Some(stem), Some(parent)) = (first.file_stem(), first.parent()) else {
        return Vec::new();
    };
    if !is_swm {
        return Vec::new();
    }
    let stem = stem.to_string_lossy().to_ascii_lowercase();
    let mut out: Vec<PathBuf> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_ascii_lowercase();
            n.strip_suffix(".swm")
                .and_then(|b| b.strip_prefix(stem.as_str()))
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Paths of parts 2..=`total` of the split WIM whose first part is `first`:
/// `dir/stem.swm` → `dir/stem2.swm`, `dir/stem3.swm`, … (the naming of
/// wimlib's `wimlib_split` and DISM's `/Split-Image`).
pub(crate) fn split_parts(first: &Path, total: u16) -> Vec<PathBuf> {
    let stem = first
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = first
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "swm".into());
    (2..=total)
        .map(|n| first.with_file_name(format!("{stem}{n}.{ext}")))
        .collect()
}

fn summaries(w: &Wim) -> Vec<ImageSummary> {
    (1..=w.info().image_count)
        .map(|i| ImageSummary {
            index: i,
            name: w.property(i, "NAME").unwrap_or_default(),
            arch: w
                .property(i, "WINDOWS/ARCH")
                .map(|a| wim::arch_name(&a).to_string())
                .unwrap_or_else(|| "unknown".into()),
            edition: w
                .property(i, "WINDOWS/EDITIONID")
                .or_else(|| w.property(i, "FLAGS")),
        })
        .collect()
}

fn listing(images: &[ImageSummary]) -> String {
    images
        .iter()
        .map(|s| format!("{} {:?} ({})", s.index, s.name, s.arch))
        .collect::<Vec<_>>()
        .join(", ")
}

fn facts(
    Opened {
        wim: w,
        parts,
        name: file_name,
        origin,
    }: &Opened,
    index: u32,
    images: Vec<ImageSummary>,
    d: &mut Vec<Diagnostic>,
    key: &str,
) -> Option<ImageFacts> {
    let files = match w.list(index) {
        Ok(f) => f,
        Err(e) => {
            d.push(Diagnostic::error(
                key,
                format!("cannot list the image: {e}"),
            ));
            return None;
        }
    };
    let s = images.iter().find(|s| s.index == index)?.clone();
    let solid = files.iter().any(|f| f.solid);
    Some(ImageFacts {
        parts: parts.clone(),
        solid,
        file_name: file_name.clone(),
        origin: origin.clone(),
        path: w.path().to_path_buf(),
        index,
        name: s.name,
        arch: s.arch,
        edition: s.edition,
        compression: w.info().compression,
        images,
        files,
    })
}

fn boot_image(r: &Recipe, dir: &Path, d: &mut Vec<Diagnostic>) -> Option<ImageFacts> {
    let b = &r.boot_image;
    let w = open(
        "boot_image.source",
        dir,
        &b.source,
        b.iso_path.as_deref(),
        &super::iso::BOOT_IMAGE_PATHS,
        d,
    )?;
    let images = summaries(&w.wim);
    if b.index == 0 || b.index as usize > images.len() {
        d.push(
            Diagnostic::error(
                "boot_image.index",
                format!("{} has no image {}", b.source.display(), b.index),
            )
            .value(b.index)
            .fix(format!("choose one of: {}", listing(&images))),
        );
        return None;
    }
    let f = facts(&w, b.index, images, d, "boot_image.index")?;
    if f.arch != b.arch.as_str() {
        d.push(
            Diagnostic::error(
                "boot_image.arch",
                format!("the boot image is {} (WINDOWS/ARCH in the WIM)", f.arch),
            )
            .value(b.arch.as_str())
            .fix(format!(
                "write `arch: {}` or choose a boot image of the intended architecture",
                f.arch
            )),
        );
    }
    let fw = r.media.target_firmware;
    let needs = match fw {
        TargetFirmware::Uefi64 => Some(Arch::X64),
        TargetFirmware::Uefi32 => Some(Arch::X86),
        TargetFirmware::Bios => None,
    };
    if let Some(need) = needs {
        if b.arch != need {
            d.push(
                Diagnostic::error(
                    "boot_image.arch",
                    format!("{:?} firmware boots only {} boot images", fw, need.as_str()),
                )
                .value(b.arch.as_str())
                .fix(format!(
                    "use an {} boot image, or set `media.target_firmware` to the computers' real firmware",
                    need.as_str()
                )),
            );
        }
    }
    let target = bootfiles::Firmware::of(fw);
    if b.ca2023() {
        let lacks: Vec<&str> = [
            "Windows/Boot/EFI_EX/bootmgfw_EX.efi",
            "Windows/Boot/Fonts_EX",
        ]
        .into_iter()
        .filter(|p| !f.files.iter().any(|e| e.path.eq_ignore_ascii_case(p)))
        .collect();
        if !lacks.is_empty() {
            d.push(
                Diagnostic::error(
                    "boot_image.uefi_ca",
                    format!(
                        "the boot image has no boot manager signed by the 2023 UEFI CA: it lacks {}",
                        lacks.join(" and ")
                    ),
                )
                .value(2023)
                .fix("use a boot image from an ADK/WinPE with the 2023-CA boot files (Windows/Boot/EFI_EX, Fonts_EX), or write `uefi_ca: 2011`"),
            );
        }
    }
    for (media, from) in bootfiles::missing(&f.files, b.arch, b.ca2023(), target) {
        d.push(
            Diagnostic::error(
                "boot_image.source",
                format!(
                    "the boot image lacks {from}, which {} boot needs (as {media} on the media)",
                    target.name()
                ),
            )
            .value(b.source.display())
            .fix(match target {
                bootfiles::Firmware::Bios => "use a WinPE boot image with the BIOS boot files (Windows/Boot/PCAT, Windows/Boot/DVD/PCAT), or set `media.target_firmware: uefi64`",
                bootfiles::Firmware::Uefi => "use a WinPE boot image that carries the UEFI boot files (Windows/Boot/EFI, Windows/Boot/DVD/EFI)",
            }),
        );
    }
    let other = match target {
        bootfiles::Firmware::Uefi => bootfiles::Firmware::Bios,
        bootfiles::Firmware::Bios => bootfiles::Firmware::Uefi,
    };
    let lacking: Vec<String> = bootfiles::missing(&f.files, b.arch, b.ca2023(), other)
        .into_iter()
        .map(|(_, from)| from)
        .collect();
    if !lacking.is_empty() {
        d.push(
            Diagnostic::warning(
                "boot_image.source",
                format!(
                    "the media will not boot with {} firmware: the boot image lacks {}",
                    other.name(),
                    lacking.join(", ")
                ),
            )
            .value(b.source.display()),
        );
    }
    Some(f)
}

fn os_image(r: &Recipe, dir: &Path, d: &mut Vec<Diagnostic>) -> Option<ImageFacts> {
    let o = &r.os_image;
    let index = match (&o.index, &o.image) {
        (Some(_), Some(_)) | (None, None) => {
            d.push(
                Diagnostic::error("os_image", "give exactly one of `index` or `image`")
                    .fix("`index: 3` or `image: \"Windows 8 Enterprise\"`"),
            );
            None
        }
        _ => Some(()),
    };
    let w = open(
        "os_image.source",
        dir,
        &o.source,
        o.iso_path.as_deref(),
        &super::iso::OS_IMAGE_PATHS,
        d,
    )?;
    index?;
    let images = summaries(&w.wim);
    let chosen = if let Some(i) = o.index {
        if i == 0 || i as usize > images.len() {
            d.push(
                Diagnostic::error(
                    "os_image.index",
                    format!("{} has no image {i}", o.source.display()),
                )
                .value(i)
                .fix(format!("choose one of: {}", listing(&images))),
            );
            return None;
        }
        i
    } else {
        let name = o.image.as_deref().unwrap_or_default();
        match images.iter().find(|s| s.name == name) {
            Some(s) => s.index,
            None => {
                d.push(
                    Diagnostic::error(
                        "os_image.image",
                        format!("{} has no image named {name:?}", o.source.display()),
                    )
                    .value(format!("{name:?}"))
                    .fix(format!("choose one of: {}", listing(&images))),
                );
                return None;
            }
        }
    };
    facts(&w, chosen, images, d, "os_image")
}

/// `site.root_ca_certificates` and `site.signing_certificate`: each must be an
/// X.509 certificate (DER or PEM); their DER goes into the media variables.
fn site_certificates(r: &Recipe, dir: &Path, d: &mut Vec<Diagnostic>, facts: &mut InputFacts) {
    let read = |key: String, f: &PathBuf, d: &mut Vec<Diagnostic>| {
        match crate::security::cert::read_certificate_file(&dir.join(f)) {
            Ok(der) => Some(der),
            Err(e) => {
                d.push(
                    Diagnostic::error(key, e)
                        .value(f.display())
                        .fix("give the certificate file (DER `.cer` or PEM), relative to the recipe's folder"),
                );
                None
            }
        }
    };
    for (i, f) in r.site.root_ca_certificates.iter().enumerate() {
        if let Some(der) = read(format!("site.root_ca_certificates[{i}]"), f, d) {
            facts.site_root_cas.push(der);
        }
    }
    if let Some(f) = &r.site.signing_certificate {
        facts.site_signing = read("site.signing_certificate".into(), f, d);
    }
}

/// Every input the recipe names, with its key: the recipe itself (and its
/// lockfile), images, content, prestart files, secret files, certificates,
/// the creator tool.
pub(crate) fn input_paths(r: &Recipe, dir: &Path, recipe_file: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = vec![
        ("the recipe".into(), recipe_file.to_path_buf()),
        (
            "the recipe's lockfile".into(),
            crate::recipe::lock_path(recipe_file),
        ),
        ("boot_image.source".into(), dir.join(&r.boot_image.source)),
        ("os_image.source".into(), dir.join(&r.os_image.source)),
    ];
    for (key, src) in [
        ("boot_image.source", &r.boot_image.source),
        ("os_image.source", &r.os_image.source),
    ] {
        for p in swm_siblings(&dir.join(src)) {
            v.push((format!("{key} (split part)"), p));
        }
    }
    for (sec, list) in [
        ("applications", &r.applications),
        ("packages", &r.packages),
        ("driver_packages", &r.driver_packages),
    ] {
        for (i, c) in list.iter().enumerate() {
            v.push((format!("{sec}[{i}].source"), dir.join(&c.source)));
        }
    }
    if let Some(f) = r.prestart.as_ref().and_then(|p| p.files.as_ref()) {
        v.push(("prestart.files".into(), dir.join(f)));
    }
    for (key, s) in super::rules::secret_refs(r) {
        if let Some(f) = &s.file {
            v.push((format!("{key}.file"), dir.join(f)));
        }
    }
    if let Some(p) = r.security.certificate.as_ref().and_then(|c| c.pki.as_ref()) {
        v.push(("security.certificate.pki.file".into(), dir.join(&p.file)));
    }
    for (i, f) in r.site.root_ca_certificates.iter().enumerate() {
        v.push((format!("site.root_ca_certificates[{i}]"), dir.join(f)));
    }
    if let Some(f) = &r.site.signing_certificate {
        v.push(("site.signing_certificate".into(), dir.join(f)));
    }
    if let Some(c) = &r.outputs.creator_package {
        v.push((
            "outputs.creator_package.creator".into(),
            dir.join(&c.creator),
        ));
    }
    v
}

/// A file's identity (device, inode): equal for the same file reached
/// through symlinks, `..`, another case on a case-insensitive file system, or
/// a hard link.
fn identity(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// The identities of `p` (when it exists) and of every existing folder above
/// it, with the deepest existing one resolved (`canonicalize`), and that
/// real path.
fn chain(p: &Path) -> (Vec<(u64, u64)>, Option<PathBuf>) {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while identity(&existing).is_none() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_os_string());
                existing = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => return (Vec::new(), None),
        }
    }
    let Ok(real) = existing.canonicalize() else {
        return (Vec::new(), None);
    };
    let ids = real.ancestors().filter_map(identity).collect();
    let mut full = real;
    for n in rest.iter().rev() {
        full.push(n);
    }
    (ids, Some(full))
}

/// No output — nor the output folder — is, contains or lies inside an input,
/// compared by file identity after resolving symlinks and `..`; no output
/// path leaves the output folder through a symlink (issue 21, items 1 and 5).
pub(super) fn outputs_apart(r: &Recipe, dir: &Path, recipe_file: &Path, d: &mut Vec<Diagnostic>) {
    let o = &r.outputs;
    let out_dir = dir.join(&o.dir);
    // (key, path, as the recipe writes it)
    let mut outputs: Vec<(String, PathBuf, String)> = Vec::new();
    let mut named = |key: &str, p: &Path| {
        let abs = out_dir.join(p);
        let manifest = crate::recipe::manifest_path(&abs);
        outputs.push((key.to_string(), abs, p.display().to_string()));
        outputs.push((
            format!("{key} (its manifest)"),
            manifest,
            format!("{}.manifest.json", p.display()),
        ));
    };
    if let Some(w) = &o.wim {
        named("outputs.wim", w);
    }
    if let Some(disk) = &o.disk {
        named("outputs.disk.path", &disk.path);
    }
    if let Some(c) = &o.creator_package {
        named("outputs.creator_package.path", &c.path);
    }
    outputs.push((
        "outputs.dir (its SHA256SUMS)".into(),
        out_dir.join("SHA256SUMS"),
        format!("{}/SHA256SUMS", o.dir.display()),
    ));
    type FileId = (u64, u64);
    // (key, path, its identity, identities of it and the folders above it)
    let inputs: Vec<(String, PathBuf, Option<FileId>, Vec<FileId>)> =
        input_paths(r, dir, recipe_file)
            .into_iter()
            .map(|(k, p)| {
                let id = identity(&p);
                let (above, _) = chain(&p);
                (k, p, id, above)
            })
            .collect();
    let (dir_chain, real_dir) = chain(&out_dir);
    let base_key = |k: &str| k.split(" (").next().unwrap_or(k).to_string();
    // The output folder may hold inputs (`dir: .`), but not lie inside one.
    for (ik, ip, iid, _) in &inputs {
        if let Some(iid) = iid {
            if dir_chain.contains(iid) {
                d.push(
                    Diagnostic::error("outputs.dir", format!("the output folder lies inside {ik} ({}): the next build would take in the artefacts", ip.display()))
                        .value(o.dir.display())
                        .fix("choose an output folder outside every input"),
                );
            }
        }
    }
    for (ok, op, shown) in &outputs {
        let (oc, real) = chain(op);
        let oid = identity(op);
        for (ik, ip, iid, above) in &inputs {
            let hit = match (iid, oid) {
                (Some(i), Some(o)) if *i == o => Some("is"),
                _ if iid.is_some_and(|i| oc.contains(&i)) => Some("lies inside"),
                (_, Some(o)) if above.contains(&o) => Some("contains"),
                _ => None,
            };
            if let Some(how) = hit {
                d.push(
                    Diagnostic::error(
                        base_key(ok),
                        format!("this output {how} {ik} ({}): a build would overwrite an input", ip.display()),
                    )
                    .value(shown)
                    .fix("write the outputs to their own folder (`outputs.dir`), apart from every input"),
                );
            }
        }
        // Through a symlink out of the output folder.
        if let (Some(real), Some(real_dir)) = (&real, &real_dir) {
            if !real.starts_with(real_dir) {
                d.push(
                    Diagnostic::error(
                        base_key(ok),
                        "output path leaves the output folder through a symbolic link",
                    )
                    .value(format!("{shown} → {}", real.display()))
                    .fix("write the outputs to a real folder inside `outputs.dir`"),
                );
            }
        }
    }
}
