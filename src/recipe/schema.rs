//! The recipe's JSON Schema, generated from the same types the parser uses,
//! and a walk over it that finds every unknown key of a recipe at once.

use super::locate::Locations;
use super::model::Recipe;
use super::secret::is_secret_path;
use crate::diag::{suggest, Diagnostic};
use serde_json::Value as Json;
use serde_yaml::Value;

/// The JSON Schema of a recipe.
pub fn schema() -> Json {
    schemars::schema_for!(Recipe).as_value().clone()
}

/// Follows `$ref` and picks the object branch of `anyOf`/`oneOf` (for `Option<T>`).
fn resolve<'a>(root: &'a Json, s: &'a Json) -> &'a Json {
    if let Some(r) = s.get("$ref").and_then(Json::as_str) {
        let name = r.rsplit('/').next().unwrap_or("");
        if let Some(d) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, d);
        }
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = s.get(k).and_then(Json::as_array) {
            for b in list {
                let b = resolve(root, b);
                if b.get("properties").is_some() || b.get("items").is_some() {
                    return b;
                }
            }
        }
    }
    s
}

/// Every key path the schema accepts (`media.management.mode`, `applications[].id`, …).
pub fn key_paths() -> Vec<String> {
    let root = schema();
    let mut out = Vec::new();
    collect(&root, &root, "", &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect(root: &Json, s: &Json, path: &str, out: &mut Vec<String>) {
    let s = resolve(root, s);
    if let Some(props) = s.get("properties").and_then(Json::as_object) {
        for (k, v) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            out.push(p.clone());
            collect(root, v, &p, out);
        }
    }
    if let Some(items) = s.get("items") {
        collect(root, items, &format!("{path}[]"), out);
    }
}

/// The values an enumerated key accepts (`compression` → none, xpress, …),
/// found by following `path` (`a.b`, `list[3].c`) through the schema.
pub fn allowed_values(path: &str) -> Option<Vec<String>> {
    let root = schema();
    let mut s = resolve(&root, &root);
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        let name = pieces.next().unwrap_or("");
        let props = s.get("properties").and_then(Json::as_object);
        s = resolve(
            &root,
            props
                .and_then(|p| p.get(name))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))?,
        );
        for _ in pieces {
            s = resolve(&root, s.get("items")?);
        }
    }
    let list = s.get("enum").and_then(Json::as_array).or_else(|| {
        s.get("oneOf")
            .and_then(Json::as_array)
            .filter(|l| l.iter().all(|b| b.get("const").is_some()))
    })?;
    Some(
        list.iter()
            .filter_map(|v| v.get("const").unwrap_or(v).as_str().map(str::to_string))
            .collect(),
    )
}

/// Reports every unknown key in `v` and removes it, and every YAML tag
/// (`!name`, which no recipe key uses) and unwraps it, so that typed parsing
/// can go on and report the remaining problems. Under a secret key neither the
/// unknown key's name nor the tag is shown: either may be the secret.
pub fn strip_unknown(v: &mut Value, locs: &Locations, diags: &mut Vec<Diagnostic>) {
    let root = schema();
    walk(&root, &root, v, "", locs, diags);
}

fn walk(
    root: &Json,
    s: &Json,
    v: &mut Value,
    path: &str,
    locs: &Locations,
    diags: &mut Vec<Diagnostic>,
) {
    let s = resolve(root, s);
    match v {
        Value::Mapping(map) => {
            let props = s.get("properties").and_then(Json::as_object);
            let closed = s.get("additionalProperties") == Some(&Json::Bool(false));
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            let mut unknown = Vec::new();
            for (k, child) in map.iter_mut() {
                let Some(name) = k.as_str() else {
                    continue;
                };
                let p = if path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
                match props.and_then(|p| p.get(name)).or(extra) {
                    Some(sub) => walk(root, sub, child, &p, locs, diags),
                    None if closed => {
                        unknown.push(k.clone());
                        // The key's own path: below a variable it is inside a reference.
                        if is_secret_path(path) || is_secret_path(&p) {
                            if unknown.len() > 1 {
                                continue;
                            }
                            diags.push(
                                Diagnostic::error(path, "unknown key in a secret reference (not shown: it may be the secret)")
                                    .at(locs.value(path))
                                    .fix("write { env: NAME } or { file: PATH }")
                                    .secret(),
                            );
                            continue;
                        }
                        let expected: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let d = Diagnostic::error(p.clone(), "unknown key")
                            .at(locs.key(&p))
                            .value(name);
                        diags.push(match suggest(name, &expected) {
                            Some(s) => d.fix(format!("did you mean `{s}`?")),
                            None => d.fix(format!(
                                "remove it; keys allowed here: {}",
                                expected.join(", ")
                            )),
                        });
                    }
                    None => {}
                }
            }
            // One pass: removing keys one by one would shift the map each time.
            if !unknown.is_empty() {
                let gone: std::collections::HashSet<Value> = unknown.into_iter().collect();
                map.retain(|k, _| !gone.contains(k));
            }
        }
        Value::Tagged(t) => {
            let d = Diagnostic::error(path, "a YAML tag (`!name`) has no meaning in a recipe")
                .at(locs.value(path))
                .fix("remove the tag and write the plain value");
            diags.push(if is_secret_path(path) {
                d.secret()
            } else {
                d.value(&t.tag)
            });
            let inner = std::mem::take(&mut t.value);
            *v = inner;
            walk(root, s, v, path, locs, diags);
        }
        Value::Sequence(items) => {
            if let Some(item) = s.get("items") {
                for (i, x) in items.iter_mut().enumerate() {
                    walk(root, item, x, &format!("{path}[{i}]"), locs, diags);
                }
            }
        }
        _ => {}
    }
}
