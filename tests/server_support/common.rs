//! Shared by the `server_*` integration tests: a bookinfo snapshot, AdmissionReview
//! builders, a server started in process, and TLS clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use routeguard::admission::{Admission, SharedSnapshot};
use routeguard::model::Object;
use routeguard::policy::{Engine, Policy, Snapshot};
use routeguard::server::certs::{Authority, Issued};
use routeguard::server::tls::KeyPairFiles;
use routeguard::server::{self, Bound, Settings};
use serde_json::{Value, json};

pub const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

pub fn object(value: Value) -> Object {
    Object::from_value(value, "default").expect("test object")
}

pub fn service(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 9080}]}
    })
}

pub fn deployment(name: &str, app: &str, version: Option<&str>) -> Value {
    let mut labels = json!({"app": app});
    if let Some(v) = version {
        labels["version"] = json!(v);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {
            "selector": {"matchLabels": labels.clone()},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": app, "image": format!("example/{app}:{}", version.unwrap_or("v4"))}]}
            }
        }
    })
}

pub fn destination_rule(subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets.iter().map(|v| json!({"name": v, "labels": {"version": v}})).collect();
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"host": "reviews", "subsets": subsets}
    })
}

pub fn virtual_service(split: &[(&str, i64)]) -> Value {
    let route: Vec<Value> =
        split.iter().map(|(s, w)| json!({"destination": {"host": "reviews", "subset": s}, "weight": w})).collect();
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews"], "http": [{"route": route}]}
    })
}

pub fn http_route(service: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "ratings", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": service, "port": 9080}]}]}
    })
}

/// The Gateway API Gateway `default/gateway` that [`http_route`] attaches to.
pub fn gateway() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gateway", "namespace": "default"},
        "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
    })
}

/// Istio's bookinfo reviews (Service, v1..v3, DestinationRule, 80/20 VirtualService) and ratings,
/// with the Gateway its HTTPRoute attaches to.
pub fn bookinfo() -> Vec<Object> {
    vec![
        object(service("reviews", "reviews")),
        object(deployment("reviews-v1", "reviews", Some("v1"))),
        object(deployment("reviews-v2", "reviews", Some("v2"))),
        object(deployment("reviews-v3", "reviews", Some("v3"))),
        object(destination_rule(&["v1", "v2", "v3"])),
        object(virtual_service(&[("v1", 80), ("v2", 20)])),
        object(service("ratings", "ratings")),
        object(deployment("ratings-v1", "ratings", Some("v1"))),
        object(gateway()),
        object(http_route("ratings")),
    ]
}

pub fn admission(policy: Policy) -> Admission {
    let snapshot = Snapshot::from_objects(&policy, bookinfo());
    Admission::new(Engine::new(policy), Arc::new(SharedSnapshot::new(snapshot)))
}

/// The API group and plural resource of a kind.
fn resource(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "VirtualService" => ("networking.istio.io", "virtualservices"),
        "DestinationRule" => ("networking.istio.io", "destinationrules"),
        "HTTPRoute" => ("gateway.networking.k8s.io", "httproutes"),
        "Deployment" => ("apps", "deployments"),
        "Service" => ("", "services"),
        _ => ("", "configmaps"),
    }
}

/// An AdmissionReview as the API server sends it.
pub fn review(operation: &str, object: Option<&Value>, old: Option<&Value>) -> Value {
    let sample = object.or(old).expect("an object");
    let kind = sample["kind"].as_str().expect("kind");
    let (group, plural) = resource(kind);
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": plural},
            "name": sample["metadata"]["name"],
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

pub fn body(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).expect("json")
}

/// A CA, and a serving certificate for localhost, 127.0.0.1 and the in-cluster names.
pub struct Pki {
    pub ca: Authority,
    pub serving: Issued,
}

pub const SERVICE_NAME: &str = "routeguard.routeguard.svc";

pub fn pki(name: &str) -> Pki {
    let ca = Authority::new(name).expect("ca");
    let names = routeguard::server::certs::serving_names("routeguard", "routeguard");
    let serving = ca.issue_server(&names, Duration::from_secs(86_400)).expect("serving cert");
    Pki { ca, serving }
}

/// Writes a serving pair into `dir` and returns the file names.
pub fn write_pair(dir: &Path, issued: &Issued) -> KeyPairFiles {
    let files = KeyPairFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key") };
    std::fs::write(&files.cert, &issued.cert_pem).expect("write cert");
    std::fs::write(&files.key, &issued.key_pem).expect("write key");
    files
}

/// Settings for a server on 127.0.0.1 with ports picked by the OS.
pub fn settings(files: KeyPairFiles) -> Settings {
    Settings {
        admission: admission(Policy::default()),
        addr: "127.0.0.1:0".parse().expect("addr"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        tls: files,
        client_ca: None,
        reload_interval: Duration::from_millis(50),
        shutdown_delay: Duration::from_millis(0),
        drain_timeout: Duration::from_secs(5),
    }
}

/// A server running in this process; dropping `stop` (or sending) shuts it down.
pub struct Running {
    pub bound: Bound,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), server::ServeError>>,
}

impl Running {
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.bound.addr.port())
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.bound.admin_addr)
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) -> Result<(), server::ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("stops in time").expect("join")
    }
}

pub async fn start(settings: Settings) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server::serve(
        settings,
        async {
            let _ = stopped.await;
        },
        move |bound| {
            let _ = bound_tx.send(bound);
        },
    ));
    let bound = bound_rx.await.expect("server started");
    Running { bound, stop: Some(stop), task }
}

/// A TLS client config (ring) trusting `cas`, with an optional client certificate.
pub fn client_config(cas: &[&str], identity: Option<&Issued>) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.expect("ca pem")).expect("root");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain =
                CertificateDer::pem_slice_iter(id.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().expect("chain");
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).expect("key");
            builder.with_client_auth_cert(chain, key).expect("client auth")
        }
    }
}

/// A keep-alive HTTPS client that reaches `SERVICE_NAME` and `localhost` at `addr`.
pub fn client(addr: SocketAddr, config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .resolve(SERVICE_NAME, addr)
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Posts an AdmissionReview; returns the status and the JSON body.
pub async fn post(client: &reqwest::Client, url: &str, review: &Value) -> Result<(u16, Value), reqwest::Error> {
    let response = client.post(url).header("content-type", "application/json").body(body(review)).send().await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Reads one metric's value from the admin port's `/metrics`.
pub async fn metric(running: &Running, name: &str) -> Option<f64> {
    routeguard::server::tls::install_default_provider();
    let text = reqwest::get(running.admin("/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
}
