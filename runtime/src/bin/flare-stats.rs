//! `flare-stats`: `flare-admin stats` (the cluster's statistics table, after the index servers' role, term, leader
//! and applied index when there are several), with the same options (admin-tool.md §1).

use std::process::ExitCode;

fn main() -> ExitCode {
    flare_runtime::admin::main(std::env::args_os().collect(), Some("stats"))
}
