//! `flared`: a Flare node. Reads a Flare-style configuration (`-f flared.conf`, `--<option>=<value>`), opens its
//! RocksDB store in `data-dir`, and serves memcached's text, binary and meta protocols on `server-port`.
//!
//! With no index server configured the node runs standalone, as the master of partition 0 on its own.
//! SIGTERM/SIGINT stop it gracefully (requests already read are answered, storage is synced); SIGHUP re-reads the
//! configuration file and applies the options marked dynamic (config.md §6).

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use flare_core::config::NodeConfig;
use flare_core::store::{Store, StoreConfig};
use flare_runtime::cli::LoadedNode;
use flare_runtime::daemon::{self, PidFile};
use flare_runtime::net::TokioNet;
use flare_runtime::node::cluster::ClusterSettings;
use flare_runtime::node::{DynamicSettings, NodeServer, NodeSettings};
use flare_runtime::rocks::{RocksOptions, RocksStorage};

/// How long a graceful stop waits for connections to answer what they have read.
const DRAIN: Duration = Duration::from_millis(1500);

fn main() -> ExitCode {
    daemon::main::<NodeConfig, _, _>(std::env::args_os().collect(), None, serve)
}

async fn serve(loaded: LoadedNode) -> Result<(), String> {
    let config = loaded.config.clone();
    let db_dir = std::path::Path::new(&config.data_dir).join("rocksdb");
    std::fs::create_dir_all(&db_dir).map_err(|e| format!("data-dir {}: {e}", config.data_dir))?;
    let storage = RocksStorage::open(&db_dir, &RocksOptions::from_config(&config))
        .map_err(|e| format!("cannot open storage in {}: {e}", db_dir.display()))?;
    tracing::info!(path = %db_dir.display(), items = flare_core::storage::Storage::item_count(&storage), "storage open");
    let store = Store::open(storage, StoreConfig::from_config(&config))
        .map_err(|e| format!("cannot read the version clock in {}: {e}", db_dir.display()))?;
    tracing::info!(
        version_mark = store.versions().mark(),
        "version clock resumed"
    );
    // Before the port opens: whoever sees the port open finds the pid file, and may stop the node with SIGTERM.
    let stop = daemon::stop_signal();
    let pid = PidFile::create(&loaded.pid_path)
        .map_err(|e| format!("pid file {}: {e}", loaded.pid_path.display()))?;
    let server = NodeServer::start(
        TokioNet,
        store,
        NodeSettings::from_config(&config, loaded.show_variables()),
        ClusterSettings::from_config(&config, u64::from(std::process::id())),
        config.max_connection as usize,
        config.net_read_timeout,
    )
    .await
    .map_err(|e| format!("cannot start on port {}: {e}", config.server_port))?;
    let (role, state, partition, _) = server.shared().cluster.view().my_role();
    tracing::info!(
        node = %format!("{}:{}", config.server_name, config.server_port),
        role = role.name(),
        state = state.name(),
        partition = partition.map_or(-1, i64::from),
        "node serving"
    );
    let _metrics = daemon::serve_metrics(config.metrics_port, config.metrics_address, || {
        flare_runtime::node::metrics::renderer(server.shared())
    })?;
    let shared = server.shared();
    daemon::reload_on_hangup(loaded, move |c| apply_dynamic(c, &shared.dynamic))?;
    let result = server.run(stop, DRAIN).await.map_err(|e| e.to_string());
    drop(pid);
    result
}

/// The options SIGHUP applies to a running node (config.md §6).
fn apply_dynamic(config: &NodeConfig, dynamic: &DynamicSettings) {
    dynamic
        .max_connection
        .store(config.max_connection as usize, Relaxed);
    dynamic
        .net_read_timeout_ms
        .store(config.net_read_timeout.as_millis() as u64, Relaxed);
    *dynamic
        .internal_netmask
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Arc::new(config.internal_netmask.clone());
}
