#![no_main]
//! The binary-protocol parser and encoder (protocol.md §10).
//!
//! The input gets a `0x80` prefix so the binary path is taken, and is fed to a [`Decoder`] in chunks (the first
//! input byte picks the chunk size). Invariants: decoding never panics, always makes progress and never consumes
//! more than it was given; keys are 1..=key_max bytes without space or control characters; values are within
//! `item_size_max`. Every reply kind encoded for each parsed request yields well-formed packets whose header body
//! length matches the bytes written, with the request's opcode and opaque echoed.
use bytes::{Bytes, BytesMut};
use flare_core::protocol::{
    binary, response, Command, Decoded, Decoder, ErrorReply, Framing, Limits, Reply, ValueItem,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    line_max: 256,
    key_max: 32,
    item_size_max: 128,
    keys_per_get_max: 8,
    nodes_max: 8,
    raft_message_max: 1024,
};

fn check_key(key: &Bytes) {
    assert!(!key.is_empty(), "empty key");
    assert!(key.len() <= LIMITS.key_max, "key too long");
    assert!(
        key.iter().all(|&c| flare_core::protocol::key_byte_ok(c)),
        "bad key byte in {key:?}"
    );
}

fn check_command(command: &Command) {
    match command {
        Command::Get { keys, .. } | Command::Gat { keys, .. } => {
            assert_eq!(keys.len(), 1, "binary gets carry one key");
            keys.iter().for_each(check_key);
        }
        Command::Store(s) => {
            check_key(&s.key);
            assert!(
                s.value.len() <= LIMITS.item_size_max as usize,
                "value too large"
            );
        }
        Command::Delete { key, .. } | Command::Arith { key, .. } | Command::Touch { key, .. } => {
            check_key(key)
        }
        _ => {}
    }
}

/// Every reply kind a request could get.
fn replies(command: &Command) -> Vec<Reply> {
    let key = match command {
        Command::Get { keys, .. } | Command::Gat { keys, .. } => keys[0].clone(),
        _ => Bytes::from_static(b"k"),
    };
    let item = ValueItem {
        key,
        flags: 0xfeed_f00d,
        version: 42,
        value: Bytes::from_static(b"value"),
    };
    vec![
        Reply::Nothing,
        Reply::Stored { version: 7 },
        Reply::NotStored,
        Reply::Exists,
        Reply::NotFound,
        Reply::Deleted,
        Reply::Touched { flags: 3, version: 7 },
        Reply::Ok,
        Reply::End,
        Reply::Values {
            items: vec![],
            cas: true,
            end: true,
        },
        Reply::Values {
            items: vec![item.clone(), item],
            cas: true,
            end: true,
        },
        Reply::Number {
            value: u64::MAX,
            version: 3,
        },
        Reply::Version("flare-2.0.0".into()),
        Reply::Stats(vec![
            ("pid".into(), "1".into()),
            ("uptime".into(), String::new()),
        ]),
        Reply::Lines(vec!["a".into(), "b".into()]),
        Reply::Error(ErrorReply::UnknownCommand),
        Reply::Error(ErrorReply::BadCommandLine),
        Reply::Error(ErrorReply::TooLarge),
        Reply::Error(ErrorReply::NonNumeric),
        Reply::Error(ErrorReply::Server("i/o error".into())),
    ]
}

/// Walks the encoded packets: each has a response header whose lengths add up, echoing opcode and opaque.
fn check_encoded(framing: &Framing, reply: &Reply) {
    let Framing::Binary(h) = framing else { return };
    let mut out = BytesMut::new();
    response::encode(framing, reply, &mut out);
    let mut rest = &out[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 24, "truncated header");
        assert_eq!(rest[0], binary::MAGIC_RESPONSE);
        assert_eq!(rest[1], h.opcode, "opcode echoed");
        let key_len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let extras_len = rest[4] as usize;
        let body_len = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        let opaque = u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]);
        assert_eq!(opaque, h.opaque, "opaque echoed");
        assert!(
            key_len + extras_len <= body_len,
            "key and extras inside the body"
        );
        assert!(
            rest.len() >= 24 + body_len,
            "body length {body_len} beyond the bytes written"
        );
        rest = &rest[24 + body_len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(sel % 32) + 1;
    let mut input = vec![binary::MAGIC_REQUEST];
    input.extend_from_slice(data);

    let mut decoder = Decoder::new(LIMITS, Default::default());
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let Some(decoded) = decoder.decode(&mut buf) else {
                consumed += before - buf.len();
                break;
            };
            consumed += before - buf.len();
            let framing = match &decoded {
                Decoded::Request(r) | Decoded::Part(r) => &r.framing,
                Decoded::Error { framing, .. } => framing,
            };
            if matches!(framing, Framing::Binary(_)) {
                assert!(
                    buf.len() < before,
                    "a binary request or rejection consumes its header"
                );
            }
            match decoded {
                Decoded::Request(r) | Decoded::Part(r) => {
                    if matches!(r.framing, Framing::Binary(_)) {
                        check_command(&r.command);
                        for reply in replies(&r.command) {
                            check_encoded(&r.framing, &reply);
                        }
                    }
                }
                Decoded::Error {
                    framing,
                    error,
                    close,
                } => {
                    check_encoded(&framing, &Reply::Error(error));
                    if close {
                        return;
                    }
                }
            }
        }
    }
    assert!(consumed <= input.len(), "consumed more than given");
});
