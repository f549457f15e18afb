//! Shared test helpers: demo fixtures (a test's own, in a temp folder, or
//! one shared by every test of the binary that only reads it), running the
//! binary, the independent tools (required in CI, skipped locally when
//! absent), and a byte search fast enough for disk images.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

pub const BIN: &str = env!("CARGO_BIN_EXE_mediabuild");

/// A demo (inputs + recipe): a test's own in a fresh temp folder
/// (`Demo::new`, …), or a fixture shared by the tests that only read it
/// (`shared_inputs`, `shared_demo`, `shared_gpt`).
pub struct Demo {
    dir: PathBuf,
    /// Removes an own demo's folder when it is dropped.
    _tmp: Option<tempfile::TempDir>,
    /// A fixture of the whole run: variants get names no other test uses.
    shared: bool,
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

    /// The smallest demo (4 MiB of inputs, 100 files of many-file content):
    /// every input, key and recipe section of the default one, for tests
    /// whose point is neither the size nor the number of files and that
    /// build it, often several times.
    pub fn small() -> Demo {
        Demo::with(small_options())
    }

    pub fn with(opts: mediabuild::demo::DemoOptions) -> Demo {
        let tmp = tempfile::tempdir().expect("tempdir");
        mediabuild::demo::generate(tmp.path(), &opts).expect("demo generates");
        Demo {
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            shared: false,
        }
    }

    /// A fixture of this run, generated in `run_dir()/name` (default size).
    fn shared(name: &str) -> Demo {
        let dir = run_dir().join(name);
        std::fs::create_dir_all(&dir).expect("shared demo folder");
        mediabuild::demo::generate(&dir, &Default::default()).expect("demo generates");
        Demo {
            dir,
            _tmp: None,
            shared: true,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
    /// In a shared demo each name may be written once per run, so that two
    /// tests never write (or read) each other's variant.
    pub fn variant(&self, name: &str, edits: &[(&str, &str)]) -> PathBuf {
        let mut text = std::fs::read_to_string(self.recipe()).expect("recipe");
        for (from, to) in edits {
            assert!(text.contains(from), "demo recipe lacks {from:?}");
            text = text.replacen(from, to, 1);
        }
        let p = self.dir().join(name);
        if self.shared {
            static WRITTEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
            let fresh = WRITTEN
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(p.clone());
            assert!(
                fresh,
                "variant {name} written twice in the shared demo {}: give it a name no other test uses",
                self.dir().display()
            );
        }
        std::fs::write(&p, text).expect("write variant");
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run(args, &[])
    }
}

/// Options of `Demo::small`.
pub fn small_options() -> mediabuild::demo::DemoOptions {
    mediabuild::demo::DemoOptions {
        size: 4 << 20,
        files: 100,
        ..Default::default()
    }
}

/// This run's folder for what lives as long as the test binary (the shared
/// demos, the cache): `target/tmp/it-shared/PID`. A static is never dropped,
/// so a temporary folder would be left behind by every run; instead each
/// run removes the folders of runs that are over (no such process any more)
/// and makes its own, one per process so that two runs at once never
/// remove each other's.
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("it-shared");
        let me = std::process::id().to_string();
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == me || !Path::new("/proc").join(&name).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let d = root.join(me);
        std::fs::create_dir_all(&d).expect("it-shared folder");
        d
    })
}

/// Demo inputs shared by the tests that only `check` or `plan` variants of
/// the recipe (and may add input files of their own, under names no other
/// test uses). Nothing builds into its `out/`, nothing changes its files.
pub fn shared_inputs() -> &'static Demo {
    static D: OnceLock<Demo> = OnceLock::new();
    D.get_or_init(|| Demo::shared("inputs"))
}

/// The default demo, built once by `build RECIPE` (default progress), for
/// the tests that only read its outputs and inputs: they write nothing into
/// it but variant recipes (and copy what they need to change elsewhere).
pub fn shared_demo() -> &'static Demo {
    &built().0
}

/// The output (stdout and stderr) of the shared demo's build.
pub fn shared_demo_log() -> &'static str {
    &built().1
}

fn built() -> &'static (Demo, String) {
    static B: OnceLock<(Demo, String)> = OnceLock::new();
    B.get_or_init(|| {
        let d = Demo::shared("built");
        let o = d.run(&["build", d.recipe().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "shared build: {}", text(&o));
        let log = text(&o);
        (d, log)
    })
}

/// The GPT variant of the demo recipe: the disk image alone (`demo-gpt.img`,
/// `size`, GPT), no `.wim`.
pub fn gpt_variant(d: &Demo, size: &str) -> PathBuf {
    d.variant(
        "gpt.yaml",
        &[
            ("  wim: demo-wtg.wim\n", ""),
            (
                "disk: { path: demo-wtg.img, size: 1024MiB, scheme: mbr }",
                &format!("disk: {{ path: demo-gpt.img, size: {size}, scheme: gpt }}"),
            ),
        ],
    )
}

/// The default demo built once with `gpt_variant(2GiB)` (its recipe
/// `gpt.yaml`, its image `out/demo-gpt.img`), for the tests that only read
/// the image (copying it to change it).
pub fn shared_gpt() -> &'static Demo {
    static D: OnceLock<Demo> = OnceLock::new();
    D.get_or_init(|| {
        let d = Demo::shared("gpt");
        let r = gpt_variant(&d, "2GiB");
        let o = run(&["build", r.to_str().unwrap(), "-q"], &[]);
        assert_eq!(o.status.code(), Some(0), "shared GPT build: {}", text(&o));
        d
    })
}

/// A cache folder for every run of this test binary, so that no test
/// reads or fills the user's cache (tests of the cache pass their own).
pub fn cache_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let d = run_dir().join("cache-home");
        std::fs::create_dir_all(&d).expect("cache home");
        d
    })
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

/// Where `needle` first occurs in `hay` (memchr's substring search: tests
/// scan whole disk images for secrets, which a naive search in this crate,
/// compiled without optimization, makes take minutes).
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Whether `needle` occurs in `hay` (see `find`).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// `s` as UTF-16LE bytes (how Windows files hold text).
pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// For each of `needles`, whether it occurs in the file `p`, which is read
/// in pieces (a disk image need not fit in memory) that overlap by the
/// longest needle less one byte, so that no occurrence is cut in two.
pub fn file_contains(p: &Path, needles: &[&[u8]]) -> Vec<bool> {
    const PIECE: usize = 16 << 20;
    let keep = needles.iter().map(|n| n.len()).max().unwrap_or(1).max(1) - 1;
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut found = vec![false; needles.len()];
    let mut buf = vec![0u8; keep + PIECE];
    let mut have = 0; // bytes of buf holding file data
    loop {
        let n = f
            .read(&mut buf[have..])
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        have += n;
        for (i, needle) in needles.iter().enumerate() {
            found[i] = found[i] || contains(&buf[..have], needle);
        }
        if n == 0 {
            return found;
        }
        if have > keep {
            buf.copy_within(have - keep..have, 0);
            have = keep;
        }
    }
}

/// Every file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}
