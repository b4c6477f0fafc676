//! Desired vs actual: the list of writes that makes the cluster hold what the
//! engine generates. Pure; the [`controller`](super::controller) carries the
//! actions out.
//!
//! - A generated (managed) object that is missing or differs is applied
//!   (server-side apply, forced: routeguard owns it), with ownerReferences and
//!   the hash of what was applied in `routeguard.io/applied-hash`, so an
//!   unchanged object costs no request.
//! - A user's DestinationRule that opted in (`routeguard.io/manage-subsets`)
//!   gets only the missing subsets appended, by a JSON Patch that first tests
//!   the resourceVersion; the names it added go to
//!   `routeguard.io/generated-subsets`.
//! - Pruning: a managed per-version Service no longer generated is deleted
//!   unless a route still sends to it; a subset of a managed DestinationRule
//!   (or one routeguard added to an opted-in one) that no Deployment backs is
//!   removed unless a VirtualService still routes to it.
//! - Only objects labelled both `app.kubernetes.io/managed-by: routeguard` and
//!   `routeguard.io/service` are ever deleted or replaced.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::PointerBuf;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::model::istio::{raw_subset_name, raw_subsets};
use crate::model::marks::{SOURCE_SERVICE_LABEL, is_managed};
use crate::model::{Fingerprint, Kind, Lookup as _, Object, ObjectKey, string_map};
use crate::policy::snapshot::Entry;
use crate::policy::{Context, Policy, Snapshot, generate, hosts};

/// Annotation with the hash of the body routeguard last applied.
pub const APPLIED_HASH_ANNOTATION: &str = "routeguard.io/applied-hash";
/// Annotation listing the subsets routeguard appended to an opted-in DestinationRule.
pub const GENERATED_SUBSETS_ANNOTATION: &str = "routeguard.io/generated-subsets";

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Server-side apply of a managed object (`create`: it does not exist yet).
    Apply { key: ObjectKey, body: Value, create: bool },
    /// A JSON Patch of a user's opted-in DestinationRule: subsets appended or removed.
    PatchSubsets { key: ObjectKey, patch: Value, added: Vec<String>, removed: Vec<String> },
    /// Deletion of a managed object, with preconditions.
    Delete { key: ObjectKey, uid: Option<String>, resource_version: Option<String> },
}

/// An action as [`SETTLE`](super::controller) remembers it: fingerprints of
/// its bodies, equal exactly when the actions are (the key aside). A
/// bootstrap applies thousands of bodies of a few KB; keeping them until the
/// next pass held megabytes for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Apply { body: Fingerprint, create: bool },
    PatchSubsets(Fingerprint),
    Delete(Fingerprint),
}

impl Action {
    /// What remembering this action keeps.
    pub fn settled(&self) -> Settled {
        match self {
            Action::Apply { body, create, .. } => Settled::Apply { body: Fingerprint::of(body), create: *create },
            Action::PatchSubsets { patch, added, removed, .. } => {
                Settled::PatchSubsets(Fingerprint::of(&json!([patch, added, removed])))
            }
            Action::Delete { uid, resource_version, .. } => {
                Settled::Delete(Fingerprint::of(&json!([uid, resource_version])))
            }
        }
    }

    /// The object the action is about.
    pub fn key(&self) -> &ObjectKey {
        match self {
            Action::Apply { key, .. } | Action::PatchSubsets { key, .. } | Action::Delete { key, .. } => key,
        }
    }
}

/// What a reconcile looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    pub snapshot: &'a Snapshot,
    /// What the engine generates for the snapshot.
    pub desired: &'a [Object],
    /// The apiVersion DestinationRules are served in (`networking.istio.io/v1`, ...).
    pub rule_api_version: &'a str,
}

/// The actions that bring the snapshot to the desired state, applies first.
/// With a `scope` (Service keys), for the objects of those Services only:
/// `desired` is then what is generated from them, and only their generated
/// objects (and opted-in DestinationRules for their hosts) are pruning
/// candidates, so the cost is that of the Services' namespaces, not of the
/// cluster.
pub fn plan(input: Inputs<'_>, scope: Option<&BTreeSet<ObjectKey>>) -> Vec<Action> {
    let mut actions = Vec::new();
    let desired_keys: BTreeSet<&ObjectKey> = input.desired.iter().map(|o| &o.key).collect();
    for object in input.desired {
        let actual = input.snapshot.get(&object.key);
        if is_managed(object) {
            let live = actual.map(Entry::object);
            let body = apply_body(input, object, live.as_ref());
            if live.as_ref().is_none_or(|a| !up_to_date(&body, &a.raw)) {
                actions.push(Action::Apply { key: object.key.clone(), body, create: actual.is_none() });
            }
        } else if let Some(actual) = actual
            && let Some(action) = append_subsets(actual, object)
        {
            actions.push(action);
        }
    }
    for kind in [Kind::DestinationRule, Kind::Service] {
        let candidates: Vec<&Entry> = match scope {
            None => input.snapshot.of_kind(kind),
            Some(services) => scope::in_scope(input.snapshot, kind, services),
        };
        for entry in candidates {
            if desired_keys.contains(entry.key()) {
                continue;
            }
            // `owned`, read from the entry's markers.
            if entry.is_managed() && entry.has_source_service_label() {
                actions.extend(prune_managed(input, entry));
            } else if kind == Kind::DestinationRule && entry.manages_subsets() {
                actions.extend(prune_appended(input, entry));
            }
        }
    }
    actions
}

/// The server-side apply body of a managed object: the desired object with
/// the served apiVersion, ownerReferences, in-use subsets kept and the hash.
fn apply_body(input: Inputs<'_>, object: &Object, actual: Option<&Object>) -> Value {
    let mut body = object.raw.clone();
    if object.kind() == Kind::DestinationRule {
        body["apiVersion"] = json!(input.rule_api_version);
        if let Some(actual) = actual {
            keep_subsets_in_use(input, &mut body, actual);
        }
    }
    let owners = owner_references(input, object);
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("uid");
        if !owners.is_empty() {
            meta.insert("ownerReferences".into(), Value::Array(owners));
        }
    }
    let hash = body_hash(&body);
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
        if let Some(map) = annotations.as_object_mut() {
            map.insert(APPLIED_HASH_ANNOTATION.into(), Value::String(hash));
        }
    }
    body
}

/// The first 16 hex digits of the SHA-256 of a body's JSON.
pub fn body_hash(body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// True when `actual` already carries the applied hash of `body` and every field of it.
pub fn up_to_date(body: &Value, actual: &Value) -> bool {
    let hash = |v: &Value| v.lookup("/metadata/annotations").and_then(|a| a.get(APPLIED_HASH_ANNOTATION)).cloned();
    hash(body) == hash(actual) && covers(body, actual)
}

/// True when every field of `want` is in `have` with the same value (maps may
/// have more keys; lists must have the same length; the API server's defaults are ignored).
pub fn covers(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| covers(v, hv))),
        (Value::Array(w), Value::Array(h)) => w.len() == h.len() && w.iter().zip(h).all(|(a, b)| covers(a, b)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// ownerReferences: a per-version Service is owned by the Deployments it
/// selects; a DestinationRule by the Service it was made for.
fn owner_references(input: Inputs<'_>, object: &Object) -> Vec<Value> {
    let namespace = object.namespace();
    match object.kind() {
        Kind::Service => {
            let selector = string_map(object.raw.lookup("/spec/selector"));
            // The Deployments generation read the versions from (those with a readable spec).
            input
                .snapshot
                .deployments_selected(namespace, &selector)
                .into_iter()
                .filter_map(|d| owner(&d.object(), "apps/v1"))
                .collect()
        }
        Kind::DestinationRule => {
            let Some(source) = object.labels().get(SOURCE_SERVICE_LABEL).map(str::to_string) else { return Vec::new() };
            let key = ObjectKey { kind: Kind::Service, namespace: namespace.to_string(), name: source };
            input.snapshot.get(&key).and_then(|s| owner(&s.object(), "v1")).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

fn owner(object: &Object, api_version: &str) -> Option<Value> {
    let uid = object.raw.lookup("/metadata/uid").and_then(Value::as_str).filter(|u| !u.is_empty())?;
    Some(json!({"apiVersion": api_version, "kind": object.kind().as_str(), "name": object.name(), "uid": uid}))
}

/// The subsets of a DestinationRule's JSON, as written.
/// True when a VirtualService routes or mirrors to `subset` of `host`.
pub fn subset_in_use(snapshot: &Snapshot, host: &str, subset: &str) -> bool {
    snapshot.routes_to(host).any(|route| {
        let Some(crate::model::Spec::VirtualService(vs)) = route.spec() else { return false };
        vs.uses().any(|u| {
            u.destination.subset.as_deref() == Some(subset)
                && hosts::qualify(&u.destination.host, route.namespace(), snapshot.domain()) == host
        })
    })
}

/// Adds to a managed DestinationRule's body the subsets of the live one that
/// are no longer generated but still routed to.
fn keep_subsets_in_use(input: Inputs<'_>, body: &mut Value, actual: &Object) {
    let Some(host) = hosts::rule_host(actual, input.snapshot.domain()) else { return };
    let wanted: BTreeSet<String> =
        raw_subsets(body).iter().filter_map(|s| raw_subset_name(s)).map(str::to_string).collect();
    let kept: Vec<Value> = raw_subsets(&actual.raw)
        .into_iter()
        .filter(|s| raw_subset_name(s).is_some_and(|n| !wanted.contains(n) && subset_in_use(input.snapshot, &host, n)))
        .cloned()
        .collect();
    if kept.is_empty() {
        return;
    }
    if let Some(list) = body.pointer_mut("/spec/subsets").and_then(Value::as_array_mut) {
        list.extend(kept);
    }
}

/// A managed object that is no longer generated: deleted unless in use;
/// a DestinationRule keeps the subsets routes still use.
fn prune_managed(input: Inputs<'_>, entry: &Entry) -> Option<Action> {
    let object = &entry.object();
    let snapshot = input.snapshot;
    let delete = || Action::Delete {
        key: object.key.clone(),
        uid: object.raw.lookup("/metadata/uid").and_then(Value::as_str).map(str::to_string),
        resource_version: object.raw.lookup("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string),
    };
    match object.kind() {
        Kind::Service => {
            let host = hosts::service_host(object.name(), object.namespace(), snapshot.domain());
            if snapshot.routes_to(&host).next().is_some() { None } else { Some(delete()) }
        }
        Kind::DestinationRule => {
            let host = hosts::rule_host(object, snapshot.domain())?;
            let all = raw_subsets(&object.raw);
            let used: Vec<Value> = all
                .iter()
                .filter(|s| raw_subset_name(s).is_some_and(|n| subset_in_use(snapshot, &host, n)))
                .map(|s| (*s).clone())
                .collect();
            if used.is_empty() {
                return Some(delete());
            }
            if used.len() == all.len() {
                return None;
            }
            let mut body = json!({
                "apiVersion": input.rule_api_version,
                "kind": "DestinationRule",
                "metadata": {
                    "name": object.name(),
                    "namespace": object.namespace(),
                    "labels": object.raw.lookup("/metadata/labels").cloned().unwrap_or(json!({})),
                },
                "spec": {"host": object.raw.lookup("/spec/host").cloned().unwrap_or(json!("")), "subsets": used},
            });
            if let Some(owners) = object.raw.lookup("/metadata/ownerReferences") {
                body["metadata"]["ownerReferences"] = owners.clone();
            }
            let hash = body_hash(&body);
            body["metadata"]["annotations"] = json!({APPLIED_HASH_ANNOTATION: hash});
            Some(Action::Apply { key: object.key.clone(), body, create: false })
        }
        _ => None,
    }
}

/// The names recorded in `routeguard.io/generated-subsets`.
fn recorded(object: &Object) -> BTreeSet<String> {
    object
        .annotation(GENERATED_SUBSETS_ANNOTATION)
        .map(|s| s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

fn test_version(object: &Object) -> Option<Value> {
    let rv = object.raw.lookup("/metadata/resourceVersion").and_then(Value::as_str)?;
    Some(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}))
}

fn annotation_op(names: &BTreeSet<String>) -> Value {
    let path = PointerBuf::from_tokens(["metadata", "annotations", GENERATED_SUBSETS_ANNOTATION]).to_string();
    let value = names.iter().cloned().collect::<Vec<_>>().join(",");
    json!({"op": "add", "path": path, "value": value})
}

/// The JSON Patch that appends to an opted-in DestinationRule the subsets
/// the generated version of it has and the live one lacks.
fn append_subsets(actual: &Entry, desired: &Object) -> Option<Action> {
    let live = &actual.object();
    let present: BTreeSet<&str> = raw_subsets(&live.raw).into_iter().filter_map(raw_subset_name).collect();
    let missing: Vec<&Value> = raw_subsets(&desired.raw)
        .into_iter()
        .filter(|s| raw_subset_name(s).is_some_and(|n| !present.contains(n)))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut ops = vec![test_version(live)?];
    match live.raw.get("spec") {
        Some(Value::Object(spec)) if spec.get("subsets").is_some_and(Value::is_array) => {
            ops.extend(missing.iter().map(|s| json!({"op": "add", "path": "/spec/subsets/-", "value": s})));
        }
        Some(Value::Object(_)) => ops.push(json!({"op": "add", "path": "/spec/subsets", "value": missing})),
        _ => ops.push(json!({"op": "add", "path": "/spec", "value": {"subsets": missing}})),
    }
    let added: Vec<String> = missing.iter().filter_map(|s| raw_subset_name(s)).map(str::to_string).collect();
    let mut names = recorded(live);
    names.extend(added.iter().cloned());
    ops.push(annotation_op(&names));
    Some(Action::PatchSubsets { key: live.key.clone(), patch: Value::Array(ops), added, removed: Vec::new() })
}

/// Removes from an opted-in DestinationRule the subsets routeguard added that
/// no Deployment backs and no route uses.
fn prune_appended(input: Inputs<'_>, entry: &Entry) -> Option<Action> {
    let object = &entry.object();
    let names = recorded(object);
    if names.is_empty() {
        return None;
    }
    let host = hosts::rule_host(object, input.snapshot.domain())?;
    let backed = match input.snapshot.service(&host) {
        Some(service) => generate::backed_versions(Context { policy: input.policy, snapshot: input.snapshot }, service),
        None => BTreeSet::new(),
    };
    let mut removed: BTreeMap<usize, String> = BTreeMap::new();
    for (i, subset) in raw_subsets(&object.raw).into_iter().enumerate() {
        if let Some(name) = raw_subset_name(subset)
            && names.contains(name)
            && !backed.contains(name)
            && !subset_in_use(input.snapshot, &host, name)
        {
            removed.insert(i, name.to_string());
        }
    }
    if removed.is_empty() {
        return None;
    }
    let mut ops = vec![test_version(object)?];
    // From the end, so the indexes stay right.
    ops.extend(removed.keys().rev().map(|i| json!({"op": "remove", "path": format!("/spec/subsets/{i}")})));
    let left: BTreeSet<String> = names.into_iter().filter(|n| !removed.values().any(|r| r == n)).collect();
    ops.push(annotation_op(&left));
    Some(Action::PatchSubsets {
        key: object.key.clone(),
        patch: Value::Array(ops),
        added: Vec::new(),
        removed: removed.into_values().collect(),
    })
}

#[path = "reconcile/scope.rs"]
mod scope;
pub use scope::affected_services;

#[cfg(test)]
#[path = "reconcile/tests.rs"]
mod tests;
