//! The Flare cluster driven by the turmoil network simulator: the production index and node drivers run in simulated
//! hosts on a simulated network and clock, with injected faults, and checkers that fail with the seed to replay.
pub mod net;
