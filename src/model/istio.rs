//! Lenient typed views of `networking.istio.io` objects (v1, v1beta1, v1alpha3 share one schema).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Labels;

/// `VirtualService.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    pub hosts: Vec<String>,
    pub gateways: Vec<String>,
    pub http: Vec<HttpRoute>,
    pub tcp: Vec<L4Route>,
    pub tls: Vec<L4Route>,
    pub export_to: Vec<String>,
}

/// One entry of `spec.http`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matches: Vec<HttpMatch>,
    pub route: Vec<RouteDestination>,
    pub mirror: Option<Destination>,
    pub mirrors: Vec<MirrorPolicy>,
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer percentage, replaced by `mirrorPercentage`.
    pub mirror_percent: Option<f64>,
    pub delegate: Option<serde_json::Value>,
    pub cors_policy: Option<CorsPolicy>,
}

/// `spec.http[].corsPolicy`, only the origins: the one field of it that holds
/// regexes (the deprecated `allowOrigin` is a list of plain strings).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CorsPolicy {
    /// The origins allowed, each a StringMatch like a match condition's.
    pub allow_origins: Vec<StringMatch>,
}

/// One entry of `spec.http[].match`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpMatch {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: BTreeMap<String, StringMatch>,
    pub query_params: BTreeMap<String, StringMatch>,
    pub without_headers: BTreeMap<String, StringMatch>,
}

/// Istio's `StringMatch`: exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// A weighted destination of an http, tcp or tls route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteDestination {
    pub destination: Option<Destination>,
    pub weight: Option<i64>,
}

/// Where traffic goes: a host, optionally a subset and port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Destination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<PortSelector>,
}

/// `destination.port`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PortSelector {
    pub number: Option<i64>,
}

/// One entry of `spec.http[].mirrors`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MirrorPolicy {
    pub destination: Option<Destination>,
    pub percentage: Option<Percent>,
}

/// Istio's `Percent`: a double in 0..100.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Percent {
    pub value: f64,
}

/// A tcp or tls route: only its destinations matter here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct L4Route {
    pub route: Vec<RouteDestination>,
}

/// `DestinationRule.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: String,
    pub subsets: Vec<Subset>,
    pub export_to: Vec<String>,
    pub workload_selector: Option<serde_json::Value>,
}

/// One named subset of a DestinationRule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Subset {
    pub name: String,
    pub labels: Labels,
}

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    pub export_to: Vec<String>,
}
