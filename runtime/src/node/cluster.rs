//! The cluster side of a node's driver: the node map it holds (swapped whole on each `node sync`), registration with
//! the index server, replication to slaves, and reconstruction (pulling a partition's data with `dump`).
//! Every decision (who is master, where a key goes, what a replicated message says) is made by
//! `flare_core::node`; this module only moves bytes and runs tasks.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flare_core::exec::Mutation;
use flare_core::item::Item;
use flare_core::keys::{HashAlgorithm, PartitionParams, Resolver};
use flare_core::node::replication::{
    encode_replica, Answer, ChangeKind, ReplicationSender, SenderStats,
};
use flare_core::node::view::ClusterView;
use flare_core::node_map::{NodeMap, Role, State};
use flare_core::protocol::reply::{ReplyEvent, ReplyKind, ReplyReader};
use flare_core::protocol::text::{parse_node_line, parse_u64};
use flare_core::protocol::{Limits, NodeLine, ProxyPath};
use flare_core::storage::Storage;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};
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
    /// Seed of the random choice of read replicas (deterministic in the simulation).
    pub seed: u64,
    /// `cluster-secret`: sent with `auth` before the map-changing commands this node sends the index; empty = none.
    pub cluster_secret: String,
}

impl ClusterSettings {
    /// `name:port`, this node's key.
    pub fn self_key(&self) -> String {
        format!("{}:{}", self.server_name, self.server_port)
    }
}

/// Replication towards one target node.
struct Target {
    sender: Mutex<ReplicationSender>,
    wake: Notify,
    acked: watch::Sender<u64>,
    stop: AtomicBool,
}

/// Progress of a reconstruction (shown by `stats`).
#[derive(Clone, Debug, Default)]
pub struct Reconstruction {
    /// Items received from dumps.
    pub items: u64,
    /// Items the sources reported (`curr_items`) at the start; 0 when unknown.
    pub total: u64,
    /// True while a reconstruction runs.
    pub running: bool,
    /// Counts the reconstructions started; one that sees a newer one started stops without reporting.
    pub generation: u64,
}

/// How long a dump being pulled may stay silent (at least; 10 × proxy-timeout if longer) before the copy fails.
const DUMP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a new reconstruction: its progress reset, the one still running (if any) superseded. Returns its generation.
fn begin_reconstruction<N: Net>(cluster: &Cluster<N>) -> u64 {
    let mut r = cluster
        .reconstruction
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *r = Reconstruction {
        running: true,
        generation: r.generation + 1,
        ..Default::default()
    };
    r.generation
}

/// Whether reconstruction `generation` is still the current one.
fn current_reconstruction<N: Net>(cluster: &Cluster<N>, generation: u64) -> bool {
    cluster
        .reconstruction
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .generation
        == generation
}

/// The cluster state shared by a node's connections and tasks.
pub struct Cluster<N: Net> {
    /// Static settings.
    pub settings: ClusterSettings,
    /// `replication-type = sync` (reloadable).
    pub sync_default: AtomicBool,
    view: RwLock<Arc<ClusterView>>,
    /// Connections to peers for forwarded requests.
    pub peers: Peers<N>,
    targets: Mutex<BTreeMap<String, Arc<Target>>>,
    seq: AtomicU64,
    rng: Mutex<rand::rngs::StdRng>,
    /// Highest replication sequence number applied from our master (this node as a slave).
    pub applied_seq: AtomicU64,
    /// Reconstruction progress.
    pub reconstruction: Mutex<Reconstruction>,
}

impl<N: Net> Cluster<N> {
    /// The cluster side of a node, starting with `view`.
    pub fn new(
        net: N,
        settings: ClusterSettings,
        view: ClusterView,
        limits: Limits,
        sync_default: bool,
    ) -> Self {
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
            view: RwLock::new(Arc::new(view)),
            targets: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
            applied_seq: AtomicU64::new(0),
            reconstruction: Mutex::new(Reconstruction::default()),
        }
    }

    /// Replaces the view (after registration).
    pub fn set_view(&self, view: ClusterView) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A random number for choosing read replicas.
    pub fn pick(&self) -> u32 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).random()
    }

    /// Replication counters per target, for `stats`.
    pub fn replication_stats(&self, now: std::time::Instant) -> Vec<(String, SenderStats)> {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = targets
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    t.sender
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .stats(now),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// What a local write must wait for before it is acknowledged: each sync target and the sequence number it must
/// acknowledge.
pub type SyncWaits = Vec<(Arc<watch::Sender<u64>>, u64)>;

/// Queues the replication of `mutations` (made by a local write) to every target the view names, and returns what a
/// sync write waits for: the active slaves (the preparing master is never waited for, cluster.md §8.2). A target
/// whose backlog is full gets nothing and is counted as a failure; a sync write then fails.
pub fn replicate<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    mutations: &[Mutation],
    sync: bool,
) -> Result<Vec<(String, u64)>, String> {
    let cluster = &shared.cluster;
    let view = cluster.view();
    let mut waits = Vec::new();
    let mut failed = None;
    for m in mutations {
        let (replicas, key) = match m.key() {
            Some(k) => (view.replicas(k), k.clone()),
            None => (view.flush_replicas(), Bytes::new()),
        };
        if replicas.is_empty() {
            continue;
        }
        let seq = cluster.seq.fetch_add(1, Relaxed) + 1;
        let kind = match m {
            Mutation::Touch { .. } => ChangeKind::Touch,
            Mutation::Flush { at } => ChangeKind::Flush(at.unwrap_or(0)),
            _ => ChangeKind::Write,
        };
        let now = Instant::now().into_std();
        let preparing = replicas.preparing_master.iter().map(|k| (k, false));
        for (target, active) in replicas
            .slaves
            .iter()
            .map(|(k, a)| (k, *a))
            .chain(preparing)
        {
            let t = ensure_target(shared, target);
            let queued = t.sender.lock().unwrap_or_else(|e| e.into_inner()).enqueue(
                now,
                seq,
                key.clone(),
                kind,
            );
            t.wake.notify_one();
            match queued {
                Ok(()) if sync && active => waits.push((target.clone(), seq)),
                Ok(()) => {}
                Err(_) => {
                    tracing::warn!(target, "replication backlog full: the target diverges");
                    failed = Some(target.clone());
                }
            }
        }
    }
    match failed {
        Some(t) if sync => Err(t),
        _ => Ok(waits),
    }
}

/// Waits until every target acknowledged its sequence number, for at most the proxy timeout. False when one did
/// not (it is down or too far behind): the sync write is then answered `SERVER_ERROR replication failed`.
pub async fn wait_replicated<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    waits: &[(String, u64)],
) -> bool {
    let deadline = Instant::now() + shared.cluster.settings.proxy_timeout;
    for (target, seq) in waits {
        let Some(t) = shared
            .cluster
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .cloned()
        else {
            return false;
        };
        let mut acked = t.acked.subscribe();
        let ok = tokio::time::timeout_at(deadline, acked.wait_for(|a| a >= seq)).await;
        if !matches!(ok, Ok(Ok(_))) {
            return false;
        }
    }
    true
}

fn ensure_target<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    target: &str,
) -> Arc<Target> {
    let mut targets = shared
        .cluster
        .targets
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(t) = targets.get(target) {
        return t.clone();
    }
    let t = Arc::new(Target {
        sender: Mutex::new(ReplicationSender::new(
            shared.cluster.settings.replication_backlog,
            256,
        )),
        wake: Notify::new(),
        acked: watch::channel(0).0,
        stop: AtomicBool::new(false),
    });
    targets.insert(target.to_string(), t.clone());
    tokio::spawn(target_task(shared.clone(), target.to_string(), t.clone()));
    t
}

/// Streams replication to one target: (re)connects with back-off, sends every queued entry built from the key's
/// current state, and feeds the answers back to the sender.
async fn target_task<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    node: String,
    t: Arc<Target>,
) {
    let mut backoff = Duration::from_millis(50);
    while !t.stop.load(Relaxed) {
        let Some((host, port)) = split_node(&node) else {
            return;
        };
        match shared.net.connect(host, port).await {
            Ok(stream) => {
                backoff = Duration::from_millis(50);
                t.sender
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .handle_connected();
                if let Err(e) = stream_to(&shared, &node, &t, stream).await {
                    tracing::debug!(node, error = %e, "replication connection ended");
                }
                t.sender
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .handle_disconnect();
            }
            Err(e) => tracing::debug!(node, error = %e, "replication target unreachable"),
        }
        if t.stop.load(Relaxed) {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn stream_to<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    node: &str,
    t: &Target,
    mut stream: N::Stream,
) -> io::Result<()> {
    let self_key = shared.cluster.settings.self_key();
    let mut reader = ReplyReader::new(shared.settings.limits);
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::new();
    // The last time the target answered, or the stream had nothing in flight. A target that leaves messages
    // unanswered for `stall` is gone or hung behind a connection that lost packets: reconnect and resend, instead
    // of waiting on that connection forever (every later sync write would fail, and the slave fall behind).
    let stall = shared.cluster.settings.proxy_timeout * 3;
    let mut progress = Instant::now();
    loop {
        if t.stop.load(Relaxed) {
            return Ok(());
        }
        let (pause, in_flight) = {
            let mut sender = t.sender.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now().into_std();
            if sender.stats(now).in_flight == 0 {
                progress = Instant::now();
            }
            while let Some(q) = sender.poll_send(now) {
                let entry = match q.kind.reads_key() {
                    true => shared
                        .store
                        .storage()
                        .get(&q.key)
                        .map_err(io::Error::other)?,
                    false => None,
                };
                let path = ProxyPath(vec![Bytes::from(format!("{self_key}#{}", q.seq))]);
                match encode_replica(&path, &q.key, entry.as_ref(), q.kind) {
                    Some(msg) => wbuf.extend_from_slice(&msg),
                    // The record is gone (a swept tombstone): nothing to send, but every entry gets one answer, so
                    // send a no-op (`version`), whose answer counts as done.
                    None => wbuf.extend_from_slice(b"version\r\n"),
                }
            }
            (sender.poll_timeout(), sender.stats(now).in_flight > 0)
        };
        if !wbuf.is_empty() {
            tokio::time::timeout(stall, stream.write_all(&wbuf))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, format!("{node} does not read"))
                })??;
            wbuf.clear();
        }
        let stalled = async {
            match in_flight {
                true => tokio::time::sleep_until(progress + stall).await,
                false => std::future::pending().await,
            }
        };
        let sleep = async {
            match pause {
                Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = t.wake.notified() => {}
            _ = sleep => {}
            _ = stalled => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{node} stopped answering")));
            }
            read = stream.read_buf(&mut rbuf) => {
                if read? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{node} closed")));
                }
                progress = Instant::now();
                while let Some(event) = reader.next(&mut rbuf, ReplyKind::Line).map_err(io::Error::other)? {
                    let ReplyEvent::Line(line) = event else { continue };
                    let line: &[u8] = &line;
                    let now = Instant::now().into_std();
                    let answer = t.sender.lock().unwrap_or_else(|e| e.into_inner()).handle_reply(now, line);
                    match answer {
                        Answer::Acked(seq) | Answer::Dropped(seq) => {
                            t.acked.send_replace(seq);
                        }
                        Answer::Retry => {
                            tracing::debug!(node, line = %String::from_utf8_lossy(line), "replication refused; retrying");
                        }
                        Answer::Unexpected => {
                            return Err(io::Error::other(format!("unexpected answer from {node}")));
                        }
                    }
                }
            }
        }
    }
}

/// Stops replicating to nodes that are no longer targets of anything this node replicates.
fn retain_targets<N: Net>(cluster: &Cluster<N>, view: &ClusterView) {
    let me = view.self_key();
    let mut wanted = std::collections::BTreeSet::new();
    let parts = view.partitions();
    for part in parts.active.iter().chain(parts.preparing.iter()) {
        if part.master.as_deref() == Some(me) {
            wanted.extend(part.slaves.iter().cloned());
        }
    }
    if let Some(prep) = parts.preparing.as_ref().and_then(|p| p.master.clone()) {
        wanted.insert(prep);
    }
    let mut targets = cluster.targets.lock().unwrap_or_else(|e| e.into_inner());
    targets.retain(|k, t| {
        let keep = wanted.contains(k);
        if !keep {
            t.stop.store(true, Relaxed);
            t.wake.notify_one();
        }
        keep
    });
}

/// `node sync <version>` from the index server (protocol.md §5.7): applies a map no older than ours, and reacts to
/// this node's own record changing. Returns the reply line.
pub fn apply_node_sync<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    version: u64,
    lines: &[NodeLine],
) -> Result<(), &'static str> {
    let cluster = &shared.cluster;
    let Some(mut map) = NodeMap::from_lines(version, lines) else {
        return Err("CLIENT_ERROR format error");
    };
    map.version = version;
    let old = cluster.view();
    if !old.accepts_version(version) || old.is_standalone() {
        return Err("SERVER_ERROR node sync error");
    }
    let view = match old.with_map(map) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, version, "inconsistent node map refused; keeping the previous one");
            return Err("SERVER_ERROR node sync error");
        }
    };
    let before = old.me().map(|r| (r.role, r.state, r.partition));
    let after = view.me().map(|r| (r.role, r.state, r.partition));
    let rebuild = old.starts_reconstruction(&view);
    // The copy about to start supersedes any still running (its progress too: tools poll it as soon as they see
    // `prepare`). A node that is about to copy a partition starts empty: whatever it holds is stale (a slave that was
    // down, a deposed master). It is done before the new map is applied, so no replicated write can arrive first:
    // until then this node refuses replication from the master (WriteRoute::NotReplica) and the master retries.
    let generation = rebuild.map(|_| begin_reconstruction(cluster));
    if rebuild.is_some() {
        if let Err(e) = shared.store.flush_all() {
            tracing::error!(error = %e, "could not clear the store before reconstruction");
            cluster
                .reconstruction
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .running = false;
            return Err("SERVER_ERROR node sync error");
        }
    }
    // Before this map takes effect: a master promoted by it versions its writes above its predecessor's.
    shared.store.raise_version_floor(version << 32);
    *cluster.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view.clone());
    retain_targets(cluster, &view);
    cluster.peers.retain(|k| view.node(k).is_some());
    tracing::info!(version, node = %cluster.settings.self_key(), "node map applied");
    if let (Some(generation), Some((role, p))) = (generation, rebuild) {
        tokio::spawn(reconstruct(shared.clone(), role, p, generation));
    }
    // A new partition was activated: the keys that moved to it leave this node (cluster.md §6.3 [Improve]; Flare
    // leaves them behind). Masters and slaves clean up on their own, so nothing is replicated. A node that was not
    // an active member of its partition when the partition was activated (a preserved master that was down, a node
    // that was still registering) cleans up when it becomes one: the growth's push will not come again.
    if let Some((Role::Master | Role::Slave, State::Active, Some(p))) = after {
        let grew = view.partition_count() > old.partition_count() && !old.is_standalone();
        let joined = !matches!(before, Some((_, State::Active, Some(q))) if q == p);
        if (grew || joined) && view.partition_count() > 1 {
            tokio::spawn(remove_moved_keys(shared.clone(), p));
        }
    }
    Ok(())
}

/// Deletes, in small batches and without replicating, every key this node holds that no longer belongs to its
/// partition `p` under the current map. Runs in the background after a partition is activated.
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
            if view.partition_of(&key) != Some(p)
                && view.my_role().2 == Some(p)
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

/// Keeps a session connection open with the index server (`node session <self>`, then a `ping` a second): when this
/// process dies, the index sees the connection close and probes at once, so a killed master is failed over in well
/// under a second instead of after `monitor-interval` × `monitor-threshold`. Reconnects if the index restarts.
pub async fn session<N: Net, S: Storage + 'static>(shared: Arc<Shared<N, S>>) {
    let s = &shared.cluster.settings;
    let hello = format!("node session {} {}\r\n", s.server_name, s.server_port);
    loop {
        for (host, port) in &s.index_servers {
            let Ok(mut stream) = shared.net.connect(host, *port).await else {
                continue;
            };
            if let Err(e) = authenticate(&shared, &mut stream).await {
                tracing::warn!(error = %e, "index session not opened");
                continue;
            }
            if stream.write_all(hello.as_bytes()).await.is_err() {
                continue;
            }
            let mut ok = matches!(read_reply(&mut stream, shared.settings.limits, ReplyKind::Line).await.as_deref(),
                Ok([ReplyEvent::Line(l)]) if &l[..] == b"OK");
            while ok {
                tokio::time::sleep(Duration::from_secs(1)).await;
                ok = stream.write_all(b"ping\r\n").await.is_ok()
                    && matches!(read_reply(&mut stream, shared.settings.limits, ReplyKind::Line).await.as_deref(),
                        Ok([ReplyEvent::Line(l)]) if &l[..] == b"OK");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After registration: a node whose record is already a slave or master in `prepare` (it was given the role while
/// it was restarting) starts its reconstruction, as a role change from proxy would (cluster.md §4.1 step 4).
pub fn after_registration<N: Net, S: Storage + 'static>(shared: &Arc<Shared<N, S>>) {
    tokio::spawn(session(shared.clone()));
    let view = shared.cluster.view();
    if let Some(r) = view.me() {
        if matches!(r.role, Role::Slave | Role::Master) && r.state == State::Prepare {
            if let Some(p) = r.partition {
                if let Err(e) = shared.store.flush_all() {
                    tracing::error!(error = %e, "could not clear the store before reconstruction");
                    return;
                }
                let generation = begin_reconstruction(&shared.cluster);
                tokio::spawn(reconstruct(shared.clone(), r.role, p, generation));
            }
        }
        // An active master or slave may have missed the activation of a partition (it was down, or crashed while
        // removing the moved keys): the push that triggers the cleanup never comes again, so it runs now.
        if let (Role::Master | Role::Slave, State::Active, Some(p)) = (r.role, r.state, r.partition)
        {
            if view.partition_count() > 1 {
                tokio::spawn(remove_moved_keys(shared.clone(), p));
            }
        }
    }
}

/// Sends one command to an index server and reads its reply of `kind` (a fresh connection per call; the index is
/// asked rarely). Tries each configured index server in turn.
pub async fn index_call<N: Net, S: Storage + 'static>(
    shared: &Shared<N, S>,
    lines: &[&str],
    kind: ReplyKind,
) -> io::Result<Vec<ReplyEvent>> {
    let mut last = io::Error::other("no index server configured");
    for (host, port) in &shared.cluster.settings.index_servers {
        let attempt = tokio::time::timeout(shared.cluster.settings.proxy_timeout * 5, async {
            let mut s = shared.net.connect(host, *port).await?;
            authenticate(shared, &mut s).await?;
            let mut all = Vec::new();
            for line in lines {
                s.write_all(format!("{line}\r\n").as_bytes()).await?;
                all.extend(read_reply(&mut s, shared.settings.limits, kind).await?);
            }
            Ok::<_, io::Error>(all)
        })
        .await;
        match attempt {
            Ok(Ok(events)) => return Ok(events),
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("index server {host}:{port} did not answer"),
                )
            }
        }
    }
    Err(last)
}

/// Sends `auth <cluster-secret>` first when a secret is configured (the index requires it for map changes).
async fn authenticate<N: Net, S: Storage + 'static, T>(
    shared: &Shared<N, S>,
    s: &mut T,
) -> io::Result<()>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let secret = &shared.cluster.settings.cluster_secret;
    if secret.is_empty() {
        return Ok(());
    }
    s.write_all(format!("auth {secret}\r\n").as_bytes()).await?;
    match read_reply(s, shared.settings.limits, ReplyKind::Line)
        .await?
        .first()
    {
        Some(ReplyEvent::Line(l)) if &l[..] == b"OK" => Ok(()),
        Some(ReplyEvent::Line(l)) => Err(io::Error::other(format!(
            "index refused cluster-secret: {}",
            String::from_utf8_lossy(l)
        ))),
        _ => Err(io::Error::other("index: no answer to auth")),
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
                "index server closed the connection",
            ));
        }
    }
}

/// Registers with the index server at start-up (cluster.md §4.1): `node add`, then `meta`, then the map with its
/// version. Returns the partition parameters and the map.
///
/// The `NODE` lines carry no version, and a map of version 0 would accept any `node sync`, however old: a push the
/// index started before this registration (a restarted index pushes its map to every node at once) can arrive after
/// it, and would hand this node its previous role back (an active slave that is now a proxy, serving stale reads).
/// Labelling the reply's map with the `node_map_version` read just after it is not exact either: another change
/// (another node registering, a failover) can come in between, and this node would hold the older map under the
/// newer version until the index pushes it again. So the map is read as `stats nodes` between two `stats`: when both
/// show the same version, that is exactly the map of that version. (If they never agree, the reply's map under the
/// version read after it, which the next push corrects.)
pub async fn register<N: Net, S: Storage + 'static>(
    shared: &Shared<N, S>,
) -> io::Result<(PartitionParams, NodeMap)> {
    let s = &shared.cluster.settings;
    let add = format!("node add {} {}", s.server_name, s.server_port);
    let mut commands = vec![add.as_str(), "meta"];
    commands.extend(VERSIONED_MAP);
    let events = index_call(shared, &commands, ReplyKind::Lines).await?;
    let mut nodes = Vec::new();
    let mut params = PartitionParams::default();
    for e in &events {
        match e {
            ReplyEvent::Item(l) if l.starts_with(b"NODE ") => nodes.push(
                parse_node_line(l)
                    .ok_or_else(|| io::Error::other("malformed NODE line from the index"))?,
            ),
            ReplyEvent::Item(l) if l.starts_with(b"META ") => apply_meta(&mut params, l)?,
            ReplyEvent::Line(l) => {
                return Err(io::Error::other(format!(
                    "index server refused registration: {}",
                    String::from_utf8_lossy(l)
                )))
            }
            _ => {}
        }
    }
    let mut read = versioned_map(&events);
    for _ in 0..3 {
        if let Ok(map) = read {
            return Ok((params, map));
        }
        read = versioned_map(&index_call(shared, &VERSIONED_MAP, ReplyKind::Lines).await?);
    }
    let version = match read {
        Ok(map) => return Ok((params, map)),
        Err(version) => version,
    };
    let map = NodeMap::from_lines(version, &nodes)
        .ok_or_else(|| io::Error::other("malformed node map from the index"))?;
    Ok((params, map))
}

/// `stats nodes` between two `stats`: the map and its exact version ([`versioned_map`]).
const VERSIONED_MAP: [&str; 3] = ["stats", "stats nodes", "stats"];

/// The map of the `stats nodes` between two `node_map_version`s in `events` when they agree; else the later version.
fn versioned_map(events: &[ReplyEvent]) -> Result<NodeMap, u64> {
    let mut versions = Vec::new();
    let mut fields = Vec::new();
    for e in events {
        let ReplyEvent::Item(l) = e else { continue };
        let Some(stat) = l.strip_prefix(b"STAT ") else {
            continue;
        };
        let Ok(stat) = std::str::from_utf8(stat) else {
            continue;
        };
        let Some((field, value)) = stat.split_once(' ') else {
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

fn apply_meta(params: &mut PartitionParams, line: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(line);
    let mut t = text.split_whitespace().skip(1);
    let (Some(name), Some(value)) = (t.next(), t.next()) else {
        return Ok(());
    };
    let num = || parse_u64(value.as_bytes()).and_then(|v| u32::try_from(v).ok());
    match name {
        "partition-size" => params.partition_size = num().unwrap_or(params.partition_size),
        "partition-modular-hint" => params.hint = num().unwrap_or(params.hint),
        "partition-modular-virtual" => params.virtual_slots = num().unwrap_or(params.virtual_slots),
        "key-hash-algorithm" => {
            params.hash = HashAlgorithm::parse(value).ok_or_else(|| {
                io::Error::other(format!("unknown key-hash-algorithm {value} from the index"))
            })?
        }
        _ => {}
    }
    Ok(())
}

/// Builds the view of a freshly registered node.
pub fn initial_view(
    self_key: String,
    params: PartitionParams,
    map: NodeMap,
) -> io::Result<ClusterView> {
    let resolver = Arc::new(Resolver::new(params).map_err(io::Error::other)?);
    ClusterView::from_map(map, self_key, resolver).map_err(io::Error::other)
}

/// Tells the index about this node (`node state <self> active|ready`, `node role <self> proxy 0 -1`,
/// `shutdown <self>`); the answer must be `OK`.
pub async fn tell_index<N: Net, S: Storage + 'static>(
    shared: &Shared<N, S>,
    command: &str,
) -> io::Result<()> {
    let s = &shared.cluster.settings;
    let line = command.replace("<self>", &format!("{} {}", s.server_name, s.server_port));
    match index_call(shared, &[&line], ReplyKind::Line).await?.first() {
        Some(ReplyEvent::Line(l)) if &l[..] == b"OK" => Ok(()),
        Some(ReplyEvent::Line(l)) => Err(io::Error::other(format!(
            "index: {}",
            String::from_utf8_lossy(l)
        ))),
        _ => Err(io::Error::other("index: no answer")),
    }
}

/// Pulls this node's data for its new role (cluster.md §6.2, §6.3): a slave dumps its partition from the master; the
/// master of a preparing partition dumps the keys moving to it from every active master. Reports `active` (slave) or
/// `ready` (new master) to the index when done, or gives the role up (`proxy`) on failure.
///
/// Runs again (from an empty store) when the index, having heard the report, still has this node in `prepare`: it had
/// marked the node down meanwhile (a cut this node did not notice) and took the report for the node coming back, which
/// for a slave means a rebuild (cluster.md §5.4). Stops without reporting when a newer reconstruction started.
async fn reconstruct<N: Net, S: Storage + 'static>(
    shared: Arc<Shared<N, S>>,
    role: Role,
    partition: u32,
    mut generation: u64,
) {
    while let Some(next) = reconstruct_once(&shared, role, partition, generation).await {
        generation = next;
    }
}

async fn reconstruct_once<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    role: Role,
    partition: u32,
    generation: u64,
) -> Option<u64> {
    let view = shared.cluster.view();
    let count = view.partition_count();
    let preparing = partition == count;
    let s = &shared.cluster.settings;
    let sources: Vec<(String, u32, u32, u64)> = match (role, preparing) {
        (Role::Slave, false) => view.partitions().active[partition as usize]
            .master
            .iter()
            .map(|m| (m.clone(), partition, count, s.reconstruction_bwlimit))
            .collect(),
        (Role::Slave, true) => view
            .partitions()
            .preparing
            .iter()
            .filter_map(|p| p.master.clone())
            .map(|m| (m, partition, count + 1, s.reconstruction_bwlimit))
            .collect(),
        (_, _) => {
            let per_source = if s.reconstruction_bwlimit == 0 {
                0
            } else {
                (s.reconstruction_bwlimit / u64::from(count.max(1))).max(1)
            };
            view.partitions()
                .active
                .iter()
                .filter_map(|p| p.master.clone())
                .map(|m| (m, partition, count + 1, per_source))
                .collect()
        }
    };
    tracing::info!(
        ?role,
        partition,
        node = %s.self_key(),
        sources = sources.len(),
        "reconstruction started"
    );
    // A new partition's master copies its share from every active partition's master: one without a live master
    // (the index refuses to start that, but it may fail during the flow) leaves keys it cannot copy, and the old
    // master would drop them once it is back. Give the role up instead.
    let orphan = (role == Role::Master && preparing)
        .then(|| {
            view.partitions()
                .active
                .iter()
                .position(|p| p.master.is_none())
        })
        .flatten();
    if let Some(q) = orphan {
        tracing::error!(
            partition = q,
            "partition has no master to copy from; giving the role up"
        );
    }
    let mut ok = orphan.is_none() && (!sources.is_empty() || role == Role::Master);
    let sources = if ok { sources } else { Vec::new() };
    for (source, p, n, bw) in sources {
        let pulled = match source_knows_me(shared, &source, role, partition).await {
            Ok(()) => {
                let parts = if role == Role::Master {
                    u64::from(n)
                } else {
                    1
                };
                pull_dump(shared, &source, p, n, bw, parts, generation).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = pulled {
            tracing::error!(source, error = %e, "reconstruction failed");
            ok = false;
            break;
        }
    }
    if ok {
        // The copy was written without the write-ahead log (`Store::load_dump_item`): make it durable before the
        // index is told this node holds the partition.
        // Inline: a memtable flush of at most a few write buffers (it blocks this worker briefly; a blocking-pool
        // hand-off would make the simulation's schedule depend on real time).
        if let Err(e) = shared.store.storage().persist_unlogged() {
            tracing::error!(error = %e, "could not make the reconstructed data durable");
            ok = false;
        }
    }
    {
        let mut r = shared
            .cluster
            .reconstruction
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if r.generation != generation {
            tracing::info!("reconstruction superseded by a newer one");
            return None;
        }
        r.running = false;
    }
    let report = match (ok, role) {
        (true, Role::Slave) => "node state <self> active",
        (true, _) => "node state <self> ready",
        (false, _) => "node role <self> proxy 0 -1",
    };
    // The index must hear the report, or it keeps this node in `prepare` for good (the node would neither serve
    // nor be rebuilt). So it is retried, once a second, while the node's record still says it is being built for
    // this role (every report is idempotent on the index).
    loop {
        if !current_reconstruction(&shared.cluster, generation) {
            return None;
        }
        match tell_index(shared, report).await {
            Ok(()) => {
                tracing::info!(report, node = %shared.cluster.settings.self_key(), "reconstruction finished");
                return rebuild_asked(shared, role, partition, generation).await;
            }
            Err(e) => {
                tracing::error!(error = %e, report, "could not report the end of reconstruction; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let building = shared.cluster.view().building(role, partition);
        if !building {
            tracing::info!(
                report,
                "the node's role changed meanwhile; the report is dropped"
            );
            return None;
        }
    }
}

/// After a successful report: once this node holds the index's map of that moment, whether it still shows this node
/// being built (the report was taken for the node coming back from `down`: the index wants it rebuilt). Returns the
/// generation of the new reconstruction then, after emptying the store.
async fn rebuild_asked<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    role: Role,
    partition: u32,
    generation: u64,
) -> Option<u64> {
    let version = index_map_version(shared).await?;
    let deadline = Instant::now() + shared.cluster.settings.proxy_timeout * 10;
    loop {
        let view = shared.cluster.view();
        if view.map().version >= version {
            let building = view.building(role, partition);
            if !building || !current_reconstruction(&shared.cluster, generation) {
                return None;
            }
            tracing::warn!(
                ?role,
                partition,
                "the index marked this node down while it was being built; rebuilding"
            );
            if let Err(e) = shared.store.flush_all() {
                tracing::error!(error = %e, "could not clear the store before reconstruction");
                return None;
            }
            return Some(begin_reconstruction(&shared.cluster));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The index's `node_map_version` now, if it answers.
async fn index_map_version<N: Net, S: Storage + 'static>(shared: &Shared<N, S>) -> Option<u64> {
    let events = index_call(shared, &["stats"], ReplyKind::Lines)
        .await
        .ok()?;
    events.iter().find_map(|e| match e {
        ReplyEvent::Item(l) => l
            .strip_prefix(b"STAT node_map_version ")
            .and_then(parse_u64),
        _ => None,
    })
}

async fn pull_dump<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    source: &str,
    p: u32,
    n: u32,
    bwlimit: u64,
    share: u64,
    generation: u64,
) -> io::Result<()> {
    let (host, port) =
        split_node(source).ok_or_else(|| io::Error::other(format!("bad node key {source}")))?;
    // A source that vanished without a reset (a cut that drops packets, a dead machine) would hold the copy, and the
    // node in `prepare`, forever: the connect, and every read, must make progress within `idle`.
    let idle = DUMP_IDLE_TIMEOUT.max(shared.cluster.settings.proxy_timeout * 10);
    let timed_out = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{source}: no data for {idle:?}"),
        )
    };
    let mut s = tokio::time::timeout(idle, shared.net.connect(host, port))
        .await
        .map_err(|_| timed_out())??;
    // The source's item count gives the progress total: all of it for a slave of its partition, about 1/n of it for
    // the master of a new partition n-1.
    s.write_all(b"stats\r\n").await?;
    let items = tokio::time::timeout(
        idle,
        read_reply(&mut s, shared.settings.limits, ReplyKind::Lines),
    )
    .await
    .map_err(|_| timed_out())??
    .iter()
    .find_map(|e| match e {
        ReplyEvent::Item(l) => l.strip_prefix(b"STAT curr_items ").and_then(parse_u64),
        _ => None,
    });
    shared
        .cluster
        .reconstruction
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .total += items.unwrap_or(0) / share;
    let wait = shared.cluster.settings.reconstruction_interval_us;
    s.write_all(format!("dump {wait} {p} {n} {bwlimit}\r\n").as_bytes())
        .await?;
    let mut reader = ReplyReader::new(shared.settings.limits);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    loop {
        while let Some(event) = reader
            .next(&mut buf, ReplyKind::Values)
            .map_err(io::Error::other)?
        {
            match event {
                ReplyEvent::Value(v) => {
                    let item = Item {
                        flags: v.flags,
                        exptime: v.exptime.unwrap_or(0),
                        version: v.version.unwrap_or(0),
                        value: v.value,
                        meta: 0,
                    };
                    {
                        let mut r = shared
                            .cluster
                            .reconstruction
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        if r.generation != generation {
                            return Err(io::Error::other("superseded by a newer reconstruction"));
                        }
                        r.items += 1;
                    }
                    shared
                        .store
                        .load_dump_item(&v.key, item, shared.now())
                        .map_err(io::Error::other)?;
                }
                ReplyEvent::End => return Ok(()),
                ReplyEvent::Line(l) => {
                    return Err(io::Error::other(format!(
                        "{source}: {}",
                        String::from_utf8_lossy(&l)
                    )))
                }
                _ => {}
            }
        }
        let read = tokio::time::timeout(idle, s.read_buf(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{source} closed the dump"),
            ));
        }
    }
}

/// Waits (up to 5 × proxy-timeout) until `source`'s own map names this node with the `role` and `partition` it is
/// being built for, in a state other than `down`, so that the source replicates (or forwards) every write it runs from then on to this node.
///
/// A dump only copies what the source holds when it is read; the writes after it reach this node only through
/// replication, which the source does only once its map lists this node. The index pushes maps to nodes one by one
/// and some pushes are slow (a held link, a busy node): without this check, a slave could copy its master and report
/// itself active while the master, not yet aware of it, acknowledged sync writes without it. Those writes would be
/// missing on the slave for good, and lost if it was later promoted.
async fn source_knows_me<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    source: &str,
    role: Role,
    partition: u32,
) -> io::Result<()> {
    let (host, port) =
        split_node(source).ok_or_else(|| io::Error::other(format!("bad node key {source}")))?;
    let me = shared.cluster.settings.self_key();
    let (want_role, want_partition) = (
        format!("STAT {me}:role {}", role.name()),
        format!("STAT {me}:partition {partition}"),
    );
    let timeout = shared.cluster.settings.proxy_timeout;
    let deadline = Instant::now() + timeout * 5;
    loop {
        let listed = tokio::time::timeout(timeout, async {
            let mut s = shared.net.connect(host, port).await?;
            s.write_all(b"stats nodes\r\n").await?;
            let events = read_reply(&mut s, shared.settings.limits, ReplyKind::Lines).await?;
            let has = |want: &str| {
                events
                    .iter()
                    .any(|e| matches!(e, ReplyEvent::Item(l) if &l[..] == want.as_bytes()))
            };
            // And not as `down`: a source whose map still has this node down replicates nothing to it.
            let down = format!("STAT {me}:state down");
            Ok::<_, io::Error>(has(&want_role) && has(&want_partition) && !has(&down))
        })
        .await;
        if matches!(listed, Ok(Ok(true))) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "{source} does not list this node as {} of partition {partition}",
                role.name()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
