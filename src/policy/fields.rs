//! RG108: unknown fields in routing objects, with a did-you-mean.
//!
//! The known fields come from the real CRD schemas in `crds/`, compacted into
//! `fields/known.json` (a test regenerates it and fails when it is stale), so
//! a typo such as `mirror_percent` is caught the way the API server never
//! does: Istio's CRDs keep unknown fields, and Envoy silently ignores them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{FieldPath, Kind, Object};

use super::{Code, Finding};

/// The fields a schema node allows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Known {
    /// Named fields of an object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Known>,
    /// The schema of list items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Known>>,
    /// The schema of map values (free-form keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Box<Known>>,
    /// Anything goes below this node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
}

/// Deprecated fields and what replaced them: suggest the replacement.
const REPLACED: &[(&str, &str)] = &[("mirrorPercent", "mirrorPercentage"), ("mirror_percent", "mirrorPercentage")];

/// Field names the CRD schema still accepts but Istio only keeps as legacy
/// aliases: reported like unknown fields, pointing at the current name.
const ALIASES: &[&str] = &["mirror_percent"];

/// The compacted schemas, by kind name.
fn known() -> &'static BTreeMap<String, Known> {
    static KNOWN: OnceLock<BTreeMap<String, Known>> = OnceLock::new();
    KNOWN.get_or_init(|| serde_json::from_str(include_str!("fields/known.json")).unwrap_or_default())
}

/// Warnings for fields the object's schema does not define.
pub fn unknown_fields(object: &Object) -> Vec<Finding> {
    let kind = object.kind();
    if !matches!(kind, Kind::VirtualService | Kind::DestinationRule | Kind::ServiceEntry | Kind::HttpRoute) {
        return Vec::new();
    }
    let Some(spec_schema) = known().get(kind.as_str()) else { return Vec::new() };
    let mut findings = Vec::new();
    if let Some(map) = object.raw.as_object() {
        for key in map.keys() {
            if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "spec" | "status") {
                let expected = ["apiVersion", "kind", "metadata", "spec", "status"];
                let hint = suggest(key, expected.iter().copied());
                findings.push(finding(object, FieldPath::root().key(key), key, hint));
            }
        }
    }
    if let Some(spec) = object.raw.get("spec") {
        let mut trail = vec![Step::Key("spec")];
        walk(object, spec, spec_schema, &mut trail, &mut findings);
    }
    findings
}

/// One step of the way down to a field; the path string is only built for a finding.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn path_of(trail: &[Step<'_>]) -> FieldPath {
    trail.iter().fold(FieldPath::root(), |p, step| match step {
        Step::Key(k) => p.key(k),
        Step::Index(i) => p.index(*i),
    })
}

fn walk<'a>(object: &Object, value: &'a Value, schema: &Known, trail: &mut Vec<Step<'a>>, out: &mut Vec<Finding>) {
    if schema.open {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                trail.push(Step::Key(key));
                if ALIASES.contains(&key.as_str()) {
                    let hint = suggest(key, std::iter::once(key.as_str()));
                    out.push(finding(object, path_of(trail), key, hint));
                } else if let Some(field) = schema.fields.get(key) {
                    walk(object, child, field, trail, out);
                } else if let Some(values) = &schema.values {
                    walk(object, child, values, trail, out);
                } else if !schema.fields.is_empty() {
                    let hint = suggest(key, schema.fields.keys().map(String::as_str));
                    out.push(finding(object, path_of(trail), key, hint));
                }
                trail.pop();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = &schema.items {
                for (i, item) in items.iter().enumerate() {
                    trail.push(Step::Index(i));
                    walk(object, item, item_schema, trail, out);
                    trail.pop();
                }
            }
        }
        _ => {}
    }
}

fn finding(object: &Object, path: FieldPath, key: &str, hint: Option<String>) -> Finding {
    let mut message = if ALIASES.contains(&key) {
        format!("field {key:?} is a deprecated legacy alias")
    } else if object.kind() == Kind::HttpRoute {
        format!("unknown field {key:?} is not part of the httproute schema")
    } else {
        format!(
            "unknown field {key:?} is not in the {} schema; istio ignores it",
            object.kind().as_str().to_ascii_lowercase()
        )
    };
    if let Some(hint) = hint {
        message.push_str(&format!("; did you mean {hint:?}?"));
    }
    Finding::new(Code::RG108, &object.key, path, message)
}

/// The closest known field name to `key`, if one is close enough.
pub fn suggest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let norm = |s: &str| s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect::<String>();
    let wanted = norm(key);
    let limit = (wanted.chars().count() / 3).max(2);
    let best = candidates
        .map(|c| {
            let n = norm(c);
            // A normalised prefix match (`mirror_percent` for `mirrorPercentage`) is a near miss too.
            let d = if n.starts_with(&wanted) && wanted.len() >= 4 { 1 } else { strsim::levenshtein(&wanted, &n) };
            (if n == wanted { 0 } else { d.max(1) }, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.len()))?;
    let name = best.1;
    Some(REPLACED.iter().find(|(old, _)| *old == name).map_or(name, |(_, new)| new).to_string())
}

#[cfg(test)]
#[path = "fields/tests.rs"]
mod tests;
