//! Cheap "is this chunk worth compressing?" test.
//!
//! Media are mostly already-compressed payloads (exported WIMs, cabs, zips).
//! Running LZX over such a chunk costs as much as compressing text, only to
//! find that the output does not shrink. Quick measurements predict that
//! outcome for a few percent of the cost:
//!
//! 0. A **strided sample** (every 8th byte) settles the common compressible
//!    case: clearly low entropy → compress, no further checks. It can only
//!    send a chunk to the compressor, never skip one.
//! 1. **Order-0 entropy** of the whole chunk from a byte histogram. Any
//!    entropy coder (XPRESS, LZX and LZMS all end in one) cannot beat it
//!    without LZ matches, and each block pays a few hundred bytes of Huffman
//!    tables. Below the threshold the chunk is compressed.
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
//! core: ~1 GB/s on incompressible chunks, several GB/s on compressible ones.

/// Order-0 entropy (bits per byte) at or above which a chunk may be skipped.
/// 32 KiB of uniformly random bytes measure about 7.994; LZX output about
/// 7.99; typical x86 code 5.5–6.5, text 4–5.
pub const ENTROPY_SKIP_BITS: f64 = 7.95;

/// Below this sampled entropy the chunk is compressed without further
/// checks. A sample of n/8 bytes underestimates entropy slightly (about
/// 0.05 bit for random 32 KiB chunks), so the margin to the skip threshold
/// is generous.
const SAMPLE_TRY_BITS: f64 = 7.5;

/// Fraction of the chunk that repeats must cover before it is compressed
/// anyway (1/64 ≈ 1.6 %).
const MATCH_SHARE_DIVISOR: usize = 64;

/// Shortest repeat that counts: shorter ones in random data are chance hits
/// that no LZ coder profits from.
const MIN_MATCH: usize = 32;

const HASH_BITS: u32 = 12;

/// One position in 2^ANCHOR_BITS is an anchor (see [`repeated_bytes`]).
const ANCHOR_BITS: u32 = 5;

/// Positions examined per anchor-collection pass.
const BLOCK: usize = 4096;

/// True when `data` looks incompressible enough to store raw without trying.
pub fn looks_incompressible(data: &[u8]) -> bool {
    // Tiny chunks are cheap to try and histograms of them are noisy.
    if data.len() < 4096 {
        return false;
    }
    if sampled_entropy(data, 8) < SAMPLE_TRY_BITS {
        return false;
    }
    if entropy_bits_per_byte(data) < ENTROPY_SKIP_BITS {
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

fn sampled_entropy(data: &[u8], stride: usize) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0usize;
    for c in data.chunks_exact(stride) {
        counts[c[0] as usize] += 1;
        n += 1;
    }
    bits_from_counts(counts.into_iter(), n)
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
/// Only content-defined *anchors* are looked up: positions whose 8-byte
/// hash has its top [`ANCHOR_BITS`] bits clear. Both copies of a repeat
/// share their anchors, so any repeat much longer than 2^ANCHOR_BITS bytes
/// is found, while the hash table is touched at one position in 32. Anchors
/// are first collected without branches (a data-dependent branch per byte
/// would mispredict constantly on random data), then matched.
fn repeated_bytes(data: &[u8]) -> usize {
    let mut table = [0u32; 1 << HASH_BITS];
    let mut anchors = [0u32; BLOCK];
    let mut covered = 0usize;
    let mut covered_until = 0usize;
    let end = data.len().saturating_sub(MIN_MATCH);
    let mut block_start = 0usize;
    while block_start < end {
        let block_end = (block_start + BLOCK).min(end);
        let mut n = 0usize;
        for i in block_start..block_end {
            let h = hash8(data, i);
            anchors[n] = i as u32;
            n += usize::from(h >> (64 - ANCHOR_BITS) == 0);
        }
        for &a in &anchors[..n] {
            let i = a as usize;
            if i < covered_until {
                continue;
            }
            let key = load_u64(data, i);
            let slot = (hash8(data, i) >> (64 - ANCHOR_BITS - HASH_BITS)) as usize
                & ((1 << HASH_BITS) - 1);
            let cand = table[slot] as usize;
            // Stored as position + 1 so that 0 means empty.
            table[slot] = (i + 1) as u32;
            if cand != 0 && load_u64(data, cand - 1) == key {
                let cand = cand - 1;
                let len = 8 + data[cand + 8..]
                    .iter()
                    .zip(&data[i + 8..])
                    .take_while(|(x, y)| x == y)
                    .count();
                if len >= MIN_MATCH {
                    covered += len;
                    covered_until = i + len;
                }
            }
        }
        block_start = block_end;
    }
    covered
}

fn hash8(data: &[u8], at: usize) -> u64 {
    load_u64(data, at).wrapping_mul(0x9E37_79B9_7F4A_7C15)
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
    fn sample_and_full_entropy_agree_on_extremes() {
        let n = noise(32768, 9);
        assert!(sampled_entropy(&n, 8) > 7.9);
        assert!((entropy_bits_per_byte(&n) - 7.994).abs() < 0.01);
        assert!(sampled_entropy(&[b'a'; 32768], 8) < 0.01);
    }

    #[test]
    fn small_chunks_are_always_tried() {
        assert!(!looks_incompressible(&noise(1000, 5)));
    }
}
