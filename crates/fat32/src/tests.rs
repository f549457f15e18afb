//! Volume-level tests: the worked example of the reference byte for byte, and volumes
//! judged by independent readers (fsck.fat, mtools, the fatfs crate).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::fixtures::{expected_contents, mcopy_compare_all, sample_files};
use super::testutil::{allocated_bytes, fsck_clean, mdir, read_with_fatfs, require};
use super::*;

const MIB: u64 = 1 << 20;

fn params() -> FatParams {
    FatParams {
        volume_id: 0x1234_ABCD,
        label: String::new(),
        hidden_sectors: 0,
        epoch: 1_704_110_400, // 2024-01-01 12:00:00
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a bare volume (no partition table) of `bytes` to a sparse file in `dir`.
fn write_volume(
    dir: &Path,
    files: &[FatFile],
    bytes: u64,
    params: &FatParams,
) -> (PathBuf, FatLayout) {
    let layout = plan(files, bytes, params).expect("plan");
    let path = dir.join("volume.img");
    let mut out = File::create(&path).expect("create");
    out.set_len(bytes).expect("set_len");
    write(&layout, files, &mut out, 0, &mut |_| {}).expect("write");
    (path, layout)
}

/// fatfs spells the names it reads; all fixture directories are spelled consistently.
fn assert_reads_back(volume: &Path, files: &[FatFile]) {
    let read = read_with_fatfs(volume).expect("fatfs reads the volume");
    let read_files: BTreeMap<String, Vec<u8>> = read
        .into_iter()
        .filter(|(p, _)| !p.ends_with('/'))
        .collect();
    let expected = expected_contents(files);
    assert_eq!(
        read_files.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &expected {
        assert!(
            read_files[path] == *bytes,
            "fatfs: content of {path} differs"
        );
    }
}

fn assert_mtools_reads(image: &Path, offset: u64, layout: &FatLayout, files: &[FatFile]) {
    let listing = mdir(image, offset, "::/EFI/Boot").expect("mdir");
    // mdir shows the short name in the case the NT bits give it.
    assert!(listing.contains("bootx64  efi    300000"), "{listing}");
    mcopy_compare_all(image, offset, layout, files).unwrap();
}

#[test]
fn worked_example_is_byte_identical() {
    // fat32-format.md §13: 300 MiB partition at LBA 2048 of a 301 MiB disk.
    let tmp = tempfile::tempdir().unwrap();
    let boot = super::testutil::pattern(42, 1 << 20);
    let files = [
        FatFile::from_bytes("EFI/BOOT/BOOTX64.EFI", boot.clone()),
        FatFile::from_bytes("sources/readme.txt", b"hello".to_vec()),
    ];
    let params = FatParams {
        hidden_sectors: 2048,
        ..params()
    };
    let layout = plan(&files, 300 * MIB, &params).unwrap();
    let disk = tmp.path().join("disk.img");
    let mut out = File::create(&disk).unwrap();
    out.set_len(301 * MIB).unwrap();
    write(&layout, &files, &mut out, MIB, &mut |_| {}).unwrap();
    // The reference's MBR: type 0xEF, not active (the media MBR uses 0x0C, active).
    // Written by hand (the disk crate's `mbr_sector` writes the same bytes): signature
    // at 440, one partition entry at 446 with CHS as fdisk fills them in, 0x55AA.
    let mut mbr = [0u8; 512];
    mbr[440..444].copy_from_slice(&0x1234_ABCD_u32.to_le_bytes());
    mbr[446..462].copy_from_slice(&[
        0x00, 32, 33, 0, // not active; first sector: C/H/S 0/32/33 (LBA 2048)
        0xEF, 94, 56, 38, // type; last sector: C/H/S 38/94/56 (LBA 616 447)
        0x00, 0x08, 0x00, 0x00, // first LBA: 2048
        0x00, 0x60, 0x09, 0x00, // sectors: 614 400
    ]);
    mbr[510..].copy_from_slice(&[0x55, 0xAA]);
    out.seek(SeekFrom::Start(0)).unwrap();
    std::io::Write::write_all(&mut out, &mbr).unwrap();
    drop(out);

    let mut image = File::open(&disk).unwrap();
    let mut meta = vec![0u8; 0x9E000];
    image.seek(SeekFrom::Start(MIB)).unwrap();
    image.read_exact(&mut meta).unwrap();
    assert_eq!(
        hex(&Sha256::digest(&meta)),
        "85532d5d7b66199a51b6fce07039e1897f38109421feec2bb062c00e3668ee6c"
    );
    // FSInfo: free 76 385, next 262.
    assert_eq!(
        &meta[512 + 488..512 + 496],
        &[0x61, 0x2A, 0x01, 0x00, 0x06, 0x01, 0, 0]
    );
    // File data: readme at cluster 6 (0x19E000 on disk), BOOTX64 at 7 (0x19F000).
    let mut data = vec![0u8; 4096 + (1 << 20)];
    image.seek(SeekFrom::Start(0x19E000)).unwrap();
    image.read_exact(&mut data).unwrap();
    assert_eq!(&data[..5], b"hello");
    assert!(data[5..4096].iter().all(|&b| b == 0));
    assert!(data[4096..] == boot[..]);

    if require(&["fsck.fat", "mdir"]).is_some() {
        let summary = super::testutil::fsck_partition(&disk, MIB, 300 * MIB).unwrap();
        assert!(
            summary.ends_with("5 files, 261/76646 clusters"),
            "{summary}"
        );
        let listing = mdir(&disk, MIB, "::/EFI/BOOT").unwrap();
        assert!(listing.contains("BOOTX64  EFI   1048576"), "{listing}");
    }
}

#[test]
fn small_clusters_volume_is_clean_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample_files(tmp.path());
    let (volume, layout) = write_volume(tmp.path(), &files, 40 * MIB, &params());
    assert_eq!(layout.cluster_bytes(), 512);
    // The directory of 200 long names spans several clusters.
    let many = layout.dirs.iter().find(|d| d.path == "many").unwrap();
    assert!(many.clusters > 1, "{}", many.clusters);
    if require(&["fsck.fat", "mdir", "mcopy"]).is_some() {
        let summary = fsck_clean(&volume).unwrap();
        let clusters = format!(
            "{}/{} clusters",
            layout.used_clusters(),
            layout.cluster_count()
        );
        assert!(summary.ends_with(&clusters), "{summary} vs {clusters}");
        assert_mtools_reads(&volume, 0, &layout, &files);
    }
    assert_reads_back(&volume, &files);
}

#[test]
fn four_k_clusters_volume_is_clean_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample_files(tmp.path());
    let (volume, layout) = write_volume(tmp.path(), &files, 300 * MIB, &params());
    assert_eq!(layout.cluster_bytes(), 4096);
    if require(&["fsck.fat", "mdir", "mcopy"]).is_some() {
        fsck_clean(&volume).unwrap();
        assert_mtools_reads(&volume, 0, &layout, &files);
    }
    assert_reads_back(&volume, &files);
}

#[test]
fn large_volume_is_sparse_and_clean() {
    // 32 GiB - 1 MiB: 16 KiB clusters, a FAT of 16 MiB, yet only the used part is written.
    let tmp = tempfile::tempdir().unwrap();
    let files = sample_files(tmp.path());
    let (volume, layout) = write_volume(tmp.path(), &files, 32 * 1024 * MIB - MIB, &params());
    assert_eq!(layout.cluster_bytes(), 16_384);
    let allocated = allocated_bytes(&volume);
    assert!(allocated < 64 * MIB, "{allocated} bytes allocated");
    if require(&["fsck.fat"]).is_some() {
        fsck_clean(&volume).unwrap();
    }
    assert_reads_back(&volume, &files);
}

#[test]
fn label_matches_boot_sector() {
    let tmp = tempfile::tempdir().unwrap();
    let files = [FatFile::from_bytes("a.txt", b"a".to_vec())];
    let params = FatParams {
        label: "Win11 media x".into(),
        ..params()
    };
    let (volume, layout) = write_volume(tmp.path(), &files, 40 * MIB, &params);
    assert_eq!(layout.label().as_deref(), Some("WIN11 MEDIA"));
    let mut boot = [0u8; 512];
    File::open(&volume).unwrap().read_exact(&mut boot).unwrap();
    assert_eq!(&boot[0x47..0x52], b"WIN11 MEDIA");
    assert_eq!(&boot[0x43..0x47], &[0xCD, 0xAB, 0x34, 0x12]);
    if require(&["fsck.fat", "mdir"]).is_some() {
        fsck_clean(&volume).unwrap();
        let listing = mdir(&volume, 0, "::/").unwrap();
        assert!(
            listing.contains("Volume in drive : is WIN11 MEDIA"),
            "{listing}"
        );
        assert!(
            listing.contains("Volume Serial Number is 1234-ABCD"),
            "{listing}"
        );
    }
}

#[test]
fn progress_counts_up_to_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample_files(tmp.path());
    let layout = plan(&files, 40 * MIB, &params()).unwrap();
    let mut out = Cursor::new(vec![0u8; (40 * MIB) as usize]);
    let mut seen = Vec::new();
    write(&layout, &files, &mut out, 0, &mut |n| seen.push(n)).unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(seen.last().copied(), Some(layout.bytes_to_write()));
}

#[test]
fn in_memory_output_matches_file_output() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample_files(tmp.path());
    let (volume, layout) = write_volume(tmp.path(), &files, 40 * MIB, &params());
    let mut out = Cursor::new(vec![0u8; (40 * MIB) as usize]);
    write(&layout, &files, &mut out, 0, &mut |_| {}).unwrap();
    assert!(std::fs::read(&volume).unwrap() == out.into_inner());
}

#[test]
fn changed_source_is_rejected_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("f.bin");
    std::fs::write(&host, b"12345").unwrap();
    let files = [
        FatFile::from_bytes("a.txt", b"a".to_vec()),
        FatFile::from_path("f.bin", &host, 5),
        FatFile::from_path("gone.bin", tmp.path().join("missing"), 1),
    ];
    let layout = plan(&files, 40 * MIB, &params()).unwrap();
    std::fs::write(&host, b"123456").unwrap();
    let mut out = Cursor::new(vec![0u8; (40 * MIB) as usize]);
    let err = write(&layout, &files, &mut out, 0, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("2 problems:"), "{err}");
    assert!(
        err.contains("\"f.bin\" has 6 bytes but the file list says 5"),
        "{err}"
    );
    assert!(
        err.contains("cannot read the source of \"gone.bin\""),
        "{err}"
    );
    assert!(
        out.into_inner().iter().all(|&b| b == 0),
        "nothing may be written"
    );

    // Another list than the planned one.
    let other = [FatFile::from_bytes("b.txt", b"b".to_vec())];
    let mut out = Cursor::new(vec![0u8; 1024]);
    let err = write(&layout, &other, &mut out, 0, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FatError::LayoutMismatch(_)), "{err}");
}
