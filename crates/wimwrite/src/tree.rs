//! The image's directory tree, built and checked before any byte is written.
//!
//! Entries arrive as a flat list of `/`-separated paths; parents are implied.
//! This module validates every path (Windows must be able to create it),
//! rejects duplicates, files used as directories and case-only collisions,
//! then sorts siblings the way wimlib does — case-insensitively by UTF-16
//! code unit after upper-casing, ties broken case-sensitively — and fixes
//! the two orders the rest of the writer uses: directories in the order
//! their child lists are placed in the metadata resource (pre-order), and
//! files in the order their data is written.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::error::WimWriteError;
use super::{EntryKind, WimEntry};

/// Longest file name Windows file systems accept, in UTF-16 units.
pub const MAX_NAME_UNITS: usize = 255;

/// What a node is.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A directory (explicit or implied).
    Dir {
        /// Listed as an entry itself (only used to detect duplicates).
        explicit: bool,
    },
    /// A regular file: index into the entry list and its declared size.
    File {
        /// Index into the caller's entries.
        entry: usize,
        /// Declared size.
        size: u64,
    },
}

/// One file or directory.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name in UTF-16 (empty for the root).
    pub name: Vec<u16>,
    /// Full WIM path, for messages and the report ("" for the root).
    pub path: String,
    /// File or directory.
    pub kind: NodeKind,
    /// Children in wimlib's collation order (directories only).
    pub children: Vec<usize>,
}

impl Node {
    /// True for directories.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }
}

/// The checked, sorted tree. Node 0 is the root.
#[derive(Clone, Debug)]
pub struct Tree {
    /// All nodes; indices are stable.
    pub nodes: Vec<Node>,
    /// Directories in metadata placement order: root first, then pre-order.
    pub dirs: Vec<usize>,
    /// File nodes in data-writing order (per directory of `dirs`, children
    /// in collation order).
    pub files: Vec<usize>,
    /// Sum of declared file sizes.
    pub total_bytes: u64,
}

/// Checks one path component. Windows cannot create names with these
/// characters, "." / "..", or trailing dots/spaces, so media carrying them
/// would fail on the target; better to refuse them now.
fn check_component(path: &str, comp: &str) -> Result<Vec<u16>, WimWriteError> {
    let bad = |reason: String| WimWriteError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if comp.is_empty() {
        return Err(bad(
            "empty path component (leading, trailing or double '/')".into(),
        ));
    }
    if comp == "." || comp == ".." {
        return Err(bad(format!("component {comp:?} is not allowed")));
    }
    if let Some(c) = comp
        .chars()
        .find(|&c| c < ' ' || matches!(c, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|'))
    {
        return Err(bad(format!(
            "character {c:?} is not allowed in Windows file names"
        )));
    }
    if comp.ends_with('.') || comp.ends_with(' ') {
        return Err(bad(format!(
            "name {comp:?} ends with a dot or space, which Windows strips"
        )));
    }
    let units: Vec<u16> = comp.encode_utf16().collect();
    if units.len() > MAX_NAME_UNITS {
        return Err(bad(format!(
            "name is {} UTF-16 units long; the limit is {MAX_NAME_UNITS}",
            units.len()
        )));
    }
    Ok(units)
}

/// Upper-cases one UTF-16 unit the way a simple upcase table does: BMP
/// characters whose upper case is a single BMP character map to it,
/// everything else (surrogates, expansions like 'ß' → "SS") stays.
fn upcase_unit(u: u16) -> u16 {
    if u < 0x80 {
        return (u as u8).to_ascii_uppercase() as u16;
    }
    let Some(c) = char::from_u32(u32::from(u)) else {
        return u;
    };
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(single), None) if (single as u32) <= 0xFFFF => single as u32 as u16,
        _ => u,
    }
}

/// Case-insensitive comparison of two UTF-16 names (shorter first on a
/// common prefix).
pub fn cmp_ignore_case(a: &[u16], b: &[u16]) -> Ordering {
    a.iter()
        .map(|&u| upcase_unit(u))
        .cmp(b.iter().map(|&u| upcase_unit(u)))
}

/// wimlib's collation: case-insensitive first, then by raw code units.
pub fn collate(a: &[u16], b: &[u16]) -> Ordering {
    cmp_ignore_case(a, b).then_with(|| a.cmp(b))
}

/// Builds and checks the tree.
pub fn build(entries: &[WimEntry]) -> Result<Tree, WimWriteError> {
    let mut nodes = vec![Node {
        name: Vec::new(),
        path: String::new(),
        kind: NodeKind::Dir { explicit: true },
        children: Vec::new(),
    }];
    // (parent, name) → node; BTreeMap keeps everything deterministic.
    let mut index: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut total_bytes = 0u64;

    // Process in path order so that the first error reported does not depend
    // on the caller's order.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| entries[a].path.cmp(&entries[b].path));

    for ei in order {
        let entry = &entries[ei];
        let path = entry.path.as_str();
        if path.is_empty() {
            return Err(WimWriteError::InvalidPath {
                path: path.to_string(),
                reason: "empty path (the root is implied)".into(),
            });
        }
        let comps: Vec<&str> = path.split('/').collect();
        let mut parent = 0usize;
        for (depth, comp) in comps.iter().enumerate() {
            let units = check_component(path, comp)?;
            let last = depth + 1 == comps.len();
            let key = (parent, (*comp).to_string());
            if let Some(&existing) = index.get(&key) {
                if !last {
                    if !nodes[existing].is_dir() {
                        return Err(WimWriteError::NotADirectory {
                            path: path.to_string(),
                            file: nodes[existing].path.clone(),
                        });
                    }
                    parent = existing;
                    continue;
                }
                // The final component already exists: only an implied
                // directory may be confirmed by an explicit Dir entry.
                match (&mut nodes[existing].kind, &entry.kind) {
                    (NodeKind::Dir { explicit }, EntryKind::Dir) if !*explicit => {
                        *explicit = true;
                    }
                    _ => {
                        return Err(WimWriteError::DuplicatePath {
                            path: path.to_string(),
                        })
                    }
                }
                continue;
            }
            let kind = match (&entry.kind, last) {
                (EntryKind::File { size, .. }, true) => {
                    total_bytes = total_bytes.saturating_add(*size);
                    NodeKind::File {
                        entry: ei,
                        size: *size,
                    }
                }
                (EntryKind::Dir, true) => NodeKind::Dir { explicit: true },
                (_, false) => NodeKind::Dir { explicit: false },
            };
            let id = nodes.len();
            nodes.push(Node {
                name: units,
                path: comps[..=depth].join("/"),
                kind,
                children: Vec::new(),
            });
            nodes[parent].children.push(id);
            index.insert(key, id);
            parent = id;
        }
    }

    // Sort siblings and refuse case-only collisions.
    for d in 0..nodes.len() {
        let mut kids = std::mem::take(&mut nodes[d].children);
        kids.sort_by(|&a, &b| collate(&nodes[a].name, &nodes[b].name));
        for pair in kids.windows(2) {
            let (a, b) = (&nodes[pair[0]], &nodes[pair[1]]);
            if cmp_ignore_case(&a.name, &b.name) == Ordering::Equal {
                return Err(WimWriteError::CaseCollision {
                    path: b.path.clone(),
                    other: a.path.clone(),
                });
            }
        }
        nodes[d].children = kids;
    }

    // Pre-order over directories with an explicit stack: deep trees must
    // not overflow a worker's stack.
    let mut dirs = Vec::new();
    let mut stack = vec![0usize];
    while let Some(d) = stack.pop() {
        dirs.push(d);
        for &c in nodes[d].children.iter().rev() {
            if nodes[c].is_dir() {
                stack.push(c);
            }
        }
    }
    let files = dirs
        .iter()
        .flat_map(|&d| nodes[d].children.iter().copied())
        .filter(|&c| !nodes[c].is_dir())
        .collect();

    Ok(Tree {
        nodes,
        dirs,
        files,
        total_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Content;
    use super::*;
    use std::sync::Arc;

    fn file(path: &str) -> WimEntry {
        WimEntry {
            path: path.into(),
            kind: EntryKind::File {
                size: 1,
                content: Content::Bytes(Arc::from(&b"x"[..])),
            },
        }
    }

    fn dir(path: &str) -> WimEntry {
        WimEntry {
            path: path.into(),
            kind: EntryKind::Dir,
        }
    }

    fn names(t: &Tree, ids: &[usize]) -> Vec<String> {
        ids.iter().map(|&i| t.nodes[i].path.clone()).collect()
    }

    #[test]
    fn implied_parents_sorted_siblings_and_orders() {
        let t = build(&[
            file("b/z.txt"),
            file("B2"),
            file("a.txt"),
            dir("b"),
            file("b/c/d.bin"),
            dir("empty"),
            file("A.TXT2"),
        ])
        .unwrap();
        // Case-insensitive: "a.txt" < "A.TXT2" < "b" < "B2" < "empty".
        assert_eq!(
            names(&t, &t.nodes[0].children),
            ["a.txt", "A.TXT2", "b", "B2", "empty"]
        );
        assert_eq!(names(&t, &t.dirs), ["", "b", "b/c", "empty"]);
        assert_eq!(
            names(&t, &t.files),
            ["a.txt", "A.TXT2", "B2", "b/z.txt", "b/c/d.bin"]
        );
        assert_eq!(t.total_bytes, 5);
    }

    #[test]
    fn collation_breaks_case_ties_and_puts_prefixes_first() {
        let u = |s: &str| s.encode_utf16().collect::<Vec<u16>>();
        assert_eq!(collate(&u("abc"), &u("ABD")), Ordering::Less);
        assert_eq!(collate(&u("ab"), &u("abc")), Ordering::Less);
        assert_eq!(collate(&u("B"), &u("b")), Ordering::Less);
        assert_eq!(collate(&u("é"), &u("É")), Ordering::Greater);
        assert_eq!(cmp_ignore_case(&u("é"), &u("É")), Ordering::Equal);
    }

    #[test]
    fn rejects_duplicates_collisions_and_bad_paths() {
        let err = |e: Vec<WimEntry>| build(&e).unwrap_err().to_string();
        assert!(err(vec![file("a"), file("a")]).contains("duplicate path a"));
        assert!(err(vec![dir("a"), dir("a")]).contains("duplicate path a"));
        assert!(err(vec![dir("a"), file("a")]).contains("duplicate path a"));
        assert!(err(vec![file("a"), file("a/b")]).contains("a/b is below a"));
        assert!(
            err(vec![file("x/Readme"), file("x/README")]).contains("differ only by letter case")
        );
        assert!(err(vec![file("a//b")]).contains("empty path component"));
        assert!(err(vec![file("/a")]).contains("empty path component"));
        assert!(err(vec![file("a/../b")]).contains("\"..\""));
        assert!(err(vec![file("a\\b")]).contains("not allowed"));
        assert!(err(vec![file("a.")]).contains("ends with a dot"));
        assert!(err(vec![file("")]).contains("empty path"));
        assert!(err(vec![file(&"n".repeat(256))]).contains("limit is 255"));
        // Implied then explicit directory is fine.
        assert!(build(&[file("a/b"), dir("a")]).is_ok());
        assert!(build(&[file(&"ü".repeat(255))]).is_ok());
    }
}
