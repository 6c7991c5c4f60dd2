//! The index group in the turmoil simulator (issue 12): what the index servers showed over the run, and the checkers
//! that read it. Only scenarios with more than one index server ([`Scenario::index_servers`]) run it.
//!
//! **Watching.** From the admin host (never faulted), one task per index server ([`watch_server`]) asks it every
//! 100 ms for `stats` (its `node_map_version` and `index_role`, `index_term`, `index_leader`, `index_members`),
//! `stats nodes`, and `stats` again, and keeps the map when both versions agree. The maps also go to
//! `Env::held_maps` (for `check::one_master_per_version`). [`GroupWatch::leader`] is the leader seen last, which
//! the fault driver crashes or cuts off when the plan names [`INDEX_LEADER`](crate::scenario::INDEX_LEADER).
//!
//! **Checkers** ([`GroupWatch::check`], at the end of the run; each reports at most [`REPORTS_MAX`] failures):
//! - *index maps agree*: no two index servers showed different maps under one `node_map_version` (a minority, a
//!   deposed leader or a restarted server never shows a map the group did not commit under that version);
//! - *node maps committed*: a map a node showed under a version an index server also showed is that server's map
//!   (nodes only hold what the group committed and pushed);
//! - *one leader per term*: no two servers said `index_role leader` with the same `index_term`;
//! - *index group settled* ([`wait_settled`], once the final state is read, after the calm phase healed everything
//!   and the cluster converged): within [`SETTLE_LIMIT`] every index server answers with the same map, version and
//!   members (all of them), at most one says it leads, and the map is the final one the checkers read.
//!
//! They are samples (a map shown for less than a poll can be missed), so they find violations that last; they never
//! report a false one, as each sample is what a server really answered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use flare_core::protocol::lines;
use flare_core::protocol::reply::ReplyKind;

use crate::client::{Answer, TextClient};
use crate::history::{
    lock, map_text, now_ms, parse_stats_nodes, Failure, MapView, Phase, SharedEnv,
};
use crate::scenario::{Scenario, INDEX_PORT};

/// Most failures one checker reports in a run.
pub const REPORTS_MAX: usize = 3;
/// How often each index server is asked.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How long the index servers have to agree once the run is over.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_millis(300);

/// What one index server's `stats` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `index_role`: `leader`, `follower` or `candidate`.
    pub role: String,
    /// `index_term`.
    pub term: u64,
    /// `index_leader` (`None` for `-`).
    pub leader: Option<String>,
    /// `index_members`.
    pub members: String,
    /// `node_map_version`.
    pub version: u64,
    /// Simulated milliseconds when it answered.
    pub at_ms: u64,
}

/// A map one index server showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The index server's host name.
    pub server: String,
    /// Simulated milliseconds.
    pub at_ms: u64,
    /// Its `node_map_version`.
    pub version: u64,
    /// Its `stats nodes`.
    pub map: MapView,
}

/// What the index servers showed during a run.
#[derive(Debug, Default)]
pub struct GroupWatch {
    /// Each server's latest status.
    pub last: BTreeMap<String, Status>,
    /// Every change of a server's (version, map), in order.
    pub samples: Vec<Sample>,
    /// Term → the servers that said they led in it.
    pub leaders: BTreeMap<u64, BTreeSet<String>>,
    /// (simulated ms, leader) every time the leader seen changed.
    pub leader_changes: Vec<(u64, String)>,
    /// Failures of [`wait_settled`].
    pub failures: Vec<Failure>,
}

/// [`GroupWatch`] shared by the watching tasks, the admin and the fault driver.
pub type SharedWatch = Arc<Mutex<GroupWatch>>;

/// Locks the watch (a poisoned lock still holds a consistent record: every change is a push or an insert).
pub fn watch_lock(w: &SharedWatch) -> MutexGuard<'_, GroupWatch> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

impl GroupWatch {
    /// The leader seen last: of the servers whose latest status says `leader`, the one with the highest term, skipping
    /// those in `down` (their last word is from before they went down).
    pub fn leader(&self, down: &BTreeSet<String>) -> Option<String> {
        self.last
            .iter()
            .filter(|(h, st)| st.role == "leader" && !down.contains(*h))
            .max_by_key(|(_, st)| st.term)
            .map(|(h, _)| h.clone())
    }

    fn status(&mut self, env: &SharedEnv, server: &str, st: Status) {
        if st.role == "leader" {
            self.leaders
                .entry(st.term)
                .or_default()
                .insert(server.to_string());
        }
        self.last.insert(server.to_string(), st);
        let none = BTreeSet::new();
        let now = self.leader(&none);
        if now.is_some() && now.as_ref() != self.leader_changes.last().map(|(_, l)| l) {
            let leader = now.unwrap_or_default();
            let term = self.last.get(&leader).map_or(0, |s| s.term);
            lock(env).trace(format!(
                "{} index group: {leader} leads term {term}",
                now_ms()
            ));
            self.leader_changes.push((now_ms(), leader));
        }
    }

    fn sample(&mut self, env: &SharedEnv, server: &str, version: u64, map: MapView) {
        let last = self.samples.iter().rev().find(|s| s.server == server);
        if last.is_some_and(|s| s.version == version && s.map == map) {
            return;
        }
        lock(env).hold_map(server, version, map.clone());
        self.samples.push(Sample {
            server: server.to_string(),
            at_ms: now_ms(),
            version,
            map,
        });
    }

    /// The end-of-run checkers (see the module docs); `nodes` are the maps the nodes showed (`Env::held_maps` of
    /// holders that are not index servers): (holder, version, map).
    pub fn check(&self, nodes: &[(String, u64, MapView)]) -> Vec<Failure> {
        let mut out = Vec::new();
        let mut by_version: BTreeMap<u64, &Sample> = BTreeMap::new();
        let mut agree = Vec::new();
        for s in &self.samples {
            match by_version.get(&s.version) {
                Some(first) if first.map != s.map => agree.push(Failure {
                    checker: "index maps agree",
                    detail: format!(
                        "v{}: {} showed {} at {} ms, {} showed {} at {} ms",
                        s.version,
                        first.server,
                        map_text(&first.map),
                        first.at_ms,
                        s.server,
                        map_text(&s.map),
                        s.at_ms
                    ),
                }),
                Some(_) => {}
                None => {
                    by_version.insert(s.version, s);
                }
            }
        }
        out.extend(agree.into_iter().take(REPORTS_MAX));
        let mut committed = Vec::new();
        for (holder, version, map) in nodes {
            if let Some(first) = by_version.get(version) {
                if first.map != *map {
                    committed.push(Failure {
                        checker: "node maps committed",
                        detail: format!(
                            "{holder} held v{version} {}, but {} showed v{version} {}",
                            map_text(map),
                            first.server,
                            map_text(&first.map)
                        ),
                    });
                }
            }
        }
        out.extend(committed.into_iter().take(REPORTS_MAX));
        out.extend(
            self.leaders
                .iter()
                .filter(|(_, l)| l.len() > 1)
                .take(REPORTS_MAX)
                .map(|(term, l)| Failure {
                    checker: "one leader per term",
                    detail: format!("term {term} had leaders {l:?}"),
                }),
        );
        out.extend(self.failures.iter().take(REPORTS_MAX).cloned());
        out
    }
}

/// One `stats`-like listing from `client`.
async fn listing(client: &mut TextClient, line: &[u8]) -> Option<Vec<Bytes>> {
    match client.call(line, ReplyKind::Lines, CALL_TIMEOUT).await {
        Ok(Answer::Lines(l)) => Some(l),
        _ => None,
    }
}

/// A `stats` listing read as a [`Status`].
pub fn status_of(listing: &[Bytes]) -> Option<Status> {
    let get = |name: &str| {
        listing
            .iter()
            .find_map(|l| lines::stat_value(l, name))
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
    };
    Some(Status {
        role: get("index_role")?,
        term: get("index_term")?.parse().ok()?,
        leader: get("index_leader").filter(|l| l != "-"),
        members: get("index_members").unwrap_or_default(),
        version: get("node_map_version")?.parse().ok()?,
        at_ms: now_ms(),
    })
}

/// One round on one server: its status, and its map when two `stats` around `stats nodes` agree.
async fn ask(client: &mut TextClient) -> Option<(Status, Option<MapView>)> {
    let before = status_of(&listing(client, b"stats\r\n").await?)?;
    let Some(map) = listing(client, b"stats nodes\r\n")
        .await
        .map(|l| parse_stats_nodes(&l))
    else {
        return Some((before, None));
    };
    let Some(after) = listing(client, b"stats\r\n")
        .await
        .and_then(|l| status_of(&l))
    else {
        return Some((before, None));
    };
    let map = (after.version == before.version).then_some(map);
    Some((after, map))
}

/// Watches index server `server` until the run is done (see the module docs).
pub async fn watch_server(server: String, env: SharedEnv, watch: SharedWatch) {
    let mut client = TextClient::new(&server, INDEX_PORT);
    while lock(&env).phase < Phase::Done {
        if let Some((st, map)) = ask(&mut client).await {
            let version = st.version;
            let mut w = watch_lock(&watch);
            w.status(&env, &server, st);
            if let Some(map) = map {
                w.sample(&env, &server, version, map);
            }
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Starts [`watch_server`] for every index server of `s` (on the calling host).
pub fn start_watching(
    s: &Scenario,
    env: &SharedEnv,
    watch: &SharedWatch,
) -> Vec<tokio::task::JoinHandle<()>> {
    s.index_hosts()
        .into_iter()
        .map(|h| tokio::task::spawn_local(watch_server(h, env.clone(), watch.clone())))
        .collect()
}

/// *index group settled* (see the module docs): polls every index server until they agree with each other and with
/// `final_version`, or [`SETTLE_LIMIT`] passes (then the failure goes to the watch). Every server must answer: the
/// calm phase restarted every crashed one.
pub async fn wait_settled(
    s: &Scenario,
    env: &SharedEnv,
    watch: &SharedWatch,
    final_version: u64,
    final_map: &MapView,
) {
    let servers = s.index_hosts();
    let mut clients: Vec<TextClient> = servers
        .iter()
        .map(|h| TextClient::new(h, INDEX_PORT))
        .collect();
    let want_members = {
        let mut m: Vec<String> = servers
            .iter()
            .map(|h| format!("{h}:{INDEX_PORT}"))
            .collect();
        m.sort();
        m.join(",")
    };
    let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
    let mut why;
    loop {
        why = None;
        let mut leaders = Vec::new();
        for (server, client) in servers.iter().zip(&mut clients) {
            let (st, map) = match ask(client).await {
                Some((st, Some(map))) => (st, map),
                Some((_, None)) => {
                    why.get_or_insert(format!("{server}'s map kept changing"));
                    continue;
                }
                None => {
                    why.get_or_insert(format!("{server} did not answer"));
                    continue;
                }
            };
            if st.role == "leader" {
                leaders.push(server.clone());
            }
            if st.version != final_version || map != *final_map {
                why.get_or_insert(format!(
                    "{server} ({}, term {}) shows v{} {}, the final map is v{final_version} {}",
                    st.role,
                    st.term,
                    st.version,
                    map_text(&map),
                    map_text(final_map)
                ));
            }
            if st.members != want_members {
                why.get_or_insert(format!(
                    "{server} has members {}, not {want_members}",
                    st.members
                ));
            }
        }
        if leaders.len() > 1 {
            why.get_or_insert(format!("several servers say they lead: {leaders:?}"));
        }
        if why.is_none() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
    match why {
        None => lock(env).trace(format!(
            "{} index group settled on v{final_version}",
            now_ms()
        )),
        Some(why) => {
            let detail = format!("not settled {SETTLE_LIMIT:?} after the run: {why}");
            lock(env).trace(format!("{} index group {detail}", now_ms()));
            watch_lock(watch).failures.push(Failure {
                checker: "index group settled",
                detail,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::NodeInfo;

    fn map(master: &str) -> MapView {
        ["n0:12121", "n1:12121"]
            .into_iter()
            .map(|k| {
                let role = if k == master { "master" } else { "slave" };
                (
                    k.to_string(),
                    NodeInfo {
                        role: role.into(),
                        state: "active".into(),
                        partition: 0,
                        balance: 1,
                    },
                )
            })
            .collect()
    }

    fn sample(server: &str, version: u64, m: MapView) -> Sample {
        Sample {
            server: server.into(),
            at_ms: version * 100,
            version,
            map: m,
        }
    }

    fn checkers(w: &GroupWatch, nodes: &[(String, u64, MapView)]) -> Vec<&'static str> {
        w.check(nodes).into_iter().map(|f| f.checker).collect()
    }

    #[test]
    fn servers_that_agree_pass() {
        let w = GroupWatch {
            samples: vec![
                sample("index", 5, map("n0:12121")),
                sample("index1", 5, map("n0:12121")),
                sample("index1", 6, map("n1:12121")),
            ],
            leaders: [
                (2, ["index".to_string()].into()),
                (3, ["index1".to_string()].into()),
            ]
            .into(),
            ..GroupWatch::default()
        };
        let nodes = [("n1".to_string(), 6, map("n1:12121"))];
        assert!(checkers(&w, &nodes).is_empty());
    }

    #[test]
    fn two_maps_under_one_version_fail() {
        let w = GroupWatch {
            samples: vec![
                sample("index", 6, map("n0:12121")),
                sample("index2", 6, map("n1:12121")),
            ],
            ..GroupWatch::default()
        };
        assert_eq!(checkers(&w, &[]), ["index maps agree"]);
    }

    #[test]
    fn a_node_holding_an_uncommitted_map_fails() {
        let w = GroupWatch {
            samples: vec![sample("index", 6, map("n0:12121"))],
            ..GroupWatch::default()
        };
        let nodes = [("n1".to_string(), 6, map("n1:12121"))];
        assert_eq!(checkers(&w, &nodes), ["node maps committed"]);
    }

    #[test]
    fn two_leaders_of_one_term_fail() {
        let w = GroupWatch {
            leaders: [(4, ["index".to_string(), "index1".to_string()].into())].into(),
            ..GroupWatch::default()
        };
        assert_eq!(checkers(&w, &[]), ["one leader per term"]);
    }

    #[test]
    fn the_leader_is_the_one_of_the_highest_term_still_up() {
        let st = |role: &str, term| Status {
            role: role.into(),
            term,
            leader: None,
            members: String::new(),
            version: 1,
            at_ms: 0,
        };
        let w = GroupWatch {
            last: [
                ("index".to_string(), st("leader", 2)),
                ("index1".to_string(), st("leader", 3)),
                ("index2".to_string(), st("follower", 3)),
            ]
            .into(),
            ..GroupWatch::default()
        };
        assert_eq!(w.leader(&BTreeSet::new()).as_deref(), Some("index1"));
        let down: BTreeSet<String> = ["index1".to_string()].into();
        assert_eq!(w.leader(&down).as_deref(), Some("index"));
    }
}
