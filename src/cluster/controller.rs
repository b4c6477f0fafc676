//! The generator controller: when the index changes (a watch event, not an
//! admission request, so a dry run never creates anything), wait a short
//! debounce, and if this replica leads and the index is synced, carry out the
//! [`reconcile::plan`]: server-side apply (field manager `routeguard`, forced
//! for the objects routeguard owns), JSON Patches of opted-in
//! DestinationRules, deletions with uid and resourceVersion preconditions,
//! and an Event for each (or a Warning Event when it fails).
//!
//! - Leadership is checked right before every write (each action's request
//!   and each Event), by [`Leadership::is_held`]: a pass may outlive the
//!   Lease, and a replica that lost it must write nothing more.
//! - A failed write is retried with a per-object exponential backoff with
//!   jitter ([`Retries`]; 1 s doubling to 5 min), not on every pass, and at
//!   most one Warning Event per object and reason is reported per window
//!   (10 min), so a missing RBAC rule does not become an Event storm.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::DynamicObject;
use serde_json::Value;
use tokio::sync::watch as channel;
use tokio::time::Instant;

use crate::admission::{SharedSnapshot, SnapshotSource};
use crate::model::{Kind, ObjectKey};
use crate::policy::{Engine, Snapshot};

use super::events::{self, Event, EventType, Recorder};
use super::kinds::Served;
use super::lease::Leadership;
use super::metrics::{ClusterStatus, KindState};
use super::reconcile::{self, Action, Inputs, Settled};
use super::retry::{self, Backoff, Retries};
use super::{ClusterError, FIELD_MANAGER, within};

/// How long one write may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Writes in flight at once. kube's client has no rate limiter of its own;
/// this bound keeps the API server's priority and fairness queue for
/// routeguard short while a bootstrap of thousands of objects goes quickly.
pub const WRITES_IN_FLIGHT: usize = 8;

/// Timing of the controller.
#[derive(Debug, Clone, Copy)]
pub struct ControllerSettings {
    /// Quiet time after a change before reconciling (changes keep coming in a `kubectl apply -f dir/`).
    pub debounce: Duration,
    /// The longest a reconcile waits for quiet.
    pub max_delay: Duration,
    /// Reconcile at least this often.
    pub resync: Duration,
    /// How a failed write of one object is retried.
    pub retry: Backoff,
    /// At most one Warning Event per object and reason in this window.
    pub event_window: Duration,
    /// A write that succeeded is not repeated for this long: the watch
    /// brings it meanwhile, and until then the index still shows the old state.
    pub settle: Duration,
}

impl Default for ControllerSettings {
    fn default() -> ControllerSettings {
        ControllerSettings {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            resync: Duration::from_secs(300),
            retry: Backoff::default(),
            event_window: Duration::from_secs(600),
            settle: Duration::from_secs(3),
        }
    }
}

/// The outcome of one reconcile.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub applied: u64,
    pub pruned: u64,
    pub failed: u64,
    /// Actions not tried in this pass: their object is backing off.
    pub deferred: u64,
    /// The pass stopped because the Lease was no longer held.
    pub lost_lease: bool,
}

/// Carries out plans against the API server.
pub struct Controller {
    client: kube::Client,
    engine: Arc<Engine>,
    live: Arc<SharedSnapshot>,
    status: Arc<ClusterStatus>,
    leadership: Arc<Leadership>,
    recorder: Recorder,
    /// Actions done lately, by object: (what the action was, when); kept for
    /// [`ControllerSettings::settle`].
    recent: HashMap<ObjectKey, (Settled, Instant)>,
    settle: Duration,
    /// Backoff of failed writes and the Warning Events reported, by object.
    retries: Retries<ObjectKey>,
    /// The snapshot the last pass reconciled: the next pass after a change
    /// reconciles only the Services the changes since touch.
    last: Option<Arc<Snapshot>>,
    /// When the last pass over everything ran.
    last_full: Option<Instant>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller reporting Events as `routeguard` from `identity`, writing
    /// only while `leadership` is held. Failed writes back off with the
    /// default [`ControllerSettings`] until [`Controller::run`] sets its own.
    pub fn new(
        client: kube::Client,
        engine: Arc<Engine>,
        live: Arc<SharedSnapshot>,
        status: Arc<ClusterStatus>,
        leadership: Arc<Leadership>,
        identity: &str,
    ) -> Controller {
        let recorder = Recorder::new(&client, identity);
        let defaults = ControllerSettings::default();
        Controller {
            client,
            engine,
            live,
            status,
            leadership,
            recorder,
            recent: HashMap::new(),
            settle: defaults.settle,
            retries: Retries::new(defaults.retry, defaults.event_window),
            last: None,
            last_full: None,
        }
    }

    /// Runs until the index is dropped: reconciles after changes (debounced),
    /// on resync, on gaining the lease and when a failed object is due again.
    pub async fn run(mut self, mut publishes: channel::Receiver<u64>, settings: ControllerSettings) {
        self.retries = Retries::new(settings.retry, settings.event_window);
        self.settle = settings.settle;
        let mut was_leader = false;
        loop {
            let now = Instant::now();
            // Never less than the debounce: a due object that cannot be tried
            // (not leading, not synced) must not spin the loop.
            let wait = self
                .retries
                .next_due()
                .map_or(settings.resync, |at| at.saturating_duration_since(now))
                .clamp(settings.debounce, settings.resync.max(settings.debounce));
            let changed = tokio::select! {
                changed = publishes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    true
                }
                () = tokio::time::sleep(wait) => false,
                () = self.status.leader_changed() => true,
            };
            if changed {
                debounce(&mut publishes, settings).await;
            }
            let leader = self.status.is_leader() && self.leadership.is_held();
            if leader && !was_leader {
                tracing::info!("leading: reconciling generated objects");
            }
            if !leader && was_leader {
                // Whoever leads next (maybe this replica again) starts afresh.
                self.retries.clear_failures();
            }
            was_leader = leader;
            if !leader || !self.status.is_synced() {
                self.last = None;
                continue;
            }
            // After a change, the Services it touches; on resync, on gaining
            // the lease and when a failed write is due again, everything.
            // Changes that never stop (a busy cluster) must not starve the
            // resync or the retries of objects they do not touch.
            let now = Instant::now();
            let retry_due = self.retries.next_due().is_some_and(|at| at <= now);
            let resync_due = self.last_full.is_none_or(|at| now.saturating_duration_since(at) >= settings.resync);
            if changed && !retry_due && !resync_due {
                self.reconcile_changes().await;
            } else {
                self.reconcile().await;
            }
        }
    }

    /// True while this replica may write: asked right before each write.
    fn leading(&self) -> bool {
        self.leadership.is_held()
    }

    /// One reconcile of everything against the current snapshot.
    pub async fn reconcile(&mut self) -> Outcome {
        self.pass(false).await
    }

    /// One reconcile of the Services that the changes since the last pass
    /// touch ([`reconcile::affected_services`]); of everything when there was
    /// no last pass or the snapshot's log no longer reaches back to it.
    pub async fn reconcile_changes(&mut self) -> Outcome {
        self.pass(true).await
    }

    async fn pass(&mut self, scoped: bool) -> Outcome {
        let snapshot = self.live.current();
        let before = if scoped { self.last.clone() } else { None };
        self.last = Some(snapshot.clone());
        let rule_version = self.status.version(Kind::DestinationRule);
        let engine = self.engine.clone();
        // Generation and planning cost what they look at: on the blocking
        // pool, never on the async workers that answer admission requests.
        let planned = tokio::task::spawn_blocking(move || {
            let scope = before.and_then(|before| {
                let changed = snapshot.changes_since(before.revision())?;
                Some(reconcile::affected_services(&before, &snapshot, changed))
            });
            let desired = match &scope {
                Some(services) => engine.generate_for(&snapshot, services.iter().filter_map(|k| snapshot.get(k))),
                None => engine.generate(&snapshot),
            };
            let actions = reconcile::plan(
                Inputs {
                    policy: engine.policy(),
                    snapshot: &snapshot,
                    desired: &desired,
                    rule_api_version: rule_version.as_deref().unwrap_or("networking.istio.io/v1"),
                },
                scope.as_ref(),
            );
            (actions, scope.is_some())
        })
        .await;
        let (actions, was_scoped) = match planned {
            Ok(planned) => planned,
            // A panic in planning must not pass silently: the supervisor sees the task end.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down.
            Err(_) => return Outcome::default(),
        };
        let now = Instant::now();
        let settle = self.settle;
        self.recent.retain(|_, (_, at)| now.saturating_duration_since(*at) < settle);
        if !was_scoped {
            self.last_full = Some(now);
            // Backoff state of objects no longer planned goes; a scoped pass
            // plans only some objects, so it keeps the others' state.
            let planned: std::collections::HashSet<&ObjectKey> = actions.iter().map(Action::key).collect();
            self.retries.retain(now, |key| planned.contains(key));
        }
        let mut outcome = Outcome::default();
        let mut writes: Vec<Action> = Vec::new();
        for action in actions {
            // No DestinationRules without their CRD.
            if action.key().kind == Kind::DestinationRule
                && self.status.state(Kind::DestinationRule) == KindState::Absent
            {
                continue;
            }
            if self.recent.get(action.key()).is_some_and(|(done, _)| *done == action.settled()) {
                continue;
            }
            if !self.retries.due(action.key(), Instant::now()) {
                outcome.deferred += 1;
                continue;
            }
            writes.push(action);
        }
        // Applies and patches first, then deletions (the plan's order), each
        // phase with up to WRITES_IN_FLIGHT requests at once: a bootstrap of
        // thousands of per-version Services takes seconds, not minutes.
        let (deletes, applies): (Vec<Action>, Vec<Action>) =
            writes.into_iter().partition(|a| matches!(a, Action::Delete { .. }));
        for phase in [applies, deletes] {
            if outcome.lost_lease {
                break;
            }
            let done = self.write_all(phase).await;
            for (action, result) in done {
                let Some(result) = result else {
                    outcome.lost_lease = true;
                    continue;
                };
                self.record(action, result, &mut outcome).await;
            }
        }
        self.status.reconciled(outcome.applied, outcome.pruned, outcome.failed);
        outcome
    }

    /// Carries out `actions`, at most [`WRITES_IN_FLIGHT`] at once. An action
    /// whose turn comes after the Lease was lost is not tried (`None`).
    async fn write_all(&self, actions: Vec<Action>) -> Vec<(Action, Option<Result<(), ClusterError>>)> {
        futures::stream::iter(actions)
            .map(|action| async move {
                // Right before the write: the Lease may have expired during this pass.
                if !self.leading() {
                    tracing::info!(object = %action.key(), "the lease is no longer held: no more writes");
                    return (action, None);
                }
                let result = self.execute(&action).await;
                (action, Some(result))
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await
    }

    /// Books the result of one write: counts, backoff, the Warning Event.
    async fn record(&mut self, action: Action, result: Result<(), ClusterError>, outcome: &mut Outcome) {
        match result {
            Ok(()) => {
                match &action {
                    Action::Delete { .. } => outcome.pruned += 1,
                    Action::PatchSubsets { removed, added, .. } => {
                        outcome.pruned += removed.len() as u64;
                        outcome.applied += u64::from(!added.is_empty());
                    }
                    Action::Apply { .. } => outcome.applied += 1,
                }
                self.retries.succeeded(action.key());
                self.recent.insert(action.key().clone(), (action.settled(), Instant::now()));
            }
            Err(e) => {
                outcome.failed += 1;
                let now = Instant::now();
                let retry_in = self.retries.failed(action.key(), now, retry::sample());
                let failures = self.retries.failures(action.key());
                if stale(&e) {
                    tracing::debug!(object = %action.key(), error = %e, ?retry_in, "stale; the watch will bring the new version");
                    return;
                }
                tracing::warn!(object = %action.key(), error = %e, failures, ?retry_in, "reconcile write failed");
                let reason = failure_reason(&action);
                if self.retries.report(action.key(), reason, now) {
                    self.event(&action, None, EventType::Warning, reason, e.to_string()).await;
                }
            }
        }
    }

    fn api(&self, key: &ObjectKey) -> Api<DynamicObject> {
        let version = match key.kind {
            Kind::DestinationRule => {
                self.status.version(Kind::DestinationRule).unwrap_or_else(|| "networking.istio.io/v1".into())
            }
            _ => "v1".to_string(),
        };
        let served = Served::new(key.kind, version.rsplit('/').next().unwrap_or("v1"));
        Api::namespaced_with(self.client.clone(), &key.namespace, &served.resource)
    }

    async fn execute(&self, action: &Action) -> Result<(), ClusterError> {
        let key = action.key();
        let api = self.api(key);
        match action {
            Action::Apply { body, create, .. } => {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                let what = format!("apply {key}");
                let applied = within(&what, CALL_TIMEOUT, api.patch(&key.name, &params, &Patch::Apply(body))).await?;
                tracing::info!(object = %key, created = create, "applied");
                let (reason, note) =
                    if *create { ("Created", "created by routeguard") } else { ("Updated", "updated by routeguard") };
                self.event(action, applied.metadata.uid.clone(), EventType::Normal, reason, note.to_string()).await;
            }
            Action::PatchSubsets { patch, added, removed, .. } => {
                let patch: json_patch::Patch = serde_json::from_value(patch.clone())
                    .map_err(|e| ClusterError::Invalid { what: format!("patch {key}"), message: e.to_string() })?;
                let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() };
                let what = format!("patch subsets of {key}");
                let patched =
                    within(&what, CALL_TIMEOUT, api.patch(&key.name, &params, &Patch::<Value>::Json(patch))).await?;
                tracing::info!(object = %key, ?added, ?removed, "subsets patched");
                let (reason, note) = if removed.is_empty() {
                    ("SubsetsAdded", format!("routeguard added subsets {}", added.join(", ")))
                } else {
                    ("SubsetsPruned", format!("routeguard removed unused subsets {}", removed.join(", ")))
                };
                self.event(action, patched.metadata.uid.clone(), EventType::Normal, reason, note).await;
            }
            Action::Delete { uid, resource_version, .. } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: uid.clone(), resource_version: resource_version.clone() }),
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                let what = format!("delete {key}");
                match within(&what, CALL_TIMEOUT, api.delete(&key.name, &params)).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => return Ok(()),
                    Err(e) => return Err(e),
                }
                tracing::info!(object = %key, "pruned");
                let note = "pruned by routeguard: no Deployment backs it and no route uses it".to_string();
                self.event(action, uid.clone(), EventType::Normal, "Pruned", note).await;
            }
        }
        Ok(())
    }

    /// Publishes an Event about the action's object, if still leading; failures are logged only.
    async fn event(&self, action: &Action, uid: Option<String>, kind: EventType, reason: &str, note: String) {
        let key = action.key();
        // An Event is a write too: a deposed leader reports nothing.
        if !self.leading() {
            tracing::debug!(object = %key, reason, "the lease is no longer held: no Event");
            return;
        }
        let api_version = match key.kind {
            Kind::DestinationRule => {
                self.status.version(Kind::DestinationRule).unwrap_or_else(|| "networking.istio.io/v1".into())
            }
            _ => "v1".to_string(),
        };
        let reference = events::object(key, api_version, uid);
        let action_name = match action {
            Action::Apply { .. } => "Apply",
            Action::PatchSubsets { .. } => "Patch",
            Action::Delete { .. } => "Delete",
        };
        let note = events::note(&note);
        let event = Event {
            type_: kind,
            reason: reason.to_string(),
            note: Some(note),
            action: action_name.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::debug!(object = %key, error = %e, "cannot publish an Event");
        }
    }
}

/// A write that lost a race (the object changed since it was read).
fn stale(error: &ClusterError) -> bool {
    matches!(error.code(), Some(409 | 422))
}

fn failure_reason(action: &Action) -> &'static str {
    match action {
        Action::Apply { .. } | Action::PatchSubsets { .. } => "GenerateFailed",
        Action::Delete { .. } => "PruneFailed",
    }
}

/// Waits until no publish came for `debounce`, or `max_delay` passed.
async fn debounce(publishes: &mut channel::Receiver<u64>, settings: ControllerSettings) {
    let until = Instant::now() + settings.max_delay;
    loop {
        let quiet = tokio::time::sleep(settings.debounce);
        tokio::select! {
            changed = publishes.changed() => if changed.is_err() { return },
            () = quiet => return,
            () = tokio::time::sleep_until(until) => return,
        }
    }
}
