#![no_main]
//! The index server's input surfaces: its command-line parser (protocol::admin), the state machine fed with what it
//! parses (index::Index), and its snapshot decoder (index::Snapshot).
//!
//! The first byte picks the mode and the chunk size.
//! - Even: the rest is a connection's bytes. Invariants: parsing never panics and holds at most `line_max + 1`
//!   bytes of an incomplete line (or of an `index raft` block, whose limit is below `line_max` here); it returns the
//!   same results however the input is split; every command re-encodes with `to_line` (an `index raft` with its
//!   block after the line) and parses back to itself; every reply encodes to CRLF lines. Then every index command is run
//!   on an `Index` (probes and pushes answered from the input's bits): after each step the map is consistent, the
//!   version moved by at most 1 and exactly as many snapshots were persisted, and every push carries a persisted
//!   map.
//! - Odd: the rest is a snapshot file. Decoding never panics, and what decodes re-encodes to the same bytes.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flare_core::index::{transitions, Action, Index, IndexParams, ProbeResult, Snapshot};
use flare_core::keys::{HashAlgorithm, PartitionParams};
use flare_core::protocol::admin::{parse_line, AdminCommand, AdminParsed, AdminParser, IndexCommand};
use flare_core::protocol::response::encode_text;
use flare_core::protocol::{NodeLine, Reply};
use libfuzzer_sys::fuzz_target;

const LINE_MAX: usize = 256;
/// Below `LINE_MAX`, so that `LINE_MAX + 1` bounds what is buffered while a block is awaited too.
const RAFT_MESSAGE_MAX: usize = 200;

fn parser() -> AdminParser {
    AdminParser::new(LINE_MAX).with_raft_message_max(RAFT_MESSAGE_MAX)
}

fn parse(input: &[u8], chunk: usize) -> Vec<AdminParsed> {
    let mut parser = parser();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(p) = parser.parse(&mut buf) {
            let stop = matches!(p, AdminParsed::Close | AdminParsed::Error { close: true, .. });
            out.push(p);
            if stop {
                return out;
            }
        }
        assert!(
            buf.len() <= LINE_MAX + 1,
            "buffered {} bytes of an incomplete line",
            buf.len()
        );
    }
    out
}

fn check_parsed(p: &AdminParsed) {
    let reply = match p {
        AdminParsed::Command(AdminCommand::Index(IndexCommand::IndexRaft(message))) => {
            assert!(message.len() <= RAFT_MESSAGE_MAX);
            let c = AdminCommand::Index(IndexCommand::IndexRaft(message.clone()));
            let mut wire = BytesMut::from(format!("{}\r\n", c.to_line()).as_bytes());
            wire.extend_from_slice(message);
            wire.extend_from_slice(b"\r\n");
            assert_eq!(parser().parse(&mut wire).as_ref(), Some(p), "round trip of a raft block");
            assert!(wire.is_empty());
            return;
        }
        AdminParsed::Command(c) => {
            let line = c.to_line();
            assert_eq!(parse_line(line.as_bytes()).as_ref(), Ok(c), "round trip of {line:?}");
            Reply::Ok
        }
        AdminParsed::Error { error, .. } => Reply::Error(error.clone()),
        AdminParsed::Close => return,
    };
    let mut out = BytesMut::new();
    encode_text(&reply, &mut out);
    assert!(out.ends_with(b"\r\n"));
}

struct Run {
    index: Index,
    now: Instant,
    in_flight: Vec<Action>,
    persisted: BTreeMap<u64, Vec<NodeLine>>,
    bits: Vec<u8>,
}

impl Run {
    fn bit(&mut self) -> u8 {
        self.bits.pop().unwrap_or(1)
    }

    /// Drains the actions; returns how many snapshots were persisted.
    fn drain(&mut self) -> u64 {
        let mut persists = 0;
        while let Some(a) = self.index.poll_action() {
            match &a {
                Action::Persist(s) => {
                    persists += 1;
                    let bytes = s.encode();
                    assert_eq!(Snapshot::decode(&bytes).as_ref(), Ok(s), "persisted snapshot decodes");
                    self.persisted.insert(s.version, s.node_map().to_lines());
                }
                Action::Push { version, lines, .. } => {
                    assert_eq!(self.persisted.get(version), Some(lines), "push of an unpersisted map");
                    self.in_flight.push(a);
                }
                Action::Probe { .. } => self.in_flight.push(a),
                Action::Close(_) => {}
            }
        }
        persists
    }

    fn check(&mut self, before: u64) {
        let persists = self.drain();
        let map = self.index.node_map();
        assert!(map.version - before <= 1);
        assert_eq!(map.version - before, persists);
        let next = self.index.snapshot().next_thread_type;
        assert_eq!(transitions::validate_map(map, next), Ok(()));
    }

    /// Lets time pass and answers some operations in flight, as the input's bits say.
    fn churn(&mut self) {
        let before = self.index.node_map().version;
        if self.bit() & 1 == 0 {
            self.now = self.index.poll_timeout().unwrap_or(self.now).max(self.now);
            self.index.handle_timeout(self.now);
            self.check(before);
        }
        while !self.in_flight.is_empty() && self.bit() & 1 == 1 {
            let before = self.index.node_map().version;
            let pick = usize::from(self.bit()) % self.in_flight.len();
            let ok = self.bit() & 3 != 0;
            self.now += Duration::from_millis(10);
            match self.in_flight.remove(pick) {
                Action::Probe { node, .. } => {
                    let position = Some(u64::from(self.bit() & 3));
                    self.index.handle_probe_result(
                        self.now,
                        &node,
                        ProbeResult {
                            ok,
                            replication_position: position,
                        },
                    )
                }
                Action::Push { node, version, .. } => self.index.handle_push_result(self.now, &node, version, ok),
                _ => {}
            }
            self.check(before);
        }
    }
}

fn run_index(parsed: &[AdminParsed], bits: &[u8]) {
    let params = IndexParams {
        monitor_interval: Duration::from_secs(1),
        partition: PartitionParams {
            partition_size: 8,
            virtual_slots: 64,
            hint: 1,
            hash: HashAlgorithm::Simple,
        },
        nodes_max: 16,
        ..IndexParams::default()
    };
    let now = Instant::now();
    let index = Index::new(params, None, now).expect("valid params");
    let mut run = Run {
        index,
        now,
        in_flight: Vec::new(),
        persisted: BTreeMap::new(),
        bits: bits.to_vec(),
    };
    let conn = run.index.open_connection();
    for p in parsed {
        let AdminParsed::Command(AdminCommand::Index(c)) = p else {
            continue;
        };
        let before = run.index.node_map().version;
        let out = run.index.handle_command(run.now, conn, c.clone());
        let mut bytes = BytesMut::new();
        encode_text(&out.reply, &mut bytes);
        assert!(bytes.is_empty() || bytes.ends_with(b"\r\n"));
        run.check(before);
        if out.close {
            return;
        }
        run.churn();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    if sel & 1 == 1 {
        if let Ok(s) = Snapshot::decode(input) {
            assert_eq!(s.encode(), input, "decode/encode must round-trip");
        }
        return;
    }
    let whole = parse(input, input.len());
    let chunked = parse(input, usize::from(sel >> 1) + 1);
    // A line-too-long rejection may come earlier when the input arrives in pieces; before it, all agree.
    let n = whole.len().min(chunked.len());
    assert_eq!(whole[..n], chunked[..n], "splitting the input changed the results");
    whole.iter().for_each(check_parsed);
    run_index(&whole, input);
});
