//! `flarei`: the Flare index server. Reads a Flare-style configuration (`-f flarei.conf`, `--<option>=<value>`),
//! resumes the cluster from the node map persisted in `data-dir`, monitors every node and pushes map changes.
//! SIGTERM/SIGINT stop it; SIGHUP re-reads the configuration and applies the monitor options (config.md §6).

use std::io::Write;
use std::process::ExitCode;

use flare_core::index::IndexParams;
use flare_runtime::cli::{self, Action, LoadedIndex};
use flare_runtime::daemon::{self, PidFile};
use flare_runtime::index::{FileSnapshots, IndexServer, IndexSettings};
use flare_runtime::net::TokioNet;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let loaded = match cli::load_index(std::env::args_os().collect()) {
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
            eprintln!("flarei: cannot daemonize: {e}");
            return ExitCode::FAILURE;
        }
    }
    daemon::init_logging("flarei");
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    daemon::raise_nofile(u64::from(loaded.config.max_connection) * 2 + 16);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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

async fn serve(loaded: LoadedIndex) -> Result<(), String> {
    let c = &loaded.config;
    let data_dir = std::path::Path::new(&c.data_dir);
    std::fs::create_dir_all(data_dir).map_err(|e| format!("data-dir {}: {e}", c.data_dir))?;
    let settings = IndexSettings {
        listen: std::net::SocketAddr::from(([0, 0, 0, 0], c.server_port)),
        max_connection: c.max_connection as usize,
        net_read_timeout: c.net_read_timeout,
        version_string: c.version_string.clone(),
        show_variables: loaded.show_variables(),
        settings: c.settings(),
        line_max: c.max_line_length,
        internal_netmask: c.internal_netmask.clone(),
    };
    let server = IndexServer::bind(
        TokioNet,
        IndexParams::from_config(c),
        settings,
        FileSnapshots::new(data_dir),
    )
    .await
    .map_err(|e| format!("cannot start on port {}: {e}", c.server_port))?;
    let _metrics = if c.metrics_port != 0 {
        let addr = std::net::SocketAddr::new(c.metrics_address, c.metrics_port);
        let m = flare_runtime::metrics::MetricsServer::start(addr, server.metrics())
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        tracing::info!(address = %m.local_addr(), "metrics on http://{}/metrics", m.local_addr());
        Some(m)
    } else {
        None
    };
    let pid = PidFile::create(&loaded.pid_path)
        .map_err(|e| format!("pid file {}: {e}", loaded.pid_path.display()))?;
    tracing::info!(port = c.server_port, data_dir = %c.data_dir, "index server serving");
    let control = server.control();
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut loaded = loaded;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match cli::reload_index(&loaded) {
                Ok((config, warnings)) => {
                    for w in warnings {
                        tracing::warn!("{w}");
                    }
                    control.reload(
                        IndexParams::from_config(&config),
                        config.max_connection as usize,
                        config.internal_netmask.clone(),
                    );
                    daemon::raise_nofile(u64::from(config.max_connection) * 2 + 16);
                    loaded.config = config;
                }
                Err(e) => tracing::error!("reload skipped, keeping the old configuration: {e}"),
            }
        }
    });
    let result = server.run(stop_signal()).await.map_err(|e| e.to_string());
    drop(pid);
    result
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}
