//! Leases on the index side (ours, not Flare's), and the epoch of each node's prepare.
//!
//! A master acknowledges a client's write, and a master or active slave answers a read from its store, only while
//! it holds a lease, renewed once a second on its session with `node lease <name> <port> <version> <lease-ms>` (see
//! `crate::node::session`). This module decides, for the index, when a node's lease has **certainly** ended, so
//! that failover never makes a second node acknowledge writes for a partition while the first one still may, and a
//! slave is marked down (its master stops replicating to it) only once it has stopped answering reads ([`serves`]):
//!
//! - a granted renewal keeps the lease alive until `now + grace` on the index's clock, where `grace` is
//!   [`crate::node::session::index_grace`] of the index's `master-lease` (the node counts its lease from when it
//!   *sent* the renewal, which is earlier, and `grace` allows for clock rate drift);
//! - a renewal asking for a longer lease than the index's `master-lease` is refused (a node configured with a
//!   longer lease than the index waits for would be unsafe);
//! - a renewal from a node that a map version it does not hold yet took out of serving (a master demoted, a slave
//!   marked down) is refused (it would otherwise go on acknowledging writes, or answering stale reads, with a new
//!   lease);
//! - when the session connection a lease was granted on is **closed by the node** (end of file or reset: the process
//!   died or closed it, and a node stops acknowledging the moment its session closes), the lease ends at once, so a
//!   killed master fails over as fast as before. A close the index made itself (its read timeout) ends nothing;
//! - a new index process knows nothing of the leases its predecessor granted: every lease may run until
//!   `start + grace` (only when it resumes a persisted map: a new cluster has no master to fail over); a new
//!   leader of an index group waits longer still ([`Leases::extend_restart`]: its deposed predecessor may have
//!   renewed leases after it was elected). Once a node closed a session this index renewed its lease on, its lease
//!   has ended whoever granted it: a node holds one lease and ends it before its session's close goes out.
//!
//! Assumptions, written down: clock rates differ by at most 1% (`LEASE_DRIFT`); a FIN or RST seen by the index on a
//! session comes from the node's own host (no middlebox resets connections); a node checks its lease when it decides
//! to acknowledge a write.
//!
//! **Epochs.** A node reports the end of a copy with the map version of the prepare it copied for
//! (`node state <n> <p> active|ready <epoch>`). The index remembers, per node, the map version at which it last
//! entered `prepare`, and refuses (`SERVER_ERROR stale ...`) a report for an older one: the node was marked down and
//! up meanwhile, so its copy missed writes. This record lives in memory only: after an index restart, reports of
//! copies started before it are accepted (as Flare does).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ConnId;
use crate::node_map::{NodeMap, Role, State};

/// One node's lease, as the index sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Held {
    /// Until when the lease may run (index clock), and the session connection it was granted on.
    until: Option<(Instant, ConnId)>,
    /// The map version that took the master role away, while the node may not hold it yet.
    demoted_at: Option<u64>,
    /// The node closed the session its last renewal here was granted on: its process no longer counts on any
    /// lease (a node ends its lease before its session's close goes out, and a killed process holds none).
    closed: bool,
}

/// Every node's lease and prepare epoch.
#[derive(Clone, Debug)]
pub struct Leases {
    /// `master-lease`; zero: leases are off (renewals are answered `ERROR`, failover is not gated).
    lease: Duration,
    grace: Duration,
    /// Leases granted by a previous process may run until then.
    restart_until: Instant,
    held: BTreeMap<String, Held>,
    /// The map version at which each node last entered `prepare`.
    prepared: BTreeMap<String, u64>,
}

impl Leases {
    /// The leases of an index started at `now`; `resumed`: it resumes a persisted map.
    pub fn new(lease: Duration, now: Instant, resumed: bool) -> Self {
        let grace = match lease.is_zero() {
            true => Duration::ZERO,
            false => crate::node::session::index_grace(lease),
        };
        Leases {
            lease,
            grace,
            restart_until: if resumed { now + grace } else { now },
            held: BTreeMap::new(),
            prepared: BTreeMap::new(),
        }
    }

    /// Leases granted elsewhere may run `extra` longer than a restart's grace (a new group leader: see
    /// [`super::Index::lead`]).
    pub fn extend_restart(&mut self, now: Instant, extra: Duration) {
        if self.enabled() {
            self.restart_until = self.restart_until.max(now + self.grace + extra);
        }
    }

    /// An index that starts acting on `map` (version `version`: a restart, a new group leader) does not know which
    /// map took whom out of serving: every node that does not serve in it is refused leases until it holds that
    /// version (a master failed over while cut off would otherwise come back with the map in which it is master, and
    /// be granted a lease for it).
    pub fn demoted_by(&mut self, map: &NodeMap, version: u64) {
        for (key, r) in &map.nodes {
            if !serves(r) {
                self.held.entry(key.clone()).or_default().demoted_at = Some(version);
            }
        }
    }

    /// Leases are in force.
    pub fn enabled(&self) -> bool {
        !self.lease.is_zero()
    }

    /// A renewal from `node` on `conn`, holding map `version`, asking for `lease_ms` (if given). `Err` with the
    /// reason when refused.
    pub fn renew(
        &mut self,
        now: Instant,
        node: &str,
        conn: ConnId,
        version: u64,
        lease_ms: Option<u64>,
    ) -> Result<(), String> {
        if let Some(ms) = lease_ms.filter(|ms| u128::from(*ms) > self.lease.as_millis()) {
            return Err(format!(
                "lease refused: master-lease {ms} ms is longer than the index's {} ms",
                self.lease.as_millis()
            ));
        }
        let h = self.held.entry(node.to_owned()).or_default();
        if let Some(d) = h.demoted_at {
            if version < d {
                return Err(format!(
                    "lease refused: demoted by node map version {d}, this node holds {version}"
                ));
            }
            h.demoted_at = None;
        }
        h.until = Some((now + self.grace, conn));
        h.closed = false;
        Ok(())
    }

    /// The session connection `conn` of `node` closed; `by_peer`: the node closed or reset it.
    pub fn session_closed(&mut self, now: Instant, node: &str, conn: ConnId, by_peer: bool) {
        if let Some(h) = self.held.get_mut(node) {
            if by_peer && h.until.is_some_and(|(_, c)| c == conn) {
                h.until = Some((now, conn));
                h.closed = true;
            }
        }
    }

    /// When `node`'s lease has certainly ended. Leases granted by a previous process (or group leader) may run
    /// until the restart's end, unless the node closed a session this index granted it a renewal on since: a node
    /// holds one lease, which ends before its session closes (and with its process).
    pub fn ends_at(&self, node: &str) -> Instant {
        match self.held.get(node) {
            Some(Held {
                until: Some((t, _)),
                closed: true,
                ..
            }) => *t,
            Some(Held {
                until: Some((t, _)),
                ..
            }) => (*t).max(self.restart_until),
            _ => self.restart_until,
        }
    }

    /// Whether `node` may still hold a lease at `now` (always false when leases are off).
    pub fn may_hold(&self, now: Instant, node: &str) -> bool {
        self.enabled() && now < self.ends_at(node)
    }

    /// A new map `new` (version `version`) replaced `old`: masters it demoted are refused leases until they hold
    /// it, and nodes it put in `prepare` start a new epoch.
    pub fn follow(&mut self, old: &NodeMap, new: &NodeMap, version: u64) {
        for (key, r) in &new.nodes {
            let before = old.nodes.get(key);
            if before.is_some_and(serves) && !serves(r) {
                self.held.entry(key.clone()).or_default().demoted_at = Some(version);
            }
            let same_prepare = before.is_some_and(|b| {
                b.state == State::Prepare && b.role == r.role && b.partition == r.partition
            });
            if r.state == State::Prepare && !same_prepare {
                self.prepared.insert(key.clone(), version);
            }
        }
        self.held.retain(|k, _| new.nodes.contains_key(k));
        self.prepared.retain(|k, _| new.nodes.contains_key(k));
    }

    /// `Some(current)` when a report for the prepare of map version `epoch` is older than `node`'s current one.
    pub fn stale_report(&self, node: &str, epoch: u64) -> Option<u64> {
        self.prepared.get(node).copied().filter(|p| *p > epoch)
    }
}

/// Whether a node with record `r` answers from its store: an active master (reads and writes) or an active slave
/// (reads). Such a node holds a lease, and is marked down, or given another role, only once its lease has certainly
/// ended; a renewal it sends before it holds that map is refused.
pub fn serves(r: &crate::node_map::NodeRecord) -> bool {
    r.state == State::Active && matches!(r.role, Role::Master | Role::Slave)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_map::NodeRecord;

    const L: Duration = Duration::from_secs(3);

    /// `name role state partition` per node (port 1).
    fn map(lines: &[&str]) -> NodeMap {
        let mut m = NodeMap::default();
        for (i, l) in lines.iter().enumerate() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let r = NodeRecord {
                name: f[0].into(),
                port: 1,
                role: Role::parse(f[1]).expect("role"),
                state: State::parse(f[2]).expect("state"),
                partition: f[3].parse().ok(),
                balance: 1,
                thread_type: i as u32,
            };
            m.nodes.insert(r.key(), r);
        }
        m
    }

    #[test]
    fn a_granted_lease_runs_for_the_grace_and_a_peer_close_ends_it() {
        let t = Instant::now();
        let mut l = Leases::new(L, t, false);
        assert!(!l.may_hold(t, "a:1"), "never granted");
        l.renew(t, "a:1", ConnId(5), 1, Some(3000))
            .expect("granted");
        let grace = crate::node::session::index_grace(L);
        assert!(grace > L);
        assert!(l.may_hold(t + L, "a:1"));
        assert!(!l.may_hold(t + grace, "a:1"));
        // Our own close (read timeout) ends nothing; a close on another connection neither.
        l.session_closed(t, "a:1", ConnId(5), false);
        l.session_closed(t, "a:1", ConnId(6), true);
        assert!(l.may_hold(t + L, "a:1"));
        l.session_closed(t + Duration::from_millis(10), "a:1", ConnId(5), true);
        assert!(!l.may_hold(t + Duration::from_millis(10), "a:1"));
    }

    #[test]
    fn an_index_that_starts_acting_refuses_leases_to_nodes_out_of_serving_until_they_hold_its_map()
    {
        let t = Instant::now();
        let m = map(&["a master active 0", "b master down 0", "c slave active 0"]);
        let mut l = Leases::new(L, t, true);
        l.demoted_by(&m, 9);
        // b was failed over (in a map this index never saw change): its renewal for an older map is refused.
        assert!(l.renew(t, "b:1", ConnId(1), 8, None).is_err());
        assert!(l.renew(t, "b:1", ConnId(1), 9, None).is_ok());
        // Nodes that serve are not affected.
        assert!(l.renew(t, "a:1", ConnId(2), 3, None).is_ok());
        assert!(l.renew(t, "c:1", ConnId(3), 3, None).is_ok());
    }

    #[test]
    fn a_new_leader_waits_longer_unless_the_node_closed_a_session_it_renewed_on() {
        let t = Instant::now();
        let grace = crate::node::session::index_grace(L);
        let extra = Duration::from_millis(800);
        let mut l = Leases::new(L, t, true);
        l.extend_restart(t, extra);
        assert!(
            l.may_hold(t + grace, "a:1"),
            "a deposed leader may have renewed it"
        );
        assert!(!l.may_hold(t + grace + extra, "a:1"));
        // Renewed here, then the node closed that session (killed): its one lease is over, whoever granted it.
        l.renew(t, "a:1", ConnId(5), 1, Some(3000))
            .expect("granted");
        assert!(l.may_hold(t + grace, "a:1"));
        l.session_closed(t + Duration::from_millis(5), "a:1", ConnId(5), true);
        assert!(!l.may_hold(t + Duration::from_millis(5), "a:1"));
        // A node that never renewed here still waits for the whole takeover.
        assert!(l.may_hold(t + grace, "b:1"));
    }

    #[test]
    fn a_new_process_resuming_a_map_assumes_every_lease_runs_until_its_grace() {
        let t = Instant::now();
        let grace = crate::node::session::index_grace(L);
        let l = Leases::new(L, t, true);
        assert!(l.may_hold(t + L, "never-seen:1"));
        assert!(!l.may_hold(t + grace, "never-seen:1"));
        assert!(!Leases::new(L, t, false).may_hold(t, "x:1"));
        assert!(
            !Leases::new(Duration::ZERO, t, true).may_hold(t, "x:1"),
            "off: no gate"
        );
    }

    #[test]
    fn a_demoted_master_gets_no_lease_until_it_holds_the_map_that_demoted_it() {
        let t = Instant::now();
        let mut l = Leases::new(L, t, false);
        let old = map(&["a master active 0", "b slave active 0"]);
        let new = map(&["a master down 0", "b master active 0"]);
        let newer = map(&["a proxy down -1", "b master active 0"]);
        l.follow(&old, &new, 5);
        // A master marked down serves nothing any more.
        let refused = l.renew(t, "a:1", ConnId(1), 4, None).unwrap_err();
        assert!(
            refused.contains("demoted by node map version 5"),
            "{refused}"
        );
        l.follow(&new, &newer, 6);
        assert!(l.renew(t, "a:1", ConnId(1), 5, None).is_ok());
        assert!(l.renew(t, "b:1", ConnId(2), 5, None).is_ok(), "promoted");
    }

    /// A slave marked down is no longer replicated to: until it holds that map it gets no lease, so it does not
    /// answer reads its master no longer replicates (core simulator, seed 5842).
    #[test]
    fn a_slave_marked_down_gets_no_lease_until_it_holds_the_map_that_marked_it() {
        let t = Instant::now();
        let mut l = Leases::new(L, t, false);
        let old = map(&["a master active 0", "b slave active 0"]);
        let new = map(&["a master active 0", "b slave down 0"]);
        l.follow(&old, &new, 7);
        assert!(l.renew(t, "b:1", ConnId(2), 6, None).is_err());
        assert!(l.renew(t, "b:1", ConnId(2), 7, None).is_ok());
        assert!(
            l.renew(t, "a:1", ConnId(1), 6, None).is_ok(),
            "still serving"
        );
        // Back up (prepare, then active) needs no new gate.
        let back = map(&["a master active 0", "b slave prepare 0"]);
        l.follow(&new, &back, 8);
        assert!(l.renew(t, "b:1", ConnId(2), 7, None).is_ok());
    }

    #[test]
    fn a_longer_lease_than_the_index_waits_for_is_refused() {
        let t = Instant::now();
        let mut l = Leases::new(L, t, false);
        let e = l.renew(t, "a:1", ConnId(1), 1, Some(3001)).unwrap_err();
        assert!(e.contains("longer than the index's 3000 ms"), "{e}");
        assert!(!l.may_hold(t, "a:1"));
    }

    #[test]
    fn a_report_for_an_older_prepare_is_stale() {
        let t = Instant::now();
        let mut l = Leases::new(L, t, false);
        let m1 = map(&["a master active 0", "b proxy active -1"]);
        let m2 = map(&["a master active 0", "b slave prepare 0"]);
        let m3 = map(&["a master active 0", "b slave down 0"]);
        l.follow(&m1, &m2, 2);
        assert_eq!(l.stale_report("b:1", 2), None);
        l.follow(&m2, &m2, 3);
        assert_eq!(l.stale_report("b:1", 2), None, "the same prepare goes on");
        l.follow(&m2, &m3, 4);
        l.follow(&m3, &m2, 5);
        assert_eq!(l.stale_report("b:1", 2), Some(5));
        assert_eq!(l.stale_report("b:1", 5), None);
        assert_eq!(l.stale_report("unknown:1", 0), None);
    }
}
