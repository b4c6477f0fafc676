//! The live index: watch events -> operations on a [`Snapshot`], published to
//! admission as one `Arc<Snapshot>` at a time.
//!
//! The snapshot's indexes are persistent maps (`imbl`): a copy shares every
//! part it does not change. So the [`Publisher`] applies each operation to its
//! working copy (the cost of the objects it names, a few paths of the maps
//! copied) and publishes by handing admission a copy of the root (constant
//! time, whatever the index holds), at most every [`PUBLISH_EVERY`]. Requests
//! still judging against an older copy keep it; nothing waits for them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::{SharedSnapshot, SnapshotSource};
use crate::model::{Kind, Object, ObjectKey};
use crate::policy::Snapshot;
use crate::policy::snapshot::Entry;
use kube::runtime::watcher;

use super::kinds::{self, Served};
use super::watched::Watched;

/// The longest a change waits before admission sees it (batching).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(20);

/// The longest a bookkeeping-only change ([`Effect::Version`]) waits: such a
/// publish refreshes resourceVersions for the controller's preconditions and
/// wakes no one.
pub const QUIET_PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// What one watcher covers: a kind, in one namespace or in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub kind: Kind,
    /// `None`: every namespace.
    pub namespace: Option<String>,
}

impl Scope {
    /// True when `key` falls in this scope.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        key.kind == self.kind && self.namespace.as_ref().is_none_or(|ns| *ns == key.namespace)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            None if !self.kind.is_namespaced() => write!(f, "{} (cluster-scoped)", self.kind),
            Some(ns) => write!(f, "{} in {ns}", self.kind),
            None => write!(f, "{} in all namespaces", self.kind),
        }
    }
}

/// One change to the index. Objects come as [`Entry`]s, built as each
/// object arrives: a list of thousands never exists as parsed JSON trees at
/// once, and what is left after it is the entries, not the holes of the trees.
#[derive(Debug, Clone)]
pub enum Op {
    /// An object was added or changed.
    Upsert(Entry),
    /// An object was deleted.
    Delete(ObjectKey),
    /// A (re)list: the objects of the scope are exactly these now.
    Replace { scope: Scope, entries: Vec<Entry> },
}

impl Op {
    /// An upsert of `object`.
    pub fn upsert(object: &Object) -> Op {
        Op::Upsert(Entry::new(object))
    }
}

/// What applying an operation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// Nothing: the index already held exactly this.
    None,
    /// Only bookkeeping no rule and no generation reads (`resourceVersion`,
    /// `generation`: [`crate::policy::snapshot::BOOKKEEPING`]): a status update, a no-op apply, a resync.
    Version,
    /// What the rules or the generator read.
    Content,
}

/// What storing `entry` would change in the snapshot: compared by the
/// entries' text and content fingerprint, with no JSON parsed.
fn effect_of(snapshot: &Snapshot, entry: &Entry) -> Effect {
    match snapshot.get(entry.key()) {
        None => Effect::Content,
        Some(current) if current.is_same(entry) => Effect::None,
        Some(current) if current.is_same_content(entry) => Effect::Version,
        Some(_) => Effect::Content,
    }
}

/// Stores `entry` when it changes the snapshot by at least `stored_from`
/// ([`Effect::Version`] or [`Effect::Content`]).
fn upsert(snapshot: &mut Snapshot, entry: &Entry, stored_from: Effect) -> Effect {
    let effect = effect_of(snapshot, entry);
    if effect >= stored_from {
        // An entry that differs only in bookkeeping is swapped in place in
        // the indexes; any other is inserted.
        snapshot.refresh(entry.clone());
    }
    if effect == Effect::Content {
        snapshot.note_change(entry.key().clone());
    }
    effect
}

/// Applies one operation to a snapshot; the cost is that of the objects it
/// names. Says what changed, so that bookkeeping-only updates (the stream of
/// Deployment status updates in a busy cluster) cost no publish and no
/// reconcile, and notes the objects whose content changed in the snapshot's
/// log, so that the controller reconciles only what they touch.
pub fn apply(snapshot: &mut Snapshot, op: &Op) -> Effect {
    apply_storing(snapshot, op, Effect::Version)
}

/// [`apply`] for a judgement only (a re-read laid over a copy): an object
/// that differs from the snapshot's only in bookkeeping is not stored, since
/// no rule reads it. Laying a list over the snapshot then costs the objects
/// that changed, not all it lists (which the watch has nearly always brought already).
pub fn overlay(snapshot: &mut Snapshot, op: &Op) -> Effect {
    apply_storing(snapshot, op, Effect::Content)
}

fn apply_storing(snapshot: &mut Snapshot, op: &Op, stored_from: Effect) -> Effect {
    match op {
        Op::Upsert(entry) => upsert(snapshot, entry, stored_from),
        Op::Delete(key) => match snapshot.remove(key) {
            Some(_) => {
                snapshot.note_change(key.clone());
                Effect::Content
            }
            None => Effect::None,
        },
        Op::Replace { scope, entries } => {
            let keep: HashSet<&ObjectKey> = entries.iter().map(Entry::key).collect();
            let gone: Vec<ObjectKey> = match &scope.namespace {
                Some(ns) => snapshot.in_namespace(scope.kind, ns).map(|e| e.key().clone()).collect(),
                None => snapshot.of_kind(scope.kind).into_iter().map(|e| e.key().clone()).collect(),
            };
            let mut effect = Effect::None;
            for key in gone.into_iter().filter(|k| !keep.contains(k)) {
                snapshot.remove(&key);
                snapshot.note_change(key);
                effect = Effect::Content;
            }
            for entry in entries.iter().filter(|e| scope.contains(e.key())) {
                effect = effect.max(upsert(snapshot, entry, stored_from));
            }
            effect
        }
    }
}

/// Turns one watcher's events into index operations.
#[derive(Debug)]
pub(crate) struct Stream {
    pub scope: Scope,
    pub served: Served,
    /// Entries of a list in progress (between `Init` and `InitDone`).
    buffer: Option<Vec<Entry>>,
}

/// The operation an update of `object` calls for, as the watch of `kind`
/// (served in `version`, every namespace) makes it: what a watched object
/// costs before the writer applies it (the index bench times it).
pub fn update_op(kind: Kind, version: &str, object: Watched) -> Option<Op> {
    let mut stream = Stream::new(Scope { kind, namespace: None }, Served::new(kind, version));
    stream.on_event(watcher::Event::Apply(object)).op
}

/// What one watch event means for the index.
#[derive(Debug)]
pub(crate) struct Step {
    pub op: Option<Op>,
    /// A full list just completed: once `op` is published the scope is in sync.
    pub synced: bool,
}

impl Stream {
    /// A stream for `scope`, served as `served`.
    pub fn new(scope: Scope, served: Served) -> Stream {
        Stream { scope, served, buffer: None }
    }

    /// The operation one watcher event calls for. Objects of a list are held
    /// back until the list is complete and then replace the scope at once, so
    /// a relist never shows a half-empty index.
    pub fn on_event(&mut self, event: watcher::Event<Watched>) -> Step {
        let none = Step { op: None, synced: false };
        match event {
            watcher::Event::Init => {
                self.buffer = Some(Vec::new());
                none
            }
            watcher::Event::InitApply(object) => {
                if let Some(object) = self.convert(object) {
                    self.buffer.get_or_insert_with(Vec::new).push(Entry::new(&object));
                }
                none
            }
            watcher::Event::InitDone => {
                let entries = self.buffer.take().unwrap_or_default();
                Step { op: Some(Op::Replace { scope: self.scope.clone(), entries }), synced: true }
            }
            watcher::Event::Apply(object) => Step { op: self.convert(object).map(|o| Op::upsert(&o)), synced: false },
            watcher::Event::Delete(object) => {
                Step { op: self.convert(object).map(|o| Op::Delete(o.key)), synced: false }
            }
        }
    }

    fn convert(&self, object: Watched) -> Option<Object> {
        let name = object.metadata.name.clone().unwrap_or_default();
        match kinds::to_indexed_object(&self.served, object) {
            Ok(object) if self.scope.contains(&object.key) => Some(object),
            Ok(object) => {
                tracing::debug!(object = %object.key, scope = %self.scope, "object outside the watched scope; ignored");
                None
            }
            Err(e) => {
                tracing::warn!(kind = %self.scope.kind, name, error = %e, "cannot read a watched object; ignored");
                None
            }
        }
    }
}

/// Applies operations and publishes them to a [`SharedSnapshot`] (see the module doc).
#[derive(Debug)]
pub struct Publisher {
    live: Arc<SharedSnapshot>,
    /// The index with every operation applied; it shares all unchanged parts
    /// with the copies admission holds.
    working: Snapshot,
    /// What the operations since the last publish changed.
    pending: Effect,
}

impl Publisher {
    /// A publisher for `live`.
    pub fn new(live: Arc<SharedSnapshot>) -> Publisher {
        let working = Snapshot::clone(&live.current());
        Publisher { live, working, pending: Effect::None }
    }

    /// Applies an operation; admission sees it at the next publish.
    pub fn push(&mut self, op: Op) -> Effect {
        let effect = apply(&mut self.working, &op);
        self.pending = self.pending.max(effect);
        effect
    }

    /// What waits for a publish.
    pub fn pending(&self) -> Effect {
        self.pending
    }

    /// True when operations wait for a publish.
    pub fn is_dirty(&self) -> bool {
        self.pending != Effect::None
    }

    /// Publishes the operations applied since the last publish and says what they changed.
    pub fn publish(&mut self) -> Effect {
        let published = self.pending;
        if published != Effect::None {
            self.live.swap(Arc::new(self.working.clone()));
            self.pending = Effect::None;
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use serde_json::json;

    fn service(name: &str, ns: &str, rv: &str) -> Object {
        Object::from_value(
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
                   "spec": {"selector": {"app": name}}}),
            "",
        )
        .expect("object")
    }

    fn keys(snapshot: &Snapshot) -> Vec<String> {
        let mut keys: Vec<String> =
            snapshot.entries().map(|e| format!("{} @{}", e.key(), e.raw()["metadata"]["resourceVersion"])).collect();
        keys.sort();
        keys
    }

    fn dynamic(name: &str, ns: &str, rv: &str) -> Watched {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns, "resourceVersion": rv}, "spec": {}}))
            .expect("dynamic")
    }

    fn all(kind: Kind) -> Scope {
        Scope { kind, namespace: None }
    }

    #[test]
    fn replace_removes_what_a_relist_no_longer_has() {
        let mut snapshot = Snapshot::for_policy(&Policy::default());
        apply(&mut snapshot, &Op::upsert(&service("a", "shop", "1")));
        apply(&mut snapshot, &Op::upsert(&service("b", "shop", "1")));
        apply(&mut snapshot, &Op::upsert(&service("c", "other", "1")));
        let scope = Scope { kind: Kind::Service, namespace: Some("shop".into()) };
        apply(
            &mut snapshot,
            &Op::Replace {
                scope,
                entries: vec![Entry::new(&service("b", "shop", "2")), Entry::new(&service("d", "shop", "1"))],
            },
        );
        assert_eq!(keys(&snapshot), vec!["Service other/c @\"1\"", "Service shop/b @\"2\"", "Service shop/d @\"1\""]);
        apply(&mut snapshot, &Op::Replace { scope: all(Kind::Service), entries: vec![] });
        assert!(snapshot.is_empty());
        apply(&mut snapshot, &Op::Delete(service("x", "shop", "1").key));
        assert!(snapshot.is_empty());
    }

    #[test]
    fn says_what_an_operation_changed() {
        let mut snapshot = Snapshot::for_policy(&Policy::default());
        assert_eq!(apply(&mut snapshot, &Op::upsert(&service("a", "shop", "1"))), Effect::Content);
        assert_eq!(apply(&mut snapshot, &Op::upsert(&service("a", "shop", "1"))), Effect::None, "the same version");
        // A status update: live mode drops `status`, so only the version moved.
        let mut bumped = service("a", "shop", "2");
        bumped.raw["metadata"]["generation"] = json!(2);
        assert_eq!(apply(&mut snapshot, &Op::upsert(&bumped)), Effect::Version);
        assert_eq!(
            snapshot.get(&service("a", "shop", "2").key).map(|e| e.raw()["metadata"]["resourceVersion"].clone()),
            Some(json!("2")),
            "the new version is stored"
        );
        let mut relabelled = service("a", "shop", "3");
        relabelled.raw["metadata"]["labels"] = json!({"tier": "web"});
        assert_eq!(apply(&mut snapshot, &Op::upsert(&relabelled)), Effect::Content);
        assert_eq!(apply(&mut snapshot, &Op::Delete(service("x", "shop", "1").key)), Effect::None);
        // A relist that only moved versions is bookkeeping; one that lost an object is content.
        let scope = Scope { kind: Kind::Service, namespace: Some("shop".into()) };
        let mut same = snapshot.get(&service("a", "shop", "3").key).expect("a").object();
        same.raw["metadata"]["resourceVersion"] = json!("4");
        assert_eq!(
            apply(&mut snapshot, &Op::Replace { scope: scope.clone(), entries: vec![Entry::new(&same)] }),
            Effect::Version
        );
        assert_eq!(apply(&mut snapshot, &Op::Replace { scope, entries: vec![] }), Effect::Content);
        assert_eq!(apply(&mut snapshot, &Op::Delete(service("a", "shop", "1").key)), Effect::None);
    }

    #[test]
    fn an_overlay_stores_only_what_changed_content() {
        let mut snapshot = Snapshot::for_policy(&Policy::default());
        apply(&mut snapshot, &Op::upsert(&service("a", "shop", "1")));
        apply(&mut snapshot, &Op::upsert(&service("b", "shop", "1")));
        let stored = |s: &Snapshot, name: &str| s.get(&service(name, "shop", "1").key).map(Entry::raw);
        let before = snapshot.get(&service("a", "shop", "1").key).cloned().expect("a");
        let mut relabelled = service("b", "shop", "3");
        relabelled.raw["metadata"]["labels"] = json!({"tier": "web"});
        let scope = Scope { kind: Kind::Service, namespace: Some("shop".into()) };
        let listed = vec![
            Entry::new(&service("a", "shop", "2")),
            Entry::new(&relabelled),
            Entry::new(&service("c", "shop", "1")),
        ];
        let mut copy = snapshot.clone();
        assert_eq!(overlay(&mut copy, &Op::Replace { scope: scope.clone(), entries: listed.clone() }), Effect::Content);
        // `a` moved only its version: the copy keeps the very entry it had.
        assert!(copy.get(before.key()).is_some_and(|e| e.is_same(&before)));
        assert_eq!(stored(&copy, "b").map(|r| r["metadata"]["labels"].clone()), Some(json!({"tier": "web"})));
        assert!(stored(&copy, "c").is_some());
        assert_eq!(overlay(&mut copy, &Op::Replace { scope: scope.clone(), entries: vec![] }), Effect::Content);
        assert!(copy.is_empty(), "what a list no longer has is gone from the overlay too");
        // `apply` (the index itself) stores the new version.
        assert_eq!(apply(&mut snapshot, &Op::Replace { scope, entries: listed }), Effect::Content);
        assert_eq!(stored(&snapshot, "a").map(|r| r["metadata"]["resourceVersion"].clone()), Some(json!("2")));
    }

    #[test]
    fn a_bookkeeping_change_is_published_as_such() {
        let live = Arc::new(SharedSnapshot::new(Snapshot::for_policy(&Policy::default())));
        let mut publisher = Publisher::new(live.clone());
        publisher.push(Op::upsert(&service("a", "shop", "1")));
        assert_eq!(publisher.publish(), Effect::Content);
        assert_eq!(publisher.push(Op::upsert(&service("a", "shop", "2"))), Effect::Version);
        assert_eq!(publisher.pending(), Effect::Version);
        assert_eq!(publisher.publish(), Effect::Version);
        assert_eq!(keys(&live.current()), vec!["Service shop/a @\"2\""]);
        publisher.push(Op::upsert(&service("a", "shop", "3")));
        publisher.push(Op::upsert(&service("b", "shop", "1")));
        assert_eq!(publisher.publish(), Effect::Content, "the larger effect of a batch");
    }

    #[test]
    fn stream_buffers_a_list_until_it_is_done() {
        let mut stream = Stream::new(all(Kind::Service), Served::new(Kind::Service, "v1"));
        assert!(stream.on_event(watcher::Event::Init).op.is_none());
        assert!(stream.on_event(watcher::Event::InitApply(dynamic("a", "shop", "1"))).op.is_none());
        assert!(stream.on_event(watcher::Event::InitApply(dynamic("b", "shop", "1"))).op.is_none());
        let step = stream.on_event(watcher::Event::InitDone);
        assert!(step.synced);
        match step.op {
            Some(Op::Replace { scope, entries }) => {
                assert_eq!(scope, all(Kind::Service));
                assert_eq!(entries.len(), 2);
                assert_eq!(entries[0].raw()["apiVersion"], "v1");
                assert_eq!(entries[0].raw()["kind"], "Service");
            }
            other => panic!("expected a replace, got {other:?}"),
        }
        let step = stream.on_event(watcher::Event::Apply(dynamic("c", "shop", "2")));
        assert!(matches!(step.op, Some(Op::Upsert(ref o)) if o.name() == "c") && !step.synced);
        let step = stream.on_event(watcher::Event::Delete(dynamic("a", "shop", "3")));
        assert!(matches!(step.op, Some(Op::Delete(ref k)) if k.name == "a"));
        // A nameless object is skipped, not a panic.
        let nameless: Watched = serde_json::from_value(json!({"metadata": {}})).expect("dynamic");
        assert!(stream.on_event(watcher::Event::Apply(nameless)).op.is_none());
    }

    #[test]
    fn stream_ignores_objects_outside_its_namespace() {
        let scope = Scope { kind: Kind::Service, namespace: Some("shop".into()) };
        let mut stream = Stream::new(scope, Served::new(Kind::Service, "v1"));
        assert!(stream.on_event(watcher::Event::Apply(dynamic("a", "other", "1"))).op.is_none());
    }

    #[test]
    fn publishes_each_batch_of_changes() {
        let live = Arc::new(SharedSnapshot::new(Snapshot::for_policy(&Policy::default())));
        let mut publisher = Publisher::new(live.clone());
        assert_eq!(publisher.publish(), Effect::None, "nothing to publish");
        for round in 0..6 {
            publisher.push(Op::upsert(&service(&format!("s{round}"), "shop", "1")));
            if round == 3 {
                publisher.push(Op::Delete(service("s0", "shop", "1").key));
            }
            assert_eq!(live.current().len(), if round > 3 { round - 1 } else { round }, "unpublished, round {round}");
            assert!(publisher.is_dirty());
            assert_eq!(publisher.publish(), Effect::Content);
            assert!(!publisher.is_dirty());
            let expected: usize = if round >= 3 { round } else { round + 1 };
            assert_eq!(live.current().len(), expected, "round {round}");
        }
        let names = keys(&live.current());
        assert!(!names.iter().any(|k| k.contains("s0")), "{names:?}");
    }

    #[test]
    fn a_copy_held_by_a_request_keeps_its_state() {
        let live = Arc::new(SharedSnapshot::new(Snapshot::for_policy(&Policy::default())));
        let mut publisher = Publisher::new(live.clone());
        publisher.push(Op::upsert(&service("a", "shop", "1")));
        assert_eq!(publisher.publish(), Effect::Content);
        // A request still judging against the first snapshot.
        let held = live.current();
        publisher.push(Op::upsert(&service("a", "shop", "2")));
        publisher.push(Op::upsert(&service("b", "shop", "1")));
        assert_eq!(publisher.publish(), Effect::Content, "a reader never holds a publish back");
        assert_eq!(keys(&held), vec!["Service shop/a @\"1\""]);
        assert_eq!(keys(&live.current()), vec!["Service shop/a @\"2\"", "Service shop/b @\"1\""]);
    }
}
