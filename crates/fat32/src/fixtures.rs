//! Test fixtures for the FAT32 and disk tests: a file list that exercises the
//! writer and the comparison of a written volume with it. (Built for this
//! crate's tests and, with the feature `testutil`, for the crates above it.)

use super::testutil::{mcopy_out, pattern};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Copies every file of `files` out of the volume at `offset` with `mcopy` and compares
/// the bytes. Names with non-BMP characters (mtools cannot spell them) are read through
/// their 8.3 path from `layout`.
pub fn mcopy_compare_all(
    image: &Path,
    offset: u64,
    layout: &super::FatLayout,
    files: &[super::FatFile],
) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    for (i, (path, bytes)) in expected_contents(files).iter().enumerate() {
        let name = if path.chars().any(|c| c as u32 > 0xFFFF) {
            layout
                .short_path(path)
                .ok_or(format!("{path} is not in the layout"))?
        } else {
            path.clone()
        };
        let got = mcopy_out(image, offset, &name, &tmp.path().join(i.to_string()))?;
        if got != *bytes {
            return Err(format!("mcopy: content of {path} differs"));
        }
    }
    Ok(())
}

/// A file list that exercises the writer: nested and implied directories, 8.3 names in
/// both cases, long names (exactly 13 and 26 UTF-16 units, non-ASCII, non-BMP),
/// alias collisions (`LONGFI~1`), a directory of many long names (several clusters at
/// any cluster size), empty files, files of exactly one cluster at 512 B and 4 KiB and
/// one byte more, and host files with a run of zeros. Files from the host are created
/// in `dir`. Paths spell every directory the same way, so a reader's listing can be
/// compared with the paths as given.
pub fn sample_files(dir: &Path) -> Vec<super::FatFile> {
    use super::FatFile;
    let mut files = vec![
        FatFile::from_bytes("EFI/Boot/bootx64.efi", pattern(1, 300_000)),
        FatFile::from_bytes("sources/readme.txt", b"hello".to_vec()),
        FatFile::from_bytes("README.TXT", b"top".to_vec()),
        FatFile::from_bytes("empty.txt", Vec::new()),
        FatFile::from_bytes("sources/Empty Too.dat", Vec::new()),
        FatFile::from_bytes("exact/c512.bin", pattern(2, 512)),
        FatFile::from_bytes("exact/c513.bin", pattern(3, 513)),
        FatFile::from_bytes("exact/c4096.bin", pattern(4, 4096)),
        FatFile::from_bytes("exact/c4097.bin", pattern(5, 4097)),
        FatFile::from_bytes("Mixed Case/Long File Name With Spaces.txt", pattern(6, 100)),
        FatFile::from_bytes("Mixed Case/ReadMe.md", pattern(7, 10)),
        FatFile::from_bytes("alias/LONGFI~1.TXT", b"real 8.3".to_vec()),
        FatFile::from_bytes("alias/LongFileName.txt", b"one".to_vec()),
        FatFile::from_bytes("alias/LongFileNameToo.txt", b"two".to_vec()),
        FatFile::from_bytes("alias/abcdefghijklm", b"13 units".to_vec()),
        FatFile::from_bytes("alias/abcdefghijklmnopqrstuvwxyz", b"26 units".to_vec()),
        FatFile::from_bytes("alias/archive.tar.gz", b"gz".to_vec()),
        FatFile::from_bytes("alias/.hidden", b"dot".to_vec()),
        FatFile::from_bytes("unicode/naïve résumé.txt", b"accents".to_vec()),
        FatFile::from_bytes("unicode/日本語.txt", b"cjk".to_vec()),
        FatFile::from_bytes("unicode/😀 smile.txt", b"non-BMP".to_vec()),
        FatFile::from_bytes("deep/a/b/c/d/e/f/g/leaf.bin", pattern(8, 70_000)),
    ];
    for i in 0..200 {
        files.push(FatFile::from_bytes(
            format!("many/a rather long file name number {i:03}.txt"),
            pattern(100 + i, (i * 37) as usize),
        ));
    }
    // Host files: one with a MiB of zeros in the middle (written as a hole), and one
    // larger than the copy buffer.
    let mut zeros = pattern(9, 1 << 20);
    zeros.extend(vec![0u8; 1 << 20]);
    zeros.extend(pattern(10, (1 << 20) + 123));
    let big = pattern(11, (5 << 20) + 7);
    for (name, bytes) in [("sparse.bin", zeros), ("big.bin", big)] {
        let host = dir.join(name);
        fs::write(&host, &bytes).expect("write fixture file");
        files.push(FatFile::from_path(
            format!("host/{name}"),
            host,
            bytes.len() as u64,
        ));
    }
    files
}

/// The bytes each file of `files` should have.
pub fn expected_contents(files: &[super::FatFile]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .filter_map(|f| {
            let bytes = match &f.source {
                super::FileSource::Bytes(b) => b.to_vec(),
                super::FileSource::Path(p) => fs::read(p).expect("read fixture file"),
                super::FileSource::Dir => return None,
            };
            Some((f.path.clone(), bytes))
        })
        .collect()
}
