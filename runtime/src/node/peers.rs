//! Connections to other nodes for forwarded requests: `proxy-concurrency` persistent connections per destination,
//! created on first use, each pipelined (requests are written as they come and answered in order). A request for a
//! key always takes the same connection (chosen by a hash of the key), so one key's requests stay in order, as
//! Flare's per-key worker choice does (cluster.md §7.3).
//!
//! Every request has a deadline (`proxy-timeout`): a forward to a node that died or hangs is answered with an error
//! when it passes, instead of hanging (Flare waits ~18 s and then answers a false miss). A broken connection fails
//! every request on it at once; the next request reconnects. A connection whose oldest request stays unanswered for
//! twice its deadline counts as broken too: a peer that vanished without a reset (a partition that dropped packets,
//! a machine that died) would otherwise hold the connection, and every later request for its keys, forever.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flare_core::protocol::reply::{ReplyEvent, ReplyKind, ReplyReader, ValueBlock};
use flare_core::protocol::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::net::Net;

/// A whole answer from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerReply {
    /// A one-line answer (or the error line that ended a values/lines reply).
    Line(Bytes),
    /// `VALUE` blocks up to `END`.
    Values(Vec<ValueBlock>),
    /// Listing lines up to `END`.
    Lines(Vec<Bytes>),
    /// A meta answer: its status line and, for `VA`, the data block.
    Meta(Bytes, Option<Bytes>),
}

/// Why a forwarded request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No answer before the deadline.
    #[error("no answer from {0} within the proxy timeout")]
    Timeout(String),
    /// The connection could not be made or broke.
    #[error("connection to {node} failed: {error}")]
    Io {
        /// The peer.
        node: String,
        /// What failed.
        error: io::Error,
    },
    /// The peer's answer could not be read.
    #[error("unreadable answer from {0}")]
    Protocol(String),
}

/// The answer of a submitted request.
pub struct Pending {
    node: String,
    answer: Option<oneshot::Receiver<Result<PeerReply, PeerError>>>,
    timeout: Duration,
}

impl Pending {
    /// Waits for the answer until the proxy timeout.
    pub async fn wait(self) -> Result<PeerReply, PeerError> {
        let Some(answer) = self.answer else {
            return Err(PeerError::Protocol(self.node));
        };
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PeerError::Protocol(self.node)),
            Err(_) => Err(PeerError::Timeout(self.node)),
        }
    }
}

/// A request waiting for its answer.
struct Job {
    bytes: Bytes,
    kind: ReplyKind,
    done: oneshot::Sender<Result<PeerReply, PeerError>>,
}

/// The connections of this node to its peers.
pub struct Peers<N: Net> {
    net: N,
    per_peer: usize,
    timeout: Duration,
    limits: Limits,
    conns: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Job>>>>,
}

impl<N: Net> Peers<N> {
    /// `per_peer` connections to each destination (`proxy-concurrency`); answers expected within `timeout`.
    pub fn new(net: N, per_peer: usize, timeout: Duration, limits: Limits) -> Self {
        Peers {
            net,
            per_peer: per_peer.max(1),
            timeout,
            limits,
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `bytes` (one or more whole requests answered by one reply of `kind`) to `node` (`name:port`) on the
    /// connection chosen by `shard`, and waits for the answer until the proxy timeout.
    pub async fn request(
        &self,
        node: &str,
        shard: u64,
        bytes: Bytes,
        kind: ReplyKind,
    ) -> Result<PeerReply, PeerError> {
        self.submit(node, shard, bytes, kind).wait().await
    }

    /// Queues the request on its connection at once (so requests for one key keep their order even when their
    /// answers are awaited elsewhere, as a forwarded `noreply` write's is) and returns its pending answer.
    pub fn submit(&self, node: &str, shard: u64, bytes: Bytes, kind: ReplyKind) -> Pending {
        let (done, answer) = oneshot::channel();
        let job = Job { bytes, kind, done };
        let queued = self.connection(node, shard).send(job).is_ok();
        Pending {
            node: node.to_string(),
            answer: queued.then_some(answer),
            timeout: self.timeout,
        }
    }

    /// Forgets the connections to nodes not in `keep` (a node left the map).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }

    fn connection(&self, node: &str, shard: u64) -> mpsc::UnboundedSender<Job> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let slots = conns
            .entry(node.to_string())
            .or_insert_with(|| (0..self.per_peer).map(|_| self.spawn(node)).collect());
        let i = (shard % slots.len() as u64) as usize;
        if slots[i].is_closed() {
            slots[i] = self.spawn(node);
        }
        slots[i].clone()
    }

    fn spawn(&self, node: &str) -> mpsc::UnboundedSender<Job> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(connection_task(
            self.net.clone(),
            node.to_string(),
            self.limits,
            self.timeout,
            rx,
        ));
        tx
    }
}

/// One pipelined connection: connects on the first job, writes jobs as they come, answers them in order. A failure
/// fails every job it holds and ends the task (the next job starts a new one).
async fn connection_task<N: Net>(
    net: N,
    node: String,
    limits: Limits,
    timeout: Duration,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    let Some(first) = jobs.recv().await else {
        return;
    };
    let Some((host, port)) = split_node(&node) else {
        let _ = first.done.send(Err(PeerError::Protocol(node.clone())));
        return;
    };
    // A connect to a host that died without a trace (or behind a partition that drops packets) would wait for the
    // kernel's SYN retries; the requests it holds have given up long before.
    let connected = tokio::time::timeout(timeout, net.connect(host, port))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")));
    let mut stream = match connected {
        Ok(s) => s,
        Err(error) => {
            fail_all(&node, &error, Some(first), &mut jobs, VecDeque::new());
            return;
        }
    };
    let mut pending: VecDeque<(
        ReplyKind,
        oneshot::Sender<Result<PeerReply, PeerError>>,
        Partial,
    )> = VecDeque::new();
    let mut reader = ReplyReader::new(limits);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::new();
    let mut next = Some(first);
    let mut open = true;
    loop {
        // Write every job that is ready, in one write.
        while let Some(job) = next.take().or_else(|| jobs.try_recv().ok()) {
            wbuf.extend_from_slice(&job.bytes);
            let partial = Partial {
                sent: Some(tokio::time::Instant::now()),
                ..Partial::default()
            };
            pending.push_back((job.kind, job.done, partial));
        }
        if !wbuf.is_empty() {
            let written = tokio::time::timeout(timeout, stream.write_all(&wbuf))
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out"))
                });
            if let Err(error) = written {
                fail_all(&node, &error, None, &mut jobs, pending);
                return;
            }
            wbuf.clear();
        }
        if !open && pending.is_empty() {
            return;
        }
        // Twice the oldest request's deadline (its requester has given up by then; a peer merely slow to answer,
        // such as a master waiting for a sync write's slaves, is given the time to): past it the peer is gone or
        // hung, and the connection is dropped.
        let stalled = pending
            .front()
            .and_then(|(_, _, p)| p.sent)
            .map(|t| t + timeout * 2);
        let stall = async {
            match stalled {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stall => {
                let error = io::Error::new(io::ErrorKind::TimedOut, "no answer within the proxy timeout");
                fail_all(&node, &error, None, &mut jobs, pending);
                return;
            }
            job = jobs.recv(), if open && pending.len() < 1024 => match job {
                Some(job) => next = Some(job),
                None if pending.is_empty() => return,
                None => open = false,
            },
            read = stream.read_buf(&mut rbuf), if !pending.is_empty() => match read {
                Ok(0) => {
                    let error = io::Error::new(io::ErrorKind::UnexpectedEof, "closed by peer");
                    fail_all(&node, &error, None, &mut jobs, pending);
                    return;
                }
                Ok(_) => {
                    if let Err(()) = deliver(&mut reader, &mut rbuf, &mut pending) {
                        for (_, done, _) in pending.drain(..) {
                            let _ = done.send(Err(PeerError::Protocol(node.clone())));
                        }
                        return;
                    }
                }
                Err(error) => {
                    fail_all(&node, &error, None, &mut jobs, pending);
                    return;
                }
            },
        }
    }
}

/// A reply being assembled.
#[derive(Default)]
struct Partial {
    values: Vec<ValueBlock>,
    lines: Vec<Bytes>,
    /// When the request was written.
    sent: Option<tokio::time::Instant>,
}

/// Reads whole replies off `rbuf` and answers the oldest pending jobs with them.
#[allow(clippy::type_complexity)]
fn deliver(
    reader: &mut ReplyReader,
    rbuf: &mut BytesMut,
    pending: &mut VecDeque<(
        ReplyKind,
        oneshot::Sender<Result<PeerReply, PeerError>>,
        Partial,
    )>,
) -> Result<(), ()> {
    while let Some((kind, _, partial)) = pending.front_mut() {
        let Some(event) = reader.next(rbuf, *kind).map_err(|_| ())? else {
            return Ok(());
        };
        let reply = match event {
            ReplyEvent::Value(v) => {
                partial.values.push(v);
                continue;
            }
            ReplyEvent::Item(l) => {
                partial.lines.push(l);
                continue;
            }
            ReplyEvent::End if *kind == ReplyKind::Values => {
                PeerReply::Values(std::mem::take(&mut partial.values))
            }
            ReplyEvent::End => PeerReply::Lines(std::mem::take(&mut partial.lines)),
            ReplyEvent::Line(l) if *kind == ReplyKind::Meta => PeerReply::Meta(l, None),
            ReplyEvent::Line(l) => PeerReply::Line(l),
            ReplyEvent::MetaValue { line, data } => PeerReply::Meta(line, Some(data)),
        };
        let (_, done, _) = pending
            .pop_front()
            .expect("invariant: front_mut returned Some");
        let _ = done.send(Ok(reply));
    }
    Ok(())
}

#[allow(clippy::type_complexity)]
fn fail_all(
    node: &str,
    error: &io::Error,
    first: Option<Job>,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
    pending: VecDeque<(
        ReplyKind,
        oneshot::Sender<Result<PeerReply, PeerError>>,
        Partial,
    )>,
) {
    tracing::debug!(node, %error, "peer connection failed");
    let err = || PeerError::Io {
        node: node.to_string(),
        error: io::Error::new(error.kind(), error.to_string()),
    };
    for (_, done, _) in pending {
        let _ = done.send(Err(err()));
    }
    if let Some(job) = first {
        let _ = job.done.send(Err(err()));
    }
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = job.done.send(Err(err()));
    }
}

/// `name:port` → (`name`, port).
pub fn split_node(node: &str) -> Option<(&str, u16)> {
    let (host, port) = node.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// Shares one [`Peers`] between the node's tasks.
pub type SharedPeers<N> = Arc<Peers<N>>;
