//! Rules that need only the recipe itself (no input is opened here).

use super::{Mode, Options};
use crate::diag::Diagnostic;
use crate::recipe::secret::SecretRef;
use crate::recipe::*;
use crate::units;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub(super) fn check(r: &Recipe, dir: &Path, mode: Mode, opts: Options, d: &mut Vec<Diagnostic>) {
    version(r, d);
    epoch(r, d);
    media(r, d);
    boot_image(r, d);
    package_ids(r, d);
    certificate(r, d);
    variables(r, d);
    secrets(r, dir, mode, d);
    password_strength(r, dir, opts, d);
    prestart_bitlocker(r, d);
    outputs(r, d);
}

fn version(r: &Recipe, d: &mut Vec<Diagnostic>) {
    if r.mediabuild != FORMAT_VERSION {
        d.push(
            Diagnostic::error("mediabuild", "unsupported recipe format version")
                .value(r.mediabuild)
                .fix(format!("this mediabuild reads format {FORMAT_VERSION}: write `mediabuild: {FORMAT_VERSION}`")),
        );
    }
}

fn too_long(d: &mut Vec<Diagnostic>, key: &str, v: &Option<String>, max: usize) {
    if let Some(s) = v {
        let n = s.chars().count();
        if n > max {
            d.push(
                Diagnostic::error(key, format!("{n} characters, at most {max} allowed"))
                    .value(format!("{s:?}"))
                    .fix(format!(
                        "shorten it to {max} characters (ConfigMgr's limit)"
                    )),
            );
        }
    }
}

/// Timestamps must fit every format they are written in: WIM FILETIMEs,
/// FAT dates (clamped to 1980–2107), X.509 times; 1970 to 9999 is safe.
fn epoch(r: &Recipe, d: &mut Vec<Diagnostic>) {
    const MAX: i64 = 253_402_300_799; // 9999-12-31 23:59:59 UTC
    let e = crate::recipe::epoch(r);
    if !(0..=MAX).contains(&e) {
        let from_env = r.source_date_epoch.is_none();
        d.push(
            Diagnostic::error(
                "source_date_epoch",
                format!(
                    "{e} is outside 1970-01-01 … 9999-12-31{}",
                    if from_env {
                        " (from SOURCE_DATE_EPOCH)"
                    } else {
                        ""
                    }
                ),
            )
            .value(e)
            .fix("give a Unix time in seconds, e.g. 1764288000 (2025-11-28)"),
        );
    }
}

/// Windows device names, refused as a file name with or without an extension.
pub(crate) fn is_reserved_windows_name(name: &str) -> bool {
    let stem = name
        .split('.')
        .next()
        .unwrap_or(name)
        .trim_end()
        .to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit()
            && stem.as_bytes()[3] != b'0')
}

fn media(r: &Recipe, d: &mut Vec<Diagnostic>) {
    let m = &r.media;
    if m.name.chars().count() > 64 {
        d.push(
            Diagnostic::error("media.name", format!("{} characters, at most 64", m.name.chars().count()))
                .fix("use a short file-name-safe name such as `finance-wtg` (it names files and the WIM image)"),
        );
    } else if is_reserved_windows_name(&m.name) {
        d.push(
            Diagnostic::error(
                "media.name",
                "a Windows device name: Windows cannot open a file of that name",
            )
            .value(format!("{:?}", m.name))
            .fix("choose another name (CON, PRN, AUX, NUL, COM1–9 and LPT1–9 are reserved)"),
        );
    }
    if m.name.is_empty()
        || !m
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        d.push(
            Diagnostic::error(
                "media.name",
                "must be non-empty and use only ASCII letters (A–Z, a–z), digits, `-`, `_`, `.` (it names files and the WIM image)",
            )
            .value(format!("{:?}", m.name))
            .fix("use a short file-name-safe name such as `finance-wtg`"),
        );
    }
    too_long(d, "media.created_by", &m.created_by, 50);
    too_long(d, "media.version", &m.version, 32);
    too_long(d, "media.comment", &m.comment, 127);
    if let Some(l) = &m.label {
        if l.is_empty()
            || l.chars()
                .any(|c| c.is_control() || "\"*+,./:;<=>?[\\]|".contains(c))
        {
            d.push(
                Diagnostic::error("media.label", "not a valid volume label")
                    .value(format!("{l:?}"))
                    .fix("use letters, digits, spaces, `-` or `_`; FAT keeps the first 11 characters"),
            );
        }
    }
    if r.outputs.disk.is_some() {
        let (key, wanted) = match &m.label {
            Some(l) => ("media.label", l.as_str()),
            None => ("media.name", m.name.as_str()),
        };
        if let Some(got) = crate::fat32::volume_label(wanted) {
            if got != wanted.trim().to_uppercase() {
                d.push(
                    Diagnostic::warning(
                        key,
                        format!(
                            "the disk's FAT32 volume label will be {got:?}: FAT labels hold at most 11 ASCII characters, upper case (MediaLabel.txt keeps the whole label)"
                        ),
                    )
                    .value(format!("{wanted:?}"))
                    .fix("set `media.label` to at most 11 ASCII letters, digits, spaces, `-` or `_`"),
                );
            }
        }
    }
    site(r, d);
    if m.unattended && m.deployment_id.is_none() {
        d.push(
            Diagnostic::error(
                "media.unattended",
                "unattended media need the deployment to run (SMSTSPreferredAdvertID); without it the deployment fails",
            )
            .value("true")
            .fix("add `media.deployment_id: <site code + 5 hex>` or set `unattended: false`"),
        );
    }
    let mg = &m.management;
    match mg.mode {
        ManagementMode::Dynamic if mg.points.is_empty() => d.push(
            Diagnostic::error(
                "media.management.points",
                "dynamic media need at least one management point",
            )
            .fix("list the management points in priority order, e.g. `[http://mp1.corp.example]`"),
        ),
        ManagementMode::SiteBased if mg.points.len() != 1 => d.push(
            Diagnostic::error(
                "media.management.points",
                format!(
                    "site-based media use exactly one management point of a primary site, {} given",
                    mg.points.len()
                ),
            )
            .value(format!("{:?}", mg.points))
            .fix("keep one point, or use `mode: dynamic` for a prioritised list"),
        ),
        _ => {}
    }
    let mut seen = BTreeMap::new();
    for (i, p) in mg.points.iter().enumerate() {
        let key = format!("media.management.points[{i}]");
        let host = p
            .strip_prefix("http://")
            .or_else(|| p.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || host.contains(char::is_whitespace) || host.starts_with('/') {
            d.push(
                Diagnostic::error(&key, "not a management point URL")
                    .value(format!("{p:?}"))
                    .fix("write `http://FQDN` or `https://FQDN`"),
            );
        }
        if let Some(j) = seen.insert(p.to_ascii_lowercase(), i) {
            d.push(
                Diagnostic::error(&key, format!("duplicate of media.management.points[{j}]"))
                    .value(format!("{p:?}"))
                    .fix("list each management point once"),
            );
        }
    }
}

/// `site:` (and the older `media.site_code`): the facts the media carry
/// about the site (docs/configmgr.md).
fn site(r: &Recipe, d: &mut Vec<Diagnostic>) {
    let s = &r.site;
    match (&s.code, &r.media.site_code) {
        (Some(_), Some(_)) => d.push(
            Diagnostic::error(
                "media.site_code",
                "the site code is given twice (`site.code` and its older spelling `media.site_code`)",
            )
            .fix("keep `site.code` and delete `media.site_code`"),
        ),
        (None, None) => d.push(
            Diagnostic::error("site.code", "the recipe has no site code").fix(
                "add `site: { code: PS1 }` with your primary site's code (or run `mediabuild site fetch --mp URL`)",
            ),
        ),
        _ => {
            let code = r.site_code();
            if !is_site_code(code) {
                d.push(
                    Diagnostic::error(r.site_code_key(), "a site code is 3 letters or digits")
                        .value(format!("{code:?}"))
                        .fix("write the site code of the primary site, e.g. `PS1`"),
                );
            }
        }
    }
    const WHERE: &str = "they are the site's own \"x64 Unknown Computer\" and \"x86 Unknown Computer\" resources (collection All Unknown Computers; a management point publishes them at /SMS_MP/.sms_aut?MPKEYINFORMATIONMEDIA): run `mediabuild site fetch --mp http://YOUR-MP` and review what it writes";
    match &s.unknown_computers {
        None if r.security.unknown_computers => d.push(
            Diagnostic::error(
                "site.unknown_computers",
                "unknown computer support needs the site's unknown-computer GUIDs (an invented GUID matches no resource: an unknown computer would get no deployment)",
            )
            .value("security.unknown_computers: true")
            .fix(format!("add `site.unknown_computers: {{ x64: GUID, x86: GUID }}`; {WHERE}")),
        ),
        Some(u) => {
            for (key, g) in [("x64", &u.x64), ("x86", &u.x86)] {
                if !is_guid(g) {
                    d.push(
                        Diagnostic::error(format!("site.unknown_computers.{key}"), "not a GUID")
                            .value(format!("{g:?}"))
                            .fix(format!("write it as 8-4-4-4-12 hex digits, e.g. `d10d7f98-17dd-4588-b645-34964936023b`; {WHERE}")),
                    );
                }
            }
            if !r.security.unknown_computers {
                d.push(
                    Diagnostic::warning(
                        "site.unknown_computers",
                        "the media do not support unknown computers, so these GUIDs are not written",
                    )
                    .fix("set `security.unknown_computers: true` to use them, or delete them"),
                );
            }
        }
        None => {}
    }
    let https = r
        .media
        .management
        .points
        .iter()
        .position(|p| p.to_ascii_lowercase().starts_with("https://"));
    if let (Some(i), true) = (https, s.root_ca_certificates.is_empty()) {
        d.push(
            Diagnostic::error(
                "site.root_ca_certificates",
                format!("media.management.points[{i}] is an HTTPS management point, and the media carry no trusted root CA: WinPE cannot check the point's certificate (WinHTTP error 0x80072f8f)"),
            )
            .value(r.media.management.points[i].clone())
            .fix("list the root CA certificate(s) of the PKI that issued the site systems' certificates (DER or PEM files), as in the site's properties, Communication Security, Trusted Root Certification Authorities"),
        );
    }
    if let Some(k) = &s.trusted_root_key {
        if k.is_empty() || k.len() % 2 != 0 || !k.chars().all(|c| c.is_ascii_hexdigit()) {
            d.push(
                Diagnostic::error("site.trusted_root_key", "not a hex string")
                    .value(format!("{} characters", k.len()))
                    .fix("copy the TRUSTEDROOTKEY a management point publishes (`mediabuild site fetch` does), or delete the key"),
            );
        }
    }
    for (key, port) in [
        ("site.http_port", s.http_port),
        ("site.https_port", s.https_port),
    ] {
        if port == Some(0) {
            d.push(
                Diagnostic::error(key, "port 0 is not a port")
                    .value("0")
                    .fix("write the port the site systems listen on (80 and 443 by default)"),
            );
        }
    }
}

/// A GUID as ConfigMgr writes them: 8-4-4-4-12 hex digits, braces allowed.
pub(crate) fn is_guid(g: &str) -> bool {
    let g = g
        .strip_prefix('{')
        .and_then(|g| g.strip_suffix('}'))
        .unwrap_or(g);
    let parts: Vec<&str> = g.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_site_code(s: &str) -> bool {
    s.len() == 3
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// ConfigMgr object IDs: site code + 5 hex digits, e.g. `PS100042`.
pub(crate) fn is_package_id(s: &str) -> bool {
    s.len() == 8
        && is_site_code(&s[..3])
        && s[3..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
}

fn boot_image(r: &Recipe, d: &mut Vec<Diagnostic>) {
    if let Some(ca) = r.boot_image.uefi_ca {
        if ca != 2011 && ca != 2023 {
            d.push(
                Diagnostic::error("boot_image.uefi_ca", "not a UEFI CA year mediabuild knows")
                    .value(ca)
                    .fix("write `2011` (the default) or `2023` (Windows UEFI CA 2023)"),
            );
        }
    }
}

fn package_ids(r: &Recipe, d: &mut Vec<Diagnostic>) {
    let mut ids: Vec<(String, &str)> = vec![
        ("boot_image.id".into(), r.boot_image.id.as_str()),
        ("os_image.id".into(), r.os_image.id.as_str()),
    ];
    for (sec, list) in [
        ("applications", &r.applications),
        ("packages", &r.packages),
        ("driver_packages", &r.driver_packages),
    ] {
        for (i, c) in list.iter().enumerate() {
            ids.push((format!("{sec}[{i}].id"), c.id.as_str()));
        }
    }
    if let Some(p) = &r.prestart {
        if let Some(id) = &p.id {
            ids.push(("prestart.id".into(), id));
        }
    }
    let mut all = ids.clone();
    all.push(("media.task_sequence".into(), r.media.task_sequence.as_str()));
    if let Some(dep) = &r.media.deployment_id {
        all.push(("media.deployment_id".into(), dep));
    }
    for (key, id) in &all {
        if !is_package_id(id) {
            d.push(
                Diagnostic::error(key.clone(), "not a ConfigMgr ID (site code + 5 hex digits)")
                    .value(format!("{id:?}"))
                    .fix(format!(
                        "write it like `{}00042` (upper case)",
                        if is_site_code(r.site_code()) {
                            r.site_code()
                        } else {
                            "PS1"
                        }
                    )),
            );
        }
    }
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, id) in &ids {
        if let Some(prev) = first.get(id) {
            d.push(
                Diagnostic::error(key.clone(), format!("package ID already used by {prev}"))
                    .value(id)
                    .fix(
                        "each package goes to its own SMS/PKG/<id>/ folder: give it a distinct ID",
                    ),
            );
        } else {
            first.insert(id, key);
        }
    }
}

fn certificate(r: &Recipe, d: &mut Vec<Diagnostic>) {
    let Some(c) = &r.security.certificate else {
        return;
    };
    match (&c.self_signed, &c.pki) {
        (Some(_), Some(_)) | (None, None) => d.push(
            Diagnostic::error("security.certificate", "give exactly one of `self_signed` or `pki`")
                .fix("`self_signed: { valid_from, valid_until }` for HTTP sites, `pki: { file, password }` for HTTPS"),
        ),
        _ => {}
    }
    if let Some(s) = &c.self_signed {
        let key = "security.certificate.self_signed";
        let from = date(d, &format!("{key}.valid_from"), &s.valid_from);
        let until = date(d, &format!("{key}.valid_until"), &s.valid_until);
        if let (Some(f), Some(u)) = (from, until) {
            if f < 0 {
                d.push(
                    Diagnostic::error(
                        format!("{key}.valid_from"),
                        "dates before 1970 are not supported",
                    )
                    .value(&s.valid_from)
                    .fix("choose the day the media starts being used"),
                );
            }
            let values = (s.valid_from.as_str(), s.valid_until.as_str());
            d.extend(date_diags(key, f, u, values));
        }
        if r.security.password.is_none() {
            d.push(
                Diagnostic::error(
                    key,
                    "a self-signed media certificate needs `security.password`: its private key is derived from that secret (never from the public recipe alone) and travels in Variables.dat, which only the password protects",
                )
                .fix("set `security.password: { env: MEDIA_PASSWORD }` (or `{ file: PATH }`)"),
            );
        }
    }
}

/// Diagnostics for a certificate valid from day `f` to day `u` (inclusive),
/// under `key` (`….self_signed` or `….pki`); `values` are the dates as written.
pub(crate) fn date_diags(key: &str, f: i64, u: i64, values: (&str, &str)) -> Option<Diagnostic> {
    use crate::security::cert::{date_problem, DateProblem};
    let today = units::today();
    let (from_key, until_key) = if key.ends_with(".pki") {
        (format!("{key}.file"), format!("{key}.file"))
    } else {
        (format!("{key}.valid_from"), format!("{key}.valid_until"))
    };
    Some(match date_problem(f, u, today)? {
        DateProblem::Inverted => Diagnostic::error(
            until_key,
            format!("the certificate ends on or before it starts ({})", values.0),
        )
        .value(values.1)
        .fix("the certificate must end after it starts"),
        DateProblem::Expired => Diagnostic::error(
            until_key,
            format!("the certificate has already expired (on {})", values.1),
        )
        .value(values.1)
        .fix(if key.ends_with(".pki") {
            "renew the certificate and export it again"
        } else {
            "choose a future expiry date"
        }),
        DateProblem::NotYetValid => Diagnostic::error(
            from_key,
            format!(
                "the certificate is not valid yet (from {}); management points refuse the media until then",
                values.0
            ),
        )
        .value(values.0)
        .fix(if key.ends_with(".pki") {
            "use a certificate that is valid today"
        } else {
            "choose a start date no later than today"
        }),
        DateProblem::ExpiresSoon => Diagnostic::warning(
            until_key,
            format!("the certificate expires within 30 days (on {})", values.1),
        )
        .value(values.1)
        .fix("media stop working when it expires: choose a later date or plan to rebuild"),
    })
}

fn date(d: &mut Vec<Diagnostic>, key: &str, s: &str) -> Option<i64> {
    let v = units::parse_date(s);
    if v.is_none() {
        d.push(
            Diagnostic::error(key, "not a date")
                .value(format!("{s:?}"))
                .fix("write YYYY-MM-DD, e.g. 2026-11-01"),
        );
    }
    v
}

/// Variables mediabuild sets itself, and the recipe key that sets each.
const OWNED: &[(&str, &str)] = crate::configmgr::OWNED_VARIABLES;

pub(crate) use crate::recipe::secret::is_secret_name;

fn variables(r: &Recipe, d: &mut Vec<Diagnostic>) {
    for (name, value) in &r.variables {
        let key = format!("variables.{name}");
        let valid = name.len() <= 255
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            let fix = if name.starts_with('_') {
                "names starting with `_` are read-only task-sequence variables; choose another name"
            } else {
                "use letters, digits and `_`, starting with a letter"
            };
            d.push(
                Diagnostic::error(&key, "invalid variable name")
                    .value(name)
                    .fix(fix),
            );
        }
        if let Some((_, owner)) = OWNED.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            d.push(
                Diagnostic::error(
                    &key,
                    format!("mediabuild sets this variable from `{owner}`"),
                )
                .value(name)
                .fix(format!("remove it here and set `{owner}` instead")),
            );
        }
        if name.eq_ignore_ascii_case(crate::configmgr::var::BITLOCKER_PIN) && r.bitlocker.is_some()
        {
            d.push(
                Diagnostic::error(&key, "set both here and by `bitlocker.passphrase`")
                    .fix("remove it here; `bitlocker.passphrase` sets OSDBitLockerPIN"),
            );
        }
        if let VariableValue::Literal(v) = value {
            if is_secret_name(name) {
                // Never echo the value: it is a secret.
                d.push(
                    Diagnostic::error(
                        &key,
                        "this variable holds a secret; a literal value is not allowed",
                    )
                    .fix("write `{ env: NAME }` or `{ file: PATH }`")
                    .secret(),
                );
            } else if name.eq_ignore_ascii_case(crate::configmgr::var::UDA_USERS)
                && !uda_users_ok(v)
            {
                d.push(
                    Diagnostic::error(&key, "expected DOMAIN\\user[,DOMAIN\\user…]")
                        .value(format!("{v:?}"))
                        .fix("write e.g. `CONTOSO\\jdoe,CONTOSO\\asmith`"),
                );
            }
        }
    }
}

pub(crate) fn uda_users_ok(v: &str) -> bool {
    !v.is_empty()
        && v.split(',').all(|u| {
            let mut p = u.trim().splitn(2, '\\');
            let (dom, user) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
            !dom.is_empty()
                && !user.is_empty()
                && !user.contains('\\')
                && !u.contains(char::is_whitespace)
        })
}

/// All secret references of the recipe, with their key paths.
pub(crate) fn secret_refs(r: &Recipe) -> Vec<(String, &SecretRef)> {
    let mut v = Vec::new();
    if let Some(p) = &r.security.password {
        v.push(("security.password".to_string(), p));
    }
    if let Some(p) = r.security.certificate.as_ref().and_then(|c| c.pki.as_ref()) {
        v.push(("security.certificate.pki.password".to_string(), &p.password));
    }
    if let Some(b) = &r.bitlocker {
        v.push(("bitlocker.passphrase".to_string(), &b.passphrase));
    }
    for (n, val) in &r.variables {
        if let VariableValue::Secret(s) = val {
            v.push((format!("variables.{n}"), s));
        }
    }
    v
}

fn secrets(r: &Recipe, dir: &Path, mode: Mode, d: &mut Vec<Diagnostic>) {
    for (key, s) in secret_refs(r) {
        if let Some(e) = &s.env {
            if e.is_empty() || !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                d.push(
                    Diagnostic::error(&key, "invalid environment variable name")
                        .value(e)
                        .fix("use letters, digits and `_`"),
                );
                continue;
            }
        }
        if let Err(e) = s.resolve(dir) {
            // A FIFO, a device or a huge file is a wrong reference, not a
            // secret that CI will provide later: an error in every mode.
            let wrong = matches!(&e, crate::recipe::secret::SecretError::File(_, io)
                if io.kind() == std::io::ErrorKind::InvalidInput);
            let msg = format!("secret not available ({}): {e}", s.describe());
            d.push(match mode {
                _ if wrong => Diagnostic::error(&key, msg)
                    .fix("point it at a small regular file holding only the secret (mode 600)"),
                Mode::Build => Diagnostic::error(&key, msg).fix("provide it before building"),
                Mode::Check => Diagnostic::warning(&key, msg).fix("a build will need it"),
            });
        }
    }
    let has_secret_vars = r.bitlocker.is_some()
        || r.variables
            .iter()
            .any(|(n, v)| matches!(v, VariableValue::Secret(_)) || is_secret_name(n));
    if has_secret_vars && r.security.password.is_none() {
        d.push(
            Diagnostic::warning(
                "security.password",
                "secret variables go into media without a password: Variables.dat is then encrypted with a publicly known key (obfuscation, not protection)",
            )
            .fix("set `security.password: { env: MEDIA_PASSWORD }`"),
        );
    }
}

/// The media password policy (`crate::security::password`), when the password
/// can be read now (a missing one is reported by `secrets`).
fn password_strength(r: &Recipe, dir: &Path, opts: Options, d: &mut Vec<Diagnostic>) {
    let Some(pw) = r
        .security
        .password
        .as_ref()
        .and_then(|p| p.resolve(dir).ok())
    else {
        return;
    };
    let Some(why) = crate::security::password::weakness(pw.expose()) else {
        return;
    };
    d.push(if opts.allow_weak_password {
        Diagnostic::warning(
            "security.password",
            format!("{why} — building anyway because of --allow-weak-password: anyone holding the media can recover it by offline guessing"),
        )
        .secret()
    } else {
        Diagnostic::error("security.password", why)
            .fix(crate::security::password::FIX)
            .secret()
    });
}

fn prestart_bitlocker(r: &Recipe, d: &mut Vec<Diagnostic>) {
    if let Some(p) = &r.prestart {
        if p.command.trim().is_empty() {
            d.push(
                Diagnostic::error("prestart.command", "empty command line")
                    .fix("give the command to run, e.g. `cmd /c ask-user.cmd`"),
            );
        }
        if p.files.is_some() && p.id.is_none() {
            d.push(
                Diagnostic::error("prestart.id", "prestart files need a package ID")
                    .fix("add `prestart.id: <site code + 5 hex>`; the files go to SMS/PKG/<id>/"),
            );
        }
    }
    if let Some(b) = &r.bitlocker {
        if !r.packages.iter().any(|p| p.id == b.package) {
            d.push(
                Diagnostic::error("bitlocker.package", "no package in `packages:` has this ID")
                    .value(&b.package)
                    .fix("add the package holding i386/osdbitlocker_wtg.exe to `packages:` and name its ID here"),
            );
        }
    }
}

/// Normalises an output path relative to `outputs.dir`; None when it could
/// escape: `..` is refused outright (through a symlinked folder, `a/..` is
/// not where it seems), and so is an absolute path.
fn inside(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn outputs(r: &Recipe, d: &mut Vec<Diagnostic>) {
    let o = &r.outputs;
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    if let Some(w) = &o.wim {
        paths.push(("outputs.wim".into(), w.clone()));
    }
    if let Some(disk) = &o.disk {
        paths.push(("outputs.disk.path".into(), disk.path.clone()));
        match disk.size_bytes() {
            Some(n) if n >= 64 << 20 => {}
            Some(_) => d.push(
                Diagnostic::error("outputs.disk.size", "too small for a FAT32 media disk")
                    .value(&disk.size)
                    .fix("use at least 64MiB; USB media are usually 8GiB or more"),
            ),
            None => d.push(
                Diagnostic::error("outputs.disk.size", "not a size")
                    .value(format!("{:?}", disk.size))
                    .fix("write a number with a unit: `32GiB`, `16000MB`, `512MiB`"),
            ),
        }
    }
    if let Some(c) = &o.creator_package {
        paths.push(("outputs.creator_package.path".into(), c.path.clone()));
        let range = crate::configmgr::RUN_TIME_RANGE;
        if let Some(m) = c.max_run_time_minutes.filter(|m| !range.contains(m)) {
            d.push(
                Diagnostic::error(
                    "outputs.creator_package.max_run_time_minutes",
                    format!(
                        "a program's maximum run time is {} to {} minutes",
                        range.start(),
                        range.end()
                    ),
                )
                .value(m)
                .fix("the default is 120; ConfigMgr's \"Unknown\" means 720"),
            );
        }
    }
    if paths.is_empty() {
        d.push(
            Diagnostic::error("outputs", "nothing to build")
                .fix("add `wim: NAME.wim` and/or `disk: { path: NAME.img, size: 32GiB }`"),
        );
    }
    let mut seen: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (key, p) in &paths {
        let text = p.to_string_lossy();
        let bad = if text.contains('\0') {
            Some("a NUL character cannot be in a file name")
        } else if text.chars().any(char::is_control) {
            Some("a control character (tab, newline, …) in a file name")
        } else if text.ends_with('/') || text.ends_with("/.") {
            Some("names a folder, not a file")
        } else if p
            .components()
            .any(|c| is_reserved_windows_name(&c.as_os_str().to_string_lossy()))
        {
            Some("a Windows device name (CON, PRN, AUX, NUL, COM1–9, LPT1–9): Windows cannot open it")
        } else {
            None
        };
        if let Some(why) = bad {
            d.push(
                Diagnostic::error(key.clone(), why)
                    .value(format!("{text:?}"))
                    .fix("write a file name such as `media.wim`, relative to `outputs.dir`"),
            );
            continue;
        }
        let Some(n) = inside(p) else {
            d.push(
                Diagnostic::error(key.clone(), "output path leaves the output folder")
                    .value(p.display())
                    .fix(format!("write a path relative to `outputs.dir` ({}), without `..` (refused outright) or a leading `/`", o.dir.display())),
            );
            continue;
        };
        // Each artefact also gets NAME.manifest.json beside it.
        let manifest = crate::recipe::manifest_path(&n);
        for q in [n.clone(), manifest] {
            let lower = PathBuf::from(q.to_string_lossy().to_lowercase());
            if let Some(prev) = seen.get(&lower) {
                d.push(
                    Diagnostic::error(key.clone(), format!("output collides with {prev}"))
                        .value(p.display())
                        .fix("give each output its own file name"),
                );
                break;
            }
            seen.insert(lower, key.clone());
        }
        if n.as_os_str().eq_ignore_ascii_case("SHA256SUMS") {
            d.push(
                Diagnostic::error(key.clone(), "SHA256SUMS is reserved for the checksums file")
                    .value(p.display()),
            );
        }
    }
    // A path that is a prefix of another (a file used as a folder).
    for (a, ka) in &seen {
        for (b, kb) in &seen {
            if a != b && b.starts_with(a) && ka != kb {
                d.push(
                    Diagnostic::error(kb.clone(), format!("output lies inside {ka}"))
                        .value(b.display())
                        .fix("outputs must not contain one another"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_id_shape() {
        assert!(is_package_id("PS100042"));
        assert!(is_package_id("PS1000AF"));
        assert!(!is_package_id("PS10004"));
        assert!(!is_package_id("PS10004G"));
        assert!(!is_package_id("ps100042"));
    }

    #[test]
    fn uda_users() {
        assert!(uda_users_ok("CONTOSO\\jdoe"));
        assert!(uda_users_ok("CONTOSO\\jdoe,CONTOSO\\asmith"));
        assert!(!uda_users_ok("jdoe"));
        assert!(!uda_users_ok("CONTOSO\\"));
    }

    #[test]
    fn inside_rejects_escapes() {
        assert_eq!(inside(Path::new("a/../b.wim")), None);
        assert_eq!(
            inside(Path::new("./a/b.wim")),
            Some(PathBuf::from("a/b.wim"))
        );
        assert_eq!(inside(Path::new("../b.wim")), None);
        assert_eq!(inside(Path::new("/etc/x")), None);
    }
}
