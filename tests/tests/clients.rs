//! End-to-end tests of a standalone `flared` with widely used memcached clients that nobody on this project wrote:
//! Python's pymemcache and Debian's libmemcached-tools (memccp, memccat, memccapable).

use std::process::Command;

use flare_tests::{have, Flared};

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

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
        let out = Command::new("memccat")
            .arg(&servers)
            .arg(name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "memccat {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // memccat prints the value followed by a newline.
        let mut want = data.clone();
        want.push(b'\n');
        assert_eq!(
            out.stdout, want,
            "memccat returned different bytes for {name}"
        );
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
    let out = Command::new("memcdump").arg(&servers).output().unwrap();
    assert!(
        out.status.success(),
        "memcdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    assert_eq!(got, want, "memcdump must list every live key once");
    let (ok, stat) = run(Command::new("memcstat").arg(&servers));
    assert!(ok && stat.contains("curr_items: 299"), "memcstat: {stat}");
}

#[test]
fn memccapable_ascii_protocol_passes() {
    assert!(
        have("memccapable"),
        "libmemcached-tools missing: run scripts/install-deps"
    );
    let node = Flared::start(&[]);
    let (ok, out) = run(Command::new("memccapable").args([
        "-h",
        "127.0.0.1",
        "-p",
        &node.port.to_string(),
        "-a",
        "-t",
        "5",
    ]));
    assert!(
        ok,
        "memccapable -a failed:\n{out}\n--- flared log ---\n{}",
        node.log()
    );
}

#[test]
fn memccapable_binary_protocol_passes() {
    assert!(
        have("memccapable"),
        "libmemcached-tools missing: run scripts/install-deps"
    );
    let node = Flared::start(&[]);
    let (ok, out) = run(Command::new("memccapable").args([
        "-h",
        "127.0.0.1",
        "-p",
        &node.port.to_string(),
        "-b",
        "-t",
        "5",
    ]));
    assert!(
        ok,
        "memccapable -b failed:\n{out}\n--- flared log ---\n{}",
        node.log()
    );
}
