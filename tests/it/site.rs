//! Site facts and Variables.dat as real media carry them (issue 19): an
//! independent reader of media variables (tests/readers/media_variables.py,
//! written from the public readers' published algorithm) parses the demo's
//! media with and without a password, self-signed and PKI; the site rules;
//! `site fetch` against a local server shaped like a management point.

use crate::support::*;
use mediabuild::security::cert;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

const X64: &str = "d10d7f98-17dd-4588-b645-34964936023b";
const X86: &str = "3a2f6e4c-81b0-4d5e-9c7a-0e5b8f2d1c64";
const SELF_SIGNED: &str = "self_signed: { valid_from: 2025-11-28, valid_until: 2035-11-27 }";
const PKI: &str =
    "pki: { file: secrets/media-pki.pfx, password: { file: secrets/pki-password.txt } }";
const PASSWORD_LINE: &str =
    "  password: { file: secrets/media-password.txt } # >= 12 characters (see README)\n";

/// The demo inputs shared by the tests that only check variants of it
/// (those here build them into output folders of their own).
fn demo() -> &'static Demo {
    shared_inputs()
}

fn reader() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readers/media_variables.py")
}

/// Whether the independent reader can run (python3 with `cryptography`).
fn reader_available() -> bool {
    if !tool("python3") {
        return false;
    }
    let ok = sh("python3 -c 'import cryptography'").status.success();
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("python3-cryptography is required in CI (see .ci/packages)");
        }
        eprintln!("skipping: python3 cryptography not installed");
    }
    ok
}

/// Builds `recipe` (wim output only) into its own folder; returns the .wim.
fn build_wim(recipe: &Path, out: &str) -> PathBuf {
    let text = std::fs::read_to_string(recipe).unwrap();
    let text = text.replacen("  dir: out\n", &format!("  dir: {out}\n"), 1);
    let start = text.find("  disk: ").unwrap();
    let end = text.find("\n  creator_package:").unwrap();
    let text = format!("{}{}", &text[..start], &text[end + 1..]);
    let start = text.find("  creator_package:").unwrap();
    let text = text[..start].to_string();
    std::fs::write(recipe, text).unwrap();
    let o = run(
        &["build", recipe.to_str().unwrap(), "-q", "--no-cache"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "build failed: {}", text_of(&o));
    recipe.parent().unwrap().join(out).join("demo-wtg.wim")
}

fn text_of(o: &std::process::Output) -> String {
    text(o)
}

/// Variables.dat of a built .wim, extracted by 7-Zip, read by the independent reader.
fn read_media(wim: &Path, password_file: Option<&Path>) -> Value {
    let dat = wim.with_extension("Variables.dat");
    let o = sh(&format!(
        "7z e -so '{}' SMS/data/Variables.dat > '{}'",
        wim.display(),
        dat.display()
    ));
    assert!(o.status.success(), "7z: {}", text(&o));
    let mut cmd = format!("python3 '{}' '{}'", reader().display(), dat.display());
    if let Some(p) = password_file {
        cmd.push_str(&format!(" --password-file '{}'", p.display()));
    }
    let o = sh(&cmd);
    assert!(o.status.success(), "independent reader: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn var<'a>(v: &'a Value, name: &str) -> &'a str {
    v["vars"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} not in the media variables: {v}"))
}

/// The demo's PKI certificate (DER), used as a root CA file in variants.
fn pki_cert_der(d: &Demo) -> Vec<u8> {
    let src = std::fs::read(d.dir().join("secrets/media-pki.pfx")).unwrap();
    cert::import(&src, mediabuild::demo::DEMO_PKI_PASSWORD)
        .unwrap()
        .certs
        .remove(0)
}

#[test]
fn independent_reader_parses_the_demo_media_with_and_without_password() {
    if !tool("7z") || !reader_available() {
        return;
    }
    // A demo of its own: three builds, whose size does not matter.
    let d = &Demo::small();
    let pw = d.dir().join("secrets/media-password.txt");
    // Password + self-signed (the demo), password + PKI, no password + PKI.
    type Edits<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Edits, bool); 3] = [
        ("ss", vec![], true),
        ("pki", vec![(SELF_SIGNED, PKI)], true),
        ("nopw", vec![(SELF_SIGNED, PKI), (PASSWORD_LINE, "")], false),
    ];
    for (name, edits, with_pw) in cases {
        let r = d.variant(&format!("reader-{name}.yaml"), &edits);
        let wim = build_wim(&r, &format!("out-{name}"));
        let v = read_media(&wim, with_pw.then_some(pw.as_path()));
        let h = &v["header"];
        assert_eq!(h["nul_terminated"], true, "{name}: {h}");
        assert_eq!(h["trailer_length"], 16, "{name}: {h}");
        assert_eq!(h["xml_declaration"], true, "{name}: {h}");
        assert_eq!(var(&v, "_SMSTSSiteCode"), "PS1");
        assert_eq!(var(&v, "_SMSTSx64UnknownMachineGUID"), X64);
        assert_eq!(var(&v, "_SMSTSx86UnknownMachineGUID"), X86);
        assert_eq!(var(&v, "_SMSTSHTTPPort"), "80");
        assert_eq!(var(&v, "_SMSTSHTTPSPort"), "443");
        assert_eq!(var(&v, "_SMSTSMediaType"), "OEMMedia");
        assert!(
            v["vars"].get("_SMSTSPackageID").is_none(),
            "{name}: unconfirmed variable written"
        );
        assert_eq!(v["pfx"]["has_key"], true, "{name}: {v}");
        let subject = v["pfx"]["subject"].as_str().unwrap();
        if name == "ss" {
            assert!(
                subject.contains("mediabuild media certificate"),
                "{subject}"
            );
        } else {
            assert!(subject.contains("demo-pki"), "{subject}");
        }
        if !with_pw {
            // Without a password, the media are keyed by the public default.
            let o = sh(&format!(
                "python3 '{}' '{}' --password-file '{}'",
                reader().display(),
                wim.with_extension("Variables.dat").display(),
                pw.display()
            ));
            assert!(!o.status.success(), "a wrong password must not decrypt");
        }
    }
}

#[test]
fn unknown_computer_support_needs_the_site_guids() {
    let d = demo();
    let block = format!("  unknown_computers:                 # the site's x64/x86 Unknown Computer GUIDs (demo values)\n    x64: {X64}\n    x86: {X86}\n");
    let r = d.variant("no-guids.yaml", &[(&block, "")]);
    let o = run(&["check", r.to_str().unwrap()], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("site.unknown_computers"), "{t}");
    assert!(
        t.contains("MPKEYINFORMATIONMEDIA") && t.contains("site fetch"),
        "{t}"
    );
    let r = d.variant("bad-guid.yaml", &[(X64, "not-a-guid")]);
    let t = text(&run(&["check", r.to_str().unwrap()], &[]));
    assert!(
        t.contains("site.unknown_computers.x64") && t.contains("not a GUID"),
        "{t}"
    );
    // The older spelling of the site code still works; both at once do not.
    let r = d.variant(
        "old-site-code.yaml",
        &[
            ("  code: PS1 ", "  # "),
            ("  task_sequence:", "  site_code: PS1\n  task_sequence:"),
        ],
    );
    let o = run(&["check", r.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = d.variant(
        "two-site-codes.yaml",
        &[("  task_sequence:", "  site_code: PS1\n  task_sequence:")],
    );
    let t = text(&run(&["check", r.to_str().unwrap()], &[]));
    assert!(
        t.contains("media.site_code") && t.contains("given twice"),
        "{t}"
    );
}

#[test]
fn an_https_management_point_needs_the_root_ca_which_the_media_carry() {
    // A demo of its own: it is built, and its size does not matter.
    let d = &Demo::small();
    let https = [
        (
            "http://mp1.corp.example, http://mp2.corp.example",
            "https://mp1.corp.example",
        ),
        (SELF_SIGNED, PKI),
    ];
    let r = d.variant("https-no-ca.yaml", &https);
    let o = run(&["check", r.to_str().unwrap()], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("site.root_ca_certificates") && t.contains("80072f8f"),
        "{t}"
    );

    let der = pki_cert_der(d);
    std::fs::write(d.dir().join("secrets/root-ca.cer"), &der).unwrap();
    let mut edits = https.to_vec();
    edits.push((
        "  code: PS1 ",
        "  root_ca_certificates: [secrets/root-ca.cer]\n  code: PS1 ",
    ));
    let r = d.variant("https-ca.yaml", &edits);
    let o = run(&["check", r.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The lockfile records the certificate file's digest.
    let o = run(&["lock", r.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lock = std::fs::read_to_string(r.with_extension("yaml.lock")).unwrap();
    assert!(lock.contains("site.root_ca_certificates[0]"), "{lock}");
    // A file that is not a certificate is refused, naming the key.
    std::fs::write(d.dir().join("secrets/not-a-cert.cer"), b"hello").unwrap();
    edits.push(("root-ca.cer", "not-a-cert.cer"));
    let bad = d.variant("https-bad-ca.yaml", &edits);
    let t = text(&run(&["check", bad.to_str().unwrap()], &[]));
    assert!(t.contains("site.root_ca_certificates[0]"), "{t}");

    if !tool("7z") || !reader_available() {
        return;
    }
    let wim = build_wim(&r, "out-https");
    let v = read_media(&wim, Some(&d.dir().join("secrets/media-password.txt")));
    let hex: String = der.iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(var(&v, "_SMSTSRootCACerts"), hex);
    assert_eq!(var(&v, "SMSTSLocationMPs"), "https://mp1.corp.example");
    let subjects = v["certificates"]["_SMSTSRootCACerts"].as_array().unwrap();
    assert!(subjects[0].as_str().unwrap().contains("demo-pki"), "{v}");
    // inspect --show-values shows the certificate by subject and thumbprint.
    let o = run(
        &[
            "inspect",
            wim.to_str().unwrap(),
            "--show-values",
            "--password-file",
            d.dir().join("secrets/media-password.txt").to_str().unwrap(),
        ],
        &[],
    );
    let t = text(&o);
    assert!(t.contains("thumbprint") && t.contains("demo-pki"), "{t}");
}

/// A one-thread HTTP server answering each request by its query with
/// `(status, content type, body)`; `None` closes the connection at once.
fn serve(replies: Vec<(&'static str, u16, &'static str, Vec<u8>)>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let line = req.lines().next().unwrap_or("").to_string();
            let hit = replies.iter().find(|(q, ..)| line.contains(q));
            let (status, ctype, body) = match hit {
                Some((_, s, c, b)) => (*s, *c, b.clone()),
                None => (404, "text/html", b"<html>not found</html>".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

/// A reply shaped like a management point's MPKEYINFORMATIONMEDIA: the
/// element names of Microsoft's messaging SDK (MPKeyInformation: SITECODE,
/// FQDN, UnknownMachines with x64/x86UnknownMachineGUID attributes and the MP
/// name as text), which PXEThief and SharpSCCM read (docs/configmgr.md).
fn key_information(x64: &str, x86: &str) -> Vec<u8> {
    format!(
        "<MPKEYINFORMATION><SITECODE>PS1</SITECODE><FQDN>mp1.corp.example</FQDN><MACHINENAME>MP1</MACHINENAME><UnknownMachines x64UnknownMachineGUID=\"{x64}\" x86UnknownMachineGUID=\"{x86}\">MP1</UnknownMachines></MPKEYINFORMATION>"
    )
    .into_bytes()
}

#[test]
fn site_fetch_writes_a_fragment_that_checks_clean_and_fails_cleanly() {
    let d = demo();
    let der = pki_cert_der(d);
    let hex: String = der.iter().map(|b| format!("{b:02X}")).collect();
    let (gx64, gx86) = (
        "6f1c2a9e-0b3d-4e8f-a1c2-3d4e5f607182",
        "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    );
    let mp = serve(vec![
        ("MPKEYINFORMATIONMEDIA", 200, "text/xml", key_information(gx64, gx86)),
        (
            "SITESIGNCERT",
            200,
            "text/xml",
            format!("<SiteSignCert><X509Certificate Signature=\"00\">{hex}</X509Certificate></SiteSignCert>").into_bytes(),
        ),
    ]);
    let out = d.dir().join("fetched/site.yaml");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let o = run(
        &["site", "fetch", "--mp", &mp, "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let frag = std::fs::read_to_string(&out).unwrap();
    assert!(
        frag.contains(gx64) && frag.contains(gx86) && frag.contains("code: PS1"),
        "{frag}"
    );
    let signing = std::fs::read(out.with_file_name("site-signing.cer"));
    assert_eq!(signing.ok().as_ref(), Some(&der), "{frag}");
    // The fragment replaces the demo's site section; the recipe checks clean.
    let recipe = std::fs::read_to_string(d.recipe()).unwrap();
    let (a, rest) = recipe.split_at(recipe.find("\nsite:").unwrap() + 1);
    let b = &rest[rest.find("\nsecurity:").unwrap() + 1..];
    let frag_in_recipe = frag.replace(
        "signing_certificate: site-signing.cer",
        "signing_certificate: fetched/site-signing.cer",
    );
    let r = d.dir().join("fetched.yaml");
    std::fs::write(&r, format!("{a}{frag_in_recipe}\n{b}")).unwrap();
    let o = run(&["check", r.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{frag_in_recipe}", text(&o));
    let o = run(&["plan", r.to_str().unwrap(), "--json"], &[]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let vars = plan["media"]["variables"].as_array().unwrap();
    let val = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .and_then(|v| v["value"].as_str())
            .map(str::to_string)
    };
    assert_eq!(val("_SMSTSx64UnknownMachineGUID").as_deref(), Some(gx64));
    assert_eq!(val("_SMSTSSiteSigningCertificate"), Some(hex.clone()));

    // A dead port, a plain web page, truncated XML: exit 2, a clear message, nothing written.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let page = serve(vec![(
        "MPKEYINFORMATIONMEDIA",
        200,
        "text/html",
        b"<!DOCTYPE html><html><head><title>IIS Windows Server</title></head><body></body></html>"
            .to_vec(),
    )]);
    let mut cut = key_information(gx64, gx86);
    cut.truncate(cut.len() - 40);
    let truncated = serve(vec![("MPKEYINFORMATIONMEDIA", 200, "text/xml", cut)]);
    let not_mp = serve(vec![]);
    std::fs::create_dir_all(d.dir().join("failed")).unwrap();
    for (url, want) in [
        (&dead, "cannot reach"),
        (&page, "web page"),
        (&truncated, "malformed XML"),
        (&not_mp, "HTTP 404"),
    ] {
        let out = d.dir().join("failed/site.yaml");
        let o = run(
            &[
                "site",
                "fetch",
                "--mp",
                url,
                "--out",
                out.to_str().unwrap(),
                "--timeout",
                "5",
            ],
            &[],
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{url}: {t}");
        assert!(t.contains(want), "{url}: want {want:?} in {t}");
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "{url}: something was written: {left:?}");
    }
    let o = run(&["site", "fetch", "--mp", "mp1.corp.example"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("http://FQDN"), "{}", text(&o));
}
