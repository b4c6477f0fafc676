use serde_json::{Value, json};

use super::istio_gateway_ref;
use crate::model::Object;
use crate::policy::{Change, Code, Engine, Finding, Policy, Severity, Snapshot};

fn object(raw: Value) -> Object {
    Object::from_value(raw, "shop").expect("object")
}

fn istio_gateway(namespace: &str, name: &str) -> Object {
    object(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                  "metadata": {"name": name, "namespace": namespace},
                  "spec": {"selector": {"istio": "ingressgateway"},
                           "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                        "hosts": ["*"]}]}}))
}

fn api_gateway(namespace: &str, name: &str) -> Object {
    object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                  "metadata": {"name": name, "namespace": namespace},
                  "spec": {"gatewayClassName": "istio",
                           "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}))
}

fn service(namespace: &str, name: &str) -> Object {
    object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                  "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}}))
}

/// Istio Gateways shop/public-gateway and edge/ingress, Gateway API Gateways edge/web and shop/public, the
/// Services shop/web and edge/web.
fn snapshot() -> Snapshot {
    Snapshot::from_objects(
        &Policy::default(),
        [
            istio_gateway("shop", "public-gateway"),
            istio_gateway("edge", "ingress"),
            api_gateway("edge", "web"),
            api_gateway("shop", "public"),
            service("shop", "web"),
            service("edge", "web"),
        ],
    )
}

/// The RG114 findings about a VirtualService `shop/web` with `spec`, as `check` and admission judge it.
fn vs(spec: Value) -> Vec<Finding> {
    let route = object(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                              "metadata": {"name": "web", "namespace": "shop"}, "spec": spec}));
    rg114(&route)
}

/// The RG114 findings about an HTTPRoute `shop/web` with `parentRefs`.
fn route(parents: Value) -> Vec<Finding> {
    let route = object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                              "metadata": {"name": "web", "namespace": "shop"},
                              "spec": {"parentRefs": parents,
                                       "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}))
    .with_api_defaults();
    rg114(&route)
}

fn rg114(object: &Object) -> Vec<Finding> {
    let found = Engine::default().validate(&snapshot(), &Change::create(object));
    found.into_iter().filter(|f| f.code == Code::RG114).collect()
}

fn summaries(found: &[Finding]) -> Vec<String> {
    found.iter().map(Finding::summary).collect()
}

fn http(matches: Value) -> Value {
    json!({"hosts": ["web.example.com"], "gateways": ["public-gateway"],
           "http": [{"match": matches, "route": [{"destination": {"host": "web"}}]}]})
}

#[test]
fn gateway_names_resolve_as_istiod_resolves_them() {
    assert_eq!(istio_gateway_ref("public", "shop"), Some(("shop", "public")));
    assert_eq!(istio_gateway_ref("edge/ingress", "shop"), Some(("edge", "ingress")));
    assert_eq!(istio_gateway_ref("./ingress", "shop"), Some(("shop", "ingress")));
    assert_eq!(istio_gateway_ref("ingress.edge.svc.cluster.local", "shop"), Some(("edge", "ingress")));
    assert_eq!(istio_gateway_ref("ingress.edge", "shop"), Some(("edge", "ingress")));
    assert_eq!(istio_gateway_ref("mesh", "shop"), None);
    assert_eq!(istio_gateway_ref("", "shop"), None);
}

#[test]
fn allows_virtual_services_bound_to_gateways_that_exist() {
    let found = vs(json!({"hosts": ["web.example.com"],
                          "gateways": ["public-gateway", "shop/public-gateway", "./public-gateway", "edge/ingress",
                                       "ingress.edge.svc.cluster.local", "mesh"],
                          "http": [{"match": [{"gateways": ["edge/ingress", "mesh"]}],
                                    "route": [{"destination": {"host": "web"}}]}],
                          "tls": [{"match": [{"sniHosts": ["web.example.com"], "gateways": ["public-gateway"]}],
                                   "route": [{"destination": {"host": "web"}}]}]}));
    assert!(found.is_empty(), "{found:#?}");
    // No gateways at all: the mesh.
    assert!(vs(json!({"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web"}}]}]})).is_empty());
}

#[test]
fn refuses_a_virtual_service_gateway_that_does_not_exist() {
    let found = vs(json!({"hosts": ["web.example.com"], "gateways": ["edge/public", "public-gatewy", "mesh"],
                          "http": [{"route": [{"destination": {"host": "web"}}]}]}));
    assert_eq!(found.iter().map(|f| f.severity).collect::<Vec<_>>(), [Severity::Error, Severity::Error]);
    assert_eq!(
        summaries(&found),
        [
            "RG114 spec.gateways[0]: gateway \"edge/public\" does not exist: no istio gateway edge/public; \
             spec.gateways names istio gateways as <name> (in the virtualservice's namespace), <namespace>/<name> \
             or mesh (the sidecars)",
            "RG114 spec.gateways[1]: gateway \"public-gatewy\" does not exist: no istio gateway \
             shop/public-gatewy; spec.gateways names istio gateways as <name> (in the virtualservice's \
             namespace), <namespace>/<name> or mesh (the sidecars); did you mean \"public-gateway\"?",
        ]
    );
}

#[test]
fn refuses_match_gateways_and_names_a_gateway_api_gateway_of_that_name() {
    let found = vs(http(json!([{"uri": {"prefix": "/api"}, "gateways": ["shop/public"]}])));
    assert_eq!(
        summaries(&found),
        ["RG114 spec.http[0].match[0].gateways[0]: gateway \"shop/public\" does not exist: no istio gateway \
          shop/public (gateway api gateway shop/public exists, but virtualservices bind istio gateways); \
          spec.http[0].match[0].gateways names istio gateways as <name> (in the virtualservice's namespace), \
          <namespace>/<name> or mesh (the sidecars); did you mean \"shop/public-gateway\"?"]
    );
    let found = vs(json!({"hosts": ["db"], "gateways": ["mesh"],
                          "tcp": [{"match": [{"port": 5432, "gateways": ["ingres.edge.svc.cluster.local"]}],
                                   "route": [{"destination": {"host": "web"}}]}]}));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].path.as_str(), "spec.tcp[0].match[0].gateways[0]");
    assert!(found[0].message.ends_with("did you mean \"edge/ingress\"?"), "{}", found[0].message);
}

#[test]
fn allows_parent_refs_that_exist() {
    let found = route(json!([
        {"name": "public"},
        {"name": "web", "namespace": "edge", "sectionName": "http"},
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "shop"},
        {"group": "", "kind": "Service", "name": "web", "port": 80},
        {"group": "", "kind": "Service", "name": "web", "namespace": "edge"},
        // Other kinds of parents are not judged.
        {"group": "example.com", "kind": "Listener", "name": "nowhere"}
    ]));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn refuses_parent_refs_to_nothing() {
    let found = route(json!([
        {"name": "public-gateway"},
        {"name": "pubic"},
        {"group": "", "kind": "Service", "name": "wbe"},
        {"name": "web", "namespace": "billing"}
    ]));
    assert_eq!(
        summaries(&found),
        [
            "RG114 spec.parentRefs[0].name: parentRef names gateway api gateway shop/public-gateway, which does \
             not exist; expected an existing gateway api gateway (group gateway.networking.k8s.io, kind Gateway) \
             (istio gateway shop/public-gateway exists, but httproutes attach to gateway api gateways)",
            "RG114 spec.parentRefs[1].name: parentRef names gateway api gateway shop/pubic, which does not exist; \
             expected an existing gateway api gateway (group gateway.networking.k8s.io, kind Gateway); did you \
             mean \"public\"?",
            "RG114 spec.parentRefs[2].name: parentRef names service shop/wbe, which does not exist; expected an \
             existing service (group \"\", kind Service) for mesh routing; did you mean \"web\"?",
            "RG114 spec.parentRefs[3].name: parentRef names gateway api gateway billing/web, which does not \
             exist; expected an existing gateway api gateway (group gateway.networking.k8s.io, kind Gateway)",
        ]
    );
}

#[test]
fn the_policy_key_lowers_or_silences_it() {
    let route = object(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                              "metadata": {"name": "web", "namespace": "shop"},
                              "spec": {"hosts": ["web.example.com"], "gateways": ["nowhere"],
                                       "http": [{"route": [{"destination": {"host": "web"}}]}]}}));
    let judge = |policy: Policy| -> Vec<Severity> {
        let found = Engine::new(policy).validate(&snapshot(), &Change::create(&route));
        found.iter().filter(|f| f.code == Code::RG114).map(|f| f.severity).collect()
    };
    assert_eq!(judge(Policy::default()), [Severity::Error]);
    assert_eq!(
        judge(Policy { missing_gateway: crate::policy::Action::Warn, ..Policy::default() }),
        [Severity::Warning]
    );
    assert!(judge(Policy { missing_gateway: crate::policy::Action::Off, ..Policy::default() }).is_empty());
}
