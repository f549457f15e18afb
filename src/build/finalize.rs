//! Finalize: the only step that touches output paths. The manifest is written
//! to a temporary file first, then the artefact and the manifest are renamed
//! into place, then SHA256SUMS is rewritten (also via rename).

use super::{BuildError, BuiltOutput, Ctx, Resolved, TempPath};
use crate::ids::hex;
use crate::plan::{OutputKind, PlannedOutput};
use crate::render::ArtefactMember;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `NAME.manifest.json`: every input and every member of an artefact. Never a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub manifest_format: u32,
    pub artefact: String,
    pub kind: OutputKind,
    pub size: u64,
    pub sha256: String,
    pub media: String,
    pub label: String,
    pub recipe: String,
    /// The bases the recipe extends, in merge order (path relative to the
    /// recipe's folder, sha256 of the text); absent for a recipe without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipe_bases: Vec<crate::plan::BaseFile>,
    pub recipe_digest: String,
    pub epoch: i64,
    pub tools: BTreeMap<String, String>,
    pub compression: String,
    pub inputs: Vec<ManifestInput>,
    /// Secret references by recipe key; the value is only ever "set".
    pub secrets: BTreeMap<String, String>,
    /// Names of the media variables (values are in the encrypted Variables.dat).
    pub variables: Vec<String>,
    /// Variable name → fingerprint of its value (`sha256:…`, or `pbkdf2:…` for
    /// a secret; `media::variables::fingerprint`). Never a value.
    #[serde(default)]
    pub fingerprints: BTreeMap<String, String>,
    /// Media properties from the recipe (identity, security, management), no secret.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub members: Vec<ManifestMember>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestInput {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Display name of a content package (application, package, driver package).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Architecture and edition of an image input (its XML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    pub size: u64,
    /// File digest for a WIM; for a folder, SHA-256 over `path\0size\0sha256\n` of its files.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestMember {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub group: String,
}

fn rel(base: &Path, p: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

use crate::recipe::manifest_path;

#[allow(clippy::too_many_arguments)]
pub(super) fn finalize(
    ctx: &Ctx,
    out: &PlannedOutput,
    tmp: TempPath,
    members: &[Resolved],
    hashes: &[[u8; 32]],
    listed: &[ArtefactMember],
    inputs: &BTreeMap<PathBuf, [u8; 32]>,
    publish: &mut Publish,
) -> Result<BuiltOutput, BuildError> {
    let plan = ctx.plan;
    // A folder artefact (the creator package) is hashed as a tree of files.
    let folder = if tmp.path().is_dir() {
        Some(folder_files(ctx, tmp.path())?)
    } else {
        None
    };
    let (size, digest) = match &folder {
        Some(files) => crate::cache::hashes::tree_digest(files),
        None => (
            std::fs::metadata(tmp.path())
                .map_err(|e| BuildError::io("read", tmp.path(), e))?
                .len(),
            ctx.artefact_sha256(tmp.path())?,
        ),
    };

    let mut ins = Vec::new();
    for (role, img) in [
        ("boot_image", &plan.boot_image),
        ("os_image", &plan.os_image),
    ] {
        ins.push(ManifestInput {
            role: role.into(),
            id: Some(img.id.clone()),
            path: img
                .origin
                .clone()
                .unwrap_or_else(|| rel(&plan.dir, &img.source)),
            index: Some(img.index),
            image: Some(img.name.clone()),
            name: None,
            arch: Some(img.arch.clone()),
            edition: img.edition.clone(),
            files: None,
            size: std::fs::metadata(&img.source).map(|m| m.len()).unwrap_or(0),
            sha256: inputs.get(&img.source).map(|h| hex(h)).unwrap_or_default(),
        });
    }
    let folders = plan
        .recorded
        .content
        .iter()
        .map(|c| (c.role, c.id.as_str(), c.name.as_deref(), c.source.as_path()));
    for (role, id, name, src) in folders {
        let prefix = format!("{}/{id}/", crate::configmgr::paths::PKG_DIR);
        let mut h = sha2::Sha256::new();
        let (mut n, mut bytes) = (0u64, 0u64);
        for (m, d) in members.iter().zip(hashes) {
            if let Some(relp) = m.path.strip_prefix(&prefix) {
                use sha2::Digest;
                h.update(format!("{relp}\0{}\0{}\n", m.size, hex(d)).as_bytes());
                n += 1;
                bytes += m.size;
            }
        }
        use sha2::Digest;
        ins.push(ManifestInput {
            role: role.into(),
            id: Some(id.into()),
            path: src.display().to_string(),
            index: None,
            image: None,
            name: name.map(str::to_string),
            arch: None,
            edition: None,
            files: Some(n),
            size: bytes,
            sha256: hex(&h.finalize()),
        });
    }
    let secrets = plan
        .recorded
        .secret_keys
        .iter()
        .map(|k| (k.clone(), "set".to_string()))
        .collect();
    let manifest = Manifest {
        manifest_format: 1,
        artefact: out
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        kind: out.kind,
        size,
        sha256: hex(&digest),
        media: plan.media_name.clone(),
        label: plan.label.clone(),
        recipe: plan
            .recipe_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        recipe_bases: plan.bases.clone(),
        recipe_digest: plan.recipe_digest.clone(),
        epoch: plan.epoch,
        tools: BTreeMap::from([
            (
                "mediabuild".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            ("wimlib".to_string(), crate::wim::version()),
        ]),
        compression: plan.compression.as_str().into(),
        inputs: ins,
        secrets,
        variables: plan
            .media
            .variables
            .iter()
            .map(|v| v.name.clone())
            .collect(),
        fingerprints: ctx.fingerprints.clone(),
        properties: plan.recorded.properties.clone(),
        members: match folder {
            Some(files) => {
                let group: BTreeMap<&str, &str> = listed
                    .iter()
                    .map(|m| (m.path.as_str(), m.group.as_str()))
                    .collect();
                files
                    .into_iter()
                    .map(|(path, size, h)| ManifestMember {
                        group: group.get(path.as_str()).unwrap_or(&"package").to_string(),
                        path,
                        size,
                        sha256: hex(&h),
                    })
                    .collect()
            }
            None => {
                let by_path: BTreeMap<&str, &[u8; 32]> = members
                    .iter()
                    .map(|m| m.path.as_str())
                    .zip(hashes)
                    .collect();
                listed
                    .iter()
                    .map(|m| ManifestMember {
                        path: m.path.clone(),
                        size: m.size,
                        sha256: m
                            .sha256
                            .as_ref()
                            .or(by_path.get(m.path.as_str()).copied())
                            .map(|h| hex(h))
                            .unwrap_or_default(),
                        group: m.group.clone(),
                    })
                    .collect()
            }
        },
    };
    let mpath = manifest_path(&out.path);
    let mtmp = TempPath::new(super::partial_path(&mpath));
    let json = serde_json::to_string_pretty(&manifest).map_err(BuildError::Manifest)? + "\n";
    std::fs::write(mtmp.path(), json).map_err(|e| BuildError::io("write", mtmp.path(), e))?;
    publish.push(tmp, out.path.clone());
    publish.push(mtmp, mpath.clone());
    Ok(BuiltOutput {
        kind: out.kind,
        path: out.path.clone(),
        size,
        sha256: hex(&digest),
        manifest: mpath,
    })
}

/// Every file of a folder artefact: (relative path, size, sha256), sorted.
fn folder_files(ctx: &Ctx, dir: &Path) -> Result<Vec<(String, u64, [u8; 32])>, BuildError> {
    let walked = crate::fsutil::walk(dir).map_err(|e| BuildError::io("read", dir, e))?;
    let mut out = Vec::with_capacity(walked.len());
    for w in walked {
        let h = ctx.artefact_sha256(&w.abs)?;
        out.push((w.rel, w.size, h));
    }
    Ok(out)
}

/// Previous artefacts replaced by this build, deleted together at the end:
/// freeing gigabytes is slow on some file systems (online discard), and
/// several deletions at once overlap their waits.
#[derive(Default)]
pub(super) struct Trash(Vec<PathBuf>);

impl Trash {
    /// Deletes everything collected, one thread per path.
    pub fn empty(&mut self) {
        let paths = std::mem::take(&mut self.0);
        std::thread::scope(|s| {
            for p in &paths {
                s.spawn(move || {
                    crate::fsutil::remove_any(p);
                });
            }
        });
    }
}

impl Drop for Trash {
    fn drop(&mut self) {
        self.empty();
    }
}

/// Renames `from` to `to`. The previous artefact at `to` (and any left
/// aside by a build that died here) goes to `trash`. A file replaces the old
/// one atomically: the old one is first hard-linked aside, so the rename
/// does not have to free its blocks. A folder cannot replace an existing
/// path in one rename: the old one is moved aside first, put back if the
/// second rename fails.
fn rename_into_place(from: &Path, to: &Path, trash: &mut Trash) -> Result<(), BuildError> {
    let fail = |e| {
        crate::fsutil::remove_any(from);
        BuildError::io("rename into place", to, e)
    };
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.old-");
    let aside = to.with_file_name(format!("{prefix}{}", std::process::id()));
    if aside.symlink_metadata().is_ok() {
        crate::fsutil::remove_any(&aside);
    }
    if let Some(dir) = to.parent().and_then(|d| std::fs::read_dir(d).ok()) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                trash.0.push(e.path());
            }
        }
    }
    let old = to.symlink_metadata().ok();
    if !from.is_dir() || old.is_none() {
        if old.is_some_and(|m| m.is_file()) && std::fs::hard_link(to, &aside).is_ok() {
            trash.0.push(aside.clone());
        }
        return std::fs::rename(from, to).map_err(fail);
    }
    std::fs::rename(to, &aside).map_err(fail)?;
    if let Err(e) = std::fs::rename(from, to) {
        let _ = std::fs::rename(&aside, to);
        return Err(fail(e));
    }
    trash.0.push(aside);
    Ok(())
}

/// The new `out_dir/SHA256SUMS` (our artefacts' lines replaced, others kept,
/// sorted), written aside and queued in `publish`.
pub(super) fn update_sums(
    out_dir: &Path,
    outputs: &[BuiltOutput],
    publish: &mut Publish,
) -> Result<(), BuildError> {
    let path = out_dir.join("SHA256SUMS");
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    if let Ok(old) = std::fs::read_to_string(&path) {
        for l in old.lines() {
            if let Some((h, n)) = l.split_once("  ") {
                lines.insert(n.to_string(), h.to_string());
            }
        }
    }
    for o in outputs {
        let name = rel(out_dir, &o.path);
        let manifest = std::fs::read(publish.staged(&o.manifest)).ok();
        if o.kind == crate::plan::OutputKind::CreatorPackage {
            // `sha256sum -c` checks files: one line per file of a folder artefact.
            lines.retain(|n, _| n != &name && !n.starts_with(&format!("{name}/")));
            let m: Option<Manifest> = manifest
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok());
            for f in m.map(|m| m.members).unwrap_or_default() {
                lines.insert(format!("{name}/{}", f.path), f.sha256);
            }
        } else {
            lines.insert(name, o.sha256.clone());
        }
        if let Some(b) = manifest {
            use sha2::Digest;
            lines.insert(rel(out_dir, &o.manifest), hex(&sha2::Sha256::digest(b)));
        }
    }
    let text: String = lines.iter().map(|(n, h)| format!("{h}  {n}\n")).collect();
    let tmp = TempPath::new(super::partial_path(&path));
    std::fs::write(tmp.path(), text).map_err(|e| BuildError::io("write", tmp.path(), e))?;
    publish.push(tmp, path);
    Ok(())
}

/// The renames that publish a build: every artefact, its manifest and
/// SHA256SUMS, each written aside first. They are listed in a journal
/// (`.mediabuild-publish-PID.journal` in the output folder, synced) before
/// the first rename and the journal is removed after the last, so a build
/// killed in between leaves a journal that the next build of that folder
/// completes ([`complete_interrupted`]): the folder ends with the whole new
/// set, never a new artefact beside an old manifest or SHA256SUMS.
#[derive(Default)]
pub(super) struct Publish {
    renames: Vec<(TempPath, PathBuf)>,
}

/// The journal's first line.
const JOURNAL_HEAD: &str = "mediabuild publish journal 1";

impl Publish {
    pub fn push(&mut self, from: TempPath, to: PathBuf) {
        self.renames.push((from, to));
    }

    /// Where the file that will be at `to` is now.
    pub fn staged<'a>(&'a self, to: &'a Path) -> &'a Path {
        self.renames
            .iter()
            .find(|(_, t)| t == to)
            .map(|(f, _)| f.path())
            .unwrap_or(to)
    }

    /// Writes the journal, renames everything into place, removes the journal.
    pub fn commit(mut self, out_dir: &Path, trash: &mut Trash) -> Result<(), BuildError> {
        let journal = out_dir.join(format!(
            ".mediabuild-publish-{}.journal",
            std::process::id()
        ));
        let mut text = format!("{JOURNAL_HEAD}\n");
        for (from, to) in &self.renames {
            // Absolute: the next build may run from another folder.
            let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            text.push_str(&format!(
                "{}\t{}\n",
                abs(from.path()).display(),
                abs(to).display()
            ));
        }
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&journal)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::File::open(out_dir)?.sync_all()
        };
        write().map_err(|e| BuildError::io("write", &journal, e))?;
        for (from, to) in self.renames.drain(..) {
            let from = from.keep();
            rename_into_place(&from, &to, trash)?;
        }
        std::fs::remove_file(&journal).map_err(|e| BuildError::io("remove", &journal, e))
    }
}

/// The output folder's publish lock: an exclusive `flock` on the folder
/// itself (no file is added to it), held while a build completes an
/// interrupted publish and while it reads `SHA256SUMS` and publishes. Two
/// builds into one folder (two recipes sharing `out/`) then publish one after
/// the other; without it the second could write `SHA256SUMS` from a copy read
/// before the first published, and drop the first's lines. Released on drop
/// (and by the kernel when the process dies).
pub(super) struct FolderLock(#[allow(dead_code)] std::fs::File);

impl FolderLock {
    #[allow(unsafe_code)]
    pub(super) fn acquire(out_dir: &Path) -> Result<FolderLock, BuildError> {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::File::open(out_dir)
            .map_err(|e| BuildError::io("open output folder", out_dir, e))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(FolderLock(f));
            }
            // A file system without locks (some network ones): go on
            // unlocked, as before; only concurrent publishes lose the order.
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Ok(FolderLock(f));
            }
        }
    }
}

/// Completes the publishes that builds killed midway left in `out_dir`
/// (journals of PIDs that no longer run): every rename not done yet is done,
/// in order. Returns how many journals were completed.
pub(super) fn complete_interrupted(out_dir: &Path, trash: &mut Trash) -> usize {
    let Ok(rd) = std::fs::read_dir(out_dir) else {
        return 0;
    };
    let mut done = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".mediabuild-publish-")
            .and_then(|r| r.strip_suffix(".journal"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let mut lines = text.lines();
        if lines.next() != Some(JOURNAL_HEAD) || !text.ends_with('\n') {
            // Cut short while written: no rename was made yet.
            let _ = std::fs::remove_file(e.path());
            for l in lines {
                if let Some((from, _)) = l.split_once('\t') {
                    crate::fsutil::remove_any(Path::new(from));
                }
            }
            continue;
        }
        for l in lines {
            if let Some((from, to)) = l.split_once('\t') {
                let (from, to) = (Path::new(from), Path::new(to));
                if from.symlink_metadata().is_ok() {
                    let _ = rename_into_place(from, to, trash);
                }
                // What that build set aside of the previous set is garbage
                // now that the new set is whole.
                let name = to.file_name().map(|n| n.to_string_lossy().into_owned());
                if let (Some(name), Some(dir)) = (name, to.parent()) {
                    let aside = dir.join(format!(".{name}.old-{pid}"));
                    if aside.symlink_metadata().is_ok() {
                        trash.0.push(aside);
                    }
                }
            }
        }
        let _ = std::fs::remove_file(e.path());
        done += 1;
    }
    done
}
