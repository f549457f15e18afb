//! Deterministic synthetic file contents for tests and benchmarks.
//!
//! Tests must not ship opaque binaries, so every fixture is generated from a
//! seed: text (compresses ~3–4×), "binary-like" data (structured records and
//! opcode-ish bytes, compresses ~1.5–2×), pseudo-random noise (incompressible,
//! like payloads that are already compressed) and "packed" data: real LZX
//! output of generated text, the closest stand-in for an exported WIM or a
//! cab. Public (but hidden from docs) so benchmarks can use it too.

use mediabuild_wim::compressor::{Compressor, CompressorKind};

/// A small deterministic PRNG (xorshift64*): fast and the same everywhere.
/// The demo generator uses it too.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-enough value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// `n` bytes of incompressible noise.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    Rng::new(seed).fill(&mut v);
    v
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "driver",
    "package",
    "install",
    "windows",
    "media",
    "task",
    "sequence",
    "deployment",
    "image",
    "boot",
    "partition",
    "volume",
    "file",
    "system",
    "configuration",
    "manager",
    "client",
    "network",
    "adapter",
    "version",
    "update",
    "setup",
    "registry",
    "value",
    "key",
    "path",
    "error",
    "warning",
    "information",
    "service",
    "start",
];

/// `n` bytes of English-like log/INI text.
pub fn text(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n + 64);
    let mut line = 0u64;
    while out.len() < n {
        line += 1;
        out.extend_from_slice(format!("[{:06}] ", line).as_bytes());
        let words = 4 + rng.below(12);
        for _ in 0..words {
            out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
            out.push(if rng.below(9) == 0 { b'=' } else { b' ' });
        }
        out.extend_from_slice(b"\r\n");
    }
    out.truncate(n);
    out
}

/// `n` bytes resembling executables: little-endian records, small integers,
/// repeated opcode sequences, zero padding and some noise.
pub fn binary(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n + 64);
    let opcodes: [&[u8]; 6] = [
        &[0x48, 0x89, 0x5C, 0x24],
        &[0x48, 0x83, 0xEC, 0x28],
        &[0xE8],
        &[0xFF, 0x15],
        &[0x33, 0xC0, 0xC3],
        &[0x0F, 0x1F, 0x44, 0x00, 0x00],
    ];
    while out.len() < n {
        match rng.below(8) {
            0..=3 => {
                out.extend_from_slice(opcodes[rng.below(6) as usize]);
                let imm = rng.below(4096) as u32;
                out.extend_from_slice(&imm.to_le_bytes());
            }
            4 => out.extend(std::iter::repeat_n(0u8, rng.below(48) as usize)),
            5 => {
                let v = rng.next_u64();
                out.extend_from_slice(&v.to_le_bytes());
            }
            _ => {
                let rec = [1u8, 0, rng.below(16) as u8, 0, 0x40, 0, 0, 0];
                out.extend_from_slice(&rec);
            }
        }
    }
    out.truncate(n);
    out
}

/// `n` bytes of genuinely compressed data: generated text pushed through
/// wimlib's LZX compressor chunk by chunk, back to back, like the payload of
/// an exported WIM. Falls back to noise if the compressor is unavailable.
pub fn packed(n: usize, seed: u64) -> Vec<u8> {
    let Ok(mut c) = Compressor::new(CompressorKind::Lzx, 1 << 15, 50) else {
        return noise(n, seed);
    };
    let mut out = Vec::with_capacity(n + (1 << 15));
    let mut buf = vec![0u8; 1 << 15];
    let mut s = seed;
    while out.len() < n {
        let src = if s.is_multiple_of(3) {
            binary(1 << 15, s)
        } else {
            text(1 << 15, s)
        };
        s = s.wrapping_add(1);
        match c.compress(&src, &mut buf) {
            Some(k) => out.extend_from_slice(&buf[..k]),
            None => out.extend_from_slice(&src),
        }
    }
    out.truncate(n);
    out
}
