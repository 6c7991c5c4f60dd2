//! Persistence: every acknowledged write survives SIGKILL of `flared` (WAL in OS buffers, `storage-sync = none`)
//! with the same value, flags and cas version; and a graceful SIGTERM under load exits 0 quickly.

use std::time::Duration;

use flare_tests::Flared;

#[test]
fn acknowledged_writes_survive_sigkill() {
    const N: usize = 5_000;
    let mut node = Flared::start(&[]);
    let mut c = node.connect();
    let mut expected = Vec::with_capacity(N);
    for i in 0..N {
        let key = format!("dur:{i}");
        let value = format!("value-{i}-{}", "v".repeat(i % 300));
        let flags = (i as u32).wrapping_mul(2_654_435_761);
        assert_eq!(c.set(&key, flags, 0, value.as_bytes()), "STORED");
        if i % 7 == 0 {
            // A few keys get more writes so their versions differ from 1.
            assert_eq!(c.call(&format!("append {key} 0 0 1\r\n!")), "STORED");
        }
        expected.push(key);
    }
    // Deleted keys must stay deleted.
    for i in (0..N).step_by(10) {
        assert_eq!(c.call(&format!("delete dur:{i}")), "DELETED");
    }
    let before: Vec<_> = expected.iter().map(|k| c.gets(k)).collect();
    drop(c);
    node.kill9();
    node.spawn();
    let mut c = node.connect();
    for (key, want) in expected.iter().zip(&before) {
        assert_eq!(
            &c.gets(key),
            want,
            "key {key} differs after SIGKILL + restart"
        );
    }
    assert_eq!(c.stat("curr_items"), (N - N / 10).to_string());
    // Versions continue after a restart: a new write gets a higher cas than before the crash.
    let (_, v_before, _) = before[1].clone().expect("dur:1 was written");
    assert_eq!(c.set("dur:1", 0, 0, b"again"), "STORED");
    let (_, v_after, _) = c.gets("dur:1").unwrap();
    assert!(
        v_after > v_before,
        "version must keep increasing across restarts ({v_before} -> {v_after})"
    );
}

#[test]
fn sigterm_under_load_exits_zero_within_two_seconds() {
    let mut node = Flared::start(&[]);
    let addr = node.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let addr = addr.clone();
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let Ok(stream) = std::net::TcpStream::connect(&addr) else {
                return 0u64;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            let mut stream = std::io::BufReader::new(stream);
            let mut acked = 0u64;
            use std::io::{BufRead, Write};
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = format!("set load:{w}:{acked} 0 0 100\r\n{}\r\n", "x".repeat(100));
                if stream.get_mut().write_all(req.as_bytes()).is_err() {
                    break;
                }
                let mut line = String::new();
                match stream.read_line(&mut line) {
                    Ok(n) if n > 0 && line == "STORED\r\n" => acked += 1,
                    _ => break,
                }
            }
            acked
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (status, took) = node.terminate(Duration::from_secs(5));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let status = status
        .unwrap_or_else(|| panic!("flared did not exit within 5 s of SIGTERM\n{}", node.log()));
    assert!(status.success(), "exit status {status:?}\n{}", node.log());
    assert!(
        took < Duration::from_secs(2),
        "graceful shutdown took {took:?}"
    );
    assert!(acked > 0, "the load generator got no acknowledgements");
    // Everything acknowledged before the stop is there after a restart.
    node.spawn();
    let mut c = node.connect();
    let items: u64 = c.stat("curr_items").parse().unwrap();
    assert!(
        items >= acked,
        "acknowledged {acked} writes but only {items} items after restart"
    );
}
