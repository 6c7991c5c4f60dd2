//! One client connection: the read → decode → execute → encode → write loop, and the commands that need the
//! driver (stats, ping, version, kill, dump).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::BytesMut;
use flare_core::exec::{self, Outcome, Tally};
use flare_core::protocol::response::encode;
use flare_core::protocol::{Command, Decoded, Decoder, ErrorReply, Framing, Reply, StatsGroup};
use flare_core::storage::Storage;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::stats::{rusage, ConnInfo, ThreadState};
use super::{cluster, dump, route, Shared};
use crate::metrics::{op_index, result_index, OpTally};
use crate::net::Net;

/// Replies are flushed once this much is buffered, even in the middle of a pipeline.
const WRITE_FLUSH_BYTES: usize = 1 << 20;

/// Takes a new connection: when `max-connection` is reached, answers memcached's
/// `ERROR Too many open connections` and closes it (Flare closes it silently), otherwise serves it on its own task.
pub(super) fn accept<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    mut stream: N::Stream,
    peer: SocketAddr,
) {
    let max = shared.dynamic.max_connection.load(Relaxed);
    if shared.registry.len() >= max {
        tracing::warn!(%peer, max, "max-connection reached, refusing a new connection");
        shared.counters.rejected_connections.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let refuse = flare_core::protocol::response::TOO_MANY_CONNECTIONS;
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(refuse))
                    .await;
        });
        return;
    }
    shared.counters.total_connections.fetch_add(1, Relaxed);
    shared.counters.curr_connections.fetch_add(1, Relaxed);
    let info = shared.registry.register(peer);
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = serve(&shared, stream, &info).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        shared.registry.unregister(info.id);
        shared.counters.curr_connections.fetch_sub(1, Relaxed);
    });
}

/// Whether the loop goes on after a request.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

/// Per-connection state of the loop.
struct Conn<'a, T> {
    stream: T,
    wbuf: BytesMut,
    tally: Tally,
    /// Requests by command and result, with latencies, merged into `Shared::ops` with `tally`.
    ops: OpTally,
    /// [`result_index`] of the last reply encoded.
    result: usize,
    /// A request of the current batch wrote to storage (group commit waits before replying).
    wrote: bool,
    /// What routing remembers of this connection (an operator's session).
    session: flare_core::node::plan::Session,
    /// The request being answered is a part of a streamed retrieval line: its reply is sent `continued`.
    part: bool,
    info: &'a ConnInfo,
}

async fn serve<N: Net, S: Storage + 'static, T: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared<N, S>>,
    stream: T,
    info: &ConnInfo,
) -> io::Result<()> {
    let mut decoder = Decoder::new(shared.settings.limits, shared.settings.dialect);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut shutdown = shared.shutdown.subscribe();
    let mut c = Conn {
        part: false,
        stream,
        wbuf: BytesMut::with_capacity(16 * 1024),
        tally: Tally::default(),
        ops: OpTally::default(),
        result: 0,
        wrote: false,
        session: Default::default(),
        info,
    };
    loop {
        // Run every whole request already buffered, then write all their replies at once.
        let mut next = Next::Continue;
        while let Some(decoded) = decoder.decode(&mut rbuf) {
            info.state.store(ThreadState::Execute as u8, Relaxed);
            next = handle(shared, decoded, &mut c).await?;
            if next == Next::Close {
                break;
            }
            if c.wbuf.len() >= WRITE_FLUSH_BYTES {
                flush(shared, &mut c).await?;
            }
        }
        flush(shared, &mut c).await?;
        shared.counters.merge(&std::mem::take(&mut c.tally));
        shared.ops.merge(&mut c.ops);
        info.state.store(ThreadState::Wait as u8, Relaxed);
        info.set_op("");
        if next == Next::Close || *shutdown.borrow() {
            return Ok(());
        }
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(16 * 1024);
        }
        tokio::select! {
            biased;
            // `kill`, or the idle sweeper after net-read-timeout without a byte (see `idle_sweeper`).
            _ = info.kill.notified() => return Ok(()),
            // Graceful stop: requests already read were answered above; a half-read request is dropped.
            _ = shutdown.changed() => return Ok(()),
            read = c.stream.read_buf(&mut rbuf) => match read {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    info.touch(Instant::now());
                    shared.counters.bytes_read.fetch_add(n as u64, Relaxed);
                }
                Err(e) => return Err(e),
            },
        }
    }
}

impl<T> Conn<'_, T> {
    /// Encodes a reply into the write buffer and notes its result.
    fn reply(&mut self, framing: &Framing, reply: &Reply) {
        self.result = result_index(reply);
        if self.part {
            encode(framing, &reply.clone().continued(), &mut self.wbuf);
        } else {
            encode(framing, reply, &mut self.wbuf);
        }
    }
}

/// Writes the buffered replies, first waiting for the group fsync when the batch wrote to storage.
async fn flush<N: Net, S: Storage, T: AsyncWrite + Unpin>(
    shared: &Shared<N, S>,
    c: &mut Conn<'_, T>,
) -> io::Result<()> {
    if std::mem::take(&mut c.wrote) {
        shared.wait_durable().await?;
    }
    if !c.wbuf.is_empty() {
        c.stream.write_all(&c.wbuf).await?;
        shared
            .counters
            .bytes_written
            .fetch_add(c.wbuf.len() as u64, Relaxed);
        c.wbuf.clear();
    }
    Ok(())
}

/// Runs one request and counts it (command, result, latency) for `/metrics`.
async fn handle<N: Net, S: Storage + 'static, T: AsyncWrite + Unpin>(
    shared: &Arc<Shared<N, S>>,
    decoded: Decoded,
    c: &mut Conn<'_, T>,
) -> io::Result<Next> {
    let start = std::time::Instant::now();
    let op = match &decoded {
        Decoded::Request(r) | Decoded::Part(r) => op_index(&r.command),
        Decoded::Error { .. } => crate::metrics::OPS.len() - 1,
    };
    c.result = 0;
    let next = run_request(shared, decoded, c).await;
    c.ops.record(op, c.result, start.elapsed());
    next
}

async fn run_request<N: Net, S: Storage + 'static, T: AsyncWrite + Unpin>(
    shared: &Arc<Shared<N, S>>,
    decoded: Decoded,
    c: &mut Conn<'_, T>,
) -> io::Result<Next> {
    c.part = matches!(decoded, Decoded::Part(_));
    let (framing, command) = match decoded {
        Decoded::Request(r) | Decoded::Part(r) => (r.framing, r.command),
        Decoded::Error {
            framing,
            error,
            close,
        } => {
            c.session.observe_refused();
            c.reply(&framing, &Reply::Error(error));
            return Ok(if close { Next::Close } else { Next::Continue });
        }
    };
    c.info.set_op(command.op_name());
    c.session.observe(&framing, &command);
    if is_internal(&framing, &command) && !shared.dynamic.internal_allowed(c.info.peer.ip()) {
        tracing::warn!(peer = %c.info.peer, op = command.op_name(), "internal command refused (internal-netmask)");
        c.reply(
            &framing,
            &Reply::Error(ErrorReply::Client(
                "internal command not allowed from this address".into(),
            )),
        );
        return Ok(Next::Continue);
    }
    if !shared.settings.allow_client_version && carries_client_version(&framing, &command) {
        c.reply(&framing, &Reply::Error(ErrorReply::BadCommandLine));
        return Ok(Next::Continue);
    }
    let errors_before = c.tally.storage_errors;
    if !shared.cluster.view().is_standalone() && flare_core::node::plan::is_routed(&command) {
        let operator = c.session.operator();
        let ran = route::run(shared, &framing, operator, command, &mut c.tally).await;
        if c.tally.storage_errors > errors_before {
            shared.set_unhealthy();
        }
        return match ran {
            route::Ran::Reply { reply, wrote } => {
                c.wrote |= wrote;
                c.reply(&framing, &reply);
                Ok(Next::Continue)
            }
            route::Ran::Close => Ok(Next::Close),
            route::Ran::Driver(command) => driver_command(shared, framing, command, c).await,
        };
    }
    match exec::execute(&shared.store, command, shared.now(), &mut c.tally) {
        Outcome::Reply { reply, mutations } => {
            c.wrote |= !mutations.is_empty();
            c.reply(&framing, &reply);
        }
        Outcome::Close => {
            // Text `quit` closes silently; binary Quit (not QuitQ) is acknowledged first.
            encode(&framing, &Reply::Nothing, &mut c.wbuf);
            return Ok(Next::Close);
        }
        Outcome::Driver(command) => return driver_command(shared, framing, command, c).await,
        // exec's outcomes are non-exhaustive; an unknown one is answered like an unknown command.
        #[allow(unreachable_patterns)]
        _ => c.reply(&framing, &Reply::Error(ErrorReply::UnknownCommand)),
    }
    if c.tally.storage_errors > errors_before {
        shared.set_unhealthy();
    }
    Ok(Next::Continue)
}

/// Commands only other nodes, the index and the admin tools send (decisions.md #10).
fn is_internal(framing: &Framing, command: &Command) -> bool {
    matches!(framing, Framing::Text { proxy: Some(_) })
        || matches!(
            command,
            Command::NodeSync { .. } | Command::Dump(_) | Command::DumpKey(_) | Command::Kill(_)
        )
}

/// A plain client's write with Flare's explicit `<version>` token (protocol.md §4.3).
fn carries_client_version(framing: &Framing, command: &Command) -> bool {
    let proxied = matches!(framing, Framing::Text { proxy: Some(_) });
    !proxied
        && match command {
            Command::Store(s) => s.version.is_some(),
            Command::Delete { version, .. } => version.is_some(),
            _ => false,
        }
}

async fn driver_command<N: Net, S: Storage + 'static, T: AsyncWrite + Unpin>(
    shared: &Arc<Shared<N, S>>,
    framing: Framing,
    command: Command,
    c: &mut Conn<'_, T>,
) -> io::Result<Next> {
    let reply = match command {
        Command::Version => Reply::Version(shared.settings.version_string.clone()),
        Command::Ping if shared.healthy() => Reply::Ok,
        Command::Ping => Reply::Error(ErrorReply::Server("storage error".into())),
        Command::Stats(group) => Reply::Stats(stats(shared, group)),
        Command::ShowVariables => Reply::Lines(shared.settings.show_variables.clone()),
        Command::Kill(id) if shared.registry.kill(id) => Reply::Ok,
        Command::Kill(_) => Reply::Error(ErrorReply::Client("thread not found".into())),
        Command::Dump(args) | Command::DumpKey(args) => {
            let kind = match command {
                Command::Dump(_) => flare_core::dump::DumpKind::Items,
                _ => flare_core::dump::DumpKind::Keys,
            };
            flush(shared, c).await?;
            dump::stream(shared, kind, args, &mut c.stream).await?;
            return Ok(Next::Continue);
        }
        Command::NodeSync { version, nodes } => {
            match cluster::apply_node_sync(shared, version, &nodes) {
                Ok(()) => Reply::Ok,
                Err(line) => Reply::Raw(bytes::Bytes::from(format!("{line}\r\n"))),
            }
        }
        Command::Keys { .. } => Reply::Error(ErrorReply::Server(
            "not available on current storage type".into(),
        )),
        // `shutdown` and the node commands are index-server commands (protocol.md §5.8).
        _ => Reply::Error(ErrorReply::UnknownCommand),
    };
    c.reply(&framing, &reply);
    Ok(Next::Continue)
}

fn stats<N: Net, S: Storage>(shared: &Shared<N, S>, group: StatsGroup) -> Vec<(String, String)> {
    match group {
        StatsGroup::General => general_stats(shared),
        StatsGroup::Items | StatsGroup::Slabs | StatsGroup::Sizes => Vec::new(),
        StatsGroup::Nodes => shared.cluster.view().map().stats_nodes(),
        StatsGroup::Settings => shared.settings.settings.clone(),
        StatsGroup::Threads | StatsGroup::ThreadsRequest => {
            shared.registry.thread_stats(Instant::now())
        }
        StatsGroup::ThreadsSlave => slave_threads(shared),
        StatsGroup::ThreadsQueue => vec![("total_thread_queue".into(), "0".into())],
    }
}

/// `stats threads slave` (stats.md §2): one block per replication target of this master, in the thread format,
/// with the target as `peer`, its backlog as `queue` and its lag as `behind`.
fn slave_threads<N: Net, S: Storage>(shared: &Shared<N, S>) -> Vec<(String, String)> {
    let now = Instant::now().into_std();
    let mut out = Vec::new();
    for (i, (target, st)) in shared
        .cluster
        .replication_stats(now)
        .into_iter()
        .enumerate()
    {
        let id = 1_000_000 + i;
        let tt = shared
            .cluster
            .view()
            .node(&target)
            .map_or(0, |r| r.thread_type);
        out.push((format!("{id}:type"), tt.to_string()));
        out.push((format!("{id}:peer"), target));
        out.push((
            format!("{id}:op"),
            if st.queued + st.in_flight > 0 {
                "proxy_write".into()
            } else {
                String::new()
            },
        ));
        out.push((format!("{id}:uptime"), shared.uptime().to_string()));
        out.push((format!("{id}:state"), "wait".into()));
        out.push((format!("{id}:info"), String::new()));
        out.push((
            format!("{id}:queue"),
            (st.queued + st.in_flight).to_string(),
        ));
        out.push((format!("{id}:behind"), st.lag.as_secs().to_string()));
    }
    out
}

/// `stats` (stats.md §1): Flare's fields in Flare's order, then ours.
fn general_stats<N: Net, S: Storage>(shared: &Shared<N, S>) -> Vec<(String, String)> {
    let c = &shared.counters;
    let storage = shared.store.storage();
    let (user, system) = rusage();
    let mut s: Vec<(String, String)> = Vec::with_capacity(48);
    let mut put = |k: &str, v: String| s.push((k.to_string(), v));
    put("pid", std::process::id().to_string());
    put("uptime", shared.uptime().to_string());
    put("time", shared.now().to_string());
    put("version", flare_core::VERSION.to_string());
    put("pointer_size", usize::BITS.to_string());
    put("rusage_user", user);
    put("rusage_system", system);
    put("curr_items", storage.item_count().to_string());
    put("total_items", c.total_items.load(Relaxed).to_string());
    put("bytes", storage.disk_bytes().to_string());
    put(
        "curr_connections",
        c.curr_connections.load(Relaxed).to_string(),
    );
    put(
        "total_connections",
        c.total_connections.load(Relaxed).to_string(),
    );
    put("connection_structures", "0".into());
    for (name, value) in c.tally_fields() {
        if !matches!(name, "total_items" | "meta_cmds" | "storage_errors") {
            put(name, value.to_string());
        }
    }
    put("evictions", "0".into());
    put("bytes_read", c.bytes_read.load(Relaxed).to_string());
    put("bytes_written", c.bytes_written.load(Relaxed).to_string());
    put("limit_maxbytes", "0".into());
    put("threads", (shared.registry.len() + 1).to_string());
    put("pool_threads", "0".into());
    let view = shared.cluster.view();
    put("node_map_version", view.map().version.to_string());
    // Additions (stats.md §1 [Improve]), after Flare's fields.
    put("server_version", format!("flare-{}", flare_core::VERSION));
    let (role, state, partition, balance) = view.my_role();
    put("node_role", role.name().into());
    put("node_state", state.name().into());
    put(
        "node_partition",
        partition.map_or(-1, i64::from).to_string(),
    );
    put("node_balance", balance.to_string());
    put(
        "replication_position",
        shared.cluster.applied_seq().to_string(),
    );
    let now = Instant::now().into_std();
    let repl = shared.cluster.replication_stats(now);
    put(
        "replication_queue",
        repl.iter()
            .map(|(_, s)| s.queued + s.in_flight)
            .sum::<usize>()
            .to_string(),
    );
    put(
        "replication_lag_ms",
        repl.iter()
            .map(|(_, s)| s.lag.as_millis())
            .max()
            .unwrap_or(0)
            .to_string(),
    );
    put(
        "replication_failures",
        repl.iter()
            .map(|(_, s)| s.failures)
            .sum::<u64>()
            .to_string(),
    );
    for (target, st) in &repl {
        put(
            &format!("replication:{target}:queue"),
            (st.queued + st.in_flight).to_string(),
        );
        put(
            &format!("replication:{target}:lag_ms"),
            st.lag.as_millis().to_string(),
        );
        put(
            &format!("replication:{target}:acked"),
            st.acked_seq.to_string(),
        );
        put(
            &format!("replication:{target}:failures"),
            st.failures.to_string(),
        );
    }
    let rec = shared.cluster.rebuild_stats();
    put("reconstruction_running", u8::from(rec.running).to_string());
    put("reconstruction_items", rec.items.to_string());
    put("reconstruction_total", rec.total.to_string());
    put("meta_cmds", c.meta_cmds.load(Relaxed).to_string());
    put(
        "rejected_connections",
        c.rejected_connections.load(Relaxed).to_string(),
    );
    put("storage_errors", c.storage_errors.load(Relaxed).to_string());
    put("healthy", u8::from(shared.healthy()).to_string());
    s
}
