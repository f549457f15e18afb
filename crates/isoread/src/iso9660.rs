//! ISO 9660 (ECMA-119) and Joliet: walk the directory hierarchy from the root record of the primary
//! or the Joliet supplementary volume descriptor.
//!
//! Used: §8.4 primary volume descriptor (block size at BP 129, root record at BP 157), §8.5
//! supplementary descriptor (Joliet: escape sequence `%/@`, `%/C` or `%/E`, names in UCS-2 big-endian),
//! §9.1 directory records, §6.8.1 (a record never crosses a 2048-byte sector; a zero length byte
//! means the rest of the sector is unused), §9.1.6 file flags (bit 1 directory, bit 2 associated file,
//! bit 7 "more records of this file follow": multi-extent files, how files over 4 GiB are stored),
//! §7.5 file identifiers (the `;1` version and a trailing `.` are dropped). Interleaved files (§6.4.3)
//! are refused. Path tables are not read: the directory records say the same thing.

use std::collections::HashSet;

use crate::image::{Image, SECTOR};
use crate::tree::{shown, Tree, MAX_DEPTH};
use crate::{Entry, Extent, IsoError};

/// Smallest directory record: 33 fixed bytes and a one-byte identifier.
const MIN_RECORD: usize = 34;

/// One directory record, decoded.
struct Record {
    /// Byte offset of the record in the image, for messages.
    at: u64,
    /// Byte offset of the data (after any extended attribute record).
    data: u64,
    len: u64,
    flags: u8,
    name: String,
}

const FLAG_DIR: u8 = 1 << 1;
const FLAG_ASSOCIATED: u8 = 1 << 2;
const FLAG_MORE: u8 = 1 << 7;

/// Walks the tree of the volume descriptor at sector `vd`; returns the volume label.
pub(crate) fn read_tree(
    img: &Image,
    vd: u64,
    joliet: bool,
    tree: &mut Tree,
) -> Result<String, IsoError> {
    let what = if joliet {
        "Joliet volume descriptor"
    } else {
        "primary volume descriptor"
    };
    let d = img.sector(vd, &|| what.to_string())?;
    let block = u64::from(u16::from_le_bytes([d[128], d[129]]));
    if !matches!(block, 512 | 1024 | 2048) {
        return Err(img.corrupt(
            Some(vd * SECTOR + 128),
            format!(
                "the {what} gives a logical block size of {block} (512, 1024 or 2048 expected)"
            ),
        ));
    }
    let label = if joliet {
        ucs2(&d[40..72])
    } else {
        d[40..72].iter().map(|&b| char::from(b)).collect()
    };
    let walker = Walker { img, block, joliet };
    let root = walker.record(&d[156..190], vd * SECTOR + 156)?;
    if root.flags & FLAG_DIR == 0 {
        return Err(img.corrupt(
            Some(root.at),
            format!("the root record of the {what} is not a folder"),
        ));
    }
    let mut visited = HashSet::from([root.data]);
    let mut pending = vec![(root, String::new(), 0usize)];
    while let Some((dir, path, depth)) = pending.pop() {
        for child in walker.list(&dir, &path, tree)? {
            let child_path = Tree::child(img, child.at, &path, &child.name)?;
            if depth + 1 > MAX_DEPTH {
                return Err(img.corrupt(
                    Some(child.at),
                    format!(
                        "folders are nested more than {MAX_DEPTH} deep at {}",
                        shown(&child_path)
                    ),
                ));
            }
            if !visited.insert(child.data) {
                return Err(img.corrupt(
                    Some(child.at),
                    format!(
                        "the folder {} points back at a folder already read (a directory loop)",
                        shown(&child_path)
                    ),
                ));
            }
            tree.push(img, Entry::dir(child_path.clone()))?;
            pending.push((child, child_path, depth + 1));
        }
    }
    Ok(label.trim_end_matches([' ', '\0']).to_string())
}

struct Walker<'a> {
    img: &'a Image,
    block: u64,
    joliet: bool,
}

impl Walker<'_> {
    /// Reads one directory: files go straight into `tree`, sub-folders are returned.
    fn list(&self, dir: &Record, path: &str, tree: &mut Tree) -> Result<Vec<Record>, IsoError> {
        tree.spend_dir(self.img, dir.at, path, dir.len)?;
        let data = self.img.read(dir.data, dir.len as usize, &|| {
            format!("the folder {}", shown(path))
        })?;
        let mut dirs = Vec::new();
        // A file stored in several sections: its path, size and extents so far.
        let mut open: Option<(Record, Entry)> = None;
        let mut pos = 0usize;
        while pos < data.len() {
            let sector_end = (pos / SECTOR as usize + 1) * SECTOR as usize;
            let sector_end = sector_end.min(data.len());
            let len = usize::from(data[pos]);
            if len == 0 {
                pos = sector_end;
                continue;
            }
            let at = dir.data + pos as u64;
            if len < MIN_RECORD || pos + len > sector_end {
                return Err(self.img.corrupt(
                    Some(at),
                    format!(
                        "a directory record of {len} bytes in the folder {} {}",
                        shown(path),
                        if len < MIN_RECORD {
                            "is too short"
                        } else {
                            "crosses a sector boundary"
                        }
                    ),
                ));
            }
            let raw = &data[pos..pos + len];
            pos += len;
            let id_len = usize::from(raw[32]);
            if id_len == 1 && raw[33] <= 1 {
                continue; // the folder itself and its parent
            }
            let rec = self.record(raw, at)?;
            if rec.flags & FLAG_ASSOCIATED != 0 && open.is_none() {
                continue;
            }
            if let Some((first, entry)) = &mut open {
                if rec.name != first.name {
                    return Err(self.img.corrupt(
                        Some(rec.at),
                        format!(
                            "the file {} is split into sections but its last section is missing",
                            shown(&entry.path)
                        ),
                    ));
                }
                self.add_section(&rec, entry, tree)?;
                if rec.flags & FLAG_MORE == 0 {
                    let (_, entry) = open.take().expect("open section");
                    tree.push(self.img, entry)?;
                }
                continue;
            }
            if rec.flags & FLAG_DIR != 0 {
                if rec.flags & FLAG_MORE != 0 {
                    return Err(self.img.corrupt(
                        Some(rec.at),
                        format!(
                            "the folder {}/{} is marked as split into sections",
                            shown(path),
                            rec.name
                        ),
                    ));
                }
                dirs.push(rec);
                continue;
            }
            let mut entry = Entry {
                path: Tree::child(self.img, rec.at, path, &rec.name)?,
                size: 0,
                is_dir: false,
                extents: Vec::new(),
            };
            self.add_section(&rec, &mut entry, tree)?;
            if rec.flags & FLAG_MORE != 0 {
                open = Some((rec, entry));
            } else {
                tree.push(self.img, entry)?;
            }
        }
        if let Some((first, entry)) = open {
            return Err(self.img.corrupt(
                Some(first.at),
                format!(
                    "the file {} is split into sections but its folder ends before the last one",
                    shown(&entry.path)
                ),
            ));
        }
        Ok(dirs)
    }

    fn add_section(
        &self,
        rec: &Record,
        entry: &mut Entry,
        tree: &mut Tree,
    ) -> Result<(), IsoError> {
        entry.size += rec.len;
        if rec.len == 0 {
            return Ok(());
        }
        self.img.check_range(rec.data, rec.len, &|| {
            format!("the data of {}", shown(&entry.path))
        })?;
        tree.spend_extent(self.img, &entry.path)?;
        entry.extents.push(Extent {
            offset: rec.data,
            len: rec.len,
        });
        Ok(())
    }

    /// Decodes a directory record whose length byte has been checked against the slice.
    fn record(&self, raw: &[u8], at: u64) -> Result<Record, IsoError> {
        let id_len = usize::from(raw[32]);
        if raw.len() < MIN_RECORD || 33 + id_len > raw.len() || usize::from(raw[0]) > raw.len() {
            return Err(self.img.corrupt(
                Some(at),
                "a directory record is shorter than its file identifier",
            ));
        }
        let xattr = u64::from(raw[1]);
        let extent = u64::from(u32::from_le_bytes([raw[2], raw[3], raw[4], raw[5]]));
        let len = u64::from(u32::from_le_bytes([raw[10], raw[11], raw[12], raw[13]]));
        let flags = raw[25];
        let id = &raw[33..33 + id_len];
        let name = if id_len == 1 && id[0] <= 1 {
            String::new() // the root record's own identifier
        } else {
            self.name(id, at)?
        };
        if raw[26] != 0 || raw[27] != 0 {
            return Err(self.img.unsupported(format!(
                "an interleaved file ({name:?}: file unit size {}, gap size {}, record at byte {at})",
                raw[26], raw[27]
            )));
        }
        Ok(Record {
            at,
            data: (extent + xattr) * self.block,
            len,
            flags,
            name,
        })
    }

    fn name(&self, id: &[u8], at: u64) -> Result<String, IsoError> {
        let name = if self.joliet {
            if !id.len().is_multiple_of(2) {
                return Err(self.img.corrupt(
                    Some(at),
                    format!("a Joliet file name has an odd length ({} bytes)", id.len()),
                ));
            }
            ucs2(id)
        } else {
            id.iter().map(|&b| char::from(b)).collect()
        };
        Ok(strip_version(&name).to_string())
    }
}

/// UCS-2 (or UTF-16) big-endian to a string; an unpaired surrogate becomes U+FFFD.
fn ucs2(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// "NAME.EXT;1" → "NAME.EXT", "README.;1" → "README".
fn strip_version(name: &str) -> &str {
    let name = match name.rsplit_once(';') {
        Some((base, v)) if v.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    };
    match name.strip_suffix('.') {
        Some(base) if !base.is_empty() => base,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_trailing_dots_go() {
        assert_eq!(strip_version("BOOT.WIM;1"), "BOOT.WIM");
        assert_eq!(strip_version("README.;1"), "README");
        assert_eq!(strip_version("README."), "README");
        assert_eq!(strip_version("A;B"), "A;B");
        assert_eq!(strip_version("bcd"), "bcd");
        assert_eq!(strip_version(".;1"), ".");
    }

    #[test]
    fn ucs2_decodes_pairs_and_surrogates() {
        assert_eq!(ucs2(&[0, b'A', 0x54, 0x0D]), "A\u{540D}");
        assert_eq!(ucs2(&[0xD8, 0x3D, 0xDE, 0x00]), "\u{1F600}");
        assert_eq!(ucs2(&[0xD8, 0x3D]), "\u{FFFD}");
    }
}
