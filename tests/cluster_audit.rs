//! The background audit against a fake API server: the exact PolicyReport
//! requests (create, no write while nothing changed, update on a change,
//! delete when clean), Warning Events once per object and code, the metric,
//! a missing PolicyReport CRD, reports turned off, and a follower that never writes.

mod cluster_fake;

use std::sync::Arc;
use std::time::Duration;

use cluster_fake::{Fake, Recorded, deployment, deployments, rules, service, services, virtual_services};
use routeguard::cluster::audit::AuditSettings;
use routeguard::cluster::lease::Timing;
use routeguard::cluster::live::{Live, LiveSettings};
use routeguard::policy::Engine;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const REPORTS: &str = "/apis/wgpolicyk8s.io/v1alpha2/namespaces/shop/policyreports";
const REPORT: &str = "/apis/wgpolicyk8s.io/v1alpha2/namespaces/shop/policyreports/routeguard";

fn settings(reports: bool) -> LiveSettings {
    let mut settings = LiveSettings::new("routeguard", "rg");
    settings.identity = "me".to_string();
    settings.generate = false;
    settings.rediscover_every = Duration::from_millis(200);
    settings.lease = Timing {
        duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(300),
        renew_deadline: Duration::from_secs(1),
        retry_every: Duration::from_millis(200),
    };
    settings.audit = Some(AuditSettings {
        interval: Duration::from_millis(300),
        debounce: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        reports,
        ..AuditSettings::default()
    });
    settings
}

fn start(fake: &Fake, reports: bool) -> Live {
    Live::start(fake.client(), Arc::new(Engine::default()), settings(reports))
}

fn rule(subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect();
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "reviews", "namespace": "shop"},
           "spec": {"host": "reviews", "subsets": subsets}})
}

fn route(name: &str, subset: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"hosts": [format!("{name}.example.com")],
                    "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}]}})
}

/// shop: a Service, Deployments v1 to v3, a DestinationRule with v1 and a VirtualService sending to v2 (RG103).
fn broken_shop(fake: &Fake, serve_reports: bool) -> Value {
    fake.serve_all();
    if serve_reports {
        fake.serve("wgpolicyk8s.io/v1alpha2", &["policyreports"]);
    }
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    for version in ["v1", "v2", "v3"] {
        fake.put(&deployments("shop"), deployment(&format!("reviews-{version}"), "shop", "reviews", version));
    }
    fake.put(&rules("shop"), rule(&["v1"]));
    fake.put(&virtual_services("shop"), route("front", "v2"))
}

fn report_writes(fake: &Fake) -> Vec<Recorded> {
    fake.writes().into_iter().filter(|r| r.path.contains("/policyreports")).collect()
}

fn events(fake: &Fake, reason: &str) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/events") && r.body["reason"] == reason)
        .collect()
}

#[tokio::test]
async fn creates_the_report_writes_nothing_while_unchanged_updates_then_deletes_when_clean() {
    let fake = Fake::start().await;
    let vs = broken_shop(&fake, true);
    let live = start(&fake, true);
    assert!(fake.eventually(WAIT, || !report_writes(&fake).is_empty()).await, "{:#?}", fake.requests());

    let created = report_writes(&fake).remove(0);
    assert_eq!((created.method.as_str(), created.path.as_str()), ("POST", REPORTS));
    assert_eq!(created.query_pairs(), ["fieldManager=routeguard"]);
    let body = &created.body;
    assert_eq!(body["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(body["kind"], "PolicyReport");
    assert_eq!(body["metadata"]["name"], "routeguard");
    assert_eq!(body["metadata"]["labels"], json!({"app.kubernetes.io/managed-by": "routeguard"}));
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{body:#}");
    let result = &results[0];
    assert_eq!(
        (result["rule"].as_str(), result["result"].as_str(), result["severity"].as_str()),
        (Some("RG103"), Some("fail"), Some("high"))
    );
    assert_eq!((result["source"].as_str(), result["policy"].as_str()), (Some("routeguard"), Some("routeguard")));
    assert_eq!(
        result["resources"],
        json!([{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "namespace": "shop",
                "name": "front", "uid": vs["metadata"]["uid"]}])
    );
    assert_eq!(result["properties"], json!({"path": "spec.http[0].route[0].destination.subset"}));
    assert!(
        result["message"].as_str().is_some_and(|m| m.starts_with("RG103 spec.http[0].route[0].destination.subset: "))
    );
    assert!(result["timestamp"]["seconds"].as_i64().is_some_and(|s| s > 0));
    assert_eq!(body["summary"], json!({"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0}));

    // The Warning Event on the VirtualService, and the metric.
    assert!(fake.eventually(WAIT, || !events(&fake, "RG103").is_empty()).await);
    let event = events(&fake, "RG103").remove(0);
    assert_eq!(event.path, "/apis/events.k8s.io/v1/namespaces/shop/events");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["regarding"]["kind"], "VirtualService");
    assert_eq!(event.body["regarding"]["name"], "front");
    assert_eq!(event.body["regarding"]["uid"], vs["metadata"]["uid"]);
    assert_eq!(event.body["action"], "Audit");
    let metrics = live.render_metrics();
    assert!(
        metrics.lines().any(|l| l == r#"routeguard_audit_findings{code="RG103",severity="error",namespace="shop"} 1"#),
        "{metrics}"
    );

    // More passes (the interval) with nothing changed: no write, no second Event.
    let passes = live.status().audits();
    assert!(fake.eventually(WAIT, || live.status().audits() >= passes + 3).await);
    assert_eq!(report_writes(&fake).len(), 1, "{:#?}", report_writes(&fake));
    assert_eq!(events(&fake, "RG103").len(), 1, "one Event per object, code and hour");

    // A second broken route: the report is replaced, with its resourceVersion.
    let stored = fake.get(REPORTS, "routeguard").expect("report stored");
    fake.put(&virtual_services("shop"), route("back", "v3"));
    assert!(fake.eventually(WAIT, || report_writes(&fake).len() >= 2).await);
    let update = report_writes(&fake).remove(1);
    assert_eq!((update.method.as_str(), update.path.as_str()), ("PUT", REPORT));
    assert_eq!(update.body["metadata"]["resourceVersion"], stored["metadata"]["resourceVersion"]);
    assert_eq!(update.body["summary"]["fail"], 2);
    let kept = update.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["resources"][0]["name"] == "front")
        .map(|r| r["timestamp"].clone());
    assert_eq!(kept, Some(result["timestamp"].clone()), "a known finding keeps its timestamp");

    // Both subsets defined: nothing left, the report is deleted (guarded by its uid).
    fake.put(&rules("shop"), rule(&["v1", "v2", "v3"]));
    assert!(fake.eventually(WAIT, || fake.get(REPORTS, "routeguard").is_none()).await, "{:#?}", report_writes(&fake));
    let delete = report_writes(&fake).into_iter().find(|r| r.method == "DELETE").expect("delete");
    assert_eq!(delete.path, REPORT);
    assert_eq!(delete.body["preconditions"]["uid"], stored["metadata"]["uid"]);
    assert!(fake.eventually(WAIT, || !live.render_metrics().contains("routeguard_audit_findings{")).await);

    // Clean and no report: later passes write nothing.
    let count = report_writes(&fake).len();
    let passes = live.status().audits();
    assert!(fake.eventually(WAIT, || live.status().audits() >= passes + 2).await);
    assert_eq!(report_writes(&fake).len(), count);
}

#[tokio::test]
async fn without_the_policy_report_crd_it_keeps_auditing_for_metrics_and_events() {
    let fake = Fake::start().await;
    broken_shop(&fake, false);
    let live = start(&fake, true);
    assert!(fake.eventually(WAIT, || live.status().audits() >= 3).await);
    assert!(fake.eventually(WAIT, || !events(&fake, "RG103").is_empty()).await);
    assert!(
        live.render_metrics()
            .contains(r#"routeguard_audit_findings{code="RG103",severity="error",namespace="shop"} 1"#)
    );
    let lists: Vec<Recorded> =
        fake.requests().into_iter().filter(|r| r.method == "GET" && r.path.contains("/policyreports")).collect();
    assert_eq!(lists[0].path, "/apis/wgpolicyk8s.io/v1alpha2/policyreports");
    assert!(lists[0].query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Drouteguard"), "{}", lists[0].query);
    assert!(report_writes(&fake).is_empty(), "{:#?}", report_writes(&fake));

    // The CRD is installed later: the next pass creates the report.
    fake.serve("wgpolicyk8s.io/v1alpha2", &["policyreports"]);
    assert!(fake.eventually(WAIT, || fake.get(REPORTS, "routeguard").is_some()).await);
}

#[tokio::test]
async fn with_reports_off_only_events_and_metrics() {
    let fake = Fake::start().await;
    broken_shop(&fake, true);
    let live = start(&fake, false);
    assert!(fake.eventually(WAIT, || live.status().audits() >= 3).await);
    assert!(fake.eventually(WAIT, || !events(&fake, "RG103").is_empty()).await);
    assert!(!fake.requests().iter().any(|r| r.path.contains("/policyreports")), "reports are not even listed");
}

#[tokio::test]
async fn a_follower_audits_nothing_and_writes_nothing() {
    let fake = Fake::start().await;
    broken_shop(&fake, true);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    fake.put(
        "/apis/coordination.k8s.io/v1/namespaces/rg/leases",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "routeguard"},
               "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600, "renewTime": now}}),
    );
    let live = start(&fake, true);
    assert!(fake.eventually(WAIT, || live.is_synced()).await);
    // Several election rounds pass without the lease.
    let rounds = |fake: &Fake| fake.requests().iter().filter(|r| r.path.ends_with("/leases/routeguard")).count();
    assert!(fake.eventually(WAIT, || rounds(&fake) >= 4).await);
    assert!(!live.status().is_leader());
    assert_eq!(live.status().audits(), 0);
    assert!(report_writes(&fake).is_empty());
    assert!(events(&fake, "RG103").is_empty());
    assert!(!live.render_metrics().contains("routeguard_audit_findings{"));
}
