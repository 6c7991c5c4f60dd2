//! When a local write on a cluster node is acknowledged, and with what (protocol.md §4.2, cluster.md §8): whether
//! it waits for its slaves (`sync`, `async`, or the node's `replication-type`), whether it is replicated at all,
//! and the reply when replication or the master's lease failed it.

use crate::exec::Mutation;
use crate::node::no_lease_reply;
use crate::node::targets::WriteFailure;
use crate::protocol::{Command, ErrorReply, ReplicationMode, Reply};

/// The write's own `sync`/`async` option.
pub fn replication_mode(command: &Command) -> ReplicationMode {
    match command {
        Command::Store(s) => s.options.replication,
        Command::Delete { options, .. } | Command::Arith { options, .. } => options.replication,
        _ => ReplicationMode::Default,
    }
}

/// Whether the write waits for every active slave: its own option, else `sync_default` (`replication-type`).
pub fn wants_sync(command: &Command, sync_default: bool) -> bool {
    match replication_mode(command) {
        ReplicationMode::Sync => true,
        ReplicationMode::Async => false,
        ReplicationMode::Default => sync_default,
    }
}

/// Whether what a command changed goes to [`crate::node::Node::replicate`]: a planned write that changed
/// something.
pub fn replicates(write: bool, mutations: &[Mutation]) -> bool {
    write && !mutations.is_empty()
}

/// The reply to a write that was applied here but failed: replication goes on in the background and the client
/// learns the write is not on every slave, or the master's lease ended before it could acknowledge.
pub fn failure_reply(failure: WriteFailure) -> Reply {
    match failure {
        WriteFailure::Lease => no_lease_reply(),
        WriteFailure::Replication => Reply::Error(ErrorReply::Server("replication failed".into())),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::protocol::{Decoded, Decoder, Limits};

    fn command(line: &str) -> Command {
        let mut decoder = Decoder::new(Limits::default(), Default::default());
        match decoder.decode(&mut BytesMut::from(line)) {
            Some(Decoded::Request(r)) => r.command,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_writes_own_option_beats_the_default() {
        for (line, default, sync) in [
            ("set k 0 0 1 sync\r\nx\r\n", false, true),
            ("set k 0 0 1 async\r\nx\r\n", true, false),
            ("set k 0 0 1\r\nx\r\n", true, true),
            ("set k 0 0 1\r\nx\r\n", false, false),
            ("delete k sync\r\n", false, true),
            ("incr k 1 noreply async\r\n", true, false),
            ("touch k 10\r\n", true, true),
        ] {
            assert_eq!(
                wants_sync(&command(line), default),
                sync,
                "{line} default {default}"
            );
        }
    }

    #[test]
    fn failures_answer_server_error() {
        assert_eq!(
            failure_reply(WriteFailure::Replication),
            Reply::Error(ErrorReply::Server("replication failed".into()))
        );
        assert_eq!(failure_reply(WriteFailure::Lease), no_lease_reply());
        assert!(!replicates(true, &[]));
    }
}
