//! mediabuild: Windows deployment media from a declarative recipe.
//!
//! Phases: [`recipe`] (load) → [`validate`] → [`plan`] → [`build`] (execute,
//! render, finalize). The binary (`src/main.rs`, `src/cli/`) only parses
//! arguments and draws what the library reports.

pub mod build;
pub mod demo;
pub mod diag;
pub mod disk;
pub mod fat32;
pub mod fsutil;
pub mod ids;
pub mod media;
pub mod plan;
pub mod progress;
pub mod recipe;
pub(crate) mod render;
pub mod units;
pub mod validate;
pub mod wim;
