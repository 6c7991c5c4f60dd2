//! Building and rendering, shared by [`NodeConfig`](super::NodeConfig) and [`IndexConfig`](super::IndexConfig): the
//! [`Target`] trait and the generic [`build`] (defaults, then every entry, then the cross-option rules), the
//! "accepted for compatibility" warnings, the `stats settings` / `show variables` rendering and the reload
//! [`Changes`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::file::{check_duplicates, pairs_to_entries, Entry};
use super::schema::{options, spec, spec_any, OptionSpec, NO_EFFECT};
use super::shared::Shared;
use super::values::{parse_value, Cidr, Problem, Value};
use super::{ConfigError, Daemon};

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

/// What the two daemons' configurations share, so that loading, rendering and reloading are written once for both
/// ([`NodeConfig`](super::NodeConfig) and [`IndexConfig`](super::IndexConfig); `flare_runtime::cli` and the daemons'
/// start-up are generic over it). The provided methods derive everything from [`DaemonConfig::pairs`].
pub trait DaemonConfig: Clone + Default + Sized {
    /// Which daemon's options apply.
    const DAEMON: Daemon;

    /// Builds a configuration from entries (from [`parse_file`](super::parse_file), [`merge`](super::merge)d with
    /// the command line). Returns the configuration and warnings (options accepted for compatibility that have no
    /// effect, Flare storage types mapped to RocksDB), each prefixed with where the option was given.
    fn from_entries(entries: &[Entry]) -> Result<(Self, Vec<String>), ConfigError>;

    /// The option values in schema order, as a file would give them; the cluster secret is masked unless
    /// `reveal_secret`.
    fn pairs(&self, reveal_secret: bool) -> Vec<(&'static str, String)>;

    /// The configuration after a SIGHUP that re-read `new`: dynamic options from `new`, everything else kept from
    /// `self` (config.md §6), with the changes (log a warning for each [`Changes::ignored`]).
    fn reload(&self, new: &Self) -> (Self, Changes);

    /// `show variables` lines (stats.md §5): Flare's list in Flare's order and spacing, then the options Flare does
    /// not show (schema order). `config_path` and `pid_path` are the process's paths (empty when there is no config
    /// file).
    fn show_variables(&self, config_path: &str, pid_path: &str) -> Vec<String>;

    /// `data-dir`.
    fn data_dir(&self) -> &str;

    /// `server-name`, for the driver to fill in the host name when it is empty.
    fn server_name_mut(&mut self) -> &mut String;

    /// `daemonize`.
    fn daemonize(&self) -> bool;

    /// `max-connection`.
    fn max_connection(&self) -> u32;

    /// Builds a configuration from `(name, value)` pairs, already merged (file first, command line overriding).
    /// An empty value for a switch means "on"; see [`DaemonConfig::from_entries`].
    fn from_pairs(pairs: &[(String, String)]) -> Result<(Self, Vec<String>), ConfigError> {
        Self::from_entries(&pairs_to_entries(pairs))
    }

    /// Every option as `(name, value)` that rebuilds this configuration through [`DaemonConfig::from_pairs`], in
    /// schema order (a node's index servers as `index-servers`, without the `gat-compat` alias). Includes the
    /// cluster secret: do not show it to clients.
    fn to_pairs(&self) -> Vec<(String, String)> {
        self.pairs(true)
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect()
    }

    /// `stats settings`: every option as memcached-style `(name, value)`, names with underscores, the cluster secret
    /// masked.
    fn settings(&self) -> Vec<(String, String)> {
        self.pairs(false)
            .into_iter()
            .map(|(n, v)| (n.replace('-', "_"), v))
            .collect()
    }

    /// Which options differ between `self` (running) and `new` (re-read), split by whether SIGHUP applies them.
    fn dynamic_changes(&self, new: &Self) -> Changes {
        changes(Self::DAEMON, self.pairs(true), new.pairs(true))
    }
}

/// What each daemon writes for its own options (the options both have are [`Shared`], written once by
/// [`shared_options!`](super::shared::shared_options)): how they are set, rendered and reloaded, the rules spanning
/// options, and the layout of `show variables`.
pub(super) trait Target: DaemonConfig + Shared {
    /// Flare's `show variables` lines, in Flare's order (stats.md §5); `config_path` and `pid_path` are the process's.
    const SHOW: &'static [&'static str];
    /// The column `show variables` lines its values up at.
    const SHOW_WIDTH: usize;

    /// Applies one checked value of the daemon's own options; returns a warning to show the user, if any.
    fn set(
        &mut self,
        spec: &'static OptionSpec,
        value: &Value<'_>,
    ) -> Result<Option<String>, Problem>;

    /// Rules spanning several options, after every entry is applied.
    fn finish(&mut self, entries: &[Entry]) -> Result<(), ConfigError>;

    /// The daemon's own options as `(name, value)`, in any order ([`DaemonConfig::pairs`] puts them in schema order).
    fn own_pairs(&self) -> Vec<(&'static str, String)>;

    /// Takes the daemon's own dynamic options from `new` (see [`DaemonConfig::reload`]).
    fn reload_own(&mut self, new: &Self);

    /// A `show variables` line [`Target::SHOW`] names that is not an option's value.
    fn show_special(&self, _label: &str) -> Option<String> {
        None
    }

    /// Whether `show variables` leaves the option `name` out.
    fn show_hidden(_name: &str) -> bool {
        false
    }
}

/// Defaults, then every entry in order, then the cross-option rules. The warnings are those of [`Target::set`] and
/// [`no_effect`], each prefixed with where the option was given.
pub(super) fn build<T: Target>(entries: &[Entry]) -> Result<(T, Vec<String>), ConfigError> {
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
        let warning = set(&mut config, spec, &value).map_err(|p| p.into_error(entry))?;
        for warning in warning.into_iter().chain(no_effect(spec, &value)) {
            warnings.push(format!("{}{warning}", entry.location.prefix()));
        }
    }
    config.finish(entries)?;
    Ok((config, warnings))
}

/// Applies one checked value: an option both daemons have through [`Shared::set_shared`], else through
/// [`Target::set`]. Returns a warning to show the user, if any.
pub(super) fn set<T: Target>(
    config: &mut T,
    spec: &'static OptionSpec,
    value: &Value<'_>,
) -> Result<Option<String>, Problem> {
    if config.set_shared(spec, value)? {
        return Ok(None);
    }
    config.set(spec, value)
}

/// `pairs` sorted into the order of `daemon`'s options in the schema.
pub(super) fn schema_order(
    daemon: Daemon,
    mut pairs: Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    pairs.sort_by_key(|(name, _)| options(daemon).position(|s| s.name == *name));
    pairs
}

/// The warning for an option of [`NO_EFFECT`] given with a value other than its default. An option without a
/// default of its own (`cluster-replication-concurrency` follows `proxy-concurrency`) warns whenever given.
fn no_effect(spec: &OptionSpec, value: &Value<'_>) -> Option<String> {
    let default = parse_value(spec, Some(spec.default)).ok();
    (NO_EFFECT.contains(&spec.name) && default.as_ref() != Some(value)).then(|| {
        format!(
            "option '{}' is accepted for compatibility, has no effect",
            spec.name
        )
    })
}

pub(super) fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

pub(super) fn netmasks(list: &[Cidr]) -> String {
    list.iter()
        .map(Cidr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The secret itself, or `***` when set and not to be revealed.
pub(super) fn secret(secret: &str, reveal: bool) -> String {
    match (secret.is_empty(), reveal) {
        (false, false) => "***".to_owned(),
        _ => secret.to_owned(),
    }
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
pub(super) fn show(
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
mod tests;
