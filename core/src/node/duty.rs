//! The commands [`crate::exec`] hands to a node's driver (`Outcome::Driver`), and what each one answers: the
//! driver supplies the facts only it has (its `version-string`, its health, its `show variables`) and does the
//! jobs only it can (gather `stats`, find a connection to kill, stream a dump, hand `node sync` to the machine).

use crate::dump::DumpKind;
use crate::node::stats::thread_queue;
use crate::protocol::{Command, DumpArgs, ErrorReply, NodeLine, Reply, StatsGroup};

/// What the driver knows that the answers need.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The text after `VERSION ` (`version-string`).
    pub version_string: &'a str,
    /// False once a storage failure was seen: `ping` answers `SERVER_ERROR storage error` (cluster.md §5.3).
    pub healthy: bool,
    /// `show variables` lines.
    pub show_variables: &'a [String],
}

/// What the driver does for a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Duty {
    /// Send this reply.
    Reply(Reply),
    /// `stats <group>`, for a group only the driver has: gather it and answer `Reply::Stats`.
    Stats(Gather),
    /// `kill <id>`: ask connection `id` to close, and answer [`kill_reply`].
    Kill(u64),
    /// `dump` or `dump_key`: stream it (the stream is the answer).
    Dump(DumpKind, DumpArgs),
    /// `node sync`: hand the map to the machine, and answer [`node_sync_reply`].
    NodeSync {
        /// The map's version.
        version: u64,
        /// Its nodes.
        nodes: Vec<NodeLine>,
    },
}

/// A `stats` group the driver gathers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gather {
    /// `stats`: [`crate::node::stats::general`] of the node's snapshot.
    General,
    /// `stats nodes`: the node map.
    Nodes,
    /// `stats settings`.
    Settings,
    /// `stats threads`, `stats threads request`: the client connections.
    Threads,
    /// `stats threads slave`: [`crate::node::stats::slave_threads`].
    ThreadsSlave,
}

/// The duty for `command`.
pub fn duty(command: Command, facts: Facts<'_>) -> Duty {
    Duty::Reply(match command {
        Command::Version => Reply::Version(facts.version_string.to_string()),
        Command::Ping if facts.healthy => Reply::Ok,
        Command::Ping => Reply::Error(ErrorReply::Server("storage error".into())),
        Command::Stats(group) => return stats(group),
        Command::ShowVariables => Reply::Lines(facts.show_variables.to_vec()),
        Command::Kill(id) => return Duty::Kill(id),
        Command::Dump(args) => return Duty::Dump(DumpKind::Items, args),
        Command::DumpKey(args) => return Duty::Dump(DumpKind::Keys, args),
        Command::NodeSync { version, nodes } => return Duty::NodeSync { version, nodes },
        Command::Keys { .. } => Reply::Error(ErrorReply::Server(
            "not available on current storage type".into(),
        )),
        // `shutdown` and the node commands are index-server commands (protocol.md §5.8).
        _ => Reply::Error(ErrorReply::UnknownCommand),
    })
}

/// `stats <group>`: answered here when there is nothing to gather (no slabs, nothing queued between threads),
/// else gathered by the driver.
fn stats(group: StatsGroup) -> Duty {
    Duty::Stats(match group {
        StatsGroup::Items | StatsGroup::Slabs | StatsGroup::Sizes => {
            return Duty::Reply(Reply::Stats(Vec::new()))
        }
        StatsGroup::ThreadsQueue => return Duty::Reply(Reply::Stats(thread_queue())),
        StatsGroup::General => Gather::General,
        StatsGroup::Nodes => Gather::Nodes,
        StatsGroup::Settings => Gather::Settings,
        StatsGroup::Threads | StatsGroup::ThreadsRequest => Gather::Threads,
        StatsGroup::ThreadsSlave => Gather::ThreadsSlave,
    })
}

/// `kill`'s answer: whether there was such a connection.
pub fn kill_reply(found: bool) -> Reply {
    match found {
        true => Reply::Ok,
        false => Reply::Error(ErrorReply::Client("thread not found".into())),
    }
}

/// `node sync`'s answer: `OK`, or the machine's refusal line as it is.
pub fn node_sync_reply(applied: Result<(), &str>) -> Reply {
    match applied {
        Ok(()) => Reply::Ok,
        Err(line) => Reply::Raw(bytes::Bytes::from(format!("{line}\r\n"))),
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

    const FACTS: Facts<'static> = Facts {
        version_string: "2.0.0",
        healthy: true,
        show_variables: &[],
    };

    #[test]
    fn answers_from_the_drivers_facts() {
        let d = |line: &str, facts| duty(command(line), facts);
        assert_eq!(
            d("version\r\n", FACTS),
            Duty::Reply(Reply::Version("2.0.0".into()))
        );
        assert_eq!(d("ping\r\n", FACTS), Duty::Reply(Reply::Ok));
        let sick = Facts {
            healthy: false,
            ..FACTS
        };
        assert_eq!(
            d("ping\r\n", sick),
            Duty::Reply(Reply::Error(ErrorReply::Server("storage error".into())))
        );
        assert_eq!(d("kill 7\r\n", FACTS), Duty::Kill(7));
        assert_eq!(
            d("stats items\r\n", FACTS),
            Duty::Reply(Reply::Stats(vec![]))
        );
        assert_eq!(
            d("stats threads queue\r\n", FACTS),
            Duty::Reply(Reply::Stats(vec![(
                "total_thread_queue".into(),
                "0".into()
            )]))
        );
        assert_eq!(d("stats nodes\r\n", FACTS), Duty::Stats(Gather::Nodes));
        assert_eq!(
            d("stats threads request\r\n", FACTS),
            Duty::Stats(Gather::Threads)
        );
        assert!(matches!(
            d("dump\r\n", FACTS),
            Duty::Dump(DumpKind::Items, _)
        ));
        assert!(matches!(
            d("dump_key\r\n", FACTS),
            Duty::Dump(DumpKind::Keys, _)
        ));
        assert_eq!(
            d("get k\r\n", FACTS),
            Duty::Reply(Reply::Error(ErrorReply::UnknownCommand))
        );
    }

    #[test]
    fn kill_and_node_sync_answers() {
        assert_eq!(kill_reply(true), Reply::Ok);
        assert_eq!(
            kill_reply(false),
            Reply::Error(ErrorReply::Client("thread not found".into()))
        );
        assert_eq!(node_sync_reply(Ok(())), Reply::Ok);
        assert_eq!(
            node_sync_reply(Err("SERVER_ERROR old")),
            Reply::Raw(bytes::Bytes::from_static(b"SERVER_ERROR old\r\n"))
        );
    }
}
