//! The facts of one artefact (`Inspection`): read from the media first,
//! completed from its manifest, or from a manifest alone (for `diff`).

use super::disk::{FsFacts, TableFacts};
use super::source::{scratch, Artefact};
use super::{group_of, InspectError, Options};
use crate::build::Manifest;
use crate::media::variables;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Everything `inspect` says about an artefact (also `diff`'s input).
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// File name of the artefact (or of the manifest, for a manifest alone).
    pub artefact: String,
    /// `wim`, `disk`, or `manifest`.
    pub kind: String,
    pub size: u64,
    /// File name of the manifest used, if any.
    pub manifest: Option<String>,
    pub recipe_digest: Option<String>,
    pub media: MediaInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wim: Option<WimFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_table: Option<TableFacts>,
    /// The file system of the first partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FsFacts>,
    /// The file systems of the other partitions that hold a readable one
    /// (none on a disk of one partition).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_filesystems: Vec<PartitionFs>,
    pub boot_image: Option<ImageInfo>,
    pub os_image: Option<ImageInfo>,
    pub packages: Vec<PackageInfo>,
    pub variables: VariablesInfo,
    /// `[MediaInfo]` of SMS/data/TsmBootstrap.ini, key → value.
    pub tsm_bootstrap: BTreeMap<String, String>,
    pub members: Vec<MemberInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MediaInfo {
    pub name: String,
    pub label: String,
    /// Identity, security and management: from the media where it says, else the manifest.
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WimFacts {
    pub images: u32,
    pub boot_index: u32,
    pub compression: String,
    pub chunk_size: u32,
    pub guid: String,
    pub image_name: Option<String>,
    pub description: Option<String>,
}

/// The file system of a partition after the first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartitionFs {
    /// The partition's number in the table.
    pub partition: u32,
    #[serde(flatten)]
    pub filesystem: FsFacts,
}

/// The boot or OS image on the media.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageInfo {
    /// Package ID (from the media's variables or folder, else the manifest).
    pub id: Option<String>,
    /// Member path on the media.
    pub path: String,
    /// Image name, architecture and edition from the embedded image's XML.
    pub name: Option<String>,
    pub arch: Option<String>,
    pub edition: Option<String>,
    /// Index in the source WIM the build exported (manifest); on the media it is image 1.
    pub source_index: Option<u32>,
    /// SHA-256 of the source WIM file (manifest).
    pub source_sha256: Option<String>,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PackageInfo {
    pub id: String,
    /// `application`, `package`, `driver_package`, `prestart`, `os_image`, or `unknown`.
    pub kind: String,
    /// Display name (manifest), else `unknown`.
    pub name: String,
    pub files: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariablesInfo {
    /// `Variables.dat` (decrypted) or `manifest` (names only).
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub list: Vec<VarInfo>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VarInfo {
    pub name: String,
    /// From the manifest's fingerprint kind; unknown without a manifest.
    pub secret: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Only with `--show-values`, and never for a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemberInfo {
    pub path: String,
    pub size: u64,
    pub group: String,
    /// Known from the manifest, or computed (`verify`, `diff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// For an embedded WIM: SHA-256 with its header GUID zeroed (`diff`).
    #[serde(skip)]
    pub content: Option<String>,
}

/// Variables mediabuild writes itself with a value that is never secret.
const PLAIN: &[&str] = crate::configmgr::PLAIN_VARIABLES;

/// Media properties that a variable states: (variable, property).
use crate::configmgr::{paths, var};
const FROM_VARS: &[(&str, &str)] = &[
    (var::SITE_CODE, "site_code"),
    // Media written before issue 19 carried the task sequence here.
    (var::PACKAGE_ID, "task_sequence"),
    (var::PREFERRED_ADVERT_ID, "deployment_id"),
];

fn ini(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Inspects the artefact at `path`.
pub fn inspect(path: &Path, opts: &Options) -> Result<Inspection, InspectError> {
    let art = Artefact::open(path)?;
    let manifest = super::find_manifest(path, opts.manifest.as_deref())?;
    let size = std::fs::metadata(path)
        .map_err(|e| InspectError::io("read", path, e))?
        .len();
    let damaged = |what: String| InspectError::Damaged {
        path: path.to_path_buf(),
        what,
    };
    let listed = art.list().map_err(damaged)?;
    let m = manifest.as_ref().map(|(_, m)| m);
    let groups: BTreeMap<&str, &str> = m
        .map(|m| {
            m.members
                .iter()
                .map(|x| (x.path.as_str(), x.group.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let members: Vec<MemberInfo> = listed
        .iter()
        .map(|l| MemberInfo {
            group: groups
                .get(l.path.as_str())
                .map(|g| g.to_string())
                .unwrap_or_else(|| group_of(&l.path)),
            path: l.path.clone(),
            size: l.size,
            sha256: None,
            content: None,
        })
        .collect();
    let read_text = |p: &str| {
        art.read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok()
    };
    let tsm = read_text(paths::BOOTSTRAP_INI)
        .map(|t| ini(&t))
        .unwrap_or_default();
    let label = read_text(paths::MEDIA_LABEL)
        .and_then(|t| ini(&t).get("label").cloned())
        .or_else(|| m.map(|m| m.label.clone()))
        .unwrap_or_default();
    let variables = read_variables(&art, &tsm, m, opts)?;
    let value_of = |n: &str| -> Option<String> {
        variables
            .1
            .as_ref()
            .and_then(|v| v.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    };

    let mut properties = m.map(|m| m.properties.clone()).unwrap_or_default();
    for (var, prop) in FROM_VARS {
        if let Some(v) = value_of(var) {
            properties.insert(prop.to_string(), v);
        }
    }
    if let Some(v) = value_of("SMSTSLocationMPs").or_else(|| value_of("SMSTSMP")) {
        properties.insert("management_points".into(), v.replace('*', " "));
    }
    for (k, prop) in [
        ("PasswordRequired", "password_required"),
        ("Unattended", "unattended"),
    ] {
        if let Some(v) = tsm.get(k) {
            properties.insert(prop.into(), v.to_lowercase());
        }
    }

    let (wim, table, fs, other_fs) = match &art {
        Artefact::Wim(w) => (
            Some(WimFacts {
                images: w.info.image_count,
                boot_index: w.info.boot_index,
                compression: w.info.compression.as_str().into(),
                chunk_size: w.info.chunk_size,
                guid: crate::ids::guid_string(&w.info.guid),
                image_name: w.wim.property(w.index, "NAME"),
                description: w.wim.property(w.index, "DESCRIPTION"),
            }),
            None,
            None,
            Vec::new(),
        ),
        Artefact::Disk(d) => {
            let mut volumes = d.volume_facts().into_iter();
            let first = volumes.next().and_then(|(_, f)| f.ok());
            let others = volumes
                .filter_map(|(partition, f)| {
                    f.ok().map(|filesystem| PartitionFs {
                        partition,
                        filesystem,
                    })
                })
                .collect();
            (None, Some(d.table.clone()), first, others)
        }
    };
    let media_name = m
        .map(|m| m.media.clone())
        .or_else(|| wim.as_ref().and_then(|w| w.image_name.clone()))
        .unwrap_or_else(|| label.clone());

    let input = |role: &str| m.and_then(|m| m.inputs.iter().find(|i| i.role == role));
    let boot_image = members
        .iter()
        .find(|x| x.path == "sources/boot.wim")
        .map(|x| {
            let id = value_of("_SMSTSBootMediaPackageID")
                .or_else(|| input("boot_image").and_then(|i| i.id.clone()));
            image_info(&art, x, id, input("boot_image"))
        });
    let os_id = input("os_image").and_then(|i| i.id.clone());
    let os_image = members
        .iter()
        .find(|x| {
            let in_os = os_id
                .as_ref()
                .is_some_and(|id| x.path.starts_with(&format!("{}/{id}/", paths::PKG_DIR)));
            let lower = x.path.to_ascii_lowercase();
            // Sorted paths: `install.swm` comes before `install2.swm`.
            (in_os || os_id.is_none())
                && x.path.starts_with(paths::PKG_PREFIX)
                && (lower.ends_with(".wim") || lower.ends_with(".swm"))
        })
        .map(|x| {
            let id = group_of(&x.path);
            image_info(&art, x, Some(id), input("os_image"))
        });

    let packages = packages(&members, m, os_image.as_ref());
    let artefact = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Inspection {
        artefact,
        kind: art.kind().into(),
        size,
        manifest: manifest.as_ref().map(|(p, _)| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        recipe_digest: m.map(|m| m.recipe_digest.clone()),
        media: MediaInfo {
            name: media_name,
            label,
            properties,
        },
        wim,
        partition_table: table,
        filesystem: fs,
        other_filesystems: other_fs,
        boot_image,
        os_image,
        packages,
        variables: variables.0,
        tsm_bootstrap: tsm,
        members,
    })
}

/// Name, arch and edition of an embedded image, from its own XML (it is
/// copied out to a temporary file for wimlib; a `.swm` set's first part holds
/// the XML).
fn image_info(
    art: &Artefact,
    x: &MemberInfo,
    id: Option<String>,
    input: Option<&crate::build::ManifestInput>,
) -> ImageInfo {
    let mut info = ImageInfo {
        id,
        path: x.path.clone(),
        name: None,
        arch: None,
        edition: None,
        source_index: input.and_then(|i| i.index),
        source_sha256: input.map(|i| i.sha256.clone()),
        size: x.size,
    };
    let read = || -> Option<(Option<String>, Option<String>, Option<String>)> {
        let tmp = scratch().ok()?;
        let f = art.copy_out(&x.path, tmp.path()).ok()?;
        let w = crate::wim::Wim::open(&f).ok()?;
        Some((
            w.property(1, "NAME"),
            w.property(1, "WINDOWS/ARCH")
                .map(|a| crate::wim::arch_name(&a).to_string()),
            w.property(1, "WINDOWS/EDITIONID"),
        ))
    };
    if let Some((n, a, e)) = read() {
        (info.name, info.arch, info.edition) = (n, a, e);
    }
    info
}

fn packages(
    members: &[MemberInfo],
    m: Option<&Manifest>,
    os: Option<&ImageInfo>,
) -> Vec<PackageInfo> {
    let mut by_id: BTreeMap<String, PackageInfo> = BTreeMap::new();
    for x in members {
        let Some(rest) = x.path.strip_prefix(paths::PKG_PREFIX) else {
            continue;
        };
        let id = rest.split('/').next().unwrap_or_default().to_string();
        let p = by_id.entry(id.clone()).or_insert_with(|| {
            let input = m.and_then(|m| {
                m.inputs
                    .iter()
                    .find(|i| i.id.as_deref() == Some(id.as_str()))
            });
            let (kind, name) = match input {
                Some(i) if i.role == "os_image" => {
                    ("os_image".to_string(), i.image.clone().unwrap_or_default())
                }
                Some(i) => (
                    i.role.clone(),
                    i.name.clone().unwrap_or_else(|| i.role.clone()),
                ),
                None if os.and_then(|o| o.id.as_deref()) == Some(id.as_str()) => (
                    "os_image".into(),
                    os.and_then(|o| o.name.clone()).unwrap_or("unknown".into()),
                ),
                None => ("unknown".into(), "unknown".into()),
            };
            PackageInfo {
                id,
                kind,
                name,
                files: 0,
                size: 0,
            }
        });
        p.files += 1;
        p.size += x.size;
    }
    by_id.into_values().collect()
}

/// The variables: decrypted from the media when it can be, else names from
/// the manifest. Returns the listing and, when decrypted, the values.
#[allow(clippy::type_complexity)]
fn read_variables(
    art: &Artefact,
    tsm: &BTreeMap<String, String>,
    m: Option<&Manifest>,
    opts: &Options,
) -> Result<(VariablesInfo, Option<Vec<(String, String)>>), InspectError> {
    let required = tsm
        .get("PasswordRequired")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let fp = |n: &str| m.and_then(|m| m.fingerprints.get(n).cloned());
    let secret_of = |n: &str| -> Option<bool> {
        match fp(n) {
            Some(f) => Some(f.starts_with("pbkdf2:")),
            None if m.is_none() && PLAIN.contains(&n) => Some(false),
            None => None,
        }
    };
    if required && opts.password.is_none() {
        if opts.show_values {
            return Err(InspectError::NeedPassword);
        }
        let names = m.map(|m| m.variables.clone()).unwrap_or_default();
        return Ok((
            VariablesInfo {
                source: "manifest".into(),
                note: Some(if m.is_some() {
                    "names from the manifest: Variables.dat is encrypted with the media password (give --password-env or --password-file to read it)".into()
                } else {
                    "Variables.dat is encrypted with the media password and there is no manifest: give --password-env or --password-file".into()
                }),
                list: names
                    .iter()
                    .map(|n| VarInfo {
                        name: n.clone(),
                        secret: secret_of(n),
                        fingerprint: fp(n),
                        value: None,
                    })
                    .collect(),
            },
            None,
        ));
    }
    let bytes = art
        .read(paths::VARIABLES_DAT)
        .map_err(|e| InspectError::Damaged {
            path: paths::VARIABLES_DAT.into(),
            what: e,
        })?;
    let password = if required {
        opts.password.as_ref().map(|p| p.expose())
    } else {
        None
    };
    let xml = variables::decode(&bytes, password).map_err(InspectError::Variables)?;
    let pairs = variables::parse_xml(&xml);
    let list = pairs
        .iter()
        .map(|(n, v)| {
            let secret = secret_of(n);
            // Without a manifest, a plain value's fingerprint is computed here.
            let fingerprint = fp(n).or_else(|| {
                (secret == Some(false)).then(|| {
                    let var = variables::MediaVar {
                        name: n.clone(),
                        value: v.clone(),
                        secret: false,
                    };
                    variables::fingerprint(&var, None, "", "")
                })
            });
            VarInfo {
                name: n.clone(),
                secret,
                fingerprint,
                // Shown only when known not to be a secret; certificates
                // by subject and thumbprint.
                value: (opts.show_values && secret == Some(false)).then(|| shown_value(n, v)),
            }
        })
        .collect();
    Ok((
        VariablesInfo {
            source: "Variables.dat".into(),
            note: None,
            list,
        },
        Some(pairs),
    ))
}

/// A variable's value as `inspect --show-values` shows it: certificates
/// (hex DER, `;`-separated) by subject and thumbprint, the rest as is.
fn shown_value(name: &str, value: &str) -> String {
    if !crate::media::CERTIFICATE_VARIABLES.contains(&name) {
        return value.to_string();
    }
    value
        .split(';')
        .map(|h| match crate::ids::unhex(h) {
            Some(der) => crate::security::cert::describe(&der),
            None => format!("not hex ({} characters)", h.len()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The facts a manifest alone gives (for `diff` of two manifests).
pub fn from_manifest(path: &Path, m: &Manifest) -> Inspection {
    let members: Vec<MemberInfo> = m
        .members
        .iter()
        .map(|x| MemberInfo {
            path: x.path.clone(),
            size: x.size,
            group: x.group.clone(),
            sha256: Some(x.sha256.clone()),
            content: None,
        })
        .collect();
    let image = |role: &str, path: Option<&MemberInfo>| {
        let i = m.inputs.iter().find(|i| i.role == role)?;
        Some(ImageInfo {
            id: i.id.clone(),
            path: path.map(|p| p.path.clone()).unwrap_or_default(),
            name: i.image.clone(),
            arch: i.arch.clone(),
            edition: i.edition.clone(),
            source_index: i.index,
            source_sha256: Some(i.sha256.clone()),
            size: path.map(|p| p.size).unwrap_or(0),
        })
    };
    let boot = image(
        "boot_image",
        members.iter().find(|x| x.path == "sources/boot.wim"),
    );
    let os_id = m
        .inputs
        .iter()
        .find(|i| i.role == "os_image")
        .and_then(|i| i.id.clone())
        .unwrap_or_default();
    let os = image("os_image", members.iter().find(|x| x.group == os_id));
    Inspection {
        artefact: m.artefact.clone(),
        kind: "manifest".into(),
        size: m.size,
        manifest: path.file_name().map(|n| n.to_string_lossy().into_owned()),
        recipe_digest: Some(m.recipe_digest.clone()),
        media: MediaInfo {
            name: m.media.clone(),
            label: m.label.clone(),
            properties: m.properties.clone(),
        },
        wim: None,
        partition_table: None,
        filesystem: None,
        other_filesystems: Vec::new(),
        packages: packages(&members, Some(m), os.as_ref()),
        boot_image: boot,
        os_image: os,
        variables: VariablesInfo {
            source: "manifest".into(),
            note: None,
            list: m
                .variables
                .iter()
                .map(|n| VarInfo {
                    name: n.clone(),
                    secret: m.fingerprints.get(n).map(|f| f.starts_with("pbkdf2:")),
                    fingerprint: m.fingerprints.get(n).cloned(),
                    value: None,
                })
                .collect(),
        },
        tsm_bootstrap: BTreeMap::new(),
        members,
    }
}

impl Inspection {
    /// The human-readable report.
    pub fn render(&self) -> String {
        use crate::units::human;
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "{} ({}, {})", self.artefact, self.kind, human(self.size));
        let _ = writeln!(
            s,
            "  manifest: {}",
            self.manifest
                .as_deref()
                .unwrap_or("none (package names unknown)")
        );
        let _ = writeln!(s, "media {} (label {})", self.media.name, self.media.label);
        for (k, v) in &self.media.properties {
            let _ = writeln!(s, "  {k:<22} {v}");
        }
        if let Some(w) = &self.wim {
            let _ = writeln!(
                s,
                "wim: {} image(s), boot index {}, {} chunks of {}, GUID {}",
                w.images,
                w.boot_index,
                w.compression,
                human(u64::from(w.chunk_size)),
                w.guid
            );
        }
        if let Some(t) = &self.partition_table {
            let _ = writeln!(s, "partition table: {} (disk id {})", t.scheme, t.disk_id);
            for p in &t.partitions {
                let _ = writeln!(
                    s,
                    "  {} type {} at {} size {}{}{}",
                    p.number,
                    p.r#type,
                    p.start,
                    human(p.size),
                    if p.active == Some(true) {
                        ", active"
                    } else {
                        ""
                    },
                    p.name
                        .as_ref()
                        .map(|n| format!(", name {n}"))
                        .unwrap_or_default()
                );
            }
        }
        let fs_line = |f: &FsFacts| {
            format!(
                "{} label {:?}, id {}, {} clusters of {} ({} free)",
                f.r#type,
                f.label,
                f.volume_id,
                f.clusters,
                human(u64::from(f.cluster_size)),
                f.free_clusters
            )
        };
        if let Some(f) = &self.filesystem {
            let _ = writeln!(s, "filesystem: {}", fs_line(f));
        }
        for o in &self.other_filesystems {
            let _ = writeln!(
                s,
                "filesystem of partition {}: {}",
                o.partition,
                fs_line(&o.filesystem)
            );
        }
        for (what, img) in [
            ("boot image", &self.boot_image),
            ("OS image", &self.os_image),
        ] {
            if let Some(i) = img {
                let _ = writeln!(
                    s,
                    "{what} {}: {} ({}{}), {} — {}{}",
                    i.id.as_deref().unwrap_or("unknown"),
                    i.name.as_deref().unwrap_or("unknown"),
                    i.arch.as_deref().unwrap_or("unknown arch"),
                    i.edition
                        .as_ref()
                        .map(|e| format!(", {e}"))
                        .unwrap_or_default(),
                    human(i.size),
                    i.path,
                    i.source_index
                        .map(|n| format!(", source index {n}"))
                        .unwrap_or_default()
                );
            }
        }
        let _ = writeln!(s, "packages:");
        for p in &self.packages {
            let _ = writeln!(
                s,
                "  {} {:<15} {:<30} {:>4} files {:>10}",
                p.id,
                p.kind,
                p.name,
                p.files,
                human(p.size)
            );
        }
        let _ = writeln!(s, "variables (from {}):", self.variables.source);
        if let Some(n) = &self.variables.note {
            let _ = writeln!(s, "  ({n})");
        }
        for v in &self.variables.list {
            let tail = match (&v.value, v.secret) {
                (Some(val), _) => format!(" = {val}"),
                (None, Some(true)) => " (secret)".into(),
                _ => String::new(),
            };
            let _ = writeln!(s, "  {}{tail}", v.name);
        }
        if !self.tsm_bootstrap.is_empty() {
            let _ = writeln!(s, "TsmBootstrap.ini [MediaInfo]:");
            for (k, v) in &self.tsm_bootstrap {
                let _ = writeln!(s, "  {k}={v}");
            }
        }
        let _ = writeln!(
            s,
            "{} files, {}",
            self.members.len(),
            human(self.members.iter().map(|m| m.size).sum())
        );
        s
    }
}
