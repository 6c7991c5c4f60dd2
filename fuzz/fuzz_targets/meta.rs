#![no_main]
//! The meta commands (protocol.md §11): parser, execution and reply encoder.
//!
//! The input is fed to a text [`Decoder`] in chunks (the first input byte picks the chunk size). Invariants:
//! decoding never panics and never consumes more than it was given; every parsed meta command has a key of
//! 1..=key_max bytes without space, control character or DEL (after base64 decoding when `b` was given; `mn` has
//! none), opaque tokens of at most 32 bytes starting with `O`, no flag character twice, and a value within
//! `item_size_max` (only `ms` has one). Each command is also executed against an in-memory store, and both its real
//! reply and every reply kind built from its key and opaque encode to well-formed meta replies: one line of
//! single-space-separated tokens with a known code, and for `VA` exactly the declared number of data bytes.
use bytes::{Bytes, BytesMut};
use flare_core::exec::{self, Outcome, Tally};
use flare_core::protocol::meta::{
    DebugInfo, MetaCommand, MetaFlag, MetaKind, MetaReply, MetaStatus, ReturnFlag,
};
use flare_core::protocol::text::Dialect;
use flare_core::protocol::{response, Command, Decoded, Decoder, Framing, Limits, Reply};
use flare_core::storage::MemoryStorage;
use flare_core::store::{Store, StoreConfig};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    line_max: 256,
    key_max: 32,
    item_size_max: 128,
    keys_per_get_max: 8,
    nodes_max: 8,
    raft_message_max: 1024,
};

const NOW: u64 = 1_800_000_000;

/// The request character of a flag (to check that none repeats).
fn flag_char(f: &MetaFlag) -> u8 {
    match f {
        MetaFlag::Base64 => b'b',
        MetaFlag::ReturnCas => b'c',
        MetaFlag::ReturnFlags => b'f',
        MetaFlag::ReturnHit => b'h',
        MetaFlag::ReturnKey => b'k',
        MetaFlag::ReturnLastAccess => b'l',
        MetaFlag::Opaque(_) => b'O',
        MetaFlag::Quiet => b'q',
        MetaFlag::ReturnSize => b's',
        MetaFlag::ReturnTtl => b't',
        MetaFlag::NoBump => b'u',
        MetaFlag::ReturnValue => b'v',
        MetaFlag::RemoveValue => b'x',
        MetaFlag::Invalidate => b'I',
        MetaFlag::NewCas(_) => b'E',
        MetaFlag::Vivify(_) => b'N',
        MetaFlag::Recache(_) => b'R',
        MetaFlag::Ttl(_) => b'T',
        MetaFlag::ClientFlags(_) => b'F',
        MetaFlag::CompareCas(_) => b'C',
        MetaFlag::SetMode(_) | MetaFlag::ArithMode(_) => b'M',
        MetaFlag::Initial(_) => b'J',
        MetaFlag::Delta(_) => b'D',
        MetaFlag::Ignored(c) => *c,
    }
}

fn check_command(m: &MetaCommand) {
    if m.kind == MetaKind::NoOp {
        assert!(m.key.is_empty() && m.flags.is_empty(), "mn carries nothing");
    } else {
        assert!(!m.key.is_empty(), "empty key");
        assert!(m.key.len() <= LIMITS.key_max, "key too long");
        assert!(
            m.key.iter().all(|&c| flare_core::protocol::key_byte_ok(c)),
            "bad key byte in {:?}",
            m.key
        );
    }
    if m.kind != MetaKind::Debug {
        assert_eq!(
            m.base64,
            m.flags.contains(&MetaFlag::Base64),
            "base64 iff b"
        );
    }
    let mut seen = [false; 256];
    for f in &m.flags {
        let c = usize::from(flag_char(f));
        assert!(!seen[c], "flag {} twice", c as u8 as char);
        seen[c] = true;
        if let MetaFlag::Opaque(o) = f {
            assert!(o.len() <= 32 && o.first() == Some(&b'O'), "opaque {o:?}");
        }
    }
    assert!(
        m.value.len() <= LIMITS.item_size_max as usize,
        "value too large"
    );
    if m.kind != MetaKind::Set {
        assert!(m.value.is_empty(), "only ms has a value");
    }
}

/// Every reply kind, built from the command's key and opaque.
fn replies(m: &MetaCommand) -> Vec<MetaReply> {
    let key = if m.key.is_empty() {
        Bytes::from_static(b"k")
    } else {
        m.key.clone()
    };
    let mut flags = vec![
        ReturnFlag::Cas(u64::MAX),
        ReturnFlag::ClientFlags(u32::MAX),
        ReturnFlag::Hit(true),
        ReturnFlag::Key {
            key: key.clone(),
            base64: m.base64,
        },
        ReturnFlag::Key {
            key: key.clone(),
            base64: !m.base64,
        },
        ReturnFlag::LastAccess(0),
        ReturnFlag::Size(m.value.len() as u64),
        ReturnFlag::Ttl(-1),
        ReturnFlag::AlreadyWon,
        ReturnFlag::Stale,
        ReturnFlag::Won,
    ];
    flags.extend(m.flags.iter().filter_map(|f| match f {
        MetaFlag::Opaque(o) => Some(ReturnFlag::Opaque(o.clone())),
        _ => None,
    }));
    let mut all = vec![
        MetaReply::Value {
            flags: flags.clone(),
            data: m.value.clone(),
        },
        MetaReply::NoOp,
        MetaReply::Debug(DebugInfo {
            key,
            base64: m.base64,
            exp: i64::MIN,
            la: u64::MAX,
            cas: u64::MAX,
            fetched: true,
            cls: u32::MAX,
            size: u64::MAX,
        }),
    ];
    for status in [
        MetaStatus::Done,
        MetaStatus::Miss,
        MetaStatus::NotFound,
        MetaStatus::NotStored,
        MetaStatus::Exists,
    ] {
        all.push(MetaReply::Status {
            status,
            flags: flags.clone(),
        });
    }
    all
}

/// One well-formed meta reply: a line of tokens with a known code, then the data block of a `VA`.
fn check_encoded(bytes: &[u8]) {
    let end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a reply line ends with \\r\\n");
    let line = &bytes[..end];
    let rest = &bytes[end + 2..];
    assert!(
        !line.iter().any(|&c| c == b'\r' || c == b'\n'),
        "one line: {line:?}"
    );
    let mut tokens = line.split(|&c| c == b' ');
    assert!(
        line.split(|&c| c == b' ').all(|t| !t.is_empty()),
        "single spaces, no empty token: {line:?}"
    );
    match tokens.next().expect("a code") {
        b"VA" => {
            let size: usize = std::str::from_utf8(tokens.next().expect("a size"))
                .expect("digits")
                .parse()
                .expect("a number");
            assert_eq!(rest.len(), size + 2, "VA data length");
            assert_eq!(&rest[size..], b"\r\n", "data block ends with \\r\\n");
        }
        b"HD" | b"EN" | b"NF" | b"NS" | b"EX" | b"MN" | b"ME" => {
            assert!(rest.is_empty(), "nothing after the line")
        }
        b"CLIENT_ERROR" | b"SERVER_ERROR" | b"ERROR" => assert!(rest.is_empty()),
        other => panic!("unknown reply code {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(sel % 32) + 1;
    let store = Store::new(
        MemoryStorage::new(),
        StoreConfig {
            item_size_max: LIMITS.item_size_max,
            ..StoreConfig::default()
        },
    );
    let mut tally = Tally::default();
    let mut decoder = Decoder::new(LIMITS, Dialect::default());
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let decoded = decoder.decode(&mut buf);
            consumed += before - buf.len();
            let Some(decoded) = decoded else { break };
            match decoded {
                Decoded::Request(r) | Decoded::Part(r) => {
                    let Command::Meta(m) = r.command else {
                        continue;
                    };
                    if !matches!(r.framing, Framing::Text { .. }) {
                        continue;
                    }
                    check_command(&m);
                    for reply in replies(&m) {
                        let mut out = BytesMut::new();
                        response::encode(&r.framing, &Reply::Meta(reply), &mut out);
                        check_encoded(&out);
                    }
                    let Outcome::Reply { reply, .. } =
                        exec::execute(&store, Command::Meta(m), NOW, &mut tally)
                    else {
                        panic!("a meta command always gets a reply");
                    };
                    let mut out = BytesMut::new();
                    response::encode(&r.framing, &reply, &mut out);
                    if !out.is_empty() {
                        check_encoded(&out);
                    }
                }
                Decoded::Error { close, .. } => {
                    if close {
                        return;
                    }
                }
            }
        }
    }
    assert!(consumed <= input.len(), "consumed more than given");
});
