use super::*;
use serde_json::json;

/// Compacts an OpenAPI v3 schema node into the fields it allows.
fn compact(schema: &Value) -> Known {
    let mut known = Known {
        open: schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool).unwrap_or(false),
        ..Known::default()
    };
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        known.fields = props.iter().map(|(k, v)| (k.clone(), compact(v))).collect();
        // Fields declared only inside oneOf/anyOf branches count too.
    }
    if let Some(items) = schema.get("items") {
        known.items = Some(Box::new(compact(items)));
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(true)) => known.open = true,
        Some(v @ Value::Object(_)) => known.values = Some(Box::new(compact(v))),
        _ => {}
    }
    if known.open {
        known.fields.clear();
    }
    known
}

fn spec_schema(file: &str, version: &str) -> Known {
    let text = std::fs::read_to_string(file).expect("crd file");
    let docs = crate::manifest::yaml::parse_documents(&text).expect("crd yaml");
    let crd = docs.into_iter().find(|d| d.value["kind"] == "CustomResourceDefinition").expect("a crd").value;
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    let served = versions.iter().find(|v| v["name"] == version).expect("version");
    compact(&served["schema"]["openAPIV3Schema"]["properties"]["spec"])
}

fn generated() -> BTreeMap<String, Known> {
    let root = env!("CARGO_MANIFEST_DIR");
    BTreeMap::from([
        ("VirtualService".to_string(), spec_schema(&format!("{root}/crds/istio/virtualservices.yaml"), "v1")),
        ("DestinationRule".to_string(), spec_schema(&format!("{root}/crds/istio/destinationrules.yaml"), "v1")),
        ("ServiceEntry".to_string(), spec_schema(&format!("{root}/crds/istio/serviceentries.yaml"), "v1")),
        (
            "HTTPRoute".to_string(),
            spec_schema(&format!("{root}/crds/gateway-api/gateway.networking.k8s.io_httproutes.yaml"), "v1"),
        ),
    ])
}

/// `known.json` must be what the CRDs in `crds/` say; `UPDATE_KNOWN_FIELDS=1` rewrites it.
#[test]
fn known_fields_match_the_crds() {
    let fresh = generated();
    let path = format!("{}/src/policy/fields/known.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_KNOWN_FIELDS").is_some() {
        let text = serde_json::to_string(&fresh).expect("json") + "\n";
        std::fs::write(&path, text).expect("write known.json");
    }
    assert_eq!(
        known(),
        &fresh,
        "src/policy/fields/known.json is stale: run UPDATE_KNOWN_FIELDS=1 cargo test --lib fields"
    );
    assert!(
        fresh["VirtualService"].fields["http"]
            .items
            .as_ref()
            .is_some_and(|i| i.fields.contains_key("mirrorPercentage"))
    );
}

fn object(value: Value) -> Object {
    Object::from_value(value, "default").expect("object")
}

#[test]
fn flags_a_snake_case_mirror_field_with_the_current_name() {
    let vs = object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "httpbin"},
        "spec": {"hosts": ["httpbin"], "http": [{"route": [{"destination": {"host": "httpbin"}}],
                 "mirror": {"host": "httpbin", "subset": "v2"}, "mirror_percent": 50}]}
    }));
    let findings = unknown_fields(&vs);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].code, Code::RG108);
    assert_eq!(findings[0].severity, crate::policy::Severity::Warning);
    assert_eq!(findings[0].path.as_str(), "spec.http[0].mirror_percent");
    assert!(findings[0].message.contains("did you mean \"mirrorPercentage\""), "{}", findings[0].message);
}

#[test]
fn accepts_known_fields_free_maps_and_flags_typos_anywhere() {
    let vs = object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"},
        "spec": {"hosts": ["r"], "http": [{"match": [{"headers": {"x-dark-launch": {"exact": "v2"}}}],
                 "route": [{"destination": {"host": "r", "subsett": "v2"}, "weight": 100}]}]}
    }));
    let findings = unknown_fields(&vs);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].path.as_str(), "spec.http[0].route[0].destination.subsett");
    assert!(findings[0].message.contains("did you mean \"subset\""));
    let dr = object(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "r"},
        "spec": {"host": "r", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
    }));
    assert!(unknown_fields(&dr).is_empty());
    let route = object(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
        "spec": {"rules": [{"backendRefs": [{"name": "a", "port": 80, "wieght": 10}]}]}, "extra": 1
    }));
    let findings = unknown_fields(&route);
    let paths: Vec<&str> = findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, vec!["extra", "spec.rules[0].backendRefs[0].wieght"]);
    assert!(findings[1].message.contains("did you mean \"weight\""));
}

#[test]
fn other_kinds_are_not_checked() {
    let svc = object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"bogus": 1}}));
    assert!(unknown_fields(&svc).is_empty());
}

#[test]
fn suggests_only_close_names() {
    assert_eq!(suggest("hostz", ["host", "subset"].into_iter()), Some("host".to_string()));
    assert_eq!(suggest("completelydifferent", ["host", "subset"].into_iter()), None);
}
