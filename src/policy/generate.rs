//! Generation: the DestinationRules and per-version Services routeguard wants.
//!
//! For every Service with a non-empty selector that is not already
//! version-specific, the Deployments of its namespace whose pod template
//! labels contain the selector and carry the version label (the policy's
//! `versionLabel`) give its versions. Versions that are not DNS-1123 labels
//! (RG302 warns about them) are left out, since they can be neither a subset
//! name nor part of a Service name.
//!
//! A version-specific Service gets nothing (no DestinationRule, no
//! per-version or canary Service): one whose selector holds the version
//! label, `pod-template-hash` (a Kruise Rollout's `<service>-canary`) or
//! `rollouts-pod-template-hash` (Argo Rollouts' canary and stable Services),
//! or one another controller owns (an ownerReference with `controller: true`).
//! Rollout controllers make such Services for one revision of the pods; the
//! Service they were made from still gets its objects.
//!
//! Every generated object is labelled `app.kubernetes.io/managed-by: routeguard`
//! and `routeguard.io/service: <source Service name>` (in the Service's
//! namespace). The one exception is a user's DestinationRule that opted in
//! with `routeguard.io/manage-subsets: "true"`: it is returned as it is, with
//! the missing subsets appended, and is not labelled (labelling it would make
//! routeguard own, and so rewrite, the whole object). Services that routeguard
//! manages are never a source, so generated Services do not generate more.
//!
//! Nothing a user owns is replaced: an object of the same kind, namespace and
//! name without the managed-by label blocks the generated one. Generated
//! objects whose names collide with different content are all dropped. The
//! output is sorted by kind, namespace and name.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::model::istio::{raw_subset_name, raw_subsets};
use crate::model::marks::{MANAGED_BY, MANAGED_BY_LABEL, SOURCE_SERVICE_LABEL};
use crate::model::{Kind, Labels, Lookup as _, Object, ObjectKey, string_map};

use super::Context;
use super::hosts;
use super::snapshot::Entry;
use super::version::is_dns1123_label;

/// Selector keys by which rollout controllers make a Service select one
/// revision of its pods: Kruise Rollout's canary Service uses the ReplicaSet's
/// `pod-template-hash`, Argo Rollouts its own `rollouts-pod-template-hash`.
const REVISION_HASH_LABELS: [&str; 2] = ["pod-template-hash", "rollouts-pod-template-hash"];

/// The longest Service name (a DNS-1035 label).
const MAX_NAME: usize = 63;
/// Fields of a Service's spec copied as they are to its per-version Services.
const COPIED_SPEC_FIELDS: [&str; 7] = [
    "sessionAffinity",
    "sessionAffinityConfig",
    "publishNotReadyAddresses",
    "ipFamilies",
    "ipFamilyPolicy",
    "internalTrafficPolicy",
    "trafficDistribution",
];

/// True when `s` is a DNS-1035 label (a Service name): a DNS-1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// `<service>-<suffix>`, shortened to 63 characters when longer: cut to 52
/// characters, then `-` and 10 hex digits of the SHA-256 of the full name.
pub fn derived_name(service: &str, suffix: &str) -> String {
    let full = format!("{service}-{suffix}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX_NAME - hex.len() - 1;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = full[..cut].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{prefix}-{hex}")
}

/// The desired generated objects for a snapshot.
pub fn desired(ctx: Context<'_>) -> Vec<Object> {
    desired_for(ctx, ctx.snapshot.of_kind(Kind::Service))
}

/// The objects generated from these Services alone: the cost of the Services
/// and their Deployments, not of the snapshot. Collisions with what other
/// Services generate are not seen (they are dropped by [`desired`] only).
pub fn desired_for<'a>(ctx: Context<'_>, services: impl IntoIterator<Item = &'a Entry>) -> Vec<Object> {
    let key = ctx.policy.version_label.as_str();
    let mut generated: Vec<Object> = Vec::new();
    if key.is_empty() {
        return generated;
    }
    for entry in services {
        let Some((service, selector, found)) = source(ctx, entry) else { continue };
        let service = &service;
        generated.extend(destination_rule(ctx, service, &found.versions));
        for version in &found.versions {
            let name = derived_name(service.name(), version);
            generated.extend(version_service(ctx, service, &selector, &name, version));
        }
        if let Some(version) = &found.canary {
            let name = derived_name(service.name(), "canary");
            generated.extend(version_service(ctx, service, &selector, &name, version));
        }
    }
    dedupe(generated)
}

/// True when a Service is already version-specific, so that it needs no
/// subsets or per-version Services of its own (`selector` is its selector,
/// `version_label` the policy's):
///
/// - its selector holds the version label: a per-version Service, such as the
///   ones routeguard generates;
/// - its selector holds `pod-template-hash` or `rollouts-pod-template-hash`
///   ([`REVISION_HASH_LABELS`]): a rollout controller's Service for one
///   revision (Kruise Rollout's `<service>-canary`, Argo Rollouts' canary and
///   stable Services);
/// - another controller owns it: an entry of `metadata.ownerReferences` has
///   `controller: true`, whatever the owner's kind: such a Service is that
///   controller's view of its pods (a Kruise canary Service is owned by its
///   Rollout), not one users split by version. Services routeguard manages
///   are never a source in the first place ([`crate::model::marks::is_managed`]).
fn is_version_specific(service: &Object, selector: &Labels, version_label: &str) -> bool {
    if selector.contains_key(version_label) || REVISION_HASH_LABELS.iter().any(|k| selector.contains_key(k)) {
        return true;
    }
    let owners = service.raw.lookup("/metadata/ownerReferences").and_then(Value::as_array);
    owners.into_iter().flatten().any(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
}

/// The versions of the Deployments a Service selects.
#[derive(Debug, Default)]
struct Versions {
    /// Every valid version, sorted.
    versions: BTreeSet<String>,
    /// The version of the canary Deployments, when they agree on exactly one.
    canary: Option<String>,
}

/// The versions that back a Service: those its Deployments give (see
/// `versions`), which generation makes subsets and Services for, and the
/// controller keeps. Deployments whose spec cannot be read give none: the API
/// server only stores readable ones, so only a hand-written file has such a
/// Deployment, and `check` reports it (RG100).
pub fn backed_versions(ctx: Context<'_>, service: &Entry) -> BTreeSet<String> {
    source(ctx, service).map(|(_, _, found)| found.versions).unwrap_or_default()
}

/// A Service that generation makes objects for, with its selector and
/// versions: not managed by routeguard, not already version-specific, with a
/// selector and at least one versioned Deployment behind it.
fn source(ctx: Context<'_>, entry: &Entry) -> Option<(Object, Labels, Versions)> {
    let key = ctx.policy.version_label.as_str();
    if entry.is_managed() || key.is_empty() {
        return None;
    }
    let service = entry.object();
    let selector = string_map(service.raw.lookup("/spec/selector"));
    if selector.is_empty() || is_version_specific(&service, &selector, key) {
        return None;
    }
    let found = versions(ctx, service.namespace(), &selector);
    (!found.versions.is_empty()).then_some((service, selector, found))
}

fn versions(ctx: Context<'_>, namespace: &str, selector: &Labels) -> Versions {
    let key = ctx.policy.version_label.as_str();
    let mut found = Versions::default();
    let mut canaries = BTreeSet::new();
    for deployment in ctx.snapshot.deployments_selected(namespace, selector) {
        let Some(labels) = deployment.deployment().map(|d| &d.template.metadata.labels) else { continue };
        let Some(version) = labels.get(key).filter(|v| is_dns1123_label(v)) else { continue };
        found.versions.insert(version.to_string());
        if deployment.is_canary() {
            canaries.insert(version);
        }
    }
    // Two canary versions at once are ambiguous: no canary Service rather than a wrong one.
    if canaries.len() == 1 {
        found.canary = canaries.pop_first().map(str::to_string);
    }
    found
}

/// Metadata of a generated object.
fn metadata(name: &str, service: &Object) -> Value {
    json!({
        "name": name,
        "namespace": service.namespace(),
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, SOURCE_SERVICE_LABEL: service.name()},
    })
}

/// True when the snapshot holds an object of this key that routeguard does not manage.
fn owned_by_user(ctx: Context<'_>, kind: Kind, namespace: &str, name: &str) -> bool {
    let key = ObjectKey { kind, namespace: namespace.to_string(), name: name.to_string() };
    ctx.snapshot.get(&key).is_some_and(|e| !e.is_managed())
}

/// The subset names of a DestinationRule, as written.
fn subset_names(rule: &Value) -> impl Iterator<Item = &str> {
    raw_subsets(rule).into_iter().filter_map(raw_subset_name)
}

fn subset(key: &str, version: &str) -> Value {
    json!({"name": version, "labels": {key: version}})
}

/// The DestinationRule for a Service: a new one named like the Service, or a
/// user's opted-in one with the missing subsets appended; `None` when a user's
/// DestinationRule for the host (exact or wildcard, in the Service's
/// namespace) did not opt in, or when nothing is missing from an opted-in one.
fn destination_rule(ctx: Context<'_>, service: &Object, versions: &BTreeSet<String>) -> Option<Object> {
    let key = ctx.policy.version_label.as_str();
    let namespace = service.namespace();
    let host = hosts::service_host(service.name(), namespace, ctx.snapshot.domain());
    let mut user_rules: Vec<(&Entry, bool)> = Vec::new();
    for rule in ctx.snapshot.in_namespace(Kind::DestinationRule, namespace) {
        if rule.is_managed() {
            continue;
        }
        if let Some(pattern) = rule.rule_host(ctx.snapshot.domain())
            && hosts::covers(&pattern, &host)
        {
            user_rules.push((rule, pattern == host));
        }
    }

    if user_rules.is_empty() {
        if owned_by_user(ctx, Kind::DestinationRule, namespace, service.name()) {
            return None;
        }
        let subsets: Vec<Value> = versions.iter().map(|v| subset(key, v)).collect();
        let raw = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": metadata(service.name(), service),
            "spec": {"host": service.name(), "subsets": subsets},
        });
        return Object::from_value(raw, namespace).ok();
    }

    if !user_rules.iter().all(|(rule, _)| rule.manages_subsets()) {
        return None;
    }
    // Istio merges the subsets of every DestinationRule of the host; subsets
    // are appended to the first exact one by name, never to a wildcard one.
    let raws: Vec<Value> = user_rules.iter().map(|(rule, _)| rule.raw()).collect();
    let defined: BTreeSet<&str> = raws.iter().flat_map(subset_names).collect();
    let missing: Vec<Value> =
        versions.iter().filter(|v| !defined.contains(v.as_str())).map(|v| subset(key, v)).collect();
    let (target, _) = user_rules.iter().find(|(_, exact)| *exact)?;
    if missing.is_empty() {
        return None;
    }
    let mut raw = target.raw();
    let spec = raw.as_object_mut()?.entry("spec").or_insert_with(|| Value::Object(Map::new()));
    if spec.is_null() {
        *spec = Value::Object(Map::new());
    }
    let subsets = spec.as_object_mut()?.entry("subsets").or_insert_with(|| Value::Array(Vec::new()));
    if subsets.is_null() {
        *subsets = Value::Array(Vec::new());
    }
    subsets.as_array_mut()?.extend(missing);
    Object::from_value(raw, namespace).ok()
}

/// A Service named `name` that selects the Service's pods of one version;
/// `None` when the name is not a DNS-1035 label, the Service has no ports, or
/// a user's Service of that name exists.
fn version_service(ctx: Context<'_>, service: &Object, selector: &Labels, name: &str, version: &str) -> Option<Object> {
    if !is_dns1035_label(name) || owned_by_user(ctx, Kind::Service, service.namespace(), name) {
        return None;
    }
    let source = service.raw.get("spec")?.as_object()?;
    let ports: Vec<Value> = source
        .get("ports")?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .map(|port| {
            let mut port = port.clone();
            port.remove("nodePort");
            Value::Object(port)
        })
        .collect();
    if ports.is_empty() {
        return None;
    }
    let service_type = match source.get("type").and_then(Value::as_str) {
        None | Some("ExternalName" | "LoadBalancer") => "ClusterIP",
        Some(other) => other,
    };
    let mut selector = selector.clone();
    selector.insert(ctx.policy.version_label.clone(), version.to_string());

    let mut spec = Map::new();
    spec.insert("type".into(), json!(service_type));
    spec.insert("selector".into(), json!(selector));
    spec.insert("ports".into(), Value::Array(ports));
    // A headless Service stays headless; an allocated address is never copied.
    if service_type == "ClusterIP" && source.get("clusterIP").and_then(Value::as_str) == Some("None") {
        spec.insert("clusterIP".into(), json!("None"));
    }
    for field in COPIED_SPEC_FIELDS {
        if let Some(value) = source.get(field) {
            spec.insert(field.into(), value.clone());
        }
    }
    if service_type == "NodePort"
        && let Some(policy) = source.get("externalTrafficPolicy")
    {
        spec.insert("externalTrafficPolicy".into(), policy.clone());
    }
    let raw = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, service),
        "spec": spec,
    });
    Object::from_value(raw, service.namespace()).ok()
}

/// Sorts by key and drops every object whose key another, different, object shares.
fn dedupe(objects: Vec<Object>) -> Vec<Object> {
    let mut by_key: BTreeMap<ObjectKey, Vec<Object>> = BTreeMap::new();
    for object in objects {
        by_key.entry(object.key.clone()).or_default().push(object);
    }
    by_key
        .into_values()
        .filter_map(|mut same| {
            let first = same.pop()?;
            same.iter().all(|o| o.raw == first.raw).then_some(first)
        })
        .collect()
}

#[cfg(test)]
#[path = "generate/tests.rs"]
mod tests;
