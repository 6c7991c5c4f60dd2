//! The index server's configuration: [`IndexConfig`], its defaults, its `show variables` order and how each option
//! sets it.

use std::net::IpAddr;
use std::time::Duration;

use super::build::{millis, Target};
use super::file::{find, Entry};
use super::schema::OptionSpec;
use super::shared::shared_options;
use super::values::{
    index_db, index_servers, require_data_dir, Cidr, IndexServer, KeyHashAlgorithm, LogFacility,
    PartitionType, Problem, Secret, Value,
};
use super::{ConfigError, Daemon};
use crate::protocol::Limits;

/// The configuration of the index server (`flarei`), one field per option of config.md §4 and §8.
///
/// [`Default`] gives the schema defaults (without `data-dir`, so not valid on its own). The options both daemons have
/// (and [`Default`] and [`DaemonConfig`](super::DaemonConfig)) are written once for both, in `shared.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// `data-dir`: the node map and the default pid file. Required.
    pub data_dir: String,
    /// `daemonize`.
    pub daemonize: bool,
    /// `log-facility`.
    pub log_facility: LogFacility,
    /// `max-connection`.
    pub max_connection: u32,
    /// `monitor-threshold`: failed pings in a row before a node is marked down.
    pub monitor_threshold: u32,
    /// `monitor-interval` (seconds in the file).
    pub monitor_interval: Duration,
    /// `monitor-read-timeout` (milliseconds in the file).
    pub monitor_read_timeout: Duration,
    /// `master-lease` (milliseconds in the file; ours): failover of a master cut off from the index waits this long.
    pub master_lease: Duration,
    /// `net-read-timeout` (seconds in the file; config.md §4 \[Improve\]); zero = never.
    pub net_read_timeout: Duration,
    /// `partition-size`.
    pub partition_size: u32,
    /// `partition-type`.
    pub partition_type: PartitionType,
    /// `partition-modular-hint`.
    pub partition_modular_hint: u32,
    /// `partition-modular-virtual`.
    pub partition_modular_virtual: u32,
    /// `key-hash-algorithm`.
    pub key_hash_algorithm: KeyHashAlgorithm,
    /// `server-name`. Empty = the host name (the driver fills it in).
    pub server_name: String,
    /// `server-port`.
    pub server_port: u16,
    /// `server-socket`: an additional Unix socket.
    pub server_socket: Option<String>,
    /// `stack-size` in KiB.
    pub stack_size: u32,
    /// `thread-pool-size`.
    pub thread_pool_size: u32,
    /// `index-db`: always a `file://<dir>` URI, `file://<data-dir>` by default (decisions.md #4).
    pub index_db: String,
    /// `max-line-length` in bytes.
    pub max_line_length: usize,
    /// `version-string`: the text after `VERSION `.
    pub version_string: String,
    /// `cluster-secret`; empty = none. Never shown by `show variables`, `stats settings` or `Debug`.
    pub cluster_secret: Secret,
    /// `internal-netmask`; empty = any address.
    pub internal_netmask: Vec<Cidr>,
    /// `auto-activate`: activate a ready master automatically.
    pub auto_activate: bool,
    /// `index-servers` (ours): every index server of the group, `server-name:server-port` of each, the same list on
    /// each of them (this server finds itself in it). Empty (the default, or `index-servers =`) = a single index
    /// server, no group. The entries are read as a node's `index-servers`; an entry given twice is an error.
    pub index_servers: Vec<IndexServer>,
    /// `index-join` (ours): this server is being added to a running group (`index add` on its leader), so it starts
    /// with an empty `data-dir` and waits for the leader to send it the map instead of bootstrapping a group.
    pub index_join: bool,
    /// `index-election-timeout` (milliseconds in the file, at least 50; ours): how long a follower hears nothing
    /// from a leader before it stands for election.
    pub index_election_timeout: Duration,
    /// `metrics-port`; zero = off.
    pub metrics_port: u16,
    /// `metrics-address`.
    pub metrics_address: IpAddr,
}

shared_options!(IndexConfig, Daemon::Index, {
    server_port: 12120,
    monitor_threshold: 3,
    monitor_interval: Duration::from_secs(5),
    monitor_read_timeout: Duration::from_millis(1000),
    partition_size: 1024,
    partition_type: PartitionType::Modular,
    partition_modular_hint: 1,
    partition_modular_virtual: 4096,
    key_hash_algorithm: KeyHashAlgorithm::Simple,
    index_db: String::new(),
    auto_activate: false,
    index_servers: Vec::new(),
    index_join: false,
    index_election_timeout: crate::index::group::DEFAULT_ELECTION_TIMEOUT,
});

/// Flare's `show variables` order for the index (stats.md §5); values line up at column 26.
const INDEX_SHOW: &[&str] = &[
    "config_path",
    "pid_path",
    "daemonize",
    "data_dir",
    "max_connection",
    "monitor_threshold",
    "monitor_interval",
    "monitor_read_timeout",
    "net_read_timeout",
    "partition_modular_hint",
    "partition_modular_virtual",
    "partition_size",
    "partition_type",
    "key_hash_algorithm",
    "server_name",
    "server_port",
    "server_socket",
    "stack_size",
    "thread_pool_size",
];

impl IndexConfig {
    /// Parser limits from `max-line-length` (the other limits keep their defaults).
    pub fn limits(&self) -> Limits {
        Limits {
            line_max: self.max_line_length,
            ..Limits::default()
        }
    }
}

impl Target for IndexConfig {
    const SHOW: &'static [&'static str] = INDEX_SHOW;
    const SHOW_WIDTH: usize = 26;

    fn set(&mut self, spec: &'static OptionSpec, v: &Value<'_>) -> Result<Option<String>, Problem> {
        match spec.name {
            "monitor-threshold" => self.monitor_threshold = v.int()?,
            "monitor-interval" => self.monitor_interval = Duration::from_secs(v.int()?),
            "monitor-read-timeout" => self.monitor_read_timeout = v.millis()?,
            "partition-size" => self.partition_size = v.int()?,
            "partition-type" => self.partition_type = v.choice(PartitionType::from_name)?,
            "partition-modular-hint" => self.partition_modular_hint = v.int()?,
            "partition-modular-virtual" => self.partition_modular_virtual = v.int()?,
            "key-hash-algorithm" => {
                self.key_hash_algorithm = v.choice(KeyHashAlgorithm::from_name)?
            }
            "index-db" => self.index_db = index_db(v.text()?)?,
            "auto-activate" => self.auto_activate = v.flag()?,
            "index-servers" => self.index_servers = group_members(v.text()?)?,
            "index-join" => self.index_join = v.flag()?,
            "index-election-timeout" => self.index_election_timeout = v.millis()?,
            other => return Err(Problem::Unhandled(other)),
        }
        Ok(None)
    }

    fn finish(&mut self, entries: &[Entry]) -> Result<(), ConfigError> {
        require_data_dir(&self.data_dir)?;
        if find(entries, "index-db").is_none() {
            self.index_db = format!("file://{}", self.data_dir);
        }
        Ok(())
    }

    fn own_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("monitor-threshold", self.monitor_threshold.to_string()),
            (
                "monitor-interval",
                self.monitor_interval.as_secs().to_string(),
            ),
            ("monitor-read-timeout", millis(self.monitor_read_timeout)),
            ("partition-size", self.partition_size.to_string()),
            ("partition-type", self.partition_type.to_string()),
            (
                "partition-modular-hint",
                self.partition_modular_hint.to_string(),
            ),
            (
                "partition-modular-virtual",
                self.partition_modular_virtual.to_string(),
            ),
            ("key-hash-algorithm", self.key_hash_algorithm.to_string()),
            ("index-db", self.index_db.clone()),
            ("auto-activate", self.auto_activate.to_string()),
            ("index-servers", members_text(&self.index_servers)),
            ("index-join", self.index_join.to_string()),
            (
                "index-election-timeout",
                millis(self.index_election_timeout),
            ),
        ]
    }

    fn reload_own(&mut self, new: &IndexConfig) {
        self.monitor_threshold = new.monitor_threshold;
        self.monitor_interval = new.monitor_interval;
        self.monitor_read_timeout = new.monitor_read_timeout;
        self.auto_activate = new.auto_activate;
    }
}

/// `index-servers` of an index server: empty (only spaces) is no group; otherwise a node's `index-servers` rules
/// (entries without a numeric `:port` skipped, none left an error), and no member twice, since each member is one
/// Raft peer.
fn group_members(text: &str) -> Result<Vec<IndexServer>, Problem> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let members = index_servers(text)?;
    for (i, m) in members.iter().enumerate() {
        if members[..i].contains(m) {
            return Err(Problem::Invalid(format!(
                "host:port[,host:port...] naming each index server once ('{m}' is given twice)"
            )));
        }
    }
    Ok(members)
}

/// The group as a file gives it: `a:1,b:2`; empty for a single index server.
fn members_text(members: &[IndexServer]) -> String {
    members
        .iter()
        .map(IndexServer::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
