//! One node's monitor (cluster.md §5.1): its failure counter, its one operation in flight (a probe or a push), its
//! probe timer and its coalesced pending push.
//!
//! A monitor is in one of three phases ([`Phase`]): idle until `next_probe`, probing, or pushing one map version.
//! It never has two operations in flight, so pushes to one node are ordered and a slow node delays only itself.
//!
//! Counting (§5.1): a failed probe or push adds 1 to `down_count` and clears `reachable`; reaching the threshold
//! raises node down. A successful probe raises node up when `down_count ≥ threshold`, then resets the counter. The
//! map is followed: a node that is `down` in the map has `down_count ≥ threshold` (so its next good ping brings it
//! up); a node that is not down has it below (so an operator's `node state X active` on a dead node is noticed
//! again after `threshold` failures).
//!
//! "Really down" (§4.2, pushes are skipped) is `down_count ≥ threshold` and the last operation failed: Flare's
//! "failures ≥ threshold and no connection". A node set down by an admin while still answering gets its push.

use std::time::{Duration, Instant};

/// Probe interval of a suspect node (its session with the index broke): fast enough that a killed process is marked
/// down, and its partition failed over, well within a second with the default threshold of 3.
pub const SUSPECT_INTERVAL: Duration = Duration::from_millis(100);

/// What the monitor is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting; probes (or retries a deferred push) at `next_probe`.
    Idle {
        /// When the next probe is due.
        next_probe: Instant,
    },
    /// A `ping` is in flight.
    Probing,
    /// A `node sync` of this version is in flight.
    Pushing {
        /// The version being pushed.
        version: u64,
        /// The pending push it delivers (restored if it fails).
        backlog: PendingPush,
    },
}

/// The node-map versions waiting for one node, coalesced: only the newest is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingPush {
    /// When the oldest undelivered version was queued (for `behind`).
    pub since: Instant,
    /// How many versions have been queued since the last delivery (`queue` in `stats threads`).
    pub versions: u64,
    /// The last attempt failed: wait for the next probe time instead of retrying at once.
    pub deferred: bool,
    /// Send even though the node is shutting down (it was an active master, cluster.md §3 `shutdown`).
    pub force: bool,
}

/// A replication position a slave reported, with the partition and master it was replicating from, so positions
/// from different masters are never compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The reported value.
    pub value: u64,
    /// The slave's partition when it was reported.
    pub partition: u32,
    /// The partition's master then.
    pub master: String,
}

/// One node's monitor.
#[derive(Clone, Debug)]
pub struct Monitor {
    /// Thread id in `stats threads` and `kill` (shared id space with connections).
    pub id: u64,
    /// When the monitor started (`uptime` in `stats threads`).
    pub started: Instant,
    /// Flare's failure counter.
    pub down_count: u32,
    /// The last probe or push succeeded (Flare: the monitor has a connection).
    pub reachable: bool,
    /// The node sent `shutdown`: skip its pushes and ignore its pings until it registers again.
    pub shutting_down: bool,
    /// The last replication position it reported as an active slave.
    pub position: Option<Position>,
    /// The node's session connection with the index closed (\[Improve\]: Flare only pings): probe at
    /// [`SUSPECT_INTERVAL`] until a probe succeeds or the node is down.
    pub suspect: bool,
    /// What it is doing.
    pub phase: Phase,
    /// Versions waiting to be pushed.
    pub pending: Option<PendingPush>,
}

/// What a result did to the failure counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to raise.
    Quiet,
    /// `down_count` just reached the threshold: node down.
    Down,
    /// A good ping after `down_count ≥ threshold`: node up.
    Up,
}

impl Monitor {
    /// A monitor whose first probe is due at `first_probe`. `down` says whether the map has the node down.
    pub fn new(id: u64, now: Instant, first_probe: Instant, down: bool, threshold: u32) -> Self {
        Monitor {
            id,
            started: now,
            down_count: if down { threshold } else { 0 },
            reachable: !down,
            shutting_down: false,
            position: None,
            suspect: false,
            phase: Phase::Idle {
                next_probe: first_probe,
            },
            pending: None,
        }
    }

    /// §5.1 step 5: follow the map's state for this node.
    pub fn follow(&mut self, down_in_map: bool, threshold: u32) {
        if down_in_map {
            self.down_count = self.down_count.max(threshold);
        } else if self.down_count >= threshold {
            self.down_count = 0;
        }
    }

    /// Failures ≥ threshold and the last operation failed: pushes are skipped.
    pub fn really_down(&self, threshold: u32) -> bool {
        self.down_count >= threshold && !self.reachable
    }

    /// A failed probe or push.
    pub fn fail(&mut self, threshold: u32) -> Verdict {
        self.down_count = self.down_count.saturating_add(1);
        self.reachable = false;
        if self.down_count == threshold {
            self.suspect = false;
            Verdict::Down
        } else {
            Verdict::Quiet
        }
    }

    /// A successful probe. While the node is shutting down, it cannot come up (it is stopping).
    pub fn succeed(&mut self, threshold: u32) -> Verdict {
        self.reachable = true;
        self.suspect = false;
        if self.shutting_down {
            return Verdict::Quiet;
        }
        let up = self.down_count >= threshold;
        self.down_count = 0;
        if up {
            Verdict::Up
        } else {
            Verdict::Quiet
        }
    }

    /// Queues the current map version for this node (coalescing with any waiting one).
    pub fn queue_push(&mut self, now: Instant, force: bool) {
        match &mut self.pending {
            Some(p) => {
                p.versions = p.versions.saturating_add(1);
                p.deferred = false;
                p.force |= force;
            }
            None => {
                self.pending = Some(PendingPush {
                    since: now,
                    versions: 1,
                    deferred: false,
                    force,
                })
            }
        }
    }

    /// A push failed: its versions wait again (merged with any newer ones), and a lone retry waits for the next
    /// monitor turn instead of going out at once.
    pub fn requeue_failed(&mut self, backlog: PendingPush) {
        match &mut self.pending {
            Some(p) => {
                p.since = p.since.min(backlog.since);
                p.versions = p.versions.saturating_add(backlog.versions);
                p.force |= backlog.force;
            }
            None => {
                self.pending = Some(PendingPush {
                    deferred: true,
                    ..backlog
                })
            }
        }
    }

    /// The operation finished: idle until `now + interval`.
    pub fn rest(&mut self, now: Instant, interval: Duration) {
        let interval = if self.suspect {
            interval.min(SUSPECT_INTERVAL)
        } else {
            interval
        };
        self.phase = Phase::Idle {
            next_probe: now + interval,
        };
    }

    /// The node's session broke: probe now, and at [`SUSPECT_INTERVAL`] until the question is settled.
    pub fn suspect(&mut self, now: Instant) {
        self.suspect = true;
        if let Phase::Idle { next_probe } = &mut self.phase {
            *next_probe = (*next_probe).min(now);
        }
    }

    /// The probe deadline, when idle.
    pub fn next_probe(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle { next_probe } => Some(next_probe),
            _ => None,
        }
    }

    /// Whether the node should be left out of pushes now: really down, or shutting down (unless forced).
    pub fn skips_pushes(&self, threshold: u32) -> bool {
        let forced = self.pending.is_some_and(|p| p.force);
        self.really_down(threshold) || (self.shutting_down && !forced)
    }

    /// `queue` and `behind` (seconds) for `stats threads`: map versions not yet delivered (the one in flight
    /// included) and the age of the oldest.
    pub fn backlog(&self, now: Instant) -> (u64, u64) {
        let in_flight = match self.phase {
            Phase::Pushing { backlog, .. } => Some(backlog),
            _ => None,
        };
        let parts = [in_flight, self.pending];
        let queue = parts
            .iter()
            .flatten()
            .map(|p| p.versions)
            .fold(0, u64::saturating_add);
        let since = parts.iter().flatten().map(|p| p.since).min();
        let behind = since.map_or(0, |s| now.saturating_duration_since(s).as_secs());
        (queue, behind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_reached_once_and_a_good_ping_brings_the_node_up() {
        let t = Instant::now();
        let mut m = Monitor::new(1, t, t, false, 3);
        assert_eq!(m.fail(3), Verdict::Quiet);
        assert_eq!(m.fail(3), Verdict::Quiet);
        assert_eq!(m.fail(3), Verdict::Down);
        assert_eq!(
            m.fail(3),
            Verdict::Quiet,
            "only reaching the threshold raises node down"
        );
        assert!(m.really_down(3));
        assert_eq!(m.succeed(3), Verdict::Up);
        assert_eq!(m.down_count, 0);
        assert_eq!(m.succeed(3), Verdict::Quiet);
    }

    #[test]
    fn a_success_resets_the_count() {
        let t = Instant::now();
        let mut m = Monitor::new(1, t, t, false, 3);
        m.fail(3);
        m.fail(3);
        assert_eq!(m.succeed(3), Verdict::Quiet);
        assert_eq!(m.fail(3), Verdict::Quiet);
    }

    #[test]
    fn the_map_is_followed() {
        let t = Instant::now();
        let mut m = Monitor::new(1, t, t, false, 3);
        m.follow(true, 3);
        assert_eq!(m.down_count, 3);
        assert!(
            !m.really_down(3),
            "an admin-downed node that answers still gets pushes"
        );
        assert_eq!(m.succeed(3), Verdict::Up);
        m.follow(true, 3);
        m.follow(false, 3);
        assert_eq!(m.down_count, 0, "forced active: count from zero again");
    }

    #[test]
    fn a_shutting_down_node_does_not_come_up() {
        let t = Instant::now();
        let mut m = Monitor::new(1, t, t, true, 3);
        m.shutting_down = true;
        assert_eq!(m.succeed(3), Verdict::Quiet);
        assert!(m.skips_pushes(3));
        m.queue_push(t, true);
        assert!(
            !m.skips_pushes(3),
            "forced push to a shutting-down active master"
        );
    }

    #[test]
    fn pushes_coalesce_and_keep_the_oldest_time() {
        let t = Instant::now();
        let mut m = Monitor::new(1, t, t, false, 3);
        m.queue_push(t, false);
        m.queue_push(t + Duration::from_secs(5), false);
        assert_eq!(m.backlog(t + Duration::from_secs(7)), (2, 7));
    }
}
