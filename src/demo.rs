//! Synthetic demo inputs: a WinPE-like boot.wim, a three-edition install.wim,
//! content folders, secret files and a recipe using every section. Nothing
//! here is a real Windows file: every file says so. The same generator serves
//! the tests and the benchmarks (`size` scales the inputs).

use crate::fsutil::{set_tree_times, write_file};
use crate::recipe::Compression;
use crate::wim::{Wim, WimError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The generator's PRNG, shared with the writer's test fixtures.
pub use crate::wimwrite::testgen::Rng;

/// Many-file content of the default demo: enough folders and names to
/// exercise per-file work in every test, small enough to stay quick.
/// Benchmarks use real counts (`--files 14000`: a 4,000-file driver store
/// and a 10,000-file application).
pub const DEFAULT_FILES: usize = 1000;

/// Options of the generator.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Approximate total bytes of the inputs (default ~8 MiB).
    pub size: u64,
    /// A real EFI program to use as `Windows/Boot/EFI/bootmgfw.efi` (boot tests).
    pub efi_loader: Option<PathBuf>,
    /// Epoch for every file time inside the generated WIMs.
    pub epoch: i64,
    /// Files of the many-file content: a driver store (two files in seven)
    /// and an application tree (the rest), beside the demo's few large files.
    pub files: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            size: 8 << 20,
            efi_loader: None,
            epoch: crate::ids::DEFAULT_EPOCH,
            files: DEFAULT_FILES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    #[error(transparent)]
    Wim(#[from] WimError),
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
}

fn io_at(p: &Path) -> impl FnOnce(io::Error) -> DemoError + '_ {
    move |e| DemoError::Io(p.to_path_buf(), e)
}

/// What was generated, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoReport {
    pub recipe: PathBuf,
    pub bytes: u64,
    /// (kind, bytes) of the content mix.
    pub mix: Vec<(String, u64)>,
}

/// Kinds of synthetic content.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Incompressible, like .cab, .msi, exported WIMs.
    Random,
    /// Code-like: a small instruction vocabulary with random operands.
    Binary,
    /// Text: INF/XML/log-like lines.
    Text,
    /// Random bytes of seven bits: LZX shrinks them to ≈ 88 %, fast, so a
    /// WIM stores them compressed — as a real `install.wim` stores its files,
    /// which wimlib then exports by copying the compressed resources
    /// (random bytes would be stored raw and compressed again at every
    /// export, which real images do not cost).
    Packed,
}

const WORDS: &[&str] = &[
    "DriverVer",
    "Signature",
    "Class",
    "Provider",
    "Manufacturer",
    "HKR",
    "CopyFiles",
    "AddReg",
    "ServiceType",
    "StartType",
    "ErrorControl",
    "ServiceBinary",
    "%12%",
    "Windows",
    "System32",
    "drivers",
    "x64",
    "NTamd64",
    "DefaultInstall",
    "SourceDisksFiles",
    "version",
    "1.0.0.0",
    "<setting",
    "name=",
    "value=",
    "/>",
    "enabled",
    "true",
    "false",
    "Contoso",
    "Surface",
];

/// Streams `len` bytes of `kind` content into `path`.
pub fn write_synthetic(path: &Path, kind: Kind, len: u64, seed: u64) -> io::Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    let mut f = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let header = format!("MEDIABUILD SYNTHETIC TEST DATA - not a real Windows file ({name})\r\n");
    let mut rng = Rng::new(seed);
    let mut left = len;
    let h = header.as_bytes();
    let n = (h.len() as u64).min(left) as usize;
    f.write_all(&h[..n])?;
    left -= n as u64;
    let mut buf = vec![0u8; 64 << 10];
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        match kind {
            Kind::Random => rng.fill(&mut buf[..n]),
            Kind::Packed => {
                rng.fill(&mut buf[..n]);
                buf[..n].iter_mut().for_each(|b| *b &= 0x7F);
            }
            Kind::Binary => fill_binary(&mut rng, &mut buf[..n]),
            Kind::Text => {
                let mut i = 0;
                while i < n {
                    let w = WORDS[(rng.next_u64() % WORDS.len() as u64) as usize].as_bytes();
                    let sep: &[u8] = if rng.next_u64().is_multiple_of(7) {
                        b"\r\n"
                    } else {
                        b" "
                    };
                    for b in w.iter().chain(sep) {
                        if i < n {
                            buf[i] = *b;
                            i += 1;
                        }
                    }
                }
            }
        }
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()
}

/// Code-like bytes shaped after PE sections of drivers: mostly x86-64
/// instruction streams (a skewed opcode vocabulary, ModRM bytes, small or
/// random displacements and immediates), some data tables of small integers
/// and pointers, some UTF-16 strings. LZX shrinks it to roughly half, as it
/// does real `.sys`/`.dll` files.
fn fill_binary(rng: &mut Rng, buf: &mut [u8]) {
    const OPS: &[&[u8]] = &[
        &[0x48, 0x8B],
        &[0x48, 0x89],
        &[0xE8],
        &[0x48, 0x83, 0xEC],
        &[0x48, 0x83, 0xC4],
        &[0x8B],
        &[0x89],
        &[0x0F, 0x84],
        &[0x0F, 0x85],
        &[0x74],
        &[0x75],
        &[0xEB],
        &[0x48, 0x8D],
        &[0xFF, 0x15],
        &[0x33, 0xC0],
        &[0x85, 0xC0],
        &[0x41, 0x8B],
        &[0x4C, 0x8B],
        &[0xC3],
        &[0xCC],
        &[0x90],
        &[0x48, 0x85, 0xC9],
        &[0x0F, 0xB6],
    ];
    let mut i = 0;
    while i < buf.len() {
        let r = rng.next_u64();
        let mut emit = |bytes: &[u8]| {
            for &b in bytes {
                if i < buf.len() {
                    buf[i] = b;
                    i += 1;
                }
            }
        };
        match r % 100 {
            // Instruction: opcode, ModRM, then a displacement/immediate.
            0..=69 => {
                let op = OPS[((r >> 8) % OPS.len() as u64) as usize];
                emit(op);
                emit(&[0x40 | ((r >> 16) as u8 & 0x3F)]);
                match (r >> 24) % 4 {
                    0 => emit(&[(r >> 32) as u8]),
                    1 => emit(&((r >> 32) as u32 & 0xFFF).to_le_bytes()),
                    2 => emit(&((r >> 32) as u32).to_le_bytes()),
                    _ => {}
                }
            }
            // Data: small integers and pointers into one image.
            70..=89 => {
                let v = if r & 0x100 != 0 {
                    (r >> 32) & 0xFFFF
                } else {
                    0x1_4000_0000 + ((r >> 20) & 0xF_FFFF)
                };
                emit(&v.to_le_bytes());
            }
            // Strings: a UTF-16 word.
            _ => {
                let w = WORDS[((r >> 8) % WORDS.len() as u64) as usize];
                for ch in w.bytes() {
                    emit(&[ch, 0]);
                }
                emit(&[0, 0]);
            }
        }
    }
}

/// One file of the many-file content: its path below the package folder,
/// its kind and a relative weight for its share of the byte budget.
struct Planned {
    rel: String,
    kind: Kind,
    weight: f64,
    /// Same bytes as an earlier planned file (real trees repeat files).
    copy_of: Option<usize>,
}

/// A weight drawn log-uniformly between `lo` and `hi`: file sizes of real
/// trees span orders of magnitude (a 2 KiB `.inf` beside a 4 MiB `.sys`).
fn log_weight(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    let u = rng.below(1 << 30) as f64 / f64::from(1u32 << 30);
    (lo.ln() + u * (hi.ln() - lo.ln())).exp()
}

const VENDORS: &[&str] = &[
    "Intel",
    "Realtek",
    "Qualcomm",
    "Synaptics",
    "Broadcom",
    "AMD",
    "NVIDIA",
    "Marvell",
];
const CATEGORIES: &[&str] = &[
    "Network",
    "WLAN",
    "Bluetooth",
    "Chipset",
    "Audio",
    "Video",
    "Storage",
    "Input",
    "Camera",
    "Firmware",
];
const DRIVER_NAMES: &[&str] = &[
    "net", "wifi", "bth", "iaStor", "hda", "igfx", "usbxhc", "hid", "cam", "fw", "smbus", "gpio",
    "serial", "thermal", "mei",
];

/// A driver store as admins import it: vendor/category/driver folders, each
/// with an `.inf`, a `.cat`, a `.sys`, often co-installer `.dll`s and
/// sometimes an `x64/` subfolder, about four files a folder.
fn driver_store(rng: &mut Rng, files: usize) -> Vec<Planned> {
    let mut out = Vec::with_capacity(files);
    let mut folder = 0usize;
    while out.len() < files {
        let vendor = VENDORS[rng.below(VENDORS.len() as u64) as usize];
        let cat = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
        let name = DRIVER_NAMES[rng.below(DRIVER_NAMES.len() as u64) as usize];
        let ver = format!(
            "{}.{}.{}.{}",
            10 + rng.below(20),
            rng.below(10),
            rng.below(999),
            rng.below(9999)
        );
        let dir = format!("{vendor}/{cat}/{name}{folder:04}_{ver}");
        let sub = if rng.below(4) == 0 { "/x64" } else { "" };
        out.push(Planned {
            rel: format!("{dir}/{name}{folder:04}.inf"),
            kind: Kind::Text,
            weight: log_weight(rng, 2.0, 60.0),
            copy_of: None,
        });
        out.push(Planned {
            rel: format!("{dir}/{name}{folder:04}.cat"),
            kind: Kind::Random,
            weight: log_weight(rng, 8.0, 16.0),
            copy_of: None,
        });
        out.push(Planned {
            rel: format!("{dir}{sub}/{name}{folder:04}.sys"),
            kind: Kind::Binary,
            weight: log_weight(rng, 20.0, 2000.0),
            copy_of: None,
        });
        for d in 0..rng.below(3) {
            out.push(Planned {
                rel: format!("{dir}{sub}/{name}co{d}.dll"),
                kind: Kind::Binary,
                weight: log_weight(rng, 30.0, 1500.0),
                copy_of: None,
            });
        }
        folder += 1;
    }
    out.truncate(files);
    out
}

const APP_DIRS: &[&str] = &[
    "root/Office16",
    "root/vfs/ProgramFilesCommonX64/Microsoft Shared/OFFICE16",
    "root/vfs/System",
    "root/Templates/1033",
    "root/Licenses16",
    "root/rsod",
    "root/Integration/Addons",
];
const APP_SUBDIRS: &[&str] = &[
    "Bibliography/Style",
    "DCF",
    "Document Themes 16/Theme Variants",
    "SDXs/FA000000029",
    "ADDINS/Microsoft Power Query for Excel Integrated/bin",
    "Office Setup Controller/pkgs",
    "PROOF",
    "STARTUP",
    "1033/DataServices",
    "Modèles",
    "日本語/リソース",
    "Ελληνικά",
    "Русский/Шаблоны",
    "Ünïcödé Ordner",
];
const APP_EXT: &[(&str, Kind, f64, f64)] = &[
    ("dll", Kind::Binary, 8.0, 4000.0),
    ("xml", Kind::Text, 0.5, 40.0),
    ("png", Kind::Random, 0.3, 30.0),
    ("cab", Kind::Random, 40.0, 3000.0),
    ("xsl", Kind::Text, 2.0, 60.0),
    ("exe", Kind::Binary, 40.0, 3000.0),
    ("json", Kind::Text, 0.2, 8.0),
    ("dat", Kind::Random, 0.5, 200.0),
];

/// An application as big suites install it: thousands of files in folders
/// up to ten deep, Unicode folder and file names, a few empty files and
/// about one file in twenty a copy of another (single-instanced in a WIM).
fn app_tree(rng: &mut Rng, files: usize) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::with_capacity(files);
    let mut taken = std::collections::BTreeSet::new();
    while out.len() < files {
        let i = out.len();
        let base = APP_DIRS[rng.below(APP_DIRS.len() as u64) as usize];
        let mut dir = base.to_string();
        for _ in 0..rng.below(4) {
            dir.push('/');
            dir.push_str(APP_SUBDIRS[rng.below(APP_SUBDIRS.len() as u64) as usize]);
        }
        let (ext, kind, lo, hi) = APP_EXT[rng.below(APP_EXT.len() as u64) as usize];
        let stem = match i % 97 {
            0 => format!("naïve café résumé {i}"),
            1 => format!("説明書 {i}"),
            2 => format!("📄 notes {i}"),
            3 => format!(
                "A very long file name as setup programs write them, part {i} of the installation"
            ),
            _ => format!("mso{i:05}"),
        };
        let mut rel = format!("{dir}/{stem}.{ext}");
        let mut copy_of = None;
        if i > 20 && rng.below(20) == 0 {
            let j = rng.below(i as u64) as usize;
            let name = out[j].rel.rsplit('/').next().unwrap_or_default();
            let candidate = format!("{dir}/{name}");
            if out[j].copy_of.is_none() && taken.insert(candidate.to_lowercase()) {
                rel = candidate;
                copy_of = Some(j);
            }
        }
        if copy_of.is_none() {
            taken.insert(rel.to_lowercase());
        }
        let weight = if i % 211 == 5 {
            0.0
        } else {
            log_weight(rng, lo, hi)
        };
        out.push(Planned {
            rel,
            kind,
            weight,
            copy_of,
        });
    }
    out
}

/// Writes `plan` under `root`, sharing `budget` bytes by weight; returns
/// the bytes written per kind (random, binary, text).
fn write_planned(root: &Path, plan: &[Planned], budget: u64, seed: u64) -> io::Result<[u64; 3]> {
    let total: f64 = plan
        .iter()
        .filter(|p| p.copy_of.is_none())
        .map(|p| p.weight)
        .sum();
    let mut sizes = vec![0u64; plan.len()];
    let mut written = [0u64; 3];
    for (i, p) in plan.iter().enumerate() {
        let dst = root.join(&p.rel);
        if let Some(j) = p.copy_of {
            if let Some(d) = dst.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::copy(root.join(&plan[j].rel), &dst)?;
            sizes[i] = sizes[j];
        } else {
            let len = if total > 0.0 {
                (budget as f64 * p.weight / total) as u64
            } else {
                0
            };
            write_synthetic(&dst, p.kind, len, seed + i as u64)?;
            sizes[i] = len;
        }
        let slot = match p.kind {
            Kind::Random | Kind::Packed => 0,
            Kind::Binary => 1,
            Kind::Text => 2,
        };
        written[slot] += sizes[i];
    }
    Ok(written)
}

fn fake(path: &Path, what: &str) -> io::Result<()> {
    write_file(
        path,
        format!("MEDIABUILD FAKE {what} - not a real Windows file\r\n").as_bytes(),
    )
}

/// The boot files of `reference/configmgr.md`, under `root`.
fn boot_tree(root: &Path, efi_loader: Option<&Path>) -> io::Result<()> {
    let b = root.join("Windows/Boot");
    fake(&b.join("PCAT/bootmgr"), "bootmgr")?;
    fake(&b.join("EFI/bootmgr.efi"), "bootmgr.efi")?;
    match efi_loader {
        Some(p) => {
            std::fs::create_dir_all(b.join("EFI"))?;
            std::fs::copy(p, b.join("EFI/bootmgfw.efi"))?;
        }
        None => fake(&b.join("EFI/bootmgfw.efi"), "bootmgfw.efi")?,
    }
    fake(&b.join("DVD/PCAT/BCD"), "BCD (PCAT)")?;
    write_synthetic(&b.join("DVD/PCAT/boot.sdi"), Kind::Binary, 3 << 20, 11)?;
    fake(&b.join("DVD/EFI/BCD"), "BCD (EFI)")?;
    write_synthetic(
        &b.join("Fonts/segmono_boot.ttf"),
        Kind::Binary,
        40 << 10,
        12,
    )?;
    write_synthetic(&b.join("Fonts/wgl4_boot.ttf"), Kind::Binary, 48 << 10, 13)?;
    write_synthetic(&b.join("Resources/bootres.dll"), Kind::Binary, 90 << 10, 14)?;
    let s = root.join("Windows/System32");
    write_file(
        &s.join("winpeshl.ini"),
        b"[LaunchApps]\r\n%SYSTEMDRIVE%\\sms\\bin\\x64\\TsBootShell.exe\r\n",
    )?;
    write_synthetic(&s.join("ntoskrnl.exe"), Kind::Binary, 600 << 10, 15)?;
    write_synthetic(
        &root.join("sms/bin/x64/TsBootShell.exe"),
        Kind::Binary,
        200 << 10,
        16,
    )?;
    write_synthetic(
        &root.join("sms/bin/x64/TsmBootstrap.exe"),
        Kind::Binary,
        300 << 10,
        17,
    )?;
    Ok(())
}

/// A folder to capture as one image, its name and XML properties.
type ImageSpec<'a> = (PathBuf, &'a str, Vec<(&'a str, &'a str)>);

/// Captures `dirs` (each with an image name and XML properties) into one WIM.
fn capture(
    dest: &Path,
    images: &[ImageSpec],
    compression: Compression,
    guid_seed: u8,
    epoch: i64,
    boot: bool,
) -> Result<(), DemoError> {
    let mut w = Wim::create(compression)?;
    for (dir, name, props) in images {
        set_tree_times(dir, epoch).map_err(io_at(dir))?;
        let idx = w.add_image_from_dir(dir, name)?;
        for (k, v) in props {
            w.set_property(idx, k, v)?;
        }
    }
    w.set_guid_boot([guid_seed; 16], u32::from(boot))?;
    w.write_deterministic(dest, epoch, 0, &mut |_, _| {}, &AtomicBool::new(false))?;
    Ok(())
}

/// Writes the demo inputs and recipe into `dir`.
pub fn generate(dir: &Path, opts: &DemoOptions) -> Result<DemoReport, DemoError> {
    let tmp = dir.join(".demo-gen");
    let _ = std::fs::remove_dir_all(&tmp);
    let r = generate_in(dir, &tmp, opts);
    let _ = std::fs::remove_dir_all(&tmp);
    r
}

fn generate_in(dir: &Path, tmp: &Path, opts: &DemoOptions) -> Result<DemoReport, DemoError> {
    let s = opts.size.max(4 << 20);
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(io_at(&images))?;

    // Boot image: WinPE-like, x64.
    let boot_root = tmp.join("boot");
    boot_tree(&boot_root, opts.efi_loader.as_deref()).map_err(io_at(&boot_root))?;
    capture(
        &images.join("boot.wim"),
        &[(
            boot_root,
            "Microsoft Windows PE (x64)",
            vec![
                ("WINDOWS/ARCH", "9"),
                ("FLAGS", "9"),
                ("DESCRIPTION", "MEDIABUILD SYNTHETIC WinPE"),
            ],
        )],
        Compression::Lzx,
        0xB0,
        opts.epoch,
        true,
    )?;

    // Install image: three editions sharing most files (hard links on disk,
    // single-instanced in the WIM). Most bytes are `Packed`: stored
    // compressed in the WIM as a real image's files are, yet quick to
    // compress, so that generation stays fast at GiB scale.
    let common = tmp.join("common");
    let os_bytes = s * 40 / 100;
    let big = 64 << 20;
    let mut left = os_bytes * 85 / 100;
    let mut i = 0u64;
    while left > 0 {
        let n = left.min(big);
        let p = common.join(format!("Windows/WinSxS/Backup/payload{i:03}.cab"));
        write_synthetic(&p, Kind::Packed, n, 100 + i).map_err(io_at(&p))?;
        left -= n;
        i += 1;
    }
    let sys = common.join("Windows/System32");
    write_synthetic(
        &sys.join("kernel32.dll"),
        Kind::Binary,
        os_bytes * 10 / 100,
        200,
    )
    .map_err(io_at(&sys))?;
    write_synthetic(
        &sys.join("license.rtf"),
        Kind::Text,
        os_bytes * 5 / 100,
        201,
    )
    .map_err(io_at(&sys))?;
    let editions = [
        ("Windows 8.1 Pro", "Professional"),
        ("Windows 8.1 Enterprise", "Enterprise"),
        ("Windows 8.1 Pro N", "ProfessionalN"),
    ];
    let mut imgs = Vec::new();
    for (n, (name, edition)) in editions.iter().enumerate() {
        let root = tmp.join(format!("edition{n}"));
        link_tree(&common, &root).map_err(io_at(&root))?;
        write_file(
            &root.join("Windows/System32/edition.txt"),
            format!("MEDIABUILD SYNTHETIC {name} ({edition})\r\n").as_bytes(),
        )
        .map_err(io_at(&root))?;
        imgs.push((
            root,
            *name,
            vec![
                ("WINDOWS/ARCH", "9"),
                ("WINDOWS/EDITIONID", *edition),
                ("FLAGS", *edition),
            ],
        ));
    }
    capture(
        &images.join("install.wim"),
        &imgs,
        Compression::Lzx,
        0x1A,
        opts.epoch,
        false,
    )?;

    // Content folders.
    let c = dir.join("content");
    let files: Vec<(&str, Kind, u64)> = vec![
        ("apps/office/setup.exe", Kind::Binary, s / 100),
        ("apps/office/office.msi", Kind::Random, s * 2 / 100),
        ("apps/office/config.xml", Kind::Text, 4 << 10),
        (
            "packages/configmgr-client/ccmsetup.exe",
            Kind::Binary,
            s / 200,
        ),
        (
            "packages/configmgr-client/client.cab",
            Kind::Random,
            s * 4 / 100,
        ),
        (
            "packages/bitlocker-wtg/i386/osdbitlocker_wtg.exe",
            Kind::Binary,
            120 << 10,
        ),
        ("packages/bitlocker-wtg/readme.txt", Kind::Text, 2 << 10),
        (
            "drivers/surface/SurfaceTouch/surfacetouch.sys",
            Kind::Binary,
            s * 3 / 100,
        ),
        (
            "drivers/surface/SurfaceTouch/surfacetouch.inf",
            Kind::Text,
            s / 100,
        ),
        (
            "drivers/surface/SurfaceTouch/surfacetouch.cat",
            Kind::Random,
            12 << 10,
        ),
        (
            "drivers/surface/Network/netadapter.sys",
            Kind::Binary,
            s * 3 / 100,
        ),
        (
            "drivers/surface/Network/netadapter.inf",
            Kind::Text,
            s * 3 / 500,
        ),
        (
            "drivers/surface/Network/Long File Name Readme.txt",
            Kind::Text,
            3 << 10,
        ),
    ];
    for (n, (rel, kind, len)) in files.iter().enumerate() {
        let p = c.join(rel);
        write_synthetic(&p, *kind, *len, 300 + n as u64).map_err(io_at(&p))?;
    }
    // Many-file content, shaped like what admins import (see `driver_store`
    // and `app_tree`): 30 % and 15 % of the bytes.
    let mut rng = Rng::new(0x5EED_F11E);
    let drivers = driver_store(&mut rng, opts.files * 2 / 7);
    let store = c.join("drivers/store");
    let store_mix = write_planned(&store, &drivers, s * 30 / 100, 10_000).map_err(io_at(&store))?;
    let app = app_tree(&mut rng, opts.files - drivers.len());
    let office = c.join("apps/office");
    let app_mix = write_planned(&office, &app, s * 15 / 100, 50_000).map_err(io_at(&office))?;

    let pre = c.join("prestart/ask-user.cmd");
    write_file(
        &pre,
        b"@echo off\r\nrem MEDIABUILD SYNTHETIC prestart command\r\necho Ready to deploy.\r\n",
    )
    .map_err(io_at(&pre))?;

    // Secrets: demo values in files only the owner can read.
    let sec = dir.join("secrets");
    for (name, value) in [
        ("media-password.txt", "demo-Media-Passw0rd-2026\n"),
        ("wtg-passphrase.txt", "demo-WTG-Passphrase-2026\n"),
    ] {
        let p = sec.join(name);
        write_file(&p, value.as_bytes()).map_err(io_at(&p))?;
        set_private(&p).map_err(io_at(&p))?;
    }
    demo_pki(&sec)?;

    // The Windows To Go Creator tool is the admin's: a clearly fake stand-in
    // (with the "MZ" of a Windows program, so that validation accepts it).
    let wtg = dir.join("tools/WTGCreator.exe");
    write_file(
        &wtg,
        b"MZ - MEDIABUILD FAKE WTGCreator.exe - not a real Windows program; stands in for the admin-supplied Windows To Go Creator\r\n",
    )
    .map_err(io_at(&wtg))?;

    // The disk image must hold the media: 1 GiB, or the next power of two above 2x the inputs.
    let disk = (2 * s).next_power_of_two().max(1 << 30);
    let text = DEMO_RECIPE.replacen("size: 1GiB", &format!("size: {}MiB", disk >> 20), 1);
    let recipe = dir.join("recipe.yaml");
    write_file(&recipe, text.as_bytes()).map_err(io_at(&recipe))?;

    let mut mix = vec![
        (
            "boot image (boot.wim)".to_string(),
            size_of(&images.join("boot.wim")),
        ),
        (
            "OS image (install.wim, compressed)".to_string(),
            size_of(&images.join("install.wim")),
        ),
    ];
    let (mut random, mut binary, mut text) = (0, 0, 0);
    for (_, kind, len) in &files {
        match kind {
            Kind::Random | Kind::Packed => random += len,
            Kind::Binary => binary += len,
            Kind::Text => text += len,
        }
    }
    for m in [store_mix, app_mix] {
        random += m[0];
        binary += m[1];
        text += m[2];
    }
    mix.push(("cab/msi-like (incompressible)".into(), random));
    mix.push(("driver-like binaries".into(), binary));
    mix.push(("text (inf/xml)".into(), text));
    let bytes = mix.iter().map(|(_, b)| b).sum();
    mix.push((
        format!(
            "(of the content: {} files in a driver store and an application)",
            drivers.len() + app.len()
        ),
        store_mix.iter().chain(&app_mix).sum(),
    ));
    Ok(DemoReport { recipe, bytes, mix })
}

/// Password of the demo PKI certificate (`secrets/pki-password.txt`).
pub const DEMO_PKI_PASSWORD: &str = "demo-PKI-Pfx-Passw0rd-2026";

/// A demo "PKI" certificate for recipes that try `security.certificate.pki`:
/// `secrets/media-pki.pfx` (RSA key and certificate valid 2025-11-28 to
/// 2035-11-27, from a fixed seed: synthetic, not secret) and its password in
/// `secrets/pki-password.txt`.
fn demo_pki(sec: &Path) -> Result<(), DemoError> {
    use crate::security::{cert, pfx, SecurityError};
    let day = |s| crate::units::parse_date(s).unwrap_or_default();
    let chain = cert::self_signed(
        "demo-pki",
        "PS1",
        day("2025-11-28"),
        day("2035-11-27"),
        &[0x5A; 32],
    )?;
    let salts = pfx::Salts {
        certs: [0x11; 8],
        key: [0x22; 8],
        mac: [0x33; 8],
    };
    let bytes = pfx::write(&chain.certs, &chain.key, DEMO_PKI_PASSWORD, &salts)
        .map_err(SecurityError::Pfx)?;
    for (name, value) in [
        ("media-pki.pfx", bytes),
        (
            "pki-password.txt",
            format!("{DEMO_PKI_PASSWORD}\n").into_bytes(),
        ),
    ] {
        let p = sec.join(name);
        write_file(&p, &value).map_err(io_at(&p))?;
        set_private(&p).map_err(io_at(&p))?;
    }
    Ok(())
}

fn size_of(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[cfg(unix)]
fn set_private(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
}

/// Mirrors `from` into `to` with hard links (files) and new folders.
fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            link_tree(&e.path(), &dst)?;
        } else {
            std::fs::hard_link(e.path(), &dst)?;
        }
    }
    Ok(())
}

/// The demo recipe: every section, secrets by file reference.
pub const DEMO_RECIPE: &str = include_str!("../recipes/demo.yaml");
