//! Reading a recipe: YAML text → [`Recipe`] plus every parse problem at once.
//!
//! serde stops at the first error, so each top-level section (and each list
//! item and variable) is deserialized on its own: one bad section does not hide
//! problems in the others. Positions come from [`Locations`].

use super::locate::Locations;
use super::model::*;
use crate::diag::{suggest, Diagnostic};
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::collections::BTreeMap;

/// Top-level keys, in the order the README documents them.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "mediabuild",
    "extends",
    "remove",
    "source_date_epoch",
    "media",
    "site",
    "security",
    "boot_image",
    "os_image",
    "applications",
    "packages",
    "driver_packages",
    "variables",
    "prestart",
    "bitlocker",
    "compression",
    "outputs",
];

const REQUIRED: &[&str] = &["mediabuild", "media", "boot_image", "os_image", "outputs"];

/// A parsed recipe. Sections that failed to parse (or are missing) hold their
/// defaults and are listed in `failed`, so validation can still check the rest.
pub struct Parsed {
    pub recipe: Recipe,
    pub failed: Vec<String>,
}

impl Parsed {
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Parses `text`. Returns None only when the text is not a YAML mapping at all.
pub fn parse(text: &str, locs: &Locations) -> (Option<Parsed>, Vec<Diagnostic>) {
    let (value, mut diags) = read_value(text, locs);
    let Some(value) = value else {
        return (None, diags);
    };
    let (parsed, more) = from_value(&value, locs);
    diags.extend(more);
    (Some(parsed), diags)
}

/// The YAML mapping of one recipe file, its unknown keys reported and
/// removed (None when the text is not a YAML mapping at all).
pub fn read_value(text: &str, locs: &Locations) -> (Option<Value>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    if let Some(d) = unprintable(text) {
        diags.push(d);
        return (None, diags);
    }
    if let Some(pos) = locs.too_deep() {
        diags.push(
            Diagnostic::error(
                "",
                format!(
                    "the recipe nests deeper than {} levels",
                    super::locate::MAX_DEPTH
                ),
            )
            .at(Some(pos))
            .fix("a recipe needs six levels at most: look for unclosed brackets or runaway indentation"),
        );
        return (None, diags);
    }
    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            diags.push(syntax_error(text, &e));
            return (None, diags);
        }
    };
    // YAML merge keys (`<<: *base`), as other YAML tools read them.
    if let Err(e) = value.apply_merge() {
        diags.push(
            Diagnostic::error("", format!("YAML merge key (`<<`): {e}"))
                .fix("`<<:` takes an alias of a mapping (`<<: *name`) or a list of them"),
        );
        return (None, diags);
    }
    super::schema::strip_unknown(&mut value, locs, &mut diags);
    if !value.is_mapping() {
        diags.push(
            Diagnostic::error("", "a recipe must be a YAML mapping of sections")
                .fix("start from `mediabuild init` or recipes/minimal.yaml"),
        );
        return (None, diags);
    }
    (Some(value), diags)
}

/// The recipe of a YAML mapping (one file's, or a composed chain's), every
/// section parsed on its own.
pub fn from_value(value: &Value, locs: &Locations) -> (Parsed, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let empty = serde_yaml::Mapping::new();
    let map = value.as_mapping().unwrap_or(&empty);
    let mut r = Recipe::default();
    let mut failed = Vec::new();
    let mut seen = Vec::new();
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            diags.push(Diagnostic::error("", "a top-level key must be a string").value(show(k)));
            continue;
        };
        seen.push(key.to_string());
        let d = &mut diags;
        let good = match key {
            "mediabuild" => set(&mut r.mediabuild, section(key, v, locs, d)),
            // Composition (`recipe::compose`) has read and removed them.
            "extends" | "remove" => true,
            "source_date_epoch" => set(&mut r.source_date_epoch, section(key, v, locs, d)),
            "media" => set(&mut r.media, section(key, v, locs, d)),
            "site" => set(&mut r.site, section(key, v, locs, d)),
            "security" => set(&mut r.security, section(key, v, locs, d)),
            "boot_image" => set(&mut r.boot_image, section(key, v, locs, d)),
            "os_image" => set(&mut r.os_image, section(key, v, locs, d)),
            "applications" => set(&mut r.applications, list(key, v, locs, d)),
            "packages" => set(&mut r.packages, list(key, v, locs, d)),
            "driver_packages" => set(&mut r.driver_packages, list(key, v, locs, d)),
            "variables" => set(&mut r.variables, variables(v, locs, d)),
            "prestart" => set(&mut r.prestart, section(key, v, locs, d)),
            "bitlocker" => set(&mut r.bitlocker, section(key, v, locs, d)),
            "compression" => set(&mut r.compression, section(key, v, locs, d)),
            "outputs" => set(&mut r.outputs, section(key, v, locs, d)),
            other => {
                d.push(unknown_key("", other, TOP_LEVEL_KEYS, locs));
                false
            }
        };
        if !good {
            failed.push(key.to_string());
        }
    }
    for req in REQUIRED {
        if !seen.iter().any(|s| s == req) {
            failed.push(req.to_string());
            diags.push(
                Diagnostic::error(*req, "required section is missing").fix(format!(
                    "add `{req}:` (see the recipe reference in README.md)"
                )),
            );
        }
    }
    (Parsed { recipe: r, failed }, diags)
}

/// A YAML syntax error at its line:column. Near a secret key (on its line,
/// the line before, or anything indented under one) neither the line nor a key
/// named in the message is shown: a mistyped secret is still a secret.
fn syntax_error(text: &str, e: &serde_yaml::Error) -> Diagnostic {
    let full = e.to_string();
    // serde_yaml appends " at line L column C" (or " at position N" when it
    // knows only the byte offset); the position is shown separately.
    let msg = full.split(" at line ").next().unwrap_or(&full);
    let msg = msg.split(" at position ").next().unwrap_or(msg);
    let pos = e
        .location()
        .map(|l| super::locate::Pos::new(l.line(), l.column()))
        .or_else(|| {
            let n = full.split(" at position ").nth(1)?;
            let n: usize = n
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some(pos_of_offset(text, n))
        });
    let fix = "fix the YAML syntax at the position shown (indentation, quotes, colons)";
    if pos.is_some_and(|p| near_secret(text, p.line)) {
        return Diagnostic::error(
            "",
            "YAML syntax error in or next to a secret reference (the line is not shown)",
        )
        .at(pos)
        .fix(fix)
        .secret();
    }
    Diagnostic::error("", format!("YAML syntax error: {msg}"))
        .at(pos)
        .fix(fix)
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn pos_of_offset(text: &str, offset: usize) -> super::locate::Pos {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    super::locate::Pos::new(line, before[start..].chars().count() + 1)
}

/// Whether 1-based `line` of `text`, or the line before it, is a secret key's
/// line or lies (by indentation) under one.
fn near_secret(text: &str, line: usize) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let names_secret = |l: &str| {
        // Every `word:` on the line is a key (block or flow style).
        l.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .filter_map(|w| w.split(':').next().filter(|_| w.contains(':')))
            .any(|k| !k.is_empty() && super::secret::is_secret_name(k))
    };
    let indent = |l: &str| l.len() - l.trim_start().len();
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let first = line.saturating_sub(1).min(lines.len().saturating_sub(1));
    let mut candidates = vec![first];
    if let Some(prev) = (0..first).rev().find(|&i| !blank(lines[i])) {
        candidates.push(prev);
    }
    candidates.into_iter().any(|i| {
        let Some(l) = lines.get(i) else {
            return false;
        };
        if names_secret(l) {
            return true;
        }
        // Up through the lines it is indented under.
        let mut want = indent(l);
        for above in lines[..i].iter().rev() {
            if want == 0 {
                break;
            }
            if blank(above) || indent(above) >= want {
                continue;
            }
            if names_secret(above) {
                return true;
            }
            want = indent(above);
        }
        false
    })
}

/// The first character YAML does not allow (a NUL, another control
/// character, a stray byte-order mark), at its line:column.
fn unprintable(text: &str) -> Option<Diagnostic> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (at, c) = body.char_indices().find(|&(_, c)| {
        matches!(c, '\0'..='\x08' | '\x0b' | '\x0c' | '\x0e'..='\x1f' | '\x7f')
            || ('\u{80}'..='\u{9f}').contains(&c) && c != '\u{85}'
            || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}')
    })?;
    let at = at + (text.len() - body.len());
    let fix = if c == '\0' {
        "remove it; NUL bytes usually mean the file was saved as UTF-16 without a byte-order mark or is not text: save it as UTF-8"
    } else {
        "remove it (or write it as an escape inside double quotes, e.g. \"\\t\")"
    };
    Some(
        Diagnostic::error(
            "",
            format!(
                "the recipe holds the character U+{:04X}, which YAML does not allow",
                c as u32
            ),
        )
        .at(Some(pos_of_offset(text, at)))
        .fix(fix),
    )
}

fn set<T>(slot: &mut T, v: Option<T>) -> bool {
    match v {
        Some(v) => {
            *slot = v;
            true
        }
        None => false,
    }
}

fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty() || rest == ".") {
        (_, true) => base.to_string(),
        (true, _) => rest.to_string(),
        (false, false) if rest.starts_with('[') => format!("{base}{rest}"),
        _ => format!("{base}.{rest}"),
    }
}

/// Deserializes one section; on failure records a diagnostic at the failing key.
fn section<T: DeserializeOwned>(
    path: &str,
    v: &Value,
    locs: &Locations,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let full = join(path, &inner);
            diags.push(serde_diag(&full, &e.inner().to_string(), locs));
            None
        }
    }
}

fn list<T: DeserializeOwned>(
    path: &str,
    v: &Value,
    locs: &Locations,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<T>> {
    if v.is_null() {
        return Some(Vec::new());
    }
    let Some(items) = v.as_sequence() else {
        diags.push(
            Diagnostic::error(path, "expected a list")
                .at(locs.value(path))
                .value(show(v))
                .fix(format!("write `{path}:` followed by `- id: …` items")),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match section(&format!("{path}[{i}]"), item, locs, diags) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn variables(
    v: &Value,
    locs: &Locations,
    diags: &mut Vec<Diagnostic>,
) -> Option<BTreeMap<String, VariableValue>> {
    if v.is_null() {
        return Some(BTreeMap::new());
    }
    let Some(map) = v.as_mapping() else {
        diags.push(
            Diagnostic::error("variables", "expected a mapping of NAME: value")
                .at(locs.value("variables"))
                .value(show(v)),
        );
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, val) in map {
        let Some(name) = k.as_str() else {
            diags.push(
                Diagnostic::error("variables", "a variable name must be a string").value(show(k)),
            );
            ok = false;
            continue;
        };
        match section(&format!("variables.{name}"), val, locs, diags) {
            Some(t) => {
                out.insert(name.to_string(), t);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn unknown_key(base: &str, key: &str, expected: &[&str], locs: &Locations) -> Diagnostic {
    let full = join(base, key);
    let d = Diagnostic::error(full.clone(), "unknown key")
        .at(locs.key(&full))
        .value(key);
    match suggest(key, expected) {
        Some(s) => d.fix(format!("did you mean `{s}`?")),
        None => d.fix(format!(
            "remove it; keys allowed here: {}",
            expected.join(", ")
        )),
    }
}

/// Turns a serde message into a diagnostic, pointing unknown fields at their key.
fn serde_diag(path: &str, msg: &str, locs: &Locations) -> Diagnostic {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .map(|s| {
                s.trim_start_matches("one of ")
                    .split(", ")
                    .map(|x| x.trim_matches(|c| c == '`' || c == ' '))
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        // serde_path_to_error may or may not include the unknown key in the path.
        let base = path
            .strip_suffix(field)
            .map(|b| b.trim_end_matches('.'))
            .unwrap_or(path);
        return unknown_key(base, field, &expected, locs);
    }
    if let Some(field) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        return Diagnostic::error(path, format!("missing required key `{field}`"))
            .at(locs.value(path))
            .fix(format!("add `{field}:` under `{path}`"));
    }
    let msg = &plain(msg, path);
    let fix = if msg.contains(super::secret::LITERAL_SECRET) {
        "set an environment variable and write `{ env: NAME }`, or put it in a file (mode 600) and write `{ file: PATH }`"
    } else if msg.starts_with("unknown variant") {
        "use one of the values listed"
    } else {
        "see the recipe reference in README.md for this key's type"
    };
    let d = Diagnostic::error(path, msg.to_string())
        .at(locs.value(path))
        .fix(fix);
    // About a secret, or a reference that may hold one: no line, no value.
    if msg.contains(super::secret::LITERAL_SECRET)
        || msg.contains("secret reference")
        || msg.contains("not both")
        || super::secret::is_secret_path(path)
    {
        d.secret()
    } else {
        d
    }
}

/// serde's wording in the user's terms: no Rust type names (`struct
/// Content`, `u32`, `Value::Tagged enum`); an enumerated key lists its values.
fn plain(msg: &str, path: &str) -> String {
    let mut m = msg.to_string();
    if let Some(at) = m
        .find("expected a Value::Tagged enum")
        .or_else(|| m.find("expected enum "))
    {
        let values = super::schema::allowed_values(path)
            .map(|v| format!("expected one of: {}", v.join(", ")))
            .unwrap_or_else(|| "expected one of the values in the recipe reference".into());
        m = format!("{}{values}", &m[..at]);
    }
    if let Some(at) = m.find("expected struct ") {
        m = format!(
            "{}expected a mapping of keys (`key: value` lines, or `{{ key: value }}`)",
            &m[..at]
        );
    }
    for (t, max) in [
        ("u8", "255"),
        ("u16", "65535"),
        ("u32", "4294967295"),
        ("u64", "18446744073709551615"),
        ("usize", "18446744073709551615"),
    ] {
        let what = format!("expected {t}");
        if m.ends_with(&what) {
            m = format!(
                "{}expected a whole number from 0 to {max}",
                &m[..m.len() - what.len()]
            );
        }
    }
    for (from, to) in [
        (
            "invalid type: unit value",
            "invalid type: nothing (an empty value)",
        ),
        ("invalid type: sequence", "invalid type: a list"),
        ("invalid type: map", "invalid type: a mapping"),
        ("invalid type: enum", "invalid type: a tagged value"),
        ("floating point", "number"),
        ("expected a sequence", "expected a list"),
        ("expected a boolean", "expected true or false"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ] {
        m = m.replace(from, to);
    }
    m
}

/// A short rendering of a YAML value for messages.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Option<Parsed>, Vec<Diagnostic>) {
        parse(text, &Locations::index(text))
    }

    #[test]
    fn unknown_key_points_at_key_with_suggestion() {
        let t = "mediabuild: 1\nos_image:\n  id: PS100010\n  source: a.wim\n  indx: 3\n";
        let (_, d) = run(t);
        let u = d
            .iter()
            .find(|d| d.key == "os_image.indx")
            .expect("unknown key diag");
        assert_eq!(u.pos.map(|p| (p.line, p.col)), Some((5, 3)));
        assert_eq!(u.fix.as_deref(), Some("did you mean `index`?"));
        // Required sections are reported too, all at once.
        assert!(d
            .iter()
            .any(|d| d.key == "media" && d.message.contains("missing")));
        assert!(d.iter().any(|d| d.key == "outputs"));
    }

    #[test]
    fn type_errors_in_several_sections_all_reported() {
        let t = "mediabuild: one\ncompression: zstd\napplications:\n  - { id: A, name: a, source: x }\n  - { id: B, name: b, source: y, colour: red }\n";
        let (_, d) = run(t);
        assert!(d
            .iter()
            .any(|d| d.key == "mediabuild" && d.message.contains("invalid type")));
        assert!(d
            .iter()
            .any(|d| d.key == "compression" && d.message.contains("unknown variant")));
        let c = d
            .iter()
            .find(|d| d.key == "applications[1].colour")
            .expect("item diag");
        assert_eq!(c.pos.map(|p| p.line), Some(5));
    }

    #[test]
    fn syntax_error_has_position() {
        let (_, d) = run("media:\n  name: [unclosed\n");
        assert_eq!(d.len(), 1);
        assert!(d[0].message.starts_with("YAML syntax error"), "{:?}", d[0]);
        assert!(d[0].pos.is_some());
    }

    #[test]
    fn literal_secret_variable_is_refused_without_echo() {
        let t = "security:\n  password: hunter2hunter2\n";
        let (_, d) = run(t);
        let s = d
            .iter()
            .find(|d| d.key == "security.password")
            .expect("diag");
        assert!(s.message.contains("must not be written"));
        assert!(s.value.is_none());
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}
