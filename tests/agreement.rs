//! `check` and admission give the same answer for the same object.
//!
//! For every example folder, every routing object is sent to admission as a
//! CREATE, the way the API server sends it (its CRD defaults filled in),
//! against the state `check` built from the other objects of the folder (the
//! mutated Deployments and the generated objects included, as a live cluster
//! would hold them). The codes admission answers with (errors and warnings)
//! must be the codes `check` reports for that object.

mod example_folders;

use std::sync::Arc;

use routeguard::admission::{Admission, Endpoint, SharedSnapshot};
use routeguard::check;
use routeguard::manifest;
use routeguard::model::{Kind, Object};
use routeguard::policy::{Engine, Policy, Snapshot};
use serde_json::{Value, json};

/// Admission's answer (the AdmissionReview `response`) to `object` sent as a
/// CREATE the way the API server sends it (its CRD defaults filled in),
/// against `state` without the object itself.
fn admit(engine: &Engine, state: &Snapshot, object: Object) -> Value {
    let object = object.with_api_defaults();
    let kind = object.kind();
    let mut before = state.clone();
    before.remove(&object.key);
    let admission = Admission::new(engine.clone(), Arc::new(SharedSnapshot::new(before)));
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "agreement", "operation": "CREATE",
            "kind": {"group": kind.group(), "version": "v1", "kind": kind.as_str()},
            "resource": {"group": kind.group(), "version": "v1", "resource": kind.plural()},
            "name": object.name(), "namespace": object.namespace(),
            "userInfo": {"username": "developer"}, "object": object.raw
        }
    });
    let body = serde_json::to_vec(&review).expect("json");
    let reviewed = admission.review(Endpoint::Validate, &body).expect("reviewed");
    let mut answer: Value = serde_json::from_slice(&reviewed.body).expect("answer");
    answer["response"].take()
}

fn sorted(mut codes: Vec<String>) -> Vec<String> {
    codes.sort();
    codes
}

#[test]
fn check_and_admission_agree_on_every_example() {
    let engine = Engine::new(Policy::default());
    let mut compared = 0;
    for folder in example_folders::all() {
        let paths = vec![folder.clone()];
        let report = check::run(None, &paths, "default").expect("check runs");
        let state = routeguard::files::snapshot_from_paths(&engine, &paths, "default").expect("snapshot");
        for loaded in manifest::load_paths(&paths, "default").expect("load") {
            let kind = loaded.object.kind();
            if !matches!(kind, Kind::VirtualService | Kind::DestinationRule | Kind::ServiceEntry | Kind::HttpRoute) {
                continue;
            }
            let object = &loaded.object;
            let response = &admit(&engine, &state, object.clone());
            let mut online: Vec<String> = response["status"]["details"]["causes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["reason"].as_str().map(str::to_string))
                .collect();
            online.extend(
                response["warnings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|w| w.as_str()?.split(' ').next().map(str::to_string)),
            );
            let offline: Vec<String> = report
                .findings
                .iter()
                .map(|f| &f.finding)
                .filter(|f| f.kind == kind && f.namespace == object.namespace() && f.name == object.name())
                .filter(|f| f.severity != routeguard::policy::Severity::Info)
                .map(|f| f.code.to_string())
                .collect();
            assert_eq!(
                sorted(online),
                sorted(offline),
                "{} {}: admission and check disagree\n{response}",
                folder.display(),
                object.key
            );
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} routing objects compared");
}

/// A broken route in a namespace of each enforcement mode: `check` reports an
/// error exactly where admission refuses, a warning where it warns, and
/// nothing above an info where it admits silently.
#[test]
fn check_and_admission_agree_on_each_enforcement_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for (ns, mode) in [("deny", Some("deny")), ("warn", Some("warn")), ("audit", Some("audit")), ("plain", None)] {
        let labels = mode.map_or(String::new(), |m| format!("\n  labels:\n    routeguard.io/enforcement: {m}"));
        text.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}{labels}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: {ns}\n\
             spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: nowhere}}\n---\n"
        ));
    }
    std::fs::write(dir.path().join("routes.yaml"), text).expect("write");
    let paths = vec![dir.path().to_path_buf()];
    let report = check::run(None, &paths, "default").expect("check runs");
    let engine = Engine::new(Policy::default());
    let state = routeguard::files::snapshot_from_paths(&engine, &paths, "default").expect("snapshot");
    let mut seen = Vec::new();
    for loaded in manifest::load_paths(&paths, "default").expect("load") {
        if loaded.object.kind() != Kind::VirtualService {
            continue;
        }
        let object = &loaded.object;
        let response = admit(&engine, &state, object.clone());
        let allowed = response["allowed"].as_bool().expect("allowed");
        let warned = response["warnings"].as_array().map_or(0, Vec::len);
        let offline: Vec<_> =
            report.findings.iter().map(|f| &f.finding).filter(|f| f.namespace == object.namespace()).collect();
        let severities: Vec<&str> = offline.iter().map(|f| f.severity.as_str()).collect();
        assert!(offline.iter().all(|f| f.code.as_str() == "RG104"), "{offline:?}");
        assert_eq!(allowed, !offline.iter().any(|f| f.is_error()), "{}: {severities:?}", object.namespace());
        assert_eq!(warned, severities.iter().filter(|s| **s == "warning").count(), "{}", object.namespace());
        seen.push((object.namespace().to_string(), allowed, severities));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("audit".to_string(), true, vec!["info"]),
            ("deny".to_string(), false, vec!["error"]),
            ("plain".to_string(), false, vec!["error"]),
            ("warn".to_string(), true, vec!["warning"]),
        ]
    );
    assert!(!report.to_text().is_empty() && report.notices.is_empty());
}
