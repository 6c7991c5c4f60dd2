//! The random swarm: every seed is a whole scenario (layout, workload, fault mix, crash model), run through every
//! checker. `cargo test -p flare-sim` runs a bounded set of seeds; the environment replays or widens it:
//!
//! - `FLARE_SIM_SEED=S`: only seed S (the replay line a failure prints);
//! - `FLARE_SIM_SEEDS=N` (and `FLARE_SIM_START=S`): N seeds from S (for long sweeps prefer `scripts/sim-sweep`,
//!   which runs them in parallel processes).

mod common;

use common::assert_all_pass;
use flare_sim::{named, run, run_seeds, Report, Scenario};

/// The CI set: the first seeds, plus the ones that found bugs (see `regressions.rs` for the named scenarios).
const CI_SEEDS: std::ops::Range<u64> = 0..40;
/// Seeds that found bugs after the named scenarios were written (post-mortems in the commit that fixed them):
/// - 0: a slave's "active" report reached the index after it had marked the slave down; the index took it for the
///   node coming back (a rebuild, prepare), and the slave, done, stayed in prepare for good (after a report the
///   node checks the index's map of that moment and starts over if it is still being built: `rebuild_asked`;
///   seeds 2628 and 2682 fail without it, even with `ClusterView::starts_reconstruction`);
/// - 52: a dump pulled over a connection that lost packets hung the reconstruction forever (dump idle timeout);
/// - 229: a slave pulled its dump from a master whose map still had it down, so nothing was replicated to it
///   (`source_knows_me` requires a state other than down);
/// - 683, 1185: a slave still copying missed the maps in which the index marked it down and up again; its master had
///   stopped replicating to it meanwhile, and the copy went on and reported active, missing those writes (a node in
///   prepare that misses a map version starts its copy over);
/// - 1763: after a failover a slave held a newer version of a key (from the deposed master) than the promoted
///   master; it skipped the new master's writes of that key as not newer and served the stale item, and the master
///   counted the refusal as replicated (`Store::raise_version_floor`).
/// - 1036, 1176, 1970: a registering node labelled an older map with a newer version (see
///   `check::one_master_per_version`).
const FOUND_BUGS: &[u64] = &[
    48, 52, 229, 375, 540, 683, 1036, 1082, 1176, 1185, 1763, 1970,
];

/// Swarm seeds that found bugs of the index group (they draw 3 index servers):
/// - 205: both followers' raft-link pings reached the leader while a map change was pending; the leader held their
///   replies until the change committed, and the acknowledgements that would commit it waited behind them on the same
///   connections, until check-quorum deposed the leader (a leadership lost in a fault-free setup);
/// - 488: a master demoted by one leader, cut off from the index servers meanwhile, had its lease renewed by the
///   next leader while it still held the map in which it was master, and acknowledged writes after its successor
///   had (`named::demoted_master_renews_at_a_new_leader`).
const GROUP_BUGS: &[u64] = &[205, 488];

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

fn seeds() -> Vec<u64> {
    if let Some(s) = env_u64("FLARE_SIM_SEED") {
        return vec![s];
    }
    if let Some(n) = env_u64("FLARE_SIM_SEEDS") {
        let start = env_u64("FLARE_SIM_START").unwrap_or(0);
        return (start..start + n).collect();
    }
    CI_SEEDS.collect()
}

/// The CI seeds and the replayed ones run [`Scenario::group_swarm`] (1, 3 or 5 index servers, as the seed draws);
/// the seeds that found bugs run with the one index server they found them with (`swarm1`).
fn run_all() -> Vec<Report> {
    let explicit = env_u64("FLARE_SIM_SEED").is_some() || env_u64("FLARE_SIM_SEEDS").is_some();
    let mut reports = run_seeds(&seeds(), Scenario::group_swarm);
    if !explicit {
        reports.extend(run_seeds(GROUP_BUGS, Scenario::group_swarm));
    }
    if !explicit {
        reports.extend(run_seeds(FOUND_BUGS, |seed| {
            named::scenario("swarm1", seed).expect("a named scenario")
        }));
    }
    reports
}

#[test]
fn swarm() {
    let reports = run_all();
    assert_all_pass("swarm", &reports);
    if reports.len() > 1 {
        // The set must exercise what the checkers are about: sync writes acknowledged, and failovers (partition 0
        // ending with another master than the one set up).
        let acked: usize = reports.iter().map(|r| r.sync_acked).sum();
        assert!(acked > 0, "no sync write was acknowledged");
        let failover = |r: &&flare_sim::Report| {
            r.final_map
                .iter()
                .any(|(k, n)| n.role == "master" && n.partition == 0 && k != "n0:12121")
        };
        assert!(
            reports.iter().any(|r| failover(&r)),
            "no seed had a failover"
        );
        // Index groups ran, and their leadership moved in some (the group checkers saw a leader change).
        let groups: Vec<&Report> = reports.iter().filter(|r| r.index_servers > 1).collect();
        assert!(
            groups.len() >= 5,
            "only {} seeds ran an index group",
            groups.len()
        );
        let moved = groups
            .iter()
            .filter(|r| {
                let leaders: std::collections::BTreeSet<&String> =
                    r.index_leaders.iter().map(|(_, l)| l).collect();
                leaders.len() > 1
            })
            .count();
        assert!(
            moved >= 2,
            "the index leadership moved in only {moved} seeds"
        );
    }
}

#[test]
fn group_sizes_drawn() {
    // Seeds draw 1, 3 and 5 index servers; a one-index seed is the scenario it always was.
    let sizes: std::collections::BTreeSet<u32> = CI_SEEDS
        .map(|s| Scenario::group_swarm(s).index_servers)
        .collect();
    assert_eq!(sizes, [1, 3, 5].into_iter().collect());
    for seed in CI_SEEDS {
        let (g, one) = (Scenario::group_swarm(seed), Scenario::swarm(seed));
        if g.index_servers == 1 {
            assert_eq!(
                (g.summary(), g.faults),
                (one.summary(), one.faults),
                "seed {seed}"
            );
        }
    }
}

#[test]
fn same_seed_same_trace() {
    let seeds = match env_u64("FLARE_SIM_SEED") {
        Some(s) => vec![s],
        // One index server, three (seed 0) and five (seed 4).
        None => vec![3, 0, 4, 375],
    };
    for seed in seeds {
        let s = Scenario::group_swarm(seed);
        let (a, b) = (run(&s), run(&s));
        assert_eq!(
            a.trace_hash,
            b.trace_hash,
            "seed {seed} gave two different traces; replay: {}",
            s.replay_line()
        );
        assert!(a.ops > 0, "seed {seed} ran no operation");
    }
}
