//! The index servers of the core-level simulator: K `core::index::group::Group`s (hosts `0..K`), each with its own
//! disk, a key-value map its `Output::Store` batches go to and that survives its crashes; the driver side of each
//! is here.
//!
//! **Connections.** Everything that reaches a server comes on a connection ([`Conn`]): a node's call (its lines run
//! one after the other, each waiting for the previous reply, as `flared`'s exchange does), a node's session (open,
//! then renewals), an admin command, or a command another server forwarded. A line runs through
//! `Group::handle_command`; its reply is written once the outputs queued before it are performed, now or later
//! (`Output::Reply`). `Output::Forward` sends the command to the leader it names as a forwarded command; the leader
//! marks the connection `index peer <follower>` first, and its reply comes back to the waiting connection. As
//! `flarei`'s forward does, a leader that cannot be reached (it refuses the connection, or the link is cut: no
//! connection within [`CONNECT_TIMEOUT`]) is answered as no leader (`redirect_line(None)`: not sent, safe to send
//! again), and one that does not answer in [`FORWARD_TIMEOUT`] with a `SERVER_ERROR` saying the change may have been
//! applied.
//! A crashed server's connections are reset: the node, admin or follower at the other end learns it at once.
//!
//! **Raft.** `Output::Send` goes to the named server over the simulated network like any other message (lost
//! across a cut, held, slowed; never refused back), and arrives through `Group::handle_raft`. The group's ticks
//! come from its `poll_timeout`.
//!
//! **What is recorded** for the checkers ([`super::group_check`]): every applied map (also as the server's held map
//! for `check::one_master_per_version`), every push with the pusher's term and whether it acted, every successful
//! reply (its server's applied version is acknowledged), role changes (in the trace).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flare_core::index::group::{
    redirect_line, Group, GroupRole, GroupSettings, Output, DEFAULT_ELECTION_TIMEOUT,
};
use flare_core::index::kv::KvOp;
use flare_core::index::{Action as IxAction, CommandOutcome, ConnId, ProbeResult};
use flare_core::node::CallId;
use flare_core::protocol::admin::{
    AdminCommand, AdminParsed, AdminParser, IndexCommand, ServerQuery,
};
use flare_core::protocol::reply::{ReplyEvent, ReplyKind};
use flare_core::protocol::{ErrorReply, Reply};

use super::{events, line_of, map_view, Ev, Payload, Sim};
use crate::history::lock;
use crate::scenario::INDEX_PORT;

/// How long a follower waits for the leader's answer to a forwarded command (`flarei`'s forward).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a follower tries to connect to the leader before it takes it for unreachable (`flarei`'s forward).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One index server process and its disk.
pub(super) struct IndexServer {
    /// Host name (`index`, `index1`, …).
    pub(super) name: String,
    /// `host:port`, as the members list spells it.
    pub(super) addr: String,
    pub(super) up: bool,
    pub(super) boot: u64,
    pub(super) group: Option<Group>,
    /// Survives crashes.
    disk: BTreeMap<Vec<u8>, Vec<u8>>,
    timer_gen: u64,
    probes: BTreeMap<u64, String>,
    pushes: BTreeMap<u64, (String, u64)>,
    next_id: u64,
    conns: BTreeMap<ConnId, Conn>,
    /// Commands this server forwarded, waiting for the leader: id → the waiting connection.
    forwards: BTreeMap<u64, ConnId>,
    /// Replies ready to be written, in order (after the outputs queued before them).
    replies: VecDeque<(ConnId, CommandOutcome)>,
    /// The highest connection id any process of this server gave out: a restarted server numbers its connections
    /// from scratch, and a session of the new process must not pass for one of the old (messages on a connection
    /// are told apart by its id; real sockets are never reused that way).
    conn_floor: u64,
    /// (role, term, acting) last seen, to trace changes.
    seen: Option<(GroupRole, u64, bool)>,
}

impl IndexServer {
    pub(super) fn new(name: &str) -> IndexServer {
        IndexServer {
            name: name.to_string(),
            addr: format!("{name}:{INDEX_PORT}"),
            up: false,
            boot: 0,
            group: None,
            disk: BTreeMap::new(),
            timer_gen: 0,
            probes: BTreeMap::new(),
            pushes: BTreeMap::new(),
            next_id: 0,
            conns: BTreeMap::new(),
            forwards: BTreeMap::new(),
            replies: VecDeque::new(),
            conn_floor: 0,
            seen: None,
        }
    }

    /// Whether it is up and acting (monitoring, failing over, pushing).
    pub(super) fn acting(&self) -> bool {
        self.group.as_ref().is_some_and(|g| g.status().acting)
    }
}

/// One connection to an index server.
struct Conn {
    /// The host at the other end.
    from: usize,
    job: Job,
    /// Lines not yet run.
    lines: VecDeque<String>,
    /// A line runs and its reply has not come yet.
    waiting: bool,
}

/// What a connection is for, and what its replies become.
enum Job {
    /// A node's call: one reply of each kind, then the connection closes.
    Call {
        call: CallId,
        kinds: Vec<ReplyKind>,
        replies: Vec<Vec<ReplyEvent>>,
    },
    /// A node's session being opened with `count` lines.
    Opening {
        sid: u64,
        count: usize,
        answers: Vec<Bytes>,
    },
    /// An open session: each reply one line.
    Session,
    /// An admin command.
    Admin { op: u64 },
    /// A command forwarded by the index server at the other end.
    Peer { forward: u64 },
}

impl Sim {
    /// The index server a `host:port` names.
    pub(super) fn ix_by_addr(&self, addr: &str) -> Option<usize> {
        self.ix.iter().position(|x| x.addr == addr)
    }

    /// The index server a node's `(host, port)` names.
    pub(super) fn ix_by_host_port(&self, (host, port): &(String, u16)) -> Option<usize> {
        let addr = format!("{host}:{port}");
        self.ix_by_addr(&addr)
    }

    /// Starts server `i` from its disk.
    pub(super) fn boot_index(&mut self, i: usize) {
        let now = self.t();
        let k = self.ix.len();
        let members = match k {
            1 => Vec::new(),
            _ => self.ix.iter().map(|x| x.addr.clone()).collect(),
        };
        let x = &mut self.ix[i];
        if self.amnesia && x.boot > 0 {
            x.disk.clear();
        }
        let settings = GroupSettings {
            me: x.addr.clone(),
            members,
            join: false,
            election_timeout: DEFAULT_ELECTION_TIMEOUT,
        };
        let stored = x.disk.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let seed = self.s.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((i as u64) << 40) ^ x.boot;
        match Group::new(self.params.clone(), settings, stored, None, seed, now) {
            Ok(g) => x.group = Some(g),
            Err(e) => {
                let detail = format!("{} #{} did not start: {e}", x.name, x.boot);
                x.up = false;
                lock(&self.env).fail("index group", detail);
                return;
            }
        }
        x.up = true;
        x.seen = None;
        let line = format!("boot {} #{}", x.name, x.boot);
        self.trace(line);
        self.drain_index(i);
    }

    /// Crashes server `i`: its process state is gone, its disk stays, its connections are reset.
    pub(super) fn crash_index(&mut self, i: usize) {
        let x = &mut self.ix[i];
        if !x.up {
            return;
        }
        if let Some(g) = &x.group {
            let (name, conflicts) = (x.name.clone(), g.status().conflicts);
            self.group_log
                .conflicts(&mut lock(&self.env), &name, conflicts);
        }
        let x = &mut self.ix[i];
        x.up = false;
        x.boot += 1;
        x.group = None;
        x.probes.clear();
        x.pushes.clear();
        x.forwards.clear();
        x.replies.clear();
        let conns = std::mem::take(&mut x.conns);
        for (conn, c) in conns {
            let reset = match c.job {
                Job::Opening { sid, .. } => Payload::Refused(Box::new(Payload::SessionOpen {
                    sid,
                    lines: Vec::new(),
                })),
                Job::Session => Payload::SessionBroken { conn },
                Job::Call { call, .. } => Payload::Refused(Box::new(Payload::Call {
                    call,
                    lines: Vec::new(),
                })),
                Job::Admin { op } => Payload::Refused(Box::new(Payload::AdminLine {
                    op,
                    line: String::new(),
                })),
                // The command reached this server and may have been applied: the follower says so.
                Job::Peer { forward } => Payload::ForwardReply {
                    forward,
                    reply: Reply::Error(ErrorReply::Server(
                        "index leader did not answer (connection reset); the change may have been applied: check the map"
                            .into(),
                    )),
                },
            };
            self.send_from_dead(i, c.from, reset);
        }
    }

    /// A connection to server `i` from host `from`, with an id no earlier process gave out (the caller runs its
    /// lines: [`Sim::feed`]).
    fn open_conn(&mut self, i: usize, from: usize, job: Job, lines: Vec<String>) -> Option<ConnId> {
        let x = &mut self.ix[i];
        let g = x.group.as_mut()?;
        let mut conn = g.open_connection();
        while conn.0 <= x.conn_floor {
            g.close_connection(conn);
            conn = g.open_connection();
        }
        x.conn_floor = conn.0;
        x.conns.insert(
            conn,
            Conn {
                from,
                job,
                lines: lines.into(),
                waiting: false,
            },
        );
        Some(conn)
    }

    fn close_conn(&mut self, i: usize, conn: ConnId) {
        let x = &mut self.ix[i];
        x.conns.remove(&conn);
        if let Some(g) = x.group.as_mut() {
            g.close_connection(conn);
        }
    }

    /// Runs the connection's next lines, each once the previous one was answered.
    fn feed(&mut self, i: usize, conn: ConnId) {
        loop {
            let Some(c) = self.ix[i].conns.get_mut(&conn) else {
                return;
            };
            if c.waiting {
                return;
            }
            let Some(line) = c.lines.pop_front() else {
                return;
            };
            c.waiting = true;
            if let Some(outcome) = self.run_line(i, conn, &line) {
                self.ix[i].replies.push_back((conn, outcome));
            }
            self.drain_index(i);
        }
    }

    /// One admin-protocol line on server `i` for `conn`: the reply now, or `None` (it comes as an output).
    fn run_line(&mut self, i: usize, conn: ConnId, line: &str) -> Option<CommandOutcome> {
        let now = self.t();
        let mut parser = AdminParser::new(flare_core::protocol::admin::ADMIN_LINE_MAX);
        let mut buf = BytesMut::from(format!("{line}\r\n").as_bytes());
        let answer = |reply| {
            Some(CommandOutcome {
                reply,
                close: false,
            })
        };
        let g = self.ix[i].group.as_mut()?;
        match parser.parse(&mut buf) {
            Some(AdminParsed::Command(AdminCommand::Index(cmd))) => {
                g.handle_command(now, conn, cmd)
            }
            Some(AdminParsed::Command(AdminCommand::Server(ServerQuery::Stats))) => {
                answer(Reply::Stats(vec![(
                    "node_map_version".into(),
                    g.node_map().version.to_string(),
                )]))
            }
            Some(AdminParsed::Command(AdminCommand::Server(_))) => answer(Reply::Stats(Vec::new())),
            Some(AdminParsed::Error { error, .. }) => answer(Reply::Error(error)),
            _ => answer(Reply::Error(ErrorReply::UnknownCommand)),
        }
    }

    /// Writes the reply of `conn`'s running line, then runs its next ones.
    fn answer(&mut self, i: usize, conn: ConnId, outcome: CommandOutcome) {
        if !self.ix[i].conns.contains_key(&conn) {
            return;
        }
        let reply = outcome.reply;
        if !matches!(reply, Reply::Error(_) | Reply::Nothing) {
            if let Some(g) = &self.ix[i].group {
                let version = g.applied().version;
                self.group_log.acknowledged(version, &self.ix[i].addr);
            }
        }
        let c = self.ix[i]
            .conns
            .get_mut(&conn)
            .expect("invariant: checked above");
        c.waiting = false;
        let from = c.from;
        let mut opened = false;
        let (payload, done) = match &mut c.job {
            Job::Call {
                call,
                kinds,
                replies,
            } => {
                let kind = kinds.get(replies.len()).copied().unwrap_or(ReplyKind::Line);
                replies.push(events(&reply, kind));
                match replies.len() >= kinds.len() {
                    true => {
                        let replies = std::mem::take(replies);
                        (
                            Some(Payload::CallReply {
                                call: *call,
                                replies,
                            }),
                            true,
                        )
                    }
                    false => (None, false),
                }
            }
            Job::Opening {
                sid,
                count,
                answers,
            } => {
                answers.push(line_of(&reply));
                match answers.len() >= *count {
                    true => {
                        opened = true;
                        let (sid, answers) = (*sid, std::mem::take(answers));
                        (Some(Payload::SessionOpened { sid, conn, answers }), false)
                    }
                    false => (None, false),
                }
            }
            Job::Session => (
                Some(Payload::SessionReply {
                    conn,
                    line: line_of(&reply),
                }),
                false,
            ),
            Job::Admin { op } => (Some(Payload::AdminReply { op: *op, reply }), true),
            Job::Peer { forward } => (
                Some(Payload::ForwardReply {
                    forward: *forward,
                    reply,
                }),
                true,
            ),
        };
        if opened {
            c.job = Job::Session;
        }
        if let Some(p) = payload {
            self.send(i, from, p);
        }
        if outcome.close && !done {
            // The server closes the connection after this reply: a session is broken.
            if matches!(
                self.ix[i].conns.get(&conn).map(|c| &c.job),
                Some(Job::Session)
            ) {
                self.send(i, from, Payload::SessionBroken { conn });
            }
            return self.close_conn(i, conn);
        }
        if done {
            return self.close_conn(i, conn);
        }
        self.feed(i, conn);
    }

    /// Performs every output of server `i` in order, then writes the replies that are ready.
    pub(super) fn drain_index(&mut self, i: usize) {
        loop {
            let Some(out) = self.ix[i].group.as_mut().and_then(Group::poll_output) else {
                break;
            };
            match out {
                Output::Store(ops) => {
                    let disk = &mut self.ix[i].disk;
                    for op in ops {
                        match op {
                            KvOp::Put { key, value } => {
                                disk.insert(key, value);
                            }
                            KvOp::DeleteRange { from, to } => {
                                let doomed: Vec<Vec<u8>> =
                                    disk.range(from..to).map(|(k, _)| k.clone()).collect();
                                for k in doomed {
                                    disk.remove(&k);
                                }
                            }
                        }
                    }
                }
                Output::Send { to, bytes } => {
                    if let Some(j) = self.ix_by_addr(&to) {
                        self.send(i, j, Payload::Raft { bytes });
                    }
                }
                Output::Applied(snap) => {
                    let view = map_view(&snap.node_map());
                    let name = self.ix[i].name.clone();
                    let mut e = lock(&self.env);
                    self.group_log.applied(&mut e, &name, &snap, view.clone());
                    e.hold_map(&name, snap.version, view);
                    drop(e);
                    self.trace(format!("{name} applied v{}", snap.version));
                }
                Output::Index(action) => self.index_action(i, action),
                Output::Reply { conn, outcome } => self.ix[i].replies.push_back((conn, outcome)),
                Output::Forward { conn, to, command } => self.forward(i, conn, &to, command),
                Output::Fatal(why) => {
                    let detail = format!("{} stopped: {why}", self.ix[i].name);
                    lock(&self.env).fail("index group", detail);
                    return self.crash_index(i);
                }
            }
        }
        self.observe(i);
        let now = self.t();
        if let Some(t) = self.ix[i].group.as_ref().and_then(Group::poll_timeout) {
            let x = &mut self.ix[i];
            x.timer_gen += 1;
            let gen = x.timer_gen;
            self.at(t.saturating_duration_since(now), Ev::IndexTimer(i, gen));
        }
        while let Some((conn, outcome)) = self.ix[i].replies.pop_front() {
            self.answer(i, conn, outcome);
        }
    }

    /// Traces role changes and checks that one server acts per term.
    fn observe(&mut self, i: usize) {
        let Some(st) = self.ix[i].group.as_ref().map(Group::status) else {
            return;
        };
        let now = (st.role, st.term, st.acting);
        if self.ix[i].seen == Some(now) {
            return;
        }
        self.ix[i].seen = Some(now);
        let name = self.ix[i].name.clone();
        if st.acting {
            self.group_log.acting(&mut lock(&self.env), &name, st.term);
        }
        let acting = if st.acting { " acting" } else { "" };
        self.trace(format!(
            "{name} {} term {}{acting} (leader {})",
            st.role.name(),
            st.term,
            st.leader.as_deref().unwrap_or("-")
        ));
    }

    fn index_action(&mut self, i: usize, action: IxAction) {
        match action {
            IxAction::Persist(_) => {
                // The group turns the index's persists into proposals; none reaches the driver.
            }
            IxAction::Probe {
                node,
                timeout,
                position,
            } => {
                let x = &mut self.ix[i];
                x.next_id += 1;
                let id = x.next_id;
                x.probes.insert(id, node.clone());
                self.at(timeout, Ev::ProbeTimeout(i, id));
                if let Some(h) = self.host_of_key(&node) {
                    self.send(i, h, Payload::Probe { id, position });
                }
            }
            IxAction::Push {
                node,
                version,
                lines,
                timeout,
            } => {
                if let Some(st) = self.ix[i].group.as_ref().map(Group::status) {
                    let name = self.ix[i].name.clone();
                    self.group_log
                        .pushed(&mut lock(&self.env), &name, st.term, st.acting);
                }
                let x = &mut self.ix[i];
                x.next_id += 1;
                let id = x.next_id;
                x.pushes.insert(id, (node.clone(), version));
                self.at(timeout, Ev::PushTimeout(i, id));
                if let Some(h) = self.host_of_key(&node) {
                    self.send(i, h, Payload::Push { id, version, lines });
                }
            }
            IxAction::Close(conn) => {
                if let Some(c) = self.ix[i].conns.get(&conn) {
                    if matches!(c.job, Job::Opening { .. } | Job::Session) {
                        let to = c.from;
                        self.send(i, to, Payload::SessionBroken { conn });
                    }
                }
                self.close_conn(i, conn);
            }
        }
    }

    /// `Output::Forward`: the command goes to the leader `to`, its answer will come back to `conn`.
    fn forward(&mut self, i: usize, conn: ConnId, to: &str, command: IndexCommand) {
        let Some(j) = self.ix_by_addr(to) else {
            let reply = Reply::Error(ErrorReply::Server(
                format!("index leader {to} is not an index server here").into(),
            ));
            self.ix[i].replies.push_back((
                conn,
                CommandOutcome {
                    reply,
                    close: false,
                },
            ));
            return;
        };
        let x = &mut self.ix[i];
        x.next_id += 1;
        let forward = x.next_id;
        x.forwards.insert(forward, conn);
        let (boot, peer) = (x.boot, x.addr.clone());
        if self.cut.get(&super::pair(i, j)).is_some_and(|c| *c > 0) {
            // No connection across a cut: `flarei` gives up connecting and sends nothing.
            self.trace(format!("{} cannot reach {to}", self.ix[i].name));
            self.at(CONNECT_TIMEOUT, Ev::ForwardTimeout(i, boot, forward, false));
            return;
        }
        self.at(FORWARD_TIMEOUT, Ev::ForwardTimeout(i, boot, forward, true));
        let line = AdminCommand::Index(command).to_line();
        self.trace(format!("{} forwards {line} to {to}", self.ix[i].name));
        self.send(
            i,
            j,
            Payload::Forward {
                forward,
                peer,
                line,
            },
        );
    }

    /// A command server `i` forwarded got no answer: `sent` to the leader (it may have been applied), or not (the
    /// leader could not be reached).
    pub(super) fn forward_failed(&mut self, i: usize, forward: u64, sent: bool) {
        let why = match sent {
            true => "index leader did not answer in time; the change may have been applied: check the map".into(),
            false => redirect_line(None),
        };
        self.forwarded(i, forward, Err(why));
    }

    /// The answer (or its failure) to a command server `i` forwarded.
    pub(super) fn forwarded(&mut self, i: usize, forward: u64, reply: Result<Reply, String>) {
        let Some(conn) = self.ix[i].forwards.remove(&forward) else {
            return;
        };
        let reply = reply.unwrap_or_else(|why| Reply::Error(ErrorReply::Server(why.into())));
        self.answer(
            i,
            conn,
            CommandOutcome {
                reply,
                close: false,
            },
        );
    }

    /// A message to index server `i`.
    pub(super) fn index_msg(&mut self, i: usize, from: usize, payload: Payload) {
        let now = self.t();
        match payload {
            Payload::Raft { bytes } => {
                if let Some(g) = self.ix[i].group.as_mut() {
                    g.handle_raft(now, &bytes);
                }
                self.drain_index(i);
            }
            Payload::Call { call, lines } => {
                let (text, kinds): (Vec<String>, Vec<ReplyKind>) = lines.into_iter().unzip();
                if text.is_empty() {
                    return self.send(
                        i,
                        from,
                        Payload::CallReply {
                            call,
                            replies: Vec::new(),
                        },
                    );
                }
                let job = Job::Call {
                    call,
                    kinds,
                    replies: Vec::new(),
                };
                if let Some(conn) = self.open_conn(i, from, job, text) {
                    self.feed(i, conn);
                }
            }
            Payload::SessionOpen { sid, lines } => {
                let job = Job::Opening {
                    sid,
                    count: lines.len(),
                    answers: Vec::new(),
                };
                if let Some(conn) = self.open_conn(i, from, job, lines) {
                    self.feed(i, conn);
                }
            }
            Payload::SessionLine { conn, line } => {
                if let Some(c) = self.ix[i].conns.get_mut(&conn) {
                    c.lines.push_back(line);
                    self.feed(i, conn);
                }
            }
            Payload::SessionEnd { conn, node } => self.session_ended(i, conn, &node),
            Payload::AdminLine { op, line } => {
                if let Some(conn) = self.open_conn(i, from, Job::Admin { op }, vec![line]) {
                    self.feed(i, conn);
                }
            }
            Payload::Forward {
                forward,
                peer,
                line,
            } => {
                let Some(conn) = self.open_conn(i, from, Job::Peer { forward }, vec![line]) else {
                    return;
                };
                // `index peer <follower>` first, as `flarei`'s forward does: the leader never forwards it again.
                if let Some(g) = self.ix[i].group.as_mut() {
                    let _ = g.handle_command(now, conn, IndexCommand::IndexPeer(peer));
                }
                self.drain_index(i);
                self.feed(i, conn);
            }
            Payload::ForwardReply { forward, reply } => self.forwarded(i, forward, Ok(reply)),
            Payload::ProbeReply { id, position } => {
                if let Some(node) = self.ix[i].probes.remove(&id) {
                    let r = ProbeResult {
                        ok: true,
                        replication_position: Some(position),
                    };
                    if let Some(g) = self.ix[i].group.as_mut() {
                        g.handle_probe_result(now, &node, r);
                    }
                    self.drain_index(i);
                }
            }
            Payload::PushReply { id, ok } => {
                if let Some((node, version)) = self.ix[i].pushes.remove(&id) {
                    if let Some(g) = self.ix[i].group.as_mut() {
                        g.handle_push_result(now, &node, version, ok);
                    }
                    self.drain_index(i);
                }
            }
            Payload::Refused(p) => match *p {
                Payload::Probe { id, .. } => self.probe_failed(i, id),
                Payload::Push { id, .. } => self.push_failed(i, id),
                Payload::Forward { forward, .. } => self.forward_failed(i, forward, false),
                _ => {}
            },
            _ => {}
        }
    }

    /// Node `node` closed its session `conn` with server `i` (or its process died).
    fn session_ended(&mut self, i: usize, conn: ConnId, node: &str) {
        let now = self.t();
        if self.ix[i].conns.remove(&conn).is_none() {
            return;
        }
        if let Some(g) = self.ix[i].group.as_mut() {
            g.handle_session_lost(now, node, conn, true);
            g.close_connection(conn);
        }
        self.drain_index(i);
    }

    /// A probe of server `i` failed (refused, or no answer in time).
    pub(super) fn probe_failed(&mut self, i: usize, id: u64) {
        let now = self.t();
        if let Some(node) = self.ix[i].probes.remove(&id) {
            if let Some(g) = self.ix[i].group.as_mut() {
                g.handle_probe_result(now, &node, ProbeResult::default());
            }
            self.drain_index(i);
        }
    }

    /// A push of server `i` failed (refused, or no answer in time).
    pub(super) fn push_failed(&mut self, i: usize, id: u64) {
        let now = self.t();
        if let Some((node, version)) = self.ix[i].pushes.remove(&id) {
            if let Some(g) = self.ix[i].group.as_mut() {
                g.handle_push_result(now, &node, version, false);
            }
            self.drain_index(i);
        }
    }

    /// Server `i`'s timer fired.
    pub(super) fn index_timer(&mut self, i: usize, gen: u64) {
        if !self.ix[i].up || self.ix[i].timer_gen != gen {
            return;
        }
        let now = self.t();
        if let Some(g) = self.ix[i].group.as_mut() {
            g.handle_timeout(now);
        }
        self.drain_index(i);
    }
}
