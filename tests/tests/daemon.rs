//! Daemon behaviour: max-connection, net-read-timeout, pid file, config file, stats fields, kill, pipelining.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use flare_tests::{Flared, FLARE_STATS};

#[test]
fn pipelined_requests_are_answered_in_order() {
    let node = Flared::start(&[]);
    let mut c = node.connect();
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend_from_slice(
            format!("set p{i} {i} 0 {}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
        );
    }
    for i in 0..500 {
        batch.extend_from_slice(format!("get p{i}\r\n").as_bytes());
    }
    c.send(&batch);
    for _ in 0..500 {
        assert_eq!(c.line(), "STORED");
    }
    for i in 0..500 {
        assert_eq!(c.line(), format!("VALUE p{i} {i} {}", i.to_string().len()));
        assert_eq!(c.line(), i.to_string());
        assert_eq!(c.line(), "END");
    }
}

#[test]
fn max_connection_closes_extra_connections() {
    let node = Flared::start(&["--max-connection=3"]);
    // The start-up probe's connection may not be closed on the server side yet: wait until this one is alone.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut probe = node.connect();
        if probe.stat("curr_connections") == "1" || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut held: Vec<_> = (0..3).map(|_| node.connect()).collect();
    for c in &mut held {
        assert!(c.call("version").len() > 8);
    }
    let mut extra = std::net::TcpStream::connect(node.addr()).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // memcached's answer at its limit, then the connection closes.
    let mut got = Vec::new();
    let _ = extra.read_to_end(&mut got);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "ERROR Too many open connections\r\n",
        "the 4th connection is refused as memcached refuses it"
    );
    assert_eq!(held[0].stat("rejected_connections"), "1");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = node.connect();
    assert!(c.call("version").starts_with("VERSION 2."));
}

/// The default limit is memcached's 1024, not Flare's 128: an ordinary web farm's 200 connections all work.
#[test]
fn two_hundred_connections_are_served_by_default() {
    let node = Flared::start(&[]);
    let mut all: Vec<_> = (0..200).map(|_| node.connect()).collect();
    for (i, c) in all.iter_mut().enumerate() {
        assert_eq!(
            c.set(&format!("c{i}"), 0, 0, b"x"),
            "STORED",
            "connection {i}"
        );
    }
    assert_eq!(all[0].stat("rejected_connections"), "0");
    let settings = all[0].stats("settings");
    assert!(
        settings
            .iter()
            .any(|(k, v)| k == "max_connection" && v == "1024"),
        "{settings:?}"
    );
}

#[test]
fn idle_connections_close_after_net_read_timeout() {
    let node = Flared::start(&["--net-read-timeout=1"]);
    let mut c = node.connect();
    assert!(c.call("version").starts_with("VERSION "));
    std::thread::sleep(Duration::from_millis(2500));
    let mut buf = [0u8; 8];
    let n = c.stream().read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "idle connection must be closed by the server");
}

#[test]
fn pid_file_written_and_removed() {
    let mut node = Flared::start(&[]);
    let pid_path = node.data_dir.path().join("flared.pid");
    let pid: u32 = std::fs::read_to_string(&pid_path)
        .expect("pid file")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, node.child.as_ref().unwrap().id());
    let (status, _) = node.terminate(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()));
    assert!(!pid_path.exists(), "pid file must be removed on exit");
}

#[test]
fn flare_style_config_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("flared.conf");
    // Flare's own sample node config (config.md §7), with a Tokyo Cabinet storage-type and TC knobs.
    std::fs::write(
        &conf,
        "# sample\nlog-facility = local1\nmax-connection = 256\nmutex-slot = 32\nproxy-concurrency = 2\n\
         storage-type = tch   # TC hash in Flare\nstorage-ap = 4\nstorage-bucket-size = 16777216\nthread-pool-size = 16\n",
    )
    .unwrap();
    let node = Flared::start(&["-f", conf.to_str().unwrap()]);
    let mut c = node.connect();
    assert_eq!(c.set("conf", 0, 0, b"ok"), "STORED");
    c.send(b"show variables\r\n");
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        if l == "END" {
            break;
        }
        lines.push(l);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("max_connection:") && l.ends_with("256")),
        "{lines:?}"
    );
}

#[test]
fn unknown_option_is_a_clear_error() {
    let out = std::process::Command::new(flare_tests::binary("flared"))
        .args(["--data-dir=/tmp", "--no-such-option=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-option"),
        "the error must name the option: {err}"
    );
}

#[test]
fn stats_have_flare_fields_in_order() {
    let node = Flared::start(&[]);
    let mut c = node.connect();
    c.set("s", 0, 0, b"1");
    c.get("s");
    let names: Vec<String> = c.stats("").into_iter().map(|(k, _)| k).collect();
    assert_eq!(&names[..FLARE_STATS.len()], &FLARE_STATS[..]);
    assert_eq!(c.stat("curr_items"), "1");
    assert_eq!(c.stat("get_hits"), "1");
    assert_eq!(c.call("stats items"), "END");
    assert_eq!(c.call("stats bogus"), "ERROR");
    // stats threads lists this connection; kill closes another one.
    let mut victim = node.connect();
    victim.call("version");
    let threads = c.stats("threads");
    let ids: Vec<u64> = threads
        .iter()
        .filter(|(k, _)| k.ends_with(":type"))
        .map(|(k, _)| k.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(ids.len() >= 2, "{threads:?}");
    let victim_id = *ids.iter().max().unwrap();
    assert_eq!(c.call(&format!("kill {victim_id}")), "OK");
    let mut buf = [0u8; 4];
    assert_eq!(victim.stream().read(&mut buf).unwrap_or(0), 0);
    assert_eq!(c.call("kill 99999"), "CLIENT_ERROR thread not found");
}

/// The systemd units under `etc/systemd` are valid for `systemd-analyze verify` (when the machine has it), and the
/// command their `ExecStartPre` runs accepts the sample configurations they point at.
#[test]
fn systemd_units_verify_and_their_config_check_passes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    for daemon in ["flarei", "flared"] {
        let unit =
            std::fs::read_to_string(root.join(format!("etc/systemd/{daemon}.service"))).unwrap();
        assert!(unit.contains(&format!(
            "ExecStart=/usr/local/bin/{daemon} -f /etc/flare/{daemon}.conf\n"
        )));
        assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
        // The same unit pointing at the binaries and sample files of this checkout.
        let local = unit
            .replace(
                &format!("/usr/local/bin/{daemon}"),
                flare_tests::binary(daemon).to_str().unwrap(),
            )
            .replace(
                &format!("/etc/flare/{daemon}.conf"),
                root.join(format!("etc/{daemon}.conf")).to_str().unwrap(),
            );
        let path = dir.path().join(format!("{daemon}.service"));
        std::fs::write(&path, &local).unwrap();
        let check = Command::new(flare_tests::binary(daemon))
            .args([
                "-f",
                root.join(format!("etc/{daemon}.conf")).to_str().unwrap(),
                "--check-config",
            ])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        if flare_tests::have("systemd-analyze") {
            let out = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !stderr.contains(&format!("{daemon}.service:")),
                "{stderr}"
            );
        }
    }
}
