//! The rule catalog: each code's one-line description and its help text,
//! the README's rule table built into the binary (for `check --output sarif`).
//! `tests/readme_rules.rs` keeps the two the same.

use super::finding::{Code, Severity};

/// One rule of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub code: Code,
    /// One line: what the rule finds.
    pub short: &'static str,
    /// The README table's text for the code.
    pub help: &'static str,
}

impl Rule {
    /// The severity the code has unless the policy says otherwise.
    pub fn default_severity(&self) -> Severity {
        self.code.default_severity()
    }
}

/// Every code, in code order, as the README's rule table describes it.
pub const RULES: [Rule; 22] = [
    Rule {
        code: Code::RG100,
        short: "the object does not have the shape its schema requires",
        help: r#"the object does not have the shape its schema requires (for example `weight: "abc"`)"#,
    },
    Rule {
        code: Code::RG101,
        short: "route weights do not sum to 100",
        help: r#"weights of one route (http, tcp or tls route, or HTTPRoute rule) do not sum to 100 in policy mode `sum100`; one Istio destination without a weight is fine, one with a weight other than 100 is not; one HTTPRoute backendRef is fine with any weight above 0 (Gateway API weights are relative, and the API server fills in an omitted weight as 1, which the message says)"#,
    },
    Rule {
        code: Code::RG102,
        short: "invalid route weight",
        help: r#"invalid weight: negative; all weights 0 (in mode `relative` for Istio routes with several destinations; in every mode for HTTPRoute rules, a lone backendRef of weight 0 included)"#,
    },
    Rule {
        code: Code::RG103,
        short: "a destination names a subset no visible DestinationRule defines",
        help: r#"a route or mirror destination names a subset that no DestinationRule visible to the route's clients defines for that host (the message lists the subsets that do exist, and names a DestinationRule that defines it but is hidden by its `exportTo` or outranked); a **warning** when some of the namespaces the route reaches resolve it and others do not (it names both)"#,
    },
    Rule {
        code: Code::RG104,
        short: "a destination host matches no visible Service or ServiceEntry",
        help: r#"a cluster-local destination or mirror host matches no Service and no ServiceEntry visible from the route's namespace (Istio's `exportTo`; the message names one that is hidden); a ServiceEntry with host `*`, which istiod refuses"#,
    },
    Rule {
        code: Code::RG105,
        short: "invalid mirror",
        help: r#"mirror invalid: percentage outside 0..100, `mirror` and `mirrors` together, no destination (warning: deprecated `mirrorPercent`)"#,
    },
    Rule {
        code: Code::RG106,
        short: "invalid match",
        help: r#"match invalid: not exactly one of exact/prefix/regex, empty prefix, a regex that does not compile (RE2 syntax) or is over 1024 characters, an upper-case header name; the same for each `corsPolicy.allowOrigins[]` entry"#,
    },
    Rule {
        code: Code::RG107,
        short: "an HTTPRoute backendRef names a Service that does not exist or is not granted",
        help: r#"HTTPRoute backendRef (or mirror backendRef) to a Service that does not exist; cross-namespace needs a ReferenceGrant"#,
    },
    Rule {
        code: Code::RG108,
        short: "unknown field in a routing object",
        help: r#"unknown field in a routing object, with a did-you-mean (`mirror_percent` -> `mirrorPercentage`); known fields come from the real CRD schemas"#,
    },
    Rule {
        code: Code::RG109,
        short: "an http route that is never used, or a match that never fires",
        help: r#"an http route never used because a route before it matches every request (no `match`, or only `uri: {prefix: /}`; Istio's IST0130), or a match that an earlier match of the VirtualService repeats exactly and so never fires (IST0131); the message names the earlier route; policy key `unreachableRoutes` (`deny` makes it an error)"#,
    },
    Rule {
        code: Code::RG110,
        short: "a destination port that is ambiguous or that the Service does not expose",
        help: r#"a destination (route or mirror) without `port` to a Service that exposes several ports (Istio's IST0112), a `port.number` the Service does not expose (IST0101), an HTTPRoute backendRef to a Service without `port` or with one the Service does not expose; policy key `destinationPorts`"#,
    },
    Rule {
        code: Code::RG111,
        short: "two VirtualServices bind the same host for the mesh",
        help: r#"two VirtualServices bind the same host for the mesh (no `gateways`, or `mesh` among them) and their `exportTo` make both visible in some namespace (Istio's IST0109): sidecars do not merge them and apply one, unpredictably; hosts are compared qualified and exactly (`*.example.com` conflicts only with `*.example.com`); VirtualServices bound only to gateways, and delegates (no `hosts`), do not count; the message names the other VirtualService; policy key `conflictingRoutes`"#,
    },
    Rule {
        code: Code::RG112,
        short: "a DestinationRule whose host matches no visible Service or ServiceEntry",
        help: r#"a DestinationRule whose host matches no Service and no ServiceEntry visible in its namespace (Istio's `exportTo`; the message names one that is hidden), so it applies to nothing; wildcard hosts are not judged; policy key `unusedRules` (`deny` makes it an error)"#,
    },
    Rule {
        code: Code::RG113,
        short: "two DestinationRules of one namespace for one host that conflict",
        help: r#"two DestinationRules of one namespace for the same host (no `workloadSelector`) that conflict: a subset name both define with other labels (error: Istio keeps the oldest rule's), or a top-level `trafficPolicy` in both that differ (**warning**: only the oldest rule's applies); oldest is the earliest `metadata.creationTimestamp`, then the first name (an object being created is the newest); the message names the other DestinationRule and which one wins; policy key `duplicateRules` (`warn` makes both warnings)"#,
    },
    Rule {
        code: Code::RG114,
        short: "a gateway or parentRef that names nothing that exists",
        help: r#"a gateway that does not exist (Istio's IST0101 for a gateway): an entry of a VirtualService's `spec.gateways` or of a match's `gateways` (`spec.http[].match[]`, `spec.tls[].match[]`, `spec.tcp[].match[]`) that names no Istio Gateway, read as istiod reads it (`<name>` in the VirtualService's namespace, `<namespace>/<name>`, `./<name>`, the legacy `<name>.<namespace>.svc.<domain>`; `mesh` is the sidecars); an HTTPRoute `spec.parentRefs[]` that names no Gateway API Gateway (group `gateway.networking.k8s.io` and kind `Gateway`, the defaults) or, for mesh routing, no Service (group `""`, kind `Service`), in its `namespace` or the route's; parents of other kinds are not judged; the message offers a close name in that namespace and names a gateway of the other API that has the name; policy key `missingGateway`"#,
    },
    Rule {
        code: Code::RG201,
        short: "a DestinationRule change removes a subset a route uses",
        help: r#"a DestinationRule change or deletion removes a subset that a route uses"#,
    },
    Rule {
        code: Code::RG202,
        short: "duplicate subset names in a DestinationRule",
        help: r#"duplicate subset names in a DestinationRule"#,
    },
    Rule {
        code: Code::RG203,
        short: "a subset selects no Deployment",
        help: r#"a subset's labels select no Deployment's pod template (the node locality labels Istio adds to endpoints, `topology.kubernetes.io/region`, `topology.kubernetes.io/zone`, `topology.istio.io/subzone`, `kubernetes.io/hostname`, are left out of the judgement; an empty value for one of them is still a finding)"#,
    },
    Rule { code: Code::RG301, short: "a version label was injected", help: r#"a version label was injected"# },
    Rule {
        code: Code::RG302,
        short: "a version label is not a valid subset name",
        help: r#"a version label is not a valid subset name (DNS-1123 label)"#,
    },
    Rule {
        code: Code::RG303,
        short: "deleting a Deployment or Service a route still sends traffic to",
        help: r#"deleting a Deployment or Service that a route still sends weight > 0 to"#,
    },
    Rule {
        code: Code::RG304,
        short: "an injected version label no longer matches the pod template",
        help: r#"a version label routeguard injected stays while the changed pod template now gives another version (`kubectl set image` to a new tag); the message names both versions and the two ways forward"#,
    },
];

/// The catalog entry of `code`.
pub fn rule(code: Code) -> &'static Rule {
    // Every code has an entry (the test below), so the fallback is never taken.
    RULES.iter().find(|r| r.code == code).unwrap_or(&RULES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_once_in_order() {
        let codes: Vec<Code> = RULES.iter().map(|r| r.code).collect();
        assert_eq!(codes, Code::ALL);
        for code in Code::ALL {
            assert_eq!(rule(code).code, code);
            assert!(!rule(code).short.is_empty() && !rule(code).help.is_empty());
        }
    }
}
