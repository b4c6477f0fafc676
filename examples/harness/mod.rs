//! What the load harnesses share: child processes, their memory and CPU
//! time, and HTTPS/1.1 keep-alive connections like the API server's webhook
//! client. Included by each harness with `#[path]` (not an example itself).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

pub fn free_addr() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A server child process, stopped (SIGTERM, then SIGKILL) when dropped, error paths included.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

pub fn spawn(args: &[&str], log: &Path) -> anyhow::Result<Server> {
    spawn_with(args, &[], log)
}

/// [`spawn`] with environment variables set for the child.
pub fn spawn_with(args: &[&str], env: &[(&str, &Path)], log: &Path) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let args: Vec<&str> = std::iter::once("--child").chain(args.iter().copied()).collect();
    spawn_program(&exe, &args, env, log)
}

/// [`spawn`] under an explicit wrapper command (`valgrind ...`; none when
/// empty) instead of `HARNESS_WRAP`.
pub fn spawn_self_under(wrapper: &[String], args: &[&str], log: &Path) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let args: Vec<&str> = std::iter::once("--child").chain(args.iter().copied()).collect();
    spawn_under(wrapper, &exe, &args, &[], log)
}

/// Runs `program` with `args` as a server child, its stderr to `log`, under
/// `HARNESS_WRAP` if set.
pub fn spawn_program(program: &Path, args: &[&str], env: &[(&str, &Path)], log: &Path) -> anyhow::Result<Server> {
    // HARNESS_WRAP runs the child under a profiler, e.g.
    // `HARNESS_WRAP="valgrind --tool=massif --massif-out-file=/tmp/massif.out"`.
    let wrap = std::env::var("HARNESS_WRAP").unwrap_or_default();
    let wrapper: Vec<String> = wrap.split_whitespace().map(str::to_string).collect();
    spawn_under(&wrapper, program, args, env, log)
}

/// [`spawn_program`] under an explicit wrapper command (`valgrind ...`;
/// none when empty) instead of `HARNESS_WRAP`.
pub fn spawn_under(
    wrapper: &[String],
    program: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
    log: &Path,
) -> anyhow::Result<Server> {
    let log = std::fs::File::create(log)?;
    let mut command = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    };
    command.args(args).stdout(Stdio::null()).stderr(log);
    for (name, value) in env {
        command.env(name, value);
    }
    Ok(Server(command.spawn()?))
}

pub fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// KiB (as `memory` reports them) in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// VmRSS and VmHWM of a process, in KiB.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of a process so far (`/proc/PID/stat`, in clock ticks).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start with the state, field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the state.
    // Linux reports them in USER_HZ, which is 100 on every architecture it runs on.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

pub fn client_config(ca_pem: &str) -> rustls::ClientConfig {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten() {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Like the API server's webhook client: HTTP/1.1 with keep-alive.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

pub async fn connect(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One request; `Ok(false)` for an answer that does not allow it.
pub async fn send(sender: &mut Sender, path: &str, body: &Bytes) -> anyhow::Result<bool> {
    sender.ready().await?;
    let request = hyper::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status == 200 && bytes.starts_with(b"{"), "status {status}");
    const ALLOWED: &[u8] = br#""allowed":true"#;
    Ok(bytes.windows(ALLOWED.len()).any(|w| w == ALLOWED))
}

pub async fn wait_for_tls(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<()> {
    for _ in 0..400 {
        if connect(addr, tls).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("{addr} did not come up")
}

pub async fn wait_for_ready(admin: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..2400 {
        if metric(admin, "routeguard_ready").await == Some(1.0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("routeguard did not become ready")
}

pub async fn metrics_text(admin: SocketAddr) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(admin).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.ok()?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/metrics").header("host", "localhost").body(Full::new(Bytes::new())).ok()?;
    let body = sender.send_request(request).await.ok()?.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// One metric from the admin port, over a bare HTTP/1.1 connection.
pub async fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let text = metrics_text(admin).await?;
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

/// An AdmissionReview of `operation` on `object` (VirtualService,
/// DestinationRule or Deployment), encoded as the API server sends it: the
/// request's fields in the order of Go's `AdmissionRequest` struct, which
/// `encoding/json` follows (a struct here, so that no map reorders them).
pub fn admission_review(uid: usize, operation: &str, object: &Value, old: Option<&Value>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Review<'a> {
        api_version: &'a str,
        kind: &'a str,
        request: Request<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Request<'a> {
        uid: String,
        kind: Value,
        resource: Value,
        request_kind: Value,
        request_resource: Value,
        name: &'a Value,
        namespace: &'a Value,
        operation: &'a str,
        user_info: Value,
        object: &'a Value,
        old_object: Option<&'a Value>,
        dry_run: bool,
        options: Value,
    }
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, resource) = match kind {
        "VirtualService" => ("networking.istio.io", "virtualservices"),
        "DestinationRule" => ("networking.istio.io", "destinationrules"),
        _ => ("apps", "deployments"),
    };
    let options = if operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" };
    let review = Review {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: Request {
            uid: format!("00000000-0000-0000-0000-{uid:012}"),
            kind: json!({"group": group, "version": "v1", "kind": kind}),
            resource: json!({"group": group, "version": "v1", "resource": resource}),
            request_kind: json!({"group": group, "version": "v1", "kind": kind}),
            request_resource: json!({"group": group, "version": "v1", "resource": resource}),
            name: &object["metadata"]["name"],
            namespace: &object["metadata"]["namespace"],
            operation,
            user_info: json!({"username": "system:serviceaccount:argocd:argocd-application-controller",
                              "uid": "4f7c2c1e-2b1d-4c50-9d3e-0c3f2f6f1a11",
                              "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]}),
            object,
            old_object: old,
            dry_run: false,
            options: json!({"kind": options, "apiVersion": "meta.k8s.io/v1"}),
        },
    };
    serde_json::to_vec(&review).expect("a review encodes")
}

/// Writes `count` objects (Service, Deployments v1 and v2, DestinationRule,
/// VirtualService per app) across 20 namespaces; returns the apps.
pub fn write_objects(dir: &Path, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    std::fs::create_dir_all(dir)?;
    let apps = count.div_ceil(5).max(1);
    let mut written = 0;
    let mut services = Vec::new();
    let mut text = String::new();
    for i in 0..apps {
        let (ns, app) = (format!("ns-{}", i % 20), format!("app-{i}"));
        let objects = [
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns},
                   "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080}]}}),
            deployment(&ns, &format!("{app}-v1"), &app, Some("v1")),
            deployment(&ns, &format!("{app}-v2"), &app, Some("v2")),
            destination_rule(&ns, &app, &["v1", "v2"]),
            virtual_service(&ns, &app, &[("v1", 90), ("v2", 10)]),
        ];
        for object in objects {
            if written < count {
                text.push_str("---\n");
                text.push_str(&object.to_string());
                text.push('\n');
                written += 1;
            }
        }
        services.push((ns, app));
        if i % 200 == 199 || i + 1 == apps {
            std::fs::write(dir.join(format!("objects-{i:05}.yaml")), &text)?;
            text.clear();
        }
    }
    Ok(services)
}

/// `object` as the API server sends it to a webhook after a `kubectl apply`,
/// in the shape of the recorded reviews (`tests/fixtures/admission-reviews/`):
/// uid, resourceVersion, generation and creationTimestamp, the last-applied
/// annotation (a copy of the object) and the managed fields of the
/// client-side apply. In the recorded reviews the managed fields are a sixth
/// to a half of each object and the annotation an eighth to a third; no rule
/// reads either. `n` varies the identity.
pub fn as_applied(object: &Value, n: usize) -> Value {
    let mut served = object.clone();
    let applied = format!("{}\n", serde_json::to_string(object).unwrap_or_default());
    let fields = json!({
        "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
        "f:spec": managed_fields(&object["spec"]),
    });
    let meta = &mut served["metadata"];
    meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!(applied);
    meta["creationTimestamp"] = json!("2026-12-01T19:00:14Z");
    meta["generation"] = json!(n % 7 + 1);
    meta["resourceVersion"] = json!((1000 + n).to_string());
    meta["uid"] = json!(format!("3c656355-0412-4808-af2b-{n:012x}"));
    meta["managedFields"] = json!([{
        "apiVersion": object["apiVersion"], "fieldsType": "FieldsV1", "fieldsV1": fields,
        "manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-12-01T19:00:14Z",
    }]);
    served
}

/// The `fieldsV1` tree of a value: each map key as `f:<key>` (with the
/// map's own `"."`), lists and scalars as leaves.
fn managed_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut fields = serde_json::Map::from_iter([(".".to_string(), json!({}))]);
            fields.extend(map.iter().map(|(k, v)| (format!("f:{k}"), managed_fields(v))));
            Value::Object(fields)
        }
        _ => json!({}),
    }
}

pub fn deployment(ns: &str, name: &str, app: &str, version: Option<&str>) -> Value {
    let mut labels = json!({"app": app});
    if let Some(v) = version {
        labels["version"] = json!(v);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels.clone()},
            "template": {
                "metadata": {"labels": labels, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {"containers": [{
                    "name": app, "image": format!("registry.example.com/{app}:{}", version.unwrap_or("1.4.2")),
                    "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "env": [{"name": "LOG_LEVEL", "value": "info"}]
                }]}
            }
        }
    })
}

pub fn destination_rule(ns: &str, app: &str, versions: &[&str]) -> Value {
    let subsets: Vec<Value> = versions.iter().map(|v| json!({"name": v, "labels": {"version": v}})).collect();
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"host": app, "trafficPolicy": {"connectionPool": {"http": {"http1MaxPendingRequests": 100}}}, "subsets": subsets}
    })
}

pub fn virtual_service(ns: &str, app: &str, split: &[(&str, i64)]) -> Value {
    let route: Vec<Value> =
        split.iter().map(|(s, w)| json!({"destination": {"host": app, "subset": s}, "weight": w})).collect();
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"hosts": [app], "http": [{"match": [{"uri": {"prefix": "/api"}}], "route": route, "timeout": "5s"}]}
    })
}
