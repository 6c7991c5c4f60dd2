//! The simulator's post-mortems, replayed on one node in the [`testkit`](super::testkit): each test names the
//! named scenario of `sim/src/named.rs` or the swarm seed of `sim/tests/swarm.rs` that found the bug, and drives
//! the node through the fault that exposed it, in milliseconds instead of a whole simulated cluster.
//!
//! Nodes are `a`, `b`, `c` on port 1 (keys `a:1`, ...); every map is written as `(name, role, state, partition)`.

use std::time::Duration;

use bytes::Bytes;

use super::rebuild::{CHECK_RETRY, DUMP_IDLE, REPORT_RETRY};
use super::targets::WriteFailure;
use super::testkit::{line, settings, stats_nodes_reply, stats_reply, Answer, Kit, Rec};
use super::StoreOp;
use crate::item::Entry;
use crate::protocol::reply::{ReplyEvent, ValueBlock};
use crate::protocol::{ErrorReply, Reply};
use crate::storage::Storage;

const A_MASTER_B_SLAVE: &[Rec<'static>] =
    &[("a", "master", "active", 0), ("b", "slave", "active", 0)];

fn stored(a: &Answer) -> bool {
    matches!(a, Answer::Reply(Reply::Stored { .. }))
}

fn server_error(a: &Answer) -> Option<String> {
    match a {
        Answer::Reply(Reply::Error(ErrorReply::Server(m))) => Some(m.to_string()),
        _ => None,
    }
}

fn version_of(kit: &Kit, key: &str) -> Option<u64> {
    match kit
        .store
        .storage()
        .get(key.as_bytes())
        .expect("memory engine")
    {
        Some(Entry::Item(i)) => Some(i.version),
        _ => None,
    }
}

/// A master `a` with an active slave `b` whose link is open.
fn master_with_slave() -> Kit {
    let mut k = Kit::registered("a", 2, A_MASTER_B_SLAVE);
    // The link opens on the first entry (or on the map).
    let first = k.set("k0", "v0", false);
    assert!(stored(&first), "{first:?}");
    k.open_link("b:1");
    let s = k.ack("b:1", "STORED");
    assert_eq!(&s.key[..], b"k0");
    k
}

/// `slaves_converge_after_partition`: a replication link that lost its packets (no reply, no reset) held
/// replication forever, and every later sync write failed. Now a link unanswered for 3 x proxy-timeout is closed,
/// opened again, and what was in flight is sent again.
#[test]
fn a_replication_link_that_stops_answering_is_reopened_and_its_entries_sent_again() {
    let mut k = master_with_slave();
    assert!(stored(&k.set("k1", "v1", false)));
    assert_eq!(k.sent.len(), 1, "k1 is in flight");
    k.live(Duration::from_millis(2900));
    assert!(
        k.links_up.contains(&"b:1".to_string()),
        "not closed before the stall"
    );
    k.live(Duration::from_millis(200));
    assert!(k.log.iter().any(|l| l == "link close b:1"), "{:?}", k.log);
    k.live(Duration::from_secs(1));
    k.open_link("b:1");
    let again = k.ack("b:1", "STORED");
    assert_eq!(
        (&again.key[..], again.seq),
        (&b"k1"[..], 2),
        "k1 sent again"
    );
    // Replication flows again: a sync write is acknowledged once the slave answers.
    let Answer::Waiting(id, _) = k.set("k2", "v2", true) else {
        panic!("a sync write waits for its slave")
    };
    k.ack("b:1", "STORED");
    assert_eq!(k.done.get(&id), Some(&Ok(())));
}

/// `deposed_master_keeps_writing`: the deposed master's replication reached the promoted slave, which applied it
/// or answered `NOT_STORED`, and the deposed master counted either as replicated and acknowledged sync writes the
/// partition then lost. Now the new master refuses replication from a node that is not its master, and the
/// refusal is never counted as an acknowledgement.
#[test]
fn replication_from_a_deposed_master_is_refused_and_not_counted() {
    // The deposed master `a` still believes its old map; its sync write goes to `b`.
    let mut a = master_with_slave();
    let Answer::Waiting(id, _) = a.set("k", "old", true) else {
        panic!("a sync write waits for its slave")
    };
    let entry = a.sent.last().cloned().expect("sent to b");
    // `b` was promoted in map 3, where `a` is down.
    let mut b = Kit::registered(
        "b",
        3,
        &[("a", "proxy", "down", -1), ("b", "master", "active", 0)],
    );
    let answer = b.apply(&entry.bytes);
    let refusal = server_error(&answer).expect("refused");
    assert_eq!(refusal, "not a replica of the sender");
    assert_eq!(version_of(&b, "k"), None, "the new master did not apply it");
    // `a` hears the refusal: the sync write is not acknowledged, before or after its deadline.
    a.ack("b:1", &format!("SERVER_ERROR {refusal}"));
    assert_eq!(a.done.get(&id), None);
    a.live(Duration::from_millis(1100));
    assert_eq!(a.done.get(&id), Some(&Err(WriteFailure::Replication)));
}

/// `slave_restarts_while_index_down` (swarm seed 375): a restarted index pushed its map to every node; the push
/// waited while a node registered, and was applied after the registration, whose map had version 0: the node took
/// its old role back. Now the registration's map carries its exact version and an older push is refused.
#[test]
fn a_push_older_than_the_registration_map_is_refused() {
    let mut k = Kit::new("b");
    k.answer_registration(
        7,
        &[("a", "master", "active", 0), ("b", "proxy", "active", -1)],
    );
    assert_eq!(k.version(), 7);
    let old = k.sync(6, A_MASTER_B_SLAVE);
    assert_eq!(old, Err("SERVER_ERROR node sync error"));
    assert_eq!(k.me().0, "proxy", "the old role is not taken back");
    assert!(k.sync(8, A_MASTER_B_SLAVE).is_ok());
}

/// Swarm seeds 1036, 1176, 1970: a registering node labelled an older map with a newer version (a change came
/// between `node add` and the version read). Now the map is read between two `stats`, again until they agree.
#[test]
fn a_registration_whose_map_reads_disagree_reads_the_map_again() {
    let mut k = Kit::new("b");
    let v8: &[Rec<'_>] = &[("a", "proxy", "down", -1), ("b", "master", "active", 0)];
    k.answer_registration_read(
        7,
        8,
        &[("a", "master", "active", 0), ("b", "slave", "active", 0)],
    );
    assert_eq!(
        *k.node.registration(),
        super::Registration::Pending,
        "not registered on a map of unknown version"
    );
    let reply = vec![stats_reply(8), stats_nodes_reply(v8), stats_reply(8)];
    k.answer("stats", Ok(reply));
    assert_eq!(*k.node.registration(), super::Registration::Done);
    assert_eq!((k.version(), k.me().0.as_str()), (8, "master"));
}

/// A slave `b` given partition 0 in map 3 (it was a proxy in map 2), with its copy started.
fn preparing_slave() -> Kit {
    let mut k = Kit::registered(
        "b",
        2,
        &[("a", "master", "active", 0), ("b", "proxy", "active", -1)],
    );
    k.sync(
        3,
        &[("a", "master", "active", 0), ("b", "slave", "prepare", 0)],
    )
    .expect("applied");
    assert!(
        k.log.iter().any(|l| l == "store FlushAll"),
        "a copy starts empty"
    );
    k
}

fn dump_item(key: &str) -> ValueBlock {
    ValueBlock {
        key: Bytes::copy_from_slice(key.as_bytes()),
        flags: 0,
        version: Some(1),
        exptime: Some(0),
        value: Bytes::from_static(b"v"),
    }
}

/// Brings a preparing slave's copy from the source check to the report: the source lists it, 2 items, end.
fn copy_to_report(k: &mut Kit) {
    k.answer(
        "stats nodes",
        Ok(vec![
            stats_reply(k.version()),
            stats_nodes_reply(&[("a", "master", "active", 0), ("b", "slave", "prepare", 0)]),
        ]),
    );
    k.answer(
        "stats",
        Ok(vec![vec![
            ReplyEvent::Item(Bytes::from_static(b"STAT curr_items 2")),
            ReplyEvent::End,
        ]]),
    );
    let (pull, source, dump) = k.pulls.first().cloned().expect("a dump pull");
    assert_eq!((source.as_str(), dump.as_str()), ("a:1", "dump 0 0 1 0"));
    for key in ["x", "y"] {
        assert!(k.node.handle_dump_item(k.now, pull, &dump_item(key)));
    }
    k.pulls.clear();
    k.node.handle_dump_end(k.now, pull, Ok(()));
    k.pump();
}

/// `slave_added_while_master_cannot_hear_index` (swarm seed 1082), seed 229 and core simulator seed 151: a slave
/// copied a master that did not list it yet (or listed it down, or held an older map), reported itself active, and missed every write the master, unaware of it,
/// never replicated to it. Now the copy starts only once the source lists it, in a state other than down.
#[test]
fn a_slave_copies_only_from_a_master_that_lists_it_alive() {
    let mut k = preparing_slave();
    let unaware: &[Rec<'_>] = &[("a", "master", "active", 0), ("b", "proxy", "active", -1)];
    let down: &[Rec<'_>] = &[("a", "master", "active", 0), ("b", "slave", "down", 0)];
    // Core simulator seed 151: a source two maps behind still lists this node active from before it went down;
    // it will drop it as a target when it catches up. Its map must be at least the prepare's.
    let stale: &[Rec<'_>] = &[("a", "master", "active", 0), ("b", "slave", "active", 0)];
    for (version, map) in [(3, unaware), (3, down), (2, stale)] {
        k.answer(
            "stats nodes",
            Ok(vec![stats_reply(version), stats_nodes_reply(map)]),
        );
        assert!(
            k.pulls.is_empty() && !k.has_call("node state"),
            "{:?}",
            k.log
        );
        k.live(CHECK_RETRY);
    }
    copy_to_report(&mut k);
    assert!(k.log.iter().any(|l| l == "store PersistUnlogged"));
    assert!(k.has_call("node state b 1 active 3"), "{:?}", k.calls);
}

/// `reconstruction_ends_while_index_down` (swarm seed 540): the end of a copy was reported once; the report failed
/// and the index kept the node in prepare for good. Now it is retried until the index answers.
#[test]
fn the_report_of_a_finished_copy_is_retried_until_the_index_answers() {
    let mut k = preparing_slave();
    copy_to_report(&mut k);
    for _ in 0..3 {
        k.answer("node state b 1 active 3", Err("connection refused".into()));
        k.live(REPORT_RETRY);
    }
    k.answer("node state b 1 active 3", Ok(line("OK")));
    k.live(REPORT_RETRY * 3);
    assert!(!k.has_call("node state"), "reported once it was answered");
    assert!(!k.node.rebuild_stats().running);
}

/// Swarm seed 52: a dump pulled over a connection that lost its packets hung the reconstruction forever. Now a
/// source silent for `DUMP_IDLE` fails the copy, which gives the role up.
#[test]
fn a_dump_source_gone_silent_fails_the_copy() {
    let mut k = preparing_slave();
    k.answer(
        "stats nodes",
        Ok(vec![
            stats_reply(k.version()),
            stats_nodes_reply(&[("a", "master", "active", 0), ("b", "slave", "prepare", 0)]),
        ]),
    );
    k.answer("stats", Ok(vec![vec![ReplyEvent::End]]));
    assert_eq!(k.pulls.len(), 1);
    k.live(DUMP_IDLE - Duration::from_millis(100));
    assert_eq!(k.pulls.len(), 1, "not given up before the idle limit");
    k.live(Duration::from_millis(200));
    assert!(k.pulls.is_empty(), "the pull was aborted");
    assert!(k.has_call("node role b 1 proxy 0 -1 3"), "{:?}", k.calls);
}

/// Swarm seeds 683, 1185 (and 0): a slave still copying missed the maps in which the index marked it down and up
/// again; its master had stopped replicating to it meanwhile, and the copy went on and reported active, missing
/// those writes. Now a node in prepare that misses a map version starts its copy over, and the old copy's items
/// are no longer taken.
#[test]
fn a_copy_that_misses_a_map_version_starts_over() {
    let mut k = preparing_slave();
    k.answer(
        "stats nodes",
        Ok(vec![
            stats_reply(k.version()),
            stats_nodes_reply(&[("a", "master", "active", 0), ("b", "slave", "prepare", 0)]),
        ]),
    );
    k.answer("stats", Ok(vec![vec![ReplyEvent::End]]));
    let (old_pull, _, _) = k.pulls[0].clone();
    let flushes = k.log.iter().filter(|l| *l == "store FlushAll").count();
    // Map 4 (b down) never arrived; map 5 has it in prepare again.
    k.sync(
        5,
        &[("a", "master", "active", 0), ("b", "slave", "prepare", 0)],
    )
    .expect("applied");
    assert_eq!(
        k.log.iter().filter(|l| *l == "store FlushAll").count(),
        flushes + 1,
        "started over from an empty store"
    );
    assert!(!k.node.handle_dump_item(k.now, old_pull, &dump_item("late")));
    k.pulls.retain(|p| p.0 != old_pull);
    copy_to_report(&mut k);
    assert!(
        k.has_call("node state b 1 active 5"),
        "reported for the new prepare: {:?}",
        k.calls
    );
}

/// Swarm seed 1763: after a failover a slave held a newer version of a key (from the deposed master) than the
/// promoted master issued; it skipped the new master's writes as not newer and served the stale item. Now a node
/// raises its version floor to the map's epoch before the map takes effect, so a promoted master versions above
/// everything its predecessor issued.
#[test]
fn a_promoted_master_versions_its_writes_above_its_predecessors() {
    let mut b = Kit::registered("b", 4, A_MASTER_B_SLAVE);
    let mut a = Kit::registered("a", 4, A_MASTER_B_SLAVE);
    assert!(stored(&a.set("k", "from-a", false)));
    a.open_link("b:1");
    let entry = a.sent.last().cloned().expect("sent");
    assert!(matches!(
        b.apply(&entry.bytes),
        Answer::Reply(Reply::Stored { .. })
    ));
    let predecessor = version_of(&b, "k").expect("replicated");
    b.log.clear();
    b.sync(
        5,
        &[("a", "proxy", "down", -1), ("b", "master", "active", 0)],
    )
    .expect("applied");
    let floor = crate::versions::epoch_floor(5);
    assert_eq!(
        b.log
            .iter()
            .position(|l| *l == format!("store {:?}", StoreOp::RaiseVersionFloor(floor))),
        Some(0),
        "the floor is raised before the map is published: {:?}",
        b.log
    );
    assert!(stored(&b.set("k", "from-b", false)));
    let now = version_of(&b, "k").expect("written");
    assert!(
        now >= floor && now > predecessor,
        "{now} vs floor {floor}, predecessor {predecessor}"
    );
}

/// `master_down_while_partition_activated` (swarm seed 91): a node removed the keys that moved to a new partition
/// only when a push raised the partition count; a node down at the activation registered with the grown map and
/// kept the moved keys for good. Now an active member that registers with more than one partition removes them.
#[test]
fn a_member_registering_with_a_grown_map_removes_the_moved_keys() {
    let mut k = Kit::new("b");
    k.answer_registration(
        9,
        &[
            ("a", "master", "active", 0),
            ("b", "master", "active", 1),
            ("c", "master", "active", 2),
        ],
    );
    assert!(
        k.log
            .iter()
            .any(|l| *l == format!("store {:?}", StoreOp::RemoveMovedKeys { partition: 1 })),
        "{:?}",
        k.log
    );
}

/// The split brain of the fault test on real processes (`tests/tests/split_brain.rs`): a master cut off from the
/// index alone went on acknowledging writes after its slave was promoted. Now a master acknowledges only within
/// its lease (renewal send time + `master-lease`), and refuses writes once renewals go unanswered that long.
#[test]
fn a_master_whose_renewals_go_unanswered_refuses_writes_when_its_lease_ends() {
    let mut k = Kit::registered("a", 2, &[("a", "master", "active", 0)]);
    k.live(Duration::from_millis(2500));
    assert!(stored(&k.set("k", "before", false)));
    // The cut: renewals are sent and never answered. The last granted one was sent at most 1 s ago.
    let last_grant = k.now;
    let mut acked_until = k.now;
    while k.now < last_grant + Duration::from_secs(5) {
        k.advance(Duration::from_millis(10));
        match k.set("k", "during", false) {
            a if stored(&a) => acked_until = k.now,
            a => assert_eq!(
                server_error(&a).as_deref(),
                Some("master lease expired (cut off from the index server); not acknowledging writes")
            ),
        }
    }
    let lease = Duration::from_secs(3);
    assert!(
        acked_until < last_grant + lease,
        "acknowledged {:?} after the last grant",
        acked_until - last_grant
    );
    assert!(
        acked_until + lease > last_grant + Duration::from_secs(1),
        "stopped too early"
    );
    // The index sees the node close its stuck session: by then it acknowledges nothing.
    assert!(k.log.iter().any(|l| l == "session close"), "{:?}", k.log);
    assert!(!k.node.may_acknowledge(k.now));
}

/// Core simulator seeds 1447, 5057, 5842, 8573, 9184: after a silent cut between a slave (or a deposed master)
/// and the index, its master stopped replicating to it once the index marked it down, and it went on answering
/// reads from its store with values older than acknowledged sync writes. Now a node that holds a partition answers
/// reads from its store only within its lease (the index marks it down only after that lease has ended).
#[test]
fn a_slave_whose_renewals_go_unanswered_refuses_reads_when_its_lease_ends() {
    let mut k = Kit::registered("b", 2, A_MASTER_B_SLAVE);
    k.live(Duration::from_millis(1500));
    let get = |k: &mut Kit| k.request(b"get k\r\n");
    assert!(
        matches!(get(&mut k), Answer::Reply(Reply::Values { .. })),
        "within the lease the slave answers from its store"
    );
    let last_grant = k.now;
    let mut served_until = k.now;
    while k.now < last_grant + Duration::from_secs(5) {
        k.advance(Duration::from_millis(10));
        match get(&mut k) {
            Answer::Reply(Reply::Values { .. }) => served_until = k.now,
            a => assert_eq!(
                server_error(&a).as_deref(),
                Some("lease expired (cut off from the index server); not serving reads")
            ),
        }
    }
    assert!(served_until < last_grant + Duration::from_secs(3));
    // A proxy's node has no partition: it needs no lease, and reads through it go to the master.
    let mut p = Kit::registered(
        "p",
        2,
        &[("a", "master", "active", 0), ("p", "proxy", "active", -1)],
    );
    p.advance(Duration::from_secs(5));
    assert!(matches!(get(&mut p), Answer::Forwarded(ref n) if n == &["a:1".to_string()]));
}

/// A sync write whose slave answers after the master's lease ended is not acknowledged either.
#[test]
fn a_sync_write_answered_after_the_lease_ended_is_refused() {
    // A long proxy-timeout, so that the write's own deadline does not fail it first: the lease rule alone.
    let mut k = Kit::with(settings_with_timeout("a", Duration::from_secs(10)));
    k.answer_registration(2, A_MASTER_B_SLAVE);
    k.open_session();
    k.grant_renewals();
    assert!(stored(&k.set("k0", "v0", false)));
    k.open_link("b:1");
    k.ack("b:1", "STORED");
    let Answer::Waiting(id, _) = k.set("k", "v", true) else {
        panic!("waits for its slave")
    };
    k.advance(Duration::from_millis(3500));
    k.ack("b:1", "STORED");
    assert_eq!(k.done.get(&id), Some(&Err(WriteFailure::Lease)));
}

fn settings_with_timeout(name: &str, proxy_timeout: Duration) -> super::NodeSettings {
    super::NodeSettings {
        proxy_timeout,
        ..settings(name, Duration::from_secs(3))
    }
}

/// Core simulator seed 105: a node restarted while the index was down; the restarted index pushed its map to it
/// before its `node add` was answered, and the node applied it with the default partition parameters (not the
/// cluster's `meta`), routing keys to the wrong partition. Now a push before registration is refused.
#[test]
fn a_push_before_the_registration_is_answered_is_refused() {
    let mut k = Kit::new("b");
    assert!(k.has_call("node add"));
    let early = k.sync(13, A_MASTER_B_SLAVE);
    assert_eq!(early, Err("SERVER_ERROR node sync error"));
    assert!(
        k.session_opening.is_none(),
        "no session before registration"
    );
    k.answer_registration(13, A_MASTER_B_SLAVE);
    assert_eq!((k.version(), k.me().0.as_str()), (13, "slave"));
}

/// Core simulator seed 1144: a restarted index pushed its current map again; a slave whose copy had just been
/// reported took the same map for a missed version, emptied its store and started over, and the next map made it
/// active with nothing in it. Now the same map again changes nothing.
#[test]
fn the_same_map_pushed_again_changes_nothing() {
    let mut k = preparing_slave();
    copy_to_report(&mut k);
    let flushes = k.log.iter().filter(|l| *l == "store FlushAll").count();
    let calls = k.calls.len();
    k.sync(
        3,
        &[("a", "master", "active", 0), ("b", "slave", "prepare", 0)],
    )
    .expect("the same map is taken");
    assert_eq!(
        k.log.iter().filter(|l| *l == "store FlushAll").count(),
        flushes,
        "{:?}",
        k.log
    );
    assert_eq!(k.calls.len(), calls, "no new copy: {:?}", k.calls);
    assert!(k.has_call("node state b 1 active 3"));
}
