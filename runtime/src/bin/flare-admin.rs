//! `flare-admin`: the operator tool of a Flare cluster (admin-tool.md). Named `flare-stats` or `flare-ping` (a
//! symlink), it runs that subcommand, as flare-tools' shortcuts do. All the logic is in
//! [`flare_runtime::admin`].

use std::process::ExitCode;

fn main() -> ExitCode {
    flare_runtime::admin::main(std::env::args_os().collect(), None)
}
