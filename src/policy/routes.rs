//! VirtualService rules: weights (RG101, RG102), subsets (RG103), hosts (RG104),
//! mirrors (RG105), and matches and CORS origins (RG106), routes never used
//! (RG109), and hosts another VirtualService binds too (RG111).

mod conflicts;
mod matches;
mod unreachable;
pub(super) mod weights;

use std::borrow::Cow;
use std::fmt::Write as _;

use smallvec::SmallVec;

use crate::model::istio::{Destination, HttpRoute, RouteDestination, VirtualServiceSpec};
use crate::model::{FieldPath, ObjectKey};

use super::visibility::{self, Clients};
use super::{Action, Code, Context, Finding, Resolution, Severity, hosts, ports};
use matches::Matches;
use weights::Weighted;

/// How Istio counts route weights: a missing weight is 0 when there are several destinations.
const ISTIO_WEIGHTS: Weighted = Weighted { item: "destination", missing: 0, relative: false };

/// Every finding about a VirtualService on its own and against the snapshot.
pub fn check_virtual_service(ctx: Context<'_>, key: &ObjectKey, spec: &VirtualServiceSpec) -> Vec<Finding> {
    let domain = ctx.snapshot.domain();
    // Resolving DestinationRules is the costly lookup, and a traffic split names the same host
    // several times: resolve each host that is used with a subset once, up front.
    // Each host as written is qualified once, too (a String each time was a
    // good part of a check's allocations).
    let mut qualified: SmallVec<[(&str, String); 4]> = SmallVec::new();
    for dest in spec.uses().map(|u| u.destination) {
        if !dest.host.is_empty() && !qualified.iter().any(|(written, _)| *written == dest.host) {
            qualified.push((&dest.host, hosts::qualify(&dest.host, &key.namespace, domain)));
        }
    }
    let mut subset_hosts: SmallVec<[&str; 4]> = SmallVec::new();
    for dest in spec.uses().map(|u| u.destination) {
        if dest.subset.as_deref().is_some_and(|s| !s.is_empty())
            && let Some((_, host)) = qualified.iter().find(|(written, _)| *written == dest.host)
            && !subset_hosts.contains(&host.as_str())
        {
            subset_hosts.push(host);
        }
    }
    // Each host is resolved for every set of client namespaces the route reaches.
    let resolved: Vec<Resolved<'_>> = subset_hosts
        .iter()
        .map(|&host| {
            let clients = visibility::clients(ctx.snapshot, &key.namespace, spec, host);
            let mut lookups: Vec<(Clients<'_>, Option<Resolution<'_>>)> = Vec::with_capacity(clients.len());
            for c in clients {
                // The common case costs one lookup: other namespaces see what the route's own sees
                // when that is the host's namespace's rules, all exported everywhere.
                if c == Clients::Others
                    && let Some((_, Some(own))) = lookups.first()
                    && visibility::seen_everywhere(ctx.snapshot, own, host)
                {
                    lookups.push((c, Some(own.clone())));
                    continue;
                }
                lookups.push((c, visibility::resolve(ctx.snapshot, c, host)));
            }
            (host, lookups)
        })
        .collect();

    let mut check = Check { ctx, key, domain, qualified: &qualified, resolved: &resolved, out: Vec::new() };
    let mut matches = Matches::new();
    let http = FieldPath::new("spec").key("http");
    for (i, route) in spec.http.iter().enumerate() {
        let at = http.index(i);
        check.routes(&at.key("route"), &route.route);
        check.mirrors(&at, route);
        if !route.matches.is_empty() {
            let base = at.key("match");
            for (j, m) in route.matches.iter().enumerate() {
                matches.check(&mut check.out, key, &base.index(j), m);
            }
        }
        if let Some(cors) = &route.cors_policy {
            matches.cors_origins(&mut check.out, key, &at, &cors.allow_origins);
        }
    }
    unreachable::check(&mut check.out, key, &spec.http);
    conflicts::check(&mut check.out, ctx, key, spec);
    for (field, routes) in [("tcp", &spec.tcp), ("tls", &spec.tls)] {
        let list = FieldPath::new("spec").key(field);
        for (i, route) in routes.iter().enumerate() {
            check.routes(&list.index(i).key("route"), &route.route);
        }
    }
    check.out
}

/// A host and the DestinationRules each set of clients the route reaches sees
/// for it (the route's own namespace first).
type Resolved<'a> = (&'a str, Vec<(Clients<'a>, Option<Resolution<'a>>)>);

/// The state of one check: where findings go and what they are about.
struct Check<'a> {
    ctx: Context<'a>,
    key: &'a ObjectKey,
    domain: &'a str,
    /// Each destination host as written, and qualified.
    qualified: &'a [(&'a str, String)],
    /// The DestinationRules of each host used with a subset, resolved once.
    resolved: &'a [Resolved<'a>],
    out: Vec<Finding>,
}

impl Check<'_> {
    fn push(&mut self, code: Code, path: FieldPath, message: String) {
        self.out.push(Finding::new(code, self.key, path, message));
    }

    /// The weighted destinations of one http, tcp or tls route, at `list` (`spec.http[0].route`).
    fn routes(&mut self, list: &FieldPath, route: &[RouteDestination]) {
        let mode = self.ctx.policy.weights;
        weights::check(&mut self.out, mode, self.key, list, ISTIO_WEIGHTS, route.iter().map(|d| d.weight));
        for (j, entry) in route.iter().enumerate() {
            let at = list.index(j).key("destination");
            match &entry.destination {
                Some(dest) if !dest.host.is_empty() => self.destination(&at, dest),
                // Istio requires a destination with a host on every route entry.
                Some(_) => self.push(
                    Code::RG100,
                    at.key("host"),
                    format!("{} has no host, expected the host to send traffic to", list.index(j)),
                ),
                None => self.push(
                    Code::RG100,
                    at,
                    format!("{} has no destination, expected a destination with a host", list.index(j)),
                ),
            }
        }
    }

    /// RG105: `mirror`, `mirrors`, `mirrorPercentage` and the deprecated `mirrorPercent` of `spec.http[i]`.
    fn mirrors(&mut self, at: &FieldPath, route: &HttpRoute) {
        if let Some(mirror) = &route.mirror {
            let path = at.key("mirror");
            if !route.mirrors.is_empty() {
                self.push(
                    Code::RG105,
                    path.clone(),
                    format!("{at} sets both mirror and mirrors, expected only one (move mirror into mirrors)"),
                );
            }
            if mirror.host.is_empty() {
                self.push(Code::RG105, path.key("host"), format!("mirror of {at} has no host, expected a host"));
            } else {
                self.destination(&path, mirror);
            }
        }
        if let Some(percent) = &route.mirror_percentage {
            self.percentage(at.key("mirrorPercentage").key("value"), "mirrorPercentage.value", percent.value);
        }
        if let Some(percent) = route.mirror_percent {
            let path = at.key("mirrorPercent");
            if (0.0..=100.0).contains(&percent) {
                self.out.push(
                    Finding::new(
                        Code::RG105,
                        self.key,
                        path,
                        format!("mirrorPercent is deprecated, expected mirrorPercentage: {{value: {percent}}} instead"),
                    )
                    .with_severity(Severity::Warning),
                );
            } else {
                self.push(
                    Code::RG105,
                    path,
                    format!(
                        "mirrorPercent is {percent}, expected a value from 0 to 100 \
                         (mirrorPercent is deprecated, use mirrorPercentage)"
                    ),
                );
            }
        }
        if route.mirrors.is_empty() {
            return;
        }
        let list = at.key("mirrors");
        for (k, mirror) in route.mirrors.iter().enumerate() {
            let entry = list.index(k);
            match &mirror.destination {
                Some(dest) if !dest.host.is_empty() => self.destination(&entry.key("destination"), dest),
                Some(_) => self.push(
                    Code::RG105,
                    entry.key("destination").key("host"),
                    format!("mirror {entry} has no host, expected a destination host"),
                ),
                None => self.push(
                    Code::RG105,
                    entry.key("destination"),
                    format!("mirror {entry} has no destination, expected a destination with a host"),
                ),
            }
            if let Some(percent) = &mirror.percentage {
                self.percentage(entry.key("percentage").key("value"), "percentage.value", percent.value);
            }
        }
    }

    /// RG105: a mirror percentage outside 0..=100.
    fn percentage(&mut self, path: FieldPath, field: &str, value: f64) {
        if !(0.0..=100.0).contains(&value) {
            self.push(Code::RG105, path, format!("{field} is {value}, expected a value from 0 to 100"));
        }
    }

    /// RG103 and RG104 for one route or mirror destination with a host, at `at` (`...route[0].destination`).
    fn destination(&mut self, at: &FieldPath, dest: &Destination) {
        let namespace = self.key.namespace.as_str();
        let qualified = self.qualified;
        let host: Cow<'_, str> = match qualified.iter().find(|(written, _)| *written == dest.host) {
            Some((_, host)) => Cow::Borrowed(host),
            None => Cow::Owned(hosts::qualify(&dest.host, namespace, self.domain)),
        };
        let host: &str = &host;
        // Wildcards are patterns, not hosts a Service or ServiceEntry could be looked up by.
        if self.ctx.policy.missing_host != Action::Off
            && hosts::is_cluster_local(host, self.domain)
            && !host.contains('*')
            && !self.ctx.snapshot.host_visible(host, namespace)
        {
            self.push(Code::RG104, at.key("host"), missing_host(self.ctx, host, namespace));
        }
        if let Some(service) = self.ctx.snapshot.service(host) {
            let port = dest.port.as_ref().and_then(|p| p.number);
            ports::check_destination(&mut self.out, self.key, at, service, port);
        }
        if let Some(subset) = dest.subset.as_deref().filter(|s| !s.is_empty()) {
            self.subset(at, host, subset);
        }
    }

    /// RG103: `subset` of `host` (the destination at `at`) must be defined by a DestinationRule
    /// visible to the clients the route reaches: an error when none of them can
    /// resolve it, a warning naming those that cannot when some can.
    fn subset(&mut self, at: &FieldPath, host: &str, subset: &str) {
        let namespace = self.key.namespace.as_str();
        let fresh;
        let lookups = match self.resolved.iter().find(|(h, _)| *h == host) {
            Some((_, lookups)) => lookups.as_slice(),
            // Every host with a subset is resolved up front; this only guards against a miss.
            None => {
                fresh = [(Clients::Namespace(namespace), self.ctx.snapshot.destination_rules(namespace, host, None))];
                &fresh
            }
        };
        let defines = |r: &Option<Resolution<'_>>| r.as_ref().is_some_and(|r| r.subset(subset).is_some());
        // The common case, defined for every client, allocates nothing.
        if lookups.iter().all(|(_, r)| defines(r)) {
            return;
        }
        let (ok, missing): (Vec<_>, Vec<_>) = lookups.iter().partition(|(_, r)| defines(r));
        let path = at.key("subset");
        if !ok.is_empty() {
            let message = partly_defined(host, subset, &ok, &missing);
            self.out.push(Finding::new(Code::RG103, self.key, path, message).with_severity(Severity::Warning));
            return;
        }
        // Undefined everywhere: explain it from the first clients (the route's own namespace when it reaches it).
        let Some((clients, resolution)) = lookups.first() else { return };
        let from = match clients {
            Clients::Namespace(ns) | Clients::OwnAndOthers(ns) => *ns,
            Clients::Others => namespace,
        };
        let mut why = match resolution {
            Some(resolution) => defined_subsets(resolution),
            None => format!("no destinationrule for {host} is visible from namespace {from}"),
        };
        why.push_str(&hidden_definitions(self.ctx, host, subset, from, resolution.as_ref()));
        self.push(Code::RG103, path, format!("subset \"{subset}\" of host {host} is not defined; {why}"));
    }
}

/// `destinationrule ns/a defines v1, v2`: what a resolution offers.
fn defined_subsets(resolution: &Resolution<'_>) -> String {
    let rules: Vec<String> =
        resolution.rules.iter().map(|(rule, _)| format!("{}/{}", rule.namespace, rule.name)).collect();
    // Merged DestinationRules may define a subset twice (RG202); name it once.
    let mut names: Vec<&str> = Vec::new();
    for s in resolution.subsets() {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let (noun, verb) = if rules.len() == 1 { ("destinationrule", "defines") } else { ("destinationrules", "define") };
    if names.is_empty() {
        format!("{noun} {} {verb} no subsets", rules.join(", "))
    } else {
        format!("{noun} {} {verb} {}", rules.join(", "), names.join(", "))
    }
}

/// The DestinationRules that define `subset` for `host` but that clients in
/// `from` do not use: hidden by their `exportTo`, or outranked by the rules of
/// a namespace Istio looks in first. Empty when there are none.
fn hidden_definitions(ctx: Context<'_>, host: &str, subset: &str, from: &str, used: Option<&Resolution<'_>>) -> String {
    let mut out = String::new();
    let order = ctx.snapshot.lookup_order(from, host);
    for rule in ctx.snapshot.rules_for_host(host) {
        let Some(spec) = rule.destination_rule() else { continue };
        let in_use = used.is_some_and(|r| r.rules.iter().any(|(k, _)| *k == rule.key()));
        if in_use || !spec.subsets.iter().any(|s| s.name == subset) {
            continue;
        }
        let name = format!("{}/{}", rule.namespace(), rule.name());
        let reason = if rule.namespace() != from && !rule.exported_to(from) {
            format!("its exportTo [{}] hides it from namespace {from}", rule.exports().join(", "))
        } else if !order.contains(&rule.namespace()) {
            format!(
                "clients in {from} look for destinationrules only in namespaces {} (their own, the host's, the mesh root)",
                order.join(", ")
            )
        } else {
            let winner = used.map_or(from, |r| r.namespace);
            format!(
                "istio uses the destinationrules of namespace {winner} for clients in {from}, which it looks in first"
            )
        };
        let _ = write!(out, "; destinationrule {name} defines \"{subset}\" but {reason}");
    }
    out
}

/// The RG103 warning for a subset that only some of the route's clients can resolve.
fn partly_defined(
    host: &str,
    subset: &str,
    ok: &[&(Clients<'_>, Option<Resolution<'_>>)],
    missing: &[&(Clients<'_>, Option<Resolution<'_>>)],
) -> String {
    let list = |set: &[&(Clients<'_>, Option<Resolution<'_>>)]| {
        set.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>().join(", ")
    };
    // Named after the first clients that resolve it (the route's own namespace when it is one of them).
    let source = ok
        .first()
        .and_then(|(_, r)| r.as_ref())
        .map(|r| {
            let rules: Vec<String> = r.rules.iter().map(|(k, _)| format!("{}/{}", k.namespace, k.name)).collect();
            format!("destinationrule {}", rules.join(", "))
        })
        .unwrap_or_default();
    format!(
        "subset \"{subset}\" of host {host} is defined ({source}) only for clients in {}; clients in {} see no \
         destinationrule defining it and get 503; define it in a destinationrule visible to them (in the host's \
         namespace, exported to them) or narrow the virtualservice's exportTo",
        list(ok),
        list(missing)
    )
}

/// The RG104 message for a cluster-local host that no Service or ServiceEntry
/// visible from `from` declares, naming those hidden by their `exportTo`.
fn missing_host(ctx: Context<'_>, host: &str, from: &str) -> String {
    let domain = ctx.snapshot.domain();
    let hidden: Vec<String> = ctx
        .snapshot
        .host_owners(host)
        .map(|e| {
            let exports = e.exports().join(", ");
            format!(
                "{} {}/{} declares it but its exportTo [{exports}] hides it from namespace {from}",
                e.kind().as_str().to_ascii_lowercase(),
                e.namespace(),
                e.name()
            )
        })
        .collect();
    if !hidden.is_empty() {
        return format!(
            "host {host} matches no service and no serviceentry visible from namespace {from}; {}; \
             expected one exported to {from}",
            hidden.join("; ")
        );
    }
    let expected = match hosts::split_service_host(host, domain) {
        Some((name, ns)) => format!("expected service {name} in namespace {ns} or a serviceentry for it"),
        None => "expected a service or serviceentry for it".to_string(),
    };
    format!("host {host} matches no service and no serviceentry; {expected}")
}

#[cfg(test)]
mod tests;
