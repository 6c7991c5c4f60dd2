//! Named scenarios: hard cases with a fault plan written by hand (see `flare_sim::named`), each on a few seeds.
//! Replay one seed with `FLARE_SIM_SEED=S cargo test -p flare-sim --test scenarios <name> -- --nocapture`, or
//! `cargo run -p flare-sim --release -- --scenario <name> --seed S` (prints the trace file).

mod common;

use common::{assert_all_pass, master, record, run_named};
use flare_sim::{named, run_seeds};

#[test]
fn sync_writes_survive_master_crash() {
    for r in run_named("sync_writes_survive_master_crash", &[0, 1, 2]) {
        // Both masters crashed long enough to be replaced: the checked writes survived a real failover.
        assert_ne!(
            master(&r.final_map, 0),
            "n0",
            "seed {}: no failover in partition 0",
            r.seed
        );
        assert_eq!(
            record(&r.final_map, "n0").0,
            "proxy",
            "seed {}: the old master was not demoted",
            r.seed
        );
        assert!(
            r.sync_acked > 0,
            "seed {}: no sync write was acknowledged",
            r.seed
        );
        // The one-master-per-version checker saw the nodes' own maps across the failovers (several versions each).
        assert!(
            r.held_versions >= 2 * 5,
            "seed {}: only {} (node, map version) pairs polled",
            r.seed,
            r.held_versions
        );
    }
}

#[test]
fn restart_index_during_writes() {
    for r in run_named("restart_index_during_writes", &[0, 1, 2]) {
        // n0 died while the index was down; the index failed it over once it was back.
        assert_ne!(
            master(&r.final_map, 0),
            "n0",
            "seed {}: no failover after the index restarted",
            r.seed
        );
        assert!(
            r.sync_acked > 0,
            "seed {}: no sync write was acknowledged",
            r.seed
        );
    }
}

#[test]
fn slaves_added_under_load() {
    let reports = run_named("slaves_added_under_load", &[0, 1, 2]);
    // At least one slave finished its reconstruction under load, so the slave checker compared a rebuilt slave.
    let rebuilt = reports
        .iter()
        .flat_map(|r| r.final_map.values())
        .filter(|n| n.role == "slave" && n.state == "active")
        .count();
    assert!(rebuilt > 0, "no slave became active in any seed");
}

#[test]
fn machine_crash_of_a_lone_master() {
    // A lone master's machine crash loses what it had not synced: the checker excuses it, as no copy survived.
    let reports = run_named("machine_crash_of_a_lone_master", &[0, 1, 2]);
    assert!(reports.iter().all(|r| r.sync_acked > 0));
}

#[test]
fn machine_crash_of_a_lone_master_is_caught_without_the_excuse() {
    // The negative case: without the excuse, the sync-write checkers must report the lost writes, and nothing else.
    let reports = run_seeds(&[0, 1, 2], |seed| {
        let mut s =
            named::scenario("machine_crash_of_a_lone_master", seed).expect("a named scenario");
        s.excuse_lost_copies = false;
        s
    });
    for r in &reports {
        assert!(
            !r.passed(),
            "seed {}: the writes lost in the machine crash went unnoticed",
            r.seed
        );
        for f in &r.failures {
            assert!(
                matches!(f.checker, "sync writes survive" | "fresh reads"),
                "seed {}: unexpected failure [{}] {}",
                r.seed,
                f.checker,
                f.detail
            );
        }
    }
    // With the excuse back, the same runs pass: the failures above are exactly the excused losses.
    let excused = run_seeds(&[0, 1, 2], |seed| {
        named::scenario("machine_crash_of_a_lone_master", seed).expect("named")
    });
    assert_all_pass("machine_crash_of_a_lone_master", &excused);
}

#[test]
fn partition_added_under_load() {
    for r in run_named("partition_added_under_load", &[0, 1]) {
        // The spare node is the active master of the new partition, and writes were checked across the growth.
        assert_eq!(master(&r.final_map, 2), "n5", "seed {}", r.seed);
        assert!(
            r.sync_acked > 0,
            "seed {}: no sync write was acknowledged",
            r.seed
        );
    }
}

#[test]
fn partition_added_under_crashes() {
    for r in run_named("partition_added_under_crashes", &[0, 1]) {
        assert_eq!(master(&r.final_map, 2), "n5", "seed {}", r.seed);
        assert_ne!(
            master(&r.final_map, 0),
            "n0",
            "seed {}: no failover in partition 0",
            r.seed
        );
    }
}

#[test]
fn async_loss_within_reported_backlog() {
    run_named("async_loss_within_reported_backlog", &[0, 3]);
    // The negative case: allowed no backlog, the checker reports the async writes a failover lost (what the master
    // sent in the last moments before its crash was lost on the wire), and nothing else fails. Which seeds lose
    // writes depends on timing, so a few are run and some must be caught.
    let reports = run_seeds(&[1, 2, 3, 4, 5, 6], |seed| {
        let mut s = named::scenario("async_loss_within_reported_backlog", seed).expect("named");
        s.allow_reported_backlog = false;
        s
    });
    let caught = reports.iter().filter(|r| !r.passed()).count();
    assert!(
        caught >= 2,
        "only {caught} of 6 seeds showed lost async writes"
    );
    for r in &reports {
        for f in &r.failures {
            println!("seed {} (expected): [{}] {}", r.seed, f.checker, f.detail);
            assert_eq!(
                f.checker, "async loss bounded",
                "seed {}: {}",
                r.seed, f.detail
            );
        }
    }
}
