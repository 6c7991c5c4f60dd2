//! The index servers as one Raft group (issue 12; design/index-raft.md): [`Group`] wraps tikv's raft-rs
//! `RawNode` around [`Index`], so that every index server holds the same versioned node map and only the leader acts.
//!
//! What this module owns:
//! - **The log.** A map change made by the leader's [`Index`] (its [`Action::Persist`]) becomes a Raft proposal
//!   whose entry is the whole map ([`Snapshot::encode`]); everything the index queued after it (pushes, probes,
//!   the command's reply) is held until that entry is committed and applied here. Every server applies committed
//!   entries in log order and keeps the latest map ([`Group::applied`]); an entry whose version is not newer than
//!   the applied one is not applied (and counted: [`GroupStatus::conflicts`]).
//! - **Leadership.** Only a leader whose first entry of its term is applied acts: it calls [`Index::lead`] (fresh
//!   monitors, every lease possibly running for a grace plus twice the election timeout, since a deposed leader
//!   may grant renewals until its check-quorum notices). A server that stops leading calls [`Index::follow`] at
//!   once, answers the held replies with an error and drops the held pushes: it never pushes a map that is not
//!   committed, and a deposed leader cannot commit anything. raft-rs runs with pre-vote and check-quorum.
//! - **Who answers what.** Followers answer reads from the applied map; map-changing commands are forwarded to the
//!   leader ([`Output::Forward`]), except on a connection from another index server (no forwarding loops);
//!   `node session` and `node lease` are refused with [`redirect_line`], which our nodes follow.
//! - **Membership.** `index add|remove <host:port>` become raft-rs configuration changes; a member's id is the
//!   64-bit FNV-1a hash of its `host:port` ([`member_id`]), so every server derives the same ids without
//!   coordination, and the addresses travel in the changes' context and in snapshots.
//! - **Durability as data.** Entries, hard state, configuration and snapshots go out as [`Output::Store`] batches of
//!   [`KvOp`]s (written atomically and synced before any later output); [`Group::new`] takes back what was stored.
//!   The log is compacted into a snapshot (the map and the members) every [`COMPACT_EVERY`] applied entries.
//! - **Time and chance as inputs.** Ticks come from [`Group::handle_timeout`]; the election timeout is drawn from a
//!   generator seeded by [`Group::new`]'s `seed` (raft-rs's own draw is overwritten), so a run is reproducible.
//!
//! Bootstrap: a server with an empty store starts the group with the configured members (all of them must be
//! given the same list), at a snapshot of index 1 holding the empty map, so that a server added later (started with
//! `join`: empty configuration, it waits for the leader) always catches up from a snapshot. A map persisted by a
//! single index server of an earlier release ([`Group::new`]'s `legacy`) is proposed by that server once it leads
//! a group whose map is still empty.
//!
//! Assumptions, written down: Raft messages come only from authenticated index servers (the driver's `index peer`
//! handshake; raft-rs trusts its peers and may panic on a corrupted message); clock rates drift as
//! `crate::node::session` allows.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot as RaftSnapshot,
};
use raft::{GetEntriesContext, RaftState, RawNode, StateRole, Storage};
use rand::{Rng, SeedableRng};

use super::kv::KvOp;
use super::{Action, CommandOutcome, ConnId, Index, IndexError, IndexParams, Snapshot, ThreadRow};
use crate::node_map::NodeMap;
use crate::protocol::admin::IndexCommand;
use crate::protocol::{ErrorReply, Reply};

/// Election timeout in ticks: with check-quorum a follower refuses to (pre-)vote while it heard from a leader
/// within this many ticks.
pub const ELECTION_TICKS: usize = 10;
/// A follower's timeout before it campaigns, drawn from this range (in ticks): past the others' check-quorum lease by
/// two ticks (ticks are not in phase across processes, and a busy process ticks late), so that the first to
/// campaign after a leader died finds the others out of it.
pub const FOLLOWER_TIMEOUT_TICKS: std::ops::Range<usize> = ELECTION_TICKS + 2..ELECTION_TICKS + 8;
const _: () = assert!(
    FOLLOWER_TIMEOUT_TICKS.end <= 2 * ELECTION_TICKS,
    "raft-rs draws below 2 x election_tick"
);
/// A (pre-)candidate's timeout before it tries again, drawn from this range: short, since a failed round (two
/// survivors that split the vote) means no leader, and a second draw seldom splits again.
pub const CANDIDATE_RETRY_TICKS: std::ops::Range<usize> = 2..7;
/// Heartbeat interval in ticks.
pub const HEARTBEAT_TICKS: usize = 2;
/// `index-election-timeout`'s default: a tick every 40 ms, a heartbeat every 80 ms, a dead leader replaced 0.48 to
/// 0.72 s after its last heartbeat (a split vote adds 0.08 to 0.28 s).
pub const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(400);
/// Applied entries between two compactions of the log into a snapshot.
pub const COMPACT_EVERY: u64 = 64;
/// The first line of a group snapshot's data.
pub const SNAPSHOT_MAGIC: &str = "flare-index-group 1";

/// Where this server stands in its group and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    /// This server's `host:port`, as the members list spells it.
    pub me: String,
    /// The initial members (`index-servers`), this server among them; empty: a group of this server alone.
    pub members: Vec<String>,
    /// Joining a running group (`index-join`): start with no configuration and wait for the leader.
    pub join: bool,
    /// `index-election-timeout`: the shortest time without a leader before a follower campaigns.
    pub election_timeout: Duration,
}

impl GroupSettings {
    /// A group of one (no `index-servers`): works as a single index server always has.
    pub fn alone(me: &str) -> Self {
        GroupSettings {
            me: me.to_owned(),
            members: Vec::new(),
            join: false,
            election_timeout: DEFAULT_ELECTION_TIMEOUT,
        }
    }

    /// The group of a `flarei` configuration: `index-servers`, `index-join`, `index-election-timeout`; this server is
    /// the entry `server-name:server-port`, or, with no `server-name`, the one entry on `server-port`.
    pub fn from_config(c: &crate::config::IndexConfig) -> Result<GroupSettings, String> {
        let members: Vec<String> = c.index_servers.iter().map(ToString::to_string).collect();
        let me = match (c.server_name.is_empty(), members.is_empty()) {
            (false, _) => format!("{}:{}", c.server_name, c.server_port),
            (true, true) => format!("localhost:{}", c.server_port),
            (true, false) => {
                let mine: Vec<&String> = c
                    .index_servers
                    .iter()
                    .zip(&members)
                    .filter(|(s, _)| s.port == c.server_port)
                    .map(|(_, m)| m)
                    .collect();
                match mine.as_slice() {
                    [one] => (*one).clone(),
                    _ => {
                        return Err(format!(
                            "index-servers ({}) has {} entries on port {}: set server-name to this server's entry",
                            members.join(","),
                            mine.len(),
                            c.server_port
                        ))
                    }
                }
            }
        };
        if !members.is_empty() && !members.contains(&me) {
            return Err(format!(
                "{me} (server-name:server-port) is not in index-servers ({})",
                members.join(",")
            ));
        }
        Ok(GroupSettings {
            me,
            members,
            join: c.index_join,
            election_timeout: c.index_election_timeout,
        })
    }

    fn tick(&self) -> Duration {
        (self.election_timeout / ELECTION_TICKS as u32).max(Duration::from_millis(1))
    }
}

/// A member's Raft id: FNV-1a (64 bit) of its `host:port`, never 0 (raft-rs's "none").
pub fn member_id(addr: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(addr.as_bytes());
    h.finish().max(1)
}

/// The refusal of what only the leader does (`node session`, `node lease`, a write that cannot be forwarded).
pub fn redirect_line(leader: Option<&str>) -> String {
    match leader {
        Some(l) => format!("not the index leader; leader is {l}"),
        None => "not the index leader; no leader elected yet".to_owned(),
    }
}

/// A Raft role as `stats` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRole {
    /// Leads (and, once [`GroupStatus::acting`], acts).
    Leader,
    /// Follows a leader, or waits for one.
    Follower,
    /// Campaigns (pre-vote or vote).
    Candidate,
}

impl GroupRole {
    /// `leader`, `follower` or `candidate`.
    pub fn name(self) -> &'static str {
        match self {
            GroupRole::Leader => "leader",
            GroupRole::Follower => "follower",
            GroupRole::Candidate => "candidate",
        }
    }
}

/// What `stats` and the simulators read of a group member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// Raft role.
    pub role: GroupRole,
    /// Raft term.
    pub term: u64,
    /// The leader's address, when known.
    pub leader: Option<String>,
    /// The last applied log index.
    pub applied: u64,
    /// The voters' addresses, sorted.
    pub members: Vec<String>,
    /// Leading and acting: monitoring, failing over, pushing.
    pub acting: bool,
    /// Committed map entries not newer than the applied map (never expected; the simulators check it is 0).
    pub conflicts: u64,
}

/// What the driver must do, in queue order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write these operations as one atomic, synced batch before performing any later output. A failure is fatal.
    Store(Vec<KvOp>),
    /// Send this Raft message to index server `to` (`host:port`); it may be lost.
    Send {
        /// The member's address.
        to: String,
        /// The encoded message (`index raft <len>` framing).
        bytes: Vec<u8>,
    },
    /// The committed map is now this one (write it as the map file: an operator's copy; the log is the truth).
    Applied(Snapshot),
    /// An action of the leader's [`Index`] (probe, push, close; never `Persist`).
    Index(Action),
    /// The reply to a command of `conn` that was held (see [`Group::handle_command`]).
    Reply {
        /// The connection.
        conn: ConnId,
        /// Its reply.
        outcome: CommandOutcome,
    },
    /// Send `command` to the leader `to` (as an index peer) and relay its reply to `conn`; if the leader does not
    /// answer, reply `SERVER_ERROR` saying so.
    Forward {
        /// The connection waiting for the reply.
        conn: ConnId,
        /// The leader's address.
        to: String,
        /// The command.
        command: IndexCommand,
    },
    /// Stop the process: the group cannot go on (reason).
    Fatal(String),
}

/// Why a group cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The index refused its settings or the stored map.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// This server is not in its own members list.
    #[error("{me} is not in index-servers ({members}): set server-name and server-port to this server's entry")]
    NotAMember {
        /// This server.
        me: String,
        /// The list.
        members: String,
    },
    /// What was stored cannot be read.
    #[error("index group store: {0}")]
    Store(String),
    /// raft-rs refused to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// Held behind a proposal until its entry is applied.
#[derive(Debug)]
enum Held {
    /// The proposal at this log index and term.
    Gate { index: u64, term: u64 },
    /// An output to release once every gate before it has passed.
    Out(Output),
}

/// A leader's progress to acting.
#[derive(Clone, Copy, Debug)]
struct Lead {
    term: u64,
    /// The index of its term's first entry: it acts once that is applied.
    first: u64,
    acting: bool,
}

/// The in-memory Raft log raft-rs reads (mirrored to the driver's store through [`Output::Store`]).
#[derive(Debug, Default)]
struct Log {
    hard: HardState,
    conf: ConfState,
    snap: RaftSnapshot,
    /// `entries[i].index == snap index + 1 + i`.
    entries: Vec<Entry>,
    /// A snapshot of the applied state (map, members, configuration) for a follower that needs one: always as new
    /// as what was applied, so that it holds the follower's own membership.
    fresh: Option<RaftSnapshot>,
}

impl Log {
    fn snap_index(&self) -> u64 {
        self.snap.get_metadata().index
    }
    fn last(&self) -> u64 {
        self.snap_index() + self.entries.len() as u64
    }
}

impl Storage for Log {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let first = self.snap_index() + 1;
        let mut out = self.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snap = self.snap_index();
        if idx == snap {
            return Ok(self.snap.get_metadata().term);
        }
        if idx < snap {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        match self.entries.get((idx - snap - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(raft::StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<RaftSnapshot> {
        Ok(self.fresh.clone().unwrap_or_else(|| self.snap.clone()))
    }
}

/// Store keys.
mod keys {
    pub const HARD: &[u8] = b"raft/hard";
    pub const CONF: &[u8] = b"raft/conf";
    pub const SNAP: &[u8] = b"raft/snap";
    pub const BOOK: &[u8] = b"raft/book";
    pub const ENTRY: &[u8] = b"raft/entry/";

    pub fn entry(index: u64) -> Vec<u8> {
        let mut k = ENTRY.to_vec();
        k.extend_from_slice(&index.to_be_bytes());
        k
    }
}

/// A group snapshot's data: the members' addresses and the map.
fn encode_snapshot_data(book: &BTreeMap<u64, String>, map: &Snapshot) -> Vec<u8> {
    let members: Vec<&str> = book.values().map(String::as_str).collect();
    let mut out = format!("{SNAPSHOT_MAGIC}\nmembers {}\n", members.join(",")).into_bytes();
    out.extend_from_slice(&map.encode());
    out
}

/// Reads [`encode_snapshot_data`]'s output; `Err` on anything else (never panics).
pub fn decode_snapshot_data(bytes: &[u8]) -> Result<(Vec<String>, Snapshot), String> {
    let mut rest = bytes;
    let mut line = || -> Result<&[u8], String> {
        let at = memchr::memchr(b'\n', rest).ok_or("group snapshot: truncated")?;
        let (l, r) = rest.split_at(at);
        rest = &r[1..];
        Ok(l)
    };
    if line()? != SNAPSHOT_MAGIC.as_bytes() {
        return Err("group snapshot: bad first line".into());
    }
    let members = line()?
        .strip_prefix(b"members ")
        .ok_or("group snapshot: no members line")?;
    let members = std::str::from_utf8(members).map_err(|_| "group snapshot: members not text")?;
    let members: Vec<String> = members
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    let map = Snapshot::decode(rest).map_err(|e| format!("group snapshot: {e}"))?;
    Ok((members, map))
}

/// One index server of the group. See the module header for what it decides; the driver contract is
/// [`Index`]'s with these differences: drain [`Group::poll_output`] (not `poll_action`) after every call, in order;
/// a command's reply may come later as [`Output::Reply`] or be forwarded ([`Output::Forward`]).
pub struct Group {
    settings: GroupSettings,
    id: u64,
    raw: RawNode<Log>,
    index: Index,
    /// Every member ever known: id → address.
    book: BTreeMap<u64, String>,
    applied: Snapshot,
    applied_index: u64,
    lead: Option<Lead>,
    held: VecDeque<Held>,
    outputs: VecDeque<Output>,
    next_tick: Instant,
    rng: rand::rngs::SmallRng,
    /// (term, role, leader) when the election timeout was last drawn.
    drawn: (u64, StateRole, u64),
    /// Connections that said `index peer`: from another index server.
    peers: BTreeMap<ConnId, String>,
    /// A configuration change in flight: its log index and term, and the connection waiting for it.
    conf_change: Option<(u64, u64, ConnId)>,
    /// A map of an earlier release's single index server, proposed once this server leads an empty group.
    legacy: Option<Snapshot>,
    conflicts: u64,
    /// Members a snapshot was sent to in the current Ready (reported after `advance`).
    snapshots_sent: Vec<u64>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("me", &self.settings.me)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// A slog drain that hands raft-rs's log lines to `tracing` (target `raft`).
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

impl Group {
    /// Starts from what the store holds (`stored`: every key and value, as [`Output::Store`] wrote them), or
    /// bootstraps (see the module header). `legacy`: the map file of an earlier single index server, if any.
    /// `seed` seeds the election timeouts.
    pub fn new(
        params: IndexParams,
        settings: GroupSettings,
        stored: Vec<(Vec<u8>, Vec<u8>)>,
        legacy: Option<Snapshot>,
        seed: u64,
        now: Instant,
    ) -> Result<Group, GroupError> {
        let members: Vec<String> = match settings.members.is_empty() {
            true => vec![settings.me.clone()],
            false => settings.members.clone(),
        };
        if !members.contains(&settings.me) {
            return Err(GroupError::NotAMember {
                me: settings.me.clone(),
                members: members.join(","),
            });
        }
        let id = member_id(&settings.me);
        let mut book: BTreeMap<u64, String> =
            members.iter().map(|m| (member_id(m), m.clone())).collect();
        let empty_map = Snapshot {
            version: 0,
            next_thread_type: super::MapState::default().next_thread_type,
            nodes: Vec::new(),
            partition: params.partition,
        };
        let mut log = Log::default();
        let mut bootstrap = Vec::new();
        if stored.is_empty() {
            if !settings.join {
                // Index 1, term 1: the same on every bootstrapping member; a joiner always gets a snapshot.
                let mut conf = ConfState::default();
                conf.voters = book.keys().copied().collect();
                let mut meta = raft::eraftpb::SnapshotMetadata::default();
                meta.index = 1;
                meta.term = 1;
                meta.set_conf_state(conf.clone());
                log.snap.set_metadata(meta);
                log.snap.data = encode_snapshot_data(&book, &empty_map);
                log.conf = conf;
                log.hard.term = 1;
                log.hard.commit = 1;
                bootstrap = vec![
                    KvOp::Put {
                        key: keys::SNAP.to_vec(),
                        value: log.snap.encode_to_vec(),
                    },
                    KvOp::Put {
                        key: keys::CONF.to_vec(),
                        value: log.conf.encode_to_vec(),
                    },
                    KvOp::Put {
                        key: keys::HARD.to_vec(),
                        value: log.hard.encode_to_vec(),
                    },
                ];
            }
        } else {
            restore(&mut log, &mut book, stored)?;
        }
        let mut applied = empty_map;
        if !log.snap.data.is_empty() {
            let (addrs, map) = decode_snapshot_data(&log.snap.data).map_err(GroupError::Store)?;
            for a in addrs {
                book.insert(member_id(&a), a);
            }
            applied = map;
        }
        let applied_index = log.snap_index();
        let config = raft::Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied: applied_index,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let logger = slog::Logger::root(TracingDrain, slog::o!("raft_id" => id));
        let raw =
            RawNode::new(&config, log, &logger).map_err(|e| GroupError::Raft(e.to_string()))?;
        let mut index = Index::new(params, Some(applied.clone()), now)?;
        index.follow(&applied);
        let mut group = Group {
            id,
            raw,
            index,
            book,
            applied,
            applied_index,
            lead: None,
            held: VecDeque::new(),
            outputs: VecDeque::new(),
            next_tick: now + settings.tick(),
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
            drawn: (u64::MAX, StateRole::Follower, u64::MAX),
            peers: BTreeMap::new(),
            conf_change: None,
            legacy: legacy.filter(|l| !l.nodes.is_empty()),
            conflicts: 0,
            snapshots_sent: Vec::new(),
            settings,
        };
        if !bootstrap.is_empty() {
            group.outputs.push_back(Output::Store(bootstrap));
            group.store_book();
        }
        group.draw_timeout();
        // A group of one need not wait for an election timeout.
        if group.voters().as_slice() == [id] {
            let _ = group.raw.campaign();
        }
        group.process(now);
        Ok(group)
    }

    // -----------------------------------------------------------------------------------------------------------------
    // Inputs
    // -----------------------------------------------------------------------------------------------------------------

    /// Registers a client connection (see [`Index::open_connection`]).
    pub fn open_connection(&mut self) -> ConnId {
        self.index.open_connection()
    }

    /// Forgets a closed connection.
    pub fn close_connection(&mut self, conn: ConnId) {
        self.peers.remove(&conn);
        self.index.close_connection(conn);
    }

    /// Runs one command from `conn`. `Some`: the reply, to write once the outputs queued so far are performed.
    /// `None`: the reply comes later as [`Output::Reply`], or the command is forwarded ([`Output::Forward`]).
    pub fn handle_command(
        &mut self,
        now: Instant,
        conn: ConnId,
        cmd: IndexCommand,
    ) -> Option<CommandOutcome> {
        let answer = self.command(now, conn, cmd);
        self.process(now);
        answer
    }

    fn command(&mut self, now: Instant, conn: ConnId, cmd: IndexCommand) -> Option<CommandOutcome> {
        let refuse = |e: ErrorReply| {
            Some(CommandOutcome {
                reply: Reply::Error(e),
                close: false,
            })
        };
        let acting = self.acting();
        match cmd {
            IndexCommand::IndexPeer(addr) => {
                if !self.index.is_authenticated(conn) {
                    return refuse(ErrorReply::Client("authentication required".into()));
                }
                if !self.book.contains_key(&member_id(&addr)) && !self.settings.join {
                    tracing::warn!(peer = addr, "index peer not in the group refused");
                    return refuse(ErrorReply::Server(
                        format!("{addr} is not a member of this index group").into(),
                    ));
                }
                self.book.entry(member_id(&addr)).or_insert(addr.clone());
                self.peers.insert(conn, addr);
                Some(CommandOutcome::answer(Reply::Ok))
            }
            IndexCommand::IndexRaft(bytes) => {
                if !self.peers.contains_key(&conn) {
                    return Some(CommandOutcome {
                        reply: Reply::Error(ErrorReply::Client(
                            "index raft without index peer".into(),
                        )),
                        close: true,
                    });
                }
                self.step(&bytes);
                Some(CommandOutcome::answer(Reply::Nothing))
            }
            // A ping shows nothing of the map: never held behind a proposal (a peer's raft link pings, and the
            // connection reads nothing more until it is answered: the followers' acknowledgements would wait too).
            IndexCommand::Ping => Some(CommandOutcome::answer(Reply::Ok)),
            IndexCommand::IndexAdd(addr) | IndexCommand::IndexRemove(addr)
                if !self.index.is_authenticated(conn) =>
            {
                let _ = addr;
                refuse(ErrorReply::Client("authentication required".into()))
            }
            cmd @ (IndexCommand::IndexAdd(_) | IndexCommand::IndexRemove(_)) if !acting => {
                self.forward_or_redirect(conn, cmd)
            }
            IndexCommand::IndexAdd(addr) => self.change_members(conn, addr, true),
            IndexCommand::IndexRemove(addr) => self.change_members(conn, addr, false),
            IndexCommand::NodeSession(_) | IndexCommand::NodeLease { .. } if !acting => refuse(
                ErrorReply::Server(redirect_line(self.leader().as_deref()).into()),
            ),
            cmd if cmd.changes_map() && !acting => {
                if !self.index.is_authenticated(conn) {
                    return refuse(ErrorReply::Client("authentication required".into()));
                }
                self.forward_or_redirect(conn, cmd)
            }
            cmd if acting => {
                let outcome = self.index.handle_command(now, conn, cmd);
                let outcome = match self.collect_index_actions() {
                    true => outcome,
                    false => CommandOutcome::answer(Reply::Error(ErrorReply::Server(
                        "the change was not proposed: index leadership is moving; try again".into(),
                    ))),
                };
                self.hold(Output::Reply { conn, outcome });
                None
            }
            // A follower's reads: from the applied map.
            cmd => {
                let outcome = self.index.handle_command(now, conn, cmd);
                self.collect_index_actions();
                Some(outcome)
            }
        }
    }

    fn forward_or_redirect(
        &mut self,
        conn: ConnId,
        command: IndexCommand,
    ) -> Option<CommandOutcome> {
        match self.leader() {
            Some(to) if !self.peers.contains_key(&conn) && to != self.settings.me => {
                self.outputs
                    .push_back(Output::Forward { conn, to, command });
                None
            }
            leader => Some(CommandOutcome::answer(Reply::Error(ErrorReply::Server(
                redirect_line(leader.as_deref()).into(),
            )))),
        }
    }

    /// `index add|remove`: a configuration change, answered once applied.
    fn change_members(&mut self, conn: ConnId, addr: String, add: bool) -> Option<CommandOutcome> {
        let refuse = |why: String| {
            Some(CommandOutcome::answer(Reply::Error(ErrorReply::Server(
                why.into(),
            ))))
        };
        if self.conf_change.is_some() {
            return refuse("a membership change is in progress; try again".into());
        }
        let id = member_id(&addr);
        let voters = self.voters();
        if add == voters.contains(&id) {
            return refuse(match add {
                true => format!("{addr} is already a member"),
                false => format!("{addr} is not a member"),
            });
        }
        if !add && id == self.id {
            // raft-rs does not handle a leader removing itself: hand leadership over first.
            let next = voters.iter().copied().find(|v| *v != self.id);
            if let Some(next) = next {
                self.raw.transfer_leader(next);
            }
            return refuse(format!(
                "{addr} is the leader; leadership is being handed over, send the command again"
            ));
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(match add {
            true => ConfChangeType::AddNode,
            false => ConfChangeType::RemoveNode,
        });
        cc.node_id = id;
        cc.context = addr.clone().into_bytes();
        if let Err(e) = self.raw.propose_conf_change(Vec::new(), cc) {
            return refuse(format!("membership change refused: {e}"));
        }
        self.conf_change = Some((
            self.raw.raft.raft_log.last_index(),
            self.raw.raft.term,
            conn,
        ));
        tracing::info!(member = addr, add, "membership change proposed");
        None
    }

    /// A Raft message from another index server (bytes of `index raft`); undecodable or misaddressed ones are
    /// dropped.
    fn step(&mut self, bytes: &[u8]) {
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable raft message dropped");
                return;
            }
        };
        // The generated getters panic on an enum value they do not know (raft-rs calls them too).
        let known = MessageType::from_i32(msg.msg_type).is_some()
            && msg
                .entries
                .iter()
                .all(|e| EntryType::from_i32(e.entry_type).is_some());
        if !known {
            tracing::warn!("raft message with an unknown message or entry type dropped");
            return;
        }
        if msg.to != self.id || !self.book.contains_key(&msg.from) {
            tracing::warn!(
                to = msg.to,
                from = msg.from,
                "raft message for another member dropped"
            );
            return;
        }
        let mut msg = msg;
        let last = self.raw.raft.raft_log.last_index();
        let mut wiped = None;
        if msg.get_msg_type() == MessageType::MsgHeartbeat && msg.commit > last {
            // A member whose data directory was wiped restarts behind what the leader knows it had: raft-rs stops
            // the process on a heartbeat committing past its log, and the leader, counting this member as holding
            // its log, would send it nothing. The commit a heartbeat carries is advisory: take it as far as the log
            // goes, and ask the leader for a snapshot of the committed map.
            tracing::warn!(
                commit = msg.commit,
                last,
                "the leader knows this server's log went further than it does (data directory lost?): asking for a snapshot"
            );
            wiped = Some((msg.from, msg.commit));
            msg.commit = last;
        }
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(error = %e, "raft message refused");
        }
        if let Some((leader, commit)) = wiped {
            // The form raft-rs's own snapshot request takes (a rejected append naming the index the leader
            // believes this member holds), which it can send only when its last entry is of the current term.
            let mut ask = Message::default();
            ask.set_msg_type(MessageType::MsgAppendResponse);
            ask.to = leader;
            ask.from = self.id;
            ask.term = self.raw.raft.term;
            ask.index = commit;
            ask.reject = true;
            ask.reject_hint = last;
            ask.request_snapshot = commit;
            self.send(vec![ask]);
        }
    }

    /// A Raft message from another index server, outside a command (the simulators' path).
    pub fn handle_raft(&mut self, now: Instant, bytes: &[u8]) {
        self.step(bytes);
        self.process(now);
    }

    /// See [`Index::handle_probe_result`] (ignored unless acting).
    pub fn handle_probe_result(&mut self, now: Instant, node: &str, result: super::ProbeResult) {
        if self.acting() {
            self.index.handle_probe_result(now, node, result);
            self.collect_index_actions();
        }
        self.process(now);
    }

    /// See [`Index::handle_push_result`] (ignored unless acting).
    pub fn handle_push_result(&mut self, now: Instant, node: &str, version: u64, ok: bool) {
        if self.acting() {
            self.index.handle_push_result(now, node, version, ok);
            self.collect_index_actions();
        }
        self.process(now);
    }

    /// See [`Index::handle_session_lost`].
    pub fn handle_session_lost(&mut self, now: Instant, node: &str, conn: ConnId, by_peer: bool) {
        if self.acting() {
            self.index.handle_session_lost(now, node, conn, by_peer);
            self.collect_index_actions();
        }
        self.process(now);
    }

    /// Time passed: Raft ticks that are due, then the index's timers (when acting).
    pub fn handle_timeout(&mut self, now: Instant) {
        let tick = self.settings.tick();
        let mut ticks = 0;
        // After a long stall, at most two ticks at once: a stalled process must not call an election at once.
        while now >= self.next_tick && ticks < 2 {
            self.raw.tick();
            self.next_tick += tick;
            ticks += 1;
        }
        if now >= self.next_tick {
            self.next_tick = now + tick;
        }
        if self.acting() {
            self.index.handle_timeout(now);
            self.collect_index_actions();
        }
        self.process(now);
    }

    /// Takes new index settings (SIGHUP), see [`Index::reconfigure`].
    pub fn reconfigure(&mut self, now: Instant, params: IndexParams) -> Result<(), IndexError> {
        let r = self.index.reconfigure(now, params);
        self.collect_index_actions();
        self.process(now);
        r
    }

    // -----------------------------------------------------------------------------------------------------------------
    // Outputs and reads
    // -----------------------------------------------------------------------------------------------------------------

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next tick, or an index timer when acting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let index = self.acting().then(|| self.index.poll_timeout()).flatten();
        Some(index.map_or(self.next_tick, |t| t.min(self.next_tick)))
    }

    /// Role, term, leader, applied index, members.
    pub fn status(&self) -> GroupStatus {
        GroupStatus {
            role: match self.raw.raft.state {
                StateRole::Leader => GroupRole::Leader,
                StateRole::Follower => GroupRole::Follower,
                StateRole::Candidate | StateRole::PreCandidate => GroupRole::Candidate,
            },
            term: self.raw.raft.term,
            leader: self.leader(),
            applied: self.applied_index,
            members: {
                let mut m: Vec<String> = self
                    .voters()
                    .iter()
                    .map(|v| self.book.get(v).cloned().unwrap_or_else(|| format!("#{v}")))
                    .collect();
                m.sort();
                m
            },
            acting: self.acting(),
            conflicts: self.conflicts,
        }
    }

    /// The map as this server shows it: the leader's latest (possibly not yet committed; its replies wait), or the
    /// applied one.
    pub fn node_map(&self) -> &NodeMap {
        self.index.node_map()
    }

    /// The last applied map.
    pub fn applied(&self) -> &Snapshot {
        &self.applied
    }

    /// Who answers `stats threads`: `None` this server (it leads, or knows no leader), or the leader whose answer a
    /// follower relays, since the node monitors run there only.
    pub fn threads_from(&self) -> Option<String> {
        match self.acting() {
            true => None,
            false => self.leader().filter(|l| *l != self.settings.me),
        }
    }

    /// See [`Index::monitor_threads`] (none unless acting).
    pub fn monitor_threads(&self, now: Instant) -> Vec<ThreadRow> {
        self.index.monitor_threads(now)
    }

    /// See [`Index::lease_ends_at`].
    pub fn lease_ends_at(&self, node: &str) -> Instant {
        self.index.lease_ends_at(node)
    }

    /// The index settings in effect.
    pub fn params(&self) -> &IndexParams {
        self.index.params()
    }

    /// This server's address.
    pub fn me(&self) -> &str {
        &self.settings.me
    }

    // -----------------------------------------------------------------------------------------------------------------
    // Raft plumbing
    // -----------------------------------------------------------------------------------------------------------------

    /// How much longer than a restart's grace a new leader assumes leases may run: a deposed leader notices it
    /// lost its quorum (check-quorum) within two election timeouts of its last contact, and its successor was elected
    /// at least one after it, so it may have granted renewals up to one election timeout into the new term; twice
    /// that, for margin. None in a group of one.
    fn takeover_wait(&self) -> Duration {
        match self.voters().as_slice() == [self.id] {
            true => Duration::ZERO,
            false => 2 * self.settings.election_timeout,
        }
    }

    fn acting(&self) -> bool {
        self.lead.is_some_and(|l| l.acting)
    }

    fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        v.sort_unstable();
        v
    }

    fn leader(&self) -> Option<String> {
        match self.raw.raft.leader_id {
            raft::INVALID_ID => None,
            id => self.book.get(&id).cloned(),
        }
    }

    /// Moves the index's queued actions out: a `Persist` becomes a proposal, the rest is held behind it. `false`:
    /// raft-rs refused a proposal (leadership is moving), and the index went back to the applied map.
    fn collect_index_actions(&mut self) -> bool {
        let mut proposed = true;
        while let Some(action) = self.index.poll_action() {
            match action {
                Action::Persist(snapshot) => {
                    let bytes = snapshot.encode();
                    match self.raw.propose(Vec::new(), bytes) {
                        Ok(()) => {
                            let index = self.raw.raft.raft_log.last_index();
                            let term = self.raw.raft.term;
                            self.held.push_back(Held::Gate { index, term });
                        }
                        Err(e) => {
                            // Leadership is going (a transfer): undo by following the applied map.
                            tracing::warn!(error = %e, "map change not proposed");
                            self.abandon("the index leader could not propose the change");
                            proposed = false;
                        }
                    }
                }
                other => self.hold(Output::Index(other)),
            }
        }
        proposed
    }

    fn hold(&mut self, out: Output) {
        match self.held.is_empty() {
            true => self.outputs.push_back(out),
            false => self.held.push_back(Held::Out(out)),
        }
    }

    /// Releases held outputs up to the first gate that has not passed.
    fn release(&mut self) {
        while let Some(Held::Out(_)) = self.held.front() {
            if let Some(Held::Out(o)) = self.held.pop_front() {
                self.outputs.push_back(o);
            }
        }
    }

    /// Stops acting: the held replies are refused, the held pushes dropped, the index follows the applied map.
    fn abandon(&mut self, why: &str) {
        for h in std::mem::take(&mut self.held) {
            match h {
                Held::Out(Output::Reply { conn, outcome }) => {
                    let reply = match outcome.reply {
                        Reply::Error(e) => Reply::Error(e),
                        _ => Reply::Error(ErrorReply::Server(
                            format!("{why}; the change may still be applied by the new leader: check the map")
                                .into(),
                        )),
                    };
                    self.outputs.push_back(Output::Reply {
                        conn,
                        outcome: CommandOutcome {
                            reply,
                            close: outcome.close,
                        },
                    });
                }
                Held::Out(Output::Index(Action::Close(c))) => {
                    self.outputs.push_back(Output::Index(Action::Close(c)))
                }
                _ => {}
            }
        }
        if let Some((_, _, conn)) = self.conf_change.take() {
            self.outputs.push_back(Output::Reply {
                conn,
                outcome: CommandOutcome::answer(Reply::Error(ErrorReply::Server(
                    format!("{why}; the membership change may still be applied: check `stats`")
                        .into(),
                ))),
            });
        }
        self.index.follow(&self.applied);
    }

    fn draw_timeout(&mut self) {
        let r = &self.raw.raft;
        let now = (r.term, r.state, r.leader_id);
        if now != self.drawn {
            self.drawn = now;
            match r.state {
                // raft-rs draws no timeout below ELECTION_TICKS: the retry is the time left to it.
                StateRole::Candidate | StateRole::PreCandidate => {
                    let retry = self.rng.random_range(CANDIDATE_RETRY_TICKS);
                    self.raw
                        .raft
                        .set_randomized_election_timeout(ELECTION_TICKS);
                    self.raw.raft.election_elapsed = ELECTION_TICKS - retry;
                }
                _ => {
                    let t = self.rng.random_range(FOLLOWER_TIMEOUT_TICKS);
                    self.raw.raft.set_randomized_election_timeout(t);
                }
            }
        }
    }

    /// Follows leadership changes, then handles every Ready raft-rs has.
    fn process(&mut self, now: Instant) {
        loop {
            self.observe(now);
            if !self.raw.has_ready() {
                break;
            }
            self.ready(now);
        }
        self.release();
    }

    fn observe(&mut self, now: Instant) {
        self.draw_timeout();
        let (term, leader) = (self.raw.raft.term, self.raw.raft.state == StateRole::Leader);
        match self.lead {
            Some(l) if !leader || l.term != term => {
                tracing::info!(term, "index leadership lost");
                self.lead = None;
                self.abandon("the index server lost its leadership before the change committed");
            }
            None if leader => {
                let first = self.raw.raft.raft_log.last_index();
                tracing::info!(
                    term,
                    first,
                    "index leader elected; acting once its first entry applies"
                );
                self.lead = Some(Lead {
                    term,
                    first,
                    acting: false,
                });
                self.maybe_act(now);
            }
            _ => {}
        }
    }

    fn maybe_act(&mut self, now: Instant) {
        let Some(l) = self.lead.as_mut() else { return };
        if l.acting || self.applied_index < l.first {
            return;
        }
        l.acting = true;
        tracing::info!(
            term = l.term,
            version = self.applied.version,
            "index leader acting"
        );
        self.index.follow(&self.applied);
        let extra = self.takeover_wait();
        self.index.lead(now, extra);
        if self.applied.nodes.is_empty() && self.applied.version == 0 {
            if let Some(legacy) = self.legacy.take() {
                tracing::info!(
                    version = legacy.version,
                    "taking the map of the single index server"
                );
                self.index.follow(&legacy);
                self.index.lead(now, extra);
                let bytes = legacy.encode();
                if self.raw.propose(Vec::new(), bytes).is_ok() {
                    let index = self.raw.raft.raft_log.last_index();
                    self.held.push_front(Held::Gate {
                        index,
                        term: self.raw.raft.term,
                    });
                }
            }
        }
        self.collect_index_actions();
    }

    fn ready(&mut self, now: Instant) {
        let mut rd = self.raw.ready();
        let mut ops = Vec::new();
        let mut messages = rd.take_messages();
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install_snapshot(snap, &mut ops);
        }
        if !rd.entries().is_empty() {
            let entries = rd.entries().clone();
            self.append(entries, &mut ops);
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().hard = hs.clone();
            ops.push(KvOp::Put {
                key: keys::HARD.to_vec(),
                value: hs.encode_to_vec(),
            });
        }
        if !ops.is_empty() {
            self.outputs.push_back(Output::Store(ops));
        }
        messages.extend(rd.take_persisted_messages());
        self.send(messages);
        let committed = rd.take_committed_entries();
        self.apply(now, committed);
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let store = self.raw.mut_store();
            store.hard.commit = commit;
            let value = store.hard.encode_to_vec();
            self.outputs.push_back(Output::Store(vec![KvOp::Put {
                key: keys::HARD.to_vec(),
                value,
            }]));
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(now, committed);
        self.raw.advance_apply();
        self.compact();
        self.refresh_snapshot();
        // A snapshot travels inside its message: reported sent at once (raft-rs keeps the member paused until it
        // hears). If it is lost, the member's answer to the next append makes the leader send another.
        for to in std::mem::take(&mut self.snapshots_sent) {
            self.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
        }
    }

    /// Keeps [`Log::fresh`] at the applied index.
    fn refresh_snapshot(&mut self) {
        let at = self.applied_index;
        let store = self.raw.store();
        let current = store.fresh.as_ref().unwrap_or(&store.snap);
        if current.get_metadata().index == at {
            return;
        }
        let Ok(term) = store.term(at) else { return };
        let conf = store.conf.clone();
        let snap = self.make_snapshot(at, term, conf);
        self.raw.mut_store().fresh = Some(snap);
    }

    fn make_snapshot(&self, at: u64, term: u64, conf: ConfState) -> RaftSnapshot {
        let mut meta = raft::eraftpb::SnapshotMetadata::default();
        meta.index = at;
        meta.term = term;
        meta.set_conf_state(conf);
        let mut snap = RaftSnapshot::default();
        snap.set_metadata(meta);
        snap.data = encode_snapshot_data(&self.book, &self.applied);
        snap
    }

    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
            match self.book.get(&m.to) {
                Some(to) => self.outputs.push_back(Output::Send {
                    to: to.clone(),
                    bytes: m.encode_to_vec(),
                }),
                None => tracing::warn!(to = m.to, "raft message to an unknown member dropped"),
            }
        }
    }

    fn append(&mut self, entries: Vec<Entry>, ops: &mut Vec<KvOp>) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        let store = self.raw.mut_store();
        let snap = store.snap_index();
        if first <= snap {
            return;
        }
        store.entries.truncate((first - snap - 1) as usize);
        ops.push(KvOp::DeleteRange {
            from: keys::entry(first),
            to: keys::entry(u64::MAX),
        });
        for e in entries {
            ops.push(KvOp::Put {
                key: keys::entry(e.index),
                value: e.encode_to_vec(),
            });
            store.entries.push(e);
        }
    }

    fn install_snapshot(&mut self, snap: RaftSnapshot, ops: &mut Vec<KvOp>) {
        let (addrs, map) = match decode_snapshot_data(&snap.data) {
            Ok(d) => d,
            Err(e) => {
                self.outputs
                    .push_back(Output::Fatal(format!("snapshot from the leader: {e}")));
                return;
            }
        };
        if map.partition != self.index.params().partition {
            self.outputs.push_back(Output::Fatal(format!(
                "the group's partition parameters ({:?}) differ from this server's configuration ({:?})",
                map.partition,
                self.index.params().partition
            )));
            return;
        }
        for a in addrs {
            self.book.insert(member_id(&a), a);
        }
        let meta = snap.get_metadata().clone();
        let store = self.raw.mut_store();
        store.conf = meta.get_conf_state().clone();
        store.snap = snap;
        store.entries.clear();
        store.hard.commit = store.hard.commit.max(meta.index);
        store.hard.term = store.hard.term.max(meta.term);
        ops.push(KvOp::Put {
            key: keys::SNAP.to_vec(),
            value: store.snap.encode_to_vec(),
        });
        ops.push(KvOp::Put {
            key: keys::CONF.to_vec(),
            value: store.conf.encode_to_vec(),
        });
        ops.push(KvOp::DeleteRange {
            from: keys::entry(0),
            to: keys::entry(u64::MAX),
        });
        ops.push(self.book_op());
        self.applied_index = meta.index;
        self.set_applied(map);
    }

    fn apply(&mut self, now: Instant, entries: Vec<Entry>) {
        for e in entries {
            if e.index <= self.applied_index {
                continue;
            }
            self.applied_index = e.index;
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {}
                EntryType::EntryNormal => match Snapshot::decode(&e.data) {
                    Ok(map) if map.version > self.applied.version => self.set_applied(map),
                    Ok(map) => {
                        self.conflicts += 1;
                        tracing::error!(
                            index = e.index,
                            version = map.version,
                            applied = self.applied.version,
                            "committed map not newer than the applied one: not applied"
                        );
                    }
                    Err(err) => self.outputs.push_back(Output::Fatal(format!(
                        "committed entry {} is not a map: {err}",
                        e.index
                    ))),
                },
                EntryType::EntryConfChange => self.apply_conf_change(&e),
                EntryType::EntryConfChangeV2 => {
                    tracing::error!(index = e.index, "joint configuration change ignored")
                }
            }
            self.pass_gates(now, &e);
            self.maybe_act(now);
        }
    }

    fn pass_gates(&mut self, now: Instant, e: &Entry) {
        while let Some(&Held::Gate { index, term }) = self.held.front() {
            if index > e.index {
                break;
            }
            if index == e.index && term == e.term {
                self.held.pop_front();
                self.release();
                continue;
            }
            // Our proposal was replaced (or never made): what the index holds is not what the group applied.
            self.abandon("the index server's proposal was not committed");
            if self.acting() {
                self.index.lead(now, self.takeover_wait());
                self.collect_index_actions();
            }
            break;
        }
    }

    fn set_applied(&mut self, map: Snapshot) {
        self.applied = map;
        self.outputs
            .push_back(Output::Applied(self.applied.clone()));
        if !self.acting() {
            self.index.follow(&self.applied);
        }
    }

    fn apply_conf_change(&mut self, e: &Entry) {
        let cc = match ConfChange::decode(&e.data[..]) {
            Ok(cc) if ConfChangeType::from_i32(cc.change_type).is_some() => cc,
            Ok(cc) => {
                self.outputs.push_back(Output::Fatal(format!(
                    "committed entry {} is a configuration change of unknown type {}",
                    e.index, cc.change_type
                )));
                return;
            }
            Err(err) => {
                self.outputs.push_back(Output::Fatal(format!(
                    "committed entry {} is not a configuration change: {err}",
                    e.index
                )));
                return;
            }
        };
        if let Ok(addr) = String::from_utf8(cc.context.clone()) {
            if member_id(&addr) == cc.node_id {
                self.book.insert(cc.node_id, addr);
            }
        }
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => {
                self.raw.mut_store().conf = cs.clone();
                let book = self.book_op();
                self.outputs.push_back(Output::Store(vec![
                    KvOp::Put {
                        key: keys::CONF.to_vec(),
                        value: cs.encode_to_vec(),
                    },
                    book,
                ]));
                tracing::info!(voters = ?self.status().members, "index group members changed");
            }
            Err(err) => tracing::error!(error = %err, "configuration change not applied"),
        }
        if let Some((index, term, conn)) = self.conf_change {
            if index <= e.index {
                self.conf_change = None;
                let reply = match index == e.index && e.term == term {
                    true => Reply::Ok,
                    false => Reply::Error(ErrorReply::Server(
                        "the membership change was not committed; check `stats`".into(),
                    )),
                };
                self.outputs.push_back(Output::Reply {
                    conn,
                    outcome: CommandOutcome::answer(reply),
                });
            }
        }
    }

    fn book_op(&self) -> KvOp {
        let text: Vec<&str> = self.book.values().map(String::as_str).collect();
        KvOp::Put {
            key: keys::BOOK.to_vec(),
            value: text.join(",").into_bytes(),
        }
    }

    fn store_book(&mut self) {
        let op = self.book_op();
        self.outputs.push_back(Output::Store(vec![op]));
    }

    /// Every [`COMPACT_EVERY`] applied entries, the log up to the applied index becomes a snapshot of the applied
    /// map.
    fn compact(&mut self) {
        let snap_index = self.raw.store().snap_index();
        if self.applied_index < snap_index + COMPACT_EVERY {
            return;
        }
        let at = self.applied_index;
        let Ok(term) = self.raw.store().term(at) else {
            return;
        };
        let conf = self.raw.store().conf.clone();
        let snap = self.make_snapshot(at, term, conf);
        let store = self.raw.mut_store();
        let drop = (at - snap_index) as usize;
        store.entries.drain(..drop.min(store.entries.len()));
        store.snap = snap;
        let value = store.snap.encode_to_vec();
        self.outputs.push_back(Output::Store(vec![
            KvOp::Put {
                key: keys::SNAP.to_vec(),
                value,
            },
            KvOp::DeleteRange {
                from: keys::entry(0),
                to: keys::entry(at + 1),
            },
        ]));
    }
}

/// Fills `log` and `book` from the stored keys.
fn restore(
    log: &mut Log,
    book: &mut BTreeMap<u64, String>,
    stored: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), GroupError> {
    let bad = |what: &str, e: prost::DecodeError| GroupError::Store(format!("{what}: {e}"));
    for (k, v) in stored {
        match &k[..] {
            keys::HARD => log.hard = HardState::decode(&v[..]).map_err(|e| bad("hard state", e))?,
            keys::CONF => log.conf = ConfState::decode(&v[..]).map_err(|e| bad("conf state", e))?,
            keys::SNAP => {
                log.snap = RaftSnapshot::decode(&v[..]).map_err(|e| bad("snapshot", e))?
            }
            keys::BOOK => {
                let text = String::from_utf8(v).map_err(|_| GroupError::Store("book".into()))?;
                for a in text.split(',').filter(|a| !a.is_empty()) {
                    book.insert(member_id(a), a.to_owned());
                }
            }
            k if k.starts_with(keys::ENTRY) => {
                let e = Entry::decode(&v[..]).map_err(|e| bad("entry", e))?;
                if EntryType::from_i32(e.entry_type).is_none() {
                    return Err(GroupError::Store(format!(
                        "entry {} of unknown type",
                        e.index
                    )));
                }
                log.entries.push(e)
            }
            _ => {}
        }
    }
    log.entries.sort_by_key(|e| e.index);
    let snap = log.snap_index();
    log.entries.retain(|e| e.index > snap);
    let mut term = log.snap.get_metadata().term;
    for (i, e) in log.entries.iter().enumerate() {
        if e.index != snap + 1 + i as u64 {
            return Err(GroupError::Store(format!(
                "log has a gap before entry {} (snapshot at {snap})",
                e.index
            )));
        }
        if e.term < term {
            return Err(GroupError::Store(format!(
                "entry {} has an older term than the one before",
                e.index
            )));
        }
        term = e.term;
    }
    // raft-rs stops the process on a configuration it cannot rebuild as it is (this group makes no joint changes).
    for (what, cs) in [
        ("configuration", &log.conf),
        (
            "snapshot's configuration",
            log.snap.get_metadata().get_conf_state(),
        ),
    ] {
        let voters: std::collections::BTreeSet<u64> = cs.voters.iter().copied().collect();
        let learners: std::collections::BTreeSet<u64> = cs.learners.iter().copied().collect();
        let simple = voters.len() == cs.voters.len()
            && learners.len() == cs.learners.len()
            && voters.is_disjoint(&learners)
            && !voters.contains(&raft::INVALID_ID)
            && !learners.contains(&raft::INVALID_ID)
            && cs.voters_outgoing.is_empty()
            && cs.learners_next.is_empty()
            && !cs.auto_leave;
        if !simple {
            return Err(GroupError::Store(format!(
                "stored {what} is not a plain set of members: {cs:?}"
            )));
        }
    }
    // raft-rs stops the process on a hard state that disagrees with the log: refuse it with a message instead.
    let last = snap + log.entries.len() as u64;
    if log.hard.commit < snap || log.hard.commit > last {
        return Err(GroupError::Store(format!(
            "commit index {} outside the log [{snap}, {last}]",
            log.hard.commit
        )));
    }
    if log.hard.term < term {
        return Err(GroupError::Store(format!(
            "hard state term {} is older than the log's last term {term}",
            log.hard.term
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
