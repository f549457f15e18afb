//! The shared source tree and the images the tools make of it, built once per test run under
//! `CARGO_TARGET_TMPDIR`, plus the helpers that compare a listing with the tree.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use isoread::{Entry, Iso};

/// Files in the folder that makes directories span many sectors.
pub const MANY: usize = 2000;

pub struct Fixture {
    pub tree: PathBuf,
    /// genisoimage: UDF 1.02 + ISO 9660 + Joliet, like a Windows image.
    pub udf: Option<PathBuf>,
    /// xorriso: ISO 9660 + Joliet, no UDF.
    pub joliet: Option<PathBuf>,
    /// xorriso: ISO 9660 only (and Rock Ridge, which isoread does not read).
    pub plain: Option<PathBuf>,
}

/// Whether `tool` is on PATH; under CI a missing tool fails the test instead of skipping it.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required under CI: apt-get install -y xorriso genisoimage p7zip-full"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("isoread-it");
        let _ = fs::remove_dir_all(&dir);
        let tree = dir.join("tree");
        make_tree(&tree);
        let udf = have("genisoimage").then(|| {
            let iso = dir.join("udf.iso");
            run(Command::new("genisoimage")
                .args([
                    "-quiet",
                    "-input-charset",
                    "utf-8",
                    "-udf",
                    "-J",
                    "-R",
                    "-iso-level",
                    "3",
                    "-V",
                    "WINLIKE",
                    "-o",
                ])
                .arg(&iso)
                .arg(&tree));
            iso
        });
        let xorriso = have("xorriso");
        let joliet = xorriso.then(|| {
            let iso = dir.join("joliet.iso");
            run(Command::new("xorriso")
                .args([
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-input-charset",
                    "UTF-8",
                    "-J",
                    "-iso-level",
                    "3",
                    "-o",
                ])
                .arg(&iso)
                .arg(&tree));
            iso
        });
        let plain = xorriso.then(|| {
            let iso = dir.join("plain.iso");
            run(Command::new("xorriso")
                .args(["-as", "mkisofs", "-quiet", "-iso-level", "3", "-o"])
                .arg(&iso)
                .arg(&tree));
            iso
        });
        Fixture {
            tree,
            udf,
            joliet,
            plain,
        }
    })
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.env("LC_ALL", "C.UTF-8").output().expect("tool starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Deterministic bytes that do not repeat within a file (xorshift64*).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tree shaped like Windows install media, with the edge cases a reader gets wrong.
fn make_tree(root: &Path) {
    let file = |rel: &str, data: Vec<u8>| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    file("sources/boot.wim", bytes(1, 3 * 1024 * 1024 + 123));
    file("sources/install.esd", bytes(2, 5 * 1024 * 1024 + 7));
    file("efi/microsoft/boot/bcd", bytes(3, 16 * 1024));
    file("boot/bootfix.bin", bytes(4, 1024));
    file("setup.exe", bytes(5, 80_000));
    let deep: Vec<String> = (2..=10).map(|i| format!("l{i}")).collect();
    file(
        &format!("deep/{}/bottom.txt", deep.join("/")),
        b"ten folders down\n".to_vec(),
    );
    file("Ünïcode-名前.txt", "名前\n".as_bytes().to_vec());
    fs::create_dir_all(root.join("empty")).unwrap();
    file("empty.txt", Vec::new());
    file("exact2048.bin", bytes(6, 2048));
    file("one.bin", vec![0x5A]);
    for i in 0..MANY {
        file(
            &format!("many/f{i:04}.txt"),
            format!("file {i}\n").into_bytes(),
        );
    }
}

/// (path, size, is_dir) of a listing, as [`expected`] gives them.
pub type Row = (String, u64, bool);

/// The tree as isoread should list it: every file and folder, folders with size 0.
pub fn expected(root: &Path) -> Vec<Row> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Row>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                out.push((rel, 0, true));
                walk(root, &e.path(), out);
            } else {
                out.push((rel, meta.len(), false));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    sort(&mut out);
    out
}

pub fn sort(rows: &mut [Row]) {
    rows.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
}

pub fn listing(iso: &Iso) -> Vec<Row> {
    iso.entries()
        .iter()
        .map(|e| (e.path.clone(), e.size, e.is_dir))
        .collect()
}

pub fn read_all(iso: &Iso, e: &Entry) -> Vec<u8> {
    let mut r = iso.reader(e).unwrap();
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

/// Asserts every file of `iso` has the bytes of the file of the same path under `tree`.
pub fn assert_same_bytes(iso: &Iso, tree: &Path) {
    for e in iso.entries().iter().filter(|e| !e.is_dir) {
        let want = fs::read(tree.join(&e.path)).unwrap();
        let got = read_all(iso, e);
        assert!(
            got == want,
            "{}: bytes differ ({} read, {} expected)",
            e.path,
            got.len(),
            want.len()
        );
    }
}

/// A writable copy of an image in a temporary folder.
pub fn scratch(src: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join(src.file_name().unwrap());
    fs::copy(src, &dst).unwrap();
    (dir, dst)
}
