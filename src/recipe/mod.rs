//! The recipe: its types ([`model`]), how it is read ([`load`]) with positions
//! ([`locate`]), and secret references ([`secret`]).

pub mod compose;
pub mod digest;
pub mod load;
pub mod locate;
pub mod model;
pub mod schema;
pub mod secret;

pub use digest::{epoch, recipe_digest};
pub use model::*;

/// `NAME.manifest.json` beside the artefact `NAME`: the one rule for a
/// manifest's file name (the build writes it there, validation keeps it
/// off the inputs, `inspect` and `verify` look for it there).
pub fn manifest_path(artefact: &std::path::Path) -> std::path::PathBuf {
    let mut name = artefact.file_name().unwrap_or_default().to_os_string();
    name.push(".manifest.json");
    artefact.with_file_name(name)
}

/// `RECIPE.lock` beside the recipe.
pub fn lock_path(recipe: &std::path::Path) -> std::path::PathBuf {
    let mut name = recipe.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    recipe.with_file_name(name)
}
