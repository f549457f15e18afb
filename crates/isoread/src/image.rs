//! The image file seen as numbered 2048-byte sectors: positioned reads that turn "past the end" into
//! a [`IsoError::Corrupt`] naming what was being read, so a truncated download is reported as such.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::IsoError;

/// Sector size of every optical-disc image, and the only UDF logical block size accepted.
pub(crate) const SECTOR: u64 = 2048;

/// An open image file and its length, fixed at open time.
pub(crate) struct Image {
    pub path: PathBuf,
    pub file: Arc<File>,
    pub len: u64,
}

impl Image {
    pub fn open(path: &Path) -> Result<Image, IsoError> {
        let io = |source| IsoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a folder, not an image file",
            )));
        }
        Ok(Image {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len: meta.len(),
        })
    }

    /// Whole sectors in the file; a trailing partial sector is not addressable.
    pub fn sectors(&self) -> u64 {
        self.len / SECTOR
    }

    pub fn corrupt(&self, offset: Option<u64>, what: impl Into<String>) -> IsoError {
        IsoError::Corrupt {
            path: self.path.clone(),
            offset,
            what: what.into(),
        }
    }

    pub fn unsupported(&self, what: impl Into<String>) -> IsoError {
        IsoError::Unsupported {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    /// Checks that `len` bytes at `offset` lie inside the file; `what` names them for the message.
    pub fn check_range(
        &self,
        offset: u64,
        len: u64,
        what: &dyn Fn() -> String,
    ) -> Result<(), IsoError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(self.corrupt(
                Some(offset),
                format!(
                    "{} lies at bytes {offset}..{}, past the end of the image ({} bytes)",
                    what(),
                    offset.saturating_add(len),
                    self.len
                ),
            )),
        }
    }

    /// Reads exactly `len` bytes at `offset`.
    pub fn read(
        &self,
        offset: u64,
        len: usize,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, IsoError> {
        self.check_range(offset, len as u64, what)?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| IsoError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// Reads one sector by its number.
    pub fn sector(&self, lsn: u64, what: &dyn Fn() -> String) -> Result<Vec<u8>, IsoError> {
        let offset = lsn.saturating_mul(SECTOR);
        self.read(offset, SECTOR as usize, what)
    }
}
