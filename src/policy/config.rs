//! The policy file: how strict routeguard is. Every key is optional.

use serde::Deserialize;

use super::enforcement::Enforcement;
use super::finding::{Code, Finding, Severity};

/// How route weights are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightMode {
    /// Weights of a route with several destinations must sum to exactly 100.
    #[default]
    Sum100,
    /// Istio >= 1.15: weights are relative; they need not sum to 100.
    Relative,
}

/// What to do about a finding a policy key controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Deny,
    Warn,
    Off,
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
        // YAML 1.1 (kubectl, Helm) reads a bare `off` as the boolean false.
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(false) => Ok(Action::Off),
            serde_json::Value::String(s) if s == "deny" => Ok(Action::Deny),
            serde_json::Value::String(s) if s == "warn" => Ok(Action::Warn),
            serde_json::Value::String(s) if s == "off" => Ok(Action::Off),
            other => Err(serde::de::Error::custom(format!("expected deny, warn or off, found {other}"))),
        }
    }
}

/// The policy file, as YAML or JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub weights: WeightMode,
    pub missing_subset: Action,
    pub missing_host: Action,
    pub protect_in_use: Action,
    /// RG109, a warning by default: `deny` makes it an error.
    pub unreachable_routes: Action,
    /// RG110.
    pub destination_ports: Action,
    /// RG111.
    pub conflicting_routes: Action,
    /// RG112, a warning by default: `deny` makes it an error.
    pub unused_rules: Action,
    /// RG113: `deny` keeps its defaults (an error for a subset defined twice
    /// with other labels, a warning for a second top-level trafficPolicy),
    /// `warn` makes both warnings.
    pub duplicate_rules: Action,
    /// RG114.
    pub missing_gateway: Action,
    /// The enforcement mode of a namespace without a `routeguard.io/enforcement` label.
    pub enforcement: Enforcement,
    /// Users whose errors become warnings (for example a rollout controller's service account).
    pub exempt_users: Vec<String>,
    pub version_label: String,
    pub mesh_root_namespace: String,
    pub cluster_domain: String,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            weights: WeightMode::Sum100,
            missing_subset: Action::Deny,
            missing_host: Action::Deny,
            protect_in_use: Action::Deny,
            unreachable_routes: Action::Warn,
            destination_ports: Action::Deny,
            conflicting_routes: Action::Deny,
            unused_rules: Action::Warn,
            duplicate_rules: Action::Deny,
            missing_gateway: Action::Deny,
            enforcement: Enforcement::Deny,
            exempt_users: Vec::new(),
            version_label: "version".to_string(),
            mesh_root_namespace: "istio-system".to_string(),
            cluster_domain: "cluster.local".to_string(),
        }
    }
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy: {0}")]
    Parse(String),
    #[error("policy: missingSubset cannot be off (use warn)")]
    SubsetOff,
}

impl Policy {
    /// Reads a policy from the parsed document of a policy file (`null`: an
    /// empty file, every default). Reading the file's YAML is the caller's
    /// business (`check::parse_policy`), so the policy needs no file format.
    pub fn from_value(value: &serde_json::Value) -> Result<Policy, PolicyError> {
        let policy: Policy = match value {
            serde_json::Value::Null => Policy::default(),
            serde_json::Value::Object(_) => serde_path_to_error::deserialize(value).map_err(|e| {
                let path = crate::model::field_path("", e.path());
                PolicyError::Parse(format!("{path}: {}", e.into_inner()))
            })?,
            other => {
                return Err(PolicyError::Parse(format!(
                    "expected a map of settings, found {}",
                    crate::model::json_type(other)
                )));
            }
        };
        if policy.missing_subset == Action::Off {
            return Err(PolicyError::SubsetOff);
        }
        Ok(policy)
    }

    /// The action the policy sets for a code, if the code is policy-controlled.
    fn action(&self, code: Code) -> Option<Action> {
        match code {
            Code::RG103 => Some(self.missing_subset),
            Code::RG104 => Some(self.missing_host),
            Code::RG201 | Code::RG303 => Some(self.protect_in_use),
            Code::RG109 => Some(self.unreachable_routes),
            Code::RG110 => Some(self.destination_ports),
            Code::RG111 => Some(self.conflicting_routes),
            Code::RG112 => Some(self.unused_rules),
            Code::RG113 => Some(self.duplicate_rules),
            Code::RG114 => Some(self.missing_gateway),
            _ => None,
        }
    }

    /// Applies the policy to raw findings: drops those switched off, lowers
    /// those set to warn, and lowers every error of an exempt user.
    pub fn apply(&self, findings: Vec<Finding>, user: Option<&str>) -> Vec<Finding> {
        let exempt = user.is_some_and(|u| self.exempt_users.iter().any(|e| e == u));
        findings
            .into_iter()
            .filter_map(|f| {
                let f = match self.action(f.code) {
                    Some(Action::Off) => return None,
                    Some(Action::Warn) if f.is_error() => f.with_severity(Severity::Warning),
                    // A rule that warns by default is raised to an error by `deny`.
                    Some(Action::Deny) if f.code.default_severity() == Severity::Warning => {
                        f.with_severity(Severity::Error)
                    }
                    _ => f,
                };
                Some(if exempt && f.is_error() { f.with_severity(Severity::Warning) } else { f })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldPath, Kind, ObjectKey};

    /// A policy from YAML text, the way `check` reads a policy file.
    fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        let docs = crate::manifest::yaml::parse_documents(text).expect("yaml");
        Policy::from_value(&docs.into_iter().next().map(|d| d.value).unwrap_or_default())
    }

    fn finding(code: Code) -> Finding {
        let key = ObjectKey { kind: Kind::VirtualService, namespace: "d".into(), name: "n".into() };
        Finding::new(code, &key, FieldPath::root(), "m")
    }

    #[test]
    fn parses_every_key_and_defaults_the_rest() {
        let p = from_yaml("weights: relative\nmissingHost: off\nexemptUsers: [bot]\n").expect("policy");
        assert_eq!(p.weights, WeightMode::Relative);
        assert_eq!(p.missing_host, Action::Off);
        assert_eq!(p.missing_subset, Action::Deny);
        assert_eq!(p.version_label, "version");
        assert_eq!(from_yaml("").expect("empty").cluster_domain, "cluster.local");
        assert_eq!(from_yaml("").expect("empty").enforcement, Enforcement::Deny);
        assert_eq!(from_yaml("enforcement: audit").expect("audit").enforcement, Enforcement::Audit);
        assert!(from_yaml("enforcement: off").is_err());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(from_yaml("weight: relative").is_err());
        assert!(from_yaml("weights: half").is_err());
        assert!(matches!(from_yaml("- relative\n- warn\n"), Err(PolicyError::Parse(m)) if m.contains("found a list")));
        let err = from_yaml("exemptUsers: bot").expect_err("not a list").to_string();
        assert!(err.starts_with("policy: exemptUsers: invalid type"), "{err}");
        assert!(matches!(from_yaml("missingSubset: off"), Err(PolicyError::SubsetOff)));
    }

    #[test]
    fn applies_actions_and_exemptions() {
        let p = from_yaml("missingHost: off\nmissingSubset: warn\nexemptUsers: [bot]").expect("policy");
        let out = p.apply(vec![finding(Code::RG104), finding(Code::RG103), finding(Code::RG101)], None);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].severity, Severity::Warning);
        assert_eq!(out[1].severity, Severity::Error);
        let out = p.apply(vec![finding(Code::RG101)], Some("bot"));
        assert_eq!(out[0].severity, Severity::Warning);
        // RG109 warns by default; deny raises it, off drops it; an exempt user still gets a warning.
        let warned = finding(Code::RG109);
        assert_eq!(Policy::default().apply(vec![warned.clone()], None)[0].severity, Severity::Warning);
        let deny = from_yaml("unreachableRoutes: deny").expect("policy");
        assert_eq!(deny.apply(vec![warned.clone()], None)[0].severity, Severity::Error);
        assert_eq!(deny.apply(vec![warned.clone()], Some("bot")).len(), 1);
        assert!(from_yaml("unreachableRoutes: off").expect("policy").apply(vec![warned], None).is_empty());
        // RG114 is an error by default; warn lowers it, off drops it.
        let missing = finding(Code::RG114);
        assert_eq!(Policy::default().apply(vec![missing.clone()], None)[0].severity, Severity::Error);
        let warn = from_yaml("missingGateway: warn").expect("policy");
        assert_eq!(warn.apply(vec![missing.clone()], None)[0].severity, Severity::Warning);
        assert!(from_yaml("missingGateway: off").expect("policy").apply(vec![missing], None).is_empty());
    }
}
