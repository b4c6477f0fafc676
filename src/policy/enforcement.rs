//! Enforcement per namespace: what a namespace does with the errors the rules
//! find. `deny` refuses them (the default), `warn` admits them as warnings
//! kubectl prints, `audit` admits them silently (the findings stay, as infos,
//! for the log line, the metrics and the background audit).
//!
//! The mode is the namespace's `routeguard.io/enforcement` label, else the
//! policy file's `enforcement`. A label value routeguard does not know is
//! enforced as `deny` (a typo must not switch a namespace's protection off)
//! and says so in a warning.

use serde::{Deserialize, Serialize};

use super::config::Policy;
use super::finding::{Finding, Severity};
use super::snapshot::Snapshot;

/// The namespace label that sets a namespace's enforcement mode.
pub const ENFORCEMENT_LABEL: &str = "routeguard.io/enforcement";

/// What a namespace does with error findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Refuse a change with any error (routeguard's behaviour without a label).
    #[default]
    Deny,
    /// Admit; errors become warnings.
    Warn,
    /// Admit silently; every finding becomes an info (logged and counted, not shown).
    Audit,
}

impl Enforcement {
    /// `deny`, `warn` or `audit`, as the label and the policy file spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Deny => "deny",
            Enforcement::Warn => "warn",
            Enforcement::Audit => "audit",
        }
    }

    /// Reads a label value; `None` for anything but `deny`, `warn` or `audit`.
    pub fn from_label(value: &str) -> Option<Enforcement> {
        match value {
            "deny" => Some(Enforcement::Deny),
            "warn" => Some(Enforcement::Warn),
            "audit" => Some(Enforcement::Audit),
            _ => None,
        }
    }
}

impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a namespace's mode came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The namespace's [`ENFORCEMENT_LABEL`].
    Label,
    /// The policy file's `enforcement` (no label, or the namespace is not known).
    Policy,
    /// A label value routeguard does not know (kept as written): enforced as `deny`.
    Unknown(String),
}

/// The enforcement mode of one namespace and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode {
    pub enforcement: Enforcement,
    pub namespace: String,
    pub origin: Origin,
}

impl Mode {
    /// The mode of `namespace`: its label in the snapshot, else the policy's default.
    pub fn of(policy: &Policy, snapshot: &Snapshot, namespace: &str) -> Mode {
        let label = snapshot.namespace_labels(namespace).and_then(|labels| labels.get(ENFORCEMENT_LABEL));
        let (enforcement, origin) = match label.map(|value| (Enforcement::from_label(value), value)) {
            None => (policy.enforcement, Origin::Policy),
            Some((Some(enforcement), _)) => (enforcement, Origin::Label),
            Some((None, value)) => (Enforcement::Deny, Origin::Unknown(value.to_string())),
        };
        Mode { enforcement, namespace: namespace.to_string(), origin }
    }

    /// What a denial says about the mode: `enforcement: deny, namespace shop`.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::Label | Origin::Unknown(_) => {
                format!("enforcement: {}, namespace {}", self.enforcement, self.namespace)
            }
            Origin::Policy => {
                format!("enforcement: {}, the policy default, namespace {}", self.enforcement, self.namespace)
            }
        }
    }

    /// The warning about a label value routeguard does not know, if it is one.
    pub fn notice(&self) -> Option<String> {
        let Origin::Unknown(value) = &self.origin else { return None };
        Some(format!(
            "namespace {}: label {ENFORCEMENT_LABEL}: unknown value {value:?} (expected deny, warn or audit); enforced as deny",
            self.namespace
        ))
    }

    /// [`enforce`] with this mode.
    pub fn enforce(&self, findings: Vec<Finding>) -> Vec<Finding> {
        enforce(self.enforcement, findings)
    }
}

/// The findings as a namespace in mode `enforcement` answers them: `deny`
/// keeps them, `warn` lowers errors to warnings, `audit` lowers every finding
/// to an info (admitted, nothing shown, still counted).
pub fn enforce(enforcement: Enforcement, findings: Vec<Finding>) -> Vec<Finding> {
    match enforcement {
        Enforcement::Deny => findings,
        Enforcement::Warn => {
            findings.into_iter().map(|f| if f.is_error() { f.with_severity(Severity::Warning) } else { f }).collect()
        }
        Enforcement::Audit => findings.into_iter().map(|f| f.with_severity(Severity::Info)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldPath, Kind, Object, ObjectKey};
    use crate::policy::Code;
    use serde_json::json;

    fn findings() -> Vec<Finding> {
        let key = ObjectKey { kind: Kind::VirtualService, namespace: "shop".into(), name: "r".into() };
        let error = Finding::new(Code::RG103, &key, FieldPath::new("spec.http[0]"), "m");
        let warning = Finding::new(Code::RG203, &key, FieldPath::root(), "w");
        let info = Finding::new(Code::RG301, &key, FieldPath::root(), "i");
        vec![error, warning, info]
    }

    fn severities(findings: &[Finding]) -> Vec<Severity> {
        findings.iter().map(|f| f.severity).collect()
    }

    #[test]
    fn deny_keeps_warn_lowers_errors_audit_lowers_everything() {
        use Severity::*;
        assert_eq!(severities(&enforce(Enforcement::Deny, findings())), [Error, Warning, Info]);
        assert_eq!(severities(&enforce(Enforcement::Warn, findings())), [Warning, Warning, Info]);
        assert_eq!(severities(&enforce(Enforcement::Audit, findings())), [Info, Info, Info]);
        // Codes, paths and messages stay: the metrics and the audit still see them.
        let audited = enforce(Enforcement::Audit, findings());
        assert_eq!(audited[0].code, Code::RG103);
        assert_eq!(audited[0].path.as_str(), "spec.http[0]");
        assert!(enforce(Enforcement::Warn, Vec::new()).is_empty());
    }

    fn snapshot_with(labels: serde_json::Value) -> Snapshot {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": labels}});
        Snapshot::from_objects(&Policy::default(), [Object::from_value(ns, "").expect("namespace")])
    }

    #[test]
    fn the_label_wins_over_the_policy_default() {
        let policy = Policy { enforcement: Enforcement::Warn, ..Policy::default() };
        let labelled = snapshot_with(json!({ENFORCEMENT_LABEL: "audit"}));
        let mode = Mode::of(&policy, &labelled, "shop");
        assert_eq!((mode.enforcement, &mode.origin), (Enforcement::Audit, &Origin::Label));
        assert_eq!(mode.describe(), "enforcement: audit, namespace shop");
        assert_eq!(mode.notice(), None);
        // No label, or a namespace the snapshot does not hold: the policy's default.
        let unlabelled = snapshot_with(json!({"team": "a"}));
        assert_eq!(Mode::of(&policy, &unlabelled, "shop").enforcement, Enforcement::Warn);
        let mode = Mode::of(&Policy::default(), &unlabelled, "web");
        assert_eq!((mode.enforcement, &mode.origin), (Enforcement::Deny, &Origin::Policy));
        assert_eq!(mode.describe(), "enforcement: deny, the policy default, namespace web");
    }

    #[test]
    fn an_unknown_value_is_enforced_as_deny_and_said_so() {
        let policy = Policy { enforcement: Enforcement::Audit, ..Policy::default() };
        let mode = Mode::of(&policy, &snapshot_with(json!({ENFORCEMENT_LABEL: "Warn"})), "shop");
        assert_eq!(mode.enforcement, Enforcement::Deny);
        assert_eq!(mode.origin, Origin::Unknown("Warn".into()));
        let notice = mode.notice().expect("notice");
        assert!(
            notice.starts_with("namespace shop: label routeguard.io/enforcement: unknown value \"Warn\""),
            "{notice}"
        );
        assert!(notice.ends_with("enforced as deny"), "{notice}");
    }
}
