//! Generation: the DestinationRules and per-version Services routeguard wants.

use crate::model::Object;

use super::Context;

/// The desired generated objects for a snapshot.
pub fn desired(ctx: Context<'_>) -> Vec<Object> {
    let _ = ctx;
    Vec::new()
}
