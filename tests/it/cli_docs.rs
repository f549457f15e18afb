//! Documents generated from the clap definitions (shell completions, man
//! pages) cover every subcommand, and the CI workflow template works: its
//! shell steps, run here as GitHub would run them, build and collect the
//! example recipes and fail on a bad one.

use crate::support::*;
use std::path::{Path, PathBuf};

/// The visible subcommands, from `mediabuild --help` (so new ones are covered too).
fn subcommands() -> Vec<String> {
    let o = run(&["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8(o.stdout).unwrap();
    let list: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists commands")
        .lines()
        .take_while(|l| l.starts_with("  "))
        // A wrapped description continues on a line indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    for want in [
        "build",
        "check",
        "plan",
        "schema",
        "init",
        "completions",
        "manpage",
        "demo",
    ] {
        assert!(list.iter().any(|c| c == want), "{want} not in {list:?}");
    }
    list
}

#[test]
fn completions_name_every_subcommand() {
    let subs = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(&["completions", shell], &[]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", text(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        for s in &subs {
            assert!(script.contains(s.as_str()), "{shell} completion lacks {s}");
        }
    }
    let o = run(&["completions", "bash"], &[]);
    let script = String::from_utf8(o.stdout).unwrap();
    // Flags and their values are completed too.
    for want in ["--progress", "--force", "json", "_mediabuild()"] {
        assert!(script.contains(want), "bash completion lacks {want}");
    }
    if tool("bash") {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("c.bash");
        std::fs::write(&f, &script).unwrap();
        let o = sh(&format!("bash -n {}", f.display()));
        assert!(o.status.success(), "bash -n: {}", text(&o));
    }
    let o = run(&["completions", "tcsh"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("possible values"), "{}", text(&o));
}

fn man_render(page: &Path) -> String {
    let o = sh(&format!(
        "MANWIDTH=100 MANPAGER=cat PAGER=cat man -l {} 2>&1",
        page.display()
    ));
    assert!(
        o.status.success(),
        "man -l {}: {}",
        page.display(),
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_man_page_renders_and_lists_every_subcommand() {
    let subs = subcommands();
    let o = run(&["manpage"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let roff = String::from_utf8(o.stdout).unwrap();
    assert!(
        roff.starts_with(".ie") || roff.contains(".TH mediabuild"),
        "{roff}"
    );
    for s in &subs {
        assert!(roff.contains(s.as_str()), "man page lacks {s}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&["manpage", "--out-dir", tmp.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut pages: Vec<PathBuf> = vec![tmp.path().join("mediabuild.1")];
    for s in &subs {
        pages.push(tmp.path().join(format!("mediabuild-{s}.1")));
    }
    for p in &pages {
        assert!(p.is_file(), "{} not written", p.display());
    }
    assert_eq!(std::fs::read_to_string(&pages[0]).unwrap(), roff);
    if tool("man") && tool("groff") {
        let page = man_render(&pages[0]);
        assert!(
            page.contains("NAME") && page.contains("mediabuild"),
            "{page}"
        );
        for s in &subs {
            assert!(
                page.contains(s.as_str()),
                "rendered page lacks {s}:\n{page}"
            );
        }
        let build = man_render(&tmp.path().join("mediabuild-build.1"));
        assert!(build.contains("--progress"), "{build}");
    }
}

// ---- the CI workflow template ----

fn workflow() -> serde_yaml::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/ci/github-actions.yml"
    );
    serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).expect("workflow is YAML")
}

fn step<'a>(job: &'a serde_yaml::Value, name: &str) -> &'a serde_yaml::Value {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str() == Some(name) || s["id"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("workflow has no step {name:?}"))
}

#[test]
fn the_workflow_runs_nightly_caches_uploads_and_verifies() {
    let w = workflow();
    assert!(
        w["on"]["schedule"][0]["cron"].as_str().is_some(),
        "no nightly schedule"
    );
    let build = &w["jobs"]["build"];
    let cache = step(build, "restore the mediabuild cache");
    assert!(cache["uses"]
        .as_str()
        .unwrap()
        .starts_with("actions/cache@"));
    let cache_path = cache["with"]["path"].as_str().unwrap();
    assert_eq!(
        format!(
            "{}/mediabuild",
            build["env"]["XDG_CACHE_HOME"].as_str().unwrap()
        ),
        cache_path,
        "the cached folder must be mediabuild's cache under XDG_CACHE_HOME"
    );
    let up = step(build, "upload artefacts and manifests");
    assert!(up["uses"]
        .as_str()
        .unwrap()
        .starts_with("actions/upload-artifact@"));
    assert!(step(build, "checksums")["run"]
        .as_str()
        .unwrap()
        .contains("sha256sum --strict -c"));
    let verify = step(build, "verify")["run"].as_str().unwrap();
    assert!(verify.contains("mediabuild verify \"$artefact\" --manifest \"$manifest\""));
    assert!(verify.contains("exit \"$failed\""));
    assert!(step(build, "build")["run"]
        .as_str()
        .unwrap()
        .contains("--progress json"));
}

/// Runs one workflow step's shell in `dir` as GitHub's `bash -e` would.
fn run_step(
    job: &serde_yaml::Value,
    name: &str,
    dir: &Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    let script = step(job, name)["run"].as_str().unwrap().to_string();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut c = std::process::Command::new("bash");
    c.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("GITHUB_OUTPUT", dir.join("github-output"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"));
    for (k, v) in env {
        c.env(k, v);
    }
    for (k, v) in step(job, name)["env"].as_mapping().into_iter().flatten() {
        c.env(k.as_str().unwrap(), v.as_str().unwrap());
    }
    c.output().unwrap()
}

#[test]
fn the_workflow_steps_build_and_collect_every_example_recipe() {
    if !(tool("bash") && tool("jq")) {
        return;
    }
    let w = workflow();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(repo.join("recipes")).unwrap();
    for e in std::fs::read_dir(root.join("recipes")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, repo.join("recipes").join(p.file_name().unwrap())).unwrap();
    }
    // The list job: every recipe but the demo generator's own.
    let o = run_step(&w["jobs"]["recipes"], "list", repo, &[]);
    assert!(o.status.success(), "list: {}", text(&o));
    let out = std::fs::read_to_string(repo.join("github-output")).unwrap();
    let list: Vec<String> =
        serde_json::from_str(out.trim().strip_prefix("recipes=").unwrap()).unwrap();
    // Bases (`extends:` targets) are not built on their own.
    assert_eq!(
        list,
        [
            "recipes/minimal.yaml",
            "recipes/site-berlin.yaml",
            "recipes/site-lyon.yaml",
            "recipes/windows-to-go.yaml"
        ]
    );

    let job = &w["jobs"]["build"];
    let o = run_step(job, "inputs", repo, &[]);
    assert!(o.status.success(), "inputs: {}", text(&o));
    let secrets = [
        ("MEDIA_PASSWORD", "ci-Media-Passw0rd!"),
        ("WTG_PASSPHRASE", "ci-WTG-passphrase"),
    ];
    for recipe in &list {
        let mut env = vec![("RECIPE", recipe.as_str())];
        env.extend_from_slice(&secrets);
        for s in ["check", "build", "checksums", "verify", "collect artefacts"] {
            let o = run_step(job, s, repo, &env);
            assert!(o.status.success(), "{recipe}: step {s}: {}", text(&o));
        }
        let name = Path::new(recipe).file_stem().unwrap().to_str().unwrap();
        let progress =
            std::fs::read_to_string(repo.join(format!("reports/{name}/progress.jsonl"))).unwrap();
        let result: serde_json::Value =
            serde_json::from_str(progress.lines().last().unwrap()).unwrap();
        assert_eq!(result["status"], "ok");
        let collected = repo.join("artefacts").join(name);
        for x in result["outputs"].as_array().unwrap() {
            let p = Path::new(x["path"].as_str().unwrap());
            let copy = collected.join(p.file_name().unwrap());
            assert!(copy.exists(), "{} not collected", copy.display());
            if p.is_file() {
                assert_eq!(sha256(&copy), x["sha256"].as_str().unwrap());
            }
            let m = Path::new(x["manifest"].as_str().unwrap());
            assert!(collected.join(m.file_name().unwrap()).is_file());
        }
        assert!(collected.join("SHA256SUMS").is_file());
    }
    let summary = std::fs::read_to_string(repo.join("summary.md")).unwrap();
    assert!(summary.contains("### recipes/minimal.yaml"), "{summary}");

    // A flipped byte in an artefact fails the checksums step, naming it.
    let wim = repo.join("demo/out/minimal.wim");
    let mut bytes = std::fs::read(&wim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::remove_file(&wim).unwrap(); // break the hard link to the collected copy
    std::fs::write(&wim, bytes).unwrap();
    let o = run_step(
        job,
        "checksums",
        repo,
        &[("RECIPE", "recipes/minimal.yaml")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("::error::SHA256SUMS does not match recipes/../demo/out/minimal.wim"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_workflow_steps_fail_on_a_bad_recipe_with_an_annotation() {
    if !(tool("bash") && tool("jq")) {
        return;
    }
    let w = workflow();
    let d = Demo::small();
    let bad = d.variant(
        "bad.yaml",
        &[("  code: PS1 ", "  code: PS1\n  sitecode: PS2\n ")],
    );
    let job = &w["jobs"]["build"];
    let recipe = bad.to_str().unwrap();
    for s in ["check", "build"] {
        let o = run_step(job, s, d.dir(), &[("RECIPE", recipe)]);
        assert_eq!(o.status.code(), Some(2), "step {s} must fail: {}", text(&o));
        assert!(
            text(&o).contains("::error title=site.sitecode::unknown key"),
            "step {s}: {}",
            text(&o)
        );
    }
}

#[test]
fn the_workflow_shell_passes_shellcheck() {
    if !tool("shellcheck") {
        return;
    }
    let w = workflow();
    for (job, j) in w["jobs"].as_mapping().unwrap() {
        for s in j["steps"].as_sequence().unwrap() {
            let Some(script) = s["run"].as_str() else {
                continue;
            };
            // GitHub expressions are substituted before the shell sees the script.
            let mut plain = String::new();
            let mut rest = script;
            while let Some(i) = rest.find("${{") {
                plain.push_str(&rest[..i]);
                plain.push('X');
                rest = &rest[i + rest[i..].find("}}").unwrap() + 2..];
            }
            plain.push_str(rest);
            let mut c = std::process::Command::new("shellcheck")
                .args(["-s", "bash", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(plain.as_bytes()).unwrap();
            let o = c.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "{job:?} step {:?}: {}",
                s["name"],
                text(&o)
            );
        }
    }
}
