//! Named scenarios: hard cases pinned by hand (layout, fault plan, storage model), each still varied by its seed
//! (workload, latencies). `tests/scenarios.rs` and `tests/regressions.rs` run them on fixed seed sets;
//! `flare-sim --scenario NAME` sweeps them.
//!
//! Offsets in the plans are from the start of the workload. Failure detection takes the index about 3–6 s
//! (monitor interval 1 s × threshold 3, plus the 1 s read timeout), so a fault shorter than ~3 s goes unnoticed
//! by the index and one longer than ~6 s leads to a failover or a demotion.
//!
//! The `index_*` scenarios run an index group (3 or 5 servers, `index`, `index1`, ...); [`INDEX_LEADER`] in their
//! plans is the server that leads when the fault starts (see `faults`).

use std::time::Duration;

use crate::scenario::{
    drawn_index_servers, CrashModel, Fault, Scenario, Timed, INDEX, INDEX_LEADER,
};

/// Every named scenario (`swarm` is the random one, with 1, 3 or 5 index servers as the seed draws:
/// [`Scenario::group_swarm`]; `swarm1` is the same with one index server, as the seeds that found bugs before the
/// index group ran: [`Scenario::swarm`]; `swarm_group` always has a group: 3 servers where `swarm` has one).
pub const NAMES: &[&str] = &[
    "swarm",
    "swarm1",
    "swarm_group",
    "sync_writes_survive_master_crash",
    "slaves_converge_after_partition",
    "proxy_reads_match_master",
    "restart_index_during_writes",
    "deposed_master_keeps_writing",
    "slave_restarts_while_index_down",
    "slaves_added_under_load",
    "slave_added_while_master_cannot_hear_index",
    "reconstruction_ends_while_index_down",
    "machine_crash_of_a_lone_master",
    "partition_added_under_load",
    "partition_added_under_crashes",
    "master_down_while_partition_activated",
    "async_loss_within_reported_backlog",
    "index_leader_crash",
    "index_minority_partition",
    "index_majority_down_then_back",
    "demoted_master_renews_at_a_new_leader",
];

/// The scenario `name` for `seed`.
pub fn scenario(name: &str, seed: u64) -> Option<Scenario> {
    let s = match name {
        "swarm" => Scenario::group_swarm(seed),
        "swarm1" => Scenario {
            name: "swarm1".into(),
            ..Scenario::swarm(seed)
        },
        "swarm_group" => Scenario {
            name: "swarm_group".into(),
            ..Scenario::group_swarm_of(seed, drawn_index_servers(seed).max(3))
        },
        "sync_writes_survive_master_crash" => sync_writes_survive_master_crash(seed),
        "slaves_converge_after_partition" => slaves_converge_after_partition(seed),
        "proxy_reads_match_master" => proxy_reads_match_master(seed),
        "restart_index_during_writes" => restart_index_during_writes(seed),
        "deposed_master_keeps_writing" => deposed_master_keeps_writing(seed),
        "slave_restarts_while_index_down" => slave_restarts_while_index_down(seed),
        "slaves_added_under_load" => slaves_added_under_load(seed),
        "slave_added_while_master_cannot_hear_index" => {
            slave_added_while_master_cannot_hear_index(seed)
        }
        "reconstruction_ends_while_index_down" => reconstruction_ends_while_index_down(seed),
        "machine_crash_of_a_lone_master" => machine_crash_of_a_lone_master(seed),
        "partition_added_under_load" => partition_added_under_load(seed),
        "partition_added_under_crashes" => partition_added_under_crashes(seed),
        "master_down_while_partition_activated" => master_down_while_partition_activated(seed),
        "async_loss_within_reported_backlog" => async_loss_within_reported_backlog(seed),
        "index_leader_crash" => index_leader_crash(seed),
        "index_minority_partition" => index_minority_partition(seed),
        "index_majority_down_then_back" => index_majority_down_then_back(seed),
        "demoted_master_renews_at_a_new_leader" => demoted_master_renews_at_a_new_leader(seed),
        _ => return None,
    };
    Some(s)
}

fn at(ms: u64, fault: Fault) -> Timed {
    Timed {
        at: Duration::from_millis(ms),
        fault,
    }
}

fn cut(a: &str, b: &str, from: u64, to: u64) -> [Timed; 2] {
    [
        at(from, Fault::Partition(a.into(), b.into())),
        at(to, Fault::Repair(a.into(), b.into())),
    ]
}

fn crash(h: &str, from: u64, to: u64) -> [Timed; 2] {
    [
        at(from, Fault::Crash(h.into())),
        at(to, Fault::Restart(h.into())),
    ]
}

/// A base with the given layout and a busy, mostly-sync workload.
fn base(name: &str, seed: u64, partitions: u32, slaves: u32, proxies: u32) -> Scenario {
    let mut s = Scenario::named(name, seed);
    s.partitions = partitions;
    s.slaves = slaves;
    s.proxies = proxies;
    s.clients = 2;
    s.keys = 8;
    s.counters = 1;
    s.sync_ratio = 0.8;
    s.think_ms = (0, 10);
    s.fault_phase = Duration::from_secs(10);
    s
}

fn plan(s: &mut Scenario, events: impl IntoIterator<Item = Timed>) {
    s.faults = events.into_iter().collect();
    s.faults.sort_by_key(|t| t.at);
}

/// Masters crash (partition 0's, then partition 1's) and come back: their slaves are promoted, every sync write
/// acknowledged before or after survives on the new masters. Odd seeds have two slaves per partition.
pub fn sync_writes_survive_master_crash(seed: u64) -> Scenario {
    let mut s = base(
        "sync_writes_survive_master_crash",
        seed,
        2,
        1 + (seed % 2) as u32,
        1,
    );
    let m1 = s.master_of(1);
    plan(
        &mut s,
        crash("n0", 2_000, 7_000)
            .into_iter()
            .chain(crash(&m1, 4_000, 9_000)),
    );
    s
}

/// The master and its slave lose every packet between them for a second, twice, without the index noticing:
/// replication must resume, and the slave must end with exactly the master's items.
///
/// Regression: the replication stream waited forever on a connection that had lost packets (turmoil drops them,
/// like a partition or a dead peer that never resets), so the slave fell behind for good and every later sync
/// write failed.
pub fn slaves_converge_after_partition(seed: u64) -> Scenario {
    let mut s = base(
        "slaves_converge_after_partition",
        seed,
        1,
        1 + (seed % 2) as u32,
        0,
    );
    plan(
        &mut s,
        cut("n0", "n1", 1_500, 2_500)
            .into_iter()
            .chain(cut("n0", "n1", 5_000, 5_800)),
    );
    s
}

/// The proxy loses every packet to each master in turn for a moment: reads and writes through it must work again
/// afterwards, and return what the masters hold.
///
/// Regression: a peer connection whose requests timed out was kept, so every later forward of those keys timed out
/// on it too (`SERVER_ERROR proxy error` for good).
pub fn proxy_reads_match_master(seed: u64) -> Scenario {
    let mut s = base("proxy_reads_match_master", seed, 2, 1, 1);
    let m1 = s.master_of(1);
    plan(
        &mut s,
        cut("n4", "n0", 1_500, 2_500)
            .into_iter()
            .chain(cut("n4", &m1, 3_000, 3_800)),
    );
    s
}

/// The index crashes twice under load; a master crashes while it is down (no failover until it is back).
pub fn restart_index_during_writes(seed: u64) -> Scenario {
    let mut s = base("restart_index_during_writes", seed, 2, 1, 1);
    plan(
        &mut s,
        crash(INDEX, 1_000, 3_000)
            .into_iter()
            .chain(crash(INDEX, 5_000, 8_000))
            .chain(crash("n0", 6_000, 9_500)),
    );
    s
}

/// Partition 0's master loses the index (but not its slave, nor the clients) long enough to be replaced: it keeps
/// believing it is the master, and clients keep writing through it.
///
/// Regression: its replication reached the promoted slave, which, being master now, applied it or answered
/// `NOT_STORED`; the deposed master counted either as replicated and acknowledged sync writes that the partition
/// then lost (the new master kept its own, newer versions).
///
/// The cut lasts until the calm phase, and the calm phase only reads, so the final state is what the deposed
/// period left: a write the deposed master acknowledged and the new master refused is then the last write of its
/// key, and its loss shows.
pub fn deposed_master_keeps_writing(seed: u64) -> Scenario {
    let mut s = base(
        "deposed_master_keeps_writing",
        seed,
        1,
        1 + (seed % 2) as u32,
        1,
    );
    s.keys = 3;
    s.counters = 0;
    s.clients = 3;
    s.sync_ratio = 0.9;
    s.think_ms = (0, 5);
    s.calm_writes = false;
    plan(
        &mut s,
        [at(1_000, Fault::Partition("n0".into(), INDEX.into()))],
    );
    s
}

/// A slave crashes and restarts while the index is down, and is still registering when the index comes back.
///
/// Regression: the restarted index pushed its map to every node at once; the push waited in the slave's listen
/// queue while it registered, and was applied after the registration, whose map had version 0: the node took its
/// old role back (active slave) while the index had made it a proxy, and served stale reads. Found by swarm seed
/// 375; this is its plan, simplified.
pub fn slave_restarts_while_index_down(seed: u64) -> Scenario {
    let mut s = base("slave_restarts_while_index_down", seed, 1, 1, 0);
    s.keys = 16;
    s.counters = 3;
    s.sync_ratio = 0.5;
    s.think_ms = (0, 5);
    plan(
        &mut s,
        [
            at(1_000, Fault::Crash(INDEX.into())),
            at(8_400, Fault::Crash("n1".into())),
            at(8_750, Fault::Restart("n1".into())),
            at(8_760, Fault::Partition("n1".into(), INDEX.into())),
        ],
    );
    s.fault_phase = Duration::from_millis(9_800);
    s
}

/// Slaves are added while the workload runs and nodes crash and get cut off: a slave that reports itself active
/// after its reconstruction must hold exactly its master's items.
pub fn slaves_added_under_load(seed: u64) -> Scenario {
    let mut s = base("slaves_added_under_load", seed, 2, 1, 1);
    s.slaves_under_load = true;
    s.keys = 32;
    s.large_ratio = 0.1;
    plan(
        &mut s,
        cut("n1", "n0", 600, 900)
            .into_iter()
            .chain(crash("n3", 3_000, 4_000)),
    );
    s
}

/// A slave is added while its master's link to the index holds every message for two seconds (not long enough for
/// the index to mark the master down): the slave gets the map, the master does not, yet.
///
/// Regression: the slave copied the master with `dump` and reported itself active at once; the master, unaware of
/// it, replicated nothing to it and acknowledged sync writes without it. Those writes were missing on the slave
/// for good (and lost after a failover to it). Found by swarm seed 1082. The calm phase only reads, so the keys
/// written only in the gap stay different.
pub fn slave_added_while_master_cannot_hear_index(seed: u64) -> Scenario {
    let mut s = base("slave_added_while_master_cannot_hear_index", seed, 1, 1, 0);
    s.slaves_under_load = true;
    s.keys = 64;
    s.counters = 0;
    s.calm_writes = false;
    s.fault_phase = Duration::from_millis(2_700);
    plan(
        &mut s,
        [
            at(0, Fault::Hold("n0".into(), INDEX.into())),
            at(2_500, Fault::Release("n0".into(), INDEX.into())),
        ],
    );
    s
}

/// A slave is added while its master is cut off from the index (so the master never learns of it, and the slave's
/// reconstruction gives up), and the index is down when the slave reports the outcome.
///
/// Regression: the node reported the end of its reconstruction once; the report failed, and the index kept the
/// node in `prepare` for good (never served, never rebuilt): the cluster never converged. Found by swarm seed 540.
pub fn reconstruction_ends_while_index_down(seed: u64) -> Scenario {
    let mut s = base("reconstruction_ends_while_index_down", seed, 1, 1, 1);
    s.slaves_under_load = true;
    s.fault_phase = Duration::from_secs(9);
    plan(
        &mut s,
        cut("n0", INDEX, 300, 4_900)
            .into_iter()
            .chain(crash(INDEX, 3_600, 7_600)),
    );
    s
}

/// The negative case, as turmoil's durability tests have one: a partition with no slave, whose master loses its
/// unsynced writes in a machine crash. Nothing survives the crash, and the sync-write checker must say so once the
/// "no copy survived" excuse is taken away (see `tests/scenarios.rs`).
///
/// The crash comes late in the fault phase and the calm phase only reads, so little is written again after it.
pub fn machine_crash_of_a_lone_master(seed: u64) -> Scenario {
    let mut s = base("machine_crash_of_a_lone_master", seed, 1, 0, 1);
    s.crash_model = CrashModel::Machine;
    s.keys = 16;
    s.calm_writes = false;
    plan(&mut s, crash("n0", 8_000, 8_300));
    s.fault_phase = Duration::from_millis(8_500);
    s
}

/// A partition is added while the workload runs (the spare node n5 becomes the master of partition 2): the index
/// is down while the new master prepares (its `ready` report must get through later), the proxy loses the new
/// master for a moment, and a slave its master. Once the new partition is active, every key is held by its own
/// partition only (the moved keys are gone from the old masters and their slaves) and reads the same through every
/// node. The seed moves the start of the growth by up to 0.5 s, so the faults hit different steps of it.
pub fn partition_added_under_load(seed: u64) -> Scenario {
    let mut s = base("partition_added_under_load", seed, 2, 1, 1);
    s.grow_partition = true;
    s.keys = 32;
    let start = 1_000 + seed % 5 * 100;
    s.grow_at = Duration::from_millis(start);
    plan(
        &mut s,
        crash(INDEX, start + 50, start + 2_050)
            .into_iter()
            .chain(cut("n4", "n5", start + 300, start + 1_300))
            .chain(cut("n0", "n1", 600, 900)),
    );
    s
}

/// A partition is added while nodes crash: the old master of partition 0 (a source of the new master's copy)
/// crashes just after the growth starts and is failed over; the new master crashes and restarts (while preparing,
/// or once active, depending on the seed); then the index crashes. The admin re-issues the role as an operator
/// would whenever the spare node ends up a proxy. Odd seeds crash machines (unsynced writes lost).
pub fn partition_added_under_crashes(seed: u64) -> Scenario {
    let mut s = base("partition_added_under_crashes", seed, 2, 1, 1);
    s.grow_partition = true;
    s.keys = 32;
    if seed % 2 == 1 {
        s.crash_model = CrashModel::Machine;
    }
    let start = 1_000;
    s.grow_at = Duration::from_millis(start);
    let spare_crash = start + 100 + seed % 7 * 400;
    plan(
        &mut s,
        crash("n0", start + 30, start + 6_000)
            .into_iter()
            .chain(crash("n5", spare_crash, spare_crash + 700))
            .chain(crash(INDEX, 7_500, 8_500)),
    );
    s
}

/// Swarm seed 91's plan, pinned (its seed varies only the workload and the latencies): partition 1's master
/// crashes, the index crashes, restarts and fails partition 1 over to its slave, which has crashed meanwhile and
/// is down when the new partition is activated; it comes back after the activation as partition 1's master.
///
/// Regression: a node removed the keys that moved to a new partition only when a push raised the partition count.
/// A node that was down at the activation (here a promoted slave; a preserved master likewise) registered with a
/// map whose count had already grown, never got that push, and kept the moved keys for good: its `dump` held keys
/// of partition 2. Found by swarm seed 91.
pub fn master_down_while_partition_activated(seed: u64) -> Scenario {
    let pinned = Scenario::swarm(91);
    let mut s = Scenario::named("master_down_while_partition_activated", seed);
    s.partitions = pinned.partitions;
    s.slaves = pinned.slaves;
    s.proxies = pinned.proxies;
    s.clients = pinned.clients;
    s.hash = pinned.hash;
    s.keys = pinned.keys;
    s.counters = pinned.counters;
    s.sync_ratio = pinned.sync_ratio;
    s.fault_phase = pinned.fault_phase;
    s.faults = pinned.faults.clone();
    s.grow_partition = true;
    s.grow_at = pinned.grow_at;
    s
}

/// A mostly-async workload while the link from the master to its slave is slow, then cut, so a replication backlog
/// builds up; then the master crashes, just before the fault phase ends, and its slave takes over. The
/// acknowledged async writes lost in the failover must be no more than the backlog the master had to that slave
/// at the crash (`check::async_loss_bounded`). The calm phase only reads, so the losses stay visible.
pub fn async_loss_within_reported_backlog(seed: u64) -> Scenario {
    let mut s = base("async_loss_within_reported_backlog", seed, 1, 1, 1);
    s.check_async_loss = true;
    s.sync_ratio = 0.1;
    s.keys = 64;
    s.counters = 2;
    s.clients = 3;
    s.think_ms = (0, 3);
    s.calm_writes = false;
    let crash_at = 3_000 + seed % 5 * 50;
    // The fault phase ends soon after the crash, so no write after it masks what was lost: the calm phase only
    // reads, and the index fails the master over when it comes back (a live record registering again).
    s.fault_phase = Duration::from_millis(crash_at + 300);
    plan(
        &mut s,
        [
            at(
                1_000,
                Fault::Slow("n0".into(), "n1".into(), Duration::from_millis(400)),
            ),
            // The last 300 ms before the crash, the master's replication to the slave is lost on the wire: what it
            // sends then is in its backlog (sent, unanswered) and never reaches the slave.
            at(crash_at - 300, Fault::Partition("n0".into(), "n1".into())),
            at(crash_at, Fault::Crash("n0".into())),
        ],
    );
    s
}

/// The layout of the `index_*` scenarios: two partitions with a slave each and a proxy, under `k` index servers; the
/// fault phase is 12 s.
fn group_base(name: &str, seed: u64, k: u32) -> Scenario {
    let mut s = base(name, seed, 2, 1, 1);
    s.index_servers = k;
    s.fault_phase = Duration::from_secs(12);
    s
}

/// Partition 0's master crashes at 2 s (back at 9 s) and the leading index server crashes around its failover (for 2.5
/// s): before the master crashes, while the group's monitors count its failed probes, or about when it is failed
/// over, as the seed says (`seed % 4`); seeds from 4 on crash the next leader too, at 8 s for a second. Odd seeds run
/// 5 index servers, even ones 3. With a majority up all along, the master must still be failed over before the
/// fault phase ends (see `tests/scenarios.rs`).
pub fn index_leader_crash(seed: u64) -> Scenario {
    let mut s = group_base("index_leader_crash", seed, 3 + 2 * (seed % 2) as u32);
    let leader_crash = [1_500, 3_000, 4_500, 5_500][(seed % 4) as usize];
    let mut events: Vec<Timed> = crash("n0", 2_000, 9_000)
        .into_iter()
        .chain(crash(INDEX_LEADER, leader_crash, leader_crash + 2_500))
        .collect();
    if seed >= 4 {
        events.extend(crash(INDEX_LEADER, 8_000, 9_000));
    }
    plan(&mut s, events);
    s
}

/// The minority partition's cut start and end (from the start of the workload).
pub const MINORITY_CUT: (u64, u64) = (1_000, 9_000);

/// One of three index servers is cut from the other two from 1 s to 9 s (nodes and clients still reach it): the
/// leader at the cut for even seeds, `index2` (whatever it is then) for odd ones. Partition 0's master crashes at 2 s
/// (back at 10 s). The cut-off server must not change the map (it cannot commit; as a deposed leader it must not
/// act); the other two keep serving and fail the master over; after the repair the cut-off server catches up.
pub fn index_minority_partition(seed: u64) -> Scenario {
    let mut s = group_base("index_minority_partition", seed, 3);
    let cut_off = if seed.is_multiple_of(2) {
        INDEX_LEADER
    } else {
        "index2"
    };
    let (from, to) = MINORITY_CUT;
    let mut events: Vec<Timed> = crash("n0", 2_000, 10_000).into_iter().collect();
    for other in s.index_hosts() {
        events.extend(cut(cut_off, &other, from, to));
    }
    plan(&mut s, events);
    s
}

/// When the majority of the index servers goes down, and comes back (from the start of the workload).
pub const MAJORITY_DOWN: (u64, u64) = (1_500, 6_000);

/// A majority of the index servers crashes, one after the other from 1.5 s (`index1` and `index2` of 3, or three
/// of 5 for odd seeds, one of them `index`), and comes back at 6 s. Partition 0's master crashes at 3 s (back at 11
/// s), while no majority is up: the remaining server must not fail it over (nor change the map at all); once the
/// majority is back, the group elects a leader and fails the master over before the fault phase ends.
pub fn index_majority_down_then_back(seed: u64) -> Scenario {
    let k = 3 + 2 * (seed % 2) as u32;
    let mut s = group_base("index_majority_down_then_back", seed, k);
    let down: Vec<String> = match k {
        3 => vec!["index1".into(), "index2".into()],
        _ => vec!["index".into(), "index2".into(), "index4".into()],
    };
    let (from, back) = MAJORITY_DOWN;
    let mut events: Vec<Timed> = crash("n0", 3_000, 11_000).into_iter().collect();
    for (i, h) in down.iter().enumerate() {
        let at_ms = from + i as u64 * (seed % 3) * 200;
        events.extend(crash(h, at_ms, back));
    }
    plan(&mut s, events);
    s
}

/// Partition 0's master n0 is cut from every index server from 1 s to 10 s (its slave and the clients still reach
/// it): its lease ends, the group fails it over to n1. Then the leader that demoted it crashes (8.5 s, back at 9.5
/// s), so another server leads when n0 can reach the group again, n0 still holding the map in which it is master.
/// That leader must not renew n0's lease before n0 holds the map that demoted it: n0 would acknowledge writes as a
/// master after n1 did (`one acknowledging master`). Found by swarm seed 488.
pub fn demoted_master_renews_at_a_new_leader(seed: u64) -> Scenario {
    let mut s = group_base("demoted_master_renews_at_a_new_leader", seed, 3);
    s.sync_ratio = 0.3;
    let mut events: Vec<Timed> = Vec::new();
    for index in s.index_hosts() {
        events.extend(cut("n0", &index, 1_000, 10_000));
    }
    events.extend(crash(INDEX_LEADER, 8_500, 9_500));
    plan(&mut s, events);
    s
}
