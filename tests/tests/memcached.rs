//! A node answers as Debian's memcached 1.6.18 does, byte for byte: the same raw bytes are sent to a memcached
//! started for the test and to a standalone node, each on a fresh connection, and the replies (and whether the
//! server closed the connection) must be equal. `VERSION` lines are the one difference allowed.

use std::time::Duration;

use flare_tests::{exchange, exchange_idle, Exchange, Flared, Memcached};

/// Sends `input` to both servers and asserts the same answer.
fn same(mc: &Memcached, node: &Flared, input: &[u8]) -> Exchange {
    let want = exchange(&mc.addr(), input).normalized();
    let got = exchange(&node.addr(), input).normalized();
    assert_eq!(
        got,
        want,
        "{:?}\n node: {got}\n memcached: {want}",
        String::from_utf8_lossy(input)
    );
    got
}

/// [`same`] for one command line (`\r\n` added).
fn same_line(mc: &Memcached, node: &Flared, line: &str) -> Exchange {
    same(mc, node, format!("{line}\r\n").as_bytes())
}

#[test]
fn commands_without_their_arguments() {
    let mc = Memcached::start(&[]);
    let node = Flared::start(&[]);
    for line in [
        "cas",
        "cas k",
        "cas k 0 0 1",
        "set",
        "set k",
        "set k 0 0",
        "add k 0",
        "replace",
        "append k",
        "prepend k 0 0",
        "get",
        "gets",
        "gat",
        "gats",
        "incr",
        "incr k",
        "decr k",
        "touch",
        "touch k",
        "delete",
        "verbosity",
        "gat 10",
        "gats 10 ",
        "flush_all 0 noreply x",
        "delete k 0 noreply x",
    ] {
        let got = same_line(&mc, &node, line);
        assert!(!got.reply.is_empty(), "{line:?} must get an answer");
    }
}

#[test]
fn delete_flush_all_verbosity_and_exptime_errors() {
    let mc = Memcached::start(&[]);
    let node = Flared::start(&[]);
    for line in [
        "delete k 10",
        "delete k -1",
        "delete k 00",
        "delete k x",
        "delete k 10 noreply",
        "delete k noreply x",
        "delete k 0",
        "delete k",
        "delete k 0 noreply\r\nversion",
        "delete k noreply\r\nversion",
        "flush_all invalid",
        "flush_all noreply 5",
        "flush_all 99999999999999999999",
        "flush_all 0 0",
        "flush_all 5 x",
        "flush_all -1",
        "flush_all invalid noreply\r\nversion",
        "verbosity invalid",
        "verbosity -1",
        "verbosity 1 2",
        "verbosity 1 2 3",
        "verbosity invalid noreply\r\nversion",
        "verbosity noreply\r\nversion",
        "touch k x",
        "touch k 99999999999999999999",
        "gat x a",
        "gats x a",
    ] {
        same_line(&mc, &node, line);
    }
    // `delete k 0` still deletes.
    same(&mc, &node, b"set k 0 0 1\r\nx\r\ndelete k 0\r\nget k\r\n");
}

#[test]
fn declared_lengths_memcached_cannot_hold() {
    let mc = Memcached::start(&[]);
    let node = Flared::start(&[]);
    for len in ["2147483646", "2147483647", "2147483648", "4294967295", "-1"] {
        let got = same(
            &mc,
            &node,
            format!("set k 0 0 {len}\r\nabc\r\nget k\r\n").as_bytes(),
        );
        assert!(
            got.reply
                .starts_with(b"CLIENT_ERROR bad command line format\r\n"),
            "{len}: {got}"
        );
    }
}

#[test]
fn a_value_over_the_item_limit_is_swallowed_as_memcached_does() {
    // memcached's default item limit is 1 MiB; the node is given the same.
    let mc = Memcached::start(&[]);
    let node = Flared::start(&["--max-item-size=1048576"]);
    let mut input = b"set big 0 0 2000000\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 2_000_000));
    input.extend_from_slice(b"\r\nget big\r\nset small 0 0 2\r\nok\r\nget small\r\n");
    let got = same(&mc, &node, &input);
    assert!(
        got.reply
            .starts_with(b"SERVER_ERROR object too large for cache\r\nEND\r\nSTORED\r\n"),
        "{got}"
    );
    // Just under memcached's cut-off the data is awaited: neither answers before it has all arrived.
    let input = b"set k 0 0 2147483645\r\nversion\r\n";
    let want = exchange_idle(&mc.addr(), input, Duration::from_millis(300));
    assert!(want.reply.is_empty() && !want.closed, "memcached: {want}");
    let got = exchange_idle(&node.addr(), input, Duration::from_millis(300));
    // The node says at once that it will not store it (memcached says so once the data is swallowed).
    assert_eq!(
        String::from_utf8_lossy(&got.reply),
        "SERVER_ERROR object too large for cache\r\n"
    );
    assert!(!got.closed);
}

#[test]
fn http_request_lines_close_the_connection_without_a_reply() {
    let mc = Memcached::start(&[]);
    let node = Flared::start(&[]);
    let many = "xx ".repeat(22);
    for line in [
        "GET / HTTP/1.0".to_string(),
        "PUT /x HTTP/1.1".into(),
        "DELETE HTTP/1.1".into(),
        "HTTP/1.1".into(),
        "foo  HTTP/1.1   ".into(),
        format!("{many}HTTP/1.1"),
        format!("{many}HTTP/1.1 y z"),
    ] {
        let got = same_line(&mc, &node, &line);
        assert!(got.closed && got.reply.is_empty(), "{line:?}: {got}");
    }
    // Not the guard: known commands, memcached's dispatch letters, one-byte commands, a non-final HTTP token.
    for line in [
        "get / HTTP/1.0".to_string(),
        "delete / HTTP/1.0".into(),
        "set / HTTP/1.0".into(),
        "azz HTTP/1.1".into(),
        "x HTTP/1.1".into(),
        "foo HTTP/1.1 x".into(),
        "foo http/1.1".into(),
        "version HTTP/1.1".into(),
        "stats HTTP/1.1".into(),
        "mn HTTP/1.1".into(),
        format!("{many}xx HTTP/1.1"),
    ] {
        let got = same_line(&mc, &node, &line);
        assert!(!got.closed, "{line:?}: {got}");
    }
    // A proxied line is checked after its prefix; memcached reads the prefix as the command: both close.
    same(&mc, &node, b"<a:1>GET / HTTP/1.1\r\n");
}

/// Two meta reply lines are equal, except that their `l` values may differ by one.
fn same_but_l(got: &str, want: &str) -> bool {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.split(' ').collect(), want.split(' ').collect());
    g.len() == w.len()
        && g.iter()
            .zip(&w)
            .all(|(a, b)| match (a.strip_prefix('l'), b.strip_prefix('l')) {
                (Some(x), Some(y)) => match (x.parse::<i64>(), y.parse::<i64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1,
                    _ => a == b,
                },
                _ => a == b,
            })
}

/// The same sequence of reads and writes, with pauses, on both servers: the `mg` replies must be equal, their `l`
/// within a second (memcached's clock ticks once a second, on its own phase). `l` is compared only until an item's
/// second read: memcached refreshes the time then, at once or (for an item its LRU maintainer has moved to the cold
/// LRU) a moment later, from another thread; `false` marks the steps where it may not have yet.
#[test]
fn meta_hit_before_and_last_access() {
    let mc = Memcached::start(&[]);
    let node = Flared::start(&[]);
    let steps: &[(&str, u64, bool)] = &[
        ("set k 0 0 1\r\n5\r\n", 0, true),
        ("mg k h l t\r\n", 0, true),
        ("mg k h l\r\n", 2, true),
        ("mg k h l u\r\n", 0, false),
        ("set k 0 0 1\r\n7\r\n", 0, true),
        ("mg k h l u\r\n", 1, true),
        ("mg k h l\r\n", 0, true),
        ("set t 0 0 1\r\nx\r\n", 0, true),
        ("mg t u\r\n", 0, true),
        ("mg t h\r\n", 0, true),
        ("set t 0 0 1\r\nx\r\n", 0, true),
        ("touch t 100\r\n", 0, true),
        ("mg t h l\r\n", 0, true),
        ("set g 0 0 1\r\nx\r\n", 0, true),
        ("get g\r\n", 0, true),
        ("mg g h l\r\n", 0, true),
        ("set a 0 0 1\r\nx\r\n", 0, true),
        ("get a\r\n", 0, true),
        ("append a 0 0 1\r\ny\r\n", 0, true),
        ("mg a h l\r\n", 0, true),
        ("mg v N30 h l\r\n", 0, true),
        ("mg v h l\r\n", 0, true),
        ("delete v\r\n", 0, true),
        ("ms v 1\r\nx\r\n", 0, true),
        ("mg v h l\r\n", 0, true),
    ];
    let mut mcc = flare_tests::Client::connect(&mc.addr());
    let mut nc = node.connect();
    for (line, pause, check_l) in steps {
        std::thread::sleep(Duration::from_secs(*pause));
        mcc.send(line.as_bytes());
        nc.send(line.as_bytes());
        let want = mcc.line();
        let got = nc.line();
        if line.starts_with("get") {
            for c in [&mut mcc, &mut nc] {
                while c.line() != "END" {}
            }
        }
        let drop_l = |s: &str| {
            s.split(' ')
                .filter(|t| !t.starts_with('l'))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let same = match check_l {
            true => same_but_l(&got, &want),
            false => drop_l(&got) == drop_l(&want),
        };
        assert!(same, "{line:?}: node {got:?}, memcached {want:?}");
    }
}

#[test]
fn stats_cachedump_errors_and_lines() {
    let mc = Memcached::start(&[]);
    let node = Flared::start(&[]);
    for line in [
        "stats cachedump",
        "stats cachedump 1",
        "stats cachedump x y",
        "stats cachedump -1 0",
        "stats cachedump 1 -5",
        "stats cachedump 64 0",
        "stats cachedump 99 0",
        "stats cachedump 63 0",
        "stats cachedump 0 0",
    ] {
        same_line(&mc, &node, line);
    }
    // An item's line, as memcached writes it (memcached lists only what is in its cold LRU, so the item is dumped
    // after memcached has moved it there: a second item pushes it out of the hot LRU).
    let set = b"set some:key 0 0 5\r\nhello\r\n";
    exchange(&node.addr(), set);
    let got = exchange(&node.addr(), b"stats cachedump 1 0\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got.reply),
        "ITEM some:key [5 b; 0 s]\r\nEND\r\n"
    );
    exchange(&mc.addr(), set);
    exchange(&mc.addr(), b"set other 0 0 1\r\nx\r\n");
    let listed = flare_tests::wait_until(Duration::from_secs(5), || {
        String::from_utf8_lossy(&exchange(&mc.addr(), b"stats cachedump 1 0\r\n").reply)
            .contains("ITEM some:key [5 b; 0 s]\r\n")
    });
    assert!(listed, "memcached's own line differs");
}

#[test]
fn a_get_of_18725_keys_on_one_line_is_answered_as_memcached_does() {
    let mc = Memcached::start(&[]);
    let node = Flared::start(&[]);
    let (sets, get) = flare_tests::big_get();
    assert!(get.len() > 180_000);
    for addr in [mc.addr(), node.addr()] {
        exchange(&addr, &sets);
    }
    let values = |e: &Exchange| e.reply.windows(6).filter(|w| w == b"VALUE ").count();
    // Compared byte for byte, but reported briefly (the replies are 300 KB).
    let want = exchange(&mc.addr(), &get);
    let got = exchange(&node.addr(), &get);
    assert_eq!(values(&want), 12_483, "memcached's own answer");
    if got != want {
        let at = got.reply.iter().zip(&want.reply).position(|(a, b)| a != b);
        panic!(
            "node: {} bytes, {} values, closed {}; memcached: {} bytes; first difference at {at:?}",
            got.reply.len(),
            values(&got),
            got.closed,
            want.reply.len()
        );
    }
    // gets, and (where memcached closes the connection: it streams only get and gets) gat and gats, and the
    // connection goes on serving.
    for verb in ["gets", "gat 0", "gats 0"] {
        let mut line = get.clone();
        line.splice(0..3, verb.bytes());
        line.extend_from_slice(b"get key:00001\r\n");
        let a = exchange(&node.addr(), &line);
        assert!(!a.closed, "{verb}");
        assert_eq!(values(&a), 12_483 + 1, "{verb}");
        let tail = "END\r\nVALUE key:00001 1 2\r\nv1\r\nEND\r\n";
        assert!(
            String::from_utf8_lossy(&a.reply[a.reply.len() - 60..]).contains(tail),
            "{verb}: the next request is answered after the END"
        );
    }
}
