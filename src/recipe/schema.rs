//! The recipe's JSON Schema, generated from the same types the parser uses,
//! and a walk over it that finds every unknown key of a recipe at once.

use super::locate::Locations;
use super::model::Recipe;
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

/// Reports every unknown key in `v` and removes it, so that typed parsing can
/// go on and report the remaining problems.
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
            let keys: Vec<Value> = map.keys().cloned().collect();
            for k in keys {
                let Some(name) = k.as_str().map(str::to_string) else {
                    continue;
                };
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                let sub = props.and_then(|p| p.get(&name)).or(extra);
                match sub {
                    Some(sub) => {
                        if let Some(child) = map.get_mut(&k) {
                            walk(root, sub, child, &p, locs, diags);
                        }
                    }
                    None if closed => {
                        let expected: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let d = Diagnostic::error(p.clone(), "unknown key")
                            .at(locs.key(&p))
                            .value(&name);
                        diags.push(match suggest(&name, &expected) {
                            Some(s) => d.fix(format!("did you mean `{s}`?")),
                            None => d.fix(format!(
                                "remove it; keys allowed here: {}",
                                expected.join(", ")
                            )),
                        });
                        map.remove(&k);
                    }
                    None => {}
                }
            }
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
