//! `mediabuild check`: one negative test per validation rule, each asserting
//! the rendered message (key path, position, value, fix).

use crate::support::*;

/// The demo inputs shared by the tests that only check variants of it.
fn demo() -> &'static Demo {
    shared_inputs()
}

/// Runs `check` on a variant; asserts exit 2 and that every `want` appears.
fn fails(name: &str, edits: &[(&str, &str)], want: &[&str]) -> String {
    let d = demo();
    let p = d.variant(&format!("{name}.yaml"), edits);
    let o = run(&["check", p.to_str().unwrap()], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{name}: expected exit 2\n{t}");
    for w in want {
        assert!(t.contains(w), "{name}: missing {w:?} in\n{t}");
    }
    t
}

#[test]
fn demo_recipe_passes() {
    let o = demo().run(&["check", demo().recipe().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 error(s)"));
}

#[test]
fn example_recipes_pass_against_demo_inputs() {
    // The repository's recipes point at ./demo; check them against a demo there.
    let root = env!("CARGO_MANIFEST_DIR");
    let demo_dir = std::path::Path::new(root).join("demo");
    if !demo_dir.join("images/install.wim").exists()
        || !demo_dir.join("tools/WTGCreator.exe").exists()
    {
        mediabuild::demo::generate(&demo_dir, &Default::default()).unwrap();
    }
    // The fleet example: two sites extending one base (`extends:`).
    for r in [
        "minimal.yaml",
        "windows-to-go.yaml",
        "site-berlin.yaml",
        "site-lyon.yaml",
    ] {
        let p = format!("{root}/recipes/{r}");
        let o = run(
            &["check", &p],
            &[
                ("MEDIA_PASSWORD", "ci-Media-Passw0rd!"),
                ("WTG_PASSPHRASE", "ci-WTG-passphrase"),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{r}: {}", text(&o));
    }
}

#[test]
fn yaml_syntax_error() {
    fails(
        "syntax",
        &[("media:\n", "media:\n  name: [unclosed\n")],
        &["YAML syntax error", "syntax.yaml:"],
    );
}

#[test]
fn type_error() {
    fails(
        "type",
        &[("index: 1, arch: x64", "index: one, arch: x64")],
        &[
            "error: boot_image.index: invalid type: string \"one\", expected a whole number from 0 to 4294967295",
            "type.yaml:",
        ],
    );
}

#[test]
fn unknown_key_with_suggestion() {
    fails(
        "unknown",
        &[("  unattended: true", "  unatended: true")],
        &[
            "error: media.unatended: unknown key",
            "did you mean `unattended`?",
        ],
    );
}

#[test]
fn format_version() {
    fails(
        "version",
        &[("mediabuild: 1", "mediabuild: 2")],
        &[
            "error: mediabuild: unsupported recipe format version",
            "= value: 2",
        ],
    );
}

#[test]
fn missing_boot_wim() {
    fails(
        "nobootwim",
        &[("source: images/boot.wim", "source: images/nope.wim")],
        &[
            "error: boot_image.source: cannot read the WIM file",
            "= value: images/nope.wim",
        ],
    );
}

#[test]
fn unreadable_content_source() {
    fails(
        "nocontent",
        &[("source: content/apps/office", "source: content/apps/visio")],
        &[
            "error: applications[0].source: cannot read source",
            "content/apps/visio",
        ],
    );
}

#[test]
fn boot_arch_vs_firmware() {
    fails(
        "firmware",
        &[("target_firmware: uefi64", "target_firmware: uefi32")],
        &[
            "error: boot_image.arch: Uefi32 firmware boots only x86 boot images",
            "= value: x64",
        ],
    );
}

#[test]
fn boot_arch_vs_image() {
    fails(
        "arch",
        &[
            ("target_firmware: uefi64", "target_firmware: bios"),
            ("arch: x64", "arch: x86"),
        ],
        &[
            "error: boot_image.arch: the boot image is x64",
            "write `arch: x64`",
        ],
    );
}

#[test]
fn os_index_lists_images() {
    fails(
        "osindex",
        &[("image: \"Windows 8.1 Enterprise\"", "index: 7")],
        &["error: os_image.index: images/install.wim has no image 7", "1 \"Windows 8.1 Pro\" (x64), 2 \"Windows 8.1 Enterprise\" (x64), 3 \"Windows 8.1 Pro N\" (x64)"],
    );
}

#[test]
fn os_image_name_lists_images() {
    fails(
        "osname",
        &[("Windows 8.1 Enterprise", "Windows 8.1 Ultimate")],
        &[
            "error: os_image.image: images/install.wim has no image named \"Windows 8.1 Ultimate\"",
            "choose one of: 1 \"Windows 8.1 Pro\"",
        ],
    );
}

#[test]
fn unattended_needs_deployment_id() {
    fails(
        "unattended",
        &[(
            "  deployment_id: PS120077            # -> SMSTSPreferredAdvertID\n",
            "",
        )],
        &[
            "error: media.unattended: unattended media need the deployment",
            "add `media.deployment_id",
        ],
    );
}

#[test]
fn dynamic_needs_points() {
    fails(
        "dynamic",
        &[(
            "points: [http://mp1.corp.example, http://mp2.corp.example]",
            "points: []",
        )],
        &["error: media.management.points: dynamic media need at least one management point"],
    );
}

#[test]
fn site_based_needs_one_point() {
    fails(
        "sitebased",
        &[("mode: dynamic", "mode: site_based")],
        &[
            "error: media.management.points: site-based media use exactly one management point",
            "2 given",
        ],
    );
}

#[test]
fn management_point_url() {
    fails(
        "mpurl",
        &[("http://mp2.corp.example", "mp2.corp.example")],
        &[
            "error: media.management.points[1]: not a management point URL",
            "\"mp2.corp.example\"",
        ],
    );
}

#[test]
fn length_limits() {
    let long = "x".repeat(51);
    fails(
        "lengths",
        &[
            (
                "created_by: Workplace Engineering",
                &format!("created_by: {long}"),
            ),
            (
                "version: \"2026.11\"",
                &format!("version: \"{}\"", "9".repeat(33)),
            ),
            (
                "comment: Windows To Go demo media (synthetic inputs)",
                &format!("comment: {}", "c".repeat(128)),
            ),
        ],
        &[
            "error: media.created_by: 51 characters, at most 50 allowed",
            "error: media.version: 33 characters, at most 32 allowed",
            "error: media.comment: 128 characters, at most 127 allowed",
        ],
    );
}

#[test]
fn certificate_dates() {
    let line = "valid_from: 2025-11-28, valid_until: 2035-11-27";
    fails(
        "certdates",
        &[(line, "valid_from: 2026-11-01, valid_until: 2026-10-01")],
        &["error: security.certificate.self_signed.valid_until: the certificate ends on or before it starts (2026-11-01)"],
    );
    fails(
        "certexpired",
        &[(line, "valid_from: 2001-01-01, valid_until: 2002-01-01")],
        &["error: security.certificate.self_signed.valid_until: the certificate has already expired (on 2002-01-01)"],
    );
    fails(
        "certbaddate",
        &[(line, "valid_from: 1st of May, valid_until: 2030-01-01")],
        &[
            "error: security.certificate.self_signed.valid_from: not a date",
            "write YYYY-MM-DD",
        ],
    );
}

#[test]
fn malformed_package_id() {
    fails(
        "badid",
        &[("id: PS100301", "id: PS10030Z")],
        &[
            "error: driver_packages[0].id: not a ConfigMgr ID (site code + 5 hex digits)",
            "= value: \"PS10030Z\"",
        ],
    );
}

#[test]
fn duplicate_package_id() {
    fails(
        "dupid",
        &[("id: PS100301", "id: PS100101")],
        &["error: driver_packages[0].id: package ID already used by applications[0].id"],
    );
}

#[test]
fn variable_names() {
    fails(
        "varname",
        &[("  OSDComputerName: WTG-DEMO-01", "  OSD-Computer Name: x\n  _SMSTSReadOnly: y\n  SMSTSPreferredAdvertID: PS120078")],
        &[
            "error: variables.OSD-Computer Name: invalid variable name",
            "error: variables._SMSTSReadOnly: invalid variable name",
            "read-only task-sequence variables",
            "error: variables.SMSTSPreferredAdvertID: mediabuild sets this variable from `media.deployment_id`",
        ],
    );
}

#[test]
fn literal_secret_variable_is_refused_without_echo() {
    let t = fails(
        "litsecret",
        &[("  OSDComputerName: WTG-DEMO-01", "  OSDJoinPassword: Hunter2Hunter2")],
        &["error: variables.OSDJoinPassword: this variable holds a secret; a literal value is not allowed"],
    );
    assert!(!t.contains("Hunter2"), "{t}");
}

#[test]
fn literal_password_is_refused_without_echo() {
    let t = fails(
        "litpw",
        &[(
            "password: { file: secrets/media-password.txt }",
            "password: Sup3rSecretPassw0rd",
        )],
        &["error: security.password: a secret must not be written in the recipe"],
    );
    assert!(!t.contains("Sup3rSecret"), "{t}");
}

#[test]
fn uda_users_format() {
    fails(
        "uda",
        &[("SMSTSUDAUsers: CONTOSO\\jdoe", "SMSTSUDAUsers: jdoe")],
        &["error: variables.SMSTSUDAUsers: expected DOMAIN\\user"],
    );
}

#[test]
fn output_escapes_folder() {
    fails(
        "escape",
        &[("wim: demo-wtg.wim", "wim: ../../etc/demo.wim")],
        &[
            "error: outputs.wim: output path leaves the output folder",
            "= value: ../../etc/demo.wim",
        ],
    );
}

#[test]
fn outputs_collide() {
    fails(
        "collide",
        &[("path: demo-wtg.img", "path: DEMO-WTG.wim")],
        &["error: outputs.disk.path: output collides with outputs.wim"],
    );
}

#[test]
fn bitlocker_package_must_hold_the_tool() {
    fails(
        "bitlocker",
        &[("  package: PS100202", "  package: PS100201")],
        &["error: bitlocker.package: the package does not hold i386/osdbitlocker_wtg.exe"],
    );
}

#[test]
fn missing_secret_file_is_an_error_at_build_time() {
    let d = demo();
    let p = d.variant(
        "nosecret.yaml",
        &[("secrets/media-password.txt", "secrets/absent.txt")],
    );
    let o = run(&["check", p.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "check only warns: {}", text(&o));
    assert!(text(&o).contains("warning: security.password: secret not available"));
    let o = run(&["build", p.to_str().unwrap(), "-q"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("error: security.password: secret not available"),
        "{}",
        text(&o)
    );
}

#[test]
fn five_mistakes_five_diagnostics_and_no_output() {
    let d = Demo::small();
    let p = d.variant(
        "five.yaml",
        &[
            ("index: 1, arch: x64", "index: 4, arch: x64"),
            ("  unattended: true", "  unattended: true\n  colour: blue"),
            ("id: PS100301", "id: PS10030Z"),
            (
                "created_by: Workplace Engineering",
                "created_by: Workplace Engineering of the Very Long Department Name",
            ),
            ("wim: demo-wtg.wim", "wim: ../../escape.wim"),
        ],
    );
    let o = run(&["check", p.to_str().unwrap()], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert_eq!(
        t.matches("\nerror: ").count() + usize::from(t.starts_with("error: ")),
        5,
        "{t}"
    );
    for key in [
        "boot_image.index",
        "media.colour",
        "driver_packages[0].id",
        "media.created_by",
        "outputs.wim",
    ] {
        assert!(t.contains(&format!("error: {key}:")), "{key} in {t}");
    }
    assert_eq!(t.matches("= value:").count(), 5, "each with its value: {t}");
    assert!(t.contains("five.yaml:36:61"), "with line:column: {t}");
    // A build of the same recipe writes nothing at all.
    let o = run(&["build", p.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!d.out().exists(), "no output folder may be created");
}
