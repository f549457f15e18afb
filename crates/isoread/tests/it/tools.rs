//! Images made by genisoimage and xorriso: each file system lists exactly the source tree and gives
//! back its bytes, and 7-Zip's UDF reader lists the same paths and sizes as ours.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::process::Command;

use isoread::{FsKind, Iso, IsoError};

use crate::fixture::{self, assert_same_bytes, expected, fixture, listing, Row};

#[test]
fn udf_image_through_udf_lists_the_tree_and_its_bytes() {
    let fx = fixture();
    let Some(path) = &fx.udf else { return };
    let iso = Iso::open_as(path, FsKind::Udf).unwrap();
    assert_eq!(iso.kind(), FsKind::Udf);
    assert_eq!(iso.label(), "WINLIKE");
    assert_eq!(listing(&iso), expected(&fx.tree));
    assert_same_bytes(&iso, &fx.tree);
}

#[test]
fn udf_image_through_its_joliet_bridge_lists_the_same() {
    let fx = fixture();
    let Some(path) = &fx.udf else { return };
    let iso = Iso::open_as(path, FsKind::Joliet).unwrap();
    assert_eq!(iso.kind(), FsKind::Joliet);
    assert_eq!(listing(&iso), expected(&fx.tree));
    assert_same_bytes(&iso, &fx.tree);
}

#[test]
fn udf_image_opens_as_udf_by_default() {
    let fx = fixture();
    let Some(path) = &fx.udf else { return };
    let iso = Iso::open(path).unwrap();
    assert_eq!(iso.kind(), FsKind::Udf);
    let udf = Iso::open_as(path, FsKind::Udf).unwrap();
    assert_eq!(iso.entries(), udf.entries());
}

#[test]
fn seven_zip_lists_the_same_udf_paths_and_sizes() {
    let fx = fixture();
    let Some(path) = &fx.udf else { return };
    if !fixture::have("7z") {
        return;
    }
    let out = fixture::run(Command::new("7z").args(["l", "-slt", "-tudf"]).arg(path));
    // Items follow the "----------" line, one block of "Key = value" lines each.
    let items = out.split_once("\n----------\n").expect("7z lists items").1;
    let mut theirs: Vec<Row> = items
        .split("\n\n")
        .filter(|b| b.contains("Path = "))
        .map(|block| {
            let field = |k: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{k} = ")))
                    .unwrap_or_default()
                    .to_string()
            };
            let is_dir = field("Folder") == "+";
            let size = if is_dir {
                0
            } else {
                field("Size").parse().unwrap()
            };
            (field("Path"), size, is_dir)
        })
        .collect();
    fixture::sort(&mut theirs);
    let ours = listing(&Iso::open_as(path, FsKind::Udf).unwrap());
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours, theirs);
}

#[test]
fn joliet_image_opens_as_joliet_and_lists_the_tree() {
    let fx = fixture();
    let Some(path) = &fx.joliet else { return };
    let iso = Iso::open(path).unwrap();
    assert_eq!(iso.kind(), FsKind::Joliet);
    assert_eq!(listing(&iso), expected(&fx.tree));
    assert_same_bytes(&iso, &fx.tree);
    let err = Iso::open_as(path, FsKind::Udf).unwrap_err();
    assert!(matches!(err, IsoError::Missing { .. }));
    assert!(
        err.to_string()
            .ends_with("joliet.iso has no UDF file system; it has Joliet, ISO 9660"),
        "{err}"
    );
}

#[test]
fn plain_iso9660_finds_files_by_their_mangled_names() {
    let fx = fixture();
    let Some(path) = &fx.plain else { return };
    let iso = Iso::open(path).unwrap();
    assert_eq!(iso.kind(), FsKind::Iso9660);
    let want = expected(&fx.tree);
    assert_eq!(iso.entries().len(), want.len());
    let mut checked = 0;
    // Names of lower-case letters, digits, '_' and one '.' survive as their upper-case selves.
    let plain = |p: &str| {
        p.split('/').all(|c| {
            c.matches('.').count() <= 1
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        })
    };
    for (p, size, is_dir) in want.iter().filter(|r| plain(&r.0)) {
        let e = iso.find(p).unwrap_or_else(|| panic!("{p} not found"));
        assert_eq!(e.path, p.to_ascii_uppercase());
        assert_eq!((e.size, e.is_dir), (*size, *is_dir), "{p}");
        if !is_dir {
            assert!(
                fixture::read_all(&iso, e) == fs::read(fx.tree.join(p)).unwrap(),
                "{p}"
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked,
        want.len() - 1,
        "all but the Unicode name are plain"
    );
}

#[test]
fn find_ignores_ascii_case_and_separator_style() {
    let fx = fixture();
    let Some(path) = &fx.udf else { return };
    let iso = Iso::open(path).unwrap();
    let e = iso.find("sources/boot.wim").unwrap();
    for spelling in [
        "\\SOURCES\\BOOT.WIM",
        "/Sources/Boot.wim",
        "sources//boot.wim/",
    ] {
        assert_eq!(iso.find(spelling), Some(e), "{spelling}");
    }
    assert!(iso.find("EFI/Microsoft/Boot").unwrap().is_dir);
    assert_eq!(
        iso.find("Ünïcode-名前.txt").unwrap().size,
        "名前\n".len() as u64
    );
    assert_eq!(iso.find("sources/boot.wi"), None);
    assert_eq!(iso.find(""), None);
    assert!(iso.reader(iso.find("efi").unwrap()).is_err());
}

#[test]
fn reader_seeks_within_a_file() {
    let fx = fixture();
    let Some(path) = &fx.udf else { return };
    let iso = Iso::open(path).unwrap();
    let want = fs::read(fx.tree.join("sources/install.esd")).unwrap();
    let mut r = iso
        .reader(iso.find("sources/install.esd").unwrap())
        .unwrap();
    assert_eq!(r.size(), want.len() as u64);
    for at in [0u64, 1, 2047, 2048, 1_000_003, want.len() as u64 - 5] {
        r.seek(SeekFrom::Start(at)).unwrap();
        let mut buf = [0u8; 4096];
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0);
        assert_eq!(&buf[..n], &want[at as usize..at as usize + n]);
    }
    assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), want.len() as u64);
    assert_eq!(r.read(&mut [0u8; 16]).unwrap(), 0);
    assert!(r.seek(SeekFrom::Current(-(want.len() as i64) - 1)).is_err());
}

#[test]
fn is_iso_tells_images_from_other_files() {
    let fx = fixture();
    for img in [&fx.udf, &fx.joliet, &fx.plain].into_iter().flatten() {
        assert!(Iso::is_iso(img), "{}", img.display());
    }
    assert!(!Iso::is_iso(&fx.tree.join("sources/install.esd")));
    assert!(!Iso::is_iso(&fx.tree.join("no such file")));
    assert!(!Iso::is_iso(&fx.tree));
    let err = Iso::open(&fx.tree.join("sources/boot.wim")).unwrap_err();
    assert!(matches!(err, IsoError::NotAnIso { .. }), "{err}");
}
