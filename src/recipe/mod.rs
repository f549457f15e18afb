//! The recipe: its types ([`model`]), how it is read ([`load`]) with positions
//! ([`locate`]), and secret references ([`secret`]).

pub mod load;
pub mod locate;
pub mod model;
pub mod schema;
pub mod secret;

pub use model::*;
