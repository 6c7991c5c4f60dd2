//! The index server (Flare's `flarei`) as a deterministic state machine: registration, role and state changes,
//! node monitoring, failover, node-map pushes and what to persist (cluster.md §3–§6, §11).
//!
//! [`Index`] owns the authoritative node map. It takes inputs through `handle_*` calls (admin commands, probe and
//! push results, timeouts) and queues outputs as [`Action`]s (persist a snapshot, probe a node, push the map to a
//! node, close a connection). It never touches sockets, files or clocks: `now` is an argument.
//!
//! Submodules:
//! - `commands`: the admin commands that are not plain transitions (registration, shutdown, auth, kill, stats);
//! - [`transitions`]: the map transitions as pure functions (the §6.1 table, node down/up, registration);
//! - [`refusal`]: what a refused command's `SERVER_ERROR` says;
//! - `monitor`: one node's monitor (failure counter, one operation in flight, probe timer, coalesced push);
//! - `push`: push scheduling with prior nodes (§4.2);
//! - [`persist`]: the [`Snapshot`] format;
//! - [`stats`](mod@stats): `meta` and `stats threads` replies.
//!
//! Invariants, after every `handle_*` call:
//! - the node map passes [`transitions::validate_map`] (a command whose result would not is refused);
//! - every accepted map change bumps the version by exactly 1 and queues, in this order, one
//!   [`Action::Persist`] of that version and then the pushes of it;
//! - every node in the map has exactly one monitor, with at most one operation in flight;
//! - no node gets a push while a prior node of an earlier change has not answered (or failed), unless it is a prior
//!   node itself.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::{IndexConfig, Secret};
use crate::keys::{HashAlgorithm, PartitionParams, PartitionParamsError, Resolver};
use crate::node_map::{NodeMap, Role, State};
use crate::protocol::admin::IndexCommand;
use crate::protocol::{ErrorReply, NodeLine, Reply};

mod commands;
pub mod group;
pub mod kv;
pub mod lease;
mod monitor;
pub mod persist;
mod push;
pub mod refusal;
pub mod stats;
#[cfg(test)]
mod testkit;
pub mod transitions;

pub use persist::{Snapshot, SnapshotError};
pub use stats::{meta_lines, threads_reply, ThreadRow};
pub use transitions::{MapState, Refusal};

use monitor::{Monitor, Phase, Position, Verdict};
use transitions::Step;

/// The index server's settings (from `flarei`'s configuration, [`IndexParams::from_config`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexParams {
    /// `monitor-interval`: idle time before a node is pinged.
    pub monitor_interval: Duration,
    /// `monitor-threshold`: failures in a row that make a node down.
    pub monitor_threshold: u32,
    /// `monitor-read-timeout`: how long the driver waits for a ping or push reply (handed out with each action).
    pub monitor_read_timeout: Duration,
    /// Partitioning parameters; fixed for the life of the cluster once persisted.
    pub partition: PartitionParams,
    /// `auto-activate`: a master reporting `ready` is activated at once.
    pub auto_activate: bool,
    /// `cluster-secret`: when not empty, map-changing commands need a prior `auth <secret>` on the connection.
    pub secret: Secret,
    /// Most nodes in the map: a node's `node sync` parser refuses more `NODE` lines than its `nodes_max`.
    pub nodes_max: usize,
    /// `master-lease` (ours): the longest lease a master may count on; failover of a master cut off from the index
    /// waits until its lease has certainly ended ([`lease`]). Zero turns leases off (Flare's behaviour).
    pub master_lease: Duration,
}

/// `master-lease`'s default: three renewals' worth (a renewal goes out every second).
pub const DEFAULT_MASTER_LEASE: Duration = Duration::from_secs(3);

impl Default for IndexParams {
    /// Flare's defaults: interval 5 s, threshold 3, read timeout 1 s, default partitioning, no secret.
    fn default() -> Self {
        IndexParams {
            monitor_interval: Duration::from_secs(5),
            monitor_threshold: 3,
            monitor_read_timeout: Duration::from_millis(1000),
            partition: PartitionParams::default(),
            auto_activate: false,
            secret: Secret::default(),
            nodes_max: crate::protocol::Limits::default().nodes_max,
            master_lease: DEFAULT_MASTER_LEASE,
        }
    }
}

impl IndexParams {
    /// The parameters of a `flarei` configuration.
    pub fn from_config(c: &IndexConfig) -> IndexParams {
        let hash = HashAlgorithm::parse(c.key_hash_algorithm.as_str()).unwrap_or_default();
        IndexParams {
            monitor_interval: c.monitor_interval,
            monitor_threshold: c.monitor_threshold,
            monitor_read_timeout: c.monitor_read_timeout,
            partition: PartitionParams {
                partition_size: c.partition_size,
                virtual_slots: c.partition_modular_virtual,
                hint: c.partition_modular_hint,
                hash,
            },
            auto_activate: c.auto_activate,
            secret: c.cluster_secret.clone(),
            master_lease: c.master_lease,
            ..IndexParams::default()
        }
    }

    fn validate(&self) -> Result<(), IndexError> {
        if self.monitor_threshold == 0 {
            return Err(IndexError::Monitor("monitor-threshold must be at least 1"));
        }
        if self.monitor_interval.is_zero() {
            return Err(IndexError::Monitor("monitor-interval must be above 0"));
        }
        Ok(())
    }
}

/// Why an index cannot start (or take a new configuration).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The partition parameters cannot build a resolver.
    #[error(transparent)]
    Partition(#[from] PartitionParamsError),
    /// A monitor setting is unusable.
    #[error("{0}")]
    Monitor(&'static str),
    /// The configuration disagrees with the persisted cluster (cluster.md §9.1 \[Improve\]).
    #[error(
        "{option} is {persisted} in the persisted node map but {configured} in the configuration; \
         changing it would move keys between partitions: set it back to {persisted}"
    )]
    ParamsMismatch {
        /// The option name.
        option: &'static str,
        /// The persisted value.
        persisted: String,
        /// The configured value.
        configured: String,
    },
    /// The restored snapshot is not a valid cluster.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// A client connection of the index (its id is also its `stats threads` id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// What the driver must do, in queue order (see [`Index`] for the contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this snapshot durably (atomic replace) before performing any later action and before writing the reply
    /// of the command that caused it.
    Persist(Snapshot),
    /// Send `ping` to `node` and report with [`Index::handle_probe_result`] (failed = not `OK` within `timeout`).
    Probe {
        /// The node key.
        node: String,
        /// How long to wait for the reply.
        timeout: Duration,
        /// Also read the node's `replication_position` from `stats` (the node is an active slave).
        position: bool,
    },
    /// Send `node sync <version>`, these `NODE` lines and `END` to `node`; report with
    /// [`Index::handle_push_result`] (failed = not `OK` within `timeout`).
    Push {
        /// The node key.
        node: String,
        /// The node-map version.
        version: u64,
        /// The full map.
        lines: Vec<NodeLine>,
        /// How long to wait for the reply.
        timeout: Duration,
    },
    /// Close this connection (`kill <id>` from another connection).
    Close(ConnId),
}

/// The result of a monitor ping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeResult {
    /// The node answered `OK` in time.
    pub ok: bool,
    /// For an active slave asked for it: the `replication_position` its `stats` reported (`None` for Flare nodes).
    pub replication_position: Option<u64>,
}

/// The reply to a command and whether the connection closes after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The reply (encode with [`crate::protocol::response::encode_text`]); written after every queued
    /// [`Action::Persist`] is done.
    pub reply: Reply,
    /// Close the connection after writing the reply.
    pub close: bool,
}

impl CommandOutcome {
    fn answer(reply: Reply) -> Self {
        CommandOutcome {
            reply,
            close: false,
        }
    }

    fn refused(r: Refusal) -> Self {
        Self::answer(Reply::Error(ErrorReply::Server(r.to_string().into())))
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Conn {
    authenticated: bool,
}

/// Which nodes a map change's push leaves out or forces.
#[derive(Clone, Debug, Default)]
struct PushPlan {
    /// A registering node: it has the map from its `node add` reply.
    exclude: Option<String>,
    /// A shutting-down active master: it still gets the push.
    force: Option<String>,
}

/// The index server state machine.
///
/// # Driver contract
///
/// 1. Create it with [`Index::new`] (a restored snapshot resumes the cluster and queues a push of the current map to
///    every node, in case the previous process stopped between persisting and pushing).
/// 2. Call [`Index::open_connection`] for each accepted client connection and [`Index::close_connection`] when it
///    ends; parse its lines with [`crate::protocol::admin::AdminParser`]. Hand [`IndexCommand`]s to
///    [`Index::handle_command`]; answer [`crate::protocol::admin::ServerQuery`]s from process state, using
///    [`Index::node_map`] (`node_map_version`) and [`Index::monitor_threads`] with [`threads_reply`].
/// 3. After **every** `handle_*` call (and after `new`), drain [`Index::poll_action`] until `None`, performing the
///    actions **in queue order**:
///    - [`Action::Persist`]: write it durably and finish before anything queued after it; a failed persist is
///      fatal (stop the process): the map in memory is then ahead of the disk and must not be shown to anyone;
///    - [`Action::Probe`] / [`Action::Push`]: start the I/O (asynchronously is fine) and report each exactly once
///      with [`Index::handle_probe_result`] / [`Index::handle_push_result`], applying the given timeout;
///    - [`Action::Close`]: close that connection.
/// 4. Only then write the command's [`CommandOutcome::reply`] (so a reply never announces an unpersisted
///    version), and close the connection if [`CommandOutcome::close`].
/// 5. Arm a timer for [`Index::poll_timeout`] and call [`Index::handle_timeout`] when it fires (early or late calls
///    are harmless).
///
/// Results for removed nodes, or that do not match the operation in flight, are ignored.
#[derive(Debug)]
pub struct Index {
    params: IndexParams,
    resolver: Resolver,
    cluster: MapState,
    monitors: BTreeMap<String, Monitor>,
    /// Prior nodes (§4.2) and the version each must have answered before other nodes get pushes.
    gate: BTreeMap<String, u64>,
    actions: VecDeque<Action>,
    conns: BTreeMap<ConnId, Conn>,
    /// Next id for a monitor or a connection (one id space: `stats threads`, `kill`).
    next_thread_id: u64,
    /// Masters' leases and nodes' prepare epochs.
    leases: lease::Leases,
    /// Masters found down whose lease may still run: marked down when it has certainly ended.
    deferred_down: BTreeMap<String, Instant>,
}

impl Index {
    /// A new index, empty or resuming `restored`. Refuses a snapshot whose partition parameters differ from
    /// `params.partition` (naming the option) or that is not a valid cluster.
    pub fn new(
        params: IndexParams,
        restored: Option<Snapshot>,
        now: Instant,
    ) -> Result<Index, IndexError> {
        params.validate()?;
        let resolver = Resolver::new(params.partition)?;
        let cluster = match &restored {
            Some(s) => {
                check_same_params(&s.partition, &params.partition)?;
                s.validate()?;
                MapState {
                    map: s.node_map(),
                    next_thread_type: s.next_thread_type,
                }
            }
            None => MapState::default(),
        };
        let mut leases = lease::Leases::new(params.master_lease, now, restored.is_some());
        leases.demoted_by(&cluster.map, cluster.map.version);
        let mut index = Index {
            leases,
            deferred_down: BTreeMap::new(),
            params,
            resolver,
            cluster,
            monitors: BTreeMap::new(),
            gate: BTreeMap::new(),
            actions: VecDeque::new(),
            conns: BTreeMap::new(),
            next_thread_id: 1,
        };
        let keys: Vec<String> = index.cluster.map.nodes.keys().cloned().collect();
        for key in keys {
            index.start_monitor(now, &key, now);
            if let Some(m) = index.monitors.get_mut(&key) {
                m.queue_push(now, false);
            }
        }
        index.dispatch();
        Ok(index)
    }

    /// Registers a client connection; its id is unique among connections and monitors.
    pub fn open_connection(&mut self) -> ConnId {
        let id = ConnId(self.take_thread_id());
        self.conns.insert(id, Conn::default());
        id
    }

    /// Forgets a closed connection.
    pub fn close_connection(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Runs one command from `conn`. Map-changing commands apply, validate, bump the version, queue the
    /// [`Action::Persist`] and then the pushes, as one step.
    pub fn handle_command(
        &mut self,
        now: Instant,
        conn: ConnId,
        cmd: IndexCommand,
    ) -> CommandOutcome {
        if cmd.changes_map() && !self.authenticated(conn) {
            return CommandOutcome::answer(Reply::Error(ErrorReply::Client(
                "authentication required".into(),
            )));
        }
        let ok = |r: Result<(), Refusal>| match r {
            Ok(()) => CommandOutcome::answer(Reply::Ok),
            Err(e) => CommandOutcome::refused(e),
        };
        match cmd {
            IndexCommand::NodeAdd(node) => self.node_add(now, &node),
            IndexCommand::NodeRole {
                node,
                role,
                balance,
                partition,
                epoch,
            } => {
                let key = node.key();
                if let Some(refused) = self.stale(&key, epoch) {
                    return refused;
                }
                let step = transitions::set_role(
                    &self.cluster,
                    &key,
                    role,
                    balance,
                    partition,
                    &self.resolver,
                );
                ok(step.and_then(|s| self.commit(now, s, PushPlan::default())))
            }
            IndexCommand::NodeState { node, state, epoch } => {
                let key = node.key();
                if let Some(refused) = self.stale(&key, epoch) {
                    return refused;
                }
                let positions = self.positions_for(&key);
                let step = transitions::set_state(
                    &self.cluster,
                    &key,
                    state,
                    self.params.auto_activate,
                    &positions,
                );
                ok(step.and_then(|s| self.commit(now, s, PushPlan::default())))
            }
            IndexCommand::NodeRemove(node) => {
                let step = transitions::remove(&self.cluster, &node.key());
                ok(step.and_then(|s| self.commit(now, s, PushPlan::default())))
            }
            IndexCommand::Shutdown(node) => ok(self.shutdown(now, &node)),
            IndexCommand::Auth(secret) => self.auth(conn, &secret),
            IndexCommand::Meta => {
                CommandOutcome::answer(Reply::Lines(meta_lines(&self.params.partition)))
            }
            IndexCommand::Ping => CommandOutcome::answer(Reply::Ok),
            // The driver remembers which connection is whose session; the index only checks the node exists.
            IndexCommand::NodeSession(node) => {
                match self.cluster.map.nodes.contains_key(&node.key()) {
                    true => CommandOutcome::answer(Reply::Ok),
                    false => CommandOutcome::refused(Refusal::NoSuchNode(node.key())),
                }
            }
            IndexCommand::NodeLease {
                node,
                version,
                lease_ms,
            } => self.renew_lease(now, conn, &node.key(), version, lease_ms),
            IndexCommand::Stats(group) => CommandOutcome::answer(self.stats(group)),
            IndexCommand::Kill(id) => self.kill(conn, id),
            IndexCommand::Verbosity { noreply } => {
                CommandOutcome::answer(if noreply { Reply::Nothing } else { Reply::Ok })
            }
            IndexCommand::Quit => CommandOutcome {
                reply: Reply::Nothing,
                close: true,
            },
            // The group's commands ([`group::Group`] answers them before the index sees a command).
            IndexCommand::IndexAdd(_)
            | IndexCommand::IndexRemove(_)
            | IndexCommand::IndexPeer(_)
            | IndexCommand::IndexRaft(_) => CommandOutcome::answer(Reply::Error(
                ErrorReply::Server("index group commands go to the group".into()),
            )),
        }
    }

    /// `SERVER_ERROR stale ...` for a node's report of a copy made for an older prepare than its current one.
    fn stale(&self, key: &str, epoch: Option<u64>) -> Option<CommandOutcome> {
        let current = self.leases.stale_report(key, epoch?)?;
        tracing::warn!(
            node = key,
            epoch,
            current,
            "report for an older prepare refused"
        );
        Some(CommandOutcome::answer(Reply::Error(ErrorReply::Server(
            format!(
                "stale report: prepare of node map version {} was replaced by {current}",
                epoch?
            )
            .into(),
        ))))
    }

    /// `node lease`: grants a renewal (see [`lease`]), or refuses it.
    fn renew_lease(
        &mut self,
        now: Instant,
        conn: ConnId,
        key: &str,
        version: u64,
        lease_ms: Option<u64>,
    ) -> CommandOutcome {
        if !self.leases.enabled() {
            return CommandOutcome::answer(Reply::Error(ErrorReply::UnknownCommand));
        }
        if !self.authenticated(conn) {
            return CommandOutcome::answer(Reply::Error(ErrorReply::Client(
                "authentication required".into(),
            )));
        }
        if !self.cluster.map.nodes.contains_key(key) {
            return CommandOutcome::refused(Refusal::NoSuchNode(key.to_owned()));
        }
        match self.leases.renew(now, key, conn, version, lease_ms) {
            Ok(()) => CommandOutcome::answer(Reply::Ok),
            Err(why) => CommandOutcome::answer(Reply::Error(ErrorReply::Server(why.into()))),
        }
    }

    /// When `node`'s lease has certainly ended (see [`lease`]).
    pub fn lease_ends_at(&self, node: &str) -> Instant {
        self.leases.ends_at(node)
    }

    /// The result of the [`Action::Probe`] of `node`.
    pub fn handle_probe_result(&mut self, now: Instant, node: &str, result: ProbeResult) {
        let threshold = self.params.monitor_threshold;
        let position = self.position_context(node, result);
        let Some(m) = self.monitors.get_mut(node) else {
            return;
        };
        if m.phase != Phase::Probing {
            return;
        }
        m.rest(now, self.params.monitor_interval);
        let verdict = if result.ok {
            m.position = position;
            m.succeed(threshold)
        } else {
            m.fail(threshold)
        };
        self.raise(now, node, verdict);
        self.dispatch();
    }

    /// The result of the [`Action::Push`] of `version` to `node`. A failure counts as a monitor failure; the map is
    /// pushed again at the node's next monitor turn (**\[Improve\]**: Flare drops it until the next change).
    pub fn handle_push_result(&mut self, now: Instant, node: &str, version: u64, ok: bool) {
        let threshold = self.params.monitor_threshold;
        let Some(m) = self.monitors.get_mut(node) else {
            return;
        };
        let Phase::Pushing {
            version: v,
            backlog,
        } = m.phase
        else {
            return;
        };
        if v != version {
            return;
        }
        m.rest(now, self.params.monitor_interval);
        let verdict = if ok {
            Verdict::Quiet
        } else {
            m.requeue_failed(backlog);
            m.fail(threshold)
        };
        if self.gate.get(node).is_some_and(|need| *need <= version) {
            self.gate.remove(node);
        }
        self.raise(now, node, verdict);
        self.dispatch();
    }

    /// The session connection of `node` (the one it registered on, kept open by our nodes) closed. A process that
    /// was killed loses its sockets at once, so this is probed right away and at a short interval until it answers
    /// or is marked down (\[Improve\]: Flare notices only by pinging, ~15 s with its defaults).
    ///
    /// `conn` is the connection and `by_peer` says whether the node closed (or reset) it: then the lease granted on
    /// it ends now. A close the driver made itself (its read timeout, `kill`) ends no lease.
    pub fn handle_session_lost(&mut self, now: Instant, node: &str, conn: ConnId, by_peer: bool) {
        self.leases.session_closed(now, node, conn, by_peer);
        if let Some(m) = self.monitors.get_mut(node) {
            if !m.shutting_down && !m.really_down(self.params.monitor_threshold) {
                m.suspect(now);
            }
        }
        self.dispatch();
    }

    /// Time passed: starts the probes (or deferred pushes) that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .deferred_down
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.deferred_down.remove(&key);
            let still_down = self
                .monitors
                .get(&key)
                .is_some_and(|m| m.really_down(self.params.monitor_threshold));
            if still_down {
                self.raise(now, &key, Verdict::Down);
            }
        }
        let due: Vec<String> = self
            .monitors
            .iter()
            .filter(|(_, m)| m.next_probe().is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if !self.start_push(&key, true) {
                self.start_probe(&key);
            }
        }
        self.dispatch();
    }

    /// The earliest probe deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probes = self.monitors.values().filter_map(Monitor::next_probe);
        probes.chain(self.deferred_down.values().copied()).min()
    }

    /// The next action to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Takes new monitor settings, secret and `auto-activate` (SIGHUP). The partition parameters cannot change.
    pub fn reconfigure(&mut self, now: Instant, params: IndexParams) -> Result<(), IndexError> {
        params.validate()?;
        check_same_params(&self.params.partition, &params.partition)?;
        let latest = now + params.monitor_interval;
        self.params = params;
        for (key, m) in &mut self.monitors {
            let down = self
                .cluster
                .map
                .nodes
                .get(key)
                .is_some_and(|n| n.state == State::Down);
            m.follow(down, self.params.monitor_threshold);
            if let Phase::Idle { next_probe } = &mut m.phase {
                *next_probe = (*next_probe).min(latest);
            }
        }
        Ok(())
    }

    /// Stops acting and takes `committed` as the map: an index server that does not lead its group (see
    /// [`group`]) runs no monitor, pushes nothing and holds exactly the map its group applied. Connections (and
    /// their authentication) stay; queued probes and pushes are dropped, queued closes kept.
    pub fn follow(&mut self, committed: &Snapshot) {
        self.cluster = MapState {
            map: committed.node_map(),
            next_thread_type: committed.next_thread_type,
        };
        self.monitors.clear();
        self.gate.clear();
        self.deferred_down.clear();
        self.actions.retain(|a| matches!(a, Action::Close(_)));
    }

    /// Starts acting on the map it holds (the group's applied map): a fresh monitor for every node, its current
    /// map pushed to every node, and every lease treated as possibly running until `now` + the lease's grace +
    /// `extra` (leases granted by a previous leader, or by this process before: `extra` covers how long a deposed
    /// leader may still have granted renewals before it noticed).
    pub fn lead(&mut self, now: Instant, extra: Duration) {
        self.monitors.clear();
        self.gate.clear();
        self.deferred_down.clear();
        self.leases = lease::Leases::new(self.params.master_lease, now, true);
        self.leases.extend_restart(now, extra);
        self.leases
            .demoted_by(&self.cluster.map, self.cluster.map.version);
        let keys: Vec<String> = self.cluster.map.nodes.keys().cloned().collect();
        for key in keys {
            self.start_monitor(now, &key, now);
            if let Some(m) = self.monitors.get_mut(&key) {
                m.queue_push(now, false);
            }
        }
        self.dispatch();
    }

    /// Whether `conn` may send map-changing commands (no secret, or it authenticated).
    pub fn is_authenticated(&self, conn: ConnId) -> bool {
        self.authenticated(conn)
    }

    /// The authoritative node map.
    pub fn node_map(&self) -> &NodeMap {
        &self.cluster.map
    }

    /// The settings in effect.
    pub fn params(&self) -> &IndexParams {
        &self.params
    }

    /// What [`Action::Persist`] would write now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: self.cluster.map.version,
            next_thread_type: self.cluster.next_thread_type,
            nodes: self.cluster.map.nodes.values().cloned().collect(),
            partition: self.params.partition,
        }
    }

    /// One `stats threads` row per node monitor (type = the node's `thread_type`, peer = its key, queue and behind =
    /// its undelivered map versions).
    pub fn monitor_threads(&self, now: Instant) -> Vec<ThreadRow> {
        self.monitors
            .iter()
            .map(|(key, m)| {
                let (queue, behind) = m.backlog(now);
                let (op, state) = match m.phase {
                    Phase::Idle { .. } => ("", "wait"),
                    Phase::Probing => ("", "execute"),
                    Phase::Pushing { .. } => ("node_sync", "execute"),
                };
                ThreadRow {
                    id: m.id,
                    thread_type: self.cluster.map.nodes.get(key).map_or(0, |n| n.thread_type),
                    peer: key.clone(),
                    op: op.into(),
                    uptime: now.saturating_duration_since(m.started).as_secs(),
                    state,
                    info: String::new(),
                    queue,
                    behind,
                }
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------------------------------------
    // Map changes
    // -----------------------------------------------------------------------------------------------------------------

    /// Applies an accepted step: validate, bump the version, persist, follow the map in the monitors, gate the
    /// prior nodes, queue the pushes.
    fn commit(&mut self, now: Instant, step: Step, plan: PushPlan) -> Result<(), Refusal> {
        let Step::Changed { cluster, prior } = step else {
            return Ok(());
        };
        // A change to what is already there (a retried `node role ... master B P`) is not a new version.
        if cluster.map.nodes == self.cluster.map.nodes
            && cluster.next_thread_type == self.cluster.next_thread_type
        {
            return Ok(());
        }
        transitions::validate_map(&cluster.map, cluster.next_thread_type)
            .map_err(Refusal::Inconsistent)?;
        let version = self.cluster.map.version.saturating_add(1);
        self.leases.follow(&self.cluster.map, &cluster.map, version);
        self.cluster = cluster;
        self.cluster.map.version = version;
        self.actions.push_back(Action::Persist(self.snapshot()));
        self.follow_map(now);
        for key in prior.into_iter().filter(|k| self.monitors.contains_key(k)) {
            self.gate.insert(key, version);
        }
        for (key, m) in &mut self.monitors {
            if plan.exclude.as_deref() != Some(key.as_str()) {
                m.queue_push(now, plan.force.as_deref() == Some(key.as_str()));
            }
        }
        self.dispatch();
        Ok(())
    }

    /// Starts monitors for new nodes, stops those of removed nodes, and lets each follow its node's state.
    fn follow_map(&mut self, now: Instant) {
        let nodes = &self.cluster.map.nodes;
        self.monitors.retain(|k, _| nodes.contains_key(k));
        self.gate.retain(|k, _| nodes.contains_key(k));
        let new: Vec<String> = nodes
            .keys()
            .filter(|k| !self.monitors.contains_key(*k))
            .cloned()
            .collect();
        for key in new {
            self.start_monitor(now, &key, now + self.params.monitor_interval);
        }
        let threshold = self.params.monitor_threshold;
        let nodes = &self.cluster.map.nodes;
        for (key, m) in &mut self.monitors {
            let down = nodes.get(key).is_some_and(|n| n.state == State::Down);
            m.follow(down, threshold);
            // An admin brought a stopping node back (`node state X active`): it is not stopping any more.
            m.shutting_down &= down;
        }
    }

    fn start_monitor(&mut self, now: Instant, key: &str, first_probe: Instant) {
        let down = self
            .cluster
            .map
            .nodes
            .get(key)
            .is_some_and(|n| n.state == State::Down);
        let id = self.take_thread_id();
        let m = Monitor::new(id, now, first_probe, down, self.params.monitor_threshold);
        self.monitors.insert(key.to_owned(), m);
    }

    /// Node down or up raised by a monitor. A result the map rules refuse is logged and dropped.
    fn raise(&mut self, now: Instant, key: &str, verdict: Verdict) {
        let step = match verdict {
            Verdict::Quiet => return,
            Verdict::Down if self.leased_server(now, key) => {
                let until = self.leases.ends_at(key);
                tracing::warn!(
                    node = key,
                    wait_ms = until.saturating_duration_since(now).as_millis() as u64,
                    "node unreachable: marking it down waits until its lease has certainly ended"
                );
                self.deferred_down.insert(key.to_owned(), until);
                return;
            }
            Verdict::Down => {
                self.deferred_down.remove(key);
                tracing::warn!(node = key, "node down: monitor threshold reached");
                transitions::mark_down(&self.cluster, key, &self.positions_for(key))
            }
            // A failover waiting for the lease is called off only while the map still has the node up: a node marked
            // down meanwhile by another path (it registered again after a restart, which marks a live record down)
            // comes back up as any down node does. (Core simulator, seed 134: the master stayed down for good.)
            Verdict::Up if self.deferred_down.remove(key).is_some() && !self.down_in_map(key) => {
                tracing::info!(node = key, "node answers again: marking it down called off");
                // While it looked down it was left out of the pushes: it gets the maps it missed now.
                if let Some(m) = self.monitors.get_mut(key) {
                    m.queue_push(now, false);
                }
                return;
            }
            Verdict::Up => {
                tracing::info!(node = key, "node up: answered a ping");
                transitions::mark_up(&self.cluster, key)
            }
        };
        if let Err(e) = self.commit(now, step, PushPlan::default()) {
            tracing::error!(node = key, error = %e, "monitor event not applied");
        }
    }

    fn down_in_map(&self, key: &str) -> bool {
        self.cluster
            .map
            .nodes
            .get(key)
            .is_some_and(|n| n.state == State::Down)
    }

    /// Whether `key` answers from its store (an active master or slave, [`lease::serves`]) and may still hold a
    /// lease at `now`: a master acknowledges writes and both answer reads until it ends, so it is not failed over
    /// or marked down before (a slave marked down earlier would serve reads its master no longer replicates).
    fn leased_server(&self, now: Instant, key: &str) -> bool {
        let serves = self.cluster.map.nodes.get(key).is_some_and(lease::serves);
        serves && self.leases.may_hold(now, key)
    }

    /// The replication positions slaves reported while replicating from `master` (comparable with each other).
    fn positions_for(&self, master: &str) -> BTreeMap<String, u64> {
        self.monitors
            .iter()
            .filter_map(|(k, m)| {
                let p = m.position.as_ref()?;
                (p.master == master).then(|| (k.clone(), p.value))
            })
            .collect()
    }

    /// A reported position, tagged with the slave's partition and master (only for an active slave).
    fn position_context(&self, node: &str, result: ProbeResult) -> Option<Position> {
        let value = result.replication_position?;
        let n = self.cluster.map.nodes.get(node)?;
        let partition = n.partition?;
        if n.role != Role::Slave || n.state != State::Active {
            return None;
        }
        let master = transitions::master_of(&self.cluster.map, partition)?;
        Some(Position {
            value,
            partition,
            master: master.key(),
        })
    }

    fn take_thread_id(&mut self) -> u64 {
        let id = self.next_thread_id;
        self.next_thread_id = self.next_thread_id.saturating_add(1);
        id
    }
}

/// Refuses a configuration whose partition parameters differ from the persisted ones, naming the option.
fn check_same_params(
    persisted: &PartitionParams,
    configured: &PartitionParams,
) -> Result<(), IndexError> {
    let fields = [
        (
            "partition-size",
            persisted.partition_size.to_string(),
            configured.partition_size.to_string(),
        ),
        (
            "partition-modular-virtual",
            persisted.virtual_slots.to_string(),
            configured.virtual_slots.to_string(),
        ),
        (
            "partition-modular-hint",
            persisted.hint.to_string(),
            configured.hint.to_string(),
        ),
        (
            "key-hash-algorithm",
            persisted.hash.to_string(),
            configured.hash.to_string(),
        ),
    ];
    match fields.into_iter().find(|(_, p, c)| p != c) {
        Some((option, persisted, configured)) => Err(IndexError::ParamsMismatch {
            option,
            persisted,
            configured,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod lease_tests;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::testkit::{key, params, set, Harness, Seen};
    use super::*;

    const NONE: &[&str] = &[];

    #[test]
    fn every_map_change_persists_then_pushes_with_version_plus_one() {
        let mut h = Harness::new();
        h.add(&["a", "b", "c"]);
        h.take();
        assert_eq!(h.cmd("node role a 12121 master 1 0"), "OK\r\n");
        assert_eq!(
            h.take(),
            [
                Seen::Persist(4),
                Seen::Push(key("a"), 4),
                Seen::Push(key("b"), 4),
                Seen::Push(key("c"), 4)
            ]
        );
        // Refused and no-op commands change nothing.
        assert_eq!(
            h.cmd("node role b 12121 master 1 0"),
            "SERVER_ERROR partition 0 already has master a:12121\r\n"
        );
        assert_eq!(h.cmd("node state a 12121 active"), "OK\r\n");
        assert_eq!(
            h.cmd("node role zz 1 proxy"),
            "SERVER_ERROR no such node zz:1\r\n"
        );
        assert_eq!(h.take(), []);
        assert_eq!(h.version(), 4);
    }

    #[test]
    fn monitor_threshold_with_a_virtual_clock() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        let t0 = h.now;
        assert_eq!(
            h.take(),
            [Seen::Persist(1), Seen::Persist(2), Seen::Push(key("a"), 2)]
        );
        // Idle: the first probes are one interval after the last operation.
        assert_eq!(h.index.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let ms = Duration::from_millis;
        // `a` dies. Probes at +1 s, then each 1 s after the previous failure (each answered 100 ms later).
        h.run(ms(3250), &set(&["a"]));
        assert_eq!(h.node(&key("a")), "proxy active -1", "two failures so far");
        h.run(ms(100), &set(&["a"]));
        assert_eq!(
            h.node(&key("a")),
            "proxy down -1",
            "third failure at 3.3 s: down"
        );
        assert_eq!(h.now - t0, ms(3350));
        let pushes: Vec<_> = h
            .take()
            .into_iter()
            .filter(|s| matches!(s, Seen::Push(..)))
            .collect();
        assert_eq!(
            pushes,
            [Seen::Push(key("b"), 3)],
            "a is really down: skipped"
        );
        // It comes back: the next good ping brings it up.
        h.run(ms(1200), &BTreeSet::new());
        assert_eq!(h.node(&key("a")), "proxy active -1");
        assert!(h.take().contains(&Seen::Push(key("a"), 4)));
    }

    #[test]
    fn a_lost_session_is_probed_at_once_and_marked_down_fast() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        h.take();
        let t0 = h.now;
        let ms = Duration::from_millis;
        // `a` is killed: its session closes; three quick failed probes (each answered 100 ms later, next one 100 ms
        // after that) mark it down well within a second.
        h.index
            .handle_session_lost(h.now, &key("a"), ConnId(999), true);
        h.drain();
        h.run(ms(600), &set(&["a"]));
        assert_eq!(h.node(&key("a")), "proxy down -1");
        assert!(h.now - t0 < ms(1000));
        // A session lost by a live node (a network blip) costs one quick probe, then the normal interval.
        h.index
            .handle_session_lost(h.now, &key("b"), ConnId(999), true);
        h.drain();
        h.run(ms(150), &BTreeSet::new());
        assert_eq!(h.node(&key("b")), "proxy active -1");
        assert!(
            !h.index.monitors[&key("b")].suspect,
            "a good probe settles it"
        );
    }

    #[test]
    fn a_good_ping_resets_the_failure_count() {
        let mut h = Harness::new();
        h.add(&["a"]);
        let ms = Duration::from_millis;
        h.run(ms(2200), &set(&["a"]));
        h.run(ms(1100), &BTreeSet::new());
        h.run(ms(2200), &set(&["a"]));
        assert_eq!(
            h.node(&key("a")),
            "proxy active -1",
            "2 + reset + 2 failures: never 3 in a row"
        );
    }

    #[test]
    fn admin_down_on_a_live_node_is_short_lived() {
        // flare-tools' reconstruct relies on this (cluster.md §5.1).
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        h.take();
        h.cmd("node state a 12121 down");
        assert_eq!(
            h.take(),
            [
                Seen::Persist(3),
                Seen::Push(key("a"), 3),
                Seen::Push(key("b"), 3)
            ]
        );
        h.run(Duration::from_millis(1300), &BTreeSet::new());
        assert_eq!(h.node(&key("a")), "proxy active -1");
    }

    #[test]
    fn forced_active_on_a_dead_node_is_noticed_again() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        let ms = Duration::from_millis;
        h.run(ms(3400), &set(&["a"]));
        assert_eq!(h.node(&key("a")), "proxy down -1");
        h.cmd("node state a 12121 active");
        h.run(ms(3400), &set(&["a"]));
        assert_eq!(h.node(&key("a")), "proxy down -1");
    }

    #[test]
    fn failed_push_counts_as_failure_and_is_retried() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        h.take();
        h.cmd("node role a 12121 master 1 0");
        h.answer_node(&key("a"), true);
        h.answer_node(&key("b"), false);
        assert_eq!(h.index.monitors[&key("b")].down_count, 1);
        h.take();
        // The retry replaces b's next probe.
        h.tick(h.now + Duration::from_secs(1));
        assert_eq!(h.take(), [Seen::Probe(key("a")), Seen::Push(key("b"), 3)]);
    }

    #[test]
    fn a_repeated_change_is_not_a_new_version() {
        // flare-tools retries `node role ... master B P` when a reply is lost.
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        assert_eq!(h.cmd("node role a 12121 master 1 0"), "OK\r\n");
        let v = h.version();
        h.take();
        assert_eq!(h.cmd("node role a 12121 master 1 0"), "OK\r\n");
        assert_eq!((h.version(), h.take()), (v, vec![]));
    }

    /// One probe round: every node is probed; `failing` fails, slaves report `positions`.
    fn probe_round(h: &mut Harness, failing: &str, positions: &[(&str, u64)]) {
        h.now += Duration::from_secs(1);
        h.index.handle_timeout(h.now);
        h.drain();
        for (_, op) in std::mem::take(&mut h.in_flight) {
            let Action::Probe { node, position, .. } = &op else {
                continue;
            };
            let reported = positions
                .iter()
                .find(|(n, _)| key(n) == *node)
                .map(|(_, p)| *p);
            assert_eq!(
                *position,
                reported.is_some(),
                "{node}: only active slaves are asked"
            );
            h.answer(&op, *node != key(failing), reported);
        }
        h.answer_all(&BTreeSet::new());
    }

    #[test]
    fn failover_uses_the_positions_probes_reported() {
        let mut h = Harness::new();
        h.add(&["m", "s1", "s2"]);
        for line in [
            "node role m 12121 master 1 0",
            "node role s1 12121 slave 0 0",
            "node role s2 12121 slave 0 0",
            "node state s1 12121 active",
            "node state s2 12121 active",
            "node role s1 12121 slave 2 0",
        ] {
            assert_eq!(h.cmd(line), "OK\r\n", "{line}");
        }
        h.answer_all(&BTreeSet::new());
        let positions = [("s1", 5), ("s2", 9)];
        probe_round(&mut h, "", &positions);
        for _ in 0..3 {
            probe_round(&mut h, "m", &positions);
        }
        // Flare's rule would pick s1 (first, and the higher balance); s2 has more of the master's writes.
        assert_eq!(h.node(&key("s2")), "master active 0");
        // s1 missed what s2 holds beyond position 5: it rebuilds from s2.
        assert_eq!(h.node(&key("s1")), "slave prepare 0");
        assert_eq!(h.node(&key("m")), "proxy down -1");
    }

    #[test]
    fn monitor_threads_rows() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        h.cmd("node role a 12121 master 1 0");
        h.answer_node(&key("a"), true);
        h.now += Duration::from_secs(2);
        let rows = h.index.monitor_threads(h.now);
        let b = rows.iter().find(|r| r.peer == key("b")).unwrap();
        assert_eq!(
            (b.thread_type, b.op.as_str(), b.state, b.queue, b.behind),
            (17, "node_sync", "execute", 1, 2)
        );
        let a = rows.iter().find(|r| r.peer == key("a")).unwrap();
        assert_eq!(
            (a.thread_type, a.op.as_str(), a.state, a.queue),
            (16, "", "wait", 0)
        );
        assert_ne!(a.id, h.conn.0, "one id space for connections and monitors");
    }

    #[test]
    fn restored_snapshot_resumes_and_pushes_the_current_map() {
        let mut h = Harness::new();
        h.add(&["a", "b", "c"]);
        h.cmd("node role a 12121 master 1 0");
        h.cmd("node state c 12121 down");
        let snapshot = Snapshot::decode(&h.persisted.clone().unwrap().encode()).unwrap();
        let mut r = Harness::with(params(), Some(snapshot));
        assert_eq!(r.version(), 5);
        assert_eq!(
            r.take(),
            [Seen::Push(key("a"), 5), Seen::Push(key("b"), 5)],
            "c is down: skipped"
        );
        r.cmd("node add d 12121");
        assert_eq!(r.index.node_map().nodes[&key("d")].thread_type, 19);
        // The down node is probed at once.
        r.answer_all(&BTreeSet::new());
        r.tick(r.now);
        assert_eq!(r.take().last(), Some(&Seen::Probe(key("c"))));
    }

    #[test]
    fn restored_snapshot_with_other_partition_params_is_refused() {
        let mut h = Harness::new();
        h.add(&["a"]);
        let s = h.persisted.clone().unwrap();
        let other = IndexParams {
            partition: PartitionParams {
                virtual_slots: 512,
                ..params().partition
            },
            ..params()
        };
        let e = Index::new(other.clone(), Some(s), h.now).unwrap_err();
        assert_eq!(
            e.to_string(),
            "partition-modular-virtual is 256 in the persisted node map but 512 in the configuration; changing it \
             would move keys between partitions: set it back to 256"
        );
        assert!(matches!(
            h.index.reconfigure(h.now, other),
            Err(IndexError::ParamsMismatch { .. })
        ));
        let faster = IndexParams {
            monitor_interval: Duration::from_millis(200),
            ..params()
        };
        assert_eq!(h.index.reconfigure(h.now, faster), Ok(()));
        assert!(h.index.poll_timeout() <= Some(h.now + Duration::from_millis(200)));
    }

    #[test]
    fn bad_params_are_refused() {
        let now = Instant::now();
        assert!(Index::new(
            IndexParams {
                monitor_threshold: 0,
                ..params()
            },
            None,
            now
        )
        .is_err());
        assert!(Index::new(
            IndexParams {
                monitor_interval: Duration::ZERO,
                ..params()
            },
            None,
            now
        )
        .is_err());
        let bad = PartitionParams {
            partition_size: 1,
            ..params().partition
        };
        assert!(matches!(
            Index::new(
                IndexParams {
                    partition: bad,
                    ..params()
                },
                None,
                now
            ),
            Err(IndexError::Partition(_))
        ));
        let _ = NONE;
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::testkit::params;
    use super::*;
    use crate::protocol::admin::{parse_line, AdminCommand};

    #[derive(Clone, Debug)]
    enum Op {
        Cmd(String),
        Tick,
        Answer {
            pick: usize,
            ok: bool,
            position: Option<u64>,
        },
        Restart,
    }

    fn command() -> impl Strategy<Value = String> {
        let node = 0..5u8;
        let balance = prop_oneof![1 => Just(-1i64), 2 => Just(0), 6 => 1..3i64];
        let partition = prop_oneof![1 => Just(-1i64), 8 => 0..3i64];
        prop_oneof![
            1 => node.clone().prop_map(|n| format!("node add n{n} 1")),
            6 => (node.clone(), prop::sample::select(vec!["master", "slave", "proxy"]), balance, partition)
                .prop_map(|(n, r, b, p)| format!("node role n{n} 1 {r} {b} {p}")),
            4 => (node.clone(), prop::sample::select(vec!["active", "prepare", "down", "ready"]))
                .prop_map(|(n, s)| format!("node state n{n} 1 {s}")),
            1 => node.clone().prop_map(|n| format!("node remove n{n} 1")),
            1 => node.prop_map(|n| format!("shutdown n{n} 1")),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => command().prop_map(Op::Cmd),
            3 => Just(Op::Tick),
            4 => (any::<usize>(), prop::bool::weighted(0.8), prop::option::of(0..4u64))
                .prop_map(|(pick, ok, position)| Op::Answer { pick, ok, position }),
            1 => Just(Op::Restart),
        ]
    }

    struct Driver {
        params: IndexParams,
        index: Index,
        now: Instant,
        conn: ConnId,
        in_flight: Vec<Action>,
        persisted: Option<Snapshot>,
        /// The `NODE` lines of every persisted version.
        persisted_lines: BTreeMap<u64, Vec<NodeLine>>,
    }

    impl Driver {
        /// Drains the actions; returns how many snapshots were persisted.
        fn drain(&mut self) -> Result<u64, TestCaseError> {
            let mut persists = 0;
            while let Some(a) = self.index.poll_action() {
                match &a {
                    Action::Persist(s) => {
                        persists += 1;
                        let back = Snapshot::decode(&s.encode());
                        prop_assert_eq!(back.as_ref(), Ok(s));
                        self.persisted_lines
                            .insert(s.version, s.node_map().to_lines());
                        self.persisted = Some(s.clone());
                    }
                    Action::Push { version, lines, .. } => {
                        prop_assert_eq!(
                            self.persisted_lines.get(version),
                            Some(lines),
                            "push of an unpersisted map"
                        );
                        self.in_flight.push(a.clone());
                    }
                    Action::Probe { .. } => self.in_flight.push(a.clone()),
                    Action::Close(_) => {}
                }
            }
            Ok(persists)
        }

        fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
            let before = self.index.node_map().version;
            match op {
                Op::Cmd(line) => {
                    let Ok(AdminCommand::Index(c)) = parse_line(line.as_bytes()) else {
                        return Err(TestCaseError::fail(format!("generated a bad line {line}")));
                    };
                    let out = self.index.handle_command(self.now, self.conn, c);
                    prop_assert!(!out.close);
                }
                Op::Tick => {
                    if let Some(t) = self.index.poll_timeout() {
                        self.now = self.now.max(t);
                    }
                    self.index.handle_timeout(self.now);
                }
                Op::Answer { pick, ok, position } => {
                    if self.in_flight.is_empty() {
                        return Ok(());
                    }
                    self.now += Duration::from_millis(10);
                    let a = self.in_flight.remove(pick % self.in_flight.len());
                    match a {
                        Action::Probe { node, .. } => self.index.handle_probe_result(
                            self.now,
                            &node,
                            ProbeResult {
                                ok: *ok,
                                replication_position: *position,
                            },
                        ),
                        Action::Push { node, version, .. } => {
                            self.index.handle_push_result(self.now, &node, version, *ok)
                        }
                        _ => {}
                    }
                }
                Op::Restart => {
                    let Some(s) = self.persisted.clone() else {
                        return Ok(());
                    };
                    self.index = Index::new(self.params.clone(), Some(s.clone()), self.now)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    self.conn = self.index.open_connection();
                    self.in_flight.clear();
                    prop_assert_eq!(self.index.snapshot(), s);
                    self.drain()?;
                    return Ok(());
                }
            }
            let persists = self.drain()?;
            let map = self.index.node_map();
            prop_assert!(
                map.version - before <= 1,
                "one step, at most one map change"
            );
            prop_assert_eq!(
                map.version - before,
                persists,
                "every change persisted once"
            );
            prop_assert!(map.partitions().is_ok());
            prop_assert_eq!(
                transitions::validate_map(map, self.index.snapshot().next_thread_type),
                Ok(())
            );
            if persists > 0 {
                prop_assert_eq!(
                    self.persisted.as_ref().map(|s| s.version),
                    Some(map.version)
                );
            }
            prop_assert_eq!(self.index.monitor_threads(self.now).len(), map.nodes.len());
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random commands, probe and push results, timeouts and restarts never produce an inconsistent map, and the
        /// version moves by exactly one per accepted map change, each persisted before it is pushed.
        #[test]
        fn random_sequences_keep_the_map_consistent(
            ops in prop::collection::vec(op(), 1..120),
            auto_activate in any::<bool>(),
        ) {
            let now = Instant::now();
            let params = IndexParams { auto_activate, ..params() };
            let mut index = Index::new(params.clone(), None, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let conn = index.open_connection();
            let mut d = Driver {
                params,
                index,
                now,
                conn,
                in_flight: Vec::new(),
                persisted: None,
                persisted_lines: BTreeMap::new(),
            };
            // Five nodes, and partition 0 with an active slave, so sequences start from a cluster worth breaking.
            let setup = (0..5)
                .map(|n| format!("node add n{n} 1"))
                .chain(["node role n0 1 master 1 0", "node role n1 1 slave 1 0", "node state n1 1 active"].map(String::from))
                .map(Op::Cmd);
            for op in setup.chain(ops) {
                d.step(&op)?;
            }
        }
    }
}
