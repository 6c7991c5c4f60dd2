//! Text tables and JSON documents of `list`, `stats` (`flare-stats`) and `threads`, as pure functions of what was
//! read, in flare-tools' column formats (admin-tool.md §4):
//!
//! * `list`: `%-32s %9s %6s %6s %7s`, header `node partition role state balance`, partition −1 shown as `-`.
//! * `stats`: `hostname:port state role partition balance items conn behind hit size uptime version` with Ruby's
//!   `%-25.25s %6s %6s %9s %7s %8.8s %4s %6.6s %3.3s %4.4s %6.6s %7s` (the first column widens to the longest node
//!   key), and `qps qps-r qps-w` (`%5.5s`) with `--qps`.
//! * `threads`: `%5s %-32s %-13s %4s %8s`, header `id peer operation type queue`.
//! * `index list` (ours, and the index section of `stats` when there are several index servers):
//!   `%-32s %11s %6s %-32s %8s %6s`, header `server role term leader applied member`; a server that could not be
//!   read shows `unreachable` (and `-` up to `member`), one without a group `-`.

use std::collections::BTreeMap;

use flare_core::node_map::NodeRecord;
use serde_json::{json, Map, Value};

use super::client::Endpoint;
use super::indexes::IndexStatus;

/// `list`'s header and rows. `name` gives the displayed host (the node name, or its address with `--numeric-hosts`).
pub fn list_table(nodes: &[&NodeRecord], name: impl Fn(&NodeRecord) -> String) -> String {
    let mut out = format!(
        "{:<32} {:>9} {:>6} {:>6} {:>7}\n",
        "node", "partition", "role", "state", "balance"
    );
    for n in nodes {
        out.push_str(&format!(
            "{:<32} {:>9} {:>6} {:>6} {:>7}\n",
            format!("{}:{}", name(n), n.port),
            n.partition.map_or("-".to_string(), |p| p.to_string()),
            n.role.name(),
            n.state.name(),
            n.balance
        ));
    }
    out
}

/// `list --json`: one object per node.
pub fn list_json(nodes: &[&NodeRecord]) -> Value {
    Value::Array(nodes.iter().map(|n| Value::Object(node_json(n))).collect())
}

fn node_json(n: &NodeRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("node".into(), json!(n.key()));
    m.insert("name".into(), json!(n.name));
    m.insert("port".into(), json!(n.port));
    m.insert("role".into(), json!(n.role.name()));
    m.insert("state".into(), json!(n.state.name()));
    m.insert("partition".into(), json!(n.partition.map_or(-1, i64::from)));
    m.insert("balance".into(), json!(n.balance));
    m.insert("thread_type".into(), json!(n.thread_type));
    m
}

/// One node's row of `stats`.
#[derive(Clone, Debug)]
pub struct StatsRow {
    /// The node as the index lists it.
    pub node: NodeRecord,
    /// The node's own `stats`; `None` when it could not be read.
    pub stats: Option<BTreeMap<String, String>>,
    /// `behind` of the index's thread whose `peer` is this node.
    pub behind: Option<String>,
    /// Queries per second (all, reads, writes) since the previous sample; `None` inside when unchanged.
    pub qps: Option<[Option<f64>; 3]>,
}

impl StatsRow {
    fn stat(&self, name: &str) -> Option<&str> {
        self.stats.as_ref()?.get(name).map(String::as_str)
    }

    fn num(&self, name: &str) -> Option<u64> {
        self.stat(name)?.parse().ok()
    }

    /// round(100 · get_hits / cmd_get), or `-` without gets.
    pub fn hit(&self) -> Option<u64> {
        let gets = self.num("cmd_get").filter(|g| *g > 0)?;
        let hits = self.num("get_hits")?;
        Some((hits as f64 * 100.0 / gets as f64).round() as u64)
    }

    /// `bytes` in whole GiB, or `-` when 0.
    pub fn size(&self) -> String {
        match self.num("bytes") {
            Some(0) => "-".into(),
            Some(b) => (b >> 30).to_string(),
            None => String::new(),
        }
    }
}

/// `uptime` in its largest unit: `45s`, `12m`, `3h`, `2d`.
pub fn short_uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The `stats` table, header first, columns joined by `delimiter`.
pub fn stats_table(rows: &[StatsRow], delimiter: &str, with_qps: bool) -> String {
    let width = rows
        .iter()
        .map(|r| r.node.key().len())
        .max()
        .unwrap_or(0)
        .max(25);
    // (width, truncate) per column after the first, Ruby's %Ns / %N.Ns.
    let mut cols: Vec<(usize, bool)> = vec![
        (6, false),
        (6, false),
        (9, false),
        (7, false),
        (8, true),
        (4, false),
        (6, true),
        (3, true),
        (4, true),
        (6, true),
        (7, false),
    ];
    let mut header = vec![
        "state",
        "role",
        "partition",
        "balance",
        "items",
        "conn",
        "behind",
        "hit",
        "size",
        "uptime",
        "version",
    ];
    if with_qps {
        cols.extend([(5, true); 3]);
        header.extend(["qps", "qps-r", "qps-w"]);
    }
    let line = |first: &str, rest: &[String]| {
        let mut parts = vec![pad_left(first, width)];
        for ((w, t), v) in cols.iter().zip(rest) {
            parts.push(pad_right(v, *w, *t));
        }
        parts.join(delimiter)
    };
    let mut out = line(
        "hostname:port",
        &header.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    out.push('\n');
    for r in rows {
        out.push_str(&line(&r.node.key(), &stats_cells(r, with_qps)));
        out.push('\n');
    }
    out
}

fn stats_cells(r: &StatsRow, with_qps: bool) -> Vec<String> {
    let n = &r.node;
    let s = |name: &str| r.stat(name).unwrap_or("").to_string();
    let reachable = r.stats.is_some();
    let mut cells = vec![
        n.state.name().to_string(),
        n.role.name().to_string(),
        n.partition.map_or(-1, i64::from).to_string(),
        n.balance.to_string(),
        s("curr_items"),
        s("curr_connections"),
        if reachable {
            r.behind.clone().unwrap_or_else(|| "-".into())
        } else {
            String::new()
        },
        if reachable {
            r.hit().map_or("-".into(), |h| h.to_string())
        } else {
            String::new()
        },
        r.size(),
        r.num("uptime").map(short_uptime).unwrap_or_default(),
        s("version"),
    ];
    if with_qps {
        for q in r.qps.unwrap_or([None; 3]) {
            cells.push(match (reachable, q) {
                (false, _) => String::new(),
                (true, Some(v)) => format!("{v:.1}"),
                (true, None) => "-".into(),
            });
        }
    }
    cells
}

/// `stats --json`: one object per node with the table's fields as numbers, our extra node fields, and every raw
/// `stats` pair under `"stats"`.
pub fn stats_json(rows: &[StatsRow]) -> Value {
    let list = rows
        .iter()
        .map(|r| {
            let mut m = node_json(&r.node);
            m.insert("reachable".into(), json!(r.stats.is_some()));
            let num = |name: &str| r.num(name).map_or(Value::Null, |v| json!(v));
            for (field, stat) in [
                ("items", "curr_items"),
                ("conn", "curr_connections"),
                ("bytes", "bytes"),
                ("uptime", "uptime"),
                ("cmd_get", "cmd_get"),
                ("cmd_set", "cmd_set"),
                ("get_hits", "get_hits"),
                ("replication_queue", "replication_queue"),
                ("replication_lag_ms", "replication_lag_ms"),
                ("replication_failures", "replication_failures"),
                ("reconstruction_running", "reconstruction_running"),
                ("reconstruction_items", "reconstruction_items"),
                ("reconstruction_total", "reconstruction_total"),
                ("node_map_version", "node_map_version"),
            ] {
                m.insert(field.into(), num(stat));
            }
            m.insert(
                "behind".into(),
                r.behind
                    .as_deref()
                    .and_then(|b| b.parse::<u64>().ok())
                    .map_or(Value::Null, |b| json!(b)),
            );
            m.insert("hit".into(), r.hit().map_or(Value::Null, |h| json!(h)));
            m.insert(
                "version".into(),
                r.stat("version").map_or(Value::Null, |v| json!(v)),
            );
            if let Some(q) = r.qps {
                for (name, v) in ["qps", "qps_r", "qps_w"].iter().zip(q) {
                    m.insert(name.to_string(), json!(v.unwrap_or(0.0)));
                }
            }
            m.insert(
                "stats".into(),
                r.stats.as_ref().map_or(Value::Null, |s| json!(s)),
            );
            Value::Object(m)
        })
        .collect();
    Value::Array(list)
}

/// The `threads` table from `stats threads` pairs (`<id>:<field>`), sorted by id.
pub fn threads_table(stats: &[(String, String)]) -> String {
    let mut threads: BTreeMap<u64, BTreeMap<&str, &str>> = BTreeMap::new();
    for (k, v) in stats {
        if let Some((id, field)) = k.split_once(':') {
            if let Ok(id) = id.parse() {
                threads.entry(id).or_default().insert(field, v.as_str());
            }
        }
    }
    let mut out = format!(
        "{:>5} {:<32} {:<13} {:>4} {:>8}\n",
        "id", "peer", "operation", "type", "queue"
    );
    for (id, f) in threads {
        let get = |name: &str| f.get(name).copied().unwrap_or("");
        let op = match get("op") {
            "" => "-",
            op => op,
        };
        out.push_str(&format!(
            "{:>5} {:<32} {:<13} {:>4} {:>8}\n",
            id,
            get("peer"),
            op,
            get("type"),
            get("queue")
        ));
    }
    out
}

/// The `index list` table: one row per server, `member` as `members` (the group's voters, when known) has it.
pub fn index_table(statuses: &[IndexStatus], members: Option<&[Endpoint]>) -> String {
    let row = |cells: [&str; 6]| {
        let line = format!(
            "{:<32} {:>11} {:>6} {:<32} {:>8} {:>6}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
        );
        format!("{}\n", line.trim_end())
    };
    let mut out = row(["server", "role", "term", "leader", "applied", "member"]);
    for s in statuses {
        let server = s.server.to_string();
        let member = match members {
            Some(m) if m.contains(&s.server) => "yes",
            Some(_) => "no",
            None => "-",
        };
        let Ok(v) = &s.view else {
            out.push_str(&row([&server, "unreachable", "-", "-", "-", member]));
            continue;
        };
        let num = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        out.push_str(&row([
            &server,
            v.role.as_deref().unwrap_or("-"),
            &num(v.term),
            &v.leader
                .as_ref()
                .map_or("-".to_string(), Endpoint::to_string),
            &num(v.applied),
            member,
        ]));
    }
    out
}

/// `index list --json`: one object per server (`server`, `reachable`, `role`, `term`, `leader`, `applied`,
/// `members`, `member`, `node_map_version`, and `error` when unreachable); unknown values are `null`.
pub fn index_json(statuses: &[IndexStatus], members: Option<&[Endpoint]>) -> Value {
    let list = statuses
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("server".into(), json!(s.server.to_string()));
            m.insert("reachable".into(), json!(s.view.is_ok()));
            m.insert(
                "member".into(),
                members.map_or(Value::Null, |ms| json!(ms.contains(&s.server))),
            );
            match &s.view {
                Ok(v) => {
                    m.insert("role".into(), json!(v.role));
                    m.insert("term".into(), json!(v.term));
                    m.insert(
                        "leader".into(),
                        json!(v.leader.as_ref().map(Endpoint::to_string)),
                    );
                    m.insert("applied".into(), json!(v.applied));
                    let listed: Vec<String> = v.members.iter().map(Endpoint::to_string).collect();
                    m.insert("members".into(), json!(listed));
                    m.insert("node_map_version".into(), json!(v.node_map_version));
                }
                Err(e) => {
                    m.insert("error".into(), json!(e));
                }
            }
            Value::Object(m)
        })
        .collect();
    Value::Array(list)
}

fn pad_left(s: &str, w: usize) -> String {
    let cut: String = s.chars().take(w).collect();
    format!("{cut:<w$}")
}

fn pad_right(s: &str, w: usize, truncate: bool) -> String {
    if truncate {
        let cut: String = s.chars().take(w).collect();
        format!("{cut:>w$}")
    } else {
        format!("{s:>w$}")
    }
}

#[cfg(test)]
mod tests {
    use flare_core::node_map::{Role, State};

    use super::*;

    fn rec(name: &str, role: Role, state: State, p: Option<u32>, b: u32) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            port: 12121,
            role,
            state,
            partition: p,
            balance: b,
            thread_type: 16,
        }
    }

    #[test]
    fn list_matches_the_tutorial() {
        let a = rec("mynode2", Role::Proxy, State::Active, None, 0);
        let b = rec("mynode1", Role::Master, State::Active, Some(0), 1);
        let t = list_table(&[&a, &b], |n| n.name.clone());
        assert_eq!(
            t,
            "node                             partition   role  state balance\n\
             mynode2:12121                            -  proxy active       0\n\
             mynode1:12121                            0 master active       1\n"
        );
    }

    #[test]
    fn stats_matches_the_tutorial() {
        let stats: BTreeMap<String, String> = [
            ("curr_items", "100001"),
            ("curr_connections", "2"),
            ("cmd_get", "0"),
            ("get_hits", "0"),
            ("bytes", "4096"),
            ("uptime", "90000"),
            ("version", "1.0.14"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let row = StatsRow {
            node: rec("mynode1", Role::Master, State::Active, Some(0), 1),
            stats: Some(stats),
            behind: Some("0".into()),
            qps: None,
        };
        let down = StatsRow {
            node: rec("mynode2", Role::Slave, State::Down, Some(0), 1),
            stats: None,
            behind: None,
            qps: None,
        };
        let t = stats_table(&[row, down], " ", false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "hostname:port              state   role partition balance    items conn behind hit size uptime version");
        assert_eq!(lines[1], "mynode1:12121             active master         0       1   100001    2      0   -    0     1d  1.0.14");
        assert_eq!(
            lines[2].trim_end(),
            "mynode2:12121               down  slave         0       1"
        );
    }

    #[test]
    fn uptime_and_hit_rate() {
        assert_eq!(short_uptime(45), "45s");
        assert_eq!(short_uptime(12 * 60 + 5), "12m");
        assert_eq!(short_uptime(3 * 3600), "3h");
        assert_eq!(short_uptime(2 * 86400 + 1), "2d");
        let row = |gets: &str, hits: &str| StatsRow {
            node: rec("a", Role::Master, State::Active, Some(0), 1),
            stats: Some(
                [("cmd_get", gets), ("get_hits", hits)]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            behind: None,
            qps: Some([Some(2.0), None, Some(0.5)]),
        };
        assert_eq!(row("3", "2").hit(), Some(67));
        assert_eq!(row("0", "0").hit(), None);
        let t = stats_table(&[row("3", "2")], ",", true);
        assert!(
            t.lines().nth(1).unwrap().ends_with(",  2.0,    -,  0.5"),
            "{t}"
        );
        let j = stats_json(&[row("3", "2")]);
        assert_eq!(j[0]["hit"], json!(67));
        assert_eq!(j[0]["partition"], json!(0));
        assert_eq!(j[0]["items"], Value::Null);
    }

    #[test]
    fn threads_table_shows_empty_ops_as_dash() {
        let stats: Vec<(String, String)> = [
            ("16:type", "16"),
            ("16:peer", "n1:12121"),
            ("16:op", ""),
            ("16:queue", "0"),
            ("2:type", "1"),
            ("2:peer", "127.0.0.1:5000"),
            ("2:op", "stats"),
            ("2:queue", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let t = threads_table(&stats);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "   id peer                             operation     type    queue"
        );
        assert!(lines[1].starts_with("    2 127.0.0.1:5000"), "{t}");
        assert!(lines[2].contains(" -   "), "{t}");
    }

    #[test]
    fn index_table_from_stats_lines() {
        let at = |s: &str| Endpoint::parse(s).unwrap();
        let statuses = [
            IndexStatus::from_lines(
                at("127.0.0.1:12120"),
                &[
                    "STAT index_role leader",
                    "STAT index_term 3",
                    "STAT index_leader 127.0.0.1:12120",
                    "STAT index_applied 42",
                    "STAT index_members 127.0.0.1:12120,127.0.0.1:12121,127.0.0.1:12122",
                ],
            ),
            IndexStatus::from_lines(
                at("127.0.0.1:12121"),
                &[
                    "STAT index_role follower",
                    "STAT index_term 3",
                    "STAT index_leader 127.0.0.1:12120",
                    "STAT index_applied 41",
                ],
            ),
            IndexStatus {
                server: at("127.0.0.1:12122"),
                view: Err(
                    "cannot connect to index server 127.0.0.1:12122: connection refused".into(),
                ),
            },
            IndexStatus::from_lines(
                at("127.0.0.1:12123"),
                &[
                    "STAT index_role candidate",
                    "STAT index_term 4",
                    "STAT index_leader -",
                ],
            ),
        ];
        let members = crate::admin::indexes::group_members(&statuses);
        let t = index_table(&statuses, members.as_deref());
        assert_eq!(
            t,
            "server                                  role   term leader                            applied member\n\
             127.0.0.1:12120                       leader      3 127.0.0.1:12120                        42    yes\n\
             127.0.0.1:12121                     follower      3 127.0.0.1:12120                        41    yes\n\
             127.0.0.1:12122                  unreachable      - -                                       -    yes\n\
             127.0.0.1:12123                    candidate      4 -                                       -     no\n"
        );
        // A server that is not in a group (Flare's index) shows `-`, and membership is unknown without a list.
        let flare = [IndexStatus::from_lines(
            at("idx:12120"),
            &["STAT node_map_version 3"],
        )];
        let t = index_table(&flare, None);
        assert_eq!(
            t.lines().nth(1).unwrap(),
            "idx:12120                                  -      - -                                       -      -"
        );
        let j = index_json(&statuses, members.as_deref());
        assert_eq!(j[0]["role"], json!("leader"));
        assert_eq!(j[0]["applied"], json!(42));
        assert_eq!(j[0]["members"].as_array().unwrap().len(), 3);
        assert_eq!(j[2]["reachable"], json!(false));
        assert_eq!(j[2]["member"], json!(true));
        assert_eq!(j[3]["leader"], Value::Null);
        assert_eq!(j[3]["member"], json!(false));
    }
}
