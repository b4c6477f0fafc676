//! The audit's PolicyReports, pure: findings -> the reports that should exist
//! (one `wgpolicyk8s.io/v1alpha2` PolicyReport per namespace with findings),
//! and desired vs existing -> the writes that make it so.
//!
//! A report is written only when its content changed: the comparison leaves
//! the results' timestamps out (every pass stamps its results anew), and an
//! update keeps the timestamp of each result that was already there, so a
//! timestamp says since when a finding is known.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::{Kind, Lookup as _, ObjectKey};
use crate::policy::{Finding, Severity, Snapshot};

/// The API version of the reports.
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// The kind, plural and name of the report routeguard keeps in each namespace.
pub const KIND: &str = "PolicyReport";
pub const PLURAL: &str = "policyreports";
pub const NAME: &str = "routeguard";
/// The label every report routeguard writes carries (and the only ones it touches).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `source` and `policy` of every result.
pub const SOURCE: &str = "routeguard";

/// A point in time as the CRD writes it (`{seconds, nanos}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        }
    }
}

/// The object a finding is about, as a result's `resources` and an Event's
/// `regarding` name it: apiVersion and uid from the index when it holds the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub api_version: String,
    pub key: ObjectKey,
    pub uid: Option<String>,
}

impl Resource {
    /// The finding's object, looked up in `snapshot`.
    pub fn of(finding: &Finding, snapshot: &Snapshot) -> Resource {
        let key = ObjectKey { kind: finding.kind, namespace: finding.namespace.clone(), name: finding.name.clone() };
        let raw = snapshot.get(&key).map(|e| e.raw());
        let text = |pointer: &str| raw.as_ref().and_then(|r| r.lookup(pointer)?.as_str().map(str::to_string));
        let api_version = text("/apiVersion").unwrap_or_else(|| default_api_version(key.kind));
        Resource { api_version, uid: text("/metadata/uid"), key }
    }

    fn to_json(&self) -> Value {
        let mut out = json!({
            "apiVersion": self.api_version,
            "kind": self.key.kind.as_str(),
            "namespace": self.key.namespace,
            "name": self.key.name,
        });
        if let Some(uid) = &self.uid {
            out["uid"] = json!(uid);
        }
        out
    }
}

/// The API version of a kind not in the index (the one every supported cluster serves).
fn default_api_version(kind: Kind) -> String {
    match (kind.group(), kind) {
        ("", _) => "v1".to_string(),
        (group, Kind::ReferenceGrant) => format!("{group}/v1beta1"),
        (group, _) => format!("{group}/v1"),
    }
}

/// `fail` for an error, `warn` for a warning (infos are not reported).
fn result_of(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "fail",
        Severity::Warning | Severity::Info => "warn",
    }
}

/// The CRD's severity enum (critical, high, medium, low, info): an error
/// refuses the write, so it is high; a warning is medium. Critical is left
/// for what breaks a whole cluster, which no single route does.
pub fn severity_of(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "high",
        Severity::Warning => "medium",
        Severity::Info => "info",
    }
}

/// One result of a report.
fn result(finding: &Finding, snapshot: &Snapshot, now: Timestamp) -> Value {
    json!({
        "source": SOURCE,
        "policy": SOURCE,
        "rule": finding.code.as_str(),
        "result": result_of(finding.severity),
        "severity": severity_of(finding.severity),
        "message": finding.summary(),
        "resources": [Resource::of(finding, snapshot).to_json()],
        "properties": {"path": finding.path.as_str()},
        "timestamp": {"seconds": now.seconds, "nanos": now.nanos},
    })
}

/// The reports that should exist, by namespace: one for each namespace with
/// a finding (of `findings`, in their order), stamped `now`.
pub fn desired(findings: &[Finding], snapshot: &Snapshot, now: Timestamp) -> BTreeMap<String, Value> {
    let mut by_namespace: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings.iter().filter(|f| f.severity != Severity::Info) {
        by_namespace.entry(&f.namespace).or_default().push(f);
    }
    by_namespace
        .into_iter()
        .map(|(namespace, found)| {
            let fail = found.iter().filter(|f| f.is_error()).count();
            let results: Vec<Value> = found.iter().map(|f| result(f, snapshot, now)).collect();
            let report = json!({
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": NAME, "namespace": namespace, "labels": {MANAGED_BY: SOURCE}},
                "results": results,
                "summary": {"pass": 0, "fail": fail, "warn": found.len() - fail, "error": 0, "skip": 0},
            });
            (namespace.to_string(), report)
        })
        .collect()
}

/// A write that brings one namespace's report where it should be.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportAction {
    /// No report yet: create this one.
    Create { namespace: String, body: Value },
    /// The report's content changed: replace it with this (the existing
    /// resourceVersion in it, so a concurrent change is a conflict, not lost).
    Update { namespace: String, body: Value },
    /// No findings left: delete the report (guarded by its uid).
    Delete { namespace: String, uid: Option<String> },
}

impl ReportAction {
    /// The namespace of the report.
    pub fn namespace(&self) -> &str {
        match self {
            ReportAction::Create { namespace, .. }
            | ReportAction::Update { namespace, .. }
            | ReportAction::Delete { namespace, .. } => namespace,
        }
    }
}

fn is_managed(report: &Value) -> bool {
    report.lookup("/metadata/labels").and_then(|labels| labels.get(MANAGED_BY)).and_then(Value::as_str) == Some(SOURCE)
}

/// A result without its timestamp: what two passes compare.
fn untimed(result: &Value) -> Value {
    let mut result = result.clone();
    if let Some(map) = result.as_object_mut() {
        map.remove("timestamp");
    }
    result
}

fn results(report: &Value) -> &[Value] {
    report.get("results").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// True when two reports say the same (labels routeguard sets, results
/// without timestamps, summary).
pub fn same_content(a: &Value, b: &Value) -> bool {
    is_managed(a) == is_managed(b)
        && a.get("summary") == b.get("summary")
        && results(a).len() == results(b).len()
        && results(a).iter().zip(results(b)).all(|(x, y)| untimed(x) == untimed(y))
}

/// `desired` as an update of `existing`: the resourceVersion to replace,
/// labels and annotations others added kept, and the timestamp of every
/// result that was already reported.
fn updated(desired: &Value, existing: &Value) -> Value {
    let mut body = desired.clone();
    let known: Vec<(Value, &Value)> =
        results(existing).iter().filter_map(|r| Some((untimed(r), r.get("timestamp")?))).collect();
    if let Some(list) = body.get_mut("results").and_then(Value::as_array_mut) {
        for r in list {
            let plain = untimed(r);
            if let Some((_, at)) = known.iter().find(|(k, _)| *k == plain) {
                r["timestamp"] = (*at).clone();
            }
        }
    }
    let old_meta = existing.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["labels", "annotations"] {
            let mut merged: Map<String, Value> =
                old_meta.get(field).and_then(Value::as_object).cloned().unwrap_or_default();
            if let Some(ours) = meta.get(field).and_then(Value::as_object) {
                merged.extend(ours.clone());
            }
            if !merged.is_empty() {
                meta.insert(field.to_string(), Value::Object(merged));
            }
        }
        if let Some(rv) = old_meta.get("resourceVersion") {
            meta.insert("resourceVersion".into(), rv.clone());
        }
    }
    body
}

/// The writes that turn `existing` (the reports listed, any names) into
/// `desired`. Only reports named [`NAME`] and labelled [`MANAGED_BY`]
/// `routeguard` are updated or deleted; a foreign report of that name is left
/// alone (and none is created beside it).
pub fn plan(desired: &BTreeMap<String, Value>, existing: &[Value]) -> Vec<ReportAction> {
    let mut current: BTreeMap<&str, &Value> = BTreeMap::new();
    for report in existing {
        let meta = report.get("metadata");
        let text = |field: &str| meta.and_then(|m| m.get(field)).and_then(Value::as_str);
        if let (Some(NAME), Some(namespace)) = (text("name"), text("namespace")) {
            current.insert(namespace, report);
        }
    }
    let mut actions = Vec::new();
    for (namespace, body) in desired {
        match current.get(namespace.as_str()) {
            None => actions.push(ReportAction::Create { namespace: namespace.clone(), body: body.clone() }),
            Some(old) if !is_managed(old) => {}
            Some(old) if same_content(old, body) => {}
            Some(old) => actions.push(ReportAction::Update { namespace: namespace.clone(), body: updated(body, old) }),
        }
    }
    for (namespace, old) in current {
        if !desired.contains_key(namespace) && is_managed(old) {
            let uid = old.lookup("/metadata/uid").and_then(Value::as_str).map(str::to_string);
            actions.push(ReportAction::Delete { namespace: namespace.to_string(), uid });
        }
    }
    actions
}

/// Findings counted by code, severity and namespace (the audit's gauge).
pub fn tally(findings: &[Finding]) -> BTreeMap<(String, String, String), i64> {
    let mut counts = BTreeMap::new();
    for f in findings.iter().filter(|f| f.severity != Severity::Info) {
        let slot = (f.code.as_str().to_string(), f.severity.as_str().to_string(), f.namespace.clone());
        *counts.entry(slot).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests;
