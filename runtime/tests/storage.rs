//! The RocksDB engine against the shared storage suite of `flare_core::conformance`: fixed scenarios, and generated
//! operation sequences compared with a model, with restarts (close and reopen of the database) mixed in.

use flare_core::conformance::{check_against_model, run_suite, Harness, Op};
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
