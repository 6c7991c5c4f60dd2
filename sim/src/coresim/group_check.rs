//! The index group's checkers in the core-level simulator (issue 12 item 5). The driver reports what the index
//! servers emit and what the nodes hold as it happens; each report is checked at once, and a failure goes to
//! `Env::failures` (at most [`REPORTS_MAX`] per checker, so a broken invariant does not flood the report):
//!
//! - **index maps agree**: no two index servers ever apply different maps (`Output::Applied`) under one version,
//!   and every map a node holds is, under its version, the map the index servers applied (so no node ever sees a
//!   map that was not committed, or another map under a committed version).
//! - **acknowledged maps survive**: every map version acknowledged (a successful reply of an index server, which
//!   shows what it applied; a map a node holds) is, at the end of a run that healed and settled, applied by every
//!   live index server: no committed change is lost to the minority failures the run had.
//! - **one pushing index server per term**: pushes come only from a server whose `status().acting` holds, and from at
//!   most one server per Raft term; likewise at most one server acts in a term.
//! - **index conflicts**: `status().conflicts` (committed maps not newer than the applied one) stays 0 on every
//!   server, checked when a server crashes and at the end.

use std::collections::BTreeMap;

use flare_core::index::Snapshot;

use crate::history::{map_text, Env, MapView};

/// Most failures one checker reports in a run.
pub const REPORTS_MAX: u32 = 3;

/// What the index servers have applied, acknowledged and pushed so far.
#[derive(Default)]
pub struct GroupLog {
    /// Version → the first server that applied it, the map, and its view.
    applied: BTreeMap<u64, (String, Snapshot, MapView)>,
    /// Raft term → the server that acted in it.
    acting: BTreeMap<u64, String>,
    /// Raft term → the server that pushed in it.
    pushers: BTreeMap<u64, String>,
    /// The highest acknowledged version and who acknowledged it.
    acked: Option<(u64, String)>,
    reported: BTreeMap<&'static str, u32>,
}

impl GroupLog {
    /// Server `server` applied `snap` (`view`: its `stats nodes` view).
    pub fn applied(&mut self, env: &mut Env, server: &str, snap: &Snapshot, view: MapView) {
        match self.applied.get(&snap.version) {
            Some((first, theirs, their_view)) if theirs != snap => {
                let detail = format!(
                    "{server} applied v{} {} but {first} applied v{} {} (next thread type {} / {})",
                    snap.version,
                    map_text(&view),
                    theirs.version,
                    map_text(their_view),
                    snap.next_thread_type,
                    theirs.next_thread_type,
                );
                self.fail(env, "index maps agree", detail);
            }
            Some(_) => {}
            None => {
                self.applied
                    .insert(snap.version, (server.to_string(), snap.clone(), view));
            }
        }
    }

    /// Node `node` holds map `version` (`view`). Version 0 is the empty map a node starts with.
    pub fn node_holds(&mut self, env: &mut Env, node: &str, version: u64, view: &MapView) {
        if version == 0 {
            return;
        }
        self.acknowledged(version, node);
        let detail = match self.applied.get(&version) {
            Some((_, _, theirs)) if theirs == view => return,
            Some((server, _, theirs)) => format!(
                "{node} holds v{version} {} but {server} applied v{version} {}",
                map_text(view),
                map_text(theirs)
            ),
            None => format!(
                "{node} holds v{version} {}, which no index server applied",
                map_text(view)
            ),
        };
        self.fail(env, "index maps agree", detail);
    }

    /// `who` acknowledged `version` (a successful reply from a server that applied it, a map a node holds).
    pub fn acknowledged(&mut self, version: u64, who: &str) {
        if self.acked.as_ref().is_none_or(|(v, _)| version > *v) {
            self.acked = Some((version, who.to_string()));
        }
    }

    /// Server `server` emitted a push while in Raft term `term`, acting or not.
    pub fn pushed(&mut self, env: &mut Env, server: &str, term: u64, acting: bool) {
        if !acting {
            let detail = format!("{server} pushed in term {term} while not acting");
            self.fail(env, "one pushing index server per term", detail);
        }
        match self.pushers.get(&term) {
            Some(first) if first != server => {
                let detail = format!("{first} and {server} both pushed in term {term}");
                self.fail(env, "one pushing index server per term", detail);
            }
            Some(_) => {}
            None => {
                self.pushers.insert(term, server.to_string());
            }
        }
    }

    /// Server `server` acts in term `term`.
    pub fn acting(&mut self, env: &mut Env, server: &str, term: u64) {
        match self.acting.get(&term) {
            Some(first) if first != server => {
                let detail = format!("{first} and {server} both acted in term {term}");
                self.fail(env, "one pushing index server per term", detail);
            }
            Some(_) => {}
            None => {
                self.acting.insert(term, server.to_string());
            }
        }
    }

    /// Server `server`'s `status().conflicts`.
    pub fn conflicts(&mut self, env: &mut Env, server: &str, conflicts: u64) {
        if conflicts > 0 {
            let detail = format!(
                "{server} counted {conflicts} committed maps not newer than its applied one"
            );
            self.fail(env, "index conflicts", detail);
        }
    }

    /// At the end of a run that healed and settled: every live server (name, applied version) has applied every
    /// acknowledged version.
    pub fn settled(&mut self, env: &mut Env, live: &[(String, u64)]) {
        let Some((acked, who)) = self.acked.clone() else {
            return;
        };
        for (server, applied) in live {
            if *applied < acked {
                let detail = format!(
                    "at the end {server} applied v{applied}, but v{acked} was acknowledged (by {who})"
                );
                self.fail(env, "acknowledged maps survive", detail);
            }
        }
    }

    fn fail(&mut self, env: &mut Env, checker: &'static str, detail: String) {
        let n = self.reported.entry(checker).or_default();
        *n += 1;
        if *n <= REPORTS_MAX {
            env.fail(checker, detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use flare_core::keys::PartitionParams;

    use super::*;
    use crate::history::{lock, NodeInfo};

    fn snap(version: u64, next_thread_type: u32) -> Snapshot {
        Snapshot {
            version,
            next_thread_type,
            nodes: Vec::new(),
            partition: PartitionParams::default(),
        }
    }

    fn view(role: &str) -> MapView {
        let info = NodeInfo {
            role: role.into(),
            state: "active".into(),
            partition: 0,
            balance: 1,
        };
        [("n0:12121".to_string(), info)].into_iter().collect()
    }

    fn checkers(env: &Env) -> Vec<&'static str> {
        env.failures.iter().map(|f| f.checker).collect()
    }

    #[test]
    fn the_same_map_applied_everywhere_and_held_by_nodes_passes() {
        let (mut log, shared) = (GroupLog::default(), Env::new(1));
        let mut e = lock(&shared);
        for server in ["index", "index1", "index2"] {
            log.applied(&mut e, server, &snap(1, 7), view("master"));
        }
        log.node_holds(&mut e, "n0", 1, &view("master"));
        log.acting(&mut e, "index", 2);
        log.pushed(&mut e, "index", 2, true);
        log.acting(&mut e, "index1", 3);
        log.pushed(&mut e, "index1", 3, true);
        log.settled(&mut e, &[("index".into(), 1), ("index1".into(), 1)]);
        assert!(e.failures.is_empty(), "{:?}", e.failures);
    }

    #[test]
    fn two_maps_under_one_version_are_caught() {
        let (mut log, shared) = (GroupLog::default(), Env::new(1));
        let mut e = lock(&shared);
        log.applied(&mut e, "index", &snap(3, 7), view("master"));
        log.applied(&mut e, "index1", &snap(3, 8), view("master"));
        log.node_holds(&mut e, "n0", 3, &view("slave"));
        log.node_holds(&mut e, "n0", 4, &view("slave"));
        assert_eq!(checkers(&e), vec!["index maps agree"; 3]);
    }

    #[test]
    fn a_lost_acknowledged_version_is_caught() {
        let (mut log, shared) = (GroupLog::default(), Env::new(1));
        let mut e = lock(&shared);
        log.applied(&mut e, "index", &snap(5, 7), view("master"));
        log.acknowledged(5, "index:12120");
        log.settled(&mut e, &[("index".into(), 5), ("index1".into(), 4)]);
        assert_eq!(checkers(&e), vec!["acknowledged maps survive"]);
    }

    #[test]
    fn pushes_from_a_follower_or_two_servers_in_a_term_are_caught() {
        let (mut log, shared) = (GroupLog::default(), Env::new(1));
        let mut e = lock(&shared);
        log.pushed(&mut e, "index", 2, true);
        log.pushed(&mut e, "index1", 2, true);
        log.pushed(&mut e, "index2", 3, false);
        log.acting(&mut e, "index", 4);
        log.acting(&mut e, "index2", 4);
        log.conflicts(&mut e, "index", 1);
        assert_eq!(
            checkers(&e),
            vec![
                "one pushing index server per term",
                "one pushing index server per term",
                "one pushing index server per term",
                "index conflicts"
            ]
        );
    }
}
