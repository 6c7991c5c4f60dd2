//! Helpers for end-to-end tests: start the real daemons on free loopback ports with temporary data directories,
//! talk to them over real TCP, stop them (gracefully or with SIGKILL) and clean up; and [`conformance`], the storage
//! suite every engine must pass.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flare_core::protocol::lines;

pub mod cluster;
pub mod command;
pub mod conformance;
pub mod flare_tools;
pub mod netns;

pub use cluster::Cluster;

/// Flare's `stats` fields, in Flare's order (stats.md §1): nodes and the index both start with exactly these.
pub const FLARE_STATS: [&str; 35] = [
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

/// The workspace's target directory (where `cargo build --bins` put the daemons).
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// Path of a workspace binary built in the debug profile.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

/// True when `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running `flared` with its own data directory, stopped (SIGKILL) and cleaned up on drop.
pub struct Flared {
    /// The child process (None after a kill).
    pub child: Option<Child>,
    /// Port it listens on.
    pub port: u16,
    /// Data directory (removed on drop).
    pub data_dir: tempfile::TempDir,
    /// Extra command-line arguments, reused on restart.
    pub args: Vec<String>,
    /// `flared` or `flarei`.
    pub binary: &'static str,
    /// The address it is reached at and its `server-name` (127.0.0.1 unless started in a network namespace).
    pub host: String,
    /// The network namespace it runs in ([`netns::Net`]); None: the test's own.
    pub netns: Option<String>,
}

impl Flared {
    /// Starts a standalone node with extra `--key=value` arguments and waits until it accepts connections.
    pub fn start(args: &[&str]) -> Flared {
        Self::start_binary("flared", free_port(), args)
    }

    /// Starts an index server (`flarei`) with extra arguments.
    pub fn index(args: &[&str]) -> Flared {
        Self::start_binary("flarei", free_port(), args)
    }

    /// Starts a node registered with the index server on `index_port`.
    pub fn node_of(index_port: u16, args: &[&str]) -> Flared {
        let index = format!("--index-servers=127.0.0.1:{index_port}");
        let mut all = vec![index.as_str()];
        all.extend_from_slice(args);
        let node = Self::start_binary("flared", free_port(), &all);
        // Its port opens before it has registered (the index may call it back while it registers).
        let role = format!("127.0.0.1:{}:role", node.port);
        let index = format!("127.0.0.1:{index_port}");
        let secret = args
            .iter()
            .find_map(|a| a.strip_prefix("--cluster-secret="));
        let registered = wait_until(Duration::from_secs(20), || {
            let mut c = Client::connect(&index);
            if let Some(s) = secret {
                c.call(&format!("auth {s}"));
            }
            c.stats_nodes().contains_key(&role)
        });
        assert!(registered, "the node did not register\n{}", node.log());
        node
    }

    /// Starts `binary` on `port` with extra arguments and waits until it accepts connections.
    pub fn start_binary(binary: &'static str, port: u16, args: &[&str]) -> Flared {
        Self::start_at(None, "127.0.0.1", binary, port, args)
    }

    /// Starts `binary` in network namespace `netns` (None: this one) as `host:port` and waits until it accepts
    /// connections there.
    pub fn start_at(
        netns: Option<&str>,
        host: &str,
        binary: &'static str,
        port: u16,
        args: &[&str],
    ) -> Flared {
        let data_dir = tempfile::Builder::new()
            .prefix(&format!("{binary}-test-"))
            .tempdir()
            .expect("temp dir");
        let mut node = Flared {
            child: None,
            port,
            data_dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            binary,
            host: host.to_string(),
            netns: netns.map(str::to_string),
        };
        node.spawn();
        node
    }

    /// (Re)starts the process on the same port and data directory.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join(format!("{}.log", self.binary)))
            .expect("log file");
        // `ip netns exec` execs the daemon itself: the child's pid is the daemon's.
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary(self.binary));
                c
            }
            None => Command::new(binary(self.binary)),
        };
        let child = command
            .arg(format!("--data-dir={}", self.data_dir.path().display()))
            .arg(format!("--server-port={}", self.port))
            .arg(format!("--server-name={}", self.host))
            .arg("-s")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn flared");
        self.child = Some(child);
        wait_for_addr(&self.addr(), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{} did not start: {e}\n{}", self.binary, self.log()));
    }

    /// `<host>:<port>`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A new client connection.
    pub fn connect(&self) -> Client {
        Client::connect(&self.addr())
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, sig) };
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for a clean exit; returns the exit status and the time it took.
    pub fn terminate(&mut self, limit: Duration) -> (Option<std::process::ExitStatus>, Duration) {
        let started = Instant::now();
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        while started.elapsed() < limit {
            if let Some(status) = child.try_wait().expect("wait") {
                return (Some(status), started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        (None, started.elapsed())
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join(format!("{}.log", self.binary)))
            .unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Flared {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, limit: Duration) -> Result<(), String> {
    wait_for_addr(&format!("127.0.0.1:{port}"), limit)
}

/// Waits until something accepts TCP connections on `addr` (`host:port`).
pub fn wait_for_addr(addr: &str, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on {addr} after {limit:?}"))
}

/// A blocking text-protocol client for tests.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects with a 10 s read timeout.
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    /// Reads one line, without its `\r\n`.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        assert!(line.ends_with("\r\n"), "line not ended by CRLF: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// Reads exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).expect("read bytes");
        buf
    }

    /// Sends a command line and returns the first reply line.
    pub fn call(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// `set` and its reply line.
    pub fn set(&mut self, key: &str, flags: u32, exptime: i64, value: &[u8]) -> String {
        self.send(format!("set {key} {flags} {exptime} {}\r\n", value.len()).as_bytes());
        self.send(value);
        self.send(b"\r\n");
        self.line()
    }

    /// `gets key`: (flags, version, value) or None.
    pub fn gets(&mut self, key: &str) -> Option<(u32, u64, Vec<u8>)> {
        self.send(format!("gets {key}\r\n").as_bytes());
        let line = self.line();
        if lines::is_end(line.as_bytes()) {
            return None;
        }
        let h = lines::value_header(line.as_bytes())
            .unwrap_or_else(|| panic!("bad VALUE line {line:?}"));
        assert_eq!(h.key, key.as_bytes(), "{line:?}");
        let (flags, len) = (h.flags, h.len as usize);
        let (Some(version), None) = (h.version, h.exptime) else {
            panic!("not the VALUE line of gets: {line:?}");
        };
        let value = self.bytes(len);
        assert_eq!(self.bytes(2), b"\r\n");
        let end = self.line();
        assert!(lines::is_end(end.as_bytes()), "{end:?} after a VALUE");
        Some((flags, version, value))
    }

    /// `get key` value, or None.
    pub fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.gets(key).map(|(_, _, v)| v)
    }

    /// `stats` as (name, value) pairs.
    pub fn stats(&mut self, group: &str) -> Vec<(String, String)> {
        let cmd = if group.is_empty() {
            "stats".to_string()
        } else {
            format!("stats {group}")
        };
        self.send(format!("{cmd}\r\n").as_bytes());
        let mut out = Vec::new();
        loop {
            let line = self.line();
            if lines::is_end(line.as_bytes()) {
                return out;
            }
            let (k, v) = lines::stat_str(line.as_bytes())
                .unwrap_or_else(|| panic!("bad stats line {line:?}"));
            out.push((k.to_string(), v.to_string()));
        }
    }

    /// Sends a command and returns the lines before `END` (or the error line alone).
    pub fn lines(&mut self, line: &str) -> Vec<String> {
        self.send(format!("{line}\r\n").as_bytes());
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if lines::is_end(l.as_bytes()) {
                return out;
            }
            let error = l.starts_with("ERROR")
                || l.starts_with("CLIENT_ERROR")
                || l.starts_with("SERVER_ERROR");
            out.push(l);
            if error {
                return out;
            }
        }
    }

    /// `stats nodes` as `key:field` → value.
    pub fn stats_nodes(&mut self) -> std::collections::BTreeMap<String, String> {
        self.stats("nodes").into_iter().collect()
    }

    /// One `stats` field.
    pub fn stat(&mut self, name: &str) -> String {
        self.stats("")
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no stat {name}"))
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }
}

/// Polls `f` every 20 ms until it returns true or `limit` passes; returns whether it did.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Debian's memcached (the reference server) on a free loopback port, without UDP, stopped (SIGKILL) on drop.
pub struct Memcached {
    child: Child,
    /// Port it listens on.
    pub port: u16,
}

impl Memcached {
    /// Starts `memcached` with extra arguments and waits until it accepts connections.
    pub fn start(args: &[&str]) -> Memcached {
        assert!(
            have("memcached"),
            "memcached missing: run scripts/install-deps"
        );
        let port = free_port();
        let mut cmd = Command::new("memcached");
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // memcached refuses to run as root without a user to run as.
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn memcached");
        let mc = Memcached { child, port };
        wait_for_port(port, Duration::from_secs(10)).expect("memcached did not start");
        mc
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a server sent back for some raw bytes on a fresh connection, and whether it then closed the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// Every byte received.
    pub reply: Vec<u8>,
    /// The server closed the connection (or reset it).
    pub closed: bool,
}

impl Exchange {
    /// The reply with its `VERSION <x>` lines made equal, so a node's answers compare with memcached's.
    pub fn normalized(&self) -> Exchange {
        let text = String::from_utf8_lossy(&self.reply);
        let reply = text
            .split_inclusive("\r\n")
            .map(|l| {
                if l.starts_with("VERSION ") {
                    "VERSION x\r\n"
                } else {
                    l
                }
            })
            .collect::<String>()
            .into_bytes();
        Exchange {
            reply,
            closed: self.closed,
        }
    }
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let closed = if self.closed { " (closed)" } else { "" };
        write!(f, "{:?}{closed}", String::from_utf8_lossy(&self.reply))
    }
}

/// Sends `bytes` then `mn\r\n` (meta no-op, which both memcached and a node answer `MN`) on a new connection to
/// `addr`, and reads until the `MN` reply or the end of the connection: the whole answer to `bytes`, however it
/// ends, without waiting on a timer. Input that leaves the server waiting for data (an unfinished value) needs
/// [`exchange_idle`] instead.
pub fn exchange(addr: &str, bytes: &[u8]) -> Exchange {
    let (got, complete) = exchange_or_idle(addr, bytes, Duration::from_secs(10));
    assert!(
        complete || got.closed,
        "{addr} did not answer the closing mn after {:?}: got {got}",
        String::from_utf8_lossy(bytes)
    );
    got
}

/// [`exchange`], for input that may leave a server out of step (a data block of the wrong length): when the closing
/// `MN` does not come, whatever arrived before the connection stayed quiet for `idle` is the answer. The flag says
/// whether the `MN` came (it is then cut off the answer).
pub fn exchange_or_idle(addr: &str, bytes: &[u8], idle: Duration) -> (Exchange, bool) {
    let mut all = bytes.to_vec();
    all.extend_from_slice(b"mn\r\n");
    // The input's own `mn` lines are answered `MN` too: wait for every one, or the first could be taken for ours.
    let own = bytes
        .split(|&c| c == b'\n')
        .filter(|l| l == b"mn\r" || l == b"mn" || l.starts_with(b"mn "))
        .count();
    let ours =
        |r: &[u8]| r.ends_with(b"MN\r\n") && r.windows(4).filter(|w| w == b"MN\r\n").count() > own;
    let mut got = read_reply(addr, &all, idle, ours);
    let complete = ours(&got.reply);
    if complete {
        got.reply.truncate(got.reply.len() - 4);
    }
    (got, complete)
}

/// Sends `bytes` on a new connection to `addr` and reads until the connection ends or stays quiet for `idle`.
pub fn exchange_idle(addr: &str, bytes: &[u8], idle: Duration) -> Exchange {
    read_reply(addr, bytes, idle, |_| false)
}

fn read_reply(addr: &str, bytes: &[u8], idle: Duration, done: impl Fn(&[u8]) -> bool) -> Exchange {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(idle)).unwrap();
    // Written from another thread: a server that answers while the request is still arriving (a long `get`) must
    // not fill our receive buffer while we are blocked writing.
    let mut writer = stream.try_clone().expect("clone stream");
    let bytes = bytes.to_vec();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    let mut reply = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if done(&reply) {
                    break false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(e) => panic!("read from {addr}: {e}"),
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    Exchange { reply, closed }
}

/// The keys and the set commands of a multi-get as large as the one that found the line limit: 18,725 keys on one
/// 187 KB line.
pub fn big_get() -> (Vec<u8>, Vec<u8>) {
    let keys: Vec<String> = (0..18_725).map(|i| format!("key:{i:05}")).collect();
    let mut sets = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        // Every third key is left unset: misses are part of the answer.
        if i % 3 != 0 {
            sets.extend_from_slice(
                format!("set {k} {i} 0 {}\r\nv{i}\r\n", 1 + i.to_string().len()).as_bytes(),
            );
        }
    }
    let mut get = b"get".to_vec();
    for k in &keys {
        get.push(b' ');
        get.extend_from_slice(k.as_bytes());
    }
    get.extend_from_slice(b"\r\n");
    (sets, get)
}

/// Index + two masters (partitions 0 and 1) + a proxy node. Reads are not sent to slaves: there are none (stale
/// reads from async slaves are the replication issue's).
pub struct TwoPartitions {
    /// The index server.
    pub index: Flared,
    /// The master of partition 0, the master of partition 1, the proxy.
    pub nodes: Vec<Flared>,
}

impl TwoPartitions {
    /// Starts it and waits until every node has the last node map.
    pub fn build() -> TwoPartitions {
        let index = Flared::index(&["--monitor-interval=1"]);
        let nodes: Vec<Flared> = (0..3).map(|_| Flared::node_of(index.port, &[])).collect();
        let c = TwoPartitions { index, nodes };
        c.role(0, "master 1 0");
        c.wait_state(0, "active");
        c.role(1, "master 1 1");
        c.wait_state(1, "ready");
        let line = format!("node state 127.0.0.1 {} active", c.nodes[1].port);
        assert_eq!(c.index.connect().call(&line), "OK");
        c.wait_state(1, "active");
        let version = c.index.connect().stat("node_map_version");
        for n in &c.nodes {
            let ok = wait_until(Duration::from_secs(10), || {
                n.connect().stat("node_map_version") == version
            });
            assert!(ok, "node {} stuck on an older node map", n.port);
        }
        c
    }

    fn role(&self, i: usize, line: &str) {
        let cmd = format!("node role 127.0.0.1 {} {line}", self.nodes[i].port);
        assert_eq!(self.index.connect().call(&cmd), "OK", "{cmd}");
    }

    fn wait_state(&self, i: usize, state: &str) {
        let key = format!("127.0.0.1:{}:state", self.nodes[i].port);
        let ok = wait_until(Duration::from_secs(20), || {
            let mut admin: Client = self.index.connect();
            admin.stats_nodes().get(&key).map(String::as_str) == Some(state)
        });
        assert!(ok, "node {i} did not become {state}");
    }

    /// The proxy's port.
    pub fn proxy(&self) -> u16 {
        self.nodes[2].port
    }
}
