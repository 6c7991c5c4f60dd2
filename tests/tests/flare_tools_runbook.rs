//! The contract with GREE's Ruby flare-tools (`flare-admin`, `flare-stats`) as an end-to-end test: with the tools'
//! client side and subcommands emulated from the spec ([`flare_tests::flare_tools`]), the test drives a real cluster
//! of `flarei`/`flared` processes through a runbook that touches every item of the server compatibility checklist
//! (admin-tool.md §6, #1–#13), checking that data written before each step is still readable through the cluster
//! afterwards. The runbook runs twice: against one index server, as Flare has it, and against a follower of a Raft
//! group of three index servers (issue 12), which must answer the tools as the single server does (reads from its
//! applied map, map changes forwarded to the leader and the leader's replies relayed); the tools are never pointed
//! at the leader. The emulation's own strictness is tested in `flare_tools_emulation.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flare_tests::flare_tools::admin::{self, Sample};
use flare_tests::flare_tools::tool::{self, Conn};
use flare_tests::{free_port, wait_until, Flared, FLARE_STATS};

/// Where the tools' index server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Indexes {
    /// One index server, as Flare has it.
    One,
    /// A Raft group of three index servers (issue 12), the tools pointed at a follower, which answers reads from
    /// its applied map and forwards map changes to the leader.
    FollowerOfThree,
}

/// Index servers started with these, in both layouts (the same on every member of a group).
const INDEX_ARGS: [&str; 2] = ["--monitor-interval=1", "--key-hash-algorithm=crc32"];
/// Node arguments: a pause after each dumped item (µs) keeps builds slow enough for the progress loop to watch them
/// grow.
const NODE_ARGS: [&str; 1] = ["--reconstruction-interval=1000"];

/// A cluster of real processes: the index server(s) and nodes `n0..n6`, each known by its node key.
struct Cluster {
    indexes: Vec<Flared>,
    /// The index server every tool (and the test's own look at the map) talks to: the only one, or a follower.
    tool: usize,
    nodes: Vec<Flared>,
}

/// `stats` field `name` of the server at `addr` (None when it does not answer).
fn stat_of(addr: &str, name: &str) -> Option<String> {
    let mut c = Conn::open(addr).ok()?;
    let v = c.stat(name).ok();
    let _ = c.close();
    v
}

impl Cluster {
    fn start(layout: Indexes, count: usize) -> Cluster {
        let (indexes, tool) = match layout {
            Indexes::One => (vec![Flared::index(&INDEX_ARGS)], 0),
            Indexes::FollowerOfThree => Self::start_group(3),
        };
        let list = indexes
            .iter()
            .map(Flared::addr)
            .collect::<Vec<_>>()
            .join(",");
        let tool_addr = indexes[tool].addr();
        let nodes = std::thread::scope(|s| {
            let handles: Vec<_> = (0..count)
                .map(|_| {
                    let (list, tool_addr) = (&list, &tool_addr);
                    s.spawn(move || node_of(list, tool_addr))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let c = Cluster {
            indexes,
            tool,
            nodes,
        };
        c.tool_is_follower();
        c
    }

    /// Three index servers in one group, once one leads; returns them and a follower that knows the leader.
    fn start_group(n: usize) -> (Vec<Flared>, usize) {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let list = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let flag = format!("--index-servers={list}");
        let servers: Vec<Flared> = ports
            .iter()
            .map(|p| {
                let mut args = vec![flag.as_str()];
                args.extend_from_slice(&INDEX_ARGS);
                Flared::start_binary("flarei", *p, &args)
            })
            .collect();
        let mut follower = None;
        let found = wait_until(Duration::from_secs(10), || {
            let roles: Vec<(String, String)> = servers
                .iter()
                .map(|s| {
                    let role = stat_of(&s.addr(), "index_role").unwrap_or_default();
                    let leader = stat_of(&s.addr(), "index_leader").unwrap_or_default();
                    (role, leader)
                })
                .collect();
            let leader = roles.iter().position(|(r, _)| r == "leader");
            follower = leader.and_then(|l| {
                let leader_addr = servers[l].addr();
                roles
                    .iter()
                    .position(|(r, knows)| r == "follower" && *knows == leader_addr)
            });
            follower.is_some()
        });
        assert!(
            found,
            "no leader with a follower that knows it among {list}"
        );
        let follower = follower.expect("found");
        eprintln!(
            "index group {list}: the tools use follower {}",
            servers[follower].addr()
        );
        (servers, follower)
    }

    /// In the group, the tools' index server must still be a follower (never the leader), with a leader it knows.
    fn tool_is_follower(&self) {
        if self.indexes.len() == 1 {
            return;
        }
        let addr = self.index_addr();
        let role = stat_of(&addr, "index_role");
        let leader = stat_of(&addr, "index_leader");
        assert_eq!(
            role.as_deref(),
            Some("follower"),
            "the tools' index server {addr} is no longer a follower (leader {leader:?})"
        );
        assert!(
            leader.as_deref().is_some_and(|l| l != "-" && l != addr),
            "{addr} knows no leader: {leader:?}"
        );
    }

    fn index_addr(&self) -> String {
        self.indexes[self.tool].addr()
    }

    fn key(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    fn index_conn(&self) -> Conn {
        Conn::open(&self.index_addr()).expect("connect to the index")
    }

    /// Node `i` in the index's `stats nodes` (None until it has registered).
    fn try_record(&self, i: usize) -> Option<tool::Node> {
        let mut c = self.index_conn();
        let nodes = c.stats_nodes().expect("stats nodes");
        c.close().expect("quit");
        let key = self.key(i);
        nodes.into_iter().find(|n| n.key == key)
    }

    fn record(&self, i: usize) -> tool::Node {
        self.try_record(i)
            .unwrap_or_else(|| panic!("n{i} ({}) not in stats nodes", self.key(i)))
    }

    /// Polls the index until node `i` is `role`/`state`; returns how long that took.
    fn wait_for(&self, i: usize, role: &str, state: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let r = self.try_record(i).unwrap_or_default();
            if r.get("role") == role && r.get("state") == state {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "n{i} is {}/{}, not {role}/{state} after {limit:?}",
                r.get("role"),
                r.get("state")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running node holds the index's node map (pushes are asynchronous). The tool never needs
    /// this; the test's own reads and writes through a proxy do.
    /// In the group, the version waited for is the newest any index server has applied (the leader's): the tools'
    /// follower may trail it for a moment, and the nodes get the leader's pushes.
    fn converged(&self, running: &[usize]) {
        self.tool_is_follower();
        let want = self
            .indexes
            .iter()
            .map(|s| {
                stat_of(&s.addr(), "node_map_version")
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("node_map_version of an index server")
            })
            .max()
            .expect("an index server")
            .to_string();
        for &i in running {
            let ok = flare_tests::wait_until(Duration::from_secs(10), || {
                let mut c = Conn::open(&self.key(i)).expect("connect");
                c.stat("node_map_version").expect("stat") == want
            });
            assert!(ok, "n{i} did not get node map {want}");
        }
    }
}

/// A node with index servers `list`, once the tools' index server `tool` lists it in `stats nodes`.
fn node_of(list: &str, tool: &str) -> Flared {
    let flag = format!("--index-servers={list}");
    let mut args = vec![flag.as_str()];
    args.extend_from_slice(&NODE_ARGS);
    let node = Flared::start_binary("flared", free_port(), &args);
    // Its port opens before it has registered (the index may call it back while it registers).
    let key = node.addr();
    let registered = wait_until(Duration::from_secs(20), || {
        Conn::open(tool)
            .and_then(|mut c| c.stats_nodes())
            .is_ok_and(|nodes| nodes.iter().any(|n| n.key == key))
    });
    assert!(registered, "{key} did not register\n{}", node.log());
    node
}

/// Writes `count` keys `<prefix>:<i>` through node `via` with the tool's generic reader (`set` → `STORED`).
fn write_batch(c: &Cluster, via: usize, prefix: &str, count: usize) -> BTreeMap<String, Vec<u8>> {
    let mut conn = Conn::open(&c.key(via)).expect("connect");
    let mut written = BTreeMap::new();
    for i in 0..count {
        let key = format!("{prefix}:{i}");
        let value = format!("value of {key}").into_bytes();
        let line = conn
            .request_terminator(&format!("set {key} {i} 0 {}", value.len()), Some(&value))
            .unwrap_or_else(|e| panic!("set {key} via n{via}: {e:?}"));
        assert_eq!(line, "STORED", "set {key}");
        written.insert(key, value);
    }
    conn.close().expect("quit");
    written
}

/// Reads every key back through node `via` with `get` (item stream, 50 keys per request).
fn read_back(c: &Cluster, via: usize, data: &BTreeMap<String, Vec<u8>>, step: &str) {
    let mut conn = Conn::open(&c.key(via)).expect("connect");
    let keys: Vec<&String> = data.keys().collect();
    for chunk in keys.chunks(50) {
        let cmd = format!(
            "get {}",
            chunk
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let items = conn
            .items(&cmd)
            .unwrap_or_else(|e| panic!("after {step}: {e:?}"));
        let got: BTreeMap<&str, &[u8]> = items
            .iter()
            .map(|it| (it.key.as_str(), it.data.as_slice()))
            .collect();
        for k in chunk {
            assert_eq!(
                got.get(k.as_str()).copied(),
                Some(data[*k].as_slice()),
                "after {step}: {k} through n{via}"
            );
        }
    }
    conn.close().expect("quit");
}

/// Checks a slave build's progress (#11): it starts in prepare, curr_items only grows and passes through values
/// between empty and full, and it ends slave/active with the master's item count.
fn assert_build_progress(what: &str, samples: &[Sample]) {
    assert!(!samples.is_empty(), "{what}: no progress");
    assert_eq!(
        (samples[0].role.as_str(), samples[0].state.as_str()),
        ("slave", "prepare"),
        "{what}: the build starts in prepare: {samples:?}"
    );
    for w in samples.windows(2) {
        assert!(
            w[1].slave_items >= w[0].slave_items,
            "{what}: slave curr_items went down: {samples:?}"
        );
        assert!(
            w[0].role == "slave" && w[0].state == "prepare",
            "{what}: role/state before the end must stay slave/prepare: {samples:?}"
        );
    }
    let last = samples.last().expect("not empty");
    assert_eq!(
        (last.role.as_str(), last.state.as_str()),
        ("slave", "active")
    );
    assert!(
        last.master_items > 0 && last.slave_items == last.master_items,
        "{what}: ends with the master's items: {last:?}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.state == "prepare" && s.slave_items > 0 && s.slave_items < s.master_items),
        "{what}: curr_items must be seen growing during prepare: {samples:?}"
    );
}

/// Checks `stats` field names and order (#5) on one server.
fn assert_flare_stats(addr: &str) {
    let mut c = Conn::open(addr).expect("connect");
    let stats = c.stats().expect("stats");
    c.close().expect("quit");
    let names: Vec<&str> = stats.iter().map(|(k, _)| k.as_str()).take(35).collect();
    assert_eq!(
        names, FLARE_STATS,
        "{addr}: Flare's stats fields in Flare's order"
    );
    for (k, v) in &stats[..35] {
        assert!(
            !v.is_empty() && !v.contains(' '),
            "{addr}: stats {k} = {v:?}"
        );
    }
}

/// Checks the exact `stats nodes` layout (#4): five lines per node in order, node keys sorted, names without `:`.
fn assert_stats_nodes_format(index: &str) {
    let mut c = Conn::open(index).expect("connect");
    let raw = c.stats_nodes_raw().expect("stats nodes");
    c.close().expect("quit");
    assert_eq!(raw.len() % 5, 0, "five lines per node: {raw:?}");
    let mut keys = Vec::new();
    for chunk in raw.chunks(5) {
        let fields: Vec<&str> = chunk.iter().map(|(_, _, f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["role", "state", "partition", "balance", "thread_type"]
        );
        let (name, port) = (&chunk[0].0, &chunk[0].1);
        assert!(chunk.iter().all(|(n, p, _, _)| n == name && p == port));
        assert!(
            port.parse::<u16>().is_ok(),
            "the name has no ':': {chunk:?}"
        );
        let (role, state) = (&chunk[0].3, &chunk[1].3);
        assert!(
            ["master", "slave", "proxy"].contains(&role.as_str()),
            "{chunk:?}"
        );
        assert!(
            ["active", "prepare", "down", "ready"].contains(&state.as_str()),
            "{chunk:?}"
        );
        for (_, _, f, v) in &chunk[2..] {
            assert!(v.parse::<i64>().is_ok(), "{f} {v}");
        }
        keys.push(format!("{name}:{port}"));
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "stats nodes is in node-key order");
}

/// Key → partition under a partition count with the `meta` parameters, computed with flare-core's resolver (the
/// tool has its own, correct only for crc32).
fn resolver(meta: &BTreeMap<String, String>) -> admin::PartitionOf {
    use flare_core::keys::{HashAlgorithm, PartitionParams, Resolver};
    let n = |k: &str| meta[k].parse::<u32>().expect("meta value is a number");
    let params = PartitionParams {
        partition_size: n("partition-size"),
        virtual_slots: n("partition-modular-virtual"),
        hint: n("partition-modular-hint"),
        hash: HashAlgorithm::parse(&meta["key-hash-algorithm"]).expect("known algorithm"),
    };
    let r = Resolver::new(params).expect("meta parameters are valid");
    Box::new(move |key, count| {
        r.partition(key.as_bytes(), count as u32)
            .map_or(-1, i64::from)
    })
}

/// `verify --meta` (#9, #13): the `meta` format, and every master and slave dumps exactly its partition's keys, with
/// `dump` and `dump_key` agreeing, masters and slaves of a partition holding the same keys, and every written key
/// dumped by its partition.
fn verify(c: &Cluster, data: &BTreeMap<String, Vec<u8>>) {
    let mut i = c.index_conn();
    let meta = i.meta().expect("meta");
    i.close().expect("quit");
    let names: Vec<&str> = meta.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "partition-size",
            "key-hash-algorithm",
            "partition-type",
            "partition-modular-hint",
            "partition-modular-virtual"
        ],
        "meta lines (protocol.md §6)"
    );
    assert_eq!(meta[1].1, "crc32");
    assert_eq!(meta[2].1, "modular");
    let (_, verified) = admin::verify(&c.index_addr(), &resolver).expect("verify");
    let mut by_partition: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for v in &verified {
        assert!(
            v.misplaced.is_empty(),
            "{}: keys of other partitions {:?}",
            v.key,
            v.misplaced
        );
        let keydump: BTreeSet<String> = v.keydump.iter().cloned().collect();
        let dump: BTreeSet<String> = v.dump.iter().cloned().collect();
        assert_eq!(
            keydump.len(),
            v.keydump.len(),
            "{}: dump_key lists each key once",
            v.key
        );
        assert_eq!(
            keydump, dump,
            "{}: dump and dump_key list the same keys",
            v.key
        );
        if let Some(other) = by_partition.get(&v.partition) {
            assert_eq!(other, &dump, "{}: a slave holds its master's keys", v.key);
        }
        by_partition.insert(v.partition, dump);
    }
    let mut all = BTreeSet::new();
    for keys in by_partition.values() {
        assert!(keys.is_disjoint(&all), "partitions share keys");
        all.extend(keys.iter().cloned());
    }
    let written: BTreeSet<String> = data.keys().cloned().collect();
    assert_eq!(
        all, written,
        "the partitions' dumps hold exactly the written keys"
    );
}

/// One variant at a time: each is a dozen processes and timing-sensitive progress checks on a small machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn flare_admin_runbook_against_a_real_cluster() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    runbook(Indexes::One);
}

/// The same runbook with three index servers (issue 12), every tool pointed at a follower: its reads come from the
/// follower's applied map, its map changes are forwarded to the leader and the leader's replies relayed.
#[test]
fn flare_admin_runbook_against_a_follower_of_three_index_servers() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    runbook(Indexes::FollowerOfThree);
}

fn runbook(layout: Indexes) {
    let started = Instant::now();
    // n0: master 0, n1 and n4: slaves 0, n2: master 1, n3: slave 1, n5: proxy for client traffic, n6: proxy that is
    // set down, comes back, and is removed.
    let mut c = Cluster::start(layout, 7);
    let index = c.index_addr();
    let all: Vec<usize> = (0..7).collect();
    for i in 0..7 {
        c.wait_for(i, "proxy", "active", Duration::from_secs(20));
    }

    // #1: the handshake on the index and every node: a Flare-like name and a version past both gates. `ping`.
    let mut servers = vec![index.clone()];
    servers.extend((0..7).map(|i| c.key(i)));
    for addr in &servers {
        let conn = Conn::open(addr).expect("connect");
        assert_eq!(conn.version.name, "flare", "{addr}");
        assert!(
            conn.version.at_least(&[1, 0, 10]),
            "{addr}: {:?}",
            conn.version
        );
        assert!(
            conn.version.at_least(&[1, 3, 1]),
            "{addr}: {:?}",
            conn.version
        );
        conn.close().expect("quit");
    }
    admin::ping(&servers).expect("ping: alive");

    // #4, #5 on the fresh cluster, and `list`.
    assert_stats_nodes_format(&index);
    for addr in &servers {
        assert_flare_stats(addr);
    }
    let table = admin::list(&index).expect("list");
    assert_eq!(table.len(), 8);
    assert_eq!(
        table[0],
        "node                             partition   role  state balance"
    );
    let mut keys: Vec<String> = (0..7).map(|i| c.key(i)).collect();
    keys.sort();
    for (row, key) in table[1..].iter().zip(&keys) {
        assert_eq!(
            row,
            &format!(
                "{key:<32} {:>9} {:>6} {:>6} {:>7}",
                "-", "proxy", "active", "0"
            )
        );
    }
    let (version_at_start, _) = admin::index(&index, 0).expect("index");

    // #8, #12: `master --activate` of partition 0 stops at active at once.
    let run = admin::master(&index, &c.key(0), 1, 0, true).expect("master n0");
    assert_eq!(run.stopped_at, "active", "{run:?}");
    run.progress.iter().for_each(|l| eprintln!("{l}"));
    c.wait_for(0, "master", "active", Duration::from_secs(1));
    c.converged(&all);
    let mut data = write_batch(&c, 5, "a", 1000);

    // #11: `slave` builds while the index shows prepare and curr_items grows, then the balance is set.
    let samples = admin::slave(&index, &c.key(1), 1, 0).expect("slave n1");
    assert_build_progress("slave n1", &samples);
    assert_eq!(c.record(1).balance(), 1);
    let samples = admin::slave(&index, &c.key(4), 1, 0).expect("slave n4");
    assert_build_progress("slave n4", &samples);
    read_back(&c, 5, &data, "slaves of partition 0");

    // #12: `master` of partition 1 stops at ready (not active); `--activate` then activates it.
    let run = admin::master(&index, &c.key(2), 1, 1, true).expect("master n2");
    assert_eq!(run.stopped_at, "ready", "{run:?}");
    run.progress.iter().for_each(|l| eprintln!("{l}"));
    c.wait_for(2, "master", "active", Duration::from_secs(5));
    c.converged(&all);
    read_back(&c, 5, &data, "partition 1");
    data.extend(write_batch(&c, 5, "b", 500));
    let samples = admin::slave(&index, &c.key(3), 1, 1).expect("slave n3");
    assert_build_progress("slave n3", &samples);
    read_back(&c, 5, &data, "slave of partition 1");

    // `balance`: node role with the current role and partition.
    admin::balance(&index, &c.key(1), 2).expect("balance n1");
    assert_eq!(c.record(1).balance(), 2);
    c.converged(&all);
    read_back(&c, 5, &data, "balance");

    let table = admin::list(&index).expect("list");
    // (partition, proxies last; role; key) is the tool's order.
    let mut want = [
        (0, "master", 0, "1"),
        (0, "slave", 1, "2"),
        (0, "slave", 4, "1"),
        (1, "master", 2, "1"),
        (1, "slave", 3, "1"),
        (i64::MAX, "proxy", 5, "0"),
        (i64::MAX, "proxy", 6, "0"),
    ]
    .map(|(p, role, i, b)| (p, role, c.key(i), b));
    want.sort();
    let want: Vec<String> = want
        .iter()
        .map(|(p, role, key, b)| {
            let p = if *p == i64::MAX {
                "-".to_string()
            } else {
                p.to_string()
            };
            format!("{key:<32} {p:>9} {role:>6} {:>6} {b:>7}", "active")
        })
        .collect();
    assert_eq!(table[1..], want);
    assert_stats_nodes_format(&index);

    // `stats --qps` (flare-stats), #5, #6: columns from node stats, behind from the index's monitor threads.
    let mut reads = || read_back(&c, 5, &data, "stats");
    let rows = admin::stats(&index, Duration::from_secs(1), &mut reads).expect("stats");
    assert_eq!(rows.len(), 7);
    for r in &rows {
        eprintln!("{}", r.join(" "));
        assert!(
            r[7].parse::<u64>().is_ok(),
            "behind of {} from the index's stats threads: {r:?}",
            r[0]
        );
        assert_eq!(r[11], flare_core::VERSION, "{r:?}");
    }
    let proxy_row = rows.iter().find(|r| r[0] == c.key(5)).expect("n5 row");
    assert!(
        proxy_row[13] != "-",
        "reads through n5 show as qps-r: {proxy_row:?}"
    );
    let master_row = rows.iter().find(|r| r[0] == c.key(0)).expect("n0 row");
    assert!(master_row[5].parse::<u64>().unwrap() > 0, "{master_row:?}");
    let (masters, slaves, _, items) = admin::summary(&index).expect("summary");
    assert_eq!((masters, slaves, items), (2, 3, data.len() as u64));

    // #6: `threads` on the index (one monitor per node, peer = node key) and on a node.
    for addr in [&index, &c.key(0)] {
        let table = admin::threads(addr).expect("threads");
        assert_eq!(
            table[0],
            "   id peer                             operation     type    queue"
        );
        for r in &table {
            eprintln!("{r}");
        }
    }
    let mut i = c.index_conn();
    let threads = i.stats_threads().expect("stats threads");
    i.close().expect("quit");
    for n in 0..7 {
        let monitors: Vec<_> = threads.values().filter(|t| t["peer"] == c.key(n)).collect();
        assert_eq!(monitors.len(), 1, "one index thread for n{n}: {threads:?}");
        assert!(monitors[0]["behind"].parse::<u64>().is_ok());
        assert!(monitors[0]["type"].parse::<u32>().unwrap() >= 16);
    }

    // #9: `dump` (with a bandwidth limit, and `--raw`) and `dumpkey`, then `verify --meta` (#13).
    let (items, lines) = admin::dump(&index, &c.key(2), 8 * 1024 * 1024).expect("dump n2");
    assert!(!items.is_empty());
    for it in &items {
        assert!(
            it.version.is_some() && it.expire == Some(0),
            "dump lines carry version and expire: {it:?}"
        );
        assert_eq!(Some(&it.data), data.get(&it.key), "{}", it.key);
    }
    assert!(lines[0].ends_with('\''), "{}", lines[0]);
    let mut n0 = Conn::open(&c.key(0)).expect("connect");
    let raw = n0.items("dump 0 0 1 0").expect("dump --raw");
    let plain = n0.keys("dump_key").expect("dump_key");
    n0.close().expect("quit");
    assert_eq!(
        raw.len(),
        plain.len(),
        "dump_key without a partition lists what dump 0 0 1 does"
    );
    let keys = admin::dumpkey(&c.key(3), 1, 2).expect("dumpkey n3");
    assert_eq!(
        keys.into_iter().collect::<BTreeSet<_>>(),
        items
            .iter()
            .map(|it| it.key.clone())
            .collect::<BTreeSet<_>>(),
        "the slave of partition 1 lists its master's keys"
    );
    verify(&c, &data);
    // `verify --use-test-data`: `set .test.<hash>` through a node, later `delete`.
    let mut n5 = Conn::open(&c.key(5)).expect("connect");
    for i in 0..20 {
        let key = format!(
            ".test.{:032x}",
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let set = n5.request_terminator(&format!("set {key} 0 0 4"), Some(b"test"));
        assert_eq!(
            set.as_deref().ok(),
            Some("STORED"),
            "{set:?}\n{}",
            c.nodes[5].log()
        );
        let delete = n5.request_terminator(&format!("delete {key}"), None);
        assert_eq!(
            delete.as_deref().ok(),
            Some("DELETED"),
            "{delete:?}\n{}",
            c.nodes[5].log()
        );
    }
    n5.close().expect("quit");

    // #7, #10: `down` of a live proxy: it comes back as proxy/active within about one monitor interval.
    let (version_before_down, _) = admin::index(&index, 0).expect("index");
    admin::down(&index, &c.key(6)).expect("down n6");
    let back = c.wait_for(6, "proxy", "active", Duration::from_secs(3));
    let (version_after_down, _) = admin::index(&index, 1).expect("index");
    assert!(
        version_after_down >= version_before_down + 2,
        "down, then up: {version_before_down} -> {version_after_down}"
    );
    eprintln!("n6 back as proxy/active after {back:?}");
    c.converged(&all);
    read_back(&c, 6, &data, "down");

    // #8, #10, #11: `reconstruct` of a slave. It is safe (n4 is another active slave); n3 is not.
    let mut i = c.index_conn();
    let nodes = i.stats_nodes().expect("stats nodes");
    i.close().expect("quit");
    assert_eq!(admin::reconstruct_refusal(&nodes, &c.key(1)), None);
    assert_eq!(
        admin::reconstruct_refusal(&nodes, &c.key(3)),
        Some(format!(
            "The partition needs one more slave to reconstruct {} safely.",
            c.key(3)
        ))
    );
    let run = admin::reconstruct(&index, &c.key(1)).expect("reconstruct n1");
    assert_eq!(
        (run.after_sleep.get("role"), run.after_sleep.get("state")),
        ("proxy", "active"),
        "back as proxy/active within the tool's 3 s sleep: {run:?}"
    );
    assert_eq!(run.role_attempts, 1, "{run:?}");
    assert!(
        run.items_before_flush > 0 && run.items_after_flush == 0,
        "{run:?}"
    );
    for (k, before, after) in &run.others_around_flush {
        assert_eq!(before, after, "flush_all on n1 changed {k}");
    }
    assert_build_progress("reconstruct n1", &run.samples);
    assert_eq!(c.record(1).get("role"), "slave");
    assert_eq!(c.record(1).balance(), 2, "the old balance is restored");
    c.converged(&all);
    read_back(&c, 5, &data, "reconstruct");
    data.extend(write_batch(&c, 5, "c", 200));
    read_back(&c, 1, &data, "writes after reconstruct");

    // #7: `remove` of a proxy that is down (stopped gracefully).
    let (status, _) = c.nodes[6].terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "n6 stops cleanly");
    let gone_key = c.key(6);
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        let mut i = c.index_conn();
        let nodes = i.stats_nodes().expect("stats nodes");
        i.close().expect("quit");
        let n = nodes.iter().find(|n| n.key == gone_key).expect("listed");
        if n.get("state") == "down" {
            assert_eq!(n.get("role"), "proxy");
            break;
        }
        assert!(Instant::now() < limit, "{gone_key} not down: {n:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    admin::remove(&index, &gone_key).expect("remove n6");
    let mut i = c.index_conn();
    let nodes = i.stats_nodes().expect("stats nodes");
    let threads = i.stats_threads().expect("stats threads");
    i.close().expect("quit");
    assert!(nodes.iter().all(|n| n.key != gone_key), "{nodes:?}");
    assert!(
        threads.values().all(|t| t["peer"] != gone_key),
        "its monitor stopped: {threads:?}"
    );
    let running: Vec<usize> = (0..6).collect();
    c.converged(&running);
    read_back(&c, 5, &data, "remove");
    verify(&c, &data);
    let (version_at_end, xml) = admin::index(&index, 1).expect("index");
    assert!(
        version_at_end > version_at_start,
        "{version_at_start} -> {version_at_end}"
    );
    assert!(
        xml.starts_with(&format!("<version>{}</version>", version_at_end + 1)),
        "{xml}"
    );
    assert_stats_nodes_format(&index);
    for addr in std::iter::once(index.clone()).chain(running.iter().map(|&i| c.key(i))) {
        assert_flare_stats(&addr);
    }
    c.tool_is_follower();
    eprintln!("runbook ({layout:?}) took {:?}", started.elapsed());
}
