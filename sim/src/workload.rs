//! The workload clients: random memcached text commands over a small key space (so clients collide on keys), sent
//! to random nodes (masters, slaves and proxies alike), a seed-chosen fraction with `sync`, every one recorded with
//! its outcome in the history.
//!
//! **Values are tokens.** Every write carries a token unique in the run: set-like writes (`set`, `add`, `replace`,
//! `cas`) store `w<client>_<n>[:<padding>];`, `append` adds `a<client>_<n>;` and `prepend` `p<client>_<n>;`. Any
//! value a read or a dump returns therefore names exactly the writes it is made of, in order: prepends, one
//! set-like base, appends. The checkers use this to tell a lost write from an overwritten one. Counter keys
//! (`c<i>`) hold numbers and get `incr`/`decr`, and an occasional `set`.

use std::collections::BTreeMap;
use std::time::Duration;

use flare_core::protocol::reply::ReplyKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::{Answer, CallError, TextClient};
use crate::history::{lock, now_ms, Env, Kind, Op, Outcome, Phase, Seen, SharedEnv};
use crate::scenario::{Scenario, NODE_PORT};

/// How long a client waits for a reply (a sync write may wait for its slaves, a forward may be retried once).
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs workload client `idx` until the run leaves the calm phase.
pub async fn run_client(idx: u32, s: Scenario, env: SharedEnv) -> turmoil::Result {
    let mut w = Workload::new(idx, &s);
    loop {
        let phase = lock(&env).phase;
        match phase {
            Phase::Setup => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Phase::Faults | Phase::Calm => {}
            _ => break,
        }
        let reads_only = phase == Phase::Calm && !s.calm_writes;
        w.step(&env, reads_only).await;
        let think = w.rng.random_range(s.think_ms.0..=s.think_ms.1);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    lock(&env).clients_running -= 1;
    Ok(())
}

/// One client's state.
struct Workload {
    idx: u32,
    s: Scenario,
    rng: StdRng,
    nodes: Vec<String>,
    conns: BTreeMap<String, TextClient>,
    next_token: u64,
}

/// A request about to be sent.
struct Request {
    kind: Kind,
    keys: Vec<String>,
    token: Option<String>,
    flags: u32,
    delta: u64,
    sync: bool,
    noreply: bool,
    bytes: Vec<u8>,
}

impl Workload {
    fn new(idx: u32, s: &Scenario) -> Self {
        Workload {
            idx,
            s: s.clone(),
            rng: StdRng::seed_from_u64(
                s.seed ^ (u64::from(idx) + 1).wrapping_mul(0xa076_1d64_78bd_642f),
            ),
            nodes: s.nodes(),
            conns: BTreeMap::new(),
            next_token: 0,
        }
    }

    async fn step(&mut self, env: &SharedEnv, reads_only: bool) {
        let node = self.nodes[self.rng.random_range(0..self.nodes.len())].clone();
        let roll = self.rng.random_range(0..100);
        if roll < 25 || reads_only {
            let req = self.read();
            self.send(env, &node, req).await;
        } else if self.s.counters > 0 && roll < 40 {
            let req = self.counter_op();
            self.send(env, &node, req).await;
        } else {
            self.token_op(env, &node).await;
        }
    }

    fn key(&mut self) -> String {
        format!("k{}", self.rng.random_range(0..self.s.keys))
    }

    fn token(&mut self, prefix: char) -> String {
        self.next_token += 1;
        format!("{prefix}{}_{}", self.idx, self.next_token)
    }

    fn options(&mut self) -> (bool, bool) {
        let sync = self.rng.random_bool(self.s.sync_ratio);
        let noreply = self.s.noreply_ratio > 0.0 && self.rng.random_bool(self.s.noreply_ratio);
        (sync, noreply)
    }

    fn read(&mut self) -> Request {
        let n = if self.rng.random_bool(0.2) {
            self.rng.random_range(2..=4)
        } else {
            1
        };
        let mut keys: Vec<String> = Vec::new();
        for _ in 0..n {
            let k = if self.s.counters > 0 && self.rng.random_bool(0.2) {
                format!("c{}", self.rng.random_range(0..self.s.counters))
            } else {
                self.key()
            };
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let kind = if self.rng.random_bool(0.5) {
            Kind::Get
        } else {
            Kind::Gets
        };
        let bytes = format!("{} {}\r\n", kind.name(), keys.join(" ")).into_bytes();
        Request {
            kind,
            keys,
            token: None,
            flags: 0,
            delta: 0,
            sync: false,
            noreply: false,
            bytes,
        }
    }

    fn counter_op(&mut self) -> Request {
        let key = format!("c{}", self.rng.random_range(0..self.s.counters));
        let (sync, noreply) = self.options();
        let opts = suffix(sync, noreply);
        let roll = self.rng.random_range(0..100);
        let (kind, delta, bytes) = if roll < 75 {
            let d = self.rng.random_range(1..=9);
            (Kind::Incr, d, format!("incr {key} {d}{opts}\r\n"))
        } else if roll < 85 {
            let d = self.rng.random_range(1..=3);
            (Kind::Decr, d, format!("decr {key} {d}{opts}\r\n"))
        } else if roll < 95 {
            let v = self.rng.random_range(0..1000).to_string();
            (
                Kind::Set,
                0,
                format!("set {key} 0 0 {}{opts}\r\n{v}\r\n", v.len()),
            )
        } else {
            (Kind::Delete, 0, format!("delete {key}{opts}\r\n"))
        };
        Request {
            kind,
            keys: vec![key],
            token: None,
            flags: 0,
            delta,
            sync,
            noreply,
            bytes: bytes.into_bytes(),
        }
    }

    async fn token_op(&mut self, env: &SharedEnv, node: &str) {
        let key = self.key();
        let roll = self.rng.random_range(0..100);
        let kind = match roll {
            0..=34 => Kind::Set,
            35..=44 => Kind::Add,
            45..=54 => Kind::Replace,
            55..=61 => Kind::Cas,
            62..=73 => Kind::Append,
            74..=79 => Kind::Prepend,
            80..=91 => Kind::Delete,
            92..=95 => Kind::Touch,
            _ => Kind::Incr,
        };
        let (sync, noreply) = self.options();
        let opts = suffix(sync, noreply);
        let req = match kind {
            Kind::Set | Kind::Add | Kind::Replace | Kind::Cas => {
                let cas = if kind == Kind::Cas {
                    // cas needs the current version: read it first (the read is recorded like any other).
                    let read = Request {
                        kind: Kind::Gets,
                        keys: vec![key.clone()],
                        token: None,
                        flags: 0,
                        delta: 0,
                        sync: false,
                        noreply: false,
                        bytes: format!("gets {key}\r\n").into_bytes(),
                    };
                    match self.send(env, node, read).await {
                        Outcome::Values(v) if !v.is_empty() => format!(" {}", v[0].version),
                        _ => return,
                    }
                } else {
                    String::new()
                };
                let token = self.token('w');
                let pad = if self.s.large_ratio > 0.0 && self.rng.random_bool(self.s.large_ratio) {
                    self.rng.random_range(1_000..=8_000)
                } else {
                    self.rng.random_range(0..=24)
                };
                let value = match pad {
                    0 => format!("{token};"),
                    n => format!("{token}:{};", "x".repeat(n)),
                };
                let flags = self.rng.random_range(0..=u32::MAX);
                Request {
                    kind,
                    keys: vec![key.clone()],
                    bytes: format!(
                        "{} {key} {flags} 0 {}{cas}{opts}\r\n{value}\r\n",
                        kind.name(),
                        value.len()
                    )
                    .into_bytes(),
                    token: Some(token),
                    flags,
                    delta: 0,
                    sync,
                    noreply,
                }
            }
            Kind::Append | Kind::Prepend => {
                let token = self.token(if kind == Kind::Append { 'a' } else { 'p' });
                let value = format!("{token};");
                Request {
                    kind,
                    keys: vec![key.clone()],
                    bytes: format!(
                        "{} {key} 0 0 {}{opts}\r\n{value}\r\n",
                        kind.name(),
                        value.len()
                    )
                    .into_bytes(),
                    token: Some(token),
                    flags: 0,
                    delta: 0,
                    sync,
                    noreply,
                }
            }
            Kind::Delete => Request {
                kind,
                keys: vec![key.clone()],
                bytes: format!("delete {key}{opts}\r\n").into_bytes(),
                token: None,
                flags: 0,
                delta: 0,
                sync,
                noreply,
            },
            Kind::Touch => Request {
                kind,
                keys: vec![key.clone()],
                // Far enough in the future that nothing expires during a run; `touch` takes only `noreply`.
                bytes: format!(
                    "touch {key} {}\r\n",
                    self.rng.random_range(100_000..200_000)
                )
                .into_bytes(),
                token: None,
                flags: 0,
                delta: 0,
                sync: false,
                noreply: false,
            },
            // incr on a token value: always refused as non-numeric (or a miss).
            _ => Request {
                kind: Kind::Incr,
                keys: vec![key.clone()],
                bytes: format!("incr {key} 1{opts}\r\n").into_bytes(),
                token: None,
                flags: 0,
                delta: 1,
                sync,
                noreply,
            },
        };
        self.send(env, node, req).await;
    }

    /// Sends one request to `node`, records it, and returns its outcome.
    async fn send(&mut self, env: &SharedEnv, node: &str, req: Request) -> Outcome {
        let (invoke, invoke_ms) = {
            let mut e = lock(env);
            (e.next_seq(), now_ms())
        };
        let conn = self
            .conns
            .entry(node.to_string())
            .or_insert_with(|| TextClient::new(node, NODE_PORT));
        let outcome = if req.noreply {
            match conn.call_noreply(&req.bytes, OP_TIMEOUT).await {
                Ok(()) => Outcome::NoReply,
                Err(e) => failed(e),
            }
        } else {
            let kind = if req.kind.is_read() {
                ReplyKind::Values
            } else {
                ReplyKind::Line
            };
            match conn.call(&req.bytes, kind, OP_TIMEOUT).await {
                Ok(a) => classify(a),
                Err(e) => failed(e),
            }
        };
        let op = Op {
            client: self.idx,
            node: node.to_string(),
            kind: req.kind,
            keys: req.keys,
            token: req.token,
            flags: req.flags,
            delta: req.delta,
            sync: req.sync,
            invoke,
            complete: 0,
            invoke_ms,
            complete_ms: now_ms(),
            outcome: outcome.clone(),
        };
        record_checked(&mut lock(env), op);
        outcome
    }
}

fn suffix(sync: bool, noreply: bool) -> String {
    let mut s = String::new();
    if sync {
        s.push_str(" sync");
    }
    if noreply {
        s.push_str(" noreply");
    }
    s
}

fn failed(e: CallError) -> Outcome {
    match e {
        CallError::Timeout => Outcome::Timeout,
        CallError::Io(e) => Outcome::Io(format!("{:?}", e.kind())),
    }
}

/// The outcome of a reply.
pub fn classify(a: Answer) -> Outcome {
    match a {
        Answer::Values(v) => Outcome::Values(
            v.into_iter()
                .map(|b| Seen {
                    key: String::from_utf8_lossy(&b.key).into_owned(),
                    flags: b.flags,
                    version: b.version.unwrap_or(0),
                    exptime: b.exptime.unwrap_or(0),
                    value: b.value,
                })
                .collect(),
        ),
        Answer::Lines(l) => Outcome::Unexpected(format!("{} listing lines", l.len())),
        Answer::Line(l) => {
            let text = String::from_utf8_lossy(&l).into_owned();
            match text.as_str() {
                "STORED" => Outcome::Stored,
                "NOT_STORED" => Outcome::NotStored,
                "EXISTS" => Outcome::Exists,
                "NOT_FOUND" => Outcome::NotFound,
                "DELETED" => Outcome::Deleted,
                "TOUCHED" => Outcome::Touched,
                "CLIENT_ERROR cannot increment or decrement non-numeric value" => {
                    Outcome::NonNumeric
                }
                t if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) => t
                    .parse()
                    .map_or(Outcome::Unexpected(text.clone()), Outcome::Number),
                t => match t.strip_prefix("SERVER_ERROR ") {
                    Some(e) => Outcome::ServerError(e.to_string()),
                    None => Outcome::Unexpected(text),
                },
            }
        }
    }
}

/// Whether a well-formed command may get this outcome.
/// Records a completed operation, and a `protocol` failure when its answer is not one its kind may get.
pub fn record_checked(e: &mut Env, op: Op) {
    if !expected(op.kind, &op.outcome) {
        let detail = format!(
            "{} answered {:?} to {}",
            op.node,
            op.outcome,
            op.kind.name()
        );
        e.fail("protocol", detail);
    }
    e.record(op);
}

pub fn expected(kind: Kind, o: &Outcome) -> bool {
    use Outcome as O;
    match o {
        O::ServerError(_) | O::Timeout | O::Io(_) | O::NoReply => true,
        O::Unexpected(_) => false,
        _ => match kind {
            Kind::Get | Kind::Gets => matches!(o, O::Values(_)),
            Kind::Set => matches!(o, O::Stored),
            Kind::Add | Kind::Replace | Kind::Append | Kind::Prepend => {
                matches!(o, O::Stored | O::NotStored)
            }
            Kind::Cas => matches!(o, O::Stored | O::Exists | O::NotFound),
            Kind::Delete => matches!(o, O::Deleted | O::NotFound),
            Kind::Touch => matches!(o, O::Touched | O::NotFound),
            Kind::Incr | Kind::Decr => matches!(o, O::Number(_) | O::NotFound | O::NonNumeric),
        },
    }
}
