//! Writing the AdmissionReview response.

use std::collections::HashMap;

use base64::Engine as _;
use kube::core::Status;
use kube::core::admission::AdmissionResponse;
use kube::core::response::{StatusCause, StatusDetails, reason};
use serde::Serialize;

use crate::model::ObjectKey;
use crate::policy::Finding;

use super::decide::{Decision, Verdict};
use super::decode::{API_VERSION, AdmissionError, KIND, Request, Target};

/// Kubernetes asks webhooks to keep each warning under 120 characters.
pub const MAX_WARNING_CHARS: usize = 120;

/// The AdmissionReview answering `request`, serialized.
pub fn encode(request: &Request, verdict: &Verdict) -> Result<Vec<u8>, AdmissionError> {
    let response = response(request, verdict)?;
    // kube serializes the patch bytes as a JSON array of numbers; the API
    // server's canonical form (Go's `[]byte`) is a base64 string. So the
    // review is written from borrowed parts, in kube's field order, with the
    // patch encoded once (no intermediate `Value` of the whole review).
    let patch = response.patch.as_deref().map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let review = WireReview {
        api_version: API_VERSION,
        kind: KIND,
        response: WireResponse {
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.result,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations: &response.audit_annotations,
            warnings: response.warnings.as_deref(),
        },
    };
    serde_json::to_vec(&review).map_err(|e| AdmissionError::Encode(e.to_string()))
}

/// `AdmissionReview` with a response only, as the API server reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: WireResponse<'a>,
}

/// kube's `AdmissionResponse`, field for field, the patch as base64 text.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "no_annotations")]
    audit_annotations: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a [String]>,
}

fn no_annotations(annotations: &&HashMap<String, String>) -> bool {
    annotations.is_empty()
}

/// The AdmissionResponse for a verdict: uid echoed, a 403 Status listing every
/// error for a denial, the warnings, the patch.
pub fn response(request: &Request, verdict: &Verdict) -> Result<AdmissionResponse, AdmissionError> {
    // `invalid` is kube's only constructor that needs no typed request; every
    // field it sets is replaced here.
    let mut response = AdmissionResponse::invalid("");
    response.uid = request.uid.clone();
    response.allowed = verdict.decision.is_allowed();
    response.result = match verdict.decision {
        _ if response.allowed => Status::success(),
        Decision::Invalid => invalid(request, verdict),
        _ => denial(request, verdict),
    };
    let notice = verdict.mode.as_ref().and_then(|m| m.notice()).map(|n| truncate(&n, MAX_WARNING_CHARS));
    let warnings: Vec<String> = notice.into_iter().chain(verdict.warnings().map(warning)).collect();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    match &verdict.patch {
        Some(patch) if response.allowed => {
            response.with_patch(patch.clone()).map_err(|e| AdmissionError::Encode(e.to_string()))
        }
        _ => Ok(response),
    }
}

/// The 400 status of a request whose object is missing or unreadable.
fn invalid(request: &Request, verdict: &Verdict) -> Status {
    let why = verdict.note.as_deref().unwrap_or("the object is missing or unreadable");
    let reason = match &request.target {
        Target::Invalid { reason, .. } => reason,
        _ => "BadObject",
    };
    let message =
        format!("routeguard cannot review {} {}/{}: {why}", request.kind.kind, request.namespace, request.name);
    let details = StatusDetails {
        name: request.name.clone(),
        group: request.kind.group.clone(),
        kind: request.kind.kind.clone(),
        uid: String::new(),
        causes: vec![StatusCause { reason: reason.to_string(), message: why.to_string(), field: String::new() }],
        retry_after_seconds: 0,
    };
    Status::failure(&message, reason::BAD_REQUEST).with_code(400).with_details(details)
}

fn denial(request: &Request, verdict: &Verdict) -> Status {
    let errors: Vec<&Finding> = verdict.errors().collect();
    let mut message = match &verdict.key {
        Some(key) => denial_message(key, &errors),
        None => {
            format!("routeguard denied {} {}/{}: {}", request.kind.kind, request.namespace, request.name, join(&errors))
        }
    };
    if let Some(mode) = &verdict.mode {
        // Who set the bar: the namespace's label or the policy's default.
        message.push_str(&format!(" ({})", mode.describe()));
    }
    let details = StatusDetails {
        name: verdict.key.as_ref().map_or_else(|| request.name.clone(), |k| k.name.clone()),
        group: request.kind.group.clone(),
        kind: request.kind.kind.clone(),
        uid: String::new(),
        causes: errors
            .iter()
            .map(|f| StatusCause {
                reason: f.code.to_string(),
                message: f.message.clone(),
                field: f.path.as_str().to_string(),
            })
            .collect(),
        retry_after_seconds: 0,
    };
    Status::failure(&message, reason::FORBIDDEN).with_code(403).with_details(details)
}

/// `routeguard denied VirtualService default/reviews: RG103 spec.http[0]...: ...; RG101 ...`.
pub fn denial_message(key: &ObjectKey, errors: &[&Finding]) -> String {
    format!("routeguard denied {key}: {}", join(errors))
}

fn join(errors: &[&Finding]) -> String {
    errors.iter().map(|f| f.summary()).collect::<Vec<_>>().join("; ")
}

/// A warning finding as kubectl will print it (`Warning: RG203 ...`), cut to
/// [`MAX_WARNING_CHARS`] characters with an ellipsis.
pub fn warning(finding: &Finding) -> String {
    truncate(&finding.summary(), MAX_WARNING_CHARS)
}

/// `text` if it has at most `max` characters, else its first `max - 3` and `...`.
pub fn truncate(text: &str, max: usize) -> String {
    // No intermediate string: the end found by char index (twice when the
    // text is cut), the kept part copied whole unless it holds a control
    // character (one call per warning of every answer: this is hot).
    let fits = text.char_indices().nth(max).is_none();
    let kept = match fits {
        true => text,
        false => &text[..text.char_indices().nth(max.saturating_sub(3)).map_or(text.len(), |(i, _)| i)],
    };
    // Warnings travel in HTTP headers: keep them to one line.
    let mut line = match kept.contains(char::is_control) {
        true => kept.chars().map(|c| if c.is_control() { ' ' } else { c }).collect(),
        false => kept.to_string(),
    };
    if !fits {
        line.push_str("...");
    }
    line
}
