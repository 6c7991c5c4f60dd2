//! The machine's [`NodeSettings`] from a node configuration (one mapping for `flared` and the simulator), and the
//! timeouts the driver derives from them.

use std::time::Duration;

use crate::config::NodeConfig;
use crate::node::NodeSettings;

impl NodeSettings {
    /// The settings of the node configured by `c`.
    pub fn from_config(c: &NodeConfig) -> Self {
        NodeSettings {
            server_name: c.server_name.clone(),
            server_port: c.server_port,
            index_servers: c
                .index_servers
                .iter()
                .map(|s| (s.name.clone(), s.port))
                .collect(),
            proxy_timeout: c.proxy_timeout,
            replication_backlog: c.replication_backlog as usize,
            reconstruction_interval_us: c.reconstruction_interval.as_micros() as u64,
            reconstruction_bwlimit: u64::from(c.reconstruction_bwlimit),
            lease: c.master_lease,
            cluster_secret: c.cluster_secret.expose().to_string(),
        }
    }

    /// How long opening the session with one index server may take: five proxy timeouts (it sends `auth` and
    /// `node session` and reads both answers).
    pub fn session_open_timeout(&self) -> Duration {
        self.proxy_timeout * 5
    }

    /// How long opening a replication link to a slave may take: one proxy timeout.
    pub fn link_open_timeout(&self) -> Duration {
        self.proxy_timeout
    }

    /// How long a stopping node waits for the index to answer its goodbye: five proxy timeouts.
    pub fn goodbye_wait(&self) -> Duration {
        self.proxy_timeout * 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_a_standalone_node() {
        let c = NodeConfig::default();
        let s = NodeSettings::from_config(&c);
        assert!(s.standalone());
        assert_eq!(s.self_key(), format!("{}:{}", c.server_name, c.server_port));
        assert_eq!(s.lease, c.master_lease);
        assert_eq!(s.session_open_timeout(), c.proxy_timeout * 5);
        assert_eq!(s.goodbye_wait(), c.proxy_timeout * 5);
        assert_eq!(s.link_open_timeout(), c.proxy_timeout);
    }
}
