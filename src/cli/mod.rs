//! Command-line interface: clap definitions ("low" args) and the dispatch that
//! turns them into library calls ("high" args), printing what comes back.

mod cache;
mod docs;
mod draw;
mod init;
mod inspect;
mod progress_json;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use mediabuild::bench::{self, BenchOptions};
use mediabuild::build::{self, BuildOptions, BuildReport, WimWriter};
use mediabuild::demo::{self, DemoOptions};
use mediabuild::plan::{self, Checked, Plan};
use mediabuild::progress::Cancel;
use mediabuild::recipe::Compression;
use mediabuild::units;
use mediabuild::validate::Mode;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

static CANCEL: Cancel = Cancel::new();

/// Build Windows deployment media — ConfigMgr prestaged media (.wim) and
/// bootable USB / Windows To Go disk images — from a YAML recipe, on Linux,
/// reproducibly.
///
/// Exit codes: 0 success; 1 a negative answer; 2 an error (bad recipe, failed build).
#[derive(Parser, Debug)]
#[command(name = "mediabuild", args_conflicts_with_subcommands = true, version = version())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Recipe to build (same as `mediabuild build RECIPE`).
    recipe: Option<PathBuf>,
    #[command(flatten)]
    build: BuildArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build every output of a recipe.
    Build {
        recipe: PathBuf,
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Validate a recipe and its inputs; print every problem (exit 2 if any error).
    Check {
        recipe: PathBuf,
        /// Print the diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print what a build would do: every media member, its source and size, the outputs.
    Plan {
        recipe: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Print which files of the recipe's `extends` chain set KEY (e.g. `media.name`,
        /// `driver_packages[PS100301].source`), in merge order, instead of the plan.
        #[arg(long, value_name = "KEY")]
        explain: Option<String>,
    },
    /// What is on a built .wim or disk image: identity, images, packages, variable names, partitions.
    Inspect {
        artefact: PathBuf,
        /// The manifest (default: NAME.manifest.json beside the artefact, when present).
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        password: inspect::PasswordArgs,
        /// Show values of variables the manifest marks non-secret (never a secret's).
        #[arg(long)]
        show_values: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check an artefact: structure, every member against the manifest, and the recipe (exit 1 on a mismatch).
    Verify {
        artefact: PathBuf,
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Also check that the media holds what this recipe declares.
        #[arg(long)]
        recipe: Option<PathBuf>,
        #[command(flatten)]
        password: inspect::PasswordArgs,
        #[arg(long)]
        json: bool,
    },
    /// What changed between two artefacts or two manifests (exit 1 when they differ).
    Diff {
        a: PathBuf,
        b: PathBuf,
        #[command(flatten)]
        password: inspect::PasswordArgs,
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks (see docs/benchmarks.md): `writers` (default) times the WIM
    /// writers side by side on a generated media tree; `rebuild` times clean,
    /// cached and incremental builds, verify and inspect of real-shaped media.
    Bench(BenchCli),
    /// (internal) Write a folder as a WIM with one writer; used by `bench`.
    #[command(hide = true)]
    BenchWrite {
        /// `native` or `wimlib`.
        #[arg(long)]
        with: String,
        #[arg(long)]
        compression: String,
        tree: PathBuf,
        out: PathBuf,
    },
    /// Print the JSON Schema of the recipe format (or of `--progress json` lines).
    Schema {
        /// Which schema: `recipe` (the YAML recipe) or `progress` (one `--progress json` line).
        #[arg(value_enum, default_value = "recipe")]
        of: docs::SchemaOf,
    },
    /// Write a commented recipe skeleton to DIR/recipe.yaml.
    Init {
        /// Folder for the recipe (created if missing; default: the current folder).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite an existing DIR/recipe.yaml.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a folder.
    Manpage {
        /// Write mediabuild.1 and mediabuild-COMMAND.1 into this folder instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Write RECIPE.lock: the digest of every input, and the tool versions (see `--locked`).
    Lock { recipe: PathBuf },
    /// The build cache: `stats` (entries and bytes per kind) or `clean` (remove every entry).
    Cache {
        #[arg(value_parser = ["stats", "clean"])]
        action: String,
    },
    /// Facts of the ConfigMgr site: `site fetch --mp URL` reads what a management point
    /// publishes to media (site code, unknown-computer GUIDs, site signing certificate) and
    /// writes the recipe's `site:` section for you to review (exit 2 and nothing written on error).
    Site {
        #[command(subcommand)]
        action: SiteCommand,
    },
    /// Write synthetic demo inputs and a recipe into DIR, then build it.
    Demo {
        /// Folder for the demo (default ./demo).
        #[arg(default_value = "demo")]
        dir: PathBuf,
        /// Approximate size of the generated inputs, e.g. 8MiB, 1GiB.
        #[arg(long, default_value = "8MiB")]
        size: String,
        /// Files of the many-file content (a driver store and an application
        /// tree, sizes like real ones); 14000 is real-shaped media.
        #[arg(long, default_value_t = demo::DEFAULT_FILES)]
        files: usize,
        /// Only generate the inputs and the recipe; do not build.
        #[arg(long)]
        no_build: bool,
        #[command(flatten)]
        build: BuildArgs,
    },
}

#[derive(Subcommand, Debug)]
enum SiteCommand {
    /// Read the site's facts from a management point; print or write the `site:` section.
    Fetch {
        /// The management point, `http://FQDN` or `https://FQDN`.
        #[arg(long)]
        mp: String,
        /// Write the section to FILE (and the site signing certificate to
        /// `site-signing.cer` beside it) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A root CA certificate (DER or PEM) to trust for an HTTPS point, besides the system's.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Timeout of each request, in seconds.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
}

#[derive(Args, Debug, Clone)]
struct BenchCli {
    /// `writers`, `rebuild` or `esd`.
    #[arg(default_value = "writers", value_parser = ["writers", "rebuild", "esd"])]
    suite: String,
    /// Working folder (inputs, tree and outputs; `rebuild` empties it first).
    #[arg(long, default_value = "bench-work")]
    dir: PathBuf,
    /// Size of the generated content.
    #[arg(long, default_value = "1GiB")]
    size: String,
    /// `mixed` (shaped like real media) or `compressible` (binaries and text only).
    #[arg(long, default_value = "mixed")]
    content: String,
    /// Files of the many-file content (a driver store and an application tree,
    /// as `mediabuild demo --files`).
    #[arg(long, default_value_t = 14000)]
    files: usize,
    /// Writers to compare (comma-separated): mediabuild, wimlib, imagex.
    #[arg(long, default_value = "mediabuild,wimlib,imagex")]
    writers: String,
    /// Compressions (comma-separated).
    #[arg(long, default_value = "lzx,xpress")]
    compressions: String,
    /// Thread counts (comma-separated).
    #[arg(long, default_value = "1,2")]
    threads: String,
    /// Timed runs of each write (rounds of `rebuild`), interleaved; the median
    /// is reported (a shared machine is noisy).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// `rebuild`: entries put in a second cache, whose no-change rebuild is
    /// compared with the demo's own cache (0: skip).
    #[arg(long, default_value_t = 0)]
    fill: usize,
    /// `rebuild`: count the system calls per file of builds and verifies (strace).
    #[arg(long)]
    strace: bool,
}

#[derive(Args, Debug, Clone, Default)]
struct BuildArgs {
    /// Worker threads, 1 to 256 (default: one per core). The output is the same for any value.
    #[arg(long, short = 'j', global = true, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: Option<u16>,
    /// No progress output (same as `--progress none`).
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    /// Progress on stderr: `auto` (bars on a terminal, plain lines otherwise), `bars`, `plain`,
    /// `json` (one JSON object per line, see `mediabuild schema progress`) or `none`.
    #[arg(long, global = true, value_enum, value_name = "MODE")]
    progress: Option<draw::ProgressMode>,
    /// WIM writer: `native` (mediabuild's own, default) or `wimlib` (wimlib's writer, the reference).
    #[arg(long, global = true, value_parser = ["native", "wimlib"])]
    writer: Option<String>,
    /// Build even if the media password breaks the policy (≥ 12 characters, ≥ 6 different). Warns loudly.
    #[arg(long, global = true)]
    allow_weak_password: bool,
    /// Build cache folder (default: $XDG_CACHE_HOME/mediabuild, else ~/.cache/mediabuild).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Build everything from scratch: no cache read or written.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Cache size limit (e.g. 20GiB); least recently used entries go first.
    #[arg(long, global = true, value_name = "SIZE")]
    cache_max_size: Option<String>,
    /// Refuse to build when an input differs from RECIPE.lock (exit 1, naming each).
    #[arg(long, global = true)]
    locked: bool,
}

impl BuildArgs {
    fn progress(&self) -> draw::ProgressMode {
        match self.progress {
            Some(m) => m,
            None if self.quiet => draw::ProgressMode::None,
            None => draw::ProgressMode::Auto,
        }
    }

    fn writer(&self) -> WimWriter {
        match self.writer.as_deref() {
            Some("wimlib") => WimWriter::Wimlib,
            _ => WimWriter::Native,
        }
    }
}

fn version() -> &'static str {
    Box::leak(
        format!(
            "{} (wimlib {})",
            env!("CARGO_PKG_VERSION"),
            mediabuild::wim::version()
        )
        .into_boxed_str(),
    )
}

/// An error and its causes on one line, `a: b: c`, each cause once: an
/// error whose message already holds its cause's text does not repeat it.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if out.contains(&t) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&t);
    }
    out
}

pub fn run() -> Result<i32> {
    progress_json::started();
    let cli = Cli::parse();
    // In JSON mode stderr carries only JSON lines, the interruption included.
    let json = [
        cli.build.progress,
        command_build_args(&cli).and_then(|b| b.progress),
    ]
    .contains(&Some(draw::ProgressMode::Json));
    let _ = ctrlc::set_handler(move || {
        if json {
            use mediabuild::progress::Reporter;
            progress_json::JsonLines::new().event(mediabuild::progress::Event::Warning(
                "interrupted: stopping and cleaning up".into(),
            ));
        } else {
            eprintln!("\ninterrupted: stopping and cleaning up…");
        }
        CANCEL.cancel();
    });
    match cli.command {
        Some(Command::Build { recipe, build }) => cmd_build(&recipe, &build),
        Some(Command::Check { recipe, json }) => cmd_check(&recipe, json),
        Some(Command::Plan {
            recipe,
            explain: Some(key),
            ..
        }) => cmd_explain(&recipe, &key),
        Some(Command::Plan { recipe, json, .. }) => cmd_plan(&recipe, json, &cli.build),
        Some(Command::Lock { recipe }) => cache::cmd_lock(&recipe, &cli.build),
        Some(Command::Cache { action }) => cache::cmd_cache(&action, &cli.build),
        Some(Command::Site {
            action:
                SiteCommand::Fetch {
                    mp,
                    out,
                    ca_cert,
                    timeout,
                },
        }) => cmd_site_fetch(&mp, out.as_deref(), ca_cert, timeout),
        Some(Command::Inspect {
            artefact,
            manifest,
            password,
            show_values,
            json,
        }) => inspect::cmd_inspect(&artefact, manifest, &password, show_values, json),
        Some(Command::Verify {
            artefact,
            manifest,
            recipe,
            password,
            json,
        }) => inspect::cmd_verify(&artefact, manifest, recipe, &password, json),
        Some(Command::Diff {
            a,
            b,
            password,
            json,
        }) => inspect::cmd_diff(&a, &b, &password, json),
        Some(Command::Demo {
            dir,
            size,
            files,
            no_build,
            build,
        }) => cmd_demo(&dir, &size, files, no_build, &build),
        Some(Command::Schema { of }) => docs::schema(of),
        Some(Command::Init { dir, force }) => init::init(&dir, force),
        Some(Command::Completions { shell }) => docs::completions(shell, Cli::command()),
        Some(Command::Manpage { out_dir }) => docs::manpage(Cli::command(), out_dir.as_deref()),
        Some(Command::Bench(b)) => cmd_bench(b),
        Some(Command::BenchWrite {
            with,
            compression,
            tree,
            out,
        }) => {
            let w = if with == "wimlib" {
                WimWriter::Wimlib
            } else {
                WimWriter::Native
            };
            let c = compression_arg(&compression)?;
            mediabuild::render_wim_tree(w, &tree, &out, c, cli.build.jobs.map_or(0, usize::from))?;
            Ok(0)
        }
        None => match cli.recipe {
            Some(r) => cmd_build(&r, &cli.build),
            None => {
                Cli::command().print_help()?;
                Ok(2)
            }
        },
    }
}

fn print_diags(c: &Checked) {
    if !c.diags.is_empty() {
        eprintln!("{}", c.render_diags());
    }
}

fn summary(c: &Checked) -> String {
    let errors = c.diags.iter().filter(|d| d.is_error()).count();
    let warnings = c.diags.len() - errors;
    format!(
        "{}: {errors} error(s), {warnings} warning(s)",
        c.file.display()
    )
}

fn cmd_check(recipe: &Path, json: bool) -> Result<i32> {
    let c = plan::check(recipe, Mode::Check);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&progress_json::check_json(&c))?
        );
    } else {
        print_diags(&c);
        eprintln!("{}", summary(&c));
    }
    Ok(if c.has_errors() { 2 } else { 0 })
}

/// `plan --explain KEY`: the files of the chain that set KEY. The recipe's
/// problems are printed too, but do not stop the explanation.
fn cmd_explain(recipe: &Path, key: &str) -> Result<i32> {
    let c = plan::check(recipe, Mode::Check);
    print_diags(&c);
    let own = c
        .composed
        .is_none()
        .then(|| mediabuild::recipe::compose::of_text(recipe, &c.source))
        .flatten();
    let composed = match &c.composed {
        Some(composed) => Some(composed),
        None => own.as_ref(),
    };
    let Some(composed) = composed else {
        eprintln!("{}", summary(&c));
        return Ok(2);
    };
    print!("{}", mediabuild::recipe::compose::explain(composed, key));
    Ok(0)
}

fn cmd_plan(recipe: &Path, json: bool, args: &BuildArgs) -> Result<i32> {
    let c = plan::check(recipe, Mode::Check);
    print_diags(&c);
    let Some(p) = c.plan.as_ref().filter(|_| !c.has_errors()) else {
        eprintln!("{}", summary(&c));
        return Ok(2);
    };
    let status = cache::plan_status(p, args)?;
    if json {
        let mut v = serde_json::to_value(progress_json::plan_json(p))?;
        if let Some(s) = &status {
            v["cache"] = serde_json::to_value(s)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", p.render());
        if let Some(s) = &status {
            print!("{}", cache::render_status(s));
        }
    }
    Ok(0)
}

/// The build arguments of the subcommand, if it has them.
fn command_build_args(cli: &Cli) -> Option<&BuildArgs> {
    match &cli.command {
        Some(Command::Build { build, .. } | Command::Demo { build, .. }) => Some(build),
        _ => None,
    }
}

/// The plan, or the number of errors in the recipe (already reported).
fn checked_plan(recipe: &Path, args: &BuildArgs, drawer: &draw::Draw) -> Result<Plan, usize> {
    let opts = mediabuild::validate::Options {
        allow_weak_password: args.allow_weak_password,
    };
    let c = drawer.phase("check", || plan::check_with(recipe, Mode::Build, opts));
    let errors = c.diags.iter().filter(|d| d.is_error()).count();
    if let Some(j) = drawer.json() {
        j.diagnostics(&c.diags);
    } else {
        print_diags(&c);
        if errors > 0 {
            eprintln!("{}", summary(&c));
            eprintln!("nothing was built");
        }
    }
    match c.plan {
        Some(p) if errors == 0 => Ok(p),
        _ => Err(errors.max(1)),
    }
}

/// The media once staged and once per output (a disk image is sparse:
/// what it holds, not its size): about what a build needs in its output folder.
fn space_needed(plan: &Plan) -> u64 {
    plan.total_size
        .saturating_mul(plan.outputs.len() as u64 + 1)
}

/// ENOSPC somewhere in the chain; or wimlib's write failure (it keeps no
/// errno) while the output folder's file system has less room than the
/// build needs.
fn disk_full_likely(plan: &Plan, e: &build::BuildError) -> bool {
    if mediabuild::fsutil::is_disk_full(e) {
        return true;
    }
    let write = matches!(e, build::BuildError::Wim(w) if w.is_write_failure());
    write
        && mediabuild::fsutil::space(&plan.out_dir)
            .is_some_and(|(_, _, free)| free < space_needed(plan))
}

/// A full disk, said the way a user acts on it: which file system, what was
/// being written, how much the build needs there and how much is free.
fn disk_full(plan: &Plan, e: &build::BuildError) -> anyhow::Error {
    let at = match e {
        build::BuildError::Io { path, .. } => path.clone(),
        _ => plan.out_dir.clone(),
    };
    let writing = if at.starts_with(&plan.out_dir) {
        format!("the outputs in {}", plan.out_dir.display())
    } else {
        at.display().to_string()
    };
    let need = space_needed(plan);
    let h = units::human;
    match mediabuild::fsutil::space(&at) {
        Some((source, mount, free)) => {
            let more = if need > free {
                format!(" (needs about {} more)", h(need - free))
            } else {
                String::new()
            };
            anyhow::anyhow!(
                "build failed: no space left on {source} (mounted at {}) writing {writing}{more}: \
                 the build needs about {} there and {} is free; free space there or set \
                 outputs.dir to a larger file system (nothing was written to the output paths)",
                mount.display(),
                h(need),
                h(free)
            )
        }
        None => anyhow::anyhow!(
            "build failed: no space left writing {writing}: the build needs about {} there \
             (nothing was written to the output paths)",
            h(need)
        ),
    }
}

/// How a build command ended, before it is reported.
enum Built {
    /// Every output written; the report is on stdout.
    Done(BuildReport),
    /// The recipe has this many errors; nothing was built.
    Invalid(usize),
    /// Nothing to build was asked for (`demo --no-build`).
    Nothing,
    /// `--locked` and this many inputs drifted from the lockfile (each
    /// already reported); nothing was built.
    Drifted(usize),
}

fn run_build(recipe: &Path, args: &BuildArgs, drawer: &draw::Draw) -> Result<Built> {
    let plan = match checked_plan(recipe, args, drawer) {
        Ok(p) => p,
        Err(errors) => return Ok(Built::Invalid(errors)),
    };
    if args.locked {
        let drifted = cache::check_locked(&plan, args)?;
        if drifted > 0 {
            return Ok(Built::Drifted(drifted));
        }
    }
    let opts = BuildOptions {
        jobs: args.jobs.map_or(0, usize::from),
        writer: args.writer(),
        allow_weak_password: args.allow_weak_password,
        cache: cache::settings(args)?,
    };
    let started = Instant::now();
    let report = match build::build(&plan, &opts, drawer, &CANCEL) {
        Ok(r) => r,
        Err(e) if disk_full_likely(&plan, &e) => return Err(disk_full(&plan, &e)),
        Err(e) => return Err(anyhow::Error::new(e).context("build failed")),
    };
    print_report(&plan, &report, started.elapsed());
    Ok(Built::Done(report))
}

/// Runs a build command; with `--progress json` its outcome, error included,
/// becomes the final `result` line instead of a message.
fn reported(
    command: &str,
    recipe: &Path,
    drawer: &draw::Draw,
    f: impl FnOnce() -> Result<Built>,
) -> Result<i32> {
    let Some(j) = drawer.json() else {
        return Ok(match f()? {
            Built::Done(_) | Built::Nothing => 0,
            Built::Invalid(_) => 2,
            Built::Drifted(_) => 1,
        });
    };
    j.start(command, recipe);
    let outcome = match f() {
        Ok(Built::Done(r)) => progress_json::Outcome::built(&r, j.elapsed()),
        Ok(Built::Nothing) => progress_json::Outcome::nothing(j.elapsed()),
        Ok(Built::Invalid(n)) => progress_json::Outcome::invalid(n, j.elapsed()),
        Ok(Built::Drifted(n)) => progress_json::Outcome::drifted(n, j.elapsed()),
        Err(e) => progress_json::Outcome::failed(&e, j.elapsed()),
    };
    j.emit(&progress_json::Line::Result(&outcome));
    Ok(outcome.exit_code)
}

fn cmd_build(recipe: &Path, args: &BuildArgs) -> Result<i32> {
    let drawer = draw::Draw::new(args.progress());
    reported("build", recipe, &drawer, || {
        run_build(recipe, args, &drawer)
    })
}

fn print_report(plan: &Plan, r: &BuildReport, total: Duration) {
    println!("built {} in {:.2} s", plan.media_name, total.as_secs_f64());
    for o in &r.outputs {
        println!(
            "  {:?} {} ({}, sha256 {})",
            o.kind,
            o.path.display(),
            units::human(o.size),
            o.sha256
        );
        println!("      manifest {}", o.manifest.display());
    }
    println!("phases:");
    for (name, d) in &r.phases {
        println!("  {name:<16} {:>8.2} s", d.as_secs_f64());
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    if let Some(c) = &r.cache {
        println!("{c}");
    }
    println!("still to do on the site server (not done by mediabuild):");
    for t in build::site_server_todo(plan) {
        println!("  - {t}");
    }
}

fn cmd_site_fetch(
    mp: &str,
    out: Option<&Path>,
    ca_cert: Option<PathBuf>,
    timeout: u64,
) -> Result<i32> {
    use mediabuild::site;
    let opts = site::FetchOptions {
        mp: mp.to_string(),
        ca_cert: ca_cert.clone(),
        timeout: Duration::from_secs(timeout.max(1)),
    };
    let facts = site::fetch(&opts)?;
    match out {
        Some(out) => {
            site::write(out, &facts, mp, ca_cert.as_deref())?;
            eprintln!(
                "wrote {}{}: review it, then put its `site:` section in the recipe",
                out.display(),
                if facts.signing_certificate.is_some() {
                    format!(" and {}", site::SIGNING_FILE)
                } else {
                    String::new()
                }
            );
        }
        None => print!("{}", site::fragment(&facts, mp, None, ca_cert.as_deref())),
    }
    Ok(0)
}

fn cmd_demo(dir: &Path, size: &str, files: usize, no_build: bool, args: &BuildArgs) -> Result<i32> {
    let size = units::parse_size(size)
        .with_context(|| format!("--size {size:?}: write e.g. 8MiB or 1GiB"))?;
    let opts = DemoOptions {
        size,
        files,
        ..Default::default()
    };
    let drawer = draw::Draw::new(args.progress());
    let recipe = dir.join("recipe.yaml");
    reported("demo", &recipe, &drawer, || {
        if matches!(drawer, draw::Draw::Bars(..) | draw::Draw::Lines(_)) {
            eprintln!("writing demo inputs to {} …", dir.display());
        }
        let rep = drawer
            .phase("generate demo", || demo::generate(dir, &opts))
            .with_context(|| format!("cannot write the demo into {}", dir.display()))?;
        println!(
            "demo inputs in {} ({}):",
            dir.display(),
            units::human(rep.bytes)
        );
        for (kind, bytes) in &rep.mix {
            println!("  {kind:<40} {:>10}", units::human(*bytes));
        }
        println!("recipe: {}", rep.recipe.display());
        if no_build {
            return Ok(Built::Nothing);
        }
        run_build(&rep.recipe, args, &drawer)
    })
}

fn compression_arg(s: &str) -> Result<Compression> {
    Ok(match s {
        "none" => Compression::None,
        "xpress" => Compression::Xpress,
        "lzx" => Compression::Lzx,
        "lzms" => Compression::Lzms,
        other => anyhow::bail!("unknown compression {other:?}: use none, xpress, lzx or lzms"),
    })
}

fn cmd_bench(b: BenchCli) -> Result<i32> {
    let size = units::parse_size(&b.size)
        .with_context(|| format!("--size {:?}: write e.g. 1GiB", b.size))?;
    if b.suite == "esd" {
        let opts = bench::esd::EsdOptions {
            dir: b.dir,
            size,
            files: b.files,
            repeat: b.repeat,
            exe: std::env::current_exe()?,
        };
        let report = bench::esd::run(&opts, &mut |line| eprintln!("{line}"))?;
        print!("{}", report.render());
        return Ok(if report.ok() { 0 } else { 1 });
    }
    if b.suite == "rebuild" {
        let opts = bench::rebuild::RebuildOptions {
            dir: b.dir,
            size,
            files: b.files,
            repeat: b.repeat,
            fill: b.fill,
            strace: b.strace,
            exe: std::env::current_exe()?,
        };
        let report = bench::rebuild::run(&opts, &mut |line| eprintln!("{line}"))?;
        print!("{}", report.render());
        return Ok(if report.ok() { 0 } else { 1 });
    }
    let (content, writers, comps, threads, files, dir, repeat) = (
        b.content.as_str(),
        b.writers.as_str(),
        b.compressions.as_str(),
        b.threads.as_str(),
        b.files,
        b.dir,
        b.repeat,
    );
    let content = match content {
        "mixed" => bench::Content::Mixed,
        "compressible" => bench::Content::Compressible,
        other => anyhow::bail!("--content {other:?}: use mixed or compressible"),
    };
    let writers = writers
        .split(',')
        .map(|w| match w.trim() {
            "mediabuild" | "native" => Ok(bench::Writer::Native),
            "wimlib" => Ok(bench::Writer::Wimlib),
            "imagex" | "wimlib-imagex" => Ok(bench::Writer::Imagex),
            other => anyhow::bail!("--writers: unknown writer {other:?}"),
        })
        .collect::<Result<Vec<_>>>()?;
    let compressions = comps
        .split(',')
        .map(|c| compression_arg(c.trim()))
        .collect::<Result<Vec<_>>>()?;
    let threads = threads
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<usize>()
                .with_context(|| format!("--threads: {t:?} is not a number"))
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = BenchOptions {
        dir,
        size,
        files,
        content,
        writers,
        compressions,
        threads,
        repeat,
        exe: std::env::current_exe()?,
    };
    let report = bench::run(&opts, &mut |line| eprintln!("{line}"))?;
    print!("{}", report.render());
    Ok(if report.all_ok() { 0 } else { 1 })
}
