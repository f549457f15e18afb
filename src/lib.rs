//! mediabuild: Windows deployment media from a declarative recipe.
//!
//! Phases: [`recipe`] (load) → [`validate`] → [`plan`] → [`build`] (execute,
//! render, finalize). The binary (`src/main.rs`, `src/cli/`) only parses
//! arguments and draws what the library reports.

pub mod bench;
pub mod bootfiles;
pub mod build;
pub mod cache;
pub mod configmgr;
pub mod demo;
pub mod diag;
pub mod disk;
pub mod exec;
pub mod fat32;
pub mod formats;
pub mod fsutil;
pub mod ids;
pub mod inspect;
pub mod lock;
pub mod media;
pub mod plan;
pub mod progress;
pub mod recipe;
pub(crate) mod render;
pub mod security;
pub mod site;
pub mod units;
pub mod validate;
pub mod wim;
pub mod wimwrite;

/// Writes the folder `tree` as a one-image WIM with the chosen writer (the
/// benchmark's unit of work).
pub fn render_wim_tree(
    writer: build::WimWriter,
    tree: &std::path::Path,
    out: &std::path::Path,
    compression: recipe::Compression,
    threads: usize,
) -> Result<(), build::BuildError> {
    render::wim::write_tree(writer, tree, out, compression, threads)
}
