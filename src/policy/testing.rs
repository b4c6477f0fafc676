//! Object builders for the policy's unit tests.

use serde_json::{Value, json};

use crate::model::Object;

use super::{Policy, Snapshot};

/// An object from JSON, in namespace `default` unless it names one.
pub fn object(value: Value) -> Object {
    Object::from_value(value, "default").expect("test object")
}

/// A Service selecting `app: <app>`.
pub fn service(namespace: &str, name: &str, app: &str) -> Object {
    object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 9080}]}
    }))
}

/// A Deployment whose pod template carries `app` and `version`.
pub fn deployment(namespace: &str, name: &str, app: &str, version: &str) -> Object {
    object(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": app, "version": version}},
            "template": {
                "metadata": {"labels": {"app": app, "version": version}},
                "spec": {"containers": [{"name": app, "image": format!("example/{app}:{version}")}]}
            }
        }
    }))
}

/// A DestinationRule for `host` with one subset per version (`version: <v>`).
pub fn destination_rule(namespace: &str, name: &str, host: &str, versions: &[&str]) -> Object {
    let subsets: Vec<Value> = versions.iter().map(|v| json!({"name": v, "labels": {"version": v}})).collect();
    object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"host": host, "subsets": subsets}
    }))
}

/// A VirtualService for `host` splitting traffic between subsets by weight.
pub fn virtual_service(namespace: &str, name: &str, host: &str, split: &[(&str, i64)]) -> Object {
    let route: Vec<Value> =
        split.iter().map(|(s, w)| json!({"destination": {"host": host, "subset": s}, "weight": w})).collect();
    object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host], "http": [{"route": route}]}
    }))
}

/// Istio's bookinfo reviews: Service, Deployments v1..v3, a DestinationRule
/// with subsets v1..v3 and a VirtualService sending 80/20 to v1/v2.
pub fn bookinfo() -> Vec<Object> {
    vec![
        service("default", "reviews", "reviews"),
        deployment("default", "reviews-v1", "reviews", "v1"),
        deployment("default", "reviews-v2", "reviews", "v2"),
        deployment("default", "reviews-v3", "reviews", "v3"),
        destination_rule("default", "reviews", "reviews", &["v1", "v2", "v3"]),
        virtual_service("default", "reviews", "reviews", &[("v1", 80), ("v2", 20)]),
    ]
}

/// A snapshot of `objects` under the default policy.
pub fn snapshot(objects: Vec<Object>) -> Snapshot {
    Snapshot::from_objects(&Policy::default(), objects)
}
