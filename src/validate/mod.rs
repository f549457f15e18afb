//! Validation: every rule a recipe and its inputs must satisfy, all checked in
//! one pass before any output byte is written. Each problem becomes a
//! [`Diagnostic`] with the key path, position, value and a fix.
//!
//! Rules that only look at the recipe live in [`rules`]; rules that open the
//! inputs (WIM images, folders, files) live in [`inputs`].

mod inputs;
mod iso;
mod rules;

pub use inputs::{ImageFacts, InputFacts};
pub(crate) use rules::{is_guid, is_secret_name};

use crate::diag::Diagnostic;
use crate::recipe::locate::Locations;
use crate::recipe::Recipe;
use std::path::Path;

/// Whether secrets must be resolvable now (a build) or may be absent (check/plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Build,
}

/// Rules relaxed on request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// A media password that breaks the policy is a warning instead of an error.
    pub allow_weak_password: bool,
}

/// The outcome of validation: diagnostics plus what was learnt about the inputs.
pub struct Validated {
    pub diags: Vec<Diagnostic>,
    pub facts: InputFacts,
}

impl Validated {
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.is_error())
    }
}

/// Runs every rule. `dir` is the recipe's folder (paths are relative to it).
pub fn validate(
    recipe: &Recipe,
    dir: &Path,
    recipe_file: &Path,
    locs: &Locations,
    mode: Mode,
) -> Validated {
    validate_with(recipe, dir, recipe_file, locs, mode, Options::default())
}

/// [`validate`] with relaxed rules.
pub fn validate_with(
    recipe: &Recipe,
    dir: &Path,
    recipe_file: &Path,
    locs: &Locations,
    mode: Mode,
    opts: Options,
) -> Validated {
    let mut diags = Vec::new();
    rules::check(recipe, dir, mode, opts, &mut diags);
    let facts = inputs::check(recipe, dir, &mut diags);
    inputs::outputs_apart(recipe, dir, recipe_file, &mut diags);
    for d in &mut diags {
        if d.pos.is_none() && !d.key.is_empty() {
            d.pos = locs.value(&d.key);
        }
    }
    Validated { diags, facts }
}

/// Recipe keys that hold secret references.
pub fn secret_keys(r: &Recipe) -> Vec<String> {
    rules::secret_refs(r).into_iter().map(|(k, _)| k).collect()
}
