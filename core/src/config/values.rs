//! Value types and value parsing: the choice enums, [`IndexServer`], [`Cidr`], [`Secret`], and the checks that
//! turn one option's text into a typed value ([`Value`], [`Problem`] and the helpers for host names, lists and URIs).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::file::Entry;
use super::schema::{Kind, OptionSpec};
use super::ConfigError;

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
pub struct Secret(pub(super) String);

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

/// A value checked against its option's [`Kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Value<'a> {
    Bool(bool),
    Int(i64),
    /// Text, a choice word, a host list or a netmask list.
    Text(&'a str),
}

/// What is wrong with a value; [`Problem::into_error`] adds the option and location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Problem {
    Missing,
    Invalid(String),
    Unsupported(String),
    /// The schema has an option the typed config does not handle: a bug, reported rather than panicking.
    Unhandled(&'static str),
}

impl Problem {
    pub(super) fn into_error(self, entry: &Entry) -> ConfigError {
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
    pub(super) fn flag(&self) -> Result<bool, Problem> {
        match self {
            Value::Bool(b) => Ok(*b),
            _ => Err(Problem::Invalid("true or false".to_owned())),
        }
    }

    pub(super) fn int<T: TryFrom<i64>>(&self) -> Result<T, Problem> {
        match self {
            Value::Int(i) => {
                T::try_from(*i).map_err(|_| Problem::Invalid("a smaller integer".to_owned()))
            }
            _ => Err(Problem::Invalid("an integer".to_owned())),
        }
    }

    pub(super) fn millis(&self) -> Result<Duration, Problem> {
        self.int().map(Duration::from_millis)
    }

    pub(super) fn text(&self) -> Result<&str, Problem> {
        match self {
            Value::Text(t) => Ok(t),
            _ => Err(Problem::Invalid("text".to_owned())),
        }
    }

    pub(super) fn choice<T>(&self, from_name: fn(&str) -> Option<T>) -> Result<T, Problem> {
        let word = self.text()?;
        from_name(word).ok_or_else(|| Problem::Invalid(format!("a known word, not '{word}'")))
    }
}

/// Checks `raw` against the option's kind. `None` is a bare name: only switches may be given that way.
pub(super) fn parse_value<'a>(
    spec: &OptionSpec,
    raw: Option<&'a str>,
) -> Result<Value<'a>, Problem> {
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
pub(super) fn host_name(v: &Value<'_>, allow_empty: bool) -> Result<String, Problem> {
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
pub(super) fn token(v: &Value<'_>, allow_empty: bool, expected: &str) -> Result<String, Problem> {
    let text = v.text()?;
    if (text.is_empty() && !allow_empty)
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Problem::Invalid(expected.to_owned()));
    }
    Ok(text.to_owned())
}

pub(super) fn ip_address(v: &Value<'_>) -> Result<IpAddr, Problem> {
    v.text()?
        .parse()
        .map_err(|_| Problem::Invalid("an IP address".to_owned()))
}

/// `index-servers` as Flare reads it (regex `,?\s*([^,:\s]+):(\d+)`): entries without a numeric `:port` are skipped,
/// and no valid entry at all is an error (config.md §5.1). A port outside 1..=65535 is an error.
pub(super) fn index_servers(text: &str) -> Result<Vec<IndexServer>, Problem> {
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
pub(super) fn netmask_list(text: &str) -> Result<Vec<Cidr>, Problem> {
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
pub(super) fn index_db(text: &str) -> Result<String, Problem> {
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

pub(super) fn require_data_dir(data_dir: &str) -> Result<(), ConfigError> {
    if data_dir.is_empty() {
        return Err(ConfigError::Required {
            name: "data-dir".to_owned(),
            hint: String::new(),
        });
    }
    Ok(())
}

pub(super) fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests;
