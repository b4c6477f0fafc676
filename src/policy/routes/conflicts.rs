//! RG111: VirtualServices that bind the same host for the mesh (Istio's
//! IST0109). Sidecars do not merge VirtualServices for one host: where both
//! are visible, one of them applies and the other is ignored, and which one
//! is not something to rely on. VirtualServices bound only to gateways may be
//! split across objects on purpose (Istio merges those per gateway) and
//! delegates (no `hosts`) bind nothing, so neither counts.

use crate::model::istio::VirtualServiceSpec;
use crate::model::{FieldPath, ObjectKey};
use crate::policy::{Code, Context, Finding, hosts, visibility};

/// The findings about the `spec.hosts` of one VirtualService against the
/// other mesh-bound VirtualServices of the snapshot: one hash lookup per host.
///
/// Hosts are compared as qualified strings, wildcards included: `*.shop.com`
/// conflicts with `*.shop.com` only, not with `api.shop.com`. Overlapping
/// wildcards are legal in Istio (the most specific host wins), so equality is
/// the conflict that is certain.
pub(super) fn check(out: &mut Vec<Finding>, ctx: Context<'_>, key: &ObjectKey, spec: &VirtualServiceSpec) {
    if !visibility::binds_mesh(spec) {
        return;
    }
    let list = FieldPath::new("spec").key("hosts");
    // A host written twice (short and qualified) is reported once.
    let mut seen: Vec<String> = Vec::new();
    for (i, written) in spec.hosts.iter().enumerate() {
        if written.is_empty() {
            continue;
        }
        let host = hosts::qualify(written, &key.namespace, ctx.snapshot.domain());
        if seen.contains(&host) {
            continue;
        }
        // The object itself, as stored before this UPDATE, is no conflict.
        for other in ctx.snapshot.virtual_services_binding(&host).filter(|e| e.key() != key) {
            let Some(shared) =
                visibility::shared_namespace(&spec.export_to, &key.namespace, other.exports(), other.namespace())
            else {
                continue;
            };
            let at = list.index(i);
            let message = format!(
                "{at} ({host}) is also bound to the mesh by virtualservice {}/{}, and both are visible in {shared}; \
                 sidecars do not merge virtualservices for one host and apply only one of them, unpredictably; \
                 expected one virtualservice for the host (move the http routes of both into one) or exportTo \
                 lists that do not overlap",
                other.namespace(),
                other.name()
            );
            out.push(Finding::new(Code::RG111, key, at, message));
        }
        seen.push(host);
    }
}

#[cfg(test)]
#[path = "conflicts/tests.rs"]
mod tests;
