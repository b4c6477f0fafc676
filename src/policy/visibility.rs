//! Which client proxies a VirtualService reaches, and how each of them
//! resolves the DestinationRules of a host.
//!
//! A VirtualService bound to the mesh applies to the sidecars of every
//! namespace it is exported to (`exportTo`; absent means everywhere), and each
//! sidecar looks DestinationRules up from its own namespace first, then the
//! host's namespace, then the mesh root namespace (see
//! [`Snapshot::destination_rules`]). So a subset that only a DestinationRule
//! in the route's own namespace defines, for a host in another namespace,
//! works for clients in that namespace and is a 503 elsewhere. Routes bound
//! only to gateways are judged from their own namespace.

use std::fmt;

use smallvec::SmallVec;

use crate::model::istio::VirtualServiceSpec;

use super::hosts;
use super::snapshot::{Resolution, Snapshot};

/// The reserved gateway name of the sidecars of the mesh.
pub const MESH_GATEWAY: &str = "mesh";

/// A set of client namespaces that resolve a host alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Clients<'a> {
    /// The proxies of one namespace.
    Namespace(&'a str),
    /// Every namespace not named otherwise (a VirtualService exported everywhere).
    Others,
    /// The route's own namespace when nothing names it: it resolves like every other namespace.
    OwnAndOthers(&'a str),
}

impl<'a> Clients<'a> {
    /// The namespace a lookup for these clients starts from; `""` stands for a
    /// namespace that holds no DestinationRule and is named by no `exportTo`.
    fn lookup_namespace(self) -> &'a str {
        match self {
            Clients::Namespace(ns) | Clients::OwnAndOthers(ns) => ns,
            Clients::Others => "",
        }
    }
}

impl fmt::Display for Clients<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clients::Namespace(ns) => f.write_str(ns),
            Clients::Others => f.write_str("every other namespace"),
            Clients::OwnAndOthers(ns) => write!(f, "{ns} and every other namespace"),
        }
    }
}

/// True when the VirtualService applies to sidecars (no `gateways`, or `mesh` among them).
pub fn binds_mesh(vs: &VirtualServiceSpec) -> bool {
    vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH_GATEWAY)
}

/// The client namespaces a VirtualService of namespace `own` reaches, split
/// as finely as their resolution of `host` can differ, its own namespace first.
pub fn clients<'a>(snapshot: &'a Snapshot, own: &'a str, vs: &'a VirtualServiceSpec, host: &'a str) -> ClientSets<'a> {
    // Inline: this runs for every host of every check, and there are seldom more than three sets.
    let own_only = || ClientSets::from_iter([Clients::Namespace(own)]);
    if !binds_mesh(vs) {
        return own_only();
    }
    let everywhere = vs.export_to.is_empty() || vs.export_to.iter().any(|e| e == "*");
    if !everywhere {
        let mut out = ClientSets::new();
        for export in &vs.export_to {
            let ns = match export.as_str() {
                "." => own,
                "~" => continue,
                named => named,
            };
            if !out.contains(&Clients::Namespace(ns)) {
                out.push(Clients::Namespace(ns));
            }
        }
        // Exported nowhere, it applies to no one: judge it from its own namespace all the same.
        return if out.is_empty() { own_only() } else { out };
    }
    // Namespaces whose lookups can differ from a namespace that nothing
    // names: those holding a DestinationRule for the host (a rule is always
    // visible in its own namespace) and those such a rule is exported to by
    // name. Any other namespace, the host's and the root one included, looks
    // in the same places and sees the same rules as "every other namespace".
    let mut named: SmallVec<[&'a str; 4]> = SmallVec::new();
    for rule in snapshot.rules_covering(host) {
        named.push(rule.namespace());
        named.extend(rule.exports().iter().map(String::as_str).filter(|e| !matches!(*e, "." | "*" | "~")));
    }
    named.sort_unstable();
    named.dedup();
    // The route's own namespace, when nothing names it, is one of the others.
    let own_is_other = match named.iter().position(|n| *n == own) {
        Some(at) => {
            named.remove(at);
            false
        }
        None => true,
    };
    let mut out = ClientSets::new();
    out.push(if own_is_other { Clients::OwnAndOthers(own) } else { Clients::Namespace(own) });
    out.extend(named.into_iter().map(Clients::Namespace));
    if !own_is_other {
        out.push(Clients::Others);
    }
    out
}

/// The sets of client namespaces a route reaches, the route's own first.
pub type ClientSets<'a> = SmallVec<[Clients<'a>; 3]>;

/// True when a client in a namespace with no rules of its own sees exactly
/// `resolution`: it comes from the host's namespace (where such a client
/// looks after its own) and every rule in it is exported everywhere, so the
/// same most specific rules win there too.
pub fn seen_everywhere(snapshot: &Snapshot, resolution: &Resolution<'_>, host: &str) -> bool {
    let host_ns = hosts::split_service_host(host, snapshot.domain()).map(|(_, ns)| ns);
    let everywhere = |export: &[String]| export.is_empty() || export.iter().any(|e| e == "*");
    host_ns == Some(resolution.namespace) && resolution.rules.iter().all(|(_, spec)| everywhere(&spec.export_to))
}

/// Where two objects are visible at once, by their Istio `exportTo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared<'a> {
    /// Both are exported everywhere.
    Everywhere,
    /// Both are visible in this namespace (the first one found).
    Namespace(&'a str),
}

impl fmt::Display for Shared<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shared::Everywhere => f.write_str("every namespace"),
            Shared::Namespace(ns) => write!(f, "namespace {ns}"),
        }
    }
}

/// The namespaces an `exportTo` of an object of namespace `owner` names;
/// `None` for everywhere (empty, or `*` among them). `~` names none.
fn exported_namespaces<'a>(export_to: &'a [String], owner: &'a str) -> Option<impl Iterator<Item = &'a str> + Clone> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return None;
    }
    Some(export_to.iter().filter(|e| *e != "~").map(move |e| if e == "." { owner } else { e.as_str() }))
}

/// A namespace in which an object of namespace `a_ns` exported to `a` and one
/// of namespace `b_ns` exported to `b` are both visible, if there is one.
pub fn shared_namespace<'a>(a: &'a [String], a_ns: &'a str, b: &'a [String], b_ns: &'a str) -> Option<Shared<'a>> {
    match (exported_namespaces(a, a_ns), exported_namespaces(b, b_ns)) {
        (None, None) => Some(Shared::Everywhere),
        (None, Some(mut only)) | (Some(mut only), None) => only.next().map(Shared::Namespace),
        (Some(mut x), Some(y)) => x.find(|ns| y.clone().any(|other| other == *ns)).map(Shared::Namespace),
    }
}

/// The DestinationRules that `clients` see for `host`.
pub fn resolve<'a>(snapshot: &'a Snapshot, clients: Clients<'a>, host: &'a str) -> Option<Resolution<'a>> {
    snapshot.destination_rules(clients.lookup_namespace(), host, None)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::Object;
    use crate::policy::Policy;

    fn rule(namespace: &str, host: &str, export_to: Value) -> Object {
        let raw = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                         "metadata": {"name": format!("dr-{namespace}"), "namespace": namespace},
                         "spec": {"host": host, "exportTo": export_to, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}});
        Object::from_value(raw, "default").expect("object")
    }

    fn vs(spec: Value) -> VirtualServiceSpec {
        serde_json::from_value(spec).expect("spec")
    }

    const HOST: &str = "reviews.backend.svc.cluster.local";

    #[test]
    fn a_route_exported_everywhere_reaches_every_namespace_that_can_differ() {
        let snapshot = Snapshot::from_objects(
            &Policy::default(),
            [rule("frontend", HOST, json!([])), rule("backend", HOST, json!([".", "payments"]))],
        );
        let spec = vs(json!({"hosts": ["reviews"]}));
        let got: Vec<String> = clients(&snapshot, "frontend", &spec, HOST).iter().map(|c| c.to_string()).collect();
        assert_eq!(got, ["frontend", "backend", "payments", "every other namespace"]);
        let defines = |c: Clients<'_>| resolve(&snapshot, c, HOST).is_some_and(|r| r.subset("v1").is_some());
        assert!(defines(Clients::Namespace("frontend")));
        assert!(defines(Clients::Namespace("backend")));
        assert!(defines(Clients::Namespace("payments")));
        // The root namespace holds no rule and is named by none: it is one of the others.
        assert!(!defines(Clients::Namespace("istio-system")));
        assert!(!defines(Clients::Others));
        // A route in a namespace that nothing names reaches the named ones and the others.
        let got: Vec<String> = clients(&snapshot, "web", &spec, HOST).iter().map(|c| c.to_string()).collect();
        assert_eq!(got, ["web and every other namespace", "backend", "frontend", "payments"]);
    }

    #[test]
    fn a_host_namespace_resolution_exported_everywhere_is_what_others_see() {
        let snapshot = Snapshot::from_objects(&Policy::default(), [rule("backend", HOST, json!([]))]);
        let own = snapshot.destination_rules("backend", HOST, None).expect("resolved");
        assert!(seen_everywhere(&snapshot, &own, HOST));
        let others = resolve(&snapshot, Clients::Others, HOST).expect("resolved");
        assert_eq!(others.rules.len(), own.rules.len());
        // Exported to its namespace only: others do not see it.
        let snapshot = Snapshot::from_objects(&Policy::default(), [rule("backend", HOST, json!(["."]))]);
        let own = snapshot.destination_rules("backend", HOST, None).expect("resolved");
        assert!(!seen_everywhere(&snapshot, &own, HOST));
        assert!(resolve(&snapshot, Clients::Others, HOST).is_none());
        // A rule of another namespace is not what others look at.
        let snapshot = Snapshot::from_objects(&Policy::default(), [rule("frontend", HOST, json!([]))]);
        let own = snapshot.destination_rules("frontend", HOST, None).expect("resolved");
        assert!(!seen_everywhere(&snapshot, &own, HOST));
    }

    #[test]
    fn two_export_lists_share_a_namespace_when_they_overlap() {
        let list = |items: &[&str]| -> Vec<String> { items.iter().map(|s| s.to_string()).collect() };
        let shared = |a: &[&str], b: &[&str]| {
            let (a, b) = (list(a), list(b));
            shared_namespace(&a, "shop", &b, "web").map(|s| s.to_string())
        };
        assert_eq!(shared(&[], &["*"]).as_deref(), Some("every namespace"));
        assert_eq!(shared(&[], &["."]).as_deref(), Some("namespace web"));
        assert_eq!(shared(&["."], &["shop"]).as_deref(), Some("namespace shop"));
        assert_eq!(shared(&["~", "payments"], &[".", "payments"]).as_deref(), Some("namespace payments"));
        assert_eq!(shared(&["."], &["."]), None);
        assert_eq!(shared(&["~"], &[]), None);
        assert_eq!(shared(&[], &["~"]), None);
    }

    #[test]
    fn named_exports_and_gateways_narrow_the_reach() {
        let snapshot = Snapshot::from_objects(&Policy::default(), [rule("frontend", HOST, json!([]))]);
        let names = |spec: Value| -> Vec<String> {
            let spec = vs(spec);
            clients(&snapshot, "frontend", &spec, HOST).iter().map(|c| c.to_string()).collect()
        };
        assert_eq!(names(json!({"exportTo": [".", "web"]})), ["frontend", "web"]);
        assert_eq!(names(json!({"exportTo": ["~"]})), ["frontend"]);
        assert_eq!(names(json!({"gateways": ["istio-system/public"]})), ["frontend"]);
        assert_eq!(
            names(json!({"gateways": ["public", "mesh"], "exportTo": ["*"]})),
            ["frontend", "every other namespace"]
        );
    }
}
