//! What a node's `/metrics` shows: the metrics [`flare_core::node::stats`] builds from the node's [`Snapshot`]
//! (health, storage, connections, the `stats` counters, the node's place in the cluster, replication per slave,
//! reconstruction progress), the requests by command and result with latency histograms, and the process.
//!
//! [`Snapshot`]: flare_core::node::stats::Snapshot

use std::sync::Arc;
use std::time::Duration;

use flare_core::node::stats::{cluster_metrics, counter_metrics};
use flare_core::storage::Storage;
use prometheus_client::encoding::DescriptorEncoder;

use super::Shared;
use crate::metrics::{process, write_metrics, Render};
use crate::net::Net;

/// The scrape renderer of one node.
pub fn renderer<N: Net, S: Storage + 'static>(shared: Arc<Shared<N, S>>) -> Arc<Render> {
    Arc::new(move |enc: &mut DescriptorEncoder| {
        let s = shared.snapshot();
        write_metrics(enc, &counter_metrics(&s))?;
        shared.ops.encode("flare", enc)?;
        write_metrics(enc, &cluster_metrics(&s))?;
        process(enc, Duration::from_secs(s.uptime))
    })
}
