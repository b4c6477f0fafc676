//! A strict enough reader of the OpenMetrics text `/metrics` serves: every
//! sample belongs to a family declared before it with `# TYPE`, no family is
//! declared twice, values are numbers, and the text ends with the one `# EOF`.

#![allow(dead_code)]

use std::collections::BTreeMap;

/// One metric family: its type, help and samples (`name{labels}`, value).
#[derive(Debug, Default)]
pub struct FamilyText {
    pub kind: String,
    pub help: String,
    pub samples: Vec<(String, f64)>,
}

/// The families of one exposition, by name; panics on anything malformed.
pub fn parse(text: &str) -> BTreeMap<String, FamilyText> {
    assert!(text.ends_with("# EOF\n"), "no closing # EOF:\n{text}");
    let body = &text[..text.len() - "# EOF\n".len()];
    assert!(!body.contains("# EOF"), "# EOF before the end:\n{text}");
    let mut families: BTreeMap<String, FamilyText> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            let family = families.entry(name.to_string()).or_default();
            assert!(family.kind.is_empty(), "{name} declared twice");
            family.kind = kind.to_string();
            current = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("bad HELP line {line:?}"));
            families.entry(name.to_string()).or_default().help = help.to_string();
        } else if line.starts_with('#') {
            panic!("unexpected comment {line:?}");
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let sample_name = series.split('{').next().unwrap_or_default();
            let family_name = current.clone().unwrap_or_else(|| panic!("{line:?} before any # TYPE"));
            let family = &families[&family_name];
            let suffixes: &[&str] = match family.kind.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                "histogram" => &["_bucket", "_sum", "_count"],
                other => panic!("unexpected type {other} of {family_name}"),
            };
            assert!(
                suffixes.iter().any(|s| sample_name == format!("{family_name}{s}")),
                "{sample_name} does not belong to {} {family_name}",
                family.kind
            );
            families.get_mut(&family_name).expect("declared").samples.push((series.to_string(), value));
        }
    }
    families
}

/// Asserts that each `(family, type)` is present with that `# TYPE`, a help
/// text and at least one sample (`prometheus-client` leaves out a labelled
/// family that has no series yet, so the caller makes one of each first).
pub fn assert_families(families: &BTreeMap<String, FamilyText>, expected: &[(&str, &str)]) {
    for (name, kind) in expected {
        let family = families.get(*name).unwrap_or_else(|| panic!("no family {name}: {families:#?}"));
        assert_eq!(family.kind, *kind, "# TYPE of {name}");
        assert!(!family.help.is_empty(), "no # HELP for {name}");
        assert!(!family.samples.is_empty(), "no sample of {name}");
    }
}

/// The value of one series (`name{labels}` exactly as exposed).
pub fn value(families: &BTreeMap<String, FamilyText>, series: &str) -> Option<f64> {
    families.values().flat_map(|f| &f.samples).find(|(s, _)| s == series).map(|(_, v)| *v)
}

/// The server's families (always exposed).
pub const SERVER_FAMILIES: [(&str, &str); 11] = [
    ("routeguard_admission_requests", "counter"),
    ("routeguard_admission_duration_seconds", "histogram"),
    ("routeguard_http_rejected", "counter"),
    ("routeguard_snapshot_objects", "gauge"),
    ("routeguard_ready", "gauge"),
    ("routeguard_tls_cert_not_after_seconds", "gauge"),
    ("routeguard_tls_cert_reloads", "counter"),
    ("routeguard_tls_cert_reload_errors", "counter"),
    ("routeguard_handler_panics", "counter"),
    ("routeguard_plain_http_rejected", "counter"),
    ("routeguard_build_info", "gauge"),
];

/// Live mode's families (exposed with `--source=cluster`).
pub const CLUSTER_FAMILIES: [(&str, &str); 15] = [
    ("routeguard_cluster_objects", "gauge"),
    ("routeguard_cluster_kind_state", "gauge"),
    ("routeguard_cluster_watch_errors", "counter"),
    ("routeguard_cluster_relists", "counter"),
    ("routeguard_cluster_synced", "gauge"),
    ("routeguard_cluster_leader", "gauge"),
    ("routeguard_cluster_lease_transitions", "counter"),
    ("routeguard_cluster_reconciles", "counter"),
    ("routeguard_cluster_reconcile_errors", "counter"),
    ("routeguard_cluster_applied", "counter"),
    ("routeguard_cluster_pruned", "counter"),
    ("routeguard_cluster_rereads", "counter"),
    ("routeguard_cluster_reread_errors", "counter"),
    ("routeguard_audit_findings", "gauge"),
    ("routeguard_audits", "counter"),
];
