//! When the audit runs, and whether a pass is whole or scoped to the changes.
//!
//! A pass is owed at start, after a change (scoped), every interval (whole)
//! and on gaining the lease (whole); it runs once this replica leads and the
//! index is synced. Scoped passes do not put off the interval's whole pass,
//! so a cluster that never stops changing still gets one every interval.

use std::time::Duration;

use tokio::time::Instant;

/// The kind of pass that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Every routing object judged.
    Whole,
    /// Only what the changes since the last pass can affect.
    Changes,
}

/// The audit's timetable.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    /// When the next whole pass is due.
    next: Instant,
    owed: bool,
    whole: bool,
    leader: bool,
}

impl Schedule {
    /// A whole pass owed at once, the next one an interval later.
    pub fn new(now: Instant, interval: Duration) -> Schedule {
        Schedule { interval, next: now + interval, owed: true, whole: true, leader: false }
    }

    /// Records whether this replica leads; returns the new state when it changed.
    pub fn leading(&mut self, leader: bool) -> Option<bool> {
        if leader == self.leader {
            return None;
        }
        self.leader = leader;
        if leader {
            (self.owed, self.whole) = (true, true);
        }
        Some(leader)
    }

    /// A change the rules read was published.
    pub fn changed(&mut self) {
        self.owed = true;
    }

    /// The pass to run now, if any (and it is then no longer owed).
    pub fn due(&mut self, now: Instant, synced: bool) -> Option<Pass> {
        if now >= self.next {
            (self.owed, self.whole) = (true, true);
        }
        if !(self.owed && self.leader && synced) {
            return None;
        }
        self.owed = false;
        if std::mem::take(&mut self.whole) {
            self.next = now + self.interval;
            return Some(Pass::Whole);
        }
        Some(Pass::Changes)
    }

    /// How long to sleep when no change comes: `poll` while a pass is owed
    /// or another replica leads, else until the next whole pass.
    pub fn wait(&self, now: Instant, poll: Duration) -> Duration {
        if self.owed || !self.leader { poll } else { self.next.saturating_duration_since(now) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(300);

    #[test]
    fn a_whole_pass_first_then_scoped_ones_after_changes() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, INTERVAL);
        assert_eq!(s.due(t0, true), None, "not leading yet");
        assert_eq!(s.leading(true), Some(true));
        assert_eq!(s.due(t0, false), None, "not synced yet");
        assert_eq!(s.due(t0, true), Some(Pass::Whole));
        assert_eq!(s.due(t0, true), None, "nothing owed");
        s.changed();
        assert_eq!(s.due(t0 + Duration::from_secs(3), true), Some(Pass::Changes));
        assert_eq!(s.wait(t0 + Duration::from_secs(100), Duration::from_millis(500)), Duration::from_secs(200));
    }

    #[test]
    fn changes_every_few_seconds_do_not_put_off_the_whole_pass() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, INTERVAL);
        s.leading(true);
        assert_eq!(s.due(t0, true), Some(Pass::Whole));
        let mut whole = Vec::new();
        for k in 1..=400u64 {
            s.changed();
            let now = t0 + Duration::from_secs(2 * k);
            if s.due(now, true) == Some(Pass::Whole) {
                whole.push(2 * k);
            }
        }
        assert_eq!(whole, vec![300, 600], "a whole pass every interval, changes or not");
    }

    #[test]
    fn gaining_the_lease_owes_a_whole_pass_and_losing_it_waits() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, INTERVAL);
        s.leading(true);
        assert_eq!(s.due(t0, true), Some(Pass::Whole));
        assert_eq!(s.leading(true), None, "no change");
        assert_eq!(s.leading(false), Some(false));
        s.changed();
        assert_eq!(s.due(t0 + Duration::from_secs(1), true), None, "a follower does not audit");
        assert_eq!(s.wait(t0, Duration::from_millis(500)), Duration::from_millis(500));
        s.leading(true);
        assert_eq!(s.due(t0 + Duration::from_secs(2), true), Some(Pass::Whole));
    }
}
