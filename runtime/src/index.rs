//! The `flarei` driver: runs the core index [`Group`] (raft-rs around the index state machine) in one task, serves
//! admin connections, and performs the group's outputs: writing the Raft log, sending Raft messages to the other
//! index servers, forwarding a follower's writes to the leader, pinging nodes, pushing the node map (cluster.md
//! §3–§5, §11; docs/index-servers.md).
//!
//! Generic over [`Net`] (tokio in production, turmoil in the simulation), over where the Raft log lives
//! ([`RaftStore`]: RocksDB in production, memory that survives a simulated crash in the simulation) and over where
//! the applied map's copy lives ([`SnapshotStore`]: the `flare-index.snapshot` file, also read once at start to take
//! over the map of an earlier single index server).
//!
//! The state machine task owns the `Group`; connections send it their commands and wait for the answer, probe,
//! push and forward tasks report their results to it. After every input it drains the outputs in order: a `Store`
//! is written (and synced) before anything after it and before any reply is released, so no reply or push ever shows
//! a map version that is not durably in the log. Links to the other index servers (one outgoing connection each,
//! `index peer <me>` then `index raft` frames) drop messages while a peer is unreachable: Raft resends.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use flare_core::config::{DaemonConfig, IndexConfig};
use flare_core::index::group::{Group, GroupSettings, GroupStatus, Output};
use flare_core::index::{
    threads_reply, Action, ConnId, IndexParams, ProbeResult, Snapshot, ThreadRow,
};
use flare_core::protocol::admin::{
    AdminCommand, AdminParsed, AdminParser, IndexCommand, ServerQuery,
};
use flare_core::protocol::lines;
use flare_core::protocol::reply::{ReplyEvent, ReplyKind};
use flare_core::protocol::response::encode_text;
use flare_core::protocol::{Limits, Reply, StatsGroup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

pub use crate::index_store::{MemoryRaftStore, RaftStore, RocksRaftStore};
use crate::net::{read_reply, Listener, Net};
use crate::node::peers::split_node;
use crate::node::stats::rusage;

/// Where the index keeps its snapshot.
pub trait SnapshotStore: Send + Sync + 'static {
    /// The last snapshot saved, if any.
    fn load(&self) -> io::Result<Option<Vec<u8>>>;
    /// Replaces the snapshot durably (all or nothing).
    fn save(&self, bytes: &[u8]) -> io::Result<()>;
}

/// A snapshot file in the data directory, replaced atomically: written to `<file>.tmp`, fsynced, renamed, and the
/// directory fsynced (decisions.md #4).
#[derive(Debug)]
pub struct FileSnapshots {
    path: PathBuf,
}

impl FileSnapshots {
    /// The snapshot file `<data_dir>/flare-index.snapshot`.
    pub fn new(data_dir: &std::path::Path) -> Self {
        FileSnapshots {
            path: data_dir.join("flare-index.snapshot"),
        }
    }
}

impl SnapshotStore for FileSnapshots {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("snapshot.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Snapshots in memory (tests and the simulation; share one between restarts of a simulated host).
#[derive(Debug, Default)]
pub struct MemorySnapshots(Mutex<Option<Vec<u8>>>);

impl SnapshotStore for MemorySnapshots {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes.to_vec());
        Ok(())
    }
}

impl<T: SnapshotStore> SnapshotStore for Arc<T> {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        (**self).load()
    }
    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        (**self).save(bytes)
    }
}

/// Settings of the index driver (from `flarei`'s configuration).
#[derive(Clone, Debug)]
pub struct IndexSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `max-connection`.
    pub max_connection: usize,
    /// `net-read-timeout` (0 = never).
    pub net_read_timeout: Duration,
    /// The text after `VERSION `.
    pub version_string: String,
    /// `show variables` lines.
    pub show_variables: Vec<String>,
    /// `stats settings` pairs.
    pub settings: Vec<(String, String)>,
    /// Longest command line.
    pub line_max: usize,
    /// `internal-netmask`: who may send map-changing commands; empty = any (SIGHUP: [`IndexControl::reload`]).
    pub internal_netmask: Vec<flare_core::config::Cidr>,
    /// The index group: this server, the members, join, election timeout.
    pub group: GroupSettings,
    /// `cluster-secret`, sent (`auth`) on this server's links to other index servers.
    pub secret: flare_core::config::Secret,
    /// Seeds the group's election timeouts (random in production, from the simulation's seed in the simulation).
    pub seed: u64,
}

impl IndexSettings {
    /// The settings of the index server configured by `c`, with its `show variables` lines; `Err` when this server
    /// cannot find itself in `index-servers`.
    pub fn from_config(
        c: &IndexConfig,
        show_variables: Vec<String>,
    ) -> Result<IndexSettings, String> {
        Ok(IndexSettings {
            group: GroupSettings::from_config(c)?,
            secret: c.cluster_secret.clone(),
            seed: rand::random(),
            listen: SocketAddr::from(([0, 0, 0, 0], c.server_port)),
            max_connection: c.max_connection as usize,
            net_read_timeout: c.net_read_timeout,
            version_string: c.version_string.clone(),
            show_variables,
            settings: c.settings(),
            line_max: c.max_line_length,
            internal_netmask: c.internal_netmask.clone(),
        })
    }
}

/// An input of the state machine task.
enum Input {
    Command {
        conn: ConnId,
        command: IndexCommand,
        reply: oneshot::Sender<(Reply, bool)>,
    },
    Threads {
        group: StatsGroup,
        rows: Vec<ThreadRow>,
        reply: oneshot::Sender<Reply>,
    },
    Probe {
        node: String,
        result: ProbeResult,
    },
    Push {
        node: String,
        version: u64,
        ok: bool,
    },
    /// A forwarded command's answer came back (or not) from the leader; the reply already went to its connection.
    Forwarded,
    Open(oneshot::Sender<ConnId>),
    Closed(ConnId),
    /// A node's session connection ended; `by_peer`: the node closed or reset it.
    SessionLost {
        node: String,
        conn: ConnId,
        by_peer: bool,
    },
    Reconfigure(IndexParams),
}

/// A bound index server.
pub struct IndexServer<N: Net, P: SnapshotStore, R: RaftStore> {
    net: N,
    listener: N::Listener,
    group: Group,
    snapshots: P,
    log: R,
    ctx: Arc<Ctx>,
    inputs: (mpsc::UnboundedSender<Input>, mpsc::UnboundedReceiver<Input>),
}

/// What every connection task shares.
struct Ctx {
    inputs: mpsc::UnboundedSender<Input>,
    settings: IndexSettings,
    started: Instant,
    map_version: AtomicU64,
    /// `max-connection` (reloadable).
    max_connection: AtomicUsize,
    /// `internal-netmask` (reloadable).
    internal_netmask: std::sync::RwLock<Arc<Vec<flare_core::config::Cidr>>>,
    /// The node map as last applied (for `/metrics`).
    map: Mutex<Arc<flare_core::node_map::NodeMap>>,
    /// The group's role, term, leader, applied index and members (for `stats`).
    status: Mutex<GroupStatus>,
    /// Node-map changes persisted since start.
    map_changes: AtomicU64,
    connections: AtomicUsize,
    total_connections: AtomicU64,
    kills: Mutex<std::collections::HashMap<u64, watch::Sender<bool>>>,
    conns: Mutex<std::collections::BTreeMap<u64, ThreadRow>>,
}

impl<N: Net, P: SnapshotStore, R: RaftStore> IndexServer<N, P, R> {
    /// Restores the group from `log` (or bootstraps it; an earlier single index server's map in `snapshots` is taken
    /// over), then binds the listener.
    pub async fn bind(
        net: N,
        params: IndexParams,
        settings: IndexSettings,
        snapshots: P,
        log: R,
    ) -> io::Result<Self> {
        let stored = log.load()?;
        let legacy = match (stored.is_empty(), snapshots.load()?) {
            (true, Some(bytes)) => Some(
                Snapshot::decode(&bytes)
                    .map_err(|e| io::Error::other(format!("index snapshot: {e}")))?,
            ),
            _ => None,
        };
        let group = Group::new(
            params,
            settings.group.clone(),
            stored,
            legacy,
            settings.seed,
            Instant::now().into_std(),
        )
        .map_err(io::Error::other)?;
        let listener = net.bind(settings.listen).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(Ctx {
            inputs: tx.clone(),
            max_connection: AtomicUsize::new(settings.max_connection),
            internal_netmask: std::sync::RwLock::new(Arc::new(settings.internal_netmask.clone())),
            settings,
            started: Instant::now(),
            map_version: AtomicU64::new(group.applied().version),
            map: Mutex::new(Arc::new(group.applied().node_map())),
            status: Mutex::new(group.status()),
            map_changes: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            total_connections: AtomicU64::new(0),
            kills: Mutex::new(Default::default()),
            conns: Mutex::new(Default::default()),
        });
        Ok(IndexServer {
            net,
            listener,
            group,
            snapshots,
            log,
            ctx,
            inputs: (tx, rx),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that applies reloaded settings while the server runs (SIGHUP).
    pub fn control(&self) -> IndexControl {
        IndexControl {
            ctx: self.ctx.clone(),
        }
    }

    /// The scrape renderer of this index server (`/metrics`).
    pub fn metrics(&self) -> Arc<crate::metrics::Render> {
        let ctx = self.ctx.clone();
        Arc::new(
            move |enc: &mut prometheus_client::encoding::DescriptorEncoder| {
                index_metrics(&ctx, enc)
            },
        )
    }

    /// Serves until `stop` resolves.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> io::Result<()> {
        let IndexServer {
            net,
            mut listener,
            mut group,
            snapshots,
            log,
            ctx,
            inputs: (tx, mut rx),
        } = self;
        let mut io = Io {
            net,
            snapshots,
            log,
            tx: tx.clone(),
            ctx: ctx.clone(),
            links: Links::default(),
            pending: std::collections::HashMap::new(),
            waiting: Vec::new(),
        };
        io.drain(&mut group)?;
        tokio::pin!(stop);
        loop {
            let timer = group.poll_timeout();
            let sleep = async {
                match timer {
                    Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut stop => break,
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    let now = Instant::now().into_std();
                    match input {
                        Input::Command { conn, command, reply } => match group.handle_command(now, conn, command) {
                            Some(out) => io.waiting.push((reply, out.reply, out.close)),
                            None => { io.pending.insert(conn, reply); }
                        },
                        Input::Threads { group: g, mut rows, reply } => match group.threads_from() {
                            // The node monitors run on the leader: its answer is relayed.
                            Some(leader) => {
                                tokio::spawn(relay_threads(io.net.clone(), leader, g, rows, reply));
                            }
                            None => {
                                rows.extend(group.monitor_threads(now));
                                let _ = reply.send(threads_reply(g, &rows));
                            }
                        },
                        Input::Probe { node, result } => group.handle_probe_result(now, &node, result),
                        Input::Push { node, version, ok } => group.handle_push_result(now, &node, version, ok),
                        Input::Forwarded => {}
                        Input::Open(reply) => { let _ = reply.send(group.open_connection()); }
                        Input::Closed(conn) => {
                            io.pending.remove(&conn);
                            group.close_connection(conn)
                        }
                        Input::SessionLost { node, conn, by_peer } => group.handle_session_lost(now, &node, conn, by_peer),
                        Input::Reconfigure(params) => match group.reconfigure(now, params) {
                            Ok(()) => tracing::info!("index settings reloaded"),
                            Err(e) => tracing::error!(error = %e, "reload refused, keeping the old settings"),
                        },
                    }
                }
                _ = sleep => group.handle_timeout(Instant::now().into_std()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => accept(&ctx, stream, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
            // Write the log (and start sends, probes and pushes) before any reply goes out.
            io.drain(&mut group)?;
        }
        Ok(())
    }
}

/// Replies held until the outputs of their input are performed: (to, reply, close after it).
type Held = (oneshot::Sender<(Reply, bool)>, Reply, bool);

/// What the state machine task performs its outputs with.
struct Io<N: Net, P: SnapshotStore, R: RaftStore> {
    net: N,
    snapshots: P,
    log: R,
    tx: mpsc::UnboundedSender<Input>,
    ctx: Arc<Ctx>,
    links: Links,
    /// Connections whose reply comes later (a proposal, a forward).
    pending: std::collections::HashMap<ConnId, oneshot::Sender<(Reply, bool)>>,
    waiting: Vec<Held>,
}

impl<N: Net, P: SnapshotStore, R: RaftStore> Io<N, P, R> {
    /// Performs every queued output in order, then releases the replies. A failed write of the log stops the
    /// server: the group in memory is then ahead of the disk.
    fn drain(&mut self, group: &mut Group) -> io::Result<()> {
        while let Some(out) = group.poll_output() {
            match out {
                Output::Store(ops) => self.log.write(&ops).map_err(|e| {
                    io::Error::other(format!("cannot write the index log, stopping: {e}"))
                })?,
                Output::Send { to, bytes } => self.links.send(&self.net, &self.ctx, &to, bytes),
                Output::Applied(snapshot) => {
                    self.snapshots.save(&snapshot.encode()).map_err(|e| {
                        io::Error::other(format!("cannot write the node map file, stopping: {e}"))
                    })?;
                    self.ctx.map_version.store(snapshot.version, Relaxed);
                    self.ctx.map_changes.fetch_add(1, Relaxed);
                    *self.ctx.map.lock().unwrap_or_else(|e| e.into_inner()) =
                        Arc::new(snapshot.node_map());
                }
                Output::Index(action) => self.act(action),
                Output::Reply { conn, outcome } => {
                    if let Some(to) = self.pending.remove(&conn) {
                        self.waiting.push((to, outcome.reply, outcome.close));
                    }
                }
                Output::Forward { conn, to, command } => {
                    if let Some(reply) = self.pending.remove(&conn) {
                        tokio::spawn(forward(
                            self.net.clone(),
                            self.ctx.clone(),
                            to,
                            command,
                            reply,
                            self.tx.clone(),
                        ));
                    }
                }
                Output::Fatal(why) => return Err(io::Error::other(format!("index group: {why}"))),
            }
        }
        *self.ctx.status.lock().unwrap_or_else(|e| e.into_inner()) = group.status();
        for (reply, r, close) in self.waiting.drain(..) {
            let _ = reply.send((r, close));
        }
        Ok(())
    }

    fn act(&mut self, action: Action) {
        let (net, tx) = (&self.net, &self.tx);
        match action {
            // The group turns the index's persists into proposals; none reaches the driver.
            Action::Persist(_) => {}
            Action::Probe {
                node,
                timeout,
                position,
            } => {
                tokio::spawn(probe(net.clone(), node, timeout, position, tx.clone()));
            }
            Action::Push {
                node,
                version,
                lines,
                timeout,
            } => {
                tokio::spawn(push(net.clone(), node, version, lines, timeout, tx.clone()));
            }
            Action::Close(conn) => {
                if let Some(k) = self
                    .ctx
                    .kills
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&conn.0)
                {
                    let _ = k.send(true);
                }
            }
        }
    }
}

/// One outgoing connection per other index server, fed by a bounded queue.
#[derive(Default)]
struct Links {
    to: std::collections::HashMap<String, mpsc::Sender<Vec<u8>>>,
}

/// Raft messages queued for one peer before new ones are dropped (Raft resends what is lost).
const LINK_QUEUE: usize = 1024;

impl Links {
    fn send<N: Net>(&mut self, net: &N, ctx: &Arc<Ctx>, to: &str, bytes: Vec<u8>) {
        let tx = self.to.entry(to.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(LINK_QUEUE);
            tokio::spawn(link(net.clone(), ctx.clone(), to.to_owned(), rx));
            tx
        });
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(bytes) {
            tracing::debug!(peer = to, "raft link queue full, message dropped");
        }
    }
}

/// Opens a connection to index server `to` as an index peer (`auth` first when there is a secret).
async fn open_peer<N: Net>(net: &N, ctx: &Ctx, to: &str) -> io::Result<N::Stream> {
    let (host, port) =
        split_node(to).ok_or_else(|| io::Error::other("bad index server address"))?;
    let mut s = net.connect(host, port).await?;
    let mut lines = Vec::new();
    if !ctx.settings.secret.is_empty() {
        lines.push(format!("auth {}", ctx.settings.secret.expose()));
    }
    lines.push(format!("index peer {}", ctx.settings.group.me));
    for line in lines {
        s.write_all(format!("{line}\r\n").as_bytes()).await?;
        match read_reply(&mut s, Limits::default(), ReplyKind::Line)
            .await?
            .first()
        {
            Some(ReplyEvent::Line(l)) if &l[..] == b"OK" => {}
            other => {
                return Err(io::Error::other(format!(
                    "{to} refused {}: {other:?}",
                    line.split_whitespace().next().unwrap_or_default()
                )))
            }
        }
    }
    Ok(s)
}

/// Carries Raft messages to `to`, reconnecting (after 100 ms) when the connection fails. The peer answers nothing
/// but the link's own `ping`s (every [`LINK_PING`]): a close read from the peer ends the connection at once (a message
/// written to a restarted peer's dead connection would be lost, and the first messages after a restart are an
/// election's), and so does a `ping` left unanswered for [`LINK_PING`] × 2 (a connection that silently stopped
/// carrying anything, as across a network partition).
async fn link<N: Net>(net: N, ctx: Arc<Ctx>, to: String, mut rx: mpsc::Receiver<Vec<u8>>) {
    loop {
        let opened = tokio::time::timeout(Duration::from_secs(1), open_peer(&net, &ctx, &to)).await;
        let stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(peer = to, error = %e, "raft link not open");
                tokio::time::sleep(Duration::from_millis(100)).await;
                // What queued meanwhile is stale: Raft sends again.
                while rx.try_recv().is_ok() {}
                continue;
            }
            Err(_) => {
                while rx.try_recv().is_ok() {}
                continue;
            }
        };
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut scratch = [0u8; 64];
        let mut ping = tokio::time::interval(LINK_PING);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unanswered: Option<Instant> = None;
        loop {
            let frame = tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    let mut frame = BytesMut::with_capacity(msg.len() + 32);
                    frame.extend_from_slice(format!("index raft {}\r\n", msg.len()).as_bytes());
                    frame.extend_from_slice(&msg);
                    frame.extend_from_slice(b"\r\n");
                    frame
                }
                read = reader.read(&mut scratch) => match read {
                    Ok(n) if n > 0 => {
                        unanswered = None;
                        continue;
                    }
                    _ => {
                        tracing::debug!(peer = to, "raft link closed by the peer");
                        break;
                    }
                },
                _ = ping.tick() => match unanswered {
                    Some(since) if since.elapsed() >= 2 * LINK_PING => {
                        tracing::debug!(peer = to, "raft link carries nothing any more, reopening it");
                        break;
                    }
                    Some(_) => continue,
                    None => {
                        unanswered = Some(Instant::now());
                        BytesMut::from(&b"ping\r\n"[..])
                    }
                },
            };
            let sent = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&frame)).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!(peer = to, "raft link broke");
                break;
            }
        }
    }
}

/// How often a raft link checks that its connection still carries messages.
const LINK_PING: Duration = Duration::from_millis(500);

/// A follower's `stats threads`: the leader's answer (its connections and node monitors), or this server's own
/// connections when the leader does not answer.
async fn relay_threads<N: Net>(
    net: N,
    leader: String,
    group: StatsGroup,
    rows: Vec<ThreadRow>,
    reply: oneshot::Sender<Reply>,
) {
    let line = AdminCommand::Server(ServerQuery::StatsThreads(group)).to_line();
    let answer = tokio::time::timeout(Duration::from_secs(2), async {
        let (host, port) =
            split_node(&leader).ok_or_else(|| io::Error::other("bad index server address"))?;
        let mut s = net.connect(host, port).await?;
        s.write_all(format!("{line}\r\n").as_bytes()).await?;
        let events = read_reply(&mut s, Limits::default(), ReplyKind::Lines).await?;
        let _ = s.write_all(b"quit\r\n").await;
        Ok::<_, io::Error>(events)
    })
    .await;
    let r = match answer {
        Ok(Ok(events)) => Reply::Raw(relayed(events)),
        _ => {
            tracing::warn!(
                leader,
                "the index leader did not answer stats threads; showing this server's own"
            );
            threads_reply(group, &rows)
        }
    };
    let _ = reply.send(r);
}

/// Sends a follower's map-changing command to the leader and relays its answer unchanged.
async fn forward<N: Net>(
    net: N,
    ctx: Arc<Ctx>,
    to: String,
    command: IndexCommand,
    reply: oneshot::Sender<(Reply, bool)>,
    tx: mpsc::UnboundedSender<Input>,
) {
    let kind = match command {
        IndexCommand::NodeAdd(_) => ReplyKind::Lines,
        _ => ReplyKind::Line,
    };
    let line = AdminCommand::Index(command).to_line();
    let server_error =
        |text: String| Reply::Error(flare_core::protocol::ErrorReply::Server(text.into()));
    let opened = tokio::time::timeout(Duration::from_secs(1), open_peer(&net, &ctx, &to)).await;
    let r = match opened {
        // Not sent: as good as no leader (the caller may send it again; our nodes and tools do).
        Ok(Err(_)) | Err(_) => {
            tracing::debug!(leader = to, "forward: the leader cannot be reached");
            server_error(flare_core::index::group::redirect_line(None))
        }
        Ok(Ok(mut s)) => {
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                s.write_all(format!("{line}\r\n").as_bytes()).await?;
                let events = read_reply(&mut s, Limits::default(), kind).await?;
                let _ = s.write_all(b"quit\r\n").await;
                Ok::<_, io::Error>(events)
            })
            .await;
            // Sent: whether it was applied is unknown, so say so instead of inviting a blind retry.
            match answer {
                Ok(Ok(events)) => Reply::Raw(relayed(events)),
                Ok(Err(e)) => server_error(format!(
                    "index leader {to} did not answer ({e}); the change may have been applied: check the map"
                )),
                Err(_) => server_error(format!(
                    "index leader {to} did not answer in time; the change may have been applied: check the map"
                )),
            }
        }
    };
    let _ = reply.send((r, false));
    let _ = tx.send(Input::Forwarded);
}

/// The bytes of a reply read from another server, as it sent them.
fn relayed(events: Vec<ReplyEvent>) -> bytes::Bytes {
    let mut out = BytesMut::new();
    for e in events {
        match e {
            ReplyEvent::Line(l) | ReplyEvent::Item(l) => {
                out.extend_from_slice(&l);
                out.extend_from_slice(b"\r\n");
            }
            ReplyEvent::End => lines::put_end(&mut out),
            _ => {}
        }
    }
    out.freeze()
}

/// Applies reloaded settings to a running index server.
#[derive(Clone)]
pub struct IndexControl {
    ctx: Arc<Ctx>,
}

impl IndexControl {
    /// Takes the dynamic options of a re-read configuration: monitor settings, secret and `auto-activate` (in the
    /// state machine; refused there if the partitioning changed), `max-connection`, `internal-netmask`.
    pub fn reload(
        &self,
        params: IndexParams,
        max_connection: usize,
        internal_netmask: Vec<flare_core::config::Cidr>,
    ) {
        self.ctx.max_connection.store(max_connection, Relaxed);
        *self
            .ctx
            .internal_netmask
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(internal_netmask);
        let _ = self.ctx.inputs.send(Input::Reconfigure(params));
    }
}

impl Ctx {
    fn internal_allowed(&self, peer: std::net::IpAddr) -> bool {
        let masks = self
            .internal_netmask
            .read()
            .unwrap_or_else(|e| e.into_inner());
        flare_core::node::admit::internal_allowed(&masks, peer)
    }
}

/// `ping` (and `stats` for the replication position), reported as one result.
async fn probe<N: Net>(
    net: N,
    node: String,
    timeout: Duration,
    position: bool,
    tx: mpsc::UnboundedSender<Input>,
) {
    let result = tokio::time::timeout(timeout, async {
        let (host, port) = split_node(&node).ok_or_else(|| io::Error::other("bad node key"))?;
        let mut s = net.connect(host, port).await?;
        s.write_all(b"ping\r\n").await?;
        let ok = matches!(read_reply(&mut s, Limits::default(), ReplyKind::Line).await?.first(), Some(ReplyEvent::Line(l)) if &l[..] == b"OK");
        let mut pos = None;
        if ok && position {
            s.write_all(b"stats\r\n").await?;
            for e in read_reply(&mut s, Limits::default(), ReplyKind::Lines).await? {
                if let ReplyEvent::Item(l) = e {
                    if let Some(v) = lines::stat_value(&l, "replication_position") {
                        pos = flare_core::protocol::text::parse_u64(v);
                    }
                }
            }
        }
        let _ = s.write_all(b"quit\r\n").await;
        Ok::<_, io::Error>(ProbeResult { ok, replication_position: pos })
    })
    .await;
    let result = match result {
        Ok(Ok(r)) => r,
        _ => ProbeResult::default(),
    };
    let _ = tx.send(Input::Probe { node, result });
}

/// `node sync <version>` with the map; ok iff the node answered `OK`.
async fn push<N: Net>(
    net: N,
    node: String,
    version: u64,
    nodes: Vec<flare_core::protocol::NodeLine>,
    timeout: Duration,
    tx: mpsc::UnboundedSender<Input>,
) {
    let ok = tokio::time::timeout(timeout, async {
        let (host, port) = split_node(&node).ok_or_else(|| io::Error::other("bad node key"))?;
        let mut s = net.connect(host, port).await?;
        let mut msg = BytesMut::from(format!("node sync {version}\r\n").as_bytes());
        for l in &nodes {
            msg.extend_from_slice(format!("{l}\r\n").as_bytes());
        }
        lines::put_end(&mut msg);
        s.write_all(&msg).await?;
        let ok = matches!(read_reply(&mut s, Limits::default(), ReplyKind::Line).await?.first(), Some(ReplyEvent::Line(l)) if &l[..] == b"OK");
        let _ = s.write_all(b"quit\r\n").await;
        Ok::<_, io::Error>(ok)
    })
    .await;
    let _ = tx.send(Input::Push {
        node,
        version,
        ok: matches!(ok, Ok(Ok(true))),
    });
}

fn accept<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
    ctx: &Arc<Ctx>,
    mut stream: S,
    peer: SocketAddr,
) {
    if ctx.connections.load(Relaxed) >= ctx.max_connection.load(Relaxed) {
        tracing::warn!(%peer, "max-connection reached, refusing a new connection");
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let refuse = flare_core::protocol::response::TOO_MANY_CONNECTIONS;
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(refuse)).await;
        });
        return;
    }
    ctx.connections.fetch_add(1, Relaxed);
    ctx.total_connections.fetch_add(1, Relaxed);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let (tx, rx) = oneshot::channel();
        if ctx.inputs.send(Input::Open(tx)).is_ok() {
            if let Ok(conn) = rx.await {
                let (kill_tx, kill_rx) = watch::channel(false);
                ctx.kills
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(conn.0, kill_tx);
                ctx.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    conn.0,
                    ThreadRow {
                        id: conn.0,
                        thread_type: 1,
                        peer: peer.to_string(),
                        op: String::new(),
                        uptime: 0,
                        state: "wait",
                        info: String::new(),
                        queue: 0,
                        behind: 0,
                    },
                );
                if let Err(e) = serve(&ctx, conn, peer, stream, kill_rx).await {
                    tracing::debug!(%peer, error = %e, "index connection ended with an error");
                }
                ctx.kills
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&conn.0);
                ctx.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&conn.0);
                let _ = ctx.inputs.send(Input::Closed(conn));
            }
        }
        ctx.connections.fetch_sub(1, Relaxed);
    });
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ctx: &Ctx,
    conn: ConnId,
    peer: SocketAddr,
    mut stream: S,
    mut kill: watch::Receiver<bool>,
) -> io::Result<()> {
    // No `index raft` block is buffered before the connection said `index peer` and was answered `OK`.
    let mut parser = AdminParser::new(ctx.settings.line_max).with_raft_message_max(0);
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::new();
    // The node whose session this connection is (it registered, or said `node session`, on it).
    let mut session: Option<String> = None;
    // Whether the node ended the connection (end of file, reset, `quit`), not this server (read timeout, `kill`):
    // only then does the lease granted on it end at once (core::index::lease).
    let mut by_peer = false;
    let result = async {
        loop {
            while let Some(parsed) = parser.parse(&mut rbuf) {
                let (reply, close) = match parsed {
                    AdminParsed::Close => {
                        by_peer = true;
                        return Ok(());
                    }
                    AdminParsed::Error { error, close } => (Reply::Error(error), close),
                    AdminParsed::Command(AdminCommand::Index(command))
                        if (command.changes_map()
                            || matches!(
                                command,
                                IndexCommand::IndexPeer(_) | IndexCommand::IndexRaft(_)
                            ))
                            && !ctx.internal_allowed(peer.ip()) =>
                    {
                        tracing::warn!(%peer, "map-changing command refused (internal-netmask)");
                        (
                            Reply::Error(flare_core::protocol::ErrorReply::Client(
                                "command not allowed from this address".into(),
                            )),
                            false,
                        )
                    }
                    AdminParsed::Command(AdminCommand::Index(command)) => {
                        let node = match &command {
                            IndexCommand::NodeAdd(n) | IndexCommand::NodeSession(n) => {
                                Some(n.key())
                            }
                            _ => None,
                        };
                        let peer_hello = matches!(command, IndexCommand::IndexPeer(_));
                        let (tx, rx) = oneshot::channel();
                        if let Some(row) = ctx
                            .conns
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_mut(&conn.0)
                        {
                            row.op = AdminCommand::Index(command.clone()).op_name().to_string();
                        }
                        ctx.inputs
                            .send(Input::Command {
                                conn,
                                command,
                                reply: tx,
                            })
                            .map_err(|_| io::Error::other("index stopped"))?;
                        let (reply, close) =
                            rx.await.map_err(|_| io::Error::other("index stopped"))?;
                        if peer_hello && reply == Reply::Ok {
                            parser.set_raft_message_max(Limits::default().raft_message_max);
                        }
                        if node.is_some() && !matches!(reply, Reply::Error(_)) {
                            session = node;
                        }
                        (reply, close)
                    }
                    AdminParsed::Command(AdminCommand::Server(q)) => (query(ctx, q).await?, false),
                };
                encode_text(&reply, &mut wbuf);
                stream.write_all(&wbuf).await?;
                wbuf.clear();
                if close {
                    return Ok(());
                }
            }
            let timeout = match ctx.settings.net_read_timeout {
                d if d.is_zero() => Duration::from_secs(86_400),
                d => d,
            };
            tokio::select! {
                _ = kill.changed() => return Ok(()),
                read = tokio::time::timeout(timeout, stream.read_buf(&mut rbuf)) => match read {
                    Err(_) => return Ok(()),
                    Ok(Ok(0)) => {
                        by_peer = true;
                        return Ok(());
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        by_peer = true;
                        return Err(e);
                    }
                },
            }
        }
    }
    .await;
    // A failed write is a reset by the node too.
    by_peer |= matches!(&result, Err(e) if e.kind() != io::ErrorKind::Other);
    if let Some(node) = session {
        let _ = ctx.inputs.send(Input::SessionLost {
            node,
            conn,
            by_peer,
        });
    }
    result
}

async fn query(ctx: &Ctx, q: ServerQuery) -> io::Result<Reply> {
    Ok(match q {
        ServerQuery::Version => Reply::Version(ctx.settings.version_string.clone()),
        ServerQuery::ShowVariables => Reply::Lines(ctx.settings.show_variables.clone()),
        ServerQuery::StatsSettings => Reply::Stats(ctx.settings.settings.clone()),
        ServerQuery::Stats => Reply::Stats(general_stats(ctx)),
        ServerQuery::StatsThreads(group) => {
            let rows: Vec<ThreadRow> = ctx
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            let (tx, rx) = oneshot::channel();
            ctx.inputs
                .send(Input::Threads {
                    group,
                    rows,
                    reply: tx,
                })
                .map_err(|_| io::Error::other("index stopped"))?;
            rx.await.map_err(|_| io::Error::other("index stopped"))?
        }
    })
}

/// `stats` on the index (stats.md §1, index column): the same fields as a node, data counters at 0.
fn general_stats(ctx: &Ctx) -> Vec<(String, String)> {
    let (user, system) = rusage();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut s: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| s.push((k.into(), v));
    put("pid", std::process::id().to_string());
    put("uptime", ctx.started.elapsed().as_secs().to_string());
    put("time", now.to_string());
    put("version", flare_core::VERSION.to_string());
    put("pointer_size", usize::BITS.to_string());
    put("rusage_user", user);
    put("rusage_system", system);
    for zero in ["curr_items", "total_items", "bytes"] {
        put(zero, "0".into());
    }
    put(
        "curr_connections",
        ctx.connections.load(Relaxed).to_string(),
    );
    put(
        "total_connections",
        ctx.total_connections.load(Relaxed).to_string(),
    );
    for zero in [
        "connection_structures",
        "cmd_get",
        "cmd_set",
        "get_hits",
        "get_misses",
        "delete_hits",
        "delete_misses",
        "incr_hits",
        "incr_misses",
        "decr_hits",
        "decr_misses",
        "cas_hits",
        "cas_misses",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "evictions",
        "bytes_read",
        "bytes_written",
        "limit_maxbytes",
    ] {
        put(zero, "0".into());
    }
    put("threads", (ctx.connections.load(Relaxed) + 1).to_string());
    put("pool_threads", "0".into());
    put(
        "node_map_version",
        ctx.map_version.load(Relaxed).to_string(),
    );
    let status = ctx.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    put("index_role", status.role.name().to_string());
    put("index_term", status.term.to_string());
    put("index_leader", status.leader.unwrap_or_else(|| "-".into()));
    put("index_applied", status.applied.to_string());
    put("index_members", status.members.join(","));
    put("server_version", format!("flare-{}", flare_core::VERSION));
    s
}

/// What the index's `/metrics` shows: the node map (every node's role, state, partition and balance), its version and
/// changes, connections.
fn index_metrics(
    ctx: &Ctx,
    enc: &mut prometheus_client::encoding::DescriptorEncoder,
) -> std::fmt::Result {
    use crate::metrics::{counter, gauge, gauge_family};
    let map = ctx.map.lock().unwrap_or_else(|e| e.into_inner()).clone();
    gauge(
        enc,
        "flare_index_up",
        "1 while the index server serves",
        1u64,
    )?;
    gauge(
        enc,
        "flare_index_uptime_seconds",
        "Seconds since start",
        ctx.started.elapsed().as_secs(),
    )?;
    gauge(
        enc,
        "flare_node_map_version",
        "Version of the node map",
        map.version,
    )?;
    counter(
        enc,
        "flare_index_map_changes",
        "Node-map changes persisted since start",
        ctx.map_changes.load(Relaxed),
    )?;
    let nodes: Vec<_> = map
        .nodes
        .values()
        .map(|r| {
            (
                [
                    ("node", r.key()),
                    ("role", r.role.name().to_string()),
                    ("state", r.state.name().to_string()),
                    (
                        "partition",
                        r.partition.map_or_else(|| "-1".into(), |p| p.to_string()),
                    ),
                ],
                1u64,
            )
        })
        .collect();
    gauge_family(
        enc,
        "flare_index_node_info",
        "Every node of the map with its role, state and partition (value 1)",
        &nodes,
    )?;
    let balance: Vec<_> = map
        .nodes
        .values()
        .map(|r| ([("node", r.key())], u64::from(r.balance)))
        .collect();
    gauge_family(
        enc,
        "flare_index_node_balance",
        "Read balance of every node",
        &balance,
    )?;
    let mut by_state = std::collections::BTreeMap::<(&str, &str), u64>::new();
    for r in map.nodes.values() {
        *by_state.entry((r.role.name(), r.state.name())).or_default() += 1;
    }
    let by_state: Vec<_> = by_state
        .into_iter()
        .map(|((role, state), n)| ([("role", role), ("state", state)], n))
        .collect();
    gauge_family(
        enc,
        "flare_index_nodes",
        "Nodes by role and state",
        &by_state,
    )?;
    let partitions = map
        .nodes
        .values()
        .filter(|r| r.role == flare_core::node_map::Role::Master)
        .filter_map(|r| r.partition)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    gauge(
        enc,
        "flare_partitions",
        "Partitions that have a master",
        partitions as u64,
    )?;
    gauge(
        enc,
        "flare_index_connections",
        "Admin and node connections open",
        ctx.connections.load(Relaxed) as u64,
    )?;
    counter(
        enc,
        "flare_index_connections_accepted",
        "Connections accepted since start",
        ctx.total_connections.load(Relaxed),
    )?;
    crate::metrics::process(enc, ctx.started.elapsed())
}
