//! The client side of the Ruby flare-tools (admin-tool.md §2), written from the spec.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use flare_core::protocol::lines;

/// §2.1: connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// §2.1: `--timeout` default, per request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// §2.7: how long `quit` waits for `END`, `OK` or the close.
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(1);
/// Not the tool's: `dump` and `dump_key` have no timeout (§2.1), but a hung test should still end.
const STREAM_GUARD: Duration = Duration::from_secs(60);

/// Why the tool would report NG for a command.
#[derive(Debug)]
pub enum Failure {
    /// Connect, read or write failed.
    Io(String),
    /// No terminator within the request timeout (the tool gives up).
    Timeout(String),
    /// A line ended by `\n` alone, or a `\r` inside a line: the tool splits on `\r\n` (§2.4).
    NotCrlf(String),
    /// `EXISTS`, `ERROR`, `CLIENT_ERROR` or `SERVER_ERROR` (§2.3).
    Refused(String),
    /// A line the parser of this command does not accept (§2.4–§2.6).
    Malformed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, detail) = match self {
            Failure::Io(d) => ("I/O error", d),
            Failure::Timeout(d) => ("timeout", d),
            Failure::NotCrlf(d) => ("line not ended by CRLF", d),
            Failure::Refused(d) => ("refused", d),
            Failure::Malformed(d) => ("unparsable reply", d),
        };
        write!(f, "{what}: {detail}")
    }
}

/// Result of one tool step.
pub type Result<T> = std::result::Result<T, Failure>;

/// The server version as the tool sees it (§2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Name part (`flare` when the reply has no `-`).
    pub name: String,
    /// `x.y.z` as integers; a part that is not a number is 0.
    pub number: Vec<u64>,
}

impl Version {
    /// Parses the first reply line to `version`.
    pub fn parse(line: &str) -> Version {
        let Some(rest) = line.strip_prefix("VERSION") else {
            return Version {
                name: "flare".into(),
                number: vec![0, 0, 0],
            };
        };
        let text = rest.trim_start_matches(' ').split(' ').next().unwrap_or("");
        let parts: Vec<&str> = text.split('-').collect();
        let (name, version) = if parts.len() >= 2 {
            (parts[0], parts[1])
        } else {
            ("flare", parts[0])
        };
        let number = version
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect();
        Version {
            name: name.into(),
            number,
        }
    }

    /// `self >= want`, comparing part by part (missing parts are 0).
    pub fn at_least(&self, want: &[u64]) -> bool {
        let n = self.number.len().max(want.len());
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        for i in 0..n {
            let (a, b) = (at(&self.number, i), at(want, i));
            if a != b {
                return a > b;
            }
        }
        true
    }
}

/// One item of an item stream (§2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Key.
    pub key: String,
    /// Client flags.
    pub flag: u32,
    /// Version (`gets`, `dump`).
    pub version: Option<u64>,
    /// Absolute expiry (`dump`).
    pub expire: Option<i64>,
    /// Exactly `len` bytes.
    pub data: Vec<u8>,
}

/// One node of `stats nodes`, split as the tool splits it (§2.4, stats.md §3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// `name:port`, the key every later command uses.
    pub key: String,
    /// Name part.
    pub name: String,
    /// Port part.
    pub port: String,
    /// Fields in the order they came (`role`, `state`, ...).
    pub fields: Vec<(String, String)>,
}

impl Node {
    /// A field's value ("" when missing).
    pub fn get(&self, field: &str) -> &str {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map_or("", |(_, v)| v.as_str())
    }

    /// `partition` as a number.
    pub fn partition(&self) -> i64 {
        self.get("partition").parse().unwrap_or(-1)
    }

    /// `balance` as a number.
    pub fn balance(&self) -> i64 {
        self.get("balance").parse().unwrap_or(0)
    }
}

/// One connection of the tool.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// What the handshake found.
    pub version: Version,
    /// The `--timeout` in effect.
    pub timeout: Duration,
    /// `host:port` connected to.
    pub addr: String,
}

impl Conn {
    /// Connects (1 s timeout) and sends `version` first (§2.1, §2.2).
    pub fn open(addr: &str) -> Result<Conn> {
        Self::open_with_timeout(addr, REQUEST_TIMEOUT)
    }

    /// [`Conn::open`] with another `--timeout`.
    pub fn open_with_timeout(addr: &str, timeout: Duration) -> Result<Conn> {
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| Failure::Io(format!("resolve {addr}: {e}")))?
            .next()
            .ok_or_else(|| Failure::Io(format!("{addr} does not resolve")))?;
        let stream = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT)
            .map_err(|e| Failure::Io(format!("connect {addr}: {e}")))?;
        stream.set_nodelay(true).ok();
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            version: Version::parse(""),
            timeout,
            addr: addr.into(),
        };
        conn.send(b"version\r\n")?;
        let deadline = Instant::now() + timeout;
        let line = conn.line(Some(deadline))?;
        conn.version = Version::parse(&line);
        Ok(conn)
    }

    /// Generic reply reader (§2.3): the lines before the first terminator. `OK`, `END`, `STORED`, `DELETED` and
    /// `NOT_FOUND` are success; `EXISTS`, `ERROR`, `CLIENT_ERROR` and `SERVER_ERROR` are failure. Anything else
    /// (including `NOT_STORED`, [Odd]) is payload, and the reader keeps going until the timeout.
    pub fn request(&mut self, cmd: &str) -> Result<Vec<String>> {
        self.exchange(cmd, None).map(|(payload, _)| payload)
    }

    /// [`Conn::request`] for a storage command and its data block (`set` in `restore` and `verify`), returning
    /// the terminator line, since which success word came (`STORED`, `DELETED`, ...) matters to the caller.
    pub fn request_terminator(&mut self, cmd: &str, data: Option<&[u8]>) -> Result<String> {
        self.exchange(cmd, data).map(|(_, terminator)| terminator)
    }

    fn exchange(&mut self, cmd: &str, data: Option<&[u8]>) -> Result<(Vec<String>, String)> {
        let mut out = format!("{cmd}\r\n").into_bytes();
        if let Some(d) = data {
            out.extend_from_slice(d);
            out.extend_from_slice(b"\r\n");
        }
        self.send(&out)?;
        let deadline = Instant::now() + self.timeout;
        let mut payload = Vec::new();
        loop {
            let line = self.line(Some(deadline))?;
            match line.split(' ').next().unwrap_or("") {
                "OK" | "END" | "STORED" | "DELETED" | "NOT_FOUND" => return Ok((payload, line)),
                "EXISTS" | "ERROR" | "CLIENT_ERROR" | "SERVER_ERROR" => {
                    return Err(Failure::Refused(format!("{cmd}: {line}")))
                }
                _ => payload.push(line),
            }
        }
    }

    /// `stats`: `STAT ` removed, each line split at its first space (§2.4), which is how the lexer reads a `STAT`
    /// line.
    pub fn stats(&mut self) -> Result<Vec<(String, String)>> {
        self.request("stats")?
            .into_iter()
            .map(|l| {
                let (k, v) = lines::stat_str(l.as_bytes())
                    .ok_or_else(|| Failure::Malformed(format!("stats: {l}")))?;
                Ok((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// One `stats` field.
    pub fn stat(&mut self, name: &str) -> Result<String> {
        self.stats()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Failure::Malformed(format!("no stat {name}")))
    }

    /// `stats nodes` as raw `(name, port, field, value)`: each line split at its first two `:`, then at a space
    /// (§2.4, stats.md §3).
    pub fn stats_nodes_raw(&mut self) -> Result<Vec<(String, String, String, String)>> {
        self.request("stats nodes")?
            .into_iter()
            .map(|l| {
                let bad = || Failure::Malformed(format!("stats nodes: {l}"));
                let rest = l.strip_prefix("STAT ").ok_or_else(bad)?;
                let mut it = rest.splitn(3, ':');
                let (name, port, stat) = (
                    it.next().ok_or_else(bad)?,
                    it.next().ok_or_else(bad)?,
                    it.next().ok_or_else(bad)?,
                );
                let (field, value) = stat.split_once(' ').ok_or_else(bad)?;
                Ok((name.into(), port.into(), field.into(), value.into()))
            })
            .collect()
    }

    /// `stats nodes` grouped by node key, in the order the keys came.
    pub fn stats_nodes(&mut self) -> Result<Vec<Node>> {
        let mut nodes: Vec<Node> = Vec::new();
        for (name, port, field, value) in self.stats_nodes_raw()? {
            let key = format!("{name}:{port}");
            if nodes.last().is_none_or(|n| n.key != key) {
                nodes.push(Node {
                    key,
                    name,
                    port,
                    fields: Vec::new(),
                });
            }
            nodes
                .last_mut()
                .expect("pushed just above")
                .fields
                .push((field, value));
        }
        Ok(nodes)
    }

    /// `stats threads`, only sent to servers ≥ 1.0.10 (§2.2); each line split at its first `:`, then at a
    /// space. Every thread must have `peer`, `op`, `type`, `queue` and `behind` (stats.md §2).
    pub fn stats_threads(&mut self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut threads: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        if !self.version.at_least(&[1, 0, 10]) {
            return Ok(threads);
        }
        for l in self.request("stats threads")? {
            let bad = || Failure::Malformed(format!("stats threads: {l}"));
            let rest = l.strip_prefix("STAT ").ok_or_else(bad)?;
            let (id, stat) = rest.split_once(':').ok_or_else(bad)?;
            let (field, value) = stat.split_once(' ').ok_or_else(bad)?;
            threads
                .entry(id.into())
                .or_default()
                .insert(field.into(), value.into());
        }
        for (id, t) in &threads {
            for f in ["peer", "op", "type", "queue", "behind"] {
                if !t.contains_key(f) {
                    return Err(Failure::Malformed(format!("thread {id} has no {f}: {t:?}")));
                }
            }
        }
        Ok(threads)
    }

    /// `meta`: `META ` removed, each line split at its first space (§2.4).
    pub fn meta(&mut self) -> Result<Vec<(String, String)>> {
        self.request("meta")?
            .into_iter()
            .map(|l| {
                let rest = l
                    .strip_prefix("META ")
                    .ok_or_else(|| Failure::Malformed(format!("meta: {l}")))?;
                let (k, v) = rest
                    .split_once(' ')
                    .ok_or_else(|| Failure::Malformed(format!("meta: {l}")))?;
                Ok((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// Item stream (§2.5): `VALUE <key> <flag> <len> [<version> [<expire>]]`, `len` bytes and a line end, until
    /// `END`. Any other line fails the command. `dump` has no timeout; `get`/`gets` have the request timeout.
    pub fn items(&mut self, cmd: &str) -> Result<Vec<Item>> {
        self.send(format!("{cmd}\r\n").as_bytes())?;
        let deadline = Some(self.deadline_for(cmd));
        let mut items = Vec::new();
        loop {
            let line = self.line(deadline)?;
            if lines::is_end(line.as_bytes()) {
                return Ok(items);
            }
            let bad = || Failure::Malformed(format!("{cmd}: {line}"));
            // The tool's own split, not `lines::value_header`: every single space separates, and the expire is
            // signed.
            let t: Vec<&str> = line.split(' ').collect();
            if t[0] != "VALUE" || !(4..=6).contains(&t.len()) {
                return Err(bad());
            }
            let flag = t[2].parse().map_err(|_| bad())?;
            let len: usize = t[3].parse().map_err(|_| bad())?;
            let version = t.get(4).map(|v| v.parse()).transpose().map_err(|_| bad())?;
            let expire = t.get(5).map(|v| v.parse()).transpose().map_err(|_| bad())?;
            let mut data = self.exact(len + 2, deadline)?;
            if !data.ends_with(b"\r\n") {
                return Err(Failure::NotCrlf(format!(
                    "{cmd}: data of {} not ended by CRLF",
                    t[1]
                )));
            }
            data.truncate(len);
            items.push(Item {
                key: t[1].into(),
                flag,
                version,
                expire,
                data,
            });
        }
    }

    /// Key stream (§2.6): `KEY <key>` lines, then `END`. Any other line fails. No timeout.
    pub fn keys(&mut self, cmd: &str) -> Result<Vec<String>> {
        self.send(format!("{cmd}\r\n").as_bytes())?;
        let deadline = Some(self.deadline_for(cmd));
        let mut keys = Vec::new();
        loop {
            let line = self.line(deadline)?;
            if lines::is_end(line.as_bytes()) {
                return Ok(keys);
            }
            match line.strip_prefix("KEY ") {
                Some(k) if !k.is_empty() && !k.contains(' ') => keys.push(k.into()),
                _ => return Err(Failure::Malformed(format!("{cmd}: {line}"))),
            }
        }
    }

    /// Closing (§2.7): `quit`, then `END`, `OK` or the connection closing within 1 s.
    pub fn close(mut self) -> Result<()> {
        self.send(b"quit\r\n")?;
        let deadline = Instant::now() + QUIT_TIMEOUT;
        match self.line(Some(deadline)) {
            Ok(l) if lines::is_end(l.as_bytes()) || l == "OK" => Ok(()),
            Ok(l) => Err(Failure::Malformed(format!("quit: {l}"))),
            Err(Failure::Io(e)) if e.contains("closed") || e.contains("reset") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn deadline_for(&self, cmd: &str) -> Instant {
        let stream = cmd.starts_with("dump");
        Instant::now() + if stream { STREAM_GUARD } else { self.timeout }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .map_err(|e| Failure::Io(format!("write to {}: {e}", self.addr)))
    }

    /// One line without its `\r\n`; a bare `\n` or a stray `\r` is a failure.
    fn line(&mut self, deadline: Option<Instant>) -> Result<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&raw).into_owned();
                if i == 0 || raw[i - 1] != b'\r' || raw[..i - 1].contains(&b'\r') {
                    return Err(Failure::NotCrlf(format!("{}: {text:?}", self.addr)));
                }
                return Ok(text[..text.len() - 2].to_string());
            }
            self.fill(deadline)?;
        }
    }

    fn exact(&mut self, n: usize, deadline: Option<Instant>) -> Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill(deadline)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn fill(&mut self, deadline: Option<Instant>) -> Result<()> {
        let left = match deadline {
            Some(d) => d
                .checked_duration_since(Instant::now())
                .filter(|l| !l.is_zero()),
            None => Some(Duration::from_secs(3600)),
        };
        let Some(left) = left else {
            return Err(Failure::Timeout(format!(
                "{}: no terminator after {:?} (have {:?})",
                self.addr,
                self.timeout,
                String::from_utf8_lossy(&self.buf)
            )));
        };
        self.stream.set_read_timeout(Some(left)).ok();
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(Failure::Io(format!("{}: connection closed", self.addr))),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                Err(Failure::Io(format!("{}: connection reset", self.addr)))
            }
            Err(e) => Err(Failure::Io(format!("{}: {e}", self.addr))),
        }
    }
}
