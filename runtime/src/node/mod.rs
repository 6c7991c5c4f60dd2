//! The `flared` node driver: accepts connections, feeds bytes to the core
//! [`Decoder`](flare_core::protocol::Decoder), runs requests with [`flare_core::exec::execute`], writes encoded
//! replies, and does what only a driver can do: process stats, dump streams, the expiry sweeper, group commit
//! ([`crate::util::GroupCommit`]), graceful shutdown.
//!
//! The driver is generic over [`Net`] (tokio in production, turmoil in the simulation) and over the storage engine
//! (RocksDB in production, the in-memory engine in the simulation and unit tests). It makes no protocol decision:
//! what a command means is in `core`.
//!
//! Run loop of one connection ([`conn`]): read → decode every whole request in the buffer → execute → encode into
//! one write buffer → (group commit: wait for the WAL fsync that covers the batch's writes) → write. Pipelined
//! requests therefore share one `write` syscall.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use flare_core::protocol::text::Dialect;
use flare_core::protocol::Limits;
use flare_core::storage::Storage;
use flare_core::store::Store;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::net::{Listener, Net};
use crate::util::GroupCommit;

pub mod cluster;
mod conn;
mod dump;
pub mod metrics;
pub mod peers;
mod route;
pub mod stats;

use stats::{Counters, Registry};

/// Settings of a node server that the driver needs (built from the node configuration).
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Parser limits.
    pub limits: Limits,
    /// Text-dialect switches (Flare's gat, Flare's incr).
    pub dialect: Dialect,
    /// The text after `VERSION ` (`version-string`), e.g. `2.0.0`.
    pub version_string: String,
    /// Background expiry sweep interval; zero = off.
    pub expiry_sweep_interval: Duration,
    /// Acknowledge writes only after a batched WAL fsync (`storage-sync = group`).
    pub group_commit: bool,
    /// Accept Flare's explicit `<version>` token from plain (unproxied) clients (`allow-client-version`).
    pub allow_client_version: bool,
    /// `show variables` lines.
    pub show_variables: Vec<String>,
    /// `stats settings` pairs.
    pub settings: Vec<(String, String)>,
    /// `replication-type = sync`: writes without `sync`/`async` wait for their slaves.
    pub sync_default: bool,
    /// `internal-netmask` at start (SIGHUP replaces [`DynamicSettings::internal_netmask`]).
    pub internal_netmask: Vec<flare_core::config::Cidr>,
}

/// Settings that SIGHUP may change while running.
#[derive(Debug)]
pub struct DynamicSettings {
    /// `max-connection`.
    pub max_connection: AtomicUsize,
    /// `net-read-timeout` in milliseconds.
    pub net_read_timeout_ms: AtomicU64,
    /// `internal-netmask`: the address ranges internal commands are accepted from; empty = any.
    pub internal_netmask: std::sync::RwLock<Arc<Vec<flare_core::config::Cidr>>>,
}

impl DynamicSettings {
    /// Whether `peer` may send internal commands now ([`flare_core::node::admit::internal_allowed`]).
    pub fn internal_allowed(&self, peer: std::net::IpAddr) -> bool {
        let masks = self
            .internal_netmask
            .read()
            .unwrap_or_else(|e| e.into_inner());
        flare_core::node::admit::internal_allowed(&masks, peer)
    }
}

/// State shared by every connection of one node.
pub struct Shared<N: Net, S: Storage> {
    /// The store.
    pub store: Store<S>,
    /// Static settings.
    pub settings: NodeSettings,
    /// Reloadable settings.
    pub dynamic: DynamicSettings,
    /// `stats` counters.
    pub counters: Counters,
    /// Requests by command and result, and their latencies (`/metrics`).
    pub ops: crate::metrics::OpMetrics,
    /// Open connections.
    pub registry: Registry,
    /// The cluster side: node map, peers, replication, reconstruction.
    pub cluster: cluster::Cluster<N>,
    pub(crate) net: N,
    started: Instant,
    unhealthy: AtomicBool,
    group: Option<GroupCommit>,
    shutdown: watch::Sender<bool>,
}

/// A bound node server.
pub struct NodeServer<N: Net, S: Storage + 'static> {
    shared: Arc<Shared<N, S>>,
    listener: N::Listener,
}

impl<N: Net, S: Storage + 'static> NodeServer<N, S> {
    /// Binds the listener and, when index servers are configured, registers with one (cluster.md §4.1: the
    /// machine retries a few times, 0.5 s apart) and adopts the map and partition parameters it answers with. A
    /// standalone node is the master of partition 0 on its own. Nothing is served until [`NodeServer::run`].
    pub async fn start(
        net: N,
        store: Store<S>,
        settings: NodeSettings,
        cluster: cluster::ClusterSettings,
        max_connection: usize,
        net_read_timeout: Duration,
    ) -> io::Result<Self> {
        let listener = net.bind(settings.listen).await?;
        let group = settings.group_commit.then(GroupCommit::default);
        let cluster =
            cluster::Cluster::new(net.clone(), cluster, settings.limits, settings.sync_default);
        let shared = Arc::new(Shared {
            store,
            dynamic: DynamicSettings {
                max_connection: AtomicUsize::new(max_connection),
                net_read_timeout_ms: AtomicU64::new(net_read_timeout.as_millis() as u64),
                internal_netmask: std::sync::RwLock::new(Arc::new(
                    settings.internal_netmask.clone(),
                )),
            },
            settings,
            counters: Counters::default(),
            ops: Default::default(),
            registry: Registry::default(),
            cluster,
            net,
            started: Instant::now(),
            unhealthy: AtomicBool::new(false),
            group,
            shutdown: watch::channel(false).0,
        });
        cluster::start(&shared);
        cluster::registered(&shared).await?;
        Ok(NodeServer { shared, listener })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Shared state, for reloads and tests.
    pub fn shared(&self) -> Arc<Shared<N, S>> {
        self.shared.clone()
    }

    /// Serves until `stop` resolves, then shuts down gracefully: stops accepting, lets every connection answer the
    /// requests it has already read (for at most `drain`), and syncs storage.
    pub async fn run(
        mut self,
        stop: impl std::future::Future<Output = ()>,
        drain: Duration,
    ) -> io::Result<()> {
        let shared = self.shared.clone();
        let mut background = Vec::new();
        if !shared.settings.expiry_sweep_interval.is_zero() {
            background.push(tokio::spawn(sweeper(shared.clone())));
        }
        if shared.group.is_some() {
            background.push(tokio::spawn(group_syncer(shared.clone())));
        }
        background.push(tokio::spawn(clock_tick(shared.clone())));
        background.push(tokio::spawn(idle_sweeper(shared.clone())));
        let stop = async {
            stop.await;
            // A cluster node tells the index it is going (cluster.md §5.5) before it stops serving.
            cluster::shutdown(&shared).await;
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => conn::accept(&shared, stream, peer),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        tracing::info!(
            connections = shared.registry.len(),
            "shutting down: draining connections"
        );
        let _ = shared.shutdown.send(true);
        let deadline = Instant::now() + drain;
        while !shared.registry.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for task in background {
            task.abort();
        }
        shared.store.storage().sync().map_err(io::Error::other)?;
        tracing::info!("storage synced, stopped");
        Ok(())
    }
}

impl<N: Net, S: Storage> Shared<N, S> {
    /// Current Unix time in seconds.
    pub fn now(&self) -> u64 {
        self.net.unix_time()
    }

    /// Seconds since the server started.
    pub fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Marks the node unhealthy: `ping` answers `SERVER_ERROR storage error` (cluster.md §5.3).
    pub fn set_unhealthy(&self) {
        self.unhealthy.store(true, Relaxed);
    }

    /// False once a storage failure was seen.
    pub fn healthy(&self) -> bool {
        !self.unhealthy.load(Relaxed)
    }

    /// Waits until every write made before this call is fsynced (group commit); returns at once otherwise.
    pub async fn wait_durable(&self) -> io::Result<()> {
        match &self.group {
            Some(g) => g.wait().await,
            None => Ok(()),
        }
    }
}

/// Group commit loop: fsync the WAL whenever writers wait ([`GroupCommit::run`]), until an fsync fails.
async fn group_syncer<N: Net, S: Storage + 'static>(shared: Arc<Shared<N, S>>) {
    let Some(g) = &shared.group else { return };
    g.run(|| {
        let s = shared.clone();
        async move {
            matches!(
                tokio::task::spawn_blocking(move || s.store.storage().sync()).await,
                Ok(Ok(()))
            )
        }
    })
    .await;
    tracing::error!("group commit: WAL fsync failed; node marked unhealthy");
    shared.set_unhealthy();
}

/// Runs a delayed `flush_all` when it is due even if no request comes (the store also checks on every access).
async fn clock_tick<N: Net, S: Storage + 'static>(shared: Arc<Shared<N, S>>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = shared.store.maybe_flush(shared.now()) {
            tracing::error!(error = %e, "delayed flush_all failed");
            shared.set_unhealthy();
        }
    }
}

/// Closes connections that received nothing for `net-read-timeout` (0 = never), checking once a second.
async fn idle_sweeper<N: Net, S: Storage + 'static>(shared: Arc<Shared<N, S>>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let timeout = Duration::from_millis(shared.dynamic.net_read_timeout_ms.load(Relaxed));
        let closed = shared.registry.close_idle(Instant::now(), timeout);
        if closed > 0 {
            tracing::debug!(closed, "net-read-timeout: closed idle connections");
        }
    }
}

/// Background expiry sweeper (protocol.md §3 [Improve]): walks the store in small batches, turning expired items
/// into tombstones and dropping old tombstones, then sleeps for the configured interval.
async fn sweeper<N: Net, S: Storage + 'static>(shared: Arc<Shared<N, S>>) {
    let interval = shared.settings.expiry_sweep_interval;
    loop {
        tokio::time::sleep(interval).await;
        let mut cursor: Option<bytes::Bytes> = None;
        let (mut expired, mut dropped) = (0, 0);
        loop {
            match shared.store.sweep(cursor.as_deref(), 256, shared.now()) {
                Ok(p) => {
                    expired += p.expired;
                    dropped += p.tombstones_dropped;
                    match p.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "expiry sweep failed");
                    shared.set_unhealthy();
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        if expired + dropped > 0 {
            tracing::debug!(expired, tombstones_dropped = dropped, "expiry sweep done");
        }
    }
}
