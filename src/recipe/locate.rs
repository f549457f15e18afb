//! Where each key of a recipe sits in its text.
//!
//! serde_yaml reports a position for syntax errors only; the semantic checks
//! need line:column for any key path (`os_image.index`, `applications[2].id`).
//! A second, event-level pass with yaml-rust2 records the position of every key
//! and every value under its dotted path.

use std::collections::BTreeMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the recipe text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Positions of keys and values, by key path.
#[derive(Debug, Default, Clone)]
pub struct Locations {
    keys: BTreeMap<String, Pos>,
    values: BTreeMap<String, Pos>,
}

impl Locations {
    /// Indexes `text`; a text that does not parse gives an empty index (the
    /// syntax error itself is reported by the main parser).
    pub fn index(text: &str) -> Locations {
        let mut rx = Receiver::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut rx, false).is_err() {
            return Locations::default();
        }
        rx.locs
    }

    /// Position of the value at `path`, else of its key, else of the nearest
    /// enclosing path that has one.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.lookup(path, true)
    }

    /// Position of the key at `path` (for unknown keys), else as [`Self::value`].
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.lookup(path, false)
    }

    fn lookup(&self, path: &str, value_first: bool) -> Option<Pos> {
        let mut p = path.to_string();
        loop {
            let (a, b) = if value_first {
                (&self.values, &self.keys)
            } else {
                (&self.keys, &self.values)
            };
            if let Some(pos) = a.get(&p).or_else(|| b.get(&p)) {
                return Some(*pos);
            }
            p = parent(&p)?;
        }
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → None.
fn parent(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(path[..cut].to_string())
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Receiver {
    stack: Vec<Frame>,
    locs: Locations,
}

fn pos(m: Marker) -> Pos {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

impl Receiver {
    /// Path of the node that starts now (a value), consuming the pending key
    /// or sequence slot of the enclosing container.
    fn node_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                // A scalar in key position of a mapping is a key.
                if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                    if key.is_none() {
                        let full = join(path, &text);
                        self.locs.keys.insert(full, pos(mark));
                        *key = Some(text);
                        return;
                    }
                }
                if let Some(p) = self.node_path() {
                    self.locs.values.insert(p, pos(mark));
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.node_path() {
                    self.locs.values.insert(p, pos(mark));
                }
            }
            Event::MappingStart(..) => {
                let p = self.node_path().unwrap_or_default();
                self.locs.values.entry(p.clone()).or_insert(pos(mark));
                self.stack.push(Frame::Map { path: p, key: None });
            }
            Event::SequenceStart(..) => {
                let p = self.node_path().unwrap_or_default();
                self.locs.values.entry(p.clone()).or_insert(pos(mark));
                self.stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_values() {
        let text =
            "a: 1\nos_image:\n  id: X\n  index: 5\nlist:\n  - id: A\n  - { id: B, name: n }\n";
        let l = Locations::index(text);
        assert_eq!(l.value("os_image.index"), Some(Pos { line: 4, col: 10 }));
        assert_eq!(l.key("os_image.index"), Some(Pos { line: 4, col: 3 }));
        assert_eq!(l.value("list[0].id"), Some(Pos { line: 6, col: 9 }));
        assert_eq!(l.value("list[1].name"), Some(Pos { line: 7, col: 20 }));
        // Unknown deeper path falls back to the nearest known one.
        assert_eq!(l.value("os_image.index.x"), Some(Pos { line: 4, col: 10 }));
        assert_eq!(parent("a.b[2]"), Some("a.b".into()));
    }
}
