//! The background audit's judgement, kept per routing object so that a pass
//! after a change judges again only what the change can affect.
//!
//! A whole pass judges every routing object ([`Engine::audit_all`]). A
//! scoped pass ([`Engine::audit_since`]) reads the snapshot's change log
//! since the last pass and judges again the routing objects that changed and
//! those that reach a host a change touched: the host of a changed Service
//! or DestinationRule, the hosts of the Services that select a changed
//! Deployment's pods (before or after the change), the hosts a changed
//! ServiceEntry declares or a changed VirtualService routes to or binds. For
//! each such host: the routes to it, the VirtualServices bound to it, the
//! DestinationRules covering it and the ServiceEntries declaring it; and
//! every HTTPRoute when a Service changed (a parentRef may name it). Changes
//! whose reach is not a set of hosts (Namespaces and their enforcement
//! labels, Gateways, ReferenceGrants, HTTPRoutes, VirtualServices bound to
//! gateways or delegating, wildcard hosts) and a log that no longer reaches
//! back make the pass whole. The periodic pass is always whole, and changes
//! do not put it off, so anything the scope missed is corrected within one
//! interval.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Kind, ObjectKey, Spec};

use super::engine::{AUDITED, Engine};
use super::finding::{self, Finding, Severity};
use super::snapshot::{Entry, Snapshot, virtual_service_hosts};
use super::{hosts, visibility};

/// What one audit pass found, per routing object, and the snapshot revision it judged.
#[derive(Debug, Clone, Default)]
pub struct Audited {
    revision: u64,
    findings: BTreeMap<ObjectKey, Vec<Finding>>,
    /// How many objects this pass judged (all of them, or the scope).
    judged: usize,
    whole: bool,
}

impl Audited {
    /// Every finding (errors and warnings), sorted and without duplicates.
    pub fn findings(&self) -> Vec<Finding> {
        let mut all: Vec<Finding> = self.findings.values().flatten().cloned().collect();
        finding::sort_unique(&mut all);
        all
    }

    /// How many routing objects this pass judged.
    pub fn judged(&self) -> usize {
        self.judged
    }

    /// True when this pass judged every routing object.
    pub fn whole(&self) -> bool {
        self.whole
    }
}

impl Engine {
    /// Every routing object judged (see [`Engine::audit`]), kept per object.
    pub fn audit_all(&self, snapshot: &Snapshot) -> Audited {
        let findings: BTreeMap<ObjectKey, Vec<Finding>> = snapshot
            .entries()
            .filter(|e| AUDITED.contains(&e.kind()))
            .map(|entry| (entry.key().clone(), self.judge(snapshot, entry)))
            .collect();
        Audited { revision: snapshot.revision(), judged: findings.len(), findings, whole: true }
    }

    /// `previous` (a pass over `before`) brought up to `after`: the routing
    /// objects a change since can affect judged again, the others' findings
    /// kept; a whole pass when the change cannot be scoped (module doc).
    /// `after` must be a later copy of `before` (the index's next publication).
    pub fn audit_since(&self, before: &Snapshot, previous: Audited, after: &Snapshot) -> Audited {
        let Some(scope) = scope(before, &previous, after) else { return self.audit_all(after) };
        let mut findings = previous.findings;
        for key in &scope {
            match after.get(key) {
                Some(entry) => findings.insert(key.clone(), self.judge(after, entry)),
                None => findings.remove(key),
            };
        }
        Audited { revision: after.revision(), findings, judged: scope.len(), whole: false }
    }

    /// One routing object's audit findings, the policy applied, infos dropped.
    fn judge(&self, snapshot: &Snapshot, entry: &Entry) -> Vec<Finding> {
        let mut found = self.policy().apply(self.judge_stored(snapshot, &entry.object()), None);
        found.retain(|f| f.severity != Severity::Info);
        found
    }
}

/// The routing objects to judge again, or `None` for a whole pass.
fn scope(before: &Snapshot, previous: &Audited, after: &Snapshot) -> Option<BTreeSet<ObjectKey>> {
    if previous.revision != before.revision() {
        return None;
    }
    let changed: BTreeSet<&ObjectKey> = after.changes_since(previous.revision)?.collect();
    let mut scope = BTreeSet::new();
    let mut touched = BTreeSet::new();
    let mut services_changed = false;
    for key in changed {
        // Only these kinds reach a set of hosts; a change of any other makes the pass whole.
        let hosts_only = matches!(
            key.kind,
            Kind::Service | Kind::Deployment | Kind::DestinationRule | Kind::ServiceEntry | Kind::VirtualService
        );
        if !hosts_only {
            return None;
        }
        if AUDITED.contains(&key.kind) {
            scope.insert(key.clone());
        }
        services_changed |= key.kind == Kind::Service;
        for snapshot in [before, after] {
            if let Some(entry) = snapshot.get(key) {
                hosts_touched(snapshot, entry, &mut touched)?;
            }
        }
    }
    for host in &touched {
        let reached = after
            .routes_to(host)
            .chain(after.virtual_services_binding(host))
            .chain(after.rules_covering(host))
            .chain(after.host_owners(host).filter(|e| e.kind() == Kind::ServiceEntry));
        scope.extend(reached.map(|e| e.key().clone()));
    }
    // An HTTPRoute may name a Service as its parent (mesh routing), and RG114
    // suggests the closest Service name: the index does not hold parents by
    // host, so any Service change judges every HTTPRoute (they are few beside
    // VirtualServices in an Istio mesh; a change to one is a whole pass anyway).
    if services_changed {
        scope.extend(after.of_kind(Kind::HttpRoute).into_iter().map(|e| e.key().clone()));
    }
    Some(scope)
}

/// Adds the hosts a change of `entry` can matter to; `None` when its reach is not a set of hosts.
fn hosts_touched(snapshot: &Snapshot, entry: &Entry, out: &mut BTreeSet<String>) -> Option<()> {
    let (ns, domain) = (entry.namespace(), snapshot.domain());
    let qualified = |host: &str| hosts::qualify(host, ns, domain);
    match (entry.kind(), entry.spec()) {
        (Kind::Service, _) => {
            out.insert(hosts::service_host(entry.name(), ns, domain));
        }
        // The Services selecting its pods (before and after the change: both snapshots are asked).
        (Kind::Deployment, Some(Spec::Deployment(deployment))) => {
            let selecting = snapshot.services_selecting(ns, &deployment.template.metadata.labels);
            out.extend(selecting.map(|(s, _)| hosts::service_host(s.name(), ns, domain)));
        }
        (Kind::DestinationRule, Some(Spec::DestinationRule(rule))) if !rule.host.contains('*') => {
            out.insert(qualified(&rule.host));
        }
        (Kind::ServiceEntry, Some(Spec::ServiceEntry(se))) if !se.hosts.iter().any(|h| h.contains('*')) => {
            out.extend(se.hosts.iter().map(|h| h.to_ascii_lowercase()));
        }
        // Bound to the mesh only (no gateways, or `mesh` alone).
        (Kind::VirtualService, Some(Spec::VirtualService(vs)))
            if vs.gateways.iter().all(|g| g == visibility::MESH_GATEWAY) =>
        {
            if vs.hosts.is_empty()
                || vs.hosts.iter().any(|h| h.contains('*'))
                || vs.http.iter().any(|r| r.delegate.is_some())
            {
                return None;
            }
            out.extend(virtual_service_hosts(vs).chain(vs.hosts.iter().map(String::as_str)).map(qualified));
        }
        // A spec that does not parse is judged (RG100) but reaches nothing else.
        (_, None) => {}
        // Gateway-bound, delegating or wildcard: not a set of hosts.
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests;
