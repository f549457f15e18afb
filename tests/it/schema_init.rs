//! `mediabuild schema` and `mediabuild init`: the committed recipe schema is the
//! generated one, it accepts the example and demo recipes and rejects unknown
//! keys and wrong types (judged by the `jsonschema` validator, not our walk),
//! and the `init` skeleton checks and validates.

use crate::support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn recipe_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read("schema/recipe.schema.json")).unwrap();
    jsonschema::validator_for(&schema).expect("the committed recipe schema is a valid JSON Schema")
}

/// A YAML recipe as the JSON value a schema validator sees.
fn yaml_value(text: &str) -> Value {
    let y: serde_yaml::Value = serde_yaml::from_str(text).expect("YAML");
    serde_json::to_value(y).expect("YAML → JSON")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn schema_command_prints_the_committed_schemas() {
    let o = run(&["schema"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let printed = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        printed,
        read("schema/recipe.schema.json"),
        "schema/recipe.schema.json is stale: run `mediabuild schema > schema/recipe.schema.json`"
    );
    // … and it is the schema the parser's unknown-key walk uses.
    let generated = mediabuild::recipe::schema::schema();
    assert_eq!(serde_json::from_str::<Value>(&printed).unwrap(), generated);

    let o = run(&["schema", "progress"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        read("docs/progress.schema.json")
    );
}

#[test]
fn recipe_schema_accepts_the_example_recipes_and_the_demo_recipe() {
    let v = recipe_validator();
    let mut seen = 0;
    for e in std::fs::read_dir(Path::new(ROOT).join("recipes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let doc = yaml_value(&std::fs::read_to_string(&p).unwrap());
        // A recipe that extends a base holds only what differs: it is a
        // whole recipe once composed (`check` judges that), not on its own.
        if doc.get("extends").is_some() {
            continue;
        }
        let errs = errors(&v, &doc);
        assert!(errs.is_empty(), "{}: {errs:#?}", p.display());
        seen += 1;
    }
    assert!(seen >= 3, "expected the example recipes, found {seen}");
    let d = shared_inputs();
    let doc = yaml_value(&std::fs::read_to_string(d.recipe()).unwrap());
    let errs = errors(&v, &doc);
    assert!(errs.is_empty(), "generated demo recipe: {errs:#?}");

    // What the parser accepts, the schema accepts: numbers and booleans as variable values.
    let p = d.variant(
        "schema-scalars.yaml",
        &[(
            "  OSDComputerName: WTG-DEMO-01\n",
            "  OSDComputerName: 42\n  SMSTSWaitForSecondReboot: 600\n  OSDDoCapture: true\n",
        )],
    );
    let o = run(&["check", p.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let errs = errors(&v, &yaml_value(&std::fs::read_to_string(&p).unwrap()));
    assert!(errs.is_empty(), "scalar variables: {errs:#?}");
}

#[test]
fn recipe_schema_rejects_an_unknown_key_a_wrong_type_and_a_literal_secret() {
    let v = recipe_validator();
    let base = yaml_value(&read("recipes/demo.yaml"));
    assert!(v.is_valid(&base));

    let mut unknown = base.clone();
    unknown["media"]["nmae"] = json!("typo");
    let errs = errors(&v, &unknown);
    assert!(
        errs.iter().any(|e| e.contains("nmae")),
        "an unknown key must be rejected: {errs:?}"
    );

    let mut top = base.clone();
    top["extra_section"] = json!({});
    assert!(
        !v.is_valid(&top),
        "an unknown top-level key must be rejected"
    );

    let mut wrong = base.clone();
    wrong["boot_image"]["index"] = json!("one");
    let errs = errors(&v, &wrong);
    assert!(
        errs.iter().any(|e| e.contains("/boot_image/index")),
        "a string index must be rejected: {errs:?}"
    );

    let mut enum_value = base.clone();
    enum_value["compression"] = json!("zip");
    assert!(
        !v.is_valid(&enum_value),
        "an unknown compression must be rejected"
    );

    let mut literal = base.clone();
    literal["security"]["password"] = json!("a literal password");
    assert!(!v.is_valid(&literal), "a literal secret must be rejected");

    let mut secret_typo = base.clone();
    secret_typo["variables"]["DomainPassword"] = json!({ "en": "X" });
    assert!(
        !v.is_valid(&secret_typo),
        "a secret reference with an unknown key must be rejected"
    );

    let mut missing = base;
    missing["media"]
        .as_object_mut()
        .unwrap()
        .remove("task_sequence");
    assert!(
        !v.is_valid(&missing),
        "a missing required key must be rejected"
    );
}

/// A demo whose own recipe is removed, so that `init` may write one beside its inputs.
fn demo_without_recipe() -> Demo {
    let d = Demo::small();
    std::fs::remove_file(d.recipe()).unwrap();
    d
}

const CHECK_ENV: &[(&str, &str)] = &[("MEDIA_PASSWORD", "ci-Media-Passw0rd!")];

#[test]
fn init_writes_the_skeleton_which_checks_and_validates_as_is() {
    let d = demo_without_recipe();
    let dir = d.dir().to_str().unwrap();
    let o = run(&["init", dir], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let written = std::fs::read_to_string(d.recipe()).unwrap();
    assert_eq!(written, read("templates/recipe.yaml"));
    // No temp file left beside it.
    let names: Vec<String> = std::fs::read_dir(d.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("recipe.yaml"))
        .collect();
    assert_eq!(names, ["recipe.yaml"]);

    // Against the demo inputs the skeleton is a whole valid recipe.
    let o = run(&["check", d.recipe().to_str().unwrap()], CHECK_ENV);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 error(s)"), "{}", text(&o));
    let errs = errors(&recipe_validator(), &yaml_value(&written));
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn init_refuses_to_overwrite_unless_forced() {
    let d = demo_without_recipe();
    let dir = d.dir().to_str().unwrap();
    std::fs::write(d.recipe(), "# mine\n").unwrap();
    let o = run(&["init", dir], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("already exists") && t.contains("--force"), "{t}");
    assert!(t.contains(&d.recipe().display().to_string()), "{t}");
    assert_eq!(std::fs::read_to_string(d.recipe()).unwrap(), "# mine\n");

    let o = run(&["init", dir, "--force"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(d.recipe()).unwrap(),
        read("templates/recipe.yaml")
    );

    // A folder that does not exist yet is created.
    let fresh: PathBuf = d.dir().join("new/site");
    let o = run(&["init", fresh.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(fresh.join("recipe.yaml").is_file());
}

/// The skeleton with every commented-out key line made live.
fn uncommented(template: &str) -> String {
    let key_line = |rest: &str| {
        let r = rest.trim_start();
        r.starts_with("- ")
            || r.split_once(':').is_some_and(|(k, v)| {
                !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && (v.is_empty() || v.starts_with(' '))
            })
    };
    template
        .lines()
        .map(|l| {
            let indent = l.len() - l.trim_start().len();
            match l.trim_start().strip_prefix("# ") {
                Some(rest) if key_line(rest) => format!("{}{rest}", &l[..indent]),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Key paths of a YAML document in the schema's notation (`a.b`, `list[].c`).
fn yaml_paths(v: &serde_yaml::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap();
                let p = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                out.push(p.clone());
                // Variable names are free; the schema lists no keys under `variables`.
                if p != "variables" {
                    yaml_paths(v, &p, out);
                }
            }
        }
        serde_yaml::Value::Sequence(s) => {
            for x in s {
                yaml_paths(x, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_skeleton_describes_every_key_and_each_loads_without_structural_errors() {
    let full = uncommented(&read("templates/recipe.yaml"));
    let y: serde_yaml::Value = serde_yaml::from_str(&full).expect("uncommented skeleton is YAML");
    let mut have = Vec::new();
    yaml_paths(&y, "", &mut have);
    // Every key the parser accepts is in the skeleton; of a secret reference
    // (`{ env }` or `{ file }`, exclusive) one spelling is enough.
    for key in mediabuild::recipe::schema::key_paths() {
        let secret_alt = ["env", "file"].iter().any(|alt| {
            key.rsplit_once('.').is_some_and(|(parent, leaf)| {
                (leaf == "env" || leaf == "file") && have.contains(&format!("{parent}.{alt}"))
            })
        });
        assert!(
            have.contains(&key) || secret_alt,
            "templates/recipe.yaml does not describe `{key}`"
        );
    }
    let errs = errors(&recipe_validator(), &yaml_value(&full));
    assert!(errs.is_empty(), "{errs:#?}");

    // Live, every key loads: no unknown-key, type or missing-field error. (Some
    // choices exclude each other — index/image, self_signed/pki — which only
    // validation refuses.)
    let d = demo_without_recipe();
    std::fs::write(d.recipe(), &full).unwrap();
    let o = run(
        &["check", d.recipe().to_str().unwrap(), "--json"],
        CHECK_ENV,
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("check --json");
    for diag in v["diagnostics"].as_array().unwrap() {
        let msg = diag["message"].as_str().unwrap();
        for bad in ["unknown key", "invalid type", "missing field", "syntax"] {
            assert!(!msg.contains(bad), "structural error: {diag}");
        }
    }
}
