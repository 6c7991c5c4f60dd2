//! When a local write on a cluster node is acknowledged, and with what (protocol.md §4.2, cluster.md §8): whether
//! it waits for its slaves (`sync`, `async`, or the node's `replication-type`), whether it is replicated at all,
//! and the reply when replication or the master's lease failed it. [`executed`] turns what [`crate::exec`] gave
//! into what the driver does next ([`Ran`], or a write to hand to [`crate::node::Node::replicate`] first), and
//! [`acknowledged`] gives such a write's answer once replication says how it went.

use crate::exec::{Mutation, Outcome};
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

/// What running a command on a node gave its driver.
#[derive(Debug)]
pub enum Ran {
    /// Send this reply; `wrote`: the local store changed (group commit waits for durability before sending).
    Reply {
        /// The reply.
        reply: Reply,
        /// The store changed.
        wrote: bool,
    },
    /// Not a data command: the driver runs it ([`crate::node::duty`]).
    Driver(Command),
    /// Close the connection (after the framing's farewell: binary `Quit` is acknowledged, text `quit` is not).
    Close,
}

impl From<Outcome> for Ran {
    /// A command run on the store alone (nothing replicated).
    fn from(outcome: Outcome) -> Ran {
        match outcome {
            Outcome::Reply { reply, mutations } => Ran::Reply {
                reply,
                wrote: !mutations.is_empty(),
            },
            Outcome::Driver(command) => Ran::Driver(command),
            Outcome::Close => Ran::Close,
        }
    }
}

impl Ran {
    /// The answer of a part of a plan run here, and whether it wrote. Only data commands are planned, so a part
    /// always has a reply; one that had none would answer `SERVER_ERROR proxy error`.
    pub fn into_part(self) -> (Reply, bool) {
        match self {
            Ran::Reply { reply, wrote } => (reply, wrote),
            Ran::Driver(_) | Ran::Close => (
                Reply::Error(ErrorReply::Server("proxy error".into())),
                false,
            ),
        }
    }
}

/// What a command run here leads to.
#[derive(Debug)]
pub enum Executed {
    /// Done: what the driver does with it.
    Ran(Ran),
    /// A planned write that changed the store: hand `mutations` to [`crate::node::Node::replicate`], then answer
    /// with [`acknowledged`].
    Replicate {
        /// The reply the write earned here.
        reply: Reply,
        /// What it changed.
        mutations: Vec<Mutation>,
    },
}

/// What `outcome`, the result of running a planned command (`write` as the plan says), leads to.
pub fn executed(outcome: Outcome, write: bool) -> Executed {
    match outcome {
        Outcome::Reply { reply, mutations } if replicates(write, &mutations) => {
            Executed::Replicate { reply, mutations }
        }
        other => Executed::Ran(Ran::from(other)),
    }
}

/// A replicated write's answer once replication gave `result`: the write is kept here either way (replication
/// goes on in the background), and a failure answers [`failure_reply`].
pub fn acknowledged(reply: Reply, result: Result<(), WriteFailure>) -> Ran {
    let reply = match result {
        Ok(()) => reply,
        Err(failure) => failure_reply(failure),
    };
    Ran::Reply { reply, wrote: true }
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

    fn run(line: &str, write: bool) -> Executed {
        use crate::storage::MemoryStorage;
        use crate::store::{Store, StoreConfig};
        let store = Store::new(MemoryStorage::new(), StoreConfig::default());
        let mut tally = crate::exec::Tally::default();
        executed(
            crate::exec::execute(&store, command(line), 100, &mut tally),
            write,
        )
    }

    #[test]
    fn only_a_planned_write_that_changed_something_is_replicated() {
        assert!(matches!(
            run("set k 0 0 1\r\nx\r\n", true),
            Executed::Replicate { reply: Reply::Stored { .. }, ref mutations } if mutations.len() == 1
        ));
        // Not planned as a write (a standalone node): the store changed, nothing replicated.
        assert!(matches!(
            run("set k 0 0 1\r\nx\r\n", false),
            Executed::Ran(Ran::Reply {
                reply: Reply::Stored { .. },
                wrote: true
            })
        ));
        // A write that changed nothing.
        assert!(matches!(
            run("delete k\r\n", true),
            Executed::Ran(Ran::Reply {
                reply: Reply::NotFound,
                wrote: false
            })
        ));
        assert!(matches!(
            run("stats\r\n", false),
            Executed::Ran(Ran::Driver(_))
        ));
        assert!(matches!(run("quit\r\n", false), Executed::Ran(Ran::Close)));
    }

    #[test]
    fn a_replicated_write_is_kept_and_answers_its_failure() {
        let ok = acknowledged(Reply::Ok, Ok(()));
        assert!(matches!(
            ok,
            Ran::Reply {
                reply: Reply::Ok,
                wrote: true
            }
        ));
        let failed = acknowledged(Reply::Ok, Err(WriteFailure::Replication));
        assert!(matches!(
            failed,
            Ran::Reply { reply, wrote: true } if reply == failure_reply(WriteFailure::Replication)
        ));
        assert_eq!(
            Ran::Close.into_part().0,
            Reply::Error(ErrorReply::Server("proxy error".into()))
        );
    }
}
