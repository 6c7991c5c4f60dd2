//! The real-time evidence for split brain: every write a node acknowledged as a partition's master, in simulated
//! time order, and the checker that reads it.
//!
//! `core::node` emits a trace event (target `flare::ack`: node, partition, the version of the map it holds) at the
//! moment it acknowledges a client's write as master. [`collect`] installs, on the simulation's thread, a
//! subscriber that records those events (and prints the daemons' logs when `RUST_LOG` is set); the simulation runs
//! on that one thread, so the order of the records is the order in simulated time.
//!
//! **The check** ([`one_acknowledging_master`]): once a node has acknowledged a write for partition P under map
//! version v, no other node may acknowledge one for P later under an older version. That is the split brain the
//! leases end: a master cut off from the index, still holding its old map, acknowledging writes after the slave
//! promoted in its place has begun to. A node that becomes P's master again later does so under a newer map, which
//! is allowed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::history::Failure;

/// One acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Simulated time since the simulation started.
    pub at: Duration,
    /// The node (`<name>:<port>`).
    pub node: String,
    /// The partition.
    pub partition: u32,
    /// The version of the map the node held.
    pub version: u64,
}

/// The acknowledgements of the run in progress (one simulation runs at a time in a process, see `run::run`).
static ACKS: Mutex<Vec<Ack>> = Mutex::new(Vec::new());

struct AckLayer;

#[derive(Default)]
struct Fields {
    node: String,
    partition: Option<u64>,
    version: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "partition" => self.partition = Some(value),
            "version" => self.version = Some(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "node" {
            self.node = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for AckLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        if let (Some(p), Some(v)) = (f.partition, f.version) {
            ACKS.lock().unwrap_or_else(|e| e.into_inner()).push(Ack {
                at: turmoil::sim_elapsed().unwrap_or_default(),
                node: f.node,
                partition: p as u32,
                version: v,
            });
        }
    }
}

/// Log timestamps in simulated milliseconds since the host started (the trace's clock).
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "{:>6}", t.as_millis()),
            None => write!(w, "     -"),
        }
    }
}

/// Starts recording (forgetting any earlier run's records) on this thread until the guard drops. With `RUST_LOG`
/// set (`RUST_LOG=flare_runtime=debug`), the daemons' logs go to stderr too, all hosts interleaved.
pub fn collect() -> tracing::subscriber::DefaultGuard {
    ACKS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let acks =
        AckLayer.with_filter(Targets::new().with_target("flare::ack", tracing::Level::TRACE));
    let logs = std::env::var_os("RUST_LOG").map(|_| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_timer(SimTime)
            .with_filter(tracing_subscriber::EnvFilter::from_default_env())
    });
    let subscriber = tracing_subscriber::registry().with(acks).with(logs);
    tracing::subscriber::set_default(subscriber)
}

/// The acknowledgements recorded since [`collect`].
pub fn take() -> Vec<Ack> {
    std::mem::take(&mut *ACKS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// No node acknowledges a write for a partition after another node acknowledged one for it under a newer map.
pub fn one_acknowledging_master(acks: &[Ack]) -> Vec<Failure> {
    // partition → (the newest version acknowledged under, by whom, when).
    let mut newest: BTreeMap<u32, (u64, &str, Duration)> = BTreeMap::new();
    let mut out = Vec::new();
    for a in acks {
        match newest.get(&a.partition) {
            Some(&(v, node, at)) if a.version < v && a.node != node => out.push(Failure {
                checker: "one acknowledging master",
                detail: format!(
                    "{} acknowledged a write for partition {} at {} ms under map version {}, after {} had \
                     acknowledged one under version {v} at {} ms",
                    a.node,
                    a.partition,
                    a.at.as_millis(),
                    a.version,
                    node,
                    at.as_millis()
                ),
            }),
            Some(&(v, ..)) if a.version <= v => {}
            _ => {
                newest.insert(a.partition, (a.version, &a.node, a.at));
            }
        }
    }
    out.truncate(20);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(ms: u64, node: &str, version: u64) -> Ack {
        Ack {
            at: Duration::from_millis(ms),
            node: node.into(),
            partition: 0,
            version,
        }
    }

    #[test]
    fn an_old_master_acknowledging_after_the_new_one_fails() {
        let acks = [ack(1, "n0", 3), ack(2, "n1", 5), ack(3, "n0", 3)];
        let f = one_acknowledging_master(&acks);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].detail.starts_with("n0 acknowledged"),
            "{}",
            f[0].detail
        );
    }

    #[test]
    fn a_handover_and_a_later_return_pass() {
        let acks = [
            ack(1, "n0", 3),
            ack(2, "n0", 4),
            ack(3, "n1", 5),
            ack(4, "n1", 5),
            ack(5, "n0", 9),
        ];
        assert!(one_acknowledging_master(&acks).is_empty());
    }
}
