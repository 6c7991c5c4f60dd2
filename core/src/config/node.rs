//! The node's configuration: [`NodeConfig`], its defaults, its `show variables` order and how each option sets it.

use std::net::IpAddr;
use std::time::Duration;

use super::build::{millis, Target};
use super::file::{find, position, Entry};
use super::schema::OptionSpec;
use super::shared::shared_options;
use super::values::{
    host_name, index_servers, non_empty, require_data_dir, Cidr, ClusterReplicationMode,
    IndexServer, LogFacility, Problem, ReplicationType, Secret, StorageCompress, StorageSync,
    StorageType, Value,
};
use super::{ConfigError, Daemon};
use crate::protocol::Limits;

/// The configuration of a node (`flared`), one field per option of config.md §5 and §8.
///
/// Exceptions to "one field per option": `index-servers`, `index-server-name` and `index-server-port` resolve into
/// [`NodeConfig::index_servers`]; `gat-compat` sets [`NodeConfig::gat_flare_syntax`]; `mysql-replication` has no
/// field because turning it on is an error. Times are [`Duration`]s (the `*-msec` options lose their suffix).
///
/// [`Default`] gives the schema defaults, which are not a valid configuration on their own (`data-dir` and an index
/// server are required); [`from_entries`](super::DaemonConfig::from_entries) checks that. The options both daemons have (and [`Default`] and
/// [`DaemonConfig`](super::DaemonConfig)) are written once for both, in `shared.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// `data-dir`: storage files and the default pid file. Required.
    pub data_dir: String,
    /// `daemonize`.
    pub daemonize: bool,
    /// `log-facility`.
    pub log_facility: LogFacility,
    /// `server-name`: with `server_port`, the node's identity. Empty = the host name (the driver fills it in).
    pub server_name: String,
    /// `server-port`.
    pub server_port: u16,
    /// `server-socket`: an additional Unix socket.
    pub server_socket: Option<String>,
    /// `back-log`: the listen() backlog.
    pub back_log: u32,
    /// `max-connection`.
    pub max_connection: u32,
    /// `net-read-timeout` (seconds in the file); zero = never.
    pub net_read_timeout: Duration,
    /// `stack-size` in KiB.
    pub stack_size: u32,
    /// `thread-pool-size`.
    pub thread_pool_size: u32,
    /// The index servers, from `index-servers` or `index-server-name` + `index-server-port`. Empty when none is
    /// configured: the node then runs standalone, as the master of partition 0 on its own.
    pub index_servers: Vec<IndexServer>,
    /// `proxy-concurrency`.
    pub proxy_concurrency: u32,
    /// `replication-type`.
    pub replication_type: ReplicationType,
    /// `reconstruction-interval` (microseconds in the file).
    pub reconstruction_interval: Duration,
    /// `reconstruction-bwlimit` in KiB/s; zero = unlimited.
    pub reconstruction_bwlimit: u32,
    /// `noreply-window-limit`; zero = off.
    pub noreply_window_limit: u32,
    /// `max-total-thread-queue`; zero = unlimited.
    pub max_total_thread_queue: u32,
    /// `proxy-prior-netmask`: prefix length 0..=32; zero = off.
    pub proxy_prior_netmask: u8,
    /// `mutex-slot`.
    pub mutex_slot: u32,
    /// `storage-type` after mapping (always RocksDB).
    pub storage_type: StorageType,
    /// `storage-ap` (Tokyo Cabinet; no effect).
    pub storage_ap: u32,
    /// `storage-fp` (Tokyo Cabinet; no effect).
    pub storage_fp: u32,
    /// `storage-bucket-size` (Tokyo/Kyoto Cabinet; no effect).
    pub storage_bucket_size: u64,
    /// `storage-cache-size`: how many recent deletes are remembered.
    pub storage_cache_size: u32,
    /// `storage-compress`.
    pub storage_compress: StorageCompress,
    /// `storage-large` (Tokyo/Kyoto Cabinet; no effect).
    pub storage_large: bool,
    /// `storage-lmemb` (Tokyo Cabinet B+tree; no effect).
    pub storage_lmemb: u32,
    /// `storage-nmemb` (Tokyo Cabinet B+tree; no effect).
    pub storage_nmemb: u32,
    /// `storage-dfunit` (Tokyo Cabinet; no effect).
    pub storage_dfunit: u32,
    /// `time-watcher-enabled`.
    pub time_watcher_enabled: bool,
    /// `time-watcher-polling-interval-msec`; zero = off.
    pub time_watcher_polling_interval: Duration,
    /// `storage-access-watch-threshold-warn-msec`; zero = off.
    pub storage_access_watch_threshold_warn: Duration,
    /// `storage-access-watch-threshold-ping-ng-msec`; zero = off (config.md §5.4 \[Odd\]).
    pub storage_access_watch_threshold_ping_ng: Duration,
    /// `cluster-replication`.
    pub cluster_replication: bool,
    /// `cluster-replication-server-name`. Required when `cluster_replication` is on.
    pub cluster_replication_server_name: Option<String>,
    /// `cluster-replication-server-port`.
    pub cluster_replication_server_port: u16,
    /// `cluster-replication-concurrency`; defaults to `proxy_concurrency`.
    pub cluster_replication_concurrency: u32,
    /// `cluster-replication-mode`.
    pub cluster_replication_mode: ClusterReplicationMode,
    /// `mysql-replication-port` (accepted, no effect).
    pub mysql_replication_port: u16,
    /// `mysql-replication-id` (accepted, no effect).
    pub mysql_replication_id: u32,
    /// `mysql-replication-db` (accepted, no effect).
    pub mysql_replication_db: String,
    /// `mysql-replication-table` (accepted, no effect).
    pub mysql_replication_table: String,
    /// `max-item-size` in bytes, at most 2^31−1.
    pub max_item_size: u32,
    /// `max-key-length` in bytes, 1..=8191.
    pub max_key_length: usize,
    /// `max-line-length` in bytes.
    pub max_line_length: usize,
    /// `version-string`: the text after `VERSION `.
    pub version_string: String,
    /// `gat-flare-syntax` (or `gat-compat = flare`).
    pub gat_flare_syntax: bool,
    /// `incr-flare-semantics`.
    pub incr_flare_semantics: bool,
    /// `binary-incr-create`: a binary incr/decr on a miss creates the item, as memcached does.
    pub binary_incr_create: bool,
    /// `allow-client-version`: accept an explicit `<version>` token on storage commands from clients.
    pub allow_client_version: bool,
    /// `cluster-secret`; empty = none. Never shown by `show variables`, `stats settings` or `Debug`.
    pub cluster_secret: Secret,
    /// `internal-netmask`; empty = internal commands from any address.
    pub internal_netmask: Vec<Cidr>,
    /// `tombstone-ttl` (seconds in the file).
    pub tombstone_ttl: Duration,
    /// `expiry-sweep-interval` (seconds in the file); zero = off.
    pub expiry_sweep_interval: Duration,
    /// `storage-sync`.
    pub storage_sync: StorageSync,
    /// `storage-block-cache` in MiB.
    pub storage_block_cache: u32,
    /// `storage-item-cache` in MiB: the write-through cache of small records in front of RocksDB.
    pub storage_item_cache: u32,
    /// `storage-write-buffer` in MiB.
    pub storage_write_buffer: u32,
    /// `proxy-timeout` (milliseconds in the file).
    pub proxy_timeout: Duration,
    /// `master-lease` (milliseconds in the file; ours): how long a master acknowledges writes after its last renewed
    /// lease; zero turns leases off.
    pub master_lease: Duration,
    /// `replication-backlog`: max queued replication writes per slave.
    pub replication_backlog: u32,
    /// `replication-failure-threshold`; zero = off.
    pub replication_failure_threshold: u32,
    /// `metrics-port`; zero = off.
    pub metrics_port: u16,
    /// `metrics-address`.
    pub metrics_address: IpAddr,
}

shared_options!(NodeConfig, Daemon::Node, {
    server_port: 12121,
    back_log: 30,
    index_servers: Vec::new(),
    proxy_concurrency: 2,
    replication_type: ReplicationType::Async,
    reconstruction_interval: Duration::ZERO,
    reconstruction_bwlimit: 0,
    noreply_window_limit: 0,
    max_total_thread_queue: 0,
    proxy_prior_netmask: 0,
    mutex_slot: 64,
    storage_type: StorageType::RocksDb,
    storage_ap: 4,
    storage_fp: 10,
    storage_bucket_size: 131071,
    storage_cache_size: 65536,
    storage_compress: StorageCompress::None,
    storage_large: false,
    storage_lmemb: 128,
    storage_nmemb: 256,
    storage_dfunit: 0,
    time_watcher_enabled: false,
    time_watcher_polling_interval: Duration::ZERO,
    storage_access_watch_threshold_warn: Duration::ZERO,
    storage_access_watch_threshold_ping_ng: Duration::ZERO,
    cluster_replication: false,
    cluster_replication_server_name: None,
    cluster_replication_server_port: 12121,
    cluster_replication_concurrency: 2,
    cluster_replication_mode: ClusterReplicationMode::Duplicate,
    mysql_replication_port: 12122,
    mysql_replication_id: 19790217,
    mysql_replication_db: "flare".to_owned(),
    mysql_replication_table: "flare".to_owned(),
    max_item_size: 64 * 1024 * 1024,
    max_key_length: 8191,
    gat_flare_syntax: false,
    incr_flare_semantics: false,
    binary_incr_create: true,
    allow_client_version: true,
    tombstone_ttl: Duration::from_secs(3600),
    expiry_sweep_interval: Duration::from_secs(60),
    storage_sync: StorageSync::None,
    storage_block_cache: 64,
    storage_item_cache: 256,
    storage_write_buffer: 32,
    proxy_timeout: Duration::from_millis(1000),
    replication_backlog: 100_000,
    replication_failure_threshold: 0,
});

/// Flare's `show variables` order for a node (stats.md §5); values line up at column 24.
const NODE_SHOW: &[&str] = &[
    "back_log",
    "config_path",
    "pid_path",
    "daemonize",
    "data_dir",
    "index_server(s)",
    "max_connection",
    "mutex_slot",
    "noreply_window_limit",
    "net_read_timeout",
    "proxy_concurrency",
    "reconstruction_interval",
    "reconstruction_bwlimit",
    "replication_type",
    "server_name",
    "server_port",
    "server_socket",
    "stack_size",
    "storage_ap",
    "storage_bucket_size",
    "storage_cache_size",
    "storage_compress",
    "storage_large",
    "storage_lmemb",
    "storage_nmemb",
    "storage_dfunit",
    "storage_type",
    "thread_pool_size",
    "proxy_prior_netmask",
    "max_total_thread_queue",
    "time_watcher_enabled",
    "time_watcher_polling_interval_msec",
    "storage_access_watch_threshold_warn_msec",
    "storage_access_watch_threshold_ping_ng_msec",
    "cluster_replication",
    "cluster_replication_server_name",
    "cluster_replication_server_port",
    "cluster_replication_concurrency",
    "cluster_replication_mode",
];

impl NodeConfig {
    /// Parser limits from `max-line-length`, `max-key-length` and `max-item-size`.
    pub fn limits(&self) -> Limits {
        Limits {
            line_max: self.max_line_length,
            key_max: self.max_key_length,
            item_size_max: self.max_item_size,
            ..Limits::default()
        }
    }
}

impl Target for NodeConfig {
    const SHOW: &'static [&'static str] = NODE_SHOW;
    const SHOW_WIDTH: usize = 24;

    fn set(&mut self, spec: &'static OptionSpec, v: &Value<'_>) -> Result<Option<String>, Problem> {
        let mut warning = None;
        match spec.name {
            "back-log" => self.back_log = v.int()?,
            "index-servers" => self.index_servers = index_servers(v.text()?)?,
            // Resolved in `finish`, which sees whether `index-servers` was given too.
            "index-server-name" => {
                host_name(v, true)?;
            }
            "index-server-port" => {
                v.int::<u16>()?;
            }
            "proxy-concurrency" => self.proxy_concurrency = v.int()?,
            "replication-type" => self.replication_type = v.choice(ReplicationType::from_name)?,
            "reconstruction-interval" => {
                self.reconstruction_interval = Duration::from_micros(v.int()?)
            }
            "reconstruction-bwlimit" => self.reconstruction_bwlimit = v.int()?,
            "noreply-window-limit" => self.noreply_window_limit = v.int()?,
            "max-total-thread-queue" => self.max_total_thread_queue = v.int()?,
            "proxy-prior-netmask" => self.proxy_prior_netmask = v.int()?,
            "mutex-slot" => self.mutex_slot = v.int()?,
            "storage-type" => {
                let word = v.text()?;
                if word != StorageType::RocksDb.as_str() {
                    warning = Some(format!(
                        "option 'storage-type': '{word}' is a Tokyo/Kyoto Cabinet engine; using rocksdb \
                         instead (Flare's data files are not read)"
                    ));
                }
                self.storage_type = StorageType::RocksDb;
            }
            "storage-ap" => self.storage_ap = v.int()?,
            "storage-fp" => self.storage_fp = v.int()?,
            "storage-bucket-size" => self.storage_bucket_size = v.int()?,
            "storage-cache-size" => self.storage_cache_size = v.int()?,
            "storage-compress" => self.storage_compress = v.choice(StorageCompress::from_name)?,
            "storage-large" => self.storage_large = v.flag()?,
            "storage-lmemb" => self.storage_lmemb = v.int()?,
            "storage-nmemb" => self.storage_nmemb = v.int()?,
            "storage-dfunit" => self.storage_dfunit = v.int()?,
            "time-watcher-enabled" => self.time_watcher_enabled = v.flag()?,
            "time-watcher-polling-interval-msec" => {
                self.time_watcher_polling_interval = v.millis()?
            }
            "storage-access-watch-threshold-warn-msec" => {
                self.storage_access_watch_threshold_warn = v.millis()?
            }
            "storage-access-watch-threshold-ping-ng-msec" => {
                self.storage_access_watch_threshold_ping_ng = v.millis()?
            }
            "cluster-replication" => self.cluster_replication = v.flag()?,
            "cluster-replication-server-name" => {
                self.cluster_replication_server_name = non_empty(&host_name(v, true)?)
            }
            "cluster-replication-server-port" => self.cluster_replication_server_port = v.int()?,
            "cluster-replication-concurrency" => self.cluster_replication_concurrency = v.int()?,
            "cluster-replication-mode" => {
                self.cluster_replication_mode = v.choice(ClusterReplicationMode::from_name)?
            }
            "mysql-replication" => {
                if v.flag()? {
                    return Err(Problem::Unsupported(
                        "MySQL replication is not supported by this implementation".to_owned(),
                    ));
                }
            }
            "mysql-replication-port" => self.mysql_replication_port = v.int()?,
            "mysql-replication-id" => self.mysql_replication_id = v.int()?,
            "mysql-replication-db" => self.mysql_replication_db = v.text()?.to_owned(),
            "mysql-replication-table" => self.mysql_replication_table = v.text()?.to_owned(),
            "max-item-size" => self.max_item_size = v.int()?,
            "max-key-length" => self.max_key_length = v.int()?,
            "gat-flare-syntax" => self.gat_flare_syntax = v.flag()?,
            "gat-compat" => self.gat_flare_syntax = v.text()? == "flare",
            "incr-flare-semantics" => self.incr_flare_semantics = v.flag()?,
            "binary-incr-create" => self.binary_incr_create = v.flag()?,
            "allow-client-version" => self.allow_client_version = v.flag()?,
            "tombstone-ttl" => self.tombstone_ttl = Duration::from_secs(v.int()?),
            "expiry-sweep-interval" => self.expiry_sweep_interval = Duration::from_secs(v.int()?),
            "storage-sync" => self.storage_sync = v.choice(StorageSync::from_name)?,
            "storage-block-cache" => self.storage_block_cache = v.int()?,
            "storage-item-cache" => self.storage_item_cache = v.int()?,
            "storage-write-buffer" => self.storage_write_buffer = v.int()?,
            "proxy-timeout" => self.proxy_timeout = v.millis()?,
            "replication-backlog" => self.replication_backlog = v.int()?,
            "replication-failure-threshold" => self.replication_failure_threshold = v.int()?,
            other => return Err(Problem::Unhandled(other)),
        }
        if NO_EFFECT_ON_NODE.contains(&spec.name) {
            warning = Some(format!(
                "option '{}' has no effect with the rocksdb engine (accepted for compatibility)",
                spec.name
            ));
        } else if spec.name.starts_with("mysql-replication-") {
            warning = Some(format!(
                "option '{}' has no effect: MySQL replication is not supported",
                spec.name
            ));
        }
        Ok(warning)
    }

    fn finish(&mut self, entries: &[Entry]) -> Result<(), ConfigError> {
        require_data_dir(&self.data_dir)?;
        let servers = find(entries, "index-servers");
        let name = find(entries, "index-server-name");
        let port = find(entries, "index-server-port");
        match (servers, name.or(port)) {
            (Some(servers), Some(single)) => {
                // Report the option that came later, naming the one it clashes with.
                let (later, earlier) = if position(entries, single) > position(entries, servers) {
                    (single, servers)
                } else {
                    (servers, single)
                };
                return Err(ConfigError::Conflict {
                    location: later.location.clone(),
                    name: later.name.clone(),
                    other: earlier.name.clone(),
                });
            }
            (Some(_), None) => {}
            (None, _) => {
                let host = name.and_then(|e| e.value.as_deref()).unwrap_or_default();
                // No index server at all: a standalone node, the master of partition 0 on its own.
                if host.is_empty() && port.is_none() {
                    self.index_servers = Vec::new();
                    return check_cluster_replication(self, entries);
                }
                if host.is_empty() {
                    return Err(ConfigError::Required {
                        name: "index-server-name".to_owned(),
                        hint: " (or give 'index-servers')".to_owned(),
                    });
                }
                let port = match port.and_then(|e| e.value.as_deref()) {
                    Some(text) => text.parse().ok(),
                    None => Some(12120),
                };
                // `set` has already checked the port against the schema, so this only guards the invariant.
                let Some(port) = port else {
                    return Err(ConfigError::Required {
                        name: "index-server-port".to_owned(),
                        hint: String::new(),
                    });
                };
                self.index_servers = vec![IndexServer {
                    name: host.to_owned(),
                    port,
                }];
            }
        }
        check_cluster_replication(self, entries)
    }

    fn own_pairs(&self) -> Vec<(&'static str, String)> {
        let servers = self
            .index_servers
            .iter()
            .map(IndexServer::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut pairs = vec![
            ("back-log", self.back_log.to_string()),
            ("index-servers", servers),
            ("proxy-concurrency", self.proxy_concurrency.to_string()),
            ("replication-type", self.replication_type.to_string()),
            (
                "reconstruction-interval",
                self.reconstruction_interval.as_micros().to_string(),
            ),
            (
                "reconstruction-bwlimit",
                self.reconstruction_bwlimit.to_string(),
            ),
            (
                "noreply-window-limit",
                self.noreply_window_limit.to_string(),
            ),
            (
                "max-total-thread-queue",
                self.max_total_thread_queue.to_string(),
            ),
            ("proxy-prior-netmask", self.proxy_prior_netmask.to_string()),
            ("mutex-slot", self.mutex_slot.to_string()),
            ("storage-type", self.storage_type.to_string()),
            ("storage-ap", self.storage_ap.to_string()),
            ("storage-fp", self.storage_fp.to_string()),
            ("storage-bucket-size", self.storage_bucket_size.to_string()),
            ("storage-cache-size", self.storage_cache_size.to_string()),
            ("storage-compress", self.storage_compress.to_string()),
            ("storage-large", self.storage_large.to_string()),
            ("storage-lmemb", self.storage_lmemb.to_string()),
            ("storage-nmemb", self.storage_nmemb.to_string()),
            ("storage-dfunit", self.storage_dfunit.to_string()),
            (
                "time-watcher-enabled",
                self.time_watcher_enabled.to_string(),
            ),
            (
                "time-watcher-polling-interval-msec",
                millis(self.time_watcher_polling_interval),
            ),
            (
                "storage-access-watch-threshold-warn-msec",
                millis(self.storage_access_watch_threshold_warn),
            ),
            (
                "storage-access-watch-threshold-ping-ng-msec",
                millis(self.storage_access_watch_threshold_ping_ng),
            ),
            ("cluster-replication", self.cluster_replication.to_string()),
            (
                "cluster-replication-server-name",
                self.cluster_replication_server_name
                    .clone()
                    .unwrap_or_default(),
            ),
            (
                "cluster-replication-server-port",
                self.cluster_replication_server_port.to_string(),
            ),
            (
                "cluster-replication-concurrency",
                self.cluster_replication_concurrency.to_string(),
            ),
            (
                "cluster-replication-mode",
                self.cluster_replication_mode.to_string(),
            ),
            ("mysql-replication", false.to_string()),
            (
                "mysql-replication-port",
                self.mysql_replication_port.to_string(),
            ),
            (
                "mysql-replication-id",
                self.mysql_replication_id.to_string(),
            ),
            ("mysql-replication-db", self.mysql_replication_db.clone()),
            (
                "mysql-replication-table",
                self.mysql_replication_table.clone(),
            ),
            ("max-item-size", self.max_item_size.to_string()),
            ("max-key-length", self.max_key_length.to_string()),
            ("gat-flare-syntax", self.gat_flare_syntax.to_string()),
            (
                "incr-flare-semantics",
                self.incr_flare_semantics.to_string(),
            ),
            ("binary-incr-create", self.binary_incr_create.to_string()),
            (
                "allow-client-version",
                self.allow_client_version.to_string(),
            ),
            ("tombstone-ttl", self.tombstone_ttl.as_secs().to_string()),
            (
                "expiry-sweep-interval",
                self.expiry_sweep_interval.as_secs().to_string(),
            ),
            ("storage-sync", self.storage_sync.to_string()),
            ("storage-block-cache", self.storage_block_cache.to_string()),
            ("storage-item-cache", self.storage_item_cache.to_string()),
            (
                "storage-write-buffer",
                self.storage_write_buffer.to_string(),
            ),
            ("proxy-timeout", millis(self.proxy_timeout)),
            ("replication-backlog", self.replication_backlog.to_string()),
            (
                "replication-failure-threshold",
                self.replication_failure_threshold.to_string(),
            ),
        ];
        // A standalone node has no index server: leave the option out rather than give it an empty value.
        pairs.retain(|(name, value)| !(*name == "index-servers" && value.is_empty()));
        pairs
    }

    fn reload_own(&mut self, new: &NodeConfig) {
        self.index_servers = new.index_servers.clone();
        self.replication_type = new.replication_type;
        self.reconstruction_interval = new.reconstruction_interval;
        self.reconstruction_bwlimit = new.reconstruction_bwlimit;
        self.noreply_window_limit = new.noreply_window_limit;
        self.max_total_thread_queue = new.max_total_thread_queue;
        self.time_watcher_enabled = new.time_watcher_enabled;
        self.time_watcher_polling_interval = new.time_watcher_polling_interval;
        self.storage_access_watch_threshold_warn = new.storage_access_watch_threshold_warn;
        self.storage_access_watch_threshold_ping_ng = new.storage_access_watch_threshold_ping_ng;
        self.cluster_replication = new.cluster_replication;
        self.cluster_replication_server_name = new.cluster_replication_server_name.clone();
        self.cluster_replication_server_port = new.cluster_replication_server_port;
        self.cluster_replication_mode = new.cluster_replication_mode;
        self.proxy_timeout = new.proxy_timeout;
        self.replication_failure_threshold = new.replication_failure_threshold;
    }

    /// `index_server(s)` is Flare's one line for the index servers.
    fn show_special(&self, label: &str) -> Option<String> {
        match label {
            "index_server(s)" => Some(
                self.index_servers
                    .iter()
                    .map(IndexServer::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            "cluster_replication" => Some(u8::from(self.cluster_replication).to_string()),
            _ => None,
        }
    }

    /// MySQL options are left out, and `index-servers`, shown as `index_server(s)`.
    fn show_hidden(name: &str) -> bool {
        name.starts_with("mysql-") || name == "index-servers"
    }
}

/// Defaults and checks of the `cluster-replication*` options once everything else is known.
fn check_cluster_replication(c: &mut NodeConfig, entries: &[Entry]) -> Result<(), ConfigError> {
    if find(entries, "cluster-replication-concurrency").is_none() {
        c.cluster_replication_concurrency = c.proxy_concurrency;
    }
    if c.cluster_replication && c.cluster_replication_server_name.is_none() {
        return Err(ConfigError::Required {
            name: "cluster-replication-server-name".to_owned(),
            hint: " when 'cluster-replication' is on".to_owned(),
        });
    }
    Ok(())
}

/// Tokyo/Kyoto Cabinet tuning options that RocksDB has no use for: accepted with a warning (config.md §5.3).
const NO_EFFECT_ON_NODE: &[&str] = &[
    "storage-ap",
    "storage-fp",
    "storage-bucket-size",
    "storage-large",
    "storage-lmemb",
    "storage-nmemb",
    "storage-dfunit",
];

#[cfg(test)]
mod tests;
