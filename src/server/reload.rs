//! Certificate reload by polling file contents.
//!
//! A Kubernetes Secret volume updates by swapping its `..data` symlink, so a
//! watch on one file misses it; reading the contents every interval sees
//! every kind of update. A half-written pair (a new certificate with the old
//! key) fails to load and is retried at the next tick; the old certificate
//! stays in service meanwhile.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::Metrics;
use super::tls::{self, KeyPairFiles, Loaded, Reloadable};
use crate::cluster::ca::Bundle;

/// Polls `files` every `interval` and swaps the certificate when their contents change.
pub async fn poll(
    files: KeyPairFiles,
    resolver: Arc<Reloadable>,
    loaded: Loaded,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let mut seen = (loaded.cert_pem, loaded.key_pem);
    let mut failed: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (cert, key) = match (tokio::fs::read(&files.cert).await, tokio::fs::read(&files.key).await) {
            (Ok(cert), Ok(key)) => (cert, key),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the serving certificate or key; keeping the current one");
                continue;
            }
        };
        if (&cert, &key) == (&seen.0, &seen.1) || failed.as_ref().is_some_and(|f| (&cert, &key) == (&f.0, &f.1)) {
            continue;
        }
        match tls::load_pem(&files, cert.clone(), key.clone()) {
            Ok(new) => {
                resolver.store(new.key.clone());
                metrics.cert_reloaded();
                metrics.set_cert_not_after(new.not_after);
                tracing::info!(cert = %files.cert.display(), not_after = new.not_after, "serving certificate reloaded");
                seen = (cert, key);
                failed = None;
            }
            Err(e) => {
                metrics.cert_reload_failed();
                tracing::warn!(error = %e, "changed certificate does not load; keeping the current one");
                failed = Some((cert, key));
            }
        }
    }
}

/// Serves each certificate `updates` brings (the `--tls-secret` mode, where
/// the Secret is read from the API server rather than from files). `files`
/// only names the pair in errors.
pub async fn follow(
    mut updates: tokio::sync::watch::Receiver<Bundle>,
    files: KeyPairFiles,
    resolver: Arc<Reloadable>,
    metrics: Arc<Metrics>,
) {
    while updates.changed().await.is_ok() {
        let bundle = updates.borrow_and_update().clone();
        match tls::load_pem(&files, bundle.cert.into_bytes(), bundle.key.into_bytes()) {
            Ok(new) => {
                resolver.store(new.key.clone());
                metrics.cert_reloaded();
                metrics.set_cert_not_after(new.not_after);
                tracing::info!(not_after = new.not_after, "serving certificate reloaded from the TLS secret");
            }
            Err(e) => {
                metrics.cert_reload_failed();
                tracing::warn!(error = %e, "the TLS secret's certificate does not load; keeping the current one");
            }
        }
    }
}
