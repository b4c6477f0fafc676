//! Replays the AdmissionReviews recorded from a real kube-apiserver
//! (`tests/fixtures/admission-reviews/`, see its README) through the real
//! router, in order, with the chart's default policy. The snapshot starts with
//! the Services the recorded session had made outside the webhook's rules and
//! follows every change the reviews admit (the mutated object for the
//! mutating endpoint; nothing for a dry run), as the live index would.
//!
//! Every fixture has a written-down answer: allowed or not, the error codes,
//! the warning codes, and whether a patch comes back. For every route whose
//! written form kubectl recorded (last-applied-configuration), the policy
//! judging that form with the CRD defaults `check` applies gives the same codes.

#[path = "server_support/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use routeguard::admission::{Admission, SharedSnapshot};
use routeguard::manifest::yaml::parse_documents;
use routeguard::model::Object;
use routeguard::policy::{Change, Engine, Policy, Snapshot};
use routeguard::server::app::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// What routeguard must answer to one recorded review.
struct Expected {
    file: &'static str,
    allowed: bool,
    /// Codes of `status.details.causes` (the errors of a denial).
    errors: &'static [&'static str],
    /// Codes of `warnings`, in order.
    warnings: &'static [&'static str],
    /// A JSON Patch comes back.
    patched: bool,
}

const fn allow(file: &'static str) -> Expected {
    Expected { file, allowed: true, errors: &[], warnings: &[], patched: false }
}

const fn patch(file: &'static str) -> Expected {
    Expected { file, allowed: true, errors: &[], warnings: &[], patched: true }
}

const fn warn(file: &'static str, warnings: &'static [&'static str]) -> Expected {
    Expected { file, allowed: true, errors: &[], warnings, patched: false }
}

const fn deny(file: &'static str, errors: &'static [&'static str]) -> Expected {
    Expected { file, allowed: false, errors, warnings: &[], patched: false }
}

/// The answers, in the order the API server sent the reviews.
const EXPECTED: &[Expected] = &[
    // Deployments get their version labels.
    patch("001-mutate-deployment-create.json"),
    patch("002-mutate-deployment-create.json"),
    patch("003-mutate-deployment-create.json"),
    patch("004-mutate-deployment-create.json"),
    // New images under a version label the user wrote: the label is mirrored on the Deployment and its
    // source recorded (the recording webhook did not mutate, so the stored objects lack both).
    patch("005-mutate-deployment-update.json"),
    patch("006-mutate-deployment-update.json"),
    // A dry run is answered like the real thing (and changes no state).
    patch("007-mutate-deployment-create.json"),
    allow("008-validate-destinationrule-create.json"),
    allow("009-validate-virtualservice-create.json"),
    allow("010-validate-virtualservice-update.json"),
    // No httpbin Service or DestinationRule was ever made in the recorded session: route and mirror
    // are refused (host, then subset), and `mirror_percent`, which Istio's CRD keeps, is flagged.
    Expected {
        file: "011-validate-virtualservice-create.json",
        allowed: false,
        errors: &["RG104", "RG103", "RG104", "RG103"],
        warnings: &["RG108"],
        patched: false,
    },
    deny("012-validate-virtualservice-create.json", &["RG104", "RG103", "RG104", "RG103", "RG104"]),
    // One backendRef written without a weight arrives with the CRD default `weight: 1` (no RG101), but its
    // parentRef names Gateway shop/mesh-gw, and the recorded cluster had no Gateway (the Gateway API's Gateway
    // CRD was not even installed, see the fixtures' README): the route attached to nothing.
    deny("013-validate-httproute-create.json", &["RG114"]),
    allow("014-validate-httproute-update.json"),
    allow("015-validate-virtualservice-update.json"),
    allow("016-validate-destinationrule-update.json"),
    // v2 gets no traffic any more; v3 still gets weight 80 from the VirtualService.
    allow("017-validate-deployment-delete.json"),
    deny("018-validate-deployment-delete.json", &["RG303"]),
    // The garbage collector removing a finalizer from an object being deleted: no mutation.
    allow("019-mutate-deployment-update.json"),
    // The VirtualService still sends weight 20 and 80 to Service reviews, through subsets v1 and v3.
    deny("020-validate-service-delete.json", &["RG303", "RG303"]),
    deny("021-validate-destinationrule-delete.json", &["RG201", "RG201"]),
    // Subset v1 of Service owner selects no Deployment.
    warn("022-validate-destinationrule-create.json", &["RG203"]),
    allow("023-validate-service-delete.json"),
    allow("024-validate-destinationrule-delete.json"),
    patch("025-mutate-deployment-create.json"),
    allow("026-validate-service-delete.json"),
    allow("027-validate-deployment-delete.json"),
    allow("028-validate-deployment-delete.json"),
    // The namespace controller (exempt in the chart's policy) deletes the last v1: a warning, not a refusal.
    warn("029-validate-deployment-delete.json", &["RG303"]),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission-reviews")
}

fn read(file: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The policy the chart installs by default (`policy:` in its values.yaml).
fn chart_policy() -> Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/charts/routeguard/values.yaml");
    let text = std::fs::read_to_string(path).expect("values.yaml");
    let values = parse_documents(&text).expect("values").remove(0).value;
    Policy::from_value(&values["policy"]).expect("the chart's policy")
}

fn service(namespace: &str, name: &str, selector: Value) -> Object {
    let raw = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                     "spec": {"selector": selector, "ports": [{"name": "http", "port": 80}]}});
    Object::from_value(raw, namespace).expect("service")
}

/// The cluster before the first review: the Services the session created
/// (Services are not sent to the webhook on create): those whose deletion was
/// recorded, as recorded, and the customers Services the HTTPRoutes name.
fn initial(policy: &Policy) -> Snapshot {
    let mut objects: Vec<Object> = Vec::new();
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with("-validate-service-delete.json") {
            let old = read(&name)["request"]["oldObject"].clone();
            objects.push(Object::from_value(old, "default").expect("recorded service"));
        }
    }
    assert_eq!(objects.len(), 3, "the recorded Service deletions");
    for name in ["customers", "customers-v1", "customers-v2", "customers-v3"] {
        objects.push(service("shop", name, json!({"app": "customers"})));
    }
    Snapshot::from_objects(policy, objects)
}

/// Posts one review and returns the AdmissionReview's `response`.
async fn post(router: &axum::Router, path: &str, review: &Value) -> Value {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).expect("json")))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).expect("json answer");
    assert_eq!(answer["response"]["uid"], review["request"]["uid"], "the uid is echoed");
    answer["response"].clone()
}

fn codes(list: &Value, field: &str) -> Vec<String> {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .filter_map(|item| match field {
            "" => item.as_str().and_then(|w| w.split(' ').next()).map(str::to_string),
            _ => item[field].as_str().map(str::to_string),
        })
        .collect()
}

/// Applies an admitted review to the snapshot, as the watch would.
fn follow(snapshot: &mut Snapshot, request: &Value, response: &Value) {
    if !response["allowed"].as_bool().unwrap_or(false) || request["dryRun"] == true {
        return;
    }
    match request["operation"].as_str() {
        Some("CREATE" | "UPDATE") => {
            let mut raw = request["object"].clone();
            if let Some(patch) = response["patch"].as_str() {
                let bytes = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64 patch");
                let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("json patch");
                json_patch::patch(&mut raw, &patch).expect("the patch applies to the object sent");
                // Admission reads the object without what it never reads (managed
                // fields, others' annotations): the patch must leave those as sent.
                let sent = &request["object"]["metadata"];
                assert_eq!(raw["metadata"]["managedFields"], sent["managedFields"], "managed fields survive the patch");
                for (key, value) in sent["annotations"].as_object().into_iter().flatten() {
                    assert_eq!(&raw["metadata"]["annotations"][key], value, "annotation {key} survives the patch");
                }
            }
            snapshot.upsert(Object::from_value(raw, "default").expect("admitted object"));
        }
        Some("DELETE") => {
            let old = Object::from_value(request["oldObject"].clone(), "default").expect("deleted object");
            snapshot.remove(&old.key);
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_recorded_review_gets_its_written_down_answer() {
    let mut files: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.file).collect();
    assert_eq!(files, expected, "every fixture has a written-down answer, in order");

    let policy = chart_policy();
    let mut snapshot = initial(&policy);
    let source = Arc::new(SharedSnapshot::new(snapshot.clone()));
    let engine = Engine::new(policy.clone());
    let state = AppState::new(Admission::new(Engine::new(policy), source.clone()));
    let mut checked_as_written = 0;
    let router = app::admission_router(state);
    let mut mismatches = Vec::new();
    for want in EXPECTED {
        let review = read(want.file);
        let path = if want.file.contains("-mutate-") { "/mutate" } else { "/validate" };
        let response = post(&router, path, &review).await;
        let got_errors = codes(&response["status"]["details"]["causes"], "reason");
        let got_warnings = codes(&response["warnings"], "");
        let got = (response["allowed"] == true, got_errors, got_warnings, response["patch"].is_string());
        let wanted = (
            want.allowed,
            want.errors.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            want.warnings.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            want.patched,
        );
        if got != wanted {
            mismatches.push(format!("{}: got {got:?}, expected {wanted:?}\n  {response}", want.file));
        }
        if let Some(written) = as_written(&review["request"]) {
            // What `check` judges: the object as the user wrote it, with the CRD defaults it applies.
            let object = Object::from_value(written, "default").expect("last-applied object").with_api_defaults();
            let findings = engine.validate(&snapshot, &Change::create(&object));
            let offline: Vec<String> = findings.iter().map(|f| f.code.to_string()).collect();
            let mut online = got.1.clone();
            online.extend(got.2.iter().cloned());
            let (mut a, mut b) = (offline.clone(), online.clone());
            a.sort();
            b.sort();
            checked_as_written += 1;
            if a != b {
                mismatches.push(format!("{}: check gives {offline:?}, admission {online:?}", want.file));
            }
        }
        follow(&mut snapshot, &review["request"], &response);
        source.store(snapshot.clone());
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(checked_as_written, 7, "the routes whose written form kubectl recorded");
}

/// The routing object (VirtualService, HTTPRoute) of a CREATE or UPDATE as the
/// user wrote it: kubectl's last-applied-configuration, before the API server's defaults.
fn as_written(request: &Value) -> Option<Value> {
    let kind = request["kind"]["kind"].as_str()?;
    if !matches!(kind, "VirtualService" | "HTTPRoute") || request["operation"] == "DELETE" {
        return None;
    }
    let text =
        request["object"]["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str()?;
    serde_json::from_str(text).ok()
}
