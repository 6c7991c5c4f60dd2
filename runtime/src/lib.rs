//! Production drivers of Flare on tokio: the node server (generic over [`net::Net`] so the simulation runs the
//! same code on turmoil), the RocksDB engine, configuration loading, process plumbing (pid file, daemon mode,
//! logging).
pub mod admin;
pub mod cli;
pub mod daemon;
pub mod index;
pub mod metrics;
pub mod net;
pub mod node;
pub mod rocks;
