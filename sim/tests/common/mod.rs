//! Helpers shared by the simulation tests.

// Each test binary uses some of these.
#![allow(dead_code)]

use flare_sim::history::MapView;
use flare_sim::run::save_trace;
use flare_sim::{named, run_seeds, Report};

/// `FLARE_SIM_SEED` when set (a replay), otherwise `fixed`.
pub fn seeds_or_replay(fixed: &[u64]) -> Vec<u64> {
    match std::env::var("FLARE_SIM_SEED") {
        Ok(v) => vec![v
            .parse()
            .unwrap_or_else(|_| panic!("FLARE_SIM_SEED must be a number, not {v:?}"))],
        Err(_) => fixed.to_vec(),
    }
}

/// Runs the named scenario on `seeds` and asserts that every checker passed on every seed.
pub fn run_named(name: &str, seeds: &[u64]) -> Vec<Report> {
    let reports = run_seeds(&seeds_or_replay(seeds), |seed| {
        named::scenario(name, seed).unwrap_or_else(|| panic!("no scenario named {name}"))
    });
    assert_all_pass(name, &reports);
    reports
}

/// Prints one line per seed and every failure with its replay line; panics when a seed failed.
pub fn assert_all_pass(name: &str, reports: &[Report]) {
    let mut failed = Vec::new();
    for r in reports {
        println!(
            "{name} seed {}: {} ops, {} sync acknowledged, {:.1} s simulated, {:.2} s wall{}",
            r.seed,
            r.ops,
            r.sync_acked,
            r.simulated.as_secs_f64(),
            r.wall.as_secs_f64(),
            if r.passed() { "" } else { ": FAILED" }
        );
        if !r.passed() {
            print!("{}", r.failure_text());
            if let Some(p) = save_trace(r, name) {
                println!("  trace: {p}");
            }
            failed.push(r.seed);
        }
    }
    assert!(
        failed.is_empty(),
        "{name}: seeds {failed:?} failed (replay lines above)"
    );
}

/// The role, state and partition of `host` in a final map.
pub fn record(map: &MapView, host: &str) -> (String, String, i64) {
    let n = map
        .get(&format!("{host}:12121"))
        .unwrap_or_else(|| panic!("{host} is not in the final map"));
    (n.role.clone(), n.state.clone(), n.partition)
}

/// The host that is partition `p`'s active master in a final map.
pub fn master(map: &MapView, p: i64) -> String {
    map.iter()
        .find(|(_, n)| n.role == "master" && n.state == "active" && n.partition == p)
        .map(|(k, _)| k.trim_end_matches(":12121").to_string())
        .unwrap_or_else(|| panic!("partition {p} has no active master in the final map"))
}
