//! Turning a stream of processed chunks into one resource on disk.
//!
//! A resource is either *raw* (the bytes as they are, `size_in_wim = U`) or
//! *compressed*: a chunk table (offsets of chunks 1..n, 4-byte entries, or
//! 8-byte when U > 4 GiB − 1) followed by every chunk, each either
//! compressed or, when compression did not make it smaller, stored raw
//! (readers recognise that by stored size = chunk size). Like wimlib we
//! store the whole resource raw whenever the compressed form would not be
//! smaller, i.e. when the bytes saved by compressed chunks do not exceed the
//! chunk table (reference §3.9).
//!
//! That rule needs the whole blob before deciding, yet memory must not grow
//! with file size. [`BlobAssembler`] therefore holds at most a window of
//! chunks while undecided:
//!
//! * savings > table size → compressed for sure (savings only grow): reserve
//!   the table, write what is held and stream the rest; patch the table at
//!   the end;
//! * the blob ends inside the window → the exact rule, no seek;
//! * the window fills while still undecided → if its chunks saved more than
//!   their share of the chunk table, go compressed (the rest of the blob is
//!   expected to behave alike); if not, by default commit to a raw resource
//!   (the large already-compressed payload case) and tell the workers to
//!   stop compressing this blob. The alternative policy keeps the
//!   compressed layout with raw chunks instead; see `OverflowPolicy`.
//!
//! Both window outcomes are predictions from the first window. Wrong
//! predictions cost size, never validity: a raw commit loses whatever a
//! compressible tail would have saved; a compressed commit whose tail saves
//! nothing can end up larger than its content by up to the chunk table
//! (0.012 %), a layout wimlib and 7-Zip read fine although wimlib itself
//! would have stored that blob raw.
//!
//! Decisions depend only on the data, never on timing, so the bytes are the
//! same for any thread count.

use std::io::{self, Seek, Write};

use super::header::{res_flags, Reshdr};
use super::sink::Sink;

/// A chunk's buffers: `raw` holds the uncompressed bytes (its length is the
/// chunk's length), `comp` receives the compressed form. They travel as a
/// pair between reader, workers and writer, which bounds memory.
#[derive(Debug)]
pub struct Buf {
    /// Uncompressed bytes of the chunk.
    pub raw: Vec<u8>,
    /// Compressor output area (chunk-size long).
    pub comp: Vec<u8>,
    /// SHA-1 of `raw`, when chunk digests are kept (a cache is in use).
    pub digest: Option<[u8; 20]>,
    /// Decided already: the chunk's stored form was taken from the previous
    /// version of the file (`comp` holds it), not computed now.
    pub preset: Option<Stored>,
}

impl Buf {
    /// Buffers for chunks of up to `unit` bytes.
    pub fn new(unit: usize) -> Buf {
        Buf {
            raw: Vec::with_capacity(unit),
            comp: vec![0u8; unit],
            digest: None,
            preset: None,
        }
    }

    /// Forgets what the previous chunk in this buffer carried.
    pub fn reset(&mut self) {
        self.digest = None;
        self.preset = None;
    }
}

/// What a worker made of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Keep the raw bytes; `probed` when the probe skipped compression.
    Raw {
        /// Skipped by the incompressibility probe (not tried).
        probed: bool,
    },
    /// `comp[..n]` holds the compressed chunk, `n < raw.len()`.
    Compressed(usize),
}

/// What to do when a blob's window fills while it is still undecided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Store the whole blob raw (wimlib's format choice for blobs that do not
    /// shrink) and stop compressing it. Default.
    #[default]
    RawBlob,
    /// Keep the compressed layout, raw chunks inside (every chunk is still
    /// tried). Valid for wimlib and 7-Zip, but a resource that saves nothing
    /// ends up larger than its content by the chunk table.
    RawChunks,
}

/// Counts reported in the `WimReport`. All of them depend on the data only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Chunks stored compressed.
    pub chunks_compressed: u64,
    /// Chunks stored raw, inside compressed or raw resources.
    pub chunks_raw: u64,
    /// Raw chunks inside compressed resources.
    pub chunks_raw_in_compressed: u64,
    /// Chunks the probe declared incompressible (not tried), among chunks
    /// decided while their blob was not yet committed raw.
    pub chunks_probe_skipped: u64,
    /// Data resources written compressed.
    pub blobs_compressed: u64,
    /// Data resources written raw.
    pub blobs_raw: u64,
    /// Of those, committed raw when the window filled.
    pub blobs_raw_early: u64,
    /// Chunks whose stored form came from the previous version of their
    /// file (same position, same raw SHA-1) instead of the compressor.
    pub chunks_reused: u64,
}

enum State {
    Undecided {
        held: Vec<(Buf, Stored)>,
        savings: u64,
    },
    Compressed {
        table_at: Option<u64>,
        sizes: Vec<u32>,
    },
    Raw,
}

/// Bytes per chunk-table entry for a resource of `size` bytes.
pub fn entry_bytes(size: u64) -> u64 {
    if size > u64::from(u32::MAX) {
        8
    } else {
        4
    }
}

/// The chunk table for stored chunk sizes `sizes` (all chunks).
pub fn chunk_table(sizes: &[u32], entry: u64) -> Vec<u8> {
    let n = sizes.len().saturating_sub(1);
    let mut out = Vec::with_capacity(n * entry as usize);
    let mut off = 0u64;
    for &s in &sizes[..n] {
        off += u64::from(s);
        if entry == 8 {
            out.extend_from_slice(&off.to_le_bytes());
        } else {
            out.extend_from_slice(&(off as u32).to_le_bytes());
        }
    }
    out
}

fn stored_bytes<'a>(buf: &'a Buf, stored: &Stored) -> &'a [u8] {
    match *stored {
        Stored::Compressed(n) => &buf.comp[..n],
        Stored::Raw { .. } => &buf.raw,
    }
}

/// Assembles one data resource from its chunks, arriving in order.
pub struct BlobAssembler {
    offset: u64,
    size: u64,
    n_chunks: u64,
    entry: u64,
    table_bytes: u64,
    received: u64,
    window: usize,
    policy: OverflowPolicy,
    state: State,
}

impl BlobAssembler {
    /// A resource of `size` bytes starting at `offset`, cut in chunks of
    /// `chunk` bytes. `compressed` is false for an uncompressed WIM.
    pub fn new(
        offset: u64,
        size: u64,
        chunk: u64,
        compressed: bool,
        window: usize,
        policy: OverflowPolicy,
    ) -> BlobAssembler {
        let n_chunks = size.div_ceil(chunk);
        let entry = entry_bytes(size);
        BlobAssembler {
            offset,
            size,
            n_chunks,
            entry,
            table_bytes: n_chunks.saturating_sub(1) * entry,
            received: 0,
            window: window.max(1),
            policy,
            state: if compressed {
                State::Undecided {
                    held: Vec::new(),
                    savings: 0,
                }
            } else {
                State::Raw
            },
        }
    }

    /// Takes the next chunk. Finished buffers are pushed to `free`. Returns
    /// true when this call committed the blob to raw storage early.
    pub fn push<W: Write + Seek>(
        &mut self,
        buf: Buf,
        stored: Stored,
        sink: &mut Sink<'_, W>,
        free: &mut Vec<Buf>,
        c: &mut Counters,
    ) -> io::Result<bool> {
        self.received += 1;
        match &mut self.state {
            State::Raw => {
                sink.write(&buf.raw)?;
                c.chunks_raw += 1;
                free.push(buf);
                Ok(false)
            }
            State::Compressed { sizes, .. } => {
                count_chunk(c, &stored);
                let bytes = stored_bytes(&buf, &stored);
                sizes.push(bytes.len() as u32);
                sink.write(bytes)?;
                free.push(buf);
                Ok(false)
            }
            State::Undecided { held, savings } => {
                if let Stored::Compressed(n) = stored {
                    *savings += (buf.raw.len() - n) as u64;
                }
                held.push((buf, stored));
                let complete = self.received == self.n_chunks;
                if complete {
                    return Ok(false); // `finish` applies the exact rule
                }
                if *savings > self.table_bytes {
                    // Certain: savings only grow, so the compressed form wins.
                    self.commit_compressed(sink, free, c)?;
                    Ok(false)
                } else if held.len() >= self.window {
                    // Judge by the window's own economics: do its chunks save
                    // more than their share of the chunk table? (Comparing
                    // with the whole table would send every blob larger than
                    // window × chunk / entry — 64 GiB at the defaults — to
                    // raw storage however well it compresses.)
                    let paying = *savings > self.entry * held.len() as u64;
                    if paying || self.policy == OverflowPolicy::RawChunks {
                        self.commit_compressed(sink, free, c)?;
                        Ok(false)
                    } else {
                        self.commit_raw(sink, free, c)?;
                        c.blobs_raw_early += 1;
                        Ok(true)
                    }
                } else {
                    Ok(false)
                }
            }
        }
    }

    fn take_held(&mut self) -> Vec<(Buf, Stored)> {
        match &mut self.state {
            State::Undecided { held, .. } => std::mem::take(held),
            _ => Vec::new(),
        }
    }

    fn commit_compressed<W: Write + Seek>(
        &mut self,
        sink: &mut Sink<'_, W>,
        free: &mut Vec<Buf>,
        c: &mut Counters,
    ) -> io::Result<()> {
        let held = self.take_held();
        let table_at = sink.reserve(self.table_bytes)?;
        let mut sizes = Vec::new();
        for (buf, stored) in held {
            count_chunk(c, &stored);
            let bytes = stored_bytes(&buf, &stored);
            sizes.push(bytes.len() as u32);
            sink.write(bytes)?;
            free.push(buf);
        }
        self.state = State::Compressed {
            table_at: Some(table_at),
            sizes,
        };
        Ok(())
    }

    fn commit_raw<W: Write + Seek>(
        &mut self,
        sink: &mut Sink<'_, W>,
        free: &mut Vec<Buf>,
        c: &mut Counters,
    ) -> io::Result<()> {
        let held = self.take_held();
        for (buf, stored) in held {
            if let Stored::Raw { probed: true } = stored {
                c.chunks_probe_skipped += 1;
            }
            c.chunks_raw += 1;
            sink.write(&buf.raw)?;
            free.push(buf);
        }
        self.state = State::Raw;
        Ok(())
    }

    /// Writes whatever is still held, patches the chunk table and returns
    /// the resource header. Fails if chunks are missing (a writer bug).
    pub fn finish<W: Write + Seek>(
        mut self,
        sink: &mut Sink<'_, W>,
        free: &mut Vec<Buf>,
        c: &mut Counters,
    ) -> io::Result<Reshdr> {
        if self.received != self.n_chunks {
            return Err(io::Error::other(format!(
                "resource at {} got {} of {} chunks",
                self.offset, self.received, self.n_chunks
            )));
        }
        if let State::Undecided { savings, .. } = self.state {
            if savings > self.table_bytes {
                // Whole blob in hand: write the table directly, no patch.
                let held = self.take_held();
                let sizes: Vec<u32> = held
                    .iter()
                    .map(|(b, s)| stored_bytes(b, s).len() as u32)
                    .collect();
                sink.write(&chunk_table(&sizes, self.entry))?;
                for (buf, stored) in held {
                    count_chunk(c, &stored);
                    sink.write(stored_bytes(&buf, &stored))?;
                    free.push(buf);
                }
                self.state = State::Compressed {
                    table_at: None,
                    sizes,
                };
            } else {
                self.commit_raw(sink, free, c)?;
            }
        }
        match self.state {
            State::Raw => {
                c.blobs_raw += 1;
                Ok(Reshdr::raw(self.offset, self.size, 0))
            }
            State::Compressed { table_at, sizes } => {
                if let Some(at) = table_at {
                    sink.patch(at, &chunk_table(&sizes, self.entry))?;
                }
                c.blobs_compressed += 1;
                let stored: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
                Ok(Reshdr {
                    size_in_wim: self.table_bytes + stored,
                    flags: res_flags::COMPRESSED,
                    offset: self.offset,
                    uncompressed_size: self.size,
                })
            }
            State::Undecided { .. } => Err(io::Error::other("resource left undecided")),
        }
    }
}

fn count_chunk(c: &mut Counters, stored: &Stored) {
    match stored {
        Stored::Compressed(_) => c.chunks_compressed += 1,
        Stored::Raw { probed } => {
            c.chunks_raw += 1;
            c.chunks_raw_in_compressed += 1;
            if *probed {
                c.chunks_probe_skipped += 1;
            }
        }
    }
}

/// Lays out a resource that is entirely in memory (the metadata resource)
/// from its chunks' compressed forms (`None` = did not shrink). Returns the
/// bytes to write at `offset` and the reshdr (flags `extra_flags` added).
pub fn assemble_in_memory(
    data: &[u8],
    chunk: usize,
    compressed: &[Option<Vec<u8>>],
    offset: u64,
    extra_flags: u8,
) -> (Vec<u8>, Reshdr) {
    let size = data.len() as u64;
    let entry = entry_bytes(size);
    let table_bytes = (compressed.len().saturating_sub(1)) as u64 * entry;
    let mut sizes = Vec::with_capacity(compressed.len());
    let mut savings = 0u64;
    for (raw, c) in data.chunks(chunk.max(1)).zip(compressed) {
        let stored = c.as_ref().map_or(raw.len(), Vec::len);
        savings += (raw.len() - stored) as u64;
        sizes.push(stored as u32);
    }
    if compressed.is_empty() || savings <= table_bytes {
        return (data.to_vec(), Reshdr::raw(offset, size, extra_flags));
    }
    let mut out = chunk_table(&sizes, entry);
    for (raw, c) in data.chunks(chunk).zip(compressed) {
        out.extend_from_slice(c.as_deref().unwrap_or(raw));
    }
    let reshdr = Reshdr {
        size_in_wim: out.len() as u64,
        flags: extra_flags | res_flags::COMPRESSED,
        offset,
        uncompressed_size: size,
    };
    (out, reshdr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn chunk(raw: &[u8], compressed: Option<&[u8]>) -> (Buf, Stored) {
        let mut b = Buf::new(raw.len().max(8));
        b.raw.extend_from_slice(raw);
        let s = match compressed {
            Some(c) => {
                b.comp[..c.len()].copy_from_slice(c);
                Stored::Compressed(c.len())
            }
            None => Stored::Raw { probed: false },
        };
        (b, s)
    }

    fn run(
        chunks: Vec<(Buf, Stored)>,
        size: u64,
        window: usize,
        policy: OverflowPolicy,
    ) -> (Vec<u8>, Reshdr, Counters) {
        run_with(chunks, size, 4, window, policy)
    }

    fn run_with(
        chunks: Vec<(Buf, Stored)>,
        size: u64,
        chunk_size: u64,
        window: usize,
        policy: OverflowPolicy,
    ) -> (Vec<u8>, Reshdr, Counters) {
        let mut out = Cursor::new(Vec::new());
        let mut c = Counters::default();
        let r = {
            let mut sink = Sink::new(&mut out).unwrap();
            let mut a = BlobAssembler::new(0, size, chunk_size, true, window, policy);
            let mut free = Vec::new();
            for (b, s) in chunks {
                a.push(b, s, &mut sink, &mut free, &mut c).unwrap();
            }
            let r = a.finish(&mut sink, &mut free, &mut c).unwrap();
            sink.flush().unwrap();
            r
        };
        (out.into_inner(), r, c)
    }

    #[test]
    fn compressed_within_window_has_direct_table() {
        // Saves 15 + 0 + 4 = 19 bytes against an 8-byte table.
        let (bytes, r, c) = run_with(
            vec![
                chunk(&[b'a'; 16], Some(b"a")),
                chunk(&[b'b'; 16], None),
                chunk(b"ccccc", Some(b"c")),
            ],
            37,
            16,
            8,
            OverflowPolicy::RawBlob,
        );
        // table: offsets 1, 17; then "a", 16 × "b", "c".
        let mut expected = b"\x01\0\0\0\x11\0\0\0a".to_vec();
        expected.extend_from_slice(&[b'b'; 16]);
        expected.push(b'c');
        assert_eq!(bytes, expected);
        assert_eq!(r.size_in_wim, 26);
        assert_eq!(r.flags, res_flags::COMPRESSED);
        assert_eq!((c.chunks_compressed, c.chunks_raw_in_compressed), (2, 1));
    }

    #[test]
    fn savings_not_above_table_means_raw() {
        // Saves 3 bytes with an 8-byte table: raw wins.
        let (bytes, r, c) = run(
            vec![
                chunk(b"aaaa", None),
                chunk(b"bbbb", None),
                chunk(b"cccc", Some(b"c")),
            ],
            12,
            8,
            OverflowPolicy::RawBlob,
        );
        assert_eq!(bytes, b"aaaabbbbcccc");
        assert_eq!(r, Reshdr::raw(0, 12, 0));
        assert_eq!(c.blobs_raw, 1);
    }

    #[test]
    fn early_commit_compressed_patches_table() {
        // 16-byte chunks saving 15 bytes each; 10 chunks → 36-byte table,
        // passed at the third chunk: table reserved, then patched.
        let v: Vec<_> = (0..10).map(|_| chunk(&[b'z'; 16], Some(b"z"))).collect();
        let (bytes, r, c) = run_with(v, 160, 16, 100, OverflowPolicy::RawBlob);
        assert_eq!(r.flags, res_flags::COMPRESSED);
        assert_eq!(r.size_in_wim, 36 + 10);
        assert_eq!(&bytes[..8], &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&bytes[32..36], &9u32.to_le_bytes());
        assert_eq!(&bytes[36..], b"zzzzzzzzzz");
        assert_eq!(c.chunks_compressed, 10);
    }

    #[test]
    fn raw_chunks_policy_keeps_compressed_layout() {
        let v: Vec<_> = (0..6).map(|_| chunk(b"qqqq", None)).collect();
        let (bytes, r, c) = run(v, 24, 2, OverflowPolicy::RawChunks);
        assert_eq!(r.flags, res_flags::COMPRESSED);
        assert_eq!(r.size_in_wim, 20 + 24);
        assert_eq!(bytes.len(), 44);
        assert_eq!(c.chunks_raw_in_compressed, 6);
    }

    #[test]
    fn huge_compressible_blob_is_not_sent_raw_by_its_table_size() {
        // 40 chunks, 156-byte table, window of 2 chunks saving 30 bytes:
        // more than their 8-byte share of the table, so compressed.
        let v: Vec<_> = (0..40).map(|_| chunk(&[b'z'; 16], Some(b"z"))).collect();
        let (_, r, c) = run_with(v, 640, 16, 2, OverflowPolicy::RawBlob);
        assert_eq!(r.flags, res_flags::COMPRESSED);
        assert_eq!(c.blobs_raw_early, 0);
    }

    #[test]
    fn window_overflow_commits_raw() {
        let v: Vec<_> = (0..6).map(|_| chunk(b"qqqq", None)).collect();
        let (bytes, r, c) = run(v, 24, 2, OverflowPolicy::RawBlob);
        assert_eq!(bytes.len(), 24);
        assert_eq!(r, Reshdr::raw(0, 24, 0));
        assert_eq!((c.blobs_raw_early, c.chunks_raw), (1, 6));
    }

    #[test]
    fn in_memory_assembly() {
        let data = b"0123456789abcdefghij";
        let (b, r) = assemble_in_memory(
            data,
            8,
            &[Some(b"x".to_vec()), None, Some(b"y".to_vec())],
            9,
            2,
        );
        assert_eq!(b, b"\x01\0\0\0\x09\0\0\0x89abcdefy");
        assert_eq!(
            (r.flags, r.size_in_wim, r.offset, r.uncompressed_size),
            (6, 18, 9, 20)
        );
        // Saving 3 + 1 bytes does not pay for the 8-byte table: raw.
        let (b, r) = assemble_in_memory(
            data,
            8,
            &[Some(b"x".repeat(5)), None, Some(b"yyy".to_vec())],
            9,
            2,
        );
        assert_eq!((b.as_slice(), r.flags), (&data[..], 2));
        let (b, r) = assemble_in_memory(data, 8, &[None, None, None], 9, 2);
        assert_eq!((b.as_slice(), r.flags), (&data[..], 2));
    }

    #[test]
    fn eight_byte_entries_above_4gib() {
        assert_eq!(entry_bytes(u64::from(u32::MAX)), 4);
        assert_eq!(entry_bytes(u64::from(u32::MAX) + 1), 8);
        assert_eq!(
            chunk_table(&[3, 4, 5], 8),
            [3u64.to_le_bytes(), 7u64.to_le_bytes()].concat()
        );
    }
}
