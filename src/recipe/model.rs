//! The recipe's types: what a `recipe.yaml` may say, nothing more.
//!
//! Every struct denies unknown keys, and no enum is internally tagged, untagged
//! or flattened, so that the YAML parser can always point at the offending key.
//! The JSON Schema (`mediabuild schema`) and the README's key reference are
//! generated from / checked against these same types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::secret::SecretRef;

// WIM compression is the wim engine's type (a recipe key).
pub use crate::wim::Compression;

/// The recipe format version this build of mediabuild reads.
pub const FORMAT_VERSION: u32 = 1;

/// A whole recipe, after parsing (not yet validated).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Recipe format version; must be 1.
    pub mediabuild: u32,
    /// Bases (a path or a list, relative to this file): the recipe is its bases deep-merged in
    /// order, then its own keys (docs/fleet.md). Composition removes it from the effective recipe.
    #[serde(default, skip_serializing)]
    pub extends: Option<Extends>,
    /// Entries of the bases' content lists this recipe drops, by id (with `extends`).
    #[serde(default, skip_serializing)]
    pub remove: Option<Remove>,
    /// Unix time used for every timestamp in the outputs (default: `SOURCE_DATE_EPOCH`, else 2000-01-01).
    #[serde(default)]
    pub source_date_epoch: Option<i64>,
    /// Media identity and properties (S3–S6, S11).
    pub media: Media,
    /// Facts of the ConfigMgr site the media are for: what the wizard reads from the site
    /// (`mediabuild site fetch` writes this section from a management point).
    #[serde(default)]
    pub site: Site,
    /// Media security (S7–S10).
    #[serde(default)]
    pub security: Security,
    /// The WinPE boot image (S1, S12).
    pub boot_image: BootImage,
    /// The operating system image (S2, S13).
    pub os_image: OsImage,
    /// Applications to include (S14, S15).
    #[serde(default)]
    pub applications: Vec<Content>,
    /// Packages to include (S14, S15).
    #[serde(default)]
    pub packages: Vec<Content>,
    /// Driver packages to include (S14, S15).
    #[serde(default)]
    pub driver_packages: Vec<Content>,
    /// Task-sequence variables (S16). A value is a string, or `{ env: NAME }` / `{ file: PATH }`.
    #[serde(default)]
    pub variables: BTreeMap<String, VariableValue>,
    /// Prestart command and its files (S17).
    #[serde(default)]
    pub prestart: Option<Prestart>,
    /// BitLocker for Windows To Go (S20).
    #[serde(default)]
    pub bitlocker: Option<Bitlocker>,
    /// WIM compression of the prestaged media (S18).
    #[serde(default)]
    pub compression: Compression,
    /// What to produce (S6 media file, S19, S21).
    pub outputs: Outputs,
}

/// `extends:` — one base or a list of them. (Read by `recipe::compose`, which
/// points at each entry itself; serde never reports on it.)
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Extends {
    One(String),
    Many(Vec<String>),
}

/// `remove:` — ids of the bases' content entries this recipe drops.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    /// Application ids to drop.
    #[serde(default)]
    pub applications: Vec<String>,
    /// Package ids to drop.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Driver package ids to drop.
    #[serde(default)]
    pub driver_packages: Vec<String>,
}

/// `media:` — identity and properties of the media.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// Short name; default stem of output files and default label.
    pub name: String,
    /// Volume label / `MediaLabel.txt` (default: the name). A FAT label keeps its first 11 characters.
    #[serde(default)]
    pub label: Option<String>,
    /// "Created by" (S6), at most 50 characters.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Version (S6), at most 32 characters.
    #[serde(default)]
    pub version: Option<String>,
    /// Comment (S6), at most 127 characters.
    #[serde(default)]
    pub comment: Option<String>,
    /// Older spelling of `site.code` (give one of the two).
    #[serde(default)]
    pub site_code: Option<String>,
    /// Package ID of the task sequence the media deploys (S3, S11).
    pub task_sequence: String,
    /// Deployment ID → `SMSTSPreferredAdvertID` (S4, S16).
    #[serde(default)]
    pub deployment_id: Option<String>,
    /// Allow unattended OS deployment (S4); needs `deployment_id`.
    #[serde(default)]
    pub unattended: bool,
    /// Management points (S5).
    pub management: Management,
    /// The computers the media is for (S12): decides which boot image architecture is acceptable.
    #[serde(default)]
    pub target_firmware: TargetFirmware,
}

/// `site:` — facts of the ConfigMgr site (docs/configmgr.md gives each one's source).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Site code: three letters or digits, e.g. `PS1` (→ `_SMSTSSiteCode`).
    #[serde(default)]
    pub code: Option<String>,
    /// The site's own unknown-computer resources (→ `_SMSTSx64UnknownMachineGUID`,
    /// `_SMSTSx86UnknownMachineGUID`); required with `security.unknown_computers`.
    #[serde(default)]
    pub unknown_computers: Option<UnknownComputers>,
    /// HTTP port of the site systems (default 80; → `_SMSTSHTTPPort`).
    #[serde(default)]
    pub http_port: Option<u16>,
    /// HTTPS port of the site systems (default 443; → `_SMSTSHTTPSPort`).
    #[serde(default)]
    pub https_port: Option<u16>,
    /// Trusted root CA certificates (DER or PEM files; → `_SMSTSRootCACerts`);
    /// required when a management point is `https://`.
    #[serde(default)]
    pub root_ca_certificates: Vec<PathBuf>,
    /// The site signing certificate (DER or PEM file; → `_SMSTSSiteSigningCertificate`).
    #[serde(default)]
    pub signing_certificate: Option<PathBuf>,
    /// The site's trusted root key, hex, as a management point publishes it
    /// (`TRUSTEDROOTKEY`; → `_SMSTSPublicRootKey`).
    #[serde(default)]
    pub trusted_root_key: Option<String>,
    /// IIS SSL state of the site systems, a number (→ `_SMSTSIISSSLState`; format unverified).
    #[serde(default)]
    pub iis_ssl_state: Option<u32>,
    /// Use the first matching PKI client certificate (→ `_SMSTSUseFirstCert`; format unverified).
    #[serde(default)]
    pub use_first_cert: Option<bool>,
}

/// `site.unknown_computers:` — GUIDs of the "x64 Unknown Computer" and "x86 Unknown Computer"
/// resources of the site.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UnknownComputers {
    /// GUID of the x64 Unknown Computer resource.
    pub x64: String,
    /// GUID of the x86 Unknown Computer resource.
    pub x86: String,
}

impl Recipe {
    /// The site code: `site.code`, or its older spelling `media.site_code`.
    pub fn site_code(&self) -> &str {
        self.site
            .code
            .as_deref()
            .or(self.media.site_code.as_deref())
            .unwrap_or("")
    }

    /// The recipe key the site code was given at.
    pub fn site_code_key(&self) -> &'static str {
        if self.site.code.is_none() && self.media.site_code.is_some() {
            "media.site_code"
        } else {
            "site.code"
        }
    }
}

/// `media.management:`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// `dynamic` (a list of MPs in priority order) or `site_based` (one MP of a primary site).
    pub mode: ManagementMode,
    /// Management point URLs (`http://` or `https://`); exactly one for `site_based`.
    pub points: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ManagementMode {
    #[default]
    Dynamic,
    SiteBased,
}

/// Firmware of the computers that will boot the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetFirmware {
    /// 64-bit UEFI (Windows 8 certified PCs): needs an x64 boot image.
    #[default]
    Uefi64,
    /// 32-bit UEFI: needs an x86 boot image.
    Uefi32,
    /// Legacy BIOS: boots x86 and x64.
    Bios,
}

/// `security:` (S7–S10).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Unknown computer support (S7).
    #[serde(default)]
    pub unknown_computers: bool,
    /// Media password (S8), only `{ env: NAME }` or `{ file: PATH }`.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Media certificate (S9): exactly one of `self_signed` or `pki`.
    #[serde(default)]
    pub certificate: Option<Certificate>,
    /// User device affinity (S10): `auto`, `pending` or `none`.
    #[serde(default)]
    pub user_device_affinity: Affinity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    /// Allow user device affinity with auto-approval.
    Auto,
    /// Allow user device affinity pending administrator approval.
    Pending,
    /// Do not allow user device affinity.
    #[default]
    None,
}

/// `security.certificate:`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// A self-signed media certificate (HTTP site systems).
    #[serde(default)]
    pub self_signed: Option<SelfSigned>,
    /// An imported PKI certificate (HTTPS site systems).
    #[serde(default)]
    pub pki: Option<Pki>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SelfSigned {
    /// First day of validity, `YYYY-MM-DD`.
    pub valid_from: String,
    /// Last day of validity, `YYYY-MM-DD`.
    pub valid_until: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Pki {
    /// PKCS#12 (.pfx) file with the certificate and its private key.
    pub file: PathBuf,
    /// The .pfx password, only `{ env: NAME }` or `{ file: PATH }`.
    pub password: SecretRef,
}

/// `boot_image:` (S1, S12).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BootImage {
    /// Boot image package ID (→ `_SMSTSBootMediaPackageID`).
    pub id: String,
    /// Path of the boot WIM (`.wim`), or of a Windows/WinPE ISO holding it.
    pub source: PathBuf,
    /// The boot WIM's path inside an ISO `source` (default `sources/boot.wim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso_path: Option<String>,
    /// Image index inside the WIM (default 1).
    #[serde(default = "one")]
    pub index: u32,
    /// Architecture the image must have: `x64` or `x86`.
    pub arch: Arch,
    /// Certificate authority of the UEFI boot manager on the media: `2011`
    /// (default: `Windows/Boot/EFI`, trusted by all Secure Boot PCs so far)
    /// or `2023` (`Windows/Boot/EFI_EX` and `Fonts_EX`, signed by the
    /// "Windows UEFI CA 2023", for PCs that revoked the 2011 CA — KB5025885).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uefi_ca: Option<u16>,
}

impl BootImage {
    /// The media take the boot manager signed by the 2023 UEFI CA.
    pub fn ca2023(&self) -> bool {
        self.uefi_ca == Some(2023)
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    #[default]
    X64,
    X86,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X64 => "x64",
            Arch::X86 => "x86",
        }
    }
}

/// `os_image:` (S2, S13).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OsImage {
    /// Operating system image package ID; its content goes to `SMS/PKG/<id>/`.
    pub id: String,
    /// Path of the install image: a `.wim`, an `.esd` (converted to a
    /// `.wim`), the first part of a split WIM (`install.swm`), or a Windows
    /// ISO holding one of them.
    pub source: PathBuf,
    /// The image's path inside an ISO `source` (default: the first of
    /// `sources/install.wim`, `sources/install.esd`, `sources/install.swm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso_path: Option<String>,
    /// Image index (1-based). Give `index` or `image`, not both.
    #[serde(default)]
    pub index: Option<u32>,
    /// Image name, e.g. `Windows 8 Enterprise`. Give `index` or `image`, not both.
    #[serde(default)]
    pub image: Option<String>,
}

/// One application, package or driver package (S14, S15).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// Package ID: site code + 5 hex digits, e.g. `PS100101`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Source folder (or a single file).
    pub source: PathBuf,
}

/// A variable's value: a literal string, or a secret reference.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum VariableValue {
    Literal(String),
    Secret(SecretRef),
}

// By hand, so that the schema accepts what the deserializer below accepts:
// numbers and booleans become strings, besides strings and secret references.
impl JsonSchema for VariableValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "VariableValue".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A value (a string; numbers and booleans are written as strings, booleans as `True`/`False`), or a secret reference.",
            "anyOf": [
                { "type": ["string", "integer", "number", "boolean"] },
                g.subschema_for::<SecretRef>()
            ]
        })
    }
}

/// `prestart:` (S17).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Prestart {
    /// Command line run before the task sequence starts.
    pub command: String,
    /// Package ID for the prestart files (required with `files`).
    #[serde(default)]
    pub id: Option<String>,
    /// Folder of files the command needs.
    #[serde(default)]
    pub files: Option<PathBuf>,
}

/// `bitlocker:` (S20).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Bitlocker {
    /// `ad` (escrow the recovery key in Active Directory) or `none`.
    pub recovery: Recovery,
    /// Wait for encryption to finish (`/wait:TRUE`).
    #[serde(default)]
    pub wait: bool,
    /// The Windows To Go BitLocker passphrase (→ `OSDBitLockerPIN`), only by reference.
    pub passphrase: SecretRef,
    /// ID of the package (in `packages:`) holding `i386/osdbitlocker_wtg.exe`.
    pub package: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    #[default]
    Ad,
    None,
}

/// `outputs:`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// Output folder (default `out`). Every output path is inside it.
    #[serde(default = "default_out_dir")]
    pub dir: PathBuf,
    /// The prestaged media file (S6), relative to `dir`.
    #[serde(default)]
    pub wim: Option<PathBuf>,
    /// A raw disk image (S21).
    #[serde(default)]
    pub disk: Option<DiskOutput>,
    /// A Windows To Go Creator package source folder (S19).
    #[serde(default)]
    pub creator_package: Option<CreatorPackage>,
}

fn default_out_dir() -> PathBuf {
    PathBuf::from("out")
}

/// `outputs.disk:`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DiskOutput {
    /// Image file, relative to `outputs.dir`.
    pub path: PathBuf,
    /// Disk size, e.g. `32GiB`, `16000MB`.
    pub size: String,
    /// Partition table: `mbr` (default) or `gpt`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Partition layout: `single` (one FAT32 partition holding everything).
    #[serde(default)]
    pub layout: DiskLayoutKind,
}

impl DiskOutput {
    /// `size` in bytes: the one place the recipe's disk size is parsed
    /// (validation reports a size that is not one; the plan carries the
    /// number).
    pub fn size_bytes(&self) -> Option<u64> {
        crate::units::parse_size(&self.size)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    #[default]
    Mbr,
    Gpt,
}

// The layouts a recipe may name; each selects a list of partitions of the
// disk engine in one place, `formats::disk::select_layout`. (Plain comments:
// a doc comment would change the committed recipe schema.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiskLayoutKind {
    // One FAT32 partition filling the disk, holding the whole media tree.
    #[default]
    Single,
}

/// `outputs.creator_package:`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreatorPackage {
    /// Package source folder, relative to `outputs.dir`.
    pub path: PathBuf,
    /// The admin-supplied `WTGCreator.exe`.
    pub creator: PathBuf,
    /// Add `/enableBootRedirect` to the command line.
    #[serde(default)]
    pub enable_boot_redirect: bool,
    /// Program maximum run time in minutes (default 120).
    #[serde(default)]
    pub max_run_time_minutes: Option<u32>,
}

impl<'de> Deserialize<'de> for VariableValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = VariableValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, or { env: NAME } / { file: PATH }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VariableValue, E> {
                Ok(VariableValue::Literal(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<VariableValue, E> {
                Ok(VariableValue::Literal(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<VariableValue, E> {
                Ok(VariableValue::Literal(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<VariableValue, E> {
                Ok(VariableValue::Literal(v.to_string()))
            }
            // Task-sequence variables are strings; YAML booleans keep ConfigMgr's spelling.
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<VariableValue, E> {
                Ok(VariableValue::Literal(
                    if v { "True" } else { "False" }.into(),
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<VariableValue, A::Error> {
                super::secret::secret_ref_from_map(map).map(VariableValue::Secret)
            }
        }
        d.deserialize_any(V)
    }
}
