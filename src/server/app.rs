//! The HTTP surface: the admission router (served over TLS) and the admin
//! router (plain HTTP). Handlers are thin: they move bytes between HTTP and
//! [`Admission`], log one line per request and count it.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest as _, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::text::encode_eof;
use tower_http::catch_panic::CatchPanicLayer;

use crate::admission::{Admission, AdmissionError, Decided, Endpoint, Summary};
use crate::cluster::live::Live as Cluster;

use super::metrics::{self, Live, Metrics};

/// The largest AdmissionReview accepted (the API server's own limit is 3 MiB
/// per object; an UPDATE carries two).
pub const MAX_BODY: usize = 7 * 1024 * 1024;

/// Bodies larger than this are reviewed on the blocking pool, off the I/O threads.
const BLOCKING_BODY: usize = 256 * 1024;

/// Whether `/readyz` says yes: true until shutdown starts.
#[derive(Debug)]
pub struct Readiness {
    ready: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness { ready: AtomicBool::new(true) }
    }
}

impl Readiness {
    /// True until [`Readiness::drain`].
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// From now on `/readyz` answers 503 (shutdown has started).
    pub fn drain(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// Live cluster mode (`--source=cluster`): readiness waits for its first
    /// sync, refusals for missing objects are re-read, metrics add its own.
    pub cluster: Option<Arc<Cluster>>,
}

impl AppState {
    /// State over an admission handler, with fresh metrics, ready.
    pub fn new(admission: Admission) -> AppState {
        AppState { admission, metrics: Arc::default(), readiness: Arc::default(), cluster: None }
    }

    /// True while `/readyz` answers 200: not shutting down and, in cluster
    /// mode, the index completed its first sync.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready() && self.cluster.as_ref().is_none_or(|c| c.is_synced())
    }
}

/// The admission router with every layer, ready to serve.
pub fn admission_router(state: AppState) -> Router {
    layers(routes(), state.metrics.clone()).with_state(state)
}

/// `POST /validate`, `POST /mutate` and a JSON 404 for anything else.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/validate", post(validate).fallback(method_not_allowed))
        .route("/mutate", post(mutate).fallback(method_not_allowed))
        .fallback(not_found)
}

/// The body limit and panic catching that [`admission_router`] adds to [`routes`]
/// (exposed so tests can add a route that panics).
pub fn layers(router: Router<AppState>, metrics: Arc<Metrics>) -> Router<AppState> {
    router.layer(DefaultBodyLimit::max(MAX_BODY)).layer(CatchPanicLayer::custom(move |panic| {
        metrics.panicked();
        tracing::error!(panic = %panic_message(&panic), "handler panicked; answered 500");
        metrics.rejected(500, "InternalError");
        status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal error while reviewing the request", None)
    }))
}

/// `GET /livez`, `GET /readyz`, `GET /metrics`.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn validate(State(state): State<AppState>, request: Request) -> Response {
    admit(state, Endpoint::Validate, request).await
}

async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    admit(state, Endpoint::Mutate, request).await
}

async fn admit(state: AppState, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    let reject = |code: StatusCode, reason: &'static str, message: String, cause: Option<&str>| {
        state.metrics.rejected(code.as_u16(), reason);
        state.metrics.error_latency(endpoint, started.elapsed());
        tracing::warn!(
            endpoint = endpoint.as_str(),
            status = code.as_u16(),
            reason,
            message,
            "admission request refused"
        );
        status(code, reason, &message, cause)
    };
    if let Err(found) = json_content_type(request.headers()) {
        let message = format!("content-type must be application/json, got {found:?}");
        return reject(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", message, None);
    }
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("the body is larger than {MAX_BODY} bytes");
            return reject(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", message, None);
        }
        Err(rejection) => return reject(StatusCode::BAD_REQUEST, "BadRequest", rejection.body_text(), None),
    };
    let decided = match decide(&state.admission, endpoint, body).await {
        Ok(decided) => decided,
        Err(e) if e.is_bad_request() => {
            return reject(StatusCode::BAD_REQUEST, "BadRequest", e.to_string(), Some(e.reason()));
        }
        Err(e) => return reject(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string(), Some(e.reason())),
    };
    // Live mode: before refusing for a missing object, re-read it (the watch may lag).
    let decided = state.admission.second_look(decided).await;
    match decided.answer() {
        Ok(reviewed) => {
            let latency = started.elapsed();
            state.metrics.admission(endpoint, &reviewed.summary, latency);
            log_admission(endpoint, &reviewed.summary, latency);
            ([(CONTENT_TYPE, "application/json")], reviewed.body).into_response()
        }
        Err(e) => reject(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string(), Some(e.reason())),
    }
}

/// Decides small bodies in place and large ones on the blocking pool; a panic
/// there is re-raised here so the panic layer answers it.
async fn decide(admission: &Admission, endpoint: Endpoint, body: Bytes) -> Result<Decided, AdmissionError> {
    if body.len() <= BLOCKING_BODY {
        return admission.decide(endpoint, &body);
    }
    let admission = admission.clone();
    match tokio::task::spawn_blocking(move || admission.decide(endpoint, &body)).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(AdmissionError::Encode(format!("review task failed: {e}"))),
    }
}

/// One line per admission: uid, kind, namespace/name, operation, decision, codes, latency.
/// Every value is a string or a number, not `Display`: those are written at once,
/// where a `Display` value is first formatted into a `String` of its own.
fn log_admission(endpoint: Endpoint, s: &Summary, latency: Duration) {
    let codes = s.codes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",");
    tracing::info!(
        endpoint = endpoint.as_str(),
        uid = s.uid.as_str(),
        kind = s.kind.as_str(),
        namespace = s.namespace.as_str(),
        name = s.name.as_str(),
        operation = s.operation,
        decision = s.decision.as_str(),
        codes = codes.as_str(),
        dry_run = s.dry_run,
        latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        note = s.note.as_deref().unwrap_or(""),
        "admission"
    );
}

/// `Ok` for `application/json` (parameters such as `charset` allowed), else the value found.
fn json_content_type(headers: &HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(CONTENT_TYPE) else { return Err(String::new()) };
    let text = value.to_str().map_err(|_| "(not text)".to_string())?;
    let essence = text.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") { Ok(()) } else { Err(text.to_string()) }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.readiness.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if !state.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "cluster index not synced yet\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let live = Live { snapshot_objects: state.admission.snapshots().current().len(), ready: state.is_ready() };
    // Both registries (the server's and live mode's) in one exposition, one `# EOF`.
    let mut text = String::with_capacity(8192);
    let encoded = state
        .metrics
        .encode(&mut text, live)
        .and_then(|()| state.cluster.as_ref().map_or(Ok(()), |cluster| cluster.encode_metrics(&mut text)))
        .and_then(|()| encode_eof(&mut text));
    if let Err(e) = encoded {
        tracing::error!(error = %e, "cannot encode the metrics");
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n").into_response();
    }
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    state.metrics.rejected(404, "NotFound");
    let message = format!("no such path: {} {}", request.method(), request.uri().path());
    status(StatusCode::NOT_FOUND, "NotFound", &message, None)
}

async fn method_not_allowed(State(state): State<AppState>, request: Request) -> Response {
    state.metrics.rejected(405, "MethodNotAllowed");
    let message = format!("{} {}: only POST is allowed", request.method(), request.uri().path());
    status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message, None)
}

/// An error as a Kubernetes `Status` object (what every error body looks like).
pub fn status(code: StatusCode, reason: &str, message: &str, cause: Option<&str>) -> Response<Body> {
    let mut body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(cause) = cause {
        body["details"] = serde_json::json!({"causes": [{"reason": cause, "message": message}]});
    }
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    response
}

fn panic_message(panic: &Box<dyn Any + Send + 'static>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
