use super::*;
use crate::policy::{Change, Engine, Policy};
use serde_json::json;

fn object(raw: Value) -> Object {
    Object::from_value(raw, "shop").expect("object")
}

fn vs(host: &str, subset: &str) -> Object {
    object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": host, "subset": subset}}]}]}
    }))
}

fn service() -> Object {
    object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
                  "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080}]}}))
}

fn rule(subsets: &[&str]) -> Object {
    let subsets: Vec<Value> = subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect();
    object(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                  "metadata": {"name": "reviews", "namespace": "shop"},
                  "spec": {"host": "reviews", "subsets": subsets}}))
}

fn deployment(version: &str) -> Object {
    object(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": format!("reviews-{version}"), "namespace": "shop"},
                  "spec": {"template": {"metadata": {"labels": {"app": "reviews", "version": version}}}}}))
}

fn judge(snapshot: &Snapshot, object: &Object) -> Vec<Finding> {
    Engine::default().validate(snapshot, &Change::create(object))
}

#[test]
fn field_paths_become_pointers() {
    assert_eq!(
        pointer(&FieldPath::new("spec.http[0].route[12].destination")).as_deref(),
        Some("/spec/http/0/route/12/destination")
    );
    assert_eq!(pointer(&FieldPath::new("spec")).as_deref(), Some("/spec"));
    assert_eq!(pointer(&FieldPath::root()).as_deref(), Some(""));
    assert_eq!(pointer(&FieldPath::new("metadata.labels[\"a/b\"]")), None);
    assert_eq!(pointer(&FieldPath::new("spec.x[a]")), None);
}

#[test]
fn plans_reads_for_a_missing_subset() {
    let snapshot = Snapshot::from_objects(&Policy::default(), vec![service()]);
    let route = vs("reviews", "v2");
    let findings = judge(&snapshot, &route);
    assert!(worth_rereading(&findings), "{findings:?}");
    let reads: Vec<Read> = plan(&route, &findings, &snapshot).into_iter().collect();
    let list = |kind, ns: &str| Read::List { kind, namespace: ns.into() };
    assert_eq!(
        reads,
        vec![
            Read::Get(ObjectKey { kind: Kind::Service, namespace: "shop".into(), name: "reviews".into() }),
            list(Kind::DestinationRule, "istio-system"),
            list(Kind::DestinationRule, "shop"),
            list(Kind::Deployment, "shop"),
        ]
    );
}

#[test]
fn plans_reads_for_a_missing_host_and_backend() {
    let snapshot = Snapshot::for_policy(&Policy::default());
    let route = object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "shop"},
        "spec": {"hosts": ["x"], "http": [{"route": [{"destination": {"host": "ratings.data.svc.cluster.local"}}]}]}
    }));
    let findings = judge(&snapshot, &route);
    let reads = plan(&route, &findings, &snapshot);
    assert!(
        reads.contains(&Read::Get(ObjectKey { kind: Kind::Service, namespace: "data".into(), name: "ratings".into() })),
        "{reads:?}"
    );
    assert!(reads.contains(&Read::List { kind: Kind::ServiceEntry, namespace: "shop".into() }));

    let http = object(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "h", "namespace": "web"},
        "spec": {"rules": [{"backendRefs": [{"name": "ratings", "namespace": "data", "port": 80}]}]}
    }));
    let findings = judge(&snapshot, &http);
    assert!(worth_rereading(&findings), "{findings:?}");
    let reads: Vec<Read> = plan(&http, &findings, &snapshot).into_iter().collect();
    assert_eq!(
        reads,
        vec![
            Read::Get(ObjectKey { kind: Kind::Service, namespace: "data".into(), name: "ratings".into() }),
            Read::List { kind: Kind::ReferenceGrant, namespace: "data".into() },
        ]
    );
}

#[test]
fn plans_a_get_of_a_missing_gateway_and_turns_the_refusal_around() {
    let snapshot = Snapshot::for_policy(&Policy::default());
    let vs = object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"hosts": ["web.example.com"], "gateways": ["mesh", "edge/public", "ingress.edge.svc.cluster.local"],
                 "http": [{"match": [{"gateways": ["./public"]}], "route": [{"destination": {"host": "web"}}]}]}
    }));
    let findings: Vec<Finding> = judge(&snapshot, &vs).into_iter().filter(|f| f.code == Code::RG114).collect();
    assert_eq!(findings.len(), 3, "{findings:#?}");
    assert!(worth_rereading(&findings));
    let gateway = |kind, ns: &str, name: &str| ObjectKey { kind, namespace: ns.into(), name: name.into() };
    let reads: Vec<Read> = plan(&vs, &findings, &snapshot).into_iter().collect();
    assert_eq!(
        reads,
        vec![
            Read::Get(gateway(Kind::IstioGateway, "edge", "ingress")),
            Read::Get(gateway(Kind::IstioGateway, "edge", "public")),
            Read::Get(gateway(Kind::IstioGateway, "shop", "public")),
        ]
    );

    let http = object(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
                                 "namespace": "edge"},
                                {"group": "", "kind": "Service", "name": "web"}]}
    }));
    let findings = judge(&snapshot, &http);
    let reads: Vec<Read> = plan(&http, &findings, &snapshot).into_iter().collect();
    assert_eq!(
        reads,
        vec![Read::Get(gateway(Kind::Service, "shop", "web")), Read::Get(gateway(Kind::Gateway, "edge", "public"))]
    );

    // What the Get finds is laid over the snapshot: the Gateway is there after all.
    let public = object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                               "metadata": {"name": "public", "namespace": "edge"},
                               "spec": {"gatewayClassName": "istio", "listeners": []}}));
    let fresh = with_found(&snapshot, vec![Found::Got(public.key.clone(), Some(public))]);
    let again: Vec<String> =
        judge(&fresh, &http).iter().filter(|f| f.code == Code::RG114).map(|f| f.path.to_string()).collect();
    assert_eq!(again, ["spec.parentRefs[1].name"]);
}

#[test]
fn found_objects_turn_the_refusal_around() {
    let snapshot = Snapshot::from_objects(&Policy::default(), vec![service(), rule(&["v1"])]);
    let route = vs("reviews", "v2");
    assert!(judge(&snapshot, &route).iter().any(|f| f.code == Code::RG103 && f.is_error()));
    let scope = Scope { kind: Kind::DestinationRule, namespace: Some("shop".into()) };
    let fresh = with_found(&snapshot, vec![Found::Listed { scope, changed: vec![rule(&["v1", "v2"])], held: vec![] }]);
    assert!(!judge(&fresh, &route).iter().any(Finding::is_error));
    assert_eq!(snapshot.len(), 2, "the original snapshot is untouched");

    // A Get that finds nothing removes a stale entry.
    let key = service().key;
    let fresh = with_found(&snapshot, vec![Found::Got(key.clone(), None)]);
    assert!(fresh.get(&key).is_none());
}

#[test]
fn a_subset_about_to_be_generated_is_a_warning() {
    let snapshot = Snapshot::from_objects(&Policy::default(), vec![service(), deployment("v1"), deployment("v2")]);
    let engine = Engine::default();
    let route = vs("reviews", "v2");
    let findings = judge(&snapshot, &route);
    let desired = engine.generate(&snapshot);
    let out = pending_subsets(findings, &route, &snapshot, &desired);
    let f = out.iter().find(|f| f.code == Code::RG103).expect("rg103");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("routeguard is generating it"), "{}", f.message);

    // No Deployment of v3: still an error.
    let route = vs("reviews", "v3");
    let out = pending_subsets(judge(&snapshot, &route), &route, &snapshot, &desired);
    assert!(out.iter().any(|f| f.code == Code::RG103 && f.is_error()));
}

#[test]
fn what_the_snapshot_holds_in_the_version_read_is_kept_as_it_is() {
    let versioned = |mut o: Object, rv: &str| {
        o.raw["metadata"]["resourceVersion"] = json!(rv);
        o
    };
    let snapshot =
        Snapshot::from_objects(&Policy::default(), vec![versioned(service(), "7"), versioned(rule(&["v1"]), "8")]);
    let read = |rv: Option<&str>| -> Watched {
        serde_json::from_value(json!({"metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": rv}}))
            .expect("dynamic")
    };
    let (service_key, rule_key) = (service().key, rule(&[]).key);
    assert!(is_held(&snapshot, &service_key, &read(Some("7"))));
    assert!(!is_held(&snapshot, &service_key, &read(Some("9"))), "a newer version");
    assert!(!is_held(&snapshot, &service_key, &read(None)), "no version: compared by content");
    assert!(!is_held(&snapshot, &service_key, &read(Some("opaque"))), "an opaque version: compared by content");
    assert_eq!(version_of(Some("0")), None);

    // A list that holds the rule as it is and a new one: the held entry stays (the very one), the new one joins.
    let scope = Scope { kind: Kind::DestinationRule, namespace: Some("shop".into()) };
    let mut other = rule(&["v2"]);
    other.raw["metadata"]["name"] = json!("ratings");
    other.key.name = "ratings".into();
    let held = vec![rule_key.clone()];
    let fresh = with_found(
        &snapshot,
        vec![Found::Held, Found::Listed { scope: scope.clone(), changed: vec![other.clone()], held }],
    );
    let (kept, original) = (fresh.get(&rule_key).expect("kept"), snapshot.get(&rule_key).expect("original"));
    assert!(kept.is_same(original));
    assert!(fresh.get(&other.key).is_some() && fresh.get(&service_key).is_some());
    // A list without the rule (deleted meanwhile) removes it from the overlay.
    let fresh = with_found(&snapshot, vec![Found::Listed { scope, changed: vec![], held: vec![] }]);
    assert!(fresh.get(&rule_key).is_none());
}

#[test]
fn a_read_names_what_the_snapshot_holds_and_converts_the_rest_as_the_watch_does() {
    let versioned = |mut o: Object, rv: &str| {
        o.raw["metadata"]["resourceVersion"] = json!(rv);
        o
    };
    let snapshot =
        Snapshot::from_objects(&Policy::default(), vec![versioned(service(), "7"), versioned(deployment("v1"), "8")]);
    let dynamic = |mut raw: Value, rv: &str| -> Watched {
        raw["metadata"]["resourceVersion"] = json!(rv);
        serde_json::from_value(raw).expect("dynamic")
    };
    let served = |kind| Served::new(kind, "v1");

    // A Get: the same version is held; a newer one is converted; none found is a deletion.
    let key = service().key;
    let got = |rv: &str| got_found(&snapshot, &served(Kind::Service), key.clone(), Some(dynamic(service().raw, rv)));
    assert!(matches!(got("7"), Ok(Found::Held)));
    assert!(
        matches!(got("9"), Ok(Found::Got(ref k, Some(ref o))) if *k == key && o.raw["metadata"]["resourceVersion"] == "9")
    );
    assert!(matches!(got_found(&snapshot, &served(Kind::Service), key.clone(), None), Ok(Found::Got(_, None))));

    // A list: v1 as the snapshot holds it is only named; v2 is new and stored without its pod spec.
    let mut v2 = deployment("v2").raw;
    v2["spec"]["template"]["spec"] = json!({"containers": [{"name": "app", "image": "reviews:2"}]});
    let items = vec![dynamic(deployment("v1").raw, "8"), dynamic(v2, "11")];
    match listed_found(&snapshot, &served(Kind::Deployment), "shop".into(), items) {
        Found::Listed { scope, changed, held } => {
            assert_eq!(scope, Scope { kind: Kind::Deployment, namespace: Some("shop".into()) });
            assert_eq!(held, vec![deployment("v1").key]);
            assert_eq!(changed.len(), 1);
            assert_eq!(changed[0].key, deployment("v2").key);
            assert_eq!(changed[0].raw["kind"], "Deployment");
            assert!(changed[0].raw.pointer("/spec/template/spec").is_none(), "stored as the watch stores it");
        }
        other => panic!("expected a list, got {other:?}"),
    }
}
