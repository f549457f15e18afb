//! Where the cache's entries live: the [`Store`] interface
//! (`docs/cache.md`, "Store interface").
//!
//! [`Cache`](super::Cache) is what a build holds: it knows what is cached
//! (the keys and bodies of `resources`, `keys`, `hashes`), counts the
//! build's traffic and keeps the build's input hash index. A `Store` only
//! keeps entries: a body under a key, checked before it is used. The first
//! store is the local folder ([`LocalStore`](super::local::LocalStore)):
//! its layout, entry headers, temporary files and renames, size total,
//! eviction and hard-linked file bodies are its own business, and no code
//! above this interface knows a path of an entry.
//!
//! The operations are at the level a remote store (an HTTP cache holding
//! `cas/<sha256>` bodies and `ac/<sha256>` key records) can implement too:
//! look up an entry (whole, or streamed with the check its reader must
//! make), put one (bytes, or ranges of a file; now, or staged and committed
//! together), remove one found damaged, keep a large body as a file
//! (an exported image: put in before its digests are known, restored as a
//! local file checked against its SHA-256), and the upkeep (stats, clean,
//! flush). Whether an entry may leave the machine is a property of its
//! kind, not of a store: [`Key::may_leave_machine`].

use super::{CacheError, CacheSettings, Key, Stats};
use crate::wimwrite::KnownDigests;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// How a lookup uses what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The build uses the entry: it becomes recently used, and a damaged
    /// entry is removed.
    Use,
    /// A prediction (`plan`, a writer's guess, a merge before a write):
    /// nothing is written, a damaged entry is left for the real lookup.
    Peek,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Found<T> {
    /// The entry, checked as far as the store can before it is used.
    Hit(T),
    /// No usable entry. `dropped`: a damaged one was there and is removed.
    Miss { dropped: bool },
}

impl<T> Found<T> {
    pub fn hit(self) -> Option<T> {
        match self {
            Found::Hit(t) => Some(t),
            Found::Miss { .. } => None,
        }
    }
}

/// An entry opened for streaming (a stored WIM resource): `reader` yields
/// its `len` body bytes. The caller checks what it reads against `check`
/// ([`Checker`](super::Checker)) before trusting it, and hands the key to
/// [`Cache::reject`](super::Cache::reject) when it does not match.
pub struct Entry {
    pub reader: Box<dyn Read + Send>,
    pub len: u64,
    /// XXH3-128 of the body.
    pub check: u128,
    /// The store's name of the entry, for messages (the local store: its file).
    pub id: String,
}

/// The body of a put.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// `prefix`, then the `(offset, len)` ranges of `file`, in order (a
    /// resource read back from the WIM just written).
    Ranges {
        prefix: &'a [u8],
        file: &'a File,
        ranges: &'a [(u64, u64)],
    },
}

impl Body<'_> {
    /// Bytes of the body.
    pub fn size(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Ranges { prefix, ranges, .. } => {
                prefix.len() as u64 + ranges.iter().map(|r| r.1).sum::<u64>()
            }
        }
    }

    /// Writes the body to `w`.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        match *self {
            Body::Bytes(b) => w.write_all(b),
            Body::Ranges {
                prefix,
                file,
                ranges,
            } => {
                use std::os::unix::fs::FileExt;
                w.write_all(prefix)?;
                let total: u64 = ranges.iter().map(|r| r.1).sum();
                let mut buf = vec![0u8; (total.min(1 << 20) as usize).max(1)];
                for &(offset, len) in ranges {
                    let mut done = 0u64;
                    while done < len {
                        let n = (len - done).min(buf.len() as u64) as usize;
                        file.read_exact_at(&mut buf[..n], offset + done)?;
                        w.write_all(&buf[..n])?;
                        done += n as u64;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A put written but not visible yet ([`Store::stage`]): visible once
/// committed, gone when dropped uncommitted.
pub trait Staged: Send {
    /// Makes the entry visible; true when stored.
    fn commit(self: Box<Self>) -> bool;
}

/// What a write that may have nothing to do did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Stored,
    Failed,
    /// Nothing to write (or nothing that may be written any more).
    Skipped,
}

/// Where entries live (see the module doc). Every method is an accelerator's:
/// a failure is a miss or a put not done, never an error of the build.
pub trait Store: Send + Sync {
    /// Where the entries are, for messages ("cache LOCATION: …").
    fn location(&self) -> String;

    /// The entry for `key` opened for streaming, its header (or record)
    /// checked; the body is the reader's to check.
    fn open(&self, key: &Key, look: Look) -> Found<Entry>;

    /// A small entry read whole and checked. (The default reads
    /// [`open`](Self::open) through.)
    fn get(&self, key: &Key, look: Look) -> Found<Vec<u8>> {
        let mut e = match self.open(key, look) {
            Found::Hit(e) => e,
            Found::Miss { dropped } => return Found::Miss { dropped },
        };
        let mut body = Vec::new();
        let read = (&mut e.reader).take(e.len + 1).read_to_end(&mut body);
        if read.is_ok()
            && body.len() as u64 == e.len
            && xxhash_rust::xxh3::xxh3_128(&body) == e.check
        {
            return Found::Hit(body);
        }
        Found::Miss {
            dropped: look == Look::Use && self.remove(key),
        }
    }

    /// Whether an entry for `key` is there, as cheaply as the store can say
    /// (not checked, not counted, nothing fetched).
    fn contains(&self, key: &Key) -> bool;

    /// Writes the entry for `key` so that it becomes visible only when
    /// committed (a build stores a new WIM's resources while wimlib still
    /// checks it). None when it could not be written.
    fn stage<'s>(&'s self, key: &Key, body: Body<'_>) -> Option<Box<dyn Staged + 's>>;

    /// Stores `body` under `key`, visible at once; true when stored.
    fn put(&self, key: &Key, body: Body<'_>) -> bool {
        self.stage(key, body).is_some_and(|s| s.commit())
    }

    /// Removes the entry for `key` (found damaged by its user); true when
    /// one was removed.
    fn remove(&self, key: &Key) -> bool;

    /// Takes the file at `file` in as the body of `key` (an exported
    /// image, hundreds of MB: the local store hard-links it). Its entry
    /// follows with [`complete_file`](Self::complete_file) once its digests
    /// are known. False when it could not be taken.
    fn link_file(&self, key: &Key, file: &Path) -> bool;

    /// Writes the entry of a body taken by [`link_file`](Self::link_file),
    /// with its digests (`None`: the store reads them). Skipped when the
    /// body changed since, or was not taken.
    fn complete_file(&self, key: &Key, digests: Option<KnownDigests>) -> Put;

    /// Puts the file body of `key` at `dst` (the local store: a hard link),
    /// checked against its SHA-256 (or trusted by what the store knows of
    /// it); its digests. On a damaged entry nothing is left at `dst`.
    fn restore_file(&self, key: &Key, dst: &Path) -> Found<KnownDigests>;

    /// The build no longer holds the file it got from `restore_file` or
    /// gave to `link_file` for `key` (its staging folder is gone): what the
    /// store wants to record then (the local store: the body's new stamp).
    fn release_file(&self, key: &Key) -> Put {
        let _ = key;
        Put::Skipped
    }

    /// Totals per kind.
    fn stats(&self) -> Stats;

    /// Removes every entry; returns (entries, bytes) removed.
    fn clean(&self) -> Result<(u64, u64), CacheError>;

    /// Ends a build's use of the store (bookkeeping written, uploads done).
    fn flush(&self) {}

    /// Entries removed to keep within the size limit since it was opened.
    fn evicted(&self) -> u64 {
        0
    }
}

/// The store for `settings`. The one place stores are chosen: a remote
/// store registers here, around the local one.
pub fn open(settings: &CacheSettings) -> Result<Box<dyn Store>, CacheError> {
    let local = super::local::LocalStore::open(&settings.dir, settings.max_size)?;
    Ok(Box::new(local))
}
