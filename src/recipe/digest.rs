//! The recipe's identity: its digest (the root of every GUID, serial and
//! volume id, see [`crate::ids`]) and its build epoch (DESIGN.md §5).

use super::Recipe;
use crate::ids::DEFAULT_EPOCH;
use sha2::{Digest, Sha256};

/// SHA-256 of the recipe's canonical JSON form (sorted maps; secret
/// references, never secret values).
pub fn recipe_digest(r: &Recipe) -> [u8; 32] {
    let json = serde_json::to_vec(r).unwrap_or_default();
    Sha256::digest(json).into()
}

/// The build epoch: the recipe's `source_date_epoch`, else `SOURCE_DATE_EPOCH`, else 2000-01-01.
pub fn epoch(r: &Recipe) -> i64 {
    r.source_date_epoch
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok())
        .unwrap_or(DEFAULT_EPOCH)
}
