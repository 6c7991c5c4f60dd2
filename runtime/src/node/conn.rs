//! One client connection: the read → decode → execute → encode → write loop, and the commands that need the
//! driver (stats, kill, dump, node sync). What a request becomes before it runs (its parse error, a refusal) and
//! when a connection is over `max-connection` are [`flare_core::node::admit`]'s decisions, what running it gave is
//! [`flare_core::node::ack::Ran`], what the driver's commands answer is [`flare_core::node::duty`]'s, and what
//! `stats` shows is formatted by [`flare_core::node::stats`] from the node's snapshot.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::BytesMut;
use flare_core::exec::{self, Tally};
use flare_core::node::ack::Ran;
use flare_core::node::admit::{self, Admission, Refusal};
use flare_core::node::duty::{self, Duty, Facts, Gather};
use flare_core::node::stats as node_stats;
use flare_core::protocol::response::{encode, encode_part};
use flare_core::protocol::{Command, Decoded, Decoder, Framing, Reply};
use flare_core::storage::Storage;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::stats::{ConnInfo, ThreadState};
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
    if admit::over_connection_limit(shared.registry.len(), max) {
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
        encode_part(framing, reply, self.part, &mut self.wbuf);
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
    let allowed = || shared.dynamic.internal_allowed(c.info.peer.ip());
    let allow_version = shared.settings.allow_client_version;
    let (framing, command) = match admit::admit(decoded, &mut c.session, allow_version, allowed) {
        Admission::Run(framing, command) => (framing, command),
        Admission::Answer {
            framing,
            reply,
            close,
            refused,
        } => {
            if let Some((op, refusal)) = refused {
                c.info.set_op(op);
                if refusal == Refusal::Internal {
                    tracing::warn!(peer = %c.info.peer, op, "internal command refused (internal-netmask)");
                }
            }
            c.reply(&framing, &reply);
            return Ok(if close { Next::Close } else { Next::Continue });
        }
    };
    c.info.set_op(command.op_name());
    let errors_before = c.tally.storage_errors;
    let ran = if admit::through_cluster(&shared.cluster.view(), &command) {
        let operator = c.session.operator();
        route::run(shared, &framing, operator, command, &mut c.tally).await
    } else {
        Ran::from(exec::execute(
            &shared.store,
            command,
            shared.now(),
            &mut c.tally,
        ))
    };
    if c.tally.storage_errors > errors_before {
        shared.set_unhealthy();
    }
    match ran {
        Ran::Reply { reply, wrote } => {
            c.wrote |= wrote;
            c.reply(&framing, &reply);
            Ok(Next::Continue)
        }
        Ran::Close => {
            // Text `quit` closes silently; binary Quit (not QuitQ) is acknowledged first.
            encode(&framing, &Reply::Nothing, &mut c.wbuf);
            Ok(Next::Close)
        }
        Ran::Driver(command) => driver_command(shared, framing, command, c).await,
    }
}

async fn driver_command<N: Net, S: Storage + 'static, T: AsyncWrite + Unpin>(
    shared: &Arc<Shared<N, S>>,
    framing: Framing,
    command: Command,
    c: &mut Conn<'_, T>,
) -> io::Result<Next> {
    let settings = &shared.settings;
    let facts = Facts {
        version_string: &settings.version_string,
        healthy: shared.healthy(),
        show_variables: &settings.show_variables,
    };
    let reply = match duty::duty(command, facts) {
        Duty::Reply(reply) => reply,
        Duty::Stats(group) => Reply::Stats(stats(shared, group)),
        Duty::Kill(id) => duty::kill_reply(shared.registry.kill(id)),
        Duty::Dump(kind, args) => {
            flush(shared, c).await?;
            dump::stream(shared, kind, args, &mut c.stream).await?;
            return Ok(Next::Continue);
        }
        Duty::NodeSync { version, nodes } => {
            duty::node_sync_reply(cluster::apply_node_sync(shared, version, &nodes))
        }
    };
    c.reply(&framing, &reply);
    Ok(Next::Continue)
}

/// Gathers a `stats` group [`duty`] leaves to the driver.
fn stats<N: Net, S: Storage>(shared: &Shared<N, S>, group: Gather) -> Vec<(String, String)> {
    match group {
        Gather::General => node_stats::general(&shared.snapshot()),
        Gather::Nodes => shared.cluster.view().map().stats_nodes(),
        Gather::Settings => shared.settings.settings.clone(),
        Gather::Threads => shared.registry.thread_stats(Instant::now()),
        Gather::ThreadsSlave => {
            let replication = shared.cluster.replication_stats(Instant::now().into_std());
            node_stats::slave_threads(&shared.cluster.view(), &replication, shared.uptime())
        }
    }
}
