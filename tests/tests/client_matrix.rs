//! The client matrix: memcached client libraries nobody here wrote (dalli, pylibmc in text and binary mode,
//! python-binary-memcached, php-memcached in text and binary mode, Perl Cache::Memcached and Cache::Memcached::Fast,
//! gomemcache, spymemcached in text and binary mode, memjs) run the same checks (`tests/clients/README.md`) against
//! Debian's memcached, a standalone node and the proxy of a two-partition cluster. Each must pass everything on all
//! three; memcached's run shows the check itself is right. The clients come from `scripts/install-deps`.

use std::path::{Path, PathBuf};
use std::process::Command;

use flare_tests::{have, target_dir, Flared, Memcached, TwoPartitions};

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// One client library in one protocol mode, and the checks its script runs.
struct Lib {
    name: &'static str,
    /// The command line without the port.
    command: Vec<String>,
    env: Vec<(&'static str, String)>,
    checks: &'static [&'static str],
}

const ALL: &[&str] = &[
    "set_get",
    "get_multi",
    "cas_unique_across_keys",
    "cas_round_trip",
    "counter",
    "add_delete",
    "flush_all",
    "version",
];

fn need(cond: bool, what: &str) {
    assert!(cond, "{what} missing: run scripts/install-deps");
}

/// Builds what needs building (the Go and Java programs) into a temporary directory and lists the libraries.
fn libraries(build: &Path) -> Vec<Lib> {
    let dir = clients_dir();
    let script = |f: &str| dir.join(f).display().to_string();
    let s = |v: &str| v.to_string();
    need(have("php"), "php (php-cli, php-memcached)");
    need(have("ruby"), "ruby (ruby-dalli)");
    need(have("perl"), "perl");
    need(
        have("go"),
        "go (golang-go, golang-github-bradfitz-gomemcache-dev)",
    );
    need(have("javac"), "javac");
    need(have("node"), "node");
    need(
        Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 (python3-pylibmc)",
    );

    let go_bin = build.join("gomatrix");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&go_bin)
        .arg(dir.join("matrix.go"))
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOCACHE", build.join("gocache"))
        .output()
        .expect("go build");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let spy = "/usr/share/java/spymemcached.jar";
    need(Path::new(spy).exists(), spy);
    let out = Command::new("javac")
        .arg("-d")
        .arg(build)
        .args(["-cp", spy])
        .arg(dir.join("Matrix.java"))
        .output()
        .expect("javac");
    assert!(
        out.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let classpath = format!("{spy}:{}", build.display());

    let node_modules = target_dir().join("clients").join("node_modules");
    need(
        node_modules.join("memjs").exists(),
        "memjs (npm, under target/clients)",
    );

    let no_cas_unique = &[
        "set_get",
        "get_multi",
        "cas_round_trip",
        "counter",
        "add_delete",
        "flush_all",
    ];
    let mut libs = vec![
        Lib {
            name: "pylibmc text",
            command: vec![
                s("/usr/bin/python3"),
                script("matrix.py"),
                s("pylibmc-text"),
            ],
            env: vec![],
            checks: ALL,
        },
        Lib {
            name: "pylibmc binary",
            command: vec![
                s("/usr/bin/python3"),
                script("matrix.py"),
                s("pylibmc-binary"),
            ],
            env: vec![],
            checks: ALL,
        },
        Lib {
            name: "python-binary-memcached",
            command: vec![s("python3"), script("matrix.py"), s("bmemcached")],
            env: vec![],
            checks: ALL,
        },
        Lib {
            name: "dalli",
            command: vec![s("ruby"), script("matrix.rb")],
            env: vec![],
            checks: ALL,
        },
        Lib {
            name: "Cache::Memcached",
            command: vec![s("perl"), script("matrix.pl"), s("plain")],
            env: vec![],
            checks: &["set_get", "get_multi", "counter", "add_delete", "flush_all"],
        },
        Lib {
            name: "Cache::Memcached::Fast",
            command: vec![s("perl"), script("matrix.pl"), s("fast")],
            env: vec![],
            checks: ALL,
        },
        Lib {
            name: "gomemcache",
            command: vec![go_bin.display().to_string()],
            env: vec![],
            checks: no_cas_unique,
        },
        Lib {
            name: "memjs",
            command: vec![s("node"), script("matrix.js")],
            env: vec![("NODE_PATH", node_modules.display().to_string())],
            checks: &["set_get", "counter", "add_delete", "flush_all", "version"],
        },
    ];
    for mode in ["text", "binary"] {
        libs.push(Lib {
            name: if mode == "text" {
                "php-memcached text"
            } else {
                "php-memcached binary"
            },
            command: vec![s("php"), script("matrix.php"), s(mode)],
            env: vec![],
            checks: ALL,
        });
        libs.push(Lib {
            name: if mode == "text" {
                "spymemcached text"
            } else {
                "spymemcached binary"
            },
            command: vec![s("java"), s("-cp"), classpath.clone(), s("Matrix"), s(mode)],
            env: vec![],
            checks: ALL,
        });
    }
    libs
}

/// Runs one library against `port`: the problems found (empty when every expected check printed `ok`).
fn run(lib: &Lib, port: u16) -> Vec<String> {
    let mut cmd = Command::new(&lib.command[0]);
    cmd.args(&lib.command[1..]).arg(port.to_string());
    for (k, v) in &lib.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{}: {e}", lib.name));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut problems: Vec<String> = stdout
        .lines()
        .filter(|l| !l.starts_with("ok "))
        .map(|l| format!("{}: {l}", lib.name))
        .collect();
    for check in lib.checks {
        if !stdout.lines().any(|l| l == format!("ok {check}")) && problems.is_empty() {
            problems.push(format!("{}: check {check} did not run", lib.name));
        }
    }
    if !out.status.success() && problems.is_empty() {
        problems.push(format!(
            "{}: exit {:?}: {}",
            lib.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    problems
}

#[test]
fn every_client_library_passes_against_memcached_a_node_and_a_proxy() {
    let build = tempfile::tempdir().expect("temp dir");
    let libs = libraries(build.path());
    let memcached = Memcached::start(&[]);
    let node = Flared::start(&[]);
    let cluster = TwoPartitions::build();
    let mut problems = Vec::new();
    let mut runs = 0;
    for (target, port) in [
        ("memcached", memcached.port),
        ("node", node.port),
        ("proxy", cluster.proxy()),
    ] {
        for lib in &libs {
            runs += 1;
            problems.extend(
                run(lib, port)
                    .into_iter()
                    .map(|p| format!("[{target}] {p}")),
            );
        }
    }
    eprintln!(
        "client matrix: {} libraries x 3 targets = {runs} runs, {} problems",
        libs.len(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{}\n--- proxy log ---\n{}",
        problems.join("\n"),
        cluster.nodes[2].log()
    );
}

#[test]
fn a_get_of_18725_keys_through_a_proxy_is_answered_as_memcached_does() {
    let memcached = Memcached::start(&[]);
    let cluster = TwoPartitions::build();
    let proxy = format!("127.0.0.1:{}", cluster.proxy());
    let (sets, get) = flare_tests::big_get();
    for addr in [memcached.addr(), proxy.clone()] {
        flare_tests::exchange(&addr, &sets);
    }
    let want = flare_tests::exchange(&memcached.addr(), &get);
    let got = flare_tests::exchange(&proxy, &get);
    let values = |r: &[u8]| r.windows(6).filter(|w| w == b"VALUE ").count();
    assert_eq!(values(&want.reply), 12_483);
    assert!(
        got == want,
        "proxy: {} bytes, {} values, closed {}; memcached: {} bytes",
        got.reply.len(),
        values(&got.reply),
        got.closed,
        want.reply.len()
    );
}
