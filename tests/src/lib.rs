//! Helpers for end-to-end tests: start daemons on free ports, talk to them, clean up.
