//! Lenient typed views of core/v1 Service and apps/v1 Deployment.

use serde::Deserialize;
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

/// `spec.template.spec`, only the containers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodSpec {
    pub containers: Vec<Container>,
}

/// A container's name and image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    pub image: String,
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
}
