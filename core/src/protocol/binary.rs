//! memcached's binary protocol as a Flare node speaks it (protocol.md §10), with the fixes listed there.
//!
//! A request is a 24-byte big-endian header followed by `total body length` bytes: extras, key, value.
//! [`BinaryParser::parse`] validates the header as soon as it is whole, before any of the body is buffered: the
//! opcode, the extras length for that opcode, the key length against [`Limits::key_max`] and the value length
//! against [`Limits::item_size_max`]. A bad header is answered at once and its body is skipped (`swallow`), so the
//! connection stays in sync. A good header is consumed and remembered; the request is produced when the whole body
//! has arrived, with the key and value split from the read buffer without copying.
//!
//! [`encode_reply`] turns a [`Reply`] into response packets: magic `0x81`, the request's opcode and opaque echoed
//! (Flare never echoes the opaque), the item version in the CAS field of get hits, stores and incr/decr (Flare
//! never returns it), and a status per result. Quiet opcodes suppress success replies; quiet gets (GetQ, GetKQ,
//! GATQ) also suppress misses. Errors are always sent.
//!
//! Choices where Flare and memcached leave room (reported to the integration):
//! - **CAS on Set/Add/Replace.** A non-zero header CAS turns all three into [`StoreMode::Cas`], exactly as memcached
//!   does (`process_bin_update`: `if (ITEM_get_cas(it) != 0) c->cmd = NREAD_CAS`).
//! - **CAS on Append/Prepend.** Passed in [`StoreRequest::cas_unique`] with the mode unchanged; memcached answers
//!   `EXISTS` when it is non-zero and differs from the item's version. The store decides whether to honour it.
//! - **CAS on Delete.** memcached deletes only when the CAS matches (compare-and-delete). [`Command::Delete`] has no
//!   field for that, so the CAS goes in `version: Some(cas)`. That field means "replicated delete" for text requests
//!   (always proxied, with a `<...>` prefix); for a binary-framed request it means compare-and-delete.
//! - **CAS on Increment/Decrement/Touch/GAT** is ignored ([`Command::Arith`] cannot carry it).
//! - **Flush.** Extras of 0 or 4 bytes; 4 bytes are the delay, as in memcached (Flare ignores the body).
//! - **Quiet opcodes** do not set `noreply`: the command runs as usual and [`encode_reply`] drops the success reply,
//!   so errors still reach the client.
//! - **Keys** follow decisions.md #7 (no space, control character or DEL), because binary requests are proxied and
//!   replicated as text lines. A bad key is `Invalid arguments`.
//! - **Data type** must be 0 (raw), as memcached requires.
//! - **Unknown `Stat` group**: `Invalid arguments`.
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{
    ArithOp, BinaryHeader, Command, ErrorReply, Framing, Limits, Parsed, Reply, Request,
    StatsGroup, StoreMode, StoreRequest, WriteOptions,
};

/// Request magic byte.
pub const MAGIC_REQUEST: u8 = 0x80;
/// Response magic byte.
pub const MAGIC_RESPONSE: u8 = 0x81;
/// Length of a request or response header.
pub const HEADER_LEN: usize = 24;

/// Binary status codes.
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Key not found.
    pub const KEY_NOT_FOUND: u16 = 0x0001;
    /// Key exists.
    pub const KEY_EXISTS: u16 = 0x0002;
    /// Value too large.
    pub const VALUE_TOO_LARGE: u16 = 0x0003;
    /// Invalid arguments.
    pub const INVALID_ARGUMENTS: u16 = 0x0004;
    /// Item not stored.
    pub const ITEM_NOT_STORED: u16 = 0x0005;
    /// Incr/decr on a non-numeric value.
    pub const NON_NUMERIC: u16 = 0x0006;
    /// Unknown command.
    pub const UNKNOWN_COMMAND: u16 = 0x0081;
    /// Internal error.
    pub const INTERNAL_ERROR: u16 = 0x0084;
}

/// The opcodes a node understands (protocol.md §10).
pub mod opcode {
    /// Get.
    pub const GET: u8 = 0x00;
    /// Set.
    pub const SET: u8 = 0x01;
    /// Add.
    pub const ADD: u8 = 0x02;
    /// Replace.
    pub const REPLACE: u8 = 0x03;
    /// Delete.
    pub const DELETE: u8 = 0x04;
    /// Increment.
    pub const INCREMENT: u8 = 0x05;
    /// Decrement.
    pub const DECREMENT: u8 = 0x06;
    /// Quit.
    pub const QUIT: u8 = 0x07;
    /// Flush.
    pub const FLUSH: u8 = 0x08;
    /// GetQ.
    pub const GETQ: u8 = 0x09;
    /// No-op.
    pub const NOOP: u8 = 0x0a;
    /// Version.
    pub const VERSION: u8 = 0x0b;
    /// GetK.
    pub const GETK: u8 = 0x0c;
    /// GetKQ.
    pub const GETKQ: u8 = 0x0d;
    /// Append.
    pub const APPEND: u8 = 0x0e;
    /// Prepend.
    pub const PREPEND: u8 = 0x0f;
    /// Stat.
    pub const STAT: u8 = 0x10;
    /// SetQ.
    pub const SETQ: u8 = 0x11;
    /// AddQ.
    pub const ADDQ: u8 = 0x12;
    /// ReplaceQ.
    pub const REPLACEQ: u8 = 0x13;
    /// DeleteQ.
    pub const DELETEQ: u8 = 0x14;
    /// IncrementQ.
    pub const INCREMENTQ: u8 = 0x15;
    /// DecrementQ.
    pub const DECREMENTQ: u8 = 0x16;
    /// QuitQ.
    pub const QUITQ: u8 = 0x17;
    /// FlushQ.
    pub const FLUSHQ: u8 = 0x18;
    /// AppendQ.
    pub const APPENDQ: u8 = 0x19;
    /// PrependQ.
    pub const PREPENDQ: u8 = 0x1a;
    /// Verbosity (not supported).
    pub const VERBOSITY: u8 = 0x1b;
    /// Touch.
    pub const TOUCH: u8 = 0x1c;
    /// Get and touch.
    pub const GAT: u8 = 0x1d;
    /// Get and touch, quiet.
    pub const GATQ: u8 = 0x1e;
}

/// True for quiet opcodes.
pub fn is_quiet(opcode: u8) -> bool {
    matches!(opcode, 0x09 | 0x0d | 0x11..=0x1a | 0x1e)
}

/// True for the opcodes whose miss is a "get miss" (suppressed when quiet).
fn is_get(opcode: u8) -> bool {
    use opcode::*;
    matches!(opcode, GET | GETQ | GETK | GETKQ | GAT | GATQ)
}

/// True for the quiet gets, which suppress misses as well as (no) successes.
fn is_quiet_get(opcode: u8) -> bool {
    use opcode::*;
    matches!(opcode, GETQ | GETKQ | GATQ)
}

/// A decoded request header (the fields the parser needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    opcode: u8,
    key_len: u16,
    extras_len: u8,
    data_type: u8,
    body_len: u32,
    opaque: u32,
    cas: u64,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes of `b` (the caller checked the length).
    fn read(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            opcode: b[1],
            key_len: u16::from_be_bytes([b[2], b[3]]),
            extras_len: b[4],
            data_type: b[5],
            body_len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            cas: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        }
    }

    fn framing(&self) -> Framing {
        Framing::Binary(BinaryHeader {
            opcode: self.opcode,
            opaque: self.opaque,
        })
    }
}

/// Whether an opcode takes a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyRule {
    Required,
    Forbidden,
    Optional,
}

/// The body layout an opcode accepts.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Accepted extras lengths.
    extras: &'static [u8],
    key: KeyRule,
    /// Whether a value may follow the key.
    value: bool,
}

/// The accepted body layout of each supported opcode; `None` for unsupported opcodes.
fn shape(op: u8) -> Option<Shape> {
    use opcode::*;
    use KeyRule::*;
    let s = |extras: &'static [u8], key, value| Some(Shape { extras, key, value });
    match op {
        GET | GETQ | GETK | GETKQ | DELETE | DELETEQ => s(&[0], Required, false),
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ => s(&[8], Required, true),
        APPEND | APPENDQ | PREPEND | PREPENDQ => s(&[0], Required, true),
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ => s(&[20], Required, false),
        QUIT | QUITQ | NOOP | VERSION => s(&[0], Forbidden, false),
        FLUSH | FLUSHQ => s(&[0, 4], Forbidden, false),
        STAT => s(&[0], Optional, false),
        TOUCH | GAT | GATQ => s(&[4], Required, false),
        _ => None,
    }
}

/// A key is 1..=key_max bytes without space, control characters or DEL (decisions.md #7).
fn key_chars_ok(key: &[u8]) -> bool {
    key.iter().all(|&c| c > b' ' && c != 0x7f)
}

/// Incremental binary-protocol parser for one connection.
#[derive(Debug)]
pub struct BinaryParser {
    limits: Limits,
    /// A validated header whose body has not fully arrived (the header bytes are consumed).
    pending: Option<Header>,
    /// Part of a header is buffered (nothing consumed yet).
    partial_header: bool,
}

impl BinaryParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        BinaryParser {
            limits,
            pending: None,
            partial_header: false,
        }
    }

    /// Parses the next request. The buffer must start with [`MAGIC_REQUEST`] unless [`Self::in_progress`].
    pub fn parse(&mut self, buf: &mut BytesMut) -> Parsed {
        let header = match self.pending {
            Some(h) => h,
            None => {
                let Some(raw) = buf.get(..HEADER_LEN) else {
                    self.partial_header = !buf.is_empty();
                    return Parsed::NeedMore;
                };
                self.partial_header = false;
                let raw: &[u8; HEADER_LEN] = raw
                    .try_into()
                    .expect("invariant: the slice is exactly HEADER_LEN bytes");
                let h = Header::read(raw);
                if raw[0] != MAGIC_REQUEST {
                    // Only reachable if the caller routed a non-binary request here: the stream cannot be trusted.
                    buf.clear();
                    return Parsed::Rejected {
                        framing: h.framing(),
                        error: ErrorReply::BadCommandLine,
                        swallow: 0,
                        close: true,
                    };
                }
                buf.advance(HEADER_LEN);
                if let Err(error) = self.check_header(&h) {
                    return Parsed::Rejected {
                        framing: h.framing(),
                        error,
                        swallow: u64::from(h.body_len),
                        close: false,
                    };
                }
                h
            }
        };
        let body_len = header.body_len as usize;
        if buf.len() < body_len {
            self.pending = Some(header);
            return Parsed::NeedMore;
        }
        self.pending = None;
        let body = buf.split_to(body_len).freeze();
        match build(&header, body) {
            Ok(command) => Parsed::Request(Request {
                command,
                framing: header.framing(),
            }),
            Err(error) => Parsed::Rejected {
                framing: header.framing(),
                error,
                swallow: 0,
                close: false,
            },
        }
    }

    /// Checks everything the header alone decides, before any of the body is buffered.
    fn check_header(&self, h: &Header) -> Result<(), ErrorReply> {
        let shape = shape(h.opcode).ok_or(ErrorReply::UnknownCommand)?;
        let extras = u32::from(h.extras_len);
        let key = u32::from(h.key_len);
        let value = h
            .body_len
            .checked_sub(extras + key)
            .ok_or(ErrorReply::BadCommandLine)?;
        if h.data_type != 0 || !shape.extras.contains(&h.extras_len) {
            return Err(ErrorReply::BadCommandLine);
        }
        match shape.key {
            KeyRule::Required if key == 0 => return Err(ErrorReply::BadCommandLine),
            KeyRule::Forbidden if key != 0 => return Err(ErrorReply::BadCommandLine),
            _ => {}
        }
        if usize::from(h.key_len) > self.limits.key_max {
            return Err(ErrorReply::KeyTooLong);
        }
        if value > 0 && !shape.value {
            return Err(ErrorReply::BadCommandLine);
        }
        if value > self.limits.item_size_max {
            return Err(ErrorReply::TooLarge);
        }
        Ok(())
    }

    /// True while a request is partly received.
    pub fn in_progress(&self) -> bool {
        self.pending.is_some() || self.partial_header
    }
}

/// Builds the command from a whole body whose layout [`BinaryParser::check_header`] accepted.
fn build(h: &Header, mut body: Bytes) -> Result<Command, ErrorReply> {
    use opcode::*;
    let extras = body.split_to(usize::from(h.extras_len));
    let key = body.split_to(usize::from(h.key_len));
    let value = body;
    if !key.is_empty() && h.opcode != STAT && !key_chars_ok(&key) {
        return Err(ErrorReply::BadCommandLine);
    }
    let mut ex = &extras[..];
    let store = |mode: StoreMode, flags: u32, exptime: u32, cas_unique: u64| {
        Command::Store(StoreRequest {
            mode,
            key: key.clone(),
            flags,
            exptime: i64::from(exptime),
            value: value.clone(),
            cas_unique,
            version: None,
            options: WriteOptions::default(),
        })
    };
    let command = match h.opcode {
        GET | GETQ | GETK | GETKQ => Command::Get {
            keys: vec![key.clone()],
            cas: true,
        },
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ => {
            let flags = ex.get_u32();
            let exptime = ex.get_u32();
            let mode = match h.opcode {
                _ if h.cas != 0 => StoreMode::Cas,
                SET | SETQ => StoreMode::Set,
                ADD | ADDQ => StoreMode::Add,
                _ => StoreMode::Replace,
            };
            store(mode, flags, exptime, h.cas)
        }
        APPEND | APPENDQ => store(StoreMode::Append, 0, 0, h.cas),
        PREPEND | PREPENDQ => store(StoreMode::Prepend, 0, 0, h.cas),
        DELETE | DELETEQ => Command::Delete {
            key: key.clone(),
            hold: 0,
            version: (h.cas != 0).then_some(h.cas),
            options: WriteOptions::default(),
        },
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ => {
            let delta = ex.get_u64();
            let initial = ex.get_u64();
            let exptime = ex.get_u32();
            Command::Arith {
                op: if matches!(h.opcode, INCREMENT | INCREMENTQ) {
                    ArithOp::Incr
                } else {
                    ArithOp::Decr
                },
                key: key.clone(),
                delta,
                create: (exptime != u32::MAX).then_some((initial, i64::from(exptime))),
                options: WriteOptions::default(),
            }
        }
        QUIT | QUITQ => Command::Quit,
        FLUSH | FLUSHQ => Command::FlushAll {
            delay: if ex.len() == 4 {
                i64::from(ex.get_u32())
            } else {
                0
            },
            noreply: false,
        },
        NOOP => Command::Noop,
        VERSION => Command::Version,
        STAT => Command::Stats(stats_group(&key).ok_or(ErrorReply::BadCommandLine)?),
        TOUCH => Command::Touch {
            key: key.clone(),
            exptime: i64::from(ex.get_u32()),
            noreply: false,
        },
        GAT | GATQ => Command::Gat {
            exptime: i64::from(ex.get_u32()),
            keys: vec![key.clone()],
            cas: true,
            flare_form: false,
            noreply: false,
        },
        // check_header rejected every other opcode before the body was read.
        _ => return Err(ErrorReply::UnknownCommand),
    };
    Ok(command)
}

/// The `Stat` key names a group, as the text `stats <group>` does.
fn stats_group(key: &[u8]) -> Option<StatsGroup> {
    Some(match key {
        b"" => StatsGroup::General,
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        b"settings" => StatsGroup::Settings,
        b"threads" => StatsGroup::Threads,
        b"threads request" => StatsGroup::ThreadsRequest,
        b"threads slave" => StatsGroup::ThreadsSlave,
        b"threads queue" => StatsGroup::ThreadsQueue,
        b"nodes" => StatsGroup::Nodes,
        _ => return None,
    })
}

/// One response packet's fields.
struct Packet<'a> {
    status: u16,
    cas: u64,
    extras: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
}

impl<'a> Packet<'a> {
    fn status(status: u16, value: &'a [u8]) -> Self {
        Packet {
            status,
            cas: 0,
            extras: &[],
            key: &[],
            value,
        }
    }
}

/// Appends one response packet. A key or body too long for the header fields becomes an `Internal error`.
fn put_packet(h: &BinaryHeader, p: &Packet<'_>, out: &mut BytesMut) {
    let lens = u16::try_from(p.key.len()).ok().and_then(|k| {
        let body = p
            .extras
            .len()
            .checked_add(p.key.len())?
            .checked_add(p.value.len())?;
        Some((k, u32::try_from(body).ok()?))
    });
    let Some((key_len, body_len)) = lens else {
        return put_packet(
            h,
            &Packet::status(status::INTERNAL_ERROR, b"Internal error"),
            out,
        );
    };
    out.reserve(HEADER_LEN + body_len as usize);
    out.put_u8(MAGIC_RESPONSE);
    out.put_u8(h.opcode);
    out.put_u16(key_len);
    // The extras of every packet built here are 0 or 4 bytes.
    out.put_u8(p.extras.len() as u8);
    out.put_u8(0);
    out.put_u16(p.status);
    out.put_u32(body_len);
    out.put_u32(h.opaque);
    out.put_u64(p.cas);
    out.put_slice(p.extras);
    out.put_slice(p.key);
    out.put_slice(p.value);
}

/// Appends the binary reply packet(s) for `reply` to a request with header `header`.
pub fn encode_reply(header: &BinaryHeader, reply: &Reply, out: &mut BytesMut) {
    let op = header.opcode;
    let quiet = is_quiet(op);
    let success = |cas: u64, value: &[u8], out: &mut BytesMut| {
        if !quiet {
            let mut p = Packet::status(status::SUCCESS, value);
            p.cas = cas;
            put_packet(header, &p, out);
        }
    };
    let miss = |out: &mut BytesMut| {
        if !is_quiet_get(op) {
            put_packet(
                header,
                &Packet::status(status::KEY_NOT_FOUND, b"Not found"),
                out,
            );
        }
    };
    match reply {
        // memcached answers a (non-quiet) Quit before closing; the command layer has nothing to say for it.
        Reply::Nothing if op == opcode::QUIT => success(0, b"", out),
        Reply::Nothing => {}
        Reply::Stored { version } => success(*version, b"", out),
        Reply::Deleted | Reply::Touched | Reply::Ok => success(0, b"", out),
        Reply::NotStored => put_packet(
            header,
            &Packet::status(status::ITEM_NOT_STORED, b"Item not stored"),
            out,
        ),
        Reply::Exists => put_packet(
            header,
            &Packet::status(status::KEY_EXISTS, b"Key exists"),
            out,
        ),
        Reply::NotFound => miss(out),
        Reply::End if is_get(op) => miss(out),
        Reply::End => success(0, b"", out),
        Reply::Values { items, .. } if items.is_empty() => miss(out),
        Reply::Values { items, .. } => {
            let with_key = matches!(op, opcode::GETK | opcode::GETKQ);
            for item in items {
                let flags = item.flags.to_be_bytes();
                let p = Packet {
                    status: status::SUCCESS,
                    cas: item.version,
                    extras: &flags,
                    key: if with_key { &item.key } else { &[] },
                    value: &item.value,
                };
                put_packet(header, &p, out);
            }
        }
        Reply::Number { value, version } => success(*version, &value.to_be_bytes(), out),
        Reply::Version(v) => success(0, v.as_bytes(), out),
        Reply::Stats(stats) => {
            for (name, value) in stats {
                let mut p = Packet::status(status::SUCCESS, value.as_bytes());
                p.key = name.as_bytes();
                put_packet(header, &p, out);
            }
            put_packet(header, &Packet::status(status::SUCCESS, b""), out);
        }
        Reply::Lines(lines) => success(0, lines.join("\r\n").as_bytes(), out),
        Reply::Error(e) => put_packet(
            header,
            &Packet::status(e.binary_status(), e.line().as_bytes()),
            out,
        ),
        Reply::Meta(_) => put_packet(
            header,
            &Packet::status(status::INTERNAL_ERROR, b"Internal error"),
            out,
        ),
        // A reply kind added later that has no binary form.
        #[allow(unreachable_patterns)]
        _ => put_packet(
            header,
            &Packet::status(status::INTERNAL_ERROR, b"Internal error"),
            out,
        ),
    }
}
