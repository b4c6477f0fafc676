//! RG113: two DestinationRules of one namespace for one host that conflict.
//! Istio merges such rules, but only their subsets: a subset name the second
//! one defines again is dropped (the oldest rule's definition stays), and of
//! several top-level `trafficPolicy` only the oldest rule's applies. Oldest
//! means the earliest `metadata.creationTimestamp`, then the first name.

use std::cmp::Ordering;

use crate::model::istio::DestinationRuleSpec;
use crate::model::{FieldPath, Lookup as _, Object};

use super::snapshot::Entry;
use super::subsets::show_labels;
use super::{Code, Context, Finding, Severity, hosts};

/// How old a DestinationRule is: its creation timestamp (RFC 3339 in UTC, as
/// the API server writes it, so the text orders like the time), then its name.
#[derive(Debug, Clone, Copy)]
struct Age<'a> {
    /// `None` when unknown, and for an object being created: newer than every
    /// object with a timestamp (in a cluster every stored object has one).
    created: Option<&'a str>,
    name: &'a str,
}

impl Age<'_> {
    /// True when `self` is older than `other`: an earlier timestamp, a known
    /// one before an unknown one, else the first name (so between objects
    /// without timestamps, such as `check`'s files, the answer is the same
    /// whichever of them is judged).
    fn is_older_than(&self, other: &Age<'_>) -> bool {
        let by_time = match (self.created, other.created) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_time.then_with(|| self.name.cmp(other.name)) == Ordering::Less
    }
}

fn created(raw: &serde_json::Value) -> Option<&str> {
    raw.lookup("/metadata/creationTimestamp").and_then(serde_json::Value::as_str).filter(|t| !t.is_empty())
}

/// RG113 for `object`, a DestinationRule being created (`creating`: newer
/// than every stored rule with a timestamp) or updated, against the other DestinationRules of its namespace
/// for exactly the same qualified host.
///
/// Rules with a `workloadSelector` apply to some workloads only and are not
/// merged with the others the same way, so they are left out on both sides.
pub fn check(ctx: Context<'_>, object: &Object, spec: &DestinationRuleSpec, creating: bool) -> Vec<Finding> {
    let key = &object.key;
    let mut out = Vec::new();
    if spec.host.is_empty() || spec.workload_selector.is_some() {
        return out;
    }
    let domain = ctx.snapshot.domain();
    let host = hosts::qualify(&spec.host, &key.namespace, domain);
    let own = Age { created: if creating { None } else { created(&object.raw) }, name: &key.name };
    let mut others: Vec<(&Entry, &DestinationRuleSpec)> = ctx
        .snapshot
        .rules_covering(&host)
        .filter(|e| e.namespace() == key.namespace && e.key() != key)
        .filter_map(|e| Some((e, e.destination_rule()?)))
        .filter(|(_, s)| s.workload_selector.is_none() && hosts::qualify(&s.host, &key.namespace, domain) == host)
        .collect();
    others.sort_by(|a, b| a.0.key().cmp(b.0.key()));
    for (other, other_spec) in others {
        let name = format!("destinationrule {}/{}", other.namespace(), other.name());
        // The stored JSON is parsed again only for a rule that conflicts.
        let conflicts =
            spec.subsets.iter().any(|s| other_spec.subsets.iter().any(|o| o.name == s.name && o.labels != s.labels))
                || (spec.traffic_policy.is_some() && other_spec.traffic_policy.is_some());
        if !conflicts {
            continue;
        }
        let raw = other.raw();
        let other_age = Age { created: created(&raw), name: other.name() };
        let own_older = own.is_older_than(&other_age);
        for (i, subset) in spec.subsets.iter().enumerate() {
            let Some(theirs) = other_spec.subsets.iter().find(|o| o.name == subset.name && o.labels != subset.labels)
            else {
                continue;
            };
            let kept = if own_older {
                format!("this one, the oldest, so the definition of {name} is ignored")
            } else {
                format!("the one of {name}, the oldest, so this definition is ignored")
            };
            out.push(Finding::new(
                Code::RG113,
                key,
                FieldPath::new("spec").key("subsets").index(i).key("name"),
                format!(
                    "subset {:?} selects {} here and {} in {name}, for the same host {host}; istio merges the \
                     subsets of destinationrules for one host in one namespace and keeps {kept}; expected each \
                     subset defined once, or with the same labels",
                    subset.name,
                    show_labels(&subset.labels),
                    show_labels(&theirs.labels),
                ),
            ));
        }
        // Two equal policies lose nothing whichever applies.
        if let (Some(mine), Some(theirs)) = (&spec.traffic_policy, &other_spec.traffic_policy)
            && mine != theirs
        {
            let outcome = if own_older {
                format!(
                    "spec.trafficPolicy of {name} is ignored: this destinationrule is older, its trafficPolicy applies"
                )
            } else {
                format!("spec.trafficPolicy is ignored: {name} is older, its trafficPolicy applies")
            };
            out.push(
                Finding::new(
                    Code::RG113,
                    key,
                    FieldPath::new("spec").key("trafficPolicy"),
                    format!(
                        "{outcome}; both set a top-level trafficPolicy for the host {host}, and istio merges only the \
                         subsets of destinationrules for one host in one namespace, keeping the trafficPolicy of the \
                         oldest; expected one trafficPolicy for the host (move it into one destinationrule)"
                    ),
                )
                .with_severity(Severity::Warning),
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "duplicate_rules/tests.rs"]
mod tests;
