//! Command semantics over a [`crate::storage::Storage`] (filled in by the store work).
