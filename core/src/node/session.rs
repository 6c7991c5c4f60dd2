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
//!
//! **Several index servers.** Only the leader of the index group grants sessions and leases; a follower answers
//! `node session` and `node lease` with a [`Redirect`] (the leader it knows, or none elected yet). [`IndexOrder`]
//! keeps the order in which calls and session opens try the index servers: the leader as far as this node knows
//! first (the last redirect's, or the server whose session or renewal last answered `OK`), then the configured
//! servers in their order, starting after the last one that knew no leader or left the session unanswered. An
//! open redirected to a leader is tried again there at once, one told no leader is elected yet soon after
//! ([`NO_LEADER_RETRY`]), and a redirected renewal ends the session as a refused one ends the lease: the node
//! closes it and opens one with the leader at once ([`Session::handle_redirect`]). A follower's answer never
//! extends a lease. With one index server nothing of this happens: it never redirects, and the order is that
//! server.

use std::time::{Duration, Instant};

use crate::node::wire::split_node;

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

/// A follower index server's refusal of what only the leader does (`node session`, `node lease`, a write it cannot
/// forward).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// `SERVER_ERROR not the index leader; leader is <host:port>`: go to that server.
    Leader(String, u16),
    /// `SERVER_ERROR not the index leader; no leader elected yet`: try again soon (another server may know one).
    NoLeader,
}

/// What both redirect lines start with.
const NOT_LEADER: &[u8] = b"SERVER_ERROR not the index leader; ";
const LEADER_IS: &[u8] = b"leader is ";
const NO_LEADER: &[u8] = b"no leader elected yet";

impl Redirect {
    /// The redirect an answer line (without its line ending) is, exactly one of the two lines; `None` for any other
    /// line.
    pub fn parse(line: &[u8]) -> Option<Redirect> {
        let rest = line.strip_prefix(NOT_LEADER)?;
        if rest == NO_LEADER {
            return Some(Redirect::NoLeader);
        }
        let addr = std::str::from_utf8(rest.strip_prefix(LEADER_IS)?).ok()?;
        let (host, port) = split_node(addr)?;
        let bad = host.is_empty() || port == 0 || host.bytes().any(|b| b.is_ascii_whitespace());
        (!bad).then(|| Redirect::Leader(host.to_string(), port))
    }

    /// The line a follower answers with (without its line ending).
    pub fn line(&self) -> String {
        let tail = match self {
            Redirect::Leader(host, port) => format!("leader is {host}:{port}"),
            Redirect::NoLeader => "no leader elected yet".to_string(),
        };
        format!("{}{tail}", String::from_utf8_lossy(NOT_LEADER))
    }
}

/// An index server's address, `(host, port)`.
pub type IndexAddr = (String, u16);

/// The order in which calls to the index and session opens try the index servers (see the module header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexOrder {
    /// The configured servers (`index-servers`), in their order.
    servers: Vec<IndexAddr>,
    /// The leader as far as this node knows.
    leader: Option<IndexAddr>,
    /// Where the configured list is started from.
    start: usize,
}

impl IndexOrder {
    /// The configured `servers`, no leader known.
    pub fn new(servers: Vec<IndexAddr>) -> Self {
        IndexOrder {
            servers,
            leader: None,
            start: 0,
        }
    }

    /// The leader as far as this node knows.
    pub fn leader(&self) -> Option<&IndexAddr> {
        self.leader.as_ref()
    }

    /// The servers to try, in order: the known leader (even one not configured: a server added to the group),
    /// then the configured ones from the start point round, each once.
    pub fn order(&self) -> Vec<IndexAddr> {
        let n = self.servers.len();
        let rest = (0..n)
            .map(|i| &self.servers[(self.start + i) % n])
            .filter(|s| Some(*s) != self.leader.as_ref());
        self.leader.iter().chain(rest).cloned().collect()
    }

    /// `from` answered a session open. The servers tried before it did not answer, so a leader other than `from`
    /// (tried first) is no longer taken for one (an index server that was killed).
    pub fn answered(&mut self, from: &IndexAddr) {
        if self.leader.as_ref().is_some_and(|l| l != from) {
            self.leader = None;
        }
    }

    /// `from` answered `OK` to `node session` or a renewal: it is the leader (`None`: the driver does not say
    /// which server answered; nothing is learnt).
    pub fn granted(&mut self, from: Option<&IndexAddr>) {
        if let Some(from) = from {
            self.leader = Some(from.clone());
        }
    }

    /// `from` answered with `redirect`: the leader it names is tried first; one that knows no leader is passed
    /// over.
    pub fn redirected(&mut self, from: Option<&IndexAddr>, redirect: &Redirect) {
        match redirect {
            Redirect::Leader(host, port) => self.leader = Some((host.clone(), *port)),
            Redirect::NoLeader => self.pass_over(from),
        }
    }

    /// `server` cannot serve the session now (it knows no leader, or left the session unanswered; `None`: the one
    /// tried first): it is no longer taken for the leader, and the configured list is next tried from the server
    /// after it, so that every server is asked in turn.
    pub fn pass_over(&mut self, server: Option<&IndexAddr>) {
        let Some(server) = server.cloned().or_else(|| self.order().into_iter().next()) else {
            return;
        };
        if self.leader.as_ref() == Some(&server) {
            self.leader = None;
        }
        if let Some(i) = self.servers.iter().position(|s| *s == server) {
            self.start = (i + 1) % self.servers.len();
        }
    }
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
    /// Opens and renewals redirected to a leader in a row (since the last open that succeeded or was told no
    /// leader is elected).
    redirects: u32,
}

/// How long to wait before opening a session again at an index that did not know `node session`.
pub const UNSUPPORTED_RETRY: Duration = Duration::from_secs(60);

/// How long to wait before reopening a closed session.
pub const REOPEN_DELAY: Duration = Duration::from_millis(100);

/// How long to wait before opening a session again after an index server said no leader is elected yet: an
/// election takes a few hundred milliseconds, and the next server asked may know the leader already.
pub const NO_LEADER_RETRY: Duration = Duration::from_millis(150);

/// How long to wait before following a redirect to a leader when the previous open was redirected too (the first
/// one is followed at once): two servers naming each other during a change of leader cost no busy loop.
pub const REDIRECT_RETRY: Duration = Duration::from_millis(50);

impl Session {
    /// A closed session whose first attempt is due at `now`.
    pub fn new(lease: Duration, now: Instant) -> Self {
        Session {
            lease,
            phase: Phase::Closed { retry_at: now },
            lease_until: None,
            unsupported: false,
            refused: false,
            redirects: 0,
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
        if ok {
            self.redirects = 0;
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

    /// The index server answered the open or a renewal with `redirect` (it is not the leader): this session ends,
    /// and the next open is due at once when the leader is named (after [`REDIRECT_RETRY`] when the open before
    /// was redirected to a leader too), or after [`NO_LEADER_RETRY`] when none is elected yet. A redirected renewal
    /// grants nothing and ends the lease, as a refused one does; the node closes the session, and true says so
    /// (the driver's connection must be closed). A redirected open leaves the lease of an earlier session running
    /// to its end, as a broken session does. Nothing changes when no session is being opened or open.
    pub fn handle_redirect(&mut self, now: Instant, redirect: &Redirect) -> bool {
        let open = match self.phase {
            Phase::Open { .. } => true,
            Phase::Opening { .. } => false,
            Phase::Closed { .. } => return false,
        };
        if open {
            self.lease_until = None;
        }
        let delay = match redirect {
            Redirect::Leader(..) => {
                self.redirects += 1;
                match self.redirects {
                    1 => Duration::ZERO,
                    _ => REDIRECT_RETRY,
                }
            }
            Redirect::NoLeader => {
                self.redirects = 0;
                NO_LEADER_RETRY
            }
        };
        self.phase = Phase::Closed {
            retry_at: now + delay,
        };
        open
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
    fn the_two_redirect_lines_and_nothing_else_are_redirects() {
        let leader = b"SERVER_ERROR not the index leader; leader is i2.example:12120";
        let none = b"SERVER_ERROR not the index leader; no leader elected yet";
        assert_eq!(
            Redirect::parse(leader),
            Some(Redirect::Leader("i2.example".into(), 12120))
        );
        assert_eq!(Redirect::parse(none), Some(Redirect::NoLeader));
        assert_eq!(
            Redirect::parse(b"SERVER_ERROR not the index leader; leader is 10.0.0.3:7"),
            Some(Redirect::Leader("10.0.0.3".into(), 7))
        );
        for line in [
            &b"OK"[..],
            b"ERROR",
            b"SERVER_ERROR not the index leader",
            b"SERVER_ERROR not the index leader; ",
            b"SERVER_ERROR not the index leader; leader is ",
            b"SERVER_ERROR not the index leader; leader is i2",
            b"SERVER_ERROR not the index leader; leader is :12120",
            b"SERVER_ERROR not the index leader; leader is i2:",
            b"SERVER_ERROR not the index leader; leader is i2:99999",
            b"SERVER_ERROR not the index leader; leader is i2:0",
            b"SERVER_ERROR not the index leader; leader is i 2:12120",
            b"SERVER_ERROR not the index leader; leader is i2:12120 ",
            b"SERVER_ERROR not the index leader; no leader elected yet ",
            b"SERVER_ERROR not the index leader; no leader",
            b"SERVER_ERROR not the index leader;leader is i2:12120",
            b"server_error not the index leader; leader is i2:12120",
            b"CLIENT_ERROR not the index leader; leader is i2:12120",
            b"SERVER_ERROR unknown node",
            b"SERVER_ERROR not the index leader; leader is \xff:1",
        ] {
            assert_eq!(
                Redirect::parse(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // The lines a follower sends are the ones read.
        assert_eq!(Redirect::NoLeader.line().as_bytes(), none);
        let r = Redirect::Leader("i2.example".into(), 12120);
        assert_eq!(r.line().as_bytes(), leader);
    }

    fn addr(s: &str) -> IndexAddr {
        (s.to_string(), 12120)
    }

    #[test]
    fn the_known_leader_is_tried_first_then_the_configured_order() {
        let mut o = IndexOrder::new(vec![addr("i1"), addr("i2"), addr("i3")]);
        assert_eq!(o.order(), [addr("i1"), addr("i2"), addr("i3")]);
        o.redirected(Some(&addr("i1")), &Redirect::Leader("i3".into(), 12120));
        assert_eq!(o.leader(), Some(&addr("i3")));
        assert_eq!(o.order(), [addr("i3"), addr("i1"), addr("i2")]);
        // A leader not configured (added to the group later) is tried first too.
        o.redirected(None, &Redirect::Leader("i4".into(), 12120));
        assert_eq!(o.order(), [addr("i4"), addr("i1"), addr("i2"), addr("i3")]);
        o.granted(Some(&addr("i2")));
        assert_eq!(o.order(), [addr("i2"), addr("i1"), addr("i3")]);
        // The driver did not say who answered: nothing learnt.
        o.granted(None);
        assert_eq!(o.leader(), Some(&addr("i2")));
        // i3 answered an open: i2, tried before it, did not.
        o.answered(&addr("i2"));
        assert_eq!(o.leader(), Some(&addr("i2")));
        o.answered(&addr("i3"));
        assert_eq!(o.leader(), None);
        assert_eq!(o.order(), [addr("i1"), addr("i2"), addr("i3")]);
    }

    #[test]
    fn a_server_without_a_leader_is_passed_over_so_every_server_is_asked() {
        let mut o = IndexOrder::new(vec![addr("i1"), addr("i2"), addr("i3")]);
        o.redirected(Some(&addr("i1")), &Redirect::NoLeader);
        assert_eq!(o.order(), [addr("i2"), addr("i3"), addr("i1")]);
        o.redirected(Some(&addr("i2")), &Redirect::NoLeader);
        assert_eq!(o.order(), [addr("i3"), addr("i1"), addr("i2")]);
        o.redirected(Some(&addr("i3")), &Redirect::NoLeader);
        assert_eq!(o.order(), [addr("i1"), addr("i2"), addr("i3")]);
        // The leader hint itself passed over (it hangs): not first any more.
        o.granted(Some(&addr("i2")));
        o.pass_over(None);
        assert_eq!(o.leader(), None);
        assert_eq!(o.order(), [addr("i3"), addr("i1"), addr("i2")]);
        // One server: always that one.
        let mut one = IndexOrder::new(vec![addr("index")]);
        one.granted(Some(&addr("index")));
        one.pass_over(None);
        one.redirected(None, &Redirect::NoLeader);
        assert_eq!(one.order(), [addr("index")]);
        assert!(IndexOrder::new(Vec::new()).order().is_empty());
    }

    #[test]
    fn a_redirected_open_is_tried_again_at_once_or_soon() {
        let t0 = Instant::now();
        let to_leader = Redirect::Leader("i2".into(), 12120);
        let mut s = Session::new(LEASE, t0);
        assert!(s.open(t0));
        assert!(
            !s.handle_redirect(t0, &to_leader),
            "being opened: nothing to close"
        );
        assert!(s.open(t0), "a redirect to the leader is followed at once");
        // Redirected to a leader again (two servers naming each other): a little later.
        s.handle_redirect(t0, &to_leader);
        assert!(!s.open(t0 + REDIRECT_RETRY - Duration::from_millis(1)));
        assert!(s.open(t0 + REDIRECT_RETRY));
        let t1 = t0 + REDIRECT_RETRY;
        s.handle_redirect(t1, &Redirect::NoLeader);
        assert_eq!(s.next_timeout(), Some(t1 + NO_LEADER_RETRY));
        assert!(s.open(t1 + NO_LEADER_RETRY));
        // After no leader, the first redirect to one is followed at once again.
        let t2 = t1 + NO_LEADER_RETRY;
        s.handle_redirect(t2, &to_leader);
        assert!(s.open(t2));
        s.handle_opened(t2, true);
        assert!(matches!(s.phase(), Phase::Open { .. }));
        // Nothing being opened or open: a redirect changes nothing.
        let mut closed = Session::new(LEASE, t0 + Duration::from_secs(9));
        assert!(!closed.handle_redirect(t0, &to_leader));
        assert!(!closed.open(t0));
    }

    #[test]
    fn a_redirected_renewal_ends_the_lease_and_the_session() {
        let t0 = Instant::now();
        let mut s = leased(t0);
        let t1 = t0 + RENEW_INTERVAL;
        assert!(s.renew(t1));
        assert!(s.valid(t1));
        assert!(s.handle_redirect(t1, &Redirect::Leader("i2".into(), 12120)));
        assert!(
            !s.valid(t1),
            "a follower's answer grants nothing, and the node closes"
        );
        assert_eq!(s.lease_until(), None);
        assert!(s.open(t1), "the session with the leader is opened at once");
        // A broken session's lease is not ended by a redirected open.
        let mut b = leased(t0);
        b.handle_broken(t1);
        assert!(b.open(t1 + REOPEN_DELAY));
        b.handle_redirect(t1 + REOPEN_DELAY, &Redirect::NoLeader);
        assert!(b.valid(t1 + REOPEN_DELAY));
        assert!(!b.valid(t0 + LEASE));
    }

    #[test]
    fn the_index_waits_longer_than_any_lease() {
        let g = index_grace(LEASE);
        let stretched = LEASE.as_secs_f64() * (1.0 + LEASE_DRIFT) / (1.0 - LEASE_DRIFT);
        assert!(g.as_secs_f64() > stretched);
        assert!(g < LEASE * 2);
    }
}
