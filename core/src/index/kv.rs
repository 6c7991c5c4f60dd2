//! What the index group asks its driver to write durably: key-value operations, applied as one atomic, synced
//! batch per [`crate::index::group::Output::Store`] (RocksDB in `flarei`, a map in the simulators).

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Delete every key in `[from, to)`.
    DeleteRange {
        /// First key deleted.
        from: Vec<u8>,
        /// First key kept.
        to: Vec<u8>,
    },
}
