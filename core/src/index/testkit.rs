//! Test harness for the index: a virtual clock, admin lines in, actions out, and a fake driver that answers probes
//! and pushes from a per-node "alive" table.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{Action, ConnId, Index, IndexParams, ProbeResult, Snapshot};
use crate::keys::{HashAlgorithm, PartitionParams};
use crate::protocol::admin::{parse_line, AdminCommand};
use crate::protocol::response::encode_text;

/// Monitor interval 1 s, threshold 3, read timeout 100 ms, small partition tables.
pub fn params() -> IndexParams {
    IndexParams {
        monitor_interval: Duration::from_secs(1),
        monitor_threshold: 3,
        monitor_read_timeout: Duration::from_millis(100),
        partition: PartitionParams {
            partition_size: 16,
            virtual_slots: 256,
            hint: 1,
            hash: HashAlgorithm::Simple,
        },
        ..IndexParams::default()
    }
}

/// One driver-visible event, for transcripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Persist(u64),
    Probe(String),
    Push(String, u64),
    Close(u64),
}

pub struct Harness {
    pub index: Index,
    pub now: Instant,
    pub conn: ConnId,
    /// Every action drained so far, in order.
    pub seen: Vec<Seen>,
    /// Probes and pushes started and not yet answered, in order, with the time [`Harness::run`] answers them.
    pub in_flight: Vec<(Instant, Action)>,
    /// How long after it starts [`Harness::run`] answers an operation.
    pub latency: Duration,
    /// The last persisted snapshot.
    pub persisted: Option<Snapshot>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(params(), None)
    }

    pub fn with(params: IndexParams, restored: Option<Snapshot>) -> Self {
        let now = Instant::now();
        let mut index = Index::new(params, restored.clone(), now).expect("valid params");
        let conn = index.open_connection();
        let mut h = Harness {
            index,
            now,
            conn,
            seen: Vec::new(),
            in_flight: Vec::new(),
            latency: Duration::from_millis(100),
            persisted: restored,
        };
        h.drain();
        h
    }

    /// Sends one admin line on the harness connection; returns the encoded reply.
    pub fn cmd(&mut self, line: &str) -> String {
        let conn = self.conn;
        self.cmd_on(conn, line)
    }

    pub fn cmd_on(&mut self, conn: ConnId, line: &str) -> String {
        let Ok(AdminCommand::Index(c)) = parse_line(line.as_bytes()) else {
            panic!("not an index command: {line}")
        };
        let out = self.index.handle_command(self.now, conn, c);
        self.drain();
        let mut buf = BytesMut::new();
        encode_text(&out.reply, &mut buf);
        String::from_utf8(buf.to_vec()).expect("replies are text")
    }

    /// Drains every action, checking that each push is of an already persisted version.
    pub fn drain(&mut self) {
        while let Some(a) = self.index.poll_action() {
            match &a {
                Action::Persist(s) => {
                    self.seen.push(Seen::Persist(s.version));
                    self.persisted = Some(s.clone());
                }
                Action::Probe { node, .. } => {
                    self.seen.push(Seen::Probe(node.clone()));
                    self.in_flight.push((self.now + self.latency, a.clone()));
                }
                Action::Push { node, version, .. } => {
                    let durable = self.persisted.as_ref().map_or(0, |s| s.version);
                    assert!(
                        *version <= durable,
                        "push of v{version} before it was persisted"
                    );
                    self.seen.push(Seen::Push(node.clone(), *version));
                    self.in_flight.push((self.now + self.latency, a.clone()));
                }
                Action::Close(c) => self.seen.push(Seen::Close(c.0)),
            }
        }
    }

    /// Takes the transcript so far.
    pub fn take(&mut self) -> Vec<Seen> {
        std::mem::take(&mut self.seen)
    }

    /// Answers every operation in flight, and those they start, until none is left: nodes in `dead` fail, the
    /// others succeed. The clock does not move.
    pub fn answer_all(&mut self, dead: &BTreeSet<String>) {
        for _ in 0..1000 {
            if self.in_flight.is_empty() {
                return;
            }
            let (_, op) = self.in_flight.remove(0);
            self.answer(&op, !dead.contains(op_node(&op)), None);
        }
        panic!("operations keep starting without the clock moving");
    }

    /// Answers one operation in flight for `node` (the first one).
    pub fn answer_node(&mut self, node: &str, ok: bool) {
        let i = self
            .in_flight
            .iter()
            .position(|(_, a)| op_node(a) == node)
            .unwrap_or_else(|| panic!("nothing in flight for {node}"));
        let (_, op) = self.in_flight.remove(i);
        self.answer(&op, ok, None);
    }

    pub fn answer(&mut self, op: &Action, ok: bool, position: Option<u64>) {
        match op {
            Action::Probe { node, .. } => self.index.handle_probe_result(
                self.now,
                node,
                ProbeResult {
                    ok,
                    replication_position: position,
                },
            ),
            Action::Push { node, version, .. } => {
                self.index.handle_push_result(self.now, node, *version, ok)
            }
            _ => unreachable!("only probes and pushes are in flight"),
        }
        self.drain();
    }

    /// Moves the clock to the next deadline (if any, and not past `limit`) and fires it.
    pub fn tick(&mut self, limit: Instant) -> bool {
        match self.index.poll_timeout() {
            Some(t) if t <= limit => {
                self.now = self.now.max(t);
                self.index.handle_timeout(self.now);
                self.drain();
                true
            }
            _ => false,
        }
    }

    /// Runs the virtual clock for `d`: timers fire when due, each operation is answered [`Harness::latency`] after it
    /// started (nodes in `dead` fail).
    pub fn run(&mut self, d: Duration, dead: &BTreeSet<String>) {
        let end = self.now + d;
        loop {
            let due = self.in_flight.iter().map(|(t, _)| *t).min();
            let timer = self.index.poll_timeout();
            let next = [due, timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => self.now = self.now.max(t),
                _ => break,
            }
            if due.is_some_and(|t| t <= self.now) {
                let i = self
                    .in_flight
                    .iter()
                    .position(|(t, _)| *t <= self.now)
                    .expect("one is due");
                let (_, op) = self.in_flight.remove(i);
                let ok = !dead.contains(op_node(&op));
                self.answer(&op, ok, None);
            } else {
                self.index.handle_timeout(self.now);
                self.drain();
            }
        }
        self.now = end;
    }

    /// `name state role partition balance` of one node, from `stats nodes`.
    pub fn node(&self, key: &str) -> String {
        let n = &self.index.node_map().nodes[key];
        format!(
            "{} {} {}",
            n.role,
            n.state,
            n.partition.map_or(-1, i64::from)
        )
    }

    pub fn version(&self) -> u64 {
        self.index.node_map().version
    }

    /// Adds nodes `names` (port 12121) and answers the pushes.
    pub fn add(&mut self, names: &[&str]) {
        for n in names {
            let r = self.cmd(&format!("node add {n} 12121"));
            assert!(r.ends_with("END\r\n"), "{r}");
            self.answer_all(&BTreeSet::new());
        }
    }

    /// The node keys of the harness's in-flight operations.
    pub fn in_flight_nodes(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (_, a) in &self.in_flight {
            *m.entry(op_node(a).to_owned()).or_default() += 1;
        }
        m
    }
}

pub fn op_node(a: &Action) -> &str {
    match a {
        Action::Probe { node, .. } | Action::Push { node, .. } => node,
        _ => "",
    }
}

pub fn key(name: &str) -> String {
    format!("{name}:12121")
}

pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| key(n)).collect()
}
