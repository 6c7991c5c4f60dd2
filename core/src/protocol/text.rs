//! memcached's text protocol as a Flare node speaks it (protocol.md §1, §4, §5, §9), plus the meta commands
//! (parsed by [`super::meta`]).
//!
//! A request is a line ending in `\n` (a `\r` before it is dropped), tokens separated by one or more spaces. Storage
//! commands and `ms` are followed by a data block of exactly `<bytes>` bytes and `\r\n`; `node sync` by `NODE` lines
//! and `END`. The parser keeps a little state between calls so that nothing is rescanned:
//! - while a line is incomplete, how far it has been searched for `\n` ([`TextParser::scanned`]);
//! - once a storage line is parsed, the request waiting for its data block, consumed as soon as the whole block is
//!   buffered (the value is split off the read buffer without a copy);
//! - inside `node sync`, the `NODE` lines read so far.
//!
//! Limits are checked before buffering: a line longer than [`Limits::line_max`] is answered with
//! `CLIENT_ERROR line too long` and the connection closed (the stream cannot be resynchronised), except a retrieval
//! line (`get`, `gets`, `gat`, `gats`), whose keys are handed out in parts as they arrive ([`Parsed::Part`]), so
//! a multi-get of any number of keys is answered with memory bounded by one part; a value over
//! [`Limits::item_size_max`] is answered with `SERVER_ERROR object too large for cache` and its data block skipped.
//! A malformed known command answers `CLIENT_ERROR bad command line format` and, when its `<bytes>` could be read,
//! skips its data block too (protocol.md §4.1 [Improve]); unknown commands and malformed admin commands answer
//! `ERROR`, as Flare does. Where memcached 1.6 answers otherwise, the node answers as memcached (docs/compatibility.md
//! "Malformed commands"): a classic command without its arguments is `ERROR`, `delete` refuses a hold time unless
//! it has Flare's version too or comes from another node, and a line that looks like an HTTP request closes the
//! connection without a reply.

use bytes::{Buf, Bytes, BytesMut};

// The lexers live in `lex` and `lines` (meta, reply, admin and forward use them too); re-exported for the callers
// that name them here.
pub use super::lex::{parse_i64, parse_u32, parse_u64, Tokens};
pub use super::lines::node as parse_node_line;
use super::{lines, meta};
use super::{
    ArithOp, Command, DumpArgs, ErrorReply, Framing, Limits, LineError, NodeLine, Parsed,
    ProxyPath, ReplicationMode, Request, StatsGroup, StoreMode, StoreRequest, WriteOptions,
};

/// Behaviour switches of the text dialect (from the node configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dialect {
    /// Flare's `gat <key> <exptime> [noreply]` instead of memcached's `gat <exptime> <key>+` (decisions.md #2).
    pub gat_flare_syntax: bool,
    /// Flare's incr/decr: a negative delta is accepted and wraps (protocol.md §4.8).
    pub incr_flare_semantics: bool,
}

/// Incremental text-protocol parser for one connection.
#[derive(Debug)]
pub struct TextParser {
    limits: Limits,
    dialect: Dialect,
    state: State,
    /// Bytes at the front of the buffer already searched for `\n` (the current line is incomplete).
    scanned: usize,
}

/// What the parser is in the middle of.
#[derive(Debug)]
enum State {
    /// Between requests, or inside an incomplete line.
    Line,
    /// A command line was consumed; its data block of `len` bytes (+ `\r\n`) is awaited.
    Data {
        framing: Framing,
        pending: Pending,
        len: usize,
    },
    /// Inside a retrieval line (`get`, `gets`, `gat`, `gats`) longer than [`Limits::line_max`]: its head (verb,
    /// exptime) is consumed and its keys are handed out a part at a time as they arrive ([`Parsed::Part`]), the
    /// last part (at the line's end) as a plain request, so memory is bounded by one part, not the line.
    Retrieval {
        framing: Framing,
        cas: bool,
        /// `Some(exptime)` for `gat`/`gats`.
        gat: Option<i64>,
    },
    /// A streamed retrieval line was refused part-way: the rest of it is discarded.
    SkipLine,
    /// `node sync <version>` was consumed; `NODE` lines until `END` are awaited.
    NodeSync {
        framing: Framing,
        version: u64,
        nodes: Vec<NodeLine>,
        /// A malformed `NODE` line was seen: answer `CLIENT_ERROR format error` at `END`.
        malformed: bool,
    },
}

/// A whole line longer than [`Limits::line_max`].
struct TooLong;

/// A request that waits for its data block.
#[derive(Debug)]
enum Pending {
    Store(StoreRequest),
    Meta(meta::MetaCommand),
}

/// What one command line turned into.
enum LineOutcome {
    Done(Command),
    NeedData { pending: Pending, len: usize },
    NodeSync { version: u64 },
}

impl TextParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits, dialect: Dialect) -> Self {
        TextParser {
            limits,
            dialect,
            state: State::Line,
            scanned: 0,
        }
    }

    /// Parses the next request from `buf`.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Parsed {
        loop {
            match std::mem::replace(&mut self.state, State::Line) {
                State::Line => {
                    let line = match self.take_line(buf) {
                        Ok(Some(line)) => line,
                        Ok(None) if buf.len() <= self.limits.line_max + 1 => {
                            return Parsed::NeedMore
                        }
                        // `+ 1` above leaves room for the `\r` of a line of exactly `line_max` bytes.
                        Ok(None) | Err(TooLong) => match self.start_retrieval(buf) {
                            Ok(Some(state)) => {
                                self.state = state;
                                continue;
                            }
                            Ok(None) => return self.line_too_long(buf),
                            Err(e) => return self.refuse_streamed(buf, Framing::TEXT, e),
                        },
                    };
                    let (framing, rest) = match split_proxy(&line) {
                        Some((path, rest)) => (Framing::Text { proxy: Some(path) }, rest),
                        None => (Framing::TEXT, line),
                    };
                    let proxied = matches!(framing, Framing::Text { proxy: Some(_) });
                    match self.parse_line(&rest, proxied) {
                        Ok(LineOutcome::Done(command)) => {
                            return Parsed::Request(Request { command, framing })
                        }
                        Ok(LineOutcome::NeedData { pending, len }) => {
                            self.state = State::Data {
                                framing,
                                pending,
                                len,
                            }
                        }
                        Ok(LineOutcome::NodeSync { version }) => {
                            self.state = State::NodeSync {
                                framing,
                                version,
                                nodes: Vec::new(),
                                malformed: false,
                            }
                        }
                        Err(e) => {
                            return Parsed::Rejected {
                                framing,
                                error: silenced(&rest, e.error),
                                swallow: e.swallow,
                                close: e.close,
                            }
                        }
                    }
                }
                State::Data {
                    framing,
                    pending,
                    len,
                } => {
                    if buf.len() < len + 2 {
                        self.state = State::Data {
                            framing,
                            pending,
                            len,
                        };
                        return Parsed::NeedMore;
                    }
                    let value = buf.split_to(len).freeze();
                    let ok = &buf[..2] == b"\r\n";
                    buf.advance(2);
                    if !ok {
                        // memcached's `noreply` silences this error too.
                        let quiet = matches!(&pending, Pending::Store(s) if s.options.noreply);
                        return Parsed::Rejected {
                            framing,
                            error: if quiet {
                                ErrorReply::Silent
                            } else {
                                ErrorReply::BadDataChunk
                            },
                            swallow: 0,
                            close: false,
                        };
                    }
                    let command = match pending {
                        Pending::Store(mut s) => {
                            s.value = value;
                            Command::Store(s)
                        }
                        Pending::Meta(mut m) => {
                            m.set_value(value);
                            Command::Meta(m)
                        }
                    };
                    return Parsed::Request(Request { command, framing });
                }
                State::Retrieval { framing, cas, gat } => {
                    match self.retrieval_part(buf, cas, gat) {
                        Ok(Some((command, last))) => {
                            let request = Request {
                                command,
                                framing: framing.clone(),
                            };
                            if last {
                                return Parsed::Request(request);
                            }
                            self.state = State::Retrieval { framing, cas, gat };
                            return Parsed::Part(request);
                        }
                        Ok(None) => {
                            self.state = State::Retrieval { framing, cas, gat };
                            return Parsed::NeedMore;
                        }
                        Err(e) => return self.refuse_streamed(buf, framing, e),
                    }
                }
                State::SkipLine => match memchr::memchr(b'\n', buf) {
                    Some(i) => buf.advance(i + 1),
                    None => {
                        buf.clear();
                        self.state = State::SkipLine;
                        return Parsed::NeedMore;
                    }
                },
                State::NodeSync {
                    framing,
                    version,
                    mut nodes,
                    mut malformed,
                } => {
                    let line = match self.take_line(buf) {
                        Ok(Some(line)) => line,
                        Ok(None) => {
                            self.state = State::NodeSync {
                                framing,
                                version,
                                nodes,
                                malformed,
                            };
                            return self.incomplete_line(buf);
                        }
                        Err(TooLong) => return self.line_too_long(buf),
                    };
                    if lines::is_end(&line) {
                        if malformed {
                            return Parsed::Rejected {
                                framing,
                                error: ErrorReply::Client("format error".into()),
                                swallow: 0,
                                close: false,
                            };
                        }
                        return Parsed::Request(Request {
                            command: Command::NodeSync { version, nodes },
                            framing,
                        });
                    }
                    match lines::node(&line) {
                        Some(n) if nodes.len() < self.limits.nodes_max => nodes.push(n),
                        _ => malformed = true,
                    }
                    self.state = State::NodeSync {
                        framing,
                        version,
                        nodes,
                        malformed,
                    };
                }
            }
        }
    }

    /// True while a request is partly received.
    pub fn in_progress(&self) -> bool {
        self.scanned > 0 || !matches!(self.state, State::Line)
    }

    /// Splits the next whole line (without its `\r\n`) off `buf`, or `None` if it has not all arrived. A line
    /// longer than the cap (proxy prefix included) is rejected and the connection is to be closed.
    fn take_line(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, TooLong> {
        let from = self.scanned.min(buf.len());
        match memchr::memchr(b'\n', &buf[from..]) {
            Some(i) => {
                self.scanned = 0;
                let end = from + i;
                let cr = usize::from(end > 0 && buf[end - 1] == b'\r');
                if end - cr > self.limits.line_max {
                    // Left in the buffer: a retrieval line is streamed from it.
                    return Err(TooLong);
                }
                let mut line = buf.split_to(end + 1);
                line.truncate(end - cr);
                Ok(Some(line.freeze()))
            }
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }

    fn line_too_long(&mut self, buf: &mut BytesMut) -> Parsed {
        buf.clear();
        self.scanned = 0;
        self.state = State::Line;
        Parsed::Rejected {
            framing: Framing::TEXT,
            error: ErrorReply::LineTooLong,
            swallow: 0,
            close: true,
        }
    }

    /// The answer for a line that has not ended yet: wait, or reject it once it is longer than the cap.
    fn incomplete_line(&mut self, buf: &mut BytesMut) -> Parsed {
        // `+ 1` leaves room for the `\r` of a line of exactly `line_max` bytes.
        if buf.len() > self.limits.line_max + 1 {
            return self.line_too_long(buf);
        }
        Parsed::NeedMore
    }

    /// At a line longer than the cap: when it is a retrieval line (memcached's `get`, `gets`, `gat`, `gats`, after
    /// an optional proxy prefix) whose head has arrived, consumes the head and returns the streaming state; `None`
    /// for any other line (too long).
    fn start_retrieval(&mut self, buf: &mut BytesMut) -> Result<Option<State>, LineError> {
        self.scanned = 0;
        let head_max = self.limits.line_max.min(buf.len());
        let (framing, skip) = match buf.first() {
            Some(b'<') => match memchr::memchr(b'>', &buf[..head_max]) {
                Some(close) => {
                    let prefix = Bytes::copy_from_slice(&buf[..close + 1]);
                    let (path, _) =
                        split_proxy(&prefix).expect("invariant: starts with < and has >");
                    (Framing::Text { proxy: Some(path) }, close + 1)
                }
                None => return Ok(None),
            },
            _ => (Framing::TEXT, 0),
        };
        let head = &buf[skip..head_max];
        let mut tokens = Tokens::new(head);
        let (cas, gat) = match tokens.next() {
            Some(b"get") => (false, false),
            Some(b"gets") => (true, false),
            Some(b"gat") if !self.dialect.gat_flare_syntax => (false, true),
            Some(b"gats") => (true, true),
            _ => return Ok(None),
        };
        let gat = match gat {
            false => None,
            true => {
                let exptime = tokens
                    .next()
                    .ok_or(LineError::new(ErrorReply::UnknownCommand))?;
                Some(parse_i64(exptime).ok_or(LineError::new(ErrorReply::InvalidExptime))?)
            }
        };
        // The head ends at the last token read, which a space ends (the line is longer than the cap).
        let consumed = head.len() - tokens.rest().len();
        buf.advance(skip + consumed);
        Ok(Some(State::Retrieval { framing, cas, gat }))
    }

    /// The next part of a streamed retrieval line: `(command, last)`, or `None` until a whole key has arrived. A
    /// part ends at a space and holds at most `keys_per_get_max` keys in at most half a line's worth of bytes, so
    /// each part forwarded to another node fits in one line.
    fn retrieval_part(
        &mut self,
        buf: &mut BytesMut,
        cas: bool,
        gat: Option<i64>,
    ) -> Result<Option<(Command, bool)>, LineError> {
        let part_bytes = (self.limits.line_max / 2).max(self.limits.key_max + 1);
        let window = &buf[..buf.len().min(part_bytes + 2)];
        let newline = memchr::memchr(b'\n', window);
        let mut region = &window[..newline.unwrap_or(window.len())];
        if newline.is_some() && region.last() == Some(&b'\r') {
            region = &region[..region.len() - 1];
        }
        // Whole keys in the region: a key is whole when a space or the line's end follows it.
        let (mut pos, mut count, mut full) = (0, 0, false);
        while count < self.limits.keys_per_get_max.max(1) {
            let Some(start) = region[pos..].iter().position(|&c| c != b' ') else {
                pos = region.len();
                break;
            };
            match memchr::memchr(b' ', &region[pos + start..]) {
                Some(len) => pos += start + len,
                None if newline.is_some() => pos = region.len(),
                None => break,
            }
            count += 1;
            full = count == self.limits.keys_per_get_max.max(1);
        }
        let (end, last) = match newline {
            Some(nl) if !full || region[pos..].iter().all(|&c| c == b' ') => (nl, true),
            _ if count > 0 => (pos, false),
            _ if buf.len() > self.limits.key_max + 1 => {
                return Err(LineError::new(ErrorReply::BadCommandLine))
            }
            _ => return Ok(None),
        };
        // The keys before a bad one go out as a part of their own; the bad one is refused at the next call.
        let (mut end, mut last) = (end, last);
        let text_end = end - usize::from(last && end > 0 && buf[end - 1] == b'\r');
        let mut scan = Tokens::new(&buf[..text_end]);
        let mut first = true;
        while let Some(token) = scan.next() {
            if let Err(e) = check_key(token, &self.limits) {
                if first {
                    return Err(LineError::new(e));
                }
                end = (text_end - scan.rest().len()) - token.len();
                last = false;
                break;
            }
            first = false;
        }
        let mut chunk = buf.split_to(end).freeze();
        if last {
            buf.advance(1);
            if chunk.last() == Some(&b'\r') {
                chunk.truncate(chunk.len() - 1);
            }
        }
        let keys = self.keys(&chunk, Tokens::new(&chunk))?;
        if keys.is_empty() && !last {
            return Ok(None);
        }
        let command = match gat {
            None => Command::Get { keys, cas },
            Some(exptime) => Command::Gat {
                exptime,
                keys,
                cas,
                flare_form: false,
                noreply: false,
            },
        };
        Ok(Some((command, last)))
    }

    /// A streamed retrieval line refused part-way: the error, then the rest of the line is discarded.
    fn refuse_streamed(&mut self, buf: &mut BytesMut, framing: Framing, e: LineError) -> Parsed {
        self.state = State::SkipLine;
        if let Some(i) = memchr::memchr(b'\n', buf) {
            buf.advance(i + 1);
            self.state = State::Line;
        } else {
            buf.clear();
        }
        Parsed::Rejected {
            framing,
            error: e.error,
            swallow: 0,
            close: false,
        }
    }

    /// Parses one command line (after any proxy prefix; `proxied` when there was one).
    fn parse_line(&self, line: &Bytes, proxied: bool) -> Result<LineOutcome, LineError> {
        let mut tokens = Tokens::new(line);
        let Some(name) = tokens.next() else {
            return Err(LineError::new(ErrorReply::UnknownCommand));
        };
        let done = |c| Ok(LineOutcome::Done(c));
        match name {
            b"get" | b"gets" => done(self.parse_get(line, tokens, name == b"gets")?),
            b"gat" | b"gats" => done(self.parse_gat(line, tokens, name == b"gats")?),
            b"set" => self.parse_store(line, tokens, StoreMode::Set),
            b"add" => self.parse_store(line, tokens, StoreMode::Add),
            b"replace" => self.parse_store(line, tokens, StoreMode::Replace),
            b"append" => self.parse_store(line, tokens, StoreMode::Append),
            b"prepend" => self.parse_store(line, tokens, StoreMode::Prepend),
            b"cas" => self.parse_store(line, tokens, StoreMode::Cas),
            b"delete" => done(self.parse_delete(line, tokens, proxied)?),
            b"incr" => done(self.parse_arith(line, tokens, ArithOp::Incr)?),
            b"decr" => done(self.parse_arith(line, tokens, ArithOp::Decr)?),
            b"touch" => done(self.parse_touch(line, tokens)?),
            b"flush_all" => done(parse_flush_all(tokens)?),
            b"verbosity" => done(parse_verbosity(tokens)?),
            // memcached 1.6 ignores tokens after `version`, and clients that detect it (memcapable) rely on that;
            // Flare answers ERROR. No Flare tool sends arguments, so we follow memcached.
            b"version" => done(Command::Version),
            b"quit" => done(Command::Quit),
            b"ping" => done(no_args(tokens, Command::Ping)?),
            b"stats" => done(parse_stats(tokens)?),
            b"dump" => done(Command::Dump(parse_dump(tokens, true)?)),
            b"dump_key" => done(Command::DumpKey(parse_dump(tokens, false)?)),
            b"keys" => done(self.parse_keys(line, tokens)?),
            b"show" => match (tokens.next(), tokens.next()) {
                (Some(b"variables"), None) => done(Command::ShowVariables),
                _ => Err(LineError::new(ErrorReply::UnknownCommand)),
            },
            b"kill" => match (tokens.next().and_then(parse_u64), tokens.next()) {
                (Some(id), None) => done(Command::Kill(id)),
                _ => Err(LineError::new(ErrorReply::UnknownCommand)),
            },
            b"shutdown" => done(parse_shutdown(tokens)?),
            b"node" => match (
                tokens.next(),
                tokens.next().and_then(parse_u64),
                tokens.next(),
            ) {
                (Some(b"sync"), Some(version), None) => Ok(LineOutcome::NodeSync { version }),
                // node add/role/state/remove are index commands (protocol.md §5.8).
                _ => Err(LineError::new(ErrorReply::UnknownCommand)),
            },
            b"mg" | b"ms" | b"md" | b"ma" | b"mn" | b"me" => {
                let all: Vec<&[u8]> = Tokens::new(line).collect();
                match meta::parse(line, &all, &self.limits)? {
                    meta::MetaParsed::Ready(m) => done(Command::Meta(m)),
                    meta::MetaParsed::NeedData { command, len } => Ok(LineOutcome::NeedData {
                        pending: Pending::Meta(command),
                        len,
                    }),
                }
            }
            _ => Err(unknown_command(name, line)),
        }
    }

    fn key(&self, line: &Bytes, token: &[u8]) -> Result<Bytes, LineError> {
        check_key(token, &self.limits).map_err(LineError::new)?;
        Ok(line.slice_ref(token))
    }

    fn keys<'a>(
        &self,
        line: &Bytes,
        tokens: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Vec<Bytes>, LineError> {
        let mut keys = Vec::new();
        for t in tokens {
            if keys.len() == self.limits.keys_per_get_max {
                return Err(LineError::new(ErrorReply::BadCommandLine));
            }
            keys.push(self.key(line, t)?);
        }
        Ok(keys)
    }

    /// `get <key>+`, `gets <key>+` (§4.5).
    fn parse_get(&self, line: &Bytes, tokens: Tokens<'_>, cas: bool) -> Result<Command, LineError> {
        let keys = self.keys(line, tokens)?;
        if keys.is_empty() {
            return Err(LineError::new(ErrorReply::UnknownCommand));
        }
        Ok(Command::Get { keys, cas })
    }

    /// `gat <exptime> <key>+`, `gats <exptime> <key>+`, or Flare's `gat <key> <exptime> [noreply]` (§4.6).
    fn parse_gat(
        &self,
        line: &Bytes,
        mut tokens: Tokens<'_>,
        cas: bool,
    ) -> Result<Command, LineError> {
        let missing = || LineError::new(ErrorReply::UnknownCommand);
        let bad_exptime = || LineError::new(ErrorReply::InvalidExptime);
        if self.dialect.gat_flare_syntax && !cas {
            let key = self.key(line, tokens.next().ok_or_else(missing)?)?;
            let exptime = tokens.next().ok_or_else(missing)?;
            let exptime = parse_i64(exptime).ok_or_else(bad_exptime)?;
            let noreply = parse_noreply_only(tokens)?;
            return Ok(Command::Gat {
                exptime,
                keys: vec![key],
                cas,
                flare_form: true,
                noreply,
            });
        }
        // memcached: `gat` alone is an unknown command, `gat <exptime>` without keys answers `END`.
        let exptime = tokens.next().ok_or_else(missing)?;
        let exptime = parse_i64(exptime).ok_or_else(bad_exptime)?;
        let keys = self.keys(line, tokens)?;
        Ok(Command::Gat {
            exptime,
            keys,
            cas,
            flare_form: false,
            noreply: false,
        })
    }

    /// `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [<version>] [options]` and
    /// `cas <key> <flags> <exptime> <bytes> <cas unique> [options]` (§4.4).
    fn parse_store(
        &self,
        line: &Bytes,
        mut tokens: Tokens<'_>,
        mode: StoreMode,
    ) -> Result<LineOutcome, LineError> {
        // Too few arguments is an unknown command, as in memcached (which counts tokens before anything else):
        // there is no <bytes> to skip.
        let needed = if mode == StoreMode::Cas { 5 } else { 4 };
        if tokens.clone().take(needed).count() < needed {
            return Err(LineError::new(ErrorReply::UnknownCommand));
        }
        let (key, flags, exptime, bytes) =
            (tokens.next(), tokens.next(), tokens.next(), tokens.next());
        // Read <bytes> first: every later error skips the data block the client is about to send.
        // A length memcached cannot add its `\r\n` to in an int (over 2^31-3) is a parse error, as in memcached:
        // there is no sane amount to skip.
        let Some(len) = bytes.and_then(parse_u64).filter(|l| *l <= LENGTH_MAX) else {
            return Err(LineError::new(ErrorReply::BadCommandLine));
        };
        let swallow = len.saturating_add(2);
        let fail = |error| LineError {
            error,
            swallow,
            close: false,
        };
        if len > u64::from(self.limits.item_size_max) {
            return Err(fail(ErrorReply::TooLarge));
        }
        let key = key.ok_or_else(|| fail(ErrorReply::BadCommandLine))?;
        check_key(key, &self.limits).map_err(fail)?;
        let flags = flags
            .and_then(parse_u32)
            .ok_or_else(|| fail(ErrorReply::BadCommandLine))?;
        let exptime = exptime
            .and_then(parse_i64)
            .ok_or_else(|| fail(ErrorReply::BadCommandLine))?;
        let mut rest = tokens.peekable();
        let number = rest.next_if(|t| t.first().is_some_and(u8::is_ascii_digit));
        let number = match number {
            Some(t) => Some(parse_u64(t).ok_or_else(|| fail(ErrorReply::BadCommandLine))?),
            None => None,
        };
        let (cas_unique, version) = match (mode, number) {
            (StoreMode::Cas, Some(c)) => (c, None),
            (StoreMode::Cas, None) => return Err(fail(ErrorReply::BadCommandLine)),
            (_, v) => (0, v),
        };
        let options = parse_write_options(rest).map_err(|e| fail(e.error))?;
        Ok(LineOutcome::NeedData {
            pending: Pending::Store(StoreRequest {
                mode,
                key: line.slice_ref(key),
                flags,
                exptime,
                value: Bytes::new(),
                cas_unique,
                version,
                options,
            }),
            // len <= item_size_max <= 2^31-1, so it fits a usize.
            len: len as usize,
        })
    }

    /// `delete <key> [<time>] [<version>] [options]` (§4.7), in two dialects:
    /// - Flare's whole form, for a proxied line (what nodes send each other: a forwarded delete, a replicated
    ///   tombstone `delete <key> <hold> <version>`) and for any line with both a time and a version (Flare's
    ///   explicit-version form, allowed to clients by `allow-client-version`);
    /// - otherwise memcached 1.6's: `delete <key> [0] [noreply]` (with Flare's `sync`/`async` too), at most three
    ///   arguments; a hold time, which memcached dropped in 1.4, or anything else answers memcached's usage line
    ///   (nothing when the last argument is `noreply`).
    fn parse_delete(
        &self,
        line: &Bytes,
        tokens: Tokens<'_>,
        proxied: bool,
    ) -> Result<Command, LineError> {
        let args: Vec<&[u8]> = tokens.collect();
        let Some((key, rest)) = args.split_first() else {
            return Err(LineError::new(ErrorReply::UnknownCommand));
        };
        let key = self.key(line, key)?;
        let numeric = |t: &[u8]| t.first().is_some_and(|c| c.is_ascii_digit() || *c == b'-');
        let flare_form = proxied || (rest.len() >= 2 && numeric(rest[0]) && numeric(rest[1]));
        let (hold, version, options) = if flare_form {
            let mut rest = rest.iter().copied().peekable();
            let bad = || LineError::new(ErrorReply::BadCommandLine);
            let hold = match rest.next_if(|t| numeric(t)) {
                Some(t) => parse_i64(t).ok_or_else(bad)?,
                None => 0,
            };
            let version = match rest.next_if(|t| numeric(t)) {
                Some(t) => Some(parse_u64(t).ok_or_else(bad)?),
                None => None,
            };
            (hold, version, parse_write_options(rest)?)
        } else {
            if rest.len() > 2 {
                return Err(LineError::new(ErrorReply::UnknownCommand));
            }
            let options = match rest.split_first() {
                Some((&b"0", options)) => options,
                _ => rest,
            };
            // As in memcached, a last `noreply` silences the usage line.
            let refused = match rest.last() {
                Some(&b"noreply") => ErrorReply::Silent,
                _ => ErrorReply::DeleteUsage,
            };
            let options = parse_write_options(options.iter().copied())
                .map_err(|_| LineError::new(refused))?;
            (0, None, options)
        };
        Ok(Command::Delete {
            key,
            hold,
            version,
            cas: None,
            options,
        })
    }

    /// `incr|decr <key> <delta> [options]` (§4.8).
    fn parse_arith(
        &self,
        line: &Bytes,
        mut tokens: Tokens<'_>,
        op: ArithOp,
    ) -> Result<Command, LineError> {
        let missing = || LineError::new(ErrorReply::UnknownCommand);
        // memcached takes `incr <key> <delta> [noreply]`: more arguments are `ERROR` before anything is read,
        // except Flare's pair of write options (`noreply` and one of `sync`, `async`, in either order).
        let rest: Vec<&[u8]> = tokens.clone().skip(2).collect();
        let flare_pair = matches!(
            rest[..],
            [b"noreply", b"sync" | b"async"] | [b"sync" | b"async", b"noreply"]
        );
        if rest.len() > 1 && !flare_pair {
            return Err(missing());
        }
        let key = self.key(line, tokens.next().ok_or_else(missing)?)?;
        let delta = tokens.next().ok_or_else(missing)?;
        let delta = match parse_u64(delta) {
            Some(d) => d,
            // Flare wraps a negative delta to a huge unsigned value.
            None if self.dialect.incr_flare_semantics && delta.first() == Some(&b'-') => {
                parse_i64(delta).ok_or_else(|| LineError::new(ErrorReply::InvalidDelta))? as u64
            }
            None => return Err(LineError::new(ErrorReply::InvalidDelta)),
        };
        // memcached ignores a single last word that is not `noreply`.
        let options = parse_write_options(
            tokens.filter(|t| rest.len() > 1 || matches!(*t, b"noreply" | b"sync" | b"async")),
        )?;
        Ok(Command::Arith {
            op,
            key,
            delta,
            create: None,
            cas: None,
            options,
        })
    }

    /// `touch <key> <exptime> [noreply]` (§4.9).
    fn parse_touch(&self, line: &Bytes, mut tokens: Tokens<'_>) -> Result<Command, LineError> {
        let missing = || LineError::new(ErrorReply::UnknownCommand);
        // memcached takes `touch <key> <exptime> [noreply]`: more arguments are `ERROR` before anything is read.
        if tokens.clone().count() > 3 {
            return Err(missing());
        }
        let key = self.key(line, tokens.next().ok_or_else(missing)?)?;
        let exptime = tokens.next().ok_or_else(missing)?;
        let exptime = parse_i64(exptime).ok_or(LineError::new(ErrorReply::InvalidExptime))?;
        // memcached looks only for a last `noreply`; another word there is ignored.
        let noreply = tokens.next() == Some(&b"noreply"[..]);
        Ok(Command::Touch {
            key,
            exptime,
            noreply,
        })
    }

    /// `keys <prefix> [<prefix>...] <limit>` (§5.4).
    fn parse_keys(&self, line: &Bytes, tokens: Tokens<'_>) -> Result<Command, LineError> {
        let all: Vec<&[u8]> = tokens.collect();
        let Some((limit, prefixes)) = all.split_last() else {
            return Err(LineError::new(ErrorReply::UnknownCommand));
        };
        let limit = parse_u64(limit).filter(|l| *l > 0);
        match limit {
            Some(limit) if !prefixes.is_empty() => Ok(Command::Keys {
                prefixes: self.keys(line, prefixes.iter().copied())?,
                limit,
            }),
            _ => Err(LineError::new(ErrorReply::UnknownCommand)),
        }
    }
}

/// Flare's proxy prefix: a line starting with `<` and containing `>` (protocol.md §9). Returns the node keys and the
/// rest of the line.
pub fn split_proxy(line: &Bytes) -> Option<(ProxyPath, Bytes)> {
    if line.first() != Some(&b'<') {
        return None;
    }
    let close = memchr::memchr(b'>', line)?;
    let inner = line.slice(1..close);
    let path = inner
        .split(|&c| c == b',')
        .filter(|k| !k.is_empty())
        .map(|k| inner.slice_ref(k))
        .collect();
    Some((ProxyPath(path), line.slice(close + 1..)))
}

/// A key is 1..=key_max bytes of [`super::key_byte_ok`] characters.
pub fn check_key(key: &[u8], limits: &Limits) -> Result<(), ErrorReply> {
    if key.is_empty() {
        return Err(ErrorReply::BadCommandLine);
    }
    if key.len() > limits.key_max {
        return Err(ErrorReply::KeyTooLong);
    }
    if !key.iter().all(|&c| super::key_byte_ok(c)) {
        return Err(ErrorReply::BadCommandLine);
    }
    Ok(())
}

/// `noreply`, `sync`, `async` in any order (§4.2). An unknown token is a bad command line.
fn parse_write_options<'a>(
    tokens: impl Iterator<Item = &'a [u8]>,
) -> Result<WriteOptions, LineError> {
    let mut o = WriteOptions::default();
    for t in tokens {
        match t {
            b"noreply" => o.noreply = true,
            b"sync" => o.replication = ReplicationMode::Sync,
            b"async" => o.replication = ReplicationMode::Async,
            _ => return Err(LineError::new(ErrorReply::BadCommandLine)),
        }
    }
    Ok(o)
}

/// Commands that take only `noreply` (touch, Flare's gat).
fn parse_noreply_only<'a>(mut tokens: impl Iterator<Item = &'a [u8]>) -> Result<bool, LineError> {
    match (tokens.next(), tokens.next()) {
        (None, _) => Ok(false),
        (Some(b"noreply"), None) => Ok(true),
        _ => Err(LineError::new(ErrorReply::BadCommandLine)),
    }
}

/// `flush_all [<delay>] [noreply]` (§4.10), as memcached 1.6 reads it: at most two arguments (more: `ERROR`),
/// `noreply` when it is the last; the first is the delay unless it is that `noreply`, and a delay that is not a
/// number answers `CLIENT_ERROR invalid exptime argument` (nothing with `noreply`; nothing is flushed either way). A
/// second argument that is not `noreply` is ignored, as memcached ignores it, except Flare's `sync`, which a node
/// refuses (a flush is never waited for on slaves).
fn parse_flush_all(tokens: Tokens<'_>) -> Result<Command, LineError> {
    let args: Vec<&[u8]> = tokens.collect();
    if args.len() > 2 {
        return Err(LineError::new(ErrorReply::UnknownCommand));
    }
    if args.get(1) == Some(&&b"sync"[..]) {
        return Err(LineError::new(ErrorReply::BadCommandLine));
    }
    let noreply = args.last() == Some(&&b"noreply"[..]);
    let delay = match args.first() {
        None => 0,
        Some(_) if noreply && args.len() == 1 => 0,
        Some(t) => match parse_i64(t) {
            Some(d) => d,
            None if noreply => return Err(LineError::new(ErrorReply::Silent)),
            None => return Err(LineError::new(ErrorReply::InvalidExptime)),
        },
    };
    Ok(Command::FlushAll { delay, noreply })
}

/// memcached reads a last `noreply` token of the commands that take one before it checks their arguments, and
/// then sends no error either: a refused line of those commands ending in `noreply` is answered with nothing (a
/// missing argument, which memcached finds first, still answers `ERROR`).
fn silenced(line: &[u8], error: ErrorReply) -> ErrorReply {
    const TAKE_NOREPLY: &[&[u8]] = &[
        b"set",
        b"add",
        b"replace",
        b"append",
        b"prepend",
        b"cas",
        b"incr",
        b"decr",
        b"delete",
        b"touch",
        b"verbosity",
        b"flush_all",
    ];
    let mut tokens = Tokens::new(line);
    let first = tokens.next();
    match (first, tokens.last(), &error) {
        (_, _, ErrorReply::UnknownCommand) => error,
        (Some(name), Some(b"noreply"), _) if TAKE_NOREPLY.contains(&name) => ErrorReply::Silent,
        _ => error,
    }
}

/// `verbosity <level> [noreply]` (§4.11), as memcached 1.6 reads it: one or two arguments (otherwise `ERROR`),
/// `noreply` when it is the last, a level that is not a number answers `CLIENT_ERROR bad command line format`
/// (nothing with `noreply`), a second argument that is not `noreply` is ignored. The level changes nothing.
fn parse_verbosity(tokens: Tokens<'_>) -> Result<Command, LineError> {
    let args: Vec<&[u8]> = tokens.collect();
    if args.is_empty() || args.len() > 2 {
        return Err(LineError::new(ErrorReply::UnknownCommand));
    }
    let noreply = args.last() == Some(&&b"noreply"[..]);
    if parse_u64(args[0]).is_none() && !noreply {
        return Err(LineError::new(ErrorReply::BadCommandLine));
    }
    Ok(Command::Verbosity { noreply })
}

/// The answer to a line whose command is unknown: `ERROR`, except that a line that looks like an HTTP request is
/// dropped and the connection closed without a reply, as memcached 1.6 guards against cross-protocol requests. Its
/// rule, found by testing 1.6.18: the command is at least two bytes and does not begin with a letter memcached
/// dispatches on (`a c d g i s t`, whose unknown commands answer `ERROR` at once), and the last of the line's first
/// 23 tokens (memcached tokenizes at most 24, the last being the rest of the line) begins with `HTTP/`.
fn unknown_command(name: &[u8], line: &[u8]) -> LineError {
    let dispatched = matches!(
        name.first(),
        Some(b'a' | b'c' | b'd' | b'g' | b'i' | b's' | b't')
    );
    let last = Tokens::new(line).take(HTTP_TOKENS_MAX).last();
    if name.len() >= 2 && !dispatched && last.is_some_and(|t| t.starts_with(b"HTTP/")) {
        return LineError::close(ErrorReply::Silent);
    }
    LineError::new(ErrorReply::UnknownCommand)
}

/// How many tokens of a line memcached looks at for its HTTP guard ([`unknown_command`]).
const HTTP_TOKENS_MAX: usize = 23;

/// The longest `<bytes>` of a storage command: memcached adds 2 (for `\r\n`) to it in an `int`, and refuses the
/// line as `CLIENT_ERROR bad command line format` above 2^31-3. (So even with `max-item-size` at its hard maximum,
/// 2^31-1, a text client's value is at most 2^31-3 bytes.)
pub const LENGTH_MAX: u64 = i32::MAX as u64 - 2;

fn no_args(mut tokens: Tokens<'_>, command: Command) -> Result<Command, LineError> {
    match tokens.next() {
        None => Ok(command),
        Some(_) => Err(LineError::new(ErrorReply::UnknownCommand)),
    }
}

/// `stats [items|slabs|sizes|settings|nodes|threads [request|slave|queue]]` (§4.12), and memcached's
/// `stats cachedump <class> <limit>` with its errors (words after the limit are ignored, as memcached does).
fn parse_stats(mut tokens: Tokens<'_>) -> Result<Command, LineError> {
    let mut ahead = tokens.clone();
    if ahead.next() == Some(&b"cachedump"[..]) {
        let (Some(class), Some(limit)) = (ahead.next(), ahead.next()) else {
            return Err(LineError::new(ErrorReply::Client(
                "bad command line".into(),
            )));
        };
        let bad = || LineError::new(ErrorReply::BadCommandLine);
        let class = parse_u32(class).ok_or_else(bad)?;
        let limit = parse_u32(limit).ok_or_else(bad)?;
        return match u8::try_from(class) {
            Ok(class) if class < 64 => Ok(Command::CacheDump { class, limit }),
            _ => Err(LineError::new(ErrorReply::Client("Illegal slab id".into()))),
        };
    }
    let group = match (tokens.next(), tokens.next(), tokens.next()) {
        (None, _, _) => StatsGroup::General,
        (Some(b"items"), None, _) => StatsGroup::Items,
        (Some(b"slabs"), None, _) => StatsGroup::Slabs,
        (Some(b"sizes"), None, _) => StatsGroup::Sizes,
        (Some(b"settings"), None, _) => StatsGroup::Settings,
        (Some(b"nodes"), None, _) => StatsGroup::Nodes,
        (Some(b"threads"), None, _) => StatsGroup::Threads,
        (Some(b"threads"), Some(b"request"), None) => StatsGroup::ThreadsRequest,
        (Some(b"threads"), Some(b"slave"), None) => StatsGroup::ThreadsSlave,
        (Some(b"threads"), Some(b"queue"), None) => StatsGroup::ThreadsQueue,
        _ => return Err(LineError::new(ErrorReply::UnknownCommand)),
    };
    Ok(Command::Stats(group))
}

/// `dump [<wait_usec>] [<partition>] [<partition_count>] [<bwlimit>]` and
/// `dump_key [<partition>] [<partition_count>] [<bwlimit>]` (§5.2, §5.3), with Flare's validation.
fn parse_dump(tokens: Tokens<'_>, with_wait: bool) -> Result<DumpArgs, LineError> {
    let bad = || LineError::new(ErrorReply::UnknownCommand);
    let nums: Vec<i64> = tokens
        .map(parse_i64)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let (wait, rest) = match (with_wait, nums.split_first()) {
        (true, Some((w, rest))) => (*w, rest),
        (true, None) => (0, &nums[..]),
        (false, _) => (0, &nums[..]),
    };
    if rest.len() > 3 || wait < 0 {
        return Err(bad());
    }
    let partition = rest.first().copied().unwrap_or(-1);
    let count = rest.get(1).copied().unwrap_or(0);
    let bwlimit = rest.get(2).copied().unwrap_or(0);
    if (partition >= 0 && count < partition + 1) || (count > 0 && partition < 0) || bwlimit < 0 {
        return Err(bad());
    }
    Ok(DumpArgs {
        wait_usec: wait as u64,
        partition: u32::try_from(partition).ok(),
        partition_count: u32::try_from(count).map_err(|_| bad())?,
        bwlimit_kbps: bwlimit as u64,
    })
}

/// `shutdown [<name> <port>]` (an index command; a node answers it with `ERROR`).
fn parse_shutdown(mut tokens: Tokens<'_>) -> Result<Command, LineError> {
    match (tokens.next(), tokens.next(), tokens.next()) {
        (None, _, _) => Ok(Command::Shutdown { node: None }),
        (Some(name), Some(port), None) => {
            let port = parse_u64(port)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(LineError::new(ErrorReply::UnknownCommand))?;
            Ok(Command::Shutdown {
                node: Some((Bytes::copy_from_slice(name), port)),
            })
        }
        _ => Err(LineError::new(ErrorReply::UnknownCommand)),
    }
}

#[cfg(test)]
mod tests;
