//! The simulated cluster's hosts: the production index and node drivers, configured as `flarei` and `flared` would
//! configure them (from the schema defaults with sim-friendly values: monitor interval 1 s, threshold 3, proxy
//! timeout 1 s, replication backlog 10 000), on [`SimNet`].
//!
//! With [`Scenario::index_servers`] > 1 the index servers are a Raft group: hosts `index`, `index1`, ..., each
//! configured as `flarei` with `index-servers = index:12120,index1:12120,...` and `server-name` = its host name; every
//! node gets the same list. A single index server has no list, as before.
//!
//! A host is a factory turmoil calls again on every restart (`bounce`), so everything that must outlive a crash is
//! created outside it and shared: each node's [`MemoryStorage`], each index server's [`MemorySnapshots`] and Raft
//! log ([`MemoryRaftStore`]). An index server's election timeouts are seeded from the scenario's seed, its place in
//! the group and its boot count, so that a run is the same every time and two servers never draw alike. A node host
//! also plays the part of the process supervisor (systemd): when start-up fails (the index is unreachable, say) it
//! waits a second and starts the node again, as a restarted process would.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use flare_core::config::{
    DaemonConfig, IndexConfig, IndexServer as IndexAddr, KeyHashAlgorithm, NodeConfig,
};
use flare_core::index::IndexParams;
use flare_core::storage::MemoryStorage;
use flare_core::store::{Store, StoreConfig};
use flare_runtime::index::{IndexServer, IndexSettings, MemoryRaftStore, MemorySnapshots};
use flare_runtime::node::cluster::ClusterSettings;
use flare_runtime::node::{NodeServer, NodeSettings};

use crate::history::{lock, now_ms, SharedEnv};
use crate::net::SimNet;
use crate::scenario::{CrashModel, Scenario, INDEX, INDEX_PORT, NODE_PORT};

/// The version string every simulated process reports.
pub const VERSION_STRING: &str = "2.0.0";

/// The `index-servers` list of a scenario (empty for a single index server).
pub fn index_list(s: &Scenario) -> Vec<IndexAddr> {
    match s.index_servers {
        0 | 1 => Vec::new(),
        _ => s
            .index_hosts()
            .into_iter()
            .map(|name| IndexAddr {
                name,
                port: INDEX_PORT,
            })
            .collect(),
    }
}

/// The configuration of the (first) index server of a scenario.
pub fn index_config(s: &Scenario) -> IndexConfig {
    index_config_of(s, INDEX)
}

/// The configuration of index server `host` in a scenario.
pub fn index_config_of(s: &Scenario, host: &str) -> IndexConfig {
    let group = index_list(s);
    IndexConfig {
        data_dir: format!("/sim/{host}"),
        server_name: match group.is_empty() {
            true => String::new(),
            false => host.to_string(),
        },
        index_servers: group,
        server_port: INDEX_PORT,
        monitor_interval: Duration::from_secs(1),
        monitor_threshold: 3,
        monitor_read_timeout: Duration::from_millis(1000),
        key_hash_algorithm: match s.hash {
            "crc32" => KeyHashAlgorithm::Crc32,
            _ => KeyHashAlgorithm::Simple,
        },
        max_connection: 1024,
        version_string: VERSION_STRING.into(),
        master_lease: s.master_lease,
        ..IndexConfig::default()
    }
}

/// The configuration of node `name` with the one index server ([`add_node`] gives it the scenario's).
pub fn node_config(name: &str) -> NodeConfig {
    NodeConfig {
        data_dir: format!("/sim/{name}"),
        server_name: name.into(),
        server_port: NODE_PORT,
        index_servers: vec![IndexAddr {
            name: INDEX.into(),
            port: INDEX_PORT,
        }],
        max_connection: 1024,
        proxy_timeout: Duration::from_secs(1),
        replication_backlog: 10_000,
        version_string: VERSION_STRING.into(),
        expiry_sweep_interval: Duration::from_secs(2),
        ..NodeConfig::default()
    }
}

/// `flared`'s `NodeSettings` for a configuration ([`NodeSettings::from_config`]) but without group commit.
pub fn node_settings(c: &NodeConfig) -> NodeSettings {
    NodeSettings {
        // Group commit fsyncs on a blocking thread, which the simulation cannot schedule deterministically.
        group_commit: false,
        ..NodeSettings::from_config(c, c.show_variables("", ""))
    }
}

/// `flared`'s `StoreConfig` for a configuration.
pub fn store_config(c: &NodeConfig) -> StoreConfig {
    StoreConfig::from_config(c)
}

/// Registers the index server hosts of `s` (one, or the whole group), each with its own map copy and Raft log.
pub fn add_indexes(sim: &mut turmoil::Sim<'_>, s: &Scenario, env: SharedEnv) {
    for (place, host) in s.index_hosts().into_iter().enumerate() {
        add_index(sim, s, &host, place as u64, env.clone());
    }
}

/// Registers index server `host`, the `place`-th of its group.
fn add_index(sim: &mut turmoil::Sim<'_>, s: &Scenario, host: &str, place: u64, env: SharedEnv) {
    let c = index_config_of(s, host);
    let params = IndexParams::from_config(&c);
    let settings = IndexSettings::from_config(&c, c.show_variables("", ""))
        .expect("the simulated index finds itself");
    let boots = Arc::new(AtomicU64::new(0));
    // The map copy and the Raft log survive the host's crashes, as a disk would (unless `index_amnesia`).
    let snapshots = Arc::new(MemorySnapshots::default());
    let log = Arc::new(MemoryRaftStore::default());
    // A single index server keeps the seeds it always had (its boot count); a group member's also depend on the run's
    // seed and its place, so that the members never draw the same election timeouts.
    let base = match s.index_servers {
        0 | 1 => 0,
        _ => s
            .seed
            .wrapping_mul(0x2545_f491_4f6c_dd1d)
            .wrapping_add(place << 40),
    };
    let name = host.to_string();
    let amnesia = s.index_amnesia;
    sim.host(host, move || {
        let boot = boots.fetch_add(1, Relaxed);
        let (snapshots, log) = match amnesia {
            false => (snapshots.clone(), log.clone()),
            true => Default::default(),
        };
        let (params, mut settings, env, name) =
            (params.clone(), settings.clone(), env.clone(), name.clone());
        // Election timeouts from the seed and the boot count: the same run every time.
        settings.seed = base.wrapping_add(boot);
        async move {
            lock(&env).trace(format!("{} boot {name} #{boot}", now_ms()));
            let server = IndexServer::bind(SimNet, params, settings, snapshots, log).await?;
            server.run(std::future::pending()).await?;
            Ok(())
        }
    });
}

/// A node's storage as the crash model wants it.
pub fn new_storage(model: CrashModel) -> Arc<MemoryStorage> {
    Arc::new(match model {
        CrashModel::Process => MemoryStorage::new(),
        CrashModel::Machine => MemoryStorage::losing_unsynced(),
    })
}

/// Registers node host `name` on `storage`.
pub fn add_node(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    name: &str,
    env: SharedEnv,
    storage: Arc<MemoryStorage>,
) {
    let c = NodeConfig {
        master_lease: s.master_lease,
        index_servers: s
            .index_hosts()
            .into_iter()
            .map(|name| IndexAddr {
                name,
                port: INDEX_PORT,
            })
            .collect(),
        ..node_config(name)
    };
    let settings = node_settings(&c);
    let store_cfg = store_config(&c);
    let index = name.trim_start_matches('n').parse::<u64>().unwrap_or(0);
    let seed = s
        .seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(index << 32);
    let boots = Arc::new(AtomicU64::new(0));
    let name = name.to_string();
    sim.host(name.clone(), move || {
        let (c, settings, storage, env, name) = (
            c.clone(),
            settings.clone(),
            storage.clone(),
            env.clone(),
            name.clone(),
        );
        let boots = boots.clone();
        async move {
            loop {
                // A restarted process gets a new seed, as production's pid-based one differs per start.
                let boot = boots.fetch_add(1, Relaxed);
                lock(&env).trace(format!("{} boot {name} #{boot}", now_ms()));
                let store = Store::new(storage.clone(), store_cfg);
                let started = NodeServer::start(
                    SimNet,
                    store,
                    settings.clone(),
                    ClusterSettings::from_config(&c, seed.wrapping_add(boot)),
                    c.max_connection as usize,
                    c.net_read_timeout,
                )
                .await;
                match started {
                    Ok(server) => {
                        let shared = server.shared();
                        let probe = crate::history::LagProbe(Box::new(move || {
                            let (role, state, partition, _) = shared.cluster.view().my_role();
                            let targets = shared
                                .cluster
                                .replication_stats(std::time::Instant::now())
                                .into_iter()
                                .map(|(k, st)| {
                                    let host = k.split(':').next().unwrap_or_default().to_string();
                                    (host, st.queued + st.in_flight, st.failures)
                                })
                                .collect();
                            let role = (
                                role.name().to_string(),
                                state.name().to_string(),
                                partition.map_or(-1, i64::from),
                            );
                            (role, targets)
                        }));
                        lock(&env).lag_probes.insert(name.clone(), probe);
                        let (role, state, partition, _) = server.shared().cluster.view().my_role();
                        lock(&env).trace(format!(
                            "{} {name} serving as {}/{}/{}",
                            now_ms(),
                            role.name(),
                            state.name(),
                            partition.map_or(-1, i64::from)
                        ));
                        server
                            .run(std::future::pending(), Duration::from_millis(500))
                            .await?;
                        return Ok(());
                    }
                    Err(e) => {
                        lock(&env).trace(format!(
                            "{} {name} start failed: {:?}",
                            now_ms(),
                            e.kind()
                        ));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
}
