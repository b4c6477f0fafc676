//! Reading an AdmissionReview body into a [`Request`].
//!
//! The envelope is read into borrowed types of the fields routeguard uses
//! (the rest of the request, `userInfo.groups` and `options` say, is skipped
//! without being stored), but `object` and `oldObject` stay plain JSON: the
//! JSON Patch of the mutating endpoint must be computed against the object
//! as the API server sent it, and nothing it reads may be lost to a typed
//! round trip. Only what no rule and no mutation reads is left out
//! ([`Pruning::Admission`]), in a way that keeps every patch path valid.
//!
//! A review as the API server writes it is read in one pass, its objects
//! included ([`wire::Eager`]), with no `serde(flatten)` buffering. A review
//! that pass cannot read is read again with its objects kept as text; one
//! that is not a usable review is read a third time, step by step, for the
//! error.

mod wire;

use kube::core::GroupVersionKind;
use kube::core::admission::Operation as WireOperation;
use serde_json::Value;

use self::wire::{Eager, Envelope, Review, Sent, WireGroupVersionResource, WireRequest};

use crate::model::pruned::{self, Pruning};
use crate::model::{Kind, Lookup as _, ModelError, Object};
use crate::policy::{Change, Operation};

/// The only AdmissionReview version routeguard speaks (configure the webhook
/// with `admissionReviewVersions: ["v1"]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The `kind` of the envelope.
pub const KIND: &str = "AdmissionReview";

/// A body that is not a usable AdmissionReview (the server answers 400), or a
/// response that could not be written (500).
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("unsupported apiVersion {found:?}, expected {API_VERSION:?}")]
    ApiVersion { found: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("request {uid}: {operation} of {kind} has no {field}")]
    NoObject { uid: String, operation: &'static str, kind: Kind, field: &'static str },
    #[error("request {uid}: {field}: {message}")]
    BadObject { uid: String, field: &'static str, message: String },
    #[error("cannot encode the AdmissionReview response: {0}")]
    Encode(String),
}

impl AdmissionError {
    /// A stable machine-readable reason, for the error body and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AdmissionError::MalformedJson(_) => "MalformedJSON",
            AdmissionError::NotAReview(_) => "NotAnAdmissionReview",
            AdmissionError::ApiVersion { .. } => "UnsupportedAPIVersion",
            AdmissionError::NoRequest => "NoRequest",
            AdmissionError::NoObject { .. } => "NoObject",
            AdmissionError::BadObject { .. } => "BadObject",
            AdmissionError::Encode(_) => "EncodeFailed",
        }
    }

    /// True when the request was at fault (400), false for our own failure (500).
    pub fn is_bad_request(&self) -> bool {
        !matches!(self, AdmissionError::Encode(_))
    }
}

/// What is being admitted.
// One per request, never stored in bulk: boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Target {
    /// A kind the policy handles, with the objects its operation carries.
    Handled {
        kind: Kind,
        /// The new object (CREATE, UPDATE).
        object: Option<Object>,
        /// The object as it was: for a DELETE, and for an UPDATE of a
        /// DestinationRule or a Deployment (the only kinds whose old state
        /// the policy compares; for other kinds it is present but not read).
        old: Option<Object>,
    },
    /// Anything else: allowed without a look, for the reason given.
    Unhandled(String),
    /// A handled kind whose `object` or `oldObject` is missing or unreadable:
    /// answered (uid echoed) with a 400 status and `allowed: false`, since the
    /// API server takes a non-200 answer for a webhook failure, which
    /// `failurePolicy: Ignore` would turn into admitting the object unchecked.
    Invalid {
        /// The machine-readable reason ([`AdmissionError::reason`]).
        reason: &'static str,
        message: String,
    },
}

/// One decoded admission request.
#[derive(Debug, Clone)]
pub struct Request {
    pub uid: String,
    /// The kind of the object, as the API server names it.
    pub kind: GroupVersionKind,
    pub namespace: String,
    pub name: String,
    pub operation: Operation,
    /// `userInfo.username`, for the policy's `exemptUsers`.
    pub user: Option<String>,
    /// A dry run: same decision, no side effects.
    pub dry_run: bool,
    pub target: Target,
}

impl Request {
    /// The change the validating policy judges, when the request carries a handled object.
    pub fn change(&self) -> Option<Change<'_>> {
        let Target::Handled { object, old, .. } = &self.target else { return None };
        Some(Change {
            operation: self.operation,
            object: object.as_ref(),
            old: old.as_ref(),
            user: self.user.as_deref(),
        })
    }
}

/// Reads an AdmissionReview `admission.k8s.io/v1` body.
pub fn decode(body: &[u8]) -> Result<Request, AdmissionError> {
    // JSON is UTF-8 (RFC 8259): checked once for the whole body, so that
    // the parts only skipped are checked too and the strings read are not
    // checked again (serde_json reads `&str` as checked text).
    let Some(text) = std::str::from_utf8(body).ok().filter(|_| starts_an_object(body)) else {
        return Err(refusal(body));
    };
    // One pass over the body, the objects read as they come, when it is a
    // well-formed review; else once more with the objects kept as text (an
    // object nested too deep to read is answered as a bad object, with the
    // uid), and a third time, step by step, for the error.
    let wire = match serde_json::from_str::<Review<'_, Eager<'_>>>(text) {
        Ok(review) => usable(review).map(|eager| eager.0),
        Err(_) => serde_json::from_str::<Review<'_, WireRequest<'_>>>(text).ok().and_then(usable),
    };
    match wire.filter(|wire| !wire.uid.is_empty()) {
        Some(wire) => Ok(request(wire)),
        None => Err(refusal(body)),
    }
}

/// The request of a review of the kind and version routeguard speaks.
fn usable<R>(review: Review<'_, R>) -> Option<R> {
    let ok = review.kind.as_deref() == Some(KIND) && review.api_version.as_deref() == Some(API_VERSION);
    review.request.filter(|_| ok)
}

/// Why a body is not a usable review: read again, the envelope first, so
/// that the error names the first thing wrong (a wrong `kind` before a bad
/// request, a bad request with the `request: ` context).
fn refusal(body: &[u8]) -> AdmissionError {
    if let Err(e) = std::str::from_utf8(body) {
        return AdmissionError::MalformedJson(format!("the body is not UTF-8: {e}"));
    }
    let not_object = || !starts_an_object(body);
    let envelope: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(envelope) if !not_object() => envelope,
        Ok(_) => return AdmissionError::NotAReview("expected a JSON object".to_string()),
        Err(e) => match json_error(&e, "") {
            AdmissionError::NotAReview(_) if not_object() => {
                return AdmissionError::NotAReview("expected a JSON object".to_string());
            }
            other => return other,
        },
    };
    match envelope.kind.as_deref() {
        Some(KIND) => {}
        Some(other) => return AdmissionError::NotAReview(format!("kind is {other:?}, expected {KIND:?}")),
        None => return AdmissionError::NotAReview(format!("no kind, expected {KIND:?}")),
    }
    match envelope.api_version.as_deref() {
        Some(API_VERSION) => {}
        found => return AdmissionError::ApiVersion { found: found.unwrap_or_default().to_string() },
    }
    let Some(raw) = envelope.request else { return AdmissionError::NoRequest };
    match serde_json::from_str::<WireRequest<'_>>(raw.get()) {
        Err(e) => json_error(&e, "request: "),
        Ok(wire) if wire.uid.is_empty() => AdmissionError::NotAReview("request.uid is empty".to_string()),
        // Read in one pass it failed; read alone it does not (only a
        // duplicate field can do that): still not a review to trust.
        Ok(_) => AdmissionError::NotAReview("the review could not be read".to_string()),
    }
}

/// True when the body's first non-blank byte opens a JSON object: serde
/// reads a struct from an array too, and an AdmissionReview is an object.
fn starts_an_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn json_error(e: &serde_json::Error, context: &str) -> AdmissionError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => AdmissionError::MalformedJson(e.to_string()),
        Category::Data => AdmissionError::NotAReview(format!("{context}{e}")),
    }
}

fn operation(op: &WireOperation) -> Operation {
    match op {
        WireOperation::Create => Operation::Create,
        WireOperation::Update => Operation::Update,
        WireOperation::Delete => Operation::Delete,
        WireOperation::Connect => Operation::Connect,
    }
}

fn request(wire: WireRequest<'_>) -> Request {
    let operation = operation(&wire.operation);
    let namespace = match wire.namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => namespace.to_string(),
        _ => "default".to_string(),
    };
    let user = wire.user_info.as_ref().and_then(|u| u.username.as_deref()).map(str::to_string);
    let kind = &wire.kind;
    let mut request = Request {
        uid: wire.uid.to_string(),
        kind: GroupVersionKind::gvk(&kind.group, &kind.version, &kind.kind),
        namespace,
        name: wire.name.as_deref().unwrap_or_default().to_string(),
        operation,
        user,
        dry_run: wire.dry_run.unwrap_or(false),
        target: Target::Unhandled(String::new()),
    };
    request.target =
        target(&request, wire).unwrap_or_else(|e| Target::Invalid { reason: e.reason(), message: e.to_string() });
    request
}

fn target(request: &Request, wire: WireRequest<'_>) -> Result<Target, AdmissionError> {
    let resource = &wire.resource;
    let Some(kind) = Kind::from_resource(&resource.group, &resource.resource) else {
        let group = if resource.group.is_empty() { "core" } else { &*resource.group };
        return Ok(Target::Unhandled(format!("resource {}.{group} is not handled", resource.resource)));
    };
    if kind == Kind::Namespace {
        return Ok(Target::Unhandled("namespaces are read for their labels, not reviewed".to_string()));
    }
    if let Some(sub) = wire.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        return Ok(Target::Unhandled(format!("subresource {}/{sub} is not handled", resource.resource)));
    }
    let (needs_object, needs_old) = match request.operation {
        Operation::Create => (true, false),
        Operation::Update => (true, true),
        Operation::Delete => (false, true),
        Operation::Connect => return Ok(Target::Unhandled("CONNECT is not checked".to_string())),
    };
    let missing = |field| AdmissionError::NoObject {
        uid: request.uid.clone(),
        operation: request.operation.as_str(),
        kind,
        field,
    };
    let (reads_object, reads_old) = reads_objects(kind, request.operation);
    let object = match (needs_object, wire.object) {
        (true, None) => return Err(missing("object")),
        (true, Some(sent)) if reads_object => Some(read_object(request, kind, sent, "object")?),
        _ => None,
    };
    let old = match (needs_old, wire.old_object) {
        (true, None) => return Err(missing("oldObject")),
        (true, Some(sent)) if reads_old => Some(read_object(request, kind, sent, "oldObject")?),
        _ => None,
    };
    Ok(Target::Handled { kind, object, old })
}

/// Whether a request on a handled kind reads its `object` and its
/// `oldObject`. An UPDATE's old object matters only where the policy
/// compares: the subsets a DestinationRule drops, the template a Deployment
/// changes.
fn reads_objects(kind: Kind, operation: Operation) -> (bool, bool) {
    match operation {
        Operation::Create => (true, false),
        Operation::Update => (true, matches!(kind, Kind::DestinationRule | Kind::Deployment)),
        Operation::Delete => (false, true),
        Operation::Connect => (false, false),
    }
}

/// [`reads_objects`] from the wire, for reading the objects as they come:
/// none of a kind that is not looked at. A subresource, which the API server
/// sends before the objects too, is not consulted: reading an object that
/// is then not looked at wastes the reading and changes no answer.
fn reads(resource: &WireGroupVersionResource<'_>, operation: &WireOperation) -> (bool, bool) {
    match Kind::from_resource(&resource.group, &resource.resource) {
        Some(Kind::Namespace) | None => (false, false),
        Some(kind) => reads_objects(kind, self::operation(operation)),
    }
}

/// Reads `object` or `oldObject`; its kind must be the request's. An object
/// created with `generateName` has no name yet: the request's name, or the
/// prefix, stands in.
fn read_object(request: &Request, kind: Kind, sent: Sent<'_>, field: &'static str) -> Result<Object, AdmissionError> {
    let bad = |message: String| AdmissionError::BadObject { uid: request.uid.clone(), field, message };
    // What no rule and no mutation reads (status, managed fields, others'
    // annotations) is skipped, not built: often more than half of what the
    // API server sends. Text was checked as JSON with the rest of the body;
    // only nesting deeper than serde_json's limit can fail here.
    let raw = match sent {
        Sent::Read(raw) => raw,
        Sent::Text(text) => pruned::read(text.get(), Pruning::Admission).map_err(|e| bad(e.to_string()))?,
        // `reads` and `reads_objects` agree, so this is not reached; an answer all the same.
        Sent::Unread => return Err(bad("was checked as JSON but not read".to_string())),
    };
    let has_name = raw.lookup("/metadata/name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let object = if has_name {
        Object::from_value(raw, &request.namespace)
    } else {
        let stand_in = stand_in_name(request, &raw);
        let mut probe = raw.clone();
        if let Some(meta) =
            probe.as_object_mut().map(|m| m.entry("metadata").or_insert_with(|| Value::Object(Default::default())))
            && let Some(meta) = meta.as_object_mut()
        {
            meta.insert("name".to_string(), Value::String(stand_in));
        }
        Object::from_value(probe, &request.namespace).map(|o| Object { key: o.key, raw })
    };
    let object = object.map_err(|e| match e {
        ModelError::UnknownKind { api_version, kind: found } => {
            bad(format!("{found} ({api_version}) does not match the request's resource, expected a {kind}"))
        }
        other => bad(other.to_string()),
    })?;
    if object.kind() != kind {
        return Err(bad(format!("{} does not match the request's resource, expected a {kind}", object.kind())));
    }
    Ok(object)
}

fn stand_in_name(request: &Request, raw: &Value) -> String {
    if !request.name.is_empty() {
        return request.name.clone();
    }
    match raw.lookup("/metadata/generateName").and_then(Value::as_str) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}*"),
        _ => "(unnamed)".to_string(),
    }
}

#[cfg(test)]
mod tests;
