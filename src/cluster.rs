//! Live cluster mode: the index the webhook judges against, kept current from
//! the API server, and the controller that creates what the policy generates.
//!
//! Layers: this module sits beside [`admission`](crate::admission) and shares
//! the [`policy`](crate::policy) with it; the [`server`](crate::server) wires
//! both together. Pure logic (event -> index operation, desired vs actual ->
//! actions, lease and renewal decisions) lives in plain functions with unit
//! tests beside them; the parts that talk to the API server are thin.
//!
//! - [`kinds`]: the watched kinds, the API version each one is served in.
//! - [`index`]: the live index ([`crate::admission::SharedSnapshot`], a
//!   [`SnapshotSource`](crate::admission::SnapshotSource)) and how watch
//!   events update it. Publishing: events change a private copy at once;
//!   a new `Arc<Snapshot>` is published at most every [`index::PUBLISH_EVERY`]
//!   and costs a constant: the index is made of persistent maps, so a copy
//!   shares everything the changes did not touch.
//! - [`watch`]: one watcher per kind (and namespace), discovery of absent
//!   kinds, back-off and resync; [`watched`]: the objects it reads, decoded
//!   in one pass without the parts the index never keeps.
//! - [`reread`] and [`admit`]: before refusing for a missing subset, host, backend
//!   or gateway (RG103, RG104, RG107, RG114), re-read the objects involved and judge again.
//! - [`reconcile`] (pure) and [`controller`]: server-side apply of the
//!   generated objects, pruning, Events; [`retry`] (pure): per-object
//!   backoff of failed writes and at most one Warning Event per window.
//! - [`audit`] (its [`reports`](audit::reports) pure): the leader's background
//!   audit of every routing object, its PolicyReports, metric and Warning Events.
//! - [`inventory`]: the cluster listed once into a snapshot, for `check --cluster`.
//! - [`lease`]: leader election with a `coordination.k8s.io/v1` Lease.
//! - [`ca`] (pure) and [`selftls`]: the self-managed CA and serving
//!   certificate in a Secret, and the CA bundle of the webhook configurations.
//! - [`metrics`]: objects per kind, sync state, reconcile and lease counters.
//! - [`live`]: all of the above started together, for the server, under one
//!   [`Supervisor`](crate::supervisor::Supervisor) (a task that ends is a death).
//!
//! # RBAC the binary needs
//!
//! ClusterRole (the watched kinds; every namespace, or bind it per namespace
//! with RoleBindings when `--watch-namespaces` is set):
//!
//! | apiGroups | resources | verbs |
//! | --- | --- | --- |
//! | `""` | `services` | get, list, watch, create, patch, delete |
//! | `apps` | `deployments` | get, list, watch |
//! | `networking.istio.io` | `destinationrules` | get, list, watch, create, patch, delete |
//! | `networking.istio.io` | `virtualservices`, `serviceentries` | get, list, watch |
//! | `gateway.networking.k8s.io` | `httproutes`, `referencegrants` | get, list, watch |
//! | `events.k8s.io` | `events` | create, patch |
//! | `wgpolicyk8s.io` | `policyreports` | get, list, watch, create, update, patch, delete (with `--policy-reports`) |
//! | `admissionregistration.k8s.io` | `mutatingwebhookconfigurations`, `validatingwebhookconfigurations` | get, list, watch, patch (resourceNames: the `--mutating-webhook` and `--validating-webhook` names; only with `--tls-secret`) |
//!
//! `list` and `watch` of the webhook configurations are limited by
//! resourceNames too: routeguard watches each with `fieldSelector
//! metadata.name=<name>`, which RBAC matches against resourceNames.
//!
//! `create`, `patch` and `delete` on Services and DestinationRules are only
//! needed with `--generate` (server-side apply of a new object needs both
//! create and patch). Discovery (`GET /apis/<group>/<version>`) is allowed to
//! every authenticated user by the default `system:discovery` role.
//!
//! Role in the `--service-namespace`:
//!
//! | apiGroups | resources | verbs |
//! | --- | --- | --- |
//! | `coordination.k8s.io` | `leases` | create; get, update (resourceNames: `--leader-election-lease`) |
//! | `""` | `secrets` | create; get, update (resourceNames: `--tls-secret`; only with `--tls-secret`) |
//!
//! `create` cannot be limited by resourceNames in Kubernetes RBAC, hence the
//! separate rule.
//!
//! # What routeguard creates and never touches
//!
//! It creates and updates only objects labelled
//! `app.kubernetes.io/managed-by: routeguard` (DestinationRules named like a
//! Service, per-version Services `<service>-<version>`), with ownerReferences
//! (per-version Service -> its Deployments; DestinationRule -> its Service).
//! The one exception: a user's DestinationRule annotated
//! `routeguard.io/manage-subsets: "true"` gets missing subsets appended (a JSON
//! Patch guarded by its resourceVersion; the added names are recorded in the
//! `routeguard.io/generated-subsets` annotation). Nothing else is modified or
//! deleted.

pub(crate) mod admit;
pub mod audit;
pub mod ca;
pub mod controller;
pub mod events;
pub mod index;
pub(crate) mod inventory;
pub(crate) mod kinds;
pub mod lease;
pub mod live;
pub mod metrics;
pub mod reconcile;
pub(crate) mod reread;
pub mod retry;
pub mod selftls;
pub mod watch;
pub mod watched;

use std::time::Duration;

/// The field manager of every write routeguard makes.
pub const FIELD_MANAGER: &str = "routeguard";

/// Why talking to the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No in-cluster configuration and no usable kubeconfig.
    #[error("cannot find the cluster configuration (in-cluster or KUBECONFIG): {0}")]
    Config(String),
    /// The API server answered with an error status.
    #[error("{what}: the API server answered {code} {reason}: {message}")]
    Api { what: String, code: u16, reason: String, message: String },
    /// The request did not complete (connection, TLS, decoding).
    #[error("{what}: {message}")]
    Request { what: String, message: String },
    /// The request took longer than allowed.
    #[error("{what}: no answer within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    /// What the API server sent is not what was expected.
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    /// A certificate could not be made or read.
    #[error("certificate: {0}")]
    Cert(String),
}

impl ClusterError {
    /// Wraps a kube error, keeping the API status when there is one.
    pub fn kube(what: impl Into<String>, error: kube::Error) -> ClusterError {
        let what = what.into();
        match error {
            kube::Error::Api(status) => ClusterError::Api {
                what,
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => ClusterError::Request { what, message: other.to_string() },
        }
    }

    /// The HTTP status the API server answered, if it answered with one.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClusterError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// 404: the object (or the resource type) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 409: a conflict (AlreadyExists, a stale resourceVersion, a field manager conflict).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// 403: RBAC does not allow it.
    pub fn is_forbidden(&self) -> bool {
        self.code() == Some(403)
    }
}

/// Runs `call` with a deadline, mapping errors and timeouts to [`ClusterError`].
pub async fn within<T>(
    what: &str,
    timeout: Duration,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ClusterError::kube(what, e)),
        Err(_) => Err(ClusterError::Timeout { what: what.to_string(), timeout }),
    }
}

/// A client for the cluster: in-cluster configuration when running in a pod,
/// else `KUBECONFIG` (or `~/.kube/config`).
pub async fn connect() -> Result<kube::Client, ClusterError> {
    client_for(config("").await?)
}

/// The configuration of `context` in the kubeconfig; with none named, what
/// `kubectl` would use (`KUBECONFIG`, `~/.kube/config`) or the in-cluster one.
pub async fn config(context: &str) -> Result<kube::Config, ClusterError> {
    install_ring();
    let found = if context.is_empty() {
        kube::Config::infer().await.map_err(|e| e.to_string())
    } else {
        let options = kube::config::KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
        kube::Config::from_kubeconfig(&options).await.map_err(|e| e.to_string())
    };
    found.map_err(ClusterError::Config)
}

/// A client for one configuration (tests point it at a fake API server).
pub fn client_for(mut config: kube::Config) -> Result<kube::Client, ClusterError> {
    install_ring();
    // Watches are long requests with their own server-side timeout; every
    // other call has a deadline of its own (see [`within`]).
    config.read_timeout = Some(Duration::from_secs(330));
    config.connect_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).map_err(|e| ClusterError::Config(e.to_string()))
}

/// Makes ring the process-wide rustls provider (the only one routeguard builds with).
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The identity of this replica: `POD_NAME` (the chart sets it from the
/// downward API), else the host name, plus a random suffix so two processes
/// on one host differ.
pub fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "routeguard".to_string());
    let mut bytes = [0u8; 4];
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mixed = nanos ^ u128::from(std::process::id()).rotate_left(64);
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (mixed >> (i * 8)) as u8;
    }
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{base}_{suffix}")
}
