//! The option schema: every option of both daemons with its kind, default, scope, dynamic flag and help text
//! ([`OPTIONS`]), and the look-ups the rest of the module and the runtime's command line use.

use super::values::{
    ClusterReplicationMode, KeyHashAlgorithm, LogFacility, PartitionType, ReplicationType,
    StorageCompress, StorageSync,
};
use super::{Daemon, DEFAULT_VERSION_STRING, MAX_ITEM_SIZE_LIMIT};

/// The type of an option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A switch: given bare (`daemonize`, `--daemonize`) it is on; it also takes a boolean value
    /// (config.md §1 \[Improve\]).
    Switch,
    /// `true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off` (case-insensitive).
    Bool,
    /// A decimal integer within `min..=max`.
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// Free text (paths, names). May be empty.
    Text,
    /// One of the listed words (case-sensitive, as Flare's `*_cast` functions).
    Choice(&'static [&'static str]),
    /// `host:port[,host:port...]`; entries without `:port` are skipped (config.md §5.1).
    HostPorts,
    /// Comma-separated CIDRs (`10.0.0.0/8`, `::1/128`; a bare address is a full-length prefix). Empty = any.
    Netmasks,
}

impl Kind {
    /// A short placeholder for help texts, e.g. `INT`.
    pub fn value_name(self) -> &'static str {
        match self {
            Kind::Switch | Kind::Bool => "BOOL",
            Kind::Int { .. } => "INT",
            Kind::Text => "STRING",
            Kind::Choice(_) => "WORD",
            Kind::HostPorts => "HOST:PORT,...",
            Kind::Netmasks => "CIDR,...",
        }
    }
}

/// Which daemon an option belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `flared` only.
    Node,
    /// `flarei` only.
    Index,
    /// Both daemons.
    Both,
}

impl Scope {
    /// Whether the option exists on `daemon`.
    pub fn includes(self, daemon: Daemon) -> bool {
        matches!(
            (self, daemon),
            (Scope::Both, _) | (Scope::Node, Daemon::Node) | (Scope::Index, Daemon::Index)
        )
    }
}

/// One option of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    /// The name, as in the file and after `--` on the command line.
    pub name: &'static str,
    /// The value type.
    pub kind: Kind,
    /// The default as it would be written in a file. Empty means none, or derived from another option (see
    /// `help`), or required (`data-dir`).
    pub default: &'static str,
    /// Whether SIGHUP applies a changed value (config.md §6); otherwise the change needs a restart.
    pub dynamic: bool,
    /// Which daemon has it.
    pub scope: Scope,
    /// One line for `--help`.
    pub help: &'static str,
    /// For an alias, the canonical option it sets (`gat-compat` sets `gat-flare-syntax`).
    pub alias_of: Option<&'static str>,
}

impl OptionSpec {
    /// The canonical name: the aliased option for an alias, else the name itself.
    pub fn canonical(&self) -> &'static str {
        self.alias_of.unwrap_or(self.name)
    }

    /// The `stats settings` / `show variables` name: dashes become underscores.
    pub fn setting_name(&self) -> String {
        self.name.replace('-', "_")
    }
}

const I32: i64 = i32::MAX as i64;
const U32: i64 = u32::MAX as i64;
const PORT: Kind = Kind::Int { min: 1, max: 65535 };

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

const fn opt(
    name: &'static str,
    scope: Scope,
    kind: Kind,
    default: &'static str,
    dynamic: bool,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        default,
        dynamic,
        scope,
        help,
        alias_of: None,
    }
}

const DYN: bool = true;
const STATIC: bool = false;

const STORAGE_TYPES: &[&str] = &["rocksdb", "tch", "tcb", "kch"];
const GAT_COMPAT: &[&str] = &["memcached", "flare"];

/// Every option of both daemons (config.md §4, §5, §8 and decisions.md), in the order `stats settings` lists them.
///
/// A name appears once per daemon; `server-port` has one entry per daemon because the defaults differ, and
/// `index-servers` one because it means different things (a node's index servers, an index server's group).
#[rustfmt::skip]
pub static OPTIONS: &[OptionSpec] = &[
    // Process and networking, both daemons (§4, §5.1).
    opt("data-dir", Scope::Both, Kind::Text, "", STATIC,
        "data directory: storage (node) or node map (index), and the default pid file (required)"),
    opt("daemonize", Scope::Both, Kind::Switch, "false", STATIC, "run as a daemon (fork, setsid, stdio to /dev/null)"),
    opt("log-facility", Scope::Both, Kind::Choice(LogFacility::NAMES), "daemon", DYN,
        "syslog facility: auth, daemon, user, local0..local7"),
    opt("server-name", Scope::Both, Kind::Text, "", STATIC,
        "this server's name (default: host name); a node's key is server-name:server-port"),
    opt("server-port", Scope::Index, PORT, "12120", STATIC, "TCP port"),
    opt("server-port", Scope::Node, PORT, "12121", STATIC, "TCP port"),
    opt("server-socket", Scope::Both, Kind::Text, "", STATIC,
        "Unix socket path, in addition to TCP (accepted for compatibility, has no effect)"),
    opt("back-log", Scope::Node, int(0, I32), "30", STATIC,
        "listen() backlog (accepted for compatibility, has no effect)"),
    opt("max-connection", Scope::Both, int(1, I32), "1024", DYN, "max concurrent client connections (Flare: 128; memcached's 1024, see docs/compatibility.md)"),
    opt("net-read-timeout", Scope::Both, int(0, I32), "600", DYN,
        "seconds before an idle connection is closed (0 = never)"),
    opt("stack-size", Scope::Both, int(1, I32), "128", STATIC,
        "thread stack size in KiB (accepted for compatibility, has no effect)"),
    opt("thread-pool-size", Scope::Both, int(0, I32), "5", DYN, "idle threads kept for reuse"),
    // Index server (§4).
    opt("monitor-threshold", Scope::Index, int(1, I32), "3", DYN,
        "failed pings in a row before a node is marked down"),
    opt("monitor-interval", Scope::Index, int(1, I32), "5", DYN, "seconds between pings to each node"),
    opt("monitor-read-timeout", Scope::Index, int(1, I32), "1000", DYN, "milliseconds to wait for a ping reply"),
    opt("partition-size", Scope::Index, int(1, I32), "1024", STATIC,
        "resolver table capacity (at most partition-size - 1 partitions)"),
    opt("partition-type", Scope::Index, Kind::Choice(PartitionType::NAMES), "modular", STATIC,
        "partition type (only modular)"),
    opt("partition-modular-hint", Scope::Index, int(0, I32), "1", STATIC,
        "partition counts up to this use plain modulo placement"),
    opt("partition-modular-virtual", Scope::Index, int(1, I32), "4096", STATIC, "number of virtual slots"),
    opt("key-hash-algorithm", Scope::Index, Kind::Choice(KeyHashAlgorithm::NAMES), "simple", STATIC,
        "key hash algorithm: simple, crc32, jenkins"),
    opt("index-db", Scope::Index, Kind::Text, "", STATIC, "coordinator URI: file://<dir> (default: file://<data-dir>)"),
    opt("master-lease", Scope::Both, int(0, I32), "3000", STATIC,
        "milliseconds a master may acknowledge writes without renewing its lease (ours; 0 = off, as Flare)"),
    // Node: index servers (§5.1).
    opt("index-servers", Scope::Node, Kind::HostPorts, "", DYN, "index servers: host:port[,host:port...]"),
    opt("index-server-name", Scope::Node, Kind::Text, "", DYN,
        "index server host (older single-index form; not with index-servers)"),
    opt("index-server-port", Scope::Node, PORT, "12120", DYN, "index server port (with index-server-name)"),
    // Index server: the group of redundant index servers, kept in agreement by Raft (ours).
    opt("index-servers", Scope::Index, Kind::HostPorts, "", STATIC,
        "the index servers' group, host:port[,host:port...], the same on each (ours; empty = this server alone)"),
    opt("index-join", Scope::Index, Kind::Switch, "false", STATIC,
        "join a running group (empty data-dir; wait for its leader instead of bootstrapping) (ours)"),
    opt("index-election-timeout", Scope::Index, int(50, I32), "400", STATIC,
        "milliseconds without a leader before an index server stands for election (ours)"),
    // Node: cluster behaviour (§5.2).
    opt("proxy-concurrency", Scope::Node, int(1, I32), "2", STATIC,
        "connections per destination node for forwarding and replication"),
    opt("replication-type", Scope::Node, Kind::Choice(ReplicationType::NAMES), "async", DYN,
        "replication type: async, sync"),
    opt("reconstruction-interval", Scope::Node, int(0, I32), "0", DYN,
        "microseconds to pause after each item of a dump"),
    opt("reconstruction-bwlimit", Scope::Node, int(0, I32), "0", DYN,
        "KiB/s limit of the dumps this node requests (0 = unlimited)"),
    opt("noreply-window-limit", Scope::Node, int(0, I32), "0", DYN,
        "replicated writes sent in a row with noreply (accepted for compatibility, has no effect)"),
    opt("max-total-thread-queue", Scope::Node, int(0, U32), "0", DYN,
        "cap on items queued in all worker threads (accepted for compatibility, has no effect)"),
    opt("proxy-prior-netmask", Scope::Node, int(0, 32), "0", STATIC,
        "prefix length: prefer read replicas in the same subnet (accepted for compatibility, has no effect)"),
    opt("mutex-slot", Scope::Node, int(1, I32), "64", STATIC, "lock stripes for storage writes"),
    // Node: storage (§5.3).
    opt("storage-type", Scope::Node, Kind::Choice(STORAGE_TYPES), "rocksdb", STATIC,
        "storage engine: rocksdb (tch, tcb, kch are accepted and use rocksdb)"),
    opt("storage-ap", Scope::Node, int(0, U32), "4", STATIC, "record alignment, power of 2 (tch; no effect)"),
    opt("storage-fp", Scope::Node, int(0, U32), "10", STATIC, "free block pool, power of 2 (tch; no effect)"),
    opt("storage-bucket-size", Scope::Node, int(0, i64::MAX), "131071", STATIC,
        "bucket array size (tch, kch; no effect)"),
    opt("storage-cache-size", Scope::Node, int(0, I32), "65536", STATIC,
        "recent deletes Flare remembers; ours are tombstones (accepted for compatibility, has no effect)"),
    opt("storage-compress", Scope::Node, Kind::Choice(StorageCompress::NAMES), "none", STATIC,
        "compression: none, deflate, bz2, tcbs"),
    opt("storage-large", Scope::Node, Kind::Switch, "false", STATIC, "allow a file over 2 GB (tch, kch; no effect)"),
    opt("storage-lmemb", Scope::Node, int(0, I32), "128", STATIC, "members per leaf page (tcb; no effect)"),
    opt("storage-nmemb", Scope::Node, int(0, I32), "256", STATIC, "members per non-leaf page (tcb; no effect)"),
    opt("storage-dfunit", Scope::Node, int(0, I32), "0", STATIC, "auto defragmentation unit (tch, tcb; no effect)"),
    // Node: storage access watching (§5.4).
    opt("time-watcher-enabled", Scope::Node, Kind::Bool, "false", DYN,
        "turn the storage access watcher on (accepted for compatibility, has no effect)"),
    opt("time-watcher-polling-interval-msec", Scope::Node, int(0, U32), "0", DYN,
        "watcher polling interval in milliseconds (accepted for compatibility, has no effect)"),
    opt("storage-access-watch-threshold-warn-msec", Scope::Node, int(0, U32), "0", DYN,
        "log a storage operation running longer than this ms (accepted for compatibility, has no effect)"),
    opt("storage-access-watch-threshold-ping-ng-msec", Scope::Node, int(0, U32), "0", DYN,
        "mark the node unhealthy above this ms (accepted for compatibility, has no effect)"),
    // Node: cluster-to-cluster replication (§5.5).
    opt("cluster-replication", Scope::Node, Kind::Bool, "false", DYN,
        "replicate writes to another cluster (accepted for compatibility, has no effect)"),
    opt("cluster-replication-server-name", Scope::Node, Kind::Text, "", DYN,
        "destination host in the other cluster (accepted for compatibility, has no effect)"),
    opt("cluster-replication-server-port", Scope::Node, PORT, "12121", DYN,
        "cluster replication destination port (accepted for compatibility, has no effect)"),
    opt("cluster-replication-concurrency", Scope::Node, int(1, I32), "", STATIC,
        "connections to the destination, default proxy-concurrency (accepted for compatibility, has no effect)"),
    opt("cluster-replication-mode", Scope::Node, Kind::Choice(ClusterReplicationMode::NAMES), "duplicate", DYN,
        "cluster replication mode: duplicate, forward (accepted for compatibility, has no effect)"),
    // Node: MySQL replication (§5.6): accepted, not supported.
    opt("mysql-replication", Scope::Node, Kind::Switch, "false", STATIC, "MySQL replication (not supported)"),
    opt("mysql-replication-port", Scope::Node, PORT, "12122", STATIC, "MySQL replication port (no effect)"),
    opt("mysql-replication-id", Scope::Node, int(0, U32), "19790217", STATIC, "MySQL server id (no effect)"),
    opt("mysql-replication-db", Scope::Node, Kind::Text, "flare", STATIC, "MySQL database (no effect)"),
    opt("mysql-replication-table", Scope::Node, Kind::Text, "flare", STATIC, "MySQL table (no effect)"),
    // Additions (§8 and decisions.md).
    opt("max-item-size", Scope::Node, int(1, MAX_ITEM_SIZE_LIMIT), "67108864", STATIC, "largest value in bytes"),
    opt("max-key-length", Scope::Node, int(1, 8191), "8191", STATIC, "longest key in bytes"),
    opt("max-line-length", Scope::Both, int(1024, I32), "65536", STATIC, "longest command line in bytes"),
    opt("version-string", Scope::Both, Kind::Text, DEFAULT_VERSION_STRING, STATIC, "what the version command reports"),
    opt("gat-flare-syntax", Scope::Node, Kind::Bool, "false", STATIC,
        "Flare's gat <key> <exptime> instead of memcached's gat <exptime> <key>+"),
    OptionSpec {
        alias_of: Some("gat-flare-syntax"),
        ..opt("gat-compat", Scope::Node, Kind::Choice(GAT_COMPAT), "memcached", STATIC,
            "gat syntax: memcached or flare (alias of gat-flare-syntax)")
    },
    opt("incr-flare-semantics", Scope::Node, Kind::Bool, "false", STATIC,
        "Flare's incr/decr: non-numeric values count as 0, incr saturates"),
    opt("binary-incr-create", Scope::Node, Kind::Bool, "true", STATIC,
        "binary incr/decr on a miss creates the item, as memcached does"),
    opt("allow-client-version", Scope::Node, Kind::Bool, "true", STATIC,
        "accept an explicit <version> on storage commands from clients"),
    opt("cluster-secret", Scope::Both, Kind::Text, "", DYN,
        "shared secret for proxied, replication and map-changing traffic (empty = none)"),
    opt("internal-netmask", Scope::Both, Kind::Netmasks, "", DYN,
        "address ranges internal commands are accepted from (empty = any)"),
    opt("tombstone-ttl", Scope::Node, int(0, I32), "3600", STATIC, "seconds to keep delete tombstones"),
    opt("expiry-sweep-interval", Scope::Node, int(0, I32), "60", STATIC,
        "seconds between background expiry sweeps (0 = off)"),
    opt("storage-sync", Scope::Node, Kind::Choice(StorageSync::NAMES), "none", STATIC,
        "WAL fsync: none, group, always"),
    opt("storage-block-cache", Scope::Node, int(0, 1 << 20), "64", STATIC, "storage block cache (MiB)"),
    opt("storage-item-cache", Scope::Node, int(0, 1 << 20), "256", STATIC, "cache of small records in front of RocksDB (MiB)"),
    opt("storage-write-buffer", Scope::Node, int(1, 1 << 16), "32", STATIC, "storage write buffer (MiB)"),
    opt("proxy-timeout", Scope::Node, int(1, I32), "1000", DYN, "milliseconds before a forwarded request fails"),
    opt("replication-backlog", Scope::Node, int(1, I32), "100000", STATIC,
        "max queued replication writes per slave"),
    opt("replication-failure-threshold", Scope::Node, int(0, I32), "0", DYN,
        "failed replication writes in a row before a slave is down (accepted for compatibility, has no effect)"),
    opt("auto-activate", Scope::Index, Kind::Bool, "false", DYN, "activate a ready master automatically"),
    opt("metrics-port", Scope::Both, int(0, 65535), "0", STATIC, "HTTP metrics port (0 = off)"),
    opt("metrics-address", Scope::Both, Kind::Text, "127.0.0.1", STATIC, "HTTP metrics address"),
];

/// Options parsed and checked but not implemented yet: accepted so that Flare's configuration files load, they change
/// nothing. Given with a value other than the default (in the file or on the command line) each one warns "accepted
/// for compatibility, has no effect", and its help says so (docs/compatibility.md, "Options accepted without
/// effect"). An option leaves this list when it is implemented.
pub(super) const NO_EFFECT: &[&str] = &[
    "server-socket",
    "back-log",
    "stack-size",
    "noreply-window-limit",
    "max-total-thread-queue",
    "proxy-prior-netmask",
    "storage-cache-size",
    "time-watcher-enabled",
    "time-watcher-polling-interval-msec",
    "storage-access-watch-threshold-warn-msec",
    "storage-access-watch-threshold-ping-ng-msec",
    "cluster-replication",
    "cluster-replication-server-name",
    "cluster-replication-server-port",
    "cluster-replication-concurrency",
    "cluster-replication-mode",
    "replication-failure-threshold",
];

/// The option `name` of `daemon`, if it exists.
pub fn spec(daemon: Daemon, name: &str) -> Option<&'static OptionSpec> {
    OPTIONS
        .iter()
        .find(|s| s.name == name && s.scope.includes(daemon))
}

/// The option `name` of either daemon, if it exists.
pub fn spec_any(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|s| s.name == name)
}

/// The options of `daemon`, in schema order.
pub fn options(daemon: Daemon) -> impl Iterator<Item = &'static OptionSpec> {
    OPTIONS.iter().filter(move |s| s.scope.includes(daemon))
}

#[cfg(test)]
mod tests;
