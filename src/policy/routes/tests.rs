//! Tests of the VirtualService rules against a small snapshot.

use serde_json::{Value, json};

use super::check_virtual_service;
use crate::model::Object;
use crate::model::istio::VirtualServiceSpec;
use crate::policy::{Code, Context, Finding, Policy, Severity, Snapshot, WeightMode};

fn object(value: Value) -> Object {
    Object::from_value(value, "default").expect("object")
}

fn service(name: &str, namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}})
}

fn rule(name: &str, namespace: &str, host: &str, subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect();
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": name, "namespace": namespace}, "spec": {"host": host, "subsets": subsets}})
}

/// reviews (v1, v2) and ratings (no DestinationRule) in default, an external ServiceEntry.
fn cluster() -> Vec<Value> {
    vec![
        service("reviews", "default"),
        service("ratings", "default"),
        rule("reviews", "default", "reviews", &["v1", "v2"]),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
               "metadata": {"name": "legacy", "namespace": "default"},
               "spec": {"hosts": ["legacy.billing.svc.cluster.local"]}}),
    ]
}

fn check_with(policy: &Policy, objects: Vec<Value>, spec: Value) -> Vec<Finding> {
    let snapshot = Snapshot::from_objects(policy, objects.into_iter().map(object));
    let vs = object(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                           "metadata": {"name": "reviews"}, "spec": spec}));
    let spec: VirtualServiceSpec = vs.spec().expect("spec");
    check_virtual_service(Context { policy, snapshot: &snapshot }, &vs.key, &spec)
}

fn check(spec: Value) -> Vec<Finding> {
    check_with(&Policy::default(), cluster(), spec)
}

/// The only finding, which must have this code and path.
fn only(found: Vec<Finding>, code: Code, path: &str) -> Finding {
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = found.into_iter().next().expect("one finding");
    assert_eq!((f.code, f.path.as_str()), (code, path), "{f:?}");
    f
}

fn dest(host: &str, subset: &str) -> Value {
    json!({"host": host, "subset": subset})
}

#[test]
fn allows_a_well_formed_virtual_service() {
    let found = check(json!({
        "hosts": ["reviews"],
        "http": [
            {"match": [{"uri": {"prefix": "/"}, "headers": {"end-user": {"exact": "jason"}}}],
             "route": [{"destination": dest("reviews", "v1"), "weight": 80},
                       {"destination": dest("reviews.default.svc.cluster.local", "v2"), "weight": 20}],
             "mirrors": [{"destination": {"host": "ratings"}, "percentage": {"value": 12.5}}]},
            {"route": [{"destination": {"host": "httpbin.org"}}],
             "mirror": {"host": "legacy.billing.svc.cluster.local"}, "mirrorPercentage": {"value": 100}}
        ],
        "tcp": [{"route": [{"destination": {"host": "ratings", "port": {"number": 3306}}}]}],
        "tls": [{"route": [{"destination": {"host": "reviews"}, "weight": 100}]}]
    }));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn rg101_weights_must_sum_to_100() {
    let f = only(
        check(json!({"http": [{"route": [{"destination": dest("reviews", "v1"), "weight": 80},
                                         {"destination": dest("reviews", "v2"), "weight": 10}]}]})),
        Code::RG101,
        "spec.http[0].route",
    );
    assert_eq!(f.message, "weights of spec.http[0].route sum to 90 (80 + 10), expected 100");

    let f = only(
        check(json!({"tcp": [{"route": [{"destination": {"host": "ratings"}, "weight": 50}]}]})),
        Code::RG101,
        "spec.tcp[0].route[0].weight",
    );
    assert_eq!(f.message, "weight of the only destination in spec.tcp[0].route is 50, expected 100 or no weight");

    let f = only(
        check(json!({"tls": [{}, {"route": [{"destination": {"host": "ratings"}, "weight": 90},
                                            {"destination": {"host": "reviews"}}]}]})),
        Code::RG101,
        "spec.tls[1].route",
    );
    assert_eq!(
        f.message,
        "weights of spec.tls[1].route sum to 90 (90 + 0), expected 100 (a missing weight counts as 0)"
    );
}

#[test]
fn rg102_negative_and_all_zero_weights() {
    let found = check(json!({"http": [{"route": [{"destination": dest("reviews", "v1"), "weight": 110},
                                                 {"destination": dest("reviews", "v2"), "weight": -10}]}]}));
    let f = only(found, Code::RG102, "spec.http[0].route[1].weight");
    assert_eq!(f.message, "weight of spec.http[0].route[1] is -10, expected 0 or more");

    let relative = Policy { weights: WeightMode::Relative, ..Policy::default() };
    let spec = json!({"http": [{"route": [{"destination": dest("reviews", "v1"), "weight": 3},
                                          {"destination": dest("reviews", "v2"), "weight": 1}]}]});
    assert!(check_with(&relative, cluster(), spec).is_empty());
    let spec = json!({"http": [{"route": [{"destination": dest("reviews", "v1"), "weight": 0},
                                          {"destination": dest("reviews", "v2")}]}]});
    let f = only(check_with(&relative, cluster(), spec), Code::RG102, "spec.http[0].route");
    assert_eq!(
        f.message,
        "all weights of spec.http[0].route are 0, so no destination would receive traffic; \
         expected at least one weight above 0"
    );
}

#[test]
fn rg103_subsets_must_be_defined_by_a_visible_destination_rule() {
    let f = only(
        check(json!({"http": [{"route": [{"destination": dest("reviews", "v1"), "weight": 50},
                                         {"destination": dest("reviews", "v3"), "weight": 50}]}]})),
        Code::RG103,
        "spec.http[0].route[1].destination.subset",
    );
    assert_eq!(
        f.message,
        "subset \"v3\" of host reviews.default.svc.cluster.local is not defined; destinationrule default/reviews defines v1, v2"
    );

    let f = only(
        check(json!({"tcp": [{"route": [{"destination": dest("ratings", "v1")}]}]})),
        Code::RG103,
        "spec.tcp[0].route[0].destination.subset",
    );
    assert_eq!(
        f.message,
        "subset \"v1\" of host ratings.default.svc.cluster.local is not defined; \
         no destinationrule for ratings.default.svc.cluster.local is visible from namespace default"
    );
}

#[test]
fn rg103_respects_export_to_and_merges_rules() {
    let mut objects = cluster();
    objects.push(service("details", "shop"));
    let mut hidden = rule("details", "shop", "details", &["v1"]);
    hidden["spec"]["exportTo"] = json!(["."]);
    objects.push(hidden);
    // Exported everywhere, the route also reaches the clients of shop, which see the rule: a warning.
    let spec = json!({"http": [{"route": [{"destination": dest("details.shop.svc.cluster.local", "v1")}]}]});
    let f = only(
        check_with(&Policy::default(), objects.clone(), spec),
        Code::RG103,
        "spec.http[0].route[0].destination.subset",
    );
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(
        f.message,
        "subset \"v1\" of host details.shop.svc.cluster.local is defined (destinationrule shop/details) only for \
         clients in shop; clients in default and every other namespace see no destinationrule defining it and get \
         503; define it in a destinationrule visible to them (in the host's namespace, exported to them) or narrow \
         the virtualservice's exportTo"
    );
    // Exported to its own namespace only, no client can resolve it: an error naming the hidden rule.
    let spec = json!({"exportTo": ["."],
                      "http": [{"route": [{"destination": dest("details.shop.svc.cluster.local", "v1")}]}]});
    let f = only(
        check_with(&Policy::default(), objects.clone(), spec),
        Code::RG103,
        "spec.http[0].route[0].destination.subset",
    );
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(
        f.message,
        "subset \"v1\" of host details.shop.svc.cluster.local is not defined; no destinationrule for \
         details.shop.svc.cluster.local is visible from namespace default; destinationrule shop/details defines \
         \"v1\" but its exportTo [.] hides it from namespace default"
    );

    objects.push(rule("reviews-canary", "default", "reviews", &["canary", "v1"]));
    objects.push(rule("ratings", "default", "ratings", &[]));
    let spec = json!({"http": [{"route": [{"destination": dest("reviews", "canary")}],
                                "mirror": dest("reviews", "v9")}],
                      "tls": [{"route": [{"destination": dest("ratings", "v1")}]}]});
    let found = check_with(&Policy::default(), objects, spec);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!((found[0].code, found[0].path.as_str()), (Code::RG103, "spec.http[0].mirror.subset"));
    assert!(
        found[0].message.ends_with("destinationrules default/reviews, default/reviews-canary define v1, v2, canary")
    );
    assert_eq!(found[1].path.as_str(), "spec.tls[0].route[0].destination.subset");
    assert!(found[1].message.ends_with("destinationrule default/ratings defines no subsets"));
}

#[test]
fn rg104_cluster_local_hosts_must_exist() {
    let f = only(
        check(json!({"http": [{"route": [{"destination": {"host": "details"}}]}]})),
        Code::RG104,
        "spec.http[0].route[0].destination.host",
    );
    assert_eq!(
        f.message,
        "host details.default.svc.cluster.local matches no service and no serviceentry; \
         expected service details in namespace default or a serviceentry for it"
    );

    let found = check(json!({"http": [{"route": [{"destination": {"host": "reviews"}}],
                                       "mirrors": [{"destination": {"host": "shadow.test.svc.cluster.local"}}]}]}));
    let f = only(found, Code::RG104, "spec.http[0].mirrors[0].destination.host");
    assert!(f.message.starts_with("host shadow.test.svc.cluster.local matches no service"));

    // The policy can switch the rule off.
    let off = Policy { missing_host: crate::policy::Action::Off, ..Policy::default() };
    assert!(
        check_with(&off, cluster(), json!({"http": [{"route": [{"destination": {"host": "details"}}]}]})).is_empty()
    );

    // External hosts are not checked; ServiceEntry hosts count.
    let found = check(json!({"tcp": [{"route": [{"destination": {"host": "db.example.com"}}]}],
                            "http": [{"route": [{"destination": {"host": "legacy.billing.svc.cluster.local"}}]}]}));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn rg103_judges_subsets_from_every_namespace_the_route_reaches() {
    // The route and its DestinationRule in default, the host in backend: only default's clients resolve v1.
    let mut objects = cluster();
    objects.push(service("catalog", "backend"));
    objects.push(rule("catalog", "default", "catalog.backend.svc.cluster.local", &["v1"]));
    let route = |export_to: Value| {
        json!({"exportTo": export_to,
               "http": [{"route": [{"destination": dest("catalog.backend.svc.cluster.local", "v1")}]}]})
    };
    let f = only(
        check_with(&Policy::default(), objects.clone(), route(json!([]))),
        Code::RG103,
        "spec.http[0].route[0].destination.subset",
    );
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message.starts_with(
            "subset \"v1\" of host catalog.backend.svc.cluster.local is defined (destinationrule default/catalog) \
             only for clients in default; clients in every other namespace see no destinationrule defining it and \
             get 503"
        ),
        "{}",
        f.message
    );
    // Exported to its own namespace only, every client it reaches resolves it.
    assert!(check_with(&Policy::default(), objects.clone(), route(json!(["."]))).is_empty());
    // Exported to a namespace that cannot resolve it: an error.
    let f = only(
        check_with(&Policy::default(), objects.clone(), route(json!(["web"]))),
        Code::RG103,
        "spec.http[0].route[0].destination.subset",
    );
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(
        f.message,
        "subset \"v1\" of host catalog.backend.svc.cluster.local is not defined; no destinationrule for \
         catalog.backend.svc.cluster.local is visible from namespace web; destinationrule default/catalog defines \
         \"v1\" but clients in web look for destinationrules only in namespaces web, backend, istio-system (their \
         own, the host's, the mesh root)"
    );
    // A gateway-only route is judged from its own namespace.
    let mut gateway = route(json!([]));
    gateway["gateways"] = json!(["istio-system/public"]);
    assert!(check_with(&Policy::default(), objects.clone(), gateway).is_empty());

    // With the rule in the host's namespace, exported everywhere, every client resolves it.
    let mut objects = cluster();
    objects.push(service("catalog", "backend"));
    objects.push(rule("catalog", "backend", "catalog", &["v1"]));
    assert!(check_with(&Policy::default(), objects.clone(), route(json!([]))).is_empty());
    // A rule of the route's namespace without the subset outranks it for the route's own clients.
    objects.push(rule("catalog-local", "default", "catalog.backend.svc.cluster.local", &["v2"]));
    let f = only(
        check_with(&Policy::default(), objects, route(json!(["."]))),
        Code::RG103,
        "spec.http[0].route[0].destination.subset",
    );
    assert_eq!(
        f.message,
        "subset \"v1\" of host catalog.backend.svc.cluster.local is not defined; destinationrule \
         default/catalog-local defines v2; destinationrule backend/catalog defines \"v1\" but istio uses the \
         destinationrules of namespace default for clients in default, which it looks in first"
    );
}

#[test]
fn rg104_hosts_must_be_exported_to_the_route() {
    let mut objects = cluster();
    let mut internal = service("vault", "secure");
    internal["metadata"]["annotations"] = json!({"networking.istio.io/exportTo": "."});
    objects.push(internal);
    objects.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                        "metadata": {"name": "everything", "namespace": "egress"},
                        "spec": {"hosts": ["*"], "exportTo": ["."]}}));
    objects.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                        "metadata": {"name": "partner", "namespace": "egress"},
                        "spec": {"hosts": ["partner.egress.svc.cluster.local"], "exportTo": ["egress", "web"]}}));
    let found = check_with(
        &Policy::default(),
        objects,
        json!({"http": [{"match": [{"uri": {"prefix": "/vault"}}],
                         "route": [{"destination": {"host": "vault.secure.svc.cluster.local"}, "weight": 50},
                                   {"destination": {"host": "partner.egress.svc.cluster.local"}, "weight": 50}]},
                        {"route": [{"destination": {"host": "details"}}]}]}),
    );
    let got: Vec<String> = found.iter().map(Finding::summary).collect();
    assert_eq!(
        got,
        [
            "RG104 spec.http[0].route[0].destination.host: host vault.secure.svc.cluster.local matches no service \
             and no serviceentry visible from namespace default; service secure/vault declares it but its exportTo \
             [.] hides it from namespace default; expected one exported to default",
            "RG104 spec.http[0].route[1].destination.host: host partner.egress.svc.cluster.local matches no service \
             and no serviceentry visible from namespace default; serviceentry egress/partner declares it but its \
             exportTo [egress, web] hides it from namespace default; expected one exported to default",
            // A ServiceEntry for host `*` (which istiod refuses) hides no missing host.
            "RG104 spec.http[1].route[0].destination.host: host details.default.svc.cluster.local matches no \
             service and no serviceentry; expected service details in namespace default or a serviceentry for it",
        ]
    );
}

#[test]
fn rg105_mirror_settings() {
    let found = check(json!({"http": [{"route": [{"destination": {"host": "reviews"}}],
                                       "mirror": {"host": "ratings"}, "mirrors": [{"destination": {"host": "ratings"}}]}]}));
    let f = only(found, Code::RG105, "spec.http[0].mirror");
    assert_eq!(f.message, "spec.http[0] sets both mirror and mirrors, expected only one (move mirror into mirrors)");

    let found = check(json!({"http": [{"route": [{"destination": {"host": "reviews"}}],
                                       "mirror": {"host": "ratings"}, "mirrorPercentage": {"value": 150.5}}]}));
    let f = only(found, Code::RG105, "spec.http[0].mirrorPercentage.value");
    assert_eq!(f.message, "mirrorPercentage.value is 150.5, expected a value from 0 to 100");

    let found = check(json!({"http": [{"route": [{"destination": {"host": "reviews"}}],
                                       "mirrors": [{"destination": {"host": "ratings"}, "percentage": {"value": -1}},
                                                   {"percentage": {"value": 5}},
                                                   {"destination": {"subset": "v1"}}]}]}));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found.iter().all(|f| f.code == Code::RG105 && f.is_error()));
    assert_eq!(found[0].path.as_str(), "spec.http[0].mirrors[0].percentage.value");
    assert_eq!(found[0].message, "percentage.value is -1, expected a value from 0 to 100");
    assert_eq!(found[1].path.as_str(), "spec.http[0].mirrors[1].destination");
    assert_eq!(
        found[1].message,
        "mirror spec.http[0].mirrors[1] has no destination, expected a destination with a host"
    );
    assert_eq!(found[2].path.as_str(), "spec.http[0].mirrors[2].destination.host");

    let found = check(json!({"http": [{"route": [{"destination": {"host": "reviews"}}], "mirror": {"subset": "v1"}}]}));
    let f = only(found, Code::RG105, "spec.http[0].mirror.host");
    assert_eq!(f.message, "mirror of spec.http[0] has no host, expected a host");
}

#[test]
fn rg105_deprecated_mirror_percent() {
    let found = check(json!({"http": [{"route": [{"destination": {"host": "reviews"}}],
                                       "mirror": {"host": "ratings"}, "mirrorPercent": 50}]}));
    let f = only(found, Code::RG105, "spec.http[0].mirrorPercent");
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.message, "mirrorPercent is deprecated, expected mirrorPercentage: {value: 50} instead");

    let found = check(json!({"http": [{"route": [{"destination": {"host": "reviews"}}],
                                       "mirror": {"host": "ratings"}, "mirrorPercent": 101}]}));
    let f = only(found, Code::RG105, "spec.http[0].mirrorPercent");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.starts_with("mirrorPercent is 101, expected a value from 0 to 100"));
}

#[test]
fn rg106_matches_are_checked_in_place() {
    let found = check(
        json!({"http": [{"match": [{"uri": {"prefix": "/v1"}}], "route": [{"destination": {"host": "reviews"}}]},
                                      {"match": [{"uri": {"exact": "/a"}}, {"uri": {"prefix": "/", "exact": "/"}}],
                                       "route": [{"destination": {"host": "reviews"}}]}]}),
    );
    let f = only(found, Code::RG106, "spec.http[1].match[1].uri");
    assert_eq!(f.message, "uri sets exact and prefix, expected exactly one of exact, prefix, regex");
}

#[test]
fn rg106_cors_origins_are_checked_in_place() {
    let found =
        check(json!({"http": [{"match": [{"uri": {"prefix": "/v1"}}], "route": [{"destination": {"host": "reviews"}}],
                                       "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}],
                                                      "allowMethods": ["GET"], "maxAge": "24h"}},
                                      {"route": [{"destination": {"host": "reviews"}}],
                                       "corsPolicy": {"allowOrigins": [{"prefix": "https://"},
                                                                       {"regex": "https://(.*\\.example\\.com"}]}}]}));
    let f = only(found, Code::RG106, "spec.http[1].corsPolicy.allowOrigins[1].regex");
    assert_eq!(
        f.message,
        "regex \"https://(.*\\.example\\.com\" of spec.http[1].corsPolicy.allowOrigins[1] does not compile: \
         unclosed group"
    );

    // A corsPolicy without allowOrigins (or only the deprecated allowOrigin strings) has nothing to check.
    let found = check(json!({"http": [{"route": [{"destination": {"host": "reviews"}}],
                                       "corsPolicy": {"allowOrigin": ["*"], "allowHeaders": ["x-a"]}}]}));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn rg100_route_entries_need_a_destination_host() {
    let found = check(json!({"http": [{"route": [{"weight": 100}]}], "tcp": [{"route": [{"destination": {}}]}]}));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!((found[0].code, found[0].path.as_str()), (Code::RG100, "spec.http[0].route[0].destination"));
    assert_eq!(found[0].message, "spec.http[0].route[0] has no destination, expected a destination with a host");
    assert_eq!(found[1].path.as_str(), "spec.tcp[0].route[0].destination.host");
    assert_eq!(found[1].message, "spec.tcp[0].route[0] has no host, expected the host to send traffic to");
}
