//! Lenient typed views of core/v1 Service and apps/v1 Deployment.

use std::marker::PhantomData;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::Labels;

/// `Service.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub selector: Labels,
    pub ports: Vec<ServicePort>,
    #[serde(rename = "type")]
    pub service_type: Option<String>,
}

/// One entry of `Service.spec.ports`: its number and name, `None` when
/// missing or not of that type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePort {
    pub port: Option<i64>,
    pub name: Option<Box<str>>,
}

impl<'de> Deserialize<'de> for ServicePort {
    /// Lenient like the rest of the view: an entry of another shape is a port
    /// without number, never an error. The `Value` is read only to pick the
    /// two fields and then dropped; the snapshot keeps one of these per port.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ServicePort, D::Error> {
        let entry = Value::deserialize(deserializer)?;
        Ok(ServicePort {
            port: entry.get("port").and_then(Value::as_i64),
            name: entry.get("name").and_then(Value::as_str).map(Box::from),
        })
    }
}

/// `Deployment.spec`, only what routeguard reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeploymentSpec {
    pub template: PodTemplate,
}

/// `spec.template`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodTemplate {
    pub metadata: TemplateMeta,
    pub spec: PodSpec,
}

/// `spec.template.metadata`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TemplateMeta {
    pub labels: Labels,
}

/// `spec.template.spec`: the containers' shape is checked (a wrong one is
/// RG100), nothing is kept. A version derived from an image is derived at
/// admission, from the request's own object; the snapshot never reads them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodSpec {
    pub containers: Checked<Vec<Container>>,
}

/// A container's name and image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    pub image: String,
}

/// A field read as `T` for its shape only, and dropped: it costs no memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked<T>, D::Error> {
        T::deserialize(deserializer).map(|_| Checked(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_ports_keep_number_and_name_and_any_other_entry_is_a_port_without_number() {
        let spec = ServiceSpec::deserialize(&json!({"ports": [
            {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            {"port": 9090},
            "junk",
            {"port": "80", "name": 5},
        ]}))
        .expect("a spec with odd port entries still reads");
        let port = |port: Option<i64>, name: Option<&str>| ServicePort { port, name: name.map(Box::from) };
        assert_eq!(
            spec.ports,
            vec![port(Some(80), Some("http")), port(Some(9090), None), port(None, None), port(None, None)]
        );
    }

    #[test]
    fn a_deployment_keeps_no_container_but_still_checks_their_shape() {
        assert_eq!(std::mem::size_of::<PodSpec>(), 0);
        let spec = |containers: serde_json::Value| {
            DeploymentSpec::deserialize(&json!({"template": {"metadata": {"labels": {"app": "a"}},
                "spec": {"containers": containers}}}))
        };
        let read = spec(json!([{"name": "app", "image": "a:1", "ports": [{"containerPort": 80}]}])).expect("spec");
        assert_eq!(read.template.metadata.labels.get("app"), Some("a"));
        assert!(spec(json!([{"name": 5}])).is_err(), "a container name that is not a string");
        assert!(spec(json!("junk")).is_err(), "containers that are not a list");
    }
}
