use super::*;
use serde_json::json;

/// Compacts an OpenAPI v3 schema node into its defaults; `None` when no default is at or below it.
fn compact(schema: &Value) -> Option<Defaults> {
    let mut node = Defaults {
        default: schema.get("default").cloned(),
        nullable: schema.get("nullable").and_then(Value::as_bool).unwrap_or(false),
        ..Defaults::default()
    };
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        node.fields = props.iter().filter_map(|(k, v)| Some((k.clone(), compact(v)?))).collect();
    }
    node.items = schema.get("items").and_then(compact).map(Box::new);
    node.values = schema.get("additionalProperties").filter(|v| v.is_object()).and_then(compact).map(Box::new);
    let empty = node.default.is_none() && node.fields.is_empty() && node.items.is_none() && node.values.is_none();
    if empty {
        return None;
    }
    if node.default.is_none() {
        node.nullable = false;
    }
    Some(node)
}

/// Every served version of every CRD in `crds/`, compacted, by `<kind>/<version>`.
fn generated() -> BTreeMap<String, Defaults> {
    let root = format!("{}/crds", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = ["istio", "gateway-api"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(format!("{root}/{dir}")).expect("crd folder"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("crd file");
        for doc in crate::manifest::yaml::parse_documents(&text).expect("crd yaml") {
            let crd = doc.value;
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let kind = crd["spec"]["names"]["kind"].as_str().expect("kind").to_string();
            for version in crd["spec"]["versions"].as_array().expect("versions") {
                let name = version["name"].as_str().expect("version name");
                if let Some(defaults) = compact(&version["schema"]["openAPIV3Schema"]) {
                    out.insert(format!("{kind}/{name}"), defaults);
                }
            }
        }
    }
    out
}

/// `defaults.json` must be what the CRDs in `crds/` say; `UPDATE_DEFAULTS=1` rewrites it.
#[test]
fn defaults_match_the_crds() {
    let fresh = generated();
    let path = format!("{}/src/model/defaults.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_DEFAULTS").is_some() {
        let text = serde_json::to_string(&fresh).expect("json") + "\n";
        std::fs::write(&path, text).expect("write defaults.json");
    }
    assert_eq!(all(), &fresh, "src/model/defaults.json is stale: run UPDATE_DEFAULTS=1 cargo test --lib defaults");
    assert!(fresh.contains_key("HTTPRoute/v1") && fresh.contains_key("HTTPRoute/v1beta1"), "{:?}", fresh.keys());
    assert!(!fresh.keys().any(|k| k.starts_with("VirtualService/")), "istio declares no defaults");
}

fn route(spec: Value) -> Object {
    let raw = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                     "metadata": {"name": "customers", "namespace": "shop"}, "spec": spec});
    Object::from_value(raw, "default").expect("object")
}

/// What the API server sent for an HTTPRoute written with one backendRef, no
/// weight and no matches (fixture 013 of the recorded reviews).
#[test]
fn a_bare_http_route_gets_what_the_api_server_adds() {
    let object = route(json!({
        "parentRefs": [{"name": "mesh-gw"}],
        "rules": [{"backendRefs": [{"name": "customers-v1", "port": 80}]}]
    }))
    .with_api_defaults();
    assert_eq!(
        object.raw["spec"],
        json!({
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mesh-gw"}],
            "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": "customers-v1", "port": 80, "weight": 1}],
                       "matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]
        })
    );
}

#[test]
fn defaults_fill_only_what_is_missing_and_recurse_into_defaulted_values() {
    let object = route(json!({
        "rules": [{"backendRefs": [{"name": "a", "weight": 0, "kind": "Service"}],
                   "matches": [{"path": {"value": "/api"}}, {"headers": [{"name": "x", "value": "1"}]}],
                   "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m"},
                                                                          "fraction": {"numerator": 5}}}]}]
    }))
    .with_api_defaults();
    let rule = &object.raw["spec"]["rules"][0];
    assert_eq!(rule["backendRefs"][0], json!({"group": "", "kind": "Service", "name": "a", "weight": 0}));
    assert_eq!(rule["matches"][0], json!({"path": {"type": "PathPrefix", "value": "/api"}}));
    // A match without a path gets the default path; its header gets the default type.
    assert_eq!(
        rule["matches"][1],
        json!({"headers": [{"name": "x", "type": "Exact", "value": "1"}], "path": {"type": "PathPrefix", "value": "/"}})
    );
    let mirror = &rule["filters"][0]["requestMirror"];
    assert_eq!(mirror["fraction"], json!({"numerator": 5, "denominator": 100}));
    assert_eq!(mirror["backendRef"]["kind"], "Service");

    // No rules at all: the default rule, itself defaulted.
    let object = route(json!({"parentRefs": [{"name": "gw"}]})).with_api_defaults();
    assert_eq!(object.raw["spec"]["rules"], json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]));
}

#[test]
fn kinds_without_schema_defaults_are_left_as_they_are() {
    let raw = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                     "metadata": {"name": "r"}, "spec": {"http": [{"route": [{"destination": {"host": "r"}}]}]}});
    let object = Object::from_value(raw.clone(), "default").expect("object").with_api_defaults();
    assert_eq!(object.raw, raw);
    let raw =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "r"}, "spec": {"ports": [{"port": 80}]}});
    let object = Object::from_value(raw.clone(), "default").expect("object").with_api_defaults();
    assert_eq!(object.raw, raw);
}

#[test]
fn a_non_nullable_null_is_defaulted_and_wrong_shapes_are_left_alone() {
    let object = route(json!({"rules": [{"backendRefs": [{"name": "a", "weight": null}]}], "parentRefs": "oops"}))
        .with_api_defaults();
    assert_eq!(object.raw["spec"]["rules"][0]["backendRefs"][0]["weight"], 1);
    assert_eq!(object.raw["spec"]["parentRefs"], "oops");
}

#[test]
fn an_istio_gateway_gets_none_of_the_gateway_api_defaults() {
    let raw = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"},
                     "spec": {"servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}});
    let object = Object::from_value(raw.clone(), "d").expect("gateway").with_api_defaults();
    assert_eq!(object.raw, raw);
    assert!(for_type("Gateway", "gateway.networking.k8s.io/v1").is_some(), "the gateway api's gateway has defaults");
}
