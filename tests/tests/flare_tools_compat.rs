//! The contract with GREE's Ruby flare-tools (`flare-admin`, `flare-stats`) as an end-to-end test.
//!
//! The Ruby tools cannot be installed here, so [`tool`] re-implements their client side exactly as
//! admin-tool.md §2 describes it (1 s connect, `version` handshake and version gates, the generic reply reader with
//! its terminator words and 10 s timeout, CRLF-only payload parsing, item and key streams, `quit` on close). It
//! deliberately shares no parser with `flare-core` (only its key resolver is used, to recompute partitions in
//! `verify`): a reply that only our own parsers accept is a bug here.
//!
//! [`admin`] then runs the subcommands with exactly the command sequences of admin-tool.md §4 (`list`, `ping`,
//! `master`, `slave`, `balance`, `down`, `reconstruct`, `remove`, `dump`, `dumpkey`, `verify`, `index`, `threads`,
//! `stats`, `summary`), and the test drives a real cluster of `flarei`/`flared` processes through a runbook that
//! touches every item of the server compatibility checklist (admin-tool.md §6, #1–#13), checking that data written
//! before each step is still readable through the cluster afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flare_tests::Flared;

/// The client side of the Ruby flare-tools (admin-tool.md §2), written from the spec.
mod tool {
    use std::collections::BTreeMap;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::{Duration, Instant};

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
                    "OK" | "END" | "STORED" | "DELETED" | "NOT_FOUND" => {
                        return Ok((payload, line))
                    }
                    "EXISTS" | "ERROR" | "CLIENT_ERROR" | "SERVER_ERROR" => {
                        return Err(Failure::Refused(format!("{cmd}: {line}")))
                    }
                    _ => payload.push(line),
                }
            }
        }

        /// `stats`: `STAT ` removed, each line split at its first space (§2.4).
        pub fn stats(&mut self) -> Result<Vec<(String, String)>> {
            self.request("stats")?
                .into_iter()
                .map(|l| {
                    let rest = l
                        .strip_prefix("STAT ")
                        .ok_or_else(|| Failure::Malformed(format!("stats: {l}")))?;
                    let (k, v) = rest
                        .split_once(' ')
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
                if line == "END" {
                    return Ok(items);
                }
                let bad = || Failure::Malformed(format!("{cmd}: {line}"));
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
                if line == "END" {
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
                Ok(l) if l == "END" || l == "OK" => Ok(()),
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
}

/// The subcommands of `flare-admin`/`flare-stats`, with the command sequences of admin-tool.md §4 and the progress
/// loop of §5. Prompts are answered "yes"; the safety checks the tool makes without `--force` are kept.
mod admin {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use super::tool::{Conn, Failure, Item, Node, Result};

    /// How often the progress loops poll (the tool polls once per second; the test is in a hurry).
    const POLL: Duration = Duration::from_millis(100);
    /// Not the tool's (it waits forever): a build that takes longer fails the test.
    const BUILD_GUARD: Duration = Duration::from_secs(30);
    /// `--retry` default of `master`, `slave` and `reconstruct`.
    const RETRY: u32 = 10;

    /// `name port` of a node key, as the commands take it.
    fn name_port(key: &str) -> String {
        let (h, p) = key.rsplit_once(':').expect("node key is name:port");
        format!("{h} {p}")
    }

    fn find<'a>(nodes: &'a [Node], key: &str) -> Result<&'a Node> {
        nodes
            .iter()
            .find(|n| n.key == key)
            .ok_or_else(|| Failure::Malformed(format!("{key} is not in stats nodes")))
    }

    fn items_of(key: &str) -> Result<u64> {
        let mut n = Conn::open(key)?;
        let v = n.stat("curr_items")?;
        n.close()?;
        v.parse()
            .map_err(|_| Failure::Malformed(format!("curr_items {v}")))
    }

    /// Sends a map-changing command, retrying with sleeps of 1, 2, … s as the tool does; returns the attempts used.
    fn retried(index: &mut Conn, cmd: &str) -> Result<u32> {
        let mut attempt = 1;
        loop {
            match index.request(cmd) {
                Ok(_) => return Ok(attempt),
                Err(e) if attempt >= RETRY => return Err(e),
                Err(e) => {
                    eprintln!("{cmd}: {e}, retrying");
                    std::thread::sleep(Duration::from_secs(attempt.into()));
                    attempt += 1;
                }
            }
        }
    }

    /// `list`: `stats nodes` as the tool's table (sorted by partition with proxies last, then role, then key).
    pub fn list(index: &str) -> Result<Vec<String>> {
        let mut i = Conn::open(index)?;
        let mut nodes = i.stats_nodes()?;
        i.close()?;
        nodes.sort_by_key(|n| {
            let p = n.partition();
            (p < 0, p, n.get("role").to_string(), n.key.clone())
        });
        let mut out = vec![format!(
            "{:<32} {:>9} {:>6} {:>6} {:>7}",
            "node", "partition", "role", "state", "balance"
        )];
        for n in &nodes {
            let p = if n.partition() < 0 {
                "-".to_string()
            } else {
                n.partition().to_string()
            };
            out.push(format!(
                "{:<32} {:>9} {:>6} {:>6} {:>7}",
                n.key,
                p,
                n.get("role"),
                n.get("state"),
                n.get("balance")
            ));
        }
        Ok(out)
    }

    /// `ping host:port ...`: `version`, then `ping` expecting `OK`.
    pub fn ping(addrs: &[String]) -> Result<()> {
        for a in addrs {
            let mut c = Conn::open(a)?;
            c.request("ping")?;
            c.close()?;
        }
        Ok(())
    }

    /// What a `master` run saw.
    #[derive(Debug)]
    pub struct MasterRun {
        /// State at which the progress loop stopped.
        pub stopped_at: String,
        /// Progress lines (§5).
        pub progress: Vec<String>,
    }

    /// `master host:port:B:P [--activate]`.
    pub fn master(
        index: &str,
        key: &str,
        balance: i64,
        partition: i64,
        activate: bool,
    ) -> Result<MasterRun> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        let node = find(&nodes, key)?;
        // Skipped (without --force) unless the node is a proxy and the partition has no master.
        if node.get("role") != "proxy" {
            return Err(Failure::Malformed(format!("{key} is not a proxy")));
        }
        if nodes
            .iter()
            .any(|n| n.get("role") == "master" && n.partition() == partition)
        {
            return Err(Failure::Malformed(format!(
                "partition {partition} has a master"
            )));
        }
        let mut n = Conn::open(key)?;
        n.request("flush_all")?;
        retried(
            &mut i,
            &format!("node role {} master {balance} {partition}", name_port(key)),
        )?;
        let started = Instant::now();
        let mut progress = Vec::new();
        let stopped_at = loop {
            let nodes = i.stats_nodes()?;
            let me = find(&nodes, key)?;
            let items = n.stat("curr_items")?;
            let (role, state) = (me.get("role").to_string(), me.get("state").to_string());
            progress.push(format!(
                "{items} (role = {role}, state = {state}) [ETA: n/a sec (elapsed = {} sec)]",
                started.elapsed().as_secs()
            ));
            if (role == "master" && state == "ready") || state == "active" {
                break state;
            }
            if started.elapsed() > BUILD_GUARD {
                return Err(Failure::Timeout(format!("master build: {progress:?}")));
            }
            std::thread::sleep(POLL);
        };
        if partition != 0 && stopped_at == "active" {
            eprintln!("master of partition {partition} should have become ready, not active");
        }
        if activate {
            i.request(&format!("node state {} active", name_port(key)))?;
        }
        n.close()?;
        i.close()?;
        Ok(MasterRun {
            stopped_at,
            progress,
        })
    }

    /// One sample of the slave-build progress loop (§5).
    #[derive(Clone, Debug)]
    pub struct Sample {
        /// Slave `curr_items`.
        pub slave_items: u64,
        /// Master `curr_items`.
        pub master_items: u64,
        /// Slave role in index `stats nodes`.
        pub role: String,
        /// Slave state in index `stats nodes`.
        pub state: String,
    }

    /// The slave-build progress loop: I: `stats nodes`, N(master): `stats`, N(slave): `stats`, until the slave
    /// is `slave`/`active`.
    fn slave_progress(i: &mut Conn, key: &str, partition: i64) -> Result<Vec<Sample>> {
        let started = Instant::now();
        let mut samples = Vec::new();
        loop {
            let nodes = i.stats_nodes()?;
            let me = find(&nodes, key)?.clone();
            let master = nodes
                .iter()
                .find(|n| n.get("role") == "master" && n.partition() == partition)
                .ok_or_else(|| {
                    Failure::Malformed(format!("partition {partition} has no master"))
                })?;
            let master_items = items_of(&master.key)?;
            let slave_items = items_of(key)?;
            let elapsed = started.elapsed().as_secs();
            let eta = if elapsed == 0 || slave_items == 0 {
                "n/a".to_string()
            } else {
                (master_items.saturating_sub(slave_items) / (slave_items / elapsed).max(1))
                    .to_string()
            };
            eprintln!(
                "{slave_items}/{master_items} (role = {}, state = {}) [ETA: {eta} sec (elapsed = {elapsed} sec)]",
                me.get("role"),
                me.get("state")
            );
            let s = Sample {
                slave_items,
                master_items,
                role: me.get("role").into(),
                state: me.get("state").into(),
            };
            let done = s.role == "slave" && s.state == "active";
            samples.push(s);
            if done {
                eprintln!("state is active -> stop waiting");
                return Ok(samples);
            }
            if started.elapsed() > BUILD_GUARD {
                return Err(Failure::Timeout(format!("slave build: {samples:?}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// `slave host:port:B:P`: returns the progress samples.
    pub fn slave(index: &str, key: &str, balance: i64, partition: i64) -> Result<Vec<Sample>> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        if find(&nodes, key)?.get("role") != "proxy" {
            return Err(Failure::Malformed(format!("{key} is not a proxy.")));
        }
        let mut n = Conn::open(key)?;
        n.request("flush_all")?;
        n.close()?;
        retried(
            &mut i,
            &format!("node role {} slave 0 {partition}", name_port(key)),
        )?;
        eprintln!("started constructing slave node...");
        let samples = slave_progress(&mut i, key, partition)?;
        if balance > 0 {
            i.request(&format!(
                "node role {} slave {balance} {partition}",
                name_port(key)
            ))?;
        }
        i.close()?;
        Ok(samples)
    }

    /// `balance host:port:B`: `node role <h> <p> <current role> <B> <current partition>`.
    pub fn balance(index: &str, key: &str, balance: i64) -> Result<()> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        let n = find(&nodes, key)?;
        i.request(&format!(
            "node role {} {} {balance} {}",
            name_port(key),
            n.get("role"),
            n.partition()
        ))?;
        i.close()
    }

    /// `down host:port`.
    pub fn down(index: &str, key: &str) -> Result<()> {
        let mut i = Conn::open(index)?;
        find(&i.stats_nodes()?, key)?;
        i.request(&format!("node state {} down", name_port(key)))?;
        i.close()
    }

    /// Why `reconstruct` (without `--unsafe`) refuses a node, or None when it goes ahead.
    pub fn reconstruct_refusal(nodes: &[Node], key: &str) -> Option<String> {
        let me = nodes.iter().find(|n| n.key == key)?;
        let active_slaves = nodes
            .iter()
            .filter(|n| {
                n.key != key
                    && n.get("role") == "slave"
                    && n.get("state") == "active"
                    && n.partition() == me.partition()
            })
            .count();
        let reconstructable = me.get("state") == "active"
            && (me.get("role") == "slave" || (me.get("role") == "master" && active_slaves >= 1));
        if !reconstructable {
            return Some(format!("{key} is not reconstructable"));
        }
        let safe = if me.get("role") == "slave" {
            active_slaves >= 1
        } else {
            active_slaves >= 2
        };
        (!safe).then(|| format!("The partition needs one more slave to reconstruct {key} safely."))
    }

    /// What a `reconstruct` run saw.
    #[derive(Debug)]
    pub struct ReconstructRun {
        /// The node's `stats nodes` record after the 3 s sleep.
        pub after_sleep: Node,
        /// `curr_items` of the node before and after its `flush_all`.
        pub items_before_flush: u64,
        /// See above.
        pub items_after_flush: u64,
        /// `curr_items` of every other node before and after the `flush_all`.
        pub others_around_flush: Vec<(String, u64, u64)>,
        /// Attempts `node role ... slave 0 P` needed.
        pub role_attempts: u32,
        /// Progress samples.
        pub samples: Vec<Sample>,
    }

    /// `reconstruct host:port`.
    pub fn reconstruct(index: &str, key: &str) -> Result<ReconstructRun> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        if let Some(why) = reconstruct_refusal(&nodes, key) {
            return Err(Failure::Malformed(why));
        }
        let me = find(&nodes, key)?.clone();
        let (partition, old_balance) = (me.partition(), me.balance());
        let others: Vec<String> = nodes
            .iter()
            .filter(|n| n.key != key && n.get("state") != "down")
            .map(|n| n.key.clone())
            .collect();
        eprintln!("turning down...");
        i.request(&format!("node state {} down", name_port(key)))?;
        std::thread::sleep(Duration::from_secs(3));
        eprintln!("waiting for node to be active again...");
        let after_sleep = find(&i.stats_nodes()?, key)?.clone();
        let before: Vec<u64> = others.iter().map(|k| items_of(k)).collect::<Result<_>>()?;
        let items_before_flush = items_of(key)?;
        let mut n = Conn::open(key)?;
        n.request("flush_all")?;
        n.close()?;
        let items_after_flush = items_of(key)?;
        let after: Vec<u64> = others.iter().map(|k| items_of(k)).collect::<Result<_>>()?;
        let role_attempts = retried(
            &mut i,
            &format!("node role {} slave 0 {partition}", name_port(key)),
        )?;
        eprintln!("started constructing node...");
        let samples = slave_progress(&mut i, key, partition)?;
        i.request(&format!(
            "node role {} slave {old_balance} {partition}",
            name_port(key)
        ))?;
        eprintln!("done.");
        i.close()?;
        Ok(ReconstructRun {
            after_sleep,
            items_before_flush,
            items_after_flush,
            others_around_flush: others
                .into_iter()
                .zip(before.into_iter().zip(after))
                .map(|(k, (b, a))| (k, b, a))
                .collect(),
            role_attempts,
            samples,
        })
    }

    /// `remove host:port`: only a proxy that is down.
    pub fn remove(index: &str, key: &str) -> Result<()> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        let n = find(&nodes, key)?;
        if n.get("role") != "proxy" || n.get("state") != "down" {
            return Err(Failure::Malformed(format!(
                "{key} is {}/{}, not a down proxy",
                n.get("role"),
                n.get("state")
            )));
        }
        i.request(&format!("node remove {}", name_port(key)))?;
        i.close()
    }

    /// Partition count as `dump` computes it: highest partition in `stats nodes` + 1.
    pub fn partition_count(nodes: &[Node]) -> i64 {
        nodes.iter().map(Node::partition).max().unwrap_or(-1) + 1
    }

    /// `dump host:port --bwlimit=<bits/s>`: `dump 0 <P> <Pcount> <kBps>`, and the `default` format's lines.
    pub fn dump(index: &str, key: &str, bwlimit_bits: u64) -> Result<(Vec<Item>, Vec<String>)> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        i.close()?;
        let p = find(&nodes, key)?.partition();
        let mut n = Conn::open(key)?;
        let items = n.items(&format!(
            "dump 0 {p} {} {}",
            partition_count(&nodes),
            bwlimit_bits / 8192
        ))?;
        n.close()?;
        let lines = items
            .iter()
            .map(|it| {
                format!(
                    "{} {} {} {} {} '{}'",
                    it.key,
                    it.flag,
                    it.data.len(),
                    it.version.unwrap_or(0),
                    it.expire.unwrap_or(0),
                    String::from_utf8_lossy(&it.data)
                )
            })
            .collect();
        Ok((items, lines))
    }

    /// `dumpkey host:port -p P -s S`: `dump_key <P> <S>`.
    pub fn dumpkey(key: &str, partition: i64, count: i64) -> Result<Vec<String>> {
        let mut n = Conn::open(key)?;
        let keys = n.keys(&format!("dump_key {partition} {count}"))?;
        n.close()?;
        Ok(keys)
    }

    /// Key, partition count → partition, built from `meta`.
    pub type PartitionOf = Box<dyn Fn(&str, i64) -> i64>;

    /// What `verify --meta` found for one node.
    #[derive(Debug)]
    pub struct Verified {
        /// Node key.
        pub key: String,
        /// Its partition.
        pub partition: i64,
        /// Keys from `dump_key`.
        pub keydump: Vec<String>,
        /// Keys from `dump`.
        pub dump: Vec<String>,
        /// Keys whose recomputed partition is not the node's.
        pub misplaced: Vec<String>,
    }

    /// `verify --meta --key-hash-algorithm=<from meta>`: I: `stats nodes`, `meta`, `stats`; every master and slave:
    /// `dump_key <P> <Pcount>`, `dump 0 <P> <Pcount> 0`; each key's partition recomputed by `partition_of`.
    pub fn verify(
        index: &str,
        resolver: &dyn Fn(&BTreeMap<String, String>) -> PartitionOf,
    ) -> Result<(BTreeMap<String, String>, Vec<Verified>)> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        let meta: BTreeMap<String, String> = i.meta()?.into_iter().collect();
        let _pointer_size = i.stat("pointer_size")?;
        i.close()?;
        let partition_of = resolver(&meta);
        let count = partition_count(&nodes);
        let mut out = Vec::new();
        // Proxies are skipped ([Improve]; the Ruby tool fails on `dump_key -1 …`).
        for n in nodes.iter().filter(|n| n.partition() >= 0) {
            let p = n.partition();
            let keydump = dumpkey(&n.key, p, count)?;
            let mut c = Conn::open(&n.key)?;
            let dump: Vec<String> = c
                .items(&format!("dump 0 {p} {count} 0"))?
                .into_iter()
                .map(|it| it.key)
                .collect();
            c.close()?;
            let misplaced: Vec<String> = keydump
                .iter()
                .chain(&dump)
                .filter(|k| partition_of(k, count) != p)
                .cloned()
                .collect();
            eprintln!(
                "checking {} ... keydump ... {} entries. dump ... {} entries. {}",
                n.key,
                keydump.len(),
                dump.len(),
                if misplaced.is_empty() { "OK" } else { "NG" }
            );
            out.push(Verified {
                key: n.key.clone(),
                partition: p,
                keydump,
                dump,
                misplaced,
            });
        }
        Ok((meta, out))
    }

    /// `index --increment=N`: I: `stats nodes`, `stats`; the `flare.xml` the tool writes (reduced to its values).
    pub fn index(index: &str, increment: u64) -> Result<(u64, String)> {
        let mut i = Conn::open(index)?;
        if !i.version.at_least(&[1, 3, 1]) {
            return Err(Failure::Malformed("index needs flare >= 1.3.1".into()));
        }
        let nodes = i.stats_nodes()?;
        let v = i.stat("node_map_version")?;
        i.close()?;
        let version: u64 = v
            .parse()
            .map_err(|_| Failure::Malformed(format!("node_map_version {v}")))?;
        let code = |field: &str, v: &str| -> Result<u32> {
            let names: &[&str] = if field == "role" {
                &["master", "slave", "proxy"]
            } else {
                &["active", "prepare", "down", "ready"]
            };
            names
                .iter()
                .position(|n| *n == v)
                .map(|p| p as u32)
                .ok_or_else(|| Failure::Malformed(format!("{field} {v}")))
        };
        let mut xml = format!("<version>{}</version>\n<node_map>\n", version + increment);
        let mut thread_type_max = 0;
        for n in &nodes {
            let tt: i64 = n
                .get("thread_type")
                .parse()
                .map_err(|_| Failure::Malformed(format!("thread_type of {}", n.key)))?;
            thread_type_max = thread_type_max.max(tt);
            xml += &format!(
                "<item><first>{}</first><second><node_server_name>{}</node_server_name>\
                 <node_server_port>{}</node_server_port><node_role>{}</node_role><node_state>{}</node_state>\
                 <node_partition>{}</node_partition><node_balance>{}</node_balance>\
                 <node_thread_type>{tt}</node_thread_type></second></item>\n",
                n.key,
                n.name,
                n.port,
                code("role", n.get("role"))?,
                code("state", n.get("state"))?,
                n.partition(),
                n.balance(),
            );
        }
        xml += &format!(
            "</node_map>\n<thread_type>{}</thread_type>\n",
            thread_type_max + 1
        );
        Ok((version, xml))
    }

    /// `threads [host:port]`: the table of `stats threads`.
    pub fn threads(addr: &str) -> Result<Vec<String>> {
        let mut c = Conn::open(addr)?;
        let threads = c.stats_threads()?;
        c.close()?;
        let mut out = vec![format!(
            "{:>5} {:<32} {:<13} {:>4} {:>8}",
            "id", "peer", "operation", "type", "queue"
        )];
        for (id, t) in &threads {
            let op = if t["op"].is_empty() { "-" } else { &t["op"] };
            out.push(format!(
                "{id:>5} {:<32} {op:<13} {:>4} {:>8}",
                t["peer"], t["type"], t["queue"]
            ));
        }
        Ok(out)
    }

    fn uptime(secs: u64) -> String {
        match secs {
            s if s < 60 => format!("{s}s"),
            s if s < 3600 => format!("{}m", s / 60),
            s if s < 86400 => format!("{}h", s / 3600),
            s => format!("{}d", s / 86400),
        }
    }

    fn num(stats: &BTreeMap<String, String>, k: &str) -> Result<u64> {
        let v = stats
            .get(k)
            .ok_or_else(|| Failure::Malformed(format!("stats has no {k}")))?;
        v.parse()
            .map_err(|_| Failure::Malformed(format!("stats {k} = {v}")))
    }

    /// `stats --qps --wait=<wait> --count=2`: I: `stats nodes`, `stats threads`; N: `stats` on every node, twice.
    /// `between` runs between the two samples. Returns one row of columns per node and sample 2.
    pub fn stats(
        index: &str,
        wait: Duration,
        between: &mut dyn FnMut(),
    ) -> Result<Vec<Vec<String>>> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        let threads = i.stats_threads()?;
        i.close()?;
        let sample = || -> Result<Vec<BTreeMap<String, String>>> {
            nodes
                .iter()
                .map(|n| {
                    let mut c = Conn::open(&n.key)?;
                    let s = c.stats()?.into_iter().collect();
                    c.close()?;
                    Ok(s)
                })
                .collect()
        };
        let first = sample()?;
        let t0 = Instant::now();
        between();
        std::thread::sleep(wait.saturating_sub(t0.elapsed()));
        let second = sample()?;
        let dt = t0.elapsed().as_secs_f64();
        let mut rows = Vec::new();
        for ((n, a), b) in nodes.iter().zip(&first).zip(&second) {
            let behind = threads
                .values()
                .find(|t| t["peer"] == n.key)
                .map_or("-".to_string(), |t| t["behind"].clone());
            let (get, hits) = (num(b, "cmd_get")?, num(b, "get_hits")?);
            let hit = if get == 0 {
                "-".to_string()
            } else {
                ((100.0 * hits as f64 / get as f64).round() as u64).to_string()
            };
            let bytes = num(b, "bytes")?;
            let size = if bytes == 0 {
                "-".to_string()
            } else {
                (bytes >> 30).to_string()
            };
            let rate = |k: &[&str]| -> Result<String> {
                let mut d = 0u64;
                for k in k {
                    d += num(b, k)?.saturating_sub(num(a, k)?);
                }
                Ok(if d == 0 {
                    "-".into()
                } else {
                    format!("{:.1}", d as f64 / dt)
                })
            };
            rows.push(vec![
                n.key.clone(),
                n.get("state").into(),
                n.get("role").into(),
                n.partition().to_string(),
                n.get("balance").into(),
                num(b, "curr_items")?.to_string(),
                num(b, "curr_connections")?.to_string(),
                behind,
                hit,
                size,
                uptime(num(b, "uptime")?),
                b.get("version").cloned().unwrap_or_default(),
                rate(&["cmd_get", "cmd_set"])?,
                rate(&["cmd_get"])?,
                rate(&["cmd_set"])?,
            ]);
        }
        Ok(rows)
    }

    /// `summary`: (masters, slaves, sum of master `bytes`, sum of master `curr_items`).
    pub fn summary(index: &str) -> Result<(usize, usize, u64, u64)> {
        let mut i = Conn::open(index)?;
        let nodes = i.stats_nodes()?;
        i.close()?;
        let (mut masters, mut slaves, mut size, mut items) = (0, 0, 0, 0);
        for n in &nodes {
            match n.get("role") {
                "master" => {
                    masters += 1;
                    let mut c = Conn::open(&n.key)?;
                    let s: BTreeMap<String, String> = c.stats()?.into_iter().collect();
                    c.close()?;
                    size += num(&s, "bytes")?;
                    items += num(&s, "curr_items")?;
                }
                "slave" => slaves += 1,
                _ => {}
            }
        }
        Ok((masters, slaves, size, items))
    }
}

use admin::Sample;
use tool::Conn;

/// Flare's `stats` fields, in Flare's order (stats.md §1): nodes and the index both start with exactly these.
const FLARE_STATS: [&str; 35] = [
    "pid",
    "uptime",
    "time",
    "version",
    "pointer_size",
    "rusage_user",
    "rusage_system",
    "curr_items",
    "total_items",
    "bytes",
    "curr_connections",
    "total_connections",
    "connection_structures",
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
    "evictions",
    "bytes_read",
    "bytes_written",
    "limit_maxbytes",
    "threads",
    "pool_threads",
    "node_map_version",
];

/// A cluster of real processes: the index and nodes `n0..n6`, each known by its node key.
struct Cluster {
    index: Flared,
    nodes: Vec<Flared>,
}

impl Cluster {
    fn start(count: usize) -> Cluster {
        let index = Flared::index(&["--monitor-interval=1", "--key-hash-algorithm=crc32"]);
        let port = index.port;
        // A pause after each dumped item (µs) keeps builds slow enough for the progress loop to watch them grow.
        let nodes = std::thread::scope(|s| {
            let handles: Vec<_> = (0..count)
                .map(|_| {
                    s.spawn(move || Flared::node_of(port, &["--reconstruction-interval=1000"]))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        Cluster { index, nodes }
    }

    fn index_addr(&self) -> String {
        self.index.addr()
    }

    fn key(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    fn index_conn(&self) -> Conn {
        Conn::open(&self.index_addr()).expect("connect to the index")
    }

    /// Node `i` in the index's `stats nodes` (None until it has registered).
    fn try_record(&self, i: usize) -> Option<tool::Node> {
        let mut c = self.index_conn();
        let nodes = c.stats_nodes().expect("stats nodes");
        c.close().expect("quit");
        let key = self.key(i);
        nodes.into_iter().find(|n| n.key == key)
    }

    fn record(&self, i: usize) -> tool::Node {
        self.try_record(i)
            .unwrap_or_else(|| panic!("n{i} ({}) not in stats nodes", self.key(i)))
    }

    /// Polls the index until node `i` is `role`/`state`; returns how long that took.
    fn wait_for(&self, i: usize, role: &str, state: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let r = self.try_record(i).unwrap_or_default();
            if r.get("role") == role && r.get("state") == state {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "n{i} is {}/{}, not {role}/{state} after {limit:?}",
                r.get("role"),
                r.get("state")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running node holds the index's node map (pushes are asynchronous). The tool never needs
    /// this; the test's own reads and writes through a proxy do.
    fn converged(&self, running: &[usize]) {
        let want = self.index_conn().stat("node_map_version").expect("stat");
        for &i in running {
            let ok = flare_tests::wait_until(Duration::from_secs(10), || {
                let mut c = Conn::open(&self.key(i)).expect("connect");
                c.stat("node_map_version").expect("stat") == want
            });
            assert!(ok, "n{i} did not get node map {want}");
        }
    }
}

/// Writes `count` keys `<prefix>:<i>` through node `via` with the tool's generic reader (`set` → `STORED`).
fn write_batch(c: &Cluster, via: usize, prefix: &str, count: usize) -> BTreeMap<String, Vec<u8>> {
    let mut conn = Conn::open(&c.key(via)).expect("connect");
    let mut written = BTreeMap::new();
    for i in 0..count {
        let key = format!("{prefix}:{i}");
        let value = format!("value of {key}").into_bytes();
        let line = conn
            .request_terminator(&format!("set {key} {i} 0 {}", value.len()), Some(&value))
            .unwrap_or_else(|e| panic!("set {key} via n{via}: {e:?}"));
        assert_eq!(line, "STORED", "set {key}");
        written.insert(key, value);
    }
    conn.close().expect("quit");
    written
}

/// Reads every key back through node `via` with `get` (item stream, 50 keys per request).
fn read_back(c: &Cluster, via: usize, data: &BTreeMap<String, Vec<u8>>, step: &str) {
    let mut conn = Conn::open(&c.key(via)).expect("connect");
    let keys: Vec<&String> = data.keys().collect();
    for chunk in keys.chunks(50) {
        let cmd = format!(
            "get {}",
            chunk
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let items = conn
            .items(&cmd)
            .unwrap_or_else(|e| panic!("after {step}: {e:?}"));
        let got: BTreeMap<&str, &[u8]> = items
            .iter()
            .map(|it| (it.key.as_str(), it.data.as_slice()))
            .collect();
        for k in chunk {
            assert_eq!(
                got.get(k.as_str()).copied(),
                Some(data[*k].as_slice()),
                "after {step}: {k} through n{via}"
            );
        }
    }
    conn.close().expect("quit");
}

/// Checks a slave build's progress (#11): it starts in prepare, curr_items only grows and passes through values
/// between empty and full, and it ends slave/active with the master's item count.
fn assert_build_progress(what: &str, samples: &[Sample]) {
    assert!(!samples.is_empty(), "{what}: no progress");
    assert_eq!(
        (samples[0].role.as_str(), samples[0].state.as_str()),
        ("slave", "prepare"),
        "{what}: the build starts in prepare: {samples:?}"
    );
    for w in samples.windows(2) {
        assert!(
            w[1].slave_items >= w[0].slave_items,
            "{what}: slave curr_items went down: {samples:?}"
        );
        assert!(
            w[0].role == "slave" && w[0].state == "prepare",
            "{what}: role/state before the end must stay slave/prepare: {samples:?}"
        );
    }
    let last = samples.last().expect("not empty");
    assert_eq!(
        (last.role.as_str(), last.state.as_str()),
        ("slave", "active")
    );
    assert!(
        last.master_items > 0 && last.slave_items == last.master_items,
        "{what}: ends with the master's items: {last:?}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.state == "prepare" && s.slave_items > 0 && s.slave_items < s.master_items),
        "{what}: curr_items must be seen growing during prepare: {samples:?}"
    );
}

/// Checks `stats` field names and order (#5) on one server.
fn assert_flare_stats(addr: &str) {
    let mut c = Conn::open(addr).expect("connect");
    let stats = c.stats().expect("stats");
    c.close().expect("quit");
    let names: Vec<&str> = stats.iter().map(|(k, _)| k.as_str()).take(35).collect();
    assert_eq!(
        names, FLARE_STATS,
        "{addr}: Flare's stats fields in Flare's order"
    );
    for (k, v) in &stats[..35] {
        assert!(
            !v.is_empty() && !v.contains(' '),
            "{addr}: stats {k} = {v:?}"
        );
    }
}

/// Checks the exact `stats nodes` layout (#4): five lines per node in order, node keys sorted, names without `:`.
fn assert_stats_nodes_format(index: &str) {
    let mut c = Conn::open(index).expect("connect");
    let raw = c.stats_nodes_raw().expect("stats nodes");
    c.close().expect("quit");
    assert_eq!(raw.len() % 5, 0, "five lines per node: {raw:?}");
    let mut keys = Vec::new();
    for chunk in raw.chunks(5) {
        let fields: Vec<&str> = chunk.iter().map(|(_, _, f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["role", "state", "partition", "balance", "thread_type"]
        );
        let (name, port) = (&chunk[0].0, &chunk[0].1);
        assert!(chunk.iter().all(|(n, p, _, _)| n == name && p == port));
        assert!(
            port.parse::<u16>().is_ok(),
            "the name has no ':': {chunk:?}"
        );
        let (role, state) = (&chunk[0].3, &chunk[1].3);
        assert!(
            ["master", "slave", "proxy"].contains(&role.as_str()),
            "{chunk:?}"
        );
        assert!(
            ["active", "prepare", "down", "ready"].contains(&state.as_str()),
            "{chunk:?}"
        );
        for (_, _, f, v) in &chunk[2..] {
            assert!(v.parse::<i64>().is_ok(), "{f} {v}");
        }
        keys.push(format!("{name}:{port}"));
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "stats nodes is in node-key order");
}

/// Key → partition under a partition count with the `meta` parameters, computed with flare-core's resolver (the
/// tool has its own, correct only for crc32).
fn resolver(meta: &BTreeMap<String, String>) -> admin::PartitionOf {
    use flare_core::keys::{HashAlgorithm, PartitionParams, Resolver};
    let n = |k: &str| meta[k].parse::<u32>().expect("meta value is a number");
    let params = PartitionParams {
        partition_size: n("partition-size"),
        virtual_slots: n("partition-modular-virtual"),
        hint: n("partition-modular-hint"),
        hash: HashAlgorithm::parse(&meta["key-hash-algorithm"]).expect("known algorithm"),
    };
    let r = Resolver::new(params).expect("meta parameters are valid");
    Box::new(move |key, count| {
        r.partition(key.as_bytes(), count as u32)
            .map_or(-1, i64::from)
    })
}

/// `verify --meta` (#9, #13): the `meta` format, and every master and slave dumps exactly its partition's keys, with
/// `dump` and `dump_key` agreeing, masters and slaves of a partition holding the same keys, and every written key
/// dumped by its partition.
fn verify(c: &Cluster, data: &BTreeMap<String, Vec<u8>>) {
    let mut i = c.index_conn();
    let meta = i.meta().expect("meta");
    i.close().expect("quit");
    let names: Vec<&str> = meta.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "partition-size",
            "key-hash-algorithm",
            "partition-type",
            "partition-modular-hint",
            "partition-modular-virtual"
        ],
        "meta lines (protocol.md §6)"
    );
    assert_eq!(meta[1].1, "crc32");
    assert_eq!(meta[2].1, "modular");
    let (_, verified) = admin::verify(&c.index_addr(), &resolver).expect("verify");
    let mut by_partition: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for v in &verified {
        assert!(
            v.misplaced.is_empty(),
            "{}: keys of other partitions {:?}",
            v.key,
            v.misplaced
        );
        let keydump: BTreeSet<String> = v.keydump.iter().cloned().collect();
        let dump: BTreeSet<String> = v.dump.iter().cloned().collect();
        assert_eq!(
            keydump.len(),
            v.keydump.len(),
            "{}: dump_key lists each key once",
            v.key
        );
        assert_eq!(
            keydump, dump,
            "{}: dump and dump_key list the same keys",
            v.key
        );
        if let Some(other) = by_partition.get(&v.partition) {
            assert_eq!(other, &dump, "{}: a slave holds its master's keys", v.key);
        }
        by_partition.insert(v.partition, dump);
    }
    let mut all = BTreeSet::new();
    for keys in by_partition.values() {
        assert!(keys.is_disjoint(&all), "partitions share keys");
        all.extend(keys.iter().cloned());
    }
    let written: BTreeSet<String> = data.keys().cloned().collect();
    assert_eq!(
        all, written,
        "the partitions' dumps hold exactly the written keys"
    );
}

#[test]
fn flare_admin_runbook_against_a_real_cluster() {
    let started = Instant::now();
    // n0: master 0, n1 and n4: slaves 0, n2: master 1, n3: slave 1, n5: proxy for client traffic, n6: proxy that is
    // set down, comes back, and is removed.
    let mut c = Cluster::start(7);
    let index = c.index_addr();
    let all: Vec<usize> = (0..7).collect();
    for i in 0..7 {
        c.wait_for(i, "proxy", "active", Duration::from_secs(20));
    }

    // #1: the handshake on the index and every node: a Flare-like name and a version past both gates. `ping`.
    let mut servers = vec![index.clone()];
    servers.extend((0..7).map(|i| c.key(i)));
    for addr in &servers {
        let conn = Conn::open(addr).expect("connect");
        assert_eq!(conn.version.name, "flare", "{addr}");
        assert!(
            conn.version.at_least(&[1, 0, 10]),
            "{addr}: {:?}",
            conn.version
        );
        assert!(
            conn.version.at_least(&[1, 3, 1]),
            "{addr}: {:?}",
            conn.version
        );
        conn.close().expect("quit");
    }
    admin::ping(&servers).expect("ping: alive");

    // #4, #5 on the fresh cluster, and `list`.
    assert_stats_nodes_format(&index);
    for addr in &servers {
        assert_flare_stats(addr);
    }
    let table = admin::list(&index).expect("list");
    assert_eq!(table.len(), 8);
    assert_eq!(
        table[0],
        "node                             partition   role  state balance"
    );
    let mut keys: Vec<String> = (0..7).map(|i| c.key(i)).collect();
    keys.sort();
    for (row, key) in table[1..].iter().zip(&keys) {
        assert_eq!(
            row,
            &format!(
                "{key:<32} {:>9} {:>6} {:>6} {:>7}",
                "-", "proxy", "active", "0"
            )
        );
    }
    let (version_at_start, _) = admin::index(&index, 0).expect("index");

    // #8, #12: `master --activate` of partition 0 stops at active at once.
    let run = admin::master(&index, &c.key(0), 1, 0, true).expect("master n0");
    assert_eq!(run.stopped_at, "active", "{run:?}");
    run.progress.iter().for_each(|l| eprintln!("{l}"));
    c.wait_for(0, "master", "active", Duration::from_secs(1));
    c.converged(&all);
    let mut data = write_batch(&c, 5, "a", 1000);

    // #11: `slave` builds while the index shows prepare and curr_items grows, then the balance is set.
    let samples = admin::slave(&index, &c.key(1), 1, 0).expect("slave n1");
    assert_build_progress("slave n1", &samples);
    assert_eq!(c.record(1).balance(), 1);
    let samples = admin::slave(&index, &c.key(4), 1, 0).expect("slave n4");
    assert_build_progress("slave n4", &samples);
    read_back(&c, 5, &data, "slaves of partition 0");

    // #12: `master` of partition 1 stops at ready (not active); `--activate` then activates it.
    let run = admin::master(&index, &c.key(2), 1, 1, true).expect("master n2");
    assert_eq!(run.stopped_at, "ready", "{run:?}");
    run.progress.iter().for_each(|l| eprintln!("{l}"));
    c.wait_for(2, "master", "active", Duration::from_secs(5));
    c.converged(&all);
    read_back(&c, 5, &data, "partition 1");
    data.extend(write_batch(&c, 5, "b", 500));
    let samples = admin::slave(&index, &c.key(3), 1, 1).expect("slave n3");
    assert_build_progress("slave n3", &samples);
    read_back(&c, 5, &data, "slave of partition 1");

    // `balance`: node role with the current role and partition.
    admin::balance(&index, &c.key(1), 2).expect("balance n1");
    assert_eq!(c.record(1).balance(), 2);
    c.converged(&all);
    read_back(&c, 5, &data, "balance");

    let table = admin::list(&index).expect("list");
    // (partition, proxies last; role; key) is the tool's order.
    let mut want = [
        (0, "master", 0, "1"),
        (0, "slave", 1, "2"),
        (0, "slave", 4, "1"),
        (1, "master", 2, "1"),
        (1, "slave", 3, "1"),
        (i64::MAX, "proxy", 5, "0"),
        (i64::MAX, "proxy", 6, "0"),
    ]
    .map(|(p, role, i, b)| (p, role, c.key(i), b));
    want.sort();
    let want: Vec<String> = want
        .iter()
        .map(|(p, role, key, b)| {
            let p = if *p == i64::MAX {
                "-".to_string()
            } else {
                p.to_string()
            };
            format!("{key:<32} {p:>9} {role:>6} {:>6} {b:>7}", "active")
        })
        .collect();
    assert_eq!(table[1..], want);
    assert_stats_nodes_format(&index);

    // `stats --qps` (flare-stats), #5, #6: columns from node stats, behind from the index's monitor threads.
    let mut reads = || read_back(&c, 5, &data, "stats");
    let rows = admin::stats(&index, Duration::from_secs(1), &mut reads).expect("stats");
    assert_eq!(rows.len(), 7);
    for r in &rows {
        eprintln!("{}", r.join(" "));
        assert!(
            r[7].parse::<u64>().is_ok(),
            "behind of {} from the index's stats threads: {r:?}",
            r[0]
        );
        assert_eq!(r[11], flare_core::VERSION, "{r:?}");
    }
    let proxy_row = rows.iter().find(|r| r[0] == c.key(5)).expect("n5 row");
    assert!(
        proxy_row[13] != "-",
        "reads through n5 show as qps-r: {proxy_row:?}"
    );
    let master_row = rows.iter().find(|r| r[0] == c.key(0)).expect("n0 row");
    assert!(master_row[5].parse::<u64>().unwrap() > 0, "{master_row:?}");
    let (masters, slaves, _, items) = admin::summary(&index).expect("summary");
    assert_eq!((masters, slaves, items), (2, 3, data.len() as u64));

    // #6: `threads` on the index (one monitor per node, peer = node key) and on a node.
    for addr in [&index, &c.key(0)] {
        let table = admin::threads(addr).expect("threads");
        assert_eq!(
            table[0],
            "   id peer                             operation     type    queue"
        );
        for r in &table {
            eprintln!("{r}");
        }
    }
    let mut i = c.index_conn();
    let threads = i.stats_threads().expect("stats threads");
    i.close().expect("quit");
    for n in 0..7 {
        let monitors: Vec<_> = threads.values().filter(|t| t["peer"] == c.key(n)).collect();
        assert_eq!(monitors.len(), 1, "one index thread for n{n}: {threads:?}");
        assert!(monitors[0]["behind"].parse::<u64>().is_ok());
        assert!(monitors[0]["type"].parse::<u32>().unwrap() >= 16);
    }

    // #9: `dump` (with a bandwidth limit, and `--raw`) and `dumpkey`, then `verify --meta` (#13).
    let (items, lines) = admin::dump(&index, &c.key(2), 8 * 1024 * 1024).expect("dump n2");
    assert!(!items.is_empty());
    for it in &items {
        assert!(
            it.version.is_some() && it.expire == Some(0),
            "dump lines carry version and expire: {it:?}"
        );
        assert_eq!(Some(&it.data), data.get(&it.key), "{}", it.key);
    }
    assert!(lines[0].ends_with('\''), "{}", lines[0]);
    let mut n0 = Conn::open(&c.key(0)).expect("connect");
    let raw = n0.items("dump 0 0 1 0").expect("dump --raw");
    let plain = n0.keys("dump_key").expect("dump_key");
    n0.close().expect("quit");
    assert_eq!(
        raw.len(),
        plain.len(),
        "dump_key without a partition lists what dump 0 0 1 does"
    );
    let keys = admin::dumpkey(&c.key(3), 1, 2).expect("dumpkey n3");
    assert_eq!(
        keys.into_iter().collect::<BTreeSet<_>>(),
        items
            .iter()
            .map(|it| it.key.clone())
            .collect::<BTreeSet<_>>(),
        "the slave of partition 1 lists its master's keys"
    );
    verify(&c, &data);
    // `verify --use-test-data`: `set .test.<hash>` through a node, later `delete`.
    let mut n5 = Conn::open(&c.key(5)).expect("connect");
    for i in 0..20 {
        let key = format!(
            ".test.{:032x}",
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let set = n5.request_terminator(&format!("set {key} 0 0 4"), Some(b"test"));
        assert_eq!(
            set.as_deref().ok(),
            Some("STORED"),
            "{set:?}\n{}",
            c.nodes[5].log()
        );
        let delete = n5.request_terminator(&format!("delete {key}"), None);
        assert_eq!(
            delete.as_deref().ok(),
            Some("DELETED"),
            "{delete:?}\n{}",
            c.nodes[5].log()
        );
    }
    n5.close().expect("quit");

    // #7, #10: `down` of a live proxy: it comes back as proxy/active within about one monitor interval.
    let (version_before_down, _) = admin::index(&index, 0).expect("index");
    admin::down(&index, &c.key(6)).expect("down n6");
    let back = c.wait_for(6, "proxy", "active", Duration::from_secs(3));
    let (version_after_down, _) = admin::index(&index, 1).expect("index");
    assert!(
        version_after_down >= version_before_down + 2,
        "down, then up: {version_before_down} -> {version_after_down}"
    );
    eprintln!("n6 back as proxy/active after {back:?}");
    c.converged(&all);
    read_back(&c, 6, &data, "down");

    // #8, #10, #11: `reconstruct` of a slave. It is safe (n4 is another active slave); n3 is not.
    let mut i = c.index_conn();
    let nodes = i.stats_nodes().expect("stats nodes");
    i.close().expect("quit");
    assert_eq!(admin::reconstruct_refusal(&nodes, &c.key(1)), None);
    assert_eq!(
        admin::reconstruct_refusal(&nodes, &c.key(3)),
        Some(format!(
            "The partition needs one more slave to reconstruct {} safely.",
            c.key(3)
        ))
    );
    let run = admin::reconstruct(&index, &c.key(1)).expect("reconstruct n1");
    assert_eq!(
        (run.after_sleep.get("role"), run.after_sleep.get("state")),
        ("proxy", "active"),
        "back as proxy/active within the tool's 3 s sleep: {run:?}"
    );
    assert_eq!(run.role_attempts, 1, "{run:?}");
    assert!(
        run.items_before_flush > 0 && run.items_after_flush == 0,
        "{run:?}"
    );
    for (k, before, after) in &run.others_around_flush {
        assert_eq!(before, after, "flush_all on n1 changed {k}");
    }
    assert_build_progress("reconstruct n1", &run.samples);
    assert_eq!(c.record(1).get("role"), "slave");
    assert_eq!(c.record(1).balance(), 2, "the old balance is restored");
    c.converged(&all);
    read_back(&c, 5, &data, "reconstruct");
    data.extend(write_batch(&c, 5, "c", 200));
    read_back(&c, 1, &data, "writes after reconstruct");

    // #7: `remove` of a proxy that is down (stopped gracefully).
    let (status, _) = c.nodes[6].terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "n6 stops cleanly");
    let gone_key = c.key(6);
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        let mut i = c.index_conn();
        let nodes = i.stats_nodes().expect("stats nodes");
        i.close().expect("quit");
        let n = nodes.iter().find(|n| n.key == gone_key).expect("listed");
        if n.get("state") == "down" {
            assert_eq!(n.get("role"), "proxy");
            break;
        }
        assert!(Instant::now() < limit, "{gone_key} not down: {n:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    admin::remove(&index, &gone_key).expect("remove n6");
    let mut i = c.index_conn();
    let nodes = i.stats_nodes().expect("stats nodes");
    let threads = i.stats_threads().expect("stats threads");
    i.close().expect("quit");
    assert!(nodes.iter().all(|n| n.key != gone_key), "{nodes:?}");
    assert!(
        threads.values().all(|t| t["peer"] != gone_key),
        "its monitor stopped: {threads:?}"
    );
    let running: Vec<usize> = (0..6).collect();
    c.converged(&running);
    read_back(&c, 5, &data, "remove");
    verify(&c, &data);
    let (version_at_end, xml) = admin::index(&index, 1).expect("index");
    assert!(
        version_at_end > version_at_start,
        "{version_at_start} -> {version_at_end}"
    );
    assert!(
        xml.starts_with(&format!("<version>{}</version>", version_at_end + 1)),
        "{xml}"
    );
    assert_stats_nodes_format(&index);
    for addr in std::iter::once(index.clone()).chain(running.iter().map(|&i| c.key(i))) {
        assert_flare_stats(&addr);
    }
    eprintln!("runbook took {:?}", started.elapsed());
}

/// The emulated tool itself, against canned replies: it must be as strict as the Ruby tool.
mod emulation {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    use super::tool::{Conn, Failure, Version};

    /// A one-connection server: answers `version` with `version_line`, then writes `reply` after the next request.
    fn canned(version_line: &'static [u8], reply: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(version_line).unwrap();
            let _ = s.read(&mut buf);
            s.write_all(reply).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        addr
    }

    #[test]
    fn version_is_split_on_dash_and_dot_as_the_tool_does() {
        let v = Version::parse("VERSION flare-1.3.4");
        assert_eq!(
            (v.name.as_str(), v.number.as_slice()),
            ("flare", &[1, 3, 4][..])
        );
        let v = Version::parse("VERSION 1.0.10");
        assert_eq!(
            (v.name.as_str(), v.number.as_slice()),
            ("flare", &[1, 0, 10][..])
        );
        assert_eq!(Version::parse("VERSION flare-1.x.4").number, [1, 0, 4]);
        assert_eq!(Version::parse("VERSION my-flare-2.0.0").number, [0]);
        assert_eq!(Version::parse("ERROR").number, [0, 0, 0]);
        assert!(Version::parse("VERSION flare-1.0.10").at_least(&[1, 0, 10]));
        assert!(!Version::parse("VERSION flare-1.0.9").at_least(&[1, 0, 10]));
        assert!(Version::parse("VERSION flare-2.0.0").at_least(&[1, 3, 1]));
        assert!(!Version::parse("VERSION flare-1.3").at_least(&[1, 3, 1]));
    }

    #[test]
    fn a_bare_line_feed_fails_the_command() {
        let addr = canned(
            b"VERSION flare-1.3.4\r\n",
            b"STAT pid 1\nSTAT uptime 2\r\nEND\r\n",
        );
        let mut c = Conn::open(&addr).unwrap();
        assert!(matches!(c.stats(), Err(Failure::NotCrlf(_))));
    }

    #[test]
    fn not_stored_is_not_a_terminator() {
        let addr = canned(b"VERSION flare-1.3.4\r\n", b"NOT_STORED\r\n");
        let mut c = Conn::open_with_timeout(&addr, Duration::from_millis(300)).unwrap();
        assert!(matches!(c.request("set k 0 0 1"), Err(Failure::Timeout(_))));
    }

    #[test]
    fn an_old_server_gets_no_stats_threads() {
        let addr = canned(b"VERSION flare-1.0.9\r\n", b"ERROR\r\n");
        let mut c = Conn::open(&addr).unwrap();
        assert!(c.stats_threads().unwrap().is_empty());
    }

    #[test]
    fn any_other_line_in_an_item_stream_fails() {
        let addr = canned(
            b"VERSION flare-1.3.4\r\n",
            b"VALUE k 0 1 5 0\r\nx\r\nKEY k\r\nEND\r\n",
        );
        let mut c = Conn::open(&addr).unwrap();
        assert!(matches!(c.items("dump"), Err(Failure::Malformed(_))));
        let addr = canned(
            b"VERSION flare-1.3.4\r\n",
            b"KEY a\r\nVALUE a 0 1\r\nEND\r\n",
        );
        let mut c = Conn::open(&addr).unwrap();
        assert!(matches!(c.keys("dump_key"), Err(Failure::Malformed(_))));
    }

    #[test]
    fn stats_threads_without_behind_fails() {
        let addr = canned(
            b"VERSION flare-1.3.4\r\n",
            b"STAT 1:type 1\r\nSTAT 1:peer 1.2.3.4:5\r\nSTAT 1:op \r\nSTAT 1:queue 0\r\nEND\r\n",
        );
        let mut c = Conn::open(&addr).unwrap();
        assert!(matches!(c.stats_threads(), Err(Failure::Malformed(_))));
    }
}
