//! Process-wide counters and the connection registry behind `stats`, `stats threads` and `kill`, and the
//! [`Snapshot`] of them (with the machine's progress and the view) that [`flare_core::node::stats`] formats.
//!
//! Connections accumulate a [`Tally`] per read batch and merge it here, so the hot path touches shared atomics once
//! per batch, not once per counter.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use flare_core::exec::Tally;
use flare_core::node::admit;
pub use flare_core::node::stats::ThreadState;
use flare_core::node::stats::{tally_fields, tally_from, Snapshot, Thread, TALLY_FIELDS};
use flare_core::storage::Storage;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use crate::metrics::rusage;
use crate::net::Net;

/// Shared counters, one atomic per `stats` field.
#[derive(Debug, Default)]
pub struct Counters {
    /// The command counters, in [`tally_fields`] order.
    tally: [AtomicU64; TALLY_FIELDS],
    /// Bytes read from all sockets.
    pub bytes_read: AtomicU64,
    /// Bytes written to all sockets.
    pub bytes_written: AtomicU64,
    /// Connections accepted since start.
    pub total_connections: AtomicU64,
    /// Connections open now.
    pub curr_connections: AtomicU64,
    /// Connections refused at `max-connection` (memcached's `rejected_connections`).
    pub rejected_connections: AtomicU64,
    /// Records sent by `dump` and `dump_key`.
    pub dump_items: AtomicU64,
    /// Dumps being streamed now.
    pub dumps_running: AtomicU64,
}

impl Counters {
    /// Adds a connection's tally.
    pub fn merge(&self, t: &Tally) {
        for (counter, (_, v)) in self.tally.iter().zip(tally_fields(t)) {
            if v != 0 {
                counter.fetch_add(v, Relaxed);
            }
        }
    }

    /// The command counters now.
    pub fn tally(&self) -> Tally {
        tally_from(self.tally.each_ref().map(|c| c.load(Relaxed)))
    }
}

impl<N: Net, S: Storage> super::Shared<N, S> {
    /// What `stats` and `/metrics` show, read now.
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.counters;
        let storage = self.store.storage();
        Snapshot {
            pid: std::process::id(),
            uptime: self.uptime(),
            time: self.now(),
            rusage: rusage(),
            curr_items: storage.item_count(),
            disk_bytes: storage.disk_bytes(),
            curr_connections: c.curr_connections.load(Relaxed),
            total_connections: c.total_connections.load(Relaxed),
            rejected_connections: c.rejected_connections.load(Relaxed),
            bytes_read: c.bytes_read.load(Relaxed),
            bytes_written: c.bytes_written.load(Relaxed),
            connections: self.registry.len(),
            tally: c.tally(),
            dump_items: c.dump_items.load(Relaxed),
            dumps_running: c.dumps_running.load(Relaxed),
            view: self.cluster.view(),
            applied_seq: self.cluster.applied_seq(),
            replication: self.cluster.replication_stats(Instant::now().into_std()),
            rebuild: self.cluster.rebuild_stats(),
            healthy: self.healthy(),
        }
    }
}

/// One client connection as `stats threads` shows it.
#[derive(Debug)]
pub struct ConnInfo {
    /// Id shown in `stats threads` and taken by `kill`.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// When the connection was accepted.
    pub since: Instant,
    /// Current [`ThreadState`].
    pub state: AtomicU8,
    /// The command being run (`op`), as a static name; empty when idle.
    pub op: Mutex<&'static str>,
    /// Woken by `kill` and by the idle sweeper.
    pub kill: Notify,
    /// Milliseconds after `since` at which the last bytes arrived (the idle sweeper reads it).
    pub last_read_ms: AtomicU64,
}

impl ConnInfo {
    /// Records that bytes arrived now.
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.since).as_millis() as u64;
        self.last_read_ms.store(ms, Relaxed);
    }

    /// Records the command being run (`stats threads` `op`); empty when idle.
    pub fn set_op(&self, op: &'static str) {
        *self.op.lock().unwrap_or_else(|e| e.into_inner()) = op;
    }
}

/// Open connections by id.
#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU64,
    conns: Mutex<BTreeMap<u64, Arc<ConnInfo>>>,
}

impl Registry {
    /// Registers a new connection.
    pub fn register(&self, peer: SocketAddr) -> Arc<ConnInfo> {
        // Flare's ids are small integers unique for the life of the process; start above the fixed threads.
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(ConnInfo {
            id,
            peer,
            since: Instant::now(),
            state: AtomicU8::new(ThreadState::Wait as u8),
            op: Mutex::new(""),
            kill: Notify::new(),
            last_read_ms: AtomicU64::new(0),
        });
        self.conns
            .lock()
            .expect("registry lock poisoned only by a panic")
            .insert(id, info.clone());
        info
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, id: u64) {
        self.conns
            .lock()
            .expect("registry lock poisoned only by a panic")
            .remove(&id);
    }

    /// Asks connection `id` to close; false when there is no such connection.
    pub fn kill(&self, id: u64) -> bool {
        let conns = self
            .conns
            .lock()
            .expect("registry lock poisoned only by a panic");
        match conns.get(&id) {
            Some(c) => {
                c.state.store(ThreadState::Killed as u8, Relaxed);
                c.kill.notify_one();
                true
            }
            None => false,
        }
    }

    /// Asks every connection that [`admit::idle_expired`] under `net-read-timeout` = `timeout` to close; returns
    /// how many. One sweep a second replaces a timer per read on the hot path.
    pub fn close_idle(&self, now: Instant, timeout: std::time::Duration) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = 0;
        for c in conns.values() {
            let last = c.since + std::time::Duration::from_millis(c.last_read_ms.load(Relaxed));
            if admit::idle_expired(now.saturating_duration_since(last), timeout) {
                c.kill.notify_one();
                closed += 1;
            }
        }
        closed
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.conns
            .lock()
            .expect("registry lock poisoned only by a panic")
            .len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `stats threads` lines for client connections (type 1), stats.md §2.
    pub fn thread_stats(&self, now: Instant) -> Vec<(String, String)> {
        let conns = self
            .conns
            .lock()
            .expect("registry lock poisoned only by a panic");
        let mut out = Vec::with_capacity(conns.len() * 8);
        for c in conns.values() {
            Thread {
                id: c.id,
                kind: 1,
                peer: c.peer.to_string(),
                op: c
                    .op
                    .lock()
                    .expect("op lock poisoned only by a panic")
                    .to_string(),
                uptime: now.duration_since(c.since).as_secs(),
                state: ThreadState::from_u8(c.state.load(Relaxed)),
                queue: 0,
                behind: 0,
            }
            .push_to(&mut out);
        }
        out
    }
}
