//! Shared test helpers: a demo fixture in a temp folder, running the binary,
//! and the independent tools (required in CI, skipped locally when absent).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_mediabuild");

/// A demo (inputs + recipe) in a fresh temp folder.
pub struct Demo {
    pub tmp: tempfile::TempDir,
}

impl Demo {
    pub fn new() -> Demo {
        Demo::with_loader(None)
    }

    pub fn with_loader(efi: Option<PathBuf>) -> Demo {
        Demo::with(mediabuild::demo::DemoOptions {
            efi_loader: efi,
            ..Default::default()
        })
    }

    pub fn with_size(size: u64) -> Demo {
        Demo::with(mediabuild::demo::DemoOptions {
            size,
            ..Default::default()
        })
    }

    fn with(opts: mediabuild::demo::DemoOptions) -> Demo {
        let tmp = tempfile::tempdir().expect("tempdir");
        mediabuild::demo::generate(tmp.path(), &opts).expect("demo generates");
        Demo { tmp }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }
    pub fn recipe(&self) -> PathBuf {
        self.dir().join("recipe.yaml")
    }
    pub fn out(&self) -> PathBuf {
        self.dir().join("out")
    }
    pub fn wim(&self) -> PathBuf {
        self.out().join("demo-wtg.wim")
    }

    /// Writes a variant of the demo recipe with `edits` (from, to) applied.
    pub fn variant(&self, name: &str, edits: &[(&str, &str)]) -> PathBuf {
        let mut text = std::fs::read_to_string(self.recipe()).expect("recipe");
        for (from, to) in edits {
            assert!(text.contains(from), "demo recipe lacks {from:?}");
            text = text.replacen(from, to, 1);
        }
        let p = self.dir().join(name);
        std::fs::write(&p, text).expect("write variant");
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run(args, &[])
    }
}

/// A cache folder for every run of this test binary, so that no test
/// reads or fills the user's cache (tests of the cache pass their own).
pub fn cache_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().expect("cache tempdir"))
        .path()
}

pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    c.env("XDG_CACHE_HOME", cache_home());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run mediabuild")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether an independent tool is installed. In CI a missing tool fails the
/// test; locally it is skipped with a message.
pub fn tool(name: &str) -> bool {
    static CI: OnceLock<bool> = OnceLock::new();
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if *CI.get_or_init(|| std::env::var_os("CI").is_some()) {
            panic!("{name} is required in CI (see .ci/run)");
        }
        eprintln!("skipping: {name} not installed");
    }
    found
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh").args(["-c", cmd]).output().expect("sh")
}

pub fn sha256(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `needle` occurs in `hay` (memchr's substring search: tests scan
/// whole disk images for secrets, which a naive search makes take minutes).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}
