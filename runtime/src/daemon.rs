//! The start-up shared by `flared` and `flarei` ([`main`]: command line and config, `-h`/`-v`/`--check-config`,
//! daemon mode, logging, the open-file limit, the tokio runtime), the pieces their `serve` functions share (SIGTERM
//! and SIGINT, SIGHUP reloads, the metrics listener, the pid file), and the node's settings from its configuration
//! (one mapping for `flared` and the simulator; the index's is [`IndexSettings::from_config`]) (config.md §3).
//!
//! [`IndexSettings::from_config`]: crate::index::IndexSettings::from_config

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use flare_core::config::{DaemonConfig, NodeConfig, ReplicationType, StorageSync};
use flare_core::protocol::text::Dialect;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{self, Action, Loaded};
use crate::metrics::{MetricsServer, Render};
use crate::node::NodeSettings;

/// A daemon's whole life: loads the command line `args` (program name first) and the config of `C`, answers
/// `-h`/`-v`/`--check-config`, daemonizes when asked, sets up logging and logs the load warnings, raises the
/// open-file limit for `max-connection`, and runs `serve` on a multi-thread tokio runtime (`worker_threads`: `None` =
/// one per core). The exit code: 1 for a command line or config that does not load, failure when `serve` fails.
pub fn main<C, F, Fut>(args: Vec<OsString>, worker_threads: Option<usize>, serve: F) -> ExitCode
where
    C: DaemonConfig,
    F: FnOnce(Loaded<C>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let bin = C::DAEMON.binary_name();
    let loaded = match cli::load::<C>(args) {
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
    if loaded.config.daemonize() {
        if let Err(e) = daemonize() {
            eprintln!("{bin}: cannot daemonize: {e}");
            return ExitCode::FAILURE;
        }
    }
    init_logging(bin);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    raise_nofile_for(loaded.config.max_connection());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
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

/// Installs the SIGTERM and SIGINT handlers now (a signal that comes while the daemon starts is kept), and resolves
/// on either.
pub fn stop_signal() -> impl Future<Output = ()> {
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

/// SIGHUP, from now on: re-reads the configuration ([`cli::reload`]: dynamic options from the file, the others
/// kept), logs its warnings, gives it to `apply`, raises the open-file limit for its `max-connection` and keeps it for
/// the next reload. A configuration that does not load is logged and skipped: the old one stays (config.md §3, §6).
pub fn reload_on_hangup<C>(
    mut loaded: Loaded<C>,
    mut apply: impl FnMut(&C) + Send + 'static,
) -> Result<(), String>
where
    C: DaemonConfig + Send + 'static,
{
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match cli::reload(&loaded) {
                Ok((config, warnings)) => {
                    for w in warnings {
                        tracing::warn!("{w}");
                    }
                    apply(&config);
                    raise_nofile_for(config.max_connection());
                    loaded.config = config;
                    tracing::info!("configuration reloaded");
                }
                Err(e) => tracing::error!("reload skipped, keeping the old configuration: {e}"),
            }
        }
    });
    Ok(())
}

/// Serves `/metrics` on `address:port` (`metrics-address`, `metrics-port`); nothing when the port is zero.
pub fn serve_metrics(
    port: u16,
    address: IpAddr,
    render: impl FnOnce() -> Arc<Render>,
) -> Result<Option<MetricsServer>, String> {
    if port == 0 {
        return Ok(None);
    }
    let addr = SocketAddr::new(address, port);
    let m = MetricsServer::start(addr, render())
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    tracing::info!(address = %m.local_addr(), "metrics on http://{}/metrics", m.local_addr());
    Ok(Some(m))
}

impl NodeSettings {
    /// The node server's settings for the node configured by `c`, with its `show variables` lines.
    pub fn from_config(c: &NodeConfig, show_variables: Vec<String>) -> NodeSettings {
        NodeSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], c.server_port)),
            limits: c.limits(),
            dialect: Dialect {
                gat_flare_syntax: c.gat_flare_syntax,
                incr_flare_semantics: c.incr_flare_semantics,
            },
            version_string: c.version_string.clone(),
            expiry_sweep_interval: c.expiry_sweep_interval,
            group_commit: c.storage_sync == StorageSync::Group,
            allow_client_version: c.allow_client_version,
            show_variables,
            settings: c.settings(),
            sync_default: c.replication_type == ReplicationType::Sync,
            internal_netmask: c.internal_netmask.clone(),
        }
    }
}

/// A pid file that is removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes our pid to `path`. Fails when the file holds the pid of a live process ("another process seems
    /// exist", as Flare says); a stale file is overwritten.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                // SAFETY: kill with signal 0 only checks that the process exists.
                let alive = pid > 0
                    && pid != std::process::id() as i32
                    && unsafe { libc::kill(pid, 0) } == 0;
                if alive {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("pid file {} names a live process {pid}: another process seems to exist", path.display()),
                    ));
                }
            }
        }
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
        std::fs::rename(&tmp, path)?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Daemon mode: fork, the parent exits, `setsid`, stdio to /dev/null; the working directory is kept (config.md §3).
/// Must be called before any thread (tokio runtime) is started.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: called from a single-threaded process before the runtime starts; fork/setsid/dup2 are async-signal-safe.
    unsafe {
        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// Raises the soft open-file limit to what `max_connection` connections need (Flare: `max-connection × 2 + 16`), as
/// far as allowed.
pub fn raise_nofile_for(max_connection: u32) {
    let want = u64::from(max_connection) * 2 + 16;
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Logs to stderr with `tracing` (structured, foreground-friendly). `RUST_LOG` overrides the level.
pub fn init_logging(ident: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    tracing::info!(ident, version = flare_core::VERSION, "starting");
}
