//! Node-map transitions of the index server (cluster.md §4.1, §5.2, §5.4, §6.1), as pure functions from one
//! [`Cluster`] to the next.
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
pub struct Cluster {
    /// The node map (its version is bumped by the caller).
    pub map: NodeMap,
    /// The next `thread_type` to give out; never reused.
    pub next_thread_type: u32,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
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
        cluster: Cluster,
        /// Prior nodes (§4.2): the promoted slave on failover, the master and slaves of an activated partition.
        prior: BTreeSet<String>,
    },
}

/// Registers a node (`node add`, §4.1). Returns the step and whether the node was known (a restart).
///
/// **\[Improve\]** A known node that is not down restarted before the monitor noticed: it gets the node-down handling
/// (failover if it was an active master) and is then registered as a restart (record kept, state down).
pub fn register(
    c: &Cluster,
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
    c: &Cluster,
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
    c: &Cluster,
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
pub fn remove(c: &Cluster, key: &str) -> Result<Step, Refusal> {
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
pub fn mark_down(c: &Cluster, key: &str, positions: &BTreeMap<String, u64>) -> Step {
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
fn take_out_slave(c: &Cluster, key: &str) -> Step {
    let mut next = c.clone();
    demote(node_mut(&mut next, key), State::Down);
    changed(next)
}

/// Node up (§5.4): a down node answered a ping, or `node state X active`.
pub fn mark_up(c: &Cluster, key: &str) -> Step {
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

fn changed(cluster: Cluster) -> Step {
    Step::Changed {
        cluster,
        prior: BTreeSet::new(),
    }
}

fn record<'a>(c: &'a Cluster, key: &str) -> Result<&'a NodeRecord, Refusal> {
    c.map
        .nodes
        .get(key)
        .ok_or_else(|| Refusal::NoSuchNode(key.into()))
}

/// The record `key`, which the caller has just found in `c`.
fn node_mut<'a>(c: &'a mut Cluster, key: &str) -> &'a mut NodeRecord {
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

fn set_balance(c: &Cluster, key: &str, balance: i64) -> Result<Step, Refusal> {
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
fn prepare_slave_balance(c: &Cluster, r: &NodeRecord, balance: i64) -> Result<Step, Refusal> {
    // The weight of a slave in prepare only applies once it is active, so any balance may be set meanwhile; the
    // same balance again (a retried command) changes nothing.
    if i64::from(r.balance) == balance {
        return Ok(Step::Unchanged);
    }
    set_balance(c, &r.key(), balance)
}

fn proxy_to_master(
    c: &Cluster,
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

fn proxy_to_slave(c: &Cluster, key: &str, balance: i64, partition: i64) -> Result<Step, Refusal> {
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
fn promote(c: &mut Cluster, key: &str, p: u32) {
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
fn reset_preparing_slaves(c: &mut Cluster, p: Option<u32>) {
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
fn activate(c: &Cluster, key: &str) -> Step {
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
mod tests {
    use super::*;
    use crate::keys::{HashAlgorithm, PartitionParams};
    use crate::protocol::admin::{parse_line, AdminCommand, IndexCommand};

    /// A small resolver: partition-size 16, V = 256.
    fn resolver() -> Resolver {
        Resolver::new(PartitionParams {
            partition_size: 16,
            virtual_slots: 256,
            hint: 1,
            hash: HashAlgorithm::Simple,
        })
        .unwrap()
    }

    /// A cluster from `"<name> <role> <state> <partition|-> <balance>"` lines (port 12121, thread types 16.. in
    /// line order).
    fn cluster(lines: &[&str]) -> Cluster {
        let mut c = Cluster::default();
        for l in lines {
            let r = record_from(l, c.next_thread_type);
            c.next_thread_type += 1;
            c.map.nodes.insert(r.key(), r);
        }
        c
    }

    fn record_from(line: &str, thread_type: u32) -> NodeRecord {
        let f: Vec<&str> = line.split_whitespace().collect();
        NodeRecord {
            name: f[0].into(),
            port: 12121,
            role: Role::parse(f[1]).unwrap(),
            state: State::parse(f[2]).unwrap(),
            partition: f[3].parse().ok(),
            balance: f[4].parse().unwrap(),
            thread_type,
        }
    }

    /// The map as the same lines, in key order.
    fn lines(c: &Cluster) -> Vec<String> {
        c.map
            .nodes
            .values()
            .map(|n| {
                let p = n.partition.map_or("-".to_string(), |p| p.to_string());
                format!("{} {} {} {p} {}", n.name, n.role, n.state, n.balance)
            })
            .collect()
    }

    /// Runs one admin line (keys use port 12121) against the transitions.
    fn run_with(c: &Cluster, line: &str, auto_activate: bool) -> Result<Step, Refusal> {
        let Ok(AdminCommand::Index(cmd)) = parse_line(line.as_bytes()) else {
            panic!("not an index command: {line}")
        };
        let none = BTreeMap::new();
        match cmd {
            IndexCommand::NodeRole {
                node,
                role,
                balance,
                partition,
                ..
            } => set_role(c, &node.key(), role, balance, partition, &resolver()),
            IndexCommand::NodeState { node, state, .. } => {
                set_state(c, &node.key(), state, auto_activate, &none)
            }
            IndexCommand::NodeRemove(node) => remove(c, &node.key()),
            IndexCommand::NodeAdd(node) => register(c, &node, 64, &none).map(|(s, _)| s),
            other => panic!("not a transition: {other:?}"),
        }
    }

    enum Want {
        Map(&'static [&'static str]),
        Same,
        Refused(&'static str),
    }

    fn check(name: &str, start: &[&str], line: &str, want: Want) {
        let c = cluster(start);
        let got = run_with(&c, line, false);
        match (want, got) {
            (Want::Map(m), Ok(Step::Changed { cluster, .. })) => {
                assert_eq!(lines(&cluster), m, "{name}: {line}");
                validate_map(&cluster.map, cluster.next_thread_type)
                    .unwrap_or_else(|e| panic!("{name}: invalid result: {e}"));
            }
            (Want::Same, Ok(Step::Unchanged)) => {}
            (Want::Refused(msg), Err(e)) => {
                assert!(
                    e.to_string().contains(msg),
                    "{name}: {e} should contain {msg:?}"
                )
            }
            (_, got) => panic!("{name}: {line}: unexpected {got:?}"),
        }
    }

    const P0: &[&str] = &["m0 master active 0 1", "x proxy active - 0"];
    const P1_SLAVES: &[&str] = &[
        "m0 master active 0 1",
        "s1 slave active 0 1",
        "s2 slave prepare 0 0",
        "x proxy active - 0",
    ];
    const PREPARING: &[&str] = &[
        "m0 master active 0 1",
        "n1 master prepare 1 1",
        "t1 slave prepare 1 2",
        "x proxy active - 0",
    ];

    /// cluster.md §6.1, one row (or one refusal) per case.
    #[test]
    fn transition_table() {
        use Want::*;
        let cases: Vec<(&str, &[&str], &str, Want)> = vec![
            (
                "down refuses node role",
                &["d proxy down - 0"],
                "node role d 12121 slave 0 0",
                Refused("node d:12121 is down"),
            ),
            (
                "prepare is never set",
                P0,
                "node state x 12121 prepare",
                Refused("state prepare cannot be set"),
            ),
            (
                "first master is active",
                &["x proxy active - 0"],
                "node role x 12121 master 1 0",
                Map(&["x master active 0 1"]),
            ),
            (
                "first master needs balance",
                &["x proxy active - 0"],
                "node role x 12121 master 0 0",
                Refused("balance sum of partition 0 would be 0"),
            ),
            (
                "missing balance",
                &["x proxy active - 0"],
                "node role x 12121 master",
                Refused("balance -1 is invalid"),
            ),
            (
                "missing partition",
                &["x proxy active - 0"],
                "node role x 12121 master 1",
                Refused("partition is missing"),
            ),
            (
                "next partition prepares",
                P0,
                "node role x 12121 master 2 1",
                Map(&["m0 master active 0 1", "x master prepare 1 2"]),
            ),
            (
                "partition with a master",
                P0,
                "node role x 12121 master 1 0",
                Refused("partition 0 already has master m0:12121"),
            ),
            (
                "partition beyond the next",
                P0,
                "node role x 12121 master 1 2",
                Refused("partition 2 is not the next partition 1"),
            ),
            (
                "second preparing partition",
                PREPARING,
                "node role x 12121 master 1 1",
                Refused("already being prepared by n1:12121"),
            ),
            (
                "replace a preserved master",
                &["m0 master down 0 1", "x proxy active - 0"],
                "node role x 12121 master 3 0",
                Map(&["m0 proxy down - 0", "x master active 0 3"]),
            ),
            (
                "slave of an active partition keeps its balance for when it is active",
                P0,
                "node role x 12121 slave 5 0",
                Map(&["m0 master active 0 1", "x slave prepare 0 5"]),
            ),
            (
                "slave of the preparing partition",
                PREPARING,
                "node role x 12121 slave 3 1",
                Map(&[
                    "m0 master active 0 1",
                    "n1 master prepare 1 1",
                    "t1 slave prepare 1 2",
                    "x slave prepare 1 3",
                ]),
            ),
            (
                "slave of no partition",
                P0,
                "node role x 12121 slave 0 1",
                Refused("partition 1 does not exist (partition count 1)"),
            ),
            (
                "slave of a preserved partition",
                &["m0 master down 0 1", "x proxy active - 0"],
                "node role x 12121 slave 0 0",
                Refused("partition 0 has no master"),
            ),
            ("proxy to proxy", P0, "node role x 12121 proxy", Same),
            (
                "preparing slave balance",
                PREPARING,
                "node role t1 12121 slave 7",
                Map(&[
                    "m0 master active 0 1",
                    "n1 master prepare 1 1",
                    "t1 slave prepare 1 7",
                    "x proxy active - 0",
                ]),
            ),
            (
                "active-partition preparing slave balance",
                P1_SLAVES,
                "node role s2 12121 slave 3 0",
                Map(&[
                    "m0 master active 0 1",
                    "s1 slave active 0 1",
                    "s2 slave prepare 0 3",
                    "x proxy active - 0",
                ]),
            ),
            (
                "retried slave 0 P is accepted",
                P1_SLAVES,
                "node role s2 12121 slave 0 0",
                Same,
            ),
            (
                "preparing slave gives up",
                P1_SLAVES,
                "node role s2 12121 proxy 0 -1",
                Map(&[
                    "m0 master active 0 1",
                    "s1 slave active 0 1",
                    "s2 proxy active - 0",
                    "x proxy active - 0",
                ]),
            ),
            (
                "preparing slave to master",
                P1_SLAVES,
                "node role s2 12121 master 1 0",
                Refused("promotion only happens through failover"),
            ),
            (
                "slave finished its dump",
                P1_SLAVES,
                "node state s2 12121 active",
                Map(&[
                    "m0 master active 0 1",
                    "s1 slave active 0 1",
                    "s2 slave active 0 0",
                    "x proxy active - 0",
                ]),
            ),
            (
                "active slave balance",
                P1_SLAVES,
                "node role s1 12121 slave 4 0",
                Map(&[
                    "m0 master active 0 1",
                    "s1 slave active 0 4",
                    "s2 slave prepare 0 0",
                    "x proxy active - 0",
                ]),
            ),
            (
                "active slave, other partition",
                P1_SLAVES,
                "node role s1 12121 slave 4 1",
                Refused("is in partition 0, not 1"),
            ),
            (
                "active slave balance sum",
                &["m0 master active 0 0", "s1 slave active 0 1"],
                "node role s1 12121 slave 0 0",
                Refused("balance sum of partition 0 would be 0"),
            ),
            (
                "active slave to proxy",
                P1_SLAVES,
                "node role s1 12121 proxy",
                Map(&[
                    "m0 master active 0 1",
                    "s1 proxy active - 0",
                    "s2 slave prepare 0 0",
                    "x proxy active - 0",
                ]),
            ),
            (
                "last reader to proxy",
                &["m0 master active 0 0", "s1 slave active 0 1"],
                "node role s1 12121 proxy",
                Refused("balance sum of partition 0 would be 0"),
            ),
            (
                "active slave to master",
                P1_SLAVES,
                "node role s1 12121 master 1 0",
                Refused("promotion only happens through failover"),
            ),
            (
                "preparing master balance",
                PREPARING,
                "node role n1 12121 master 5 1",
                Map(&[
                    "m0 master active 0 1",
                    "n1 master prepare 1 5",
                    "t1 slave prepare 1 2",
                    "x proxy active - 0",
                ]),
            ),
            (
                "preparing master to slave",
                PREPARING,
                "node role n1 12121 slave 1 1",
                Refused("a preparing master can only become a proxy"),
            ),
            (
                "preparing master to proxy",
                PREPARING,
                "node role n1 12121 proxy",
                Map(&[
                    "m0 master active 0 1",
                    "n1 proxy active - 0",
                    "t1 proxy active - 0",
                    "x proxy active - 0",
                ]),
            ),
            (
                "preparing master is ready",
                PREPARING,
                "node state n1 12121 ready",
                Map(&[
                    "m0 master active 0 1",
                    "n1 master ready 1 1",
                    "t1 slave prepare 1 2",
                    "x proxy active - 0",
                ]),
            ),
            (
                "ready again is a no-op",
                &["m0 master active 0 1", "n1 master ready 1 1"],
                "node state n1 12121 ready",
                Same,
            ),
            (
                "ready from a slave",
                P1_SLAVES,
                "node state s2 12121 ready",
                Refused("only a preparing master can become ready"),
            ),
            (
                "ready master is activated",
                &["m0 master active 0 1", "n1 master ready 1 1"],
                "node state n1 12121 active",
                Map(&["m0 master active 0 1", "n1 master active 1 1"]),
            ),
            (
                "preparing master is not ready",
                PREPARING,
                "node state n1 12121 active",
                Refused("master n1:12121 is still preparing"),
            ),
            (
                "active master balance",
                P0,
                "node role m0 12121 master 9 0",
                Map(&["m0 master active 0 9", "x proxy active - 0"]),
            ),
            (
                "active master balance sum",
                P0,
                "node role m0 12121 master 0 0",
                Refused("balance sum of partition 0 would be 0"),
            ),
            (
                "active master balance keeps its partition",
                P0,
                "node role m0 12121 master 9",
                Map(&["m0 master active 0 9", "x proxy active - 0"]),
            ),
            (
                "active master to slave",
                P0,
                "node role m0 12121 slave 1 0",
                Refused("set it down (failover), then remove it"),
            ),
            (
                "active master to proxy",
                P0,
                "node role m0 12121 proxy",
                Refused("set it down (failover), then remove it"),
            ),
            (
                "down on down",
                &["d proxy down - 0"],
                "node state d 12121 down",
                Same,
            ),
            // flare-admin reconstruct: the slave must come back as a proxy (admin-tool.md §6 #10), not as a slave
            // that the tool's flush_all then empties.
            (
                "operator sets an active slave down",
                P1_SLAVES,
                "node state s1 12121 down",
                Map(&[
                    "m0 master active 0 1",
                    "s1 proxy down - 0",
                    "s2 slave prepare 0 0",
                    "x proxy active - 0",
                ]),
            ),
            (
                "operator sets a preparing slave down",
                P1_SLAVES,
                "node state s2 12121 down",
                Map(&[
                    "m0 master active 0 1",
                    "s1 slave active 0 1",
                    "s2 proxy down - 0",
                    "x proxy active - 0",
                ]),
            ),
            ("active on active", P0, "node state x 12121 active", Same),
            (
                "down node comes up",
                &["d proxy down - 0"],
                "node state d 12121 active",
                Map(&["d proxy active - 0"]),
            ),
            (
                "remove a down node",
                &["d proxy down - 0", "x proxy active - 0"],
                "node remove d 12121",
                Map(&["x proxy active - 0"]),
            ),
            (
                "remove a live node",
                P0,
                "node remove x 12121",
                Refused("node x:12121 is active: only a down node can be removed"),
            ),
            (
                "remove a preserved master",
                &["m0 master down 0 1"],
                "node remove m0 12121",
                Refused("preserved master of partition 0"),
            ),
            (
                "unknown node",
                P0,
                "node role zz 12121 slave 0 0",
                Refused("no such node zz:12121"),
            ),
            (
                "proxy in prepare is reset first",
                &["m0 master active 0 1", "x proxy prepare - 0"],
                "node role x 12121 slave 0 0",
                Map(&["m0 master active 0 1", "x slave prepare 0 0"]),
            ),
            (
                "proxy in ready is reset by proxy",
                &["x proxy ready - 0"],
                "node role x 12121 proxy",
                Map(&["x proxy active - 0"]),
            ),
            (
                "negative partition",
                P0,
                "node role x 12121 slave 0 -2",
                Refused("invalid partition -2"),
            ),
            (
                "balance too large",
                P0,
                "node role m0 12121 master 2147483648 0",
                Refused("balance 2147483648 is invalid"),
            ),
        ];
        for (name, start, line, want) in cases {
            check(name, start, line, want);
        }
    }

    #[test]
    fn auto_activate_turns_ready_into_active_at_once() {
        let c = cluster(PREPARING);
        let Ok(Step::Changed { cluster, prior }) = run_with(&c, "node state n1 12121 ready", true)
        else {
            panic!("not changed")
        };
        assert_eq!(cluster.map.nodes["n1:12121"].state, State::Active);
        assert_eq!(prior, ["n1:12121", "t1:12121"].map(String::from).into());
    }

    #[test]
    fn activation_makes_master_and_slaves_prior() {
        let c = cluster(&[
            "m0 master active 0 1",
            "n1 master ready 1 1",
            "t1 slave prepare 1 0",
            "u1 slave active 1 1",
        ]);
        let Ok(Step::Changed { prior, cluster }) =
            run_with(&c, "node state n1 12121 active", false)
        else {
            panic!("not changed")
        };
        assert_eq!(
            prior,
            ["n1:12121", "t1:12121", "u1:12121"]
                .map(String::from)
                .into()
        );
        assert_eq!(partition_count(&cluster.map), 2);
    }

    #[test]
    fn partition_size_and_empty_partitions_are_refused() {
        // partition-size 16: partitions 0..=14 can exist.
        let mut start = vec!["x proxy active - 0".to_string()];
        for p in 0..15 {
            start.push(format!("m{p:02} master active {p} 1"));
        }
        let refs: Vec<&str> = start.iter().map(String::as_str).collect();
        check(
            "partition 15 of size 16",
            &refs,
            "node role x 12121 master 1 15",
            Want::Refused("partition 15 exceeds partition-size 16 (at most 15 partitions)"),
        );
        // V = 4096, H = 1: partition 72 owns no slot (keys.rs).
        let r = Resolver::new(PartitionParams::default()).unwrap();
        assert!(check_new_partition(71, &r).is_ok());
        assert_eq!(
            check_new_partition(72, &r),
            Err(Refusal::EmptyPartition {
                partition: 72,
                virtual_slots: 4096
            })
        );
        assert_eq!(
            check_new_partition(72, &r).unwrap_err().to_string(),
            "partition 72 would own no keys: partition-modular-virtual 4096 is too small for 73 partitions"
        );
    }

    fn down(c: &Cluster, key: &str, positions: &[(&str, u64)]) -> (Vec<String>, BTreeSet<String>) {
        let positions = positions
            .iter()
            .map(|(k, v)| (format!("{k}:12121"), *v))
            .collect();
        match mark_down(c, &format!("{key}:12121"), &positions) {
            Step::Changed { cluster, prior } => {
                validate_map(&cluster.map, cluster.next_thread_type).unwrap();
                (lines(&cluster), prior)
            }
            Step::Unchanged => (lines(c), BTreeSet::new()),
        }
    }

    const THREE_SLAVES: &[&str] = &[
        "m master active 0 1",
        "sb slave active 0 1",
        "sc slave active 0 2",
        "sd slave active 0 2",
        "se slave prepare 0 0",
    ];

    #[test]
    fn failover_follows_flare_rule_without_positions() {
        let (map, prior) = down(&cluster(THREE_SLAVES), "m", &[]);
        // First active slave, replaced only by a strictly greater balance: sc (2), not sd (2, later).
        assert_eq!(
            map,
            [
                "m proxy down - 0",
                "sb slave active 0 1",
                "sc master active 0 2",
                "sd slave active 0 2",
                "se slave prepare 0 0"
            ]
        );
        assert_eq!(prior, ["sc:12121".to_string()].into());
    }

    #[test]
    fn failover_prefers_the_highest_replication_position() {
        let c = cluster(THREE_SLAVES);
        let (map, _) = down(&c, "m", &[("sb", 10), ("sc", 5), ("sd", 9)]);
        assert_eq!(map[1], "sb master active 0 1");
        // A tie falls back to Flare's rule among the tied: sb (1) then sd (2, strictly greater).
        let (map, prior) = down(&c, "m", &[("sb", 10), ("sc", 5), ("sd", 10)]);
        assert_eq!(map[3], "sd master active 0 2");
        assert_eq!(prior, ["sd:12121".to_string()].into());
        // One unknown position: positions cannot be compared, Flare's rule over all.
        let (map, _) = down(&c, "m", &[("sb", 10), ("sd", 10)]);
        assert_eq!(map[2], "sc master active 0 2");
    }

    #[test]
    fn failover_with_zero_balances_gives_the_new_master_balance_1() {
        let c = cluster(&[
            "m master active 0 5",
            "s slave active 0 0",
            "t slave active 0 0",
        ]);
        let (map, _) = down(&c, "m", &[]);
        assert_eq!(
            map,
            [
                "m proxy down - 0",
                "s master active 0 1",
                "t slave active 0 0"
            ]
        );
    }

    #[test]
    fn master_without_active_slave_is_preserved() {
        let c = cluster(&[
            "m master active 0 3",
            "n master active 1 1",
            "s slave prepare 0 0",
        ]);
        let (map, prior) = down(&c, "m", &[]);
        assert_eq!(
            map,
            [
                "m master down 0 3",
                "n master active 1 1",
                "s slave prepare 0 0"
            ]
        );
        assert!(prior.is_empty());
        let after = cluster(&map.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(partition_count(&after.map), 2, "P does not shrink");
        // It comes back as the master, with its old data.
        let Step::Changed { cluster: up, .. } = mark_up(&after, "m:12121") else {
            panic!()
        };
        assert_eq!(lines(&up)[0], "m master active 0 3");
    }

    #[test]
    fn no_new_partition_while_a_partition_has_no_live_master() {
        // Found by swarm seed 1284: a new master prepared while partition 0's master was down copied nothing,
        // reported ready, and the old master dropped the moved keys when it came back.
        let c = cluster(&["m0 master down 0 1", "x proxy active - 0"]);
        assert_eq!(
            run_with(&c, "node role x 12121 master 1 1", false).err(),
            Some(Refusal::PartitionWithoutMaster(0))
        );
        let c = cluster(&["m0 master active 0 1", "x proxy active - 0"]);
        assert!(matches!(
            run_with(&c, "node role x 12121 master 1 1", false),
            Ok(Step::Changed { .. })
        ));
    }

    #[test]
    fn preparing_master_down_resets_its_slaves() {
        let (map, _) = down(&cluster(PREPARING), "n1", &[]);
        assert_eq!(
            map,
            [
                "m0 master active 0 1",
                "n1 proxy down - 0",
                "t1 proxy active - 0",
                "x proxy active - 0"
            ]
        );
    }

    #[test]
    fn a_slave_set_down_by_an_operator_comes_back_as_a_proxy() {
        // flare-admin reconstruct (admin-tool.md §4, §6 #10): `node state X down`, 3 s for the monitor to bring X
        // back, then `flush_all` on X and `node role X slave 0 P`, which starts a build only on a proxy. Post-mortem
        // (flare_tools_compat e2e): X came back as an active slave, the tool emptied it, `slave 0 P` only set its
        // balance, and the restored balance sent reads to an empty slave.
        let c = cluster(P1_SLAVES);
        let Ok(Step::Changed { cluster: down, .. }) =
            run_with(&c, "node state s1 12121 down", false)
        else {
            panic!("s1 goes down")
        };
        let Step::Changed { cluster: up, .. } = mark_up(&down, "s1:12121") else {
            panic!("s1 comes up")
        };
        assert_eq!(lines(&up)[1], "s1 proxy active - 0");
        let Ok(Step::Changed {
            cluster: rebuilt, ..
        }) = run_with(&up, "node role s1 12121 slave 0 0", false)
        else {
            panic!("s1 becomes a slave again")
        };
        assert_eq!(lines(&rebuilt)[1], "s1 slave prepare 0 0");
    }

    #[test]
    fn other_nodes_go_down_as_proxies() {
        // A slave of an active partition stays a slave while down, and rebuilds itself when it comes back.
        let (map, _) = down(&cluster(P1_SLAVES), "s1", &[]);
        assert_eq!(map[1], "s1 slave down 0 1");
        let c = cluster(&["m0 master active 0 1", "s1 slave down 0 1"]);
        let Step::Changed { cluster: up, .. } = mark_up(&c, "s1:12121") else {
            panic!("s1 comes up")
        };
        assert_eq!(lines(&up)[1], "s1 slave prepare 0 1");
        let orphan = cluster(&["m0 master down 0 1", "s1 slave down 0 1"]);
        let Step::Changed { cluster: up, .. } = mark_up(&orphan, "s1:12121") else {
            panic!("s1 comes up")
        };
        assert_eq!(
            lines(&up)[1],
            "s1 proxy active - 0",
            "no active master to rebuild from"
        );
        let (map, _) = down(&cluster(P1_SLAVES), "x", &[]);
        assert_eq!(map[3], "x proxy down - 0");
        let c = cluster(&["d proxy down - 0"]);
        assert_eq!(mark_down(&c, "d:12121", &BTreeMap::new()), Step::Unchanged);
        assert_eq!(mark_down(&c, "nope:1", &BTreeMap::new()), Step::Unchanged);
    }

    #[test]
    fn node_up_cases() {
        let c = cluster(&["d proxy down - 0", "m master active 0 1"]);
        let Step::Changed { cluster: up, .. } = mark_up(&c, "d:12121") else {
            panic!()
        };
        assert_eq!(lines(&up)[0], "d proxy active - 0");
        assert_eq!(mark_up(&c, "m:12121"), Step::Unchanged, "already active");
    }

    #[test]
    fn registration() {
        let none = BTreeMap::new();
        let c = cluster(&["d proxy down - 0"]);
        let (step, known) = register(&c, &NodeAddr::new("n", 1), 64, &none).unwrap();
        let Step::Changed { cluster: added, .. } = step else {
            panic!()
        };
        assert!(!known);
        assert_eq!(added.map.nodes["n:1"].thread_type, 17);
        assert_eq!(added.next_thread_type, 18);
        assert_eq!(added.map.node_lines()[1], "NODE n 1 2 0 -1 0 17");
        // A known down node: a restart, nothing changes.
        assert_eq!(
            register(&c, &NodeAddr::new("d", 12121), 64, &none),
            Ok((Step::Unchanged, true))
        );
        // [Improve] a known live master: node down first (failover), then a restart.
        let c = cluster(&["m master active 0 1", "s slave active 0 1"]);
        let (step, known) = register(&c, &NodeAddr::new("m", 12121), 64, &none).unwrap();
        let Step::Changed {
            cluster: after,
            prior,
        } = step
        else {
            panic!()
        };
        assert!(known);
        assert_eq!(lines(&after), ["m proxy down - 0", "s master active 0 1"]);
        assert_eq!(prior, ["s:12121".to_string()].into());
    }

    #[test]
    fn registration_refusals() {
        let none = BTreeMap::new();
        let c = cluster(&["a proxy active - 0"]);
        for (name, why) in [("a:b", "contains ':'"), ("a\tb", "control"), ("", "empty")] {
            let e = register(&c, &NodeAddr::new(name, 1), 64, &none).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        let long = "h".repeat(256);
        assert!(register(&c, &NodeAddr::new(long, 1), 64, &none).is_err());
        assert_eq!(
            register(&c, &NodeAddr::new("b", 1), 1, &none),
            Err(Refusal::TooManyNodes(1))
        );
    }

    #[test]
    fn choose_successor_rules() {
        let cands: Vec<(String, u32)> = [("a", 1), ("b", 3), ("c", 3), ("d", 2)]
            .iter()
            .map(|(k, b)| (k.to_string(), *b))
            .collect();
        let pos = |v: &[(&str, u64)]| v.iter().map(|(k, p)| (k.to_string(), *p)).collect();
        assert_eq!(choose_successor(&cands, &pos(&[])).as_deref(), Some("b"));
        assert_eq!(
            choose_successor(&cands, &pos(&[("a", 9), ("b", 1), ("c", 1), ("d", 1)])).as_deref(),
            Some("a")
        );
        assert_eq!(
            choose_successor(&cands, &pos(&[("a", 9), ("b", 1), ("c", 1), ("d", 9)])).as_deref(),
            Some("d")
        );
        assert_eq!(choose_successor(&[], &pos(&[])), None);
    }

    #[test]
    fn validate_map_catches_what_partitions_does_not() {
        let ok = cluster(P1_SLAVES);
        assert_eq!(validate_map(&ok.map, ok.next_thread_type), Ok(()));
        let orphan = cluster(&["m0 master active 0 1", "s slave active 3 1"]);
        assert!(validate_map(&orphan.map, orphan.next_thread_type)
            .unwrap_err()
            .contains("does not exist"));
        let proxy = cluster(&["x proxy active 0 0"]);
        assert!(validate_map(&proxy.map, proxy.next_thread_type).is_err());
        let c = cluster(P0);
        assert!(validate_map(&c.map, 17)
            .unwrap_err()
            .contains("thread_type 17"));
    }
}
