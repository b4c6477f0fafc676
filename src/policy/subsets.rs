//! DestinationRule rules: duplicate subsets (RG202), subsets that select
//! nothing (RG203) and removal of subsets still in use (RG201).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::istio::{DestinationRuleSpec, Use};
use crate::model::{FieldPath, Kind, Labels, Object, ObjectKey, Spec, selects};

use super::snapshot::RuleChange;
use super::{Code, Context, Finding, hosts};

/// Findings about a DestinationRule on its own and against the Deployments it selects.
pub fn check_destination_rule(ctx: Context<'_>, key: &ObjectKey, spec: &DestinationRuleSpec) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        if let Some(earlier) = first.get(subset.name.as_str()) {
            findings.push(Finding::new(
                Code::RG202,
                key,
                FieldPath::new("spec").key("subsets").index(i).key("name"),
                format!(
                    "subset {:?} is defined twice (spec.subsets[{earlier}] and spec.subsets[{i}]); subset names must be unique",
                    subset.name
                ),
            ));
        } else {
            first.insert(&subset.name, i);
        }
    }
    findings.extend(unselected_subsets(ctx, key, spec));
    findings
}

/// The node locality labels Istio adds to every endpoint's labels (from the
/// node the pod runs on), so a subset may select on them although no pod
/// template carries them.
pub const LOCALITY_LABELS: [&str; 4] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
    "kubernetes.io/hostname",
];

/// True for a key of [`LOCALITY_LABELS`].
fn is_locality_label(key: &str) -> bool {
    LOCALITY_LABELS.contains(&key)
}

/// RG203: subsets whose labels select no Deployment behind the host's Service.
///
/// A subset is judged on its labels other than [`LOCALITY_LABELS`] (pods get
/// those at runtime, pod templates never carry them), so one with locality
/// labels only selects every pod behind the Service. A locality label with an
/// empty value is still reported: no node has an empty locality.
fn unselected_subsets(ctx: Context<'_>, key: &ObjectKey, spec: &DestinationRuleSpec) -> Vec<Finding> {
    let host = hosts::qualify(&spec.host, &key.namespace, ctx.snapshot.domain());
    // Only a Service with a selector says which pods are behind the host.
    let Some(service) = ctx.snapshot.service(&host) else { return Vec::new() };
    let Some(Spec::Service(svc)) = service.spec() else { return Vec::new() };
    if svc.selector.is_empty() {
        return Vec::new();
    }
    let templates: Vec<(&str, &Labels)> = ctx
        .snapshot
        .deployments_selected(service.namespace(), &svc.selector)
        .into_iter()
        .filter_map(|d| Some((d.name(), &d.deployment()?.template.metadata.labels)))
        .collect();
    let label = ctx.policy.version_label.as_str();
    let mut findings = Vec::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let at = FieldPath::new("spec").key("subsets").index(i).key("labels");
        for (k, _) in subset.labels.iter().filter(|(k, v)| is_locality_label(k) && v.is_empty()) {
            findings.push(Finding::new(
                Code::RG203,
                key,
                at.key(k),
                format!(
                    "subset {:?} selects locality label {k} with an empty value, which no node has; \
                     expected a non-empty value or no {k} label",
                    subset.name
                ),
            ));
        }
        let judged: Labels = subset.labels.iter().filter(|(k, _)| !is_locality_label(k)).collect();
        let wanted: Labels = svc.selector.iter().chain(&judged).collect();
        if templates.iter().any(|(_, labels)| selects(&wanted, labels)) {
            continue;
        }
        let found: BTreeSet<&str> = templates.iter().filter_map(|(_, labels)| labels.get(label)).collect();
        let found = if found.is_empty() {
            format!("no deployment behind service {} carries a {label} label", service.name())
        } else {
            format!("deployments behind service {} have {label} {}", service.name(), join(found))
        };
        let selected = match (judged.is_empty(), judged.len() < subset.labels.len()) {
            (true, true) => "only locality labels".to_string(),
            (false, true) => format!("{} (besides locality labels)", show_labels(&judged)),
            (_, false) => show_labels(&judged),
        };
        findings.push(Finding::new(
            Code::RG203,
            key,
            at,
            format!(
                "subset {:?} selects {selected} in namespace {}, which matches no deployment's pod template; {found}",
                subset.name,
                service.namespace()
            ),
        ));
    }
    findings
}

/// What becomes of a DestinationRule that [`removed_in_use`] judges.
#[derive(Debug, Clone, Copy)]
pub enum Next<'a> {
    /// A DELETE.
    Deleted,
    /// An UPDATE to this spec, already read (the caller has judged it too);
    /// `None` when the new object is unreadable: it gets its own RG100 and
    /// is judged as a deletion.
    Updated(Option<&'a DestinationRuleSpec>),
}

/// RG201: subsets that `old` defines and its next state does not, while a
/// VirtualService still routes or mirrors to them.
pub fn removed_in_use(ctx: Context<'_>, old: &Object, next: Next<'_>) -> Vec<Finding> {
    let Ok(old_spec) = old.spec::<DestinationRuleSpec>() else { return Vec::new() };
    let new_spec = match next {
        Next::Updated(spec) => spec,
        Next::Deleted => None,
    };
    let domain = ctx.snapshot.domain();
    let old_host = hosts::qualify(&old_spec.host, &old.key.namespace, domain);
    let same_host = new_spec.as_ref().is_some_and(|n| hosts::qualify(&n.host, &old.key.namespace, domain) == old_host);
    let kept: BTreeSet<&str> = match (&new_spec, same_host) {
        (Some(n), true) => n.subsets.iter().map(|s| s.name.as_str()).collect(),
        _ => BTreeSet::new(),
    };
    let removed: BTreeSet<&str> =
        old_spec.subsets.iter().map(|s| s.name.as_str()).filter(|name| !kept.contains(name)).collect();
    if removed.is_empty() {
        return Vec::new();
    }
    let change = RuleChange { key: &old.key, replacement: new_spec };
    let routed: Vec<&str> = if old_host.starts_with('*') {
        ctx.snapshot.routed_hosts_covered_by(&old_host).collect()
    } else {
        vec![old_host.as_str()]
    };
    let mut findings = Vec::new();
    for host in routed {
        for route in ctx.snapshot.routes_to(host) {
            let Some(Spec::VirtualService(vs)) = route.spec() else { continue };
            let from = route.namespace();
            for used in vs.uses() {
                let Some(subset) = used.destination.subset.as_deref() else { continue };
                if !removed.contains(subset) || hosts::qualify(&used.destination.host, from, domain) != host {
                    continue;
                }
                let before = ctx.snapshot.destination_rules(from, host, None);
                let after = ctx.snapshot.destination_rules(from, host, Some(change));
                let defined_before = before.as_ref().is_some_and(|r| r.subset(subset).is_some());
                let defined_after = after.as_ref().is_some_and(|r| r.subset(subset).is_some());
                if defined_before && !defined_after {
                    let verb = match next {
                        Next::Updated(_) => "removing",
                        Next::Deleted => "deleting the destinationrule removes",
                    };
                    findings.push(Finding::new(
                        Code::RG201,
                        &old.key,
                        FieldPath::new("spec").key("subsets"),
                        format!(
                            "{verb} subset {subset:?} of host {host}, which {} {} still {} at {}; \
                             move that traffic off {subset:?} first",
                            kind_name(route.kind()),
                            route_name(route.key()),
                            use_verb(&used),
                            used.path(),
                        ),
                    ));
                }
            }
        }
    }
    findings
}

/// `routes weight 20 to it` / `mirrors traffic to it`.
pub fn use_verb(used: &Use<'_>) -> String {
    match used.weight {
        Some(w) => format!("routes weight {w} to it"),
        None => "mirrors traffic to it".to_string(),
    }
}

/// `virtualservice` / `httproute`, as messages name kinds.
pub fn kind_name(kind: Kind) -> String {
    kind.as_str().to_ascii_lowercase()
}

/// `namespace/name`.
pub fn route_name(key: &ObjectKey) -> String {
    format!("{}/{}", key.namespace, key.name)
}

/// `{app=reviews, version=v2}`.
pub(super) fn show_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "{}".to_string();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

fn join<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[path = "subsets/tests.rs"]
mod tests;
