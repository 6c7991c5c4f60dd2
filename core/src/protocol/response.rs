//! Reply encoders: [`Reply`] → memcached's exact bytes for the request's [`Framing`] (protocol.md §8). Every line
//! ends with `\r\n`.
use bytes::{BufMut, BytesMut};

use super::lines::{self, ValueHeader};
use super::{ErrorReply, Framing, Reply, ValueItem};

/// What memcached sends a connection over its limit before closing it (and so does a node at `max-connection`).
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// Appends the bytes of `reply`, framed for `framing`, to `out`.
pub fn encode(framing: &Framing, reply: &Reply, out: &mut BytesMut) {
    match framing {
        Framing::Text { .. } => encode_text(reply, out),
        Framing::Binary(h) => super::binary::encode_reply(h, reply, out),
    }
}

/// [`encode`] for the reply to a request that is a part of a streamed retrieval line when `part`
/// ([`super::Decoded::Part`]): a part's reply is sent [`Reply::continued`], without the `END` only the last part
/// sends.
pub fn encode_part(framing: &Framing, reply: &Reply, part: bool, out: &mut BytesMut) {
    match part {
        true => encode(framing, &reply.clone().continued(), out),
        false => encode(framing, reply, out),
    }
}

/// Appends the text-protocol bytes of `reply` to `out`.
pub fn encode_text(reply: &Reply, out: &mut BytesMut) {
    let line = |out: &mut BytesMut, s: &[u8]| {
        out.reserve(s.len() + 2);
        out.put_slice(s);
        out.put_slice(b"\r\n");
    };
    match reply {
        Reply::Nothing => {}
        Reply::Stored { .. } => line(out, b"STORED"),
        Reply::NotStored => line(out, b"NOT_STORED"),
        Reply::Exists => line(out, b"EXISTS"),
        Reply::NotFound => line(out, b"NOT_FOUND"),
        Reply::Deleted => line(out, b"DELETED"),
        Reply::Touched { .. } => line(out, b"TOUCHED"),
        Reply::Ok => line(out, b"OK"),
        Reply::End => lines::put_end(out),
        Reply::Values { items, cas, end } => {
            for item in items {
                encode_value(item, *cas, None, out);
            }
            if *end {
                lines::put_end(out);
            }
        }
        Reply::Number { value, .. } => line(out, itoa::Buffer::new().format(*value).as_bytes()),
        Reply::Version(v) => {
            out.put_slice(b"VERSION ");
            line(out, v.as_bytes());
        }
        Reply::Stats(pairs) => {
            for (name, value) in pairs {
                lines::put_stat(out, name.as_bytes(), value.as_bytes());
            }
            lines::put_end(out);
        }
        Reply::Lines(lines) => {
            for l in lines {
                line(out, l.as_bytes());
            }
            lines::put_end(out);
        }
        Reply::Error(ErrorReply::Silent) => {}
        Reply::Error(e) => line(out, e.line().as_bytes()),
        Reply::Meta(m) => super::meta::encode(m, out),
        Reply::Raw(bytes) => out.extend_from_slice(bytes),
    }
}

/// Appends one `VALUE <key> <flags> <bytes> [<version> [<exptime>]]\r\n<data>\r\n` block: the version for
/// `gets`/`gats`, and an absolute exptime as well for `dump` (protocol.md §5.2).
pub fn encode_value(item: &ValueItem, cas: bool, exptime: Option<u64>, out: &mut BytesMut) {
    out.reserve(item.key.len() + item.value.len() + 64);
    let header = ValueHeader {
        key: &item.key,
        flags: item.flags,
        len: item.value.len() as u64,
        version: (cas || exptime.is_some()).then_some(item.version),
        exptime,
    };
    lines::put_value_header(out, &header);
    out.put_slice(&item.value);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::ErrorReply;

    fn text(reply: Reply) -> String {
        let mut out = BytesMut::new();
        encode_text(&reply, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn a_parts_values_go_without_end() {
        let reply = Reply::Values {
            items: vec![],
            cas: false,
            end: true,
        };
        let mut out = BytesMut::new();
        encode_part(&Framing::TEXT, &reply, false, &mut out);
        assert_eq!(&out[..], b"END\r\n");
        out.clear();
        encode_part(&Framing::TEXT, &reply, true, &mut out);
        assert_eq!(&out[..], b"");
    }

    #[test]
    fn exact_strings() {
        assert_eq!(text(Reply::Stored { version: 3 }), "STORED\r\n");
        assert_eq!(text(Reply::NotStored), "NOT_STORED\r\n");
        assert_eq!(text(Reply::Nothing), "");
        assert_eq!(
            text(Reply::Number {
                value: 42,
                version: 1
            }),
            "42\r\n"
        );
        assert_eq!(
            text(Reply::Version("flare-2.0.0".into())),
            "VERSION flare-2.0.0\r\n"
        );
        assert_eq!(
            text(Reply::Error(ErrorReply::TooLarge)),
            "SERVER_ERROR object too large for cache\r\n"
        );
        assert_eq!(
            text(Reply::Stats(vec![
                ("pid".into(), "1".into()),
                ("1:op".into(), String::new())
            ])),
            "STAT pid 1\r\nSTAT 1:op \r\nEND\r\n"
        );
        let item = ValueItem {
            key: Bytes::from_static(b"k"),
            flags: 7,
            version: 9,
            value: Bytes::from_static(b"ab"),
        };
        assert_eq!(
            text(Reply::Values {
                items: vec![item.clone()],
                cas: true,
                end: true
            }),
            "VALUE k 7 2 9\r\nab\r\nEND\r\n"
        );
        assert_eq!(
            text(Reply::Values {
                items: vec![item.clone()],
                cas: false,
                end: false
            }),
            "VALUE k 7 2\r\nab\r\n"
        );
        let mut out = BytesMut::new();
        encode_value(&item, false, Some(1234), &mut out);
        assert_eq!(&out[..], b"VALUE k 7 2 9 1234\r\nab\r\n");
    }
}
