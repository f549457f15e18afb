//! Fuzz targets, run for a bounded time by `cargo test` (see `kit.rs` and
//! `fuzz/README.md`): the recipe loader (parse, validate, plan, diagnostics)
//! and the artefact readers (`inspect` and `verify` of WIMs, disk images and
//! manifests; the ISO reader of `os_image.source: X.iso`).

mod kit;

use kit::Input;
use mediabuild::inspect::verify::{self, VerifyOptions};
use mediabuild::inspect::{self as facts, Options};
use mediabuild::plan;
use mediabuild::validate::Mode;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Demo inputs (small: the cases read them every time), generated once per
/// run under cargo's `target/tmp` (a static is never dropped: a temporary
/// folder elsewhere would be left behind by every run).
fn demo() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-demo");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("fuzz-demo folder");
        let opts = mediabuild::demo::DemoOptions {
            size: 1 << 20,
            files: 40,
            ..Default::default()
        };
        mediabuild::demo::generate(&d, &opts).expect("demo inputs");
        d
    })
}

#[test]
fn recipe_loader() {
    // The repo's example recipes (pointing at the demo inputs) and the corpus.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut extra = Vec::new();
    for name in ["demo.yaml", "minimal.yaml", "windows-to-go.yaml"] {
        let text = std::fs::read_to_string(root.join("recipes").join(name)).unwrap();
        extra.push(Input::plain(
            name,
            text.replace("../demo/", "").into_bytes(),
        ));
    }
    extra.push(Input::plain(
        "generated.yaml",
        std::fs::read(demo().join("recipe.yaml")).unwrap(),
    ));
    let corpus = kit::corpus("recipe", extra);
    let file = demo().join("fuzz-case.yaml");
    let n = kit::run("recipe", &corpus, true, |input| {
        input.write(&file);
        let c = plan::check(&file, Mode::Build);
        // Rendering is bounded however hostile the recipe (100 diagnostics,
        // excerpts cut around the caret).
        let text = c.render_diags();
        assert!(text.len() < 1 << 20, "{} bytes of diagnostics", text.len());
        serde_json::to_string(&c.diags).expect("diagnostics as JSON");
        if let Some(p) = &c.plan {
            p.render();
            serde_json::to_string(p).expect("plan as JSON");
        }
    });
    assert!(n as usize > corpus.len(), "no mutated case ran");
}

/// The demo's media, built once, as the artefact target's extra entries; the
/// built files themselves serve as the unchanged partners of a case.
fn media() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let recipe = demo().join("recipe.yaml");
        let text = std::fs::read_to_string(&recipe).unwrap();
        // A small disk: the readers walk it on every case.
        let text = text.replace("size: 1GiB", "size: 64MiB");
        let small = demo().join("media.yaml");
        std::fs::write(&small, text).unwrap();
        let c = plan::check(&small, Mode::Build);
        let p = c.plan.expect("demo plan");
        let opts = mediabuild::build::BuildOptions::default();
        let cancel = mediabuild::progress::Cancel::default();
        mediabuild::build::build(&p, &opts, &mediabuild::progress::Silent, &cancel)
            .expect("demo build");
        p.out_dir.clone()
    })
}

/// `path`'s data as records (holes and runs of zeros left out).
fn sparse_input(path: &Path) -> Input {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut bytes = Vec::new();
    let mut out = Input {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        len,
        records: Vec::new(),
    };
    for (start, end, data) in mediabuild::fsutil::regions(&f, len) {
        if !data {
            continue;
        }
        bytes.resize((end - start) as usize, 0);
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut bytes, start).unwrap();
        let part = Input::load_bytes(&Input::sparse_bytes(&bytes));
        out.records
            .extend(part.records.into_iter().map(|(o, d)| (o + start, d)));
    }
    out
}

#[test]
fn artefact_readers() {
    let out = media();
    let mut extra = Vec::new();
    for name in [
        "demo-wtg.wim",
        "demo-wtg.img",
        "demo-wtg.wim.manifest.json",
        "demo-wtg.img.manifest.json",
    ] {
        extra.push(sparse_input(&out.join(name)));
    }
    let corpus = kit::corpus("artefact", extra);
    let cases = tempfile::tempdir().unwrap();
    let n = kit::run("artefact", &corpus, false, |input| {
        // The case under its own name; a manifest's artefact (or an
        // artefact's manifest) beside it, unchanged, as `verify` finds them.
        let name = input.name.trim_end_matches(".sparse");
        let dir = cases.path();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let path = dir.join(name);
        input.write(&path);
        let partner = match name.strip_suffix(".manifest.json") {
            Some(artefact) => artefact.to_string(),
            None => format!("{name}.manifest.json"),
        };
        if out.join(&partner).exists() {
            std::fs::hard_link(out.join(&partner), dir.join(&partner)).unwrap();
        }
        if name.ends_with(".iso") {
            iso(&path);
            return;
        }
        let target = dir.join(name.trim_end_matches(".manifest.json"));
        if let Ok(i) = facts::inspect(&target, &Options::default()) {
            i.render();
        }
        let opts = VerifyOptions {
            read: Options::default(),
            recipe: None,
        };
        if let Ok(r) = verify::verify(&target, &opts) {
            r.render();
        }
    });
    assert!(n as usize > corpus.len(), "no mutated case ran");
}

/// The ISO reader: open, list, read every file (bounded).
fn iso(path: &Path) {
    use std::io::Read;
    let Ok(iso) = isoread::Iso::open(path) else {
        return;
    };
    let mut budget: u64 = 256 << 20;
    for e in iso.entries().iter().take(10_000) {
        let Ok(mut r) = iso.reader(e) else {
            continue;
        };
        let mut buf = [0u8; 65536];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 || budget < n as u64 {
                break;
            }
            budget -= n as u64;
        }
    }
}
