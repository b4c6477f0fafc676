use serde_json::json;

use super::*;
use crate::model::Object;
use crate::policy::testing::{deployment, destination_rule, object, service, snapshot, virtual_service};

/// Eight apps in four namespaces, each with a Service, Deployments v1 and v2,
/// a DestinationRule and a VirtualService; app 3's route names a subset
/// nobody defines, so the audit finds something from the start; and an
/// HTTPRoute whose parent is app 2's Service, routing to app 6.
fn apps() -> Snapshot {
    let mut objects = Vec::new();
    for i in 0..8 {
        let (ns, app) = (format!("ns-{}", i % 4), format!("app-{i}"));
        objects.push(service(&ns, &app, &app));
        objects.push(deployment(&ns, &format!("{app}-v1"), &app, "v1"));
        objects.push(deployment(&ns, &format!("{app}-v2"), &app, "v2"));
        objects.push(destination_rule(&ns, &app, &app, &["v1", "v2"]));
        let split: &[(&str, i64)] = if i == 3 { &[("v1", 90), ("v9", 10)] } else { &[("v1", 90), ("v2", 10)] };
        objects.push(virtual_service(&ns, &app, &app, split));
    }
    // Mesh routing with the Gateway API: the parent is a Service.
    objects.push(object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "split", "namespace": "ns-2"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "app-2"}],
                 "rules": [{"backendRefs": [{"name": "app-6", "port": 9080}]}]}})));
    snapshot(objects)
}

/// `before` with `change` applied as the live index applies it (the change logged).
fn changed(before: &Snapshot, change: impl FnOnce(&mut Snapshot) -> ObjectKey) -> Snapshot {
    let mut after = before.clone();
    let key = change(&mut after);
    after.note_change(key);
    after
}

fn upsert(object: Object) -> impl FnOnce(&mut Snapshot) -> ObjectKey {
    move |s| {
        let key = object.key.clone();
        s.upsert(object);
        key
    }
}

fn remove(kind: Kind, namespace: &str, name: &str) -> impl FnOnce(&mut Snapshot) -> ObjectKey {
    let key = ObjectKey { kind, namespace: namespace.to_string(), name: name.to_string() };
    move |s| {
        s.remove(&key);
        key
    }
}

/// Judges `after` both ways; returns the scoped pass (after checking it found what the whole one did).
fn both(engine: &Engine, before: &Snapshot, after: &Snapshot) -> Audited {
    let previous = engine.audit_all(before);
    let scoped = engine.audit_since(before, previous, after);
    assert_eq!(scoped.findings(), engine.audit_all(after).findings(), "the scoped pass finds what a whole one does");
    scoped
}

#[test]
fn a_scoped_pass_finds_what_a_whole_one_does() {
    let engine = Engine::default();
    let before = apps();
    assert!(!engine.audit(&before).is_empty(), "app-3's missing subset is found from the start");
    let changes: Vec<(&str, Snapshot)> = vec![
        ("a new version of one app", changed(&before, upsert(deployment("ns-1", "app-1-v3", "app-1", "v3")))),
        (
            "a Deployment moved to another Service",
            changed(&before, upsert(deployment("ns-1", "app-1-v2", "app-5", "v2"))),
        ),
        ("the Deployment behind a subset gone", changed(&before, remove(Kind::Deployment, "ns-2", "app-2-v2"))),
        (
            "a subset a route uses removed",
            changed(&before, upsert(destination_rule("ns-1", "app-1", "app-1", &["v1"]))),
        ),
        (
            "the missing subset defined",
            changed(&before, upsert(destination_rule("ns-3", "app-3", "app-3", &["v1", "v9"]))),
        ),
        ("a routed Service deleted", changed(&before, remove(Kind::Service, "ns-0", "app-4"))),
        (
            "the Service an HTTPRoute's parentRef names deleted",
            changed(&before, remove(Kind::Service, "ns-2", "app-2")),
        ),
        ("a Service named like a missing parent", {
            let without = changed(&before, remove(Kind::Service, "ns-2", "app-2"));
            changed(&without, upsert(service("ns-2", "app-22", "app-22")))
        }),
        ("a DestinationRule deleted", changed(&before, remove(Kind::DestinationRule, "ns-0", "app-0"))),
        (
            "a second VirtualService for a host",
            changed(&before, upsert(virtual_service("ns-1", "app-5-b", "app-5", &[("v1", 100)]))),
        ),
        ("a route to another namespace's host", {
            let vs = virtual_service("ns-2", "cross", "app-1.ns-1.svc.cluster.local", &[("v9", 100)]);
            changed(&before, upsert(vs))
        }),
        ("a VirtualService deleted", changed(&before, remove(Kind::VirtualService, "ns-3", "app-3"))),
        ("a ServiceEntry for a routed host", {
            let se = object(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                "metadata": {"name": "ext", "namespace": "ns-0"},
                "spec": {"hosts": ["app-0.ns-0.svc.cluster.local"], "resolution": "DNS", "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}}));
            changed(&before, upsert(se))
        }),
        ("a Namespace's enforcement label (a whole pass)", {
            let ns = object(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "ns-3", "labels": {"routeguard.io/enforcement": "warn"}}}));
            changed(&before, upsert(ns))
        }),
    ];
    for (what, after) in &changes {
        let scoped = std::panic::catch_unwind(|| both(&engine, &before, after));
        assert!(scoped.is_ok(), "{what}");
    }
}

#[test]
fn a_change_to_one_app_judges_that_app_only() {
    let engine = Engine::default();
    let before = apps();
    let after = changed(&before, upsert(deployment("ns-1", "app-1-v3", "app-1", "v3")));
    let scoped = both(&engine, &before, &after);
    assert!(!scoped.whole());
    // The Service selecting it (app-1): its VirtualService and DestinationRule.
    assert_eq!(scoped.judged(), 2, "of {} routing objects", engine.audit_all(&after).judged());
}

#[test]
fn an_unscoped_change_or_a_lost_log_judges_everything() {
    let engine = Engine::default();
    let before = apps();
    let all = engine.audit_all(&before).judged();
    let ns = object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns-0"}}));
    let after = changed(&before, upsert(ns));
    let scoped = both(&engine, &before, &after);
    assert!(scoped.whole());
    assert_eq!(scoped.judged(), all);
    // A Gateway created and deleted again between two passes: in neither
    // snapshot, but routes bound to it may have been judged meanwhile.
    let gateway = object(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": "ns-0"}, "spec": {"servers": []}}));
    let key = gateway.key.clone();
    let created = changed(&before, upsert(gateway));
    let gone = changed(&created, move |s| {
        s.remove(&key);
        key
    });
    assert!(both(&engine, &before, &gone).whole());
    // A previous pass of another history: its revision is not `before`'s.
    let stale = engine.audit_all(&after);
    let again = engine.audit_since(&before, stale, &after);
    assert!(again.whole());
}
