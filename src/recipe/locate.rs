//! Where each key of a recipe sits in its text.
//!
//! serde_yaml reports a position for syntax errors only; the semantic checks
//! need line:column for any key path (`os_image.index`, `applications[2].id`).
//! A second, event-level pass with yaml-rust2 records the position of every key
//! and every value under its dotted path.

use std::collections::BTreeMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

pub use crate::diag::Pos;

/// Positions of keys and values, by key path.
#[derive(Debug, Default, Clone)]
pub struct Locations {
    keys: BTreeMap<String, Pos>,
    values: BTreeMap<String, Pos>,
    /// Where the text first nests deeper than [`MAX_DEPTH`], if it does.
    too_deep: Option<Pos>,
}

/// The deepest nesting of mappings and lists a recipe may have. A real
/// recipe needs six levels; a hostile one nested 100,000 deep would make the
/// YAML parser's work grow with the square of the depth (half a minute).
pub const MAX_DEPTH: usize = 64;

impl Locations {
    /// Indexes `text`; a text that does not parse gives an empty index (the
    /// syntax error itself is reported by the main parser).
    ///
    /// The walk stops as soon as the nesting passes [`MAX_DEPTH`], before any
    /// parser has done work that grows with the depth; [`Self::too_deep`] then
    /// says where.
    pub fn index(text: &str) -> Locations {
        let mut rx = Receiver::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd | Event::DocumentEnd, _)) => return rx.locs,
                Ok((ev, mark)) => {
                    rx.on_event(ev, mark);
                    if rx.stack.len() > MAX_DEPTH {
                        return Locations {
                            too_deep: Some(pos(mark)),
                            ..Locations::default()
                        };
                    }
                }
                // The syntax error itself is reported by the main parser; the
                // flow brackets still bound its work.
                Err(_) => {
                    return Locations {
                        too_deep: flow_too_deep(text),
                        ..Locations::default()
                    }
                }
            }
        }
    }

    /// The same positions, as positions in file `file` of an `extends`
    /// chain (see [`Pos::file`]).
    pub fn in_file(mut self, file: u16) -> Locations {
        for p in self.keys.values_mut().chain(self.values.values_mut()) {
            p.file = file;
        }
        if let Some(p) = &mut self.too_deep {
            p.file = file;
        }
        self
    }

    /// The positions recorded for exactly `path` (its key, its value).
    pub fn exact(&self, path: &str) -> (Option<Pos>, Option<Pos>) {
        (self.keys.get(path).copied(), self.values.get(path).copied())
    }

    /// Records the positions of `path` (a composed recipe's index is built
    /// from the files that set each value).
    pub fn insert(&mut self, path: &str, key: Option<Pos>, value: Option<Pos>) {
        if let Some(k) = key {
            self.keys.insert(path.to_string(), k);
        }
        if let Some(v) = value {
            self.values.insert(path.to_string(), v);
        }
    }

    /// Where the text nests deeper than [`MAX_DEPTH`], if it does.
    pub fn too_deep(&self) -> Option<Pos> {
        self.too_deep
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

/// For a text that does not parse: where its open flow brackets (`[`, `{`
/// outside quotes and comments) first pass [`MAX_DEPTH`]. Over-counting is
/// harmless here: the text is refused for its syntax error anyway.
fn flow_too_deep(text: &str) -> Option<Pos> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = ' ';
    for c in text.chars() {
        col += 1;
        if c == '\n' {
            // A quote left open ends at the line's end here: hiding
            // brackets in a runaway string only shortens this count by a line.
            (line, col, comment, quote) = (line + 1, 0, false, None);
        } else if comment {
        } else if let Some(q) = quote {
            if c == q && !(q == '"' && prev == '\\') {
                quote = None;
            }
        } else {
            match c {
                '"' | '\'' => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(Pos::new(line, col));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    None
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
    Pos::new(m.line(), m.col() + 1)
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
        assert_eq!(l.value("os_image.index"), Some(Pos::new(4, 10)));
        assert_eq!(l.key("os_image.index"), Some(Pos::new(4, 3)));
        assert_eq!(l.value("list[0].id"), Some(Pos::new(6, 9)));
        assert_eq!(l.value("list[1].name"), Some(Pos::new(7, 20)));
        // Unknown deeper path falls back to the nearest known one.
        assert_eq!(l.value("os_image.index.x"), Some(Pos::new(4, 10)));
        assert_eq!(parent("a.b[2]"), Some("a.b".into()));
    }
}
