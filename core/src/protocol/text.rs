//! memcached text protocol parser (stub, filled in by the text-protocol work).
use bytes::BytesMut;

use super::{Limits, Parsed};

/// Incremental text-protocol parser for one connection.
#[derive(Debug)]
pub struct TextParser {
    #[allow(dead_code)]
    limits: Limits,
    #[allow(dead_code)]
    gat_flare_syntax: bool,
}

impl TextParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits, gat_flare_syntax: bool) -> Self {
        TextParser {
            limits,
            gat_flare_syntax,
        }
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
