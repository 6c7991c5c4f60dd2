//! memcached binary protocol parser (stub, filled in by the binary-protocol work).
use bytes::BytesMut;

use super::{Limits, Parsed};

/// Request magic byte.
pub const MAGIC_REQUEST: u8 = 0x80;
/// Response magic byte.
pub const MAGIC_RESPONSE: u8 = 0x81;

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

/// True for quiet opcodes.
pub fn is_quiet(opcode: u8) -> bool {
    matches!(opcode, 0x09 | 0x0d | 0x11..=0x1a | 0x1e)
}

/// Incremental binary-protocol parser for one connection.
#[derive(Debug)]
pub struct BinaryParser {
    #[allow(dead_code)]
    limits: Limits,
}

impl BinaryParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        BinaryParser { limits }
    }
    /// Parses the next request.
    pub fn parse(&mut self, _buf: &mut BytesMut) -> Parsed {
        Parsed::NeedMore
    }
    /// True while a request is partly received.
    pub fn in_progress(&self) -> bool {
        false
    }
}

/// Appends the binary reply packet(s) for `reply` to a request with header `header` (stub).
pub fn encode_reply(_header: &super::BinaryHeader, _reply: &super::Reply, _out: &mut BytesMut) {}
