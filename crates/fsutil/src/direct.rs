//! Artefact files written around the page cache (`O_DIRECT`).
//!
//! A build writes gigabytes of artefacts it does not read again. Through the
//! page cache every byte is copied into a fresh page, accounted, written back
//! and waited for at the closing `fsync`: on the 2-core CI machine that costs
//! ≈ 2.4–2.7 s of system time per 900 MB (`dd bs=8M conv=fsync`), against
//! ≈ 0 when the device takes the bytes straight from our buffer
//! (`oflag=direct`), which also runs at the device's own speed.
//!
//! [`DirectFile`] gathers writes in block-aligned buffers and hands full
//! buffers to an I/O thread, so the caller keeps producing while the device
//! writes. Writes may go anywhere (the WIM writer patches chunk tables and its
//! header; the disk image leaves holes): a block only partly covered is
//! completed from the file — or with zeros beyond anything written so far —,
//! and the file is trimmed to its logical length at the end. Where the file
//! system refuses `O_DIRECT` (tmpfs, some network file systems), or with
//! `MEDIABUILD_DIRECT_IO=0`, the same code writes through the page cache and
//! asks for writeback as it goes.
//!
//! When every write starts at or after the end of the previous ones (the disk
//! image), a second thread in front of the I/O thread also computes the
//! SHA-256 of the whole file — holes as the zeros they read as — on the way out, so the artefact is not read
//! back for the manifest. [`sha256_direct`] reads a file back around the page
//! cache for the other case (the WIM, whose header is written last).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::sha256::{Sha256Stream, ZeroRuns};
use sha2::{Digest, Sha256};

/// Alignment of offsets, lengths and memory for `O_DIRECT` (a multiple of
/// every logical block size in use: 512 and 4096).
pub const BLOCK: usize = 4096;
/// Bytes handed to the device per request: on the CI machine's virtio disk
/// 16 MiB requests run at 1.2–1.4 GB/s where 8 MiB ones reach 0.75–1.1
/// (`dd oflag=direct` / `iflag=direct`).
const BUFFER: usize = 16 << 20;
/// Buffers in flight: one being filled, the others queued or being written.
const BUFFERS: usize = 3;
/// Forward gaps up to this long are written as zeros rather than skipped.
const GAP_FILL: u64 = 1 << 20;

/// Whether artefacts may bypass the page cache (`MEDIABUILD_DIRECT_IO=0`
/// turns it off, for comparisons).
fn direct_wanted() -> bool {
    std::env::var_os("MEDIABUILD_DIRECT_IO").is_none_or(|v| v != "0")
}

/// A heap buffer whose usable part starts on a [`BLOCK`] boundary.
struct Aligned {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let mem = vec![0u8; len + BLOCK];
        let start = mem.as_ptr().align_offset(BLOCK);
        Aligned { mem, start, len }
    }
    fn bytes(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + self.len]
    }
}

fn align_down(x: u64) -> u64 {
    x - x % BLOCK as u64
}

fn align_up(x: usize) -> usize {
    x.div_ceil(BLOCK) * BLOCK
}

/// Opens `path` with `O_DIRECT` when wanted and the file system allows it.
fn open(options: &mut OpenOptions, path: &Path) -> io::Result<(File, bool)> {
    if direct_wanted() {
        match options.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    options.open(path).map(|f| (f, false))
}

/// Turns `O_DIRECT` off on an open file (the file system took the open but
/// refuses the I/O).
#[allow(unsafe_code)]
fn clear_direct(file: &File) {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; it only changes its status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT);
        }
    }
}

/// Writes all of `data` at `offset`; retries once through the page cache if
/// the file system rejects direct I/O.
#[allow(unsafe_code)]
fn write_run(file: &File, direct: &mut bool, data: &[u8], offset: u64) -> io::Result<()> {
    match file.write_all_at(data, offset) {
        Err(e) if *direct && e.raw_os_error() == Some(libc::EINVAL) => {
            clear_direct(file);
            *direct = false;
            file.write_all_at(data, offset)?;
        }
        other => other?,
    }
    if !*direct {
        // SAFETY: a plain syscall on a descriptor we hold; an error only
        // means the hint is not taken (the final fsync still syncs).
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off_t,
                data.len() as libc::off_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    Ok(())
}

/// Feeds `data` (the file's bytes at `offset`) to a running file hash that
/// has seen `*hashed` bytes: a gap before it is a hole (zeros), bytes before
/// `*hashed` were seen already.
fn feed(
    h: &mut Sha256Stream,
    hashed: &mut u64,
    offset: u64,
    data: &[u8],
    memo: Option<&dyn ZeroRuns>,
) {
    feed_zeros(h, hashed, offset, memo);
    let skip = hashed.saturating_sub(offset) as usize;
    if skip < data.len() {
        h.update(&data[skip..]);
        *hashed = offset + data.len() as u64;
    }
}

fn feed_zeros(h: &mut Sha256Stream, hashed: &mut u64, to: u64, memo: Option<&dyn ZeroRuns>) {
    if *hashed < to {
        h.zeros(to - *hashed, memo);
        *hashed = to;
    }
}

enum Job {
    /// Write `buf[..io_len]` at `offset`; `buf[..logical]` are the file's
    /// bytes there (the rest pads the last block). `hash`: the writes so far
    /// all went forward.
    Write {
        buf: Aligned,
        offset: u64,
        logical: usize,
        io_len: usize,
        hash: bool,
    },
    /// Answer once everything queued before is written.
    Sync(SyncSender<()>),
}

/// What the I/O threads hand back at the end.
struct IoEnd {
    hash: Option<StreamedHash>,
}

/// A gap of zeros this long is not hashed when it is crossed: the bytes
/// after it are kept (up to [`DEFER_LIMIT`]) and hashed, zeros first, only
/// when the digest is asked for. The free space of a large disk image is
/// such a gap, and a caller that does not need the digest never pays for it.
const DEFER_GAP: u64 = 64 << 20;
const DEFER_LIMIT: usize = 16 << 20;

/// The write stage: writes each buffer where it belongs and hands it back.
fn write_loop(
    file: Arc<File>,
    jobs: Receiver<Job>,
    back: SyncSender<Aligned>,
    mut direct: bool,
    failed: Arc<AtomicBool>,
) -> io::Result<()> {
    let mut error = None;
    for job in jobs {
        match job {
            Job::Write {
                buf,
                offset,
                io_len,
                ..
            } => {
                if error.is_none() {
                    if let Err(e) = write_run(&file, &mut direct, &buf.bytes()[..io_len], offset) {
                        error = Some(e);
                        failed.store(true, Ordering::Release);
                    }
                }
                // Never blocks: the channel holds as many buffers as exist.
                let _ = back.send(buf);
            }
            Job::Sync(reply) => {
                let _ = reply.send(());
            }
        }
    }
    error.map_or(Ok(()), Err)
}

/// The hash stage, in front of the write stage on its own thread (hashing
/// and writing a buffer take about as long; in turn they would add up):
/// hashes each buffer, passes every job on in order, and at the end
/// collects the write stage's result.
fn hash_loop(
    jobs: Receiver<Job>,
    next: SyncSender<Job>,
    writer: JoinHandle<io::Result<()>>,
) -> io::Result<IoEnd> {
    let mut state = Some(StreamedHash {
        hasher: Sha256Stream::new(),
        hashed: 0,
        deferred: Vec::new(),
        len: 0,
    });
    for job in jobs {
        if let Job::Write {
            buf,
            offset,
            logical,
            hash,
            ..
        } = &job
        {
            if !*hash {
                state = None;
            }
            if let Some(h) = &mut state {
                h.add(*offset, &buf.bytes()[..*logical]);
            }
        }
        if next.send(job).is_err() {
            break;
        }
    }
    drop(next);
    join_stage(writer)?;
    Ok(IoEnd { hash: state })
}

fn join_stage<T>(stage: JoinHandle<io::Result<T>>) -> io::Result<T> {
    stage
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a direct-io thread panicked")))
}

/// The SHA-256 of a file written forward, hashed on the way out but for the
/// zeros of long gaps (and what follows them) and of the tail.
pub struct StreamedHash {
    hasher: Sha256Stream,
    hashed: u64,
    /// Bytes written after a long gap, not hashed yet: `(offset, bytes)`.
    deferred: Vec<(u64, Vec<u8>)>,
    len: u64,
}

impl std::fmt::Debug for StreamedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedHash")
            .field("hashed", &self.hashed)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl StreamedHash {
    /// Takes the file's `data` at `offset` (never before earlier data).
    fn add(&mut self, offset: u64, data: &[u8]) {
        let kept: usize = self.deferred.iter().map(|(_, d)| d.len()).sum();
        if !self.deferred.is_empty() || offset > self.hashed + DEFER_GAP {
            if kept + data.len() <= DEFER_LIMIT {
                self.deferred.push((offset, data.to_vec()));
                return;
            }
            self.catch_up(None);
        }
        feed(&mut self.hasher, &mut self.hashed, offset, data, None);
    }

    /// Hashes the deferred bytes (and the zeros before them).
    fn catch_up(&mut self, memo: Option<&dyn ZeroRuns>) {
        for (offset, data) in std::mem::take(&mut self.deferred) {
            feed(&mut self.hasher, &mut self.hashed, offset, &data, memo);
        }
    }

    /// The SHA-256 of the whole file.
    pub fn digest(self) -> [u8; 32] {
        self.digest_with(None)
    }

    /// [`digest`](Self::digest), the long runs of zeros (free space, the
    /// tail) taken from `memo` when it knows them (see `fsutil::sha256`).
    pub fn digest_with(mut self, memo: Option<&dyn ZeroRuns>) -> [u8; 32] {
        self.catch_up(memo);
        feed_zeros(&mut self.hasher, &mut self.hashed, self.len, memo);
        self.hasher.finalize()
    }
}

/// The threads behind a [`DirectFile`]: the front end talks to the first.
enum Stages {
    /// Hash stage, which owns the write stage.
    Hashing(JoinHandle<io::Result<IoEnd>>),
    Writing(JoinHandle<io::Result<()>>),
    /// No threads (`--jobs 1`): each job is done when queued.
    Inline(Inline),
}

/// The stages run on the caller's thread.
struct Inline {
    direct: bool,
    /// The running hash while every write went forward (with `hash`).
    state: Option<StreamedHash>,
    error: Option<io::Error>,
}

/// An output file written around the page cache; see the module docs.
/// `Write + Seek` like a `File`; call [`finish`](Self::finish) to complete it
/// (dropping it instead abandons the file in whatever state it is).
pub struct DirectFile {
    file: Arc<File>,
    jobs: Option<SyncSender<Job>>,
    back: Receiver<Aligned>,
    stages: Option<Stages>,
    failed: Arc<AtomicBool>,
    free: Vec<Aligned>,
    allocated: usize,
    /// The buffer being filled: file bytes `[cur_off, cur_off + cur_len)`.
    cur: Option<Aligned>,
    cur_off: u64,
    cur_len: usize,
    pos: u64,
    /// Logical length: the initial length or the furthest write.
    len: u64,
    /// End of the furthest write.
    max_end: u64,
    /// Blocks below this may hold written data; the file reads as zeros
    /// from here on (it was created empty, then sized).
    written: u64,
    /// Every write so far started at or after `max_end`.
    forward: bool,
    hash: bool,
}

impl DirectFile {
    /// Creates (or truncates) `path` with `len` bytes reading as zeros (a
    /// sparse file). With `hash`, [`finish`](Self::finish) returns the
    /// file's SHA-256 when every write went forward.
    pub fn create(path: &Path, len: u64, hash: bool) -> io::Result<DirectFile> {
        DirectFile::create_with(path, len, hash, true)
    }

    /// [`create`](Self::create); `threads: false` writes (and hashes) on
    /// the caller's thread, for a build that must use one thread.
    pub fn create_with(path: &Path, len: u64, hash: bool, threads: bool) -> io::Result<DirectFile> {
        let (file, direct) = open(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true),
            path,
        )?;
        if len > 0 {
            file.set_len(len)?;
        }
        let file = Arc::new(file);
        let (jobs, jobs_rx) = mpsc::sync_channel(BUFFERS);
        let (back_tx, back) = mpsc::sync_channel(BUFFERS);
        let failed = Arc::new(AtomicBool::new(false));
        let (file_w, failed_w) = (Arc::clone(&file), Arc::clone(&failed));
        let stages = if !threads {
            drop((jobs_rx, back_tx, file_w, failed_w));
            Stages::Inline(Inline {
                direct,
                state: hash.then(|| StreamedHash {
                    hasher: Sha256Stream::new(),
                    hashed: 0,
                    deferred: Vec::new(),
                    len: 0,
                }),
                error: None,
            })
        } else if hash {
            let (to_writer, writer_rx) = mpsc::sync_channel(BUFFERS);
            let writer = std::thread::Builder::new()
                .name("direct-io".into())
                .spawn(move || write_loop(file_w, writer_rx, back_tx, direct, failed_w))?;
            Stages::Hashing(
                std::thread::Builder::new()
                    .name("direct-hash".into())
                    .spawn(move || hash_loop(jobs_rx, to_writer, writer))?,
            )
        } else {
            Stages::Writing(
                std::thread::Builder::new()
                    .name("direct-io".into())
                    .spawn(move || write_loop(file_w, jobs_rx, back_tx, direct, failed_w))?,
            )
        };
        Ok(DirectFile {
            file,
            jobs: Some(jobs),
            back,
            stages: Some(stages),
            failed,
            free: Vec::new(),
            allocated: 0,
            cur: None,
            cur_off: 0,
            cur_len: 0,
            pos: 0,
            len,
            max_end: 0,
            written: 0,
            forward: true,
            hash,
        })
    }

    /// Writes what is buffered, waits for the device (`fsync`) and trims the
    /// padding of the last block. Returns the file's hash so far if it was
    /// asked for and every write went forward: [`StreamedHash::digest`] adds
    /// the zeros of the tail after the last write (hashing a large sparse
    /// tail costs time, so only a caller that needs the digest pays it).
    pub fn finish(mut self) -> io::Result<Option<StreamedHash>> {
        self.submit()?;
        let end = self.join()?;
        let physical = self.file.metadata()?.len();
        if physical != self.len {
            self.file.set_len(self.len)?;
        }
        self.file.sync_all()?;
        Ok(match end.hash {
            Some(h) if self.hash && self.forward => Some(StreamedHash { len: self.len, ..h }),
            _ => None,
        })
    }

    /// Closes the queue and collects the I/O thread's result.
    fn join(&mut self) -> io::Result<IoEnd> {
        self.jobs = None;
        match self.stages.take() {
            Some(Stages::Hashing(t)) => join_stage(t),
            Some(Stages::Writing(t)) => join_stage(t).map(|()| IoEnd { hash: None }),
            Some(Stages::Inline(i)) => match i.error {
                Some(e) => Err(e),
                None => Ok(IoEnd { hash: i.state }),
            },
            None => Err(io::Error::other("the direct-io threads already stopped")),
        }
    }

    /// The I/O thread's error, if it failed.
    fn check(&mut self) -> io::Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("write failed")));
        }
        Ok(())
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        if let Some(Stages::Inline(i)) = self.stages.as_mut() {
            match job {
                Job::Write {
                    buf,
                    offset,
                    logical,
                    io_len,
                    hash,
                } => {
                    if !hash {
                        i.state = None;
                    }
                    if let Some(h) = &mut i.state {
                        h.add(offset, &buf.bytes()[..logical]);
                    }
                    let r = write_run(&self.file, &mut i.direct, &buf.bytes()[..io_len], offset);
                    self.free.push(buf);
                    if let Err(e) = r {
                        self.failed.store(true, Ordering::Release);
                        i.error = Some(io::Error::new(e.kind(), e.to_string()));
                        return Err(e);
                    }
                }
                Job::Sync(reply) => {
                    let _ = reply.send(());
                }
            }
            return Ok(());
        }
        let sent = self.jobs.as_ref().map(|j| j.send(job).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        self.check()?;
        Err(io::Error::other("the direct-io thread stopped"))
    }

    fn take_buffer(&mut self) -> io::Result<Aligned> {
        while let Ok(b) = self.back.try_recv() {
            self.free.push(b);
        }
        if let Some(b) = self.free.pop() {
            return Ok(b);
        }
        if self.allocated < BUFFERS {
            self.allocated += 1;
            return Ok(Aligned::new(BUFFER));
        }
        match self.back.recv() {
            Ok(b) => Ok(b),
            Err(_) => {
                self.check()?;
                Err(io::Error::other("the direct-io thread stopped"))
            }
        }
    }

    /// Reads the file's block at `offset` (after everything queued is
    /// written); bytes past the end read as zeros.
    fn read_block(&mut self, offset: u64) -> io::Result<Aligned> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Sync(tx))?;
        if rx.recv().is_err() {
            self.check()?;
        }
        let mut block = Aligned::new(BLOCK);
        let mut got = 0;
        while got < BLOCK {
            let read = self
                .file
                .read_at(&mut block.bytes_mut()[got..], offset + got as u64);
            match read {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && got == 0 => {
                    clear_direct(&self.file);
                }
                Err(e) => return Err(e),
            }
        }
        block.bytes_mut()[got..].fill(0);
        Ok(block)
    }

    /// Makes the current buffer cover `pos`, starting a new one if needed.
    /// A short forward gap within the buffer (the slack after a file in its
    /// last cluster) is filled with the zeros it reads as, when nothing was
    /// written there: else every file of a volume would end its buffer and
    /// cost a write of its own (14,000 small writes for a driver store).
    fn ensure_buffer(&mut self) -> io::Result<()> {
        if let Some(cur) = self.cur.as_mut() {
            let end = self.cur_off + self.cur_len as u64;
            if self.cur_off <= self.pos
                && self.pos <= end
                && self.pos < self.cur_off + BUFFER as u64
            {
                return Ok(());
            }
            if self.pos > end
                && self.pos < self.cur_off + BUFFER as u64
                && self.pos - end <= GAP_FILL
                && end >= self.written
            {
                let (from, to) = (self.cur_len, (self.pos - self.cur_off) as usize);
                cur.bytes_mut()[from..to].fill(0);
                self.cur_len = to;
                return Ok(());
            }
            self.submit()?;
        }
        let offset = align_down(self.pos);
        let head = (self.pos - offset) as usize;
        let mut buf = self.take_buffer()?;
        if head > 0 {
            if offset < self.written {
                let old = self.read_block(offset)?;
                buf.bytes_mut()[..head].copy_from_slice(&old.bytes()[..head]);
            } else {
                buf.bytes_mut()[..head].fill(0);
            }
        }
        self.cur = Some(buf);
        self.cur_off = offset;
        self.cur_len = head;
        Ok(())
    }

    /// Queues the current buffer, its last block completed from the file.
    fn submit(&mut self) -> io::Result<()> {
        let Some(mut buf) = self.cur.take() else {
            return Ok(());
        };
        let logical = self.cur_len;
        let io_len = align_up(logical);
        if io_len > logical {
            let last = self.cur_off + (io_len - BLOCK) as u64;
            let from = logical - (io_len - BLOCK);
            if last < self.written {
                let old = self.read_block(last)?;
                buf.bytes_mut()[logical..io_len].copy_from_slice(&old.bytes()[from..]);
            } else {
                buf.bytes_mut()[logical..io_len].fill(0);
            }
        }
        self.written = self.written.max(self.cur_off + io_len as u64);
        let job = Job::Write {
            buf,
            offset: self.cur_off,
            logical,
            io_len,
            hash: self.hash && self.forward,
        };
        self.send(job)
    }
}

impl Write for DirectFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        if data.is_empty() {
            return Ok(0);
        }
        if self.pos < self.max_end {
            self.forward = false;
        }
        let mut done = 0;
        while done < data.len() {
            self.ensure_buffer()?;
            let at = (self.pos - self.cur_off) as usize;
            let n = (BUFFER - at).min(data.len() - done);
            if let Some(cur) = self.cur.as_mut() {
                cur.bytes_mut()[at..at + n].copy_from_slice(&data[done..done + n]);
            }
            self.cur_len = self.cur_len.max(at + n);
            done += n;
            self.pos += n as u64;
            self.max_end = self.max_end.max(self.pos);
            self.len = self.len.max(self.pos);
            if self.cur_len == BUFFER {
                self.submit()?;
            }
        }
        Ok(data.len())
    }

    /// Queues what is buffered and waits until it is written (not synced).
    fn flush(&mut self) -> io::Result<()> {
        self.submit()?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Sync(tx))?;
        if rx.recv().is_err() {
            self.check()?;
        }
        self.check()
    }
}

impl Seek for DirectFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
            SeekFrom::End(d) => i128::from(self.len) + i128::from(d),
        };
        self.pos = u64::try_from(target)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        if self.stages.is_some() {
            let _ = self.join();
        }
    }
}

/// SHA-256 of the file at `path`, read around the page cache when the file
/// system allows it (an artefact just written by [`DirectFile`] is not in
/// memory; reading it through the cache would put it there for nothing). A
/// reader thread keeps the device busy while this thread hashes.
pub fn sha256_direct(path: &Path, cancel: &dyn Fn() -> bool) -> io::Result<[u8; 32]> {
    let (file, _) = open(OpenOptions::new().read(true), path)?;
    let file = Arc::new(file);
    let (full_tx, full) = mpsc::sync_channel::<io::Result<(Aligned, usize)>>(BUFFERS);
    let (empty, empty_rx) = mpsc::sync_channel::<Aligned>(BUFFERS);
    for _ in 0..BUFFERS {
        let _ = empty.send(Aligned::new(BUFFER));
    }
    let reader = {
        let file = Arc::clone(&file);
        std::thread::Builder::new()
            .name("direct-read".into())
            .spawn(move || {
                let mut offset = 0u64;
                for mut buf in empty_rx {
                    let mut got = 0;
                    let result = loop {
                        if got == BUFFER {
                            break Ok(());
                        }
                        match file.read_at(&mut buf.bytes_mut()[got..], offset + got as u64) {
                            Ok(0) => break Ok(()),
                            Ok(n) => got += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => clear_direct(&file),
                            Err(e) => break Err(e),
                        }
                    };
                    offset += got as u64;
                    let last = result.is_err() || got < BUFFER;
                    if full_tx.send(result.map(|()| (buf, got))).is_err() || last {
                        break;
                    }
                }
            })?
    };
    let mut h = Sha256::new();
    let outcome = loop {
        if cancel() {
            break Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        match full.recv() {
            Ok(Ok((buf, n))) => {
                h.update(&buf.bytes()[..n]);
                if n < BUFFER {
                    break Ok(());
                }
                let _ = empty.send(buf);
            }
            Ok(Err(e)) => break Err(e),
            Err(_) => break Err(io::Error::other("the reader thread stopped")),
        }
    };
    drop(empty);
    drop(full);
    let _ = reader.join();
    outcome.map(|()| h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator for test patterns.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    /// Applies `ops` (offset, bytes) to a `DirectFile` and to a model, with
    /// the I/O threads and inline (`--jobs 1`): the same file, the same hash.
    fn run(
        dir: &Path,
        initial: u64,
        ops: &[(u64, Vec<u8>)],
        hash: bool,
    ) -> (Vec<u8>, Option<[u8; 32]>) {
        let inline = run_with(dir, initial, ops, hash, false);
        let threaded = run_with(dir, initial, ops, hash, true);
        assert_eq!(inline, threaded, "inline and threaded writes differ");
        threaded
    }

    fn run_with(
        dir: &Path,
        initial: u64,
        ops: &[(u64, Vec<u8>)],
        hash: bool,
        threads: bool,
    ) -> (Vec<u8>, Option<[u8; 32]>) {
        let path = dir.join("out.bin");
        let mut f = DirectFile::create_with(&path, initial, hash, threads).unwrap();
        let mut model = vec![0u8; initial as usize];
        for (offset, data) in ops {
            f.seek(SeekFrom::Start(*offset)).unwrap();
            f.write_all(data).unwrap();
            let end = *offset as usize + data.len();
            if model.len() < end {
                model.resize(end, 0);
            }
            model[*offset as usize..end].copy_from_slice(data);
        }
        let digest = f.finish().unwrap().map(StreamedHash::digest);
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), model.len(), "length");
        assert!(got == model, "contents differ from the model");
        (model, digest)
    }

    #[test]
    fn scattered_writes_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Lcg(7);
        // Appends of odd sizes across buffer boundaries, patches behind
        // (inside and outside the current buffer), jumps ahead leaving holes,
        // a header written last: what the WIM writer and the disk image do.
        let mut ops = vec![(0u64, vec![0u8; 208])];
        let mut end = 208u64;
        for i in 0..40 {
            let n = match i % 4 {
                0 => 1 + r.next() as usize % 5000,
                1 => 3 << 20,
                2 => 1 + r.next() as usize % (BUFFER + 7),
                _ => 17,
            };
            ops.push((end, r.bytes(n)));
            end += n as u64;
            if i % 5 == 0 {
                let at = r.next() % end;
                let n = 1 + r.next() as usize % 300;
                ops.push((at, r.bytes(n)));
            }
            if i % 7 == 0 {
                end += r.next() % 100_000;
            }
        }
        ops.push((0, r.bytes(208)));
        let (_, digest) = run(dir.path(), 0, &ops, true);
        assert_eq!(digest, None, "writes went backwards: no streamed hash");
    }

    #[test]
    fn forward_writes_give_the_file_hash_and_keep_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Lcg(11);
        let mut ops = Vec::new();
        let mut at = 100u64;
        for i in 0..30 {
            let n = if i % 3 == 0 {
                5 << 20
            } else {
                1 + r.next() as usize % 70_000
            };
            ops.push((at, r.bytes(n)));
            at += n as u64 + if i % 2 == 0 { 0 } else { r.next() % (2 << 20) };
        }
        // A long gap (the free space of a disk image), then more than can be
        // kept aside, then another gap and a small run (its backup GPT).
        at += DEFER_GAP + 12_345;
        for _ in 0..3 {
            ops.push((at, r.bytes(DEFER_LIMIT / 2 + 1)));
            at += (DEFER_LIMIT / 2 + 1) as u64;
        }
        at += 2 * DEFER_GAP;
        ops.push((at, r.bytes(17_408)));
        at += 17_408;
        let initial = at + (64 << 20);
        let (model, digest) = run(dir.path(), initial, &ops, true);
        assert_eq!(digest, Some(sha(&model)));
        let blocks = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(dir.path().join("out.bin"))
                .unwrap()
                .blocks()
                * 512
        };
        assert!(
            blocks < initial - (60 << 20),
            "the unwritten tail must stay a hole"
        );
    }

    #[test]
    fn direct_read_back_hashes_like_a_plain_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut r = Lcg(3);
        for n in [0usize, 1, BLOCK, BUFFER, BUFFER + 1, 3 * BUFFER - 5] {
            let bytes = r.bytes(n);
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                sha256_direct(&path, &|| false).unwrap(),
                sha(&bytes),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn a_failing_device_is_an_error_not_a_short_file() {
        // /dev/full takes the open and fails every write with ENOSPC.
        if !Path::new("/dev/full").exists() {
            return;
        }
        for threads in [true, false] {
            let mut f = DirectFile::create_with(Path::new("/dev/full"), 0, false, threads).unwrap();
            let big = vec![1u8; BUFFER * BUFFERS * 2];
            let failed = f.write_all(&big).is_err() || f.finish().is_err();
            assert!(failed, "threads: {threads}");
        }
    }
}
