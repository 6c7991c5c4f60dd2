#![no_main]
//! The config file parser and the typed configs (config.md).
//!
//! The input, read as lossy UTF-8, is parsed as a config file and, separately, split into `name=value` pairs for
//! `from_pairs`; file entries are also merged over a minimal valid base (as the command line is merged over a file),
//! so the fuzzer reaches valid configurations quickly. Invariants: nothing panics; every parsed entry names a schema
//! option, has a line number inside the text and a value unless it is a switch; every accepted config rebuilds
//! itself from its own `to_pairs`, `settings` mirrors `to_pairs` (secret masked), `show variables` has one line per
//! shown option, a reload with itself changes nothing, and the limits stay within their hard bounds.
use flare_core::config::{
    self, Daemon, DaemonConfig, Entry, IndexConfig, Kind, NodeConfig, MAX_ITEM_SIZE_LIMIT,
};
use libfuzzer_sys::fuzz_target;

const BASE: &str = "data-dir = /var/lib/flare\nindex-servers = 10.0.0.1:12120\n";

fn check_entries(text: &str, entries: &[Entry]) {
    let lines = text.lines().count();
    for entry in entries {
        let spec = config::spec_any(&entry.name).expect("a parsed entry names a schema option");
        let line = entry.location.line().expect("a file entry has a line");
        assert!((1..=lines).contains(&line), "line {line} of {lines}");
        if entry.value.is_none() {
            assert_eq!(spec.kind, Kind::Switch, "only switches are given bare");
        }
        if let Some(value) = &entry.value {
            assert!(!value.contains('#'), "comments are stripped");
            assert_eq!(value.trim(), value, "values are trimmed");
        }
    }
}

/// Masks the secret the way `settings` does.
fn masked(name: &str, value: &str) -> String {
    if name == "cluster-secret" && !value.is_empty() {
        "***".to_owned()
    } else {
        value.to_owned()
    }
}

fn check_settings(pairs: &[(String, String)], settings: &[(String, String)]) {
    assert_eq!(pairs.len(), settings.len());
    for ((name, value), (setting, shown)) in pairs.iter().zip(settings) {
        assert_eq!(&name.replace('-', "_"), setting);
        assert_eq!(&masked(name, value), shown);
        assert!(config::spec_any(name).is_some(), "{name} is in the schema");
    }
}

fn check_node(config: &NodeConfig) {
    let pairs = config.to_pairs();
    let (again, _) = NodeConfig::from_pairs(&pairs).expect("a config rebuilds from its own pairs");
    assert_eq!(&again, config, "round trip through to_pairs");
    check_settings(&pairs, &config.settings());
    let shown = config.show_variables("/etc/flared.conf", "/run/flared.pid");
    assert!(shown.iter().all(|l| l.contains(':')));
    assert!(config.dynamic_changes(config).is_empty());
    assert_eq!(&config.reload(config).0, config);
    assert!(config
        .index_servers
        .iter()
        .all(|s| s.port != 0 && !s.name.is_empty()));
    let limits = config.limits();
    assert!((1..=8191).contains(&limits.key_max));
    assert!(limits.item_size_max >= 1 && i64::from(limits.item_size_max) <= MAX_ITEM_SIZE_LIMIT);
    assert!(limits.line_max >= 1024);
    assert!(config.proxy_prior_netmask <= 32);
    assert!(!config.data_dir.is_empty());
}

fn check_index(config: &IndexConfig) {
    let pairs = config.to_pairs();
    let (again, _) = IndexConfig::from_pairs(&pairs).expect("a config rebuilds from its own pairs");
    assert_eq!(&again, config, "round trip through to_pairs");
    check_settings(&pairs, &config.settings());
    let shown = config.show_variables("/etc/flarei.conf", "/run/flarei.pid");
    assert_eq!(shown.len(), config::options(Daemon::Index).count() + 2);
    assert!(config.dynamic_changes(config).is_empty());
    assert_eq!(&config.reload(config).0, config);
    assert!(config.index_db.starts_with("file://"));
    assert!(!config.data_dir.is_empty());
}

fn check_all(entries: &[Entry]) {
    match NodeConfig::from_entries(entries) {
        Ok((config, _)) => check_node(&config),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match IndexConfig::from_entries(entries) {
        Ok((config, _)) => check_index(&config),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    match config::parse_file(&text, "fuzz.conf") {
        Ok(entries) => {
            check_entries(&text, &entries);
            check_all(&entries);
            // As the command line over a file: the fuzzed entries override a valid base.
            let base = config::parse_file(BASE, "base.conf").expect("the base parses");
            let merged = config::merge(&base, &entries);
            assert!(merged.len() <= base.len() + entries.len());
            assert!(
                entries.iter().all(|e| merged.contains(e)),
                "every override is kept"
            );
            check_all(&merged);
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with("fuzz.conf:"),
                "a file error names the file: {message}"
            );
        }
    }

    // The same bytes as already-merged pairs, untrimmed, one per line.
    let pairs: Vec<(String, String)> = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (line.to_owned(), String::new()),
        })
        .collect();
    if let Ok((config, _)) = NodeConfig::from_pairs(&pairs) {
        check_node(&config);
    }
    if let Ok((config, _)) = IndexConfig::from_pairs(&pairs) {
        check_index(&config);
    }
});
