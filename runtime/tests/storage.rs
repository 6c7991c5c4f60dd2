//! The RocksDB engine against the shared storage suite of `flare_core::conformance`: fixed scenarios, and generated
//! operation sequences compared with a model, with restarts (close and reopen of the database) mixed in.

use flare_core::conformance::{check_against_model, run_suite, Harness, Op};
use flare_core::item::{Entry, Item};
use flare_core::storage::{Change, Storage};
use flare_runtime::rocks::{RocksOptions, RocksStorage};
use proptest::prelude::*;

/// Each fresh engine gets its own temporary directory, removed when the harness is dropped.
struct Rocks {
    dirs: Vec<tempfile::TempDir>,
    options: RocksOptions,
}

impl Rocks {
    fn new() -> Self {
        Rocks {
            dirs: Vec::new(),
            options: RocksOptions::default(),
        }
    }

    /// A record cache so small that nearly every write evicts, and a few stripes so keys share them.
    fn tiny_cache() -> Self {
        Rocks {
            dirs: Vec::new(),
            options: RocksOptions {
                item_cache_bytes: 4 * 300,
                mutex_slots: 4,
                ..RocksOptions::default()
            },
        }
    }

    /// No record cache at all.
    fn no_cache() -> Self {
        Rocks {
            dirs: Vec::new(),
            options: RocksOptions {
                item_cache_bytes: 0,
                ..RocksOptions::default()
            },
        }
    }
}

impl Harness for Rocks {
    type S = RocksStorage;

    fn fresh(&mut self) -> RocksStorage {
        let dir = tempfile::Builder::new()
            .prefix("flare-rocks-")
            .tempdir()
            .expect("temp dir");
        let engine = RocksStorage::open(dir.path(), &self.options).expect("open");
        self.dirs.push(dir);
        engine
    }

    fn restart(&mut self, engine: RocksStorage) -> RocksStorage {
        let path = engine.path().to_path_buf();
        drop(engine);
        RocksStorage::open(&path, &self.options).expect("reopen")
    }
}

#[test]
fn rocksdb_engine_passes_the_suite() {
    run_suite(&mut Rocks::new());
    run_suite(&mut Rocks::tiny_cache());
    run_suite(&mut Rocks::no_cache());
}

fn op() -> impl Strategy<Value = Op> {
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

proptest! {
    // Each case opens RocksDB a few times; 48 cases keep the test to a few seconds.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn rocksdb_engine_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        check_against_model(&mut Rocks::new(), &ops);
    }

    #[test]
    fn rocksdb_engine_with_an_evicting_cache_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        check_against_model(&mut Rocks::tiny_cache(), &ops);
    }
}

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
