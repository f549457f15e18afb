//! Which files of the boot image go where on the media (`reference/configmgr.md`).

use crate::recipe::Arch;
use crate::wim::DirEntry;

/// (path on the media, path inside the boot image) of the required boot files.
pub fn required(arch: Arch) -> [(&'static str, &'static str); 6] {
    let efi = match arch {
        Arch::X64 => "EFI/Boot/bootx64.efi",
        Arch::X86 => "EFI/Boot/bootia32.efi",
    };
    [
        ("bootmgr", "Windows/Boot/PCAT/bootmgr"),
        ("bootmgr.efi", "Windows/Boot/EFI/bootmgr.efi"),
        ("boot/BCD", "Windows/Boot/DVD/PCAT/BCD"),
        ("boot/boot.sdi", "Windows/Boot/DVD/PCAT/boot.sdi"),
        (efi, "Windows/Boot/EFI/bootmgfw.efi"),
        ("EFI/Microsoft/Boot/BCD", "Windows/Boot/DVD/EFI/BCD"),
    ]
}

fn find<'a>(files: &'a [DirEntry], path: &str) -> Option<&'a DirEntry> {
    files
        .iter()
        .find(|f| !f.is_dir && f.path.eq_ignore_ascii_case(path))
}

/// Required boot files the image lacks, by their path inside the image.
pub fn missing(files: &[DirEntry], arch: Arch) -> Vec<String> {
    required(arch)
        .iter()
        .filter(|(_, src)| find(files, src).is_none())
        .map(|(_, src)| src.to_string())
        .collect()
}

/// Every boot file to copy: (media path, image path as stored, size).
/// Fonts and boot resources are copied when present.
pub fn mapping(files: &[DirEntry], arch: Arch) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for (dst, src) in required(arch) {
        if let Some(f) = find(files, src) {
            out.push((dst.to_string(), f.path.clone(), f.size));
        }
    }
    for f in files.iter().filter(|f| !f.is_dir) {
        let lower = f.path.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("windows/boot/fonts/") {
            let name = &f.path[f.path.len() - rest.len()..];
            out.push((format!("boot/fonts/{name}"), f.path.clone(), f.size));
            out.push((
                format!("EFI/Microsoft/Boot/fonts/{name}"),
                f.path.clone(),
                f.size,
            ));
        } else if lower == "windows/boot/resources/bootres.dll" {
            out.push(("boot/resources/bootres.dll".into(), f.path.clone(), f.size));
        }
    }
    out
}
