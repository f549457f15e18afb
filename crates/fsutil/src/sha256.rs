//! A streaming SHA-256 whose running state can be named, so that the effect
//! of a long run of zeros on it can be remembered.
//!
//! A disk image is mostly free space: a 2 GiB image of 1 GB of media ends in
//! 1 GiB of zeros, a 32 GiB stick in 27. Its SHA-256 must still go through
//! every zero block (there is no shortcut in the function), which costs
//! ≈ 0.6 s per GiB here — in every rebuild, although the state before the
//! zeros and their length are the same as last time. The compression of `n`
//! zero blocks from a state is a pure function of that state and `n`, so a
//! [`ZeroRuns`] memo (the build cache implements it) answers it without
//! hashing, and the digest is still exactly SHA-256 of the bytes. The
//! compression function is `sha2::compress256` (SHA-NI where the CPU has it);
//! only the buffering and the padding are ours.

use sha2::digest::generic_array::GenericArray;

/// Initial hash value (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Blocks handed to the compression function at once.
const BATCH: usize = 1024;
/// Zero runs at least this long go through the memo.
pub const MEMO_MIN: u64 = 64 << 20;

type Block = GenericArray<u8, sha2::digest::consts::U64>;

/// Remembers the state after `blocks` zero blocks from a given state.
pub trait ZeroRuns: Sync {
    fn get(&self, state: &[u32; 8], blocks: u64) -> Option<[u32; 8]>;
    fn put(&self, state: &[u32; 8], blocks: u64, after: &[u32; 8]);
}

/// Streaming SHA-256.
#[derive(Clone)]
pub struct Sha256Stream {
    state: [u32; 8],
    /// Bytes taken so far.
    len: u64,
    /// Whole blocks waiting for the compression function (the last one
    /// possibly partial: `len % 64` bytes of it).
    blocks: Vec<Block>,
    filled: usize,
}

impl Default for Sha256Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256Stream {
    pub fn new() -> Sha256Stream {
        Sha256Stream {
            state: H0,
            len: 0,
            blocks: vec![Block::default(); BATCH],
            filled: 0,
        }
    }

    /// Bytes in the current (partial) block.
    fn partial(&self) -> usize {
        (self.len % 64) as usize
    }

    fn flush_blocks(&mut self) {
        if self.filled > 0 {
            sha2::compress256(&mut self.state, &self.blocks[..self.filled]);
            self.filled = 0;
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let p = self.partial();
            let n = (64 - p).min(data.len());
            self.blocks[self.filled][p..p + n].copy_from_slice(&data[..n]);
            self.len += n as u64;
            data = &data[n..];
            if p + n == 64 {
                self.filled += 1;
                if self.filled == BATCH {
                    self.flush_blocks();
                }
            }
        }
    }

    /// Takes `n` zero bytes; a long run goes through `memo` when given.
    pub fn zeros(&mut self, mut n: u64, memo: Option<&dyn ZeroRuns>) {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        // To a block boundary first.
        let head = ((64 - self.partial() as u64) % 64).min(n);
        self.update(&ZEROS[..head as usize]);
        n -= head;
        if let Some(m) = memo.filter(|_| n >= MEMO_MIN) {
            self.flush_blocks();
            let blocks = n / 64;
            match m.get(&self.state, blocks) {
                Some(after) => self.state = after,
                None => {
                    let before = self.state;
                    let zero = vec![Block::default(); BATCH];
                    let mut left = blocks;
                    while left > 0 {
                        let k = left.min(BATCH as u64) as usize;
                        sha2::compress256(&mut self.state, &zero[..k]);
                        left -= k as u64;
                    }
                    m.put(&before, blocks, &self.state);
                }
            }
            self.len += blocks * 64;
            n -= blocks * 64;
        }
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.update(&ZEROS[..k]);
            n -= k as u64;
        }
    }

    /// The digest (FIPS 180-4 padding: 0x80, zeros, the bit length).
    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        self.update(&[0x80]);
        while self.partial() != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        self.flush_blocks();
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// Streams `path` through SHA-256 (1 MiB reads), reporting bytes as it goes.
/// Holes of a sparse file (the disk image's free space) are hashed as the
/// zeros they read as, without reading them: the kernel would only zero-fill
/// pages to copy out. `cancel` returning true stops it with an
/// `Interrupted` error.
pub fn sha256_file(
    path: &std::path::Path,
    on_bytes: &dyn Fn(u64),
    cancel: &dyn Fn() -> bool,
) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    for (start, end, data) in super::regions(&f, len) {
        if data {
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start))?;
            pos = start;
            while pos < end {
                if cancel() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "cancelled",
                    ));
                }
                let want = (end - pos).min(buf.len() as u64) as usize;
                let n = std::io::Read::read(&mut f, &mut buf[..want])?;
                if n == 0 {
                    break;
                }
                sha2::Digest::update(&mut h, &buf[..n]);
                on_bytes(n as u64);
                pos += n as u64;
            }
            if pos < end {
                break;
            }
        } else {
            buf.fill(0);
            pos = start;
            while pos < end {
                if cancel() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "cancelled",
                    ));
                }
                let n = (end - pos).min(buf.len() as u64) as usize;
                sha2::Digest::update(&mut h, &buf[..n]);
                on_bytes(n as u64);
                pos += n as u64;
            }
        }
    }
    // A file that grew since it was opened: hash what follows too, as a
    // plain read to the end would.
    if pos == len {
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(len))?;
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut h, &buf[..n]);
            on_bytes(n as u64);
        }
    }
    Ok(sha2::Digest::finalize(h).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    type Runs = BTreeMap<([u32; 8], u64), [u32; 8]>;

    #[derive(Default)]
    struct Memo(Mutex<Runs>, Mutex<u32>);
    impl ZeroRuns for Memo {
        fn get(&self, s: &[u32; 8], b: u64) -> Option<[u32; 8]> {
            let hit = self.0.lock().unwrap().get(&(*s, b)).copied();
            if hit.is_some() {
                *self.1.lock().unwrap() += 1;
            }
            hit
        }
        fn put(&self, s: &[u32; 8], b: u64, a: &[u32; 8]) {
            self.0.lock().unwrap().insert((*s, b), *a);
        }
    }

    #[test]
    fn equals_sha256_for_any_split_and_zero_runs() {
        let data: Vec<u8> = (0..200_003u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for split in [0usize, 1, 63, 64, 65, 4095, 65_536, 131_071, 200_003] {
            let mut s = Sha256Stream::new();
            s.update(&data[..split]);
            s.update(&data[split..]);
            assert_eq!(
                s.finalize(),
                <[u8; 32]>::from(Sha256::digest(&data)),
                "{split}"
            );
        }
        for n in [0u64, 1, 55, 56, 64, 119, 1 << 20] {
            let mut s = Sha256Stream::new();
            s.zeros(n, None);
            assert_eq!(
                s.finalize(),
                <[u8; 32]>::from(Sha256::digest(vec![0u8; n as usize])),
                "{n}"
            );
        }
    }

    #[test]
    fn a_remembered_zero_run_gives_the_same_digest() {
        let memo = Memo::default();
        let head: Vec<u8> = (0..1001u32).map(|i| i as u8).collect();
        let run = MEMO_MIN + 4096 + 17;
        let mut want = Sha256::new();
        want.update(&head);
        let zeros = vec![0u8; 1 << 20];
        let mut left = run;
        while left > 0 {
            let k = left.min(zeros.len() as u64) as usize;
            want.update(&zeros[..k]);
            left -= k as u64;
        }
        want.update(b"tail");
        let want: [u8; 32] = want.finalize().into();
        for round in 0..2 {
            let mut s = Sha256Stream::new();
            s.update(&head);
            s.zeros(run, Some(&memo));
            s.update(b"tail");
            assert_eq!(s.finalize(), want, "round {round}");
        }
        assert_eq!(*memo.1.lock().unwrap(), 1, "the second run was remembered");
    }
}
