//! What the driver's byte-moving needs decided, so that it only reads and writes: where a call goes, when the
//! events read off a connection make one whole reply, the shape of a forwarded request's answer, the message a
//! replication entry becomes, what each event of a dump pull means and the item a `dump` record becomes, and how a
//! dump whose scan failed ends.

use std::time::Duration;

use bytes::Bytes;

use crate::dump::DumpKind;
use crate::item::{Entry, Item};
use crate::node::replication::{encode_replica, ChangeKind};
use crate::node::Dest;
use crate::protocol::reply::{PeerReply, ReplyEvent, ReplyKind, ValueBlock};
use crate::protocol::ProxyPath;

/// `name:port` → (`name`, port).
pub fn split_node(node: &str) -> Option<(&str, u16)> {
    let (host, port) = node.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// The addresses a call to `to` tries, in order: the index servers in the order given (the machine's
/// [`crate::node::Node::index_order`]), or the node's own address (none when its key does not parse).
pub fn call_addresses(to: &Dest, index_servers: &[(String, u16)]) -> Vec<(String, u16)> {
    match to {
        Dest::Index => index_servers.to_vec(),
        Dest::Node(key) => split_node(key)
            .map(|(h, p)| (h.to_string(), p))
            .into_iter()
            .collect(),
    }
}

/// Whether `event` is the last of a reply of `kind` to a call: a one-line reply ends with its line, the others
/// with `END` or an error line.
pub fn ends_reply(event: &ReplyEvent, kind: ReplyKind) -> bool {
    kind == ReplyKind::Line || matches!(event, ReplyEvent::End | ReplyEvent::Line(_))
}

/// The answer lines of one-line replies (a session's opening), `None` if one is not a line.
pub fn line_answers(replies: Vec<Vec<ReplyEvent>>) -> Option<Vec<Bytes>> {
    replies
        .into_iter()
        .map(|mut r| match r.pop() {
            Some(ReplyEvent::Line(l)) => Some(l),
            _ => None,
        })
        .collect()
}

/// Gathers the events of one reply of a kind into a [`PeerReply`].
#[derive(Debug)]
pub struct PeerReplyBuilder {
    kind: ReplyKind,
    values: Vec<ValueBlock>,
    lines: Vec<Bytes>,
}

impl PeerReplyBuilder {
    /// For a reply of `kind`.
    pub fn new(kind: ReplyKind) -> Self {
        PeerReplyBuilder {
            kind,
            values: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Takes the next event; the whole reply once this event ends it.
    pub fn push(&mut self, event: ReplyEvent) -> Option<PeerReply> {
        let kind = self.kind;
        match event {
            ReplyEvent::Value(v) => self.values.push(v),
            ReplyEvent::Item(l) => self.lines.push(l),
            ReplyEvent::End if kind == ReplyKind::Values => {
                return Some(PeerReply::Values(std::mem::take(&mut self.values)))
            }
            ReplyEvent::End => return Some(PeerReply::Lines(std::mem::take(&mut self.lines))),
            ReplyEvent::Line(l) if kind == ReplyKind::Meta => {
                return Some(PeerReply::Meta(l, None))
            }
            ReplyEvent::Line(l) => return Some(PeerReply::Line(l)),
            ReplyEvent::MetaValue { line, data } => return Some(PeerReply::Meta(line, Some(data))),
        }
        None
    }
}

/// The message that carries a replication entry for `key` to a slave, built from the key's state now (`record`,
/// read only when [`ChangeKind::reads_key`]). A record that is gone (a swept tombstone) has nothing to send, but
/// every entry gets one answer: a no-op (`version`) whose answer counts as done.
pub fn replica_message(
    path: &ProxyPath,
    key: &Bytes,
    record: Option<&Entry>,
    kind: ChangeKind,
) -> Bytes {
    encode_replica(path, key, record, kind).unwrap_or_else(|| Bytes::from_static(b"version\r\n"))
}

/// [`replica_message`] for a `kind` change of `key`, reading the key's state now with `read` only when the change
/// needs it ([`ChangeKind::reads_key`]).
pub fn replica_for(
    path: &ProxyPath,
    key: &Bytes,
    kind: ChangeKind,
    read: impl FnOnce(&Bytes) -> Option<Entry>,
) -> Bytes {
    let record = kind.reads_key().then(|| read(key)).flatten();
    replica_message(path, key, record.as_ref(), kind)
}

/// How often a dump pull's reads wake to notice an abort: the machine fails a silent pull, and aborts it.
pub const PULL_POLL: Duration = Duration::from_secs(1);

/// Why a pull ends when the machine no longer takes its items ([`crate::node::Node::handle_dump_item`] false).
pub const PULL_SUPERSEDED: &str = "superseded by a newer reconstruction";

/// What one event of a dump pull's reply (a values reply from `source`) means.
#[derive(Debug, PartialEq, Eq)]
pub enum PullStep {
    /// A record: hand it to the machine, then store it ([`dump_item`]).
    Item(ValueBlock),
    /// The dump is over: `END`, or the error line the source ended it with.
    Done(Result<(), String>),
    /// Nothing to do.
    Skip,
}

/// The meaning of `event` in a dump pull from `source`.
pub fn pull_step(event: ReplyEvent, source: &str) -> PullStep {
    match event {
        ReplyEvent::Value(v) => PullStep::Item(v),
        ReplyEvent::End => PullStep::Done(Ok(())),
        ReplyEvent::Line(l) => {
            PullStep::Done(Err(format!("{source}: {}", String::from_utf8_lossy(&l))))
        }
        _ => PullStep::Skip,
    }
}

/// The key and item a `dump` record stores on a reconstructing node: no exptime or version in the record reads as
/// 0, and the meta bits start clear.
pub fn dump_item(v: ValueBlock) -> (Bytes, Item) {
    let item = Item {
        flags: v.flags,
        exptime: v.exptime.unwrap_or(0),
        version: v.version.unwrap_or(0),
        value: v.value,
        meta: 0,
    };
    (v.key, item)
}

/// The line that ends a dump of `kind` whose storage scan failed (Flare's texts).
pub fn dump_failed(kind: DumpKind) -> &'static [u8] {
    match kind {
        DumpKind::Items => b"SERVER_ERROR iteration canceled\r\n",
        DumpKind::Keys => b"SERVER_ERROR\r\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn node_keys_and_call_addresses() {
        assert_eq!(split_node("a.b:12121"), Some(("a.b", 12121)));
        assert_eq!(split_node("::1:5"), Some(("::1", 5)));
        assert_eq!(split_node("nope"), None);
        assert_eq!(split_node("x:99999"), None);
        let index = [("i1".to_string(), 1), ("i2".to_string(), 2)];
        assert_eq!(call_addresses(&Dest::Index, &index), index);
        assert_eq!(
            call_addresses(&Dest::Node("n:7".into()), &index),
            [("n".to_string(), 7)]
        );
        assert!(call_addresses(&Dest::Node("n".into()), &index).is_empty());
    }

    #[test]
    fn a_reply_ends_with_its_line_or_end() {
        assert!(ends_reply(&ReplyEvent::Line(b("OK")), ReplyKind::Line));
        assert!(ends_reply(&ReplyEvent::End, ReplyKind::Lines));
        assert!(ends_reply(
            &ReplyEvent::Line(b("SERVER_ERROR x")),
            ReplyKind::Values
        ));
        assert!(!ends_reply(
            &ReplyEvent::Item(b("STAT a 1")),
            ReplyKind::Lines
        ));
    }

    #[test]
    fn peer_replies_take_the_shape_of_their_kind() {
        let mut values = PeerReplyBuilder::new(ReplyKind::Values);
        let v = ValueBlock {
            key: b("k"),
            flags: 1,
            version: Some(3),
            exptime: None,
            value: b("v"),
        };
        assert_eq!(values.push(ReplyEvent::Value(v.clone())), None);
        assert_eq!(
            values.push(ReplyEvent::End),
            Some(PeerReply::Values(vec![v.clone()]))
        );
        let mut lines = PeerReplyBuilder::new(ReplyKind::Lines);
        assert_eq!(lines.push(ReplyEvent::Item(b("STAT a 1"))), None);
        assert_eq!(
            lines.push(ReplyEvent::End),
            Some(PeerReply::Lines(vec![b("STAT a 1")]))
        );
        let mut meta = PeerReplyBuilder::new(ReplyKind::Meta);
        assert_eq!(
            meta.push(ReplyEvent::Line(b("HD"))),
            Some(PeerReply::Meta(b("HD"), None))
        );
        let mut line = PeerReplyBuilder::new(ReplyKind::Line);
        assert_eq!(
            line.push(ReplyEvent::Line(b("STORED"))),
            Some(PeerReply::Line(b("STORED")))
        );
        // A dump record: absent fields are 0.
        let (key, item) = dump_item(v);
        assert_eq!(
            (key, item.version, item.exptime, item.meta),
            (b("k"), 3, 0, 0)
        );
    }

    #[test]
    fn a_dump_pull_ends_with_end_or_an_error_line() {
        assert_eq!(pull_step(ReplyEvent::End, "a:1"), PullStep::Done(Ok(())));
        assert_eq!(
            pull_step(
                ReplyEvent::Line(b("SERVER_ERROR iteration canceled")),
                "a:1"
            ),
            PullStep::Done(Err("a:1: SERVER_ERROR iteration canceled".into()))
        );
        assert_eq!(
            pull_step(ReplyEvent::Item(b("KEY k")), "a:1"),
            PullStep::Skip
        );
        let v = ValueBlock {
            key: b("k"),
            flags: 0,
            version: None,
            exptime: None,
            value: b("v"),
        };
        assert_eq!(
            pull_step(ReplyEvent::Value(v.clone()), "a:1"),
            PullStep::Item(v)
        );
    }

    #[test]
    fn a_failed_dump_ends_with_flares_error_line() {
        assert_eq!(
            dump_failed(DumpKind::Items),
            b"SERVER_ERROR iteration canceled\r\n"
        );
        assert_eq!(dump_failed(DumpKind::Keys), b"SERVER_ERROR\r\n");
    }

    #[test]
    fn only_a_change_that_needs_the_key_reads_it() {
        let path = ProxyPath(vec![b("m:1#9")]);
        let mut read = false;
        replica_for(&path, &b(""), ChangeKind::Flush(0), |_| {
            read = true;
            None
        });
        assert!(!read, "a flush carries no record");
        let gone = replica_for(&path, &b("k"), ChangeKind::Write, |k| {
            assert_eq!(k, &b("k"));
            None
        });
        assert_eq!(gone, b("version\r\n"));
    }

    #[test]
    fn a_vanished_record_is_replaced_by_a_no_op() {
        let path = ProxyPath(vec![b("m:1#9")]);
        assert_eq!(
            replica_message(&path, &b("k"), None, ChangeKind::Write),
            b("version\r\n")
        );
        assert_ne!(
            replica_message(&path, &b(""), None, ChangeKind::Flush(0)),
            b("version\r\n")
        );
    }
}
