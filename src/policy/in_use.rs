//! RG303: deleting a Deployment or Service that live traffic still goes to.

use crate::model::{FieldPath, Kind, Labels, Object, Spec, selects};

use super::snapshot::Entry;
use super::subsets::{kind_name, route_name};
use super::{Code, Context, Finding, hosts};

/// Errors when deleting `old` would leave a route with weight > 0 and no backend.
pub fn deletion_in_use(ctx: Context<'_>, old: &Object) -> Vec<Finding> {
    match old.kind() {
        Kind::Service => service_in_use(ctx, old),
        Kind::Deployment => deployment_in_use(ctx, old),
        _ => Vec::new(),
    }
}

/// A Service delete: every route that sends live traffic to its host.
fn service_in_use(ctx: Context<'_>, old: &Object) -> Vec<Finding> {
    let domain = ctx.snapshot.domain();
    let host = hosts::service_host(old.name(), old.namespace(), domain);
    let mut findings = Vec::new();
    for route in ctx.snapshot.routes_to(&host) {
        for (path, weight) in live_references(ctx, route, &host, None) {
            findings.push(refusal(
                old,
                format!(
                    "service {}/{} still receives traffic: {} {} sends weight {weight} to it at {path}; \
                     remove or re-weight that route first",
                    old.namespace(),
                    old.name(),
                    kind_name(route.kind()),
                    route_name(route.key()),
                ),
            ));
        }
    }
    findings
}

/// A Deployment delete: routes whose traffic only this Deployment's pods can serve.
fn deployment_in_use(ctx: Context<'_>, old: &Object) -> Vec<Finding> {
    let Ok(spec) = old.spec::<crate::model::core::DeploymentSpec>() else { return Vec::new() };
    let labels = &spec.template.metadata.labels;
    let domain = ctx.snapshot.domain();
    let mut findings = Vec::new();
    for (service, svc) in ctx.snapshot.services_selecting(old.namespace(), labels) {
        let host = hosts::service_host(service.name(), service.namespace(), domain);
        for route in ctx.snapshot.routes_to(&host) {
            // Pods this route's traffic needs: the Service's, narrowed by the subset's labels.
            let served_elsewhere = |subset_labels: Option<&Labels>| {
                // The subset's labels override the selector's, as a later insert would.
                let wanted: Labels = svc.selector.iter().chain(subset_labels.into_iter().flatten()).collect();
                !selects(&wanted, labels)
                    || ctx.snapshot.deployments_selected(old.namespace(), &wanted).iter().any(|d| *d.key() != old.key)
            };
            for (path, weight) in live_references(ctx, route, &host, Some(&served_elsewhere)) {
                findings.push(refusal(
                    old,
                    format!(
                        "deployment {}/{} is the last one serving traffic that {} {} sends with weight {weight} \
                         at {path} (service {}); move that traffic to another version first",
                        old.namespace(),
                        old.name(),
                        kind_name(route.kind()),
                        route_name(route.key()),
                        service.name(),
                    ),
                ));
            }
        }
    }
    findings
}

/// Whether pods other than the deleted Deployment's serve a route's traffic,
/// given the labels of the subset it names.
type ServedElsewhere<'a> = dyn Fn(Option<&Labels>) -> bool + 'a;

/// The places in `route` that send weight > 0 to `host` (mirrors are not live
/// traffic), skipping those `served_elsewhere` says other pods can take,
/// given the labels of the subset they name.
fn live_references(
    ctx: Context<'_>,
    route: &Entry,
    host: &str,
    served_elsewhere: Option<&ServedElsewhere<'_>>,
) -> Vec<(FieldPath, i64)> {
    let domain = ctx.snapshot.domain();
    let from = route.namespace();
    let mut out = Vec::new();
    match route.spec() {
        Some(Spec::VirtualService(vs)) => {
            for used in vs.uses() {
                let dest = used.destination;
                let Some(weight) = used.weight else { continue };
                if weight <= 0 || hosts::qualify(&dest.host, from, domain) != host {
                    continue;
                }
                if let Some(elsewhere) = served_elsewhere {
                    let subset_labels = dest.subset.as_deref().and_then(|name| {
                        ctx.snapshot.destination_rules(from, host, None).and_then(|r| r.subset(name).map(|s| &s.labels))
                    });
                    if dest.subset.is_some() && subset_labels.is_none() {
                        // The subset resolves nowhere: this route is broken already, not by this delete.
                        continue;
                    }
                    if elsewhere(subset_labels) {
                        continue;
                    }
                }
                out.push((used.path(), weight));
            }
        }
        Some(Spec::HttpRoute(spec)) => {
            for (i, rule) in spec.rules.iter().enumerate() {
                for (j, backend) in rule.backend_refs.iter().enumerate() {
                    let target =
                        hosts::service_host(&backend.name, backend.namespace.as_deref().unwrap_or(from), domain);
                    let weight = backend.weight.unwrap_or(1);
                    if !backend.is_service() || target != host || weight <= 0 {
                        continue;
                    }
                    if served_elsewhere.is_some_and(|elsewhere| elsewhere(None)) {
                        continue;
                    }
                    out.push((FieldPath::new("spec").key("rules").index(i).key("backendRefs").index(j), weight));
                }
            }
        }
        _ => {}
    }
    out
}

fn refusal(old: &Object, message: String) -> Finding {
    Finding::new(Code::RG303, &old.key, FieldPath::root(), message)
}

#[cfg(test)]
#[path = "in_use/tests.rs"]
mod tests;
