//! The watched kinds and the API version each is served in.
//!
//! Istio serves one schema under v1, v1beta1 and v1alpha3 (VirtualService,
//! DestinationRule, ServiceEntry, Gateway): routeguard prefers v1 and falls
//! back. Gateway API: HTTPRoute and Gateway v1 (v1beta1 on old releases),
//! ReferenceGrant v1 when served, else v1beta1. Core Services and
//! Namespaces and apps Deployments are always there and are not looked up.

use kube::core::ApiResource;
use kube::core::DynamicObject;
use serde_json::Value;

use crate::model::pruned::READ_ANNOTATION_PREFIXES;
use crate::model::{Kind, ModelError, Object};

use super::watched::Watched;
use super::{ClusterError, within};

/// How long one discovery request may take.
const DISCOVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The versions to try for a kind, most preferred first.
pub fn candidate_versions(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::VirtualService | Kind::DestinationRule | Kind::ServiceEntry | Kind::IstioGateway => {
            &["v1", "v1beta1", "v1alpha3"]
        }
        Kind::HttpRoute | Kind::ReferenceGrant | Kind::Gateway => &["v1", "v1beta1"],
        Kind::Service | Kind::Deployment | Kind::Namespace => &["v1"],
    }
}

/// True for the kinds that are always served (no discovery needed).
pub fn is_builtin(kind: Kind) -> bool {
    matches!(kind, Kind::Service | Kind::Deployment | Kind::Namespace)
}

/// The first candidate version whose resource list names the kind's plural.
/// `listed(version)` is `None` when the group version is not served at all.
pub fn choose_version<'a>(kind: Kind, listed: impl Fn(&str) -> Option<&'a [String]>) -> Option<&'static str> {
    let plural = kind.plural();
    candidate_versions(kind)
        .iter()
        .copied()
        .find(|version| listed(version).is_some_and(|names| names.iter().any(|n| n == plural)))
}

/// A kind as the API server serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub kind: Kind,
    pub resource: ApiResource,
}

impl Served {
    /// The kind served in `version`.
    pub fn new(kind: Kind, version: &str) -> Served {
        let group = kind.group();
        let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Served {
            kind,
            resource: ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                api_version,
                kind: kind.as_str().to_string(),
                plural: kind.plural().to_string(),
            },
        }
    }

    /// `networking.istio.io/v1`, `v1`, ...
    pub fn api_version(&self) -> &str {
        &self.resource.api_version
    }
}

/// Finds the version a kind is served in; `Ok(None)` when its CRD is not installed.
pub async fn discover(client: &kube::Client, kind: Kind) -> Result<Option<Served>, ClusterError> {
    if is_builtin(kind) {
        return Ok(Some(Served::new(kind, "v1")));
    }
    let mut lists: Vec<(&str, Option<Vec<String>>)> = Vec::new();
    for version in candidate_versions(kind) {
        let group_version = format!("{}/{version}", kind.group());
        let what = format!("discovery of {group_version}");
        let names = match within(&what, DISCOVERY_TIMEOUT, client.list_api_group_resources(&group_version)).await {
            Ok(list) => Some(list.resources.into_iter().map(|r| r.name).collect()),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let found = names.as_ref().is_some_and(|n: &Vec<String>| n.iter().any(|n| n == kind.plural()));
        lists.push((version, names));
        if found {
            break;
        }
    }
    let listed = |version: &str| lists.iter().find(|(v, _)| *v == version).and_then(|(_, n)| n.as_deref());
    Ok(choose_version(kind, listed).map(|version| Served::new(kind, version)))
}

/// Turns a watched object into a model [`Object`]: sets `apiVersion` and
/// `kind` (list items may lack them) and keeps only what routeguard reads
/// (see [`normalize`]).
pub fn to_object(served: &Served, object: DynamicObject) -> Result<Object, ModelError> {
    let mut raw = serde_json::to_value(object).map_err(|_| ModelError::NotAnObject)?;
    normalize(served, &mut raw);
    Object::from_value(raw, "")
}

/// A watched object as the live index stores it: [`Watched`] has skipped
/// its status, managed fields, unread annotations and, for a Deployment, its
/// pod spec (`spec.template.spec`, often most of the object) as it was read;
/// this sets `apiVersion` and `kind` and [`normalize`]s the rest. Generation,
/// the rules and the controller read only a template's labels and its uid,
/// so a rollout that only changes images is bookkeeping for the index (no
/// reconcile, no audit), and a cluster's large pod specs cost no memory.
/// `check --cluster` reads through [`to_object`]: it judges a Deployment
/// file's UPDATE against the cluster's, whose template the mutation compares.
pub fn to_indexed_object(served: &Served, watched: Watched) -> Result<Object, ModelError> {
    let mut raw = Value::Object(watched.raw);
    normalize(served, &mut raw);
    Object::from_value(raw, "")
}

/// Sets `apiVersion` and `kind` and drops what no rule, no generation and no
/// reconcile reads: `status`, `metadata.managedFields` and the annotations
/// outside [`READ_ANNOTATION_PREFIXES`] (`kubectl.kubernetes.io/last-applied-configuration`
/// is often the largest part of an object). Less memory per object, and an
/// update of only those parts leaves the index's content as it was, so it
/// costs no publish and no reconcile (see [`super::index::Effect`]). A
/// Namespace keeps only its name, labels and resourceVersion: routeguard reads
/// its enforcement label and nothing else.
pub fn normalize(served: &Served, raw: &mut Value) {
    if let Some(map) = raw.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(served.api_version().to_string()));
        map.insert("kind".into(), Value::String(served.kind.as_str().to_string()));
        if served.kind == Kind::Namespace {
            map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
            if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "labels" | "resourceVersion"));
            }
            return;
        }
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.retain(|k, _| READ_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p)));
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefers_v1_and_falls_back() {
        let v1 = names(&["virtualservices", "destinationrules"]);
        let beta = names(&["virtualservices", "destinationrules", "serviceentries"]);
        let listed = |v: &str| match v {
            "v1" => Some(v1.as_slice()),
            "v1beta1" => Some(beta.as_slice()),
            _ => None,
        };
        assert_eq!(choose_version(Kind::VirtualService, listed), Some("v1"));
        assert_eq!(choose_version(Kind::ServiceEntry, listed), Some("v1beta1"));
        assert_eq!(choose_version(Kind::HttpRoute, |_| None), None);
    }

    #[test]
    fn reference_grant_in_v1beta1_when_v1_lacks_it() {
        let v1 = names(&["httproutes", "gateways"]);
        let beta = names(&["httproutes", "referencegrants"]);
        let listed = |v: &str| match v {
            "v1" => Some(v1.as_slice()),
            "v1beta1" => Some(beta.as_slice()),
            _ => None,
        };
        assert_eq!(choose_version(Kind::HttpRoute, listed), Some("v1"));
        assert_eq!(choose_version(Kind::ReferenceGrant, listed), Some("v1beta1"));
    }

    #[test]
    fn both_gateways_are_looked_up_in_their_own_group() {
        let istio = names(&["gateways", "virtualservices"]);
        let listed = |v: &str| (v == "v1beta1").then_some(istio.as_slice());
        assert_eq!(choose_version(Kind::IstioGateway, listed), Some("v1beta1"));
        let served = Served::new(Kind::IstioGateway, "v1");
        assert_eq!((served.api_version(), served.resource.plural.as_str()), ("networking.istio.io/v1", "gateways"));
        assert_eq!(served.resource.kind, "Gateway");
        assert_eq!(Served::new(Kind::Gateway, "v1").api_version(), "gateway.networking.k8s.io/v1");
        assert!(!is_builtin(Kind::Gateway) && !is_builtin(Kind::IstioGateway));
    }

    #[test]
    fn a_namespace_keeps_only_name_labels_and_version() {
        let served = Served::new(Kind::Namespace, "v1");
        assert_eq!((served.api_version(), served.resource.plural.as_str()), ("v1", "namespaces"));
        assert!(is_builtin(Kind::Namespace));
        let dynamic: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "shop", "uid": "u", "resourceVersion": "7", "managedFields": [{}],
                         "labels": {"routeguard.io/enforcement": "warn"}, "annotations": {"routeguard.io/x": "y"}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        }))
        .expect("dynamic");
        let object = to_object(&served, dynamic).expect("object");
        assert_eq!(object.key.to_string(), "Namespace /shop");
        assert_eq!(
            object.raw,
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "shop", "resourceVersion": "7", "labels": {"routeguard.io/enforcement": "warn"}}})
        );
    }

    #[test]
    fn the_index_drops_a_deployments_pod_spec_only() {
        let served = Served::new(Kind::Deployment, "v1");
        let dynamic: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "reviews-v1", "namespace": "shop", "uid": "u", "managedFields": [{}],
                         "labels": {"app": "reviews"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "reviews"}},
                     "template": {"metadata": {"labels": {"app": "reviews", "version": "v1"}},
                                  "spec": {"containers": [{"name": "app", "image": "reviews:1"}]}}},
            "status": {"readyReplicas": 2}
        }))
        .expect("dynamic");
        let whole = to_object(&served, dynamic.clone()).expect("object");
        assert_eq!(
            whole.raw["spec"]["template"]["spec"]["containers"][0]["image"], "reviews:1",
            "check reads it whole"
        );
        let watched: Watched = serde_json::from_value(serde_json::to_value(&dynamic).expect("json")).expect("watched");
        let indexed = to_indexed_object(&served, watched).expect("object");
        let mut expected = whole.raw;
        expected["spec"]["template"].as_object_mut().map(|t| t.remove("spec"));
        assert_eq!(indexed.raw, expected);
        assert_eq!(indexed.raw["spec"]["template"]["metadata"]["labels"]["version"], "v1");
    }

    #[test]
    fn served_resource_and_object() {
        let served = Served::new(Kind::DestinationRule, "v1beta1");
        assert_eq!(served.api_version(), "networking.istio.io/v1beta1");
        assert_eq!(served.resource.plural, "destinationrules");
        assert_eq!(Served::new(Kind::Service, "v1").api_version(), "v1");

        let dynamic: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "r", "namespace": "shop", "managedFields": [{"manager": "kubectl"}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                         "routeguard.io/manage-subsets": "true",
                                         "networking.istio.io/exportTo": "."}},
            "spec": {"host": "reviews"},
            "status": {"observedGeneration": 3}
        }))
        .expect("dynamic");
        let object = to_object(&served, dynamic).expect("object");
        assert_eq!(object.key.to_string(), "DestinationRule shop/r");
        assert_eq!(object.raw["apiVersion"], "networking.istio.io/v1beta1");
        assert!(object.raw["metadata"].get("managedFields").is_none());
        assert!(object.raw.get("status").is_none());
        assert_eq!(
            object.raw["metadata"]["annotations"],
            json!({"routeguard.io/manage-subsets": "true", "networking.istio.io/exportTo": "."})
        );
        assert_eq!(object.raw["spec"]["host"], "reviews");
    }
}
