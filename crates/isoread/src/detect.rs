//! Which file systems an image carries, from the volume descriptors that start at sector 16: the
//! ISO 9660 set (ECMA-119 §8: primary, supplementary, terminator) and, after it on a bridge disc, the
//! UDF volume recognition sequence (ECMA-167 2/8.3: BEA01, NSR02 or NSR03, TEA01).

use crate::image::{Image, SECTOR};
use crate::{FsKind, IsoError};

/// First sector of the descriptors; the 32 KiB before it are the system area.
const FIRST: u64 = 16;
/// Descriptors examined; a real disc has fewer than ten.
const MAX_DESCRIPTORS: u64 = 64;

/// What the descriptor scan found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Sector of the first ISO 9660 primary volume descriptor.
    pub pvd: Option<u64>,
    /// Sector of the first Joliet supplementary volume descriptor.
    pub joliet: Option<u64>,
    /// An NSR02 or NSR03 descriptor: a UDF file system is recorded.
    pub udf: bool,
}

impl Found {
    /// The file systems present, best first.
    pub fn kinds(&self) -> Vec<FsKind> {
        let mut kinds = Vec::new();
        if self.udf {
            kinds.push(FsKind::Udf);
        }
        if self.joliet.is_some() {
            kinds.push(FsKind::Joliet);
        }
        if self.pvd.is_some() {
            kinds.push(FsKind::Iso9660);
        }
        kinds
    }
}

/// Scans the descriptors up to the first sector that is none of them.
pub(crate) fn scan(img: &Image) -> Result<Found, IsoError> {
    let mut found = Found::default();
    for lsn in FIRST..FIRST + MAX_DESCRIPTORS {
        if (lsn + 1) * SECTOR > img.len {
            break;
        }
        let d = img.sector(lsn, &|| format!("volume descriptor {lsn}"))?;
        match &d[1..6] {
            b"CD001" => match d[0] {
                1 => {
                    found.pvd.get_or_insert(lsn);
                }
                // Version 2 of a supplementary descriptor is the ISO 9660:1999 enhanced one.
                2 if d[6] == 1 && is_joliet_escape(&d[88..91]) => {
                    found.joliet.get_or_insert(lsn);
                }
                _ => {}
            },
            b"NSR02" | b"NSR03" => found.udf = true,
            b"BEA01" | b"BOOT2" | b"CDW02" => {}
            // TEA01 closes the extended area; anything else ends the sequence too.
            _ => break,
        }
    }
    Ok(found)
}

/// Joliet's escape sequences for UCS-2 levels 1, 2 and 3.
fn is_joliet_escape(esc: &[u8]) -> bool {
    matches!(esc, b"%/@" | b"%/C" | b"%/E")
}
