//! Process-wide counters and the connection registry behind `stats`, `stats threads` and `kill`.
//!
//! Connections accumulate a [`Tally`] per read batch and merge it here, so the hot path touches shared atomics once
//! per batch, not once per counter.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use flare_core::exec::Tally;
use tokio::sync::Notify;
use tokio::time::Instant;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Shared counters, one atomic per `stats` field.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub $name: AtomicU64,
            )*
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
                $( if t.$name != 0 { self.$name.fetch_add(t.$name, Relaxed); } )*
            }

            /// The tally fields as (name, value) in declaration order.
            pub fn tally_fields(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name.load(Relaxed)) ),*]
            }
        }
    };
}

counters!(
    cmd_get,
    cmd_set,
    get_hits,
    get_misses,
    total_items,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    cas_hits,
    cas_misses,
    cas_badval,
    touch_hits,
    touch_misses,
    meta_cmds,
    storage_errors,
);

impl Counters {
    /// Reads one tally counter by name (0 when unknown).
    pub fn get(&self, name: &str) -> u64 {
        self.tally_fields()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or(0)
    }
}

/// Thread (connection) states shown by `stats threads` (stats.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    /// Idle, waiting for a request.
    Wait = 0,
    /// Running a request.
    Execute = 1,
    /// Stopping.
    Shutdown = 2,
    /// Stopped by `kill`.
    Killed = 3,
}

impl ThreadState {
    fn name(v: u8) -> &'static str {
        match v {
            1 => "execute",
            2 => "shutdown",
            3 => "killed",
            _ => "wait",
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

    /// Asks every connection that has received nothing for `idle` to close (`net-read-timeout`); returns how
    /// many. One sweep a second replaces a timer per read on the hot path.
    pub fn close_idle(&self, now: Instant, idle: std::time::Duration) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = 0;
        for c in conns.values() {
            let last = c.since + std::time::Duration::from_millis(c.last_read_ms.load(Relaxed));
            if now.saturating_duration_since(last) >= idle {
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
            let id = c.id;
            let op = *c.op.lock().expect("op lock poisoned only by a panic");
            out.push((format!("{id}:type"), "1".to_string()));
            out.push((format!("{id}:peer"), c.peer.to_string()));
            out.push((format!("{id}:op"), op.to_string()));
            out.push((
                format!("{id}:uptime"),
                now.duration_since(c.since).as_secs().to_string(),
            ));
            out.push((
                format!("{id}:state"),
                ThreadState::name(c.state.load(Relaxed)).to_string(),
            ));
            out.push((format!("{id}:info"), String::new()));
            out.push((format!("{id}:queue"), "0".to_string()));
            out.push((format!("{id}:behind"), "0".to_string()));
        }
        out
    }
}

/// `rusage_user` and `rusage_system` as `<sec>.<usec>` (stats.md §1).
pub fn rusage() -> (String, String) {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let f = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
    (f(ru.ru_utime), f(ru.ru_stime))
}
