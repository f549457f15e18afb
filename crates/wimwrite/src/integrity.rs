//! The optional integrity table: SHA-1 of every 10 MiB slice of the file
//! from the end of the header to the end of the blob table (reference §7).
//!
//! The output is only `Write + Seek`, so the slices are hashed on the way
//! out instead of read back. The catch is the chunk table of a large
//! compressed resource: it is reserved as zeros and patched once the last
//! chunk is known. A slice overlapping such a hole is kept in memory until
//! the patch arrives; every other slice is hashed as soon as it is complete
//! and dropped. Since holes only exist for the resource being written, at
//! most a couple of slices are held at a time.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

/// wimlib's fixed slice size.
pub const SLICE: u64 = 10 * 1024 * 1024;

/// Hashes the integrity range as it is written.
#[derive(Debug)]
pub struct IntegrityTracker {
    base: u64,
    slice: u64,
    cur_index: u64,
    cur: Vec<u8>,
    held: BTreeMap<u64, Vec<u8>>,
    holes: Vec<(u64, u64)>,
    done: Vec<Option<[u8; 20]>>,
}

impl IntegrityTracker {
    /// Starts tracking at absolute offset `base` (the header size).
    pub fn new(base: u64) -> IntegrityTracker {
        IntegrityTracker::with_slice(base, SLICE)
    }

    /// Same with another slice size (tests).
    pub fn with_slice(base: u64, slice: u64) -> IntegrityTracker {
        IntegrityTracker {
            base,
            slice,
            cur_index: 0,
            cur: Vec::new(),
            held: BTreeMap::new(),
            holes: Vec::new(),
            done: Vec::new(),
        }
    }

    fn slice_range(&self, idx: u64) -> (u64, u64) {
        let start = self.base + idx * self.slice;
        (start, start + self.slice)
    }

    fn has_hole(&self, idx: u64) -> bool {
        let (s, e) = self.slice_range(idx);
        self.holes.iter().any(|&(hs, he)| hs < e && s < he)
    }

    fn record(&mut self, idx: u64, data: &[u8]) {
        let i = idx as usize;
        if self.done.len() <= i {
            self.done.resize(i + 1, None);
        }
        self.done[i] = Some(Sha1::digest(data).into());
    }

    /// Bytes appended at the current end of the file.
    pub fn append(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.cur.capacity() == 0 {
                self.cur.reserve_exact(self.slice as usize);
            }
            let room = self.slice as usize - self.cur.len();
            let take = room.min(data.len());
            self.cur.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.cur.len() as u64 == self.slice {
                let idx = self.cur_index;
                let full = std::mem::take(&mut self.cur);
                if self.has_hole(idx) {
                    self.held.insert(idx, full);
                } else {
                    self.record(idx, &full);
                    // Reuse the allocation for the next slice.
                    self.cur = full;
                    self.cur.clear();
                }
                self.cur_index += 1;
            }
        }
    }

    /// Declares `[start, start+len)` as placeholder bytes that will be
    /// patched later. Call before appending the placeholder.
    pub fn hole(&mut self, start: u64, len: u64) {
        if len > 0 {
            self.holes.push((start, start + len));
        }
    }

    /// The final bytes of a hole declared earlier (same start and length).
    pub fn fill(&mut self, start: u64, data: &[u8]) {
        let end = start + data.len() as u64;
        self.holes.retain(|&h| h != (start, end));
        if data.is_empty() {
            return;
        }
        let first = (start - self.base) / self.slice;
        let last = (end - 1 - self.base) / self.slice;
        for idx in first..=last {
            let (s, e) = self.slice_range(idx);
            let from = start.max(s);
            let to = end.min(e);
            let src = &data[(from - start) as usize..(to - start) as usize];
            let at = (from - s) as usize;
            let buf = if idx == self.cur_index {
                Some(&mut self.cur)
            } else {
                self.held.get_mut(&idx)
            };
            if let Some(buf) = buf {
                buf[at..at + src.len()].copy_from_slice(src);
            }
            if !self.has_hole(idx) {
                if let Some(buf) = self.held.remove(&idx) {
                    self.record(idx, &buf);
                }
            }
        }
    }

    /// Hashes the last partial slice and returns all hashes in order, or
    /// None if a hole was never filled (a writer bug).
    pub fn finish(mut self) -> Option<Vec<[u8; 20]>> {
        if !self.holes.is_empty() || !self.held.is_empty() {
            return None;
        }
        if !self.cur.is_empty() {
            let idx = self.cur_index;
            let last = std::mem::take(&mut self.cur);
            self.record(idx, &last);
        }
        self.done.into_iter().collect()
    }
}

/// The on-disk table: size, entry count, slice size, then the hashes.
pub fn encode_table(hashes: &[[u8; 20]]) -> Vec<u8> {
    let size = 12 + 20 * hashes.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&(hashes.len() as u32).to_le_bytes());
    out.extend_from_slice(&(SLICE as u32).to_le_bytes());
    for h in hashes {
        out.extend_from_slice(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(data: &[u8], slice: usize) -> Vec<[u8; 20]> {
        data.chunks(slice).map(|c| Sha1::digest(c).into()).collect()
    }

    #[test]
    fn streaming_equals_hashing_the_final_bytes() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut t = IntegrityTracker::with_slice(208, 64);
        for piece in data.chunks(37) {
            t.append(piece);
        }
        assert_eq!(t.finish().unwrap(), expected(&data, 64));
    }

    #[test]
    fn holes_spanning_slices_are_hashed_after_the_patch() {
        let final_bytes: Vec<u8> = (0..700u32).map(|i| (i % 13) as u8 + 1).collect();
        let mut t = IntegrityTracker::with_slice(208, 64);
        t.append(&final_bytes[..50]);
        // A 150-byte placeholder at 50..200 crossing three slices.
        t.hole(208 + 50, 150);
        t.append(&[0u8; 150]);
        t.append(&final_bytes[200..600]);
        t.fill(208 + 50, &final_bytes[50..200]);
        t.append(&final_bytes[600..]);
        assert_eq!(t.finish().unwrap(), expected(&final_bytes, 64));
    }

    #[test]
    fn unfilled_hole_is_reported() {
        let mut t = IntegrityTracker::with_slice(0, 64);
        t.hole(10, 4);
        t.append(&[0; 100]);
        assert!(t.finish().is_none());
    }

    #[test]
    fn table_layout() {
        let b = encode_table(&[[1; 20], [2; 20]]);
        assert_eq!(&b[..12], &[52, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0xA0, 0]);
        assert_eq!(b.len(), 52);
    }
}
