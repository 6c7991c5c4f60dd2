//! The Ruby flare-tools (`flare-admin`, `flare-stats`) as the tests see them: the tools cannot be installed here, so
//! [`tool`] re-implements their client side exactly as admin-tool.md §2 describes it (1 s connect, `version`
//! handshake and version gates, the generic reply reader with its terminator words and 10 s timeout, CRLF-only
//! payload parsing, item and key streams, `quit` on close). It deliberately shares no parser with `flare-core`: a
//! reply that only our own parsers accept is a bug here.
//!
//! [`admin`] then runs the subcommands with exactly the command sequences of admin-tool.md §4 (`list`, `ping`,
//! `master`, `slave`, `balance`, `down`, `reconstruct`, `remove`, `dump`, `dumpkey`, `verify`, `index`, `threads`,
//! `stats`, `summary`). Used by `tests/flare_tools_runbook.rs` and `tests/flare_tools_emulation.rs`.

pub mod admin;
pub mod tool;
