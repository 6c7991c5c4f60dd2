//! The generic build's warnings for the options accepted for compatibility that have no effect yet.

use super::*;
use crate::config::tests::{index_file, node_file, pairs, NODE_MIN};
use crate::config::{merge, options, parse_file, IndexConfig, Location, NodeConfig};

fn no_effect_line(origin: &str, line: usize, name: &str) -> String {
    format!("{origin}:{line}: option '{name}' is accepted for compatibility, has no effect")
}

/// Each option of [`NO_EFFECT`] with a value other than its default, on the node.
const NODE_VALUES: &[(&str, &str)] = &[
    ("server-socket", "/run/flared.sock"),
    ("back-log", "128"),
    ("stack-size", "256"),
    ("noreply-window-limit", "8"),
    ("max-total-thread-queue", "1000"),
    ("proxy-prior-netmask", "24"),
    ("storage-cache-size", "1024"),
    ("time-watcher-enabled", "true"),
    ("time-watcher-polling-interval-msec", "500"),
    ("storage-access-watch-threshold-warn-msec", "100"),
    ("storage-access-watch-threshold-ping-ng-msec", "1000"),
    ("cluster-replication-server-name", "other-cluster"),
    ("cluster-replication-server-port", "12131"),
    ("cluster-replication-concurrency", "4"),
    ("cluster-replication-mode", "forward"),
    ("replication-failure-threshold", "3"),
];

#[test]
fn every_option_without_effect_warns_when_given_another_value() {
    for (name, value) in NODE_VALUES {
        let (_, warnings) = node_file(&format!("{NODE_MIN}{name} = {value}\n")).unwrap();
        assert_eq!(warnings, [no_effect_line("flared.conf", 3, name)], "{name}");
    }
    // `cluster-replication` on needs its destination, which warns too.
    let (c, warnings) = node_file(&format!(
        "{NODE_MIN}cluster-replication = true\ncluster-replication-server-name = dst\n"
    ))
    .unwrap();
    assert!(c.cluster_replication, "still parsed and kept");
    assert_eq!(
        warnings,
        [
            no_effect_line("flared.conf", 3, "cluster-replication"),
            no_effect_line("flared.conf", 4, "cluster-replication-server-name"),
        ]
    );
    // Every option of the list is covered above, and nothing else warns this way.
    let mut covered: Vec<_> = NODE_VALUES.iter().map(|(n, _)| *n).collect();
    covered.push("cluster-replication");
    covered.sort_unstable();
    let mut listed = NO_EFFECT.to_vec();
    listed.sort_unstable();
    assert_eq!(covered, listed);
}

#[test]
fn index_options_without_effect_warn_too() {
    let (_, warnings) =
        index_file("data-dir = /d\nserver-socket = /run/flarei.sock\nstack-size = 64\n").unwrap();
    assert_eq!(
        warnings,
        [
            no_effect_line("flarei.conf", 2, "server-socket"),
            no_effect_line("flarei.conf", 3, "stack-size"),
        ]
    );
}

#[test]
fn options_without_effect_left_unset_or_at_their_default_do_not_warn() {
    let (unset, warnings) = node_file(NODE_MIN).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    // Each option with a default of its own, given at that default (in the schema's spelling and in another one).
    let mut text = NODE_MIN.to_owned();
    for spec in options(Daemon::Node).filter(|s| NO_EFFECT.contains(&s.name)) {
        if spec.name != "cluster-replication-concurrency" {
            text.push_str(&format!("{} = {}\n", spec.name, spec.default));
        }
    }
    let (c, warnings) = node_file(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c, unset, "the defaults change nothing");
    let (_, warnings) = node_file(&format!(
        "{NODE_MIN}time-watcher-enabled = off\ncluster-replication = 0\nnoreply-window-limit = 00\n"
    ))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let (_, warnings) = index_file("data-dir = /d\nserver-socket =\nstack-size = 128\n").unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn options_without_effect_warn_from_the_command_line_too() {
    let file = parse_file(NODE_MIN, "flared.conf").unwrap();
    let cli = [
        Entry::new("noreply-window-limit", "4", Location::CommandLine),
        Entry::new("max-connection", "10", Location::CommandLine),
    ];
    let (c, warnings) = NodeConfig::from_entries(&merge(&file, &cli)).unwrap();
    assert_eq!(c.noreply_window_limit, 4, "the value is still kept");
    assert_eq!(
        warnings,
        ["command line: option 'noreply-window-limit' is accepted for compatibility, has no effect"]
    );
    // Pairs have no location: the bare message.
    let (_, warnings) =
        IndexConfig::from_pairs(&pairs(&[("data-dir", "/d"), ("stack-size", "1")])).unwrap();
    assert_eq!(
        warnings,
        ["option 'stack-size' is accepted for compatibility, has no effect"]
    );
}
