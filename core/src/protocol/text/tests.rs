//! The text parser's tests: every command's forms and errors as memcached 1.6.18 and Flare answer them, data blocks
//! and `node sync` split at every offset, and retrieval lines longer than the cap streamed in parts.

use super::*;
use crate::protocol::{Decoded, Decoder};

fn limits() -> Limits {
    Limits {
        line_max: 256,
        key_max: 16,
        item_size_max: 64,
        keys_per_get_max: 8,
        nodes_max: 4,
        raft_message_max: 1024,
    }
}

/// Decodes everything in `input` (fed whole), returning each step.
fn decode_all(input: &[u8], dialect: Dialect) -> Vec<Decoded> {
    let mut d = Decoder::new(limits(), dialect);
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(x) = d.decode(&mut buf) {
        out.push(x);
    }
    out
}

fn one(input: &str) -> Decoded {
    let mut all = decode_all(input.as_bytes(), Dialect::default());
    assert_eq!(all.len(), 1, "{input:?} gave {all:?}");
    all.remove(0)
}

/// Decodes `input` fed `step` bytes at a time.
fn decode_fed(input: &[u8], step: usize) -> Vec<Decoded> {
    let mut d = Decoder::new(limits(), Dialect::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in input.chunks(step) {
        buf.extend_from_slice(chunk);
        while let Some(x) = d.decode(&mut buf) {
            out.push(x);
        }
    }
    out
}

/// The keys of a streamed retrieval line's parts, checking that only the last is a whole request.
fn streamed_keys(out: &[Decoded]) -> Vec<Bytes> {
    let (last, parts) = out.split_last().expect("something decoded");
    let mut keys = Vec::new();
    for d in parts {
        let Decoded::Part(r) = d else {
            panic!("a part expected, got {d:?}")
        };
        match &r.command {
            Command::Get { keys: k, .. } | Command::Gat { keys: k, .. } => {
                assert!(!k.is_empty() && k.len() <= limits().keys_per_get_max);
                keys.extend(k.iter().cloned())
            }
            other => panic!("{other:?}"),
        }
    }
    let Decoded::Request(r) = last else {
        panic!("the last part must be a request: {last:?}")
    };
    match &r.command {
        Command::Get { keys: k, .. } | Command::Gat { keys: k, .. } => {
            keys.extend(k.iter().cloned())
        }
        other => panic!("{other:?}"),
    }
    keys
}

#[test]
fn a_retrieval_line_longer_than_the_cap_is_streamed_in_parts() {
    let want: Vec<Bytes> = (0..100).map(|i| Bytes::from(format!("k{i:03}"))).collect();
    let line = |verb: &str| {
        let mut l = verb.to_string();
        for k in &want {
            l.push(' ');
            l.push_str(std::str::from_utf8(k).unwrap());
        }
        l + "\r\nversion\r\n"
    };
    for step in [1, 7, 64, 100_000] {
        let out = decode_fed(line("get").as_bytes(), step);
        let (version, out) = out.split_last().unwrap();
        assert!(matches!(version, Decoded::Request(r) if r.command == Command::Version));
        assert_eq!(streamed_keys(out), want, "fed {step} bytes at a time");
        assert!(out.iter().all(|d| matches!(d,
            Decoded::Part(r) | Decoded::Request(r) if matches!(r.command, Command::Get { cas: false, .. }))));
        // gats keeps its exptime and cas in every part.
        let out = decode_fed(line("gats 30").as_bytes(), step);
        assert_eq!(streamed_keys(&out[..out.len() - 1]), want);
        assert!(out[..out.len() - 1].iter().all(|d| matches!(d,
            Decoded::Part(r) | Decoded::Request(r)
                if matches!(r.command, Command::Gat { exptime: 30, cas: true, .. }))));
    }
    // A proxied line keeps its path in every part.
    let out = decode_all(
        format!("<h:1>{}", line("gets")).as_bytes(),
        Dialect::default(),
    );
    assert!(out[..out.len() - 1].iter().all(|d| matches!(d,
        Decoded::Part(r) | Decoded::Request(r) if matches!(&r.framing, Framing::Text { proxy: Some(p) } if p.0.len() == 1))));
}

#[test]
fn a_streamed_line_with_a_bad_key_is_refused_and_skipped() {
    let mut input = String::from("get");
    for i in 0..60 {
        input.push_str(&format!(" key{i:02}"));
    }
    input.push_str(" this-key-is-far-too-long-for-the-limit");
    for i in 60..80 {
        input.push_str(&format!(" key{i:02}"));
    }
    input.push_str("\r\nversion\r\n");
    for step in [1, 50, 100_000] {
        let out = decode_fed(input.as_bytes(), step);
        let error = out
            .iter()
            .position(|d| matches!(d, Decoded::Error { close: false, .. }))
            .unwrap_or_else(|| panic!("no error in {out:?}"));
        assert!(out[..error].iter().all(|d| matches!(d, Decoded::Part(_))));
        // Every key before the bad one was handed out.
        let before: Vec<Bytes> = out[..error]
            .iter()
            .flat_map(|d| match d {
                Decoded::Part(r) => match &r.command {
                    Command::Get { keys, .. } => keys.clone(),
                    _ => vec![],
                },
                _ => vec![],
            })
            .collect();
        let want: Vec<Bytes> = (0..60).map(|i| Bytes::from(format!("key{i:02}"))).collect();
        assert_eq!(before, want, "fed {step} bytes at a time");
        assert!(
            matches!(&out[error + 1..], [Decoded::Request(r)] if r.command == Command::Version),
            "{out:?}"
        );
    }
    // Any other line over the cap still closes the connection.
    let long = format!("set {} 0 0 1\r\n", "k".repeat(300));
    assert!(matches!(
        one(&long),
        Decoded::Error {
            error: ErrorReply::LineTooLong,
            close: true,
            ..
        }
    ));
}

#[test]
fn stats_cachedump_as_memcached_parses_it() {
    assert_eq!(
        cmd("stats cachedump 1 0\r\n"),
        Command::CacheDump { class: 1, limit: 0 }
    );
    assert_eq!(
        cmd("stats cachedump 63 7 ignored\r\n"),
        Command::CacheDump {
            class: 63,
            limit: 7
        }
    );
    let short = ErrorReply::Client("bad command line".into());
    assert_eq!(err("stats cachedump\r\n"), short);
    assert_eq!(err("stats cachedump 1\r\n"), short);
    assert_eq!(err("stats cachedump x 0\r\n"), ErrorReply::BadCommandLine);
    assert_eq!(err("stats cachedump 1 -5\r\n"), ErrorReply::BadCommandLine);
    let illegal = ErrorReply::Client("Illegal slab id".into());
    assert_eq!(err("stats cachedump 64 0\r\n"), illegal);
    assert_eq!(err("stats cachedump 4294967295 0\r\n"), illegal);
}

fn cmd(input: &str) -> Command {
    match one(input) {
        Decoded::Request(r) => r.command,
        other => panic!("{input:?}: expected a request, got {other:?}"),
    }
}

fn err(input: &str) -> ErrorReply {
    match one(input) {
        Decoded::Error { error, .. } => error,
        other => panic!("{input:?}: expected an error, got {other:?}"),
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn set(key: &str, flags: u32, exptime: i64, value: &str) -> StoreRequest {
    StoreRequest {
        mode: StoreMode::Set,
        key: b(key),
        flags,
        exptime,
        value: b(value),
        cas_unique: 0,
        version: None,
        options: WriteOptions::default(),
    }
}

#[test]
fn get_and_gets() {
    assert_eq!(
        cmd("get a\r\n"),
        Command::Get {
            keys: vec![b("a")],
            cas: false
        }
    );
    assert_eq!(
        cmd("gets a  b a\n"),
        Command::Get {
            keys: vec![b("a"), b("b"), b("a")],
            cas: true
        }
    );
    assert_eq!(err("get\r\n"), ErrorReply::UnknownCommand);
    assert_eq!(err("get 0123456789abcdefX\r\n"), ErrorReply::KeyTooLong);
    assert_eq!(err("get a\0b\r\n"), ErrorReply::BadCommandLine);
    // Other control characters are accepted, as memcached does (memaslap's keys have them).
    assert_eq!(
        cmd("get \x10\x10k\r\n"),
        Command::Get {
            keys: vec![b("\x10\x10k")],
            cas: false
        }
    );
    assert_eq!(err("get 1 2 3 4 5 6 7 8 9\r\n"), ErrorReply::BadCommandLine);
}

#[test]
fn storage_commands() {
    assert_eq!(
        cmd("set k 5 10 3\r\nabc\r\n"),
        Command::Store(set("k", 5, 10, "abc"))
    );
    let mut s = set("k", 0, -1, "");
    s.mode = StoreMode::Add;
    s.options.noreply = true;
    s.options.replication = ReplicationMode::Sync;
    assert_eq!(cmd("add k 0 -1 0 sync noreply\r\n\r\n"), Command::Store(s));
    let mut v = set("k", 1, 0, "xy");
    v.version = Some(77);
    v.options.replication = ReplicationMode::Async;
    assert_eq!(cmd("set k 1 0 2 77 async\r\nxy\r\n"), Command::Store(v));
    let mut c = set("k", 1, 0, "xy");
    c.mode = StoreMode::Cas;
    c.cas_unique = 9;
    assert_eq!(cmd("cas k 1 0 2 9\r\nxy\r\n"), Command::Store(c));
    // Binary-safe data: a value may contain CR, LF and spaces.
    assert_eq!(
        cmd("set k 0 0 4\r\n\r\n \n\r\n"),
        Command::Store(set("k", 0, 0, "\r\n \n"))
    );
}

#[test]
fn storage_errors_skip_the_data_block() {
    for bad in [
        "set k x 0 3\r\nabc\r\n",
        "set k 0 x 3\r\nabc\r\n",
        "set k 4294967296 0 3\r\nabc\r\n",
        "set k 0 0 3 bogus\r\nabc\r\n",
        "set k 0 0 3 1 2\r\nabc\r\n",
    ] {
        let out = decode_all(format!("{bad}get k\r\n").as_bytes(), Dialect::default());
        assert_eq!(out.len(), 2, "{bad:?}: {out:?}");
        assert!(
            matches!(
                &out[0],
                Decoded::Error {
                    error: ErrorReply::BadCommandLine,
                    close: false,
                    ..
                }
            ),
            "{bad:?}"
        );
        assert!(
            matches!(&out[1], Decoded::Request(r) if matches!(r.command, Command::Get { .. })),
            "{bad:?}"
        );
    }
    let out = decode_all(
        b"set k 0 0 65\r\n"
            .iter()
            .chain(&[b'x'; 67])
            .copied()
            .chain(*b"get k\r\n")
            .collect::<Vec<_>>()
            .as_slice(),
        Dialect::default(),
    );
    assert!(matches!(
        &out[0],
        Decoded::Error {
            error: ErrorReply::TooLarge,
            ..
        }
    ));
    assert!(matches!(&out[1], Decoded::Request(_)));
    assert_eq!(out.len(), 2);
    let out = decode_all(
        b"set 0123456789abcdefX 0 0 1\r\nx\r\nget k\r\n",
        Dialect::default(),
    );
    assert!(matches!(
        &out[0],
        Decoded::Error {
            error: ErrorReply::KeyTooLong,
            ..
        }
    ));
    assert_eq!(out.len(), 2);
    // A <bytes> that cannot be read skips nothing (there is no length to skip).
    assert_eq!(
        decode_all(b"set k 0 0 -1\r\nget k\r\n", Dialect::default()).len(),
        2
    );
}

#[test]
fn bad_data_chunk() {
    let out = decode_all(b"set k 0 0 2\r\nabc\r\nget k\r\n", Dialect::default());
    assert!(
        matches!(
            &out[0],
            Decoded::Error {
                error: ErrorReply::BadDataChunk,
                ..
            }
        ),
        "{out:?}"
    );
    // memcached parses what follows the bad chunk as commands: "\n" is an empty line, then `get k`.
    assert!(
        matches!(
            &out[1],
            Decoded::Error {
                error: ErrorReply::UnknownCommand,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(matches!(&out[2], Decoded::Request(_)));
}

#[test]
fn delete_incr_touch() {
    assert_eq!(
        cmd("delete k\r\n"),
        Command::Delete {
            key: b("k"),
            hold: 0,
            version: None,
            cas: None,
            options: WriteOptions::default()
        }
    );
    assert_eq!(
        cmd("delete k 10 5 noreply\r\n"),
        Command::Delete {
            key: b("k"),
            hold: 10,
            version: Some(5),
            cas: None,
            options: WriteOptions {
                noreply: true,
                ..Default::default()
            }
        }
    );
    assert_eq!(err("delete k bogus\r\n"), ErrorReply::DeleteUsage);
    assert_eq!(
        cmd("incr k 18446744073709551615\r\n"),
        Command::Arith {
            op: ArithOp::Incr,
            key: b("k"),
            delta: u64::MAX,
            create: None,
            cas: None,
            options: WriteOptions::default()
        }
    );
    assert_eq!(err("incr k -1\r\n"), ErrorReply::InvalidDelta);
    assert_eq!(
        err("decr k 18446744073709551616\r\n"),
        ErrorReply::InvalidDelta
    );
    assert_eq!(err("incr k\r\n"), ErrorReply::UnknownCommand);
    // Too many words is memcached's ERROR, before the delta is read (found by the differential test, seed 5);
    // Flare's `noreply sync` pair stays.
    assert_eq!(
        err("incr -1 zz noreply noreply\r\n"),
        ErrorReply::UnknownCommand
    );
    assert_eq!(
        err("incr k 1 noreply noreply\r\n"),
        ErrorReply::UnknownCommand
    );
    assert!(matches!(
        cmd("incr k 1 noreply sync\r\n"),
        Command::Arith {
            delta: 1,
            options: WriteOptions {
                noreply: true,
                replication: ReplicationMode::Sync
            },
            ..
        }
    ));
    assert_eq!(
        cmd("touch k 10 noreply\r\n"),
        Command::Touch {
            key: b("k"),
            exptime: 10,
            noreply: true
        }
    );
    // memcached ignores a last word that is not `noreply`.
    assert_eq!(
        cmd("touch k 10 sync\r\n"),
        Command::Touch {
            key: b("k"),
            exptime: 10,
            noreply: false
        }
    );
}

#[test]
fn flare_incr_accepts_negative_delta() {
    let d = Dialect {
        incr_flare_semantics: true,
        ..Default::default()
    };
    let out = decode_all(b"incr k -1\r\n", d);
    assert!(
        matches!(&out[0], Decoded::Request(r) if matches!(r.command, Command::Arith { delta: u64::MAX, .. }))
    );
}

#[test]
fn gat_forms() {
    assert_eq!(
        cmd("gat 10 a b\r\n"),
        Command::Gat {
            exptime: 10,
            keys: vec![b("a"), b("b")],
            cas: false,
            flare_form: false,
            noreply: false
        }
    );
    assert_eq!(
        cmd("gats -1 a\r\n"),
        Command::Gat {
            exptime: -1,
            keys: vec![b("a")],
            cas: true,
            flare_form: false,
            noreply: false
        }
    );
    // memcached answers `gat <exptime>` without keys with END.
    assert_eq!(
        cmd("gat 10\r\n"),
        Command::Gat {
            exptime: 10,
            keys: vec![],
            cas: false,
            flare_form: false,
            noreply: false
        }
    );
    let d = Dialect {
        gat_flare_syntax: true,
        ..Default::default()
    };
    let out = decode_all(b"gat a 10 noreply\r\n", d);
    assert!(
        matches!(&out[0], Decoded::Request(r) if r.command == Command::Gat {
            exptime: 10, keys: vec![b("a")], cas: false, flare_form: true, noreply: true
        })
    );
}

#[test]
fn admin_commands() {
    assert_eq!(cmd("version\r\n"), Command::Version);
    assert_eq!(cmd("version x\r\n"), Command::Version);
    assert_eq!(cmd("ping\r\n"), Command::Ping);
    assert_eq!(cmd("quit\r\n"), Command::Quit);
    assert_eq!(
        cmd("flush_all\r\n"),
        Command::FlushAll {
            delay: 0,
            noreply: false
        }
    );
    assert_eq!(
        cmd("flush_all 10 noreply\r\n"),
        Command::FlushAll {
            delay: 10,
            noreply: true
        }
    );
    assert_eq!(err("flush_all async\r\n"), ErrorReply::InvalidExptime);
    assert_eq!(err("flush_all 0 sync\r\n"), ErrorReply::BadCommandLine);
    assert_eq!(
        cmd("verbosity 1 noreply\r\n"),
        Command::Verbosity { noreply: true }
    );
    assert_eq!(err("verbosity\r\n"), ErrorReply::UnknownCommand);
    assert_eq!(
        cmd("verbosity noreply\r\n"),
        Command::Verbosity { noreply: true }
    );
    assert!(matches!(
        one("verbosity foo bar my\r\n"),
        Decoded::Error { .. }
    ));
    assert_eq!(cmd("stats\r\n"), Command::Stats(StatsGroup::General));
    assert_eq!(
        cmd("stats threads slave\r\n"),
        Command::Stats(StatsGroup::ThreadsSlave)
    );
    assert_eq!(cmd("stats nodes\r\n"), Command::Stats(StatsGroup::Nodes));
    assert_eq!(err("stats bogus\r\n"), ErrorReply::UnknownCommand);
    assert_eq!(cmd("show variables\r\n"), Command::ShowVariables);
    assert_eq!(err("show x\r\n"), ErrorReply::UnknownCommand);
    assert_eq!(cmd("kill 3\r\n"), Command::Kill(3));
    assert_eq!(cmd("shutdown\r\n"), Command::Shutdown { node: None });
    assert_eq!(err("node add a 1\r\n"), ErrorReply::UnknownCommand);
    assert_eq!(err("\r\n"), ErrorReply::UnknownCommand);
    assert_eq!(err("GET a\r\n"), ErrorReply::UnknownCommand);
    assert_eq!(
        cmd("keys a b 10\r\n"),
        Command::Keys {
            prefixes: vec![b("a"), b("b")],
            limit: 10
        }
    );
    assert_eq!(err("keys a 0\r\n"), ErrorReply::UnknownCommand);
}

#[test]
fn dump_arguments() {
    assert_eq!(cmd("dump\r\n"), Command::Dump(DumpArgs::default()));
    assert_eq!(
        cmd("dump 100 1 3 512\r\n"),
        Command::Dump(DumpArgs {
            wait_usec: 100,
            partition: Some(1),
            partition_count: 3,
            bwlimit_kbps: 512
        })
    );
    assert_eq!(
        cmd("dump 0 -1 0\r\n"),
        Command::Dump(DumpArgs {
            wait_usec: 0,
            partition: None,
            partition_count: 0,
            bwlimit_kbps: 0
        })
    );
    assert_eq!(
        cmd("dump_key 0 2\r\n"),
        Command::DumpKey(DumpArgs {
            wait_usec: 0,
            partition: Some(0),
            partition_count: 2,
            bwlimit_kbps: 0
        })
    );
    for bad in [
        "dump -1\r\n",
        "dump 0 2 2\r\n",
        "dump 0 -1 3\r\n",
        "dump x\r\n",
        "dump 0 0 1 0 9\r\n",
    ] {
        assert_eq!(err(bad), ErrorReply::UnknownCommand, "{bad:?}");
    }
}

#[test]
fn proxy_prefix() {
    let out = decode_all(b"<a:1,b:2>set k 0 0 1 7 sync\r\nx\r\n", Dialect::default());
    let Decoded::Request(r) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        r.framing,
        Framing::Text {
            proxy: Some(ProxyPath(vec![b("a:1"), b("b:2")]))
        }
    );
    assert!(matches!(&r.command, Command::Store(s) if s.version == Some(7)));
    assert_eq!(ProxyPath(vec![b("a:1"), b("a:1")]).count(b"a:1"), 2);
}

#[test]
fn node_sync_lines() {
    let out = decode_all(
        b"node sync 7\r\nNODE h 12121 0 0 0 1 16\r\nNODE g 12122 1 1 0 0 17\r\nEND\r\n",
        Dialect::default(),
    );
    let Decoded::Request(r) = &out[0] else {
        panic!("{out:?}")
    };
    let Command::NodeSync { version, nodes } = &r.command else {
        panic!()
    };
    assert_eq!(*version, 7);
    assert_eq!(nodes.len(), 2);
    assert_eq!(
        nodes[1],
        NodeLine {
            name: b("g"),
            port: 12122,
            role: 1,
            state: 1,
            partition: 0,
            balance: 0,
            thread_type: 17
        }
    );
    let out = decode_all(
        b"node sync 7\r\nNODE h x 0 0 0 1 16\r\nEND\r\nping\r\n",
        Dialect::default(),
    );
    assert!(
        matches!(&out[0], Decoded::Error { error: ErrorReply::Client(m), .. } if m == "format error")
    );
    assert!(matches!(&out[1], Decoded::Request(r) if r.command == Command::Ping));
    // More NODE lines than the limit is a format error, and nothing is kept beyond the limit.
    let many = format!(
        "node sync 1\r\n{}END\r\n",
        "NODE h 1 2 0 -1 0 16\r\n".repeat(5)
    );
    assert!(matches!(
        &decode_all(many.as_bytes(), Dialect::default())[0],
        Decoded::Error { .. }
    ));
}

/// memcached 1.6.18's answers to commands without their arguments (checked against it: tests/tests/memcached.rs).
#[test]
fn missing_arguments_are_unknown_commands() {
    for line in [
        "get",
        "gets",
        "gat",
        "gats",
        "set",
        "set k",
        "set k 0",
        "set k 0 0",
        "add k 0 0",
        "replace",
        "append k",
        "prepend k 0 0",
        "cas",
        "cas k",
        "cas k 0 0 1",
        "incr",
        "incr k",
        "decr k",
        "touch",
        "touch k",
        "delete",
        "verbosity",
        "verbosity 1 2 3",
        "flush_all 0 noreply x",
        "delete k 0 noreply x",
    ] {
        assert_eq!(
            err(&format!("{line}\r\n")),
            ErrorReply::UnknownCommand,
            "{line:?}"
        );
    }
    // Nothing is swallowed: the data line that follows is read as a command.
    let out = decode_all(b"cas k 0 0 1\r\nx\r\nping\r\n", Dialect::default());
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(matches!(&out[2], Decoded::Request(r) if r.command == Command::Ping));
}

#[test]
fn delete_takes_memcacheds_form_from_clients_and_flares_from_nodes() {
    let plain = |hold, version, noreply| Command::Delete {
        key: b("k"),
        hold,
        version,
        cas: None,
        options: WriteOptions {
            noreply,
            ..Default::default()
        },
    };
    assert_eq!(cmd("delete k 0\r\n"), plain(0, None, false));
    assert_eq!(cmd("delete k 0 noreply\r\n"), plain(0, None, true));
    assert_eq!(cmd("delete k noreply\r\n"), plain(0, None, true));
    for bad in [
        "delete k 10",
        "delete k -1",
        "delete k 00",
        "delete k x",
        "delete k noreply x",
    ] {
        assert_eq!(
            err(&format!("{bad}\r\n")),
            ErrorReply::DeleteUsage,
            "{bad:?}"
        );
    }
    assert_eq!(err("delete k 10 noreply\r\n"), ErrorReply::Silent);
    // Flare's form with a version, as a client may send it (allow-client-version decides in the driver).
    assert_eq!(cmd("delete k 10 5\r\n"), plain(10, Some(5), false));
    // What nodes send each other: a replicated tombstone, a forwarded delete with a hold.
    for (line, want) in [
        (
            "<m:1#9>delete k 1800000000 8\r\n",
            plain(1_800_000_000, Some(8), false),
        ),
        ("<m:1>delete k 10\r\n", plain(10, None, false)),
        ("<m:1>delete k 10 noreply\r\n", plain(10, None, true)),
    ] {
        assert_eq!(cmd(line), want, "{line:?}");
    }
    assert_eq!(
        ErrorReply::DeleteUsage.line(),
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"
    );
}

#[test]
fn flush_all_and_verbosity_read_their_arguments_as_memcached() {
    let flush = |delay, noreply| Command::FlushAll { delay, noreply };
    assert_eq!(cmd("flush_all 0 0\r\n"), flush(0, false));
    assert_eq!(cmd("flush_all 5 x\r\n"), flush(5, false));
    assert_eq!(cmd("flush_all -1\r\n"), flush(-1, false));
    assert_eq!(cmd("flush_all noreply\r\n"), flush(0, true));
    assert_eq!(err("flush_all invalid\r\n"), ErrorReply::InvalidExptime);
    assert_eq!(err("flush_all noreply 5\r\n"), ErrorReply::InvalidExptime);
    assert_eq!(
        err("flush_all 99999999999999999999\r\n"),
        ErrorReply::InvalidExptime
    );
    // With noreply the error is not sent, and nothing is flushed.
    assert_eq!(err("flush_all invalid noreply\r\n"), ErrorReply::Silent);
    assert_eq!(
        ErrorReply::InvalidExptime.line(),
        "CLIENT_ERROR invalid exptime argument"
    );
    assert_eq!(
        cmd("verbosity 1 2\r\n"),
        Command::Verbosity { noreply: false }
    );
    assert_eq!(
        cmd("verbosity invalid noreply\r\n"),
        Command::Verbosity { noreply: true }
    );
    for bad in [
        "verbosity invalid",
        "verbosity -1",
        "verbosity x 1",
        "verbosity HTTP/1.1",
    ] {
        assert_eq!(
            err(&format!("{bad}\r\n")),
            ErrorReply::BadCommandLine,
            "{bad:?}"
        );
    }
}

#[test]
fn invalid_exptimes_of_touch_and_gat() {
    for bad in [
        "touch k x",
        "touch k 99999999999999999999",
        "gat x a",
        "gats HTTP/1.1 a",
    ] {
        assert_eq!(
            err(&format!("{bad}\r\n")),
            ErrorReply::InvalidExptime,
            "{bad:?}"
        );
    }
    let d = Dialect {
        gat_flare_syntax: true,
        ..Default::default()
    };
    assert!(matches!(
        &decode_all(b"gat a x\r\n", d)[0],
        Decoded::Error {
            error: ErrorReply::InvalidExptime,
            ..
        }
    ));
}

#[test]
fn declared_lengths_memcached_cannot_hold_are_bad_command_lines() {
    for len in [
        "2147483646",
        "2147483647",
        "2147483648",
        "4294967296",
        "99999999999999999999",
    ] {
        let line = format!("set k 0 0 {len}\r\nabc\r\nping\r\n");
        let out = decode_all(line.as_bytes(), Dialect::default());
        assert!(
            matches!(
                &out[0],
                Decoded::Error {
                    error: ErrorReply::BadCommandLine,
                    close: false,
                    ..
                }
            ),
            "{len}: {out:?}"
        );
        // Nothing swallowed: `abc` is an unknown command, then `ping`.
        assert_eq!(out.len(), 3, "{len}: {out:?}");
    }
    // Just under it, over the item limit: too large, and the declared data is swallowed.
    let mut d = Decoder::new(limits(), Dialect::default());
    let mut buf = BytesMut::from(&b"set k 0 0 2147483645\r\nabc"[..]);
    assert!(matches!(
        d.decode(&mut buf),
        Some(Decoded::Error {
            error: ErrorReply::TooLarge,
            ..
        })
    ));
    assert!(buf.is_empty() && d.in_progress());
}

/// memcached 1.6.18's guard against cross-protocol requests, as found by testing it.
#[test]
fn http_request_lines_close_without_a_reply() {
    let closes = |line: &str| {
        matches!(
            one(&format!("{line}\r\n")),
            Decoded::Error {
                error: ErrorReply::Silent,
                close: true,
                ..
            }
        )
    };
    for line in [
        "GET / HTTP/1.0",
        "PUT /x HTTP/1.1",
        "DELETE HTTP/1.1",
        "HTTP/1.1",
        "foo HTTP/",
        "foo  HTTP/1.1   ",
        "pzz HTTP/1.1",
        "<a:1>GET / HTTP/1.1",
    ] {
        assert!(closes(line), "{line:?} must close");
    }
    let twenty_two = "xx ".repeat(22);
    assert!(closes(&format!("{twenty_two}HTTP/1.1")));
    assert!(closes(&format!("{twenty_two}HTTP/1.1 y z")));
    for line in [
        // Known commands, or a first letter memcached dispatches on, or a one-byte command.
        "get / HTTP/1.0",
        "azz HTTP/1.1",
        "GETS a HTTP/1.0 x",
        "x HTTP/1.1",
        "foo HTTPX",
        "foo http/1.1",
        "foo HTTP/1.1 x",
        "version HTTP/1.1",
        "stats HTTP/1.1",
        "mn HTTP/1.1",
        "show HTTP/1.1",
    ] {
        assert!(!closes(line), "{line:?} must not close");
    }
    // Beyond memcached's 23 tokens the token it looks at is the 23rd.
    assert!(!closes(&format!("{}HTTP/1.1", "xx ".repeat(23))));
    // A silent error writes nothing.
    let mut out = BytesMut::new();
    crate::protocol::response::encode(
        &Framing::TEXT,
        &crate::protocol::Reply::Error(ErrorReply::Silent),
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn line_too_long_closes() {
    let long = vec![b'a'; 300];
    let out = decode_all(&long, Dialect::default());
    assert!(
        matches!(
            &out[0],
            Decoded::Error {
                error: ErrorReply::LineTooLong,
                close: true,
                ..
            }
        ),
        "{out:?}"
    );
    let mut with_end = vec![b'a'; 300];
    with_end.extend_from_slice(b"\r\n");
    let out = decode_all(&with_end, Dialect::default());
    assert!(
        matches!(
            &out[0],
            Decoded::Error {
                error: ErrorReply::LineTooLong,
                close: true,
                ..
            }
        ),
        "{out:?}"
    );
    // Exactly line_max bytes plus CRLF is fine.
    let mut ok = b"get ".to_vec();
    ok.extend(std::iter::repeat_n(b' ', 252));
    ok.extend_from_slice(b"\r\n");
    assert_eq!(ok.len(), 258);
    assert!(matches!(
        &decode_all(&ok, Dialect::default())[0],
        Decoded::Error {
            error: ErrorReply::UnknownCommand,
            ..
        }
    ));
}

/// Every split point of a pipelined input gives the same requests as feeding it whole.
#[test]
fn split_at_every_offset() {
    let input: &[u8] = b"set k 0 0 5\r\nhello\r\nget k k2\r\n<a:1>delete k 0 3\r\nnode sync 2\r\nNODE h 1 2 0 -1 0 16\r\nEND\r\nincr n 5 noreply\nset big 0 0 99\r\n";
    let whole = decode_all(input, Dialect::default());
    for cut in 0..input.len() {
        let mut d = Decoder::new(limits(), Dialect::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for part in [&input[..cut], &input[cut..]] {
            buf.extend_from_slice(part);
            while let Some(x) = d.decode(&mut buf) {
                got.push(x);
            }
        }
        assert_eq!(got, whole, "cut at {cut}");
    }
    // And one byte at a time.
    let mut d = Decoder::new(limits(), Dialect::default());
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &byte in input {
        buf.extend_from_slice(&[byte]);
        while let Some(x) = d.decode(&mut buf) {
            got.push(x);
        }
    }
    assert_eq!(got, whole);
    assert_eq!(whole.len(), 6);
}
