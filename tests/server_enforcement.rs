//! Enforcement per namespace through the real admission router: the same
//! broken changes in a namespace of each mode (`deny`, `warn`, `audit`, an
//! unknown label value, no label at all) answer as each mode says, the
//! protective rules (RG303 on a DELETE) included.

#[path = "server_support/common.rs"]
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt as _;
use routeguard::admission::{Admission, SharedSnapshot};
use routeguard::model::Object;
use routeguard::policy::{ENFORCEMENT_LABEL, Enforcement, Engine, Policy, Snapshot};
use routeguard::server::app::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// `value` moved to namespace `ns`.
fn in_namespace(mut value: Value, ns: &str) -> Value {
    value["metadata"]["namespace"] = json!(ns);
    value
}

fn namespace(name: &str, mode: Option<&str>) -> Object {
    let labels = mode.map_or(json!({}), |m| json!({ENFORCEMENT_LABEL: m}));
    object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))
}

/// Bookinfo in every namespace; `deny`, `warn`, `audit` and `typo` carry the
/// label of that mode (`typo` an unknown value), `default` none.
const NAMESPACES: [(&str, Option<&str>); 5] = [
    ("deny", Some("deny")),
    ("warn", Some("warn")),
    ("audit", Some("audit")),
    ("typo", Some("block")),
    ("default", None),
];

fn mode_router(policy: Policy) -> (axum::Router, AppState) {
    let mut objects = Vec::new();
    for (ns, mode) in NAMESPACES {
        objects.push(namespace(ns, mode));
        objects.extend(bookinfo().into_iter().map(|o| object(in_namespace(o.raw, ns))));
    }
    let snapshot = Snapshot::from_objects(&policy, objects);
    let state = AppState::new(Admission::new(Engine::new(policy), Arc::new(SharedSnapshot::new(snapshot))));
    (app::admission_router(state.clone()), state)
}

/// Posts a review of `operation` on `object`/`old` in namespace `ns`; the AdmissionReview's `response`.
async fn admit(router: &axum::Router, ns: &str, operation: &str, object: Option<&Value>, old: Option<&Value>) -> Value {
    let object = object.map(|o| in_namespace(o.clone(), ns));
    let old = old.map(|o| in_namespace(o.clone(), ns));
    let mut review = review(operation, object.as_ref(), old.as_ref());
    review["request"]["namespace"] = json!(ns);
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .body(Body::from(body(&review)))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let value: Value = serde_json::from_slice(&bytes).expect("json");
    value["response"].clone()
}

fn warnings(response: &Value) -> Vec<String> {
    let list = response["warnings"].as_array().cloned().unwrap_or_default();
    list.iter().filter_map(|w| w.as_str().map(str::to_string)).collect()
}

fn causes(response: &Value) -> Vec<String> {
    let list = response["status"]["details"]["causes"].as_array().cloned().unwrap_or_default();
    list.iter().filter_map(|c| c["reason"].as_str().map(str::to_string)).collect()
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

/// A VirtualService sending half of its traffic to a subset no DestinationRule defines (RG103).
fn broken_route() -> Value {
    virtual_service(&[("v1", 50), ("v9", 50)])
}

#[tokio::test]
async fn deny_refuses_and_names_the_namespace_and_its_mode() {
    let (router, _) = mode_router(Policy::default());
    let response = admit(&router, "deny", "CREATE", Some(&broken_route()), None).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(causes(&response), ["RG103"]);
    let message = message(&response);
    assert!(message.starts_with("routeguard denied VirtualService deny/reviews: RG103 spec.http[0]"), "{message}");
    assert!(message.ends_with(" (enforcement: deny, namespace deny)"), "{message}");
    assert!(warnings(&response).is_empty());
    // The protective rules too: deleting the Service two routes send traffic to.
    let response = admit(&router, "deny", "DELETE", None, Some(&service("reviews", "reviews"))).await;
    assert_eq!((response["allowed"].clone(), causes(&response)), (json!(false), vec!["RG303".to_string(); 2]));
}

#[tokio::test]
async fn warn_admits_with_every_error_as_a_warning_a_protected_delete_included() {
    let (router, _) = mode_router(Policy::default());
    let response = admit(&router, "warn", "CREATE", Some(&broken_route()), None).await;
    assert_eq!(response["allowed"], true, "{response}");
    let warned = warnings(&response);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].starts_with("RG103 spec.http[0].route[1].destination.subset: "), "{warned:?}");
    let response = admit(&router, "warn", "DELETE", None, Some(&service("reviews", "reviews"))).await;
    assert_eq!(response["allowed"], true, "{response}");
    let warned = warnings(&response);
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned.iter().all(|w| w.starts_with("RG303 ")), "{warned:?}");
    // RG201: removing a subset a route uses.
    let response = admit(&router, "warn", "DELETE", None, Some(&destination_rule(&["v1", "v2", "v3"]))).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(warnings(&response).iter().all(|w| w.starts_with("RG201 ")) && !warnings(&response).is_empty());
}

#[tokio::test]
async fn audit_admits_silently_and_still_counts() {
    let (router, state) = mode_router(Policy::default());
    let response = admit(&router, "audit", "CREATE", Some(&broken_route()), None).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("warnings").is_none_or(Value::is_null), "{response}");
    let response = admit(&router, "audit", "DELETE", None, Some(&service("reviews", "reviews"))).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(warnings(&response).is_empty());
    let text = state.metrics.render(routeguard::server::metrics::Live { snapshot_objects: 0, ready: true });
    let series = "routeguard_admission_requests_total{endpoint=\"validate\",kind=\"VirtualService\",operation=\"CREATE\",decision=\"allowed\"} 1";
    assert!(text.lines().any(|l| l == series), "{text}");
}

#[tokio::test]
async fn an_unknown_label_value_denies_and_says_so() {
    let (router, _) = mode_router(Policy { enforcement: Enforcement::Audit, ..Policy::default() });
    let response = admit(&router, "typo", "CREATE", Some(&broken_route()), None).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(message(&response).ends_with(" (enforcement: deny, namespace typo)"), "{response}");
    let warned = warnings(&response);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].starts_with("namespace typo: label routeguard.io/enforcement: unknown value \"block\""),
        "{warned:?}"
    );
    assert!(warned[0].chars().count() <= 120, "{warned:?}");
    // A clean change in that namespace is allowed, with the same notice.
    let response = admit(&router, "typo", "CREATE", Some(&virtual_service(&[("v1", 50), ("v3", 50)])), None).await;
    assert_eq!((response["allowed"].clone(), warnings(&response).len()), (json!(true), 1));
}

#[tokio::test]
async fn a_namespace_without_the_label_follows_the_policy_default() {
    let (router, _) = mode_router(Policy::default());
    let response = admit(&router, "default", "CREATE", Some(&broken_route()), None).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).ends_with(" (enforcement: deny, the policy default, namespace default)"), "{response}");
    // A namespace the snapshot does not hold at all: the default too.
    let response = admit(&router, "elsewhere", "CREATE", Some(&broken_route()), None).await;
    assert_eq!(response["allowed"], false);

    let (router, _) = mode_router(Policy { enforcement: Enforcement::Warn, ..Policy::default() });
    let response = admit(&router, "default", "CREATE", Some(&broken_route()), None).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(warnings(&response).len(), 1);
    // The label still wins over the default.
    let response = admit(&router, "deny", "CREATE", Some(&broken_route()), None).await;
    assert_eq!(response["allowed"], false);
}

#[tokio::test]
async fn exempt_users_are_warned_in_every_mode() {
    let (router, _) = mode_router(Policy { exempt_users: vec!["alice".into()], ..Policy::default() });
    for ns in ["deny", "warn"] {
        let response = admit(&router, ns, "CREATE", Some(&broken_route()), None).await;
        assert_eq!(response["allowed"], true, "{ns}: {response}");
        assert_eq!(warnings(&response).len(), 1, "{ns}: {response}");
    }
    let response = admit(&router, "audit", "CREATE", Some(&broken_route()), None).await;
    assert_eq!((response["allowed"].clone(), warnings(&response).len()), (json!(true), 0));
}
