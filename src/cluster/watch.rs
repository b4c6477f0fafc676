//! The watchers that keep the live index current.
//!
//! Per kind: find the version it is served in (a kind whose CRD is absent is
//! logged, marked absent and looked up again every `rediscover_every`), then
//! one kube-runtime watcher per scope (all namespaces, or each of
//! `--watch-namespaces`; Namespaces themselves are always watched
//! cluster-wide, for their enforcement label). Watch errors back off and the watcher resumes or
//! relists on its own; admission keeps judging against the last published
//! snapshot meanwhile. A 404 while watching (the CRD was removed) goes back
//! to discovery. One writer task applies every event and publishes.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::{mpsc, watch as channel};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::admission::SharedSnapshot;
use crate::model::Kind;
use crate::policy::Snapshot;
use crate::supervisor::Supervisor;

use super::index::{Effect, Op, PUBLISH_EVERY, Publisher, QUIET_PUBLISH_EVERY, Scope, Stream};
use super::kinds::{self, Served};
use super::metrics::ClusterStatus;
use super::watched::Watched;

/// What the watchers cover and how often absent kinds are looked up again.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// How often a kind whose CRD is absent is looked up again.
    pub rediscover_every: Duration,
}

impl Default for WatchSettings {
    fn default() -> WatchSettings {
        WatchSettings { namespaces: Vec::new(), rediscover_every: Duration::from_secs(30) }
    }
}

/// A message to the writer.
#[derive(Debug)]
enum Msg {
    Op(Op),
    /// A complete list of the scope was sent (as the op before this message).
    Synced(Scope),
}

/// The running index: the snapshot source, a counter of publishes (the
/// controller waits on it) and the tasks, stopped when this is dropped.
#[derive(Debug)]
pub struct Index {
    pub live: Arc<SharedSnapshot>,
    pub publishes: channel::Receiver<u64>,
    pub status: Arc<ClusterStatus>,
    tasks: Vec<AbortHandle>,
    /// Keeps the tasks' supervisor alive as long as the index.
    _supervisor: Supervisor,
}

impl Drop for Index {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the writer and one watching task per kind, under a supervisor of their own.
pub fn start(client: kube::Client, empty: Snapshot, settings: WatchSettings, status: Arc<ClusterStatus>) -> Index {
    start_under(client, empty, settings, status, &Supervisor::new())
}

/// [`start`] under `supervisor` (named `index writer` and `watch <Kind>`):
/// none of them ends while the index lives, so an end is reported there.
pub fn start_under(
    client: kube::Client,
    empty: Snapshot,
    settings: WatchSettings,
    status: Arc<ClusterStatus>,
    supervisor: &Supervisor,
) -> Index {
    let live = Arc::new(SharedSnapshot::new(empty));
    let (tx, rx) = mpsc::channel(4096);
    let (published, publishes) = channel::channel(0u64);
    let writer = write(rx, Publisher::new(live.clone()), status.clone(), published);
    let mut tasks = vec![supervisor.spawn("index writer", writer)];
    for kind in Kind::ALL {
        let task = watch_kind(client.clone(), kind, settings.clone(), status.clone(), tx.clone());
        tasks.push(supervisor.spawn(format!("watch {}", kind.label()), task));
    }
    Index { live, publishes, status, tasks, _supervisor: supervisor.clone() }
}

/// Applies operations and publishes at most every [`PUBLISH_EVERY`]; a
/// publish of bookkeeping alone waits up to [`QUIET_PUBLISH_EVERY`] and does
/// not wake the controller (`published` counts the publishes that changed
/// what the rules or the generator read).
async fn write(
    mut rx: mpsc::Receiver<Msg>,
    mut publisher: Publisher,
    status: Arc<ClusterStatus>,
    published: channel::Sender<u64>,
) {
    let mut synced: Vec<Scope> = Vec::new();
    let mut due: Option<Instant> = None;
    let mut last = Instant::now() - PUBLISH_EVERY;
    let mut count = 0u64;
    loop {
        let wait = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(Msg::Op(op)) => {
                    let effect = match op {
                        // A (re)list costs its whole scope: on the blocking
                        // pool, off the workers that answer admission.
                        Op::Replace { .. } => {
                            let pushed = tokio::task::spawn_blocking(move || {
                                let effect = publisher.push(op);
                                (publisher, effect)
                            });
                            match pushed.await {
                                Ok((back, effect)) => {
                                    publisher = back;
                                    effect
                                }
                                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                                Err(_) => break,
                            }
                        }
                        op => publisher.push(op),
                    };
                    let at = match effect {
                        Effect::None => None,
                        Effect::Version => Some(Instant::now() + QUIET_PUBLISH_EVERY),
                        Effect::Content => Some((last + PUBLISH_EVERY).max(Instant::now())),
                    };
                    due = match (due, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Some(Msg::Synced(scope)) if publisher.is_dirty() => {
                    synced.push(scope);
                    // A completed list is announced promptly, even if it changed nothing the rules read.
                    due = Some(due.map_or(Instant::now() + PUBLISH_EVERY, |at| at.min(Instant::now() + PUBLISH_EVERY)));
                }
                // Its list is already published.
                Some(Msg::Synced(scope)) => status.synced(&scope),
            },
            () = wait => {
                let effect = publisher.publish();
                due = None;
                if effect != Effect::None {
                    last = Instant::now();
                    for scope in synced.drain(..) {
                        status.synced(&scope);
                    }
                }
                if effect == Effect::Content {
                    count += 1;
                    let _ = published.send(count);
                }
            }
        }
    }
}

/// Why a kind's watchers stopped.
enum Stopped {
    /// The resource is gone (404): look the kind up again.
    Gone,
    /// The writer is gone: the index is shutting down.
    Closed,
}

/// Discovers a kind and watches it, forever.
async fn watch_kind(
    client: kube::Client,
    kind: Kind,
    settings: WatchSettings,
    status: Arc<ClusterStatus>,
    tx: mpsc::Sender<Msg>,
) {
    // A cluster-scoped kind (Namespace) is one scope whatever is watched:
    // admission needs the labels of every namespace it may judge in.
    let scopes: Vec<Scope> = if settings.namespaces.is_empty() || !kind.is_namespaced() {
        vec![Scope { kind, namespace: None }]
    } else {
        settings.namespaces.iter().map(|ns| Scope { kind, namespace: Some(ns.clone()) }).collect()
    };
    let mut failures = 0u32;
    let mut reported_absent = false;
    let mut was_watching = false;
    loop {
        let served = match kinds::discover(&client, kind).await {
            Ok(Some(served)) => served,
            Ok(None) => {
                if !reported_absent {
                    tracing::info!(%kind, group = kind.group(), "kind not served (CRD not installed): skipped, looked up again every {:?}", settings.rediscover_every);
                    reported_absent = true;
                }
                // Whatever was indexed before the CRD went away is gone too.
                if std::mem::take(&mut was_watching) {
                    for scope in &scopes {
                        if tx.send(Msg::Op(Op::Replace { scope: scope.clone(), entries: Vec::new() })).await.is_err() {
                            return;
                        }
                    }
                }
                status.absent(kind);
                tokio::time::sleep(settings.rediscover_every).await;
                continue;
            }
            Err(e) => {
                failures += 1;
                let delay = backoff(failures);
                tracing::warn!(%kind, error = %e, retry_in = ?delay, "cannot look up the kind");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        failures = 0;
        reported_absent = false;
        was_watching = true;
        tracing::info!(%kind, version = served.api_version(), scopes = scopes.len(), "watching");
        status.watching(kind, served.api_version(), &scopes);
        let mut watchers: futures::stream::FuturesUnordered<_> = scopes
            .iter()
            .map(|scope| {
                watch_scope(client.clone(), Stream::new(scope.clone(), served.clone()), status.clone(), tx.clone())
            })
            .collect();
        match watchers.next().await {
            Some(Stopped::Gone) => {
                drop(watchers);
                tracing::warn!(%kind, "the resource is no longer served; looking it up again");
            }
            Some(Stopped::Closed) | None => return,
        }
    }
}

/// Watches one scope until the resource disappears or the writer is gone.
async fn watch_scope(
    client: kube::Client,
    mut stream: Stream,
    status: Arc<ClusterStatus>,
    tx: mpsc::Sender<Msg>,
) -> Stopped {
    let served: Served = stream.served.clone();
    let api: Api<Watched> = match &stream.scope.namespace {
        Some(ns) => Api::namespaced_with(client, ns, &served.resource),
        None => Api::all_with(client, &served.resource),
    };
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events.into_stream());
    let mut not_found = 0u32;
    while let Some(item) = events.next().await {
        match item {
            Ok(event) => {
                not_found = 0;
                let step = stream.on_event(event);
                if let Some(op) = step.op
                    && tx.send(Msg::Op(op)).await.is_err()
                {
                    return Stopped::Closed;
                }
                if step.synced && tx.send(Msg::Synced(stream.scope.clone())).await.is_err() {
                    return Stopped::Closed;
                }
            }
            Err(e) => {
                status.watch_error(stream.scope.kind);
                let code = error_code(&e);
                match code {
                    Some(403) => {
                        tracing::error!(scope = %stream.scope, error = %e, "watch forbidden: RBAC must allow list and watch; retrying")
                    }
                    _ => tracing::warn!(scope = %stream.scope, error = %e, "watch failed; backing off and resyncing"),
                }
                if code == Some(404) {
                    not_found += 1;
                    if not_found >= 2 {
                        return Stopped::Gone;
                    }
                }
            }
        }
    }
    Stopped::Closed
}

/// The HTTP status of a watcher error, if the API server sent one.
fn error_code(error: &watcher::Error) -> Option<u16> {
    match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            match e {
                kube::Error::Api(status) => Some(status.code),
                _ => None,
            }
        }
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::NoResourceVersion => None,
    }
}

/// 1 s, 2 s, 4 s, ... up to 60 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(7), Duration::from_secs(60));
        assert_eq!(backoff(40), Duration::from_secs(60));
    }
}
