//! Load harness for `routeguard serve` (not a timed test).
//!
//! ```text
//! cargo run --release --example loadgen -- [--connections 32] [--duration 10] [--rate 1000] [--objects 10000] [--shape applied]
//! cargo run --release --example loadgen -- --callgrind [--requests 3000]
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
//!    mix: VirtualService UPDATE (/validate, a canary step), Deployment CREATE (/mutate),
//!    DestinationRule UPDATE (/validate);
//! 3. loads routeguard at a fixed `--rate` (open loop: latency counts from the
//!    scheduled send time, so queueing shows);
//! 4. reports requests/s, p50/p99/p99.9, the throughput ratio, and the
//!    routeguard process's resident memory (VmRSS, VmHWM).
//!
//! Both servers are this same binary re-run with `--child`, so they share the
//! build. The load generator runs on the same machine and takes its share of the CPU.
//!
//! `--callgrind` runs each server under `valgrind --tool=callgrind` and
//! counts the instructions its process executes (user space, every thread)
//! over a fixed number of requests: a figure that, unlike CPU time on a
//! shared 2-core machine, comes out the same from run to run, for comparing
//! builds and for the instruction ratio to the bare servers. Counters are
//! zeroed after the warm-up and dumped after the last answer
//! (`callgrind_control`); the open loop is skipped (valgrind runs the server
//! tens of times slower).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use clap::ValueEnum as _;
use routeguard::server::certs::Authority;
use serde_json::Value;

// This binary and its children run on the allocator the routeguard binary runs on.
#[path = "../src/allocator.rs"]
mod allocator;
#[path = "harness/mod.rs"]
mod harness;

use harness::{
    admission_review, as_applied, client_config, connect, cpu_time, deployment, destination_rule, free_addr, memory,
    metric, metrics_text, mib, path, send, spawn_self_under, virtual_service, wait_for_ready, wait_for_tls,
    write_objects,
};

const BARE_RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true,"status":{"status":"Success"}}}"#;

/// Load harness for `routeguard serve` against two bare servers.
#[derive(clap::Parser, Clone)]
struct Options {
    /// Keep-alive HTTPS connections per phase (1-512).
    #[arg(long, env = "LOADGEN_CONNECTIONS", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    connections: u16,
    /// Seconds each timed phase runs (1-60); ignored for the closed loops when --requests is given.
    #[arg(long, env = "LOADGEN_DURATION", default_value = "10", value_parser = seconds)]
    duration: Duration,
    /// Requests per second of the open-loop phase.
    #[arg(long, env = "LOADGEN_RATE", default_value_t = 1000)]
    rate: u64,
    /// Objects in routeguard's generated snapshot.
    #[arg(long, env = "LOADGEN_OBJECTS", default_value_t = 10_000)]
    objects: usize,
    /// Send exactly this many requests in each closed loop (rounded up to a
    /// multiple of --connections) instead of running for --duration; 0: run
    /// for --duration (with --callgrind: 3000).
    #[arg(long, env = "LOADGEN_REQUESTS", default_value_t = 0)]
    requests: usize,
    /// Run each server under callgrind and report the instructions it
    /// executes per request over --requests requests (valgrind must be installed).
    #[arg(long, env = "LOADGEN_CALLGRIND", default_value_t = false)]
    callgrind: bool,
    /// The objects in the reviews: `applied`, as the API server sends them
    /// after a `kubectl apply` (managed fields, the last-applied annotation,
    /// uid and versions), or `lean`, name and spec only (the mix measured
    /// up to the tenth session).
    #[arg(long, env = "LOADGEN_SHAPE", value_enum, default_value_t = Shape::Applied)]
    shape: Shape,
}

/// `--shape`: how much of what the API server adds the reviewed objects carry.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Applied,
    Lean,
}

/// `--duration`: seconds, clamped to 1-60.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if !value.is_finite() {
        return Err(format!("{text:?} is not a number of seconds"));
    }
    Ok(Duration::from_secs_f64(value.clamp(1.0, 60.0)))
}

impl Options {
    /// Requests per connection in a closed loop, when counted.
    fn per_connection(&self) -> Option<usize> {
        let total = if self.requests == 0 && self.callgrind { 3000 } else { self.requests };
        (total > 0).then(|| total.div_ceil(usize::from(self.connections)))
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2..]);
    }
    let options = <Options as clap::Parser>::parse();
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
    if let Some(n) = options.per_connection() {
        println!(
            "loadgen: closed loops of {} requests ({n} per connection){}",
            n * usize::from(options.connections),
            if options.callgrind { ", each server under callgrind" } else { "" }
        );
    }
    let child = |args: &[&str], name: &str| {
        let counts = dir.join(format!("{name}.callgrind"));
        let wrapper = match options.callgrind {
            true => vec![
                "valgrind".to_string(),
                "--tool=callgrind".to_string(),
                format!("--callgrind-out-file={}", counts.display()),
            ],
            false => Vec::new(),
        };
        let server = spawn_self_under(&wrapper, args, &dir.join(format!("{name}.log")))?;
        anyhow::Ok((server, options.callgrind.then_some(counts)))
    };

    let bare_addr = free_addr()?;
    let (bare, counts) = child(&["bare", &bare_addr.to_string(), path(&cert), path(&key)], "bare")?;
    wait_for_tls(bare_addr, &tls).await?;
    let mix = Mix::new(services, options.shape);
    println!(
        "loadgen: {} objects in the reviews, {} bytes a request body on average",
        options.shape.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
        mix.mean_body()
    );
    let bare_run = closed_loop(bare_addr, bare.0.id(), counts.as_deref(), &tls, &mix, &options).await?;
    print_run("bare axum+rustls, closed loop", &bare_run);
    drop(bare);
    let echo_addr = free_addr()?;
    let (echo, counts) = child(&["echo", &echo_addr.to_string(), path(&cert), path(&key)], "echo")?;
    wait_for_tls(echo_addr, &tls).await?;
    let echo_run = closed_loop(echo_addr, echo.0.id(), counts.as_deref(), &tls, &mix, &options).await?;
    print_run("bare axum+rustls parsing the review, echoing the uid, closed loop", &echo_run);
    drop(echo);

    let addr = free_addr()?;
    let admin = free_addr()?;
    let started = Instant::now();
    let (ours, counts) = child(
        &["routeguard", &addr.to_string(), &admin.to_string(), path(&cert), path(&key), path(&objects)],
        "routeguard",
    )?;
    wait_for_ready(admin).await?;
    let load_time = started.elapsed();
    let idle = memory(ours.0.id());
    println!(
        "routeguard: ready in {:.1} s with the snapshot; RSS idle {:.1} MiB",
        load_time.as_secs_f64(),
        mib(idle.0)
    );
    let our_run = closed_loop(addr, ours.0.id(), counts.as_deref(), &tls, &mix, &options).await?;
    print_run("routeguard, closed loop (mix)", &our_run);
    println!("throughput ratio routeguard / bare: {:.2}", our_run.rps() / bare_run.rps());
    println!("throughput ratio routeguard / parsing bare: {:.2}", our_run.rps() / echo_run.rps());
    if let (Some(ours), Some(bare), Some(echo)) =
        (our_run.instructions_per_request(), bare_run.instructions_per_request(), echo_run.instructions_per_request())
    {
        println!("instruction ratio bare / routeguard: {:.2}", bare / ours);
        println!("instruction ratio parsing bare / routeguard: {:.2}", echo / ours);
    }
    if options.callgrind {
        println!("routeguard, open loop: skipped under callgrind");
    } else {
        let before = histogram(admin).await;
        let paced = open_loop(addr, &tls, &mix, &options).await?;
        print_run(&format!("routeguard, open loop at {} req/s", options.rate), &paced);
        print_server_side(&before, &histogram(admin).await);
    }
    let (rss, hwm) = memory(ours.0.id());
    println!(
        "routeguard memory with {} objects: VmRSS {:.1} MiB, VmHWM (peak) {:.1} MiB",
        options.objects,
        mib(rss),
        mib(hwm)
    );
    let objects_metric = metric(admin, "routeguard_snapshot_objects").await.unwrap_or_default();
    println!("routeguard_snapshot_objects {objects_metric}");
    drop(ours);
    if options.callgrind {
        // The dumps are for `callgrind_annotate`: kept, with the rest of the run's files.
        println!("callgrind dumps: {}/{{bare,echo,routeguard}}.callgrind.1", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
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

/// Pre-encoded requests: (path, body), cycling VirtualService UPDATE,
/// Deployment CREATE, DestinationRule UPDATE over the snapshot's apps.
struct Mix {
    requests: Vec<(&'static str, Bytes)>,
}

impl Mix {
    fn new(services: Vec<(String, String)>, shape: Shape) -> Mix {
        let mut requests = Vec::new();
        for (i, (ns, app)) in services.iter().enumerate().take(300) {
            let shaped = |object: Value| match shape {
                Shape::Applied => as_applied(&object, i),
                Shape::Lean => object,
            };
            // A canary step: the app's VirtualService from 90/10 to 50/50.
            let shifted = shaped(virtual_service(ns, app, &[("v1", 50), ("v2", 50)]));
            let current = shaped(virtual_service(ns, app, &[("v1", 90), ("v2", 10)]));
            let deploy = shaped(deployment(ns, &format!("{app}-v3"), app, None));
            let old_dr = shaped(destination_rule(ns, app, &["v1", "v2"]));
            let new_dr = shaped(destination_rule(ns, app, &["v1", "v2", "v3"]));
            requests.push(("/validate", Bytes::from(admission_review(3 * i, "UPDATE", &shifted, Some(&current)))));
            requests.push(("/mutate", Bytes::from(admission_review(3 * i + 1, "CREATE", &deploy, None))));
            requests.push(("/validate", Bytes::from(admission_review(3 * i + 2, "UPDATE", &new_dr, Some(&old_dr)))));
        }
        Mix { requests }
    }

    /// The mean size of a request body, in bytes.
    fn mean_body(&self) -> usize {
        self.requests.iter().map(|(_, body)| body.len()).sum::<usize>() / self.requests.len().max(1)
    }
}

struct Run {
    latencies_us: Vec<u64>,
    elapsed: Duration,
    errors: usize,
    /// Answers that did not allow the request (the mix is built to be allowed).
    denied: usize,
    /// CPU time (user + system) the server process and the load generator
    /// spent in the timed phase, when measured.
    cpu: Option<(Duration, Duration)>,
    /// Instructions the server process executed in the timed phase (callgrind).
    instructions: Option<u64>,
}

impl Run {
    fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn instructions_per_request(&self) -> Option<f64> {
        let answered = self.latencies_us.len();
        self.instructions.filter(|_| answered > 0).map(|n| n as f64 / answered as f64)
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
        "{name}: {} requests in {:.1} s = {:.0} req/s; p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms; errors {}, denied {}",
        sorted.len(),
        run.elapsed.as_secs_f64(),
        run.rps(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        sorted.last().copied().unwrap_or(0) as f64 / 1000.0,
        run.errors,
        run.denied
    );
    if let Some((server, client)) = run.cpu {
        let n = sorted.len().max(1) as f64;
        println!(
            "  CPU per request: server {:.1} us, load generator {:.1} us",
            server.as_secs_f64() * 1e6 / n,
            client.as_secs_f64() * 1e6 / n
        );
    }
    if let Some(per_request) = run.instructions_per_request() {
        println!("  instructions per request (callgrind, the server process's user space): {per_request:.0}");
    }
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

/// N connections, each sending as fast as responses come back.
/// With `counts` (the server's callgrind output file), its instructions
/// are counted from the end of the warm-up to the last answer.
async fn closed_loop(
    addr: SocketAddr,
    pid: u32,
    counts: Option<&Path>,
    tls: &Arc<rustls::ClientConfig>,
    mix: &Mix,
    o: &Options,
) -> anyhow::Result<Run> {
    // Warm up (connections, caches) for a second, or a fifth of the count, untimed.
    let warm = Options { duration: Duration::from_secs(1), ..o.clone() };
    let _ = run_connections(addr, tls, mix, &warm, None, o.per_connection().map(|n| n.div_ceil(5))).await?;
    // Connected before the counting starts: the TLS handshakes are not per-request work.
    let senders = connect_all(addr, tls, o.connections).await?;
    if counts.is_some() {
        callgrind_control("--zero", pid)?;
    }
    let (server, client) = (cpu_time(pid), cpu_time(std::process::id()));
    let mut run = send_on(senders, mix, o, None, o.per_connection()).await?;
    run.cpu = Some((cpu_time(pid) - server, cpu_time(std::process::id()) - client));
    if let Some(counts) = counts {
        callgrind_control("--dump", pid)?;
        run.instructions = Some(dumped_instructions(counts)?);
    }
    Ok(run)
}

/// Runs `callgrind_control <command> <pid>`: it returns once the server's
/// valgrind has carried the command out.
fn callgrind_control(command: &str, pid: u32) -> anyhow::Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args([command, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "callgrind_control {command} {pid}: {status}");
    Ok(())
}

/// The instruction total of the latest dump of `counts` (callgrind writes
/// the n-th dump to `<counts>.<n>`; its `totals:` line is the count since
/// the counters were zeroed).
fn dumped_instructions(counts: &Path) -> anyhow::Result<u64> {
    let name = counts.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let dir = counts.parent().unwrap_or(Path::new("."));
    let latest = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let n: u32 = file.strip_prefix(name)?.strip_prefix('.')?.parse().ok()?;
            Some((n, entry.path()))
        })
        .max_by_key(|(n, _)| *n)
        .ok_or_else(|| anyhow::anyhow!("no callgrind dump next to {}", counts.display()))?;
    let text = std::fs::read_to_string(&latest.1)?;
    let totals = text.lines().find_map(|line| line.strip_prefix("totals:"));
    let first = totals.and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok());
    first.ok_or_else(|| anyhow::anyhow!("{}: no totals line", latest.1.display()))
}

/// N connections sharing a fixed total rate; latency from the scheduled send time.
async fn open_loop(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>, mix: &Mix, o: &Options) -> anyhow::Result<Run> {
    let interval = Duration::from_secs_f64(f64::from(o.connections) / o.rate.max(1) as f64);
    run_connections(addr, tls, mix, o, Some(interval), None).await
}

/// Opens the connections, then [`send_on`] them.
async fn run_connections(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    mix: &Mix,
    o: &Options,
    interval: Option<Duration>,
    count: Option<usize>,
) -> anyhow::Result<Run> {
    let senders = connect_all(addr, tls, o.connections).await?;
    send_on(senders, mix, o, interval, count).await
}

async fn connect_all(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    connections: u16,
) -> anyhow::Result<Vec<harness::Sender>> {
    let mut senders = Vec::new();
    for _ in 0..connections {
        senders.push(connect(addr, tls).await?);
    }
    Ok(senders)
}

/// Each connection sends until the deadline, or `count` requests when given.
async fn send_on(
    senders: Vec<harness::Sender>,
    mix: &Mix,
    o: &Options,
    interval: Option<Duration>,
    count: Option<usize>,
) -> anyhow::Result<Run> {
    let requests = Arc::new(mix.requests.clone());
    let start = Instant::now();
    let deadline = start + o.duration;
    let mut tasks = Vec::new();
    for (n, mut sender) in senders.into_iter().enumerate() {
        let requests = requests.clone();
        let connections = usize::from(o.connections);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut denied = 0;
            // Spread the connections' schedules over one interval.
            let offset = interval.map(|i| i.mul_f64(n as f64 / connections as f64)).unwrap_or_default();
            let mut k = 0usize;
            loop {
                let scheduled = match interval {
                    Some(i) => start + offset + i * u32::try_from(k).unwrap_or(u32::MAX),
                    None => Instant::now(),
                };
                let done = match count {
                    Some(count) => k >= count,
                    None => scheduled >= deadline,
                };
                if done {
                    break;
                }
                // Closed loop: no timer at all (tokio's timer has 1 ms ticks: a
                // sleep until "now" can wait for the next one and throttle the loop).
                if interval.is_some() {
                    tokio::time::sleep_until(scheduled.into()).await;
                }
                // Tokio's timer wakes up to 1 ms late; only a later start is
                // queueing (the connection was still busy) and counts.
                let begun = Instant::now();
                let from = if begun.duration_since(scheduled) > Duration::from_millis(2) { scheduled } else { begun };
                let (path, body) = &requests[(n + k * connections) % requests.len()];
                match send(&mut sender, path, body).await {
                    Ok(allowed) => {
                        latencies.push(from.elapsed().as_micros() as u64);
                        denied += usize::from(!allowed);
                    }
                    Err(_) => errors += 1,
                }
                k += 1;
            }
            (latencies, errors, denied)
        }));
    }
    let mut run =
        Run { latencies_us: Vec::new(), elapsed: Duration::ZERO, errors: 0, denied: 0, cpu: None, instructions: None };
    for task in tasks {
        let (latencies, errors, denied) = task.await?;
        run.latencies_us.extend(latencies);
        run.errors += errors;
        run.denied += denied;
    }
    run.elapsed = start.elapsed();
    Ok(run)
}
