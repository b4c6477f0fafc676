//! Findings: what a rule reports, as data.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::model::{FieldPath, Kind, ObjectKey};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable rule codes (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// The object does not have the shape its schema requires.
    RG100,
    RG101,
    RG102,
    RG103,
    RG104,
    RG105,
    RG106,
    RG107,
    RG108,
    /// An http route that is never used, or a match that never fires.
    RG109,
    /// A destination port that is ambiguous or that the Service does not expose.
    RG110,
    /// Two VirtualServices bind the same host for the mesh where both are visible.
    RG111,
    /// A DestinationRule whose host matches no visible Service or ServiceEntry.
    RG112,
    /// Two DestinationRules of one namespace for one host that conflict.
    RG113,
    /// A VirtualService gateway or an HTTPRoute parentRef that names nothing that exists.
    RG114,
    RG201,
    RG202,
    RG203,
    RG301,
    RG302,
    RG303,
    /// A version label routeguard injected no longer matches what the pod template gives.
    RG304,
}

impl Code {
    /// Every code, in order (the README's rule table lists them all, see [`super::catalog`]).
    pub const ALL: [Code; 22] = [
        Code::RG100,
        Code::RG101,
        Code::RG102,
        Code::RG103,
        Code::RG104,
        Code::RG105,
        Code::RG106,
        Code::RG107,
        Code::RG108,
        Code::RG109,
        Code::RG110,
        Code::RG111,
        Code::RG112,
        Code::RG113,
        Code::RG114,
        Code::RG201,
        Code::RG202,
        Code::RG203,
        Code::RG301,
        Code::RG302,
        Code::RG303,
        Code::RG304,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::RG100 => "RG100",
            Code::RG101 => "RG101",
            Code::RG102 => "RG102",
            Code::RG103 => "RG103",
            Code::RG104 => "RG104",
            Code::RG105 => "RG105",
            Code::RG106 => "RG106",
            Code::RG107 => "RG107",
            Code::RG108 => "RG108",
            Code::RG109 => "RG109",
            Code::RG110 => "RG110",
            Code::RG111 => "RG111",
            Code::RG112 => "RG112",
            Code::RG113 => "RG113",
            Code::RG114 => "RG114",
            Code::RG201 => "RG201",
            Code::RG202 => "RG202",
            Code::RG203 => "RG203",
            Code::RG301 => "RG301",
            Code::RG302 => "RG302",
            Code::RG303 => "RG303",
            Code::RG304 => "RG304",
        }
    }

    /// The severity a code has unless the policy says otherwise.
    pub fn default_severity(self) -> Severity {
        match self {
            Code::RG108 | Code::RG109 | Code::RG112 | Code::RG203 | Code::RG302 | Code::RG304 => Severity::Warning,
            Code::RG301 => Severity::Info,
            _ => Severity::Error,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One thing a rule found about one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    #[serde(serialize_with = "serialize_kind")]
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    #[serde(serialize_with = "serialize_path")]
    pub path: FieldPath,
    pub message: String,
}

impl Finding {
    /// The key of the object the finding is about.
    pub fn key(&self) -> ObjectKey {
        ObjectKey { kind: self.kind, namespace: self.namespace.clone(), name: self.name.clone() }
    }

    /// A finding with the code's default severity.
    pub fn new(code: Code, key: &ObjectKey, path: FieldPath, message: impl Into<String>) -> Finding {
        Finding {
            code,
            severity: code.default_severity(),
            kind: key.kind,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            path,
            message: message.into(),
        }
    }

    /// The same finding with another severity.
    pub fn with_severity(mut self, severity: Severity) -> Finding {
        self.severity = severity;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `RG103 spec.http[0].route[1].destination.subset: message`.
    pub fn summary(&self) -> String {
        if self.path.is_root() {
            format!("{} {}", self.code, self.message)
        } else {
            format!("{} {}: {}", self.code, self.path, self.message)
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}/{} {}", self.severity, self.kind, self.namespace, self.name, self.summary())
    }
}

/// Sorts findings by object, code, path and message and drops repeats (two
/// rules, or a mutation and a validation, can report the same thing).
pub fn sort_unique(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| {
        (&a.kind, &a.namespace, &a.name, &a.code, &a.path, &a.message).cmp(&(
            &b.kind,
            &b.namespace,
            &b.name,
            &b.code,
            &b.path,
            &b.message,
        ))
    });
    findings.dedup();
}

fn serialize_kind<S: Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

fn serialize_path<S: Serializer>(path: &FieldPath, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(path.as_str())
}
