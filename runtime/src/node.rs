//! The `flared` node driver on tokio: accepts connections, feeds bytes to the core [`Decoder`], runs requests with
//! [`flare_core::exec::execute`], writes encoded replies, and does what only a driver can do (stats of the process,
//! dump streams with throttling, delayed flush, background expiry sweeps, group commit, graceful shutdown).
//!
//! Run loop of one connection: read → decode every whole request in the buffer → execute → encode into one write
//! buffer → (group mode: wait for the WAL fsync that covers the batch's writes) → write → merge counters. Pipelined
//! requests therefore share one `write` syscall. No protocol decision is made here.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use flare_core::exec::{self, Outcome, Tally};
use flare_core::protocol::response::encode;
use flare_core::protocol::{
    Command, Decoded, Decoder, DumpArgs, ErrorReply, Framing, Limits, Reply, StatsGroup,
};
use flare_core::storage::Storage;
use flare_core::store::{self, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::stats::{rusage, ConnInfo, Counters, Registry, ThreadState};

/// Settings of a node server that the driver needs (built from the node configuration).
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Parser limits.
    pub limits: Limits,
    /// Flare's `gat <key> <exptime>` form.
    pub gat_flare_syntax: bool,
    /// The text after `VERSION ` (decisions.md #1), e.g. `flare-2.0.0`.
    pub version_string: String,
    /// Background expiry sweep interval; zero = off.
    pub expiry_sweep_interval: Duration,
    /// Group commit: acknowledge writes only after a batched WAL fsync (`storage-sync = group`).
    pub group_commit: bool,
    /// `show variables` lines.
    pub show_variables: Vec<String>,
    /// `stats settings` lines.
    pub settings: Vec<(String, String)>,
}

/// Settings that SIGHUP may change while running.
#[derive(Debug)]
pub struct DynamicSettings {
    /// `max-connection`.
    pub max_connection: AtomicUsize,
    /// `net-read-timeout` in milliseconds.
    pub net_read_timeout_ms: AtomicU64,
}

/// State shared by every connection of one node.
pub struct Shared<S: Storage> {
    /// The store.
    pub store: Store<S>,
    /// Static settings.
    pub settings: NodeSettings,
    /// Reloadable settings.
    pub dynamic: DynamicSettings,
    /// `stats` counters.
    pub counters: Counters,
    /// Open connections.
    pub registry: Registry,
    started: Instant,
    unhealthy: AtomicBool,
    flush_generation: AtomicU64,
    group: Option<GroupCommit>,
    shutdown: watch::Sender<bool>,
}

/// Batches WAL fsyncs: writers bump `written`, the syncer fsyncs and publishes the covered sequence in `synced`.
struct GroupCommit {
    written: AtomicU64,
    wake: tokio::sync::Notify,
    synced: watch::Sender<u64>,
}

/// A running node: the listener task and its shared state.
pub struct NodeServer<S: Storage + 'static> {
    shared: Arc<Shared<S>>,
    local_addr: SocketAddr,
    listener: TcpListener,
}

impl<S: Storage + 'static> NodeServer<S> {
    /// Binds the listener. Nothing is served until [`NodeServer::run`].
    pub async fn bind(
        store: Store<S>,
        settings: NodeSettings,
        max_connection: usize,
        net_read_timeout: Duration,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        let group = settings.group_commit.then(|| GroupCommit {
            written: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            synced: watch::channel(0).0,
        });
        let shared = Arc::new(Shared {
            store,
            dynamic: DynamicSettings {
                max_connection: AtomicUsize::new(max_connection),
                net_read_timeout_ms: AtomicU64::new(net_read_timeout.as_millis() as u64),
            },
            settings,
            counters: Counters::default(),
            registry: Registry::default(),
            started: Instant::now(),
            unhealthy: AtomicBool::new(false),
            flush_generation: AtomicU64::new(0),
            group,
            shutdown,
        });
        Ok(NodeServer { shared, local_addr, listener })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shared state, for reloads and tests.
    pub fn shared(&self) -> Arc<Shared<S>> {
        self.shared.clone()
    }

    /// Serves until `stop` resolves, then shuts down gracefully: stops accepting, lets connections finish the
    /// requests they have read (up to `drain`), and syncs storage.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>, drain: Duration) -> io::Result<()> {
        let shared = self.shared;
        let mut background = Vec::new();
        if let Some(interval) = Some(shared.settings.expiry_sweep_interval).filter(|d| !d.is_zero()) {
            background.push(tokio::spawn(sweeper(shared.clone(), interval)));
        }
        if shared.group.is_some() {
            background.push(tokio::spawn(group_syncer(shared.clone())));
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => accept(&shared, stream, peer),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        tracing::info!("shutting down: draining {} connection(s)", shared.registry.len());
        let _ = shared.shutdown.send(true);
        let deadline = Instant::now() + drain;
        while !shared.registry.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for task in background {
            task.abort();
        }
        let store_sync = shared.clone();
        tokio::task::spawn_blocking(move || store_sync.store.storage().sync())
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        tracing::info!("storage synced, stopped");
        Ok(())
    }
}

impl<S: Storage> Shared<S> {
    /// Current Unix time in seconds.
    pub fn now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Marks the node unhealthy (ping answers `SERVER_ERROR storage error`, cluster.md §5.3).
    pub fn set_unhealthy(&self) {
        self.unhealthy.store(true, Relaxed);
    }

    fn general_stats(&self) -> Vec<(String, String)> {
        let c = &self.counters;
        let (user, system) = rusage();
        let mut s: Vec<(String, String)> = Vec::with_capacity(48);
        let mut put = |k: &str, v: String| s.push((k.to_string(), v));
        put("pid", std::process::id().to_string());
        put("uptime", self.started.elapsed().as_secs().to_string());
        put("time", self.now().to_string());
        put("version", flare_core::VERSION.to_string());
        put("pointer_size", (usize::BITS).to_string());
        put("rusage_user", user);
        put("rusage_system", system);
        put("curr_items", self.store.storage().item_count().to_string());
        put("total_items", c.total_items.load(Relaxed).to_string());
        put("bytes", self.store.storage().disk_bytes().to_string());
        put("curr_connections", c.curr_connections.load(Relaxed).to_string());
        put("total_connections", c.total_connections.load(Relaxed).to_string());
        put("connection_structures", "0".into());
        for name in [
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
        ] {
            put(name, c.get(name).to_string());
        }
        put("evictions", "0".into());
        put("bytes_read", c.bytes_read.load(Relaxed).to_string());
        put("bytes_written", c.bytes_written.load(Relaxed).to_string());
        put("limit_maxbytes", "0".into());
        put("threads", (self.registry.len() + 1).to_string());
        put("pool_threads", "0".into());
        put("node_map_version", "0".into());
        // Additions (stats.md §1 [Improve]), after Flare's fields.
        put("server_version", format!("flare-{}", flare_core::VERSION));
        put("node_role", "master".into());
        put("node_state", "active".into());
        put("node_partition", "0".into());
        put("node_balance", "1".into());
        put("meta_cmds", c.meta_cmds.load(Relaxed).to_string());
        put("storage_errors", c.storage_errors.load(Relaxed).to_string());
        put("healthy", (!self.unhealthy.load(Relaxed) as u8).to_string());
        s
    }
}

fn accept<S: Storage + 'static>(shared: &Arc<Shared<S>>, stream: TcpStream, peer: SocketAddr) {
    let max = shared.dynamic.max_connection.load(Relaxed);
    if shared.registry.len() >= max {
        // Flare accepts and closes at once (protocol.md §1).
        tracing::warn!(%peer, max, "max-connection reached, closing new connection");
        drop(stream);
        return;
    }
    let _ = stream.set_nodelay(true);
    shared.counters.total_connections.fetch_add(1, Relaxed);
    shared.counters.curr_connections.fetch_add(1, Relaxed);
    let info = shared.registry.register(peer);
    let shared = shared.clone();
    tokio::spawn(async move {
        let id = info.id;
        if let Err(e) = serve(&shared, stream, &info).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        shared.registry.unregister(id);
        shared.counters.curr_connections.fetch_sub(1, Relaxed);
    });
}

/// Why a connection loop stops.
enum Next {
    Continue,
    Close,
}

async fn serve<S: Storage + 'static>(shared: &Arc<Shared<S>>, mut stream: TcpStream, info: &ConnInfo) -> io::Result<()> {
    let mut decoder = Decoder::new(shared.settings.limits, shared.settings.gat_flare_syntax);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut shutdown = shared.shutdown.subscribe();
    let mut tally = Tally::default();
    loop {
        // Run every whole request already buffered, then write all replies at once.
        let mut wrote = false;
        let mut next = Next::Continue;
        while let Some(decoded) = decoder.decode(&mut rbuf) {
            info.state.store(ThreadState::Execute as u8, Relaxed);
            next = handle(shared, decoded, &mut wbuf, &mut tally, &mut stream, info, &mut wrote).await?;
            if matches!(next, Next::Close) {
                break;
            }
            if wbuf.len() >= 1 << 20 {
                write_out(shared, &mut stream, &mut wbuf, &mut wrote).await?;
            }
        }
        write_out(shared, &mut stream, &mut wbuf, &mut wrote).await?;
        shared.counters.merge(&tally);
        tally = Tally::default();
        info.state.store(ThreadState::Wait as u8, Relaxed);
        *info.op.lock().expect("op lock poisoned only by a panic") = "";
        if matches!(next, Next::Close) || *shutdown.borrow() {
            return Ok(());
        }
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(16 * 1024);
        }
        let timeout = Duration::from_millis(shared.dynamic.net_read_timeout_ms.load(Relaxed));
        tokio::select! {
            biased;
            _ = info.kill.notified() => return Ok(()),
            _ = shutdown.changed() => {
                // Graceful stop: requests already read were answered above; a half-read request is dropped.
                return Ok(());
            }
            read = tokio::time::timeout(timeout, stream.read_buf(&mut rbuf)) => match read {
                Err(_) => {
                    tracing::debug!(peer = %info.peer, "net-read-timeout: closing idle connection");
                    return Ok(());
                }
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => { shared.counters.bytes_read.fetch_add(n as u64, Relaxed); }
                Ok(Err(e)) => return Err(e),
            },
        }
    }
}

/// Writes the pending replies, first waiting for the group fsync when the batch wrote to storage.
async fn write_out<S: Storage>(
    shared: &Shared<S>,
    stream: &mut TcpStream,
    wbuf: &mut BytesMut,
    wrote: &mut bool,
) -> io::Result<()> {
    if std::mem::take(wrote) {
        if let Some(g) = &shared.group {
            let seq = g.written.fetch_add(1, Relaxed) + 1;
            g.wake.notify_one();
            let mut synced = g.synced.subscribe();
            // The syncer publishes sequences in order; an error closes the channel and we fail the connection.
            synced.wait_for(|s| *s >= seq).await.map_err(|_| io::Error::other("group commit stopped"))?;
        }
    }
    if !wbuf.is_empty() {
        stream.write_all(wbuf).await?;
        shared.counters.bytes_written.fetch_add(wbuf.len() as u64, Relaxed);
        wbuf.clear();
    }
    Ok(())
}

async fn handle<S: Storage + 'static>(
    shared: &Arc<Shared<S>>,
    decoded: Decoded,
    wbuf: &mut BytesMut,
    tally: &mut Tally,
    stream: &mut TcpStream,
    info: &ConnInfo,
    wrote: &mut bool,
) -> io::Result<Next> {
    let (framing, command) = match decoded {
        Decoded::Request(r) => (r.framing, r.command),
        Decoded::Error { framing, error, close } => {
            encode(&framing, &Reply::Error(error), wbuf);
            return Ok(if close { Next::Close } else { Next::Continue });
        }
    };
    *info.op.lock().expect("op lock poisoned only by a panic") = command.op_name();
    *wrote |= is_write(&command);
    let now = shared.now();
    let outcome = exec::execute(&shared.store, command, now, tally);
    if tally.storage_errors > 0 {
        shared.set_unhealthy();
    }
    match outcome {
        Outcome::Reply(reply) => encode(&framing, &reply, wbuf),
        Outcome::Close => return Ok(Next::Close),
        Outcome::Driver(command) => return driver_command(shared, framing, command, wbuf, stream, wrote).await,
        #[allow(unreachable_patterns)]
        _ => encode(&framing, &Reply::Error(ErrorReply::UnknownCommand), wbuf),
    }
    Ok(Next::Continue)
}

fn is_write(command: &Command) -> bool {
    matches!(
        command,
        Command::Store(_)
            | Command::Delete { .. }
            | Command::Arith { .. }
            | Command::Touch { .. }
            | Command::Gat { .. }
            | Command::FlushAll { .. }
            | Command::Meta(_)
    )
}

async fn driver_command<S: Storage + 'static>(
    shared: &Arc<Shared<S>>,
    framing: Framing,
    command: Command,
    wbuf: &mut BytesMut,
    stream: &mut TcpStream,
    wrote: &mut bool,
) -> io::Result<Next> {
    let reply = match command {
        Command::Version => Reply::Version(shared.settings.version_string.clone()),
        Command::Ping => {
            if shared.unhealthy.load(Relaxed) {
                Reply::Error(ErrorReply::Server("storage error".into()))
            } else {
                Reply::Ok
            }
        }
        Command::Stats(group) => Reply::Stats(match group {
            StatsGroup::General => shared.general_stats(),
            StatsGroup::Items | StatsGroup::Slabs | StatsGroup::Sizes | StatsGroup::Nodes => Vec::new(),
            StatsGroup::Settings => shared.settings.settings.clone(),
            StatsGroup::Threads | StatsGroup::ThreadsRequest => shared.registry.thread_stats(Instant::now()),
            StatsGroup::ThreadsSlave => Vec::new(),
            StatsGroup::ThreadsQueue => vec![("total_thread_queue".into(), "0".into())],
        }),
        Command::ShowVariables => Reply::Lines(shared.settings.show_variables.clone()),
        Command::Kill(id) => {
            if shared.registry.kill(id) {
                Reply::Ok
            } else {
                Reply::Error(ErrorReply::Client("thread not found".into()))
            }
        }
        Command::FlushAll { delay, noreply } => {
            schedule_flush(shared, delay);
            if noreply {
                Reply::Nothing
            } else {
                Reply::Ok
            }
        }
        Command::Dump(args) => {
            write_out(shared, stream, wbuf, wrote).await?;
            dump(shared, args, stream, false).await?;
            return Ok(Next::Continue);
        }
        Command::DumpKey(args) => {
            write_out(shared, stream, wbuf, wrote).await?;
            dump(shared, args, stream, true).await?;
            return Ok(Next::Continue);
        }
        // A node in standalone mode takes no map pushes and no index commands (protocol.md §5.8).
        Command::NodeSync { .. } => Reply::Error(ErrorReply::Server("node sync error".into())),
        Command::Keys { .. } => Reply::Error(ErrorReply::Server("not available on current storage type".into())),
        _ => Reply::Error(ErrorReply::UnknownCommand),
    };
    encode(&framing, &reply, wbuf);
    Ok(Next::Continue)
}

/// Delayed `flush_all`: a later flush_all replaces an earlier pending one (memcached keeps one `oldest_live`).
fn schedule_flush<S: Storage + 'static>(shared: &Arc<Shared<S>>, delay: i64) {
    let now = shared.now();
    let generation = shared.flush_generation.fetch_add(1, Relaxed) + 1;
    let Some(deadline) = store::flush_deadline(delay, now) else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(deadline.saturating_sub(now))).await;
        if shared.flush_generation.load(Relaxed) == generation {
            if let Err(e) = shared.store.flush_all() {
                tracing::error!(error = %e, "delayed flush_all failed");
                shared.set_unhealthy();
            }
        }
    });
}

/// Streams `dump` (`VALUE <key> <flags> <bytes> <version> <exptime>` + data) or `dump_key` (`KEY <key>`) lines,
/// then `END`, throttled by the per-item wait and the bandwidth cap (cluster.md §10).
async fn dump<S: Storage + 'static>(
    shared: &Arc<Shared<S>>,
    args: DumpArgs,
    stream: &mut TcpStream,
    keys_only: bool,
) -> io::Result<()> {
    const BATCH: usize = 256;
    let mut cursor: Option<bytes::Bytes> = None;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut limiter = BandwidthLimiter::new(args.bwlimit_kbps);
    let wait = Duration::from_micros(args.wait_usec);
    loop {
        let batch = match shared.store.storage().scan(cursor.as_deref(), BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "dump: storage scan failed");
                let line = if keys_only { "SERVER_ERROR\r\n" } else { "SERVER_ERROR iteration canceled\r\n" };
                stream.write_all(line.as_bytes()).await?;
                return Ok(());
            }
        };
        let Some((last, _)) = batch.last() else { break };
        cursor = Some(last.clone());
        let now = shared.now();
        for (key, entry) in batch {
            let flare_core::item::Entry::Item(item) = entry else { continue };
            if !keys_only && item.is_expired(now) {
                continue;
            }
            if !in_partition(&key, &args) {
                continue;
            }
            let before = out.len();
            if keys_only {
                out.put_slice(b"KEY ");
                out.put_slice(&key);
                out.put_slice(b"\r\n");
            } else {
                out.put_slice(b"VALUE ");
                out.put_slice(&key);
                out.put_slice(
                    format!(" {} {} {} {}\r\n", item.flags, item.value.len(), item.version, item.exptime).as_bytes(),
                );
                out.put_slice(&item.value);
                out.put_slice(b"\r\n");
            }
            let sent = (out.len() - before) as u64;
            let slept = limiter.account(sent);
            let pause = wait.saturating_sub(slept) + slept;
            if out.len() >= 64 * 1024 || !pause.is_zero() {
                stream.write_all(&out).await?;
                shared.counters.bytes_written.fetch_add(out.len() as u64, Relaxed);
                out.clear();
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    out.put_slice(b"END\r\n");
    stream.write_all(&out).await?;
    shared.counters.bytes_written.fetch_add(out.len() as u64, Relaxed);
    Ok(())
}

fn in_partition(_key: &[u8], args: &DumpArgs) -> bool {
    // Partition filtering needs the cluster's resolver (cluster.md §9); a standalone node owns partition 0 of 1.
    match args.partition {
        None => true,
        Some(p) => args.partition_count <= 1 && p == 0,
    }
}

/// rsync-style bandwidth limiter (cluster.md §10): sleep once the byte debt reaches 100 ms' worth.
struct BandwidthLimiter {
    bytes_per_sec: u64,
    debt: u64,
    since: Instant,
}

impl BandwidthLimiter {
    fn new(kbps: u64) -> Self {
        BandwidthLimiter { bytes_per_sec: kbps.saturating_mul(1024), debt: 0, since: Instant::now() }
    }

    /// Accounts `bytes` sent; returns how long to sleep now.
    fn account(&mut self, bytes: u64) -> Duration {
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let elapsed = self.since.elapsed();
        self.since = Instant::now();
        let paid = (elapsed.as_secs_f64() * self.bytes_per_sec as f64) as u64;
        self.debt = self.debt.saturating_sub(paid).saturating_add(bytes);
        if self.debt * 10 >= self.bytes_per_sec {
            let sleep = Duration::from_secs_f64(self.debt as f64 / self.bytes_per_sec as f64);
            self.debt = 0;
            self.since += sleep;
            sleep
        } else {
            Duration::ZERO
        }
    }
}

/// Background expiry sweeper (protocol.md §3 [Improve]): walks the store in batches, removing expired items and
/// expired tombstones.
async fn sweeper<S: Storage + 'static>(shared: Arc<Shared<S>>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let mut cursor: Option<bytes::Bytes> = None;
        loop {
            let now = shared.now();
            match shared.store.sweep(cursor.as_deref(), 512, now) {
                Ok(progress) => match progress.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                },
                Err(e) => {
                    tracing::error!(error = %e, "expiry sweep failed");
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Group commit loop: fsync the WAL whenever writers are waiting, then release every writer the fsync covered.
async fn group_syncer<S: Storage + 'static>(shared: Arc<Shared<S>>) {
    let Some(g) = &shared.group else { return };
    loop {
        g.wake.notified().await;
        loop {
            let target = g.written.load(Relaxed);
            if target <= *g.synced.borrow() {
                break;
            }
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.store.storage().sync()).await {
                Ok(Ok(())) => {
                    let _ = g.synced.send(target);
                }
                _ => {
                    tracing::error!("group commit: WAL fsync failed; node marked unhealthy");
                    shared.set_unhealthy();
                    return;
                }
            }
        }
    }
}
