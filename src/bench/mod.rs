//! The writer benchmark: the same media tree written, in one run, by our
//! native writer, by wimlib's writer through the library, and by Debian's
//! `wimlib-imagex capture`, at each compression and thread count. Each write
//! runs in its own process (so its peak RSS can be read from /proc), is timed
//! from spawn to exit, and its output is checked: `wimlib-imagex verify`,
//! `7z t`, and the same files (path, size, SHA-1) as the reference.
//!
//! `rebuild`: the build benchmark on real-shaped media — clean, cold-cache,
//! no-change and one-file rebuilds, verify and inspect, against
//! `wimlib-imagex capture` of the same media tree.

pub mod esd;
pub mod rebuild;

use crate::build::{self, BuildError};
use crate::demo::{self, write_synthetic, DemoOptions, Kind};
use crate::plan;
use crate::recipe::Compression;
use crate::units::human;
use crate::validate::Mode;
use crate::wim::Wim;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the benchmarked tree contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A media tree shaped like real media (demo inputs at the chosen size).
    Mixed,
    /// Only compressible driver-like binaries and text: nothing to skip.
    Compressible,
}

/// The writers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// mediabuild's own parallel writer.
    Native,
    /// wimlib's writer, called through the library.
    Wimlib,
    /// `wimlib-imagex capture` (Debian's wimtools).
    Imagex,
}

impl Writer {
    pub fn name(self) -> &'static str {
        match self {
            Writer::Native => "mediabuild",
            Writer::Wimlib => "wimlib (library)",
            Writer::Imagex => "wimlib-imagex",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Working folder (inputs, tree, outputs).
    pub dir: PathBuf,
    pub size: u64,
    /// Files of the mixed content's many-file part (`DemoOptions::files`).
    pub files: usize,
    pub content: Content,
    pub writers: Vec<Writer>,
    pub compressions: Vec<Compression>,
    pub threads: Vec<usize>,
    /// Timed runs of each write, interleaved across writers (the median is
    /// reported): on a shared machine one run is one sample of the noise.
    pub repeat: usize,
    /// The mediabuild executable (runs each write in its own process).
    pub exe: PathBuf,
}

/// One timed write.
#[derive(Debug, Clone)]
pub struct Row {
    pub writer: Writer,
    pub compression: Compression,
    pub threads: usize,
    /// Median of `runs`.
    pub secs: f64,
    /// Every timed run, in order.
    pub runs: Vec<f64>,
    pub input: u64,
    pub output: u64,
    pub peak_rss: u64,
    pub sha256: String,
    /// Empty when every check passed.
    pub problems: Vec<String>,
}

impl Row {
    pub fn mbps(&self) -> f64 {
        self.input as f64 / 1e6 / self.secs.max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub mix: Vec<(String, u64)>,
    pub input: u64,
    pub rows: Vec<Row>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

pub(crate) fn io(p: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::Io(p.to_path_buf(), e)
}

/// Classifies a tree file for the printed mix.
fn kind_of(path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".wim") {
        "exported WIM images (already compressed)"
    } else if [".cab", ".msi", ".cat", ".zip"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        "cab/msi-like (already compressed)"
    } else if [".txt", ".inf", ".xml", ".ini", ".cmd", ".rtf"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        "text"
    } else {
        "driver-like binaries"
    }
}

/// Builds the tree to benchmark under `dir/tree`; returns its mix.
pub fn prepare(opts: &BenchOptions) -> Result<(PathBuf, Vec<(String, u64)>), BenchError> {
    let tree = opts.dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    match opts.content {
        Content::Mixed => {
            let inputs = opts.dir.join("inputs");
            let d = DemoOptions {
                size: opts.size,
                files: opts.files,
                ..Default::default()
            };
            let rep = demo::generate(&inputs, &d).map_err(|e| BenchError::Setup(e.to_string()))?;
            let c = plan::check(&rep.recipe, Mode::Build);
            if c.has_errors() {
                return Err(BenchError::Setup(c.render_diags()));
            }
            let Some(p) = c.plan else {
                return Err(BenchError::Setup(c.render_diags()));
            };
            build::stage_tree(&p, &tree)?;
        }
        Content::Compressible => {
            let n = (opts.size / (8 << 20)).max(4);
            for i in 0..n {
                let (kind, ext) = if i % 4 == 3 {
                    (Kind::Text, "inf")
                } else {
                    (Kind::Binary, "sys")
                };
                let p = tree.join(format!("drivers/pkg{:02}/driver{i:03}.{ext}", i % 16));
                write_synthetic(&p, kind, opts.size / n, 1000 + i).map_err(io(&p))?;
            }
            crate::fsutil::set_tree_times(&tree, crate::ids::DEFAULT_EPOCH).map_err(io(&tree))?;
        }
    }
    let mut mix: Vec<(String, u64)> = Vec::new();
    for f in crate::fsutil::walk(&tree).map_err(io(&tree))? {
        let k = kind_of(&f.rel);
        match mix.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 += f.size,
            None => mix.push((k.to_string(), f.size)),
        }
    }
    mix.sort();
    Ok((tree, mix))
}

/// Peak resident set size of a running process, from /proc (bytes).
fn vm_hwm(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Flushes what earlier steps left dirty in the page cache (the generated
/// tree; a buffered writer's output, which wimlib's writer does not flush)
/// before a timed run, untimed: its write-back would otherwise compete with
/// the next writer's I/O — most with ours, which waits for the device.
pub(crate) fn settle() {
    let _ = Command::new("sync").status();
}

/// Runs `cmd`, timing it and sampling its peak RSS until it exits.
///
/// The time is taken by a blocking wait, the peak RSS (`VmHWM`, a high-water
/// mark, so a late sample holds it) by a thread that looks every 50 ms: a
/// poll every few milliseconds woke the machine 200 times a second and
/// slowed the writer it was measuring.
pub(crate) fn timed(mut cmd: Command) -> Result<(f64, u64, String), String> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id();
    let peak = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Some(h) = vm_hwm(pid) {
                    peak.fetch_max(h, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let status = child.wait();
        done.store(true, Ordering::Relaxed);
        status.map(|s| (s, stderr))
    });
    let secs = start.elapsed().as_secs_f64();
    let (status, stderr) = out.map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(stderr);
    }
    Ok((secs, peak.load(Ordering::Relaxed), String::new()))
}

fn ctype_arg(c: Compression) -> &'static str {
    c.as_str()
}

/// The files of image 1 as (path, size, sha1): what "the same content" means.
fn content_of(wim: &Path) -> Result<BTreeSet<(String, u64, [u8; 20])>, String> {
    let w = Wim::open(wim).map_err(|e| e.to_string())?;
    Ok(w.list(1)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|e| !e.is_dir)
        .map(|e| (e.path, e.size, e.sha1))
        .collect())
}

pub(crate) fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs the whole benchmark, calling `log` with a line per step.
pub fn run(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<BenchReport, BenchError> {
    std::fs::create_dir_all(&opts.dir).map_err(io(&opts.dir))?;
    log(&format!(
        "preparing a {} {:?} tree in {} …",
        human(opts.size),
        opts.content,
        opts.dir.display()
    ));
    let (tree, mix) = prepare(opts)?;
    let input: u64 = mix.iter().map(|(_, b)| b).sum();
    let outs = opts.dir.join("outputs");
    std::fs::create_dir_all(&outs).map_err(io(&outs))?;
    let (imagex, sevenz) = (tool("wimlib-imagex"), tool("7z"));
    let mut rows: Vec<Row> = Vec::new();
    let mut reference: Option<BTreeSet<(String, u64, [u8; 20])>> = None;
    let repeat = opts.repeat.max(1);
    // Per compression, every repeat runs every thread count and writer in
    // turn, so that a slow spell of a shared machine hits 1 and 2 threads
    // alike (the thread ratio is a target too), not only the writers.
    for &c in &opts.compressions {
        let first = rows.len();
        for rep in 0..repeat {
            for &t in &opts.threads {
                for &w in &opts.writers {
                    if w == Writer::Imagex && !imagex {
                        if rep == 0 {
                            log("skipping wimlib-imagex: not installed");
                        }
                        continue;
                    }
                    let out = outs.join(format!(
                        "{}-{}-{t}.wim",
                        w.name().split(' ').next().unwrap_or("x"),
                        c.as_str()
                    ));
                    if rep > 0 {
                        let row = rows[first..]
                            .iter_mut()
                            .find(|r| r.writer == w && r.threads == t)
                            .ok_or_else(|| BenchError::Setup("lost a row".into()))?;
                        let _ = std::fs::remove_file(&out);
                        log(&format!(
                            "{} {} {t} thread(s), run {} …",
                            w.name(),
                            c.as_str(),
                            rep + 1
                        ));
                        // The previous run's output goes first, untimed: freeing
                        // its blocks (≈ 0.3 s for 1 GB on a `discard` mount)
                        // is the file system's cost, not the writer's.
                        let _ = std::fs::remove_file(&out);
                        settle();
                        let (secs, peak_rss, _) = timed(write_command(opts, w, c, t, &tree, &out))
                            .map_err(|e| BenchError::Setup(format!("{}: {e}", w.name())))?;
                        row.runs.push(secs);
                        row.peak_rss = row.peak_rss.max(peak_rss);
                        // Same inputs, same writer: the bytes must not change
                        // from run to run (wimlib's own writer stamps times, so
                        // only ours is held to it).
                        if w == Writer::Native {
                            let sha = build::hash::sha256_file(&out, &|_| {}, &|| false)
                                .map(|h| crate::ids::hex(&h))
                                .unwrap_or_default();
                            if sha != row.sha256 {
                                row.problems
                                    .push(format!("run {} wrote other bytes", rep + 1));
                            }
                        }
                        log(&format!("  {secs:.2} s"));
                        continue;
                    }
                    let _ = std::fs::remove_file(&out);
                    settle();
                    let cmd = write_command(opts, w, c, t, &tree, &out);
                    log(&format!("{} {} {t} thread(s) …", w.name(), c.as_str()));
                    let (secs, peak_rss, _) =
                        timed(cmd).map_err(|e| BenchError::Setup(format!("{}: {e}", w.name())))?;
                    let output = std::fs::metadata(&out).map_err(io(&out))?.len();
                    let mut problems = Vec::new();
                    // Correctness, checked on every output by tools that are not ours.
                    if imagex {
                        let o = Command::new("wimlib-imagex")
                            .arg("verify")
                            .arg(&out)
                            .output();
                        if !o.map(|o| o.status.success()).unwrap_or(false) {
                            problems.push("wimlib-imagex verify failed".into());
                        }
                    }
                    if sevenz {
                        let o = Command::new("7z").arg("t").arg(&out).output();
                        if !o.map(|o| o.status.success()).unwrap_or(false) {
                            problems.push("7z t failed".into());
                        }
                    }
                    match content_of(&out) {
                        Ok(files) => match &reference {
                            Some(r) if *r != files => {
                                problems.push("content differs from the reference".into())
                            }
                            Some(_) => {}
                            None => reference = Some(files),
                        },
                        Err(e) => problems.push(format!("cannot list: {e}")),
                    }
                    let sha256 = build::hash::sha256_file(&out, &|_| {}, &|| false)
                        .map(|h| crate::ids::hex(&h))
                        .unwrap_or_default();
                    let row = Row {
                        writer: w,
                        compression: c,
                        threads: t,
                        secs,
                        runs: vec![secs],
                        input,
                        output,
                        peak_rss,
                        sha256,
                        problems,
                    };
                    log(&format!(
                        "  {:.2} s, {:.1} MB/s, {}, peak RSS {}{}",
                        row.secs,
                        row.mbps(),
                        human(row.output),
                        human(row.peak_rss),
                        if row.problems.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", row.problems.join("; "))
                        }
                    ));
                    rows.push(row);
                }
            }
        }
        for r in &mut rows[first..] {
            r.secs = median(&r.runs);
        }
    }
    Ok(BenchReport { mix, input, rows })
}

/// The median of a non-empty list of times.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The process that performs one write.
fn write_command(
    opts: &BenchOptions,
    w: Writer,
    c: Compression,
    t: usize,
    tree: &Path,
    out: &Path,
) -> Command {
    match w {
        Writer::Imagex => {
            let mut cmd = Command::new("wimlib-imagex");
            cmd.arg("capture")
                .arg(tree)
                .arg(out)
                .arg("media")
                .arg(format!("--compress={}", ctype_arg(c)))
                .arg(format!("--threads={t}"))
                .arg("--no-acls");
            cmd
        }
        _ => {
            let mut cmd = Command::new(&opts.exe);
            cmd.arg("bench-write")
                .arg("--with")
                .arg(if w == Writer::Native {
                    "native"
                } else {
                    "wimlib"
                })
                .arg("--compression")
                .arg(c.as_str())
                .arg("--jobs")
                .arg(t.to_string())
                .arg(tree)
                .arg(out);
            cmd
        }
    }
}

impl BenchReport {
    fn find(&self, w: Writer, c: Compression, t: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.writer == w && r.compression == c && r.threads == t)
    }

    /// Whether every output passed its checks and our writer's bytes do not
    /// depend on the thread count.
    pub fn all_ok(&self) -> bool {
        self.rows.iter().all(|r| r.problems.is_empty()) && self.deterministic()
    }

    fn deterministic(&self) -> bool {
        let mut shas = std::collections::BTreeMap::new();
        self.rows
            .iter()
            .filter(|r| r.writer == Writer::Native)
            .all(|r| shas.entry(r.compression.as_str()).or_insert(&r.sha256) == &&r.sha256)
    }

    /// For each compression and thread count timed more than once with both
    /// writers: wimlib's time over ours in every round, then their median.
    fn round_ratios(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.rows.iter().filter(|r| r.writer == Writer::Native) {
            let Some(b) = self.find(Writer::Wimlib, r.compression, r.threads) else {
                continue;
            };
            if r.runs.len() < 2 || r.runs.len() != b.runs.len() {
                continue;
            }
            let ratios: Vec<f64> = b
                .runs
                .iter()
                .zip(&r.runs)
                .map(|(w, m)| w / m.max(1e-9))
                .collect();
            let list: Vec<String> = ratios.iter().map(|x| format!("{x:.2}")).collect();
            out.push(format!(
                "{} {} thread(s): {} (median {:.2}×)",
                r.compression.as_str(),
                r.threads,
                list.join(" "),
                median(&ratios)
            ));
        }
        out
    }

    /// The report as a table with the ratios.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "content mix ({}):", human(self.input));
        for (k, b) in &self.mix {
            let _ = writeln!(
                s,
                "  {k:<44} {:>10}  {:>5.1} %",
                human(*b),
                *b as f64 * 100.0 / self.input.max(1) as f64
            );
        }
        let _ = writeln!(
            s,
            "\n{:<18} {:<7} {:>3} {:>8} {:>9} {:>11} {:>10} {:>10} {:>10}  checks",
            "writer", "comp", "thr", "seconds", "MB/s", "output", "vs wimlib", "size ×", "peak RSS"
        );
        for r in &self.rows {
            let base = self.find(Writer::Wimlib, r.compression, r.threads);
            let speed = base
                .map(|b| format!("{:.2}×", r.mbps() / b.mbps()))
                .unwrap_or_default();
            let size = base
                .map(|b| format!("{:.4}", r.output as f64 / b.output as f64))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{:<18} {:<7} {:>3} {:>8.2} {:>9.1} {:>11} {:>10} {:>10} {:>10}  {}",
                r.writer.name(),
                r.compression.as_str(),
                r.threads,
                r.secs,
                r.mbps(),
                human(r.output),
                speed,
                size,
                human(r.peak_rss),
                if r.problems.is_empty() {
                    "ok".to_string()
                } else {
                    r.problems.join("; ")
                }
            );
        }
        let mut scal = Vec::new();
        for c in [
            Compression::Lzx,
            Compression::Xpress,
            Compression::Lzms,
            Compression::None,
        ] {
            if let (Some(a), Some(b)) = (
                self.find(Writer::Native, c, 1),
                self.find(Writer::Native, c, 2),
            ) {
                scal.push(format!("{} {:.2}×", c.as_str(), b.mbps() / a.mbps()));
            }
        }
        if !scal.is_empty() {
            let _ = writeln!(s, "\nmediabuild 2 threads vs 1: {}", scal.join(", "));
        }
        let rounds = self.round_ratios();
        if !rounds.is_empty() {
            let _ = writeln!(
                s,
                "mediabuild vs wimlib per round (the two runs of a round are back to back; the spread is the machine's noise):"
            );
            for line in rounds {
                let _ = writeln!(s, "  {line}");
            }
        }
        let _ = writeln!(
            s,
            "mediabuild output identical across thread counts: {}",
            if self.deterministic() { "yes" } else { "NO" }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(writer: Writer, threads: usize, runs: &[f64]) -> Row {
        Row {
            writer,
            compression: Compression::Lzx,
            threads,
            secs: median(runs),
            runs: runs.to_vec(),
            input: 1_000_000_000,
            output: 900_000_000,
            peak_rss: 1 << 20,
            sha256: "same".into(),
            problems: Vec::new(),
        }
    }

    #[test]
    fn rounds_are_paired_and_the_table_keeps_the_ratio_of_medians() {
        let report = BenchReport {
            mix: vec![("text".into(), 1_000_000_000)],
            input: 1_000_000_000,
            rows: vec![
                row(Writer::Native, 2, &[10.0, 8.0, 9.0]),
                row(Writer::Wimlib, 2, &[19.0, 20.0, 18.0]),
                // One run only: no per-round line for it.
                row(Writer::Native, 1, &[15.0]),
                row(Writer::Wimlib, 1, &[30.0]),
            ],
        };
        assert_eq!(
            report.round_ratios(),
            vec!["lzx 2 thread(s): 1.90 2.50 2.00 (median 2.00×)".to_string()]
        );
        let text = report.render();
        // Medians 9 s vs 19 s.
        assert!(text.contains("2.11×"), "{text}");
        assert!(text.contains("2.00×"), "{text}");
        assert!(text.contains("per round"), "{text}");
        assert!(text.contains("2 threads vs 1: lzx 1.67×"), "{text}");
    }
}
