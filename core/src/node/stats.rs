//! What a node reports about itself, formatted from a [`Snapshot`] the driver takes: `stats` (stats.md §1), the
//! thread blocks of `stats threads` and `stats threads slave` (stats.md §2), and the samples of `/metrics`.
//!
//! Plain numbers in, `(name, value)` pairs or [`Metric`]s out: the driver reads its counters, the machine's
//! replication and reconstruction progress and the view into one snapshot, and both `stats` and `/metrics` are
//! built from it, so the two never disagree. Which fields appear, in which order, under which name, and which
//! slaves a master reports on, is decided here.

use std::sync::Arc;

use crate::exec::Tally;
use crate::node::replication::SenderStats;
use crate::node::view::ClusterView;
use crate::node::RebuildStats;
use crate::node_map::Role;

/// What the driver knows about the node at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The process id.
    pub pid: u32,
    /// Seconds since the server started.
    pub uptime: u64,
    /// Unix time in seconds.
    pub time: u64,
    /// `rusage_user` and `rusage_system`, already formatted (`<sec>.<usec>`).
    pub rusage: (String, String),
    /// Items the storage holds.
    pub curr_items: u64,
    /// Bytes the storage uses on disk.
    pub disk_bytes: u64,
    /// Client connections open now.
    pub curr_connections: u64,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// Connections refused at `max-connection`.
    pub rejected_connections: u64,
    /// Bytes read from all sockets.
    pub bytes_read: u64,
    /// Bytes written to all sockets.
    pub bytes_written: u64,
    /// Connections in the registry (`threads` is one more: the listener).
    pub connections: usize,
    /// The command counters.
    pub tally: Tally,
    /// Records sent by `dump` and `dump_key`.
    pub dump_items: u64,
    /// Dumps being streamed now.
    pub dumps_running: u64,
    /// The view this node routes with.
    pub view: Arc<ClusterView>,
    /// The highest replication sequence number applied from this node's master.
    pub applied_seq: u64,
    /// Replication counters per target.
    pub replication: Vec<(String, SenderStats)>,
    /// Reconstruction progress.
    pub rebuild: RebuildStats,
    /// False once a storage failure was seen.
    pub healthy: bool,
}

/// How many command counters there are.
pub const TALLY_FIELDS: usize = 18;

macro_rules! tally_fields {
    ($($name:ident),* $(,)?) => {
        /// The command counters as (`stats` name, value), in `stats` order.
        pub fn tally_fields(t: &Tally) -> [(&'static str, u64); TALLY_FIELDS] {
            [$( (stringify!($name), t.$name) ),*]
        }

        /// The counters back from the values of [`tally_fields`], in the same order.
        pub fn tally_from(values: [u64; TALLY_FIELDS]) -> Tally {
            let [$($name),*] = values;
            Tally { $($name),* }
        }
    };
}

tally_fields!(
    cmd_get,
    cmd_set,
    get_hits,
    get_misses,
    total_items,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    cas_hits,
    cas_misses,
    cas_badval,
    touch_hits,
    touch_misses,
    meta_cmds,
    storage_errors,
);

/// A replication target's backlog: entries queued or in flight.
fn backlog(s: &SenderStats) -> usize {
    s.queued + s.in_flight
}

/// `stats` (stats.md §1): Flare's fields in Flare's order, then ours.
pub fn general(s: &Snapshot) -> Vec<(String, String)> {
    let t = &s.tally;
    let mut out: Vec<(String, String)> = Vec::with_capacity(48);
    let mut put = |k: &str, v: String| out.push((k.to_string(), v));
    put("pid", s.pid.to_string());
    put("uptime", s.uptime.to_string());
    put("time", s.time.to_string());
    put("version", crate::VERSION.to_string());
    put("pointer_size", usize::BITS.to_string());
    put("rusage_user", s.rusage.0.clone());
    put("rusage_system", s.rusage.1.clone());
    put("curr_items", s.curr_items.to_string());
    put("total_items", t.total_items.to_string());
    put("bytes", s.disk_bytes.to_string());
    put("curr_connections", s.curr_connections.to_string());
    put("total_connections", s.total_connections.to_string());
    put("connection_structures", "0".into());
    for (name, value) in tally_fields(t) {
        if !matches!(name, "total_items" | "meta_cmds" | "storage_errors") {
            put(name, value.to_string());
        }
    }
    put("evictions", "0".into());
    put("bytes_read", s.bytes_read.to_string());
    put("bytes_written", s.bytes_written.to_string());
    put("limit_maxbytes", "0".into());
    put("threads", (s.connections + 1).to_string());
    put("pool_threads", "0".into());
    put("node_map_version", s.view.map().version.to_string());
    // Additions (stats.md §1 [Improve]), after Flare's fields.
    put("server_version", format!("flare-{}", crate::VERSION));
    let (role, state, partition, balance) = s.view.my_role();
    put("node_role", role.name().into());
    put("node_state", state.name().into());
    put(
        "node_partition",
        partition.map_or(-1, i64::from).to_string(),
    );
    put("node_balance", balance.to_string());
    put("replication_position", s.applied_seq.to_string());
    let repl = &s.replication;
    let queue: usize = repl.iter().map(|(_, st)| backlog(st)).sum();
    put("replication_queue", queue.to_string());
    let lag = repl.iter().map(|(_, st)| st.lag.as_millis()).max();
    put("replication_lag_ms", lag.unwrap_or(0).to_string());
    let failures: u64 = repl.iter().map(|(_, st)| st.failures).sum();
    put("replication_failures", failures.to_string());
    for (target, st) in repl {
        put(
            &format!("replication:{target}:queue"),
            backlog(st).to_string(),
        );
        put(
            &format!("replication:{target}:lag_ms"),
            st.lag.as_millis().to_string(),
        );
        put(
            &format!("replication:{target}:acked"),
            st.acked_seq.to_string(),
        );
        put(
            &format!("replication:{target}:failures"),
            st.failures.to_string(),
        );
    }
    put(
        "reconstruction_running",
        u8::from(s.rebuild.running).to_string(),
    );
    put("reconstruction_items", s.rebuild.items.to_string());
    put("reconstruction_total", s.rebuild.total.to_string());
    put("meta_cmds", t.meta_cmds.to_string());
    put("rejected_connections", s.rejected_connections.to_string());
    put("storage_errors", t.storage_errors.to_string());
    put("healthy", u8::from(s.healthy).to_string());
    out
}

/// Thread (connection) states shown by `stats threads` (stats.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    /// Idle, waiting for a request.
    Wait = 0,
    /// Running a request.
    Execute = 1,
    /// Stopping.
    Shutdown = 2,
    /// Stopped by `kill`.
    Killed = 3,
}

impl ThreadState {
    /// The state stored as `v` (`ThreadState as u8`); an unknown value reads as [`ThreadState::Wait`].
    pub fn from_u8(v: u8) -> ThreadState {
        match v {
            1 => ThreadState::Execute,
            2 => ThreadState::Shutdown,
            3 => ThreadState::Killed,
            _ => ThreadState::Wait,
        }
    }

    /// The `state` field.
    pub fn name(self) -> &'static str {
        match self {
            ThreadState::Wait => "wait",
            ThreadState::Execute => "execute",
            ThreadState::Shutdown => "shutdown",
            ThreadState::Killed => "killed",
        }
    }
}

/// One block of `stats threads` (stats.md §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    /// The id `kill` takes.
    pub id: u64,
    /// `type`: 1 for a client connection, the target's `thread_type` for a replication target.
    pub kind: u32,
    /// The peer's address or node key.
    pub peer: String,
    /// The command being run; empty when idle.
    pub op: String,
    /// Seconds since the thread started.
    pub uptime: u64,
    /// The state.
    pub state: ThreadState,
    /// Requests (or writes) waiting.
    pub queue: usize,
    /// Seconds behind.
    pub behind: u64,
}

impl Thread {
    /// Appends this block's eight fields, `<id>:<field>`, in Flare's order.
    pub fn push_to(&self, out: &mut Vec<(String, String)>) {
        let id = self.id;
        out.push((format!("{id}:type"), self.kind.to_string()));
        out.push((format!("{id}:peer"), self.peer.clone()));
        out.push((format!("{id}:op"), self.op.clone()));
        out.push((format!("{id}:uptime"), self.uptime.to_string()));
        out.push((format!("{id}:state"), self.state.name().to_string()));
        out.push((format!("{id}:info"), String::new()));
        out.push((format!("{id}:queue"), self.queue.to_string()));
        out.push((format!("{id}:behind"), self.behind.to_string()));
    }
}

/// `stats threads slave` (stats.md §2): one block per replication target of this master, numbered from 1,000,000,
/// with the target's `thread_type` as `type`, the target as `peer`, `proxy_write` as `op` while writes wait, the
/// backlog as `queue` and the lag as `behind`.
pub fn slave_threads(
    view: &ClusterView,
    replication: &[(String, SenderStats)],
    uptime: u64,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, (target, st)) in replication.iter().enumerate() {
        let queue = backlog(st);
        Thread {
            id: 1_000_000 + i as u64,
            kind: view.node(target).map_or(0, |r| r.thread_type),
            peer: target.clone(),
            op: if queue > 0 {
                "proxy_write".into()
            } else {
                String::new()
            },
            uptime,
            state: ThreadState::Wait,
            queue,
            behind: st.lag.as_secs(),
        }
        .push_to(&mut out);
    }
    out
}

/// `stats threads queue`: nothing is queued between threads here.
pub fn thread_queue() -> Vec<(String, String)> {
    vec![("total_thread_queue".into(), "0".into())]
}

/// A metric's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (the exposition adds `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A sample's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// An integer.
    Int(u64),
    /// A real number.
    Float(f64),
}

/// A metric's samples.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    /// One sample without labels.
    One(Value),
    /// One sample per label set; a metric with no rows is left out.
    Labelled(Vec<(Vec<(&'static str, String)>, Value)>),
}

/// One metric of `/metrics`, as data for the driver's exposition encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// The name (a counter's without `_total`).
    pub name: String,
    /// The help text.
    pub help: String,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The samples.
    pub samples: Samples,
}

fn one(kind: MetricKind, name: &str, help: &str, v: u64) -> Metric {
    Metric {
        name: name.into(),
        help: help.into(),
        kind,
        samples: Samples::One(Value::Int(v)),
    }
}

fn gauge(name: &str, help: &str, v: u64) -> Metric {
    one(MetricKind::Gauge, name, help, v)
}

fn counter(name: &str, help: &str, v: u64) -> Metric {
    one(MetricKind::Counter, name, help, v)
}

/// The first part of a node's `/metrics`: health, storage, connections and the `stats` counters. The driver writes
/// its requests by command and result next, then [`cluster_metrics`].
pub fn counter_metrics(s: &Snapshot) -> Vec<Metric> {
    let mut out = vec![
        gauge("flare_up", "1 while the node serves", 1),
        gauge(
            "flare_healthy",
            "0 after a storage error (ping answers SERVER_ERROR)",
            u64::from(s.healthy),
        ),
        gauge("flare_uptime_seconds", "Seconds since start", s.uptime),
        gauge("flare_items", "Items stored (curr_items)", s.curr_items),
        gauge(
            "flare_bytes",
            "Bytes the storage uses on disk (bytes)",
            s.disk_bytes,
        ),
        gauge(
            "flare_connections",
            "Client connections open (curr_connections)",
            s.curr_connections,
        ),
        counter(
            "flare_connections_accepted",
            "Connections accepted since start (total_connections)",
            s.total_connections,
        ),
        counter("flare_bytes_read", "Bytes read from clients", s.bytes_read),
        counter(
            "flare_bytes_written",
            "Bytes written to clients",
            s.bytes_written,
        ),
    ];
    for (name, value) in tally_fields(&s.tally) {
        // `total_items` would read `flare_total_items_total`.
        let metric = match name {
            "total_items" => "flare_items_stored".to_string(),
            _ => format!("flare_{name}"),
        };
        out.push(counter(
            &metric,
            &format!("The stats counter {name}"),
            value,
        ));
    }
    out
}

/// The rest of a node's `/metrics`: dumps, the node's place in the cluster, replication per slave (a master's
/// slaves appear before their first replicated write, with zero backlog) and reconstruction progress.
pub fn cluster_metrics(s: &Snapshot) -> Vec<Metric> {
    let view = &s.view;
    let (role, state, partition, balance) = view.my_role();
    let mut out = vec![
        counter(
            "flare_dump_items",
            "Records sent by dump and dump_key (to reconstructing nodes and to clients)",
            s.dump_items,
        ),
        gauge(
            "flare_dumps_running",
            "Dumps being streamed now",
            s.dumps_running,
        ),
        gauge(
            "flare_node_map_version",
            "Version of the node map this node routes with",
            view.map().version,
        ),
        Metric {
            name: "flare_node_info".into(),
            help: "This node's role, state and partition (value 1)".into(),
            kind: MetricKind::Gauge,
            samples: Samples::Labelled(vec![(
                vec![
                    ("role", role.name().to_string()),
                    ("state", state.name().to_string()),
                    (
                        "partition",
                        partition.map_or_else(|| "-1".to_string(), |p| p.to_string()),
                    ),
                ],
                Value::Int(1),
            )]),
        },
        gauge(
            "flare_node_balance",
            "This node's read balance",
            u64::from(balance),
        ),
        gauge(
            "flare_partitions",
            "Partitions in the node map",
            u64::from(view.partition_count()),
        ),
        gauge(
            "flare_replication_position",
            "Sequence number of the last write replicated to this node",
            s.applied_seq,
        ),
    ];
    let mut repl = s.replication.clone();
    if let (Role::Master, Some(p)) = (role, partition) {
        let slaves = view
            .partitions()
            .active
            .get(p as usize)
            .map(|part| part.slaves.clone())
            .unwrap_or_default();
        for slave in slaves {
            if !repl.iter().any(|(t, _)| *t == slave) {
                repl.push((slave, SenderStats::default()));
            }
        }
        repl.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let family = |kind, name: &str, help: &str, f: &dyn Fn(&SenderStats) -> Value| Metric {
        name: name.into(),
        help: help.into(),
        kind,
        samples: Samples::Labelled(
            repl.iter()
                .map(|(t, st)| (vec![("slave", t.clone())], f(st)))
                .collect(),
        ),
    };
    use MetricKind::{Counter, Gauge};
    out.extend([
        family(
            Gauge,
            "flare_replication_queue",
            "Writes queued or in flight to a slave (backlog)",
            &|st| Value::Int(backlog(st) as u64),
        ),
        family(
            Gauge,
            "flare_replication_lag_seconds",
            "Age of the oldest write a slave has not acknowledged",
            &|st| Value::Float(st.lag.as_secs_f64()),
        ),
        family(
            Gauge,
            "flare_replication_acked_position",
            "Highest sequence number a slave acknowledged",
            &|st| Value::Int(st.acked_seq),
        ),
        family(
            Counter,
            "flare_replication_failures",
            "Writes a slave did not get (backlog full or too many errors)",
            &|st| Value::Int(st.failures),
        ),
        family(
            Counter,
            "flare_replication_sent",
            "Replication messages sent to a slave (resends included)",
            &|st| Value::Int(st.sent),
        ),
        gauge(
            "flare_reconstruction_running",
            "1 while this node copies its partition from a master",
            u64::from(s.rebuild.running),
        ),
        gauge(
            "flare_reconstruction_items",
            "Items received by the current (or last) reconstruction",
            s.rebuild.items,
        ),
        gauge(
            "flare_reconstruction_total_items",
            "Items the sources held when the reconstruction started (0 = unknown)",
            s.rebuild.total,
        ),
    ]);
    out
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
