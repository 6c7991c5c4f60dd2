//! `flared`: a Flare node. Reads a Flare-style configuration (`-f flared.conf`, `--<option>=<value>`), opens its
//! RocksDB store in `data-dir`, and serves memcached's text, binary and meta protocols on `server-port`.
//!
//! With no index server configured the node runs standalone, as the master of partition 0 on its own.
//! SIGTERM/SIGINT stop it gracefully (requests already read are answered, storage is synced); SIGHUP re-reads the
//! configuration file and applies the options marked dynamic (config.md §6).

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use flare_core::config::{NodeConfig, ReplicationType, StorageCompress, StorageSync};
use flare_core::protocol::text::Dialect;
use flare_core::store::{Store, StoreConfig};
use flare_runtime::cli::{self, Action, LoadedNode};
use flare_runtime::daemon::{self, PidFile};
use flare_runtime::net::TokioNet;
use flare_runtime::node::cluster::ClusterSettings;
use flare_runtime::node::{NodeServer, NodeSettings, Shared};
use flare_runtime::rocks::{Compression, RocksOptions, RocksStorage};
use tokio::signal::unix::{signal, SignalKind};

/// How long a graceful stop waits for connections to answer what they have read.
const DRAIN: Duration = Duration::from_millis(1500);

fn main() -> ExitCode {
    let loaded = match cli::load_node(std::env::args_os().collect()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match &loaded.action {
        Action::Run => {}
        Action::PrintVersion(text) | Action::PrintHelp(text) | Action::CheckConfigOk(text) => {
            // A closed pipe (`--help | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{text}");
            return ExitCode::SUCCESS;
        }
    }
    if loaded.config.daemonize {
        if let Err(e) = daemon::daemonize() {
            eprintln!("flared: cannot daemonize: {e}");
            return ExitCode::FAILURE;
        }
    }
    daemon::init_logging("flared");
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    daemon::raise_nofile(u64::from(loaded.config.max_connection) * 2 + 16);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(mut loaded: LoadedNode) -> Result<(), String> {
    let config = loaded.config.clone();
    let db_dir = std::path::Path::new(&config.data_dir).join("rocksdb");
    std::fs::create_dir_all(&db_dir).map_err(|e| format!("data-dir {}: {e}", config.data_dir))?;
    let storage = RocksStorage::open(&db_dir, &rocks_options(&config))
        .map_err(|e| format!("cannot open storage in {}: {e}", db_dir.display()))?;
    tracing::info!(path = %db_dir.display(), items = flare_core::storage::Storage::item_count(&storage), "storage open");
    let store = Store::open(storage, store_config(&config))
        .map_err(|e| format!("cannot read the version clock in {}: {e}", db_dir.display()))?;
    tracing::info!(
        version_mark = store.versions().mark(),
        "version clock resumed"
    );
    // Before the port opens: whoever sees the port open finds the pid file, and may stop the node with SIGTERM.
    let stop = stop_signal();
    let pid = PidFile::create(&loaded.pid_path)
        .map_err(|e| format!("pid file {}: {e}", loaded.pid_path.display()))?;
    let server = NodeServer::start(
        TokioNet,
        store,
        settings(&loaded),
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
    let _metrics = if config.metrics_port != 0 {
        let addr = std::net::SocketAddr::new(config.metrics_address, config.metrics_port);
        let m = flare_runtime::metrics::MetricsServer::start(
            addr,
            flare_runtime::node::metrics::renderer(server.shared()),
        )
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        tracing::info!(address = %m.local_addr(), "metrics on http://{}/metrics", m.local_addr());
        Some(m)
    } else {
        None
    };
    let shared = server.shared();
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload(&mut loaded, &shared);
        }
    });
    let result = server.run(stop, DRAIN).await.map_err(|e| e.to_string());
    drop(pid);
    result
}

/// Installs the SIGTERM and SIGINT handlers now (a signal that comes while the node starts is kept), and resolves
/// on either.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}

/// SIGHUP: re-read the file, apply the dynamic options, warn about the others (config.md §3, §6).
fn reload<S: flare_core::storage::Storage>(
    loaded: &mut LoadedNode,
    shared: &Arc<Shared<TokioNet, S>>,
) {
    match cli::reload_node(loaded) {
        Ok((config, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            shared
                .dynamic
                .max_connection
                .store(config.max_connection as usize, Relaxed);
            shared
                .dynamic
                .net_read_timeout_ms
                .store(config.net_read_timeout.as_millis() as u64, Relaxed);
            *shared
                .dynamic
                .internal_netmask
                .write()
                .unwrap_or_else(|e| e.into_inner()) = Arc::new(config.internal_netmask.clone());
            daemon::raise_nofile(u64::from(config.max_connection) * 2 + 16);
            loaded.config = config;
            tracing::info!("configuration reloaded");
        }
        Err(e) => tracing::error!("reload skipped, keeping the old configuration: {e}"),
    }
}

fn rocks_options(c: &NodeConfig) -> RocksOptions {
    RocksOptions {
        sync_every_write: c.storage_sync == StorageSync::Always,
        block_cache_bytes: (c.storage_block_cache as usize) << 20,
        write_buffer_bytes: (c.storage_write_buffer as usize) << 20,
        compression: match c.storage_compress {
            StorageCompress::None => Compression::None,
            StorageCompress::Deflate => Compression::Zlib,
            StorageCompress::Bz2 => Compression::Bz2,
            StorageCompress::Tcbs => Compression::Lz4,
        },
        mutex_slots: c.mutex_slot as usize,
        item_cache_bytes: (c.storage_item_cache as usize) << 20,
    }
}

fn store_config(c: &NodeConfig) -> StoreConfig {
    StoreConfig {
        tombstone_ttl: c.tombstone_ttl.as_secs(),
        incr_flare_semantics: c.incr_flare_semantics,
        binary_incr_create: c.binary_incr_create,
        item_size_max: c.max_item_size,
    }
}

fn settings(loaded: &LoadedNode) -> NodeSettings {
    let c = &loaded.config;
    NodeSettings {
        listen: std::net::SocketAddr::from(([0, 0, 0, 0], c.server_port)),
        limits: c.limits(),
        dialect: Dialect {
            gat_flare_syntax: c.gat_flare_syntax,
            incr_flare_semantics: c.incr_flare_semantics,
        },
        version_string: c.version_string.clone(),
        expiry_sweep_interval: c.expiry_sweep_interval,
        group_commit: c.storage_sync == StorageSync::Group,
        allow_client_version: c.allow_client_version,
        show_variables: loaded.show_variables(),
        settings: c.settings(),
        sync_default: c.replication_type == ReplicationType::Sync,
        internal_netmask: c.internal_netmask.clone(),
    }
}
