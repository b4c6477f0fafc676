//! The entry points: what admission and `check` call.

use crate::model::Lookup as _;
use crate::model::{FieldPath, Kind, ModelError, Object, Spec};

use super::finding::{Code, Finding};
use super::snapshot::{Entry, Snapshot};
use super::subsets::Next;
use super::{
    Context, Policy, duplicate_rules, fields, gateways, generate, http_route, in_use, routes, service_entry, subsets,
    unused_rules, version,
};

/// The kinds [`Engine::audit`] judges: the routing objects.
pub const AUDITED: [Kind; 4] = [Kind::VirtualService, Kind::DestinationRule, Kind::ServiceEntry, Kind::HttpRoute];

/// The operation of an admission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One change to judge: the new object (CREATE, UPDATE), the old one (UPDATE, DELETE).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub operation: Operation,
    pub object: Option<&'a Object>,
    pub old: Option<&'a Object>,
    /// The requesting user, for `exemptUsers`.
    pub user: Option<&'a str>,
}

impl<'a> Change<'a> {
    /// A CREATE of `object` by nobody in particular (what `check` uses).
    pub fn create(object: &'a Object) -> Change<'a> {
        Change { operation: Operation::Create, object: Some(object), old: None, user: None }
    }
}

/// The result of mutating one object: a JSON Patch against its original JSON.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    pub patch: json_patch::Patch,
    pub findings: Vec<Finding>,
}

/// The policy engine: a policy plus the rules.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    policy: Policy,
}

impl Engine {
    pub fn new(policy: Policy) -> Engine {
        Engine { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Every finding for a change, with the policy's severities applied.
    pub fn validate(&self, snapshot: &Snapshot, change: &Change<'_>) -> Vec<Finding> {
        let ctx = Context { policy: &self.policy, snapshot };
        let mut findings = Vec::new();
        match change.operation {
            Operation::Create | Operation::Update => {
                if let Some(object) = change.object {
                    let creating = change.operation == Operation::Create;
                    // Read once: an UPDATE of a DestinationRule judges the new spec twice.
                    let spec = object.typed_spec();
                    findings.extend(self.check_spec(ctx, object, &spec, creating));
                    if let (Some(old), Kind::DestinationRule) = (change.old, object.kind()) {
                        let new_spec = match &spec {
                            Ok(Spec::DestinationRule(spec)) => Some(spec),
                            _ => None,
                        };
                        findings.extend(subsets::removed_in_use(ctx, old, Next::Updated(new_spec)));
                    }
                }
            }
            Operation::Delete => {
                if let Some(old) = change.old {
                    match old.kind() {
                        Kind::DestinationRule => findings.extend(subsets::removed_in_use(ctx, old, Next::Deleted)),
                        Kind::Deployment | Kind::Service => findings.extend(in_use::deletion_in_use(ctx, old)),
                        _ => {}
                    }
                }
            }
            Operation::Connect => {}
        }
        self.policy.apply(findings, change.user)
    }

    /// What the background audit reports about a snapshot: every routing
    /// object (VirtualService, DestinationRule, ServiceEntry, HTTPRoute) judged
    /// with the rules of a CREATE, against everything else in the snapshot;
    /// errors and warnings only (infos say nothing is broken), sorted and
    /// without duplicates. One difference from a CREATE: a stored object is
    /// not newer than itself, so RG113 blames only the younger of two rules.
    pub fn audit(&self, snapshot: &Snapshot) -> Vec<Finding> {
        self.audit_all(snapshot).findings()
    }

    /// The findings about a stored object, judged as the audit does (see [`Engine::audit`]).
    pub(super) fn judge_stored(&self, snapshot: &Snapshot, object: &Object) -> Vec<Finding> {
        self.check_object(Context { policy: &self.policy, snapshot }, object, false)
    }

    /// The findings about one object as it is (no old object involved);
    /// `creating`: the object does not exist yet, so it is the newest (RG113).
    fn check_object(&self, ctx: Context<'_>, object: &Object, creating: bool) -> Vec<Finding> {
        self.check_spec(ctx, object, &object.typed_spec(), creating)
    }

    /// [`Engine::check_object`] with the object's spec already read.
    fn check_spec(
        &self,
        ctx: Context<'_>,
        object: &Object,
        spec: &Result<Spec, ModelError>,
        creating: bool,
    ) -> Vec<Finding> {
        let mut findings = fields::unknown_fields(object);
        match spec {
            Err(e) => {
                let (path, message) = match e {
                    ModelError::Shape { path, message, .. } => (path.clone(), message.clone()),
                    other => (FieldPath::new("spec"), other.to_string()),
                };
                findings.push(Finding::new(Code::RG100, &object.key, path, format!("invalid value: {message}")));
            }
            Ok(Spec::VirtualService(spec)) => {
                findings.extend(routes::check_virtual_service(ctx, &object.key, spec));
                findings.extend(gateways::check_virtual_service(ctx, &object.key, spec));
            }
            Ok(Spec::HttpRoute(spec)) => {
                findings.extend(http_route::check_http_route(ctx, &object.key, spec));
                findings.extend(gateways::check_http_route(ctx, &object.key, spec));
            }
            Ok(Spec::DestinationRule(spec)) => {
                findings.extend(subsets::check_destination_rule(ctx, &object.key, spec));
                findings.extend(unused_rules::check(ctx, &object.key, spec));
                findings.extend(duplicate_rules::check(ctx, object, spec, creating));
            }
            Ok(Spec::ServiceEntry(spec)) => findings.extend(service_entry::check_service_entry(&object.key, spec)),
            Ok(Spec::Deployment(_)) => findings.extend(version::check_deployment(ctx.policy, object)),
            Ok(_) => {}
        }
        findings
    }

    /// The version-label mutation of a Deployment (an empty patch for other
    /// kinds, and for an object being deleted: the UPDATEs that remove its
    /// finalizers serve no one a label).
    pub fn mutate(&self, object: &Object, old: Option<&Object>) -> Mutation {
        let deleting = object.raw.lookup("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
        if object.kind() != Kind::Deployment || deleting {
            return Mutation::default();
        }
        version::mutate(&self.policy, object, old)
    }

    /// The objects routeguard wants to exist for this snapshot.
    pub fn generate(&self, snapshot: &Snapshot) -> Vec<Object> {
        generate::desired(Context { policy: &self.policy, snapshot })
    }

    /// What [`Engine::generate`] makes from these Services alone.
    pub fn generate_for<'a>(&self, snapshot: &Snapshot, services: impl IntoIterator<Item = &'a Entry>) -> Vec<Object> {
        generate::desired_for(Context { policy: &self.policy, snapshot }, services)
    }
}
