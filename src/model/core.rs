//! Lenient typed views of core/v1 Service and apps/v1 Deployment.

use serde::Deserialize;
use serde_json::Value;

use super::Labels;

/// `Service.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub selector: Labels,
    pub ports: Vec<Value>,
    #[serde(rename = "type")]
    pub service_type: Option<String>,
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
