//! What the plan records of the recipe besides the media tree and the
//! outputs, decided once when planning: the manifest's media properties and
//! content inputs, the lockfile's inputs, the recipe keys holding secrets,
//! the site server's to-do list. Later stages read these, never the recipe.

use crate::recipe::Recipe;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A content folder as the manifest records it.
#[derive(Debug, Clone)]
pub struct PlannedContent {
    /// `application`, `package`, `driver_package`, `prestart`.
    pub role: &'static str,
    pub id: String,
    pub name: Option<String>,
    /// As written in the recipe.
    pub source: PathBuf,
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub content: Vec<PlannedContent>,
    pub lock_inputs: Vec<(String, PathBuf)>,
    pub secret_keys: Vec<String>,
    pub properties: BTreeMap<String, String>,
    pub todo: Vec<String>,
}

impl Recorded {
    pub fn of(r: &Recipe) -> Recorded {
        Recorded {
            content: content(r),
            lock_inputs: lock_inputs(r),
            secret_keys: crate::validate::secret_keys(r),
            properties: properties(r),
            todo: site_server_todo(r),
        }
    }
}

fn content(r: &Recipe) -> Vec<PlannedContent> {
    let mut v = Vec::new();
    for (role, list) in [
        ("application", &r.applications),
        ("package", &r.packages),
        ("driver_package", &r.driver_packages),
    ] {
        v.extend(list.iter().map(|c| PlannedContent {
            role,
            id: c.id.clone(),
            name: Some(c.name.clone()),
            source: c.source.clone(),
        }));
    }
    if let Some(p) = &r.prestart {
        if let (Some(id), Some(f)) = (&p.id, &p.files) {
            v.push(PlannedContent {
                role: "prestart",
                id: id.clone(),
                name: None,
                source: f.clone(),
            });
        }
    }
    v
}

/// Inputs besides the images that the lockfile pins, by recipe key (paths
/// relative to the recipe's folder).
fn lock_inputs(r: &Recipe) -> Vec<(String, PathBuf)> {
    let mut folders: Vec<(String, PathBuf)> = Vec::new();
    for (sec, list) in [
        ("applications", &r.applications),
        ("packages", &r.packages),
        ("driver_packages", &r.driver_packages),
    ] {
        for (i, c) in list.iter().enumerate() {
            folders.push((format!("{sec}[{i}]"), c.source.clone()));
        }
    }
    if let Some(f) = r.prestart.as_ref().and_then(|p| p.files.as_ref()) {
        folders.push(("prestart.files".into(), f.clone()));
    }
    for (i, f) in r.site.root_ca_certificates.iter().enumerate() {
        folders.push((format!("site.root_ca_certificates[{i}]"), f.clone()));
    }
    if let Some(f) = &r.site.signing_certificate {
        folders.push(("site.signing_certificate".into(), f.clone()));
    }
    if let Some(c) = &r.outputs.creator_package {
        folders.push(("outputs.creator_package.creator".into(), c.creator.clone()));
    }
    if let Some(p) = r.security.certificate.as_ref().and_then(|c| c.pki.as_ref()) {
        // The .pfx is password-protected; its digest reveals nothing of it.
        folders.push(("security.certificate.pki.file".into(), p.file.clone()));
    }
    folders
}

/// The media properties the manifest records: what the recipe says about the
/// media's identity, security and management, never a secret.
fn properties(r: &Recipe) -> BTreeMap<String, String> {
    let m = &r.media;
    let word = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        p.insert(k.to_string(), v);
    };
    for (k, v) in [
        ("created_by", &m.created_by),
        ("version", &m.version),
        ("comment", &m.comment),
        ("deployment_id", &m.deployment_id),
    ] {
        if let Some(v) = v {
            put(k, v.clone());
        }
    }
    put("site_code", r.site_code().to_string());
    put("task_sequence", m.task_sequence.clone());
    put("unattended", m.unattended.to_string());
    put(
        "target_firmware",
        word(serde_json::to_value(m.target_firmware).unwrap_or_default()),
    );
    put(
        "management_mode",
        word(serde_json::to_value(m.management.mode).unwrap_or_default()),
    );
    put("management_points", m.management.points.join(" "));
    put(
        "password_required",
        r.security.password.is_some().to_string(),
    );
    put(
        "unknown_computers",
        r.security.unknown_computers.to_string(),
    );
    put(
        "user_device_affinity",
        word(serde_json::to_value(r.security.user_device_affinity).unwrap_or_default()),
    );
    let cert = match &r.security.certificate {
        Some(c) if c.pki.is_some() => "pki",
        Some(_) => "self_signed",
        None => "none",
    };
    put("certificate", cert.to_string());
    p
}

/// What the admin must still do on the site server (S22: out of scope here),
/// each step with the recipe's IDs; sources in docs/configmgr.md.
fn site_server_todo(r: &Recipe) -> Vec<String> {
    let mut ids: Vec<String> = vec![
        format!("boot image {}", r.boot_image.id),
        format!("OS image {}", r.os_image.id),
    ];
    for (what, list) in [
        ("application", &r.applications),
        ("package", &r.packages),
        ("driver package", &r.driver_packages),
    ] {
        for c in list.iter() {
            ids.push(format!("{what} {} ({})", c.id, c.name));
        }
    }
    if let Some(id) = r.prestart.as_ref().and_then(|p| p.id.as_ref()) {
        ids.push(format!("prestart package {id}"));
    }
    let mut v = vec![
        format!(
            "Distribute every package the task sequence references to at least one distribution point — the media hold a copy, but the site checks the content against its own: {}, and any other content task sequence {} references.",
            ids.join(", "),
            r.media.task_sequence
        ),
        format!(
            "Deploy task sequence {} to a collection that holds the target computers, purpose Available, \"Make available to the following\": \"Only media and PXE (hidden)\"{}.",
            r.media.task_sequence,
            match &r.media.deployment_id {
                Some(d) => format!(" — deployment {d} is the one the media run (SMSTSPreferredAdvertID); it must exist with that ID"),
                None => String::new(),
            }
        ),
    ];
    if r.security.unknown_computers {
        v.push("Deploy the task sequence also to the collection \"All Unknown Computers\" (it holds the x64/x86 Unknown Computer objects whose GUIDs the media carry), otherwise an unknown computer gets \"no deployed task sequence\".".into());
    }
    match r.security.certificate.as_ref() {
        Some(c) if c.self_signed.is_some() => v.push("The self-signed media certificate made by mediabuild is not registered at the site, and ConfigMgr documents no way to register one made elsewhere (Administration > Security > Certificates only blocks or unblocks; the SMS_Certificate class is read-only; Import-CMCertificate imports PKI certificates). For media a real site accepts, rebuild with `security.certificate.pki`: a client-authentication certificate (EKU 1.3.6.1.5.5.7.3.2) from a CA the site trusts.".into()),
        Some(_) => v.push("The PKI media certificate must be issued by a CA in the site's trusted root CAs (site properties, Communication Security) and carry Client Authentication (1.3.6.1.5.5.7.3.2); nothing to register.".into()),
        None => {}
    }
    if let Some(b) = &r.bitlocker {
        v.push(format!(
            "Add a \"Run Command Line\" step after \"Setup Windows and ConfigMgr\": `osdbitlocker_wtg.exe /Enable /pwd:{} /wait:{}` from package {}, condition `_SMSTSWTG Equals True`.",
            match b.recovery {
                crate::recipe::Recovery::Ad => "AD",
                crate::recipe::Recovery::None => "None",
            },
            if b.wait { "TRUE" } else { "FALSE" },
            b.package
        ));
    }
    v.push("Monitor deployment status and alerts in the console (collections, schedules and alerts are server-side objects mediabuild does not create).".into());
    v
}
