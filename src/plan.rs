//! The plan: everything a build will do, computed up front as plain data —
//! what goes where, from which source, how big, and which outputs.
//! `mediabuild plan` prints it; the build executes it.

mod recorded;
pub use recorded::{PlannedContent, Recorded};

use crate::diag::Diagnostic;
use crate::ids;
use crate::media::{self, MediaTree};
use crate::recipe::locate::Locations;
use crate::recipe::{load, Compression, Recipe};
use crate::units;
use crate::validate::{self, ImageFacts, Mode};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One image input, as planned.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRef {
    pub id: String,
    pub source: PathBuf,
    pub index: u32,
    pub name: String,
    pub arch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edition: Option<String>,
    pub compression: Compression,
    /// Parts 2… of a split source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PathBuf>,
    /// Solid (an ESD): converted to the recipe's compression on export.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub solid: bool,
    /// `ISO!path/inside` for an image out of an ISO (`source` is then the
    /// staged copy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl ImageRef {
    /// The source as a person names it: `Win11.iso!sources/install.esd`
    /// for an image out of an ISO, else its path.
    pub fn shown(&self) -> String {
        self.origin
            .clone()
            .unwrap_or_else(|| self.source.display().to_string())
    }

    fn new(id: &str, f: &ImageFacts) -> ImageRef {
        ImageRef {
            id: id.into(),
            source: f.path.clone(),
            index: f.index,
            name: f.name.clone(),
            arch: f.arch.clone(),
            edition: f.edition.clone(),
            compression: f.compression,
            parts: f.parts.clone(),
            solid: f.solid,
            origin: f.origin.clone(),
        }
    }
}

pub use crate::formats::{OutputKind, OutputSpec, PlannedOutput};

/// One base of a composed recipe, as the lockfile and the manifests record it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BaseFile {
    /// Relative to the recipe's folder (`/` separators).
    pub path: String,
    pub sha256: String,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub recipe_file: PathBuf,
    /// The bases the recipe extends (`extends:`), in merge order: each
    /// one's path relative to the recipe's folder and the sha256 of its text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<BaseFile>,
    #[serde(skip)]
    pub dir: PathBuf,
    /// What the recipe says beyond the tree and the outputs, decided once.
    #[serde(skip)]
    pub recorded: Recorded,
    /// The site code (`site.code`), which secret fingerprints are salted with.
    #[serde(skip)]
    pub site_code: String,
    /// Where the media password is read at build time (`security.password`).
    #[serde(skip)]
    pub password_ref: Option<crate::recipe::secret::SecretRef>,
    /// `security.certificate`: how the media certificate is made.
    #[serde(skip)]
    pub certificate: Option<crate::recipe::Certificate>,
    pub recipe_digest: String,
    #[serde(skip)]
    pub digest: [u8; 32],
    pub epoch: i64,
    pub media_name: String,
    /// `media.comment`: the WIM image's description.
    #[serde(skip)]
    pub comment: Option<String>,
    pub label: String,
    pub password: bool,
    pub compression: Compression,
    pub boot_image: ImageRef,
    pub os_image: ImageRef,
    pub out_dir: PathBuf,
    pub outputs: Vec<PlannedOutput>,
    pub total_size: u64,
    pub media: MediaTree,
}

/// The result of reading, validating and planning a recipe.
pub struct Checked {
    pub file: PathBuf,
    pub source: String,
    pub diags: Vec<Diagnostic>,
    pub plan: Option<Plan>,
    /// The recipe and its bases, when it extends any (`extends:`).
    pub composed: Option<crate::recipe::compose::Composed>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.is_error())
    }
    /// The diagnostics, rendered: errors first, at most
    /// [`crate::diag::MAX_SHOWN`], then how many were left out.
    pub fn render_diags(&self) -> String {
        let name = self.file.display().to_string();
        let mut order: Vec<&Diagnostic> = self.diags.iter().filter(|d| d.is_error()).collect();
        order.extend(self.diags.iter().filter(|d| !d.is_error()));
        let max = crate::diag::MAX_SHOWN;
        let mut out = order
            .iter()
            .take(max)
            .map(|d| match self.chain_file(d) {
                Some(f) => d.render(&f.path.display().to_string(), &f.text),
                None => d.render(&name, &self.source),
            })
            .collect::<Vec<_>>()
            .join("\n");
        if order.len() > max {
            out.push_str(&format!(
                "\n… and {} more diagnostic(s) not shown (`check --json` lists them all)\n",
                order.len() - max
            ));
        }
        out
    }
}

impl Checked {
    /// The base a diagnostic is in (None: the recipe itself).
    fn chain_file(&self, d: &Diagnostic) -> Option<&crate::recipe::compose::ChainFile> {
        let file = d.pos?.file as usize;
        self.composed.as_ref()?.files.get(file).filter(|_| file > 0)
    }

    /// Names the base each diagnostic about a base is in (`file` in JSON).
    fn attribute(&mut self) {
        for i in 0..self.diags.len() {
            if let Some(f) = self.chain_file(&self.diags[i]) {
                let name = f.path.display().to_string();
                self.diags[i].file = Some(name);
            }
        }
    }
}

/// Keys that hold secret references, whatever the recipe parsed to.
const SECRET_KEYS: &[&str] = &[
    "security.password",
    "security.certificate.pki.password",
    "bitlocker.passphrase",
];

/// Reads, validates and plans `file`. Never writes anything.
pub fn check(file: &Path, mode: Mode) -> Checked {
    check_with(file, mode, validate::Options::default())
}

/// [`check`] with relaxed rules (`--allow-weak-password`).
pub fn check_with(file: &Path, mode: Mode, opts: validate::Options) -> Checked {
    let mut out = Checked {
        file: file.to_path_buf(),
        source: String::new(),
        diags: Vec::new(),
        plan: None,
        composed: None,
    };
    check_into(&mut out, file, mode, opts);
    out.attribute();
    out
}

fn check_into(out: &mut Checked, file: &Path, mode: Mode, opts: validate::Options) {
    out.source = match crate::fsutil::read_small_text(file, crate::fsutil::SMALL_FILE_MAX) {
        Ok(s) => s,
        Err(e) => {
            out.diags.push(
                Diagnostic::error(
                    "",
                    format!("cannot read the recipe {}: {e}", file.display()),
                )
                .fix(if e.kind() == std::io::ErrorKind::InvalidData {
                    "save the recipe as UTF-8 (UTF-16 with a byte-order mark is read too)"
                } else {
                    "give the path of a recipe YAML file"
                }),
            );
            return;
        }
    };
    let locs = Locations::index(&out.source);
    let (value, mut diags) = load::read_value(&out.source, &locs);
    let Some(value) = value else {
        out.diags = diags;
        return;
    };
    // `extends:`: the effective recipe of the chain, positions in each file.
    let (value, locs) = if crate::recipe::compose::wants(&value) {
        let (c, more) = crate::recipe::compose::compose(file, &out.source, value, locs);
        diags.extend(more);
        let (v, l) = (c.value.clone(), c.locs.clone());
        out.composed = Some(c);
        (v, l)
    } else {
        (value, locs)
    };
    let (parsed, more) = load::from_value(&value, &locs);
    diags.extend(more);
    let complete = parsed.complete();
    let failed = parsed.failed;
    let recipe = parsed.recipe;
    let dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let v = validate::validate_with(&recipe, &dir, file, &locs, mode, opts);
    // Rules about a section that did not parse would only repeat its error.
    let depends = |key: &str, sec: &str| {
        key == sec
            || key.starts_with(&format!("{sec}."))
            || key.starts_with(&format!("{sec}["))
            || (key == "bitlocker.package" && sec == "packages")
            || (key == "boot_image.arch" && sec == "media")
            || (key == "outputs" && sec == "outputs")
            || (key.starts_with("site.unknown_computers") && sec == "security")
    };
    diags.extend(
        v.diags
            .iter()
            .filter(|d| !failed.iter().any(|sec| depends(&d.key, sec)))
            .cloned(),
    );
    // Under a secret key, no diagnostic shows the source line or a value:
    // a literal written there by mistake must not be echoed (README).
    let secret_keys = validate::secret_keys(&recipe);
    for d in &mut diags {
        let under = |k: &str| d.key == k || d.key.starts_with(&format!("{k}."));
        let secret_var = d
            .key
            .strip_prefix("variables.")
            .is_some_and(|n| validate::is_secret_name(n.split('.').next().unwrap_or(n)));
        if secret_var
            || SECRET_KEYS.iter().any(|k| under(k))
            || secret_keys.iter().any(|k| under(k))
        {
            d.redact_source = true;
            d.value = None;
        }
    }
    if !complete || diags.iter().any(|d| d.is_error()) {
        out.diags = diags;
        return;
    }
    let digest = crate::recipe::recipe_digest(&recipe);
    match media::build_tree(&recipe, &v.facts, &dir, &digest) {
        Ok(tree) => {
            let (Some(boot), Some(os)) = (&v.facts.boot, &v.facts.os) else {
                out.diags = diags;
                return;
            };
            let mut plan = make_plan(file, &dir, &recipe, digest, tree, boot, os);
            plan.bases = bases(out.composed.as_ref(), &dir);
            diags.extend(long_paths(&plan));
            diags.extend(beyond_path_max(&plan));
            let vol = crate::formats::disk::Volume {
                label: &plan.label,
                digest: &plan.digest,
                epoch: plan.epoch,
            };
            let checks = crate::formats::checks(&plan.outputs, &plan.media, &vol, plan.total_size);
            diags.extend(checks.into_iter().map(|d| {
                let pos = locs.value(&d.key);
                d.at(pos)
            }));
            out.plan = Some(plan);
        }
        Err(errs) => diags.extend(errs),
    }
    out.diags = diags;
}

/// The bases of a composed recipe in merge order, for the lockfile and the
/// manifests (paths relative to the recipe's folder).
fn bases(c: Option<&crate::recipe::compose::Composed>, dir: &Path) -> Vec<BaseFile> {
    let Some(c) = c else {
        return Vec::new();
    };
    c.order
        .iter()
        .filter(|&&i| i > 0)
        .map(|&i| {
            let f = &c.files[i];
            let rel = f.path.strip_prefix(dir).unwrap_or(&f.path);
            let rel = if dir == Path::new(".") {
                f.path.strip_prefix("./").unwrap_or(&f.path)
            } else {
                rel
            };
            BaseFile {
                path: rel.to_string_lossy().replace('\\', "/"),
                sha256: f.sha256.clone(),
            }
        })
        .collect()
}

/// Longest media path that stays within Windows' MAX_PATH (260 with the
/// drive, `X:\`, and the closing NUL): tools in WinPE without long-path
/// support cannot open longer ones.
const MAX_MEDIA_PATH: usize = 256;

/// A warning naming the media paths over [`MAX_MEDIA_PATH`] characters.
fn long_paths(plan: &Plan) -> Option<Diagnostic> {
    let long: Vec<&str> = plan
        .media
        .members
        .iter()
        .map(|m| m.path.as_str())
        .filter(|p| p.encode_utf16().count() > MAX_MEDIA_PATH)
        .collect();
    let first = shorten(long.first()?);
    Some(
        Diagnostic::warning(
            "",
            format!(
                "{} media path(s) longer than {MAX_MEDIA_PATH} characters (260 with the drive letter): WinPE tools without long-path support cannot open them; the first: {first}",
                long.len()
            ),
        )
        .fix("shorten the folder names in the content source"),
    )
}

/// A long path for a message: its start and its end.
fn shorten(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    if chars.len() <= 120 {
        return p.to_string();
    }
    let head: String = chars[..60].iter().collect();
    let tail: String = chars[chars.len() - 60..].iter().collect();
    format!("{head}…{tail} ({} characters)", chars.len())
}

/// Linux's limit on a path (PATH_MAX, 4096 bytes with the closing NUL).
const PATH_MAX: usize = 4095;

/// An error for a media path that, under the output folder's staging folder
/// (where the build extracts what it wrote to check it), would pass
/// [`PATH_MAX`]: the build would fail at its last step.
fn beyond_path_max(plan: &Plan) -> Option<Diagnostic> {
    let out = std::fs::canonicalize(&plan.out_dir)
        .or_else(|_| std::path::absolute(&plan.out_dir))
        .unwrap_or_else(|_| plan.out_dir.clone());
    // `OUT/.mediabuild-staging-NAME-PID/verify-fresh/`, with a PID of 7 digits.
    let prefix = out.as_os_str().len()
        + "/.mediabuild-staging-".len()
        + plan.media_name.len()
        + "-4194304/verify-fresh/".len();
    let long: Vec<&media::Member> = plan
        .media
        .members
        .iter()
        .filter(|m| prefix + m.path.len() > PATH_MAX)
        .collect();
    let first = long.first()?;
    Some(
        Diagnostic::error(
            "",
            format!(
                "{} media path(s) too long to build: {} is {} bytes, and under the output folder's staging folder ({prefix} bytes) it passes Linux's limit of {PATH_MAX} bytes",
                long.len(),
                shorten(&first.path),
                first.path.len()
            ),
        )
        .value(&first.group)
        .fix(format!(
            "shorten the folder names in the source of {} (Windows needs long-path support past 260 characters anyway), or use an output folder with a shorter path",
            first.group
        )),
    )
}

fn make_plan(
    file: &Path,
    dir: &Path,
    recipe: &Recipe,
    digest: [u8; 32],
    tree: MediaTree,
    boot: &ImageFacts,
    os: &ImageFacts,
) -> Plan {
    let out_dir = dir.join(&recipe.outputs.dir);
    let outputs = crate::formats::plan_outputs(&recipe.outputs, &out_dir);
    Plan {
        recipe_file: file.to_path_buf(),
        bases: Vec::new(),
        dir: dir.to_path_buf(),
        recipe_digest: ids::hex(&digest),
        digest,
        epoch: crate::recipe::epoch(recipe),
        media_name: recipe.media.name.clone(),
        comment: recipe.media.comment.clone(),
        label: recipe
            .media
            .label
            .clone()
            .unwrap_or_else(|| recipe.media.name.clone()),
        password: recipe.security.password.is_some(),
        compression: recipe.compression,
        boot_image: ImageRef::new(&recipe.boot_image.id, boot),
        os_image: ImageRef::new(&recipe.os_image.id, os),
        out_dir,
        outputs,
        total_size: tree.total_size(),
        media: tree,
        recorded: Recorded::of(recipe),
        site_code: recipe.site_code().to_string(),
        password_ref: recipe.security.password.clone(),
        certificate: recipe.security.certificate.clone(),
    }
}

impl Plan {
    /// The plan as text for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "media {} (label {:?}), recipe digest {}",
            self.media_name,
            self.label,
            &self.recipe_digest[..16]
        );
        let _ = writeln!(
            s,
            "boot image {}: {} index {} {:?} ({}, {})",
            self.boot_image.id,
            self.boot_image.shown(),
            self.boot_image.index,
            self.boot_image.name,
            self.boot_image.arch,
            self.boot_image.compression.as_str()
        );
        let _ = writeln!(
            s,
            "OS image {}: {} index {} {:?} ({})",
            self.os_image.id,
            self.os_image.shown(),
            self.os_image.index,
            self.os_image.name,
            self.os_image.compression.as_str()
        );
        let _ = writeln!(
            s,
            "\nmembers ({} files, {}):",
            self.media.members.len(),
            units::human(self.total_size)
        );
        for m in &self.media.members {
            let src = match &m.source {
                media::Source::File { path } => path.display().to_string(),
                media::Source::WimFile { path, .. } => format!("boot image: {path}"),
                media::Source::WimExport { wim, index, .. } => {
                    format!("export {} #{index}", wim.display())
                }
                media::Source::Generated { what, .. } => format!("generated {what}"),
                media::Source::MediaVariables => format!(
                    "generated, {} variables, encrypted",
                    self.media.variables.len()
                ),
            };
            let est = if m.estimated { "~" } else { "" };
            let _ = writeln!(
                s,
                "  {:<52} {:>11}  ← {src}",
                m.path,
                format!("{est}{}", units::human(m.size))
            );
        }
        if !self.media.links.is_empty() {
            let _ = writeln!(
                s,
                "\nsymbolic links followed ({}; each stays inside its source folder):",
                self.media.links.len()
            );
            for (at, target) in &self.media.links {
                let _ = writeln!(s, "  {at} → {}", target.display());
            }
        }
        let _ = writeln!(s, "\nvariables:");
        for v in &self.media.variables {
            match v.literal() {
                Some(val) => {
                    let _ = writeln!(s, "  {} = {val}", v.name);
                }
                None => {
                    let _ = writeln!(
                        s,
                        "  {} = <secret from {}>",
                        v.name,
                        v.source_key().unwrap_or("?")
                    );
                }
            }
        }
        let _ = writeln!(s, "\noutputs (compression {}):", self.compression.as_str());
        for o in &self.outputs {
            let extra = match (o.disk_size(), o.scheme()) {
                (Some(n), Some(sch)) => format!(" ({}, {:?})", units::human(n), sch),
                _ => String::new(),
            };
            let _ = writeln!(s, "  {:?}: {}{extra}", o.kind, o.path.display());
        }
        s
    }
}
