//! FAT names: long-name validation, case folding, 8.3 names with the NT lower-case bits,
//! deterministic numeric-tail aliases and VFAT long-name slots (§5.1, §5.2, §6).

use std::collections::{BTreeMap, HashSet};

/// DIR_NTRes bit: show the base in lower case.
pub(crate) const NT_LOWER_BASE: u8 = 0x08;
/// DIR_NTRes bit: show the extension in lower case.
pub(crate) const NT_LOWER_EXT: u8 = 0x10;
/// Longest long name in UTF-16 code units.
const MAX_LONG_UNITS: usize = 255;
/// UTF-16 units per long-name slot.
const UNITS_PER_SLOT: usize = 13;

/// Punctuation allowed in 8.3 names besides A–Z and 0–9 (§5.1).
const SHORT_PUNCT: &[u8] = b"!#$%&'()-@^_`{}~";

/// Whether `b` may appear in a stored 8.3 name.
pub(crate) fn is_short_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || SHORT_PUNCT.contains(&b)
}

/// How one directory entry is named on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameForm {
    /// The 11-byte short name as stored (base and extension space-padded, no dot).
    pub short: [u8; 11],
    /// DIR_NTRes case bits (only for names without a long name).
    pub nt_case: u8,
    /// UTF-16 long name, when the short name alone cannot reproduce the name.
    pub long: Option<Vec<u16>>,
}

impl NameForm {
    /// Long-name slots this entry needs before its short entry.
    pub(crate) fn lfn_slots(&self) -> usize {
        self.long
            .as_ref()
            .map_or(0, |units| units.len().div_ceil(UNITS_PER_SLOT))
    }
}

/// Checks one path component against the long-name rules; the error says why.
pub(crate) fn validate_long_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty component (\"//\", or a leading or trailing '/')".into());
    }
    if name == "." || name == ".." {
        return Err(format!("\"{name}\" is not allowed as a name"));
    }
    if let Some(c) = name.chars().find(|&c| (c as u32) < 0x20) {
        return Err(format!(
            "\"{}\" contains the control character U+{:04X}",
            name.escape_debug(),
            c as u32
        ));
    }
    if let Some(c) = name.chars().find(|c| "\"*:<>?\\|".contains(*c)) {
        return Err(format!(
            "\"{name}\" contains '{c}', which FAT names cannot hold"
        ));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(format!(
            "\"{name}\" ends with '.' or ' ', which Windows strips, so it could not be opened"
        ));
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    if is_reserved_device(stem) {
        return Err(format!(
            "\"{name}\" is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, \
             LPT1-9, with any extension), which cannot be opened as a file"
        ));
    }
    let units = name.encode_utf16().count();
    if units > MAX_LONG_UNITS {
        return Err(format!(
            "a component is {units} UTF-16 units long; FAT allows at most {MAX_LONG_UNITS}"
        ));
    }
    Ok(())
}

/// Whether `stem` (the name up to its first dot) names a DOS device.
fn is_reserved_device(stem: &str) -> bool {
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" => true,
        _ => {
            let b = upper.as_bytes();
            b.len() == 4
                && (upper.starts_with("COM") || upper.starts_with("LPT"))
                && (b'1'..=b'9').contains(&b[3])
        }
    }
}

/// Case-folded key: two names are the same FAT name iff their keys are equal. Uses the
/// one-character upper-case mapping, close to Windows' simple upper-casing (so `ß` stays
/// `ß` instead of becoming `SS`).
pub(crate) fn fold(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Names for all entries of one directory, `names` in the directory's (sorted) order.
///
/// Two passes make the aliases collision-free and independent of anything but the
/// names (§6): first every name whose short form needs no numeric tail is reserved,
/// then tails are handed out in order, skipping reserved names.
pub(crate) fn assign(names: &[&str]) -> Vec<NameForm> {
    let mut used: HashSet<[u8; 11]> = HashSet::new();
    let mut forms: Vec<Option<NameForm>> = vec![None; names.len()];
    let mut pending = Vec::new();
    for (i, name) in names.iter().enumerate() {
        // Pass 1 never collides once case-insensitive duplicates are gone; should it
        // anyway, the name falls through to a numeric tail instead of a clash.
        if let Some((short, nt_case)) = plain_short(name).filter(|(s, _)| !used.contains(s)) {
            used.insert(short);
            forms[i] = Some(NameForm {
                short,
                nt_case,
                long: None,
            });
            continue;
        }
        let basis = Basis::of(name);
        if basis.exact {
            let short = pack(&basis.base, &basis.ext);
            if used.insert(short) {
                forms[i] = Some(NameForm {
                    short,
                    nt_case: 0,
                    long: Some(name.encode_utf16().collect()),
                });
                continue;
            }
        }
        pending.push((i, basis));
    }
    // Every candidate is a prefix of the first six base bytes plus the tail, so names
    // with equal first six bytes and extension walk the same candidate list: remember
    // where it stopped, which keeps thousands of similar names linear.
    let mut next_tail: BTreeMap<(Vec<u8>, Vec<u8>), u32> = BTreeMap::new();
    for (i, basis) in pending {
        let prefix = &basis.base[..basis.base.len().min(6)];
        let key = (prefix.to_vec(), basis.ext.clone());
        let mut n = next_tail.get(&key).copied().unwrap_or(1);
        let short = loop {
            let tail = format!("~{n}");
            let keep = (8 - tail.len()).min(basis.base.len());
            let mut base = basis.base[..keep].to_vec();
            base.extend_from_slice(tail.as_bytes());
            n += 1;
            let short = pack(&base, &basis.ext);
            if used.insert(short) {
                break short;
            }
        };
        next_tail.insert(key, n);
        forms[i] = Some(NameForm {
            short,
            nt_case: 0,
            long: Some(names[i].encode_utf16().collect()),
        });
    }
    forms.into_iter().flatten().collect()
}

/// The short form of a name that is a valid 8.3 name with one case per part (§5.2):
/// such a name needs no long name.
fn plain_short(name: &str) -> Option<([u8; 11], u8)> {
    let (base, ext) = match name.split_once('.') {
        Some((base, ext)) => (base, ext),
        None => (name, ""),
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || ext.contains('.') {
        return None;
    }
    if name.contains('.') && ext.is_empty() {
        return None;
    }
    let upper_ok = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii() && is_short_char(b.to_ascii_uppercase()))
    };
    if !upper_ok(base) || !upper_ok(ext) {
        return None;
    }
    let nt_case = case_bit(base, NT_LOWER_BASE)? | case_bit(ext, NT_LOWER_EXT)?;
    let base = base.to_ascii_uppercase();
    let ext = ext.to_ascii_uppercase();
    Some((pack(base.as_bytes(), ext.as_bytes()), nt_case))
}

/// `Some(bit)` for an all-lower-case part, `Some(0)` for upper case or no letters,
/// `None` for mixed case (which needs a long name).
fn case_bit(part: &str, bit: u8) -> Option<u8> {
    let lower = part.bytes().any(|b| b.is_ascii_lowercase());
    let upper = part.bytes().any(|b| b.is_ascii_uppercase());
    match (lower, upper) {
        (true, true) => None,
        (true, false) => Some(bit),
        _ => Some(0),
    }
}

/// The alias basis of §6 steps 1–3.
struct Basis {
    base: Vec<u8>,
    ext: Vec<u8>,
    /// Neither lossy nor truncated: usable without a numeric tail.
    exact: bool,
}

impl Basis {
    fn of(name: &str) -> Basis {
        // The last dot that is not the first character separates the extension.
        let (base_src, ext_src) = match name.rfind('.').filter(|&i| i > 0) {
            Some(i) => (&name[..i], &name[i + 1..]),
            None => (name, ""),
        };
        let mut lossy = false;
        let mut base = map_short(base_src, &mut lossy);
        let mut ext = map_short(ext_src, &mut lossy);
        let fits = base.len() <= 8 && ext.len() <= 3;
        base.truncate(8);
        ext.truncate(3);
        if base.is_empty() {
            base.push(b'_');
            lossy = true;
        }
        Basis {
            base,
            ext,
            exact: fits && !lossy,
        }
    }
}

/// Upper-cases ASCII letters, drops spaces and dots, turns anything else not allowed
/// in 8.3 names into `_`; sets `lossy` when the result cannot reproduce the name.
fn map_short(src: &str, lossy: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    for c in src.chars() {
        if c == ' ' || c == '.' {
            *lossy = true;
            continue;
        }
        if c.is_ascii() {
            let b = (c as u8).to_ascii_uppercase();
            if is_short_char(b) {
                out.push(b);
                continue;
            }
        }
        *lossy = true;
        out.push(b'_');
    }
    out
}

/// 8-byte base and 3-byte extension, space-padded.
fn pack(base: &[u8], ext: &[u8]) -> [u8; 11] {
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base);
    out[8..8 + ext.len()].copy_from_slice(ext);
    out
}

/// Checksum of a stored short name, carried by each of its long-name slots.
pub(crate) fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// Long-name slots in on-disk order (last piece first), for the short name `short`.
pub(crate) fn lfn_entries(units: &[u16], short: &[u8; 11]) -> Vec<[u8; 32]> {
    let checksum = lfn_checksum(short);
    let pieces = units.len().div_ceil(UNITS_PER_SLOT);
    (1..=pieces)
        .rev()
        .map(|k| {
            let start = (k - 1) * UNITS_PER_SLOT;
            let chunk = &units[start..units.len().min(start + UNITS_PER_SLOT)];
            // A short last piece gets one 0x0000 terminator, then 0xFFFF padding.
            let mut piece = [0xFFFFu16; UNITS_PER_SLOT];
            piece[..chunk.len()].copy_from_slice(chunk);
            if chunk.len() < UNITS_PER_SLOT {
                piece[chunk.len()] = 0;
            }
            let mut e = [0u8; 32];
            e[0] = k as u8 | if k == pieces { 0x40 } else { 0 };
            e[11] = 0x0F;
            e[13] = checksum;
            let offsets = (0..5)
                .map(|i| 1 + 2 * i)
                .chain((0..6).map(|i| 14 + 2 * i))
                .chain((0..2).map(|i| 28 + 2 * i));
            for (unit, off) in piece.iter().zip(offsets) {
                e[off..off + 2].copy_from_slice(&unit.to_le_bytes());
            }
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short_str(s: &[u8; 11]) -> String {
        String::from_utf8_lossy(s).into_owned()
    }

    fn one(name: &str) -> NameForm {
        assign(&[name]).remove(0)
    }

    #[test]
    fn plain_upper_8_3_needs_nothing() {
        let f = one("BOOTX64.EFI");
        assert_eq!(short_str(&f.short), "BOOTX64 EFI");
        assert_eq!((f.nt_case, f.long), (0, None));
        let f = one("EFI");
        assert_eq!(short_str(&f.short), "EFI        ");
        assert_eq!(one("A1_$~X.7Z").long, None);
    }

    #[test]
    fn lower_case_parts_use_nt_bits() {
        let f = one("readme.txt");
        assert_eq!(short_str(&f.short), "README  TXT");
        assert_eq!((f.nt_case, f.long), (0x18, None));
        let f = one("sources");
        assert_eq!((f.nt_case, f.long), (0x08, None));
        let f = one("BOOT.efi");
        assert_eq!((f.nt_case, f.long), (0x10, None));
        let f = one("boot.EFI");
        assert_eq!((f.nt_case, f.long), (0x08, None));
        // Digits carry no case.
        assert_eq!(one("123.txt").nt_case, 0x10);
    }

    #[test]
    fn mixed_case_gets_exact_alias_and_lfn() {
        let f = one("ReadMe.txt");
        assert_eq!(short_str(&f.short), "README  TXT");
        assert_eq!(f.nt_case, 0);
        assert_eq!(f.long, Some("ReadMe.txt".encode_utf16().collect()));
        assert_eq!(short_str(&one("Boot").short), "BOOT       ");
        assert!(one("Boot").long.is_some());
    }

    #[test]
    fn long_and_lossy_names_get_tails() {
        let names = [
            "LongFileName1.txt",
            "LongFileName2.txt",
            "LONGFI~1.TXT",
            "my file.txt",
            "archive.tar.gz",
            ".bashrc",
            "naïve.txt",
            "a+b.txt",
            "x.html",
        ];
        let forms = assign(&names);
        let shorts: Vec<String> = forms.iter().map(|f| short_str(&f.short)).collect();
        assert_eq!(
            shorts,
            [
                "LONGFI~2TXT",
                "LONGFI~3TXT",
                "LONGFI~1TXT",
                "MYFILE~1TXT",
                "ARCHIV~1GZ ",
                "BASHRC~1   ",
                "NA_VE~1 TXT",
                "A_B~1   TXT",
                "X~1     HTM",
            ]
        );
        // The real LONGFI~1.TXT keeps its name and needs no LFN.
        assert_eq!(forms[2].long, None);
        assert!(forms
            .iter()
            .enumerate()
            .all(|(i, f)| i == 2 || f.long.is_some()));
    }

    #[test]
    fn tails_grow_and_cut_the_base() {
        let names: Vec<String> = (0..120).map(|i| format!("filenumber{i:03}.dat")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let forms = assign(&refs);
        assert_eq!(short_str(&forms[0].short), "FILENU~1DAT");
        assert_eq!(short_str(&forms[8].short), "FILENU~9DAT");
        assert_eq!(short_str(&forms[9].short), "FILEN~10DAT");
        assert_eq!(short_str(&forms[99].short), "FILE~100DAT");
        let unique: HashSet<_> = forms.iter().map(|f| f.short).collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn empty_base_becomes_underscore() {
        assert_eq!(short_str(&one(" .txt").short), "_~1     TXT");
        assert_eq!(short_str(&one("ü").short), "_~1        ");
    }

    #[test]
    fn validation() {
        for ok in [
            "a",
            "ReadMe.txt",
            "naïve",
            ".hidden",
            "a b",
            "x".repeat(255).as_str(),
            "console",
            "com10",
            "lpt0",
            "nul_",
            "my.con",
        ] {
            assert_eq!(validate_long_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a.",
            "a ",
            "a:b",
            "a*b",
            "a?",
            "a\\b",
            "a\u{1}",
            "<x>",
            "con",
            "NUL.txt",
            "Com1.log",
            "lpt9",
            "aux.tar.gz",
            "PRN .txt",
        ] {
            assert!(validate_long_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_long_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn folding() {
        assert_eq!(fold("Boot.efi"), fold("BOOT.EFI"));
        assert_eq!(fold("éa"), fold("ÉA"));
        assert_ne!(fold("ß"), fold("SS"));
    }

    #[test]
    fn checksum_and_slots() {
        // Checksum by hand for "README  TXT".
        let short = *b"README  TXT";
        let mut sum = 0u8;
        for b in short {
            sum = (((sum & 1) << 7) | (sum >> 1)).wrapping_add(b);
        }
        assert_eq!(lfn_checksum(&short), sum);

        // 14 units: two pieces; the last (ordinal 2|0x40) first, with terminator + padding.
        let units: Vec<u16> = "ABCDEFGHIJKLMN".encode_utf16().collect();
        let slots = lfn_entries(&units, &short);
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0][0], 0x42);
        assert_eq!(slots[1][0], 0x01);
        assert_eq!(&slots[0][1..5], &[b'N', 0, 0, 0]);
        assert_eq!(&slots[0][5..7], &[0xFF, 0xFF]);
        assert_eq!(&slots[1][28..32], &[b'L', 0, b'M', 0]);
        for s in &slots {
            assert_eq!((s[11], s[12], s[13], s[26], s[27]), (0x0F, 0, sum, 0, 0));
        }
        // Exactly 13 units: no terminator, no padding.
        let units: Vec<u16> = "ABCDEFGHIJKLM".encode_utf16().collect();
        let slots = lfn_entries(&units, &short);
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0][0], 0x41);
        assert_eq!(&slots[0][28..32], &[b'L', 0, b'M', 0]);
    }
}
