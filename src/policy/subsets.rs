//! DestinationRule rules: duplicate subsets (RG202), subsets that select
//! nothing (RG203) and removal of subsets in use (RG201).

use crate::model::istio::DestinationRuleSpec;
use crate::model::{Object, ObjectKey};

use super::{Context, Finding};

/// Findings about a DestinationRule on its own.
pub fn check_destination_rule(ctx: Context<'_>, key: &ObjectKey, spec: &DestinationRuleSpec) -> Vec<Finding> {
    let _ = (ctx, key, spec);
    Vec::new()
}

/// RG201: subsets that `old` defines and `new` (None for a deletion) does not,
/// while a route still uses them.
pub fn removed_in_use(ctx: Context<'_>, old: &Object, new: Option<&Object>) -> Vec<Finding> {
    let _ = (ctx, old, new);
    Vec::new()
}
