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
//! - **CAS on Delete.** memcached deletes only when the CAS matches (compare-and-delete): `cas: Some(cas)`.
//! - **CAS on Increment/Decrement/Touch/GAT** is ignored ([`Command::Arith`] cannot carry it).
//! - **Flush.** Extras of 0 or 4 bytes; 4 bytes are the delay, as in memcached (Flare ignores the body).
//! - **Quiet opcodes** do not set `noreply`: the command runs as usual and [`encode_reply`] drops the success reply,
//!   so errors still reach the client.
//! - **Keys** follow decisions.md #7 (no space, control character or DEL), because binary requests are proxied and
//!   replicated as text lines. A bad key is `Invalid arguments`.
//! - **Data type** must be 0 (raw), as memcached requires.
//! - **Unknown `Stat` group**: `Invalid arguments`.
//! - **GATQ** counts as a quiet get: its miss is suppressed like GetQ's. A GetK miss carries no key (the
//!   [`Reply`] of a miss does not hold one).
//! - **Increment/Decrement** always fill `create` from the extras (exptime `0xffffffff` = `None`); whether a miss
//!   creates the item (memcached) or answers `Not found` (Flare) is the command layer's compat flag.
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

    /// memcached's body text for an error status (its `write_bin_error`); `None` for a status it never sends,
    /// whose body is the node's own message.
    pub fn memcached_text(status: u16) -> Option<&'static [u8]> {
        Some(match status {
            KEY_NOT_FOUND => b"Not found",
            KEY_EXISTS => b"Data exists for key.",
            VALUE_TOO_LARGE => b"Too large.",
            INVALID_ARGUMENTS => b"Invalid arguments",
            ITEM_NOT_STORED => b"Not stored.",
            NON_NUMERIC => b"Non-numeric server-side value for incr or decr",
            UNKNOWN_COMMAND => b"Unknown command",
            _ => return None,
        })
    }
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
            key: None,
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

/// A key is 1..=key_max bytes of [`super::key_byte_ok`] characters: binary requests are forwarded and replicated
/// as text lines.
fn key_chars_ok(key: &[u8]) -> bool {
    key.iter().all(|&c| super::key_byte_ok(c))
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
                    // memcached closes the connection after a malformed packet's Invalid arguments; a node skips
                    // the packet and goes on serving the connection (docs/compatibility.md).
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
            Ok(command) => {
                let mut framing = header.framing();
                // memcached's GetK miss names the key.
                if let (Framing::Binary(h), Command::Get { keys, .. }) = (&mut framing, &command) {
                    if matches!(h.opcode, opcode::GETK | opcode::GETKQ) {
                        h.key = keys.first().cloned();
                    }
                }
                Parsed::Request(Request { command, framing })
            }
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
            version: None,
            cas: (h.cas != 0).then_some(h.cas),
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
                cas: (h.cas != 0).then_some(h.cas),
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
    let miss = |out: &mut BytesMut| match &header.key {
        // memcached's GetK miss: the key, no text.
        Some(key) if !is_quiet_get(op) => {
            let mut p = Packet::status(status::KEY_NOT_FOUND, b"");
            p.key = key;
            put_packet(header, &p, out);
        }
        _ if !is_quiet_get(op) => put_packet(
            header,
            &Packet::status(status::KEY_NOT_FOUND, b"Not found"),
            out,
        ),
        _ => {}
    };
    match reply {
        // memcached answers a (non-quiet) Quit before closing; the command layer has nothing to say for it.
        Reply::Nothing if op == opcode::QUIT => success(0, b"", out),
        Reply::Nothing => {}
        Reply::Stored { version } => success(*version, b"", out),
        Reply::Deleted | Reply::Ok => success(0, b"", out),
        // memcached answers a Touch with the item's flags (as extras) and CAS.
        Reply::Touched { flags, version } if !quiet => {
            let flags = flags.to_be_bytes();
            let p = Packet {
                status: status::SUCCESS,
                cas: *version,
                extras: &flags,
                key: &[],
                value: &[],
            };
            put_packet(header, &p, out);
        }
        Reply::Touched { .. } => {}
        // As memcached answers them: a failed add means the key exists, a failed replace that it is missing.
        Reply::NotStored if matches!(op, opcode::ADD | opcode::ADDQ) => put_packet(
            header,
            &Packet::status(status::KEY_EXISTS, b"Data exists for key."),
            out,
        ),
        Reply::NotStored if matches!(op, opcode::REPLACE | opcode::REPLACEQ) => miss(out),
        Reply::NotStored => put_packet(
            header,
            &Packet::status(status::ITEM_NOT_STORED, b"Not stored."),
            out,
        ),
        Reply::Exists => put_packet(
            header,
            &Packet::status(status::KEY_EXISTS, b"Data exists for key."),
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
        Reply::Error(e) => {
            let code = e.binary_status();
            let line = e.line();
            let text = status::memcached_text(code).unwrap_or(line.as_bytes());
            put_packet(header, &Packet::status(code, text), out)
        }
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

#[cfg(test)]
mod tests {
    use super::opcode::*;
    use super::*;
    use crate::protocol::{Decoded, Decoder, ValueItem};
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits {
            key_max: 16,
            item_size_max: 64,
            ..Limits::default()
        }
    }

    /// A request packet.
    fn pkt(op: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
        let mut p = vec![MAGIC_REQUEST, op];
        p.extend_from_slice(&(key.len() as u16).to_be_bytes());
        p.push(extras.len() as u8);
        p.push(0);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        p.extend_from_slice(&opaque.to_be_bytes());
        p.extend_from_slice(&cas.to_be_bytes());
        p.extend_from_slice(extras);
        p.extend_from_slice(key);
        p.extend_from_slice(value);
        p
    }

    fn ex8(flags: u32, exptime: u32) -> Vec<u8> {
        [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
    }

    fn ex20(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
        let mut v = delta.to_be_bytes().to_vec();
        v.extend_from_slice(&initial.to_be_bytes());
        v.extend_from_slice(&exptime.to_be_bytes());
        v
    }

    fn framing(op: u8, opaque: u32) -> Framing {
        Framing::Binary(BinaryHeader {
            opcode: op,
            opaque,
            key: None,
        })
    }

    fn req(op: u8, opaque: u32, command: Command) -> Decoded {
        let mut framing = framing(op, opaque);
        if let (Framing::Binary(h), Command::Get { keys, .. }) = (&mut framing, &command) {
            if matches!(op, GETK | GETKQ) {
                h.key = keys.first().cloned();
            }
        }
        Decoded::Request(Request { command, framing })
    }

    fn err(op: u8, opaque: u32, error: ErrorReply) -> Decoded {
        Decoded::Error {
            framing: framing(op, opaque),
            error,
            close: false,
        }
    }

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    fn store(
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
    ) -> Command {
        Command::Store(StoreRequest {
            mode,
            key: b(key),
            flags,
            exptime,
            value: b(value),
            cas_unique: cas,
            version: None,
            options: WriteOptions::default(),
        })
    }

    /// Feeds `chunks` one after another, decoding all it can after each; returns the results and leftover bytes.
    fn decode_chunks(chunks: &[&[u8]]) -> (Vec<Decoded>, BytesMut) {
        let mut d = Decoder::new(limits(), Default::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(x) = d.decode(&mut buf) {
                out.push(x);
            }
        }
        (out, buf)
    }

    fn decode_all(bytes: &[u8]) -> Vec<Decoded> {
        decode_chunks(&[bytes]).0
    }

    /// Each packet with the result it must decode to.
    fn cases() -> Vec<(Vec<u8>, Decoded)> {
        let get = |keys: &[u8]| Command::Get {
            keys: vec![b(keys)],
            cas: true,
        };
        vec![
            (pkt(GET, &[], b"k", &[], 1, 0), req(GET, 1, get(b"k"))),
            (pkt(GETQ, &[], b"kq", &[], 2, 0), req(GETQ, 2, get(b"kq"))),
            (pkt(GETK, &[], b"kk", &[], 3, 0), req(GETK, 3, get(b"kk"))),
            (
                pkt(GETKQ, &[], b"kkq", &[], 4, 0),
                req(GETKQ, 4, get(b"kkq")),
            ),
            (
                pkt(SET, &ex8(7, 100), b"key", b"value", 5, 0),
                req(SET, 5, store(StoreMode::Set, b"key", 7, 100, b"value", 0)),
            ),
            (
                pkt(SETQ, &ex8(0xffff_ffff, 0xffff_ffff), b"key", b"", 6, 0),
                req(
                    SETQ,
                    6,
                    store(StoreMode::Set, b"key", u32::MAX, 0xffff_ffff, b"", 0),
                ),
            ),
            (
                pkt(SET, &ex8(1, 0), b"key", b"v", 7, 42),
                req(SET, 7, store(StoreMode::Cas, b"key", 1, 0, b"v", 42)),
            ),
            (
                pkt(ADD, &ex8(1, 2), b"a", b"v", 8, 0),
                req(ADD, 8, store(StoreMode::Add, b"a", 1, 2, b"v", 0)),
            ),
            (
                pkt(ADDQ, &ex8(1, 2), b"a", b"v", 9, 9),
                req(ADDQ, 9, store(StoreMode::Cas, b"a", 1, 2, b"v", 9)),
            ),
            (
                pkt(REPLACE, &ex8(3, 4), b"r", b"vv", 10, 0),
                req(REPLACE, 10, store(StoreMode::Replace, b"r", 3, 4, b"vv", 0)),
            ),
            (
                pkt(REPLACEQ, &ex8(3, 4), b"r", b"vv", 11, 0),
                req(
                    REPLACEQ,
                    11,
                    store(StoreMode::Replace, b"r", 3, 4, b"vv", 0),
                ),
            ),
            (
                pkt(APPEND, &[], b"k", b"tail", 12, 0),
                req(APPEND, 12, store(StoreMode::Append, b"k", 0, 0, b"tail", 0)),
            ),
            (
                pkt(APPENDQ, &[], b"k", b"tail", 13, 5),
                req(
                    APPENDQ,
                    13,
                    store(StoreMode::Append, b"k", 0, 0, b"tail", 5),
                ),
            ),
            (
                pkt(PREPEND, &[], b"k", b"head", 14, 0),
                req(
                    PREPEND,
                    14,
                    store(StoreMode::Prepend, b"k", 0, 0, b"head", 0),
                ),
            ),
            (
                pkt(PREPENDQ, &[], b"k", b"", 15, 0),
                req(PREPENDQ, 15, store(StoreMode::Prepend, b"k", 0, 0, b"", 0)),
            ),
            (
                pkt(DELETE, &[], b"d", &[], 16, 0),
                req(
                    DELETE,
                    16,
                    Command::Delete {
                        key: b(b"d"),
                        hold: 0,
                        version: None,
                        cas: None,
                        options: WriteOptions::default(),
                    },
                ),
            ),
            (
                pkt(DELETEQ, &[], b"d", &[], 17, 77),
                req(
                    DELETEQ,
                    17,
                    Command::Delete {
                        key: b(b"d"),
                        hold: 0,
                        version: None,
                        cas: Some(77),
                        options: WriteOptions::default(),
                    },
                ),
            ),
            (
                pkt(INCREMENT, &ex20(5, 10, 0), b"n", &[], 18, 0),
                req(
                    INCREMENT,
                    18,
                    Command::Arith {
                        op: ArithOp::Incr,
                        key: b(b"n"),
                        delta: 5,
                        create: Some((10, 0)),
                        cas: None,
                        options: WriteOptions::default(),
                    },
                ),
            ),
            (
                pkt(DECREMENTQ, &ex20(u64::MAX, 1, u32::MAX), b"n", &[], 19, 0),
                req(
                    DECREMENTQ,
                    19,
                    Command::Arith {
                        op: ArithOp::Decr,
                        key: b(b"n"),
                        delta: u64::MAX,
                        create: None,
                        cas: None,
                        options: WriteOptions::default(),
                    },
                ),
            ),
            (
                pkt(INCREMENTQ, &ex20(1, 2, 3), b"n", &[], 20, 0),
                req(
                    INCREMENTQ,
                    20,
                    Command::Arith {
                        op: ArithOp::Incr,
                        key: b(b"n"),
                        delta: 1,
                        create: Some((2, 3)),
                        cas: None,
                        options: WriteOptions::default(),
                    },
                ),
            ),
            (
                pkt(DECREMENT, &ex20(1, 2, 3), b"n", &[], 21, 0),
                req(
                    DECREMENT,
                    21,
                    Command::Arith {
                        op: ArithOp::Decr,
                        key: b(b"n"),
                        delta: 1,
                        create: Some((2, 3)),
                        cas: None,
                        options: WriteOptions::default(),
                    },
                ),
            ),
            (
                pkt(QUIT, &[], &[], &[], 22, 0),
                req(QUIT, 22, Command::Quit),
            ),
            (
                pkt(QUITQ, &[], &[], &[], 23, 0),
                req(QUITQ, 23, Command::Quit),
            ),
            (
                pkt(FLUSH, &[], &[], &[], 24, 0),
                req(
                    FLUSH,
                    24,
                    Command::FlushAll {
                        delay: 0,
                        noreply: false,
                    },
                ),
            ),
            (
                pkt(FLUSHQ, &30u32.to_be_bytes(), &[], &[], 25, 0),
                req(
                    FLUSHQ,
                    25,
                    Command::FlushAll {
                        delay: 30,
                        noreply: false,
                    },
                ),
            ),
            (
                pkt(NOOP, &[], &[], &[], 26, 0),
                req(NOOP, 26, Command::Noop),
            ),
            (
                pkt(VERSION, &[], &[], &[], 27, 0),
                req(VERSION, 27, Command::Version),
            ),
            (
                pkt(STAT, &[], &[], &[], 28, 0),
                req(STAT, 28, Command::Stats(StatsGroup::General)),
            ),
            (
                pkt(STAT, &[], b"threads", &[], 29, 0),
                req(STAT, 29, Command::Stats(StatsGroup::Threads)),
            ),
            (
                pkt(STAT, &[], b"threads request", &[], 30, 0),
                req(STAT, 30, Command::Stats(StatsGroup::ThreadsRequest)),
            ),
            (
                pkt(STAT, &[], b"nodes", &[], 31, 0),
                req(STAT, 31, Command::Stats(StatsGroup::Nodes)),
            ),
            (
                pkt(TOUCH, &60u32.to_be_bytes(), b"t", &[], 32, 0),
                req(
                    TOUCH,
                    32,
                    Command::Touch {
                        key: b(b"t"),
                        exptime: 60,
                        noreply: false,
                    },
                ),
            ),
            (
                pkt(GAT, &61u32.to_be_bytes(), b"g", &[], 33, 0),
                req(
                    GAT,
                    33,
                    Command::Gat {
                        exptime: 61,
                        keys: vec![b(b"g")],
                        cas: true,
                        flare_form: false,
                        noreply: false,
                    },
                ),
            ),
            (
                pkt(GATQ, &62u32.to_be_bytes(), b"g", &[], 34, 0),
                req(
                    GATQ,
                    34,
                    Command::Gat {
                        exptime: 62,
                        keys: vec![b(b"g")],
                        cas: true,
                        flare_form: false,
                        noreply: false,
                    },
                ),
            ),
            // Rejections: the body is skipped and the connection kept.
            (
                pkt(VERBOSITY, &1u32.to_be_bytes(), &[], &[], 40, 0),
                err(VERBOSITY, 40, ErrorReply::UnknownCommand),
            ),
            (
                pkt(0x21, &[], b"PLAIN", b"\0user\0pass", 41, 0),
                err(0x21, 41, ErrorReply::UnknownCommand),
            ),
            (
                pkt(0x32, &[0; 4], b"a", b"b", 42, 0),
                err(0x32, 42, ErrorReply::UnknownCommand),
            ),
            (
                pkt(0x41, &[0; 8], b"k", b"tap", 43, 0),
                err(0x41, 43, ErrorReply::UnknownCommand),
            ),
            (
                pkt(0xff, &[], &[], b"x", 44, 0),
                err(0xff, 44, ErrorReply::UnknownCommand),
            ),
            (
                pkt(GET, &[0; 4], b"k", &[], 45, 0),
                err(GET, 45, ErrorReply::BadCommandLine),
            ),
            (
                pkt(SET, &[], b"k", b"v", 46, 0),
                err(SET, 46, ErrorReply::BadCommandLine),
            ),
            (
                pkt(INCREMENT, &[0; 8], b"k", &[], 47, 0),
                err(INCREMENT, 47, ErrorReply::BadCommandLine),
            ),
            (
                pkt(DELETE, &[0; 4], b"k", &[], 48, 0),
                err(DELETE, 48, ErrorReply::BadCommandLine),
            ),
            (
                pkt(FLUSH, &[0; 8], &[], &[], 49, 0),
                err(FLUSH, 49, ErrorReply::BadCommandLine),
            ),
            (
                pkt(TOUCH, &[], b"k", &[], 50, 0),
                err(TOUCH, 50, ErrorReply::BadCommandLine),
            ),
            (
                pkt(GET, &[], &[], &[], 51, 0),
                err(GET, 51, ErrorReply::BadCommandLine),
            ),
            (
                pkt(NOOP, &[], b"k", &[], 52, 0),
                err(NOOP, 52, ErrorReply::BadCommandLine),
            ),
            (
                pkt(GET, &[], b"k", b"unexpected", 53, 0),
                err(GET, 53, ErrorReply::BadCommandLine),
            ),
            (
                pkt(GET, &[], &[b'k'; 17], &[], 54, 0),
                err(GET, 54, ErrorReply::KeyTooLong),
            ),
            (
                pkt(SET, &ex8(0, 0), b"k", &[b'v'; 65], 55, 0),
                err(SET, 55, ErrorReply::TooLarge),
            ),
            (
                pkt(GET, &[], b"a key", &[], 56, 0),
                err(GET, 56, ErrorReply::BadCommandLine),
            ),
            (
                pkt(SET, &ex8(0, 0), b"k\r\n", b"v", 57, 0),
                err(SET, 57, ErrorReply::BadCommandLine),
            ),
            (
                pkt(STAT, &[], b"bogus", &[], 58, 0),
                err(STAT, 58, ErrorReply::BadCommandLine),
            ),
        ]
    }

    #[test]
    fn each_packet_parses() {
        for (p, want) in cases() {
            let (got, rest) = decode_chunks(&[&p]);
            assert_eq!(got, vec![want], "packet {p:02x?}");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn value_at_the_limit_is_accepted() {
        let p = pkt(SET, &ex8(0, 0), &[b'k'; 16], &[b'v'; 64], 1, 0);
        assert_eq!(
            decode_all(&p),
            vec![req(
                SET,
                1,
                store(StoreMode::Set, &[b'k'; 16], 0, 0, &[b'v'; 64], 0)
            )]
        );
    }

    #[test]
    fn every_split_gives_the_same_result() {
        for (p, want) in cases() {
            for at in 0..=p.len() {
                let (got, rest) = decode_chunks(&[&p[..at], &p[at..]]);
                assert_eq!(got, vec![want.clone()], "split at {at} of {p:02x?}");
                assert!(rest.is_empty());
            }
        }
    }

    #[test]
    fn byte_by_byte_pipeline_stays_in_sync() {
        let cases = cases();
        let stream: Vec<u8> = cases.iter().flat_map(|(p, _)| p.clone()).collect();
        let want: Vec<Decoded> = cases.into_iter().map(|(_, d)| d).collect();
        assert_eq!(decode_all(&stream), want);
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let (got, rest) = decode_chunks(&chunks);
        assert_eq!(got, want);
        assert!(rest.is_empty());
    }

    #[test]
    fn rejection_keeps_the_stream_in_sync() {
        for bad in [
            pkt(SET, &ex8(0, 0), b"k", &[b'v'; 1000], 1, 0),
            pkt(0x1b, &[0; 4], &[], &[], 1, 0),
            pkt(GET, &[0; 20], b"k", &[], 1, 0),
        ] {
            let mut s = bad.clone();
            s.extend(pkt(NOOP, &[], &[], &[], 2, 0));
            let got = decode_all(&s);
            assert_eq!(got.len(), 2);
            assert!(matches!(got[0], Decoded::Error { close: false, .. }));
            assert_eq!(got[1], req(NOOP, 2, Command::Noop));
            // The header alone is answered at once, before the body arrives.
            let (got, _) = decode_chunks(&[&bad[..HEADER_LEN]]);
            assert_eq!(got.len(), 1);
        }
    }

    #[test]
    fn inconsistent_body_length_is_invalid() {
        // key length 10 but body length 4: the 4 bytes are skipped.
        let mut p = pkt(GET, &[], b"abcd", &[], 9, 0);
        p[2..4].copy_from_slice(&10u16.to_be_bytes());
        p.extend(pkt(NOOP, &[], &[], &[], 2, 0));
        assert_eq!(
            decode_all(&p),
            vec![
                err(GET, 9, ErrorReply::BadCommandLine),
                req(NOOP, 2, Command::Noop)
            ]
        );
    }

    #[test]
    fn non_raw_data_type_is_invalid() {
        let mut p = pkt(GET, &[], b"k", &[], 9, 0);
        p[5] = 1;
        assert_eq!(
            decode_all(&p),
            vec![err(GET, 9, ErrorReply::BadCommandLine)]
        );
    }

    #[test]
    fn huge_body_is_rejected_before_buffering() {
        let mut p = pkt(SET, &ex8(0, 0), b"k", &[], 3, 0);
        p[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut d = Decoder::new(limits(), Default::default());
        let mut buf = BytesMut::from(&p[..]);
        assert_eq!(d.decode(&mut buf), Some(err(SET, 3, ErrorReply::TooLarge)));
        assert!(d.in_progress(), "still swallowing the body");
        buf.extend_from_slice(&[0; 100]);
        assert_eq!(d.decode(&mut buf), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn binary_then_text_is_detected_per_request() {
        let mut s = pkt(NOOP, &[], &[], &[], 1, 0);
        s.extend_from_slice(b"get foo\r\n");
        s.extend(pkt(VERSION, &[], &[], &[], 2, 0));
        let (got, rest) = decode_chunks(&[&s]);
        assert_eq!(got[0], req(NOOP, 1, Command::Noop));
        // What follows is not binary: the text parser takes it, then binary again.
        assert!(
            matches!(&got[1], Decoded::Request(r) if r.framing == Framing::TEXT
            && r.command == Command::Get { keys: vec![b(b"foo")], cas: false })
        );
        assert_eq!(got[2], req(VERSION, 2, Command::Version));
        assert!(rest.is_empty());
    }

    #[test]
    fn partial_header_is_in_progress() {
        let mut p = BinaryParser::new(limits());
        let full = pkt(GET, &[], b"key", &[], 1, 0);
        let mut buf = BytesMut::from(&full[..10]);
        assert_eq!(p.parse(&mut buf), Parsed::NeedMore);
        assert!(p.in_progress());
        assert_eq!(buf.len(), 10, "a partial header is not consumed");
        buf.extend_from_slice(&full[10..26]);
        assert_eq!(p.parse(&mut buf), Parsed::NeedMore);
        assert!(p.in_progress());
        buf.extend_from_slice(&full[26..]);
        assert!(matches!(p.parse(&mut buf), Parsed::Request(_)));
        assert!(!p.in_progress());
        assert!(buf.is_empty());
    }

    #[test]
    fn keys_and_values_are_not_copied() {
        let p = pkt(SET, &ex8(0, 0), b"key", b"value", 1, 0);
        let mut buf = BytesMut::from(&p[..]);
        let base = buf.as_ptr() as usize;
        let Parsed::Request(Request {
            command: Command::Store(s),
            ..
        }) = BinaryParser::new(limits()).parse(&mut buf)
        else {
            panic!("not a store");
        };
        assert_eq!(s.key.as_ptr() as usize, base + HEADER_LEN + 8);
        assert_eq!(s.value.as_ptr() as usize, base + HEADER_LEN + 11);
    }

    // ---- encoder ----

    fn enc(op: u8, opaque: u32, reply: &Reply) -> Vec<u8> {
        let mut out = BytesMut::new();
        let key = matches!(op, GETK | GETKQ).then(|| Bytes::from_static(b"key"));
        encode_reply(
            &BinaryHeader {
                opcode: op,
                opaque,
                key,
            },
            reply,
            &mut out,
        );
        out.to_vec()
    }

    /// A response packet.
    fn resp(
        op: u8,
        status: u16,
        opaque: u32,
        cas: u64,
        extras: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> Vec<u8> {
        let mut p = pkt(op, extras, key, value, opaque, cas);
        p[0] = MAGIC_RESPONSE;
        p[6..8].copy_from_slice(&status.to_be_bytes());
        p
    }

    fn item(key: &[u8], flags: u32, version: u64, value: &[u8]) -> ValueItem {
        ValueItem {
            key: b(key),
            flags,
            version,
            value: b(value),
        }
    }

    fn values(items: Vec<ValueItem>) -> Reply {
        Reply::Values {
            items,
            cas: true,
            end: true,
        }
    }

    #[test]
    fn encode_get_hit_echoes_opaque_and_cas() {
        let r = values(vec![item(b"key", 0xdead_beef, 99, b"val")]);
        let flags = 0xdead_beef_u32.to_be_bytes();
        assert_eq!(
            enc(GET, 0x0102_0304, &r),
            resp(GET, 0, 0x0102_0304, 99, &flags, b"", b"val")
        );
        assert_eq!(enc(GETQ, 5, &r), resp(GETQ, 0, 5, 99, &flags, b"", b"val"));
        assert_eq!(
            enc(GETK, 6, &r),
            resp(GETK, 0, 6, 99, &flags, b"key", b"val")
        );
        assert_eq!(
            enc(GETKQ, 7, &r),
            resp(GETKQ, 0, 7, 99, &flags, b"key", b"val")
        );
        assert_eq!(enc(GAT, 8, &r), resp(GAT, 0, 8, 99, &flags, b"", b"val"));
        assert_eq!(enc(GATQ, 9, &r), resp(GATQ, 0, 9, 99, &flags, b"", b"val"));
    }

    #[test]
    fn encode_get_miss() {
        let nf = |op, opaque| resp(op, 1, opaque, 0, b"", b"", b"Not found");
        for r in [values(vec![]), Reply::End, Reply::NotFound] {
            assert_eq!(enc(GET, 1, &r), nf(GET, 1));
            // memcached's GetK miss: the key, no text.
            assert_eq!(enc(GETK, 2, &r), resp(GETK, 1, 2, 0, b"", b"key", b""));
            assert_eq!(enc(GAT, 3, &r), nf(GAT, 3));
            assert!(enc(GETQ, 4, &r).is_empty());
            assert!(enc(GETKQ, 5, &r).is_empty());
            assert!(enc(GATQ, 6, &r).is_empty());
        }
    }

    #[test]
    fn encode_store_results() {
        let stored = Reply::Stored { version: 12 };
        assert_eq!(enc(SET, 3, &stored), resp(SET, 0, 3, 12, b"", b"", b""));
        assert_eq!(enc(ADD, 3, &stored), resp(ADD, 0, 3, 12, b"", b"", b""));
        assert!(enc(SETQ, 3, &stored).is_empty());
        // memcached's statuses: a failed add is "exists", a failed replace "not found", append "not stored".
        assert_eq!(
            enc(ADD, 4, &Reply::NotStored),
            resp(ADD, 2, 4, 0, b"", b"", b"Data exists for key.")
        );
        assert_eq!(
            enc(REPLACE, 4, &Reply::NotStored),
            resp(REPLACE, 1, 4, 0, b"", b"", b"Not found")
        );
        assert_eq!(
            enc(APPEND, 4, &Reply::NotStored),
            resp(APPEND, 5, 4, 0, b"", b"", b"Not stored.")
        );
        assert_eq!(
            enc(SETQ, 4, &Reply::Exists),
            resp(SETQ, 2, 4, 0, b"", b"", b"Data exists for key.")
        );
        assert_eq!(
            enc(REPLACEQ, 4, &Reply::NotFound),
            resp(REPLACEQ, 1, 4, 0, b"", b"", b"Not found")
        );
        assert_eq!(
            enc(DELETE, 5, &Reply::Deleted),
            resp(DELETE, 0, 5, 0, b"", b"", b"")
        );
        assert!(enc(DELETEQ, 5, &Reply::Deleted).is_empty());
        assert_eq!(
            enc(
                TOUCH,
                5,
                &Reply::Touched {
                    flags: 9,
                    version: 77
                }
            ),
            resp(TOUCH, 0, 5, 77, &9u32.to_be_bytes(), b"", b"")
        );
    }

    #[test]
    fn encode_arith() {
        let r = Reply::Number {
            value: 0x0102,
            version: 7,
        };
        assert_eq!(
            enc(INCREMENT, 9, &r),
            resp(INCREMENT, 0, 9, 7, b"", b"", &0x0102u64.to_be_bytes())
        );
        assert!(enc(DECREMENTQ, 9, &r).is_empty());
        assert_eq!(
            enc(INCREMENTQ, 9, &Reply::Error(ErrorReply::NonNumeric)),
            resp(
                INCREMENTQ,
                6,
                9,
                0,
                b"",
                b"",
                b"Non-numeric server-side value for incr or decr"
            )
        );
    }

    #[test]
    fn encode_errors_use_their_status() {
        // The body is memcached's text for the status (checked against memcached 1.6.18), or the node's own
        // message for a status memcached never sends.
        let e = |error: ErrorReply, st: u16, text: &str| {
            assert_eq!(
                enc(SETQ, 77, &Reply::Error(error)),
                resp(SETQ, st, 77, 0, b"", b"", text.as_bytes())
            );
        };
        e(ErrorReply::UnknownCommand, 0x81, "Unknown command");
        e(ErrorReply::BadCommandLine, 0x04, "Invalid arguments");
        e(ErrorReply::KeyTooLong, 0x04, "Invalid arguments");
        e(ErrorReply::TooLarge, 0x03, "Too large.");
        e(
            ErrorReply::Server("i/o error".into()),
            0x84,
            "SERVER_ERROR i/o error",
        );
    }

    #[test]
    fn encode_simple_successes() {
        assert_eq!(enc(NOOP, 1, &Reply::Ok), resp(NOOP, 0, 1, 0, b"", b"", b""));
        assert_eq!(
            enc(FLUSH, 2, &Reply::Ok),
            resp(FLUSH, 0, 2, 0, b"", b"", b"")
        );
        assert!(enc(FLUSHQ, 2, &Reply::Ok).is_empty());
        assert_eq!(
            enc(QUIT, 3, &Reply::Nothing),
            resp(QUIT, 0, 3, 0, b"", b"", b"")
        );
        assert!(enc(QUITQ, 3, &Reply::Nothing).is_empty());
        assert!(enc(GET, 3, &Reply::Nothing).is_empty());
        assert_eq!(
            enc(VERSION, 4, &Reply::Version("flare-2.0.0".into())),
            resp(VERSION, 0, 4, 0, b"", b"", b"flare-2.0.0")
        );
    }

    #[test]
    fn encode_stats() {
        let r = Reply::Stats(vec![
            ("pid".into(), "123".into()),
            ("uptime".into(), "5".into()),
        ]);
        let mut want = resp(STAT, 0, 8, 0, b"", b"pid", b"123");
        want.extend(resp(STAT, 0, 8, 0, b"", b"uptime", b"5"));
        want.extend(resp(STAT, 0, 8, 0, b"", b"", b""));
        assert_eq!(enc(STAT, 8, &r), want);
    }

    #[test]
    fn rejected_requests_encode_with_their_opaque() {
        let p = pkt(0x20, &[], &[], &[], 0xabcd, 0);
        let got = decode_all(&p);
        let Decoded::Error { framing, error, .. } = &got[0] else {
            panic!("not an error");
        };
        let mut out = BytesMut::new();
        crate::protocol::response::encode(framing, &Reply::Error(error.clone()), &mut out);
        assert_eq!(
            out.to_vec(),
            resp(0x20, 0x81, 0xabcd, 0, b"", b"", b"Unknown command")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
            let mut input = vec![MAGIC_REQUEST];
            input.extend(data);
            let cut = cut.min(input.len());
            let mut p = BinaryParser::new(limits());
            let mut buf = BytesMut::from(&input[..cut]);
            let _ = p.parse(&mut buf);
            buf.extend_from_slice(&input[cut..]);
            let before = buf.len();
            let _ = p.parse(&mut buf);
            prop_assert!(buf.len() <= before);
            let (_, rest) = decode_chunks(&[&input[..cut], &input[cut..]]);
            prop_assert!(rest.len() <= input.len());
        }
    }
}
