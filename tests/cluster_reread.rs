//! Re-reading before a refusal, against a fake API server: an object the
//! watch has not delivered yet turns the refusal around; a re-read that times
//! out leaves it; a subset about to be generated becomes a warning.

mod cluster_fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use cluster_fake::{Fake, Override, deployment, deployments, rules, service, services};
use routeguard::cluster::live::{Live, LiveSettings};
use routeguard::model::Object;
use routeguard::policy::{Change, Code, Engine, Finding, Severity};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

fn live(fake: &Fake, timeout: Duration) -> Live {
    let mut settings = LiveSettings::new("routeguard", "rg");
    settings.generate = false;
    settings.reread_timeout = timeout;
    Live::start(fake.client(), Arc::new(Engine::default()), settings)
}

fn route(subset: &str) -> Object {
    Object::from_value(
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "reviews", "namespace": "shop"},
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

async fn recheck(live: &Live, object: &Object, generating: bool) -> (Vec<Finding>, Option<Vec<Finding>>) {
    let engine = Engine::default();
    let snapshot = live.source().current();
    let judge = |s: &routeguard::policy::Snapshot| engine.validate(s, &Change::create(object));
    let first = judge(&snapshot);
    let again = live.rereader().recheck(&engine, &snapshot, object, &first, generating, judge).await;
    (first, again)
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
    let (first, again) = recheck(&live, &route("v2"), false).await;
    assert!(refused(&first), "the index alone refuses: {first:?}");
    let again = again.expect("re-read");
    assert!(!again.iter().any(Finding::is_error), "{again:?}");
    let mut reads: Vec<String> = fake.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
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
    let (_, again) = recheck(&live, &route("v3"), false).await;
    assert!(refused(&again.expect("re-read")));
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
    let (_, again) = recheck(&live, &route("v2"), false).await;
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert!(refused(&again.expect("re-read")));
    let metrics = live.render_metrics();
    assert!(metrics.contains("routeguard_cluster_reread_errors_total 1"), "{metrics}");
}

#[tokio::test]
async fn a_subset_routeguard_is_about_to_generate_is_a_warning() {
    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    let live = live(&fake, Duration::from_millis(500));
    assert!(fake.eventually(WAIT, || live.is_synced()).await);
    // The Deployment arrived a moment ago (the watch lags): the re-read finds it.
    fake.put_silent(&deployments("shop"), deployment("reviews-v2", "shop", "reviews", "v2"));
    let (first, again) = recheck(&live, &route("v2"), true).await;
    assert!(refused(&first));
    let again = again.expect("re-read");
    let f = again.iter().find(|f| f.code == Code::RG103).expect("still reported");
    assert_eq!(f.severity, Severity::Warning, "{again:?}");
    assert!(f.message.contains("routeguard is generating it"));
    // Without the controller running, it stays an error.
    let (_, again) = recheck(&live, &route("v2"), false).await;
    assert!(refused(&again.expect("re-read")));
}

fn review_body(subset: &str) -> Vec<u8> {
    let object = route(subset).raw;
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
            "name": "reviews", "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "dev"}, "object": object
        }
    });
    serde_json::to_vec(&review).expect("json")
}

#[tokio::test]
async fn an_admission_review_denied_by_the_index_is_allowed_after_the_reread() {
    use routeguard::admission::{Admission, Decision, Endpoint};
    use routeguard::cluster::admit;

    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    fake.put(&rules("shop"), rule(&["v1"]));
    let live = live(&fake, Duration::from_millis(500));
    assert!(fake.eventually(WAIT, || live.is_synced()).await);
    fake.put_silent(&rules("shop"), rule(&["v1", "v2"]));
    let admission = Admission::new(Engine::default(), live.source());

    let body = review_body("v2");
    let first = admission.review(Endpoint::Validate, &body).expect("reviewed");
    assert_eq!(first.summary.decision, Decision::Denied);
    assert!(admit::worth_rechecking(Endpoint::Validate, &first));
    assert!(!admit::worth_rechecking(Endpoint::Mutate, &first));
    let again = admit::recheck(&live, &admission, Endpoint::Validate, &body, first).await;
    assert_eq!(again.summary.decision, Decision::Allowed);
    let response: serde_json::Value = serde_json::from_slice(&again.body).expect("json");
    assert_eq!(response["response"]["uid"], "u-1");
    assert_eq!(response["response"]["allowed"], true);

    let body = review_body("v9");
    let first = admission.review(Endpoint::Validate, &body).expect("reviewed");
    let again = admit::recheck(&live, &admission, Endpoint::Validate, &body, first).await;
    assert_eq!(again.summary.decision, Decision::Denied, "still missing after the re-read");
    let response: serde_json::Value = serde_json::from_slice(&again.body).expect("json");
    assert_eq!(response["response"]["allowed"], false);
    assert!(response["response"]["status"]["message"].as_str().is_some_and(|m| m.contains("RG103")), "{response}");
}
