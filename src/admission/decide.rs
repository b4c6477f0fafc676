//! What to answer: the request handed to the policy engine.

use crate::model::{Kind, ObjectKey};
use crate::policy::{Engine, Finding, Mode, Operation, Severity, Snapshot};

use super::decode::{Request, Target};
use super::{Endpoint, Summary};

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Allowed as it is (warnings may come with it).
    Allowed,
    /// Allowed with a JSON Patch (the mutating endpoint).
    Patched,
    /// Denied: at least one error finding.
    Denied,
    /// A kind, subresource or operation routeguard does not look at: allowed.
    Unhandled,
    /// The request's object is missing or unreadable: refused with a 400 status.
    Invalid,
}

impl Decision {
    /// `allowed`, `patched`, `denied` or `unhandled`, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Patched => "patched",
            Decision::Denied => "denied",
            Decision::Unhandled => "unhandled",
            Decision::Invalid => "invalid",
        }
    }

    /// Whether the request may go ahead.
    pub fn is_allowed(self) -> bool {
        !matches!(self, Decision::Denied | Decision::Invalid)
    }
}

/// The decision with everything the response and the log line need.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    /// The object judged (the old one for a DELETE), if any.
    pub key: Option<ObjectKey>,
    /// Every finding, the policy's severities and exemptions and the
    /// namespace's enforcement mode applied.
    pub findings: Vec<Finding>,
    /// The JSON Patch to return (only with [`Decision::Patched`]).
    pub patch: Option<json_patch::Patch>,
    /// Why the request was not looked at ([`Decision::Unhandled`]).
    pub note: Option<String>,
    /// The enforcement mode of the object's namespace (none when nothing was judged).
    pub mode: Option<Mode>,
}

impl Verdict {
    fn unhandled(note: String) -> Verdict {
        Verdict {
            decision: Decision::Unhandled,
            key: None,
            findings: Vec::new(),
            patch: None,
            note: Some(note),
            mode: None,
        }
    }

    /// The error findings (the reasons of a denial).
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_error())
    }

    /// The warning findings (sent as `response.warnings`).
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Warning)
    }

    /// The log and metrics view of this verdict for `request`.
    pub fn summary(&self, request: &Request) -> Summary {
        let (namespace, name) = match &self.key {
            Some(key) => (key.namespace.clone(), key.name.clone()),
            None => (request.namespace.clone(), request.name.clone()),
        };
        Summary {
            uid: request.uid.clone(),
            kind: request.kind.kind.clone(),
            namespace,
            name,
            operation: request.operation.as_str(),
            decision: self.decision,
            codes: self.findings.iter().map(|f| f.code).collect(),
            dry_run: request.dry_run,
            note: self.note.clone(),
        }
    }
}

/// Judges one decoded request against one snapshot.
pub fn decide(engine: &Engine, snapshot: &Snapshot, endpoint: Endpoint, request: &Request) -> Verdict {
    let (kind, object, old) = match &request.target {
        Target::Handled { kind, object, old } => (*kind, object.as_ref(), old.as_ref()),
        Target::Unhandled(note) => return Verdict::unhandled(note.clone()),
        Target::Invalid { message, .. } => {
            let note = Some(message.clone());
            return Verdict {
                decision: Decision::Invalid,
                key: None,
                findings: Vec::new(),
                patch: None,
                note,
                mode: None,
            };
        }
    };
    let key = object.or(old).map(|o| o.key.clone());
    let user = request.user.as_deref();
    let (findings, patch) = match (endpoint, request.change()) {
        (Endpoint::Validate, Some(change)) => (engine.validate(snapshot, &change), None),
        (Endpoint::Validate, None) => (Vec::new(), None),
        (Endpoint::Mutate, _) => match (kind, request.operation, object) {
            (Kind::Deployment, Operation::Create | Operation::Update, Some(object)) => {
                let mutation = engine.mutate(object, old);
                let findings = engine.policy().apply(mutation.findings, user);
                (findings, Some(mutation.patch).filter(|p| !p.0.is_empty()))
            }
            _ => (Vec::new(), None),
        },
    };
    // After the policy (and its exemptions): the namespace decides what its errors do.
    let namespace = key.as_ref().map_or(request.namespace.as_str(), |k| k.namespace.as_str());
    let mode = Mode::of(engine.policy(), snapshot, namespace);
    let findings = mode.enforce(findings);
    Verdict::judged(key, findings, patch).with_mode(mode)
}

impl Verdict {
    /// The verdict of these findings and patch: denied with any error, else patched or allowed.
    pub fn judged(key: Option<ObjectKey>, findings: Vec<Finding>, patch: Option<json_patch::Patch>) -> Verdict {
        let decision = if findings.iter().any(Finding::is_error) {
            Decision::Denied
        } else if patch.is_some() {
            Decision::Patched
        } else {
            Decision::Allowed
        };
        let patch = if decision == Decision::Patched { patch } else { None };
        Verdict { decision, key, findings, patch, note: None, mode: None }
    }

    /// The same verdict, judged in a namespace of this enforcement mode (its
    /// findings are already [enforced](Mode::enforce)).
    pub fn with_mode(mut self, mode: Mode) -> Verdict {
        self.mode = Some(mode);
        self
    }
}
