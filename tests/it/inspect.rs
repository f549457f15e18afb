//! `inspect`, `verify` and `diff` (issue 7) driven through the binary on the
//! demo: JSON snapshots, a diff that lists exactly what changed, damage that
//! `verify` must catch on both a .wim and a disk image, and no secret in any
//! of their outputs.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Output;

const MEDIA_PASSWORD: &str = "demo-Media-Passw0rd-2026";
const PASSPHRASE: &str = "demo-WTG-Passphrase-2026";

/// The shared built demo (support): these tests only read it.
fn built() -> &'static Demo {
    shared_demo()
}

fn img(d: &Demo) -> PathBuf {
    d.out().join("demo-wtg.img")
}

fn mb(args: &[&str]) -> Output {
    run(args, &[])
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// Compares `got` with the committed golden file `tests/snapshots/NAME`;
/// `UPDATE_SNAPSHOTS=1` rewrites it.
fn snapshot(name: &str, got: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() || !p.exists() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, got).unwrap();
        assert!(
            std::env::var_os("UPDATE_SNAPSHOTS").is_some(),
            "snapshot {name} was missing; written, check it in and re-run"
        );
        return;
    }
    let want = std::fs::read_to_string(&p).unwrap();
    if want != got {
        let at = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "snapshot {name} differs at line {}:\n want: {}\n  got: {}\n(UPDATE_SNAPSHOTS=1 to accept)",
            at + 1,
            want.lines().nth(at).unwrap_or(""),
            got.lines().nth(at).unwrap_or("")
        );
    }
}

/// The tool versions are the one volatile part of our JSON outputs.
fn redact(mut v: serde_json::Value) -> String {
    if let Some(o) = v.as_object_mut() {
        if o.contains_key("tools") {
            o.insert("tools".into(), "[redacted]".into());
        }
    }
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

fn pw_file(d: &Demo) -> String {
    d.dir()
        .join("secrets/media-password.txt")
        .display()
        .to_string()
}

#[test]
fn inspect_json_of_the_demo_matches_the_snapshots() {
    let d = built();
    for (art, name) in [(d.wim(), "wim"), (img(d), "img")] {
        let o = mb(&["inspect", art.to_str().unwrap(), "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        snapshot(&format!("inspect-demo-{name}.json"), &redact(json(&o)));
    }
    // With the media password, the names come from the media itself.
    let pw = pw_file(d);
    let o = mb(&[
        "inspect",
        d.wim().to_str().unwrap(),
        "--password-file",
        &pw,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["variables"]["source"], "Variables.dat");
    snapshot("inspect-demo-wim-password.json", &redact(v));
}

#[test]
fn inspect_text_names_images_packages_and_partitions() {
    let d = built();
    let o = mb(&["inspect", img(d).to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "partition table: mbr",
        "type 0x0C",
        "active",
        "filesystem: FAT32 label \"DEMO-WTG\"",
        "boot image PS100005: Microsoft Windows PE (x64) (x64)",
        "OS image PS100010: Windows 8.1 Enterprise (x64, Enterprise)",
        "PS100201 package         ConfigMgr client",
        "PS100301 driver_package  Surface drivers",
        "PasswordRequired=true",
        "OSDBitLockerPIN (secret)",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    // Without a manifest nothing knows the package names.
    let tmp = tempfile::tempdir().unwrap();
    let lone = tmp.path().join("lone.wim");
    std::fs::copy(d.wim(), &lone).unwrap();
    let t = text(&mb(&["inspect", lone.to_str().unwrap()]));
    assert!(t.contains("PS100201 unknown         unknown"), "{t}");
    assert!(t.contains("manifest: none"), "{t}");
}

#[test]
fn show_values_needs_the_password_and_never_shows_a_secret() {
    let d = built();
    let o = mb(&["inspect", d.wim().to_str().unwrap(), "--show-values"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--password-file"), "{}", text(&o));
    let pw = pw_file(d);
    let o = mb(&[
        "inspect",
        d.wim().to_str().unwrap(),
        "--show-values",
        "--password-file",
        &pw,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("OSDComputerName = WTG-DEMO-01"), "{t}");
    assert!(t.contains("_SMSTSSiteCode = PS1"), "{t}");
    assert!(t.contains("OSDBitLockerPIN (secret)"), "{t}");
    assert!(t.contains("_SMSTSMediaPFX (secret)"), "{t}");
    // A wrong password: could not read (exit 2), and the message says what to check.
    let wrong = tempfile::tempdir().unwrap();
    let wrong_pw = wrong.path().join("pw");
    std::fs::write(&wrong_pw, "not-the-media-password\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrong_pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wp = wrong_pw.to_str().unwrap();
    let recipe = d.recipe();
    for args in [
        vec!["inspect", d.wim().to_str().unwrap(), "--password-file", wp],
        vec![
            "verify",
            d.wim().to_str().unwrap(),
            "--recipe",
            recipe.to_str().unwrap(),
            "--password-file",
            wp,
        ],
    ] {
        let o = mb(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains("wrong password or damaged file"), "{t}");
        assert!(!t.contains("not-the-media-password"), "{t}");
    }
    // A literal password on the command line is not even an option.
    let o = mb(&["inspect", d.wim().to_str().unwrap(), "--password", "x"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn no_secret_in_inspect_verify_or_diff_output() {
    let d = built();
    let pw = pw_file(d);
    let wim = d.wim().to_str().unwrap().to_string();
    let image = img(d).to_str().unwrap().to_string();
    let recipe = d.recipe().to_str().unwrap().to_string();
    let runs: Vec<Vec<&str>> = vec![
        vec!["inspect", &wim, "--show-values", "--password-file", &pw],
        vec![
            "inspect",
            &wim,
            "--show-values",
            "--password-file",
            &pw,
            "--json",
        ],
        vec![
            "inspect",
            &image,
            "--show-values",
            "--password-file",
            &pw,
            "--json",
        ],
        vec![
            "verify",
            &wim,
            "--recipe",
            &recipe,
            "--password-file",
            &pw,
            "--json",
        ],
        vec!["verify", &image, "--recipe", &recipe],
        vec!["diff", &wim, &image, "--password-file", &pw, "--json"],
    ];
    // The media certificate's PFX (a secret variable) as the media holds it.
    let vars = {
        let tmp = tempfile::tempdir().unwrap();
        let w = mediabuild::wim::Wim::open(&d.wim()).unwrap();
        w.extract(1, tmp.path(), &["SMS/data/Variables.dat"])
            .unwrap();
        let b = std::fs::read(tmp.path().join("SMS/data/Variables.dat")).unwrap();
        let xml = mediabuild::media::variables::decode(&b, Some(MEDIA_PASSWORD)).unwrap();
        mediabuild::media::variables::parse_xml(&xml)
    };
    let pfx = &vars.iter().find(|(n, _)| n == "_SMSTSMediaPFX").unwrap().1;
    for args in runs {
        let o = mb(&args);
        let t = text(&o);
        assert!(o.status.code().is_some(), "{args:?}");
        for s in [MEDIA_PASSWORD, PASSPHRASE, &pfx[..64]] {
            assert!(!t.contains(s), "{args:?} printed a secret");
        }
    }
}

#[test]
fn verify_passes_on_fresh_builds_with_and_without_the_recipe() {
    let d = built();
    let recipe = d.recipe().to_str().unwrap().to_string();
    for art in [d.wim(), img(d)] {
        let a = art.to_str().unwrap();
        let o = mb(&["verify", a]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let o = mb(&["verify", a, "--recipe", &recipe, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let v = json(&o);
        let checked = v["checked"].to_string();
        assert!(checked.contains("against the manifest"), "{checked}");
        assert!(checked.contains("the recipe's plan"), "{checked}");
    }
    // A recipe that declares another variable value: exit 1, naming it.
    let other = d.variant(
        "verify-other.yaml",
        &[(
            "OSDComputerName: WTG-DEMO-01",
            "OSDComputerName: WTG-DEMO-99",
        )],
    );
    let o = mb(&[
        "verify",
        d.wim().to_str().unwrap(),
        "--recipe",
        other.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("variable OSDComputerName: its value differs"),
        "{t}"
    );
    // A recipe with errors: could not check (exit 2).
    let bad = d.variant("verify-bad.yaml", &[("  code: PS1 ", "  code: P!  ")]);
    let o = mb(&[
        "verify",
        d.wim().to_str().unwrap(),
        "--recipe",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Copies an artefact and its manifest into `dir`.
fn copy_artefact(art: &Path, dir: &Path) -> PathBuf {
    let name = art.file_name().unwrap().to_string_lossy().into_owned();
    let to = dir.join(&name);
    std::fs::copy(art, &to).unwrap();
    std::fs::copy(
        art.with_file_name(format!("{name}.manifest.json")),
        dir.join(format!("{name}.manifest.json")),
    )
    .unwrap();
    to
}

fn flip(p: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x20]).unwrap();
}

fn verify_fails(art: &Path, want: &[&str]) -> String {
    let o = mb(&["verify", art.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1:\n{t}");
    for w in want {
        assert!(t.contains(w), "missing {w:?} in\n{t}");
    }
    t
}

const MEMBER: &str = "SMS/PKG/PS100201/ccmsetup.exe";

#[test]
fn verify_catches_a_flipped_byte_inside_a_member_of_a_wim() {
    let d = built();
    let tmp = tempfile::tempdir().unwrap();
    let wim = copy_artefact(&d.wim(), tmp.path());
    let entry = mediabuild::wim::Wim::open(&wim)
        .unwrap()
        .list(1)
        .unwrap()
        .into_iter()
        .find(|e| e.path == MEMBER)
        .unwrap();
    flip(&wim, entry.offset + entry.stored_size / 2);
    verify_fails(&wim, &[MEMBER, "WIM integrity"]);
}

#[test]
fn verify_catches_a_flipped_byte_inside_a_member_of_a_disk_image() {
    let d = built();
    let tmp = tempfile::tempdir().unwrap();
    let image = copy_artefact(&img(d), tmp.path());
    // Files lie contiguously near the start; each synthetic file opens with its name.
    let mut head = vec![0u8; 64 << 20];
    use std::io::Read;
    let n = std::fs::File::open(&image)
        .unwrap()
        .read(&mut head)
        .unwrap();
    let needle = b"(ccmsetup.exe)\r\n";
    let at = find(&head[..n], needle).expect("member bytes in the image");
    flip(&image, at as u64 + 1000);
    let t = verify_fails(
        &image,
        &[&format!("{MEMBER}: sha256 differs from the manifest")],
    );
    // The allocation is untouched: the FAT walk finds nothing.
    assert!(!t.contains("FAT32:"), "{t}");
}

#[test]
fn verify_reports_a_truncated_wim_or_disk_image_clearly() {
    let d = built();
    let tmp = tempfile::tempdir().unwrap();
    for (art, keep) in [(d.wim(), None), (img(d), Some(4u64 << 20))] {
        let copy = copy_artefact(&art, tmp.path());
        let len = std::fs::metadata(&copy).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        f.set_len(keep.unwrap_or(len / 2)).unwrap();
        drop(f);
        let t = verify_fails(&copy, &["truncated"]);
        assert!(!t.contains("panicked"), "{t}");
        // Without the manifest the structure alone shows it.
        std::fs::remove_file(inspect_manifest(&copy)).unwrap();
        let o = mb(&["verify", copy.to_str().unwrap()]);
        let t = text(&o);
        assert!(matches!(o.status.code(), Some(1) | Some(2)), "{t}");
        assert!(t.contains("truncated"), "{t}");
        assert!(!t.contains("panicked"), "{t}");
    }
}

fn inspect_manifest(art: &Path) -> PathBuf {
    mediabuild::inspect::manifest_beside(art)
}

#[test]
fn diff_lists_exactly_the_changed_package_and_variable() {
    // Before: the shared demo's build (read only). After: the same demo
    // generated and built here with one package file and one variable changed.
    let before = built();
    let (wim_a, img_a) = (before.wim(), img(before));
    // Same media, same recipe: nothing differs (a copy of the manifest
    // against the original).
    let tmp = tempfile::tempdir().unwrap();
    let copy = copy_artefact(&wim_a, tmp.path());
    let o = mb(&[
        "diff",
        inspect_manifest(&copy).to_str().unwrap(),
        inspect_manifest(&wim_a).to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // One package's content and one variable change.
    let d = Demo::new();
    let exe = d
        .dir()
        .join("content/packages/configmgr-client/ccmsetup.exe");
    let mut bytes = std::fs::read(&exe).unwrap();
    bytes[2000] ^= 0xFF;
    std::fs::write(&exe, bytes).unwrap();
    let v = d.variant(
        "next.yaml",
        &[(
            "OSDComputerName: WTG-DEMO-01",
            "OSDComputerName: WTG-DEMO-02",
        )],
    );
    let o = d.run(&["build", v.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(0), "build: {}", text(&o));

    let pairs = [
        (
            inspect_manifest(&wim_a),
            inspect_manifest(&d.wim()),
            "manifests",
        ),
        (wim_a.clone(), d.wim(), "wims"),
        (img_a.clone(), img(&d), "images"),
    ];
    for (a, b, what) in pairs {
        let o = mb(&["diff", a.to_str().unwrap(), b.to_str().unwrap(), "--json"]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        let v = json(&o);
        let groups: Vec<(String, Vec<String>)> = v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let paths = ["added", "removed", "changed"]
                    .iter()
                    .flat_map(|k| g[k].as_array().unwrap().iter())
                    .map(|m| m["path"].as_str().unwrap().to_string())
                    .collect();
                (g["group"].as_str().unwrap().to_string(), paths)
            })
            .collect();
        assert_eq!(
            groups,
            vec![("PS100201".to_string(), vec![MEMBER.to_string()])],
            "{what}"
        );
        assert_eq!(v["groups"][0]["name"], "ConfigMgr client", "{what}");
        let vars: Vec<(&str, &str)> = v["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["name"].as_str().unwrap(), x["change"].as_str().unwrap()))
            .collect();
        assert_eq!(vars, vec![("OSDComputerName", "changed")], "{what}");
        assert_eq!(v["media"], serde_json::json!([]), "{what}");
        assert_eq!(v["images"], serde_json::json!([]), "{what}");
        assert!(v["recipe_digest"].is_object(), "{what}");
        let t = text(&o);
        assert!(!t.contains("WTG-DEMO-0"), "{what}: a value was shown");
        if what == "manifests" {
            snapshot("diff-demo-manifests.json", &redact(v));
        }
    }
    let o = mb(&["diff", wim_a.to_str().unwrap(), d.wim().to_str().unwrap()]);
    let t = text(&o);
    assert!(
        t.contains("PS100201 (ConfigMgr client): 0 added, 0 removed, 1 changed"),
        "{t}"
    );
    assert!(t.contains("OSDComputerName changed"), "{t}");
}

#[test]
fn gpt_image_is_inspected_verified_and_its_truncation_named() {
    // The shared GPT build (2 GiB, the disk image alone).
    let d = shared_gpt();
    let r = d.dir().join("gpt.yaml");
    let shared = d.out().join("demo-gpt.img");
    let o = mb(&["inspect", shared.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    let t = &v["partition_table"];
    assert_eq!(t["scheme"], "gpt");
    assert_eq!(
        t["partitions"][0]["type"],
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    );
    assert_eq!(t["partitions"][0]["name"], "MEDIA");
    assert_eq!(t["partitions"][0]["start"], 1 << 20);
    assert_eq!(v["filesystem"]["type"], "FAT32");
    let o = mb(&[
        "verify",
        shared.to_str().unwrap(),
        "--recipe",
        r.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Cut off the end (of a sparse copy with its manifest): the backup GPT
    // header goes first.
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("demo-gpt.img");
    let cp = sh(&format!(
        "cp --sparse=always '{}' '{}' && cp '{}' '{}'",
        shared.display(),
        image.display(),
        inspect_manifest(&shared).display(),
        inspect_manifest(&image).display()
    ));
    assert!(cp.status.success(), "{}", text(&cp));
    let len = std::fs::metadata(&image).unwrap().len();
    assert_eq!(len, 2 << 30);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    f.set_len(len - (1 << 20)).unwrap();
    drop(f);
    verify_fails(&image, &["backup GPT header", "truncated"]);
}
