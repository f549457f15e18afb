//! The content-addressed build cache.
//!
//! [`Cache`] is what a build holds (`Arc<Cache>` in the build's context):
//! it says what is cached and under which keys (`resources`, `keys`,
//! `hashes`), counts the build's traffic and keeps the build's input hash
//! index. Where the entries live is a [`Store`] behind it (`store`): the
//! local folder of self-checking entries ([`local::LocalStore`]: headers with
//! the key text and an XXH3-128 of the body, temporary files renamed into
//! place, a running size total, LRU eviction, hard-linked file bodies) is
//! the first one, and nothing above the store knows a path of an entry.
//!
//! Every entry starts with its key text and a check of its body, so a
//! corrupted, truncated or misplaced entry is told from a good one: such an
//! entry is removed and reported as a miss, never used. The check is against
//! accidents (a torn write, a flipped bit, a truncated copy), which a 128-bit
//! checksum catches as surely as SHA-256 at a tenth of the cost; an unkeyed
//! SHA-256 would not stop someone who can write into the cache either (they
//! would write its digest too).
//!
//! Costs grow with what a build touches, not with the cache (issue 18: a
//! walk of the whole folder after every put made builds of many small files
//! quadratic): the local store keeps a running size total and walks only to
//! evict; what a build takes from the cache is not written again; and the
//! input hash cache is one index per recipe folder (`hashes`), written only
//! when it changed.
//!
//! The cache is an accelerator: a failure to write an entry is counted and
//! otherwise ignored, and no lookup ever turns into a build error.

pub mod hashes;
pub mod keys;
pub mod local;
#[cfg(test)]
pub(crate) mod memory;
pub mod resources;
pub mod status;
pub mod store;

use local::{FORMAT, TAG};
use store::{Body, Found, Look, Put, Staged};
pub use store::{Entry, Store};

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Entry kinds, one subfolder each in the local store.
pub const KINDS: [&str; 6] = ["hash", "res", "chunks", "export", "verify", "keys"];
/// Kinds whose entries never leave the machine: derived from the secrets
/// (the media certificate's key, sealed under a seed from the password).
pub const LOCAL_ONLY: [&str; 1] = ["keys"];
/// Default size limit: 20 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 20 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot {what} cache folder {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no cache folder: set XDG_CACHE_HOME or HOME, or pass --cache-dir")]
    NoDir,
    #[error(
        "{path} is not a mediabuild cache (no {TAG}, and it holds {found:?}): \
         pass --cache-dir with an empty or new folder, or move those files away"
    )]
    Foreign { path: PathBuf, found: String },
    #[error("{path} is a mediabuild cache of format {found}, this mediabuild writes format {FORMAT}: run `mediabuild cache clean --cache-dir {path}` or use another folder")]
    Format { path: PathBuf, found: String },
}

/// Where the build cache is and how big it may grow (what [`store::open`]
/// chooses the store from).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub dir: PathBuf,
    pub max_size: u64,
}

/// A cache key: its kind and its canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kind: &'static str,
    pub text: String,
}

impl Key {
    pub fn new(kind: &'static str, text: String) -> Key {
        debug_assert!(KINDS.contains(&kind));
        Key { kind, text }
    }

    /// Whether a store may send this entry off the machine (a remote
    /// cache): never for a kind derived from the secrets ([`LOCAL_ONLY`]).
    pub fn may_leave_machine(&self) -> bool {
        !LOCAL_ONLY.contains(&self.kind)
    }
}

/// Counts of one build's cache traffic (for the report).
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub puts: AtomicU64,
    /// Entries found corrupted or truncated, removed.
    pub dropped: AtomicU64,
    /// Puts that failed (disk full, permissions); the build went on.
    pub put_failures: AtomicU64,
    /// Chunks of changed files copied from their previous version.
    pub chunks_reused: AtomicU64,
}

/// Totals of the cache folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub dir: PathBuf,
    pub max_size: u64,
    pub entries: u64,
    pub bytes: u64,
    /// Per kind: (entries, bytes).
    pub kinds: Vec<(String, u64, u64)>,
}

/// The cache a build uses: a store, and what is per build (see the module
/// doc).
pub struct Cache {
    store: Box<dyn Store>,
    pub counters: Counters,
    /// The input hash index of this build's recipe folder.
    hashes: hashes::Index,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.store.location())
            .field("counters", &self.counters)
            .finish()
    }
}

/// `$XDG_CACHE_HOME/mediabuild`, else `$HOME/.cache/mediabuild`.
pub fn default_dir() -> Option<PathBuf> {
    crate::fsutil::user_cache_dir()
}

/// The check of an entry's body, streaming.
pub type Checker = xxhash_rust::xxh3::Xxh3;

impl Cache {
    /// The cache of `settings`, in the store [`store::open`] chooses for
    /// them. Input hashes are kept in one index for the whole cache; a
    /// build uses one per recipe folder ([`Cache::with_scope`]).
    pub fn open_with(settings: &CacheSettings) -> Result<Cache, CacheError> {
        Ok(Cache::with_store(store::open(settings)?))
    }

    /// The cache in the local folder `dir` alone, with a size limit in
    /// bytes (creating and tagging the folder).
    pub fn open(dir: &Path, max_size: u64) -> Result<Cache, CacheError> {
        Ok(Cache::with_store(Box::new(local::LocalStore::open(
            dir, max_size,
        )?)))
    }

    /// The cache with its entries in `store`.
    pub fn with_store(store: Box<dyn Store>) -> Cache {
        Cache {
            store,
            counters: Counters::default(),
            hashes: hashes::Index::new(None),
        }
    }

    /// The input hash index used is the one of `scope` (a recipe's folder):
    /// builds of the recipes of one folder share it, and its size is what
    /// they hash, not what the whole cache ever saw.
    pub fn with_scope(mut self, scope: &Path) -> Cache {
        self.hashes = hashes::Index::new(Some(std::path::absolute(scope).unwrap_or(scope.into())));
        self
    }

    pub(crate) fn hash_index(&self) -> &hashes::Index {
        &self.hashes
    }

    /// Where the entries are (the local store: its folder).
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Counts a lookup the build uses: a hit, or a miss (and a damaged
    /// entry dropped).
    fn count<T>(&self, found: Found<T>) -> Option<T> {
        let c = &self.counters;
        match found {
            Found::Hit(t) => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                Some(t)
            }
            Found::Miss { dropped } => {
                if dropped {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
                c.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Counts a write.
    fn count_put(&self, stored: bool) -> bool {
        let c = if stored {
            &self.counters.puts
        } else {
            &self.counters.put_failures
        };
        c.fetch_add(1, Ordering::Relaxed);
        stored
    }

    /// Opens the entry for `key` for streaming, its header checked; the
    /// body is the caller's to check ([`Cache::reject`] when it is bad).
    pub fn open_entry(&self, key: &Key) -> Option<Entry> {
        self.count(self.store.open(key, Look::Use))
    }

    /// A small entry read whole and checked; None (and the entry removed)
    /// when it is missing, corrupted or truncated.
    pub fn get(&self, key: &Key) -> Option<Vec<u8>> {
        self.count(self.store.get(key, Look::Use))
    }

    /// [`get`](Self::get) for a prediction: not counted, not made recent,
    /// and a bad entry is left for the real lookup to drop.
    pub fn peek(&self, key: &Key) -> Option<Vec<u8>> {
        self.store.get(key, Look::Peek).hit()
    }

    /// Whether an entry for `key` is there (not checked, not counted).
    pub fn contains(&self, key: &Key) -> bool {
        self.store.contains(key)
    }

    /// Reads the entry for `key` through and checks it; a bad one is
    /// removed. True when it is there and good. (Not counted as a use.)
    pub fn check_entry(&self, key: &Key) -> bool {
        let Some(mut e) = self.store.open(key, Look::Peek).hit() else {
            return false;
        };
        let mut h = Checker::new();
        let mut buf = vec![0u8; (e.len.min(1 << 20) as usize).max(1)];
        let mut left = e.len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            if e.reader.read_exact(&mut buf[..n]).is_err() {
                break;
            }
            h.update(&buf[..n]);
            left -= n as u64;
        }
        let good = left == 0 && h.digest128() == e.check;
        if !good && self.store.remove(key) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        good
    }

    /// Removes an entry its user found bad (a digest or a seal that does
    /// not match); it was counted as a hit when found, and was not one.
    pub fn reject(&self, key: &Key) {
        if self.store.remove(key) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.hits.fetch_sub(1, Ordering::Relaxed);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores `body` under `key` (atomically).
    pub fn put(&self, key: &Key, body: &[u8]) {
        self.count_put(self.store.put(key, Body::Bytes(body)));
    }

    /// Stores `body` under a content-addressed `key` unless an entry is
    /// already there (it holds the same bytes, or is found bad on use).
    pub fn put_new(&self, key: &Key, body: &[u8]) {
        if !self.contains(key) {
            self.put(key, body);
        }
    }

    /// The file body of `key` put at `dst`, checked; its digests.
    pub(crate) fn restore_file(
        &self,
        key: &Key,
        dst: &Path,
    ) -> Option<crate::wimwrite::KnownDigests> {
        self.count(self.store.restore_file(key, dst))
    }

    /// Takes `file` in as the body of `key`, its entry to follow.
    pub(crate) fn link_file(&self, key: &Key, file: &Path) -> bool {
        let linked = self.store.link_file(key, file);
        if !linked {
            self.counters.put_failures.fetch_add(1, Ordering::Relaxed);
        }
        linked
    }

    /// Writes the entry of a body taken by [`link_file`](Self::link_file);
    /// false when there was nothing to write.
    pub(crate) fn complete_file(
        &self,
        key: &Key,
        digests: Option<crate::wimwrite::KnownDigests>,
    ) -> bool {
        self.count_write(self.store.complete_file(key, digests))
    }

    /// The build no longer holds the file body of `key`.
    pub(crate) fn release_file(&self, key: &Key) {
        self.count_write(self.store.release_file(key));
    }

    /// Counts a write that may have had nothing to do; true when it was
    /// attempted.
    fn count_write(&self, put: Put) -> bool {
        match put {
            Put::Stored | Put::Failed => {
                self.count_put(put == Put::Stored);
                true
            }
            Put::Skipped => false,
        }
    }

    /// Ends a build's use of the cache: the input hash index written if it
    /// changed, the store's bookkeeping brought up to date (the local store:
    /// its running total, evicting if needed). Also done when the cache is
    /// dropped.
    pub fn flush(&self) {
        self.hashes.save(self);
        self.store.flush();
    }

    /// Totals per kind.
    pub fn stats(&self) -> Stats {
        self.store.stats()
    }

    /// Removes every entry; returns (entries, bytes) removed.
    pub fn clean(&self) -> Result<(u64, u64), CacheError> {
        self.store.clean()
    }

    /// One-line summary of this build's traffic.
    pub fn summary(&self) -> String {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "cache {}: {} hits, {} misses, {} stored, {} corrupted dropped, {} evicted, {} chunks reused{}",
            self.store.location(),
            g(&c.hits),
            g(&c.misses),
            g(&c.puts),
            g(&c.dropped),
            self.store.evicted(),
            g(&c.chunks_reused),
            match g(&c.put_failures) {
                0 => String::new(),
                n => format!(", {n} could not be stored"),
            }
        )
    }
}

/// Puts that become visible together, later: entries are written now and
/// made visible by [`Staging::commit`] (the local store: written to its
/// `tmp/`, renamed into place) — or discarded when the staging is dropped
/// uncommitted. A build stores the resources of a new WIM this way while
/// wimlib still verifies it, and commits only if the WIM passed.
pub struct Staging<'a> {
    cache: &'a Cache,
    staged: std::sync::Mutex<Vec<Box<dyn Staged + 'a>>>,
}

impl<'a> Staging<'a> {
    pub fn new(cache: &'a Cache) -> Staging<'a> {
        Staging {
            cache,
            staged: Default::default(),
        }
    }

    pub fn cache(&self) -> &'a Cache {
        self.cache
    }

    fn stage(&self, key: &Key, body: Body<'_>) -> bool {
        match self.cache.store.stage(key, body) {
            Some(s) => {
                self.staged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(s);
                true
            }
            None => {
                self.cache
                    .counters
                    .put_failures
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// [`Cache::put`], staged.
    pub fn put(&self, key: &Key, body: &[u8]) -> bool {
        self.stage(key, Body::Bytes(body))
    }

    /// Stores `prefix` followed by the `(offset, len)` ranges of `src`, in
    /// order, as the body of `key` (staged). True when written.
    pub fn put_file_ranges(
        &self,
        key: &Key,
        prefix: &[u8],
        src: &std::fs::File,
        ranges: &[(u64, u64)],
    ) -> bool {
        self.stage(
            key,
            Body::Ranges {
                prefix,
                file: src,
                ranges,
            },
        )
    }

    /// Makes every staged entry visible; returns how many.
    pub fn commit(self) -> usize {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|p| p.into_inner()));
        let mut n = 0;
        for s in staged {
            if self.cache.count_put(s.commit()) {
                n += 1;
            }
        }
        n
    }
}

/// The effect of long runs of zeros on a running SHA-256 (a disk image's
/// free space; `fsutil::sha256`): 32 bytes an entry, under `hash/`.
impl crate::fsutil::sha256::ZeroRuns for Cache {
    fn get(&self, state: &[u32; 8], blocks: u64) -> Option<[u32; 8]> {
        let body = self.get(&zero_run_key(state, blocks))?;
        let mut after = [0u32; 8];
        for (w, b) in after.iter_mut().zip(body.chunks_exact(4)) {
            *w = u32::from_le_bytes(b.try_into().ok()?);
        }
        (body.len() == 32).then_some(after)
    }

    fn put(&self, state: &[u32; 8], blocks: u64, after: &[u32; 8]) {
        let body: Vec<u8> = after.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.put(&zero_run_key(state, blocks), &body);
    }
}

fn zero_run_key(state: &[u32; 8], blocks: u64) -> Key {
    let s: String = state.iter().map(|w| format!("{w:08x}")).collect();
    Key::new("hash", format!("zeros1\0{s}\0{blocks}"))
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.flush();
    }
}
