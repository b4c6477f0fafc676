//! `check --output sarif`: the report as a SARIF 2.1.0 log, the format code
//! scanning tools read, so a finding shows on the manifest line it is about.
//!
//! One run; the driver lists every rule of the catalog (id, one-line short
//! description, the README's text as help, the default level); each finding is
//! a result on its file and line (`region.startLine`), the object and field
//! path in its message. A finding about a generated object has no location.

use serde_json::{Value, json};

use crate::policy::catalog::RULES;
use crate::policy::{Code, Severity};

use super::{Located, Report};

/// The schema the log names (SARIF 2.1.0, OASIS errata 01).
pub const SCHEMA: &str = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// SARIF's level for a severity: `error`, `warning`, `note`.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// The report as a SARIF log.
pub fn to_sarif(report: &Report) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.code.as_str(),
                "shortDescription": {"text": r.short},
                "fullDescription": {"text": r.help},
                "help": {"text": r.help},
                "defaultConfiguration": {"level": level(r.default_severity())},
            })
        })
        .collect();
    let results: Vec<Value> = report.findings.iter().map(result).collect();
    let mut run = json!({
        "tool": {"driver": {
            "name": "routeguard",
            "version": env!("CARGO_PKG_VERSION"),
            "rules": rules,
        }},
        "results": results,
    });
    if !report.notices.is_empty() {
        let notices: Vec<Value> =
            report.notices.iter().map(|n| json!({"level": "warning", "message": {"text": n}})).collect();
        run["invocations"] = json!([{"executionSuccessful": true, "toolExecutionNotifications": notices}]);
    }
    json!({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]})
}

fn result(located: &Located) -> Value {
    let f = &located.finding;
    let object = format!("{} {}/{}", f.kind, f.namespace, f.name);
    let text = if f.path.is_root() {
        format!("{object}: {}", f.message)
    } else {
        format!("{object} {}: {}", f.path, f.message)
    };
    let mut result = json!({
        "ruleId": f.code.as_str(),
        "ruleIndex": rule_index(f.code),
        "level": level(f.severity),
        "message": {"text": text},
        "properties": {"kind": f.kind.as_str(), "namespace": f.namespace, "name": f.name, "path": f.path.as_str()},
    });
    let logical = json!([{"fullyQualifiedName": object, "kind": "object"}]);
    result["locations"] = match (&located.file, located.line) {
        (Some(file), Some(line)) => json!([{
            "physicalLocation": {
                "artifactLocation": {"uri": uri(file)},
                // SARIF lines count from 1; a line of 0 would be refused by the schema.
                "region": {"startLine": line.max(1)},
            },
            "logicalLocations": logical,
        }]),
        _ => json!([{"logicalLocations": logical}]),
    };
    result
}

fn rule_index(code: Code) -> usize {
    RULES.iter().position(|r| r.code == code).unwrap_or(0)
}

/// A file path as a relative URI reference: `/` separators, and the
/// characters a URI cannot hold percent-encoded.
fn uri(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for c in file.replace('\\', "/").chars() {
        if c.is_ascii_alphanumeric() || "-._~/:@!$&'()*+,;=".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_uris() {
        assert_eq!(
            [level(Severity::Error), level(Severity::Warning), level(Severity::Info)],
            ["error", "warning", "note"]
        );
        assert_eq!(uri("examples/a b/ü.yaml"), "examples/a%20b/%C3%BC.yaml");
        assert_eq!(uri(r"dir\file.yaml"), "dir/file.yaml");
    }

    #[test]
    fn an_empty_report_lists_every_rule_and_no_result() {
        let log = to_sarif(&Report::default());
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["runs"][0]["tool"]["driver"]["rules"].as_array().map(Vec::len), Some(RULES.len()));
        assert_eq!(log["runs"][0]["results"], json!([]));
        assert!(log["runs"][0].get("invocations").is_none());
    }
}
