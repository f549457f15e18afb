//! The parallel data pipeline: read + hash → probe + compress → write.
//!
//! ```text
//!  producer thread            rayon pool (N workers)          caller's thread
//!  ───────────────            ──────────────────────          ───────────────
//!  for each file in order:    per packet of ≤ 8 chunks:       reorder by seq,
//!   read a chunk into a Buf   probe, then compress each    →  SHA-256,
//!   SHA-1 it                  with this worker's own          BlobAssembler,
//!   batch (seq, Buf) ──────▶  compressor; send the packet     Sink (+integrity),
//!                                                             return the Bufs ─┐
//!   ▲                                                                          │
//!   └────────────── fixed pool of Bufs (the in-flight window) ◀────────────────┘
//! ```
//!
//! * **Packets**: the producer's messages go out in batches (up to eight
//!   chunks for the pool with the messages between them), one pool job and
//!   one send to the writer per batch, and the writer hands freed buffers
//!   back once per batch. A wake-up per 32 KiB chunk cost more than probing
//!   an incompressible chunk on a small VM. A batch is flushed when full, at
//!   the end, and before the producer waits for a buffer (so it never waits
//!   on buffers it holds itself).
//! * **Determinism**: every message carries a sequence number assigned by
//!   the single producer; the writer applies them strictly in that order, so
//!   the output never depends on which worker finished first. Compressor
//!   output depends only on the input chunk.
//! * **Bounded memory**: a chunk can only be read into one of a fixed number
//!   of `Buf`s, which the writer returns after writing. Peak memory is that
//!   pool (window + in-flight chunks, ~26 MiB at 32 KiB chunks) plus the
//!   per-blob chunk-size list, whatever the input size.
//! * **One pass over the bytes**: SHA-1 (for the WIM) is computed by the
//!   producer on the buffer it hands to the compressor; SHA-256 (for the
//!   manifest) by the writer on the same buffer when it comes back in order.
//!   Splitting the two keeps the producer (hashing is sequential per file)
//!   from becoming the bottleneck on incompressible data.
//! * **Single instancing**: a file can only duplicate an earlier one of the
//!   same size. A file with no earlier same-size file is streamed straight
//!   away. Otherwise its hash must be known first: files up to
//!   `small_limit` are read into buffers, hashed and then either dropped as
//!   duplicates or submitted from those buffers (still one read); larger
//!   ones are hashed in a first pass and read again only if they turn out
//!   unique (a duplicate costs one read, as it must; a large unique file
//!   that happens to share its size costs two).
//! * **Cancellation**: the producer checks `cancel` before every chunk, the
//!   writer whenever a message arrives or every 50 ms.
//! * **One thread means one thread**: with a single worker the same
//!   producer and writer run on the caller's thread, chunk by chunk
//!   (`Inline` route), so `--jobs 1` is serial and its bytes are those of any
//!   other thread count. Chunks of a blob already committed to raw storage
//!   skip the pool and go straight to the writer.
//!
//! This file holds the shared state, the worker job and the writer loop; the
//! producer (reading, hashing, duplicate decisions) is in `reader`.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rayon::prelude::*;
use rayon::ThreadPool;
use sha2::{Digest, Sha256};

use super::blobtable::BlobEntry;
use super::error::WimWriteError;
use super::header::Reshdr;
use super::probe;
use super::reader::Producer;
use super::resource::{BlobAssembler, Buf, Counters, OverflowPolicy, Stored};
use super::sink::Sink;
use super::tree::Tree;
use super::WimEntry;
use mediabuild_wim::compressor::{Compressor, CompressorError, CompressorKind};

/// How often the writer wakes up to look at `cancel` when nothing arrives.
pub const POLL: Duration = Duration::from_millis(50);
/// Progress is reported at most once per this many bytes.
const PROGRESS_STEP: u64 = 1 << 20;

/// State shared by the producer, the workers and the writer.
pub struct Shared {
    /// Chunk format, None for an uncompressed WIM.
    pub kind: Option<CompressorKind>,
    unit: usize,
    level: u32,
    probe: bool,
    /// One compressor per pool thread, indexed by rayon's thread index and
    /// created on first use: wimlib compressors are not thread-safe, and
    /// this way each one is only ever used by its own worker.
    compressors: Vec<Mutex<Option<Compressor>>>,
    /// Blob id + 1 of the blob the writer committed to raw storage: workers
    /// skip compressing its chunks (the result would be ignored).
    raw_blob: AtomicU64,
    /// Set when the writer gives up, so queued work drains quickly.
    pub abort: AtomicBool,
    /// Keep every chunk's raw SHA-1 (for the next build's chunk reuse).
    chunk_digests: bool,
}

impl Shared {
    /// `kind` None = uncompressed WIM; `unit` = chunk size.
    pub fn new(
        kind: Option<CompressorKind>,
        unit: usize,
        level: u32,
        probe: bool,
        threads: usize,
    ) -> Result<Shared, WimWriteError> {
        let compressors: Vec<Mutex<Option<Compressor>>> =
            (0..threads.max(1)).map(|_| Mutex::new(None)).collect();
        // Create the first one now so a bad type/size fails before any I/O.
        if let Some(k) = kind {
            let first = Compressor::new(k, unit, level)?;
            *lock(&compressors[0]) = Some(first);
        }
        Ok(Shared {
            kind,
            unit,
            level,
            probe,
            compressors,
            raw_blob: AtomicU64::new(0),
            abort: AtomicBool::new(false),
            chunk_digests: false,
        })
    }

    /// Workers record each chunk's raw SHA-1 in its `Buf`.
    pub fn with_chunk_digests(mut self, on: bool) -> Shared {
        self.chunk_digests = on;
        self
    }

    /// Compresses one chunk with the calling worker's compressor.
    fn compress(&self, raw: &[u8], out: &mut [u8]) -> Result<Option<usize>, CompressorError> {
        let Some(kind) = self.kind else {
            return Ok(None);
        };
        let idx = rayon::current_thread_index().unwrap_or(0) % self.compressors.len();
        let mut slot = lock(&self.compressors[idx]);
        if slot.is_none() {
            *slot = Some(Compressor::new(kind, self.unit, self.level)?);
        }
        Ok(slot.as_mut().and_then(|c| c.compress(raw, out)))
    }

    /// A worker's job: decide how the chunk is stored.
    pub fn process(&self, blob: u32, mut buf: Buf) -> Msg {
        if let Some(stored) = buf.preset {
            // Taken from the previous version of the file: the same bytes
            // the compressor would give (they depend on the chunk alone).
            return Msg::Chunk { buf, stored };
        }
        if self.abort.load(Ordering::Relaxed)
            || self.raw_blob.load(Ordering::Relaxed) == u64::from(blob) + 1
        {
            return Msg::Chunk {
                buf,
                stored: Stored::Raw { probed: false },
            };
        }
        if self.chunk_digests && buf.digest.is_none() {
            buf.digest = Some(sha1::Sha1::digest(&buf.raw).into());
        }
        if self.probe && probe::looks_incompressible(&buf.raw) {
            return Msg::Chunk {
                buf,
                stored: Stored::Raw { probed: true },
            };
        }
        let Buf { raw, comp, .. } = &mut buf;
        match self.compress(raw, comp) {
            Ok(Some(n)) => Msg::Chunk {
                buf,
                stored: Stored::Compressed(n),
            },
            Ok(None) => Msg::Chunk {
                buf,
                stored: Stored::Raw { probed: false },
            },
            Err(e) => Msg::Failed(e.into()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned compressor slot only means a worker panicked mid-call;
    // the compressor itself holds no invariants we rely on between calls.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Compresses an in-memory resource (the metadata) chunk by chunk on the
/// pool. `None` entries did not shrink.
pub fn compress_in_memory(
    shared: &Shared,
    pool: &ThreadPool,
    data: &[u8],
) -> Result<Vec<Option<Vec<u8>>>, WimWriteError> {
    if shared.kind.is_none() {
        return Ok(Vec::new());
    }
    pool.install(|| {
        data.par_chunks(shared.unit)
            .map(|c| {
                let mut out = vec![0u8; c.len()];
                let n = shared.compress(c, &mut out)?;
                Ok(n.map(|n| {
                    out.truncate(n);
                    out
                }))
            })
            .collect::<Result<Vec<_>, CompressorError>>()
    })
    .map_err(WimWriteError::from)
}

/// A file's outcome, sent by the producer after its last chunk.
#[derive(Debug)]
pub struct FileDone {
    /// Index into `tree.files`.
    pub file: usize,
    /// Its size.
    pub size: u64,
    /// SHA-1 of the content.
    pub sha1: [u8; 20],
    /// None when the writer hashed the blob's chunks itself.
    pub sha256: Option<[u8; 32]>,
    /// Blob holding the content (None for empty files).
    pub blob: Option<u32>,
    /// True when this file's content was written now (a new blob).
    pub new: bool,
}

/// What travels to the writer, tagged with a sequence number.
#[derive(Debug)]
pub enum Msg {
    /// A new resource starts.
    BlobBegin {
        /// Sequential blob id.
        blob: u32,
        /// Uncompressed size.
        size: u64,
        /// The writer computes the SHA-256 from the chunks.
        writer_sha256: bool,
    },
    /// The next chunk of the open resource.
    Chunk {
        /// Its buffers.
        buf: Buf,
        /// How to store it.
        stored: Stored,
    },
    /// A new resource copied verbatim from the store (`cached`).
    Stored {
        /// Sequential blob id.
        blob: u32,
        /// Uncompressed size.
        size: u64,
        /// The stored bytes, and how to open them again.
        res: Box<(super::cached::StoredResource, super::cached::Reopen)>,
    },
    /// A file is resolved (written, duplicate or empty).
    FileDone(FileDone),
    /// Stop with this error.
    Failed(WimWriteError),
    /// All files done.
    End,
}

/// Sizes of the buffer pool and windows, derived from the options.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Chunk size (the read unit; 32 KiB for an uncompressed WIM).
    pub unit: usize,
    /// Chunks a blob may hold undecided (see `resource`).
    pub window_chunks: usize,
    /// Files with an earlier same-size file, up to this many bytes, are
    /// read into buffers and hashed before deciding.
    pub small_limit: u64,
    /// Total `Buf`s.
    pub buffers: usize,
    /// What a full window does.
    pub overflow: OverflowPolicy,
}

/// What the data phase produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Data blob entries in file order (= blob id order = offset order).
    pub blobs: Vec<BlobEntry>,
    /// Per file (index into `tree.files`): SHA-1.
    pub sha1: Vec<[u8; 20]>,
    /// Per file: SHA-256.
    pub sha256: Vec<[u8; 32]>,
    /// Chunk/blob counts.
    pub counters: Counters,
    /// Files whose content was already stored.
    pub duplicate_files: u64,
    /// Their bytes.
    pub duplicate_bytes: u64,
    /// Bytes processed so far (for progress after this phase).
    pub done: u64,
    /// Per blob: copied from the store.
    pub from_store: Vec<bool>,
    /// Per blob: the raw SHA-1 of every chunk, for a resource compressed now
    /// whose every chunk had one (None otherwise).
    pub chunk_sha1: Vec<Option<Vec<[u8; 20]>>>,
}

/// Everything the data phase reads.
pub struct Input<'a> {
    /// Caller's entries.
    pub entries: &'a [WimEntry],
    /// Checked tree.
    pub tree: &'a Tree,
    /// Per file: an earlier file has the same size.
    pub needs_prehash: &'a [bool],
    /// Worker pool.
    pub pool: &'a ThreadPool,
    /// Shared state.
    pub shared: &'a Arc<Shared>,
    /// Sizes.
    pub params: Params,
    /// Resource cache, if any.
    pub store: Option<&'a dyn super::cached::ResourceStore>,
    /// What shapes a resource's bytes, for the store's key.
    pub res_params: super::cached::ResourceParams,
}

/// Runs the data phase: writes every distinct non-empty file content as a
/// resource at the sink's position, in `tree.files` order.
///
/// With one thread everything runs on the caller's thread, in order (read,
/// hash, probe, compress, write) — the same code serially, as `--jobs 1`
/// promises. With more, the producer gets its own thread and chunks go to
/// the pool.
pub fn run<W: Write + Seek>(
    input: &Input<'_>,
    sink: &mut Sink<'_, W>,
    progress: &mut dyn FnMut(u64, u64),
    cancel: &AtomicBool,
) -> Result<Outcome, WimWriteError> {
    let mut state = WriteState::new(input, sink, progress);
    if input.pool.current_num_threads() <= 1 {
        let route = Inline {
            state: &mut state,
            shared: input.shared,
            unit: input.params.unit,
        };
        let mut producer = Producer::new(input, cancel, route);
        return match producer.all_files() {
            Ok(()) => {
                producer.finish()?;
                Ok(state.into_outcome())
            }
            Err(Stop::Error(e)) => Err(e),
            Err(Stop::WriterGone) => Err(WimWriteError::Internal(
                "writer stopped without a result".into(),
            )),
        };
    }
    let (tx, rx) = mpsc::channel::<Packet>();
    let (tok_tx, tok_rx) = mpsc::channel::<Vec<Buf>>();
    std::thread::scope(|scope| {
        let route = Threaded {
            tx,
            tokens: tok_rx,
            stash: Vec::new(),
            batch: Batch::default(),
            pool: input.pool,
            shared: input.shared,
            unit: input.params.unit,
            created: 0,
            limit: input.params.buffers,
        };
        let producer = Producer::new(input, cancel, route);
        let handle = std::thread::Builder::new()
            .name("wimwrite-reader".into())
            .spawn_scoped(scope, move || producer.run())
            .map_err(|e| WimWriteError::Internal(format!("cannot start reader thread: {e}")))?;
        let result = write_loop(&mut state, rx, tok_tx, cancel);
        if result.is_err() {
            input.shared.abort.store(true, Ordering::Relaxed);
        }
        // The loop has dropped its channel ends, so the producer is never
        // left waiting for a buffer or a reader.
        if handle.join().is_err() && result.is_ok() {
            return Err(WimWriteError::Internal("reader thread panicked".into()));
        }
        result
    })
    .map(|()| state.into_outcome())
}

/// The writer's loop when the producer runs on its own thread: receive a
/// packet, apply its messages in sequence order, hand the freed buffers back
/// in one go (one wake-up of the producer per packet, not per chunk).
fn write_loop<W: Write + Seek>(
    state: &mut WriteState<'_, '_, '_, W>,
    rx: Receiver<Packet>,
    tokens: Sender<Vec<Buf>>,
    cancel: &AtomicBool,
) -> Result<(), WimWriteError> {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(WimWriteError::Cancelled);
        }
        let packet = match rx.recv_timeout(POLL) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(WimWriteError::Internal(
                    "reader stopped without a result".into(),
                ))
            }
        };
        let mut ended = false;
        for (seq, msg) in packet {
            if state.accept(seq, msg)? {
                ended = true;
                break;
            }
        }
        if !state.free.is_empty() {
            // The reader may already be gone; the buffers are then dropped.
            let _ = tokens.send(std::mem::take(&mut state.free));
        }
        if ended {
            return Ok(());
        }
    }
}

/// Where the producer's messages and chunks go (see `reader::Producer`).
pub trait Route {
    /// Delivers a message that needs no worker.
    fn send(&mut self, seq: u64, msg: Msg) -> Result<(), Stop>;
    /// Has a chunk of `blob` probed/compressed, then delivered.
    fn submit(&mut self, seq: u64, blob: u32, buf: Buf) -> Result<(), Stop>;
    /// A free buffer; may wait for the writer to return one.
    fn take_buf(&mut self, check: &dyn Fn() -> Result<(), Stop>) -> Result<Buf, Stop>;
}

/// Why the producer stopped early.
pub enum Stop {
    /// Report this error to the writer.
    Error(WimWriteError),
    /// The writer is gone (it failed or was cancelled); just return.
    WriterGone,
}

impl From<WimWriteError> for Stop {
    fn from(e: WimWriteError) -> Stop {
        Stop::Error(e)
    }
}

/// Messages for the writer, each with its sequence number, in one channel
/// send.
type Packet = Vec<(u64, Msg)>;

/// Chunks per pool job (and per packet). A job per 32 KiB chunk meant a
/// wake-up of a worker, of the writer and of the producer per chunk; on a
/// small VM those cost more than the probe of an incompressible chunk.
/// Eight keep a job short (a quarter of a millisecond of XPRESS work per
/// chunk) against the in-flight allowance of every worker.
const BATCH_CHUNKS: usize = 8;

/// Messages that need no worker, more than this many without a chunk among
/// them, go out on their own (many small files in a row).
const BATCH_MESSAGES: usize = 64;

/// One message of a batch.
enum Item {
    /// Ready for the writer.
    Ready(Msg),
    /// A chunk of this blob still to be probed/compressed.
    Work(u32, Buf),
}

impl Item {
    fn into_msg(self, shared: &Shared) -> Msg {
        match self {
            Item::Ready(msg) => msg,
            Item::Work(blob, buf) => shared.process(blob, buf),
        }
    }
}

/// What the producer has emitted but not yet handed on: the next packet.
#[derive(Default)]
struct Batch {
    /// Messages in sequence order.
    items: Vec<(u64, Item)>,
    /// How many of them need a worker.
    work: usize,
}

/// Producer on its own thread, workers on the pool, writer on the caller's
/// thread. The producer's output goes out in packets (`Batch`): chunks that
/// need probing/compressing travel to the pool together and come back to
/// the writer as one packet, with the messages between them.
struct Threaded<'a> {
    tx: Sender<Packet>,
    tokens: Receiver<Vec<Buf>>,
    /// Buffers the writer handed back, not yet used.
    stash: Vec<Buf>,
    batch: Batch,
    pool: &'a ThreadPool,
    shared: &'a Arc<Shared>,
    unit: usize,
    /// Buffers allocated so far (lazily, up to `limit`).
    created: usize,
    limit: usize,
}

impl Threaded<'_> {
    /// Hands the pending packet on: through the pool if some chunk needs a
    /// worker, else straight to the writer.
    fn flush(&mut self) -> Result<(), Stop> {
        let batch = std::mem::take(&mut self.batch);
        if batch.items.is_empty() {
            return Ok(());
        }
        let resolve = |items: Vec<(u64, Item)>, shared: &Shared| -> Packet {
            items
                .into_iter()
                .map(|(seq, item)| (seq, item.into_msg(shared)))
                .collect()
        };
        if batch.work == 0 {
            let packet = resolve(batch.items, self.shared);
            return self.tx.send(packet).map_err(|_| Stop::WriterGone);
        }
        let tx = self.tx.clone();
        let shared = Arc::clone(self.shared);
        self.pool.spawn(move || {
            let _ = tx.send(resolve(batch.items, &shared));
        });
        Ok(())
    }

    fn push(&mut self, seq: u64, item: Item) -> Result<(), Stop> {
        let last = matches!(item, Item::Ready(Msg::End | Msg::Failed(_)));
        self.batch.work += usize::from(matches!(item, Item::Work(..)));
        self.batch.items.push((seq, item));
        if last
            || self.batch.work >= BATCH_CHUNKS
            || self.batch.items.len() >= BATCH_MESSAGES + BATCH_CHUNKS
        {
            self.flush()?;
        }
        Ok(())
    }
}

impl Route for Threaded<'_> {
    fn send(&mut self, seq: u64, msg: Msg) -> Result<(), Stop> {
        self.push(seq, Item::Ready(msg))
    }

    fn submit(&mut self, seq: u64, blob: u32, buf: Buf) -> Result<(), Stop> {
        // Nothing to decide for an uncompressed WIM or a blob the writer
        // already committed to raw storage: skip the worker (it would
        // return exactly this).
        if self.shared.kind.is_none()
            || self.shared.raw_blob.load(Ordering::Relaxed) == u64::from(blob) + 1
        {
            let stored = Stored::Raw { probed: false };
            return self.push(seq, Item::Ready(Msg::Chunk { buf, stored }));
        }
        if let Some(stored) = buf.preset {
            return self.push(seq, Item::Ready(Msg::Chunk { buf, stored }));
        }
        self.push(seq, Item::Work(blob, buf))
    }

    fn take_buf(&mut self, check: &dyn Fn() -> Result<(), Stop>) -> Result<Buf, Stop> {
        if self.stash.is_empty() {
            if let Ok(v) = self.tokens.try_recv() {
                self.stash = v;
            }
        }
        if let Some(b) = self.stash.pop() {
            return Ok(b);
        }
        if self.created < self.limit {
            self.created += 1;
            return Ok(Buf::new(self.unit));
        }
        // About to wait for the writer: what it needs to free buffers must
        // be on its way first.
        self.flush()?;
        loop {
            check()?;
            match self.tokens.recv_timeout(POLL) {
                Ok(v) => {
                    self.stash = v;
                    if let Some(b) = self.stash.pop() {
                        return Ok(b);
                    }
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(Stop::WriterGone),
            }
        }
    }
}

/// Everything on the caller's thread: each chunk is processed and written
/// as soon as it is read. Buffers come back to `state.free` at once, so the
/// pool stays as small as the window the assembler holds.
struct Inline<'s, 'a, 'i, 'w, W: Write + Seek> {
    state: &'s mut WriteState<'a, 'i, 'w, W>,
    shared: &'s Arc<Shared>,
    unit: usize,
}

impl<W: Write + Seek> Route for Inline<'_, '_, '_, '_, W> {
    fn send(&mut self, seq: u64, msg: Msg) -> Result<(), Stop> {
        self.state.accept(seq, msg).map(|_| ()).map_err(Stop::Error)
    }

    fn submit(&mut self, seq: u64, blob: u32, buf: Buf) -> Result<(), Stop> {
        let msg = if self.shared.kind.is_none() {
            Msg::Chunk {
                buf,
                stored: Stored::Raw { probed: false },
            }
        } else {
            self.shared.process(blob, buf)
        };
        self.send(seq, msg)
    }

    fn take_buf(&mut self, check: &dyn Fn() -> Result<(), Stop>) -> Result<Buf, Stop> {
        check()?;
        Ok(self.state.free.pop().unwrap_or_else(|| Buf::new(self.unit)))
    }
}

/// The writer: applies messages strictly in sequence order.
struct WriteState<'a, 'i, 'w, W: Write + Seek> {
    input: &'a Input<'i>,
    sink: &'a mut Sink<'w, W>,
    progress: &'a mut dyn FnMut(u64, u64),
    compressed: bool,
    out: Outcome,
    pending: BTreeMap<u64, Msg>,
    next: u64,
    current: Option<(u32, BlobAssembler)>,
    /// A resource copied from the store, waiting for its `FileDone`.
    stored: Option<(u32, Reshdr)>,
    sha256: Option<Sha256>,
    /// Raw SHA-1 of each chunk of the open blob, while every chunk has one.
    chunk_sha1: Option<Vec<[u8; 20]>>,
    /// Buffers written and free again.
    free: Vec<Buf>,
    reported: u64,
}

impl<'a, 'i, 'w, W: Write + Seek> WriteState<'a, 'i, 'w, W> {
    fn new(
        input: &'a Input<'i>,
        sink: &'a mut Sink<'w, W>,
        progress: &'a mut dyn FnMut(u64, u64),
    ) -> Self {
        let files = input.tree.files.len();
        progress(0, input.tree.total_bytes);
        WriteState {
            input,
            sink,
            progress,
            compressed: input.shared.kind.is_some(),
            out: Outcome {
                sha1: vec![[0; 20]; files],
                sha256: vec![[0; 32]; files],
                ..Outcome::default()
            },
            pending: BTreeMap::new(),
            next: 0,
            current: None,
            stored: None,
            sha256: None,
            chunk_sha1: None,
            free: Vec::new(),
            reported: 0,
        }
    }

    fn into_outcome(self) -> Outcome {
        self.out
    }

    /// Takes message `seq` and applies every message that is now next in
    /// order. True once `End` has been applied.
    fn accept(&mut self, seq: u64, msg: Msg) -> Result<bool, WimWriteError> {
        if seq == self.next {
            // The common case (always, inline): no trip through the map.
            if self.apply(msg)? {
                return Ok(true);
            }
        } else {
            self.pending.insert(seq, msg);
        }
        while let Some(msg) = self.pending.remove(&self.next) {
            if self.apply(msg)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn apply(&mut self, msg: Msg) -> Result<bool, WimWriteError> {
        self.next += 1;
        let p = self.input.params;
        match msg {
            Msg::BlobBegin {
                blob,
                size,
                writer_sha256,
            } => {
                self.sha256 = writer_sha256.then(Sha256::new);
                self.chunk_sha1 = self.input.shared.chunk_digests.then(Vec::new);
                let a = BlobAssembler::new(
                    self.sink.pos(),
                    size,
                    p.unit as u64,
                    self.compressed,
                    p.window_chunks,
                    p.overflow,
                );
                self.current = Some((blob, a));
            }
            Msg::Chunk { buf, stored } => {
                let Some((id, a)) = self.current.as_mut() else {
                    return Err(WimWriteError::Internal("chunk outside a blob".into()));
                };
                self.out.done += buf.raw.len() as u64;
                if let Some(h) = &mut self.sha256 {
                    h.update(&buf.raw);
                }
                match (&mut self.chunk_sha1, buf.digest) {
                    (Some(v), Some(d)) => v.push(d),
                    (v, _) => *v = None,
                }
                if buf.preset.is_some() {
                    self.out.counters.chunks_reused += 1;
                }
                let committed_raw = a
                    .push(
                        buf,
                        stored,
                        self.sink,
                        &mut self.free,
                        &mut self.out.counters,
                    )
                    .map_err(WimWriteError::Write)?;
                if committed_raw {
                    self.input
                        .shared
                        .raw_blob
                        .store(u64::from(*id) + 1, Ordering::Relaxed);
                }
            }
            Msg::Stored { blob, size, res } => {
                let (res, reopen) = *res;
                let reshdr = if self.sink.is_recording() {
                    // Laid out now, copied when the file is written in order.
                    let reshdr = stored_reshdr(&res, size, self.sink.pos());
                    self.sink
                        .skip(reopen, res.len, res.compressed)
                        .map_err(WimWriteError::Write)?;
                    reshdr
                } else {
                    copy_stored(res, size, self.sink, self.input.store)?
                };
                self.out.done += size;
                self.stored = Some((blob, reshdr));
            }
            Msg::FileDone(fd) => self.file_done(fd)?,
            Msg::Failed(e) => return Err(e),
            Msg::End => return Ok(true),
        }
        if self.out.done >= self.reported + PROGRESS_STEP {
            self.reported = self.out.done;
            (self.progress)(self.out.done, self.input.tree.total_bytes);
        }
        Ok(false)
    }

    fn file_done(&mut self, fd: FileDone) -> Result<(), WimWriteError> {
        let out = &mut self.out;
        out.sha1[fd.file] = fd.sha1;
        out.sha256[fd.file] = match (fd.sha256, fd.new) {
            (Some(d), _) => d,
            (None, true) => match self.sha256.take() {
                Some(h) => h.finalize().into(),
                None => return Err(WimWriteError::Internal("blob without a SHA-256".into())),
            },
            (None, false) => {
                return Err(WimWriteError::Internal(
                    "duplicate without a SHA-256".into(),
                ))
            }
        };
        match fd.blob {
            None => {}
            Some(b) if fd.new && self.stored.is_some_and(|(id, _)| id == b) => {
                let Some((_, reshdr)) = self.stored.take() else {
                    return Err(WimWriteError::Internal("stored blob vanished".into()));
                };
                if b as usize != out.blobs.len() {
                    return Err(WimWriteError::Internal(format!(
                        "stored blob {b} out of order"
                    )));
                }
                out.blobs.push(BlobEntry {
                    reshdr,
                    refcnt: 1,
                    sha1: fd.sha1,
                });
                out.from_store.push(true);
                out.chunk_sha1.push(None);
            }
            Some(b) if fd.new => {
                let Some((id, a)) = self.current.take() else {
                    return Err(WimWriteError::Internal("file end outside a blob".into()));
                };
                if id != b || b as usize != out.blobs.len() {
                    return Err(WimWriteError::Internal(format!(
                        "blob {b} ended while {id} was open"
                    )));
                }
                let reshdr = a
                    .finish(self.sink, &mut self.free, &mut out.counters)
                    .map_err(WimWriteError::Write)?;
                let compressed = reshdr.flags & super::header::res_flags::COMPRESSED != 0;
                out.chunk_sha1
                    .push(self.chunk_sha1.take().filter(|_| compressed));
                out.blobs.push(BlobEntry {
                    reshdr,
                    refcnt: 1,
                    sha1: fd.sha1,
                });
                out.from_store.push(false);
            }
            Some(b) => {
                let e = out.blobs.get_mut(b as usize).ok_or_else(|| {
                    WimWriteError::Internal(format!("duplicate of unknown blob {b}"))
                })?;
                e.refcnt += 1;
                out.duplicate_files += 1;
                out.duplicate_bytes += fd.size;
                out.done += fd.size;
            }
        }
        Ok(())
    }
}

/// Copies a stored resource verbatim at the sink's position, checking it on
/// the way: a store entry must match its digest (a mismatch is reported to
/// the store and fails the write), a content file must not change. A
/// spliced resource interleaves the entry's chunks with the raw chunks read
/// from the content file. Bytes already appended on failure are in a partial
/// file the caller discards.
fn copy_stored<W: Write + Seek>(
    mut res: super::cached::StoredResource,
    size: u64,
    sink: &mut Sink<'_, W>,
    store: Option<&dyn super::cached::ResourceStore>,
) -> Result<Reshdr, WimWriteError> {
    use super::cached::StoredCheck;
    use std::os::unix::fs::FileExt;
    let reshdr = stored_reshdr(&res, size, sink.pos());
    let mut buf = vec![0u8; 1 << 20];
    let complete = match res.splice.take() {
        None => {
            let len = res.len;
            copy_entry(&mut res, len, sink, &mut buf)?
        }
        Some(sp) => {
            let src = sp.source.as_ref().ok_or_else(|| {
                WimWriteError::Internal("a spliced resource without its content file".into())
            })?;
            sink.write(&sp.table).map_err(WimWriteError::Write)?;
            let mut complete = true;
            let mut i = 0;
            while i < sp.chunks.len() && complete {
                // A run of chunks of one kind that fits the buffer.
                let raw = sp.chunks[i].1;
                let (mut j, mut bytes) = (i, 0usize);
                while j < sp.chunks.len()
                    && sp.chunks[j].1 == raw
                    && bytes + sp.chunks[j].0 as usize <= buf.len()
                {
                    bytes += sp.chunks[j].0 as usize;
                    j += 1;
                }
                if j == i {
                    buf.resize(sp.chunks[i].0 as usize, 0);
                    continue;
                }
                if raw {
                    complete = src
                        .file
                        .read_exact_at(&mut buf[..bytes], i as u64 * sp.chunk)
                        .is_ok();
                    if complete {
                        sink.write(&buf[..bytes]).map_err(WimWriteError::Write)?;
                    }
                } else {
                    complete = copy_entry(&mut res, bytes as u64, sink, &mut buf)?;
                }
                i = j;
            }
            if complete {
                src.check()?;
            }
            complete
        }
    };
    match res.check {
        StoredCheck::Digest { hasher, expected } => {
            if !complete || hasher.digest128() != expected {
                if let Some(s) = store {
                    s.corrupt(&res.id);
                }
                return Err(WimWriteError::CacheCorrupt(res.id));
            }
        }
        StoredCheck::Unchanged(src) => {
            if !complete {
                return Err(WimWriteError::ContentChanged {
                    path: src.wim_path,
                    source_path: src.path,
                    how: "it ended early or could not be read while its bytes were copied".into(),
                });
            }
            src.check()?;
        }
    }
    Ok(reshdr)
}

/// The resource header of stored resource `res` of `size` bytes at `offset`.
fn stored_reshdr(res: &super::cached::StoredResource, size: u64, offset: u64) -> Reshdr {
    Reshdr {
        size_in_wim: res.len,
        flags: if res.compressed {
            super::header::res_flags::COMPRESSED
        } else {
            0
        },
        offset,
        uncompressed_size: size,
    }
}

/// Writes the file laid out by a recording run (`Sink::is_recording`) in
/// order into `sink`: the recorded bytes (header, new resources, metadata,
/// tables) and, between them, the stored resources copied and checked as
/// [`copy_stored`] does. A stored resource that cannot be opened again as it
/// was laid out fails as a corrupted entry (the caller writes again).
pub fn replay<W: Write + Seek>(
    recorded: super::sink::Recorded,
    sink: &mut Sink<'_, W>,
    store: &dyn super::cached::ResourceStore,
    params: &super::cached::ResourceParams,
    cancel: &AtomicBool,
) -> Result<(), WimWriteError> {
    let mut segments = recorded.segments.into_iter().peekable();
    let mut skips = recorded.skips.into_iter().peekable();
    loop {
        let next_seg = segments.peek().map(|s| s.0);
        let next_skip = skips.peek().map(|s| s.offset);
        let at = match (next_seg, next_skip) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
        };
        if at != sink.pos() {
            return Err(WimWriteError::Internal(format!(
                "replay: a gap or overlap at {at} (written up to {})",
                sink.pos()
            )));
        }
        if next_seg == Some(at) {
            let (_, bytes) = segments.next().unwrap_or_default();
            sink.write(&bytes).map_err(WimWriteError::Write)?;
            continue;
        }
        let Some(sk) = skips.next() else { break };
        if cancel.load(Ordering::Relaxed) {
            return Err(WimWriteError::Cancelled);
        }
        let id = format!("{} (stored resource)", sk.reopen.wim_path);
        let res = super::cached::open_stored(store, &sk.reopen, params)
            .filter(|r| r.len == sk.len && r.compressed == sk.compressed)
            .ok_or(WimWriteError::CacheCorrupt(id))?;
        copy_stored(res, sk.reopen.size, sink, Some(store))?;
        if sink.pos() != sk.offset + sk.len {
            return Err(WimWriteError::Internal(
                "replay: a stored resource changed length".into(),
            ));
        }
    }
    Ok(())
}

/// Copies `n` bytes of the stored resource's reader to the sink (hashing
/// them for a store entry); false when the reader ends or fails first.
fn copy_entry<W: Write + Seek>(
    res: &mut super::cached::StoredResource,
    n: u64,
    sink: &mut Sink<'_, W>,
    buf: &mut [u8],
) -> Result<bool, WimWriteError> {
    let mut left = n;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let got = match std::io::Read::read(&mut res.reader, &mut buf[..want]) {
            Ok(0) => return Ok(false),
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(false),
        };
        if let super::cached::StoredCheck::Digest { hasher, .. } = &mut res.check {
            hasher.update(&buf[..got]);
        }
        sink.write(&buf[..got]).map_err(WimWriteError::Write)?;
        left -= got as u64;
    }
    Ok(true)
}

/// Marks files that share their size with an earlier file in `order`: only
/// those can be duplicates of something already written.
pub fn needs_prehash(sizes: impl Iterator<Item = u64>) -> Vec<bool> {
    let mut seen = std::collections::BTreeSet::new();
    sizes.map(|s| s > 0 && !seen.insert(s)).collect()
}
