//! Command line and config loading of `flared` and `flarei` (config.md §2).
//!
//! The clap [`Command`] is built at run time from the option schema ([`flare_core::config::OPTIONS`]): the
//! process flags (`-f/--config`, `-p/--pid`, `-s/--stderr`, `-v/--version`, `-h/--help`, `--check-config`) plus
//! `--<name>=<value>` (or `--<name> <value>`) for every option of the daemon. Switches are `--daemonize` or
//! `--daemonize=false`.
//!
//! Loading: parse the command line; for `-h`/`-v` stop there ([`Action::PrintHelp`], [`Action::PrintVersion`]);
//! otherwise read the config file if `-f` is given, let the command line override it ([`config::merge`]) and build
//! the typed config. An empty `server-name` becomes the host name. Every failure is a [`CliError`] whose message
//! names the option (and file and line) and ends with a usage hint; the caller prints it and exits with
//! [`CliError::exit_code`]. Nothing here panics on input.
//!
//! SIGHUP: [`reload_node`] / [`reload_index`] re-read the same file, apply the original command-line overrides again
//! (the command line still wins), and return the configuration to run with: dynamic options from the file, every
//! other option unchanged, plus a warning for each ignored change (config.md §6).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use flare_core::config::{
    self, ConfigError, Daemon, DaemonConfig, Entry, IndexConfig, Kind, Location, NodeConfig,
};

/// What `-v`/`--version` prints: the package name and version (config.md §2).
pub const VERSION_LINE: &str = concat!("flare ", env!("CARGO_PKG_VERSION"));

/// What the process should do after loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the server.
    Run,
    /// Print this line (`flare 2.0.0`) and exit 0. The config was not loaded.
    PrintVersion(String),
    /// Print this option list and exit 0. The config was not loaded.
    PrintHelp(String),
    /// `--check-config` passed: print this report (warnings first, then an OK line) and exit 0.
    CheckConfigOk(String),
}

/// The result of loading: the typed config and everything the process needs around it.
///
/// For [`Action::PrintVersion`] and [`Action::PrintHelp`] nothing was loaded: `config` holds the schema defaults
/// and must not be used.
#[derive(Clone, Debug)]
pub struct Loaded<C> {
    /// The configuration (file, then command line).
    pub config: C,
    /// `-f/--config`, if given.
    pub config_path: Option<PathBuf>,
    /// `-p/--pid`, or `<data-dir>/flared.pid` (`flarei.pid` for the index).
    pub pid_path: PathBuf,
    /// `-s/--stderr`: log to stderr instead of syslog.
    pub log_to_stderr: bool,
    /// Warnings to log once logging is set up (options without effect, Flare storage types mapped to RocksDB).
    pub warnings: Vec<String>,
    /// What to do next.
    pub action: Action,
    /// The command-line options, kept so a reload applies them again.
    overrides: Vec<Entry>,
}

/// A loaded node configuration.
pub type LoadedNode = Loaded<NodeConfig>;

/// A loaded index server configuration.
pub type LoadedIndex = Loaded<IndexConfig>;

impl<C: DaemonConfig> Loaded<C> {
    /// `show variables` lines for this process (stats.md §5).
    pub fn show_variables(&self) -> Vec<String> {
        self.config.show_variables(
            &path_text(self.config_path.as_deref()),
            &self.pid_path.display().to_string(),
        )
    }
}

/// Why the command line or the config could not be loaded. Every variant means: print the message, exit 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command line itself is wrong (unknown option, missing value, option given twice). The message is
    /// clap's, naming the option, with the usage line and a `--help` hint.
    #[error("{0}")]
    Usage(String),
    /// The config file cannot be read.
    #[error("{bin}: cannot read config file '{}': {source}\nTry '{bin} --help' for the list of options.", .path.display())]
    ConfigFile {
        /// `flared` or `flarei`.
        bin: &'static str,
        /// The path given with `-f`.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file or the command line has an invalid option (the message names the option, and file and line).
    #[error("{bin}: {source}\nTry '{bin} --help' for the list of options.")]
    Config {
        /// `flared` or `flarei`.
        bin: &'static str,
        /// The error from the core.
        source: ConfigError,
    },
    /// `server-name` is not set and the host name cannot be read.
    #[error("{bin}: cannot determine the host name ({source}); set server-name")]
    HostName {
        /// `flared` or `flarei`.
        bin: &'static str,
        /// The error from gethostname.
        source: io::Error,
    },
}

impl CliError {
    /// The process exit code for this error (always 1, as Flare).
    pub fn exit_code(&self) -> i32 {
        1
    }
}

/// Parses the `flared` command line `args` (program name first, as `std::env::args_os()`) and loads its config.
pub fn load_node(args: Vec<OsString>) -> Result<LoadedNode, CliError> {
    load(args)
}

/// Parses the `flarei` command line `args` (program name first) and loads its config.
pub fn load_index(args: Vec<OsString>) -> Result<LoadedIndex, CliError> {
    load(args)
}

/// SIGHUP for a node: re-reads the config file, applies the original command-line options again, and returns the
/// configuration to run with (dynamic options updated, the others kept) and warnings, including one per ignored
/// change. Store the result back into `loaded.config`. On error the caller keeps the old config (config.md §3).
pub fn reload_node(loaded: &LoadedNode) -> Result<(NodeConfig, Vec<String>), CliError> {
    reload(loaded)
}

/// SIGHUP for the index server; see [`reload_node`].
pub fn reload_index(loaded: &LoadedIndex) -> Result<(IndexConfig, Vec<String>), CliError> {
    reload(loaded)
}

/// The clap command of `daemon`, built from the schema.
pub fn command(daemon: Daemon) -> Command {
    let bin = daemon.binary_name();
    let mut command = Command::new(bin)
        .about(match daemon {
            Daemon::Node => "Flare node server (memcached-compatible, persistent, replicated)",
            Daemon::Index => "Flare index server (node map, monitoring, failover)",
        })
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("config")
                .short('f')
                .long("config")
                .value_name("PATH")
                .value_parser(clap::value_parser!(PathBuf))
                .help("path to config file"),
        )
        .arg(
            Arg::new("pid")
                .short('p')
                .long("pid")
                .value_name("PATH")
                .value_parser(clap::value_parser!(PathBuf))
                .help(format!("path to pid file [default: <data-dir>/{bin}.pid]")),
        )
        .arg(
            Arg::new("stderr")
                .short('s')
                .long("stderr")
                .action(ArgAction::SetTrue)
                .help("log to stderr instead of syslog"),
        )
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::SetTrue)
                .help("print the version and exit"),
        )
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::SetTrue)
                .help("print this help and exit"),
        )
        .arg(
            Arg::new("check-config")
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help("check the configuration, print the result and exit (0 = valid)"),
        );
    for spec in config::options(daemon) {
        command = command.arg(option_arg(spec));
    }
    command
}

/// One `--<name>` argument. No clap default is set: a default would look like a command-line value and override
/// the file.
fn option_arg(spec: &'static config::OptionSpec) -> Arg {
    let mut help = spec.help.to_owned();
    if !spec.default.is_empty() {
        help.push_str(&format!(" [default: {}]", spec.default));
    }
    if spec.dynamic {
        help.push_str(" (dynamic)");
    }
    let arg = Arg::new(spec.name)
        .long(spec.name)
        .value_name(spec.kind.value_name())
        .action(ArgAction::Set)
        .help(help);
    if spec.kind == Kind::Switch {
        // `--daemonize` alone is on; a value needs `=` so the switch never swallows the next argument.
        arg.num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
    } else {
        arg.num_args(1)
    }
}

/// Parses the command line `args` (program name first) of the daemon whose configuration is `C` and loads its
/// config.
pub fn load<C: DaemonConfig>(args: Vec<OsString>) -> Result<Loaded<C>, CliError> {
    let daemon = C::DAEMON;
    let bin = daemon.binary_name();
    let mut command = command(daemon);
    let matches = command.try_get_matches_from_mut(args).map_err(|e| {
        // With clap's own help flag disabled, its messages lack the `--help` hint: add ours.
        let message = e.to_string();
        CliError::Usage(format!(
            "{}\nTry '{bin} --help' for the list of options.",
            message.trim_end()
        ))
    })?;
    let config_path = matches.get_one::<PathBuf>("config").cloned();
    let log_to_stderr = matches.get_flag("stderr");
    let overrides = command_line_entries(daemon, &matches);

    // As Flare: -h and -v print and exit without reading the config.
    let early = if matches.get_flag("help") {
        Some(Action::PrintHelp(command.render_help().to_string()))
    } else if matches.get_flag("version") {
        Some(Action::PrintVersion(VERSION_LINE.to_owned()))
    } else {
        None
    };
    if let Some(action) = early {
        return Ok(Loaded {
            config: C::default(),
            config_path,
            pid_path: PathBuf::new(),
            log_to_stderr,
            warnings: Vec::new(),
            action,
            overrides,
        });
    }

    let (config, warnings) = build::<C>(config_path.as_deref(), &overrides)?;
    let pid_path = match matches.get_one::<PathBuf>("pid") {
        Some(path) => path.clone(),
        None => Path::new(config.data_dir()).join(format!("{bin}.pid")),
    };
    let action = if matches.get_flag("check-config") {
        let source = config_path
            .as_deref()
            .map_or_else(|| "command line".to_owned(), |p| p.display().to_string());
        let mut report: Vec<String> = warnings
            .iter()
            .map(|w| format!("{bin}: warning: {w}"))
            .collect();
        report.push(format!("{bin}: {source}: configuration OK"));
        Action::CheckConfigOk(report.join("\n"))
    } else {
        Action::Run
    };
    Ok(Loaded {
        config,
        config_path,
        pid_path,
        log_to_stderr,
        warnings,
        action,
        overrides,
    })
}

/// SIGHUP for the daemon whose configuration is `C`; see [`reload_node`].
pub fn reload<C: DaemonConfig>(loaded: &Loaded<C>) -> Result<(C, Vec<String>), CliError> {
    let (new, mut warnings) = build::<C>(loaded.config_path.as_deref(), &loaded.overrides)?;
    let (next, changes) = loaded.config.reload(&new);
    warnings.extend(changes.warnings());
    Ok((next, warnings))
}

/// File (if any), then command line, then the typed config with the host name filled in.
fn build<C: DaemonConfig>(
    config_path: Option<&Path>,
    overrides: &[Entry],
) -> Result<(C, Vec<String>), CliError> {
    let bin = C::DAEMON.binary_name();
    let file_entries = match config_path {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| CliError::ConfigFile {
                bin,
                path: path.to_path_buf(),
                source,
            })?;
            config::parse_file(
                &String::from_utf8_lossy(&bytes),
                &path.display().to_string(),
            )
            .map_err(|source| CliError::Config { bin, source })?
        }
        None => Vec::new(),
    };
    let entries = config::merge(&file_entries, overrides);
    let (mut config, warnings) =
        C::from_entries(&entries).map_err(|source| CliError::Config { bin, source })?;
    if config.server_name_mut().is_empty() {
        *config.server_name_mut() =
            host_name().map_err(|source| CliError::HostName { bin, source })?;
    }
    Ok((config, warnings))
}

/// The schema options given on the command line, in command-line order.
fn command_line_entries(daemon: Daemon, matches: &ArgMatches) -> Vec<Entry> {
    let mut given: Vec<(usize, Entry)> = config::options(daemon)
        .filter(|spec| matches.value_source(spec.name) == Some(ValueSource::CommandLine))
        .filter_map(|spec| {
            let value = matches.get_one::<String>(spec.name)?;
            let index = matches.index_of(spec.name).unwrap_or(usize::MAX);
            Some((
                index,
                Entry::new(spec.name, value.clone(), Location::CommandLine),
            ))
        })
        .collect();
    given.sort_by_key(|(index, _)| *index);
    given.into_iter().map(|(_, entry)| entry).collect()
}

/// The host name, standing in for Flare's FQDN default of `server-name` (config.md §5.1 recommends setting an IP
/// address instead).
fn host_name() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..len]).into_owned();
    if name.is_empty() {
        return Err(io::Error::other("empty host name"));
    }
    Ok(name)
}

fn path_text(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flare_core::config::IndexServer;

    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn err(list: &[&str]) -> String {
        match load_node(args(list)) {
            Ok(l) => panic!("accepted: {:?}", l.config),
            Err(e) => {
                assert_eq!(e.exit_code(), 1);
                e.to_string()
            }
        }
    }

    const NODE: &str =
        "data-dir = /var/lib/flared\nindex-servers = 10.0.0.1:12120\nmax-connection = 5\n\
                        thread-pool-size = 4\nserver-name = 10.0.0.5\n";

    #[test]
    fn command_line_overrides_the_file() {
        let f = file(NODE);
        let path = f.path().to_str().unwrap();
        let loaded = load_node(args(&[
            "flared",
            &format!("--config={path}"),
            "--max-connection=9",
            "--thread-pool-size",
            "3",
            "--daemonize",
        ]))
        .unwrap();
        assert_eq!(loaded.action, Action::Run);
        assert_eq!(loaded.config.max_connection, 9);
        assert_eq!(loaded.config.thread_pool_size, 3);
        assert!(loaded.config.daemonize);
        assert_eq!(loaded.config.data_dir, "/var/lib/flared");
        assert_eq!(loaded.config_path.as_deref(), Some(f.path()));
        assert_eq!(loaded.pid_path, PathBuf::from("/var/lib/flared/flared.pid"));
        assert!(!loaded.log_to_stderr);
    }

    #[test]
    fn short_flags() {
        let f = file(NODE);
        let path = f.path().to_str().unwrap();
        let loaded = load_node(args(&["flared", "-f", path, "-p", "/run/x.pid", "-s"])).unwrap();
        assert_eq!(loaded.config.max_connection, 5);
        assert_eq!(loaded.pid_path, PathBuf::from("/run/x.pid"));
        assert!(loaded.log_to_stderr);
        let lines = loaded.show_variables();
        assert!(
            lines.contains(&format!("config_path:            {path}")),
            "{lines:?}"
        );
        assert!(lines.contains(&"pid_path:               /run/x.pid".to_owned()));
    }

    #[test]
    fn without_a_file_everything_comes_from_the_command_line() {
        let loaded = load_index(args(&[
            "flarei",
            "--data-dir=/tmp/i",
            "--monitor-interval",
            "2",
        ]))
        .unwrap();
        assert_eq!(loaded.config.monitor_interval, Duration::from_secs(2));
        assert_eq!(loaded.pid_path, PathBuf::from("/tmp/i/flarei.pid"));
        assert!(
            !loaded.config.server_name.is_empty(),
            "server-name defaults to the host name"
        );
        assert_eq!(loaded.config_path, None);
    }

    #[test]
    fn switch_forms() {
        let base = [
            "flared",
            "--data-dir=/d",
            "--index-servers=a:1",
            "--server-name=n",
        ];
        let with = |extra: &[&str]| {
            let mut list = base.to_vec();
            list.extend_from_slice(extra);
            load_node(args(&list))
        };
        assert!(with(&["--daemonize"]).unwrap().config.daemonize);
        assert!(with(&["--daemonize=yes"]).unwrap().config.daemonize);
        assert!(!with(&["--daemonize=false"]).unwrap().config.daemonize);
        assert!(!with(&[]).unwrap().config.daemonize);
        assert!(with(&["--storage-large"]).unwrap().config.storage_large);
        let e = with(&["--daemonize", "foo"]).unwrap_err().to_string();
        assert!(e.contains("unexpected argument 'foo'"), "{e}");
    }

    #[test]
    fn unknown_option_is_a_usage_error() {
        let e = err(&["flared", "--data-dir=/d", "--no-such-option=1"]);
        assert!(e.contains("unexpected argument '--no-such-option'"), "{e}");
        assert!(e.contains("Usage: flared"), "{e}");
        assert!(e.contains("--help"), "{e}");
        let e = err(&["flared", "--monitor-interval=1"]);
        assert!(
            e.contains("'--monitor-interval'"),
            "an index option is unknown to flared: {e}"
        );
        let e = err(&["flared", "--max-connection=1", "--max-connection=2"]);
        assert!(e.contains("--max-connection"), "{e}");
        let e = err(&["flared", "--data-dir"]);
        assert!(e.contains("--data-dir"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_option() {
        let e = err(&[
            "flared",
            "--data-dir=/d",
            "--index-servers=a:1",
            "--max-connection=abc",
        ]);
        assert_eq!(
            e,
            "flared: command line: option 'max-connection': invalid value 'abc' (expected an integer)\n\
             Try 'flared --help' for the list of options."
        );
        let f = file("data-dir = /d\nbogus = 1\n");
        let e = err(&["flared", "-f", f.path().to_str().unwrap()]);
        assert!(e.contains(":2: unknown option 'bogus'"), "{e}");
        let e = err(&["flared", "-f", "/nonexistent/flared.conf"]);
        assert!(
            e.starts_with("flared: cannot read config file '/nonexistent/flared.conf'"),
            "{e}"
        );
        let e = err(&[
            "flared",
            "--data-dir=/d",
            "--index-servers=a:1",
            "--mysql-replication",
        ]);
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn missing_data_dir() {
        let e = err(&["flared", "--index-servers=a:1"]);
        assert!(
            e.starts_with("flared: option 'data-dir' is required"),
            "{e}"
        );
        let e = load_index(args(&["flarei"])).unwrap_err().to_string();
        assert!(
            e.starts_with("flarei: option 'data-dir' is required"),
            "{e}"
        );
    }

    #[test]
    fn version_and_help_actions() {
        for flag in ["-v", "--version"] {
            let loaded = load_node(args(&["flared", flag])).unwrap();
            assert_eq!(
                loaded.action,
                Action::PrintVersion("flare 2.0.0".to_owned())
            );
        }
        let loaded = load_index(args(&["flarei", "-v", "-f", "/nonexistent"])).unwrap();
        assert_eq!(
            loaded.action,
            Action::PrintVersion(VERSION_LINE.to_owned()),
            "the file is not read"
        );
        let Action::PrintHelp(text) = load_node(args(&["flared", "-h"])).unwrap().action else {
            panic!("not help");
        };
        for needle in [
            "--config <PATH>",
            "--data-dir <STRING>",
            "--daemonize[=<BOOL>]",
            "--storage-type <WORD>",
            "[default: 12121]",
            "(dynamic)",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        let Action::PrintHelp(text) = load_index(args(&["flarei", "--help"])).unwrap().action
        else {
            panic!("not help");
        };
        assert!(
            text.contains("--monitor-interval") && !text.contains("--back-log"),
            "{text}"
        );
    }

    #[test]
    fn check_config() {
        let f = file(&format!("{NODE}storage-type = tch\n"));
        let path = f.path().to_str().unwrap();
        let loaded = load_node(args(&["flared", "-f", path, "--check-config"])).unwrap();
        let Action::CheckConfigOk(report) = loaded.action else {
            panic!("not ok");
        };
        assert!(report.contains("warning: "), "{report}");
        assert!(
            report.ends_with(&format!("flared: {path}: configuration OK")),
            "{report}"
        );
        let e = err(&["flared", "--check-config", "--index-server-port=1"]);
        assert!(e.contains("is required"), "{e}");
    }

    #[test]
    fn reload_rereads_the_file_and_keeps_command_line_overrides() {
        let f = file(NODE);
        let path = f.path().to_str().unwrap();
        let loaded = load_node(args(&["flared", "-f", path, "--max-connection=9"])).unwrap();
        std::fs::write(
            f.path(),
            "data-dir = /elsewhere\nindex-servers = 10.0.0.2:12120\nmax-connection = 50\nthread-pool-size = 8\n\
             server-name = 10.0.0.5\n",
        )
        .unwrap();
        let (config, warnings) = reload_node(&loaded).unwrap();
        assert_eq!(config.max_connection, 9, "the command line still wins");
        assert_eq!(config.thread_pool_size, 8, "dynamic: applied");
        assert_eq!(
            config.index_servers,
            vec![IndexServer {
                name: "10.0.0.2".into(),
                port: 12120
            }]
        );
        assert_eq!(config.data_dir, "/var/lib/flared", "not dynamic: kept");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("'data-dir'"), "{warnings:?}");

        std::fs::write(f.path(), "data-dir = /d\nbroken\n").unwrap();
        let e = reload_node(&loaded).unwrap_err().to_string();
        assert!(e.contains(":2: unknown option 'broken'"), "{e}");
    }

    #[test]
    fn reload_index_applies_monitor_options() {
        let f = file("data-dir = /d\nmonitor-interval = 1\npartition-size = 10\n");
        let loaded = load_index(args(&["flarei", "-f", f.path().to_str().unwrap()])).unwrap();
        std::fs::write(
            f.path(),
            "data-dir = /d\nmonitor-interval = 4\npartition-size = 20\n",
        )
        .unwrap();
        let (config, warnings) = reload_index(&loaded).unwrap();
        assert_eq!(config.monitor_interval, Duration::from_secs(4));
        assert_eq!(config.partition_size, 10);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn every_schema_option_is_a_long_flag() {
        for daemon in [Daemon::Node, Daemon::Index] {
            let command = command(daemon);
            for spec in config::options(daemon) {
                let arg = command
                    .get_arguments()
                    .find(|a| a.get_long() == Some(spec.name))
                    .unwrap_or_else(|| panic!("--{} missing on {daemon}", spec.name));
                assert!(
                    arg.get_default_values().is_empty(),
                    "no clap default for {}",
                    spec.name
                );
            }
        }
        command(Daemon::Node).debug_assert();
        command(Daemon::Index).debug_assert();
    }
}
