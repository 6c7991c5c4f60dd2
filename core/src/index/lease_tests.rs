//! The index's side of the master leases, driven through the testkit: a cut master is failed over only after its
//! lease has certainly ended, a killed one at once, a new index process waits out its predecessor's leases, a
//! demoted master gets no renewal, a report for an older prepare is refused.

use std::collections::BTreeSet;
use std::time::Duration;

use super::testkit::{self, key, set, Harness, Seen};
use super::{ConnId, Refusal};

/// `m` master and `s` its active slave of partition 0; `m` renews its lease on its own session connection.
fn leased_pair() -> (Harness, ConnId) {
    leased(Harness::new(), "m")
}

/// [`leased_pair`] on `h`, with `node` (`m` or `s`) renewing its lease.
fn leased(mut h: Harness, node: &str) -> (Harness, ConnId) {
    h.add(&["m", "s"]);
    for line in [
        "node role m 12121 master 1 0",
        "node role s 12121 slave 1 0",
        "node state s 12121 active",
    ] {
        assert_eq!(h.cmd(line), "OK\r\n", "{line}");
    }
    h.answer_all(&BTreeSet::new());
    let session = h.index.open_connection();
    let v = h.version();
    assert_eq!(
        h.cmd_on(session, &format!("node lease {node} 12121 {v} 3000")),
        "OK\r\n"
    );
    (h, session)
}

#[test]
fn a_master_cut_off_from_the_index_is_failed_over_only_after_its_lease_has_certainly_ended() {
    let (mut h, _session) = leased_pair();
    let granted = h.now;
    let ends = h.index.lease_ends_at(&key("m"));
    assert_eq!(
        ends,
        granted + crate::node::session::index_grace(Duration::from_secs(3))
    );
    // Its probes fail (a cut between it and the index only; its session sees nothing, renewals stop arriving).
    let ms = Duration::from_millis;
    let dead = set(&["m"]);
    while h.now < ends - ms(50) {
        h.run(ms(50), &dead);
        assert_eq!(
            h.node(&key("m")),
            "master active 0",
            "at {:?}",
            h.now - granted
        );
        assert_eq!(h.node(&key("s")), "slave active 0");
    }
    h.run(ms(1500), &dead);
    assert_eq!(
        h.node(&key("s")),
        "master active 0",
        "promoted once the lease has ended"
    );
    assert_eq!(h.node(&key("m")), "proxy down -1");
}

#[test]
fn a_master_that_answers_again_before_its_lease_ends_is_not_failed_over() {
    let (mut h, session) = leased_pair();
    let ms = Duration::from_millis;
    // Its probes fail long enough for the monitor to call it down (the failover waits for its lease).
    for _ in 0..6 {
        h.run(ms(900), &set(&["m"]));
        let v = h.version();
        assert_eq!(
            h.cmd_on(session, &format!("node lease m 12121 {v} 3000")),
            "OK\r\n"
        );
    }
    // The map changes while it cannot be reached (it is left out of that push).
    let before = h.version();
    let r = h.cmd("node add x 12121");
    assert!(r.ends_with("END\r\n"), "{r}");
    h.answer_all(&set(&["m"]));
    let v = h.version();
    assert!(v > before);
    // Renewals go on (it was only its probes that failed); it answers again.
    assert_eq!(
        h.cmd_on(session, &format!("node lease m 12121 {before} 3000")),
        "OK\r\n"
    );
    let during = h.take();
    h.run(ms(2500), &BTreeSet::new());
    assert_eq!(h.node(&key("m")), "master active 0");
    assert_eq!(h.node(&key("s")), "slave active 0");
    // It then gets the map it missed, or it could hold the old one forever (swarm seed 1763 replays that).
    let after = h.take();
    assert!(
        after.contains(&Seen::Push(key("m"), v)),
        "the missed map was pushed to the master once it answered: {during:?} then {after:?}"
    );
}

#[test]
fn a_killed_master_whose_session_closes_is_failed_over_in_well_under_a_second() {
    let (mut h, session) = leased_pair();
    let t0 = h.now;
    let ms = Duration::from_millis;
    // A close the index made itself (its read timeout) ends nothing: the failover would have to wait.
    h.index
        .handle_session_lost(h.now, &key("m"), session, false);
    assert!(h.index.lease_ends_at(&key("m")) > h.now + ms(3000));
    // The node's process dies: its kernel closes the session.
    h.index.handle_session_lost(h.now, &key("m"), session, true);
    h.drain();
    h.run(ms(600), &set(&["m"]));
    assert_eq!(h.node(&key("s")), "master active 0");
    assert!(h.now - t0 < ms(1000));
}

#[test]
fn a_new_index_process_waits_out_the_leases_its_predecessor_may_have_granted() {
    let (h, _) = leased_pair();
    let snapshot = h.persisted.clone();
    let mut h = Harness::with(testkit::params(), snapshot);
    let start = h.now;
    let ms = Duration::from_millis;
    h.run(ms(3000), &set(&["m"]));
    assert_eq!(
        h.node(&key("m")),
        "master active 0",
        "may still hold a lease from the last process"
    );
    h.run(ms(1500), &set(&["m"]));
    assert_eq!(h.node(&key("s")), "master active 0");
    assert!(h.now - start < ms(5000));
}

#[test]
fn a_demoted_master_is_refused_renewals_until_it_holds_the_map_and_leases_can_be_turned_off() {
    let (mut h, session) = leased_pair();
    let before = h.version();
    // Killed: failed over.
    h.index.handle_session_lost(h.now, &key("m"), session, true);
    h.drain();
    h.run(Duration::from_millis(600), &set(&["m"]));
    assert_eq!(h.node(&key("s")), "master active 0");
    let reply = h.cmd_on(session, &format!("node lease m 12121 {before} 3000"));
    assert!(
        reply.starts_with("SERVER_ERROR lease refused: demoted by node map version"),
        "{reply}"
    );
    let now = h.version();
    assert_eq!(
        h.cmd_on(session, &format!("node lease m 12121 {now} 3000")),
        "OK\r\n"
    );
    let reply = h.cmd_on(session, &format!("node lease m 12121 {now} 9000"));
    assert!(reply.contains("longer than the index's 3000 ms"), "{reply}");
    assert_eq!(
        h.cmd_on(session, "node lease nobody 1 1"),
        "SERVER_ERROR no such node: nobody:1\r\n".replace(
            "no such node: nobody:1",
            &Refusal::NoSuchNode("nobody:1".into()).to_string()
        )
    );
    let mut off = testkit::params();
    off.master_lease = Duration::ZERO;
    let mut h = Harness::with(off, None);
    h.add(&["m"]);
    assert_eq!(
        h.cmd("node lease m 12121 1 3000"),
        "ERROR\r\n",
        "a Flare index grants none"
    );
}

#[test]
fn a_report_for_an_older_prepare_is_refused_as_stale() {
    let mut h = Harness::new();
    h.add(&["m", "s"]);
    assert_eq!(h.cmd("node role m 12121 master 1 0"), "OK\r\n");
    assert_eq!(h.cmd("node role s 12121 slave 1 0"), "OK\r\n");
    let first = h.version();
    h.answer_all(&BTreeSet::new());
    // The index marks it down and back up meanwhile: a new prepare.
    h.run(Duration::from_millis(3500), &set(&["s"]));
    assert_eq!(h.node(&key("s")), "slave down 0");
    h.run(Duration::from_millis(1500), &BTreeSet::new());
    let second = h.version();
    assert_eq!(h.node(&key("s")), "slave prepare 0");
    let reply = h.cmd(&format!("node state s 12121 active {first}"));
    assert!(reply.starts_with("SERVER_ERROR stale report"), "{reply}");
    assert_eq!(h.node(&key("s")), "slave prepare 0");
    assert_eq!(
        h.cmd(&format!("node state s 12121 active {second}")),
        "OK\r\n"
    );
    assert_eq!(h.node(&key("s")), "slave active 0");
    // Without an epoch (Flare's tools) the report is taken as before.
    assert_eq!(h.cmd("node role s 12121 proxy"), "OK\r\n");
}

/// Core simulator seed 134: a master's failover waited for its lease; the master restarted meanwhile and registered
/// again, which marked it down; its next answered ping "called off" the waiting failover instead of bringing it up,
/// and it stayed down for good. Now it comes back up.
#[test]
fn a_master_that_restarts_while_its_failover_waits_for_the_lease_comes_back_up() {
    let (mut h, session) = leased_pair();
    let ms = Duration::from_millis;
    // Its probes fail long enough for the monitor to call it down, while its lease is still renewed: the
    // failover waits for the lease.
    for _ in 0..5 {
        h.run(ms(900), &set(&["m"]));
        let v = h.version();
        assert_eq!(
            h.cmd_on(session, &format!("node lease m 12121 {v} 3000")),
            "OK\r\n"
        );
    }
    assert_eq!(h.node(&key("m")), "master active 0", "still leased");
    // It restarts and registers again: a live record registering again is marked down.
    let r = h.cmd("node add m 12121");
    assert!(r.ends_with("END\r\n"), "{r}");
    assert!(h.node(&key("m")).contains("down"), "{}", h.node(&key("m")));
    h.run(ms(3000), &BTreeSet::new());
    assert!(
        !h.node(&key("m")).contains("down"),
        "a node that answers is up again: {}",
        h.node(&key("m"))
    );
}

/// A slave answers reads while it holds a lease, so the index marks a cut slave down (its master then stops
/// replicating to it) only once that lease has certainly ended (core simulator, seeds 1447, 5057, 5842, 8573:
/// reads after a silent cut returned values older than acknowledged sync writes).
#[test]
fn a_slave_cut_off_from_the_index_is_marked_down_only_after_its_lease_has_certainly_ended() {
    // A monitor that calls a node down after a second, well before a lease can end.
    let fast = super::IndexParams {
        monitor_interval: Duration::from_millis(300),
        ..testkit::params()
    };
    let (mut h, session) = leased(Harness::with(fast, None), "s");
    let granted = h.now;
    let ends = h.index.lease_ends_at(&key("s"));
    let ms = Duration::from_millis;
    let dead = set(&["s"]);
    while h.now < ends - ms(50) {
        h.run(ms(50), &dead);
        assert_eq!(
            h.node(&key("s")),
            "slave active 0",
            "at {:?}",
            h.now - granted
        );
    }
    h.run(ms(1500), &dead);
    assert_eq!(
        h.node(&key("s")),
        "slave down 0",
        "down once the lease has ended"
    );
    assert_eq!(h.node(&key("m")), "master active 0");
    // Until it holds the map that marked it down, it gets no new lease.
    let marked = h.version();
    let refused = h.cmd_on(session, &format!("node lease s 12121 {} 3000", marked - 1));
    assert!(
        refused.starts_with("SERVER_ERROR lease refused"),
        "{refused}"
    );
}
