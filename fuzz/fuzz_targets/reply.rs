#![no_main]
//! The reader of replies from other nodes (forwarded answers, replication acknowledgements, dump streams, index
//! answers): `flare_core::protocol::reply`.
//!
//! The first input byte picks the reply kind and the chunk size. Invariants: reading never panics, never consumes
//! more than it was given, gives the same events however the input is split, and every value respects the limits.
use bytes::BytesMut;
use flare_core::protocol::reply::{ReplyError, ReplyEvent, ReplyKind, ReplyReader};
use flare_core::protocol::Limits;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    line_max: 256,
    key_max: 32,
    item_size_max: 128,
    keys_per_get_max: 8,
    nodes_max: 8,
    raft_message_max: 1024,
};

fn read(input: &[u8], kind: ReplyKind, chunk: usize) -> (Vec<ReplyEvent>, Option<ReplyError>) {
    let mut r = ReplyReader::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match r.next(&mut buf, kind) {
                Ok(Some(e)) => out.push(e),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else { return };
    let kind = [ReplyKind::Line, ReplyKind::Values, ReplyKind::Lines, ReplyKind::Meta][usize::from(sel & 3)];
    let (whole, whole_err) = read(input, kind, input.len());
    let (split, split_err) = read(input, kind, usize::from(sel >> 2) + 1);
    // A too-long line may be noticed earlier when the input arrives in pieces; up to then the two agree.
    let n = whole.len().min(split.len());
    assert_eq!(whole[..n], split[..n], "splitting changed the events");
    if whole_err.is_none() && split_err.is_none() {
        assert_eq!(whole.len(), split.len());
    }
    for e in &whole {
        match e {
            ReplyEvent::Value(v) => {
                assert!(v.value.len() <= LIMITS.item_size_max as usize);
                assert!(v.key.len() <= LIMITS.key_max);
            }
            ReplyEvent::MetaValue { data, .. } => assert!(data.len() <= LIMITS.item_size_max as usize),
            ReplyEvent::Line(l) | ReplyEvent::Item(l) => assert!(l.len() <= LIMITS.line_max),
            ReplyEvent::End => {}
        }
    }
});
