//! The subcommands of `flare-admin`/`flare-stats`, with the command sequences of admin-tool.md §4 and the progress
//! loop of §5. Prompts are answered "yes"; the safety checks the tool makes without `--force` are kept.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::tool::{Conn, Failure, Item, Node, Result};

/// How often the progress loops poll (the tool polls once per second; the test is in a hurry).
const POLL: Duration = Duration::from_millis(100);
/// Not the tool's (it waits forever): a build that takes longer fails the test.
const BUILD_GUARD: Duration = Duration::from_secs(30);
/// `--retry` default of `master`, `slave` and `reconstruct`.
const RETRY: u32 = 10;

/// `name port` of a node key, as the commands take it.
fn name_port(key: &str) -> String {
    let (h, p) = key.rsplit_once(':').expect("node key is name:port");
    format!("{h} {p}")
}

fn find<'a>(nodes: &'a [Node], key: &str) -> Result<&'a Node> {
    nodes
        .iter()
        .find(|n| n.key == key)
        .ok_or_else(|| Failure::Malformed(format!("{key} is not in stats nodes")))
}

fn items_of(key: &str) -> Result<u64> {
    let mut n = Conn::open(key)?;
    let v = n.stat("curr_items")?;
    n.close()?;
    v.parse()
        .map_err(|_| Failure::Malformed(format!("curr_items {v}")))
}

/// Sends a map-changing command, retrying with sleeps of 1, 2, … s as the tool does; returns the attempts used.
fn retried(index: &mut Conn, cmd: &str) -> Result<u32> {
    let mut attempt = 1;
    loop {
        match index.request(cmd) {
            Ok(_) => return Ok(attempt),
            Err(e) if attempt >= RETRY => return Err(e),
            Err(e) => {
                eprintln!("{cmd}: {e}, retrying");
                std::thread::sleep(Duration::from_secs(attempt.into()));
                attempt += 1;
            }
        }
    }
}

/// `list`: `stats nodes` as the tool's table (sorted by partition with proxies last, then role, then key).
pub fn list(index: &str) -> Result<Vec<String>> {
    let mut i = Conn::open(index)?;
    let mut nodes = i.stats_nodes()?;
    i.close()?;
    nodes.sort_by_key(|n| {
        let p = n.partition();
        (p < 0, p, n.get("role").to_string(), n.key.clone())
    });
    let mut out = vec![format!(
        "{:<32} {:>9} {:>6} {:>6} {:>7}",
        "node", "partition", "role", "state", "balance"
    )];
    for n in &nodes {
        let p = if n.partition() < 0 {
            "-".to_string()
        } else {
            n.partition().to_string()
        };
        out.push(format!(
            "{:<32} {:>9} {:>6} {:>6} {:>7}",
            n.key,
            p,
            n.get("role"),
            n.get("state"),
            n.get("balance")
        ));
    }
    Ok(out)
}

/// `ping host:port ...`: `version`, then `ping` expecting `OK`.
pub fn ping(addrs: &[String]) -> Result<()> {
    for a in addrs {
        let mut c = Conn::open(a)?;
        c.request("ping")?;
        c.close()?;
    }
    Ok(())
}

/// What a `master` run saw.
#[derive(Debug)]
pub struct MasterRun {
    /// State at which the progress loop stopped.
    pub stopped_at: String,
    /// Progress lines (§5).
    pub progress: Vec<String>,
}

/// `master host:port:B:P [--activate]`.
pub fn master(
    index: &str,
    key: &str,
    balance: i64,
    partition: i64,
    activate: bool,
) -> Result<MasterRun> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    let node = find(&nodes, key)?;
    // Skipped (without --force) unless the node is a proxy and the partition has no master.
    if node.get("role") != "proxy" {
        return Err(Failure::Malformed(format!("{key} is not a proxy")));
    }
    if nodes
        .iter()
        .any(|n| n.get("role") == "master" && n.partition() == partition)
    {
        return Err(Failure::Malformed(format!(
            "partition {partition} has a master"
        )));
    }
    let mut n = Conn::open(key)?;
    n.request("flush_all")?;
    retried(
        &mut i,
        &format!("node role {} master {balance} {partition}", name_port(key)),
    )?;
    let started = Instant::now();
    let mut progress = Vec::new();
    let stopped_at = loop {
        let nodes = i.stats_nodes()?;
        let me = find(&nodes, key)?;
        let items = n.stat("curr_items")?;
        let (role, state) = (me.get("role").to_string(), me.get("state").to_string());
        progress.push(format!(
            "{items} (role = {role}, state = {state}) [ETA: n/a sec (elapsed = {} sec)]",
            started.elapsed().as_secs()
        ));
        if (role == "master" && state == "ready") || state == "active" {
            break state;
        }
        if started.elapsed() > BUILD_GUARD {
            return Err(Failure::Timeout(format!("master build: {progress:?}")));
        }
        std::thread::sleep(POLL);
    };
    if partition != 0 && stopped_at == "active" {
        eprintln!("master of partition {partition} should have become ready, not active");
    }
    if activate {
        i.request(&format!("node state {} active", name_port(key)))?;
    }
    n.close()?;
    i.close()?;
    Ok(MasterRun {
        stopped_at,
        progress,
    })
}

/// One sample of the slave-build progress loop (§5).
#[derive(Clone, Debug)]
pub struct Sample {
    /// Slave `curr_items`.
    pub slave_items: u64,
    /// Master `curr_items`.
    pub master_items: u64,
    /// Slave role in index `stats nodes`.
    pub role: String,
    /// Slave state in index `stats nodes`.
    pub state: String,
}

/// The slave-build progress loop: I: `stats nodes`, N(master): `stats`, N(slave): `stats`, until the slave
/// is `slave`/`active`.
fn slave_progress(i: &mut Conn, key: &str, partition: i64) -> Result<Vec<Sample>> {
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        let nodes = i.stats_nodes()?;
        let me = find(&nodes, key)?.clone();
        let master = nodes
            .iter()
            .find(|n| n.get("role") == "master" && n.partition() == partition)
            .ok_or_else(|| Failure::Malformed(format!("partition {partition} has no master")))?;
        let master_items = items_of(&master.key)?;
        let slave_items = items_of(key)?;
        let elapsed = started.elapsed().as_secs();
        let eta = if elapsed == 0 || slave_items == 0 {
            "n/a".to_string()
        } else {
            (master_items.saturating_sub(slave_items) / (slave_items / elapsed).max(1)).to_string()
        };
        eprintln!(
            "{slave_items}/{master_items} (role = {}, state = {}) [ETA: {eta} sec (elapsed = {elapsed} sec)]",
            me.get("role"),
            me.get("state")
        );
        let s = Sample {
            slave_items,
            master_items,
            role: me.get("role").into(),
            state: me.get("state").into(),
        };
        let done = s.role == "slave" && s.state == "active";
        samples.push(s);
        if done {
            eprintln!("state is active -> stop waiting");
            return Ok(samples);
        }
        if started.elapsed() > BUILD_GUARD {
            return Err(Failure::Timeout(format!("slave build: {samples:?}")));
        }
        std::thread::sleep(POLL);
    }
}

/// `slave host:port:B:P`: returns the progress samples.
pub fn slave(index: &str, key: &str, balance: i64, partition: i64) -> Result<Vec<Sample>> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    if find(&nodes, key)?.get("role") != "proxy" {
        return Err(Failure::Malformed(format!("{key} is not a proxy.")));
    }
    let mut n = Conn::open(key)?;
    n.request("flush_all")?;
    n.close()?;
    retried(
        &mut i,
        &format!("node role {} slave 0 {partition}", name_port(key)),
    )?;
    eprintln!("started constructing slave node...");
    let samples = slave_progress(&mut i, key, partition)?;
    if balance > 0 {
        i.request(&format!(
            "node role {} slave {balance} {partition}",
            name_port(key)
        ))?;
    }
    i.close()?;
    Ok(samples)
}

/// `balance host:port:B`: `node role <h> <p> <current role> <B> <current partition>`.
pub fn balance(index: &str, key: &str, balance: i64) -> Result<()> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    let n = find(&nodes, key)?;
    i.request(&format!(
        "node role {} {} {balance} {}",
        name_port(key),
        n.get("role"),
        n.partition()
    ))?;
    i.close()
}

/// `down host:port`.
pub fn down(index: &str, key: &str) -> Result<()> {
    let mut i = Conn::open(index)?;
    find(&i.stats_nodes()?, key)?;
    i.request(&format!("node state {} down", name_port(key)))?;
    i.close()
}

/// Why `reconstruct` (without `--unsafe`) refuses a node, or None when it goes ahead.
pub fn reconstruct_refusal(nodes: &[Node], key: &str) -> Option<String> {
    let me = nodes.iter().find(|n| n.key == key)?;
    let active_slaves = nodes
        .iter()
        .filter(|n| {
            n.key != key
                && n.get("role") == "slave"
                && n.get("state") == "active"
                && n.partition() == me.partition()
        })
        .count();
    let reconstructable = me.get("state") == "active"
        && (me.get("role") == "slave" || (me.get("role") == "master" && active_slaves >= 1));
    if !reconstructable {
        return Some(format!("{key} is not reconstructable"));
    }
    let safe = if me.get("role") == "slave" {
        active_slaves >= 1
    } else {
        active_slaves >= 2
    };
    (!safe).then(|| format!("The partition needs one more slave to reconstruct {key} safely."))
}

/// What a `reconstruct` run saw.
#[derive(Debug)]
pub struct ReconstructRun {
    /// The node's `stats nodes` record after the 3 s sleep.
    pub after_sleep: Node,
    /// `curr_items` of the node before and after its `flush_all`.
    pub items_before_flush: u64,
    /// See above.
    pub items_after_flush: u64,
    /// `curr_items` of every other node before and after the `flush_all`.
    pub others_around_flush: Vec<(String, u64, u64)>,
    /// Attempts `node role ... slave 0 P` needed.
    pub role_attempts: u32,
    /// Progress samples.
    pub samples: Vec<Sample>,
}

/// `reconstruct host:port`.
pub fn reconstruct(index: &str, key: &str) -> Result<ReconstructRun> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    if let Some(why) = reconstruct_refusal(&nodes, key) {
        return Err(Failure::Malformed(why));
    }
    let me = find(&nodes, key)?.clone();
    let (partition, old_balance) = (me.partition(), me.balance());
    let others: Vec<String> = nodes
        .iter()
        .filter(|n| n.key != key && n.get("state") != "down")
        .map(|n| n.key.clone())
        .collect();
    eprintln!("turning down...");
    i.request(&format!("node state {} down", name_port(key)))?;
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("waiting for node to be active again...");
    let after_sleep = find(&i.stats_nodes()?, key)?.clone();
    let before: Vec<u64> = others.iter().map(|k| items_of(k)).collect::<Result<_>>()?;
    let items_before_flush = items_of(key)?;
    let mut n = Conn::open(key)?;
    n.request("flush_all")?;
    n.close()?;
    let items_after_flush = items_of(key)?;
    let after: Vec<u64> = others.iter().map(|k| items_of(k)).collect::<Result<_>>()?;
    let role_attempts = retried(
        &mut i,
        &format!("node role {} slave 0 {partition}", name_port(key)),
    )?;
    eprintln!("started constructing node...");
    let samples = slave_progress(&mut i, key, partition)?;
    i.request(&format!(
        "node role {} slave {old_balance} {partition}",
        name_port(key)
    ))?;
    eprintln!("done.");
    i.close()?;
    Ok(ReconstructRun {
        after_sleep,
        items_before_flush,
        items_after_flush,
        others_around_flush: others
            .into_iter()
            .zip(before.into_iter().zip(after))
            .map(|(k, (b, a))| (k, b, a))
            .collect(),
        role_attempts,
        samples,
    })
}

/// `remove host:port`: only a proxy that is down.
pub fn remove(index: &str, key: &str) -> Result<()> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    let n = find(&nodes, key)?;
    if n.get("role") != "proxy" || n.get("state") != "down" {
        return Err(Failure::Malformed(format!(
            "{key} is {}/{}, not a down proxy",
            n.get("role"),
            n.get("state")
        )));
    }
    i.request(&format!("node remove {}", name_port(key)))?;
    i.close()
}

/// Partition count as `dump` computes it: highest partition in `stats nodes` + 1.
pub fn partition_count(nodes: &[Node]) -> i64 {
    nodes.iter().map(Node::partition).max().unwrap_or(-1) + 1
}

/// `dump host:port --bwlimit=<bits/s>`: `dump 0 <P> <Pcount> <kBps>`, and the `default` format's lines.
pub fn dump(index: &str, key: &str, bwlimit_bits: u64) -> Result<(Vec<Item>, Vec<String>)> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    i.close()?;
    let p = find(&nodes, key)?.partition();
    let mut n = Conn::open(key)?;
    let items = n.items(&format!(
        "dump 0 {p} {} {}",
        partition_count(&nodes),
        bwlimit_bits / 8192
    ))?;
    n.close()?;
    let lines = items
        .iter()
        .map(|it| {
            format!(
                "{} {} {} {} {} '{}'",
                it.key,
                it.flag,
                it.data.len(),
                it.version.unwrap_or(0),
                it.expire.unwrap_or(0),
                String::from_utf8_lossy(&it.data)
            )
        })
        .collect();
    Ok((items, lines))
}

/// `dumpkey host:port -p P -s S`: `dump_key <P> <S>`.
pub fn dumpkey(key: &str, partition: i64, count: i64) -> Result<Vec<String>> {
    let mut n = Conn::open(key)?;
    let keys = n.keys(&format!("dump_key {partition} {count}"))?;
    n.close()?;
    Ok(keys)
}

/// Key, partition count → partition, built from `meta`.
pub type PartitionOf = Box<dyn Fn(&str, i64) -> i64>;

/// What `verify --meta` found for one node.
#[derive(Debug)]
pub struct Verified {
    /// Node key.
    pub key: String,
    /// Its partition.
    pub partition: i64,
    /// Keys from `dump_key`.
    pub keydump: Vec<String>,
    /// Keys from `dump`.
    pub dump: Vec<String>,
    /// Keys whose recomputed partition is not the node's.
    pub misplaced: Vec<String>,
}

/// `verify --meta --key-hash-algorithm=<from meta>`: I: `stats nodes`, `meta`, `stats`; every master and slave:
/// `dump_key <P> <Pcount>`, `dump 0 <P> <Pcount> 0`; each key's partition recomputed by `partition_of`.
pub fn verify(
    index: &str,
    resolver: &dyn Fn(&BTreeMap<String, String>) -> PartitionOf,
) -> Result<(BTreeMap<String, String>, Vec<Verified>)> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    let meta: BTreeMap<String, String> = i.meta()?.into_iter().collect();
    let _pointer_size = i.stat("pointer_size")?;
    i.close()?;
    let partition_of = resolver(&meta);
    let count = partition_count(&nodes);
    let mut out = Vec::new();
    // Proxies are skipped ([Improve]; the Ruby tool fails on `dump_key -1 …`).
    for n in nodes.iter().filter(|n| n.partition() >= 0) {
        let p = n.partition();
        let keydump = dumpkey(&n.key, p, count)?;
        let mut c = Conn::open(&n.key)?;
        let dump: Vec<String> = c
            .items(&format!("dump 0 {p} {count} 0"))?
            .into_iter()
            .map(|it| it.key)
            .collect();
        c.close()?;
        let misplaced: Vec<String> = keydump
            .iter()
            .chain(&dump)
            .filter(|k| partition_of(k, count) != p)
            .cloned()
            .collect();
        eprintln!(
            "checking {} ... keydump ... {} entries. dump ... {} entries. {}",
            n.key,
            keydump.len(),
            dump.len(),
            if misplaced.is_empty() { "OK" } else { "NG" }
        );
        out.push(Verified {
            key: n.key.clone(),
            partition: p,
            keydump,
            dump,
            misplaced,
        });
    }
    Ok((meta, out))
}

/// `index --increment=N`: I: `stats nodes`, `stats`; the `flare.xml` the tool writes (reduced to its values).
pub fn index(index: &str, increment: u64) -> Result<(u64, String)> {
    let mut i = Conn::open(index)?;
    if !i.version.at_least(&[1, 3, 1]) {
        return Err(Failure::Malformed("index needs flare >= 1.3.1".into()));
    }
    let nodes = i.stats_nodes()?;
    let v = i.stat("node_map_version")?;
    i.close()?;
    let version: u64 = v
        .parse()
        .map_err(|_| Failure::Malformed(format!("node_map_version {v}")))?;
    let code = |field: &str, v: &str| -> Result<u32> {
        let names: &[&str] = if field == "role" {
            &["master", "slave", "proxy"]
        } else {
            &["active", "prepare", "down", "ready"]
        };
        names
            .iter()
            .position(|n| *n == v)
            .map(|p| p as u32)
            .ok_or_else(|| Failure::Malformed(format!("{field} {v}")))
    };
    let mut xml = format!("<version>{}</version>\n<node_map>\n", version + increment);
    let mut thread_type_max = 0;
    for n in &nodes {
        let tt: i64 = n
            .get("thread_type")
            .parse()
            .map_err(|_| Failure::Malformed(format!("thread_type of {}", n.key)))?;
        thread_type_max = thread_type_max.max(tt);
        xml += &format!(
            "<item><first>{}</first><second><node_server_name>{}</node_server_name>\
             <node_server_port>{}</node_server_port><node_role>{}</node_role><node_state>{}</node_state>\
             <node_partition>{}</node_partition><node_balance>{}</node_balance>\
             <node_thread_type>{tt}</node_thread_type></second></item>\n",
            n.key,
            n.name,
            n.port,
            code("role", n.get("role"))?,
            code("state", n.get("state"))?,
            n.partition(),
            n.balance(),
        );
    }
    xml += &format!(
        "</node_map>\n<thread_type>{}</thread_type>\n",
        thread_type_max + 1
    );
    Ok((version, xml))
}

/// `threads [host:port]`: the table of `stats threads`.
pub fn threads(addr: &str) -> Result<Vec<String>> {
    let mut c = Conn::open(addr)?;
    let threads = c.stats_threads()?;
    c.close()?;
    let mut out = vec![format!(
        "{:>5} {:<32} {:<13} {:>4} {:>8}",
        "id", "peer", "operation", "type", "queue"
    )];
    for (id, t) in &threads {
        let op = if t["op"].is_empty() { "-" } else { &t["op"] };
        out.push(format!(
            "{id:>5} {:<32} {op:<13} {:>4} {:>8}",
            t["peer"], t["type"], t["queue"]
        ));
    }
    Ok(out)
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn num(stats: &BTreeMap<String, String>, k: &str) -> Result<u64> {
    let v = stats
        .get(k)
        .ok_or_else(|| Failure::Malformed(format!("stats has no {k}")))?;
    v.parse()
        .map_err(|_| Failure::Malformed(format!("stats {k} = {v}")))
}

/// `stats --qps --wait=<wait> --count=2`: I: `stats nodes`, `stats threads`; N: `stats` on every node, twice.
/// `between` runs between the two samples. Returns one row of columns per node and sample 2.
pub fn stats(index: &str, wait: Duration, between: &mut dyn FnMut()) -> Result<Vec<Vec<String>>> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    let threads = i.stats_threads()?;
    i.close()?;
    let sample = || -> Result<Vec<BTreeMap<String, String>>> {
        nodes
            .iter()
            .map(|n| {
                let mut c = Conn::open(&n.key)?;
                let s = c.stats()?.into_iter().collect();
                c.close()?;
                Ok(s)
            })
            .collect()
    };
    let first = sample()?;
    let t0 = Instant::now();
    between();
    std::thread::sleep(wait.saturating_sub(t0.elapsed()));
    let second = sample()?;
    let dt = t0.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for ((n, a), b) in nodes.iter().zip(&first).zip(&second) {
        let behind = threads
            .values()
            .find(|t| t["peer"] == n.key)
            .map_or("-".to_string(), |t| t["behind"].clone());
        let (get, hits) = (num(b, "cmd_get")?, num(b, "get_hits")?);
        let hit = if get == 0 {
            "-".to_string()
        } else {
            ((100.0 * hits as f64 / get as f64).round() as u64).to_string()
        };
        let bytes = num(b, "bytes")?;
        let size = if bytes == 0 {
            "-".to_string()
        } else {
            (bytes >> 30).to_string()
        };
        let rate = |k: &[&str]| -> Result<String> {
            let mut d = 0u64;
            for k in k {
                d += num(b, k)?.saturating_sub(num(a, k)?);
            }
            Ok(if d == 0 {
                "-".into()
            } else {
                format!("{:.1}", d as f64 / dt)
            })
        };
        rows.push(vec![
            n.key.clone(),
            n.get("state").into(),
            n.get("role").into(),
            n.partition().to_string(),
            n.get("balance").into(),
            num(b, "curr_items")?.to_string(),
            num(b, "curr_connections")?.to_string(),
            behind,
            hit,
            size,
            uptime(num(b, "uptime")?),
            b.get("version").cloned().unwrap_or_default(),
            rate(&["cmd_get", "cmd_set"])?,
            rate(&["cmd_get"])?,
            rate(&["cmd_set"])?,
        ]);
    }
    Ok(rows)
}

/// `summary`: (masters, slaves, sum of master `bytes`, sum of master `curr_items`).
pub fn summary(index: &str) -> Result<(usize, usize, u64, u64)> {
    let mut i = Conn::open(index)?;
    let nodes = i.stats_nodes()?;
    i.close()?;
    let (mut masters, mut slaves, mut size, mut items) = (0, 0, 0, 0);
    for n in &nodes {
        match n.get("role") {
            "master" => {
                masters += 1;
                let mut c = Conn::open(&n.key)?;
                let s: BTreeMap<String, String> = c.stats()?.into_iter().collect();
                c.close()?;
                size += num(&s, "bytes")?;
                items += num(&s, "curr_items")?;
            }
            "slave" => slaves += 1,
            _ => {}
        }
    }
    Ok((masters, slaves, size, items))
}
