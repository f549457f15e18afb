//! Which files of the boot image go where on the media (`reference/configmgr.md`,
//! `docs/media.md`).
//!
//! The layout is the one of the ADK's WinPE `Media` folder that
//! `MakeWinPEMedia` copies, built here from the boot image's own
//! `Windows/Boot` folder: the boot managers, both BCD stores, `boot.sdi`,
//! fonts, `bootres.dll` and the language folders (`<lang>/*.mui`). What is
//! required depends on the firmware the media target: UEFI needs the EFI set
//! only (a UEFI-only WinPE has no `PCAT` folders), BIOS needs the PCAT set.
//! With `boot_image.uefi_ca: 2023` the EFI boot managers and boot fonts come
//! from `Windows/Boot/EFI_EX` and `Fonts_EX`, signed by the "Windows UEFI CA
//! 2023" (Microsoft's KB5025885 media update and its
//! `Make2023BootableMedia.ps1` copy the same files to the same places).

use crate::recipe::{Arch, TargetFirmware};
use crate::wim::DirEntry;

/// One boot file: its path on the media and the paths inside the boot image
/// it may come from, the first present one used.
#[derive(Debug, Clone)]
pub struct BootFile {
    pub media: &'static str,
    pub sources: Vec<&'static str>,
    /// Which firmware needs it.
    pub needed_by: Firmware,
}

/// The two boot paths of the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Uefi,
    Bios,
}

impl Firmware {
    pub fn of(t: TargetFirmware) -> Firmware {
        match t {
            TargetFirmware::Uefi64 | TargetFirmware::Uefi32 => Firmware::Uefi,
            TargetFirmware::Bios => Firmware::Bios,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "BIOS",
        }
    }
}

/// The boot files of both boot paths.
pub fn all(arch: Arch, ca2023: bool) -> Vec<BootFile> {
    let efi = match arch {
        Arch::X64 => "EFI/Boot/bootx64.efi",
        Arch::X86 => "EFI/Boot/bootia32.efi",
    };
    let (fw, mgr): (Vec<&'static str>, Vec<&'static str>) = if ca2023 {
        (
            vec!["Windows/Boot/EFI_EX/bootmgfw_EX.efi"],
            vec!["Windows/Boot/EFI_EX/bootmgr_EX.efi"],
        )
    } else {
        (
            vec!["Windows/Boot/EFI/bootmgfw.efi"],
            vec!["Windows/Boot/EFI/bootmgr.efi"],
        )
    };
    let sdi = vec![
        "Windows/Boot/DVD/PCAT/boot.sdi",
        "Windows/Boot/DVD/EFI/boot.sdi",
    ];
    vec![
        BootFile {
            media: efi,
            sources: fw,
            needed_by: Firmware::Uefi,
        },
        BootFile {
            media: "EFI/Microsoft/Boot/BCD",
            sources: vec!["Windows/Boot/DVD/EFI/BCD"],
            needed_by: Firmware::Uefi,
        },
        BootFile {
            media: "bootmgr.efi",
            sources: mgr,
            needed_by: Firmware::Uefi,
        },
        BootFile {
            media: "boot/boot.sdi",
            sources: sdi,
            needed_by: Firmware::Uefi,
        },
        BootFile {
            media: "bootmgr",
            sources: vec!["Windows/Boot/PCAT/bootmgr"],
            needed_by: Firmware::Bios,
        },
        BootFile {
            media: "boot/BCD",
            sources: vec!["Windows/Boot/DVD/PCAT/BCD"],
            needed_by: Firmware::Bios,
        },
    ]
}

fn find<'a>(files: &'a [DirEntry], path: &str) -> Option<&'a DirEntry> {
    files
        .iter()
        .find(|f| !f.is_dir && f.path.eq_ignore_ascii_case(path))
}

fn present<'a>(files: &'a [DirEntry], b: &BootFile) -> Option<&'a DirEntry> {
    b.sources.iter().find_map(|s| find(files, s))
}

/// Boot files the image lacks for `firmware`: (media path, the image paths
/// that would have given it).
pub fn missing(
    files: &[DirEntry],
    arch: Arch,
    ca2023: bool,
    firmware: Firmware,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = all(arch, ca2023)
        .iter()
        .filter(|b| b.needed_by == firmware && present(files, b).is_none())
        // bootmgr.efi serves CD/DVD-style UEFI boots; bootx64.efi is the one
        // the firmware starts from a disk, so only that one is required.
        .filter(|b| b.media != "bootmgr.efi")
        .map(|b| (b.media.to_string(), b.sources.join(" or ")))
        .collect();
    // A BIOS boot also needs boot.sdi (listed once, with the UEFI set).
    if firmware == Firmware::Bios {
        let sdi = &all(arch, ca2023)[3];
        if present(files, sdi).is_none() {
            out.push((sdi.media.to_string(), sdi.sources.join(" or ")));
        }
    }
    out
}

/// A language folder name: `en-US`, `zh-CN`, `sr-Latn-RS`, `qps-ploc`.
fn is_language(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| (2..=4).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_alphabetic()))
}

/// Every boot file to copy: (media path, image path as stored, size). The
/// required ones when present, then fonts, `bootres.dll`, `boot.stl` and
/// the language folders (`*.mui`).
pub fn mapping(files: &[DirEntry], arch: Arch, ca2023: bool) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for b in all(arch, ca2023) {
        if let Some(f) = present(files, &b) {
            out.push((b.media.to_string(), f.path.clone(), f.size));
        }
    }
    let fonts = if ca2023 {
        "windows/boot/fonts_ex/"
    } else {
        "windows/boot/fonts/"
    };
    for f in files.iter().filter(|f| !f.is_dir) {
        let lower = f.path.to_ascii_lowercase();
        let original = |rest: &str| f.path[f.path.len() - rest.len()..].to_string();
        if let Some(rest) = lower.strip_prefix(fonts) {
            if rest.contains('/') {
                continue;
            }
            let mut name = original(rest);
            // Fonts_EX/segmono_boot_EX.ttf → fonts/segmono_boot.ttf
            if ca2023 {
                if let Some(stem) = name
                    .strip_suffix("_EX.ttf")
                    .or_else(|| name.strip_suffix("_ex.ttf"))
                {
                    name = format!("{stem}.ttf");
                }
            }
            out.push((format!("boot/fonts/{name}"), f.path.clone(), f.size));
            out.push((
                format!("EFI/Microsoft/Boot/fonts/{name}"),
                f.path.clone(),
                f.size,
            ));
        } else if lower == "windows/boot/resources/bootres.dll" {
            out.push(("boot/resources/bootres.dll".into(), f.path.clone(), f.size));
        } else if lower == "windows/boot/efi/boot.stl" {
            out.push(("EFI/Microsoft/Boot/boot.stl".into(), f.path.clone(), f.size));
        } else if let Some(rest) = lower.strip_prefix("windows/boot/efi/") {
            // <lang>/bootmgr.efi.mui → <lang>/ at the root (bootmgr.efi's
            // resources); every <lang>/*.mui → EFI/Microsoft/Boot/<lang>/.
            if let Some((lang, file)) = rest.split_once('/') {
                if is_language(lang) && !file.contains('/') && file.ends_with(".mui") {
                    let lang = original(rest)[..lang.len()].to_string();
                    let file = original(file);
                    if file.eq_ignore_ascii_case("bootmgr.efi.mui") {
                        out.push((format!("{lang}/{file}"), f.path.clone(), f.size));
                    }
                    out.push((
                        format!("EFI/Microsoft/Boot/{lang}/{file}"),
                        f.path.clone(),
                        f.size,
                    ));
                }
            }
        } else if let Some(rest) = lower.strip_prefix("windows/boot/pcat/") {
            // <lang>/bootmgr.exe.mui, memtest.exe.mui → boot/<lang>/.
            if let Some((lang, file)) = rest.split_once('/') {
                if is_language(lang) && !file.contains('/') && file.ends_with(".mui") {
                    let lang = original(rest)[..lang.len()].to_string();
                    out.push((
                        format!("boot/{lang}/{}", original(file)),
                        f.path.clone(),
                        f.size,
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> DirEntry {
        DirEntry {
            path: p.into(),
            is_dir: false,
            size: 10,
            sha1: [0; 20],
            stored_size: 10,
            solid: false,
            offset: 0,
        }
    }

    #[test]
    fn languages_are_recognised() {
        for l in ["en-US", "zh-CN", "sr-Latn-RS", "qps-ploc", "de-de"] {
            assert!(is_language(l), "{l}");
        }
        for l in ["Fonts", "EFI", "en", "x-y-z-w", "12-34"] {
            assert!(!is_language(l), "{l}");
        }
    }

    #[test]
    fn uefi_only_winpe_lacks_nothing_for_uefi_and_pcat_for_bios() {
        let files: Vec<DirEntry> = [
            "Windows/Boot/EFI/bootmgfw.efi",
            "Windows/Boot/EFI/bootmgr.efi",
            "Windows/Boot/DVD/EFI/BCD",
            "Windows/Boot/DVD/EFI/boot.sdi",
        ]
        .iter()
        .map(|p| file(p))
        .collect();
        assert!(missing(&files, Arch::X64, false, Firmware::Uefi).is_empty());
        let bios: Vec<String> = missing(&files, Arch::X64, false, Firmware::Bios)
            .into_iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(bios, ["bootmgr", "boot/BCD"]);
        let m = mapping(&files, Arch::X64, false);
        assert!(m
            .iter()
            .any(|(d, s, _)| d == "boot/boot.sdi" && s.ends_with("DVD/EFI/boot.sdi")));
    }

    #[test]
    fn languages_and_the_2023_boot_manager_are_mapped() {
        let files: Vec<DirEntry> = [
            "Windows/Boot/EFI/bootmgfw.efi",
            "Windows/Boot/EFI_EX/bootmgfw_EX.efi",
            "Windows/Boot/EFI_EX/bootmgr_EX.efi",
            "Windows/Boot/EFI/en-US/bootmgr.efi.mui",
            "Windows/Boot/EFI/en-US/memtest.efi.mui",
            "Windows/Boot/PCAT/de-DE/bootmgr.exe.mui",
            "Windows/Boot/Fonts_EX/segmono_boot_EX.ttf",
        ]
        .iter()
        .map(|p| file(p))
        .collect();
        let m: Vec<(String, String)> = mapping(&files, Arch::X64, true)
            .into_iter()
            .map(|(d, s, _)| (d, s))
            .collect();
        let has = |d: &str, s: &str| m.iter().any(|(a, b)| a == d && b == s);
        assert!(
            has(
                "EFI/Boot/bootx64.efi",
                "Windows/Boot/EFI_EX/bootmgfw_EX.efi"
            ),
            "{m:?}"
        );
        assert!(has("bootmgr.efi", "Windows/Boot/EFI_EX/bootmgr_EX.efi"));
        assert!(has(
            "en-US/bootmgr.efi.mui",
            "Windows/Boot/EFI/en-US/bootmgr.efi.mui"
        ));
        assert!(has(
            "EFI/Microsoft/Boot/en-US/memtest.efi.mui",
            "Windows/Boot/EFI/en-US/memtest.efi.mui"
        ));
        assert!(has(
            "boot/de-DE/bootmgr.exe.mui",
            "Windows/Boot/PCAT/de-DE/bootmgr.exe.mui"
        ));
        assert!(has(
            "EFI/Microsoft/Boot/fonts/segmono_boot.ttf",
            "Windows/Boot/Fonts_EX/segmono_boot_EX.ttf"
        ));
    }
}
