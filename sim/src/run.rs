//! One simulated run, and sweeps of many.
//!
//! [`run`] builds the turmoil simulation of a [`Scenario`] (fixed epoch, turmoil's RNG seeded from the scenario
//! seed), registers the hosts, and steps it (1 ms per step) until every client host has finished, applying the fault
//! plan between steps. Then it runs the checkers on what was recorded (with an index group, also those of
//! [`group_check`](crate::group_check)) and returns a [`Report`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::admin::run_admin;
use crate::check::check_run;
use crate::faults::FaultDriver;
use crate::group_check::{watch_lock, GroupWatch};
use crate::history::{lock, Env, Failure, MapView};
use crate::hosts::{add_indexes, add_node, new_storage};
use crate::scenario::{Scenario, ADMIN};
use crate::workload::run_client;

/// The simulated wall clock starts here (turmoil's default epoch is the real time, which would change every run).
pub const EPOCH_SECS: u64 = 1_700_000_000;

/// What a run found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario's one-line summary.
    pub summary: String,
    /// The command that replays the run.
    pub replay: String,
    /// The seed.
    pub seed: u64,
    /// Every failure, those found while running first.
    pub failures: Vec<Failure>,
    /// FNV-1a hash of the trace (the determinism check compares it between two runs of one seed).
    pub trace_hash: u64,
    /// Operations the clients completed.
    pub ops: usize,
    /// Of which acknowledged sync writes.
    pub sync_acked: usize,
    /// Simulated time of the run.
    pub simulated: Duration,
    /// Real time of the run.
    pub wall: Duration,
    /// The index's final map (empty when the run did not get that far).
    pub final_map: MapView,
    /// Distinct (node, version) pairs among the maps the nodes showed as their own (`Env::held_maps`), the
    /// evidence of the one-master-per-version checker.
    pub held_versions: usize,
    /// The trace (kept only when the run failed, or when `FLARE_SIM_TRACE` is set, to be written out).
    pub trace: Vec<String>,
    /// The index servers.
    pub index_servers: u32,
    /// Simulated milliseconds at which the workload (and the fault plan) started.
    pub workload_started_ms: u64,
    /// With an index group: (simulated ms, server) every time the admin saw another server lead.
    pub index_leaders: Vec<(u64, String)>,
    /// With an index group: every change of an index server's (version, map) the admin saw.
    pub index_samples: Vec<crate::group_check::Sample>,
}

impl Report {
    /// True when no checker failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failure report: the seed, the replay line, then each failure.
    pub fn failure_text(&self) -> String {
        let mut s = format!("FAILED {}\n  replay: {}\n", self.summary, self.replay);
        for f in &self.failures {
            s.push_str(&format!("  [{}] {}\n", f.checker, f.detail));
        }
        s
    }
}

thread_local! {
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records panics of the current thread (a panic in a spawned task does not reach the host's result: tokio shuts
/// the host's runtime down, and turmoil sees a cancelled host).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.borrow_mut().push(info.to_string()));
            previous(info);
        }));
    });
}

/// One simulation at a time per process (see [`align_task_ids`]).
static SIM_LOCK: Mutex<()> = Mutex::new(());

/// tokio numbers tasks from one process-wide counter, and a current-thread runtime files its tasks in 4 lists by
/// task id; when a crashed host's runtime is dropped, its tasks (and their sockets, which send FIN on drop) go list
/// by list. So the order of a crash's FINs, and with it the simulated latencies drawn for them, would depend on how
/// many tasks the process spawned before this run. Starting every run at a task id ≡ 0 (mod 64) makes the lists,
/// and the run, the same every time, provided no other simulation spawns tasks meanwhile: hence [`SIM_LOCK`].
fn align_task_ids() {
    // A runtime that cannot be built leaves the ids unaligned; the determinism checks would then show it.
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    for _ in 0..64 {
        let id = rt.block_on(async { tokio::spawn(async {}).id() });
        if id.to_string().parse::<u64>().is_ok_and(|n| n % 64 == 63) {
            return;
        }
    }
}

/// Runs one scenario.
pub fn run(s: &Scenario) -> Report {
    let _one_at_a_time = SIM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _acks = crate::acks::collect();
    align_task_ids();
    install_panic_hook();
    PANICS.with(|p| p.borrow_mut().clear());
    let wall = Instant::now();
    let env = Env::new(s.clients);
    lock(&env).trace(format!("scenario {}", s.summary()));
    let mut sim = turmoil::Builder::new()
        .rng_seed(s.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(s.sim_limit)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(s.latency_ms.0))
        .max_message_latency(Duration::from_millis(s.latency_ms.1))
        .tcp_capacity(4096)
        .build();
    add_indexes(&mut sim, s, env.clone());
    let watch = Arc::new(Mutex::new(GroupWatch::default()));
    let mut storages = BTreeMap::new();
    for name in s.nodes() {
        let storage = new_storage(s.crash_model);
        add_node(&mut sim, s, &name, env.clone(), storage.clone());
        storages.insert(name, storage);
    }
    sim.client(ADMIN, run_admin(s.clone(), env.clone(), watch.clone()));
    for (i, name) in s.client_hosts().into_iter().enumerate() {
        sim.client(name, run_client(i as u32, s.clone(), env.clone()));
    }
    let mut faults = FaultDriver::new(s, storages, watch.clone());
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => faults.tick(&mut sim, &env),
            Err(e) => {
                lock(&env).fail("simulation", e.to_string());
                break;
            }
        }
    }
    let simulated = sim.elapsed();
    drop(sim);
    let panics = PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let e = lock(&env);
    let mut failures: Vec<Failure> = panics
        .into_iter()
        .map(|p| Failure {
            checker: "panic",
            detail: p,
        })
        .collect();
    failures.extend(check_run(s, &e));
    failures.extend(crate::acks::one_acknowledging_master(&crate::acks::take()));
    let w = watch_lock(&watch);
    if s.index_servers > 1 {
        let nodes: Vec<(String, u64, MapView)> = e
            .held_maps
            .iter()
            .filter(|h| !s.is_index_host(&h.holder))
            .map(|h| (h.holder.clone(), h.version, h.map.clone()))
            .collect();
        failures.extend(w.check(&nodes));
    }
    let passed = failures.is_empty();
    Report {
        summary: s.summary(),
        replay: s.replay_line(),
        seed: s.seed,
        failures,
        trace_hash: e.trace_hash(),
        ops: e.ops.len(),
        sync_acked: e
            .ops
            .iter()
            .filter(|o| o.sync && o.outcome.applied())
            .count(),
        simulated,
        wall: wall.elapsed(),
        final_map: e
            .final_state
            .as_ref()
            .map(|f| f.map.clone())
            .unwrap_or_default(),
        held_versions: e
            .held_maps
            .iter()
            .filter(|h| !s.is_index_host(&h.holder))
            .map(|h| (h.holder.as_str(), h.version))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        trace: if passed && std::env::var_os("FLARE_SIM_TRACE").is_none() {
            Vec::new()
        } else {
            e.trace.clone()
        },
        index_servers: s.index_servers,
        workload_started_ms: e.workload_started_ms.unwrap_or_default(),
        index_leaders: w.leader_changes.clone(),
        index_samples: w.samples.clone(),
    }
}

/// Runs `seeds` one after the other (a process runs one simulation at a time: see [`align_task_ids`]), building
/// each scenario with `make`. For parallel sweeps, run several processes (the `flare-sim` binary does).
pub fn run_seeds(seeds: &[u64], make: impl Fn(u64) -> Scenario) -> Vec<Report> {
    seeds.iter().map(|s| run(&make(*s))).collect()
}

/// Writes a failed run's trace to `<temp dir>/flare-sim-traces/<name>-<seed>.txt` (best effort); returns the path.
pub fn save_trace(report: &Report, name: &str) -> Option<String> {
    if report.trace.is_empty() {
        return None;
    }
    let dir = std::env::temp_dir().join("flare-sim-traces");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{name}-{}.txt", report.seed));
    std::fs::write(&path, report.trace.join("\n")).ok()?;
    Some(path.display().to_string())
}
