use super::*;
use crate::model::marks::{MANAGE_SUBSETS_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL};
use crate::policy::Engine;

fn object(raw: Value) -> Object {
    Object::from_value(raw, "shop").expect("object")
}

fn service(name: &str, uid: &str) -> Object {
    object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": "1"},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 9080}]}
    }))
}

fn deployment(name: &str, app: &str, version: &str) -> Object {
    object(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "spec": {"template": {"metadata": {"labels": {"app": app, "version": version}}}}
    }))
}

fn route(name: &str, host: &str, subset: Option<&str>) -> Object {
    let mut destination = json!({"host": host});
    if let Some(subset) = subset {
        destination["subset"] = json!(subset);
    }
    object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"hosts": [host], "http": [{"route": [{"destination": destination}]}]}
    }))
}

fn run(objects: Vec<Object>) -> Vec<Action> {
    let engine = Engine::default();
    let snapshot = Snapshot::from_objects(engine.policy(), objects);
    let desired = engine.generate(&snapshot);
    plan(
        Inputs {
            policy: engine.policy(),
            snapshot: &snapshot,
            desired: &desired,
            rule_api_version: "networking.istio.io/v1beta1",
        },
        None,
    )
}

/// The objects as the API server would store them after the actions.
fn applied(actions: &[Action]) -> Vec<Object> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply { body, .. } => {
                let mut raw = body.clone();
                raw["metadata"]["resourceVersion"] = json!("9");
                raw["metadata"]["uid"] = json!("generated");
                Some(object(raw))
            }
            _ => None,
        })
        .collect()
}

fn reviews() -> Vec<Object> {
    vec![
        service("reviews", "uid-svc"),
        deployment("reviews-v1", "reviews", "v1"),
        deployment("reviews-v2", "reviews", "v2"),
    ]
}

#[test]
fn applies_generated_objects_with_owners_and_hash() {
    let actions = run(reviews());
    let keys: Vec<String> = actions.iter().map(|a| a.key().to_string()).collect();
    assert_eq!(keys, vec!["DestinationRule shop/reviews", "Service shop/reviews-v1", "Service shop/reviews-v2"]);
    let Action::Apply { body, create, .. } = &actions[0] else { panic!("apply") };
    assert!(create);
    assert_eq!(body["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Service", "name": "reviews", "uid": "uid-svc"}])
    );
    assert_eq!(body["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(body["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].as_str().map(str::len), Some(16));
    let Action::Apply { body, .. } = &actions[1] else { panic!("apply") };
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "reviews-v1", "uid": "uid-reviews-v1"}])
    );
}

#[test]
fn is_idempotent_once_applied() {
    let mut objects = reviews();
    let first = run(objects.clone());
    objects.extend(applied(&first));
    assert_eq!(run(objects.clone()), vec![], "nothing left to do");

    // The API server adds defaults: still nothing to do.
    let at = objects.iter().position(|o| o.name() == "reviews-v1" && o.kind() == Kind::Service).expect("svc");
    objects[at].raw["spec"]["ports"][0]["protocol"] = json!("TCP");
    objects[at].raw["spec"]["clusterIP"] = json!("10.0.0.9");
    assert_eq!(run(objects.clone()), vec![]);

    // Someone edits a field routeguard owns: applied again.
    objects[at].raw["spec"]["selector"]["version"] = json!("v9");
    let again = run(objects);
    assert!(matches!(&again[..], [Action::Apply { key, create: false, .. }] if key.name == "reviews-v1"), "{again:?}");
}

#[test]
fn prunes_what_no_deployment_backs_unless_routed() {
    let mut objects = reviews();
    let first = run(objects.clone());
    objects.extend(applied(&first));
    // reviews-v2 goes away.
    objects.retain(|o| !(o.kind() == Kind::Deployment && o.name() == "reviews-v2"));
    let actions = run(objects.clone());
    let deletes: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { key, uid, resource_version } => {
                assert_eq!(uid.as_deref(), Some("generated"));
                assert_eq!(resource_version.as_deref(), Some("9"));
                Some(key.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(deletes, vec!["Service shop/reviews-v2"]);
    let Some(Action::Apply { body, .. }) = actions.iter().find(|a| a.key().kind == Kind::DestinationRule) else {
        panic!("the rule loses v2: {actions:?}")
    };
    assert_eq!(body["spec"]["subsets"].as_array().map(Vec::len), Some(1));

    // A route still uses subset v2 and the Service reviews-v2: both stay.
    objects.push(route("to-v2", "reviews", Some("v2")));
    objects.push(route("direct", "reviews-v2", None));
    let actions = run(objects);
    assert!(actions.iter().all(|a| !matches!(a, Action::Delete { .. })), "{actions:?}");
    let rule = actions.iter().find(|a| a.key().kind == Kind::DestinationRule);
    assert!(rule.is_none(), "v2 is kept, so the rule is unchanged: {rule:?}");
}

#[test]
fn deletes_a_rule_whose_service_is_gone_unless_routed() {
    let mut objects = reviews();
    let first = run(objects.clone());
    objects.extend(applied(&first));
    objects.retain(|o| !(o.kind() == Kind::Service && o.name() == "reviews"));
    let actions = run(objects.clone());
    let deleted: Vec<String> =
        actions.iter().filter(|a| matches!(a, Action::Delete { .. })).map(|a| a.key().to_string()).collect();
    assert_eq!(deleted, vec!["DestinationRule shop/reviews", "Service shop/reviews-v1", "Service shop/reviews-v2"]);

    objects.push(route("to-v1", "reviews", Some("v1")));
    let actions = run(objects);
    let Some(Action::Apply { body, create: false, .. }) =
        actions.iter().find(|a| a.key().kind == Kind::DestinationRule)
    else {
        panic!("trimmed to v1: {actions:?}")
    };
    assert_eq!(body["spec"]["subsets"], json!([{"name": "v1", "labels": {"version": "v1"}}]));
}

#[test]
fn never_touches_unlabelled_objects() {
    let mut objects = reviews();
    // Labelled managed-by but without routeguard.io/service: not ours to delete.
    let mut stray = service("stray", "u");
    stray.raw["metadata"]["labels"] = json!({MANAGED_BY_LABEL: MANAGED_BY});
    objects.push(stray);
    objects.push(object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "other", "namespace": "shop", "resourceVersion": "3"},
        "spec": {"host": "ratings"}
    })));
    let actions = run(objects);
    assert!(actions.iter().all(|a| a.key().name != "stray" && a.key().name != "other"), "{actions:?}");
}

#[test]
fn appends_and_prunes_subsets_of_an_opted_in_rule() {
    let mut objects = reviews();
    objects.push(object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "mine", "namespace": "shop", "resourceVersion": "7",
                     "annotations": {MANAGE_SUBSETS_ANNOTATION: "true"}},
        "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
    })));
    let actions = run(objects.clone());
    let Some(Action::PatchSubsets { patch, added, .. }) = actions.iter().find(|a| a.key().name == "mine") else {
        panic!("{actions:?}")
    };
    assert_eq!(added, &vec!["v2".to_string()]);
    assert_eq!(
        patch,
        &json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "add", "path": "/spec/subsets/-", "value": {"name": "v2", "labels": {"version": "v2"}}},
            {"op": "add", "path": "/metadata/annotations/routeguard.io~1generated-subsets", "value": "v2"}
        ])
    );
    assert!(actions.iter().all(|a| a.key().name != "reviews" || a.key().kind != Kind::DestinationRule));

    // After the patch, v2's Deployment goes: the added subset is removed, the user's v1 stays.
    let last = objects.len() - 1;
    let mut patched = objects[last].raw.clone();
    json_patch::patch(&mut patched, &serde_json::from_value::<json_patch::Patch>(patch.clone()).expect("patch"))
        .expect("applies");
    patched["metadata"]["resourceVersion"] = json!("8");
    objects[last] = object(patched);
    objects.retain(|o| o.name() != "reviews-v2" && o.name() != "reviews-v1");
    let actions = run(objects);
    let Some(Action::PatchSubsets { patch, removed, .. }) = actions.iter().find(|a| a.key().name == "mine") else {
        panic!("{actions:?}")
    };
    assert_eq!(removed, &vec!["v2".to_string()]);
    assert_eq!(
        patch,
        &json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "8"},
            {"op": "remove", "path": "/spec/subsets/1"},
            {"op": "add", "path": "/metadata/annotations/routeguard.io~1generated-subsets", "value": ""}
        ])
    );
}

#[test]
fn covers_ignores_defaults_but_not_changes() {
    assert!(covers(&json!({"a": [{"b": 1}]}), &json!({"a": [{"b": 1.0, "c": 2}], "d": 3})));
    assert!(!covers(&json!({"a": [{"b": 1}]}), &json!({"a": [{"b": 1}, {"b": 2}]})));
    assert!(!covers(&json!({"a": "x"}), &json!({})));
}

/// The objects after carrying out `actions` on `objects` (applies, subset patches, deletions).
fn carry_out(mut objects: Vec<Object>, actions: &[Action]) -> Vec<Object> {
    for action in actions {
        let key = action.key().clone();
        match action {
            Action::Apply { .. } => {
                objects.retain(|o| o.key != key);
                objects.extend(applied(std::slice::from_ref(action)));
            }
            Action::PatchSubsets { patch, .. } => {
                let patch: json_patch::Patch = serde_json::from_value(patch.clone()).expect("patch");
                let target = objects.iter_mut().find(|o| o.key == key).expect("patched object");
                json_patch::patch(&mut target.raw, &patch).expect("applies");
            }
            Action::Delete { .. } => objects.retain(|o| o.key != key),
        }
    }
    objects
}

/// `objects` reconciled until nothing is left to do.
fn converged(mut objects: Vec<Object>) -> Vec<Object> {
    for _ in 0..5 {
        let actions = run(objects.clone());
        if actions.is_empty() {
            return objects;
        }
        objects = carry_out(objects, &actions);
    }
    panic!("no fixpoint: {:?}", run(objects));
}

/// The plan for the Services the changes from `before` to `after` touch, and the full plan.
fn scoped_and_full(before: Vec<Object>, change: impl FnOnce(&mut Snapshot)) -> (Vec<Action>, Vec<Action>) {
    let engine = Engine::default();
    let before = Snapshot::from_objects(engine.policy(), before);
    let mut after = before.clone();
    change(&mut after);
    let changed = after.changes_since(before.revision()).expect("the log reaches back");
    let scope = affected_services(&before, &after, changed);
    let inputs = |desired| Inputs {
        policy: engine.policy(),
        snapshot: &after,
        desired,
        rule_api_version: "networking.istio.io/v1beta1",
    };
    let desired = engine.generate_for(&after, scope.iter().filter_map(|k| after.get(k)));
    let scoped = plan(inputs(&desired), Some(&scope));
    let desired = engine.generate(&after);
    let full = plan(inputs(&desired), None);
    (scoped, full)
}

fn upsert(snapshot: &mut Snapshot, object: Object) {
    let _ = crate::cluster::index::apply(snapshot, &crate::cluster::index::Op::upsert(&object));
}

fn delete(snapshot: &mut Snapshot, kind: Kind, name: &str) {
    let key = ObjectKey { kind, namespace: "shop".into(), name: name.into() };
    let _ = crate::cluster::index::apply(snapshot, &crate::cluster::index::Op::Delete(key));
}

/// Two apps (reviews with two versions and an opted-in rule, ratings with one) and routes, reconciled.
fn two_apps() -> Vec<Object> {
    let mut objects = reviews();
    objects.push(service("ratings", "uid-ratings"));
    objects.push(deployment("ratings-v1", "ratings", "v1"));
    objects.push(route("to-reviews", "reviews", Some("v1")));
    objects.push(object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "ratings-mine", "namespace": "shop", "resourceVersion": "7",
                     "annotations": {MANAGE_SUBSETS_ANNOTATION: "true"}},
        "spec": {"host": "ratings", "subsets": []}
    })));
    converged(objects)
}

/// A change to a snapshot, as the live index makes it.
type Change = dyn FnOnce(&mut Snapshot);

#[test]
fn a_scoped_plan_does_what_the_full_one_does() {
    let cases: Vec<(&str, Box<Change>)> = vec![
        ("a new version", Box::new(|s| upsert(s, deployment("reviews-v3", "reviews", "v3")))),
        ("a version gone", Box::new(|s| delete(s, Kind::Deployment, "reviews-v2"))),
        (
            "a version gone but routed",
            Box::new(|s| {
                upsert(s, route("to-v2", "reviews-v2", None));
                delete(s, Kind::Deployment, "reviews-v2");
            }),
        ),
        ("a Service gone", Box::new(|s| delete(s, Kind::Service, "reviews"))),
        ("a Deployment moves to another app", Box::new(|s| upsert(s, deployment("reviews-v2", "ratings", "v2")))),
        ("an opted-in rule for another app", Box::new(|s| upsert(s, deployment("ratings-v2", "ratings", "v2")))),
        ("a generated object edited by hand", Box::new(|s| delete(s, Kind::Service, "reviews-v1"))),
        ("a route to nothing routeguard makes", Box::new(|s| upsert(s, route("elsewhere", "other", None)))),
    ];
    for (case, change) in cases {
        let (scoped, full) = scoped_and_full(two_apps(), change);
        assert_eq!(format!("{scoped:?}"), format!("{full:?}"), "{case}");
    }
}

#[test]
fn a_change_touches_only_the_services_it_names() {
    let engine = Engine::default();
    let before = Snapshot::from_objects(engine.policy(), two_apps());
    let names = |change: &dyn Fn(&mut Snapshot)| -> Vec<String> {
        let mut after = before.clone();
        change(&mut after);
        let changed = after.changes_since(before.revision()).expect("log");
        affected_services(&before, &after, changed).into_iter().map(|k| k.name).collect()
    };
    assert_eq!(names(&|s| upsert(s, deployment("ratings-v2", "ratings", "v2"))), ["ratings"]);
    assert_eq!(names(&|s| upsert(s, deployment("reviews-v2", "ratings", "v2"))), ["ratings", "reviews"]);
    assert_eq!(names(&|s| delete(s, Kind::Service, "reviews-v1")), ["reviews"], "a generated object's source");
    assert_eq!(names(&|s| upsert(s, route("r", "reviews-v2", None))), ["reviews"]);
    assert!(names(&|s| upsert(s, route("r", "other", None))).contains(&"other".to_string()));
    // A status update changes nothing the generator reads: nothing noted, nothing touched.
    let mut after = before.clone();
    let mut same = before.get(&deployment("reviews-v1", "reviews", "v1").key).expect("stored").object();
    same.raw["metadata"]["resourceVersion"] = json!("42");
    upsert(&mut after, same);
    assert_eq!(after.changes_since(before.revision()).expect("log").count(), 0);
}

#[test]
fn the_log_forgets_old_changes_and_says_so() {
    let mut snapshot = Snapshot::for_policy(&Policy::default());
    let start = snapshot.revision();
    for i in 0..10_000 {
        snapshot.note_change(ObjectKey { kind: Kind::Service, namespace: "shop".into(), name: format!("s{i}") });
    }
    assert_eq!(snapshot.revision(), start + 10_000);
    assert!(snapshot.changes_since(start).is_none(), "too far behind: start over");
    assert_eq!(snapshot.changes_since(snapshot.revision() - 3).map(Iterator::count), Some(3));
    assert!(snapshot.changes_since(snapshot.revision() + 1).is_none());
}

#[test]
fn settled_actions_are_equal_exactly_when_the_actions_are() {
    let actions = run(reviews());
    let Some(Action::Apply { key, body, .. }) = actions.first().cloned() else { panic!("{actions:?}") };
    let mut changed = body.clone();
    changed["metadata"]["labels"]["extra"] = json!("x");
    let mut variants = actions.clone();
    variants.extend([
        Action::Apply { key: key.clone(), body: changed, create: true },
        Action::Apply { key: key.clone(), body: body.clone(), create: false },
        Action::Apply { key: key.clone(), body, create: true },
        Action::Delete { key: key.clone(), uid: Some("u".into()), resource_version: Some("1".into()) },
        Action::Delete { key: key.clone(), uid: Some("u".into()), resource_version: Some("2".into()) },
        Action::Delete { key: key.clone(), uid: None, resource_version: Some("1".into()) },
    ]);
    let patch = json!([{"op": "add", "path": "/spec/subsets/-", "value": {"name": "v2"}}]);
    for (added, removed) in [(vec!["v2".to_string()], vec![]), (vec![], vec!["v2".to_string()])] {
        variants.push(Action::PatchSubsets { key: key.clone(), patch: patch.clone(), added, removed });
    }
    let mut pairs = 0;
    for a in &variants {
        for b in variants.iter().filter(|b| b.key() == a.key()) {
            // The key is the map's key, not part of what is remembered.
            assert_eq!(a.settled() == b.settled(), a == b, "{a:?} / {b:?}");
            pairs += 1;
        }
    }
    assert!(pairs > variants.len() + 20, "{pairs} pairs");
}
