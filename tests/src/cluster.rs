//! A cluster of real processes for end-to-end tests: one `flarei` (`--monitor-interval=1`) and nodes that register
//! with it, with the index's view of each node (`stats nodes`), role changes, and waits for a state or for the
//! index's node map to reach the nodes.

use std::time::Duration;

use crate::{wait_until, Client, Flared};

/// The index and its nodes; node `i` is `nodes[i]`, known to the index as [`Cluster::key`].
pub struct Cluster {
    /// The index server.
    pub index: Flared,
    /// The nodes, in start order.
    pub nodes: Vec<Flared>,
}

impl Cluster {
    /// The index and `n` nodes started with `node_args`, each waited for until the index shows it as an active proxy.
    pub fn start(n: usize, node_args: &[&str]) -> Cluster {
        let index = Flared::index(&["--monitor-interval=1"]);
        let nodes = (0..n)
            .map(|_| Flared::node_of(index.port, node_args))
            .collect();
        let c = Cluster { index, nodes };
        for i in 0..n {
            c.wait_state(i, "proxy", "active");
        }
        c
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Flared {
        &self.nodes[i]
    }

    /// A new connection to node `i`.
    pub fn client(&self, i: usize) -> Client {
        self.nodes[i].connect()
    }

    /// Node `i`'s key in the node map: `127.0.0.1:<port>`.
    pub fn key(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    /// Sends one admin command line to the index and returns its one-line answer.
    pub fn index_call(&self, line: &str) -> String {
        self.index.connect().call(line)
    }

    /// `node role <node i> <what>` (`what`: `master 1 0`, `slave 1 0`, `proxy`, ...), which must answer `OK`.
    pub fn role(&self, i: usize, what: &str) {
        let line = format!("node role 127.0.0.1 {} {what}", self.nodes[i].port);
        assert_eq!(self.index_call(&line), "OK", "{line}");
    }

    /// Field `f` (`role`, `state`, `partition`, ...) of node `i` in the index's `stats nodes`; empty when absent.
    pub fn field(&self, i: usize, f: &str) -> String {
        self.index
            .connect()
            .stats_nodes()
            .get(&format!("{}:{f}", self.key(i)))
            .cloned()
            .unwrap_or_default()
    }

    /// `role/state` of node `i` as the index shows it.
    pub fn role_state(&self, i: usize) -> String {
        format!("{}/{}", self.field(i, "role"), self.field(i, "state"))
    }

    /// Waits (up to 30 s) until the index shows node `i` as `role`/`state`; fails with `stats nodes` and the node's
    /// log.
    pub fn wait_state(&self, i: usize, role: &str, state: &str) {
        let ok = wait_until(Duration::from_secs(30), || {
            self.field(i, "role") == role && self.field(i, "state") == state
        });
        assert!(
            ok,
            "node {i} did not become {role}/{state}: {:?}\n{}",
            self.index.connect().stats_nodes(),
            self.nodes[i].log()
        );
    }

    /// [`Cluster::wait_state`], then, unless the state is `down`, until node `i` holds the index's node map: the
    /// index pushes its map asynchronously, and a live node only acts on its new role once the push has arrived.
    pub fn wait_applied(&self, i: usize, role: &str, state: &str) {
        self.wait_state(i, role, state);
        if state == "down" {
            return;
        }
        let version: u64 = self
            .index
            .connect()
            .stat("node_map_version")
            .parse()
            .unwrap();
        let ok = wait_until(Duration::from_secs(10), || {
            self.client(i)
                .stat("node_map_version")
                .parse::<u64>()
                .is_ok_and(|v| v >= version)
        });
        assert!(ok, "node {i} did not get node map {version}");
    }

    /// Waits until every running node holds the index's current node map (pushes are asynchronous).
    pub fn converged(&self) {
        let version = self.index.connect().stat("node_map_version");
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let ok = wait_until(Duration::from_secs(10), || {
                n.connect().stat("node_map_version") == version
            });
            assert!(ok, "{} did not get node map {version}", n.addr());
        }
    }

    /// Node `i`'s `curr_items`.
    pub fn items(&self, i: usize) -> u64 {
        self.client(i).stat("curr_items").parse().unwrap()
    }
}
