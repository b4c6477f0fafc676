//! The HTTPS admission server (`routeguard serve`).
//!
//! [`crate::serve`] is the edge that assembles it from the command line.
//! [`serve`] is the server itself, with the shutdown signal injected so tests can drive it:
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
pub(crate) mod reload;
pub mod tls;

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use crate::admission::Admission;
use crate::cluster::ca::Bundle;
use crate::cluster::live::Live as Cluster;
use crate::supervisor::{Reason, Task};

use self::accept::TlsOnly;
use self::app::AppState;
use self::metrics::Metrics;
use self::tls::{KeyPairFiles, Reloadable, TlsError};

/// Everything [`serve`] needs.
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
