//! The node's options, rendering and reload.

use std::collections::BTreeMap;

use super::*;
use crate::config::tests::{
    index_file, node_err, node_file, node_with, other_value, FLARED_SAMPLE, FLAREI_SAMPLE, NODE_MIN,
};
use crate::config::IndexConfig;
use crate::config::{options, DaemonConfig};

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
        node_file("data-dir = /d\nindex-server-name = idx\nindex-server-port = 13000\n").unwrap();
    assert_eq!(
        c.index_servers,
        vec![IndexServer {
            name: "idx".into(),
            port: 13000
        }]
    );
    assert!(node_err("data-dir = /d\nindex-server-name = a:b\n").contains("invalid value 'a:b'"));
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
            "flared.conf:5: option 'storage-cache-size' is accepted for compatibility, has no effect",
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
