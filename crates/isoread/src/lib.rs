//! Read files out of an optical-disc image (`.iso`) without mounting or extracting it.
//!
//! Windows installation images keep their files in UDF 1.02, behind an ISO 9660 "bridge" that is often
//! only a README; other images use ISO 9660 with Joliet names. [`Iso::open`] picks the best file system
//! present, lists every file and folder once, and [`Iso::reader`] streams a file's bytes straight from
//! the image with positioned reads.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::io::Read;
//! let iso = isoread::Iso::open("Win11_24H2.iso".as_ref())?;
//! let bcd = iso.find("EFI\\Microsoft\\Boot\\BCD").ok_or("no BCD")?;
//! let mut bytes = Vec::new();
//! iso.reader(bcd)?.read_to_end(&mut bytes)?;
//! # Ok(()) }
//! ```
//!
//! Everything read from the image is checked — descriptor tags, extents inside the file, folder depth,
//! entry counts — so a damaged or hostile image gives an [`IsoError`], never a panic, a hang or a huge
//! allocation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod detect;
mod error;
mod image;
mod iso9660;
mod reader;
mod tree;
mod udf;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use error::IsoError;
pub use reader::EntryReader;

use image::Image;
use tree::Tree;

/// A file system an image can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    /// UDF (ECMA-167, OSTA UDF 1.02–2.01): Windows installation images.
    Udf,
    /// ISO 9660 with Joliet's Unicode names (a supplementary volume descriptor).
    Joliet,
    /// Plain ISO 9660: short upper-case names as the authoring tool mangled them.
    Iso9660,
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsKind::Udf => "UDF",
            FsKind::Joliet => "Joliet",
            FsKind::Iso9660 => "ISO 9660",
        })
    }
}

/// A byte range of the image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset in the image, or [`Extent::ZEROS`] for a range that reads as zeros.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// The offset of a range that is allocated but not recorded (UDF): it reads as zeros.
    pub const ZEROS: u64 = u64::MAX;
}

/// A file or folder of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// '/'-separated, no leading '/', in the image's own case.
    pub path: String,
    /// Bytes in the file; 0 for a folder.
    pub size: u64,
    /// Whether this is a folder.
    pub is_dir: bool,
    /// For a file, the ranges of the image that hold its bytes, in order; they add up to `size`.
    /// Empty for a folder and an empty file.
    pub extents: Vec<Extent>,
}

impl Entry {
    /// A folder at `path`.
    pub(crate) fn dir(path: String) -> Entry {
        Entry {
            path,
            size: 0,
            is_dir: true,
            extents: Vec::new(),
        }
    }
}

/// An opened image: its listing, and the file to read entries from.
pub struct Iso {
    path: std::path::PathBuf,
    file: Arc<std::fs::File>,
    kind: FsKind,
    label: String,
    entries: Vec<Entry>,
    /// ASCII-lower-cased path → index in `entries` (the first of paths equal but for case).
    index: BTreeMap<String, usize>,
}

impl fmt::Debug for Iso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iso")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Iso {
    /// Opens an image and lists it through UDF if it has UDF, else Joliet, else plain ISO 9660.
    ///
    /// The choice is made on what the volume descriptors announce, not on what reads: a Windows image
    /// whose UDF is damaged is reported as damaged rather than shown through its README-only bridge.
    pub fn open(path: &Path) -> Result<Iso, IsoError> {
        let img = Image::open(path)?;
        let found = detect::scan(&img)?;
        let Some(&kind) = found.kinds().first() else {
            return Err(IsoError::NotAnIso {
                path: path.to_path_buf(),
            });
        };
        Self::load(img, &found, kind)
    }

    /// Opens an image through the file system `kind`, which it must have.
    pub fn open_as(path: &Path, kind: FsKind) -> Result<Iso, IsoError> {
        let img = Image::open(path)?;
        let found = detect::scan(&img)?;
        let present = found.kinds();
        if present.is_empty() {
            return Err(IsoError::NotAnIso {
                path: path.to_path_buf(),
            });
        }
        if !present.contains(&kind) {
            return Err(IsoError::Missing {
                path: path.to_path_buf(),
                kind,
                present,
            });
        }
        Self::load(img, &found, kind)
    }

    fn load(img: Image, found: &detect::Found, kind: FsKind) -> Result<Iso, IsoError> {
        let mut tree = Tree::default();
        let label = match (kind, found.joliet, found.pvd) {
            (FsKind::Udf, _, _) => udf::read_tree(&img, &mut tree)?,
            (FsKind::Joliet, Some(vd), _) => iso9660::read_tree(&img, vd, true, &mut tree)?,
            (FsKind::Iso9660, _, Some(vd)) => iso9660::read_tree(&img, vd, false, &mut tree)?,
            _ => unreachable!("load is called with a kind the scan found"),
        };
        let mut entries = tree.entries;
        entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
        let mut index = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            index.entry(e.path.to_ascii_lowercase()).or_insert(i);
        }
        Ok(Iso {
            path: img.path,
            file: img.file,
            kind,
            label,
            entries,
            index,
        })
    }

    /// The file system the listing came from.
    pub fn kind(&self) -> FsKind {
        self.kind
    }

    /// The volume label (UDF logical volume identifier, or the ISO 9660 / Joliet volume identifier).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Every file and folder, each folder before what it holds, sorted by path component by component.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry at `path`, matched without regard to ASCII case, with '/' or '\\' separators and an
    /// optional leading separator.
    pub fn find(&self, path: &str) -> Option<&Entry> {
        let key: Vec<String> = path
            .split(['/', '\\'])
            .filter(|c| !c.is_empty())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        self.index.get(&key.join("/")).map(|&i| &self.entries[i])
    }

    /// A reader of a file's bytes (`Read + Seek`); it shares the image's open file.
    pub fn reader(&self, entry: &Entry) -> io::Result<EntryReader> {
        if entry.is_dir {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("/{} in {} is a folder", entry.path, self.path.display()),
            ));
        }
        Ok(EntryReader::new(
            Arc::clone(&self.file),
            format!("/{} in {}", entry.path, self.path.display()),
            entry,
        ))
    }

    /// Whether the file looks like a disc image: an ISO 9660 descriptor ("CD001") at sector 16 or a
    /// UDF NSR descriptor in the volume recognition sequence. Reads at most 64 sectors; any error is
    /// `false`.
    pub fn is_iso(path: &Path) -> bool {
        Image::open(path)
            .and_then(|img| detect::scan(&img))
            .is_ok_and(|found| !found.kinds().is_empty())
    }
}
