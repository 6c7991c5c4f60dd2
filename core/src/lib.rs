//! Sans-IO core of Flare.
//!
//! Everything here is deterministic: bytes, time (`now`, Unix seconds) and random numbers come in as arguments, and
//! replies, storage changes and effects go out as return values. The crate has no dependency on tokio, sockets,
//! files or clocks; its `Cargo.toml` keeps it that way.
//!
//! - [`protocol`]: incremental parsers (text, binary, meta) into one [`protocol::Request`] model, and encoders of
//!   [`protocol::Reply`] into memcached's exact bytes.
//! - [`item`]: the stored item and its on-disk encoding.
//! - [`storage`]: the storage trait both engines implement, and the in-memory engine.
//! - [`store`]: memcached/Flare command semantics (versions, expiry, append, incr, cas, delete hold) over a storage.
//! - [`config`]: Flare-style `key = value` config files and the option schema of `flared` and `flarei`.
//! - [`keys`]: key → partition, bit-exact with Flare's modular resolver and hash functions.
//! - [`node_map`]: node records, roles, states and the partition tables derived from them.
//! - [`node`]: a cluster node's decisions about requests: routing plans and reply merging.
//! - [`index`]: the index server (`flarei`) as a state machine: registration, role/state changes, monitoring,
//!   failover, node-map pushes and persistence; its command lines are parsed by [`protocol::admin`].
#![warn(missing_docs)]

pub mod access;
pub mod config;
pub mod dump;
pub mod exec;
pub mod index;
pub mod item;
pub mod keys;
pub mod node;
pub mod node_map;
pub mod protocol;
pub mod storage;
pub mod store;
pub mod versions;

/// This project's own version (decisions.md #1); the `version` reply carries `flare-<this>`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
