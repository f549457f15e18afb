//! The producer side of the pipeline: reads files in tree order, computes
//! their SHA-1, decides single instancing and hands chunks to the workers.
//!
//! It is the only place that assigns sequence numbers, which is what makes
//! the output independent of worker timing (see `pipeline`). Duplicate
//! handling: a file can only repeat an earlier file of the same size, so a
//! file whose size is new is streamed at once (one read, hash on the fly);
//! otherwise its SHA-1 must be known before writing. Small ones (up to
//! `Params::small_limit`) are read into pool buffers and hashed, then the
//! buffers are either dropped (duplicate) or submitted (still one read).
//! Large ones get a hashing pass first and a second read only when unique;
//! the second read is checked against an XXH3-128 of the first (SHA-1 again
//! would cost as much as wimlib's own second pass, XXH3 a few percent of it),
//! so a file that changes in between is reported instead of silently
//! mis-stored.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sha1::{Digest, Sha1};
use sha2::Sha256;
use xxhash_rust::xxh3::Xxh3;

use super::cached::PrevChunks;
use super::error::WimWriteError;
use super::pipeline::{FileDone, Input, Msg, Route, Stop};
use super::resource::{Buf, Stored};
use super::tree::NodeKind;
use super::{Content, EntryKind};

/// Where a file's bytes come from, for error messages.
struct Origin<'a> {
    wim_path: &'a str,
    source: &'a Path,
}

impl Origin<'_> {
    fn read_error(&self, error: io::Error) -> WimWriteError {
        WimWriteError::Read {
            path: self.wim_path.to_string(),
            source_path: self.source.to_path_buf(),
            error,
        }
    }

    fn size_error(&self, expected: u64, found: String) -> WimWriteError {
        WimWriteError::SizeChanged {
            path: self.wim_path.to_string(),
            source_path: self.source.to_path_buf(),
            expected,
            found,
        }
    }
}

/// Reads every file and feeds the route (the pool and the writer, or both
/// inline on this thread).
pub struct Producer<'a, 'i, R: Route> {
    input: &'a Input<'i>,
    cancel: &'a AtomicBool,
    route: R,
    /// Buffers the producer got back itself (dropped duplicates).
    spare: Vec<Buf>,
    seq: u64,
    next_blob: u32,
    /// SHA-1 → blob id of every content written so far.
    seen: BTreeMap<[u8; 20], u32>,
}

/// Cancelled by the user, or the writer gave up.
fn check(input: &Input<'_>, cancel: &AtomicBool) -> Result<(), Stop> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Stop::Error(WimWriteError::Cancelled));
    }
    if input.shared.abort.load(Ordering::Relaxed) {
        return Err(Stop::WriterGone);
    }
    Ok(())
}

impl<'a, 'i, R: Route> Producer<'a, 'i, R> {
    /// A producer feeding `route`.
    pub fn new(input: &'a Input<'i>, cancel: &'a AtomicBool, route: R) -> Self {
        Producer {
            input,
            cancel,
            route,
            spare: Vec::new(),
            seq: 0,
            next_blob: 0,
            seen: BTreeMap::new(),
        }
    }

    /// Processes every file, then sends `End` (or `Failed`); for the
    /// producer's own thread.
    pub fn run(mut self) {
        match self.all_files() {
            Ok(()) => {
                let _ = self.finish();
            }
            Err(Stop::Error(e)) => {
                let _ = self.send(Msg::Failed(e));
            }
            Err(Stop::WriterGone) => {}
        }
    }

    /// Sends `End` after the last file.
    pub fn finish(&mut self) -> Result<(), WimWriteError> {
        match self.send(Msg::End) {
            Ok(()) => Ok(()),
            Err(Stop::Error(e)) => Err(e),
            Err(Stop::WriterGone) => {
                Err(WimWriteError::Internal("writer gone before the end".into()))
            }
        }
    }

    fn send(&mut self, msg: Msg) -> Result<(), Stop> {
        let seq = self.seq;
        self.seq += 1;
        self.route.send(seq, msg)
    }

    fn check(&self) -> Result<(), Stop> {
        check(self.input, self.cancel)
    }

    /// A free buffer: a returned one, or one from the route (which may wait
    /// for the writer to hand one back).
    fn take_buf(&mut self) -> Result<Buf, Stop> {
        if let Some(mut b) = self.spare.pop() {
            b.reset();
            return Ok(b);
        }
        let (input, cancel) = (self.input, self.cancel);
        let mut b = self.route.take_buf(&|| check(input, cancel))?;
        b.reset();
        Ok(b)
    }

    /// Hands a chunk on to be probed/compressed and written.
    fn submit(&mut self, blob: u32, buf: Buf) -> Result<(), Stop> {
        let seq = self.seq;
        self.seq += 1;
        self.route.submit(seq, blob, buf)
    }

    pub fn all_files(&mut self) -> Result<(), Stop> {
        let tree = self.input.tree;
        for (fi, &node) in tree.files.iter().enumerate() {
            self.check()?;
            let n = &tree.nodes[node];
            let NodeKind::File { entry, size } = n.kind else {
                return Err(WimWriteError::Internal(format!("{} is not a file", n.path)).into());
            };
            let EntryKind::File { content, .. } = &self.input.entries[entry].kind else {
                return Err(WimWriteError::Internal(format!("{} has no content", n.path)).into());
            };
            match content {
                Content::Bytes(bytes) => self.bytes_file(fi, &n.path, bytes, size)?,
                Content::Path(p) => self.path_file(fi, &n.path, p, size)?,
            }
        }
        Ok(())
    }

    fn file_done(
        &mut self,
        file: usize,
        size: u64,
        sha1: [u8; 20],
        sha256: Option<[u8; 32]>,
        blob: Option<u32>,
        new: bool,
    ) -> Result<(), Stop> {
        self.send(Msg::FileDone(FileDone {
            file,
            size,
            sha1,
            sha256,
            blob,
            new,
        }))
    }

    fn new_blob(&mut self, size: u64, writer_sha256: bool) -> Result<u32, Stop> {
        let blob = self.next_blob;
        self.next_blob += 1;
        self.send(Msg::BlobBegin {
            blob,
            size,
            writer_sha256,
        })?;
        Ok(blob)
    }

    fn bytes_file(
        &mut self,
        fi: usize,
        wim_path: &str,
        bytes: &[u8],
        size: u64,
    ) -> Result<(), Stop> {
        if bytes.len() as u64 != size {
            let origin = Origin {
                wim_path,
                source: Path::new("<memory>"),
            };
            return Err(origin
                .size_error(size, format!("got {}", bytes.len()))
                .into());
        }
        let sha1: [u8; 20] = Sha1::digest(bytes).into();
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        if size == 0 {
            return self.file_done(fi, 0, sha1, Some(sha256), None, false);
        }
        if let Some(&b) = self.seen.get(&sha1) {
            return self.file_done(fi, size, sha1, Some(sha256), Some(b), false);
        }
        let blob = self.new_blob(size, false)?;
        for piece in bytes.chunks(self.input.params.unit) {
            self.check()?;
            let mut buf = self.take_buf()?;
            buf.raw.clear();
            buf.raw.extend_from_slice(piece);
            self.submit(blob, buf)?;
        }
        self.seen.insert(sha1, blob);
        self.file_done(fi, size, sha1, Some(sha256), Some(blob), true)
    }

    fn path_file(
        &mut self,
        fi: usize,
        wim_path: &str,
        source: &Path,
        size: u64,
    ) -> Result<(), Stop> {
        if size > 0 && self.serve_stored(fi, wim_path, source, size)? {
            return Ok(());
        }
        let origin = Origin { wim_path, source };
        let mut f = File::open(source).map_err(|e| origin.read_error(e))?;
        if size == 0 {
            expect_eof(&mut f, &origin, 0)?;
            let sha1: [u8; 20] = Sha1::digest([]).into();
            let sha256: [u8; 32] = Sha256::digest([]).into();
            return self.file_done(fi, 0, sha1, Some(sha256), None, false);
        }
        // A file the store saw at this path with this size, whose stamp has
        // moved since (a fresh checkout, a restored or touched tree): likely
        // unchanged, so it is hashed first and, if its content is stored,
        // served like a known file instead of compressed again.
        let by_path = self.input.store.is_some_and(|s| s.seen_at(source, size));
        if !self.input.needs_prehash[fi] && !by_path {
            // No earlier file of this size: it cannot be a duplicate.
            let prev = self.previous(wim_path);
            let blob = self.new_blob(size, true)?;
            let sha1 = self.stream(blob, &mut f, &origin, size, prev.as_ref(), None)?;
            self.seen.insert(sha1, blob);
            return self.file_done(fi, size, sha1, None, Some(blob), true);
        }
        if size <= self.input.params.small_limit {
            return self.small_suspect(fi, &mut f, &origin, size, by_path);
        }
        // Large file sharing its size with an earlier one (or seen by the
        // store): hash first.
        let (first, sha256) = hash_pass(&mut f, &origin, size, self)?;
        let sha1 = first.sha1;
        if let Some(&b) = self.seen.get(&sha1) {
            return self.file_done(fi, size, sha1, Some(sha256), Some(b), false);
        }
        if by_path && self.serve_known(fi, &origin, size, sha1, sha256)? {
            return Ok(());
        }
        #[cfg(test)]
        BETWEEN_PASSES.with(|h| h.borrow().as_ref().map(|h| h(source)));
        f.seek(SeekFrom::Start(0))
            .map_err(|e| origin.read_error(e))?;
        let prev = self.previous(wim_path);
        let blob = self.new_blob(size, false)?;
        self.stream(blob, &mut f, &origin, size, prev.as_ref(), Some(&first))?;
        self.seen.insert(sha1, blob);
        self.file_done(fi, size, sha1, Some(sha256), Some(blob), true)
    }

    /// Serves a file from the store when its digests are known without
    /// reading it: a duplicate of something written, or a stored resource.
    /// Returns false when the file must be read.
    fn serve_stored(
        &mut self,
        fi: usize,
        wim_path: &str,
        source: &Path,
        size: u64,
    ) -> Result<bool, Stop> {
        let Some(store) = self.input.store else {
            return Ok(false);
        };
        let Some(k) = store.digests(source, size) else {
            return Ok(false);
        };
        if let Some(&b) = self.seen.get(&k.sha1) {
            self.file_done(fi, size, k.sha1, Some(k.sha256), Some(b), false)?;
            return Ok(true);
        }
        let origin = Origin { wim_path, source };
        self.serve_known(fi, &origin, size, k.sha1, k.sha256)
    }

    /// Serves a file of known digests (not a duplicate) from the store;
    /// false when the store has nothing usable for it.
    fn serve_known(
        &mut self,
        fi: usize,
        origin: &Origin<'_>,
        size: u64,
        sha1: [u8; 20],
        sha256: [u8; 32],
    ) -> Result<bool, Stop> {
        let Some(store) = self.input.store else {
            return Ok(false);
        };
        let reopen = super::cached::Reopen {
            sha1,
            size,
            wim_path: origin.wim_path.to_string(),
            source: origin.source.to_path_buf(),
        };
        let Some(res) = super::cached::open_stored(store, &reopen, &self.input.res_params) else {
            return Ok(false);
        };
        let blob = self.next_blob;
        self.next_blob += 1;
        self.send(Msg::Stored {
            blob,
            size,
            res: Box::new((res, reopen)),
        })?;
        self.seen.insert(sha1, blob);
        self.file_done(fi, size, sha1, Some(sha256), Some(blob), true)?;
        Ok(true)
    }

    /// The previous version's chunks of the file at `wim_path` (compressed
    /// WIMs written with a store only).
    fn previous(&self, wim_path: &str) -> Option<PrevChunks> {
        self.input.shared.kind?;
        self.input.store?.previous(wim_path, &self.input.res_params)
    }

    /// A small file that may duplicate an earlier one (or be stored, with
    /// `stored`): read it into buffers, hash, then drop or submit the
    /// buffers.
    fn small_suspect(
        &mut self,
        fi: usize,
        f: &mut File,
        origin: &Origin<'_>,
        size: u64,
        stored: bool,
    ) -> Result<(), Stop> {
        let unit = self.input.params.unit as u64;
        let mut h1 = Sha1::new();
        let mut h256 = Sha256::new();
        let mut bufs = Vec::new();
        let mut off = 0u64;
        while off < size {
            self.check()?;
            let len = unit.min(size - off) as usize;
            let mut buf = self.take_buf()?;
            buf.raw.resize(len, 0);
            read_exact_sized(f, &mut buf.raw, origin, off, size)?;
            h1.update(&buf.raw);
            h256.update(&buf.raw);
            bufs.push(buf);
            off += len as u64;
        }
        expect_eof(f, origin, size)?;
        let sha1: [u8; 20] = h1.finalize().into();
        let sha256: [u8; 32] = h256.finalize().into();
        if let Some(&b) = self.seen.get(&sha1) {
            self.spare.extend(bufs);
            return self.file_done(fi, size, sha1, Some(sha256), Some(b), false);
        }
        if stored && self.serve_known(fi, origin, size, sha1, sha256)? {
            self.spare.extend(bufs);
            return Ok(());
        }
        // Changed after all: its unchanged chunks come from its previous version.
        let prev = if stored {
            self.previous(origin.wim_path)
        } else {
            None
        };
        let blob = self.new_blob(size, false)?;
        for (i, mut buf) in bufs.into_iter().enumerate() {
            if let Some(p) = &prev {
                reuse_chunk(&mut buf, p, i);
            }
            self.submit(blob, buf)?;
        }
        self.seen.insert(sha1, blob);
        self.file_done(fi, size, sha1, Some(sha256), Some(blob), true)
    }

    /// Reads `size` bytes from `f` chunk by chunk, SHA-1-hashing each and
    /// handing it to the pool as part of `blob`. Returns the SHA-1. A chunk
    /// the previous version `prev` holds unchanged at the same position is
    /// handed on decided, with the previous stored form. With `known` (from
    /// a first pass) the bytes are only checked against its XXH3 and its
    /// SHA-1 returned; a mismatch means the file changed in between.
    fn stream(
        &mut self,
        blob: u32,
        f: &mut File,
        origin: &Origin<'_>,
        size: u64,
        prev: Option<&PrevChunks>,
        known: Option<&FirstPass>,
    ) -> Result<[u8; 20], Stop> {
        let unit = self.input.params.unit as u64;
        let mut h = match known {
            None => Hash::Sha1(Sha1::new()),
            Some(_) => Hash::Xxh3(Box::default()),
        };
        let mut off = 0u64;
        let mut i = 0usize;
        while off < size {
            self.check()?;
            let len = unit.min(size - off) as usize;
            let mut buf = self.take_buf()?;
            buf.raw.resize(len, 0);
            read_exact_sized(f, &mut buf.raw, origin, off, size)?;
            h.update(&buf.raw);
            if let Some(p) = prev {
                reuse_chunk(&mut buf, p, i);
            }
            self.submit(blob, buf)?;
            off += len as u64;
            i += 1;
        }
        expect_eof(f, origin, size)?;
        match (h, known) {
            (Hash::Sha1(h1), _) => Ok(h1.finalize().into()),
            (Hash::Xxh3(x), Some(k)) if x.digest128() == k.xxh3 => Ok(k.sha1),
            (Hash::Xxh3(_), _) => Err(WimWriteError::ContentChanged {
                path: origin.wim_path.to_string(),
                source_path: origin.source.to_path_buf(),
                how: "its content differs between two reads".into(),
            }
            .into()),
        }
    }
}

/// A test's hook: called with a source path.
#[cfg(test)]
pub type PathHook = Box<dyn Fn(&Path)>;

#[cfg(test)]
thread_local! {
    /// Called with the source path between the two reads of a large file
    /// that shares its size (tests change the file there).
    pub static BETWEEN_PASSES: std::cell::RefCell<Option<PathHook>> =
        const { std::cell::RefCell::new(None) };
}

/// What a file's first pass found: its SHA-1, and the XXH3-128 its second
/// read is checked against.
struct FirstPass {
    sha1: [u8; 20],
    xxh3: u128,
}

/// The streaming pass's hash: the SHA-1 the WIM needs, or only a check.
/// (Only the XXH3 state is large enough, ≈ 600 bytes, to be boxed.)
enum Hash {
    Sha1(Sha1),
    Xxh3(Box<Xxh3>),
}

impl Hash {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hash::Sha1(h) => h.update(data),
            Hash::Xxh3(h) => h.update(data),
        }
    }
}

/// Presets chunk `i` from the previous version when its raw SHA-1 matches.
fn reuse_chunk(buf: &mut Buf, prev: &PrevChunks, i: usize) {
    let d: [u8; 20] = Sha1::digest(&buf.raw).into();
    buf.digest = Some(d);
    let Some(stored) = prev.chunk(i, &d) else {
        return;
    };
    let n = stored.len();
    if n < buf.raw.len() && n <= buf.comp.len() {
        buf.comp[..n].copy_from_slice(stored);
        buf.preset = Some(Stored::Compressed(n));
    } else if n == buf.raw.len() && stored == buf.raw.as_slice() {
        buf.preset = Some(Stored::Raw { probed: false });
    }
}

/// First pass over a large possible duplicate: both digests and the check
/// for the second read, no buffers from the pool (a private 1 MiB one).
fn hash_pass(
    f: &mut File,
    origin: &Origin<'_>,
    size: u64,
    producer: &Producer<'_, '_, impl Route>,
) -> Result<(FirstPass, [u8; 32]), Stop> {
    let mut h1 = Sha1::new();
    let mut h256 = Sha256::new();
    let mut x = Box::new(Xxh3::new());
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        producer.check()?;
        let len = (buf.len() as u64).min(size - off) as usize;
        read_exact_sized(f, &mut buf[..len], origin, off, size)?;
        h1.update(&buf[..len]);
        h256.update(&buf[..len]);
        x.update(&buf[..len]);
        off += len as u64;
    }
    expect_eof(f, origin, size)?;
    let first = FirstPass {
        sha1: h1.finalize().into(),
        xxh3: x.digest128(),
    };
    Ok((first, h256.finalize().into()))
}

/// Fills `buf` from `f`; hitting end-of-file first means the file shrank.
fn read_exact_sized(
    f: &mut File,
    buf: &mut [u8],
    origin: &Origin<'_>,
    at: u64,
    size: u64,
) -> Result<(), Stop> {
    let mut got = 0usize;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => {
                let found = format!("got only {} bytes", at + got as u64);
                return Err(origin.size_error(size, found).into());
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(origin.read_error(e).into()),
        }
    }
    Ok(())
}

/// After `size` bytes the file must end; more means it grew.
fn expect_eof(f: &mut File, origin: &Origin<'_>, size: u64) -> Result<(), Stop> {
    let mut one = [0u8; 1];
    loop {
        match f.read(&mut one) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                let found = format!("more than {size}");
                return Err(origin.size_error(size, found).into());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(origin.read_error(e).into()),
        }
    }
}
