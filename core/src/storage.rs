//! The storage trait that both engines implement (RocksDB in `runtime`, in-memory here), and the in-memory engine.
//!
//! Engines store opaque [`Entry`] records by key. They are shared by many connections at once, so every method takes
//! `&self`; [`Storage::update`] is the one read-modify-write primitive and is atomic per key (engines stripe locks by
//! key, Flare's `mutex-slot`). Command semantics (versions, expiry, holds) live in [`crate::store`], never here.

use bytes::Bytes;

use crate::item::Entry;

/// A storage failure. The node answers `SERVER_ERROR i/o error` and flags itself unhealthy (cluster.md §5.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The engine reported an error.
    #[error("storage i/o error: {0}")]
    Io(String),
    /// A record on disk could not be decoded.
    #[error("corrupt record for key {key:?}: {reason}")]
    Corrupt {
        /// The key (lossy UTF-8).
        key: String,
        /// Why decoding failed.
        reason: String,
    },
}

/// What [`Storage::update`]'s closure decides to do with the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Leave the record as it is.
    Keep,
    /// Write this record.
    Put(Entry),
    /// Remove the record.
    Remove,
}

/// A key-value engine holding [`Entry`] records.
pub trait Storage: Send + Sync {
    /// Reads one record.
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StorageError>;

    /// Atomically (per key) reads the record, lets `f` decide a [`Change`], applies it, and returns `f`'s result.
    /// When the write fails the change is not applied and the error is returned.
    fn update<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> (Change, R),
    ) -> Result<R, StorageError>;

    /// Up to `max` records in key order, starting strictly after `after` (or at the first key). Used by dumps and
    /// the expiry sweeper; a cursor survives concurrent writes (they may or may not be seen).
    fn scan(&self, after: Option<&[u8]>, max: usize) -> Result<Vec<(Bytes, Entry)>, StorageError>;

    /// Removes every record (`flush_all`).
    fn clear(&self) -> Result<(), StorageError>;

    /// Makes every acknowledged write durable against a machine crash (fsync of the write-ahead log).
    fn sync(&self) -> Result<(), StorageError>;

    /// Like [`Storage::update`], but the write may skip the write-ahead log: it may be lost in a crash until
    /// [`Storage::persist_unlogged`] returns. For bulk loads that start again from scratch after a crash (a
    /// reconstruction). Engines without a log write as `update` does.
    fn update_unlogged<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> (Change, R),
    ) -> Result<R, StorageError> {
        self.update(key, f)
    }

    /// Makes every write made so far, [`Storage::update_unlogged`] ones included, durable.
    fn persist_unlogged(&self) -> Result<(), StorageError> {
        self.sync()
    }

    /// Number of records that are live items (tombstones excluded; expired-but-unswept items included, like
    /// Flare's `curr_items`).
    fn item_count(&self) -> u64;

    /// Bytes the engine uses on disk (0 for the in-memory engine).
    fn disk_bytes(&self) -> u64;

    /// The persisted high-water mark of the node's version clock ([`crate::versions`]); `None` for an engine that
    /// never had one (new, or written before the clock existed). `clear` keeps it.
    fn version_mark(&self) -> Result<Option<u64>, StorageError>;

    /// Persists a new high-water mark, ordered before every write made after it returns (same log), so a crash that
    /// keeps a later write keeps the mark too.
    fn save_version_mark(&self, mark: u64) -> Result<(), StorageError>;
}

/// Counts how an [`Entry`] transition changes the number of live items: +1, -1 or 0.
pub fn item_delta(before: Option<&Entry>, after: Option<&Entry>) -> i64 {
    let live = |e: Option<&Entry>| matches!(e, Some(Entry::Item(_))) as i64;
    live(after) - live(before)
}

/// The in-memory engine: a sorted map behind one lock. Used by unit tests and the simulation, never as the default
/// of the daemons.
///
/// With [`MemoryStorage::losing_unsynced`] it models a machine crash: every change since the last
/// [`Storage::sync`] is kept in an undo log, and [`MemoryStorage::crash`] rolls them back, so a simulated crash loses
/// exactly what a real one could. Plain [`MemoryStorage::new`] models a process crash (the OS keeps the WAL), where
/// nothing written is lost.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    inner: std::sync::Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    map: std::collections::BTreeMap<Bytes, Entry>,
    items: u64,
    /// The version clock's mark: never rolled back by a crash (a mark above what survived is harmless).
    version_mark: Option<u64>,
    /// `Some` when unsynced changes are tracked: (key, record before the change), oldest first.
    undo: Option<Vec<(Bytes, Option<Entry>)>>,
}

impl MemoryStorage {
    /// An empty engine that never loses a write.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty engine whose [`MemoryStorage::crash`] drops every change made since the last sync.
    pub fn losing_unsynced() -> Self {
        let s = Self::default();
        s.lock().undo = Some(Vec::new());
        s
    }

    /// Simulates a machine crash: rolls back the changes not yet synced (a no-op for [`MemoryStorage::new`]).
    pub fn crash(&self) {
        let mut inner = self.lock();
        let Some(undo) = inner.undo.take() else {
            return;
        };
        for (key, before) in undo.into_iter().rev() {
            inner.set(key, before);
        }
        inner.undo = Some(Vec::new());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A poisoned lock means a panic while holding it, which is a bug elsewhere; the map itself is consistent
        // because every mutation is a single insert or remove.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MemoryInner {
    fn set(&mut self, key: Bytes, entry: Option<Entry>) -> Option<Entry> {
        let before = match &entry {
            Some(e) => self.map.insert(key, e.clone()),
            None => self.map.remove(&key),
        };
        self.items = (self.items as i64 + item_delta(before.as_ref(), entry.as_ref())) as u64;
        before
    }

    fn change(&mut self, key: &[u8], entry: Option<Entry>) {
        let key = Bytes::copy_from_slice(key);
        let before = self.set(key.clone(), entry);
        if let Some(undo) = &mut self.undo {
            undo.push((key, before));
        }
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StorageError> {
        Ok(self.lock().map.get(key).cloned())
    }

    fn update<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> (Change, R),
    ) -> Result<R, StorageError> {
        let mut inner = self.lock();
        let (change, r) = f(inner.map.get(key).cloned());
        match change {
            Change::Keep => {}
            Change::Put(e) => inner.change(key, Some(e)),
            Change::Remove => inner.change(key, None),
        }
        Ok(r)
    }

    fn scan(&self, after: Option<&[u8]>, max: usize) -> Result<Vec<(Bytes, Entry)>, StorageError> {
        use std::ops::Bound;
        let inner = self.lock();
        let lower = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        Ok(inner
            .map
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take(max)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect())
    }

    fn clear(&self) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let old = std::mem::take(&mut inner.map);
        inner.items = 0;
        if let Some(undo) = &mut inner.undo {
            undo.extend(old.into_iter().map(|(k, e)| (k, Some(e))));
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if let Some(undo) = &mut inner.undo {
            undo.clear();
        }
        Ok(())
    }

    fn item_count(&self) -> u64 {
        self.lock().items
    }

    fn disk_bytes(&self) -> u64 {
        0
    }

    fn version_mark(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.lock().version_mark)
    }

    fn save_version_mark(&self, mark: u64) -> Result<(), StorageError> {
        self.lock().version_mark = Some(mark);
        Ok(())
    }
}

impl<T: Storage> Storage for std::sync::Arc<T> {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StorageError> {
        (**self).get(key)
    }
    fn update<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> (Change, R),
    ) -> Result<R, StorageError> {
        (**self).update(key, f)
    }
    fn scan(&self, after: Option<&[u8]>, max: usize) -> Result<Vec<(Bytes, Entry)>, StorageError> {
        (**self).scan(after, max)
    }
    fn clear(&self) -> Result<(), StorageError> {
        (**self).clear()
    }
    fn sync(&self) -> Result<(), StorageError> {
        (**self).sync()
    }
    fn update_unlogged<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<Entry>) -> (Change, R),
    ) -> Result<R, StorageError> {
        (**self).update_unlogged(key, f)
    }
    fn persist_unlogged(&self) -> Result<(), StorageError> {
        (**self).persist_unlogged()
    }
    fn item_count(&self) -> u64 {
        (**self).item_count()
    }
    fn disk_bytes(&self) -> u64 {
        (**self).disk_bytes()
    }
    fn version_mark(&self) -> Result<Option<u64>, StorageError> {
        (**self).version_mark()
    }
    fn save_version_mark(&self, mark: u64) -> Result<(), StorageError> {
        (**self).save_version_mark(mark)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::item::Item;

    fn item(value: &[u8], version: u64) -> Entry {
        Entry::Item(Item {
            flags: version as u32,
            exptime: 0,
            version,
            value: Bytes::copy_from_slice(value),
            meta: 0,
        })
    }

    #[test]
    fn losing_unsynced_rolls_back_to_last_sync() {
        let e = MemoryStorage::losing_unsynced();
        e.update(b"a", |_| (Change::Put(item(b"1", 1)), ()))
            .unwrap();
        e.sync().unwrap();
        e.update(b"a", |_| (Change::Put(item(b"2", 2)), ()))
            .unwrap();
        e.update(b"b", |_| (Change::Put(item(b"3", 1)), ()))
            .unwrap();
        e.clear().unwrap();
        e.crash();
        assert_eq!(e.get(b"a").unwrap(), Some(item(b"1", 1)));
        assert_eq!(e.get(b"b").unwrap(), None);
        assert_eq!(e.item_count(), 1);
    }
}
