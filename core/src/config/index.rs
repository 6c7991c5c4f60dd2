//! The index server's configuration: [`IndexConfig`], its defaults, its `show variables` order and how each option
//! sets it.

use std::net::IpAddr;
use std::time::Duration;

use super::build::{build, millis, netmasks, secret, show, Changes, DaemonConfig, Target};
use super::file::{find, Entry};
use super::schema::OptionSpec;
use super::values::{
    host_name, index_db, ip_address, netmask_list, non_empty, require_data_dir, token, Cidr,
    KeyHashAlgorithm, LogFacility, PartitionType, Problem, Secret, Value,
};
use super::{ConfigError, Daemon, DEFAULT_VERSION_STRING};
use crate::protocol::Limits;

/// The configuration of the index server (`flarei`), one field per option of config.md §4 and §8.
///
/// [`Default`] gives the schema defaults (without `data-dir`, so not valid on its own).
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
    /// `metrics-port`; zero = off.
    pub metrics_port: u16,
    /// `metrics-address`.
    pub metrics_address: IpAddr,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            data_dir: String::new(),
            daemonize: false,
            log_facility: LogFacility::Daemon,
            max_connection: 1024,
            monitor_threshold: 3,
            monitor_interval: Duration::from_secs(5),
            monitor_read_timeout: Duration::from_millis(1000),
            master_lease: Duration::from_millis(3000),
            net_read_timeout: Duration::from_secs(600),
            partition_size: 1024,
            partition_type: PartitionType::Modular,
            partition_modular_hint: 1,
            partition_modular_virtual: 4096,
            key_hash_algorithm: KeyHashAlgorithm::Simple,
            server_name: String::new(),
            server_port: 12120,
            server_socket: None,
            stack_size: 128,
            thread_pool_size: 5,
            index_db: String::new(),
            max_line_length: 65536,
            version_string: DEFAULT_VERSION_STRING.to_owned(),
            cluster_secret: Secret::default(),
            internal_netmask: Vec::new(),
            auto_activate: false,
            metrics_port: 0,
            metrics_address: IpAddr::from([127, 0, 0, 1]),
        }
    }
}

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

impl DaemonConfig for IndexConfig {
    const DAEMON: Daemon = Daemon::Index;

    fn from_entries(entries: &[Entry]) -> Result<(IndexConfig, Vec<String>), ConfigError> {
        build(entries)
    }

    fn pairs(&self, reveal_secret: bool) -> Vec<(&'static str, String)> {
        vec![
            ("data-dir", self.data_dir.clone()),
            ("daemonize", self.daemonize.to_string()),
            ("log-facility", self.log_facility.to_string()),
            ("server-name", self.server_name.clone()),
            ("server-port", self.server_port.to_string()),
            (
                "server-socket",
                self.server_socket.clone().unwrap_or_default(),
            ),
            ("max-connection", self.max_connection.to_string()),
            (
                "net-read-timeout",
                self.net_read_timeout.as_secs().to_string(),
            ),
            ("stack-size", self.stack_size.to_string()),
            ("thread-pool-size", self.thread_pool_size.to_string()),
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
            ("master-lease", millis(self.master_lease)),
            ("max-line-length", self.max_line_length.to_string()),
            ("version-string", self.version_string.clone()),
            (
                "cluster-secret",
                secret(self.cluster_secret.expose(), reveal_secret),
            ),
            ("internal-netmask", netmasks(&self.internal_netmask)),
            ("auto-activate", self.auto_activate.to_string()),
            ("metrics-port", self.metrics_port.to_string()),
            ("metrics-address", self.metrics_address.to_string()),
        ]
    }

    fn reload(&self, new: &IndexConfig) -> (IndexConfig, Changes) {
        let mut next = self.clone();
        next.log_facility = new.log_facility;
        next.max_connection = new.max_connection;
        next.monitor_threshold = new.monitor_threshold;
        next.monitor_interval = new.monitor_interval;
        next.monitor_read_timeout = new.monitor_read_timeout;
        next.net_read_timeout = new.net_read_timeout;
        next.thread_pool_size = new.thread_pool_size;
        next.cluster_secret = new.cluster_secret.clone();
        next.internal_netmask = new.internal_netmask.clone();
        next.auto_activate = new.auto_activate;
        (next, self.dynamic_changes(new))
    }

    fn show_variables(&self, config_path: &str, pid_path: &str) -> Vec<String> {
        let special = |label: &str| match label {
            "config_path" => Some(config_path.to_owned()),
            "pid_path" => Some(pid_path.to_owned()),
            _ => None,
        };
        show(26, INDEX_SHOW, self.pairs(false), special, |_| false)
    }

    fn data_dir(&self) -> &str {
        &self.data_dir
    }

    fn server_name_mut(&mut self) -> &mut String {
        &mut self.server_name
    }

    fn daemonize(&self) -> bool {
        self.daemonize
    }

    fn max_connection(&self) -> u32 {
        self.max_connection
    }
}

impl Target for IndexConfig {
    fn set(&mut self, spec: &'static OptionSpec, v: &Value<'_>) -> Result<Option<String>, Problem> {
        match spec.name {
            "data-dir" => self.data_dir = v.text()?.to_owned(),
            "daemonize" => self.daemonize = v.flag()?,
            "log-facility" => self.log_facility = v.choice(LogFacility::from_name)?,
            "server-name" => self.server_name = host_name(v, true)?,
            "server-port" => self.server_port = v.int()?,
            "server-socket" => self.server_socket = non_empty(v.text()?),
            "max-connection" => self.max_connection = v.int()?,
            "net-read-timeout" => self.net_read_timeout = Duration::from_secs(v.int()?),
            "stack-size" => self.stack_size = v.int()?,
            "thread-pool-size" => self.thread_pool_size = v.int()?,
            "monitor-threshold" => self.monitor_threshold = v.int()?,
            "monitor-interval" => self.monitor_interval = Duration::from_secs(v.int()?),
            "monitor-read-timeout" => self.monitor_read_timeout = v.millis()?,
            "master-lease" => self.master_lease = v.millis()?,
            "partition-size" => self.partition_size = v.int()?,
            "partition-type" => self.partition_type = v.choice(PartitionType::from_name)?,
            "partition-modular-hint" => self.partition_modular_hint = v.int()?,
            "partition-modular-virtual" => self.partition_modular_virtual = v.int()?,
            "key-hash-algorithm" => {
                self.key_hash_algorithm = v.choice(KeyHashAlgorithm::from_name)?
            }
            "index-db" => self.index_db = index_db(v.text()?)?,
            "max-line-length" => self.max_line_length = v.int()?,
            "version-string" => self.version_string = token(v, false, "a word without spaces")?,
            "cluster-secret" => {
                self.cluster_secret = Secret(token(v, true, "a word without spaces")?)
            }
            "internal-netmask" => self.internal_netmask = netmask_list(v.text()?)?,
            "auto-activate" => self.auto_activate = v.flag()?,
            "metrics-port" => self.metrics_port = v.int()?,
            "metrics-address" => self.metrics_address = ip_address(v)?,
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
}

#[cfg(test)]
mod tests;
