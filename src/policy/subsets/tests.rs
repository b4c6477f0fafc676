use super::*;
use crate::policy::testing::*;
use crate::policy::{Policy, Severity};

fn check(objects: Vec<Object>, dr: &Object) -> Vec<Finding> {
    let snap = snapshot(objects);
    let policy = Policy::default();
    let spec: DestinationRuleSpec = dr.spec().expect("spec");
    check_destination_rule(Context { policy: &policy, snapshot: &snap }, &dr.key, &spec)
}

#[test]
fn a_clean_destination_rule_has_no_findings() {
    let dr = destination_rule("default", "reviews", "reviews", &["v1", "v2", "v3"]);
    assert_eq!(check(bookinfo(), &dr), vec![]);
}

#[test]
fn duplicate_subset_names_are_errors() {
    let dr = destination_rule("default", "reviews", "reviews", &["v1", "v2", "v1"]);
    let findings = check(bookinfo(), &dr);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].code, Code::RG202);
    assert_eq!(findings[0].severity, Severity::Error);
    assert_eq!(findings[0].path.as_str(), "spec.subsets[2].name");
    assert!(findings[0].message.contains("spec.subsets[0] and spec.subsets[2]"));
}

#[test]
fn a_subset_selecting_no_pod_template_is_a_warning() {
    let dr = destination_rule("default", "reviews", "reviews", &["v1", "v4"]);
    let findings = check(bookinfo(), &dr);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].code, Code::RG203);
    assert_eq!(findings[0].severity, Severity::Warning);
    assert_eq!(findings[0].path.as_str(), "spec.subsets[1].labels");
    assert!(
        findings[0].message.contains("deployments behind service reviews have version v1, v2, v3"),
        "{}",
        findings[0].message
    );
    // A host without a Service (an external host) is not judged.
    let external = destination_rule("default", "ext", "api.example.com", &["v9"]);
    assert_eq!(check(bookinfo(), &external), vec![]);
}

/// A DestinationRule for reviews with one subset of these labels.
fn rule_with_labels(labels: serde_json::Value) -> Object {
    object(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"host": "reviews", "subsets": [{"name": "local", "labels": labels}]}
    }))
}

#[test]
fn locality_labels_are_left_out_of_the_judgement() {
    // Pods get the node's locality labels at runtime; pod templates never carry them.
    for key in LOCALITY_LABELS {
        let dr = rule_with_labels(serde_json::json!({"version": "v1", key: "somewhere"}));
        assert_eq!(check(bookinfo(), &dr), vec![], "{key}");
    }
    let dr = rule_with_labels(serde_json::json!({
        "version": "v2", "topology.kubernetes.io/region": "us-east1", "topology.kubernetes.io/zone": "us-east1-b",
        "topology.istio.io/subzone": "rack-4", "kubernetes.io/hostname": "node-7"
    }));
    assert_eq!(check(bookinfo(), &dr), vec![]);
}

#[test]
fn a_subset_of_locality_labels_only_selects_every_pod_of_the_service() {
    let dr = rule_with_labels(serde_json::json!({"topology.kubernetes.io/zone": "us-east1-b"}));
    assert_eq!(check(bookinfo(), &dr), vec![]);
    // Still nothing to select when no Deployment is behind the Service.
    let findings = check(vec![service("default", "reviews", "reviews")], &dr);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].path.as_str(), "spec.subsets[0].labels");
    assert_eq!(
        findings[0].message,
        "subset \"local\" selects only locality labels in namespace default, which matches no \
         deployment's pod template; no deployment behind service reviews carries a version label"
    );
}

#[test]
fn other_labels_beside_locality_labels_are_still_judged() {
    let dr = rule_with_labels(serde_json::json!({"version": "v4", "topology.kubernetes.io/zone": "us-east1-b"}));
    let findings = check(bookinfo(), &dr);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].code, Code::RG203);
    assert_eq!(findings[0].path.as_str(), "spec.subsets[0].labels");
    assert_eq!(
        findings[0].message,
        "subset \"local\" selects {version=v4} (besides locality labels) in namespace default, which matches no \
         deployment's pod template; deployments behind service reviews have version v1, v2, v3"
    );
    // A key that only looks like a locality label is judged like any other.
    let dr = rule_with_labels(serde_json::json!({"version": "v1", "topology.kubernetes.io/rack": "r1"}));
    let findings = check(bookinfo(), &dr);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(
        findings[0].message,
        "subset \"local\" selects {topology.kubernetes.io/rack=r1, version=v1} in namespace default, which \
         matches no deployment's pod template; deployments behind service reviews have version v1, v2, v3"
    );
}

#[test]
fn an_empty_locality_label_is_a_warning() {
    let dr = rule_with_labels(serde_json::json!({"version": "v1", "topology.kubernetes.io/zone": ""}));
    let findings = check(bookinfo(), &dr);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].code, Code::RG203);
    assert_eq!(findings[0].severity, Severity::Warning);
    assert_eq!(findings[0].path.as_str(), "spec.subsets[0].labels[\"topology.kubernetes.io/zone\"]");
    assert_eq!(
        findings[0].message,
        "subset \"local\" selects locality label topology.kubernetes.io/zone with an empty value, which no node \
         has; expected a non-empty value or no topology.kubernetes.io/zone label"
    );
    // Both findings when the other labels select nothing either.
    let dr = rule_with_labels(serde_json::json!({"version": "v9", "kubernetes.io/hostname": ""}));
    let paths: Vec<String> = check(bookinfo(), &dr).iter().map(|f| f.path.as_str().to_string()).collect();
    assert_eq!(paths, vec!["spec.subsets[0].labels[\"kubernetes.io/hostname\"]", "spec.subsets[0].labels"]);
}

fn removed(objects: Vec<Object>, old: &Object, new: Option<&Object>) -> Vec<Finding> {
    let snap = snapshot(objects);
    let policy = Policy::default();
    let spec = new.map(|n| n.spec::<crate::model::istio::DestinationRuleSpec>().ok());
    let next = match &spec {
        Some(spec) => Next::Updated(spec.as_ref()),
        None => Next::Deleted,
    };
    removed_in_use(Context { policy: &policy, snapshot: &snap }, old, next)
}

#[test]
fn removing_a_routed_subset_is_refused_and_names_the_route() {
    let old = destination_rule("default", "reviews", "reviews", &["v1", "v2", "v3"]);
    let new = destination_rule("default", "reviews", "reviews", &["v1", "v3"]);
    let findings = removed(bookinfo(), &old, Some(&new));
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].code, Code::RG201);
    assert_eq!(findings[0].path.as_str(), "spec.subsets");
    assert_eq!(
        findings[0].message,
        "removing subset \"v2\" of host reviews.default.svc.cluster.local, which virtualservice default/reviews \
         still routes weight 20 to it at spec.http[0].route[1]; move that traffic off \"v2\" first"
    );
}

#[test]
fn removing_an_unused_subset_or_one_defined_elsewhere_is_fine() {
    let old = destination_rule("default", "reviews", "reviews", &["v1", "v2", "v3"]);
    let new = destination_rule("default", "reviews", "reviews", &["v1", "v2"]);
    assert_eq!(removed(bookinfo(), &old, Some(&new)), vec![]);
    // A second DestinationRule in the same namespace still defines v2: the subsets merge.
    let mut objects = bookinfo();
    objects.push(destination_rule("default", "reviews-extra", "reviews", &["v2"]));
    let new = destination_rule("default", "reviews", "reviews", &["v1"]);
    assert_eq!(removed(objects, &old, Some(&new)), vec![]);
}

#[test]
fn deleting_a_destination_rule_in_use_is_refused_for_every_used_subset() {
    let old = destination_rule("default", "reviews", "reviews", &["v1", "v2", "v3"]);
    let findings = removed(bookinfo(), &old, None);
    let subsets: Vec<bool> =
        ["\"v1\"", "\"v2\""].iter().map(|s| findings.iter().any(|f| f.message.contains(s))).collect();
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert_eq!(subsets, vec![true, true]);
    assert!(findings[0].message.starts_with("deleting the destinationrule removes subset"));
}

#[test]
fn mirrors_count_as_use() {
    let mut objects = bookinfo();
    objects.pop();
    objects.push(object(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                 "mirror": {"host": "reviews", "subset": "v3"}}]}
    })));
    let old = destination_rule("default", "reviews", "reviews", &["v1", "v2", "v3"]);
    let new = destination_rule("default", "reviews", "reviews", &["v1", "v2"]);
    let findings = removed(objects, &old, Some(&new));
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].message.contains("mirrors traffic to it at spec.http[0].mirror"));
}

#[test]
fn an_update_to_an_unreadable_rule_is_refused_as_invalid_and_for_the_subsets_it_drops() {
    // Through the engine, which reads the new spec once for both judgements.
    let old = destination_rule("default", "reviews", "reviews", &["v1", "v2", "v3"]);
    let mut raw = old.raw.clone();
    raw["spec"]["subsets"] = serde_json::json!("not a list");
    let new = object(raw);
    let snap = snapshot(bookinfo());
    let change = crate::policy::Change {
        operation: crate::policy::Operation::Update,
        object: Some(&new),
        old: Some(&old),
        user: None,
    };
    let findings = crate::policy::Engine::new(Policy::default()).validate(&snap, &change);
    let codes: Vec<Code> = findings.iter().map(|f| f.code).collect();
    assert!(codes.contains(&Code::RG100), "{findings:?}");
    let dropped: Vec<&str> = findings.iter().filter(|f| f.code == Code::RG201).map(|f| f.message.as_str()).collect();
    assert_eq!(dropped.len(), 2, "{findings:?}");
    assert!(dropped.iter().all(|m| m.starts_with("removing subset")), "{dropped:?}");
}
