//! The pieces every UDF structure is made of: the descriptor tag with its checksum and CRC
//! (ECMA-167 3/7.2), the OSTA CS0 compressed-Unicode names (OSTA UDF 2.1.1, 2.1.3), and little-endian
//! field readers.

/// Why a tag was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TagFault {
    /// Fewer than 16 bytes.
    Short,
    /// Byte 4 is not the sum of the other 15 tag bytes.
    Checksum,
    /// The CRC over the descriptor body does not match.
    Crc,
    /// The descriptor says it was recorded at another block: a misplaced or stale copy.
    Location(u32),
}

impl TagFault {
    pub fn describe(&self, expected: u32) -> String {
        match self {
            TagFault::Short => "descriptor is cut short".into(),
            TagFault::Checksum => "bad tag checksum".into(),
            TagFault::Crc => "bad descriptor CRC".into(),
            TagFault::Location(l) => {
                format!("the descriptor says it lies at block {l}, not at block {expected}")
            }
        }
    }
}

/// A checked descriptor tag.
#[derive(Debug)]
pub(crate) struct Tag {
    pub id: u16,
}

/// Checks the tag at the start of `buf` (and the CRC when the descriptor lies within `buf`);
/// `location` is the block the descriptor must say it is recorded at, `None` to not check it.
pub(crate) fn check(buf: &[u8], location: Option<u32>) -> Result<Tag, TagFault> {
    if buf.len() < 16 {
        return Err(TagFault::Short);
    }
    let sum = buf[..16]
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 4)
        .fold(0u8, |s, (_, &b)| s.wrapping_add(b));
    if sum != buf[4] {
        return Err(TagFault::Checksum);
    }
    let crc = u16_at(buf, 8);
    let crc_len = usize::from(u16_at(buf, 10));
    // A CRC length past the buffer is let through, as readers in the field do: the checksum still holds.
    if 16 + crc_len <= buf.len() && crc_itu_t(&buf[16..16 + crc_len]) != crc {
        return Err(TagFault::Crc);
    }
    let at = u32_at(buf, 12);
    if let Some(loc) = location {
        if at != loc {
            return Err(TagFault::Location(at));
        }
    }
    Ok(Tag { id: u16_at(buf, 0) })
}

/// CRC-ITU-T (CCITT): polynomial x^16 + x^12 + x^5 + 1, initial value 0, as ECMA-167 3/7.2.6 asks.
pub(crate) fn crc_itu_t(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        let mut crc = crc ^ (u16::from(b) << 8);
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// Decodes an OSTA CS0 string: a compression ID (8 = one byte per character, 16 = UTF-16BE; 254 and
/// 255 are the same for deleted entries in UDF 2.00+) followed by the characters.
pub(crate) fn cs0(bytes: &[u8]) -> Result<String, String> {
    let Some((&id, rest)) = bytes.split_first() else {
        return Ok(String::new());
    };
    match id {
        8 | 254 => Ok(rest.iter().map(|&b| char::from(b)).collect()),
        16 | 255 => {
            if !rest.len().is_multiple_of(2) {
                return Err(format!(
                    "a 16-bit name has an odd length ({} bytes)",
                    rest.len()
                ));
            }
            let units = rest
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            Ok(char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect())
        }
        other => Err(format!(
            "a name uses compression ID {other} (8 or 16 expected)"
        )),
    }
}

/// Decodes a dstring: a CS0 string padded to a fixed field whose last byte gives the used length.
pub(crate) fn dstring(field: &[u8]) -> String {
    let Some((&used, body)) = field.split_last() else {
        return String::new();
    };
    let used = usize::from(used).min(body.len());
    cs0(&body[..used]).unwrap_or_default()
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_ecma_167_example() {
        // ECMA-167 3/7.2.6: the CRC of bytes 0x70 0x6A 0x77 is 0x3299.
        assert_eq!(crc_itu_t(&[0x70, 0x6A, 0x77]), 0x3299);
    }

    #[test]
    fn tag_checks_checksum_crc_and_location() {
        let mut d = vec![0u8; 64];
        d[0] = 2; // anchor
        d[2] = 2;
        d[10] = 48; // CRC length
        d[12] = 0; // location 256
        d[13] = 1;
        d[20] = 0xAB;
        let crc = crc_itu_t(&d[16..64]);
        d[8..10].copy_from_slice(&crc.to_le_bytes());
        d[4] = d[..16]
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != 4)
            .fold(0u8, |s, (_, &b)| s.wrapping_add(b));
        assert_eq!(check(&d, Some(256)).unwrap().id, 2);
        assert_eq!(check(&d, Some(257)).unwrap_err(), TagFault::Location(256));
        let mut bad = d.clone();
        bad[20] = 0;
        assert_eq!(check(&bad, None).unwrap_err(), TagFault::Crc);
        bad = d.clone();
        bad[4] ^= 1;
        assert_eq!(check(&bad, None).unwrap_err(), TagFault::Checksum);
    }

    #[test]
    fn cs0_reads_both_widths() {
        assert_eq!(cs0(&[8, b'a', 0xDC]).unwrap(), "a\u{DC}");
        assert_eq!(cs0(&[16, 0x54, 0x0D, 0, b'x']).unwrap(), "\u{540D}x");
        assert!(cs0(&[16, 0]).is_err());
        assert!(cs0(&[7, b'a']).is_err());
        assert_eq!(cs0(&[]).unwrap(), "");
    }

    #[test]
    fn dstring_uses_the_length_byte() {
        let mut f = [0u8; 8];
        f[..4].copy_from_slice(&[8, b'W', b'I', b'N']);
        f[7] = 4;
        assert_eq!(dstring(&f), "WIN");
    }
}
