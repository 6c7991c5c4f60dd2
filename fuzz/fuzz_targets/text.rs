#![no_main]
//! The text-protocol parser (protocol.md §1, §4, §5, §9) and the text encoders.
//!
//! The input (after a first byte that picks the chunk size) is fed to a [`Decoder`] in chunks. Invariants: decoding
//! never panics, never consumes more than it was given, and returns the same requests however the input is split
//! (checked against feeding it whole); keys are 1..=key_max bytes without space or control characters; values are
//! within `item_size_max`; every text request's forwarded form parses back to the command as forwarded; every
//! reply encodes to CRLF-terminated lines.
use bytes::BytesMut;
use flare_core::protocol::forward::{as_forwarded, forward};
use flare_core::protocol::text::Dialect;
use flare_core::protocol::{response, Command, Decoded, Decoder, Framing, Limits, Reply};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    line_max: 512,
    key_max: 32,
    item_size_max: 128,
    keys_per_get_max: 8,
    nodes_max: 8,
    raft_message_max: 1024,
};

fn check_key(key: &[u8]) {
    assert!(!key.is_empty() && key.len() <= LIMITS.key_max, "key length {}", key.len());
    assert!(key.iter().all(|&c| flare_core::protocol::key_byte_ok(c)), "bad key byte in {key:?}");
}

fn check_command(command: &Command) {
    match command {
        Command::Get { keys, .. } | Command::Gat { keys, .. } => {
            assert!(!keys.is_empty() && keys.len() <= LIMITS.keys_per_get_max);
            keys.iter().for_each(|k| check_key(k));
        }
        Command::Store(s) => {
            check_key(&s.key);
            assert!(s.value.len() <= LIMITS.item_size_max as usize, "value too large");
        }
        Command::Delete { key, .. } | Command::Arith { key, .. } | Command::Touch { key, .. } => check_key(key),
        Command::NodeSync { nodes, .. } => assert!(nodes.len() <= LIMITS.nodes_max),
        _ => {}
    }
}

/// A long retrieval line is streamed as parts (`Decoded::Part`), split where the bytes happened to end: the keys of
/// the parts are joined to the request that ends the line, so that chunked and whole input compare equal.
fn joined(decoded: Vec<Decoded>) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut pending: Vec<bytes::Bytes> = Vec::new();
    for d in decoded {
        match d {
            Decoded::Part(r) => match r.command {
                Command::Get { keys, .. } | Command::Gat { keys, .. } => pending.extend(keys),
                _ => panic!("only retrievals are streamed"),
            },
            Decoded::Request(mut r) if !pending.is_empty() => {
                match &mut r.command {
                    Command::Get { keys, .. } | Command::Gat { keys, .. } => {
                        let rest = std::mem::take(keys);
                        *keys = std::mem::take(&mut pending);
                        keys.extend(rest);
                    }
                    _ => pending.clear(),
                }
                out.push(Decoded::Request(r));
            }
            other => {
                pending.clear();
                out.push(other);
            }
        }
    }
    out
}

fn decode(input: &[u8], chunk: usize, dialect: Dialect) -> Vec<Decoded> {
    let mut decoder = Decoder::new(LIMITS, dialect);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut consumed = 0usize;
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let next = decoder.decode(&mut buf);
            consumed += before - buf.len();
            match next {
                Some(d) => {
                    let close = matches!(d, Decoded::Error { close: true, .. });
                    out.push(d);
                    if close {
                        return out;
                    }
                }
                None => break,
            }
        }
    }
    assert!(consumed <= input.len(), "consumed more than given");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else { return };
    // Text only: a leading 0x80 would select the binary parser (its own target).
    if input.first() == Some(&0x80) {
        return;
    }
    let dialect = Dialect { gat_flare_syntax: sel & 0x40 != 0, incr_flare_semantics: sel & 0x80 != 0 };
    let whole = joined(decode(input, input.len(), dialect));
    let chunked = joined(decode(input, usize::from(sel & 0x3f) + 1, dialect));
    // A line-too-long rejection may come earlier when the input arrives in pieces; before it, all agree.
    let n = whole.len().min(chunked.len());
    assert_eq!(whole[..n], chunked[..n], "splitting the input changed the requests");
    for d in &whole {
        let (framing, reply) = match d {
            Decoded::Request(r) => {
                check_command(&r.command);
                let proxy = match &r.framing {
                    Framing::Text { proxy } => proxy.as_ref(),
                    Framing::Binary(_) => None,
                };
                // Every request has a forwarded form; a text one parses back to the command as forwarded (noreply
                // cleared, gat as gats). Binary requests carry fields text cannot say (an append's CAS): their
                // forms are checked by core's property test of forwarding.
                let text = matches!(r.framing, Framing::Text { .. });
                let again = forward(proxy, &r.command, false).bytes;
                if let (true, Some(want)) = (text, as_forwarded(&r.command, false)) {
                    let back = decode(&again, again.len(), dialect);
                    assert_eq!(back.len(), 1, "re-encoded {again:?}");
                    let Decoded::Request(got) = &back[0] else { panic!("re-encoded {again:?}: {back:?}") };
                    assert_eq!(got.command, want, "round trip of {again:?}");
                    assert_eq!(&got.framing, &r.framing, "round trip of {again:?}");
                }
                (&r.framing, Reply::Ok)
            }
            Decoded::Error { framing, error, .. } => (framing, Reply::Error(error.clone())),
            Decoded::Part(_) => unreachable!("parts are joined to their request"),
        };
        let mut out = BytesMut::new();
        response::encode(framing, &reply, &mut out);
        // A 0x80 at the start of a later request switches that request to the binary protocol (as memcached does),
        // whose replies are framed by a header, not a line end.
        match framing {
            Framing::Text { .. } => assert!(out.ends_with(b"\r\n"), "text reply {out:?}"),
            // A quiet opcode's success is not answered at all.
            Framing::Binary(_) => assert!(out.is_empty() || (out.len() >= 24 && out[0] == 0x81), "binary reply {out:?}"),
        }
    }
});
