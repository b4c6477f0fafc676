//! Generated objects, and the objects in `examples/`, validate against the
//! real CRD schemas copied into `crds/` (see `crds/README.md`).
//!
//! The CRDs' `openAPIV3Schema` is turned into a JSON Schema the way the API
//! server reads it: `nullable: true` admits null, `x-kubernetes-*` keywords
//! (CEL rules included, which cannot be evaluated here) are dropped, and an
//! object schema with `properties` that does not preserve unknown fields
//! rejects other fields, since the API server would prune them (or reject them
//! under strict field validation). Formats (`int32`, `double`) are not checked.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use routeguard::manifest::yaml::parse_documents;
use routeguard::model::{Kind, Object};
use routeguard::policy::{Engine, Policy, Snapshot};
use serde_json::{Map, Value, json};

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The CRD file of a kind, relative to the repository.
fn crd_file(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::DestinationRule => "crds/istio/destinationrules.yaml",
        Kind::VirtualService => "crds/istio/virtualservices.yaml",
        Kind::ServiceEntry => "crds/istio/serviceentries.yaml",
        Kind::HttpRoute => "crds/gateway-api/gateway.networking.k8s.io_httproutes.yaml",
        Kind::ReferenceGrant => "crds/gateway-api/gateway.networking.k8s.io_referencegrants.yaml",
        Kind::IstioGateway => "crds/istio/gateways.yaml",
        Kind::Gateway => "crds/gateway-api/gateway.networking.k8s.io_gateways.yaml",
        Kind::Service | Kind::Deployment | Kind::Namespace => return None,
    })
}

/// The `openAPIV3Schema` of one served version of the CRD in `file`.
fn crd_schema(file: &str, version: &str) -> Value {
    let text = std::fs::read_to_string(repo_file(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let crd = docs
        .into_iter()
        .map(|d| d.value)
        .find(|v| v["kind"] == "CustomResourceDefinition")
        .unwrap_or_else(|| panic!("{file}: no CustomResourceDefinition"));
    let versions = crd["spec"]["versions"].as_array().unwrap_or_else(|| panic!("{file}: no spec.versions"));
    let entry = versions
        .iter()
        .find(|v| v["name"] == version)
        .unwrap_or_else(|| panic!("{file}: version {version} not in the CRD"));
    assert_eq!(entry["served"], true, "{file}: version {version} is not served");
    let schema = entry.pointer("/schema/openAPIV3Schema").unwrap_or_else(|| panic!("{file}: no openAPIV3Schema"));
    let mut schema = to_json_schema(schema);
    // The API server adds the fields every object has; Istio's schemas leave them out.
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.entry("apiVersion").or_insert_with(|| json!({"type": "string"}));
        properties.entry("kind").or_insert_with(|| json!({"type": "string"}));
        properties.entry("metadata").or_insert_with(|| json!({"type": "object"}));
    }
    schema
}

/// Rewrites one OpenAPI v3 schema node (and everything below it) as JSON Schema.
fn to_json_schema(node: &Value) -> Value {
    let Some(map) = node.as_object() else { return node.clone() };
    let mut out = Map::new();
    for (key, value) in map {
        if key.starts_with("x-kubernetes-") || key == "nullable" {
            continue;
        }
        let converted = match key.as_str() {
            // Maps from names to schemas.
            "properties" | "patternProperties" | "definitions" => Value::Object(
                value
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), to_json_schema(v))).collect())
                    .unwrap_or_default(),
            ),
            // Lists of schemas.
            "allOf" | "anyOf" | "oneOf" => {
                Value::Array(value.as_array().map(|a| a.iter().map(to_json_schema).collect()).unwrap_or_default())
            }
            // Single schemas.
            "items" | "additionalProperties" | "not" => to_json_schema(value),
            // Data (enum, default, required, ...).
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if map.get("nullable") == Some(&Value::Bool(true))
        && let Some(Value::String(t)) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([t, "null"]));
    }
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if out.contains_key("properties") && !out.contains_key("additionalProperties") && !preserves {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// A validator for `kind` at the version of `api_version`.
fn validator(kind: Kind, api_version: &str) -> jsonschema::Validator {
    let file = crd_file(kind).unwrap_or_else(|| panic!("no CRD for {kind}"));
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    let schema = crd_schema(file, version);
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file} {version}: the schema does not compile: {e}"))
}

/// The schema errors of `object`, one line each.
fn errors(validator: &jsonschema::Validator, object: &Value) -> Vec<String> {
    validator.iter_errors(object).map(|e| format!("{}: {}", e.instance_path(), e.masked())).collect()
}

fn assert_valid(validator: &jsonschema::Validator, object: &Value, what: &str) {
    let errors = errors(validator, object);
    assert!(errors.is_empty(), "{what} does not match its CRD schema:\n{}", errors.join("\n"));
}

fn object(raw: Value) -> Object {
    Object::from_value(raw, "bookinfo").expect("object")
}

fn deployment(name: &str, labels: Value, image: &str, annotations: Value) -> Object {
    object(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "bookinfo", "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": labels["app"].clone()}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    }))
}

fn service(name: &str, spec: Value) -> Object {
    object(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "bookinfo"}, "spec": spec}),
    )
}

/// A small cluster: Deployments without version labels (mutated first, as
/// admission would), Services of several types and a DestinationRule that
/// opted in to managed subsets.
fn generated() -> Vec<Object> {
    let engine = Engine::new(Policy::default());
    let deployments = [
        deployment("reviews-v1", json!({"app": "reviews"}), "docker.io/istio/reviews:1.20.1", json!({})),
        deployment("reviews-v2", json!({"app": "reviews"}), "registry:5000/istio/reviews:2.0.0@sha256:ab", json!({})),
        deployment("reviews-v3", json!({"app": "reviews"}), "reviews:latest", json!({"routeguard.io/canary": "true"})),
        deployment("ratings", json!({"app": "ratings", "app.kubernetes.io/version": "V1.7"}), "ratings", json!({})),
        deployment("details", json!({"app": "details"}), "details@sha256:cd", json!({"routeguard.io/version": "v1"})),
        deployment(&format!("p{}", "x".repeat(58)), json!({"app": "long"}), "long:1.0.0-rc.1+build.7", json!({})),
    ];
    let mut objects: Vec<Object> = deployments
        .into_iter()
        .map(|mut d| {
            let mutation = engine.mutate(&d, None);
            json_patch::patch(&mut d.raw, &mutation.patch).expect("the mutation applies");
            d
        })
        .collect();
    objects.extend([
        service(
            "reviews",
            json!({"type": "LoadBalancer", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "selector": {"app": "reviews"},
                "ports": [{"name": "http", "port": 9080, "targetPort": 9080, "nodePort": 31000}]}),
        ),
        service(
            "ratings",
            json!({"clusterIP": "None", "selector": {"app": "ratings"}, "ports": [{"name": "http", "port": 9080}]}),
        ),
        service("details", json!({"type": "NodePort", "selector": {"app": "details"}, "ports": [{"port": 9080, "nodePort": 30001}]})),
        service(&format!("l{}", "o".repeat(58)), json!({"selector": {"app": "long"}, "ports": [{"port": 80, "targetPort": "http"}]})),
        object(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "details-rule", "namespace": "bookinfo", "annotations": {"routeguard.io/manage-subsets": "true"}},
            "spec": {
                "host": "details.bookinfo.svc.cluster.local",
                "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}}, "tls": {"mode": "ISTIO_MUTUAL"}},
                "subsets": [{"name": "legacy", "labels": {"version": "legacy"}, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}]
            }
        })),
    ]);
    let snapshot = Snapshot::from_objects(engine.policy(), objects);
    engine.generate(&snapshot)
}

fn is_dns1035(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[test]
fn generated_destination_rules_match_the_crd() {
    let generated = generated();
    let rules: Vec<&Object> = generated.iter().filter(|o| o.kind() == Kind::DestinationRule).collect();
    let names: Vec<&str> = rules.iter().map(|o| o.name()).collect();
    let long = format!("l{}", "o".repeat(58));
    assert_eq!(names, ["details-rule", long.as_str(), "ratings", "reviews"], "generated: {generated:?}");
    for rule in rules {
        let api_version = rule.raw["apiVersion"].as_str().expect("apiVersion");
        assert_valid(&validator(Kind::DestinationRule, api_version), &rule.raw, &rule.key.to_string());
        let subsets = rule.raw["spec"]["subsets"].as_array().expect("subsets");
        assert!(!subsets.is_empty(), "{}: no subsets", rule.key);
    }
}

#[test]
fn generated_services_have_a_valid_shape() {
    let generated = generated();
    let services: Vec<&Object> = generated.iter().filter(|o| o.kind() == Kind::Service).collect();
    assert!(services.iter().any(|s| s.name() == "reviews-canary"), "no canary Service");
    assert!(services.iter().any(|s| s.name().len() == 63), "no shortened name");
    for svc in &services {
        let raw = &svc.raw;
        assert_eq!(raw["apiVersion"], "v1");
        assert!(is_dns1035(svc.name()), "{}: name is not a DNS-1035 label", svc.key);
        let ports = raw["spec"]["ports"].as_array().expect("ports");
        assert!(!ports.is_empty(), "{}: no ports", svc.key);
        for port in ports {
            assert!(port["port"].as_u64().is_some_and(|p| (1..=65535).contains(&p)), "{}: port {port}", svc.key);
            assert!(port.get("nodePort").is_none(), "{}: nodePort copied", svc.key);
        }
        let selector = raw["spec"]["selector"].as_object().expect("selector");
        assert!(selector.contains_key("version") && selector.values().all(Value::is_string), "{}", svc.key);
        let service_type = raw["spec"]["type"].as_str().expect("type");
        assert!(matches!(service_type, "ClusterIP" | "NodePort"), "{}: type {service_type}", svc.key);
        let cluster_ip = raw["spec"].get("clusterIP");
        assert!(cluster_ip.is_none() || cluster_ip == Some(&json!("None")), "{}: clusterIP copied", svc.key);
        assert!(raw["spec"].get("clusterIPs").is_none(), "{}: clusterIPs copied", svc.key);
        let typed: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{}: not a Service: {e}", svc.key));
        assert_eq!(typed.metadata.name.as_deref(), Some(svc.name()));
    }
}

#[test]
fn the_validator_catches_bad_destination_rules() {
    let validator = validator(Kind::DestinationRule, "networking.istio.io/v1");
    let good = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "r", "namespace": "n"},
        "spec": {"host": "r", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
    });
    assert_valid(&validator, &good, "the reference DestinationRule");
    let mut wrong_type = good.clone();
    wrong_type["spec"]["subsets"] = json!("x");
    assert!(!errors(&validator, &wrong_type).is_empty(), "subsets: \"x\" passed");
    let mut wrong_labels = good.clone();
    wrong_labels["spec"]["subsets"][0]["labels"] = json!({"version": 1});
    assert!(!errors(&validator, &wrong_labels).is_empty(), "a numeric label passed");
    let mut unknown = good.clone();
    unknown["spec"]["subset"] = json!([]);
    assert!(!errors(&validator, &unknown).is_empty(), "an unknown field passed");
    let mut no_host = good;
    if let Some(spec) = no_host["spec"].as_object_mut() {
        spec.remove("host");
    }
    assert!(!errors(&validator, &no_host).is_empty(), "a DestinationRule without host passed");
}

#[test]
fn every_crd_schema_compiles() {
    for kind in Kind::ALL {
        if crd_file(kind).is_some() {
            let group = kind.group();
            let _ = validator(kind, &format!("{group}/v1"));
        }
    }
    // Istio serves one schema under every version.
    for version in ["v1beta1", "v1alpha3"] {
        let _ = validator(Kind::VirtualService, &format!("networking.istio.io/{version}"));
    }
}

/// Every YAML or JSON file below `dir`, sorted.
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(manifest_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Validates every object of `examples/` whose kind has a CRD, and the
/// DestinationRules generated from each folder of examples (each folder is one
/// set of manifests, as `routeguard check <folder>` reads it).
#[test]
fn examples_match_the_crds() {
    let files = manifest_files(&repo_file("examples"));
    if files.is_empty() {
        eprintln!("examples/ has no manifests: nothing to validate");
        return;
    }
    let engine = Engine::new(Policy::default());
    let mut validators: HashMap<(Kind, String), jsonschema::Validator> = HashMap::new();
    let mut check = |kind: Kind, api_version: &str, raw: &Value| {
        let version = api_version.rsplit('/').next().unwrap_or(api_version).to_string();
        errors(validators.entry((kind, version)).or_insert_with(|| validator(kind, api_version)), raw)
    };
    let mut folders: BTreeMap<PathBuf, Vec<Object>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut validated = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let docs = match parse_documents(&text) {
            Ok(docs) => docs,
            Err(e) => {
                failures.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        let folder = folders.entry(file.parent().map(Path::to_path_buf).unwrap_or_default()).or_default();
        for doc in docs {
            let api_version = doc.value["apiVersion"].as_str().unwrap_or_default().to_string();
            let Ok(mut obj) = Object::from_value(doc.value, "default") else { continue };
            if crd_file(obj.kind()).is_some() {
                validated += 1;
                let errors = check(obj.kind(), &api_version, &obj.raw);
                if !errors.is_empty() {
                    failures.push(format!("{} ({}): {}", obj.key, file.display(), errors.join("; ")));
                }
            }
            let mutation = engine.mutate(&obj, None);
            if json_patch::patch(&mut obj.raw, &mutation.patch).is_err() {
                failures.push(format!("{} ({}): the version-label patch does not apply", obj.key, file.display()));
            }
            folder.push(obj);
        }
    }
    for (folder, objects) in folders {
        let snapshot = Snapshot::from_objects(engine.policy(), objects);
        for obj in engine.generate(&snapshot) {
            if obj.kind() == Kind::DestinationRule {
                validated += 1;
                let api_version = obj.raw["apiVersion"].as_str().unwrap_or_default();
                let errors = check(Kind::DestinationRule, api_version, &obj.raw);
                if !errors.is_empty() {
                    failures.push(format!("{} generated from {}: {}", obj.key, folder.display(), errors.join("; ")));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("validated {validated} objects of examples/ and generated from it");
}

/// A validator for the PolicyReport CRD the audit writes.
fn policy_report_validator() -> jsonschema::Validator {
    let file = "crds/policy-report/wgpolicyk8s.io_policyreports.yaml";
    let schema = crd_schema(file, "v1alpha2");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file}: the schema does not compile: {e}"))
}

#[test]
fn audit_reports_match_the_policy_report_crd() {
    use routeguard::cluster::audit::reports::{self, Timestamp};
    let engine = Engine::new(Policy::default());
    let objects = vec![
        service("reviews", json!({"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]})),
        object(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "bookinfo", "uid": "uid-1"},
            "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
        })),
        object(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "bookinfo", "uid": "uid-2"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 70},
                {"destination": {"host": "ratings"}, "weight": 20}]}]}
        })),
        object(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "web"},
            "spec": {"hosts": ["web"], "gateways": ["nowhere"], "http": [{"route": [{"destination": {"host": "web"}}]}]}
        })),
    ];
    let snapshot = Snapshot::from_objects(engine.policy(), objects);
    let findings = engine.audit(&snapshot);
    let desired = reports::desired(&findings, &snapshot, Timestamp { seconds: 1_700_000_000, nanos: 999_999_999 });
    assert_eq!(desired.keys().collect::<Vec<_>>(), ["bookinfo", "web"], "{findings:#?}");
    let validator = policy_report_validator();
    for (namespace, report) in &desired {
        assert_valid(&validator, report, &format!("the report of {namespace}"));
    }
    // An update carries the stored metadata along; it validates too.
    let mut stored = desired["bookinfo"].clone();
    stored["metadata"]["resourceVersion"] = json!("7");
    stored["metadata"]["uid"] = json!("uid-r");
    for action in reports::plan(&desired, &[stored]) {
        if let reports::ReportAction::Create { body, .. } | reports::ReportAction::Update { body, .. } = action {
            assert_valid(&validator, &body, "a planned report");
        }
    }
    // The schema is strict enough to catch a wrong enum or timestamp.
    let mut bad = desired["web"].clone();
    bad["results"][0]["severity"] = json!("error");
    bad["results"][0]["timestamp"] = json!({"seconds": 1});
    assert_eq!(errors(&validator, &bad).len(), 2, "{:?}", errors(&validator, &bad));
}
