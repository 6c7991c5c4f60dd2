//! Running a data command on a cluster node: each key goes where `ClusterView` says (cluster.md §7): served
//! locally, forwarded to a peer (reads to a replica, writes to the partition's master), or refused. A multi-key
//! `get` is split by destination, sent in parallel, and reassembled in request order. A local write is replicated
//! to the partition's slaves before a `sync` write is acknowledged.
//!
//! A forward that fails is retried once on the partition's current master (the map may have changed: failover);
//! if that fails too the client gets `SERVER_ERROR proxy error`, never a false miss.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use flare_core::cluster::{ClusterView, ReadRoute, WriteRoute};
use flare_core::exec::{self, Outcome, Tally};
use flare_core::protocol::meta::{MetaCommand, MetaFlag, MetaKind};
use flare_core::protocol::reply::{line_reply, ReplyKind};
use flare_core::protocol::text::encode_request;
use flare_core::protocol::{
    Command, ErrorReply, Framing, ProxyPath, ReplicationMode, Reply, ValueItem, WriteOptions,
};
use flare_core::storage::Storage;

use super::cluster::{replicate, wait_replicated};
use super::peers::{PeerError, PeerReply};
use super::Shared;
use crate::net::Net;

/// What running a command gave.
pub(super) enum Ran {
    /// Send this reply; `wrote`: the local store changed (group commit waits for durability).
    Reply { reply: Reply, wrote: bool },
    /// The command is not a data command: the driver runs it.
    Driver(Command),
    /// Close the connection.
    Close,
}

/// True for the commands routed by key.
pub(super) fn is_routed(command: &Command) -> bool {
    matches!(
        command,
        Command::Get { .. }
            | Command::Gat { .. }
            | Command::Store(_)
            | Command::Delete { .. }
            | Command::Arith { .. }
            | Command::Touch { .. }
            | Command::Meta(_)
    )
}

/// Runs a data command on a node of a cluster.
pub(super) async fn run<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    framing: &Framing,
    command: Command,
    tally: &mut Tally,
) -> Ran {
    let view = shared.cluster.view();
    let path = match framing {
        Framing::Text { proxy } => proxy.as_ref(),
        Framing::Binary(_) => None,
    };
    if let Some(seq) = path.and_then(ProxyPath::sender_seq) {
        shared.cluster.applied_seq.fetch_max(seq, Relaxed);
    }
    match command {
        Command::Get { keys, cas } => get(shared, &view, path, keys, cas, tally).await,
        Command::Gat { .. } => gat(shared, &view, path, command, tally).await,
        Command::Meta(m) => meta(shared, &view, path, m, tally).await,
        command => {
            let key = single_key(&command).clone();
            match view.route_write(&key, path) {
                WriteRoute::Local => local_write(shared, command, tally).await,
                WriteRoute::Forward(master) => {
                    forward_write(shared, path, master, &key, command).await
                }
                WriteRoute::NoPartition => error("no partition available"),
                WriteRoute::Loop => error("proxy loop"),
                WriteRoute::StaleReplication => error("replication refused"),
            }
        }
    }
}

fn single_key(command: &Command) -> &Bytes {
    match command {
        Command::Store(s) => &s.key,
        Command::Delete { key, .. } | Command::Arith { key, .. } | Command::Touch { key, .. } => {
            key
        }
        _ => unreachable!("only single-key writes reach here (run dispatches the others)"),
    }
}

fn error(msg: &'static str) -> Ran {
    Ran::Reply {
        reply: Reply::Error(ErrorReply::Server(msg.into())),
        wrote: false,
    }
}

fn options(command: &Command) -> WriteOptions {
    match command {
        Command::Store(s) => s.options,
        Command::Delete { options, .. } | Command::Arith { options, .. } => *options,
        Command::Touch { noreply, .. } | Command::Gat { noreply, .. } => WriteOptions {
            noreply: *noreply,
            ..WriteOptions::default()
        },
        _ => WriteOptions::default(),
    }
}

/// Runs a write here and replicates what it changed; a sync write is acknowledged once every active slave has it.
async fn local_write<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    command: Command,
    tally: &mut Tally,
) -> Ran {
    let opts = options(&command);
    let sync = match opts.replication {
        ReplicationMode::Sync => true,
        ReplicationMode::Async => false,
        ReplicationMode::Default => shared.cluster.sync_default.load(Relaxed),
    };
    match exec::execute(&shared.store, command, shared.now(), tally) {
        Outcome::Reply { reply, mutations } => {
            if mutations.is_empty() {
                return Ran::Reply {
                    reply,
                    wrote: false,
                };
            }
            let waits = match replicate(shared, &mutations, sync) {
                Ok(w) => w,
                Err(_) => return failed_replication(),
            };
            if sync && !waits.is_empty() && !wait_replicated(shared, &waits).await {
                return failed_replication();
            }
            Ran::Reply { reply, wrote: true }
        }
        Outcome::Close => Ran::Close,
        Outcome::Driver(c) => Ran::Driver(c),
        #[allow(unreachable_patterns)]
        _ => error("unknown error"),
    }
}

fn failed_replication() -> Ran {
    // The write is kept here and replication goes on in the background; the client learns it is not on every slave.
    Ran::Reply {
        reply: Reply::Error(ErrorReply::Server("replication failed".into())),
        wrote: true,
    }
}

/// The proxy path of a request this node forwards: the incoming path plus this node.
fn forward_path(shared_key: &str, path: Option<&ProxyPath>) -> ProxyPath {
    let mut p = path.cloned().unwrap_or_default();
    p.0.push(Bytes::copy_from_slice(shared_key.as_bytes()));
    p
}

fn shard(key: &[u8]) -> u64 {
    u64::from(crc32fast::hash(key))
}

/// Forwards a write to the partition's master and relays its answer (protocol.md §9). A `noreply` write is
/// forwarded without waiting; its answer is read and dropped.
async fn forward_write<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    path: Option<&ProxyPath>,
    master: String,
    key: &Bytes,
    mut command: Command,
) -> Ran {
    let noreply = options(&command).noreply;
    clear_noreply(&mut command);
    let fpath = forward_path(&shared.cluster.settings.self_key(), path);
    let mut bytes = BytesMut::new();
    if !encode_request(Some(&fpath), &command, &mut bytes) {
        return error("proxy failure");
    }
    let bytes = bytes.freeze();
    let pending = shared
        .cluster
        .peers
        .submit(&master, shard(key), bytes.clone(), ReplyKind::Line);
    if noreply {
        tokio::spawn(async move {
            let _ = pending.wait().await;
        });
        return Ran::Reply {
            reply: Reply::Nothing,
            wrote: false,
        };
    }
    let answer = match pending.wait().await {
        Ok(a) => Ok(a),
        Err(e) => retry_on_new_master(shared, &master, key, bytes, e).await,
    };
    match answer {
        Ok(PeerReply::Line(line)) => Ran::Reply {
            reply: line_reply(&line),
            wrote: false,
        },
        Ok(_) => error("proxy error"),
        Err(e) => {
            tracing::debug!(error = %e, "forwarded write failed");
            error("proxy error")
        }
    }
}

/// After a failed forward: if the map now names another master for the key (a failover happened), try it once.
async fn retry_on_new_master<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    tried: &str,
    key: &Bytes,
    bytes: Bytes,
    first: PeerError,
) -> Result<PeerReply, PeerError> {
    let view = shared.cluster.view();
    match view.route_write(key, None) {
        WriteRoute::Forward(m) if m != tried => {
            shared
                .cluster
                .peers
                .request(&m, shard(key), bytes, ReplyKind::Line)
                .await
        }
        _ => Err(first),
    }
}

fn clear_noreply(command: &mut Command) {
    match command {
        Command::Store(s) => s.options.noreply = false,
        Command::Delete { options, .. } | Command::Arith { options, .. } => options.noreply = false,
        Command::Touch { noreply, .. } => *noreply = false,
        _ => {}
    }
}

/// Where each key of a multi-key request goes: served here, or by one of `nodes`.
enum Source {
    Local,
    Node(usize),
    Miss,
}

/// `get`/`gets` (cluster.md §7.1): keys split by destination, fetched in parallel, reassembled in order.
async fn get<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    view: &ClusterView,
    path: Option<&ProxyPath>,
    keys: Vec<Bytes>,
    cas: bool,
    tally: &mut Tally,
) -> Ran {
    let mut nodes: Vec<String> = Vec::new();
    let mut sources = Vec::with_capacity(keys.len());
    for key in &keys {
        let route = match view.route_read(key, shared.cluster.pick()) {
            // A read forwarded to us by a node whose map sends it here is served here, whatever our map says: the
            // path shows it already travelled (Flare forwards reads without a path and can bounce them).
            ReadRoute::Forward(_) if path.is_some() => ReadRoute::Local,
            r => r,
        };
        sources.push(match route {
            ReadRoute::Local => Source::Local,
            ReadRoute::Miss => Source::Miss,
            ReadRoute::Forward(n) => Source::Node(match nodes.iter().position(|x| *x == n) {
                Some(i) => i,
                None => {
                    nodes.push(n);
                    nodes.len() - 1
                }
            }),
        });
    }
    if nodes.is_empty() {
        let local: Vec<Bytes> = keys
            .iter()
            .zip(&sources)
            .filter(|(_, s)| matches!(s, Source::Local))
            .map(|(k, _)| k.clone())
            .collect();
        tally.get_misses += (keys.len() - local.len()) as u64;
        tally.cmd_get += (keys.len() - local.len()) as u64;
        return local_reply(shared, Command::Get { keys: local, cas }, tally);
    }
    let fpath = forward_path(&shared.cluster.settings.self_key(), path);
    let mut waits = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let subset: Vec<Bytes> = keys
            .iter()
            .zip(&sources)
            .filter(|(_, s)| matches!(s, Source::Node(j) if *j == i))
            .map(|(k, _)| k.clone())
            .collect();
        let mut bytes = BytesMut::new();
        encode_request(
            Some(&fpath),
            &Command::Get {
                keys: subset.clone(),
                cas,
            },
            &mut bytes,
        );
        let pending =
            shared
                .cluster
                .peers
                .submit(node, shard(&subset[0]), bytes.freeze(), ReplyKind::Values);
        waits.push((subset, pending));
    }
    let local: Vec<Bytes> = keys
        .iter()
        .zip(&sources)
        .filter(|(_, s)| matches!(s, Source::Local))
        .map(|(k, _)| k.clone())
        .collect();
    let mut found: Vec<HashMap<Bytes, ValueItem>> = vec![HashMap::new(); nodes.len() + 1];
    if !local.is_empty() {
        if let Ran::Reply {
            reply: Reply::Values { items, .. },
            ..
        } = local_reply(shared, Command::Get { keys: local, cas }, tally)
        {
            found[nodes.len()] = items.into_iter().map(|i| (i.key.clone(), i)).collect();
        }
    }
    for (i, (subset, pending)) in waits.into_iter().enumerate() {
        let answer = match pending.wait().await {
            Ok(PeerReply::Values(v)) => Ok(v),
            _ => retry_read_on_master(shared, &subset, cas).await,
        };
        match answer {
            Ok(values) => {
                found[i] = values
                    .into_iter()
                    .map(|v| {
                        let item = ValueItem {
                            key: v.key.clone(),
                            flags: v.flags,
                            version: v.version.unwrap_or(0),
                            value: v.value,
                        };
                        (v.key, item)
                    })
                    .collect()
            }
            Err(()) => return error("proxy error"),
        }
    }
    let mut items = Vec::with_capacity(keys.len());
    for (key, source) in keys.iter().zip(&sources) {
        let slot = match source {
            Source::Local => nodes.len(),
            Source::Node(i) => *i,
            Source::Miss => continue,
        };
        if let Some(item) = found[slot].get(key) {
            items.push(item.clone());
        }
        if !matches!(source, Source::Local) {
            tally.cmd_get += 1;
            match found[slot].contains_key(key) {
                true => tally.get_hits += 1,
                false => tally.get_misses += 1,
            }
        }
    }
    for (_, s) in keys.iter().zip(&sources) {
        if matches!(s, Source::Miss) {
            tally.cmd_get += 1;
            tally.get_misses += 1;
        }
    }
    Ran::Reply {
        reply: Reply::Values {
            items,
            cas,
            end: true,
        },
        wrote: false,
    }
}

/// A read whose replica failed is asked of the key's master (it holds every key of its partition).
async fn retry_read_on_master<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    keys: &[Bytes],
    cas: bool,
) -> Result<Vec<flare_core::protocol::reply::ValueBlock>, ()> {
    let view = shared.cluster.view();
    let mut out = Vec::new();
    for key in keys {
        let master = match view.route_write(key, None) {
            WriteRoute::Forward(m) => m,
            WriteRoute::Local => {
                if let Ok(Some(item)) = shared.store.get(key, shared.now()) {
                    out.push(flare_core::protocol::reply::ValueBlock {
                        key: key.clone(),
                        flags: item.flags,
                        version: Some(item.version),
                        exptime: None,
                        value: item.value,
                    });
                }
                continue;
            }
            _ => return Err(()),
        };
        let mut bytes = BytesMut::new();
        encode_request(
            None,
            &Command::Get {
                keys: vec![key.clone()],
                cas,
            },
            &mut bytes,
        );
        match shared
            .cluster
            .peers
            .request(&master, shard(key), bytes.freeze(), ReplyKind::Values)
            .await
        {
            Ok(PeerReply::Values(v)) => out.extend(v),
            _ => return Err(()),
        }
    }
    Ok(out)
}

fn local_reply<N: Net, S: Storage + 'static>(
    shared: &Shared<N, S>,
    command: Command,
    tally: &mut Tally,
) -> Ran {
    match exec::execute(&shared.store, command, shared.now(), tally) {
        Outcome::Reply { reply, mutations } => Ran::Reply {
            reply,
            wrote: !mutations.is_empty(),
        },
        Outcome::Close => Ran::Close,
        Outcome::Driver(c) => Ran::Driver(c),
        #[allow(unreachable_patterns)]
        _ => error("unknown error"),
    }
}

/// `gat`/`gats`: a write (it changes exptimes), so each key goes to its master; split and reassembled like `get`.
async fn gat<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    view: &ClusterView,
    path: Option<&ProxyPath>,
    command: Command,
    tally: &mut Tally,
) -> Ran {
    let Command::Gat {
        exptime,
        keys,
        cas,
        flare_form,
        noreply,
    } = command
    else {
        unreachable!("gat is dispatched here only for Command::Gat")
    };
    let routes: Vec<WriteRoute> = keys.iter().map(|k| view.route_write(k, path)).collect();
    if routes.iter().all(|r| *r == WriteRoute::Local) {
        return local_write(
            shared,
            Command::Gat {
                exptime,
                keys,
                cas,
                flare_form,
                noreply,
            },
            tally,
        )
        .await;
    }
    let mut items = Vec::new();
    for (key, route) in keys.iter().zip(&routes) {
        let one = Command::Gat {
            exptime,
            keys: vec![key.clone()],
            cas,
            flare_form: false,
            noreply: false,
        };
        let got = match route {
            WriteRoute::Local => match local_write(shared, one, tally).await {
                Ran::Reply {
                    reply: Reply::Values { items, .. },
                    ..
                } => items,
                _ => Vec::new(),
            },
            WriteRoute::Forward(master) => {
                let mut bytes = BytesMut::new();
                encode_request(
                    Some(&forward_path(&shared.cluster.settings.self_key(), path)),
                    &one,
                    &mut bytes,
                );
                match shared
                    .cluster
                    .peers
                    .request(master, shard(key), bytes.freeze(), ReplyKind::Values)
                    .await
                {
                    Ok(PeerReply::Values(v)) => v
                        .into_iter()
                        .map(|v| ValueItem {
                            key: v.key,
                            flags: v.flags,
                            version: v.version.unwrap_or(0),
                            value: v.value,
                        })
                        .collect(),
                    _ => return error("proxy error"),
                }
            }
            WriteRoute::NoPartition => Vec::new(),
            WriteRoute::Loop => return error("proxy loop"),
            WriteRoute::StaleReplication => return error("replication refused"),
        };
        items.extend(got);
    }
    let reply = match (flare_form, noreply, items.is_empty()) {
        (false, _, _) => Reply::Values {
            items,
            cas,
            end: true,
        },
        (true, true, _) => Reply::Nothing,
        (true, false, true) => Reply::NotFound,
        (true, false, false) => Reply::Values {
            items,
            cas,
            end: false,
        },
    };
    Ran::Reply {
        reply,
        wrote: false,
    }
}

/// Meta commands route like their classic equivalents (protocol.md §11): `mg` as a read unless it may change the
/// item (`N`, `R`, `T`, `E`), `ms`/`md`/`ma` as writes, `me` as a read, `mn` here. A forwarded meta command is
/// relayed as the peer answered it.
async fn meta<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    view: &ClusterView,
    path: Option<&ProxyPath>,
    m: MetaCommand,
    tally: &mut Tally,
) -> Ran {
    let writes = match m.kind {
        MetaKind::NoOp => return local_reply(shared, Command::Meta(m), tally),
        MetaKind::Get => m.flags.iter().any(|f| {
            matches!(
                f,
                MetaFlag::Vivify(_) | MetaFlag::Recache(_) | MetaFlag::Ttl(_) | MetaFlag::NewCas(_)
            )
        }),
        MetaKind::Debug => false,
        MetaKind::Set | MetaKind::Delete | MetaKind::Arith => true,
    };
    let target = if writes {
        match view.route_write(&m.key, path) {
            WriteRoute::Local => return local_write(shared, Command::Meta(m), tally).await,
            WriteRoute::Forward(n) => n,
            WriteRoute::NoPartition => return error("no partition available"),
            WriteRoute::Loop => return error("proxy loop"),
            WriteRoute::StaleReplication => return error("replication refused"),
        }
    } else {
        match view.route_read(&m.key, shared.cluster.pick()) {
            ReadRoute::Forward(_) if path.is_some() => {
                return local_reply(shared, Command::Meta(m), tally)
            }
            ReadRoute::Local => return local_reply(shared, Command::Meta(m), tally),
            ReadRoute::Forward(n) => n,
            ReadRoute::Miss => {
                return Ran::Reply {
                    reply: Reply::Raw(Bytes::from_static(b"EN\r\n")),
                    wrote: false,
                }
            }
        }
    };
    forward_meta(shared, path, &target, m).await
}

async fn forward_meta<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    path: Option<&ProxyPath>,
    node: &str,
    m: MetaCommand,
) -> Ran {
    let quiet = m.quiet();
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(b"<");
    let fpath = forward_path(&shared.cluster.settings.self_key(), path);
    for (i, p) in fpath.0.iter().enumerate() {
        if i > 0 {
            bytes.extend_from_slice(b",");
        }
        bytes.extend_from_slice(p);
    }
    bytes.extend_from_slice(b">");
    // Without `q` the peer always answers, so the pipelined connection stays in step; quiet replies are dropped here.
    let line: Vec<&[u8]> = m
        .line
        .split(|&c| c == b' ')
        .filter(|t| !t.is_empty() && *t != b"q")
        .collect();
    bytes.extend_from_slice(&line.join(&b' '));
    bytes.extend_from_slice(b"\r\n");
    if m.kind == MetaKind::Set {
        bytes.extend_from_slice(&m.value);
        bytes.extend_from_slice(b"\r\n");
    }
    match shared
        .cluster
        .peers
        .request(node, shard(&m.key), bytes.freeze(), ReplyKind::Meta)
        .await
    {
        Ok(PeerReply::Meta(line, data)) => {
            let status = line.split(|&c| c == b' ').next().unwrap_or_default();
            let suppressed = quiet
                && match m.kind {
                    MetaKind::Get => status == b"EN",
                    MetaKind::Set | MetaKind::Arith => status == b"HD",
                    MetaKind::Delete => status == b"HD" || status == b"NF",
                    _ => false,
                };
            if suppressed {
                return Ran::Reply {
                    reply: Reply::Nothing,
                    wrote: false,
                };
            }
            let mut out =
                BytesMut::with_capacity(line.len() + 4 + data.as_ref().map_or(0, |d| d.len() + 2));
            out.extend_from_slice(&line);
            out.extend_from_slice(b"\r\n");
            if let Some(d) = data {
                out.extend_from_slice(&d);
                out.extend_from_slice(b"\r\n");
            }
            Ran::Reply {
                reply: Reply::Raw(out.freeze()),
                wrote: false,
            }
        }
        _ => error("proxy error"),
    }
}
