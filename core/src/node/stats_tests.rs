//! `stats` and `/metrics` from a snapshot: field order, the per-target fields, the slave thread blocks, and a
//! master's slaves before their first replicated write.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::node::view::fixtures;

/// A snapshot of m0 (master of partition 0, slave s0:1) with one replication target, s0:1.
fn master() -> Snapshot {
    let tally = Tally {
        cmd_get: 1,
        cmd_set: 2,
        total_items: 3,
        meta_cmds: 4,
        storage_errors: 5,
        ..Tally::default()
    };
    Snapshot {
        pid: 42,
        uptime: 7,
        time: 1_700_000_000,
        rusage: ("0.100000".into(), "0.020000".into()),
        curr_items: 10,
        disk_bytes: 4096,
        curr_connections: 2,
        total_connections: 9,
        rejected_connections: 1,
        bytes_read: 100,
        bytes_written: 200,
        connections: 2,
        tally,
        dump_items: 11,
        dumps_running: 0,
        view: Arc::new(fixtures::cluster("m0")),
        applied_seq: 0,
        replication: vec![(
            "s0:1".into(),
            SenderStats {
                queued: 2,
                in_flight: 1,
                lag: Duration::from_millis(2500),
                acked_seq: 17,
                failures: 3,
                sent: 20,
            },
        )],
        rebuild: RebuildStats::default(),
        healthy: true,
    }
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name}"))
}

#[test]
fn tally_fields_read_back() {
    let t = master().tally;
    let values = tally_fields(&t).map(|(_, v)| v);
    assert_eq!(tally_from(values), t);
    let distinct = tally_from(std::array::from_fn(|i| i as u64 + 1));
    let names: Vec<_> = tally_fields(&distinct)
        .iter()
        .map(|(n, v)| (*n, *v))
        .collect();
    assert_eq!(names[4], ("total_items", 5));
    assert_eq!(names[17], ("storage_errors", 18));
}

#[test]
fn general_stats_are_flares_fields_in_flares_order_then_ours() {
    let s = general(&master());
    let names: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "pid",
            "uptime",
            "time",
            "version",
            "pointer_size",
            "rusage_user",
            "rusage_system",
            "curr_items",
            "total_items",
            "bytes",
            "curr_connections",
            "total_connections",
            "connection_structures",
            "cmd_get",
            "cmd_set",
            "get_hits",
            "get_misses",
            "delete_hits",
            "delete_misses",
            "incr_hits",
            "incr_misses",
            "decr_hits",
            "decr_misses",
            "cas_hits",
            "cas_misses",
            "cas_badval",
            "touch_hits",
            "touch_misses",
            "evictions",
            "bytes_read",
            "bytes_written",
            "limit_maxbytes",
            "threads",
            "pool_threads",
            "node_map_version",
            "server_version",
            "node_role",
            "node_state",
            "node_partition",
            "node_balance",
            "replication_position",
            "replication_queue",
            "replication_lag_ms",
            "replication_failures",
            "replication:s0:1:queue",
            "replication:s0:1:lag_ms",
            "replication:s0:1:acked",
            "replication:s0:1:failures",
            "reconstruction_running",
            "reconstruction_items",
            "reconstruction_total",
            "meta_cmds",
            "rejected_connections",
            "storage_errors",
            "healthy",
        ]
    );
    assert_eq!(get(&s, "pid"), "42");
    assert_eq!(get(&s, "rusage_user"), "0.100000");
    assert_eq!(get(&s, "total_items"), "3");
    assert_eq!(get(&s, "threads"), "3", "connections + the listener");
    assert_eq!(get(&s, "node_map_version"), "3");
    assert_eq!(get(&s, "node_role"), "master");
    assert_eq!(get(&s, "node_state"), "active");
    assert_eq!(get(&s, "node_partition"), "0");
    assert_eq!(get(&s, "meta_cmds"), "4");
    assert_eq!(get(&s, "storage_errors"), "5");
    assert_eq!(get(&s, "healthy"), "1");
}

#[test]
fn general_stats_sum_the_targets_and_show_each_one() {
    let mut snap = master();
    snap.replication.push((
        "s9:1".into(),
        SenderStats {
            queued: 4,
            lag: Duration::from_millis(900),
            failures: 1,
            ..SenderStats::default()
        },
    ));
    let s = general(&snap);
    assert_eq!(get(&s, "replication_queue"), "7");
    assert_eq!(get(&s, "replication_lag_ms"), "2500", "the largest lag");
    assert_eq!(get(&s, "replication_failures"), "4");
    assert_eq!(get(&s, "replication:s0:1:queue"), "3", "queued + in flight");
    assert_eq!(get(&s, "replication:s0:1:lag_ms"), "2500");
    assert_eq!(get(&s, "replication:s0:1:acked"), "17");
    assert_eq!(get(&s, "replication:s0:1:failures"), "3");
    assert_eq!(get(&s, "replication:s9:1:queue"), "4");
    assert_eq!(get(&s, "replication:s9:1:lag_ms"), "900");
    // No target: zeros, and a partition-less node shows -1.
    snap.replication.clear();
    snap.view = Arc::new(fixtures::cluster("px"));
    let s = general(&snap);
    assert_eq!(get(&s, "replication_lag_ms"), "0");
    assert_eq!(get(&s, "node_partition"), "-1");
    assert!(!s.iter().any(|(k, _)| k.starts_with("replication:")));
}

#[test]
fn slave_threads_are_thread_blocks_from_one_million() {
    let snap = master();
    let s = slave_threads(&snap.view, &snap.replication, 7);
    let expect = [
        ("1000000:type", "16"),
        ("1000000:peer", "s0:1"),
        ("1000000:op", "proxy_write"),
        ("1000000:uptime", "7"),
        ("1000000:state", "wait"),
        ("1000000:info", ""),
        ("1000000:queue", "3"),
        ("1000000:behind", "2"),
    ];
    let got: Vec<(&str, &str)> = s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, expect);
    // An idle target has no op; an unknown one has type 0.
    let idle = [("gone:1".to_string(), SenderStats::default())];
    let s = slave_threads(&snap.view, &idle, 7);
    assert_eq!(get(&s, "1000000:op"), "");
    assert_eq!(get(&s, "1000000:type"), "0");
}

#[test]
fn thread_states_read_back_and_unknown_is_wait() {
    for st in [
        ThreadState::Wait,
        ThreadState::Execute,
        ThreadState::Shutdown,
        ThreadState::Killed,
    ] {
        assert_eq!(ThreadState::from_u8(st as u8), st);
    }
    assert_eq!(ThreadState::from_u8(200).name(), "wait");
    assert_eq!(thread_queue(), [("total_thread_queue".into(), "0".into())]);
}

fn rows<'a>(metrics: &'a [Metric], name: &str) -> &'a Samples {
    &metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
        .samples
}

#[test]
fn counter_metrics_rename_total_items_and_keep_stats_order() {
    let m = counter_metrics(&master());
    let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        &names[..9],
        [
            "flare_up",
            "flare_healthy",
            "flare_uptime_seconds",
            "flare_items",
            "flare_bytes",
            "flare_connections",
            "flare_connections_accepted",
            "flare_bytes_read",
            "flare_bytes_written",
        ]
    );
    assert_eq!(names[9..].len(), 18);
    assert_eq!(names[13], "flare_items_stored");
    assert_eq!(names[26], "flare_storage_errors");
    assert_eq!(*rows(&m, "flare_items_stored"), Samples::One(Value::Int(3)));
}

#[test]
fn a_masters_slaves_show_in_metrics_before_their_first_write() {
    let mut snap = master();
    snap.replication.clear();
    let m = cluster_metrics(&snap);
    let slave = || vec![("slave", "s0:1".to_string())];
    assert_eq!(
        *rows(&m, "flare_replication_queue"),
        Samples::Labelled(vec![(slave(), Value::Int(0))])
    );
    assert_eq!(
        *rows(&m, "flare_node_info"),
        Samples::Labelled(vec![(
            vec![
                ("role", "master".to_string()),
                ("state", "active".to_string()),
                ("partition", "0".to_string()),
            ],
            Value::Int(1),
        )])
    );
    // With the target's counters once it has them; the lag in seconds.
    let m = cluster_metrics(&master());
    assert_eq!(
        *rows(&m, "flare_replication_lag_seconds"),
        Samples::Labelled(vec![(slave(), Value::Float(2.5))])
    );
    assert_eq!(
        *rows(&m, "flare_replication_sent"),
        Samples::Labelled(vec![(slave(), Value::Int(20))])
    );
    // A slave reports no targets: the families are empty (and left out of the exposition).
    snap.view = Arc::new(fixtures::cluster("s0"));
    let m = cluster_metrics(&snap);
    assert_eq!(
        *rows(&m, "flare_replication_queue"),
        Samples::Labelled(vec![])
    );
}
