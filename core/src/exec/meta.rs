//! Execution of the meta commands (protocol.md §11) over a [`Store`]. Placeholder: filled in by the meta work.
use crate::exec::{Mutation, Tally};
use crate::protocol::meta::MetaCommand;
use crate::protocol::{ErrorReply, Reply};
use crate::storage::{Storage, StorageError};
use crate::store::Store;

/// Runs one meta command at `now`, recording what it changed in `mutations`.
pub fn execute<S: Storage>(
    _store: &Store<S>,
    _command: MetaCommand,
    _now: u64,
    _tally: &mut Tally,
    _mutations: &mut Vec<Mutation>,
) -> Result<Reply, StorageError> {
    Ok(Reply::Error(ErrorReply::UnknownCommand))
}
