//! Both storage engines against the shared suite of `flare_tests::conformance`: fixed scenarios, and generated
//! operation sequences compared with a model, with restarts mixed in (for RocksDB a close and reopen of the
//! database; the in-memory engine keeps its map, as a process crash loses nothing written to it).

use std::sync::Arc;

use flare_core::storage::MemoryStorage;
use flare_runtime::rocks::{RocksOptions, RocksStorage};
use flare_tests::conformance::{check_against_model, op, run_suite, Harness};
use proptest::prelude::*;

struct Memory;

impl Harness for Memory {
    type S = Arc<MemoryStorage>;
    fn fresh(&mut self) -> Self::S {
        Arc::new(MemoryStorage::new())
    }
    fn restart(&mut self, engine: Self::S) -> Self::S {
        engine
    }
}

#[test]
fn memory_engine_passes_the_suite() {
    run_suite(&mut Memory);
}

proptest! {
    #[test]
    fn memory_engine_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        check_against_model(&mut Memory, &ops);
    }
}

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
