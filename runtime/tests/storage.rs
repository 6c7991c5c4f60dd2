//! RocksDB engine specifics: reopening after `clear`, durability of unlogged writes. The contract every engine keeps
//! (the shared conformance suite) runs in `tests/tests/storage.rs`.

use flare_core::item::{Entry, Item};
use flare_core::storage::{Change, Storage};
use flare_runtime::rocks::{RocksOptions, RocksStorage};

/// A database cleared just before it is closed can be opened again at once (the background compaction that `clear`
/// starts must not keep it open).
#[test]
fn reopen_right_after_clear() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let engine = RocksStorage::open(dir.path(), &RocksOptions::default()).expect("open");
        for i in 0..2000u32 {
            engine
                .update(format!("k{i}").as_bytes(), |_| {
                    (
                        Change::Put(Entry::Item(Item {
                            flags: i,
                            exptime: 0,
                            version: 1,
                            value: vec![7u8; 100].into(),
                            meta: 0,
                        })),
                        (),
                    )
                })
                .unwrap();
        }
        // Two clears: the first one's compaction may still run when the second starts.
        engine.clear().unwrap();
        engine.clear().unwrap();
        drop(engine);
        assert!(
            RocksStorage::open(dir.path(), &RocksOptions::default()).is_ok(),
            "round {round}"
        );
    }
}

/// Writes made without the write-ahead log (a reconstruction's load) are on disk once `persist_unlogged` returns.
#[test]
fn unlogged_writes_are_durable_after_persist() {
    let dir = tempfile::tempdir().unwrap();
    let engine = RocksStorage::open(dir.path(), &RocksOptions::default()).expect("open");
    for i in 0..500u32 {
        let item = Item {
            flags: i,
            exptime: 0,
            version: u64::from(i) + 1,
            value: vec![1u8; 5000].into(),
            meta: 0,
        };
        engine
            .update_unlogged(format!("k{i}").as_bytes(), |_| {
                (Change::Put(Entry::Item(item)), ())
            })
            .unwrap();
    }
    engine.persist_unlogged().unwrap();
    assert_eq!(engine.item_count(), 500);
    drop(engine);
    let engine = RocksStorage::open(dir.path(), &RocksOptions::default()).expect("reopen");
    assert_eq!(engine.item_count(), 500);
    match engine.get(b"k499").unwrap() {
        Some(Entry::Item(it)) => {
            assert_eq!((it.flags, it.version, it.value.len()), (499, 500, 5000))
        }
        other => panic!("k499: {other:?}"),
    }
}
