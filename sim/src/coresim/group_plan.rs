//! How many index servers a core-level run has, their names, and the faults drawn for them (issue 12 item 5).
//!
//! The core swarm draws K = 1, 3 or 5 index servers from the seed ([`index_servers`]); named scenarios run one. The
//! servers are hosts `index` (the one the swarm's own fault plan names, so that its index faults still happen),
//! `index1`, …, `index4`, each listening on the index port. With K > 1, [`group_faults`] adds a fault plan of its
//! own, drawn from the seed with its own generator (the swarm's draws, and so the scenarios of old seeds, stay as
//! they were), swarm-style: each kind gets a per-seed weight, then a few episodes within the fault phase:
//! - a server crashes and restarts from its disk;
//! - the acting leader, whichever it is then, crashes and restarts ([`LEADER`]);
//! - a majority crashes, one after the other, and comes back a while later (no leader meanwhile: the nodes' leases
//!   run out and no failover can happen until it returns);
//! - two servers are cut from each other, or one from every other server and every node;
//! - a server is cut from one node (the node tries the next server);
//! - the link between two servers is held or slowed.
//!
//! Whatever the plan says, the simulator never takes the last index server of a group down (`Sim::crash`).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::scenario::{Fault, Scenario, Timed, INDEX};

/// The name the fault plan gives the index server that acts when the fault happens: `Crash(LEADER)` crashes it,
/// the next `Restart(LEADER)` restarts the server the earliest such crash took down.
pub const LEADER: &str = "index-leader";

/// The number of index servers of a core swarm seed: 1 (two seeds in five, so the single-index coverage stays), 3
/// (two in five) or 5.
pub fn index_servers(seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1d3c_0a7e_9b00_0005);
    match rng.random_range(0..5) {
        0 | 1 => 1,
        2 | 3 => 3,
        _ => 5,
    }
}

/// The index servers' host names: `index`, `index1`, …
pub fn server_names(k: usize) -> Vec<String> {
    (0..k)
        .map(|i| match i {
            0 => INDEX.to_string(),
            i => format!("{INDEX}{i}"),
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    CrashServer,
    CrashLeader,
    CrashMajority,
    CutServers,
    IsolateServer,
    CutServerFromNode,
    HoldOrSlow,
}

const KINDS: [Kind; 7] = [
    Kind::CrashServer,
    Kind::CrashLeader,
    Kind::CrashMajority,
    Kind::CutServers,
    Kind::IsolateServer,
    Kind::CutServerFromNode,
    Kind::HoldOrSlow,
];

/// The faults of a group of `k` index servers in scenario `s` (none for one server), sorted by time.
pub fn group_faults(s: &Scenario, k: usize) -> Vec<Timed> {
    if k < 2 {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x9a0f_e11e_de57_0012);
    let servers = server_names(k);
    let nodes = s.nodes();
    let weights: Vec<(Kind, u32)> = KINDS
        .iter()
        .map(|k| (*k, [0, 1, 3][rng.random_range(0..3)]))
        .collect();
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return Vec::new();
    }
    let phase = s.fault_phase.as_millis() as u64;
    let mut out = Vec::new();
    let mut push = |at: u64, fault: Fault| {
        if at < phase {
            out.push(Timed {
                at: Duration::from_millis(at),
                fault,
            });
        }
    };
    for _ in 0..rng.random_range(1..=6) {
        let mut pick = rng.random_range(0..total);
        let kind = weights
            .iter()
            .find(|(_, w)| {
                let here = pick < *w;
                pick = pick.saturating_sub(*w);
                here
            })
            .map_or(Kind::CrashServer, |(k, _)| *k);
        let start = rng.random_range(0..phase);
        let length = rng.random_range(200..=5_000);
        let one = servers[rng.random_range(0..k)].clone();
        let mut other = servers[rng.random_range(0..k)].clone();
        if other == one {
            other = servers[(servers.iter().position(|n| *n == one).unwrap_or(0) + 1) % k].clone();
        }
        match kind {
            Kind::CrashServer => {
                push(start, Fault::Crash(one.clone()));
                push(start + length, Fault::Restart(one));
            }
            Kind::CrashLeader => {
                push(start, Fault::Crash(LEADER.into()));
                push(start + length, Fault::Restart(LEADER.into()));
            }
            Kind::CrashMajority => {
                let mut all = servers.clone();
                all.shuffle(&mut rng);
                let (mut down, mut up) = (start, start + length.max(1_000));
                for name in all.into_iter().take(k / 2 + 1) {
                    push(down, Fault::Crash(name.clone()));
                    push(up, Fault::Restart(name));
                    down += rng.random_range(0..=300);
                    up += rng.random_range(0..=600);
                }
            }
            Kind::CutServers => {
                push(start, Fault::Partition(one.clone(), other.clone()));
                push(start + length, Fault::Repair(one, other));
            }
            Kind::IsolateServer => {
                for peer in servers.iter().chain(&nodes).filter(|h| **h != one) {
                    push(start, Fault::Partition(one.clone(), peer.clone()));
                    push(start + length, Fault::Repair(one.clone(), peer.clone()));
                }
            }
            Kind::CutServerFromNode => {
                let node = nodes[rng.random_range(0..nodes.len())].clone();
                push(start, Fault::Partition(one.clone(), node.clone()));
                push(start + length, Fault::Repair(one, node));
            }
            Kind::HoldOrSlow => {
                if rng.random_bool(0.5) {
                    push(start, Fault::Hold(one.clone(), other.clone()));
                    push(start + length.min(2_000), Fault::Release(one, other));
                } else {
                    let max = Duration::from_millis(rng.random_range(50..=800));
                    push(start, Fault::Slow(one.clone(), other.clone(), max));
                    push(start + length, Fault::Unslow(one, other));
                }
            }
        }
    }
    out.sort_by_key(|t| t.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_draw_every_group_size_and_plans_name_only_known_hosts() {
        let sizes: std::collections::BTreeSet<usize> = (0..100).map(index_servers).collect();
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), vec![1, 3, 5]);
        for seed in 0..50 {
            let s = crate::coresim::scenario(seed);
            let k = index_servers(seed);
            let mut known = server_names(k);
            known.extend(s.nodes());
            known.push(LEADER.into());
            for t in group_faults(&s, k) {
                let names = match &t.fault {
                    Fault::Partition(a, b)
                    | Fault::Repair(a, b)
                    | Fault::Hold(a, b)
                    | Fault::Release(a, b)
                    | Fault::Slow(a, b, _)
                    | Fault::Unslow(a, b) => vec![a.clone(), b.clone()],
                    Fault::Crash(h) | Fault::Restart(h) => vec![h.clone()],
                };
                assert!(
                    names.iter().all(|n| known.contains(n)),
                    "seed {seed}: {t:?}"
                );
                assert!(t.at < s.fault_phase, "seed {seed}: {t:?}");
            }
        }
    }
}
