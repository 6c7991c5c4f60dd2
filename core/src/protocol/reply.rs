//! Reading replies from another node: what a node gets back when it forwards a request, replicates a write, pulls a
//! dump, or talks to the index server. Incremental and zero-copy like the request parsers, bounded by the same
//! [`Limits`], and it never panics on any input (the `reply` fuzz target checks it).
//!
//! The caller knows which kind of reply it waits for ([`ReplyKind`]) and pulls [`ReplyEvent`]s one at a time, so a
//! `dump` stream of any length is read item by item without being collected. A malformed reply is an error after
//! which the connection cannot be trusted and must be closed.

use bytes::{Buf, Bytes, BytesMut};

use super::lex::{parse_u64, Tokens};
use super::{lines, ErrorReply, Limits, Reply};

/// How the reply to a request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// One line: `STORED`, `NOT_FOUND`, a number, `OK`, `VERSION ...`, an error line.
    Line,
    /// `VALUE` blocks (with their data) until `END`, or an error line (`get`, `gets`, `gat`, `dump`).
    Values,
    /// Listing lines until `END`, or an error line (`stats`, `node add`, `meta`, `dump_key`).
    Lines,
    /// A meta reply: one status line, or `VA <size> <flags>*` and its data block.
    Meta,
}

/// One `VALUE <key> <flags> <bytes> [<version> [<exptime>]]` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueBlock {
    /// The key.
    pub key: Bytes,
    /// Client flags.
    pub flags: u32,
    /// The version, when the reply carries it (`gets`, `dump`).
    pub version: Option<u64>,
    /// The absolute exptime, when the reply carries it (`dump`).
    pub exptime: Option<u64>,
    /// The data.
    pub value: Bytes,
}

/// A whole answer from a peer to one forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerReply {
    /// A one-line answer (or the error line that ended a values/lines reply).
    Line(Bytes),
    /// `VALUE` blocks up to `END`.
    Values(Vec<ValueBlock>),
    /// Listing lines up to `END`.
    Lines(Vec<Bytes>),
    /// A meta answer: its status line and, for `VA`, the data block.
    Meta(Bytes, Option<Bytes>),
}

/// One step of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyEvent {
    /// A line that is the whole reply (or ends it with an error), without its line ending.
    Line(Bytes),
    /// A `VALUE` block of a values reply.
    Value(ValueBlock),
    /// A listing line of a lines reply (`STAT ...`, `NODE ...`, `KEY ...`, `META ...`).
    Item(Bytes),
    /// The `END` of a values or lines reply.
    End,
    /// A meta `VA` reply: its status line and data block.
    MetaValue {
        /// `VA <size> <flags>*`.
        line: Bytes,
        /// The data block.
        data: Bytes,
    },
}

/// A reply that cannot be read; the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line longer than the limit.
    #[error("reply line too long")]
    LineTooLong,
    /// A `VALUE` or `VA` line that does not parse.
    #[error("malformed value line")]
    BadValueLine,
    /// A data block longer than the limit.
    #[error("value too large")]
    TooLarge,
    /// A data block not followed by CRLF.
    #[error("bad data chunk")]
    BadDataChunk,
}

/// Incremental reader of replies on one connection.
#[derive(Debug)]
pub struct ReplyReader {
    limits: Limits,
    /// A `VALUE`/`VA` line was read; its data block of this length is awaited.
    pending: Option<Pending>,
    scanned: usize,
}

#[derive(Debug)]
enum Pending {
    Value { block: ValueBlock, len: usize },
    Meta { line: Bytes, len: usize },
}

impl ReplyReader {
    /// A reader enforcing `limits` (line length and value size).
    pub fn new(limits: Limits) -> Self {
        ReplyReader {
            limits,
            pending: None,
            scanned: 0,
        }
    }

    /// The next event of a reply of `kind`, `Ok(None)` when more bytes are needed.
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        kind: ReplyKind,
    ) -> Result<Option<ReplyEvent>, ReplyError> {
        if let Some(p) = self.pending.take() {
            return self.data(buf, p);
        }
        let Some(line) = self.line(buf)? else {
            return Ok(None);
        };
        match kind {
            ReplyKind::Line => Ok(Some(ReplyEvent::Line(line))),
            ReplyKind::Lines if lines::is_end(&line) => Ok(Some(ReplyEvent::End)),
            ReplyKind::Lines if is_error(&line) => Ok(Some(ReplyEvent::Line(line))),
            ReplyKind::Lines => Ok(Some(ReplyEvent::Item(line))),
            ReplyKind::Values if lines::is_end(&line) => Ok(Some(ReplyEvent::End)),
            ReplyKind::Values if lines::is_value(&line) => {
                let (block, len) = self.value_line(&line)?;
                self.data(buf, Pending::Value { block, len })
            }
            ReplyKind::Values => Ok(Some(ReplyEvent::Line(line))),
            ReplyKind::Meta if line.starts_with(b"VA ") => {
                let len = Tokens::new(&line)
                    .nth(1)
                    .and_then(parse_u64)
                    .filter(|l| *l <= u64::from(self.limits.item_size_max))
                    .ok_or(ReplyError::BadValueLine)? as usize;
                self.data(buf, Pending::Meta { line, len })
            }
            ReplyKind::Meta => Ok(Some(ReplyEvent::Line(line))),
        }
    }

    /// True while part of a reply is buffered.
    pub fn in_progress(&self) -> bool {
        self.pending.is_some() || self.scanned > 0
    }

    fn line(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ReplyError> {
        let from = self.scanned.min(buf.len());
        let Some(i) = memchr::memchr(b'\n', &buf[from..]) else {
            if buf.len() > self.limits.line_max + 1 {
                return Err(ReplyError::LineTooLong);
            }
            self.scanned = buf.len();
            return Ok(None);
        };
        self.scanned = 0;
        let mut line = buf.split_to(from + i + 1);
        line.truncate(from + i);
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.limits.line_max {
            return Err(ReplyError::LineTooLong);
        }
        Ok(Some(line.freeze()))
    }

    fn value_line(&self, line: &Bytes) -> Result<(ValueBlock, usize), ReplyError> {
        let h = lines::value_header(line).ok_or(ReplyError::BadValueLine)?;
        if h.key.len() > self.limits.key_max {
            return Err(ReplyError::BadValueLine);
        }
        if h.len > u64::from(self.limits.item_size_max) {
            return Err(ReplyError::TooLarge);
        }
        let block = ValueBlock {
            key: line.slice_ref(h.key),
            flags: h.flags,
            version: h.version,
            exptime: h.exptime,
            value: Bytes::new(),
        };
        // len <= item_size_max <= 2^31-1.
        Ok((block, h.len as usize))
    }

    fn data(&mut self, buf: &mut BytesMut, p: Pending) -> Result<Option<ReplyEvent>, ReplyError> {
        let len = match &p {
            Pending::Value { len, .. } | Pending::Meta { len, .. } => *len,
        };
        if buf.len() < len + 2 {
            self.pending = Some(p);
            return Ok(None);
        }
        let data = buf.split_to(len).freeze();
        if &buf[..2] != b"\r\n" {
            return Err(ReplyError::BadDataChunk);
        }
        buf.advance(2);
        Ok(Some(match p {
            Pending::Value { mut block, .. } => {
                block.value = data;
                ReplyEvent::Value(block)
            }
            Pending::Meta { line, .. } => ReplyEvent::MetaValue { line, data },
        }))
    }
}

/// `ERROR`, `CLIENT_ERROR ...` or `SERVER_ERROR ...`.
pub fn is_error(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR")
}

/// The [`Reply`] a one-line answer stands for, so a forwarded request's answer can be sent to a client in either
/// protocol. A line that is no known reply becomes `SERVER_ERROR proxy error`.
pub fn line_reply(line: &[u8]) -> Reply {
    match line {
        b"STORED" => Reply::Stored { version: 0 },
        b"NOT_STORED" => Reply::NotStored,
        b"EXISTS" => Reply::Exists,
        b"NOT_FOUND" => Reply::NotFound,
        b"DELETED" => Reply::Deleted,
        b"TOUCHED" => Reply::Touched {
            flags: 0,
            version: 0,
        },
        b"OK" => Reply::Ok,
        l if lines::is_end(l) => Reply::End,
        _ => {
            if let Some(e) = ErrorReply::from_line(line) {
                Reply::Error(e)
            } else if let Some(v) = line.strip_prefix(b"VERSION ") {
                Reply::Version(String::from_utf8_lossy(v).into_owned())
            } else if let Some(n) = parse_u64(line) {
                Reply::Number {
                    value: n,
                    version: 0,
                }
            } else {
                Reply::Error(ErrorReply::Server("proxy error".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            line_max: 64,
            key_max: 16,
            item_size_max: 32,
            ..Limits::default()
        }
    }

    fn all(input: &[u8], kind: ReplyKind) -> Result<Vec<ReplyEvent>, ReplyError> {
        let mut r = ReplyReader::new(limits());
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(e) = r.next(&mut buf, kind)? {
            out.push(e);
        }
        Ok(out)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn values_with_and_without_versions() {
        let out = all(
            b"VALUE a 1 2\r\nxy\r\nVALUE b 0 0 9 77\r\n\r\nEND\r\n",
            ReplyKind::Values,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                ReplyEvent::Value(ValueBlock {
                    key: b("a"),
                    flags: 1,
                    version: None,
                    exptime: None,
                    value: b("xy")
                }),
                ReplyEvent::Value(ValueBlock {
                    key: b("b"),
                    flags: 0,
                    version: Some(9),
                    exptime: Some(77),
                    value: b("")
                }),
                ReplyEvent::End,
            ]
        );
        assert_eq!(
            all(b"SERVER_ERROR busy\r\n", ReplyKind::Values).unwrap(),
            vec![ReplyEvent::Line(b("SERVER_ERROR busy"))]
        );
    }

    #[test]
    fn lines_and_meta() {
        let out = all(b"STAT pid 1\r\nSTAT x \r\nEND\r\n", ReplyKind::Lines).unwrap();
        assert_eq!(
            out,
            vec![
                ReplyEvent::Item(b("STAT pid 1")),
                ReplyEvent::Item(b("STAT x ")),
                ReplyEvent::End
            ]
        );
        let out = all(b"VA 2 c5\r\nhi\r\nHD\r\n", ReplyKind::Meta).unwrap();
        assert_eq!(
            out,
            vec![
                ReplyEvent::MetaValue {
                    line: b("VA 2 c5"),
                    data: b("hi")
                },
                ReplyEvent::Line(b("HD"))
            ]
        );
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert_eq!(
            all(b"VALUE a x 2\r\nxy\r\n", ReplyKind::Values),
            Err(ReplyError::BadValueLine)
        );
        assert_eq!(
            all(b"VALUE a 0 99\r\n", ReplyKind::Values),
            Err(ReplyError::TooLarge)
        );
        assert_eq!(
            all(b"VALUE a 0 2\r\nxyz\r\n", ReplyKind::Values),
            Err(ReplyError::BadDataChunk)
        );
        assert_eq!(
            all(&[b'x'; 100], ReplyKind::Line),
            Err(ReplyError::LineTooLong)
        );
    }

    #[test]
    fn split_at_every_offset() {
        let input: &[u8] = b"VALUE key 3 4 5 6\r\nab\r\n\r\nVALUE k 0 1\r\nz\r\nEND\r\n";
        let whole = all(input, ReplyKind::Values).unwrap();
        for cut in 0..input.len() {
            let mut r = ReplyReader::new(limits());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&input[..cut], &input[cut..]] {
                buf.extend_from_slice(part);
                while let Some(e) = r.next(&mut buf, ReplyKind::Values).unwrap() {
                    got.push(e);
                }
            }
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn lines_map_to_replies() {
        assert_eq!(line_reply(b"STORED"), Reply::Stored { version: 0 });
        assert_eq!(
            line_reply(b"42"),
            Reply::Number {
                value: 42,
                version: 0
            }
        );
        assert_eq!(
            line_reply(b"SERVER_ERROR proxy loop"),
            Reply::Error(ErrorReply::Server("proxy loop".into()))
        );
        assert_eq!(
            line_reply(b"CLIENT_ERROR bad data chunk"),
            Reply::Error(ErrorReply::BadDataChunk),
            "the fixed errors are recognised (a binary client's status depends on them)"
        );
        assert_eq!(
            line_reply(b"CLIENT_ERROR cannot increment or decrement non-numeric value"),
            Reply::Error(ErrorReply::NonNumeric)
        );
        assert_eq!(
            line_reply(b"SERVER_ERROR object too large for cache"),
            Reply::Error(ErrorReply::TooLarge)
        );
        assert_eq!(
            line_reply(b"CLIENT_ERROR something else"),
            Reply::Error(ErrorReply::Client("something else".into()))
        );
        assert_eq!(
            line_reply(b"ERROR"),
            Reply::Error(ErrorReply::UnknownCommand)
        );
        assert_eq!(
            line_reply(b"garbage"),
            Reply::Error(ErrorReply::Server("proxy error".into()))
        );
    }
}
