//! Live-mode harness (not a timed test): `routeguard serve --source cluster`
//! against the in-process fake API server of the tests, at cluster scale.
//!
//! ```text
//! cargo run --release --example livegen -- [--apps 2500] [--churn 10] [--rate 100] [--routeguard PATH]
//! ```
//!
//! `--routeguard target/release/routeguard` (after `cargo build --release`)
//! runs the product's own binary; by default the child is this binary.
//!
//! In one run, on 127.0.0.1 only:
//! 1. fills the fake (`tests/cluster_fake`, plain HTTP) with `--apps` apps in
//!    50 namespaces: a Service, a Deployment with 0 replicas (as a real API
//!    server sends it: managed fields, annotations, status; about 4 KB), a
//!    DestinationRule and a VirtualService each (4 objects an app);
//! 2. starts routeguard in live mode in a child process (this binary re-run
//!    with `--child`, or `--routeguard`), through a kubeconfig that points at the fake, and
//!    reports the time to ready and to the end of the bootstrap (a generated
//!    per-version Service for every app), then its resident memory;
//! 3. measures routeguard's CPU while the fake sends `--rate` status-only
//!    Deployment updates a second for `--churn` seconds (against its idle
//!    CPU; with `--resync-interval 1h`, so that the periodic pass over
//!    everything does not fall into the window) and counts the reconciles
//!    they woke (`routeguard_cluster_reconciles_total`), then admission latency (one keep-alive HTTPS connection, requests
//!    back to back) quiet and during the same updates, and the CPU of both;
//! 4. makes 20 relevant changes (a new version of one app each) and reports
//!    the CPU each cost and how long until its Service was generated;
//! 5. times 200 refusals that take a second look (a subset no DestinationRule
//!    defines: re-read from the fake, still refused), then the same reads
//!    sent from this process with kube's client: the floor the fake sets.
//!
//! The fake answers from memory on the same 2 cores, so these are routeguard's
//! own costs, not a real API server's (no etcd, no admission chain, no rate
//! limits of its own).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use routeguard::server::certs::Authority;
use serde_json::{Value, json};

#[path = "../tests/cluster_fake/mod.rs"]
mod cluster_fake;
// This binary and its children run on the allocator the routeguard binary runs on.
#[path = "../src/allocator.rs"]
mod allocator;
#[path = "harness/mod.rs"]
mod harness;

use cluster_fake::{Fake, deployments, rules, services, virtual_services};
use harness::{
    Sender, admission_review, client_config, connect, cpu_time, free_addr, memory, mib, send, spawn_program,
    spawn_with, wait_for_ready,
};

const NAMESPACES: usize = 50;
/// Refusals timed, each for a VirtualService of its own (the re-read is rate-limited per object).
const REFUSALS: usize = 200;

struct Options {
    apps: usize,
    churn: Duration,
    rate: u64,
    /// The routeguard binary to run; `None`: this binary with `--child`
    /// (the same library, but its memory includes the harness's code).
    routeguard: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        use clap::Parser as _;
        let cli = routeguard::cli::Cli::try_parse_from(
            ["routeguard".to_string(), "serve".to_string()].into_iter().chain(args[2..].iter().cloned()),
        )?;
        return match cli.command {
            routeguard::cli::Command::Serve(serve) => routeguard::serve::run(serve),
            _ => anyhow::bail!("not serve"),
        };
    }
    let mut options = Options { apps: 2_500, churn: Duration::from_secs(10), rate: 100, routeguard: None };
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--apps" => options.apps = value.parse::<usize>()?.clamp(1, 100_000),
            "--churn" => options.churn = Duration::from_secs_f64(value.parse::<f64>()?.clamp(1.0, 120.0)),
            "--rate" => options.rate = value.parse::<u64>()?.clamp(1, 10_000),
            "--routeguard" => options.routeguard = Some(value.into()),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(drive(options))
}

fn app(i: usize) -> (String, String) {
    (format!("ns-{}", i % NAMESPACES), format!("app-{i}"))
}

/// A Deployment as a real API server stores and sends it, in the shape of a
/// recorded one (`tests/fixtures/admission-reviews/017-*`): the defaults it
/// fills in, managed fields, the revision and `kubectl apply` annotations and
/// a status. About 4 KB, of which the index keeps about a fifth.
fn deployment(ns: &str, app: &str, version: &str) -> Value {
    let name = format!("{app}-{version}");
    let labels = json!({"app": app, "version": version});
    let image = format!("example/{app}:{version}");
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"annotations": {}, "labels": {"app": app}, "name": name, "namespace": ns},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                 "spec": {"containers": [{"image": image, "name": "app", "ports": [{"containerPort": 9080}]}]}}}});
    let container_fields = json!({".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
        "f:ports": {".": {}, "k:{\"containerPort\":9080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}},
        "f:resources": {}, "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}});
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "annotations": {"deployment.kubernetes.io/revision": "1",
                            "kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n")},
            "creationTimestamp": "2026-12-01T19:00:14Z", "generation": 1, "labels": {"app": app},
            "managedFields": [
                {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "manager": "kubectl-client-side-apply",
                 "operation": "Update", "time": "2026-12-01T19:00:14Z",
                 "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                                             "f:labels": {".": {}, "f:app": {}}},
                              "f:spec": {"f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {}, "f:selector": {},
                                         "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
                                         "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:version": {}}},
                                                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": container_fields},
                                                                   "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                                                                   "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}}}},
                {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "manager": "kube-controller-manager",
                 "operation": "Update", "subresource": "status", "time": "2026-12-01T19:00:15Z",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
                              "f:status": {"f:conditions": {".": {},
                                  "k:{\"type\":\"Available\"}": {".": {}, "f:lastTransitionTime": {}, "f:lastUpdateTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}},
                                  "k:{\"type\":\"Progressing\"}": {".": {}, "f:lastTransitionTime": {}, "f:lastUpdateTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}},
                                  "f:observedGeneration": {}}}}],
            "name": name, "namespace": ns, "uid": format!("00000000-0000-4000-8000-{:012x}", fnv(&name) & 0xffff_ffff_ffff)},
        "spec": {"progressDeadlineSeconds": 600, "replicas": 0, "revisionHistoryLimit": 10,
                 "selector": {"matchLabels": labels},
                 "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
                 "template": {"metadata": {"creationTimestamp": null, "labels": labels},
                              "spec": {"containers": [{"image": image, "imagePullPolicy": "IfNotPresent", "name": "app",
                                                       "ports": [{"containerPort": 9080, "protocol": "TCP"}], "resources": {},
                                                       "terminationMessagePath": "/dev/termination-log",
                                                       "terminationMessagePolicy": "File"}],
                                       "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                                       "securityContext": {}, "terminationGracePeriodSeconds": 30}}},
        "status": status(name.len(), 1)})
}

/// A Deployment's status as the controller-manager writes it; `tick` changes
/// the times, as each pod readiness change does.
fn status(tick: usize, generation: usize) -> Value {
    let at = format!("2026-12-02T00:{:02}:{:02}Z", (tick / 60) % 60, tick % 60);
    json!({"conditions": [
        {"lastTransitionTime": "2026-12-01T19:00:15Z", "lastUpdateTime": at, "message": "Deployment has minimum availability.",
         "reason": "MinimumReplicasAvailable", "status": "True", "type": "Available"},
        {"lastTransitionTime": "2026-12-01T19:00:14Z", "lastUpdateTime": at,
         "message": "ReplicaSet has successfully progressed.", "reason": "NewReplicaSetAvailable", "status": "True", "type": "Progressing"}],
        "observedGeneration": generation})
}

/// A stable number for a name (the uids of the generated Deployments).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn destination_rule(ns: &str, app: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": app, "namespace": ns},
           "spec": {"host": app, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}})
}

fn virtual_service(ns: &str, name: &str, app: &str, subset: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"hosts": [app], "http": [{"route": [{"destination": {"host": app, "subset": subset}}]}]}})
}

/// A per-version Service routeguard generated (`app-N-v1` and so on).
fn generated(object: &Value, version: &str) -> bool {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    name.ends_with(&format!("-{version}")) && object["metadata"]["labels"].as_object().is_some_and(|l| !l.is_empty())
}

async fn drive(options: Options) -> anyhow::Result<()> {
    routeguard::server::tls::install_default_provider();
    let dir = std::env::temp_dir().join(format!("routeguard-livegen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let fake = Fake::start().await;
    fake.serve_all();
    for i in 0..options.apps {
        let (ns, app) = app(i);
        fake.put(&services(&ns), cluster_fake::service(&app, &ns, &app));
        fake.put(&deployments(&ns), deployment(&ns, &app, "v1"));
        fake.put(&rules(&ns), destination_rule(&ns, &app));
        fake.put(&virtual_services(&ns), virtual_service(&ns, &app, &app, "v1"));
    }
    println!(
        "livegen: {} apps in {NAMESPACES} namespaces, {} objects in the fake API server ({})",
        options.apps,
        options.apps * 4,
        fake.url
    );

    let ca = Authority::new("livegen CA")?;
    let serving = ca.issue_server(&["localhost".to_string()], Duration::from_secs(86_400))?;
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, &serving.cert_pem)?;
    std::fs::write(&key, &serving.key_pem)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster: {{server: '{}'}}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: nobody}}\n\
             users:\n- name: nobody\n  user: {{}}\n",
            fake.url
        ),
    )?;
    let tls = Arc::new(client_config(ca.cert_pem()));
    let (addr, admin) = (free_addr()?, free_addr()?);
    let text = |p: &Path| p.display().to_string();
    let args = [
        "--source".to_string(),
        "cluster".to_string(),
        "--addr".to_string(),
        addr.to_string(),
        "--admin-addr".to_string(),
        admin.to_string(),
        "--tls-cert".to_string(),
        text(&cert),
        "--tls-key".to_string(),
        text(&key),
        "--shutdown-delay".to_string(),
        "0s".to_string(),
        "--service-namespace".to_string(),
        "routeguard".to_string(),
        // The periodic pass over everything (5 min by default; `reconcile/one-change-full`
        // in benches/index.rs times it) must not fall into a measured window.
        "--resync-interval".to_string(),
        "1h".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let env = [("KUBECONFIG", kubeconfig.as_path())];
    let log = dir.join("routeguard.log");
    let ours = match &options.routeguard {
        Some(program) => {
            let args: Vec<&str> = std::iter::once("serve").chain(args.iter().copied()).collect();
            spawn_program(program, &args, &env, &log)?
        }
        None => spawn_with(&args, &env, &log)?,
    };
    let pid = ours.0.id();
    wait_for_ready(admin).await?;
    let ready = started.elapsed();
    let (rss_ready, _) = memory(pid);
    let apps = options.apps;
    let bootstrapped =
        fake.eventually(Duration::from_secs(300), || fake.count("services", |s| generated(s, "v1")) >= apps);
    anyhow::ensure!(bootstrapped.await, "routeguard did not generate a Service per app within 300 s");
    let bootstrap = started.elapsed();
    println!(
        "routeguard: ready in {:.2} s (RSS {:.1} MiB); {} per-version Services generated {:.2} s after start",
        ready.as_secs_f64(),
        mib(rss_ready),
        apps,
        bootstrap.as_secs_f64()
    );

    // Let the first audit and any writes settle (routeguard trims its heap
    // 15 s after the first sync), then measure it idle.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle_cpu = cpu_over(pid, Duration::from_secs(5)).await;
    let (rss, hwm) = memory(pid);
    println!(
        "routeguard steady: VmRSS {:.1} MiB, VmHWM (peak) {:.1} MiB; idle CPU {:.2} % of a core",
        mib(rss),
        mib(hwm),
        idle_cpu * 100.0
    );

    let mut sender = connect(addr, &tls).await?;
    let (ns, app0) = app(0);
    let allowed = Bytes::from(admission_review(
        1,
        "UPDATE",
        &virtual_service(&ns, &app0, &app0, "v1"),
        Some(&virtual_service(&ns, &app0, &app0, "v1")),
    ));
    let quiet_cpu_start = cpu_time(pid);
    let quiet = latencies(&mut sender, &allowed, options.churn).await?;
    let quiet_cpu = (cpu_time(pid) - quiet_cpu_start).as_secs_f64() / options.churn.as_secs_f64();
    print_latencies("admission, quiet", &quiet, quiet_cpu);

    // Status-only updates, what the controller-manager writes on every pod
    // readiness change: first alone (their own cost against the idle CPU),
    // then while admission requests run back to back.
    let reconciles = || harness::metric(admin, "routeguard_cluster_reconciles_total");
    let reconciles_before = reconciles().await;
    let alone_cpu_start = cpu_time(pid);
    let events = churn(&fake, apps, options.rate, options.churn).await?;
    let alone_cpu = (cpu_time(pid) - alone_cpu_start).as_secs_f64() / options.churn.as_secs_f64();
    // Read after the debounce window, so a pass the last updates woke is counted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let passes = reconciles().await.zip(reconciles_before).map(|(after, before)| after - before);
    println!(
        "{events} status-only Deployment updates alone in {:.0} s: routeguard CPU {:.2} % of a core, {:.2} % beyond idle \
         ({:.0} us an update); reconciles meanwhile: {}",
        options.churn.as_secs_f64(),
        alone_cpu * 100.0,
        (alone_cpu - idle_cpu) * 100.0,
        (alone_cpu - idle_cpu).max(0.0) * options.churn.as_secs_f64() * 1e6 / events.max(1) as f64,
        passes.map_or("unknown (no metric)".to_string(), |n| format!("{n}"))
    );
    let churner = {
        let fake = fake.clone();
        let (rate, duration) = (options.rate, options.churn);
        tokio::spawn(async move { churn(&fake, apps, rate, duration).await })
    };
    let churn_cpu_start = cpu_time(pid);
    let churned = latencies(&mut sender, &allowed, options.churn).await?;
    let events = churner.await??;
    let churn_cpu = (cpu_time(pid) - churn_cpu_start).as_secs_f64() / options.churn.as_secs_f64();
    print_latencies(&format!("admission, {events} status-only Deployment updates meanwhile"), &churned, churn_cpu);
    println!(
        "  the updates cost {:.2} % of a core beyond the quiet phase's (both with requests back to back)",
        (churn_cpu - quiet_cpu) * 100.0
    );

    // Relevant changes: a new version of one app each, one at a time.
    let mut waits = Vec::new();
    let cpu_before = cpu_time(pid);
    let changes = 20.min(apps);
    for i in 0..changes {
        let (ns, app) = app(i);
        let asked = Instant::now();
        fake.put(&deployments(&ns), deployment(&ns, &app, "v2"));
        let name = format!("{app}-v2");
        let made = fake.eventually(Duration::from_secs(30), || fake.get(&services(&ns), &name).is_some()).await;
        anyhow::ensure!(made, "no Service {ns}/{name} within 30 s");
        waits.push(asked.elapsed());
    }
    let spent = cpu_time(pid) - cpu_before;
    let waited: Duration = waits.iter().sum();
    waits.sort();
    println!(
        "relevant changes (a new version of one app): {changes}, {:.1} ms of routeguard CPU each \
         (idle CPU of the same time deducted); generated Service after p50 {:.1} ms, max {:.1} ms",
        (spent.as_secs_f64() - idle_cpu * waited.as_secs_f64()).max(0.0) * 1000.0 / changes as f64,
        ms(waits[waits.len() / 2]),
        ms(waits[waits.len() - 1])
    );

    // Refusals with a second look: the subset is nowhere, so the re-read finds nothing.
    let mut refusals = Vec::new();
    fake.clear_requests();
    for i in 0..REFUSALS {
        let (ns, app) = app(i % apps);
        let body = Bytes::from(admission_review(
            100 + i,
            "CREATE",
            &virtual_service(&ns, &format!("{app}-canary"), &app, "v9"),
            None,
        ));
        let begun = Instant::now();
        let allowed = send(&mut sender, "/validate", &body).await?;
        refusals.push(begun.elapsed());
        anyhow::ensure!(!allowed, "a VirtualService naming subset v9 was allowed");
    }
    print_latencies("refusals with a second look (RG103, re-read from the fake)", &refusals, f64::NAN);
    let reads = fake.requests();
    let mut paths: Vec<String> = reads.iter().map(|r| format!("{} {}?{}", r.method, r.path, r.query)).collect();
    paths.sort();
    paths.dedup();
    println!(
        "  {} requests to the fake for the {REFUSALS} refusals (those of ns-0 and outside the apps' namespaces: {:?})",
        reads.len(),
        paths.iter().filter(|p| p.contains("/ns-0/") || !p.contains("/ns-")).collect::<Vec<_>>()
    );

    // The floor under those numbers: the same four reads of each refusal,
    // from this process with kube's client, in parallel on warm connections.
    let floor = same_reads_from_here(&fake, apps).await?;
    print_latencies("  the same four reads from the harness (kube client, in parallel)", &floor, f64::NAN);

    drop(ours);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Per refusal, the time of the reads its second look makes (the app's
/// Service, its namespace's Deployments and DestinationRules, the root
/// namespace's DestinationRules), sent at once by the fake's own kube client.
async fn same_reads_from_here(fake: &Fake, apps: usize) -> anyhow::Result<Vec<Duration>> {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
    let client = fake.client();
    let resource = |group: &str, version: &str, kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    };
    let service = resource("", "v1", "Service", "services");
    let deployment = resource("apps", "v1", "Deployment", "deployments");
    let rule = resource("networking.istio.io", "v1", "DestinationRule", "destinationrules");
    let mut all = Vec::new();
    for i in 0..REFUSALS {
        let (ns, name) = app(i % apps);
        let api = |r: &ApiResource, ns: &str| Api::<DynamicObject>::namespaced_with(client.clone(), ns, r);
        let list = ListParams::default();
        let (services, deployments) = (api(&service, &ns), api(&deployment, &ns));
        let (rules, root_rules) = (api(&rule, &ns), api(&rule, "istio-system"));
        let begun = Instant::now();
        let (a, b, c, d) =
            tokio::join!(services.get(&name), deployments.list(&list), rules.list(&list), root_rules.list(&list));
        all.push(begun.elapsed());
        a?;
        b?;
        c?;
        d?;
    }
    Ok(all)
}

/// `rate` status-only updates a second for `duration`, each of one app's
/// Deployment in turn (only its status changes, as the API server's
/// resourceVersion); how many were sent.
async fn churn(fake: &Fake, apps: usize, rate: u64, duration: Duration) -> anyhow::Result<usize> {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let begun = Instant::now();
    let mut k = 0usize;
    while begun.elapsed() < duration {
        let (ns, app) = app(k % apps);
        let mut d = deployment(&ns, &app, "v1");
        d["status"] = status(k, 1);
        fake.put(&deployments(&ns), d);
        k += 1;
        tokio::time::sleep_until((begun + interval * u32::try_from(k).unwrap_or(u32::MAX)).into()).await;
    }
    Ok(k)
}

/// Requests back to back on one connection for `duration`; each one's latency.
async fn latencies(sender: &mut Sender, body: &Bytes, duration: Duration) -> anyhow::Result<Vec<Duration>> {
    let begun = Instant::now();
    let mut all = Vec::new();
    while begun.elapsed() < duration {
        let sent = Instant::now();
        anyhow::ensure!(send(sender, "/validate", body).await?, "the allowed request was refused");
        all.push(sent.elapsed());
        // Like a steady client rather than a flood: leave the cores to the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(all)
}

/// The share of one core the process used over `window`.
async fn cpu_over(pid: u32, window: Duration) -> f64 {
    let before = cpu_time(pid);
    tokio::time::sleep(window).await;
    (cpu_time(pid) - before).as_secs_f64() / window.as_secs_f64()
}

fn print_latencies(name: &str, all: &[Duration], cpu: f64) {
    let mut sorted = all.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    let cpu = if cpu.is_nan() { String::new() } else { format!("; routeguard CPU {:.1} % of a core", cpu * 100.0) };
    println!(
        "{name}: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{cpu}",
        sorted.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(sorted[sorted.len() - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
