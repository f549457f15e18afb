//! The build cache and the lockfile, end to end: a rebuild after one driver
//! change is byte-identical to a clean build; corrupted or truncated entries
//! are dropped, never used; two builds share one cache; a forged-mtime
//! rewrite is not served stale; `--locked` names the drift; `plan` says why
//! a member is not served. Every test uses its own `--cache-dir`.

use crate::support::{contains, run, sh, sha256, text, tool, utf16, Demo, BIN};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DRIVER: &str = "content/drivers/surface/Network/netadapter.inf";

/// The hash cache does not keep files changed within the last second
/// (their time stamps cannot be trusted yet): let the demo inputs age.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn build(d: &Demo, extra: &[&str]) -> String {
    let r = d.recipe();
    let mut args = vec!["build", r.to_str().unwrap(), "-q"];
    args.extend_from_slice(extra);
    let o = d.run(&args);
    assert!(o.status.success(), "build {extra:?} failed:\n{}", text(&o));
    text(&o)
}

fn outputs(d: &Demo) -> (String, String) {
    (sha256(&d.wim()), sha256(&d.out().join("demo-wtg.img")))
}

/// Changes one byte of a file, keeping its size.
fn change_one_byte(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let i = b.len() / 2;
    b[i] = if b[i] == b'x' { b'y' } else { b'x' };
    std::fs::write(p, b).unwrap();
}

/// The files of one kind of cache entry (in its shard folders).
fn entries(dir: &Path, kind: &str) -> Vec<PathBuf> {
    files_in(&dir.join(kind))
}

fn stat_line(out: &str) -> &str {
    out.lines().find(|l| l.starts_with("cache ")).unwrap_or("")
}

fn count(line: &str, what: &str) -> u64 {
    // "… 12 hits, 3 misses, …"
    let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    words
        .windows(2)
        .find(|w| w[1] == what)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no {what:?} in {line:?}"))
}

#[test]
fn rebuild_after_a_driver_change_equals_a_clean_build() {
    let d = Demo::new();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    settle();
    let first = build(&d, &["--cache-dir", c]);
    assert!(count(stat_line(&first), "stored") > 0, "{first}");
    change_one_byte(&d.dir().join(DRIVER));
    // What a build that died while replacing the image left aside.
    std::fs::write(d.out().join(".demo-wtg.img.old-4000000"), b"stale").unwrap();
    let again = build(&d, &["--cache-dir", c]);
    let left: Vec<String> = std::fs::read_dir(d.out())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".old-") || n.contains(".partial-") || n.contains("staging"))
        .collect();
    assert!(left.is_empty(), "left in the output folder: {left:?}");
    let hits = count(stat_line(&again), "hits");
    assert!(hits > 10, "the rebuild reused little: {again}");
    // The changed driver's other chunks came from its previous resource.
    let reused = count(stat_line(&again), "chunks");
    assert!(
        reused > 0,
        "no chunk of the changed file was reused: {again}"
    );
    let cached = outputs(&d);
    build(&d, &["--no-cache"]);
    assert_eq!(cached, outputs(&d), "rebuild differs from a clean build");
    // The WIM holds the new bytes of the changed file.
    let o = run(&["cache", "stats", "--cache-dir", c], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("res"), "{}", text(&o));
}

#[test]
fn corrupted_and_truncated_entries_are_dropped_and_rebuilt() {
    let d = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    settle();
    build(&d, &["--cache-dir", c]);
    let clean = outputs(&d);
    // Flip a byte in the body of half the entries of every kind, truncate the rest.
    let mut damaged = 0;
    for kind in ["res", "export", "hash", "verify", "keys"] {
        for (i, p) in entries(cache.path(), kind).into_iter().enumerate() {
            let mut b = std::fs::read(&p).unwrap();
            if i % 2 == 0 {
                let last = b.len() - 1;
                b[last] ^= 0x55;
            } else {
                b.truncate(b.len() - 1);
            }
            std::fs::write(&p, b).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 10);
    let out = build(&d, &["--cache-dir", c]);
    assert!(count(stat_line(&out), "corrupted") > 0, "{out}");
    assert_eq!(clean, outputs(&d), "a damaged cache changed the output");
    // And the cache is whole again: the next build reuses it.
    let out = build(&d, &["--cache-dir", c]);
    assert_eq!(count(stat_line(&out), "corrupted"), 0, "{out}");
    assert_eq!(clean, outputs(&d));
}

#[test]
fn a_corrupted_resource_in_the_middle_of_a_write_is_not_used() {
    // Same size, different byte in the middle of the largest stored
    // resource: only the copy into the WIM can notice it.
    let d = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    settle();
    build(&d, &["--cache-dir", c]);
    let clean = outputs(&d);
    let biggest = entries(cache.path(), "res")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut b = std::fs::read(&biggest).unwrap();
    let mid = b.len() / 2 + 7;
    b[mid] ^= 1;
    std::fs::write(&biggest, b).unwrap();
    let out = build(&d, &["--cache-dir", c]);
    assert!(count(stat_line(&out), "corrupted") >= 1, "{out}");
    assert_eq!(clean, outputs(&d));
}

#[test]
fn two_builds_at_once_share_one_cache() {
    let a = Demo::small();
    let b = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap().to_string();
    settle();
    for round in 0..2 {
        let spawn = |d: &Demo| {
            std::process::Command::new(crate::support::BIN)
                .args([
                    "build",
                    d.recipe().to_str().unwrap(),
                    "-q",
                    "--cache-dir",
                    &c,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (pa, pb) = (spawn(&a), spawn(&b));
        for (p, name) in [(pa, "a"), (pb, "b")] {
            let o = p.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "round {round} build {name}:\n{}",
                text(&o)
            );
        }
        assert_eq!(outputs(&a), outputs(&b), "round {round}");
    }
    let shared = outputs(&a);
    build(&a, &["--no-cache"]);
    assert_eq!(
        shared,
        outputs(&a),
        "shared-cache builds differ from a clean one"
    );
    assert!(std::fs::read_dir(cache.path().join("tmp"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn a_rewrite_with_a_forged_mtime_is_not_served_stale() {
    let d = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    settle();
    build(&d, &["--cache-dir", c]);
    let p = d.dir().join(DRIVER);
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    change_one_byte(&p);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);
    build(&d, &["--cache-dir", c]);
    let cached = outputs(&d);
    build(&d, &["--no-cache"]);
    assert_eq!(
        cached,
        outputs(&d),
        "the forged-mtime file was served stale"
    );
}

#[test]
fn plan_says_which_input_keeps_a_member_from_the_cache() {
    let d = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    settle();
    build(&d, &["--cache-dir", c]);
    std::fs::write(d.dir().join(DRIVER), b"a longer replacement driver inf\r\n").unwrap();
    let r = d.recipe();
    let o = run(&["plan", r.to_str().unwrap(), "--cache-dir", c], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    let line = t
        .lines()
        .find(|l| l.contains("netadapter.inf") && l.trim_start().starts_with("build"))
        .unwrap_or_else(|| panic!("no status line for the driver:\n{t}"));
    assert!(line.contains("changed since it was cached (size"), "{line}");
    assert!(
        t.lines()
            .any(|l| l.trim_start().starts_with("cached") && l.contains("install.wim")),
        "{t}"
    );
    assert!(t.contains("never cached: encrypted"), "{t}");
}

#[test]
fn locked_names_the_drift_and_passes_after_lock() {
    let d = Demo::small();
    let r = d.recipe();
    let r = r.to_str().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    // No lockfile yet: an error (exit 2) saying how to make one.
    let o = run(&["build", r, "-q", "--locked", "--cache-dir", c], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("mediabuild lock"), "{}", text(&o));

    let o = run(&["lock", r, "--cache-dir", c], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let lock = std::fs::read_to_string(d.dir().join("recipe.yaml.lock")).unwrap();
    assert!(lock.contains("input boot_image wim sha256:"), "{lock}");
    assert!(
        lock.contains("input driver_packages[0] folder sha256:"),
        "{lock}"
    );
    assert!(lock.contains("tool wimlib "), "{lock}");
    let body: Vec<&str> = lock.lines().filter(|l| !l.starts_with('#')).collect();
    let mut sorted = body.clone();
    sorted.sort_by_key(|l| !l.starts_with("tool"));
    assert_eq!(body, sorted, "tool lines first");
    build(&d, &["--locked", "--cache-dir", c]);

    change_one_byte(&d.dir().join(DRIVER));
    std::fs::write(
        d.dir().join("content/drivers/surface/Network/new.cat"),
        b"cat",
    )
    .unwrap();
    let o = run(&["build", r, "-q", "--locked", "--cache-dir", c], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("driver_packages[0]"), "{t}");
    assert!(t.contains("changed: Network/netadapter.inf"), "{t}");
    assert!(t.contains("added: Network/new.cat"), "{t}");
    assert!(t.contains("1 input(s) drifted"), "{t}");
    assert!(
        !t.contains("boot_image"),
        "only the driver package drifted: {t}"
    );

    let o = run(&["lock", r, "--cache-dir", c], &[]);
    assert!(o.status.success(), "{}", text(&o));
    build(&d, &["--locked", "--cache-dir", c]);
}

#[test]
fn no_secret_reaches_the_cache() {
    let d = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    build(&d, &["--cache-dir", c]);
    let secrets: Vec<String> = ["secrets/media-password.txt", "secrets/wtg-passphrase.txt"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(d.dir().join(f)).ok())
        .map(|s| s.trim_end().to_string())
        .collect();
    assert!(!secrets.is_empty(), "the demo has secret files");
    for kind in ["res", "export", "hash", "verify", "keys"] {
        for p in entries(cache.path(), kind) {
            let b = std::fs::read(&p).unwrap();
            for s in &secrets {
                for enc in [s.as_bytes().to_vec(), utf16(s)] {
                    assert!(!contains(&b, &enc), "a secret is in {}", p.display());
                }
            }
        }
    }
    let o = run(&["cache", "stats", "--cache-dir", c], &[]);
    assert!(o.status.success());
    let o = run(&["cache", "clean", "--cache-dir", c], &[]);
    assert!(text(&o).contains("removed"), "{}", text(&o));
    assert!(entries(cache.path(), "res").is_empty());
}

#[test]
fn cache_size_limit_evicts() {
    let d = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let out = build(&d, &["--cache-dir", c, "--cache-max-size", "1MiB"]);
    // The demo's entries exceed the limit: eviction happened.
    assert!(count(stat_line(&out), "evicted") > 0, "{out}");
    let bytes: u64 = ["res", "export", "hash", "verify", "keys"]
        .iter()
        .flat_map(|k| entries(cache.path(), k))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        bytes <= 1 << 20,
        "cache holds {bytes} bytes over its 1 MiB limit"
    );
}

#[test]
fn a_wimlib_writer_build_leaves_the_cached_export_bodies_alone() {
    // Found by CI: `--writer wimlib` sets every time in its staging tree to
    // the epoch, and a restored export there is the cache's body itself (a
    // hard link); a concurrent build copying from that body saw its mtime
    // move and failed with "changed while reading".
    use std::os::unix::fs::MetadataExt;
    let a = Demo::small();
    let b = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap().to_string();
    settle();
    build(&a, &["--cache-dir", &c]);
    let bodies: Vec<PathBuf> = entries(cache.path(), "export")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wim"))
        .collect();
    assert!(!bodies.is_empty(), "no export body in the cache");
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.len(), m.mtime(), m.mtime_nsec())
    };
    let before: Vec<_> = bodies.iter().map(|p| stamp(p)).collect();
    build(&b, &["--cache-dir", &c, "--writer", "wimlib"]);
    let after: Vec<_> = bodies.iter().map(|p| stamp(p)).collect();
    assert_eq!(before, after, "a build changed a cached export body");
    // And the wimlib writer's media still equal a clean build's.
    let cached = outputs(&b);
    build(&b, &["--no-cache", "--writer", "wimlib"]);
    assert_eq!(cached, outputs(&b));
}

/// Every file under `dir` (a cache folder), recursively.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(files_in(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn a_no_change_rebuild_stores_nothing_and_costs_few_calls_per_file() {
    // Issue 18: with an entry per input file and a walk of the cache after
    // every store, a no-change rebuild of real-shaped content re-stored
    // thousands of entries and made millions of statx calls.
    let d = Demo::new();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    settle();
    build(&d, &["--cache-dir", c]);
    build(&d, &["--cache-dir", c]);
    let before = files_in(cache.path());
    let files = files_in(&d.dir().join("content")).len();
    assert!(
        files > 500,
        "the demo is real-shaped: {files} content files"
    );
    let again = build(&d, &["--cache-dir", c]);
    let line = stat_line(&again);
    assert_eq!(count(line, "misses"), 0, "{again}");
    assert!(
        count(line, "stored") <= 4,
        "a no-change rebuild stored: {line}"
    );
    assert_eq!(files_in(cache.path()), before, "entries appeared or went");
    assert!(
        before.len() < 2 * files,
        "{} cache files for {files} content files",
        before.len()
    );
    if !tool("strace") {
        return;
    }
    let trace = cache.path().join("strace.txt");
    let r = d.recipe();
    let o = sh(&format!(
        "strace -f -c -o '{}' '{BIN}' build '{}' -q --cache-dir '{c}'",
        trace.display(),
        r.display()
    ));
    assert!(o.status.success(), "{}", text(&o));
    let table = std::fs::read_to_string(&trace).unwrap();
    let calls = |name: &str| -> u64 {
        table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.last() == Some(&name) && w.len() >= 5)
            .and_then(|w| w[3].parse().ok())
            .unwrap_or(0)
    };
    let per = |n: u64| n as f64 / files as f64;
    // Measured: ≈ 7 statx, 4 openat, 6 read per file (the disk image copies
    // every file; the WIM copies stored resources).
    for (name, bound) in [("statx", 16.0), ("openat", 10.0), ("read", 16.0)] {
        assert!(
            per(calls(name)) < bound,
            "{name}: {} calls for {files} files\n{table}",
            calls(name)
        );
    }
}

#[test]
fn a_fresh_checkout_is_served_from_the_cache() {
    // A CI runner restores the cache onto a new checkout: same paths, new
    // inodes and times. Nothing is compressed again.
    let d = Demo::small();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    settle();
    build(&d, &["--cache-dir", c]);
    let clean = outputs(&d);
    let content = d.dir().join("content");
    let copy = d.dir().join("content.copy");
    assert!(sh(&format!(
        "cp -r '{}' '{}' && rm -rf '{}' && mv '{}' '{}'",
        content.display(),
        copy.display(),
        content.display(),
        copy.display(),
        content.display()
    ))
    .status
    .success());
    settle();
    let again = build(&d, &["--cache-dir", c]);
    let line = stat_line(&again);
    // Only the hash index (and the verification marks) are written: every
    // resource was served from the cache after the file was hashed.
    assert!(count(line, "stored") <= 4, "{again}");
    assert_eq!(clean, outputs(&d), "a fresh checkout changed the output");
}

#[test]
fn a_folder_that_is_not_a_cache_is_refused_and_never_emptied() {
    let d = Demo::small();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.docx"), b"years of work").unwrap();
    let c = dir.path().to_str().unwrap();
    for args in [
        vec!["cache", "clean", "--cache-dir", c],
        vec!["cache", "stats", "--cache-dir", c],
    ] {
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("not a mediabuild cache"), "{}", text(&o));
    }
    let r = d.recipe();
    let o = run(&["build", r.to_str().unwrap(), "-q", "--cache-dir", c], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        std::fs::read(dir.path().join("thesis.docx")).unwrap(),
        b"years of work"
    );
    assert_eq!(
        files_in(dir.path()).len(),
        1,
        "nothing created in a foreign folder"
    );
    // A cache folder keeps what is not an entry.
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    build(&d, &["--cache-dir", c]);
    let notes = cache.path().join("res").join("notes.txt");
    std::fs::write(&notes, b"mine").unwrap();
    let o = run(&["cache", "clean", "--cache-dir", c], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(notes.exists(), "clean removed a file that is not an entry");
    assert!(cache.path().join("CACHEDIR.TAG").exists());
}
