//! RG112: a DestinationRule for nothing (Istio's IST0101 for a
//! DestinationRule host). Its host names no Service and no ServiceEntry that
//! proxies of its namespace know, so it configures no cluster: usually a
//! misspelled host, or a rule left behind when its Service went away.

use crate::model::istio::DestinationRuleSpec;
use crate::model::{FieldPath, ObjectKey};

use super::subsets::kind_name;
use super::{Code, Context, Finding, hosts};

/// RG112 for one DestinationRule: at most one finding, at `spec.host`.
///
/// A wildcard host (`*.shop.svc.cluster.local`, `*`) is meant to cover
/// whatever exists, so it is not judged; an empty host is the schema's business.
pub fn check(ctx: Context<'_>, key: &ObjectKey, spec: &DestinationRuleSpec) -> Option<Finding> {
    let host = hosts::qualify(&spec.host, &key.namespace, ctx.snapshot.domain());
    if host.is_empty() || host.starts_with('*') || ctx.snapshot.host_visible(&host, &key.namespace) {
        return None;
    }
    let namespace = &key.namespace;
    // A Service or ServiceEntry that declares the host but is hidden is the likely explanation.
    let hidden = ctx.snapshot.host_owners(&host).next().map(|owner| {
        format!(
            " ({} {}/{} declares it, but its exportTo hides it from {namespace})",
            kind_name(owner.kind()),
            owner.namespace(),
            owner.name()
        )
    });
    Some(Finding::new(
        Code::RG112,
        key,
        FieldPath::new("spec").key("host"),
        format!(
            "spec.host {host} matches no service or serviceentry visible in namespace {namespace}{}, so the \
             destinationrule applies to nothing; expected the host of an existing service or serviceentry",
            hidden.unwrap_or_default()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::Object;
    use crate::policy::{Action, Change, Engine, Policy, Severity, Snapshot};

    fn object(value: Value) -> Object {
        Object::from_value(value, "shop").expect("object")
    }

    fn rule(host: &str) -> Object {
        object(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                      "metadata": {"name": "payments", "namespace": "shop"},
                      "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}))
    }

    fn snapshot() -> Snapshot {
        Snapshot::from_objects(
            &Policy::default(),
            [
                object(
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "payments", "namespace": "shop"},
                              "spec": {"selector": {"app": "payments"}, "ports": [{"name": "http", "port": 80}]}}),
                ),
                object(json!({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": "ledger", "namespace": "billing",
                                           "annotations": {"networking.istio.io/exportTo": "."}},
                              "spec": {"selector": {"app": "ledger"}, "ports": [{"name": "http", "port": 80}]}})),
                object(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                              "metadata": {"name": "stripe", "namespace": "shop"},
                              "spec": {"hosts": ["api.stripe.com"], "location": "MESH_EXTERNAL",
                                       "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}})),
            ],
        )
    }

    fn run(policy: Policy, host: &str) -> Vec<Finding> {
        let rule = rule(host);
        Engine::new(policy)
            .validate(&snapshot(), &Change::create(&rule))
            .into_iter()
            .filter(|f| f.code == Code::RG112)
            .collect()
    }

    #[test]
    fn a_rule_for_a_service_or_service_entry_is_used() {
        for host in ["payments", "payments.shop.svc.cluster.local", "api.stripe.com", "*.shop.svc.cluster.local", "*"] {
            assert!(run(Policy::default(), host).is_empty(), "{host}");
        }
    }

    #[test]
    fn a_rule_for_nothing_is_a_warning_that_names_a_hidden_owner() {
        let found = run(Policy::default(), "paymnts");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Warning);
        assert_eq!(
            found[0].summary(),
            "RG112 spec.host: spec.host paymnts.shop.svc.cluster.local matches no service or serviceentry visible in \
             namespace shop, so the destinationrule applies to nothing; expected the host of an existing service or \
             serviceentry"
        );
        let found = run(Policy::default(), "ledger.billing.svc.cluster.local");
        assert!(
            found[0].message.contains("(service billing/ledger declares it, but its exportTo hides it from shop)"),
            "{found:#?}"
        );
        assert!(run(Policy::default(), "api.paypal.com").len() == 1);
    }

    #[test]
    fn the_policy_key_unused_rules_raises_or_drops_it() {
        let deny = Policy { unused_rules: Action::Deny, ..Policy::default() };
        assert_eq!(run(deny, "paymnts")[0].severity, Severity::Error);
        assert!(run(Policy { unused_rules: Action::Off, ..Policy::default() }, "paymnts").is_empty());
    }
}
