//! The admission router driven in process with `tower::ServiceExt::oneshot`:
//! every kind and operation, denials, warnings, the mutating patch, dryRun,
//! exemptUsers, the bad-input table, a panicking handler, and the admin router.

#[path = "server_support/common.rs"]
mod common;
#[path = "server_support/openmetrics.rs"]
mod openmetrics;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use common::*;
use http_body_util::BodyExt as _;
use routeguard::policy::Policy;
use routeguard::server::app::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn router(policy: Policy) -> (axum::Router, AppState) {
    let state = AppState::new(admission(policy));
    (app::admission_router(state.clone()), state)
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, String, Value) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, content_type, value)
}

fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).header("content-type", "application/json").body(body.into()).expect("request")
}

/// Posts a review to `path` and returns the AdmissionReview's `response`.
async fn admit(router: &axum::Router, path: &str, review: &Value) -> Value {
    let (status, content_type, value) = send(router, post_json(path, common::body(review))).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(content_type, "application/json");
    assert_eq!(value["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(value["kind"], "AdmissionReview");
    assert_eq!(value["response"]["uid"], UID, "the uid is always echoed");
    value["response"].clone()
}

fn codes(response: &Value) -> Vec<String> {
    response["status"]["details"]["causes"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["reason"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn every_kind_and_operation() {
    let (router, _) = router(Policy::default());
    let vs_ok = virtual_service(&[("v1", 50), ("v3", 50)]);
    let vs_bad = virtual_service(&[("v1", 50), ("v9", 50)]);
    let dr_all = destination_rule(&["v1", "v2", "v3"]);
    let dr_no_v1 = destination_rule(&["v2", "v3"]);
    let reviews_v1 = deployment("reviews-v1", "reviews", Some("v1"));
    let reviews_v3 = deployment("reviews-v3", "reviews", Some("v3"));
    let svc = service("reviews", "reviews");
    let route_ok = http_route("ratings");
    let route_bad = http_route("nowhere");
    let mut route_unattached = http_route("ratings");
    route_unattached["spec"]["parentRefs"][0]["name"] = json!("no-such-gateway");
    // (operation, object, old, allowed, error codes)
    type Case<'a> = (&'a str, Option<&'a Value>, Option<&'a Value>, bool, &'a [&'a str]);
    let table: Vec<Case<'_>> = vec![
        ("CREATE", Some(&vs_ok), None, true, &[]),
        ("CREATE", Some(&vs_bad), None, false, &["RG103"]),
        ("UPDATE", Some(&vs_bad), Some(&vs_ok), false, &["RG103"]),
        ("UPDATE", Some(&vs_ok), Some(&vs_bad), true, &[]),
        ("DELETE", None, Some(&vs_ok), true, &[]),
        ("CREATE", Some(&dr_all), None, true, &[]),
        ("UPDATE", Some(&dr_no_v1), Some(&dr_all), false, &["RG201"]),
        ("DELETE", None, Some(&dr_all), false, &["RG201", "RG201"]),
        ("CREATE", Some(&route_ok), None, true, &[]),
        ("CREATE", Some(&route_bad), None, false, &["RG107"]),
        ("CREATE", Some(&route_unattached), None, false, &["RG114"]),
        ("UPDATE", Some(&route_ok), Some(&route_bad), true, &[]),
        ("DELETE", None, Some(&route_ok), true, &[]),
        ("CREATE", Some(&reviews_v1), None, true, &[]),
        ("UPDATE", Some(&reviews_v1), Some(&reviews_v1), true, &[]),
        ("DELETE", None, Some(&reviews_v1), false, &["RG303"]),
        ("DELETE", None, Some(&reviews_v3), true, &[]),
        ("CREATE", Some(&svc), None, true, &[]),
        ("UPDATE", Some(&svc), Some(&svc), true, &[]),
        ("DELETE", None, Some(&svc), false, &["RG303", "RG303"]),
    ];
    for (operation, object, old, allowed, expected) in table {
        let review = review(operation, object, old);
        let what = format!("{operation} {}", review["request"]["kind"]["kind"]);
        let response = admit(&router, "/validate", &review).await;
        assert_eq!(response["allowed"], allowed, "{what}: {response}");
        if allowed {
            assert_eq!(response["status"]["status"], "Success", "{what}");
        } else {
            assert_eq!(response["status"]["code"], 403, "{what}");
            assert_eq!(response["status"]["reason"], "Forbidden", "{what}");
            let message = response["status"]["message"].as_str().unwrap_or_default();
            assert!(message.starts_with("routeguard denied "), "{what}: {message}");
            for code in expected {
                assert!(message.contains(code), "{what}: {message}");
            }
        }
        assert_eq!(codes(&response), expected.iter().map(|c| c.to_string()).collect::<Vec<_>>(), "{what}");
    }
}

#[tokio::test]
async fn a_denial_lists_every_error_with_its_path() {
    let (router, _) = router(Policy::default());
    let vs = virtual_service(&[("v1", 30), ("v9", 50)]);
    let response = admit(&router, "/validate", &review("CREATE", Some(&vs), None)).await;
    let message = response["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("routeguard denied VirtualService default/reviews: RG101 spec.http[0].route: "),
        "{message}"
    );
    assert!(
        message.contains(
            "; RG103 spec.http[0].route[1].destination.subset: subset \"v9\" of host reviews.default.svc.cluster.local is not defined"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn warnings_go_to_response_warnings_under_120_characters() {
    let (router, _) = router(Policy::default());
    // v9 selects no Deployment: RG203, a warning.
    let dr = destination_rule(&["v1", "v2", "v3", "v9"]);
    let response =
        admit(&router, "/validate", &review("UPDATE", Some(&dr), Some(&destination_rule(&["v1", "v2", "v3"])))).await;
    assert_eq!(response["allowed"], true);
    let warnings = response["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{response}");
    let warning = warnings[0].as_str().expect("text");
    assert!(warning.starts_with("RG203 spec.subsets[3]"), "{warning}");
    assert!(warning.chars().count() <= 120, "{warning}");
}

#[tokio::test]
async fn mutate_returns_a_json_patch_that_applies() {
    let (router, _) = router(Policy::default());
    let deployment = deployment("reviews-v4", "reviews", None);
    // An UPDATE that changes the pod template (a new image) gets the label too.
    let mut previous = deployment.clone();
    previous["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/reviews:v3");
    let mut once_patched = Value::Null;
    for operation in ["CREATE", "UPDATE"] {
        let old = (operation == "UPDATE").then_some(&previous);
        let response = admit(&router, "/mutate", &review(operation, Some(&deployment), old)).await;
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch", "{operation}: {response}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().expect("base64 string"))
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON Patch");
        let mut patched = deployment.clone();
        json_patch::patch(&mut patched, &patch).expect("the patch applies to the object sent");
        assert_eq!(patched["spec"]["template"]["metadata"]["labels"]["version"], "v4");
        assert_eq!(patched["spec"]["selector"], deployment["spec"]["selector"], "the selector is never touched");
        once_patched = patched;
    }
    // Already patched (the mutation is idempotent), another kind, a DELETE: no patch.
    for review in [
        review("CREATE", Some(&once_patched), None),
        review("CREATE", Some(&service("reviews", "reviews")), None),
        review("DELETE", None, Some(&deployment)),
    ] {
        let response = admit(&router, "/mutate", &review).await;
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none() && response.get("patchType").is_none(), "{response}");
    }
}

#[tokio::test]
async fn dry_run_gets_the_same_decision() {
    let (router, state) = router(Policy::default());
    let vs = virtual_service(&[("v1", 50), ("v9", 50)]);
    let mut review = review("CREATE", Some(&vs), None);
    let wet = admit(&router, "/validate", &review).await;
    review["request"]["dryRun"] = json!(true);
    let dry = admit(&router, "/validate", &review).await;
    assert_eq!(wet, dry);
    assert_eq!(dry["allowed"], false);
    // Nothing else happens: the snapshot is the same one.
    assert_eq!(state.admission.snapshots().current().len(), bookinfo().len());
}

#[tokio::test]
async fn exempt_users_are_warned_not_denied() {
    let policy = Policy { exempt_users: vec!["alice".to_string()], ..Policy::default() };
    let (router, _) = router(policy);
    let vs = virtual_service(&[("v1", 50), ("v9", 50)]);
    let response = admit(&router, "/validate", &review("CREATE", Some(&vs), None)).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response["warnings"][0].as_str().unwrap_or_default().starts_with("RG103 "), "{response}");
    let mut review = review("CREATE", Some(&vs), None);
    review["request"]["userInfo"]["username"] = json!("bob");
    assert_eq!(admit(&router, "/validate", &review).await["allowed"], false);
}

#[tokio::test]
async fn unhandled_kinds_are_allowed() {
    let (router, _) = router(Policy::default());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
    let response = admit(&router, "/validate", &review("CREATE", Some(&cm), None)).await;
    assert_eq!(response, json!({"uid": UID, "allowed": true, "status": {"status": "Success"}}));
}

fn status(code: u16, reason: &str, message: &str, cause: Option<&str>) -> Value {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    });
    if let Some(cause) = cause {
        body["details"] = json!({"causes": [{"reason": cause, "message": message}]});
    }
    body
}

#[tokio::test]
async fn bad_input_table_gets_exact_answers_and_the_server_keeps_serving() {
    let (router, state) = router(Policy::default());
    let good = review("CREATE", Some(&virtual_service(&[("v1", 100)])), None);
    let vs = virtual_service(&[("v1", 100)]);
    let mut v1beta1 = review("CREATE", Some(&vs), None);
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_request = review("CREATE", Some(&vs), None);
    no_request.as_object_mut().expect("map").remove("request");
    let no_object = review("CREATE", None, Some(&vs));
    let huge = vec![b' '; 7 * 1024 * 1024 + 1];
    let bad = |m: &str, cause: &str| (StatusCode::BAD_REQUEST, status(400, "BadRequest", m, Some(cause)));
    let table: Vec<(Request<Body>, (StatusCode, Value))> = vec![
        (
            post_json("/validate", "{\"apiVersion\": "),
            bad("malformed JSON: EOF while parsing a value at line 1 column 15", "MalformedJSON"),
        ),
        (
            post_json("/validate", r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}"#),
            bad("not an AdmissionReview: kind is \"Deployment\", expected \"AdmissionReview\"", "NotAnAdmissionReview"),
        ),
        (
            post_json("/validate", " [1, 2]"),
            bad("not an AdmissionReview: expected a JSON object", "NotAnAdmissionReview"),
        ),
        (
            post_json("/validate", common::body(&v1beta1)),
            bad(
                "unsupported apiVersion \"admission.k8s.io/v1beta1\", expected \"admission.k8s.io/v1\"",
                "UnsupportedAPIVersion",
            ),
        ),
        (post_json("/validate", common::body(&no_request)), bad("the AdmissionReview has no request", "NoRequest")),
        (
            post_json("/validate", huge),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                status(413, "RequestEntityTooLarge", "the body is larger than 7340032 bytes", None),
            ),
        ),
        (
            Request::post("/validate")
                .header("content-type", "text/plain")
                .body(Body::from(common::body(&good)))
                .expect("r"),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                status(415, "UnsupportedMediaType", "content-type must be application/json, got \"text/plain\"", None),
            ),
        ),
        (
            Request::post("/validate").body(Body::from(common::body(&good))).expect("r"),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                status(415, "UnsupportedMediaType", "content-type must be application/json, got \"\"", None),
            ),
        ),
        (
            post_json("/admit", common::body(&good)),
            (StatusCode::NOT_FOUND, status(404, "NotFound", "no such path: POST /admit", None)),
        ),
        (
            Request::get("/validate").body(Body::empty()).expect("r"),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                status(405, "MethodNotAllowed", "GET /validate: only POST is allowed", None),
            ),
        ),
    ];
    for (request, (expected_status, expected_body)) in table {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, content_type, body) = send(&router, request).await;
        assert_eq!((status, &body), (expected_status, &expected_body), "{what}");
        assert_eq!(content_type, "application/json", "{what}");
        // And the server still serves.
        assert_eq!(admit(&router, "/validate", &good).await["allowed"], true, "after {what}");
    }
    // A review with a uid but no object is answered with HTTP 200: a non-200 answer is a webhook
    // failure, which `failurePolicy: Ignore` turns into admitting the object unchecked.
    for path in ["/validate", "/mutate"] {
        let response = admit(&router, path, &no_object).await;
        assert_eq!(response["allowed"], false, "{path}");
        assert_eq!(response["status"]["code"], 400);
        assert_eq!(response["status"]["reason"], "BadRequest");
        assert_eq!(
            response["status"]["message"],
            format!(
                "routeguard cannot review VirtualService default/reviews: request {UID}: CREATE of VirtualService has no object"
            )
        );
    }
    let text = state.metrics.render(routeguard::server::metrics::Live { snapshot_objects: 0, ready: true });
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has("routeguard_http_rejected_total{status=\"400\",reason=\"BadRequest\"} 5"), "{text}");
    assert!(has("routeguard_http_rejected_total{status=\"413\",reason=\"RequestEntityTooLarge\"} 1"));
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_for_that_request_only() {
    let state = AppState::new(admission(Policy::default()));
    let routes = app::routes().route("/panic", post(boom));
    let router = app::layers(routes, state.metrics.clone()).with_state(state.clone());
    let (status, content_type, body) = send(&router, post_json("/panic", "{}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(content_type, "application/json");
    assert_eq!(body, status_500());
    let good = review("CREATE", Some(&virtual_service(&[("v1", 100)])), None);
    assert_eq!(admit(&router, "/validate", &good).await["allowed"], true);
    let text = state.metrics.render(routeguard::server::metrics::Live { snapshot_objects: 0, ready: true });
    assert!(text.lines().any(|l| l == "routeguard_handler_panics_total 1"), "{text}");
}

async fn boom() -> &'static str {
    panic!("boom")
}

fn status_500() -> Value {
    status(500, "InternalError", "internal error while reviewing the request", None)
}

#[tokio::test]
async fn admin_router_serves_health_and_metrics() {
    let (router, state) = router(Policy::default());
    let denied = review("CREATE", Some(&virtual_service(&[("v1", 50), ("v9", 50)])), None);
    admit(&router, "/validate", &denied).await;
    admit(&router, "/validate", &denied).await;
    admit(&router, "/mutate", &review("CREATE", Some(&deployment("reviews-v4", "reviews", None)), None)).await;
    let admin = app::admin_router(state.clone());
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    assert_eq!(send(&admin, get("/livez")).await.0, StatusCode::OK);
    assert_eq!(send(&admin, get("/readyz")).await.0, StatusCode::OK);
    let (status, content_type, body) = send(&admin, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let text = body.as_str().expect("text");
    for line in [
        "routeguard_admission_requests_total{endpoint=\"validate\",kind=\"VirtualService\",operation=\"CREATE\",decision=\"denied\"} 2",
        "routeguard_admission_requests_total{endpoint=\"mutate\",kind=\"Deployment\",operation=\"CREATE\",decision=\"patched\"} 1",
        "routeguard_admission_duration_seconds_bucket{le=\"+Inf\",endpoint=\"validate\"} 2",
        "routeguard_admission_duration_seconds_count{endpoint=\"validate\"} 2",
        "routeguard_admission_duration_seconds_count{endpoint=\"mutate\"} 1",
        "routeguard_snapshot_objects 10",
        "routeguard_ready 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l
                .starts_with("routeguard_admission_duration_seconds_bucket{le=\"0.00005\",endpoint=\"validate\"} ")),
        "{text}"
    );
    state.readiness.drain();
    assert_eq!(send(&admin, get("/readyz")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(send(&admin, get("/livez")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_one_openmetrics_exposition_with_every_family() {
    let (router, state) = router(Policy::default());
    let denied = review("CREATE", Some(&virtual_service(&[("v1", 50), ("v9", 50)])), None);
    admit(&router, "/validate", &denied).await;
    admit(&router, "/validate", &review("CREATE", Some(&virtual_service(&[("v1", 100)])), None)).await;
    admit(&router, "/mutate", &review("CREATE", Some(&deployment("reviews-v4", "reviews", None)), None)).await;
    let (status, _, _) = send(&router, post_json("/nowhere", "{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let admin = app::admin_router(state.clone());
    let (status, content_type, body) =
        send(&admin, Request::get("/metrics").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, routeguard::server::metrics::CONTENT_TYPE);
    let text = body.as_str().expect("text");
    let families = openmetrics::parse(text);
    openmetrics::assert_families(&families, &openmetrics::SERVER_FAMILIES);
    assert_eq!(families.len(), openmetrics::SERVER_FAMILIES.len(), "no family beyond these: {families:#?}");
    assert!(families.keys().all(|name| !name.starts_with("routeguard_cluster_")), "live mode is off");
    let value = |series: &str| openmetrics::value(&families, series);
    let validate = |decision: &str| {
        value(&format!(
            "routeguard_admission_requests_total{{endpoint=\"validate\",kind=\"VirtualService\",operation=\"CREATE\",decision=\"{decision}\"}}"
        ))
    };
    assert_eq!(validate("denied"), Some(1.0), "{text}");
    assert_eq!(validate("allowed"), Some(1.0), "{text}");
    assert_eq!(value("routeguard_http_rejected_total{status=\"404\",reason=\"NotFound\"}"), Some(1.0));
    assert_eq!(value("routeguard_admission_duration_seconds_count{endpoint=\"validate\"}"), Some(2.0));
    assert_eq!(value("routeguard_admission_duration_seconds_bucket{le=\"+Inf\",endpoint=\"mutate\"}"), Some(1.0));
    // 14 bounds and +Inf for each endpoint.
    let buckets =
        families["routeguard_admission_duration_seconds"].samples.iter().filter(|(s, _)| s.contains("_bucket{"));
    assert_eq!(buckets.count(), 2 * 15);
    assert_eq!(value("routeguard_handler_panics_total"), Some(0.0));
    assert_eq!(value("routeguard_ready"), Some(1.0));
    assert_eq!(value(&format!("routeguard_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), Some(1.0));
}
