//! The live index's cost: applying watch events and publishing the snapshot.
//!
//! `cargo bench --bench index` prints, for an index of 10,000 and 50,000
//! objects (apps of a Service, a Deployment, a DestinationRule and a
//! VirtualService each), the time to apply one watch event (a VirtualService,
//! Service or Deployment added, modified or deleted) and to apply one
//! and publish the snapshot. The goals (issue "Speed"): 20,000 events/s on
//! one core at 10,000 objects (50 µs an event), a publication that costs the
//! same at both sizes, and no reader ever waiting for it.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use routeguard::admission::{SharedSnapshot, SnapshotSource as _};
use routeguard::cluster::index::{Effect, Op, Publisher};
use routeguard::model::Object;
use routeguard::policy::{Policy, Snapshot};
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
                        Op::Upsert(make(app, rv))
                    },
                    |op| assert_eq!(publisher.push(black_box(op)), Effect::Content),
                    BatchSize::SmallInput,
                )
            });
        }
        // The churn a busy cluster makes: status updates, nothing the rules
        // read. As live mode stores one (the index drops `status` and
        // `managedFields`): the stored Deployment with a new resourceVersion.
        assert_eq!(publisher.publish(), Effect::Content);
        group.bench_function(BenchmarkId::new("status-update-deployment", size), |b| {
            b.iter_batched(
                || {
                    let (app, rv) = next();
                    let key = deployment(app, 0).key;
                    let mut object = live.current().get(&key).expect("stored").object();
                    object.raw["metadata"]["resourceVersion"] = json!(rv.to_string());
                    Op::Upsert(object)
                },
                |op| assert_eq!(publisher.push(black_box(op)), Effect::Version),
                BatchSize::SmallInput,
            )
        });
        // A delete and the add that restores it: the pair, so the index keeps its size.
        group.bench_function(BenchmarkId::new("delete-and-add-virtualservice", size), |b| {
            b.iter_batched(
                || {
                    let (app, rv) = next();
                    let object = virtual_service(app, rv);
                    (Op::Delete(object.key.clone()), Op::Upsert(object))
                },
                |(delete, add)| {
                    publisher.push(black_box(delete));
                    publisher.push(black_box(add));
                },
                BatchSize::SmallInput,
            )
        });
        // One change and its publication (minus modify-virtualservice: the publication).
        group.bench_function(BenchmarkId::new("modify-and-publish", size), |b| {
            b.iter_batched(
                || {
                    let (app, rv) = next();
                    Op::Upsert(virtual_service(app, rv))
                },
                |op| {
                    publisher.push(black_box(op));
                    assert_eq!(publisher.publish(), Effect::Content);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_events);
criterion_main!(benches);
