//! Flare-style configuration: the option schema of `flared` (node) and `flarei` (index), the `key = value` file
//! syntax, and the typed [`NodeConfig`] / [`IndexConfig`] built from them (config.md).
//!
//! Pure: the input is the file's text and the command line's `(name, value)` pairs (the runtime reads the file and
//! runs clap), the output is typed values, warnings as strings, or a [`ConfigError`] naming the file, the line and
//! the option.
//!
//! Flow: [`parse_file`] turns text into [`Entry`]s (syntax, unknown names and duplicates are checked here, with line
//! numbers); [`merge`] lets command-line entries override file entries; [`NodeConfig::from_entries`] (or
//! [`IndexConfig::from_entries`]) checks each value against the schema, applies it over the defaults and then checks
//! the rules that span options (`data-dir` required, `index-servers` vs `index-server-name`, ...).
//!
//! The schema ([`OPTIONS`]) is the single source of truth: names, kinds, defaults, which daemon, dynamic or not, help
//! text. The command line, `stats settings`, `show variables` extras and [`Changes`] are derived from it; the
//! field-by-field `reload` is checked against its dynamic flags by a test.
//!
//! Invariants: every [`Entry`] returned by [`parse_file`] names an option of the schema; a config rebuilt from its own
//! [`NodeConfig::to_pairs`] is equal to it (the fuzz target checks both).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::protocol::Limits;

/// The default `version-string`: this project's version alone, e.g. `2.0.0` (docs/compatibility.md, "version"):
/// libmemcached reads digits right after `VERSION `, and Flare's Ruby tools read a one-part version as Flare's.
pub const DEFAULT_VERSION_STRING: &str = env!("CARGO_PKG_VERSION");

/// The largest value `max-item-size` accepts (protocol.md §2: 2^31−1).
pub const MAX_ITEM_SIZE_LIMIT: i64 = i32::MAX as i64;

// ---------------------------------------------------------------------------------------------------------------------
// Errors and locations
// ---------------------------------------------------------------------------------------------------------------------

/// The two daemons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Daemon {
    /// `flared`, a node.
    Node,
    /// `flarei`, the index server.
    Index,
}

impl Daemon {
    /// The binary name, also the syslog ident: `flared` or `flarei`.
    pub fn binary_name(self) -> &'static str {
        match self {
            Daemon::Node => "flared",
            Daemon::Index => "flarei",
        }
    }
}

impl fmt::Display for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary_name())
    }
}

/// Where an option was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// Not known (e.g. pairs given to [`NodeConfig::from_pairs`]).
    Unknown,
    /// Line `line` (1-based) of the file named `origin`.
    File {
        /// The file name as the user gave it, e.g. `/etc/flared.conf`.
        origin: String,
        /// 1-based line number.
        line: usize,
    },
    /// The command line.
    CommandLine,
}

impl Location {
    /// The prefix of a message about this location: `flared.conf:12: `, `command line: ` or nothing.
    pub fn prefix(&self) -> String {
        match self {
            Location::Unknown => String::new(),
            Location::File { origin, line } => format!("{origin}:{line}: "),
            Location::CommandLine => "command line: ".to_owned(),
        }
    }

    /// The 1-based line number, for a file location.
    pub fn line(&self) -> Option<usize> {
        match self {
            Location::File { line, .. } => Some(*line),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Location::Unknown => "an earlier entry".to_owned(),
            Location::File { origin, line } => format!("{origin}:{line}"),
            Location::CommandLine => "the command line".to_owned(),
        }
    }
}

/// Why a configuration was rejected. Each message names the option and, when known, the file and line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A line that is not `name = value`, a bare switch, a `[section]` header, a comment or blank.
    #[error("{}syntax error: {reason}", .location.prefix())]
    Syntax {
        /// Where.
        location: Location,
        /// What is wrong with the line.
        reason: String,
    },
    /// A name that is no option of either daemon (config.md §1: an unknown key is an error).
    #[error("{}unknown option '{name}'", .location.prefix())]
    UnknownOption {
        /// Where.
        location: Location,
        /// The name as given.
        name: String,
    },
    /// An option of the other daemon, e.g. `back-log` in a `flarei` config.
    #[error("{}option '{name}' is not an option of {daemon}", .location.prefix())]
    WrongDaemon {
        /// Where.
        location: Location,
        /// The name as given.
        name: String,
        /// The daemon being configured.
        daemon: Daemon,
    },
    /// The same option given twice in one source.
    #[error("{}option '{name}' given twice (first at {})", .location.prefix(), .first.describe())]
    Duplicate {
        /// Where the second occurrence is.
        location: Location,
        /// The option.
        name: String,
        /// Where the first occurrence is.
        first: Location,
    },
    /// Two options that exclude each other, e.g. `index-servers` and `index-server-name`.
    #[error("{}option '{name}' cannot be combined with '{other}'", .location.prefix())]
    Conflict {
        /// Where the second option is.
        location: Location,
        /// The second option.
        name: String,
        /// The option it conflicts with.
        other: String,
    },
    /// An option that takes a value, given bare.
    #[error("{}option '{name}' needs a value", .location.prefix())]
    MissingValue {
        /// Where.
        location: Location,
        /// The option.
        name: String,
    },
    /// A value of the wrong type or out of range.
    #[error("{}option '{name}': invalid value '{value}' (expected {expected})", .location.prefix())]
    InvalidValue {
        /// Where.
        location: Location,
        /// The option.
        name: String,
        /// The value as given.
        value: String,
        /// What would have been accepted, e.g. `an integer`.
        expected: String,
    },
    /// A valid value that this implementation does not support (`mysql-replication`, a ZooKeeper `index-db`).
    #[error("{}option '{name}': {reason}", .location.prefix())]
    Unsupported {
        /// Where.
        location: Location,
        /// The option.
        name: String,
        /// Why.
        reason: String,
    },
    /// A required option is missing (`data-dir`; `index-server-name` when `index-servers` is absent).
    #[error("option '{name}' is required{hint}")]
    Required {
        /// The option.
        name: String,
        /// Extra words after "is required", e.g. ` (or give 'index-servers')`; may be empty.
        hint: String,
    },
}

impl ConfigError {
    /// The option the error is about (the name as given), if any.
    pub fn option_name(&self) -> Option<&str> {
        match self {
            ConfigError::Syntax { .. } => None,
            ConfigError::UnknownOption { name, .. }
            | ConfigError::WrongDaemon { name, .. }
            | ConfigError::Duplicate { name, .. }
            | ConfigError::Conflict { name, .. }
            | ConfigError::MissingValue { name, .. }
            | ConfigError::InvalidValue { name, .. }
            | ConfigError::Unsupported { name, .. }
            | ConfigError::Required { name, .. } => Some(name),
        }
    }

    /// Where the offending option was given, if known.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Syntax { location, .. }
            | ConfigError::UnknownOption { location, .. }
            | ConfigError::WrongDaemon { location, .. }
            | ConfigError::Duplicate { location, .. }
            | ConfigError::Conflict { location, .. }
            | ConfigError::MissingValue { location, .. }
            | ConfigError::InvalidValue { location, .. }
            | ConfigError::Unsupported { location, .. } => Some(location),
            ConfigError::Required { .. } => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------------------------------------------------

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
/// A name appears once per daemon; `server-port` has one entry per daemon because the defaults differ.
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
    opt("server-socket", Scope::Both, Kind::Text, "", STATIC, "Unix socket path, in addition to TCP (optional)"),
    opt("back-log", Scope::Node, int(0, I32), "30", STATIC, "listen() backlog"),
    opt("max-connection", Scope::Both, int(1, I32), "1024", DYN, "max concurrent client connections (Flare: 128; memcached's 1024, see docs/compatibility.md)"),
    opt("net-read-timeout", Scope::Both, int(0, I32), "600", DYN,
        "seconds before an idle connection is closed (0 = never)"),
    opt("stack-size", Scope::Both, int(1, I32), "128", STATIC, "thread stack size (KiB)"),
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
        "replicated writes sent in a row with noreply (0 = off)"),
    opt("max-total-thread-queue", Scope::Node, int(0, U32), "0", DYN,
        "cap on items queued in all worker threads (0 = unlimited)"),
    opt("proxy-prior-netmask", Scope::Node, int(0, 32), "0", STATIC,
        "prefix length: prefer read replicas in the same subnet (0 = off)"),
    opt("mutex-slot", Scope::Node, int(1, I32), "64", STATIC, "lock stripes for storage writes"),
    // Node: storage (§5.3).
    opt("storage-type", Scope::Node, Kind::Choice(STORAGE_TYPES), "rocksdb", STATIC,
        "storage engine: rocksdb (tch, tcb, kch are accepted and use rocksdb)"),
    opt("storage-ap", Scope::Node, int(0, U32), "4", STATIC, "record alignment, power of 2 (tch; no effect)"),
    opt("storage-fp", Scope::Node, int(0, U32), "10", STATIC, "free block pool, power of 2 (tch; no effect)"),
    opt("storage-bucket-size", Scope::Node, int(0, i64::MAX), "131071", STATIC,
        "bucket array size (tch, kch; no effect)"),
    opt("storage-cache-size", Scope::Node, int(0, I32), "65536", STATIC,
        "entries of the header cache remembering recent deletes"),
    opt("storage-compress", Scope::Node, Kind::Choice(StorageCompress::NAMES), "none", STATIC,
        "compression: none, deflate, bz2, tcbs"),
    opt("storage-large", Scope::Node, Kind::Switch, "false", STATIC, "allow a file over 2 GB (tch, kch; no effect)"),
    opt("storage-lmemb", Scope::Node, int(0, I32), "128", STATIC, "members per leaf page (tcb; no effect)"),
    opt("storage-nmemb", Scope::Node, int(0, I32), "256", STATIC, "members per non-leaf page (tcb; no effect)"),
    opt("storage-dfunit", Scope::Node, int(0, I32), "0", STATIC, "auto defragmentation unit (tch, tcb; no effect)"),
    // Node: storage access watching (§5.4).
    opt("time-watcher-enabled", Scope::Node, Kind::Bool, "false", DYN, "turn the storage access watcher on"),
    opt("time-watcher-polling-interval-msec", Scope::Node, int(0, U32), "0", DYN,
        "watcher polling interval in milliseconds (0 = off)"),
    opt("storage-access-watch-threshold-warn-msec", Scope::Node, int(0, U32), "0", DYN,
        "log a storage operation running longer than this (ms; 0 = off)"),
    opt("storage-access-watch-threshold-ping-ng-msec", Scope::Node, int(0, U32), "0", DYN,
        "mark the node unhealthy above this (ms; 0 = off)"),
    // Node: cluster-to-cluster replication (§5.5).
    opt("cluster-replication", Scope::Node, Kind::Bool, "false", DYN, "replicate writes to another cluster"),
    opt("cluster-replication-server-name", Scope::Node, Kind::Text, "", DYN, "destination host in the other cluster"),
    opt("cluster-replication-server-port", Scope::Node, PORT, "12121", DYN, "destination port"),
    opt("cluster-replication-concurrency", Scope::Node, int(1, I32), "", STATIC,
        "connections to the destination (default: proxy-concurrency)"),
    opt("cluster-replication-mode", Scope::Node, Kind::Choice(ClusterReplicationMode::NAMES), "duplicate", DYN,
        "cluster replication mode: duplicate, forward"),
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
        "failed replication writes in a row before a slave is reported down (0 = off)"),
    opt("auto-activate", Scope::Index, Kind::Bool, "false", DYN, "activate a ready master automatically"),
    opt("metrics-port", Scope::Both, int(0, 65535), "0", STATIC, "HTTP metrics port (0 = off)"),
    opt("metrics-address", Scope::Both, Kind::Text, "127.0.0.1", STATIC, "HTTP metrics address"),
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

// ---------------------------------------------------------------------------------------------------------------------
// Entries: the file syntax and merging
// ---------------------------------------------------------------------------------------------------------------------

/// One `name = value` given in a file or on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The option name as given.
    pub name: String,
    /// The value; `None` for a bare switch (`daemonize` alone on a line, `--daemonize`).
    pub value: Option<String>,
    /// Where it was given.
    pub location: Location,
}

impl Entry {
    /// An entry with a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>, location: Location) -> Entry {
        Entry {
            name: name.into(),
            value: Some(value.into()),
            location,
        }
    }
}

/// Parses a config file (config.md §1).
///
/// `origin` names the file in error messages (`origin:line: ...`). Accepted: `name = value` (whitespace around `=`
/// ignored), a bare switch name, `#` comments on their own line or after a value, blank lines, `[section]` headers
/// (ignored). Errors: a line that is none of these, an unknown name, a non-switch option without a value, an option
/// given twice. Values are not checked here, because that needs the daemon ([`NodeConfig::from_entries`]).
pub fn parse_file(text: &str, origin: &str) -> Result<Vec<Entry>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let location = Location::File {
            origin: origin.to_owned(),
            line: index + 1,
        };
        // As Boost's config-file parser: everything after `#` is a comment, so a value cannot contain `#`.
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        if let Some(header) = content.strip_prefix('[') {
            if header.ends_with(']') {
                continue;
            }
            return Err(ConfigError::Syntax {
                location,
                reason: format!("unterminated section header '{content}'"),
            });
        }
        let (name, value) = match content.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().to_owned())),
            None => (content, None),
        };
        if name.is_empty() {
            return Err(ConfigError::Syntax {
                location,
                reason: "missing option name before '='".to_owned(),
            });
        }
        let Some(spec) = spec_any(name) else {
            return Err(ConfigError::UnknownOption {
                location,
                name: name.to_owned(),
            });
        };
        if value.is_none() && spec.kind != Kind::Switch {
            return Err(ConfigError::MissingValue {
                location,
                name: name.to_owned(),
            });
        }
        entries.push(Entry {
            name: name.to_owned(),
            value,
            location,
        });
    }
    check_duplicates(&entries)?;
    Ok(entries)
}

/// Applies `overrides` (the command line) over `base` (the file): an override replaces every base entry of the same
/// option, including its alias (`gat-compat` / `gat-flare-syntax`). The index-server forms replace each other as
/// well: `--index-servers` drops the file's `index-server-name`/`-port`, and either of those drops its
/// `index-servers`, so the command line always wins (config.md §2).
pub fn merge(base: &[Entry], overrides: &[Entry]) -> Vec<Entry> {
    let replaced = |entry: &Entry| {
        let group = index_server_group(&entry.name);
        overrides.iter().any(|o| {
            canonical(&o.name) == canonical(&entry.name)
                || (group != IndexServerForm::Other
                    && index_server_group(&o.name) != IndexServerForm::Other
                    && index_server_group(&o.name) != group)
        })
    };
    base.iter()
        .filter(|e| !replaced(e))
        .chain(overrides)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------------
// Choice types
// ---------------------------------------------------------------------------------------------------------------------

/// Declares a choice enum with its option words.
macro_rules! choice_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The words the option accepts, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($word),+];

            /// The option word for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// The value an option word names, if any (case-sensitive).
            pub fn from_name(word: &str) -> Option<$name> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice_enum! {
    /// `log-facility` (config.md §3). The default is `daemon`; unknown names are rejected (Flare fell through to kern).
    LogFacility {
        /// `auth`.
        Auth = "auth",
        /// `daemon`.
        Daemon = "daemon",
        /// `user`.
        User = "user",
        /// `local0`.
        Local0 = "local0",
        /// `local1`.
        Local1 = "local1",
        /// `local2`.
        Local2 = "local2",
        /// `local3`.
        Local3 = "local3",
        /// `local4`.
        Local4 = "local4",
        /// `local5`.
        Local5 = "local5",
        /// `local6`.
        Local6 = "local6",
        /// `local7`.
        Local7 = "local7",
    }
}

impl LogFacility {
    /// The facility as `<syslog.h>` defines it (already shifted: `LOG_DAEMON` = 3 << 3).
    pub fn syslog_code(self) -> i32 {
        let number = match self {
            LogFacility::User => 1,
            LogFacility::Daemon => 3,
            LogFacility::Auth => 4,
            LogFacility::Local0 => 16,
            LogFacility::Local1 => 17,
            LogFacility::Local2 => 18,
            LogFacility::Local3 => 19,
            LogFacility::Local4 => 20,
            LogFacility::Local5 => 21,
            LogFacility::Local6 => 22,
            LogFacility::Local7 => 23,
        };
        number << 3
    }
}

choice_enum! {
    /// `replication-type` (config.md §5.2, decisions.md #8).
    ReplicationType {
        /// Acknowledge after the master's WAL.
        Async = "async",
        /// Acknowledge after every active slave has the write too.
        Sync = "sync",
    }
}

choice_enum! {
    /// `storage-sync` (decisions.md #9).
    StorageSync {
        /// OS buffers; survives a process kill.
        None = "none",
        /// WAL fsyncs batched across writers.
        Group = "group",
        /// An fsync per write.
        Always = "always",
    }
}

choice_enum! {
    /// `cluster-replication-mode` (config.md §5.5, cluster.md §12).
    ClusterReplicationMode {
        /// Apply locally and send to the other cluster.
        Duplicate = "duplicate",
        /// Only send to the other cluster.
        Forward = "forward",
    }
}

choice_enum! {
    /// `storage-type` after mapping: Flare's `tch`, `tcb` and `kch` all become RocksDB (decisions.md #9).
    StorageType {
        /// RocksDB, one database per data directory.
        RocksDb = "rocksdb",
    }
}

choice_enum! {
    /// `storage-compress` (config.md §5.3).
    StorageCompress {
        /// No compression.
        None = "none",
        /// Deflate.
        Deflate = "deflate",
        /// bzip2.
        Bz2 = "bz2",
        /// Tokyo Cabinet's BWT codec; engines without it may use their default codec.
        Tcbs = "tcbs",
    }
}

choice_enum! {
    /// `key-hash-algorithm` (config.md §4; `bitshift`, `adler32` and `murmur` make start-up fail).
    KeyHashAlgorithm {
        /// Flare's simple hash.
        Simple = "simple",
        /// CRC-32.
        Crc32 = "crc32",
        /// Jenkins' one-at-a-time hash.
        Jenkins = "jenkins",
    }
}

choice_enum! {
    /// `partition-type` (config.md §4): only `modular` exists.
    PartitionType {
        /// Modular placement with virtual slots (cluster.md §9.3).
        Modular = "modular",
    }
}

/// One index server a node talks to (`index-servers` or `index-server-name` + `index-server-port`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexServer {
    /// Host name or address.
    pub name: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for IndexServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

/// An address range of `internal-netmask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address as given (host bits are ignored when matching).
    pub addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address (a full-length prefix).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok()?
            }
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside this range. An IPv4 range never contains an IPv6 address and vice versa, except that
    /// an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is matched as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_match(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `cluster-secret`: a shared secret whose `Debug` output is redacted, so logging a config does not leak it.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for comparing with what a peer sends.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(text.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(none)"
        } else {
            "Secret(***)"
        })
    }
}

fn prefix_match(net: u128, ip: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    net & mask == ip & mask
}

// ---------------------------------------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------------------------------------

/// What a reload (SIGHUP) changes, by option name (config.md §6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changed dynamic options: applied.
    pub applied: Vec<&'static str>,
    /// Changed options that need a restart: ignored, the running value stays.
    pub ignored: Vec<&'static str>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.ignored.is_empty()
    }

    /// One warning per ignored change (config.md §6 \[Improve\]).
    pub fn warnings(&self) -> Vec<String> {
        self.ignored
            .iter()
            .map(|name| format!("option '{name}' changed but is not dynamic: restart to apply it; keeping the running value"))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The node
// ---------------------------------------------------------------------------------------------------------------------

/// The configuration of a node (`flared`), one field per option of config.md §5 and §8.
///
/// Exceptions to "one field per option": `index-servers`, `index-server-name` and `index-server-port` resolve into
/// [`NodeConfig::index_servers`]; `gat-compat` sets [`NodeConfig::gat_flare_syntax`]; `mysql-replication` has no
/// field because turning it on is an error. Times are [`Duration`]s (the `*-msec` options lose their suffix).
///
/// [`Default`] gives the schema defaults, which are not a valid configuration on their own (`data-dir` and an index
/// server are required); [`NodeConfig::from_entries`] checks that.
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

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: String::new(),
            daemonize: false,
            log_facility: LogFacility::Daemon,
            server_name: String::new(),
            server_port: 12121,
            server_socket: None,
            back_log: 30,
            max_connection: 1024,
            net_read_timeout: Duration::from_secs(600),
            stack_size: 128,
            thread_pool_size: 5,
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
            max_line_length: 65536,
            version_string: DEFAULT_VERSION_STRING.to_owned(),
            gat_flare_syntax: false,
            incr_flare_semantics: false,
            binary_incr_create: true,
            allow_client_version: true,
            cluster_secret: Secret::default(),
            internal_netmask: Vec::new(),
            tombstone_ttl: Duration::from_secs(3600),
            expiry_sweep_interval: Duration::from_secs(60),
            storage_sync: StorageSync::None,
            storage_block_cache: 64,
            storage_item_cache: 256,
            storage_write_buffer: 32,
            proxy_timeout: Duration::from_millis(1000),
            master_lease: Duration::from_millis(3000),
            replication_backlog: 100_000,
            replication_failure_threshold: 0,
            metrics_port: 0,
            metrics_address: IpAddr::from([127, 0, 0, 1]),
        }
    }
}

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
    /// Builds a node configuration from `(name, value)` pairs, already merged (file first, command line overriding).
    /// An empty value for a switch means "on". Returns the configuration and warnings (options accepted for
    /// compatibility that have no effect, Flare storage types mapped to RocksDB).
    pub fn from_pairs(
        pairs: &[(String, String)],
    ) -> Result<(NodeConfig, Vec<String>), ConfigError> {
        NodeConfig::from_entries(&pairs_to_entries(pairs))
    }

    /// Builds a node configuration from entries (from [`parse_file`], [`merge`]d with the command line).
    pub fn from_entries(entries: &[Entry]) -> Result<(NodeConfig, Vec<String>), ConfigError> {
        build(entries)
    }

    /// Parser limits from `max-line-length`, `max-key-length` and `max-item-size`.
    pub fn limits(&self) -> Limits {
        Limits {
            line_max: self.max_line_length,
            key_max: self.max_key_length,
            item_size_max: self.max_item_size,
            ..Limits::default()
        }
    }

    /// Every option as `(name, value)` that rebuilds this configuration through [`NodeConfig::from_pairs`]
    /// (schema order; the index server forms as `index-servers`, without the `gat-compat` alias). Includes the
    /// cluster secret: do not show it to clients.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        owned(self.pairs(true))
    }

    /// `stats settings`: every option as memcached-style `(name, value)`, names with underscores, the cluster secret
    /// masked.
    pub fn settings(&self) -> Vec<(String, String)> {
        settings_of(self.pairs(false))
    }

    /// `show variables` lines (stats.md §5): Flare's list in Flare's order and spacing, then the options Flare does
    /// not show (schema order, MySQL options left out). `config_path` and `pid_path` are the process's paths (empty
    /// when there is no config file).
    pub fn show_variables(&self, config_path: &str, pid_path: &str) -> Vec<String> {
        let servers = self
            .index_servers
            .iter()
            .map(IndexServer::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let special = |label: &str| match label {
            "config_path" => Some(config_path.to_owned()),
            "pid_path" => Some(pid_path.to_owned()),
            "index_server(s)" => Some(servers.clone()),
            "cluster_replication" => Some(u8::from(self.cluster_replication).to_string()),
            _ => None,
        };
        let hidden = |name: &str| name.starts_with("mysql-") || name == "index-servers";
        show(24, NODE_SHOW, self.pairs(false), special, hidden)
    }

    /// Which options differ between `self` (running) and `new` (re-read), split by whether SIGHUP applies them.
    pub fn dynamic_changes(&self, new: &NodeConfig) -> Changes {
        changes(Daemon::Node, self.pairs(true), new.pairs(true))
    }

    /// The configuration after a SIGHUP that re-read `new`: dynamic options from `new`, everything else kept from
    /// `self` (config.md §6), with the changes (log a warning for each [`Changes::ignored`]).
    pub fn reload(&self, new: &NodeConfig) -> (NodeConfig, Changes) {
        let mut next = self.clone();
        next.log_facility = new.log_facility;
        next.max_connection = new.max_connection;
        next.net_read_timeout = new.net_read_timeout;
        next.thread_pool_size = new.thread_pool_size;
        next.index_servers = new.index_servers.clone();
        next.replication_type = new.replication_type;
        next.reconstruction_interval = new.reconstruction_interval;
        next.reconstruction_bwlimit = new.reconstruction_bwlimit;
        next.noreply_window_limit = new.noreply_window_limit;
        next.max_total_thread_queue = new.max_total_thread_queue;
        next.time_watcher_enabled = new.time_watcher_enabled;
        next.time_watcher_polling_interval = new.time_watcher_polling_interval;
        next.storage_access_watch_threshold_warn = new.storage_access_watch_threshold_warn;
        next.storage_access_watch_threshold_ping_ng = new.storage_access_watch_threshold_ping_ng;
        next.cluster_replication = new.cluster_replication;
        next.cluster_replication_server_name = new.cluster_replication_server_name.clone();
        next.cluster_replication_server_port = new.cluster_replication_server_port;
        next.cluster_replication_mode = new.cluster_replication_mode;
        next.cluster_secret = new.cluster_secret.clone();
        next.internal_netmask = new.internal_netmask.clone();
        next.proxy_timeout = new.proxy_timeout;
        next.replication_failure_threshold = new.replication_failure_threshold;
        (next, self.dynamic_changes(new))
    }

    /// The option values in schema order, as they would be written in a file.
    fn pairs(&self, reveal_secret: bool) -> Vec<(&'static str, String)> {
        let servers = self
            .index_servers
            .iter()
            .map(IndexServer::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut pairs = vec![
            ("data-dir", self.data_dir.clone()),
            ("daemonize", self.daemonize.to_string()),
            ("log-facility", self.log_facility.to_string()),
            ("server-name", self.server_name.clone()),
            ("server-port", self.server_port.to_string()),
            (
                "server-socket",
                self.server_socket.clone().unwrap_or_default(),
            ),
            ("back-log", self.back_log.to_string()),
            ("max-connection", self.max_connection.to_string()),
            (
                "net-read-timeout",
                self.net_read_timeout.as_secs().to_string(),
            ),
            ("stack-size", self.stack_size.to_string()),
            ("thread-pool-size", self.thread_pool_size.to_string()),
            ("master-lease", millis(self.master_lease)),
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
            ("max-line-length", self.max_line_length.to_string()),
            ("version-string", self.version_string.clone()),
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
            (
                "cluster-secret",
                secret(self.cluster_secret.expose(), reveal_secret),
            ),
            ("internal-netmask", netmasks(&self.internal_netmask)),
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
            ("metrics-port", self.metrics_port.to_string()),
            ("metrics-address", self.metrics_address.to_string()),
        ];
        // A standalone node has no index server: leave the option out rather than give it an empty value.
        pairs.retain(|(name, value)| !(*name == "index-servers" && value.is_empty()));
        pairs
    }
}

impl Target for NodeConfig {
    const DAEMON: Daemon = Daemon::Node;

    fn set(&mut self, spec: &'static OptionSpec, v: &Value<'_>) -> Result<Option<String>, Problem> {
        let mut warning = None;
        match spec.name {
            "data-dir" => self.data_dir = v.text()?.to_owned(),
            "daemonize" => self.daemonize = v.flag()?,
            "log-facility" => self.log_facility = v.choice(LogFacility::from_name)?,
            "server-name" => self.server_name = host_name(v, true)?,
            "server-port" => self.server_port = v.int()?,
            "server-socket" => self.server_socket = non_empty(v.text()?),
            "back-log" => self.back_log = v.int()?,
            "max-connection" => self.max_connection = v.int()?,
            "net-read-timeout" => self.net_read_timeout = Duration::from_secs(v.int()?),
            "stack-size" => self.stack_size = v.int()?,
            "thread-pool-size" => self.thread_pool_size = v.int()?,
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
            "max-line-length" => self.max_line_length = v.int()?,
            "version-string" => self.version_string = token(v, false, "a word without spaces")?,
            "gat-flare-syntax" => self.gat_flare_syntax = v.flag()?,
            "gat-compat" => self.gat_flare_syntax = v.text()? == "flare",
            "incr-flare-semantics" => self.incr_flare_semantics = v.flag()?,
            "binary-incr-create" => self.binary_incr_create = v.flag()?,
            "allow-client-version" => self.allow_client_version = v.flag()?,
            "cluster-secret" => {
                self.cluster_secret = Secret(token(v, true, "a word without spaces")?)
            }
            "internal-netmask" => self.internal_netmask = netmask_list(v.text()?)?,
            "tombstone-ttl" => self.tombstone_ttl = Duration::from_secs(v.int()?),
            "expiry-sweep-interval" => self.expiry_sweep_interval = Duration::from_secs(v.int()?),
            "storage-sync" => self.storage_sync = v.choice(StorageSync::from_name)?,
            "storage-block-cache" => self.storage_block_cache = v.int()?,
            "storage-item-cache" => self.storage_item_cache = v.int()?,
            "storage-write-buffer" => self.storage_write_buffer = v.int()?,
            "proxy-timeout" => self.proxy_timeout = v.millis()?,
            "master-lease" => self.master_lease = v.millis()?,
            "replication-backlog" => self.replication_backlog = v.int()?,
            "replication-failure-threshold" => self.replication_failure_threshold = v.int()?,
            "metrics-port" => self.metrics_port = v.int()?,
            "metrics-address" => self.metrics_address = ip_address(v)?,
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

// ---------------------------------------------------------------------------------------------------------------------
// The index server
// ---------------------------------------------------------------------------------------------------------------------

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
    /// Builds an index configuration from `(name, value)` pairs, already merged (file first, command line
    /// overriding). An empty value for a switch means "on". Returns the configuration and warnings.
    pub fn from_pairs(
        pairs: &[(String, String)],
    ) -> Result<(IndexConfig, Vec<String>), ConfigError> {
        IndexConfig::from_entries(&pairs_to_entries(pairs))
    }

    /// Builds an index configuration from entries (from [`parse_file`], [`merge`]d with the command line).
    pub fn from_entries(entries: &[Entry]) -> Result<(IndexConfig, Vec<String>), ConfigError> {
        build(entries)
    }

    /// Parser limits from `max-line-length` (the other limits keep their defaults).
    pub fn limits(&self) -> Limits {
        Limits {
            line_max: self.max_line_length,
            ..Limits::default()
        }
    }

    /// Every option as `(name, value)` that rebuilds this configuration through [`IndexConfig::from_pairs`], in
    /// schema order. Includes the cluster secret: do not show it to clients.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        owned(self.pairs(true))
    }

    /// `stats settings`: every option as memcached-style `(name, value)`, names with underscores, the cluster secret
    /// masked.
    pub fn settings(&self) -> Vec<(String, String)> {
        settings_of(self.pairs(false))
    }

    /// `show variables` lines (stats.md §5): Flare's list in Flare's order and spacing, then the options Flare does
    /// not show (schema order).
    pub fn show_variables(&self, config_path: &str, pid_path: &str) -> Vec<String> {
        let special = |label: &str| match label {
            "config_path" => Some(config_path.to_owned()),
            "pid_path" => Some(pid_path.to_owned()),
            _ => None,
        };
        show(26, INDEX_SHOW, self.pairs(false), special, |_| false)
    }

    /// Which options differ between `self` (running) and `new` (re-read), split by whether SIGHUP applies them.
    pub fn dynamic_changes(&self, new: &IndexConfig) -> Changes {
        changes(Daemon::Index, self.pairs(true), new.pairs(true))
    }

    /// The configuration after a SIGHUP that re-read `new`: dynamic options from `new`, everything else kept from
    /// `self` (config.md §6), with the changes.
    pub fn reload(&self, new: &IndexConfig) -> (IndexConfig, Changes) {
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
}

impl Target for IndexConfig {
    const DAEMON: Daemon = Daemon::Index;

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

// ---------------------------------------------------------------------------------------------------------------------
// Building a configuration
// ---------------------------------------------------------------------------------------------------------------------

/// A typed configuration the generic [`build`] fills in.
trait Target: Default {
    /// Which daemon's options apply.
    const DAEMON: Daemon;

    /// Applies one checked value; returns a warning to show the user, if any.
    fn set(
        &mut self,
        spec: &'static OptionSpec,
        value: &Value<'_>,
    ) -> Result<Option<String>, Problem>;

    /// Rules spanning several options, after every entry is applied.
    fn finish(&mut self, entries: &[Entry]) -> Result<(), ConfigError>;
}

/// Defaults, then every entry in order, then the cross-option rules.
fn build<T: Target>(entries: &[Entry]) -> Result<(T, Vec<String>), ConfigError> {
    check_duplicates(entries)?;
    let mut config = T::default();
    let mut warnings = Vec::new();
    for entry in entries {
        let Some(spec) = spec(T::DAEMON, &entry.name) else {
            return Err(match spec_any(&entry.name) {
                Some(_) => ConfigError::WrongDaemon {
                    location: entry.location.clone(),
                    name: entry.name.clone(),
                    daemon: T::DAEMON,
                },
                None => ConfigError::UnknownOption {
                    location: entry.location.clone(),
                    name: entry.name.clone(),
                },
            });
        };
        let value = parse_value(spec, entry.value.as_deref()).map_err(|p| p.into_error(entry))?;
        if let Some(warning) = config.set(spec, &value).map_err(|p| p.into_error(entry))? {
            warnings.push(format!("{}{warning}", entry.location.prefix()));
        }
    }
    config.finish(entries)?;
    Ok((config, warnings))
}

/// A value checked against its option's [`Kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value<'a> {
    Bool(bool),
    Int(i64),
    /// Text, a choice word, a host list or a netmask list.
    Text(&'a str),
}

/// What is wrong with a value; [`Problem::into_error`] adds the option and location.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Problem {
    Missing,
    Invalid(String),
    Unsupported(String),
    /// The schema has an option the typed config does not handle: a bug, reported rather than panicking.
    Unhandled(&'static str),
}

impl Problem {
    fn into_error(self, entry: &Entry) -> ConfigError {
        let location = entry.location.clone();
        let name = entry.name.clone();
        match self {
            Problem::Missing => ConfigError::MissingValue { location, name },
            Problem::Invalid(expected) => ConfigError::InvalidValue {
                location,
                name,
                value: entry.value.clone().unwrap_or_default(),
                expected,
            },
            Problem::Unsupported(reason) => ConfigError::Unsupported {
                location,
                name,
                reason,
            },
            Problem::Unhandled(option) => ConfigError::Unsupported {
                location,
                name,
                reason: format!(
                    "internal error: option '{option}' is in the schema but not handled"
                ),
            },
        }
    }
}

impl Value<'_> {
    fn flag(&self) -> Result<bool, Problem> {
        match self {
            Value::Bool(b) => Ok(*b),
            _ => Err(Problem::Invalid("true or false".to_owned())),
        }
    }

    fn int<T: TryFrom<i64>>(&self) -> Result<T, Problem> {
        match self {
            Value::Int(i) => {
                T::try_from(*i).map_err(|_| Problem::Invalid("a smaller integer".to_owned()))
            }
            _ => Err(Problem::Invalid("an integer".to_owned())),
        }
    }

    fn millis(&self) -> Result<Duration, Problem> {
        self.int().map(Duration::from_millis)
    }

    fn text(&self) -> Result<&str, Problem> {
        match self {
            Value::Text(t) => Ok(t),
            _ => Err(Problem::Invalid("text".to_owned())),
        }
    }

    fn choice<T>(&self, from_name: fn(&str) -> Option<T>) -> Result<T, Problem> {
        let word = self.text()?;
        from_name(word).ok_or_else(|| Problem::Invalid(format!("a known word, not '{word}'")))
    }
}

/// Checks `raw` against the option's kind. `None` is a bare name: only switches may be given that way.
fn parse_value<'a>(spec: &OptionSpec, raw: Option<&'a str>) -> Result<Value<'a>, Problem> {
    match (spec.kind, raw) {
        (Kind::Switch, None | Some("")) => Ok(Value::Bool(true)),
        (Kind::Switch | Kind::Bool, Some(text)) => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| Problem::Invalid("true or false".to_owned())),
        (_, None) => Err(Problem::Missing),
        (Kind::Int { min, max }, Some(text)) => match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Value::Int(n)),
            Ok(_) => Err(Problem::Invalid(format!("an integer from {min} to {max}"))),
            Err(_) => Err(Problem::Invalid("an integer".to_owned())),
        },
        (Kind::Choice(words), Some(text)) => {
            if words.contains(&text) {
                Ok(Value::Text(text))
            } else {
                Err(Problem::Invalid(format!("one of {}", words.join(", "))))
            }
        }
        (Kind::Text | Kind::HostPorts | Kind::Netmasks, Some(text)) => Ok(Value::Text(text)),
    }
}

/// Boost's boolean words, case-insensitive.
fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A host name: no whitespace, control characters or `:` (a node key is `name:port`, stats.md §3).
fn host_name(v: &Value<'_>, allow_empty: bool) -> Result<String, Problem> {
    let text = v.text()?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == ':' || c == ',';
    if (text.is_empty() && !allow_empty) || text.chars().any(bad) {
        return Err(Problem::Invalid(
            "a host name or address without ':', ',' or spaces".to_owned(),
        ));
    }
    Ok(text.to_owned())
}

/// A single word (version string, secret): no whitespace or control characters, since it travels in a protocol line.
fn token(v: &Value<'_>, allow_empty: bool, expected: &str) -> Result<String, Problem> {
    let text = v.text()?;
    if (text.is_empty() && !allow_empty)
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Problem::Invalid(expected.to_owned()));
    }
    Ok(text.to_owned())
}

fn ip_address(v: &Value<'_>) -> Result<IpAddr, Problem> {
    v.text()?
        .parse()
        .map_err(|_| Problem::Invalid("an IP address".to_owned()))
}

/// `index-servers` as Flare reads it (regex `,?\s*([^,:\s]+):(\d+)`): entries without a numeric `:port` are skipped,
/// and no valid entry at all is an error (config.md §5.1). A port outside 1..=65535 is an error.
fn index_servers(text: &str) -> Result<Vec<IndexServer>, Problem> {
    let expected = || Problem::Invalid("host:port[,host:port...]".to_owned());
    let mut servers = Vec::new();
    for piece in text.split(',').map(str::trim) {
        let Some((host, port)) = piece.split_once(':') else {
            continue;
        };
        let host_ok =
            !host.is_empty() && !host.chars().any(|c| c.is_whitespace() || c.is_control());
        if !host_ok || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(expected)?;
        servers.push(IndexServer {
            name: host.to_owned(),
            port,
        });
    }
    if servers.is_empty() {
        return Err(expected());
    }
    Ok(servers)
}

/// `internal-netmask`: CIDRs separated by commas (spaces allowed around them). Empty = any address.
fn netmask_list(text: &str) -> Result<Vec<Cidr>, Problem> {
    text.split(',')
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            Cidr::parse(piece)
                .ok_or_else(|| Problem::Invalid("CIDRs such as 10.0.0.0/8,::1/128".to_owned()))
        })
        .collect()
}

/// `index-db`: only the embedded file coordinator exists (decisions.md #4).
fn index_db(text: &str) -> Result<String, Problem> {
    if text.starts_with("zookeeper://") {
        return Err(Problem::Unsupported(
            "the ZooKeeper coordinator is not supported; use file://<dir> (the default is file://<data-dir>)".to_owned(),
        ));
    }
    match text.strip_prefix("file://") {
        Some(dir) if !dir.is_empty() => Ok(text.to_owned()),
        _ => Err(Problem::Invalid("file://<dir>".to_owned())),
    }
}

fn require_data_dir(data_dir: &str) -> Result<(), ConfigError> {
    if data_dir.is_empty() {
        return Err(ConfigError::Required {
            name: "data-dir".to_owned(),
            hint: String::new(),
        });
    }
    Ok(())
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The last entry of an option (after [`merge`] there is at most one).
fn find<'a>(entries: &'a [Entry], name: &str) -> Option<&'a Entry> {
    entries.iter().rev().find(|e| e.name == name)
}

fn position(entries: &[Entry], entry: &Entry) -> usize {
    entries
        .iter()
        .position(|e| std::ptr::eq(e, entry))
        .unwrap_or(0)
}

fn canonical(name: &str) -> &str {
    match spec_any(name) {
        Some(spec) => spec.canonical(),
        None => name,
    }
}

/// The two spellings of "which index servers" (config.md §5.1), which exclude each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IndexServerForm {
    List,
    Single,
    Other,
}

fn index_server_group(name: &str) -> IndexServerForm {
    match name {
        "index-servers" => IndexServerForm::List,
        "index-server-name" | "index-server-port" => IndexServerForm::Single,
        _ => IndexServerForm::Other,
    }
}

/// An option given twice is an error (config.md §1); an alias and its option count as the same option.
fn check_duplicates(entries: &[Entry]) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<&str, &Entry> = BTreeMap::new();
    for entry in entries {
        if let Some(first) = seen.insert(canonical(&entry.name), entry) {
            return Err(if first.name == entry.name {
                ConfigError::Duplicate {
                    location: entry.location.clone(),
                    name: entry.name.clone(),
                    first: first.location.clone(),
                }
            } else {
                ConfigError::Conflict {
                    location: entry.location.clone(),
                    name: entry.name.clone(),
                    other: first.name.clone(),
                }
            });
        }
    }
    Ok(())
}

fn pairs_to_entries(pairs: &[(String, String)]) -> Vec<Entry> {
    pairs
        .iter()
        .map(|(name, value)| Entry::new(name.clone(), value.clone(), Location::Unknown))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------------------

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

fn netmasks(list: &[Cidr]) -> String {
    list.iter()
        .map(Cidr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The secret itself, or `***` when set and not to be revealed.
fn secret(secret: &str, reveal: bool) -> String {
    match (secret.is_empty(), reveal) {
        (false, false) => "***".to_owned(),
        _ => secret.to_owned(),
    }
}

fn owned(pairs: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    pairs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
}

fn settings_of(pairs: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(n, v)| (n.replace('-', "_"), v))
        .collect()
}

/// `name:` padded to `width`, then the value; a label longer than the column gets one space (Flare's layout:
/// a label of exactly `width` characters, such as `reconstruction_interval:`, touches its value).
fn show_line(width: usize, name: &str, value: &str) -> String {
    let label = format!("{name}:");
    if label.len() > width {
        format!("{label} {value}")
    } else {
        format!("{label:<width$}{value}")
    }
}

/// Flare's lines in `order` (a label is an option name with underscores unless `special` renders it), then every
/// other option not `hidden`, in schema order.
fn show(
    width: usize,
    order: &[&str],
    pairs: Vec<(&'static str, String)>,
    special: impl Fn(&str) -> Option<String>,
    hidden: impl Fn(&str) -> bool,
) -> Vec<String> {
    let by_name: BTreeMap<String, &str> = pairs
        .iter()
        .map(|(n, v)| (n.replace('-', "_"), v.as_str()))
        .collect();
    let mut lines: Vec<String> = order
        .iter()
        .map(|label| {
            let value = special(label)
                .unwrap_or_else(|| by_name.get(*label).copied().unwrap_or_default().to_owned());
            show_line(width, label, &value)
        })
        .collect();
    lines.extend(
        pairs
            .iter()
            .filter(|(name, _)| !hidden(name) && !order.contains(&name.replace('-', "_").as_str()))
            .map(|(name, value)| show_line(width, &name.replace('-', "_"), value)),
    );
    lines
}

/// Options whose rendered values differ, by the schema's dynamic flag.
fn changes(
    daemon: Daemon,
    old: Vec<(&'static str, String)>,
    new: Vec<(&'static str, String)>,
) -> Changes {
    let mut result = Changes::default();
    for ((name, before), (_, after)) in old.into_iter().zip(new) {
        if before == after {
            continue;
        }
        if spec(daemon, name).is_some_and(|s| s.dynamic) {
            result.applied.push(name);
        } else {
            result.ignored.push(name);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAREI_SAMPLE: &str = "\
data-dir = /var/lib/flarei
log-facility = local0
max-connection = 256
monitor-threshold = 3
monitor-interval = 1
server-name = 10.0.0.1
server-port = 12120
thread-pool-size = 8
";

    const FLARED_SAMPLE: &str = "\
data-dir = /var/lib/flared
index-servers = 10.0.0.1:12120
log-facility = local1
max-connection = 256
mutex-slot = 32
proxy-concurrency = 2
server-name = 10.0.0.5
server-port = 12121
storage-type = tch
thread-pool-size = 16
";

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn node_file(text: &str) -> Result<(NodeConfig, Vec<String>), ConfigError> {
        NodeConfig::from_entries(&parse_file(text, "flared.conf")?)
    }

    fn index_file(text: &str) -> Result<(IndexConfig, Vec<String>), ConfigError> {
        IndexConfig::from_entries(&parse_file(text, "flarei.conf")?)
    }

    fn node_err(text: &str) -> String {
        match node_file(text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const NODE_MIN: &str = "data-dir = /d\nindex-servers = i:12120\n";

    #[test]
    fn flare_index_sample_loads_unchanged() {
        let (c, warnings) = index_file(FLAREI_SAMPLE).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.data_dir, "/var/lib/flarei");
        assert_eq!(c.log_facility, LogFacility::Local0);
        assert_eq!(c.max_connection, 256);
        assert_eq!(c.monitor_threshold, 3);
        assert_eq!(c.monitor_interval, Duration::from_secs(1));
        assert_eq!(c.server_name, "10.0.0.1");
        assert_eq!(c.server_port, 12120);
        assert_eq!(c.thread_pool_size, 8);
        assert_eq!(c.index_db, "file:///var/lib/flarei");
    }

    #[test]
    fn flare_node_sample_loads_unchanged_with_a_storage_type_warning() {
        let (c, warnings) = node_file(FLARED_SAMPLE).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("flared.conf:9: option 'storage-type': 'tch'"),
            "{}",
            warnings[0]
        );
        assert_eq!(c.storage_type, StorageType::RocksDb);
        assert_eq!(c.data_dir, "/var/lib/flared");
        assert_eq!(
            c.index_servers,
            vec![IndexServer {
                name: "10.0.0.1".into(),
                port: 12120
            }]
        );
        assert_eq!(c.log_facility, LogFacility::Local1);
        assert_eq!(c.max_connection, 256);
        assert_eq!(c.mutex_slot, 32);
        assert_eq!(c.proxy_concurrency, 2);
        assert_eq!(c.cluster_replication_concurrency, 2);
        assert_eq!(c.server_name, "10.0.0.5");
        assert_eq!(c.server_port, 12121);
        assert_eq!(c.thread_pool_size, 16);
    }

    #[test]
    fn shipped_samples_load_without_warnings() {
        let (node, warnings) = node_file(include_str!("../../../etc/flared.conf")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(node.storage_type, StorageType::RocksDb);
        let (index, warnings) = index_file(include_str!("../../../etc/flarei.conf")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(index.server_port, 12120);
    }

    #[test]
    fn comments_blank_lines_sections_and_line_endings() {
        let text = "\u{feff}# a comment\r\n\r\n[flared]\r\n  data-dir=/d   # trailing comment\r\nindex-servers =i:1#x\n\
                    \tmax-connection\t=\t7\t\n#daemonize\n";
        let entries = parse_file(text, "f").unwrap();
        let names: Vec<_> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("data-dir", Some("/d")),
                ("index-servers", Some("i:1")),
                ("max-connection", Some("7"))
            ]
        );
        assert_eq!(entries[2].location.line(), Some(6));
        let (c, _) = NodeConfig::from_entries(&entries).unwrap();
        assert_eq!(c.max_connection, 7);
        assert!(!c.daemonize, "a commented-out switch is off");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert_eq!(
            parse_file("data-dir = /d\n[section\n", "x.conf")
                .unwrap_err()
                .to_string(),
            "x.conf:2: syntax error: unterminated section header '[section'"
        );
        assert_eq!(
            parse_file("= 3\n", "x.conf").unwrap_err().to_string(),
            "x.conf:1: syntax error: missing option name before '='"
        );
    }

    #[test]
    fn unknown_options_are_rejected_with_their_name() {
        assert_eq!(
            node_err("data-dir = /d\n\n# x\nfoo = 1\n"),
            "flared.conf:4: unknown option 'foo'"
        );
        assert_eq!(
            node_err("Data-Dir = /d\n"),
            "flared.conf:1: unknown option 'Data-Dir'"
        );
        let err =
            IndexConfig::from_pairs(&pairs(&[("data-dir", "/d"), ("nope", "1")])).unwrap_err();
        assert_eq!(err.to_string(), "unknown option 'nope'");
        assert_eq!(err.option_name(), Some("nope"));
    }

    #[test]
    fn options_of_the_other_daemon_are_rejected() {
        assert_eq!(
            index_file("data-dir = /d\nback-log = 3\n")
                .unwrap_err()
                .to_string(),
            "flarei.conf:2: option 'back-log' is not an option of flarei"
        );
        assert_eq!(
            node_err("data-dir = /d\nmonitor-interval = 3\n"),
            "flared.conf:2: option 'monitor-interval' is not an option of flared"
        );
    }

    #[test]
    fn duplicates_are_rejected() {
        let err = parse_file(
            "data-dir = /a\nmax-connection = 1\ndata-dir = /b\n",
            "f.conf",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.conf:3: option 'data-dir' given twice (first at f.conf:1)"
        );
        let err =
            parse_file("gat-flare-syntax = true\ngat-compat = flare\n", "f.conf").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.conf:2: option 'gat-compat' cannot be combined with 'gat-flare-syntax'"
        );
        let err =
            NodeConfig::from_pairs(&pairs(&[("data-dir", "/a"), ("data-dir", "/b")])).unwrap_err();
        assert!(matches!(err, ConfigError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn switch_forms() {
        for (line, on) in [
            ("daemonize", true),
            ("daemonize =", true),
            ("daemonize = true", true),
            ("daemonize = TRUE", true),
            ("daemonize = yes", true),
            ("daemonize = on", true),
            ("daemonize = 1", true),
            ("daemonize = false", false),
            ("daemonize = no", false),
            ("daemonize = off", false),
            ("daemonize = 0", false),
        ] {
            let (c, _) = node_file(&format!("{NODE_MIN}{line}\n")).unwrap();
            assert_eq!(c.daemonize, on, "{line}");
        }
        let (c, _) = node_file(&format!("{NODE_MIN}storage-large\n")).unwrap();
        assert!(c.storage_large);
        let (c, _) = node_file(&format!("{NODE_MIN}mysql-replication = off\n")).unwrap();
        assert_eq!(c.mysql_replication_port, 12122);
        assert_eq!(
            node_err(&format!("{NODE_MIN}daemonize = maybe\n")),
            "flared.conf:3: option 'daemonize': invalid value 'maybe' (expected true or false)"
        );
    }

    #[test]
    fn booleans() {
        for (value, expected) in [
            ("true", true),
            ("1", true),
            ("yes", true),
            ("false", false),
            ("0", false),
        ] {
            let (c, _) = node_file(&format!("{NODE_MIN}time-watcher-enabled = {value}\n")).unwrap();
            assert_eq!(c.time_watcher_enabled, expected, "{value}");
        }
        assert_eq!(
            node_err(&format!("{NODE_MIN}cluster-replication\n")),
            "flared.conf:3: option 'cluster-replication' needs a value"
        );
        assert_eq!(
            node_err(&format!("{NODE_MIN}gat-flare-syntax = 2\n")),
            "flared.conf:3: option 'gat-flare-syntax': invalid value '2' (expected true or false)"
        );
    }

    #[test]
    fn bad_integers() {
        assert_eq!(
            index_file("data-dir = /d\nmonitor-interval = abc\n")
                .unwrap_err()
                .to_string(),
            "flarei.conf:2: option 'monitor-interval': invalid value 'abc' (expected an integer)"
        );
        assert_eq!(
            node_err(&format!("{NODE_MIN}server-port = 70000\n")),
            "flared.conf:3: option 'server-port': invalid value '70000' (expected an integer from 1 to 65535)"
        );
        assert_eq!(
            node_err(&format!("{NODE_MIN}max-key-length = 8192\n")),
            "flared.conf:3: option 'max-key-length': invalid value '8192' (expected an integer from 1 to 8191)"
        );
        assert_eq!(
            node_err(&format!("{NODE_MIN}max-item-size = 2147483648\n")),
            "flared.conf:3: option 'max-item-size': invalid value '2147483648' (expected an integer from 1 to \
             2147483647)"
        );
        assert!(node_err(&format!("{NODE_MIN}back-log = -1\n")).contains("from 0 to"));
        assert!(
            node_err(&format!("{NODE_MIN}back-log = 99999999999999999999999\n"))
                .contains("an integer")
        );
        assert!(node_err(&format!("{NODE_MIN}back-log = 1.5\n")).contains("expected an integer"));
        assert!(node_err(&format!("{NODE_MIN}back-log =\n")).contains("expected an integer"));
    }

    #[test]
    fn index_servers_rules() {
        let (c, _) = node_file("data-dir = /d\nindex-servers = a, b:1 ,c:x, :5, d:2\n").unwrap();
        let servers: Vec<_> = c.index_servers.iter().map(ToString::to_string).collect();
        assert_eq!(
            servers,
            ["b:1", "d:2"],
            "entries without a numeric port are skipped"
        );

        assert_eq!(
            node_err("data-dir = /d\nindex-servers = a,b\n"),
            "flared.conf:2: option 'index-servers': invalid value 'a,b' (expected host:port[,host:port...])"
        );
        assert!(node_err("data-dir = /d\nindex-servers = a:0\n").contains("invalid value 'a:0'"));
        assert!(node_err("data-dir = /d\nindex-servers = a:65536\n").contains("invalid value"));
        assert_eq!(
            node_err("data-dir = /d\nindex-servers = a:1\nindex-server-name = b\n"),
            "flared.conf:3: option 'index-server-name' cannot be combined with 'index-servers'"
        );
        assert_eq!(
            node_err("data-dir = /d\nindex-server-port = 5\nindex-servers = a:1\n"),
            "flared.conf:3: option 'index-servers' cannot be combined with 'index-server-port'"
        );
        let (standalone, _) = node_file("data-dir = /d\n").unwrap();
        assert!(
            standalone.index_servers.is_empty(),
            "no index server: standalone node"
        );
        assert_eq!(
            node_err("data-dir = /d\nindex-server-port = 1\n"),
            "option 'index-server-name' is required (or give 'index-servers')"
        );

        let (c, _) = node_file("data-dir = /d\nindex-server-name = idx\n").unwrap();
        assert_eq!(
            c.index_servers,
            vec![IndexServer {
                name: "idx".into(),
                port: 12120
            }]
        );
        let (c, _) =
            node_file("data-dir = /d\nindex-server-name = idx\nindex-server-port = 13000\n")
                .unwrap();
        assert_eq!(
            c.index_servers,
            vec![IndexServer {
                name: "idx".into(),
                port: 13000
            }]
        );
        assert!(
            node_err("data-dir = /d\nindex-server-name = a:b\n").contains("invalid value 'a:b'")
        );
    }

    #[test]
    fn command_line_index_server_form_replaces_the_files() {
        let file = parse_file(
            "data-dir = /d\nindex-server-name = old\nindex-server-port = 1\n",
            "f",
        )
        .unwrap();
        let cli = vec![Entry::new("index-servers", "new:2", Location::CommandLine)];
        let (c, _) = NodeConfig::from_entries(&merge(&file, &cli)).unwrap();
        assert_eq!(
            c.index_servers,
            vec![IndexServer {
                name: "new".into(),
                port: 2
            }]
        );

        let file = parse_file("data-dir = /d\nindex-servers = old:1\n", "f").unwrap();
        let cli = vec![Entry::new(
            "index-server-name",
            "new",
            Location::CommandLine,
        )];
        let (c, _) = NodeConfig::from_entries(&merge(&file, &cli)).unwrap();
        assert_eq!(
            c.index_servers,
            vec![IndexServer {
                name: "new".into(),
                port: 12120
            }]
        );

        let file = parse_file("data-dir = /d\nindex-server-name = keep\n", "f").unwrap();
        let cli = vec![Entry::new("index-server-port", "7", Location::CommandLine)];
        let (c, _) = NodeConfig::from_entries(&merge(&file, &cli)).unwrap();
        assert_eq!(
            c.index_servers,
            vec![IndexServer {
                name: "keep".into(),
                port: 7
            }]
        );
    }

    #[test]
    fn merge_replaces_same_option_and_alias() {
        let file = parse_file(
            "data-dir = /d\nmax-connection = 5\ngat-flare-syntax = true\n",
            "f",
        )
        .unwrap();
        let cli = vec![
            Entry::new("max-connection", "9", Location::CommandLine),
            Entry::new("gat-compat", "memcached", Location::CommandLine),
            Entry::new("index-servers", "i:1", Location::CommandLine),
        ];
        let merged = merge(&file, &cli);
        assert_eq!(merged.len(), 4);
        let (c, _) = NodeConfig::from_entries(&merged).unwrap();
        assert_eq!(c.max_connection, 9);
        assert!(!c.gat_flare_syntax);
        let err = NodeConfig::from_entries(&merge(
            &cli,
            &[Entry::new("max-connection", "x", Location::CommandLine)],
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "command line: option 'max-connection': invalid value 'x' (expected an integer)"
        );
    }

    #[test]
    fn gat_compat_alias() {
        let (c, _) = node_file(&format!("{NODE_MIN}gat-compat = flare\n")).unwrap();
        assert!(c.gat_flare_syntax);
        let (c, _) = node_file(&format!("{NODE_MIN}gat-compat = memcached\n")).unwrap();
        assert!(!c.gat_flare_syntax);
        assert_eq!(
            node_err(&format!("{NODE_MIN}gat-compat = both\n")),
            "flared.conf:3: option 'gat-compat': invalid value 'both' (expected one of memcached, flare)"
        );
    }

    #[test]
    fn storage_type_mapping() {
        let (c, warnings) = node_file(&format!("{NODE_MIN}storage-type = rocksdb\n")).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(c.storage_type, StorageType::RocksDb);
        for flare in ["tch", "tcb", "kch"] {
            let (c, warnings) = node_file(&format!("{NODE_MIN}storage-type = {flare}\n")).unwrap();
            assert_eq!(c.storage_type, StorageType::RocksDb);
            assert_eq!(warnings.len(), 1);
            assert!(warnings[0].contains("using rocksdb"), "{}", warnings[0]);
        }
        assert_eq!(
            node_err(&format!("{NODE_MIN}storage-type = tcx\n")),
            "flared.conf:3: option 'storage-type': invalid value 'tcx' (expected one of rocksdb, tch, tcb, kch)"
        );
    }

    #[test]
    fn tokyo_cabinet_knobs_are_accepted_with_warnings() {
        let text = format!("{NODE_MIN}storage-ap = 5\nstorage-large\nstorage-cache-size = 10\nstorage-compress = deflate\n");
        let (c, warnings) = node_file(&text).unwrap();
        assert_eq!(c.storage_ap, 5);
        assert!(c.storage_large);
        assert_eq!(c.storage_cache_size, 10);
        assert_eq!(c.storage_compress, StorageCompress::Deflate);
        assert_eq!(
            warnings,
            [
                "flared.conf:3: option 'storage-ap' has no effect with the rocksdb engine (accepted for compatibility)",
                "flared.conf:4: option 'storage-large' has no effect with the rocksdb engine (accepted for compatibility)",
            ]
        );
    }

    #[test]
    fn mysql_replication_is_not_supported() {
        let err = node_err(&format!("{NODE_MIN}mysql-replication\n"));
        assert_eq!(
            err,
            "flared.conf:3: option 'mysql-replication': MySQL replication is not supported by this implementation"
        );
        let (c, warnings) = node_file(&format!("{NODE_MIN}mysql-replication-db = x\n")).unwrap();
        assert_eq!(c.mysql_replication_db, "x");
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn log_facility() {
        let (c, _) = node_file(NODE_MIN).unwrap();
        assert_eq!(c.log_facility, LogFacility::Daemon);
        for name in LogFacility::NAMES {
            let (c, _) = node_file(&format!("{NODE_MIN}log-facility = {name}\n")).unwrap();
            assert_eq!(c.log_facility.as_str(), *name);
        }
        assert!(
            node_err(&format!("{NODE_MIN}log-facility = kern\n")).contains("invalid value 'kern'")
        );
        assert!(node_err(&format!("{NODE_MIN}log-facility =\n")).contains("invalid value ''"));
        assert_eq!(LogFacility::Daemon.syslog_code(), 24);
        assert_eq!(LogFacility::Local7.syslog_code(), 184);
        assert_eq!(LogFacility::Auth.syslog_code(), 32);
        assert_eq!(LogFacility::User.syslog_code(), 8);
    }

    #[test]
    fn data_dir_is_required() {
        assert_eq!(
            node_err("index-servers = a:1\n"),
            "option 'data-dir' is required"
        );
        assert_eq!(
            node_err("data-dir =\nindex-servers = a:1\n"),
            "option 'data-dir' is required"
        );
        assert_eq!(
            index_file("").unwrap_err().to_string(),
            "option 'data-dir' is required"
        );
    }

    #[test]
    fn cluster_replication_rules() {
        let (c, _) = node_file(&format!("{NODE_MIN}proxy-concurrency = 7\n")).unwrap();
        assert_eq!(
            c.cluster_replication_concurrency, 7,
            "defaults to proxy-concurrency"
        );
        let (c, _) = node_file(&format!(
            "{NODE_MIN}proxy-concurrency = 7\ncluster-replication-concurrency = 3\n"
        ))
        .unwrap();
        assert_eq!(c.cluster_replication_concurrency, 3);
        assert_eq!(
            node_err(&format!("{NODE_MIN}cluster-replication = true\n")),
            "option 'cluster-replication-server-name' is required when 'cluster-replication' is on"
        );
        let (c, _) = node_file(&format!(
            "{NODE_MIN}cluster-replication = true\ncluster-replication-server-name = other\n\
             cluster-replication-mode = forward\n"
        ))
        .unwrap();
        assert!(c.cluster_replication);
        assert_eq!(c.cluster_replication_server_name.as_deref(), Some("other"));
        assert_eq!(c.cluster_replication_mode, ClusterReplicationMode::Forward);
        assert!(
            node_err(&format!("{NODE_MIN}cluster-replication-mode = both\n"))
                .contains("duplicate, forward")
        );
    }

    #[test]
    fn index_db() {
        let (c, _) = index_file("data-dir = /d\nindex-db = file:///x\n").unwrap();
        assert_eq!(c.index_db, "file:///x");
        let err = index_file("data-dir = /d\nindex-db = zookeeper://h:1/flare\n").unwrap_err();
        assert!(matches!(err, ConfigError::Unsupported { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("ZooKeeper coordinator is not supported"));
        assert!(index_file("data-dir = /d\nindex-db = file://\n")
            .unwrap_err()
            .to_string()
            .contains("file://<dir>"));
    }

    #[test]
    fn index_choices_and_key_hash() {
        let (c, _) =
            index_file("data-dir = /d\nkey-hash-algorithm = jenkins\npartition-type = modular\n")
                .unwrap();
        assert_eq!(c.key_hash_algorithm, KeyHashAlgorithm::Jenkins);
        for bad in ["bitshift", "adler32", "murmur"] {
            let err =
                index_file(&format!("data-dir = /d\nkey-hash-algorithm = {bad}\n")).unwrap_err();
            assert!(
                err.to_string()
                    .contains("expected one of simple, crc32, jenkins"),
                "{err}"
            );
        }
    }

    #[test]
    fn additions() {
        let text = format!(
            "{NODE_MIN}max-item-size = 1024\nmax-key-length = 250\nmax-line-length = 2048\nversion-string = flare-1.3.4\n\
             internal-netmask = 10.0.0.0/8, 192.168.1.1 ,::1/128\ncluster-secret = s3cret\nstorage-sync = group\n\
             proxy-timeout = 250\nmetrics-port = 9100\nmetrics-address = ::\n"
        );
        let (c, _) = node_file(&text).unwrap();
        assert_eq!(
            c.limits(),
            Limits {
                line_max: 2048,
                key_max: 250,
                item_size_max: 1024,
                ..Limits::default()
            }
        );
        assert_eq!(c.version_string, "flare-1.3.4");
        assert_eq!(c.internal_netmask.len(), 3);
        assert_eq!(c.internal_netmask[1].prefix, 32);
        assert_eq!(c.storage_sync, StorageSync::Group);
        assert_eq!(c.proxy_timeout, Duration::from_millis(250));
        assert_eq!(c.metrics_address, "::".parse::<IpAddr>().unwrap());
        assert!(
            node_err(&format!("{NODE_MIN}version-string = flare 2\n")).contains("without spaces")
        );
        assert!(node_err(&format!("{NODE_MIN}internal-netmask = 10.0.0.0/33\n")).contains("CIDRs"));
        assert!(
            node_err(&format!("{NODE_MIN}metrics-address = localhost\n")).contains("an IP address")
        );
        assert!(node_err(&format!("{NODE_MIN}storage-sync = sometimes\n"))
            .contains("none, group, always"));
    }

    #[test]
    fn the_secret_is_redacted_in_debug_output() {
        let (c, _) = node_file(&format!("{NODE_MIN}cluster-secret = hunter2\n")).unwrap();
        assert_eq!(c.cluster_secret.expose(), "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let settings: BTreeMap<_, _> = c.settings().into_iter().collect();
        assert_eq!(settings["cluster_secret"], "***");
        assert!(c
            .to_pairs()
            .contains(&("cluster-secret".to_owned(), "hunter2".to_owned())));
    }

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    /// config.md's tables (§4, §5, §8), with our documented deviations: `log-facility` defaults to `daemon`
    /// (§3 \[Improve\]) and `storage-type` to our engine (§5.3 "For us"); `version-string` is the bare version (docs/compatibility.md);
    /// `max-connection` is memcached's 1024, not Flare's 128 (docs/compatibility.md).
    #[test]
    fn defaults_match_config_md() {
        use Daemon::{Index, Node};
        let expected: &[(Daemon, &str, &str)] = &[
            (Index, "data-dir", ""),
            (Index, "daemonize", "false"),
            (Index, "log-facility", "daemon"),
            (Index, "max-connection", "1024"),
            (Index, "monitor-threshold", "3"),
            (Index, "monitor-interval", "5"),
            (Index, "monitor-read-timeout", "1000"),
            (Index, "partition-size", "1024"),
            (Index, "partition-type", "modular"),
            (Index, "partition-modular-hint", "1"),
            (Index, "partition-modular-virtual", "4096"),
            (Index, "key-hash-algorithm", "simple"),
            (Index, "server-name", ""),
            (Index, "server-port", "12120"),
            (Index, "server-socket", ""),
            (Index, "stack-size", "128"),
            (Index, "thread-pool-size", "5"),
            (Index, "index-db", ""),
            (Index, "net-read-timeout", "600"),
            (Node, "data-dir", ""),
            (Node, "daemonize", "false"),
            (Node, "log-facility", "daemon"),
            (Node, "server-name", ""),
            (Node, "server-port", "12121"),
            (Node, "server-socket", ""),
            (Node, "back-log", "30"),
            (Node, "max-connection", "1024"),
            (Node, "net-read-timeout", "600"),
            (Node, "stack-size", "128"),
            (Node, "thread-pool-size", "5"),
            (Node, "index-servers", ""),
            (Node, "index-server-name", ""),
            (Node, "index-server-port", "12120"),
            (Node, "proxy-concurrency", "2"),
            (Node, "replication-type", "async"),
            (Node, "reconstruction-interval", "0"),
            (Node, "reconstruction-bwlimit", "0"),
            (Node, "noreply-window-limit", "0"),
            (Node, "max-total-thread-queue", "0"),
            (Node, "proxy-prior-netmask", "0"),
            (Node, "mutex-slot", "64"),
            (Node, "storage-type", "rocksdb"),
            (Node, "storage-ap", "4"),
            (Node, "storage-fp", "10"),
            (Node, "storage-bucket-size", "131071"),
            (Node, "storage-cache-size", "65536"),
            (Node, "storage-compress", "none"),
            (Node, "storage-large", "false"),
            (Node, "storage-lmemb", "128"),
            (Node, "storage-nmemb", "256"),
            (Node, "storage-dfunit", "0"),
            (Node, "time-watcher-enabled", "false"),
            (Node, "time-watcher-polling-interval-msec", "0"),
            (Node, "storage-access-watch-threshold-warn-msec", "0"),
            (Node, "storage-access-watch-threshold-ping-ng-msec", "0"),
            (Node, "cluster-replication", "false"),
            (Node, "cluster-replication-server-name", ""),
            (Node, "cluster-replication-server-port", "12121"),
            (Node, "cluster-replication-concurrency", ""),
            (Node, "cluster-replication-mode", "duplicate"),
            (Node, "mysql-replication", "false"),
            (Node, "mysql-replication-port", "12122"),
            (Node, "mysql-replication-id", "19790217"),
            (Node, "mysql-replication-db", "flare"),
            (Node, "mysql-replication-table", "flare"),
            (Node, "max-item-size", "67108864"),
            (Node, "max-key-length", "8191"),
            (Node, "version-string", "2.0.0"),
            (Node, "gat-flare-syntax", "false"),
            (Node, "gat-compat", "memcached"),
            (Node, "incr-flare-semantics", "false"),
            (Node, "binary-incr-create", "true"),
            (Node, "allow-client-version", "true"),
            (Node, "cluster-secret", ""),
            (Node, "internal-netmask", ""),
            (Node, "tombstone-ttl", "3600"),
            (Node, "expiry-sweep-interval", "60"),
            (Node, "storage-sync", "none"),
            (Node, "storage-block-cache", "64"),
            (Node, "storage-item-cache", "256"),
            (Node, "storage-write-buffer", "32"),
            (Node, "max-line-length", "65536"),
            (Node, "proxy-timeout", "1000"),
            (Node, "master-lease", "3000"),
            (Index, "master-lease", "3000"),
            (Node, "replication-backlog", "100000"),
            (Node, "replication-failure-threshold", "0"),
            (Node, "metrics-port", "0"),
            (Node, "metrics-address", "127.0.0.1"),
            (Index, "version-string", "2.0.0"),
            (Index, "cluster-secret", ""),
            (Index, "internal-netmask", ""),
            (Index, "max-line-length", "65536"),
            (Index, "auto-activate", "false"),
            (Index, "metrics-port", "0"),
            (Index, "metrics-address", "127.0.0.1"),
        ];
        for (daemon, name, default) in expected {
            let spec =
                spec(*daemon, name).unwrap_or_else(|| panic!("{daemon} has no option {name}"));
            assert_eq!(spec.default, *default, "default of {name} on {daemon}");
        }
        for daemon in [Node, Index] {
            let listed = expected.iter().filter(|(d, _, _)| *d == daemon).count();
            assert_eq!(
                listed,
                options(daemon).count(),
                "every option of {daemon} is in the table"
            );
        }
    }

    /// The schema's default strings, applied like file values, give exactly `Default` (the hand-written defaults
    /// cannot drift from the table).
    #[test]
    fn schema_defaults_equal_default_impls() {
        fn apply<T: Target + PartialEq + fmt::Debug>() {
            let mut config = T::default();
            for spec in options(T::DAEMON).filter(|s| !s.default.is_empty()) {
                let value = parse_value(spec, Some(spec.default)).unwrap();
                config.set(spec, &value).unwrap();
            }
            assert_eq!(config, T::default());
        }
        apply::<NodeConfig>();
        apply::<IndexConfig>();
        assert_eq!(NodeConfig::default().limits(), Limits::default());
    }

    #[test]
    fn schema_is_consistent() {
        for daemon in [Daemon::Node, Daemon::Index] {
            let names: Vec<_> = options(daemon).map(|s| s.name).collect();
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "a name appears once per daemon");
            for spec in options(daemon) {
                assert!(!spec.help.is_empty(), "{} has help", spec.name);
                assert!(!spec.name.contains('_'), "{}", spec.name);
                if let Some(target) = spec.alias_of {
                    assert!(
                        self::spec(daemon, target).is_some(),
                        "alias target {target}"
                    );
                }
                if let Kind::Choice(words) = spec.kind {
                    assert!(
                        words.contains(&spec.default),
                        "{} default is a choice",
                        spec.name
                    );
                }
            }
        }
    }

    fn node_with(extra: &[(&str, &str)]) -> NodeConfig {
        let mut list = pairs(&[
            ("data-dir", "/d"),
            ("index-servers", "i:1"),
            ("cluster-replication-server-name", "dst"),
            ("cluster-replication-concurrency", "2"),
        ]);
        for (name, value) in extra {
            list.retain(|(n, _)| n != name);
            list.push((name.to_string(), value.to_string()));
        }
        NodeConfig::from_pairs(&list).unwrap().0
    }

    #[test]
    fn to_pairs_rebuild_the_same_config() {
        let (c, _) = node_file(&format!(
            "{FLARED_SAMPLE}cluster-secret = x\ninternal-netmask = 10.0.0.1/8\nreconstruction-interval = 7\n\
             cluster-replication = true\ncluster-replication-server-name = o\nserver-socket = /s\n"
        ))
        .unwrap();
        let (again, _) = NodeConfig::from_pairs(&c.to_pairs()).unwrap();
        assert_eq!(again, c);
        let (i, _) = index_file(FLAREI_SAMPLE).unwrap();
        let (again, _) = IndexConfig::from_pairs(&i.to_pairs()).unwrap();
        assert_eq!(again, i);
    }

    #[test]
    fn settings_cover_every_option_in_schema_order() {
        let excluded = ["index-server-name", "index-server-port", "gat-compat"];
        let c = node_with(&[("cluster-secret", "hush")]);
        let names: Vec<_> = c.settings().into_iter().map(|(n, _)| n).collect();
        let expected: Vec<_> = options(Daemon::Node)
            .filter(|s| !excluded.contains(&s.name))
            .map(OptionSpec::setting_name)
            .collect();
        assert_eq!(names, expected);
        let settings: BTreeMap<_, _> = c.settings().into_iter().collect();
        assert_eq!(
            settings["cluster_secret"], "***",
            "the secret is never shown"
        );
        assert_eq!(settings["net_read_timeout"], "600");
        assert_eq!(settings["daemonize"], "false");
        assert_eq!(settings["index_servers"], "i:1");

        let (i, _) = index_file(FLAREI_SAMPLE).unwrap();
        let names: Vec<_> = i.settings().into_iter().map(|(n, _)| n).collect();
        let expected: Vec<_> = options(Daemon::Index)
            .map(OptionSpec::setting_name)
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn show_variables_node_order_and_layout() {
        let (c, _) = node_file(
            &format!("{FLARED_SAMPLE}index-servers = a:1\n")
                .replace("index-servers = 10.0.0.1:12120\n", ""),
        )
        .unwrap();
        let c = NodeConfig {
            index_servers: vec![
                IndexServer {
                    name: "10.0.0.1".into(),
                    port: 12120,
                },
                IndexServer {
                    name: "10.0.0.2".into(),
                    port: 12120,
                },
            ],
            cluster_secret: Secret::from("hush"),
            ..c
        };
        let lines = c.show_variables("/etc/flared.conf", "/var/lib/flared/flared.pid");
        let labels: Vec<_> = lines.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(&labels[..NODE_SHOW.len()], NODE_SHOW);
        assert_eq!(lines[0], "back_log:               30");
        assert_eq!(lines[1], "config_path:            /etc/flared.conf");
        assert_eq!(
            lines[2],
            "pid_path:               /var/lib/flared/flared.pid"
        );
        assert_eq!(lines[3], "daemonize:              false");
        assert_eq!(
            lines[5],
            "index_server(s):        10.0.0.1:12120, 10.0.0.2:12120"
        );
        assert_eq!(lines[11], "reconstruction_interval:0");
        assert_eq!(lines[13], "replication_type:       async");
        assert_eq!(lines[16], "server_socket:          ");
        assert_eq!(lines[26], "storage_type:           rocksdb");
        assert_eq!(lines[31], "time_watcher_polling_interval_msec: 0");
        assert_eq!(lines[34], "cluster_replication:    0");
        assert_eq!(lines[38], "cluster_replication_mode: duplicate");
        let extras: Vec<_> = labels[NODE_SHOW.len()..].to_vec();
        assert_eq!(extras[..3], ["log_facility", "master_lease", "storage_fp"]);
        assert!(extras.contains(&"max_item_size"));
        assert!(!extras
            .iter()
            .any(|l| l.starts_with("mysql") || *l == "index_servers"));
        assert!(lines.contains(&"cluster_secret:         ***".to_owned()));
        assert!(lines.contains(&"version_string:         2.0.0".to_owned()));
    }

    #[test]
    fn show_variables_index_order_and_layout() {
        let (c, _) = index_file(FLAREI_SAMPLE).unwrap();
        let lines = c.show_variables("/etc/flarei.conf", "/var/lib/flarei/flarei.pid");
        let labels: Vec<_> = lines.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(&labels[..INDEX_SHOW.len()], INDEX_SHOW);
        assert_eq!(lines[0], "config_path:              /etc/flarei.conf");
        assert_eq!(lines[4], "max_connection:           256");
        assert_eq!(lines[10], "partition_modular_virtual:4096");
        assert_eq!(lines[13], "key_hash_algorithm:       simple");
        assert_eq!(lines[INDEX_SHOW.len()], "log_facility:             local0");
        assert_eq!(
            lines[INDEX_SHOW.len() + 1],
            "index_db:                 file:///var/lib/flarei"
        );
        assert_eq!(lines.len(), options(Daemon::Index).count() + 2);
    }

    /// A value different from `current` that the option accepts, if there is one.
    fn other_value(spec: &OptionSpec, current: &str) -> Option<String> {
        let value = match spec.kind {
            Kind::Switch | Kind::Bool => (current != "true").to_string(),
            Kind::Int { min, max } => {
                let n: i64 = current.parse().unwrap();
                if n < max { n + 1 } else { min }.to_string()
            }
            Kind::Choice(words) => words.iter().find(|w| **w != current)?.to_string(),
            Kind::HostPorts => "10.9.9.9:1".into(),
            Kind::Netmasks => "10.0.0.0/8".into(),
            Kind::Text => match spec.name {
                "index-db" => "file:///elsewhere".into(),
                "metrics-address" => "10.0.0.9".into(),
                _ => format!("{current}x"),
            },
        };
        Some(value)
    }

    #[test]
    fn reload_applies_exactly_the_dynamic_options_node() {
        let skip = [
            "index-server-name",
            "index-server-port",
            "gat-compat",
            "storage-type",
            "mysql-replication",
        ];
        let base = node_with(&[]);
        let current: BTreeMap<_, _> = base.to_pairs().into_iter().collect();
        for spec in options(Daemon::Node).filter(|s| !skip.contains(&s.name)) {
            let Some(value) = other_value(spec, &current[spec.name]) else {
                continue;
            };
            let new = node_with(&[(spec.name, &value)]);
            let changes = base.dynamic_changes(&new);
            let (next, reported) = base.reload(&new);
            assert_eq!(changes, reported);
            if spec.dynamic {
                assert_eq!(changes.applied, [spec.name], "{}", spec.name);
                assert!(changes.ignored.is_empty(), "{}", spec.name);
                assert_eq!(next, new, "{} is applied", spec.name);
            } else {
                assert_eq!(changes.ignored, [spec.name], "{}", spec.name);
                assert!(changes.applied.is_empty(), "{}", spec.name);
                assert_eq!(next, base, "{} is kept", spec.name);
                assert_eq!(changes.warnings().len(), 1);
            }
        }
        assert!(base.dynamic_changes(&base).is_empty());
    }

    #[test]
    fn reload_applies_exactly_the_dynamic_options_index() {
        let (base, _) = IndexConfig::from_pairs(&pairs(&[("data-dir", "/d")])).unwrap();
        let current: BTreeMap<_, _> = base.to_pairs().into_iter().collect();
        for spec in options(Daemon::Index) {
            let Some(value) = other_value(spec, &current[spec.name]) else {
                continue;
            };
            let mut list = base.to_pairs();
            list.retain(|(n, _)| n != spec.name);
            list.push((spec.name.to_owned(), value));
            let (new, _) = IndexConfig::from_pairs(&list).unwrap();
            let (next, changes) = base.reload(&new);
            let expected_applied: &[&str] = if spec.dynamic { &[spec.name] } else { &[] };
            assert_eq!(changes.applied, expected_applied, "{}", spec.name);
            assert_eq!(
                next,
                if spec.dynamic { new } else { base.clone() },
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn flare_reload_lists_are_dynamic() {
        // config.md §6.
        for name in [
            "log-facility",
            "max-connection",
            "monitor-threshold",
            "monitor-interval",
            "monitor-read-timeout",
            "thread-pool-size",
        ] {
            assert!(spec(Daemon::Index, name).unwrap().dynamic, "{name}");
        }
        for name in [
            "log-facility",
            "max-connection",
            "net-read-timeout",
            "thread-pool-size",
            "index-servers",
            "index-server-name",
            "index-server-port",
            "reconstruction-interval",
            "reconstruction-bwlimit",
            "replication-type",
            "max-total-thread-queue",
            "noreply-window-limit",
            "time-watcher-enabled",
            "time-watcher-polling-interval-msec",
            "storage-access-watch-threshold-warn-msec",
            "storage-access-watch-threshold-ping-ng-msec",
            "cluster-replication",
            "cluster-replication-server-name",
            "cluster-replication-server-port",
            "cluster-replication-mode",
        ] {
            assert!(spec(Daemon::Node, name).unwrap().dynamic, "{name}");
        }
        assert!(
            !spec(Daemon::Node, "cluster-replication-concurrency")
                .unwrap()
                .dynamic
        );
        assert!(!spec(Daemon::Node, "data-dir").unwrap().dynamic);
    }
}
