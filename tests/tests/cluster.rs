//! End-to-end tests of a cluster of real processes on loopback: one `flarei`, two partitions of a master and a slave
//! each, and a proxy node; data written with a real memcached client (pymemcache) through the proxy and read back
//! from every node; sync replication surviving a SIGKILL of the master.

use std::process::Command;
use std::time::Duration;

use flare_tests::command::{run, run_ok};
use flare_tests::{wait_until, Client, Cluster, Flared};

/// Index + 5 nodes; partitions 0 and 1 with a master and a slave (balance 1) each, node 4 a proxy.
fn build(node_args: &[&str]) -> Cluster {
    let c = Cluster::start(5, node_args);
    c.role(0, "master 1 0");
    c.wait_state(0, "master", "active");
    c.role(2, "master 1 1");
    c.wait_state(2, "master", "ready");
    let activate = format!("node state 127.0.0.1 {} active", c.nodes[2].port);
    assert_eq!(c.index_call(&activate), "OK");
    c.wait_state(2, "master", "active");
    c.role(1, "slave 1 0");
    c.role(3, "slave 1 1");
    c.wait_state(1, "slave", "active");
    c.wait_state(3, "slave", "active");
    // Flare keeps a building slave at balance 0; give it its read weight now that it is active.
    c.role(1, "slave 1 0");
    c.role(3, "slave 1 1");
    // Every node has applied the last map (the version the index shows).
    c.converged();
    c
}

#[test]
fn ten_thousand_keys_through_the_proxy_are_readable_from_every_node() {
    let c = build(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/cluster_rw.py");
    let ports: Vec<String> = c.nodes.iter().map(|n| n.port.to_string()).collect();
    let (ok, text) = run(Command::new("python3")
        .arg(script)
        .arg(c.node(4).port.to_string())
        .args(&ports));
    assert!(ok, "{text}\n--- proxy log ---\n{}", c.node(4).log());
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
    let mut c = build(&[]);
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
    let c = build(&[]);
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

/// A binary request (memcached's binary protocol): header, extras, key, value.
fn binary_request(opcode: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.push(0);
    p.extend_from_slice(&0u16.to_be_bytes());
    let body = (extras.len() + key.len() + value.len()) as u32;
    p.extend_from_slice(&body.to_be_bytes());
    p.extend_from_slice(&0xabcd_u32.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// One binary reply: (status, cas, value).
fn binary_reply(c: &mut Client) -> (u16, u64, Vec<u8>) {
    let h = c.bytes(24);
    assert_eq!(h[0], 0x81, "a binary reply: {h:?}");
    let status = u16::from_be_bytes([h[6], h[7]]);
    let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    assert_eq!(
        &h[12..16],
        &0xabcd_u32.to_be_bytes(),
        "the opaque is echoed"
    );
    let cas = u64::from_be_bytes(h[16..24].try_into().unwrap());
    let body = c.bytes(body);
    let (extras, key) = (h[4] as usize, u16::from_be_bytes([h[2], h[3]]) as usize);
    (status, cas, body[extras + key..].to_vec())
}

/// What binary clients (memjs, bmemcached, dalli, php-memcached, spymemcached) send for `incr`: an initial value
/// and an exptime, which the text protocol cannot say. Through a proxy it used to be `SERVER_ERROR proxy failure`.
#[test]
fn binary_incr_with_an_initial_value_and_delete_with_a_cas_work_through_the_proxy() {
    let c = build(&[]);
    let mut proxy = c.node(4).connect();
    let incr = |delta: u64| {
        let mut extras = delta.to_be_bytes().to_vec();
        extras.extend_from_slice(&10u64.to_be_bytes());
        extras.extend_from_slice(&0u32.to_be_bytes());
        binary_request(0x05, b"foo", &extras, b"", 0)
    };
    // `foo` is in partition 1 (master node 2).
    proxy.send(&incr(5));
    let (status, cas1, value) = binary_reply(&mut proxy);
    assert_eq!(
        (status, &value[..]),
        (0, &10u64.to_be_bytes()[..]),
        "created with the initial value"
    );
    proxy.send(&incr(5));
    let (status, cas2, value) = binary_reply(&mut proxy);
    assert_eq!((status, &value[..]), (0, &15u64.to_be_bytes()[..]));
    let on_master = c.node(2).connect().gets("foo").expect("foo on its master");
    assert_eq!(on_master.2, b"15");
    assert_eq!(cas2, on_master.1, "the reply carries the item's CAS");
    assert_ne!(cas1, cas2);
    // A binary set through the proxy answers with the new CAS too.
    let mut extras = 0u32.to_be_bytes().to_vec();
    extras.extend_from_slice(&0u32.to_be_bytes());
    proxy.send(&binary_request(0x01, b"foo", &extras, b"20", 0));
    let (status, cas3, _) = binary_reply(&mut proxy);
    assert_eq!(status, 0);
    assert_eq!(cas3, c.node(2).connect().gets("foo").unwrap().1);
    // Delete with a stale CAS: exists (0x0002); with the right one: deleted.
    proxy.send(&binary_request(0x04, b"foo", b"", b"", cas2));
    assert_eq!(binary_reply(&mut proxy).0, 0x0002);
    proxy.send(&binary_request(0x04, b"foo", b"", b"", cas3));
    assert_eq!(binary_reply(&mut proxy).0, 0);
    assert_eq!(c.node(2).connect().get("foo"), None);
}

fn items(n: &Flared) -> u64 {
    n.connect().stat("curr_items").parse().unwrap()
}

/// A client's `flush_all` on any node flushes the whole cluster (every master, and through replication its slaves);
/// an operator's session (opened with `version`, as Flare's tools do) and `flare-admin flush` flush one node.
#[test]
fn flush_all_from_a_client_flushes_the_cluster_and_an_operator_flushes_one_node() {
    let c = build(&[]);
    let fill = |tag: &str| {
        let mut p = c.node(4).connect();
        for i in 0..100 {
            assert_eq!(p.set(&format!("{tag}{i}"), 0, 0, b"v"), "STORED");
        }
        let ok = wait_until(Duration::from_secs(10), || {
            items(c.node(0)) + items(c.node(2)) == 100
                && items(c.node(1)) == items(c.node(0))
                && items(c.node(3)) == items(c.node(2))
        });
        assert!(ok, "the writes reach every replica");
    };
    fill("a");
    assert_eq!(c.node(4).connect().call("flush_all"), "OK");
    let everywhere_empty = || (0..4).all(|i| items(c.node(i)) == 0);
    assert!(
        wait_until(Duration::from_secs(10), everywhere_empty),
        "masters and slaves flushed: {:?}",
        (0..4).map(|i| items(c.node(i))).collect::<Vec<_>>()
    );
    // The slaves acknowledged the replicated flush (not retried until dropped as a failure).
    for m in [0, 2] {
        assert!(wait_until(Duration::from_secs(5), || c
            .node(m)
            .connect()
            .stat("replication_queue")
            == "0"));
        assert_eq!(c.node(m).connect().stat("replication_failures"), "0");
    }
    // With a delay, everywhere at its time; noreply answers nothing.
    fill("b");
    let mut p = c.node(4).connect();
    p.send(b"flush_all 2 noreply\r\nversion\r\n");
    assert!(
        p.line().starts_with("VERSION "),
        "noreply: no OK before VERSION"
    );
    assert!(items(c.node(0)) > 0, "not before its time");
    assert!(wait_until(Duration::from_secs(10), everywhere_empty));
    // An operator's session flushes the node it talks to, and a master's slave follows it.
    fill("c");
    let (m0, m1) = (items(c.node(0)), items(c.node(2)));
    let mut operator = c.node(0).connect();
    assert!(operator.call("version").starts_with("VERSION "));
    assert_eq!(operator.call("flush_all"), "OK");
    assert!(wait_until(Duration::from_secs(10), || items(c.node(0))
        == 0
        && items(c.node(1)) == 0));
    assert_eq!(
        items(c.node(2)),
        m1,
        "the other partition keeps its {m1} items (m0 had {m0})"
    );
    run_ok(Command::new(flare_tests::binary("flare-admin")).args([
        "flush",
        "--force",
        &c.node(2).addr(),
    ]));
    assert!(wait_until(Duration::from_secs(10), || items(c.node(2))
        == 0
        && items(c.node(3)) == 0));
}
