use super::*;
use crate::policy::Policy;
use crate::policy::testing::*;
use serde_json::json;

fn deleting(objects: Vec<Object>, old: &Object) -> Vec<Finding> {
    let snap = snapshot(objects);
    let policy = Policy::default();
    deletion_in_use(Context { policy: &policy, snapshot: &snap }, old)
}

#[test]
fn deleting_a_routed_service_is_refused() {
    let svc = service("default", "reviews", "reviews");
    let findings = deleting(bookinfo(), &svc);
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert_eq!(findings[0].code, Code::RG303);
    assert_eq!(
        findings[0].message,
        "service default/reviews still receives traffic: virtualservice default/reviews sends weight 80 to it at \
         spec.http[0].route[0]; remove or re-weight that route first"
    );
}

#[test]
fn deleting_an_unrouted_service_is_fine() {
    let mut objects = bookinfo();
    objects.push(service("default", "ratings", "ratings"));
    assert_eq!(deleting(objects, &service("default", "ratings", "ratings")), vec![]);
}

#[test]
fn deleting_the_only_deployment_of_a_weighted_subset_is_refused() {
    let v2 = deployment("default", "reviews-v2", "reviews", "v2");
    let findings = deleting(bookinfo(), &v2);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].message.starts_with("deployment default/reviews-v2 is the last one serving traffic that virtualservice default/reviews sends with weight 20 at spec.http[0].route[1]"), "{}", findings[0].message);
}

#[test]
fn deleting_an_unweighted_or_duplicated_version_is_fine() {
    // v3 receives no traffic.
    assert_eq!(deleting(bookinfo(), &deployment("default", "reviews-v3", "reviews", "v3")), vec![]);
    // A second Deployment also serves v2.
    let mut objects = bookinfo();
    objects.push(deployment("default", "reviews-v2-b", "reviews", "v2"));
    assert_eq!(deleting(objects, &deployment("default", "reviews-v2", "reviews", "v2")), vec![]);
    // Weight 0 is not live traffic.
    let mut objects = bookinfo();
    objects.pop();
    objects.push(virtual_service("default", "reviews", "reviews", &[("v1", 100), ("v2", 0)]));
    assert_eq!(deleting(objects, &deployment("default", "reviews-v2", "reviews", "v2")), vec![]);
}

#[test]
fn http_route_backends_count_with_their_default_weight() {
    let route = object(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "customers", "namespace": "default"},
        "spec": {"rules": [{"backendRefs": [{"name": "customers-v1", "port": 80}]}]}
    }));
    let svc = service("default", "customers-v1", "customers");
    let objects = vec![svc.clone(), deployment("default", "customers-v1", "customers", "v1"), route];
    let findings = deleting(objects.clone(), &svc);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0]
            .message
            .contains("httproute default/customers sends weight 1 to it at spec.rules[0].backendRefs[0]")
    );
    let findings = deleting(objects, &deployment("default", "customers-v1", "customers", "v1"));
    assert_eq!(findings.len(), 1, "{findings:?}");
}
