//! The directory tree implied by the file paths: validation of every path and size,
//! duplicates (FAT compares names ignoring case), file/directory conflicts, and the
//! breadth-first order in which directories and files are laid out.
//!
//! The order depends only on the set of paths, never on the order of the input list:
//! children are sorted by case-folded name, and when paths spell one directory with
//! different case the smallest spelling (byte order) is kept.

use std::collections::{BTreeMap, VecDeque};

use super::names::{fold, validate_long_name};
use super::{FatError, FatFile, FileSource, MAX_FILE_SIZE};

/// What a directory entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Child {
    /// Index into the breadth-first directory list.
    Dir(usize),
    /// Index into the input file list.
    File(usize),
}

/// One directory, in breadth-first order (index 0 is the root).
#[derive(Debug)]
pub(crate) struct SortedDir {
    /// '/'-joined path, "" for the root.
    pub path: String,
    /// Parent directory index; `None` for the root.
    pub parent: Option<usize>,
    /// (name as spelled, target), sorted by case-folded name.
    pub children: Vec<(String, Child)>,
}

struct Node {
    name: String,
    children: BTreeMap<String, Slot>,
}

enum Slot {
    Dir(usize),
    File(usize),
}

/// Validates all files and returns the directories in breadth-first order; every
/// problem found is reported, not just the first.
pub(crate) fn build(files: &[FatFile]) -> Result<Vec<SortedDir>, FatError> {
    let mut nodes = vec![Node {
        name: String::new(),
        children: BTreeMap::new(),
    }];
    let mut errors = Vec::new();
    for index in 0..files.len() {
        if let Err(e) = insert(&mut nodes, files, index) {
            errors.push(e);
        }
    }
    FatError::from_list(errors)?;
    Ok(breadth_first(&nodes, files))
}

fn insert(nodes: &mut Vec<Node>, files: &[FatFile], index: usize) -> Result<(), FatError> {
    let file = &files[index];
    let components = split_path(&file.path)?;
    if file.size > MAX_FILE_SIZE {
        return Err(FatError::FileTooLarge {
            path: file.path.clone(),
            size: file.size,
        });
    }
    let in_memory = match &file.source {
        FileSource::Bytes(bytes) => Some(bytes.len() as u64),
        FileSource::Path(_) => None,
        FileSource::Dir => Some(0),
    };
    if let Some(actual) = in_memory.filter(|&n| n != file.size) {
        return Err(FatError::SizeMismatch {
            path: file.path.clone(),
            expected: file.size,
            actual,
        });
    }
    let is_dir = matches!(file.source, FileSource::Dir);
    let (leaf, parents) = match components.split_last() {
        // An empty directory: every component is a directory.
        Some(_) if is_dir => (None, &components[..]),
        Some((leaf, parents)) => (Some(leaf), parents),
        // `split` always yields one component; kept as an error rather than a panic.
        None => {
            return Err(FatError::InvalidName {
                path: file.path.clone(),
                reason: "the path is empty".into(),
            })
        }
    };
    let mut current = 0;
    for component in parents {
        let key = fold(component);
        match nodes[current].children.get(&key) {
            Some(Slot::Dir(n)) => {
                let n = *n;
                if **component < *nodes[n].name {
                    nodes[n].name = component.to_string();
                }
                current = n;
            }
            Some(Slot::File(other)) => {
                return Err(FatError::PathConflict {
                    file: files[*other].path.clone(),
                    other: file.path.clone(),
                });
            }
            None => {
                nodes.push(Node {
                    name: component.to_string(),
                    children: BTreeMap::new(),
                });
                let n = nodes.len() - 1;
                nodes[current].children.insert(key, Slot::Dir(n));
                current = n;
            }
        }
    }
    let Some(leaf) = leaf else {
        return Ok(());
    };
    let key = fold(leaf);
    match nodes[current].children.get(&key) {
        Some(Slot::File(other)) => Err(FatError::DuplicatePath {
            path: file.path.clone(),
            other: files[*other].path.clone(),
        }),
        Some(Slot::Dir(n)) => Err(FatError::PathConflict {
            file: file.path.clone(),
            other: first_file_under(nodes, *n).map_or_else(String::new, |f| files[f].path.clone()),
        }),
        None => {
            nodes[current].children.insert(key, Slot::File(index));
            Ok(())
        }
    }
}

/// Splits a relative '/'-separated path and checks every component.
fn split_path(path: &str) -> Result<Vec<&str>, FatError> {
    let invalid = |reason: String| FatError::InvalidName {
        path: path.to_string(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("the path is empty".into()));
    }
    if path.starts_with('/') {
        return Err(invalid(
            "the path must be relative to the volume root (no leading '/')".into(),
        ));
    }
    let components: Vec<&str> = path.split('/').collect();
    for component in &components {
        validate_long_name(component).map_err(invalid)?;
    }
    Ok(components)
}

/// Some file below directory node `n` (every directory holds one: they come from paths).
fn first_file_under(nodes: &[Node], mut n: usize) -> Option<usize> {
    loop {
        match nodes[n].children.values().next()? {
            Slot::File(f) => return Some(*f),
            Slot::Dir(d) => n = *d,
        }
    }
}

fn breadth_first(nodes: &[Node], files: &[FatFile]) -> Vec<SortedDir> {
    let mut out: Vec<SortedDir> = Vec::new();
    let mut queue = VecDeque::from([(0usize, None, String::new())]);
    while let Some((node, parent, path)) = queue.pop_front() {
        let index = out.len();
        let mut children = Vec::with_capacity(nodes[node].children.len());
        for slot in nodes[node].children.values() {
            match slot {
                Slot::File(f) => {
                    let leaf = files[*f].path.rsplit('/').next().unwrap_or_default();
                    children.push((leaf.to_string(), Child::File(*f)));
                }
                Slot::Dir(d) => {
                    // Queued directories take the next indices in order.
                    let child_index = index + queue.len() + 1;
                    let name = nodes[*d].name.clone();
                    let child_path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}/{name}")
                    };
                    queue.push_back((*d, Some(index), child_path));
                    children.push((name, Child::Dir(child_index)));
                }
            }
        }
        out.push(SortedDir {
            path,
            parent,
            children,
        });
    }
    out
}
