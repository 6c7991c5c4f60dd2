//! memcached meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`; protocol.md §11). Placeholder interface: the
//! parser and encoder are filled in by the meta-command work.
use bytes::{Bytes, BytesMut};

use super::{ErrorReply, Limits, LineError};

/// A parsed meta command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaCommand {
    /// The data block of `ms`.
    pub value: Bytes,
}

impl MetaCommand {
    /// Attaches the data block of `ms`.
    pub fn set_value(&mut self, value: Bytes) {
        self.value = value;
    }
}

/// What [`parse`] made of a meta command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaParsed {
    /// A whole command.
    Ready(MetaCommand),
    /// `ms`: a data block of `len` bytes (+ `\r\n`) follows.
    NeedData {
        /// The command, without its value yet.
        command: MetaCommand,
        /// Length of the data block.
        len: usize,
    },
}

/// Parses a meta command line; `tokens[0]` is the command name. Tokens are slices of `line`.
pub fn parse(_line: &Bytes, _tokens: &[&[u8]], _limits: &Limits) -> Result<MetaParsed, LineError> {
    Err(LineError::new(ErrorReply::UnknownCommand))
}

/// A meta-command reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaReply;

/// Appends the bytes of `reply`.
pub fn encode(_reply: &MetaReply, _out: &mut BytesMut) {}
