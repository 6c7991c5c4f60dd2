//! `flarei`: the Flare index server. Reads a Flare-style configuration (`-f flarei.conf`, `--<option>=<value>`),
//! resumes its index group from the Raft log in `data-dir` (docs/index-servers.md), and, while it leads the group,
//! monitors every node and pushes map changes.
//! SIGTERM/SIGINT stop it; SIGHUP re-reads the configuration and applies the monitor options (config.md §6).

use std::process::ExitCode;

use flare_core::config::IndexConfig;
use flare_core::index::IndexParams;
use flare_runtime::cli::LoadedIndex;
use flare_runtime::daemon::{self, PidFile};
use flare_runtime::index::{FileSnapshots, IndexServer, IndexSettings, RocksRaftStore};
use flare_runtime::net::TokioNet;

fn main() -> ExitCode {
    daemon::main::<IndexConfig, _, _>(std::env::args_os().collect(), Some(2), serve)
}

async fn serve(loaded: LoadedIndex) -> Result<(), String> {
    let c = loaded.config.clone();
    let data_dir = std::path::Path::new(&c.data_dir);
    std::fs::create_dir_all(data_dir).map_err(|e| format!("data-dir {}: {e}", c.data_dir))?;
    let settings = IndexSettings::from_config(&c, loaded.show_variables())?;
    let log = RocksRaftStore::open(data_dir)
        .map_err(|e| format!("index log in {}: {e}", data_dir.display()))?;
    let server = IndexServer::bind(
        TokioNet,
        IndexParams::from_config(&c),
        settings,
        FileSnapshots::new(data_dir),
        log,
    )
    .await
    .map_err(|e| format!("cannot start on port {}: {e}", c.server_port))?;
    let _metrics = daemon::serve_metrics(c.metrics_port, c.metrics_address, || server.metrics())?;
    let pid = PidFile::create(&loaded.pid_path)
        .map_err(|e| format!("pid file {}: {e}", loaded.pid_path.display()))?;
    tracing::info!(port = c.server_port, data_dir = %c.data_dir, "index server serving");
    let control = server.control();
    daemon::reload_on_hangup(loaded, move |config: &IndexConfig| {
        control.reload(
            IndexParams::from_config(config),
            config.max_connection as usize,
            config.internal_netmask.clone(),
        )
    })?;
    let result = server
        .run(daemon::stop_signal())
        .await
        .map_err(|e| e.to_string());
    drop(pid);
    result
}
