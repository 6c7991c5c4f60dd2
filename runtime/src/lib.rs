//! Production drivers of Flare on tokio.

pub mod cli;
