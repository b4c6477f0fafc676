//! Generation: the DestinationRules and per-version Services routeguard wants.
//!
//! For every Service with a non-empty selector that does not already select
//! one version (a selector without the version label), the Deployments of its
//! namespace whose pod template labels contain the selector and carry the
//! version label (the policy's `versionLabel`) give its versions. Versions that
//! are not DNS-1123 labels (RG302 warns about them) are left out, since they
//! can be neither a subset name nor part of a Service name.
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

use crate::model::{Kind, Labels, Object, ObjectKey, string_map};

use super::Context;
use super::hosts;
use super::snapshot::Entry;
use super::version::is_dns1123_label;

/// The label that marks objects routeguard manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on routeguard's objects.
pub const MANAGED_BY: &str = "routeguard";
/// The label naming the Service a generated object was made for.
pub const SOURCE_SERVICE_LABEL: &str = "routeguard.io/service";
/// Annotation (`"true"`) by which a user's DestinationRule lets routeguard append subsets.
pub const MANAGE_SUBSETS_ANNOTATION: &str = "routeguard.io/manage-subsets";
/// Annotation (`"true"`) marking the canary Deployment of a Service.
pub const CANARY_ANNOTATION: &str = "routeguard.io/canary";

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

/// True when routeguard manages the object (`app.kubernetes.io/managed-by: routeguard`).
pub fn is_managed(object: &Object) -> bool {
    object.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

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
    let key = ctx.policy.version_label.as_str();
    let mut generated: Vec<Object> = Vec::new();
    if key.is_empty() {
        return generated;
    }
    for entry in ctx.snapshot.of_kind(Kind::Service) {
        if entry.is_managed() {
            continue;
        }
        let service = &entry.object();
        let selector = string_map(service.raw.pointer("/spec/selector"));
        // A Service that already selects one version needs no subsets of its own.
        if selector.is_empty() || selector.contains_key(key) {
            continue;
        }
        let found = versions(ctx, service, &selector);
        if found.versions.is_empty() {
            continue;
        }
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

/// The versions of the Deployments a Service selects.
#[derive(Debug, Default)]
struct Versions {
    /// Every valid version, sorted.
    versions: BTreeSet<String>,
    /// The version of the canary Deployments, when they agree on exactly one.
    canary: Option<String>,
}

fn versions(ctx: Context<'_>, service: &Object, selector: &Labels) -> Versions {
    let key = ctx.policy.version_label.as_str();
    let mut found = Versions::default();
    let mut canaries = BTreeSet::new();
    for deployment in ctx.snapshot.deployments_selected(service.namespace(), selector) {
        let Some(labels) = deployment.deployment().map(|d| &d.template.metadata.labels) else { continue };
        let Some(version) = labels.get(key).filter(|v| is_dns1123_label(v)) else { continue };
        found.versions.insert(version.clone());
        if deployment.is_canary() {
            canaries.insert(version.clone());
        }
    }
    // Two canary versions at once are ambiguous: no canary Service rather than a wrong one.
    if canaries.len() == 1 {
        found.canary = canaries.pop_first();
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

/// The host a DestinationRule names, qualified in its namespace.
fn rule_host(ctx: Context<'_>, rule: &Entry) -> Option<String> {
    let qualify =
        |host: &str| (!host.is_empty()).then(|| hosts::qualify(host, rule.namespace(), ctx.snapshot.domain()));
    match rule.destination_rule() {
        Some(spec) => qualify(&spec.host),
        None => qualify(rule.raw().pointer("/spec/host").and_then(Value::as_str)?),
    }
}

/// The subset names of a DestinationRule, as written.
fn subset_names(rule: &Value) -> impl Iterator<Item = &str> {
    let subsets = rule.pointer("/spec/subsets").and_then(Value::as_array);
    subsets.into_iter().flatten().filter_map(|s| s.get("name").and_then(Value::as_str))
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
        if let Some(pattern) = rule_host(ctx, rule)
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
mod tests {
    use super::*;
    use crate::policy::{Policy, Snapshot};

    fn object(raw: Value) -> Object {
        Object::from_value(raw, "shop").expect("object")
    }

    fn service(name: &str, selector: Value) -> Object {
        object(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}
        }))
    }

    fn deployment(name: &str, labels: Value) -> Object {
        object(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": []}}}
        }))
    }

    fn rule(name: &str, host: &str, extra: Value) -> Object {
        let mut raw = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"host": host, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
        });
        if let (Some(target), Some(extra)) = (raw.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                target.insert(k.clone(), v.clone());
            }
        }
        object(raw)
    }

    fn reviews() -> Vec<Object> {
        vec![
            service("reviews", json!({"app": "reviews"})),
            deployment("reviews-v2", json!({"app": "reviews", "version": "v2"})),
            deployment("reviews-v1", json!({"app": "reviews", "version": "v1"})),
            deployment("reviews-v1b", json!({"app": "reviews", "version": "v1"})),
            deployment("ratings", json!({"app": "ratings", "version": "v9"})),
        ]
    }

    fn run(objects: Vec<Object>) -> Vec<Object> {
        let policy = Policy::default();
        let snapshot = Snapshot::from_objects(&policy, objects);
        desired(Context { policy: &policy, snapshot: &snapshot })
    }

    fn names(objects: &[Object]) -> Vec<String> {
        objects.iter().map(|o| o.key.to_string()).collect()
    }

    fn find<'a>(objects: &'a [Object], kind: Kind, name: &str) -> Option<&'a Object> {
        objects.iter().find(|o| o.kind() == kind && o.name() == name)
    }

    #[test]
    fn generates_a_rule_and_a_service_per_version() {
        let out = run(reviews());
        assert_eq!(
            names(&out),
            vec!["DestinationRule shop/reviews", "Service shop/reviews-v1", "Service shop/reviews-v2"]
        );
        let dr = &out[0].raw;
        assert_eq!(dr["apiVersion"], "networking.istio.io/v1");
        assert_eq!(dr["spec"]["host"], "reviews");
        assert_eq!(
            dr["spec"]["subsets"],
            json!([{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}])
        );
        assert_eq!(dr["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(dr["metadata"]["labels"][SOURCE_SERVICE_LABEL], "reviews");
        let svc = &out[1].raw;
        assert_eq!(svc["spec"]["selector"], json!({"app": "reviews", "version": "v1"}));
        assert_eq!(svc["spec"]["ports"], json!([{"name": "http", "port": 9080, "targetPort": 9080}]));
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["metadata"]["namespace"], "shop");
        // Deterministic whatever the input order.
        let mut reversed = reviews();
        reversed.reverse();
        assert_eq!(names(&run(reversed)), names(&out));
    }

    #[test]
    fn skips_services_without_selector_or_versions() {
        let out = run(vec![
            service("empty", json!({})),
            service("reviews-v1", json!({"app": "reviews", "version": "v1"})),
            deployment("reviews-v1", json!({"app": "reviews", "version": "v1"})),
            service("unversioned", json!({"app": "u"})),
            deployment("u", json!({"app": "u"})),
            service("bad", json!({"app": "b"})),
            deployment("b", json!({"app": "b", "version": "V1.0"})),
        ]);
        assert!(out.is_empty(), "{:?}", names(&out));
    }

    #[test]
    fn managed_services_are_not_a_source() {
        let mut objects = reviews();
        objects.extend(run(reviews()));
        let out = run(objects);
        assert_eq!(names(&out), names(&run(reviews())));
    }

    #[test]
    fn does_not_replace_a_users_destination_rule() {
        for host in ["reviews", "reviews.shop.svc.cluster.local", "*.shop.svc.cluster.local"] {
            let mut objects = reviews();
            objects.push(rule("mine", host, json!({})));
            let out = run(objects);
            assert!(find(&out, Kind::DestinationRule, "reviews").is_none(), "{host}");
            assert!(find(&out, Kind::DestinationRule, "mine").is_none(), "{host}");
            assert!(find(&out, Kind::Service, "reviews-v2").is_some());
        }
        // A user's DestinationRule in another namespace does not count.
        let mut objects = reviews();
        let mut other = rule("mine", "reviews.shop.svc.cluster.local", json!({}));
        other.key.namespace = "elsewhere".into();
        objects.push(other);
        assert!(find(&run(objects), Kind::DestinationRule, "reviews").is_some());
        // Nor is one of the same name but another host replaced.
        let mut objects = reviews();
        objects.push(rule("reviews", "ratings", json!({})));
        assert!(find(&run(objects), Kind::DestinationRule, "reviews").is_none());
    }

    #[test]
    fn replaces_its_own_destination_rule() {
        let mut objects = reviews();
        objects.push(rule(
            "reviews",
            "reviews",
            json!({"metadata": {"name": "reviews", "labels": {MANAGED_BY_LABEL: MANAGED_BY}}}),
        ));
        let out = run(objects);
        let dr = find(&out, Kind::DestinationRule, "reviews").expect("rule");
        assert_eq!(dr.raw["spec"]["subsets"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn appends_missing_subsets_to_an_opted_in_rule() {
        let mut objects = reviews();
        objects.push(rule(
            "mine",
            "reviews",
            json!({
                "metadata": {"name": "mine", "annotations": {MANAGE_SUBSETS_ANNOTATION: "true"}},
                "spec": {
                    "host": "reviews",
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                    "subsets": [{"name": "v1", "labels": {"version": "one"}}, {"name": "old", "labels": {"version": "old"}}],
                    "x-future": true
                }
            }),
        ));
        let original = objects.last().map(|o| o.raw.clone()).expect("rule");
        let out = run(objects.clone());
        assert!(find(&out, Kind::DestinationRule, "reviews").is_none());
        let dr = find(&out, Kind::DestinationRule, "mine").expect("rule");
        let mut expected = original.clone();
        expected["spec"]["subsets"]
            .as_array_mut()
            .expect("subsets")
            .push(json!({"name": "v2", "labels": {"version": "v2"}}));
        assert_eq!(dr.raw, expected);
        assert!(!is_managed(dr));

        // Nothing missing: nothing to generate.
        let last = objects.len() - 1;
        objects[last] = dr.clone();
        let out = run(objects);
        assert!(find(&out, Kind::DestinationRule, "mine").is_none());
        assert!(find(&out, Kind::DestinationRule, "reviews").is_none());
    }

    #[test]
    fn creates_subsets_in_an_opted_in_rule_without_any() {
        let mut objects = reviews();
        objects.push(object(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "mine", "annotations": {MANAGE_SUBSETS_ANNOTATION: "true"}},
            "spec": {"host": "reviews"}
        })));
        let out = run(objects);
        let dr = find(&out, Kind::DestinationRule, "mine").expect("rule");
        assert_eq!(dr.raw["spec"]["subsets"].as_array().map(Vec::len), Some(2));
        assert_eq!(dr.raw["apiVersion"], "networking.istio.io/v1beta1");
    }

    #[test]
    fn an_opted_in_rule_does_not_override_one_that_did_not_opt_in() {
        let mut objects = reviews();
        objects.push(rule(
            "a",
            "reviews",
            json!({"metadata": {"name": "a", "annotations": {MANAGE_SUBSETS_ANNOTATION: "true"}}}),
        ));
        objects.push(rule("b", "reviews", json!({})));
        let out = run(objects);
        assert!(out.iter().all(|o| o.kind() != Kind::DestinationRule), "{:?}", names(&out));
    }

    #[test]
    fn does_not_replace_a_users_service() {
        let mut objects = reviews();
        objects.push(service("reviews-v1", json!({"app": "something-else"})));
        let out = run(objects.clone());
        assert!(find(&out, Kind::Service, "reviews-v1").is_none());
        assert!(find(&out, Kind::Service, "reviews-v2").is_some());

        let mut objects = reviews();
        let mut managed = service("reviews-v1", json!({"app": "stale"}));
        managed.raw["metadata"]["labels"] = json!({MANAGED_BY_LABEL: MANAGED_BY});
        objects.push(managed);
        let out = run(objects);
        let svc = find(&out, Kind::Service, "reviews-v1").expect("service");
        assert_eq!(svc.raw["spec"]["selector"], json!({"app": "reviews", "version": "v1"}));
    }

    #[test]
    fn per_version_services_drop_allocated_fields() {
        let mut objects = reviews();
        objects[0].raw["spec"] = json!({
            "type": "LoadBalancer",
            "selector": {"app": "reviews"},
            "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"],
            "externalTrafficPolicy": "Local", "loadBalancerIP": "1.2.3.4",
            "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80, "targetPort": 9080, "nodePort": 30080, "appProtocol": "http"}]
        });
        let out = run(objects.clone());
        let svc = find(&out, Kind::Service, "reviews-v1").expect("service");
        assert_eq!(
            svc.raw["spec"],
            json!({
                "type": "ClusterIP",
                "selector": {"app": "reviews", "version": "v1"},
                "ports": [{"name": "http", "port": 80, "targetPort": 9080, "appProtocol": "http"}],
                "sessionAffinity": "ClientIP"
            })
        );

        objects[0].raw["spec"] = json!({"type": "NodePort", "selector": {"app": "reviews"},
            "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]});
        let svc = run(objects.clone()).into_iter().find(|o| o.name() == "reviews-v1").expect("service");
        assert_eq!(svc.raw["spec"]["type"], "NodePort");
        assert_eq!(svc.raw["spec"]["externalTrafficPolicy"], "Local");
        assert_eq!(svc.raw["spec"]["ports"], json!([{"port": 80}]));

        objects[0].raw["spec"] = json!({"clusterIP": "None", "selector": {"app": "reviews"}, "ports": [{"port": 80}]});
        let svc = run(objects.clone()).into_iter().find(|o| o.name() == "reviews-v1").expect("service");
        assert_eq!(svc.raw["spec"]["clusterIP"], "None");

        objects[0].raw["spec"] =
            json!({"type": "ExternalName", "externalName": "x.example.com", "selector": {"app": "reviews"}});
        let out = run(objects);
        assert!(out.iter().all(|o| o.kind() != Kind::Service), "no ports: {:?}", names(&out));
    }

    #[test]
    fn shortens_long_names() {
        let long = format!("s{}", "e".repeat(60));
        let name = derived_name(&long, "v1-2-3");
        assert_eq!(name.len(), 63);
        assert!(is_dns1035_label(&name), "{name}");
        assert_ne!(name, derived_name(&long, "v1-2-4"));
        assert_eq!(derived_name("reviews", "v1"), "reviews-v1");

        let objects =
            vec![service(&long, json!({"app": "x"})), deployment("x", json!({"app": "x", "version": "v1-2-3"}))];
        let out = run(objects);
        assert!(find(&out, Kind::Service, &name).is_some(), "{:?}", names(&out));
    }

    #[test]
    fn generates_a_canary_service() {
        let mut objects = reviews();
        objects[1].raw["metadata"]["annotations"] = json!({CANARY_ANNOTATION: "true"});
        let out = run(objects.clone());
        let canary = find(&out, Kind::Service, "reviews-canary").expect("canary");
        assert_eq!(canary.raw["spec"]["selector"], json!({"app": "reviews", "version": "v2"}));

        // Two canary versions: ambiguous, no canary Service.
        objects[2].raw["metadata"]["annotations"] = json!({CANARY_ANNOTATION: "true"});
        assert!(find(&run(objects.clone()), Kind::Service, "reviews-canary").is_none());

        // A user's reviews-canary Service is never replaced.
        objects[2].raw["metadata"]["annotations"] = json!({});
        objects.push(service("reviews-canary", json!({"app": "mine"})));
        assert!(find(&run(objects), Kind::Service, "reviews-canary").is_none());
    }

    #[test]
    fn colliding_names_are_dropped() {
        // "a-b" + "c" and "a" + "b-c" both make "a-b-c".
        let objects = vec![
            service("a-b", json!({"app": "ab"})),
            deployment("ab", json!({"app": "ab", "version": "c"})),
            service("a", json!({"app": "a"})),
            deployment("a", json!({"app": "a", "version": "b-c"})),
        ];
        let out = run(objects);
        assert!(find(&out, Kind::Service, "a-b-c").is_none(), "{:?}", names(&out));
        assert_eq!(out.iter().filter(|o| o.kind() == Kind::DestinationRule).count(), 2);
    }

    #[test]
    fn uses_the_policy_label() {
        let policy = Policy { version_label: "track".into(), ..Policy::default() };
        let snapshot = Snapshot::from_objects(
            &policy,
            vec![service("r", json!({"app": "r"})), deployment("r", json!({"app": "r", "track": "stable"}))],
        );
        let out = desired(Context { policy: &policy, snapshot: &snapshot });
        let dr = find(&out, Kind::DestinationRule, "r").expect("rule");
        assert_eq!(dr.raw["spec"]["subsets"], json!([{"name": "stable", "labels": {"track": "stable"}}]));
        let svc = find(&out, Kind::Service, "r-stable").expect("service");
        assert_eq!(svc.raw["spec"]["selector"], json!({"app": "r", "track": "stable"}));
    }
}
