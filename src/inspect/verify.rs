//! `verify`: is this artefact intact, and is it what its recipe declares?
//!
//! Checks, in order: the whole file against the manifest (size, sha256); the
//! structure (wimlib's full verification of a WIM; the partition table and
//! our FAT consistency walk of a disk image); every member against the
//! manifest (present, same size, same sha256 — read back and hashed); and,
//! with a recipe, the plan against the media (same members, content files and
//! generated files with the same bytes, same variables and values, same image
//! inputs). A problem is a negative answer (exit 1); an error is "could not
//! check" (exit 2).

use super::facts::{inspect, Inspection};
use super::source::{hash_reader, sniff, Artefact, Format, Listed};
use super::{InspectError, Options};
use crate::build::Manifest;
use crate::ids::hex;
use crate::media::Source;
use crate::plan::Plan;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub artefact: String,
    pub kind: String,
    pub manifest: Option<String>,
    /// What was checked (one line each), in order.
    pub checked: Vec<String>,
    /// Every mismatch; empty when all holds.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn render(&self) -> String {
        let mut s = format!("verify {} ({})\n", self.artefact, self.kind);
        for c in &self.checked {
            s.push_str(&format!("  checked: {c}\n"));
        }
        if self.ok() {
            s.push_str("ok: everything holds\n");
        } else {
            s.push_str(&format!("{} problem(s):\n", self.problems.len()));
            for p in &self.problems {
                s.push_str(&format!("  - {p}\n"));
            }
        }
        s
    }
}

/// Why verification could not even start on the recipe.
#[derive(Debug, thiserror::Error)]
#[error("the recipe {path} has errors:\n{diags}")]
pub struct RecipeError {
    pub path: PathBuf,
    pub diags: String,
}

/// What to verify against.
#[derive(Debug, Default)]
pub struct VerifyOptions {
    pub read: Options,
    pub recipe: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error(transparent)]
    Recipe(#[from] RecipeError),
}

/// Verifies the artefact at `path`.
pub fn verify(path: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let format = sniff(path)?;
    if format == Format::Manifest {
        return Err(InspectError::NotAnArtefact {
            path: path.to_path_buf(),
        }
        .into());
    }
    // Read the recipe first: a broken recipe means we cannot check (exit 2).
    let plan = match &opts.recipe {
        Some(r) => Some(load_plan(r)?),
        None => None,
    };
    let manifest = super::find_manifest(path, opts.read.manifest.as_deref())?;
    let mut rep = VerifyReport {
        artefact: path.display().to_string(),
        kind: if format == Format::Wim { "wim" } else { "disk" }.into(),
        manifest: manifest.as_ref().map(|(p, _)| p.display().to_string()),
        checked: Vec::new(),
        problems: Vec::new(),
    };
    // A build killed while it renamed its outputs into place leaves a
    // journal; until the next build completes it, artefact and manifest may
    // be of different builds.
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(rd) = std::fs::read_dir(folder) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".mediabuild-publish-") && n.ends_with(".journal") {
                rep.problems.push(format!(
                    "a build was interrupted while publishing into this folder ({n}): build the recipe again to complete it"
                ));
            }
        }
    }
    let m = manifest.as_ref().map(|(_, m)| m);
    if let Some(m) = m {
        whole_file(path, m, &mut rep)?;
    }
    let art = match Artefact::open(path) {
        Ok(a) => a,
        Err(InspectError::Damaged { what, .. }) => {
            rep.problems.push(what);
            return Ok(rep);
        }
        Err(e) => return Err(e.into()),
    };
    structure(&art, &mut rep);
    let listed = match art.list() {
        Ok(l) => l,
        Err(e) => {
            rep.problems.push(format!("cannot list the files: {e}"));
            return Ok(rep);
        }
    };
    let hashes = hash_members(&art, &listed, &mut rep)?;
    if let Some(m) = m {
        against_manifest(m, &listed, &hashes, &mut rep);
    } else {
        rep.checked.push(
            "no manifest beside the artefact (NAME.manifest.json) nor --manifest: member digests not compared".into(),
        );
    }
    if let Some(plan) = &plan {
        // A Variables.dat that does not decrypt on intact media is "could not
        // check" (exit 2, a wrong password); on damaged media it is one more problem.
        let facts = match inspect(path, &opts.read) {
            Ok(f) => Some(f),
            Err(e) if !rep.problems.is_empty() => {
                rep.problems.push(e.to_string());
                None
            }
            Err(e) => return Err(e.into()),
        };
        against_recipe(plan, m, facts.as_ref(), &listed, &hashes, &mut rep);
    }
    Ok(rep)
}

fn load_plan(recipe: &Path) -> Result<Plan, RecipeError> {
    let c = crate::plan::check(recipe, crate::validate::Mode::Check);
    match c.plan.as_ref().filter(|_| !c.has_errors()) {
        Some(p) => Ok(p.clone()),
        None => Err(RecipeError {
            path: recipe.to_path_buf(),
            diags: c.render_diags(),
        }),
    }
}

fn whole_file(path: &Path, m: &Manifest, rep: &mut VerifyReport) -> Result<(), InspectError> {
    let len = std::fs::metadata(path)
        .map_err(|e| InspectError::io("read", path, e))?
        .len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if m.artefact != name {
        // A renamed copy is fine; the checks below say whether it matches.
        rep.checked.push(format!(
            "the manifest describes {:?}; checking {name:?} against it",
            m.artefact
        ));
    }
    if len != m.size {
        let how = if len < m.size {
            "truncated"
        } else {
            "longer than built"
        };
        rep.problems.push(format!(
            "the artefact is {len} bytes, the manifest says {}: it is {how}",
            m.size
        ));
        return Ok(());
    }
    let h = crate::build::hash::sha256_file(path, &|_| {}, &|| false).map_err(|e| {
        InspectError::Damaged {
            path: path.to_path_buf(),
            what: e.to_string(),
        }
    })?;
    if hex(&h) != m.sha256 {
        rep.problems
            .push("the artefact's sha256 differs from the manifest: its bytes changed".into());
    }
    rep.checked
        .push(format!("size and sha256 of the whole file ({len} bytes)"));
    Ok(())
}

fn structure(art: &Artefact, rep: &mut VerifyReport) {
    match art {
        Artefact::Wim(w) => {
            if w.info.image_count != 1 {
                rep.problems.push(format!(
                    "the WIM has {} images; prestaged media have one",
                    w.info.image_count
                ));
            }
            // wimlib's full verification: metadata and every blob's SHA-1.
            let mut again = match crate::wim::Wim::open(w.wim.path()) {
                Ok(x) => x,
                Err(e) => {
                    rep.problems.push(format!("wimlib cannot reopen it: {e}"));
                    return;
                }
            };
            match again.verify() {
                Ok(()) => rep
                    .checked
                    .push("WIM integrity (wimlib: metadata and every blob's SHA-1)".into()),
                Err(e) => rep.problems.push(format!("WIM integrity: {e}")),
            }
        }
        Artefact::Disk(d) => {
            rep.problems.extend(d.problems.iter().cloned());
            rep.checked.push(format!(
                "partition table ({}, {} partition(s))",
                d.table.scheme,
                d.table.partitions.len()
            ));
            // Every partition's volume (each problem names its partition when
            // there are several).
            let fat = d.fat_check();
            let what =
                "FAT consistency (FAT copies, every directory and cluster chain, lost clusters)";
            rep.checked.push(match d.table.partitions.len() {
                1 => what.into(),
                n => format!("{what} of each of the {n} volumes"),
            });
            rep.problems
                .extend(fat.into_iter().map(|p| format!("FAT32: {p}")));
        }
    }
}

type Hashes = BTreeMap<String, Result<super::source::Digests, String>>;

fn hash_members(
    art: &Artefact,
    listed: &[Listed],
    rep: &mut VerifyReport,
) -> Result<Hashes, InspectError> {
    let mut out = BTreeMap::new();
    art.hash_all(listed, &mut |l, r| {
        out.insert(l.path.clone(), r);
    })?;
    for (p, r) in &out {
        if let Err(e) = r {
            rep.problems.push(format!("{p}: cannot read: {e}"));
        }
    }
    rep.checked.push(format!(
        "read back and hashed every file ({} files)",
        listed.len()
    ));
    Ok(out)
}

fn sha(h: &Hashes, path: &str) -> Option<String> {
    h.get(path)
        .and_then(|r| r.as_ref().ok())
        .map(|d| hex(&d.sha256))
}

fn against_manifest(m: &Manifest, listed: &[Listed], h: &Hashes, rep: &mut VerifyReport) {
    // FAT is case-insensitive: match paths by their lower case there.
    let key = |p: &str| p.to_ascii_lowercase();
    let on_media: BTreeMap<String, &Listed> = listed.iter().map(|l| (key(&l.path), l)).collect();
    let in_manifest: BTreeMap<String, &str> = m
        .members
        .iter()
        .map(|x| (key(&x.path), x.path.as_str()))
        .collect();
    for x in &m.members {
        let Some(l) = on_media.get(&key(&x.path)) else {
            rep.problems.push(format!(
                "{}: in the manifest, missing from the media",
                x.path
            ));
            continue;
        };
        if l.size != x.size {
            rep.problems.push(format!(
                "{}: {} bytes on the media, {} in the manifest",
                x.path, l.size, x.size
            ));
        } else if let Some(s) = sha(h, &l.path) {
            if s != x.sha256 {
                rep.problems.push(format!(
                    "{}: sha256 differs from the manifest (content changed)",
                    x.path
                ));
            }
        }
    }
    for l in listed {
        if !in_manifest.contains_key(&key(&l.path)) {
            rep.problems
                .push(format!("{}: on the media, not in the manifest", l.path));
        }
    }
    rep.checked.push(format!(
        "every member against the manifest ({} members: presence, size, sha256)",
        m.members.len()
    ));
}

/// Planned member paths as an artefact of this kind holds them: an exported
/// image may be `.swm` parts on a disk image.
fn planned_matches(planned: &str, actual: &str) -> bool {
    if planned.eq_ignore_ascii_case(actual) {
        return true;
    }
    let Some(stem) = planned.strip_suffix(".wim") else {
        return false;
    };
    actual
        .strip_prefix(stem)
        .and_then(|r| r.strip_suffix(".swm"))
        .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

/// The listed files by lower-case path, to find a planned member without
/// scanning the whole list for each.
struct ListedIndex(BTreeMap<String, Vec<usize>>);

impl ListedIndex {
    fn new(listed: &[Listed]) -> ListedIndex {
        let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, l) in listed.iter().enumerate() {
            m.entry(l.path.to_ascii_lowercase()).or_default().push(i);
        }
        ListedIndex(m)
    }

    /// Indices (ascending) of the listed files `planned` stands for, as
    /// [`planned_matches`] says: the same path in any case, and for a `.wim`,
    /// the `.swm` parts, whose paths share its stem.
    fn matches(&self, planned: &str, listed: &[Listed]) -> Vec<usize> {
        let lower = planned.to_ascii_lowercase();
        let mut found: Vec<usize> = self.0.get(&lower).cloned().unwrap_or_default();
        if let Some(stem) = planned.strip_suffix(".wim") {
            let stem = stem.to_ascii_lowercase();
            let parts = self
                .0
                .range(stem.clone()..)
                .take_while(|(k, _)| k.starts_with(&stem))
                .flat_map(|(_, v)| v.iter().copied())
                .filter(|&i| planned_matches(planned, &listed[i].path));
            found.extend(parts);
            found.sort_unstable();
            found.dedup();
        }
        found
    }
}

/// SHA-256 of a source file of the recipe (`None` when it cannot be read:
/// not compared, as before), read through `buf`.
fn sha256_of(path: &Path, buf: &mut [u8]) -> Option<[u8; 32]> {
    let mut f = std::fs::File::open(path).ok()?;
    // No member name: a plain SHA-256, without the WIM content digest.
    hash_reader(&mut f, "", buf).ok().map(|d| d.sha256)
}

fn against_recipe(
    plan: &Plan,
    m: Option<&Manifest>,
    facts: Option<&Inspection>,
    listed: &[Listed],
    h: &Hashes,
    rep: &mut VerifyReport,
) {
    let mut seen = vec![false; listed.len()];
    let by_lower = ListedIndex::new(listed);
    // Each source file once, however many members share it.
    let mut sources: BTreeMap<&Path, Option<[u8; 32]>> = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    for pm in &plan.media.members {
        let found = by_lower.matches(&pm.path, listed);
        if found.is_empty() {
            rep.problems.push(format!(
                "{}: the recipe declares it, the media lacks it",
                pm.path
            ));
            continue;
        }
        for &i in &found {
            seen[i] = true;
        }
        let actual = &listed[found[0]];
        let want = match &pm.source {
            Source::File { path } => *sources
                .entry(path.as_path())
                .or_insert_with(|| sha256_of(path, &mut buf)),
            Source::Generated { bytes, .. } => {
                use sha2::Digest;
                Some(sha2::Sha256::digest(bytes).into())
            }
            _ => None,
        };
        if let (Some(w), Some(got)) = (want, sha(h, &actual.path)) {
            if hex(&w) != got {
                rep.problems.push(format!(
                    "{}: differs from what the recipe declares ({})",
                    actual.path,
                    match &pm.source {
                        Source::File { path } => format!("source file {}", path.display()),
                        _ => "generated from the recipe".into(),
                    }
                ));
            }
        }
    }
    for (l, s) in listed.iter().zip(&seen) {
        if !s {
            rep.problems.push(format!(
                "{}: on the media, not declared by the recipe",
                l.path
            ));
        }
    }
    // Image inputs: the same source file (by digest) and index as built.
    if let Some(m) = m {
        for (role, img) in [
            ("boot_image", &plan.boot_image),
            ("os_image", &plan.os_image),
        ] {
            let Some(i) = m.inputs.iter().find(|i| i.role == role) else {
                continue;
            };
            let now = crate::build::hash::sha256_file(&img.source, &|_| {}, &|| false)
                .map(|d| hex(&d))
                .unwrap_or_default();
            if i.sha256 != now || i.index != Some(img.index) || i.id.as_deref() != Some(&img.id) {
                rep.problems.push(format!(
                    "{role}: the media was built from {} index {} ({}), the recipe declares {} index {} ({})",
                    i.path,
                    i.index.unwrap_or(0),
                    i.id.as_deref().unwrap_or("?"),
                    img.shown(),
                    img.index,
                    img.id
                ));
            }
        }
    }
    if let Some(f) = facts {
        for (what, got, want) in [
            ("boot image", &f.boot_image, &plan.boot_image),
            ("OS image", &f.os_image, &plan.os_image),
        ] {
            if let Some(g) = got {
                if g.name.as_deref() != Some(want.name.as_str()) {
                    rep.problems.push(format!(
                        "{what}: the media holds {:?}, the recipe declares {:?}",
                        g.name.as_deref().unwrap_or("unknown"),
                        want.name
                    ));
                }
            }
        }
        variables(plan, m, f, rep);
    }
    rep.checked.push(format!(
        "the recipe's plan against the media ({} members, variables, images)",
        plan.media.members.len()
    ));
}

fn variables(plan: &Plan, m: Option<&Manifest>, f: &Inspection, rep: &mut VerifyReport) {
    let want: Vec<&str> = plan
        .media
        .variables
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    let got: Vec<&str> = f.variables.list.iter().map(|v| v.name.as_str()).collect();
    let (want_set, got_set): (BTreeSet<&str>, BTreeSet<&str>) = (
        want.iter().copied().collect(),
        got.iter().copied().collect(),
    );
    for w in &want {
        if !got_set.contains(w) {
            rep.problems.push(format!(
                "variable {w}: the recipe declares it, the media lacks it"
            ));
        }
    }
    for g in &got {
        if !want_set.contains(g) {
            rep.problems.push(format!(
                "variable {g}: on the media, not declared by the recipe"
            ));
        }
    }
    // Non-secret values by fingerprint (the manifest's, or one computed from
    // the decrypted value); secret values are not compared here.
    let mut on_media: BTreeMap<&str, &super::VarInfo> = BTreeMap::new();
    for x in &f.variables.list {
        on_media.entry(x.name.as_str()).or_insert(x);
    }
    for v in &plan.media.variables {
        let Some(value) = v.literal() else { continue };
        let expected = crate::media::variables::fingerprint(
            &crate::media::variables::MediaVar {
                name: v.name.clone(),
                value: value.to_string(),
                secret: false,
            },
            None,
            "",
            "",
        );
        let recorded = on_media
            .get(v.name.as_str())
            .and_then(|x| x.fingerprint.clone())
            .or_else(|| m.and_then(|m| m.fingerprints.get(&v.name).cloned()));
        if let Some(r) = recorded {
            if r != expected {
                rep.problems.push(format!(
                    "variable {}: its value differs from what the recipe declares",
                    v.name
                ));
            }
        }
    }
}
