//! Documents generated from the program's own definitions, so that they
//! cannot drift from it: the recipe's JSON Schema (from the parser's types),
//! the `--progress json` line schema, shell completions and man pages (from
//! the clap definitions).

use super::progress_json;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// `mediabuild schema [recipe|progress]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaOf {
    /// The YAML recipe (`schema/recipe.schema.json`).
    Recipe,
    /// One line of `--progress json` (`docs/progress.schema.json`).
    Progress,
}

/// The recipe schema as committed in `schema/recipe.schema.json`.
pub fn recipe_schema_text() -> Result<String> {
    let s = mediabuild::recipe::schema::schema();
    Ok(serde_json::to_string_pretty(&s)? + "\n")
}

/// Writes to stdout; a closed pipe comes back as an `io::Error` (not a panic)
/// that `main` treats as success.
fn out(bytes: &[u8]) -> Result<i32> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)?;
    o.flush()?;
    Ok(0)
}

pub fn schema(of: SchemaOf) -> Result<i32> {
    match of {
        SchemaOf::Recipe => out(recipe_schema_text()?.as_bytes()),
        SchemaOf::Progress => out(progress_json::SCHEMA.as_bytes()),
    }
}

pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> Result<i32> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mediabuild", &mut buf);
    out(&buf)
}

/// Prints `mediabuild.1`, or writes it and one page per visible subcommand
/// (`mediabuild-build.1`, …) into `dir`, each beside its target then renamed.
pub fn manpage(cmd: clap::Command, dir: Option<&Path>) -> Result<i32> {
    let Some(dir) = dir else {
        return out(&render(cmd.clone())?);
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let mut pages = vec![("mediabuild".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("mediabuild-{}", sub.get_name());
        // The page is named mediabuild-NAME; its synopsis reads `mediabuild NAME …`.
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("mediabuild {}", sub.get_name()));
        pages.push((name, page));
    }
    for (name, page) in pages {
        let target = dir.join(format!("{name}.1"));
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.1."))
            .tempfile_in(dir)
            .with_context(|| format!("cannot write into {}", dir.display()))?;
        tmp.write_all(&render(page)?)
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
        }
        tmp.persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", target.display()))?;
        println!("wrote {}", target.display());
    }
    Ok(0)
}

fn render(cmd: clap::Command) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .context("cannot render the man page")?;
    Ok(buf)
}
