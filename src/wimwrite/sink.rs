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
        })
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
