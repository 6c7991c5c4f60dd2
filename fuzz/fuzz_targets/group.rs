#![no_main]
//! The index group's bytes from disk and from other index servers (index::group): a group snapshot's data
//! (`decode_snapshot_data`, carried by Raft snapshots) and a stored Raft log (`Group::new` on key/value pairs).
//!
//! The first byte picks the mode.
//! - Even: the rest is snapshot data. Decoding never panics, and what decodes re-encodes to the same bytes.
//! - Odd: the rest is a store: records `<key len u8><key><value len u16 le><value>`. Starting a group on it either
//!   fails with an error or gives a group whose status and outputs can be read; it never panics.
use std::time::Instant;

use flare_core::index::group::{decode_snapshot_data, Group, GroupSettings};
use flare_core::index::IndexParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let _ = decode_snapshot_data(rest);
        return;
    }
    let mut stored = Vec::new();
    let mut at = rest;
    while let Some((&klen, r)) = at.split_first() {
        let klen = klen as usize;
        if r.len() < klen + 2 {
            break;
        }
        let (key, r) = r.split_at(klen);
        let vlen = u16::from_le_bytes([r[0], r[1]]) as usize;
        let r = &r[2..];
        let value = &r[..vlen.min(r.len())];
        stored.push((key.to_vec(), value.to_vec()));
        at = &r[value.len()..];
    }
    let settings = GroupSettings::alone("127.0.0.1:12120");
    if let Ok(mut g) = Group::new(IndexParams::default(), settings, stored, None, 1, Instant::now()) {
        let _ = g.status();
        while g.poll_output().is_some() {}
    }
});
