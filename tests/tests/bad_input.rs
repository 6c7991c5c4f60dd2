//! Bad input gets memcached's error and the server keeps serving: a 2 GiB `set` then a disconnect, garbage bytes,
//! a command sent one byte at a time, data blocks longer or shorter than declared, over-long lines and keys.

use std::io::{Read, Write};
use std::time::Duration;

use flare_tests::Flared;

/// The node still serves a fresh client correctly.
fn still_serving(node: &Flared) {
    let mut c = node.connect();
    assert_eq!(c.set("alive", 1, 0, b"yes"), "STORED");
    assert_eq!(c.get("alive").as_deref(), Some(&b"yes"[..]));
}

#[test]
fn two_gib_set_then_disconnect() {
    let node = Flared::start(&[]);
    let mut c = node.connect();
    // 2 GiB is over the hard maximum (2^31-1): a bad command line, nothing buffered.
    assert_eq!(
        c.call("set huge 0 0 2147483648"),
        "CLIENT_ERROR bad command line format"
    );
    // So is 2^31-1 and 2^31-2, which memcached cannot add its CRLF to in an int.
    assert_eq!(
        c.call("set huge 0 0 2147483647"),
        "CLIENT_ERROR bad command line format"
    );
    // Just under that is over max-item-size (64 MiB): the data block is swallowed, never buffered.
    c.send(b"set huge 0 0 2147483645\r\n");
    assert_eq!(c.line(), "SERVER_ERROR object too large for cache");
    c.send(&vec![b'x'; 4 << 20]);
    drop(c);
    still_serving(&node);
    let mut c = node.connect();
    assert_eq!(c.get("huge"), None);
}

#[test]
fn too_large_value_is_swallowed_and_connection_stays_in_sync() {
    let node = Flared::start(&["--max-item-size=1024"]);
    let mut c = node.connect();
    c.send(b"set big 0 0 2000\r\n");
    assert_eq!(c.line(), "SERVER_ERROR object too large for cache");
    c.send(&vec![b'y'; 2000]);
    c.send(b"\r\nget big\r\n");
    assert_eq!(c.line(), "END");
    assert_eq!(c.set("small", 0, 0, b"ok"), "STORED");
}

#[test]
fn garbage_bytes_get_errors_and_server_keeps_serving() {
    let node = Flared::start(&[]);
    let mut c = node.connect();
    assert_eq!(c.call("bogus command here"), "ERROR");
    assert_eq!(c.call(""), "ERROR");
    assert_eq!(
        c.call("set k notanumber 0 1"),
        "CLIENT_ERROR bad command line format"
    );
    assert_eq!(c.call("get"), "ERROR");
    // Random binary junk (no 0x80 first byte) then a valid command on another connection.
    let mut junk = node.connect();
    let bytes: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
        .collect();
    let _ = junk.stream().write_all(&bytes);
    drop(junk);
    still_serving(&node);
    assert!(c.call("version").starts_with("VERSION "));
}

#[test]
fn command_sent_one_byte_at_a_time() {
    let node = Flared::start(&[]);
    let mut c = node.connect();
    for b in b"set slow 5 0 3\r\nabc\r\n" {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.line(), "STORED");
    for b in b"gets slow\r\n" {
        c.send(&[*b]);
    }
    assert_eq!(c.line(), "VALUE slow 5 3 1");
    assert_eq!(c.line(), "abc");
    assert_eq!(c.line(), "END");
}

/// After a bad data chunk the rest of the client's line may be read as one more (unknown) command, as in memcached;
/// then the connection is back in sync.
fn resync(c: &mut flare_tests::Client) {
    c.send(b"version\r\n");
    let mut errors = 0;
    loop {
        let line = c.line();
        if line.starts_with("VERSION ") {
            break;
        }
        assert_eq!(line, "ERROR", "unexpected line while resynchronising");
        errors += 1;
        assert!(
            errors <= 1,
            "more than one stray reply after a bad data chunk"
        );
    }
}

#[test]
fn data_block_longer_than_declared() {
    let node = Flared::start(&[]);
    let mut c = node.connect();
    c.send(b"set k 0 0 3\r\nabcdef\r\n");
    assert_eq!(c.line(), "CLIENT_ERROR bad data chunk");
    resync(&mut c);
    assert_eq!(c.set("k2", 0, 0, b"ok"), "STORED");
    assert_eq!(
        c.get("k").as_deref(),
        None,
        "a bad chunk must not be stored"
    );
    assert_eq!(c.get("k2").as_deref(), Some(&b"ok"[..]));
}

#[test]
fn data_block_shorter_than_declared() {
    let node = Flared::start(&[]);
    let mut c = node.connect();
    // 10 bytes announced, "abc" sent: the next command's bytes fill the block, whose last two bytes are not CRLF.
    c.send(b"set k 0 0 10\r\nabc\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"version\r\n");
    assert_eq!(c.line(), "CLIENT_ERROR bad data chunk");
    resync(&mut c);
    assert_eq!(c.set("k3", 0, 0, b"fine"), "STORED");
    assert_eq!(c.get("k"), None);
    still_serving(&node);
}

#[test]
fn over_long_line_and_key() {
    let node = Flared::start(&[]);
    let mut c = node.connect();
    let long_key = "k".repeat(8192);
    assert_eq!(
        c.call(&format!("get {long_key}")),
        "CLIENT_ERROR key too long"
    );
    let ok_key = "k".repeat(8191);
    assert_eq!(c.set(&ok_key, 0, 0, b"v"), "STORED");
    assert_eq!(c.get(&ok_key).as_deref(), Some(&b"v"[..]));
    // A line with no end past the cap: error, then the server closes the connection.
    let mut l = node.connect();
    l.send(&vec![b'a'; 70 * 1024]);
    assert_eq!(l.line(), "CLIENT_ERROR line too long");
    let mut rest = Vec::new();
    let _ = l.stream().read_to_end(&mut rest);
    still_serving(&node);
}

#[test]
fn other_clients_are_served_while_one_sends_a_huge_value_slowly() {
    let node = Flared::start(&[]);
    let mut slow = node.connect();
    slow.send(b"set slowbig 0 0 10000000\r\n");
    slow.send(&vec![b'z'; 1_000_000]);
    for i in 0..50 {
        let mut c = node.connect();
        assert_eq!(c.set(&format!("other{i}"), 0, 0, b"v"), "STORED");
    }
    slow.send(&vec![b'z'; 9_000_000]);
    slow.send(b"\r\n");
    assert_eq!(slow.line(), "STORED");
    assert_eq!(slow.get("slowbig").map(|v| v.len()), Some(10_000_000));
}
