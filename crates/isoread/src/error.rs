//! The one error type of the crate: every failure names the image file, and a damaged image also says
//! where in it the damage was found, so a user can tell "download it again" from "wrong file".

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::FsKind;

/// Why an image could not be opened or listed.
#[derive(Debug)]
#[non_exhaustive]
pub enum IsoError {
    /// The image file could not be opened or read.
    Io {
        /// The image file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file carries neither an ISO 9660 volume descriptor nor a UDF volume recognition sequence.
    NotAnIso {
        /// The file that was opened.
        path: PathBuf,
    },
    /// [`Iso::open_as`](crate::Iso::open_as) asked for a file system the image does not have.
    Missing {
        /// The image file.
        path: PathBuf,
        /// The file system asked for.
        kind: FsKind,
        /// The file systems the image does have, best first.
        present: Vec<FsKind>,
    },
    /// A structure in the image breaks the specification or points outside the image: a truncated
    /// download, a damaged copy or a hostile image.
    Corrupt {
        /// The image file.
        path: PathBuf,
        /// Byte offset in the image of the structure at fault, where one is known.
        offset: Option<u64>,
        /// What is wrong, naming the structure and, where known, the file or folder.
        what: String,
    },
    /// The image is valid but uses a feature this crate does not read (UDF virtual, sparable or
    /// metadata partitions, interleaved ISO 9660 files, a block size other than 2048).
    Unsupported {
        /// The image file.
        path: PathBuf,
        /// The feature, as a user would look it up.
        what: String,
    },
}

impl fmt::Display for IsoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsoError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            IsoError::NotAnIso { path } => write!(
                f,
                "{} is not a disc image: it has no ISO 9660 volume descriptor (\"CD001\" at byte 32768) \
                 and no UDF volume recognition sequence; check that you chose the .iso file and that it \
                 was copied or downloaded completely",
                path.display()
            ),
            IsoError::Missing {
                path,
                kind,
                present,
            } => {
                write!(f, "{} has no {kind} file system; ", path.display())?;
                if present.is_empty() {
                    write!(f, "it has none that isoread reads")
                } else {
                    let names: Vec<String> = present.iter().map(|k| k.to_string()).collect();
                    write!(f, "it has {}", names.join(", "))
                }
            }
            IsoError::Corrupt { path, offset, what } => {
                write!(f, "{} is damaged", path.display())?;
                if let Some(off) = offset {
                    write!(f, " at byte {off} (sector {})", off / 2048)?;
                }
                write!(
                    f,
                    ": {what}; the image is truncated or corrupt: copy or download it again and \
                     compare its checksum with the published one"
                )
            }
            IsoError::Unsupported { path, what } => write!(
                f,
                "{} uses {what}, which isoread does not read (it reads UDF 1.02 to 2.01 with plain \
                 partitions, ISO 9660 and Joliet); extract the image with another tool such as `7z x`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for IsoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IsoError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_names_file_offset_and_fix() {
        let e = IsoError::Corrupt {
            path: "x.iso".into(),
            offset: Some(256 * 2048),
            what: "bad tag checksum".into(),
        };
        assert_eq!(
            e.to_string(),
            "x.iso is damaged at byte 524288 (sector 256): bad tag checksum; the image is truncated \
             or corrupt: copy or download it again and compare its checksum with the published one"
        );
    }

    #[test]
    fn missing_lists_what_is_there() {
        let e = IsoError::Missing {
            path: "x.iso".into(),
            kind: FsKind::Udf,
            present: vec![FsKind::Joliet, FsKind::Iso9660],
        };
        assert_eq!(
            e.to_string(),
            "x.iso has no UDF file system; it has Joliet, ISO 9660"
        );
    }
}
