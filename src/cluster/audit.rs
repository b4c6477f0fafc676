//! The background audit: admission only sees writes, so routes break
//! without one (a DestinationRule deleted while the webhook was down, an
//! exempt user's change, objects older than routeguard). The elected leader
//! judges every routing object of the index as if it were created now
//! ([`Engine::audit`]) and says what it found three ways: the
//! `routeguard_audit_findings` gauge, one Warning Event per object, code and
//! hour, and a PolicyReport per namespace ([`reports`], pure).
//!
//! A pass runs once the index is synced and this replica leads, then after
//! changes (debounced: within [`AuditSettings::max_delay`] of the first
//! change, so within 2 s of the last), and every [`AuditSettings::interval`].
//! A pass after a change judges again only the routing objects the change
//! can affect ([`Engine::audit_since`]); the first pass, the interval's and
//! the one on gaining the lease judge the whole index. Judging runs on the
//! blocking pool. Leadership is
//! checked right before each write (report or Event), as the controller does.
//! Without the PolicyReport CRD (a 404 on the list), that is logged once and
//! the audit goes on for the metric and the Events.

pub mod reports;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use kube::api::{ApiResource, DeleteParams, ListParams, PostParams, Preconditions};
use kube::core::{DynamicObject, GroupVersionKind};
use serde_json::Value;
use tokio::sync::watch as channel;
use tokio::time::Instant;

use crate::admission::{SharedSnapshot, SnapshotSource};
use crate::model::ObjectKey;
use crate::policy::{Audited, Engine, Finding, Snapshot};

use super::events::{self, Event, EventType, Recorder};
use super::lease::Leadership;
use super::metrics::ClusterStatus;
use super::retry::{Backoff, Retries};
use super::{ClusterError, FIELD_MANAGER, within};
use reports::{ReportAction, Resource, Timestamp};
use schedule::{Pass, Schedule};

/// Deadline of each API call of the audit.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest interval between passes.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// How often a replica that does not lead, or an index not synced yet, is looked at again.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// How the audit runs.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// A full pass at least this often.
    pub interval: Duration,
    /// Quiet time after a change before a pass.
    pub debounce: Duration,
    /// The longest a pass waits for quiet after a change.
    pub max_delay: Duration,
    /// Write PolicyReports (else only the metric and Events).
    pub reports: bool,
    /// The watched namespaces (reports are listed in each); empty: all.
    pub namespaces: Vec<String>,
    /// At most one Warning Event per object and code in this window.
    pub event_window: Duration,
}

impl Default for AuditSettings {
    /// Every 5 minutes, within 2 s of a change, reports on, one Event per hour.
    fn default() -> AuditSettings {
        AuditSettings {
            interval: Duration::from_secs(300),
            debounce: Duration::from_secs(1),
            max_delay: Duration::from_secs(2),
            reports: true,
            namespaces: Vec::new(),
            event_window: Duration::from_secs(3600),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub findings: usize,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub failed: u64,
    pub events: u64,
    /// The PolicyReport CRD is not installed: no reports were written.
    pub no_crd: bool,
    /// The pass stopped writing because the Lease was no longer held.
    pub lost_lease: bool,
}

/// Runs audit passes and carries out their writes.
pub struct Auditor {
    client: kube::Client,
    engine: Arc<Engine>,
    live: Arc<SharedSnapshot>,
    status: Arc<ClusterStatus>,
    leadership: Arc<Leadership>,
    recorder: Recorder,
    settings: AuditSettings,
    /// The Events reported, by object and code.
    events: Retries<ObjectKey>,
    /// The CRD was found absent (logged once until it appears).
    no_crd: bool,
    /// The last pass and the snapshot it judged: the next pass after a change
    /// judges again only what the change can affect ([`Engine::audit_since`]).
    last: Option<(Arc<Snapshot>, Audited)>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").finish_non_exhaustive()
    }
}

/// The PolicyReport resource.
fn resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", reports::KIND);
    ApiResource::from_gvk_with_plural(&gvk, reports::PLURAL)
}

impl Auditor {
    /// An auditor reporting Events as `routeguard` from `identity`, writing only while `leadership` is held.
    pub fn new(
        client: kube::Client,
        engine: Arc<Engine>,
        live: Arc<SharedSnapshot>,
        status: Arc<ClusterStatus>,
        leadership: Arc<Leadership>,
        identity: &str,
        settings: AuditSettings,
    ) -> Auditor {
        let recorder = Recorder::new(&client, identity);
        let events = Retries::new(Backoff::default(), settings.event_window);
        // An interval of zero would audit without pause.
        let settings = AuditSettings { interval: settings.interval.max(MIN_INTERVAL), ..settings };
        Auditor { client, engine, live, status, leadership, recorder, settings, events, no_crd: false, last: None }
    }

    /// True while this replica may write: asked right before each write.
    fn leading(&self) -> bool {
        self.status.is_leader() && self.leadership.is_held()
    }

    /// Runs until the index is dropped (see the module doc for when a pass runs).
    pub async fn run(mut self, mut publishes: channel::Receiver<u64>) {
        let mut schedule = Schedule::new(Instant::now(), self.settings.interval);
        loop {
            let leader = self.leading();
            if schedule.leading(leader) == Some(false) {
                self.status.clear_audit();
                // A follower keeps no old snapshot alive.
                self.last = None;
            }
            let now = Instant::now();
            if let Some(pass) = schedule.due(now, self.status.is_synced()) {
                if pass == Pass::Whole {
                    self.last = None;
                }
                self.audit().await;
            }
            let wait = schedule.wait(Instant::now(), IDLE_POLL);
            tokio::select! {
                changed = publishes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    debounce(&mut publishes, self.settings.debounce, self.settings.max_delay).await;
                    schedule.changed();
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass against the current snapshot: scoped to what changed since
    /// the last pass when there was one, else whole (the interval's passes are).
    pub async fn audit(&mut self) -> Outcome {
        let snapshot = self.live.current();
        let engine = self.engine.clone();
        let now = Timestamp::now();
        let last = self.last.take();
        let judged = tokio::task::spawn_blocking(move || {
            let audited = match last {
                Some((before, previous)) => engine.audit_since(&before, previous, &snapshot),
                None => engine.audit_all(&snapshot),
            };
            let findings = audited.findings();
            let desired = reports::desired(&findings, &snapshot, now);
            let resources: Vec<Resource> = findings.iter().map(|f| Resource::of(f, &snapshot)).collect();
            (findings, desired, resources, (snapshot, audited))
        })
        .await;
        let (findings, desired, resources, last) = match judged {
            Ok(judged) => judged,
            // A panic in judging must not pass silently: the supervisor sees the task end.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Outcome::default(),
        };
        tracing::debug!(
            judged = last.1.judged(),
            whole = last.1.whole(),
            findings = findings.len(),
            namespaces = desired.len(),
            "audited"
        );
        self.last = Some(last);
        self.status.audited(&reports::tally(&findings));
        let mut outcome = Outcome { findings: findings.len(), ..Outcome::default() };
        if self.settings.reports {
            self.write_reports(&desired, &mut outcome).await;
        }
        self.events(&findings, &resources, &mut outcome).await;
        outcome
    }

    /// The reports labelled as routeguard's, in every watched namespace (a
    /// 404: the CRD is not installed).
    async fn existing(&mut self) -> Result<Vec<Value>, ClusterError> {
        let params = ListParams::default().labels(&format!("{}={}", reports::MANAGED_BY, reports::SOURCE));
        let mut out = Vec::new();
        let scopes: Vec<Option<&str>> = if self.settings.namespaces.is_empty() {
            vec![None]
        } else {
            self.settings.namespaces.iter().map(|n| Some(n.as_str())).collect()
        };
        for scope in scopes {
            let api: Api<DynamicObject> = match scope {
                Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource()),
                None => Api::all_with(self.client.clone(), &resource()),
            };
            let listed = within("list policyreports", CALL_TIMEOUT, api.list(&params)).await?;
            for item in listed.items {
                out.push(serde_json::to_value(item).map_err(|e| ClusterError::Invalid {
                    what: "list policyreports".into(),
                    message: e.to_string(),
                })?);
            }
        }
        Ok(out)
    }

    async fn write_reports(&mut self, desired: &std::collections::BTreeMap<String, Value>, outcome: &mut Outcome) {
        let existing = match self.existing().await {
            Ok(existing) => {
                if std::mem::take(&mut self.no_crd) {
                    tracing::info!("the PolicyReport CRD is installed now: writing reports");
                }
                existing
            }
            Err(e) if e.is_not_found() => {
                if !std::mem::replace(&mut self.no_crd, true) {
                    tracing::info!(
                        "the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) is not installed: no reports; the audit goes on for metrics and Events"
                    );
                }
                outcome.no_crd = true;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the PolicyReports; none written this pass");
                outcome.failed += 1;
                return;
            }
        };
        for action in reports::plan(desired, &existing) {
            // Right before the write: the Lease may have expired during this pass.
            if !self.leading() {
                tracing::info!(namespace = action.namespace(), "the lease is no longer held: no more writes");
                outcome.lost_lease = true;
                return;
            }
            let namespace = action.namespace().to_string();
            match self.execute(&action).await {
                Ok(()) => match action {
                    ReportAction::Create { .. } => outcome.created += 1,
                    ReportAction::Update { .. } => outcome.updated += 1,
                    ReportAction::Delete { .. } => outcome.deleted += 1,
                },
                Err(e) => {
                    // The next pass plans from a fresh list: no retry bookkeeping needed.
                    tracing::warn!(namespace, error = %e, "cannot write the PolicyReport");
                    outcome.failed += 1;
                }
            }
        }
    }

    async fn execute(&self, action: &ReportAction) -> Result<(), ClusterError> {
        let namespace = action.namespace();
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource());
        let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_string()) };
        let invalid =
            |e: serde_json::Error| ClusterError::Invalid { what: "policyreport".into(), message: e.to_string() };
        match action {
            ReportAction::Create { body, .. } => {
                let object: DynamicObject = serde_json::from_value(body.clone()).map_err(invalid)?;
                let what = format!("create policyreport {namespace}/{}", reports::NAME);
                within(&what, CALL_TIMEOUT, api.create(&params, &object)).await?;
                tracing::info!(namespace, "policy report created");
            }
            ReportAction::Update { body, .. } => {
                let object: DynamicObject = serde_json::from_value(body.clone()).map_err(invalid)?;
                let what = format!("replace policyreport {namespace}/{}", reports::NAME);
                within(&what, CALL_TIMEOUT, api.replace(reports::NAME, &params, &object)).await?;
                tracing::info!(namespace, "policy report updated");
            }
            ReportAction::Delete { uid, .. } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: uid.clone(), resource_version: None }),
                    ..DeleteParams::default()
                };
                let what = format!("delete policyreport {namespace}/{}", reports::NAME);
                match within(&what, CALL_TIMEOUT, api.delete(reports::NAME, &params)).await {
                    Ok(_) => tracing::info!(namespace, "policy report deleted: no findings left"),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// A Warning Event on each offending object, at most once per object, code and window.
    async fn events(&mut self, findings: &[Finding], resources: &[Resource], outcome: &mut Outcome) {
        let now = Instant::now();
        self.events.retain(now, |_| true);
        for (finding, resource) in findings.iter().zip(resources) {
            if !self.leading() {
                outcome.lost_lease = true;
                return;
            }
            if !self.events.report(&resource.key, finding.code.as_str(), now) {
                continue;
            }
            let reference = events::object(&resource.key, resource.api_version.clone(), resource.uid.clone());
            let note = events::note(&finding.summary());
            let event = Event {
                type_: EventType::Warning,
                reason: finding.code.as_str().to_string(),
                note: Some(note),
                action: "Audit".to_string(),
                secondary: None,
            };
            match self.recorder.publish(&event, &reference).await {
                Ok(()) => outcome.events += 1,
                Err(e) => tracing::debug!(object = %resource.key, error = %e, "cannot publish an Event"),
            }
        }
    }
}

/// Waits until no publish came for `quiet`, or `max_delay` passed.
async fn debounce(publishes: &mut channel::Receiver<u64>, quiet: Duration, max_delay: Duration) {
    let until = Instant::now() + max_delay;
    loop {
        tokio::select! {
            changed = publishes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(quiet) => return,
            () = tokio::time::sleep_until(until) => return,
        }
    }
}
