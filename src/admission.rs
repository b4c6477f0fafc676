//! Admission: an `admission.k8s.io/v1` AdmissionReview in, an AdmissionReview out.
//!
//! [`decode`] reads the request body, [`decide`] asks the policy
//! [`Engine`] about the change against one consistent
//! [`Snapshot`] from a [`SnapshotSource`] (pure and
//! synchronous: [`Admission::decide`]), a refusal may get the source's
//! [`SecondLook`] (live mode re-reads what the watch has not delivered yet:
//! [`Admission::second_look`], the only step that waits), and [`encode`]
//! writes the response (a denial with every error finding, the warnings, the
//! JSON Patch of the mutating endpoint: [`Decided::answer`]). The
//! [`server`](crate::server) moves bytes and logs the [`Summary`].

pub(crate) mod decide;
pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod source;

use std::sync::Arc;

use crate::policy::{Code, Engine, Snapshot};

pub use decide::{Decision, Verdict};
pub use decode::{AdmissionError, Request};
pub use source::{SecondLook, SharedSnapshot, SnapshotSource};

/// The two webhook endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /validate`: allow or deny, with warnings.
    Validate,
    /// `POST /mutate`: a JSON Patch for Deployments (version labels).
    Mutate,
}

impl Endpoint {
    /// `validate` or `mutate`, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// What one admission request was and what was decided, for the log line and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub uid: String,
    /// The request's kind (`VirtualService`, or whatever kind an unhandled request named).
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'static str,
    pub decision: Decision,
    /// The codes of every finding (errors, warnings and infos), in order.
    pub codes: Vec<Code>,
    pub dry_run: bool,
    /// Why the request was not looked at, for unhandled requests.
    pub note: Option<String>,
}

/// A reviewed request: the AdmissionReview to send back and what to log.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// The response AdmissionReview, serialized.
    pub body: Vec<u8>,
    pub summary: Summary,
}

/// The policy engine and the snapshot it judges against: what both endpoints call.
#[derive(Clone)]
pub struct Admission {
    engine: Arc<Engine>,
    snapshots: Arc<dyn SnapshotSource>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl Admission {
    /// An admission handler over an engine and a snapshot source.
    pub fn new(engine: Engine, snapshots: Arc<dyn SnapshotSource>) -> Admission {
        Admission { engine: Arc::new(engine), snapshots }
    }

    /// The engine (and through it the policy).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The snapshot source.
    pub fn snapshots(&self) -> &Arc<dyn SnapshotSource> {
        &self.snapshots
    }

    /// Decodes and judges one request body against the current snapshot. An
    /// error means the body is not a usable AdmissionReview (the server
    /// answers 400); every decision, a denial included, is `Ok`.
    pub fn decide(&self, endpoint: Endpoint, body: &[u8]) -> Result<Decided, AdmissionError> {
        let request = decode::decode(body)?;
        // One snapshot per request, so a swap in the middle cannot mix two states.
        let snapshot = self.snapshots.current();
        let verdict = decide::decide(&self.engine, &snapshot, endpoint, &request);
        Ok(Decided { endpoint, request, verdict, snapshot })
    }

    /// A refusal judged again when the snapshot source takes a second look
    /// and the findings are worth one; any other verdict as it is.
    pub async fn second_look(&self, decided: Decided) -> Decided {
        let Some(look) = self.snapshots.second_look() else { return decided };
        let refused = decided.endpoint == Endpoint::Validate && decided.verdict.decision == Decision::Denied;
        if !refused || !look.wanted(&decided.verdict.findings) {
            return decided;
        }
        let Decided { endpoint, request, verdict, snapshot } = decided;
        let request = Arc::new(request);
        let again =
            look.look_again(self.engine.clone(), snapshot.clone(), request.clone(), verdict.findings.clone()).await;
        let request = Arc::unwrap_or_clone(request);
        let verdict = match again {
            Some(findings) => {
                // Only a denial gets a second look, so the mode is `deny`; it is kept for the message.
                let mut again = Verdict::judged(verdict.key.clone(), findings, None);
                again.mode = verdict.mode.clone();
                if again.decision.is_allowed() {
                    let codes: Vec<&str> = verdict.errors().map(|f| f.code.as_str()).collect();
                    tracing::info!(uid = %request.uid, codes = %codes.join(","), "a second look found what was missing; allowed");
                }
                again
            }
            None => verdict,
        };
        Decided { endpoint, request, verdict, snapshot }
    }

    /// Decides and answers one request body without a second look (see [`Admission::decide`]).
    pub fn review(&self, endpoint: Endpoint, body: &[u8]) -> Result<Reviewed, AdmissionError> {
        self.decide(endpoint, body)?.answer()
    }
}

/// One request decoded and judged, not yet answered: the decision as data.
#[derive(Debug, Clone)]
pub struct Decided {
    pub endpoint: Endpoint,
    pub request: Request,
    pub verdict: Verdict,
    /// The snapshot it was judged against.
    pub snapshot: Arc<Snapshot>,
}

impl Decided {
    /// The AdmissionReview to send back, and what to log.
    pub fn answer(&self) -> Result<Reviewed, AdmissionError> {
        let body = encode::encode(&self.request, &self.verdict)?;
        Ok(Reviewed { body, summary: self.verdict.summary(&self.request) })
    }
}

#[cfg(test)]
mod tests;
