//! Reply encoders (stub, filled in by the protocol work).
use bytes::BytesMut;

use super::{Framing, Reply};

/// Appends the bytes of `reply`, framed for `framing`, to `out`.
pub fn encode(_framing: &Framing, _reply: &Reply, _out: &mut BytesMut) {}
