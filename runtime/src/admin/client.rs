//! One blocking text-protocol connection to an index server or a node, following admin-tool.md §2: a 1 s connect
//! timeout, a `version` handshake, a `--timeout` deadline on every request except `dump` and `dump_key`, and `quit`
//! when dropped.
//!
//! Replies are read with core's [`ReplyReader`], so every frame rule (CRLF, `VALUE` lines followed by exactly `len`
//! bytes, size limits) is the one the servers themselves use; anything else becomes [`AdminError::Protocol`] and the
//! connection is not used again. The tool is a short-lived, mostly sequential program, so it uses plain blocking
//! sockets rather than the daemons' tokio runtime; the few fan-outs (`stats` on every node) use scoped threads.
//!
//! A connection to a group of index servers ([`Conn::index_group`]) goes to the leader, as their `stats` name it
//! (else to the first server that answers), and keeps the list: a read whose server goes away is read again from
//! the next live one, and a command a follower refuses with `not the index leader` is sent again to the leader it
//! names, or, during an election, once one is elected, within the request timeout. A command whose connection
//! breaks is not sent again (it may have been applied).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flare_core::config::Secret;
use flare_core::protocol::admin::{AdminCommand, IndexCommand};
use flare_core::protocol::lines;
use flare_core::protocol::reply::{ReplyEvent, ReplyKind, ReplyReader, ValueBlock};
use flare_core::protocol::{Limits, ITEM_SIZE_HARD_MAX};

use super::error::{reason, AdminError, Result};
use super::indexes::{self, Choice, GroupView, NotLeader};

/// Connect timeout (admin-tool.md §2.1).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// The pause before asking a group again while it elects a leader.
const ELECTION_PAUSE: Duration = Duration::from_millis(200);

/// `host:port` of a server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Host name or address, exactly as given (node names are used as `stats nodes` prints them).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// `host:port` with an explicit port.
    pub fn new(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`.
    pub fn parse(s: &str) -> Result<Endpoint> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| AdminError::Usage(format!("invalid node '{s}' (expected host:port)")))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && !host.is_empty())
            .ok_or_else(|| AdminError::Usage(format!("invalid node '{s}' (expected host:port)")))?;
        Ok(Endpoint::new(host, port))
    }

    /// The node key (`name:port`, cluster.md §2.1).
    pub fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where `--debug` writes the wire traffic (stderr or `--log-file`); off by default.
#[derive(Clone, Default)]
pub struct Trace(Option<Arc<Mutex<Box<dyn Write + Send>>>>);

impl Trace {
    /// A trace writing to `out`.
    pub fn to(out: Box<dyn Write + Send>) -> Trace {
        Trace(Some(Arc::new(Mutex::new(out))))
    }

    /// Logs one line (`> command` or `< reply`) exchanged with `addr`.
    pub fn line(&self, addr: &str, direction: char, text: &[u8]) {
        if let Some(out) = &self.0 {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(
                out,
                "[debug] {addr} {direction} {}",
                String::from_utf8_lossy(text)
            );
        }
    }
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Trace(on)"
        } else {
            "Trace(off)"
        })
    }
}

/// What every connection needs to know.
#[derive(Clone, Debug)]
pub struct ConnOpts {
    /// `--timeout`: the deadline of one request (dumps have none).
    pub timeout: Duration,
    /// `--debug` output.
    pub trace: Trace,
    /// `--cluster-secret`: sent as `auth <secret>` to the index right after the handshake.
    pub secret: Option<String>,
}

/// The server's `version` answer, read as flare-tools reads it (admin-tool.md §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerVersion {
    /// `flare` unless the reply names another.
    pub name: String,
    /// `x.y.z` as numbers; a part that is not a number counts as 0.
    pub numbers: Vec<u64>,
}

impl ServerVersion {
    /// From the reply line; a line that is not `VERSION ...` is version 0.0.0.
    pub fn parse(line: &str) -> ServerVersion {
        let Some(text) = line.strip_prefix("VERSION ") else {
            return ServerVersion {
                name: "flare".into(),
                numbers: vec![0, 0, 0],
            };
        };
        let word = text.split(' ').next().unwrap_or("");
        let parts: Vec<&str> = word.split('-').collect();
        let (name, version) = match parts.as_slice() {
            [name, version, ..] => (*name, *version),
            [version] => ("flare", *version),
            [] => ("flare", "0"),
        };
        ServerVersion {
            name: name.to_string(),
            numbers: version.split('.').map(|p| p.parse().unwrap_or(0)).collect(),
        }
    }

    /// True when this version is at least `min` (compared part by part, missing parts as 0).
    pub fn at_least(&self, min: &[u64]) -> bool {
        let n = self.numbers.len().max(min.len());
        let get = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        (0..n)
            .map(|i| get(&self.numbers, i).cmp(&get(min, i)))
            .find(|o| o.is_ne())
            .is_none_or(|o| o.is_gt())
    }
}

/// A connection to one server.
pub struct Conn {
    what: &'static str,
    addr: String,
    stream: TcpStream,
    buf: BytesMut,
    chunk: Vec<u8>,
    reader: ReplyReader,
    opts: ConnOpts,
    /// The index servers this connection may move to (empty: it stays with its server).
    group: Vec<Endpoint>,
    /// The handshake's answer.
    pub version: ServerVersion,
}

impl Conn {
    /// Connects to the index server and shakes hands.
    pub fn index(at: &Endpoint, opts: &ConnOpts) -> Result<Conn> {
        let mut conn = Conn::open("index server", at, opts)?;
        if let Some(secret) = opts.secret.as_deref().filter(|s| !s.is_empty()) {
            let auth = IndexCommand::Auth(Secret::from(secret));
            let answer = conn.call_line(&AdminCommand::Index(auth).to_line())?;
            if answer != "OK" {
                return Err(AdminError::Refused {
                    what: "index server",
                    addr: conn.addr.clone(),
                    command: "auth <cluster secret>".into(),
                    reply: answer,
                });
            }
        }
        Ok(conn)
    }

    /// Connects to the leader of the index servers `servers` (a group of one: to that server, exactly as
    /// [`Conn::index`]). A server that is down is skipped; a follower leads to the leader it names; when no server
    /// names a leader, the first one that answered is used (followers forward map changes).
    pub fn index_group(servers: &[Endpoint], opts: &ConnOpts) -> Result<Conn> {
        let mut conn = match servers {
            [] => return Err(AdminError::Usage("no index server given".into())),
            [one] => Conn::index(one, opts)?,
            several => Conn::leader_of(several, opts)?,
        };
        conn.group = servers.to_vec();
        Ok(conn)
    }

    fn leader_of(servers: &[Endpoint], opts: &ConnOpts) -> Result<Conn> {
        let mut fallback = None;
        let mut failures = Vec::new();
        for at in servers {
            let mut conn = match Conn::index(at, opts) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(short(&e));
                    continue;
                }
            };
            let view = match conn.stats(None) {
                Ok(stats) => GroupView::from_stats(&stats),
                Err(e) => {
                    failures.push(short(&e));
                    continue;
                }
            };
            match indexes::choice(&view, at) {
                Choice::Here => return Ok(conn),
                Choice::Leader(leader) => {
                    if let Some(c) = Conn::confirmed_leader(&leader, opts) {
                        return Ok(c);
                    }
                }
                Choice::Elsewhere => {}
            }
            fallback.get_or_insert(conn);
        }
        fallback.ok_or_else(|| AdminError::NoIndexServer(failures.join("; ")))
    }

    /// A connection to `at` if it says it is the leader.
    fn confirmed_leader(at: &Endpoint, opts: &ConnOpts) -> Option<Conn> {
        let mut c = Conn::index(at, opts).ok()?;
        let view = GroupView::from_stats(&c.stats(None).ok()?);
        view.is_leader().then_some(c)
    }

    /// Connects to a node and shakes hands.
    pub fn node(at: &Endpoint, opts: &ConnOpts) -> Result<Conn> {
        Conn::open("node", at, opts)
    }

    /// Connects to `at` (`what` names it in errors) and sends `version` first (admin-tool.md §2.2).
    pub fn open(what: &'static str, at: &Endpoint, opts: &ConnOpts) -> Result<Conn> {
        let addr = at.to_string();
        let fail = |reason: String| AdminError::Connect {
            what,
            addr: addr.clone(),
            reason,
        };
        let addrs: Vec<_> = (at.host.as_str(), at.port)
            .to_socket_addrs()
            .map_err(|_| fail("cannot resolve the name".into()))?
            .collect();
        let mut last = fail("the name has no address".into());
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = fail(reason(&e)),
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        let limits = Limits {
            item_size_max: ITEM_SIZE_HARD_MAX,
            ..Limits::default()
        };
        let mut conn = Conn {
            what,
            addr,
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            chunk: vec![0; READ_CHUNK],
            reader: ReplyReader::new(limits),
            opts: opts.clone(),
            group: Vec::new(),
            version: ServerVersion::parse(""),
        };
        let line = conn.call_line("version")?;
        conn.version = ServerVersion::parse(&line);
        Ok(conn)
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `command` and returns its one-line reply (`OK`, `STORED`, an error line, ...). On a group, a
    /// follower's `not the index leader` is sent again to the leader until the request timeout; after that the
    /// refusal is the reply.
    pub fn call_line(&mut self, command: &str) -> Result<String> {
        let until = Instant::now() + self.opts.timeout;
        loop {
            let reply = self.call_line_once(command)?;
            match indexes::not_leader(&reply) {
                Some(hint) if !self.group.is_empty() && Instant::now() < until => {
                    self.follow(hint)?
                }
                _ => return Ok(reply),
            }
        }
    }

    fn call_line_once(&mut self, command: &str) -> Result<String> {
        self.send_command(command)?;
        let deadline = self.deadline();
        match self.event(ReplyKind::Line, deadline)? {
            ReplyEvent::Line(l) => Ok(String::from_utf8_lossy(&l).into_owned()),
            other => Err(self.protocol(format!("unexpected {other:?}"))),
        }
    }

    /// Sends `command` and fails unless the reply is `OK`.
    pub fn expect_ok(&mut self, command: &str) -> Result<()> {
        let reply = self.call_line(command)?;
        if reply == "OK" {
            Ok(())
        } else {
            Err(self.refused(command, reply))
        }
    }

    /// Sends `command` and returns the listing lines before `END` (`stats`, `meta`); an error line fails. On a
    /// group of several, a read whose connection breaks is read again from the next live server.
    pub fn call_lines(&mut self, command: &str) -> Result<Vec<String>> {
        match self.call_lines_once(command) {
            Err(AdminError::Io { .. }) if self.group.len() > 1 => {
                self.reconnect()?;
                self.call_lines_once(command)
            }
            r => r,
        }
    }

    fn call_lines_once(&mut self, command: &str) -> Result<Vec<String>> {
        self.send_command(command)?;
        let deadline = self.deadline();
        let mut out = Vec::new();
        loop {
            match self.event(ReplyKind::Lines, deadline)? {
                ReplyEvent::Item(l) => out.push(String::from_utf8_lossy(&l).into_owned()),
                ReplyEvent::End => return Ok(out),
                ReplyEvent::Line(l) => {
                    return Err(self.refused(command, String::from_utf8_lossy(&l).into_owned()))
                }
                other => return Err(self.protocol(format!("unexpected {other:?}"))),
            }
        }
    }

    /// `stats [group]` as (name, value) pairs, in the server's order (admin-tool.md §2.4).
    pub fn stats(&mut self, group: Option<&str>) -> Result<Vec<(String, String)>> {
        let command = match group {
            Some(g) => format!("stats {g}"),
            None => "stats".to_string(),
        };
        let lines = self.call_lines(&command)?;
        lines
            .iter()
            .map(|l| {
                let (k, v) = match lines::stat_str(l.as_bytes()) {
                    Some(kv) => kv,
                    // `STAT <name>` without a value: an empty value, as this reader has always taken it.
                    None => match l.strip_prefix("STAT ") {
                        Some(name) => (name, ""),
                        None => return Err(self.protocol(format!("not a STAT line: {l:?}"))),
                    },
                };
                Ok((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// Streams the items of a `dump ...` command to `on` (no deadline: a dump takes as long as it takes). Returns the
    /// number of items.
    pub fn dump(
        &mut self,
        command: &str,
        mut on: impl FnMut(ValueBlock) -> Result<()>,
    ) -> Result<u64> {
        self.send_command(command)?;
        let mut n = 0;
        loop {
            match self.event(ReplyKind::Values, None)? {
                ReplyEvent::Value(v) => {
                    n += 1;
                    on(v)?;
                }
                ReplyEvent::End => return Ok(n),
                ReplyEvent::Line(l) => {
                    return Err(self.refused(command, String::from_utf8_lossy(&l).into_owned()))
                }
                other => return Err(self.protocol(format!("unexpected {other:?}"))),
            }
        }
    }

    /// Streams the keys of a `dump_key ...` command (`KEY <key>` lines, admin-tool.md §2.6) to `on`. Returns the
    /// number of keys.
    pub fn dump_keys(
        &mut self,
        command: &str,
        mut on: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        self.send_command(command)?;
        let mut n = 0;
        loop {
            match self.event(ReplyKind::Lines, None)? {
                ReplyEvent::Item(l) => {
                    let key = l
                        .strip_prefix(b"KEY ")
                        .filter(|k| !k.is_empty())
                        .ok_or_else(|| {
                            self.protocol(format!(
                                "not a KEY line: {:?}",
                                String::from_utf8_lossy(&l)
                            ))
                        })?;
                    n += 1;
                    on(key)?;
                }
                ReplyEvent::End => return Ok(n),
                ReplyEvent::Line(l) => {
                    return Err(self.refused(command, String::from_utf8_lossy(&l).into_owned()))
                }
                other => return Err(self.protocol(format!("unexpected {other:?}"))),
            }
        }
    }

    /// Writes raw request bytes (pipelined `set`s); read the replies with [`Conn::read_line`].
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).map_err(|e| self.io(&e))
    }

    /// Reads one reply line within the request timeout.
    pub fn read_line(&mut self) -> Result<String> {
        let deadline = self.deadline();
        match self.event(ReplyKind::Line, deadline)? {
            ReplyEvent::Line(l) => Ok(String::from_utf8_lossy(&l).into_owned()),
            other => Err(self.protocol(format!("unexpected {other:?}"))),
        }
    }

    /// An [`AdminError::Refused`] for `command` answered by `reply`.
    pub fn refused(&self, command: &str, reply: String) -> AdminError {
        AdminError::Refused {
            what: self.what,
            addr: self.addr.clone(),
            command: command.to_string(),
            reply,
        }
    }

    /// Moves to the leader a follower named, or (no leader yet) waits a moment and chooses again.
    fn follow(&mut self, hint: NotLeader) -> Result<()> {
        if let NotLeader::LeaderIs(leader) = &hint {
            if let Ok(c) = Conn::index(leader, &self.opts) {
                let group = std::mem::take(&mut self.group);
                *self = c;
                self.group = group;
                return Ok(());
            }
        }
        std::thread::sleep(ELECTION_PAUSE);
        self.reconnect()
    }

    /// Chooses again among the group (see [`Conn::index_group`]).
    fn reconnect(&mut self) -> Result<()> {
        *self = Conn::index_group(&self.group, &self.opts)?;
        Ok(())
    }

    fn send_command(&mut self, command: &str) -> Result<()> {
        self.opts.trace.line(&self.addr, '>', command.as_bytes());
        let mut bytes = Vec::with_capacity(command.len() + 2);
        bytes.extend_from_slice(command.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes)
    }

    fn deadline(&self) -> Option<Instant> {
        Some(Instant::now() + self.opts.timeout)
    }

    /// The next reply event, reading more bytes as needed until `deadline`.
    fn event(&mut self, kind: ReplyKind, deadline: Option<Instant>) -> Result<ReplyEvent> {
        loop {
            match self.reader.next(&mut self.buf, kind) {
                Ok(Some(e)) => {
                    self.trace_event(&e);
                    return Ok(e);
                }
                Ok(None) => self.fill(deadline)?,
                Err(e) => return Err(self.protocol(e.to_string())),
            }
        }
    }

    fn fill(&mut self, deadline: Option<Instant>) -> Result<()> {
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.io(&io::Error::from(io::ErrorKind::TimedOut)));
                }
                Some(left)
            }
            None => None,
        };
        self.stream
            .set_read_timeout(wait)
            .map_err(|e| self.io(&e))?;
        match self.stream.read(&mut self.chunk) {
            Ok(0) => Err(self.io(&io::Error::from(io::ErrorKind::UnexpectedEof))),
            Ok(n) => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(self.io(&e)),
        }
    }

    fn trace_event(&self, e: &ReplyEvent) {
        match e {
            ReplyEvent::Line(l) | ReplyEvent::Item(l) => self.opts.trace.line(&self.addr, '<', l),
            ReplyEvent::End => {
                let end = lines::END_LINE.trim_ascii_end();
                self.opts.trace.line(&self.addr, '<', end)
            }
            ReplyEvent::Value(v) => self.opts.trace.line(&self.addr, '<', &v.key),
            ReplyEvent::MetaValue { line, .. } => self.opts.trace.line(&self.addr, '<', line),
        }
    }

    fn io(&self, e: &io::Error) -> AdminError {
        AdminError::Io {
            what: self.what,
            addr: self.addr.clone(),
            reason: reason(e),
        }
    }

    fn protocol(&self, reason: String) -> AdminError {
        AdminError::Protocol {
            what: self.what,
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// A failure as `<server>: <reason>`, for the list of servers that all failed.
fn short(e: &AdminError) -> String {
    match e {
        AdminError::Connect { addr, reason, .. } | AdminError::Io { addr, reason, .. } => {
            format!("{addr}: {reason}")
        }
        other => other.to_string(),
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // admin-tool.md §2.7: say goodbye; the answer (or the close) does not matter.
        let _ = self.stream.write_all(b"quit\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing_follows_flare_tools() {
        let v = ServerVersion::parse("VERSION flare-2.0.0");
        assert_eq!(
            (v.name.as_str(), v.numbers.clone()),
            ("flare", vec![2, 0, 0])
        );
        assert!(v.at_least(&[1, 0, 10]) && v.at_least(&[1, 3, 1]) && v.at_least(&[2]));
        assert!(!v.at_least(&[2, 0, 1]));
        let bare = ServerVersion::parse("VERSION 1.3.4");
        assert_eq!((bare.name.as_str(), bare.numbers), ("flare", vec![1, 3, 4]));
        let odd = ServerVersion::parse("VERSION x-1.b.3 extra");
        assert_eq!((odd.name.as_str(), odd.numbers), ("x", vec![1, 0, 3]));
        assert_eq!(ServerVersion::parse("ERROR").numbers, vec![0, 0, 0]);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("node1:12121").unwrap(),
            Endpoint::new("node1", 12121)
        );
        for bad in ["node1", "node1:", ":1", "node1:x", "node1:0", "node1:70000"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_connection_names_the_server() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = ConnOpts {
            timeout: Duration::from_secs(1),
            trace: Trace::default(),
            secret: None,
        };
        let e = Conn::index(&Endpoint::new("127.0.0.1", port), &opts)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!("cannot connect to index server 127.0.0.1:{port}: connection refused")
        );
    }

    use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

    /// A scripted index server on loopback, for the group logic without a real group: `answer` maps each request
    /// line (after `version`) to its whole reply, or to `None` to close the connection.
    fn scripted(answer: fn(&str) -> Option<String>) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().unwrap();
                    let lines = io::BufRead::lines(io::BufReader::new(stream));
                    for line in lines.map_while(|l| l.ok()) {
                        let reply = match line.trim_end() {
                            "quit" => None,
                            "version" => Some("VERSION flare-2.0.0\r\n".to_string()),
                            other => answer(other),
                        };
                        match reply {
                            Some(r) if out.write_all(r.as_bytes()).is_ok() => {}
                            _ => return,
                        }
                    }
                });
            }
        });
        port
    }

    fn dead_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn opts() -> ConnOpts {
        ConnOpts {
            timeout: Duration::from_secs(2),
            trace: Trace::default(),
            secret: None,
        }
    }

    fn local(port: u16) -> Endpoint {
        Endpoint::new("127.0.0.1", port)
    }

    #[test]
    fn a_group_connection_skips_a_dead_server_and_goes_to_the_leader() {
        static LEADER: AtomicU16 = AtomicU16::new(0);
        let leader = scripted(|line| match line {
            "stats" => Some("STAT index_role leader\r\nEND\r\n".into()),
            "node state n 1 down" => Some("OK\r\n".into()),
            _ => Some("ERROR\r\n".into()),
        });
        LEADER.store(leader, Ordering::SeqCst);
        let follower = scripted(|line| match line {
            "stats" => Some(format!(
                "STAT index_role follower\r\nSTAT index_leader 127.0.0.1:{}\r\nEND\r\n",
                LEADER.load(Ordering::SeqCst)
            )),
            _ => Some("SERVER_ERROR wrong server\r\n".into()),
        });
        let group = [local(dead_port()), local(follower), local(leader)];
        let mut c = Conn::index_group(&group, &opts()).unwrap();
        assert_eq!(c.addr(), format!("127.0.0.1:{leader}"));
        assert_eq!(c.call_line("node state n 1 down").unwrap(), "OK");
        // With every server down, the error names each one.
        let (a, b) = (dead_port(), dead_port());
        let e = Conn::index_group(&[local(a), local(b)], &opts())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot connect to any index server: 127.0.0.1:{a}: connection refused; \
                 127.0.0.1:{b}: connection refused"
            )
        );
    }

    #[test]
    fn a_followers_refusal_is_sent_again_to_the_leader_it_names() {
        static LEADER: AtomicU16 = AtomicU16::new(0);
        let leader = scripted(|line| match line {
            "stats" => Some("STAT index_role leader\r\nEND\r\n".into()),
            "index add 127.0.0.1:9" => Some("OK\r\n".into()),
            _ => Some("ERROR\r\n".into()),
        });
        LEADER.store(leader, Ordering::SeqCst);
        // A follower given alone, refusing the change with the leader's name.
        let follower = scripted(|_| {
            Some(format!(
                "SERVER_ERROR not the index leader; leader is 127.0.0.1:{}\r\n",
                LEADER.load(Ordering::SeqCst)
            ))
        });
        let mut c = Conn::index_group(&[local(follower)], &opts()).unwrap();
        assert_eq!(c.addr(), format!("127.0.0.1:{follower}"));
        assert_eq!(c.call_line("index add 127.0.0.1:9").unwrap(), "OK");
        assert_eq!(c.addr(), format!("127.0.0.1:{leader}"));
        // With no leader elected until the timeout, the refusal is the answer: no endless loop.
        let lost = scripted(|line| match line {
            "stats" => Some("STAT index_role candidate\r\nSTAT index_leader -\r\nEND\r\n".into()),
            _ => Some("SERVER_ERROR not the index leader; no leader elected yet\r\n".into()),
        });
        let quick = ConnOpts {
            timeout: Duration::from_secs(1),
            ..opts()
        };
        let mut c = Conn::index_group(&[local(lost)], &quick).unwrap();
        let started = Instant::now();
        assert_eq!(
            c.call_line("node state n 1 down").unwrap(),
            "SERVER_ERROR not the index leader; no leader elected yet"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_read_whose_server_goes_away_is_read_from_the_next() {
        // The first server answers its first `stats` (the leader choice), then closes every connection.
        static STATS_SEEN: AtomicU32 = AtomicU32::new(0);
        let flaky = scripted(|line| {
            let first = line == "stats" && STATS_SEEN.fetch_add(1, Ordering::SeqCst) == 0;
            first.then(|| "STAT index_role leader\r\nEND\r\n".into())
        });
        let steady = scripted(|line| match line {
            "stats" => Some("STAT index_role leader\r\nEND\r\n".into()),
            "stats nodes" => Some("STAT n:1:role proxy\r\nEND\r\n".into()),
            _ => Some("ERROR\r\n".into()),
        });
        let mut c = Conn::index_group(&[local(flaky), local(steady)], &opts()).unwrap();
        assert_eq!(c.addr(), format!("127.0.0.1:{flaky}"));
        assert_eq!(
            c.stats(Some("nodes")).unwrap(),
            [("n:1:role".to_string(), "proxy".to_string())]
        );
        assert_eq!(c.addr(), format!("127.0.0.1:{steady}"));
        // A command is not sent again after its connection broke: it may have been applied.
        let breaks =
            scripted(|line| (line == "stats").then(|| "STAT index_role leader\r\nEND\r\n".into()));
        let mut c = Conn::index_group(&[local(breaks), local(steady)], &opts()).unwrap();
        assert!(matches!(
            c.call_line("node state n 1 down"),
            Err(AdminError::Io { .. })
        ));
    }
}
