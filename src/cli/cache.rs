//! The cache and lockfile commands: `cache stats|clean`, `lock`, the
//! `--locked` check before a build and the cache column of `plan`.

use super::BuildArgs;
use anyhow::{Context, Result};
use mediabuild::cache::{self, status::MemberStatus, Cache, CacheSettings};
use mediabuild::plan::Plan;
use mediabuild::units;
use std::fmt::Write as _;
use std::path::Path;

/// The cache to use, or None with `--no-cache`.
pub fn settings(args: &BuildArgs) -> Result<Option<CacheSettings>> {
    if args.no_cache {
        return Ok(None);
    }
    let dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => cache::default_dir().context(cache::CacheError::NoDir)?,
    };
    let max_size = match &args.cache_max_size {
        Some(s) => units::parse_size(s)
            .with_context(|| format!("--cache-max-size {s:?}: write e.g. 20GiB or 500MiB"))?,
        None => cache::DEFAULT_MAX_SIZE,
    };
    Ok(Some(CacheSettings { dir, max_size }))
}

fn open(args: &BuildArgs) -> Result<Option<Cache>> {
    match settings(args)? {
        Some(s) => Ok(Some(Cache::open_with(&s)?)),
        None => Ok(None),
    }
}

/// The cache for work on `plan`: its recipe folder's input hash index.
fn open_for(plan: &Plan, args: &BuildArgs) -> Result<Option<Cache>> {
    Ok(open(args)?.map(|c| c.with_scope(&plan.dir)))
}

pub fn cmd_cache(action: &str, args: &BuildArgs) -> Result<i32> {
    let Some(c) = open(args)? else {
        anyhow::bail!("`mediabuild cache {action}` needs a cache: drop --no-cache");
    };
    match action {
        "clean" => {
            let (n, bytes) = c.clean()?;
            println!(
                "removed {n} entries ({}) from {}",
                units::human(bytes),
                c.location()
            );
        }
        _ => {
            let s = c.stats();
            println!(
                "cache {}: {} entries, {} of {}",
                s.dir.display(),
                s.entries,
                units::human(s.bytes),
                units::human(s.max_size)
            );
            for (kind, n, bytes) in &s.kinds {
                println!("  {kind:<8} {n:>8} entries {:>12}", units::human(*bytes));
            }
        }
    }
    Ok(0)
}

fn checked(recipe: &Path, args: &BuildArgs) -> Option<Plan> {
    super::checked_plan(
        recipe,
        args,
        &super::draw::Draw::new(super::draw::ProgressMode::None),
    )
    .ok()
}

pub fn cmd_lock(recipe: &Path, args: &BuildArgs) -> Result<i32> {
    let Some(plan) = checked(recipe, args) else {
        return Ok(2);
    };
    let c = open_for(&plan, args)?;
    let (path, lock) = mediabuild::lock::write(&plan, c.as_ref())?;
    println!(
        "wrote {} ({} inputs, mediabuild {}, wimlib {})",
        path.display(),
        lock.inputs.len(),
        lock.tools
            .get("mediabuild")
            .map(String::as_str)
            .unwrap_or("?"),
        lock.tools.get("wimlib").map(String::as_str).unwrap_or("?"),
    );
    Ok(0)
}

/// True when every input matches RECIPE.lock; prints the drift otherwise.
/// Compares the inputs with `RECIPE.lock`; reports and returns how many drifted.
pub fn check_locked(plan: &Plan, args: &BuildArgs) -> Result<usize> {
    let lock_path = mediabuild::lock::lock_path(&plan.recipe_file);
    let Some(locked) = mediabuild::lock::read(&plan.recipe_file)? else {
        anyhow::bail!(
            "--locked: {} does not exist; create it with `mediabuild lock {}`",
            lock_path.display(),
            plan.recipe_file.display()
        );
    };
    let c = open_for(plan, args)?;
    let now = mediabuild::lock::compute(plan, c.as_ref())?;
    // Positions come from the recipe's own text; a composed recipe's keys
    // may be set in its bases, so its drift names keys without positions.
    let text = if plan.bases.is_empty() {
        mediabuild::fsutil::read_small_text(&plan.recipe_file, mediabuild::fsutil::SMALL_FILE_MAX)
            .unwrap_or_default()
    } else {
        String::new()
    };
    let drift = mediabuild::lock::drift(&locked, &now, &text);
    if drift.is_empty() {
        return Ok(0);
    }
    let name = plan.recipe_file.display().to_string();
    for d in &drift {
        eprintln!("{}", d.render(&name, &text));
    }
    eprintln!(
        "{name}: {} input(s) drifted from {}; nothing was built",
        drift.len(),
        lock_path.display()
    );
    Ok(drift.len())
}

/// Per-member cache status for `plan`, when a cache is in use.
pub fn plan_status(plan: &Plan, args: &BuildArgs) -> Result<Option<Vec<MemberStatus>>> {
    if args.writer() != mediabuild::build::WimWriter::Native {
        return Ok(None);
    }
    // `plan` does not create a cache that is not there yet.
    match settings(args)? {
        Some(s) if s.dir.is_dir() => {
            let c = Cache::open_with(&s)?.with_scope(&plan.dir);
            Ok(Some(cache::status::member_status(plan, &c)))
        }
        _ => Ok(None),
    }
}

pub fn render_status(status: &[MemberStatus]) -> String {
    let served = status.iter().filter(|s| s.cached).count();
    let mut s = format!(
        "cache: {served} of {} members served from the cache\n",
        status.len()
    );
    for m in status {
        let _ = writeln!(
            s,
            "  {:<7} {:<48} {}",
            if m.cached { "cached" } else { "build" },
            m.path,
            m.why
        );
    }
    s
}
