//! The `index` commands of a group of index servers: `index add|remove|peer <host:port>` as lines, and
//! `index raft <len>` with its data block through [`AdminParser`] (split anywhere, refused when too long or not
//! followed by `\r\n`).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

fn idx(c: IndexCommand) -> Result<AdminCommand, ErrorReply> {
    Ok(AdminCommand::Index(c))
}

fn raft(bytes: &[u8]) -> AdminParsed {
    AdminParsed::Command(AdminCommand::Index(IndexCommand::IndexRaft(
        Bytes::copy_from_slice(bytes),
    )))
}

fn closed(message: &'static str) -> AdminParsed {
    AdminParsed::Error {
        error: ErrorReply::Client(message.into()),
        close: true,
    }
}

/// Feeds `pieces` one after another to a parser (raft messages up to `raft_max` bytes), collecting what it
/// parses until it says to close; returns that and what is left buffered.
fn feed_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    raft_max: usize,
) -> (Vec<AdminParsed>, BytesMut) {
    let mut p = AdminParser::new(64).with_raft_message_max(raft_max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let Some(x) = p.parse(&mut buf) {
            let stop = matches!(
                x,
                AdminParsed::Close | AdminParsed::Error { close: true, .. }
            );
            out.push(x);
            if stop {
                return (out, buf);
            }
        }
    }
    (out, buf)
}

fn feed(input: &[u8], raft_max: usize) -> Vec<AdminParsed> {
    feed_pieces([input], raft_max).0
}

#[test]
fn index_command_lines() {
    let cases: Vec<(&str, Result<AdminCommand, ErrorReply>)> = vec![
        (
            "index add 10.0.0.2:12120",
            idx(IndexCommand::IndexAdd("10.0.0.2:12120".into())),
        ),
        (
            "index remove c:1",
            idx(IndexCommand::IndexRemove("c:1".into())),
        ),
        (
            "index peer a.example:65535",
            idx(IndexCommand::IndexPeer("a.example:65535".into())),
        ),
        (
            "  index   add  a:012120  ",
            idx(IndexCommand::IndexAdd("a:12120".into())),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(parse_line(line.as_bytes()), want, "{line:?}");
    }
}

#[test]
fn bad_index_commands_are_client_errors() {
    let address = ErrorReply::Client("bad index server address (expected <host>:<port>)".into());
    let cases: Vec<(&[u8], ErrorReply)> = vec![
        (b"index", ErrorReply::UnknownCommand),
        (b"index list", ErrorReply::UnknownCommand),
        (b"index Add a:1", ErrorReply::UnknownCommand),
        (b"index add", ErrorReply::BadCommandLine),
        (b"index remove", ErrorReply::BadCommandLine),
        (b"index peer", ErrorReply::BadCommandLine),
        (b"index add a:1 b:2", ErrorReply::BadCommandLine),
        (b"index add a", address.clone()),
        (b"index add a:", address.clone()),
        (b"index add :12120", address.clone()),
        (b"index add a:0", address.clone()),
        (b"index add a:65536", address.clone()),
        (b"index add a:-1", address.clone()),
        (b"index add a:x", address.clone()),
        (b"index add a:1:2", address.clone()),
        (b"index add a,b:1", address.clone()),
        (b"index add a\tb:1", address.clone()),
        (b"index remove \xff:1", address.clone()),
        (b"index peer a:99999999999999999999999", address.clone()),
        (
            b"index raft 3",
            ErrorReply::Client("index raft must be followed by its data block".into()),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(parse_line(line), Err(want.clone()), "{line:?}");
        assert!(
            want.line().starts_with("ERROR") || want.line().starts_with("CLIENT_ERROR "),
            "{want:?}"
        );
        // Through the parser a bad `index` line is answered and the connection goes on.
        let mut input = line.to_vec();
        input.extend_from_slice(b"\r\nping\r\n");
        let out = feed(&input, 64);
        if line.starts_with(b"index raft") {
            continue;
        }
        assert_eq!(
            out,
            [
                AdminParsed::Error {
                    error: want,
                    close: false
                },
                AdminParsed::Command(AdminCommand::Index(IndexCommand::Ping)),
            ],
            "{line:?}"
        );
    }
}

#[test]
fn index_lines_round_trip_and_classify() {
    for (line, op, changes_map) in [
        ("index add a:1", "index_add", true),
        ("index remove b.example:12120", "index_remove", true),
        ("index peer 10.0.0.3:12120", "index_peer", false),
    ] {
        let c = parse_line(line.as_bytes()).unwrap();
        assert_eq!(c.to_line(), line);
        assert_eq!(parse_line(c.to_line().as_bytes()).as_ref(), Ok(&c));
        assert_eq!(c.op_name(), op);
        let AdminCommand::Index(ic) = &c else {
            panic!("{line}: an index command")
        };
        assert_eq!(ic.changes_map(), changes_map, "{line}");
    }
    let c = AdminCommand::Index(IndexCommand::IndexRaft(Bytes::from_static(b"abc")));
    assert_eq!(c.to_line(), "index raft 3");
    assert_eq!(c.op_name(), "index_raft");
    assert!(!IndexCommand::IndexRaft(Bytes::new()).changes_map());
}

#[test]
fn raft_block_whole_and_split_at_every_offset() {
    // A block may hold anything: line ends, the binary magic byte first, `index raft` itself.
    let block = b"\x80\r\n\nindex raft 1\r\n\x00";
    let mut input = format!("ping\r\nindex raft {}\r\n", block.len()).into_bytes();
    input.extend_from_slice(block);
    input.extend_from_slice(b"\r\nindex raft 0\r\n\r\nindex peer a:1\r\n");
    let ping = AdminParsed::Command(AdminCommand::Index(IndexCommand::Ping));
    let peer = AdminParsed::Command(AdminCommand::Index(IndexCommand::IndexPeer("a:1".into())));
    let whole = feed(&input, 64);
    assert_eq!(whole, [ping, raft(block), raft(b""), peer]);
    for split in 0..=input.len() {
        let (out, rest) = feed_pieces([&input[..split], &input[split..]], 64);
        assert_eq!(out, whole, "split at {split}");
        assert!(rest.is_empty());
    }
    let (bytewise, rest) = feed_pieces(input.chunks(1), 64);
    assert_eq!(bytewise, whole, "byte by byte");
    assert!(rest.is_empty());
}

#[test]
fn raft_block_waits_for_all_of_it() {
    let mut p = AdminParser::new(64);
    let mut buf = BytesMut::from(&b"index raft 4\r\nab"[..]);
    assert_eq!(p.parse(&mut buf), None);
    assert!(p.in_progress());
    assert_eq!(&buf[..], b"ab", "the header is consumed, the block kept");
    buf.extend_from_slice(b"cd\r");
    assert_eq!(p.parse(&mut buf), None, "the block without its \\n");
    assert_eq!(&buf[..], b"abcd\r", "nothing consumed while waiting");
    buf.extend_from_slice(b"\nping\r\n");
    assert_eq!(p.parse(&mut buf), Some(raft(b"abcd")));
    assert!(!p.in_progress());
    assert_eq!(
        p.parse(&mut buf),
        Some(AdminParsed::Command(AdminCommand::Index(
            IndexCommand::Ping
        )))
    );
    assert!(buf.is_empty());
}

#[test]
fn oversize_raft_length_is_refused_before_buffering_the_block() {
    // The limit itself is accepted.
    assert_eq!(
        feed(b"index raft 8\r\n12345678\r\n", 8),
        [raft(b"12345678")]
    );
    for header in [
        &b"index raft 9\r\n"[..],
        b"index raft 18446744073709551615\r\n",
    ] {
        let mut p = AdminParser::new(64).with_raft_message_max(8);
        let mut buf = BytesMut::from(header);
        buf.extend_from_slice(b"123456789\r\nping\r\n");
        let capacity = buf.capacity();
        assert_eq!(p.parse(&mut buf), Some(closed("raft message too large")));
        assert!(buf.is_empty(), "the stream is dropped");
        assert!(
            buf.capacity() <= capacity,
            "nothing allocated for the block"
        );
        assert!(!p.in_progress());
    }
    // A length within the (default, 16 MiB) limit reserves nothing either: the buffer grows only as bytes arrive.
    let mut p = AdminParser::new(64);
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(format!("index raft {}\r\nab", 16 * 1024 * 1024).as_bytes());
    assert_eq!(p.parse(&mut buf), None);
    assert!(buf.capacity() <= 64, "{}", buf.capacity());
    assert_eq!(&buf[..], b"ab");
}

#[test]
fn bad_raft_headers_close() {
    for header in [
        "index raft",
        "index raft x",
        "index raft -1",
        "index raft 1.5",
        "index raft 1 2",
        "index raft 99999999999999999999999",
    ] {
        let input = format!("{header}\r\nab\r\nping\r\n");
        let (out, rest) = feed_pieces([input.as_bytes()], 64);
        assert_eq!(out, [closed("bad raft message length")], "{header:?}");
        assert!(rest.is_empty(), "{header:?}");
    }
}

#[test]
fn garbage_after_a_raft_block_closes() {
    for input in [
        &b"index raft 2\r\nabXY"[..],
        b"index raft 2\r\nab\n\r",
        b"index raft 2\r\nabc\r\n",
        b"index raft 0\r\n\n\n",
    ] {
        let whole = feed(input, 64);
        assert_eq!(
            whole,
            [AdminParsed::Error {
                error: ErrorReply::BadDataChunk,
                close: true
            }],
            "{input:?}"
        );
        let (bytewise, rest) = feed_pieces(input.chunks(1), 64);
        assert_eq!(bytewise, whole, "{input:?} byte by byte");
        assert!(rest.is_empty());
    }
}

/// One command of the group's traffic, and its bytes on the wire.
fn wire_command() -> impl Strategy<Value = (IndexCommand, Vec<u8>)> {
    let addr = ("[a-z0-9.-]{1,12}", 1..=u16::MAX).prop_map(|(h, p)| format!("{h}:{p}"));
    prop_oneof![
        addr.clone().prop_map(IndexCommand::IndexAdd),
        addr.clone().prop_map(IndexCommand::IndexRemove),
        addr.prop_map(IndexCommand::IndexPeer),
        proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| IndexCommand::IndexRaft(Bytes::from(b))),
        Just(IndexCommand::Ping),
    ]
    .prop_map(|c| {
        let mut wire = AdminCommand::Index(c.clone()).to_line().into_bytes();
        wire.extend_from_slice(b"\r\n");
        if let IndexCommand::IndexRaft(b) = &c {
            wire.extend_from_slice(b);
            wire.extend_from_slice(b"\r\n");
        }
        (c, wire)
    })
}

proptest! {
    /// What `to_line` (plus the block) puts on the wire parses back to the same commands, however the stream is
    /// cut into reads, and nothing is left over.
    #[test]
    fn index_traffic_round_trips_in_any_pieces(
        commands in proptest::collection::vec(wire_command(), 1..8),
        cuts in proptest::collection::vec(1..24usize, 1..40),
    ) {
        let wire: Vec<u8> = commands.iter().flat_map(|(_, w)| w.clone()).collect();
        let mut pieces = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= wire.len() {
                break;
            }
            let to = (at + cut).min(wire.len());
            pieces.push(&wire[at..to]);
            at = to;
        }
        let (out, rest) = feed_pieces(pieces, 64);
        let want: Vec<AdminParsed> = commands
            .iter()
            .map(|(c, _)| AdminParsed::Command(AdminCommand::Index(c.clone())))
            .collect();
        prop_assert_eq!(out, want);
        prop_assert!(rest.is_empty());
    }
}
