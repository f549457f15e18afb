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
