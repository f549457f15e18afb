//! The native WIM writer against wimlib's writer: same content, both valid,
//! and the benchmark harness itself (tiny size) passing its own checks.

use crate::support::*;
use mediabuild::wim::Wim;
use std::collections::BTreeSet;

fn listing(p: &std::path::Path) -> BTreeSet<(String, u64, [u8; 20])> {
    Wim::open(p)
        .unwrap()
        .list(1)
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.size, e.sha1))
        .collect()
}

#[test]
fn native_and_wimlib_writers_hold_the_same_media() {
    // The wimlib writer's media of a demo, against the native writer's media
    // of the same inputs: the shared build (read only).
    let own = Demo::new();
    let r = own.recipe();
    let o = own.run(&["build", r.to_str().unwrap(), "-q", "--writer", "wimlib"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let reference = own.wim();
    let d = shared_demo();
    assert_eq!(
        listing(&reference),
        listing(&d.wim()),
        "same files, sizes and SHA-1s"
    );
    let mut w = Wim::open(&d.wim()).unwrap();
    w.verify().unwrap();
    assert_eq!(w.property(1, "NAME").as_deref(), Some("demo-wtg"));
    if tool("7z") {
        let o = sh(&format!("7z t '{}'", d.wim().display()));
        assert!(o.status.success(), "{}", text(&o));
    }
}

#[test]
fn bench_harness_checks_its_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    // The harness runs `sync` before each timed write, for fair timings;
    // while the other tests write disk images, a machine-wide sync takes
    // minutes. This test checks the harness, not timings: `sync` is a no-op.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/bin/true", bin.path().join("sync")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = run(
        &[
            "bench",
            "--dir",
            tmp.path().to_str().unwrap(),
            "--size",
            "16MiB",
            "--compressions",
            "lzx",
            "--threads",
            "1,2",
            "--writers",
            "mediabuild,wimlib",
        ],
        &[("PATH", &path)],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("content mix"), "{t}");
    assert!(
        t.contains("mediabuild output identical across thread counts: yes"),
        "{t}"
    );
    assert!(t.matches("  ok").count() >= 4, "{t}");
}
