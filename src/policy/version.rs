//! Version labels on Deployments: the mutation (RG301) and its validity (RG302).

use crate::model::Object;

use super::{Finding, Mutation, Policy};

/// The JSON Patch that gives a Deployment's pod template its version label.
pub fn mutate(policy: &Policy, object: &Object, old: Option<&Object>) -> Mutation {
    let _ = (policy, object, old);
    Mutation::default()
}

/// RG302 when the Deployment's version label is not a valid subset name.
pub fn check_deployment(policy: &Policy, object: &Object) -> Vec<Finding> {
    let _ = (policy, object);
    Vec::new()
}
