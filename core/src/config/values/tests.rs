//! Value checks: switches, booleans, integers, choices, addresses and the secret.

use std::collections::BTreeMap;

use super::*;
use crate::config::tests::{index_file, node_err, node_file, NODE_MIN};
use crate::config::DaemonConfig;
use crate::protocol::Limits;

#[test]
fn switch_forms() {
    for (line, on) in [
        ("daemonize", true),
        ("daemonize =", true),
        ("daemonize = true", true),
        ("daemonize = TRUE", true),
        ("daemonize = yes", true),
        ("daemonize = on", true),
        ("daemonize = 1", true),
        ("daemonize = false", false),
        ("daemonize = no", false),
        ("daemonize = off", false),
        ("daemonize = 0", false),
    ] {
        let (c, _) = node_file(&format!("{NODE_MIN}{line}\n")).unwrap();
        assert_eq!(c.daemonize, on, "{line}");
    }
    let (c, _) = node_file(&format!("{NODE_MIN}storage-large\n")).unwrap();
    assert!(c.storage_large);
    let (c, _) = node_file(&format!("{NODE_MIN}mysql-replication = off\n")).unwrap();
    assert_eq!(c.mysql_replication_port, 12122);
    assert_eq!(
        node_err(&format!("{NODE_MIN}daemonize = maybe\n")),
        "flared.conf:3: option 'daemonize': invalid value 'maybe' (expected true or false)"
    );
}

#[test]
fn booleans() {
    for (value, expected) in [
        ("true", true),
        ("1", true),
        ("yes", true),
        ("false", false),
        ("0", false),
    ] {
        let (c, _) = node_file(&format!("{NODE_MIN}time-watcher-enabled = {value}\n")).unwrap();
        assert_eq!(c.time_watcher_enabled, expected, "{value}");
    }
    assert_eq!(
        node_err(&format!("{NODE_MIN}cluster-replication\n")),
        "flared.conf:3: option 'cluster-replication' needs a value"
    );
    assert_eq!(
        node_err(&format!("{NODE_MIN}gat-flare-syntax = 2\n")),
        "flared.conf:3: option 'gat-flare-syntax': invalid value '2' (expected true or false)"
    );
}

#[test]
fn bad_integers() {
    assert_eq!(
        index_file("data-dir = /d\nmonitor-interval = abc\n")
            .unwrap_err()
            .to_string(),
        "flarei.conf:2: option 'monitor-interval': invalid value 'abc' (expected an integer)"
    );
    assert_eq!(
        node_err(&format!("{NODE_MIN}server-port = 70000\n")),
        "flared.conf:3: option 'server-port': invalid value '70000' (expected an integer from 1 to 65535)"
    );
    assert_eq!(
        node_err(&format!("{NODE_MIN}max-key-length = 8192\n")),
        "flared.conf:3: option 'max-key-length': invalid value '8192' (expected an integer from 1 to 8191)"
    );
    assert_eq!(
        node_err(&format!("{NODE_MIN}max-item-size = 2147483648\n")),
        "flared.conf:3: option 'max-item-size': invalid value '2147483648' (expected an integer from 1 to \
         2147483647)"
    );
    assert!(node_err(&format!("{NODE_MIN}back-log = -1\n")).contains("from 0 to"));
    assert!(
        node_err(&format!("{NODE_MIN}back-log = 99999999999999999999999\n")).contains("an integer")
    );
    assert!(node_err(&format!("{NODE_MIN}back-log = 1.5\n")).contains("expected an integer"));
    assert!(node_err(&format!("{NODE_MIN}back-log =\n")).contains("expected an integer"));
}

#[test]
fn log_facility() {
    let (c, _) = node_file(NODE_MIN).unwrap();
    assert_eq!(c.log_facility, LogFacility::Daemon);
    for name in LogFacility::NAMES {
        let (c, _) = node_file(&format!("{NODE_MIN}log-facility = {name}\n")).unwrap();
        assert_eq!(c.log_facility.as_str(), *name);
    }
    assert!(node_err(&format!("{NODE_MIN}log-facility = kern\n")).contains("invalid value 'kern'"));
    assert!(node_err(&format!("{NODE_MIN}log-facility =\n")).contains("invalid value ''"));
    assert_eq!(LogFacility::Daemon.syslog_code(), 24);
    assert_eq!(LogFacility::Local7.syslog_code(), 184);
    assert_eq!(LogFacility::Auth.syslog_code(), 32);
    assert_eq!(LogFacility::User.syslog_code(), 8);
}

#[test]
fn additions() {
    let text = format!(
        "{NODE_MIN}max-item-size = 1024\nmax-key-length = 250\nmax-line-length = 2048\nversion-string = flare-1.3.4\n\
         internal-netmask = 10.0.0.0/8, 192.168.1.1 ,::1/128\ncluster-secret = s3cret\nstorage-sync = group\n\
         proxy-timeout = 250\nmetrics-port = 9100\nmetrics-address = ::\n"
    );
    let (c, _) = node_file(&text).unwrap();
    assert_eq!(
        c.limits(),
        Limits {
            line_max: 2048,
            key_max: 250,
            item_size_max: 1024,
            ..Limits::default()
        }
    );
    assert_eq!(c.version_string, "flare-1.3.4");
    assert_eq!(c.internal_netmask.len(), 3);
    assert_eq!(c.internal_netmask[1].prefix, 32);
    assert_eq!(c.storage_sync, StorageSync::Group);
    assert_eq!(c.proxy_timeout, Duration::from_millis(250));
    assert_eq!(c.metrics_address, "::".parse::<IpAddr>().unwrap());
    assert!(node_err(&format!("{NODE_MIN}version-string = flare 2\n")).contains("without spaces"));
    assert!(node_err(&format!("{NODE_MIN}internal-netmask = 10.0.0.0/33\n")).contains("CIDRs"));
    assert!(
        node_err(&format!("{NODE_MIN}metrics-address = localhost\n")).contains("an IP address")
    );
    assert!(
        node_err(&format!("{NODE_MIN}storage-sync = sometimes\n")).contains("none, group, always")
    );
}

#[test]
fn the_secret_is_redacted_in_debug_output() {
    let (c, _) = node_file(&format!("{NODE_MIN}cluster-secret = hunter2\n")).unwrap();
    assert_eq!(c.cluster_secret.expose(), "hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
    let settings: BTreeMap<_, _> = c.settings().into_iter().collect();
    assert_eq!(settings["cluster_secret"], "***");
    assert!(c
        .to_pairs()
        .contains(&("cluster-secret".to_owned(), "hunter2".to_owned())));
}

#[test]
fn cidr_matching() {
    let net = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(net.contains("10.1.200.3".parse().unwrap()));
    assert!(!net.contains("10.2.0.1".parse().unwrap()));
    assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
    assert!(!net.contains("::1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("1.2.3.4".parse().unwrap()));
    let v6 = Cidr::parse("fd00::/8").unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("fe80::1".parse().unwrap()));
    assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
    for bad in [
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/33",
        "::/129",
        "x/8",
        "",
    ] {
        assert_eq!(Cidr::parse(bad), None, "{bad}");
    }
}
