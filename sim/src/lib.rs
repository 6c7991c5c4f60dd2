//! Deterministic simulation of Flare clusters (comes with the cluster work).
