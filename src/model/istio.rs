//! Lenient typed views of `networking.istio.io` objects (v1, v1beta1, v1alpha3 share one schema).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{FieldPath, Fingerprint, Labels, Lookup as _};

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

impl VirtualServiceSpec {
    /// Every route and mirror destination, in document order: for each
    /// `spec.http` entry its route destinations, `mirror`, then `mirrors`; then
    /// the `spec.tcp` and `spec.tls` route destinations. The one walk over a
    /// VirtualService's destinations that indexing, the rules and the
    /// controller share.
    pub fn uses(&self) -> impl Iterator<Item = Use<'_>> {
        let http = self.http.iter().enumerate().flat_map(|(i, r)| {
            let routes = weighted(Section::Http, i, &r.route);
            let mirror =
                r.mirror.iter().map(move |d| Use { place: Place::Mirror { route: i }, destination: d, weight: None });
            let mirrors = r.mirrors.iter().enumerate().filter_map(move |(j, m)| {
                let place = Place::Mirrors { route: i, entry: j };
                m.destination.as_ref().map(|d| Use { place, destination: d, weight: None })
            });
            routes.chain(mirror).chain(mirrors)
        });
        let tcp = self.tcp.iter().enumerate().flat_map(|(i, r)| weighted(Section::Tcp, i, &r.route));
        let tls = self.tls.iter().enumerate().flat_map(|(i, r)| weighted(Section::Tls, i, &r.route));
        http.chain(tcp).chain(tls)
    }
}

/// The weighted destinations of one route list.
fn weighted(section: Section, route: usize, list: &[RouteDestination]) -> impl Iterator<Item = Use<'_>> {
    let lone = list.len() == 1;
    list.iter().enumerate().filter_map(move |(entry, d)| {
        // A lone destination takes all traffic whatever its weight says.
        let weight = if lone { 100 } else { d.weight.unwrap_or(0) };
        let place = Place::Route { section, route, entry };
        d.destination.as_ref().map(|destination| Use { place, destination, weight: Some(weight) })
    })
}

/// One place a VirtualService sends traffic, or a copy of it, to.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    pub place: Place,
    pub destination: &'a Destination,
    /// The effective weight (a lone destination's is 100, a missing one 0);
    /// `None` for a mirror, which is a copy, not live traffic.
    pub weight: Option<i64>,
}

impl Use<'_> {
    /// The field path of the destination's parent entry (`spec.http[0].route[1]`, `spec.http[0].mirror`).
    pub fn path(&self) -> FieldPath {
        self.place.path()
    }
}

/// The route lists of a VirtualService.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Http,
    Tcp,
    Tls,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Http => "http",
            Section::Tcp => "tcp",
            Section::Tls => "tls",
        }
    }
}

/// Where a destination stands in a VirtualService, cheap to carry and made a
/// [`FieldPath`] only when a message needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `spec.<section>[route].route[entry]`.
    Route { section: Section, route: usize, entry: usize },
    /// `spec.http[route].mirror`.
    Mirror { route: usize },
    /// `spec.http[route].mirrors[entry]`.
    Mirrors { route: usize, entry: usize },
}

impl Place {
    pub fn path(self) -> FieldPath {
        let spec = FieldPath::new("spec");
        match self {
            Place::Route { section, route, entry } => spec.key(section.as_str()).index(route).key("route").index(entry),
            Place::Mirror { route } => spec.key("http").index(route).key("mirror"),
            Place::Mirrors { route, entry } => spec.key("http").index(route).key("mirrors").index(entry),
        }
    }
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
    pub port: Option<i64>,
    pub source_labels: Labels,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
    pub ignore_uri_case: Option<bool>,
}

impl HttpMatch {
    /// True when the match selects every request: no condition at all, or
    /// only `uri: {prefix: /}` (the `name` is a label, not a condition).
    pub fn matches_everything(&self) -> bool {
        let uri_all = match &self.uri {
            None => true,
            Some(StringMatch { exact: None, prefix: Some(prefix), regex: None }) => prefix == "/",
            Some(_) => false,
        };
        if !uri_all {
            return false;
        }
        let only_uri = HttpMatch {
            uri: self.uri.clone(),
            name: self.name.clone(),
            ignore_uri_case: self.ignore_uri_case,
            ..HttpMatch::default()
        };
        self.same_conditions(&only_uri)
    }

    /// True when both select exactly the same requests as written (the
    /// `name`s aside): the same uri, scheme, method, authority, headers,
    /// query parameters, port, source labels, gateways and source namespace.
    pub fn same_conditions(&self, other: &HttpMatch) -> bool {
        self.uri == other.uri
            && self.scheme == other.scheme
            && self.method == other.method
            && self.authority == other.authority
            && self.headers == other.headers
            && self.query_params == other.query_params
            && self.without_headers == other.without_headers
            && self.port == other.port
            && self.source_labels == other.source_labels
            && self.gateways == other.gateways
            && self.source_namespace == other.source_namespace
            && self.ignore_uri_case.unwrap_or(false) == other.ignore_uri_case.unwrap_or(false)
    }
}

/// Istio's `StringMatch`: exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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

/// A tcp or tls route: only its matches' gateways and its destinations matter here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct L4Route {
    #[serde(rename = "match")]
    pub matches: Vec<L4Match>,
    pub route: Vec<RouteDestination>,
}

/// One entry of `spec.tcp[].match` or `spec.tls[].match`: only its gateways are read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct L4Match {
    pub gateways: Vec<String>,
}

/// Istio `Gateway.spec`: nothing of it is read, a Gateway only needs to exist (RG114).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GatewaySpec {}

/// `DestinationRule.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: String,
    pub subsets: Vec<Subset>,
    pub export_to: Vec<String>,
    /// Only whether it is set is read.
    pub workload_selector: Option<serde::de::IgnoredAny>,
    /// The top-level `trafficPolicy`: RG113 only asks whether two differ.
    pub traffic_policy: Option<Fingerprint>,
}

/// One named subset of a DestinationRule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Subset {
    pub name: String,
    pub labels: Labels,
}

/// The `spec.subsets` of a DestinationRule's JSON, as written (empty when missing).
pub fn raw_subsets(rule: &serde_json::Value) -> Vec<&serde_json::Value> {
    rule.lookup("/spec/subsets").and_then(serde_json::Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

/// The `name` of one subset of a DestinationRule's JSON.
pub fn raw_subset_name(subset: &serde_json::Value) -> Option<&str> {
    subset.get("name").and_then(serde_json::Value::as_str)
}

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    pub export_to: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(spec: serde_json::Value) -> DestinationRuleSpec {
        DestinationRuleSpec::deserialize(&spec).expect("spec")
    }

    #[test]
    fn traffic_policies_compare_as_values_whatever_the_key_order() {
        let a = rule(
            json!({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "LEAST_REQUEST"}}}),
        );
        let b = rule(
            json!({"trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}, "tls": {"mode": "ISTIO_MUTUAL"}}}),
        );
        let c = rule(
            json!({"trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}, "tls": {"mode": "ISTIO_MUTUAL"}}}),
        );
        assert!(a.traffic_policy.is_some());
        assert_eq!(a.traffic_policy, b.traffic_policy);
        assert_ne!(a.traffic_policy, c.traffic_policy);
        assert_eq!(rule(json!({"trafficPolicy": null})).traffic_policy, None);
        assert_eq!(rule(json!({})).traffic_policy, None);
    }

    #[test]
    fn a_workload_selector_is_read_for_its_presence_only() {
        assert!(rule(json!({"workloadSelector": {"matchLabels": {"app": "web"}}})).workload_selector.is_some());
        assert!(rule(json!({"workloadSelector": null})).workload_selector.is_none());
        assert!(rule(json!({})).workload_selector.is_none());
    }
}
