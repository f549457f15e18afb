//! Test helpers around independent tools, shared by the `fat32` and `disk` tests and
//! the product's integration tests (feature `testutil`): tool lookup with a clear skip message,
//! sparse extraction of a partition, `fsck.fat -n`, mtools, sfdisk/sgdisk, reading a
//! volume back with the `fatfs` crate, and the QEMU + OVMF boot check with a GRUB
//! stand-in boot loader built at test time.
//!
//! Nothing here needs root: partitions are checked as plain files.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What the stand-in boot loader prints on the serial console.
pub const BOOT_MARKER: &str = "MEDIABUILD-BOOT-MARKER-OK";
/// OVMF firmware image (Debian package `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/ovmf/OVMF.fd";

/// Full path of `tool`, searched in `PATH` and the sbin directories (fsck.fat, sfdisk
/// and sgdisk live there and are often not in a normal user's `PATH`).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// `Some(path)` when every tool is installed; otherwise prints why the test is skipped.
pub fn require(tools: &[&str]) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    for tool in tools {
        match find_tool(tool) {
            Some(p) => found.push(p),
            None => {
                eprintln!("skipping: {tool} not installed");
                return None;
            }
        }
    }
    Some(found)
}

/// Runs a command, returning its output or a description of why it could not start.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Copies `len` bytes at `offset` of `src` into a new file `dest`, leaving all-zero
/// MiB blocks as holes (a 32 GiB partition with little content copies in milliseconds).
pub fn extract_range(src: &Path, offset: u64, len: u64, dest: &Path) -> std::io::Result<()> {
    let mut input = File::open(src)?;
    let mut output = File::create(dest)?;
    output.set_len(len)?;
    input.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        input.read_exact(&mut buf[..want])?;
        if buf[..want].iter().any(|&b| b != 0) {
            output.seek(SeekFrom::Start(done))?;
            output.write_all(&buf[..want])?;
        }
        done += want as u64;
    }
    Ok(())
}

/// Runs `fsck.fat -n` on a volume file. Clean means exit 0 AND exactly the two normal
/// lines (banner and summary): several problems print a message but still exit 0.
/// Returns the summary line.
pub fn fsck_clean(volume: &Path) -> Result<String, String> {
    let fsck = find_tool("fsck.fat").ok_or("fsck.fat not installed")?;
    let out = run(Command::new(fsck).arg("-n").arg(volume))?;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    if out.status.success() && lines.len() == 2 && lines[0].starts_with("fsck.fat") {
        Ok(lines[1].to_string())
    } else {
        Err(format!(
            "fsck.fat -n is not clean ({}):\n{stdout}{stderr}",
            out.status
        ))
    }
}

/// `fsck_clean` on the partition of a disk image, extracted to a temporary file.
pub fn fsck_partition(image: &Path, offset: u64, len: u64) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let part = dir.path().join("partition.img");
    extract_range(image, offset, len, &part).map_err(|e| format!("extract: {e}"))?;
    fsck_clean(&part)
}

/// mtools command on the volume at byte `offset` of `image`.
fn mtools(tool: &str, image: &Path, offset: u64, args: &[&str]) -> Result<String, String> {
    let path = find_tool(tool).ok_or(format!("{tool} not installed"))?;
    let target = format!("{}@@{offset}", image.display());
    // MTOOLS_SKIP_CHECK: do not second-guess the geometry of a plain image file.
    let out = run(Command::new(path)
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(target)
        .args(args))?;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!(
            "{tool} {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        ))
    }
}

/// `mdir` of a directory of the volume (e.g. `::/EFI/Boot`).
pub fn mdir(image: &Path, offset: u64, dir: &str) -> Result<String, String> {
    mtools("mdir", image, offset, &[dir])
}

/// Reads one file of the volume through `mcopy`.
pub fn mcopy_out(
    image: &Path,
    offset: u64,
    fat_path: &str,
    dest: &Path,
) -> Result<Vec<u8>, String> {
    let source = format!("::/{fat_path}");
    let dest_s = dest.to_string_lossy().into_owned();
    mtools("mcopy", image, offset, &["-n", &source, &dest_s])?;
    fs::read(dest).map_err(|e| e.to_string())
}

/// Every file of a volume read with the `fatfs` crate: path ('/'-joined, as the
/// reader spells it) → bytes. Directories are listed with a trailing '/'.
pub fn read_with_fatfs(volume: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(volume)
        .map_err(|e| e.to_string())?;
    let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = stack.pop() {
        for entry in dir.iter() {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if entry.is_dir() {
                out.insert(format!("{path}/"), Vec::new());
                stack.push((format!("{path}/"), entry.to_dir()));
            } else {
                let mut bytes = Vec::new();
                entry
                    .to_file()
                    .read_to_end(&mut bytes)
                    .map_err(|e| e.to_string())?;
                out.insert(path, bytes);
            }
        }
    }
    Ok(out)
}

/// `sfdisk -d` of an image.
pub fn sfdisk_dump(image: &Path) -> Result<String, String> {
    let sfdisk = find_tool("sfdisk").ok_or("sfdisk not installed")?;
    let out = run(Command::new(sfdisk).arg("-d").arg(image))?;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("sfdisk -d failed: {}", text(&out.stderr)))
    }
}

/// `sfdisk --verify` of an image; `Ok(output)` only when it detects no errors.
pub fn sfdisk_verify(image: &Path) -> Result<String, String> {
    let sfdisk = find_tool("sfdisk").ok_or("sfdisk not installed")?;
    let out = run(Command::new(sfdisk).arg("--verify").arg(image))?;
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    if out.status.success() && all.contains("No errors detected") {
        Ok(all)
    } else {
        Err(format!(
            "sfdisk --verify reports problems ({}):\n{all}",
            out.status
        ))
    }
}

/// `sgdisk -v` of an image; `Ok(output)` only when it reports no problems.
pub fn sgdisk_verify(image: &Path) -> Result<String, String> {
    let sgdisk = find_tool("sgdisk").ok_or("sgdisk not installed")?;
    let out = run(Command::new(sgdisk).arg("-v").arg(image))?;
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    if out.status.success() && all.contains("No problems found") {
        Ok(all)
    } else {
        Err(format!(
            "sgdisk -v reports problems ({}):\n{all}",
            out.status
        ))
    }
}

/// `sgdisk -p` (print) of an image.
pub fn sgdisk_print(image: &Path) -> Result<String, String> {
    let sgdisk = find_tool("sgdisk").ok_or("sgdisk not installed")?;
    let out = run(Command::new(sgdisk).arg("-p").arg(image))?;
    Ok(format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// Bytes the file really occupies on the host file system.
pub fn allocated_bytes(path: &Path) -> u64 {
    fs::metadata(path).map_or(u64::MAX, |m| m.blocks() * 512)
}

/// Builds a GRUB standalone EFI application that prints [`BOOT_MARKER`] on the serial
/// console and powers off. `None` (with a skip message) when GRUB is not installed.
pub fn build_marker_efi(dir: &Path) -> Option<PathBuf> {
    build_marker_efi_with(dir, BOOT_MARKER)
}

/// [`build_marker_efi`] with another marker.
pub fn build_marker_efi_with(dir: &Path, marker: &str) -> Option<PathBuf> {
    let mkstandalone = require(&["grub-mkstandalone"])?.remove(0);
    if !Path::new("/usr/lib/grub/x86_64-efi").is_dir() {
        eprintln!("skipping: grub-efi-amd64-bin (x86_64-efi modules) not installed");
        return None;
    }
    let cfg = dir.join("grub.cfg");
    // GRUB prints to the console; OVMF mirrors its console to the serial port. The
    // marker is assembled at run time, so the serial log can only contain it if GRUB
    // really ran (the program's own bytes hold just the two halves).
    let (head, tail) = marker.split_at(marker.len() / 2);
    let script = format!("set part=\"{head}\"\necho \"${{part}}{tail}\"\nhalt\n");
    fs::write(&cfg, script).ok()?;
    let efi = dir.join("bootx64.efi");
    let out = run(Command::new(mkstandalone)
        .args(["-O", "x86_64-efi"])
        .arg("--install-modules=normal echo halt")
        .args(["--modules=", "--locales=", "--fonts=", "--themes="])
        .arg("-o")
        .arg(&efi)
        .arg(format!("boot/grub/grub.cfg={}", cfg.display())))
    .ok()?;
    if !out.status.success() {
        eprintln!("skipping: grub-mkstandalone failed: {}", text(&out.stderr));
        return None;
    }
    Some(efi)
}

/// Whether QEMU and OVMF are installed (prints a skip message when not).
pub fn ovmf_available() -> bool {
    if require(&["qemu-system-x86_64", "timeout"]).is_none() {
        return false;
    }
    if !Path::new(OVMF_CODE).is_file() {
        eprintln!("skipping: OVMF ({OVMF_CODE}) not installed");
        return false;
    }
    true
}

/// Boots `image` in QEMU (TCG, q35, no network) with OVMF for at most 120 s and tells
/// whether `marker` appeared on the serial console. `Err` when QEMU could not be run.
pub fn boot_ovmf(image: &Path, marker: &str) -> Result<bool, String> {
    let qemu = find_tool("qemu-system-x86_64").ok_or("qemu-system-x86_64 not installed")?;
    let timeout = find_tool("timeout").ok_or("timeout not installed")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = dir.path().join("serial.log");
    let out = run(Command::new(timeout)
        .arg("120")
        .arg(qemu)
        .args(["-accel", "tcg", "-machine", "q35", "-m", "256"])
        .arg("-bios")
        .arg(OVMF_CODE)
        .arg("-drive")
        .arg(format!("file={},format=raw", image.display()))
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display())))?;
    let serial = fs::read(&log).unwrap_or_default();
    let found = text(&serial).contains(marker);
    if !found {
        eprintln!(
            "qemu exited with {}; stderr: {}\nserial log tail: {}",
            out.status,
            text(&out.stderr),
            text(&serial[serial.len().saturating_sub(2000)..])
        );
    }
    Ok(found)
}

/// Deterministic pseudo-random bytes (xorshift), different for every seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// (first cluster, clusters) of the planned file whose path ends with `name`.
pub fn file_clusters(layout: &crate::FatLayout, name: &str) -> (u32, u32) {
    let f = layout
        .files
        .iter()
        .find(|f| f.path.ends_with(name))
        .unwrap();
    (f.first_cluster, f.clusters)
}
