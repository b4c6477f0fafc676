//! What live mode reports: sync state per kind (what `/readyz` waits for),
//! objects per kind, watch errors, reconcile and lease counters, kept in a
//! `prometheus-client` [`Registry`] of its own (see [`crate::server::metrics`]
//! for why this crate) that the server's `/metrics` encodes after its own
//! families, in the same OpenMetrics response.
//!
//! Per-kind state and object counts are gauges set at scrape time from the
//! kinds map and the current snapshot; everything else is counted as it happens.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::model::Kind;
use crate::policy::Snapshot;

use super::index::Scope;

/// Where one kind stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindState {
    /// Not looked up yet.
    #[default]
    Discovering,
    /// Its CRD is not installed; looked up again later.
    Absent,
    /// Watched; waiting for the first complete list.
    Syncing,
    /// Every watcher of the kind completed a list at least once.
    Synced,
}

impl KindState {
    const ALL: [KindState; 4] = [KindState::Discovering, KindState::Absent, KindState::Syncing, KindState::Synced];

    fn as_str(self) -> &'static str {
        match self {
            KindState::Discovering => "discovering",
            KindState::Absent => "absent",
            KindState::Syncing => "syncing",
            KindState::Synced => "synced",
        }
    }
}

#[derive(Debug, Default)]
struct KindInfo {
    state: KindState,
    version: Option<String>,
    /// Scopes watched and whether each completed a list.
    scopes: BTreeMap<Scope, bool>,
}

/// Labels of the per-kind families.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

impl KindLabels {
    fn of(kind: Kind) -> KindLabels {
        KindLabels { kind: kind.label() }
    }
}

/// Labels of `routeguard_cluster_kind_state`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    kind: &'static str,
    state: &'static str,
}

/// Labels of `routeguard_audit_findings`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AuditLabels {
    code: String,
    severity: String,
    namespace: String,
}

/// Sync state and counters of live mode, shared by its tasks.
#[derive(Debug)]
pub struct ClusterStatus {
    kinds: Mutex<BTreeMap<Kind, KindInfo>>,
    ready: AtomicBool,
    leader: AtomicBool,
    registry: Registry,
    objects: Family<KindLabels, Gauge>,
    kind_state: Family<StateLabels, Gauge>,
    watch_errors: Family<KindLabels, Counter>,
    relists: Family<KindLabels, Counter>,
    synced_gauge: Gauge,
    leader_gauge: Gauge,
    reconciles: Counter,
    reconcile_errors: Counter,
    applied: Counter,
    pruned: Counter,
    rereads: Counter,
    reread_errors: Counter,
    lease_transitions: Counter,
    audit_findings: Family<AuditLabels, Gauge>,
    audits: Counter,
    leader_notify: tokio::sync::Notify,
}

impl Default for ClusterStatus {
    fn default() -> ClusterStatus {
        let mut registry = Registry::default();
        // Counters are registered without `_total`; the encoder appends it to
        // the samples. The registry ends each help text with a period.
        let objects = Family::<KindLabels, Gauge>::default();
        registry.register("routeguard_cluster_objects", "Objects in the live index, by kind", objects.clone());
        let kind_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "routeguard_cluster_kind_state",
            "1 for the state each watched kind is in",
            kind_state.clone(),
        );
        let watch_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "routeguard_cluster_watch_errors",
            "Watch errors by kind (each backs off and resyncs)",
            watch_errors.clone(),
        );
        let relists = Family::<KindLabels, Counter>::default();
        registry.register("routeguard_cluster_relists", "Complete relists after the first, by kind", relists.clone());
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let synced_gauge =
            gauge(&mut registry, "routeguard_cluster_synced", "1 once every present kind completed its first list");
        let leader_gauge =
            gauge(&mut registry, "routeguard_cluster_leader", "1 while this replica holds the lease and reconciles");
        let lease_transitions = counter(
            &mut registry,
            "routeguard_cluster_lease_transitions",
            "Times this replica gained or lost the lease",
        );
        let reconciles = counter(&mut registry, "routeguard_cluster_reconciles", "Reconciles of the generated objects");
        let reconcile_errors =
            counter(&mut registry, "routeguard_cluster_reconcile_errors", "Apply or delete calls that failed");
        let applied = counter(&mut registry, "routeguard_cluster_applied", "Generated objects applied");
        let pruned = counter(&mut registry, "routeguard_cluster_pruned", "Generated objects or subsets pruned");
        let rereads =
            counter(&mut registry, "routeguard_cluster_rereads", "Re-reads before a refusal for a missing object");
        let reread_errors =
            counter(&mut registry, "routeguard_cluster_reread_errors", "Re-reads that failed or timed out");
        let audit_findings = Family::<AuditLabels, Gauge>::default();
        registry.register(
            "routeguard_audit_findings",
            "Findings of the last background audit, by code, severity and namespace (the leader only)",
            audit_findings.clone(),
        );
        let audits = counter(&mut registry, "routeguard_audits", "Background audit passes");
        ClusterStatus {
            kinds: Mutex::default(),
            ready: AtomicBool::default(),
            leader: AtomicBool::default(),
            registry,
            objects,
            kind_state,
            watch_errors,
            relists,
            synced_gauge,
            leader_gauge,
            reconciles,
            reconcile_errors,
            applied,
            pruned,
            rereads,
            reread_errors,
            lease_transitions,
            audit_findings,
            audits,
            leader_notify: tokio::sync::Notify::default(),
        }
    }
}

impl ClusterStatus {
    /// Status for these kinds, all still being discovered.
    pub fn new(kinds: &[Kind]) -> ClusterStatus {
        let status = ClusterStatus::default();
        if let Ok(mut map) = status.kinds.lock() {
            for kind in kinds {
                map.insert(*kind, KindInfo::default());
                status.zero_counters(*kind);
            }
        }
        status
    }

    /// Creates the kind's counters so they are exposed (at 0) before anything happened.
    fn zero_counters(&self, kind: Kind) {
        self.watch_errors.get_or_create(&KindLabels::of(kind)).inc_by(0);
        self.relists.get_or_create(&KindLabels::of(kind)).inc_by(0);
    }

    /// True once every kind is either absent or synced (it stays true).
    pub fn is_synced(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn update(&self, kind: Kind, change: impl FnOnce(&mut KindInfo)) {
        if let Ok(mut map) = self.kinds.lock() {
            let info = map.entry(kind).or_insert_with(|| {
                self.zero_counters(kind);
                KindInfo::default()
            });
            change(info);
            let all = map.values().all(|k| matches!(k.state, KindState::Absent | KindState::Synced));
            if all && !map.is_empty() {
                self.ready.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The kind's CRD is not installed.
    pub fn absent(&self, kind: Kind) {
        self.update(kind, |k| {
            k.state = KindState::Absent;
            k.version = None;
            k.scopes.clear();
        });
    }

    /// The kind is served in `version` and watched in these scopes.
    pub fn watching(&self, kind: Kind, version: &str, scopes: &[Scope]) {
        self.update(kind, |k| {
            k.version = Some(version.to_string());
            k.scopes = scopes.iter().map(|s| (s.clone(), false)).collect();
            k.state = KindState::Syncing;
        });
    }

    /// A list of `scope` completed and was published.
    pub fn synced(&self, scope: &Scope) {
        self.update(scope.kind, |k| {
            if let Some(done) = k.scopes.get_mut(scope) {
                if *done {
                    self.relists.get_or_create(&KindLabels::of(scope.kind)).inc();
                }
                *done = true;
            }
            if k.state == KindState::Syncing && k.scopes.values().all(|d| *d) {
                k.state = KindState::Synced;
            }
        });
    }

    /// A watch of `kind` failed (it backs off and resyncs).
    pub fn watch_error(&self, kind: Kind) {
        self.update(kind, |_| {
            self.watch_errors.get_or_create(&KindLabels::of(kind)).inc();
        });
    }

    /// The state of one kind.
    pub fn state(&self, kind: Kind) -> KindState {
        self.kinds.lock().ok().and_then(|m| m.get(&kind).map(|k| k.state)).unwrap_or_default()
    }

    /// The version a kind is watched in, if it is.
    pub fn version(&self, kind: Kind) -> Option<String> {
        self.kinds.lock().ok().and_then(|m| m.get(&kind).and_then(|k| k.version.clone()))
    }

    /// Whether this replica holds the lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Records leadership; counts changes.
    pub fn set_leader(&self, leader: bool) {
        if self.leader.swap(leader, Ordering::SeqCst) != leader {
            self.lease_transitions.inc();
            self.leader_notify.notify_one();
        }
    }

    /// Resolves after leadership changed (at once if it changed since the last call).
    pub async fn leader_changed(&self) {
        self.leader_notify.notified().await;
    }

    /// Counts one reconcile and its results.
    pub fn reconciled(&self, applied: u64, pruned: u64, errors: u64) {
        self.reconciles.inc();
        self.applied.inc_by(applied);
        self.pruned.inc_by(pruned);
        self.reconcile_errors.inc_by(errors);
    }

    /// Counts a re-read on the admission path (`failed`: it did not complete).
    pub fn reread(&self, failed: bool) {
        self.rereads.inc();
        if failed {
            self.reread_errors.inc();
        }
    }

    /// Records one audit pass: the gauge holds exactly these counts from now on.
    pub fn audited(&self, counts: &BTreeMap<(String, String, String), i64>) {
        self.audits.inc();
        self.audit_findings.clear();
        for ((code, severity, namespace), count) in counts {
            let labels = AuditLabels { code: code.clone(), severity: severity.clone(), namespace: namespace.clone() };
            self.audit_findings.get_or_create(&labels).set(*count);
        }
    }

    /// Drops the audit's gauge (leadership lost: only the leader's audit is current).
    pub fn clear_audit(&self) {
        self.audit_findings.clear();
    }

    /// Audit passes so far (tests and logs).
    pub fn audits(&self) -> u64 {
        self.audits.get()
    }

    /// Objects applied so far (tests and logs).
    pub fn applied(&self) -> u64 {
        self.applied.get()
    }

    /// Appends live mode's families to `out`, with per-kind object counts from
    /// `snapshot`, without the closing `# EOF` (the server's `/metrics` adds it).
    pub fn encode(&self, out: &mut String, snapshot: &Snapshot) -> fmt::Result {
        if let Ok(kinds) = self.kinds.lock() {
            for (kind, info) in kinds.iter() {
                let count = i64::try_from(snapshot.count(*kind)).unwrap_or(i64::MAX);
                self.objects.get_or_create(&KindLabels::of(*kind)).set(count);
                for state in KindState::ALL {
                    let labels = StateLabels { kind: kind.label(), state: state.as_str() };
                    self.kind_state.get_or_create(&labels).set(i64::from(info.state == state));
                }
            }
        }
        self.synced_gauge.set(i64::from(self.is_synced()));
        self.leader_gauge.set(i64::from(self.is_leader()));
        encode_registry(out, &self.registry)
    }

    /// The complete OpenMetrics exposition of live mode alone, `# EOF` included.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.encode(&mut out, snapshot).and_then(|()| encode_eof(&mut out));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn synced_once_every_kind_is_absent_or_synced() {
        let status = ClusterStatus::new(&[Kind::Service, Kind::HttpRoute]);
        assert!(!status.is_synced());
        let shop = Scope { kind: Kind::Service, namespace: Some("shop".into()) };
        let web = Scope { kind: Kind::Service, namespace: Some("web".into()) };
        status.watching(Kind::Service, "v1", &[shop.clone(), web.clone()]);
        status.absent(Kind::HttpRoute);
        status.synced(&shop);
        assert!(!status.is_synced(), "one namespace still lists");
        assert_eq!(status.state(Kind::Service), KindState::Syncing);
        status.synced(&web);
        assert!(status.is_synced());
        // A relist later does not take readiness away.
        status.watch_error(Kind::Service);
        status.synced(&web);
        assert!(status.is_synced());
        let text = status.render(&Snapshot::for_policy(&Policy::default()));
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("routeguard_cluster_kind_state{kind=\"HTTPRoute\",state=\"absent\"} 1"), "{text}");
        assert!(has("routeguard_cluster_kind_state{kind=\"HTTPRoute\",state=\"synced\"} 0"));
        assert!(has("routeguard_cluster_kind_state{kind=\"Service\",state=\"synced\"} 1"));
        assert!(has("routeguard_cluster_watch_errors_total{kind=\"Service\"} 1"));
        assert!(has("routeguard_cluster_watch_errors_total{kind=\"HTTPRoute\"} 0"));
        assert!(has("routeguard_cluster_relists_total{kind=\"Service\"} 1"));
        assert!(has("routeguard_cluster_objects{kind=\"Service\"} 0"));
        assert!(has("routeguard_cluster_synced 1"));
        assert!(has("# TYPE routeguard_cluster_watch_errors counter"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn counts_leadership_changes() {
        let status = ClusterStatus::new(&[]);
        status.set_leader(true);
        status.set_leader(true);
        status.set_leader(false);
        assert!(!status.is_leader());
        let text = status.render(&Snapshot::for_policy(&Policy::default()));
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("routeguard_cluster_lease_transitions_total 2"), "{text}");
        assert!(has("routeguard_cluster_leader 0"));
    }
}
