//! routeguard: keeps Istio and Gateway API traffic routing safe.
//!
//! Layers point one way (`tests/layers.rs` keeps them so): [`model`]
//! (objects) -> [`manifest`] (files to objects) and [`policy`] (pure rules
//! over a [`policy::Snapshot`]) -> [`files`] (the desired state of manifest
//! files) -> [`admission`] (decode, decide, encode), with [`cluster`] beside it
//! (the live index and controller) -> [`server`] (HTTPS) -> [`check`],
//! [`serve`] and [`cli`] -> the binary.
//!
//! The library's API, for the binary, the tests, benchmarks and embedders:
//! [`policy::Engine`] with [`policy::Snapshot`] and [`policy::Change`] (judge,
//! mutate, generate), [`model::Object`], [`manifest::load_paths`],
//! [`files::desired`], [`check::check`], [`admission::Admission`] over a
//! [`admission::SnapshotSource`], [`server::serve_with`], [`cluster::live::Live`]
//! and [`serve::run`]; and the parts the integration tests drive on their own
//! (certificates, TLS, the supervisor, the watch and the controller).
//!
//! The rules themselves, the live index's internals, the re-read and the
//! decode/encode steps are `pub(crate)`: they change with every rule and are
//! reached through the entry points above.

pub mod admission;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod files;
pub mod manifest;
pub mod model;
pub(crate) mod pki;
pub mod policy;
pub mod serve;
pub mod server;
pub mod supervisor;
