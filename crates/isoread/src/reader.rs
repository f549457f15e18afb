//! Reading one file's bytes: its extents laid end to end, each read with `pread` on the shared image
//! file, the zero extents filled in memory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::{Entry, Extent};

/// `Read + Seek` over one file of an image. Owns a handle on the image, so it may outlive the
/// [`Iso`](crate::Iso) and move to another thread.
#[derive(Debug)]
pub struct EntryReader {
    file: Arc<File>,
    /// "/path in image.iso", for error messages.
    name: String,
    extents: Vec<Extent>,
    /// Position in the file where each extent starts.
    starts: Vec<u64>,
    size: u64,
    pos: u64,
}

impl EntryReader {
    pub(crate) fn new(file: Arc<File>, name: String, entry: &Entry) -> Self {
        let mut starts = Vec::with_capacity(entry.extents.len());
        let mut at = 0u64;
        for e in &entry.extents {
            starts.push(at);
            at += e.len;
        }
        EntryReader {
            file,
            name,
            extents: entry.extents.clone(),
            starts,
            size: entry.size.min(at),
            pos: 0,
        }
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for EntryReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        // The last extent starting at or before `pos`: a zero-length one is skipped by its successor.
        let i = self.starts.partition_point(|&s| s <= self.pos) - 1;
        let (e, within) = (self.extents[i], self.pos - self.starts[i]);
        let want = (e.len - within).min(self.size - self.pos);
        let want = usize::try_from(want).unwrap_or(usize::MAX).min(buf.len());
        let n = if e.offset == Extent::ZEROS {
            buf[..want].fill(0);
            want
        } else {
            let n = self
                .file
                .read_at(&mut buf[..want], e.offset + within)
                .map_err(|err| {
                    io::Error::new(err.kind(), format!("reading {}: {err}", self.name))
                })?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "reading {}: the image ends early (was it truncated after it was opened?)",
                        self.name
                    ),
                ));
            }
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for EntryReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seeking {} to before its start", self.name),
            )),
        }
    }
}
