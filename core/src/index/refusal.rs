//! Why the index refuses a command: [`Refusal`], whose text follows `SERVER_ERROR ` in the reply.
//!
//! Flare answers every failure with one fixed line per command (`SERVER_ERROR failed to set role (and balance)`);
//! tools only look at the first word, so we keep the `SERVER_ERROR` prefix and say what is wrong instead.

use crate::node_map::{Role, State};

/// Why a command is refused. The `Display` text follows `SERVER_ERROR ` in the reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No node with this key.
    #[error("no such node {0}")]
    NoSuchNode(String),
    /// `node role` on a down node.
    #[error("node {0} is down")]
    NodeDown(String),
    /// `node add` with a name the cluster cannot carry.
    #[error("invalid server name {name:?}: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `node add` beyond the node limit (a `node sync` carries at most this many `NODE` lines).
    #[error("too many nodes (at most {0})")]
    TooManyNodes(usize),
    /// A balance that is missing (−1), negative or above `i32::MAX`.
    #[error("balance {0} is invalid: give a balance from 0 to 2147483647")]
    InvalidBalance(i64),
    /// The §6.1 balance-sum check failed.
    #[error("balance sum of partition {0} would be 0")]
    BalanceSumZero(u32),
    /// `node role ... master|slave` without a partition.
    #[error("partition is missing: give both balance and partition")]
    PartitionMissing,
    /// A partition below −1 or too large to be a partition number.
    #[error("invalid partition {0}")]
    InvalidPartition(i64),
    /// A new partition that would reach partition-size (cluster.md §9.3 \[Improve\]).
    #[error("partition {partition} exceeds partition-size {size} (at most {max} partitions)", max = .size.saturating_sub(1))]
    PartitionTooLarge {
        /// The requested partition.
        partition: u32,
        /// `partition-size`.
        size: u32,
    },
    /// A new partition the modular resolver would give no slot (keys.rs: with V = 4096, H = 1, partitions ≥ 72).
    #[error("partition {partition} would own no keys: partition-modular-virtual {virtual_slots} is too small for {count} partitions", count = u64::from(*.partition) + 1)]
    EmptyPartition {
        /// The requested partition.
        partition: u32,
        /// `partition-modular-virtual`.
        virtual_slots: u32,
    },
    /// A partition number that is neither active, nor preparing, nor the next one.
    #[error("partition {partition} does not exist (partition count {count})")]
    NoSuchPartition {
        /// The requested partition.
        partition: u32,
        /// The active partition count.
        count: u32,
    },
    /// A new master for a partition beyond the next one.
    #[error("partition {partition} is not the next partition {next}")]
    NotNextPartition {
        /// The requested partition.
        partition: u32,
        /// The active partition count, the only partition a new master can prepare.
        next: u32,
    },
    /// A new partition while an active partition has no live master: the new master could not copy that
    /// partition's share of keys, which the master would then drop when it comes back (data loss).
    #[error("partition {0} has no live master to copy its keys from; bring it back or fail it over first")]
    PartitionWithoutMaster(u32),
    /// A new master for a partition whose master is active.
    #[error("partition {partition} already has master {master}")]
    PartitionHasMaster {
        /// The partition.
        partition: u32,
        /// Its master.
        master: String,
    },
    /// A second preparing master.
    #[error("partition {partition} is already being prepared by {master}")]
    AlreadyPreparing {
        /// The preparing partition.
        partition: u32,
        /// Its master.
        master: String,
    },
    /// A slave for a preserved partition (its master is down: nothing to copy from).
    #[error("partition {0} has no master (its master is down)")]
    NoMaster(u32),
    /// A balance or role change naming a partition other than the node's.
    #[error("node {node} is in partition {current}, not {requested}")]
    WrongPartition {
        /// The node.
        node: String,
        /// Its partition.
        current: u32,
        /// The partition the command gave.
        requested: i64,
    },
    /// A role change the table refuses.
    #[error("cannot make {node} ({role}, {state}) a {to}: {why}")]
    RoleChange {
        /// The node.
        node: String,
        /// Its role.
        role: Role,
        /// Its state.
        state: State,
        /// The requested role.
        to: Role,
        /// The rule.
        why: &'static str,
    },
    /// A balance for a slave still copying its partition.
    #[error("slave {0} is still preparing: its balance stays 0 until it is active")]
    SlavePreparing(String),
    /// `node state ... prepare`.
    #[error("state prepare cannot be set (it is set by node role)")]
    PrepareRefused,
    /// `node state X active` on a master still copying data.
    #[error("master {0} is still preparing (not ready)")]
    NotReady(String),
    /// `node state X ready` on anything but a preparing master.
    #[error("only a preparing master can become ready ({node} is {role}, {state})")]
    NotPreparing {
        /// The node.
        node: String,
        /// Its role.
        role: Role,
        /// Its state.
        state: State,
    },
    /// `node remove` on a node that is not down.
    #[error("node {node} is {state}: only a down node can be removed")]
    RemoveNotDown {
        /// The node.
        node: String,
        /// Its state.
        state: State,
    },
    /// `node remove` on a preserved master.
    #[error("node {node} is the preserved master of partition {partition}: make another node its master first")]
    RemovePreserved {
        /// The node.
        node: String,
        /// Its partition.
        partition: u32,
    },
    /// The result would not be a consistent map (a bug or a corrupt map; Flare would keep its old tables).
    #[error("the change would make the node map inconsistent: {0}")]
    Inconsistent(String),
}
