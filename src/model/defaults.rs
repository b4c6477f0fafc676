//! API-server defaults: the `default:` values of the CRD schemas routeguard knows.
//!
//! kube-apiserver fills in schema defaults when it decodes a custom resource,
//! before any admission webhook sees it: an HTTPRoute written with one
//! backendRef and no weight reaches admission with `weight: 1`, and with
//! `matches: [{path: {type: PathPrefix, value: /}}]`. `routeguard check`
//! reads objects from files, which nobody has defaulted, so it applies the
//! same defaults first; then `check` and admission judge the same object.
//!
//! The defaults are compacted from the CRDs in `crds/` into `defaults.json`
//! (only the schema branches that hold a default; a test regenerates the file
//! from the CRDs and fails when it is stale). Istio's CRDs declare no defaults.
//! Built-in kinds (Service, Deployment) are defaulted by Go code in the API
//! server, not by a schema, and are left as they are.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Object;

/// The defaults of one schema node and of the nodes below it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Defaults {
    /// The value a missing (or non-nullable null) field gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A null stays null (`nullable: true`) instead of being defaulted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nullable: bool,
    /// Named properties of an object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Defaults>,
    /// The schema of list items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Defaults>>,
    /// The schema of map values (`additionalProperties`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Box<Defaults>>,
}

impl Defaults {
    /// Applies the defaults to `value` as kube-apiserver's structural defaulting
    /// does: first every missing property that has a default gets a copy of it,
    /// then every property (the defaulted ones included) is defaulted in turn,
    /// and every list item by the item schema.
    pub fn apply(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (name, field) in &self.fields {
                    let Some(default) = &field.default else { continue };
                    match map.get(name) {
                        Some(Value::Null) if !field.nullable => {}
                        Some(_) => continue,
                        None => {}
                    }
                    map.insert(name.clone(), default.clone());
                }
                for (name, child) in map.iter_mut() {
                    if let Some(field) = self.fields.get(name) {
                        field.apply(child);
                    } else if let Some(values) = &self.values {
                        values.apply(child);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(schema) = &self.items {
                    items.iter_mut().for_each(|item| schema.apply(item));
                }
            }
            _ => {}
        }
    }
}

/// The compacted defaults, by `<kind>/<version>` (`HTTPRoute/v1`).
pub fn all() -> &'static BTreeMap<String, Defaults> {
    static ALL: OnceLock<BTreeMap<String, Defaults>> = OnceLock::new();
    // The file is generated and checked by a test, so it parses.
    ALL.get_or_init(|| serde_json::from_str(include_str!("defaults.json")).unwrap_or_default())
}

/// The defaults for an object of `kind` served as `api_version`, if its CRD declares any.
pub fn for_type(kind: &str, api_version: &str) -> Option<&'static Defaults> {
    let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
    all().get(&format!("{kind}/{version}"))
}

impl Object {
    /// The object as the API server would store it: its CRD's schema defaults applied.
    pub fn with_api_defaults(mut self) -> Object {
        let api_version = self.raw.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        // Istio's CRDs declare no defaults, and its Gateway shares a kind name
        // with the Gateway API's, whose defaults are not its own.
        if self.key.kind.group() == "networking.istio.io" {
            return self;
        }
        if let Some(defaults) = for_type(self.key.kind.as_str(), api_version) {
            defaults.apply(&mut self.raw);
        }
        self
    }
}

#[cfg(test)]
#[path = "defaults/tests.rs"]
mod tests;
