//! mediabuild: Windows deployment media from a declarative recipe.
//!
//! Phases: [`recipe`] (load) → [`validate`] → [`plan`] → [`build`] (execute,
//! render, finalize). The binary (`src/main.rs`, `src/cli/`) only parses
//! arguments and draws what the library reports.

#![deny(unsafe_code)]

pub mod bench;
pub mod bootfiles;
pub mod build;
pub mod cache;
pub mod configmgr;
pub mod demo;
pub mod exec;
pub mod formats;
pub mod inspect;
pub mod lock;
pub mod media;
pub mod plan;
pub mod progress;
pub mod recipe;
pub(crate) mod render;
pub mod security;
pub mod site;
pub mod validate;

// The engines: workspace crates that import nothing of the product (the
// compiler enforces it), re-exported under their old module names.
pub use mediabuild_diag as diag;
pub use mediabuild_disk as disk;
pub use mediabuild_fat32 as fat32;
pub use mediabuild_fsutil as fsutil;
pub use mediabuild_ids as ids;
pub use mediabuild_units as units;
pub use mediabuild_wim as wim;
pub use mediabuild_wimwrite as wimwrite;

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
