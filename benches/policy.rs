//! Policy speed: checking one VirtualService against snapshots of growing size.
//!
//! `cargo bench --bench policy` prints the time per check for snapshots of 10,
//! 1,000 and 10,000 Services + DestinationRules and routes of 1, 3, 10 and 100
//! http entries. The goal: a typical VirtualService in under 20 µs, flat as
//! the snapshot grows.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use routeguard::model::Object;
use routeguard::policy::{Change, Engine, Policy, Snapshot};
use serde_json::json;

const NAMESPACES: usize = 50;

#[path = "support/counting.rs"]
mod counting;

fn object(value: serde_json::Value) -> Object {
    Object::from_value(value, "default").expect("bench object")
}

/// `size` Services, each with a DestinationRule (subsets v1, v2) and two Deployments.
fn snapshot(size: usize) -> Snapshot {
    let mut objects = Vec::with_capacity(size * 4);
    for i in 0..size {
        let ns = format!("ns-{}", i % NAMESPACES);
        let name = format!("svc-{i}");
        objects.push(object(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}
        })));
        objects.push(object(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": name, "namespace": ns},
            "spec": {"host": name, "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]}
        })));
        for v in ["v1", "v2"] {
            objects.push(object(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("{name}-{v}"), "namespace": ns},
                "spec": {"template": {"metadata": {"labels": {"app": name, "version": v}},
                         "spec": {"containers": [{"name": "app", "image": format!("example/app:{v}")}]}}}
            })));
        }
    }
    Snapshot::from_objects(&Policy::default(), objects)
}

/// A VirtualService in `ns-0` with `routes` http entries, each a 90/10 split
/// with a header match, to Services of `ns-0`.
fn virtual_service(routes: usize, size: usize) -> Object {
    // Services of ns-0 are svc-0, svc-50, svc-100, ...: use up to ten of them.
    let in_ns0 = size.div_ceil(NAMESPACES).min(10);
    let http: Vec<_> = (0..routes)
        .map(|r| {
            let host = format!("svc-{}", (r % in_ns0) * NAMESPACES);
            json!({
                "name": format!("route-{r}"),
                // Each route its own path: identical matches would make the later ones dead (RG109).
                "match": [{"headers": {"x-canary": {"exact": "true"}}, "uri": {"prefix": format!("/api/{r}")}}],
                "route": [
                    {"destination": {"host": host, "subset": "v1", "port": {"number": 80}}, "weight": 90},
                    {"destination": {"host": host, "subset": "v2", "port": {"number": 80}}, "weight": 10}
                ]
            })
        })
        .collect();
    object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "bench", "namespace": "ns-0"},
        "spec": {"hosts": ["svc-0"], "http": http}
    }))
}

fn bench_virtual_service(c: &mut Criterion) {
    let engine = Engine::new(Policy::default());
    let mut group = c.benchmark_group("virtual_service");
    for size in [10, 1_000, 10_000] {
        // Built on a thread of its own, as `serve` loads on its main thread and
        // checks on the runtime's workers: glibc gives each thread its own
        // arena, so the checks do not allocate from the free lists the build left.
        let snap = std::thread::scope(|scope| scope.spawn(|| snapshot(size)).join().expect("the build does not panic"));
        for routes in [1, 3, 10, 100] {
            let vs = virtual_service(routes, size);
            // The check must find nothing: a bench of a failing check measures the wrong path.
            assert_eq!(engine.validate(&snap, &Change::create(&vs)), vec![], "size {size} routes {routes}");
            let (_, allocations) = counting::allocations(|| black_box(engine.validate(&snap, &Change::create(&vs))));
            println!("virtual_service/snapshot-{size}/{routes}: {allocations} allocations per check");
            group.bench_with_input(BenchmarkId::new(format!("snapshot-{size}"), routes), &vs, |b, vs| {
                b.iter(|| engine.validate(black_box(&snap), black_box(&Change::create(vs))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_virtual_service);
criterion_main!(benches);
