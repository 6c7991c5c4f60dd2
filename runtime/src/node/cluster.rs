//! The cluster side of a node's driver: it runs [`flare_core::node::Node`], the node's state machine, and moves
//! bytes for it. Every decision (registration, the map, the session and lease, replication links and their
//! back-off, reconstruction and its reports) is the machine's; this module performs its [`Action`]s (index calls,
//! the session, replication links, dump pulls, storage operations), feeds the results back with `handle_*`, and
//! sleeps until [`Node::poll_timeout`].
//!
//! One lock holds the machine: [`drive`] takes it, runs one `handle_*` call and performs every action queued, in
//! order (storage operations at once, I/O by spawning a task that reports back through [`drive`]). Connections read
//! the [`Published`] view and lease without that lock.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flare_core::config::NodeConfig;
use flare_core::exec::Mutation;
use flare_core::item::Item;
use flare_core::node::replication::{encode_replica, SenderStats};
use flare_core::node::targets::{WriteFailure, WriteId};
use flare_core::node::view::ClusterView;
use flare_core::node::{
    Action, CallId, Dest, Node, NodeSettings, Published, RebuildStats, Registration, StoreOp,
};
use flare_core::protocol::reply::{ReplyEvent, ReplyKind, ReplyReader};
use flare_core::protocol::{Limits, NodeLine};
use flare_core::storage::Storage;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::peers::{split_node, Peers};
use super::Shared;
use crate::net::Net;

/// Settings of the cluster side (from the node configuration).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// `server-name`.
    pub server_name: String,
    /// `server-port`.
    pub server_port: u16,
    /// `index-servers`; empty for a standalone node.
    pub index_servers: Vec<(String, u16)>,
    /// `proxy-concurrency`: connections per destination for forwarded requests.
    pub proxy_concurrency: usize,
    /// `proxy-timeout`: how long a forwarded request, a sync replication or an index call may take.
    pub proxy_timeout: Duration,
    /// `replication-backlog`: most unacknowledged replicated writes per target.
    pub replication_backlog: usize,
    /// `reconstruction-interval` in microseconds (`dump` wait).
    pub reconstruction_interval_us: u64,
    /// `reconstruction-bwlimit` in KiB/s (0 = unlimited).
    pub reconstruction_bwlimit: u64,
    /// `master-lease`; zero = off.
    pub lease: Duration,
    /// Seed of the random choice of read replicas (deterministic in the simulation).
    pub seed: u64,
    /// `cluster-secret`: sent with `auth` before the commands this node sends the index; empty = none.
    pub cluster_secret: String,
}

impl ClusterSettings {
    /// The cluster settings of a node configuration (one function for `flared` and the simulator).
    pub fn from_config(c: &NodeConfig, seed: u64) -> Self {
        ClusterSettings {
            server_name: c.server_name.clone(),
            server_port: c.server_port,
            index_servers: c
                .index_servers
                .iter()
                .map(|s| (s.name.clone(), s.port))
                .collect(),
            proxy_concurrency: c.proxy_concurrency as usize,
            proxy_timeout: c.proxy_timeout,
            replication_backlog: c.replication_backlog as usize,
            reconstruction_interval_us: c.reconstruction_interval.as_micros() as u64,
            reconstruction_bwlimit: u64::from(c.reconstruction_bwlimit),
            lease: c.master_lease,
            seed,
            cluster_secret: c.cluster_secret.expose().to_string(),
        }
    }

    /// `name:port`, this node's key.
    pub fn self_key(&self) -> String {
        format!("{}:{}", self.server_name, self.server_port)
    }

    fn machine_settings(&self) -> NodeSettings {
        NodeSettings {
            server_name: self.server_name.clone(),
            server_port: self.server_port,
            index_servers: self.index_servers.clone(),
            proxy_timeout: self.proxy_timeout,
            replication_backlog: self.replication_backlog,
            reconstruction_interval_us: self.reconstruction_interval_us,
            reconstruction_bwlimit: self.reconstruction_bwlimit,
            lease: self.lease,
            cluster_secret: self.cluster_secret.clone(),
        }
    }
}

/// The machine and the driver's handles on the I/O it started.
struct Machine {
    node: Node,
    /// The open session: its generation and where its lines go.
    session: Option<(u64, mpsc::UnboundedSender<String>)>,
    /// Replication links by peer: generation and where their messages go.
    links: BTreeMap<String, (u64, mpsc::UnboundedSender<Bytes>)>,
    /// Generation counter for sessions and links: a task reports only while its generation is current.
    generation: u64,
    /// Dump pulls running, with their abort flags.
    pulls: BTreeMap<CallId, Arc<AtomicBool>>,
    /// Sync writes waiting for [`Action::WriteDone`].
    waiters: BTreeMap<WriteId, oneshot::Sender<Result<(), WriteFailure>>>,
}

/// The cluster state shared by a node's connections and tasks.
pub struct Cluster<N: Net> {
    /// Static settings.
    pub settings: ClusterSettings,
    /// `replication-type = sync` (reloadable).
    pub sync_default: AtomicBool,
    /// Connections to peers for forwarded requests.
    pub peers: Peers<N>,
    machine: Mutex<Machine>,
    published: RwLock<Published>,
    rng: Mutex<rand::rngs::StdRng>,
    /// Wakes the timer task: the machine's next timeout may have changed.
    wake: Notify,
    /// Index calls in flight (shutdown waits for its own).
    calls: AtomicUsize,
    calls_done: Notify,
    /// Where registration stands, for [`super::NodeServer::start`].
    registration: watch::Sender<Registration>,
}

impl<N: Net> Cluster<N> {
    /// The cluster side of a node. A cluster node starts registering once [`start`] runs.
    pub fn new(net: N, settings: ClusterSettings, limits: Limits, sync_default: bool) -> Self {
        let node = Node::new(settings.machine_settings(), Instant::now().into_std());
        let published = node.published();
        let registration = watch::channel(node.registration().clone()).0;
        Cluster {
            peers: Peers::new(
                net,
                settings.proxy_concurrency,
                settings.proxy_timeout,
                limits,
            ),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(settings.seed)),
            settings,
            sync_default: AtomicBool::new(sync_default),
            machine: Mutex::new(Machine {
                node,
                session: None,
                links: BTreeMap::new(),
                generation: 0,
                pulls: BTreeMap::new(),
                waiters: BTreeMap::new(),
            }),
            published: RwLock::new(published),
            wake: Notify::new(),
            calls: AtomicUsize::new(0),
            calls_done: Notify::new(),
            registration,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What connections route on: the current view and lease.
    pub fn published(&self) -> Published {
        self.published
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.published
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .view
            .clone()
    }

    /// A random number for choosing read replicas.
    pub fn pick(&self) -> u32 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).random()
    }

    /// Replication counters per target, for `stats`.
    pub fn replication_stats(&self, now: std::time::Instant) -> Vec<(String, SenderStats)> {
        self.lock().node.replication_stats(now)
    }

    /// The highest replication sequence number applied from this node's master.
    pub fn applied_seq(&self) -> u64 {
        self.lock().node.applied_seq()
    }

    /// Reconstruction progress.
    pub fn rebuild_stats(&self) -> RebuildStats {
        self.lock().node.rebuild_stats()
    }

    /// Whether this node may acknowledge writes as a master now, and until when its lease runs.
    pub fn lease_state(&self) -> (bool, Option<std::time::Instant>) {
        self.lock().node.lease_state(Instant::now().into_std())
    }
}

/// Runs `f` on the machine, then performs every action it queued, in order.
pub(super) fn drive<N: Net, S: Storage + 'static, R>(
    shared: &Arc<Shared<N, S>>,
    f: impl FnOnce(&mut Node, std::time::Instant) -> R,
) -> R {
    let cluster = &shared.cluster;
    let mut m = cluster.lock();
    let now = Instant::now().into_std();
    let r = f(&mut m.node, now);
    while let Some(action) = m.node.poll_action() {
        perform(shared, &mut m, now, action);
    }
    let registration = m.node.registration().clone();
    drop(m);
    cluster.registration.send_if_modified(|r| {
        let changed = *r != registration;
        *r = registration;
        changed
    });
    cluster.wake.notify_one();
    r
}

fn perform<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    m: &mut Machine,
    now: std::time::Instant,
    action: Action,
) {
    match action {
        Action::Call {
            call,
            to,
            lines,
            timeout,
        } => {
            shared.cluster.calls.fetch_add(1, Relaxed);
            tokio::spawn(call_task(shared.clone(), call, to, lines, timeout));
        }
        Action::SessionOpen { lines } => {
            m.generation += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            m.session = Some((m.generation, tx));
            tokio::spawn(session_task(shared.clone(), m.generation, lines, rx));
        }
        Action::SessionSend { line } => {
            if let Some((_, tx)) = &m.session {
                let _ = tx.send(line);
            }
        }
        Action::SessionClose => {
            m.session = None;
            m.node.handle_session_closed(now);
        }
        Action::LinkOpen { peer } => {
            m.generation += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            m.links.insert(peer.clone(), (m.generation, tx));
            tokio::spawn(link_task(shared.clone(), peer, m.generation, rx));
        }
        Action::Replicate { peer, entry, path } => {
            let record = match entry.kind.reads_key() {
                true => match shared.store.storage().get(&entry.key) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "replication: storage read failed");
                        shared.set_unhealthy();
                        None
                    }
                },
                false => None,
            };
            // A record that is gone (a swept tombstone) has nothing to send, but every entry gets one answer: a
            // no-op (`version`) whose answer counts as done.
            let msg = encode_replica(&path, &entry.key, record.as_ref(), entry.kind)
                .unwrap_or_else(|| Bytes::from_static(b"version\r\n"));
            if let Some((_, tx)) = m.links.get(&peer) {
                let _ = tx.send(msg);
            }
        }
        Action::LinkClose { peer } => {
            m.links.remove(&peer);
            m.node.handle_link_closed(now, &peer);
        }
        Action::PullDump { pull, source, line } => {
            let abort = Arc::new(AtomicBool::new(false));
            m.pulls.insert(pull, abort.clone());
            tokio::spawn(pull_task(shared.clone(), pull, source, line, abort));
        }
        Action::AbortDump { pull } => {
            if let Some(abort) = m.pulls.get(&pull) {
                abort.store(true, Relaxed);
            }
        }
        Action::Store(op) => match &op {
            StoreOp::FlushAll => {
                let ok = match shared.store.flush_all() {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "flush before reconstruction failed");
                        false
                    }
                };
                m.node.handle_store_result(now, &op, ok);
            }
            StoreOp::RaiseVersionFloor(v) => {
                // A failure is the engine's: the writes that follow fail on the same mark and answer SERVER_ERROR.
                if let Err(e) = shared.store.raise_version_floor(*v) {
                    tracing::error!(error = %e, floor = v, "could not persist the version clock's mark");
                }
            }
            StoreOp::PersistUnlogged => {
                // Inline: a memtable flush of at most a few write buffers (a blocking-pool hand-off would make the
                // simulation's schedule depend on real time).
                let ok = match shared.store.storage().persist_unlogged() {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "could not make the reconstructed data durable");
                        false
                    }
                };
                m.node.handle_store_result(now, &op, ok);
            }
            StoreOp::RemoveMovedKeys { partition } => {
                tokio::spawn(remove_moved_keys(shared.clone(), *partition));
            }
        },
        Action::WriteDone { write, result } => {
            if let Some(tx) = m.waiters.remove(&write) {
                let _ = tx.send(result);
            }
        }
        Action::Publish => {
            let published = m.node.published();
            let view = published.view.clone();
            *shared
                .cluster
                .published
                .write()
                .unwrap_or_else(|e| e.into_inner()) = published;
            shared.cluster.peers.retain(|k| view.node(k).is_some());
        }
    }
}

/// Starts the machine's timer: it sleeps until [`Node::poll_timeout`] (or until woken by [`drive`]).
pub(super) fn start<N: Net, S: Storage + 'static>(shared: &Arc<Shared<N, S>>) {
    drive(shared, |_, _| {});
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            let next = {
                let m = shared.cluster.lock();
                m.node.poll_timeout(Instant::now().into_std())
            };
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shared.cluster.wake.notified() => {}
                _ = sleep => drive(&shared, |n, now| n.handle_timeout(now)),
            }
        }
    });
}

/// Waits until registration is done (`Ok`) or has failed for good.
pub(super) async fn registered<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
) -> io::Result<()> {
    let mut rx = shared.cluster.registration.subscribe();
    let r = rx
        .wait_for(|r| *r != Registration::Pending)
        .await
        .map_err(|_| io::Error::other("node stopped"))?
        .clone();
    match r {
        Registration::Failed(why) => Err(io::Error::other(why)),
        _ => Ok(()),
    }
}

/// Tells the index this node is stopping, and waits (a little) for the answer.
pub(super) async fn shutdown<N: Net, S: Storage + 'static>(shared: &Arc<Shared<N, S>>) {
    drive(shared, |n, now| n.shutdown(now));
    let deadline = Instant::now() + shared.cluster.settings.proxy_timeout * 5;
    while shared.cluster.calls.load(Relaxed) > 0 {
        let done = shared.cluster.calls_done.notified();
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            tracing::warn!("could not tell the index server about the shutdown");
            return;
        }
    }
}

/// `node sync <version>` from the index server (protocol.md §5.7). Returns the reply line on refusal.
pub fn apply_node_sync<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    version: u64,
    lines: &[NodeLine],
) -> Result<(), &'static str> {
    drive(shared, |n, now| n.handle_node_sync(now, version, lines))
}

/// What a local write's acknowledgement waits for.
pub(super) enum Wait {
    /// Nothing: acknowledge.
    None,
    /// A sync write: its result.
    Sync(oneshot::Receiver<Result<(), WriteFailure>>),
}

/// Hands what a local write changed to the machine's replication ([`Node::replicate`]).
pub(super) fn replicate<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    mutations: &[Mutation],
    sync: bool,
    as_master: bool,
) -> Result<Wait, WriteFailure> {
    let cluster = &shared.cluster;
    let mut m = cluster.lock();
    let now = Instant::now().into_std();
    let r = m.node.replicate(now, mutations, sync, as_master);
    let r = match r {
        Ok(None) => Ok(Wait::None),
        Ok(Some(id)) => {
            let (tx, rx) = oneshot::channel();
            m.waiters.insert(id, tx);
            Ok(Wait::Sync(rx))
        }
        Err(e) => Err(e),
    };
    while let Some(action) = m.node.poll_action() {
        perform(shared, &mut m, now, action);
    }
    drop(m);
    cluster.wake.notify_one();
    r
}

/// A replicated write from this node's master carried sequence number `seq`.
pub(super) fn applied<N: Net, S: Storage + 'static>(shared: &Arc<Shared<N, S>>, seq: u64) {
    shared.cluster.lock().node.applied(seq);
}

async fn call_task<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    call: CallId,
    to: Dest,
    lines: Vec<(String, ReplyKind)>,
    timeout: Duration,
) {
    let dests: Vec<(String, u16)> = match &to {
        Dest::Index => shared.cluster.settings.index_servers.clone(),
        Dest::Node(key) => split_node(key)
            .map(|(h, p)| (h.to_string(), p))
            .into_iter()
            .collect(),
    };
    let mut result = Err(format!("no address for {to:?}"));
    for (host, port) in dests {
        let attempt = tokio::time::timeout(timeout, async {
            let mut s = shared.net.connect(&host, port).await?;
            let mut replies = Vec::with_capacity(lines.len());
            for (line, kind) in &lines {
                s.write_all(format!("{line}\r\n").as_bytes()).await?;
                replies.push(read_reply(&mut s, shared.settings.limits, *kind).await?);
            }
            Ok::<_, io::Error>(replies)
        })
        .await;
        result = match attempt {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(format!("{host}:{port}: {e}")),
            Err(_) => Err(format!("{host}:{port} did not answer in {timeout:?}")),
        };
        if result.is_ok() {
            break;
        }
    }
    drive(&shared, |n, now| n.handle_call_reply(now, call, result));
    shared.cluster.calls.fetch_sub(1, Relaxed);
    shared.cluster.calls_done.notify_waiters();
}

/// The session with an index server: opens it with `lines`, then sends the machine's lines and reports each
/// answer, and reports the close (unless the machine closed it itself).
async fn session_task<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    generation: u64,
    lines: Vec<String>,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    let current = |m: &Machine| m.session.as_ref().is_some_and(|(g, _)| *g == generation);
    let timeout = shared.cluster.settings.proxy_timeout * 5;
    let mut opened = None;
    for (host, port) in shared.cluster.settings.index_servers.clone() {
        let attempt = tokio::time::timeout(timeout, async {
            let mut s = shared.net.connect(&host, port).await?;
            let mut answers = Vec::new();
            for line in &lines {
                s.write_all(format!("{line}\r\n").as_bytes()).await?;
                match read_reply(&mut s, shared.settings.limits, ReplyKind::Line)
                    .await?
                    .pop()
                {
                    Some(ReplyEvent::Line(l)) => answers.push(l),
                    _ => return Err(io::Error::other("no answer")),
                }
            }
            Ok::<_, io::Error>((s, answers))
        })
        .await;
        if let Ok(Ok(o)) = attempt {
            opened = Some(o);
            break;
        }
    }
    let Some((mut stream, answers)) = opened else {
        if current(&shared.cluster.lock()) {
            drive(&shared, |n, now| {
                n.handle_session_opened(now, Err("no index server answered".into()))
            });
        }
        return;
    };
    let still = {
        let m = shared.cluster.lock();
        current(&m)
    };
    if !still {
        return;
    }
    drive(&shared, |n, now| n.handle_session_opened(now, Ok(answers)));
    let mut reader = ReplyReader::new(shared.settings.limits);
    let mut rbuf = BytesMut::with_capacity(1024);
    let ended: io::Result<()> = async {
        loop {
            tokio::select! {
                biased;
                line = rx.recv() => match line {
                    Some(line) => stream.write_all(format!("{line}\r\n").as_bytes()).await?,
                    // The machine closed the session.
                    None => return Ok(()),
                },
                read = stream.read_buf(&mut rbuf) => {
                    if read? == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "index closed the session"));
                    }
                    while let Some(e) = reader.next(&mut rbuf, ReplyKind::Line).map_err(io::Error::other)? {
                        if let ReplyEvent::Line(l) = e {
                            drive(&shared, |n, now| n.handle_session_reply(now, &l));
                        }
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = ended {
        tracing::warn!(error = %e, "index session ended");
        // Only the current session's end is news (the machine may have opened another meanwhile).
        let was_current = {
            let mut m = shared.cluster.lock();
            let cur = current(&m);
            if cur {
                m.session = None;
            }
            cur
        };
        if was_current {
            drive(&shared, |n, now| n.handle_session_closed(now));
        }
    }
}

async fn link_task<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    peer: String,
    generation: u64,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let current = |shared: &Shared<N, S>| {
        shared
            .cluster
            .lock()
            .links
            .get(&peer)
            .is_some_and(|(g, _)| *g == generation)
    };
    let connected = match split_node(&peer) {
        Some((host, port)) => tokio::time::timeout(
            shared.cluster.settings.proxy_timeout,
            shared.net.connect(host, port),
        )
        .await
        .ok()
        .and_then(Result::ok),
        None => None,
    };
    if !current(&shared) {
        return;
    }
    let ok = connected.is_some();
    drive(&shared, |n, now| n.handle_link_opened(now, &peer, ok));
    let Some(mut stream) = connected else {
        let mut m = shared.cluster.lock();
        if m.links.get(&peer).is_some_and(|(g, _)| *g == generation) {
            m.links.remove(&peer);
        }
        return;
    };
    let mut reader = ReplyReader::new(shared.settings.limits);
    let mut rbuf = BytesMut::with_capacity(4096);
    let ended: io::Result<()> = async {
        loop {
            tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(msg) => stream.write_all(&msg).await?,
                    None => return Ok(()),
                },
                read = stream.read_buf(&mut rbuf) => {
                    if read? == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{peer} closed")));
                    }
                    while let Some(e) = reader.next(&mut rbuf, ReplyKind::Line).map_err(io::Error::other)? {
                        if let ReplyEvent::Line(l) = e {
                            drive(&shared, |n, now| n.handle_link_reply(now, &peer, &l));
                        }
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = ended {
        tracing::debug!(peer, error = %e, "replication link ended");
        let was_current = {
            let mut m = shared.cluster.lock();
            let cur = m.links.get(&peer).is_some_and(|(g, _)| *g == generation);
            if cur {
                m.links.remove(&peer);
            }
            cur
        };
        if was_current {
            drive(&shared, |n, now| n.handle_link_closed(now, &peer));
        }
    }
}

async fn pull_task<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    pull: CallId,
    source: String,
    line: String,
    abort: Arc<AtomicBool>,
) {
    let result = run_pull(&shared, pull, &source, &line, &abort).await;
    drive(&shared, |n, now| n.handle_dump_end(now, pull, result));
    shared.cluster.lock().pulls.remove(&pull);
}

async fn run_pull<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    pull: CallId,
    source: &str,
    line: &str,
    abort: &AtomicBool,
) -> Result<(), String> {
    let (host, port) = split_node(source).ok_or_else(|| format!("bad node key {source}"))?;
    // The machine fails a silent pull (and aborts it); the reads wake at least once a second to notice.
    let tick = Duration::from_secs(1);
    let mut s = loop {
        match tokio::time::timeout(tick, shared.net.connect(host, port)).await {
            Ok(r) => break r.map_err(|e| format!("{source}: {e}"))?,
            Err(_) if abort.load(Relaxed) => return Err("aborted".into()),
            Err(_) => {}
        }
    };
    s.write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| format!("{source}: {e}"))?;
    let mut reader = ReplyReader::new(shared.settings.limits);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    loop {
        while let Some(event) = reader
            .next(&mut buf, ReplyKind::Values)
            .map_err(|e| format!("{source}: {e}"))?
        {
            match event {
                ReplyEvent::Value(v) => {
                    if !drive(shared, |n, now| n.handle_dump_item(now, pull, &v)) {
                        return Err("superseded by a newer reconstruction".into());
                    }
                    let item = Item {
                        flags: v.flags,
                        exptime: v.exptime.unwrap_or(0),
                        version: v.version.unwrap_or(0),
                        value: v.value,
                        meta: 0,
                    };
                    shared
                        .store
                        .load_dump_item(&v.key, item, shared.now())
                        .map_err(|e| format!("storage: {e}"))?;
                }
                ReplyEvent::End => return Ok(()),
                ReplyEvent::Line(l) => {
                    return Err(format!("{source}: {}", String::from_utf8_lossy(&l)));
                }
                _ => {}
            }
        }
        if abort.load(Relaxed) {
            return Err("aborted".into());
        }
        match tokio::time::timeout(tick, s.read_buf(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) => return Err(format!("{source} closed the dump")),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{source}: {e}")),
        }
    }
}

async fn read_reply<T: tokio::io::AsyncRead + Unpin>(
    s: &mut T,
    limits: Limits,
    kind: ReplyKind,
) -> io::Result<Vec<ReplyEvent>> {
    let mut reader = ReplyReader::new(limits);
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::new();
    loop {
        while let Some(e) = reader.next(&mut buf, kind).map_err(io::Error::other)? {
            let last = matches!(e, ReplyEvent::End | ReplyEvent::Line(_));
            out.push(e);
            if last || kind == ReplyKind::Line {
                return Ok(out);
            }
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
    }
}

/// Deletes, in small batches and without replicating, every key this node holds that no longer belongs to its
/// partition `p` under the current map ([`ClusterView::moved_away`]). Runs in the background after a partition is
/// activated.
async fn remove_moved_keys<N: Net, S: Storage + 'static>(shared: Arc<Shared<N, S>>, p: u32) {
    use flare_core::storage::Change;
    let mut cursor: Option<Bytes> = None;
    let mut removed = 0u64;
    loop {
        let batch = match shared.store.storage().scan(cursor.as_deref(), 256) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "moved-key cleanup stopped");
                return;
            }
        };
        let Some((last, _)) = batch.last() else { break };
        cursor = Some(last.clone());
        for (key, _) in batch {
            // Checked against the map of the moment: another growth may have happened meanwhile.
            let view = shared.cluster.view();
            if view.moved_away(&key, p)
                && shared
                    .store
                    .storage()
                    .update(&key, |_| (Change::Remove, ()))
                    .is_ok()
            {
                removed += 1;
            }
        }
        // Throttled: this is background work on a serving node.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tracing::info!(
        partition = p,
        removed,
        "keys moved to the new partition removed"
    );
}
