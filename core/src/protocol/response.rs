//! Reply encoders: [`Reply`] → memcached's exact bytes for the request's [`Framing`].
use bytes::BytesMut;

use super::{Framing, Reply};

/// Appends the bytes of `reply`, framed for `framing`, to `out`.
pub fn encode(framing: &Framing, reply: &Reply, out: &mut BytesMut) {
    match framing {
        Framing::Text { .. } => encode_text(reply, out),
        Framing::Binary(h) => super::binary::encode_reply(h, reply, out),
    }
}

/// Appends the text-protocol bytes of `reply` (stub).
pub fn encode_text(_reply: &Reply, _out: &mut BytesMut) {}
