//! A reconcile's scope: the Services a set of changes touches, and the
//! objects that belong to them. A change reconciles those Services only;
//! the periodic resync still reconciles everything, so a dependency missed
//! here is corrected within one resync.

use std::collections::BTreeSet;

use crate::model::{Kind, ObjectKey, Spec};
use crate::policy::snapshot::{Entry, http_route_backends, virtual_service_hosts};
use crate::policy::{Snapshot, hosts};

/// The objects of `kind` that belong to one of `services`: generated from it
/// (`routeguard.io/service`), or an opted-in DestinationRule for its host.
pub(super) fn in_scope<'a>(snapshot: &'a Snapshot, kind: Kind, services: &BTreeSet<ObjectKey>) -> Vec<&'a Entry> {
    let namespaces: BTreeSet<&str> = services.iter().map(|k| k.namespace.as_str()).collect();
    let mine = |namespace: &str, name: &str| {
        services.contains(&ObjectKey { kind: Kind::Service, namespace: namespace.to_string(), name: name.to_string() })
    };
    namespaces
        .into_iter()
        .flat_map(|ns| snapshot.in_namespace(kind, ns))
        .filter(|entry| match entry.source_service() {
            Some(source) => mine(entry.namespace(), source),
            None => {
                entry.manages_subsets()
                    && entry.rule_host(snapshot.domain()).is_some_and(|host| {
                        hosts::split_service_host(&host, snapshot.domain()).is_some_and(|(n, ns)| mine(ns, n))
                    })
            }
        })
        .collect()
}

/// The Services whose generated objects the changes of `changed` may touch,
/// judged on both sides (`before`, `after`): a Service itself (or the one a
/// generated object was made from), the Services selecting a Deployment's
/// pods, the Service of a DestinationRule's host, and the Services routes
/// send to (pruning keeps what routes use). A changed Service that is gone is
/// in the set too: its generated objects are pruned.
pub fn affected_services<'a>(
    before: &Snapshot,
    after: &Snapshot,
    changed: impl IntoIterator<Item = &'a ObjectKey>,
) -> BTreeSet<ObjectKey> {
    let mut services = BTreeSet::new();
    for key in changed {
        for snapshot in [before, after] {
            if let Some(entry) = snapshot.get(key) {
                services_of(snapshot, entry, &mut services);
            }
        }
    }
    services
}

fn service_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey { kind: Kind::Service, namespace: namespace.to_string(), name: name.to_string() }
}

/// The Service a Service's generation belongs to: its source if routeguard made it.
fn owning_service(entry: &Entry) -> ObjectKey {
    service_key(entry.namespace(), entry.source_service().unwrap_or(entry.name()))
}

/// The Services behind `host`, if it is a Service's.
fn host_service(snapshot: &Snapshot, host: &str, out: &mut BTreeSet<ObjectKey>) {
    let Some((name, namespace)) = hosts::split_service_host(host, snapshot.domain()) else { return };
    let key = service_key(namespace, name);
    match snapshot.get(&key) {
        Some(service) => out.insert(owning_service(service)),
        None => out.insert(key),
    };
}

fn services_of(snapshot: &Snapshot, entry: &Entry, out: &mut BTreeSet<ObjectKey>) {
    let domain = snapshot.domain();
    let ns = entry.namespace();
    match (entry.kind(), entry.spec()) {
        (Kind::Service, _) => {
            out.insert(owning_service(entry));
        }
        (Kind::DestinationRule, _) => match entry.source_service() {
            Some(source) => {
                out.insert(service_key(ns, source));
            }
            None => {
                if let Some(host) = entry.rule_host(domain) {
                    host_service(snapshot, &host, out);
                }
            }
        },
        (Kind::Deployment, Some(Spec::Deployment(deployment))) => {
            for (service, _) in snapshot.services_selecting(ns, &deployment.template.metadata.labels) {
                out.insert(owning_service(service));
            }
        }
        (Kind::VirtualService, Some(Spec::VirtualService(vs))) => {
            for host in virtual_service_hosts(vs) {
                host_service(snapshot, &hosts::qualify(host, ns, domain), out);
            }
        }
        (Kind::HttpRoute, Some(Spec::HttpRoute(route))) => {
            for backend in http_route_backends(route).filter(|b| b.is_service() && !b.name.is_empty()) {
                let host = hosts::service_host(&backend.name, backend.namespace.as_deref().unwrap_or(ns), domain);
                host_service(snapshot, &host, out);
            }
        }
        _ => {}
    }
}
