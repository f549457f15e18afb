//! Diagnostics: one problem of a recipe, with the key path, the position, the
//! offending value and a fix, rendered like a compiler error.

#![deny(unsafe_code)]

use serde::Serialize;
use std::fmt::Write as _;

/// A 1-based line and column in the recipe text, and which file of the
/// recipe's `extends` chain the text is (0: the recipe itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    #[serde(skip)]
    pub file: u16,
}

impl Pos {
    /// Line and column in the recipe itself.
    pub fn new(line: usize, col: usize) -> Pos {
        Pos { line, col, file: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a recipe or its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Key path, e.g. `os_image.index` or `applications[1].id` (empty for the whole file).
    pub key: String,
    /// The file of the recipe's `extends` chain the problem is in, when it
    /// is not the recipe itself (a base).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Where in the recipe, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos: Option<Pos>,
    /// The offending value, as written (never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The source line holds a secret: show the position, never the line.
    #[serde(skip)]
    pub redact_source: bool,
}

impl Diagnostic {
    pub fn error(key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            key: key.into(),
            file: None,
            pos: None,
            value: None,
            message: message.into(),
            fix: None,
            redact_source: false,
        }
    }
    pub fn warning(key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(key, message)
        }
    }
    pub fn value(mut self, v: impl std::fmt::Display) -> Diagnostic {
        self.value = Some(v.to_string());
        self
    }
    pub fn fix(mut self, f: impl Into<String>) -> Diagnostic {
        self.fix = Some(f.into());
        self
    }
    pub fn at(mut self, pos: Option<Pos>) -> Diagnostic {
        if self.pos.is_none() {
            self.pos = pos;
        }
        self
    }
    /// Marks the diagnostic as being about a secret: its source line is not shown.
    pub fn secret(mut self) -> Diagnostic {
        self.redact_source = true;
        self.value = None;
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic with the recipe's source line and a caret
    /// (`file` and `source`: those of the file it is in, see [`Self::file`]).
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = String::new();
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.key.is_empty() {
            let _ = writeln!(out, "{sev}: {}", self.message);
        } else {
            let _ = writeln!(out, "{sev}: {}: {}", self.key, self.message);
        }
        match self.pos {
            Some(p) => {
                let _ = writeln!(out, "  --> {file}:{}:{}", p.line, p.col);
                let line = source
                    .lines()
                    .nth(p.line.saturating_sub(1))
                    .filter(|_| !self.redact_source);
                if let Some(line) = line {
                    let n = p.line.to_string();
                    let pad = " ".repeat(n.len());
                    let (shown, caret) = excerpt(line, p.col.saturating_sub(1));
                    let _ = writeln!(out, "{pad} |");
                    let _ = writeln!(out, "{n} | {shown}");
                    let _ = writeln!(out, "{pad} | {}^", " ".repeat(caret));
                }
            }
            None => {
                let _ = writeln!(out, "  --> {file}");
            }
        }
        if let Some(v) = &self.value {
            let _ = writeln!(out, "  = value: {v}");
        }
        if let Some(f) = &self.fix {
            let _ = writeln!(out, "  = fix: {f}");
        }
        out
    }
}

/// Characters of a source line shown around the caret: a hostile recipe's
/// line may be 100 KB long, and every diagnostic would print it again.
const EXCERPT: usize = 100;

/// The part of `line` shown (at most [`EXCERPT`] characters around `col`,
/// `…` where cut) and the caret's column in it.
fn excerpt(line: &str, col: usize) -> (String, usize) {
    // A control character (a NUL the recipe holds, an escape sequence) is
    // shown as U+FFFD, never sent to the terminal.
    let chars: Vec<char> = line
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    if chars.len() <= EXCERPT {
        return (chars.into_iter().collect(), col);
    }
    let start = col
        .saturating_sub(EXCERPT / 2)
        .min(chars.len().saturating_sub(EXCERPT));
    let end = (start + EXCERPT).min(chars.len());
    let mut s = String::new();
    let mut caret = col - start;
    if start > 0 {
        s.push('…');
        caret += 1;
    }
    s.extend(&chars[start..end]);
    if end < chars.len() {
        s.push('…');
    }
    (s, caret)
}

/// How many diagnostics a text report prints; the rest are counted.
pub const MAX_SHOWN: usize = 100;

/// Did-you-mean: the closest candidate within a small edit distance.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_caret() {
        let d = Diagnostic::error("os_image.index", "no such image")
            .at(Some(Pos::new(2, 10)))
            .value(5)
            .fix("use 1..3");
        let r = d.render("r.yaml", "a: 1\n  index: 5\n");
        assert!(r.contains("error: os_image.index: no such image"), "{r}");
        assert!(r.contains("--> r.yaml:2:10"), "{r}");
        assert!(r.contains("2 |   index: 5\n  |          ^"), "{r}");
        assert!(
            r.contains("= value: 5") && r.contains("= fix: use 1..3"),
            "{r}"
        );
    }

    #[test]
    fn suggests_close_keys() {
        assert_eq!(suggest("indx", &["index", "image", "id"]), Some("index"));
        assert_eq!(suggest("zzzzzz", &["index"]), None);
    }
}
