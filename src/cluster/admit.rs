//! The admission side of live mode: a refusal for a missing subset, host or
//! backend is judged again after a re-read (see [`super::reread`]).
//! The server calls [`worth_rechecking`] on every reviewed request (cheap)
//! and, when it says so, awaits [`recheck`] before answering.

use crate::admission::decide::{self, Decision, Verdict};
use crate::admission::decode::{self, Target};
use crate::admission::{Admission, Endpoint, Reviewed, encode};
use crate::policy::{Change, Finding, Snapshot};

use super::live::Live;
use super::reread;

/// True when a review refused for a missing subset, host or backend (worth a re-read).
pub fn worth_rechecking(endpoint: Endpoint, reviewed: &Reviewed) -> bool {
    endpoint == Endpoint::Validate
        && reviewed.summary.decision == Decision::Denied
        && reviewed.summary.codes.iter().any(|c| reread::CODES.contains(c))
}

/// Judges a refused request again after re-reading the objects it depends on;
/// `first` stands when the request cannot be read again or nothing was re-read.
pub async fn recheck(live: &Live, admission: &Admission, endpoint: Endpoint, body: &[u8], first: Reviewed) -> Reviewed {
    let Ok(request) = decode::decode(body) else { return first };
    let Target::Handled { object: Some(object), old, .. } = &request.target else { return first };
    let engine = admission.engine();
    let snapshot = admission.snapshots().current();
    let verdict = decide::decide(engine, &snapshot, endpoint, &request);
    let change =
        Change { operation: request.operation, object: Some(object), old: old.as_ref(), user: request.user.as_deref() };
    let judge = |s: &Snapshot| engine.validate(s, &change);
    let rereader = live.rereader();
    let Some(findings) = rereader.recheck(engine, &snapshot, object, &verdict.findings, live.generates(), judge).await
    else {
        return first;
    };
    let decision = if findings.iter().any(Finding::is_error) { Decision::Denied } else { Decision::Allowed };
    if decision == Decision::Allowed {
        let codes: Vec<&str> = verdict.errors().map(|f| f.code.as_str()).collect();
        tracing::info!(uid = %request.uid, codes = %codes.join(","), "a re-read found what was missing; allowed");
    }
    let again = Verdict { decision, findings, ..verdict };
    match encode::encode(&request, &again) {
        Ok(body) => Reviewed { body, summary: again.summary(&request) },
        Err(_) => first,
    }
}
