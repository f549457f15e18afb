//! `mediabuild bench esd`: what an ESD source costs (issue 20). On a
//! generated demo, the OS image is made an `install.esd` (solid LZMS, every
//! edition, by `wimlib-imagex export --solid`) and put in a Windows-shaped
//! ISO when `genisoimage` is there. Each round times, side by side:
//!
//! - `conv`: `wimlib-imagex export install.esd 2 x.wim --compress=LZX` — the
//!   conversion an admin would otherwise run by hand;
//! - `wim`: a clean build (`--no-cache`) from that converted `.wim`;
//! - `esd`: a clean build from the `.esd`;
//! - `iso`: a clean build from the ISO (its staging copy made anew);
//! - `again`: a second build from the ISO with a cache (the conversion is
//!   taken from it).
//!
//! The figure of merit: `(esd − wim) / conv` (target ≤ 1.10: the ESD costs
//! the conversion and no more), likewise for the ISO. Checked while timing:
//! the OS image inside the media from the ESD and from the ISO holds the same
//! files (paths, sizes, SHA-1) as the converted `.wim`; the cached build's
//! artefacts equal the clean ISO build's.

use super::{io, tool, BenchError};
use crate::demo::{self, DemoOptions};
use crate::wim::Wim;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct EsdOptions {
    pub dir: PathBuf,
    pub size: u64,
    pub files: usize,
    pub repeat: usize,
    pub exe: PathBuf,
}

#[derive(Debug, Default)]
pub struct EsdReport {
    pub esd_bytes: u64,
    pub times: BTreeMap<&'static str, Vec<f64>>,
    pub problems: Vec<String>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl EsdReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Per-round `(a − b) / c`, then the median.
    fn extra(&self, a: &str, b: &str, c: &str) -> Option<f64> {
        let (a, b, c) = (self.times.get(a)?, self.times.get(b)?, self.times.get(c)?);
        let r: Vec<f64> = a
            .iter()
            .zip(b)
            .zip(c)
            .map(|((a, b), c)| (a - b) / c)
            .collect();
        (!r.is_empty()).then(|| median(&r))
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nESD source: install.esd of {} (solid LZMS); {} round(s), medians",
            crate::units::human(self.esd_bytes),
            self.times.get("conv").map_or(0, Vec::len)
        );
        for (k, what) in [
            ("conv", "wimlib-imagex export install.esd 2 --compress=LZX"),
            ("wim", "clean build from the converted .wim"),
            ("esd", "clean build from install.esd"),
            ("iso", "clean build from the ISO (staging copy made anew)"),
            ("again", "second build from the ISO, with a cache"),
        ] {
            if let Some(v) = self.times.get(k) {
                let _ = writeln!(s, "  {what:<56} {:>8.2} s", median(v));
            }
        }
        for (a, what) in [("esd", "ESD"), ("iso", "ISO")] {
            if let Some(r) = self.extra(a, "wim", "conv") {
                let verdict = if r <= 1.10 { "MET" } else { "NOT MET" };
                let _ = writeln!(
                    s,
                    "  ({what} build − .wim build) / conversion = {r:.2}  (target ≤ 1.10: {verdict})"
                );
            }
        }
        if let (Some(a), Some(w)) = (self.times.get("again"), self.times.get("wim")) {
            let _ = writeln!(
                s,
                "  second ISO build / clean .wim build = {:.2}",
                median(a) / median(w)
            );
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "  checks: media equal where they must be — ok");
        }
        for p in &self.problems {
            let _ = writeln!(s, "  PROBLEM: {p}");
        }
        s
    }
}

fn run_ok(c: &mut Command, what: &str) -> Result<f64, BenchError> {
    let t = Instant::now();
    let o = c
        .output()
        .map_err(|e| BenchError::Setup(format!("{what}: {e}")))?;
    if !o.status.success() {
        return Err(BenchError::Setup(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Paths, sizes and SHA-1s of image 1 of the WIM at `p`.
fn files_of(p: &Path) -> Result<Vec<(String, u64, [u8; 20])>, BenchError> {
    let w = Wim::open(p).map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(w.list(1)
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .into_iter()
        .map(|f| (f.path, f.size, f.sha1))
        .collect())
}

/// The OS image inside the media WIM `media`, extracted to `dest`.
fn os_image_of(media: &Path, dest: &Path) -> Result<PathBuf, BenchError> {
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let w = Wim::open(media).map_err(|e| BenchError::Setup(e.to_string()))?;
    let member = "SMS/PKG/PS100010/install.wim";
    w.extract(1, dest, std::slice::from_ref(&member))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(dest.join(member))
}

pub fn run(opts: &EsdOptions, log: &mut dyn FnMut(&str)) -> Result<EsdReport, BenchError> {
    if !tool("wimlib-imagex") {
        return Err(BenchError::Setup(
            "bench esd needs wimlib-imagex (Debian: wimtools)".into(),
        ));
    }
    let dir = &opts.dir;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let d = dir.join("demo");
    log(&format!(
        "generating a {} demo in {} …",
        crate::units::human(opts.size),
        d.display()
    ));
    let gen = demo::generate(
        &d,
        &DemoOptions {
            size: opts.size,
            files: opts.files,
            ..Default::default()
        },
    )
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let images = d.join("images");
    log("making install.esd (wimlib-imagex export --solid) …");
    run_ok(
        Command::new("wimlib-imagex").current_dir(&images).args([
            "export",
            "install.wim",
            "all",
            "install.esd",
            "--solid",
        ]),
        "wimlib-imagex export --solid",
    )?;
    let mut rep = EsdReport {
        esd_bytes: std::fs::metadata(images.join("install.esd"))
            .map_err(io(&images))?
            .len(),
        ..Default::default()
    };
    let iso = tool("genisoimage");
    if iso {
        log("making a Windows-shaped ISO (UDF + Joliet) …");
        let tree = dir.join("iso/sources");
        std::fs::create_dir_all(&tree).map_err(io(&tree))?;
        for f in ["install.esd", "boot.wim"] {
            std::fs::copy(images.join(f), tree.join(f)).map_err(io(&tree))?;
        }
        run_ok(
            Command::new("genisoimage")
                .args(["-quiet", "-udf", "-J", "-iso-level", "3", "-o"])
                .arg(d.join("win.iso"))
                .arg(dir.join("iso")),
            "genisoimage",
        )?;
    }
    let text = std::fs::read_to_string(&gen.recipe).map_err(io(&gen.recipe))?;
    let variant = |name: &str, edits: &[(&str, &str)]| -> Result<PathBuf, BenchError> {
        let mut t = text.clone();
        for (a, b) in edits {
            if !t.contains(a) {
                return Err(BenchError::Setup(format!("demo recipe lacks {a:?}")));
            }
            t = t.replacen(a, b, 1);
        }
        let p = d.join(name);
        std::fs::write(&p, t).map_err(io(&p))?;
        Ok(p)
    };
    let conv_dir = images.join("conv");
    std::fs::create_dir_all(&conv_dir).map_err(io(&conv_dir))?;
    let wim_r = variant(
        "wim.yaml",
        &[
            (
                "source: images/install.wim",
                "source: images/conv/install.wim",
            ),
            ("image: \"Windows 8.1 Enterprise\"", "index: 1"),
        ],
    )?;
    let esd_r = variant(
        "esd.yaml",
        &[("source: images/install.wim", "source: images/install.esd")],
    )?;
    let iso_r = variant(
        "iso.yaml",
        &[
            ("source: images/install.wim", "source: win.iso"),
            ("source: images/boot.wim", "source: win.iso"),
        ],
    )?;
    let build = |r: &Path, cache: Option<&Path>, xdg: &Path| {
        let mut c = Command::new(&opts.exe);
        c.arg("build").arg(r).arg("-q").env("XDG_CACHE_HOME", xdg);
        match cache {
            Some(p) => c.arg("--cache-dir").arg(p),
            None => c.arg("--no-cache"),
        };
        c
    };
    let xdg = dir.join("xdg");
    let tmp = dir.join("x");
    for round in 0..opts.repeat.max(1) {
        log(&format!("round {} of {}", round + 1, opts.repeat.max(1)));
        let conv = conv_dir.join("install.wim");
        let _ = std::fs::remove_file(&conv);
        let t = run_ok(
            Command::new("wimlib-imagex")
                .arg("export")
                .arg(images.join("install.esd"))
                .arg("2")
                .arg(&conv)
                .args(["--compress=LZX", "--threads=0"]),
            "wimlib-imagex export --compress=LZX",
        )?;
        rep.times.entry("conv").or_default().push(t);
        log(&format!("  conversion by wimlib-imagex: {t:.2} s"));
        let want = files_of(&conv)?;

        let _ = std::fs::remove_dir_all(&xdg);
        let t = run_ok(&mut build(&wim_r, None, &xdg), "build from .wim")?;
        rep.times.entry("wim").or_default().push(t);
        log(&format!("  clean build from the .wim: {t:.2} s"));

        let t = run_ok(&mut build(&esd_r, None, &xdg), "build from .esd")?;
        rep.times.entry("esd").or_default().push(t);
        log(&format!("  clean build from the .esd: {t:.2} s"));
        let got = files_of(&os_image_of(&d.join("out/demo-wtg.wim"), &tmp)?)?;
        if got != want {
            rep.problems
                .push("the OS image from the ESD differs from the converted .wim".into());
        }

        if iso {
            let _ = std::fs::remove_dir_all(&xdg);
            let t = run_ok(&mut build(&iso_r, None, &xdg), "build from the ISO")?;
            rep.times.entry("iso").or_default().push(t);
            log(&format!("  clean build from the ISO: {t:.2} s"));
            let got = files_of(&os_image_of(&d.join("out/demo-wtg.wim"), &tmp)?)?;
            if got != want {
                rep.problems
                    .push("the OS image from the ISO differs from the converted .wim".into());
            }
            let clean = std::fs::read(d.join("out/SHA256SUMS")).map_err(io(&d))?;
            let cache = dir.join("cache");
            let _ = std::fs::remove_dir_all(&cache);
            run_ok(&mut build(&iso_r, Some(&cache), &xdg), "first cached build")?;
            let t = run_ok(&mut build(&iso_r, Some(&cache), &xdg), "second build")?;
            rep.times.entry("again").or_default().push(t);
            log(&format!("  second build from the ISO, cached: {t:.2} s"));
            let again = std::fs::read(d.join("out/SHA256SUMS")).map_err(io(&d))?;
            if again != clean {
                rep.problems
                    .push("the cached ISO build's artefacts differ from the clean one's".into());
            }
        }
    }
    Ok(rep)
}
