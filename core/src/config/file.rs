//! The file syntax and merging: [`parse_file`] turns text into [`Entry`]s, [`merge`] lays the command line over
//! them, and the duplicate and look-up helpers shared by the typed configs.

use std::collections::BTreeMap;

use super::schema::{spec_any, Kind};
use super::{ConfigError, Location};

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

/// The last entry of an option (after [`merge`] there is at most one).
pub(super) fn find<'a>(entries: &'a [Entry], name: &str) -> Option<&'a Entry> {
    entries.iter().rev().find(|e| e.name == name)
}

pub(super) fn position(entries: &[Entry], entry: &Entry) -> usize {
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
pub(super) fn check_duplicates(entries: &[Entry]) -> Result<(), ConfigError> {
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

pub(super) fn pairs_to_entries(pairs: &[(String, String)]) -> Vec<Entry> {
    pairs
        .iter()
        .map(|(name, value)| Entry::new(name.clone(), value.clone(), Location::Unknown))
        .collect()
}

#[cfg(test)]
mod tests;
