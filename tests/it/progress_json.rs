//! `--progress json`: every line a real build emits validates against the
//! committed schema (`docs/progress.schema.json`), the stream is well formed
//! (start first, phases closed, rate-limited progress, one result last), a
//! failing build ends with a `result` saying so, and no secret appears.
//! Also `check --json` / `plan --json` carry the same version.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

fn progress_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/progress.schema.json"
    ))
    .unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the progress schema is a valid JSON Schema")
}

/// Every stderr line, parsed and validated; panics on any line that is not
/// a valid protocol line (stderr must hold nothing else).
fn lines(o: &Output) -> Vec<Value> {
    let v = progress_validator();
    let stderr = String::from_utf8(o.stderr.clone()).expect("UTF-8 stderr");
    assert!(!stderr.is_empty(), "no JSON lines; stdout: {}", text(o));
    stderr
        .lines()
        .map(|l| {
            let j: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            let errs: Vec<String> = v.iter_errors(&j).map(|e| e.to_string()).collect();
            assert!(errs.is_empty(), "line fails the schema: {l}\n{errs:#?}");
            j
        })
        .collect()
}

fn of_type<'a>(ls: &'a [Value], t: &str) -> Vec<&'a Value> {
    ls.iter().filter(|l| l["type"] == t).collect()
}

/// Structure every stream has, whatever the outcome.
fn well_formed(ls: &[Value]) {
    assert_eq!(ls[0]["type"], "start", "first line: {}", ls[0]);
    assert_eq!(ls.last().unwrap()["type"], "result");
    assert_eq!(of_type(ls, "result").len(), 1, "exactly one result line");
    let mut last_t = 0.0;
    // Phases may overlap (the WIM and the disk image are written side by
    // side), but a phase is never begun twice at once, and progress and end
    // lines belong to an open phase.
    let mut open: std::collections::BTreeSet<String> = Default::default();
    // Per phase: t of its previous progress line.
    let mut last_progress: BTreeMap<String, f64> = BTreeMap::new();
    for (i, l) in ls.iter().enumerate() {
        assert_eq!(l["v"], 1);
        let t = l["t"].as_f64().unwrap();
        assert!(t >= last_t, "time goes back at line {i}: {l}");
        last_t = t;
        let phase = l["phase"].as_str().map(str::to_string);
        match l["type"].as_str().unwrap() {
            "begin" => {
                let p = phase.unwrap();
                assert!(open.insert(p.clone()), "phase {p} begun twice at {l}");
            }
            "progress" => {
                let p = phase.unwrap();
                assert!(open.contains(&p), "progress outside its phase: {l}");
                // Rate limit: ≥ 200 ms between two lines of a phase, except the
                // last one, which is flushed right before its `end`.
                let flushed = ls[i + 1..]
                    .iter()
                    .find(|n| n["phase"] == p.as_str())
                    .is_some_and(|n| n["type"] == "end");
                if let Some(prev) = last_progress.get(&p) {
                    if !flushed {
                        assert!(
                            t - prev >= 0.199,
                            "progress lines {prev} and {t} of {p} too close"
                        );
                    }
                }
                last_progress.insert(p, t);
            }
            "end" => {
                let p = phase.unwrap();
                assert!(open.remove(&p), "end of a phase not begun: {l}");
                last_progress.remove(&p);
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "phases {open:?} never ended");
}

#[test]
fn a_demo_build_emits_valid_lines_and_a_result_with_every_output() {
    let d = Demo::new();
    let o = d.run(&["build", d.recipe().to_str().unwrap(), "--progress", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ls = lines(&o);
    well_formed(&ls);
    assert_eq!(ls[0]["command"], "build");
    let phases: Vec<&str> = of_type(&ls, "begin")
        .iter()
        .map(|l| l["phase"].as_str().unwrap())
        .collect();
    assert!(phases.len() >= 3, "phases: {phases:?}");
    assert!(!of_type(&ls, "progress").is_empty(), "no progress line");
    let r = ls.last().unwrap();
    assert_eq!(r["status"], "ok");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["error"], Value::Null);
    let outputs = r["outputs"].as_array().unwrap();
    let kinds: Vec<&str> = outputs
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["wim", "disk", "creator_package"]);
    for x in outputs {
        let p = Path::new(x["path"].as_str().unwrap());
        assert!(Path::new(x["manifest"].as_str().unwrap()).is_file());
        if p.is_file() {
            assert_eq!(
                x["size"].as_u64().unwrap(),
                std::fs::metadata(p).unwrap().len()
            );
            assert_eq!(x["sha256"].as_str().unwrap(), sha256(p), "{}", p.display());
        } else {
            assert!(p.is_dir(), "{} missing", p.display());
        }
    }
    // Same facts as the human report on stdout.
    let stdout = String::from_utf8_lossy(&o.stdout);
    for x in outputs {
        assert!(stdout.contains(x["sha256"].as_str().unwrap()), "{stdout}");
    }
}

#[test]
fn a_failing_build_ends_with_a_failed_result() {
    let d = Demo::small();
    let o = run(
        &["build", d.recipe().to_str().unwrap(), "--progress", "json"],
        &[("MEDIABUILD_FAULT_INJECT", "after-render")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let ls = lines(&o);
    assert_eq!(ls[0]["type"], "start");
    let r = ls.last().unwrap();
    assert_eq!(r["type"], "result", "last line: {r}");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["exit_code"], 2);
    assert!(r["outputs"].as_array().unwrap().is_empty());
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("build failed") && err.contains("fault injected"),
        "{err}"
    );
    assert!(
        !d.wim().exists(),
        "a failed build must not leave an artefact"
    );
}

#[test]
fn an_invalid_recipe_gives_diagnostic_lines_and_a_failed_result() {
    let d = shared_inputs();
    let p = d.variant(
        "progress-sitecode.yaml",
        &[("  code: PS1 ", "  code: PS1\n  sitecode: PS2\n ")],
    );
    let o = run(&["--progress", "json", p.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let ls = lines(&o);
    well_formed(&ls);
    let diags = of_type(&ls, "diagnostic");
    let unknown = diags
        .iter()
        .find(|l| l["key"] == "site.sitecode")
        .unwrap_or_else(|| panic!("no diagnostic for site.sitecode: {diags:?}"));
    assert_eq!(unknown["severity"], "error");
    assert_eq!(unknown["message"], "unknown key");
    assert!(unknown["fix"].as_str().unwrap().contains("code"));
    assert!(unknown["pos"]["line"].as_u64().unwrap() > 0);
    let r = ls.last().unwrap();
    assert_eq!(r["status"], "failed");
    assert_eq!(r["errors"], 1);
    assert!(r["error"].as_str().unwrap().contains("nothing was built"));
    // Only the check ran: no build phase started.
    let phases: Vec<&Value> = of_type(&ls, "begin").iter().map(|l| &l["phase"]).collect();
    assert_eq!(
        phases,
        ["check"],
        "nothing may be built from an invalid recipe"
    );
}

#[test]
fn no_secret_in_any_json_line_even_with_warnings() {
    let d = Demo::small();
    // A weak media password (allowed loudly) and a secret variable from the environment.
    let weak = "weakpw";
    let var = "Sekr3t-Domain-Join-Passw0rd";
    std::fs::write(
        d.dir().join("secrets/media-password.txt"),
        format!("{weak}\n"),
    )
    .unwrap();
    let p = d.variant(
        "secrets.yaml",
        &[(
            "  OSDComputerName: WTG-DEMO-01\n",
            "  OSDComputerName: WTG-DEMO-01\n  DomainJoinPassword: { env: MB_TEST_JOIN_PW }\n",
        )],
    );
    let o = run(
        &[
            "build",
            p.to_str().unwrap(),
            "--progress",
            "json",
            "--allow-weak-password",
        ],
        &[("MB_TEST_JOIN_PW", var)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ls = lines(&o);
    well_formed(&ls);
    assert!(
        !of_type(&ls, "warning").is_empty(),
        "the weak password must warn"
    );
    let all = text(&o);
    let pass = std::fs::read_to_string(d.dir().join("secrets/wtg-passphrase.txt")).unwrap();
    for s in [weak, var, pass.trim()] {
        assert!(!all.contains(s), "secret {s:?} appears in the output");
    }

    // A failure while the secrets are in play: still none in the result.
    let o = run(
        &[
            "build",
            p.to_str().unwrap(),
            "--progress",
            "json",
            "--allow-weak-password",
        ],
        &[
            ("MB_TEST_JOIN_PW", var),
            ("MEDIABUILD_FAULT_INJECT", "before-finalize"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(lines(&o).last().unwrap()["status"], "failed");
    let all = text(&o);
    for s in [weak, var, pass.trim()] {
        assert!(!all.contains(s), "secret {s:?} appears in the output");
    }
}

#[test]
fn demo_command_reports_in_json_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let o = run(
        &[
            "demo",
            dir.to_str().unwrap(),
            "--no-build",
            "--progress",
            "json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ls = lines(&o);
    well_formed(&ls);
    assert_eq!(ls[0]["command"], "demo");
    assert_eq!(ls.last().unwrap()["status"], "ok");
    assert!(dir.join("recipe.yaml").is_file());
}

#[test]
fn quiet_and_progress_none_print_no_progress() {
    let d = Demo::small();
    let recipe = d.recipe();
    for flags in [&["-q"][..], &["--progress", "none"][..]] {
        let mut args = vec!["build", recipe.to_str().unwrap()];
        args.extend_from_slice(flags);
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Plain lines name each phase.
    let o = d.run(&["build", d.recipe().to_str().unwrap(), "--progress", "plain"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("prepare: start"));
}

#[test]
fn check_and_plan_json_carry_the_protocol_version() {
    let d = shared_inputs();
    let o = d.run(&["check", d.recipe().to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["v"].as_u64(), v["type"].as_str()),
        (Some(1), Some("check"))
    );
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"], 0);
    assert!(v["diagnostics"].is_array());

    let bad = d.variant(
        "progress-index.yaml",
        &[("index: 1, arch: x64", "index: one, arch: x64")],
    );
    let o = d.run(&["check", bad.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["diagnostics"][0]["key"], "boot_image.index");
    // The same object as a `diagnostic` line, less the envelope.
    let o = d.run(&["build", bad.to_str().unwrap(), "--progress", "json"]);
    let line = lines(&o)
        .into_iter()
        .find(|l| l["type"] == "diagnostic")
        .unwrap();
    let mut line = line.as_object().unwrap().clone();
    for k in ["v", "t", "type"] {
        line.remove(k);
    }
    assert_eq!(Value::Object(line), v["diagnostics"][0]);

    let o = d.run(&["plan", d.recipe().to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["v"].as_u64(), v["type"].as_str()),
        (Some(1), Some("plan"))
    );
    assert!(v["media"]["members"].is_array());
}

#[test]
fn ctrl_c_is_a_json_warning_and_a_failed_result() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let d = Demo::with_size(64 << 20);
    let mut child = Command::new(BIN)
        .args(["build", d.recipe().to_str().unwrap(), "--jobs", "1"])
        .args(["--progress", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut got = Vec::new();
    let mut sent = false;
    for l in stderr.lines() {
        let l = l.unwrap();
        // Interrupt once the WIM is being written.
        if !sent && l.contains(r#""type":"progress","phase":"write wim""#) {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            sent = true;
        }
        got.push(l);
    }
    let status = child.wait().unwrap();
    assert!(sent, "the build never wrote the WIM: {got:#?}");
    assert_eq!(status.code(), Some(2), "{got:#?}");
    let v = progress_validator();
    let ls: Vec<Value> = got
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &ls {
        assert!(v.is_valid(l), "{l}");
    }
    assert!(
        ls.iter()
            .any(|l| l["type"] == "warning"
                && l["message"].as_str().unwrap().contains("interrupted")),
        "{got:#?}"
    );
    let r = ls.last().unwrap();
    assert_eq!(
        (r["type"].as_str(), r["status"].as_str()),
        (Some("result"), Some("failed"))
    );
    assert!(r["error"].as_str().unwrap().contains("cancelled"), "{r}");
    assert!(!d.wim().exists());
}
