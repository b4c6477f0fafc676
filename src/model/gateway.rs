//! Lenient typed views of `gateway.networking.k8s.io` objects.

use serde::Deserialize;

/// `HTTPRoute.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteSpec {
    pub parent_refs: Vec<ParentRef>,
    pub hostnames: Vec<String>,
    pub rules: Vec<HttpRouteRule>,
}

/// What a route attaches to: a Gateway (the defaults), or a Service for mesh routing (GAMMA).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub section_name: Option<String>,
    pub port: Option<i64>,
}

/// The group of the Gateway API kinds.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// What a parentRef attaches to, by its group and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// A Gateway API Gateway (group `gateway.networking.k8s.io`, kind `Gateway`: the defaults).
    Gateway,
    /// A core Service (group `""`, kind `Service`): mesh routing.
    Service,
    /// Anything else: not judged.
    Other,
}

impl ParentRef {
    /// What the parentRef attaches to; group and kind default as the CRD says.
    pub fn parent(&self) -> Parent {
        let group = self.group.as_deref().unwrap_or(GATEWAY_API_GROUP);
        match (group, self.kind.as_deref().unwrap_or("Gateway")) {
            (GATEWAY_API_GROUP, "Gateway") => Parent::Gateway,
            ("", "Service") => Parent::Service,
            _ => Parent::Other,
        }
    }
}

/// Gateway API `Gateway.spec`: nothing of it is read, a Gateway only needs to exist (RG114).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GatewaySpec {}

/// One entry of `spec.rules`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteRule {
    pub name: Option<String>,
    pub filters: Vec<HttpRouteFilter>,
    pub backend_refs: Vec<BackendRef>,
}

/// A reference to a backend, with the weight it receives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<i64>,
    /// Relative weight; the Gateway API default is 1.
    pub weight: Option<i64>,
    pub filters: Vec<HttpRouteFilter>,
}

impl BackendRef {
    /// True when this refers to a core Service (group `""`, kind `Service`, the defaults).
    pub fn is_service(&self) -> bool {
        self.group.as_deref().unwrap_or("").is_empty() && self.kind.as_deref().unwrap_or("Service") == "Service"
    }
}

/// A rule or backend filter; only `RequestMirror` is read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_mirror: Option<RequestMirror>,
}

/// `filters[].requestMirror`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestMirror {
    pub backend_ref: Option<BackendRef>,
    pub percent: Option<i64>,
    pub fraction: Option<Fraction>,
}

/// `requestMirror.fraction`: numerator / denominator (default 100).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Fraction {
    pub numerator: i64,
    pub denominator: Option<i64>,
}

/// `ReferenceGrant.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReferenceGrantSpec {
    pub from: Vec<GrantFrom>,
    pub to: Vec<GrantTo>,
}

/// Who a ReferenceGrant lets in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

/// What a ReferenceGrant lets them reach.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrantTo {
    pub group: String,
    pub kind: String,
    pub name: Option<String>,
}
