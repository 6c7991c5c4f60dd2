//! Node-map transitions of the index server (cluster.md §4.1, §5.2, §5.4, §6.1), as pure functions from one
//! [`MapState`] to the next.
//!
//! Each function takes the current cluster and returns either a refusal ([`Refusal`], the reason shown after
//! `SERVER_ERROR`), [`Step::Unchanged`] (the command is accepted and does nothing, e.g. `node state X down` on a down
//! node) or [`Step::Changed`] with the new cluster and the *prior nodes* that must get the push first (§4.2). The
//! version is not bumped here: the caller validates the result ([`validate_map`]), bumps the version, persists and
//! pushes, as one step.
//!
//! Invariants kept by every `Changed` result (checked again by [`validate_map`]):
//! - a proxy has no partition and balance 0; masters and slaves have a partition;
//! - the partition tables build ([`NodeMap::partitions`]): active partitions 0..P−1, a down master only as the
//!   preserved master of its partition, at most one preparing partition and it is P;
//! - every slave belongs to an active partition or to the preparing one;
//! - balances fit the `NODE` line (`i32`), and every balance sum check of §6.1 holds where the table asks for it.

use std::collections::{BTreeMap, BTreeSet};

use crate::keys::Resolver;
use crate::node_map::{MapError, NodeMap, NodeRecord, Role, State};
use crate::protocol::admin::NodeAddr;

pub use super::refusal::Refusal;

/// The first `thread_type` the index gives out (cluster.md §2.1).
pub const FIRST_THREAD_TYPE: u32 = 16;

/// Longest accepted `server-name` in bytes (a DNS name has at most 253).
pub const NAME_MAX: usize = 255;

/// What the transitions act on: the node map and the next free `thread_type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapState {
    /// The node map (its version is bumped by the caller).
    pub map: NodeMap,
    /// The next `thread_type` to give out; never reused.
    pub next_thread_type: u32,
}

impl Default for MapState {
    fn default() -> Self {
        MapState {
            map: NodeMap::default(),
            next_thread_type: FIRST_THREAD_TYPE,
        }
    }
}

/// The result of an accepted transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Accepted; nothing changes (no new version, no push).
    Unchanged,
    /// The new cluster, and the node keys that must receive the push before every other node.
    Changed {
        /// The cluster after the change (version not yet bumped).
        cluster: MapState,
        /// Prior nodes (§4.2): the promoted slave on failover, the master and slaves of an activated partition.
        prior: BTreeSet<String>,
    },
}

/// Registers a node (`node add`, §4.1). Returns the step and whether the node was known (a restart).
///
/// **\[Improve\]** A known node that is not down restarted before the monitor noticed: it gets the node-down handling
/// (failover if it was an active master) and is then registered as a restart (record kept, state down).
pub fn register(
    c: &MapState,
    node: &NodeAddr,
    nodes_max: usize,
    positions: &BTreeMap<String, u64>,
) -> Result<(Step, bool), Refusal> {
    let key = node.key();
    match c.map.nodes.get(&key) {
        Some(r) if r.state == State::Down => Ok((Step::Unchanged, true)),
        Some(_) => Ok((mark_down(c, &key, positions), true)),
        None => {
            check_name(&node.name)?;
            if c.map.nodes.len() >= nodes_max {
                return Err(Refusal::TooManyNodes(nodes_max));
            }
            let mut next = c.clone();
            let record = NodeRecord {
                name: node.name.clone(),
                port: node.port,
                role: Role::Proxy,
                state: State::Active,
                partition: None,
                balance: 0,
                thread_type: c.next_thread_type,
            };
            next.next_thread_type = c.next_thread_type.saturating_add(1);
            next.map.nodes.insert(key, record);
            Ok((changed(next), false))
        }
    }
}

/// `node role <node> <role> <balance> <partition>` (§6.1). `balance` and `partition` are −1 when left out.
pub fn set_role(
    c: &MapState,
    key: &str,
    role: Role,
    balance: i64,
    partition: i64,
    resolver: &Resolver,
) -> Result<Step, Refusal> {
    let r = record(c, key)?;
    if r.state == State::Down {
        return Err(Refusal::NodeDown(key.into()));
    }
    // A proxy in prepare or ready is an inconsistency; Flare resets it to active first (§6.1 last row).
    let mut base = c.clone();
    let reset = r.role == Role::Proxy && r.state != State::Active;
    if reset {
        node_mut(&mut base, key).state = State::Active;
    }
    let r = record(&base, key)?.clone();
    let step = match (r.role, r.state, role) {
        (Role::Proxy, _, Role::Proxy) if reset => return Ok(changed(base)),
        (Role::Proxy, _, Role::Proxy) => return Ok(Step::Unchanged),
        (Role::Proxy, _, Role::Master) => {
            proxy_to_master(&base, key, balance, partition, resolver)?
        }
        (Role::Proxy, _, Role::Slave) => proxy_to_slave(&base, key, balance, partition)?,
        (Role::Slave, State::Active, Role::Slave) => {
            same_partition(&r, partition)?;
            set_balance(&base, key, balance)?
        }
        (Role::Slave, _, Role::Slave) => {
            same_partition(&r, partition)?;
            prepare_slave_balance(&base, &r, balance)?
        }
        (Role::Slave, State::Active, Role::Proxy) => {
            let p = r.partition;
            let mut next = base.clone();
            demote(node_mut(&mut next, key), State::Active);
            if let Some(p) = p {
                check_sum(&next.map, p)?;
            }
            changed(next)
        }
        (Role::Slave, _, Role::Proxy) => {
            let mut next = base.clone();
            demote(node_mut(&mut next, key), State::Active);
            changed(next)
        }
        (Role::Master, State::Active, Role::Master)
        | (Role::Master, State::Prepare | State::Ready, Role::Master) => {
            same_partition(&r, partition)?;
            set_balance(&base, key, balance)?
        }
        (Role::Master, State::Prepare | State::Ready, Role::Proxy) => {
            let mut next = base.clone();
            reset_preparing_slaves(&mut next, r.partition);
            demote(node_mut(&mut next, key), State::Active);
            changed(next)
        }
        (from, state, to) => return Err(role_refusal(key, from, state, to)),
    };
    Ok(step)
}

/// `node state <node> <state>` (§3, §5.2, §5.4, §6.1). With `auto_activate`, a master reporting `ready` is activated
/// in the same step.
pub fn set_state(
    c: &MapState,
    key: &str,
    state: State,
    auto_activate: bool,
    positions: &BTreeMap<String, u64>,
) -> Result<Step, Refusal> {
    let r = record(c, key)?;
    match (state, r.role, r.state) {
        (State::Prepare, _, _) => Err(Refusal::PrepareRefused),
        (State::Down, Role::Slave, State::Active | State::Prepare) => Ok(take_out_slave(c, key)),
        (State::Down, _, _) => Ok(mark_down(c, key, positions)),
        (State::Active, _, State::Active) => Ok(Step::Unchanged),
        (State::Active, _, State::Down) => Ok(mark_up(c, key)),
        (State::Active, Role::Master, State::Ready) => Ok(activate(c, key)),
        (State::Active, Role::Master, State::Prepare) => Err(Refusal::NotReady(key.into())),
        (State::Active, Role::Slave | Role::Proxy, _) => {
            // A slave finished its dump; a proxy in prepare/ready is an inconsistency reset to active.
            let mut next = c.clone();
            node_mut(&mut next, key).state = State::Active;
            Ok(changed(next))
        }
        (State::Ready, Role::Master, State::Ready) => Ok(Step::Unchanged),
        (State::Ready, Role::Master, State::Prepare) if auto_activate => Ok(activate(c, key)),
        (State::Ready, Role::Master, State::Prepare) => {
            let mut next = c.clone();
            node_mut(&mut next, key).state = State::Ready;
            Ok(changed(next))
        }
        (State::Ready, role, current) => Err(Refusal::NotPreparing {
            node: key.into(),
            role,
            state: current,
        }),
    }
}

/// `node remove` (§3, §6.4): only a down node that is not a preserved master.
pub fn remove(c: &MapState, key: &str) -> Result<Step, Refusal> {
    let r = record(c, key)?;
    if r.state != State::Down {
        return Err(Refusal::RemoveNotDown {
            node: key.into(),
            state: r.state,
        });
    }
    if let (Role::Master, Some(partition)) = (r.role, r.partition) {
        return Err(Refusal::RemovePreserved {
            node: key.into(),
            partition,
        });
    }
    let mut next = c.clone();
    next.map.nodes.remove(key);
    Ok(changed(next))
}

/// Node down (§5.2): from the monitor, `node state X down`, `shutdown`, or a restart. `positions` are the
/// replication positions the candidate slaves last reported (only comparable ones: see [`choose_successor`]).
pub fn mark_down(c: &MapState, key: &str, positions: &BTreeMap<String, u64>) -> Step {
    let Some(r) = c.map.nodes.get(key).cloned() else {
        return Step::Unchanged;
    };
    let mut next = c.clone();
    let mut prior = BTreeSet::new();
    match (r.role, r.state, r.partition) {
        (_, State::Down, _) => return Step::Unchanged,
        (Role::Master, State::Active, Some(p)) => {
            let candidates = active_slaves(&c.map, p);
            match choose_successor(&candidates, positions) {
                Some(chosen) => {
                    promote(&mut next, &chosen, p);
                    demote(node_mut(&mut next, key), State::Down);
                    // [Improve] The other slaves hold what the old master sent them, which may be less than the
                    // new master holds (async writes a slave missed during a cut the new master did not): a slave
                    // not known to stand at the new master's position rebuilds itself from it, so every slave ends
                    // up holding exactly its master's data (core simulator, seed 9777). Positions that are equal
                    // mean the same prefix of the old master's writes.
                    let at = positions.get(&chosen);
                    for (other, _) in candidates.iter().filter(|(k, _)| *k != chosen) {
                        if at.is_none() || positions.get(other) != at {
                            node_mut(&mut next, other).state = State::Prepare;
                        }
                    }
                    prior.insert(chosen);
                }
                // Preserved master: role and partition kept, so P does not shrink.
                None => node_mut(&mut next, key).state = State::Down,
            }
        }
        (Role::Master, State::Prepare | State::Ready, p) => {
            reset_preparing_slaves(&mut next, p);
            demote(node_mut(&mut next, key), State::Down);
        }
        // [Improve] A slave of an active partition that fails or stops keeps its role, partition and balance while
        // down; when it comes back it rebuilds itself (prepare, then active) instead of returning as a proxy with
        // stale data that an operator must clear and add again (cluster.md §5.4). An operator's `node state X down`
        // does not come here (see `take_out_slave`).
        (Role::Slave, _, Some(p)) if p < partition_count(&c.map) => {
            node_mut(&mut next, key).state = State::Down
        }
        _ => demote(node_mut(&mut next, key), State::Down),
    }
    Step::Changed {
        cluster: next,
        prior,
    }
}

/// `node state X down` on a slave, from an operator: Flare's default step (§5.2 step 4), proxy/down with no
/// partition or balance, so a live node comes back as proxy/active within a monitor interval (§5.1).
/// `flare-admin reconstruct` relies on it: it then runs `flush_all` and `node role X slave 0 P` (admin-tool.md §6
/// #10). The \[Improve\] in [`mark_down`] that keeps a slave's role so it rebuilds itself when back is only for a
/// slave that fails or stops: a slave the operator set down would come back active, be emptied by the tool's
/// `flush_all`, and serve reads empty.
fn take_out_slave(c: &MapState, key: &str) -> Step {
    let mut next = c.clone();
    demote(node_mut(&mut next, key), State::Down);
    changed(next)
}

/// Node up (§5.4): a down node answered a ping, or `node state X active`.
pub fn mark_up(c: &MapState, key: &str) -> Step {
    let Some(r) = c.map.nodes.get(key) else {
        return Step::Unchanged;
    };
    if r.state != State::Down {
        return Step::Unchanged;
    }
    let mut next = c.clone();
    let other_master = r
        .partition
        .and_then(|p| master_of(&c.map, p))
        .is_some_and(|m| m.key() != key);
    let master_active = r
        .partition
        .and_then(|p| master_of(&c.map, p))
        .is_some_and(|m| m.state == State::Active);
    let n = node_mut(&mut next, key);
    match (n.role, n.partition) {
        // A preserved master comes back with its old data. (Flare demotes it when another node of its partition is
        // live; only a second master can make that safe, since demoting the last master leaves a gap in 0..P−1.)
        (Role::Master, Some(_)) if !other_master => n.state = State::Active,
        // A slave that was down rebuilds itself from its master (flush, dump, then active).
        (Role::Slave, Some(_)) if master_active => n.state = State::Prepare,
        _ => demote(n, State::Active),
    }
    changed(next)
}

/// Picks the slave to promote (§5.2 with our \[Improve\]): the highest replication position when every candidate
/// reported one; among equal positions, or when any is unknown, Flare's rule: the first in key order, replaced only
/// by a later one with a strictly greater balance. `candidates` are `(key, balance)` in key order.
pub fn choose_successor(
    candidates: &[(String, u32)],
    positions: &BTreeMap<String, u64>,
) -> Option<String> {
    let known: Option<Vec<u64>> = candidates
        .iter()
        .map(|(k, _)| positions.get(k).copied())
        .collect();
    let pool: Vec<&(String, u32)> = match known.as_ref().and_then(|p| p.iter().max()) {
        Some(best) => candidates
            .iter()
            .filter(|(k, _)| positions.get(k) == Some(best))
            .collect(),
        None => candidates.iter().collect(),
    };
    let mut chosen: Option<&(String, u32)> = None;
    for c in pool {
        if chosen.is_none_or(|b| c.1 > b.1) {
            chosen = Some(c);
        }
    }
    chosen.map(|(k, _)| k.clone())
}

/// Checks everything a map must satisfy before it is persisted or pushed (the module invariants), and that
/// `next_thread_type` is above every node's `thread_type` (cluster.md §11.1) and thread types are unique.
pub fn validate_map(map: &NodeMap, next_thread_type: u32) -> Result<(), String> {
    let tables = map.partitions().map_err(|e: MapError| e.to_string())?;
    let count = tables.active.len() as u32;
    let preparing = preparing(map).map(|(p, _)| p);
    let mut thread_types = BTreeSet::new();
    for (key, n) in &map.nodes {
        if *key != n.key() {
            return Err(format!("record {} is stored under key {key}", n.key()));
        }
        if n.thread_type >= next_thread_type || !thread_types.insert(n.thread_type) {
            return Err(format!(
                "node {key} has thread_type {} (next is {next_thread_type}, each is used once)",
                n.thread_type
            ));
        }
        if n.balance > i32::MAX as u32 || n.partition.is_some_and(|p| p > i32::MAX as u32) {
            return Err(format!(
                "node {key} has a balance or partition out of range"
            ));
        }
        match (n.role, n.partition) {
            (Role::Proxy, None) if n.balance == 0 => {}
            (Role::Proxy, _) => return Err(format!("proxy {key} has a partition or a balance")),
            (_, None) => return Err(format!("{} {key} has no partition", n.role)),
            (Role::Slave, Some(p)) if p >= count && Some(p) != preparing => {
                return Err(format!(
                    "slave {key} is in partition {p}, which does not exist"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The preparing partition and its master's key, if any.
pub fn preparing(map: &NodeMap) -> Option<(u32, String)> {
    map.nodes
        .iter()
        .find_map(|(k, n)| match (n.role, n.state, n.partition) {
            (Role::Master, State::Prepare | State::Ready, Some(p)) => Some((p, k.clone())),
            _ => None,
        })
}

/// The active partition count P: masters that are active or preserved.
pub fn partition_count(map: &NodeMap) -> u32 {
    map.nodes
        .values()
        .filter(|n| {
            n.role == Role::Master
                && n.partition.is_some()
                && matches!(n.state, State::Active | State::Down)
        })
        .count() as u32
}

/// The active or preserved master of partition `p`.
pub fn master_of(map: &NodeMap, p: u32) -> Option<&NodeRecord> {
    map.nodes.values().find(|n| {
        n.role == Role::Master
            && n.partition == Some(p)
            && matches!(n.state, State::Active | State::Down)
    })
}

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

fn changed(cluster: MapState) -> Step {
    Step::Changed {
        cluster,
        prior: BTreeSet::new(),
    }
}

fn record<'a>(c: &'a MapState, key: &str) -> Result<&'a NodeRecord, Refusal> {
    c.map
        .nodes
        .get(key)
        .ok_or_else(|| Refusal::NoSuchNode(key.into()))
}

/// The record `key`, which the caller has just found in `c`.
fn node_mut<'a>(c: &'a mut MapState, key: &str) -> &'a mut NodeRecord {
    c.map
        .nodes
        .get_mut(key)
        .expect("the caller looked this key up in the same map")
}

/// A `server-name` the cluster can carry: 1..=255 bytes, no ':', space or control character.
pub(crate) fn check_name(name: &str) -> Result<(), Refusal> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > NAME_MAX {
        Some("longer than 255 bytes")
    } else if name.contains(':') {
        Some("contains ':' (stats nodes splits node keys at ':')")
    } else if name.chars().any(|c| c == ' ' || c.is_control()) {
        Some("contains a space or a control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(Refusal::InvalidName {
            name: name.into(),
            why,
        }),
        None => Ok(()),
    }
}

/// The balance argument as a node balance: 0..=i32::MAX.
fn valid_balance(balance: i64) -> Result<u32, Refusal> {
    u32::try_from(balance)
        .ok()
        .filter(|b| *b <= i32::MAX as u32)
        .ok_or(Refusal::InvalidBalance(balance))
}

/// The partition argument of a new master or slave: given, and a valid number.
fn valid_partition(partition: i64) -> Result<u32, Refusal> {
    match partition {
        -1 => Err(Refusal::PartitionMissing),
        p => u32::try_from(p)
            .ok()
            .filter(|p| *p <= i32::MAX as u32)
            .ok_or(Refusal::InvalidPartition(p)),
    }
}

/// A balance or role command on a master or slave may repeat its partition, or leave it out (−1).
fn same_partition(r: &NodeRecord, partition: i64) -> Result<(), Refusal> {
    let current = r.partition.map_or(-1, i64::from);
    if partition == -1 || partition == current {
        return Ok(());
    }
    Err(Refusal::WrongPartition {
        node: r.key(),
        current: r.partition.unwrap_or(0),
        requested: partition,
    })
}

/// §6.1 balance-sum check on the map after the change: the members of `p` (master and slaves not down) must have a
/// balance sum above 0.
fn check_sum(map: &NodeMap, p: u32) -> Result<(), Refusal> {
    let sum: u64 = map
        .nodes
        .values()
        .filter(|n| n.partition == Some(p) && n.state != State::Down && n.role != Role::Proxy)
        .map(|n| u64::from(n.balance))
        .sum();
    if sum == 0 {
        return Err(Refusal::BalanceSumZero(p));
    }
    Ok(())
}

fn set_balance(c: &MapState, key: &str, balance: i64) -> Result<Step, Refusal> {
    let b = valid_balance(balance)?;
    let mut next = c.clone();
    let n = node_mut(&mut next, key);
    n.balance = b;
    let p = n.partition;
    if let Some(p) = p {
        check_sum(&next.map, p)?;
    }
    Ok(changed(next))
}

/// `node role X slave B` on a slave in prepare: sets the balance it will read with once active.
fn prepare_slave_balance(c: &MapState, r: &NodeRecord, balance: i64) -> Result<Step, Refusal> {
    // The weight of a slave in prepare only applies once it is active, so any balance may be set meanwhile; the
    // same balance again (a retried command) changes nothing.
    if i64::from(r.balance) == balance {
        return Ok(Step::Unchanged);
    }
    set_balance(c, &r.key(), balance)
}

fn proxy_to_master(
    c: &MapState,
    key: &str,
    balance: i64,
    partition: i64,
    resolver: &Resolver,
) -> Result<Step, Refusal> {
    let b = valid_balance(balance)?;
    let p = valid_partition(partition)?;
    let count = partition_count(&c.map);
    let mut next = c.clone();
    let state = if p < count {
        // Replace a preserved master. Its record leaves the partition (Flare keeps a second master record until it
        // comes back; the tables cannot hold two masters for one partition).
        match master_of(&c.map, p) {
            Some(m) if m.state == State::Down => demote(node_mut(&mut next, &m.key()), State::Down),
            Some(m) => {
                return Err(Refusal::PartitionHasMaster {
                    partition: p,
                    master: m.key(),
                })
            }
            None => {
                return Err(Refusal::Inconsistent(format!(
                    "partition {p} has no master record"
                )))
            }
        }
        State::Active
    } else if p == count {
        check_new_partition(p, resolver)?;
        if let Some((q, master)) = preparing(&c.map) {
            return Err(Refusal::AlreadyPreparing {
                partition: q,
                master,
            });
        }
        // Every key moving to the new partition is copied from its current master, which drops it once the new
        // partition is active: each active partition needs a live master now.
        if let Some(q) = (0..count)
            .find(|q| !matches!(master_of(&c.map, *q), Some(m) if m.state == State::Active))
        {
            return Err(Refusal::PartitionWithoutMaster(q));
        }
        // The first partition has no data to copy: it is active at once.
        if count == 0 {
            State::Active
        } else {
            State::Prepare
        }
    } else {
        return Err(Refusal::NotNextPartition {
            partition: p,
            next: count,
        });
    };
    let n = node_mut(&mut next, key);
    n.role = Role::Master;
    n.state = state;
    n.partition = Some(p);
    n.balance = b;
    check_sum(&next.map, p)?;
    Ok(changed(next))
}

fn proxy_to_slave(c: &MapState, key: &str, balance: i64, partition: i64) -> Result<Step, Refusal> {
    let b = valid_balance(balance)?;
    let p = valid_partition(partition)?;
    let count = partition_count(&c.map);
    // [Improve] The balance given is kept in the record from the start (Flare forces 0 and needs a second command
    // once the slave is active). A slave in prepare is never read from whatever its balance (cluster.md §2.3), so
    // the weight applies exactly when it becomes active.
    let balance = if p < count {
        match master_of(&c.map, p) {
            Some(m) if m.state == State::Active => b,
            _ => return Err(Refusal::NoMaster(p)),
        }
    } else if preparing(&c.map).map(|(q, _)| q) == Some(p) {
        b
    } else {
        return Err(Refusal::NoSuchPartition {
            partition: p,
            count,
        });
    };
    let mut next = c.clone();
    let n = node_mut(&mut next, key);
    n.role = Role::Slave;
    n.state = State::Prepare;
    n.partition = Some(p);
    n.balance = balance;
    Ok(changed(next))
}

/// A new partition `p` (the (p+1)-th) must fit partition-size and own at least one slot (keys.rs \[Odd\]).
fn check_new_partition(p: u32, resolver: &Resolver) -> Result<(), Refusal> {
    let params = resolver.params();
    let count = p.saturating_add(1);
    if count >= params.partition_size {
        return Err(Refusal::PartitionTooLarge {
            partition: p,
            size: params.partition_size,
        });
    }
    let owns_a_slot =
        (0..params.virtual_slots).any(|s| resolver.partition_for_hash(s, count) == Some(p));
    if !owns_a_slot {
        return Err(Refusal::EmptyPartition {
            partition: p,
            virtual_slots: params.virtual_slots,
        });
    }
    Ok(())
}

fn role_refusal(key: &str, from: Role, state: State, to: Role) -> Refusal {
    let why = match (from, to) {
        (Role::Slave, Role::Master) => "promotion only happens through failover",
        (Role::Master, _) if state == State::Active => {
            "to retire a master, set it down (failover), then remove it"
        }
        (Role::Master, Role::Slave) => "a preparing master can only become a proxy",
        _ => "not allowed",
    };
    Refusal::RoleChange {
        node: key.into(),
        role: from,
        state,
        to,
        why,
    }
}

/// Active slaves of `p` as `(key, balance)`, in key order.
fn active_slaves(map: &NodeMap, p: u32) -> Vec<(String, u32)> {
    map.nodes
        .iter()
        .filter(|(_, n)| {
            n.role == Role::Slave && n.partition == Some(p) && n.state == State::Active
        })
        .map(|(k, n)| (k.clone(), n.balance))
        .collect()
}

/// The chosen slave becomes master, keeping its state and balance; balance 1 when every slave of `p` had 0.
fn promote(c: &mut MapState, key: &str, p: u32) {
    let slave_sum: u64 = c
        .map
        .nodes
        .values()
        .filter(|n| n.role == Role::Slave && n.partition == Some(p) && n.state != State::Down)
        .map(|n| u64::from(n.balance))
        .sum();
    let n = node_mut(c, key);
    n.role = Role::Master;
    if slave_sum == 0 {
        n.balance = 1;
    }
}

/// Every slave of the preparing partition `p` becomes proxy/active (§5.2 step 3, §6.1).
fn reset_preparing_slaves(c: &mut MapState, p: Option<u32>) {
    let Some(p) = p else { return };
    for n in c.map.nodes.values_mut() {
        if n.role == Role::Slave && n.partition == Some(p) {
            demote(n, State::Active);
        }
    }
}

/// Proxy in `state`, no partition, balance 0 (§5.2 step 4).
fn demote(n: &mut NodeRecord, state: State) {
    n.role = Role::Proxy;
    n.state = state;
    n.partition = None;
    n.balance = 0;
}

/// `node state X active` on a ready master: the partition becomes active (P + 1). The master and its slaves get the
/// push first (§4.2).
fn activate(c: &MapState, key: &str) -> Step {
    let mut next = c.clone();
    let n = node_mut(&mut next, key);
    n.state = State::Active;
    let p = n.partition;
    let prior = next
        .map
        .nodes
        .iter()
        .filter(|(_, m)| m.partition == p && m.state != State::Down && m.role != Role::Proxy)
        .map(|(k, _)| k.clone())
        .collect();
    Step::Changed {
        cluster: next,
        prior,
    }
}

#[cfg(test)]
mod tests;
