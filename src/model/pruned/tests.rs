use serde_json::{Value, json};

use super::*;

/// A Deployment as a real API server sent it to the webhook (status, managed
/// fields, the last-applied and revision annotations, a pod spec), from a
/// recorded UPDATE, with an annotation routeguard reads added.
fn recorded_deployment() -> Value {
    let review: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/admission-reviews/005-mutate-deployment-update.json"
    ))
    .expect("the recorded review is JSON");
    let mut deployment = review["request"]["object"].clone();
    deployment["metadata"]["annotations"]["routeguard.io/version-from"] = json!("label");
    deployment
}

/// The object read whole, then stripped of what `pruning` skips.
fn stripped(mut object: Value, pruning: Pruning) -> Value {
    let map = object.as_object_mut().expect("an object");
    map.remove("status");
    let meta = map.get_mut("metadata").and_then(Value::as_object_mut).expect("metadata");
    meta.remove("managedFields");
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.retain(|k, _| READ_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p)));
    }
    if pruning == Pruning::Index {
        object["spec"]["template"].as_object_mut().expect("a template").remove("spec");
    }
    object
}

#[test]
fn a_recorded_deployment_is_read_without_what_no_rule_reads() {
    let object = recorded_deployment();
    let text = serde_json::to_string(&object).expect("text");
    let admitted = read(&text, Pruning::Admission).expect("read");
    assert!(
        object.get("status").is_some() && object["metadata"].get("managedFields").is_some(),
        "the fixture has both"
    );
    assert!(admitted.get("status").is_none());
    assert!(admitted["metadata"].get("managedFields").is_none());
    assert_eq!(admitted["metadata"]["annotations"], json!({"routeguard.io/version-from": "label"}));
    assert_eq!(
        admitted["spec"]["template"]["spec"]["containers"][0]["image"],
        object["spec"]["template"]["spec"]["containers"][0]["image"],
        "admission keeps the pod spec: the version can come from an image tag"
    );
    assert_eq!(admitted, stripped(object.clone(), Pruning::Admission), "nothing else is left out");
    let kept = serde_json::to_string(&admitted).expect("text").len();
    assert!(2 * kept < text.len(), "more than half of the recorded object is skipped: {kept} of {}", text.len());

    let indexed = read(&text, Pruning::Index).expect("read");
    assert!(indexed["spec"]["template"].get("spec").is_none());
    assert_eq!(indexed["spec"]["template"]["metadata"], object["spec"]["template"]["metadata"]);
    assert_eq!(indexed, stripped(object, Pruning::Index));
}

#[test]
fn an_annotations_map_with_nothing_routeguard_reads_stays_as_an_empty_map() {
    // A patch adding routeguard's annotation goes under the existing map
    // (`/metadata/annotations/routeguard.io~1...`), not over it.
    let text = r#"{"kind":"Deployment","metadata":{"name":"a","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}}}"#;
    let object = read(text, Pruning::Admission).expect("read");
    assert_eq!(object["metadata"], json!({"name": "a", "annotations": {}}));
    let none = read(r#"{"metadata":{"name":"a"}}"#, Pruning::Admission).expect("read");
    assert_eq!(none["metadata"], json!({"name": "a"}), "and none is made up");
}

#[test]
fn only_the_named_places_are_pruned() {
    let text = r#"{"kind":"VirtualService","metadata":{"name":"r","labels":{"status":"x"}},
        "spec":{"status":"kept below the top","managedFields":[1],"template":{"spec":{"kept":true}},
                "http":[{"headers":{"request":{"set":{"kubectl.kubernetes.io/x":"kept"}}}}]},
        "status":{"gone":true}}"#;
    let object = read(text, Pruning::Admission).expect("read");
    let mut expected: Value = serde_json::from_str(text).expect("json");
    expected.as_object_mut().expect("map").remove("status");
    assert_eq!(object, expected);
}

#[test]
fn malformed_objects_are_read_as_they_are_or_refused_without_a_panic() {
    let odd = read(r#"{"metadata":[1,"x",null,true,1.5,-2],"spec":7,"status":{"a":1}}"#, Pruning::Index).expect("read");
    assert_eq!(odd, json!({"metadata": [1, "x", null, true, 1.5, -2], "spec": 7}));
    assert_eq!(
        read(r#"{"metadata":{"annotations":null}}"#, Pruning::Admission).expect("read"),
        json!({"metadata": {"annotations": null}})
    );
    assert_eq!(read(r#"[1,{"status":1}]"#, Pruning::Admission).expect("read"), json!([1, {"status": 1}]));
    assert_eq!(read(r#""text""#, Pruning::Admission).expect("read"), json!("text"));
    for text in [r#"{"metadata":{"name":1}"#, r#"{"a":1} {"b":2}"#, r#"{"status":[}"#, ""] {
        assert!(read(text, Pruning::Admission).is_err(), "{text}");
    }
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    assert!(read(&format!(r#"{{"spec":{deep}}}"#), Pruning::Admission).is_err(), "nesting beyond serde_json's limit");
    // Skipped text is checked without recursion (serde_json's `IgnoredAny`
    // keeps its own stack): deep nesting there is no danger, and not built.
    assert_eq!(read(&format!(r#"{{"status":{deep}}}"#), Pruning::Admission).expect("read"), json!({}));
}
