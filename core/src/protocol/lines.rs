//! The listing lines of the wire vocabulary, lexed and encoded in one place:
//!
//! - `STAT <name> <value>` (`stats`, `stats nodes`, ...): [`stat`], [`stat_str`], [`stat_value`]; [`put_stat`],
//!   [`stat_line`];
//! - `NODE <name> <port> <role> <state> <partition> <balance> <thread_type>` (`node add`, `node sync`, protocol.md
//!   §5.7): [`node`], [`is_node`]; [`NodeLine`]'s `Display`;
//! - `VALUE <key> <flags> <bytes> [<version> [<exptime>]]` (retrievals, `dump`): [`value_header`], [`is_value`];
//!   [`put_value_header`];
//! - `END`: [`is_end`]; [`put_end`], [`END_LINE`].
//!
//! Lines are given without their line ending; the `put_*` encoders append one. The reply reader, the `node sync`
//! parser, registration, the node map, the reply encoders and dumps all go through here, so what one side writes
//! is what the other reads. It imports only [`super::lex`], no parser.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::lex::{parse_i64, parse_u32, parse_u64, Tokens};
use super::NodeLine;

/// The line that ends a values or listing reply, with its line ending.
pub const END_LINE: &[u8] = b"END\r\n";

/// Whether `line` is `END`.
pub fn is_end(line: &[u8]) -> bool {
    line == b"END"
}

/// Appends `END\r\n`.
pub fn put_end(out: &mut BytesMut) {
    out.extend_from_slice(END_LINE);
}

/// `STAT <name> <value>` → (`name`, `value`): the name runs to the first space after `STAT `, the value is the
/// rest of the line (it may be empty or hold spaces). `None` for any other line.
pub fn stat(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = line.strip_prefix(b"STAT ")?;
    let space = memchr::memchr(b' ', rest)?;
    Some((&rest[..space], &rest[space + 1..]))
}

/// [`stat`] for a line that is UTF-8 (`None` otherwise).
pub fn stat_str(line: &[u8]) -> Option<(&str, &str)> {
    std::str::from_utf8(line.strip_prefix(b"STAT ")?)
        .ok()?
        .split_once(' ')
}

/// The value of `line` when it is `STAT <name> <value>` for this `name`.
pub fn stat_value<'a>(line: &'a [u8], name: &str) -> Option<&'a [u8]> {
    stat(line).and_then(|(n, v)| (n == name.as_bytes()).then_some(v))
}

/// Appends `STAT <name> <value>\r\n`.
pub fn put_stat(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 8);
    out.put_slice(b"STAT ");
    out.put_slice(name);
    out.put_u8(b' ');
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// `STAT <name> <value>`, without a line ending.
pub fn stat_line(name: impl fmt::Display, value: impl fmt::Display) -> String {
    format!("STAT {name} {value}")
}

/// Whether `line` starts like a `NODE` line (it may still be malformed: [`node`] says).
pub fn is_node(line: &[u8]) -> bool {
    line.starts_with(b"NODE ")
}

/// `NODE <name> <port> <role> <state> <partition> <balance> <thread_type>`; `None` when it is not one or a field
/// is out of range (role 0..=2, state 0..=3, partition ≥ −1, balance ≥ 0).
pub fn node(line: &Bytes) -> Option<NodeLine> {
    let mut t = Tokens::new(line);
    if t.next()? != b"NODE" {
        return None;
    }
    let name = line.slice_ref(t.next()?);
    let port = u16::try_from(parse_u64(t.next()?)?).ok()?;
    let role = u8::try_from(parse_u64(t.next()?)?)
        .ok()
        .filter(|r| *r <= 2)?;
    let state = u8::try_from(parse_u64(t.next()?)?)
        .ok()
        .filter(|s| *s <= 3)?;
    let partition = i32::try_from(parse_i64(t.next()?)?)
        .ok()
        .filter(|p| *p >= -1)?;
    let balance = i32::try_from(parse_i64(t.next()?)?)
        .ok()
        .filter(|b| *b >= 0)?;
    let thread_type = u32::try_from(parse_u64(t.next()?)?).ok()?;
    if t.next().is_some() {
        return None;
    }
    Some(NodeLine {
        name,
        port,
        role,
        state,
        partition,
        balance,
        thread_type,
    })
}

/// The `NODE` line, without a line ending.
impl fmt::Display for NodeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NODE {} {} {} {} {} {} {}",
            String::from_utf8_lossy(&self.name),
            self.port,
            self.role,
            self.state,
            self.partition,
            self.balance,
            self.thread_type
        )
    }
}

/// The fields of a `VALUE` line (its data block follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueHeader<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// The data block's length.
    pub len: u64,
    /// The version (`gets`, `gats`, `dump`).
    pub version: Option<u64>,
    /// The absolute exptime (`dump`).
    pub exptime: Option<u64>,
}

/// Whether `line` starts like a `VALUE` line (it may still be malformed: [`value_header`] says).
pub fn is_value(line: &[u8]) -> bool {
    line.starts_with(b"VALUE ")
}

/// `VALUE <key> <flags> <bytes> [<version> [<exptime>]]`; `None` when a field is missing, not a number or one
/// too many. The caller checks the key and length against its limits.
pub fn value_header(line: &[u8]) -> Option<ValueHeader<'_>> {
    let mut t = Tokens::new(line);
    if t.next()? != b"VALUE" {
        return None;
    }
    let key = t.next()?;
    let flags = t.next().and_then(parse_u32)?;
    let len = t.next().and_then(parse_u64)?;
    let version = t.next().map(parse_u64);
    let exptime = t.next().map(parse_u64);
    if t.next().is_some() {
        return None;
    }
    Some(ValueHeader {
        key,
        flags,
        len,
        version: version.map(|v| v.ok_or(())).transpose().ok()?,
        exptime: exptime.map(|e| e.ok_or(())).transpose().ok()?,
    })
}

/// Appends `VALUE <key> <flags> <len>[ <version>[ <exptime>]]\r\n` (an exptime is written only after a version).
pub fn put_value_header(out: &mut BytesMut, header: &ValueHeader<'_>) {
    let mut num = itoa::Buffer::new();
    out.put_slice(b"VALUE ");
    out.put_slice(header.key);
    out.put_u8(b' ');
    out.put_slice(num.format(header.flags).as_bytes());
    out.put_u8(b' ');
    out.put_slice(num.format(header.len).as_bytes());
    if let Some(v) = header.version {
        out.put_u8(b' ');
        out.put_slice(num.format(v).as_bytes());
        if let Some(e) = header.exptime {
            out.put_u8(b' ');
            out.put_slice(num.format(e).as_bytes());
        }
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn stat_lines_split_at_the_first_space_after_the_name() {
        assert_eq!(stat(b"STAT pid 1"), Some((&b"pid"[..], &b"1"[..])));
        assert_eq!(stat(b"STAT 1:op "), Some((&b"1:op"[..], &b""[..])));
        assert_eq!(
            stat(b"STAT version 1.0 beta"),
            Some((&b"version"[..], &b"1.0 beta"[..]))
        );
        assert_eq!(stat(b"STAT lonely"), None);
        assert_eq!(stat(b"NODE a 1 0 0 0 1 1"), None);
        assert_eq!(
            stat_str(b"STAT a:1:role master"),
            Some(("a:1:role", "master"))
        );
        assert_eq!(
            stat_value(b"STAT curr_items 7", "curr_items"),
            Some(&b"7"[..])
        );
        assert_eq!(stat_value(b"STAT curr_items 7", "curr"), None);
        let mut out = BytesMut::new();
        put_stat(&mut out, b"pid", b"1");
        put_end(&mut out);
        assert_eq!(&out[..], b"STAT pid 1\r\nEND\r\n");
        assert_eq!(stat_line("pid", 1), "STAT pid 1");
        assert!(is_end(b"END") && !is_end(b"END ") && !is_end(b"ENDS"));
    }

    #[test]
    fn node_lines_round_trip() {
        for text in [
            "NODE a 1 0 0 0 1 16",
            "NODE h 12121 2 0 -1 0 17",
            "NODE b 1 1 3 4 2 9",
        ] {
            let line = node(&b(text)).unwrap();
            assert!(is_node(text.as_bytes()));
            assert_eq!(line.to_string(), text);
        }
        for bad in [
            "NODE a 1 3 0 0 1 16",
            "NODE a 1 0 4 0 1 16",
            "NODE a 1 0 0 -2 1 16",
            "NODE a 1 0 0 0 -1 16",
            "NODE a 1 0 0 0 1",
            "NODE a 1 0 0 0 1 16 x",
            "STAT a 1",
        ] {
            assert_eq!(node(&b(bad)), None, "{bad}");
        }
    }

    #[test]
    fn value_lines_round_trip() {
        for text in ["VALUE k 7 2", "VALUE k 7 2 9", "VALUE key0 3 2 7 0"] {
            let h = value_header(text.as_bytes()).unwrap();
            let mut out = BytesMut::new();
            put_value_header(&mut out, &h);
            assert_eq!(out, format!("{text}\r\n").as_bytes());
        }
        let h = value_header(b"VALUE k 1 2 3 4").unwrap();
        assert_eq!(
            (h.key, h.flags, h.len, h.version, h.exptime),
            (&b"k"[..], 1, 2, Some(3), Some(4))
        );
        for bad in [
            "VALUE k x 2",
            "VALUE k 1",
            "VALUE k 1 2 x",
            "VALUE k 1 2 3 x",
            "VALUE k 1 2 3 4 5",
            "VALUES k 1 2",
        ] {
            assert_eq!(value_header(bad.as_bytes()), None, "{bad}");
        }
        assert!(is_value(b"VALUE k 1 2") && !is_value(b"VA 2"));
    }
}
