//! Errors of the WIM writer. Each names the entry (WIM path) or file it is
//! about and says what went wrong, so the CLI can print it as is.

use std::io;
use std::path::PathBuf;

use mediabuild_wim::compressor::CompressorError;

/// Everything that can stop [`write_wim`](super::write_wim).
#[derive(Debug, thiserror::Error)]
pub enum WimWriteError {
    /// A source file could not be opened or read.
    #[error("cannot read {source_path} (for {path}): {error}")]
    Read {
        /// Path inside the WIM.
        path: String,
        /// File on disk.
        source_path: PathBuf,
        /// What the OS said.
        #[source]
        error: io::Error,
    },
    /// The file on disk does not have the size the entry declared, or grew
    /// or shrank while it was being read.
    #[error(
        "{source_path} (for {path}) changed size while reading: expected {expected} bytes, {found}"
    )]
    SizeChanged {
        /// Path inside the WIM.
        path: String,
        /// File on disk (or `<memory>` for in-memory content).
        source_path: PathBuf,
        /// Size declared by the entry.
        expected: u64,
        /// What was found instead, in words ("got 12", "more than 12").
        found: String,
    },
    /// A file changed while it was written into the WIM: read twice with
    /// different bytes, ended early, or its size, inode or times moved.
    #[error("{source_path} (for {path}) changed while reading: {how}")]
    ContentChanged {
        /// Path inside the WIM.
        path: String,
        /// File on disk.
        source_path: PathBuf,
        /// What showed it, in words.
        how: String,
    },
    /// Two entries have the same path.
    #[error("duplicate path {path} in the WIM entry list")]
    DuplicatePath {
        /// The repeated path.
        path: String,
    },
    /// Two entries in one directory differ only by letter case, which
    /// Windows (and FAT32) cannot hold side by side.
    #[error("{path} and {other} differ only by letter case; Windows cannot hold both")]
    CaseCollision {
        /// The later path in sort order.
        path: String,
        /// The earlier one.
        other: String,
    },
    /// An entry lies below something that is a file.
    #[error("{path} is below {file}, which is a file, not a directory")]
    NotADirectory {
        /// The entry.
        path: String,
        /// The file in its way.
        file: String,
    },
    /// A path that cannot be a Windows path (empty component, `..`, a
    /// reserved character, a name longer than 255 UTF-16 units, …).
    #[error("invalid WIM path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option value the format or this writer does not support.
    #[error("invalid WIM write option: {0}")]
    InvalidOptions(String),
    /// wimlib could not create a compressor.
    #[error(transparent)]
    Compressor(#[from] CompressorError),
    /// Writing the WIM failed.
    #[error("cannot write the WIM: {0}")]
    Write(#[source] io::Error),
    /// `cancel` was set.
    #[error("WIM writing was cancelled")]
    Cancelled,

    /// A stored resource did not match its digest while being copied; the
    /// store was told, the partial output must be discarded and written again.
    #[error("cache entry {0} is corrupted (dropped); write again")]
    CacheCorrupt(String),
    /// A bug or a thread that died: never expected.
    #[error("internal error in the WIM writer: {0}")]
    Internal(String),
}
