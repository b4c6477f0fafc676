//! RG108: unknown fields in routing objects, with a did-you-mean.

use crate::model::Object;

use super::Finding;

/// Warnings for fields the object's schema does not define.
pub fn unknown_fields(object: &Object) -> Vec<Finding> {
    let _ = object;
    Vec::new()
}
