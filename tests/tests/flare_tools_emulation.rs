//! The emulated Ruby flare-tools client itself ([`flare_tests::flare_tools::tool`]), against canned replies: it must be
//! as strict as the Ruby tool.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use flare_tests::flare_tools::tool::{Conn, Failure, Version};

/// A one-connection server: answers `version` with `version_line`, then writes `reply` after the next request.
fn canned(version_line: &'static [u8], reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(version_line).unwrap();
        let _ = s.read(&mut buf);
        s.write_all(reply).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    });
    addr
}

#[test]
fn version_is_split_on_dash_and_dot_as_the_tool_does() {
    let v = Version::parse("VERSION flare-1.3.4");
    assert_eq!(
        (v.name.as_str(), v.number.as_slice()),
        ("flare", &[1, 3, 4][..])
    );
    let v = Version::parse("VERSION 1.0.10");
    assert_eq!(
        (v.name.as_str(), v.number.as_slice()),
        ("flare", &[1, 0, 10][..])
    );
    assert_eq!(Version::parse("VERSION flare-1.x.4").number, [1, 0, 4]);
    assert_eq!(Version::parse("VERSION my-flare-2.0.0").number, [0]);
    assert_eq!(Version::parse("ERROR").number, [0, 0, 0]);
    assert!(Version::parse("VERSION flare-1.0.10").at_least(&[1, 0, 10]));
    assert!(!Version::parse("VERSION flare-1.0.9").at_least(&[1, 0, 10]));
    assert!(Version::parse("VERSION flare-2.0.0").at_least(&[1, 3, 1]));
    assert!(!Version::parse("VERSION flare-1.3").at_least(&[1, 3, 1]));
}

#[test]
fn a_bare_line_feed_fails_the_command() {
    let addr = canned(
        b"VERSION flare-1.3.4\r\n",
        b"STAT pid 1\nSTAT uptime 2\r\nEND\r\n",
    );
    let mut c = Conn::open(&addr).unwrap();
    assert!(matches!(c.stats(), Err(Failure::NotCrlf(_))));
}

#[test]
fn not_stored_is_not_a_terminator() {
    let addr = canned(b"VERSION flare-1.3.4\r\n", b"NOT_STORED\r\n");
    let mut c = Conn::open_with_timeout(&addr, Duration::from_millis(300)).unwrap();
    assert!(matches!(c.request("set k 0 0 1"), Err(Failure::Timeout(_))));
}

#[test]
fn an_old_server_gets_no_stats_threads() {
    let addr = canned(b"VERSION flare-1.0.9\r\n", b"ERROR\r\n");
    let mut c = Conn::open(&addr).unwrap();
    assert!(c.stats_threads().unwrap().is_empty());
}

#[test]
fn any_other_line_in_an_item_stream_fails() {
    let addr = canned(
        b"VERSION flare-1.3.4\r\n",
        b"VALUE k 0 1 5 0\r\nx\r\nKEY k\r\nEND\r\n",
    );
    let mut c = Conn::open(&addr).unwrap();
    assert!(matches!(c.items("dump"), Err(Failure::Malformed(_))));
    let addr = canned(
        b"VERSION flare-1.3.4\r\n",
        b"KEY a\r\nVALUE a 0 1\r\nEND\r\n",
    );
    let mut c = Conn::open(&addr).unwrap();
    assert!(matches!(c.keys("dump_key"), Err(Failure::Malformed(_))));
}

#[test]
fn stats_threads_without_behind_fails() {
    let addr = canned(
        b"VERSION flare-1.3.4\r\n",
        b"STAT 1:type 1\r\nSTAT 1:peer 1.2.3.4:5\r\nSTAT 1:op \r\nSTAT 1:queue 0\r\nEND\r\n",
    );
    let mut c = Conn::open(&addr).unwrap();
    assert!(matches!(c.stats_threads(), Err(Failure::Malformed(_))));
}
