//! `flare-admin` and `flare-stats` against real processes (admin-tool.md): a cluster is built, grown (a second
//! partition, an extra slave), reconstructed and shrunk only through the tool, with the data checked after every
//! step; plus the output formats (`list`, `stats`, `--json`), dump → restore into a fresh cluster, `verify` OK and NG,
//! and refusals (no terminal and no `--force`, an unreachable index).
//!
//! The tool runs with stdin from /dev/null, as in CI: every change needs `--force`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flare_tests::{binary, free_port, wait_until, Client, Cluster};

/// What one run of the tool printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self, what: &str) -> Run {
        assert_eq!(
            self.code, 0,
            "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `flare-admin` (or `flare-stats`) with `args`, no terminal, and a 120 s limit.
fn tool(program: &str, args: &[&str]) -> Run {
    let mut child = Command::new(binary(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the tool");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `flare-admin -i <index> <args>`.
fn admin(c: &Cluster, args: &[&str]) -> Run {
    let index = c.index.addr();
    let mut all = vec!["-i", index.as_str()];
    all.extend_from_slice(args);
    tool("flare-admin", &all)
}

/// Every key of `data` reads back with its flags and value through every running node.
fn check_data(c: &Cluster, data: &BTreeMap<String, (u32, Vec<u8>)>, step: &str) {
    c.converged();
    for n in c.nodes.iter().filter(|n| n.child.is_some()) {
        let mut c = n.connect();
        for (k, (flags, value)) in data {
            let got = c.gets(k).map(|(f, _, v)| (f, v));
            assert_eq!(
                got.as_ref(),
                Some(&(*flags, value.clone())),
                "{step}: {k} through {}",
                n.addr()
            );
        }
    }
}

/// Waits until a master and its slaves hold the same number of items (and `expected`, if given).
fn same_items(c: &Cluster, master: usize, slaves: &[usize], step: &str) -> u64 {
    let ok = wait_until(Duration::from_secs(15), || {
        let m = c.items(master);
        slaves.iter().all(|s| c.items(*s) == m)
    });
    let counts: Vec<u64> = std::iter::once(master)
        .chain(slaves.iter().copied())
        .map(|i| c.items(i))
        .collect();
    assert!(ok, "{step}: master and slaves differ: {counts:?}");
    counts[0]
}

fn write(c: &mut Client, data: &mut BTreeMap<String, (u32, Vec<u8>)>, prefix: &str, n: u32) {
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        let value = format!("value {i} of {prefix}").into_bytes();
        assert_eq!(c.set(&key, i, 0, &value), "STORED", "{key}");
        data.insert(key, (i, value));
    }
}

#[test]
fn a_cluster_is_built_grown_reconstructed_and_shrunk_with_flare_admin_alone() {
    let mut c = Cluster::start(4, &[]);
    let (k0, k1, k2, k3) = (c.key(0), c.key(1), c.key(2), c.key(3));
    let mut data = BTreeMap::new();

    // Build: the first partition and its data.
    let run = admin(&c, &["master", "--force", &format!("{k0}:1:0")]).ok("master");
    assert!(
        run.stdout
            .contains(&format!("{k0:<32}         0 master active       1")),
        "{}",
        run.stdout
    );
    write(&mut c.nodes[0].connect(), &mut data, "a", 500);

    // A slave: progress lines until it is active, and it holds what the master holds.
    let run = admin(
        &c,
        &[
            "slave",
            "--force",
            "--build-timeout",
            "60",
            &format!("{k1}:2:0"),
        ],
    )
    .ok("slave");
    assert!(
        run.stdout.contains("started constructing slave node..."),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("/500 (role = slave, state = active) [ETA: "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("state is active -> stop waiting"),
        "{}",
        run.stderr
    );
    assert_eq!(
        (c.role_state(1), c.field(1, "balance")),
        ("slave/active".into(), "2".into())
    );
    assert_eq!(same_items(&c, 0, &[1], "slave"), 500);
    check_data(&c, &data, "after the slave");

    // Grow: a second partition, activated, then an extra slave for it.
    let run = admin(
        &c,
        &[
            "master",
            "--force",
            "--activate",
            "--build-timeout",
            "60",
            &format!("{k2}:1:1"),
        ],
    )
    .ok("master of partition 1");
    assert!(
        run.stderr.contains("(role = master, state = ready)"),
        "{}",
        run.stderr
    );
    assert_eq!(c.role_state(2), "master/active");
    c.converged();
    let ok = wait_until(Duration::from_secs(15), || c.items(0) + c.items(2) == 500);
    assert!(
        ok,
        "moved keys leave partition 0: {} + {}",
        c.items(0),
        c.items(2)
    );
    assert!(
        c.items(2) > 100 && c.items(2) < 400,
        "about half move: {}",
        c.items(2)
    );
    let run = admin(
        &c,
        &[
            "slave",
            "--force",
            "--build-timeout",
            "60",
            &format!("{k3}:1:1"),
        ],
    )
    .ok("slave of partition 1");
    assert!(
        run.stderr.contains("state is active -> stop waiting"),
        "{}",
        run.stderr
    );
    write(&mut c.nodes[3].connect(), &mut data, "b", 200);
    let p0 = same_items(&c, 0, &[1], "partition 0 after growth");
    let p1 = same_items(&c, 2, &[3], "partition 1 after growth");
    assert_eq!(p0 + p1, 700);
    check_data(&c, &data, "after growth");
    let run = admin(&c, &["verify"]).ok("verify after growth");
    assert!(run.stdout.ends_with("OK\n"), "{}", run.stdout);

    // Reconstruct: a slave with no other slave beside it is refused without --unsafe.
    let run = admin(&c, &["reconstruct", "--force", &k3]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains(&format!(
        "The partition needs one more slave to reconstruct {k3} safely."
    )));
    // The master of partition 0: its slave takes over and it comes back as a slave, rebuilt.
    let run = admin(
        &c,
        &[
            "reconstruct",
            "--force",
            "--unsafe",
            "--build-timeout",
            "60",
            &k0,
        ],
    )
    .ok("reconstruct the master");
    for step in [
        "turning down...",
        "waiting for node to be active again...",
        "started constructing node...",
        "done.",
    ] {
        assert!(run.stdout.contains(step), "{step}: {}", run.stdout);
    }
    assert_eq!(
        (c.role_state(0), c.role_state(1)),
        ("slave/active".into(), "master/active".into())
    );
    assert_eq!(c.field(0, "balance"), "1", "the old balance is kept");
    same_items(&c, 1, &[0], "after reconstruct");
    check_data(&c, &data, "after reconstruct");

    // Shrink: stop the extra slave and remove it; retire partition 0's master (its slave takes over).
    c.nodes[3].kill9();
    admin(&c, &["down", "--force", &k3]).ok("down the stopped slave");
    admin(&c, &["remove", "--force", &k3]).ok("remove the slave");
    c.nodes[1].kill9();
    admin(&c, &["down", "--force", &k1]).ok("down the master");
    assert_eq!(c.role_state(0), "master/active", "the slave took over");
    let run = admin(&c, &["remove", "--force", &k1]).ok("remove the old master");
    assert!(run.stdout.contains("has been removed."), "{}", run.stdout);
    let list = admin(&c, &["list"]).ok("list").stdout;
    assert!(!list.contains(&k1) && !list.contains(&k3), "{list}");
    assert_eq!(list.lines().count(), 3, "{list}");
    check_data(&c, &data, "after shrinking");
    let run = admin(&c, &["verify"]).ok("verify after shrinking");
    assert!(run.stdout.ends_with("OK\n"), "{}", run.stdout);
}

#[test]
fn list_prints_flare_tools_columns() {
    let c = Cluster::start(2, &[]);
    admin(&c, &["master", "--force", &format!("{}:1:0", c.key(0))]).ok("master");
    let run = admin(&c, &["list"]).ok("list");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "node                             partition   role  state balance"
    );
    assert_eq!(
        lines[1],
        format!(
            "{:<32} {:>9} {:>6} {:>6} {:>7}",
            c.key(0),
            0,
            "master",
            "active",
            1
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{:<32} {:>9} {:>6} {:>6} {:>7}",
            c.key(1),
            "-",
            "proxy",
            "active",
            0
        )
    );
    let json = admin(&c, &["list", "--json"]).ok("list --json").stdout;
    assert!(
        json.contains(&format!("\"node\": \"{}\"", c.key(1))),
        "{json}"
    );
    assert!(json.contains("\"partition\": -1"), "{json}");
}

#[test]
fn stats_table_and_json_show_every_field() {
    let c = Cluster::start(2, &[]);
    admin(&c, &["master", "--force", &format!("{}:1:0", c.key(0))]).ok("master");
    let mut m = c.nodes[0].connect();
    for i in 0..30 {
        assert_eq!(m.set(&format!("s{i}"), 0, 0, b"v"), "STORED");
    }
    assert!(m.get("s1").is_some() && m.get("missing").is_none());
    let index = c.index.addr();
    let run = tool("flare-stats", &["-i", &index]).ok("flare-stats");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "hostname:port              state   role partition balance    items conn behind hit size uptime version"
    );
    let master = lines
        .iter()
        .find(|l| l.starts_with(&c.key(0)))
        .expect("master row");
    let cells: Vec<&str> = master.split_whitespace().collect();
    assert_eq!(
        &cells[1..6],
        ["active", "master", "0", "1", "30"],
        "{master}"
    );
    assert_eq!(cells[8], "50", "hit = 1 of 2 gets: {master}");
    assert_eq!(cells[11], "2.0.0", "{master}");
    let proxy = lines
        .iter()
        .find(|l| l.starts_with(&c.key(1)))
        .expect("proxy row");
    assert!(proxy.contains(" proxy        -1 "), "{proxy}");
    // flare-stats = flare-admin stats, with the same options.
    let same = admin(&c, &["stats", "--qps", "-w", "1"]).ok("stats --qps");
    assert!(
        same.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with("version   qps qps-r qps-w"),
        "{}",
        same.stdout
    );
    let json = tool("flare-stats", &["-i", &index, "--json"])
        .ok("flare-stats --json")
        .stdout;
    for field in [
        format!("\"node\": \"{}\"", c.key(0)),
        "\"items\": 30".into(),
        "\"role\": \"master\"".into(),
        "\"hit\": 50".into(),
        "\"reachable\": true".into(),
        "\"replication_queue\": 0".into(),
        "\"reconstruction_running\": 0".into(),
        "\"curr_items\": \"30\"".into(),
    ] {
        assert!(json.contains(&field), "{field} in {json}");
    }
}

#[test]
fn dump_then_restore_into_a_fresh_cluster_keeps_every_key() {
    let a = Cluster::start(1, &[]);
    admin(&a, &["master", "--force", &format!("{}:1:0", a.key(0))]).ok("master");
    let mut data = BTreeMap::new();
    let mut m = a.nodes[0].connect();
    for i in 0..300u32 {
        let key = format!("dump:{i}");
        // Values with quotes, line endings and every byte value: `len` frames them in the file.
        let value: Vec<u8> = match i % 3 {
            0 => format!("it's value {i}\r\nline 2\n'").into_bytes(),
            1 => (0..=255u8).cycle().skip(i as usize).take(500).collect(),
            _ => Vec::new(),
        };
        assert_eq!(m.set(&key, i * 7, 0, &value), "STORED");
        data.insert(key, (i * 7, value));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.dump");
    let file = file.to_str().unwrap();
    let run = admin(&a, &["dump", "--all", "-o", file]).ok("dump");
    assert!(
        run.stderr.contains("300 entries have been dumped from"),
        "{}",
        run.stderr
    );
    assert!(std::fs::read(file).unwrap().starts_with(b"dump:"));

    let b = Cluster::start(2, &[]);
    admin(&b, &["master", "--force", &format!("{}:1:0", b.key(0))]).ok("master of b");
    // The proxy routes by the node map the index pushes to it, asynchronously.
    b.converged();
    // Through the proxy: restore sends every item to one node, which routes it.
    let run = admin(&b, &["restore", &b.key(1), "-i", file, "--bwlimit", "8MB"]).ok("restore");
    assert!(
        run.stdout.contains("300 entries have been restored."),
        "{}",
        run.stdout
    );
    assert_eq!(b.items(0), 300);
    check_data(&b, &data, "restored");
    // A filtered restore into a cleared node.
    assert_eq!(b.nodes[0].connect().call("flush_all"), "OK");
    let run = admin(
        &b,
        &[
            "restore",
            &b.key(0),
            "-i",
            file,
            "--include",
            "^dump:1[0-9]$",
        ],
    )
    .ok("restore --include");
    assert!(
        run.stdout.contains("10 entries have been restored."),
        "{}",
        run.stdout
    );
    assert_eq!(b.items(0), 10);
}

#[test]
fn verify_is_ok_on_a_healthy_cluster_and_ng_when_a_slave_lost_keys() {
    let c = Cluster::start(2, &[]);
    let (k0, k1) = (c.key(0), c.key(1));
    admin(&c, &["master", "--force", &format!("{k0}:1:0")]).ok("master");
    admin(
        &c,
        &[
            "slave",
            "--force",
            "--build-timeout",
            "60",
            &format!("{k1}:1:0"),
        ],
    )
    .ok("slave");
    let mut data = BTreeMap::new();
    write(&mut c.nodes[0].connect(), &mut data, "v", 200);
    same_items(&c, 0, &[1], "replicated");
    let run = admin(&c, &["verify"]).ok("verify");
    assert!(
        run.stdout.contains(&format!(
            "checking {k1} (slave, partition 0) ... dump ... 200 entries. OK"
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.ends_with("OK\n"));
    // An operator's session (it opens with `version`, as Flare's tools do) flushes the one node it talks to; a
    // client's flush_all would flush the whole cluster.
    let mut operator = c.nodes[1].connect();
    assert!(operator.call("version").starts_with("VERSION "));
    assert_eq!(operator.call("flush_all"), "OK");
    let run = admin(&c, &["verify"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("0 entries. NG (200 missing, 0 extra, 0 different from the master"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.ends_with("NG\n"));
}

#[test]
fn changes_are_refused_without_a_terminal_unless_forced() {
    let c = Cluster::start(2, &[]);
    let k0 = c.key(0);
    for args in [
        vec!["master".to_string(), format!("{k0}:1:0")],
        vec!["down".to_string(), k0.clone()],
        vec!["activate".to_string(), k0.clone()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = admin(&c, &args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("standard input is not a terminal"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("--force"), "{}", run.stderr);
    }
    assert_eq!(c.role_state(0), "proxy/active", "nothing changed");
    // A dry run shows the command and changes nothing either.
    let run = admin(&c, &["master", "--dry-run", &format!("{k0}:1:0")]).ok("dry run");
    assert!(
        run.stdout.contains(&format!(
            "(dry run) would send to {}: node role 127.0.0.1 {} master 1 0",
            c.index.addr(),
            c.nodes[0].port
        )),
        "{}",
        run.stdout
    );
    assert_eq!(c.role_state(0), "proxy/active");
}

#[test]
fn errors_are_one_readable_line_and_exit_1() {
    let port = free_port();
    let run = tool("flare-admin", &["list", "-i", &format!("127.0.0.1:{port}")]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "flare-admin: cannot connect to index server 127.0.0.1:{port}: connection refused\n"
        )
    );
    let run = tool("flare-admin", &["ping", &format!("127.0.0.1:{port}")]);
    assert_eq!(
        (run.code, run.stdout),
        (1, format!("127.0.0.1:{port} is down\n"))
    );
    let run = tool("flare-admin", &["slave", "--force", "nohost:1:0"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("invalid argument 'nohost:1:0' (expected host:port:balance:partition)"),
        "{}",
        run.stderr
    );
}
