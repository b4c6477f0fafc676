//! HTTPRoute rules: weights (RG101, RG102), backendRefs (RG107) and mirror filters (RG105).

use crate::model::gateway::{BackendRef, HttpRouteFilter, HttpRouteSpec, RequestMirror};
use crate::model::{FieldPath, Kind, ObjectKey, Spec};

use super::routes::weights::{self, Weighted};
use super::{Code, Context, Finding, hosts, ports};

/// How the Gateway API counts weights: relative, and a missing weight is 1.
const GATEWAY_WEIGHTS: Weighted = Weighted { item: "backendRef", missing: 1, relative: true };

/// The group of the routes a ReferenceGrant must let in.
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Every finding about an HTTPRoute on its own and against the snapshot.
pub fn check_http_route(ctx: Context<'_>, key: &ObjectKey, spec: &HttpRouteSpec) -> Vec<Finding> {
    let mut check = Check { ctx, key, out: Vec::new() };
    let rules = FieldPath::new("spec").key("rules");
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = rules.index(i);
        check.filters(&at, &rule.filters);
        let list = at.key("backendRefs");
        let mode = ctx.policy.weights;
        weights::check(&mut check.out, mode, key, &list, GATEWAY_WEIGHTS, rule.backend_refs.iter().map(|b| b.weight));
        for (j, backend) in rule.backend_refs.iter().enumerate() {
            let path = list.index(j);
            check.backend(&path, backend);
            check.filters(&path, &backend.filters);
        }
    }
    check.out
}

/// The state of one check: where findings go and what they are about.
struct Check<'a> {
    ctx: Context<'a>,
    key: &'a ObjectKey,
    out: Vec<Finding>,
}

impl Check<'_> {
    fn push(&mut self, code: Code, path: FieldPath, message: String) {
        self.out.push(Finding::new(code, self.key, path, message));
    }

    /// RG107: a backendRef to a Service (at `at`) must name an existing Service
    /// that the route may reference. Other kinds of backends are not checked.
    fn backend(&mut self, at: &FieldPath, backend: &BackendRef) {
        if !backend.is_service() {
            return;
        }
        let name = backend.name.as_str();
        if name.is_empty() {
            self.push(Code::RG107, at.key("name"), "backendRef has no name, expected the name of a service".into());
            return;
        }
        let route_ns = self.key.namespace.as_str();
        let target_ns = backend.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(route_ns);
        let host = hosts::service_host(name, target_ns, self.ctx.snapshot.domain());
        match self.ctx.snapshot.service(&host) {
            Some(service) => ports::check_backend(&mut self.out, self.key, at, service, backend.port),
            None => self.push(
                Code::RG107,
                at.key("name"),
                format!("service {target_ns}/{name} does not exist; expected an existing service (create it or fix the backendRef)"),
            ),
        }
        if target_ns != route_ns && !self.granted(route_ns, target_ns, name) {
            self.push(
                Code::RG107,
                at.clone(),
                format!(
                    "no referencegrant in namespace {target_ns} lets httproutes of namespace {route_ns} reference \
                     service {target_ns}/{name}; create one in {target_ns} with from \
                     {{group: {GATEWAY_GROUP}, kind: HTTPRoute, namespace: {route_ns}}} and to \
                     {{group: \"\", kind: Service, name: {name}}}"
                ),
            );
        }
    }

    /// True when a ReferenceGrant in `target_ns` lets HTTPRoutes of `route_ns` reference Service `name`.
    fn granted(&self, route_ns: &str, target_ns: &str, name: &str) -> bool {
        self.ctx.snapshot.in_namespace(Kind::ReferenceGrant, target_ns).any(|entry| {
            let Some(Spec::ReferenceGrant(grant)) = entry.spec() else {
                return false;
            };
            let from =
                grant.from.iter().any(|f| f.group == GATEWAY_GROUP && f.kind == "HTTPRoute" && f.namespace == route_ns);
            // A grant without a name covers every Service of the namespace.
            let to = grant.to.iter().any(|t| {
                t.group.is_empty() && t.kind == "Service" && t.name.as_deref().is_none_or(|n| n.is_empty() || n == name)
            });
            from && to
        })
    }

    /// RG105 (and RG107 for the mirror's backend): the RequestMirror filters of the rule or backendRef at `parent`.
    fn filters(&mut self, parent: &FieldPath, filters: &[HttpRouteFilter]) {
        if filters.is_empty() {
            return;
        }
        let list = parent.key("filters");
        for (k, filter) in filters.iter().enumerate() {
            if filter.kind != "RequestMirror" {
                continue;
            }
            let at = list.index(k);
            match &filter.request_mirror {
                Some(mirror) => self.mirror(&at.key("requestMirror"), mirror),
                None => self.push(
                    Code::RG105,
                    at.key("requestMirror"),
                    format!("filter {at} of type RequestMirror has no requestMirror, expected one with a backendRef"),
                ),
            }
        }
    }

    /// RG105: one `requestMirror` at `at`: its share of requests and its backend.
    fn mirror(&mut self, at: &FieldPath, mirror: &RequestMirror) {
        if mirror.percent.is_some() && mirror.fraction.is_some() {
            self.push(
                Code::RG105,
                at.clone(),
                "requestMirror sets both percent and fraction, expected at most one".into(),
            );
        }
        if let Some(percent) = mirror.percent.filter(|p| !(0..=100).contains(p)) {
            self.push(
                Code::RG105,
                at.key("percent"),
                format!("mirror percent is {percent}, expected a value from 0 to 100"),
            );
        }
        if let Some(fraction) = &mirror.fraction {
            let path = at.key("fraction");
            let (numerator, denominator) = (fraction.numerator, fraction.denominator.unwrap_or(100));
            if numerator < 0 {
                self.push(
                    Code::RG105,
                    path.key("numerator"),
                    format!("mirror fraction numerator is {numerator}, expected 0 or more"),
                );
            }
            if denominator <= 0 {
                self.push(
                    Code::RG105,
                    path.key("denominator"),
                    format!("mirror fraction denominator is {denominator}, expected 1 or more"),
                );
            } else if numerator > denominator {
                self.push(
                    Code::RG105,
                    path,
                    format!(
                        "mirror fraction {numerator}/{denominator} is above 1, expected a numerator of at most {denominator}"
                    ),
                );
            }
        }
        match &mirror.backend_ref {
            Some(backend) => self.backend(&at.key("backendRef"), backend),
            None => self.push(
                Code::RG105,
                at.key("backendRef"),
                "requestMirror has no backendRef, expected the backend to mirror to".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::Object;
    use crate::policy::{Policy, Snapshot, WeightMode};

    fn object(value: Value) -> Object {
        Object::from_value(value, "default").expect("object")
    }

    fn service(name: &str, namespace: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}})
    }

    fn grant(namespace: &str, from_kind: &str, from_ns: &str, to_name: Option<&str>) -> Value {
        let mut to = json!({"group": "", "kind": "Service"});
        if let Some(name) = to_name {
            to["name"] = json!(name);
        }
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
               "metadata": {"name": format!("from-{from_ns}-{from_kind}"), "namespace": namespace},
               "spec": {"from": [{"group": GATEWAY_GROUP, "kind": from_kind, "namespace": from_ns}], "to": [to]}})
    }

    /// Services reviews, reviews-v2 and shadow in default; cart in shop (granted by name); orders in billing
    /// (granted to all Services); stock in depot (granted only to Gateways); ledger in finance (no grant).
    fn cluster() -> Vec<Value> {
        vec![
            service("reviews", "default"),
            service("reviews-v2", "default"),
            service("shadow", "default"),
            service("cart", "shop"),
            grant("shop", "HTTPRoute", "default", Some("cart")),
            service("orders", "billing"),
            grant("billing", "HTTPRoute", "default", None),
            service("stock", "depot"),
            grant("depot", "Gateway", "default", None),
            service("ledger", "finance"),
        ]
    }

    fn check_with(policy: &Policy, spec: Value) -> Vec<Finding> {
        let snapshot = Snapshot::from_objects(policy, cluster().into_iter().map(object));
        let route = object(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                                  "metadata": {"name": "web"}, "spec": spec}));
        let spec: HttpRouteSpec = route.spec().expect("spec");
        check_http_route(Context { policy, snapshot: &snapshot }, &route.key, &spec)
    }

    fn check(spec: Value) -> Vec<Finding> {
        check_with(&Policy::default(), spec)
    }

    fn only(found: Vec<Finding>, code: Code, path: &str) -> Finding {
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = found.into_iter().next().expect("one finding");
        assert_eq!((f.code, f.path.as_str()), (code, path), "{f:?}");
        f
    }

    fn rules(backends: Value) -> Value {
        json!({"rules": [{"backendRefs": backends}]})
    }

    #[test]
    fn allows_a_well_formed_route() {
        let found = check(json!({"rules": [
            {"backendRefs": [{"name": "reviews", "port": 80}]},
            {"backendRefs": [{"name": "reviews", "weight": 90}, {"name": "reviews-v2", "weight": 10,
                              "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow"}}}]}],
             "filters": [{"type": "RequestHeaderModifier"},
                         {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "cart", "namespace": "shop"},
                                                                     "fraction": {"numerator": 1}}}]},
            {"backendRefs": [{"name": "orders", "namespace": "billing", "weight": 100}]},
            {"backendRefs": [{"group": "example.com", "kind": "Bucket", "name": "nowhere"},
                             {"name": "cart", "namespace": "shop", "weight": 99}]}
        ]}));
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn rg101_weights_default_to_1() {
        let f = only(
            check(rules(json!([{"name": "reviews"}, {"name": "reviews-v2"}]))),
            Code::RG101,
            "spec.rules[0].backendRefs",
        );
        assert_eq!(
            f.message,
            "weights of spec.rules[0].backendRefs sum to 2 (1 + 1), expected 100 (a missing weight counts as 1)"
        );
        // One backendRef takes all traffic with any weight above 0: 1 is what the API server fills in.
        assert!(check(rules(json!([{"name": "reviews", "weight": 1}]))).is_empty());
        assert!(check(rules(json!([{"name": "reviews", "weight": 30}]))).is_empty());
        let f = only(
            check(rules(json!([{"name": "reviews", "weight": 0}]))),
            Code::RG102,
            "spec.rules[0].backendRefs[0].weight",
        );
        assert_eq!(
            f.message,
            "weight of the only backendRef in spec.rules[0].backendRefs is 0, so it would receive no traffic; \
             expected a weight above 0 (or no weight)"
        );

        let relative = Policy { weights: WeightMode::Relative, ..Policy::default() };
        assert!(check_with(&relative, rules(json!([{"name": "reviews"}, {"name": "reviews-v2"}]))).is_empty());
    }

    #[test]
    fn rg102_negative_and_all_zero_weights() {
        let found = check(rules(json!([{"name": "reviews", "weight": 101}, {"name": "reviews-v2", "weight": -1}])));
        let f = only(found, Code::RG102, "spec.rules[0].backendRefs[1].weight");
        assert_eq!(f.message, "weight of spec.rules[0].backendRefs[1] is -1, expected 0 or more");

        let relative = Policy { weights: WeightMode::Relative, ..Policy::default() };
        let found = check_with(
            &relative,
            rules(json!([{"name": "reviews", "weight": 0}, {"name": "reviews-v2", "weight": 0}])),
        );
        let f = only(found, Code::RG102, "spec.rules[0].backendRefs");
        assert_eq!(
            f.message,
            "all weights of spec.rules[0].backendRefs are 0, so no backendRef would receive traffic; \
             expected at least one weight above 0"
        );
    }

    #[test]
    fn rg107_services_must_exist() {
        let f = only(check(rules(json!([{"name": "ratings"}]))), Code::RG107, "spec.rules[0].backendRefs[0].name");
        assert_eq!(
            f.message,
            "service default/ratings does not exist; expected an existing service (create it or fix the backendRef)"
        );
        let f = only(check(rules(json!([{"name": ""}]))), Code::RG107, "spec.rules[0].backendRefs[0].name");
        assert_eq!(f.message, "backendRef has no name, expected the name of a service");
        // Explicit core group and kind are still Services.
        let found = check(rules(json!([{"group": "", "kind": "Service", "name": "reviews", "namespace": "default"}])));
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn rg107_cross_namespace_needs_a_reference_grant() {
        let f = only(
            check(rules(json!([{"name": "ledger", "namespace": "finance"}]))),
            Code::RG107,
            "spec.rules[0].backendRefs[0]",
        );
        assert_eq!(
            f.message,
            "no referencegrant in namespace finance lets httproutes of namespace default reference service \
             finance/ledger; create one in finance with from {group: gateway.networking.k8s.io, kind: HTTPRoute, \
             namespace: default} and to {group: \"\", kind: Service, name: ledger}"
        );
        // A grant for another kind of route, or for another Service, does not count.
        let f = only(
            check(rules(json!([{"name": "stock", "namespace": "depot"}]))),
            Code::RG107,
            "spec.rules[0].backendRefs[0]",
        );
        assert!(f.message.starts_with("no referencegrant in namespace depot"));
        let found = check(rules(json!([{"name": "basket", "namespace": "shop"}])));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].path.as_str(), "spec.rules[0].backendRefs[0].name");
        assert!(found[0].message.starts_with("service shop/basket does not exist"));
        assert_eq!(found[1].path.as_str(), "spec.rules[0].backendRefs[0]");
    }

    #[test]
    fn rg105_mirror_percent_and_fraction() {
        let mirror = |m: Value| {
            json!({"rules": [{"backendRefs": [{"name": "reviews"}],
                                                  "filters": [{"type": "RequestMirror", "requestMirror": m}]}]})
        };
        let at = "spec.rules[0].filters[0].requestMirror";
        assert!(check(mirror(json!({"backendRef": {"name": "shadow"}, "percent": 100}))).is_empty());
        assert!(
            check(mirror(json!({"backendRef": {"name": "shadow"}, "fraction": {"numerator": 5, "denominator": 5}})))
                .is_empty()
        );

        let f = only(
            check(mirror(json!({"backendRef": {"name": "shadow"}, "percent": 101}))),
            Code::RG105,
            &format!("{at}.percent"),
        );
        assert_eq!(f.message, "mirror percent is 101, expected a value from 0 to 100");

        let found =
            check(mirror(json!({"backendRef": {"name": "shadow"}, "percent": 5, "fraction": {"numerator": 1}})));
        let f = only(found, Code::RG105, at);
        assert_eq!(f.message, "requestMirror sets both percent and fraction, expected at most one");

        let found =
            check(mirror(json!({"backendRef": {"name": "shadow"}, "fraction": {"numerator": -1, "denominator": 0}})));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].path.as_str(), format!("{at}.fraction.numerator"));
        assert_eq!(found[0].message, "mirror fraction numerator is -1, expected 0 or more");
        assert_eq!(found[1].path.as_str(), format!("{at}.fraction.denominator"));
        assert_eq!(found[1].message, "mirror fraction denominator is 0, expected 1 or more");

        let found = check(mirror(json!({"backendRef": {"name": "shadow"}, "fraction": {"numerator": 101}})));
        let f = only(found, Code::RG105, &format!("{at}.fraction"));
        assert_eq!(f.message, "mirror fraction 101/100 is above 1, expected a numerator of at most 100");
    }

    #[test]
    fn rg105_mirror_needs_a_backend_that_exists() {
        let found = check(json!({"rules": [{"backendRefs": [{"name": "reviews", "filters": [
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "ghost"}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "ledger", "namespace": "finance"}}},
            {"type": "RequestMirror", "requestMirror": {"percent": 5}},
            {"type": "RequestMirror"}
        ]}]}]}));
        let at = "spec.rules[0].backendRefs[0].filters";
        let got: Vec<(Code, &str)> = found.iter().map(|f| (f.code, f.path.as_str())).collect();
        assert_eq!(
            got,
            [
                (Code::RG107, format!("{at}[0].requestMirror.backendRef.name").as_str()),
                (Code::RG107, format!("{at}[1].requestMirror.backendRef").as_str()),
                (Code::RG105, format!("{at}[2].requestMirror.backendRef").as_str()),
                (Code::RG105, format!("{at}[3].requestMirror").as_str()),
            ]
        );
        assert_eq!(
            found[0].message,
            "service default/ghost does not exist; expected an existing service (create it or fix the backendRef)"
        );
        assert_eq!(found[2].message, "requestMirror has no backendRef, expected the backend to mirror to");
        assert_eq!(
            found[3].message,
            "filter spec.rules[0].backendRefs[0].filters[3] of type RequestMirror has no requestMirror, expected one with a backendRef"
        );
    }
}
