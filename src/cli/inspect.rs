//! `inspect`, `verify` and `diff`: arguments, the media password by
//! reference, and printing (text or `--json`). The work is in
//! `mediabuild::inspect`.

use anyhow::{Context, Result};
use clap::Args;
use mediabuild::inspect::{self, diff, verify, Options};
use mediabuild::recipe::secret::{Secret, SecretRef};
use std::path::{Path, PathBuf};

/// The media password, by reference only (never a literal on the command line).
#[derive(Args, Debug, Clone, Default)]
pub struct PasswordArgs {
    /// Environment variable holding the media password (to read Variables.dat).
    #[arg(long, value_name = "NAME")]
    password_env: Option<String>,
    /// File holding the media password (mode 600; trailing newline removed).
    #[arg(long, value_name = "PATH", conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
}

impl PasswordArgs {
    fn resolve(&self) -> Result<Option<Secret>> {
        if self.password_env.is_none() && self.password_file.is_none() {
            return Ok(None);
        }
        let r = SecretRef {
            env: self.password_env.clone(),
            file: self.password_file.clone(),
        };
        let s = r
            .resolve(Path::new(""))
            .with_context(|| format!("the media password ({})", r.describe()))?;
        Ok(Some(s))
    }
}

pub fn cmd_inspect(
    artefact: &Path,
    manifest: Option<PathBuf>,
    pw: &PasswordArgs,
    show_values: bool,
    json: bool,
) -> Result<i32> {
    let opts = Options {
        manifest,
        password: pw.resolve()?,
        show_values,
    };
    let i = inspect::inspect(artefact, &opts)
        .with_context(|| format!("cannot inspect {}", artefact.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&i)?);
    } else {
        print!("{}", i.render());
    }
    Ok(0)
}

pub fn cmd_verify(
    artefact: &Path,
    manifest: Option<PathBuf>,
    recipe: Option<PathBuf>,
    pw: &PasswordArgs,
    json: bool,
) -> Result<i32> {
    let opts = verify::VerifyOptions {
        read: Options {
            manifest,
            password: pw.resolve()?,
            show_values: false,
        },
        recipe,
    };
    let r = verify::verify(artefact, &opts)
        .with_context(|| format!("cannot verify {}", artefact.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.render());
    }
    Ok(if r.ok() { 0 } else { 1 })
}

pub fn cmd_diff(a: &Path, b: &Path, pw: &PasswordArgs, json: bool) -> Result<i32> {
    let opts = Options {
        manifest: None,
        password: pw.resolve()?,
        show_values: false,
    };
    let load =
        |p: &Path| diff::load(p, &opts).with_context(|| format!("cannot read {}", p.display()));
    let d = diff::diff(&load(a)?, &load(b)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", d.render());
    }
    Ok(if d.differ { 1 } else { 0 })
}
