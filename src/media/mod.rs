//! The media tree: every file of the media, each with where its bytes come
//! from. It is the one model every output renders (DESIGN.md §2).

pub use crate::bootfiles;
pub mod bootstrap;
pub mod variables;

use crate::configmgr::{paths, var};
use crate::diag::Diagnostic;
use crate::ids;
use crate::recipe::*;
use crate::validate::InputFacts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a member's bytes come from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// A file on disk (content folders, prestart files).
    File { path: PathBuf },
    /// A file inside a WIM image (boot files).
    WimFile {
        wim: PathBuf,
        index: u32,
        path: String,
    },
    /// One image of a WIM, exported alone (boot.wim, the OS image).
    WimExport {
        wim: PathBuf,
        index: u32,
        bootable: bool,
        /// Parts 2… of a split source (`install2.swm`, …).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        parts: Vec<PathBuf>,
        /// Converted to this compression (a solid ESD source).
        #[serde(skip_serializing_if = "Option::is_none")]
        convert: Option<crate::recipe::Compression>,
        /// Size of the image's largest file (FAT32 holds < 4 GiB per file).
        #[serde(skip)]
        largest_file: u64,
    },
    /// Bytes generated from the recipe.
    Generated {
        what: String,
        #[serde(skip)]
        bytes: Arc<[u8]>,
    },
    /// `Variables.dat`: encrypted at build time, when secrets are resolved.
    MediaVariables,
}

/// One file of the media.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// Path on the media, '/'-separated.
    pub path: String,
    /// Size in bytes (an estimate for exported images until built).
    pub size: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
    /// The package (`SMS/PKG/<id>`) or role the member belongs to.
    pub group: String,
    pub source: Source,
}

/// Where a planned media variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarValue {
    /// Known when planning.
    Literal(String),
    /// A secret, read at build time from `reference` (recipe key `key`).
    Secret {
        key: String,
        reference: crate::recipe::secret::SecretRef,
    },
    /// `_SMSTSMediaPFX`: the media certificate's PKCS#12 file, made at build
    /// time (from `security.certificate`, with the media password).
    MediaPfx,
}

/// A planned media variable; secret values are resolved only at build time.
#[derive(Debug, Clone)]
pub struct PlannedVar {
    pub name: String,
    pub value: VarValue,
}

impl PlannedVar {
    /// The value, when it is known before the build.
    pub fn literal(&self) -> Option<&str> {
        match &self.value {
            VarValue::Literal(v) => Some(v),
            _ => None,
        }
    }

    /// The recipe key a value computed or read at build time comes from.
    pub fn source_key(&self) -> Option<&str> {
        match &self.value {
            VarValue::Literal(_) => None,
            VarValue::Secret { key, .. } => Some(key),
            VarValue::MediaPfx => Some(crate::security::PFX_SOURCE),
        }
    }
}

/// `{name, value}` for a literal, `{name, secret_from: KEY}` otherwise (the
/// plan's JSON; never a secret's reference or value).
impl Serialize for PlannedVar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("PlannedVar", 2)?;
        st.serialize_field("name", &self.name)?;
        match self.literal() {
            Some(v) => st.serialize_field("value", v)?,
            None => st.serialize_field("secret_from", &self.source_key())?,
        }
        st.end()
    }
}

/// The whole media: members sorted by path, and the variables.
#[derive(Debug, Clone, Serialize)]
pub struct MediaTree {
    pub members: Vec<Member>,
    pub variables: Vec<PlannedVar>,
    /// Empty folders of the content, as media paths (sorted): kept in the
    /// WIM and on the FAT volume, as installers can expect them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    /// Symbolic links of the content that were followed: the media path of
    /// the link and the file or folder it points at (shown by `plan`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<(String, PathBuf)>,
}

impl MediaTree {
    pub fn total_size(&self) -> u64 {
        self.members.iter().map(|m| m.size).sum()
    }
}

fn lit(name: &str, value: impl Into<String>) -> PlannedVar {
    PlannedVar {
        name: name.into(),
        value: VarValue::Literal(value.into()),
    }
}

fn secret(name: &str, key: String, reference: &crate::recipe::secret::SecretRef) -> PlannedVar {
    PlannedVar {
        name: name.into(),
        value: VarValue::Secret {
            key,
            reference: reference.clone(),
        },
    }
}

/// Value of a certificate variable: the certificates' DER in upper-case hex
/// (as `_SMSTSMediaPFX` carries its PKCS#12), several joined by `;`
/// (docs/configmgr.md: the format of these values is not public).
pub fn certificates_value(ders: &[Vec<u8>]) -> String {
    ders.iter()
        .map(|d| ids::hex(d).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(";")
}

/// Variables whose value is certificates (`certificates_value`).
pub use crate::configmgr::CERTIFICATE_VARIABLES;

/// The media variables in the order they are written: mediabuild's, then the
/// recipe's. Each name and value format and its public source: docs/configmgr.md.
pub fn plan_variables(r: &Recipe, facts: &InputFacts, digest: &[u8; 32]) -> Vec<PlannedVar> {
    let m = &r.media;
    let site = &r.site;
    let mut v = vec![
        lit(var::MEDIA_TYPE, "OEMMedia"),
        lit(var::LAUNCH_MODE, "HD"),
        lit(
            var::MEDIA_GUID,
            ids::guid_string(&ids::derive16(digest, "media-guid")),
        ),
    ];
    if r.security.certificate.is_some() {
        v.push(PlannedVar {
            name: var::MEDIA_PFX.into(),
            value: VarValue::MediaPfx,
        });
    }
    v.extend([
        lit(var::SITE_CODE, r.site_code()),
        lit(var::BOOT_MEDIA_PACKAGE_ID, &r.boot_image.id),
    ]);
    match m.management.mode {
        ManagementMode::SiteBased => v.push(lit(
            var::MP,
            m.management.points.first().cloned().unwrap_or_default(),
        )),
        ManagementMode::Dynamic => v.push(lit(var::LOCATION_MPS, m.management.points.join("*"))),
    }
    v.push(lit(
        var::HTTP_PORT,
        site.http_port.unwrap_or(80).to_string(),
    ));
    v.push(lit(
        var::HTTPS_PORT,
        site.https_port.unwrap_or(443).to_string(),
    ));
    if let Some(s) = site.iis_ssl_state {
        v.push(lit(var::IIS_SSL_STATE, s.to_string()));
    }
    if let Some(f) = site.use_first_cert {
        v.push(lit(var::USE_FIRST_CERT, if f { "1" } else { "0" }));
    }
    if !facts.site_root_cas.is_empty() {
        v.push(lit(
            var::ROOT_CA_CERTS,
            certificates_value(&facts.site_root_cas),
        ));
    }
    if let Some(k) = &site.trusted_root_key {
        v.push(lit(var::PUBLIC_ROOT_KEY, k.to_ascii_uppercase()));
    }
    if let Some(c) = &facts.site_signing {
        v.push(lit(
            var::SITE_SIGNING_CERTIFICATE,
            certificates_value(std::slice::from_ref(c)),
        ));
    }
    if let Some(d) = &m.deployment_id {
        v.push(lit(var::PREFERRED_ADVERT_ID, d));
    }
    let mode = match r.security.user_device_affinity {
        Affinity::Auto => "Auto",
        Affinity::Pending => "Pending",
        Affinity::None => "Disabled",
    };
    v.push(lit(var::ASSIGN_USERS_MODE, mode));
    if let (true, Some(u)) = (r.security.unknown_computers, &site.unknown_computers) {
        v.push(lit(var::X64_UNKNOWN_MACHINE_GUID, &u.x64));
        v.push(lit(var::X86_UNKNOWN_MACHINE_GUID, &u.x86));
    }
    if let Some(p) = &r.prestart {
        v.push(lit(var::PRE_EXEC_COMMAND_LINE, &p.command));
        if let Some(id) = &p.id {
            v.push(lit(var::PRE_EXEC_PACKAGE_ID, id));
        }
    }
    if let Some(b) = &r.bitlocker {
        v.push(secret(
            var::BITLOCKER_PIN,
            "bitlocker.passphrase".into(),
            &b.passphrase,
        ));
    }
    for (name, val) in &r.variables {
        v.push(match val {
            VariableValue::Literal(s) => lit(name, s),
            VariableValue::Secret(reference) => {
                secret(name, format!("variables.{name}"), reference)
            }
        });
    }
    v
}

/// The OS image's file name on the media: the source's own name for a
/// `.wim`; an `.esd` (converted) and a split `.swm` (joined) become
/// `<stem>.wim` — an OS image package holds a WIM.
pub fn os_image_name(source: &std::path::Path) -> String {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "install.wim".into());
    let lower = name.to_ascii_lowercase();
    match lower.rsplit_once('.') {
        Some((_, "esd" | "swm")) => format!("{}.wim", &name[..name.len() - 4]),
        _ => name,
    }
}

/// Builds the media tree from a validated recipe and what validation learnt.
/// Returns errors for members that would collide on a case-insensitive volume.
pub fn build_tree(
    r: &Recipe,
    facts: &InputFacts,
    dir: &std::path::Path,
    digest: &[u8; 32],
) -> Result<MediaTree, Vec<Diagnostic>> {
    let mut members = Vec::new();
    let boot_src = facts
        .boot
        .as_ref()
        .map_or_else(|| dir.join(&r.boot_image.source), |b| b.path.clone());
    if let Some(b) = &facts.boot {
        for (dst, src, size) in
            bootfiles::mapping(&b.files, r.boot_image.arch, r.boot_image.ca2023())
        {
            members.push(Member {
                path: dst,
                size,
                estimated: false,
                group: "boot files".into(),
                source: Source::WimFile {
                    wim: boot_src.clone(),
                    index: b.index,
                    path: src,
                },
            });
        }
        let convert = b.conversion(r.compression);
        members.push(Member {
            path: "sources/boot.wim".into(),
            size: b.export_estimate(convert),
            estimated: true,
            group: format!("boot image {}", r.boot_image.id),
            source: Source::WimExport {
                wim: boot_src.clone(),
                index: b.index,
                bootable: true,
                parts: b.parts.clone(),
                convert,
                largest_file: b.largest_file().map_or(0, |f| f.size),
            },
        });
    }
    if let Some(o) = &facts.os {
        let convert = o.conversion(r.compression);
        members.push(Member {
            path: format!(
                "{}/{}/{}",
                paths::PKG_DIR,
                r.os_image.id,
                os_image_name(std::path::Path::new(&o.file_name))
            ),
            size: o.export_estimate(convert),
            estimated: true,
            group: r.os_image.id.clone(),
            source: Source::WimExport {
                wim: o.path.clone(),
                index: o.index,
                bootable: false,
                parts: o.parts.clone(),
                convert,
                largest_file: o.largest_file().map_or(0, |f| f.size),
            },
        });
    }
    let mut content: Vec<(&str, &PathBuf)> = Vec::new();
    for list in [&r.applications, &r.packages, &r.driver_packages] {
        content.extend(list.iter().map(|c| (c.id.as_str(), &c.source)));
    }
    if let Some(p) = &r.prestart {
        if let (Some(id), Some(files)) = (&p.id, &p.files) {
            content.push((id, files));
        }
    }
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    for (id, src) in content {
        for (rel, target) in facts.links.get(src).into_iter().flatten() {
            links.push((format!("{}/{id}/{rel}", paths::PKG_DIR), target.clone()));
        }
        for rel in facts.empty_dirs.get(src).into_iter().flatten() {
            dirs.push(if rel.is_empty() {
                format!("{}/{id}", paths::PKG_DIR)
            } else {
                format!("{}/{id}/{rel}", paths::PKG_DIR)
            });
        }
        for f in facts.trees.get(src).into_iter().flatten() {
            members.push(Member {
                path: format!("{}/{id}/{}", paths::PKG_DIR, f.rel),
                size: f.size,
                estimated: false,
                group: id.to_string(),
                source: Source::File {
                    path: f.abs.clone(),
                },
            });
        }
    }
    let label = r
        .media
        .label
        .clone()
        .unwrap_or_else(|| r.media.name.clone());
    let generated = [
        (
            paths::BOOTSTRAP_INI,
            bootstrap::tsm_bootstrap(r.security.password.is_some(), r.media.unattended)
                .into_bytes(),
        ),
        (paths::MEDIA_LABEL, bootstrap::media_label(&label)),
    ];
    for (path, text) in generated {
        let bytes: Arc<[u8]> = text.into();
        members.push(Member {
            path: path.into(),
            size: bytes.len() as u64,
            estimated: false,
            group: "media data".into(),
            source: Source::Generated {
                what: path.rsplit('/').next().unwrap_or(path).into(),
                bytes,
            },
        });
    }
    let variables = plan_variables(r, facts, digest);
    members.push(Member {
        path: paths::VARIABLES_DAT.into(),
        size: 0,
        estimated: true,
        group: "media data".into(),
        source: Source::MediaVariables,
    });
    members.sort_by(|a, b| a.path.cmp(&b.path));

    // FAT32 and Windows are case-insensitive: two members differing only in case collide.
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut errs = Vec::new();
    for m in &members {
        if let Some(prev) = seen.insert(m.path.to_lowercase(), &m.path) {
            errs.push(
                Diagnostic::error(
                    "",
                    format!(
                        "media paths collide on a case-insensitive volume: {prev} and {}",
                        m.path
                    ),
                )
                .fix("rename one of the files in its source folder"),
            );
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    dirs.sort();
    dirs.dedup();
    links.sort();
    let mut tree = MediaTree {
        members,
        variables,
        dirs,
        links,
    };
    let est = variables::estimate_size(&tree.variables);
    if let Some(m) = tree
        .members
        .iter_mut()
        .find(|m| matches!(m.source, Source::MediaVariables))
    {
        m.size = est;
    }
    Ok(tree)
}
