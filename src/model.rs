//! Kubernetes, Istio and Gateway API objects as routeguard reads them.
//!
//! Every object keeps its original JSON (`Object::raw`); the typed views in the
//! submodules are lenient readings of the fields the policy needs. Nothing is
//! ever re-serialized from a typed view, so unknown and newer fields survive.

pub mod core;
pub(crate) mod defaults;
mod fingerprint;
pub mod gateway;
pub mod istio;
mod labels;
pub(crate) mod marks;
pub mod path;
mod pointer;
pub mod pruned;

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use fingerprint::Fingerprint;
pub use labels::Labels;
pub use path::FieldPath;
pub use pointer::Lookup;

/// The kinds routeguard understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    HttpRoute,
    ReferenceGrant,
    Service,
    Deployment,
    /// Istio's `Gateway` (networking.istio.io), what `VirtualService.spec.gateways` names.
    IstioGateway,
    /// The Gateway API's `Gateway` (gateway.networking.k8s.io), what `HTTPRoute.spec.parentRefs` names.
    Gateway,
    /// A core `Namespace`, cluster-scoped: read for its labels (the enforcement mode), never reviewed.
    Namespace,
}

impl Kind {
    /// All kinds, in a stable order.
    pub const ALL: [Kind; 10] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::HttpRoute,
        Kind::ReferenceGrant,
        Kind::Service,
        Kind::Deployment,
        Kind::IstioGateway,
        Kind::Gateway,
        Kind::Namespace,
    ];

    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::HttpRoute => "HTTPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::Service => "Service",
            Kind::Deployment => "Deployment",
            Kind::IstioGateway | Kind::Gateway => "Gateway",
            Kind::Namespace => "Namespace",
        }
    }

    /// False for the cluster-scoped kinds (`Namespace`): their key's namespace is empty.
    pub fn is_namespaced(self) -> bool {
        self != Kind::Namespace
    }

    /// A name unique among the kinds, for metric labels and task names: the
    /// `kind` string, except `IstioGateway` (both gateways are `Gateway`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::IstioGateway => "IstioGateway",
            other => other.as_str(),
        }
    }

    /// The API group the kind lives in (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::VirtualService | Kind::DestinationRule | Kind::ServiceEntry | Kind::IstioGateway => {
                "networking.istio.io"
            }
            Kind::HttpRoute | Kind::ReferenceGrant | Kind::Gateway => "gateway.networking.k8s.io",
            Kind::Service | Kind::Namespace => "",
            Kind::Deployment => "apps",
        }
    }

    /// Recognises a kind from `apiVersion` and `kind`; `None` for anything else.
    ///
    /// Istio's v1, v1beta1 and v1alpha3 share one schema, so any version of the
    /// group is accepted; Gateway API kinds are accepted in v1 and v1beta1.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let found = match kind {
            "VirtualService" => Kind::VirtualService,
            "DestinationRule" => Kind::DestinationRule,
            "ServiceEntry" => Kind::ServiceEntry,
            "HTTPRoute" => Kind::HttpRoute,
            "ReferenceGrant" => Kind::ReferenceGrant,
            "Service" => Kind::Service,
            "Deployment" => Kind::Deployment,
            "Namespace" => Kind::Namespace,
            // Two groups name a kind `Gateway`.
            "Gateway" if group == Kind::IstioGateway.group() => Kind::IstioGateway,
            "Gateway" => Kind::Gateway,
            _ => return None,
        };
        (found.group() == group).then_some(found)
    }

    /// The plural resource name (`virtualservices`), as API paths and
    /// admission requests (`request.resource`) name the kind.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::VirtualService => "virtualservices",
            Kind::DestinationRule => "destinationrules",
            Kind::ServiceEntry => "serviceentries",
            Kind::HttpRoute => "httproutes",
            Kind::ReferenceGrant => "referencegrants",
            Kind::Service => "services",
            Kind::Deployment => "deployments",
            Kind::IstioGateway | Kind::Gateway => "gateways",
            Kind::Namespace => "namespaces",
        }
    }

    /// Recognises a kind from the group and the plural resource name an
    /// admission request carries (`request.resource`).
    pub fn from_resource(group: &str, resource: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == resource && k.group() == group)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of one object: kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("object is not a JSON object")]
    NotAnObject,
    #[error("missing or empty {0}")]
    Missing(&'static str),
    #[error("{kind} is not a kind routeguard handles (apiVersion {api_version})")]
    UnknownKind { api_version: String, kind: String },
    #[error("{kind} {name}: {path}: {message}")]
    Shape {
        kind: Kind,
        name: String,
        /// The field whose value has the wrong shape.
        path: FieldPath,
        message: String,
    },
}

/// An object routeguard handles: its identity, its original JSON and its labels.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: ObjectKey,
    /// The object exactly as received; the source of truth for patches.
    pub raw: Value,
}

impl Object {
    /// Reads an object from JSON. `default_namespace` fills in a missing
    /// `metadata.namespace` of a namespaced kind; a cluster-scoped kind's
    /// namespace is always empty.
    pub fn from_value(raw: Value, default_namespace: &str) -> Result<Object, ModelError> {
        let map = raw.as_object().ok_or(ModelError::NotAnObject)?;
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind_str = map.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind_str.is_empty() {
            return Err(ModelError::Missing("kind"));
        }
        let kind = Kind::from_type(api_version, kind_str).ok_or_else(|| ModelError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind_str.to_string(),
        })?;
        let meta = map.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or(ModelError::Missing("metadata.name"))?
            .to_string();
        let namespace = meta
            .filter(|_| kind.is_namespaced())
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(if kind.is_namespaced() { default_namespace } else { "" })
            .to_string();
        Ok(Object { key: ObjectKey { kind, namespace, name }, raw })
    }

    pub fn kind(&self) -> Kind {
        self.key.kind
    }

    pub fn name(&self) -> &str {
        &self.key.name
    }

    pub fn namespace(&self) -> &str {
        &self.key.namespace
    }

    /// `metadata.labels`, or an empty map.
    pub fn labels(&self) -> Labels {
        string_map(self.raw.lookup("/metadata/labels"))
    }

    /// `metadata.annotations`, or an empty map.
    pub fn annotations(&self) -> Labels {
        string_map(self.raw.lookup("/metadata/annotations"))
    }

    /// One annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.raw.lookup("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str)
    }

    /// The `spec` read as the typed view `T` (fields absent or of an unknown
    /// name are ignored; a field of the wrong type is an error).
    pub fn spec<T: DeserializeOwned + Default>(&self) -> Result<T, ModelError> {
        let shape = |path: FieldPath, message: String| ModelError::Shape {
            kind: self.key.kind,
            name: self.key.name.clone(),
            path,
            message,
        };
        match self.raw.get("spec") {
            None | Some(Value::Null) => Ok(T::default()),
            // serde would read a list into a struct by position; a spec is a map.
            Some(spec @ Value::Object(_)) => T::deserialize(spec).or_else(|_| {
                // Only a failure pays for tracking the path of the bad field.
                serde_path_to_error::deserialize(spec).map_err(|e| {
                    let path = field_path("spec", e.path());
                    shape(path, e.into_inner().to_string())
                })
            }),
            Some(other) => Err(shape(FieldPath::new("spec"), format!("expected a map, found {}", json_type(other)))),
        }
    }
}

/// The typed reading of an object's `spec`, by kind.
#[derive(Debug, Clone)]
pub enum Spec {
    VirtualService(istio::VirtualServiceSpec),
    DestinationRule(istio::DestinationRuleSpec),
    ServiceEntry(istio::ServiceEntrySpec),
    HttpRoute(gateway::HttpRouteSpec),
    ReferenceGrant(gateway::ReferenceGrantSpec),
    Service(core::ServiceSpec),
    Deployment(core::DeploymentSpec),
    IstioGateway(istio::GatewaySpec),
    Gateway(gateway::GatewaySpec),
    /// A Namespace's spec (finalizers) is not read.
    Namespace,
}

impl Object {
    /// Reads the typed spec that matches the object's kind.
    pub fn typed_spec(&self) -> Result<Spec, ModelError> {
        Ok(match self.key.kind {
            Kind::VirtualService => Spec::VirtualService(self.spec()?),
            Kind::DestinationRule => Spec::DestinationRule(self.spec()?),
            Kind::ServiceEntry => Spec::ServiceEntry(self.spec()?),
            Kind::HttpRoute => Spec::HttpRoute(self.spec()?),
            Kind::ReferenceGrant => Spec::ReferenceGrant(self.spec()?),
            Kind::Service => Spec::Service(self.spec()?),
            Kind::Deployment => Spec::Deployment(self.spec()?),
            Kind::IstioGateway => Spec::IstioGateway(self.spec()?),
            Kind::Gateway => Spec::Gateway(self.spec()?),
            Kind::Namespace => Spec::Namespace,
        })
    }
}

/// The field path of a serde error below `root`.
pub fn field_path(root: &str, path: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment;
    path.iter().fold(FieldPath::new(root), |p, segment| match segment {
        Segment::Seq { index } => p.index(*index),
        Segment::Map { key } => p.key(key),
        Segment::Enum { variant } => p.key(variant),
        Segment::Unknown => p,
    })
}

/// `a map`, `a list`, ... for messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Reads a JSON map of strings, skipping values that are not strings.
pub fn string_map(value: Option<&Value>) -> Labels {
    value
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s))).collect())
        .unwrap_or_default()
}

/// True when every pair of `selector` is in `labels` (an empty selector selects nothing).
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_kind_and_identity_with_default_namespace() {
        let obj = Object::from_value(
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "reviews"}}),
            "default",
        )
        .expect("object");
        assert_eq!(obj.key.kind, Kind::VirtualService);
        assert_eq!(obj.namespace(), "default");
        assert_eq!(obj.to_string_key(), "VirtualService default/reviews");
    }

    #[test]
    fn rejects_unknown_kind_and_wrong_group() {
        let err = Object::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}), "d");
        assert!(matches!(err, Err(ModelError::UnknownKind { .. })));
        let err = Object::from_value(json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "x"}}), "d");
        assert!(matches!(err, Err(ModelError::UnknownKind { .. })));
        let err = Object::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {}}), "d");
        assert!(matches!(err, Err(ModelError::Missing("metadata.name"))));
    }

    #[test]
    fn the_two_gateways_are_told_apart_by_group() {
        let istio = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway", "metadata": {"name": "g"}});
        let api = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "g"}});
        assert_eq!(Object::from_value(istio, "d").expect("istio").kind(), Kind::IstioGateway);
        assert_eq!(Object::from_value(api, "d").expect("gateway api").kind(), Kind::Gateway);
        assert_eq!(Kind::from_resource("networking.istio.io", "gateways"), Some(Kind::IstioGateway));
        assert_eq!(Kind::from_resource("gateway.networking.k8s.io", "gateways"), Some(Kind::Gateway));
        assert_eq!((Kind::IstioGateway.as_str(), Kind::IstioGateway.label()), ("Gateway", "IstioGateway"));
        let labels: std::collections::BTreeSet<&str> = Kind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), Kind::ALL.len(), "labels are unique");
    }

    #[test]
    fn a_namespace_is_cluster_scoped() {
        let raw = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "namespace": "x"}});
        let ns = Object::from_value(raw, "default").expect("namespace");
        assert_eq!((ns.kind(), ns.namespace(), ns.name()), (Kind::Namespace, "", "shop"));
        assert_eq!(Kind::from_resource("", "namespaces"), Some(Kind::Namespace));
        assert!(!Kind::Namespace.is_namespaced() && Kind::Service.is_namespaced());
    }

    #[test]
    fn empty_selector_selects_nothing() {
        let labels: Labels = [("app".to_string(), "a".to_string())].into();
        assert!(!selects(&Labels::new(), &labels));
        assert!(selects(&labels, &labels));
    }

    impl Object {
        fn to_string_key(&self) -> String {
            self.key.to_string()
        }
    }
}
