//! The core-level cluster simulator: the index and node **machines** of a whole cluster (K index servers, each a
//! `core::index::group::Group`, the Raft group around `core::index::Index`; `core::node::Node`), each node on the
//! storage model (`MemoryStorage`), joined by an in-memory network, stepped by one event queue in one thread. No
//! tokio, no turmoil, no drivers: thousands of seeds a minute, where the turmoil simulation over the production
//! drivers (`crate::run`) runs a few.
//!
//! **What it models.** Every message of the cluster is one [`Payload`] between two hosts (index servers, nodes,
//! clients, the admin): node calls, the index session and its renewals, probes and pushes, Raft messages between
//! index servers and the commands a follower forwards to the leader, replication entries on their links,
//! forwarded requests and their answers, dumps. Requests and answers are real bytes, decoded with core's
//! parsers (`Decoder`, `AdminParser`, `ReplyReader`), so what a node serves is what `flared` serves. A link
//! between two hosts has a latency drawn per message, keeps its messages in order, and can be cut (messages lost:
//! connections stall), held (messages kept and delivered on release), or slowed. A crashed host loses its
//! in-memory state but not its storage (process crashes); its peers see its connections close. Time moves from
//! event to event.
//!
//! **The index group** (`servers`, `group_plan`): the core swarm runs 1, 3 or 5 index servers (drawn from the seed;
//! named scenarios run one), hosts `index`, `index1`, …, each with a disk that survives its crashes. Nodes are
//! configured with all of them and try them in the order their machine says (`Node::call_addresses`,
//! `Node::index_order`: the leader they know first), the next one when a server refuses the connection or does
//! not answer in time, as `flared` does; they follow a follower's redirect. The admin sends each command to a
//! server drawn at random (a follower forwards it), and sends it again on an error (to the leader a redirect
//! names). With more than one server, a fault plan of the group's own is added to the swarm's: servers crash and
//! restart (sometimes a majority, for a while; never the last one up), the acting leader crashes, servers are cut
//! from each other and from nodes, links between them are held or slowed.
//!
//! **The run** follows the turmoil simulation's phases (`history::Phase`) on the same [`Scenario`] (the swarm's
//! draw, with what this simulator does not model turned off: growth, slaves added under load, slave rebuilds,
//! counters, `noreply`, machine crashes; faults at half the swarm's times): setup through the index as an
//! operator would, faults under a workload of random commands to random nodes, calm until the cluster converged,
//! a checked window, drain, and the read-back of every node's store and of every key through every node.
//!
//! **Checkers**: the same as `crate::run`'s (`check::check_run`: values, sync writes survive, fresh reads, slaves
//! match masters, keys in their partition, reads through any node, one master per partition per map version), the
//! real-time one (`acks::one_acknowledging_master`) on the acknowledgements the driver saw, timed in simulated
//! time, and the index group's (`group_check`: index servers apply the same map under a version and nodes hold
//! only those; acknowledged maps survive; one pushing server per term, only while acting; no conflicts). The calm
//! phase restarts every index server, and convergence then waits for one acting leader whose map every server
//! applied and every node holds. Everything random derives from the seed; the trace hash makes the determinism
//! check.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use flare_core::config::{IndexServer as IndexServerAddr, NodeConfig};
use flare_core::exec::{self, Outcome as ExecOutcome, Tally};
use flare_core::index::{ConnId, IndexParams};
use flare_core::node::plan::{self, Answer as PartAnswer, Finish, Origin, Part, Pending, Plan};
use flare_core::node::session::{IndexAddr, Redirect};
use flare_core::node::targets::{WriteFailure, WriteId};
use flare_core::node::wire::{dump_item, replica_for, PeerReplyBuilder};
use flare_core::node::{
    no_lease_reply, Action, CallId, Dest, Node, NodeSettings, Registration, StoreOp,
};
use flare_core::node_map::{Role, State};
use flare_core::protocol::admin::{AdminCommand, IndexCommand, NodeAddr};
use flare_core::protocol::lines;
use flare_core::protocol::reply::{PeerReply, ReplyEvent, ReplyKind, ReplyReader};
use flare_core::protocol::response::{encode, encode_text};
use flare_core::protocol::{
    Command, Decoded, Decoder, ErrorReply, Framing, Limits, ProxyPath, ReplicationMode, Reply,
    StatsGroup,
};
use flare_core::storage::{Change, MemoryStorage, Storage};
use flare_core::store::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::acks::{one_acknowledging_master, Ack};
use crate::check::check_run;
use crate::client::Answer as ClientAnswer;
use crate::history::{
    index_map_converged, lock, map_text, parse_stats_nodes, Env, Failure, FinalState, Kind,
    MapView, NodeInfo, Op, Outcome, Phase, Seen,
};
use crate::hosts::{index_config, node_config, store_config};
use crate::scenario::{CrashModel, Fault, Planned, Scenario, INDEX_PORT, NODE_PORT};
use crate::workload::{classify, record_checked, OP_TIMEOUT};

mod group_check;
mod group_plan;
mod servers;

use group_check::GroupLog;
pub use group_plan::{group_faults, index_servers, server_names, LEADER};
use servers::IndexServer;

/// How long the admin waits for an index server's reply (a follower waits [`servers::FORWARD_TIMEOUT`] for its
/// leader).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(6);
/// How often the admin sends a command that failed before it gives up (its caller tries again later).
const ADMIN_TRIES: u32 = 5;
/// How long the process supervisor waits before it starts a node whose start failed again (as `hosts`' does).
const SUPERVISOR_WAIT: Duration = Duration::from_secs(1);

/// What one core-level run found.
#[derive(Debug)]
pub struct CoreReport {
    /// The scenario run.
    pub scenario: Scenario,
    /// Every failure (empty: passed).
    pub failures: Vec<Failure>,
    /// The trace hash (the determinism check compares it).
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Simulated time at the end.
    pub sim_ms: u64,
    /// Client operations recorded.
    pub ops: usize,
    /// Index servers in the group.
    pub index_servers: usize,
}

impl CoreReport {
    /// No checker failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The one-line replay command (with the group's size when it is not the one the seed draws).
    pub fn replay_line(&self) -> String {
        let env = match self.index_servers == GroupOptions::drawn(&self.scenario) {
            true => String::new(),
            false => format!("FLARE_CORE_INDEX_SERVERS={} ", self.index_servers),
        };
        let seed = self.scenario.seed;
        format!("{env}scripts/sim-core 1 {seed}   (or: {env}target/release/flare-sim-core --seed {seed})")
    }
}

/// The swarm scenario of `seed`, restricted to what this simulator models.
pub fn scenario(seed: u64) -> Scenario {
    let mut s = Scenario::swarm(seed);
    s.name = "core".into();
    s.grow_partition = false;
    s.slaves_under_load = false;
    s.rebuild_slaves = false;
    s.counters = 0;
    s.noreply_ratio = 0.0;
    s.crash_model = CrashModel::Process;
    s.fault_phase /= 2;
    for f in &mut s.faults {
        f.at /= 2;
    }
    s.faults.retain(|f| f.at < s.fault_phase);
    s.calm_limit = Duration::from_secs(30);
    s
}

/// Where an answer goes.
#[derive(Clone, Debug)]
enum ReplyTo {
    /// A workload client's (or the admin's) request `op`.
    Client { host: usize, op: u64 },
    /// Part `part` of request `req` on node host `host`.
    Part {
        host: usize,
        boot: u64,
        req: u64,
        part: usize,
    },
    /// A replication entry on `host`'s link `gen` to `peer` (this node's key).
    Link {
        host: usize,
        boot: u64,
        gen: u64,
        peer: String,
    },
    /// A part run locally on the same node.
    Local { req: u64, part: usize },
}

#[derive(Clone, Debug)]
enum Payload {
    /// A node's call: one reply per line.
    Call {
        call: CallId,
        lines: Vec<(String, ReplyKind)>,
    },
    CallReply {
        call: CallId,
        replies: Vec<Vec<ReplyEvent>>,
    },
    SessionOpen {
        sid: u64,
        lines: Vec<String>,
    },
    SessionOpened {
        sid: u64,
        conn: ConnId,
        answers: Vec<Bytes>,
    },
    SessionLine {
        conn: ConnId,
        line: String,
    },
    SessionReply {
        conn: ConnId,
        line: Bytes,
    },
    /// The node closed its session (or its process died: the kernel closes it).
    SessionEnd {
        conn: ConnId,
        node: String,
    },
    /// The index closed the session (or died).
    SessionBroken {
        conn: ConnId,
    },
    LinkSyn {
        gen: u64,
        peer: String,
    },
    LinkAck {
        gen: u64,
        peer: String,
    },
    /// A link's other end went away.
    LinkFin {
        peer: String,
    },
    Request {
        bytes: Bytes,
        to: ReplyTo,
    },
    Answer {
        bytes: Bytes,
        to: ReplyTo,
    },
    Probe {
        id: u64,
        position: bool,
    },
    ProbeReply {
        id: u64,
        position: u64,
    },
    Push {
        id: u64,
        version: u64,
        lines: Vec<flare_core::protocol::NodeLine>,
    },
    PushReply {
        id: u64,
        ok: bool,
    },
    Dump {
        pull: CallId,
        line: String,
    },
    DumpData {
        pull: CallId,
        bytes: Bytes,
    },
    /// One Raft message between index servers.
    Raft {
        bytes: Vec<u8>,
    },
    /// A command a follower forwards to the leader, on a connection marked `index peer <peer>`.
    Forward {
        forward: u64,
        peer: String,
        line: String,
    },
    ForwardReply {
        forward: u64,
        reply: Reply,
    },
    /// An admin command to an index server.
    AdminLine {
        op: u64,
        line: String,
    },
    AdminReply {
        op: u64,
        reply: Reply,
    },
    /// The destination process is gone (down, or restarted since): its kernel refused or reset the connection.
    Refused(Box<Payload>),
}

#[derive(Clone, Debug)]
struct Msg {
    from: usize,
    to: usize,
    to_boot: u64,
    payload: Payload,
}

#[derive(Clone, Debug)]
enum Ev {
    Deliver(Msg),
    NodeTimer(usize, u64),
    /// Node, boot: its start failed; its supervisor stops it and starts it again.
    Supervise(usize, u64),
    /// Node, boot: the supervisor starts it again.
    SupervisorRestart(usize, u64),
    /// Index server, timer generation.
    IndexTimer(usize, u64),
    /// An index server's first start.
    IndexBoot(usize),
    /// Node, boot, call, attempt.
    CallTimeout(usize, u64, CallId, usize),
    LinkTimeout(usize, u64, String, u64),
    /// Node, boot, session, attempt.
    SessionTimeout(usize, u64, u64, usize),
    PartTimeout(usize, u64, u64, usize),
    /// Index server, probe.
    ProbeTimeout(usize, u64),
    /// Index server, push.
    PushTimeout(usize, u64),
    /// Index server, boot, forward, whether it was sent.
    ForwardTimeout(usize, u64, u64, bool),
    AdminTimeout(u64),
    ClientTimeout(usize, u64),
    ClientGo(usize),
    Admin,
    Fault(usize),
}

/// A request a node runs in parts (forwarded, split, retried).
struct Inflight {
    to: ReplyTo,
    framing: Framing,
    pending: Pending,
    answers: Vec<Option<PartAnswer>>,
    kinds: Vec<ReplyKind>,
    left: usize,
}

struct NodeHost {
    name: String,
    key: String,
    up: bool,
    boot: u64,
    settings: NodeSettings,
    storage: Arc<MemoryStorage>,
    store: Store<Arc<MemoryStorage>>,
    node: Node,
    timer_gen: u64,
    calls: BTreeMap<CallId, Attempts>,
    session: Option<NodeSession>,
    next_sid: u64,
    links: BTreeMap<String, (u64, bool)>,
    next_gen: u64,
    waits: BTreeMap<WriteId, (ReplyTo, Framing, Reply, Option<u32>)>,
    reqs: BTreeMap<u64, Inflight>,
    next_req: u64,
    held_version: Option<u64>,
}

/// A node's call, tried at each of its destinations in turn until one answers (`flared`'s exchange).
struct Attempts {
    /// Hosts, in order.
    dests: Vec<usize>,
    /// The one tried now.
    at: usize,
    lines: Vec<(String, ReplyKind)>,
    /// Per destination.
    timeout: Duration,
}

/// A node's index session: opened at each of `dests` in turn until one answers, then on that server.
struct NodeSession {
    sid: u64,
    dests: Vec<usize>,
    at: usize,
    lines: Vec<String>,
    /// The server that answered the open and the connection's id there.
    open: Option<(usize, ConnId)>,
}

/// The admin's command in flight: sent to one server, again on an error.
struct AdminCmd {
    line: String,
    /// The server it goes to next.
    server: usize,
    tries: u32,
    /// The try in flight (its op id), or none: sent again at `retry_at`.
    op: Option<u64>,
    retry_at: Duration,
}

#[derive(Clone, Debug)]
struct ClientOp {
    id: u64,
    op: Op,
    reads: bool,
}

struct ClientHost {
    idx: u32,
    rng: StdRng,
    inflight: Option<ClientOp>,
    next_token: u64,
    done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Registering,
    Masters(usize),
    Slaves(usize),
    Faults,
    Calm,
    Window,
    Stopping,
    Draining,
    Reading,
    Done,
}

/// The whole simulated cluster.
struct Sim {
    s: Scenario,
    base: Instant,
    now: Duration,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    events: Vec<Option<Ev>>,
    free: Vec<usize>,
    seq: u64,
    rng: StdRng,
    /// Host names: the index servers (hosts `0..K`), the nodes, the clients, the admin.
    names: Vec<String>,
    params: IndexParams,
    ix: Vec<IndexServer>,
    group_log: GroupLog,
    /// Index servers `Crash(LEADER)` took down, for `Restart(LEADER)`.
    leader_crashes: Vec<usize>,
    admin_cmd: Option<AdminCmd>,
    /// See [`GroupOptions::amnesia`].
    amnesia: bool,
    nodes: Vec<NodeHost>,
    clients: Vec<ClientHost>,
    admin_host: usize,
    env: crate::history::SharedEnv,
    // Links between hosts: cut (count), held (count and messages), slowed (max latency), last delivery.
    cut: BTreeMap<(usize, usize), u32>,
    held: BTreeMap<(usize, usize), (u32, Vec<Msg>)>,
    slow: BTreeMap<(usize, usize), Duration>,
    last: BTreeMap<(usize, usize), Duration>,
    acks: Vec<Ack>,
    stage: Stage,
    stage_since: Duration,
    /// The setup stage's command was sent.
    stage_sent: bool,
    workload_start: Duration,
    admin_ops: BTreeMap<u64, (String, String, bool)>,
    final_state: Option<FinalState>,
    next_op: u64,
    processed: u64,
    done: bool,
    debug: bool,
    /// Connections that lost a message.
    stalled: BTreeSet<String>,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// The cluster of `s` with `k` index servers (the group's faults added to the plan).
    fn new(s: &Scenario, k: usize) -> Sim {
        let base = Instant::now();
        let mut s = s.clone();
        s.faults.extend(group_faults(&s, k));
        s.faults.sort_by_key(|t| t.at);
        let s = &s;
        let layout = s.layout();
        let servers = server_names(k);
        let mut names = servers.clone();
        names.extend(layout.iter().map(|(n, _)| n.clone()));
        names.extend(s.client_hosts());
        names.push(crate::scenario::ADMIN.to_string());
        let admin_host = names.len() - 1;
        let ic = index_config(s);
        let params = IndexParams::from_config(&ic);
        let nodes = layout
            .iter()
            .map(|(name, _)| {
                let c = node_config_of(s, name, &servers);
                let settings = NodeSettings::from_config(&c);
                let storage = Arc::new(MemoryStorage::new());
                let store = Store::new(storage.clone(), store_config(&c));
                let node = Node::new(settings.clone(), base);
                NodeHost {
                    key: format!("{name}:{NODE_PORT}"),
                    name: name.clone(),
                    up: true,
                    boot: 0,
                    settings,
                    storage,
                    store,
                    node,
                    timer_gen: 0,
                    calls: BTreeMap::new(),
                    session: None,
                    next_sid: 0,
                    links: BTreeMap::new(),
                    next_gen: 0,
                    waits: BTreeMap::new(),
                    reqs: BTreeMap::new(),
                    next_req: 0,
                    held_version: None,
                }
            })
            .collect();
        let clients = (0..s.clients)
            .map(|i| ClientHost {
                idx: i,
                rng: StdRng::seed_from_u64(
                    s.seed ^ (u64::from(i) + 1).wrapping_mul(0xa076_1d64_78bd_642f),
                ),
                inflight: None,
                next_token: 0,
                done: false,
            })
            .collect();
        let mut sim = Sim {
            s: s.clone(),
            base,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            free: Vec::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(s.seed ^ 0xc0de_5eed),
            names,
            params,
            ix: servers.iter().map(|n| IndexServer::new(n)).collect(),
            group_log: GroupLog::default(),
            leader_crashes: Vec::new(),
            admin_cmd: None,
            amnesia: false,
            nodes,
            clients,
            admin_host,
            env: Env::new(s.clients),
            cut: BTreeMap::new(),
            held: BTreeMap::new(),
            slow: BTreeMap::new(),
            last: BTreeMap::new(),
            acks: Vec::new(),
            stage: Stage::Registering,
            stage_since: Duration::ZERO,
            stage_sent: false,
            workload_start: Duration::ZERO,
            admin_ops: BTreeMap::new(),
            final_state: None,
            next_op: 0,
            processed: 0,
            done: false,
            debug: std::env::var_os("FLARE_CORE_DEBUG").is_some(),
            stalled: BTreeSet::new(),
        };
        // The first server starts at once, the others a little later each (real processes' ticks are not in phase).
        sim.boot_index(0);
        for i in 1..k {
            let after = Duration::from_millis(sim.rng.random_range(1..=40));
            sim.at(after, Ev::IndexBoot(i));
        }
        for n in 0..sim.nodes.len() {
            sim.drain_node(n);
        }
        sim.at(Duration::from_millis(50), Ev::Admin);
        sim
    }

    fn t(&self) -> Instant {
        self.base + self.now
    }

    fn ms(&self) -> u64 {
        self.now.as_millis() as u64
    }

    fn trace(&self, line: String) {
        let ms = self.ms();
        lock(&self.env).trace(format!("{ms} {line}"));
    }

    fn at(&mut self, delay: Duration, ev: Ev) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.events[i] = Some(ev);
                i
            }
            None => {
                self.events.push(Some(ev));
                self.events.len() - 1
            }
        };
        self.queue.push(Reverse((self.now + delay, self.seq, slot)));
    }

    /// Node `n`'s host.
    fn node_host(&self, n: usize) -> usize {
        self.ix.len() + n
    }

    /// The node a host is, if it is one.
    fn node_of(&self, host: usize) -> Option<usize> {
        host.checked_sub(self.ix.len())
            .filter(|n| *n < self.nodes.len())
    }

    /// An index server or a node (a host that can be down), not a client or the admin.
    fn is_cluster_host(&self, host: usize) -> bool {
        host < self.ix.len() + self.nodes.len()
    }

    fn host_of_key(&self, key: &str) -> Option<usize> {
        let n = self.nodes.iter().position(|n| n.key == key)?;
        Some(self.node_host(n))
    }

    fn boot_of(&self, host: usize) -> Option<u64> {
        if let Some(x) = self.ix.get(host) {
            return x.up.then_some(x.boot);
        }
        match self.node_of(host) {
            Some(n) => self.nodes[n].up.then_some(self.nodes[n].boot),
            None => Some(0),
        }
    }

    /// An index server's address as nodes spell it.
    fn ix_addr(&self, i: usize) -> IndexAddr {
        (self.ix[i].name.clone(), INDEX_PORT)
    }

    // ---- The network ----

    /// `msg` reached a host whose process is gone: the sender learns it (a refused connect, a reset).
    fn refuse(&mut self, msg: Msg) {
        if matches!(
            msg.payload,
            Payload::Refused(_)
                | Payload::Answer { .. }
                | Payload::SessionEnd { .. }
                | Payload::LinkFin { .. }
                | Payload::Raft { .. }
        ) {
            return;
        }
        self.send(msg.to, msg.from, Payload::Refused(Box::new(msg.payload)));
    }

    fn send(&mut self, from: usize, to: usize, payload: Payload) {
        if self.debug {
            let text = match &payload {
                Payload::Request { bytes, .. } | Payload::Answer { bytes, .. } => {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).replace("\r\n", " | ")
                }
                p => format!("{p:?}").chars().take(160).collect(),
            };
            let cut = self.cut.get(&pair(from, to)).is_some_and(|c| *c > 0);
            println!(
                "{} {} -> {}{}: {text}",
                self.ms(),
                self.names[from],
                self.names[to],
                if cut { " (cut)" } else { "" }
            );
        }
        let Some(to_boot) = self.boot_of(to) else {
            let cut = self.cut.get(&pair(from, to)).is_some_and(|c| *c > 0);
            if !cut && self.is_cluster_host(to) {
                let msg = Msg {
                    from,
                    to,
                    to_boot: u64::MAX,
                    payload,
                };
                self.refuse(msg);
            }
            return;
        };
        // A message lost on a connection stalls the connection for good (TCP never delivers past a hole), as in
        // the turmoil simulation: later messages on it are lost too, whatever the link does meanwhile.
        let conn = self.conn_key(from, to, &payload);
        if conn.as_ref().is_some_and(|c| self.stalled.contains(c)) {
            return;
        }
        let msg = Msg {
            from,
            to,
            to_boot,
            payload,
        };
        let p = pair(from, to);
        if self.cut.get(&p).is_some_and(|c| *c > 0) {
            if let Some(c) = conn {
                self.stalled.insert(c);
            }
            return;
        }
        if let Some((n, kept)) = self.held.get_mut(&p) {
            if *n > 0 {
                kept.push(msg);
                return;
            }
        }
        self.transmit(msg);
    }

    /// The connection a message travels on, when it is one that lives past one exchange: a replication link
    /// (both directions) or an index session.
    fn conn_key(&self, from: usize, to: usize, payload: &Payload) -> Option<String> {
        match payload {
            Payload::Request {
                to: ReplyTo::Link {
                    host, gen, peer, ..
                },
                ..
            }
            | Payload::Answer {
                to: ReplyTo::Link {
                    host, gen, peer, ..
                },
                ..
            } => Some(format!("link {host} {peer} {gen}")),
            Payload::LinkFin { peer } => {
                // From the dead peer `from` to the master `to`: the link `to` holds towards it.
                let gen = self.nodes.get(self.node_of(to)?)?.links.get(peer)?.0;
                Some(format!("link {to} {peer} {gen}"))
            }
            Payload::SessionLine { conn, .. }
            | Payload::SessionReply { conn, .. }
            | Payload::SessionEnd { conn, .. }
            | Payload::SessionBroken { conn } => {
                // Connection ids are the server's: the server end names the connection.
                let server = if from < self.ix.len() { from } else { to };
                Some(format!("session {server} {}", conn.0))
            }
            _ => None,
        }
    }

    fn transmit(&mut self, msg: Msg) {
        let (lo, hi) = self.s.latency_ms;
        let max = self.slow.get(&pair(msg.from, msg.to)).copied();
        let lat = match max {
            Some(m) => Duration::from_millis(self.rng.random_range(lo..=m.as_millis() as u64)),
            None => Duration::from_micros(self.rng.random_range(lo * 1000..=hi * 1000 + 200)),
        };
        let dir = (msg.from, msg.to);
        let when = (self.now + lat).max(self.last.get(&dir).copied().unwrap_or_default());
        self.last.insert(dir, when);
        let delay = when - self.now;
        self.at(delay, Ev::Deliver(msg));
    }

    // ---- The loop ----

    fn run(&mut self) {
        let limit = self.s.sim_limit;
        while let Some(Reverse((t, _, slot))) = self.queue.pop() {
            let ev = self.events[slot]
                .take()
                .expect("invariant: a queued event is stored");
            self.free.push(slot);
            self.now = t;
            self.processed += 1;
            if self.now > limit {
                lock(&self.env).fail(
                    "time",
                    format!("the run passed {limit:?} of simulated time"),
                );
                return;
            }
            self.handle(ev);
            if self.done {
                return;
            }
        }
        lock(&self.env).fail("time", "the event queue ran dry".into());
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver(msg) => {
                if self.boot_of(msg.to) != Some(msg.to_boot) {
                    return self.refuse(msg);
                }
                let to = msg.to;
                if to < self.ix.len() {
                    return self.index_msg(to, msg.from, msg.payload);
                }
                match self.node_of(to) {
                    Some(n) => self.node_msg(n, msg),
                    None if to == self.admin_host => self.client_msg(None, msg),
                    None => self.client_msg(Some(to - self.ix.len() - self.nodes.len()), msg),
                }
            }
            Ev::NodeTimer(n, gen) => {
                if self.nodes[n].up && self.nodes[n].timer_gen == gen {
                    let now = self.t();
                    self.nodes[n].node.handle_timeout(now);
                    self.drain_node(n);
                }
            }
            Ev::Supervise(n, boot) => {
                let h = &self.nodes[n];
                if h.up && h.boot == boot {
                    if let Registration::Failed(why) = h.node.registration() {
                        let (name, why) = (h.name.clone(), why.clone());
                        self.trace(format!(
                            "{name} did not start ({why}); started again in {SUPERVISOR_WAIT:?}"
                        ));
                        self.crash(&name);
                        let boot = self.nodes[n].boot;
                        self.at(SUPERVISOR_WAIT, Ev::SupervisorRestart(n, boot));
                    }
                }
            }
            Ev::SupervisorRestart(n, boot) => {
                if !self.nodes[n].up && self.nodes[n].boot == boot {
                    let name = self.nodes[n].name.clone();
                    self.restart(&name);
                }
            }
            Ev::IndexTimer(i, gen) => self.index_timer(i, gen),
            Ev::IndexBoot(i) => {
                if !self.ix[i].up && self.ix[i].group.is_none() {
                    self.boot_index(i);
                }
            }
            Ev::CallTimeout(n, boot, call, at) => {
                let current = self.nodes[n].calls.get(&call).is_some_and(|a| a.at == at);
                if self.nodes[n].boot == boot && current {
                    self.next_attempt(n, call, "timeout");
                    self.drain_node(n);
                }
            }
            Ev::LinkTimeout(n, boot, peer, gen) => {
                let now = self.t();
                let h = &mut self.nodes[n];
                if h.boot == boot && h.links.get(&peer) == Some(&(gen, false)) {
                    h.links.remove(&peer);
                    h.node.handle_link_opened(now, &peer, false);
                    self.drain_node(n);
                }
            }
            Ev::SessionTimeout(n, boot, sid, at) => {
                let h = &self.nodes[n];
                let opening = h
                    .session
                    .as_ref()
                    .is_some_and(|s| s.sid == sid && s.open.is_none() && s.at == at);
                if h.boot == boot && opening {
                    self.next_session_attempt(n, "timeout");
                    self.drain_node(n);
                }
            }
            Ev::PartTimeout(n, boot, req, part) => {
                if self.nodes[n].boot == boot {
                    self.part_answer(n, req, part, PartAnswer::Peer(Err(())));
                }
            }
            Ev::ProbeTimeout(i, id) => self.probe_failed(i, id),
            Ev::PushTimeout(i, id) => self.push_failed(i, id),
            Ev::ForwardTimeout(i, boot, forward, sent) => {
                if self.ix[i].boot == boot {
                    self.forward_failed(i, forward, sent);
                }
            }
            Ev::AdminTimeout(op) => self.admin_reply(op, Err("no answer in time".into())),
            Ev::ClientTimeout(c, id) => {
                if self.clients[c]
                    .inflight
                    .as_ref()
                    .is_some_and(|o| o.id == id)
                {
                    let op = self.clients[c].inflight.take().expect("checked");
                    self.complete(c, op, Outcome::Timeout);
                }
            }
            Ev::ClientGo(c) => self.client_go(c),
            Ev::Admin => self.admin_step(),
            Ev::Fault(i) => {
                let f = self.s.faults[i].fault.clone();
                self.fault(&f);
            }
        }
    }

    // ---- The nodes ----

    fn drain_node(&mut self, n: usize) {
        let host = self.node_host(n);
        while let Some(a) = self.nodes[n].node.poll_action() {
            let now = self.t();
            match a {
                Action::Call {
                    call,
                    to,
                    lines,
                    timeout,
                } => {
                    let dests = match &to {
                        Dest::Index => self.index_hosts(self.nodes[n].node.call_addresses(&to)),
                        Dest::Node(k) => self.host_of_key(k).into_iter().collect(),
                    };
                    let a = Attempts {
                        dests,
                        at: 0,
                        lines,
                        timeout,
                    };
                    self.nodes[n].calls.insert(call, a);
                    self.attempt(n, call);
                }
                Action::SessionOpen { lines } => {
                    // A session open or being opened is dropped (`flared` drops its connection).
                    self.drop_session(n);
                    let dests = self.index_hosts(self.nodes[n].node.index_order());
                    let h = &mut self.nodes[n];
                    h.next_sid += 1;
                    h.session = Some(NodeSession {
                        sid: h.next_sid,
                        dests,
                        at: 0,
                        lines,
                        open: None,
                    });
                    self.session_attempt(n);
                }
                Action::SessionSend { line } => {
                    if let Some((server, conn)) =
                        self.nodes[n].session.as_ref().and_then(|s| s.open)
                    {
                        self.send(host, server, Payload::SessionLine { conn, line });
                    }
                }
                Action::SessionClose => {
                    self.drop_session(n);
                    self.nodes[n].node.handle_session_closed(now);
                }
                Action::LinkOpen { peer } => {
                    let h = &mut self.nodes[n];
                    h.next_gen += 1;
                    let gen = h.next_gen;
                    h.links.insert(peer.clone(), (gen, false));
                    let boot = h.boot;
                    let me = h.key.clone();
                    self.at(
                        Duration::from_secs(1),
                        Ev::LinkTimeout(n, boot, peer.clone(), gen),
                    );
                    if let Some(p) = self.host_of_key(&peer) {
                        self.send(host, p, Payload::LinkSyn { gen, peer: me });
                    }
                }
                Action::Replicate { peer, entry, path } => {
                    let h = &self.nodes[n];
                    let Some((gen, true)) = h.links.get(&peer).copied() else {
                        continue;
                    };
                    let read = |key: &Bytes| h.storage.get(key).ok().flatten();
                    let bytes = replica_for(&path, &entry.key, entry.kind, read);
                    let to = ReplyTo::Link {
                        host,
                        boot: h.boot,
                        gen,
                        peer: peer.clone(),
                    };
                    if let Some(p) = self.host_of_key(&peer) {
                        self.send(host, p, Payload::Request { bytes, to });
                    }
                }
                Action::LinkClose { peer } => {
                    self.nodes[n].links.remove(&peer);
                    self.nodes[n].node.handle_link_closed(now, &peer);
                }
                Action::PullDump { pull, source, line } => {
                    if let Some(p) = self.host_of_key(&source) {
                        self.send(host, p, Payload::Dump { pull, line });
                    }
                }
                Action::AbortDump { pull } => {
                    self.nodes[n]
                        .node
                        .handle_dump_end(now, pull, Err("aborted".into()));
                }
                Action::Store(op) => self.store_op(n, op),
                Action::WriteDone { write, result } => {
                    if let Some((to, framing, reply, partition)) =
                        self.nodes[n].waits.remove(&write)
                    {
                        let reply = match result {
                            Ok(()) => {
                                self.acked(n, partition);
                                reply
                            }
                            Err(WriteFailure::Lease) => no_lease_reply(),
                            Err(WriteFailure::Replication) => {
                                Reply::Error(ErrorReply::Server("replication failed".into()))
                            }
                        };
                        self.respond(n, to, &framing, &reply);
                    }
                }
                Action::Publish => {}
            }
        }
        let h = &mut self.nodes[n];
        let now = self.base + self.now;
        if let Some(t) = h.node.poll_timeout(now) {
            h.timer_gen += 1;
            let gen = h.timer_gen;
            self.at(t.saturating_duration_since(now), Ev::NodeTimer(n, gen));
        }
        let h = &mut self.nodes[n];
        if matches!(h.node.registration(), Registration::Failed(_)) {
            // `flared` exits when its start fails; its supervisor takes it from here (at once, not in the middle of
            // whatever called this).
            let boot = h.boot;
            self.at(Duration::ZERO, Ev::Supervise(n, boot));
        }
        let h = &mut self.nodes[n];
        let version = h.node.view().map().version;
        if h.held_version != Some(version) {
            h.held_version = Some(version);
            let map = map_view(h.node.view().map());
            let name = h.name.clone();
            let text = format!("{name} holds v{version} {}", map_text(&map));
            let mut e = lock(&self.env);
            self.group_log.node_holds(&mut e, &name, version, &map);
            e.hold_map(&name, version, map);
            drop(e);
            self.trace(text);
        }
    }

    /// The hosts of index server addresses, in order (unknown ones left out).
    fn index_hosts(&self, addrs: Vec<IndexAddr>) -> Vec<usize> {
        addrs
            .iter()
            .filter_map(|a| self.ix_by_host_port(a))
            .collect()
    }

    /// Sends node `n`'s call `call` to its current destination (none left: its timeout fails it).
    fn attempt(&mut self, n: usize, call: CallId) {
        let host = self.node_host(n);
        let h = &self.nodes[n];
        let Some(a) = h.calls.get(&call) else {
            return;
        };
        let (boot, at, timeout) = (h.boot, a.at, a.timeout);
        let dest = a.dests.get(at).copied();
        let lines = a.lines.clone();
        self.at(timeout, Ev::CallTimeout(n, boot, call, at));
        if let Some(d) = dest {
            self.send(host, d, Payload::Call { call, lines });
        }
    }

    /// Node `n`'s call `call` failed at its current destination (`why`): the next one, or the call fails.
    fn next_attempt(&mut self, n: usize, call: CallId, why: &str) {
        let Some(a) = self.nodes[n].calls.get_mut(&call) else {
            return;
        };
        a.at += 1;
        if a.at < a.dests.len() {
            return self.attempt(n, call);
        }
        self.nodes[n].calls.remove(&call);
        let now = self.t();
        self.nodes[n]
            .node
            .handle_call_reply(now, call, Err(why.into()));
    }

    /// Sends node `n`'s session open to its current destination (none left: its timeout fails it).
    fn session_attempt(&mut self, n: usize) {
        let host = self.node_host(n);
        let h = &self.nodes[n];
        let Some(s) = &h.session else {
            return;
        };
        let (boot, sid, at, wait) = (h.boot, s.sid, s.at, h.settings.session_open_timeout());
        let dest = s.dests.get(at).copied();
        let lines = s.lines.clone();
        self.at(wait, Ev::SessionTimeout(n, boot, sid, at));
        if let Some(d) = dest {
            self.send(host, d, Payload::SessionOpen { sid, lines });
        }
    }

    /// Node `n`'s session open failed at its current destination (`why`): the next one, or the open fails.
    fn next_session_attempt(&mut self, n: usize, why: &str) {
        let Some(s) = self.nodes[n].session.as_mut() else {
            return;
        };
        s.at += 1;
        if s.at < s.dests.len() {
            return self.session_attempt(n);
        }
        self.nodes[n].session = None;
        let now = self.t();
        self.nodes[n]
            .node
            .handle_session_opened(now, None, Err(why.into()));
    }

    /// Node `n` drops its session's connection (an open one: the server sees it end).
    fn drop_session(&mut self, n: usize) {
        let host = self.node_host(n);
        let h = &mut self.nodes[n];
        if let Some(NodeSession {
            open: Some((server, conn)),
            ..
        }) = h.session.take()
        {
            let node = h.key.clone();
            self.send(host, server, Payload::SessionEnd { conn, node });
        }
    }

    /// Whether node `n`'s session is open at `server` on `conn`.
    fn session_is(&self, n: usize, server: usize, conn: ConnId) -> bool {
        self.nodes[n]
            .session
            .as_ref()
            .is_some_and(|s| s.open == Some((server, conn)))
    }

    fn store_op(&mut self, n: usize, op: StoreOp) {
        let now = self.t();
        let h = &mut self.nodes[n];
        let ok = match &op {
            StoreOp::FlushAll => h.store.flush_all().is_ok(),
            StoreOp::RaiseVersionFloor(v) => h.store.raise_version_floor(*v).is_ok(),
            StoreOp::PersistUnlogged => h.storage.persist_unlogged().is_ok(),
            StoreOp::RemoveMovedKeys { partition } => {
                let view = h.node.view().clone();
                let mut cursor: Option<Bytes> = None;
                while let Ok(batch) = h.storage.scan(cursor.as_deref(), 256) {
                    let Some((last, _)) = batch.last() else { break };
                    cursor = Some(last.clone());
                    for (key, _) in batch {
                        if view.moved_away(&key, *partition) {
                            let _ = h.storage.update(&key, |_| (Change::Remove, ()));
                        }
                    }
                }
                true
            }
        };
        if matches!(op, StoreOp::FlushAll | StoreOp::PersistUnlogged) {
            h.node.handle_store_result(now, &op, ok);
        }
        if op == StoreOp::FlushAll {
            let line = format!("{} empties its store", self.nodes[n].name);
            self.trace(line);
        }
    }

    fn acked(&mut self, n: usize, partition: Option<u32>) {
        let h = &self.nodes[n];
        if let Some(partition) = partition {
            self.acks.push(Ack {
                at: self.now,
                node: h.key.clone(),
                partition,
                version: h.node.view().map().version,
            });
        }
    }

    fn node_msg(&mut self, n: usize, msg: Msg) {
        let host = self.node_host(n);
        let from = msg.from;
        let now = self.t();
        let calling = |s: &Sim, call: &CallId| {
            s.nodes[n]
                .calls
                .get(call)
                .is_some_and(|a| a.dests.get(a.at) == Some(&from))
        };
        let opening = |s: &Sim, sid: u64| {
            s.nodes[n].session.as_ref().is_some_and(|s| {
                s.sid == sid && s.open.is_none() && s.dests.get(s.at) == Some(&from)
            })
        };
        match msg.payload {
            Payload::CallReply { call, replies } if calling(self, &call) => {
                self.nodes[n].calls.remove(&call);
                self.nodes[n].node.handle_call_reply(now, call, Ok(replies));
            }
            Payload::Call { call, lines } => {
                let replies = lines
                    .iter()
                    .map(|(line, kind)| {
                        let bytes = Bytes::from(format!("{line}\r\n"));
                        let (framing, reply) = self.serve_now(n, bytes);
                        let mut out = BytesMut::new();
                        encode(&framing, &reply, &mut out);
                        parse_events(out, *kind)
                    })
                    .collect();
                self.send(host, from, Payload::CallReply { call, replies });
            }
            Payload::SessionOpened { sid, conn, answers } => {
                if opening(self, sid) {
                    if let Some(s) = self.nodes[n].session.as_mut() {
                        s.open = Some((from, conn));
                    }
                    let addr = self.ix_addr(from);
                    self.nodes[n]
                        .node
                        .handle_session_opened(now, Some(addr), Ok(answers));
                } else {
                    // The answer to an open given up on: the node has dropped that connection.
                    let node = self.nodes[n].key.clone();
                    self.send(host, from, Payload::SessionEnd { conn, node });
                }
            }
            Payload::SessionReply { conn, line } if self.session_is(n, from, conn) => {
                self.nodes[n].node.handle_session_reply(now, &line);
            }
            Payload::SessionBroken { conn } if self.session_is(n, from, conn) => {
                self.nodes[n].session = None;
                self.nodes[n].node.handle_session_closed(now);
            }
            Payload::LinkSyn { gen, peer } => {
                let me = self.nodes[n].key.clone();
                let _ = peer;
                self.send(host, from, Payload::LinkAck { gen, peer: me });
            }
            Payload::LinkAck { gen, peer } => {
                let h = &mut self.nodes[n];
                if h.links.get(&peer) == Some(&(gen, false)) {
                    h.links.insert(peer.clone(), (gen, true));
                    h.node.handle_link_opened(now, &peer, true);
                }
            }
            Payload::LinkFin { peer } if self.nodes[n].links.remove(&peer).is_some() => {
                self.nodes[n].node.handle_link_closed(now, &peer);
            }
            Payload::Request { bytes, to } => self.serve(n, bytes, to),
            Payload::Refused(p) => match *p {
                Payload::Call { call, .. } if calling(self, &call) => {
                    self.next_attempt(n, call, "connection refused");
                }
                Payload::SessionOpen { sid, .. } if opening(self, sid) => {
                    self.next_session_attempt(n, "connection refused");
                }
                Payload::SessionLine { conn, .. } if self.session_is(n, from, conn) => {
                    self.nodes[n].session = None;
                    self.nodes[n].node.handle_session_closed(now);
                }
                Payload::LinkSyn { gen, .. }
                | Payload::Request {
                    to: ReplyTo::Link { gen, .. },
                    ..
                } => {
                    let peer = self
                        .node_of(from)
                        .map(|p| self.nodes[p].key.clone())
                        .unwrap_or_default();
                    if self.nodes[n].links.get(&peer).is_some_and(|l| l.0 == gen) {
                        self.nodes[n].links.remove(&peer);
                        self.nodes[n].node.handle_link_closed(now, &peer);
                    }
                }
                Payload::Request {
                    to: ReplyTo::Part { req, part, .. },
                    ..
                } => {
                    self.part_answer(n, req, part, PartAnswer::Peer(Err(())));
                }
                Payload::Dump { pull, .. } => {
                    self.nodes[n]
                        .node
                        .handle_dump_end(now, pull, Err("connection refused".into()));
                }
                _ => {}
            },
            Payload::Answer { bytes, to } => match to {
                ReplyTo::Part { boot, .. } | ReplyTo::Link { boot, .. }
                    if boot != self.nodes[n].boot => {}
                ReplyTo::Part { req, part, .. } => {
                    let kind = self.nodes[n].reqs.get(&req).map(|r| r.kinds[part]);
                    if let Some(kind) = kind {
                        let answer = peer_reply(bytes, kind).map_err(|_| ());
                        self.part_answer(n, req, part, PartAnswer::Peer(answer));
                    }
                }
                ReplyTo::Link { gen, peer, .. }
                    if self.nodes[n].links.get(&peer) == Some(&(gen, true)) =>
                {
                    let line = bytes.strip_suffix(b"\r\n").unwrap_or(&bytes).to_vec();
                    self.nodes[n].node.handle_link_reply(now, &peer, &line);
                }
                _ => {}
            },
            Payload::Probe { id, position } => {
                let pos = if position {
                    self.nodes[n].node.applied_seq()
                } else {
                    0
                };
                self.send(host, from, Payload::ProbeReply { id, position: pos });
            }
            Payload::Push { id, version, lines } => {
                let ok = self.nodes[n]
                    .node
                    .handle_node_sync(now, version, &lines)
                    .is_ok();
                self.send(host, from, Payload::PushReply { id, ok });
            }
            Payload::Dump { pull, line } => {
                let bytes = self.dump(n, &line);
                self.send(host, from, Payload::DumpData { pull, bytes });
            }
            Payload::DumpData { pull, bytes } => {
                let mut buf = BytesMut::from(&bytes[..]);
                let mut reader = ReplyReader::new(Limits::default());
                let unix = self.unix();
                let mut end = Err("truncated dump".to_string());
                while let Ok(Some(e)) = reader.next(&mut buf, ReplyKind::Values) {
                    match e {
                        ReplyEvent::Value(v) => {
                            if !self.nodes[n].node.handle_dump_item(now, pull, &v) {
                                end = Err("superseded".into());
                                break;
                            }
                            let (key, item) = dump_item(v);
                            let _ = self.nodes[n].store.load_dump_item(&key, item, unix);
                        }
                        ReplyEvent::End => {
                            end = Ok(());
                            break;
                        }
                        ReplyEvent::Line(l) => {
                            end = Err(String::from_utf8_lossy(&l).into_owned());
                            break;
                        }
                        _ => {}
                    }
                }
                self.nodes[n].node.handle_dump_end(now, pull, end);
            }
            _ => {}
        }
        self.drain_node(n);
    }

    fn unix(&self) -> u64 {
        1_700_000_000 + self.now.as_secs()
    }

    fn dump(&self, n: usize, line: &str) -> Bytes {
        let h = &self.nodes[n];
        let mut decoder = Decoder::new(Limits::default(), Default::default());
        let mut buf = BytesMut::from(format!("{line}\r\n").as_bytes());
        let Some(Decoded::Request(r)) = decoder.decode(&mut buf) else {
            return Bytes::from_static(b"ERROR\r\n");
        };
        let Command::Dump(args) = r.command else {
            return Bytes::from_static(b"ERROR\r\n");
        };
        let view = h.node.view().clone();
        let mut out = BytesMut::new();
        let mut cursor: Option<Bytes> = None;
        while let Ok(batch) = h.storage.scan(cursor.as_deref(), 256) {
            let Some((last, _)) = batch.last() else { break };
            cursor = Some(last.clone());
            for (key, entry) in &batch {
                flare_core::dump::encode_record(
                    flare_core::dump::DumpKind::Items,
                    &args,
                    view.resolver(),
                    key,
                    entry,
                    self.unix(),
                    &mut out,
                );
            }
        }
        lines::put_end(&mut out);
        out.freeze()
    }

    /// Serves a request whose answer does not wait (the node's own `stats`, `stats nodes` for calls).
    fn serve_now(&mut self, n: usize, bytes: Bytes) -> (Framing, Reply) {
        let mut decoder = Decoder::new(Limits::default(), Default::default());
        let mut buf = BytesMut::from(&bytes[..]);
        match decoder.decode(&mut buf) {
            Some(Decoded::Request(r)) => {
                let reply = self.driver_command(n, r.command);
                (r.framing, reply)
            }
            _ => (
                Framing::Text { proxy: None },
                Reply::Error(ErrorReply::UnknownCommand),
            ),
        }
    }

    fn driver_command(&self, n: usize, command: Command) -> Reply {
        let h = &self.nodes[n];
        match command {
            Command::Stats(StatsGroup::Nodes) => Reply::Stats(h.node.view().map().stats_nodes()),
            Command::Stats(_) => Reply::Stats(vec![
                ("curr_items".into(), h.storage.item_count().to_string()),
                (
                    "node_map_version".into(),
                    h.node.view().map().version.to_string(),
                ),
                (
                    "replication_position".into(),
                    h.node.applied_seq().to_string(),
                ),
            ]),
            Command::Ping => Reply::Ok,
            Command::Version => Reply::Version("2.0.0".into()),
            _ => Reply::Error(ErrorReply::UnknownCommand),
        }
    }

    /// Serves one request from a client or a node (replication included), answering `to` now or later.
    fn serve(&mut self, n: usize, bytes: Bytes, to: ReplyTo) {
        let mut decoder = Decoder::new(Limits::default(), Default::default());
        let mut buf = BytesMut::from(&bytes[..]);
        let (framing, command) = match decoder.decode(&mut buf) {
            Some(Decoded::Request(r)) | Some(Decoded::Part(r)) => (r.framing, r.command),
            Some(Decoded::Error { framing, error, .. }) => {
                return self.respond(n, to, &framing, &Reply::Error(error));
            }
            None => {
                let framing = Framing::Text { proxy: None };
                return self.respond(n, to, &framing, &Reply::Error(ErrorReply::BadCommandLine));
            }
        };
        let now = self.t();
        let published = self.nodes[n].node.published();
        let view = published.view.clone();
        let path = match &framing {
            Framing::Text { proxy } => proxy.clone(),
            Framing::Binary(_) => None,
        };
        let origin = Origin {
            path: path.as_ref(),
            binary: false,
            operator: false,
        };
        let replicated = path.as_ref().and_then(ProxyPath::sender_seq);
        if let Some(seq) = replicated {
            self.nodes[n].node.applied(seq);
        }
        if view.is_standalone() || !plan::is_routed(&command) {
            let reply = self.driver_command(n, command);
            return self.respond(n, to, &framing, &reply);
        }
        let sync = sync_of(&command);
        let rng = &mut self.rng;
        let mut pick = || rng.random::<u32>();
        let planned = plan::plan(&view, origin, command, &mut pick);
        if let Some(reply) = published.lease_refusal(now, &origin, &planned) {
            return self.respond(n, to, &framing, &reply);
        }
        let as_master = replicated.is_none();
        match planned {
            Plan::Reply(reply) => self.respond(n, to, &framing, &reply),
            Plan::Local { command, write } => {
                if let Some(reply) = self.local(n, command, write, sync, as_master, &to, &framing) {
                    self.respond(n, to, &framing, &reply);
                }
            }
            Plan::Parts(pending) => {
                let h = &mut self.nodes[n];
                h.next_req += 1;
                let req = h.next_req;
                let count = pending.parts.len();
                h.reqs.insert(
                    req,
                    Inflight {
                        to,
                        framing,
                        pending,
                        answers: (0..count).map(|_| None).collect(),
                        kinds: vec![ReplyKind::Line; count],
                        left: count,
                    },
                );
                self.run_parts(n, req, as_master, sync);
            }
        }
    }

    /// Runs a command here; a write is replicated. `None`: the answer comes with its sync write's end.
    #[allow(clippy::too_many_arguments)]
    fn local(
        &mut self,
        n: usize,
        command: Command,
        write: bool,
        sync: bool,
        as_master: bool,
        to: &ReplyTo,
        framing: &Framing,
    ) -> Option<Reply> {
        let now = self.t();
        let unix = self.unix();
        let h = &mut self.nodes[n];
        let mut tally = Tally::default();
        let (reply, mutations) = match exec::execute(&h.store, command, unix, &mut tally) {
            ExecOutcome::Reply { reply, mutations } => (reply, mutations),
            ExecOutcome::Driver(c) => return Some(self.driver_command(n, c)),
            _ => return Some(Reply::Error(ErrorReply::UnknownCommand)),
        };
        if mutations.is_empty() || !write {
            return Some(reply);
        }
        let partition = mutations
            .iter()
            .find_map(|m| m.key())
            .and_then(|k| h.node.view().partition_of(k));
        let master = as_master
            && h.node.view().me().is_some_and(|r| {
                r.role == flare_core::node_map::Role::Master
                    && r.state == flare_core::node_map::State::Active
            });
        let acked_partition = if master { partition } else { None };
        let r = h.node.replicate(now, &mutations, sync, as_master);
        let out = match r {
            Ok(None) => {
                if matches!(reply, Reply::Stored { .. } | Reply::Deleted) {
                    self.acked(n, acked_partition);
                }
                Some(reply)
            }
            Ok(Some(id)) => {
                self.nodes[n]
                    .waits
                    .insert(id, (to.clone(), framing.clone(), reply, acked_partition));
                None
            }
            Err(WriteFailure::Lease) => Some(no_lease_reply()),
            Err(WriteFailure::Replication) => Some(Reply::Error(ErrorReply::Server(
                "replication failed".into(),
            ))),
        };
        self.drain_node(n);
        out
    }

    fn run_parts(&mut self, n: usize, req: u64, as_master: bool, sync: bool) {
        let host = self.node_host(n);
        let parts: Vec<Part> = match self.nodes[n].reqs.get(&req) {
            Some(r) => r.pending.parts.clone(),
            None => return,
        };
        for (i, part) in parts.into_iter().enumerate() {
            match part {
                Part::Local { command, write } => {
                    let to = ReplyTo::Local { req, part: i };
                    let framing = Framing::Text { proxy: None };
                    if let Some(reply) =
                        self.local(n, command, write, sync, as_master, &to, &framing)
                    {
                        self.part_answer(n, req, i, PartAnswer::Local(reply));
                    }
                }
                Part::Peer { node, forward } => {
                    let boot = self.nodes[n].boot;
                    if let Some(r) = self.nodes[n].reqs.get_mut(&req) {
                        r.kinds[i] = forward.reply;
                    }
                    let timeout = self.nodes[n].settings.proxy_timeout;
                    self.at(timeout, Ev::PartTimeout(n, boot, req, i));
                    match self.host_of_key(&node) {
                        Some(p) => {
                            let to = ReplyTo::Part {
                                host,
                                boot,
                                req,
                                part: i,
                            };
                            self.send(
                                host,
                                p,
                                Payload::Request {
                                    bytes: forward.bytes,
                                    to,
                                },
                            );
                        }
                        None => self.part_answer(n, req, i, PartAnswer::Peer(Err(()))),
                    }
                }
            }
        }
    }

    fn part_answer(&mut self, n: usize, req: u64, part: usize, answer: PartAnswer) {
        let Some(r) = self.nodes[n].reqs.get_mut(&req) else {
            return;
        };
        if r.answers[part].is_some() {
            return;
        }
        r.answers[part] = Some(answer);
        r.left -= 1;
        if r.left > 0 {
            return;
        }
        let r = self.nodes[n].reqs.remove(&req).expect("checked");
        let answers = r
            .answers
            .into_iter()
            .map(|a| a.expect("every part answered"))
            .collect();
        let view = self.nodes[n].node.view().clone();
        let mut tally = Tally::default();
        match r.pending.finish(&view, answers, &mut tally) {
            Finish::Done(reply) => self.respond(n, r.to, &r.framing, &reply),
            Finish::Again(p) => {
                let count = p.parts.len();
                let h = &mut self.nodes[n];
                h.next_req += 1;
                let again = h.next_req;
                h.reqs.insert(
                    again,
                    Inflight {
                        to: r.to,
                        framing: r.framing,
                        pending: *p,
                        answers: (0..count).map(|_| None).collect(),
                        kinds: vec![ReplyKind::Line; count],
                        left: count,
                    },
                );
                self.run_parts(n, again, true, false);
            }
        }
    }

    fn respond(&mut self, n: usize, to: ReplyTo, framing: &Framing, reply: &Reply) {
        if let ReplyTo::Local { req, part } = to {
            return self.part_answer(n, req, part, PartAnswer::Local(reply.clone()));
        }
        let mut out = BytesMut::new();
        encode(framing, reply, &mut out);
        let bytes = out.freeze();
        let dest = match &to {
            ReplyTo::Client { host, .. }
            | ReplyTo::Part { host, .. }
            | ReplyTo::Link { host, .. } => *host,
            ReplyTo::Local { .. } => unreachable!("answered above"),
        };
        let host = self.node_host(n);
        self.send(host, dest, Payload::Answer { bytes, to });
    }

    // ---- Clients ----

    fn client_host(&self, c: usize) -> usize {
        self.ix.len() + self.nodes.len() + c
    }

    fn client_go(&mut self, c: usize) {
        let phase = lock(&self.env).phase;
        if !matches!(phase, Phase::Faults | Phase::Calm) {
            if phase >= Phase::Stopping && !self.clients[c].done {
                self.clients[c].done = true;
                lock(&self.env).clients_running -= 1;
            }
            if phase == Phase::Setup {
                self.at(Duration::from_millis(20), Ev::ClientGo(c));
            }
            return;
        }
        let reads_only = phase == Phase::Calm && !self.s.calm_writes;
        let nodes = self.nodes.len();
        let s = self.s.clone();
        let cl = &mut self.clients[c];
        let node = cl.rng.random_range(0..nodes);
        let (kind, keys, token, flags, sync, bytes) = request(cl, &s, reads_only);
        let (invoke, invoke_ms) = {
            let mut e = lock(&self.env);
            (e.next_seq(), self.now.as_millis() as u64)
        };
        self.next_op += 1;
        let id = self.next_op;
        let op = Op {
            client: self.clients[c].idx,
            node: self.nodes[node].name.clone(),
            kind,
            keys,
            token,
            flags,
            delta: 0,
            sync,
            invoke,
            complete: 0,
            invoke_ms,
            complete_ms: 0,
            outcome: Outcome::Timeout,
        };
        self.clients[c].inflight = Some(ClientOp {
            id,
            op,
            reads: kind.is_read(),
        });
        let host = self.client_host(c);
        let to = self.node_host(node);
        self.at(OP_TIMEOUT, Ev::ClientTimeout(c, id));
        self.send(
            host,
            to,
            Payload::Request {
                bytes: Bytes::from(bytes),
                to: ReplyTo::Client { host, op: id },
            },
        );
    }

    fn client_msg(&mut self, c: Option<usize>, msg: Msg) {
        if c.is_none() {
            if let Payload::AdminReply { op, reply } = &msg.payload {
                let (op, reply) = (*op, reply.clone());
                return self.admin_reply(op, Ok(reply));
            }
            if let Payload::Refused(p) = &msg.payload {
                if let Payload::AdminLine { op, .. } = **p {
                    return self.admin_reply(op, Err("connection refused".into()));
                }
            }
        }
        if let (Payload::Refused(p), Some(c)) = (&msg.payload, c) {
            if let Payload::Request {
                to: ReplyTo::Client { op, .. },
                ..
            } = **p
            {
                if let Some(inflight) = self.clients[c].inflight.take_if(|o| o.id == op) {
                    self.complete(c, inflight, Outcome::Io("ConnectionRefused".into()));
                }
            }
            return;
        }
        let Payload::Answer {
            bytes,
            to: ReplyTo::Client { op, .. },
        } = msg.payload
        else {
            return;
        };
        let Some(c) = c else {
            return self.admin_answer(op, bytes);
        };
        let Some(inflight) = self.clients[c].inflight.take_if(|o| o.id == op) else {
            return;
        };
        let kind = if inflight.reads {
            ReplyKind::Values
        } else {
            ReplyKind::Line
        };
        let outcome = match peer_reply(bytes, kind) {
            Ok(r) => classify(client_answer(r)),
            Err(e) => Outcome::Unexpected(e),
        };
        self.complete(c, inflight, outcome);
    }

    fn complete(&mut self, c: usize, inflight: ClientOp, outcome: Outcome) {
        let mut op = inflight.op;
        op.complete_ms = self.ms();
        op.outcome = outcome;
        record_checked(&mut lock(&self.env), op);
        let (lo, hi) = self.s.think_ms;
        let think = self.clients[c].rng.random_range(lo..=hi);
        self.at(Duration::from_millis(think), Ev::ClientGo(c));
    }

    // ---- The admin ----

    /// Sends an admin command to an index server drawn at random, unless one is in flight (`false`). It is sent
    /// again on an error (to the leader a redirect names, or another server drawn at random) up to [`ADMIN_TRIES`]
    /// times, as an operator's script would.
    fn admin(&mut self, command: IndexCommand) -> bool {
        if self.admin_cmd.is_some() {
            return false;
        }
        let server = self.rng.random_range(0..self.ix.len());
        self.admin_cmd = Some(AdminCmd {
            line: AdminCommand::Index(command).to_line(),
            server,
            tries: 0,
            op: None,
            retry_at: self.now,
        });
        self.admin_send();
        true
    }

    fn admin_send(&mut self) {
        self.next_op += 1;
        let op = self.next_op;
        let Some(cmd) = self.admin_cmd.as_mut() else {
            return;
        };
        cmd.op = Some(op);
        cmd.tries += 1;
        let (server, line) = (cmd.server, cmd.line.clone());
        self.at(ADMIN_TIMEOUT, Ev::AdminTimeout(op));
        self.send(self.admin_host, server, Payload::AdminLine { op, line });
    }

    /// The answer to the admin's try `op` (`Err`: none came).
    fn admin_reply(&mut self, op: u64, reply: Result<Reply, String>) {
        let Some(cmd) = self.admin_cmd.as_mut().filter(|c| c.op == Some(op)) else {
            return;
        };
        cmd.op = None;
        let (server, line, tries) = (cmd.server, cmd.line.clone(), cmd.tries);
        let text = match &reply {
            Ok(r) => String::from_utf8_lossy(&line_of(r)).into_owned(),
            Err(e) => e.clone(),
        };
        self.trace(format!("admin {line} at {} -> {text}", self.names[server]));
        let next = match &reply {
            Ok(Reply::Error(_)) | Err(_) if tries < ADMIN_TRIES => {
                match Redirect::parse(text.as_bytes()) {
                    Some(Redirect::Leader(host, port)) => self.ix_by_host_port(&(host, port)),
                    _ => None,
                }
                .unwrap_or_else(|| self.rng.random_range(0..self.ix.len()))
            }
            // Done, or given up: the caller sees the map and tries again later.
            _ => {
                self.admin_cmd = None;
                return;
            }
        };
        if let Some(cmd) = self.admin_cmd.as_mut() {
            cmd.server = next;
            cmd.retry_at = self.now + Duration::from_millis(100);
        }
    }

    /// The latest map an index server applied (committed maps are ordered by version).
    fn index_map(&self) -> Option<(u64, MapView)> {
        let g = self
            .ix
            .iter()
            .filter_map(|x| x.group.as_ref())
            .max_by_key(|g| g.applied().version)?;
        let a = g.applied();
        Some((a.version, map_view(&a.node_map())))
    }

    fn set_stage(&mut self, stage: Stage) {
        self.trace(format!("stage {stage:?}"));
        self.stage = stage;
        self.stage_since = self.now;
        self.stage_sent = false;
    }

    fn admin_step(&mut self) {
        const STEP: Duration = Duration::from_millis(50);
        let key = |n: &str| format!("{n}:{NODE_PORT}");
        let since = self.now - self.stage_since;
        let layout = self.s.layout();
        if let Some(cmd) = &self.admin_cmd {
            if cmd.op.is_none() && self.now >= cmd.retry_at {
                self.admin_send();
            }
            // One command at a time: the setup goes on once this one is answered.
            if matches!(self.stage, Stage::Masters(_) | Stage::Slaves(_)) {
                return self.at(STEP, Ev::Admin);
            }
        }
        match self.stage {
            Stage::Registering => {
                let all = self
                    .index_map()
                    .is_some_and(|(_, m)| layout.iter().all(|(n, _)| m.contains_key(&key(n))));
                if all {
                    self.set_stage(Stage::Masters(0));
                } else if since > Duration::from_secs(30) {
                    return self.finish_with("setup", "nodes did not register".into());
                }
            }
            Stage::Masters(i) | Stage::Slaves(i) => {
                let masters = matches!(self.stage, Stage::Masters(_));
                let want: Vec<(String, u32)> = layout
                    .iter()
                    .filter_map(|(n, p)| match (p, masters) {
                        (Planned::Master(p), true) | (Planned::Slave(p), false) => {
                            Some((n.clone(), *p))
                        }
                        _ => None,
                    })
                    .collect();
                let Some((name, p)) = want.get(i).cloned() else {
                    if masters {
                        self.set_stage(Stage::Slaves(0));
                    } else {
                        self.start_faults();
                    }
                    return self.at(STEP, Ev::Admin);
                };
                let info = self
                    .index_map()
                    .and_then(|(_, m)| m.get(&key(&name)).cloned());
                let role = if masters { Role::Master } else { Role::Slave };
                let node = NodeAddr::new(&name, NODE_PORT);
                let role_1 = |role| IndexCommand::NodeRole {
                    node: node.clone(),
                    role,
                    balance: 1,
                    partition: p.into(),
                    epoch: None,
                };
                let is_role = |ni: &NodeInfo| ni.role == role.name();
                match info {
                    Some(ni) if is_role(&ni) && ni.state == State::Active.name() => {
                        if !masters {
                            // Flare keeps a building slave at balance 0; give it its read weight.
                            self.admin(role_1(Role::Slave));
                        }
                        let next = if masters {
                            Stage::Masters(i + 1)
                        } else {
                            Stage::Slaves(i + 1)
                        };
                        self.set_stage(next);
                    }
                    Some(ni) if is_role(&ni) && ni.state == State::Ready.name() => {
                        self.admin(IndexCommand::NodeState {
                            node: node.clone(),
                            state: State::Active,
                            epoch: None,
                        });
                    }
                    Some(ni) if is_role(&ni) && ni.state == State::Prepare.name() => {}
                    _ if !self.stage_sent || since.as_millis() % 2000 < 50 => {
                        self.stage_sent |= self.admin(role_1(role));
                    }
                    _ => {}
                }
                if since > Duration::from_secs(30) {
                    return self.finish_with("setup", format!("{name} did not become {role}"));
                }
            }
            Stage::Faults => {
                if since >= self.s.fault_phase {
                    self.heal();
                    lock(&self.env).phase = Phase::Calm;
                    self.set_stage(Stage::Calm);
                }
            }
            Stage::Calm => match self.converged() {
                Ok(version) => {
                    let mut e = lock(&self.env);
                    let seq = e.next_seq();
                    e.converged_at = Some(seq);
                    drop(e);
                    self.trace(format!("converged on v{version}"));
                    self.set_stage(Stage::Window);
                }
                Err(why) if since > self.s.calm_limit => {
                    return self.finish_with(
                        "convergence",
                        format!(
                            "not converged {:?} after the faults were healed: {why}",
                            self.s.calm_limit
                        ),
                    );
                }
                Err(_) => {}
            },
            Stage::Window => {
                if since >= self.s.checked_window {
                    lock(&self.env).phase = Phase::Stopping;
                    self.set_stage(Stage::Stopping);
                }
            }
            Stage::Stopping => {
                if lock(&self.env).clients_running == 0 {
                    lock(&self.env).phase = Phase::Verify;
                    self.set_stage(Stage::Draining);
                } else if since > Duration::from_secs(20) {
                    return self.finish_with(
                        "clients",
                        "workload clients did not stop within 20 s".into(),
                    );
                }
            }
            Stage::Draining => {
                let now = self.t();
                let busy: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|h| h.up)
                    .flat_map(|h| {
                        h.node
                            .replication_stats(now)
                            .into_iter()
                            .filter(|(_, s)| s.queued + s.in_flight > 0)
                            .map(|(t, s)| format!("{}->{t}:{}", h.name, s.queued + s.in_flight))
                    })
                    .collect();
                if busy.is_empty() {
                    self.read_back();
                    self.set_stage(Stage::Reading);
                } else if since > Duration::from_secs(15) {
                    return self.finish_with(
                        "verify",
                        format!("replication did not drain in 15 s (queues {busy:?})"),
                    );
                }
            }
            Stage::Reading => {
                if self.admin_ops.is_empty() {
                    self.finish();
                    return;
                }
                if since > Duration::from_secs(10) {
                    return self
                        .finish_with("verify", "reads through the nodes got no answer".into());
                }
            }
            Stage::Done => return,
        }
        self.at(STEP, Ev::Admin);
    }

    fn start_faults(&mut self) {
        self.trace("cluster built".into());
        self.workload_start = self.now;
        {
            let mut e = lock(&self.env);
            e.workload_started_ms = Some(self.now.as_millis() as u64);
            e.phase = Phase::Faults;
        }
        self.set_stage(Stage::Faults);
        for i in 0..self.s.faults.len() {
            let at = self.s.faults[i].at;
            self.at(at, Ev::Fault(i));
        }
        for c in 0..self.clients.len() {
            self.at(Duration::ZERO, Ev::ClientGo(c));
        }
    }

    fn converged(&self) -> Result<u64, String> {
        if let Some(x) = self.ix.iter().find(|x| !x.up) {
            return Err(format!("{} is down", x.name));
        }
        let acting: Vec<&IndexServer> = self.ix.iter().filter(|x| x.acting()).collect();
        let [leader] = acting.as_slice() else {
            return Err(format!("{} index servers act", acting.len()));
        };
        let g = leader.group.as_ref().ok_or("the leader is down")?;
        let version = g.applied().version;
        if g.node_map().version != version {
            return Err(format!(
                "{}'s map v{} is not applied yet (v{version})",
                leader.name,
                g.node_map().version
            ));
        }
        for x in &self.ix {
            let theirs = x.group.as_ref().map_or(0, |g| g.applied().version);
            if theirs != version {
                return Err(format!(
                    "{} applied v{theirs}, the leader v{version}",
                    x.name
                ));
            }
        }
        let (version, map) = self.index_map().ok_or("index down")?;
        let nodes = self.nodes.iter().map(|h| (h.name.as_str(), h.key.clone()));
        index_map_converged(&map, nodes, self.s.final_partitions())?;
        for h in &self.nodes {
            let theirs = h.node.view().map();
            if !h.up || theirs.version != version || map_view(theirs) != map {
                return Err(format!(
                    "{} holds map v{}, the index v{version}",
                    h.name, theirs.version
                ));
            }
        }
        Ok(version)
    }

    /// The final state: every node's store, and every key read through every node.
    fn read_back(&mut self) {
        let Some((version, map)) = self.index_map() else {
            return;
        };
        let unix = self.unix();
        let mut state = FinalState {
            map,
            version,
            ..FinalState::default()
        };
        for h in &self.nodes {
            let mut items = Vec::new();
            let mut cursor: Option<Bytes> = None;
            while let Ok(batch) = h.storage.scan(cursor.as_deref(), 256) {
                let Some((last, _)) = batch.last() else { break };
                cursor = Some(last.clone());
                for (key, entry) in batch {
                    if let flare_core::item::Entry::Item(i) = entry {
                        if !i.is_expired(unix) {
                            items.push(Seen {
                                key: String::from_utf8_lossy(&key).into_owned(),
                                flags: i.flags,
                                version: i.version,
                                exptime: i.exptime,
                                value: i.value,
                            });
                        }
                    }
                }
            }
            state.dumps.insert(h.name.clone(), items);
        }
        self.final_state = Some(state);
        let keys = self.s.all_keys();
        for n in 0..self.nodes.len() {
            let name = self.nodes[n].name.clone();
            for key in keys
                .iter()
                .map(|k| (k.clone(), false))
                .chain([(keys.join(" "), true)])
            {
                self.next_op += 1;
                let id = self.next_op;
                self.admin_ops
                    .insert(id, (name.clone(), key.0.clone(), key.1));
                let host = self.admin_host;
                let node = self.node_host(n);
                self.send(
                    host,
                    node,
                    Payload::Request {
                        bytes: Bytes::from(format!("gets {}\r\n", key.0)),
                        to: ReplyTo::Client { host, op: id },
                    },
                );
            }
        }
    }

    fn admin_answer(&mut self, op: u64, bytes: Bytes) {
        let Some((node, key, multi)) = self.admin_ops.remove(&op) else {
            return;
        };
        let seen = match peer_reply(bytes, ReplyKind::Values).map(|r| classify(client_answer(r))) {
            Ok(Outcome::Values(v)) => v,
            other => {
                let detail = format!("gets {key} through {node}: {other:?}");
                lock(&self.env).fail("verify", detail);
                Vec::new()
            }
        };
        let Some(state) = self.final_state.as_mut() else {
            return;
        };
        if multi {
            state.multi_reads.insert(node, seen);
        } else {
            let mut seen = seen;
            state.reads.insert((node, key), seen.pop());
        }
    }

    fn finish_with(&mut self, checker: &'static str, detail: String) {
        lock(&self.env).fail(checker, detail);
        self.final_state = None;
        self.finish();
    }

    fn finish(&mut self) {
        self.stage = Stage::Done;
        let mut e = lock(&self.env);
        e.final_state = self.final_state.take();
        e.phase = Phase::Done;
        drop(e);
        self.done = true;
    }

    /// After a run that converged and read back: a quiet period (no clients, no faults) in which the followers
    /// catch up, then the index group's end checks.
    fn settle(&mut self) {
        const QUIET: Duration = Duration::from_secs(2);
        let settled = lock(&self.env).final_state.is_some();
        if settled {
            let until = self.now + QUIET;
            while let Some(Reverse((t, _, slot))) = self.queue.peek().copied() {
                if t > until {
                    break;
                }
                self.queue.pop();
                let ev = self.events[slot]
                    .take()
                    .expect("invariant: a queued event is stored");
                self.free.push(slot);
                self.now = t;
                self.processed += 1;
                self.handle(ev);
            }
        }
        let mut live = Vec::new();
        let mut e = lock(&self.env);
        for x in &self.ix {
            if let Some(g) = &x.group {
                let st = g.status();
                self.group_log.conflicts(&mut e, &x.name, st.conflicts);
                live.push((x.name.clone(), g.applied().version));
            }
        }
        if settled {
            self.group_log.settled(&mut e, &live);
        }
    }

    // ---- Faults ----

    fn host_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn fault(&mut self, f: &Fault) {
        self.trace(format!("fault {f:?}"));
        let hosts = |a: &str, b: &str, s: &Sim| Some(pair(s.host_index(a)?, s.host_index(b)?));
        match f {
            Fault::Partition(a, b) => {
                if let Some(p) = hosts(a, b, self) {
                    *self.cut.entry(p).or_default() += 1;
                }
            }
            Fault::Repair(a, b) => {
                if let Some(p) = hosts(a, b, self) {
                    if let Some(c) = self.cut.get_mut(&p) {
                        *c = c.saturating_sub(1);
                    }
                }
            }
            Fault::Hold(a, b) => {
                if let Some(p) = hosts(a, b, self) {
                    self.held.entry(p).or_default().0 += 1;
                }
            }
            Fault::Release(a, b) => {
                if let Some(p) = hosts(a, b, self) {
                    self.release(p, false);
                }
            }
            Fault::Slow(a, b, d) => {
                if let Some(p) = hosts(a, b, self) {
                    self.slow.insert(p, *d);
                }
            }
            Fault::Unslow(a, b) => {
                if let Some(p) = hosts(a, b, self) {
                    self.slow.remove(&p);
                }
            }
            Fault::Crash(h) => self.crash(h),
            Fault::Restart(h) => self.restart(h),
        }
    }

    fn release(&mut self, p: (usize, usize), all: bool) {
        let Some((n, kept)) = self.held.get_mut(&p) else {
            return;
        };
        *n = if all { 0 } else { n.saturating_sub(1) };
        if *n == 0 {
            let kept = std::mem::take(kept);
            for m in kept {
                self.transmit(m);
            }
        }
    }

    fn heal(&mut self) {
        self.trace("heal".into());
        self.cut.clear();
        self.slow.clear();
        let held: Vec<(usize, usize)> = self.held.keys().copied().collect();
        for p in held {
            self.release(p, true);
        }
        self.leader_crashes.clear();
        let down: Vec<String> = (self.ix.iter().map(|x| (x.name.clone(), x.up)))
            .chain(self.nodes.iter().map(|h| (h.name.clone(), h.up)))
            .filter(|(_, up)| !up)
            .map(|(n, _)| n)
            .collect();
        for h in down {
            self.restart(&h);
        }
    }

    fn crash(&mut self, name: &str) {
        let server = match name {
            LEADER => self.ix.iter().position(IndexServer::acting),
            name => self.ix.iter().position(|x| x.name == name),
        };
        if let Some(i) = server {
            let up = self.ix.iter().filter(|x| x.up).count();
            if self.ix.len() > 1 && up == 1 && self.ix[i].up {
                // The group's plan never takes its last server down (a single index server may crash).
                return self.trace(format!(
                    "{} stays up: the last index server up",
                    self.ix[i].name
                ));
            }
            if name == LEADER && self.ix[i].up {
                self.trace(format!("the acting index server is {}", self.ix[i].name));
                self.leader_crashes.push(i);
            }
            return self.crash_index(i);
        }
        let Some(n) = self.nodes.iter().position(|h| h.name == name) else {
            return;
        };
        if !self.nodes[n].up {
            return;
        }
        let host = self.node_host(n);
        let h = &mut self.nodes[n];
        h.up = false;
        h.boot += 1;
        let session = h.session.take();
        let key = h.key.clone();
        h.links.clear();
        h.calls.clear();
        h.waits.clear();
        h.reqs.clear();
        // The kernel closes the dead process's connections: the index sees its session end, peers their links.
        if let Some((server, conn)) = session.and_then(|s| s.open) {
            self.send_from_dead(
                host,
                server,
                Payload::SessionEnd {
                    conn,
                    node: key.clone(),
                },
            );
        }
        for m in 0..self.nodes.len() {
            if m != n && self.nodes[m].links.contains_key(&key) {
                let to = self.node_host(m);
                self.send_from_dead(host, to, Payload::LinkFin { peer: key.clone() });
            }
        }
    }

    /// A message the kernel sends for a process that just died (its connections' FIN).
    fn send_from_dead(&mut self, from: usize, to: usize, payload: Payload) {
        self.send(from, to, payload);
    }

    fn restart(&mut self, name: &str) {
        let server = match name {
            LEADER if !self.leader_crashes.is_empty() => Some(self.leader_crashes.remove(0)),
            name => self.ix.iter().position(|x| x.name == name),
        };
        if let Some(i) = server {
            if !self.ix[i].up {
                self.boot_index(i);
            }
            return;
        }
        let Some(n) = self.nodes.iter().position(|h| h.name == name) else {
            return;
        };
        if self.nodes[n].up {
            return;
        }
        let now = self.t();
        let servers: Vec<String> = self.ix.iter().map(|x| x.name.clone()).collect();
        let c = node_config_of(&self.s, name, &servers);
        let h = &mut self.nodes[n];
        h.up = true;
        h.store = match Store::open(h.storage.clone(), store_config(&c)) {
            Ok(s) => s,
            Err(_) => Store::new(h.storage.clone(), store_config(&c)),
        };
        h.node = Node::new(h.settings.clone(), now);
        h.held_version = None;
        let boot = h.boot;
        self.trace(format!("boot {name} #{boot}"));
        self.drain_node(n);
    }
}

/// Node `name`'s configuration: `hosts::node_config` with the scenario's lease and every index server.
fn node_config_of(s: &Scenario, name: &str, servers: &[String]) -> NodeConfig {
    let mut c = node_config(name);
    c.master_lease = s.master_lease;
    c.index_servers = servers
        .iter()
        .map(|n| IndexServerAddr {
            name: n.clone(),
            port: INDEX_PORT,
        })
        .collect();
    c
}

fn sync_of(command: &Command) -> bool {
    let mode = match command {
        Command::Store(s) => s.options.replication,
        Command::Delete { options, .. } | Command::Arith { options, .. } => options.replication,
        _ => ReplicationMode::Default,
    };
    mode == ReplicationMode::Sync
}

/// A node map as `stats nodes` shows it.
fn map_view(map: &flare_core::node_map::NodeMap) -> MapView {
    let rows: Vec<Bytes> = map
        .stats_nodes()
        .into_iter()
        .map(|(k, v)| Bytes::from(lines::stat_line(k, v)))
        .collect();
    parse_stats_nodes(&rows)
}

/// The first line of a reply's text form.
fn line_of(reply: &Reply) -> Bytes {
    let mut out = BytesMut::new();
    encode_text(reply, &mut out);
    let end = out.iter().position(|b| *b == b'\r').unwrap_or(out.len());
    out.freeze().slice(..end)
}

/// A reply as the events a node's call reads for a line of `kind`.
fn events(reply: &Reply, kind: ReplyKind) -> Vec<ReplyEvent> {
    let mut out = BytesMut::new();
    encode_text(reply, &mut out);
    parse_events(out, kind)
}

fn parse_events(mut buf: BytesMut, kind: ReplyKind) -> Vec<ReplyEvent> {
    let mut reader = ReplyReader::new(Limits::default());
    let mut out = Vec::new();
    while let Ok(Some(e)) = reader.next(&mut buf, kind) {
        let end = matches!(e, ReplyEvent::End | ReplyEvent::Line(_));
        out.push(e);
        if end {
            break;
        }
    }
    out
}

fn peer_reply(bytes: Bytes, kind: ReplyKind) -> Result<PeerReply, String> {
    let mut buf = BytesMut::from(&bytes[..]);
    let mut reader = ReplyReader::new(Limits::default());
    let mut builder = PeerReplyBuilder::new(kind);
    loop {
        match reader.next(&mut buf, kind) {
            Ok(Some(e)) => {
                if let Some(r) = builder.push(e) {
                    return Ok(r);
                }
            }
            Ok(None) => {
                return Err(format!(
                    "incomplete answer {:?}",
                    String::from_utf8_lossy(&bytes)
                ))
            }
            Err(e) => return Err(format!("unreadable answer: {e}")),
        }
    }
}

fn client_answer(r: PeerReply) -> ClientAnswer {
    match r {
        PeerReply::Line(l) | PeerReply::Meta(l, _) => ClientAnswer::Line(l),
        PeerReply::Values(v) => ClientAnswer::Values(v),
        PeerReply::Lines(l) => ClientAnswer::Lines(l),
    }
}

type Request = (Kind, Vec<String>, Option<String>, u32, bool, Vec<u8>);

/// A random request of the workload (the token scheme of `crate::workload`).
fn request(c: &mut ClientHost, s: &Scenario, reads_only: bool) -> Request {
    let rng = &mut c.rng;
    let key = |rng: &mut StdRng| format!("k{}", rng.random_range(0..s.keys));
    if reads_only || rng.random_range(0..100) < 25 {
        let n = if rng.random_bool(0.2) {
            rng.random_range(2..=4)
        } else {
            1
        };
        let mut keys: Vec<String> = Vec::new();
        for _ in 0..n {
            let k = key(rng);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let kind = if rng.random_bool(0.5) {
            Kind::Get
        } else {
            Kind::Gets
        };
        let bytes = format!("{} {}\r\n", kind.name(), keys.join(" ")).into_bytes();
        return (kind, keys, None, 0, false, bytes);
    }
    let k = key(rng);
    let sync = rng.random_bool(s.sync_ratio);
    let opts = if sync { " sync" } else { "" };
    let kind = match rng.random_range(0..100) {
        0..=44 => Kind::Set,
        45..=54 => Kind::Add,
        55..=64 => Kind::Replace,
        65..=76 => Kind::Append,
        77..=84 => Kind::Prepend,
        _ => Kind::Delete,
    };
    c.next_token += 1;
    let n = c.next_token;
    match kind {
        Kind::Delete => (
            kind,
            vec![k.clone()],
            None,
            0,
            sync,
            format!("delete {k}{opts}\r\n").into_bytes(),
        ),
        Kind::Append | Kind::Prepend => {
            let token = format!(
                "{}{}_{n}",
                if kind == Kind::Append { 'a' } else { 'p' },
                c.idx
            );
            let value = format!("{token};");
            let bytes = format!(
                "{} {k} 0 0 {}{opts}\r\n{value}\r\n",
                kind.name(),
                value.len()
            )
            .into_bytes();
            (kind, vec![k], Some(token), 0, sync, bytes)
        }
        _ => {
            let token = format!("w{}_{n}", c.idx);
            let pad = rng.random_range(0..=24);
            let value = match pad {
                0 => format!("{token};"),
                p => format!("{token}:{};", "x".repeat(p)),
            };
            let flags = rng.random_range(0..=u32::MAX);
            let bytes = format!(
                "{} {k} {flags} 0 {}{opts}\r\n{value}\r\n",
                kind.name(),
                value.len()
            )
            .into_bytes();
            (kind, vec![k], Some(token), flags, sync, bytes)
        }
    }
}

/// Runs one scenario to the end and checks it.
/// How a run's index group is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupOptions {
    /// Index servers (1, 3, 5, …).
    pub servers: usize,
    /// A restarted index server comes back with an empty disk (a loss Raft does not survive: only the negative test
    /// that shows the group checkers catch what follows).
    pub amnesia: bool,
}

impl GroupOptions {
    /// The group of scenario `s`: `FLARE_CORE_INDEX_SERVERS` servers when set, otherwise as drawn
    /// ([`GroupOptions::drawn`]).
    pub fn of(s: &Scenario) -> GroupOptions {
        let servers = std::env::var("FLARE_CORE_INDEX_SERVERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| Self::drawn(s));
        GroupOptions {
            servers,
            amnesia: false,
        }
    }

    /// The core swarm's seed draws the group's size ([`index_servers`]); any other scenario has one index server.
    pub fn drawn(s: &Scenario) -> usize {
        match s.name.as_str() {
            "core" => index_servers(s.seed),
            _ => 1,
        }
    }
}

/// Runs one scenario to the end and checks it, with the index group [`GroupOptions::of`] it.
pub fn run(s: &Scenario) -> CoreReport {
    run_with(s, GroupOptions::of(s))
}

/// Runs one scenario with the index group `g` to the end and checks it.
pub fn run_with(s: &Scenario, g: GroupOptions) -> CoreReport {
    let k = g.servers.max(1);
    let mut sim = Sim::new(s, k);
    sim.amnesia = g.amnesia;
    sim.run();
    if !sim.done {
        sim.finish();
    }
    sim.settle();
    let env = lock(&sim.env);
    if std::env::var_os("FLARE_CORE_TRACE").is_some() {
        for l in &env.trace {
            println!("{l}");
        }
    }
    let mut failures = check_run(s, &env);
    failures.extend(one_acknowledging_master(&sim.acks));
    CoreReport {
        scenario: s.clone(),
        failures,
        trace_hash: env.trace_hash(),
        events: sim.processed,
        sim_ms: sim.ms(),
        ops: env.ops.len(),
        index_servers: k,
    }
}
