//! The index's fixed-format replies: `meta` (protocol.md §6), `stats threads` and its variants (stats.md §2), built
//! from rows the index (node monitors) and the driver (client connections) contribute.
//!
//! `stats nodes` comes straight from [`crate::node_map::NodeMap::stats_nodes`].

use crate::keys::PartitionParams;
use crate::protocol::{Reply, StatsGroup};

/// `type` of a client-connection thread (stats.md §2).
pub const THREAD_TYPE_CONNECTION: u32 = 1;

/// One `stats threads` block (stats.md §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadRow {
    /// Thread id, unique for the life of the process (`kill` takes it).
    pub id: u64,
    /// `type`: 1 for a connection, the node's `thread_type` for a node monitor.
    pub thread_type: u32,
    /// `peer`: the client's `address:port`, or the monitored node's key.
    pub peer: String,
    /// `op`: the command or queued item being worked on; empty when idle.
    pub op: String,
    /// `uptime` in seconds.
    pub uptime: u64,
    /// `state`: `wait`, `execute`, ...
    pub state: &'static str,
    /// `info`: normally empty.
    pub info: String,
    /// `queue`: items waiting (for a monitor: map versions not yet pushed).
    pub queue: u64,
    /// `behind`: seconds since the oldest waiting item was queued; 0 when none.
    pub behind: u64,
}

impl ThreadRow {
    /// Appends the eight `STAT <id>:<field> <value>` pairs in Flare's order.
    pub fn append_stats(&self, out: &mut Vec<(String, String)>) {
        let id = self.id;
        out.push((format!("{id}:type"), self.thread_type.to_string()));
        out.push((format!("{id}:peer"), self.peer.clone()));
        out.push((format!("{id}:op"), self.op.clone()));
        out.push((format!("{id}:uptime"), self.uptime.to_string()));
        out.push((format!("{id}:state"), self.state.to_string()));
        out.push((format!("{id}:info"), self.info.clone()));
        out.push((format!("{id}:queue"), self.queue.to_string()));
        out.push((format!("{id}:behind"), self.behind.to_string()));
    }
}

/// The reply to `stats threads`, `stats threads request`, `stats threads slave` or `stats threads queue` on the index,
/// from every thread row (connections and monitors, any order; output is sorted by id). Other groups give `ERROR`.
pub fn threads_reply(group: StatsGroup, rows: &[ThreadRow]) -> Reply {
    let mut sorted: Vec<&ThreadRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.id);
    let mut out = Vec::new();
    match group {
        StatsGroup::Threads => sorted.iter().for_each(|r| r.append_stats(&mut out)),
        StatsGroup::ThreadsRequest => sorted
            .iter()
            .filter(|r| r.thread_type == THREAD_TYPE_CONNECTION)
            .for_each(|r| r.append_stats(&mut out)),
        // The index has no slaves (stats.md §2).
        StatsGroup::ThreadsSlave => {}
        StatsGroup::ThreadsQueue => {
            let total: u64 = rows.iter().map(|r| r.queue).fold(0, u64::saturating_add);
            out.push(("total_thread_queue".into(), total.to_string()));
        }
        _ => return Reply::Error(crate::protocol::ErrorReply::UnknownCommand),
    }
    Reply::Stats(out)
}

/// The five `META` lines (protocol.md §6), without `END`.
pub fn meta_lines(p: &PartitionParams) -> Vec<String> {
    vec![
        format!("META partition-size {}", p.partition_size),
        format!("META key-hash-algorithm {}", p.hash),
        "META partition-type modular".into(),
        format!("META partition-modular-hint {}", p.hint),
        format!("META partition-modular-virtual {}", p.virtual_slots),
    ]
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::protocol::response::encode_text;

    fn text(reply: &Reply) -> String {
        let mut out = BytesMut::new();
        encode_text(reply, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn row(id: u64, thread_type: u32, queue: u64) -> ThreadRow {
        ThreadRow {
            id,
            thread_type,
            peer: "10.0.0.5:12121".into(),
            op: String::new(),
            uptime: 3,
            state: "wait",
            info: String::new(),
            queue,
            behind: 0,
        }
    }

    #[test]
    fn meta_exact_reply() {
        let r = Reply::Lines(meta_lines(&PartitionParams::default()));
        assert_eq!(
            text(&r),
            "META partition-size 1024\r\nMETA key-hash-algorithm simple\r\nMETA partition-type modular\r\n\
             META partition-modular-hint 1\r\nMETA partition-modular-virtual 4096\r\nEND\r\n"
        );
    }

    #[test]
    fn threads_blocks_in_flare_order_with_empty_values() {
        let r = threads_reply(StatsGroup::Threads, &[row(5, 16, 1), row(2, 1, 0)]);
        let t = text(&r);
        assert!(t.starts_with(
            "STAT 2:type 1\r\nSTAT 2:peer 10.0.0.5:12121\r\nSTAT 2:op \r\nSTAT 2:uptime 3\r\n\
             STAT 2:state wait\r\nSTAT 2:info \r\nSTAT 2:queue 0\r\nSTAT 2:behind 0\r\nSTAT 5:type 16\r\n"
        ));
        assert!(t.ends_with("STAT 5:behind 0\r\nEND\r\n"));
        let request = text(&threads_reply(
            StatsGroup::ThreadsRequest,
            &[row(5, 16, 1), row(2, 1, 0)],
        ));
        assert!(!request.contains("5:type"));
        assert_eq!(
            text(&threads_reply(StatsGroup::ThreadsSlave, &[row(5, 16, 1)])),
            "END\r\n"
        );
        assert_eq!(
            text(&threads_reply(
                StatsGroup::ThreadsQueue,
                &[row(5, 16, 2), row(6, 17, 1)]
            )),
            "STAT total_thread_queue 3\r\nEND\r\n"
        );
    }
}
