//! Safe wrapper over wimlib's raw chunk compressor API.
//!
//! wimlib exposes its XPRESS, LZX and LZMS compressors through four C calls
//! (`wimlib_create_compressor`, `wimlib_compress`, `wimlib_free_compressor`
//! and the matching decompressor trio). Our own WIM writer
//! (`mediabuild_wimwrite`) compresses chunks with them, so this module is the
//! only place in that path that touches FFI: every `unsafe` block of the
//! WIM writer lives here, each with its `// SAFETY:` argument.
//!
//! A compressor keeps internal scratch state and is not thread-safe in C, so
//! the wrapper takes `&mut self` to compress; it can be moved to another
//! thread (`Send`) but not shared (`!Sync`). The writer keeps one per worker
//! thread.

use std::ffi::c_void;
use std::fmt;
use std::ptr::{self, NonNull};

use wimlib::sys;

/// Chunk compression formats of the WIM format that wimlib can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressorKind {
    /// XPRESS (LZ77 + Huffman), chunk sizes 4 KiB ..= 64 KiB.
    Xpress,
    /// LZX (WIM flavour), chunk sizes 32 KiB ..= 2 MiB.
    Lzx,
    /// LZMS, chunk sizes 32 KiB ..= 1 GiB.
    Lzms,
}

impl CompressorKind {
    fn ctype(self) -> sys::wimlib_compression_type {
        match self {
            CompressorKind::Xpress => sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_XPRESS,
            CompressorKind::Lzx => sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_LZX,
            CompressorKind::Lzms => sys::wimlib_compression_type_WIMLIB_COMPRESSION_TYPE_LZMS,
        }
    }
}

/// wimlib refused to create a (de)compressor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressorError {
    /// Format asked for.
    pub kind: CompressorKind,
    /// Maximum block (= WIM chunk) size asked for.
    pub max_block_size: usize,
    /// wimlib's error code (`WIMLIB_ERR_*`).
    pub code: i32,
}

impl fmt::Display for CompressorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wimlib could not create a {:?} (de)compressor for {}-byte blocks (wimlib error {})",
            self.kind, self.max_block_size, self.code
        )
    }
}

impl std::error::Error for CompressorError {}

/// One wimlib compressor: compresses independent blocks of at most
/// `max_block_size` bytes (the WIM chunk size).
pub struct Compressor {
    raw: NonNull<sys::wimlib_compressor>,
    kind: CompressorKind,
    max_block_size: usize,
}

// SAFETY: a wimlib compressor is a private heap object with no thread
// affinity (wimlib's own writer creates compressors on its main thread and
// uses them on worker threads). It is not safe to use from two threads at
// once, which `&mut self` on `compress` already rules out; hence `Send` but
// not `Sync`.
unsafe impl Send for Compressor {}

impl Compressor {
    /// Creates a compressor. `level` is wimlib's compression level (0 = the
    /// library default, 50 unless changed; higher = smaller and slower). The
    /// level never changes the format, only the effort.
    pub fn new(
        kind: CompressorKind,
        max_block_size: usize,
        level: u32,
    ) -> Result<Compressor, CompressorError> {
        let mut out: *mut sys::wimlib_compressor = ptr::null_mut();
        // SAFETY: `out` is a valid location for the returned pointer; the
        // other arguments are plain integers that wimlib validates itself
        // (an invalid type or size yields an error code, not UB). The call
        // initialises the library on first use, under wimlib's own mutex.
        let code =
            unsafe { sys::wimlib_create_compressor(kind.ctype(), max_block_size, level, &mut out) };
        let err = CompressorError {
            kind,
            max_block_size,
            code,
        };
        if code != 0 {
            return Err(err);
        }
        let raw = NonNull::new(out).ok_or(err)?;
        Ok(Compressor {
            raw,
            kind,
            max_block_size,
        })
    }

    /// The format this compressor produces.
    pub fn kind(&self) -> CompressorKind {
        self.kind
    }

    /// Largest input one [`compress`](Self::compress) call accepts.
    pub fn max_block_size(&self) -> usize {
        self.max_block_size
    }

    /// Compresses `input` as one self-contained block into `output`.
    ///
    /// Returns the compressed length, or `None` when the result would not be
    /// strictly smaller than `input` (the WIM format then stores the chunk
    /// raw, recognised by its stored size equal to its uncompressed size),
    /// when it would not fit in `output`, or when `input` is empty or larger
    /// than [`max_block_size`](Self::max_block_size).
    pub fn compress(&mut self, input: &[u8], output: &mut [u8]) -> Option<usize> {
        if input.is_empty() || input.len() > self.max_block_size {
            return None;
        }
        // Asking for at most len-1 bytes makes wimlib itself give up as soon
        // as the output cannot shrink, which is cheaper than compressing
        // fully and comparing afterwards.
        let avail = output.len().min(input.len() - 1);
        if avail == 0 {
            return None;
        }
        // SAFETY: `input` is valid for reads of `input.len()` bytes and
        // `output` for writes of `avail <= output.len()` bytes; wimlib never
        // writes past `compressed_size_avail`. The two slices cannot overlap
        // (one is borrowed shared, the other exclusively). `self.raw` is a
        // live compressor created for `max_block_size >= input.len()`, and
        // `&mut self` guarantees no concurrent use.
        let n = unsafe {
            sys::wimlib_compress(
                input.as_ptr().cast::<c_void>(),
                input.len(),
                output.as_mut_ptr().cast::<c_void>(),
                avail,
                self.raw.as_ptr(),
            )
        };
        (n != 0 && n < input.len()).then_some(n)
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: `self.raw` came from `wimlib_create_compressor`, is freed
        // exactly once (here) and never used afterwards.
        unsafe { sys::wimlib_free_compressor(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("kind", &self.kind)
            .field("max_block_size", &self.max_block_size)
            .finish()
    }
}

/// One wimlib decompressor, mainly for tests and read-back checks. It must be
/// created with the same block size as the compressor (for WIMs: the chunk
/// size).
pub struct Decompressor {
    raw: NonNull<sys::wimlib_decompressor>,
    max_block_size: usize,
}

// SAFETY: same reasoning as for `Compressor`: private heap state, no thread
// affinity, exclusive use enforced by `&mut self`.
unsafe impl Send for Decompressor {}

impl Decompressor {
    /// Creates a decompressor for blocks of at most `max_block_size` bytes.
    pub fn new(
        kind: CompressorKind,
        max_block_size: usize,
    ) -> Result<Decompressor, CompressorError> {
        let mut out: *mut sys::wimlib_decompressor = ptr::null_mut();
        // SAFETY: `out` is a valid location for the returned pointer; wimlib
        // validates the type and size and reports errors by code.
        let code =
            unsafe { sys::wimlib_create_decompressor(kind.ctype(), max_block_size, &mut out) };
        let err = CompressorError {
            kind,
            max_block_size,
            code,
        };
        if code != 0 {
            return Err(err);
        }
        let raw = NonNull::new(out).ok_or(err)?;
        Ok(Decompressor {
            raw,
            max_block_size,
        })
    }

    /// Decompresses one block; `output.len()` must be the exact uncompressed
    /// size. Returns false when the data is invalid or the size is out of
    /// range.
    pub fn decompress(&mut self, input: &[u8], output: &mut [u8]) -> bool {
        if output.is_empty() || output.len() > self.max_block_size {
            return false;
        }
        // SAFETY: `input` is valid for reads of its length, `output` for
        // writes of its length (wimlib writes exactly `uncompressed_size`
        // bytes at most); they do not overlap; `self.raw` is live and used
        // exclusively through `&mut self`.
        let code = unsafe {
            sys::wimlib_decompress(
                input.as_ptr().cast::<c_void>(),
                input.len(),
                output.as_mut_ptr().cast::<c_void>(),
                output.len(),
                self.raw.as_ptr(),
            )
        };
        code == 0
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: created by `wimlib_create_decompressor`, freed once, never
        // used afterwards.
        unsafe { sys::wimlib_free_decompressor(self.raw.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        let words = ["alpha ", "beta ", "gamma ", "delta\n", "epsilon "];
        let mut out = Vec::with_capacity(n + 8);
        let mut i = 0usize;
        while out.len() < n {
            out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
            i += 1;
        }
        out.truncate(n);
        out
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn round_trip_every_kind() {
        for (kind, block) in [
            (CompressorKind::Xpress, 32768),
            (CompressorKind::Lzx, 32768),
            (CompressorKind::Lzms, 131072),
        ] {
            let mut c = Compressor::new(kind, block, 50).expect("create compressor");
            let mut d = Decompressor::new(kind, block).expect("create decompressor");
            let input = text(block);
            let mut packed = vec![0u8; block];
            let n = c.compress(&input, &mut packed).expect("text must shrink");
            assert!(n < input.len());
            let mut back = vec![0u8; block];
            assert!(d.decompress(&packed[..n], &mut back));
            assert_eq!(back, input, "{kind:?}");
        }
    }

    #[test]
    fn incompressible_and_degenerate_inputs_give_none() {
        let mut c = Compressor::new(CompressorKind::Lzx, 32768, 50).unwrap();
        let mut out = vec![0u8; 32768];
        assert_eq!(c.compress(&noise(32768), &mut out), None);
        assert_eq!(c.compress(&[], &mut out), None);
        assert_eq!(c.compress(&[7], &mut out), None);
        assert_eq!(c.compress(&text(40000), &mut vec![0u8; 40000]), None);
    }

    #[test]
    fn invalid_block_size_is_an_error() {
        assert!(Compressor::new(CompressorKind::Xpress, 1 << 20, 50).is_err());
        assert!(Decompressor::new(CompressorKind::Lzx, 0).is_err());
    }
}
