//! What a run records: every client operation with its outcome (the history the checkers read), the event trace
//! (its hash is the determinism check), the index maps the admin saw, and the failures found while running.
//!
//! **Order.** Every recorded event takes the next number of one counter ([`Env::next_seq`]). The simulation runs on
//! one thread, so these numbers are a total order consistent with real (simulated) time: when operation X's reply
//! was recorded before operation W was sent (`X.complete < W.invoke`), X took effect before W did. The checkers
//! reason only with that order, never with timestamps.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use flare_core::protocol::lines::stat_str;

/// A data command the workload sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `set`.
    Set,
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `cas` (with the version a `gets` returned).
    Cas,
    /// `append`.
    Append,
    /// `prepend`.
    Prepend,
    /// `delete`.
    Delete,
    /// `touch`.
    Touch,
    /// `incr`.
    Incr,
    /// `decr`.
    Decr,
    /// `get` (one or more keys).
    Get,
    /// `gets` (one or more keys).
    Gets,
}

impl Kind {
    /// The command word.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Set => "set",
            Kind::Add => "add",
            Kind::Replace => "replace",
            Kind::Cas => "cas",
            Kind::Append => "append",
            Kind::Prepend => "prepend",
            Kind::Delete => "delete",
            Kind::Touch => "touch",
            Kind::Incr => "incr",
            Kind::Decr => "decr",
            Kind::Get => "get",
            Kind::Gets => "gets",
        }
    }

    /// Writes a whole new value (its token is the value's base).
    pub fn sets_value(self) -> bool {
        matches!(self, Kind::Set | Kind::Add | Kind::Replace | Kind::Cas)
    }

    /// A read.
    pub fn is_read(self) -> bool {
        matches!(self, Kind::Get | Kind::Gets)
    }
}

/// One item as a read or a dump returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The key.
    pub key: String,
    /// Client flags.
    pub flags: u32,
    /// The version (`gets`, `dump`); 0 when the reply does not carry it.
    pub version: u64,
    /// The absolute exptime (`dump` only; 0 otherwise).
    pub exptime: u64,
    /// The value.
    pub value: Bytes,
}

/// What an operation got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
    Touched,
    /// The new value of an incr/decr.
    Number(u64),
    /// `CLIENT_ERROR cannot increment or decrement non-numeric value`.
    NonNumeric,
    /// The items of a read.
    Values(Vec<Seen>),
    /// A `SERVER_ERROR` line (the write may or may not have happened).
    ServerError(String),
    /// Any other line: a protocol error for a well-formed command (a checker failure).
    Unexpected(String),
    /// No reply within the client's timeout.
    Timeout,
    /// The connection failed (refused, reset, closed).
    Io(String),
    /// Sent with `noreply`.
    NoReply,
}

impl Outcome {
    /// The write certainly took effect.
    pub fn applied(&self) -> bool {
        matches!(
            self,
            Outcome::Stored | Outcome::Deleted | Outcome::Touched | Outcome::Number(_)
        )
    }

    /// The write certainly did not take effect.
    pub fn refused(&self) -> bool {
        matches!(
            self,
            Outcome::NotStored | Outcome::Exists | Outcome::NotFound | Outcome::NonNumeric
        )
    }

    fn text(&self) -> String {
        match self {
            Outcome::Stored => "STORED".into(),
            Outcome::NotStored => "NOT_STORED".into(),
            Outcome::Exists => "EXISTS".into(),
            Outcome::NotFound => "NOT_FOUND".into(),
            Outcome::Deleted => "DELETED".into(),
            Outcome::Touched => "TOUCHED".into(),
            Outcome::Number(n) => n.to_string(),
            Outcome::NonNumeric => "NON_NUMERIC".into(),
            Outcome::Values(v) => {
                let mut s = String::from("VALUES");
                for i in v {
                    let _ = write!(
                        s,
                        " {}/{}/{}/{}",
                        i.key,
                        i.flags,
                        i.version,
                        short(&i.value)
                    );
                }
                s
            }
            Outcome::ServerError(e) => format!("SERVER_ERROR {e}"),
            Outcome::Unexpected(l) => format!("UNEXPECTED {l}"),
            Outcome::Timeout => "TIMEOUT".into(),
            Outcome::Io(e) => format!("IO {e}"),
            Outcome::NoReply => "NOREPLY".into(),
        }
    }
}

/// One client operation.
#[derive(Clone, Debug)]
pub struct Op {
    /// The client's number.
    pub client: u32,
    /// The node it was sent to.
    pub node: String,
    /// The command.
    pub kind: Kind,
    /// Its key(s).
    pub keys: Vec<String>,
    /// The token it writes (`w<id>`, `a<id>`, `p<id>`), for set-like, append and prepend.
    pub token: Option<String>,
    /// Flags of a set-like write.
    pub flags: u32,
    /// incr/decr delta.
    pub delta: u64,
    /// Sent with `sync`.
    pub sync: bool,
    /// Order number when it was sent.
    pub invoke: u64,
    /// Order number when its outcome was known.
    pub complete: u64,
    /// Simulated milliseconds when it was sent.
    pub invoke_ms: u64,
    /// Simulated milliseconds when its outcome was known.
    pub complete_ms: u64,
    /// What it got.
    pub outcome: Outcome,
}

impl Op {
    /// X certainly took effect before `w` was sent.
    pub fn definitely_before(&self, w: &Op) -> bool {
        self.outcome.applied() && self.complete < w.invoke
    }

    /// The canonical trace line.
    pub fn trace_line(&self) -> String {
        format!(
            "{} op c{} {} {} {} {}{} -> {}",
            self.complete_ms,
            self.client,
            self.node,
            self.kind.name(),
            self.keys.join(","),
            self.token.as_deref().unwrap_or("-"),
            if self.sync { " sync" } else { "" },
            self.outcome.text()
        )
    }
}

/// Where the run is. Only moves forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The admin builds the cluster.
    Setup,
    /// Workload and faults.
    Faults,
    /// Faults healed; the admin waits for convergence while the workload goes on.
    Calm,
    /// Clients finish their last operation and stop.
    Stopping,
    /// The admin reads the final state.
    Verify,
    /// Finished.
    Done,
}

/// A node record as `stats nodes` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// `master`, `slave` or `proxy`.
    pub role: String,
    /// `active`, `prepare`, `down` or `ready`.
    pub state: String,
    /// −1 for none.
    pub partition: i64,
    /// Read weight.
    pub balance: u32,
}

/// A node map as `stats nodes` lists it, by node key.
pub type MapView = BTreeMap<String, NodeInfo>;

/// The final state the admin read after the calm phase.
#[derive(Clone, Debug, Default)]
pub struct FinalState {
    /// The index's map.
    pub map: MapView,
    /// Its version.
    pub version: u64,
    /// Every node's `dump`, by host name.
    pub dumps: BTreeMap<String, Vec<Seen>>,
    /// Every key read through every node with `gets`: (node, key) → item or absent.
    pub reads: BTreeMap<(String, String), Option<Seen>>,
    /// One multi-key `gets` of every key through every node, by host name.
    pub multi_reads: BTreeMap<String, Vec<Seen>>,
}

/// A failure found while running (or at the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which checker.
    pub checker: &'static str,
    /// What it saw.
    pub detail: String,
}

/// The record of one run, shared by every simulated host (behind [`SharedEnv`]).
#[derive(Debug)]
pub struct Env {
    /// Where the run is.
    pub phase: Phase,
    /// Completed operations, in completion order.
    pub ops: Vec<Op>,
    /// Trace lines (operations, faults, maps, boots), in order.
    pub trace: Vec<String>,
    /// Failures found while running.
    pub failures: Vec<Failure>,
    /// Workload clients still running.
    pub clients_running: u32,
    /// The order number at which the cluster was seen converged (reads sent later must be fresh).
    pub converged_at: Option<u64>,
    /// Simulated milliseconds at which the workload started (set by the admin).
    pub workload_started_ms: Option<u64>,
    /// Machine crashes: (host, order number at the crash).
    pub machine_crashes: Vec<(String, u64)>,
    /// The index maps the admin polled: (order number, map), one entry per change.
    pub maps: Vec<(u64, MapView)>,
    /// Versioned maps as their holders showed them: the index's (`stats` + `stats nodes`, polled by the admin) and
    /// each node's own, one entry per change of a holder's (version, map). See `check::one_master_per_version`.
    pub held_maps: Vec<HeldMap>,
    /// Each serving node's [`LagProbe`], by host name.
    pub lag_probes: BTreeMap<String, LagProbe>,
    /// The replication state of every node the fault driver crashed, at the crash.
    pub crash_lags: Vec<CrashLag>,
    /// The final state, once read.
    pub final_state: Option<FinalState>,
    seq: u64,
    trace_hash: u64,
}

/// A node's replication state, read in-process at the moment the fault driver crashes it (what its `stats` would
/// report then: `replication:<target>:queue` and `:failures`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashLag {
    /// The crashed node.
    pub host: String,
    /// Order number at the crash.
    pub seq: u64,
    /// Its own view of its role: (role, state, partition or −1).
    pub role: (String, String, i64),
    /// Per replication target (host name): entries queued or in flight, and entries dropped so far.
    pub targets: Vec<(String, usize, u64)>,
}

/// What a [`LagProbe`] reads: the node's (role, state, partition) and, per replication target, (host, entries
/// queued or in flight, entries dropped).
pub type LagReading = ((String, String, i64), Vec<(String, usize, u64)>);

/// Reads a live node's role and replication state (registered by the node host when it serves).
pub struct LagProbe(pub Box<dyn Fn() -> LagReading + Send + Sync>);

impl std::fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LagProbe")
    }
}

/// A map some host held, with the version it gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldMap {
    /// `index` or a node's host name.
    pub holder: String,
    /// The version it showed (`stats`: `node_map_version`).
    pub version: u64,
    /// The map it showed (`stats nodes`), read between two equal versions.
    pub map: MapView,
    /// Order number when it was seen.
    pub seq: u64,
}

/// [`Env`] shared between the hosts and the run loop.
pub type SharedEnv = Arc<Mutex<Env>>;

impl Env {
    /// A fresh record.
    pub fn new(clients: u32) -> SharedEnv {
        Arc::new(Mutex::new(Env {
            phase: Phase::Setup,
            ops: Vec::new(),
            trace: Vec::new(),
            failures: Vec::new(),
            clients_running: clients,
            converged_at: None,
            workload_started_ms: None,
            machine_crashes: Vec::new(),
            maps: Vec::new(),
            held_maps: Vec::new(),
            lag_probes: BTreeMap::new(),
            crash_lags: Vec::new(),
            final_state: None,
            seq: 0,
            trace_hash: FNV_OFFSET,
        }))
    }

    /// Records that `holder` showed `map` as its map of `version` (nothing when that is what it showed last).
    pub fn hold_map(&mut self, holder: &str, version: u64, map: MapView) {
        let last = self.held_maps.iter().rev().find(|h| h.holder == holder);
        if last.is_some_and(|h| h.version == version && h.map == map) {
            return;
        }
        let seq = self.next_seq();
        self.held_maps.push(HeldMap {
            holder: holder.to_string(),
            version,
            map,
            seq,
        });
    }

    /// The next order number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Appends a line to the trace (and its hash).
    pub fn trace(&mut self, line: String) {
        self.trace_hash = fnv(self.trace_hash, line.as_bytes());
        self.trace_hash = fnv(self.trace_hash, b"\n");
        self.trace.push(line);
    }

    /// Records a completed operation.
    pub fn record(&mut self, mut op: Op) {
        op.complete = self.next_seq();
        let line = op.trace_line();
        self.trace(line);
        self.ops.push(op);
    }

    /// Records a failure (and traces it).
    pub fn fail(&mut self, checker: &'static str, detail: String) {
        self.trace(format!("FAILURE {checker}: {detail}"));
        if self.failures.len() < 100 {
            self.failures.push(Failure { checker, detail });
        }
    }

    /// FNV-1a over every trace line.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }
}

/// Locks the shared record. A poisoned lock means a checker panicked while holding it; the record is still
/// consistent (every mutation is a push or an assignment), so the run goes on and reports.
pub fn lock(env: &SharedEnv) -> MutexGuard<'_, Env> {
    env.lock().unwrap_or_else(|e| e.into_inner())
}

/// Simulated milliseconds since the start of the run (0 outside a host).
pub fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A value for traces and reports: the padding of a base token (`:xxx…`) shown as its length (`:<n>`).
pub fn short(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut out = String::with_capacity(text.len().min(256));
    for (i, token) in text.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        match token.split_once(':') {
            Some((t, pad)) if !pad.is_empty() && pad.bytes().all(|b| b == b'x') => {
                let _ = write!(out, "{t}:<{}>", pad.len());
            }
            _ => out.push_str(token),
        }
    }
    out
}

/// Parses `stats nodes` lines (`STAT <name>:<port>:<field> <value>`) into a map.
pub fn parse_stats_nodes(lines: &[Bytes]) -> MapView {
    let mut map = MapView::new();
    for l in lines {
        let Some((name, value)) = stat_str(l) else {
            continue;
        };
        let Some((key, field)) = name.rsplit_once(':') else {
            continue;
        };
        let e = map.entry(key.to_string()).or_insert_with(|| NodeInfo {
            role: String::new(),
            state: String::new(),
            partition: -1,
            balance: 0,
        });
        match field {
            "role" => e.role = value.into(),
            "state" => e.state = value.into(),
            "partition" => e.partition = value.parse().unwrap_or(-1),
            "balance" => e.balance = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    map
}

/// One line per node, for traces and failure reports.
/// The index's part of convergence (both simulators): every node, given as `(name, key)`, registered and active,
/// and each of the `partitions` with an active master.
pub fn index_map_converged<'a>(
    map: &MapView,
    nodes: impl Iterator<Item = (&'a str, String)>,
    partitions: u32,
) -> Result<(), String> {
    for (name, key) in nodes {
        match map.get(&key) {
            None => return Err(format!("{name} not registered")),
            Some(n) if n.state != "active" => {
                return Err(format!("{name} is {}: {}", n.state, map_text(map)))
            }
            Some(_) => {}
        }
    }
    for p in 0..i64::from(partitions) {
        if !map
            .values()
            .any(|n| n.role == "master" && n.state == "active" && n.partition == p)
        {
            return Err(format!(
                "partition {p} has no active master: {}",
                map_text(map)
            ));
        }
    }
    Ok(())
}

pub fn map_text(map: &MapView) -> String {
    map.iter()
        .map(|(k, n)| format!("{k}={}/{}/{}/{}", n.role, n.state, n.partition, n.balance))
        .collect::<Vec<_>>()
        .join(" ")
}
