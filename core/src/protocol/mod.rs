//! The wire protocol: one request model for the three dialects a node speaks on one port.
//!
//! - [`text`]: memcached's text protocol as Flare speaks it, with Flare's extra commands and the `<host:port,...>`
//!   proxy prefix (protocol.md §4, §5, §9), plus the meta commands (`mg`, `ms`, ... in [`meta`], §11).
//! - [`binary`]: memcached's binary protocol (§10), chosen per request by the magic byte `0x80`.
//! - [`lex`]: the tokens and numbers of a line; [`lines`]: the `STAT`, `NODE`, `VALUE` and `END` lines, lexed and
//!   encoded. `lex` imports no sibling and `lines` only `lex`, so the parsers (text, meta, admin, reply, forward)
//!   share them without importing each other: the modules here form no cycle (only this parent, which holds the
//!   shared types and the [`Decoder`], and its children refer to each other).
//!
//! [`Decoder`] is the entry point: feed it the connection's read buffer and it returns whole requests, consuming
//! exactly their bytes, or `None` when more bytes are needed (the buffer is then untouched except for bytes it has
//! decided to discard). A rejected request yields [`Decoded::Error`] with memcached's reply; its data block, if any,
//! is skipped (memcached's `conn_swallow`) so the connection stays in sync.
//!
//! Replies are [`Reply`] values, encoded for the request's [`Framing`] by [`response::encode`].
//!
//! Limits ([`Limits`]) are checked before buffering: a line longer than `line_max` is rejected while still incomplete,
//! a value longer than `item_size_max` is never buffered. No input can make the decoder panic or allocate without
//! bound (fuzz targets check this).

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

pub mod admin;
pub mod binary;
pub mod forward;
pub mod lex;
pub mod lines;
pub mod meta;
pub mod reply;
pub mod response;
pub mod text;

/// Size limits enforced by the parsers (decisions.md #7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted command line, without its line ending (protocol.md §1: `CLIENT_ERROR line too long`).
    pub line_max: usize,
    /// Longest key in bytes (1..=8191).
    pub key_max: usize,
    /// Largest value in bytes (`max-item-size`, default 64 MiB, hard maximum 2^31-1).
    pub item_size_max: u32,
    /// Most keys in one `get`/`gets`/`gat` line.
    pub keys_per_get_max: usize,
    /// Most `NODE` lines in one `node sync`.
    pub nodes_max: usize,
    /// Largest Raft message one `index raft <len>` block may carry between index servers (default 16 MiB: a
    /// snapshot of the node map travels in one message); a longer length closes the connection before any of the
    /// block is buffered.
    pub raft_message_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            line_max: 64 * 1024,
            key_max: 8191,
            item_size_max: 64 * 1024 * 1024,
            keys_per_get_max: 8192,
            nodes_max: 4096,
            raft_message_max: 16 * 1024 * 1024,
        }
    }
}

/// Whether `c` may appear in a key. Keys travel inside text lines between nodes (forwarding, replication, dumps),
/// so space, CR and LF cannot; NUL cannot either (Flare hashes keys as C strings). Other control characters are
/// accepted, as memcached accepts them and widely used tools (memaslap) generate them: a deviation from
/// decisions.md #7, which would refuse every control character and DEL.
pub fn key_byte_ok(c: u8) -> bool {
    !matches!(c, b' ' | b'\r' | b'\n' | 0)
}

/// The hard maximum of `max-item-size` (protocol.md §2).
pub const ITEM_SIZE_HARD_MAX: u32 = i32::MAX as u32;

/// One parsed request and how to frame its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// How the request arrived, which decides how its reply is encoded.
    pub framing: Framing,
}

/// How a request arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A text line (classic or meta command). `proxy` is Flare's `<node,node,...>` prefix (protocol.md §9): the node
    /// keys the request has already passed through. `Some` marks a proxied request (forwarded or replicated).
    Text {
        /// The proxy path, if the line had a `<...>` prefix.
        proxy: Option<ProxyPath>,
    },
    /// A binary-protocol packet.
    Binary(BinaryHeader),
}

impl Framing {
    /// A plain text framing with no proxy prefix.
    pub const TEXT: Framing = Framing::Text { proxy: None };
}

/// The node keys (`host:port`) a proxied request has passed through, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyPath(pub Vec<Bytes>);

impl ProxyPath {
    /// How many times `node_key` appears in the path (an element's `#<seq>` suffix is ignored).
    pub fn count(&self, node_key: &[u8]) -> usize {
        self.0.iter().filter(|k| split_seq(k).0 == node_key).count()
    }

    /// The node that sent the request: the last element's node key.
    pub fn sender(&self) -> Option<&[u8]> {
        self.0.last().map(|k| split_seq(k).0)
    }

    /// The replication sequence number the sender attached (`<name:port#seq>`), if any.
    pub fn sender_seq(&self) -> Option<u64> {
        self.0.last().and_then(|k| split_seq(k).1)
    }
}

/// Splits a path element `name:port[#seq]` into the node key and the sequence number. Our masters tag replicated
/// writes with their replication sequence number this way; Flare nodes read the whole element as a node key, which
/// only matters to their loop check.
fn split_seq(element: &[u8]) -> (&[u8], Option<u64>) {
    match memchr::memrchr(b'#', element) {
        Some(i) => (&element[..i], lex::parse_u64(&element[i + 1..])),
        None => (element, None),
    }
}

/// The parts of a binary request header that the reply needs (protocol.md §10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryHeader {
    /// The request opcode (quiet variants included).
    pub opcode: u8,
    /// Echoed in every reply (a fix over Flare, which never echoes it).
    pub opaque: u32,
    /// The key of a GetK, which memcached's miss reply carries.
    pub key: Option<Bytes>,
}

impl BinaryHeader {
    /// True for the quiet opcodes, which suppress success replies (and misses, for gets).
    pub fn quiet(&self) -> bool {
        binary::is_quiet(self.opcode)
    }
}

/// Whether a write waits for replication (protocol.md §4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicationMode {
    /// Neither `sync` nor `async` was given: the node's `replication-type` decides.
    #[default]
    Default,
    /// `sync`: reply after every slave has the write.
    Sync,
    /// `async`: reply without waiting for slaves.
    Async,
}

/// Trailing options of a write command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `noreply`: send nothing back.
    pub noreply: bool,
    /// `sync` / `async`.
    pub replication: ReplicationMode,
}

/// The storage command family (protocol.md §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// Store unconditionally.
    Set,
    /// Store only if the key is absent (and not in a delete hold).
    Add,
    /// Store only if the key is alive (and not in a delete hold).
    Replace,
    /// Join after the old data, keeping flags and exptime.
    Append,
    /// Join before the old data, keeping flags and exptime.
    Prepend,
    /// Store only if the version equals `cas_unique`.
    Cas,
}

/// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRequest {
    /// Which storage command.
    pub mode: StoreMode,
    /// The key.
    pub key: Bytes,
    /// Client flags.
    pub flags: u32,
    /// Expiry as the client sent it (relative, absolute or negative; converted by the store, protocol.md §3).
    pub exptime: i64,
    /// The data block.
    pub value: Bytes,
    /// For `cas`: the version to compare with.
    pub cas_unique: u64,
    /// Flare's explicit version token after `<bytes>` (protocol.md §4.3), used by replication and dumps.
    pub version: Option<u64>,
    /// `noreply`, `sync`, `async`.
    pub options: WriteOptions,
}

/// `incr` or `decr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// Add, wrapping at 2^64.
    Incr,
    /// Subtract, stopping at 0.
    Decr,
}

/// Which `stats` group was asked for (stats.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGroup {
    /// `stats`
    General,
    /// `stats items`
    Items,
    /// `stats slabs`
    Slabs,
    /// `stats sizes`
    Sizes,
    /// `stats settings`
    Settings,
    /// `stats threads`
    Threads,
    /// `stats threads request`
    ThreadsRequest,
    /// `stats threads slave`
    ThreadsSlave,
    /// `stats threads queue`
    ThreadsQueue,
    /// `stats nodes`
    Nodes,
}

/// Arguments of `dump` and `dump_key` (protocol.md §5.2, §5.3). Validated by the parser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpArgs {
    /// Pause after each item, in microseconds (`dump` only).
    pub wait_usec: u64,
    /// Only keys of this partition under `partition_count` partitions; `None` = every key.
    pub partition: Option<u32>,
    /// The partition count the filter uses.
    pub partition_count: u32,
    /// Bandwidth cap in KiB/s; 0 = unlimited.
    pub bwlimit_kbps: u64,
}

/// One `NODE <name> <port> <role> <state> <partition> <balance> <thread_type>` line (protocol.md §5.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLine {
    /// Server name as the node registered it.
    pub name: Bytes,
    /// Server port.
    pub port: u16,
    /// Numeric role: master=0, slave=1, proxy=2.
    pub role: u8,
    /// Numeric state: active=0, prepare=1, down=2, ready=3.
    pub state: u8,
    /// Partition, -1 for none.
    pub partition: i32,
    /// Read weight.
    pub balance: i32,
    /// Stable node id given by the index.
    pub thread_type: u32,
}

/// Every command a node understands, whatever the dialect it arrived in.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `get`/`gets` (`cas` = true for `gets`); binary Get/GetK/GetQ/GetKQ with one key.
    Get {
        /// Keys in request order (a key given twice is returned twice).
        keys: Vec<Bytes>,
        /// Return the version (`gets`).
        cas: bool,
    },
    /// `gat`/`gats` (memcached form), Flare's single-key `gat` (compat), binary GAT/GATQ.
    Gat {
        /// New expiry, as the client sent it.
        exptime: i64,
        /// Keys in request order.
        keys: Vec<Bytes>,
        /// Return the version (`gats`).
        cas: bool,
        /// Flare's form: one key, no `END`, `NOT_FOUND` on a miss.
        flare_form: bool,
        /// `noreply` (Flare's form only).
        noreply: bool,
    },
    /// A storage command.
    Store(StoreRequest),
    /// `delete <key> [<time>] [<version>] [options]`.
    Delete {
        /// The key.
        key: Bytes,
        /// Delete-hold time as sent (0 = none).
        hold: i64,
        /// Replicated delete: skip when the local version is newer.
        version: Option<u64>,
        /// Compare-and-delete (binary Delete with a CAS, meta `md C`): delete only at this version.
        cas: Option<u64>,
        /// `noreply`, `sync`, `async`.
        options: WriteOptions,
    },
    /// `incr`/`decr`, binary Increment/Decrement.
    Arith {
        /// Which way.
        op: ArithOp,
        /// The key.
        key: Bytes,
        /// The delta.
        delta: u64,
        /// Binary protocol: create the item with this initial value and exptime on a miss.
        create: Option<(u64, i64)>,
        /// Binary protocol: the CAS the item must have (memcached checks it; `Exists` when it differs).
        cas: Option<u64>,
        /// `noreply`, `sync`, `async`.
        options: WriteOptions,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        /// The key.
        key: Bytes,
        /// New expiry as sent.
        exptime: i64,
        /// `noreply`.
        noreply: bool,
    },
    /// `flush_all [<delay>] [noreply]`: local to the node that receives it.
    FlushAll {
        /// Seconds from now (or absolute time); 0 = at once.
        delay: i64,
        /// `noreply`.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `verbosity <n> [noreply]` (does nothing).
    Verbosity {
        /// `noreply`.
        noreply: bool,
    },
    /// `quit`: close without a reply.
    Quit,
    /// Binary Noop (an empty success).
    Noop,
    /// `stats [group]`.
    Stats(StatsGroup),
    /// `ping`.
    Ping,
    /// `dump ...`.
    Dump(DumpArgs),
    /// `dump_key ...`.
    DumpKey(DumpArgs),
    /// `keys <prefix>... <limit>`.
    Keys {
        /// Prefixes to match.
        prefixes: Vec<Bytes>,
        /// Most keys to return (> 0).
        limit: u64,
    },
    /// `stats cachedump <class> <limit>` (memcached's; libmemcached's `memcdump` lists keys with it): the keys of
    /// slab class `class` (every item is in class 1 here), at most `limit` of them (0 = as many as fit in 2 MB).
    CacheDump {
        /// Slab class, 0..=63.
        class: u8,
        /// Most keys to list; 0 = no count limit.
        limit: u32,
    },
    /// `show variables`.
    ShowVariables,
    /// `kill <thread id>`.
    Kill(u64),
    /// `shutdown` (`shutdown <name> <port>` on the index).
    Shutdown {
        /// The node that is stopping, if given.
        node: Option<(Bytes, u16)>,
    },
    /// `node sync <version>` with its `NODE` lines.
    NodeSync {
        /// The node map version.
        version: u64,
        /// The nodes.
        nodes: Vec<NodeLine>,
    },
    /// A meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`).
    Meta(meta::MetaCommand),
}

impl Command {
    /// The operation name shown in `stats threads` (`op`).
    pub fn op_name(&self) -> &'static str {
        match self {
            Command::Get { cas: false, .. } => "get",
            Command::Get { cas: true, .. } => "gets",
            Command::Gat { .. } => "gat",
            Command::Store(s) => match s.mode {
                StoreMode::Set => "set",
                StoreMode::Add => "add",
                StoreMode::Replace => "replace",
                StoreMode::Append => "append",
                StoreMode::Prepend => "prepend",
                StoreMode::Cas => "cas",
            },
            Command::Delete { .. } => "delete",
            Command::Arith {
                op: ArithOp::Incr, ..
            } => "incr",
            Command::Arith {
                op: ArithOp::Decr, ..
            } => "decr",
            Command::Touch { .. } => "touch",
            Command::FlushAll { .. } => "flush_all",
            Command::Version => "version",
            Command::Verbosity { .. } => "verbosity",
            Command::Quit => "quit",
            Command::Noop => "ping",
            Command::Stats(_) => "stats",
            Command::Ping => "ping",
            Command::Dump(_) | Command::DumpKey(_) => "dump",
            Command::Keys { .. } => "keys",
            Command::CacheDump { .. } => "stats",
            Command::ShowVariables => "show",
            Command::Kill(_) => "kill",
            Command::Shutdown { .. } => "shutdown",
            Command::NodeSync { .. } => "node_sync",
            Command::Meta(_) => "meta",
        }
    }
}

/// One item in a `VALUE` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueItem {
    /// The key as the client sent it.
    pub key: Bytes,
    /// Client flags.
    pub flags: u32,
    /// The item's version (shown by `gets`, and in the binary CAS field).
    pub version: u64,
    /// The data.
    pub value: Bytes,
}

/// A failed request, with memcached's exact reply (protocol.md §4.1, §8).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorReply {
    /// `ERROR`: unknown command name or empty line.
    UnknownCommand,
    /// `CLIENT_ERROR bad command line format`: a known command with bad arguments.
    BadCommandLine,
    /// `CLIENT_ERROR bad data chunk`: the data block did not end with `\r\n`.
    BadDataChunk,
    /// `CLIENT_ERROR line too long`: the command line passed `line_max` (the connection is closed).
    LineTooLong,
    /// `CLIENT_ERROR key too long`.
    KeyTooLong,
    /// `SERVER_ERROR object too large for cache`.
    TooLarge,
    /// `CLIENT_ERROR cannot increment or decrement non-numeric value`.
    NonNumeric,
    /// `CLIENT_ERROR invalid numeric delta argument`.
    InvalidDelta,
    /// `CLIENT_ERROR invalid exptime argument`: memcached's answer to an unreadable exptime of `touch`, `gat`,
    /// `gats` and `flush_all`.
    InvalidExptime,
    /// memcached's answer to a `delete` it does not accept (a hold time, an unknown option), with its two spaces.
    DeleteUsage,
    /// No reply at all: memcached rejects the request without a word (a malformed `flush_all ... noreply`, or,
    /// with the connection closed, a line that looks like an HTTP request). Encoded as nothing.
    Silent,
    /// `CLIENT_ERROR <msg>`.
    Client(Cow<'static, str>),
    /// `SERVER_ERROR <msg>`.
    Server(Cow<'static, str>),
}

impl ErrorReply {
    /// The reply line without its `\r\n` (empty for [`ErrorReply::Silent`], which sends no line).
    pub fn line(&self) -> Cow<'_, str> {
        match self {
            ErrorReply::UnknownCommand => "ERROR".into(),
            ErrorReply::BadCommandLine => "CLIENT_ERROR bad command line format".into(),
            ErrorReply::BadDataChunk => "CLIENT_ERROR bad data chunk".into(),
            ErrorReply::LineTooLong => "CLIENT_ERROR line too long".into(),
            ErrorReply::KeyTooLong => "CLIENT_ERROR key too long".into(),
            ErrorReply::TooLarge => "SERVER_ERROR object too large for cache".into(),
            ErrorReply::NonNumeric => {
                "CLIENT_ERROR cannot increment or decrement non-numeric value".into()
            }
            ErrorReply::InvalidDelta => "CLIENT_ERROR invalid numeric delta argument".into(),
            ErrorReply::InvalidExptime => "CLIENT_ERROR invalid exptime argument".into(),
            ErrorReply::DeleteUsage => {
                "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]".into()
            }
            ErrorReply::Silent => "".into(),
            ErrorReply::Client(m) => format!("CLIENT_ERROR {m}").into(),
            ErrorReply::Server(m) => format!("SERVER_ERROR {m}").into(),
        }
    }

    /// The error an error line stands for (the inverse of [`ErrorReply::line`]), with the fixed variants recognised:
    /// a binary client's status code depends on them. `None` for a line that is not an error.
    pub fn from_line(line: &[u8]) -> Option<ErrorReply> {
        let fixed = [
            ErrorReply::UnknownCommand,
            ErrorReply::BadCommandLine,
            ErrorReply::BadDataChunk,
            ErrorReply::LineTooLong,
            ErrorReply::KeyTooLong,
            ErrorReply::TooLarge,
            ErrorReply::NonNumeric,
            ErrorReply::InvalidDelta,
            ErrorReply::InvalidExptime,
            ErrorReply::DeleteUsage,
        ];
        if let Some(e) = fixed.into_iter().find(|e| e.line().as_bytes() == line) {
            return Some(e);
        }
        let text = String::from_utf8_lossy(line);
        if let Some(m) = text.strip_prefix("SERVER_ERROR") {
            Some(ErrorReply::Server(m.trim_start().to_string().into()))
        } else {
            text.strip_prefix("CLIENT_ERROR")
                .map(|m| ErrorReply::Client(m.trim_start().to_string().into()))
        }
    }

    /// The binary-protocol status for this error (protocol.md §10, with the fixes over Flare's single 0x0084).
    pub fn binary_status(&self) -> u16 {
        match self {
            ErrorReply::UnknownCommand => binary::status::UNKNOWN_COMMAND,
            ErrorReply::BadCommandLine
            | ErrorReply::BadDataChunk
            | ErrorReply::LineTooLong
            | ErrorReply::KeyTooLong
            | ErrorReply::InvalidDelta
            | ErrorReply::InvalidExptime
            | ErrorReply::DeleteUsage => binary::status::INVALID_ARGUMENTS,
            ErrorReply::TooLarge => binary::status::VALUE_TOO_LARGE,
            ErrorReply::NonNumeric => binary::status::NON_NUMERIC,
            ErrorReply::Client(_) | ErrorReply::Server(_) | ErrorReply::Silent => {
                binary::status::INTERNAL_ERROR
            }
        }
    }
}

/// What to send back for one request. [`response::encode`] turns it into bytes for the request's [`Framing`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Nothing (`noreply`, or a quiet binary opcode that succeeded).
    Nothing,
    /// `STORED`; the binary reply carries the new version in its CAS field.
    Stored {
        /// The version the item now has.
        version: u64,
    },
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`; the binary reply carries the item's flags and version, as memcached's does (0 when the answer
    /// came from another node as a text `TOUCHED`).
    Touched {
        /// The item's client flags.
        flags: u32,
        /// The item's version.
        version: u64,
    },
    /// `OK`.
    Ok,
    /// `END` alone.
    End,
    /// `VALUE` lines then `END` (`get`, `gets`, `gat`, `gats`), or one `VALUE` without `END` (Flare's `gat`).
    Values {
        /// Hits in request order.
        items: Vec<ValueItem>,
        /// Show the version (`gets`/`gats`).
        cas: bool,
        /// Finish with `END` (false only for Flare's `gat`).
        end: bool,
    },
    /// The new value of `incr`/`decr`.
    Number {
        /// The value.
        value: u64,
        /// The item's new version (binary CAS field).
        version: u64,
    },
    /// `VERSION <text>`.
    Version(String),
    /// `STAT <name> <value>` lines then `END`.
    Stats(Vec<(String, String)>),
    /// Raw lines (without line endings) then `END`: `show variables`, `KEY` lines, `NODE` lines, `META` lines.
    Lines(Vec<String>),
    /// An error line.
    Error(ErrorReply),
    /// A meta-command reply.
    Meta(meta::MetaReply),
    /// Bytes relayed unchanged from another node (a forwarded meta command's answer): text clients get them as
    /// they are.
    Raw(Bytes),
}

impl Reply {
    /// The reply to a part of a streamed retrieval line ([`Decoded::Part`]): its values without the `END` that only
    /// the line's last part sends. Other replies (an error) are sent as they are.
    pub fn continued(self) -> Reply {
        match self {
            Reply::Values { items, cas, .. } => Reply::Values {
                items,
                cas,
                end: false,
            },
            other => other,
        }
    }
}

/// One decoder step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole request.
    Request(Request),
    /// A part of a long retrieval line: run it, and encode its reply [`Reply::continued`] (no `END`).
    Part(Request),
    /// A rejected request: send `error` framed as `framing`; the bad bytes have been (or will be) skipped.
    /// `close`: close the connection after the reply (the stream cannot be resynchronised).
    Error {
        /// How to frame the error reply.
        framing: Framing,
        /// The error.
        error: ErrorReply,
        /// Close the connection after replying.
        close: bool,
    },
}

/// A rejected command line: the reply, how many data bytes the client is still sending (to skip), and whether the
/// connection must close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// The reply.
    pub error: ErrorReply,
    /// Bytes to discard after the line.
    pub swallow: u64,
    /// Close the connection after replying.
    pub close: bool,
}

impl LineError {
    /// An error that skips nothing and keeps the connection.
    pub fn new(error: ErrorReply) -> Self {
        LineError {
            error,
            swallow: 0,
            close: false,
        }
    }

    /// An error after which the connection is closed.
    pub fn close(error: ErrorReply) -> Self {
        LineError {
            error,
            swallow: 0,
            close: true,
        }
    }
}

/// A sub-parser's answer (text or binary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet. The parser may have consumed bytes it no longer needs (and remembers its state).
    NeedMore,
    /// A whole request; its bytes are consumed.
    Request(Request),
    /// A part of a retrieval line too long to hold at once (`get` with thousands of keys): run it as a request, but
    /// its reply must not end the line's answer ([`Reply::continued`]); the line's last part comes as a `Request`.
    Part(Request),
    /// A rejected request. The parser consumed its header; `swallow` more bytes (a data block the client is still
    /// sending) must be discarded before the next request.
    Rejected {
        /// How to frame the error reply.
        framing: Framing,
        /// The error.
        error: ErrorReply,
        /// Bytes still to discard.
        swallow: u64,
        /// Close the connection after replying.
        close: bool,
    },
}

/// Per-connection decoder: detects the dialect per request and keeps the partial-request state.
#[derive(Debug)]
pub struct Decoder {
    text: text::TextParser,
    binary: binary::BinaryParser,
    /// Bytes of a rejected data block still to discard (memcached's `conn_swallow`).
    swallow: u64,
}

impl Decoder {
    /// A decoder enforcing `limits`, with the text-dialect switches of `dialect`.
    pub fn new(limits: Limits, dialect: text::Dialect) -> Self {
        Decoder {
            text: text::TextParser::new(limits, dialect),
            binary: binary::BinaryParser::new(limits),
            swallow: 0,
        }
    }

    /// Decodes the next request from `buf`, or returns `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Decoded> {
        if self.swallow > 0 {
            let n = usize::try_from(self.swallow)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            buf.advance(n);
            self.swallow -= n as u64;
            if self.swallow > 0 {
                return None;
            }
        }
        if buf.is_empty() && !self.text.in_progress() && !self.binary.in_progress() {
            return None;
        }
        let parsed = if self.binary.in_progress()
            || (!self.text.in_progress() && buf.first() == Some(&binary::MAGIC_REQUEST))
        {
            self.binary.parse(buf)
        } else {
            self.text.parse(buf)
        };
        match parsed {
            Parsed::NeedMore => None,
            Parsed::Request(r) => Some(Decoded::Request(r)),
            Parsed::Part(r) => Some(Decoded::Part(r)),
            Parsed::Rejected {
                framing,
                error,
                swallow,
                close,
            } => {
                self.swallow = swallow;
                if swallow > 0 {
                    let n = usize::try_from(swallow)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    buf.advance(n);
                    self.swallow -= n as u64;
                }
                Some(Decoded::Error {
                    framing,
                    error,
                    close,
                })
            }
        }
    }

    /// True while a request is partly received (used by the driver to tell an idle connection from a slow one).
    pub fn in_progress(&self) -> bool {
        self.swallow > 0 || self.text.in_progress() || self.binary.in_progress()
    }
}

/// Converts a key to a printable string for logs (lossy).
pub fn key_for_log(key: &Bytes) -> String {
    String::from_utf8_lossy(key).into_owned()
}
