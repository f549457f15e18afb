//! Tiny images written byte by byte, for structures the tools do not make quickly (a file in several
//! ISO 9660 sections, a UDF file with several allocation descriptors and a continuation extent) and for
//! damage the tools never make. Field offsets follow ECMA-119 and ECMA-167; see the crate's sources
//! for the section numbers.

pub const SECTOR: usize = 2048;

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
/// ECMA-119 "both-byte orders" 32-bit field.
fn both32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
}
fn both16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    b[at + 2..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub fn sector(img: &mut [u8], n: usize) -> &mut [u8] {
    &mut img[n * SECTOR..(n + 1) * SECTOR]
}

// ---------------------------------------------------------------- ISO 9660

/// A directory record of the hand-made root folder.
pub struct Rec {
    pub name: &'static [u8],
    pub lba: u32,
    pub len: u32,
    pub flags: u8,
    /// File unit size (non-zero: an interleaved file).
    pub unit: u8,
}

fn dir_record(lba: u32, len: u32, flags: u8, unit: u8, name: &[u8]) -> Vec<u8> {
    let size = 33 + name.len() + (name.len() + 1) % 2;
    let mut r = vec![0u8; size];
    r[0] = size as u8;
    both32(&mut r, 2, lba);
    both32(&mut r, 10, len);
    r[25] = flags;
    r[26] = unit;
    r[27] = unit;
    both16(&mut r, 28, 1);
    r[32] = name.len() as u8;
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

/// An image of 40 sectors: primary descriptor at 16, terminator at 17, a root folder of two sectors
/// at 18–19 holding `first` in its first sector and `second` in its second (so the zero byte ending a
/// sector is crossed), data from sector 20 on, to be filled by the caller.
pub fn iso9660(first: &[Rec], second: &[Rec]) -> Vec<u8> {
    let mut img = vec![0u8; 40 * SECTOR];
    let pvd = sector(&mut img, 16);
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[40..72].fill(b' ');
    pvd[40..48].copy_from_slice(b"HANDMADE");
    both32(pvd, 80, 40);
    both16(pvd, 120, 1);
    both16(pvd, 124, 1);
    both16(pvd, 128, SECTOR as u16);
    pvd[156..190].copy_from_slice(&dir_record(18, 2 * SECTOR as u32, 2, 0, &[0]));
    pvd[881] = 1;
    let term = sector(&mut img, 17);
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    for (n, recs) in [(18, first), (19, second)] {
        let mut at = n * SECTOR;
        let dots: &[Rec] = if n == 18 {
            &[
                Rec {
                    name: b"\0",
                    lba: 18,
                    len: 2 * SECTOR as u32,
                    flags: 2,
                    unit: 0,
                },
                Rec {
                    name: b"\x01",
                    lba: 18,
                    len: 2 * SECTOR as u32,
                    flags: 2,
                    unit: 0,
                },
            ]
        } else {
            &[]
        };
        for r in dots.iter().chain(recs) {
            let rec = dir_record(r.lba, r.len, r.flags, r.unit, r.name);
            img[at..at + rec.len()].copy_from_slice(&rec);
            at += rec.len();
        }
        assert!(at <= (n + 1) * SECTOR);
    }
    img
}

// ---------------------------------------------------------------- UDF

/// First sector of the hand-made UDF partition, and its length in blocks.
pub const PART_START: usize = 260;
pub const PART_LEN: usize = 40;

/// Byte offset of block `lbn` of the partition.
pub fn block_offset(lbn: usize) -> u64 {
    ((PART_START + lbn) * SECTOR) as u64
}

/// What to damage in the hand-made UDF image.
#[derive(Default)]
pub struct Udf {
    /// Add a type 2 (metadata) partition map.
    pub metadata_map: bool,
    /// "sub/again" is a folder entry pointing back at the root.
    pub loop_dir: bool,
    /// The continuation extent of big.bin continues in itself.
    pub aed_loop: bool,
    /// big.bin claims more bytes than its allocation descriptors cover.
    pub overlong: bool,
}

/// CRC-ITU-T as ECMA-167 3/7.2.6 defines it.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Writes a descriptor tag over the first `len` bytes of `d` (CRC over bytes 16..len).
pub fn tag(d: &mut [u8], id: u16, location: u32, len: usize) {
    put16(d, 0, id);
    put16(d, 2, 2);
    put16(d, 10, (len - 16) as u16);
    put32(d, 12, location);
    let crc = crc16(&d[16..len]);
    put16(d, 8, crc);
    retag(d);
}

/// Recomputes a tag's checksum after its bytes changed.
pub fn retag(d: &mut [u8]) {
    d[4] = (0..16)
        .filter(|&i| i != 4)
        .fold(0u8, |s, i| s.wrapping_add(d[i]));
}

/// Recomputes a tag's CRC (with its own CRC length) and checksum.
pub fn recrc(d: &mut [u8]) {
    let len = 16 + usize::from(u16::from_le_bytes([d[10], d[11]]));
    let crc = crc16(&d[16..len]);
    put16(d, 8, crc);
    retag(d);
}

fn short_ad(kind: u32, len: u32, lbn: u32) -> Vec<u8> {
    let mut a = vec![0u8; 8];
    put32(&mut a, 0, kind << 30 | len);
    put32(&mut a, 4, lbn);
    a
}

fn long_ad(len: u32, lbn: u32) -> Vec<u8> {
    let mut a = vec![0u8; 16];
    put32(&mut a, 0, len);
    put32(&mut a, 4, lbn);
    a
}

fn cs0(name: &str) -> Vec<u8> {
    if name.chars().all(|c| (c as u32) < 256) {
        std::iter::once(8)
            .chain(name.chars().map(|c| c as u8))
            .collect()
    } else {
        std::iter::once(16)
            .chain(name.encode_utf16().flat_map(u16::to_be_bytes))
            .collect()
    }
}

/// A file identifier descriptor; `name` None is the parent entry.
fn fid(name: Option<&str>, dir: bool, icb: u32, location: u32) -> Vec<u8> {
    let id = name.map(cs0).unwrap_or_default();
    let len = (38 + id.len()).next_multiple_of(4);
    let mut f = vec![0u8; len];
    put16(&mut f, 16, 1);
    f[18] = u8::from(dir) << 1 | if name.is_none() { 1 << 3 } else { 0 };
    f[19] = id.len() as u8;
    f[20..36].copy_from_slice(&long_ad(SECTOR as u32, icb));
    f[38..38 + id.len()].copy_from_slice(&id);
    tag(&mut f, 257, location, len);
    f
}

/// A (extended) file entry with allocation descriptor type `ad_type` (3 = embedded `ads`).
fn file_entry(
    d: &mut [u8],
    lbn: u32,
    extended: bool,
    file_type: u8,
    ad_type: u16,
    size: u64,
    ads: &[u8],
) {
    put16(d, 20, 4);
    put16(d, 24, 1);
    d[27] = file_type;
    put16(d, 34, ad_type);
    put16(d, 48, 1);
    put64(d, 56, size);
    let (head, lengths) = if extended { (216, 208) } else { (176, 168) };
    if extended {
        put64(d, 64, size);
    }
    put32(d, lengths + 4, ads.len() as u32);
    d[head..head + ads.len()].copy_from_slice(ads);
    tag(d, if extended { 266 } else { 261 }, lbn, head + ads.len());
}

fn dstring(field: &mut [u8], s: &str) {
    let c = cs0(s);
    field[..c.len()].copy_from_slice(&c);
    let last = field.len() - 1;
    field[last] = c.len() as u8;
}

/// The bytes of `big.bin`: 4096 recorded, 2048 allocated but not recorded (zeros), 100 recorded in
/// an extent listed by a continuation (allocation extent descriptor).
pub fn big_bin() -> Vec<u8> {
    let mut v = crate::fixture::bytes(7, 4096);
    v.extend(std::iter::repeat_n(0, 2048));
    v.extend(crate::fixture::bytes(8, 100));
    v
}

pub const LEAF: &[u8] = b"leaf\n";

/// A UDF 1.02 image of 300 sectors: / holds big.bin and sub/, sub/ holds "ü-名.txt" (an extended file
/// entry with a long_ad). The root folder is embedded in its file entry; sub/ is in a block of its own.
///
/// Partition blocks: 0 file set descriptor, 2 root, 3 big.bin, 4 its continuation, 5 sub/, 6 sub/'s
/// entries, 7 the leaf's entry, 10–11 and 20 big.bin's data, 21 the leaf's data.
pub fn udf(o: &Udf) -> Vec<u8> {
    let mut img = vec![0u8; (PART_START + PART_LEN) * SECTOR];
    for (i, id) in [b"BEA01", b"NSR02", b"TEA01"].into_iter().enumerate() {
        let s = sector(&mut img, 16 + i);
        s[1..6].copy_from_slice(id);
        s[6] = 1;
    }
    for base in [32usize, 48] {
        let pvd = sector(&mut img, base);
        dstring(&mut pvd[24..56], "HANDUDF");
        tag(pvd, 1, base as u32, 512);
        let pd = sector(&mut img, base + 1);
        pd[25..31].copy_from_slice(b"+NSR02");
        put32(pd, 184, 1);
        put32(pd, 188, PART_START as u32);
        put32(pd, 192, PART_LEN as u32);
        tag(pd, 5, base as u32 + 1, 512);
        let lvd = sector(&mut img, base + 2);
        dstring(&mut lvd[84..212], "HANDUDF");
        put32(lvd, 212, SECTOR as u32);
        lvd[217..236].copy_from_slice(b"*OSTA UDF Compliant");
        lvd[248..264].copy_from_slice(&long_ad(SECTOR as u32, 0));
        lvd[440..446].copy_from_slice(&[1, 6, 1, 0, 0, 0]);
        let mut table = 6;
        if o.metadata_map {
            lvd[446] = 2;
            lvd[447] = 64;
            lvd[451..474].copy_from_slice(b"*UDF Metadata Partition");
            table += 64;
        }
        put32(lvd, 264, table as u32);
        put32(lvd, 268, if o.metadata_map { 2 } else { 1 });
        tag(lvd, 6, base as u32 + 2, 440 + table);
        let td = sector(&mut img, base + 3);
        tag(td, 8, base as u32 + 3, 512);
    }
    let avdp = sector(&mut img, 256);
    put32(avdp, 16, 16 * SECTOR as u32);
    put32(avdp, 20, 32);
    put32(avdp, 24, 16 * SECTOR as u32);
    put32(avdp, 28, 48);
    tag(avdp, 2, 256, 512);

    let blk = |lbn: usize| (PART_START + lbn) * SECTOR;
    // File set descriptor: root ICB at block 2.
    let at = blk(0);
    img[at + 400..at + 416].copy_from_slice(&long_ad(SECTOR as u32, 2));
    tag(&mut img[at..at + SECTOR], 256, 0, 512);
    // Root folder, its entries embedded.
    let mut root = fid(None, true, 2, 2);
    root.extend(fid(Some("big.bin"), false, 3, 2));
    root.extend(fid(Some("sub"), true, 5, 2));
    let at = blk(2);
    file_entry(
        &mut img[at..at + SECTOR],
        2,
        false,
        4,
        3,
        root.len() as u64,
        &root,
    );
    // big.bin: short_ads, the last one a continuation into block 4.
    let mut ads = short_ad(0, 4096, 10);
    ads.extend(short_ad(1, 2048, 0));
    ads.extend(short_ad(3, SECTOR as u32, 4));
    let size = if o.overlong { 7000 } else { 6244 };
    let at = blk(3);
    file_entry(&mut img[at..at + SECTOR], 3, false, 5, 0, size, &ads);
    let more = if o.aed_loop {
        short_ad(3, SECTOR as u32, 4)
    } else {
        short_ad(0, 100, 20)
    };
    let at = blk(4);
    put32(&mut img, at + 20, more.len() as u32);
    img[at + 24..at + 24 + more.len()].copy_from_slice(&more);
    tag(&mut img[at..at + SECTOR], 258, 4, 24 + more.len());
    let big = big_bin();
    let at = blk(10);
    img[at..at + 4096].copy_from_slice(&big[..4096]);
    let at = blk(20);
    img[at..at + 100].copy_from_slice(&big[6144..]);
    // sub/: entries in block 6.
    let mut sub = fid(None, true, 2, 6);
    sub.extend(fid(Some("ü-名.txt"), false, 7, 6));
    if o.loop_dir {
        sub.extend(fid(Some("again"), true, 2, 6));
    }
    let at = blk(6);
    img[at..at + sub.len()].copy_from_slice(&sub);
    let at = blk(5);
    file_entry(
        &mut img[at..at + SECTOR],
        5,
        false,
        4,
        0,
        sub.len() as u64,
        &short_ad(0, sub.len() as u32, 6),
    );
    let at = blk(7);
    file_entry(
        &mut img[at..at + SECTOR],
        7,
        true,
        5,
        1,
        LEAF.len() as u64,
        &long_ad(LEAF.len() as u32, 21),
    );
    let at = blk(21);
    img[at..at + LEAF.len()].copy_from_slice(LEAF);
    img
}
