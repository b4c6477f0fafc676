//! Nothing dies silently: a background task that panics or returns turns
//! `/readyz` 503 and makes `serve_with` return `ServeError::TaskDied`
//! (so the binary exits non-zero), with the task's name and the reason.

#[path = "server_support/common.rs"]
mod common;

use std::time::Duration;

use common::*;
use routeguard::cluster::ca;
use routeguard::server::{Bound, ClusterParts, ServeError, Settings, serve_with};
use routeguard::supervisor::{Reason, Task};

type Served = tokio::task::JoinHandle<Result<(), ServeError>>;

async fn readyz(bound: &Bound) -> u16 {
    routeguard::server::tls::install_default_provider();
    reqwest::get(format!("http://{}/readyz", bound.admin_addr)).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Serves with `parts` and no shutdown signal: only a death stops it.
async fn serve(settings: Settings, parts: ClusterParts) -> (Bound, Served) {
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve_with(settings, parts, std::future::pending(), move |bound| {
        let _ = bound_tx.send(bound);
    }));
    (bound_rx.await.expect("bound"), task)
}

/// A server whose one injected task runs `death` once `trigger` fires.
async fn dies_by(
    death: impl Future<Output = ()> + Send + 'static,
) -> (Bound, Served, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki("test CA");
    let mut settings = settings(write_pair(dir.path(), &pki.serving));
    // Long enough to see /readyz 503 while the server drains.
    settings.shutdown_delay = Duration::from_millis(1500);
    let (trigger, triggered) = tokio::sync::oneshot::channel::<()>();
    let task = Task::new("test task", async move {
        let _ = triggered.await;
        death.await;
    });
    let (bound, served) = serve(settings, ClusterParts { tasks: vec![task], ..ClusterParts::default() }).await;
    (bound, served, trigger)
}

/// `/readyz` is 200 before the death and 503 after it, while the server still answers.
async fn readyz_fails_after(bound: &Bound, trigger: tokio::sync::oneshot::Sender<()>) {
    assert_eq!(readyz(bound).await, 200, "ready while every task runs");
    let _ = trigger.send(());
    let started = tokio::time::Instant::now();
    loop {
        match readyz(bound).await {
            503 => break,
            200 => {}
            other => panic!("/readyz answered {other} instead of 503"),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "/readyz still 200 after the task died");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Panics (a function returning `()`, so the task's future has a type).
fn boom(why: &str) {
    panic!("{why}");
}

async fn result(served: Served) -> Result<(), ServeError> {
    tokio::time::timeout(Duration::from_secs(10), served).await.expect("serve_with returns").expect("join")
}

#[tokio::test]
async fn a_task_that_panics_fails_readyz_and_stops_the_server_with_an_error() {
    let (bound, served, trigger) = dies_by(async { boom("the index writer's channel is gone") }).await;
    readyz_fails_after(&bound, trigger).await;
    match result(served).await {
        Err(ServeError::TaskDied { task, reason }) => {
            assert_eq!(task, "test task");
            assert_eq!(reason, Reason::Panicked("the index writer's channel is gone".into()));
        }
        other => panic!("expected TaskDied, got {other:?}"),
    }
    assert!(tokio::net::TcpStream::connect(bound.addr).await.is_err(), "no longer listening");
}

#[tokio::test]
async fn a_task_that_returns_fails_readyz_and_stops_the_server_with_an_error() {
    let (bound, served, trigger) = dies_by(async {}).await;
    readyz_fails_after(&bound, trigger).await;
    let error = result(served).await.expect_err("a death is an error");
    assert!(
        matches!(&error, ServeError::TaskDied { task, reason: Reason::Returned } if task == "test task"),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"test task\" died (it returned)"), "{error}");
}

#[tokio::test]
async fn the_certificate_reload_is_supervised_too() {
    // --tls-secret mode: the reload follows the renewal task's channel; when
    // the renewal side is gone the reload ends, and that is a death.
    let names = routeguard::server::certs::serving_names("routeguard", "routeguard");
    let bundle = ca::issue_all(&names, time::OffsetDateTime::now_utc(), None).expect("bundle");
    let (updates, certificate) = tokio::sync::watch::channel(bundle);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings(write_pair(dir.path(), &pki("unused").serving));
    settings.shutdown_delay = Duration::from_millis(300);
    let parts = ClusterParts { certificate: Some(certificate), ..ClusterParts::default() };
    let (bound, served) = serve(settings, parts).await;
    assert_eq!(readyz(&bound).await, 200);
    drop(updates);
    let error = result(served).await.expect_err("a death is an error");
    assert!(
        matches!(&error, ServeError::TaskDied { task, reason: Reason::Returned } if task == "certificate reload"),
        "{error:?}"
    );
}
