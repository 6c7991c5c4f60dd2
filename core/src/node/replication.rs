//! Replication from a master to one target node (a slave, or the master of a preparing partition): the bounded
//! backlog, the pipelined in-flight window, acknowledgements in order, and resending after a reconnect
//! (cluster.md §8).
//!
//! **State, not operations.** A queued entry names a key and what happened to it; the message is built when the
//! entry is sent, from the key's state at that moment ([`encode_replica`]): its item as a `set` with its version and
//! absolute exptime, its tombstone as a `delete` with its version, or a `touch` when only the exptime changed. Two
//! writes of one key from two connections may be queued in either order, and a message may be sent twice after a
//! reconnect; every message carries the latest state and is applied by the slave's version rules (protocol.md
//! §4.3), so the slave converges to the master's bytes and versions whatever the order.
//!
//! **Acknowledgements.** The target answers every message (replication is sent without `noreply`), in order. The
//! sender reports the highest sequence number acknowledged, which is what a `sync` write waits for. An error answer
//! pauses the stream and the entry is sent again after [`RETRY_DELAY`]; after [`RETRIES_MAX`] errors it is dropped
//! and counted as a replication failure (the slave has diverged and must be rebuilt).
//!
//! Polling order for the driver: `enqueue` on every local write; when connected, drain `poll_send` (send each
//! message), feed every reply line to `handle_reply`; on a broken connection `handle_disconnect`, then
//! `handle_connected` once reconnected; `poll_timeout` and `handle_timeout` for the retry pause.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::item::Entry;
use crate::protocol::forward::forward;
use crate::protocol::{Command, ProxyPath, StoreMode, StoreRequest, WriteOptions};

/// Pause before an entry answered with an error is sent again.
pub const RETRY_DELAY: Duration = Duration::from_millis(100);
/// Errors after which an entry is dropped (the target diverges and must be rebuilt).
pub const RETRIES_MAX: u32 = 50;

/// What a write did to a key, as far as replication cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The item was written (or deleted and re-created): send its state.
    Write,
    /// Only the exptime changed (touch, gat): a `touch` suffices while the item is still there.
    Touch,
    /// `flush_all` at the absolute time given (0 = at once); the entry's key is empty.
    Flush(u64),
}

impl ChangeKind {
    /// Whether the message is built from the key's state (read from the store when it is sent).
    pub fn reads_key(self) -> bool {
        !matches!(self, ChangeKind::Flush(_))
    }
}

/// One queued replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The master's sequence number of the write.
    pub seq: u64,
    /// The key.
    pub key: Bytes,
    /// What happened to it.
    pub kind: ChangeKind,
    queued_at: Instant,
    errors: u32,
}

/// The backlog is full: the write is not replicated to this target (counted as a failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("replication backlog full")]
pub struct BacklogFull;

/// Counters and lag of one target (shown by `stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Entries waiting to be sent.
    pub queued: usize,
    /// Entries sent and not yet answered.
    pub in_flight: usize,
    /// Age of the oldest unacknowledged entry (replication lag).
    pub lag: Duration,
    /// Highest sequence number acknowledged.
    pub acked_seq: u64,
    /// Entries dropped (backlog full, or too many errors).
    pub failures: u64,
    /// Messages sent (resends included).
    pub sent: u64,
}

/// What an answer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The entry is done; `acked_seq` moved to this sequence number.
    Acked(u64),
    /// The target refused it; it will be sent again after the retry pause.
    Retry,
    /// The target refused it too often; it was dropped.
    Dropped(u64),
    /// The answer to a message sent after a refused one: that message is sent again after the pause (in order),
    /// so this answer, still on the wire, is not the new one's and is ignored.
    Owed,
    /// An answer with nothing in flight: the connection is out of sync and must be closed.
    Unexpected,
}

/// Replication state towards one target.
#[derive(Debug)]
pub struct ReplicationSender {
    queue: VecDeque<Queued>,
    in_flight: VecDeque<Queued>,
    backlog_max: usize,
    window: usize,
    connected: bool,
    paused_until: Option<Instant>,
    acked_seq: u64,
    failures: u64,
    sent: u64,
    /// Answers still due on this connection for messages given up after a refusal (see [`Answer::Owed`]).
    owed: usize,
}

impl ReplicationSender {
    /// A sender with room for `backlog_max` unacknowledged entries and up to `window` messages in flight.
    pub fn new(backlog_max: usize, window: usize) -> Self {
        ReplicationSender {
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            backlog_max: backlog_max.max(1),
            window: window.max(1),
            connected: false,
            paused_until: None,
            acked_seq: 0,
            failures: 0,
            sent: 0,
            owed: 0,
        }
    }

    /// Queues a write to `key`. When the backlog is full the entry is refused and counted as a failure.
    pub fn enqueue(
        &mut self,
        now: Instant,
        seq: u64,
        key: Bytes,
        kind: ChangeKind,
    ) -> Result<(), BacklogFull> {
        if self.queue.len() + self.in_flight.len() >= self.backlog_max {
            self.failures += 1;
            return Err(BacklogFull);
        }
        self.queue.push_back(Queued {
            seq,
            key,
            kind,
            queued_at: now,
            errors: 0,
        });
        Ok(())
    }

    /// The next entry to send, moved into the in-flight window; `None` when disconnected, paused, the window is
    /// full or nothing is queued. The driver builds its message with [`encode_replica`] from the key's state now.
    pub fn poll_send(&mut self, now: Instant) -> Option<&Queued> {
        if self.paused_until.is_some_and(|t| now < t) {
            return None;
        }
        // A pause that has passed is over even when nothing can be sent now (its time is no longer due).
        self.paused_until = None;
        if !self.connected || self.in_flight.len() >= self.window {
            return None;
        }
        let e = self.queue.pop_front()?;
        self.sent += 1;
        self.in_flight.push_back(e);
        self.in_flight.back()
    }

    /// The target's answer to the oldest message in flight.
    pub fn handle_reply(&mut self, now: Instant, line: &[u8]) -> Answer {
        // Answers come in the order the messages were sent: those owed for messages given up come first.
        if self.owed > 0 {
            self.owed -= 1;
            return Answer::Owed;
        }
        let Some(mut e) = self.in_flight.pop_front() else {
            return Answer::Unexpected;
        };
        if answer_ok(line) {
            self.acked_seq = self.acked_seq.max(e.seq);
            return Answer::Acked(self.acked_seq);
        }
        e.errors += 1;
        if e.errors >= RETRIES_MAX {
            self.failures += 1;
            self.acked_seq = self.acked_seq.max(e.seq);
            return Answer::Dropped(e.seq);
        }
        // Keep the order: this entry and everything sent after it go back to the front of the queue. The messages
        // sent after it are still answered on this connection: those answers are owed, not the resent ones'.
        // (Found by the node's property test: a resent entry took the answer of a later message sent before the
        // refusal, and a sync write was acknowledged without the slave holding it.)
        let later: Vec<Queued> = self.in_flight.drain(..).collect();
        self.owed += later.len();
        for q in later.into_iter().rev() {
            self.queue.push_front(q);
        }
        self.queue.push_front(e);
        self.paused_until = Some(now + RETRY_DELAY);
        Answer::Retry
    }

    /// The connection broke: what was in flight is sent again once reconnected (the target applies a repeated
    /// message as a no-op, by versions).
    pub fn handle_disconnect(&mut self) {
        self.connected = false;
        self.owed = 0;
        while let Some(q) = self.in_flight.pop_back() {
            self.queue.push_front(q);
        }
    }

    /// The connection is (re)established.
    pub fn handle_connected(&mut self) {
        self.connected = true;
    }

    /// When the retry pause ends, if the stream is paused.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Highest sequence number acknowledged (or dropped): a sync write with a sequence number at or below it is done
    /// on this target.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq
    }

    /// True when every queued write was answered.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    /// Counters and lag at `now`.
    pub fn stats(&self, now: Instant) -> SenderStats {
        let oldest = self.in_flight.front().or(self.queue.front());
        SenderStats {
            queued: self.queue.len(),
            in_flight: self.in_flight.len(),
            lag: oldest.map_or(Duration::ZERO, |q| {
                now.saturating_duration_since(q.queued_at)
            }),
            acked_seq: self.acked_seq,
            failures: self.failures,
            sent: self.sent,
        }
    }
}

/// Answers that mean the target holds the state sent: stored, or refused as not newer than what it has; `OK` for a
/// replicated `flush_all`; `VERSION ...` for the no-op sent in place of a record that vanished.
fn answer_ok(line: &[u8]) -> bool {
    matches!(
        line,
        b"STORED" | b"NOT_STORED" | b"DELETED" | b"NOT_FOUND" | b"TOUCHED" | b"EXISTS" | b"OK"
    ) || line.starts_with(b"VERSION ")
}

/// The replication message for `key` whose state is now `entry` (protocol.md §9.1), prefixed with `path` (this
/// node, tagged with the write's sequence number). `None` when there is nothing to send (the record is gone).
pub fn encode_replica(
    path: &ProxyPath,
    key: &Bytes,
    entry: Option<&Entry>,
    kind: ChangeKind,
) -> Option<Bytes> {
    if let ChangeKind::Flush(at) = kind {
        let command = Command::FlushAll {
            delay: at as i64,
            noreply: false,
        };
        return Some(forward(Some(path), &command, false).bytes);
    }
    let command = match entry? {
        Entry::Item(item) if kind == ChangeKind::Touch => Command::Touch {
            key: key.clone(),
            exptime: item.exptime as i64,
            noreply: false,
        },
        Entry::Item(item) => Command::Store(StoreRequest {
            mode: StoreMode::Set,
            key: key.clone(),
            flags: item.flags,
            exptime: item.exptime as i64,
            value: item.value.clone(),
            cas_unique: 0,
            version: Some(item.version),
            options: WriteOptions::default(),
        }),
        Entry::Tombstone(t) => Command::Delete {
            key: key.clone(),
            hold: t.hold_until as i64,
            version: Some(t.version),
            cas: None,
            options: WriteOptions::default(),
        },
    };
    Some(forward(Some(path), &command, false).bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{Item, Tombstone};

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    fn sender() -> (ReplicationSender, Instant) {
        let mut s = ReplicationSender::new(4, 2);
        s.handle_connected();
        (s, Instant::now())
    }

    #[test]
    fn pipelined_window_and_in_order_acks() {
        let (mut s, now) = sender();
        for i in 1..=3 {
            s.enqueue(now, i, key("k"), ChangeKind::Write).unwrap();
        }
        assert_eq!(s.poll_send(now).map(|q| q.seq), Some(1));
        assert_eq!(s.poll_send(now).map(|q| q.seq), Some(2));
        assert!(s.poll_send(now).is_none(), "window of 2");
        assert_eq!(s.handle_reply(now, b"STORED"), Answer::Acked(1));
        assert_eq!(s.poll_send(now).map(|q| q.seq), Some(3));
        assert_eq!(s.handle_reply(now, b"NOT_STORED"), Answer::Acked(2));
        assert_eq!(s.handle_reply(now, b"DELETED"), Answer::Acked(3));
        assert_eq!(s.handle_reply(now, b"STORED"), Answer::Unexpected);
        assert!(s.is_idle());
    }

    #[test]
    fn backlog_is_bounded() {
        let (mut s, now) = sender();
        for i in 1..=4 {
            s.enqueue(now, i, key("k"), ChangeKind::Write).unwrap();
        }
        assert_eq!(
            s.enqueue(now, 5, key("k"), ChangeKind::Write),
            Err(BacklogFull)
        );
        assert_eq!(s.stats(now).failures, 1);
    }

    #[test]
    fn disconnect_resends_in_flight_in_order() {
        let (mut s, now) = sender();
        for i in 1..=3 {
            s.enqueue(now, i, key("k"), ChangeKind::Write).unwrap();
        }
        s.poll_send(now);
        s.poll_send(now);
        s.handle_disconnect();
        assert!(
            s.poll_send(now).is_none(),
            "nothing is sent while disconnected"
        );
        s.handle_connected();
        let order: Vec<u64> = std::iter::from_fn(|| {
            let seq = s.poll_send(now).map(|q| q.seq);
            if seq.is_some() {
                s.handle_reply(now, b"STORED");
            }
            seq
        })
        .collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert_eq!(s.acked_seq(), 3);
    }

    #[test]
    fn errors_pause_then_retry_then_drop() {
        let (mut s, now) = sender();
        s.enqueue(now, 1, key("a"), ChangeKind::Write).unwrap();
        s.enqueue(now, 2, key("b"), ChangeKind::Write).unwrap();
        s.poll_send(now);
        s.poll_send(now);
        assert_eq!(
            s.handle_reply(now, b"SERVER_ERROR proxy error"),
            Answer::Retry
        );
        assert!(s.poll_send(now).is_none(), "paused");
        assert_eq!(s.poll_timeout(), Some(now + RETRY_DELAY));
        assert_eq!(
            s.handle_reply(now, b"STORED"),
            Answer::Owed,
            "2's first answer"
        );
        let mut t = now;
        let mut answer = Answer::Retry;
        while answer == Answer::Retry {
            t += RETRY_DELAY;
            assert_eq!(
                s.poll_send(t).map(|q| q.seq),
                Some(1),
                "the failed entry goes first again"
            );
            answer = s.handle_reply(t, b"SERVER_ERROR storage error");
        }
        assert_eq!(answer, Answer::Dropped(1));
        assert_eq!(s.stats(t).failures, 1);
        t += RETRY_DELAY;
        assert_eq!(s.poll_send(t).map(|q| q.seq), Some(2));
    }

    /// The answers to messages sent after a refused one are still on the wire when the entries are sent again; a
    /// resent entry must not take one of them as its own.
    #[test]
    fn answers_owed_after_a_refusal_are_not_taken_by_the_resent_entries() {
        let (mut s, now) = sender();
        s.enqueue(now, 1, key("a"), ChangeKind::Write).unwrap();
        s.enqueue(now, 2, key("b"), ChangeKind::Write).unwrap();
        s.poll_send(now);
        s.poll_send(now);
        assert_eq!(
            s.handle_reply(now, b"SERVER_ERROR not a replica of the sender"),
            Answer::Retry
        );
        let t = now + RETRY_DELAY;
        assert_eq!(s.poll_send(t).map(|q| q.seq), Some(1), "1 sent again");
        // 2's answer to its first sending arrives now: it is not 1's.
        assert_eq!(s.handle_reply(t, b"STORED"), Answer::Owed);
        assert_eq!(s.acked_seq(), 0);
        assert_eq!(s.handle_reply(t, b"STORED"), Answer::Acked(1));
        assert_eq!(s.poll_send(t).map(|q| q.seq), Some(2));
        assert_eq!(s.handle_reply(t, b"STORED"), Answer::Acked(2));
        assert!(s.is_idle());
    }

    #[test]
    fn a_flush_and_the_no_op_are_acknowledged_by_their_answers() {
        let (mut s, now) = sender();
        s.enqueue(now, 1, Bytes::new(), ChangeKind::Flush(0))
            .unwrap();
        s.enqueue(now, 2, key("gone"), ChangeKind::Write).unwrap();
        s.poll_send(now);
        s.poll_send(now);
        assert_eq!(s.handle_reply(now, b"OK"), Answer::Acked(1));
        assert_eq!(s.handle_reply(now, b"VERSION 2.0.0"), Answer::Acked(2));
    }

    #[test]
    fn messages_carry_the_current_state() {
        let path = ProxyPath(vec![key("m:1#9")]);
        let item = Entry::Item(Item {
            flags: 3,
            exptime: 1_900_000_000,
            version: 7,
            value: key("hi"),
            meta: 0,
        });
        let tomb = Entry::Tombstone(Tombstone {
            version: 8,
            hold_until: 0,
            expires_at: 5,
        });
        let k = key("k");
        assert_eq!(
            encode_replica(&path, &k, Some(&item), ChangeKind::Write).unwrap(),
            key("<m:1#9>set k 3 1900000000 2 7\r\nhi\r\n")
        );
        assert_eq!(
            encode_replica(&path, &k, Some(&item), ChangeKind::Touch).unwrap(),
            key("<m:1#9>touch k 1900000000\r\n")
        );
        assert_eq!(
            encode_replica(&path, &k, Some(&tomb), ChangeKind::Touch).unwrap(),
            key("<m:1#9>delete k 0 8\r\n")
        );
        assert_eq!(encode_replica(&path, &k, None, ChangeKind::Write), None);
        assert_eq!(
            encode_replica(&path, &Bytes::new(), None, ChangeKind::Flush(0)).unwrap(),
            key("<m:1#9>flush_all\r\n")
        );
        assert_eq!(
            encode_replica(&path, &Bytes::new(), None, ChangeKind::Flush(1_800_000_000)).unwrap(),
            key("<m:1#9>flush_all 1800000000\r\n")
        );
    }
}
