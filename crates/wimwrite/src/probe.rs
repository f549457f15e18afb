//! Cheap "is this chunk worth compressing?" test.
//!
//! Media are mostly already-compressed payloads (exported WIMs, cabs, zips).
//! Running LZX over such a chunk costs as much as compressing text, only to
//! find that the output does not shrink. Quick measurements predict that
//! outcome for a few percent of the cost:
//!
//! 1. **Order-0 entropy** from a byte histogram of a scattered sample
//!    (4096 fixed pseudo-random offsets, bias-corrected). Any entropy coder
//!    (XPRESS, LZX and LZMS all end in one) cannot beat it without LZ
//!    matches, and each block pays a few hundred bytes of Huffman tables.
//!    Below the threshold the chunk is compressed; text and code leave here.
//! 2. **Repeat scan** for chunks whose entropy is high: random data repeated
//!    inside the chunk has a high order-0 entropy but compresses well. Repeats
//!    are found through content-defined anchors (see `repeated_bytes`).
//!
//! Only a chunk that passes 1 and 2 is declared incompressible and stored
//! raw without trying. Calibration against wimlib 1.14.4's compressors
//! (`examples/calibrate.rs` of the scratch crate): random and LZX-packed
//! chunks are all skipped, and on them LZX/XPRESS/LZMS never shrink
//! anything; bytes from a 250-symbol alphabet (entropy 7.96) are skipped
//! and LZX would have saved 0.1 % on them; at entropy 7.90 (240 symbols,
//! LZX saves 0.7 %) the probe already lets the compressor try. Speed per
//! core on this project's 2-core VM: ~2 GB/s on incompressible chunks
//! (the repeat scan is most of it), far more on compressible ones.

/// Order-0 entropy (bits per byte) at or above which a chunk may be skipped.
/// 32 KiB of uniformly random bytes measure about 7.994; LZX output about
/// 7.99; typical x86 code 5.5–6.5, text 4–5.
pub const ENTROPY_SKIP_BITS: f64 = 7.95;

/// Bytes in the entropy sample (see [`sampled_entropy`]).
const SAMPLE: usize = 4096;

/// Fraction of the chunk that repeats must cover before it is compressed
/// anyway (1/64 ≈ 1.6 %).
const MATCH_SHARE_DIVISOR: usize = 64;

/// Shortest repeat that counts: shorter ones in random data are chance hits
/// that no LZ coder profits from.
const MIN_MATCH: usize = 32;

const HASH_BITS: u32 = 12;

/// An anchor is a byte `b` with `b & ANCHOR_MASK == ANCHOR_TAG` (see
/// [`repeated_bytes`]): five bits, one byte in 32 of uniform data.
const ANCHOR_MASK: u8 = 0xF8;
const ANCHOR_TAG: u8 = 0x68;

/// True when `data` looks incompressible enough to store raw without trying.
pub fn looks_incompressible(data: &[u8]) -> bool {
    // Tiny chunks are cheap to try and histograms of them are noisy.
    if data.len() < 4096 {
        return false;
    }
    if sampled_entropy(data) < ENTROPY_SKIP_BITS {
        return false;
    }
    repeated_bytes(data) * MATCH_SHARE_DIVISOR < data.len()
}

fn bits_from_counts(counts: impl Iterator<Item = u32>, n: usize) -> f64 {
    let n = n.max(1) as f64;
    let mut bits = 0.0;
    for c in counts.filter(|&c| c != 0) {
        let p = f64::from(c) / n;
        bits -= p * p.log2();
    }
    bits
}

/// Order-0 entropy (bits per byte) of `data` estimated from [`SAMPLE`]
/// bytes at fixed pseudo-random offsets (scaled to the chunk's length),
/// with the Miller–Madow correction for the sample's downward bias
/// (≈ 0.045 bit for uniform bytes; the estimate of random data is then
/// 7.994 ± 0.004, against 7.994 for the whole chunk). Scattered offsets
/// see every phase of periodic data (16-bit samples, 8-byte records) in
/// proportion, which a strided sample would not: every 8th byte of a table
/// of u64 counters is only their random low bytes. A quarter to an eighth
/// of the cost of a histogram of the whole chunk.
fn sampled_entropy(data: &[u8]) -> f64 {
    let len = data.len() as u64;
    // Two tables: consecutive equal bytes would otherwise make each
    // increment wait for the previous store to the same counter.
    let mut tables = [[0u32; 256]; 2];
    for (k, &r) in sample_offsets().iter().enumerate() {
        let at = ((u64::from(r) * len) >> 16) as usize;
        tables[k & 1][data[at] as usize] += 1;
    }
    let [t0, t1] = &tables;
    let totals = || t0.iter().zip(t1).map(|(a, b)| a + b);
    let observed = totals().filter(|&c| c != 0).count();
    let bias = observed.saturating_sub(1) as f64 / (2.0 * SAMPLE as f64 * std::f64::consts::LN_2);
    bits_from_counts(totals(), SAMPLE) + bias
}

/// [`SAMPLE`] offsets in 0..65536 (position = offset × len / 65536), the
/// same for every chunk and every run: a fixed xorshift sequence, sorted.
fn sample_offsets() -> &'static [u16] {
    static OFFSETS: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    OFFSETS.get_or_init(|| {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut v: Vec<u16> = (0..SAMPLE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 48) as u16
            })
            .collect();
        v.sort_unstable();
        v
    })
}

/// Shannon entropy of the byte distribution of `data`, in bits per byte.
pub fn entropy_bits_per_byte(data: &[u8]) -> f64 {
    // Four interleaved tables: consecutive equal bytes would otherwise make
    // each increment wait for the previous store to the same counter.
    let mut tables = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        tables[0][q[0] as usize] += 1;
        tables[1][q[1] as usize] += 1;
        tables[2][q[2] as usize] += 1;
        tables[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        tables[0][b as usize] += 1;
    }
    let [t0, t1, t2, t3] = &tables;
    let totals = t0
        .iter()
        .zip(t1)
        .zip(t2)
        .zip(t3)
        .map(|(((a, b), c), d)| a + b + c + d);
    bits_from_counts(totals, data.len())
}

/// Bytes covered by repeats of at least [`MIN_MATCH`] bytes.
///
/// Only content-defined *anchors* are looked up: positions whose byte has
/// [`ANCHOR_TAG`] in its top five bits — one position in 32 on the
/// high-entropy data that reaches this test. Both copies of a repeat share
/// their anchors, so a repeat much longer than 32 bytes is found at its
/// first anchor and measured in both directions, while the hash table
/// (keyed by the 8 bytes at the anchor) is touched at one position in 32.
/// Anchors are found eight bytes at a time with word arithmetic (no
/// per-byte branch to mispredict on random data), which costs a fraction
/// of hashing every position (what this did before, at 1.3 GB/s).
fn repeated_bytes(data: &[u8]) -> usize {
    let mut table = [0u32; 1 << HASH_BITS];
    let mut covered = 0usize;
    let mut covered_until = 0usize;
    let end = data.len().saturating_sub(MIN_MATCH);
    for (g, group) in data[..end].chunks(64).enumerate() {
        // One bit per byte of the group: a branch per 64 bytes, not per 8.
        let mut hits = group_anchors(group);
        while hits != 0 {
            let i = 64 * g + hits.trailing_zeros() as usize;
            hits &= hits - 1;
            if i < covered_until {
                continue;
            }
            let key = load_u64(data, i);
            let slot = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - HASH_BITS)) as usize;
            let cand = table[slot] as usize;
            // Stored as position + 1 so that 0 means empty.
            table[slot] = (i + 1) as u32;
            if cand == 0 || load_u64(data, cand - 1) != key {
                continue;
            }
            let cand = cand - 1;
            let ahead = data[cand + 8..]
                .iter()
                .zip(&data[i + 8..])
                .take_while(|(x, y)| x == y)
                .count();
            // Back to the repeat's start, but not into bytes counted already.
            let room = (i - covered_until).min(cand);
            let back = (1..=room)
                .take_while(|&k| data[cand - k] == data[i - k])
                .count();
            let len = back + 8 + ahead;
            if len >= MIN_MATCH {
                covered += len;
                covered_until = i + 8 + ahead;
            }
        }
    }
    covered
}

/// Bit j set when `group[j]` (≤ 64 bytes) is an anchor.
fn group_anchors(group: &[u8]) -> u64 {
    let place = |m: u64, k: usize, bits: u64| m | (pack_bits(bits) << (8 * k));
    match <&[u8; 64]>::try_from(group) {
        // All but a chunk's tail: eight whole words, unrolled (≈ 10 % of
        // the probe's time against the general path).
        Ok(full) => (0..8).fold(0, |m, k| place(m, k, anchor_bits(load_u64(full, 8 * k)))),
        Err(_) => group
            .chunks(8)
            .enumerate()
            .fold(0, |m, (k, word)| place(m, k, anchors_in(word))),
    }
}

/// Bit 7 of byte k of `x` moved to bit k (the other bits must be clear).
fn pack_bits(x: u64) -> u64 {
    ((x >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// A word with bit 7 of byte k set exactly when `bytes[k]` (k < 8) is an
/// anchor, i.e. its top five bits are [`ANCHOR_TAG`]'s.
fn anchors_in(bytes: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(bytes) {
        Ok(b) => anchor_bits(u64::from_le_bytes(b)),
        Err(_) => {
            let mut b = [0u8; 8];
            b[..bytes.len()].copy_from_slice(bytes);
            anchor_bits(u64::from_le_bytes(b)) & (u64::MAX >> (8 * (8 - bytes.len())))
        }
    }
}

/// Bit 7 of each byte of `w` set exactly where that byte is an anchor.
fn anchor_bits(w: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    // Zero exactly at anchor bytes.
    let y = (w & u64::from_ne_bytes([ANCHOR_MASK; 8])) ^ u64::from_ne_bytes([ANCHOR_TAG; 8]);
    // Bit 7 set where y's byte is non-zero; no carry crosses bytes.
    let nonzero = ((y & LOW7) + LOW7) | y;
    !nonzero & !LOW7
}

fn load_u64(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn random_is_skipped_text_is_not() {
        assert!(looks_incompressible(&noise(32768, 7)));
        let text: Vec<u8> = b"The quick brown fox jumps over the lazy dog. "
            .iter()
            .cycle()
            .take(32768)
            .copied()
            .collect();
        assert!(!looks_incompressible(&text));
    }

    #[test]
    fn repeated_random_block_is_not_skipped() {
        // 16 KiB of noise twice: order-0 entropy as high as pure noise.
        let block = noise(16384, 3);
        let data: Vec<u8> = block.iter().cycle().take(32768).copied().collect();
        assert!(entropy_bits_per_byte(&data) > ENTROPY_SKIP_BITS);
        assert!(!looks_incompressible(&data));
    }

    #[test]
    fn a_few_short_repeats_are_found() {
        // Noise with 8 copies of a 300-byte block (7 % of the chunk).
        let mut data = noise(32768, 11);
        let block = data[1000..1300].to_vec();
        for k in 1..8 {
            data[k * 4000..k * 4000 + 300].copy_from_slice(&block);
        }
        assert!(repeated_bytes(&data) >= 6 * 300);
        assert!(!looks_incompressible(&data));
    }

    #[test]
    fn sample_and_full_entropy_agree() {
        let n = noise(32768, 9);
        assert!((sampled_entropy(&n) - entropy_bits_per_byte(&n)).abs() < 0.015);
        assert!((entropy_bits_per_byte(&n) - 7.994).abs() < 0.01);
        assert!(sampled_entropy(&[b'a'; 32768]) < 0.01);
        // 240 of 256 byte values (7.91 bits; LZX saves ~0.7 %): tried.
        let narrow: Vec<u8> = n.iter().map(|&b| b % 240).collect();
        assert!(sampled_entropy(&narrow) < ENTROPY_SKIP_BITS);
        assert!(!looks_incompressible(&narrow));
    }

    #[test]
    fn periodic_structure_is_not_mistaken_for_noise() {
        // u64 counters: random low byte, the other seven nearly constant.
        // A sample of every 8th byte would see only the random bytes.
        let n = noise(4096, 13);
        let mut data = Vec::with_capacity(32768);
        for (i, &b) in n.iter().enumerate() {
            data.extend_from_slice(&(u64::from(b) | ((i as u64 >> 9) << 8)).to_le_bytes());
        }
        assert!(entropy_bits_per_byte(&data) < 3.0);
        assert!(sampled_entropy(&data) < 3.5);
        assert!(!looks_incompressible(&data));
        // 16-bit samples: noisy low byte, smooth high byte.
        let pcm: Vec<u8> = n
            .iter()
            .cycle()
            .take(16384)
            .enumerate()
            .flat_map(|(i, &b)| [b, ((i / 64) % 7) as u8])
            .collect();
        assert!(sampled_entropy(&pcm) < ENTROPY_SKIP_BITS);
        assert!(!looks_incompressible(&pcm));
    }

    #[test]
    fn small_chunks_are_always_tried() {
        assert!(!looks_incompressible(&noise(1000, 5)));
    }
}
