//! Our own parallel WIM writer: one image, non-solid, from a known list of
//! entries, chunks compressed with wimlib's compressors.
//!
//! Why not wimlib's writer: media are mostly already-compressed payloads
//! (exported WIMs, cabs), and wimlib runs every chunk of them through the
//! compressor only to store it raw. Here a cheap probe ([`probe`]) skips
//! chunks that cannot shrink, a large blob whose first window saves nothing
//! is committed to raw storage and no longer compressed at all, and reading,
//! hashing, compressing and writing overlap on a rayon pool (`pipeline`).
//!
//! Phases of [`write_wim`]:
//! 1. check the options and build the tree (`tree`) — every path, size
//!    and option problem is reported before the first byte is written;
//! 2. placeholder header with `WRITE_IN_PROGRESS` (`header`);
//! 3. data phase: every distinct non-empty content once, in tree order
//!    (`pipeline`, `resource`); SHA-1 for the WIM and SHA-256 for the
//!    manifest from the same read;
//! 4. metadata resource (`metadata`), compressed in parallel;
//! 5. blob table (`blobtable`), XML (`xml`), optional integrity table
//!    (`integrity`), then the final header over the placeholder.
//!
//! The bytes depend only on the entries' contents and the options, never on
//! the thread count or timing. The format reference is
//! `shared/reference/wim-format.md`; section numbers in comments point there.
//!
//! # Design choices
//!
//! * **Duplicates** (SHA-1 single instancing) without a second read of big
//!   files: a file can only repeat an earlier file *of the same size*. Files
//!   with a new size are streamed at once, hashed on the fly. The others are
//!   hashed before writing — small ones (≤ 1 MiB) from the buffers they are
//!   then written from, large ones in a hashing pass followed by a second
//!   read only if unique. A duplicate therefore costs one read, a unique file
//!   one read unless it is larger than 1 MiB *and* shares its size with an
//!   earlier file. We never write-then-truncate: `Write + Seek` cannot
//!   shrink the output, so unreferenced bytes would be left behind.
//! * **Raw storage, per chunk and per blob**: a chunk that does not shrink is
//!   stored raw inside its compressed resource; a blob whose savings do not
//!   exceed its chunk table is stored as a raw resource (wimlib's rule; its
//!   comments say the WOF driver needs it when nothing is saved). A blob
//!   larger than the 8 MiB window is judged by its first window
//!   (`resource`). Per-blob is the default
//!   ([`OverflowPolicy::RawChunks`] is the per-chunk alternative, within
//!   0.02 % in size): wimlib's layout, readers skip the chunk machinery, and
//!   a huge incompressible file costs nothing after its first window.
//! * **Probe** ([`probe`]): skips the compressor on chunks that cannot
//!   shrink, for an output within bytes of compressing everything.
//!
//! Measurements (speed against wimlib, the probe's and the raw-storage
//! policies' effect): `docs/benchmarks.md`, "WIM writer lab notes".

#![forbid(unsafe_code)]

mod blobtable;
mod cached;
mod error;
mod header;
mod integrity;
mod metadata;
mod pipeline;
pub mod probe;
mod reader;
mod resource;
mod sink;
#[doc(hidden)]
pub mod testgen;
#[cfg(test)]
mod tests;
mod tree;
mod xml;

use std::io::{Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha1::{Digest, Sha1};

use blobtable::BlobEntry;
use header::{hdr_flags, res_flags, Header, Reshdr};
use mediabuild_wim::compressor::CompressorKind;

pub use cached::{
    KnownDigests, PrevChunks, ResourceInfo, ResourceParams, ResourceStore, SourceFile, Splice,
    StoreHandle, Stored, StoredCheck, StoredResource,
};
pub use error::WimWriteError;
pub use resource::OverflowPolicy;

/// Where a file's bytes come from.
#[derive(Clone, Debug)]
pub enum Content {
    /// A file on disk, read while writing.
    Path(PathBuf),
    /// Bytes in memory (generated files).
    Bytes(Arc<[u8]>),
}

/// Directory or regular file.
#[derive(Clone, Debug)]
pub enum EntryKind {
    /// A directory (parents of files are implied; list empty ones).
    Dir,
    /// A regular file of `size` bytes. The size must match the content; a
    /// file that changes size while being read is an error.
    File {
        /// Size in bytes.
        size: u64,
        /// The bytes.
        content: Content,
    },
}

/// One entry of the image.
#[derive(Clone, Debug)]
pub struct WimEntry {
    /// Relative, `/`-separated, e.g. `SMS/PKG/PS100010/install.wim`; parent
    /// directories are implied.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
}

/// Chunk compression of the WIM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// XPRESS (fast; 32 KiB chunks by default).
    Xpress,
    /// LZX (the usual choice for media; 32 KiB chunks, the only size
    /// Microsoft's tools read).
    Lzx,
    /// LZMS, non-solid (128 KiB chunks by default; Windows 8+ tools).
    Lzms,
}

/// Knobs for experiments and benchmarks; the defaults are what we measured
/// to be best (figures: docs/benchmarks.md, "WIM writer lab notes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Skip compressing chunks the entropy/repeat probe declares
    /// incompressible (stored raw without trying).
    pub probe: bool,
    /// How many bytes of a blob may be held undecided before the
    /// [`overflow`](Self::overflow) policy applies.
    pub window_bytes: u64,
    /// What happens when the window fills while the blob has saved nothing
    /// worth its chunk table.
    pub overflow: OverflowPolicy,
    /// Chunks in flight per worker beyond the window, in bytes.
    pub in_flight_bytes_per_thread: u64,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            probe: true,
            window_bytes: 8 << 20,
            overflow: OverflowPolicy::RawBlob,
            in_flight_bytes_per_thread: 2 << 20,
        }
    }
}

/// How to write.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Chunk compression.
    pub compression: Compression,
    /// wimlib compression level (0 = wimlib's default, 50).
    pub level: u32,
    /// Chunk size; 0 = the type's default. Powers of two only; XPRESS 4 KiB
    /// – 64 KiB, LZX and LZMS 32 KiB – 2 MiB here (LZX: Microsoft reads only
    /// 32 KiB).
    pub chunk_size: u32,
    /// Worker threads; 0 = one per CPU.
    pub threads: usize,
    /// WIM GUID (derive it from the recipe for reproducible output).
    pub guid: [u8; 16],
    /// Unix seconds: every file/dir timestamp and the XML times.
    pub epoch: i64,
    /// Image name (XML `NAME`; omitted when empty).
    pub image_name: String,
    /// Image description.
    pub image_description: Option<String>,
    /// Boot index 1 and the boot metadata reshdr.
    pub bootable: bool,
    /// Append an integrity table.
    pub integrity: bool,
    /// Pipeline knobs.
    pub tuning: Tuning,
    /// Resource cache: reuse stored resources of known contents (`cached`).
    pub store: Option<StoreHandle>,
    /// With a store and no integrity table: lay the WIM out first and then
    /// write it strictly front to back, header first (see [`write_wim`];
    /// [`replay_pays`] says when it is worth it).
    pub replay: bool,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions {
            compression: Compression::Lzx,
            level: 50,
            chunk_size: 0,
            threads: 0,
            guid: [0; 16],
            epoch: 0,
            image_name: String::new(),
            image_description: None,
            bootable: false,
            integrity: false,
            tuning: Tuning::default(),
            store: None,
            replay: false,
        }
    }
}

/// Digests of one file, for the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    /// WIM path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-1 of the content (of the empty string for empty files).
    pub sha1: [u8; 20],
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WimReport {
    /// Every file, sorted by path.
    pub files: Vec<FileDigest>,
    /// Sum of file sizes (duplicates counted each time).
    pub bytes_in: u64,
    /// Size of the WIM.
    pub bytes_out: u64,
    /// Data chunks stored raw (inside compressed resources or as part of
    /// raw resources; for `Compression::None` counted in 32 KiB units).
    pub chunks_stored_raw: u64,
    /// Data chunks stored compressed.
    pub chunks_compressed: u64,
    /// Raw chunks inside compressed resources (subset of
    /// `chunks_stored_raw`).
    pub chunks_raw_in_compressed: u64,
    /// Chunks stored raw because the probe said so, without trying.
    pub chunks_probe_skipped: u64,
    /// Chunks taken from the previous version of their file (the store's
    /// chunk digests), not compressed now.
    pub chunks_reused: u64,
    /// Distinct contents written.
    pub blobs_written: u64,
    /// Of those, written as raw resources.
    pub blobs_stored_raw: u64,
    /// Of those, committed raw when their window filled.
    pub blobs_raw_early: u64,
    /// Files whose content was already stored (single instancing).
    pub duplicate_files: u64,
    /// Their bytes.
    pub duplicate_bytes: u64,
    /// Uncompressed size of the metadata resource.
    pub metadata_bytes: u64,
    /// Every data resource, in blob order, and whether it came from the store.
    pub resources: Vec<ResourceInfo>,
    /// What shaped the resources' bytes (for storing them).
    pub resource_params: ResourceParams,
}

/// Resolved format parameters.
struct Format {
    kind: Option<CompressorKind>,
    chunk: u32,
    version: u32,
    flags: u32,
}

fn check_options(opts: &WriteOptions) -> Result<Format, WimWriteError> {
    let bad = |m: String| Err(WimWriteError::InvalidOptions(m));
    let (kind, default, min, max, flag) = match opts.compression {
        Compression::None => {
            if opts.chunk_size != 0 {
                return bad(format!(
                    "chunk_size must be 0 for an uncompressed WIM, not {}",
                    opts.chunk_size
                ));
            }
            return Ok(Format {
                kind: None,
                chunk: 0,
                version: header::VERSION_DEFAULT,
                flags: 0,
            });
        }
        Compression::Xpress => (
            CompressorKind::Xpress,
            1 << 15,
            1 << 12,
            1 << 16,
            hdr_flags::COMPRESS_XPRESS,
        ),
        Compression::Lzx => (
            CompressorKind::Lzx,
            1 << 15,
            1 << 15,
            1 << 21,
            hdr_flags::COMPRESS_LZX,
        ),
        // The format allows up to 1 GiB, but every buffer of the pipeline is
        // a chunk: cap at 2 MiB to keep memory bounded.
        Compression::Lzms => (
            CompressorKind::Lzms,
            1 << 17,
            1 << 15,
            1 << 21,
            hdr_flags::COMPRESS_LZMS,
        ),
    };
    let chunk = if opts.chunk_size == 0 {
        default
    } else {
        opts.chunk_size
    };
    if !chunk.is_power_of_two() || chunk < min || chunk > max {
        return bad(format!(
            "chunk_size {chunk} is invalid for {:?}: use a power of two from {min} to {max}",
            opts.compression
        ));
    }
    let version = if kind == CompressorKind::Lzms {
        header::VERSION_LZMS
    } else {
        header::VERSION_DEFAULT
    };
    Ok(Format {
        kind: Some(kind),
        chunk,
        version,
        flags: hdr_flags::COMPRESSION | flag,
    })
}

/// Writes a one-image WIM holding `entries` to `out`, starting at offset 0
/// (pass an empty or truncated file: bytes past the end are left alone).
///
/// `progress(done, total)` receives bytes of file content processed so far
/// (duplicates included) from the calling thread, at most once per MiB.
/// Setting `cancel` makes the call return [`WimWriteError::Cancelled`]
/// promptly; the partial output must then be discarded.
/// With [`WriteOptions::replay`] (and a store, no integrity table) the
/// write runs twice: first a recording run lays the whole file out in
/// memory — new resources compressed and kept, stored ones only measured —
/// then the file is written in order, stored resources copied between the
/// recorded bytes. The bytes are the same; what changes is that every byte
/// of the output is final when written, so a caller can hash the file on
/// the way out. Memory is the new resources' bytes: use it when they are
/// few ([`replay_pays`]).
pub fn write_wim<W: Write + Seek>(
    entries: &[WimEntry],
    out: &mut W,
    opts: &WriteOptions,
    progress: &mut dyn FnMut(u64, u64),
    cancel: &AtomicBool,
) -> Result<WimReport, WimWriteError> {
    let store = match &opts.store {
        Some(s) if opts.replay && !opts.integrity => Arc::clone(&s.0),
        _ => return write_inner(entries, out, opts, false, progress, cancel).map(|r| r.0),
    };
    let mut rec = sink::Recorder::default();
    let (rep, skips) = write_inner(entries, &mut rec, opts, true, progress, cancel)?;
    let recorded = sink::Recorded {
        segments: rec.into_segments(),
        skips,
    };
    let mut sink = sink::Sink::new(out).map_err(WimWriteError::Write)?;
    pipeline::replay(recorded, &mut sink, &*store, &rep.resource_params, cancel)?;
    sink.flush().map_err(WimWriteError::Write)?;
    if sink.pos() != rep.bytes_out {
        return Err(WimWriteError::Internal(format!(
            "replay wrote {} bytes, the layout has {}",
            sink.pos(),
            rep.bytes_out
        )));
    }
    Ok(rep)
}

/// New (not stored) content bytes up to which [`replay_pays`] says yes.
pub const REPLAY_FRESH_LIMIT: u64 = 128 << 20;

/// Whether a write of `entries` with `opts` should replay (see
/// [`write_wim`]): a store is there, no integrity table is asked for, and
/// by the store's guess at most [`REPLAY_FRESH_LIMIT`] bytes of content are
/// new, fewer than are stored.
pub fn replay_pays(entries: &[WimEntry], opts: &WriteOptions) -> bool {
    let (Some(store), false) = (&opts.store, opts.integrity) else {
        return false;
    };
    let Ok(params) = resource_params_for(opts) else {
        return false;
    };
    let (mut fresh, mut stored) = (0u64, 0u64);
    for e in entries {
        let EntryKind::File { size, content } = &e.kind else {
            continue;
        };
        let hit = match content {
            Content::Path(p) => store.0.likely_stored(p, *size, &params),
            Content::Bytes(_) => false,
        };
        if hit {
            stored += size;
        } else {
            fresh += size;
            if fresh > REPLAY_FRESH_LIMIT {
                return false;
            }
        }
    }
    fresh < stored
}

fn write_inner<W: Write + Seek>(
    entries: &[WimEntry],
    out: &mut W,
    opts: &WriteOptions,
    record: bool,
    progress: &mut dyn FnMut(u64, u64),
    cancel: &AtomicBool,
) -> Result<(WimReport, Vec<sink::Skip>), WimWriteError> {
    // 1. Everything that can be checked before writing.
    let format = check_options(opts)?;
    let filetime = metadata::filetime_from_unix(opts.epoch).ok_or_else(|| {
        WimWriteError::InvalidOptions(format!(
            "epoch {} is outside the FILETIME range",
            opts.epoch
        ))
    })?;
    for text in std::iter::once(opts.image_name.as_str()).chain(opts.image_description.as_deref()) {
        if xml::has_forbidden_chars(text) {
            return Err(WimWriteError::InvalidOptions(format!(
                "image name/description {text:?} contains control characters XML cannot hold"
            )));
        }
    }
    let tree = tree::build(entries)?;
    let file_size = |node: usize| match tree.nodes[node].kind {
        tree::NodeKind::File { size, .. } => size,
        tree::NodeKind::Dir { .. } => 0,
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let unit = if format.chunk == 0 {
        1 << 15
    } else {
        format.chunk as usize
    };
    let shared = Arc::new(
        pipeline::Shared::new(format.kind, unit, opts.level, opts.tuning.probe, threads)?
            .with_chunk_digests(opts.store.is_some()),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("wimwrite-{i}"))
        .build()
        .map_err(|e| WimWriteError::Internal(format!("cannot start worker threads: {e}")))?;
    let params = pipeline_params(unit, threads, &opts.tuning);
    let needs_prehash = pipeline::needs_prehash(tree.files.iter().map(|&n| file_size(n)));
    let check_cancel = || {
        if cancel.load(Ordering::Relaxed) {
            Err(WimWriteError::Cancelled)
        } else {
            Ok(())
        }
    };
    check_cancel()?;

    // 2. Placeholder header: a reader finding this file half-written sees
    //    WRITE_IN_PROGRESS and empty tables.
    let mut hdr = Header {
        version: format.version,
        flags: format.flags | hdr_flags::WRITE_IN_PROGRESS,
        chunk_size: format.chunk,
        guid: opts.guid,
        image_count: 1,
        ..Header::default()
    };
    let mut sink = sink::Sink::new(out).map_err(WimWriteError::Write)?;
    if record {
        sink.start_recording();
    }
    sink.write(&hdr.encode()).map_err(WimWriteError::Write)?;
    if opts.integrity {
        sink.start_integrity();
    }

    // 3. File data.
    let input = pipeline::Input {
        entries,
        tree: &tree,
        needs_prehash: &needs_prehash,
        pool: &pool,
        shared: &shared,
        params,
        store: opts.store.as_ref().map(|s| &*s.0),
        res_params: resource_params(opts, format.chunk),
    };
    let res_params = input.res_params.clone();
    let data = pipeline::run(&input, &mut sink, progress, cancel)?;
    check_cancel()?;

    // 4. Metadata resource.
    let file_index: std::collections::BTreeMap<usize, usize> = tree
        .files
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i))
        .collect();
    let meta = metadata::build(&tree, filetime, &|node| {
        match file_index.get(&node) {
            Some(&i) if file_size(node) > 0 => data.sha1[i],
            _ => [0; 20], // empty files carry no hash (§9)
        }
    });
    let meta_sha1: [u8; 20] = Sha1::digest(&meta).into();
    let packed = pipeline::compress_in_memory(&shared, &pool, &meta)?;
    let (meta_bytes, meta_reshdr) =
        resource::assemble_in_memory(&meta, unit, &packed, sink.pos(), res_flags::METADATA);
    sink.write(&meta_bytes).map_err(WimWriteError::Write)?;
    check_cancel()?;

    // 5. Blob table: the metadata entry first (it binds to image 1).
    let mut table = Vec::with_capacity(data.blobs.len() + 1);
    table.push(BlobEntry {
        reshdr: meta_reshdr,
        refcnt: 1,
        sha1: meta_sha1,
    });
    table.extend(data.blobs.iter().cloned());
    let table_bytes = blobtable::encode_table(&table);
    hdr.blob_table = Reshdr::raw(sink.pos(), table_bytes.len() as u64, res_flags::METADATA);
    sink.write(&table_bytes).map_err(WimWriteError::Write)?;
    let integrity_hashes = if opts.integrity {
        Some(sink.finish_integrity().ok_or_else(|| {
            WimWriteError::Internal("integrity range has an unpatched placeholder".into())
        })?)
    } else {
        None
    };

    // XML, then the integrity table after it, as wimlib places them.
    let info = xml::ImageInfo {
        dir_count: tree.dirs.len() as u64,
        file_count: tree.files.len() as u64,
        total_bytes: tree.total_bytes,
        time: filetime,
        name: &opts.image_name,
        description: opts.image_description.as_deref(),
    };
    let xml_bytes = xml::encode(&info, sink.pos());
    hdr.xml = Reshdr::raw(sink.pos(), xml_bytes.len() as u64, res_flags::METADATA);
    sink.write(&xml_bytes).map_err(WimWriteError::Write)?;
    if let Some(hashes) = integrity_hashes {
        let t = integrity::encode_table(&hashes);
        hdr.integrity = Reshdr::raw(sink.pos(), t.len() as u64, 0);
        sink.write(&t).map_err(WimWriteError::Write)?;
    }
    if opts.bootable {
        hdr.boot_index = 1;
        hdr.boot_metadata = meta_reshdr;
    }
    hdr.flags &= !hdr_flags::WRITE_IN_PROGRESS;
    check_cancel()?;
    sink.overwrite_at(0, &hdr.encode())
        .map_err(WimWriteError::Write)?;
    sink.flush().map_err(WimWriteError::Write)?;
    progress(tree.total_bytes, tree.total_bytes);

    let mut files: Vec<FileDigest> = tree
        .files
        .iter()
        .enumerate()
        .map(|(i, &n)| FileDigest {
            path: tree.nodes[n].path.clone(),
            size: file_size(n),
            sha1: data.sha1[i],
            sha256: data.sha256[i],
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let c = data.counters;
    let skips = sink.take_skips();
    let report = WimReport {
        files,
        bytes_in: tree.total_bytes,
        bytes_out: sink.pos(),
        chunks_stored_raw: c.chunks_raw,
        chunks_compressed: c.chunks_compressed,
        chunks_raw_in_compressed: c.chunks_raw_in_compressed,
        chunks_probe_skipped: c.chunks_probe_skipped,
        chunks_reused: c.chunks_reused,
        blobs_written: data.blobs.len() as u64,
        blobs_stored_raw: c.blobs_raw,
        blobs_raw_early: c.blobs_raw_early,
        duplicate_files: data.duplicate_files,
        duplicate_bytes: data.duplicate_bytes,
        metadata_bytes: meta.len() as u64,
        resources: data
            .blobs
            .iter()
            .zip(&data.from_store)
            .zip(&data.chunk_sha1)
            .map(|((b, &from_store), chunks)| ResourceInfo {
                sha1: b.sha1,
                size: b.reshdr.uncompressed_size,
                offset: b.reshdr.offset,
                size_in_wim: b.reshdr.size_in_wim,
                compressed: b.reshdr.flags & res_flags::COMPRESSED != 0,
                from_store,
                chunk_sha1: chunks.clone(),
            })
            .collect(),
        resource_params: res_params,
    };
    Ok((report, skips))
}

/// The options that shape a data resource's bytes, as [`write_wim`] would
/// use them with `opts` (for a cache's lookups outside a write).
pub fn resource_params_for(opts: &WriteOptions) -> Result<ResourceParams, WimWriteError> {
    Ok(resource_params(opts, check_options(opts)?.chunk))
}

/// The options that shape a data resource's bytes (the cache key's part).
fn resource_params(opts: &WriteOptions, chunk: u32) -> ResourceParams {
    ResourceParams {
        compression: match opts.compression {
            Compression::None => "none",
            Compression::Xpress => "xpress",
            Compression::Lzx => "lzx",
            Compression::Lzms => "lzms",
        },
        chunk,
        level: opts.level,
        probe: opts.tuning.probe,
        window_bytes: opts.tuning.window_bytes,
        overflow: match opts.tuning.overflow {
            OverflowPolicy::RawBlob => "raw-blob",
            OverflowPolicy::RawChunks => "raw-chunks",
        },
    }
}

/// Buffer pool sizes: the window, one small suspect file, and
/// `in_flight_bytes_per_thread` (at least two chunks) per worker.
fn pipeline_params(unit: usize, threads: usize, t: &Tuning) -> pipeline::Params {
    let u = unit as u64;
    let window_chunks = (t.window_bytes / u).max(4) as usize;
    let small_chunks = ((1u64 << 20) / u).max(1);
    let per_thread = (t.in_flight_bytes_per_thread / u).max(2) as usize;
    pipeline::Params {
        unit,
        window_chunks,
        small_limit: small_chunks * u,
        buffers: window_chunks + small_chunks as usize + per_thread * threads + 2,
        overflow: t.overflow,
    }
}
