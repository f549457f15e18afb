//! A small mutation fuzzer that runs on stable Rust inside `cargo test`.
//!
//! Each target has a committed corpus (`fuzz/corpus/TARGET/`). A run first
//! replays every corpus entry as it is (regressions), then mutates entries —
//! bit flips, interesting integers over length and offset fields, deleted,
//! duplicated and inserted ranges, splices of two entries, and for text,
//! YAML-shaped edits — for a bounded time (`MEDIABUILD_FUZZ_SECONDS`, 20 s
//! by default; at most 60). The sequence of cases comes from
//! `MEDIABUILD_FUZZ_SEED` (fixed by default, so CI runs the same cases every
//! time; `MEDIABUILD_FUZZ_SEED=random` explores).
//!
//! A case fails on a panic or when it runs longer than [`CASE_LIMIT`] (a
//! watchdog ends the process then: a hang cannot be unwound). The input is
//! saved under `fuzz/failures/` first; once fixed, it belongs in the corpus.
//!
//! Binary entries are stored sparse (`*.sparse`): a disk or ISO image is
//! mostly zeros. Format: `MBSPARSE1\n`, the total length (u64 LE), then
//! records of offset (u64 LE), length (u32 LE) and the bytes.

use mediabuild::demo::Rng;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a single case may run.
pub const CASE_LIMIT: Duration = Duration::from_secs(20);

const MAGIC: &[u8] = b"MBSPARSE1\n";

/// An input: its data records and the total length of the file they make.
#[derive(Clone, Debug)]
pub struct Input {
    pub name: String,
    pub len: u64,
    /// (offset, bytes), sorted, not overlapping.
    pub records: Vec<(u64, Vec<u8>)>,
}

impl Input {
    pub fn plain(name: &str, bytes: Vec<u8>) -> Input {
        Input {
            name: name.into(),
            len: bytes.len() as u64,
            records: vec![(0, bytes)],
        }
    }

    /// Reads a corpus file: sparse when it starts with the magic, else plain.
    pub fn load(path: &Path) -> Input {
        let bytes = std::fs::read(path).expect("corpus entry");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        Input {
            name,
            ..Input::load_bytes(&bytes)
        }
    }

    /// Decodes a sparse encoding (or takes plain bytes as they are).
    pub fn load_bytes(bytes: &[u8]) -> Input {
        let name = String::new();
        let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
            return Input::plain(&name, bytes.to_vec());
        };
        let u64_at = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap());
        let len = u64_at(rest);
        rest = &rest[8..];
        let mut records = Vec::new();
        while rest.len() >= 12 {
            let off = u64_at(rest);
            let n = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
            records.push((off, rest[12..12 + n].to_vec()));
            rest = &rest[12 + n..];
        }
        Input { name, len, records }
    }

    /// The sparse encoding of `bytes` (runs of 256 zero bytes or more left out).
    pub fn sparse_bytes(bytes: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend((bytes.len() as u64).to_le_bytes());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == 0 {
                i += 1;
                continue;
            }
            let start = i;
            let mut zeros = 0;
            while i < bytes.len() && zeros < 256 {
                zeros = if bytes[i] == 0 { zeros + 1 } else { 0 };
                i += 1;
            }
            let end = i - zeros;
            out.extend((start as u64).to_le_bytes());
            out.extend(((end - start) as u32).to_le_bytes());
            out.extend(&bytes[start..end]);
        }
        out
    }

    /// Writes the input as a (sparse) file.
    pub fn write(&self, path: &Path) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(path).expect("case file");
        f.set_len(self.len).expect("set_len");
        for (off, data) in &self.records {
            if *off < self.len {
                let n = data.len().min((self.len - off) as usize);
                f.write_all_at(&data[..n], *off).expect("write case");
            }
        }
    }

    /// The whole content when it is small (text targets).
    pub fn flat(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len as usize];
        for (off, d) in &self.records {
            let o = *off as usize;
            if o < v.len() {
                let n = d.len().min(v.len() - o);
                v[o..o + n].copy_from_slice(&d[..n]);
            }
        }
        v
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(self.len.to_le_bytes());
        for (off, d) in &self.records {
            out.extend(off.to_le_bytes());
            out.extend((d.len() as u32).to_le_bytes());
            out.extend(d);
        }
        out
    }
}

/// Integers that break length and offset checks.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Scalars and shapes that break YAML readers and recipe rules.
const YAML_TOKENS: &[&str] = &[
    "~",
    "[]",
    "{}",
    "-1",
    "0",
    "1e400",
    ".nan",
    "\"\\0\"",
    "\"\\uD800\"",
    "*a",
    "&a x",
    "!tag x",
    "<<: *a",
    "0x1F",
    "..",
    "../../../../etc/passwd",
    "/dev/zero",
    "con",
    "NUL.txt",
    "99999999999999999999999",
    "\"日本語 ñ 😀\"",
    "{ env: X }",
    "{ file: /proc/self/environ }",
    "[[[[[[[[]]]]]]]]",
    "? complex",
    "|\n  block\n  text",
    "'quoted ''x'''",
    "0o777",
    "true",
    "2026-13-45",
    "PS1000000000",
    "http://[::1]:99999/",
];

/// One mutation of `input`, possibly spliced with `other`.
pub fn mutate(rng: &mut Rng, input: &Input, other: &Input, text: bool) -> Input {
    let mut out = input.clone();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if text {
            let mut v = out.flat();
            mutate_text(rng, &mut v, &other.flat());
            out = Input::plain(&input.name, v);
            continue;
        }
        if out.records.is_empty() {
            out.records.push((0, vec![0; 16]));
        }
        let r = rng.below(out.records.len() as u64) as usize;
        let choice = rng.below(10);
        if choice == 0 {
            // The file's length: truncated, or longer.
            out.len = match rng.below(3) {
                0 => rng.below(out.len.max(1)),
                1 => out.len + rng.below(1 << 20),
                _ => out.len / 2,
            };
            continue;
        }
        let data = &mut out.records[r].1;
        if data.is_empty() {
            data.push(0);
        }
        mutate_bytes(rng, data, choice);
    }
    // Records may have grown: keep them ordered and apart.
    out.records.sort_by_key(|r| r.0);
    let mut fixed: Vec<(u64, Vec<u8>)> = Vec::new();
    for (off, d) in out.records {
        match fixed.last_mut() {
            Some((o, prev)) if *o + prev.len() as u64 > off => {
                let keep = (off - *o) as usize;
                prev.truncate(keep);
                prev.extend(d);
            }
            _ => fixed.push((off, d)),
        }
    }
    out.records = fixed;
    out
}

fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, choice: u64) {
    let n = data.len();
    let at = rng.below(n as u64) as usize;
    match choice {
        1 | 2 => data[at] ^= 1 << rng.below(8),
        3 => data[at] = [0, 0xff, 0x7f, 0x80, b'/', b'.', b'\\'][rng.below(7) as usize],
        4 | 5 => {
            let v = INTERESTING[rng.below(INTERESTING.len() as u64) as usize];
            let width = [1usize, 2, 4, 8][rng.below(4) as usize];
            let bytes = v.to_le_bytes();
            let end = (at + width).min(n);
            data[at..end].copy_from_slice(&bytes[..end - at]);
        }
        6 => {
            let len = (rng.below(64) as usize).min(n - at);
            data.drain(at..at + len);
        }
        7 => {
            let len = (rng.below(256) as usize + 1).min(n - at);
            let piece = data[at..at + len].to_vec();
            let to = rng.below(n as u64) as usize;
            data.splice(to..to, piece);
        }
        8 => {
            let mut piece = vec![0u8; rng.below(32) as usize + 1];
            rng.fill(&mut piece);
            data.splice(at..at, piece);
        }
        _ => {
            // A block moved over another (a copied header, a repeated entry).
            let len = (rng.below(512) as usize + 1).min(n - at);
            let piece = data[at..at + len].to_vec();
            let to = rng.below(n as u64) as usize;
            let end = (to + len).min(n);
            data[to..end].copy_from_slice(&piece[..end - to]);
        }
    }
}

fn mutate_text(rng: &mut Rng, v: &mut Vec<u8>, other: &[u8]) {
    let text = String::from_utf8_lossy(v).into_owned();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let i = rng.below(lines.len() as u64) as usize;
    match rng.below(9) {
        0 => {
            // A value replaced by a hostile token.
            let tok = YAML_TOKENS[rng.below(YAML_TOKENS.len() as u64) as usize];
            if let Some(c) = lines[i].find(": ") {
                lines[i] = format!("{}: {tok}", &lines[i][..c]);
            } else {
                lines[i].push_str(tok);
            }
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            lines.remove(i);
        }
        3 => lines[i] = format!("  {}", lines[i]),
        4 => lines[i] = lines[i].trim_start().to_string(),
        5 => {
            // A line of another entry.
            let o: Vec<&str> = std::str::from_utf8(other).unwrap_or("").lines().collect();
            if !o.is_empty() {
                lines.insert(i, o[rng.below(o.len() as u64) as usize].to_string());
            }
        }
        6 => {
            // A key renamed by one character (a typo).
            if let Some(c) = lines[i].find(':') {
                let mut b = lines[i].clone().into_bytes();
                if c > 0 {
                    let at = rng.below(c as u64) as usize;
                    b[at] = b'a' + rng.below(26) as u8;
                }
                lines[i] = String::from_utf8_lossy(&b).into_owned();
            }
        }
        _ => {
            let mut b = std::mem::take(v);
            let choice = 1 + rng.below(9);
            mutate_bytes(rng, &mut b, choice);
            *v = b;
            return;
        }
    }
    *v = (lines.join("\n") + "\n").into_bytes();
}

fn budget() -> Duration {
    let s: u64 = std::env::var("MEDIABUILD_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(s.min(60))
}

fn seed() -> u64 {
    match std::env::var("MEDIABUILD_FUZZ_SEED").as_deref() {
        Ok("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        Ok(s) => s.parse().unwrap_or(1),
        Err(_) => 1,
    }
}

/// The committed corpus of `target`, plus `extra` entries made at test time.
pub fn corpus(target: &str, extra: Vec<Input>) -> Vec<Input> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out: Vec<Input> = files.iter().map(|p| Input::load(p)).collect();
    assert!(!out.is_empty(), "no corpus in {}", dir.display());
    out.extend(extra);
    out
}

fn save_failure(target: &str, input: &Input) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/failures");
    let _ = std::fs::create_dir_all(&dir);
    let bytes = input.encode();
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let p = dir.join(format!("{target}-{h:016x}.sparse"));
    let _ = std::fs::write(&p, bytes);
    p
}

/// Runs `case` on every corpus entry, then on mutations until the budget is
/// spent. Returns the number of cases run.
pub fn run(
    target: &str,
    corpus: &[Input],
    text: bool,
    case: impl Fn(&Input) + std::panic::RefUnwindSafe,
) -> u64 {
    let seed = seed();
    let start = Instant::now();
    // The watchdog: the case number running and when it began.
    let running = Arc::new(AtomicU64::new(0));
    let began = Arc::new(AtomicU64::new(0));
    let current: Arc<std::sync::Mutex<Option<Input>>> = Arc::default();
    {
        let (running, began, current) = (running.clone(), began.clone(), current.clone());
        let target = target.to_string();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let n = running.load(Ordering::SeqCst);
            let t = began.load(Ordering::SeqCst);
            if n == u64::MAX {
                return;
            }
            let now = start.elapsed().as_millis() as u64;
            if n > 0 && now.saturating_sub(t) > CASE_LIMIT.as_millis() as u64 {
                let input = current.lock().unwrap().clone();
                let saved = input.map(|i| save_failure(&target, &i));
                eprintln!(
                    "fuzz {target}: case {n} ran longer than {CASE_LIMIT:?} (a hang); input saved at {saved:?} (seed {seed})"
                );
                std::process::exit(101);
            }
        });
    }
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    let limit = budget();
    loop {
        let input = if (n as usize) < corpus.len() {
            corpus[n as usize].clone()
        } else {
            if start.elapsed() > limit {
                break;
            }
            let a = &corpus[rng.below(corpus.len() as u64) as usize];
            let b = &corpus[rng.below(corpus.len() as u64) as usize];
            mutate(&mut rng, a, b, text)
        };
        n += 1;
        *current.lock().unwrap() = Some(input.clone());
        began.store(start.elapsed().as_millis() as u64, Ordering::SeqCst);
        running.store(n, Ordering::SeqCst);
        let r = std::panic::catch_unwind(|| case(&input));
        if let Err(p) = r {
            let saved = save_failure(target, &input);
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            running.store(u64::MAX, Ordering::SeqCst);
            panic!(
                "fuzz {target}: case {n} (from {}) failed: {msg}\ninput saved at {} (seed {seed}); once fixed, move it into fuzz/corpus/{target}/",
                input.name,
                saved.display()
            );
        }
    }
    running.store(u64::MAX, Ordering::SeqCst);
    eprintln!(
        "fuzz {target}: {n} cases in {:.1} s (seed {seed}, {} corpus entries)",
        start.elapsed().as_secs_f64(),
        corpus.len()
    );
    n
}
