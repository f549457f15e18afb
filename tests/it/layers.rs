//! The architecture, enforced: the product's modules form layers
//! (model → execution → tools), each module imports only from its own layer
//! or the ones below, and the modules import each other without a cycle.
//! The engines below them are workspace crates (`crates/`), which the
//! compiler keeps from importing the product. `docs/architecture.md` draws
//! the same picture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first; a module may import modules of its own layer
/// (without a cycle) and of the layers below it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "engines (crates/, re-exported by src/lib.rs)",
        &[
            "units", "ids", "diag", "fsutil", "wim", "wimwrite", "fat32", "disk",
        ],
    ),
    ("base", &["progress"]),
    (
        "model",
        &[
            "recipe",
            "configmgr",
            "bootfiles",
            "security",
            "validate",
            "media",
            "formats",
            "plan",
        ],
    ),
    ("execution", &["cache", "lock", "exec", "render", "build"]),
    ("tools", &["site", "demo", "inspect", "bench"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments, string and character literals (so that a
/// path named in a doc comment or a message is not an import).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) && {
            // a raw string, unless `r` ends an identifier
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
        } {
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // a char literal ('x', '\n', '\u{..}') or a lifetime ('a)
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            // Copy one whole UTF-8 character.
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The top-level modules a piece of code names through `crate::`: paths
/// (`crate::plan::Plan`) and groups (`use crate::{plan::Plan, media}`).
fn imported_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `mycrate::`, not `crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of a group: split at depth-0 commas.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        item.push(c)
                    }
                    '}' if depth == 0 => {
                        found.insert(first_ident(&item));
                        break;
                    }
                    '}' => {
                        depth -= 1;
                        item.push(c)
                    }
                    ',' if depth == 0 => {
                        found.insert(first_ident(&item));
                        item.clear();
                    }
                    c => item.push(c),
                }
            }
        } else {
            found.insert(first_ident(rest));
        }
    }
    found.remove("");
    found
}

fn first_ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// module → module it imports → files that do.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn import_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        // The crate roots and the binary's own modules sit above every layer.
        if matches!(top.as_str(), "lib" | "main" | "cli") {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        let entry = g.entry(top.clone()).or_default();
        for m in imported_modules(&code) {
            if m != top && m != "self" && m != "super" {
                entry.entry(m).or_default().insert(rel.clone());
            }
        }
    }
    g
}

/// A cycle among the modules, if there is one (depth-first search).
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        m: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for next in g
            .get(m)
            .map(|e| e.keys().cloned().collect::<Vec<String>>())
            .unwrap_or_default()
        {
            match state.get(&next) {
                Some(1) => {
                    let from = stack.iter().position(|s| *s == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(g, &next, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if !state.contains_key(m) {
            if let Some(c) = visit(g, m, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn modules_import_downward_only_and_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = import_graph(&src);
    let mut problems = Vec::new();
    for (from, edges) in &g {
        let Some(lf) = layer_of(from) else {
            problems.push(format!(
                "src/{from}: a module in no layer; add it to LAYERS in tests/it/layers.rs and to docs/architecture.md"
            ));
            continue;
        };
        for (to, files) in edges {
            match layer_of(to) {
                None => problems.push(format!(
                    "src/{from} imports `crate::{to}`, a module in no layer"
                )),
                Some(lt) if lt > lf => problems.push(format!(
                    "upward import: {} (layer {}) imports `crate::{to}` (layer {}) in {}",
                    from,
                    LAYERS[lf].0,
                    LAYERS[lt].0,
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
                _ => {}
            }
        }
    }
    if let Some(c) = find_cycle(&g) {
        let hops: Vec<String> = c
            .windows(2)
            .map(|w| {
                let files = &g[&w[0]][&w[1]];
                format!("{} → {} ({})", w[0], w[1], files.iter().next().unwrap())
            })
            .collect();
        problems.push(format!("import cycle: {}", hops.join(", ")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The engines are crates: nothing under src/ holds one any more.
    for engine in LAYERS[0].1 {
        assert!(
            !src.join(engine).exists() && !src.join(format!("{engine}.rs")).exists(),
            "src/{engine} should be the crate crates/{engine}"
        );
    }
}

#[test]
fn the_engine_crates_import_nothing_of_the_product() {
    // Cargo refuses a cycle between crates, so an engine that depends on
    // nothing of the product cannot import it; this names one that tries
    // (as a dependency or a dev-dependency).
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let mut bad = Vec::new();
    for engine in LAYERS[0].1 {
        let toml = crates.join(engine).join("Cargo.toml");
        let text =
            std::fs::read_to_string(&toml).unwrap_or_else(|e| panic!("{}: {e}", toml.display()));
        if text
            .lines()
            .any(|l| l.trim_start().starts_with("mediabuild =") || l.contains("path = \"../..\""))
        {
            bad.push(format!("{} depends on the product", toml.display()));
        }
        let mut files = Vec::new();
        rust_files(&crates.join(engine), &mut files);
        for f in files {
            if code_only(&std::fs::read_to_string(&f).unwrap()).contains("mediabuild::") {
                bad.push(format!("{}: names the product crate", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_import_reader_sees_groups_and_ignores_comments_and_strings() {
    let code = code_only(
        "use crate::{plan::{Plan, X}, media};\n// crate::build\nlet s = \"crate::cache\";\nlet c = '{';\nfn f<'a>() { crate::render::x(); }\n/* crate::lock */",
    );
    let got = imported_modules(&code);
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ["media", "plan", "render"],
        "{code}"
    );
    let mut g = Graph::new();
    g.entry("a".into())
        .or_default()
        .entry("b".into())
        .or_default()
        .insert("a.rs".into());
    assert!(find_cycle(&g).is_none());
    g.entry("b".into())
        .or_default()
        .entry("a".into())
        .or_default()
        .insert("b.rs".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "a"]);
}
