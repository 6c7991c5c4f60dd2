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
//! Warnings: an option accepted for compatibility that does nothing here gives a warning string, prefixed with where
//! it was given (`flared.conf:12: `, `command line: `); `flared` and `flarei` log them at start-up (again after a
//! SIGHUP re-reads the file) and `--check-config` prints them. The Tokyo Cabinet tuning and `mysql-replication-*`
//! options warn whenever given; the options parsed but not implemented yet (`schema::NO_EFFECT`, listed in
//! docs/compatibility.md) warn "accepted for compatibility, has no effect" when given a value other than their
//! default.
//!
//! Invariants: every [`Entry`] returned by [`parse_file`] names an option of the schema; a config rebuilt from its own
//! [`NodeConfig::to_pairs`] is equal to it (the fuzz target checks both).
//!
//! Where things are (everything public is re-exported here, so paths are `flare_core::config::X`):
//!
//! - this file: [`Daemon`], [`Location`], [`ConfigError`] and the two constants;
//! - `schema.rs`: [`Kind`], [`Scope`], [`OptionSpec`], [`OPTIONS`], [`spec`], [`spec_any`], [`options`], and the list
//!   of options accepted without effect;
//! - `file.rs`: [`Entry`], [`parse_file`], [`merge`], the duplicate checks and entry look-ups;
//! - `values.rs`: the choice enums ([`LogFacility`], [`ReplicationType`], ...), [`IndexServer`], [`Cidr`],
//!   [`Secret`], and the parsing of one value against its [`Kind`];
//! - `node.rs`: [`NodeConfig`]; `index.rs`: [`IndexConfig`];
//! - `shared.rs`: the options both daemons have, written once for both configs (their defaults, setting, rendering,
//!   reload) by the `shared_options!` macro, which also writes each config's [`DaemonConfig`] implementation;
//! - `build.rs`: the generic build shared by both configs, the no-effect warnings, rendering (`stats settings`,
//!   `show variables`) and [`Changes`];
//! - tests: `<file>/tests.rs` beside each file above (`schema/tests.rs`, `node/tests.rs`, ...); `tests.rs` beside
//!   this file holds the shared samples and helpers and the tests of whole sample files.

use std::fmt;

mod build;
mod file;
mod index;
mod node;
mod schema;
mod shared;
mod values;

pub use build::{Changes, DaemonConfig};
pub use file::{merge, parse_file, Entry};
pub use index::IndexConfig;
pub use node::NodeConfig;
pub use schema::{options, spec, spec_any, Kind, OptionSpec, Scope, OPTIONS};
pub use values::{
    Cidr, ClusterReplicationMode, IndexServer, KeyHashAlgorithm, LogFacility, PartitionType,
    ReplicationType, Secret, StorageCompress, StorageSync, StorageType,
};

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

#[cfg(test)]
mod tests;
