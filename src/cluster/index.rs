//! The live index: watch events -> operations on a [`Snapshot`], published to
//! admission as one `Arc<Snapshot>` at a time.
//!
//! Cloning a 10,000-object snapshot per event would cost milliseconds each
//! time, so the [`Publisher`] keeps two copies (left-right): admission reads
//! the published one while the spare, the one published before, has no
//! reader left. A publish replays on the spare only the operations it missed
//! (those of the previous publish and the pending ones) and swaps it in. So a
//! publish costs the changes, not the index; it happens at most every
//! [`PUBLISH_EVERY`]. Should a slow request still hold the spare after a few
//! tries, the published copy is cloned instead (correct, just slower).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kube::core::DynamicObject;
use kube::runtime::watcher;
use serde_json::Value;

use crate::admission::{SharedSnapshot, SnapshotSource};
use crate::model::{Kind, Object, ObjectKey};
use crate::policy::Snapshot;

use super::kinds::{self, Served};

/// The longest a change waits before admission sees it (batching).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(20);

/// How many publish ticks to wait for the spare copy's last reader before cloning instead.
const SPARE_TRIES: u32 = 5;

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
            Some(ns) => write!(f, "{} in {ns}", self.kind),
            None => write!(f, "{} in all namespaces", self.kind),
        }
    }
}

/// One change to the index.
#[derive(Debug, Clone)]
pub enum Op {
    /// An object was added or changed.
    Upsert(Object),
    /// An object was deleted.
    Delete(ObjectKey),
    /// A (re)list: the objects of the scope are exactly these now.
    Replace { scope: Scope, objects: Vec<Object> },
}

fn resource_version(raw: &Value) -> Option<&str> {
    raw.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|rv| !rv.is_empty())
}

/// True when the snapshot already holds exactly this version of the object.
fn unchanged(snapshot: &Snapshot, object: &Object) -> bool {
    let Some(current) = snapshot.get(&object.key) else { return false };
    let current = current.raw();
    match (resource_version(&current), resource_version(&object.raw)) {
        (Some(a), Some(b)) => a == b,
        _ => current == object.raw,
    }
}

/// Applies one operation to a snapshot; the cost is that of the objects it names.
pub fn apply(snapshot: &mut Snapshot, op: &Op) {
    match op {
        Op::Upsert(object) => {
            if !unchanged(snapshot, object) {
                snapshot.upsert(object.clone());
            }
        }
        Op::Delete(key) => {
            snapshot.remove(key);
        }
        Op::Replace { scope, objects } => {
            let keep: HashSet<&ObjectKey> = objects.iter().map(|o| &o.key).collect();
            let gone: Vec<ObjectKey> = match &scope.namespace {
                Some(ns) => snapshot.in_namespace(scope.kind, ns).map(|e| e.key().clone()).collect(),
                None => snapshot.of_kind(scope.kind).into_iter().map(|e| e.key().clone()).collect(),
            };
            for key in gone.into_iter().filter(|k| !keep.contains(k)) {
                snapshot.remove(&key);
            }
            for object in objects.iter().filter(|o| scope.contains(&o.key)) {
                if !unchanged(snapshot, object) {
                    snapshot.upsert(object.clone());
                }
            }
        }
    }
}

/// Turns one watcher's events into index operations.
#[derive(Debug)]
pub struct Stream {
    pub scope: Scope,
    pub served: Served,
    /// Objects of a list in progress (between `Init` and `InitDone`).
    buffer: Option<Vec<Object>>,
}

/// What one watch event means for the index.
#[derive(Debug)]
pub struct Step {
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
    pub fn on_event(&mut self, event: watcher::Event<DynamicObject>) -> Step {
        let none = Step { op: None, synced: false };
        match event {
            watcher::Event::Init => {
                self.buffer = Some(Vec::new());
                none
            }
            watcher::Event::InitApply(object) => {
                if let Some(object) = self.convert(object) {
                    self.buffer.get_or_insert_with(Vec::new).push(object);
                }
                none
            }
            watcher::Event::InitDone => {
                let objects = self.buffer.take().unwrap_or_default();
                Step { op: Some(Op::Replace { scope: self.scope.clone(), objects }), synced: true }
            }
            watcher::Event::Apply(object) => Step { op: self.convert(object).map(Op::Upsert), synced: false },
            watcher::Event::Delete(object) => {
                Step { op: self.convert(object).map(|o| Op::Delete(o.key)), synced: false }
            }
        }
    }

    fn convert(&self, object: DynamicObject) -> Option<Object> {
        let name = object.metadata.name.clone().unwrap_or_default();
        match kinds::to_object(&self.served, object) {
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
    /// The copy published before the current one.
    spare: Option<Arc<Snapshot>>,
    /// Operations in the current copy that the spare lacks.
    spare_lag: Vec<Op>,
    /// Operations in neither copy yet.
    pending: Vec<Op>,
    tries: u32,
    /// Publishes that had to clone the index (a reader held the spare too long).
    pub clones: u64,
}

impl Publisher {
    /// A publisher for `live`.
    pub fn new(live: Arc<SharedSnapshot>) -> Publisher {
        let spare = Arc::new(Snapshot::clone(&live.current()));
        Publisher { live, spare: Some(spare), spare_lag: Vec::new(), pending: Vec::new(), tries: 0, clones: 0 }
    }

    /// Queues an operation for the next publish.
    pub fn push(&mut self, op: Op) {
        self.pending.push(op);
    }

    /// True when operations wait for a publish.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Publishes the pending operations. `false` when there was nothing to
    /// publish or the spare copy still has a reader (try again later).
    pub fn publish(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let reused = match self.spare.as_mut().and_then(Arc::get_mut) {
            Some(spare) => {
                for op in self.spare_lag.iter().chain(&self.pending) {
                    apply(spare, op);
                }
                self.spare.take()
            }
            None => None,
        };
        let next = match reused {
            Some(next) => next,
            None if self.tries < SPARE_TRIES => {
                self.tries += 1;
                return false;
            }
            None => {
                self.clones += 1;
                let mut copy = Snapshot::clone(&self.live.current());
                for op in &self.pending {
                    apply(&mut copy, op);
                }
                Arc::new(copy)
            }
        };
        let old = self.live.swap(next);
        self.spare = Some(old);
        self.spare_lag = std::mem::take(&mut self.pending);
        self.tries = 0;
        true
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

    fn dynamic(name: &str, ns: &str, rv: &str) -> DynamicObject {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns, "resourceVersion": rv}, "spec": {}}))
            .expect("dynamic")
    }

    fn all(kind: Kind) -> Scope {
        Scope { kind, namespace: None }
    }

    #[test]
    fn replace_removes_what_a_relist_no_longer_has() {
        let mut snapshot = Snapshot::for_policy(&Policy::default());
        apply(&mut snapshot, &Op::Upsert(service("a", "shop", "1")));
        apply(&mut snapshot, &Op::Upsert(service("b", "shop", "1")));
        apply(&mut snapshot, &Op::Upsert(service("c", "other", "1")));
        let scope = Scope { kind: Kind::Service, namespace: Some("shop".into()) };
        apply(
            &mut snapshot,
            &Op::Replace { scope, objects: vec![service("b", "shop", "2"), service("d", "shop", "1")] },
        );
        assert_eq!(keys(&snapshot), vec!["Service other/c @\"1\"", "Service shop/b @\"2\"", "Service shop/d @\"1\""]);
        apply(&mut snapshot, &Op::Replace { scope: all(Kind::Service), objects: vec![] });
        assert!(snapshot.is_empty());
        apply(&mut snapshot, &Op::Delete(service("x", "shop", "1").key));
        assert!(snapshot.is_empty());
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
            Some(Op::Replace { scope, objects }) => {
                assert_eq!(scope, all(Kind::Service));
                assert_eq!(objects.len(), 2);
                assert_eq!(objects[0].raw["apiVersion"], "v1");
                assert_eq!(objects[0].raw["kind"], "Service");
            }
            other => panic!("expected a replace, got {other:?}"),
        }
        let step = stream.on_event(watcher::Event::Apply(dynamic("c", "shop", "2")));
        assert!(matches!(step.op, Some(Op::Upsert(ref o)) if o.name() == "c") && !step.synced);
        let step = stream.on_event(watcher::Event::Delete(dynamic("a", "shop", "3")));
        assert!(matches!(step.op, Some(Op::Delete(ref k)) if k.name == "a"));
        // A nameless object is skipped, not a panic.
        let nameless: DynamicObject = serde_json::from_value(json!({"metadata": {}})).expect("dynamic");
        assert!(stream.on_event(watcher::Event::Apply(nameless)).op.is_none());
    }

    #[test]
    fn stream_ignores_objects_outside_its_namespace() {
        let scope = Scope { kind: Kind::Service, namespace: Some("shop".into()) };
        let mut stream = Stream::new(scope, Served::new(Kind::Service, "v1"));
        assert!(stream.on_event(watcher::Event::Apply(dynamic("a", "other", "1"))).op.is_none());
    }

    #[test]
    fn publishes_changes_through_both_copies() {
        let live = Arc::new(SharedSnapshot::new(Snapshot::for_policy(&Policy::default())));
        let mut publisher = Publisher::new(live.clone());
        assert!(!publisher.publish(), "nothing to publish");
        for round in 0..6 {
            publisher.push(Op::Upsert(service(&format!("s{round}"), "shop", "1")));
            if round == 3 {
                publisher.push(Op::Delete(service("s0", "shop", "1").key));
            }
            assert!(publisher.publish());
            let expected: usize = if round >= 3 { round } else { round + 1 };
            assert_eq!(live.current().len(), expected, "round {round}");
        }
        assert_eq!(publisher.clones, 0);
        let names = keys(&live.current());
        assert!(!names.iter().any(|k| k.contains("s0")), "{names:?}");
    }

    #[test]
    fn clones_when_a_reader_holds_the_spare() {
        let live = Arc::new(SharedSnapshot::new(Snapshot::for_policy(&Policy::default())));
        let mut publisher = Publisher::new(live.clone());
        publisher.push(Op::Upsert(service("a", "shop", "1")));
        assert!(publisher.publish());
        // A request still judging against the first snapshot holds the spare.
        let held = live.current();
        publisher.push(Op::Upsert(service("b", "shop", "1")));
        assert!(publisher.publish());
        let reader = live.current();
        publisher.push(Op::Upsert(service("c", "shop", "1")));
        for _ in 0..SPARE_TRIES {
            assert!(!publisher.publish(), "waits for the reader");
        }
        assert!(publisher.publish(), "then clones");
        assert_eq!(publisher.clones, 1);
        assert_eq!(live.current().len(), 3);
        assert_eq!(reader.len(), 2);
        assert_eq!(held.len(), 1);
        drop((held, reader));
        publisher.push(Op::Upsert(service("d", "shop", "1")));
        assert!(publisher.publish());
        assert_eq!(keys(&live.current()).len(), 4);
    }
}

#[cfg(test)]
mod cost {
    use super::*;
    use crate::policy::Policy;
    use serde_json::json;
    use std::time::Instant;

    /// Prints what a publish costs with 10,000 objects, left-right against a clone
    /// (`cargo test --release --lib cluster::index::cost -- --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn publish_cost_with_ten_thousand_objects() {
        let object = |i: usize| {
            Object::from_value(
                json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": format!("s{i}"), "namespace": format!("ns{}", i % 50), "resourceVersion": i.to_string()},
                       "spec": {"selector": {"app": format!("s{i}")}, "ports": [{"port": 80}]}}),
                "",
            )
            .expect("object")
        };
        let live = Arc::new(SharedSnapshot::new(Snapshot::for_policy(&Policy::default())));
        let mut publisher = Publisher::new(live.clone());
        publisher.push(Op::Replace {
            scope: Scope { kind: Kind::Service, namespace: None },
            objects: (0..10_000).map(object).collect(),
        });
        assert!(publisher.publish());
        publisher.push(Op::Upsert(object(10_001)));
        assert!(publisher.publish());
        let started = Instant::now();
        for i in 0..100 {
            publisher.push(Op::Upsert(object(20_000 + i)));
            assert!(publisher.publish());
        }
        let left_right = started.elapsed() / 100;
        let started = Instant::now();
        for _ in 0..100 {
            let _copy = Snapshot::clone(&live.current());
        }
        let clone = started.elapsed() / 100;
        println!("publish of one change: left-right {left_right:?}, clone {clone:?}");
    }
}
