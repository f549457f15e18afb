//! UDF (ECMA-167 3rd edition as profiled by OSTA UDF 1.02–2.01): from the anchor to the root folder.
//!
//! Used: 3/10.2 anchor volume descriptor pointer (sector 256, else N−256 or N, N the last sector);
//! 3/8.4 the main volume descriptor sequence, else the reserve one, with 3/10.3 pointers followed;
//! 3/10.1 primary, 3/10.5 partition and 3/10.6 logical volume descriptors (block size 2048, type 1
//! partition maps 3/10.7.2; type 2 maps — virtual, sparable, metadata, UDF 1.50 and later — are refused);
//! 4/14.1 file set descriptor (located by the logical volume's contents-use long_ad, UDF 2.2.4.4). The
//! file tree itself is read in [`file`].

mod file;
mod tag;

use crate::image::{Image, SECTOR};
use crate::tree::Tree;
use crate::IsoError;

use tag::{u16_at, u32_at};

const TAG_PRIMARY: u16 = 1;
const TAG_ANCHOR: u16 = 2;
const TAG_POINTER: u16 = 3;
const TAG_PARTITION: u16 = 5;
const TAG_LOGICAL_VOLUME: u16 = 6;
const TAG_TERMINATOR: u16 = 8;
const TAG_FILE_SET: u16 = 256;

/// Most sectors of volume descriptors read, pointers included (a real sequence has about ten).
const MAX_VDS_SECTORS: u64 = 4096;
/// Most volume descriptor pointers followed.
const MAX_VDS_POINTERS: usize = 16;

/// A partition as the logical volume addresses it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Partition {
    /// First sector of the partition in the image.
    pub start: u64,
    /// Its length in sectors.
    pub len: u64,
}

/// The volume descriptors that matter, each the one with the highest sequence number.
#[derive(Default)]
struct Sequence {
    primary: Option<(u32, Vec<u8>)>,
    logical: Option<(u32, Vec<u8>)>,
    /// Partition number → (sequence number, start, length).
    partitions: Vec<(u16, u32, Partition)>,
}

/// Walks the UDF tree into `tree`; returns the volume label.
pub(crate) fn read_tree(img: &Image, tree: &mut Tree) -> Result<String, IsoError> {
    let anchor = find_anchor(img)?;
    let main = (u32_at(&anchor, 20), u32_at(&anchor, 16));
    let reserve = (u32_at(&anchor, 28), u32_at(&anchor, 24));
    // The reserve copy is there for a damaged main sequence; report the main one's fault if both fail.
    let seq = match read_sequence(img, main) {
        Ok(seq) => seq,
        Err(e) => read_sequence(img, reserve).map_err(|_| e)?,
    };
    let Some((_, lvd)) = seq.logical else {
        return Err(img.corrupt(
            Some(u64::from(main.0) * SECTOR),
            "the UDF volume descriptor sequence has no logical volume descriptor",
        ));
    };
    let parts = partition_maps(img, &lvd, &seq.partitions)?;
    let label = match tag::dstring(&lvd[84..212]) {
        l if l.is_empty() => seq
            .primary
            .map(|(_, p)| tag::dstring(&p[24..56]))
            .unwrap_or_default(),
        l => l,
    };
    let fsd_at = file::LongAd::parse(&lvd[248..264]);
    let walker = file::Walker::new(img, parts);
    let fsd = walker.read_block(fsd_at.part, fsd_at.lbn, &|| {
        "the UDF file set descriptor".into()
    })?;
    let fsd_offset = walker.offset_of(fsd_at.part, fsd_at.lbn);
    match tag::check(&fsd, Some(fsd_at.lbn)) {
        Ok(t) if t.id == TAG_FILE_SET => {}
        Ok(t) => {
            return Err(img.corrupt(
                fsd_offset,
                format!(
                    "the UDF file set descriptor is missing (found descriptor tag {})",
                    t.id
                ),
            ))
        }
        Err(f) => {
            return Err(img.corrupt(
                fsd_offset,
                format!("the UDF file set descriptor: {}", f.describe(fsd_at.lbn)),
            ))
        }
    }
    let root = file::LongAd::parse(&fsd[400..416]);
    walker.walk(root, tree)?;
    Ok(label)
}

/// The first valid anchor at sector 256, N−256 or N (N the last sector; N−257 and N−1 are tried
/// too, for images whose length was counted one sector differently).
fn find_anchor(img: &Image) -> Result<Vec<u8>, IsoError> {
    let n = img.sectors();
    let mut candidates = vec![256];
    for back in [257, 256, 1] {
        if let Some(s) = n.checked_sub(back) {
            if s > 256 && !candidates.contains(&s) {
                candidates.push(s);
            }
        }
    }
    let mut first_fault = None;
    for &lsn in &candidates {
        if lsn >= n {
            first_fault.get_or_insert(format!("the image ends before sector {lsn}"));
            continue;
        }
        let d = img.sector(lsn, &|| "the UDF anchor".into())?;
        if d.iter().all(|&b| b == 0) {
            first_fault.get_or_insert(format!("sector {lsn} is blank"));
            continue;
        }
        match tag::check(&d, Some(lsn as u32)) {
            Ok(t) if t.id == TAG_ANCHOR => return Ok(d),
            Ok(t) => {
                first_fault.get_or_insert(format!("sector {lsn} holds descriptor tag {}", t.id));
            }
            Err(f) => {
                first_fault.get_or_insert(format!("sector {lsn}: {}", f.describe(lsn as u32)));
            }
        }
    }
    Err(img.corrupt(
        Some(256 * SECTOR),
        format!(
            "it is marked as UDF but has no valid anchor volume descriptor pointer at sector 256, \
             N-256 or N ({})",
            first_fault.unwrap_or_default()
        ),
    ))
}

/// Reads one volume descriptor sequence (`(sector, bytes)`) up to its terminator.
fn read_sequence(img: &Image, (start, len): (u32, u32)) -> Result<Sequence, IsoError> {
    let mut seq = Sequence::default();
    let mut extent = (u64::from(start), u64::from(len) / SECTOR);
    let mut pointers = 0;
    let mut read = 0u64;
    'extents: loop {
        let (first, count) = extent;
        for lsn in first..first + count {
            read += 1;
            if read > MAX_VDS_SECTORS {
                return Err(img.corrupt(
                    Some(first * SECTOR),
                    format!(
                        "the UDF volume descriptor sequence runs past {MAX_VDS_SECTORS} sectors"
                    ),
                ));
            }
            let d = img.sector(lsn, &|| "the UDF volume descriptor sequence".into())?;
            if d.iter().all(|&b| b == 0) {
                break 'extents; // an unrecorded sector ends the sequence
            }
            let t = tag::check(&d, Some(lsn as u32)).map_err(|f| {
                img.corrupt(
                    Some(lsn * SECTOR),
                    format!("a UDF volume descriptor: {}", f.describe(lsn as u32)),
                )
            })?;
            let number = u32_at(&d, 16);
            match t.id {
                TAG_PRIMARY => keep_newest(&mut seq.primary, number, d),
                TAG_LOGICAL_VOLUME => keep_newest(&mut seq.logical, number, d),
                TAG_PARTITION => {
                    let id = u16_at(&d, 22);
                    let part = Partition {
                        start: u64::from(u32_at(&d, 188)),
                        len: u64::from(u32_at(&d, 192)),
                    };
                    match seq.partitions.iter_mut().find(|p| p.0 == id) {
                        Some(p) if p.1 <= number => *p = (id, number, part),
                        Some(_) => {}
                        None => seq.partitions.push((id, number, part)),
                    }
                }
                TAG_POINTER => {
                    pointers += 1;
                    if pointers > MAX_VDS_POINTERS {
                        return Err(img.corrupt(
                            Some(lsn * SECTOR),
                            "UDF volume descriptor pointers chain too long (a loop?)",
                        ));
                    }
                    extent = (
                        u64::from(u32_at(&d, 24)),
                        u64::from(u32_at(&d, 20)) / SECTOR,
                    );
                    continue 'extents;
                }
                TAG_TERMINATOR => break 'extents,
                _ => {} // implementation use, unallocated space: nothing to read files by
            }
        }
        break;
    }
    Ok(seq)
}

fn keep_newest(slot: &mut Option<(u32, Vec<u8>)>, number: u32, d: Vec<u8>) {
    if slot.as_ref().is_none_or(|(n, _)| *n <= number) {
        *slot = Some((number, d));
    }
}

/// The partition each partition reference number (index in the map table) stands for.
fn partition_maps(
    img: &Image,
    lvd: &[u8],
    partitions: &[(u16, u32, Partition)],
) -> Result<Vec<Partition>, IsoError> {
    let block = u32_at(lvd, 212);
    if u64::from(block) != SECTOR {
        return Err(img.unsupported(format!(
            "a UDF logical block size of {block} bytes (2048 expected)"
        )));
    }
    let table_len = u32_at(lvd, 264) as usize;
    let count = u32_at(lvd, 268) as usize;
    let table = lvd.get(440..440usize.saturating_add(table_len)).ok_or_else(|| {
        img.corrupt(
            None,
            format!("the UDF logical volume descriptor's partition map table ({table_len} bytes) overruns it"),
        )
    })?;
    let mut maps = Vec::new();
    let mut pos = 0;
    for i in 0..count {
        let (kind, len) = match table.get(pos..pos + 2) {
            Some(&[k, l]) if l >= 2 && pos + usize::from(l) <= table.len() => (k, usize::from(l)),
            _ => return Err(img.corrupt(None, format!("UDF partition map {i} is cut short"))),
        };
        let map = &table[pos..pos + len];
        pos += len;
        match kind {
            1 if len == 6 => {
                let number = u16_at(map, 4);
                let Some(&(_, _, part)) = partitions.iter().find(|p| p.0 == number) else {
                    return Err(img.corrupt(
                        None,
                        format!("UDF partition map {i} names partition {number}, which has no partition descriptor"),
                    ));
                };
                maps.push(part);
            }
            2 => {
                let ident: String = map
                    .get(5..28)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|&&b| b != 0)
                    .map(|&b| char::from(b))
                    .collect();
                return Err(img.unsupported(format!(
                    "a UDF type 2 partition map {ident:?} (virtual, sparable and metadata partitions \
                     come with UDF 1.50 and later; UDF 1.02 media use plain type 1 maps)"
                )));
            }
            _ => {
                return Err(img.corrupt(
                    None,
                    format!("UDF partition map {i} has unknown type {kind} and length {len}"),
                ))
            }
        }
    }
    if maps.is_empty() {
        return Err(img.corrupt(None, "the UDF logical volume has no partition map"));
    }
    Ok(maps)
}
