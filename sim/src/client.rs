//! A small memcached text client over turmoil TCP, for the workload and the admin: one connection to one server,
//! opened on first use, one request at a time, every request under a deadline. Any failure (refused, reset, timeout,
//! unreadable reply) drops the connection, so a late reply can never be taken for the next request's; the next
//! call reconnects. Replies are parsed with core's [`ReplyReader`], as the nodes parse each other's.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flare_core::protocol::reply::{ReplyEvent, ReplyKind, ReplyReader, ValueBlock};
use flare_core::protocol::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

/// A whole reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A one-line reply (also the error line that ends a values or lines reply).
    Line(Bytes),
    /// `VALUE` blocks up to `END`.
    Values(Vec<ValueBlock>),
    /// Listing lines up to `END`.
    Lines(Vec<Bytes>),
}

/// Why a call got no reply.
#[derive(Debug)]
pub enum CallError {
    /// No reply before the deadline.
    Timeout,
    /// Connecting, writing or reading failed.
    Io(io::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => write!(f, "timeout"),
            CallError::Io(e) => write!(f, "{:?}", e.kind()),
        }
    }
}

/// A connection to one server.
pub struct TextClient {
    host: String,
    port: u16,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

impl TextClient {
    /// A client for `host:port` (not connected yet).
    pub fn new(host: &str, port: u16) -> Self {
        TextClient {
            host: host.to_string(),
            port,
            stream: None,
            buf: BytesMut::new(),
        }
    }

    /// Sends `request` (whole command lines with their data) and reads one reply of `kind`, all within `timeout`.
    pub async fn call(
        &mut self,
        request: &[u8],
        kind: ReplyKind,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        match tokio::time::timeout(timeout, self.exchange(request, kind)).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                self.reset();
                Err(CallError::Io(e))
            }
            Err(_) => {
                self.reset();
                Err(CallError::Timeout)
            }
        }
    }

    /// Sends a `noreply` request, then `version` as a fence, and waits for the `VERSION` line: whatever the server
    /// answered to the first (an error line, say) is skipped, and the connection stays in step.
    pub async fn call_noreply(
        &mut self,
        request: &[u8],
        timeout: Duration,
    ) -> Result<(), CallError> {
        let mut req = request.to_vec();
        req.extend_from_slice(b"version\r\n");
        let fenced = async {
            let mut first = true;
            loop {
                let sent: &[u8] = if first { &req } else { b"" };
                first = false;
                match self.exchange(sent, ReplyKind::Line).await? {
                    Answer::Line(l) if l.starts_with(b"VERSION") => return Ok(()),
                    _ => continue,
                }
            }
        };
        match tokio::time::timeout(timeout, fenced).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.reset();
                Err(CallError::Io(e))
            }
            Err(_) => {
                self.reset();
                Err(CallError::Timeout)
            }
        }
    }

    /// Drops the connection.
    pub fn reset(&mut self) {
        self.stream = None;
        self.buf.clear();
    }

    async fn exchange(&mut self, request: &[u8], kind: ReplyKind) -> io::Result<Answer> {
        if self.stream.is_none() {
            self.stream = Some(TcpStream::connect((self.host.as_str(), self.port)).await?);
            self.buf.clear();
        }
        let stream = self
            .stream
            .as_mut()
            .expect("invariant: connected just above");
        if !request.is_empty() {
            stream.write_all(request).await?;
        }
        let mut reader = ReplyReader::new(Limits::default());
        let mut values = Vec::new();
        let mut lines = Vec::new();
        loop {
            while let Some(event) = reader.next(&mut self.buf, kind).map_err(io::Error::other)? {
                match event {
                    ReplyEvent::Line(l) => return Ok(Answer::Line(l)),
                    ReplyEvent::Value(v) => values.push(v),
                    ReplyEvent::Item(l) => lines.push(l),
                    ReplyEvent::End if kind == ReplyKind::Values => {
                        return Ok(Answer::Values(values))
                    }
                    ReplyEvent::End => return Ok(Answer::Lines(lines)),
                    ReplyEvent::MetaValue { line, .. } => return Ok(Answer::Line(line)),
                }
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
        }
    }
}
