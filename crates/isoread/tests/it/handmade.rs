//! Hand-made images: an ISO 9660 file in three sections, a UDF file with recorded, unrecorded and
//! continued allocation descriptors, and the features that are refused.

use std::path::PathBuf;

use isoread::{Extent, FsKind, Iso, IsoError};

use crate::build::{self, big_bin, block_offset, Rec, Udf, LEAF, SECTOR};
use crate::fixture::read_all;

fn write(img: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.iso");
    std::fs::write(&path, img).unwrap();
    (dir, path)
}

fn data(img: &mut [u8], lba: usize, bytes: &[u8]) {
    img[lba * SECTOR..lba * SECTOR + bytes.len()].copy_from_slice(bytes);
}

/// BIG.BIN in three sections (two adjacent, one apart), recorded in the root's second sector.
fn multi_extent(last_flags: u8) -> (Vec<u8>, Vec<u8>) {
    let first = [Rec {
        name: b"A.TXT;1",
        lba: 25,
        len: 5,
        flags: 0,
        unit: 0,
    }];
    let second = [
        Rec {
            name: b"BIG.BIN;1",
            lba: 20,
            len: 4096,
            flags: 0x80,
            unit: 0,
        },
        Rec {
            name: b"BIG.BIN;1",
            lba: 22,
            len: 2048,
            flags: 0x80,
            unit: 0,
        },
        Rec {
            name: b"BIG.BIN;1",
            lba: 30,
            len: 100,
            flags: last_flags,
            unit: 0,
        },
    ];
    let mut img = build::iso9660(&first, &second);
    let big = crate::fixture::bytes(9, 6244);
    data(&mut img, 20, &big[..6144]);
    data(&mut img, 30, &big[6144..]);
    data(&mut img, 25, b"hello");
    (img, big)
}

#[test]
fn iso9660_file_in_several_sections_reads_whole() {
    let (img, big) = multi_extent(0);
    let (_dir, path) = write(&img);
    let iso = Iso::open(&path).unwrap();
    assert_eq!(iso.kind(), FsKind::Iso9660);
    assert_eq!(iso.label(), "HANDMADE");
    let names: Vec<&str> = iso.entries().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["A.TXT", "BIG.BIN"]);
    let e = iso.find("big.bin").unwrap();
    assert_eq!(e.size, 6244);
    assert_eq!(
        e.extents,
        [
            Extent {
                offset: 20 * 2048,
                len: 4096
            },
            Extent {
                offset: 22 * 2048,
                len: 2048
            },
            Extent {
                offset: 30 * 2048,
                len: 100
            },
        ]
    );
    assert!(read_all(&iso, e) == big);
    assert_eq!(read_all(&iso, iso.find("a.txt").unwrap()), b"hello");
}

#[test]
fn iso9660_file_without_its_last_section_is_corrupt() {
    let (img, _) = multi_extent(0x80);
    let (_dir, path) = write(&img);
    let err = Iso::open(&path).unwrap_err();
    assert!(matches!(err, IsoError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(
            "the file /BIG.BIN is split into sections but its folder ends before the last one"
        ),
        "{err}"
    );
}

#[test]
fn iso9660_interleaved_file_is_refused() {
    let img = build::iso9660(
        &[Rec {
            name: b"IL.BIN;1",
            lba: 20,
            len: 4096,
            flags: 0,
            unit: 1,
        }],
        &[],
    );
    let (_dir, path) = write(&img);
    let err = Iso::open(&path).unwrap_err();
    assert!(matches!(err, IsoError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("uses an interleaved file (\"IL.BIN\": file unit size 1, gap size 1"),
        "{err}"
    );
}

#[test]
fn udf_file_with_recorded_unrecorded_and_continued_extents() {
    let (_dir, path) = write(&build::udf(&Udf::default()));
    assert!(Iso::is_iso(&path));
    let iso = Iso::open(&path).unwrap();
    assert_eq!(iso.kind(), FsKind::Udf);
    assert_eq!(iso.label(), "HANDUDF");
    let rows: Vec<(&str, u64, bool)> = iso
        .entries()
        .iter()
        .map(|e| (e.path.as_str(), e.size, e.is_dir))
        .collect();
    assert_eq!(
        rows,
        [
            ("big.bin", 6244, false),
            ("sub", 0, true),
            ("sub/ü-名.txt", 5, false)
        ]
    );
    let big = iso.find("BIG.BIN").unwrap();
    assert_eq!(
        big.extents,
        [
            Extent {
                offset: block_offset(10),
                len: 4096
            },
            Extent {
                offset: Extent::ZEROS,
                len: 2048
            },
            Extent {
                offset: block_offset(20),
                len: 100
            },
        ]
    );
    assert!(read_all(&iso, big) == big_bin());
    assert_eq!(read_all(&iso, iso.find("sub\\ü-名.txt").unwrap()), LEAF);
}

#[test]
fn udf_reserve_sequence_stands_in_for_a_damaged_main_one() {
    let mut img = build::udf(&Udf::default());
    img[34 * SECTOR + 4] ^= 0xFF; // the main logical volume descriptor's checksum
    let (_dir, path) = write(&img);
    assert_eq!(Iso::open(&path).unwrap().entries().len(), 3);
}

#[test]
fn udf_metadata_partition_is_refused_by_name() {
    let (_dir, path) = write(&build::udf(&Udf {
        metadata_map: true,
        ..Udf::default()
    }));
    let err = Iso::open(&path).unwrap_err();
    assert!(matches!(err, IsoError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("uses a UDF type 2 partition map \"*UDF Metadata Partition\""),
        "{err}"
    );
}

#[test]
fn udf_allocation_descriptors_continuing_in_a_loop_are_corrupt() {
    let (_dir, path) = write(&build::udf(&Udf {
        aed_loop: true,
        ..Udf::default()
    }));
    let err = crate::corrupt::open_within_seconds(&path);
    assert!(
        err.contains("/big.bin: its allocation descriptors continue in a loop"),
        "{err}"
    );
}

#[test]
fn udf_file_longer_than_its_extents_is_corrupt() {
    let (_dir, path) = write(&build::udf(&Udf {
        overlong: true,
        ..Udf::default()
    }));
    let err = Iso::open(&path).unwrap_err().to_string();
    assert!(
        err.contains(
            "/big.bin: it is 7000 bytes long but its allocation descriptors cover only 6244"
        ),
        "{err}"
    );
}

#[test]
fn udf_folder_pointing_at_its_ancestor_is_a_loop() {
    let (_dir, path) = write(&build::udf(&Udf {
        loop_dir: true,
        ..Udf::default()
    }));
    let err = crate::corrupt::open_within_seconds(&path);
    assert!(
        err.contains(
            "the folder /sub/again points back at a folder already read (a directory loop)"
        ),
        "{err}"
    );
}
