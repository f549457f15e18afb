//! The 208-byte WIM header and the 24-byte resource header ("reshdr").
//!
//! Layout and values follow `reference/wim-format.md` §1–2 (wimlib's
//! `header.h`/`resource.h`, confirmed against 7-Zip). The header is written
//! twice: first as a placeholder with `WRITE_IN_PROGRESS` and empty reshdrs,
//! last with every reshdr filled in, because it is the only place that knows
//! where the blob table, XML and integrity table ended up.

/// Size of the header; the first resource starts right after it.
pub const HEADER_SIZE: u64 = 208;

const MAGIC: [u8; 8] = *b"MSWIM\0\0\0";
/// Version for uncompressed, XPRESS and LZX WIMs.
pub const VERSION_DEFAULT: u32 = 0x0001_0D00;
/// Version wimlib writes whenever the type is LZMS (its header.h: the LZMS
/// flag is only valid with this version).
pub const VERSION_LZMS: u32 = 0x0000_0E00;

/// Header flag bits (`dwFlags`).
pub mod hdr_flags {
    /// The WIM uses a compression type (exactly one type bit must be set).
    pub const COMPRESSION: u32 = 0x0000_0002;
    /// Set in the placeholder header, cleared in the final one.
    pub const WRITE_IN_PROGRESS: u32 = 0x0000_0040;
    /// XPRESS chunks.
    pub const COMPRESS_XPRESS: u32 = 0x0002_0000;
    /// LZX chunks.
    pub const COMPRESS_LZX: u32 = 0x0004_0000;
    /// LZMS chunks.
    pub const COMPRESS_LZMS: u32 = 0x0008_0000;
}

/// Resource header flag bits.
pub mod res_flags {
    /// Image metadata resource; also set on the blob-table and XML reshdrs.
    pub const METADATA: u8 = 0x02;
    /// Chunked, compressed resource (§3 of the reference).
    pub const COMPRESSED: u8 = 0x04;
}

/// Location and size of one resource. All zero means "absent".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reshdr {
    /// Bytes the resource occupies in the file (56 bits).
    pub size_in_wim: u64,
    /// `res_flags` bits.
    pub flags: u8,
    /// Absolute file offset of the first byte.
    pub offset: u64,
    /// Size after decompression.
    pub uncompressed_size: u64,
}

impl Reshdr {
    /// An uncompressed resource of `len` bytes at `offset` with `flags`.
    pub fn raw(offset: u64, len: u64, flags: u8) -> Reshdr {
        Reshdr {
            size_in_wim: len,
            flags,
            offset,
            uncompressed_size: len,
        }
    }

    /// The 24 on-disk bytes: size_in_wim and flags share the first u64.
    pub fn encode(&self) -> [u8; 24] {
        debug_assert!(self.size_in_wim < 1 << 56);
        let mut b = [0u8; 24];
        let first = self.size_in_wim | (u64::from(self.flags) << 56);
        b[0..8].copy_from_slice(&first.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.uncompressed_size.to_le_bytes());
        b
    }
}

/// Every header field a one-part WIM needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `VERSION_DEFAULT` or `VERSION_LZMS`.
    pub version: u32,
    /// `hdr_flags` bits.
    pub flags: u32,
    /// Uncompressed bytes per chunk; 0 for an uncompressed WIM.
    pub chunk_size: u32,
    /// WIM GUID (nobody validates it; we derive it from the recipe).
    pub guid: [u8; 16],
    /// Number of images (= `<IMAGE>` elements = metadata blob entries).
    pub image_count: u32,
    /// Blob (lookup) table.
    pub blob_table: Reshdr,
    /// XML data.
    pub xml: Reshdr,
    /// Copy of the boot image's metadata reshdr, or zero when not bootable
    /// (7-Zip refuses a non-zero one with boot index 0).
    pub boot_metadata: Reshdr,
    /// 1-based boot image index, 0 = none.
    pub boot_index: u32,
    /// Integrity table, zero when absent.
    pub integrity: Reshdr,
}

impl Header {
    /// The 208 on-disk bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE as usize] {
        let mut b = [0u8; HEADER_SIZE as usize];
        b[0x00..0x08].copy_from_slice(&MAGIC);
        b[0x08..0x0C].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b[0x0C..0x10].copy_from_slice(&self.version.to_le_bytes());
        b[0x10..0x14].copy_from_slice(&self.flags.to_le_bytes());
        b[0x14..0x18].copy_from_slice(&self.chunk_size.to_le_bytes());
        b[0x18..0x28].copy_from_slice(&self.guid);
        b[0x28..0x2A].copy_from_slice(&1u16.to_le_bytes()); // part number
        b[0x2A..0x2C].copy_from_slice(&1u16.to_le_bytes()); // total parts
        b[0x2C..0x30].copy_from_slice(&self.image_count.to_le_bytes());
        b[0x30..0x48].copy_from_slice(&self.blob_table.encode());
        b[0x48..0x60].copy_from_slice(&self.xml.encode());
        b[0x60..0x78].copy_from_slice(&self.boot_metadata.encode());
        b[0x78..0x7C].copy_from_slice(&self.boot_index.to_le_bytes());
        b[0x7C..0x94].copy_from_slice(&self.integrity.encode());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshdr_matches_reference_walkthrough() {
        // reference §13: blob table reshdr, size 100, flags 0x02, offset 589.
        let r = Reshdr::raw(589, 100, res_flags::METADATA);
        assert_eq!(
            r.encode(),
            [
                0x64, 0, 0, 0, 0, 0, 0, 0x02, 0x4D, 0x02, 0, 0, 0, 0, 0, 0, 0x64, 0, 0, 0, 0, 0, 0,
                0
            ]
        );
    }

    #[test]
    fn header_fields_land_at_their_offsets() {
        let mut guid = [0u8; 16];
        for (i, g) in guid.iter_mut().enumerate() {
            *g = i as u8;
        }
        let h = Header {
            version: VERSION_DEFAULT,
            flags: hdr_flags::COMPRESSION | hdr_flags::COMPRESS_LZX,
            chunk_size: 32768,
            guid,
            image_count: 1,
            blob_table: Reshdr::raw(589, 100, res_flags::METADATA),
            xml: Reshdr::raw(689, 760, res_flags::METADATA),
            boot_metadata: Reshdr::raw(213, 376, res_flags::METADATA),
            boot_index: 1,
            integrity: Reshdr::raw(1449, 32, 0),
        };
        let b = h.encode();
        assert_eq!(&b[0..8], b"MSWIM\0\0\0");
        assert_eq!(&b[8..12], &208u32.to_le_bytes());
        assert_eq!(&b[0x0C..0x10], &0x10D00u32.to_le_bytes());
        assert_eq!(&b[0x10..0x14], &0x0004_0002u32.to_le_bytes());
        assert_eq!(&b[0x14..0x18], &32768u32.to_le_bytes());
        assert_eq!(b[0x18], 0);
        assert_eq!(b[0x27], 15);
        assert_eq!(&b[0x28..0x30], &[1, 0, 1, 0, 1, 0, 0, 0]);
        assert_eq!(&b[0x48..0x50], &[0xF8, 0x02, 0, 0, 0, 0, 0, 0x02]);
        assert_eq!(&b[0x68..0x70], &213u64.to_le_bytes());
        assert_eq!(&b[0x78..0x7C], &1u32.to_le_bytes());
        assert_eq!(&b[0x84..0x8C], &1449u64.to_le_bytes());
        assert!(b[0x94..].iter().all(|&x| x == 0));
    }
}
