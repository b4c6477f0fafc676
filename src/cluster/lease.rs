//! Leader election with a `coordination.k8s.io/v1` Lease: every replica
//! serves admission; only the holder of the Lease reconciles.
//!
//! As in client-go, expiry is judged by how long this replica has seen the
//! record unchanged on its own monotonic clock (never by comparing another
//! node's `renewTime` to ours), and every write carries the resourceVersion
//! that was read, so of two replicas racing only one wins (the other gets 409).
//!
//! [`Leadership`] answers "held, and not expired by our own clock": the
//! moment a renewal was sent (a monotonic `Instant`, taken before the Lease
//! was read) plus the lease duration written into it. Every other replica
//! measures expiry from when it saw that renewal, which is later, so while
//! [`Leadership::is_held`] is true nobody else may have taken over. The
//! controller asks it right before each write, not once per pass: a pass can
//! outlive the Lease (slow API calls, a renewal that keeps failing).
//!
//! # Why not a crate
//!
//! Checked against kube 5 / k8s-openapi 0.29 (`cargo info` and the crates' manifests):
//! - `kube-leader-election` 0.44.0 (latest) depends on kube 4: it does not build with kube 5.
//! - `kube-lease-manager` 0.13.1 depends on kube 5 and k8s-openapi 0.29 and
//!   would build. But it only tells leadership changes through a `bool`
//!   channel (or `changed()`), judges expiry by comparing the Lease's
//!   `renewTime` (another node's wall clock) with this node's `SystemTime`,
//!   and keeps reporting `true` while its renewals fail (its watch loop logs
//!   the error and backs off without sending `false`). There is no way to ask
//!   "held and not expired by our monotonic clock" before a write, which the
//!   controller needs, so routeguard keeps this small module.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

use super::metrics::ClusterStatus;
use super::{ClusterError, within};

/// How long a call to the API server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Durations of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a lease not renewed stays valid (`leaseDurationSeconds`).
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// A holder that could not renew for this long stops reconciling.
    pub renew_deadline: Duration,
    /// How often a follower looks again.
    pub retry_every: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it.
    Follow { holder: String },
}

/// Decides from the Lease as read, how long this replica has seen it unchanged, and the lease duration.
pub fn decide(lease: Option<&Lease>, me: &str, unchanged_for: Duration, duration: Duration) -> Decision {
    let Some(lease) = lease else { return Decision::Create };
    let spec = lease.spec.as_ref();
    let holder = spec.and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty());
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(duration, Duration::from_secs);
    match holder {
        Some(h) if h == me => Decision::Renew,
        None => Decision::TakeOver,
        Some(_) if unchanged_for >= duration => Decision::TakeOver,
        Some(h) => Decision::Follow { holder: h.to_string() },
    }
}

/// Tracks for how long the Lease record has been seen unchanged.
#[derive(Debug, Default)]
pub struct Observer {
    last: Option<(String, Instant)>,
}

impl Observer {
    /// Records the Lease as read at `now`; returns how long it has been unchanged.
    pub fn observe(&mut self, lease: Option<&Lease>, now: Instant) -> Duration {
        let spec = lease.and_then(|l| l.spec.as_ref());
        let record = format!(
            "{:?}|{:?}|{:?}",
            spec.and_then(|s| s.holder_identity.as_ref()),
            spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0.to_string()),
            spec.and_then(|s| s.lease_transitions)
        );
        match &self.last {
            Some((seen, since)) if *seen == record => now.saturating_duration_since(*since),
            _ => {
                self.last = Some((record, now));
                Duration::ZERO
            }
        }
    }
}

/// The Lease after a decision: held by `me`, renewed now.
pub fn claimed(current: Option<&Lease>, me: &str, name: &str, namespace: &str, duration: Duration) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let mut spec = lease.spec.take().unwrap_or_default();
    let held = spec.holder_identity.as_deref() == Some(me);
    if !held {
        spec.acquire_time = Some(now.clone());
        if current.is_some() {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        } else {
            spec.lease_transitions = Some(0);
        }
    }
    spec.holder_identity = Some(me.to_string());
    spec.lease_duration_seconds = Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX));
    spec.renew_time = Some(now);
    lease.spec = Some(spec);
    lease
}

/// Whether this replica holds the Lease, judged by its own monotonic clock.
#[derive(Debug, Default)]
pub struct Leadership {
    /// Held until then (the renewal's send time plus the lease duration); `None`: not held.
    until: Mutex<Option<Instant>>,
}

impl Leadership {
    fn until(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        match self.until.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A write holding the Lease, sent at `sent` (before the Lease was read),
    /// succeeded: held until `sent + duration`.
    pub fn renewed(&self, sent: Instant, duration: Duration) {
        *self.until() = Some(sent + duration);
    }

    /// Someone else holds it, or it was given up.
    pub fn lost(&self) {
        *self.until() = None;
    }

    /// True when held and not expired at `now`.
    pub fn held_at(&self, now: Instant) -> bool {
        self.until().is_some_and(|until| now < until)
    }

    /// True when held and not expired now: ask right before a write.
    pub fn is_held(&self) -> bool {
        self.held_at(Instant::now())
    }
}

/// The duration a Lease written with `timing` says (whole seconds, as `leaseDurationSeconds` holds it).
fn written_duration(timing: Timing) -> Duration {
    Duration::from_secs(timing.duration.as_secs())
}

/// One election round: reads the Lease and claims or renews it when it may.
/// `Ok(true)`: this replica holds the Lease now.
pub async fn round(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    observer: &mut Observer,
    timing: Timing,
) -> Result<bool, ClusterError> {
    let current = within("get lease", CALL_TIMEOUT, api.get_opt(name)).await?;
    let unchanged_for = observer.observe(current.as_ref(), Instant::now());
    let namespace = api.namespace().unwrap_or_default().to_string();
    match decide(current.as_ref(), me, unchanged_for, timing.duration) {
        Decision::Follow { .. } => Ok(false),
        Decision::Create => {
            let lease = claimed(None, me, name, &namespace, timing.duration);
            match within("create lease", CALL_TIMEOUT, api.create(&PostParams::default(), &lease)).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_conflict() => Ok(false),
                Err(e) => Err(e),
            }
        }
        Decision::Renew | Decision::TakeOver => {
            // The resourceVersion read is sent back: a concurrent write makes this a 409.
            let lease = claimed(current.as_ref(), me, name, &namespace, timing.duration);
            match within("update lease", CALL_TIMEOUT, api.replace(name, &PostParams::default(), &lease)).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_conflict() => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the Lease up (on shutdown) so another replica takes over at once.
pub async fn release(api: &Api<Lease>, name: &str, me: &str) -> Result<(), ClusterError> {
    let Some(mut lease) = within("get lease", CALL_TIMEOUT, api.get_opt(name)).await? else { return Ok(()) };
    let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
    if spec.holder_identity.as_deref() != Some(me) {
        return Ok(());
    }
    *spec = LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        lease_transitions: spec.lease_transitions,
        ..LeaseSpec::default()
    };
    within("release lease", CALL_TIMEOUT, api.replace(name, &PostParams::default(), &lease)).await.map(|_| ())
}

/// Campaigns forever: holds or follows, recording leadership in `status`
/// (for the metrics and the controller's loop) and in `leadership` (checked
/// before each write).
pub async fn run(
    api: Api<Lease>,
    name: String,
    me: String,
    status: Arc<ClusterStatus>,
    leadership: Arc<Leadership>,
    timing: Timing,
) {
    let mut observer = Observer::default();
    let mut renewed = Instant::now();
    loop {
        // Taken before the read: the renewTime we write is no earlier than this.
        let sent = Instant::now();
        let held = match round(&api, &name, &me, &mut observer, timing).await {
            Ok(held) => {
                if held {
                    renewed = Instant::now();
                    leadership.renewed(sent, written_duration(timing));
                } else {
                    leadership.lost();
                }
                held
            }
            Err(e) => {
                let still = status.is_leader() && renewed.elapsed() < timing.renew_deadline;
                if e.is_forbidden() {
                    tracing::error!(lease = %name, error = %e, "leader election forbidden: RBAC must allow get, create and update of the lease");
                } else {
                    tracing::warn!(lease = %name, error = %e, "leader election round failed");
                }
                still
            }
        };
        if held != status.is_leader() {
            tracing::info!(lease = %name, identity = %me, leader = held, "leadership changed");
            status.set_leader(held);
        }
        tokio::time::sleep(if held { timing.renew_every } else { timing.retry_every }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("routeguard".into()),
                resource_version: Some("5".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(seconds),
                lease_transitions: Some(2),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn leadership_expires_by_our_own_clock() {
        let leadership = Leadership::default();
        let t0 = Instant::now();
        assert!(!leadership.held_at(t0), "not held before a renewal");
        leadership.renewed(t0, Duration::from_secs(15));
        assert!(leadership.held_at(t0 + Duration::from_secs(14)));
        assert!(!leadership.held_at(t0 + Duration::from_secs(15)), "expired: no renewal for the lease duration");
        leadership.renewed(t0 + Duration::from_secs(10), Duration::from_secs(15));
        assert!(leadership.held_at(t0 + Duration::from_secs(20)), "a renewal extends it");
        leadership.lost();
        assert!(!leadership.held_at(t0 + Duration::from_secs(11)));
        // The duration the Lease says, not more: 2.9 s is written as 2 s.
        let timing = Timing { duration: Duration::from_millis(2900), ..Timing::default() };
        assert_eq!(written_duration(timing), Duration::from_secs(2));
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "me", Duration::ZERO, d), Decision::Create);
        assert_eq!(decide(Some(&lease(Some("me"), 15)), "me", Duration::from_secs(99), d), Decision::Renew);
        assert_eq!(decide(Some(&lease(None, 15)), "me", Duration::ZERO, d), Decision::TakeOver);
        assert_eq!(decide(Some(&lease(Some(""), 15)), "me", Duration::ZERO, d), Decision::TakeOver);
        assert_eq!(
            decide(Some(&lease(Some("other"), 15)), "me", Duration::from_secs(14), d),
            Decision::Follow { holder: "other".into() }
        );
        assert_eq!(decide(Some(&lease(Some("other"), 15)), "me", Duration::from_secs(15), d), Decision::TakeOver);
        // The lease's own duration wins over ours.
        assert_eq!(decide(Some(&lease(Some("other"), 3)), "me", Duration::from_secs(4), d), Decision::TakeOver);
    }

    #[test]
    fn observer_measures_time_unchanged() {
        let mut observer = Observer::default();
        let t0 = Instant::now();
        let a = lease(Some("other"), 15);
        assert_eq!(observer.observe(Some(&a), t0), Duration::ZERO);
        assert_eq!(observer.observe(Some(&a), t0 + Duration::from_secs(7)), Duration::from_secs(7));
        let mut b = a.clone();
        if let Some(spec) = b.spec.as_mut() {
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        }
        assert_eq!(observer.observe(Some(&b), t0 + Duration::from_secs(8)), Duration::ZERO, "renewed");
    }

    #[test]
    fn claiming_keeps_the_resource_version_and_counts_transitions() {
        let taken = claimed(Some(&lease(Some("other"), 15)), "me", "routeguard", "rg", Duration::from_secs(15));
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("5"));
        let spec = taken.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(3));
        assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());

        let renewed = claimed(Some(&lease(Some("me"), 15)), "me", "routeguard", "rg", Duration::from_secs(15));
        assert_eq!(renewed.spec.expect("spec").lease_transitions, Some(2));

        let created = claimed(None, "me", "routeguard", "rg", Duration::from_secs(15));
        assert_eq!(created.metadata.namespace.as_deref(), Some("rg"));
        assert_eq!(created.spec.expect("spec").lease_transitions, Some(0));
    }
}
