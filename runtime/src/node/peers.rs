//! Connections to other nodes for forwarded requests, pooled per destination (cluster.md §7.3).
//!
//! A request checks a connection out of the destination's pool (or opens one), writes, reads the answer, and puts
//! the connection back: the request is served inside the client connection's own task, with no hand-off to another
//! task, so a proxy hop costs one loopback round trip and little more. A destination gets as many connections as
//! requests are in flight to it at once; up to [`IDLE_MAX`] (or `proxy-concurrency`, if larger) stay open between
//! requests. (Flare's `proxy-concurrency` is a fixed number of worker threads per destination; here it only raises
//! how many idle connections are kept.)
//!
//! Every request has a deadline (`proxy-timeout`): a forward to a node that died or hangs is answered with an error
//! when it passes, instead of hanging (Flare waits ~18 s and then answers a false miss). A connection that failed or
//! timed out is dropped, never reused.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
pub use flare_core::node::wire::split_node;
use flare_core::node::wire::PeerReplyBuilder;
pub use flare_core::protocol::reply::PeerReply;
use flare_core::protocol::reply::{ReplyKind, ReplyReader};
use flare_core::protocol::Limits;
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::net::{read_whole, Net};

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

/// An open connection to a peer.
struct PeerConn<T> {
    stream: T,
    reader: ReplyReader,
    buf: BytesMut,
}

/// Idle connections kept per destination: enough for every client connection of a busy proxy to find one.
pub const IDLE_MAX: usize = 256;

/// The connections of this node to its peers.
pub struct Peers<N: Net> {
    net: N,
    idle_max: usize,
    timeout: Duration,
    limits: Limits,
    pools: Mutex<BTreeMap<String, Vec<PeerConn<N::Stream>>>>,
}

impl<N: Net> Peers<N> {
    /// Keeps up to `idle_max` (at least [`IDLE_MAX`]) idle connections per destination; answers are expected
    /// within `timeout`.
    pub fn new(net: N, idle_max: usize, timeout: Duration, limits: Limits) -> Self {
        Peers {
            net,
            idle_max: idle_max.max(IDLE_MAX),
            timeout,
            limits,
            pools: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sends `bytes` (whole requests answered by one reply of `kind`) to `node` (`name:port`) and waits for the
    /// answer, until the proxy timeout.
    pub async fn request(
        &self,
        node: &str,
        bytes: &[u8],
        kind: ReplyKind,
    ) -> Result<PeerReply, PeerError> {
        let conn = self.checkout(node);
        let attempt = tokio::time::timeout(self.timeout, async {
            let mut conn = match conn {
                Some(c) => c,
                None => self.connect(node).await?,
            };
            let reply =
                round_trip(&mut conn, bytes, kind)
                    .await
                    .map_err(|error| match error.kind() {
                        io::ErrorKind::InvalidData => PeerError::Protocol(node.to_string()),
                        _ => PeerError::Io {
                            node: node.to_string(),
                            error,
                        },
                    })?;
            Ok::<_, PeerError>((conn, reply))
        })
        .await;
        match attempt {
            Ok(Ok((conn, reply))) => {
                self.checkin(node, conn);
                Ok(reply)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PeerError::Timeout(node.to_string())),
        }
    }

    /// Forgets the connections to nodes for which `keep` is false (they left the map).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }

    /// An idle connection to `node` that is still open. Idle connections the peer has closed meanwhile (its
    /// `net-read-timeout`, a restart) are dropped here, so a request is never sent on one and lost.
    fn checkout(&self, node: &str) -> Option<PeerConn<N::Stream>> {
        loop {
            let mut conn = self
                .pools
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(node)?
                .pop()?;
            if crate::util::still_open(&mut conn.stream) {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, node: &str, conn: PeerConn<N::Stream>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let pool = pools.entry(node.to_string()).or_default();
        if pool.len() < self.idle_max {
            pool.push(conn);
        }
    }

    async fn connect(&self, node: &str) -> Result<PeerConn<N::Stream>, PeerError> {
        let (host, port) = split_node(node).ok_or_else(|| PeerError::Protocol(node.to_string()))?;
        let stream = self
            .net
            .connect(host, port)
            .await
            .map_err(|error| PeerError::Io {
                node: node.to_string(),
                error,
            })?;
        Ok(PeerConn {
            stream,
            reader: ReplyReader::new(self.limits),
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }
}

/// Writes the request and reads one whole reply of `kind`.
async fn round_trip<T: AsyncRead + tokio::io::AsyncWrite + Unpin>(
    conn: &mut PeerConn<T>,
    bytes: &[u8],
    kind: ReplyKind,
) -> io::Result<PeerReply> {
    conn.stream.write_all(bytes).await?;
    let mut reply = PeerReplyBuilder::new(kind);
    let (stream, reader, buf) = (&mut conn.stream, &mut conn.reader, &mut conn.buf);
    read_whole(stream, reader, buf, kind, "closed by peer", |e| {
        reply.push(e)
    })
    .await
}
