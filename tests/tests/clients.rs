//! End-to-end tests of a standalone `flared` with widely used memcached clients that nobody on this project wrote:
//! Python's pymemcache and Debian's libmemcached-tools (memccp, memccat, memccapable).

use std::process::Command;

use flare_tests::command::{run, run_ok};
use flare_tests::{have, Flared};

#[test]
fn pymemcache_suite_passes() {
    let node = Flared::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/pymemcache_e2e.py");
    let (ok, out) = run(Command::new("python3").arg(script).arg(node.addr()));
    assert!(
        ok,
        "pymemcache checks failed:\n{out}\n--- flared log ---\n{}",
        node.log()
    );
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn memccp_and_memccat_round_trip_files() {
    assert!(
        have("memccp") && have("memccat"),
        "libmemcached-tools missing: run scripts/install-deps"
    );
    let node = Flared::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for (i, size) in [0usize, 1, 1000, 100_000, 1 << 20].iter().enumerate() {
        let name = format!("file{i}.bin");
        let data: Vec<u8> = (0..*size).map(|j| (j * 31 + i) as u8).collect();
        std::fs::write(dir.path().join(&name), &data).unwrap();
        expected.push((name, data));
    }
    let servers = format!("--servers={}", node.addr());
    for (name, _) in &expected {
        let (ok, out) = run(Command::new("memccp")
            .arg(&servers)
            .arg(dir.path().join(name)));
        assert!(ok, "memccp {name}: {out}");
    }
    for (name, data) in &expected {
        let got = run_ok(Command::new("memccat").arg(&servers).arg(name));
        // memccat prints the value followed by a newline.
        let mut want = data.clone();
        want.push(b'\n');
        assert_eq!(got, want, "memccat returned different bytes for {name}");
    }
}

#[test]
fn memcdump_and_memcstat_work() {
    // libmemcached 1.1's memcdump sends `version`, then `stats cachedump <class> 0` for classes 0..63.
    assert!(
        have("memcdump") && have("memcstat"),
        "libmemcached-tools missing: run scripts/install-deps"
    );
    let node = Flared::start(&[]);
    let mut c = node.connect();
    let mut want: Vec<String> = (0..300).map(|i| format!("dump:{i:04}")).collect();
    for k in &want {
        assert_eq!(c.set(k, 0, 0, b"v"), "STORED");
    }
    assert_eq!(c.call("delete dump:0007"), "DELETED");
    want.retain(|k| k != "dump:0007");
    let servers = format!("--servers={}", node.addr());
    let out = run_ok(Command::new("memcdump").arg(&servers));
    let mut got: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    assert_eq!(got, want, "memcdump must list every live key once");
    let (ok, stat) = run(Command::new("memcstat").arg(&servers));
    assert!(ok && stat.contains("curr_items: 299"), "memcstat: {stat}");
}

/// `memccapable` with `flag` (`-a` ASCII, `-b` binary) against a fresh node passes.
fn memccapable(flag: &str) {
    assert!(
        have("memccapable"),
        "libmemcached-tools missing: run scripts/install-deps"
    );
    let node = Flared::start(&[]);
    let port = node.port.to_string();
    let args = ["-h", "127.0.0.1", "-p", &port, flag, "-t", "5"];
    let (ok, out) = run(Command::new("memccapable").args(args));
    assert!(
        ok,
        "memccapable {flag} failed:\n{out}\n--- flared log ---\n{}",
        node.log()
    );
}

#[test]
fn memccapable_ascii_protocol_passes() {
    memccapable("-a");
}

#[test]
fn memccapable_binary_protocol_passes() {
    memccapable("-b");
}
