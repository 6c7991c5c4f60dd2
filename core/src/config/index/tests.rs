//! The index server's options, rendering and reload.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::tests::{index_file, other_value, pairs, FLAREI_SAMPLE};
use crate::config::{options, DaemonConfig};

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
fn index_group_options() {
    let alone = index_file("data-dir = /d\n").unwrap().0;
    assert!(
        alone.index_servers.is_empty(),
        "no list: a single index server"
    );
    assert!(!alone.index_join);
    assert_eq!(alone.index_election_timeout, Duration::from_millis(400));

    let (c, warnings) = index_file(
        "data-dir = /d\nindex-servers = a:12120, b:12120 ,c:12121\nindex-join = true\nindex-election-timeout = 50\n",
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let members: Vec<_> = c.index_servers.iter().map(ToString::to_string).collect();
    assert_eq!(members, ["a:12120", "b:12120", "c:12121"]);
    assert!(c.index_join);
    assert_eq!(c.index_election_timeout, Duration::from_millis(50));

    // A bare switch, as `--index-join` on the command line; an empty list is a single server.
    let (c, _) = index_file("data-dir = /d\nindex-join\nindex-servers =\n").unwrap();
    assert!(c.index_join);
    assert!(c.index_servers.is_empty());
    // The node's rules for the list: entries without a numeric port are skipped.
    let (c, _) = index_file("data-dir = /d\nindex-servers = a, b:1 ,c:x, :5, d:2\n").unwrap();
    let members: Vec<_> = c.index_servers.iter().map(ToString::to_string).collect();
    assert_eq!(members, ["b:1", "d:2"]);
}

#[test]
fn index_group_options_refused() {
    let err = |text: &str| index_file(text).unwrap_err().to_string();
    assert_eq!(
        err("data-dir = /d\nindex-election-timeout = 49\n"),
        "flarei.conf:2: option 'index-election-timeout': invalid value '49' (expected an integer from 50 to 2147483647)"
    );
    assert!(err("data-dir = /d\nindex-election-timeout = x\n").contains("expected an integer"));
    assert_eq!(
        err("data-dir = /d\nindex-servers = a,b\n"),
        "flarei.conf:2: option 'index-servers': invalid value 'a,b' (expected host:port[,host:port...])"
    );
    assert!(err("data-dir = /d\nindex-servers = a:0\n").contains("invalid value 'a:0'"));
    assert!(err("data-dir = /d\nindex-servers = a:65536\n").contains("invalid value"));
    assert_eq!(
        err("data-dir = /d\nindex-servers = a:1,b:2,a:1\n"),
        "flarei.conf:2: option 'index-servers': invalid value 'a:1,b:2,a:1' \
         (expected host:port[,host:port...] naming each index server once ('a:1' is given twice))"
    );
    assert!(err("data-dir = /d\nindex-join = maybe\n").contains("expected true or false"));
    // The group options are the index's: a node refuses them.
    assert_eq!(
        crate::config::tests::node_err("data-dir = /d\nindex-join = true\n"),
        "flared.conf:2: option 'index-join' is not an option of flared"
    );
}

#[test]
fn index_group_options_are_settings_and_round_trip() {
    let (c, _) = index_file(
        "data-dir = /d\nindex-servers = a:1,b:2\nindex-join = true\nindex-election-timeout = 750\n",
    )
    .unwrap();
    let settings: BTreeMap<_, _> = c.settings().into_iter().collect();
    assert_eq!(settings["index_servers"], "a:1,b:2");
    assert_eq!(settings["index_join"], "true");
    assert_eq!(settings["index_election_timeout"], "750");
    let lines = c.show_variables("", "");
    assert!(
        lines.contains(&"index_servers:            a:1,b:2".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"index_election_timeout:   750".to_owned()),
        "{lines:?}"
    );
    assert_eq!(IndexConfig::from_pairs(&c.to_pairs()).unwrap().0, c);
    let alone = index_file("data-dir = /d\n").unwrap().0;
    assert_eq!(IndexConfig::from_pairs(&alone.to_pairs()).unwrap().0, alone);
    // None is dynamic: a group's membership changes through `index add` / `index remove`, not SIGHUP.
    let (reloaded, changes) = alone.reload(&c);
    assert_eq!(reloaded, alone);
    assert_eq!(
        changes.ignored,
        ["index-servers", "index-join", "index-election-timeout"]
    );
}

#[test]
fn index_choices_and_key_hash() {
    let (c, _) =
        index_file("data-dir = /d\nkey-hash-algorithm = jenkins\npartition-type = modular\n")
            .unwrap();
    assert_eq!(c.key_hash_algorithm, KeyHashAlgorithm::Jenkins);
    for bad in ["bitshift", "adler32", "murmur"] {
        let err = index_file(&format!("data-dir = /d\nkey-hash-algorithm = {bad}\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected one of simple, crc32, jenkins"),
            "{err}"
        );
    }
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
