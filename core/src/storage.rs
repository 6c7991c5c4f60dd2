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

    /// Number of records that are live items (tombstones excluded; expired-but-unswept items included, like
    /// Flare's `curr_items`).
    fn item_count(&self) -> u64;

    /// Bytes the engine uses on disk (0 for the in-memory engine).
    fn disk_bytes(&self) -> u64;
}

/// Counts how an [`Entry`] transition changes the number of live items: +1, -1 or 0.
pub fn item_delta(before: Option<&Entry>, after: Option<&Entry>) -> i64 {
    let live = |e: Option<&Entry>| matches!(e, Some(Entry::Item(_))) as i64;
    live(after) - live(before)
}
