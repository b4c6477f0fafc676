use super::*;
use crate::policy::testing::*;
use serde_json::{Value, json};

fn dr(namespace: &str, name: &str, host: &str, subsets: &[&str], export_to: &[&str]) -> Object {
    let subsets: Vec<_> = subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect();
    object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"host": host, "subsets": subsets, "exportTo": export_to}
    }))
}

fn resolved(snap: &Snapshot, from: &str, host: &str) -> Option<(String, Vec<String>)> {
    snap.destination_rules(from, host, None)
        .map(|r| (r.namespace.to_string(), r.subsets().map(|s| s.name.clone()).collect()))
}

const REVIEWS: &str = "reviews.bookinfo.svc.cluster.local";

#[test]
fn the_route_namespace_wins_then_the_host_namespace_then_the_root() {
    let objects = vec![
        service("bookinfo", "reviews", "reviews"),
        dr("bookinfo", "reviews", "reviews", &["v1", "v2"], &[]),
        dr("istio-system", "mesh", REVIEWS, &["root"], &[]),
        dr("client", "local", REVIEWS, &["mine"], &["."]),
    ];
    let snap = snapshot(objects);
    assert_eq!(resolved(&snap, "client", REVIEWS), Some(("client".into(), vec!["mine".into()])));
    assert_eq!(resolved(&snap, "other", REVIEWS), Some(("bookinfo".into(), vec!["v1".into(), "v2".into()])));
    assert_eq!(resolved(&snap, "bookinfo", REVIEWS), Some(("bookinfo".into(), vec!["v1".into(), "v2".into()])));
}

#[test]
fn export_to_limits_who_sees_a_rule_but_never_its_own_namespace() {
    let objects = vec![
        dr("bookinfo", "reviews", "reviews", &["v1"], &["."]),
        dr("istio-system", "mesh", REVIEWS, &["root"], &[]),
    ];
    let snap = snapshot(objects);
    assert_eq!(resolved(&snap, "bookinfo", REVIEWS).map(|r| r.1), Some(vec!["v1".to_string()]));
    assert_eq!(resolved(&snap, "other", REVIEWS).map(|r| r.1), Some(vec!["root".to_string()]));
    let snap = snapshot(vec![dr("bookinfo", "reviews", "reviews", &["v1"], &["frontend"])]);
    assert!(resolved(&snap, "frontend", REVIEWS).is_some());
    assert!(resolved(&snap, "other", REVIEWS).is_none());
}

#[test]
fn rules_for_one_host_merge_and_exact_beats_wildcard() {
    let objects = vec![
        dr("shop", "a", "api.example.com", &["v1"], &[]),
        dr("shop", "b", "api.example.com", &["v2"], &[]),
        dr("shop", "wide", "*.example.com", &["w"], &[]),
        dr("shop", "narrow", "*.eu.example.com", &["n"], &[]),
    ];
    let snap = snapshot(objects);
    assert_eq!(resolved(&snap, "shop", "api.example.com").map(|r| r.1), Some(vec!["v1".into(), "v2".into()]));
    assert_eq!(resolved(&snap, "shop", "x.eu.example.com").map(|r| r.1), Some(vec!["n".into()]));
    assert_eq!(resolved(&snap, "shop", "x.example.com").map(|r| r.1), Some(vec!["w".into()]));
    assert_eq!(resolved(&snap, "shop", "example.org"), None);
}

#[test]
fn a_pending_change_replaces_or_removes_one_rule() {
    let old = dr("bookinfo", "reviews", "reviews", &["v1", "v2"], &[]);
    let snap = snapshot(vec![old.clone()]);
    let new_spec: DestinationRuleSpec = dr("bookinfo", "reviews", "reviews", &["v1"], &[]).spec().expect("spec");
    let change = RuleChange { key: &old.key, replacement: Some(&new_spec) };
    let after = snap.destination_rules("bookinfo", REVIEWS, Some(change)).expect("still there");
    assert_eq!(after.subsets().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["v1"]);
    let gone = RuleChange { key: &old.key, replacement: None };
    assert!(snap.destination_rules("bookinfo", REVIEWS, Some(gone)).is_none());
}

#[test]
fn upsert_and_remove_keep_every_index_consistent() {
    let mut snap = snapshot(bookinfo());
    let host = "reviews.default.svc.cluster.local";
    assert!(snap.host_visible(host, "default"));
    assert_eq!(snap.routes_to(host).count(), 1);
    assert_eq!(snap.rules_for_host(host).len(), 1);
    let selector: Labels = [("app".to_string(), "reviews".to_string())].into();
    assert_eq!(snap.deployments_selected("default", &selector).len(), 3);
    // Re-labelling a Deployment moves it in the template index.
    snap.upsert(deployment("default", "reviews-v3", "other", "v3"));
    assert_eq!(snap.deployments_selected("default", &selector).len(), 2);
    for object in bookinfo() {
        snap.remove(&object.key);
    }
    assert!(snap.is_empty());
    assert!(!snap.host_visible(host, "default"));
    assert!(snap.rules_for_host(host).is_empty());
    assert_eq!(snap.routes_to(host).count(), 0);
    assert!(snap.deployments_selected("default", &selector).is_empty());
    assert!(snap.destination_rules("default", host, None).is_none());
    assert!(snap.services.is_empty() && snap.routes.is_empty() && snap.templates.is_empty() && snap.rules.is_empty());
    assert!(snap.all_rules.exact.is_empty() && snap.all_rules.wildcard.is_empty());
}

#[test]
fn an_empty_selector_selects_no_deployment() {
    let snap = snapshot(bookinfo());
    assert!(snap.deployments_selected("default", &Labels::new()).is_empty());
}

#[test]
fn service_entries_declare_hosts_and_their_namespace_for_lookups() {
    let se = object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "ext", "namespace": "egress"},
        "spec": {"hosts": ["api.example.com", "*.cdn.example.com"]}
    }));
    let snap = snapshot(vec![se, dr("egress", "ext", "api.example.com", &["v1"], &[])]);
    assert!(snap.host_visible("api.example.com", "shop"));
    assert!(snap.host_visible("img.cdn.example.com", "shop"));
    assert!(!snap.host_visible("other.example.com", "shop"));
    // The ServiceEntry's namespace is the host's namespace for DestinationRule lookups.
    assert_eq!(resolved(&snap, "shop", "api.example.com").map(|r| r.0), Some("egress".to_string()));
}

#[test]
fn hosts_are_visible_only_where_their_service_or_service_entry_is_exported() {
    let entry = |name: &str, hosts: Value, export_to: Value| {
        object(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                      "metadata": {"name": name, "namespace": "egress"},
                      "spec": {"hosts": hosts, "exportTo": export_to}}))
    };
    let service = |name: &str, export: Option<&str>| {
        let mut raw =
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "backend"}});
        if let Some(export) = export {
            raw["metadata"]["annotations"] = json!({"networking.istio.io/exportTo": export});
        }
        object(raw)
    };
    let snap = snapshot(vec![
        entry("private", json!(["api.example.com"]), json!(["."])),
        entry("shared", json!(["*.cdn.example.com"]), json!(["shop", "web"])),
        entry("hidden", json!(["db.example.com"]), json!(["~"])),
        // Istio refuses host `*`: it must not make every host look declared.
        entry("everything", json!(["*"]), json!(["*"])),
        service("reviews", Some(". , shop")),
        service("ratings", None),
        service("internal", Some(".")),
    ]);
    assert!(snap.host_visible("api.example.com", "egress"));
    assert!(!snap.host_visible("api.example.com", "shop"));
    assert!(snap.host_visible("img.cdn.example.com", "web"));
    assert!(!snap.host_visible("img.cdn.example.com", "egress"));
    assert!(!snap.host_visible("db.example.com", "egress"));
    assert!(!snap.host_visible("anything.example.com", "egress"));
    assert!(!snap.host_visible("ghost.backend.svc.cluster.local", "backend"));
    let reviews = "reviews.backend.svc.cluster.local";
    assert!(snap.host_visible(reviews, "backend") && snap.host_visible(reviews, "shop"));
    assert!(!snap.host_visible(reviews, "web"));
    assert!(snap.host_visible("ratings.backend.svc.cluster.local", "anywhere"));
    assert!(!snap.host_visible("internal.backend.svc.cluster.local", "shop"));
    let owners: Vec<String> = snap.host_owners(reviews).map(|e| e.exports().join(",")).collect();
    assert_eq!(owners, [".,shop"]);
}

#[test]
fn an_entry_gives_back_its_object_exactly_and_reads_its_markers() {
    let raw = json!({
        "kind": "DestinationRule", "apiVersion": "networking.istio.io/v1",
        "metadata": {"name": "r", "namespace": "shop", "resourceVersion": "7",
                     "labels": {"z": "1", "app.kubernetes.io/managed-by": "routeguard", "routeguard.io/service": "r"},
                     "annotations": {"routeguard.io/manage-subsets": "true", "routeguard.io/canary": "yes"}},
        "spec": {"host": "r", "x-future": [1, 2.5, -3, null, {"b": true, "a": "é\n"}], "subsets": []}
    });
    let snap = snapshot(vec![object(raw.clone())]);
    let entry = snap.entries().next().expect("entry");
    assert_eq!(entry.raw(), raw);
    let order = |v: &Value| v["metadata"]["labels"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
    assert_eq!(order(&entry.raw()), order(&raw), "key order is kept");
    assert_eq!(entry.object().key, *entry.key());
    assert!(entry.is_managed() && entry.has_source_service_label() && entry.manages_subsets());
    assert!(!entry.is_canary(), "only \"true\" marks a canary");
    assert!(entry.destination_rule().is_some());
}

#[test]
fn mesh_bound_virtual_services_are_indexed_by_qualified_host() {
    let vs = |name: &str, spec: serde_json::Value| {
        object(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                      "metadata": {"name": name, "namespace": "shop"}, "spec": spec}))
    };
    let mut snap = snapshot(vec![
        vs("short", json!({"hosts": ["reviews"]})),
        vs("full", json!({"hosts": ["reviews.shop.svc.cluster.local"], "gateways": ["mesh", "public"]})),
        vs("edge", json!({"hosts": ["reviews"], "gateways": ["public"]})),
        vs("delegate", json!({"http": [{"route": [{"destination": {"host": "reviews"}}]}]})),
    ]);
    let names = |snap: &Snapshot| -> Vec<String> {
        snap.virtual_services_binding("reviews.shop.svc.cluster.local").map(|e| e.name().to_string()).collect()
    };
    assert_eq!(names(&snap), ["full", "short"]);
    snap.remove(&ObjectKey { kind: Kind::VirtualService, namespace: "shop".into(), name: "short".into() });
    assert_eq!(names(&snap), ["full"]);
    snap.upsert(vs("full", json!({"hosts": ["ratings"]})));
    assert!(names(&snap).is_empty());
}

#[test]
fn a_copy_and_its_original_change_apart() {
    // The live index publishes copies and the re-read lays reads over one: a
    // change to either side must never show in the other.
    let original = snapshot(vec![dr("shop", "reviews", "reviews", &["v1"], &[])]);
    let mut copy = original.clone();
    copy.upsert(dr("shop", "reviews", "reviews", &["v1", "v2"], &[]));
    copy.upsert(dr("shop", "ratings", "ratings", &["v1"], &[]));
    let subsets = |snap: &Snapshot, host: &'static str| -> Vec<String> {
        snap.destination_rules("shop", host, None)
            .map(|r| r.subsets().map(|s| s.name.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(subsets(&original, "reviews.shop.svc.cluster.local"), ["v1"]);
    assert!(subsets(&original, "ratings.shop.svc.cluster.local").is_empty());
    assert_eq!(original.len(), 1);
    assert_eq!(subsets(&copy, "reviews.shop.svc.cluster.local"), ["v1", "v2"]);
    assert_eq!(copy.len(), 2);
    let mut original = original;
    original.remove(&ObjectKey { kind: Kind::DestinationRule, namespace: "shop".into(), name: "reviews".into() });
    assert!(original.is_empty());
    assert_eq!(copy.len(), 2, "the copy keeps what the original lost");
}

#[test]
fn namespace_labels_follow_upserts_and_removals() {
    let namespace = |labels: serde_json::Value| {
        Object::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": labels}}),
            "",
        )
        .expect("namespace")
    };
    let mut snap = snapshot(vec![]);
    assert!(snap.namespace_labels("shop").is_none());
    snap.upsert(namespace(json!({"routeguard.io/enforcement": "warn"})));
    assert_eq!(snap.namespace_labels("shop").and_then(|l| l.get("routeguard.io/enforcement")), Some("warn"));
    snap.upsert(namespace(json!({})));
    assert!(snap.namespace_labels("shop").is_some_and(|l| l.is_empty()));
    snap.remove(&ObjectKey { kind: Kind::Namespace, namespace: String::new(), name: "shop".into() });
    assert!(snap.namespace_labels("shop").is_none());
    assert!(snap.is_empty());
}

/// Every slot of every index, with the key and resourceVersion of what it holds.
fn layout(snap: &Snapshot) -> Vec<String> {
    let at = |e: &Entry| format!("{} @{:?}", e.key(), e.version());
    let sets = |name: &str, map: &HashMap<String, Keys>| -> Vec<String> {
        map.iter().flat_map(|(slot, keys)| keys.iter().map(move |k| format!("{name} {slot}: {}", at(&k.0)))).collect()
    };
    let mut all: Vec<String> = snap.entries().map(|e| format!("entry {}", at(e))).collect();
    all.extend(snap.services.iter().map(|(host, e)| format!("service {host}: {}", at(e))));
    all.extend(sets("entry-host", &snap.entry_hosts));
    all.extend(sets("entry-wildcard", &snap.entry_wildcards));
    all.extend(sets("route", &snap.routes));
    all.extend(sets("bound", &snap.bound_hosts));
    all.extend(sets("template", &snap.templates));
    all.extend(sets("all-rules", &snap.all_rules.exact));
    all.extend(sets("all-rules*", &snap.all_rules.wildcard));
    for (ns, rules) in &snap.rules {
        all.extend(sets(&format!("rules {ns}"), &rules.exact));
        all.extend(sets(&format!("rules* {ns}"), &rules.wildcard));
    }
    for ((kind, ns), keys) in &snap.by_namespace {
        all.extend(keys.iter().map(|k| format!("namespace {kind:?} {ns}: {}", at(&k.0))));
    }
    all.sort();
    all
}

#[test]
fn a_refresh_swaps_the_entry_in_every_index_as_an_insert_would() {
    let mut objects = bookinfo();
    objects.push(object(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"hosts": ["api.example.com", "*.example.org"]}})));
    objects.push(dr("default", "wide", "*.example.org", &["v1"], &[]));
    let bumped: Vec<Object> = objects
        .iter()
        .map(|o| {
            let mut o = o.clone();
            o.raw["metadata"]["resourceVersion"] = json!("100");
            o.raw["metadata"]["generation"] = json!(7);
            o
        })
        .collect();
    let mut refreshed = snapshot(objects.clone());
    for object in &bumped {
        let old = refreshed.refresh(Entry::new(object)).expect("it held the object");
        assert_eq!(old.version(), None, "{}", object.key);
    }
    let inserted = snapshot(bumped.clone());
    assert_eq!(layout(&refreshed), layout(&inserted));
    assert!(layout(&refreshed).iter().all(|slot| slot.ends_with("@Some(100)")), "{:#?}", layout(&refreshed));
    // A changed object is not refreshed in place: it moves as an insert moves it.
    let mut moved = bumped[1].clone();
    moved.raw["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
    refreshed.refresh(Entry::new(&moved));
    let mut expected = bumped.clone();
    expected[1] = moved;
    assert_eq!(layout(&refreshed), layout(&snapshot(expected)));
}
