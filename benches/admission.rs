//! Admission speed without TLS or HTTP: one AdmissionReview body in, the
//! response body out (`Admission::review`: decode, decide, encode), for the
//! three requests of `examples/loadgen.rs`, against the snapshot `serve
//! --objects` builds from the loadgen's 10,000 objects.
//!
//! `cargo bench --bench admission` prints, before the criterion cases, the
//! resident memory of loading that snapshot (peak and after) and the
//! allocations one review makes; next to each review it times parsing the
//! same body into a `serde_json::Value`, what a webhook that reads its
//! request at all pays, and the whole handler through the router (its
//! layers, the log line on standard error and the metrics; no TLS, no
//! HTTP/1 framing). Redirect standard error: `2>/dev/null`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use routeguard::admission::{Admission, Endpoint, SharedSnapshot};
use routeguard::policy::{Engine, Policy};
use routeguard::server::app::AppState;
use routeguard::server::logging::{self, LogFormat};
use serde_json::{Value, json};

#[path = "support/counting.rs"]
mod counting;
#[path = "../examples/harness/mod.rs"]
mod harness;

use harness::{admission_review, deployment, destination_rule, mib, virtual_service};

/// The loadgen's objects; under `cargo test` (no `--bench`) a tenth, to stay quick.
fn objects() -> usize {
    if std::env::args().any(|a| a == "--bench") { 10_000 } else { 1_000 }
}

/// A review of the mix, encoded.
fn review_body(uid: usize, operation: &str, object: &Value, old: Option<&Value>) -> Vec<u8> {
    admission_review(uid, operation, object, old)
}

fn bench_reviews(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    harness::write_objects(dir.path(), objects()).expect("write the objects");
    let engine = Engine::new(Policy::default());
    let (before, _) = harness::memory(std::process::id());
    // Loaded on a thread of its own, as `serve` loads on its main thread and
    // answers on the runtime's workers: each glibc thread has its own
    // allocator arena, and the reviews' allocations should not be served
    // from the free lists the load left behind.
    let paths = [dir.path().to_path_buf()];
    let snapshot = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let snapshot = routeguard::files::snapshot_from_paths(&engine, &paths, "default");
                routeguard::server::memory::release_free_memory();
                snapshot
            })
            .join()
            .expect("the load does not panic")
    })
    .expect("load the objects");
    let (after, peak) = harness::memory(std::process::id());
    println!(
        "admission/load: {} objects in the snapshot; resident memory {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB",
        snapshot.len(),
        mib(before),
        mib(after),
        mib(peak)
    );
    let admission = Admission::new(engine, Arc::new(SharedSnapshot::new(snapshot)));
    let _log = logging::init(LogFormat::Text);
    let router = routeguard::server::app::admission_router(AppState::new(admission.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");

    let (ns, app) = ("ns-7", "app-7");
    // A canary step: the app's VirtualService from 90/10 to 50/50.
    let shifted = virtual_service(ns, app, &[("v1", 50), ("v2", 50)]);
    let current = virtual_service(ns, app, &[("v1", 90), ("v2", 10)]);
    let cases = [
        ("virtual_service_update", Endpoint::Validate, review_body(1, "UPDATE", &shifted, Some(&current))),
        ("deployment_create", Endpoint::Mutate, review_body(2, "CREATE", &deployment(ns, "app-7-v3", app, None), None)),
        (
            "destination_rule_update",
            Endpoint::Validate,
            review_body(
                3,
                "UPDATE",
                &destination_rule(ns, app, &["v1", "v2", "v3"]),
                Some(&destination_rule(ns, app, &["v1", "v2"])),
            ),
        ),
    ];
    let mut group = c.benchmark_group("admission");
    for (name, endpoint, body) in &cases {
        let reviewed = admission.review(*endpoint, body).expect("a review");
        let answer: Value = serde_json::from_slice(&reviewed.body).expect("a JSON answer");
        // An allowed answer: a bench of a refusal measures the wrong path.
        assert_eq!(answer["response"]["allowed"], json!(true), "{name}: {answer}");
        let (_, reviewing) = counting::allocations(|| black_box(admission.review(*endpoint, body).expect("a review")));
        let (_, parsing) = counting::allocations(|| black_box(serde_json::from_slice::<Value>(body).expect("JSON")));
        println!(
            "admission/{name}: {} bytes in, {} out; {reviewing} allocations per review, {parsing} to parse it into a Value",
            body.len(),
            reviewed.body.len()
        );
        group.bench_function(format!("{name}/review"), |b| {
            b.iter(|| admission.review(*endpoint, black_box(body)).expect("a review"))
        });
        group.bench_function(format!("{name}/parse-value"), |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(body)).expect("JSON"))
        });
        // The whole handler without TLS and HTTP/1 framing: the router with
        // its layers, the log line (to standard error, `RUST_LOG` as in
        // production) and the metrics.
        let path = if *endpoint == Endpoint::Mutate { "/mutate" } else { "/validate" };
        group.bench_function(format!("{name}/router"), |b| b.iter(|| runtime.block_on(route(&router, path, body))));
    }
    group.finish();
}

/// One request through the router, its whole answer read.
async fn route(router: &axum::Router, path: &str, body: &[u8]) -> usize {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("a body").to_bytes().len()
}

criterion_group!(benches, bench_reviews);
criterion_main!(benches);
