//! `RECIPE.lock`: the exact inputs a recipe was built from, and the check
//! that they have not drifted (`mediabuild RECIPE --locked`).
//!
//! A plain text file, one fact per line, sorted, so that a change reads well
//! in `git diff`:
//!
//! ```text
//! # mediabuild lockfile of recipe.yaml; regenerate with `mediabuild lock recipe.yaml`
//! tool mediabuild 0.1.0
//! tool wimlib 1.14.4
//! input boot_image wim sha256:… size=… index=1 image="Windows PE" path="images/boot.wim"
//! input driver_packages[0] folder sha256:… size=… files=3 path="drivers/net"
//! file driver_packages[0] sha256:… size=… path="net.inf"
//! ```
//!
//! WIM inputs are locked by the chosen image's *content* digest: SHA-256
//! over `path\0size\0sha1\n` of every entry of that index (wimlib lists the
//! SHA-1 of each file without reading the data), with the image name and
//! its total size — so rewriting the WIM file with other images or another
//! compression is no drift, while any change inside the image is. Folders
//! (and single-file sources) are locked by a tree digest over relative path,
//! size and SHA-256 of each file, and every file has its own line so that a
//! drift names the files. File digests come through the input hash cache.

use crate::cache::{hashes, Cache};
use crate::diag::Diagnostic;
use crate::ids::hex;
use crate::plan::Plan;
use crate::recipe::locate::Locations;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}; regenerate it with `mediabuild lock`")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Wim(#[from] crate::wim::WimError),
}

/// One locked input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Recipe key, e.g. `driver_packages[0]`.
    pub key: String,
    /// `wim`, `folder`.
    pub kind: String,
    pub sha256: String,
    /// Other facts: size, index, image, files, path (sorted by name).
    pub facts: BTreeMap<String, String>,
    /// Files of a folder: relative path → (size, sha256).
    pub files: BTreeMap<String, (u64, String)>,
}

/// The whole lockfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lock {
    pub tools: BTreeMap<String, String>,
    /// The bases of the recipe (`extends:`): path relative to the recipe's
    /// folder → sha256 of the text.
    pub bases: BTreeMap<String, String>,
    pub inputs: BTreeMap<String, Input>,
}

pub use crate::recipe::lock_path;

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// Every input of `plan`, digested now.
pub fn compute(plan: &Plan, cache: Option<&Cache>) -> Result<Lock, LockError> {
    let mut lock = Lock::default();
    lock.tools
        .insert("mediabuild".into(), env!("CARGO_PKG_VERSION").into());
    lock.tools.insert("wimlib".into(), crate::wim::version());
    for b in &plan.bases {
        lock.bases.insert(b.path.clone(), b.sha256.clone());
    }
    let rel = |p: &Path| p.strip_prefix(&plan.dir).unwrap_or(p).display().to_string();
    for (key, img) in [
        ("boot_image", &plan.boot_image),
        ("os_image", &plan.os_image),
    ] {
        let wim = crate::wim::Wim::open(&img.source)?;
        let mut h = Sha256::new();
        let mut size = 0u64;
        for e in wim.list(img.index)? {
            if e.is_dir {
                h.update(format!("{}/\0\0\n", e.path).as_bytes());
            } else {
                h.update(format!("{}\0{}\0{}\n", e.path, e.size, hex(&e.sha1)).as_bytes());
                size += e.size;
            }
        }
        let facts = BTreeMap::from([
            ("index".to_string(), img.index.to_string()),
            ("image".to_string(), quote(&img.name)),
            ("size".to_string(), size.to_string()),
            (
                "path".to_string(),
                quote(&img.origin.clone().unwrap_or_else(|| rel(&img.source))),
            ),
        ]);
        lock.inputs.insert(
            key.into(),
            Input {
                key: key.into(),
                kind: "wim".into(),
                sha256: hex(&h.finalize()),
                facts,
                files: BTreeMap::new(),
            },
        );
    }
    let folders = plan.recorded.lock_inputs.clone();
    for (key, src) in folders {
        let abs = plan.dir.join(&src);
        let walked = crate::fsutil::walk(&abs).map_err(|source| LockError::Read {
            path: abs.clone(),
            source,
        })?;
        let mut digests = Vec::with_capacity(walked.len());
        for w in &walked {
            let d = hashes::file_digests(cache, &w.abs).map_err(|source| LockError::Read {
                path: w.abs.clone(),
                source,
            })?;
            digests.push((w.rel.clone(), d.size, d.sha256));
        }
        // The same tree digest as the manifest's folder inputs.
        let (size, tree) = crate::cache::hashes::tree_digest(&digests);
        let files: BTreeMap<_, _> = digests
            .into_iter()
            .map(|(rel, size, d)| (rel, (size, hex(&d))))
            .collect();
        let facts = BTreeMap::from([
            ("files".to_string(), walked.len().to_string()),
            ("size".to_string(), size.to_string()),
            ("path".to_string(), quote(&src.display().to_string())),
        ]);
        lock.inputs.insert(
            key.clone(),
            Input {
                key,
                kind: "folder".into(),
                sha256: hex(&tree),
                facts,
                files,
            },
        );
    }
    Ok(lock)
}

/// The lockfile text for `recipe_name`.
pub fn render(lock: &Lock, recipe_name: &str) -> String {
    let mut s = format!(
        "# mediabuild lockfile of {recipe_name}: the exact inputs it was built from.\n\
         # Check with `mediabuild {recipe_name} --locked`; regenerate with `mediabuild lock {recipe_name}`.\n"
    );
    for (k, v) in &lock.tools {
        let _ = writeln!(s, "tool {k} {v}");
    }
    for (path, sha) in &lock.bases {
        let _ = writeln!(s, "base {} sha256:{sha}", quote(path));
    }
    for i in lock.inputs.values() {
        let _ = write!(s, "input {} {} sha256:{}", i.key, i.kind, i.sha256);
        for name in ["size", "index", "image", "files", "path"] {
            if let Some(v) = i.facts.get(name) {
                let _ = write!(s, " {name}={v}");
            }
        }
        s.push('\n');
        for (rel, (size, sha)) in &i.files {
            let _ = writeln!(
                s,
                "file {} sha256:{sha} size={size} path={}",
                i.key,
                quote(rel)
            );
        }
    }
    s
}

/// Splits a line into tokens; `name="json string"` values are decoded.
fn tokens(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '"' => {
                // Find the closing quote, honouring escapes, and decode as JSON.
                let start = i;
                let mut end = None;
                let mut esc = false;
                for (j, d) in chars.by_ref() {
                    if esc {
                        esc = false;
                    } else if d == '\\' {
                        esc = true;
                    } else if d == '"' {
                        end = Some(j);
                        break;
                    }
                }
                let end = end.ok_or("unterminated quoted value")?;
                let v: String = serde_json::from_str(&line[start..=end])
                    .map_err(|e| format!("bad quoted value: {e}"))?;
                cur.push_str(&v);
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn fact(tok: &str) -> Option<(String, String)> {
    tok.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
}

/// Parses a lockfile written by [`render`].
pub fn parse(text: &str, path: &Path) -> Result<Lock, LockError> {
    let mut lock = Lock::default();
    for (n, line) in text.lines().enumerate() {
        let err = |message: String| LockError::Parse {
            path: path.to_path_buf(),
            line: n + 1,
            message,
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let t = tokens(line).map_err(err)?;
        let sha = |s: &str| s.strip_prefix("sha256:").map(str::to_string);
        match t.first().map(String::as_str) {
            Some("tool") if t.len() == 3 => {
                lock.tools.insert(t[1].clone(), t[2].clone());
            }
            Some("base") if t.len() == 3 => {
                let sha256 = sha(&t[2]).ok_or_else(|| err("expected sha256:…".into()))?;
                lock.bases.insert(t[1].clone(), sha256);
            }
            Some("input") if t.len() >= 4 => {
                let sha256 = sha(&t[3]).ok_or_else(|| err("expected sha256:…".into()))?;
                let mut facts = BTreeMap::new();
                for tok in &t[4..] {
                    let (k, v) = fact(tok).ok_or_else(|| err(format!("bad fact {tok:?}")))?;
                    // Keep strings quoted as `render` writes them, for comparison.
                    let v = if k == "image" || k == "path" {
                        quote(&v)
                    } else {
                        v
                    };
                    facts.insert(k, v);
                }
                lock.inputs.insert(
                    t[1].clone(),
                    Input {
                        key: t[1].clone(),
                        kind: t[2].clone(),
                        sha256,
                        facts,
                        files: BTreeMap::new(),
                    },
                );
            }
            Some("file") if t.len() == 5 => {
                let sha256 = sha(&t[2]).ok_or_else(|| err("expected sha256:…".into()))?;
                let size = fact(&t[3])
                    .filter(|(k, _)| k == "size")
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .ok_or_else(|| err("expected size=N".into()))?;
                let rel = fact(&t[4])
                    .filter(|(k, _)| k == "path")
                    .map(|(_, v)| v)
                    .ok_or_else(|| err("expected path=\"…\"".into()))?;
                let input = lock
                    .inputs
                    .get_mut(&t[1])
                    .ok_or_else(|| err(format!("file line before its input {}", t[1])))?;
                input.files.insert(rel, (size, sha256));
            }
            _ => return Err(err(format!("unexpected line {line:?}"))),
        }
    }
    Ok(lock)
}

/// Writes `RECIPE.lock` for `plan` (beside the target, then renamed).
pub fn write(plan: &Plan, cache: Option<&Cache>) -> Result<(PathBuf, Lock), LockError> {
    let lock = compute(plan, cache)?;
    let path = lock_path(&plan.recipe_file);
    let name = plan
        .recipe_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.lock.partial-{}", std::process::id()));
    std::fs::write(&tmp, render(&lock, &name))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            LockError::Write {
                path: path.clone(),
                source,
            }
        })?;
    Ok((path, lock))
}

/// Reads `RECIPE.lock` (None when there is none).
pub fn read(recipe: &Path) -> Result<Option<Lock>, LockError> {
    let path = lock_path(recipe);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LockError::Read { path, source }),
    }
}

fn list(names: &[&String]) -> String {
    const SHOWN: usize = 8;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        let _ = write!(s, " and {} more", names.len() - SHOWN);
    }
    s
}

/// Every difference between the lockfile and the inputs now, one
/// diagnostic per drifted input (positions from the recipe's text).
pub fn drift(locked: &Lock, now: &Lock, recipe_text: &str) -> Vec<Diagnostic> {
    let locs = Locations::index(recipe_text);
    let fix = "if the change is intended, run `mediabuild lock RECIPE` and commit the new lockfile";
    let mut out = Vec::new();
    for (tool, v) in &locked.tools {
        let cur = now.tools.get(tool).map(String::as_str).unwrap_or("none");
        if cur != v {
            out.push(
                Diagnostic::error(
                    "",
                    format!("locked with {tool} {v}, this is {tool} {cur} (other versions write other bytes)"),
                )
                .fix(fix),
            );
        }
    }
    let bases: std::collections::BTreeSet<&String> =
        locked.bases.keys().chain(now.bases.keys()).collect();
    for b in bases {
        let msg = match (locked.bases.get(b), now.bases.get(b)) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(_), Some(_)) => "the base changed since the lockfile was written",
            (Some(_), None) => "the recipe no longer extends this base",
            (None, _) => "the recipe extends this base, which the lockfile does not list",
        };
        out.push(
            Diagnostic::error("extends", format!("{b}: {msg}"))
                .value(b)
                .fix(fix),
        );
    }
    let keys: std::collections::BTreeSet<&String> =
        locked.inputs.keys().chain(now.inputs.keys()).collect();
    for key in keys {
        let pos = locs.value(&format!("{key}.source")).or(locs.value(key));
        let d = match (locked.inputs.get(key), now.inputs.get(key)) {
            (Some(_), None) => Diagnostic::error(
                key.as_str(),
                "is in the lockfile but no longer in the recipe",
            ),
            (None, Some(_)) => {
                Diagnostic::error(key.as_str(), "is in the recipe but not in the lockfile")
            }
            (Some(a), Some(b)) if a.sha256 != b.sha256 || a.facts != b.facts => {
                let mut how = Vec::new();
                for (k, v) in &a.facts {
                    let nv = b.facts.get(k).map(String::as_str).unwrap_or("none");
                    if nv != v {
                        how.push(format!("{k} {v} → {nv}"));
                    }
                }
                if a.kind == "wim" && a.sha256 != b.sha256 {
                    how.push("the image's content changed".into());
                }
                let changed: Vec<&String> = a
                    .files
                    .iter()
                    .filter(|(p, v)| b.files.get(*p).is_some_and(|w| w != *v))
                    .map(|(p, _)| p)
                    .collect();
                let removed: Vec<&String> = a
                    .files
                    .keys()
                    .filter(|p| !b.files.contains_key(*p))
                    .collect();
                let added: Vec<&String> = b
                    .files
                    .keys()
                    .filter(|p| !a.files.contains_key(*p))
                    .collect();
                for (what, names) in [("changed", changed), ("added", added), ("removed", removed)]
                {
                    if !names.is_empty() {
                        how.push(format!("{what}: {}", list(&names)));
                    }
                }
                Diagnostic::error(
                    key.as_str(),
                    format!("{} drifted from the lockfile: {}", a.kind, how.join("; ")),
                )
                .value(format!("sha256:{} → sha256:{}", a.sha256, b.sha256))
            }
            _ => continue,
        };
        out.push(d.at(pos).fix(fix));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_round_trip_with_odd_names() {
        let mut lock = Lock::default();
        lock.tools.insert("mediabuild".into(), "0.1.0".into());
        let files = BTreeMap::from([
            ("a b/\"q\".inf".to_string(), (3, "ab".repeat(32))),
            ("x=y.sys".to_string(), (0, "cd".repeat(32))),
        ]);
        lock.inputs.insert(
            "packages[0]".into(),
            Input {
                key: "packages[0]".into(),
                kind: "folder".into(),
                sha256: "ef".repeat(32),
                facts: BTreeMap::from([
                    ("files".into(), "2".into()),
                    ("size".into(), "3".into()),
                    ("path".into(), quote("pk g/one")),
                ]),
                files,
            },
        );
        let text = render(&lock, "r.yaml");
        assert_eq!(parse(&text, Path::new("r.yaml.lock")).unwrap(), lock);
        assert!(drift(&lock, &lock, "").is_empty());
    }

    #[test]
    fn drift_names_the_files() {
        let mk = |sha: &str| Input {
            key: "driver_packages[0]".into(),
            kind: "folder".into(),
            sha256: sha.into(),
            facts: BTreeMap::new(),
            files: BTreeMap::from([("net.inf".to_string(), (1, sha.to_string()))]),
        };
        let mut a = Lock::default();
        a.inputs.insert("driver_packages[0]".into(), mk("aa"));
        let mut b = Lock::default();
        b.inputs.insert("driver_packages[0]".into(), mk("bb"));
        let d = drift(&a, &b, "");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].key, "driver_packages[0]");
        assert!(
            d[0].message.contains("changed: net.inf"),
            "{}",
            d[0].message
        );
    }
}
