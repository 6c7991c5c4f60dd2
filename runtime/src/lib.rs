//! Production drivers of Flare on tokio.
