//! The node testkit: one [`Node`] with a real [`Store`] on the in-memory engine and an explicit clock, with the
//! index, the peers and the clients played by the test. No tokio, no sockets: a scenario that took a whole
//! simulated cluster to reach runs here in microseconds.
//!
//! [`Kit`] performs the machine's actions the way the production driver does (`runtime/src/node/cluster.rs`):
//! storage operations at once (their results reported), everything else recorded for the test to answer: index
//! and peer calls in [`Kit::calls`], the session (opened, renewals in [`Kit::renewals`]), replication links and
//! the entries sent on them ([`Kit::sent`], built from the store as the driver builds them), dump pulls, and the
//! end of sync writes. Like the driver, it takes the index servers a session open tries
//! ([`Node::index_order`]) when it performs the open ([`Kit::session_order`]); the server that answers is the
//! first of them unless the test says another ([`Kit::answer_session_from`]). Client requests go through [`Kit::request`]: decoded by the real decoder, planned with
//! [`plan::plan`] on the published view, refused without a lease, run on the store and replicated, as
//! `runtime/src/node/route.rs` runs them. Time moves only with [`Kit::advance`], which fires every timeout on the
//! way at its due time.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::plan::{self, Origin, Plan};
use super::replication::encode_replica;
use super::targets::{WriteFailure, WriteId};
use super::{no_lease_reply, Action, CallId, Dest, Node, NodeSettings, StoreOp};
use crate::exec::{self, Outcome, Tally};
use crate::protocol::lines::stat_line;
use crate::protocol::reply::ReplyEvent;
use crate::protocol::{
    Command, Decoded, Decoder, ErrorReply, Framing, Limits, NodeLine, ProxyPath, ReplicationMode,
    Reply,
};
use crate::storage::{MemoryStorage, Storage};
use crate::store::{Store, StoreConfig};

/// Unix time of the kit's start (exptimes and `exec`'s clock).
const UNIX_START: u64 = 1_700_000_000;

/// Every node of a kit's maps listens on this port; a node's key is `<name>:1`.
pub const PORT: u16 = 1;

/// A call the node made and the test has not answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Its id.
    pub id: CallId,
    /// Where it went.
    pub to: Dest,
    /// The command lines.
    pub lines: Vec<String>,
}

/// A replication entry the node sent on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The target.
    pub peer: String,
    /// The entry's sequence number.
    pub seq: u64,
    /// The key.
    pub key: Bytes,
    /// The message, as the driver would write it.
    pub bytes: Bytes,
    /// When it was sent.
    pub at: Instant,
}

/// What a client request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answered at once.
    Reply(Reply),
    /// A sync write waiting for its slaves: this reply once [`Kit::done`] has the write `Ok`.
    Waiting(WriteId, Reply),
    /// Sent on to other nodes (the peers named).
    Forwarded(Vec<String>),
}

/// One node and everything around it.
pub struct Kit {
    /// The machine.
    pub node: Node,
    /// Its store.
    pub store: Store<MemoryStorage>,
    /// When the kit started.
    pub t0: Instant,
    /// The clock.
    pub now: Instant,
    /// Calls not answered yet, in order.
    pub calls: Vec<Call>,
    /// The lines of a session being opened.
    pub session_opening: Option<Vec<String>>,
    /// The index servers the last session open tries, in order.
    pub session_order: Vec<(String, u16)>,
    /// The session is open.
    pub session_up: bool,
    /// Renewals sent and not answered, in order.
    pub renewals: VecDeque<String>,
    /// Links asked for and not reported open yet.
    pub links_opening: Vec<String>,
    /// Open links.
    pub links_up: Vec<String>,
    /// Entries sent and not answered, in order.
    pub sent: Vec<Sent>,
    /// Dump pulls running: (pull, source, line).
    pub pulls: Vec<(CallId, String, String)>,
    /// Ended sync writes.
    pub done: BTreeMap<WriteId, Result<(), WriteFailure>>,
    /// Every action, in order, as text.
    pub log: Vec<String>,
    /// Answers the test gave on links: (peer, entry, line, when).
    pub acks: Vec<(String, Sent, String, Instant)>,
    /// Sync writes reported done `Ok` when the node could not acknowledge writes (must stay 0).
    pub done_without_lease: usize,
}

/// A node line of a kit map: `(name, role, state, partition)`, e.g. `("a", "master", "active", 0)`.
pub type Rec<'a> = (&'a str, &'a str, &'a str, i32);

/// The `NODE` lines of a map.
pub fn node_lines(nodes: &[Rec<'_>]) -> Vec<NodeLine> {
    nodes
        .iter()
        .map(|(name, role, state, p)| {
            let role = match *role {
                "master" => 0,
                "slave" => 1,
                _ => 2,
            };
            let state = match *state {
                "active" => 0,
                "prepare" => 1,
                "down" => 2,
                _ => 3,
            };
            NodeLine {
                name: Bytes::copy_from_slice(name.as_bytes()),
                port: PORT,
                role,
                state,
                partition: *p,
                balance: 1,
                thread_type: 1,
            }
        })
        .collect()
}

fn item(s: String) -> ReplyEvent {
    ReplyEvent::Item(Bytes::from(s))
}

/// `stats` with `node_map_version`.
pub fn stats_reply(version: u64) -> Vec<ReplyEvent> {
    vec![
        item(stat_line("node_map_version", version)),
        ReplyEvent::End,
    ]
}

/// `stats nodes` of a map.
pub fn stats_nodes_reply(nodes: &[Rec<'_>]) -> Vec<ReplyEvent> {
    let mut out = Vec::new();
    for (name, role, state, p) in nodes {
        let k = format!("{name}:{PORT}");
        out.push(item(stat_line(format!("{k}:role"), role)));
        out.push(item(stat_line(format!("{k}:state"), state)));
        out.push(item(stat_line(format!("{k}:partition"), p)));
        out.push(item(stat_line(format!("{k}:balance"), 1)));
        out.push(item(stat_line(format!("{k}:thread_type"), 1)));
    }
    out.push(ReplyEvent::End);
    out
}

/// A one-line reply.
pub fn line(s: &str) -> Vec<Vec<ReplyEvent>> {
    vec![vec![ReplyEvent::Line(Bytes::copy_from_slice(s.as_bytes()))]]
}

/// The settings of node `name` (port [`PORT`], one index server `index:12120`, proxy-timeout 1 s, lease `lease`).
pub fn settings(name: &str, lease: Duration) -> NodeSettings {
    NodeSettings {
        server_name: name.into(),
        server_port: PORT,
        index_servers: vec![("index".into(), 12120)],
        proxy_timeout: Duration::from_secs(1),
        replication_backlog: 1000,
        reconstruction_interval_us: 0,
        reconstruction_bwlimit: 0,
        lease,
        cluster_secret: String::new(),
    }
}

impl Kit {
    /// Node `name` with a 3 s lease, registering (its `node add` call waits in [`Kit::calls`]).
    pub fn new(name: &str) -> Kit {
        Kit::with(settings(name, Duration::from_secs(3)))
    }

    /// A node with these settings.
    pub fn with(settings: NodeSettings) -> Kit {
        let t0 = Instant::now();
        let store = Store::new(MemoryStorage::new(), StoreConfig::default());
        let node = Node::new(settings, t0);
        let mut kit = Kit {
            node,
            store,
            t0,
            now: t0,
            calls: Vec::new(),
            session_opening: None,
            session_order: Vec::new(),
            session_up: false,
            renewals: VecDeque::new(),
            links_opening: Vec::new(),
            links_up: Vec::new(),
            sent: Vec::new(),
            pulls: Vec::new(),
            done: BTreeMap::new(),
            log: Vec::new(),
            acks: Vec::new(),
            done_without_lease: 0,
        };
        kit.pump();
        kit
    }

    /// Node `name`, registered with this map of `version`, its session open and its lease granted.
    pub fn registered(name: &str, version: u64, nodes: &[Rec<'_>]) -> Kit {
        let mut kit = Kit::new(name);
        kit.answer_registration(version, nodes);
        kit.open_session();
        kit.grant_renewals();
        kit
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Performs every queued action.
    pub fn pump(&mut self) {
        while let Some(a) = self.node.poll_action() {
            self.log.push(action_text(&a));
            match a {
                Action::Call {
                    call, to, lines, ..
                } => self.calls.push(Call {
                    id: call,
                    to,
                    lines: lines.into_iter().map(|(l, _)| l).collect(),
                }),
                Action::SessionOpen { lines } => {
                    self.session_up = false;
                    self.renewals.clear();
                    self.session_opening = Some(lines);
                    self.session_order = self.node.index_order();
                }
                Action::SessionSend { line } => self.renewals.push_back(line),
                Action::SessionClose => {
                    self.session_up = false;
                    self.session_opening = None;
                    self.renewals.clear();
                    self.node.handle_session_closed(self.now);
                }
                Action::LinkOpen { peer } => {
                    self.links_up.retain(|p| *p != peer);
                    self.sent.retain(|s| s.peer != peer);
                    self.links_opening.push(peer);
                }
                Action::Replicate { peer, entry, path } => {
                    let record = match entry.kind.reads_key() {
                        true => self.store.storage().get(&entry.key).expect("memory engine"),
                        false => None,
                    };
                    let bytes = encode_replica(&path, &entry.key, record.as_ref(), entry.kind)
                        .unwrap_or_else(|| Bytes::from_static(b"version\r\n"));
                    self.sent.push(Sent {
                        peer,
                        seq: entry.seq,
                        key: entry.key.clone(),
                        bytes,
                        at: self.now,
                    });
                }
                Action::LinkClose { peer } => {
                    self.links_up.retain(|p| *p != peer);
                    self.links_opening.retain(|p| *p != peer);
                    self.sent.retain(|s| s.peer != peer);
                    self.node.handle_link_closed(self.now, &peer);
                }
                Action::PullDump { pull, source, line } => self.pulls.push((pull, source, line)),
                Action::AbortDump { pull } => {
                    if let Some(i) = self.pulls.iter().position(|p| p.0 == pull) {
                        self.pulls.remove(i);
                        self.node
                            .handle_dump_end(self.now, pull, Err("aborted".into()));
                    }
                }
                Action::Store(op) => {
                    let ok = match &op {
                        StoreOp::FlushAll => self.store.flush_all().is_ok(),
                        StoreOp::RaiseVersionFloor(v) => self.store.raise_version_floor(*v).is_ok(),
                        StoreOp::PersistUnlogged => self.store.storage().persist_unlogged().is_ok(),
                        StoreOp::RemoveMovedKeys { .. } => true,
                    };
                    if matches!(op, StoreOp::FlushAll | StoreOp::PersistUnlogged) {
                        self.node.handle_store_result(self.now, &op, ok);
                    }
                }
                Action::WriteDone { write, result } => {
                    if result.is_ok() && !self.node.may_acknowledge(self.now) {
                        self.done_without_lease += 1;
                    }
                    self.done.insert(write, result);
                }
                Action::Publish => {}
            }
        }
    }

    /// Moves the clock forward by `d`, firing every timeout at its due time on the way (and performing its
    /// actions).
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            match self.node.poll_timeout(self.now) {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.node.handle_timeout(self.now);
                    self.pump();
                    // A timeout reported but not acted on would fire again forever (see the machine's tests).
                    let next = self.node.poll_timeout(self.now);
                    assert!(
                        next.is_none_or(|n| n > self.now),
                        "still due after handle_timeout at {:?}",
                        self.elapsed()
                    );
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// Lets `d` pass in steps of 10 ms with the index answering the session: it is opened again whenever the node
    /// asks, and every renewal is granted.
    pub fn live(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.advance(Duration::from_millis(10).min(until - self.now));
            if self.session_opening.is_some() {
                self.open_session();
            }
            self.grant_renewals();
        }
    }

    /// Takes the first unanswered call whose first line (after `auth`) starts with `prefix`.
    pub fn take_call(&mut self, prefix: &str) -> Option<Call> {
        let i = self
            .calls
            .iter()
            .position(|c| c.lines.iter().any(|l| l.starts_with(prefix)))?;
        Some(self.calls.remove(i))
    }

    /// Whether an unanswered call starts with `prefix`.
    pub fn has_call(&self, prefix: &str) -> bool {
        self.calls
            .iter()
            .any(|c| c.lines.iter().any(|l| l.starts_with(prefix)))
    }

    /// Answers the call that starts with `prefix` (panics when there is none).
    pub fn answer(&mut self, prefix: &str, reply: Result<Vec<Vec<ReplyEvent>>, String>) -> Call {
        let call = self
            .take_call(prefix)
            .unwrap_or_else(|| panic!("no call {prefix:?}; calls: {:?}", self.calls));
        self.node.handle_call_reply(self.now, call.id, reply);
        self.pump();
        call
    }

    /// Answers the registration with this map, read at `version` both before and after `stats nodes`.
    pub fn answer_registration(&mut self, version: u64, nodes: &[Rec<'_>]) {
        self.answer_registration_read(version, version, nodes);
    }

    /// Answers the registration with this map, read between `stats` showing `before` and `after`.
    pub fn answer_registration_read(&mut self, before: u64, after: u64, nodes: &[Rec<'_>]) {
        let mut add: Vec<ReplyEvent> = node_lines(nodes)
            .iter()
            .map(|l| item(l.to_string()))
            .collect();
        add.push(ReplyEvent::End);
        let reply = vec![
            add,
            vec![ReplyEvent::End],
            stats_reply(before),
            stats_nodes_reply(nodes),
            stats_reply(after),
        ];
        self.answer("node add", Ok(reply));
    }

    /// Reports the session open (every line answered `OK` by the first server tried).
    pub fn open_session(&mut self) {
        self.answer_session("OK");
    }

    /// Answers the session being opened from the first server it tries: every line `OK` but the last (`node
    /// session`), answered `last`.
    pub fn answer_session(&mut self, last: &str) {
        let first = self.session_order.first().cloned();
        self.answer_session_from(first, last);
    }

    /// [`Kit::answer_session`], answered by `from` (the servers before it did not answer).
    pub fn answer_session_from(&mut self, from: Option<(String, u16)>, last: &str) {
        let lines = self.session_opening.take().expect("a session being opened");
        let mut answers: Vec<Bytes> = lines.iter().map(|_| Bytes::from_static(b"OK")).collect();
        if let Some(l) = answers.last_mut() {
            *l = Bytes::copy_from_slice(last.as_bytes());
        }
        self.session_up = last == "OK";
        self.node.handle_session_opened(self.now, from, Ok(answers));
        self.pump();
    }

    /// Answers the oldest renewal waiting with `line` (panics when there is none).
    pub fn answer_renewal(&mut self, line: &str) {
        self.renewals.pop_front().expect("a renewal waiting");
        self.node.handle_session_reply(self.now, line.as_bytes());
        self.pump();
    }

    /// The session breaks or the index server closes it (a killed index server).
    pub fn break_session(&mut self) {
        self.session_up = false;
        self.session_opening = None;
        self.renewals.clear();
        self.node.handle_session_closed(self.now);
        self.pump();
    }

    /// Answers every renewal waiting with `OK`.
    pub fn grant_renewals(&mut self) {
        while self.renewals.pop_front().is_some() {
            self.node.handle_session_reply(self.now, b"OK");
            self.pump();
        }
    }

    /// Applies a `node sync` of this map.
    pub fn sync(&mut self, version: u64, nodes: &[Rec<'_>]) -> Result<(), &'static str> {
        let r = self
            .node
            .handle_node_sync(self.now, version, &node_lines(nodes));
        self.pump();
        r
    }

    /// Reports the link to `peer` open.
    pub fn open_link(&mut self, peer: &str) {
        let i = self
            .links_opening
            .iter()
            .position(|p| p == peer)
            .unwrap_or_else(|| panic!("no link to {peer} being opened"));
        self.links_opening.remove(i);
        self.links_up.push(peer.to_string());
        self.node.handle_link_opened(self.now, peer, true);
        self.pump();
    }

    /// Answers the oldest entry sent to `peer` with `reply` (returns it).
    pub fn ack(&mut self, peer: &str, reply: &str) -> Sent {
        let i = self
            .sent
            .iter()
            .position(|s| s.peer == peer)
            .unwrap_or_else(|| panic!("nothing sent to {peer}"));
        let sent = self.sent.remove(i);
        self.acks
            .push((peer.to_string(), sent.clone(), reply.to_string(), self.now));
        self.node
            .handle_link_reply(self.now, peer, reply.as_bytes());
        self.pump();
        sent
    }

    /// Runs one client request (text protocol bytes, one whole request).
    pub fn request(&mut self, bytes: &[u8]) -> Answer {
        let mut decoder = Decoder::new(Limits::default(), Default::default());
        let mut buf = BytesMut::from(bytes);
        let (framing, command) = match decoder.decode(&mut buf) {
            Some(Decoded::Request(r)) => (r.framing, r.command),
            other => panic!("not one whole request: {other:?}"),
        };
        self.run(&framing, command)
    }

    /// `set <key> 0 0 <len> [sync]` with `value`.
    pub fn set(&mut self, key: &str, value: &str, sync: bool) -> Answer {
        let req = format!(
            "set {key} 0 0 {}{}\r\n{value}\r\n",
            value.len(),
            if sync { " sync" } else { "" }
        );
        self.request(req.as_bytes())
    }

    /// Runs an entry another node replicated here (the bytes of a [`Sent`]); returns the answer line.
    pub fn apply(&mut self, bytes: &[u8]) -> Answer {
        self.request(bytes)
    }

    fn run(&mut self, framing: &Framing, command: Command) -> Answer {
        let published = self.node.published();
        let path = match framing {
            Framing::Text { proxy } => proxy.as_ref(),
            Framing::Binary(_) => None,
        };
        let origin = Origin {
            path,
            binary: false,
            operator: false,
        };
        let replicated = path.and_then(ProxyPath::sender_seq);
        if let Some(seq) = replicated {
            self.node.applied(seq);
        }
        let sync = match &command {
            Command::Store(s) => s.options.replication == ReplicationMode::Sync,
            Command::Delete { options, .. } | Command::Arith { options, .. } => {
                options.replication == ReplicationMode::Sync
            }
            _ => false,
        };
        let mut pick = || 0;
        let planned = plan::plan(&published.view, origin, command, &mut pick);
        if let Some(reply) = published.lease_refusal(self.now, &origin, &planned) {
            return Answer::Reply(reply);
        }
        let (command, write) = match planned {
            Plan::Local { command, write } => (command, write),
            Plan::Reply(reply) => return Answer::Reply(reply),
            Plan::Parts(p) => {
                return Answer::Forwarded(
                    p.parts
                        .iter()
                        .filter_map(|part| match part {
                            plan::Part::Peer { node, .. } => Some(node.clone()),
                            plan::Part::Local { .. } => None,
                        })
                        .collect(),
                )
            }
        };
        let unix = UNIX_START + self.elapsed().as_secs();
        let mut tally = Tally::default();
        let (reply, mutations) = match exec::execute(&self.store, command, unix, &mut tally) {
            Outcome::Reply { reply, mutations } => (reply, mutations),
            other => panic!("not a data command: {other:?}"),
        };
        if mutations.is_empty() || !write {
            return Answer::Reply(reply);
        }
        let r = self
            .node
            .replicate(self.now, &mutations, sync, replicated.is_none());
        self.pump();
        match r {
            Ok(None) => Answer::Reply(reply),
            Ok(Some(id)) => Answer::Waiting(id, reply),
            Err(WriteFailure::Lease) => Answer::Reply(no_lease_reply()),
            Err(WriteFailure::Replication) => Answer::Reply(Reply::Error(ErrorReply::Server(
                "replication failed".into(),
            ))),
        }
    }

    /// The view's version.
    pub fn version(&self) -> u64 {
        self.node.view().map().version
    }

    /// The node's own record as `(role, state, partition)` names.
    pub fn me(&self) -> (String, String, Option<u32>) {
        let (role, state, p, _) = self.node.view().my_role();
        (role.name().into(), state.name().into(), p)
    }
}

/// One line per action, for assertions on order.
pub fn action_text(a: &Action) -> String {
    match a {
        Action::Call { to, lines, .. } => {
            let to = match to {
                Dest::Index => "index".to_string(),
                Dest::Node(n) => n.clone(),
            };
            let lines: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
            format!("call {to}: {}", lines.join(" | "))
        }
        Action::SessionOpen { lines } => format!("session open: {}", lines.join(" | ")),
        Action::SessionSend { line } => format!("session send: {line}"),
        Action::SessionClose => "session close".into(),
        Action::LinkOpen { peer } => format!("link open {peer}"),
        Action::Replicate { peer, entry, .. } => format!(
            "replicate {peer} #{} {}",
            entry.seq,
            String::from_utf8_lossy(&entry.key)
        ),
        Action::LinkClose { peer } => format!("link close {peer}"),
        Action::PullDump { source, line, .. } => format!("pull {source}: {line}"),
        Action::AbortDump { .. } => "abort dump".into(),
        Action::Store(op) => format!("store {op:?}"),
        Action::WriteDone { write, result } => format!("write done {} {result:?}", write.0),
        Action::Publish => "publish".into(),
    }
}
