use serde_json::{Value, json};

use crate::model::Object;
use crate::model::istio::VirtualServiceSpec;
use crate::policy::routes::check_virtual_service;
use crate::policy::{Change, Code, Context, Engine, Finding, Policy, Severity, Snapshot};

fn vs(namespace: &str, name: &str, spec: Value) -> Object {
    let raw = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                     "metadata": {"name": name, "namespace": namespace}, "spec": spec});
    Object::from_value(raw, "default").expect("object")
}

fn service(namespace: &str, name: &str) -> Object {
    let raw = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                     "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 9080}]}});
    Object::from_value(raw, "default").expect("object")
}

/// A route of `reviews` in `shop` to the Service itself.
fn routed(extra: Value) -> Value {
    let mut spec = json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

/// The RG111 findings about `incoming` against `others` (and the reviews Service).
fn rg111(others: Vec<Object>, incoming: &Object) -> Vec<Finding> {
    let mut objects = vec![service("shop", "reviews")];
    objects.extend(others);
    let snapshot = Snapshot::from_objects(&Policy::default(), objects);
    let spec: VirtualServiceSpec = incoming.spec().expect("spec");
    let policy = Policy::default();
    check_virtual_service(Context { policy: &policy, snapshot: &snapshot }, &incoming.key, &spec)
        .into_iter()
        .filter(|f| f.code == Code::RG111)
        .collect()
}

#[test]
fn a_second_mesh_virtual_service_for_a_host_is_refused() {
    let first = vs("shop", "reviews", routed(json!({})));
    let second = vs(
        "shop",
        "reviews-b",
        json!({"hosts": ["web", "reviews.shop.svc.cluster.local"],
        "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
    );
    let found = rg111(vec![first], &second);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].severity, Severity::Error);
    assert_eq!(
        found[0].summary(),
        "RG111 spec.hosts[1]: spec.hosts[1] (reviews.shop.svc.cluster.local) is also bound to the mesh by \
         virtualservice shop/reviews, and both are visible in every namespace; sidecars do not merge \
         virtualservices for one host and apply only one of them, unpredictably; expected one virtualservice for \
         the host (move the http routes of both into one) or exportTo lists that do not overlap"
    );
    // A VirtualService of another namespace that names the host fully, exported to shop, conflicts too.
    let elsewhere =
        vs("web", "reviews", json!({"hosts": ["reviews.shop.svc.cluster.local"], "exportTo": [".", "shop"]}));
    let found = rg111(vec![elsewhere], &vs("shop", "reviews", routed(json!({"exportTo": ["."]}))));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("virtualservice web/reviews, and both are visible in namespace shop"));
}

#[test]
fn gateways_delegates_disjoint_exports_and_the_object_itself_do_not_conflict() {
    let first = vs("shop", "reviews", routed(json!({})));
    // Bound only to a gateway: split on purpose.
    assert!(rg111(vec![first.clone()], &vs("shop", "edge", routed(json!({"gateways": ["public"]})))).is_empty());
    // The stored gateway-only one is no binding either.
    let edge = vs("shop", "edge", routed(json!({"gateways": ["istio-system/public"]})));
    assert!(rg111(vec![edge], &first).is_empty());
    // A delegate has no hosts.
    let delegate = vs("shop", "reviews-delegate", json!({"http": [{"route": [{"destination": {"host": "reviews"}}]}]}));
    assert!(rg111(vec![first.clone()], &delegate).is_empty());
    // Exported to their own namespaces only, in two namespaces: no sidecar sees both.
    let web = vs("web", "reviews", json!({"hosts": ["reviews.shop.svc.cluster.local"], "exportTo": ["."]}));
    assert!(rg111(vec![web], &vs("shop", "reviews", routed(json!({"exportTo": ["."]})))).is_empty());
    // Exported nowhere.
    assert!(rg111(vec![first.clone()], &vs("shop", "hidden", routed(json!({"exportTo": ["~"]})))).is_empty());
    // An UPDATE of the same object.
    assert!(rg111(vec![first.clone()], &first).is_empty());
    // `mesh` among the gateways binds the mesh.
    let both = vs("shop", "both", routed(json!({"gateways": ["public", "mesh"]})));
    assert_eq!(rg111(vec![first], &both).len(), 1);
}

#[test]
fn wildcards_conflict_on_the_same_pattern_only() {
    let wide = vs("shop", "wide", json!({"hosts": ["*.example.com"]}));
    assert_eq!(rg111(vec![wide.clone()], &vs("shop", "again", json!({"hosts": ["*.example.com"]}))).len(), 1);
    assert!(rg111(vec![wide], &vs("shop", "api", json!({"hosts": ["api.example.com"]}))).is_empty());
}

#[test]
fn the_policy_key_conflicting_routes_controls_the_severity() {
    let first = vs("shop", "reviews", routed(json!({})));
    let second = vs("shop", "reviews-b", routed(json!({})));
    let snapshot = Snapshot::from_objects(&Policy::default(), [service("shop", "reviews"), first]);
    let codes = |policy: Policy| -> Vec<Severity> {
        Engine::new(policy)
            .validate(&snapshot, &Change::create(&second))
            .into_iter()
            .filter(|f| f.code == Code::RG111)
            .map(|f| f.severity)
            .collect()
    };
    assert_eq!(codes(Policy::default()), [Severity::Error]);
    let warn = Policy { conflicting_routes: crate::policy::Action::Warn, ..Policy::default() };
    assert_eq!(codes(warn), [Severity::Warning]);
    assert!(codes(Policy { conflicting_routes: crate::policy::Action::Off, ..Policy::default() }).is_empty());
}
