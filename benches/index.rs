//! The live index's cost: applying watch events and publishing the snapshot.
//!
//! `cargo bench --bench index` prints, for an index of 10,000 and 50,000
//! objects (apps of a Service, a Deployment, a DestinationRule and a
//! VirtualService each), the time to apply one watch event (a VirtualService,
//! Service or Deployment added, modified or deleted) and to apply one
//! and publish the snapshot. The goals (issue "Speed"): 20,000 events/s on
//! one core at 10,000 objects (50 µs an event), a publication that costs the
//! same at both sizes, and no reader ever waiting for it. And the
//! controller's plan after one relevant change, scoped to the Services it
//! touches against a full pass (goal: under 5 ms at 10,000 objects).
//!
//! Before those, at both sizes, it prints what the index costs in resident
//! memory, and the latency of admission checks (a VirtualService judged
//! against the published snapshot) on a quiet index and while another thread
//! applies and publishes 100 watch events a second: the scale test of issue
//! 13 that needs no cluster.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use routeguard::admission::{SharedSnapshot, SnapshotSource as _};
use routeguard::cluster::index::{Effect, Op, Publisher, apply};
use routeguard::cluster::reconcile::{Action, Inputs, affected_services, plan};
use routeguard::model::Object;
use routeguard::policy::{Change, Engine, Policy, Snapshot};
use serde_json::{Value, json};

const NAMESPACES: usize = 50;

fn object(value: Value) -> Object {
    Object::from_value(value, "default").expect("bench object")
}

fn service(app: usize, rv: usize) -> Object {
    object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("app-{app}"), "namespace": format!("ns-{}", app % NAMESPACES), "resourceVersion": rv.to_string(),
                     "labels": {"build": rv.to_string()}},
        "spec": {"selector": {"app": format!("app-{app}")}, "ports": [{"name": "http", "port": 80}]}
    }))
}

fn deployment(app: usize, rv: usize) -> Object {
    object(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("app-{app}-v1"), "namespace": format!("ns-{}", app % NAMESPACES), "resourceVersion": rv.to_string(),
                     "labels": {"app": format!("app-{app}"), "build": rv.to_string()}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("app-{app}"), "version": "v1"}},
                 "template": {"metadata": {"labels": {"app": format!("app-{app}"), "version": "v1"}},
                              "spec": {"containers": [{"name": "app", "image": "example/app:v1"}]}}},
    }))
}

/// A second Deployment of `app`, version `version`.
fn deployment_version(app: usize, version: &str) -> Object {
    let mut object = deployment(app, 1);
    object.raw["metadata"]["name"] = json!(format!("app-{app}-{version}"));
    object.raw["spec"]["selector"]["matchLabels"]["version"] = json!(version);
    object.raw["spec"]["template"]["metadata"]["labels"]["version"] = json!(version);
    Object::from_value(object.raw, "default").expect("bench object")
}

fn destination_rule(app: usize, rv: usize) -> Object {
    object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": format!("app-{app}"), "namespace": format!("ns-{}", app % NAMESPACES), "resourceVersion": rv.to_string(),
                     "labels": {"build": rv.to_string()}},
        "spec": {"host": format!("app-{app}"), "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
    }))
}

fn virtual_service(app: usize, rv: usize) -> Object {
    object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": format!("app-{app}"), "namespace": format!("ns-{}", app % NAMESPACES), "resourceVersion": rv.to_string(),
                     "labels": {"build": rv.to_string()}},
        "spec": {"hosts": [format!("app-{app}")],
                 "http": [{"route": [{"destination": {"host": format!("app-{app}"), "subset": "v1"}, "weight": 100}]}]}
    }))
}

/// A watch event of a status-only update, as the API server sends it: the
/// Deployment of a recorded review (managed fields, pod spec, status), its
/// status changed.
fn status_event() -> Vec<u8> {
    let review: Value =
        serde_json::from_str(include_str!("../tests/fixtures/admission-reviews/017-validate-deployment-delete.json"))
            .expect("the recorded review is JSON");
    let mut deployment = review["request"]["oldObject"].clone();
    deployment["metadata"]["resourceVersion"] = json!("383");
    deployment["status"]["observedGeneration"] = json!(4);
    serde_json::to_vec(&json!({"type": "MODIFIED", "object": deployment})).expect("encode")
}

/// What one watch event costs before the index sees it: decoding the event
/// text and building the entry. Before `Watched`, a kube `DynamicObject` was
/// decoded (through two `serde(flatten)`s, managed fields typed) and copied
/// into a `Value` before most of it was dropped; those two steps are timed
/// as they ran. Now: `Watched`, skipping what the index drops as it reads,
/// and the stream's conversion into the operation the writer applies (with
/// a stream made for each event, a few allocations the watch does not pay).
fn bench_watch_event(c: &mut Criterion) {
    use kube::core::{DynamicObject, WatchEvent};
    use routeguard::cluster::index::update_op;
    use routeguard::cluster::watched::Watched;
    let text = status_event();
    let mut group = c.benchmark_group("watch-event");
    group.bench_function(BenchmarkId::new("dynamic-object-decode-and-copy", text.len()), |b| {
        b.iter(|| match serde_json::from_slice::<WatchEvent<DynamicObject>>(black_box(&text)) {
            Ok(WatchEvent::Modified(object)) => serde_json::to_value(object).expect("a value"),
            _ => panic!("a MODIFIED event"),
        })
    });
    group.bench_function(BenchmarkId::new("watched-decode-and-entry", text.len()), |b| {
        b.iter(|| match serde_json::from_slice::<WatchEvent<Watched>>(black_box(&text)) {
            Ok(WatchEvent::Modified(object)) => {
                update_op(routeguard::model::Kind::Deployment, "v1", object).expect("an operation")
            }
            _ => panic!("a MODIFIED event"),
        })
    });
    group.finish();
}

/// App `app`'s Deployment as the index holds it, with resourceVersion `rv`:
/// a status-only update once the index dropped `status`.
fn status_updated(live: &SharedSnapshot, (app, rv): (usize, usize)) -> Object {
    let key = deployment(app, 0).key;
    let mut object = live.current().get(&key).expect("stored").object();
    object.raw["metadata"]["resourceVersion"] = json!(rv.to_string());
    object
}

/// An index of `objects` objects, four per app.
fn index(objects: usize) -> Snapshot {
    let apps = objects / 4;
    let all = (0..apps).flat_map(|a| [service(a, 1), deployment(a, 1), destination_rule(a, 1), virtual_service(a, 1)]);
    Snapshot::from_objects(&Policy::default(), all)
}

fn bench_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("index");
    for size in [10_000, 50_000] {
        let apps = size / 4;
        let live = Arc::new(SharedSnapshot::new(index(size)));
        let mut publisher = Publisher::new(live.clone());
        // Admission holds the published copy throughout, as a request in flight would.
        let _reader = live.current();
        let mut rv = 2;
        let mut app = 0;
        let mut next = || {
            rv += 1;
            app = (app + 7919) % apps;
            (app, rv)
        };
        type Make = fn(usize, usize) -> Object;
        let kinds: [(&str, Make); 3] =
            [("virtualservice", virtual_service), ("service", service), ("deployment", deployment)];
        for (kind, make) in kinds {
            group.bench_function(BenchmarkId::new(format!("modify-{kind}"), size), |b| {
                b.iter_batched(
                    || {
                        let (app, rv) = next();
                        make(app, rv)
                    },
                    // The entry is built in the event's cost, as the watch stream does.
                    |object| assert_eq!(publisher.push(Op::upsert(black_box(&object))), Effect::Content),
                    BatchSize::SmallInput,
                )
            });
        }
        // The churn a busy cluster makes: status updates, nothing the rules
        // read. As live mode stores one (the index drops `status` and
        // `managedFields`): the stored Deployment with a new resourceVersion.
        let _ = publisher.publish();
        group.bench_function(BenchmarkId::new("status-update-deployment", size), |b| {
            b.iter_batched(
                || status_updated(&live, next()),
                |object| assert_eq!(publisher.push(Op::upsert(black_box(&object))), Effect::Version),
                BatchSize::SmallInput,
            )
        });
        // The same update once its entry is built: stored by removing the old
        // entry and inserting the new one (every index slot it names taken
        // out and put back), or by swapping it in place (`Snapshot::refresh`).
        type Store = fn(&mut Snapshot, routeguard::policy::Entry) -> Option<routeguard::policy::Entry>;
        let stores: [(&str, Store); 2] = [("insert", Snapshot::insert), ("refresh", Snapshot::refresh)];
        for (name, store) in stores {
            let mut working = live.current().as_ref().clone();
            group.bench_function(BenchmarkId::new(format!("store-status-update-{name}"), size), |b| {
                b.iter_batched(
                    || routeguard::policy::Entry::new(&status_updated(&live, next())),
                    |entry| assert!(store(&mut working, black_box(entry)).is_some()),
                    BatchSize::SmallInput,
                )
            });
        }
        // A delete and the add that restores it: the pair, so the index keeps its size.
        group.bench_function(BenchmarkId::new("delete-and-add-virtualservice", size), |b| {
            b.iter_batched(
                || {
                    let (app, rv) = next();
                    let object = virtual_service(app, rv);
                    (Op::Delete(object.key.clone()), object)
                },
                |(delete, add)| {
                    publisher.push(black_box(delete));
                    publisher.push(Op::upsert(black_box(&add)));
                },
                BatchSize::SmallInput,
            )
        });
        // One change and its publication (minus modify-virtualservice: the publication).
        group.bench_function(BenchmarkId::new("modify-and-publish", size), |b| {
            b.iter_batched(
                || {
                    let (app, rv) = next();
                    virtual_service(app, rv)
                },
                |object| {
                    publisher.push(Op::upsert(black_box(&object)));
                    assert_eq!(publisher.publish(), Effect::Content);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_admission_under_churn, bench_events, bench_watch_event, bench_reconcile);

/// VmRSS of this process, in KiB (0 where /proc is not there).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Admission checks of `object` against what `live` publishes at the time of
/// each, back to back for `time` and at least `count` of them: (p50, p99, max).
fn admission_latencies(
    engine: &Engine,
    live: &SharedSnapshot,
    object: &Object,
    count: usize,
    time: Duration,
) -> [Duration; 3] {
    let mut took: Vec<Duration> = Vec::with_capacity(count);
    let started = Instant::now();
    while took.len() < count || started.elapsed() < time {
        let start = Instant::now();
        let snapshot = live.current();
        black_box(engine.validate(&snapshot, &Change::create(black_box(object))));
        took.push(start.elapsed());
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    [at(0.50), at(0.99), took[took.len() - 1]]
}

fn show(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

/// Memory per object and admission latency, quiet and under churn (printed,
/// not a criterion measurement: the tail is what matters here). Under `cargo
/// test` (no `--bench`) it runs a few checks only, to stay quick.
fn bench_admission_under_churn(_: &mut Criterion) {
    let measuring = std::env::args().any(|a| a == "--bench");
    // Long enough for the churn to publish 50 times.
    let (checks, time) = if measuring { (20_000, Duration::from_secs(5)) } else { (20, Duration::ZERO) };
    let engine = Engine::new(Policy::default());
    for size in [10_000, 50_000] {
        let before = rss_kib();
        let live = Arc::new(SharedSnapshot::new(index(size)));
        let grown = rss_kib().saturating_sub(before);
        println!(
            "index/memory-{size}: resident memory grew {:.1} MiB building the index ({} bytes an object)",
            grown as f64 / 1024.0,
            grown * 1024 / size as u64
        );
        // A new route for an existing app: what a canary rollout applies.
        let mut route = virtual_service(3, 1).raw;
        route["metadata"]["name"] = json!("app-3-canary");
        route["spec"]["hosts"] = json!(["app-3.example.com"]);
        let route = object(route);
        let quiet = admission_latencies(&engine, &live, &route, checks, time);

        // 100 events a second, published as the index writer does (every 100 ms):
        // Deployment status churn and real changes, half and half.
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (live, stop) = (live.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut publisher = Publisher::new(live.clone());
                let (mut rv, mut app, mut events) = (2usize, 0usize, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..10 {
                        rv += 1;
                        app = (app + 7919) % (size / 4);
                        let op = if i % 2 == 0 {
                            Op::upsert(&deployment(app, rv))
                        } else {
                            let key = deployment(app, 0).key;
                            let mut stored = live.current().get(&key).expect("stored").object();
                            stored.raw["metadata"]["resourceVersion"] = json!(rv.to_string());
                            Op::upsert(&stored)
                        };
                        publisher.push(op);
                        events += 1;
                    }
                    publisher.publish();
                    std::thread::sleep(Duration::from_millis(100));
                }
                events
            })
        };
        let started = Instant::now();
        let churned = admission_latencies(&engine, &live, &route, checks, time);
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let events = churn.join().expect("churn thread");
        println!(
            "index/admission-{size}: quiet p50 {} p99 {} max {}; while {events} events were applied and published \
             in {:.1} s: p50 {} p99 {} max {}",
            show(quiet[0]),
            show(quiet[1]),
            show(quiet[2]),
            elapsed.as_secs_f64(),
            show(churned[0]),
            show(churned[1]),
            show(churned[2]),
        );
    }
}
criterion_main!(benches);

/// A generated per-version Service and the DestinationRule for each app, as
/// the controller leaves them, so that a full plan has nothing left to do.
fn reconciled(objects: usize) -> Snapshot {
    let engine = Engine::default();
    let mut snapshot = index(objects);
    let desired = engine.generate(&snapshot);
    for action in plan(inputs(&engine, &snapshot, &desired), None) {
        if let Action::Apply { body, .. } = action {
            snapshot.upsert(Object::from_value(body, "default").expect("applied object"));
        }
    }
    snapshot
}

fn inputs<'a>(engine: &'a Engine, snapshot: &'a Snapshot, desired: &'a [Object]) -> Inputs<'a> {
    Inputs { policy: engine.policy(), snapshot, desired, rule_api_version: "networking.istio.io/v1" }
}

fn bench_reconcile(c: &mut Criterion) {
    let engine = Engine::default();
    let mut group = c.benchmark_group("reconcile");
    group.sample_size(10);
    for size in [10_000, 50_000] {
        let before = reconciled(size);
        // One relevant change: a new version of one app.
        let mut after = before.clone();
        let _ = apply(&mut after, &Op::upsert(&deployment_version(7, "v2")));
        let scoped = || {
            let changed = after.changes_since(before.revision()).expect("log");
            let scope = affected_services(&before, &after, changed);
            let desired = engine.generate_for(&after, scope.iter().filter_map(|k| after.get(k)));
            plan(inputs(&engine, &after, &desired), Some(&scope))
        };
        let full = || {
            let desired = engine.generate(&after);
            plan(inputs(&engine, &after, &desired), None)
        };
        let planned = full();
        assert!(!planned.is_empty(), "the new version needs its Service");
        assert_eq!(format!("{:?}", scoped()), format!("{planned:?}"), "the scoped pass plans what the full one does");
        group.bench_function(BenchmarkId::new("one-change-scoped", size), |b| b.iter(scoped));
        group.bench_function(BenchmarkId::new("one-change-full", size), |b| b.iter(full));
    }
    group.finish();
}
