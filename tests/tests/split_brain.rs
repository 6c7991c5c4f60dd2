//! Split brain on real processes: a master cut off from the index server alone, with clients writing straight to
//! it and its slave still reaching it, must stop acknowledging writes before the index promotes the slave.
//!
//! Each daemon runs in its own network namespace ([`flare_tests::netns`]); the cut silences index <-> master only.
//! Two writers run throughout: A writes straight to the old master, B straight to the slave (which forwards to its
//! master until it is promoted, then answers itself). Every write is a meta set asking for its CAS unique
//! (`ms <key> <len> c`), and the unique tells which node acknowledged it: a node holding node map V issues uniques
//! from `V << 40` up (`core::versions::epoch_floor`), the old master never receives a map after the cut, and the
//! promotion is a newer map. So every acknowledgement with a unique under `(V0 + 1) << 40` (V0: the map every node
//! held when the link was cut) came from the old master, every one above from the new master, and the test asserts
//! that the old master's last acknowledgement was received before the new master's first.
//!
//! Needs root (network namespaces); without it the test says so and does nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flare_tests::netns::{self, Net};
use flare_tests::{wait_until, Flared};

/// What a writer saw: acknowledged writes (when the reply arrived, the unique) and refused ones.
#[derive(Default)]
struct Seen {
    acked: Vec<(Instant, u64)>,
    refused: Vec<(Instant, String)>,
    /// Requests that got no answer in time (a silenced connection) or could not connect.
    lost: usize,
}

fn writer(addr: String, prefix: &'static str, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            let sock = addr.parse().expect("address");
            match TcpStream::connect_timeout(&sock, Duration::from_millis(500)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    s.set_nodelay(true).unwrap();
                    let r = BufReader::new(s.try_clone().unwrap());
                    conn = Some((s, r));
                }
                Err(_) => {
                    seen.lost += 1;
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let (s, r) = conn.as_mut().unwrap();
        i += 1;
        let value = format!("{i:08}");
        let req = format!("ms {prefix}{i} {} c\r\n{value}\r\n", value.len());
        let mut line = String::new();
        let ok = s.write_all(req.as_bytes()).is_ok() && r.read_line(&mut line).is_ok_and(|n| n > 0);
        let at = Instant::now();
        if !ok {
            seen.lost += 1;
            conn = None;
            continue;
        }
        let line = line.trim_end().to_string();
        match line.strip_prefix("HD c").map(str::parse::<u64>) {
            Some(Ok(cas)) => seen.acked.push((at, cas)),
            _ => {
                seen.refused.push((at, line));
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    seen
}

fn field(index: &Flared, node: &Flared, name: &str) -> String {
    let key = format!("{}:{}:{name}", node.host, node.port);
    index
        .connect()
        .stats_nodes()
        .get(&key)
        .cloned()
        .unwrap_or_default()
}

fn wait_state(index: &Flared, node: &Flared, role: &str, state: &str) {
    let ok = wait_until(Duration::from_secs(20), || {
        field(index, node, "role") == role && field(index, node, "state") == state
    });
    assert!(
        ok,
        "{} did not become {role}/{state}: {:?}\n{}",
        node.addr(),
        index.connect().stats_nodes(),
        node.log()
    );
}

fn node_in(net: &Net, i: usize, index: &Flared) -> Flared {
    let arg = format!("--index-servers={}", index.addr());
    let node = Flared::start_at(
        Some(&net.ns(i)),
        &net.host(i),
        "flared",
        flare_tests::free_port(),
        &[&arg],
    );
    let registered = wait_until(Duration::from_secs(20), || {
        !field(index, &node, "role").is_empty()
    });
    assert!(
        registered,
        "{} did not register\n{}",
        node.addr(),
        node.log()
    );
    node
}

#[test]
fn a_master_cut_off_from_the_index_stops_acknowledging_before_its_slave_is_promoted() {
    if let Some(why) = netns::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let net = Net::new(3);
    let index = Flared::start_at(
        Some(&net.ns(0)),
        &net.host(0),
        "flarei",
        flare_tests::free_port(),
        &["--monitor-interval=1"],
    );
    let master = node_in(&net, 1, &index);
    let slave = node_in(&net, 2, &index);
    let admin = |line: String| assert_eq!(index.connect().call(&line), "OK", "{line}");
    admin(format!(
        "node role {} {} master 1 0",
        master.host, master.port
    ));
    wait_state(&index, &master, "master", "active");
    admin(format!("node role {} {} slave 1 0", slave.host, slave.port));
    wait_state(&index, &slave, "slave", "active");
    let v0: u64 = index.connect().stat("node_map_version").parse().unwrap();
    for n in [&master, &slave] {
        let held = wait_until(Duration::from_secs(10), || {
            n.connect().stat("node_map_version") == v0.to_string()
        });
        assert!(held, "{} does not hold map {v0}", n.addr());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let spawn = |addr: String, prefix| {
        let stop = stop.clone();
        thread::spawn(move || writer(addr, prefix, stop))
    };
    let a = spawn(master.addr(), "a");
    let b = spawn(slave.addr(), "b");
    thread::sleep(Duration::from_millis(1500));
    let cut_at = Instant::now();
    net.cut(0, 1);
    let promoted = wait_until(Duration::from_secs(30), || {
        field(&index, &slave, "role") == "master"
    });
    let promoted_at = Instant::now();
    // Let the new master serve for a while, and the old one go on refusing.
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!(promoted, "the slave was not promoted\n{}", index.log());

    let new_floor = (v0 + 1) << 40;
    let old: Vec<Instant> = a
        .acked
        .iter()
        .chain(&b.acked)
        .filter(|(_, cas)| *cas < new_floor)
        .map(|(at, _)| *at)
        .collect();
    let new: Vec<Instant> = b
        .acked
        .iter()
        .filter(|(_, cas)| *cas >= new_floor)
        .map(|(at, _)| *at)
        .collect();
    let strays = a.acked.iter().filter(|(_, cas)| *cas >= new_floor).count();
    let last_old = *old
        .iter()
        .max()
        .expect("the old master acknowledged writes");
    let first_new = *new
        .iter()
        .min()
        .expect("the new master acknowledged no write");
    let after_cut = |t: Instant| t.saturating_duration_since(cut_at).as_millis();
    let refusals = a.refused.iter().filter(|(at, _)| *at > cut_at).count();
    let sample = a.refused.first().map(|(_, l)| l.as_str()).unwrap_or("");
    let old_after_new = old.iter().filter(|t| **t >= first_new).count();
    println!(
        "map {v0} at the cut; acknowledged: old master {} (A {}, B via the slave {}), new master {}; \
         A refused {refusals} after the cut ({sample:?}), A lost {}, B refused {}, B lost {}",
        old.len(),
        a.acked.len() - strays,
        old.len() + strays - a.acked.len(),
        new.len(),
        a.lost,
        b.refused.len(),
        b.lost
    );
    println!(
        "after the cut: old master's last ack at {} ms, promotion seen at {} ms, new master's first ack at {} ms; \
         old acks after the new master's first: {old_after_new}",
        after_cut(last_old),
        after_cut(promoted_at),
        after_cut(first_new)
    );
    assert_eq!(
        strays, 0,
        "the old master handed out uniques of a map it never had"
    );
    assert!(refusals > 0, "the old master never refused a write");
    assert!(
        sample.starts_with("SERVER_ERROR"),
        "the old master's refusal is not a SERVER_ERROR: {sample:?}"
    );
    assert!(
        last_old < first_new,
        "split brain: the old master acknowledged {old_after_new} writes after the new master's first \
         ({} ms after it)",
        last_old.duration_since(first_new).as_millis()
    );
}
