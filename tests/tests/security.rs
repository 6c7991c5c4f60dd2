//! Who may change the cluster (decisions.md #10): `cluster-secret` on the index (nodes and admins `auth` first),
//! `internal-netmask` on nodes (replication, proxied requests, node sync, dump, kill) and on the index (map
//! changes), reloadable with SIGHUP.

use std::time::Duration;

use flare_tests::{free_port, wait_until, Flared};

#[test]
fn cluster_secret_admits_nodes_that_know_it_and_admins_after_auth() {
    let index = Flared::index(&["--monitor-interval=1", "--cluster-secret=s3cret"]);
    let node = Flared::node_of(index.port, &["--cluster-secret=s3cret"]);
    let key = format!("127.0.0.1:{}", node.port);
    assert!(
        wait_until(Duration::from_secs(10), || index
            .connect()
            .stats_nodes()
            .contains_key(&format!("{key}:role"))),
        "a node with the secret registers\n{}",
        node.log()
    );

    let mut admin = index.connect();
    let role = format!("node role 127.0.0.1 {} master 1 0", node.port);
    assert_eq!(admin.call(&role), "CLIENT_ERROR authentication required");
    assert_eq!(
        admin.call("auth wrong"),
        "CLIENT_ERROR authentication failed"
    );
    assert_eq!(admin.call("auth s3cret"), "OK");
    assert_eq!(admin.call(&role), "OK");
    // Reads need no secret.
    assert!(index
        .connect()
        .stats_nodes()
        .contains_key(&format!("{key}:state")));

    // The node's own calls to the index (state changes, its session) also carry the secret: it becomes active.
    assert!(wait_until(Duration::from_secs(10), || {
        index.connect().stats_nodes().get(&format!("{key}:state")) == Some(&"active".to_string())
    }));

    // Not `node_of`, which waits for the registration.
    let stranger_index = format!("--index-servers=127.0.0.1:{}", index.port);
    let mut stranger = Flared::start_binary("flared", free_port(), &[&stranger_index]);
    assert!(
        wait_until(Duration::from_secs(15), || !stranger.is_running()),
        "a node without the secret is refused and stops"
    );
    assert!(
        stranger.log().contains("authentication required"),
        "{}",
        stranger.log()
    );
    assert!(!index
        .connect()
        .stats_nodes()
        .contains_key(&format!("127.0.0.1:{}:role", stranger.port)));
}

#[test]
fn internal_netmask_refuses_internal_commands_from_outside_and_reloads() {
    // Loopback is outside 10.0.0.0/8: plain memcached traffic works, internal commands are refused.
    let node = Flared::start(&["--internal-netmask=10.0.0.0/8"]);
    let mut c = node.connect();
    assert_eq!(c.set("k", 0, 0, b"v"), "STORED");
    assert_eq!(c.get("k").as_deref(), Some(&b"v"[..]));
    assert_eq!(
        c.call("dump"),
        "CLIENT_ERROR internal command not allowed from this address"
    );
    assert_eq!(
        c.call("kill 1"),
        "CLIENT_ERROR internal command not allowed from this address"
    );
    // A replicated (proxied) write: refused, and the connection stays in sync after its data block.
    assert_eq!(
        c.call("<127.0.0.1:1#1> set k 0 0 1\r\nx"),
        "CLIENT_ERROR internal command not allowed from this address"
    );
    assert_eq!(c.get("k").as_deref(), Some(&b"v"[..]));
    let inside = Flared::start(&["--internal-netmask=10.0.0.0/8,127.0.0.0/8"]);
    let mut c = inside.connect();
    assert_eq!(c.call("dump"), "END");

    // The index: map changes from outside are refused until a SIGHUP widens the mask.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("flarei.conf");
    std::fs::write(&conf, "internal-netmask = 10.0.0.0/8\n").unwrap();
    let index = Flared::index(&["-f", conf.to_str().unwrap()]);
    let mut admin = index.connect();
    assert_eq!(
        admin.call("node role 127.0.0.1 1 proxy 0 -1"),
        "CLIENT_ERROR command not allowed from this address"
    );
    assert_eq!(admin.call("ping"), "OK");
    std::fs::write(&conf, "internal-netmask = 127.0.0.1/32\n").unwrap();
    index.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || {
            // Unknown node: the command got past the mask and was refused by the index itself.
            index.connect().call("node role 127.0.0.1 1 proxy 0 -1")
                != "CLIENT_ERROR command not allowed from this address"
        }),
        "{}",
        index.log()
    );
}

#[test]
fn flare_admin_authenticates_with_the_cluster_secret() {
    let index = Flared::index(&["--monitor-interval=1", "--cluster-secret=s3cret"]);
    let node = Flared::node_of(index.port, &["--cluster-secret=s3cret"]);
    let key = format!("127.0.0.1:{}", node.port);
    assert!(wait_until(Duration::from_secs(10), || index
        .connect()
        .stats_nodes()
        .contains_key(&format!("{key}:role"))));
    let run = |secret: Option<&str>| {
        let mut cmd = std::process::Command::new(flare_tests::binary("flare-admin"));
        cmd.args([
            "--index-server",
            &index.addr(),
            "master",
            "--force",
            "--activate",
            &format!("{key}:1:0"),
        ])
        .env_remove("FLARE_CLUSTER_SECRET")
        .stdin(std::process::Stdio::null());
        if let Some(s) = secret {
            cmd.env("FLARE_CLUSTER_SECRET", s);
        }
        cmd.output().unwrap()
    };
    let refused = run(None);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("authentication required"), "{stderr}");
    let wrong = run(Some("nope"));
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("authentication failed"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let ok = run(Some("s3cret"));
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        index.connect().stats_nodes().get(&format!("{key}:role")),
        Some(&"master".to_string())
    );
}
