//! Replays the committed fuzz corpora as ordinary tests: every input must decode without panicking, and the same
//! invariants the fuzz targets assert hold here too.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use flare_core::item::Entry;
use flare_core::protocol::{Command, Decoded, Decoder, Limits};

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    out.sort();
    out
}

fn keys(cmd: &Command) -> Vec<&Bytes> {
    match cmd {
        Command::Get { keys, .. } | Command::Gat { keys, .. } => keys.iter().collect(),
        Command::Store(s) => vec![&s.key],
        Command::Delete { key, .. } | Command::Arith { key, .. } | Command::Touch { key, .. } => {
            vec![key]
        }
        _ => vec![],
    }
}

/// Decodes `input` whole and in every 2-way split; returns how many requests and errors came out.
fn replay(input: &[u8], limits: Limits) -> (usize, usize) {
    let mut results = None;
    for split in [input.len(), input.len() / 2, 1] {
        let mut decoder = Decoder::new(limits, Default::default());
        let mut buf = BytesMut::new();
        let mut requests = Vec::new();
        for chunk in [
            &input[..split.min(input.len())],
            &input[split.min(input.len())..],
        ] {
            buf.extend_from_slice(chunk);
            let mut steps = 0;
            while let Some(d) = decoder.decode(&mut buf) {
                steps += 1;
                assert!(steps <= input.len() + 2, "decoder makes no progress");
                if let Decoded::Request(r) = &d {
                    for k in keys(&r.command) {
                        assert!(!k.is_empty() && k.len() <= limits.key_max, "bad key {k:?}");
                        assert!(
                            k.iter().all(|b| flare_core::protocol::key_byte_ok(*b)),
                            "control byte in key {k:?}"
                        );
                    }
                    if let Command::Store(s) = &r.command {
                        assert!(s.value.len() <= limits.item_size_max as usize);
                    }
                }
                requests.push(d);
            }
        }
        let errors = requests
            .iter()
            .filter(|d| matches!(d, Decoded::Error { .. }))
            .count();
        let summary = (requests.len() - errors, errors);
        // Splitting the input must not change what is decoded.
        if let Some(prev) = results {
            assert_eq!(prev, summary, "split at {split} changed the result");
        }
        results = Some(summary);
    }
    results.unwrap()
}

#[test]
fn text_and_meta_corpora_decode_without_panics() {
    let limits = Limits {
        item_size_max: 1 << 16,
        ..Limits::default()
    };
    let mut requests = 0;
    for name in ["text", "meta"] {
        for (path, input) in corpus(name) {
            let (ok, _) = std::panic::catch_unwind(|| replay(&input, limits))
                .unwrap_or_else(|_| panic!("{path}"));
            requests += ok;
        }
    }
    assert!(requests > 0, "the corpus decoded to no request at all");
}

#[test]
fn binary_corpus_decodes_without_panics() {
    let limits = Limits {
        item_size_max: 1 << 16,
        ..Limits::default()
    };
    for (path, input) in corpus("binary") {
        std::panic::catch_unwind(|| replay(&input, limits)).unwrap_or_else(|_| panic!("{path}"));
    }
}

#[test]
fn item_corpus_round_trips() {
    for (path, input) in corpus("item") {
        if let Ok(entry) = Entry::decode(Bytes::from(input.clone())) {
            assert_eq!(entry.encode().as_ref(), &input[..], "{path}");
        }
    }
}

#[test]
fn reply_corpus_reads_without_panics() {
    use flare_core::protocol::reply::{ReplyKind, ReplyReader};
    let limits = Limits::default();
    let mut events = 0;
    for (path, input) in corpus("reply") {
        let Some((&sel, rest)) = input.split_first() else {
            continue;
        };
        let kind = [
            ReplyKind::Line,
            ReplyKind::Values,
            ReplyKind::Lines,
            ReplyKind::Meta,
        ][usize::from(sel & 3)];
        let mut r = ReplyReader::new(limits);
        let mut buf = BytesMut::from(rest);
        while let Ok(Some(_)) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.next(&mut buf, kind)))
                .unwrap_or_else(|_| panic!("{path}"))
        {
            events += 1;
        }
    }
    assert!(events > 0, "the reply corpus gave no event");
}

#[test]
fn config_corpus_parses_without_panics() {
    let mut parsed = 0;
    for (path, input) in corpus("config") {
        let text = String::from_utf8_lossy(&input);
        let ok = std::panic::catch_unwind(|| flare_core::config::parse_file(&text, "fuzz").is_ok())
            .unwrap_or_else(|_| panic!("{path}"));
        parsed += usize::from(ok);
    }
    assert!(parsed > 0, "no config corpus entry parsed");
}

#[test]
fn group_corpus_starts_or_refuses_without_panics() {
    use flare_core::index::group::{decode_snapshot_data, Group, GroupSettings};
    let mut decoded = 0;
    for (name, input) in corpus("group") {
        let Some((&mode, rest)) = input.split_first() else {
            continue;
        };
        if mode % 2 == 0 {
            decoded += usize::from(decode_snapshot_data(rest).is_ok());
            continue;
        }
        // `<key len u8><key><value len u16 le><value>` records, as the fuzz target reads them.
        let mut stored = Vec::new();
        let mut at = rest;
        while let Some((&klen, r)) = at.split_first() {
            let klen = klen as usize;
            if r.len() < klen + 2 {
                break;
            }
            let (key, r) = r.split_at(klen);
            let vlen = u16::from_le_bytes([r[0], r[1]]) as usize;
            let value = &r[2..][..vlen.min(r.len() - 2)];
            stored.push((key.to_vec(), value.to_vec()));
            at = &r[2 + value.len()..];
        }
        let started = Group::new(
            Default::default(),
            GroupSettings::alone("127.0.0.1:12120"),
            stored,
            None,
            1,
            std::time::Instant::now(),
        );
        if let Ok(mut g) = started {
            while g.poll_output().is_some() {}
        }
        let _ = name;
    }
    assert!(decoded >= 1, "the snapshot seed decodes");
}
