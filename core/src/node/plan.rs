//! A client request on a cluster node, as a plan: which parts run here, which go to which peer in which form, and
//! how their answers become the client's reply (cluster.md §7, protocol.md §9). The driver runs the parts (the
//! local ones with [`crate::exec::execute`], the others over its peer connections) and hands the answers back to
//! [`Pending::finish`], which merges them or asks for one more round.
//!
//! What is decided here, and nowhere else:
//! - **Routing.** A key goes where [`ClusterView`] says: reads to a replica chosen by balance (served here when the
//!   request already travelled, since Flare forwards reads without a path and could bounce them), writes to the
//!   partition's master; loops, stale replication and a missing partition are refused.
//! - **Splitting.** A multi-key `get`/`gets` is split by destination into one request per node, sent at once;
//!   `gat`/`gats` the same by master (they change exptimes, so they are writes). The answers are merged in request
//!   order; a key given twice is answered twice.
//! - **Forwarded form.** [`forward`] is total: every request has a form a peer understands, and a binary client's
//!   writes travel as meta commands so their replies carry the CAS.
//! - **`flush_all`** from a client flushes the whole cluster: it goes to every master (each replicates it to its
//!   slaves), and is answered `OK` only when all answered `OK`. It flushes only the node that receives it (and its
//!   slaves, when it is a master) when it is proxied (it has a path) or comes from an operator's session: Flare's
//!   tools clear a node with `flush_all` before they build it (protocol.md §4.10), and every connection they open
//!   starts with `version` (admin-tool.md §2), which ordinary clients do not do ([`Session`]).
//! - **Retry.** A part that failed is tried once more on the key's master under the current map (a failover may
//!   have happened); if that fails too the client gets `SERVER_ERROR proxy error`, never a false miss. A failed
//!   part may have taken effect (the old master applied and replicated it, then died before it answered), so only
//!   what is the same sent twice as once is retried ([`resendable`]): reads, `set` (without a version), `touch`,
//!   `gat`. A key of a multi-key read whose node answered an error line (a slave without a lease, a node that
//!   does not serve the partition in its own map) is asked of the master the same way. An `append`,
//!   `incr`, `add`, `cas` or `delete` sent again would apply twice or answer for the second send (`NOT_STORED`,
//!   `EXISTS`, `NOT_FOUND` for a delete that deleted): the client gets the error and decides (core simulator,
//!   seed 2041: a retried sync delete answered `NOT_FOUND` after its first send had deleted the key).
//! - **Shaping.** `noreply` and quiet meta commands are forwarded with a reply (the connection to the peer stays in
//!   step) and the reply is dropped here; Flare's single-key `gat` gets its `VALUE` without `END` or `NOT_FOUND`.

use std::collections::HashMap;

use bytes::Bytes;

use super::view::{ClusterView, ReadRoute, WriteRoute};
use crate::exec::Tally;
use crate::protocol::forward::{self, Form, Forward};
use crate::protocol::meta::{MetaCommand, MetaFlag, MetaKind, MetaSetMode};
use crate::protocol::reply::PeerReply;
use crate::protocol::{Command, ErrorReply, Framing, ProxyPath, Reply, StoreMode, ValueItem};

/// What to do with a request.
#[derive(Debug)]
pub enum Plan {
    /// Run it here as it is. `write`: it may change the store, so what it changes is replicated.
    Local {
        /// The command.
        command: Command,
        /// Replicate what it changes.
        write: bool,
    },
    /// Answer at once (a refusal, or a read no node can serve).
    Reply(Reply),
    /// Run the parts, then merge their answers with [`Pending::finish`].
    Parts(Pending),
}

/// One part of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Run here; `write` as in [`Plan::Local`].
    Local {
        /// The command.
        command: Command,
        /// Replicate what it changes.
        write: bool,
    },
    /// Send to a peer.
    Peer {
        /// The peer, `name:port`.
        node: String,
        /// The request in its forwarded form.
        forward: Forward,
    },
}

/// The answer to one part, in the order of [`Pending::parts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The reply of a part run here.
    Local(Reply),
    /// The peer's answer, or `Err` when it gave none (connection failed, timeout, unreadable answer).
    Peer(Result<PeerReply, ()>),
}

/// Where a request stands after a round of answers.
#[derive(Debug)]
pub enum Finish {
    /// The client's reply.
    Done(Reply),
    /// Run these parts too, then call [`Pending::finish`] again.
    Again(Box<Pending>),
}

/// A request waiting for the answers to its parts.
#[derive(Debug)]
pub struct Pending {
    /// The parts to run now, all at once.
    pub parts: Vec<Part>,
    merge: Merge,
    /// This is the retry round: a failure now is final.
    retried: bool,
}

#[derive(Debug)]
enum Merge {
    /// One request, forwarded: `command` is what the client sent (its reply shape), `key` finds its master for a
    /// retry, `silent` drops the answer (`noreply`).
    Single {
        command: Command,
        key: Bytes,
        silent: bool,
        write: bool,
    },
    /// A multi-key read or gat: the keys in request order, what was found so far, and the parts' keys.
    Keys(Keys),
    /// A meta command: relayed as the peer answered, unless `q` hides it.
    Meta { meta: MetaCommand, write: bool },
    /// `flush_all` on every master.
    Flush { noreply: bool },
}

#[derive(Debug)]
struct Keys {
    command: Command,
    keys: Vec<Bytes>,
    /// Keys no node serves (counted as misses).
    missing: usize,
    /// The keys each current part asked for.
    asked: Vec<Vec<Bytes>>,
    found: HashMap<Bytes, ValueItem>,
    /// Keys asked of a peer (counted here; local parts count themselves).
    remote: Vec<Bytes>,
}

/// Who sent a request, as far as routing cares.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    /// The request's proxy path, when it came from another node.
    pub path: Option<&'a ProxyPath>,
    /// The client speaks the binary protocol: its replies carry CAS values.
    pub binary: bool,
    /// The connection is an operator's session ([`Session::operator`]).
    pub operator: bool,
}

/// What a node remembers of one client connection for routing: whether it is an operator's session, which is the
/// case when its first request was a text `version` line (the handshake of Flare's tools and of `flare-admin`). A
/// binary Version first is a client library's handshake (dalli opens every connection with one), not an operator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Session {
    seen: bool,
    operator: bool,
}

impl Session {
    /// Notes a request of the connection, in order.
    pub fn observe(&mut self, framing: &Framing, command: &Command) {
        if !self.seen {
            self.seen = true;
            self.operator =
                matches!(command, Command::Version) && matches!(framing, Framing::Text { .. });
        }
    }

    /// Notes a refused request (a malformed line): the connection's first request was not `version`.
    pub fn observe_refused(&mut self) {
        self.seen = true;
    }

    /// Whether this connection is an operator's session: its `flush_all` flushes this node only.
    pub fn operator(&self) -> bool {
        self.operator
    }
}

/// True for the commands a cluster node routes (by key, or to every master for `flush_all`).
pub fn is_routed(command: &Command) -> bool {
    matches!(
        command,
        Command::Get { .. }
            | Command::Gat { .. }
            | Command::Store(_)
            | Command::Delete { .. }
            | Command::Arith { .. }
            | Command::Touch { .. }
            | Command::Meta(_)
            | Command::FlushAll { .. }
    )
}

/// Plans `command`, sent by `origin`, on a node with `view`; `pick` draws the random numbers that choose read
/// replicas.
pub fn plan(
    view: &ClusterView,
    origin: Origin<'_>,
    command: Command,
    pick: &mut impl FnMut() -> u32,
) -> Plan {
    let Origin {
        path,
        binary,
        operator,
    } = origin;
    if view.is_standalone() || !is_routed(&command) {
        let write = is_write(&command);
        return Plan::Local { command, write };
    }
    let fpath = forward_path(view.self_key(), path);
    let ctx = Ctx {
        view,
        path,
        fpath: &fpath,
        binary,
        operator,
    };
    match command {
        Command::Get { .. } | Command::Gat { .. } => ctx.keys(command, pick),
        Command::Meta(m) => ctx.meta(m, pick),
        Command::FlushAll { delay, noreply } => ctx.flush(delay, noreply),
        command => {
            let key = single_key(&command).clone();
            match view.route_write(&key, path) {
                WriteRoute::Local => Plan::Local {
                    command,
                    write: true,
                },
                WriteRoute::Forward(master) => {
                    let silent = noreply(&command);
                    Plan::Parts(Pending {
                        parts: vec![Part::Peer {
                            node: master,
                            forward: forward::forward(Some(&fpath), &command, binary),
                        }],
                        merge: Merge::Single {
                            command,
                            key,
                            silent,
                            write: true,
                        },
                        retried: false,
                    })
                }
                route => Plan::Reply(refusal(&route)),
            }
        }
    }
}

/// Whether running `command` here may change the store (its changes are then replicated).
pub fn is_write(command: &Command) -> bool {
    match command {
        Command::Gat { .. }
        | Command::Store(_)
        | Command::Delete { .. }
        | Command::Arith { .. }
        | Command::Touch { .. }
        | Command::FlushAll { .. } => true,
        Command::Meta(m) => meta_writes(m),
        _ => false,
    }
}

fn meta_writes(m: &MetaCommand) -> bool {
    match m.kind {
        MetaKind::Get => m.flags.iter().any(|f| {
            matches!(
                f,
                MetaFlag::Vivify(_) | MetaFlag::Recache(_) | MetaFlag::Ttl(_) | MetaFlag::NewCas(_)
            )
        }),
        MetaKind::Set | MetaKind::Delete | MetaKind::Arith => true,
        MetaKind::NoOp | MetaKind::Debug => false,
    }
}

fn single_key(command: &Command) -> &Bytes {
    match command {
        Command::Store(s) => &s.key,
        Command::Delete { key, .. } | Command::Arith { key, .. } | Command::Touch { key, .. } => {
            key
        }
        _ => unreachable!("plan dispatches only single-key writes here"),
    }
}

fn noreply(command: &Command) -> bool {
    match command {
        Command::Store(s) => s.options.noreply,
        Command::Delete { options, .. } | Command::Arith { options, .. } => options.noreply,
        Command::Touch { noreply, .. } | Command::FlushAll { noreply, .. } => *noreply,
        _ => false,
    }
}

fn refusal(route: &WriteRoute) -> Reply {
    let msg = match route {
        WriteRoute::Loop => "proxy loop",
        WriteRoute::NotReplica => "not a replica of the sender",
        WriteRoute::NotServing => "not serving this partition",
        _ => "no partition available",
    };
    Reply::Error(ErrorReply::Server(msg.into()))
}

fn proxy_error() -> Reply {
    Reply::Error(ErrorReply::Server("proxy error".into()))
}

/// The proxy path of a request this node forwards: the incoming path plus this node.
fn forward_path(self_key: &str, path: Option<&ProxyPath>) -> ProxyPath {
    let mut p = path.cloned().unwrap_or_default();
    p.0.push(Bytes::copy_from_slice(self_key.as_bytes()));
    p
}

struct Ctx<'a> {
    view: &'a ClusterView,
    path: Option<&'a ProxyPath>,
    fpath: &'a ProxyPath,
    binary: bool,
    operator: bool,
}

/// Where one key of a multi-key request goes.
enum Dest {
    Here,
    Node(String),
    Nowhere,
    Refused(WriteRoute),
}

impl Ctx<'_> {
    fn read_dest(&self, key: &[u8], pick: &mut impl FnMut() -> u32) -> Dest {
        match self.view.route_read(key, pick()) {
            ReadRoute::Local => Dest::Here,
            // A read forwarded here by a node whose map sends it here is not served from this store when our own
            // map does not have us serve the key's partition: a node just put in `prepare` (a lagging slave on
            // failover) empties its store, and a proxy one push behind would read a miss for an acknowledged
            // write. The sender asks the master (`Merge::Keys` retries on an error line).
            ReadRoute::Forward(_) if self.path.is_some() => Dest::Refused(WriteRoute::NotServing),
            ReadRoute::Forward(n) => Dest::Node(n),
            ReadRoute::Miss => Dest::Nowhere,
        }
    }

    fn write_dest(&self, key: &[u8], path: Option<&ProxyPath>) -> Dest {
        match self.view.route_write(key, path) {
            WriteRoute::Local => Dest::Here,
            WriteRoute::Forward(n) => Dest::Node(n),
            WriteRoute::NoPartition => Dest::Nowhere,
            r => Dest::Refused(r),
        }
    }

    /// `get`/`gets`/`gat`/`gats`: the keys split by destination.
    fn keys(&self, command: Command, pick: &mut impl FnMut() -> u32) -> Plan {
        let (keys, gat) = match &command {
            Command::Get { keys, .. } => (keys.clone(), false),
            Command::Gat { keys, .. } => (keys.clone(), true),
            _ => unreachable!("keys plans only get and gat"),
        };
        let mut dests = Vec::with_capacity(keys.len());
        for key in &keys {
            let dest = match gat {
                false => self.read_dest(key, pick),
                true => self.write_dest(key, self.path),
            };
            if let Dest::Refused(r) = &dest {
                return Plan::Reply(refusal(r));
            }
            dests.push(dest);
        }
        if dests.iter().all(|d| matches!(d, Dest::Here)) {
            return Plan::Local {
                command,
                write: gat,
            };
        }
        let mut k = Keys {
            command,
            keys,
            missing: dests.iter().filter(|d| matches!(d, Dest::Nowhere)).count(),
            asked: Vec::new(),
            found: HashMap::new(),
            remote: Vec::new(),
        };
        let mut parts = Vec::new();
        let mut here = Vec::new();
        let mut nodes: Vec<(String, Vec<Bytes>)> = Vec::new();
        for (key, dest) in k.keys.iter().zip(dests) {
            match dest {
                Dest::Here => here.push(key.clone()),
                Dest::Node(n) => match nodes.iter_mut().find(|(x, _)| *x == n) {
                    Some((_, ks)) => ks.push(key.clone()),
                    None => nodes.push((n, vec![key.clone()])),
                },
                Dest::Nowhere | Dest::Refused(_) => {}
            }
        }
        if !here.is_empty() {
            parts.push(Part::Local {
                command: with_keys(&k.command, here.clone()),
                write: gat,
            });
            k.asked.push(here);
        }
        for (node, ks) in nodes {
            let part = with_keys(&k.command, ks.clone());
            parts.push(Part::Peer {
                node,
                forward: forward::forward(Some(self.fpath), &part, self.binary),
            });
            k.remote.extend(ks.iter().cloned());
            k.asked.push(ks);
        }
        Plan::Parts(Pending {
            parts,
            merge: Merge::Keys(k),
            retried: false,
        })
    }

    /// Meta commands route like their classic equivalents (protocol.md §11): `mg` as a read unless it may change the
    /// item (`N`, `R`, `T`, `E`), `ms`/`md`/`ma` as writes, `me` as a read, `mn` here.
    fn meta(&self, m: MetaCommand, pick: &mut impl FnMut() -> u32) -> Plan {
        if m.kind == MetaKind::NoOp {
            return Plan::Local {
                command: Command::Meta(m),
                write: false,
            };
        }
        let write = meta_writes(&m);
        let dest = match write {
            true => self.write_dest(&m.key, self.path),
            false => self.read_dest(&m.key, pick),
        };
        let node = match dest {
            Dest::Here => {
                return Plan::Local {
                    command: Command::Meta(m),
                    write,
                }
            }
            Dest::Node(n) => n,
            Dest::Nowhere if write => return Plan::Reply(refusal(&WriteRoute::NoPartition)),
            Dest::Nowhere => return Plan::Reply(Reply::Raw(Bytes::from_static(b"EN\r\n"))),
            Dest::Refused(r) => return Plan::Reply(refusal(&r)),
        };
        let command = Command::Meta(m);
        let forward = forward::forward(Some(self.fpath), &command, self.binary);
        let Command::Meta(meta) = command else {
            unreachable!("built above")
        };
        Plan::Parts(Pending {
            parts: vec![Part::Peer { node, forward }],
            merge: Merge::Meta { meta, write },
            retried: false,
        })
    }

    /// `flush_all`: from a client, every master of the cluster (the preparing one included); from another node or
    /// an operator, this node.
    fn flush(&self, delay: i64, noreply: bool) -> Plan {
        let command = Command::FlushAll { delay, noreply };
        if self.operator && self.path.is_none() {
            return Plan::Local {
                command,
                write: true,
            };
        }
        if let Some(path) = self.path {
            // Replication (tagged with the sender's sequence number) only from this node's master, as for writes.
            let replicated = path.sender_seq().is_some();
            if replicated && !path.sender().is_some_and(|s| self.view.replicates_to_me(s)) {
                return Plan::Reply(refusal(&WriteRoute::NotReplica));
            }
            return Plan::Local {
                command,
                write: true,
            };
        }
        let partitions = self.view.partitions();
        let mut masters = Vec::new();
        for p in partitions.active.iter().chain(partitions.preparing.iter()) {
            match &p.master {
                Some(m) => masters.push(m.clone()),
                None => return Plan::Reply(refusal(&WriteRoute::NoPartition)),
            }
        }
        if masters.is_empty() {
            return Plan::Reply(refusal(&WriteRoute::NoPartition));
        }
        let quiet = Command::FlushAll {
            delay,
            noreply: false,
        };
        let parts = masters
            .into_iter()
            .map(|m| match m == self.view.self_key() {
                true => Part::Local {
                    command: quiet.clone(),
                    write: true,
                },
                false => Part::Peer {
                    node: m,
                    forward: forward::forward(Some(self.fpath), &quiet, false),
                },
            })
            .collect();
        Plan::Parts(Pending {
            parts,
            merge: Merge::Flush { noreply },
            retried: false,
        })
    }
}

/// `command` (a get or gat) for `keys` only, with a reply that always ends (the merge shapes the client's reply).
fn with_keys(command: &Command, keys: Vec<Bytes>) -> Command {
    match command {
        Command::Get { cas, .. } => Command::Get { keys, cas: *cas },
        Command::Gat { exptime, cas, .. } => Command::Gat {
            exptime: *exptime,
            keys,
            cas: *cas,
            flare_form: false,
            noreply: false,
        },
        _ => unreachable!("with_keys is used for get and gat only"),
    }
}

impl Pending {
    /// Merges the answers to [`Pending::parts`] (in their order). `view` is the node's current view (a retry goes to
    /// the master it names now); `tally` counts the keys answered by peers.
    pub fn finish(mut self, view: &ClusterView, answers: Vec<Answer>, tally: &mut Tally) -> Finish {
        debug_assert_eq!(answers.len(), self.parts.len());
        match self.merge {
            Merge::Single {
                command,
                key,
                silent,
                write,
            } => {
                let Some(answer) = answers.into_iter().next() else {
                    return Finish::Done(proxy_error());
                };
                let form = match &self.parts[0] {
                    Part::Peer { forward, .. } => forward.form,
                    Part::Local { .. } => Form::Text,
                };
                match answer {
                    Answer::Peer(Ok(r)) if silent => {
                        let _ = r;
                        Finish::Done(Reply::Nothing)
                    }
                    Answer::Peer(Ok(r)) => Finish::Done(forward::answer(&command, form, r)),
                    Answer::Local(r) => Finish::Done(r),
                    Answer::Peer(Err(())) => {
                        let parts = std::mem::take(&mut self.parts);
                        match retry(view, &key, parts, self.retried || !resendable(&command)) {
                            Some(parts) => Finish::Again(Box::new(Pending {
                                parts,
                                merge: Merge::Single {
                                    command,
                                    key,
                                    silent,
                                    write,
                                },
                                retried: true,
                            })),
                            None => Finish::Done(proxy_error()),
                        }
                    }
                }
            }
            Merge::Meta { meta, write } => {
                let Some(answer) = answers.into_iter().next() else {
                    return Finish::Done(proxy_error());
                };
                match answer {
                    Answer::Peer(Ok(PeerReply::Meta(line, data))) => {
                        Finish::Done(meta_reply(&meta, line, data))
                    }
                    Answer::Local(r) => Finish::Done(r),
                    Answer::Peer(_) => {
                        let parts = std::mem::take(&mut self.parts);
                        match retry(
                            view,
                            &meta.key,
                            parts,
                            self.retried || !meta_resendable(&meta),
                        ) {
                            Some(parts) => Finish::Again(Box::new(Pending {
                                parts,
                                merge: Merge::Meta { meta, write },
                                retried: true,
                            })),
                            None => Finish::Done(proxy_error()),
                        }
                    }
                }
            }
            Merge::Flush { noreply } => {
                let all_ok = answers.iter().all(|a| match a {
                    Answer::Local(r) => matches!(r, Reply::Ok),
                    Answer::Peer(Ok(PeerReply::Line(l))) => &l[..] == b"OK",
                    Answer::Peer(_) => false,
                });
                Finish::Done(match (all_ok, noreply) {
                    (true, true) => Reply::Nothing,
                    (true, false) => Reply::Ok,
                    (false, _) => Reply::Error(ErrorReply::Server("flush_all failed".into())),
                })
            }
            Merge::Keys(mut k) => {
                let mut failed: Vec<Bytes> = Vec::new();
                let asked = std::mem::take(&mut k.asked);
                for ((part, answer), keys) in self.parts.iter().zip(answers).zip(asked) {
                    let reply = match (part, answer) {
                        (_, Answer::Local(r)) => r,
                        (Part::Peer { forward, .. }, Answer::Peer(Ok(r))) => {
                            forward::answer(&k.command, forward.form, r)
                        }
                        (_, Answer::Peer(Err(()))) => {
                            failed.extend(keys);
                            continue;
                        }
                        (Part::Local { .. }, Answer::Peer(Ok(_))) => proxy_error(),
                    };
                    match reply {
                        Reply::Values { items, .. } => k
                            .found
                            .extend(items.into_iter().map(|i| (i.key.clone(), i))),
                        // A peer's error line (a slave whose lease ended answers no reads, core simulator seed
                        // 9184): its keys are asked of their masters, as for a peer that did not answer.
                        Reply::Error(_) if matches!(part, Part::Peer { .. }) && !self.retried => {
                            failed.extend(keys)
                        }
                        // A local storage failure, or an error on the retry: the client gets it as memcached would.
                        Reply::Error(e) => return Finish::Done(Reply::Error(e)),
                        _ => failed.extend(keys),
                    }
                }
                if !failed.is_empty() {
                    if self.retried {
                        return Finish::Done(proxy_error());
                    }
                    let mut parts = Vec::new();
                    for key in failed {
                        match view.route_write(&key, None) {
                            WriteRoute::Local => {
                                k.remote.retain(|r| *r != key);
                                parts.push(Part::Local {
                                    command: with_keys(&k.command, vec![key.clone()]),
                                    write: matches!(k.command, Command::Gat { .. }),
                                })
                            }
                            WriteRoute::Forward(m) => parts.push(Part::Peer {
                                node: m,
                                forward: forward::forward(
                                    None,
                                    &with_keys(&k.command, vec![key.clone()]),
                                    false,
                                ),
                            }),
                            _ => return Finish::Done(proxy_error()),
                        }
                        k.asked.push(vec![key]);
                    }
                    return Finish::Again(Box::new(Pending {
                        parts,
                        merge: Merge::Keys(k),
                        retried: true,
                    }));
                }
                Finish::Done(k.reply(tally))
            }
        }
    }
}

/// Whether `command` sent a second time, after a first send that may have taken effect, leaves the store as one
/// send does and gets the answer the first would have had: reads, `set`, `touch` and `gat` (an exptime set twice).
fn resendable(command: &Command) -> bool {
    match command {
        Command::Get { .. } | Command::Gat { .. } | Command::Touch { .. } => true,
        // A versioned set sent again finds its own version stored and answers NOT_STORED.
        Command::Store(s) => s.mode == StoreMode::Set && s.version.is_none(),
        Command::Meta(m) => meta_resendable(m),
        _ => false,
    }
}

/// [`resendable`] for a meta command: `mg` unless it creates (`N`) or wins a recache (`R`), `ms` in set mode
/// without a cas compare (`C`), invalidation (`I`) or an explicit new cas (`E`, which a second send finds taken).
fn meta_resendable(m: &MetaCommand) -> bool {
    let changes_by_state = m.flags.iter().any(|f| {
        matches!(
            f,
            MetaFlag::Vivify(_)
                | MetaFlag::Recache(_)
                | MetaFlag::CompareCas(_)
                | MetaFlag::Invalidate
                | MetaFlag::NewCas(_)
        )
    });
    match m.kind {
        MetaKind::Get => !changes_by_state,
        MetaKind::Set => m.set_mode() == MetaSetMode::Set && !changes_by_state,
        _ => false,
    }
}

/// The parts of a failed single request sent once more, to the key's master under `view`, when that is another
/// node than the one tried (a failover happened) and this was not the retry already.
fn retry(view: &ClusterView, key: &[u8], parts: Vec<Part>, retried: bool) -> Option<Vec<Part>> {
    if retried {
        return None;
    }
    let Some(Part::Peer { node, forward }) = parts.into_iter().next() else {
        return None;
    };
    match view.route_write(key, None) {
        WriteRoute::Forward(m) if m != node => Some(vec![Part::Peer { node: m, forward }]),
        _ => None,
    }
}

/// A peer's meta answer, relayed as it is unless `q` hides it ([`crate::protocol::meta::hidden_by_quiet`]).
fn meta_reply(m: &MetaCommand, line: Bytes, data: Option<Bytes>) -> Reply {
    let status = line.split(|&c| c == b' ').next().unwrap_or_default();
    // An `ma` answer for an item `N` created is hidden too: the peer's answer does not say (docs/compatibility.md).
    let hidden = m.quiet() && crate::protocol::meta::hidden_by_quiet(m.kind, status);
    if hidden {
        return Reply::Nothing;
    }
    forward::answer(
        &Command::Meta(m.clone()),
        Form::Meta,
        PeerReply::Meta(line, data),
    )
}

impl Keys {
    /// The client's reply: the hits in request order, shaped as the command asks.
    fn reply(self, tally: &mut Tally) -> Reply {
        for key in &self.remote {
            tally.cmd_get += 1;
            match self.found.contains_key(key) {
                true => tally.get_hits += 1,
                false => tally.get_misses += 1,
            }
        }
        tally.cmd_get += self.missing as u64;
        tally.get_misses += self.missing as u64;
        let items: Vec<ValueItem> = self
            .keys
            .iter()
            .filter_map(|k| self.found.get(k).cloned())
            .collect();
        match self.command {
            Command::Gat {
                flare_form: true,
                noreply,
                cas,
                ..
            } => match (noreply, items.is_empty()) {
                (true, _) => Reply::Nothing,
                (false, true) => Reply::NotFound,
                (false, false) => Reply::Values {
                    items,
                    cas,
                    end: false,
                },
            },
            Command::Get { cas, .. } | Command::Gat { cas, .. } => Reply::Values {
                items,
                cas,
                end: true,
            },
            _ => unreachable!("Keys merges only get and gat"),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::node::view::fixtures::{cluster, path, rec, view};
    use crate::node_map::{Role, State};
    use crate::protocol::meta::MetaParsed;
    use crate::protocol::reply::ValueBlock;
    use crate::protocol::{ArithOp, Limits, StoreRequest, WriteOptions};

    // `key0` is partition 0 (m0, s0) and `foo` partition 1 (m1, s1 in prepare) of 2 with the simple hash.

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn plan_of(me: &str, command: Command) -> Plan {
        plan(&cluster(me), Origin::default(), command, &mut || 0)
    }

    fn binary() -> Origin<'static> {
        Origin {
            binary: true,
            ..Origin::default()
        }
    }

    fn parts(p: Plan) -> Pending {
        match p {
            Plan::Parts(p) => p,
            other => panic!("expected parts, got {other:?}"),
        }
    }

    fn peer_bytes(part: &Part) -> (&str, &[u8]) {
        match part {
            Part::Peer { node, forward } => (node, &forward.bytes[..]),
            other => panic!("expected a peer part, got {other:?}"),
        }
    }

    fn done(f: Finish) -> Reply {
        match f {
            Finish::Done(r) => r,
            Finish::Again(p) => panic!("expected a reply, got another round {:?}", p.parts),
        }
    }

    fn value(key: &str, v: &str, version: u64) -> ValueBlock {
        ValueBlock {
            key: b(key),
            flags: 0,
            version: Some(version),
            exptime: None,
            value: b(v),
        }
    }

    fn item(key: &str, v: &str, version: u64) -> ValueItem {
        ValueItem {
            key: b(key),
            flags: 0,
            version,
            value: b(v),
        }
    }

    fn incr_creating() -> Command {
        Command::Arith {
            op: ArithOp::Incr,
            key: b("foo"),
            delta: 2,
            create: Some((10, 0)),
            cas: None,
            options: WriteOptions::default(),
        }
    }

    #[test]
    fn a_standalone_node_and_unrouted_commands_run_here() {
        assert!(matches!(
            plan_of("px", Command::Version),
            Plan::Local { write: false, .. }
        ));
        assert!(matches!(
            plan_of(
                "m0",
                Command::Touch {
                    key: b("key0"),
                    exptime: 1,
                    noreply: false
                }
            ),
            Plan::Local { write: true, .. }
        ));
    }

    #[test]
    fn a_binary_incr_that_creates_goes_as_meta_and_comes_back_with_its_cas() {
        let p = parts(plan(&cluster("px"), binary(), incr_creating(), &mut || 0));
        let (node, bytes) = peer_bytes(&p.parts[0]);
        assert_eq!(node, "m1:1");
        assert_eq!(bytes, b"<px:1>ma foo MI D2 N0 J10 v c\r\n");
        let answer = Answer::Peer(Ok(PeerReply::Meta(b("VA 2 c9"), Some(b("12")))));
        let reply = done(p.finish(&cluster("px"), vec![answer], &mut Tally::default()));
        assert_eq!(
            reply,
            Reply::Number {
                value: 12,
                version: 9
            }
        );
    }

    #[test]
    fn noreply_is_forwarded_with_a_reply_and_dropped_here() {
        let mut command = incr_creating();
        if let Command::Arith {
            options, create, ..
        } = &mut command
        {
            options.noreply = true;
            *create = None;
        }
        let p = parts(plan_of("px", command));
        assert_eq!(peer_bytes(&p.parts[0]).1, b"<px:1>incr foo 2\r\n");
        let answer = Answer::Peer(Ok(PeerReply::Line(b("3"))));
        assert_eq!(
            done(p.finish(&cluster("px"), vec![answer], &mut Tally::default())),
            Reply::Nothing
        );
    }

    #[test]
    fn a_get_is_split_by_node_and_merged_in_request_order() {
        let get = Command::Get {
            keys: vec![b("foo"), b("key0"), b("foo")],
            cas: true,
        };
        // On m0: key0 is served here, foo asked of m1 once.
        let p = parts(plan_of("m0", get));
        assert_eq!(p.parts.len(), 2);
        assert_eq!(
            p.parts[0],
            Part::Local {
                command: Command::Get {
                    keys: vec![b("key0")],
                    cas: true
                },
                write: false,
            }
        );
        assert_eq!(
            peer_bytes(&p.parts[1]),
            ("m1:1", &b"<m0:1>gets foo foo\r\n"[..])
        );
        let local = Answer::Local(Reply::Values {
            items: vec![item("key0", "x", 4)],
            cas: true,
            end: true,
        });
        let remote = Answer::Peer(Ok(PeerReply::Values(vec![
            value("foo", "y", 5),
            value("foo", "y", 5),
        ])));
        let mut tally = Tally::default();
        let reply = done(p.finish(&cluster("m0"), vec![local, remote], &mut tally));
        assert_eq!(
            reply,
            Reply::Values {
                items: vec![
                    item("foo", "y", 5),
                    item("key0", "x", 4),
                    item("foo", "y", 5)
                ],
                cas: true,
                end: true,
            }
        );
        assert_eq!(
            (tally.cmd_get, tally.get_hits),
            (2, 2),
            "the peer's keys are counted here"
        );
    }

    /// A read forwarded to a node that does not serve the key's partition in its own map (a proxy, or a slave the
    /// failover just put in `prepare`, whose store is being emptied) is refused, not answered from that store; the
    /// sender asks the master.
    #[test]
    fn a_forwarded_read_for_a_partition_this_node_does_not_serve_is_refused() {
        let get = || Command::Get {
            keys: vec![b("key0")],
            cas: false,
        };
        let from = path(&["m1:1"]);
        let origin = Origin {
            path: Some(&from),
            ..Origin::default()
        };
        match plan(&cluster("px"), origin, get(), &mut || 0) {
            Plan::Reply(Reply::Error(ErrorReply::Server(m))) => {
                assert_eq!(&m[..], "not serving this partition")
            }
            other => panic!("{other:?}"),
        }
        // The partition's own slave serves it.
        assert!(matches!(
            plan(&cluster("s0"), origin, get(), &mut || 0),
            Plan::Local { write: false, .. }
        ));
    }

    /// px's plan for `get key0`: sent to s0 (pick 1 picks the second reader).
    fn read_of_key0_from_s0() -> Pending {
        let get = Command::Get {
            keys: vec![b("key0")],
            cas: false,
        };
        let p = parts(plan(&cluster("px"), Origin::default(), get, &mut || 1));
        assert_eq!(peer_bytes(&p.parts[0]).0, "s0:1");
        p
    }

    /// Core simulator, seed 9184: a slave whose lease ended refuses reads; the proxy asks the master instead of
    /// failing the client's read.
    #[test]
    fn a_read_a_slave_refuses_is_asked_of_the_master() {
        let p = read_of_key0_from_s0();
        let refused = Answer::Peer(Ok(PeerReply::Line(b(
            "SERVER_ERROR lease expired (cut off from the index server); not serving reads",
        ))));
        let again = match p.finish(&cluster("px"), vec![refused.clone()], &mut Tally::default()) {
            Finish::Again(p) => *p,
            Finish::Done(r) => panic!("no retry: {r:?}"),
        };
        assert_eq!(peer_bytes(&again.parts[0]), ("m0:1", &b"get key0\r\n"[..]));
        // The master's own refusal reaches the client.
        assert!(matches!(
            done(again.finish(&cluster("px"), vec![refused], &mut Tally::default())),
            Reply::Error(ErrorReply::Server(m)) if m.contains("lease expired")
        ));
    }

    #[test]
    fn a_failed_read_is_asked_of_the_master_once() {
        // px reads key0 from s0, which fails: the retry goes to m0.
        let p = read_of_key0_from_s0();
        let again = match p.finish(
            &cluster("px"),
            vec![Answer::Peer(Err(()))],
            &mut Tally::default(),
        ) {
            Finish::Again(p) => *p,
            Finish::Done(r) => panic!("no retry: {r:?}"),
        };
        assert_eq!(peer_bytes(&again.parts[0]), ("m0:1", &b"get key0\r\n"[..]));
        // A second failure is final: an error, never a false miss.
        assert_eq!(
            done(again.finish(
                &cluster("px"),
                vec![Answer::Peer(Err(()))],
                &mut Tally::default()
            )),
            proxy_error()
        );
    }

    /// Core simulator, seed 2041: a sync `delete` forwarded to a master that applied and replicated it and died
    /// before answering was sent again to the promoted slave, which answered `NOT_FOUND` for a delete that had
    /// deleted. Only what is the same sent twice as once goes again; the rest gets the error.
    #[test]
    fn after_a_failover_only_a_write_that_is_the_same_sent_twice_is_retried() {
        let promoted = view(
            "px",
            vec![
                rec("m0", Role::Master, State::Active, Some(0), 1),
                rec("m1", Role::Proxy, State::Down, None, 0),
                rec("s1", Role::Master, State::Active, Some(1), 1),
                rec("px", Role::Proxy, State::Active, None, 0),
            ],
        );
        let store = |mode| {
            Command::Store(StoreRequest {
                mode,
                key: b("foo"),
                flags: 0,
                exptime: 0,
                value: b("v"),
                cas_unique: 7,
                version: None,
                options: WriteOptions::default(),
            })
        };
        let retried = |command: Command| {
            let p = parts(plan_of("px", command));
            matches!(
                p.finish(
                    &promoted,
                    vec![Answer::Peer(Err(()))],
                    &mut Tally::default()
                ),
                Finish::Again(_)
            )
        };
        assert!(retried(store(StoreMode::Set)));
        let versioned = match store(StoreMode::Set) {
            Command::Store(s) => Command::Store(StoreRequest {
                version: Some(9),
                ..s
            }),
            _ => unreachable!(),
        };
        assert!(
            !retried(versioned),
            "a versioned set answers NOT_STORED the second time"
        );
        for mode in [
            StoreMode::Add,
            StoreMode::Replace,
            StoreMode::Append,
            StoreMode::Prepend,
            StoreMode::Cas,
        ] {
            assert!(!retried(store(mode)), "{mode:?} was sent twice");
        }
        assert!(!retried(Command::Delete {
            key: b("foo"),
            hold: 0,
            version: None,
            cas: None,
            options: WriteOptions::default(),
        }));
        assert!(!retried(Command::Arith {
            op: ArithOp::Incr,
            key: b("foo"),
            delta: 1,
            create: None,
            cas: None,
            options: WriteOptions::default(),
        }));
        let meta = |line: &str| {
            let line = b(line);
            let tokens: Vec<&[u8]> = crate::protocol::text::Tokens::new(&line).collect();
            match crate::protocol::meta::parse(&line, &tokens, &Limits::default()) {
                Ok(MetaParsed::Ready(m)) => Command::Meta(m),
                other => panic!("{line:?}: {other:?}"),
            }
        };
        assert!(retried(meta("mg foo v")));
        assert!(!retried(meta("md foo")));
        assert!(!retried(meta("ma foo")));
        assert!(!retried(meta("mg foo N30 v")));
        let ms = |line: &str| {
            let line = b(line);
            let tokens: Vec<&[u8]> = crate::protocol::text::Tokens::new(&line).collect();
            match crate::protocol::meta::parse(&line, &tokens, &Limits::default()) {
                Ok(MetaParsed::NeedData { mut command, .. }) => {
                    command.set_value(b("v"));
                    Command::Meta(command)
                }
                other => panic!("{line:?}: {other:?}"),
            }
        };
        assert!(retried(ms("ms foo 1 T0")));
        assert!(
            !retried(ms("ms foo 1 E77")),
            "the second send finds cas 77 taken"
        );
        assert!(!retried(ms("ms foo 1 C5")));
    }

    #[test]
    fn a_failed_write_is_retried_only_on_a_new_master() {
        let set = |key: &str| Command::Touch {
            key: b(key),
            exptime: 5,
            noreply: false,
        };
        let p = parts(plan_of("px", set("foo")));
        // Same map: m1 is still the master, nothing to retry.
        assert_eq!(
            done(p.finish(
                &cluster("px"),
                vec![Answer::Peer(Err(()))],
                &mut Tally::default()
            )),
            proxy_error()
        );
        // After a failover to s1, the write goes there once.
        let promoted = view(
            "px",
            vec![
                rec("m0", Role::Master, State::Active, Some(0), 1),
                rec("m1", Role::Proxy, State::Down, None, 0),
                rec("s1", Role::Master, State::Active, Some(1), 1),
                rec("px", Role::Proxy, State::Active, None, 0),
            ],
        );
        let p = parts(plan_of("px", set("foo")));
        let again = match p.finish(
            &promoted,
            vec![Answer::Peer(Err(()))],
            &mut Tally::default(),
        ) {
            Finish::Again(p) => *p,
            Finish::Done(r) => panic!("no retry: {r:?}"),
        };
        assert_eq!(
            peer_bytes(&again.parts[0]),
            ("s1:1", &b"<px:1>touch foo 5\r\n"[..])
        );
        let ok = Answer::Peer(Ok(PeerReply::Line(b("TOUCHED"))));
        assert_eq!(
            done(again.finish(&promoted, vec![ok], &mut Tally::default())),
            Reply::Touched {
                flags: 0,
                version: 0
            }
        );
    }

    #[test]
    fn flush_all_from_a_client_goes_to_every_master() {
        let flush = |noreply| Command::FlushAll { delay: 0, noreply };
        let p = parts(plan_of("m0", flush(false)));
        assert_eq!(
            p.parts[0],
            Part::Local {
                command: flush(false),
                write: true
            },
            "the master flushes itself and replicates it to its slaves"
        );
        assert_eq!(
            peer_bytes(&p.parts[1]),
            ("m1:1", &b"<m0:1>flush_all\r\n"[..])
        );
        let ok = || {
            vec![
                Answer::Local(Reply::Ok),
                Answer::Peer(Ok(PeerReply::Line(b("OK")))),
            ]
        };
        assert_eq!(
            done(p.finish(&cluster("m0"), ok(), &mut Tally::default())),
            Reply::Ok
        );
        let p = parts(plan_of("m0", flush(false)));
        let failed = vec![Answer::Local(Reply::Ok), Answer::Peer(Err(()))];
        assert!(matches!(
            done(p.finish(&cluster("m0"), failed, &mut Tally::default())),
            Reply::Error(ErrorReply::Server(_))
        ));
        let p = parts(plan_of("px", flush(true)));
        assert_eq!(p.parts.len(), 2);
        assert_eq!(
            done(p.finish(
                &cluster("px"),
                vec![
                    Answer::Peer(Ok(PeerReply::Line(b("OK")))),
                    Answer::Peer(Ok(PeerReply::Line(b("OK")))),
                ],
                &mut Tally::default()
            )),
            Reply::Nothing
        );
    }

    #[test]
    fn an_operators_flush_all_flushes_this_node_only() {
        let flush = Command::FlushAll {
            delay: 0,
            noreply: false,
        };
        let mut s = Session::default();
        s.observe(&Framing::TEXT, &Command::Version);
        s.observe(&Framing::TEXT, &flush);
        assert!(
            s.operator(),
            "Flare's tools open every connection with version"
        );
        let mut client = Session::default();
        client.observe(
            &Framing::TEXT,
            &Command::Get {
                keys: vec![b("a")],
                cas: false,
            },
        );
        client.observe(&Framing::TEXT, &Command::Version);
        assert!(!client.operator());
        // A refused line first counts too (found by the differential test).
        let mut refused = Session::default();
        refused.observe_refused();
        refused.observe(&Framing::TEXT, &Command::Version);
        assert!(!refused.operator());
        // dalli's handshake: a binary Version first (found by the client matrix: its flush_all through a proxy
        // flushed nothing).
        let mut dalli = Session::default();
        let header = crate::protocol::BinaryHeader {
            opcode: 0x0b,
            opaque: 0,
            key: None,
        };
        dalli.observe(&Framing::Binary(header.clone()), &Command::Version);
        dalli.observe(&Framing::Binary(header), &flush);
        assert!(!dalli.operator());
        let origin = Origin {
            operator: true,
            ..Origin::default()
        };
        let flush = Command::FlushAll {
            delay: 0,
            noreply: false,
        };
        assert!(matches!(
            plan(&cluster("px"), origin, flush, &mut || 0),
            Plan::Local { write: true, .. }
        ));
    }

    #[test]
    fn a_proxied_flush_all_flushes_the_node_and_replication_comes_from_the_master_only() {
        let flush = Command::FlushAll {
            delay: 0,
            noreply: false,
        };
        let on = |me: &str, from: &str| {
            let p = path(&[from]);
            let origin = Origin {
                path: Some(&p),
                ..Origin::default()
            };
            plan(&cluster(me), origin, flush.clone(), &mut || 0)
        };
        assert!(matches!(on("m1", "px:1"), Plan::Local { write: true, .. }));
        assert!(matches!(on("s0", "m0:1#4"), Plan::Local { .. }));
        assert!(
            matches!(on("s1", "m1:1#4"), Plan::Local { .. }),
            "a slave in prepare too"
        );
        for (me, from) in [("s0", "m1:1#4"), ("m0", "s0:1#4"), ("px", "m0:1#4")] {
            assert_eq!(
                match on(me, from) {
                    Plan::Reply(r) => r,
                    other => panic!("{me} accepted a replicated flush from {from}: {other:?}"),
                },
                refusal(&WriteRoute::NotReplica)
            );
        }
    }

    #[test]
    fn quiet_meta_replies_are_dropped_here() {
        let line = b("ms foo 2 q T0");
        let tokens: Vec<&[u8]> = crate::protocol::text::Tokens::new(&line).collect();
        let MetaParsed::NeedData { mut command, .. } =
            crate::protocol::meta::parse(&line, &tokens, &Limits::default()).unwrap()
        else {
            panic!()
        };
        command.set_value(b("hi"));
        let p = parts(plan_of("px", Command::Meta(command)));
        assert_eq!(
            peer_bytes(&p.parts[0]),
            ("m1:1", &b"<px:1>ms foo 2 T0\r\nhi\r\n"[..])
        );
        let hd = Answer::Peer(Ok(PeerReply::Meta(b("HD"), None)));
        assert_eq!(
            done(p.finish(&cluster("px"), vec![hd], &mut Tally::default())),
            Reply::Nothing
        );
    }

    #[test]
    fn flares_gat_is_shaped_here() {
        let gat = Command::Gat {
            exptime: 9,
            keys: vec![b("foo")],
            cas: false,
            flare_form: true,
            noreply: false,
        };
        let p = parts(plan_of("px", gat.clone()));
        assert_eq!(
            peer_bytes(&p.parts[0]),
            ("m1:1", &b"<px:1>gats 9 foo\r\n"[..])
        );
        let miss = Answer::Peer(Ok(PeerReply::Values(vec![])));
        assert_eq!(
            done(p.finish(&cluster("px"), vec![miss], &mut Tally::default())),
            Reply::NotFound
        );
        let p = parts(plan_of("px", gat));
        let hit = Answer::Peer(Ok(PeerReply::Values(vec![value("foo", "v", 3)])));
        assert_eq!(
            done(p.finish(&cluster("px"), vec![hit], &mut Tally::default())),
            Reply::Values {
                items: vec![item("foo", "v", 3)],
                cas: false,
                end: false
            },
            "one VALUE without END, and without the CAS (cas: false)"
        );
    }
}
