//! RG114: gateways that do not exist (Istio's IST0101 for a VirtualService
//! gateway, the Gateway API's `Accepted: False` for a parentRef). A
//! VirtualService bound to a Gateway that is not there configures no proxy at
//! all, and an HTTPRoute whose parent is missing attaches to nothing; neither
//! is refused by the API server, and both surface only as traffic that never
//! arrives.
//!
//! Each reference is one hash lookup by key; only a missing one looks at its
//! namespace for a did-you-mean.

use crate::model::gateway::{HttpRouteSpec, Parent, ParentRef};
use crate::model::istio::VirtualServiceSpec;
use crate::model::{FieldPath, Kind, ObjectKey};

use super::visibility::MESH_GATEWAY;
use super::{Code, Context, Finding, fields};

/// The Istio Gateway a `gateways` entry of a VirtualService in `own` names,
/// as `(namespace, name)`, the way istiod resolves it: `<namespace>/<name>`
/// (`./<name>` is the VirtualService's namespace), a bare `<name>` in the
/// VirtualService's namespace, or the legacy `<name>.<namespace>[.svc.<domain>]`.
/// `None` for the reserved `mesh` (the sidecars) and an empty entry.
pub fn istio_gateway_ref<'a>(written: &'a str, own: &'a str) -> Option<(&'a str, &'a str)> {
    if written.is_empty() || written == MESH_GATEWAY {
        return None;
    }
    if let Some((namespace, name)) = written.split_once('/') {
        return Some((if namespace == "." { own } else { namespace }, name));
    }
    match written.split_once('.') {
        Some((name, rest)) => Some((rest.split('.').next().unwrap_or(rest), name)),
        None => Some((own, written)),
    }
}

/// The object a parentRef of an HTTPRoute in `own` names, if its kind is one routeguard judges.
pub fn parent_key(parent: &ParentRef, own: &str) -> Option<ObjectKey> {
    let kind = match parent.parent() {
        Parent::Gateway => Kind::Gateway,
        Parent::Service => Kind::Service,
        Parent::Other => return None,
    };
    if parent.name.is_empty() {
        return None;
    }
    let namespace = parent.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(own);
    Some(ObjectKey { kind, namespace: namespace.to_string(), name: parent.name.clone() })
}

/// `istio gateway`, `gateway api gateway`, `service`: how messages name the kinds involved.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::IstioGateway => "istio gateway",
        Kind::Gateway => "gateway api gateway",
        _ => "service",
    }
}

/// `; did you mean "<name>"?` for the object of `kind` in `namespace` whose name is closest to `name`.
fn did_you_mean(ctx: Context<'_>, kind: Kind, namespace: &str, name: &str, qualify: bool) -> String {
    let names = ctx.snapshot.in_namespace(kind, namespace).map(|e| e.name());
    match fields::suggest(name, names) {
        Some(close) if qualify => format!("; did you mean \"{namespace}/{close}\"?"),
        Some(close) => format!("; did you mean \"{close}\"?"),
        None => String::new(),
    }
}

/// ` (gateway api gateway shop/public exists, ...)` when the other kind of gateway has the name.
fn other_gateway(ctx: Context<'_>, missing: &ObjectKey, binds: &str) -> String {
    let other = match missing.kind {
        Kind::IstioGateway => Kind::Gateway,
        Kind::Gateway => Kind::IstioGateway,
        _ => return String::new(),
    };
    let key = ObjectKey { kind: other, ..missing.clone() };
    if ctx.snapshot.get(&key).is_none() {
        return String::new();
    }
    format!(" ({} {}/{} exists, but {binds})", kind_name(other), key.namespace, key.name)
}

/// RG114 for every `gateways` entry of a VirtualService: `spec.gateways` and
/// the `gateways` of each http, tls and tcp match.
pub fn check_virtual_service(ctx: Context<'_>, key: &ObjectKey, spec: &VirtualServiceSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    let root = FieldPath::new("spec");
    // Most matches name no gateways: their paths are not built.
    let mut lists: Vec<(FieldPath, &[String])> = Vec::new();
    if !spec.gateways.is_empty() {
        lists.push((root.key("gateways"), spec.gateways.as_slice()));
    }
    for (i, route) in spec.http.iter().enumerate() {
        for (j, m) in route.matches.iter().enumerate().filter(|(_, m)| !m.gateways.is_empty()) {
            lists.push((root.key("http").index(i).key("match").index(j).key("gateways"), m.gateways.as_slice()));
        }
    }
    for (field, routes) in [("tls", &spec.tls), ("tcp", &spec.tcp)] {
        for (i, route) in routes.iter().enumerate() {
            for (j, m) in route.matches.iter().enumerate().filter(|(_, m)| !m.gateways.is_empty()) {
                lists.push((root.key(field).index(i).key("match").index(j).key("gateways"), m.gateways.as_slice()));
            }
        }
    }
    for (list, gateways) in lists {
        for (i, written) in gateways.iter().enumerate() {
            let Some((namespace, name)) = istio_gateway_ref(written, &key.namespace) else { continue };
            let missing = ObjectKey { kind: Kind::IstioGateway, namespace: namespace.into(), name: name.into() };
            if ctx.snapshot.get(&missing).is_some() {
                continue;
            }
            let qualify = written.contains('/') || namespace != key.namespace;
            let message = format!(
                "gateway \"{written}\" does not exist: no istio gateway {namespace}/{name}{}; {list} names istio \
                 gateways as <name> (in the virtualservice's namespace), <namespace>/<name> or mesh (the \
                 sidecars){}",
                other_gateway(ctx, &missing, "virtualservices bind istio gateways"),
                did_you_mean(ctx, Kind::IstioGateway, namespace, name, qualify),
            );
            out.push(Finding::new(Code::RG114, key, list.index(i), message));
        }
    }
    out
}

/// RG114 for every `spec.parentRefs` entry of an HTTPRoute that names a
/// Gateway (the default group and kind) or a Service (mesh routing); parents
/// of other groups and kinds are not judged.
pub fn check_http_route(ctx: Context<'_>, key: &ObjectKey, spec: &HttpRouteSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    let list = FieldPath::new("spec").key("parentRefs");
    for (i, parent) in spec.parent_refs.iter().enumerate() {
        let Some(missing) = parent_key(parent, &key.namespace) else { continue };
        if ctx.snapshot.get(&missing).is_some() {
            continue;
        }
        let (ns, name) = (missing.namespace.as_str(), missing.name.as_str());
        let expected = match missing.kind {
            Kind::Gateway => format!(
                "expected an existing gateway api gateway (group gateway.networking.k8s.io, kind Gateway){}",
                other_gateway(ctx, &missing, "httproutes attach to gateway api gateways")
            ),
            _ => "expected an existing service (group \"\", kind Service) for mesh routing".to_string(),
        };
        let what = kind_name(missing.kind);
        let message = format!(
            "parentRef names {what} {ns}/{name}, which does not exist; {expected}{}",
            did_you_mean(ctx, missing.kind, ns, name, false),
        );
        out.push(Finding::new(Code::RG114, key, list.index(i).key("name"), message));
    }
    out
}

#[cfg(test)]
#[path = "gateways/tests.rs"]
mod tests;
