//! Host names as Istio reads them: short names, FQDNs and wildcards.

use crate::model::Lookup as _;

/// Expands a host written in an object of namespace `namespace`: a dot-free
/// name becomes `<name>.<namespace>.svc.<domain>`; anything else is literal.
pub fn qualify(host: &str, namespace: &str, domain: &str) -> String {
    let mut out = String::with_capacity(host.len() + namespace.len() + domain.len() + 6);
    out.push_str(host);
    out.make_ascii_lowercase();
    if !(host.contains('.') || host.contains('*') || host.is_empty()) {
        out.push('.');
        out.push_str(namespace);
        out.push_str(".svc.");
        out.push_str(domain);
    }
    out
}

/// The host a DestinationRule names (`spec.host` of its JSON), qualified in
/// its namespace; `None` when empty or missing.
pub fn rule_host(rule: &crate::model::Object, domain: &str) -> Option<String> {
    let host = rule.raw.lookup("/spec/host").and_then(serde_json::Value::as_str).filter(|h| !h.is_empty())?;
    Some(qualify(host, rule.namespace(), domain))
}

/// The FQDN of Service `name` in `namespace`.
pub fn service_host(name: &str, namespace: &str, domain: &str) -> String {
    format!("{name}.{namespace}.svc.{domain}")
}

/// For a cluster-local FQDN `<name>.<namespace>.svc.<domain>`, its name and namespace.
pub fn split_service_host<'a>(host: &'a str, domain: &str) -> Option<(&'a str, &'a str)> {
    let rest = host.strip_suffix(domain)?.strip_suffix(".svc.")?;
    let (name, namespace) = rest.split_once('.')?;
    (!name.is_empty() && !namespace.is_empty() && !namespace.contains('.')).then_some((name, namespace))
}

/// True when `host` names something inside the cluster (`*.svc.<domain>`).
pub fn is_cluster_local(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain).is_some_and(|rest| rest.ends_with(".svc."))
}

/// True when the host pattern `pattern` (possibly `*` or `*.suffix`) covers `host`.
pub fn covers(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// True when an object of namespace `owner` with this `exportTo` is visible from `from`:
/// an empty list or `*` is everywhere, `.` the owner's namespace, `~` nowhere,
/// anything else a namespace by name.
pub fn exported_to(export_to: &[String], owner: &str, from: &str) -> bool {
    export_to.is_empty() || export_to.iter().any(|e| e == "*" || e == from || (e == "." && owner == from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifies_short_names_only() {
        assert_eq!(qualify("reviews", "bookinfo", "cluster.local"), "reviews.bookinfo.svc.cluster.local");
        assert_eq!(qualify("reviews.other.svc.cluster.local", "x", "cluster.local"), "reviews.other.svc.cluster.local");
        assert_eq!(qualify("httpbin.org", "x", "cluster.local"), "httpbin.org");
        assert_eq!(qualify("*.example.com", "x", "cluster.local"), "*.example.com");
    }

    #[test]
    fn splits_cluster_local_hosts() {
        assert_eq!(
            split_service_host("reviews.bookinfo.svc.cluster.local", "cluster.local"),
            Some(("reviews", "bookinfo"))
        );
        assert_eq!(split_service_host("reviews.bookinfo", "cluster.local"), None);
        assert!(is_cluster_local("a.b.svc.cluster.local", "cluster.local"));
        assert!(!is_cluster_local("a.b.svc.example.com", "cluster.local"));
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("*", "anything"));
        assert!(!covers("a.example.com", "b.example.com"));
    }

    #[test]
    fn export_rules() {
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&["*".into()], "a", "b"));
        assert!(exported_to(&[".".into()], "a", "a"));
        assert!(!exported_to(&[".".into()], "a", "b"));
        assert!(exported_to(&["b".into()], "a", "b"));
        assert!(!exported_to(&["~".into()], "a", "a"));
        assert!(!exported_to(&["~".into()], "a", "b"));
        assert!(exported_to(&[".".into(), "c".into()], "a", "c"));
    }
}
