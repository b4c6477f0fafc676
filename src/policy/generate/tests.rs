use super::*;
use crate::model::marks::{CANARY_ANNOTATION, MANAGE_SUBSETS_ANNOTATION, is_managed};
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
    assert_eq!(names(&out), vec!["DestinationRule shop/reviews", "Service shop/reviews-v1", "Service shop/reviews-v2"]);
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

    let objects = vec![service(&long, json!({"app": "x"})), deployment("x", json!({"app": "x", "version": "v1-2-3"}))];
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

/// An ownerReference to a Kruise Rollout named reviews; `controller` as given (absent for `None`).
fn rollout_owner(controller: Option<bool>) -> Value {
    let mut owner = json!({"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout", "name": "reviews",
                           "uid": "0f6c2a4e-1d5b-4c1e-9a57-3f1b2c7d8e90", "blockOwnerDeletion": true});
    if let Some(controller) = controller {
        owner["controller"] = json!(controller);
    }
    owner
}

fn owned(mut service: Object, owners: Value) -> Object {
    service.raw["metadata"]["ownerReferences"] = owners;
    service
}

/// What the plain reviews Service alone generates.
const REVIEWS_OUT: [&str; 3] = ["DestinationRule shop/reviews", "Service shop/reviews-v1", "Service shop/reviews-v2"];

#[test]
fn a_kruise_canary_service_generates_nothing_for_itself() {
    let mut objects = reviews();
    // A pod template carrying the hash (copied from a ReplicaSet) would give the
    // canary Service a version of its own: reviews-canary-v2 and a DestinationRule.
    objects.push(deployment("reviews-5f7d", json!({"app": "reviews", "version": "v2", "pod-template-hash": "5f7d"})));
    let canary = service("reviews-canary", json!({"app": "reviews", "pod-template-hash": "5f7d"}));
    let mut with_canary = objects.clone();
    with_canary.push(owned(canary.clone(), json!([rollout_owner(Some(true))])));
    let out = run(with_canary);
    assert_eq!(names(&out), REVIEWS_OUT);
    let dr = find(&out, Kind::DestinationRule, "reviews").expect("rule");
    assert_eq!(
        dr.raw["spec"]["subsets"],
        json!([{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}])
    );

    // Each sign is enough on its own: the hash in the selector without an owner...
    let mut hash_only = objects.clone();
    hash_only.push(canary);
    assert_eq!(names(&run(hash_only)), REVIEWS_OUT);
    // ...or a controller owner of any kind, whatever the selector.
    let other_owner =
        json!([{"apiVersion": "example.com/v1", "kind": "Split", "name": "s", "uid": "u", "controller": true}]);
    let mut owner_only = objects;
    owner_only.push(owned(service("reviews-canary", json!({"app": "reviews"})), other_owner));
    assert_eq!(names(&run(owner_only)), REVIEWS_OUT);
}

#[test]
fn argo_rollouts_services_generate_nothing_for_themselves() {
    let mut objects = reviews();
    objects.push(deployment(
        "reviews-6b9c",
        json!({"app": "reviews", "version": "v1", "rollouts-pod-template-hash": "6b9c"}),
    ));
    objects.push(deployment(
        "reviews-7c4d",
        json!({"app": "reviews", "version": "v2", "rollouts-pod-template-hash": "7c4d"}),
    ));
    // Argo Rollouts does not own the Services it rewrites: the hash alone tells.
    objects.push(service("reviews-stable", json!({"app": "reviews", "rollouts-pod-template-hash": "6b9c"})));
    objects.push(service("reviews-canary", json!({"app": "reviews", "rollouts-pod-template-hash": "7c4d"})));
    let out = run(objects);
    assert_eq!(names(&out), REVIEWS_OUT);
    let svc = find(&out, Kind::Service, "reviews-v2").expect("service");
    assert_eq!(svc.raw["spec"]["selector"], json!({"app": "reviews", "version": "v2"}));
}

#[test]
fn an_owner_that_is_not_the_controller_does_not_block_generation() {
    for owners in [json!([rollout_owner(Some(false))]), json!([rollout_owner(None)]), json!("not a list"), json!([7])] {
        let mut objects = reviews();
        objects.push(owned(service("reviews-all", json!({"app": "reviews"})), owners.clone()));
        let out = run(objects);
        assert_eq!(
            names(&out),
            vec![
                "DestinationRule shop/reviews",
                "DestinationRule shop/reviews-all",
                "Service shop/reviews-all-v1",
                "Service shop/reviews-all-v2",
                "Service shop/reviews-v1",
                "Service shop/reviews-v2",
            ],
            "{owners}"
        );
    }
}
