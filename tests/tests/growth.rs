//! Failover and growth on real processes: a new slave reads with its balance once active, a partition is added while
//! serving and the moved keys leave the old master, a restarted slave rebuilds itself, a deposed master comes back
//! as a proxy, a restarted index resumes the same cluster.

use std::time::Duration;

use flare_tests::{wait_until, Cluster};

#[test]
fn a_new_slave_reads_with_its_balance_once_active() {
    let c = Cluster::start(3, &[]);
    c.role(0, "master 1 0");
    c.wait_applied(0, "master", "active");
    let mut m = c.client(0);
    for i in 0..300 {
        assert_eq!(m.set(&format!("k{i}"), 0, 0, b"v"), "STORED");
    }
    // The balance given when adding the slave applies once it is active (Flare forces 0 and needs a second
    // command).
    c.role(1, "slave 5 0");
    c.wait_applied(1, "slave", "active");
    assert_eq!(c.field(1, "balance"), "5");
    assert_eq!(c.items(1), 300);
    c.converged();
    let mut proxy = c.client(2);
    for i in 0..300 {
        assert!(
            proxy.get(&format!("k{i}")).is_some(),
            "k{i} through the proxy"
        );
    }
    let slave_gets: u64 = c.client(1).stat("cmd_get").parse().unwrap();
    assert!(
        slave_gets > 100,
        "reads are spread to the slave by weight 5:1 ({slave_gets} of 300)"
    );
}

#[test]
fn a_partition_added_while_serving_moves_exactly_its_keys() {
    let c = Cluster::start(3, &[]);
    c.role(0, "master 1 0");
    c.wait_applied(0, "master", "active");
    let mut m = c.client(0);
    for i in 0..2000 {
        assert_eq!(
            m.set(&format!("grow:{i}"), i, 0, format!("v{i}").as_bytes()),
            "STORED"
        );
    }
    c.role(1, "master 1 1");
    c.wait_applied(1, "master", "ready");
    let copied = c.items(1);
    assert!(
        copied > 500 && copied < 1500,
        "about half the keys move to partition 1 of 2: {copied}"
    );
    assert_eq!(
        c.index_call(&format!("node state 127.0.0.1 {} active", c.nodes[1].port)),
        "OK"
    );
    c.wait_applied(1, "master", "active");
    // Every key is readable through the proxy, and once the old master has dropped the moved keys, each key lives
    // exactly once.
    c.converged();
    let mut proxy = c.client(2);
    for i in 0..2000 {
        assert_eq!(
            proxy.get(&format!("grow:{i}")),
            Some(format!("v{i}").into_bytes()),
            "grow:{i}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || c.items(0) + c.items(1) == 2000),
        "{} + {}",
        c.items(0),
        c.items(1)
    );
}

#[test]
fn a_restarted_slave_rebuilds_itself() {
    let mut c = Cluster::start(2, &[]);
    c.role(0, "master 1 0");
    c.wait_applied(0, "master", "active");
    c.role(1, "slave 1 0");
    c.wait_applied(1, "slave", "active");
    let mut m = c.client(0);
    for i in 0..100 {
        assert_eq!(m.set(&format!("a{i}"), 0, 0, b"v"), "STORED");
    }
    c.nodes[1].kill9();
    c.wait_applied(1, "slave", "down");
    for i in 0..100 {
        assert_eq!(m.set(&format!("b{i}"), 0, 0, b"w"), "STORED");
    }
    assert_eq!(m.call("delete a0"), "DELETED");
    c.nodes[1].spawn();
    c.wait_applied(1, "slave", "active");
    assert!(
        wait_until(Duration::from_secs(10), || c.items(1) == 199),
        "slave holds {}",
        c.items(1)
    );
    let mut s = c.client(1);
    assert_eq!(
        s.get("a0"),
        None,
        "a delete made while the slave was down is not undone"
    );
    assert_eq!(s.get("b99"), Some(b"w".to_vec()));
}

#[test]
fn a_deposed_master_comes_back_as_a_proxy() {
    let mut c = Cluster::start(2, &[]);
    c.role(0, "master 1 0");
    c.wait_applied(0, "master", "active");
    c.role(1, "slave 1 0");
    c.wait_applied(1, "slave", "active");
    assert_eq!(c.client(0).set("key0", 0, 0, b"one"), "STORED");
    c.nodes[0].kill9();
    c.wait_applied(1, "master", "active");
    c.nodes[0].spawn();
    c.wait_applied(0, "proxy", "active");
    // It no longer acts as master: a write to it goes to the new master.
    let mut old = c.client(0);
    assert!(wait_until(Duration::from_secs(10), || old
        .stat("node_role")
        == "proxy"));
    assert_eq!(old.set("key0", 0, 0, b"two"), "STORED");
    assert_eq!(c.client(1).get("key0"), Some(b"two".to_vec()));
}

#[test]
fn a_restarted_index_resumes_the_cluster() {
    let mut c = Cluster::start(2, &[]);
    c.role(0, "master 1 0");
    c.wait_applied(0, "master", "active");
    c.role(1, "slave 1 0");
    c.wait_applied(1, "slave", "active");
    let before = c.index.connect().stats_nodes();
    let version: u64 = c.index.connect().stat("node_map_version").parse().unwrap();
    c.index.kill9();
    // Nodes keep serving with their last map while the index is away.
    assert_eq!(c.client(1).set("key0", 0, 0, b"x"), "STORED");
    c.index.spawn();
    assert_eq!(c.index.connect().stats_nodes(), before);
    let after: u64 = c.index.connect().stat("node_map_version").parse().unwrap();
    assert!(after >= version, "{after} < {version}");
    assert_eq!(c.client(0).get("key0"), Some(b"x".to_vec()));
}
