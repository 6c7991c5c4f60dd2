//! Shared samples and helpers of the config tests, and the tests of whole files through to a typed config.

use std::time::Duration;

use super::*;

pub(super) const FLAREI_SAMPLE: &str = "\
data-dir = /var/lib/flarei
log-facility = local0
max-connection = 256
monitor-threshold = 3
monitor-interval = 1
server-name = 10.0.0.1
server-port = 12120
thread-pool-size = 8
";

pub(super) const FLARED_SAMPLE: &str = "\
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

pub(super) const NODE_MIN: &str = "data-dir = /d\nindex-servers = i:12120\n";

pub(super) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

pub(super) fn node_file(text: &str) -> Result<(NodeConfig, Vec<String>), ConfigError> {
    NodeConfig::from_entries(&parse_file(text, "flared.conf")?)
}

pub(super) fn index_file(text: &str) -> Result<(IndexConfig, Vec<String>), ConfigError> {
    IndexConfig::from_entries(&parse_file(text, "flarei.conf")?)
}

pub(super) fn node_err(text: &str) -> String {
    match node_file(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn node_with(extra: &[(&str, &str)]) -> NodeConfig {
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

/// A value different from `current` that the option accepts, if there is one.
pub(super) fn other_value(spec: &OptionSpec, current: &str) -> Option<String> {
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
