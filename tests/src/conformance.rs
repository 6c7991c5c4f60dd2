//! One semantic test suite for every storage engine (core's in-memory engine, runtime's RocksDB engine; both run in
//! `tests/tests/storage.rs`), so both are held to the same contract: [`run_suite`] for fixed scenarios,
//! [`check_against_model`] for operation sequences (from the [`op`] strategy) against a `BTreeMap` model, with
//! restarts mixed in.
//!
//! Failures panic with a message naming the step, as a test would.

use std::collections::BTreeMap;

use bytes::Bytes;

use flare_core::item::{Entry, Item, Tombstone};
use flare_core::protocol::{StoreMode, StoreRequest, WriteOptions};
use flare_core::storage::{Change, Storage};
use flare_core::store::{DeleteOutcome, Store, StoreConfig, StoreOutcome};
use proptest::prelude::*;

/// How the suite gets engines: a fresh empty one, and the same data after a restart (close and reopen).
pub trait Harness {
    /// The engine type.
    type S: Storage;
    /// A new, empty engine.
    fn fresh(&mut self) -> Self::S;
    /// Closes `engine` and opens it again on the same data. Only what a crash of the process would keep must
    /// survive; for the engines here, that is every acknowledged write.
    fn restart(&mut self, engine: Self::S) -> Self::S;
}

/// One step of a generated sequence. Keys are indexes into a small key space so sequences collide often.
#[derive(Clone, Debug)]
pub enum Op {
    /// Write an item.
    Put(u8, Vec<u8>, u64),
    /// Write a tombstone.
    Tombstone(u8, u64),
    /// Remove the record.
    Remove(u8),
    /// Read one key.
    Get(u8),
    /// Scan from a key (exclusive) for at most `max` records.
    Scan(Option<u8>, u8),
    /// Remove everything.
    Clear,
    /// Close and reopen the engine.
    Restart,
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k:03}").into_bytes()
}

fn item(value: &[u8], version: u64) -> Entry {
    Entry::Item(Item {
        flags: version as u32,
        exptime: 0,
        version,
        value: Bytes::copy_from_slice(value),
        meta: 0,
    })
}

/// Runs `ops` on an engine and on a `BTreeMap`, comparing every read, scan and item count.
pub fn check_against_model<H: Harness>(h: &mut H, ops: &[Op]) {
    let mut engine = h.fresh();
    let mut model: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        let mut write = |k: u8, e: Option<Entry>| {
            engine
                .update(&key(k), |_| {
                    (e.clone().map_or(Change::Remove, Change::Put), ())
                })
                .unwrap_or_else(|err| panic!("step {step} {op:?}: {err}"));
            match e {
                Some(e) => model.insert(key(k), e),
                None => model.remove(&key(k)),
            };
        };
        match op {
            Op::Put(k, v, version) => write(*k, Some(item(v, *version))),
            Op::Tombstone(k, version) => write(
                *k,
                Some(Entry::Tombstone(Tombstone {
                    version: *version,
                    hold_until: 0,
                    expires_at: 5,
                })),
            ),
            Op::Remove(k) => write(*k, None),
            Op::Get(k) => {
                let got = engine.get(&key(*k)).unwrap();
                assert_eq!(got.as_ref(), model.get(&key(*k)), "step {step} {op:?}");
            }
            Op::Scan(after, max) => {
                let after = after.map(key);
                let got = engine.scan(after.as_deref(), usize::from(*max)).unwrap();
                let want: Vec<(Bytes, Entry)> = model
                    .iter()
                    .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
                    .take(usize::from(*max))
                    .map(|(k, e)| (Bytes::copy_from_slice(k), e.clone()))
                    .collect();
                assert_eq!(got, want, "step {step} {op:?}");
            }
            Op::Clear => {
                engine.clear().unwrap();
                model.clear();
            }
            Op::Restart => engine = h.restart(engine),
        }
        let items = model
            .values()
            .filter(|e| matches!(e, Entry::Item(_)))
            .count() as u64;
        assert_eq!(
            engine.item_count(),
            items,
            "item count after step {step} {op:?}"
        );
    }
}

/// Fixed scenarios every engine must pass: record operations, paging scans, clear, and the command semantics of
/// [`Store`] across restarts (versions and tombstones survive).
pub fn run_suite<H: Harness>(h: &mut H) {
    records_and_scans(h);
    versions_survive_restart(h);
    large_values_round_trip(h);
}

fn records_and_scans<H: Harness>(h: &mut H) {
    let e = h.fresh();
    assert_eq!(e.get(b"missing").unwrap(), None);
    for i in 0..50u8 {
        e.update(&key(i), |cur| {
            assert!(cur.is_none());
            (Change::Put(item(&[i; 3], 1)), ())
        })
        .unwrap();
    }
    assert_eq!(e.item_count(), 50);
    // Page through in steps of 7; every key exactly once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<Bytes> = None;
    loop {
        let page = e.scan(cursor.as_deref(), 7).unwrap();
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.clone());
        seen.extend(page.into_iter().map(|(k, _)| k));
    }
    assert_eq!(
        seen,
        (0..50).map(|i| Bytes::from(key(i))).collect::<Vec<_>>()
    );
    // Keep leaves the record; Remove and a tombstone each take one item away.
    e.update(&key(0), |_| (Change::Keep, ())).unwrap();
    e.update(&key(1), |_| (Change::Remove, ())).unwrap();
    e.update(&key(2), |_| {
        (
            Change::Put(Entry::Tombstone(Tombstone {
                version: 9,
                hold_until: 0,
                expires_at: 1,
            })),
            (),
        )
    })
    .unwrap();
    assert_eq!(e.item_count(), 48);
    let e = h.restart(e);
    assert_eq!(e.item_count(), 48);
    assert_eq!(e.get(&key(1)).unwrap(), None);
    assert_eq!(e.get(&key(2)).unwrap().map(|x| x.version()), Some(9));
    e.clear().unwrap();
    assert_eq!(e.item_count(), 0);
    assert!(e.scan(None, 10).unwrap().is_empty());
    let e = h.restart(e);
    assert_eq!(e.item_count(), 0);
    assert!(e.scan(None, 10).unwrap().is_empty());
}

fn versions_survive_restart<H: Harness>(h: &mut H) {
    const NOW: u64 = 1_800_000_000;
    let set = |k: &str, v: &str| StoreRequest {
        mode: StoreMode::Set,
        key: Bytes::copy_from_slice(k.as_bytes()),
        flags: 3,
        exptime: 100,
        value: Bytes::copy_from_slice(v.as_bytes()),
        cas_unique: 0,
        version: None,
        options: WriteOptions::default(),
    };
    let store = Store::new(h.fresh(), StoreConfig::default());
    for v in ["a", "b", "c"] {
        assert!(matches!(
            store.store(&set("k", v), NOW).unwrap(),
            StoreOutcome::Stored(_)
        ));
    }
    assert!(matches!(
        store.store(&set("gone", "x"), NOW).unwrap(),
        StoreOutcome::Stored(_)
    ));
    assert!(matches!(
        store.delete(b"gone", 0, None, None, NOW).unwrap(),
        DeleteOutcome::Deleted(_)
    ));
    let engine = h.restart(store_into_engine(store));
    let store = Store::new(engine, StoreConfig::default());
    let got = store.get(b"k", NOW).unwrap().expect("k survives");
    assert_eq!(
        (got.version, got.flags, got.exptime, &got.value[..]),
        (3, 3, NOW + 100, &b"c"[..])
    );
    assert_eq!(store.get(b"gone", NOW).unwrap(), None);
    // The version clock's mark survived: the re-created key's version is above every version before the restart.
    match store.store(&set("gone", "y"), NOW).unwrap() {
        StoreOutcome::Stored(i) => assert!(i.version > 4, "version {}", i.version),
        other => panic!("{other:?}"),
    }
}

fn large_values_round_trip<H: Harness>(h: &mut H) {
    let e = h.fresh();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    e.update(b"big", |_| (Change::Put(item(&big, 7)), ()))
        .unwrap();
    let e = h.restart(e);
    match e.get(b"big").unwrap() {
        Some(Entry::Item(i)) => assert!(i.value == big && i.version == 7),
        other => panic!("big value lost: {other:?}"),
    }
}

fn store_into_engine<S: Storage>(store: Store<S>) -> S {
    store.into_storage()
}

/// Generated steps over a key space of 12, weighted towards writes and reads.
pub fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..12;
    prop_oneof![
        4 => (k.clone(), proptest::collection::vec(any::<u8>(), 0..40), 1u64..100).prop_map(|(k, v, n)| Op::Put(k, v, n)),
        1 => (k.clone(), 1u64..100).prop_map(|(k, n)| Op::Tombstone(k, n)),
        2 => k.clone().prop_map(Op::Remove),
        3 => k.clone().prop_map(Op::Get),
        2 => (proptest::option::of(k), 0u8..6).prop_map(|(a, m)| Op::Scan(a, m)),
        1 => Just(Op::Clear),
        1 => Just(Op::Restart),
    ]
}
