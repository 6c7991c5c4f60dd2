//! The Flare cluster driven by the turmoil network simulator: the production index and node drivers run in simulated
//! hosts on a simulated network and clock, with injected faults, and checkers that fail with the seed to replay.
//!
//! # The run loop
//!
//! One run is one [`Scenario`], built from one `u64` seed ([`Scenario::swarm`] draws everything from it: layout,
//! workload mix, which kinds of faults and when). [`run::run`] builds a turmoil simulation with these hosts:
//!
//! - `index`: the production [`IndexServer`](flare_runtime::index::IndexServer), its snapshots and Raft log in memory
//!   that survives a crash; with [`Scenario::index_servers`] > 1 also `index1`, `index2`, ...: one Raft group, every
//!   node configured with the whole list ([`hosts`]), watched and checked by [`group_check`];
//! - `n0`, `n1`, ...: production [`NodeServer`](flare_runtime::node::NodeServer)s on the in-memory engine (created
//!   outside the host, so a restarted node finds its data), each under a small supervisor that restarts a node whose
//!   start-up failed;
//! - `admin`: builds the cluster through the index, watches the node map, waits for convergence and reads the final
//!   state ([`admin`]);
//! - `client0`, ...: the workload ([`workload`]).
//!
//! and steps it, 1 ms of simulated time per step, until the client hosts finish. Between steps the [`faults`] driver
//! applies the fault plan. The run goes through these [`Phase`](history::Phase)s:
//!
//! 1. **Setup**: the admin builds the cluster (masters, then slaves; or slaves later, under load).
//! 2. **Faults**: the workload runs; partitions, held and slow links, node and index crashes happen as planned.
//!    With [`Scenario::grow_partition`] the admin also adds a partition (a spare node becomes its master) meanwhile.
//! 3. **Calm**: every fault is healed (links repaired and released, crashed hosts restarted). The workload goes on;
//!    the admin finishes a growth the faults interrupted; the cluster must converge (every node active, every
//!    partition with a master, every node holding the index's map) before [`Scenario::calm_limit`], or the run
//!    fails.
//! 4. **Stopping / Verify**: after a checked window the workload stops, replication drains, and the admin reads
//!    every node's `dump` and every key through every node.
//!
//! Checkers run while the run goes on (protocol errors, index-map invariants, convergence, panics) and at the end on
//! the recorded history ([`check`]): values, sync writes surviving, fresh reads, slaves matching masters, keys in
//! their partition only, reads through any node, one master per partition per map version (from every node's own
//! map, polled), and in some named scenarios the async loss of a failover within the reported backlog. With an index
//! group, [`group_check`] adds: index servers never show two maps under one version, nodes hold only maps the
//! servers showed, one leader per term, and the group settles on the final map once the run is over.
//!
//! # Seeds
//!
//! Everything random in a run derives from the seed: the scenario, each client's RNG, turmoil's latencies and
//! host order, each node's read-replica RNG (`ClusterSettings::seed`), tokio's `select!` choices (turmoil seeds each
//! host's runtime; `--cfg tokio_unstable`, set in `.cargo/config.toml`, makes tokio honour it), and the simulated
//! wall clock starts at a fixed epoch. So one seed always gives the same run: the trace hash of [`run::Report`] is
//! the same every time, and the determinism test checks it.
//!
//! A failing run prints its seed and a replay line, e.g.
//! `FLARE_SIM_SEED=1234 cargo test -p flare-sim --release --test swarm -- --nocapture`, and writes its trace to
//! `<temp dir>/flare-sim-traces/`. `cargo test -p flare-sim` runs a bounded set of seeds; `scripts/sim-sweep N
//! [START]` (or `cargo run -p flare-sim --release -- --seeds N --start S`) sweeps many. Every bug a seed finds
//! becomes a named regression scenario in `tests/regressions.rs`.
pub mod acks;
pub mod admin;
pub mod check;
pub mod client;
pub mod coresim;
pub mod faults;
pub mod group_check;
pub mod history;
pub mod hosts;
pub mod named;
pub mod net;
pub mod run;
pub mod scenario;
pub mod workload;

pub use run::{run, run_seeds, Report};
pub use scenario::Scenario;
