//! The admission side of live mode: the snapshot source admission judges
//! against, and its [`SecondLook`]: a refusal for a missing subset, host or
//! backend is judged again after a re-read (see [`super::reread`]).
//!
//! The second look is bounded: at most one re-read per object per
//! [`REREAD_EVERY`] (a CI job re-applying a broken route in a loop gets the
//! first refusal again, not a stream of API reads), and the judging itself
//! (what was read laid over the snapshot, the rules again, the generator for
//! the Services involved only) runs on the blocking pool, off the async
//! workers that serve admission.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::admission::decode::Request;
use crate::admission::{SecondLook, SharedSnapshot, SnapshotSource};
use crate::model::ObjectKey;
use crate::policy::{Code, Engine, Finding, Snapshot};

use super::reread::{self, Rereader};

/// The shortest time between two re-reads for the same object.
pub const REREAD_EVERY: Duration = Duration::from_secs(1);

/// Objects kept in the rate limiter before old entries are dropped.
const LIMITER_CAPACITY: usize = 4096;

/// The live index as admission sees it, with the re-read before refusing.
#[derive(Debug)]
pub struct LiveSource {
    snapshot: Arc<SharedSnapshot>,
    look: Arc<Reread>,
}

impl LiveSource {
    /// Admission's view of `snapshot`, re-reading with `rereader`; with
    /// `generating`, subsets the controller is about to create count as present.
    pub fn new(snapshot: Arc<SharedSnapshot>, rereader: Rereader, generating: bool) -> LiveSource {
        let look = Arc::new(Reread { rereader, generating, limiter: Limiter::new(REREAD_EVERY) });
        LiveSource { snapshot, look }
    }
}

impl SnapshotSource for LiveSource {
    fn current(&self) -> Arc<Snapshot> {
        self.snapshot.current()
    }

    fn second_look(&self) -> Option<&dyn SecondLook> {
        Some(self.look.as_ref())
    }
}

/// The re-read before refusing, rate-limited per object.
#[derive(Debug)]
pub struct Reread {
    rereader: Rereader,
    generating: bool,
    limiter: Limiter,
}

/// At most one pass per object per interval.
#[derive(Debug)]
struct Limiter {
    /// When each object last passed.
    last: Mutex<HashMap<ObjectKey, Instant>>,
    every: Duration,
}

impl Limiter {
    fn new(every: Duration) -> Limiter {
        Limiter { last: Mutex::default(), every }
    }

    /// True (and noted) when `key` did not pass within the last `every`.
    fn admit(&self, key: &ObjectKey, now: Instant) -> bool {
        let mut last = match self.last.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.get(key).is_some_and(|at| now.duration_since(*at) < self.every) {
            return false;
        }
        if last.len() >= LIMITER_CAPACITY {
            last.retain(|_, at| now.duration_since(*at) < self.every);
        }
        last.insert(key.clone(), now);
        true
    }
}

impl SecondLook for Reread {
    fn wanted(&self, findings: &[Finding]) -> bool {
        reread::worth_rereading(findings)
    }

    fn look_again(
        &self,
        engine: Arc<Engine>,
        snapshot: Arc<Snapshot>,
        request: Arc<Request>,
        findings: Vec<Finding>,
    ) -> BoxFuture<'static, Option<Vec<Finding>>> {
        let Some(object) = request.change().and_then(|c| c.object).cloned() else {
            return futures::future::ready(None).boxed();
        };
        let reads = reread::plan(&object, &findings, &snapshot);
        if reads.is_empty() || !self.limiter.admit(&object.key, Instant::now()) {
            return futures::future::ready(None).boxed();
        }
        let rereader = self.rereader.clone();
        let generating = self.generating;
        async move {
            let begun = Instant::now();
            let (found, _) = rereader.fetch(&reads, &snapshot).await;
            let read = begun.elapsed();
            let judged = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let fresh = reread::with_found(&snapshot, found);
                let laid = started.elapsed();
                let change = request.change()?;
                let mut again = engine.validate(&fresh, &change);
                if generating && again.iter().any(|f| f.code == Code::RG103 && f.is_error()) {
                    let desired = engine.generate_for(&fresh, reread::subset_sources(&again, &object, &fresh));
                    again = reread::pending_subsets(again, &object, &fresh, &desired);
                }
                // Where a slow refusal's time went: the API server, a wait for
                // a blocking thread, the overlay, the rules again.
                tracing::debug!(
                    object = %object.key,
                    reads = reads.len(),
                    read_us = read.as_micros() as u64,
                    queued_us = started.duration_since(begun).saturating_sub(read).as_micros() as u64,
                    laid_us = laid.as_micros() as u64,
                    judged_us = (started.elapsed() - laid).as_micros() as u64,
                    "second look"
                );
                Some(again)
            });
            judged.await.ok().flatten()
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    #[test]
    fn an_object_is_re_read_at_most_once_a_second() {
        let key = |name: &str| ObjectKey { kind: Kind::VirtualService, namespace: "shop".into(), name: name.into() };
        let limiter = Limiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(limiter.admit(&key("a"), t0));
        assert!(!limiter.admit(&key("a"), t0 + Duration::from_millis(500)));
        assert!(limiter.admit(&key("b"), t0 + Duration::from_millis(500)));
        assert!(limiter.admit(&key("a"), t0 + Duration::from_millis(1001)));
    }

    #[test]
    fn a_full_limiter_forgets_what_is_past_the_interval() {
        let limiter = Limiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..LIMITER_CAPACITY {
            let key = ObjectKey { kind: Kind::VirtualService, namespace: "shop".into(), name: format!("r{i}") };
            assert!(limiter.admit(&key, t0));
        }
        let late = ObjectKey { kind: Kind::VirtualService, namespace: "shop".into(), name: "late".into() };
        assert!(limiter.admit(&late, t0 + Duration::from_secs(2)));
        assert_eq!(limiter.last.lock().expect("lock").len(), 1);
    }
}
