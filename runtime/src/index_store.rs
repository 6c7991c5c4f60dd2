//! The index server's durable key-value store for its Raft log and state ([`RaftStore`]): the core's group
//! (`flare_core::index::group`) emits batches of [`KvOp`]s, the driver hands each batch to [`RaftStore::write`], and
//! at start-up [`RaftStore::load`] gives every key back.
//!
//! - [`RocksRaftStore`]: production, a RocksDB database in `<data-dir>/index-raft`. A batch is one `WriteBatch`
//!   (puts and range deletions, in order) written with `sync = true`, so its write-ahead log is fsynced before
//!   `write` returns: an acknowledged batch survives a crash or power loss, a torn one is not seen at all.
//! - [`MemoryRaftStore`]: tests and the turmoil simulation. Shared through an [`Arc`] it outlives a simulated
//!   restart of its host, as the disk would; every write counts as synced.
//!
//! Both calls block (RocksDB fsyncs in `write`); a tokio driver runs them where blocking is allowed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use flare_core::index::kv::KvOp;
use rocksdb::{IteratorMode, Options, WriteBatch, WriteOptions, DB};

/// The directory of the Raft store inside `data-dir`.
pub const RAFT_STORE_DIR: &str = "index-raft";

/// Where an index server keeps its Raft log and state.
pub trait RaftStore: Send + Sync + 'static {
    /// Every key and its value, in key (byte) order.
    fn load(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Applies `ops` in order as one atomic batch, durable (fsynced) before `Ok`. After an `Err` the batch may or
    /// may not be on disk (all of it or none): the caller must treat the store as failed and stop, not go on as if
    /// it were not written.
    fn write(&self, ops: &[KvOp]) -> io::Result<()>;
}

/// The Raft store on RocksDB, in `<data-dir>/index-raft`.
pub struct RocksRaftStore {
    path: PathBuf,
    db: DB,
    synced: WriteOptions,
}

impl RocksRaftStore {
    /// Opens (or creates) the store of the index server whose data directory is `data_dir` (created if missing).
    pub fn open(data_dir: &Path) -> io::Result<RocksRaftStore> {
        let path = data_dir.join(RAFT_STORE_DIR);
        std::fs::create_dir_all(&path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(4);
        opts.set_max_background_jobs(2);
        let db = DB::open(&opts, &path).map_err(rocks)?;
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        Ok(RocksRaftStore { path, db, synced })
    }

    /// The database directory (`<data-dir>/index-raft`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for RocksRaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksRaftStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RaftStore for RocksRaftStore {
    fn load(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db
            .iterator(IteratorMode::Start)
            .map(|kv| kv.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(rocks))
            .collect()
    }

    fn write(&self, ops: &[KvOp]) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                KvOp::Put { key, value } => batch.put(key, value),
                // An empty range is nothing; RocksDB may refuse one whose end is before its start.
                KvOp::DeleteRange { from, to } if from >= to => {}
                KvOp::DeleteRange { from, to } => batch.delete_range(from, to),
            }
        }
        self.db.write_opt(batch, &self.synced).map_err(rocks)
    }
}

/// The Raft store in memory (tests and the simulation; share one through an [`Arc`] between restarts of a
/// simulated host).
#[derive(Debug, Default)]
pub struct MemoryRaftStore(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

impl RaftStore for MemoryRaftStore {
    fn load(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn write(&self, ops: &[KvOp]) -> io::Result<()> {
        // A poisoned lock means a panic while holding it; each op leaves the map consistent.
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for op in ops {
            match op {
                KvOp::Put { key, value } => {
                    map.insert(key.clone(), value.clone());
                }
                // `BTreeMap::range` panics on a range that ends before it starts: an empty range is nothing.
                KvOp::DeleteRange { from, to } if from >= to => {}
                KvOp::DeleteRange { from, to } => {
                    let doomed: Vec<Vec<u8>> = map
                        .range::<Vec<u8>, _>(from..to)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
        Ok(())
    }
}

impl<T: RaftStore> RaftStore for Arc<T> {
    fn load(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        (**self).load()
    }
    fn write(&self, ops: &[KvOp]) -> io::Result<()> {
        (**self).write(ops)
    }
}

fn rocks(e: rocksdb::Error) -> io::Error {
    io::Error::other(e.into_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn put(k: &str, v: &str) -> KvOp {
        KvOp::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    fn delete_range(from: &str, to: &str) -> KvOp {
        KvOp::DeleteRange {
            from: from.into(),
            to: to.into(),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The behaviour both stores share.
    fn exercise(store: &dyn RaftStore) {
        assert_eq!(store.load().unwrap(), []);
        store
            .write(&[
                put("log/3", "c"),
                put("log/1", "a"),
                put("log/2", "b"),
                put("state", "s"),
            ])
            .unwrap();
        assert_eq!(
            store.load().unwrap(),
            pairs(&[
                ("log/1", "a"),
                ("log/2", "b"),
                ("log/3", "c"),
                ("state", "s")
            ]),
            "key order"
        );
        // [from, to): `log/1` and `log/2` go, `log/3` stays; a later put into the range is kept.
        store
            .write(&[
                delete_range("log/1", "log/3"),
                put("log/2", "B"),
                put("state", "t"),
            ])
            .unwrap();
        assert_eq!(
            store.load().unwrap(),
            pairs(&[("log/2", "B"), ("log/3", "c"), ("state", "t")])
        );
        // Empty and backward ranges remove nothing and fail nothing.
        store
            .write(&[delete_range("log/3", "log/3"), delete_range("z", "a")])
            .unwrap();
        assert_eq!(store.load().unwrap().len(), 3);
        store.write(&[]).unwrap();
        // Binary keys, values, and a range running to the end of the key space.
        store
            .write(&[
                KvOp::Put {
                    key: vec![0xff, 0],
                    value: vec![0, 1, 2],
                },
                delete_range("log/", "log0"),
            ])
            .unwrap();
        assert_eq!(
            store.load().unwrap(),
            vec![
                (b"state".to_vec(), b"t".to_vec()),
                (vec![0xff, 0], vec![0, 1, 2])
            ]
        );
        store
            .write(&[KvOp::DeleteRange {
                from: Vec::new(),
                to: vec![0xff, 0xff],
            }])
            .unwrap();
        assert_eq!(store.load().unwrap(), []);
    }

    #[test]
    fn rocks_store_round_trip_and_delete_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksRaftStore::open(dir.path()).unwrap();
        assert_eq!(store.path(), dir.path().join("index-raft"));
        exercise(&store);
    }

    #[test]
    fn memory_store_round_trip_and_delete_range() {
        exercise(&MemoryRaftStore::default());
    }

    #[test]
    fn rocks_store_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("not/yet/there");
        {
            let store = RocksRaftStore::open(&data_dir).unwrap();
            store
                .write(&[put("a", "1"), put("b", "2"), put("c", "3")])
                .unwrap();
            store.write(&[delete_range("b", "c")]).unwrap();
        }
        let store = RocksRaftStore::open(&data_dir).unwrap();
        assert_eq!(store.load().unwrap(), pairs(&[("a", "1"), ("c", "3")]));
        store.write(&[put("d", "4")]).unwrap();
        drop(store);
        let store = RocksRaftStore::open(&data_dir).unwrap();
        assert_eq!(
            store.load().unwrap(),
            pairs(&[("a", "1"), ("c", "3"), ("d", "4")])
        );
    }

    #[test]
    fn a_shared_memory_store_outlives_its_holder() {
        let disk = Arc::new(MemoryRaftStore::default());
        {
            let held: Box<dyn RaftStore> = Box::new(Arc::clone(&disk));
            held.write(&[put("hard_state", "term 3")]).unwrap();
        }
        let again: Box<dyn RaftStore> = Box::new(Arc::clone(&disk));
        assert_eq!(again.load().unwrap(), pairs(&[("hard_state", "term 3")]));
    }

    fn op() -> impl Strategy<Value = KvOp> {
        let key = || proptest::collection::vec(0..4u8, 0..3);
        prop_oneof![
            (key(), key()).prop_map(|(key, value)| KvOp::Put { key, value }),
            (key(), key()).prop_map(|(from, to)| KvOp::DeleteRange { from, to }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// RocksDB, reopened between batches, holds exactly what the memory store holds after the same batches.
        #[test]
        fn rocks_store_matches_the_memory_store(
            batches in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let model = MemoryRaftStore::default();
            for batch in &batches {
                let store = RocksRaftStore::open(dir.path()).unwrap();
                store.write(batch).unwrap();
                model.write(batch).unwrap();
                prop_assert_eq!(store.load().unwrap(), model.load().unwrap());
            }
        }
    }
}
