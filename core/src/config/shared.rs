//! The options both daemons have (scope [`Both`](super::Scope::Both) in the schema, and `server-port`), written once:
//! [`shared_options!`] gives [`NodeConfig`](super::NodeConfig) and [`IndexConfig`](super::IndexConfig) their
//! defaults, how each is set from a checked value, rendered and carried over by a reload, and the whole
//! [`DaemonConfig`](super::DaemonConfig) implementation, which hands the daemon's own options to its
//! [`Target`](super::build::Target).
//!
//! The fields stay flat (`config.max_connection`, not `config.shared.max_connection`) so that the rest of the
//! workspace reads and builds both configurations as before; the macro is what keeps the two copies of each field
//! from drifting apart.

use super::schema::OptionSpec;
use super::values::{Problem, Value};

/// Sets the options both daemons have; [`build`](super::build::build) tries it before the daemon's own
/// [`Target::set`](super::build::Target::set).
pub(super) trait Shared {
    /// Applies one checked value if `spec` is an option both daemons have; `Ok(false)` when it is the daemon's own.
    fn set_shared(&mut self, spec: &'static OptionSpec, v: &Value<'_>) -> Result<bool, Problem>;
}

/// Implements [`Default`], [`Shared`] and [`DaemonConfig`](super::DaemonConfig) for `$config`, a struct with one
/// flat field per option of `$daemon`, given the defaults of the fields that are its own (and `server_port`, whose
/// default differs by daemon). The daemon's own options go through its [`Target`](super::build::Target).
macro_rules! shared_options {
    ($config:ident, $daemon:expr, { $($field:ident: $default:expr),* $(,)? }) => {
        impl Default for $config {
            fn default() -> Self {
                $config {
                    data_dir: String::new(),
                    daemonize: false,
                    log_facility: $crate::config::LogFacility::Daemon,
                    server_name: String::new(),
                    server_socket: None,
                    max_connection: 1024,
                    net_read_timeout: ::std::time::Duration::from_secs(600),
                    stack_size: 128,
                    thread_pool_size: 5,
                    master_lease: ::std::time::Duration::from_millis(3000),
                    max_line_length: 65536,
                    version_string: $crate::config::DEFAULT_VERSION_STRING.to_owned(),
                    cluster_secret: $crate::config::Secret::default(),
                    internal_netmask: Vec::new(),
                    metrics_port: 0,
                    metrics_address: ::std::net::IpAddr::from([127, 0, 0, 1]),
                    $($field: $default,)*
                }
            }
        }

        impl $crate::config::shared::Shared for $config {
            fn set_shared(
                &mut self,
                spec: &'static $crate::config::OptionSpec,
                v: &$crate::config::values::Value<'_>,
            ) -> Result<bool, $crate::config::values::Problem> {
                use $crate::config::values::{host_name, ip_address, netmask_list, non_empty, token};
                match spec.name {
                    "data-dir" => self.data_dir = v.text()?.to_owned(),
                    "daemonize" => self.daemonize = v.flag()?,
                    "log-facility" => {
                        self.log_facility = v.choice($crate::config::LogFacility::from_name)?
                    }
                    "server-name" => self.server_name = host_name(v, true)?,
                    "server-port" => self.server_port = v.int()?,
                    "server-socket" => self.server_socket = non_empty(v.text()?),
                    "max-connection" => self.max_connection = v.int()?,
                    "net-read-timeout" => {
                        self.net_read_timeout = ::std::time::Duration::from_secs(v.int()?)
                    }
                    "stack-size" => self.stack_size = v.int()?,
                    "thread-pool-size" => self.thread_pool_size = v.int()?,
                    "master-lease" => self.master_lease = v.millis()?,
                    "max-line-length" => self.max_line_length = v.int()?,
                    "version-string" => {
                        self.version_string = token(v, false, "a word without spaces")?
                    }
                    "cluster-secret" => {
                        self.cluster_secret =
                            $crate::config::Secret(token(v, true, "a word without spaces")?)
                    }
                    "internal-netmask" => self.internal_netmask = netmask_list(v.text()?)?,
                    "metrics-port" => self.metrics_port = v.int()?,
                    "metrics-address" => self.metrics_address = ip_address(v)?,
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }

        impl $crate::config::DaemonConfig for $config {
            const DAEMON: $crate::config::Daemon = $daemon;

            fn from_entries(
                entries: &[$crate::config::Entry],
            ) -> Result<($config, Vec<String>), $crate::config::ConfigError> {
                $crate::config::build::build(entries)
            }

            fn pairs(&self, reveal_secret: bool) -> Vec<(&'static str, String)> {
                use $crate::config::build::{millis, netmasks, schema_order, secret, Target};
                let mut pairs = vec![
                    ("data-dir", self.data_dir.clone()),
                    ("daemonize", self.daemonize.to_string()),
                    ("log-facility", self.log_facility.to_string()),
                    ("server-name", self.server_name.clone()),
                    ("server-port", self.server_port.to_string()),
                    ("server-socket", self.server_socket.clone().unwrap_or_default()),
                    ("max-connection", self.max_connection.to_string()),
                    ("net-read-timeout", self.net_read_timeout.as_secs().to_string()),
                    ("stack-size", self.stack_size.to_string()),
                    ("thread-pool-size", self.thread_pool_size.to_string()),
                    ("master-lease", millis(self.master_lease)),
                    ("max-line-length", self.max_line_length.to_string()),
                    ("version-string", self.version_string.clone()),
                    ("cluster-secret", secret(self.cluster_secret.expose(), reveal_secret)),
                    ("internal-netmask", netmasks(&self.internal_netmask)),
                    ("metrics-port", self.metrics_port.to_string()),
                    ("metrics-address", self.metrics_address.to_string()),
                ];
                pairs.extend(self.own_pairs());
                schema_order($daemon, pairs)
            }

            fn reload(&self, new: &$config) -> ($config, $crate::config::Changes) {
                use $crate::config::build::Target;
                let mut next = self.clone();
                next.log_facility = new.log_facility;
                next.max_connection = new.max_connection;
                next.net_read_timeout = new.net_read_timeout;
                next.thread_pool_size = new.thread_pool_size;
                next.cluster_secret = new.cluster_secret.clone();
                next.internal_netmask = new.internal_netmask.clone();
                next.reload_own(new);
                (next, self.dynamic_changes(new))
            }

            fn show_variables(&self, config_path: &str, pid_path: &str) -> Vec<String> {
                use $crate::config::build::{show, Target};
                let special = |label: &str| match label {
                    "config_path" => Some(config_path.to_owned()),
                    "pid_path" => Some(pid_path.to_owned()),
                    _ => self.show_special(label),
                };
                show(Self::SHOW_WIDTH, Self::SHOW, self.pairs(false), special, Self::show_hidden)
            }

            fn data_dir(&self) -> &str {
                &self.data_dir
            }

            fn server_name_mut(&mut self) -> &mut String {
                &mut self.server_name
            }

            fn daemonize(&self) -> bool {
                self.daemonize
            }

            fn max_connection(&self) -> u32 {
                self.max_connection
            }
        }
    };
}

pub(super) use shared_options;
