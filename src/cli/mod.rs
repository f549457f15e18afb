//! Command-line interface: clap definitions ("low" args) and the dispatch that
//! turns them into library calls ("high" args), printing what comes back.

mod draw;
mod inspect;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use mediabuild::bench::{self, BenchOptions};
use mediabuild::build::{self, BuildOptions, BuildReport, WimWriter};
use mediabuild::demo::{self, DemoOptions};
use mediabuild::plan::{self, Checked, Plan};
use mediabuild::progress::Cancel;
use mediabuild::recipe::Compression;
use mediabuild::units;
use mediabuild::validate::Mode;
use std::path::{Path, PathBuf};

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
    /// Benchmark the WIM writers side by side on a generated media tree (see README).
    Bench {
        /// Working folder (inputs, tree and outputs; reused between runs).
        #[arg(long, default_value = "bench-work")]
        dir: PathBuf,
        /// Size of the generated content.
        #[arg(long, default_value = "1GiB")]
        size: String,
        /// `mixed` (shaped like real media) or `compressible` (binaries and text only).
        #[arg(long, default_value = "mixed")]
        content: String,
        /// Writers to compare (comma-separated): mediabuild, wimlib, imagex.
        #[arg(long, default_value = "mediabuild,wimlib,imagex")]
        writers: String,
        /// Compressions (comma-separated).
        #[arg(long, default_value = "lzx,xpress")]
        compressions: String,
        /// Thread counts (comma-separated).
        #[arg(long, default_value = "1,2")]
        threads: String,
    },
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
    /// Write synthetic demo inputs and a recipe into DIR, then build it.
    Demo {
        /// Folder for the demo (default ./demo).
        #[arg(default_value = "demo")]
        dir: PathBuf,
        /// Approximate size of the generated inputs, e.g. 8MiB, 1GiB.
        #[arg(long, default_value = "8MiB")]
        size: String,
        /// Only generate the inputs and the recipe; do not build.
        #[arg(long)]
        no_build: bool,
        #[command(flatten)]
        build: BuildArgs,
    },
}

#[derive(Args, Debug, Clone, Default)]
struct BuildArgs {
    /// Worker threads (default: one per core). The output is the same for any value.
    #[arg(long, short = 'j', global = true)]
    jobs: Option<usize>,
    /// No progress output.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    /// WIM writer: `native` (mediabuild's own, default) or `wimlib` (wimlib's writer, the reference).
    #[arg(long, global = true, value_parser = ["native", "wimlib"])]
    writer: Option<String>,
    /// Build even if the media password breaks the policy (≥ 12 characters, ≥ 6 different). Warns loudly.
    #[arg(long, global = true)]
    allow_weak_password: bool,
}

impl BuildArgs {
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

pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    let _ = ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: stopping and cleaning up…");
        CANCEL.cancel();
    });
    match cli.command {
        Some(Command::Build { recipe, build }) => cmd_build(&recipe, &build),
        Some(Command::Check { recipe, json }) => cmd_check(&recipe, json),
        Some(Command::Plan { recipe, json }) => cmd_plan(&recipe, json),
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
            no_build,
            build,
        }) => cmd_demo(&dir, &size, no_build, &build),
        Some(Command::Bench {
            dir,
            size,
            content,
            writers,
            compressions,
            threads,
        }) => cmd_bench(dir, &size, &content, &writers, &compressions, &threads),
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
            mediabuild::render_wim_tree(w, &tree, &out, c, cli.build.jobs.unwrap_or(0))?;
            Ok(0)
        }
        None => match cli.recipe {
            Some(r) => cmd_build(&r, &cli.build),
            None => {
                use clap::CommandFactory;
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
        println!("{}", serde_json::to_string_pretty(&c.diags)?);
    } else {
        print_diags(&c);
        eprintln!("{}", summary(&c));
    }
    Ok(if c.has_errors() { 2 } else { 0 })
}

fn cmd_plan(recipe: &Path, json: bool) -> Result<i32> {
    let c = plan::check(recipe, Mode::Check);
    print_diags(&c);
    let Some(p) = c.plan.as_ref().filter(|_| !c.has_errors()) else {
        eprintln!("{}", summary(&c));
        return Ok(2);
    };
    if json {
        println!("{}", serde_json::to_string_pretty(p)?);
    } else {
        print!("{}", p.render());
    }
    Ok(0)
}

fn checked_plan(recipe: &Path, args: &BuildArgs) -> Option<Plan> {
    let opts = mediabuild::validate::Options {
        allow_weak_password: args.allow_weak_password,
    };
    let c = plan::check_with(recipe, Mode::Build, opts);
    print_diags(&c);
    if c.has_errors() {
        eprintln!("{}", summary(&c));
        eprintln!("nothing was built");
        return None;
    }
    c.plan
}

fn cmd_build(recipe: &Path, args: &BuildArgs) -> Result<i32> {
    let Some(plan) = checked_plan(recipe, args) else {
        return Ok(2);
    };
    let opts = BuildOptions {
        jobs: args.jobs.unwrap_or(0),
        writer: args.writer(),
        allow_weak_password: args.allow_weak_password,
    };
    let drawer = draw::Draw::new(args.quiet);
    let started = std::time::Instant::now();
    let report = build::build(&plan, &opts, &drawer, &CANCEL).context("build failed")?;
    print_report(&plan, &report, started.elapsed());
    Ok(0)
}

fn print_report(plan: &Plan, r: &BuildReport, total: std::time::Duration) {
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
    println!("still to do on the site server (not done by mediabuild):");
    for t in build::site_server_todo(plan) {
        println!("  - {t}");
    }
}

fn cmd_demo(dir: &Path, size: &str, no_build: bool, args: &BuildArgs) -> Result<i32> {
    let size = units::parse_size(size)
        .with_context(|| format!("--size {size:?}: write e.g. 8MiB or 1GiB"))?;
    let opts = DemoOptions {
        size,
        ..Default::default()
    };
    if !args.quiet {
        eprintln!("writing demo inputs to {} …", dir.display());
    }
    let rep = demo::generate(dir, &opts)
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
        return Ok(0);
    }
    cmd_build(&rep.recipe, args)
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

fn cmd_bench(
    dir: PathBuf,
    size: &str,
    content: &str,
    writers: &str,
    comps: &str,
    threads: &str,
) -> Result<i32> {
    let size =
        units::parse_size(size).with_context(|| format!("--size {size:?}: write e.g. 1GiB"))?;
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
        content,
        writers,
        compressions,
        threads,
        exe: std::env::current_exe()?,
    };
    let report = bench::run(&opts, &mut |line| eprintln!("{line}"))?;
    print!("{}", report.render());
    Ok(if report.all_ok() { 0 } else { 1 })
}
