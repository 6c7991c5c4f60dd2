//! memcached meta commands (stub, filled in by the text-protocol work).

/// A parsed meta command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaCommand;

/// A meta-command reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaReply;
