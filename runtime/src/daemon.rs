//! Process plumbing shared by `flared` and `flarei`: pid file, daemon mode, logging set-up (config.md §3).

use std::io;
use std::path::{Path, PathBuf};

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

/// Raises the soft open-file limit to at least `want` (Flare: `max-connection × 2 + 16`), as far as allowed.
pub fn raise_nofile(want: u64) {
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
