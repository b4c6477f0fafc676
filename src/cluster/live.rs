//! Live mode assembled: the index, the re-reader, leader election, the
//! generator controller and the background audit, started together; what the
//! server needs from them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::task::AbortHandle;

use crate::admission::SnapshotSource;
use crate::model::Kind;
use crate::policy::{Engine, Snapshot};
use crate::supervisor::Supervisor;

use super::admit::LiveSource;
use super::audit::{AuditSettings, Auditor};
use super::controller::{Controller, ControllerSettings};
use super::lease::{self, Leadership, Timing};
use super::metrics::ClusterStatus;
use super::reread::{REREAD_TIMEOUT, Rereader};
use super::watch::{self, Index, WatchSettings};

/// How live mode runs.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// Run the generator controller (with leader election).
    pub generate: bool,
    /// The Lease's name and namespace.
    pub lease_name: String,
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// How often a kind whose CRD is absent is looked up again.
    pub rediscover_every: Duration,
    /// Deadline of the re-reads on the admission path.
    pub reread_timeout: Duration,
    pub controller: ControllerSettings,
    pub lease: Timing,
    /// Run the background audit (with leader election); `None`: off.
    pub audit: Option<AuditSettings>,
}

impl LiveSettings {
    /// Defaults for a Lease `lease_name` in `lease_namespace` (the generator
    /// on, the audit off: `serve` turns it on).
    pub fn new(lease_name: &str, lease_namespace: &str) -> LiveSettings {
        LiveSettings {
            namespaces: Vec::new(),
            generate: true,
            lease_name: lease_name.to_string(),
            lease_namespace: lease_namespace.to_string(),
            identity: super::identity(),
            rediscover_every: Duration::from_secs(30),
            reread_timeout: REREAD_TIMEOUT,
            controller: ControllerSettings::default(),
            lease: Timing::default(),
            audit: None,
        }
    }
}

/// Live mode, running. Dropping it stops every task.
#[derive(Debug)]
pub struct Live {
    index: Index,
    source: Arc<LiveSource>,
    lease: Option<(Api<Lease>, String, String)>,
    leadership: Arc<Leadership>,
    /// Election and controller, stopped on purpose at shutdown (the index keeps serving admission).
    tasks: Mutex<Vec<AbortHandle>>,
    supervisor: Supervisor,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

impl Live {
    /// Starts watching (and, with `generate` or `audit`, electing; then reconciling, auditing). Must run inside a Tokio runtime.
    ///
    /// Every task runs under a new [`Supervisor`] ([`Live::supervisor`]):
    /// the watchers and index writer, `leader election` (with `generate` or
    /// `audit`), `generator controller`, `background audit`.
    pub fn start(client: kube::Client, engine: Arc<Engine>, settings: LiveSettings) -> Live {
        let supervisor = Supervisor::new();
        let status = Arc::new(ClusterStatus::new(&Kind::ALL));
        let empty = Snapshot::for_policy(engine.policy());
        let watch_settings =
            WatchSettings { namespaces: settings.namespaces.clone(), rediscover_every: settings.rediscover_every };
        let index = watch::start_under(client.clone(), empty, watch_settings, status.clone(), &supervisor);
        let rereader = Rereader::new(client.clone(), status.clone(), settings.reread_timeout);
        let mut tasks = Vec::new();
        let mut lease_api = None;
        let leadership = Arc::new(Leadership::default());
        if settings.generate || settings.audit.is_some() {
            let api: Api<Lease> = Api::namespaced(client.clone(), &settings.lease_namespace);
            let election = lease::run(
                api.clone(),
                settings.lease_name.clone(),
                settings.identity.clone(),
                status.clone(),
                leadership.clone(),
                settings.lease,
            );
            tasks.push(supervisor.spawn("leader election", election));
            lease_api = Some((api, settings.lease_name.clone(), settings.identity.clone()));
        }
        if let Some(audit) = settings.audit.clone() {
            let auditor = Auditor::new(
                client.clone(),
                engine.clone(),
                index.live.clone(),
                status.clone(),
                leadership.clone(),
                &settings.identity,
                audit,
            );
            tasks.push(supervisor.spawn("background audit", auditor.run(index.publishes.clone())));
        }
        if settings.generate {
            let controller =
                Controller::new(client, engine, index.live.clone(), status, leadership.clone(), &settings.identity);
            let run = controller.run(index.publishes.clone(), settings.controller);
            tasks.push(supervisor.spawn("generator controller", run));
        }
        let source = Arc::new(LiveSource::new(index.live.clone(), rereader, settings.generate));
        Live { index, source, lease: lease_api, leadership, tasks: Mutex::new(tasks), supervisor }
    }

    /// The supervisor of live mode's tasks; the server adds its own to it and
    /// waits on [`Supervisor::died`].
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The snapshot source admission judges against, with the re-read before
    /// refusing (one per `Live`, so its rate limit holds for every caller).
    pub fn source(&self) -> Arc<dyn SnapshotSource> {
        self.source.clone()
    }

    /// True once every present kind completed its first list (`/readyz`).
    pub fn is_synced(&self) -> bool {
        self.index.status.is_synced()
    }

    /// Sync state and counters.
    pub fn status(&self) -> &Arc<ClusterStatus> {
        &self.index.status
    }

    /// Whether this replica holds the Lease now, by its own clock.
    pub fn leadership(&self) -> &Arc<Leadership> {
        &self.leadership
    }

    fn stop_tasks(&self) {
        let mut tasks = match self.tasks.lock() {
            Ok(tasks) => tasks,
            Err(poisoned) => poisoned.into_inner(),
        };
        for task in tasks.drain(..) {
            task.abort();
        }
    }

    /// Appends live mode's metric families to `out` (no `# EOF`: see
    /// [`ClusterStatus::encode`]).
    pub fn encode_metrics(&self, out: &mut String) -> std::fmt::Result {
        self.index.status.encode(out, &self.index.live.current())
    }

    /// The complete OpenMetrics exposition of live mode alone (tests and logs).
    pub fn render_metrics(&self) -> String {
        self.index.status.render(&self.index.live.current())
    }

    /// Stops reconciling and gives the Lease up so another replica takes over at once.
    pub async fn shutdown(&self) {
        self.stop_tasks();
        self.leadership.lost();
        if let Some((api, name, identity)) = &self.lease
            && self.index.status.is_leader()
        {
            self.index.status.set_leader(false);
            if let Err(e) = lease::release(api, name, identity).await {
                tracing::warn!(error = %e, "cannot release the lease; another replica takes over when it expires");
            } else {
                tracing::info!(lease = %name, "lease released");
            }
        }
    }
}
