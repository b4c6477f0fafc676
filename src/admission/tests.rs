//! Unit tests of decode, decide and encode (no server involved).

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use super::*;
use crate::policy::{Policy, Snapshot, testing};

fn admission(policy: Policy) -> Admission {
    let snapshot = Snapshot::from_objects(&policy, testing::bookinfo());
    Admission::new(Engine::new(policy), Arc::new(SharedSnapshot::new(snapshot)))
}

fn review(operation: &str, group: &str, resource: &str, object: Value, old: Value) -> Vec<u8> {
    let kind = object.get("kind").or_else(|| old.get("kind")).cloned().unwrap_or_else(|| json!("VirtualService"));
    let name = object.pointer("/metadata/name").or_else(|| old.pointer("/metadata/name")).cloned();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": name,
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    }))
    .expect("json")
}

fn vs(subset: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
            {"destination": {"host": "reviews", "subset": subset}, "weight": 50}
        ]}]}
    })
}

fn response(reviewed: &Reviewed) -> Value {
    let value: Value = serde_json::from_slice(&reviewed.body).expect("response json");
    assert_eq!(value["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(value["kind"], "AdmissionReview");
    value["response"].clone()
}

#[test]
fn denies_a_missing_subset_with_403_and_every_error() {
    let a = admission(Policy::default());
    let body = review("CREATE", "networking.istio.io", "virtualservices", vs("v9"), Value::Null);
    let reviewed = a.review(Endpoint::Validate, &body).expect("reviewed");
    let r = response(&reviewed);
    assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(r["status"]["reason"], "Forbidden");
    let message = r["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with(
            "routeguard denied VirtualService default/reviews: RG103 spec.http[0].route[1].destination.subset: "
        ),
        "{message}"
    );
    assert_eq!(r["status"]["details"]["causes"][0]["reason"], "RG103");
    assert_eq!(r["status"]["details"]["causes"][0]["field"], "spec.http[0].route[1].destination.subset");
    assert_eq!(reviewed.summary.decision, Decision::Denied);
    assert_eq!(reviewed.summary.codes, vec![Code::RG103]);
    assert_eq!((reviewed.summary.kind.as_str(), reviewed.summary.operation), ("VirtualService", "CREATE"));
}

#[test]
fn lists_several_errors_in_one_message() {
    let a = admission(Policy::default());
    let mut object = vs("v9");
    object["spec"]["http"][0]["route"][0]["weight"] = json!(10);
    let body = review("CREATE", "networking.istio.io", "virtualservices", object, Value::Null);
    let reviewed = a.review(Endpoint::Validate, &body).expect("reviewed");
    let message = response(&reviewed)["status"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("RG101 ") && message.contains("; RG103 "), "{message}");
}

#[test]
fn allows_a_good_virtual_service() {
    let a = admission(Policy::default());
    let body = review("CREATE", "networking.istio.io", "virtualservices", vs("v2"), Value::Null);
    let reviewed = a.review(Endpoint::Validate, &body).expect("reviewed");
    let r = response(&reviewed);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["status"]["status"], "Success");
    assert!(r.get("warnings").is_none() && r.get("patch").is_none());
    assert_eq!(reviewed.summary.decision, Decision::Allowed);
}

#[test]
fn exempt_users_get_warnings_instead_of_a_denial() {
    let policy = Policy { exempt_users: vec!["alice".into()], ..Policy::default() };
    let a = admission(policy);
    let body = review("CREATE", "networking.istio.io", "virtualservices", vs("v9"), Value::Null);
    let r = response(&a.review(Endpoint::Validate, &body).expect("reviewed"));
    assert_eq!(r["allowed"], true);
    let warning = r["warnings"][0].as_str().expect("warning");
    assert!(warning.starts_with("RG103 spec.http[0].route[1].destination.subset: "), "{warning}");
    assert!(warning.chars().count() <= encode::MAX_WARNING_CHARS);
}

#[test]
fn dry_run_gets_the_same_decision() {
    let a = admission(Policy::default());
    let body = review("CREATE", "networking.istio.io", "virtualservices", vs("v9"), Value::Null);
    let mut value: Value = serde_json::from_slice(&body).expect("json");
    value["request"]["dryRun"] = json!(true);
    let reviewed = a.review(Endpoint::Validate, &serde_json::to_vec(&value).expect("json")).expect("reviewed");
    assert_eq!(response(&reviewed)["allowed"], false);
    assert!(reviewed.summary.dry_run);
}

#[test]
fn warnings_are_cut_to_120_characters() {
    let long = "x".repeat(300);
    let cut = encode::truncate(&long, 120);
    assert_eq!(cut.chars().count(), 120);
    assert!(cut.ends_with("..."));
    assert_eq!(encode::truncate("short\nline", 120), "short line");
    let accents = "é".repeat(130);
    assert_eq!(encode::truncate(&accents, 120).chars().count(), 120);
    let exact = "é".repeat(120);
    assert_eq!(encode::truncate(&exact, 120), exact, "exactly the limit is kept whole");
    let cut = encode::truncate(&format!("a\tb\r{}", "y".repeat(200)), 120);
    assert_eq!((cut.chars().count(), &cut[..5]), (120, "a b y"), "control characters go in a cut text too");
    assert_eq!(encode::truncate("abcdef", 2), "...");
}

#[test]
fn deleting_a_destination_rule_in_use_is_denied_from_old_object() {
    let a = admission(Policy::default());
    let old = testing::destination_rule("default", "reviews", "reviews", &["v1", "v2", "v3"]).raw;
    let body = review("DELETE", "networking.istio.io", "destinationrules", Value::Null, old);
    let reviewed = a.review(Endpoint::Validate, &body).expect("reviewed");
    assert_eq!(reviewed.summary.decision, Decision::Denied, "{:?}", reviewed.summary);
    assert!(!reviewed.summary.codes.is_empty());
    assert!(reviewed.summary.codes.iter().all(|c| *c == Code::RG201), "{:?}", reviewed.summary.codes);
    assert_eq!((reviewed.summary.namespace.as_str(), reviewed.summary.name.as_str()), ("default", "reviews"));
}

#[test]
fn mutate_patches_a_deployment_without_version_label() {
    let a = admission(Policy::default());
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v4", "namespace": "default", "labels": {"app": "reviews"}},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "template": {
                "metadata": {"labels": {"app": "reviews"}},
                "spec": {"containers": [{"name": "reviews", "image": "example/reviews:v4"}]}
            }
        }
    });
    let body = review("CREATE", "apps", "deployments", object.clone(), Value::Null);
    let reviewed = a.review(Endpoint::Mutate, &body).expect("reviewed");
    let r = response(&reviewed);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD.decode(r["patch"].as_str().expect("base64")).expect("b64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
    let mut patched = object;
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(patched.pointer("/spec/template/metadata/labels/version"), Some(&json!("v4")));
    assert_eq!(reviewed.summary.decision, Decision::Patched);

    // The validating endpoint does not patch.
    let r = response(&a.review(Endpoint::Validate, &body).expect("reviewed"));
    assert!(r.get("patch").is_none());
}

#[test]
fn mutate_leaves_other_kinds_alone() {
    let a = admission(Policy::default());
    let body = review("CREATE", "networking.istio.io", "virtualservices", vs("v2"), Value::Null);
    let reviewed = a.review(Endpoint::Mutate, &body).expect("reviewed");
    assert!(response(&reviewed).get("patch").is_none());
    assert_eq!(reviewed.summary.decision, Decision::Allowed);
}

#[test]
fn unhandled_kinds_subresources_and_connect_are_allowed() {
    let a = admission(Policy::default());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let reviewed = a.review(Endpoint::Validate, &review("CREATE", "", "configmaps", cm, Value::Null)).expect("ok");
    assert_eq!(response(&reviewed)["allowed"], true);
    assert_eq!(reviewed.summary.decision, Decision::Unhandled);
    assert_eq!(reviewed.summary.note.as_deref(), Some("resource configmaps.core is not handled"));

    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "reviews-v1"}});
    let mut value: Value =
        serde_json::from_slice(&review("UPDATE", "apps", "deployments", scale.clone(), scale)).expect("json");
    value["request"]["subResource"] = json!("scale");
    let reviewed = a.review(Endpoint::Validate, &serde_json::to_vec(&value).expect("json")).expect("ok");
    assert_eq!(reviewed.summary.decision, Decision::Unhandled);
}

#[test]
fn generate_name_stands_in_for_a_missing_name() {
    let a = admission(Policy::default());
    let mut object = vs("v2");
    object["metadata"] = json!({"generateName": "reviews-", "namespace": "default"});
    let reviewed =
        a.review(Endpoint::Validate, &review("CREATE", "networking.istio.io", "virtualservices", object, Value::Null));
    assert_eq!(reviewed.expect("ok").summary.name, "reviews-*");
}

#[test]
fn bad_envelopes_are_errors() {
    let a = admission(Policy::default());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"kind\": ".to_vec(), "MalformedJSON"),
        (b"[1, 2]".to_vec(), "NotAnAdmissionReview"),
        (br#"{"apiVersion": "apps/v1", "kind": "Deployment"}"#.to_vec(), "NotAnAdmissionReview"),
        (br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#.to_vec(), "UnsupportedAPIVersion"),
        (br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec(), "NoRequest"),
        (
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 3}}"#.to_vec(),
            "NotAnAdmissionReview",
        ),
    ];
    for (body, reason) in cases {
        let err = a.review(Endpoint::Validate, &body).expect_err(reason);
        assert_eq!(err.reason(), reason, "{err}");
        assert!(err.is_bad_request());
    }
}

/// A review whose uid is known but whose object is missing or unreadable is
/// answered, not failed: a non-200 answer would let `failurePolicy: Ignore` admit it unchecked.
#[test]
fn a_missing_or_malformed_object_is_refused_with_a_400_status() {
    let a = admission(Policy::default());
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            review("CREATE", "networking.istio.io", "virtualservices", Value::Null, Value::Null),
            "NoObject",
            "CREATE of VirtualService has no object",
        ),
        (
            review("UPDATE", "networking.istio.io", "virtualservices", vs("v1"), Value::Null),
            "NoObject",
            "UPDATE of VirtualService has no oldObject",
        ),
        (
            review("DELETE", "networking.istio.io", "destinationrules", Value::Null, Value::Null),
            "NoObject",
            "DELETE of DestinationRule has no oldObject",
        ),
        (
            review("CREATE", "networking.istio.io", "destinationrules", vs("v1"), Value::Null),
            "BadObject",
            "object: VirtualService does not match the request's resource, expected a DestinationRule",
        ),
        (
            review("CREATE", "networking.istio.io", "virtualservices", json!("text"), Value::Null),
            "BadObject",
            "object: object is not a JSON object",
        ),
    ];
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        for (body, reason, message) in &cases {
            let reviewed = a.review(endpoint, body).expect("answered");
            assert_eq!(reviewed.summary.decision, Decision::Invalid);
            let answer: Value = serde_json::from_slice(&reviewed.body).expect("json");
            let response = &answer["response"];
            assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
            assert_eq!(response["allowed"], false);
            assert_eq!(response["status"]["code"], 400);
            assert_eq!(response["status"]["reason"], "BadRequest");
            assert_eq!(response["status"]["details"]["causes"][0]["reason"], *reason);
            let text = response["status"]["message"].as_str().expect("message");
            assert!(text.starts_with("routeguard cannot review ") && text.ends_with(message), "{text}");
            assert!(response.get("patch").is_none());
        }
    }
}

#[test]
fn the_snapshot_can_be_swapped() {
    let policy = Policy::default();
    let source = Arc::new(SharedSnapshot::new(Snapshot::from_objects(&policy, testing::bookinfo())));
    let a = Admission::new(Engine::new(policy.clone()), source.clone());
    let body = review("CREATE", "networking.istio.io", "virtualservices", vs("v2"), Value::Null);
    assert_eq!(a.review(Endpoint::Validate, &body).expect("ok").summary.decision, Decision::Allowed);
    source.store(Snapshot::for_policy(&policy));
    assert_eq!(a.review(Endpoint::Validate, &body).expect("ok").summary.decision, Decision::Denied);
}

#[test]
fn an_update_reads_the_old_object_only_where_the_policy_compares() {
    let decoded = |body: Vec<u8>| match decode::decode(&body).expect("a review").target {
        decode::Target::Handled { old, .. } => old.map(|o| o.key.name),
        other => panic!("not handled: {other:?}"),
    };
    let rule = |subsets: &[&str]| {
        let subsets: Vec<Value> = subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect();
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": "reviews", "namespace": "default"},
               "spec": {"host": "reviews", "subsets": subsets}})
    };
    // A VirtualService's old state is judged by nothing: present, not read.
    let body = review("UPDATE", "networking.istio.io", "virtualservices", vs("v1"), vs("v2"));
    assert_eq!(decoded(body), None);
    // A DestinationRule's is (the subsets it drops), and so is a Deployment's (its template).
    let body = review("UPDATE", "networking.istio.io", "destinationrules", rule(&["v1"]), rule(&["v1", "v2"]));
    assert_eq!(decoded(body).as_deref(), Some("reviews"));
    let deployment = testing::deployment("default", "reviews-v1", "reviews", "v1").raw;
    let body = review("UPDATE", "apps", "deployments", deployment.clone(), deployment);
    assert_eq!(decoded(body).as_deref(), Some("reviews-v1"));
}

/// The cut as it was written before it was made cheaper: one character at a time.
fn truncate_as_before(text: &str, max: usize) -> String {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

proptest::proptest! {
    #[test]
    fn truncate_cuts_as_it_did_before(text in "[a-z \\t\\n\\r\\u{1}\\u{7f}\\u{85}é漢🙂]{0,200}", max in 0usize..160) {
        proptest::prop_assert_eq!(encode::truncate(&text, max), truncate_as_before(&text, max));
    }
}
