//! End-to-end tests of a cluster of real processes on loopback: one `flarei`, two partitions of a master and a slave
//! each, and a proxy node; data written with a real memcached client (pymemcache) through the proxy and read back
//! from every node; sync replication surviving a SIGKILL of the master.

use std::process::Command;
use std::time::Duration;

use flare_tests::{wait_until, Client, Flared};

/// A running cluster.
struct Cluster {
    index: Flared,
    /// m0, s0 (partition 0), m1, s1 (partition 1), proxy.
    nodes: Vec<Flared>,
}

impl Cluster {
    fn node(&self, i: usize) -> &Flared {
        &self.nodes[i]
    }

    fn admin(&self) -> Client {
        self.index.connect()
    }

    /// `stats nodes` field of node `i`.
    fn field(&self, i: usize, field: &str) -> String {
        let key = format!("127.0.0.1:{}:{field}", self.nodes[i].port);
        self.admin()
            .stats_nodes()
            .get(&key)
            .cloned()
            .unwrap_or_default()
    }

    fn wait_state(&self, i: usize, role: &str, state: &str) {
        let ok = wait_until(Duration::from_secs(20), || {
            self.field(i, "role") == role && self.field(i, "state") == state
        });
        assert!(
            ok,
            "node {i} did not become {role}/{state}: {:?}\n{}",
            self.admin().stats_nodes(),
            self.nodes[i].log()
        );
    }

    fn role(&self, i: usize, line: &str) {
        let cmd = format!("node role 127.0.0.1 {} {line}", self.nodes[i].port);
        assert_eq!(self.admin().call(&cmd), "OK", "{cmd}");
    }

    /// Index + 5 nodes; partitions 0 and 1 with a master and a slave (balance 1) each, node 4 a proxy.
    fn build(node_args: &[&str]) -> Cluster {
        let index = Flared::index(&["--monitor-interval=1"]);
        let nodes: Vec<Flared> = (0..5)
            .map(|_| Flared::node_of(index.port, node_args))
            .collect();
        let c = Cluster { index, nodes };
        for i in 0..5 {
            c.wait_state(i, "proxy", "active");
        }
        c.role(0, "master 1 0");
        c.wait_state(0, "master", "active");
        c.role(2, "master 1 1");
        c.wait_state(2, "master", "ready");
        assert_eq!(
            c.admin()
                .call(&format!("node state 127.0.0.1 {} active", c.nodes[2].port)),
            "OK"
        );
        c.wait_state(2, "master", "active");
        c.role(1, "slave 1 0");
        c.role(3, "slave 1 1");
        c.wait_state(1, "slave", "active");
        c.wait_state(3, "slave", "active");
        // Flare keeps a building slave at balance 0; give it its read weight now that it is active.
        c.role(1, "slave 1 0");
        c.role(3, "slave 1 1");
        // Every node has applied the last map (the version the index shows).
        let version = c.admin().stat("node_map_version");
        for n in &c.nodes {
            let ok = wait_until(Duration::from_secs(10), || {
                n.connect().stat("node_map_version") == version
            });
            assert!(ok, "node {} stuck on an older node map", n.port);
        }
        c
    }
}

#[test]
fn ten_thousand_keys_through_the_proxy_are_readable_from_every_node() {
    let c = Cluster::build(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/cluster_rw.py");
    let ports: Vec<String> = c.nodes.iter().map(|n| n.port.to_string()).collect();
    let out = Command::new("python3")
        .arg(script)
        .arg(c.node(4).port.to_string())
        .args(&ports)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{text}\n--- proxy log ---\n{}",
        c.node(4).log()
    );
    assert!(
        text.contains("all 10000 keys read back from 5 nodes"),
        "{text}"
    );
    // The two partitions share the keys, and each slave holds exactly its master's count.
    let items: Vec<u64> = c
        .nodes
        .iter()
        .map(|n| n.connect().stat("curr_items").parse().unwrap())
        .collect();
    assert_eq!(items[0] + items[2], 10_000, "{items:?}");
    assert_eq!(items[0], items[1], "slave 0 = master 0: {items:?}");
    assert_eq!(items[2], items[3], "slave 1 = master 1: {items:?}");
    assert_eq!(items[4], 0, "the proxy stores nothing: {items:?}");
    assert!(
        items[0] > 2000 && items[2] > 2000,
        "both partitions get keys: {items:?}"
    );
}

#[test]
fn a_sync_write_survives_sigkill_of_the_master() {
    let mut c = Cluster::build(&[]);
    let mut proxy = c.node(4).connect();
    // `key0` lives in partition 0 (master = node 0, slave = node 1) with the default simple hash.
    proxy.send(b"set key0 7 0 5 sync\r\nhello\r\n");
    assert_eq!(proxy.line(), "STORED");
    c.nodes[0].kill9();
    let mut slave = c.node(1).connect();
    assert_eq!(
        slave.gets("key0").map(|(f, _, v)| (f, v)),
        Some((7, b"hello".to_vec()))
    );
    // The slave is promoted once the index notices (monitor interval 1 s × threshold 3), and then serves writes.
    c.wait_state(1, "master", "active");
    let ok = wait_until(Duration::from_secs(10), || {
        let mut p = c.node(4).connect();
        p.call("get key0") == "VALUE key0 7 5"
    });
    assert!(ok, "the proxy reads key0 from the promoted slave");
    let mut p = c.node(4).connect();
    assert!(wait_until(Duration::from_secs(10), || p
        .set("key0", 1, 0, b"after")
        == "STORED"));
    assert_eq!(c.node(1).connect().get("key0"), Some(b"after".to_vec()));
}

#[test]
fn async_writes_reach_the_slave_and_stats_show_the_backlog() {
    let c = Cluster::build(&[]);
    let mut m = c.node(0).connect();
    for i in 0..200 {
        assert_eq!(m.set(&format!("key0:{i}"), i, 0, b"v"), "STORED");
    }
    let ok = wait_until(Duration::from_secs(10), || {
        c.node(0).connect().stat("replication_queue") == "0"
            && c.node(1).connect().stat("curr_items") == c.node(0).connect().stat("curr_items")
    });
    assert!(ok, "the slave catches up");
    let stats = c.node(0).connect().stats("");
    assert!(
        stats
            .iter()
            .any(|(k, _)| k == &format!("replication:127.0.0.1:{}:acked", c.node(1).port)),
        "{stats:?}"
    );
    // A write sent to a slave is forwarded to its master, and comes back replicated.
    let mut s = c.node(1).connect();
    assert_eq!(s.set("key0", 3, 0, b"via-slave"), "STORED");
    assert_eq!(c.node(0).connect().get("key0"), Some(b"via-slave".to_vec()));
}

/// A proxy's pooled connection that the master closed while idle (its `net-read-timeout`) is not used for the next
/// request: the first write after the idle spell is stored, not answered `SERVER_ERROR proxy error`.
#[test]
fn pooled_connections_closed_by_the_peer_are_not_reused() {
    let index = Flared::index(&["--monitor-interval=1"]);
    let master = Flared::node_of(index.port, &["--net-read-timeout=1"]);
    let proxy = Flared::node_of(index.port, &[]);
    let mut admin = index.connect();
    assert_eq!(
        admin.call(&format!("node role 127.0.0.1 {} master 1 0", master.port)),
        "OK"
    );
    assert!(wait_until(Duration::from_secs(20), || {
        proxy.connect().set("probe", 0, 0, b"x") == "STORED"
    }));
    let mut c = proxy.connect();
    for round in 0..3 {
        // Longer than the master's idle timeout (checked once a second): the pooled connection is closed by then.
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(
            c.set(&format!("k{round}"), 0, 0, b"v"),
            "STORED",
            "round {round}"
        );
        assert_eq!(c.get(&format!("k{round}")).as_deref(), Some(&b"v"[..]));
    }
}
