//! Push scheduling (cluster.md §4.2): which monitor sends the map when.
//!
//! Each map change queues the new version on every monitor (coalesced: a node gets only the newest map). A monitor
//! sends its push as soon as it is idle, with two exceptions:
//! - **prior nodes**: while the gate holds prior nodes (the promoted slave of a failover, the master and slaves of an
//!   activated partition), only they may receive pushes; every other node waits until each prior node has answered
//!   (or failed) a push of at least the version that made it prior;
//! - **skipped nodes**: a node the monitor considers really down, or one shutting down (unless the push is forced),
//!   has its pending push dropped when its turn comes. It gets the map again with the change that brings it back.
//!
//! A failed push is retried at the node's next monitor turn, in place of the probe.

use super::monitor::Phase;
use super::{Action, Index};
use crate::node_map::{Role, State};

impl Index {
    /// Starts every push that may go now. Dropping a skipped prior node can open the gate, so it repeats until
    /// nothing more opens.
    pub(super) fn dispatch(&mut self) {
        loop {
            let was_closed = !self.gate.is_empty();
            let ready: Vec<String> = self
                .monitors
                .iter()
                .filter(|(k, m)| {
                    matches!(m.phase, Phase::Idle { .. })
                        && m.pending.is_some_and(|p| !p.deferred)
                        && self.may_push(k)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in ready {
                self.start_push(&key, false);
            }
            if !(was_closed && self.gate.is_empty()) {
                break;
            }
        }
    }

    /// Sends the pending push of an idle monitor if the gate allows it (and, unless `at_turn`, it is not waiting
    /// for its next turn after a failure). Returns whether a push started; a skipped node's push is dropped.
    pub(super) fn start_push(&mut self, key: &str, at_turn: bool) -> bool {
        let threshold = self.params.monitor_threshold;
        let may = self.may_push(key);
        let Some(m) = self.monitors.get_mut(key) else {
            return false;
        };
        let Some(pending) = m.pending else {
            return false;
        };
        if !matches!(m.phase, Phase::Idle { .. }) || (pending.deferred && !at_turn) || !may {
            return false;
        }
        let skip = m.skips_pushes(threshold);
        m.pending = None;
        if skip {
            self.gate.remove(key);
            return false;
        }
        let version = self.cluster.map.version;
        m.phase = Phase::Pushing {
            version,
            backlog: pending,
        };
        self.actions.push_back(Action::Push {
            node: key.to_owned(),
            version,
            lines: self.cluster.map.to_lines(),
            timeout: self.params.monitor_read_timeout,
        });
        true
    }

    /// Sends a `ping` (asking an active slave for its replication position too).
    pub(super) fn start_probe(&mut self, key: &str) {
        let position = self
            .cluster
            .map
            .nodes
            .get(key)
            .is_some_and(|n| n.role == Role::Slave && n.state == State::Active);
        let Some(m) = self.monitors.get_mut(key) else {
            return;
        };
        m.phase = Phase::Probing;
        self.actions.push_back(Action::Probe {
            node: key.to_owned(),
            timeout: self.params.monitor_read_timeout,
            position,
        });
    }

    fn may_push(&self, key: &str) -> bool {
        self.gate.is_empty() || self.gate.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use crate::index::testkit::{key, Harness, Seen};

    fn pushes(seen: &[Seen]) -> Vec<String> {
        seen.iter()
            .filter_map(|s| match s {
                Seen::Push(n, _) => Some(n.trim_end_matches(":12121").to_owned()),
                _ => None,
            })
            .collect()
    }

    /// m master of 0 with active slave s; x and y proxies. Everything answered.
    fn with_slave() -> Harness {
        let mut h = Harness::new();
        h.add(&["m", "s", "x", "y"]);
        h.cmd("node role m 12121 master 1 0");
        h.cmd("node role s 12121 slave 0 0");
        h.cmd("node state s 12121 active");
        h.answer_all(&BTreeSet::new());
        h.take();
        h
    }

    /// Probes everyone once; `m` fails, the rest answer.
    fn probe_round(h: &mut Harness, failing: &str) {
        h.now += Duration::from_secs(1);
        h.index.handle_timeout(h.now);
        h.drain();
        let nodes: Vec<String> = h.in_flight_nodes().into_keys().collect();
        for n in nodes {
            h.answer_node(&n, n != key(failing));
        }
    }

    #[test]
    fn failover_pushes_the_promoted_slave_first() {
        let mut h = with_slave();
        probe_round(&mut h, "m");
        probe_round(&mut h, "m");
        h.take();
        h.now += Duration::from_secs(1);
        h.index.handle_timeout(h.now);
        h.drain();
        h.answer_node(&key("m"), false);
        assert_eq!(h.node(&key("s")), "master active 0");
        let v = h.version();
        assert_eq!(
            h.take()[4..],
            [Seen::Persist(v)],
            "s is busy with its probe"
        );
        h.answer_node(&key("s"), true);
        assert_eq!(
            h.take(),
            [Seen::Push(key("s"), v)],
            "the promoted slave first"
        );
        h.answer_node(&key("x"), true);
        h.answer_node(&key("y"), true);
        assert_eq!(pushes(&h.take()), Vec::<String>::new(), "others wait for s");
        h.answer_node(&key("s"), true);
        assert_eq!(pushes(&h.take()), ["x", "y"], "m is really down: skipped");
    }

    #[test]
    fn a_failed_prior_push_opens_the_gate_too() {
        let mut h = with_slave();
        h.cmd("node state m 12121 down");
        assert_eq!(pushes(&h.take()), ["s"]);
        h.answer_node(&key("s"), false);
        assert_eq!(
            pushes(&h.take()),
            ["m", "x", "y"],
            "m was downed by an admin and still answers"
        );
    }

    #[test]
    fn activation_pushes_the_new_partition_first() {
        let mut h = with_slave();
        h.cmd("node role x 12121 master 1 1");
        h.cmd("node role y 12121 slave 1 1");
        h.cmd("node state x 12121 ready");
        h.answer_all(&BTreeSet::new());
        h.take();
        h.cmd("node state x 12121 active");
        assert_eq!(pushes(&h.take()), ["x", "y"]);
        h.answer_node(&key("x"), true);
        assert_eq!(
            pushes(&h.take()),
            Vec::<String>::new(),
            "waits for every prior node"
        );
        h.answer_node(&key("y"), true);
        assert_eq!(pushes(&h.take()), ["m", "s"]);
    }

    #[test]
    fn pushes_coalesce_to_the_latest_version() {
        let mut h = with_slave();
        h.cmd("node role s 12121 slave 2 0");
        h.answer_node(&key("m"), true);
        h.answer_node(&key("s"), true);
        h.answer_node(&key("y"), true);
        // x still has the push of v in flight; two more changes queue behind it.
        h.cmd("node role s 12121 slave 3 0");
        h.cmd("node role s 12121 slave 4 0");
        let x = h
            .index
            .monitor_threads(h.now)
            .into_iter()
            .find(|r| r.peer == key("x"))
            .unwrap();
        assert_eq!(x.queue, 3, "one in flight and two waiting");
        h.take();
        h.answer_node(&key("x"), true);
        assert_eq!(
            h.take(),
            [Seen::Push(key("x"), h.version())],
            "one push, of the newest map"
        );
    }

    #[test]
    fn a_probing_node_gets_its_push_after_the_probe() {
        let mut h = with_slave();
        h.now += Duration::from_secs(1);
        h.index.handle_timeout(h.now);
        h.drain();
        h.take();
        h.cmd("node role s 12121 slave 5 0");
        assert_eq!(
            h.take(),
            [Seen::Persist(h.version())],
            "every monitor is busy probing"
        );
        h.answer_node(&key("x"), true);
        assert_eq!(pushes(&h.take()), ["x"]);
    }
}
