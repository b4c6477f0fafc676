//! The routing policy: pure, synchronous rules over parsed objects and a
//! read-only [`Snapshot`] of the cluster.

pub mod audit;
pub mod catalog;
pub mod config;
pub(crate) mod duplicate_rules;
pub mod enforcement;
pub mod engine;
pub(crate) mod fields;
pub mod finding;
pub(crate) mod gateways;
pub(crate) mod generate;
pub(crate) mod hosts;
pub(crate) mod http_route;
pub(crate) mod in_use;
pub(crate) mod ports;
pub(crate) mod routes;
pub(crate) mod service_entry;
pub mod snapshot;
pub(crate) mod subsets;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod unused_rules;
pub(crate) mod version;
pub(crate) mod visibility;

pub use audit::Audited;
pub use config::{Action, Policy, PolicyError, WeightMode};
pub use enforcement::{ENFORCEMENT_LABEL, Enforcement, Mode, Origin, enforce};
pub use engine::{Change, Engine, Mutation, Operation};
pub use finding::{Code, Finding, Severity};
pub use snapshot::{Entry, Resolution, RuleChange, Snapshot};

/// What every rule gets: the policy and the snapshot to look things up in.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub snapshot: &'a Snapshot,
}
