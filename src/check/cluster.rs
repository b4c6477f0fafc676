//! `routeguard check --cluster`: the cluster's current state read once, the
//! files judged on top of it (see [`super::check_cluster`]).

use std::path::{Path, PathBuf};

use crate::cluster::{self, ClusterError, inventory};
use crate::files::{self, FileError};
use crate::manifest;
use crate::policy::{Engine, Snapshot};

use super::{Report, check_cluster};

/// Why `check --cluster` could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ClusterCheckError {
    #[error(transparent)]
    File(#[from] FileError),
    /// No configuration, or not the asked context.
    #[error("reading the cluster: {0}")]
    Config(ClusterError),
    #[error("reading the cluster at {url}: {source}")]
    Read {
        url: String,
        #[source]
        source: ClusterError,
    },
    #[error("cannot start the runtime that reads the cluster: {0}")]
    Runtime(#[from] std::io::Error),
}

/// What `check --cluster` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ClusterCheck<'a> {
    pub policy: Option<&'a Path>,
    /// Manifest files or folders; none audits the cluster as it is.
    pub paths: &'a [PathBuf],
    /// Namespace for objects that name none.
    pub namespace: &'a str,
    /// Only findings in this namespace.
    pub scope: Option<&'a str>,
    /// The kubeconfig context; empty: the current one (or in-cluster).
    pub context: &'a str,
    /// Judge what routeguard's generator would make of the files.
    pub generate: bool,
}

/// Reads the files first (a typo fails before any request), then the cluster, then judges.
pub fn run(request: &ClusterCheck<'_>) -> Result<Report, ClusterCheckError> {
    let policy = files::load_policy(request.policy)?;
    let loaded = manifest::load_paths(request.paths, request.namespace).map_err(FileError::from)?;
    let engine = Engine::new(policy);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let empty = Snapshot::for_policy(engine.policy());
    let read = runtime.block_on(async {
        let config = cluster::config(request.context).await.map_err(ClusterCheckError::Config)?;
        let url = config.cluster_url.to_string();
        let read = async { inventory::read(&cluster::client_for(config)?, empty, request.scope).await };
        read.await.map_err(|source| ClusterCheckError::Read { url, source })
    })?;
    let mut report = check_cluster(&engine, read.snapshot, loaded, request.scope, request.generate);
    report.notices.splice(0..0, read.notices);
    Ok(report)
}
