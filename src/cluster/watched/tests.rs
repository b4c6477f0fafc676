use kube::core::{DynamicObject, ObjectList, WatchEvent};
use serde_json::json;

use super::*;
use crate::cluster::kinds::{self, Served};
use crate::model::Kind;

/// A Deployment as a real API server sent it (status, managed fields, a pod
/// spec), from a recorded DELETE's `oldObject`, with the annotations a
/// `kubectl apply` and routeguard add.
fn recorded_deployment() -> Value {
    let review: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/admission-reviews/017-validate-deployment-delete.json"
    ))
    .expect("the recorded review is JSON");
    let mut deployment = review["request"]["oldObject"].clone();
    let annotations = &mut deployment["metadata"]["annotations"];
    annotations["kubectl.kubernetes.io/last-applied-configuration"] = json!("{\"apiVersion\":\"apps/v1\"}");
    annotations["routeguard.io/version-from"] = json!("label");
    deployment
}

/// What the index stored before [`Watched`]: kube's `DynamicObject`, its pod spec dropped, normalized.
fn through_dynamic_object(served: &Served, object: &Value) -> Value {
    let dynamic: DynamicObject = serde_json::from_value(object.clone()).expect("a DynamicObject");
    let mut raw = kinds::to_object(served, dynamic).expect("an object").raw;
    if served.kind == Kind::Deployment {
        raw["spec"]["template"].as_object_mut().expect("a template").remove("spec");
    }
    raw
}

#[test]
fn a_watched_deployment_is_stored_as_through_a_dynamic_object() {
    let served = Served::new(Kind::Deployment, "v1");
    let object = recorded_deployment();
    let text = serde_json::to_string(&object).expect("text");
    let watched: Watched = serde_json::from_str(&text).expect("a Watched");
    assert_eq!(watched.metadata.name.as_deref(), Some("reviews-v2"));
    assert_eq!(watched.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(watched.metadata.resource_version.as_deref(), Some("382"));
    assert_eq!(watched.metadata.uid.as_deref(), Some("e6fad7af-a5ec-458f-98c6-d052da92a664"));
    // Skipped while reading, not dropped afterwards.
    assert!(watched.raw.get("status").is_none());
    assert!(watched.raw["metadata"].get("managedFields").is_none());
    assert!(watched.raw["spec"]["template"].get("spec").is_none());
    assert_eq!(
        watched.raw["metadata"]["annotations"],
        json!({"routeguard.io/version-from": "label"}),
        "only the annotations routeguard reads"
    );
    assert_eq!(watched.raw["spec"]["template"]["metadata"]["labels"], json!({"app": "reviews", "version": "v2"}));

    let stored = kinds::to_indexed_object(&served, watched).expect("an object");
    assert_eq!(stored.raw, through_dynamic_object(&served, &object));
    assert!(text.len() > 3 * serde_json::to_string(&stored.raw).expect("text").len(), "most of the object is skipped");
}

#[test]
fn other_kinds_keep_everything_but_status_managed_fields_and_unread_annotations() {
    let served = Served::new(Kind::VirtualService, "v1");
    let object = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "9",
                     "managedFields": [{"manager": "kubectl"}],
                     "annotations": {"networking.istio.io/exportTo": ".", "team": "a"}},
        "spec": {"hosts": ["reviews"], "status": "kept below the top", "template": {"labels": {}},
                 "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 100}]}]},
        "status": {"validationMessages": []}
    });
    let watched: Watched = serde_json::from_value(object.clone()).expect("a Watched");
    assert_eq!(watched.raw["spec"]["status"], json!("kept below the top"));
    let stored = kinds::to_indexed_object(&served, watched).expect("an object");
    assert_eq!(stored.raw, through_dynamic_object(&served, &object));
    let namespace = Served::new(Kind::Namespace, "v1");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"a": "b"},
                    "resourceVersion": "3", "uid": "u"}, "spec": {"finalizers": ["kubernetes"]}, "status": {}});
    let watched: Watched = serde_json::from_value(ns.clone()).expect("a Watched");
    assert_eq!(
        kinds::to_indexed_object(&namespace, watched).expect("a namespace").raw,
        through_dynamic_object(&namespace, &ns)
    );
}

#[test]
fn watch_events_and_lists_decode_into_watched_objects() {
    let event = r#"{"type":"MODIFIED","object":{"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"a","namespace":"shop","resourceVersion":"12","managedFields":[{"manager":"x"}]},
        "spec":{"template":{"metadata":{"labels":{"app":"a"}},"spec":{"containers":[]}}},"status":{"replicas":1}}}"#;
    match serde_json::from_str::<WatchEvent<Watched>>(event).expect("a watch event") {
        WatchEvent::Modified(watched) => {
            assert_eq!(watched.metadata.resource_version.as_deref(), Some("12"));
            assert_eq!(Value::Object(watched.raw)["spec"], json!({"template": {"metadata": {"labels": {"app": "a"}}}}));
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    let list = r#"{"apiVersion":"v1","kind":"ServiceList","metadata":{"resourceVersion":"40"},
        "items":[{"metadata":{"name":"a","namespace":"shop","resourceVersion":"39"},"spec":{"selector":{"app":"a"}}}]}"#;
    let list: ObjectList<Watched> = serde_json::from_str(list).expect("a list");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("a"));
}

#[test]
fn malformed_objects_are_read_as_they_are_or_refused_without_a_panic() {
    // A metadata that is not a map is kept as it is (the conversion then names what is missing).
    let odd: Watched = serde_json::from_str(r#"{"metadata":[1,"x",null,true,1.5],"spec":7}"#).expect("read");
    assert_eq!(Value::Object(odd.raw.clone()), json!({"metadata": [1, "x", null, true, 1.5], "spec": 7}));
    assert_eq!(odd.metadata, ObjectMeta::default());
    let served = Served::new(Kind::Service, "v1");
    assert!(kinds::to_indexed_object(&served, odd).is_err());
    for text in [r#"[1,2]"#, r#""text""#, "null", r#"{"metadata":{"name":1}"#] {
        assert!(serde_json::from_str::<Watched>(text).is_err(), "{text}");
    }
    // A name that is not text is no identity, but not an error of the decoding.
    let unnamed: Watched = serde_json::from_str(r#"{"metadata":{"name":1}}"#).expect("read");
    assert_eq!(unnamed.metadata.name, None);
}
