//! Registration with the index server at start-up (cluster.md §4.1): what a node sends (`node add`, `meta`, then the
//! map read as `stats nodes` between two `stats`) and how it reads the answers into its partition parameters and
//! its first node map.
//!
//! The `NODE` lines of the `node add` reply carry no version, and a map of version 0 would accept any `node sync`,
//! however old: a push the index started before this registration (a restarted index pushes its map to every node
//! at once) can arrive after it, and would hand this node its previous role back (an active slave that is now a
//! proxy, serving stale reads). Labelling the reply's map with the `node_map_version` read just after it is not
//! exact either: another change (another node registering, a failover) can come in between, and this node would hold
//! the older map under the newer version until the index pushes it again. So the map is read as `stats nodes`
//! between two `stats`: when both show the same version, that is exactly the map of that version
//! ([`versioned_map`]). If they never agree after [`MAP_READS`] tries, the reply's map is used under the version
//! read after it, which the next push corrects.

use std::time::Duration;

use crate::keys::{HashAlgorithm, PartitionParams};
use crate::node::Registration;
use crate::node_map::NodeMap;
use crate::protocol::admin::{AdminCommand, IndexCommand, NodeAddr, ServerQuery};
use crate::protocol::lex::{parse_u64, Tokens};
use crate::protocol::reply::{ReplyEvent, ReplyKind};
use crate::protocol::{lines, NodeLine, StatsGroup};

/// Registration attempts before a node gives up starting (cluster.md §4.1: 9 attempts).
pub const ATTEMPTS: u32 = 9;
/// Pause between attempts.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Extra reads of the versioned map when the two versions around `stats nodes` differ.
pub const MAP_READS: u32 = 3;

/// `stats nodes` between two `stats`: the map and its exact version.
pub fn map_lines() -> Vec<(String, ReplyKind)> {
    let stats = AdminCommand::Server(ServerQuery::Stats);
    let nodes = AdminCommand::Index(IndexCommand::Stats(StatsGroup::Nodes));
    [&stats, &nodes, &stats]
        .iter()
        .map(|c| (c.to_line(), ReplyKind::Lines))
        .collect()
}

/// The registration call: `node add`, `meta`, and the versioned map.
pub fn register_lines(name: &str, port: u16) -> Vec<(String, ReplyKind)> {
    let add = AdminCommand::Index(IndexCommand::NodeAdd(NodeAddr::new(name, port)));
    let mut lines = vec![
        (add.to_line(), ReplyKind::Lines),
        (
            AdminCommand::Index(IndexCommand::Meta).to_line(),
            ReplyKind::Lines,
        ),
    ];
    lines.extend(map_lines());
    lines
}

/// What the answers to [`register_lines`] said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The partitioning parameters (`meta`).
    pub params: PartitionParams,
    /// The map of the `node add` reply, without a version.
    pub nodes: Vec<NodeLine>,
    /// The exact map, or the version to label `nodes` with when the reads did not agree.
    pub map: Result<NodeMap, u64>,
}

/// Reads the answers to [`register_lines`] (one list of events per line). `Err` with the reason when the index
/// refused (an error line) or answered something unreadable.
pub fn read_registration(replies: &[Vec<ReplyEvent>]) -> Result<Registered, String> {
    let mut nodes = Vec::new();
    let mut params = PartitionParams::default();
    for e in replies.iter().flatten() {
        match e {
            ReplyEvent::Item(l) if lines::is_node(l) => nodes.push(
                lines::node(l).ok_or_else(|| "malformed NODE line from the index".to_string())?,
            ),
            ReplyEvent::Item(l) if l.starts_with(b"META ") => apply_meta(&mut params, l)?,
            ReplyEvent::Line(l) => {
                return Err(format!(
                    "index server refused registration: {}",
                    String::from_utf8_lossy(l)
                ))
            }
            _ => {}
        }
    }
    let map = versioned_map(replies.iter().skip(2).flatten());
    Ok(Registered { params, nodes, map })
}

/// The map of the `stats nodes` between two `node_map_version`s in `events` when they agree; else the later
/// version.
pub fn versioned_map<'a>(events: impl IntoIterator<Item = &'a ReplyEvent>) -> Result<NodeMap, u64> {
    let mut versions = Vec::new();
    let mut fields = Vec::new();
    for e in events {
        let ReplyEvent::Item(l) = e else { continue };
        let Some((field, value)) = lines::stat_str(l) else {
            continue;
        };
        if field == "node_map_version" {
            versions.push(value.parse::<u64>().unwrap_or(0));
        } else if versions.len() == 1 {
            fields.push((field, value));
        }
    }
    match versions[..] {
        [a, b] if a == b => NodeMap::from_stats_nodes(a, fields).ok_or(b),
        [.., b] => Err(b),
        [] => Err(0),
    }
}

/// The registration's result once the map reads are done: the map (exact, or the reply's under the last version
/// read).
pub fn settle(r: &Registered) -> Result<NodeMap, String> {
    match &r.map {
        Ok(map) => Ok(map.clone()),
        Err(version) => NodeMap::from_lines(*version, &r.nodes)
            .ok_or_else(|| "malformed node map from the index".to_string()),
    }
}

/// Where a node's start stands: `None` while it registers, then `Ok`, or the reason it cannot start.
pub fn started(r: &Registration) -> Option<Result<(), String>> {
    match r {
        Registration::Pending => None,
        Registration::Done => Some(Ok(())),
        Registration::Failed(why) => Some(Err(why.clone())),
    }
}

/// One `META <name> <value>` line of the `meta` reply.
fn apply_meta(params: &mut PartitionParams, line: &[u8]) -> Result<(), String> {
    let mut t = Tokens::new(line).skip(1);
    let (Some(name), Some(value)) = (t.next(), t.next()) else {
        return Ok(());
    };
    let num = || parse_u64(value).and_then(|v| u32::try_from(v).ok());
    match name {
        b"partition-size" => params.partition_size = num().unwrap_or(params.partition_size),
        b"partition-modular-hint" => params.hint = num().unwrap_or(params.hint),
        b"partition-modular-virtual" => {
            params.virtual_slots = num().unwrap_or(params.virtual_slots)
        }
        b"key-hash-algorithm" => {
            let v = String::from_utf8_lossy(value);
            params.hash = HashAlgorithm::parse(&v)
                .ok_or_else(|| format!("unknown key-hash-algorithm {v} from the index"))?
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn item(s: &str) -> ReplyEvent {
        ReplyEvent::Item(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn stats(version: u64) -> Vec<ReplyEvent> {
        vec![
            item(&lines::stat_line("node_map_version", version)),
            ReplyEvent::End,
        ]
    }

    fn nodes() -> Vec<ReplyEvent> {
        [
            "STAT a:1:role master",
            "STAT a:1:state active",
            "STAT a:1:partition 0",
            "STAT a:1:balance 1",
            "STAT a:1:thread_type 16",
        ]
        .iter()
        .map(|s| item(s))
        .chain([ReplyEvent::End])
        .collect()
    }

    fn replies(v1: u64, v2: u64) -> Vec<Vec<ReplyEvent>> {
        vec![
            vec![item("NODE a 1 0 0 0 1 16"), ReplyEvent::End],
            vec![
                item("META key-hash-algorithm crc32"),
                item("META partition-size 512"),
                ReplyEvent::End,
            ],
            stats(v1),
            nodes(),
            stats(v2),
        ]
    }

    #[test]
    fn the_calls_are_the_index_commands() {
        let lines: Vec<String> = register_lines("a", 1).into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            lines,
            ["node add a 1", "meta", "stats", "stats nodes", "stats"]
        );
    }

    #[test]
    fn the_map_between_two_equal_versions_is_exact() {
        let r = read_registration(&replies(7, 7)).unwrap();
        assert_eq!(r.params.hash, HashAlgorithm::Crc32);
        assert_eq!(r.params.partition_size, 512);
        let map = r.map.unwrap();
        assert_eq!(map.version, 7);
        assert!(map.nodes.contains_key("a:1"));
    }

    #[test]
    fn versions_that_differ_give_the_later_one_and_the_reply_map() {
        let r = read_registration(&replies(7, 8)).unwrap();
        assert_eq!(r.map, Err(8));
        let map = settle(&r).unwrap();
        assert_eq!((map.version, map.nodes.len()), (8, 1));
    }

    #[test]
    fn a_node_starts_once_registered_or_fails() {
        assert_eq!(started(&Registration::Pending), None);
        assert_eq!(started(&Registration::Done), Some(Ok(())));
        let failed = Registration::Failed("refused".into());
        assert_eq!(started(&failed), Some(Err("refused".into())));
    }

    #[test]
    fn a_refusal_is_an_error() {
        let refused = vec![vec![ReplyEvent::Line(Bytes::from_static(
            b"SERVER_ERROR no",
        ))]];
        assert!(read_registration(&refused)
            .unwrap_err()
            .contains("refused registration"));
    }
}
