use serde_json::{Value, json};

use crate::model::Object;
use crate::policy::{Action, Change, Code, Engine, Finding, Operation, Policy, Severity, Snapshot};

fn object(value: Value) -> Object {
    Object::from_value(value, "default").expect("object")
}

/// A DestinationRule for `host` in `default` with these extra metadata and spec fields.
fn rule(name: &str, host: &str, metadata: Value, spec: Value) -> Object {
    let mut raw = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                         "metadata": {"name": name, "namespace": "default"}, "spec": {"host": host}});
    for (at, extra) in [("metadata", metadata), ("spec", spec)] {
        if let (Some(into), Some(extra)) = (raw[at].as_object_mut(), extra.as_object()) {
            into.extend(extra.clone());
        }
    }
    object(raw)
}

fn subsets(pairs: &[(&str, &str)]) -> Value {
    Value::Array(pairs.iter().map(|(n, v)| json!({"name": n, "labels": {"version": v}})).collect())
}

/// The stable rule `reviews`, created first, with subsets v1, v2 and a trafficPolicy.
fn stable() -> Object {
    rule(
        "reviews",
        "reviews",
        json!({"creationTimestamp": "2024-03-01T10:00:00Z"}),
        json!({"subsets": subsets(&[("v1", "v1"), ("v2", "v2")]),
               "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}}}),
    )
}

fn rg113(policy: Policy, stored: Vec<Object>, operation: Operation, incoming: &Object) -> Vec<Finding> {
    let mut objects = vec![object(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}}))];
    objects.extend(stored);
    let snapshot = Snapshot::from_objects(&Policy::default(), objects);
    let old = (operation == Operation::Update).then_some(incoming);
    let change = Change { operation, object: Some(incoming), old, user: None };
    Engine::new(policy).validate(&snapshot, &change).into_iter().filter(|f| f.code == Code::RG113).collect()
}

#[test]
fn a_subset_redefined_with_other_labels_is_an_error_and_the_oldest_definition_wins() {
    let canary = rule(
        "reviews-canary",
        "reviews.default.svc.cluster.local",
        json!({}),
        json!({"subsets": subsets(&[("v3", "v3"), ("v2", "v3"), ("v1", "v1")])}),
    );
    let found = rg113(Policy::default(), vec![stable()], Operation::Create, &canary);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].severity, Severity::Error);
    assert_eq!(
        found[0].summary(),
        "RG113 spec.subsets[1].name: subset \"v2\" selects {version=v3} here and {version=v2} in destinationrule \
         default/reviews, for the same host reviews.default.svc.cluster.local; istio merges the subsets of \
         destinationrules for one host in one namespace and keeps the one of destinationrule default/reviews, the \
         oldest, so this definition is ignored; expected each subset defined once, or with the same labels"
    );
    // Seen from the older rule (an UPDATE of it), its own definition is the one kept.
    let found = rg113(Policy::default(), vec![canary], Operation::Update, &stable());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].message.contains(
            "keeps this one, the oldest, so the definition of destinationrule default/reviews-canary is ignored"
        ),
        "{found:#?}"
    );
}

#[test]
fn a_second_top_level_traffic_policy_is_a_warning_naming_the_one_that_applies() {
    let tls = json!({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}});
    let newer = rule("aaa-tls", "reviews", json!({}), tls.clone());
    let found = rg113(Policy::default(), vec![stable()], Operation::Create, &newer);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].severity, Severity::Warning);
    assert_eq!(found[0].path.as_str(), "spec.trafficPolicy");
    assert!(
        found[0].message.starts_with(
            "spec.trafficPolicy is ignored: destinationrule default/reviews is older, its trafficPolicy applies; \
             both set a top-level trafficPolicy for the host reviews.default.svc.cluster.local"
        ),
        "{found:#?}"
    );
    // On an UPDATE timestamps decide, before names: an older aaa-tls wins over reviews.
    let older = rule("aaa-tls", "reviews", json!({"creationTimestamp": "2024-01-01T00:00:00Z"}), tls.clone());
    let found = rg113(Policy::default(), vec![stable()], Operation::Update, &older);
    assert!(found[0].message.starts_with("spec.trafficPolicy of destinationrule default/reviews is ignored"));
    // Without timestamps, the first name is the oldest.
    let untimed = rule("reviews", "reviews", json!({}), json!({"trafficPolicy": {"tls": {"mode": "DISABLE"}}}));
    let found = rg113(Policy::default(), vec![untimed], Operation::Update, &older);
    assert!(found[0].message.starts_with("spec.trafficPolicy of destinationrule default/reviews is ignored"));
    // deny keeps the warning a warning, warn makes the subset error a warning too, off drops both.
    let both = rule(
        "reviews-canary",
        "reviews",
        json!({}),
        json!({"subsets": subsets(&[("v2", "v3")]), "trafficPolicy": tls["trafficPolicy"]}),
    );
    let severities = |policy: Policy| -> Vec<Severity> {
        rg113(policy, vec![stable()], Operation::Create, &both).iter().map(|f| f.severity).collect()
    };
    assert_eq!(severities(Policy::default()), [Severity::Error, Severity::Warning]);
    assert_eq!(severities(Policy { duplicate_rules: Action::Warn, ..Policy::default() }), [Severity::Warning; 2]);
    assert!(severities(Policy { duplicate_rules: Action::Off, ..Policy::default() }).is_empty());
}

#[test]
fn rules_that_merge_cleanly_or_do_not_merge_are_allowed() {
    let stored = vec![stable()];
    let allowed = [
        // New subsets only, and the same labels for a subset defined again.
        rule("reviews-canary", "reviews", json!({}), json!({"subsets": subsets(&[("v3", "v3"), ("v2", "v2")])})),
        // The same trafficPolicy.
        rule("copy", "reviews", json!({}), json!({"trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}}})),
        // Another host, a wildcard, a workloadSelector.
        rule("ratings", "ratings", json!({}), json!({"subsets": subsets(&[("v2", "v9")]), "trafficPolicy": {}})),
        rule("all", "*.default.svc.cluster.local", json!({}), json!({"trafficPolicy": {}})),
        rule(
            "some",
            "reviews",
            json!({}),
            json!({"workloadSelector": {"matchLabels": {"app": "web"}}, "trafficPolicy": {}}),
        ),
    ];
    for incoming in &allowed {
        assert!(rg113(Policy::default(), stored.clone(), Operation::Create, incoming).is_empty(), "{}", incoming.key);
    }
    // The object itself, before this UPDATE.
    let changed =
        rule("reviews", "reviews", json!({}), json!({"subsets": subsets(&[("v2", "v3")]), "trafficPolicy": {}}));
    assert!(rg113(Policy::default(), stored, Operation::Update, &changed).is_empty());
    // A rule of another namespace for the same host does not merge with these.
    let mut raw = stable().raw;
    raw["metadata"]["namespace"] = json!("web");
    raw["spec"]["host"] = json!("reviews.default.svc.cluster.local");
    let elsewhere = object(raw);
    let incoming =
        rule("reviews-b", "reviews", json!({}), json!({"subsets": subsets(&[("v2", "v3")]), "trafficPolicy": {}}));
    assert!(rg113(Policy::default(), vec![elsewhere], Operation::Create, &incoming).is_empty());
}
