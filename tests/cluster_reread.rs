//! Re-reading before a refusal (admission's second look in live mode),
//! against a fake API server: an object the watch has not delivered yet turns
//! the refusal around; a re-read that times out leaves it; a subset about to
//! be generated becomes a warning; one object is re-read at most once a second.

mod cluster_fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use cluster_fake::{Fake, Override, deployment, deployments, rules, service, services};
use routeguard::admission::{Admission, Decision, Endpoint};
use routeguard::cluster::live::{Live, LiveSettings};
use routeguard::model::Object;
use routeguard::policy::{Code, Engine, Finding, Severity};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

fn live(fake: &Fake, timeout: Duration) -> Live {
    live_generating(fake, timeout, false)
}

fn live_generating(fake: &Fake, timeout: Duration, generate: bool) -> Live {
    let mut settings = LiveSettings::new("routeguard", "rg");
    settings.generate = generate;
    settings.reread_timeout = timeout;
    Live::start(fake.client(), Arc::new(Engine::default()), settings)
}

/// A VirtualService named after its subset, so each check is a different object for the rate limit.
fn route(subset: &str) -> Object {
    Object::from_value(
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": format!("reviews-{subset}"), "namespace": "shop"},
               "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}]}}),
        "shop",
    )
    .expect("route")
}

fn rule(subsets: &[&str]) -> serde_json::Value {
    let subsets: Vec<_> = subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect();
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews"},
           "spec": {"host": "reviews", "subsets": subsets}})
}

/// The findings of a CREATE of `object` from the index alone, and after admission's second look.
async fn recheck(live: &Live, object: &Object) -> (Vec<Finding>, Vec<Finding>) {
    let admission = Admission::new(Engine::default(), live.source());
    let first = admission.decide(Endpoint::Validate, &review_body(object)).expect("decided");
    let findings = first.verdict.findings.clone();
    let again = admission.second_look(first).await;
    (findings, again.verdict.findings)
}

/// The requests of re-reads: by name, or of one namespace. The watchers' own
/// lists and watches are cluster-wide here, and may come at any time (a
/// watcher relists after an error; under a loaded machine one did, once).
fn reread_requests(fake: &Fake) -> Vec<cluster_fake::Recorded> {
    fake.requests().into_iter().filter(|r| r.path.contains("/namespaces/")).collect()
}

fn refused(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.is_error() && f.code == Code::RG103)
}

#[tokio::test]
async fn a_rule_the_watch_has_not_delivered_turns_the_refusal_around() {
    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    fake.put(&rules("shop"), rule(&["v1"]));
    let live = live(&fake, Duration::from_millis(500));
    assert!(fake.eventually(WAIT, || live.is_synced()).await);
    // v2 was just applied; the watch has not brought it yet.
    fake.put_silent(&rules("shop"), rule(&["v1", "v2"]));
    fake.clear_requests();
    let (first, again) = recheck(&live, &route("v2")).await;
    assert!(refused(&first), "the index alone refuses: {first:?}");
    assert!(!again.iter().any(Finding::is_error), "{again:?}");
    let mut reads: Vec<String> = reread_requests(&fake).iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    reads.sort();
    assert_eq!(
        reads,
        vec![
            "GET /api/v1/namespaces/shop/services/reviews",
            "GET /apis/apps/v1/namespaces/shop/deployments",
            "GET /apis/networking.istio.io/v1/namespaces/istio-system/destinationrules",
            "GET /apis/networking.istio.io/v1/namespaces/shop/destinationrules",
        ]
    );
    assert!(fake.writes().is_empty(), "re-reads never write");
    // Still missing after the re-read: refused.
    fake.clear_requests();
    let (_, again) = recheck(&live, &route("v3")).await;
    assert!(refused(&again));
    assert_eq!(reread_requests(&fake).len(), 4, "re-read again for another object");
    // The same object again within a second: the refusal stands without a re-read.
    fake.clear_requests();
    let (_, again) = recheck(&live, &route("v3")).await;
    assert!(refused(&again));
    assert!(reread_requests(&fake).is_empty(), "rate-limited: {:?}", fake.requests());
}

#[tokio::test]
async fn a_reread_that_times_out_keeps_the_refusal() {
    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    let live = live(&fake, Duration::from_millis(300));
    assert!(fake.eventually(WAIT, || live.is_synced()).await);
    fake.put_silent(&rules("shop"), rule(&["v2"]));
    let slow = Override::status(Method::GET, "/apis/networking.istio.io/v1/namespaces/shop/destinationrules", 0, "")
        .delay(Duration::from_secs(3));
    fake.add_override(slow);
    let started = Instant::now();
    let (_, again) = recheck(&live, &route("v2")).await;
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert!(refused(&again));
    let metrics = live.render_metrics();
    assert!(metrics.contains("routeguard_cluster_reread_errors_total 1"), "{metrics}");
}

#[tokio::test]
async fn a_subset_routeguard_is_about_to_generate_is_a_warning() {
    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    let generating = live_generating(&fake, Duration::from_millis(500), true);
    let plain = live(&fake, Duration::from_millis(500));
    assert!(fake.eventually(WAIT, || generating.is_synced() && plain.is_synced()).await);
    // The Deployment arrived a moment ago (the watch lags): the re-read finds it.
    fake.put_silent(&deployments("shop"), deployment("reviews-v2", "shop", "reviews", "v2"));
    let (first, again) = recheck(&generating, &route("v2")).await;
    assert!(refused(&first));
    let f = again.iter().find(|f| f.code == Code::RG103).expect("still reported");
    assert_eq!(f.severity, Severity::Warning, "{again:?}");
    assert!(f.message.contains("routeguard is generating it"));
    // Without the controller running, it stays an error.
    let (_, again) = recheck(&plain, &route("v2")).await;
    assert!(refused(&again));
}

fn review_body(object: &Object) -> Vec<u8> {
    let object = &object.raw;
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
            "name": object["metadata"]["name"], "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "dev"}, "object": object
        }
    });
    serde_json::to_vec(&review).expect("json")
}

#[tokio::test]
async fn an_admission_review_denied_by_the_index_is_allowed_after_the_reread() {
    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    fake.put(&rules("shop"), rule(&["v1"]));
    let live = live(&fake, Duration::from_millis(500));
    assert!(fake.eventually(WAIT, || live.is_synced()).await);
    fake.put_silent(&rules("shop"), rule(&["v1", "v2"]));
    let admission = Admission::new(Engine::default(), live.source());

    let body = review_body(&route("v2"));
    // Without the second look (what `review` does), the index alone refuses.
    assert_eq!(admission.review(Endpoint::Validate, &body).expect("reviewed").summary.decision, Decision::Denied);
    let first = admission.decide(Endpoint::Validate, &body).expect("decided");
    assert_eq!(first.verdict.decision, Decision::Denied);
    let again = admission.second_look(first).await.answer().expect("answered");
    assert_eq!(again.summary.decision, Decision::Allowed);
    let response: serde_json::Value = serde_json::from_slice(&again.body).expect("json");
    assert_eq!(response["response"]["uid"], "u-1");
    assert_eq!(response["response"]["allowed"], true);

    // The mutating endpoint takes no second look: nothing is re-read.
    fake.clear_requests();
    let first = admission.decide(Endpoint::Mutate, &body).expect("decided");
    let _ = admission.second_look(first).await;
    assert!(reread_requests(&fake).is_empty(), "{:?}", fake.requests());

    let body = review_body(&route("v9"));
    let first = admission.decide(Endpoint::Validate, &body).expect("decided");
    let again = admission.second_look(first).await.answer().expect("answered");
    assert_eq!(again.summary.decision, Decision::Denied, "still missing after the re-read");
    let response: serde_json::Value = serde_json::from_slice(&again.body).expect("json");
    assert_eq!(response["response"]["allowed"], false);
    assert!(response["response"]["status"]["message"].as_str().is_some_and(|m| m.contains("RG103")), "{response}");
}
