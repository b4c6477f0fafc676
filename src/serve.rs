//! `routeguard serve` assembled from the command line: logging, the runtime,
//! the policy, the snapshot source (manifest files, or the live cluster), the
//! certificates (generated when none are given), SIGTERM; then
//! [`crate::server::serve_with`] runs until shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::admission::{Admission, SharedSnapshot};
use crate::cli::{ServeArgs, Source};
use crate::cluster;
use crate::cluster::audit::AuditSettings;
use crate::cluster::live::{Live as Cluster, LiveSettings};
use crate::cluster::selftls::{SelfTls, SelfTlsSettings};
use crate::files;
use crate::policy::Engine;
use crate::server::tls::{self, KeyPairFiles};
use crate::server::{ClusterParts, Settings, certs, logging, memory, serve_with, shutdown_signal};
use crate::supervisor::Task;

/// How often the TLS Secret is re-read (the webhooks' CA bundle is watched, not polled).
const TLS_SECRET_CHECK: Duration = Duration::from_secs(60);

/// Runs `routeguard serve` until SIGTERM or SIGINT, then drains and returns.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Held to the end of `run`: dropping it writes out the queued log lines.
    let _log = logging::init(match args.log_format {
        crate::cli::LogFormat::Text => logging::LogFormat::Text,
        crate::cli::LogFormat::Json => logging::LogFormat::Json,
    });
    tls::install_default_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("routeguard")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (settings, parts) = match args.source {
            Source::Objects => (settings(&args)?, ClusterParts::default()),
            Source::Cluster => cluster_settings(&args).await?,
        };
        serve_with(settings, parts, shutdown_signal(), |bound| {
            tracing::info!(
                "listening: admission https://{} (POST /validate, /mutate), admin http://{} (/livez, /readyz, /metrics)",
                bound.addr,
                bound.admin_addr
            );
        })
        .await?;
        Ok(())
    })
}

/// How long after the first sync the heap is first trimmed (the bootstrap's
/// writes and the first audit are over by then on a cluster of thousands of apps).
const FIRST_TRIM_AFTER: Duration = Duration::from_secs(15);
/// How often it is trimmed again (relists and audits leave garbage too).
const TRIM_EVERY: Duration = Duration::from_secs(300);

/// Live mode: gives the allocator's free memory back to the OS once the index
/// has synced and settled, then every [`TRIM_EVERY`]. The initial lists parse
/// every object of the cluster; glibc keeps those pages (a quarter of the
/// resident size at 10,000 objects) unless asked.
async fn trim_memory(cluster: Arc<Cluster>) {
    while !cluster.is_synced() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(FIRST_TRIM_AFTER).await;
    loop {
        // A few ms of walking the heap: off the async workers.
        let took = tokio::task::spawn_blocking(|| {
            let started = std::time::Instant::now();
            memory::release_free_memory();
            started.elapsed()
        })
        .await;
        if let Ok(took) = took {
            tracing::debug!(took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX), "heap trimmed");
        }
        tokio::time::sleep(TRIM_EVERY).await;
    }
}

/// Loads the policy and snapshot and finds (or generates) the certificate.
fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let policy = files::load_policy(args.policy.as_deref())?;
    let engine = Engine::new(policy);
    let snapshot = files::snapshot_from_paths(&engine, &args.objects, &args.namespace)
        .with_context(|| format!("cannot load the snapshot from {:?}", args.objects))?;
    tracing::info!(objects = snapshot.len(), paths = ?args.objects, "snapshot loaded");
    let tls = tls_files(args)?;
    let admission = Admission::new(engine, Arc::new(SharedSnapshot::new(snapshot)));
    memory::release_free_memory();
    Ok(server_settings(args, admission, tls))
}

/// `--source=cluster`: the live index (and controller) from the API server,
/// and the certificate from `--tls-secret` when given.
async fn cluster_settings(args: &ServeArgs) -> anyhow::Result<(Settings, ClusterParts)> {
    let policy = files::load_policy(args.policy.as_deref())?;
    let engine = Engine::new(policy);
    let client = cluster::connect().await?;
    let mut tasks = Vec::new();
    let (tls, certificate) = if args.tls_secret.is_empty() {
        (tls_files(args)?, None)
    } else {
        let manager = SelfTls::new(
            client.clone(),
            SelfTlsSettings {
                namespace: args.service_namespace.clone(),
                secret: args.tls_secret.clone(),
                service: args.service_name.clone(),
                mutating_webhook: args.mutating_webhook.clone(),
                validating_webhook: args.validating_webhook.clone(),
                check_every: TLS_SECRET_CHECK,
            },
        );
        let bundle = manager
            .ensure()
            .await
            .with_context(|| format!("cannot set up the TLS secret {}/{}", args.service_namespace, args.tls_secret))?;
        let (updates, certificate) = tokio::sync::watch::channel(bundle.clone());
        tasks.push(Task::new("self-managed TLS", manager.run(bundle, updates)));
        let name = |file: &str| PathBuf::from(format!("secret {}/{} {file}", args.service_namespace, args.tls_secret));
        (KeyPairFiles { cert: name("tls.crt"), key: name("tls.key") }, Some(certificate))
    };
    let mut live = LiveSettings::new(&args.leader_election_lease, &args.service_namespace);
    live.namespaces = args.watch_namespaces.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    live.generate = args.generate;
    live.controller.resync = args.resync_interval;
    live.audit = Some(AuditSettings {
        interval: args.audit_interval,
        reports: args.policy_reports,
        namespaces: live.namespaces.clone(),
        ..AuditSettings::default()
    });
    tracing::info!(
        namespaces = ?live.namespaces,
        generate = live.generate,
        resync_interval = ?args.resync_interval,
        audit_interval = ?args.audit_interval,
        policy_reports = args.policy_reports,
        identity = %live.identity,
        "live cluster mode"
    );
    let cluster = Arc::new(Cluster::start(client, Arc::new(engine.clone()), live));
    tasks.push(Task::new("memory trim", trim_memory(cluster.clone())));
    let admission = Admission::new(engine, cluster.source());
    let settings = server_settings(args, admission, tls);
    Ok((settings, ClusterParts { cluster: Some(cluster), certificate, tasks }))
}

/// The certificate files given, or generated into `--cert-dir`.
fn tls_files(args: &ServeArgs) -> anyhow::Result<KeyPairFiles> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => KeyPairFiles { cert: cert.clone(), key: key.clone() },
        (None, None) => {
            let generated = certs::generate_into(&args.cert_dir, &args.service_name, &args.service_namespace)?;
            let names = certs::serving_names(&args.service_name, &args.service_namespace).join(", ");
            println!(
                "routeguard: generated a CA and a serving certificate for {names}\nrouteguard: clients trust {}",
                generated.ca.display()
            );
            KeyPairFiles { cert: generated.cert, key: generated.key }
        }
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    Ok(tls)
}

/// The server settings the flags give, around an admission handler and its certificate files.
fn server_settings(args: &ServeArgs, admission: Admission, tls: KeyPairFiles) -> Settings {
    Settings {
        admission,
        addr: args.addr,
        admin_addr: args.admin_addr,
        tls,
        client_ca: args.client_ca.clone(),
        reload_interval: args.cert_reload_interval,
        shutdown_delay: args.shutdown_delay,
        drain_timeout: args.drain_timeout,
    }
}
