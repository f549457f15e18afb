//! Files over 4 GiB made by the tools: several UDF allocation descriptors (genisoimage caps one at
//! 1 GiB) and a multi-extent ISO 9660 / Joliet file (xorriso cuts sections at 4 GiB − 2 KiB). Each
//! image is 4.7 GB written to disk, about 35 s in all, so the test is ignored by default:
//! `cargo test -p isoread --test it -- --ignored`.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::process::Command;

use isoread::{FsKind, Iso};

use crate::fixture::{have, run};

const SIZE: u64 = 4_700_000_000;
/// Bytes written into the otherwise sparse source file.
const MARKS: [(u64, &[u8]); 3] = [(0, b"START"), (1 << 31, b"MIDDLE"), (SIZE - 3, b"END")];

/// The source bytes at `at..at + len`: zeros but for the marks.
fn source(at: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (m, text) in MARKS {
        for (i, &b) in text.iter().enumerate() {
            let p = m + i as u64;
            if p >= at && p < at + len as u64 {
                v[(p - at) as usize] = b;
            }
        }
    }
    v
}

/// Checks size, extent count and the bytes around every mark and every extent boundary.
fn check(iso: &Iso, min_extents: usize) {
    let e = iso.find("huge.bin").expect("huge.bin listed");
    assert_eq!(e.size, SIZE);
    assert!(
        e.extents.len() >= min_extents,
        "{} extents",
        e.extents.len()
    );
    assert_eq!(e.extents.iter().map(|x| x.len).sum::<u64>(), SIZE);
    let mut probes: Vec<u64> = MARKS.iter().map(|m| m.0).collect();
    let mut at = 0;
    for x in &e.extents {
        at += x.len;
        probes.push(at.saturating_sub(32));
    }
    let mut r = iso.reader(e).unwrap();
    for p in probes {
        let len = 64.min((SIZE - p) as usize);
        let mut buf = vec![0xEE; len];
        r.seek(SeekFrom::Start(p)).unwrap();
        r.read_exact(&mut buf).unwrap();
        assert_eq!(buf, source(p, len), "at {p}");
    }
}

#[test]
#[ignore = "writes two 4.7 GB images (about 35 s)"]
fn files_over_4_gib() {
    if !have("genisoimage") || !have("xorriso") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(tree.join("huge.bin"))
        .unwrap();
    f.set_len(SIZE).unwrap();
    for (at, text) in MARKS {
        f.write_all_at(text, at).unwrap();
    }
    let iso = dir.path().join("x.iso");
    // UDF keeps the whole size; -allow-limited-size lets the ISO 9660 side show a cut one.
    run(Command::new("genisoimage")
        .args([
            "-quiet",
            "-allow-limited-size",
            "-udf",
            "-J",
            "-iso-level",
            "3",
            "-o",
        ])
        .arg(&iso)
        .arg(&tree));
    check(&Iso::open_as(&iso, FsKind::Udf).unwrap(), 5);
    fs::remove_file(&iso).unwrap();
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-J", "-iso-level", "3", "-o"])
        .arg(&iso)
        .arg(&tree));
    check(&Iso::open_as(&iso, FsKind::Joliet).unwrap(), 2);
    check(&Iso::open_as(&iso, FsKind::Iso9660).unwrap(), 2);
}
