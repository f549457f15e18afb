//! Media security and the Windows To Go pieces (issue 8): the media
//! certificate inside Variables.dat read back by `openssl pkcs12`, PKI
//! import, the password policy, the creator package, and no secret anywhere.

use crate::support::*;
use mediabuild::media::variables;
use mediabuild::security::{self, cert, pfx};
use std::path::{Path, PathBuf};

const MEDIA_PASSWORD: &str = "demo-Media-Passw0rd-2026";
const PASSPHRASE: &str = "demo-WTG-Passphrase-2026";
const SELF_SIGNED: &str = "self_signed: { valid_from: 2025-11-28, valid_until: 2035-11-27 }";
const PKI: &str =
    "pki: { file: secrets/media-pki.pfx, password: { file: secrets/pki-password.txt } }";

/// The demo inputs shared by the tests that only check variants of it.
fn demo() -> &'static Demo {
    shared_inputs()
}

fn check(p: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["check", p.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args, &[]);
    (o.status.code(), text(&o))
}

/// `check` on a variant fails (exit 2) with every `want` in its output.
fn fails(name: &str, edits: &[(&str, &str)], want: &[&str]) -> String {
    let p = demo().variant(&format!("{name}.yaml"), edits);
    let (code, t) = check(&p, &[]);
    assert_eq!(code, Some(2), "{name}: expected exit 2\n{t}");
    for w in want {
        assert!(t.contains(w), "{name}: missing {w:?} in\n{t}");
    }
    t
}

fn build(recipe: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", recipe.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args, &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "build failed: {t}");
    t
}

/// A private secret file in the demo folder.
fn secret_file(d: &Demo, name: &str, value: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = d.dir().join("secrets").join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!("secrets/{name}")
}

/// The media variables of a built .wim, decrypted with `password`.
fn media_vars(wim: &Path, password: &str) -> Vec<(String, String)> {
    let x = tempfile::tempdir().unwrap();
    mediabuild::wim::Wim::open(wim)
        .unwrap()
        .extract(1, x.path(), &["SMS/data/Variables.dat"])
        .unwrap();
    let dat = std::fs::read(x.path().join("SMS/data/Variables.dat")).unwrap();
    variables::parse_xml(&variables::decode(&dat, Some(password)).unwrap())
}

fn var<'a>(vars: &'a [(String, String)], name: &str) -> &'a str {
    vars.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} not in the media variables"))
}

/// `_SMSTSMediaPFX` as bytes, and its password (31 characters of `_SMSMediaGuid`).
fn media_pfx(vars: &[(String, String)]) -> (Vec<u8>, String) {
    let hex = var(vars, "_SMSTSMediaPFX");
    assert!(hex
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let guid = var(vars, "_SMSMediaGuid");
    assert_eq!(guid.len(), 36);
    (bytes, guid[..31].to_string())
}

fn openssl(args: &str) -> String {
    let o = sh(&format!("openssl {args}"));
    assert!(o.status.success(), "openssl {args}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn openssl_reads_the_media_certificate_with_the_recipe_dates() {
    // The shared built demo (read only: the files made here go to a temp folder).
    let d = shared_demo();
    let tmp = tempfile::tempdir().unwrap();
    let vars = media_vars(&d.wim(), MEDIA_PASSWORD);
    let (pfx_bytes, pfx_password) = media_pfx(&vars);
    assert_eq!(pfx_password.len(), 31);

    // Our own reader agrees (key and certificate, dates as in the recipe).
    let chain = cert::import(&pfx_bytes, &pfx_password).unwrap();
    assert_eq!(cert::ymd(chain.not_before_days), "2025-11-28");
    assert_eq!(cert::ymd(chain.not_after_days), "2035-11-27");
    assert!(cert::import(&pfx_bytes, var(&vars, "_SMSMediaGuid")).is_err());

    if !tool("openssl") {
        return;
    }
    let f = tmp.path().join("media.pfx");
    std::fs::write(&f, &pfx_bytes).unwrap();
    let pass = format!("-passin pass:{pfx_password}");
    let c = tmp.path().join("media.crt");
    openssl(&format!(
        "pkcs12 -in {} {pass} -nokeys -clcerts -out {}",
        f.display(),
        c.display()
    ));
    let dates = openssl(&format!(
        "x509 -in {} -noout -startdate -enddate -subject -ext extendedKeyUsage",
        c.display()
    ));
    assert!(
        dates.contains("notBefore=Nov 28 00:00:00 2025 GMT"),
        "{dates}"
    );
    assert!(
        dates.contains("notAfter=Nov 27 23:59:59 2035 GMT"),
        "{dates}"
    );
    assert!(dates.contains("mediabuild media certificate"), "{dates}");
    assert!(dates.contains("TLS Web Client Authentication"), "{dates}");
    // The private key is there, valid, and belongs to the certificate.
    let k = tmp.path().join("media.key");
    openssl(&format!(
        "pkcs12 -in {} {pass} -nocerts -nodes -out {}",
        f.display(),
        k.display()
    ));
    assert!(openssl(&format!("rsa -in {} -check -noout", k.display())).contains("RSA key ok"));
    assert_eq!(
        openssl(&format!("rsa -in {} -noout -modulus", k.display())),
        openssl(&format!("x509 -in {} -noout -modulus", c.display()))
    );
    // The whole GUID is not the password: 31 characters are.
    let guid = var(&vars, "_SMSMediaGuid");
    let o = sh(&format!(
        "openssl pkcs12 -in {} -passin pass:{guid} -noout",
        f.display()
    ));
    assert!(!o.status.success(), "the full GUID must not open the PFX");
}

#[test]
fn the_key_is_deterministic_and_depends_on_the_media_password() {
    // Two builds of the demo, one the shared build (made by another test or
    // for this one), one here: the same key.
    let first = media_pfx(&media_vars(&shared_demo().wim(), MEDIA_PASSWORD)).0;
    let d = Demo::new();
    build(&d.recipe(), &["-q"]);
    assert_eq!(first, media_pfx(&media_vars(&d.wim(), MEDIA_PASSWORD)).0);
    // Same recipe text, another password: another key, from the secret seed.
    let other = "another-Media-Passw0rd-2026";
    secret_file(&d, "media-password.txt", other);
    build(&d.recipe(), &["-q"]);
    let (b, pw) = media_pfx(&media_vars(&d.wim(), other));
    // Same recipe, same GUID: both PFX open with the same password, yet hold other keys.
    let (ka, kb) = (
        cert::import(&first, &pw).unwrap(),
        cert::import(&b, &pw).unwrap(),
    );
    assert_ne!(ka.key, kb.key);
    assert_ne!(ka.certs, kb.certs);
}

#[test]
fn pki_certificate_is_imported_into_the_media() {
    let d = Demo::small();
    let r = d.variant("pki.yaml", &[(SELF_SIGNED, PKI)]);
    build(&r, &["-q"]);
    let vars = media_vars(&d.wim(), MEDIA_PASSWORD);
    let (bytes, pw) = media_pfx(&vars);
    let inner = cert::import(&bytes, &pw).unwrap();
    let src = std::fs::read(d.dir().join("secrets/media-pki.pfx")).unwrap();
    let outer = cert::import(&src, mediabuild::demo::DEMO_PKI_PASSWORD).unwrap();
    assert_eq!(
        inner.certs, outer.certs,
        "the imported certificate, unchanged"
    );
    assert_eq!(inner.key, outer.key);
    if tool("openssl") {
        let f = d.dir().join("pki-media.pfx");
        std::fs::write(&f, &bytes).unwrap();
        let s = openssl(&format!(
            "pkcs12 -in {} -passin pass:{pw} -nokeys -clcerts",
            f.display()
        ));
        assert!(s.contains("demo-pki"), "{s}");
    }
}

/// An openssl-made .pfx (its default AES/PBES2 + SHA-256 MAC, and the legacy
/// 3DES + SHA-1 profile) passes `check` and builds.
#[test]
fn openssl_made_pfx_files_are_accepted() {
    if !tool("openssl") {
        return;
    }
    let d = Demo::small();
    let dir = d.dir().join("secrets");
    let pw = secret_file(&d, "ossl-password.txt", "ossl-Pfx-Passw0rd-2026");
    openssl(&format!(
        "req -x509 -newkey rsa:2048 -nodes -days 400 -subj /CN=pki-media.corp.example -keyout {0}/k.pem -out {0}/c.pem",
        dir.display()
    ));
    for (name, opts) in [
        ("modern.pfx", ""),
        (
            "legacy.pfx",
            "-certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1",
        ),
    ] {
        openssl(&format!(
            "pkcs12 -export {opts} -inkey {0}/k.pem -in {0}/c.pem -out {0}/{name} -passout pass:ossl-Pfx-Passw0rd-2026",
            dir.display()
        ));
        let r = d.variant(
            &format!("{name}.yaml"),
            &[(
                SELF_SIGNED,
                &format!("pki: {{ file: secrets/{name}, password: {{ file: {pw} }} }}"),
            )],
        );
        let (code, t) = check(&r, &[]);
        assert_eq!(code, Some(0), "{name}: {t}");
    }
    let r = d.variant(
        "modern-build.yaml",
        &[(
            SELF_SIGNED,
            &format!("pki: {{ file: secrets/modern.pfx, password: {{ file: {pw} }} }}"),
        )],
    );
    build(&r, &["-q"]);
    let (bytes, p) = media_pfx(&media_vars(&d.wim(), MEDIA_PASSWORD));
    assert!(cert::import(&bytes, &p)
        .unwrap()
        .subject
        .contains("pki-media.corp.example"));
    // Certificate only, no key.
    openssl(&format!(
        "pkcs12 -export -nokeys -in {0}/c.pem -out {0}/nokey.pfx -passout pass:ossl-Pfx-Passw0rd-2026",
        dir.display()
    ));
    let r = d.variant(
        "nokey.yaml",
        &[(
            SELF_SIGNED,
            &format!("pki: {{ file: secrets/nokey.pfx, password: {{ file: {pw} }} }}"),
        )],
    );
    let (code, t) = check(&r, &[]);
    assert_eq!(code, Some(2), "{t}");
    assert!(
        t.contains("error: security.certificate.pki.file: the .pfx holds no private key; export the certificate with its private key"),
        "{t}"
    );
}

/// Writes a .pfx made by our own generator, valid `from..=until` (days).
fn pfx_file(d: &Demo, name: &str, from: i64, until: i64, password: &str) -> String {
    let chain = cert::self_signed("pki-test", "PS1", from, until, &[7; 32]).unwrap();
    let salts = pfx::Salts {
        certs: [1; 8],
        key: [2; 8],
        mac: [3; 8],
    };
    let bytes = pfx::write(&chain.certs, &chain.key, password, &salts).unwrap();
    std::fs::write(d.dir().join("secrets").join(name), bytes).unwrap();
    format!("secrets/{name}")
}

#[test]
fn pki_rules() {
    let d = demo();
    let today = mediabuild::units::today();
    let pki = |file: &str| {
        format!("pki: {{ file: {file}, password: {{ file: secrets/pki-password.txt }} }}")
    };
    let p = mediabuild::demo::DEMO_PKI_PASSWORD;

    let f = pfx_file(d, "expired.pfx", today - 400, today - 2, p);
    fails(
        "pki-expired",
        &[(SELF_SIGNED, &pki(&f))],
        &[
            "error: security.certificate.pki.file: the certificate has already expired (on ",
            "CN=mediabuild media certificate,OU=pki-test",
            "renew the certificate",
        ],
    );
    let f = pfx_file(d, "future.pfx", today + 3, today + 400, p);
    fails(
        "pki-future",
        &[(SELF_SIGNED, &pki(&f))],
        &["error: security.certificate.pki.file: the certificate is not valid yet (from "],
    );
    let f = pfx_file(d, "soon.pfx", today - 10, today + 10, p);
    let r = d.variant("pki-soon.yaml", &[(SELF_SIGNED, &pki(&f))]);
    let (code, t) = check(&r, &[]);
    assert_eq!(code, Some(0), "a warning only: {t}");
    assert!(
        t.contains(
            "warning: security.certificate.pki.file: the certificate expires within 30 days"
        ),
        "{t}"
    );
    let f = pfx_file(
        d,
        "otherpw.pfx",
        today - 10,
        today + 400,
        "not-the-password",
    );
    let t = fails(
        "pki-wrongpw",
        &[(SELF_SIGNED, &pki(&f))],
        &[
            "error: security.certificate.pki.password: wrong password (the file's integrity check fails with it)",
            "give the password the .pfx was exported with",
        ],
    );
    assert!(!t.contains(p), "{t}");
    std::fs::write(d.dir().join("secrets/garbage.pfx"), b"not a pfx at all").unwrap();
    fails(
        "pki-garbage",
        &[(SELF_SIGNED, &pki("secrets/garbage.pfx"))],
        &["error: security.certificate.pki.file: not a PKCS#12 (.pfx) file"],
    );
    fails(
        "pki-missing",
        &[(SELF_SIGNED, &pki("secrets/none.pfx"))],
        &["error: security.certificate.pki.file: cannot read file"],
    );
    fails(
        "cert-both",
        &[(
            SELF_SIGNED,
            &format!("{SELF_SIGNED}\n    {}", pki("secrets/media-pki.pfx")),
        )],
        &["error: security.certificate: give exactly one of `self_signed` or `pki`"],
    );
}

#[test]
fn self_signed_rules() {
    let today = mediabuild::units::today();
    let soon = format!(
        "self_signed: {{ valid_from: 2025-11-28, valid_until: {} }}",
        cert::ymd(today + 10)
    );
    let r = demo().variant("ss-soon.yaml", &[(SELF_SIGNED, &soon)]);
    let (code, t) = check(&r, &[]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("warning: security.certificate.self_signed.valid_until: the certificate expires within 30 days"),
        "{t}"
    );
    let future = format!(
        "self_signed: {{ valid_from: {}, valid_until: 2035-11-27 }}",
        cert::ymd(today + 5)
    );
    fails(
        "ss-future",
        &[(SELF_SIGNED, &future)],
        &[
            "error: security.certificate.self_signed.valid_from: the certificate is not valid yet",
            "choose a start date no later than today",
        ],
    );
    fails(
        "ss-nopassword",
        &[("  password: { file: secrets/media-password.txt }", "")],
        &["error: security.certificate.self_signed: a self-signed media certificate needs `security.password`"],
    );
}

#[test]
fn password_policy_refuses_weak_passwords_unless_allowed_loudly() {
    let d = Demo::small();
    let weak = "Sh0rt-pw!";
    let f = secret_file(&d, "weak.txt", weak);
    let r = d.variant("weak.yaml", &[("secrets/media-password.txt", &f)]);
    let (code, t) = check(&r, &[]);
    assert_eq!(code, Some(2), "{t}");
    assert!(
        t.contains("error: security.password: the media password is shorter than 12 characters"),
        "{t}"
    );
    assert!(t.contains("--allow-weak-password"), "{t}");
    assert!(!t.contains(weak), "{t}");
    let o = run(&["build", r.to_str().unwrap(), "-q"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!d.wim().exists(), "nothing built");
    let t = build(&r, &["-q", "--allow-weak-password"]);
    assert!(
        t.contains("WEAK MEDIA PASSWORD accepted because of --allow-weak-password"),
        "{t}"
    );
    assert!(t.contains("warning: security.password:"), "{t}");
    assert!(!t.contains(weak), "{t}");
    // Few different characters is weak too.
    let f = secret_file(&d, "repeat.txt", "abababababababab");
    let r = d.variant("repeat.yaml", &[("secrets/media-password.txt", &f)]);
    let (code, t) = check(&r, &[]);
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("uses fewer than 6 different characters"), "{t}");
}

#[test]
fn creator_package_rules() {
    fails(
        "creator-missing",
        &[("creator: tools/WTGCreator.exe", "creator: tools/Nope.exe")],
        &[
            "error: outputs.creator_package.creator: cannot read file",
            "= value: tools/Nope.exe",
        ],
    );
    std::fs::write(demo().dir().join("tools/notes.txt"), "not a program").unwrap();
    fails(
        "creator-notexe",
        &[("creator: tools/WTGCreator.exe", "creator: tools/notes.txt")],
        &["error: outputs.creator_package.creator: not a Windows program (no MZ header)"],
    );
    fails(
        "creator-dir",
        &[("creator: tools/WTGCreator.exe", "creator: tools")],
        &["error: outputs.creator_package.creator: a folder, not the creator tool"],
    );
    for bad in ["10", "721"] {
        fails(
            &format!("creator-time-{bad}"),
            &[("max_run_time_minutes: 120", &format!("max_run_time_minutes: {bad}"))],
            &[
                "error: outputs.creator_package.max_run_time_minutes: a program's maximum run time is 15 to 720 minutes",
                "\"Unknown\" means 720",
            ],
        );
    }
    fails(
        "creator-collides",
        &[("path: demo-wtg-creator", "path: demo-wtg.wim")],
        &["error: outputs.creator_package.path: output collides with outputs.wim"],
    );
}

fn package(d: &Demo) -> PathBuf {
    d.out().join("demo-wtg-creator")
}

#[test]
fn creator_package_folder_without_outputs_wim_and_rebuilt_in_place() {
    let d = Demo::small();
    build(&d.recipe(), &["-q"]);
    let pkg = package(&d);
    let program: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pkg.join("program.json")).unwrap()).unwrap();
    assert_eq!(
        program["command_line"],
        "WTGCreator.exe /wim:demo-wtg.wim /enableBootRedirect"
    );
    assert_eq!(program["max_run_time_minutes"], 120);
    assert_eq!(program["run_with_administrative_rights"], true);
    let total: u64 = std::fs::read_dir(&pkg)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(program["estimated_disk_space_kb"], total.div_ceil(1024));
    // The package's .wim is the prestaged media built alongside.
    assert_eq!(sha256(&pkg.join("demo-wtg.wim")), sha256(&d.wim()));
    assert_eq!(
        std::fs::read(pkg.join("WTGCreator.exe")).unwrap(),
        std::fs::read(d.dir().join("tools/WTGCreator.exe")).unwrap()
    );
    // SHA256SUMS lists each file of the folder, so `sha256sum -c` checks it.
    let sums = std::fs::read_to_string(d.out().join("SHA256SUMS")).unwrap();
    for f in ["demo-wtg.wim", "WTGCreator.exe", "program.json"] {
        let line = format!("{}  demo-wtg-creator/{f}", sha256(&pkg.join(f)));
        assert!(sums.contains(&line), "{line} not in\n{sums}");
    }
    let m: mediabuild::build::Manifest = serde_json::from_str(
        &std::fs::read_to_string(d.out().join("demo-wtg-creator.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m.members.len(), 3);
    assert_eq!(m.size, total);

    // Rebuilt with other settings and no outputs.wim: the folder is replaced
    // whole, and holds a .wim rendered for it.
    let r = d.variant(
        "no-wim.yaml",
        &[
            ("  wim: demo-wtg.wim\n", ""),
            ("enable_boot_redirect: true", "enable_boot_redirect: false"),
            ("max_run_time_minutes: 120", "max_run_time_minutes: 720"),
        ],
    );
    build(&r, &["-q"]);
    let program: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pkg.join("program.json")).unwrap()).unwrap();
    assert_eq!(program["command_line"], "WTGCreator.exe /wim:demo-wtg.wim");
    assert_eq!(program["max_run_time_minutes"], 720);
    let mut w = mediabuild::wim::Wim::open(&pkg.join("demo-wtg.wim")).unwrap();
    w.verify().unwrap();
    let left: Vec<String> = std::fs::read_dir(d.out())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    if tool("wimlib-imagex") {
        let o = sh(&format!(
            "wimlib-imagex verify '{}'",
            pkg.join("demo-wtg.wim").display()
        ));
        assert!(o.status.success(), "{}", text(&o));
    }
}

#[test]
fn no_password_passphrase_or_pfx_password_in_any_output_manifest_report_or_log() {
    let d = Demo::small();
    let pki_password = mediabuild::demo::DEMO_PKI_PASSWORD;
    // The PKI variant has all three secrets; a small disk keeps the scan short.
    let disk = std::fs::read_to_string(d.recipe()).unwrap();
    let size = disk
        .lines()
        .find(|l| l.contains("disk: {"))
        .and_then(|l| l.split("size: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_string();
    let r = d.variant(
        "all-secrets.yaml",
        &[
            (SELF_SIGNED, PKI),
            (&format!("size: {size}"), "size: 64MiB"),
        ],
    );
    let mut logs = String::new();
    for args in [
        vec!["check", r.to_str().unwrap()],
        vec!["plan", r.to_str().unwrap()],
        vec!["plan", r.to_str().unwrap(), "--json"],
        vec!["build", r.to_str().unwrap()],
    ] {
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        logs.push_str(&text(&o));
    }
    let files = files_under(&d.out());
    // The disk image holds every media file uncompressed, so scanning it
    // covers what the compressed .wim holds.
    assert!(files.len() >= 9, "{files:?}");
    let secrets = [MEDIA_PASSWORD, PASSPHRASE, pki_password];
    let forms: Vec<Vec<u8>> = secrets
        .iter()
        .flat_map(|s| [s.as_bytes().to_vec(), utf16(s)])
        .collect();
    let needles: Vec<&[u8]> = forms.iter().map(Vec::as_slice).collect();
    for s in secrets {
        assert!(!logs.contains(s), "a secret is in the logs");
    }
    for f in &files {
        let found = file_contains(f, &needles);
        assert!(!found.contains(&true), "a secret is in {}", f.display());
    }
    // Inside the encrypted variables only the passphrase belongs (OSDBitLockerPIN).
    let vars = media_vars(&d.wim(), MEDIA_PASSWORD);
    for (_, v) in &vars {
        assert!(!v.contains(MEDIA_PASSWORD) && !v.contains(pki_password));
    }
    assert_eq!(var(&vars, "OSDBitLockerPIN"), PASSPHRASE);
    // The plan names the certificate's source, never its value.
    assert!(
        logs.contains("_SMSTSMediaPFX = <secret from security.certificate>"),
        "{logs}"
    );
    let m: mediabuild::build::Manifest = serde_json::from_str(
        &std::fs::read_to_string(d.out().join("demo-wtg.wim.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m.secrets["security.certificate.pki.password"], "set");
    assert!(m.variables.iter().any(|v| v == security::PFX_VARIABLE));
}
