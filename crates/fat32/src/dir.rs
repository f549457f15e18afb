//! Directory entries: the 32-byte short entry, FAT timestamps, and the bytes of a whole
//! directory (volume label or `.`/`..`, then each child's long-name slots and short entry).

use super::names::lfn_entries;
use super::plan::{FatLayout, Target};

/// DIR_Attr of the volume-label entry.
pub(crate) const ATTR_VOLUME_ID: u8 = 0x08;
/// DIR_Attr of a directory.
pub(crate) const ATTR_DIRECTORY: u8 = 0x10;
/// DIR_Attr of a file.
pub(crate) const ATTR_ARCHIVE: u8 = 0x20;
/// Bytes per directory slot.
pub(crate) const SLOT: usize = 32;

/// A FAT date and time (local time, 2-second resolution; §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub date: u16,
    pub time: u16,
}

impl Stamp {
    /// The stamp for Unix time `secs` read as UTC, clamped to 1980-01-01 00:00:00 …
    /// 2107-12-31 23:59:58, seconds rounded down to even.
    pub(crate) fn from_unix(secs: i64) -> Stamp {
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_date(days);
        if year < 1980 {
            return Stamp {
                date: (1 << 5) | 1,
                time: 0,
            };
        }
        if year > 2107 {
            return Stamp {
                date: (127 << 9) | (12 << 5) | 31,
                time: (23 << 11) | (59 << 5) | 29,
            };
        }
        let (h, m, s) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
        Stamp {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: ((h << 11) | (m << 5) | (s / 2)) as u16,
        }
    }
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01. Walks years and months:
/// the range is at most a few centuries, so clarity wins over a closed form.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    // Clamp far-off values first; the caller clamps to 1980…2107 anyway.
    let mut days = days.clamp(-400 * 366, 400 * 366);
    let mut year = 1970;
    while days < 0 {
        year -= 1;
        days += if leap(year) { 366 } else { 365 };
    }
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let feb = if leap(year) { 29 } else { 28 };
    let lengths = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for len in lengths {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    (year, month, days + 1)
}

/// One short directory entry with the same stamp in all five time fields (§5).
pub(crate) fn short_entry(
    name: &[u8; 11],
    attr: u8,
    nt_case: u8,
    cluster: u32,
    size: u32,
    stamp: Stamp,
) -> [u8; SLOT] {
    let mut e = [0u8; SLOT];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    e[12] = nt_case;
    // e[13] CrtTimeTenth stays 0.
    e[14..16].copy_from_slice(&stamp.time.to_le_bytes());
    e[16..18].copy_from_slice(&stamp.date.to_le_bytes());
    e[18..20].copy_from_slice(&stamp.date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&stamp.time.to_le_bytes());
    e[24..26].copy_from_slice(&stamp.date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// All clusters of directory `index` of the layout, zero after the last used slot.
pub(crate) fn encode(layout: &FatLayout, index: usize) -> Vec<u8> {
    let dir = &layout.dirs[index];
    let stamp = layout.stamp;
    let len = dir.clusters as usize * layout.geometry.cluster_bytes() as usize;
    let mut buf = Vec::with_capacity(len);
    match dir.parent {
        None => {
            if let Some(label) = &layout.label {
                buf.extend_from_slice(&short_entry(label, ATTR_VOLUME_ID, 0, 0, 0, stamp));
            }
        }
        Some(parent) => {
            // `..` of a child of the root holds 0, never the root's cluster (§7).
            let up = if parent == 0 {
                0
            } else {
                layout.dirs[parent].first_cluster
            };
            let dot = *b".          ";
            let dotdot = *b"..         ";
            buf.extend_from_slice(&short_entry(
                &dot,
                ATTR_DIRECTORY,
                0,
                dir.first_cluster,
                0,
                stamp,
            ));
            buf.extend_from_slice(&short_entry(&dotdot, ATTR_DIRECTORY, 0, up, 0, stamp));
        }
    }
    for entry in &dir.entries {
        if let Some(units) = &entry.form.long {
            for slot in lfn_entries(units, &entry.form.short) {
                buf.extend_from_slice(&slot);
            }
        }
        let (attr, cluster, size) = match entry.target {
            Target::Dir(d) => (ATTR_DIRECTORY, layout.dirs[d].first_cluster, 0),
            // Sizes were checked to be < 4 GiB when planning.
            Target::File(f) => {
                let file = &layout.files[f];
                (ATTR_ARCHIVE, file.first_cluster, file.size as u32)
            }
        };
        buf.extend_from_slice(&short_entry(
            &entry.form.short,
            attr,
            entry.form.nt_case,
            cluster,
            size,
            stamp,
        ));
    }
    debug_assert!(buf.len() <= len);
    buf.resize(len, 0);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        // §5.3: 2024-01-01 12:00:00 is date 0x5821, time 0x6000.
        let s = Stamp::from_unix(1_704_110_400);
        assert_eq!((s.date, s.time), (0x5821, 0x6000));
        // Odd seconds round down.
        assert_eq!(Stamp::from_unix(1_704_110_401).time, 0x6000);
        // 2000-02-29 23:59:58 (a leap day in a century leap year).
        let s = Stamp::from_unix(951_868_798);
        assert_eq!(s.date, (20 << 9) | (2 << 5) | 29);
        assert_eq!(s.time, (23 << 11) | (59 << 5) | 29);
        // Clamped both ways.
        assert_eq!(Stamp::from_unix(0).date, 0x0021);
        assert_eq!(Stamp::from_unix(-5_000_000_000).date, 0x0021);
        assert_eq!(Stamp::from_unix(i64::MAX).date, (127 << 9) | (12 << 5) | 31);
        // 1980-01-01 00:00:00 itself.
        assert_eq!(
            Stamp::from_unix(315_532_800),
            Stamp {
                date: 0x21,
                time: 0
            }
        );
        // 2107-12-31 23:59:59 is still 2107.
        let s = Stamp::from_unix(4_354_819_199);
        assert_eq!(s.date, (127 << 9) | (12 << 5) | 31);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(19_723), (2024, 1, 1));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
    }

    #[test]
    fn short_entry_fields() {
        let stamp = Stamp {
            date: 0x5821,
            time: 0x6000,
        };
        let e = short_entry(b"README  TXT", ATTR_ARCHIVE, 0x18, 0x0012_0034, 5, stamp);
        assert_eq!(&e[..11], b"README  TXT");
        assert_eq!((e[11], e[12], e[13]), (0x20, 0x18, 0));
        assert_eq!(&e[14..20], &[0x00, 0x60, 0x21, 0x58, 0x21, 0x58]);
        assert_eq!(&e[20..22], &[0x12, 0x00]);
        assert_eq!(&e[22..26], &[0x00, 0x60, 0x21, 0x58]);
        assert_eq!(&e[26..28], &[0x34, 0x00]);
        assert_eq!(&e[28..32], &[5, 0, 0, 0]);
    }
}
