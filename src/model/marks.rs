//! The labels and annotations by which routeguard marks the objects it makes
//! and reads the opt-ins users write. They live here, in the model, because
//! the snapshot index, generation and the live controller all test them: none
//! of those should have to know the others.

use super::Object;

/// The label that marks objects routeguard manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on routeguard's objects.
pub const MANAGED_BY: &str = "routeguard";
/// The label naming the Service a generated object was made for.
pub const SOURCE_SERVICE_LABEL: &str = "routeguard.io/service";
/// Annotation (`"true"`) by which a user's DestinationRule lets routeguard append subsets.
pub const MANAGE_SUBSETS_ANNOTATION: &str = "routeguard.io/manage-subsets";
/// Annotation (`"true"`) marking the canary Deployment of a Service.
pub const CANARY_ANNOTATION: &str = "routeguard.io/canary";

/// True when routeguard manages the object (`app.kubernetes.io/managed-by: routeguard`).
pub fn is_managed(object: &Object) -> bool {
    object.labels().get(MANAGED_BY_LABEL) == Some(MANAGED_BY)
}
