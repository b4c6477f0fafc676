//! The HTTPS admission server (`routeguard serve`).
//!
//! [`run`] is the edge: logging, the runtime, the policy and snapshot, the
//! certificates (generated when none are given), SIGTERM. [`serve`] is the
//! server itself, with the shutdown signal injected so tests can drive it:
//! the admission router over TLS ([`app::admission_router`]), the admin
//! router over plain HTTP ([`app::admin_router`]) and the certificate poller
//! ([`reload`]). With `--source=cluster`, [`serve_with`] also gets the live
//! [`crate::cluster`] index (readiness, re-reads, metrics) and, with
//! `--tls-secret`, the certificate kept in a Secret.
//!
//! Every background task runs under one [`Supervisor`](crate::supervisor::Supervisor): when one ends or
//! panics, `/readyz` answers 503, the server drains as on SIGTERM and
//! [`serve_with`] returns [`ServeError::TaskDied`], so the process exits
//! non-zero and Kubernetes restarts it.

pub mod accept;
pub mod app;
pub mod certs;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod reload;
pub mod tls;

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use crate::admission::{Admission, SharedSnapshot};
use crate::check;
use crate::cli::{ServeArgs, Source};
use crate::cluster;
use crate::cluster::ca::Bundle;
use crate::cluster::live::{Live as Cluster, LiveSettings};
use crate::cluster::selftls::{SelfTls, SelfTlsSettings};
use crate::policy::Engine;
use crate::supervisor::{Reason, Task};

use self::accept::TlsOnly;
use self::app::AppState;
use self::metrics::Metrics;
use self::tls::{KeyPairFiles, Reloadable, TlsError};

/// Everything [`serve`] needs, resolved from the command line.
#[derive(Debug)]
pub struct Settings {
    pub admission: Admission,
    /// The HTTPS admission address (port 0 picks one).
    pub addr: SocketAddr,
    /// The plain-HTTP admin address.
    pub admin_addr: SocketAddr,
    pub tls: KeyPairFiles,
    /// CA bundle that client certificates must chain to; none means no client certificates.
    pub client_ca: Option<PathBuf>,
    pub reload_interval: Duration,
    /// How long to keep serving after the shutdown signal, `/readyz` answering 503.
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take once draining starts.
    pub drain_timeout: Duration,
}

impl Settings {
    /// The server settings the flags give, around an admission handler and its certificate files.
    fn from_args(args: &ServeArgs, admission: Admission, tls: KeyPairFiles) -> Settings {
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
}

/// Live cluster mode's part in [`serve_with`]; the default is none (files only).
#[derive(Debug, Default)]
pub struct ClusterParts {
    /// The live index and controller.
    pub cluster: Option<Arc<Cluster>>,
    /// With `--tls-secret`: the certificate to serve, updated on renewal
    /// (instead of reading and polling `Settings::tls`).
    pub certificate: Option<tokio::sync::watch::Receiver<Bundle>>,
    /// More background tasks to run under the server's supervisor (the
    /// self-managed TLS renewal; tests inject one that dies). Like every
    /// supervised task, none is expected to end while the server runs.
    pub tasks: Vec<Task>,
}

/// How often the TLS Secret is re-read (the webhooks' CA bundle is watched, not polled).
const TLS_SECRET_CHECK: Duration = Duration::from_secs(60);

/// The addresses the server listens on (useful when the ports were 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

/// Why the server could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTPS server stopped: {0}")]
    Stopped(String),
    /// A background task ended or panicked; the server drained and stopped.
    #[error("background task {task:?} died ({reason}); exiting so that Kubernetes restarts the replica")]
    TaskDied { task: String, reason: Reason },
}

/// Runs `routeguard serve` until SIGTERM or SIGINT, then drains and returns.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    logging::init(args.log_format);
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

/// Loads the policy and snapshot and finds (or generates) the certificate.
fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let policy = check::load_policy(args.policy.as_deref())?;
    let engine = Engine::new(policy);
    let snapshot = check::snapshot_from_paths(&engine, &args.objects, &args.namespace)
        .with_context(|| format!("cannot load the snapshot from {:?}", args.objects))?;
    tracing::info!(objects = snapshot.len(), paths = ?args.objects, "snapshot loaded");
    let tls = tls_files(args)?;
    let admission = Admission::new(engine, Arc::new(SharedSnapshot::new(snapshot)));
    memory::release_free_memory();
    Ok(Settings::from_args(args, admission, tls))
}

/// `--source=cluster`: the live index (and controller) from the API server,
/// and the certificate from `--tls-secret` when given.
async fn cluster_settings(args: &ServeArgs) -> anyhow::Result<(Settings, ClusterParts)> {
    let policy = check::load_policy(args.policy.as_deref())?;
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
    tracing::info!(namespaces = ?live.namespaces, generate = live.generate, identity = %live.identity, "live cluster mode");
    let cluster = Arc::new(Cluster::start(client, Arc::new(engine.clone()), live));
    let admission = Admission::new(engine, cluster.source());
    let settings = Settings::from_args(args, admission, tls);
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

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Serves until `shutdown` resolves; then `/readyz` answers 503 at once, the
/// server keeps serving for the shutdown delay, drains in-flight requests and
/// returns. `on_bound` learns the addresses once both ports listen.
pub async fn serve(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
    on_bound: impl FnOnce(Bound) + Send,
) -> Result<(), ServeError> {
    serve_with(settings, ClusterParts::default(), shutdown, on_bound).await
}

/// [`serve`] with live cluster mode's parts: `/readyz` waits for the index's
/// first sync, refusals for missing objects are re-read, the certificate may
/// come from a Secret, and the Lease is released when shutdown starts.
///
/// The certificate reload, `parts.tasks` and live mode's tasks run under one
/// [`Supervisor`](crate::supervisor::Supervisor) (live mode's own, else a new one). The first that dies is
/// logged at error level, `/readyz` turns 503, the server drains as for
/// `shutdown` and returns [`ServeError::TaskDied`].
pub async fn serve_with(
    settings: Settings,
    parts: ClusterParts,
    shutdown: impl Future<Output = ()> + Send,
    on_bound: impl FnOnce(Bound) + Send,
) -> Result<(), ServeError> {
    tls::install_default_provider();
    let metrics = Arc::new(Metrics::default());
    let loaded = match &parts.certificate {
        Some(certificate) => {
            let bundle = certificate.borrow().clone();
            tls::load_pem(&settings.tls, bundle.cert.into_bytes(), bundle.key.into_bytes())?
        }
        None => tls::load_files(&settings.tls)?,
    };
    metrics.set_cert_not_after(loaded.not_after);
    let resolver = Arc::new(Reloadable::new(loaded.key.clone()));
    let config = tls::server_config(resolver.clone(), settings.client_ca.as_deref())?;
    let state = AppState {
        admission: settings.admission,
        metrics: metrics.clone(),
        readiness: Arc::default(),
        cluster: parts.cluster.clone(),
    };

    let bind_error = |addr| move |source| ServeError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(settings.addr).map_err(bind_error(settings.addr))?;
    listener.set_nonblocking(true).map_err(bind_error(settings.addr))?;
    let admin_listener =
        tokio::net::TcpListener::bind(settings.admin_addr).await.map_err(bind_error(settings.admin_addr))?;
    let bound = Bound {
        addr: listener.local_addr().map_err(bind_error(settings.addr))?,
        admin_addr: admin_listener.local_addr().map_err(bind_error(settings.admin_addr))?,
    };

    let handle = axum_server::Handle::new();
    let acceptor =
        RustlsAcceptor::new(RustlsConfig::from_config(Arc::new(config))).acceptor(TlsOnly::new(metrics.clone()));
    let https = axum_server::from_tcp(listener)
        .map_err(bind_error(bound.addr))?
        .acceptor(acceptor)
        .handle(handle.clone())
        .serve(app::admission_router(state.clone()).into_make_service());
    let mut https = tokio::spawn(https);
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = axum::serve(admin_listener, app::admin_router(state.clone())).with_graceful_shutdown(async {
        let _ = admin_stopped.await;
    });
    let admin = tokio::spawn(admin.into_future());
    let supervisor = parts.cluster.as_ref().map(|c| c.supervisor().clone()).unwrap_or_default();
    match parts.certificate {
        Some(certificate) => supervisor
            .spawn("certificate reload", reload::follow(certificate, settings.tls.clone(), resolver, metrics.clone())),
        None => supervisor.spawn(
            "certificate reload",
            reload::poll(settings.tls.clone(), resolver, loaded, settings.reload_interval, metrics.clone()),
        ),
    };
    for task in parts.tasks {
        supervisor.spawn_task(task);
    }
    on_bound(bound);

    let died = tokio::select! {
        () = shutdown => None,
        death = supervisor.died() => Some(death),
        stopped = &mut https => {
            supervisor.stop();
            let _ = stop_admin.send(());
            let why = match stopped {
                Ok(Ok(())) => "it returned".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(ServeError::Stopped(why));
        }
    };
    // A dead task leaves a half-alive replica (a frozen index, a certificate
    // never renewed): stop taking traffic now, drain what is in flight as on
    // SIGTERM, and exit non-zero so Kubernetes restarts it.
    if let Some(death) = &died {
        tracing::error!(
            task = %death.task,
            reason = %death.reason,
            "background task died: /readyz answers 503; draining, then exiting non-zero"
        );
    }
    state.readiness.drain();
    tracing::info!(
        delay_ms = settings.shutdown_delay.as_millis() as u64,
        "shutting down: /readyz answers 503; still serving until the delay is over"
    );
    // Another replica takes the Lease over while this one still answers.
    let release = async {
        if let Some(cluster) = &parts.cluster {
            cluster.shutdown().await;
        }
    };
    tokio::join!(tokio::time::sleep(settings.shutdown_delay), release);
    tracing::info!(
        connections = handle.connection_count(),
        timeout_ms = settings.drain_timeout.as_millis() as u64,
        "draining in-flight requests"
    );
    handle.graceful_shutdown(Some(settings.drain_timeout));
    let served = https.await;
    supervisor.stop();
    let _ = stop_admin.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), admin).await;
    match served {
        Ok(Ok(())) => match died {
            Some(death) => Err(ServeError::TaskDied { task: death.task, reason: death.reason }),
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        },
        Ok(Err(e)) => Err(ServeError::Stopped(e.to_string())),
        Err(e) => Err(ServeError::Stopped(e.to_string())),
    }
}
