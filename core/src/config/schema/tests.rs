//! The schema against config.md and against the typed configs.

use std::fmt;

use super::*;
use crate::config::build::{set, Target};
use crate::config::values::parse_value;
use crate::config::{IndexConfig, NodeConfig};
use crate::protocol::Limits;

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
        (Index, "index-servers", ""),
        (Index, "index-join", "false"),
        (Index, "index-election-timeout", "400"),
        (Index, "metrics-port", "0"),
        (Index, "metrics-address", "127.0.0.1"),
    ];
    for (daemon, name, default) in expected {
        let spec = spec(*daemon, name).unwrap_or_else(|| panic!("{daemon} has no option {name}"));
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
            set(&mut config, spec, &value).unwrap();
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

/// The help of an option accepted without effect says so, and no other option's help does.
#[test]
fn help_tells_which_options_have_no_effect() {
    for spec in OPTIONS {
        let says = spec
            .help
            .ends_with("(accepted for compatibility, has no effect)");
        assert_eq!(
            says,
            NO_EFFECT.contains(&spec.name),
            "{}: {}",
            spec.name,
            spec.help
        );
    }
    for name in NO_EFFECT {
        assert!(spec_any(name).is_some(), "{name} is in the schema");
    }
}
