//! The recipe: its types ([`model`]), how it is read ([`load`]) with positions
//! ([`locate`]), and secret references ([`secret`]).

pub mod digest;
pub mod load;
pub mod locate;
pub mod model;
pub mod schema;
pub mod secret;

pub use digest::{epoch, recipe_digest};
pub use model::*;

/// `RECIPE.lock` beside the recipe.
pub fn lock_path(recipe: &std::path::Path) -> std::path::PathBuf {
    let mut name = recipe.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    recipe.with_file_name(name)
}
