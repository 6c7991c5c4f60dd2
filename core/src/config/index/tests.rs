//! The index server's options, rendering and reload.

use std::collections::BTreeMap;

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
