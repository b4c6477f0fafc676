//! RG110: destination ports. A destination without a port to a Service that
//! exposes several is ambiguous (Istio's IST0112: the route may land on any of
//! them), a port the Service does not expose goes nowhere (IST0101); an
//! HTTPRoute backendRef to a Service must name a port the Service exposes.

use crate::model::{FieldPath, ObjectKey, Spec};

use super::snapshot::Entry;
use super::{Code, Finding};

/// The ports a Service exposes, as `(number, name)`, in its order.
pub fn service_ports(service: &Entry) -> Vec<(i64, Option<&str>)> {
    ports_of(service).collect()
}

/// [`service_ports`] without collecting them (the check path allocates only for a finding).
fn ports_of(service: &Entry) -> impl Iterator<Item = (i64, Option<&str>)> + '_ {
    let ports = match service.spec() {
        Some(Spec::Service(spec)) => spec.ports.as_slice(),
        _ => &[],
    };
    ports.iter().filter_map(|p| Some((p.port?, p.name.as_deref())))
}

/// `80 (http), 9090 (grpc)`.
fn listed(ports: &[(i64, Option<&str>)]) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|(n, name)| match name {
            Some(name) if !name.is_empty() => format!("{n} ({name})"),
            _ => n.to_string(),
        })
        .collect();
    items.join(", ")
}

/// RG110 for a VirtualService destination at `at` (`...route[0].destination`)
/// to `service`, with `port` its `port.number` as written.
pub fn check_destination(out: &mut Vec<Finding>, key: &ObjectKey, at: &FieldPath, service: &Entry, port: Option<i64>) {
    let fine = match port {
        None => ports_of(service).nth(1).is_none(),
        Some(number) => ports_of(service).next().is_none() || ports_of(service).any(|(n, _)| n == number),
    };
    if fine {
        return;
    }
    let ports = service_ports(service);
    let name = format!("{}/{}", service.namespace(), service.name());
    match port {
        None if ports.len() > 1 => out.push(Finding::new(
            Code::RG110,
            key,
            at.key("port"),
            format!(
                "{at} has no port and service {name} exposes {} ports ({}); expected port.number, one of them \
                 (without it the route may reach any of them)",
                ports.len(),
                listed(&ports)
            ),
        )),
        Some(number) if !ports.is_empty() && !ports.iter().any(|(n, _)| *n == number) => out.push(Finding::new(
            Code::RG110,
            key,
            at.key("port").key("number"),
            format!("port {number} is not exposed by service {name}, which exposes {}", listed(&ports)),
        )),
        _ => {}
    }
}

/// RG110 for an HTTPRoute backendRef at `at` to `service`, with `port` as written.
pub fn check_backend(out: &mut Vec<Finding>, key: &ObjectKey, at: &FieldPath, service: &Entry, port: Option<i64>) {
    if port.is_some_and(|number| ports_of(service).any(|(n, _)| n == number)) {
        return;
    }
    let ports = service_ports(service);
    // A Service that lists no ports tells nothing to judge by.
    if ports.is_empty() {
        return;
    }
    let name = format!("{}/{}", service.namespace(), service.name());
    match port {
        None => out.push(Finding::new(
            Code::RG110,
            key,
            at.key("port"),
            format!(
                "backendRef to service {name} has no port; the gateway api requires one for a service, expected one \
                 of {}",
                listed(&ports)
            ),
        )),
        Some(number) if !ports.is_empty() && !ports.iter().any(|(n, _)| *n == number) => out.push(Finding::new(
            Code::RG110,
            key,
            at.key("port"),
            format!("port {number} is not exposed by service {name}, which exposes {}", listed(&ports)),
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::model::Object;
    use crate::model::gateway::HttpRouteSpec;
    use crate::model::istio::VirtualServiceSpec;
    use crate::policy::http_route::check_http_route;
    use crate::policy::routes::check_virtual_service;
    use crate::policy::{Code, Context, Finding, Policy, Snapshot};

    fn object(value: Value) -> Object {
        Object::from_value(value, "shop").expect("object")
    }

    fn service(name: &str, ports: Value) -> Object {
        object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
                      "spec": {"selector": {"app": name}, "ports": ports}}))
    }

    fn snapshot() -> Snapshot {
        Snapshot::from_objects(
            &Policy::default(),
            [
                service("one", json!([{"name": "http", "port": 80}])),
                service("two", json!([{"name": "http", "port": 80}, {"name": "grpc", "port": 9090}])),
            ],
        )
    }

    fn vs(http: Value) -> Vec<Finding> {
        let snapshot = snapshot();
        let object = object(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                   "metadata": {"name": "r", "namespace": "shop"}, "spec": {"http": http}}));
        let spec: VirtualServiceSpec = object.spec().expect("spec");
        let policy = Policy::default();
        check_virtual_service(Context { policy: &policy, snapshot: &snapshot }, &object.key, &spec)
            .into_iter()
            .filter(|f| f.code == Code::RG110)
            .collect()
    }

    fn route(backends: Value) -> Vec<Finding> {
        let snapshot = snapshot();
        let object = object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                                   "metadata": {"name": "r", "namespace": "shop"},
                                   "spec": {"rules": [{"backendRefs": backends}]}}));
        let spec: HttpRouteSpec = object.spec().expect("spec");
        let policy = Policy::default();
        check_http_route(Context { policy: &policy, snapshot: &snapshot }, &object.key, &spec)
    }

    #[test]
    fn a_destination_without_a_port_to_a_service_with_several_is_ambiguous() {
        assert!(vs(json!([{"route": [{"destination": {"host": "one"}}]}])).is_empty());
        assert!(vs(json!([{"route": [{"destination": {"host": "two", "port": {"number": 9090}}}]}])).is_empty());
        let found = vs(json!([{"route": [{"destination": {"host": "two"}}], "mirror": {"host": "two"}}]));
        let summaries: Vec<String> = found.iter().map(Finding::summary).collect();
        assert_eq!(
            summaries,
            [
                "RG110 spec.http[0].route[0].destination.port: spec.http[0].route[0].destination has no port and \
                 service shop/two exposes 2 ports (80 (http), 9090 (grpc)); expected port.number, one of them \
                 (without it the route may reach any of them)",
                "RG110 spec.http[0].mirror.port: spec.http[0].mirror has no port and service shop/two exposes 2 \
                 ports (80 (http), 9090 (grpc)); expected port.number, one of them (without it the route may reach \
                 any of them)",
            ]
        );
    }

    #[test]
    fn a_port_the_service_does_not_expose_goes_nowhere() {
        let found = vs(json!([{"route": [{"destination": {"host": "one", "port": {"number": 8080}}}]}]));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            found[0].summary(),
            "RG110 spec.http[0].route[0].destination.port.number: port 8080 is not exposed by service shop/one, \
             which exposes 80 (http)"
        );
    }

    #[test]
    fn a_backend_ref_to_a_service_needs_a_port_it_exposes() {
        assert!(route(json!([{"name": "two", "port": 9090}])).is_empty());
        let found = route(json!([{"name": "one"}, {"name": "two", "port": 81, "weight": 0}]));
        let got: Vec<String> = found.iter().filter(|f| f.code == Code::RG110).map(Finding::summary).collect();
        assert_eq!(
            got,
            [
                "RG110 spec.rules[0].backendRefs[0].port: backendRef to service shop/one has no port; the gateway \
                 api requires one for a service, expected one of 80 (http)",
                "RG110 spec.rules[0].backendRefs[1].port: port 81 is not exposed by service shop/two, which exposes \
                 80 (http), 9090 (grpc)",
            ]
        );
    }
}
