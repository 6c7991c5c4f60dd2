//! The Prometheus endpoint of real daemons: a master with a slave behind one index server, each with
//! `--metrics-port`; traffic through the master shows up as requests by command and result, items, replication per
//! slave, and the index shows every node of the map.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flare_tests::{free_port, wait_until, Flared};

/// `GET /metrics` over plain TCP; the body.
fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics port open");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"),
        "{out}"
    );
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The value of the sample whose line starts with `series ` (name and labels exactly).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Gives the node on `port` its `role` (`master 1 0`, ...) and waits until the index shows it active.
fn assign(index: &Flared, port: u16, role: &str) {
    let line = format!("node role 127.0.0.1 {port} {role}");
    assert_eq!(index.connect().call(&line), "OK");
    assert!(wait_until(Duration::from_secs(20), || {
        index
            .connect()
            .stats_nodes()
            .get(&format!("127.0.0.1:{port}:state"))
            == Some(&"active".to_string())
    }));
}

#[test]
fn metrics_of_a_master_its_slave_and_the_index() {
    let index_metrics = free_port();
    let index = Flared::index(&[
        "--monitor-interval=1",
        &format!("--metrics-port={index_metrics}"),
    ]);
    let master_metrics = free_port();
    let master = Flared::node_of(index.port, &[&format!("--metrics-port={master_metrics}")]);
    let slave_metrics = free_port();
    let slave = Flared::node_of(index.port, &[&format!("--metrics-port={slave_metrics}")]);
    assign(&index, master.port, "master 1 0");
    assign(&index, slave.port, "slave 1 0");

    let mut c = master.connect();
    for i in 0..100 {
        assert_eq!(c.set(&format!("k{i}"), 0, 0, b"value"), "STORED");
    }
    for i in 0..10 {
        assert!(c.get(&format!("k{i}")).is_some()); // `gets` on the wire
    }
    assert!(c.get("missing").is_none());
    assert_eq!(c.call("add k1 0 0 1\r\nx"), "NOT_STORED");
    // Replies are counted when the connection's batch ends; `stats` starts a new batch.
    let _ = c.stats("");

    let body = scrape(master_metrics);
    let slave_key = format!("127.0.0.1:{}", slave.port);
    assert_eq!(sample(&body, "flare_items"), Some(100.0), "{body}");
    assert_eq!(
        sample(&body, r#"flare_requests_total{command="set",result="ok"}"#),
        Some(100.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, r#"flare_requests_total{command="gets",result="ok"}"#),
        Some(10.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"flare_requests_total{command="gets",result="miss"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"flare_requests_total{command="add",result="not_stored"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"flare_request_duration_seconds_count{command="set"}"#
        ),
        Some(100.0),
        "{body}"
    );
    assert_eq!(sample(&body, "flare_get_hits_total"), Some(10.0), "{body}");
    assert!(
        body.contains(r#"flare_node_info{role="master",state="active",partition="0"} 1"#),
        "{body}"
    );
    assert!(
        sample(&body, "flare_node_map_version").unwrap_or(0.0) >= 2.0,
        "{body}"
    );
    assert!(
        sample(
            &body,
            &format!(r#"flare_replication_queue{{slave="{slave_key}"}}"#)
        )
        .is_some(),
        "{body}"
    );
    // Every write reached the slave: its acknowledged position catches up with the 100 sets.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let b = scrape(master_metrics);
            sample(
                &b,
                &format!(r#"flare_replication_acked_position{{slave="{slave_key}"}}"#),
            )
            .unwrap_or(0.0)
                >= 100.0
        }),
        "{}",
        scrape(master_metrics)
    );
    assert!(sample(&body, "process_resident_memory_bytes").unwrap_or(0.0) > 0.0);

    let slave_body = scrape(slave_metrics);
    assert!(
        slave_body.contains(r#"flare_node_info{role="slave",state="active",partition="0"} 1"#),
        "{slave_body}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            sample(&scrape(slave_metrics), "flare_items") == Some(100.0)
        }),
        "{}",
        scrape(slave_metrics)
    );

    let index_body = scrape(index_metrics);
    for (node, role) in [(master.port, "master"), (slave.port, "slave")] {
        let series = format!(
            r#"flare_index_node_info{{node="127.0.0.1:{node}",role="{role}",state="active",partition="0"}}"#
        );
        assert_eq!(sample(&index_body, &series), Some(1.0), "{index_body}");
    }
    assert_eq!(
        sample(&index_body, "flare_partitions"),
        Some(1.0),
        "{index_body}"
    );
    assert_eq!(
        sample(
            &index_body,
            r#"flare_index_nodes{role="master",state="active"}"#
        ),
        Some(1.0),
        "{index_body}"
    );
}

#[test]
fn metrics_are_off_by_default() {
    let node = Flared::start(&[]);
    let log = node.log();
    assert!(!log.contains("metrics on"), "{log}");
}
