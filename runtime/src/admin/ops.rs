//! The short subcommands: `ping`, `list`, `stats`, `balance`, `down`, `activate`, `remove`, `index`, `threads`
//! (admin-tool.md §4). Each reads `stats nodes` first, checks what it can, asks, then sends one index command per
//! node.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use flare_core::node_map::{NodeRecord, Role, State};
use flare_core::protocol::admin::{IndexCommand, NodeAddr};

use super::args::{
    ChangeArgs, IndexCmdArgs, ListArgs, PingArgs, RemoveArgs, StatsArgs, ThreadsArgs,
};
use super::client::{Conn, Endpoint};
use super::cluster::{parse_node_args, ArgForm, Nodes};
use super::error::{AdminError, Result};
use super::indexes;
use super::prompt::Prompter;
use super::table::{self, StatsRow};
use super::{address_of, change, node_role, node_state, print_nodes, Ctx, Status};

/// `ping host:port ...`: `alive` when every server answers `ping` with `OK`; without hosts, every index server.
pub fn ping(ctx: &Ctx, a: PingArgs) -> Result<Status> {
    let targets = if a.hosts.is_empty() {
        ctx.index_servers(&a.index, &[])?
    } else {
        a.hosts
            .iter()
            .map(|h| Endpoint::parse(h))
            .collect::<Result<Vec<_>>>()?
    };
    for t in &targets {
        if (t.host.as_str(), t.port).to_socket_addrs().is_err() {
            return Err(AdminError::Usage(format!("cannot resolve {}", t.host)));
        }
    }
    loop {
        let down: Vec<&Endpoint> = targets
            .iter()
            .filter(|t| {
                Conn::open("server", t, &ctx.conn)
                    .and_then(|mut c| c.expect_ok("ping"))
                    .is_err()
            })
            .collect();
        if down.is_empty() {
            println!("alive");
            return Ok(Status::Ok);
        }
        if !a.wait {
            for d in down {
                println!("{d} is down");
            }
            return Ok(Status::Ng);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `list`: the node table (or JSON).
pub fn list(ctx: &Ctx, a: ListArgs) -> Result<Status> {
    let mut index = ctx.index(&a.index, &[])?;
    let nodes = Nodes::fetch(&mut index)?;
    let sorted = nodes.sorted();
    if a.json {
        println!("{:#}", table::list_json(&sorted));
    } else if a.numeric_hosts {
        print!("{}", table::list_table(&sorted, |n| address_of(&n.name)));
    } else {
        print!("{}", table::list_table(&sorted, |n| n.name.clone()));
    }
    Ok(Status::Ok)
}

/// `stats` / `flare-stats`: the statistics table, `--count` times or (`--watch`) until interrupted. With several
/// index servers, each table follows the `index list` table of them (role, term, leader, applied) and a blank line.
pub fn stats(ctx: &Ctx, a: StatsArgs) -> Result<Status> {
    let given = ctx.index_servers(&a.index, &a.hosts)?;
    let mut index = Conn::index_group(&given, &ctx.conn)?;
    let group = index_group_to_show(&given, &mut index);
    let count = a.count.unwrap_or(if a.watch { u64::MAX } else { 1 });
    let wait = Duration::from_secs(a.wait.max(1));
    let clear = a.watch && !a.json && std::io::stdout().is_terminal();
    let mut previous: BTreeMap<String, (Instant, u64, u64)> = BTreeMap::new();
    if a.qps {
        // qps is a difference: take the first sample one wait before the first table.
        for r in sample(ctx, &mut index, &a.hosts)? {
            remember(&mut previous, &r);
        }
        std::thread::sleep(wait);
    }
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(wait);
        }
        let mut rows = sample(ctx, &mut index, &a.hosts)?;
        if a.qps {
            for r in &mut rows {
                r.qps = Some(qps(&previous, r));
                remember(&mut previous, r);
            }
        }
        let mut out = std::io::stdout().lock();
        let text = if a.json {
            let doc = table::stats_json(&rows);
            // One compact document per line while repeating, so a consumer can read them one by one.
            if count > 1 {
                format!("{doc}\n")
            } else {
                format!("{doc:#}\n")
            }
        } else {
            let mut text = String::new();
            if let Some(servers) = &group {
                let statuses = indexes::survey(ctx, servers);
                let members = indexes::group_members(&statuses);
                text.push_str(&table::index_table(&statuses, members.as_deref()));
                text.push('\n');
            }
            text.push_str(&table::stats_table(&rows, &a.delimiter, a.qps));
            text
        };
        if clear {
            let _ = write!(out, "\x1b[H\x1b[2J");
        }
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    Ok(Status::Ok)
}

/// The index servers `stats` shows a section for: the ones given and the members the index names, when they are
/// more than one (a single index keeps flare-tools' output exactly).
fn index_group_to_show(given: &[Endpoint], index: &mut Conn) -> Option<Vec<Endpoint>> {
    let members = index
        .stats(None)
        .map(|s| indexes::GroupView::from_stats(&s).members)
        .unwrap_or_default();
    let mut servers = given.to_vec();
    for m in members {
        if !servers.contains(&m) {
            servers.push(m);
        }
    }
    (servers.len() > 1).then_some(servers)
}

/// One row per node (filtered by `hosts`), each node's `stats` read in its own thread.
fn sample(ctx: &Ctx, index: &mut Conn, hosts: &[String]) -> Result<Vec<StatsRow>> {
    let nodes = Nodes::fetch(index)?;
    let behind = behind_by_peer(index)?;
    let mut records: Vec<&NodeRecord> = nodes
        .map
        .nodes
        .values()
        .filter(|n| hosts.is_empty() || hosts.contains(&n.key()))
        .collect();
    // flare-tools' stats order: partition (proxies, −1, first), role, key.
    records.sort_by_key(|n| (n.partition.map_or(-1, i64::from), n.role.name(), n.key()));
    let stats: Vec<Option<BTreeMap<String, String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = records
            .iter()
            .map(|n| {
                let at = Endpoint::new(n.name.clone(), n.port);
                s.spawn(move || {
                    let mut c = Conn::node(&at, &ctx.conn).ok()?;
                    c.stats(None).ok().map(|v| v.into_iter().collect())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    Ok(records
        .into_iter()
        .zip(stats)
        .map(|(n, stats)| StatsRow {
            behind: behind.get(&n.key()).cloned(),
            node: n.clone(),
            stats,
            qps: None,
        })
        .collect())
}

/// `behind` of the index's threads by `peer` (the `behind` column; only from servers ≥ 1.0.10, stats.md §6).
fn behind_by_peer(index: &mut Conn) -> Result<BTreeMap<String, String>> {
    if !index.version.at_least(&[1, 0, 10]) {
        return Ok(BTreeMap::new());
    }
    let mut by_id: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for (k, v) in index.stats(Some("threads"))? {
        if let Some((id, field)) = k.split_once(':') {
            let e = by_id.entry(id.to_string()).or_default();
            match field {
                "peer" => e.0 = Some(v),
                "behind" => e.1 = Some(v),
                _ => {}
            }
        }
    }
    Ok(by_id
        .into_values()
        .filter_map(|(peer, behind)| Some((peer?, behind?)))
        .collect())
}

fn counters(r: &StatsRow) -> Option<(u64, u64)> {
    let s = r.stats.as_ref()?;
    let n = |k: &str| s.get(k).and_then(|v| v.parse::<u64>().ok());
    Some((n("cmd_get")?, n("cmd_set")?))
}

fn remember(previous: &mut BTreeMap<String, (Instant, u64, u64)>, r: &StatsRow) {
    if let Some((g, s)) = counters(r) {
        previous.insert(r.node.key(), (Instant::now(), g, s));
    }
}

/// Δ(cmd_get + cmd_set)/Δt, Δcmd_get/Δt, Δcmd_set/Δt; `None` where nothing changed.
fn qps(previous: &BTreeMap<String, (Instant, u64, u64)>, r: &StatsRow) -> [Option<f64>; 3] {
    let (Some((t, g0, s0)), Some((g1, s1))) = (previous.get(&r.node.key()), counters(r)) else {
        return [None; 3];
    };
    let secs = t.elapsed().as_secs_f64().max(0.001);
    let rate = |d: u64| (d > 0).then(|| d as f64 / secs);
    let (dg, ds) = (g1.saturating_sub(*g0), s1.saturating_sub(*s0));
    [rate(dg + ds), rate(dg), rate(ds)]
}

/// `balance host:port:balance ...`: `node role <h> <p> <role> <B> <partition>`.
pub fn balance(ctx: &Ctx, a: ChangeArgs) -> Result<Status> {
    let args = parse_node_args(&a.nodes, ArgForm::Balance)?;
    let keys: Vec<String> = args.iter().map(|x| x.node.key()).collect();
    let mut index = ctx.index(&a.index, &keys)?;
    let mut prompter = Prompter::new(a.change.force || a.change.dry_run);
    for arg in &args {
        let nodes = Nodes::fetch(&mut index)?;
        let n = nodes.require(&arg.node.key())?.clone();
        let b = arg.balance.unwrap_or(0);
        let Some(p) = n.partition.filter(|_| n.role != Role::Proxy) else {
            return Err(AdminError::Usage(format!(
                "{} is a proxy: only masters and slaves have a balance",
                n.key()
            )));
        };
        let q = format!(
            "updating node balance (node={}:{}, balance={} -> {b})",
            address_of(&n.name),
            n.port,
            n.balance
        );
        if prompter.confirm(&q)? {
            let command = node_role(&n, n.role, b, Some(p));
            change(&mut index, command, 0, a.change.dry_run)?;
        }
    }
    print_nodes(&mut index, &keys)?;
    Ok(Status::Ok)
}

/// `down host:port ...`: `node state <h> <p> down`.
pub fn down(ctx: &Ctx, a: ChangeArgs) -> Result<Status> {
    set_state(ctx, a, State::Down)
}

/// `activate host:port ...`: `node state <h> <p> active` (a ready master activates its partition).
pub fn activate(ctx: &Ctx, a: ChangeArgs) -> Result<Status> {
    set_state(ctx, a, State::Active)
}

fn set_state(ctx: &Ctx, a: ChangeArgs, to: State) -> Result<Status> {
    let args = parse_node_args(&a.nodes, ArgForm::Node)?;
    let keys: Vec<String> = args.iter().map(|x| x.node.key()).collect();
    let mut index = ctx.index(&a.index, &keys)?;
    let mut prompter = Prompter::new(a.change.force || a.change.dry_run);
    for key in &keys {
        let nodes = Nodes::fetch(&mut index)?;
        let n = nodes.require(key)?.clone();
        let q = match to {
            State::Down => format!(
                "turning node down (node={}:{}, state={} -> down)",
                address_of(&n.name),
                n.port,
                n.state
            ),
            _ => format!(
                "turning node up (node={}:{}, state={} -> activate)",
                address_of(&n.name),
                n.port,
                n.state
            ),
        };
        if prompter.confirm(&q)? {
            change(&mut index, node_state(&n, to), 0, a.change.dry_run)?;
        }
    }
    print_nodes(&mut index, &keys)?;
    Ok(Status::Ok)
}

/// `remove host:port ...`: `node remove <h> <p>` for down nodes that are not masters.
pub fn remove(ctx: &Ctx, a: RemoveArgs) -> Result<Status> {
    let args = parse_node_args(&a.nodes, ArgForm::Node)?;
    let keys: Vec<String> = args.iter().map(|x| x.node.key()).collect();
    let mut index = ctx.index(&a.index, &keys)?;
    let mut prompter = Prompter::new(a.change.force || a.change.dry_run);
    for key in &keys {
        let nodes = Nodes::fetch(&mut index)?;
        let n = nodes.require(key)?.clone();
        // Flare requires proxy/down; our index also keeps a down slave's role, and removes it as well. A master
        // (even down) still holds its partition: its slave must take over first.
        if n.state != State::Down || n.role == Role::Master {
            return Err(AdminError::Unsafe(format!(
                "{key} is {}/{}: only a down proxy or slave can be removed (stop its process, then `flare-admin down {key}`)",
                n.role, n.state
            )));
        }
        let q = format!(
            "remove the node from a cluster (node={key}, role={}, state={})",
            n.role, n.state
        );
        if prompter.confirm(&q)? {
            let command = IndexCommand::NodeRemove(NodeAddr::from(&n));
            change(&mut index, command, a.retry, a.change.dry_run)?;
            if !a.change.dry_run {
                println!("{key} has been removed.");
            }
        }
    }
    Ok(Status::Ok)
}

/// `index`: the node map as Flare's `flare.xml` (cluster.md §11.1).
pub fn index(ctx: &Ctx, a: IndexCmdArgs) -> Result<Status> {
    let mut index = ctx.index(&a.index, &[])?;
    let nodes = Nodes::fetch(&mut index)?;
    let version = index
        .stats(None)?
        .into_iter()
        .find(|(k, _)| k == "node_map_version")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .ok_or_else(|| AdminError::Protocol {
            what: "index server",
            addr: index.addr().to_string(),
            reason: "no node_map_version in stats (Flare < 1.3.1?)".into(),
        })?;
    let xml = flare_xml(&nodes, version.saturating_add(a.increment));
    match &a.output {
        Some(path) => std::fs::write(path, xml).map_err(|e| AdminError::File {
            path: path.display().to_string(),
            reason: super::error::reason(&e),
        })?,
        None => print!("{xml}"),
    }
    Ok(Status::Ok)
}

/// A Boost XML archive (version 4) of the map, as Flare's file coordinator writes it.
pub fn flare_xml(nodes: &Nodes, version: u64) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\" ?>\n<!DOCTYPE boost_serialization>\n\
         <boost_serialization signature=\"serialization::archive\" version=\"4\">\n",
    );
    out.push_str(&format!("<version>{version}</version>\n"));
    out.push_str("<node_map class_id=\"0\" tracking_level=\"0\" version=\"0\">\n");
    out.push_str(&format!(
        "\t<count>{}</count>\n\t<item_version>0</item_version>\n",
        nodes.map.nodes.len()
    ));
    let mut next_thread_type = 0;
    for (i, (key, n)) in nodes.map.nodes.iter().enumerate() {
        // Boost writes the class attributes on the first object of each class only.
        let (item, second) = if i == 0 {
            (
                " class_id=\"1\" tracking_level=\"0\" version=\"0\"",
                " class_id=\"2\" tracking_level=\"0\" version=\"0\"",
            )
        } else {
            ("", "")
        };
        out.push_str(&format!(
            "\t<item{item}>\n\t\t<first>{}</first>\n\t\t<second{second}>\n",
            xml_escape(key)
        ));
        for (tag, value) in [
            ("node_server_name", xml_escape(&n.name)),
            ("node_server_port", n.port.to_string()),
            ("node_role", n.role.code().to_string()),
            ("node_state", n.state.code().to_string()),
            (
                "node_partition",
                n.partition.map_or(-1, i64::from).to_string(),
            ),
            ("node_balance", n.balance.to_string()),
            ("node_thread_type", n.thread_type.to_string()),
        ] {
            out.push_str(&format!("\t\t\t<{tag}>{value}</{tag}>\n"));
        }
        out.push_str("\t\t</second>\n\t</item>\n");
        next_thread_type = next_thread_type.max(n.thread_type + 1);
    }
    out.push_str(&format!(
        "</node_map>\n<thread_type>{next_thread_type}</thread_type>\n</boost_serialization>\n"
    ));
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `threads [host:port]`: `stats threads` of a server (default: the index, of several the leader).
pub fn threads(ctx: &Ctx, a: ThreadsArgs) -> Result<Status> {
    let mut c = match &a.host {
        Some(h) => Conn::open("server", &Endpoint::parse(h)?, &ctx.conn)?,
        None => ctx.index(&a.index, &[])?,
    };
    let stats = c.stats(Some("threads"))?;
    print!("{}", table::threads_table(&stats));
    Ok(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flare_xml_has_the_archive_layout() {
        let stats: Vec<(String, String)> = [
            ("a:1:role", "master"),
            ("a:1:state", "active"),
            ("a:1:partition", "0"),
            ("a:1:balance", "1"),
            ("a:1:thread_type", "16"),
            ("b:1:role", "proxy"),
            ("b:1:state", "down"),
            ("b:1:partition", "-1"),
            ("b:1:balance", "0"),
            ("b:1:thread_type", "18"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let xml = flare_xml(&Nodes::parse(&stats).unwrap(), 7);
        assert!(xml.contains("<version>7</version>"));
        assert!(xml.contains("\t<count>2</count>"));
        assert!(xml.contains(
            "\t<item class_id=\"1\" tracking_level=\"0\" version=\"0\">\n\t\t<first>a:1</first>"
        ));
        assert!(xml.contains("\t<item>\n\t\t<first>b:1</first>"));
        assert!(xml.contains("<node_role>2</node_role>\n\t\t\t<node_state>2</node_state>\n\t\t\t<node_partition>-1</node_partition>"));
        assert!(
            xml.ends_with("</node_map>\n<thread_type>19</thread_type>\n</boost_serialization>\n")
        );
    }
}
