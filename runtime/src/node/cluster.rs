//! The cluster side of a node's driver: it runs [`flare_core::node::Node`], the node's state machine, and moves
//! bytes for it. Every decision (registration, the map, the session and lease, replication links and their
//! back-off, reconstruction and its reports) is the machine's; this module performs its [`Action`]s (index calls,
//! the session, replication links, dump pulls, storage operations), feeds the results back with `handle_*`, and
//! sleeps until [`Node::poll_timeout`]. What the byte-moving itself needs decided is the machine's too: which index
//! servers a call or the session tries, in order ([`Node::call_addresses`], [`Node::index_order`]; the session
//! reports which one answered), and [`wire`]'s: when a reply is whole, the message a replication entry becomes and
//! which key state it reads, what a dump pull's events mean and the item a dump record becomes.
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
use flare_core::node::registration::started;
use flare_core::node::replication::SenderStats;
use flare_core::node::targets::{WriteFailure, WriteId};
use flare_core::node::view::ClusterView;
use flare_core::node::wire::{self, PullStep};
use flare_core::node::{
    Action, CallId, Dest, Node, NodeSettings, Published, RebuildStats, Registration, StoreOp,
};
use flare_core::protocol::reply::{ReplyEvent, ReplyKind, ReplyReader};
use flare_core::protocol::{Limits, NodeLine};
use flare_core::storage::Storage;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::peers::{split_node, Peers};
use super::Shared;
use crate::net::{read_reply, Net};

/// Settings of the cluster side (from the node configuration).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// The machine's settings: names, index servers, `proxy-timeout`, backlog, reconstruction, lease, secret.
    pub machine: NodeSettings,
    /// `proxy-concurrency`: connections per destination for forwarded requests.
    pub proxy_concurrency: usize,
    /// Seed of the random choice of read replicas (deterministic in the simulation).
    pub seed: u64,
}

impl ClusterSettings {
    /// The cluster settings of a node configuration (one function for `flared` and the simulator).
    pub fn from_config(c: &NodeConfig, seed: u64) -> Self {
        ClusterSettings {
            machine: NodeSettings::from_config(c),
            proxy_concurrency: c.proxy_concurrency as usize,
            seed,
        }
    }
}

/// The machine and the driver's handles on the I/O it started.
struct Machine {
    node: Node,
    /// The open session: its generation and where its lines go.
    session: Option<(u64, mpsc::UnboundedSender<Bytes>)>,
    /// Replication links by peer: generation and where their messages go.
    links: BTreeMap<String, (u64, mpsc::UnboundedSender<Bytes>)>,
    /// Generation counter for sessions and links: a task reports only while its generation is current.
    generation: u64,
    /// Dump pulls running, with their abort flags.
    pulls: BTreeMap<CallId, Arc<AtomicBool>>,
    /// Sync writes waiting for [`Action::WriteDone`].
    waiters: BTreeMap<WriteId, oneshot::Sender<Result<(), WriteFailure>>>,
}

impl Machine {
    /// Whether the session is still the one of `generation`.
    fn session_is(&self, generation: u64) -> bool {
        self.session.as_ref().is_some_and(|(g, _)| *g == generation)
    }

    /// Whether the link to `peer` is still the one of `generation`.
    fn link_is(&self, peer: &str, generation: u64) -> bool {
        self.links.get(peer).is_some_and(|(g, _)| *g == generation)
    }

    /// Forgets the link to `peer` if it is still the one of `generation`; whether it was.
    fn forget_link(&mut self, peer: &str, generation: u64) -> bool {
        let current = self.link_is(peer, generation);
        if current {
            self.links.remove(peer);
        }
        current
    }
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
        let node = Node::new(settings.machine.clone(), Instant::now().into_std());
        let published = node.published();
        let registration = watch::channel(node.registration().clone()).0;
        Cluster {
            peers: Peers::new(
                net,
                settings.proxy_concurrency,
                settings.machine.proxy_timeout,
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
}

/// Runs `f` on the machine, then performs every action it queued, in order.
pub(super) fn drive<N: Net, S: Storage + 'static, R>(
    shared: &Arc<Shared<N, S>>,
    f: impl FnOnce(&mut Node, std::time::Instant) -> R,
) -> R {
    drive_machine(shared, |m, now| f(&mut m.node, now))
}

/// [`drive`], with the driver's handles too.
fn drive_machine<N: Net, S: Storage + 'static, R>(
    shared: &Arc<Shared<N, S>>,
    f: impl FnOnce(&mut Machine, std::time::Instant) -> R,
) -> R {
    let cluster = &shared.cluster;
    let mut m = cluster.lock();
    let now = Instant::now().into_std();
    let r = f(&mut m, now);
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
            let dests = m.node.call_addresses(&to);
            tokio::spawn(call_task(shared.clone(), call, to, dests, lines, timeout));
        }
        Action::SessionOpen { lines } => {
            m.generation += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            m.session = Some((m.generation, tx));
            let dests = m.node.index_order();
            tokio::spawn(session_task(shared.clone(), m.generation, dests, lines, rx));
        }
        Action::SessionSend { line } => {
            if let Some((_, tx)) = &m.session {
                let _ = tx.send(Bytes::from(format!("{line}\r\n")));
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
            let read = |key: &Bytes| match shared.store.storage().get(key) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(error = %e, "replication: storage read failed");
                    shared.set_unhealthy();
                    None
                }
            };
            let msg = wire::replica_for(&path, &entry.key, entry.kind, read);
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
                let ok = succeeded(
                    shared.store.flush_all(),
                    "flush before reconstruction failed",
                );
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
                let persisted = shared.store.storage().persist_unlogged();
                let ok = succeeded(persisted, "could not make the reconstructed data durable");
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

/// Whether a storage operation succeeded; a failure is logged as `what`.
fn succeeded<E: std::fmt::Display>(result: Result<(), E>, what: &str) -> bool {
    result
        .inspect_err(|e| tracing::error!(error = %e, "{what}"))
        .is_ok()
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
    let stopped = |_| io::Error::other("node stopped");
    let r = rx
        .wait_for(|r| started(r).is_some())
        .await
        .map_err(stopped)?;
    started(&r).unwrap_or(Ok(())).map_err(io::Error::other)
}

/// Tells the index this node is stopping (a standalone node has nobody to tell: [`Node::shutdown`]), and waits
/// (a little) for the answer.
pub(super) async fn shutdown<N: Net, S: Storage + 'static>(shared: &Arc<Shared<N, S>>) {
    drive(shared, |n, now| n.shutdown(now));
    let deadline = Instant::now() + shared.cluster.settings.machine.goodbye_wait();
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

/// The result of a sync write, once the machine has it.
pub(super) type SyncResult = oneshot::Receiver<Result<(), WriteFailure>>;

/// Hands what a local write changed to the machine's replication ([`Node::replicate`]): what its
/// acknowledgement waits for (nothing, or a sync write's result), or why it fails at once.
pub(super) fn replicate<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    mutations: &[Mutation],
    sync: bool,
    as_master: bool,
) -> Result<Option<SyncResult>, WriteFailure> {
    drive_machine(shared, |m, now| {
        let Some(id) = m.node.replicate(now, mutations, sync, as_master)? else {
            return Ok(None);
        };
        let (tx, rx) = oneshot::channel();
        m.waiters.insert(id, tx);
        Ok(Some(rx))
    })
}

/// A replicated write from this node's master carried sequence number `seq`.
pub(super) fn applied<N: Net, S: Storage + 'static>(shared: &Arc<Shared<N, S>>, seq: u64) {
    shared.cluster.lock().node.applied(seq);
}

async fn call_task<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    call: CallId,
    to: Dest,
    dests: Vec<(String, u16)>,
    lines: Vec<(String, ReplyKind)>,
    timeout: Duration,
) {
    let result = match exchange(&shared, dests, &lines, timeout).await {
        Ok((_, _, replies)) => Ok(replies),
        Err(e) => Err(e.unwrap_or_else(|| format!("no address for {to:?}"))),
    };
    drive(&shared, |n, now| n.handle_call_reply(now, call, result));
    shared.cluster.calls.fetch_sub(1, Relaxed);
    shared.cluster.calls_done.notify_waiters();
}

/// Sends `lines` on a fresh connection to each of `dests` in turn, reading one reply of each line's kind, until one
/// answers them all within `timeout`: the address that answered, its connection and the replies, or the last
/// failure (`None`: no address).
async fn exchange<N: Net, S: Storage + 'static>(
    shared: &Shared<N, S>,
    dests: Vec<(String, u16)>,
    lines: &[(String, ReplyKind)],
    timeout: Duration,
) -> Result<((String, u16), N::Stream, Vec<Vec<ReplyEvent>>), Option<String>> {
    let mut failed = None;
    for (host, port) in dests {
        let attempt = tokio::time::timeout(timeout, async {
            let mut s = shared.net.connect(&host, port).await?;
            let mut replies = Vec::with_capacity(lines.len());
            for (line, kind) in lines {
                s.write_all(format!("{line}\r\n").as_bytes()).await?;
                replies.push(read_reply(&mut s, shared.settings.limits, *kind).await?);
            }
            Ok::<_, io::Error>((s, replies))
        })
        .await;
        failed = Some(match attempt {
            Ok(Ok((s, replies))) => return Ok(((host, port), s, replies)),
            Ok(Err(e)) => format!("{host}:{port}: {e}"),
            Err(_) => format!("{host}:{port} did not answer in {timeout:?}"),
        });
    }
    Err(failed)
}

/// The session with an index server: opens it with `lines` at the first of `dests` that answers, then sends the
/// machine's lines and reports each answer, and reports the close (unless the machine closed it itself).
async fn session_task<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    generation: u64,
    dests: Vec<(String, u16)>,
    lines: Vec<String>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let settings = &shared.cluster.settings.machine;
    let lines: Vec<_> = lines.into_iter().map(|l| (l, ReplyKind::Line)).collect();
    let opened = exchange(&shared, dests, &lines, settings.session_open_timeout());
    let opened = opened
        .await
        .ok()
        .and_then(|(from, stream, replies)| Some((from, stream, wire::line_answers(replies)?)));
    let Some((from, mut stream, answers)) = opened else {
        if shared.cluster.lock().session_is(generation) {
            drive(&shared, |n, now| {
                n.handle_session_opened(now, None, Err("no index server answered".into()))
            });
        }
        return;
    };
    if !shared.cluster.lock().session_is(generation) {
        return;
    }
    drive(&shared, |n, now| {
        n.handle_session_opened(now, Some(from), Ok(answers))
    });
    let closed = || "index closed the session".to_string();
    let ended = pump(&mut stream, shared.settings.limits, &mut rx, closed, |l| {
        drive(&shared, |n, now| n.handle_session_reply(now, l))
    });
    if let Err(e) = ended.await {
        tracing::warn!(error = %e, "index session ended");
        // Only the current session's end is news (the machine may have opened another meanwhile).
        let was_current = {
            let mut m = shared.cluster.lock();
            m.session_is(generation) && m.session.take().is_some()
        };
        if was_current {
            drive(&shared, |n, now| n.handle_session_closed(now));
        }
    }
}

/// Writes what `rx` carries to `stream` and hands each answer line read back to `on_line`, until `rx` closes
/// (`Ok`: the machine closed it) or the stream fails or ends (`Err`, with `closed()` on an end of stream).
async fn pump<T: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut T,
    limits: Limits,
    rx: &mut mpsc::UnboundedReceiver<Bytes>,
    closed: impl Fn() -> String,
    mut on_line: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut reader = ReplyReader::new(limits);
    let mut rbuf = BytesMut::with_capacity(4096);
    loop {
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(msg) => stream.write_all(&msg).await?,
                None => return Ok(()),
            },
            read = stream.read_buf(&mut rbuf) => {
                if read? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, closed()));
                }
                while let Some(e) = reader.next(&mut rbuf, ReplyKind::Line).map_err(io::Error::other)? {
                    if let ReplyEvent::Line(l) = e {
                        on_line(&l);
                    }
                }
            }
        }
    }
}

async fn link_task<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    peer: String,
    generation: u64,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let address = wire::call_addresses(&Dest::Node(peer.clone()), &[]);
    let timeout = shared.cluster.settings.machine.link_open_timeout();
    let connected = exchange(&shared, address, &[], timeout).await.ok();
    if !shared.cluster.lock().link_is(&peer, generation) {
        return;
    }
    let ok = connected.is_some();
    drive(&shared, |n, now| n.handle_link_opened(now, &peer, ok));
    let Some((_, mut stream, _)) = connected else {
        shared.cluster.lock().forget_link(&peer, generation);
        return;
    };
    let closed = || format!("{peer} closed");
    let ended = pump(&mut stream, shared.settings.limits, &mut rx, closed, |l| {
        drive(&shared, |n, now| n.handle_link_reply(now, &peer, l))
    });
    if let Err(e) = ended.await {
        tracing::debug!(peer, error = %e, "replication link ended");
        if shared.cluster.lock().forget_link(&peer, generation) {
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
    let tick = wire::PULL_POLL;
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
            let v = match wire::pull_step(event, source) {
                PullStep::Item(v) => v,
                PullStep::Done(result) => return result,
                PullStep::Skip => continue,
            };
            if !drive(shared, |n, now| n.handle_dump_item(now, pull, &v)) {
                return Err(wire::PULL_SUPERSEDED.into());
            }
            let (key, item) = wire::dump_item(v);
            let loaded = shared.store.load_dump_item(&key, item, shared.now());
            loaded.map_err(|e| format!("storage: {e}"))?;
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
