//! The checkers. Each returns the failures it finds; [`check_run`] runs them all on a finished run.
//!
//! - **values** (every read during the run, every dump): a value is made only of tokens written to that key, in the
//!   shape `p* w a*`, with the flags of its base write. Anything else is corruption or a value from another key.
//! - **sync writes survive** ([`sync_writes_survive`]): an acknowledged `sync` write is still visible in the final
//!   state of its partition's master, unless a write that may have come after it explains the final state.
//! - **fresh reads** ([`fresh_reads`]): the same rule for every read sent after the cluster converged, against what
//!   that read returned.
//! - **slaves match masters** ([`slaves_match_masters`]): in the final map, every active slave's `dump` is exactly
//!   its master's (keys, values, flags, versions, exptimes).
//! - **keys in their partition** ([`keys_in_their_partition`]): in the final map, every active master's and
//!   active slave's `dump` holds only keys of its own partition (after a growth, the moved keys are gone from the
//!   old partitions), so each key is held by exactly one partition.
//! - **reads through any node** ([`reads_match_masters`]): every key read through every node (one `gets` per key and
//!   one multi-key `gets`) returns exactly what the key's master holds.
//!
//! - **async loss bounded** ([`async_loss_bounded`], scenarios with [`Scenario::check_async_loss`]): the
//!   acknowledged non-sync writes a failover lost are no more than the crashed master's replication backlog to its
//!   successor at the crash.
//! - **one master per partition per map version** ([`one_master_per_version`]): across every map any holder
//!   showed with a given version (the index's, and each node's own), each partition has at most one active master.
//!
//! The failures found while running (protocol errors, index-map invariants, convergence) are in `Env::failures`.
//!
//! **Lost writes, precisely.** Let W be a write acknowledged with success, sent with `sync`. Let S be a state of the
//! key (the final one, or what a later read returned) and X the set-like write its base token names (none when the
//! key is absent). Because the history's order numbers follow simulated time, `X.complete < W.invoke` means X took
//! effect before W did ("X definitely before W"). W is lost when:
//! - W is set-like, S has base X ≠ W, and X is definitely before W (W was applied after X and nothing may have
//!   replaced it since, yet X is what is left);
//! - W is an append/prepend, S has a base X definitely before W, and W's token is not in S;
//! - W is a delete, S has a base X definitely before W (the key came back);
//! - W is set-like or an append/prepend, S is absent, and no delete that may have succeeded could have come after
//!   W (every delete is definitely before W, or refused).
//!
//! A write that timed out or failed is never "definitely before" anything, since it may take effect at any time, so
//! it can explain any state. Counters: an acknowledged sync `incr` returning r leaves the counter ≥ r, unless a
//! `set`, `decr` or `delete` may have come after it.
//!
//! **When a copy did not survive** ([`CrashModel::Machine`] only): a machine crash loses the node's unsynced writes.
//! A partition is excused for the writes *sent* before the crash (one may have been applied just before it, its
//! reply still on the wire) when the crashed node was that partition's active master afterwards (in a map the admin
//! saw, or the final map): it then served, and possibly replicated, its emptied store. A crashed node that came
//! back as a proxy holds no copy anyone reads, so it excuses nothing.

use std::collections::BTreeMap;

use flare_core::keys::{HashAlgorithm, PartitionParams, Resolver};

use crate::history::{short, Env, Failure, FinalState, HeldMap, Kind, Op, Outcome, Seen};
use crate::scenario::{CrashModel, Scenario, NODE_PORT};

/// Runs every end-of-run checker; returns the failures, those found while running first.
pub fn check_run(s: &Scenario, env: &Env) -> Vec<Failure> {
    let mut out = env.failures.clone();
    out.extend(one_master_per_version(&env.held_maps));
    let by_key = ops_by_key(&env.ops);
    out.extend(values_well_formed(env, &by_key));
    match &env.final_state {
        Some(state) => {
            let masters = final_masters(state);
            out.extend(sync_writes_survive(s, env, state, &masters, &by_key));
            out.extend(fresh_reads(s, env, state, &by_key));
            out.extend(slaves_match_masters(state));
            out.extend(keys_in_their_partition(s, state));
            if s.check_async_loss {
                out.extend(async_loss_bounded(s, env, state, &masters, &by_key));
            }
            out.extend(reads_match_masters(s, state, &masters));
        }
        None if out.is_empty() => out.push(Failure {
            checker: "final state",
            detail: "the run ended without reading the final state".into(),
        }),
        None => {}
    }
    out
}

/// At most one write-accepting master per partition per node-map version.
///
/// A node accepts client writes for partition P exactly when the map it holds makes it P's active master (it runs
/// them locally, cluster.md §7.2; a deposed master that has not heard of its demotion still does). So the
/// question is whether two nodes can ever hold maps *of the same version* that name different active masters of
/// one partition: versions are the index's only means of ordering maps (a node refuses a push older than what it
/// holds, and a newer map always wins), and two different maps under one version are two histories the cluster
/// cannot tell apart. Different versions naming different masters are the expected state during a failover (the
/// deposed master's map is older) and are allowed.
///
/// The evidence is [`Env::held_maps`]: every map the index showed the admin and every map each node showed as its
/// own (`stats` then `stats nodes` then `stats`, kept only when both versions agree), polled every 200 ms from the
/// admin host, which faults never cut off. It is a sample (a map held for less than a poll can be missed), so this
/// checker finds violations that last, not every one; it never reports a false one, as each entry is a map a
/// host really held under that version. Within one map, two active masters of a partition are reported too.
///
/// Found by swarm seeds 1036, 1176 and 1970 (fixed in `register`, runtime/src/node/cluster.rs): two nodes
/// restarted while the index was down and registered at nearly the same time once it was back; one registration
/// made the index fail a master over, and the other node labelled the map of its `node add` reply, from before that
/// change, with the `node_map_version` it read right after, from after it. It held an older map under the newer
/// version until a later push. Registration now reads the map as `stats nodes` between two `stats` that agree.
pub fn one_master_per_version(held: &[HeldMap]) -> Vec<Failure> {
    // (version, partition) → master → the first holder that showed it.
    let mut masters: BTreeMap<(u64, i64), BTreeMap<String, &str>> = BTreeMap::new();
    for h in held {
        for (k, n) in &h.map {
            if n.role == "master" && n.state == "active" && n.partition >= 0 {
                masters
                    .entry((h.version, n.partition))
                    .or_default()
                    .entry(host_of(k))
                    .or_insert(&h.holder);
            }
        }
    }
    let mut out = Vec::new();
    for ((version, p), m) in masters {
        if m.len() > 1 {
            out.push(Failure {
                checker: "one master per version",
                detail: format!(
                    "maps of version {version} name different active masters of partition {p}: {}",
                    m.iter()
                        .map(|(master, holder)| format!("{master} (in the map {holder} held)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    out.truncate(20);
    out
}

/// Write operations by key, in completion order.
pub fn ops_by_key(ops: &[Op]) -> BTreeMap<String, Vec<&Op>> {
    let mut out: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| !o.kind.is_read()) {
        out.entry(op.keys[0].clone()).or_default().push(op);
    }
    out
}

/// A value split into its tokens.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The set-like write at its base.
    pub base: String,
    /// Every token, prepends first.
    pub tokens: Vec<String>,
}

/// Splits a token value (`p* w a*`, each token `;`-terminated, a base token possibly padded with `:xxx`).
pub fn parse_value(value: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(value).map_err(|_| "not UTF-8".to_string())?;
    let body = text
        .strip_suffix(';')
        .ok_or_else(|| format!("{text:?} does not end with ';'"))?;
    let mut tokens = Vec::new();
    let mut base = None;
    for t in body.split(';') {
        let t = t.split(':').next().unwrap_or_default();
        match t.chars().next() {
            Some('w') if base.is_none() => base = Some(t.to_string()),
            Some('p') if base.is_none() => {}
            Some('a') if base.is_some() => {}
            _ => return Err(format!("{text:?}: token {t:?} out of place")),
        }
        tokens.push(t.to_string());
    }
    Ok(Parsed {
        base: base.ok_or_else(|| format!("{text:?} has no base token"))?,
        tokens,
    })
}

/// Every value read during the run and every dumped value is made of tokens written to its key.
fn values_well_formed(env: &Env, by_key: &BTreeMap<String, Vec<&Op>>) -> Vec<Failure> {
    let mut out = Vec::new();
    let mut check = |where_: &str, item: &Seen| {
        if let Err(e) = explain(item, by_key) {
            out.push(Failure {
                checker: "values",
                detail: format!("{where_}: key {} holds {e}", item.key),
            });
        }
    };
    for op in &env.ops {
        if let Outcome::Values(items) = &op.outcome {
            for i in items {
                check(
                    &format!(
                        "{} through {} at {} ms",
                        op.kind.name(),
                        op.node,
                        op.complete_ms
                    ),
                    i,
                );
            }
        }
    }
    if let Some(state) = &env.final_state {
        for (node, dump) in &state.dumps {
            for i in dump {
                check(&format!("dump of {node}"), i);
            }
        }
    }
    out.truncate(20);
    out
}

/// Checks one item against the writes of its key; returns the set-like write at its base (None for a counter).
fn explain<'a>(
    item: &Seen,
    by_key: &'a BTreeMap<String, Vec<&'a Op>>,
) -> Result<Option<&'a Op>, String> {
    let ops = by_key.get(&item.key).map(Vec::as_slice).unwrap_or_default();
    if item.key.starts_with('c') {
        return match std::str::from_utf8(&item.value)
            .ok()
            .map(str::trim_end)
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(_) => Ok(None),
            None => Err(format!("non-numeric counter {:?}", short(&item.value))),
        };
    }
    let parsed = parse_value(&item.value)?;
    let find = |t: &str| ops.iter().find(|o| o.token.as_deref() == Some(t)).copied();
    let base = find(&parsed.base)
        .ok_or_else(|| format!("base {} that was never written to it", parsed.base))?;
    if !base.kind.sets_value() {
        return Err(format!(
            "base {} written by {}",
            parsed.base,
            base.kind.name()
        ));
    }
    if item.flags != base.flags {
        return Err(format!(
            "flags {} but its base {} wrote {}",
            item.flags, parsed.base, base.flags
        ));
    }
    for t in &parsed.tokens {
        let op = find(t).ok_or_else(|| format!("token {t} that was never written to it"))?;
        let want = match &t[..1] {
            "a" => Kind::Append,
            "p" => Kind::Prepend,
            _ => continue,
        };
        if op.kind != want {
            return Err(format!("token {t} written by {}", op.kind.name()));
        }
    }
    Ok(Some(base))
}

/// The final master of each partition, from the final map.
fn final_masters(state: &FinalState) -> BTreeMap<u32, String> {
    state
        .map
        .iter()
        .filter(|(_, n)| n.role == "master" && n.state == "active" && n.partition >= 0)
        .map(|(k, n)| (n.partition as u32, host_of(k)))
        .collect()
}

fn host_of(key: &str) -> String {
    key.strip_suffix(&format!(":{NODE_PORT}"))
        .unwrap_or(key)
        .to_string()
}

fn resolver(s: &Scenario) -> Resolver {
    let params = PartitionParams {
        hash: HashAlgorithm::parse(s.hash).unwrap_or_default(),
        ..PartitionParams::default()
    };
    // The scenario's parameters are the defaults with `simple` or `crc32`, which always build.
    Resolver::new(params).expect("invariant: default partition parameters build a resolver")
}

/// The partition of `key` among `count` partitions.
pub fn partition_of(r: &Resolver, key: &str, count: u32) -> u32 {
    match count {
        0 | 1 => 0,
        n => r.partition(key.as_bytes(), n).unwrap_or(0),
    }
}

/// What the final master of `key`'s partition holds for it.
fn master_item<'a>(
    s: &Scenario,
    r: &Resolver,
    state: &'a FinalState,
    masters: &BTreeMap<u32, String>,
    key: &str,
) -> Option<(String, Option<&'a Seen>)> {
    let p = partition_of(r, key, s.final_partitions());
    let master = masters.get(&p)?;
    let dump = state.dumps.get(master)?;
    Some((master.clone(), dump.iter().find(|i| i.key == key)))
}

/// Why the state `seen` (of W's key) shows W lost, if it does. `bound`: only writes sent before this order number
/// can explain the state (a read's completion), `u64::MAX` for the final state.
fn lost(
    w: &Op,
    seen: Option<&Seen>,
    ops: &[&Op],
    by_key: &BTreeMap<String, Vec<&Op>>,
    bound: u64,
) -> Option<String> {
    let may_follow = |x: &&&Op| {
        x.invoke < bound && !x.outcome.refused() && !x.definitely_before(w) && x.invoke != w.invoke
    };
    if w.keys[0].starts_with('c') {
        let Outcome::Number(r) = w.outcome else {
            return None;
        };
        if w.kind != Kind::Incr {
            return None;
        }
        let reset = ops
            .iter()
            .filter(may_follow)
            .any(|x| matches!(x.kind, Kind::Set | Kind::Decr | Kind::Delete));
        if reset {
            return None;
        }
        let value = seen.and_then(|i| {
            std::str::from_utf8(&i.value)
                .ok()?
                .trim_end()
                .parse::<u64>()
                .ok()
        });
        return match value {
            Some(v) if v >= r => None,
            Some(v) => Some(format!("counter is {v}, below the {r} it returned")),
            None => Some(format!("counter is gone although it returned {r}")),
        };
    }
    let Some(item) = seen else {
        if w.kind == Kind::Delete {
            return None;
        }
        let deleted_after = ops
            .iter()
            .filter(may_follow)
            .any(|x| x.kind == Kind::Delete);
        return (!deleted_after)
            .then(|| "the key is gone and no delete may have come after it".to_string());
    };
    // A malformed value is reported by the values checker.
    let base = explain(item, by_key).ok().flatten()?;
    if !base.definitely_before(w) {
        return None;
    }
    let parsed = parse_value(&item.value).ok()?;
    let token = w.token.as_deref().unwrap_or_default();
    let why = match w.kind {
        k if k.sets_value() && parsed.base != token => {
            format!("the base is {}, written before it", parsed.base)
        }
        Kind::Append | Kind::Prepend if !parsed.tokens.iter().any(|t| t == token) => {
            format!(
                "its token is missing from {}, whose base was written before it",
                short(&item.value)
            )
        }
        Kind::Delete => format!("the key holds {}, written before the delete", parsed.base),
        _ => return None,
    };
    Some(why)
}

fn describe(w: &Op) -> String {
    format!(
        "{} {} {} (client {}, through {}, sent at {} ms, acknowledged at {} ms)",
        w.kind.name(),
        w.keys[0],
        w.token.as_deref().unwrap_or(""),
        w.client,
        w.node,
        w.invoke_ms,
        w.complete_ms
    )
}

/// Checked writes: acknowledged with success and sent with `sync`.
fn checked(op: &Op) -> bool {
    op.sync && op.outcome.applied() && checked_kind(op.kind)
}

/// The write kinds whose loss [`lost`] can tell.
fn checked_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Set
            | Kind::Add
            | Kind::Replace
            | Kind::Cas
            | Kind::Append
            | Kind::Prepend
            | Kind::Delete
            | Kind::Incr
    )
}

/// Every acknowledged sync write is visible in its partition's final master (see the module docs).
pub fn sync_writes_survive(
    s: &Scenario,
    env: &Env,
    state: &FinalState,
    masters: &BTreeMap<u32, String>,
    by_key: &BTreeMap<String, Vec<&Op>>,
) -> Vec<Failure> {
    let r = resolver(s);
    let excused = excused_partitions(s, env, state);
    let mut out = Vec::new();
    for (key, ops) in by_key {
        let Some((master, item)) = master_item(s, &r, state, masters, key) else {
            out.push(Failure {
                checker: "sync writes survive",
                detail: format!("no final master for key {key}"),
            });
            continue;
        };
        for w in ops.iter().filter(|o| checked(o)) {
            if is_excused(s, &r, &excused, key, w) {
                continue;
            }
            if let Some(why) = lost(w, item, ops, by_key, u64::MAX) {
                out.push(Failure {
                    checker: "sync writes survive",
                    detail: format!(
                        "{} is lost on the final master {master}: {why}",
                        describe(w)
                    ),
                });
            }
        }
    }
    out.truncate(20);
    out
}

/// Partitions (and the order number before which their writes are excused) that lost a copy in a machine crash.
fn excused_partitions(s: &Scenario, env: &Env, state: &FinalState) -> Vec<(u32, u64)> {
    if s.crash_model != CrashModel::Machine || !s.excuse_lost_copies {
        return Vec::new();
    }
    let mut out = Vec::new();
    let final_map = [(u64::MAX, state.map.clone())];
    for (host, crashed_at) in &env.machine_crashes {
        let key = format!("{host}:{NODE_PORT}");
        for (seq, map) in env.maps.iter().chain(final_map.iter()) {
            if seq < crashed_at {
                continue;
            }
            if let Some(n) = map
                .get(&key)
                .filter(|n| n.role == "master" && n.state == "active")
            {
                out.push((n.partition as u32, *crashed_at));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The acknowledged non-sync writes a failover lost are no more than the replication backlog the crashed master
/// reported towards its successor at the crash.
///
/// At the crash, the fault driver reads the master's replication state in-process (`Env::crash_lags`: what its
/// `stats` shows as `replication:<target>:queue`, entries queued or sent and unanswered, plus `:failures`, entries
/// dropped). An async write the master acknowledged is either applied by the slave, or one of those entries: so
/// the writes the promoted slave lacks are at most queue + failures. The writes counted as lost are the
/// acknowledged non-sync writes of that partition completed before the crash that the final state of the new
/// master shows lost, by the same rule as the sync-write checker (`lost`): a later write that may explain the
/// state hides a loss, so the count is a lower bound, and the check never fails a run that kept its bound. It is
/// only sound when that crash is the only way writes were lost: scenarios enable it
/// ([`Scenario::check_async_loss`]) for a plan with one master crash and no other fault that loses writes.
pub fn async_loss_bounded(
    s: &Scenario,
    env: &Env,
    state: &FinalState,
    masters: &BTreeMap<u32, String>,
    by_key: &BTreeMap<String, Vec<&Op>>,
) -> Vec<Failure> {
    let r = resolver(s);
    let mut out = Vec::new();
    for c in &env.crash_lags {
        let (role, st, p) = &c.role;
        if role != "master" || st != "active" || *p < 0 {
            continue;
        }
        let p = *p as u32;
        let Some(successor) = masters.get(&p).filter(|m| **m != c.host) else {
            continue;
        };
        let Some(&(_, queue, dropped)) = c.targets.iter().find(|(t, _, _)| t == successor) else {
            out.push(Failure {
                checker: "async loss bounded",
                detail: format!(
                    "{successor} took over partition {p} from {} but was not its replication target at the crash",
                    c.host
                ),
            });
            continue;
        };
        let bound = if s.allow_reported_backlog {
            queue as u64 + dropped
        } else {
            0
        };
        let mut lost_writes = Vec::new();
        for (key, ops) in by_key {
            if partition_of(&r, key, s.final_partitions()) != p {
                continue;
            }
            let item = state
                .dumps
                .get(successor)
                .and_then(|d| d.iter().find(|i| &i.key == key));
            for w in ops.iter().filter(|o| {
                !o.sync && o.outcome.applied() && o.complete < c.seq && checked_kind(o.kind)
            }) {
                if lost(w, item, ops, by_key, u64::MAX).is_some() {
                    lost_writes.push(describe(w));
                }
            }
        }
        if lost_writes.len() as u64 > bound {
            out.push(Failure {
                checker: "async loss bounded",
                detail: format!(
                    "{} acknowledged async writes lost in {}'s failover to {successor}, more than the {bound} allowed \
                     (its backlog to it at the crash: {queue} queued or unanswered, {dropped} dropped): {}",
                    lost_writes.len(),
                    c.host,
                    lost_writes.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                ),
            });
        }
    }
    out
}

/// Whether the write `w` of `key` is excused by a lost copy: its partition, or (after a growth) the partition that
/// held the key before it moved, lost every copy after `w` was sent.
fn is_excused(s: &Scenario, r: &Resolver, excused: &[(u32, u64)], key: &str, w: &Op) -> bool {
    let now = partition_of(r, key, s.final_partitions());
    let before = partition_of(r, key, s.partitions);
    excused
        .iter()
        .any(|(q, seq)| (*q == now || *q == before) && w.invoke < *seq)
}

/// Every read sent after convergence shows every sync write acknowledged before it was sent.
pub fn fresh_reads(
    s: &Scenario,
    env: &Env,
    state: &FinalState,
    by_key: &BTreeMap<String, Vec<&Op>>,
) -> Vec<Failure> {
    let Some(since) = env.converged_at else {
        return Vec::new();
    };
    let r = resolver(s);
    let excused = excused_partitions(s, env, state);
    let mut out = Vec::new();
    for read in env
        .ops
        .iter()
        .filter(|o| o.kind.is_read() && o.invoke > since)
    {
        let Outcome::Values(items) = &read.outcome else {
            continue;
        };
        for key in &read.keys {
            let ops = by_key.get(key).map(Vec::as_slice).unwrap_or_default();
            let seen = items.iter().find(|i| &i.key == key);
            let excused = |w: &Op| is_excused(s, &r, &excused, key, w);
            for w in ops
                .iter()
                .filter(|w| checked(w) && w.complete < read.invoke && !excused(w))
            {
                if let Some(why) = lost(w, seen, ops, by_key, read.complete) {
                    out.push(Failure {
                        checker: "fresh reads",
                        detail: format!(
                            "{} through {} at {} ms misses {}: {why}",
                            read.kind.name(),
                            read.node,
                            read.complete_ms,
                            describe(w)
                        ),
                    });
                }
            }
        }
    }
    out.truncate(20);
    out
}

/// In the final map every active master and active slave holds only keys of its own partition (under the final
/// partition count): after a growth, the keys that moved to the new partition are gone from the old masters and
/// their slaves (cluster.md §6.3 \[Improve\], `remove_moved_keys`). With [`reads_match_masters`] and the sync-write
/// checker (which read each key from its final partition's master), every acknowledged key is then held by
/// exactly one partition and readable through every node.
pub fn keys_in_their_partition(s: &Scenario, state: &FinalState) -> Vec<Failure> {
    let r = resolver(s);
    let count = state
        .map
        .values()
        .filter(|n| n.role == "master" && n.partition >= 0)
        .map(|n| n.partition as u32 + 1)
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for (k, n) in &state.map {
        if !matches!(n.role.as_str(), "master" | "slave") || n.state != "active" || n.partition < 0
        {
            continue;
        }
        let host = host_of(k);
        let Some(dump) = state.dumps.get(&host) else {
            continue;
        };
        let strays: Vec<String> = dump
            .iter()
            .filter(|i| partition_of(&r, &i.key, count) != n.partition as u32)
            .map(|i| format!("{} (partition {})", i.key, partition_of(&r, &i.key, count)))
            .collect();
        if !strays.is_empty() {
            out.push(Failure {
                checker: "keys in their partition",
                detail: format!(
                    "{} {host} of partition {} holds keys of other partitions: {}",
                    n.role,
                    n.partition,
                    strays.join(", ")
                ),
            });
        }
    }
    out
}

/// In the final map every active slave holds exactly its master's items.
pub fn slaves_match_masters(state: &FinalState) -> Vec<Failure> {
    let mut out = Vec::new();
    let active = |role: &str| {
        state
            .map
            .iter()
            .filter(move |(_, n)| n.role == role && n.state == "active" && n.partition >= 0)
            .map(|(k, n)| (host_of(k), n.partition))
            .collect::<Vec<_>>()
    };
    let masters: BTreeMap<i64, String> =
        active("master").into_iter().map(|(h, p)| (p, h)).collect();
    for (slave, p) in active("slave") {
        let Some(master) = masters.get(&p) else {
            continue;
        };
        let (Some(m), Some(sl)) = (state.dumps.get(master), state.dumps.get(&slave)) else {
            continue;
        };
        let diff = dump_diff(m, sl);
        if !diff.is_empty() {
            out.push(Failure {
                checker: "slaves match masters",
                detail: format!(
                    "slave {slave} differs from master {master} (partition {p}): {}",
                    diff.join("; ")
                ),
            });
        }
    }
    out
}

fn dump_diff(master: &[Seen], slave: &[Seen]) -> Vec<String> {
    let m: BTreeMap<&str, &Seen> = master.iter().map(|i| (i.key.as_str(), i)).collect();
    let s: BTreeMap<&str, &Seen> = slave.iter().map(|i| (i.key.as_str(), i)).collect();
    let mut out = Vec::new();
    for k in m
        .keys()
        .chain(s.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (m.get(k), s.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => out.push(format!(
                "{k}: master {} slave {}",
                item_text(a.copied()),
                item_text(b.copied())
            )),
        }
        if out.len() >= 5 {
            break;
        }
    }
    out
}

fn item_text(i: Option<&Seen>) -> String {
    match i {
        None => "absent".into(),
        Some(i) => format!(
            "{}/flags {}/v{}/exp {}",
            short(&i.value),
            i.flags,
            i.version,
            i.exptime
        ),
    }
}

/// Every key read through every node returns what the key's master holds.
pub fn reads_match_masters(
    s: &Scenario,
    state: &FinalState,
    masters: &BTreeMap<u32, String>,
) -> Vec<Failure> {
    let r = resolver(s);
    let mut out = Vec::new();
    let same = |a: Option<&Seen>, b: Option<&Seen>| match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.value == b.value && a.flags == b.flags && a.version == b.version,
        _ => false,
    };
    for ((node, key), got) in &state.reads {
        let Some((master, want)) = master_item(s, &r, state, masters, key) else {
            continue;
        };
        if !same(got.as_ref(), want) {
            out.push(Failure {
                checker: "reads through any node",
                detail: format!(
                    "gets {key} through {node}: {} but master {master} holds {}",
                    item_text(got.as_ref()),
                    item_text(want)
                ),
            });
        }
    }
    for (node, items) in &state.multi_reads {
        for key in s.all_keys() {
            let Some((master, want)) = master_item(s, &r, state, masters, &key) else {
                continue;
            };
            let got = items.iter().find(|i| i.key == key);
            if !same(got, want) {
                out.push(Failure {
                    checker: "reads through any node",
                    detail: format!(
                        "multi-key gets through {node}, key {key}: {} but master {master} holds {}",
                        item_text(got),
                        item_text(want)
                    ),
                });
            }
        }
    }
    out.truncate(20);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{MapView, NodeInfo};

    fn map(records: &[(&str, &str, &str, i64)]) -> MapView {
        records
            .iter()
            .map(|(host, role, state, partition)| {
                (
                    format!("{host}:{NODE_PORT}"),
                    NodeInfo {
                        role: role.to_string(),
                        state: state.to_string(),
                        partition: *partition,
                        balance: 1,
                    },
                )
            })
            .collect()
    }

    fn held(holder: &str, version: u64, m: MapView) -> HeldMap {
        HeldMap {
            holder: holder.into(),
            version,
            map: m,
            seq: 0,
        }
    }

    #[test]
    fn a_failover_across_versions_is_allowed() {
        // v5: n0 masters partition 0; v6: n1 was promoted. The deposed n0 still holds v5: allowed.
        let v5 = map(&[("n0", "master", "active", 0), ("n1", "slave", "active", 0)]);
        let v6 = map(&[("n0", "proxy", "down", -1), ("n1", "master", "active", 0)]);
        let history = [
            held("index", 5, v5.clone()),
            held("n0", 5, v5.clone()),
            held("index", 6, v6.clone()),
            held("n1", 6, v6),
            held("n0", 5, v5),
        ];
        assert!(one_master_per_version(&history).is_empty());
    }

    #[test]
    fn two_masters_under_one_version_fail() {
        // A node labels a map with a version the index used for another one (as a registration that took the
        // version read before its map would): n1 is master of partition 0 in n1's v6, n0 in the index's v6.
        let index = map(&[("n0", "master", "active", 0), ("n1", "slave", "active", 0)]);
        let mine = map(&[("n0", "proxy", "down", -1), ("n1", "master", "active", 0)]);
        let history = [held("index", 6, index), held("n1", 6, mine)];
        let failures = one_master_per_version(&history);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].detail.contains("n0") && failures[0].detail.contains("n1"));
    }

    #[test]
    fn two_masters_in_one_map_fail() {
        let m = map(&[("n0", "master", "active", 1), ("n2", "master", "active", 1)]);
        assert_eq!(one_master_per_version(&[held("n3", 9, m)]).len(), 1);
    }
}
