//! The README's recipe reference lists exactly the keys the parser accepts.

use std::collections::BTreeSet;

#[test]
fn readme_lists_every_recipe_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Recipe reference")
        .nth(1)
        .expect("README has a `## Recipe reference` section")
        .split("\n## ")
        .next()
        .unwrap();
    // Table rows: | `key.path` | type | default | seed | meaning |
    let documented: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    let accepted: BTreeSet<String> = mediabuild::recipe::schema::key_paths()
        .into_iter()
        .collect();
    let missing: Vec<_> = accepted.difference(&documented).collect();
    // `variables.<NAME>` documents the free-form variable map.
    let extra: Vec<_> = documented
        .difference(&accepted)
        .filter(|k| !k.contains('<'))
        .collect();
    assert!(
        missing.is_empty(),
        "keys the parser accepts but README does not document: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "keys README documents but the parser rejects: {extra:?}"
    );
}

#[test]
fn schema_rejects_unknown_keys_everywhere() {
    let s = mediabuild::recipe::schema::schema();
    assert_eq!(s["additionalProperties"], false);
}
