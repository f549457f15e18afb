//! The build benchmark on real-shaped media (`mediabuild bench rebuild`).
//!
//! In one run, on a demo generated with thousands of small files (a driver
//! store and an application tree beside the large images), each round times:
//! a clean build (`--no-cache`), a first build with an empty cache, a
//! rebuild with nothing changed (over the previous outputs, then into an
//! empty output folder: a CI runner), the same rebuild with a cache already
//! holding `--fill` other entries, a rebuild after one `.inf` of the driver
//! store changed, `verify` of both artefacts (and of the `.wim` with
//! `--recipe`), `inspect` of the disk image, and `wimlib-imagex capture` of
//! the same media tree (LZX, 2 threads). Every build of a round must give the
//! clean build's bytes (the one-`.inf` rebuild is compared with the next
//! clean build, which sees the same inputs). Times are medians over rounds;
//! ratios are against the clean build of the same round, so that a slow
//! spell of a shared machine moves both sides.

use super::{io, median, settle, timed, tool, BenchError};
use crate::cache::{Cache, Key};
use crate::demo::{self, DemoOptions};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Working folder (demo, caches, outputs).
    pub dir: PathBuf,
    pub size: u64,
    /// Files of the many-file content (`DemoOptions::files`).
    pub files: usize,
    /// Rounds.
    pub repeat: usize,
    /// Entries put in a second cache before its no-change rebuild (0: skip).
    pub fill: usize,
    /// Count system calls of a cold build and a no-change rebuild with strace.
    pub strace: bool,
    /// The mediabuild executable.
    pub exe: PathBuf,
}

/// The steps timed in each round.
const STEPS: &[(&str, &str)] = &[
    ("clean", "clean build (--no-cache)"),
    ("cold", "first build, empty cache"),
    ("same", "rebuild, nothing changed"),
    ("same-ci", "rebuild, nothing changed, empty output folder"),
    (
        "same-big",
        "rebuild, nothing changed, cache of --fill more entries",
    ),
    ("inf", "rebuild, one .inf of the driver store changed"),
    ("verify-img", "verify the disk image"),
    ("verify-wim", "verify the .wim"),
    ("verify-recipe", "verify the .wim --recipe"),
    ("inspect-img", "inspect the disk image"),
    (
        "imagex",
        "wimlib-imagex capture of the media tree (LZX, 2 threads)",
    ),
];

/// The result: every step's times, the checks, the syscall counts.
#[derive(Debug, Default)]
pub struct RebuildReport {
    pub files: usize,
    pub bytes: u64,
    pub times: BTreeMap<&'static str, Vec<f64>>,
    pub problems: Vec<String>,
    pub syscalls: Vec<String>,
    pub big_entries: u64,
}

impl RebuildReport {
    fn push(&mut self, step: &'static str, secs: f64) {
        self.times.entry(step).or_default().push(secs);
    }

    fn med(&self, step: &str) -> Option<f64> {
        self.times.get(step).map(|v| median(v))
    }

    /// Per-round ratio of `step` to `base`, then their median.
    fn ratio(&self, step: &str, base: &str) -> Option<f64> {
        let (a, b) = (self.times.get(step)?, self.times.get(base)?);
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        (!r.is_empty()).then(|| median(&r))
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nreal-shaped demo: {} content files, {} of inputs; {} round(s); medians, ratios per round against the clean build",
            self.files,
            crate::units::human(self.bytes),
            self.times.get("clean").map_or(0, Vec::len)
        );
        let _ = writeln!(
            s,
            "{:<66} {:>9} {:>10} {:>9}",
            "step", "seconds", "× clean", "target"
        );
        let targets: BTreeMap<&str, &str> = [
            ("cold", "≤ 1.15"),
            ("same", "≤ 0.10"),
            ("inf", "≤ 0.10"),
            ("verify-img", "≤ 1.00"),
            ("verify-wim", "≤ 2.00"),
            ("verify-recipe", "≤ 2.00"),
            ("inspect-img", "≤ 2.00"),
        ]
        .into_iter()
        .collect();
        for (step, what) in STEPS {
            let Some(t) = self.med(step) else { continue };
            let ratio = self
                .ratio(step, "clean")
                .map_or(String::new(), |r| format!("{r:.3}"));
            let _ = writeln!(
                s,
                "{what:<66} {t:>9.2} {ratio:>10} {:>9}",
                targets.get(step).copied().unwrap_or("")
            );
        }
        if let Some(r) = self.ratio("same-big", "same-pair") {
            let _ = writeln!(
                s,
                "no-change rebuild with a cache of {} entries / with the demo's only: {r:.3} (target ≤ 1.10)",
                self.big_entries
            );
        }
        if let Some(r) = self.ratio("imagex", "cold") {
            let _ = writeln!(
                s,
                "first build with an empty cache vs wimlib-imagex capture of the same media tree: {r:.2}× faster (target ≥ 2.0)"
            );
        }
        if let Some(r) = self.ratio("imagex", "clean") {
            let _ = writeln!(s, "clean build vs wimlib-imagex capture: {r:.2}× faster");
        }
        for l in &self.syscalls {
            let _ = writeln!(s, "{l}");
        }
        let _ = writeln!(
            s,
            "outputs identical to the clean builds: {}",
            if self.problems.is_empty() {
                "yes"
            } else {
                "NO"
            }
        );
        for p in &self.problems {
            let _ = writeln!(s, "  problem: {p}");
        }
        s
    }
}

/// `sha256  name` lines of a folder's SHA256SUMS for the WIM and the image.
fn sums(out: &Path) -> String {
    let text = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap_or_default();
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with(".wim") || l.ends_with(".img"))
        .collect();
    lines.sort();
    lines.join("\n")
}

fn step(
    exe: &Path,
    args: &[OsString],
    log: &mut dyn FnMut(&str),
    what: &str,
) -> Result<f64, BenchError> {
    settle();
    let mut c = Command::new(exe);
    c.args(args);
    let (secs, _, _) = timed(c).map_err(|e| BenchError::Setup(format!("{what}: {e}")))?;
    log(&format!("  {what}: {secs:.2} s"));
    Ok(secs)
}

/// Fills the cache at `dir` with `n` entries shaped like other builds'
/// (compressed resources of 1–16 KiB, chunk digests), untimed.
fn fill(dir: &Path, n: usize) -> Result<(), BenchError> {
    let cache = Cache::open(dir, crate::cache::DEFAULT_MAX_SIZE)
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut rng = demo::Rng::new(0xF111);
    let mut body = vec![0u8; 16 << 10];
    for i in 0..n {
        let len = 1024 + rng.below(15 << 10) as usize;
        rng.fill(&mut body[..len]);
        let kind = if i % 5 == 0 { "chunks" } else { "res" };
        cache.put(&Key::new(kind, format!("bench-fill\0{i}")), &body[..len]);
    }
    Ok(())
}

/// Runs `args` under strace and says how many calls of each kind it made
/// per content file.
fn count_syscalls(exe: &Path, args: &[OsString], files: usize, what: &str) -> String {
    let out = std::env::temp_dir().join(format!("mediabuild-strace-{}.txt", std::process::id()));
    let ok = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg(exe)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    if !ok {
        return format!("{what}: strace failed");
    }
    // "% time seconds usecs/call calls errors syscall"
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() >= 5 && w[0].parse::<f64>().is_ok() {
            let name = w[w.len() - 1].to_string();
            if let Ok(n) = w[3].parse::<u64>() {
                calls.insert(name, n);
            }
        }
    }
    let total: u64 = calls.values().sum();
    let per = |n: u64| n as f64 / files.max(1) as f64;
    let mut s = format!(
        "{what}: {total} system calls, {:.1} per content file;",
        per(total)
    );
    for k in [
        "statx",
        "newfstatat",
        "openat",
        "read",
        "pread64",
        "write",
        "pwrite64",
        "rename",
        "utimensat",
    ] {
        if let Some(n) = calls.get(k) {
            let _ = write!(s, " {k} {:.2}", per(*n));
        }
    }
    s
}

/// Runs the benchmark, calling `log` with a line per step.
pub fn run(opts: &RebuildOptions, log: &mut dyn FnMut(&str)) -> Result<RebuildReport, BenchError> {
    let dir = &opts.dir;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let demo_dir = dir.join("demo");
    log(&format!(
        "generating a {} demo with {} content files in {} …",
        crate::units::human(opts.size),
        opts.files,
        demo_dir.display()
    ));
    let gen = demo::generate(
        &demo_dir,
        &DemoOptions {
            size: opts.size,
            files: opts.files,
            ..Default::default()
        },
    )
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    // One recipe for every build (its digest shapes the bytes), so the clean
    // build's outputs are moved aside to compare.
    let recipe = gen.recipe;
    let (out_clean, out_cached) = (dir.join("out-clean"), demo_dir.join("out"));
    let (cache, big) = (dir.join("cache"), dir.join("cache-big"));
    let walked = crate::fsutil::walk(&demo_dir.join("content")).map_err(io(&demo_dir))?;
    let inf = walked
        .iter()
        .find(|f| f.rel.starts_with("drivers/store/") && f.rel.ends_with(".inf"))
        .map(|f| f.abs.clone())
        .ok_or_else(|| BenchError::Setup("no .inf in the driver store".into()))?;
    let mut rep = RebuildReport {
        files: walked.len(),
        bytes: gen.mix.iter().take(5).map(|m| m.1).sum(),
        ..Default::default()
    };
    let imagex = tool("wimlib-imagex");
    let tree = dir.join("tree");
    if imagex {
        log("staging the media tree for wimlib-imagex …");
        let c = crate::plan::check(&recipe, crate::validate::Mode::Build);
        let plan = c
            .plan
            .ok_or_else(|| BenchError::Setup("the demo recipe does not plan".into()))?;
        crate::build::stage_tree(&plan, &tree)?;
    }
    // The hash cache does not trust time stamps younger than a second.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let os = |s: &str| OsString::from(s);
    let build = |r: &Path, c: Option<&Path>| -> Vec<OsString> {
        let mut v = vec![os("build"), r.as_os_str().into(), os("-q")];
        match c {
            Some(c) => v.extend([os("--cache-dir"), c.as_os_str().into()]),
            None => v.push(os("--no-cache")),
        }
        v
    };
    let mut pending_inf: Option<String> = None;
    let rounds = opts.repeat.max(1);
    for round in 0..rounds {
        log(&format!("round {} of {rounds}", round + 1));
        let _ = std::fs::remove_dir_all(&out_clean);
        let _ = std::fs::remove_dir_all(&out_cached);
        let a = build(&recipe, None);
        rep.push("clean", step(&opts.exe, &a, log, "clean build")?);
        std::fs::rename(&out_cached, &out_clean).map_err(io(&out_clean))?;
        let want = sums(&out_clean);
        if want.is_empty() {
            rep.problems
                .push("the clean build wrote no SHA256SUMS".into());
        }
        if let Some(p) = pending_inf.take() {
            if p != want {
                rep.problems.push(format!(
                    "round {round}: the one-.inf rebuild differs from a clean build of the same inputs"
                ));
            }
        }
        let check = |rep: &mut RebuildReport, what: &str| {
            let got = sums(&out_cached);
            if got != want {
                rep.problems.push(format!(
                    "round {}: {what} differs from the clean build",
                    round + 1
                ));
            }
        };
        let _ = std::fs::remove_dir_all(&cache);
        let _ = std::fs::remove_dir_all(&out_cached);
        let b = build(&recipe, Some(&cache));
        rep.push(
            "cold",
            step(&opts.exe, &b, log, "first build, empty cache")?,
        );
        check(&mut rep, "the first build with a cache");
        rep.push(
            "same",
            step(&opts.exe, &b, log, "rebuild, nothing changed")?,
        );
        check(&mut rep, "the no-change rebuild");
        let _ = std::fs::remove_dir_all(&out_cached);
        rep.push(
            "same-ci",
            step(&opts.exe, &b, log, "rebuild into an empty output folder")?,
        );
        check(&mut rep, "the rebuild into an empty output folder");
        if opts.fill > 0 {
            if round == 0 {
                log(&format!(
                    "filling a second cache with {} entries …",
                    opts.fill
                ));
                fill(&big, opts.fill)?;
                let g = build(&recipe, Some(&big));
                step(&opts.exe, &g, log, "first build into it (untimed)")?;
                let c = Cache::open(&big, crate::cache::DEFAULT_MAX_SIZE)
                    .map_err(|e| BenchError::Setup(e.to_string()))?;
                rep.big_entries = c.stats().entries;
            }
            let g = build(&recipe, Some(&big));
            // Both caches recently used (the small one was, by the steps
            // above): the pair measures the cache's size, not whose
            // metadata the kernel still holds. Then back to back, so that
            // the pair sees the same machine.
            step(
                &opts.exe,
                &g,
                log,
                "rebuild with the big cache (untimed warm-up)",
            )?;
            rep.push(
                "same-pair",
                step(&opts.exe, &b, log, "rebuild, nothing changed")?,
            );
            rep.push(
                "same-big",
                step(&opts.exe, &g, log, "rebuild, nothing changed, big cache")?,
            );
            check(&mut rep, "the no-change rebuild with the big cache");
        }
        // One byte of one .inf, same size.
        let mut bytes = std::fs::read(&inf).map_err(io(&inf))?;
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
        std::fs::write(&inf, &bytes).map_err(io(&inf))?;
        std::thread::sleep(std::time::Duration::from_millis(1200));
        rep.push(
            "inf",
            step(&opts.exe, &b, log, "rebuild, one .inf changed")?,
        );
        pending_inf = Some(sums(&out_cached));
        let img = out_cached.join("demo-wtg.img");
        let wim = out_cached.join("demo-wtg.wim");
        for (key, args, what) in [
            (
                "verify-img",
                vec![os("verify"), img.clone().into()],
                "verify the disk image",
            ),
            (
                "verify-wim",
                vec![os("verify"), wim.clone().into()],
                "verify the .wim",
            ),
            (
                "verify-recipe",
                vec![
                    os("verify"),
                    wim.clone().into(),
                    os("--recipe"),
                    recipe.clone().into(),
                ],
                "verify the .wim --recipe",
            ),
            (
                "inspect-img",
                vec![os("inspect"), img.clone().into()],
                "inspect the disk image",
            ),
        ] {
            rep.push(key, step(&opts.exe, &args, log, what)?);
        }
        if imagex {
            let out = dir.join("imagex.wim");
            let _ = std::fs::remove_file(&out);
            settle();
            let mut c = Command::new("wimlib-imagex");
            c.arg("capture")
                .arg(&tree)
                .arg(&out)
                .args(["--compress=lzx", "--threads=2"]);
            let (secs, _, _) =
                timed(c).map_err(|e| BenchError::Setup(format!("wimlib-imagex capture: {e}")))?;
            log(&format!("  wimlib-imagex capture: {secs:.2} s"));
            rep.push("imagex", secs);
        }
    }
    // The last one-.inf rebuild against a clean build of its inputs.
    if let Some(p) = pending_inf {
        let _ = std::fs::remove_dir_all(&out_clean);
        let _ = std::fs::remove_dir_all(&out_cached);
        let a = build(&recipe, None);
        step(
            &opts.exe,
            &a,
            log,
            "clean build of the changed inputs (untimed)",
        )?;
        std::fs::rename(&out_cached, &out_clean).map_err(io(&out_clean))?;
        if p != sums(&out_clean) {
            rep.problems
                .push("the last one-.inf rebuild differs from a clean build".into());
        }
    }
    if opts.strace && tool("strace") {
        log("counting system calls (strace -f -c) …");
        let _ = std::fs::remove_dir_all(&cache);
        let b = build(&recipe, Some(&cache));
        rep.syscalls.push(count_syscalls(
            &opts.exe,
            &b,
            rep.files,
            "first build, empty cache",
        ));
        rep.syscalls.push(count_syscalls(
            &opts.exe,
            &b,
            rep.files,
            "rebuild, nothing changed",
        ));
        let c = build(&recipe, None);
        rep.syscalls.push(count_syscalls(
            &opts.exe,
            &c,
            rep.files,
            "clean build (--no-cache)",
        ));
        for (args, what) in [
            (
                vec![os("verify"), out_cached.join("demo-wtg.img").into()],
                "verify the disk image",
            ),
            (
                vec![os("verify"), out_cached.join("demo-wtg.wim").into()],
                "verify the .wim",
            ),
        ] {
            rep.syscalls
                .push(count_syscalls(&opts.exe, &args, rep.files, what));
        }
    }
    Ok(rep)
}
