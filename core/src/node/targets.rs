//! Replication towards every target of this node (its slaves, the master of a preparing partition), with the link
//! to each and the sync writes waiting for their acknowledgements.
//!
//! Each target has a [`ReplicationSender`] (backlog, in-flight window, ordered acknowledgements, retry pause) and a
//! link:
//! - **down** until its retry time, then opened; a link that fails to open or breaks is retried after a back-off
//!   that starts at [`BACKOFF_MIN`] and doubles up to [`BACKOFF_MAX`];
//! - **up**: every entry the sender releases is handed to the driver to send; a link whose messages stay
//!   unanswered for `stall` (3 × `proxy-timeout`) is closed and opened again, so a connection that lost packets
//!   never holds replication (and every sync write) forever.
//!
//! A **sync write** waits for every active slave it was queued to (never for a preparing master, cluster.md §8.2)
//! until its deadline (`proxy-timeout`): done when each has acknowledged its sequence number, failed when the
//! deadline passes, the entry was dropped after too many refusals, or the target is no longer one.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::replication::{Answer, BacklogFull, ChangeKind, Queued, ReplicationSender, SenderStats};
use super::view::Replicas;

/// First back-off after a link failed.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Messages in flight per link.
pub const WINDOW: usize = 256;

/// A sync write waiting for its slaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// Why a sync write was not replicated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    /// A slave did not acknowledge it in time, refused it too often, or stopped being a target; or a backlog was
    /// full. The write is kept here and replication goes on (`SERVER_ERROR replication failed`).
    Replication,
    /// This master's lease ended before it could acknowledge the write (`SERVER_ERROR` with the lease reason).
    Lease,
}

/// What the targets ask the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkAction {
    /// Open the replication connection to the peer; report with [`Targets::handle_opened`].
    Open(String),
    /// Send this entry, built from the key's state now; feed every answer line to [`Targets::handle_reply`].
    Send(String, Queued),
    /// Close the connection; report [`Targets::handle_closed`] once it is closed.
    Close(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Down { retry_at: Instant },
    Opening,
    Up,
    Closing,
}

#[derive(Debug)]
struct Target {
    sender: ReplicationSender,
    link: Link,
    backoff: Duration,
    /// The last answer, or when the window last became non-empty.
    progress: Instant,
}

#[derive(Debug)]
struct Waiter {
    needs: Vec<(String, u64)>,
    deadline: Instant,
}

/// Every replication target of this node.
#[derive(Debug)]
pub struct Targets {
    targets: BTreeMap<String, Target>,
    waiters: BTreeMap<WriteId, Waiter>,
    backlog: usize,
    stall: Duration,
    seq: u64,
    next_write: u64,
    actions: VecDeque<LinkAction>,
    done: Vec<(WriteId, Result<(), WriteFailure>)>,
}

impl Targets {
    /// No targets yet; each gets a backlog of `backlog` entries; a link is stalled after `stall` without answers.
    pub fn new(backlog: usize, stall: Duration) -> Self {
        Targets {
            targets: BTreeMap::new(),
            waiters: BTreeMap::new(),
            backlog,
            stall,
            seq: 0,
            next_write: 1,
            actions: VecDeque::new(),
            done: Vec::new(),
        }
    }

    /// The last sequence number given to a replicated write.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Queues one change to every node in `replicas` under the next sequence number. Returns the active slaves
    /// (and that number) a sync write must wait for; `Err` when a backlog was full (that target is counted as
    /// failed and will be rebuilt).
    pub fn enqueue(
        &mut self,
        now: Instant,
        replicas: &Replicas,
        key: Bytes,
        kind: ChangeKind,
    ) -> Result<Vec<(String, u64)>, BacklogFull> {
        self.seq += 1;
        let seq = self.seq;
        let mut needs = Vec::new();
        let mut full = None;
        let preparing = replicas.preparing_master.iter().map(|k| (k, false));
        for (peer, active) in replicas
            .slaves
            .iter()
            .map(|(k, a)| (k, *a))
            .chain(preparing)
        {
            let t = self.target(now, peer);
            match t.sender.enqueue(now, seq, key.clone(), kind) {
                Ok(()) if active => needs.push((peer.clone(), seq)),
                Ok(()) => {}
                Err(e) => full = Some(e),
            }
        }
        match full {
            Some(e) => Err(e),
            None => Ok(needs),
        }
    }

    fn target(&mut self, now: Instant, peer: &str) -> &mut Target {
        let backlog = self.backlog;
        self.targets
            .entry(peer.to_owned())
            .or_insert_with(|| Target {
                sender: ReplicationSender::new(backlog, WINDOW),
                link: Link::Down { retry_at: now },
                backoff: BACKOFF_MIN,
                progress: now,
            })
    }

    /// A sync write that needs `needs` acknowledged by `deadline`; its result comes out of [`Targets::poll_done`].
    pub fn wait(&mut self, needs: Vec<(String, u64)>, deadline: Instant) -> WriteId {
        let id = WriteId(self.next_write);
        self.next_write += 1;
        self.waiters.insert(id, Waiter { needs, deadline });
        self.settle();
        id
    }

    /// Sync writes that finished, with their results.
    pub fn poll_done(&mut self) -> Option<(WriteId, Result<(), WriteFailure>)> {
        self.done.pop()
    }

    /// What the driver must do now for the links, in order.
    pub fn poll_action(&mut self, now: Instant) -> Option<LinkAction> {
        if self.actions.is_empty() {
            self.pump(now);
        }
        self.actions.pop_front()
    }

    /// Opens due links and releases what the senders let go.
    fn pump(&mut self, now: Instant) {
        for (peer, t) in &mut self.targets {
            match t.link {
                Link::Down { retry_at } if retry_at <= now => {
                    t.link = Link::Opening;
                    self.actions.push_back(LinkAction::Open(peer.clone()));
                }
                Link::Up => {
                    let was_idle = t.sender.stats(now).in_flight == 0;
                    while let Some(q) = t.sender.poll_send(now) {
                        self.actions
                            .push_back(LinkAction::Send(peer.clone(), q.clone()));
                    }
                    if was_idle {
                        t.progress = now;
                    }
                }
                _ => {}
            }
        }
    }

    /// The link to `peer` opened (`ok`) or could not be opened.
    pub fn handle_opened(&mut self, now: Instant, peer: &str, ok: bool) {
        let Some(t) = self.targets.get_mut(peer) else {
            if ok {
                self.actions.push_back(LinkAction::Close(peer.to_owned()));
            }
            return;
        };
        if t.link != Link::Opening {
            return;
        }
        if ok {
            t.link = Link::Up;
            t.backoff = BACKOFF_MIN;
            t.progress = now;
            t.sender.handle_connected();
        } else {
            t.link = Link::Down {
                retry_at: now + t.backoff,
            };
            t.backoff = (t.backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One answer line from `peer`, for its oldest message in flight.
    pub fn handle_reply(&mut self, now: Instant, peer: &str, line: &[u8]) {
        let Some(t) = self.targets.get_mut(peer) else {
            return;
        };
        if t.link != Link::Up {
            return;
        }
        t.progress = now;
        match t.sender.handle_reply(now, line) {
            Answer::Acked(_) => {}
            Answer::Dropped(seq) => {
                let peer = peer.to_owned();
                self.fail_waiters(|needs| needs.iter().any(|(p, s)| *p == peer && *s == seq));
            }
            Answer::Retry | Answer::Owed => {}
            Answer::Unexpected => {
                t.link = Link::Closing;
                self.actions.push_back(LinkAction::Close(peer.to_owned()));
            }
        }
        self.settle();
    }

    /// The link to `peer` closed or broke: what was in flight is sent again after reconnecting.
    pub fn handle_closed(&mut self, now: Instant, peer: &str) {
        let Some(t) = self.targets.get_mut(peer) else {
            return;
        };
        t.sender.handle_disconnect();
        t.link = Link::Down {
            retry_at: now + t.backoff,
        };
        t.backoff = (t.backoff * 2).min(BACKOFF_MAX);
    }

    /// Keeps only the targets for which `wanted` is true: the others are closed and forgotten, and the sync writes
    /// waiting for them fail.
    pub fn retain(&mut self, wanted: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .targets
            .keys()
            .filter(|k| !wanted(k))
            .cloned()
            .collect();
        for peer in gone {
            if let Some(t) = self.targets.remove(&peer) {
                if matches!(t.link, Link::Up | Link::Opening) {
                    self.actions.push_back(LinkAction::Close(peer.clone()));
                }
            }
            self.fail_waiters(|needs| needs.iter().any(|(p, _)| *p == peer));
        }
    }

    /// Time passed: stalled links are closed, late sync writes fail.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (peer, t) in &mut self.targets {
            if t.link == Link::Up
                && t.sender.stats(now).in_flight > 0
                && now >= t.progress + self.stall
            {
                t.link = Link::Closing;
                self.actions.push_back(LinkAction::Close(peer.clone()));
            }
        }
        let late: Vec<WriteId> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.waiters.remove(&id);
            self.done.push((id, Err(WriteFailure::Replication)));
        }
        self.settle();
    }

    /// The earliest time something is due: a link to reopen, a stall, a sender's retry pause, a sync deadline.
    pub fn next_timeout(&self, now: Instant) -> Option<Instant> {
        let links = self.targets.values().filter_map(|t| match t.link {
            Link::Down { retry_at } => Some(retry_at),
            Link::Up if t.sender.stats(now).in_flight > 0 => {
                [Some(t.progress + self.stall), t.sender.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Link::Up => t.sender.poll_timeout(),
            _ => None,
        });
        links.chain(self.waiters.values().map(|w| w.deadline)).min()
    }

    /// Counters and lag of each target, by name.
    pub fn stats(&self, now: Instant) -> Vec<(String, SenderStats)> {
        self.targets
            .iter()
            .map(|(k, t)| (k.clone(), t.sender.stats(now)))
            .collect()
    }

    /// Moves the waiters whose every need is acknowledged to `done`.
    fn settle(&mut self) {
        let targets = &self.targets;
        let acked = |(peer, seq): &(String, u64)| {
            targets
                .get(peer)
                .is_some_and(|t| t.sender.acked_seq() >= *seq)
        };
        let finished: Vec<WriteId> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.needs.iter().all(acked))
            .map(|(id, _)| *id)
            .collect();
        for id in finished {
            self.waiters.remove(&id);
            self.done.push((id, Ok(())));
        }
    }

    fn fail_waiters(&mut self, hit: impl Fn(&[(String, u64)]) -> bool) {
        let failed: Vec<WriteId> = self
            .waiters
            .iter()
            .filter(|(_, w)| hit(&w.needs))
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.waiters.remove(&id);
            self.done.push((id, Err(WriteFailure::Replication)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(3);

    fn replicas(slaves: &[(&str, bool)], preparing: Option<&str>) -> Replicas {
        Replicas {
            slaves: slaves.iter().map(|(k, a)| (k.to_string(), *a)).collect(),
            preparing_master: preparing.map(str::to_string),
        }
    }

    fn drain(t: &mut Targets, now: Instant) -> Vec<LinkAction> {
        std::iter::from_fn(|| t.poll_action(now)).collect()
    }

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    #[test]
    fn a_sync_write_waits_for_active_slaves_only() {
        let t0 = Instant::now();
        let mut t = Targets::new(10, STALL);
        let r = replicas(&[("s0:1", true), ("s1:1", false)], Some("p:1"));
        let needs = t.enqueue(t0, &r, key("k"), ChangeKind::Write).unwrap();
        assert_eq!(needs, vec![("s0:1".to_string(), 1)]);
        let opens = drain(&mut t, t0);
        assert_eq!(opens.len(), 3, "a link to each target: {opens:?}");
        for peer in ["s0:1", "s1:1", "p:1"] {
            t.handle_opened(t0, peer, true);
        }
        let sends = drain(&mut t, t0);
        assert_eq!(sends.len(), 3);
        let id = t.wait(needs, t0 + Duration::from_secs(1));
        t.handle_reply(t0, "s1:1", b"STORED");
        assert_eq!(t.poll_done(), None, "the slave in prepare does not count");
        t.handle_reply(t0, "s0:1", b"STORED");
        assert_eq!(t.poll_done(), Some((id, Ok(()))));
    }

    #[test]
    fn a_late_or_dropped_sync_write_fails() {
        let t0 = Instant::now();
        let mut t = Targets::new(10, STALL);
        let r = replicas(&[("s0:1", true)], None);
        let needs = t.enqueue(t0, &r, key("k"), ChangeKind::Write).unwrap();
        drain(&mut t, t0);
        let id = t.wait(needs, t0 + Duration::from_secs(1));
        t.handle_timeout(t0 + Duration::from_secs(1));
        assert_eq!(t.poll_done(), Some((id, Err(WriteFailure::Replication))));
        // A target that leaves fails what waits for it.
        let needs = t.enqueue(t0, &r, key("k"), ChangeKind::Write).unwrap();
        let id = t.wait(needs, t0 + Duration::from_secs(9));
        t.retain(|_| false);
        assert_eq!(t.poll_done(), Some((id, Err(WriteFailure::Replication))));
    }

    #[test]
    fn a_stalled_link_is_closed_and_reopened_with_back_off() {
        let t0 = Instant::now();
        let mut t = Targets::new(10, STALL);
        let r = replicas(&[("s0:1", true)], None);
        t.enqueue(t0, &r, key("k"), ChangeKind::Write).unwrap();
        drain(&mut t, t0);
        t.handle_opened(t0, "s0:1", true);
        assert_eq!(drain(&mut t, t0).len(), 1);
        assert_eq!(t.next_timeout(t0), Some(t0 + STALL));
        t.handle_timeout(t0 + STALL);
        assert_eq!(
            drain(&mut t, t0 + STALL),
            vec![LinkAction::Close("s0:1".into())]
        );
        t.handle_closed(t0 + STALL, "s0:1");
        assert_eq!(t.next_timeout(t0 + STALL), Some(t0 + STALL + BACKOFF_MIN));
        let t1 = t0 + STALL + BACKOFF_MIN;
        assert_eq!(drain(&mut t, t1), vec![LinkAction::Open("s0:1".into())]);
        t.handle_opened(t1, "s0:1", false);
        assert_eq!(t.next_timeout(t1), Some(t1 + BACKOFF_MIN * 2), "doubled");
        let t2 = t1 + BACKOFF_MIN * 2;
        drain(&mut t, t2);
        t.handle_opened(t2, "s0:1", true);
        let resent = drain(&mut t, t2);
        assert!(
            matches!(&resent[..], [LinkAction::Send(p, q)] if p == "s0:1" && q.seq == 1),
            "what was in flight is sent again: {resent:?}"
        );
    }
}
