//! The routing policy: pure, synchronous rules over parsed objects and a
//! read-only [`Snapshot`] of the cluster.

pub mod config;
pub mod duplicate_rules;
pub mod engine;
pub mod fields;
pub mod finding;
pub mod gateways;
pub mod generate;
pub mod hosts;
pub mod http_route;
pub mod in_use;
pub mod ports;
pub mod routes;
pub mod service_entry;
pub mod snapshot;
pub mod subsets;
#[cfg(test)]
pub mod testing;
pub mod unused_rules;
pub mod version;
pub mod visibility;

pub use config::{Action, Policy, PolicyError, WeightMode};
pub use engine::{Change, Engine, Mutation, Operation};
pub use finding::{Code, Finding, Severity};
pub use snapshot::{Entry, Resolution, RuleChange, Snapshot};

/// What every rule gets: the policy and the snapshot to look things up in.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub snapshot: &'a Snapshot,
}
