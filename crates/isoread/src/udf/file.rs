//! The UDF file tree: file entries, their allocation descriptors, and the file identifier
//! descriptors that make up a folder.
//!
//! Used: ECMA-167 4/14.9 file entry (tag 261) and 4/14.17 extended file entry (tag 266); 4/14.6 ICB
//! tag (file type 4 folder, 5 file; flags bits 0–2 say how the data is described); 4/14.7 indirect
//! entry (tag 259, followed); 4/14.14.1 short_ad, 4/14.14.2 long_ad, 4/14.14.3 extended_ad, with the
//! extent length's top two bits (0 recorded, 1 allocated but not recorded, 2 neither — both read as
//! zeros —, 3 the next extent of allocation descriptors, 4/14.5 tag 258); data embedded in the entry
//! (flags = 3); 4/14.4 file identifier descriptors (tag 257; deleted and parent entries skipped).
//! Other file types (symbolic links, devices, stream folders) are left out of the listing.

use std::collections::HashSet;

use super::tag::{self, u16_at, u32_at, u64_at};
use super::Partition;
use crate::image::{Image, SECTOR};
use crate::tree::{shown, Tree, MAX_DEPTH};
use crate::{Entry, Extent, IsoError};

const TAG_FID: u16 = 257;
const TAG_AED: u16 = 258;
const TAG_INDIRECT: u16 = 259;
const TAG_FILE_ENTRY: u16 = 261;
const TAG_EXT_FILE_ENTRY: u16 = 266;

const TYPE_UNSPECIFIED: u8 = 0;
const TYPE_DIR: u8 = 4;
const TYPE_FILE: u8 = 5;

/// Most indirect entries followed to reach a file entry.
const MAX_INDIRECT: usize = 16;

/// A long allocation descriptor's address part: a block of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LongAd {
    pub part: u16,
    pub lbn: u32,
}

impl LongAd {
    pub fn parse(b: &[u8]) -> LongAd {
        LongAd {
            lbn: u32_at(b, 4),
            part: u16_at(b, 8),
        }
    }
}

/// A decoded (extended) file entry.
struct FileEntry {
    at: LongAd,
    file_type: u8,
    /// Flags bits 0–2: 0 short_ad, 1 long_ad, 2 extended_ad, 3 embedded.
    ad_type: u16,
    size: u64,
    /// The allocation descriptor area, or the data itself when embedded.
    ads: Vec<u8>,
    /// Byte offset of `ads` in the image.
    ads_offset: u64,
}

pub(crate) struct Walker<'a> {
    img: &'a Image,
    parts: Vec<Partition>,
}

impl<'a> Walker<'a> {
    pub fn new(img: &'a Image, parts: Vec<Partition>) -> Self {
        Walker { img, parts }
    }

    /// Byte offset of a block, if the partition exists.
    pub fn offset_of(&self, part: u16, lbn: u32) -> Option<u64> {
        let p = self.parts.get(usize::from(part))?;
        Some((p.start + u64::from(lbn)) * SECTOR)
    }

    /// Byte offset of `len` bytes from block `lbn` of partition `part`, checked against the partition
    /// and the image.
    fn locate(
        &self,
        part: u16,
        lbn: u32,
        len: u64,
        what: &dyn Fn() -> String,
    ) -> Result<u64, IsoError> {
        let Some(p) = self.parts.get(usize::from(part)) else {
            return Err(self.img.corrupt(
                None,
                format!(
                    "{} is in partition {part}, which the volume does not have",
                    what()
                ),
            ));
        };
        let blocks = len.div_ceil(SECTOR);
        if u64::from(lbn) + blocks > p.len {
            return Err(self.img.corrupt(
                Some((p.start + u64::from(lbn)) * SECTOR),
                format!(
                    "{} lies at blocks {lbn}..{} of a partition of {} blocks",
                    what(),
                    u64::from(lbn) + blocks,
                    p.len
                ),
            ));
        }
        let offset = (p.start + u64::from(lbn)) * SECTOR;
        self.img.check_range(offset, len, what)?;
        Ok(offset)
    }

    pub fn read_block(
        &self,
        part: u16,
        lbn: u32,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, IsoError> {
        let offset = self.locate(part, lbn, SECTOR, what)?;
        self.img.read(offset, SECTOR as usize, what)
    }

    /// Walks the tree from the root folder's ICB.
    pub fn walk(&self, root: LongAd, tree: &mut Tree) -> Result<(), IsoError> {
        let root_entry = self.file_entry(root, "")?;
        if root_entry.file_type != TYPE_DIR {
            return Err(self.img.corrupt(
                self.offset_of(root.part, root.lbn),
                format!(
                    "the UDF root ICB is of file type {}, not a folder",
                    root_entry.file_type
                ),
            ));
        }
        let mut visited = HashSet::from([root]);
        let mut pending = vec![(root_entry, String::new(), 0usize)];
        while let Some((dir, path, depth)) = pending.pop() {
            for (name, icb, fid_at) in self.list(&dir, &path, tree)? {
                let child_path = Tree::child(self.img, fid_at, &path, &name)?;
                let entry = self.file_entry(icb, &child_path)?;
                match entry.file_type {
                    TYPE_DIR => {
                        if depth + 1 > MAX_DEPTH {
                            return Err(self.img.corrupt(
                                Some(fid_at),
                                format!(
                                    "folders are nested more than {MAX_DEPTH} deep at {}",
                                    shown(&child_path)
                                ),
                            ));
                        }
                        if !visited.insert(icb) {
                            return Err(self.img.corrupt(
                                Some(fid_at),
                                format!(
                                    "the folder {} points back at a folder already read (a directory loop)",
                                    shown(&child_path)
                                ),
                            ));
                        }
                        tree.push(self.img, Entry::dir(child_path.clone()))?;
                        pending.push((entry, child_path, depth + 1));
                    }
                    TYPE_FILE | TYPE_UNSPECIFIED => {
                        let extents = self.extents(&entry, &child_path, tree)?;
                        tree.push(
                            self.img,
                            Entry {
                                path: child_path,
                                size: entry.size,
                                is_dir: false,
                                extents,
                            },
                        )?;
                    }
                    _ => {} // symbolic links, devices, streams: nothing a Windows image holds
                }
            }
        }
        Ok(())
    }

    /// The named entries of a folder: (name, ICB, byte offset of the identifier descriptor).
    fn list(
        &self,
        dir: &FileEntry,
        path: &str,
        tree: &mut Tree,
    ) -> Result<Vec<(String, LongAd, u64)>, IsoError> {
        let dir_offset = self.offset_of(dir.at.part, dir.at.lbn).unwrap_or(0);
        tree.spend_dir(self.img, dir_offset, path, dir.size)?;
        let extents = self.extents(dir, path, tree)?;
        // Descriptors may straddle blocks, so the folder is read whole; remember where each byte lives.
        let mut data = Vec::with_capacity(dir.size as usize);
        let mut starts = Vec::with_capacity(extents.len());
        for e in &extents {
            starts.push((data.len(), e.offset));
            if e.offset == Extent::ZEROS {
                data.resize(data.len() + e.len as usize, 0);
            } else {
                data.extend(self.img.read(e.offset, e.len as usize, &|| {
                    format!("the folder {}", shown(path))
                })?);
            }
        }
        let at = |pos: usize| {
            let i = starts.partition_point(|s| s.0 <= pos).saturating_sub(1);
            starts
                .get(i)
                .map_or(dir_offset, |&(s, off)| off.wrapping_add((pos - s) as u64))
        };
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let fid_at = at(pos);
            let corrupt = |what: String| {
                self.img.corrupt(
                    Some(fid_at),
                    format!("in the folder {}: {what}", shown(path)),
                )
            };
            let rest = &data[pos..];
            if rest.len() < 38 {
                return Err(corrupt(format!("{} stray bytes at its end", rest.len())));
            }
            let name_len = usize::from(rest[19]);
            let iu_len = usize::from(u16_at(rest, 36));
            let len = (38 + iu_len + name_len).next_multiple_of(4);
            if 38 + iu_len + name_len > rest.len() {
                return Err(corrupt("a file identifier descriptor is cut short".into()));
            }
            let fid = &rest[..len.min(rest.len())];
            match tag::check(fid, None) {
                Ok(t) if t.id == TAG_FID => {}
                Ok(t) => {
                    return Err(corrupt(format!(
                        "descriptor tag {} where a file identifier belongs",
                        t.id
                    )))
                }
                Err(f) => return Err(corrupt(format!("a file identifier: {}", f.describe(0)))),
            }
            pos += len;
            let characteristics = fid[18];
            if characteristics & (1 << 2 | 1 << 3) != 0 {
                continue; // deleted, or the parent folder
            }
            let name = tag::cs0(&fid[38 + iu_len..38 + iu_len + name_len]).map_err(corrupt)?;
            let icb = LongAd::parse(&fid[20..36]);
            out.push((name, icb, fid_at));
        }
        Ok(out)
    }

    /// Reads the file entry at `icb`, following indirect entries.
    fn file_entry(&self, mut icb: LongAd, path: &str) -> Result<FileEntry, IsoError> {
        let what = || format!("the file entry of {}", shown(path));
        for _ in 0..MAX_INDIRECT {
            let b = self.read_block(icb.part, icb.lbn, &what)?;
            let offset = self.offset_of(icb.part, icb.lbn);
            let t = tag::check(&b, Some(icb.lbn)).map_err(|f| {
                self.img
                    .corrupt(offset, format!("{}: {}", what(), f.describe(icb.lbn)))
            })?;
            let (head, ea_at) = match t.id {
                TAG_FILE_ENTRY => (176, 168),
                TAG_EXT_FILE_ENTRY => (216, 208),
                TAG_INDIRECT => {
                    icb = LongAd::parse(&b[36..52]);
                    continue;
                }
                other => {
                    return Err(self.img.corrupt(
                        offset,
                        format!(
                            "{}: descriptor tag {other} where a file entry (261 or 266) belongs",
                            what()
                        ),
                    ))
                }
            };
            let ea_len = u32_at(&b, ea_at) as usize;
            let ad_len = u32_at(&b, ea_at + 4) as usize;
            let ads_start = head + ea_len.min(SECTOR as usize);
            let Some(ads) = b.get(ads_start..ads_start.saturating_add(ad_len)) else {
                return Err(self.img.corrupt(
                    offset,
                    format!(
                        "{}: {ea_len} bytes of extended attributes and {ad_len} of allocation descriptors overrun its block",
                        what()
                    ),
                ));
            };
            return Ok(FileEntry {
                at: icb,
                file_type: b[27],
                ad_type: u16_at(&b, 34) & 7,
                size: u64_at(&b, 56),
                ads: ads.to_vec(),
                ads_offset: offset.unwrap_or(0) + ads_start as u64,
            });
        }
        Err(self.img.corrupt(
            self.offset_of(icb.part, icb.lbn),
            format!(
                "{}: more than {MAX_INDIRECT} indirect entries in a row",
                what()
            ),
        ))
    }

    /// The byte ranges holding a file's `size` bytes, in order.
    fn extents(
        &self,
        fe: &FileEntry,
        path: &str,
        tree: &mut Tree,
    ) -> Result<Vec<Extent>, IsoError> {
        let fe_offset = self.offset_of(fe.at.part, fe.at.lbn);
        let corrupt = |what: String| {
            self.img
                .corrupt(fe_offset, format!("{}: {what}", shown(path)))
        };
        let ad_size = match fe.ad_type {
            0 => 8,
            1 => 16,
            2 => 20,
            3 => {
                if fe.size > fe.ads.len() as u64 {
                    return Err(corrupt(format!(
                        "its {} bytes are said to be embedded in a file entry that holds {}",
                        fe.size,
                        fe.ads.len()
                    )));
                }
                return Ok(if fe.size == 0 {
                    Vec::new()
                } else {
                    tree.spend_extent(self.img, path)?;
                    vec![Extent {
                        offset: fe.ads_offset,
                        len: fe.size,
                    }]
                });
            }
            other => {
                return Err(corrupt(format!(
                    "unknown allocation descriptor type {other}"
                )))
            }
        };
        let mut out = Vec::new();
        let mut left = fe.size;
        let mut area = fe.ads.clone();
        let mut seen = HashSet::new();
        while left > 0 {
            let mut next = None;
            for ad in area.chunks_exact(ad_size) {
                let raw = u32_at(ad, 0);
                let (kind, len) = (raw >> 30, u64::from(raw & 0x3FFF_FFFF));
                if len == 0 {
                    break; // the end of the descriptors
                }
                let (at, recorded) = match ad_size {
                    8 => (
                        LongAd {
                            part: fe.at.part,
                            lbn: u32_at(ad, 4),
                        },
                        len,
                    ),
                    16 => (LongAd::parse(ad), len),
                    _ => (
                        LongAd {
                            lbn: u32_at(ad, 12),
                            part: u16_at(ad, 16),
                        },
                        u64::from(u32_at(ad, 4) & 0x3FFF_FFFF).min(len),
                    ),
                };
                if kind == 3 {
                    next = Some((at, len));
                    break;
                }
                let take = len.min(left);
                let what = || format!("the data of {}", shown(path));
                let data = if kind == 0 { recorded.min(take) } else { 0 };
                if data > 0 {
                    let offset = self.locate(at.part, at.lbn, data, &what)?;
                    tree.spend_extent(self.img, path)?;
                    out.push(Extent { offset, len: data });
                }
                if take > data {
                    tree.spend_extent(self.img, path)?;
                    out.push(Extent {
                        offset: Extent::ZEROS,
                        len: take - data,
                    });
                }
                left -= take;
                if left == 0 {
                    break;
                }
            }
            if left == 0 {
                break;
            }
            let Some((at, len)) = next else {
                return Err(corrupt(format!(
                    "it is {} bytes long but its allocation descriptors cover only {}",
                    fe.size,
                    fe.size - left
                )));
            };
            if !seen.insert(at) {
                return Err(corrupt(
                    "its allocation descriptors continue in a loop".into(),
                ));
            }
            let b = self.read_block(at.part, at.lbn, &|| {
                format!("the allocation descriptors of {}", shown(path))
            })?;
            match tag::check(&b, Some(at.lbn)) {
                Ok(t) if t.id == TAG_AED => {}
                Ok(t) => {
                    return Err(corrupt(format!(
                        "descriptor tag {} where more allocation descriptors belong",
                        t.id
                    )))
                }
                Err(f) => {
                    return Err(corrupt(format!(
                        "its allocation extent descriptor: {}",
                        f.describe(at.lbn)
                    )))
                }
            }
            let ad_len = u32_at(&b, 20) as usize;
            if 24 + ad_len as u64 > SECTOR.min(len) {
                return Err(corrupt(format!(
                    "an allocation extent descriptor claims {ad_len} bytes of descriptors"
                )));
            }
            area = b[24..24 + ad_len].to_vec();
        }
        Ok(out)
    }
}
