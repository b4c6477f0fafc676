//! What live mode reports: sync state per kind (what `/readyz` waits for),
//! objects per kind, watch errors, reconcile and lease counters, rendered in
//! the Prometheus text format for the server's `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    watch_errors: u64,
    relists: u64,
}

/// Sync state and counters of live mode, shared by its tasks.
#[derive(Debug, Default)]
pub struct ClusterStatus {
    kinds: Mutex<BTreeMap<Kind, KindInfo>>,
    ready: AtomicBool,
    leader: AtomicBool,
    reconciles: AtomicU64,
    reconcile_errors: AtomicU64,
    applied: AtomicU64,
    pruned: AtomicU64,
    rereads: AtomicU64,
    reread_errors: AtomicU64,
    lease_transitions: AtomicU64,
    snapshot_clones: AtomicU64,
    leader_notify: tokio::sync::Notify,
}

impl ClusterStatus {
    /// Status for these kinds, all still being discovered.
    pub fn new(kinds: &[Kind]) -> ClusterStatus {
        let status = ClusterStatus::default();
        if let Ok(mut map) = status.kinds.lock() {
            for kind in kinds {
                map.insert(*kind, KindInfo::default());
            }
        }
        status
    }

    /// True once every kind is either absent or synced (it stays true).
    pub fn is_synced(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn update(&self, kind: Kind, change: impl FnOnce(&mut KindInfo)) {
        if let Ok(mut map) = self.kinds.lock() {
            change(map.entry(kind).or_default());
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
                    k.relists += 1;
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
        self.update(kind, |k| k.watch_errors += 1);
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
            self.lease_transitions.fetch_add(1, Ordering::Relaxed);
            self.leader_notify.notify_one();
        }
    }

    /// Resolves after leadership changed (at once if it changed since the last call).
    pub async fn leader_changed(&self) {
        self.leader_notify.notified().await;
    }

    /// Counts one reconcile and its results.
    pub fn reconciled(&self, applied: u64, pruned: u64, errors: u64) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.applied.fetch_add(applied, Ordering::Relaxed);
        self.pruned.fetch_add(pruned, Ordering::Relaxed);
        self.reconcile_errors.fetch_add(errors, Ordering::Relaxed);
    }

    /// Counts a re-read on the admission path (`failed`: it did not complete).
    pub fn reread(&self, failed: bool) {
        self.rereads.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.reread_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how many publishes had to clone the index.
    pub fn set_snapshot_clones(&self, clones: u64) {
        self.snapshot_clones.store(clones, Ordering::Relaxed);
    }

    /// Objects applied so far (tests and logs).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// The Prometheus text of live mode, with per-kind object counts from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::with_capacity(2048);
        let Ok(kinds) = self.kinds.lock() else { return out };
        header(&mut out, "routeguard_cluster_objects", "gauge", "Objects in the live index, by kind.");
        for kind in kinds.keys() {
            let _ = writeln!(out, "routeguard_cluster_objects{{kind=\"{kind}\"}} {}", snapshot.count(*kind));
        }
        header(&mut out, "routeguard_cluster_kind_state", "gauge", "1 for the state each watched kind is in.");
        for (kind, info) in kinds.iter() {
            for state in [KindState::Discovering, KindState::Absent, KindState::Syncing, KindState::Synced] {
                let on = u8::from(info.state == state);
                let _ =
                    writeln!(out, "routeguard_cluster_kind_state{{kind=\"{kind}\",state=\"{}\"}} {on}", state.as_str());
            }
        }
        header(
            &mut out,
            "routeguard_cluster_watch_errors_total",
            "counter",
            "Watch errors by kind (each backs off and resyncs).",
        );
        for (kind, info) in kinds.iter() {
            let _ = writeln!(out, "routeguard_cluster_watch_errors_total{{kind=\"{kind}\"}} {}", info.watch_errors);
        }
        header(&mut out, "routeguard_cluster_relists_total", "counter", "Complete relists after the first, by kind.");
        for (kind, info) in kinds.iter() {
            let _ = writeln!(out, "routeguard_cluster_relists_total{{kind=\"{kind}\"}} {}", info.relists);
        }
        drop(kinds);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let scalars = [
            (
                "routeguard_cluster_synced",
                "gauge",
                "1 once every present kind completed its first list.",
                u8::from(self.is_synced()).to_string(),
            ),
            (
                "routeguard_cluster_leader",
                "gauge",
                "1 while this replica holds the lease and reconciles.",
                u8::from(self.is_leader()).to_string(),
            ),
            (
                "routeguard_cluster_lease_transitions_total",
                "counter",
                "Times this replica gained or lost the lease.",
                load(&self.lease_transitions),
            ),
            (
                "routeguard_cluster_reconciles_total",
                "counter",
                "Reconciles of the generated objects.",
                load(&self.reconciles),
            ),
            (
                "routeguard_cluster_reconcile_errors_total",
                "counter",
                "Apply or delete calls that failed.",
                load(&self.reconcile_errors),
            ),
            ("routeguard_cluster_applied_total", "counter", "Generated objects applied.", load(&self.applied)),
            ("routeguard_cluster_pruned_total", "counter", "Generated objects or subsets pruned.", load(&self.pruned)),
            (
                "routeguard_cluster_rereads_total",
                "counter",
                "Re-reads before a refusal for a missing object.",
                load(&self.rereads),
            ),
            (
                "routeguard_cluster_reread_errors_total",
                "counter",
                "Re-reads that failed or timed out.",
                load(&self.reread_errors),
            ),
            (
                "routeguard_cluster_snapshot_clones_total",
                "counter",
                "Publishes that cloned the index (a reader held the spare copy).",
                load(&self.snapshot_clones),
            ),
        ];
        for (name, kind, help, value) in scalars {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
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
        assert!(text.contains("routeguard_cluster_kind_state{kind=\"HTTPRoute\",state=\"absent\"} 1"), "{text}");
        assert!(text.contains("routeguard_cluster_kind_state{kind=\"Service\",state=\"synced\"} 1"));
        assert!(text.contains("routeguard_cluster_watch_errors_total{kind=\"Service\"} 1"));
        assert!(text.contains("routeguard_cluster_relists_total{kind=\"Service\"} 1"));
        assert!(text.contains("routeguard_cluster_objects{kind=\"Service\"} 0"));
        assert!(text.contains("routeguard_cluster_synced 1"));
    }

    #[test]
    fn counts_leadership_changes() {
        let status = ClusterStatus::new(&[]);
        status.set_leader(true);
        status.set_leader(true);
        status.set_leader(false);
        assert!(!status.is_leader());
        let text = status.render(&Snapshot::for_policy(&Policy::default()));
        assert!(text.contains("routeguard_cluster_lease_transitions_total 2"), "{text}");
    }
}
