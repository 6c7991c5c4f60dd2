//! What one simulated run does, derived from one `u64` seed: the cluster layout, the workload mix, and the fault
//! plan (swarm testing, as TigerBeetle's `options_swarm` does: the seed also picks *which kinds* of faults happen and
//! how often, so different seeds stress different parts of the system).
//!
//! [`Scenario::swarm`] draws everything from the seed, with one index server. [`Scenario::group_swarm`] (the
//! turmoil swarm) also draws the number of index servers, 1, 3 or 5 (a Raft group, issue 12), and for a group adds
//! faults of its own (see [`Scenario::group_swarm`]). Named scenarios start from [`Scenario::swarm`] and pin what
//! they are about (see `tests/scenarios.rs`): the layout, a fault plan written by hand, the storage model, the
//! number of index servers.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The (first) index server's turmoil host name; the others of a group are `index1`, `index2`, ...
pub const INDEX: &str = "index";
/// A name the fault plan gives the index server that leads when the fault starts (see `faults`): a fault naming it
/// hits the leader the admin saw last, and the matching end event undoes it on that same server.
pub const INDEX_LEADER: &str = "index-leader";
/// The admin client's host name (setup, monitoring, convergence and the final read-back; never faulted).
pub const ADMIN: &str = "admin";
/// Every index server's port.
pub const INDEX_PORT: u16 = 12120;
/// Every node's port.
pub const NODE_PORT: u16 = 12121;

/// The role a node is given during setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planned {
    /// Master of this partition.
    Master(u32),
    /// Slave of this partition.
    Slave(u32),
    /// A proxy (forwards everything).
    Proxy,
    /// A spare node, a proxy at setup, that the admin makes the master of this new partition while the workload
    /// runs ([`Scenario::grow_partition`]).
    Grow(u32),
}

/// How a crashed node's storage behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashModel {
    /// A process crash: the OS keeps every write (`MemoryStorage::new`).
    Process,
    /// A machine crash: every write since the last `sync` is lost (`MemoryStorage::losing_unsynced` + `crash`).
    /// The nodes never sync while serving (no group commit), so a crashed node comes back empty.
    Machine,
}

/// One fault event, at an offset from the start of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Drop every message between two hosts (turmoil `partition`): connections across it stall for good, connects
    /// are refused.
    Partition(String, String),
    /// Undo one [`Fault::Partition`] of the same pair.
    Repair(String, String),
    /// Hold every message between two hosts (turmoil `hold`): they are delivered on release, like TCP after a
    /// short outage.
    Hold(String, String),
    /// Undo one [`Fault::Hold`] of the same pair (the held messages are delivered).
    Release(String, String),
    /// Raise the link's maximum latency.
    Slow(String, String, Duration),
    /// Undo one [`Fault::Slow`] of the same pair.
    Unslow(String, String),
    /// Crash a host (its software stops; its storage is kept per the [`CrashModel`]).
    Crash(String),
    /// Restart a crashed host.
    Restart(String),
}

/// A fault at its offset from the start of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    /// Offset from the start of the workload.
    pub at: Duration,
    /// What happens.
    pub fault: Fault,
}

/// Everything a run does.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed: the workload, the fault plan and turmoil's own randomness derive from it.
    pub seed: u64,
    /// `swarm` or the named scenario (used in the replay line).
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Slaves per partition.
    pub slaves: u32,
    /// Proxy nodes.
    pub proxies: u32,
    /// Workload clients.
    pub clients: u32,
    /// `key-hash-algorithm`: `simple` or `crc32`.
    pub hash: &'static str,
    /// Keys holding token values (`k0`..).
    pub keys: u32,
    /// Counter keys (`c0`..), for incr/decr.
    pub counters: u32,
    /// Fraction of writes sent with `sync`.
    pub sync_ratio: f64,
    /// Fraction of writes sent with `noreply`.
    pub noreply_ratio: f64,
    /// Fraction of set-like writes with a large value (a few KiB).
    pub large_ratio: f64,
    /// Pause between a client's operations, in milliseconds (min, max).
    pub think_ms: (u64, u64),
    /// Link latency range in milliseconds (min, max) when no fault slows a link.
    pub latency_ms: (u64, u64),
    /// Length of the fault phase.
    pub fault_phase: Duration,
    /// Deadline for the cluster to converge once the faults are healed.
    pub calm_limit: Duration,
    /// After convergence the workload goes on this long (its reads are checked for freshness).
    pub checked_window: Duration,
    /// The fault plan (offsets within the fault phase; everything still in effect is healed when it ends).
    pub faults: Vec<Timed>,
    /// What a crash does to storage.
    pub crash_model: CrashModel,
    /// With [`CrashModel::Machine`], the sync-write checkers excuse the writes of a partition whose every copy was
    /// lost (see `check`). Off only in the negative test that shows the checker catches such a loss.
    pub excuse_lost_copies: bool,
    /// The workload keeps writing in the calm phase (otherwise it only reads, and the final state is the one the
    /// fault phase left, which later writes cannot mask).
    pub calm_writes: bool,
    /// After convergence, slaves that were demoted to proxies are rebuilt as flare-tools would (`flush_all`, `node
    /// role <s> slave 1 <p>`, wait for `active`, read balance back), under load, and the cluster must converge again.
    pub rebuild_slaves: bool,
    /// Slaves are added after the workload started (reconstruction under load and faults).
    pub slaves_under_load: bool,
    /// A spare node is added to the layout, and while the workload runs the admin makes it the master of a new
    /// partition (`node role <n> master 1 <partitions>`, wait for `ready`, `node state <n> active`), retrying after
    /// faults until the calm phase ends it. The cluster converges only once the new partition is active.
    pub grow_partition: bool,
    /// When the growth starts, from the start of the workload.
    pub grow_at: Duration,
    /// Check that the acknowledged non-sync writes a failover lost are no more than the replication backlog the
    /// crashed master had towards its successor (`check::async_loss_bounded`). Only for plans with a single master
    /// crash and no other fault that could lose writes.
    pub check_async_loss: bool,
    /// `master-lease` of the index and the nodes (zero turns leases off: Flare's behaviour).
    pub master_lease: Duration,
    /// The backlog the async-loss checker allows is the one reported; off (no loss allowed) only in the negative
    /// test that shows the checker counts real losses.
    pub allow_reported_backlog: bool,
    /// Upper bound of the whole run in simulated time (turmoil fails the run past it).
    pub sim_limit: Duration,
    /// Index servers: 1 (a single `flarei`, no `index-servers` list) or an odd group size (hosts [`INDEX`],
    /// `index1`, ..., one Raft group; every node gets the whole list).
    pub index_servers: u32,
    /// A restarted index server comes back with an empty Raft log and no map (its disk lost). Only in the negative
    /// test that shows the group checkers catch what follows (a server voting twice in a term, maps lost).
    pub index_amnesia: bool,
}

/// Fault kinds the swarm draws from, each with a per-seed weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    PartitionPair,
    IsolateNode,
    CutFromIndex,
    CutClient,
    Hold,
    Slow,
    CrashNode,
    QuickRestart,
    CrashIndex,
}

const KINDS: [Kind; 9] = [
    Kind::PartitionPair,
    Kind::IsolateNode,
    Kind::CutFromIndex,
    Kind::CutClient,
    Kind::Hold,
    Kind::Slow,
    Kind::CrashNode,
    Kind::QuickRestart,
    Kind::CrashIndex,
];

impl Scenario {
    /// Everything drawn from `seed`, with one index server.
    pub fn swarm(seed: u64) -> Scenario {
        Scenario::swarm_with(seed, 1)
    }

    /// The turmoil swarm: the number of index servers drawn from `seed` ([`drawn_index_servers`]: 1 for two seeds
    /// in five, so the single index keeps its coverage, 3 for two, 5 for one), then [`Scenario::swarm`]'s draws
    /// with the group in place of the one index server: a partition or hold between two cluster hosts may name any
    /// index server, a node cut from the index or isolated is cut from all of them, and an index crash crashes the
    /// leader ([`INDEX_LEADER`]). A group then gets faults of its own, drawn with another generator (so that
    /// [`Scenario::swarm`]'s draws, and the scenarios of one-index seeds, stay exactly as they were): each kind gets
    /// a per-seed weight (0, 1 or 3), then up to 5 episodes in the fault phase:
    /// - an index server crashes and restarts (its Raft log and map survive, as on disk);
    /// - the leader crashes and restarts;
    /// - a majority crashes, one after the other, and comes back a while later (no leader meanwhile: the nodes'
    ///   leases run out, no failover can happen until it is back);
    /// - one index server (or the leader) is cut from every other index server (a minority: it must change nothing);
    /// - an index server is cut from one node (the node must find another);
    /// - the link between two index servers holds its messages or is slowed.
    pub fn group_swarm(seed: u64) -> Scenario {
        Scenario::group_swarm_of(seed, drawn_index_servers(seed))
    }

    /// [`Scenario::group_swarm`] with `k` index servers whatever the seed draws.
    pub fn group_swarm_of(seed: u64, k: u32) -> Scenario {
        let mut s = Scenario::swarm_with(seed, k);
        if k > 1 {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x6a0c_1d7e_55e0_0003);
            s.faults.extend(group_faults(&mut rng, &s));
            s.faults.sort_by_key(|t| t.at);
        }
        s
    }

    fn swarm_with(seed: u64, index_servers: u32) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_f1a2_e000_0001);
        let partitions = rng.random_range(1..=2);
        let slaves = if rng.random_bool(0.25) { 2 } else { 1 };
        let proxies = rng.random_range(0..=1);
        let fault_phase = Duration::from_millis(rng.random_range(8_000..=16_000));
        let lat_max = *[1u64, 2, 5, 10, 20]
            .get(rng.random_range(0..5))
            .unwrap_or(&5);
        let mut s = Scenario {
            seed,
            name: "swarm".into(),
            partitions,
            slaves,
            proxies,
            clients: rng.random_range(1..=3),
            hash: if rng.random_bool(0.5) {
                "simple"
            } else {
                "crc32"
            },
            keys: *[4u32, 8, 16, 32].get(rng.random_range(0..4)).unwrap_or(&8),
            counters: rng.random_range(0..=3),
            sync_ratio: [0.2, 0.5, 0.9][rng.random_range(0..3)],
            noreply_ratio: if rng.random_bool(0.3) { 0.05 } else { 0.0 },
            large_ratio: if rng.random_bool(0.3) { 0.05 } else { 0.0 },
            think_ms: (0, [5u64, 20, 50][rng.random_range(0..3)]),
            latency_ms: (0, lat_max),
            fault_phase,
            calm_limit: Duration::from_secs(40),
            checked_window: Duration::from_secs(2),
            faults: Vec::new(),
            crash_model: if rng.random_bool(0.2) {
                CrashModel::Machine
            } else {
                CrashModel::Process
            },
            excuse_lost_copies: true,
            calm_writes: true,
            rebuild_slaves: false,
            slaves_under_load: rng.random_bool(0.25),
            grow_partition: false,
            grow_at: Duration::ZERO,
            check_async_loss: false,
            master_lease: Duration::from_millis(3000),
            allow_reported_backlog: true,
            sim_limit: Duration::from_secs(240),
            index_servers,
            index_amnesia: false,
        };
        s.faults = swarm_faults(&mut rng, &s);
        // Drawn last, so that adding it left the earlier draws (and the scenarios of old seeds) as they were.
        s.rebuild_slaves = rng.random_bool(0.3);
        // Drawn after everything else, likewise. The spare node joins the layout only now, so the fault plan above
        // never names it; a crash of it (or of the index) in the middle of the growth is drawn here instead.
        if rng.random_bool(0.25) {
            s.grow_partition = true;
            let phase = s.fault_phase.as_millis() as u64;
            let start = rng.random_range(0..phase / 2);
            s.grow_at = Duration::from_millis(start);
            let spare = s.spare().unwrap_or_default();
            for (host, chance) in [
                (spare, 0.4),
                (s.index_crash_target(), 0.2),
                (s.master_of(0), 0.2),
            ] {
                if rng.random_bool(chance) {
                    let from = start + rng.random_range(0..=2_000);
                    let to = from + rng.random_range(10..=6_000);
                    s.faults.push(Timed {
                        at: Duration::from_millis(from),
                        fault: Fault::Crash(host.clone()),
                    });
                    if to < phase {
                        s.faults.push(Timed {
                            at: Duration::from_millis(to),
                            fault: Fault::Restart(host),
                        });
                    }
                }
            }
            s.faults.sort_by_key(|t| t.at);
        }
        s
    }

    /// The swarm scenario of `seed` renamed, with no faults: a named scenario then adds its own plan.
    pub fn named(name: &str, seed: u64) -> Scenario {
        let mut s = Scenario::swarm(seed);
        s.name = name.into();
        s.faults.clear();
        s.crash_model = CrashModel::Process;
        s.slaves_under_load = false;
        s.rebuild_slaves = false;
        s.grow_partition = false;
        s
    }

    /// Node host names with the role each is given during setup: partition by partition, the master then its
    /// slaves; the proxies last.
    pub fn layout(&self) -> Vec<(String, Planned)> {
        let mut out = Vec::new();
        for p in 0..self.partitions {
            out.push((format!("n{}", out.len()), Planned::Master(p)));
            for _ in 0..self.slaves {
                out.push((format!("n{}", out.len()), Planned::Slave(p)));
            }
        }
        for _ in 0..self.proxies {
            out.push((format!("n{}", out.len()), Planned::Proxy));
        }
        if self.grow_partition {
            out.push((format!("n{}", out.len()), Planned::Grow(self.partitions)));
        }
        out
    }

    /// The spare node that becomes the master of the new partition, with [`Scenario::grow_partition`].
    pub fn spare(&self) -> Option<String> {
        self.layout()
            .into_iter()
            .find(|(_, p)| matches!(p, Planned::Grow(_)))
            .map(|(n, _)| n)
    }

    /// The number of partitions once the run converged (the growth, if any, done).
    pub fn final_partitions(&self) -> u32 {
        self.partitions + u32::from(self.grow_partition)
    }

    /// Node host names.
    pub fn nodes(&self) -> Vec<String> {
        self.layout().into_iter().map(|(n, _)| n).collect()
    }

    /// Index server host names: [`INDEX`], `index1`, ...
    pub fn index_hosts(&self) -> Vec<String> {
        (0..self.index_servers.max(1))
            .map(|i| match i {
                0 => INDEX.to_string(),
                i => format!("{INDEX}{i}"),
            })
            .collect()
    }

    /// True for an index server's host name.
    pub fn is_index_host(&self, host: &str) -> bool {
        self.index_hosts().iter().any(|h| h == host)
    }

    /// What a drawn "the index crashes" hits: the one index server, or a group's leader ([`INDEX_LEADER`]).
    fn index_crash_target(&self) -> String {
        match self.index_servers {
            0 | 1 => INDEX.to_string(),
            _ => INDEX_LEADER.to_string(),
        }
    }

    /// Workload client host names.
    pub fn client_hosts(&self) -> Vec<String> {
        (0..self.clients).map(|i| format!("client{i}")).collect()
    }

    /// The name of the node that is master of `p` in the setup.
    pub fn master_of(&self, p: u32) -> String {
        format!("n{}", p * (1 + self.slaves))
    }

    /// The keys the workload uses: token keys, then counters.
    pub fn all_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = (0..self.keys).map(|i| format!("k{i}")).collect();
        keys.extend((0..self.counters).map(|i| format!("c{i}")));
        keys
    }

    /// The command that replays this run: the swarm test with this seed, or the sweep binary for a named scenario
    /// (which works whichever test file runs it).
    pub fn replay_line(&self) -> String {
        match self.name.as_str() {
            "swarm" => format!(
                "FLARE_SIM_SEED={} cargo test -p flare-sim --release --test swarm -- --nocapture",
                self.seed
            ),
            name => format!(
                "cargo run -p flare-sim --release -- --scenario {name} --seed {}",
                self.seed
            ),
        }
    }

    /// A one-line description (printed at the start of a run, as turmoil's examples log their seed).
    pub fn summary(&self) -> String {
        format!(
            "seed={} scenario={} index_servers={} partitions={} slaves={} proxies={} clients={} hash={} keys={}+{} \
             sync={} latency={}..{}ms faults={} crash={:?} slaves_under_load={} rebuild_slaves={} grow_partition={}",
            self.seed,
            self.name,
            self.index_servers,
            self.partitions,
            self.slaves,
            self.proxies,
            self.clients,
            self.hash,
            self.keys,
            self.counters,
            self.sync_ratio,
            self.latency_ms.0,
            self.latency_ms.1,
            self.faults.len(),
            self.crash_model,
            self.slaves_under_load,
            self.rebuild_slaves,
            self.grow_partition
        )
    }
}

/// The swarm fault plan: per-seed weights for each kind (0, 1 or 3, so some seeds never see a kind and others see
/// mostly one), then up to 10 episodes, each a start event and (when it ends inside the fault phase) an end event.
fn swarm_faults(rng: &mut StdRng, s: &Scenario) -> Vec<Timed> {
    let weights: Vec<(Kind, u32)> = KINDS
        .iter()
        .map(|k| (*k, [0, 1, 3][rng.random_range(0..3)]))
        .collect();
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return Vec::new();
    }
    let episodes = rng.random_range(0..=10);
    let nodes = s.nodes();
    let clients = s.client_hosts();
    let indexes = s.index_hosts();
    let mut cluster: Vec<String> = indexes.clone();
    cluster.extend(nodes.iter().cloned());
    let phase = s.fault_phase.as_millis() as u64;
    let mut out = Vec::new();
    for _ in 0..episodes {
        let mut pick = rng.random_range(0..total);
        let kind = weights
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|(k, _)| *k)
            .unwrap_or(Kind::PartitionPair);
        let start = rng.random_range(0..phase);
        let length = rng.random_range(200..=6_000);
        let node = nodes[rng.random_range(0..nodes.len())].clone();
        let mut episode = |begin: Fault, end: Fault| {
            out.push(Timed {
                at: Duration::from_millis(start),
                fault: begin,
            });
            if start + length < phase {
                out.push(Timed {
                    at: Duration::from_millis(start + length),
                    fault: end,
                });
            }
        };
        match kind {
            Kind::PartitionPair | Kind::Hold | Kind::Slow => {
                let a = cluster[rng.random_range(0..cluster.len())].clone();
                let mut b = cluster[rng.random_range(0..cluster.len())].clone();
                if a == b {
                    b = if indexes.contains(&a) {
                        node.clone()
                    } else {
                        INDEX.to_string()
                    };
                }
                match kind {
                    Kind::PartitionPair => {
                        episode(Fault::Partition(a.clone(), b.clone()), Fault::Repair(a, b))
                    }
                    Kind::Hold => episode(Fault::Hold(a.clone(), b.clone()), Fault::Release(a, b)),
                    _ => {
                        let max = Duration::from_millis(rng.random_range(100..=1_500));
                        episode(Fault::Slow(a.clone(), b.clone(), max), Fault::Unslow(a, b))
                    }
                }
            }
            Kind::IsolateNode => {
                for other in cluster.iter().chain(&clients).filter(|h| **h != node) {
                    episode(
                        Fault::Partition(node.clone(), other.clone()),
                        Fault::Repair(node.clone(), other.clone()),
                    );
                }
            }
            Kind::CutFromIndex => {
                for index in &indexes {
                    episode(
                        Fault::Partition(node.clone(), index.clone()),
                        Fault::Repair(node.clone(), index.clone()),
                    )
                }
            }
            Kind::CutClient => {
                let c = clients[rng.random_range(0..clients.len())].clone();
                episode(
                    Fault::Partition(c.clone(), node.clone()),
                    Fault::Repair(c, node.clone()),
                )
            }
            Kind::CrashNode => episode(Fault::Crash(node.clone()), Fault::Restart(node.clone())),
            Kind::QuickRestart => {
                // Back before the index notices (monitor interval × threshold): registration of a live record.
                out.push(Timed {
                    at: Duration::from_millis(start),
                    fault: Fault::Crash(node.clone()),
                });
                out.push(Timed {
                    at: Duration::from_millis(start + rng.random_range(10..=800)),
                    fault: Fault::Restart(node.clone()),
                });
            }
            Kind::CrashIndex => {
                let target = s.index_crash_target();
                episode(Fault::Crash(target.clone()), Fault::Restart(target))
            }
        }
    }
    // Stable order: by time, then by the order drawn.
    out.sort_by_key(|t| t.at);
    out
}

/// The number of index servers of a turmoil swarm seed: 1 (two seeds in five), 3 (two in five) or 5.
pub fn drawn_index_servers(seed: u64) -> u32 {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1de7_5e2f_0c00_0005);
    match rng.random_range(0..5) {
        0 | 1 => 1,
        2 | 3 => 3,
        _ => 5,
    }
}

/// Fault kinds of an index group (see [`Scenario::group_swarm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupKind {
    CrashServer,
    CrashLeader,
    CrashMajority,
    IsolateServer,
    IsolateLeader,
    CutServerFromNode,
    HoldOrSlow,
}

const GROUP_KINDS: [GroupKind; 7] = [
    GroupKind::CrashServer,
    GroupKind::CrashLeader,
    GroupKind::CrashMajority,
    GroupKind::IsolateServer,
    GroupKind::IsolateLeader,
    GroupKind::CutServerFromNode,
    GroupKind::HoldOrSlow,
];

/// The extra faults of an index group (see [`Scenario::group_swarm`]), unsorted.
fn group_faults(rng: &mut StdRng, s: &Scenario) -> Vec<Timed> {
    let servers = s.index_hosts();
    let nodes = s.nodes();
    let weights: Vec<(GroupKind, u32)> = GROUP_KINDS
        .iter()
        .map(|k| (*k, [0, 1, 3][rng.random_range(0..3)]))
        .collect();
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    if total == 0 || servers.len() < 2 {
        return Vec::new();
    }
    let phase = s.fault_phase.as_millis() as u64;
    let mut out = Vec::new();
    let mut push = |at: u64, fault: Fault| {
        out.push(Timed {
            at: Duration::from_millis(at),
            fault,
        })
    };
    for _ in 0..rng.random_range(1..=5) {
        let mut pick = rng.random_range(0..total);
        let kind = weights
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|(k, _)| *k)
            .unwrap_or(GroupKind::CrashServer);
        let start = rng.random_range(0..phase);
        let end = start + rng.random_range(200..=6_000);
        let server = servers[rng.random_range(0..servers.len())].clone();
        // The end of an episode past the fault phase is left to the heal.
        let mut episode = |begin: Fault, finish: Fault| {
            push(start, begin);
            if end < phase {
                push(end, finish);
            }
        };
        match kind {
            GroupKind::CrashServer => episode(Fault::Crash(server.clone()), Fault::Restart(server)),
            GroupKind::CrashLeader => episode(
                Fault::Crash(INDEX_LEADER.into()),
                Fault::Restart(INDEX_LEADER.into()),
            ),
            GroupKind::CrashMajority => {
                let mut order = servers.clone();
                order.shuffle(rng);
                let majority = servers.len() / 2 + 1;
                let back = start + rng.random_range(1_000..=5_000);
                for (i, h) in order.into_iter().take(majority).enumerate() {
                    let down = start + i as u64 * rng.random_range(0..=300);
                    push(down, Fault::Crash(h.clone()));
                    if back < phase {
                        push(back.max(down + 10), Fault::Restart(h));
                    }
                }
            }
            GroupKind::IsolateServer | GroupKind::IsolateLeader => {
                let cut = match kind {
                    GroupKind::IsolateLeader => INDEX_LEADER.to_string(),
                    _ => server.clone(),
                };
                for other in &servers {
                    episode(
                        Fault::Partition(cut.clone(), other.clone()),
                        Fault::Repair(cut.clone(), other.clone()),
                    );
                }
            }
            GroupKind::CutServerFromNode => {
                let node = nodes[rng.random_range(0..nodes.len())].clone();
                episode(
                    Fault::Partition(server.clone(), node.clone()),
                    Fault::Repair(server, node),
                )
            }
            GroupKind::HoldOrSlow => {
                let other = servers
                    .iter()
                    .find(|h| **h != server)
                    .cloned()
                    .unwrap_or_default();
                let other = match rng.random_range(0..servers.len()) {
                    i if servers[i] != server => servers[i].clone(),
                    _ => other,
                };
                if rng.random_bool(0.5) {
                    episode(
                        Fault::Hold(server.clone(), other.clone()),
                        Fault::Release(server, other),
                    )
                } else {
                    let max = Duration::from_millis(rng.random_range(100..=1_500));
                    episode(
                        Fault::Slow(server.clone(), other.clone(), max),
                        Fault::Unslow(server, other),
                    )
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_scenario() {
        let a = Scenario::swarm(7);
        let b = Scenario::swarm(7);
        assert_eq!(a.summary(), b.summary());
        assert_eq!(a.faults, b.faults);
    }

    #[test]
    fn layout_masters_first() {
        let mut s = Scenario::swarm(1);
        s.partitions = 2;
        s.slaves = 1;
        s.proxies = 1;
        let l = s.layout();
        assert_eq!(
            l,
            vec![
                ("n0".to_string(), Planned::Master(0)),
                ("n1".to_string(), Planned::Slave(0)),
                ("n2".to_string(), Planned::Master(1)),
                ("n3".to_string(), Planned::Slave(1)),
                ("n4".to_string(), Planned::Proxy),
            ]
        );
        assert_eq!(s.master_of(1), "n2");
    }

    #[test]
    fn seeds_vary_the_fault_mix() {
        let mixes: std::collections::BTreeSet<usize> =
            (0..50).map(|s| Scenario::swarm(s).faults.len()).collect();
        assert!(mixes.len() > 5, "fault plans barely differ: {mixes:?}");
    }
}
