//! One object of the snapshot as the index stores it.

use std::num::NonZeroU64;
use std::sync::Arc;

use serde_json::Value;

use crate::model::core::DeploymentSpec;
use crate::model::istio::DestinationRuleSpec;
use crate::model::{Fingerprint, Kind, Lookup as _, Object, ObjectKey, Spec, marks};

use super::super::hosts;

/// One object of the snapshot: its identity, its original JSON kept as compact
/// text (parsed again on demand, see [`Entry::object`]), a few label and
/// annotation markers, and its typed spec read once.
///
/// The JSON text costs about a tenth of a `serde_json::Value` tree; nothing on
/// the admission path reads it, only generation and the live controller do.
/// Cloning an entry clones one `Arc`.
#[derive(Debug, Clone)]
pub struct Entry(Arc<Stored>);

#[derive(Debug)]
struct Stored {
    key: ObjectKey,
    /// `Object::raw` serialized; parsing it gives back an equal `Value`.
    json: Box<str>,
    /// The fingerprint of `Object::raw` without its [`BOOKKEEPING`] metadata:
    /// the live index tells a status-only update from a change by it,
    /// without parsing `json` again.
    content: Fingerprint,
    marks: Marks,
    /// `None` when the spec does not have the shape its kind requires.
    spec: Option<Spec>,
    /// What few objects have, behind one pointer (`None` for most).
    rare: Option<Box<Rare>>,
    /// `metadata.resourceVersion`, when it is a decimal number (see [`version_of`]).
    version: Option<NonZeroU64>,
}

/// The parts of an entry that most objects do not have, kept apart so that
/// those objects pay one pointer for them (an entry is stored per object).
#[derive(Debug)]
struct Rare {
    /// The `routeguard.io/service` label: the Service a generated object was made from.
    source: Option<Box<str>>,
    /// Istio's `exportTo` of the object: a Service's `networking.istio.io/exportTo`
    /// annotation (comma-separated), the `spec.exportTo` of the Istio kinds.
    exports: Box<[String]>,
}

/// A `resourceVersion` as a number, when it is one. The API server's are
/// etcd revisions, decimal; an opaque one of another shape is `None`, and an
/// object that has it is always compared by content instead.
pub fn version_of(resource_version: Option<&str>) -> Option<NonZeroU64> {
    resource_version?.parse().ok()
}

/// Metadata fields that change on every write, whatever was written.
pub const BOOKKEEPING: [&str; 2] = ["resourceVersion", "generation"];

/// The fingerprint of an object without its [`BOOKKEEPING`] metadata.
fn content_of(raw: &Value) -> Fingerprint {
    let Some(map) = raw.as_object() else { return Fingerprint::of(raw) };
    Fingerprint::of_map(map.iter().map(|(key, value)| {
        let print = match value.as_object() {
            Some(meta) if key == "metadata" => Fingerprint::of_map(
                meta.iter()
                    .filter(|(k, _)| !BOOKKEEPING.contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str(), Fingerprint::of(v))),
            ),
            _ => Fingerprint::of(value),
        };
        (key.as_str(), print)
    }))
}

/// The Service annotation by which Istio limits the namespaces a Service is visible in.
pub const SERVICE_EXPORT_ANNOTATION: &str = "networking.istio.io/exportTo";

/// The `exportTo` of an object, as written.
fn exports_of(object: &Object, spec: Option<&Spec>) -> Box<[String]> {
    let list: &[String] = match spec {
        Some(Spec::VirtualService(s)) => &s.export_to,
        Some(Spec::DestinationRule(s)) => &s.export_to,
        Some(Spec::ServiceEntry(s)) => &s.export_to,
        Some(Spec::Service(_)) => {
            let annotation = object.annotation(SERVICE_EXPORT_ANNOTATION).unwrap_or_default();
            return annotation.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect();
        }
        _ => &[],
    };
    list.into()
}

/// Labels and annotations generation and reconciliation test on many objects.
#[derive(Debug, Clone, Copy, Default)]
struct Marks {
    /// `app.kubernetes.io/managed-by: routeguard`.
    managed: bool,
    /// `routeguard.io/canary: "true"`.
    canary: bool,
    /// `routeguard.io/manage-subsets: "true"`.
    manage_subsets: bool,
}

impl Entry {
    /// Reads an object's spec once and stores its JSON as text.
    pub fn new(object: &Object) -> Entry {
        let spec = object.typed_spec().ok();
        let marks = Marks {
            managed: marks::is_managed(object),
            canary: object.annotation(marks::CANARY_ANNOTATION) == Some("true"),
            manage_subsets: object.annotation(marks::MANAGE_SUBSETS_ANNOTATION) == Some("true"),
        };
        let json = object.raw.to_string().into_boxed_str();
        let content = content_of(&object.raw);
        let exports = exports_of(object, spec.as_ref());
        let source = object.labels().get(marks::SOURCE_SERVICE_LABEL).map(Box::from);
        let version = version_of(object.raw.lookup("/metadata/resourceVersion").and_then(Value::as_str));
        let rare = (source.is_some() || !exports.is_empty()).then(|| Box::new(Rare { source, exports }));
        Entry(Arc::new(Stored { key: object.key.clone(), json, content, marks, spec, rare, version }))
    }

    /// The object's `resourceVersion` as a number (see [`version_of`]). The
    /// API server gives every write a new one, so an object read again with
    /// the version its entry has is the object the entry holds.
    pub fn version(&self) -> Option<NonZeroU64> {
        self.0.version
    }

    /// True when both entries hold the same JSON.
    pub fn is_same(&self, other: &Entry) -> bool {
        self.0.json == other.0.json
    }

    /// True when both entries hold the same JSON but for [`BOOKKEEPING`]
    /// metadata (a status update, once the index dropped `status`).
    pub fn is_same_content(&self, other: &Entry) -> bool {
        self.0.content == other.0.content
    }

    pub fn key(&self) -> &ObjectKey {
        &self.0.key
    }

    pub fn kind(&self) -> Kind {
        self.0.key.kind
    }

    pub fn name(&self) -> &str {
        &self.0.key.name
    }

    pub fn namespace(&self) -> &str {
        &self.0.key.namespace
    }

    /// The object as it was inserted, parsed again from its stored text.
    pub fn object(&self) -> Object {
        Object { key: self.0.key.clone(), raw: self.raw() }
    }

    /// The object's original JSON, parsed again from its stored text.
    pub fn raw(&self) -> Value {
        // The text was written by serde_json from a `Value`, so it parses.
        serde_json::from_str(&self.0.json).unwrap_or(Value::Null)
    }

    /// The typed spec; `None` when the spec does not have the shape its kind requires.
    pub fn spec(&self) -> Option<&Spec> {
        self.0.spec.as_ref()
    }

    /// The object's Istio `exportTo`, as written (empty: exported everywhere).
    pub fn exports(&self) -> &[String] {
        self.0.rare.as_ref().map_or(&[], |r| &r.exports)
    }

    /// True when Istio makes the object visible to proxies in namespace `from`.
    pub fn exported_to(&self, from: &str) -> bool {
        hosts::exported_to(self.exports(), self.namespace(), from)
    }

    /// True when routeguard manages the object (`app.kubernetes.io/managed-by: routeguard`).
    pub fn is_managed(&self) -> bool {
        self.0.marks.managed
    }

    /// True when the object carries the `routeguard.io/service` label.
    pub fn has_source_service_label(&self) -> bool {
        self.source_service().is_some()
    }

    /// The `routeguard.io/service` label: the Service a generated object was made from.
    pub fn source_service(&self) -> Option<&str> {
        self.0.rare.as_ref().and_then(|r| r.source.as_deref())
    }

    /// True when the object is annotated `routeguard.io/canary: "true"`.
    pub fn is_canary(&self) -> bool {
        self.0.marks.canary
    }

    /// True when the object is annotated `routeguard.io/manage-subsets: "true"`.
    pub fn manages_subsets(&self) -> bool {
        self.0.marks.manage_subsets
    }

    /// The DestinationRule spec, if this is a readable DestinationRule.
    pub fn destination_rule(&self) -> Option<&DestinationRuleSpec> {
        match self.spec() {
            Some(Spec::DestinationRule(s)) => Some(s),
            _ => None,
        }
    }

    /// The host a DestinationRule names, qualified in its namespace (read from
    /// its JSON when its spec has the wrong shape); `None` when empty.
    pub fn rule_host(&self, domain: &str) -> Option<String> {
        match self.destination_rule() {
            Some(spec) if spec.host.is_empty() => None,
            Some(spec) => Some(hosts::qualify(&spec.host, self.namespace(), domain)),
            None => hosts::rule_host(&self.object(), domain),
        }
    }

    /// The Deployment spec, if this is a readable Deployment.
    pub fn deployment(&self) -> Option<&DeploymentSpec> {
        match self.spec() {
            Some(Spec::Deployment(s)) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(raw: Value) -> Entry {
        Entry::new(&Object::from_value(raw, "").expect("object"))
    }

    #[test]
    fn an_entry_keeps_what_few_objects_have_apart() {
        let plain = Entry::new(
            &Object::from_value(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "shop"}}),
                "",
            )
            .expect("object"),
        );
        assert!(plain.0.rare.is_none() && plain.exports().is_empty() && plain.source_service().is_none());
        let generated = Entry::new(
            &Object::from_value(
                json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": "a-v1", "namespace": "shop", "labels": {marks::SOURCE_SERVICE_LABEL: "a"},
                                    "annotations": {SERVICE_EXPORT_ANNOTATION: "., istio-system"}}}),
                "",
            )
            .expect("object"),
        );
        assert_eq!(generated.source_service(), Some("a"));
        assert!(generated.has_source_service_label());
        assert_eq!(generated.exports(), [".", "istio-system"]);
    }

    #[test]
    fn entries_compare_by_text_and_by_content_without_bookkeeping() {
        let base = json!({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": "a", "namespace": "shop", "resourceVersion": "1", "generation": 1},
                          "spec": {"selector": {"app": "a"}}});
        let stored = entry(base.clone());
        assert!(stored.is_same(&entry(base.clone())) && stored.is_same_content(&entry(base.clone())));

        let mut bumped = base.clone();
        bumped["metadata"]["resourceVersion"] = json!("2");
        bumped["metadata"]["generation"] = json!(2);
        let bumped = entry(bumped);
        assert!(!stored.is_same(&bumped), "another version");
        assert!(stored.is_same_content(&bumped), "only bookkeeping moved");

        // What the rules read, in metadata or outside it, is content; so is a
        // bookkeeping name outside metadata.
        for (pointer, value) in [
            ("/metadata/labels", json!({"tier": "web"})),
            ("/spec/selector/app", json!("b")),
            ("/spec/resourceVersion", json!("1")),
        ] {
            let mut changed = base.clone();
            match changed.pointer_mut(pointer) {
                Some(slot) => *slot = value,
                None => {
                    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
                    changed.pointer_mut(parent).expect("parent")[key] = value;
                }
            }
            let changed = entry(changed);
            assert!(!stored.is_same_content(&changed), "{pointer}");
        }
    }
}
