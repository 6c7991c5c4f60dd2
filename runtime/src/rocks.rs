//! The RocksDB storage engine: one database per node data directory (decisions.md #9).
//!
//! - Records are [`Entry`] encodings under their key in the default column family; values of 4 KiB and more go to
//!   blob files, so large items are written once and never rewritten by compaction.
//! - The write-ahead log is always on. Every write reaches the OS before it is acknowledged (it survives a process
//!   kill); [`RocksOptions::sync_every_write`] also fsyncs it per write (`storage-sync = always`), and
//!   [`Storage::sync`] fsyncs it on demand (group commit, shutdown).
//! - [`Storage::update`] is atomic per key: writers of the same key serialise on one of `mutex-slot` stripe locks.
//! - Each stripe also holds a small write-through cache of recent records (`storage-item-cache`, values up to
//!   [`CACHE_VALUE_MAX`]): reads of hot keys and the read half of every read-modify-write skip RocksDB's memtable
//!   and block lookups, which measured as the largest user-space cost of a `get` or `set`. Records are read and
//!   written under the stripe lock, so the cache can never hold anything but what RocksDB holds.
//! - The number of live items is kept exactly: each write that creates or removes an item adds a ±1 merge operand to
//!   a counter in the `meta` column family, in the same atomic batch as the record itself, so the count survives a
//!   crash without a scan at start-up.
//! - The version clock's high-water mark (`flare_core::versions`) is a record of the `meta` family too, written with
//!   the items' write options, so it is in the same write-ahead log, ahead of the writes that use it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use flare_core::config::{NodeConfig, StorageCompress, StorageSync};
use flare_core::item::Entry;
use flare_core::storage::{Change, Storage, StorageError};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode,
    MergeOperands, Options, WriteBatch, WriteOptions, DB,
};

const META_CF: &str = "meta";
const ITEM_COUNT_KEY: &[u8] = b"item_count";
/// The version clock's high-water mark (`flare_core::versions`), in the `meta` family so `clear` keeps it.
const VERSION_MARK_KEY: &[u8] = b"version_mark";
/// Values of this size and more are kept in blob files.
const MIN_BLOB_SIZE: u64 = 4096;
/// Larger values are not cached: RocksDB reads them from a blob file in one go, and they would crowd out the many
/// small ones.
pub const CACHE_VALUE_MAX: usize = 8192;
/// Bookkeeping bytes counted per cached record, on top of its key and value.
const CACHE_OVERHEAD: usize = 160;

/// Tuning of the engine (from the node configuration).
#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// fsync the WAL on every write (`storage-sync = always`).
    pub sync_every_write: bool,
    /// Block cache size in bytes (`storage-block-cache`).
    pub block_cache_bytes: usize,
    /// Memtable size in bytes (`storage-write-buffer`).
    pub write_buffer_bytes: usize,
    /// Compression of data blocks (`storage-compress`), none by default.
    pub compression: Compression,
    /// Number of stripe locks for read-modify-write (`mutex-slot`).
    pub mutex_slots: usize,
    /// Bytes of the write-through record cache (`storage-item-cache`); 0 = off.
    pub item_cache_bytes: usize,
}

/// Block compression (`storage-compress`: `deflate`, `bz2`, `tcbs`, or none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// zlib (Flare's `deflate`).
    Zlib,
    /// bzip2 (Flare's `bz2`).
    Bz2,
    /// LZ4, the fast choice (Flare's `tcbs`, its own fast codec).
    Lz4,
}

impl RocksOptions {
    /// The tuning of the node configured by `c` (`storage-*`, `mutex-slot`).
    pub fn from_config(c: &NodeConfig) -> RocksOptions {
        RocksOptions {
            sync_every_write: c.storage_sync == StorageSync::Always,
            block_cache_bytes: (c.storage_block_cache as usize) << 20,
            write_buffer_bytes: (c.storage_write_buffer as usize) << 20,
            compression: match c.storage_compress {
                StorageCompress::None => Compression::None,
                StorageCompress::Deflate => Compression::Zlib,
                StorageCompress::Bz2 => Compression::Bz2,
                StorageCompress::Tcbs => Compression::Lz4,
            },
            mutex_slots: c.mutex_slot as usize,
            item_cache_bytes: (c.storage_item_cache as usize) << 20,
        }
    }
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            sync_every_write: false,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 32 << 20,
            compression: Compression::None,
            mutex_slots: 64,
            item_cache_bytes: 256 << 20,
        }
    }
}

/// A node's RocksDB database.
pub struct RocksStorage {
    db: std::sync::Arc<DB>,
    path: PathBuf,
    write_opts: WriteOptions,
    /// For [`Storage::update_unlogged`]: no write-ahead log.
    unlogged_opts: WriteOptions,
    stripes: Vec<Mutex<Shard>>,
    items: AtomicI64,
    /// Background compactions started by `clear` (each holds the database open while it runs).
    compactors: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for RocksStorage {
    /// Closes the database for real: a compaction still running after `clear` is cancelled and waited for, so the
    /// directory can be opened again at once (its lock is released).
    fn drop(&mut self) {
        let running = std::mem::take(&mut *lock(&self.compactors));
        if running.iter().any(|t| !t.is_finished()) {
            self.db.cancel_all_background_work(true);
        }
        for t in running {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Locks `m`. A poisoned lock means a panic while holding it; every structure guarded here is left consistent by
/// each of its operations, so the data can still be used.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io(e: rocksdb::Error) -> StorageError {
    StorageError::Io(e.into_string())
}

/// Sums the ±1 operands of the item counter (little-endian i64s).
fn sum_counter(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let read = |b: &[u8]| b.try_into().map(i64::from_le_bytes).unwrap_or(0);
    let total = operands.iter().fold(existing.map_or(0, read), |acc, op| {
        acc.wrapping_add(read(op))
    });
    Some(total.to_le_bytes().to_vec())
}

impl RocksStorage {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, options: &RocksOptions) -> Result<RocksStorage, StorageError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        // The small `meta` family (the item counter) would otherwise pin every WAL file until it flushes, keeping
        // a second copy of every value on disk; past this size RocksDB flushes it and drops old WAL files.
        db_opts.set_max_total_wal_size(64 << 20);

        let mut data = Options::default();
        let mut table = BlockBasedOptions::default();
        let cache = Cache::new_lru_cache(options.block_cache_bytes.max(1 << 20)).map_err(io)?;
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        data.set_block_based_table_factory(&table);
        data.set_write_buffer_size(options.write_buffer_bytes.max(1 << 20));
        data.set_max_write_buffer_number(2);
        data.set_enable_blob_files(true);
        data.set_min_blob_size(MIN_BLOB_SIZE);
        data.set_enable_blob_gc(true);
        data.set_compression_type(match options.compression {
            Compression::None => DBCompressionType::None,
            Compression::Zlib => DBCompressionType::Zlib,
            Compression::Bz2 => DBCompressionType::Bz2,
            Compression::Lz4 => DBCompressionType::Lz4,
        });

        let mut meta = Options::default();
        meta.set_merge_operator_associative("item_count_sum", sum_counter);

        let db = DB::open_cf_descriptors(
            &db_opts,
            dir,
            [
                ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, data),
                ColumnFamilyDescriptor::new(META_CF, meta),
            ],
        )
        .map_err(io)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(options.sync_every_write);
        let mut unlogged_opts = WriteOptions::default();
        unlogged_opts.disable_wal(true);
        let storage = RocksStorage {
            path: dir.to_path_buf(),
            write_opts,
            unlogged_opts,
            stripes: {
                let n = options.mutex_slots.max(1);
                (0..n)
                    .map(|_| Mutex::new(Shard::new(options.item_cache_bytes / n)))
                    .collect()
            },
            items: AtomicI64::new(0),
            compactors: Mutex::new(Vec::new()),
            db: std::sync::Arc::new(db),
        };
        let count = storage.stored_count()?;
        storage.items.store(count, Relaxed);
        Ok(storage)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`Storage::update`] with the given write options.
    fn update_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> (Change, R),
        opts: &WriteOptions,
    ) -> Result<R, StorageError> {
        let mut shard = self.stripe(key);
        let cur = self.read_cached(&mut shard, key)?;
        let was_item = matches!(cur, Some(Entry::Item(_)));
        let (change, r) = f(cur);
        let mut batch = WriteBatch::default();
        let after = match change {
            Change::Keep => return Ok(r),
            Change::Put(e) => {
                batch.put(key, e.encode());
                Some(e)
            }
            Change::Remove => {
                batch.delete(key);
                None
            }
        };
        let delta = i64::from(matches!(after, Some(Entry::Item(_)))) - i64::from(was_item);
        if delta != 0 {
            batch.merge_cf(self.meta_cf(), ITEM_COUNT_KEY, delta.to_le_bytes());
        }
        if let Err(e) = self.db.write_opt(batch, opts) {
            // The write may or may not have reached RocksDB: read the key again next time.
            shard.forget(key);
            return Err(io(e));
        }
        shard.store(key, after);
        self.items.fetch_add(delta, Relaxed);
        Ok(r)
    }

    fn meta_cf(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(META_CF)
            .expect("invariant: the meta column family is created at open")
    }

    fn stored_count(&self) -> Result<i64, StorageError> {
        let raw = self.db.get_cf(self.meta_cf(), ITEM_COUNT_KEY).map_err(io)?;
        Ok(raw
            .and_then(|b| b.as_slice().try_into().ok())
            .map_or(0, i64::from_le_bytes))
    }

    fn stripe(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let i = crc32fast::hash(key) as usize % self.stripes.len();
        lock(&self.stripes[i])
    }

    /// Reads a record from RocksDB (no cache).
    fn read(&self, key: &[u8]) -> Result<Option<Entry>, StorageError> {
        match self.db.get(key).map_err(io)? {
            Some(raw) => Ok(Some(Self::decode(key, raw)?)),
            None => Ok(None),
        }
    }

    /// Reads through the shard's cache; the caller holds the shard lock.
    fn read_cached(&self, shard: &mut Shard, key: &[u8]) -> Result<Option<Entry>, StorageError> {
        if let Some(hit) = shard.lookup(key) {
            return Ok(hit);
        }
        let entry = self.read(key)?;
        shard.store(key, entry.clone());
        Ok(entry)
    }

    fn decode(key: &[u8], raw: Vec<u8>) -> Result<Entry, StorageError> {
        Entry::decode(Bytes::from(raw)).map_err(|e| StorageError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: e.to_string(),
        })
    }
}

impl Storage for RocksStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StorageError> {
        let mut shard = self.stripe(key);
        self.read_cached(&mut shard, key)
    }

    fn update<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> (Change, R),
    ) -> Result<R, StorageError> {
        self.update_with(key, f, &self.write_opts)
    }

    fn update_unlogged<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> (Change, R),
    ) -> Result<R, StorageError> {
        self.update_with(key, f, &self.unlogged_opts)
    }

    fn persist_unlogged(&self) -> Result<(), StorageError> {
        // Unlogged writes live only in the memtables until they are flushed to table and blob files.
        let cf = self
            .db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .expect("invariant: default family exists");
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(true);
        self.db.flush_cf_opt(&cf, &opts).map_err(io)?;
        self.db.flush_cf_opt(self.meta_cf(), &opts).map_err(io)?;
        self.sync()
    }

    fn scan(&self, after: Option<&[u8]>, max: usize) -> Result<Vec<(Bytes, Entry)>, StorageError> {
        let mode = match after {
            Some(k) => IteratorMode::From(k, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::with_capacity(max.min(1024));
        // A scan walks the whole key space (dumps, the sweeper): read ahead in large sequential reads, and keep it
        // out of the block cache that serves gets.
        let mut opts = rocksdb::ReadOptions::default();
        opts.fill_cache(false);
        opts.set_readahead_size(2 << 20);
        for row in self.db.iterator_opt(mode, opts) {
            let (k, v) = row.map_err(io)?;
            if after.is_some_and(|a| a == &k[..]) {
                continue;
            }
            if out.len() == max {
                break;
            }
            let entry = Self::decode(&k, v.into_vec())?;
            out.push((Bytes::from(k.into_vec()), entry));
        }
        Ok(out)
    }

    fn clear(&self) -> Result<(), StorageError> {
        // Hold every stripe so no read-modify-write interleaves with the range delete and the counter reset.
        let mut guards: Vec<_> = self.stripes.iter().map(lock).collect();
        guards.iter_mut().for_each(|g| g.clear());
        let mut batch = WriteBatch::default();
        let cf = self
            .db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .expect("invariant: default family exists");
        // Keys are at most 8191 bytes, so 8192 bytes of 0xff sort after every key.
        batch.delete_range_cf(&cf, &[][..], &[0xffu8; 8192][..]);
        batch.put_cf(self.meta_cf(), ITEM_COUNT_KEY, 0i64.to_le_bytes());
        self.db.write_opt(batch, &self.write_opts).map_err(io)?;
        self.items.store(0, Relaxed);
        drop(guards);
        // Reclaim the space now rather than at the next compaction, off the caller's thread: a flush can come with a
        // node-map push, which must be answered at once.
        let db = self.db.clone();
        let started = std::thread::Builder::new()
            .name("flared-compact".into())
            .spawn(move || db.compact_range::<&[u8], &[u8]>(None, None));
        if let Ok(t) = started {
            let mut all = lock(&self.compactors);
            all.retain(|t| !t.is_finished());
            all.push(t);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true).map_err(io)
    }

    fn item_count(&self) -> u64 {
        self.items.load(Relaxed).max(0) as u64
    }

    fn disk_bytes(&self) -> u64 {
        [
            "rocksdb.total-sst-files-size",
            "rocksdb.live-blob-file-size",
            "rocksdb.cur-size-all-mem-tables",
        ]
        .iter()
        .filter_map(|p| self.db.property_int_value(*p).ok().flatten())
        .sum()
    }

    fn version_mark(&self) -> Result<Option<u64>, StorageError> {
        let raw = self
            .db
            .get_cf(self.meta_cf(), VERSION_MARK_KEY)
            .map_err(io)?;
        match raw {
            None => Ok(None),
            Some(b) => match <[u8; 8]>::try_from(b.as_slice()) {
                Ok(b) => Ok(Some(u64::from_le_bytes(b))),
                Err(_) => Err(StorageError::Corrupt {
                    key: "version_mark".into(),
                    reason: format!("{} bytes, expected 8", b.len()),
                }),
            },
        }
    }

    fn save_version_mark(&self, mark: u64) -> Result<(), StorageError> {
        // The same write-ahead log as the items, written before the writes that use versions below the mark.
        self.db
            .put_cf_opt(
                self.meta_cf(),
                VERSION_MARK_KEY,
                mark.to_le_bytes(),
                &self.write_opts,
            )
            .map_err(io)
    }
}

/// One stripe's cache of records: `Some(entry)` for a record RocksDB holds, `None` for a key it does not. CLOCK
/// eviction within a byte budget.
struct Shard {
    map: indexmap::IndexMap<Bytes, Slot>,
    bytes: usize,
    budget: usize,
    hand: usize,
}

struct Slot {
    entry: Option<Entry>,
    referenced: bool,
}

fn cost(key: &[u8], entry: &Option<Entry>) -> usize {
    let value = match entry {
        Some(Entry::Item(i)) => i.value.len(),
        _ => 0,
    };
    key.len() + value + CACHE_OVERHEAD
}

impl Shard {
    fn new(budget: usize) -> Self {
        Shard {
            map: indexmap::IndexMap::new(),
            bytes: 0,
            budget,
            hand: 0,
        }
    }

    /// The cached record, if the key is cached.
    fn lookup(&mut self, key: &[u8]) -> Option<Option<Entry>> {
        let slot = self.map.get_mut(key)?;
        slot.referenced = true;
        Some(slot.entry.clone())
    }

    /// Caches the record RocksDB now holds for `key`; a record too large to cache is forgotten instead.
    fn store(&mut self, key: &[u8], entry: Option<Entry>) {
        let too_large = matches!(&entry, Some(Entry::Item(i)) if i.value.len() > CACHE_VALUE_MAX);
        if self.budget == 0 || too_large {
            self.forget(key);
            return;
        }
        // Own the value: one sliced from a connection's read buffer would keep the whole buffer alive.
        let entry = entry.map(|e| match e {
            Entry::Item(mut i) => {
                i.value = Bytes::copy_from_slice(&i.value);
                Entry::Item(i)
            }
            t => t,
        });
        let c = cost(key, &entry);
        match self.map.get_mut(key) {
            Some(slot) => {
                self.bytes = self.bytes - cost(key, &slot.entry) + c;
                slot.entry = entry;
                slot.referenced = true;
            }
            None => {
                self.bytes += c;
                self.map.insert(
                    Bytes::copy_from_slice(key),
                    Slot {
                        entry,
                        referenced: false,
                    },
                );
            }
        }
        self.evict();
    }

    fn forget(&mut self, key: &[u8]) {
        if let Some(slot) = self.map.swap_remove(key) {
            self.bytes -= cost(key, &slot.entry);
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
        self.hand = 0;
    }

    /// CLOCK: sweep the hand, giving referenced records a second chance, until the shard fits its budget.
    fn evict(&mut self) {
        while self.bytes > self.budget && !self.map.is_empty() {
            if self.hand >= self.map.len() {
                self.hand = 0;
            }
            let (_, slot) = self
                .map
                .get_index_mut(self.hand)
                .expect("invariant: hand < len");
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
            } else if let Some((k, slot)) = self.map.swap_remove_index(self.hand) {
                self.bytes -= cost(&k, &slot.entry);
            }
        }
    }
}
