//! When to try a failed write again, and when to say so in an Event. Pure:
//! the caller passes the time and the random jitter sample.
//!
//! A write the API server refuses (RBAC 403, a webhook that rejects it, a
//! server that is down) fails the same way on the next reconcile pass, and
//! passes come often (every watch event). Retrying each pass, with a Warning
//! Event each time, floods the API server and the object's Events. So each
//! key backs off on its own ([`Backoff`]: 1 s doubling to 5 min, ±20 %
//! jitter so replicas and objects do not retry in lockstep), and at most one
//! Event per key and reason is reported in a window (10 min).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay (before jitter).
    pub max: Duration,
    /// The delay is scaled by a factor in `[1 - jitter, 1 + jitter)`.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 1 s doubling to 5 min, ±20 %.
    fn default() -> Backoff {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(300), jitter: 0.2 }
    }
}

impl Backoff {
    /// The delay after `failures` failures in a row (the first is 1), with
    /// `sample` in `[0, 1)` choosing the jitter (see [`sample`]).
    pub fn delay(&self, failures: u32, sample: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (2.0 * sample.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

/// A random jitter sample in `[0, 1)`.
pub fn sample() -> f64 {
    fastrand::f64()
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    failures: u32,
    next: Instant,
}

/// Per key: consecutive failures and when the next attempt is due; per key
/// and reason: when the last Event was reported.
#[derive(Debug)]
pub struct Retries<K> {
    backoff: Backoff,
    window: Duration,
    failing: HashMap<K, Failing>,
    reported: HashMap<(K, String), Instant>,
}

impl<K: Hash + Eq + Clone> Retries<K> {
    /// Backing off with `backoff`, one Event per key and reason per `window`.
    pub fn new(backoff: Backoff, window: Duration) -> Retries<K> {
        Retries { backoff, window, failing: HashMap::new(), reported: HashMap::new() }
    }

    /// True when `key` may be tried at `now`: it has not failed, or its delay is over.
    pub fn due(&self, key: &K, now: Instant) -> bool {
        self.failing.get(key).is_none_or(|f| now >= f.next)
    }

    /// Records a failure of `key` at `now`; returns the delay until it is due again.
    pub fn failed(&mut self, key: &K, now: Instant, sample: f64) -> Duration {
        let failures = self.failing.get(key).map_or(0, |f| f.failures).saturating_add(1);
        let delay = self.backoff.delay(failures, sample);
        self.failing.insert(key.clone(), Failing { failures, next: now + delay });
        delay
    }

    /// `key` worked: it is due at once from now on.
    pub fn succeeded(&mut self, key: &K) {
        self.failing.remove(key);
    }

    /// Failures of `key` in a row.
    pub fn failures(&self, key: &K) -> u32 {
        self.failing.get(key).map_or(0, |f| f.failures)
    }

    /// True when an Event about `key` for `reason` may be reported at `now`
    /// (none was in the window before), recording it; false otherwise.
    pub fn report(&mut self, key: &K, reason: &str, now: Instant) -> bool {
        let slot = (key.clone(), reason.to_string());
        match self.reported.get(&slot) {
            Some(at) if now.saturating_duration_since(*at) < self.window => false,
            _ => {
                self.reported.insert(slot, now);
                true
            }
        }
    }

    /// The earliest moment a failing key is due again.
    pub fn next_due(&self) -> Option<Instant> {
        self.failing.values().map(|f| f.next).min()
    }

    /// Forgets the failures of keys `keep` rejects (nothing to write for them
    /// any more) and Events older than the window, so the maps stay as small
    /// as the set of failing objects.
    pub fn retain(&mut self, now: Instant, keep: impl Fn(&K) -> bool) {
        self.failing.retain(|k, _| keep(k));
        let window = self.window;
        self.reported.retain(|_, at| now.saturating_duration_since(*at) < window);
    }

    /// Forgets every failure (leadership lost: whoever leads next starts afresh).
    pub fn clear_failures(&mut self) {
        self.failing.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_from_a_second_to_five_minutes() {
        let b = Backoff::default();
        let middle = 0.5; // no jitter
        let delays: Vec<Duration> = (1..=11).map(|n| b.delay(n, middle)).collect();
        assert_eq!(delays, [S(1), S(2), S(4), S(8), S(16), S(32), S(64), S(128), S(256), S(300), S(300)]);
        assert_eq!(b.delay(0, middle), S(1));
        assert_eq!(b.delay(u32::MAX, middle), S(300));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(3200));
        let high = b.delay(3, 0.999_999);
        assert!(high > Duration::from_millis(4799) && high < Duration::from_millis(4800), "{high:?}");
        assert_eq!(b.delay(10, 0.0), S(240));
        assert_eq!(b.delay(10, 1.0), S(360));
        // Out-of-range samples are clamped, never negative or huge.
        assert_eq!(b.delay(1, -5.0), Duration::from_millis(800));
        assert_eq!(b.delay(1, 7.0), Duration::from_millis(1200));
        for _ in 0..1000 {
            let d = b.delay(4, sample());
            assert!(d >= Duration::from_millis(6400) && d < Duration::from_millis(9600), "{d:?}");
        }
    }

    #[test]
    fn a_failing_key_is_not_due_until_its_delay_is_over() {
        let mut r = Retries::new(Backoff::default(), Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(r.due(&"svc", t0));
        assert_eq!(r.next_due(), None);
        assert_eq!(r.failed(&"svc", t0, 0.5), S(1));
        assert!(!r.due(&"svc", t0 + Duration::from_millis(999)));
        assert!(r.due(&"other", t0), "keys back off on their own");
        assert!(r.due(&"svc", t0 + S(1)));
        assert_eq!(r.next_due(), Some(t0 + S(1)));
        assert_eq!(r.failed(&"svc", t0 + S(1), 0.5), S(2));
        assert_eq!(r.failed(&"svc", t0 + S(3), 0.5), S(4));
        assert_eq!(r.failures(&"svc"), 3);
        assert!(!r.due(&"svc", t0 + S(6)));
        r.succeeded(&"svc");
        assert!(r.due(&"svc", t0 + S(6)));
        assert_eq!(r.failures(&"svc"), 0);
        assert_eq!(r.failed(&"svc", t0 + S(6), 0.5), S(1), "starts over after a success");

        r.retain(t0 + S(7), |k| *k != "svc");
        assert!(r.due(&"svc", t0 + S(6)), "no longer planned: forgotten");
        r.failed(&"svc", t0, 0.5);
        r.clear_failures();
        assert_eq!(r.next_due(), None);
    }

    #[test]
    fn one_event_per_key_and_reason_per_window() {
        let mut r = Retries::new(Backoff::default(), Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(r.report(&"svc", "GenerateFailed", t0));
        assert!(!r.report(&"svc", "GenerateFailed", t0 + S(1)));
        assert!(!r.report(&"svc", "GenerateFailed", t0 + S(599)));
        assert!(r.report(&"svc", "PruneFailed", t0 + S(1)), "another reason");
        assert!(r.report(&"rule", "GenerateFailed", t0 + S(1)), "another key");
        assert!(r.report(&"svc", "GenerateFailed", t0 + S(600)), "the window is over");
        assert!(!r.report(&"svc", "GenerateFailed", t0 + S(601)));
        // A success does not reopen the window: a flapping object stays quiet.
        r.succeeded(&"svc");
        assert!(!r.report(&"svc", "GenerateFailed", t0 + S(602)));
        // Old entries are dropped by retain.
        r.retain(t0 + S(2000), |_| true);
        assert!(r.report(&"svc", "GenerateFailed", t0 + S(2000)));
    }
}
