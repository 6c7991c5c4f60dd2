//! Flare-style configuration files (filled in by the config work).
