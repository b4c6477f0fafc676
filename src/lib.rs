//! routeguard: keeps Istio and Gateway API traffic routing safe.
//!
//! Layers point one way: [`model`] (objects) -> [`policy`] (pure rules over a
//! [`policy::Snapshot`]) -> admission and the offline [`check`] command.

pub mod admission;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod manifest;
pub mod model;
pub mod policy;
pub mod server;
pub mod supervisor;
