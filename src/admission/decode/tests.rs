//! The one-pass reading of a request against the two-pass one it replaces.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::wire::{Eager, Review, Sent, WireRequest};
use super::*;

/// Every AdmissionReview recorded from a real API server, as sent.
fn recorded() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission-reviews");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the fixtures")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).expect("a fixture"))).collect()
}

/// The request as the derive reads it: its objects kept as text, read after.
fn two_pass(body: &[u8]) -> Request {
    let review: Review<'_, WireRequest<'_>> = serde_json::from_slice(body).expect("a review");
    request(review.request.expect("a request"))
}

fn one_pass(body: &[u8]) -> (Request, [&'static str; 2]) {
    let review: Review<'_, Eager<'_>> = serde_json::from_slice(body).expect("a review");
    let wire = review.request.expect("a request").0;
    let how = |sent: &Option<Sent<'_>>| match sent {
        None => "none",
        Some(Sent::Text(_)) => "text",
        Some(Sent::Read(_)) => "read",
        Some(Sent::Unread) => "unread",
    };
    let hows = [how(&wire.object), how(&wire.old_object)];
    (request(wire), hows)
}

/// The order in which the API server writes a request's fields: that of
/// Go's `AdmissionRequest` struct (`k8s.io/api/admission/v1`), which
/// `encoding/json` follows. The recorded files hold the same fields with
/// their keys sorted, as the recorder wrote them out: `object` before
/// `operation` and `resource`.
const WIRE_ORDER: [&str; 15] = [
    "uid",
    "kind",
    "resource",
    "subResource",
    "requestKind",
    "requestResource",
    "requestSubResource",
    "name",
    "namespace",
    "operation",
    "userInfo",
    "object",
    "oldObject",
    "dryRun",
    "options",
];

/// A review with its request's fields moved to the front in the order
/// given, written out field by field (a map need not keep an order).
fn reordered(body: &[u8], first: &[&str]) -> Vec<u8> {
    let review: Value = serde_json::from_slice(body).expect("json");
    let request = review["request"].as_object().expect("a request");
    let mut keys: Vec<&str> = first.iter().copied().filter(|k| request.contains_key(*k)).collect();
    keys.extend(request.keys().map(String::as_str).filter(|k| !first.contains(k)));
    assert_eq!(keys.len(), request.len());
    let fields: Vec<String> = keys.iter().map(|k| format!("{}:{}", Value::from(*k), request[*k])).collect();
    let text = format!(
        r#"{{"apiVersion":{},"kind":{},"request":{{{}}}}}"#,
        review["apiVersion"],
        review["kind"],
        fields.join(",")
    );
    text.into_bytes()
}

#[test]
fn every_recorded_review_in_the_wire_order_reads_the_same_in_one_pass() {
    let mut unread = 0;
    for (file, body) in recorded() {
        let body = reordered(&body, &WIRE_ORDER);
        let (eager, hows) = one_pass(&body);
        assert_eq!(format!("{eager:?}"), format!("{:?}", two_pass(&body)), "{file}");
        assert_eq!(format!("{:?}", decode(&body).expect("decoded")), format!("{eager:?}"), "{file}");
        assert!(!hows.contains(&"text"), "{file}: no object kept as text, {hows:?}");
        unread += hows.iter().filter(|h| **h == "unread").count();
    }
    // The UPDATEs of VirtualServices (010, 015) and of an HTTPRoute (014):
    // their old objects are only checked.
    assert_eq!(unread, 3);
}

#[test]
fn objects_before_the_resource_or_the_operation_are_kept_as_text_and_read_the_same() {
    for (file, body) in recorded() {
        // As recorded (keys sorted), and with the objects first.
        for body in [body.clone(), reordered(&body, &["object", "oldObject"])] {
            let (eager, hows) = one_pass(&body);
            assert_eq!(format!("{eager:?}"), format!("{:?}", two_pass(&body)), "{file}");
            assert_eq!(format!("{:?}", decode(&body).expect("decoded")), format!("{eager:?}"), "{file}");
            assert!(hows.iter().all(|h| matches!(*h, "text" | "none")), "{file}: {hows:?}");
        }
    }
}

fn body(request: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
        .expect("json")
}

fn request_of(object: Value, old: Value) -> Map<String, Value> {
    let request = json!({
        "uid": "u1", "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
        "resource": {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
        "namespace": "shop", "operation": "UPDATE", "object": object, "oldObject": old,
    });
    request.as_object().expect("a map").clone()
}

fn vs() -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"},
           "spec": {"hosts": ["r"]}})
}

#[test]
fn a_field_sent_twice_is_refused_as_the_derive_refuses_it() {
    let mut request = request_of(vs(), vs());
    request.insert("subResource".into(), json!(""));
    request.insert("name".into(), json!("r"));
    request.insert("userInfo".into(), json!({"username": "alice"}));
    request.insert("dryRun".into(), json!(false));
    let text = String::from_utf8(body(Value::Object(request.clone()))).expect("utf-8");
    assert!(decode(text.as_bytes()).is_ok(), "once each, it is a review");
    let fields = ["uid", "kind", "resource", "subResource", "name", "namespace", "operation", "userInfo"];
    for field in fields.into_iter().chain(["object", "oldObject", "dryRun"]) {
        let value = serde_json::to_string(&request[field]).expect("json");
        let twice = text.replacen("\"request\":{", &format!("\"request\":{{\"{field}\":{value},"), 1);
        let err = decode(twice.as_bytes()).expect_err(field);
        assert_eq!(err.reason(), "NotAnAdmissionReview", "{field}: {err}");
        assert!(err.to_string().contains(&format!("duplicate field `{field}`")), "{field}: {err}");
    }
}

#[test]
fn a_null_object_is_none_and_a_request_as_an_array_is_read_as_the_derive_reads_it() {
    let nulled = body(Value::Object(request_of(Value::Null, vs())));
    match decode(&nulled).expect("answered").target {
        Target::Invalid { reason, message } => {
            assert_eq!((reason, message.as_str()), ("NoObject", "request u1: UPDATE of VirtualService has no object"));
        }
        other => panic!("expected no object, got {other:?}"),
    }
    // serde's derive reads a struct from a sequence of its fields too: the one pass does not, and hands over.
    let array = json!(["u1", {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
                       {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
                       null, "r", "shop", "CREATE", null, vs(), null, false]);
    let text = body(array);
    assert!(serde_json::from_slice::<Review<'_, Eager<'_>>>(&text).is_err());
    assert_eq!(format!("{:?}", decode(&text).expect("decoded")), format!("{:?}", two_pass(&text)));
}

#[test]
fn a_body_that_is_not_utf_8_is_malformed_wherever_the_bytes_are() {
    let text = String::from_utf8(body(Value::Object(request_of(vs(), vs())))).expect("utf-8");
    // In the read object, in the old object only checked, in a field skipped unread.
    let places = [
        ("\"hosts\":[\"r\"]", "\"hosts\":[\"r\u{fffd}\"]"),
        ("\"oldObject\":{", "\"oldObject\":{\"x\":\"\u{fffd}\","),
        ("\"uid\":", "\"options\":\"\u{fffd}\",\"uid\":"),
    ];
    for (at, with) in places {
        let marked = text.replacen(at, with, 1);
        assert_ne!(marked, text, "{at}");
        let mut bytes = marked.into_bytes();
        let mark = "\u{fffd}".as_bytes();
        let i = bytes.windows(mark.len()).position(|w| w == mark).expect("the mark");
        bytes.splice(i..i + mark.len(), [0xff]);
        let err = decode(&bytes).expect_err(at);
        assert_eq!(err.reason(), "MalformedJSON", "{at}: {err}");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}

/// A VirtualService UPDATE as text, its two objects' `spec.hosts` given.
fn update_with_hosts(hosts: &str, old_hosts: &str) -> String {
    let vs = |hosts: &str| {
        format!(
            r#"{{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{{"name":"r"}},"spec":{{"hosts":{hosts}}}}}"#
        )
    };
    let request = request_of(Value::Null, Value::Null);
    let head = serde_json::to_string(&request).expect("json");
    let head = head.trim_end_matches('}');
    let head =
        head.replace(r#""object":null,"#, "").replace(r#","oldObject":null"#, "").replace(r#""oldObject":null,"#, "");
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{head},"object":{},"oldObject":{}}}}}"#,
        vs(hosts),
        vs(old_hosts)
    )
}

#[test]
fn an_object_nested_beyond_the_limit_is_a_bad_object_answered_with_its_uid() {
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let body = update_with_hosts(&nested, r#"["r"]"#);
    assert!(serde_json::from_str::<Value>(&body).is_err(), "serde_json's Value cannot hold it either");
    let decoded = decode(body.as_bytes()).expect("answered, not failed");
    assert_eq!(decoded.uid, "u1");
    match decoded.target {
        Target::Invalid { reason, message } => {
            assert_eq!(reason, "BadObject");
            assert!(message.starts_with("request u1: object: recursion limit exceeded"), "{message}");
        }
        other => panic!("expected a bad object, got {other:?}"),
    }
    // Where it is only checked (a VirtualService's old object), it is no error.
    let body = update_with_hosts(r#"["r"]"#, &nested);
    let (_, hows) = one_pass(body.as_bytes());
    assert_eq!(hows, ["read", "unread"]);
    assert!(matches!(decode(body.as_bytes()).expect("decoded").target, Target::Handled { .. }));
}

#[test]
fn an_empty_uid_is_no_review_in_either_reading() {
    let mut request = request_of(vs(), vs());
    request.insert("uid".into(), json!(""));
    let wire_order = body(Value::Object(request));
    for text in [reordered(&wire_order, &WIRE_ORDER), reordered(&wire_order, &["object", "oldObject"])] {
        let err = decode(&text).expect_err("no uid");
        assert_eq!(
            (err.reason(), err.to_string()),
            ("NotAnAdmissionReview", "not an AdmissionReview: request.uid is empty".to_string())
        );
    }
}
