//! The command lines the index server accepts (protocol.md §6, cluster.md §3), as an incremental parser.
//!
//! The index speaks a small text protocol: one command per line, tokens separated by spaces, a line ending in `\n`
//! (a `\r` before it is dropped), exactly as on nodes (protocol.md §1). What it accepts:
//!
//! - map-changing commands: `node add|role|state|remove`, `shutdown <name> <port>`, and the group's membership
//!   changes `index add|remove <host:port>` (ours, redundant index servers);
//! - `auth <secret>` (decisions.md #10, see below);
//! - between index servers of a group (ours): `index peer <host:port>` (this connection comes from that index
//!   server) and `index raft <len>\r\n<len bytes>\r\n`, one binary Raft message;
//! - `meta`, `ping`, `kill <id>`, `quit`, `verbosity <n> [noreply]`, `stats nodes|items|slabs|sizes`,
//!   `stats threads slave`: answered by [`crate::index::Index::handle_command`];
//! - `version`, `show variables`, `stats`, `stats settings`, `stats threads [request|queue]`: answered by the
//!   driver from process-level state (pid, rusage, config, its connection table) — [`AdminCommand::Server`].
//!
//! Everything else, data commands included, is `ERROR`, and so is a malformed known command (Flare answers `ERROR`
//! for any parse error of an index command), except the `index` commands, which are ours: a bad `<host:port>` or a
//! missing or extra argument is a `CLIENT_ERROR`. A request starting with byte `0x80` is binary: the index has no binary
//! protocol and closes the connection without a reply ([`AdminParsed::Close`]).
//!
//! **Shared secret.** When the index is configured with `cluster-secret`, a connection must send
//! `auth <secret>` (reply `OK`) before any map-changing command; otherwise those get
//! `CLIENT_ERROR authentication required`. The parser only recognises the line; the check lives in the index.
//!
//! Limits: a line longer than `line_max` bytes is answered with `CLIENT_ERROR line too long` and the connection is
//! closed, as soon as that many bytes are buffered without a line end. The parser never panics and holds at most
//! `line_max + 1` bytes of an incomplete line (the fuzz target `admin` checks both).
//!
//! **Raft blocks.** `index raft <len>` is followed by a data block of `len` bytes and `\r\n`. A `len` that is not a
//! number, or is over `raft_message_max` ([`Limits::raft_message_max`]), is a `CLIENT_ERROR` that closes the
//! connection at once, before any of the block is waited for; so is a block not followed by `\r\n`. Otherwise the
//! parser consumes the header line and waits, as for a partial line, until the whole block is buffered: it then
//! holds at most `len + 1` bytes of an incomplete block, and the message is split off the buffer without a copy.
//! [`parse_line`] alone cannot read a block, so it refuses `index raft`.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::lex::{parse_i64, parse_u64, Tokens};
use super::{ErrorReply, Limits, StatsGroup};
use crate::config::Secret;
use crate::node_map::{node_key, NodeRecord, Role, State};

/// A node named in a command: `<name> <port>`. The node key is `name:port`, compared as a string (cluster.md §3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeAddr {
    /// `server-name` exactly as sent (valid UTF-8; no further checks here).
    pub name: String,
    /// `server-port`.
    pub port: u16,
}

impl NodeAddr {
    /// A node address.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        NodeAddr {
            name: name.into(),
            port,
        }
    }

    /// The node key `name:port`.
    pub fn key(&self) -> String {
        node_key(&self.name, self.port)
    }
}

/// The node of a map record, as commands name it (an admin tool's `node role|state|remove`).
impl From<&NodeRecord> for NodeAddr {
    fn from(n: &NodeRecord) -> Self {
        NodeAddr::new(&n.name, n.port)
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

/// One parsed index-server command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// Handled by the index state machine.
    Index(IndexCommand),
    /// Answered by the driver (process-level state), with the index's accessors for the cluster parts.
    Server(ServerQuery),
}

/// A command the index state machine answers ([`crate::index::Index::handle_command`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexCommand {
    /// `node add <name> <port>`: registration (cluster.md §4.1).
    NodeAdd(NodeAddr),
    /// `node role <name> <port> <master|slave|proxy> [<balance>] [<partition>]`; a missing number is −1.
    NodeRole {
        /// The node.
        node: NodeAddr,
        /// The requested role.
        role: Role,
        /// The requested balance, −1 when left out.
        balance: i64,
        /// The requested partition, −1 when left out.
        partition: i64,
        /// Ours, after the partition: the map version of the prepare a node reports the end of (a node giving up
        /// a copy sends `node role <self> proxy 0 -1 <epoch>`).
        epoch: Option<u64>,
    },
    /// `node state <name> <port> <active|prepare|down|ready> [<epoch>]`; the epoch (ours) is the map version of the
    /// prepare a node reports the end of: the index refuses a report for an older prepare than the node's current one.
    NodeState {
        /// The node.
        node: NodeAddr,
        /// The requested state.
        state: State,
        /// The prepare's map version, from a node's own report.
        epoch: Option<u64>,
    },
    /// `node lease <name> <port> <version> [<lease-ms>]` (ours): a lease renewal, on the node's session, with the
    /// map version it holds and the lease it counts on (see `crate::index::lease`).
    NodeLease {
        /// The node.
        node: NodeAddr,
        /// The node-map version the node holds.
        version: u64,
        /// The node's `master-lease` in milliseconds.
        lease_ms: Option<u64>,
    },
    /// `node remove <name> <port>`.
    NodeRemove(NodeAddr),
    /// `node session <name> <port>` (ours, not Flare's): this connection is the node's session; the index probes the
    /// node at once when it closes. A node opens it after registering and keeps it alive with `ping`.
    NodeSession(NodeAddr),
    /// `shutdown <name> <port>`: the node is stopping gracefully (cluster.md §5.5).
    Shutdown(NodeAddr),
    /// `auth <secret>`: authenticates this connection for map-changing commands.
    Auth(Secret),
    /// `meta`: the five partitioning parameters.
    Meta,
    /// `ping`.
    Ping,
    /// `stats nodes`, `stats items`, `stats slabs`, `stats sizes`, `stats threads slave`.
    Stats(StatsGroup),
    /// `kill <id>`.
    Kill(u64),
    /// `verbosity <n> [noreply]` (does nothing).
    Verbosity {
        /// `noreply`.
        noreply: bool,
    },
    /// `quit`: close the connection without a reply (protocol.md §4.11 \[Improve\]).
    Quit,
    /// `index add <host:port>` (ours): add an index server to the group (`crate::index::group`). The address is
    /// `host:port` with the port in canonical decimal (`a:012120` becomes `a:12120`), as for every `index` command.
    IndexAdd(String),
    /// `index remove <host:port>` (ours): remove an index server from the group.
    IndexRemove(String),
    /// `index peer <host:port>` (ours): this connection comes from index server `<host:port>`.
    IndexPeer(String),
    /// `index raft <len>` followed by `<len>` bytes and `\r\n` (ours): one Raft message from an index peer, only
    /// from [`AdminParser`] (the block is not part of the line).
    IndexRaft(Bytes),
}

/// A query the driver answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerQuery {
    /// `version`.
    Version,
    /// `show variables` (stats.md §5, from the configuration).
    ShowVariables,
    /// `stats` (stats.md §1; `node_map_version` from the index).
    Stats,
    /// `stats settings`.
    StatsSettings,
    /// `stats threads`, `stats threads request`, `stats threads queue`: the driver's connection rows merged with
    /// [`crate::index::Index::monitor_threads`] through [`crate::index::threads_reply`].
    StatsThreads(StatsGroup),
}

impl IndexCommand {
    /// True for the commands that change the node map, which need `auth` when a secret is configured.
    pub fn changes_map(&self) -> bool {
        matches!(
            self,
            IndexCommand::NodeAdd(_)
                | IndexCommand::NodeRole { .. }
                | IndexCommand::NodeState { .. }
                | IndexCommand::NodeRemove(_)
                | IndexCommand::Shutdown(_)
                | IndexCommand::IndexAdd(_)
                | IndexCommand::IndexRemove(_)
        )
    }
}

impl AdminCommand {
    /// The operation name shown in `stats threads` (`op`, stats.md §2).
    pub fn op_name(&self) -> &'static str {
        match self {
            AdminCommand::Index(c) => match c {
                IndexCommand::NodeAdd(_) => "node_add",
                IndexCommand::NodeRole { .. } => "node_role",
                IndexCommand::NodeState { .. } => "node_state",
                IndexCommand::NodeRemove(_) => "node_remove",
                IndexCommand::NodeSession(_) => "node_session",
                IndexCommand::NodeLease { .. } => "node_lease",
                IndexCommand::Shutdown(_) => "shutdown",
                IndexCommand::Auth(_) => "auth",
                IndexCommand::Meta => "meta",
                IndexCommand::Ping => "ping",
                IndexCommand::Stats(_) => "stats",
                IndexCommand::Kill(_) => "kill",
                IndexCommand::Verbosity { .. } => "verbosity",
                IndexCommand::Quit => "quit",
                IndexCommand::IndexAdd(_) => "index_add",
                IndexCommand::IndexRemove(_) => "index_remove",
                IndexCommand::IndexPeer(_) => "index_peer",
                IndexCommand::IndexRaft(_) => "index_raft",
            },
            AdminCommand::Server(q) => match q {
                ServerQuery::Version => "version",
                ServerQuery::ShowVariables => "show",
                ServerQuery::Stats | ServerQuery::StatsSettings | ServerQuery::StatsThreads(_) => {
                    "stats"
                }
            },
        }
    }

    /// The command line without its `\r\n` (what a node or an admin tool sends). Parsing it gives `self` back,
    /// except for [`IndexCommand::IndexRaft`]: its line is the header `index raft <len>`, and the message (then
    /// `\r\n`) must follow it on the wire.
    pub fn to_line(&self) -> String {
        match self {
            AdminCommand::Index(c) => index_line(c),
            AdminCommand::Server(q) => match q {
                ServerQuery::Version => "version".into(),
                ServerQuery::ShowVariables => "show variables".into(),
                ServerQuery::Stats => "stats".into(),
                ServerQuery::StatsSettings => "stats settings".into(),
                ServerQuery::StatsThreads(g) => stats_line(*g).into(),
            },
        }
    }
}

fn index_line(c: &IndexCommand) -> String {
    match c {
        IndexCommand::NodeAdd(n) => format!("node add {} {}", n.name, n.port),
        IndexCommand::NodeRole {
            node,
            role,
            balance,
            partition,
            epoch,
        } => format!(
            "node role {} {} {role} {balance} {partition}{}",
            node.name,
            node.port,
            epoch.map(|e| format!(" {e}")).unwrap_or_default()
        ),
        IndexCommand::NodeState { node, state, epoch } => format!(
            "node state {} {} {state}{}",
            node.name,
            node.port,
            epoch.map(|e| format!(" {e}")).unwrap_or_default()
        ),
        IndexCommand::NodeLease {
            node,
            version,
            lease_ms,
        } => format!(
            "node lease {} {} {version}{}",
            node.name,
            node.port,
            lease_ms.map(|l| format!(" {l}")).unwrap_or_default()
        ),
        IndexCommand::NodeRemove(n) => format!("node remove {} {}", n.name, n.port),
        IndexCommand::NodeSession(n) => format!("node session {} {}", n.name, n.port),
        IndexCommand::Shutdown(n) => format!("shutdown {} {}", n.name, n.port),
        IndexCommand::Auth(s) => format!("auth {}", s.expose()),
        IndexCommand::Meta => "meta".into(),
        IndexCommand::Ping => "ping".into(),
        IndexCommand::Stats(g) => stats_line(*g).into(),
        IndexCommand::Kill(id) => format!("kill {id}"),
        IndexCommand::IndexAdd(a) => format!("index add {a}"),
        IndexCommand::IndexRemove(a) => format!("index remove {a}"),
        IndexCommand::IndexPeer(a) => format!("index peer {a}"),
        // The block follows the line.
        IndexCommand::IndexRaft(b) => format!("index raft {}", b.len()),
        IndexCommand::Verbosity { noreply: false } => "verbosity 0".into(),
        IndexCommand::Verbosity { noreply: true } => "verbosity 0 noreply".into(),
        IndexCommand::Quit => "quit".into(),
    }
}

fn stats_line(g: StatsGroup) -> &'static str {
    match g {
        StatsGroup::General => "stats",
        StatsGroup::Items => "stats items",
        StatsGroup::Slabs => "stats slabs",
        StatsGroup::Sizes => "stats sizes",
        StatsGroup::Settings => "stats settings",
        StatsGroup::Threads => "stats threads",
        StatsGroup::ThreadsRequest => "stats threads request",
        StatsGroup::ThreadsSlave => "stats threads slave",
        StatsGroup::ThreadsQueue => "stats threads queue",
        StatsGroup::Nodes => "stats nodes",
    }
}

/// One step of [`AdminParser::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminParsed {
    /// A whole command; its line has been consumed.
    Command(AdminCommand),
    /// A rejected line (consumed): send `error`, then close the connection if `close`.
    Error {
        /// The reply.
        error: ErrorReply,
        /// Close after replying (line too long: the stream cannot be resynchronised).
        close: bool,
    },
    /// A binary-protocol request: close the connection without a reply (protocol.md §6). The buffer is cleared.
    Close,
}

/// Default `line_max` of the admin parser: index command lines are short; 4 KiB is plenty for any node name.
pub const ADMIN_LINE_MAX: usize = 4096;

/// Incremental parser for one index-server connection.
#[derive(Debug)]
pub struct AdminParser {
    line_max: usize,
    raft_message_max: usize,
    /// Bytes at the front of the buffer already searched for `\n` (the current line is incomplete).
    scanned: usize,
    /// The length of the `index raft` block awaited: its header line is consumed, the block is not complete yet.
    block: Option<usize>,
}

impl AdminParser {
    /// A parser rejecting lines longer than `line_max` bytes (without the line ending), and Raft messages longer
    /// than the default [`Limits::raft_message_max`].
    pub fn new(line_max: usize) -> Self {
        AdminParser {
            line_max,
            raft_message_max: Limits::default().raft_message_max,
            scanned: 0,
            block: None,
        }
    }

    /// The same parser, rejecting `index raft` blocks longer than `max` bytes.
    pub fn with_raft_message_max(mut self, max: usize) -> Self {
        self.raft_message_max = max;
        self
    }

    /// Changes the largest `index raft` block accepted from now on; 0 refuses every block (`index raft needs index
    /// peer first`), which is how a connection starts before it has said `index peer`, so that no client can make the
    /// server buffer a block.
    pub fn set_raft_message_max(&mut self, max: usize) {
        self.raft_message_max = max;
    }

    /// The next command in `buf`, or `None` when more bytes are needed. The buffer is then untouched, except that
    /// the header line of an `index raft` block is consumed while the parser waits for the block.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Option<AdminParsed> {
        if let Some(len) = self.block {
            return self.raft_block(buf, len);
        }
        if self.scanned == 0 && buf.first() == Some(&super::binary::MAGIC_REQUEST) {
            buf.clear();
            return Some(AdminParsed::Close);
        }
        let from = self.scanned.min(buf.len());
        let Some(i) = memchr::memchr(b'\n', &buf[from..]) else {
            // `+ 1` leaves room for the `\r` of a line of exactly `line_max` bytes.
            if buf.len() > self.line_max + 1 {
                return Some(self.too_long(buf));
            }
            self.scanned = buf.len();
            return None;
        };
        self.scanned = 0;
        let end = from + i;
        let line_len = if end > 0 && buf[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        if line_len > self.line_max {
            return Some(self.too_long(buf));
        }
        if let Some(header) = raft_header(&buf[..line_len]) {
            buf.advance(end + 1);
            return match header {
                Some(len) if len <= self.raft_message_max => {
                    self.block = Some(len);
                    self.raft_block(buf, len)
                }
                Some(_) if self.raft_message_max == 0 => Some(close(
                    buf,
                    ErrorReply::Client("index raft needs index peer first".into()),
                )),
                Some(_) => Some(close(
                    buf,
                    ErrorReply::Client("raft message too large".into()),
                )),
                None => Some(close(
                    buf,
                    ErrorReply::Client("bad raft message length".into()),
                )),
            };
        }
        let parsed = match parse_line(&buf[..line_len]) {
            Ok(c) => AdminParsed::Command(c),
            Err(error) => AdminParsed::Error {
                error,
                close: false,
            },
        };
        buf.advance(end + 1);
        Some(parsed)
    }

    /// True while a line, or the block of an `index raft`, is partly received.
    pub fn in_progress(&self) -> bool {
        self.scanned > 0 || self.block.is_some()
    }

    fn too_long(&mut self, buf: &mut BytesMut) -> AdminParsed {
        self.scanned = 0;
        close(buf, ErrorReply::LineTooLong)
    }

    /// The `len`-byte block of an `index raft` whose header is consumed, once it and its `\r\n` are buffered.
    fn raft_block(&mut self, buf: &mut BytesMut, len: usize) -> Option<AdminParsed> {
        // `len <= raft_message_max` was checked on the header; saturating keeps a huge configured maximum harmless.
        if buf.len() < len.saturating_add(2) {
            return None;
        }
        self.block = None;
        let message = buf.split_to(len).freeze();
        if !buf.starts_with(b"\r\n") {
            return Some(close(buf, ErrorReply::BadDataChunk));
        }
        buf.advance(2);
        Some(AdminParsed::Command(AdminCommand::Index(
            IndexCommand::IndexRaft(message),
        )))
    }
}

/// An error after which the stream cannot be resynchronised: the buffer is dropped and the connection closed.
fn close(buf: &mut BytesMut, error: ErrorReply) -> AdminParsed {
    buf.clear();
    AdminParsed::Error { error, close: true }
}

/// `Some` when `line` is an `index raft` header: `Some(len)` for `index raft <len>`, `None` for a missing, malformed
/// or extra argument (the length of the block that follows is then unknown).
fn raft_header(line: &[u8]) -> Option<Option<usize>> {
    let mut t = Tokens::new(line);
    if (t.next(), t.next()) != (Some(&b"index"[..]), Some(&b"raft"[..])) {
        return None;
    }
    let len = t
        .next()
        .and_then(parse_u64)
        .and_then(|n| usize::try_from(n).ok());
    Some(end(len, t))
}

impl Default for AdminParser {
    fn default() -> Self {
        AdminParser::new(ADMIN_LINE_MAX)
    }
}

/// Parses one command line (without its line ending). Every rejection is `ERROR`, as in Flare, except those of the
/// `index` commands (ours), which are `CLIENT_ERROR`s. `index raft <len>` is refused: its block follows the line, so
/// only [`AdminParser`] reads it.
pub fn parse_line(line: &[u8]) -> Result<AdminCommand, ErrorReply> {
    let mut t = Tokens::new(line);
    let bad = ErrorReply::UnknownCommand;
    let name = t.next().ok_or(bad.clone())?;
    let index = |c| Ok(AdminCommand::Index(c));
    let server = |q| Ok(AdminCommand::Server(q));
    match name {
        b"node" => parse_node(t).map(AdminCommand::Index).ok_or(bad),
        b"index" => parse_index(t).map(AdminCommand::Index),
        b"shutdown" => end(parse_addr(&mut t), t)
            .map(|n| AdminCommand::Index(IndexCommand::Shutdown(n)))
            .ok_or(bad),
        b"auth" => end(t.next().and_then(utf8), t)
            .map(|s| AdminCommand::Index(IndexCommand::Auth(Secret::from(s.as_str()))))
            .ok_or(bad),
        b"meta" => end(Some(IndexCommand::Meta), t).map_or(Err(bad), index),
        b"ping" => end(Some(IndexCommand::Ping), t).map_or(Err(bad), index),
        b"quit" => end(Some(IndexCommand::Quit), t).map_or(Err(bad), index),
        b"kill" => end(t.next().and_then(parse_u64), t)
            .map(|id| AdminCommand::Index(IndexCommand::Kill(id)))
            .ok_or(bad),
        b"verbosity" => parse_verbosity(t).map(AdminCommand::Index).ok_or(bad),
        b"stats" => parse_stats(t).ok_or(bad),
        b"show" => match (t.next(), t.next()) {
            (Some(b"variables"), None) => server(ServerQuery::ShowVariables),
            _ => Err(bad),
        },
        // Extra tokens are ignored, as on nodes (memcached 1.6 does; no Flare tool sends any).
        b"version" => server(ServerQuery::Version),
        _ => Err(bad),
    }
}

/// `Some(v)` only when no token is left.
fn end<T>(v: Option<T>, mut rest: Tokens<'_>) -> Option<T> {
    match rest.next() {
        None => v,
        Some(_) => None,
    }
}

fn utf8(t: &[u8]) -> Option<String> {
    std::str::from_utf8(t).ok().map(str::to_owned)
}

fn parse_addr(t: &mut Tokens<'_>) -> Option<NodeAddr> {
    let name = utf8(t.next()?)?;
    let port = u16::try_from(parse_u64(t.next()?)?).ok()?;
    Some(NodeAddr { name, port })
}

/// `node add|role|state|remove ...` (`node sync` is a node command: `ERROR` here, protocol.md §7).
fn parse_node(mut t: Tokens<'_>) -> Option<IndexCommand> {
    let verb = t.next()?;
    let node = parse_addr(&mut t)?;
    let cmd = match verb {
        b"add" => IndexCommand::NodeAdd(node),
        b"remove" => IndexCommand::NodeRemove(node),
        b"session" => IndexCommand::NodeSession(node),
        b"state" => IndexCommand::NodeState {
            node,
            state: State::parse(std::str::from_utf8(t.next()?).ok()?)?,
            epoch: match t.next() {
                None => None,
                Some(e) => Some(parse_u64(e)?),
            },
        },
        b"lease" => IndexCommand::NodeLease {
            node,
            version: parse_u64(t.next()?)?,
            lease_ms: match t.next() {
                None => None,
                Some(l) => Some(parse_u64(l)?),
            },
        },
        b"role" => {
            let role = Role::parse(std::str::from_utf8(t.next()?).ok()?)?;
            let balance = t.next().map_or(Some(-1), parse_i64)?;
            let partition = t.next().map_or(Some(-1), parse_i64)?;
            let epoch = match t.next() {
                None => None,
                Some(e) => Some(parse_u64(e)?),
            };
            IndexCommand::NodeRole {
                node,
                role,
                balance,
                partition,
                epoch,
            }
        }
        _ => return None,
    };
    end(Some(cmd), t)
}

/// `index add|remove|peer <host:port>` (ours). An unknown verb is `ERROR`, bad arguments a `CLIENT_ERROR`.
fn parse_index(mut t: Tokens<'_>) -> Result<IndexCommand, ErrorReply> {
    let make: fn(String) -> IndexCommand = match t.next() {
        Some(b"add") => IndexCommand::IndexAdd,
        Some(b"remove") => IndexCommand::IndexRemove,
        Some(b"peer") => IndexCommand::IndexPeer,
        Some(b"raft") => {
            return Err(ErrorReply::Client(
                "index raft must be followed by its data block".into(),
            ))
        }
        _ => return Err(ErrorReply::UnknownCommand),
    };
    let addr = t.next().ok_or(ErrorReply::BadCommandLine)?;
    let addr = index_addr(addr).ok_or(ErrorReply::Client(
        "bad index server address (expected <host>:<port>)".into(),
    ))?;
    end(Some(make(addr)), t).ok_or(ErrorReply::BadCommandLine)
}

/// An index server's `<host>:<port>`, as `index-servers` names it: a non-empty host without `:`, `,` or control
/// characters, and a decimal port 1..=65535, returned in canonical form (`a:012120` is `a:12120`) so that one
/// server has one name.
fn index_addr(token: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(token).ok()?;
    let (host, port) = text.split_once(':')?;
    if host.is_empty() || host.chars().any(|c| c.is_control() || c == ',') {
        return None;
    }
    let port = u16::try_from(parse_u64(port.as_bytes())?)
        .ok()
        .filter(|&p| p != 0)?;
    Some(format!("{host}:{port}"))
}

/// `verbosity <n> [noreply]`: the level is required (protocol.md §4.11).
fn parse_verbosity(mut t: Tokens<'_>) -> Option<IndexCommand> {
    parse_u64(t.next()?)?;
    let noreply = match t.next() {
        None => false,
        Some(b"noreply") => true,
        Some(_) => return None,
    };
    end(Some(IndexCommand::Verbosity { noreply }), t)
}

/// `stats [items|slabs|sizes|settings|nodes|threads [request|slave|queue]]` (stats.md).
fn parse_stats(mut t: Tokens<'_>) -> Option<AdminCommand> {
    use StatsGroup as G;
    let group = match (t.next(), t.next(), t.next()) {
        (None, _, _) => G::General,
        (Some(b"items"), None, _) => G::Items,
        (Some(b"slabs"), None, _) => G::Slabs,
        (Some(b"sizes"), None, _) => G::Sizes,
        (Some(b"settings"), None, _) => G::Settings,
        (Some(b"nodes"), None, _) => G::Nodes,
        (Some(b"threads"), None, _) => G::Threads,
        (Some(b"threads"), Some(b"request"), None) => G::ThreadsRequest,
        (Some(b"threads"), Some(b"slave"), None) => G::ThreadsSlave,
        (Some(b"threads"), Some(b"queue"), None) => G::ThreadsQueue,
        _ => return None,
    };
    Some(match group {
        G::General => AdminCommand::Server(ServerQuery::Stats),
        G::Settings => AdminCommand::Server(ServerQuery::StatsSettings),
        G::Threads | G::ThreadsRequest | G::ThreadsQueue => {
            AdminCommand::Server(ServerQuery::StatsThreads(group))
        }
        G::Items | G::Slabs | G::Sizes | G::Nodes | G::ThreadsSlave => {
            AdminCommand::Index(IndexCommand::Stats(group))
        }
    })
}

#[cfg(test)]
mod index_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, port: u16) -> NodeAddr {
        NodeAddr::new(name, port)
    }

    fn idx(c: IndexCommand) -> Result<AdminCommand, ErrorReply> {
        Ok(AdminCommand::Index(c))
    }

    #[test]
    fn every_command_form() {
        let cases: Vec<(&str, Result<AdminCommand, ErrorReply>)> = vec![
            (
                "node add 10.0.0.5 12121",
                idx(IndexCommand::NodeAdd(node("10.0.0.5", 12121))),
            ),
            (
                "node remove a 1",
                idx(IndexCommand::NodeRemove(node("a", 1))),
            ),
            ("shutdown a 1", idx(IndexCommand::Shutdown(node("a", 1)))),
            (
                "node state a 1 ready",
                idx(IndexCommand::NodeState {
                    node: node("a", 1),
                    state: State::Ready,
                    epoch: None,
                }),
            ),
            (
                "node role a 1 master 1 0",
                idx(IndexCommand::NodeRole {
                    node: node("a", 1),
                    role: Role::Master,
                    balance: 1,
                    partition: 0,
                    epoch: None,
                }),
            ),
            (
                "node role a 1 slave 3",
                idx(IndexCommand::NodeRole {
                    node: node("a", 1),
                    role: Role::Slave,
                    balance: 3,
                    partition: -1,
                    epoch: None,
                }),
            ),
            (
                "node role a 1 proxy",
                idx(IndexCommand::NodeRole {
                    node: node("a", 1),
                    role: Role::Proxy,
                    balance: -1,
                    partition: -1,
                    epoch: None,
                }),
            ),
            (
                "node role a 1 proxy 0 -1",
                idx(IndexCommand::NodeRole {
                    node: node("a", 1),
                    role: Role::Proxy,
                    balance: 0,
                    partition: -1,
                    epoch: None,
                }),
            ),
            (
                "node state a 1 active 42",
                idx(IndexCommand::NodeState {
                    node: node("a", 1),
                    state: State::Active,
                    epoch: Some(42),
                }),
            ),
            (
                "node role a 1 proxy 0 -1 7",
                idx(IndexCommand::NodeRole {
                    node: node("a", 1),
                    role: Role::Proxy,
                    balance: 0,
                    partition: -1,
                    epoch: Some(7),
                }),
            ),
            (
                "node lease a 1 9 3000",
                idx(IndexCommand::NodeLease {
                    node: node("a", 1),
                    version: 9,
                    lease_ms: Some(3000),
                }),
            ),
            ("meta", idx(IndexCommand::Meta)),
            ("ping", idx(IndexCommand::Ping)),
            ("quit", idx(IndexCommand::Quit)),
            ("kill 7", idx(IndexCommand::Kill(7))),
            (
                "verbosity 1",
                idx(IndexCommand::Verbosity { noreply: false }),
            ),
            (
                "verbosity 1 noreply",
                idx(IndexCommand::Verbosity { noreply: true }),
            ),
            ("stats nodes", idx(IndexCommand::Stats(StatsGroup::Nodes))),
            ("stats items", idx(IndexCommand::Stats(StatsGroup::Items))),
            (
                "stats threads slave",
                idx(IndexCommand::Stats(StatsGroup::ThreadsSlave)),
            ),
            ("stats", Ok(AdminCommand::Server(ServerQuery::Stats))),
            (
                "stats settings",
                Ok(AdminCommand::Server(ServerQuery::StatsSettings)),
            ),
            (
                "stats threads",
                Ok(AdminCommand::Server(ServerQuery::StatsThreads(
                    StatsGroup::Threads,
                ))),
            ),
            (
                "stats threads queue",
                Ok(AdminCommand::Server(ServerQuery::StatsThreads(
                    StatsGroup::ThreadsQueue,
                ))),
            ),
            (
                "show variables",
                Ok(AdminCommand::Server(ServerQuery::ShowVariables)),
            ),
            ("version", Ok(AdminCommand::Server(ServerQuery::Version))),
            (
                "version extra",
                Ok(AdminCommand::Server(ServerQuery::Version)),
            ),
            (
                "  node   add  a  1  ",
                idx(IndexCommand::NodeAdd(node("a", 1))),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line.as_bytes()), want, "{line:?}");
        }
        match parse_line(b"auth s3cret") {
            Ok(AdminCommand::Index(IndexCommand::Auth(s))) => assert_eq!(s.expose(), "s3cret"),
            other => panic!("auth: {other:?}"),
        }
    }

    #[test]
    fn errors_are_error() {
        for line in [
            "",
            "   ",
            "get foo",
            "set a 0 0 1",
            "node",
            "node sync 3",
            "node add a",
            "node add a x",
            "node add a 65536",
            "node add a 1 extra",
            "node role a 1",
            "node role a 1 boss",
            "node role a 1 master x",
            "node role a 1 master 1 0 9 9",
            "node role a 1 master 99999999999999999999 0",
            "node state a 1 up",
            "node state a 1",
            "node remove a",
            "shutdown",
            "shutdown a 1 2",
            "meta x",
            "ping x",
            "quit now",
            "kill",
            "kill -1",
            "verbosity",
            "verbosity noreply",
            "verbosity 1 2",
            "stats bogus",
            "stats threads bogus",
            "stats nodes x",
            "show",
            "show vars",
            "auth",
            "auth a b",
            "NODE a 1 0 0 0 0 16",
            "node\tadd a 1",
        ] {
            assert_eq!(
                parse_line(line.as_bytes()),
                Err(ErrorReply::UnknownCommand),
                "{line:?}"
            );
        }
        assert_eq!(
            parse_line(b"node add \xff 1"),
            Err(ErrorReply::UnknownCommand)
        );
    }

    #[test]
    fn to_line_round_trips() {
        for line in [
            "node add a 1",
            "node role a 1 slave 0 3",
            "node role a 1 proxy -1 -1",
            "node state a 1 down",
            "node remove a 1",
            "shutdown a 1",
            "auth x",
            "meta",
            "ping",
            "stats nodes",
            "stats threads request",
            "stats",
            "show variables",
            "version",
            "kill 3",
            "verbosity 0 noreply",
            "quit",
        ] {
            let c = parse_line(line.as_bytes()).unwrap();
            assert_eq!(c.to_line(), line);
            assert_eq!(parse_line(c.to_line().as_bytes()), Ok(c));
        }
    }

    #[test]
    fn a_map_record_names_its_node() {
        let n = NodeRecord {
            name: "h".into(),
            port: 12121,
            role: Role::Slave,
            state: State::Active,
            partition: Some(2),
            balance: 1,
            thread_type: 16,
        };
        let c = AdminCommand::Index(IndexCommand::NodeRole {
            node: NodeAddr::from(&n),
            role: n.role,
            balance: n.balance.into(),
            partition: n.partition.map_or(-1, i64::from),
            epoch: None,
        });
        assert_eq!(c.to_line(), "node role h 12121 slave 1 2");
    }

    #[test]
    fn auth_debug_output_hides_the_secret() {
        let c = parse_line(b"auth hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    fn feed(input: &[u8], split: usize, line_max: usize) -> Vec<AdminParsed> {
        let mut p = AdminParser::new(line_max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in [&input[..split], &input[split..]] {
            buf.extend_from_slice(piece);
            while let Some(x) = p.parse(&mut buf) {
                let stop = matches!(
                    x,
                    AdminParsed::Close | AdminParsed::Error { close: true, .. }
                );
                out.push(x);
                if stop {
                    return out;
                }
            }
        }
        out
    }

    #[test]
    fn split_at_every_offset() {
        let input =
            b"node add a 12121\r\nmeta\nbogus\r\nstats nodes\r\nnode role a 12121 slave 0 1\r\n";
        let whole = feed(input, input.len(), 64);
        assert_eq!(whole.len(), 5);
        assert_eq!(
            whole[2],
            AdminParsed::Error {
                error: ErrorReply::UnknownCommand,
                close: false
            }
        );
        for split in 0..=input.len() {
            assert_eq!(feed(input, split, 64), whole, "split at {split}");
        }
    }

    #[test]
    fn binary_request_closes() {
        let out = feed(b"ping\r\n\x80\x0a\x00\x00", 6, 64);
        assert_eq!(out.last(), Some(&AdminParsed::Close));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn line_cap_is_checked_before_the_line_ends() {
        let mut p = AdminParser::new(8);
        let mut buf = BytesMut::from(&b"12345678\r\n"[..]);
        assert!(matches!(
            p.parse(&mut buf),
            Some(AdminParsed::Error { close: false, .. })
        ));
        let mut buf = BytesMut::from(&b"123456789"[..]);
        assert_eq!(p.parse(&mut buf), None, "9 bytes may still be 8 + \\r");
        buf.extend_from_slice(b"0");
        assert_eq!(
            p.parse(&mut buf),
            Some(AdminParsed::Error {
                error: ErrorReply::LineTooLong,
                close: true
            })
        );
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&b"123456789\n"[..]);
        assert_eq!(
            AdminParser::new(8).parse(&mut buf),
            Some(AdminParsed::Error {
                error: ErrorReply::LineTooLong,
                close: true
            })
        );
    }
}
