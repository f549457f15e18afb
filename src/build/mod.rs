//! Execute a plan: resolve secrets → materialize members → hash → render each
//! output to a temporary file beside its target → verify → rename into place
//! → manifest and SHA256SUMS. Any failure (or Ctrl-C) removes the staging
//! folder and partial files; a previous artefact at the target is untouched.

mod finalize;
pub(crate) mod hash;
pub mod materialize;

pub(crate) use crate::exec::{partial_path, Ctx, TempPath};
pub use crate::exec::{BuildError, Resolved, WimWriter};
pub use finalize::{Manifest, ManifestInput, ManifestMember};

use crate::media::variables::MediaVar;
use crate::media::VarValue;
use crate::plan::{OutputKind, Plan, PlannedOutput};
use crate::progress::{Cancel, Event, Reporter};
use crate::recipe::secret::Secret;
use crate::render;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Worker threads; 0 = one per core.
    pub jobs: usize,
    /// Which WIM writer renders `outputs.wim`.
    pub writer: WimWriter,
    /// Build even if the media password breaks the policy (reported as a warning).
    pub allow_weak_password: bool,
    /// The build cache (`src/cache/`); None = build everything from scratch.
    pub cache: Option<CacheSettings>,
}

/// Where the build cache is and how big it may grow (the cache chooses its
/// store from them).
pub use crate::cache::CacheSettings;

/// One artefact produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltOutput {
    pub kind: OutputKind,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub manifest: PathBuf,
}

/// What a build did, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub outputs: Vec<BuiltOutput>,
    pub phases: Vec<(String, Duration)>,
    pub warnings: Vec<String>,
    /// Cache traffic of this build (None without a cache).
    pub cache: Option<String>,
}

/// Test hook: fail on purpose at a named point, to prove nothing is left behind.
fn fault(point: &str) -> Result<(), BuildError> {
    match std::env::var("MEDIABUILD_FAULT_INJECT") {
        Ok(p) if p == point => Err(BuildError::Fault(point.into())),
        _ => Ok(()),
    }
}

/// Tests only: `MEDIABUILD_TEST_PAUSE=POINT:MS` sleeps at `POINT` (to hold
/// a build inside its publish while another one runs).
fn pause(point: &str) {
    if let Ok(v) = std::env::var("MEDIABUILD_TEST_PAUSE") {
        if let Some(ms) = v.strip_prefix(point).and_then(|r| r.strip_prefix(':')) {
            let ms: u64 = ms.parse().unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
        }
    }
}

/// A media variable with its value, or the media PFX still to compute.
enum PendingVar {
    Ready(MediaVar),
    Pfx(String),
}

/// Reads every secret the build needs (fast: environment and files), so that
/// a missing one fails the build before anything is written.
fn resolve_secrets(plan: &Plan) -> Result<(Vec<PendingVar>, Option<Secret>), BuildError> {
    let password = match &plan.password_ref {
        Some(sref) => Some(
            sref.resolve(&plan.dir)
                .map_err(|source| BuildError::Secret {
                    key: "security.password".into(),
                    source,
                })?,
        ),
        None => None,
    };
    let mut vars = Vec::new();
    for v in &plan.media.variables {
        let (value, secret) = match &v.value {
            VarValue::Literal(val) => (val.clone(), false),
            VarValue::MediaPfx => {
                vars.push(PendingVar::Pfx(v.name.clone()));
                continue;
            }
            VarValue::Secret { key, reference } => (
                reference
                    .resolve(&plan.dir)
                    .map_err(|source| BuildError::Secret {
                        key: key.clone(),
                        source,
                    })?
                    .expose()
                    .to_string(),
                true,
            ),
        };
        vars.push(PendingVar::Ready(MediaVar {
            name: v.name.clone(),
            value,
            secret,
        }));
    }
    Ok((vars, password))
}

/// The variables' values: the media PFX is the slow one (a KDF and an RSA
/// key generation).
fn finish_vars(
    plan: &Plan,
    pending: Vec<PendingVar>,
    password: Option<&Secret>,
    cache: Option<&crate::cache::Cache>,
) -> Result<Vec<MediaVar>, BuildError> {
    let keys = |seed: &[u8; 32]| crate::cache::keys::rsa_key(cache, seed);
    let media_guid = plan
        .media
        .variables
        .iter()
        .find(|v| v.name == crate::configmgr::var::MEDIA_GUID)
        .and_then(|v| v.literal());
    let pfx = crate::security::PfxInputs {
        certificate: plan.certificate.as_ref(),
        media_name: &plan.media_name,
        site_code: &plan.site_code,
        dir: &plan.dir,
        digest: &plan.digest,
        media_guid,
    };
    pending
        .into_iter()
        .map(|p| match p {
            PendingVar::Ready(v) => Ok(v),
            PendingVar::Pfx(name) => Ok(MediaVar {
                name,
                value: crate::security::media_pfx_hex(&pfx, password, &keys)?,
                secret: true,
            }),
        })
        .collect()
}

fn resolve_vars(plan: &Plan) -> Result<(Vec<MediaVar>, Option<Secret>), BuildError> {
    let (pending, password) = resolve_secrets(plan)?;
    Ok((
        finish_vars(plan, pending, password.as_ref(), None)?,
        password,
    ))
}

/// Every variable's fingerprint (secret ones cost a slow KDF each: in parallel).
fn fingerprints(
    plan: &Plan,
    vars: &[MediaVar],
    password: Option<&Secret>,
) -> std::collections::BTreeMap<String, String> {
    use rayon::prelude::*;
    let site = plan.site_code.as_str();
    vars.par_iter()
        .map(|v| {
            let f = crate::media::variables::fingerprint(
                v,
                password.map(Secret::expose),
                site,
                &plan.media_name,
            );
            (v.name.clone(), f)
        })
        .collect()
}

/// Builds every output of `plan`.
pub fn build(
    plan: &Plan,
    opts: &BuildOptions,
    rep: &dyn Reporter,
    cancel: &Cancel,
) -> Result<BuildReport, BuildError> {
    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.jobs
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(BuildError::Threads)?;
    let t = Instant::now();
    let cache = match &opts.cache {
        Some(c) => Some(std::sync::Arc::new(
            crate::cache::Cache::open_with(c)
                .map_err(BuildError::Cache)?
                .with_scope(&plan.dir),
        )),
        None => None,
    };
    let (pending, password) = resolve_secrets(plan)?;
    let weak = crate::security::enforce_password(password.as_ref(), opts.allow_weak_password)?;
    // The slow key work (the media PFX, the secret variables' fingerprints:
    // KDFs and an RSA key, not interruptible) runs beside the preparation
    // and the rendering; Variables.dat waits for the values, the manifest
    // for the fingerprints. `--jobs 1` does it first, in line.
    let slow = |send: &dyn Fn(Result<Vec<MediaVar>, BuildError>)| match finish_vars(
        plan,
        pending,
        password.as_ref(),
        cache.as_deref(),
    ) {
        Ok(vars) => {
            send(Ok(vars.clone()));
            pool.install(|| fingerprints(plan, &vars, password.as_ref()))
        }
        Err(e) => {
            send(Err(e));
            Default::default()
        }
    };
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let keys = if jobs <= 1 {
            let fp = slow(&|v| {
                let _ = tx.send(v);
            });
            drop(tx);
            KeyWork::Done(fp)
        } else {
            KeyWork::Running(s.spawn(move || {
                slow(&|v| {
                    let _ = tx.send(v);
                })
            }))
        };
        let vars = move || {
            rx.recv()
                .unwrap_or(Err(BuildError::Stopped("the key work stopped")))
        };
        build_with(
            plan,
            opts,
            rep,
            cancel,
            &pool,
            jobs,
            t,
            password.clone(),
            weak,
            vars,
            keys,
            cache.clone(),
        )
    })
}

/// The fingerprints of the variables: computed, or being computed.
enum KeyWork<'s> {
    Done(std::collections::BTreeMap<String, String>),
    Running(std::thread::ScopedJoinHandle<'s, std::collections::BTreeMap<String, String>>),
}

impl KeyWork<'_> {
    fn wait(self) -> Result<std::collections::BTreeMap<String, String>, BuildError> {
        match self {
            KeyWork::Done(f) => Ok(f),
            KeyWork::Running(h) => h
                .join()
                .map_err(|_| BuildError::Stopped("the key work panicked")),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_with(
    plan: &Plan,
    opts: &BuildOptions,
    rep: &dyn Reporter,
    cancel: &Cancel,
    pool: &rayon::ThreadPool,
    jobs: usize,
    t: Instant,
    password: Option<Secret>,
    weak: Option<String>,
    vars: impl FnOnce() -> Result<Vec<MediaVar>, BuildError>,
    keys: KeyWork,
    cache: Option<std::sync::Arc<crate::cache::Cache>>,
) -> Result<BuildReport, BuildError> {
    let mut phases = Vec::new();
    if cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    std::fs::create_dir_all(&plan.out_dir)
        .map_err(|e| BuildError::io("create output folder", &plan.out_dir, e))?;
    // A publish a killed build left half done is completed first (its
    // files are `.partial-PID` ones the sweep would remove).
    let completed = {
        let _lock = finalize::FolderLock::acquire(&plan.out_dir)?;
        let mut trash = finalize::Trash::default();
        finalize::complete_interrupted(&plan.out_dir, &mut trash)
    };
    let debris = sweep_debris(plan);
    let staging = TempPath::new(plan.out_dir.join(format!(
        ".mediabuild-staging-{}-{}",
        plan.media_name,
        std::process::id()
    )));
    std::fs::create_dir_all(staging.path())
        .map_err(|e| BuildError::io("create", staging.path(), e))?;
    let mut ctx = Ctx {
        plan,
        staging: staging.path().to_path_buf(),
        jobs,
        rep,
        cancel,
        fingerprints: Default::default(),
        password,
        writer: opts.writer,
        cache,
        artefact_sha: Default::default(),
        restamps: Default::default(),
        pending_exports: Default::default(),
        background: Default::default(),
    };
    let mut vars = Some(vars);
    let mut values = Vec::new();
    let members = materialize::materialize(&ctx, &mut || {
        values = vars.take().map(|f| f()).unwrap_or_else(|| Ok(Vec::new()))?;
        Ok(values.clone())
    })?;
    phases.push(("prepare".to_string(), t.elapsed()));
    fault("after-prepare")?;

    // Render every output to a temporary file beside its target. A writer
    // that hashes as it reads (ours) saves the separate hashing pass.
    let rendered = render_all(&ctx, pool, &members)?;
    let mut hashes: Option<Vec<[u8; 32]>> = None;
    for r in &rendered {
        phases.push((format!("render {}", r.name), r.elapsed));
        if hashes.is_none() {
            hashes = render::member_hashes(&members, &r.listed);
        }
    }
    let t = Instant::now();
    let hashes = match hashes {
        Some(h) => h,
        None => pool.install(|| hash::hash_members(&ctx, &members))?,
    };
    let inputs = pool.install(|| hash::hash_inputs(&ctx))?;
    phases.push(("hash".to_string(), t.elapsed()));
    fault("before-finalize")?;
    if let Some(f) = vars.take() {
        values = f()?;
    }
    ctx.fingerprints = keys.wait()?;

    // Finalize: only now do the targets change.
    let t = Instant::now();
    let mut outputs = Vec::new();
    let mut trash = finalize::Trash::default();
    let mut publish = finalize::Publish::default();
    // From reading SHA256SUMS to the last rename, one build at a time per folder.
    let lock = finalize::FolderLock::acquire(&plan.out_dir)?;
    for r in rendered {
        outputs.push(finalize::finalize(
            &ctx,
            r.out,
            r.tmp,
            &members,
            &hashes,
            &r.listed,
            &inputs,
            &mut publish,
        )?);
    }
    finalize::update_sums(&plan.out_dir, &outputs, &mut publish)?;
    pause("publish");
    publish.commit(&plan.out_dir, &mut trash)?;
    drop(lock);
    trash.empty();
    phases.push(("finalize".to_string(), t.elapsed()));
    ctx.complete_exports(None);
    ctx.join_background();
    drop(staging);
    if let Some(c) = &ctx.cache {
        let done = std::mem::take(&mut *ctx.restamps.lock().unwrap_or_else(|e| e.into_inner()));
        for r in done {
            r.apply(c);
        }
        c.flush();
    }
    let mut warnings: Vec<String> = weak.into_iter().collect();
    if completed > 0 {
        warnings.push(format!(
            "completed {completed} publish(es) that an interrupted build left half done in the output folder"
        ));
    }
    if let Some(d) = debris {
        warnings.push(d);
    }
    if plan.password_ref.is_none() && values.iter().any(|v| v.secret) {
        warnings.push("secret variables are in media without a password (Variables.dat uses the public default key)".into());
    }
    for w in &warnings {
        rep.event(Event::Warning(w.clone()));
    }
    Ok(BuildReport {
        outputs,
        phases,
        warnings,
        cache: ctx.cache.as_ref().map(|c| c.summary()),
    })
}

/// One output rendered to its temporary path and verified.
struct Rendered<'p> {
    out: &'p PlannedOutput,
    tmp: TempPath,
    listed: Vec<render::ArtefactMember>,
    name: &'static str,
    elapsed: Duration,
}

/// Renders and verifies the outputs of `lane` in order.
fn render_lane<'p>(
    ctx: &Ctx<'p>,
    pool: &rayon::ThreadPool,
    members: &[Resolved],
    lane: &[&'p PlannedOutput],
) -> Result<Vec<Rendered<'p>>, BuildError> {
    let mut done = Vec::new();
    for &out in lane {
        ctx.check_cancel()?;
        let t = Instant::now();
        let r = render::for_output(out.kind)?;
        let tmp = TempPath::new(partial_path(&out.path));
        if let Some(p) = out.path.parent() {
            std::fs::create_dir_all(p).map_err(|e| BuildError::io("create output folder", p, e))?;
        }
        let listed = pool.install(|| r.render(ctx, members, out, tmp.path()))?;
        fault("after-render")?;
        r.verify(ctx, out, tmp.path())?;
        let listed =
            listed.unwrap_or_else(|| members.iter().map(render::ArtefactMember::same).collect());
        done.push(Rendered {
            out,
            tmp,
            listed,
            name: r.name(),
            elapsed: t.elapsed(),
        });
    }
    Ok(done)
}

/// Renders every output, in plan order in the result. The disk image does
/// not depend on the other outputs (the creator package reuses the .wim, so
/// those two stay in order): with more than one job it is written on a
/// thread of its own while the WIM is written, which overlaps the one's
/// compression with the other's copying and hashing. `--jobs 1` renders
/// one output after the other. A lane that fails stops the other one.
///
/// `--writer wimlib` also renders one output after the other: wimlib
/// captures each file's access time from the staging tree, which the build
/// has just set to the epoch, and the disk lane reading the same files at
/// that moment would move their access times (relatime updates an atime
/// older than a day on the next read) — a WIM that differed from a clean
/// build's in a few time stamps, once in a few runs under load.
fn render_all<'p>(
    ctx: &Ctx<'p>,
    pool: &rayon::ThreadPool,
    members: &[Resolved],
) -> Result<Vec<Rendered<'p>>, BuildError> {
    let outs: Vec<&'p PlannedOutput> = ctx.plan.outputs.iter().collect();
    let (disk, rest): (Vec<_>, Vec<_>) = outs.iter().partition(|o| o.kind == OutputKind::Disk);
    let sequential =
        ctx.jobs <= 1 || disk.is_empty() || rest.is_empty() || ctx.writer == WimWriter::Wimlib;
    let mut done = if sequential {
        render_lane(ctx, pool, members, &outs)?
    } else {
        let lane = |l: &[&'p PlannedOutput]| {
            let r = render_lane(ctx, pool, members, l);
            if r.is_err() {
                ctx.cancel.cancel();
            }
            r
        };
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| lane(&disk));
            let a = lane(&rest);
            let b = other
                .join()
                .unwrap_or_else(|_| Err(BuildError::Stopped("the disk image writer panicked")));
            (a, b)
        });
        // The error that stopped the other lane, not the cancellation it caused.
        match (a, b) {
            (Ok(mut a), Ok(b)) => {
                a.extend(b);
                a
            }
            (Err(BuildError::Cancelled), Err(e)) | (Err(e), _) | (_, Err(e)) => return Err(e),
        }
    };
    let order = |o: &PlannedOutput| outs.iter().position(|x| std::ptr::eq(*x, o));
    done.sort_by_key(|r| order(r.out));
    Ok(done)
}

/// Materializes the whole media tree of `plan` as a folder at `dest` (every
/// member a real file, times at the build epoch). Used by the benchmark.
pub fn stage_tree(plan: &Plan, dest: &Path) -> Result<u64, BuildError> {
    let staging = TempPath::new(dest.with_extension("staging"));
    std::fs::create_dir_all(staging.path())
        .map_err(|e| BuildError::io("create", staging.path(), e))?;
    let cancel = Cancel::new();
    let (vars, password) = resolve_vars(plan)?;
    let ctx = Ctx {
        plan,
        staging: staging.path().to_path_buf(),
        jobs: 1,
        rep: &crate::progress::Silent,
        cancel: &cancel,
        password,
        writer: WimWriter::Wimlib,
        cache: None,
        artefact_sha: Default::default(),
        restamps: Default::default(),
        pending_exports: Default::default(),
        background: Default::default(),
        fingerprints: Default::default(),
    };
    let members = materialize::materialize(&ctx, &mut || Ok(vars.clone()))?;
    let tree = render::wim::complete_tree(&ctx, &members)?;
    std::fs::rename(&tree, dest).map_err(|e| BuildError::io("rename", dest, e))?;
    Ok(members.iter().map(|m| m.size).sum())
}

/// The PID in a name ending in `-PID`, if the rest matches `prefix`.
fn debris_pid(name: &str) -> Option<u32> {
    let rest = if let Some(r) = name.strip_prefix(".mediabuild-staging-") {
        r
    } else if name.starts_with('.') && name.contains(".partial-") {
        name.rsplit_once(".partial-")?.1
    } else {
        return None;
    };
    rest.rsplit('-').next()?.parse().ok()
}

/// Removes what builds killed outright (SIGKILL, power loss) left in the
/// output folders: staging folders `.mediabuild-staging-NAME-PID` and
/// `.FILE.partial-PID` files, only ours (by name) and only when that PID is
/// no longer running. Artefacts moved aside (`.NAME.old-PID`) are finalize's
/// to restore, never removed here. Returns the warning to report, if any.
fn sweep_debris(plan: &Plan) -> Option<String> {
    let mut dirs: Vec<PathBuf> = vec![plan.out_dir.clone()];
    for o in &plan.outputs {
        if let Some(p) = o.path.parent() {
            if !dirs.contains(&p.to_path_buf()) {
                dirs.push(p.to_path_buf());
            }
        }
    }
    let me = std::process::id();
    let (mut n, mut bytes) = (0usize, 0u64);
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = debris_pid(&name) else {
                continue;
            };
            if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let path = e.path();
            bytes += size_of_tree(&path);
            crate::fsutil::remove_any(&path);
            n += 1;
        }
    }
    (n > 0).then(|| {
        format!(
            "removed {n} leftover(s) of interrupted builds ({}) from the output folder",
            crate::units::human(bytes)
        )
    })
}

fn size_of_tree(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| size_of_tree(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// What the admin must still do on the site server (S22: out of scope here),
/// each step with the recipe's IDs (decided when planning).
pub fn site_server_todo(plan: &Plan) -> Vec<String> {
    plan.recorded.todo.clone()
}
