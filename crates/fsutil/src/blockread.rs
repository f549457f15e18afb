//! Large reads under the FAT reader. `fatfs` reads a FAT entry 4 bytes at a
//! time and a directory entry field by field (1–4 bytes), each after a seek;
//! straight on the image file that is a system call per field, and a
//! 50,000-file volume took hundreds of millions of them (issue 18). This
//! reader keeps a few aligned blocks of the partition in memory, so those
//! small reads are served from memory and the image is read in
//! [`BLOCK`]-sized calls; a read of a block or more (`fatcheck`'s whole FAT,
//! a run of directory clusters) goes straight to the file in one call.
//!
//! The cache is correct only because nothing writes: writes are refused.

use std::io::{Read, Seek, SeekFrom, Write};

/// Bytes per cached block (aligned on the partition's start).
pub const BLOCK: usize = 256 << 10;
/// Blocks kept (least recently used goes first): 8 MiB. The FAT32 writer
/// lays directories out together and each folder's files in a row, so a walk
/// touches few places at once.
const BLOCKS: usize = 32;

/// Positioned reads: a file, or bytes in memory for tests.
pub trait ReadAt {
    /// Reads at `at` into `buf`; fewer bytes only at the end.
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, at)
    }
}

/// Counts for tests, per thread: calls to the store, bytes they returned,
/// and reads asked of a [`BlockReader`] (what `fatfs` asks). Kept for the
/// tests of this crate and, with the feature `testutil`, of the crates above.
#[cfg(any(test, feature = "testutil"))]
pub mod counts {
    use std::cell::Cell;
    thread_local! {
        static COUNTS: Cell<[u64; 3]> = const { Cell::new([0; 3]) };
    }
    pub(crate) fn add(i: usize, n: u64) {
        COUNTS.with(|c| {
            let mut v = c.get();
            v[i] += n;
            c.set(v);
        });
    }
    /// (store calls, store bytes, reader reads) since the last call.
    pub fn take() -> (u64, u64, u64) {
        let v = COUNTS.with(|c| c.replace([0; 3]));
        (v[0], v[1], v[2])
    }
}

struct Block {
    /// Block number within the window.
    no: u64,
    data: Vec<u8>,
    /// Last use, from [`BlockReader::clock`]: the smallest goes first.
    used: u64,
}

/// A read-only window `[start, start + len)` of `S`, read in blocks.
pub struct BlockReader<S> {
    store: S,
    start: u64,
    len: u64,
    pos: u64,
    blocks: Vec<Block>,
    /// Index into `blocks` of the last one used: most reads hit it again.
    last: usize,
    clock: u64,
}

impl<S: ReadAt> BlockReader<S> {
    pub fn new(store: S, start: u64, len: u64) -> BlockReader<S> {
        BlockReader {
            store,
            start,
            len,
            pos: 0,
            blocks: Vec::new(),
            last: 0,
            clock: 0,
        }
    }

    /// Fills `buf` from `at` (window-relative) with as few calls as the store
    /// needs; stops early only at its end.
    fn fill(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let r = self
                .store
                .read_at(&mut buf[done..], self.start + at + done as u64);
            #[cfg(any(test, feature = "testutil"))]
            counts::add(0, 1);
            match r {
                Ok(0) => break,
                Ok(n) => {
                    #[cfg(any(test, feature = "testutil"))]
                    counts::add(1, n as u64);
                    done += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// The index in `blocks` of block `no`, read on a miss.
    fn block(&mut self, no: u64) -> std::io::Result<usize> {
        self.clock += 1;
        let hit = if self.blocks.get(self.last).is_some_and(|b| b.no == no) {
            Some(self.last)
        } else {
            self.blocks.iter().position(|b| b.no == no)
        };
        let i = match hit {
            Some(i) => i,
            None => {
                let at = no * BLOCK as u64;
                let want = (self.len - at).min(BLOCK as u64) as usize;
                let i = if self.blocks.len() < BLOCKS {
                    self.blocks.push(Block {
                        no,
                        data: vec![0; BLOCK],
                        used: 0,
                    });
                    self.blocks.len() - 1
                } else {
                    let (i, _) = self
                        .blocks
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, b)| b.used)
                        .expect("BLOCKS > 0");
                    i
                };
                // Mark the slot empty first: a failed read must not leave the
                // old block's bytes under the new number.
                let mut data = std::mem::take(&mut self.blocks[i].data);
                data.resize(BLOCK, 0);
                self.blocks[i].no = u64::MAX;
                let n = self.fill(&mut data[..want], at)?;
                data.truncate(n);
                self.blocks[i].data = data;
                self.blocks[i].no = no;
                i
            }
        };
        self.blocks[i].used = self.clock;
        self.last = i;
        Ok(i)
    }
}

impl<S: ReadAt> Read for BlockReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(any(test, feature = "testutil"))]
        counts::add(2, 1);
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 {
            return Ok(0);
        }
        if n >= BLOCK {
            // Large enough to be one call of its own: no copy through a block.
            let got = self.fill(&mut buf[..n], self.pos)?;
            self.pos += got as u64;
            return Ok(got);
        }
        let no = self.pos / BLOCK as u64;
        let i = self.block(no)?;
        let off = (self.pos - no * BLOCK as u64) as usize;
        // A short block: the store ended inside it.
        let data = self.blocks[i].data.get(off..).unwrap_or_default();
        let got = n.min(data.len());
        buf[..got].copy_from_slice(&data[..got]);
        self.pos += got as u64;
        Ok(got)
    }
}

impl<S> Write for BlockReader<S> {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "read-only check",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<S> Seek for BlockReader<S> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let to = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = to.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ReadAt for Vec<u8> {
        fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
            let at = (at as usize).min(self.len());
            let n = buf.len().min(self.len() - at);
            buf[..n].copy_from_slice(&self[at..at + n]);
            Ok(n)
        }
    }

    #[test]
    fn reads_anywhere_equal_the_bytes_and_the_calls_are_few() {
        let bytes: Vec<u8> = (0..3 * BLOCK + 1000).map(|i| (i * 7 % 251) as u8).collect();
        // A window that starts inside the store and ends before its end.
        let (start, len) = (100u64, (3 * BLOCK) as u64);
        let mut r = BlockReader::new(bytes.clone(), start, len);
        counts::take();
        let mut got = Vec::new();
        let mut b = [0u8; 5];
        loop {
            let n = r.read(&mut b).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, bytes[100..100 + 3 * BLOCK]);
        assert_eq!(counts::take().0, 3, "one call per block");

        // Scattered small reads and a large one.
        for at in [5u64, (2 * BLOCK) as u64 - 2, 17, (BLOCK + 3) as u64] {
            r.seek(SeekFrom::Start(at)).unwrap();
            let mut b = [0u8; 4];
            r.read_exact(&mut b).unwrap();
            let s = (start + at) as usize;
            assert_eq!(b, bytes[s..s + 4]);
        }
        assert_eq!(counts::take().0, 0, "all in memory");
        let mut big = vec![0u8; BLOCK + 10];
        r.seek(SeekFrom::Start(50)).unwrap();
        r.read_exact(&mut big).unwrap();
        assert_eq!(big, bytes[150..150 + BLOCK + 10]);
        assert_eq!(counts::take().0, 1, "a large read is one call");
        // Past the window's end: nothing, as a file's end.
        r.seek(SeekFrom::Start(len - 2)).unwrap();
        assert_eq!(r.read(&mut b).unwrap(), 2);
        assert_eq!(r.read(&mut b).unwrap(), 0);
        assert!(r.write(b"x").is_err());
    }

    #[test]
    fn a_store_shorter_than_the_window_reads_as_its_end() {
        let mut r = BlockReader::new(vec![1u8; 1000], 0, 1 << 20);
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v.len(), 1000);
        r.seek(SeekFrom::Start(5000)).unwrap();
        let mut b = [0u8; 4];
        assert!(r.read_exact(&mut b).is_err());
    }
}
