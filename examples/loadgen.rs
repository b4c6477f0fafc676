//! Load harness for `routeguard serve` (not a timed test).
//!
//! ```text
//! cargo run --release --example loadgen -- [--connections 32] [--duration 10] [--rate 1000] [--objects 10000]
//! ```
//!
//! In one run, on 127.0.0.1 only, bounded in time:
//! 1. starts a bare axum + rustls server (same TLS setup, answers a constant
//!    allowed AdmissionReview) in a child process and loads it flat out over N
//!    keep-alive HTTPS connections;
//!    Then the same with a second bare server that parses each review and
//!    echoes its uid, the least any correct webhook does;
//! 2. starts routeguard (`serve`, with a generated snapshot of `--objects`
//!    objects) in a child process and loads it the same way, with a realistic
//!    mix: VirtualService CREATE (/validate), Deployment CREATE (/mutate),
//!    DestinationRule UPDATE (/validate);
//! 3. loads routeguard at a fixed `--rate` (open loop: latency counts from the
//!    scheduled send time, so queueing shows);
//! 4. reports requests/s, p50/p99/p99.9, the throughput ratio, and the
//!    routeguard process's resident memory (VmRSS, VmHWM).
//!
//! Both servers are this same binary re-run with `--child`, so they share the
//! build. The load generator runs on the same machine and takes its share of the CPU.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use routeguard::server::certs::Authority;
use serde_json::{Value, json};

const BARE_RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true,"status":{"status":"Success"}}}"#;

struct Options {
    connections: usize,
    duration: Duration,
    rate: u64,
    objects: usize,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2..]);
    }
    let mut options = Options { connections: 32, duration: Duration::from_secs(10), rate: 1000, objects: 10_000 };
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--connections" => options.connections = value.parse()?,
            "--duration" => options.duration = Duration::from_secs_f64(value.parse::<f64>()?.clamp(1.0, 60.0)),
            "--rate" => options.rate = value.parse()?,
            "--objects" => options.objects = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    options.connections = options.connections.clamp(1, 512);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(drive(options))
}

/// The parent: certificates, objects, both servers, the three phases.
async fn drive(options: Options) -> anyhow::Result<()> {
    routeguard::server::tls::install_default_provider();
    let dir = std::env::temp_dir().join(format!("routeguard-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca = Authority::new("loadgen CA")?;
    let serving = ca.issue_server(&["localhost".to_string()], Duration::from_secs(86_400))?;
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, &serving.cert_pem)?;
    std::fs::write(&key, &serving.key_pem)?;
    let objects = dir.join("objects");
    let services = write_objects(&objects, options.objects)?;
    let tls = Arc::new(client_config(ca.cert_pem()));
    println!(
        "loadgen: {} keep-alive HTTPS connections, {:?} per phase, 127.0.0.1 only, {} objects in the snapshot",
        options.connections, options.duration, options.objects
    );

    let bare_addr = free_addr()?;
    let bare = spawn(&["bare", &bare_addr.to_string(), path(&cert), path(&key)], &dir.join("bare.log"))?;
    wait_for_tls(bare_addr, &tls).await?;
    let mix = Mix::new(services);
    let bare_run = closed_loop(bare_addr, &tls, &mix, &options).await?;
    print_run("bare axum+rustls, closed loop", &bare_run);
    drop(bare);
    let echo_addr = free_addr()?;
    let echo = spawn(&["echo", &echo_addr.to_string(), path(&cert), path(&key)], &dir.join("echo.log"))?;
    wait_for_tls(echo_addr, &tls).await?;
    let echo_run = closed_loop(echo_addr, &tls, &mix, &options).await?;
    print_run("bare axum+rustls parsing the review, echoing the uid, closed loop", &echo_run);
    drop(echo);

    let addr = free_addr()?;
    let admin = free_addr()?;
    let started = Instant::now();
    let ours = spawn(
        &["routeguard", &addr.to_string(), &admin.to_string(), path(&cert), path(&key), path(&objects)],
        &dir.join("routeguard.log"),
    )?;
    wait_for_ready(admin).await?;
    let load_time = started.elapsed();
    let idle = memory(ours.0.id());
    println!(
        "routeguard: ready in {:.1} s with the snapshot; RSS idle {:.1} MiB",
        load_time.as_secs_f64(),
        idle.0 as f64 / 1024.0
    );
    let our_run = closed_loop(addr, &tls, &mix, &options).await?;
    print_run("routeguard, closed loop (mix)", &our_run);
    println!("throughput ratio routeguard / bare: {:.2}", our_run.rps() / bare_run.rps());
    println!("throughput ratio routeguard / parsing bare: {:.2}", our_run.rps() / echo_run.rps());
    let before = histogram(admin).await;
    let paced = open_loop(addr, &tls, &mix, &options).await?;
    print_run(&format!("routeguard, open loop at {} req/s", options.rate), &paced);
    print_server_side(&before, &histogram(admin).await);
    let (rss, hwm) = memory(ours.0.id());
    println!(
        "routeguard memory with {} objects: VmRSS {:.1} MiB, VmHWM (peak) {:.1} MiB",
        options.objects,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let objects_metric = metric(admin, "routeguard_snapshot_objects").await.unwrap_or_default();
    println!("routeguard_snapshot_objects {objects_metric}");
    drop(ours);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn free_addr() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A server child process, stopped (SIGTERM, then SIGKILL) when dropped, error paths included.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

fn spawn(args: &[&str], log: &Path) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(log)?;
    Ok(Server(Command::new(exe).arg("--child").args(args).stdout(Stdio::null()).stderr(log).spawn()?))
}

fn stop(child: &mut Child) {
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

/// VmRSS and VmHWM of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
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

/// The servers, in the child processes.
fn child(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some(which @ ("bare" | "echo")) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let (addr, cert, key) = (args[1].parse()?, PathBuf::from(&args[2]), PathBuf::from(&args[3]));
            runtime.block_on(bare_server(addr, cert, key, which == "echo"))
        }
        Some("routeguard") => {
            use clap::Parser as _;
            let cli = routeguard::cli::Cli::try_parse_from([
                "routeguard",
                "serve",
                "--addr",
                &args[1],
                "--admin-addr",
                &args[2],
                "--tls-cert",
                &args[3],
                "--tls-key",
                &args[4],
                "--objects",
                &args[5],
                "--shutdown-delay",
                "0s",
            ])?;
            match cli.command {
                routeguard::cli::Command::Serve(serve) => routeguard::serve::run(serve),
                _ => anyhow::bail!("not serve"),
            }
        }
        _ => anyhow::bail!("unknown child"),
    }
}

/// axum + axum-server + rustls (ring), answering a constant allowed review;
/// `echo`: parsing each review (the whole body, as a JSON parser must) and
/// answering with its uid.
async fn bare_server(addr: SocketAddr, cert: PathBuf, key: PathBuf, echo: bool) -> anyhow::Result<()> {
    use axum::http::{HeaderName, StatusCode, header::CONTENT_TYPE};
    use axum::routing::post;
    routeguard::server::tls::install_default_provider();
    let files = routeguard::server::tls::KeyPairFiles { cert, key };
    let loaded = routeguard::server::tls::load_files(&files)?;
    let resolver = Arc::new(routeguard::server::tls::Reloadable::new(loaded.key));
    let config = routeguard::server::tls::server_config(resolver, None)?;
    async fn answer(_body: Bytes) -> ([(HeaderName, &'static str); 1], &'static str) {
        ([(CONTENT_TYPE, "application/json")], BARE_RESPONSE)
    }
    #[derive(serde::Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Request<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        uid: &'a str,
    }
    async fn echo_uid(body: Bytes) -> Result<([(HeaderName, &'static str); 1], String), StatusCode> {
        let review: Review<'_> = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
        let text = BARE_RESPONSE.replace("00000000-0000-0000-0000-000000000000", review.request.uid);
        Ok(([(CONTENT_TYPE, "application/json")], text))
    }
    let app = if echo {
        axum::Router::new().route("/validate", post(echo_uid)).route("/mutate", post(echo_uid))
    } else {
        axum::Router::new().route("/validate", post(answer)).route("/mutate", post(answer))
    };
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    axum_server::bind_rustls(addr, config).serve(app.into_make_service()).await?;
    Ok(())
}

/// Writes `count` objects (Service, Deployments v1 and v2, DestinationRule,
/// VirtualService per app) across 20 namespaces; returns the apps.
fn write_objects(dir: &Path, count: usize) -> anyhow::Result<Vec<(String, String)>> {
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

fn deployment(ns: &str, name: &str, app: &str, version: Option<&str>) -> Value {
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

fn destination_rule(ns: &str, app: &str, versions: &[&str]) -> Value {
    let subsets: Vec<Value> = versions.iter().map(|v| json!({"name": v, "labels": {"version": v}})).collect();
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"host": app, "trafficPolicy": {"connectionPool": {"http": {"http1MaxPendingRequests": 100}}}, "subsets": subsets}
    })
}

fn virtual_service(ns: &str, app: &str, split: &[(&str, i64)]) -> Value {
    let route: Vec<Value> =
        split.iter().map(|(s, w)| json!({"destination": {"host": app, "subset": s}, "weight": w})).collect();
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"hosts": [app], "http": [{"match": [{"uri": {"prefix": "/api"}}], "route": route, "timeout": "5s"}]}
    })
}

fn admission_review(uid: usize, operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, resource) = match kind {
        "VirtualService" => ("networking.istio.io", "virtualservices"),
        "DestinationRule" => ("networking.istio.io", "destinationrules"),
        _ => ("apps", "deployments"),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("00000000-0000-0000-0000-{uid:012}"),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:argocd:argocd-application-controller",
                         "uid": "4f7c2c1e-2b1d-4c50-9d3e-0c3f2f6f1a11",
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]},
            "object": object, "oldObject": old, "dryRun": false,
            "options": {"kind": if operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" }, "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// Pre-encoded requests: (path, body), cycling VirtualService CREATE,
/// Deployment CREATE, DestinationRule UPDATE over the snapshot's apps.
struct Mix {
    requests: Vec<(&'static str, Bytes)>,
}

impl Mix {
    fn new(services: Vec<(String, String)>) -> Mix {
        let mut requests = Vec::new();
        for (i, (ns, app)) in services.iter().enumerate().take(300) {
            let vs = virtual_service(ns, &format!("{app}-canary"), &[("v1", 50), ("v2", 50)]);
            let mut vs = vs;
            vs["spec"]["hosts"] = json!([app]);
            vs["spec"]["http"][0]["route"][0]["destination"]["host"] = json!(app);
            vs["spec"]["http"][0]["route"][1]["destination"]["host"] = json!(app);
            let deploy = deployment(ns, &format!("{app}-v3"), app, None);
            let old_dr = destination_rule(ns, app, &["v1", "v2"]);
            let new_dr = destination_rule(ns, app, &["v1", "v2", "v3"]);
            let encode = |v: &Value| Bytes::from(serde_json::to_vec(v).unwrap_or_default());
            requests.push(("/validate", encode(&admission_review(3 * i, "CREATE", &vs, None))));
            requests.push(("/mutate", encode(&admission_review(3 * i + 1, "CREATE", &deploy, None))));
            requests.push(("/validate", encode(&admission_review(3 * i + 2, "UPDATE", &new_dr, Some(&old_dr)))));
        }
        Mix { requests }
    }
}

struct Run {
    latencies_us: Vec<u64>,
    elapsed: Duration,
    errors: usize,
}

impl Run {
    fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }
}

fn print_run(name: &str, run: &Run) {
    let mut sorted = run.latencies_us.clone();
    sorted.sort_unstable();
    let pct = |q: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i] as f64 / 1000.0
    };
    println!(
        "{name}: {} requests in {:.1} s = {:.0} req/s; p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms; errors {}",
        sorted.len(),
        run.elapsed.as_secs_f64(),
        run.rps(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        sorted.last().copied().unwrap_or(0) as f64 / 1000.0,
        run.errors
    );
}

fn client_config(ca_pem: &str) -> rustls::ClientConfig {
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

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn send(sender: &mut Sender, path: &str, body: &Bytes) -> anyhow::Result<()> {
    sender.ready().await?;
    let request = hyper::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status == 200 && bytes.starts_with(b"{"), "status {status}");
    Ok(())
}

async fn wait_for_tls(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<()> {
    for _ in 0..400 {
        if connect(addr, tls).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("{addr} did not come up")
}

async fn wait_for_ready(admin: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..2400 {
        if metric(admin, "routeguard_ready").await == Some(1.0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("routeguard did not become ready")
}

/// The server's latency histogram (both endpoints summed): (upper bound in seconds, cumulative count).
async fn histogram(admin: SocketAddr) -> Vec<(f64, f64)> {
    let text = metrics_text(admin).await.unwrap_or_default();
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("routeguard_admission_duration_seconds_bucket")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let Some(le) = labels.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
        let count: f64 = value.parse().unwrap_or(0.0);
        match buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some(slot) => slot.1 += count,
            None => buckets.push((bound, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// Server-side quantiles (bucket upper bounds) of the requests between two histogram reads.
fn print_server_side(before: &[(f64, f64)], after: &[(f64, f64)]) {
    let diff: Vec<(f64, f64)> =
        after.iter().map(|(b, n)| (*b, n - before.iter().find(|(x, _)| x == b).map_or(0.0, |(_, m)| *m))).collect();
    let total = diff.last().map_or(0.0, |(_, n)| *n);
    let quantile = |q: f64| diff.iter().find(|(_, n)| *n >= q * total).map_or(f64::NAN, |(b, _)| *b * 1000.0);
    println!(
        "  server-side (handler) latency in that phase: p50 <= {} ms, p99 <= {} ms, p99.9 <= {} ms (histogram bucket bounds)",
        quantile(0.5),
        quantile(0.99),
        quantile(0.999)
    );
}

async fn metrics_text(admin: SocketAddr) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(admin).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.ok()?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/metrics").header("host", "localhost").body(Full::new(Bytes::new())).ok()?;
    let body = sender.send_request(request).await.ok()?.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// One metric from the admin port, over a bare HTTP/1.1 connection.
async fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let text = metrics_text(admin).await?;
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

/// N connections, each sending as fast as responses come back.
async fn closed_loop(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>, mix: &Mix, o: &Options) -> anyhow::Result<Run> {
    // Warm up (connections, caches) for a second, untimed.
    let warm = Options { duration: Duration::from_secs(1), ..*o };
    let _ = run_connections(addr, tls, mix, &warm, None).await?;
    run_connections(addr, tls, mix, o, None).await
}

/// N connections sharing a fixed total rate; latency from the scheduled send time.
async fn open_loop(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>, mix: &Mix, o: &Options) -> anyhow::Result<Run> {
    let interval = Duration::from_secs_f64(o.connections as f64 / o.rate.max(1) as f64);
    run_connections(addr, tls, mix, o, Some(interval)).await
}

async fn run_connections(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    mix: &Mix,
    o: &Options,
    interval: Option<Duration>,
) -> anyhow::Result<Run> {
    let mut senders = Vec::new();
    for _ in 0..o.connections {
        senders.push(connect(addr, tls).await?);
    }
    let requests = Arc::new(mix.requests.clone());
    let start = Instant::now();
    let deadline = start + o.duration;
    let mut tasks = Vec::new();
    for (n, mut sender) in senders.into_iter().enumerate() {
        let requests = requests.clone();
        let connections = o.connections;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            // Spread the connections' schedules over one interval.
            let offset = interval.map(|i| i.mul_f64(n as f64 / connections as f64)).unwrap_or_default();
            let mut k = 0usize;
            loop {
                let scheduled = match interval {
                    Some(i) => start + offset + i * u32::try_from(k).unwrap_or(u32::MAX),
                    None => Instant::now(),
                };
                if scheduled >= deadline {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                // Tokio's timer wakes up to 1 ms late; only a later start is
                // queueing (the connection was still busy) and counts.
                let begun = Instant::now();
                let from = if begun.duration_since(scheduled) > Duration::from_millis(2) { scheduled } else { begun };
                let (path, body) = &requests[(n + k * connections) % requests.len()];
                match send(&mut sender, path, body).await {
                    Ok(()) => latencies.push(from.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
                k += 1;
            }
            (latencies, errors)
        }));
    }
    let mut run = Run { latencies_us: Vec::new(), elapsed: Duration::ZERO, errors: 0 };
    for task in tasks {
        let (latencies, errors) = task.await?;
        run.latencies_us.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = start.elapsed();
    Ok(run)
}
