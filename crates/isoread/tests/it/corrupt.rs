//! Damaged images made from the tool-made ones: each is an `IsoError` with a message that says what
//! and where, never a panic or a hang.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use isoread::{FsKind, Iso, IsoError};

use crate::build::{recrc, retag, SECTOR};
use crate::fixture::{fixture, scratch};

/// Opens `path` on another thread and returns the error's message; fails the test if opening
/// succeeds, panics or takes more than 10 seconds.
pub fn open_within_seconds(path: &Path) -> String {
    let (tx, rx) = mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(Iso::open(&path).map(|iso| iso.entries().len()));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(n)) => panic!("a damaged image opened, listing {n} entries"),
        Ok(Err(e)) => e.to_string(),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("opening a damaged image took over 10 s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("opening a damaged image panicked"),
    }
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn sector_of(img: &[u8], n: usize) -> &[u8] {
    &img[n * SECTOR..(n + 1) * SECTOR]
}

/// A sector of the image holding a checked UDF descriptor with tag `id`, after the anchor.
fn find_udf_descriptor(img: &[u8], id: u16) -> usize {
    (257..img.len() / SECTOR)
        .find(|&n| {
            let s = sector_of(img, n);
            let sum = (0..16)
                .filter(|&i| i != 4)
                .fold(0u8, |a, i| a.wrapping_add(s[i]));
            u16::from_le_bytes([s[0], s[1]]) == id && s[4] == sum && s[2] == 2
        })
        .unwrap_or_else(|| panic!("no descriptor with tag {id}"))
}

#[test]
fn truncated_udf_image_says_what_lies_past_its_end() {
    let Some(src) = &fixture().udf else { return };
    let (_dir, path) = scratch(src);
    let len = fs::metadata(&path).unwrap().len();
    truncate(&path, len * 6 / 10);
    for kind in [None, Some(FsKind::Joliet)] {
        let err = match kind {
            None => Iso::open(&path),
            Some(k) => Iso::open_as(&path, k),
        }
        .unwrap_err();
        assert!(matches!(err, IsoError::Corrupt { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("past the end of the image"), "{msg}");
        assert!(msg.contains("the image is truncated or corrupt"), "{msg}");
    }
}

#[test]
fn image_cut_before_the_udf_anchor_has_no_anchor() {
    let Some(src) = &fixture().udf else { return };
    let (_dir, path) = scratch(src);
    truncate(&path, 100 * SECTOR as u64);
    let err = Iso::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("it is marked as UDF but has no valid anchor volume descriptor pointer at sector 256, N-256 or N (the image ends before sector 256)"),
        "{err}"
    );
}

#[test]
fn image_cut_inside_the_system_area_is_not_an_image() {
    let Some(src) = &fixture().udf else { return };
    let (_dir, path) = scratch(src);
    truncate(&path, 20_000);
    assert!(matches!(
        Iso::open(&path).unwrap_err(),
        IsoError::NotAnIso { .. }
    ));
    truncate(&path, 0);
    assert!(matches!(
        Iso::open(&path).unwrap_err(),
        IsoError::NotAnIso { .. }
    ));
}

#[test]
fn zeroed_anchor_falls_back_to_the_last_sector_then_fails_clearly() {
    let Some(src) = &fixture().udf else { return };
    let (_dir, path) = scratch(src);
    let mut img = fs::read(&path).unwrap();
    img[256 * SECTOR..257 * SECTOR].fill(0);
    fs::write(&path, &img).unwrap();
    let backup = Iso::open(&path).map(|iso| iso.entries().len());
    let n = img.len() / SECTOR;
    for s in [n - 257, n - 256, n - 1] {
        img[s * SECTOR..(s + 1) * SECTOR].fill(0);
    }
    fs::write(&path, &img).unwrap();
    let err = Iso::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("damaged at byte 524288 (sector 256): it is marked as UDF but has no valid anchor volume descriptor pointer at sector 256, N-256 or N (sector 256 is blank)"),
        "{err}"
    );
    // genisoimage records a second anchor at the end, as ECMA-167 3/8.4.2.1 suggests.
    assert_eq!(
        backup.unwrap(),
        crate::fixture::expected(&fixture().tree).len()
    );
}

#[test]
fn bad_file_set_descriptor_checksum_is_named() {
    let Some(src) = &fixture().udf else { return };
    let (_dir, path) = scratch(src);
    let mut img = fs::read(&path).unwrap();
    let fsd = find_udf_descriptor(&img, 256);
    img[fsd * SECTOR + 4] ^= 0x55;
    fs::write(&path, &img).unwrap();
    let err = Iso::open(&path).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "at byte {} (sector {fsd}): the UDF file set descriptor: bad tag checksum",
            fsd * SECTOR
        )),
        "{err}"
    );
    // A body change under a good checksum is caught by the CRC.
    img[fsd * SECTOR + 4] ^= 0x55;
    img[fsd * SECTOR + 300] ^= 1;
    retag(&mut img[fsd * SECTOR..]);
    fs::write(&path, &img).unwrap();
    let err = Iso::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("the UDF file set descriptor: bad descriptor CRC"),
        "{err}"
    );
}

/// Finds the UDF identifier descriptor of `name` (8-bit CS0) in the image.
fn find_fid(img: &[u8], name: &str) -> usize {
    let mut needle = vec![8u8];
    needle.extend(name.bytes());
    img.windows(needle.len())
        .enumerate()
        .filter(|&(i, w)| w == needle && i >= 38)
        .map(|(i, _)| i - 38)
        .find(|&f| {
            u16::from_le_bytes([img[f], img[f + 1]]) == 257
                && usize::from(img[f + 19]) == needle.len()
        })
        .unwrap_or_else(|| panic!("no identifier descriptor for {name}"))
}

#[test]
fn udf_folder_patched_to_point_at_its_parent_is_a_loop() {
    let Some(src) = &fixture().udf else { return };
    let (_dir, path) = scratch(src);
    let mut img = fs::read(&path).unwrap();
    let fsd = find_udf_descriptor(&img, 256);
    let root_icb = img[fsd * SECTOR + 400 + 4..fsd * SECTOR + 400 + 10].to_vec();
    let f = find_fid(&img, "empty");
    img[f + 24..f + 30].copy_from_slice(&root_icb);
    recrc(&mut img[f..]);
    fs::write(&path, &img).unwrap();
    let err = open_within_seconds(&path);
    assert!(
        err.contains("the folder /empty points back at a folder already read (a directory loop)"),
        "{err}"
    );
}

#[test]
fn joliet_folder_patched_to_point_at_its_parent_is_a_loop() {
    let Some(src) = &fixture().joliet else { return };
    let (_dir, path) = scratch(src);
    let mut img = fs::read(&path).unwrap();
    let svd = (16..32)
        .find(|&n| img[n * SECTOR] == 2 && &img[n * SECTOR + 1..n * SECTOR + 6] == b"CD001")
        .expect("a Joliet descriptor");
    let root = img[svd * SECTOR + 156 + 2..svd * SECTOR + 156 + 10].to_vec();
    let name: Vec<u8> = "empty".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let rec = img
        .windows(name.len())
        .enumerate()
        .filter(|&(i, w)| w == name && i >= 33 && usize::from(img[i - 1]) == name.len())
        .map(|(i, _)| i - 33)
        .find(|&r| img[r + 25] & 2 != 0)
        .expect("the Joliet record of /empty");
    img[rec + 2..rec + 10].copy_from_slice(&root);
    fs::write(&path, &img).unwrap();
    let err = open_within_seconds(&path);
    assert!(
        err.contains("the folder /empty points back at a folder already read (a directory loop)"),
        "{err}"
    );
}

#[test]
fn truncated_joliet_image_is_corrupt() {
    let Some(src) = &fixture().joliet else { return };
    let (_dir, path) = scratch(src);
    truncate(&path, fs::metadata(&path).unwrap().len() / 2);
    let err = Iso::open(&path).unwrap_err();
    assert!(matches!(err, IsoError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("past the end of the image"),
        "{err}"
    );
}
