//! `extends:` — a recipe as its bases deep-merged in order, then its own keys.
//!
//! The rules (docs/fleet.md): maps merge key by key; the content lists
//! (`applications`, `packages`, `driver_packages`) merge by `id` — an entry
//! with a base's id replaces that entry, `remove: { LIST: [ID, …] }` drops
//! entries of the bases; `variables` merge by name (a variable's value, like
//! every secret reference, is replaced whole); other lists and scalars replace.
//!
//! Every node of the result remembers the file and the key path it was set at,
//! so the composed recipe's [`Locations`] point each diagnostic at the file and
//! line where the effective value was written, and `plan --explain KEY` can
//! list the files that set a key.

use super::locate::Locations;
use super::secret::is_secret_path;
use crate::diag::{Diagnostic, Pos};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The content lists, merged by `id`.
pub const CONTENT_LISTS: &[&str] = &["applications", "packages", "driver_packages"];

/// The most files a chain may have (a recipe and its bases).
pub const MAX_FILES: usize = 32;

/// One file of a recipe's chain.
#[derive(Debug, Clone)]
pub struct ChainFile {
    /// As named: the recipe's path as given, a base's path joined to the
    /// folder of the file that names it.
    pub path: PathBuf,
    pub text: String,
    pub sha256: String,
    /// The file's own keys (unknown keys removed), for `--explain`.
    pub value: Value,
    pub locs: Locations,
}

/// A recipe and its bases, composed.
pub struct Composed {
    /// `files[0]` is the recipe; its bases follow in the order first named.
    pub files: Vec<ChainFile>,
    /// The order the files were merged in (bases first, the recipe last).
    pub order: Vec<usize>,
    /// The effective recipe.
    pub value: Value,
    /// Positions in the effective recipe, each in the file that set it.
    pub locs: Locations,
}

/// Where a node was written: file index and key path in that file.
#[derive(Debug, Clone)]
struct Origin {
    file: u16,
    path: String,
}

#[derive(Debug, Clone)]
enum Node {
    Map(Vec<(Value, Node)>, Origin),
    Seq(Vec<Node>, Origin),
    Leaf(Value, Origin),
}

/// Whether `value` (a recipe file's top level) asks for composition.
pub fn wants(value: &Value) -> bool {
    value.get("extends").is_some() || value.get("remove").is_some()
}

/// `sha256` of a text, hex.
pub fn text_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Composes the recipe at `path` (its text already read and its value
/// already checked for unknown keys, at `locs`). Diagnostics are about any
/// file of the chain (their positions say which); a base that cannot be read
/// is left out, so the rest is still checked.
pub fn compose(
    path: &Path,
    text: &str,
    value: Value,
    locs: Locations,
) -> (Composed, Vec<Diagnostic>) {
    let mut c = Composer {
        files: vec![ChainFile {
            path: path.to_path_buf(),
            text: text.to_string(),
            sha256: text_sha256(text),
            value: value.clone(),
            locs,
        }],
        canonical: vec![std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())],
        parent: vec![None],
        order: Vec::new(),
        diags: Vec::new(),
    };
    let mut stack = vec![0usize];
    let node = c.effective(0, value, &mut stack);
    // Every file states the same format version.
    let version = |f: &ChainFile| f.value.get("mediabuild").cloned();
    let own = version(&c.files[0]);
    for i in 1..c.files.len() {
        let v = version(&c.files[i]);
        if v.is_none() || v != own {
            let shown = v.as_ref().map(show).unwrap_or_else(|| "none".into());
            let pos = c.files[i].locs.value("mediabuild");
            c.diags.push(
                Diagnostic::error(
                    "mediabuild",
                    format!(
                        "base {} is written in recipe format {shown}, the recipe {} in {} (chain: {})",
                        c.files[i].path.display(),
                        c.files[0].path.display(),
                        own.as_ref().map(show).unwrap_or_else(|| "none".into()),
                        c.chain_to(i)
                    ),
                )
                .at(pos.or(Some(Pos { line: 1, col: 1, file: i as u16 })))
                .fix("every file of a chain starts with the same `mediabuild:` version"),
            );
        }
    }
    let mut locs = Locations::default();
    let value = flatten(node, "", &c.files, &mut locs);
    (
        Composed {
            files: c.files,
            order: c.order,
            value,
            locs,
        },
        c.diags,
    )
}

struct Composer {
    files: Vec<ChainFile>,
    canonical: Vec<PathBuf>,
    /// The file that first named each file (None: the recipe).
    parent: Vec<Option<usize>>,
    order: Vec<usize>,
    diags: Vec<Diagnostic>,
}

impl Composer {
    /// File `i`'s effective node: its bases merged in order, then its own keys.
    fn effective(&mut self, i: usize, value: Value, stack: &mut Vec<usize>) -> Node {
        let file = i as u16;
        let mut own = to_node(value, file, "");
        let bases = self.take_key(&mut own, "extends");
        let removes = self.take_key(&mut own, "remove");
        let mut merged: Option<Node> = None;
        for (name, at) in self.base_names(i, bases) {
            let Some(j) = self.open_base(i, &name, at, stack) else {
                continue;
            };
            stack.push(j);
            let v = self.files[j].value.clone();
            let base = self.effective(j, v, stack);
            stack.pop();
            match &mut merged {
                None => merged = Some(base),
                Some(m) => merge(m, base, ""),
            }
        }
        if !self.order.contains(&i) {
            self.order.push(i);
        }
        let mut merged = merged.unwrap_or_else(|| Node::Map(Vec::new(), origin(file, "")));
        if let Some(r) = removes {
            self.apply_removes(&mut merged, r, i);
        }
        merge(&mut merged, own, "");
        merged
    }

    /// Removes top-level `key` from `node`, returning its node.
    fn take_key(&mut self, node: &mut Node, key: &str) -> Option<Node> {
        let Node::Map(entries, _) = node else {
            return None;
        };
        let at = entries.iter().position(|(k, _)| k.as_str() == Some(key))?;
        Some(entries.remove(at).1)
    }

    /// The base paths `extends` names (a string or a list of strings).
    fn base_names(&mut self, i: usize, node: Option<Node>) -> Vec<(String, Pos)> {
        let at = |o: &Origin, files: &[ChainFile]| {
            let (k, v) = files[o.file as usize].locs.exact(&o.path);
            v.or(k).unwrap_or(Pos {
                line: 1,
                col: 1,
                file: o.file,
            })
        };
        let bad = |s: &mut Self, o: &Origin| {
            let pos = at(o, &s.files);
            s.diags.push(
                Diagnostic::error(
                    "extends",
                    format!(
                        "in {}: `extends` takes a path or a list of paths",
                        s.files[i].path.display()
                    ),
                )
                .at(Some(pos))
                .fix("write `extends: base.yaml` or `extends: [base.yaml, site-facts.yaml]`"),
            );
        };
        match node {
            None => Vec::new(),
            Some(Node::Leaf(Value::String(s), o)) => vec![(s, at(&o, &self.files))],
            Some(Node::Seq(items, _)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Node::Leaf(Value::String(s), o) => out.push((s, at(&o, &self.files))),
                        Node::Leaf(_, o) | Node::Map(_, o) | Node::Seq(_, o) => bad(self, &o),
                    }
                }
                out
            }
            Some(Node::Leaf(_, o) | Node::Map(_, o)) => {
                bad(self, &o);
                Vec::new()
            }
        }
    }

    /// The chain from the recipe to file `j`, for messages (`a.yaml → b.yaml`).
    fn chain_to(&self, j: usize) -> String {
        let mut names = vec![self.files[j].path.display().to_string()];
        let mut cur = j;
        while let Some(p) = self.parent[cur] {
            names.push(self.files[p].path.display().to_string());
            cur = p;
        }
        names.reverse();
        names.join(" → ")
    }

    /// Reads the base `name` of file `i` (relative to its folder), or
    /// reports why it cannot be used. Returns its index.
    fn open_base(&mut self, i: usize, name: &str, at: Pos, stack: &[usize]) -> Option<usize> {
        let dir = self.files[i].path.parent().unwrap_or(Path::new(""));
        let path = dir.join(name);
        let chain = stack
            .iter()
            .map(|&k| self.files[k].path.display().to_string())
            .collect::<Vec<_>>()
            .join(" → ");
        let fail = |s: &mut Self, msg: String, fix: &str| {
            s.diags.push(
                Diagnostic::error("extends", msg)
                    .value(name)
                    .at(Some(at))
                    .fix(fix.to_string()),
            );
            None
        };
        let unreadable = |e: &std::io::Error| {
            format!(
                "base {} cannot be read: {e} (chain: {chain})",
                path.display()
            )
        };
        let canonical = match std::fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    self,
                    unreadable(&e),
                    "give the path of a recipe file, relative to the file that names it",
                )
            }
        };
        if let Some(k) = self.canonical.iter().position(|c| *c == canonical) {
            if stack.contains(&k) {
                return fail(
                    self,
                    format!(
                        "`extends` cycle: {chain} → {}",
                        self.files[k].path.display()
                    ),
                    "a base must not extend, directly or through others, a file that extends it",
                );
            }
            return Some(k);
        }
        if self.files.len() >= MAX_FILES {
            return fail(
                self,
                format!("more than {MAX_FILES} files in the chain (chain: {chain})"),
                "flatten the chain: a base may itself extend bases, but not endlessly",
            );
        }
        let text = match crate::fsutil::read_small_text(&path, crate::fsutil::SMALL_FILE_MAX) {
            Ok(t) => t,
            Err(e) => return fail(self, unreadable(&e), "save the base as a UTF-8 YAML file"),
        };
        // Paths in a base are read from the recipe's folder (docs/fleet.md).
        let folder = |p: &Path| p.parent().map(Path::to_path_buf);
        if folder(&canonical) != folder(&self.canonical[0]) {
            self.diags.push(
                Diagnostic::warning(
                    "extends",
                    format!(
                        "base {} is in another folder than the recipe: the relative paths it sets are read from the recipe's folder",
                        path.display()
                    ),
                )
                .value(name)
                .at(Some(at))
                .fix("keep bases beside the recipes that extend them, or write the paths the base sets relative to the recipe"),
            );
        }
        let j = self.files.len();
        let file = j as u16;
        let locs = Locations::index(&text).in_file(file);
        let (value, mut diags) = super::load::read_value(&text, &locs);
        for d in &mut diags {
            d.pos = Some(d.pos.map_or(
                Pos {
                    line: 1,
                    col: 1,
                    file,
                },
                |p| Pos { file, ..p },
            ));
        }
        self.diags.extend(diags);
        self.files.push(ChainFile {
            path,
            sha256: text_sha256(&text),
            text,
            value: value.unwrap_or(Value::Mapping(Mapping::new())),
            locs,
        });
        self.canonical.push(canonical);
        self.parent.push(Some(i));
        Some(j)
    }

    /// Drops the entries `remove: { LIST: [ID, …] }` (of file `i`) names
    /// from the merged bases.
    fn apply_removes(&mut self, merged: &mut Node, removes: Node, i: usize) {
        let Node::Map(lists, _) = removes else {
            return; // the schema check has reported a `remove` that is not a map
        };
        let Node::Map(entries, _) = merged else {
            return;
        };
        for (list, ids) in lists {
            let Some(list) = list.as_str().map(str::to_string) else {
                continue;
            };
            let Node::Seq(ids, _) = ids else {
                continue;
            };
            let items = entries
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(list.as_str()))
                .map(|(_, v)| v);
            let mut items = match items {
                Some(Node::Seq(items, _)) => Some(items),
                _ => None,
            };
            for id in ids {
                let Node::Leaf(idv, o) = id else {
                    continue;
                };
                let want = show_id(&idv);
                let found = items.as_mut().and_then(|v| {
                    v.iter()
                        .position(|n| id_of(n).as_deref() == Some(want.as_str()))
                });
                match (found, items.as_mut()) {
                    (Some(at), Some(v)) => {
                        v.remove(at);
                    }
                    _ => {
                        let (k, v) = self.files[o.file as usize].locs.exact(&o.path);
                        self.diags.push(
                            Diagnostic::error(
                                format!("remove.{list}"),
                                format!(
                                    "{want} is not in the {list} of {}'s bases: nothing to remove",
                                    self.files[i].path.display()
                                ),
                            )
                            .value(&want)
                            .at(v.or(k))
                            .fix(format!("name the id of an entry of `{list}` in a base (`mediabuild plan --explain {list}` lists them)")),
                        );
                    }
                }
            }
        }
    }
}

fn origin(file: u16, path: &str) -> Origin {
    Origin {
        file,
        path: path.to_string(),
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// A map key as it appears in a key path.
fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

fn show(v: &Value) -> String {
    serde_yaml::to_string(v)
        .unwrap_or_default()
        .trim()
        .replace('\n', " ")
}

fn show_id(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

fn to_node(v: Value, file: u16, path: &str) -> Node {
    match v {
        Value::Mapping(m) => Node::Map(
            m.into_iter()
                .map(|(k, v)| {
                    let p = join(path, &key_str(&k));
                    (k, to_node(v, file, &p))
                })
                .collect(),
            origin(file, path),
        ),
        Value::Sequence(s) => Node::Seq(
            s.into_iter()
                .enumerate()
                .map(|(i, v)| to_node(v, file, &format!("{path}[{i}]")))
                .collect(),
            origin(file, path),
        ),
        Value::Tagged(t) => to_node(t.value, file, path),
        other => Node::Leaf(other, origin(file, path)),
    }
}

/// The `id` of a content entry.
fn id_of(n: &Node) -> Option<String> {
    let Node::Map(entries, _) = n else {
        return None;
    };
    entries.iter().find_map(|(k, v)| match (k.as_str(), v) {
        (Some("id"), Node::Leaf(id, _)) => Some(show_id(id)),
        _ => None,
    })
}

/// Whether the value at `path` is replaced whole rather than merged key by
/// key: a variable's value (a string or a reference) and every secret
/// reference (`{ env }` over `{ file }` must not leave both).
fn replaced_whole(path: &str) -> bool {
    is_secret_path(path)
        || path
            .strip_prefix("variables.")
            .is_some_and(|r| !r.is_empty())
}

/// Merges `src` over `dst` (the node at key path `path` of the result).
fn merge(dst: &mut Node, src: Node, path: &str) {
    match (dst, src) {
        (Node::Map(d, _), Node::Map(s, _)) if !replaced_whole(path) => {
            for (k, sv) in s {
                let p = join(path, &key_str(&k));
                match d.iter_mut().find(|(dk, _)| *dk == k) {
                    Some((_, dv)) => merge(dv, sv, &p),
                    None => d.push((k, sv)),
                }
            }
        }
        (Node::Seq(d, _), Node::Seq(s, _)) if CONTENT_LISTS.contains(&path) => {
            for item in s {
                let at = id_of(&item).and_then(|id| {
                    d.iter()
                        .position(|x| id_of(x).as_deref() == Some(id.as_str()))
                });
                match at {
                    Some(i) => d[i] = item,
                    None => d.push(item),
                }
            }
        }
        (dst, src) => *dst = src,
    }
}

/// The value of `node` (at key path `path` of the result), recording in
/// `locs` where each of its keys and values was written.
fn flatten(node: Node, path: &str, files: &[ChainFile], locs: &mut Locations) -> Value {
    let o = match &node {
        Node::Map(_, o) | Node::Seq(_, o) | Node::Leaf(_, o) => o.clone(),
    };
    if let Some(f) = files.get(o.file as usize) {
        let (k, v) = f.locs.exact(&o.path);
        locs.insert(path, k, v);
    }
    match node {
        Node::Map(entries, _) => {
            let mut m = Mapping::new();
            for (k, v) in entries {
                let p = join(path, &key_str(&k));
                m.insert(k, flatten(v, &p, files, locs));
            }
            Value::Mapping(m)
        }
        Node::Seq(items, _) => Value::Sequence(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| flatten(v, &format!("{path}[{i}]"), files, locs))
                .collect(),
        ),
        Node::Leaf(v, _) => v,
    }
}

/// The chain of the recipe at `path` with text `text`, composed whether or
/// not it extends anything (for `plan --explain`); None when the text is not
/// a YAML mapping.
pub fn of_text(path: &Path, text: &str) -> Option<Composed> {
    let locs = Locations::index(text);
    let value = super::load::read_value(text, &locs).0?;
    Some(compose(path, text, value, locs).0)
}

/// `plan --explain KEY`: every file of the chain that sets `key` (or an
/// enclosing key), in merge order, the last one being the effective value.
/// A content entry is named by index in the effective recipe or by id
/// (`driver_packages[PS100301].source`).
pub fn explain(c: &Composed, key: &str) -> String {
    let mut out = String::new();
    let id_path = to_id_path(&c.value, key);
    let mut found = Vec::new();
    for &i in &c.order {
        let f = &c.files[i];
        if let Some((p, v)) = lookup(&f.value, &id_path) {
            let (k, vp) = f.locs.exact(&p);
            let pos = vp
                .or(k)
                .map(|p| format!(":{}:{}", p.line, p.col))
                .unwrap_or_default();
            let shown = if is_secret_path(key) || is_secret_path(&p) {
                "(a secret reference, not shown)".to_string()
            } else {
                let s = match &v {
                    Value::Mapping(_) | Value::Sequence(_) => {
                        serde_json::to_string(&v).unwrap_or_else(|_| show(&v))
                    }
                    _ => show(&v),
                };
                if s.chars().count() > 100 {
                    format!("{}…", s.chars().take(100).collect::<String>())
                } else {
                    s
                }
            };
            found.push(format!("  {}{pos}  {p}: {shown}", f.path.display()));
        }
        for r in removals(f, &id_path) {
            found.push(r);
        }
    }
    if found.is_empty() {
        out.push_str(&format!(
            "{key}: set by no file of the chain (its default applies)\n"
        ));
    } else {
        out.push_str(&format!(
            "{key}: set in (merge order; the last sets the effective value)\n"
        ));
        for l in found {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// A key path's steps: map keys, list indices or content ids.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Id(String),
}

fn steps(key: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(Step::Key(name.to_string()));
        }
        for sub in rest.split('[') {
            let sub = sub.trim_end_matches(']');
            if sub.is_empty() {
                continue;
            }
            out.push(match sub.parse() {
                Ok(n) => Step::Index(n),
                Err(_) => Step::Id(sub.to_string()),
            });
        }
    }
    out
}

/// `key` with list indices of the effective recipe's content lists turned
/// into ids (each file lists its entries at its own indices).
fn to_id_path(effective: &Value, key: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut cur = Some(effective);
    for s in steps(key) {
        let next = match (&s, cur) {
            (Step::Key(k), Some(v)) => v.get(k.as_str()),
            (Step::Index(i), Some(v)) => v.get(*i),
            (Step::Id(id), Some(Value::Sequence(items))) => items
                .iter()
                .find(|x| x.get("id").map(show_id).as_deref() == Some(id.as_str())),
            _ => None,
        };
        match (&s, next.and_then(|n| n.get("id"))) {
            (Step::Index(_), Some(id)) => out.push(Step::Id(show_id(id))),
            _ => out.push(s),
        }
        cur = next;
    }
    out
}

/// The value at `steps` in one file's own keys, and its path in that file.
fn lookup(v: &Value, steps: &[Step]) -> Option<(String, Value)> {
    let mut cur = v;
    let mut path = String::new();
    for s in steps {
        match s {
            Step::Key(k) => {
                cur = cur.get(k.as_str())?;
                path = join(&path, k);
            }
            Step::Index(i) => {
                cur = cur.get(*i)?;
                path = format!("{path}[{i}]");
            }
            Step::Id(id) => {
                let items = cur.as_sequence()?;
                let i = items
                    .iter()
                    .position(|x| x.get("id").map(show_id).as_deref() == Some(id.as_str()))?;
                cur = &items[i];
                path = format!("{path}[{i}]");
            }
        }
    }
    Some((path, cur.clone()))
}

/// Lines for the `remove:` entries of file `f` that drop the entry `steps` names.
fn removals(f: &ChainFile, steps: &[Step]) -> Vec<String> {
    let (Some(Step::Key(list)), Some(Step::Id(id))) = (steps.first(), steps.get(1)) else {
        return Vec::new();
    };
    let Some(ids) = f
        .value
        .get("remove")
        .and_then(|r| r.get(list.as_str()))
        .and_then(Value::as_sequence)
    else {
        return Vec::new();
    };
    ids.iter()
        .enumerate()
        .filter(|(_, x)| show_id(x) == *id)
        .map(|(n, _)| {
            let p = format!("remove.{list}[{n}]");
            let (k, v) = f.locs.exact(&p);
            let pos = v
                .or(k)
                .map(|p| format!(":{}:{}", p.line, p.col))
                .unwrap_or_default();
            format!("  {}{pos}  {p}: {id} (removed)", f.path.display())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Composes `site` over `base` (written to a temp folder) and returns the
    /// effective value and the diagnostics.
    fn composed(base: &str, site: &str) -> (Value, Vec<Diagnostic>, Composed) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.yaml"), base).unwrap();
        let p = dir.path().join("site.yaml");
        std::fs::write(&p, site).unwrap();
        let locs = Locations::index(site);
        let (v, d) = crate::recipe::load::read_value(site, &locs);
        let (c, mut more) = compose(&p, site, v.unwrap(), locs);
        more.extend(d);
        (c.value.clone(), more, c)
    }

    fn y(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn maps_merge_lists_by_id_variables_and_secrets_replace_whole() {
        let base = "mediabuild: 1\nmedia: { name: a, label: A, management: { mode: dynamic, points: [x, y] } }\n\
                    security: { password: { file: p.txt } }\n\
                    packages: [{ id: P1, name: one, source: s1 }, { id: P2, name: two, source: s2 }]\n\
                    variables: { A: { env: X }, B: b }\n";
        let site = "mediabuild: 1\nextends: base.yaml\nmedia: { name: b, management: { points: [z] } }\n\
                    security: { password: { env: PW } }\n\
                    packages: [{ id: P1, name: uno, source: s9 }, { id: P3, name: three, source: s3 }]\n\
                    variables: { A: literal }\n";
        let (v, d, _) = composed(base, site);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            v["media"],
            y("{ name: b, label: A, management: { mode: dynamic, points: [z] } }")
        );
        assert_eq!(v["security"]["password"], y("{ env: PW }"));
        // P1 replaced where it stood (not merged key by key), P3 appended.
        assert_eq!(
            v["packages"],
            y("[{ id: P1, name: uno, source: s9 }, { id: P2, name: two, source: s2 }, { id: P3, name: three, source: s3 }]")
        );
        assert_eq!(v["variables"], y("{ A: literal, B: b }"));
        assert!(v.get("extends").is_none());
    }

    #[test]
    fn removals_nulls_and_positions_of_the_file_that_set_a_value() {
        let base = "mediabuild: 1\nmedia: { name: a }\noutputs: { dir: out, disk: { path: d.img, size: 1GiB } }\n\
                    driver_packages:\n  - { id: D1, name: one, source: s1 }\n  - { id: D2, name: two, source: s2 }\n";
        let site = "mediabuild: 1\nextends: base.yaml\nremove: { driver_packages: [D1] }\noutputs: { disk: null }\n";
        let (v, d, c) = composed(base, site);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            v["driver_packages"],
            y("[{ id: D2, name: two, source: s2 }]")
        );
        assert_eq!(v["outputs"], y("{ dir: out, disk: null }"));
        // D2 is now entry 0, written in the base on line 6; the null in the site.
        let p = c.locs.value("driver_packages[0].name").unwrap();
        assert_eq!((p.file, p.line), (1, 6));
        let p = c.locs.value("outputs.disk").unwrap();
        assert_eq!((p.file, p.line), (0, 4));
        assert_eq!(c.order, vec![1, 0]);
    }
}
