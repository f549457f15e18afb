//! Streams a planned volume: reserved area, both FATs, directories, file data, in
//! increasing offset order. Free space and zero tails are never written (they must
//! already read as zeros), and all-zero blocks of file data are skipped too, so the
//! output stays as sparse as the content allows.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use super::dir;
use super::geometry::SECTOR;
use super::plan::FatLayout;
use super::{FatError, FatFile, FileSource};

/// Copy buffer: large reads keep the copy at disk speed.
const COPY_BUFFER: usize = 1 << 20;
/// File data is written in blocks of this size; blocks of zeros become holes.
const ZERO_BLOCK: usize = 64 << 10;
/// FAT entries generated per chunk.
const FAT_CHUNK_ENTRIES: u64 = 1 << 18;
/// End of a cluster chain (§4).
const END_OF_CHAIN: u32 = 0x0FFF_FFFF;

/// Writes the volume planned in `layout` to `out` at byte `partition_offset`.
///
/// `files` must be the list given to [`plan`](super::plan). Every source is checked
/// (exists, has the planned size) before the first byte is written. The range of `out`
/// covered by the volume must read as zeros beforehand (a file extended by `set_len`).
/// `progress` receives the running total of bytes done, up to
/// [`FatLayout::bytes_to_write`].
pub fn write<W: Write + Seek>(
    layout: &FatLayout,
    files: &[FatFile],
    out: &mut W,
    partition_offset: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), FatError> {
    check_sources(layout, files)?;
    let mut sink = Sink {
        out,
        base: partition_offset,
        position: None,
        done: 0,
        progress,
    };
    sink.put(0, &reserved_area(layout))?;
    sink.advance(8 * SECTOR);
    write_fats(layout, &mut sink)?;
    for index in 0..layout.dirs.len() {
        let bytes = dir::encode(layout, index);
        let offset = layout
            .geometry
            .cluster_offset(layout.dirs[index].first_cluster);
        sink.put(offset, &bytes)?;
        sink.advance(bytes.len() as u64);
    }
    let mut buffer = vec![0u8; COPY_BUFFER];
    for plan in layout.files.iter().filter(|f| f.size > 0) {
        let offset = layout.geometry.cluster_offset(plan.first_cluster);
        let file = &files[plan.input];
        match &file.source {
            FileSource::Bytes(bytes) => {
                for (i, chunk) in bytes.chunks(COPY_BUFFER).enumerate() {
                    sink.put_sparse(offset + (i * COPY_BUFFER) as u64, chunk)?;
                    sink.advance(chunk.len() as u64);
                }
            }
            FileSource::Path(source) => {
                copy_file(&mut sink, offset, file, source, &mut buffer)?;
            }
            // Directories are written with the directory entries above.
            FileSource::Dir => {}
        }
    }
    sink.out.flush().map_err(|source| FatError::Write {
        offset: partition_offset,
        source,
    })
}

/// Checks, before anything is written, that `files` is the list `layout` was planned
/// from and that every source exists and still has its listed size. [`write`] runs it
/// first; callers that create the output file themselves can run it earlier.
pub fn check_sources(layout: &FatLayout, files: &[FatFile]) -> Result<(), FatError> {
    let count = files
        .iter()
        .filter(|f| !matches!(f.source, FileSource::Dir))
        .count();
    if count != layout.files.len() {
        return Err(FatError::LayoutMismatch(format!(
            "planned {} files, got {count}",
            layout.files.len(),
        )));
    }
    let mut errors = Vec::new();
    for plan in &layout.files {
        let file = &files[plan.input];
        if file.path != plan.path || file.size != plan.size {
            return Err(FatError::LayoutMismatch(format!(
                "entry {} is \"{}\" ({} bytes), planned \"{}\" ({} bytes)",
                plan.input, file.path, file.size, plan.path, plan.size
            )));
        }
        let actual = match &file.source {
            FileSource::Bytes(bytes) => bytes.len() as u64,
            FileSource::Dir => 0,
            FileSource::Path(source) => match std::fs::metadata(source) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => {
                    errors.push(FatError::Source {
                        path: file.path.clone(),
                        source_path: source.clone(),
                        source: std::io::Error::other("not a regular file"),
                    });
                    continue;
                }
                Err(e) => {
                    errors.push(FatError::Source {
                        path: file.path.clone(),
                        source_path: source.clone(),
                        source: e,
                    });
                    continue;
                }
            },
        };
        if actual != file.size {
            errors.push(FatError::SizeMismatch {
                path: file.path.clone(),
                expected: file.size,
                actual,
            });
        }
    }
    FatError::from_list(errors)
}

/// Sectors 0–7: boot sector, FSInfo, zeros, backup boot sector at 6, FSInfo copy at 7.
fn reserved_area(layout: &FatLayout) -> Vec<u8> {
    let boot = boot_sector(layout);
    let info = fs_info(layout);
    let mut area = vec![0u8; 8 * SECTOR as usize];
    area[..512].copy_from_slice(&boot);
    area[512..1024].copy_from_slice(&info);
    area[6 * 512..7 * 512].copy_from_slice(&boot);
    area[7 * 512..].copy_from_slice(&info);
    area
}

/// The boot sector with the values of §2 (jump, OEM name, BPB, extended BPB, stub).
pub(crate) fn boot_sector(layout: &FatLayout) -> [u8; 512] {
    let g = &layout.geometry;
    let mut b = [0u8; 512];
    let put16 =
        |b: &mut [u8; 512], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |b: &mut [u8; 512], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    b[3..11].copy_from_slice(b"MSWIN4.1");
    put16(&mut b, 0x0B, SECTOR as u16);
    b[0x0D] = g.sectors_per_cluster as u8;
    put16(&mut b, 0x0E, g.reserved_sectors as u16);
    b[0x10] = 2; // NumFATs
                 // RootEntCnt, TotSec16 and FATSz16 stay 0: FATSz16 = 0 is what marks FAT32.
    b[0x15] = 0xF8; // media: fixed disk
    put16(&mut b, 0x18, 63); // SecPerTrk, CHS only
    put16(&mut b, 0x1A, 255); // NumHeads, CHS only
    put32(&mut b, 0x1C, layout.hidden_sectors);
    put32(&mut b, 0x20, g.total_sectors);
    put32(&mut b, 0x24, g.fat_sectors);
    // ExtFlags 0 (mirrored FATs) and FSVer 0: OVMF and Windows refuse anything else.
    put32(&mut b, 0x2C, 2); // root cluster
    put16(&mut b, 0x30, 1); // FSInfo sector
    put16(&mut b, 0x32, 6); // backup boot sector
    b[0x40] = 0x80; // drive number
    b[0x42] = 0x29; // extended boot signature: the next three fields are valid
    put32(&mut b, 0x43, layout.volume_id);
    b[0x47..0x52].copy_from_slice(layout.label.as_ref().unwrap_or(b"NO NAME    "));
    b[0x52..0x5A].copy_from_slice(b"FAT32   ");
    // Boot code if a BIOS ever jumps here: int 18h ("no bootable disk"), then hang.
    b[0x5A..0x5E].copy_from_slice(&[0xCD, 0x18, 0xEB, 0xFE]);
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// FSInfo with the exact free count and the last allocated cluster as hint (§4.1).
fn fs_info(layout: &FatLayout) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    s[488..492].copy_from_slice(&layout.free_clusters().to_le_bytes());
    s[492..496].copy_from_slice(&(layout.used_clusters + 1).to_le_bytes());
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    s
}

/// Writes the non-zero prefix of both FATs; the rest (free clusters) stays a hole.
fn write_fats<W: Write + Seek>(layout: &FatLayout, sink: &mut Sink<'_, W>) -> Result<(), FatError> {
    // Last cluster of every run, ascending (runs are laid out in increasing order).
    let ends: Vec<u32> = layout
        .dirs
        .iter()
        .map(|d| (d.first_cluster, d.clusters))
        .chain(layout.files.iter().map(|f| (f.first_cluster, f.clusters)))
        .filter(|&(_, n)| n > 0)
        .map(|(first, n)| first + n - 1)
        .collect();
    let entries = u64::from(layout.used_clusters) + 2;
    let mut chunk = Vec::with_capacity((FAT_CHUNK_ENTRIES * 4) as usize);
    for copy in 0..2 {
        let base = layout.geometry.fat_offset(copy);
        let mut start = 0u64;
        while start < entries {
            let end = (start + FAT_CHUNK_ENTRIES).min(entries);
            chunk.clear();
            for entry in start..end {
                let value = match entry {
                    0 => 0x0FFF_FF00 | 0xF8, // media byte repeated
                    1 => END_OF_CHAIN,       // clean, no hard error
                    c => {
                        let c = c as u32;
                        if ends.binary_search(&c).is_ok() {
                            END_OF_CHAIN
                        } else {
                            c + 1
                        }
                    }
                };
                chunk.extend_from_slice(&value.to_le_bytes());
            }
            sink.put(base + start * 4, &chunk)?;
            sink.advance(chunk.len() as u64);
            start = end;
        }
    }
    Ok(())
}

/// Copies exactly `file.size` bytes of `source`; a source that is shorter or longer
/// than when it was planned is an error rather than a silently wrong image.
fn copy_file<W: Write + Seek>(
    sink: &mut Sink<'_, W>,
    offset: u64,
    file: &FatFile,
    source: &std::path::Path,
    buffer: &mut [u8],
) -> Result<(), FatError> {
    let read_error = |e: std::io::Error| FatError::Source {
        path: file.path.clone(),
        source_path: source.to_path_buf(),
        source: e,
    };
    let mut input = File::open(source).map_err(read_error)?;
    let mut copied = 0u64;
    while copied < file.size {
        let want = (file.size - copied).min(buffer.len() as u64) as usize;
        let got = read_full(&mut input, &mut buffer[..want]).map_err(read_error)?;
        if got < want {
            return Err(FatError::SizeMismatch {
                path: file.path.clone(),
                expected: file.size,
                actual: copied + got as u64,
            });
        }
        sink.put_sparse(offset + copied, &buffer[..got])?;
        copied += got as u64;
        sink.advance(got as u64);
    }
    let mut probe = [0u8; 1];
    if read_full(&mut input, &mut probe).map_err(read_error)? > 0 {
        let actual = input.metadata().map_or(file.size + 1, |m| m.len());
        return Err(FatError::SizeMismatch {
            path: file.path.clone(),
            expected: file.size,
            actual,
        });
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The output with its base offset, current position (to skip redundant seeks) and the
/// progress count.
struct Sink<'a, W> {
    out: &'a mut W,
    base: u64,
    position: Option<u64>,
    done: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<W: Write + Seek> Sink<'_, W> {
    /// Writes `data` at volume offset `offset`.
    fn put(&mut self, offset: u64, data: &[u8]) -> Result<(), FatError> {
        let at = self.base + offset;
        let fail = |source| FatError::Write { offset: at, source };
        if self.position != Some(at) {
            self.out.seek(SeekFrom::Start(at)).map_err(fail)?;
        }
        self.out.write_all(data).map_err(fail)?;
        self.position = Some(at + data.len() as u64);
        Ok(())
    }

    /// Like `put`, but leaves all-zero blocks as holes.
    fn put_sparse(&mut self, offset: u64, data: &[u8]) -> Result<(), FatError> {
        let mut run_start = None;
        for (i, block) in data.chunks(ZERO_BLOCK).enumerate() {
            let zero = block.iter().all(|&b| b == 0);
            match (zero, run_start) {
                (false, None) => run_start = Some(i * ZERO_BLOCK),
                (true, Some(s)) => {
                    self.put(offset + s as u64, &data[s..i * ZERO_BLOCK])?;
                    run_start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = run_start {
            self.put(offset + s as u64, &data[s..])?;
        }
        Ok(())
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        (self.progress)(self.done);
    }
}
