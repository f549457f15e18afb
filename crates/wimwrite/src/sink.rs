//! The output side: an append cursor over `Write + Seek` with a staging
//! buffer, placeholder patching and the integrity tracker hooked in.
//!
//! Everything the writer emits goes through [`Sink`], which keeps the
//! logical end position itself (no `stream_position` calls), coalesces small
//! writes (many small files would otherwise mean one syscall each) and
//! forwards every byte of the integrity range to the tracker, including the
//! late patches of chunk tables.

use std::io::{self, Seek, SeekFrom, Write};

use super::integrity::IntegrityTracker;

const STAGE: usize = 1 << 20;

/// Append-mostly writer.
pub struct Sink<'w, W: Write + Seek> {
    out: &'w mut W,
    pos: u64,
    stage: Vec<u8>,
    integrity: Option<IntegrityTracker>,
    /// Recording (see [`Recorder`]): the stored resources laid out but not copied.
    skips: Option<Vec<Skip>>,
}

/// A stored resource laid out at `offset` by a recording run.
#[derive(Debug)]
pub struct Skip {
    pub offset: u64,
    pub len: u64,
    pub compressed: bool,
    pub reopen: super::cached::Reopen,
}

/// What a recording run produced: the bytes it wrote, by offset, and the
/// stored resources between them.
#[derive(Debug, Default)]
pub struct Recorded {
    pub segments: Vec<(u64, Vec<u8>)>,
    pub skips: Vec<Skip>,
}

/// An in-memory `Write + Seek` that keeps what is written where, in
/// segments, and nothing for the ranges skipped over: the output of a
/// recording run, whose stored resources are only laid out. A write may
/// overwrite and extend earlier segments (header and chunk-table patches).
#[derive(Debug, Default)]
pub struct Recorder {
    segments: std::collections::BTreeMap<u64, Vec<u8>>,
    pos: u64,
}

impl Recorder {
    pub fn into_segments(self) -> Vec<(u64, Vec<u8>)> {
        self.segments.into_iter().collect()
    }
}

impl Write for Recorder {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let (at, end) = (self.pos, self.pos + data.len() as u64);
        // The segment this write starts in or right after, else a new one.
        let start = match self.segments.range(..=at).next_back() {
            Some((&s, v)) if s + v.len() as u64 >= at => s,
            _ => {
                self.segments.insert(at, Vec::new());
                at
            }
        };
        // Later segments the write reaches are merged into this one.
        let later: Vec<u64> = self
            .segments
            .range(start + 1..=end)
            .map(|(&s, _)| s)
            .collect();
        for s in later {
            let tail = self.segments.remove(&s).unwrap_or_default();
            let seg = self.segments.entry(start).or_default();
            let off = (s - start) as usize;
            if seg.len() < off + tail.len() {
                seg.resize(off + tail.len(), 0);
            }
            seg[off..off + tail.len()].copy_from_slice(&tail);
        }
        let seg = self.segments.entry(start).or_default();
        let off = (at - start) as usize;
        if seg.len() < off + data.len() {
            seg.resize(off + data.len(), 0);
        }
        seg[off..off + data.len()].copy_from_slice(data);
        self.pos = end;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Recorder {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Start(p) => self.pos = p,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the recorder seeks to absolute offsets only",
                ))
            }
        }
        Ok(self.pos)
    }
}

impl<'w, W: Write + Seek> Sink<'w, W> {
    /// Starts writing at absolute offset 0 of `out`.
    pub fn new(out: &'w mut W) -> io::Result<Sink<'w, W>> {
        out.seek(SeekFrom::Start(0))?;
        Ok(Sink {
            out,
            pos: 0,
            stage: Vec::with_capacity(STAGE),
            integrity: None,
            skips: None,
        })
    }

    /// From now on, [`skip`](Self::skip) lays stored resources out without
    /// their bytes (the output is a [`Recorder`]).
    pub fn start_recording(&mut self) {
        self.skips = Some(Vec::new());
    }

    pub fn is_recording(&self) -> bool {
        self.skips.is_some()
    }

    /// Lays out the `len` bytes of a stored resource without writing them.
    pub fn skip(
        &mut self,
        reopen: super::cached::Reopen,
        len: u64,
        compressed: bool,
    ) -> io::Result<()> {
        let Some(skips) = self.skips.as_mut() else {
            return Err(io::Error::other("skip outside a recording run"));
        };
        skips.push(Skip {
            offset: self.pos,
            len,
            compressed,
            reopen,
        });
        self.flush_stage()?;
        self.pos += len;
        self.out.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }

    /// The stored resources laid out so far.
    pub fn take_skips(&mut self) -> Vec<Skip> {
        self.skips.take().unwrap_or_default()
    }

    /// Logical end of the file so far.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// From now on, appended bytes feed the integrity table.
    pub fn start_integrity(&mut self) {
        self.integrity = Some(IntegrityTracker::new(self.pos));
    }

    /// Stops feeding the integrity tracker and returns the slice hashes
    /// (None if tracking was off or a placeholder was never patched).
    pub fn finish_integrity(&mut self) -> Option<Vec<[u8; 20]>> {
        self.integrity.take().and_then(IntegrityTracker::finish)
    }

    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(t) = &mut self.integrity {
            t.append(data);
        }
        if self.stage.len() + data.len() > STAGE {
            self.flush_stage()?;
        }
        if data.len() >= STAGE {
            self.out.write_all(data)?;
        } else {
            self.stage.extend_from_slice(data);
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Appends `len` zero bytes to be [`patch`](Self::patch)ed later;
    /// returns their offset.
    pub fn reserve(&mut self, len: u64) -> io::Result<u64> {
        let at = self.pos;
        if let Some(t) = &mut self.integrity {
            t.hole(at, len);
        }
        let zeros = [0u8; 4096];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            self.write(&zeros[..n])?;
            left -= n as u64;
        }
        Ok(at)
    }

    /// Overwrites a range reserved earlier with its final bytes.
    pub fn patch(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        if let Some(t) = &mut self.integrity {
            t.fill(at, data);
        }
        let staged_from = self.pos - self.stage.len() as u64;
        if at >= staged_from {
            let i = (at - staged_from) as usize;
            self.stage[i..i + data.len()].copy_from_slice(data);
            return Ok(());
        }
        self.flush_stage()?;
        self.out.seek(SeekFrom::Start(at))?;
        self.out.write_all(data)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }

    /// Writes `data` at `at` outside the append stream (the final header).
    pub fn overwrite_at(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        self.flush_stage()?;
        self.out.seek(SeekFrom::Start(at))?;
        self.out.write_all(data)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }

    fn flush_stage(&mut self) -> io::Result<()> {
        if !self.stage.is_empty() {
            self.out.write_all(&self.stage)?;
            self.stage.clear();
        }
        Ok(())
    }

    /// Writes out everything staged and flushes `out`.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_stage()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn the_recorder_keeps_written_ranges_and_merges_what_touches() {
        let mut r = Recorder::default();
        r.write_all(b"HEADER__").unwrap();
        r.seek(SeekFrom::Start(100)).unwrap();
        r.write_all(b"abc").unwrap();
        r.seek(SeekFrom::Start(200)).unwrap();
        r.write_all(b"xyz").unwrap();
        // A patch inside the first segment, one that extends the second up
        // to the third (merged), and the header overwritten.
        r.seek(SeekFrom::Start(2)).unwrap();
        r.write_all(b"--").unwrap();
        r.seek(SeekFrom::Start(101)).unwrap();
        r.write_all(&[7u8; 99]).unwrap();
        r.seek(SeekFrom::Start(0)).unwrap();
        r.write_all(b"H").unwrap();
        let segs = r.into_segments();
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert_eq!(segs[0], (0, b"HE--ER__".to_vec()));
        let mut want = b"a".to_vec();
        want.extend([7u8; 99]);
        want.extend(b"xyz");
        assert_eq!(segs[1], (100, want));
        assert!(Recorder::default().seek(SeekFrom::End(0)).is_err());
    }

    #[test]
    fn reserve_patch_and_overwrite() {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut s = Sink::new(&mut buf).unwrap();
            s.write(b"head").unwrap();
            let at = s.reserve(3).unwrap();
            s.write(&vec![7u8; STAGE + 10]).unwrap(); // forces a flush
            s.patch(at, b"abc").unwrap();
            s.write(b"tail").unwrap();
            s.overwrite_at(0, b"HEAD").unwrap();
            s.flush().unwrap();
            assert_eq!(s.pos(), 4 + 3 + STAGE as u64 + 10 + 4);
        }
        let v = buf.into_inner();
        assert_eq!(&v[..7], b"HEADabc");
        assert_eq!(&v[v.len() - 4..], b"tail");
    }
}
