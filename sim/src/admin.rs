//! The admin client: builds the cluster through the index (as flare-tools would), watches the index's node map
//! while faults run, waits for the cluster to converge once they are healed, and reads the final state for the
//! checkers.
//!
//! Setup (cluster.md §6): wait until every node registered; `node role <m0> master 1 0`; for each further partition
//! `node role <m> master 1 <p>`, wait for `ready`, `node state <m> active`; for each slave `node role <s> slave 1
//! <p>` (balance forced to 0 while it reconstructs), wait for `active`, then `node role <s> slave 1 <p>` again for
//! its read balance. With `slaves_under_load` the slaves are added after the workload started, under faults.
//!
//! With [`Scenario::grow_partition`], from [`Scenario::grow_at`] on, the spare node (a proxy at setup) is made the
//! master of a new partition P = `partitions` while the workload runs and faults happen (cluster.md §6.3): `node
//! role <n> master 1 <P>`, wait while it prepares, `node state <n> active` once it is `ready`; whenever a fault sent
//! it back to proxy (its preparation failed, it went down while preparing) the role is issued again, as an operator
//! would. After the calm phase starts the same flow runs until it is done; the cluster converges only with P
//! active.
//!
//! While the run goes on, a poller reads every node's own map and version (`stats`, `stats nodes`, `stats`) every
//! 200 ms and records them with the index's maps (`Env::held_maps`) for `check::one_master_per_version`.
//!
//! With [`Scenario::rebuild_slaves`], once converged, every planned slave the faults left a proxy is rebuilt
//! (`flush_all`, `node role <s> slave 1 <p>`, wait for `active`, balance back to 1) while the workload runs, and the
//! cluster must converge again.
//!
//! With an index group ([`Scenario::index_servers`] > 1) the admin talks to the group as flare-admin does: a
//! map-changing command goes to the server that says it leads (`stats`: `index_role`; else the `index_leader` it
//! names; else the next server), a down server is passed over, and a `not the index leader` answer is sent again
//! to the leader it names (or, with no leader yet, to the next server after a pause). Maps are read from the leader
//! too (`stats`, `stats nodes`, `stats` on one server), and the map invariants below are checked per server. The
//! group's own watch and checkers are [`crate::group_check`]; once the final state is read the admin
//! waits for every index server to agree on it ([`group_check::wait_settled`]).
//!
//! Convergence (calm phase, before [`Scenario::calm_limit`]): every node registered and `active`, every partition
//! has an active master, and every node holds the index's map (same version, same records). Then the workload goes
//! on for [`Scenario::checked_window`] (those reads must be fresh), stops, replication drains (every node's
//! `replication_queue` is 0), and the admin reads every node's `dump` and every key through every node.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use flare_core::node_map::{Role, State};
use flare_core::protocol::admin::{AdminCommand, IndexCommand, NodeAddr, ServerQuery};
use flare_core::protocol::reply::ReplyKind;
use flare_core::protocol::{lines, StatsGroup};

use crate::client::{Answer, CallError, TextClient};
use crate::group_check::{self, SharedWatch};
use crate::history::{
    index_map_converged, lock, map_text, now_ms, parse_stats_nodes, short, FinalState, MapView,
    Phase, SharedEnv,
};
use crate::scenario::{Planned, Scenario, INDEX_PORT, NODE_PORT};
use crate::workload::classify;

const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the admin waits for an index server's `stats` when it looks for the leader.
const FIND_TIMEOUT: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(200);

/// Runs the admin client for the whole run (`watch`: the index group's record, watched from here when there is a
/// group).
pub async fn run_admin(s: Scenario, env: SharedEnv, watch: SharedWatch) -> turmoil::Result {
    let watchers = match s.index_servers > 1 {
        true => group_check::start_watching(&s, &env, &watch),
        false => Vec::new(),
    };
    let mut admin = Admin::new(&s, env.clone());
    if let Err(e) = admin.setup().await {
        lock(&env).fail("setup", e);
        admin.finish().await;
        for w in watchers {
            let _ = w.await;
        }
        return Ok(());
    }
    {
        let mut e = lock(&env);
        e.workload_started_ms = Some(now_ms());
        e.phase = Phase::Faults;
        let line = format!("{} workload starts", now_ms());
        e.trace(line);
    }
    let mut background = None;
    if s.slaves_under_load {
        let (s2, env2) = (s.clone(), env.clone());
        background = Some(tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut a = Admin::new(&s2, env2);
            if let Err(e) = a.add_slaves(false).await {
                let line = format!("{} slaves under load: {e}", now_ms());
                lock(&a.env).trace(line);
            }
        }));
    }
    let mut growth = None;
    if s.grow_partition {
        let (s2, env2) = (s.clone(), env.clone());
        growth = Some(tokio::task::spawn_local(async move {
            tokio::time::sleep(s2.grow_at).await;
            let mut a = Admin::new(&s2, env2);
            if let Err(e) = a.grow(Phase::Calm).await {
                a.trace(format!("partition not added under load: {e}"));
            }
        }));
    }
    let poller = tokio::task::spawn_local(poll_held_maps(s.clone(), env.clone()));
    admin.watch_until_calm().await;
    // One admin at a time changes roles: the slaves still being added under load are done (or given up) first.
    if let Some(task) = background {
        let _ = task.await;
    }
    if let Some(task) = growth {
        let _ = task.await;
    }
    let mut converged = Ok(());
    if s.grow_partition {
        // The operator finishes what the faults interrupted: the same flow, now without faults, until it is done.
        converged = admin
            .grow(Phase::Done)
            .await
            .map_err(|e| format!("adding the partition after the faults: {e}"));
    }
    if converged.is_ok() {
        converged = admin.converge().await;
    }
    if converged.is_ok() && s.rebuild_slaves {
        converged = match admin.rebuild_slaves().await {
            Ok(()) => admin.converge().await,
            Err(e) => Err(format!("rebuilding the slaves: {e}")),
        };
    }
    match converged {
        Ok(()) => {
            tokio::time::sleep(s.checked_window).await;
            admin.stop_clients().await;
            match admin.verify().await {
                Err(e) => lock(&env).fail("verify", e),
                Ok(()) if s.index_servers > 1 => {
                    let (version, map) = {
                        let e = lock(&env);
                        let f = e.final_state.as_ref().map(|f| (f.version, f.map.clone()));
                        f.unwrap_or_default()
                    };
                    group_check::wait_settled(&s, &env, &watch, version, &map).await;
                }
                Ok(()) => {}
            }
        }
        Err(e) => lock(&env).fail("convergence", e),
    }
    admin.finish().await;
    let _ = poller.await;
    for w in watchers {
        let _ = w.await;
    }
    Ok(())
}

/// Until the final state is read, polls each node's own map (`stats` for its `node_map_version`, `stats nodes`,
/// `stats` again; kept when both versions agree) and records it (`Env::hold_map`) for
/// `check::one_master_per_version`. The admin host is never cut off, so an isolated node is still polled; a
/// crashed one times out quickly and is skipped.
async fn poll_held_maps(s: Scenario, env: SharedEnv) {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let mut clients: Vec<(String, TextClient)> = s
        .nodes()
        .into_iter()
        .map(|n| (n.clone(), TextClient::new(&n, NODE_PORT)))
        .collect();
    let version = |listing: &[Bytes]| {
        listing.iter().find_map(|l| {
            let v = String::from_utf8_lossy(lines::stat_value(l, "node_map_version")?);
            v.trim().parse::<u64>().ok()
        })
    };
    while lock(&env).phase < Phase::Verify {
        for (name, client) in &mut clients {
            let mut ask =
                async |line: &[u8]| match client.call(line, ReplyKind::Lines, TIMEOUT).await {
                    Ok(Answer::Lines(l)) => Some(l),
                    _ => None,
                };
            let Some(before) = ask(b"stats\r\n").await.and_then(|l| version(&l)) else {
                continue;
            };
            let Some(map) = ask(b"stats nodes\r\n").await.map(|l| parse_stats_nodes(&l)) else {
                continue;
            };
            let Some(after) = ask(b"stats\r\n").await.and_then(|l| version(&l)) else {
                continue;
            };
            if before == after {
                lock(&env).hold_map(name, before, map);
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The index servers as the admin reaches them (see the module docs): one connection to each, and the one asked
/// first (the last that said it leads).
struct Indexes {
    servers: Vec<(String, TextClient)>,
    current: usize,
}

/// `SERVER_ERROR not the index leader; ...` (the group's refusal, as a follower answers it), with the leader it
/// names (`host:port`), if any.
fn not_the_leader(answer: &str) -> Option<Option<&str>> {
    let rest = answer.strip_prefix("SERVER_ERROR not the index leader; ")?;
    Some(rest.strip_prefix("leader is "))
}

impl Indexes {
    fn new(s: &Scenario) -> Self {
        Indexes {
            servers: s
                .index_hosts()
                .into_iter()
                .map(|h| (h.clone(), TextClient::new(&h, INDEX_PORT)))
                .collect(),
            current: 0,
        }
    }

    fn group(&self) -> bool {
        self.servers.len() > 1
    }

    fn name(&self) -> &str {
        &self.servers[self.current].0
    }

    fn client(&mut self) -> &mut TextClient {
        &mut self.servers[self.current].1
    }

    fn next(&mut self) {
        self.current = (self.current + 1) % self.servers.len();
    }

    /// Makes `addr` (`host:port`) the server asked first; false when it is none of them.
    fn point_at(&mut self, addr: &str) -> bool {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        match self.servers.iter().position(|(h, _)| h == host) {
            Some(i) => {
                self.current = i;
                true
            }
            None => false,
        }
    }

    /// With a group: makes the leader the server asked first, as far as `stats` tells. The servers are asked once
    /// each, from the current one on; the first to answer wins if it says it leads; otherwise the one that says it
    /// leads with the highest term, else (no leader) the one with the newest map. A server that does not answer
    /// within [`FIND_TIMEOUT`] is passed over.
    async fn find_leader(&mut self) {
        let mut best: Option<(bool, u64, u64, usize)> = None;
        for _ in 0..self.servers.len() {
            let i = self.current;
            let stats = AdminCommand::Server(ServerQuery::Stats).to_line();
            let req = format!("{stats}\r\n");
            if let Ok(Answer::Lines(l)) = self
                .client()
                .call(req.as_bytes(), ReplyKind::Lines, FIND_TIMEOUT)
                .await
            {
                if let Some(st) = group_check::status_of(&l) {
                    let leads = st.role == "leader";
                    let rank = (leads, if leads { st.term } else { 0 }, st.version, i);
                    if leads && best.is_none() {
                        return;
                    }
                    if best.is_none_or(|b| (rank.0, rank.1, rank.2) > (b.0, b.1, b.2)) {
                        best = Some(rank);
                    }
                }
            }
            self.next();
        }
        if let Some((_, _, _, i)) = best {
            self.current = i;
        }
    }

    /// Sends a one-line command to the group (to the single index server as it is), as the module docs say: to the
    /// leader, again to the leader a refusal names, past a server that cannot be reached. A timeout, or any other
    /// answer, is returned as it is.
    async fn line(&mut self, line: &str) -> Result<String, String> {
        let req = format!("{line}\r\n");
        if !self.group() {
            return match self
                .client()
                .call(req.as_bytes(), ReplyKind::Line, CALL_TIMEOUT)
                .await
            {
                Ok(Answer::Line(l)) => Ok(String::from_utf8_lossy(&l).into_owned()),
                Ok(other) => Err(format!("{line}: unexpected {other:?}")),
                Err(e) => Err(format!("{line}: {e}")),
            };
        }
        self.find_leader().await;
        let mut last = String::from("no index server tried");
        for _ in 0..2 * self.servers.len() {
            let to = self.name().to_string();
            match self
                .client()
                .call(req.as_bytes(), ReplyKind::Line, CALL_TIMEOUT)
                .await
            {
                Ok(Answer::Line(l)) => {
                    let answer = String::from_utf8_lossy(&l).into_owned();
                    let named = match not_the_leader(&answer) {
                        None => return Ok(answer),
                        Some(named) => named.filter(|l| *l != format!("{to}:{INDEX_PORT}")),
                    };
                    // Sent again to the leader it names; with none (or itself), to the next server after a pause.
                    if !named.is_some_and(|l| self.point_at(l)) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        self.next();
                    }
                    last = format!("{to}: {answer}");
                }
                Ok(other) => return Err(format!("{line}: unexpected {other:?} from {to}")),
                // Not reached (refused, reset): the next server.
                Err(CallError::Io(e)) => {
                    last = format!("{to}: {:?}", e.kind());
                    self.next();
                }
                Err(e @ CallError::Timeout) => return Err(format!("{line}: {e} ({to})")),
            }
        }
        Err(format!("{line}: no index server took it; last: {last}"))
    }
}

struct Admin {
    s: Scenario,
    env: SharedEnv,
    index: Indexes,
    nodes: BTreeMap<String, TextClient>,
    /// Per index server: the last version and map it showed, and the most partitions a map it showed had.
    last_seen: BTreeMap<String, (u64, MapView, i64)>,
    /// The latest map (of the highest version) the index showed, and its version.
    last_version: u64,
    last_map: MapView,
}

impl Admin {
    fn new(s: &Scenario, env: SharedEnv) -> Self {
        Admin {
            s: s.clone(),
            env,
            index: Indexes::new(s),
            nodes: s
                .nodes()
                .into_iter()
                .map(|n| (n.clone(), TextClient::new(&n, NODE_PORT)))
                .collect(),
            last_seen: BTreeMap::new(),
            last_version: 0,
            last_map: MapView::new(),
        }
    }

    fn key(name: &str) -> String {
        format!("{name}:{NODE_PORT}")
    }

    fn trace(&self, line: String) {
        lock(&self.env).trace(format!("{} admin {line}", now_ms()));
    }

    async fn index_line(&mut self, line: &str) -> Result<String, String> {
        self.index.line(line).await
    }

    async fn command(&mut self, line: &str) -> Result<(), String> {
        let answer = self.index_line(line).await?;
        self.trace(format!("{line} -> {answer}"));
        match answer.as_str() {
            "OK" => Ok(()),
            other => Err(format!("{line}: {other}")),
        }
    }

    async fn listing(client: &mut TextClient, line: &str) -> Result<Vec<Bytes>, String> {
        let req = format!("{line}\r\n");
        match client
            .call(req.as_bytes(), ReplyKind::Lines, CALL_TIMEOUT)
            .await
        {
            Ok(Answer::Lines(l)) => Ok(l),
            Ok(other) => Err(format!("{line}: unexpected {other:?}")),
            Err(e) => Err(format!("{line}: {e}")),
        }
    }

    /// `stats` (the same line on the index and on a node), as name → value.
    async fn stats(client: &mut TextClient) -> Result<BTreeMap<String, String>, String> {
        let stats = AdminCommand::Server(ServerQuery::Stats).to_line();
        let listing = Self::listing(client, &stats).await?;
        Ok(listing
            .iter()
            .filter_map(|l| {
                let (k, v) = lines::stat(l)?;
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                Some((text(k), text(v)))
            })
            .collect())
    }

    /// The index's map and its version (from the leader, with a group; see [`Admin::index_map_of`]).
    async fn index_map(&mut self) -> Result<(u64, MapView), String> {
        self.index_map_of().await.map(|(_, v, m)| (v, m))
    }

    /// The map and version of one index server (the leader when one answers as such, with a group), and which
    /// server it was. They come from two commands (`stats`, `stats nodes`), so the version is read before and after
    /// the map, and the pair kept only when both agree.
    async fn index_map_of(&mut self) -> Result<(String, u64, MapView), String> {
        if self.index.group() {
            self.index.find_leader().await;
        }
        let server = self.index.name().to_string();
        let fail = |e: String| format!("{server}: {e}");
        let mut version = self.index_version().await.map_err(fail)?;
        for _ in 0..5 {
            let stats_nodes = AdminCommand::Index(IndexCommand::Stats(StatsGroup::Nodes));
            let map = parse_stats_nodes(
                &Self::listing(self.index.client(), &stats_nodes.to_line())
                    .await
                    .map_err(fail)?,
            );
            let after = self.index_version().await.map_err(fail)?;
            if after == version {
                return Ok((server, version, map));
            }
            version = after;
        }
        Err(fail("the map keeps changing".into()))
    }

    async fn index_version(&mut self) -> Result<u64, String> {
        let stats = Self::stats(self.index.client()).await?;
        stats
            .get("node_map_version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "no node_map_version".into())
    }

    async fn wait_map(
        &mut self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&MapView) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = String::from("no answer");
        while tokio::time::Instant::now() < deadline {
            match self.index_map().await {
                Ok((_, map)) if ok(&map) => return Ok(()),
                Ok((v, map)) => last = format!("v{v} {}", map_text(&map)),
                Err(e) => last = e,
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!(
            "{what}: not reached in {limit:?}; last map: {last}"
        ))
    }

    async fn wait_node(
        &mut self,
        name: &str,
        what: &str,
        ok: impl Fn(&crate::history::NodeInfo) -> bool,
    ) -> Result<(), String> {
        let key = Self::key(name);
        self.wait_map(&format!("{key} {what}"), Duration::from_secs(20), |m| {
            m.get(&key).is_some_and(&ok)
        })
        .await
    }

    async fn setup(&mut self) -> Result<(), String> {
        let keys: Vec<String> = self.s.nodes().iter().map(|n| Self::key(n)).collect();
        self.wait_map("all nodes registered", Duration::from_secs(30), |m| {
            keys.iter().all(|k| m.contains_key(k))
        })
        .await?;
        for (name, plan) in self.s.layout() {
            let Planned::Master(p) = plan else { continue };
            self.command(&node_role(&name, Role::Master, p)).await?;
            if p > 0 {
                self.wait_node(&name, "ready", |n| n.state == "ready")
                    .await?;
                self.command(&node_active(&name)).await?;
            }
            self.wait_node(&name, "active master", |n| {
                n.role == "master" && n.state == "active"
            })
            .await?;
        }
        if !self.s.slaves_under_load {
            self.add_slaves(true).await?;
        }
        self.trace("cluster built".into());
        Ok(())
    }

    /// Adds every planned slave. `strict`: a refusal or a timeout is an error (setup); otherwise it is traced and
    /// the next slave is tried (under faults, a node may be down).
    async fn add_slaves(&mut self, strict: bool) -> Result<(), String> {
        for (name, plan) in self.s.layout() {
            let Planned::Slave(p) = plan else { continue };
            if !strict && lock(&self.env).phase >= Phase::Calm {
                self.trace("calm phase: no more slaves added under load".into());
                break;
            }
            let added = async {
                self.command(&node_role(&name, Role::Slave, p)).await?;
                self.wait_node(&name, "active slave", |n| {
                    n.role == "slave" && n.state == "active"
                })
                .await?;
                self.command(&node_role(&name, Role::Slave, p)).await?;
                self.wait_node(&name, "read balance", |n| n.balance == 1)
                    .await
            }
            .await;
            match added {
                Ok(()) => {}
                Err(e) if strict => return Err(e),
                Err(e) => self.trace(format!("slave {name} not added: {e}")),
            }
        }
        Ok(())
    }

    /// Adds the new partition with the spare node as its master, as an operator would (cluster.md §6.3): `node role
    /// <n> master 1 <P>` while it is a proxy (again when a fault sent it back to proxy, e.g. its preparation failed
    /// or it went down while preparing), wait while it prepares, `node state <n> active` once it is `ready`, until
    /// it is the active master of P. Gives up (an error) when the run reaches `until` or after the calm limit.
    async fn grow(&mut self, until: Phase) -> Result<(), String> {
        let Some(spare) = self.s.spare() else {
            return Ok(());
        };
        let p = self.s.partitions as i64;
        let key = Self::key(&spare);
        let deadline = tokio::time::Instant::now() + self.s.calm_limit;
        let mut last = String::from("never polled");
        while tokio::time::Instant::now() < deadline && lock(&self.env).phase < until {
            let map = match self.index_map().await {
                Ok((_, map)) => map,
                Err(e) => {
                    last = e;
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let Some(n) = map.get(&key) else {
                last = format!("{spare} not registered");
                tokio::time::sleep(POLL).await;
                continue;
            };
            last = format!("{spare} is {}/{} of {}", n.role, n.state, n.partition);
            let step = match (n.role.as_str(), n.state.as_str()) {
                ("master", "active") if n.partition == p => {
                    self.trace(format!("partition {p} added, master {spare}"));
                    return Ok(());
                }
                ("proxy", "active") => self.command(&node_role(&spare, Role::Master, p)).await,
                ("master", "ready") if n.partition == p => self.command(&node_active(&spare)).await,
                // Preparing, down, or (after a failover it cannot be part of) something unexpected: wait.
                _ => Ok(()),
            };
            if let Err(e) = step {
                self.trace(format!("growth step failed: {e}"));
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!("partition {p} not added: {last}"))
    }

    /// Rebuilds every planned slave that the faults left a proxy, one after the other, as flare-tools' `slave`
    /// command does (cluster.md §6.5): `flush_all` on it (its store is stale), then the slave role.
    async fn rebuild_slaves(&mut self) -> Result<(), String> {
        let (_, map) = self.index_map().await?;
        for (name, plan) in self.s.layout() {
            let Planned::Slave(p) = plan else { continue };
            if map.get(&Self::key(&name)).is_none_or(|n| n.role != "proxy") {
                continue;
            }
            let client = self.nodes.get_mut(&name).ok_or("no such node")?;
            // A connection that opens with `version`, as flare-tools' do: an operator's `flush_all` flushes this
            // node only (a client's would flush the whole cluster).
            client.reset();
            match client
                .call(b"version\r\n", ReplyKind::Line, CALL_TIMEOUT)
                .await
            {
                Ok(Answer::Line(l)) if l.starts_with(b"VERSION") => {}
                other => return Err(format!("version on {name}: {other:?}")),
            }
            match client
                .call(b"flush_all\r\n", ReplyKind::Line, CALL_TIMEOUT)
                .await
            {
                Ok(Answer::Line(l)) if &l[..] == b"OK" => {}
                other => return Err(format!("flush_all on {name}: {other:?}")),
            }
            self.trace(format!(
                "flush_all on {name}: rebuilding it as a slave of partition {p}"
            ));
            self.command(&node_role(&name, Role::Slave, p)).await?;
            self.wait_node(&name, "active slave", |n| {
                n.role == "slave" && n.state == "active"
            })
            .await?;
            self.command(&node_role(&name, Role::Slave, p)).await?;
            self.wait_node(&name, "read balance", |n| n.balance == 1)
                .await?;
        }
        Ok(())
    }

    /// Polls the index while faults run, checking the map's invariants, until the calm phase.
    async fn watch_until_calm(&mut self) {
        loop {
            if lock(&self.env).phase >= Phase::Calm {
                return;
            }
            if let Ok((server, version, map)) = self.index_map_of().await {
                self.check_map(&server, version, map);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Invariants of every map index server `server` shows: its versions never go back (a restarted index resumes
    /// from its snapshot or log), a changed map has a new version, at most one master per partition, no partition
    /// lost, no node forgotten.
    fn check_map(&mut self, server: &str, version: u64, map: MapView) {
        let mut e = lock(&self.env);
        e.hold_map(server, version, map.clone());
        let (last_version, last_map, max_partitions) =
            self.last_seen.get(server).cloned().unwrap_or_default();
        let group = if self.index.group() {
            format!("{server}: ")
        } else {
            String::new()
        };
        if version < last_version {
            e.fail(
                "index map",
                format!("{group}version went back from {last_version} to {version}"),
            );
        }
        if version == last_version && map != last_map && !last_map.is_empty() {
            e.fail(
                "index map",
                format!(
                    "{group}map changed without a new version (v{version}): {}",
                    map_text(&map)
                ),
            );
        }
        let mut masters: BTreeMap<i64, Vec<&String>> = BTreeMap::new();
        for (k, n) in &map {
            if n.role == "master" && matches!(n.state.as_str(), "active" | "down") {
                masters.entry(n.partition).or_default().push(k);
            }
        }
        for (p, m) in &masters {
            if m.len() > 1 {
                e.fail("index map", format!("partition {p} has masters {m:?}"));
            }
        }
        // With a growth, the count goes from `partitions` to `partitions + 1` once, and never back.
        let partitions = masters.len() as i64;
        let allowed = self.s.partitions as i64..=self.s.final_partitions() as i64;
        if !allowed.contains(&partitions)
            || partitions < max_partitions
            || (0..partitions).any(|p| !masters.contains_key(&p))
        {
            e.fail(
                "index map",
                format!(
                    "{group}partitions are not 0..{} (at least {} seen before): v{version} {}",
                    self.s.final_partitions(),
                    max_partitions,
                    map_text(&map)
                ),
            );
        }
        self.last_seen.insert(
            server.to_string(),
            (version, map.clone(), max_partitions.max(partitions)),
        );
        if map.len() != self.s.nodes().len() {
            e.fail(
                "index map",
                format!("{} nodes instead of {}", map.len(), self.s.nodes().len()),
            );
        }
        // The run's sequence of maps: a server that lags behind the one read before shows nothing new.
        if map != self.last_map && version >= self.last_version {
            let seq = e.next_seq();
            e.trace(format!("{} map v{version} {}", now_ms(), map_text(&map)));
            e.maps.push((seq, map.clone()));
            self.last_map = map;
        }
        self.last_version = self.last_version.max(version);
    }

    /// Waits until the cluster converged (see the module docs).
    async fn converge(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.s.calm_limit;
        let mut reason = String::from("never polled");
        while tokio::time::Instant::now() < deadline {
            match self.converged().await {
                Ok(version) => {
                    let mut e = lock(&self.env);
                    let seq = e.next_seq();
                    e.converged_at = Some(seq);
                    e.trace(format!(
                        "{} admin converged on v{version} {}",
                        now_ms(),
                        map_text(&self.last_map)
                    ));
                    return Ok(());
                }
                Err(r) => reason = r,
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!(
            "not converged {:?} after the faults were healed: {reason}",
            self.s.calm_limit
        ))
    }

    async fn converged(&mut self) -> Result<u64, String> {
        let (server, version, map) = self.index_map_of().await?;
        self.check_map(&server, version, map.clone());
        let names = self.s.nodes();
        let nodes = names.iter().map(|n| (n.as_str(), Self::key(n)));
        index_map_converged(&map, nodes, self.s.final_partitions())?;
        for (name, client) in &mut self.nodes {
            let stats = Self::stats(client)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let theirs: u64 = stats
                .get("node_map_version")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let their_map = parse_stats_nodes(&Self::listing(client, "stats nodes").await?);
            let again = Self::stats(client)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            if again.get("node_map_version") == stats.get("node_map_version") {
                lock(&self.env).hold_map(name, theirs, their_map.clone());
            }
            if theirs != version || their_map != map {
                return Err(format!(
                    "{name} holds map v{theirs} ({}), the index v{version}",
                    map_text(&their_map)
                ));
            }
        }
        Ok(version)
    }

    /// Ends the workload and waits for every client to stop.
    async fn stop_clients(&mut self) {
        lock(&self.env).phase = Phase::Stopping;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while lock(&self.env).clients_running > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if lock(&self.env).clients_running > 0 {
            lock(&self.env).fail(
                "clients",
                "workload clients did not stop within 20 s".into(),
            );
        }
    }

    /// Waits for replication to drain, then reads the final state.
    async fn verify(&mut self) -> Result<(), String> {
        lock(&self.env).phase = Phase::Verify;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut busy = Vec::new();
            for (name, client) in &mut self.nodes {
                let stats = Self::stats(client)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                let queue: u64 = stats
                    .get("replication_queue")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if queue > 0 {
                    busy.push(format!("{name}:{queue}"));
                }
            }
            if busy.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "replication did not drain in 15 s (queues {busy:?})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (version, map) = self.index_map().await?;
        let mut state = FinalState {
            map,
            version,
            ..FinalState::default()
        };
        let keys = self.s.all_keys();
        for (name, client) in &mut self.nodes {
            match client
                .call(b"dump\r\n", ReplyKind::Values, Duration::from_secs(5))
                .await
            {
                Ok(a) => match classify(a) {
                    crate::history::Outcome::Values(v) => {
                        state.dumps.insert(name.clone(), v);
                    }
                    other => return Err(format!("dump of {name}: {other:?}")),
                },
                Err(e) => return Err(format!("dump of {name}: {e}")),
            }
            for key in &keys {
                let req = format!("gets {key}\r\n");
                let got = match client
                    .call(req.as_bytes(), ReplyKind::Values, CALL_TIMEOUT)
                    .await
                {
                    Ok(a) => match classify(a) {
                        crate::history::Outcome::Values(mut v) => v.pop(),
                        other => return Err(format!("gets {key} through {name}: {other:?}")),
                    },
                    Err(e) => return Err(format!("gets {key} through {name}: {e}")),
                };
                state.reads.insert((name.clone(), key.clone()), got);
            }
            let req = format!("gets {}\r\n", keys.join(" "));
            match client
                .call(req.as_bytes(), ReplyKind::Values, CALL_TIMEOUT)
                .await
            {
                Ok(a) => match classify(a) {
                    crate::history::Outcome::Values(v) => {
                        state.multi_reads.insert(name.clone(), v);
                    }
                    other => return Err(format!("multi-key gets through {name}: {other:?}")),
                },
                Err(e) => return Err(format!("multi-key gets through {name}: {e}")),
            }
        }
        let (after, _) = self.index_map().await?;
        if after != version {
            return Err(format!(
                "the map changed while the final state was read (v{version} → v{after})"
            ));
        }
        let mut e = lock(&self.env);
        for (name, dump) in &state.dumps {
            let line = format!(
                "{} final {name} {}",
                now_ms(),
                dump.iter()
                    .map(|i| format!("{}/{}/{}/{}", i.key, i.flags, i.version, short(&i.value)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            e.trace(line);
        }
        e.final_state = Some(state);
        Ok(())
    }

    async fn finish(&mut self) {
        if lock(&self.env).phase < Phase::Stopping {
            self.stop_clients().await;
        }
        lock(&self.env).phase = Phase::Done;
    }
}

/// `node role <name> <port> <role> 1 <p>`, as the index reads it.
fn node_role(name: &str, role: Role, p: impl Into<i64>) -> String {
    AdminCommand::Index(IndexCommand::NodeRole {
        node: NodeAddr::new(name, NODE_PORT),
        role,
        balance: 1,
        partition: p.into(),
        epoch: None,
    })
    .to_line()
}

/// `node state <name> <port> active`, as the index reads it.
fn node_active(name: &str) -> String {
    AdminCommand::Index(IndexCommand::NodeState {
        node: NodeAddr::new(name, NODE_PORT),
        state: State::Active,
        epoch: None,
    })
    .to_line()
}
