//! The node's session with the index server, and the lease it holds through it.
//!
//! After registering, a node keeps one connection open to the index (`node session <name> <port>`) and renews its
//! lease on it once a second (`node lease <name> <port> <version>`, the node-map version it holds). The index
//! answers a killed process's closed session at once (it probes the node right away), and the lease is what makes
//! a master safe to fail over when the index cannot tell a dead master from one cut off from it.
//!
//! **The lease.** A renewal sent at `t` (this node's clock) and answered `OK` gives the lease until `t + lease`.
//! While a node is master of a partition it acknowledges a client's write only when its lease is valid at that
//! moment (see [`super::Node::may_acknowledge`]), and an active master or slave answers a read from its store only
//! then ([`super::Published::lease_refusal`]). The lease ends:
//! - at once when this node closes the session (a stuck renewal, a shutdown): it stops acknowledging before the
//!   close goes out, so an index that sees the node close it may fail it over at once (as it does a killed
//!   process, whose kernel closes its sockets). A session the *index* closed or that broke ends no lease early:
//!   the index ends a lease early only for a close by the node, and an index that restarts waits a whole lease
//!   before failing over anyone, so the lease runs to its end (writes go on across a short index restart);
//! - at `t + lease` when renewals stop being answered (a cut between this node and the index; the index then
//!   waits at least as long, allowing for clock rate drift, before it promotes another node: see
//!   `crate::index`'s lease gate);
//! - when the index refuses renewals (it has taken the master role away in a map this node has not received).
//!
//! Assumptions, written down: clock rates differ by at most `LEASE_DRIFT` (1%) between nodes and the index; a
//! close of the session (FIN or RST) seen by the index comes from this node's host (no middlebox resets). An index
//! that does not know `node lease` (answers `ERROR`) grants no leases; the node then acknowledges as Flare's nodes
//! do, without one (logged once).

use std::time::{Duration, Instant};

/// How often the lease is renewed.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(1);

/// The clock rate drift the lease allows for, between any node and the index (1%).
pub const LEASE_DRIFT: f64 = 0.01;

/// How long the index waits after the last renewal it granted before a master's lease has certainly ended:
/// `lease` stretched by the worst clock rate ratio, plus a margin for the time between a node's check and its reply
/// reaching the wire.
pub fn index_grace(lease: Duration) -> Duration {
    lease.mul_f64((1.0 + LEASE_DRIFT) / (1.0 - LEASE_DRIFT)) + Duration::from_millis(100)
}

/// Where the session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No session; the next attempt is at `retry_at`.
    Closed {
        /// When to try again.
        retry_at: Instant,
    },
    /// `node session` was sent at `since`; waiting for the answer.
    Opening {
        /// When it was sent.
        since: Instant,
    },
    /// Open; a renewal is in flight since `renew_sent`, or the next one is due at `next_renew`.
    Open {
        /// When the renewal in flight was sent.
        renew_sent: Option<Instant>,
        /// When the next renewal is due.
        next_renew: Instant,
    },
}

/// What the index answered to a renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// `OK`: the lease runs until the renewal's send time + lease.
    Granted,
    /// An error line: no lease now (demoted in a map this node has not received, or not a node the index knows).
    Refused,
    /// `ERROR`: the index does not know `node lease` (a Flare index).
    Unsupported,
}

/// The session and the lease.
#[derive(Clone, Debug)]
pub struct Session {
    /// How long a granted renewal lasts; zero: leases are off (Flare's behaviour).
    lease: Duration,
    phase: Phase,
    lease_until: Option<Instant>,
    /// The index grants no leases (a Flare index): acknowledge without one.
    unsupported: bool,
    /// The last renewal was refused.
    refused: bool,
}

/// How long to wait before opening a session again at an index that did not know `node session`.
pub const UNSUPPORTED_RETRY: Duration = Duration::from_secs(60);

/// How long to wait before reopening a closed session.
pub const REOPEN_DELAY: Duration = Duration::from_millis(100);

impl Session {
    /// A closed session whose first attempt is due at `now`.
    pub fn new(lease: Duration, now: Instant) -> Self {
        Session {
            lease,
            phase: Phase::Closed { retry_at: now },
            lease_until: None,
            unsupported: false,
            refused: false,
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether a write may be acknowledged at `now` by a master on this lease.
    pub fn valid(&self, now: Instant) -> bool {
        self.lease.is_zero() || self.unsupported || self.lease_until.is_some_and(|t| now < t)
    }

    /// When the lease ends (`None`: not held, or leases are off).
    pub fn lease_until(&self) -> Option<Instant> {
        if self.lease.is_zero() || self.unsupported {
            return None;
        }
        self.lease_until
    }

    /// Leases are in force (configured, and granted by the index).
    pub fn enforced(&self) -> bool {
        !self.lease.is_zero() && !self.unsupported
    }

    /// The session is due to open at `now`: it becomes `Opening`. False when it is not closed or not due.
    pub fn open(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed { retry_at } if retry_at <= now => {
                self.phase = Phase::Opening { since: now };
                true
            }
            _ => false,
        }
    }

    /// The answer to `node session`: open (a renewal is due at once), or closed again.
    pub fn handle_opened(&mut self, now: Instant, ok: bool) {
        if !matches!(self.phase, Phase::Opening { .. }) {
            return;
        }
        self.phase = match ok {
            true => Phase::Open {
                renew_sent: None,
                next_renew: now,
            },
            false => Phase::Closed {
                retry_at: now + REOPEN_DELAY,
            },
        };
    }

    /// A renewal is due at `now`: it is sent now. False when none is due.
    pub fn renew(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Open {
                renew_sent: None,
                next_renew,
            } if next_renew <= now => {
                self.phase = Phase::Open {
                    renew_sent: Some(now),
                    next_renew,
                };
                true
            }
            _ => false,
        }
    }

    /// The answer to the renewal in flight.
    pub fn handle_renewal(&mut self, renewal: Renewal) {
        let Phase::Open {
            renew_sent: Some(sent),
            ..
        } = self.phase
        else {
            return;
        };
        match renewal {
            Renewal::Granted => {
                self.lease_until = Some(sent + self.lease);
                self.unsupported = false;
            }
            Renewal::Refused => self.lease_until = None,
            Renewal::Unsupported => self.unsupported = true,
        }
        self.refused = renewal == Renewal::Refused;
        self.phase = Phase::Open {
            renew_sent: None,
            next_renew: sent + RENEW_INTERVAL,
        };
    }

    /// A new map was applied at `now`: when the last renewal was refused (the index took this node out of serving
    /// in a map it did not hold yet), the next one goes now, with the new map's version, instead of a second later
    /// (core simulator, seed 5842: a slave made active again answered no reads for a second).
    pub fn renew_now_if_refused(&mut self, now: Instant) {
        if let Phase::Open {
            renew_sent: None,
            next_renew,
        } = self.phase
        {
            if self.refused && next_renew > now {
                self.phase = Phase::Open {
                    renew_sent: None,
                    next_renew: now,
                };
            }
        }
    }

    /// The index answered `node session` with `ERROR` (a Flare index): it grants no leases, so none is enforced
    /// ([`Session::enforced`]); the session is tried again after [`UNSUPPORTED_RETRY`] (an index upgraded meanwhile
    /// grants leases again, and its first granted renewal enforces them).
    pub fn handle_unsupported(&mut self, now: Instant) {
        self.unsupported = true;
        self.phase = Phase::Closed {
            retry_at: now + UNSUPPORTED_RETRY,
        };
    }

    /// A renewal unanswered for this long means the session is stuck (a cut that drops packets): it is closed
    /// (which ends the lease) and opened again. Half a lease, at least a renewal interval: a renewal lost on a
    /// connection that died silently costs a fraction of a second without a lease, not the rest of it plus the
    /// timeout (core simulator, seed 9184: a slave refused reads for a second after a lost renewal).
    pub fn renew_timeout(&self) -> Duration {
        (self.lease / 2).max(RENEW_INTERVAL)
    }

    /// The session is stuck at `now`: a renewal, or the `node session` that opens it, has waited longer than
    /// [`Session::renew_timeout`] (core simulator, seed 5842: an open whose answer was lost on a cut left the node
    /// without a session, so without a lease, for good).
    pub fn stuck(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Open {
                renew_sent: Some(sent),
                ..
            }
            | Phase::Opening { since: sent } => now >= sent + self.renew_timeout(),
            _ => false,
        }
    }

    /// The lease ran out at `now` (no renewal answered in time): it is no longer held.
    pub fn expire(&mut self, now: Instant) {
        if self.lease_until.is_some_and(|t| t <= now) {
            self.lease_until = None;
        }
    }

    /// The session broke or the index closed it (or it failed to open): opened again soon; the lease runs to its
    /// end (see the module header).
    pub fn handle_broken(&mut self, now: Instant) {
        self.phase = Phase::Closed {
            retry_at: now + REOPEN_DELAY,
        };
    }

    /// This node closes the session: the lease ends at once.
    pub fn handle_closed(&mut self, now: Instant) {
        self.lease_until = None;
        self.phase = Phase::Closed {
            retry_at: now + REOPEN_DELAY,
        };
    }

    /// The next time something is due: reopening, renewing, the renewal timeout, or the end of the lease (the
    /// driver's published lease changes then).
    pub fn next_timeout(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Closed { retry_at } => Some(retry_at),
            Phase::Opening { since } => Some(since + self.renew_timeout()),
            Phase::Open {
                renew_sent: Some(sent),
                ..
            } => Some(sent + self.renew_timeout()),
            Phase::Open {
                renew_sent: None,
                next_renew,
            } => Some(next_renew),
        };
        [phase, self.lease_until()].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(3);

    fn open(now: Instant) -> Session {
        let mut s = Session::new(LEASE, now);
        assert!(s.open(now));
        s.handle_opened(now, true);
        s
    }

    /// An open session whose first renewal, sent at `now`, was granted.
    fn leased(now: Instant) -> Session {
        let mut s = open(now);
        s.renew(now);
        s.handle_renewal(Renewal::Granted);
        s
    }

    #[test]
    fn a_granted_renewal_lasts_from_its_send_time() {
        let t0 = Instant::now();
        let mut s = open(t0);
        assert!(!s.valid(t0), "no lease before the first renewal");
        assert!(s.renew(t0));
        assert!(!s.renew(t0), "one renewal in flight");
        // The answer comes late: the lease still counts from the send time.
        s.handle_renewal(Renewal::Granted);
        assert!(s.valid(t0 + LEASE - Duration::from_millis(1)));
        assert!(!s.valid(t0 + LEASE));
        assert!(s.renew(t0 + RENEW_INTERVAL), "renewed every second");
    }

    /// Core simulator, seed 5842: the answer to `node session` was lost on a cut, and the node waited for it for
    /// good, without a lease.
    #[test]
    fn an_open_left_unanswered_is_stuck_and_tried_again() {
        let t0 = Instant::now();
        let mut s = Session::new(LEASE, t0);
        assert!(s.open(t0));
        let due = t0 + s.renew_timeout();
        assert_eq!(s.next_timeout(), Some(due));
        assert!(!s.stuck(due - Duration::from_millis(1)));
        assert!(s.stuck(due));
        s.handle_closed(due);
        assert!(s.open(due + REOPEN_DELAY));
        s.handle_opened(due + REOPEN_DELAY, true);
        assert!(!s.stuck(due + REOPEN_DELAY + s.renew_timeout() - Duration::from_millis(1)));
    }

    #[test]
    fn a_refused_renewal_is_tried_again_when_a_new_map_comes() {
        let t0 = Instant::now();
        let mut s = open(t0);
        assert!(s.renew(t0));
        s.handle_renewal(Renewal::Refused);
        let t1 = t0 + Duration::from_millis(300);
        assert!(!s.renew(t1), "a second between renewals");
        s.renew_now_if_refused(t1);
        assert!(s.renew(t1));
        s.handle_renewal(Renewal::Granted);
        assert!(s.valid(t1));
        // Granted: a new map changes nothing.
        s.renew_now_if_refused(t1 + Duration::from_millis(10));
        assert!(!s.renew(t1 + Duration::from_millis(10)));
    }

    #[test]
    fn an_index_without_sessions_enforces_no_lease() {
        let t0 = Instant::now();
        let mut s = Session::new(LEASE, t0);
        assert!(s.open(t0));
        s.handle_unsupported(t0);
        assert!(!s.enforced(), "a Flare index: serve without a lease");
        assert!(!s.open(t0 + REOPEN_DELAY));
        assert!(s.open(t0 + UNSUPPORTED_RETRY));
        s.handle_opened(t0 + UNSUPPORTED_RETRY, true);
        assert!(s.renew(t0 + UNSUPPORTED_RETRY));
        s.handle_renewal(Renewal::Granted);
        assert!(
            s.enforced(),
            "an index upgraded meanwhile grants leases again"
        );
    }

    #[test]
    fn a_closed_session_ends_the_lease_at_once() {
        let t0 = Instant::now();
        let mut s = leased(t0);
        let t1 = t0 + Duration::from_millis(200);
        s.handle_closed(t1);
        assert!(!s.valid(t1));
        assert_eq!(s.next_timeout(), Some(t1 + REOPEN_DELAY));
    }

    #[test]
    fn a_broken_session_keeps_the_lease_to_its_end() {
        let t0 = Instant::now();
        let mut s = leased(t0);
        let t1 = t0 + Duration::from_millis(200);
        s.handle_broken(t1);
        assert!(
            s.valid(t1),
            "the index ends it early only when this node closes the session"
        );
        assert!(!s.valid(t0 + LEASE));
        assert_eq!(s.next_timeout(), Some(t1 + REOPEN_DELAY));
    }

    #[test]
    fn a_refused_renewal_ends_the_lease_and_unanswered_ones_run_out() {
        let t0 = Instant::now();
        let mut s = leased(t0);
        let t1 = t0 + RENEW_INTERVAL;
        s.renew(t1);
        s.handle_renewal(Renewal::Refused);
        assert!(!s.valid(t1), "refused: demoted in a map not received yet");
        let t2 = t1 + RENEW_INTERVAL;
        s.renew(t2);
        s.handle_renewal(Renewal::Granted);
        assert!(s.valid(t2));
        // A cut: the next renewal is never answered; the lease would run out on its own, but the session is
        // stuck after half a lease, before that (closing it ends the lease, and it is opened again).
        let t3 = t2 + RENEW_INTERVAL;
        s.renew(t3);
        assert!(s.valid(t2 + LEASE - Duration::from_millis(1)));
        assert!(!s.valid(t2 + LEASE));
        assert!(!s.stuck(t3 + LEASE / 2 - Duration::from_millis(1)));
        assert!(s.stuck(t3 + LEASE / 2));
        assert!(t3 + LEASE / 2 < t2 + LEASE);
    }

    #[test]
    fn a_lease_that_ran_out_is_no_longer_due() {
        // Regression (sim, deposed_master_keeps_writing): an expired lease kept `next_timeout` in the past, so the
        // driver's timer fired again at once, forever.
        let t0 = Instant::now();
        let mut s = leased(t0);
        // The renewal after the first goes late (a busy node): the lease ends before the session is stuck.
        let t1 = t0 + 2 * RENEW_INTERVAL;
        assert!(s.renew(t1));
        let end = t0 + LEASE;
        assert_eq!(s.next_timeout(), Some(end));
        s.expire(end);
        assert!(!s.valid(end));
        assert!(
            s.next_timeout().is_some_and(|t| t > end),
            "{:?}",
            s.next_timeout()
        );
    }

    #[test]
    fn without_leases_writes_are_always_acknowledged() {
        let t0 = Instant::now();
        assert!(Session::new(Duration::ZERO, t0).valid(t0));
        let mut s = open(t0);
        s.renew(t0);
        s.handle_renewal(Renewal::Unsupported);
        assert!(
            s.valid(t0 + Duration::from_secs(100)),
            "a Flare index grants none"
        );
    }

    #[test]
    fn the_index_waits_longer_than_any_lease() {
        let g = index_grace(LEASE);
        let stretched = LEASE.as_secs_f64() * (1.0 + LEASE_DRIFT) / (1.0 - LEASE_DRIFT);
        assert!(g.as_secs_f64() > stretched);
        assert!(g < LEASE * 2);
    }
}
