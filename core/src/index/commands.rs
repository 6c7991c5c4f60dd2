//! The index's admin commands beyond the plain transitions: registration (`node add`, with restarts), `shutdown`,
//! `auth`, `kill` and the `stats` groups the index answers itself.
//!
//! Every map change goes through [`Index::commit`], so these keep the module invariants of [`super`].

use std::time::Instant;

use super::monitor::Phase;
use super::{Action, CommandOutcome, ConnId, Index, PushPlan};
use crate::config::Secret;
use crate::index::transitions::{self, Refusal};
use crate::node_map::{Role, State};
use crate::protocol::admin::NodeAddr;
use crate::protocol::{ErrorReply, Reply, StatsGroup};

impl Index {
    pub(super) fn node_add(&mut self, now: Instant, node: &NodeAddr) -> CommandOutcome {
        let key = node.key();
        let positions = self.positions_for(&key);
        let registered =
            transitions::register(&self.cluster, node, self.params.nodes_max, &positions);
        let plan = PushPlan {
            exclude: Some(key.clone()),
            force: None,
        };
        let known = match registered {
            Ok((step, known)) => match self.commit(now, step, plan) {
                Ok(()) => known,
                Err(e) => return CommandOutcome::refused(e),
            },
            Err(e) => return CommandOutcome::refused(e),
        };
        if known {
            self.restarted(now, &key);
        }
        CommandOutcome::answer(Reply::Lines(self.cluster.map.node_lines()))
    }

    /// A known node registered again: it is alive, has the map from the reply, and is no longer shutting down.
    pub(super) fn restarted(&mut self, now: Instant, key: &str) {
        if let Some(m) = self.monitors.get_mut(key) {
            m.shutting_down = false;
            m.pending = None;
            if let Phase::Idle { next_probe } = &mut m.phase {
                *next_probe = now;
            }
        }
        self.gate.remove(key);
        self.dispatch();
    }

    pub(super) fn shutdown(&mut self, now: Instant, node: &NodeAddr) -> Result<(), Refusal> {
        let key = node.key();
        let r = self
            .cluster
            .map
            .nodes
            .get(&key)
            .ok_or_else(|| Refusal::NoSuchNode(key.clone()))?;
        let active_master = r.role == Role::Master && r.state == State::Active;
        if let Some(m) = self.monitors.get_mut(&key) {
            m.shutting_down = true;
        }
        let positions = self.positions_for(&key);
        let step = transitions::mark_down(&self.cluster, &key, &positions);
        let plan = PushPlan {
            exclude: None,
            force: active_master.then_some(key.clone()),
        };
        let done = self.commit(now, step, plan);
        if done.is_err() {
            if let Some(m) = self.monitors.get_mut(&key) {
                m.shutting_down = false;
            }
        }
        done
    }

    pub(super) fn auth(&mut self, conn: ConnId, given: &Secret) -> CommandOutcome {
        let secret = self.params.secret.expose();
        let good = secret.is_empty() || constant_time_eq(given.expose(), secret);
        // A connection id that did not come from `open_connection` is never authenticated.
        if let Some(c) = self.conns.get_mut(&conn) {
            c.authenticated = good;
        }
        if good {
            CommandOutcome::answer(Reply::Ok)
        } else {
            CommandOutcome::answer(Reply::Error(ErrorReply::Client(
                "authentication failed".into(),
            )))
        }
    }

    pub(super) fn authenticated(&self, conn: ConnId) -> bool {
        self.params.secret.is_empty() || self.conns.get(&conn).is_some_and(|c| c.authenticated)
    }

    pub(super) fn kill(&mut self, conn: ConnId, id: u64) -> CommandOutcome {
        let target = ConnId(id);
        if target == conn {
            return CommandOutcome {
                reply: Reply::Ok,
                close: true,
            };
        }
        if self.conns.contains_key(&target) {
            self.actions.push_back(Action::Close(target));
            return CommandOutcome::answer(Reply::Ok);
        }
        if let Some(key) = self
            .monitors
            .iter()
            .find(|(_, m)| m.id == id)
            .map(|(k, _)| k)
        {
            let msg =
                format!("thread {id} is the monitor of node {key}; node monitors cannot be killed");
            return CommandOutcome::answer(Reply::Error(ErrorReply::Server(msg.into())));
        }
        CommandOutcome::answer(Reply::Error(ErrorReply::Client("thread not found".into())))
    }

    pub(super) fn stats(&self, group: StatsGroup) -> Reply {
        match group {
            StatsGroup::Nodes => Reply::Stats(self.cluster.map.stats_nodes()),
            StatsGroup::Items | StatsGroup::Slabs | StatsGroup::Sizes => Reply::End,
            StatsGroup::ThreadsSlave => Reply::Stats(Vec::new()),
            // The other groups are driver queries (`ServerQuery`); the parser never hands them here.
            _ => Reply::Error(ErrorReply::UnknownCommand),
        }
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::super::testkit::{key, params, Harness, Seen};
    use crate::config::Secret;
    use crate::index::IndexParams;
    use crate::keys::PartitionParams;
    use crate::protocol::admin::IndexCommand;
    use crate::protocol::Reply;

    #[test]
    fn node_add_replies_with_every_node_then_end() {
        let mut h = Harness::new();
        assert_eq!(
            h.cmd("node add 10.0.0.5 12121"),
            "NODE 10.0.0.5 12121 2 0 -1 0 16\r\nEND\r\n"
        );
        assert_eq!(
            h.take(),
            [Seen::Persist(1)],
            "the registering node has the map from its reply"
        );
        assert_eq!(
            h.cmd("node add 10.0.0.6 12121"),
            "NODE 10.0.0.5 12121 2 0 -1 0 16\r\nNODE 10.0.0.6 12121 2 0 -1 0 17\r\nEND\r\n"
        );
        assert_eq!(h.take(), [Seen::Persist(2), Seen::Push(key("10.0.0.5"), 2)]);
    }

    #[test]
    fn meta_and_stats_nodes_exact_replies() {
        let mut h = Harness::with(
            IndexParams {
                partition: PartitionParams::default(),
                ..params()
            },
            None,
        );
        assert_eq!(
            h.cmd("meta"),
            "META partition-size 1024\r\nMETA key-hash-algorithm simple\r\nMETA partition-type modular\r\n\
             META partition-modular-hint 1\r\nMETA partition-modular-virtual 4096\r\nEND\r\n"
        );
        h.add(&["10.0.0.5"]);
        h.cmd("node role 10.0.0.5 12121 master 1 0");
        assert_eq!(
            h.cmd("stats nodes"),
            "STAT 10.0.0.5:12121:role master\r\nSTAT 10.0.0.5:12121:state active\r\n\
             STAT 10.0.0.5:12121:partition 0\r\nSTAT 10.0.0.5:12121:balance 1\r\n\
             STAT 10.0.0.5:12121:thread_type 16\r\nEND\r\n"
        );
        assert_eq!(h.cmd("stats items"), "END\r\n");
        assert_eq!(h.cmd("stats threads slave"), "END\r\n");
        assert_eq!(h.cmd("ping"), "OK\r\n");
    }

    #[test]
    fn errors_keep_flare_prefixes() {
        let mut h = Harness::new();
        h.add(&["a"]);
        assert_eq!(
            h.cmd("node state a 12121 prepare"),
            "SERVER_ERROR state prepare cannot be set (it is set by node role)\r\n"
        );
        assert_eq!(
            h.cmd("node remove a 12121"),
            "SERVER_ERROR node a:12121 is active: only a down node can be removed\r\n"
        );
        assert_eq!(h.cmd("shutdown q 1"), "SERVER_ERROR no such node q:1\r\n");
        assert_eq!(
            h.cmd("node role a 12121 master 1 20"),
            "SERVER_ERROR partition 20 is not the next partition 0\r\n"
        );
    }

    #[test]
    fn restart_of_a_down_node_keeps_its_record_and_probes_at_once() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        h.cmd("node role a 12121 master 1 0");
        h.answer_all(&BTreeSet::new());
        h.cmd("node state a 12121 down");
        assert_eq!(h.node(&key("a")), "master down 0", "preserved");
        h.answer_all(&BTreeSet::new());
        h.take();
        let v = h.version();
        assert_eq!(
            h.cmd("node add a 12121"),
            "NODE a 12121 0 2 0 1 16\r\nNODE b 12121 2 0 -1 0 17\r\nEND\r\n"
        );
        assert_eq!(h.version(), v, "a restart of a down node changes nothing");
        assert_eq!(h.index.poll_timeout(), Some(h.now), "probed at once");
        h.tick(h.now);
        assert_eq!(h.take(), [Seen::Probe(key("a"))]);
        h.answer_node(&key("a"), true);
        assert_eq!(
            h.node(&key("a")),
            "master active 0",
            "the preserved master is back with its data"
        );
    }

    #[test]
    fn restart_of_a_live_master_fails_over_first() {
        let mut h = Harness::new();
        h.add(&["m", "s"]);
        h.cmd("node role m 12121 master 1 0");
        h.cmd("node role s 12121 slave 0 0");
        h.cmd("node state s 12121 active");
        h.answer_all(&BTreeSet::new());
        h.take();
        // m crashed and restarted before the monitor noticed.
        assert_eq!(
            h.cmd("node add m 12121"),
            "NODE m 12121 2 2 -1 0 16\r\nNODE s 12121 0 0 0 1 17\r\nEND\r\n"
        );
        assert_eq!(h.take(), [Seen::Persist(6), Seen::Push(key("s"), 6)]);
        // Its next good ping brings it up as a proxy.
        h.answer_all(&BTreeSet::new());
        h.tick(h.now);
        h.answer_node(&key("m"), true);
        assert_eq!(h.node(&key("m")), "proxy active -1");
    }

    #[test]
    fn secret_requires_auth_for_map_changes_only() {
        let mut h = Harness::with(
            IndexParams {
                secret: Secret::from("s3cret"),
                ..params()
            },
            None,
        );
        assert_eq!(
            h.cmd("node add a 12121"),
            "CLIENT_ERROR authentication required\r\n"
        );
        assert_eq!(h.cmd("stats nodes"), "END\r\n");
        assert_eq!(h.cmd("ping"), "OK\r\n");
        assert_eq!(
            h.cmd("auth wrong"),
            "CLIENT_ERROR authentication failed\r\n"
        );
        assert_eq!(
            h.cmd("node add a 12121"),
            "CLIENT_ERROR authentication required\r\n"
        );
        assert_eq!(h.cmd("auth s3cret"), "OK\r\n");
        assert!(h.cmd("node add a 12121").starts_with("NODE a"));
        let other = h.index.open_connection();
        assert_eq!(
            h.cmd_on(other, "shutdown a 12121"),
            "CLIENT_ERROR authentication required\r\n"
        );
        // Without a secret, auth is accepted and not needed.
        let mut open = Harness::new();
        assert_eq!(open.cmd("auth anything"), "OK\r\n");
    }

    #[test]
    fn shutdown_of_an_active_master_fails_over_and_still_tells_it() {
        let mut h = Harness::new();
        h.add(&["m", "s", "x"]);
        h.cmd("node role m 12121 master 1 0");
        h.cmd("node role s 12121 slave 0 0");
        h.cmd("node state s 12121 active");
        h.answer_all(&BTreeSet::new());
        h.take();
        assert_eq!(h.cmd("shutdown m 12121"), "OK\r\n");
        assert_eq!(h.node(&key("s")), "master active 0");
        assert_eq!(
            h.take(),
            [Seen::Persist(7), Seen::Push(key("s"), 7)],
            "prior node first"
        );
        h.answer_node(&key("s"), true);
        assert_eq!(
            h.take(),
            [Seen::Push(key("m"), 7), Seen::Push(key("x"), 7)],
            "m was an active master: it is told"
        );
        h.answer_all(&BTreeSet::new());
        // A stopping node that still answers pings does not come back.
        h.run(Duration::from_secs(3), &BTreeSet::new());
        assert_eq!(h.node(&key("m")), "proxy down -1");
        // Until it registers again.
        h.cmd("node add m 12121");
        h.run(Duration::from_millis(200), &BTreeSet::new());
        assert_eq!(h.node(&key("m")), "proxy active -1");
    }

    #[test]
    fn shutdown_of_a_proxy_leaves_it_out_of_the_push() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        h.take();
        assert_eq!(h.cmd("shutdown a 12121"), "OK\r\n");
        assert_eq!(h.take(), [Seen::Persist(3), Seen::Push(key("b"), 3)]);
        assert_eq!(
            h.cmd("shutdown a 12121"),
            "OK\r\n",
            "already down: nothing to do"
        );
    }

    #[test]
    fn an_admin_can_bring_a_stopping_node_back() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        h.cmd("shutdown a 12121");
        h.answer_all(&BTreeSet::new());
        h.take();
        h.cmd("node state a 12121 active");
        assert_eq!(
            h.take(),
            [
                Seen::Persist(4),
                Seen::Push(key("a"), 4),
                Seen::Push(key("b"), 4)
            ]
        );
    }

    #[test]
    fn remove_stops_the_monitor() {
        let mut h = Harness::new();
        h.add(&["a", "b"]);
        h.cmd("node state a 12121 down");
        h.answer_all(&BTreeSet::new());
        h.tick(h.now + Duration::from_secs(1));
        assert_eq!(h.cmd("node remove a 12121"), "OK\r\n");
        assert!(h
            .index
            .monitor_threads(h.now)
            .iter()
            .all(|r| r.peer != key("a")));
        // A late answer for the removed node is ignored.
        h.answer_all(&BTreeSet::new());
        assert!(!h.index.node_map().nodes.contains_key(&key("a")));
        assert_eq!(
            h.cmd("node remove a 12121"),
            "SERVER_ERROR no such node a:12121\r\n"
        );
    }

    #[test]
    fn kill_quit_and_verbosity() {
        let mut h = Harness::new();
        h.add(&["a"]);
        let other = h.index.open_connection();
        assert_eq!(h.cmd(&format!("kill {}", other.0)), "OK\r\n");
        assert_eq!(h.take().last(), Some(&Seen::Close(other.0)));
        let monitor = h.index.monitor_threads(h.now)[0].id;
        assert_eq!(
            h.cmd(&format!("kill {monitor}")),
            format!("SERVER_ERROR thread {monitor} is the monitor of node a:12121; node monitors cannot be killed\r\n")
        );
        assert_eq!(h.cmd("kill 999"), "CLIENT_ERROR thread not found\r\n");
        let me = h.conn;
        let out = h.index.handle_command(h.now, me, IndexCommand::Kill(me.0));
        assert!(out.close);
        let out = h.index.handle_command(h.now, me, IndexCommand::Quit);
        assert_eq!((out.reply, out.close), (Reply::Nothing, true));
        assert_eq!(h.cmd("verbosity 1"), "OK\r\n");
        assert_eq!(h.cmd("verbosity 1 noreply"), "");
    }
}
