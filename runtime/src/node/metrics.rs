//! What a node's `/metrics` shows: the `stats` counters, requests by command and result with latency histograms,
//! storage, connections, the node's place in the cluster, replication per slave and reconstruction progress.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use flare_core::storage::Storage;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::time::Instant;

use super::Shared;
use crate::metrics::{counter, counter_family, gauge, gauge_family, process, Render};
use crate::net::Net;

/// The scrape renderer of one node.
pub fn renderer<N: Net, S: Storage + 'static>(shared: Arc<Shared<N, S>>) -> Arc<Render> {
    Arc::new(move |enc: &mut DescriptorEncoder| encode(&shared, enc))
}

fn encode<N: Net, S: Storage>(shared: &Shared<N, S>, enc: &mut DescriptorEncoder) -> fmt::Result {
    let c = &shared.counters;
    let storage = shared.store.storage();
    gauge(enc, "flare_up", "1 while the node serves", 1u64)?;
    gauge(
        enc,
        "flare_healthy",
        "0 after a storage error (ping answers SERVER_ERROR)",
        u64::from(shared.healthy()),
    )?;
    gauge(
        enc,
        "flare_uptime_seconds",
        "Seconds since start",
        shared.uptime(),
    )?;
    gauge(
        enc,
        "flare_items",
        "Items stored (curr_items)",
        storage.item_count(),
    )?;
    gauge(
        enc,
        "flare_bytes",
        "Bytes the storage uses on disk (bytes)",
        storage.disk_bytes(),
    )?;
    gauge(
        enc,
        "flare_connections",
        "Client connections open (curr_connections)",
        c.curr_connections.load(Relaxed),
    )?;
    counter(
        enc,
        "flare_connections_accepted",
        "Connections accepted since start (total_connections)",
        c.total_connections.load(Relaxed),
    )?;
    counter(
        enc,
        "flare_bytes_read",
        "Bytes read from clients",
        c.bytes_read.load(Relaxed),
    )?;
    counter(
        enc,
        "flare_bytes_written",
        "Bytes written to clients",
        c.bytes_written.load(Relaxed),
    )?;
    for (name, value) in c.tally_fields() {
        // `total_items` would read `flare_total_items_total`.
        let metric = match name {
            "total_items" => "flare_items_stored".to_string(),
            _ => format!("flare_{name}"),
        };
        counter(enc, &metric, &format!("The stats counter {name}"), value)?;
    }
    shared.ops.encode("flare", enc)?;
    counter(
        enc,
        "flare_dump_items",
        "Records sent by dump and dump_key (to reconstructing nodes and to clients)",
        c.dump_items.load(Relaxed),
    )?;
    gauge(
        enc,
        "flare_dumps_running",
        "Dumps being streamed now",
        c.dumps_running.load(Relaxed),
    )?;

    let view = shared.cluster.view();
    gauge(
        enc,
        "flare_node_map_version",
        "Version of the node map this node routes with",
        view.map().version,
    )?;
    let (role, state, partition, balance) = view.my_role();
    let partition = partition.map_or_else(|| "-1".to_string(), |p| p.to_string());
    gauge_family(
        enc,
        "flare_node_info",
        "This node's role, state and partition (value 1)",
        &[(
            [
                ("role", role.name().to_string()),
                ("state", state.name().to_string()),
                ("partition", partition),
            ],
            1u64,
        )],
    )?;
    gauge(
        enc,
        "flare_node_balance",
        "This node's read balance",
        u64::from(balance),
    )?;
    gauge(
        enc,
        "flare_partitions",
        "Partitions in the node map",
        u64::from(view.partition_count()),
    )?;
    gauge(
        enc,
        "flare_replication_position",
        "Sequence number of the last write replicated to this node",
        shared.cluster.applied_seq(),
    )?;

    let mut repl = shared.cluster.replication_stats(Instant::now().into_std());
    // The slaves of this master's partition, also before their first replicated write (zero backlog).
    if let (flare_core::node_map::Role::Master, Some(p)) = (role, view.my_role().2) {
        let slaves = view
            .partitions()
            .active
            .get(p as usize)
            .map(|part| part.slaves.clone())
            .unwrap_or_default();
        for s in slaves {
            if !repl.iter().any(|(t, _)| *t == s) {
                repl.push((s, Default::default()));
            }
        }
        repl.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let rows = |f: &dyn Fn(&flare_core::node::replication::SenderStats) -> u64| {
        repl.iter()
            .map(|(t, s)| ([("slave", t.clone())], f(s)))
            .collect::<Vec<_>>()
    };
    gauge_family(
        enc,
        "flare_replication_queue",
        "Writes queued or in flight to a slave (backlog)",
        &rows(&|s| (s.queued + s.in_flight) as u64),
    )?;
    let lag: Vec<_> = repl
        .iter()
        .map(|(t, s)| ([("slave", t.clone())], s.lag.as_secs_f64()))
        .collect();
    gauge_family(
        enc,
        "flare_replication_lag_seconds",
        "Age of the oldest write a slave has not acknowledged",
        &lag,
    )?;
    gauge_family(
        enc,
        "flare_replication_acked_position",
        "Highest sequence number a slave acknowledged",
        &rows(&|s| s.acked_seq),
    )?;
    counter_family(
        enc,
        "flare_replication_failures",
        "Writes a slave did not get (backlog full or too many errors)",
        &rows(&|s| s.failures),
    )?;
    counter_family(
        enc,
        "flare_replication_sent",
        "Replication messages sent to a slave (resends included)",
        &rows(&|s| s.sent),
    )?;

    let rec = shared.cluster.rebuild_stats();
    gauge(
        enc,
        "flare_reconstruction_running",
        "1 while this node copies its partition from a master",
        u64::from(rec.running),
    )?;
    gauge(
        enc,
        "flare_reconstruction_items",
        "Items received by the current (or last) reconstruction",
        rec.items,
    )?;
    gauge(
        enc,
        "flare_reconstruction_total_items",
        "Items the sources held when the reconstruction started (0 = unknown)",
        rec.total,
    )?;
    process(enc, std::time::Duration::from_secs(shared.uptime()))
}
