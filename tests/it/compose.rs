//! `extends:`: a site recipe is its base deep-merged with its own keys. The
//! judge is a hand-flattened recipe: building both gives the same bytes.
//! Diagnostics point into the file that set a value; the lockfile and the
//! manifests record the chain.

use crate::support::*;
use std::path::{Path, PathBuf};

/// A site recipe over the demo recipe as its base: overrides a scalar, a
/// nested map key, a variable, a secret reference (file → env), replaces a
/// driver package by id, adds a package, removes a driver package.
const SITE: &str = "\
mediabuild: 1
extends: base.yaml
media:
  name: site-a
  management:
    points: [http://mp-a.corp.example]
security:
  password: { env: SITE_A_PASSWORD }
remove:
  driver_packages: [PS100302]
driver_packages:
  - { id: PS100301, name: Surface drivers A, source: content/drivers/surface }
packages:
  - { id: PS100203, name: Site tools, source: content/packages/configmgr-client }
variables:
  OSDComputerName: SITE-A-01
";

/// The same effective recipe written out by hand.
fn flattened(base: &str) -> String {
    let mut t = base.to_string();
    for (from, to) in [
        ("  name: demo-wtg\n", "  name: site-a\n"),
        (
            "    points: [http://mp1.corp.example, http://mp2.corp.example]",
            "    points: [http://mp-a.corp.example]",
        ),
        (
            "  password: { file: secrets/media-password.txt }",
            "  password: { env: SITE_A_PASSWORD }",
        ),
        (
            "  - { id: PS100301, name: Surface drivers, source: content/drivers/surface }\n",
            "  - { id: PS100301, name: Surface drivers A, source: content/drivers/surface }\n",
        ),
        (
            "  - { id: PS100302, name: Driver store, source: content/drivers/store }   # thousands of small files\n",
            "",
        ),
        (
            "  - { id: PS100202, name: BitLocker for Windows To Go, source: content/packages/bitlocker-wtg }\n",
            "  - { id: PS100202, name: BitLocker for Windows To Go, source: content/packages/bitlocker-wtg }\n  - { id: PS100203, name: Site tools, source: content/packages/configmgr-client }\n",
        ),
        ("  OSDComputerName: WTG-DEMO-01", "  OSDComputerName: SITE-A-01"),
    ] {
        assert!(t.contains(from), "demo recipe lacks {from:?}");
        t = t.replacen(from, to, 1);
    }
    t
}

const ENV: &[(&str, &str)] = &[("SITE_A_PASSWORD", "site-A-Media-Passw0rd!")];

fn sums(dir: &Path) -> Vec<(PathBuf, String)> {
    files_under(dir)
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".manifest.json") && !p.ends_with("SHA256SUMS"))
        .map(|p| (p.strip_prefix(dir).unwrap().to_path_buf(), sha256(&p)))
        .collect()
}

fn manifest(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_site_recipe_builds_the_bytes_of_its_hand_flattened_recipe() {
    let d = Demo::small();
    let base = std::fs::read_to_string(d.recipe()).unwrap();
    std::fs::write(d.dir().join("base.yaml"), &base).unwrap();
    let site = d.dir().join("site-a.yaml");
    std::fs::write(&site, SITE).unwrap();
    let flat = d.dir().join("flat.yaml");
    std::fs::write(&flat, flattened(&base)).unwrap();

    let o = run(&["build", site.to_str().unwrap(), "-q"], ENV);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let composed = d.dir().join("out-composed");
    std::fs::rename(d.out(), &composed).unwrap();
    let o = run(&["build", flat.to_str().unwrap(), "-q"], ENV);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Every artefact byte-identical, and the same effective recipe digest.
    let (a, b) = (sums(&composed), sums(&d.out()));
    assert!(a.len() > 3, "{a:?}");
    assert_eq!(a, b);
    let ma = manifest(&composed.join("demo-wtg.wim.manifest.json"));
    let mb = manifest(&d.out().join("demo-wtg.wim.manifest.json"));
    assert_eq!(ma["recipe_digest"], mb["recipe_digest"]);
    // The composed build's manifest records its base (path, sha256 of the text).
    let bases = ma["recipe_bases"].as_array().expect("recipe_bases");
    assert_eq!(bases.len(), 1);
    assert_eq!(bases[0]["path"], "base.yaml");
    assert_eq!(
        bases[0]["sha256"].as_str().unwrap(),
        sha256(&d.dir().join("base.yaml"))
    );
    assert!(
        mb.get("recipe_bases").is_none(),
        "a plain recipe has no bases"
    );
    // The media say what the site says: its variable, no removed driver store.
    let names: Vec<String> = ma["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect();
    assert!(names.contains(&"PS100203".to_string()), "{names:?}");
    assert!(!names.contains(&"PS100302".to_string()), "{names:?}");

    // The lockfile lists the base; a change to the base is drift.
    let o = run(&["lock", site.to_str().unwrap()], ENV);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lock = std::fs::read_to_string(d.dir().join("site-a.yaml.lock")).unwrap();
    let want = format!(
        "base \"base.yaml\" sha256:{}",
        sha256(&d.dir().join("base.yaml"))
    );
    assert!(lock.contains(&want), "{lock}");
    let o = run(&["build", site.to_str().unwrap(), "--locked", "-q"], ENV);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::write(d.dir().join("base.yaml"), format!("{base}# edited\n")).unwrap();
    let o = run(&["build", site.to_str().unwrap(), "--locked", "-q"], ENV);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("base.yaml: the base changed since the lockfile was written"),
        "{}",
        text(&o)
    );
}

/// A base and a site in a fresh folder of the shared demo inputs.
fn chain(name: &str, base_edits: &[(&str, &str)], site: &str) -> (PathBuf, String) {
    let d = shared_inputs();
    let mut base = std::fs::read_to_string(d.recipe()).unwrap();
    for (from, to) in base_edits {
        assert!(base.contains(from), "demo recipe lacks {from:?}");
        base = base.replacen(from, to, 1);
    }
    let b = d.dir().join(format!("{name}-base.yaml"));
    std::fs::write(&b, &base).unwrap();
    let s = d.dir().join(format!("{name}.yaml"));
    std::fs::write(&s, site.replace("base.yaml", &format!("{name}-base.yaml"))).unwrap();
    (s, base)
}

fn check_json(p: &Path) -> (Option<i32>, serde_json::Value, String) {
    let o = run(&["check", p.to_str().unwrap(), "--json"], ENV);
    let v = serde_json::from_slice(&o.stdout).expect("check --json");
    let t = text(&run(&["check", p.to_str().unwrap()], ENV));
    (o.status.code(), v, t)
}

#[test]
fn problems_in_a_base_point_at_the_base_file_and_line() {
    // An unknown key and a bad value, both in the base.
    let (site, base) = chain(
        "cmp-base-errors",
        &[
            ("  unattended: true", "  unatended: true"),
            ("task_sequence: PS100042", "task_sequence: PS10004Z"),
        ],
        SITE,
    );
    let (code, v, t) = check_json(&site);
    assert_eq!(code, Some(2), "{t}");
    let line_of = |needle: &str| base.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let diags = v["diagnostics"].as_array().unwrap();
    let find = |key: &str| {
        diags
            .iter()
            .find(|d| d["key"] == key)
            .unwrap_or_else(|| panic!("no diagnostic for {key}: {v}"))
    };
    let unknown = find("media.unatended");
    assert_eq!(
        unknown["file"],
        site.with_file_name("cmp-base-errors-base.yaml")
            .display()
            .to_string()
    );
    assert_eq!(unknown["pos"]["line"], line_of("unatended"));
    let ts = find("media.task_sequence");
    assert_eq!(ts["pos"]["line"], line_of("PS10004Z"));
    assert!(ts["file"]
        .as_str()
        .unwrap()
        .ends_with("cmp-base-errors-base.yaml"));
    // The text form shows the base's name, line and source line.
    assert!(
        t.contains(&format!(
            "cmp-base-errors-base.yaml:{}:",
            line_of("PS10004Z")
        )),
        "{t}"
    );
    assert!(t.contains("task_sequence: PS10004Z"), "{t}");
    // A problem in the site's own keys stays in the site.
    let (site, _) = chain(
        "cmp-site-error",
        &[],
        &SITE.replace("  name: site-a\n", "  name: site-a\n  colour: red\n"),
    );
    let (code, v, _) = check_json(&site);
    assert_eq!(code, Some(2));
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == "media.colour")
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    assert!(d.get("file").is_none(), "{d}");
    assert_eq!(d["pos"]["line"], 5);
}

#[test]
fn broken_chains_are_errors_naming_the_chain() {
    let d = shared_inputs();
    let dir = d.dir();
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // A cycle through two files.
    w("cmp-cyc-b.yaml", "mediabuild: 1\nextends: cmp-cyc-a.yaml\n");
    let a = w("cmp-cyc-a.yaml", "mediabuild: 1\nextends: cmp-cyc-b.yaml\n");
    let (code, _, t) = check_json(&a);
    assert_eq!(code, Some(2));
    assert!(
        t.contains("`extends` cycle:")
            && t.contains("cmp-cyc-a.yaml → ")
            && t.contains("cmp-cyc-b.yaml → "),
        "{t}"
    );
    // A missing base, at the line that names it.
    let m = w(
        "cmp-missing.yaml",
        "mediabuild: 1\nextends: [cmp-nowhere.yaml]\n",
    );
    let (code, _, t) = check_json(&m);
    assert_eq!(code, Some(2));
    assert!(t.contains("cmp-nowhere.yaml cannot be read"), "{t}");
    assert!(t.contains("cmp-missing.yaml:2:"), "{t}");
    // A base in another format version.
    w("cmp-v2-base.yaml", "mediabuild: 2\nmedia: { name: x }\n");
    let v = w("cmp-v2.yaml", "mediabuild: 1\nextends: cmp-v2-base.yaml\n");
    let (code, _, t) = check_json(&v);
    assert_eq!(code, Some(2));
    assert!(
        t.contains("is written in recipe format 2, the recipe"),
        "{t}"
    );
    assert!(t.contains("cmp-v2-base.yaml:1:"), "{t}");
    // `remove` of an id no base has; `extends` of a number.
    let (site, _) = chain(
        "cmp-remove",
        &[],
        &SITE.replace("[PS100302]", "[PS100302, PS100399]"),
    );
    let (code, _, t) = check_json(&site);
    assert_eq!(code, Some(2));
    assert!(t.contains("PS100399 is not in the driver_packages"), "{t}");
    let n = w("cmp-number.yaml", "mediabuild: 1\nextends: 7\n");
    let (code, _, t) = check_json(&n);
    assert_eq!(code, Some(2));
    assert!(
        t.contains("`extends` takes a path or a list of paths"),
        "{t}"
    );
}

#[test]
fn explain_lists_every_file_that_sets_a_key() {
    let (site, base) = chain("cmp-explain", &[], SITE);
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let explain = |key: &str| {
        let o = run(&["plan", site.to_str().unwrap(), "--explain", key], ENV);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let t = explain("media.name");
    let b = format!(
        "cmp-explain-base.yaml:{}:",
        line_of(&base, "name: demo-wtg")
    );
    let s = format!("cmp-explain.yaml:{}:", line_of(SITE, "name: site-a"));
    assert!(t.contains(&b) && t.contains(&s), "{t}");
    assert!(t.find(&b) < t.find(&s), "merge order: base first\n{t}");
    // By id, with the removal.
    let t = explain("driver_packages[PS100302]");
    assert!(
        t.contains("(removed)") && t.contains("remove.driver_packages[0]"),
        "{t}"
    );
    // A secret reference is named, never shown.
    let t = explain("security.password");
    assert!(
        t.contains("not shown") && !t.contains("SITE_A_PASSWORD"),
        "{t}"
    );
    // A key no file sets.
    let t = explain("media.comment_nowhere");
    assert!(t.contains("set by no file"), "{t}");
}
