//! The small network-and-clock interface the drivers are generic over: TCP listen/accept/connect and the wall-clock
//! Unix time. [`TokioNet`] is the production implementation; the simulation implements it on turmoil, whose
//! sockets and (tokio) clock are simulated, so the same driver code runs in both (shared/toolchain.md). Also
//! [`read_reply`], how a driver reads one reply from a peer it asked.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use flare_core::protocol::reply::{ReplyEvent, ReplyKind, ReplyReader};
use flare_core::protocol::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// A listening socket.
pub trait Listener: Send + 'static {
    /// The accepted streams.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Sockets and wall-clock time for a driver.
pub trait Net: Clone + Send + Sync + 'static {
    /// A connected stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listener producing [`Net::Stream`]s.
    type Listener: Listener<Stream = Self::Stream>;
    /// Binds a listener.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to `host:port` (a name is resolved by the network).
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Current Unix time in seconds (item expiry, `stats time`).
    fn unix_time(&self) -> u64;
}

/// Real TCP on tokio and the system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

/// A tokio listener that sets `TCP_NODELAY` on every accepted stream (replies are written whole).
#[derive(Debug)]
pub struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, peer) = self.0.accept().await?;
        let _ = s.set_nodelay(true);
        Ok((s, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TokioListener> {
        Ok(TokioListener(tokio::net::TcpListener::bind(addr).await?))
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        let s = tokio::net::TcpStream::connect((host, port)).await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    fn unix_time(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Reads one whole reply of `kind` from a connection that has nothing else buffered (a reply ends as
/// [`flare_core::node::wire::ends_reply`] says). An unreadable reply is `InvalidData`, end of stream before the reply
/// ends `UnexpectedEof`.
pub async fn read_reply<T: AsyncRead + Unpin>(
    s: &mut T,
    limits: Limits,
    kind: ReplyKind,
) -> io::Result<Vec<ReplyEvent>> {
    let (mut reader, mut buf) = (ReplyReader::new(limits), BytesMut::with_capacity(4096));
    let mut out = Vec::new();
    read_whole(s, &mut reader, &mut buf, kind, "connection closed", |e| {
        let last = flare_core::node::wire::ends_reply(&e, kind);
        out.push(e);
        last.then(|| std::mem::take(&mut out))
    })
    .await
}

/// Reads the events of a reply of `kind` off `stream` (through `reader` and `buf`, which a kept connection reuses)
/// until `whole` makes the reply of them; an unreadable reply is `InvalidData`, an end of stream before the reply is
/// whole `UnexpectedEof` (`closed`).
pub(crate) async fn read_whole<T: AsyncRead + Unpin, R>(
    stream: &mut T,
    reader: &mut ReplyReader,
    buf: &mut BytesMut,
    kind: ReplyKind,
    closed: &'static str,
    mut whole: impl FnMut(ReplyEvent) -> Option<R>,
) -> io::Result<R> {
    loop {
        while let Some(event) = reader
            .next(buf, kind)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            if let Some(reply) = whole(event) {
                return Ok(reply);
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, closed));
        }
    }
}
