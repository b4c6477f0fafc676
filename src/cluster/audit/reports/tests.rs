use serde_json::{Value, json};

use super::*;
use crate::model::Object;
use crate::policy::testing::{bookinfo, object, snapshot};
use crate::policy::{Code, Engine};

const T0: Timestamp = Timestamp { seconds: 1_700_000_000, nanos: 5 };
const T1: Timestamp = Timestamp { seconds: 1_700_000_300, nanos: 0 };

/// bookinfo plus a VirtualService in `shop` routing to a subset no rule defines.
fn broken() -> Vec<Object> {
    let mut objects = bookinfo();
    objects.push(object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "ratings", "namespace": "shop", "uid": "uid-vs"},
        "spec": {"hosts": ["ratings.example.com"], "http": [{"route": [
            {"destination": {"host": "reviews.default.svc.cluster.local", "subset": "v9"}}]}]}
    })));
    objects
}

fn audited(objects: Vec<Object>) -> (Vec<Finding>, Snapshot) {
    let snapshot = snapshot(objects);
    (Engine::default().audit(&snapshot), snapshot)
}

#[test]
fn one_report_per_namespace_with_findings() {
    let (findings, snapshot) = audited(broken());
    assert!(findings.iter().any(|f| f.code == Code::RG103), "{findings:#?}");
    let reports = desired(&findings, &snapshot, T0);
    assert_eq!(reports.keys().collect::<Vec<_>>(), ["shop"], "bookinfo itself is clean");
    let report = &reports["shop"];
    let results = report["results"].as_array().expect("results");
    let rg103 = results.iter().find(|r| r["rule"] == "RG103").expect("RG103 result");
    let finding = findings.iter().find(|f| f.code == Code::RG103).expect("finding");
    assert_eq!(
        *rg103,
        json!({
            "source": "routeguard", "policy": "routeguard", "rule": "RG103", "result": "fail", "severity": "high",
            "message": finding.summary(),
            "resources": [{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                           "namespace": "shop", "name": "ratings", "uid": "uid-vs"}],
            "properties": {"path": finding.path.as_str()},
            "timestamp": {"seconds": 1_700_000_000, "nanos": 5},
        })
    );
    assert_eq!(
        report["metadata"],
        json!({"name": "routeguard", "namespace": "shop",
        "labels": {"app.kubernetes.io/managed-by": "routeguard"}})
    );
    assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(report["kind"], "PolicyReport");
    let fails = results.iter().filter(|r| r["result"] == "fail").count();
    let warns = results.iter().filter(|r| r["result"] == "warn").count();
    assert_eq!(report["summary"], json!({"pass": 0, "fail": fails, "warn": warns, "error": 0, "skip": 0}));
}

#[test]
fn warnings_are_warn_and_infos_are_left_out() {
    let (mut findings, snapshot) = audited(broken());
    let mut warning = findings[0].clone().with_severity(Severity::Warning);
    warning.message = "a warning".into();
    let mut info = findings[0].clone().with_severity(Severity::Info);
    info.message = "an info".into();
    findings.extend([warning, info]);
    let reports = desired(&findings, &snapshot, T0);
    let results = reports["shop"]["results"].as_array().expect("results").clone();
    let warn = results.iter().find(|r| r["message"].as_str().is_some_and(|m| m.ends_with("a warning"))).expect("warn");
    assert_eq!((warn["result"].as_str(), warn["severity"].as_str()), (Some("warn"), Some("medium")));
    assert!(!results.iter().any(|r| r["message"].as_str().is_some_and(|m| m.ends_with("an info"))));
    assert!(!tally(&findings).keys().any(|(_, severity, _)| severity == "info"));
}

#[test]
fn a_clean_cluster_wants_no_reports() {
    let (findings, snapshot) = audited(bookinfo());
    assert!(findings.is_empty(), "{findings:#?}");
    assert!(desired(&findings, &snapshot, T0).is_empty());
}

/// `report` as the API server returns it: with uid and resourceVersion.
fn stored(mut report: Value, rv: &str) -> Value {
    report["metadata"]["uid"] = json!("uid-report");
    report["metadata"]["resourceVersion"] = json!(rv);
    report
}

#[test]
fn creates_what_is_missing_and_leaves_an_unchanged_report_alone() {
    let (findings, snapshot) = audited(broken());
    let first = desired(&findings, &snapshot, T0);
    let actions = plan(&first, &[]);
    assert_eq!(actions, [ReportAction::Create { namespace: "shop".into(), body: first["shop"].clone() }]);
    // The next pass stamps its results anew: no write for that alone.
    let existing = [stored(first["shop"].clone(), "7")];
    assert_eq!(plan(&desired(&findings, &snapshot, T1), &existing), []);
}

#[test]
fn updates_a_changed_report_keeping_known_timestamps() {
    let (findings, snapshot) = audited(broken());
    let first = desired(&findings, &snapshot, T0);
    let mut old = stored(first["shop"].clone(), "7");
    old["metadata"]["labels"]["team"] = json!("shop");
    let mut more = findings.clone();
    let mut extra = findings[0].clone();
    extra.message = "another problem".into();
    more.push(extra);
    let actions = plan(&desired(&more, &snapshot, T1), std::slice::from_ref(&old));
    let [ReportAction::Update { namespace, body }] = actions.as_slice() else { panic!("{actions:#?}") };
    assert_eq!(namespace, "shop");
    assert_eq!(body["metadata"]["resourceVersion"], "7");
    assert_eq!(body["metadata"]["labels"], json!({"team": "shop", "app.kubernetes.io/managed-by": "routeguard"}));
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), findings.len() + 1);
    for r in results {
        let known = old["results"].as_array().expect("old").iter().any(|o| untimed(o) == untimed(r));
        let at = if known { T0 } else { T1 };
        assert_eq!(r["timestamp"], json!({"seconds": at.seconds, "nanos": at.nanos}), "{r}");
    }
}

#[test]
fn deletes_the_report_of_a_namespace_without_findings() {
    let (findings, snapshot) = audited(broken());
    let existing = [stored(desired(&findings, &snapshot, T0)["shop"].clone(), "7")];
    let actions = plan(&BTreeMap::new(), &existing);
    assert_eq!(actions, [ReportAction::Delete { namespace: "shop".into(), uid: Some("uid-report".into()) }]);
}

#[test]
fn leaves_reports_it_does_not_own_alone() {
    let (findings, snapshot) = audited(broken());
    let wanted = desired(&findings, &snapshot, T0);
    let mut foreign = stored(wanted["shop"].clone(), "7");
    foreign["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "kyverno"});
    let mut other_name = stored(wanted["shop"].clone(), "8");
    other_name["metadata"]["name"] = json!("kyverno-policies");
    other_name["metadata"]["namespace"] = json!("web");
    assert_eq!(plan(&wanted, &[foreign.clone()]), [], "no update and no second report");
    assert_eq!(plan(&BTreeMap::new(), &[foreign, other_name]), [], "no deletion");
}

#[test]
fn tallies_by_code_severity_and_namespace() {
    let (findings, _) = audited(broken());
    let counts = tally(&findings);
    let rg103 = findings.iter().filter(|f| f.code == Code::RG103).count();
    assert_eq!(counts.get(&("RG103".into(), "error".into(), "shop".into())).copied(), i64::try_from(rg103).ok());
    assert_eq!(counts.values().sum::<i64>(), i64::try_from(findings.len()).unwrap_or(0));
}

#[test]
fn an_object_the_index_lacks_is_named_without_uid() {
    let (findings, _) = audited(broken());
    let empty = snapshot(Vec::new());
    let resource = Resource::of(&findings[0], &empty);
    assert_eq!(resource.uid, None);
    assert_eq!(resource.api_version, default_api_version(findings[0].kind));
}
