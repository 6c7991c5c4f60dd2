//! The cluster as the index server describes it (`stats nodes`, stats.md §3), the choice of index server
//! (admin-tool.md §3), and the `host:port[:balance[:partition]]` arguments of the subcommands.
//!
//! `stats nodes` is parsed into core's [`NodeMap`], so role and state names, the partition count and the partition
//! tables are computed by the same code the servers run.

use std::collections::BTreeMap;

use flare_core::node_map::{NodeMap, NodeRecord, Role, State};

use super::client::{Conn, Endpoint};
use super::error::{AdminError, Result};

/// The index port when none is given.
pub const DEFAULT_INDEX_PORT: u16 = 12120;
/// The index host when none is given.
pub const DEFAULT_INDEX_HOST: &str = "127.0.0.1";

/// The node map read from the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nodes {
    /// Records by node key.
    pub map: NodeMap,
}

impl Nodes {
    /// From `stats nodes` pairs (`<name>:<port>:<field>`, `value`). The key is split at its first two colons, as
    /// flare-tools does (admin-tool.md §2.4).
    pub fn parse(stats: &[(String, String)]) -> std::result::Result<Nodes, String> {
        let mut fields: BTreeMap<(String, u16), BTreeMap<&str, &str>> = BTreeMap::new();
        for (k, v) in stats {
            let mut parts = k.splitn(3, ':');
            let (Some(name), Some(port), Some(field)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("bad stats nodes line {k:?}"));
            };
            let port: u16 = port
                .parse()
                .map_err(|_| format!("bad port in stats nodes line {k:?}"))?;
            fields
                .entry((name.to_string(), port))
                .or_default()
                .insert(field, v.as_str());
        }
        let mut map = NodeMap::default();
        for ((name, port), f) in fields {
            let get = |field: &str| {
                f.get(field)
                    .copied()
                    .ok_or_else(|| format!("{name}:{port} has no {field} in stats nodes"))
            };
            let bad = |field: &str, v: &str| format!("{name}:{port}: bad {field} {v:?}");
            let role = get("role")?;
            let state = get("state")?;
            let partition = get("partition")?;
            let balance = get("balance")?;
            let thread_type = f.get("thread_type").copied().unwrap_or("0");
            let record = NodeRecord {
                name: name.clone(),
                port,
                role: Role::parse(role).ok_or_else(|| bad("role", role))?,
                state: State::parse(state).ok_or_else(|| bad("state", state))?,
                partition: match partition.parse::<i64>() {
                    Ok(-1) => None,
                    Ok(p) => Some(u32::try_from(p).map_err(|_| bad("partition", partition))?),
                    Err(_) => return Err(bad("partition", partition)),
                },
                balance: balance.parse().map_err(|_| bad("balance", balance))?,
                thread_type: thread_type
                    .parse()
                    .map_err(|_| bad("thread_type", thread_type))?,
            };
            map.nodes.insert(record.key(), record);
        }
        Ok(Nodes { map })
    }

    /// Reads `stats nodes` from the index.
    pub fn fetch(index: &mut Conn) -> Result<Nodes> {
        let stats = index.stats(Some("nodes"))?;
        Nodes::parse(&stats).map_err(|reason| AdminError::Protocol {
            what: "index server",
            addr: index.addr().to_string(),
            reason,
        })
    }

    /// The record of `key`.
    pub fn get(&self, key: &str) -> Option<&NodeRecord> {
        self.map.nodes.get(key)
    }

    /// The record of `key`, or a usage error naming it.
    pub fn require(&self, key: &str) -> Result<&NodeRecord> {
        self.get(key).ok_or_else(|| {
            AdminError::Usage(format!(
                "unknown node {key}: the index server does not list it"
            ))
        })
    }

    /// Every record in `list` order: by partition (proxies last), then role, then key (admin-tool.md §4 `list`).
    pub fn sorted(&self) -> Vec<&NodeRecord> {
        let mut v: Vec<&NodeRecord> = self.map.nodes.values().collect();
        v.sort_by_key(|n| (n.partition.unwrap_or(u32::MAX), n.role.name(), n.key()));
        v
    }

    /// The number of partitions routing uses (P): active or preserved masters (cluster.md §2.3).
    pub fn partition_count(&self) -> u32 {
        match self.map.partitions() {
            Ok(p) => p.active.len() as u32,
            Err(_) => self
                .map
                .nodes
                .values()
                .filter(|n| {
                    n.role == Role::Master && matches!(n.state, State::Active | State::Down)
                })
                .filter_map(|n| n.partition)
                .max()
                .map_or(0, |p| p + 1),
        }
    }

    /// The master of partition `p`, in any state.
    pub fn master_of(&self, p: u32) -> Option<&NodeRecord> {
        self.map
            .nodes
            .values()
            .find(|n| n.role == Role::Master && n.partition == Some(p))
    }

    /// The slaves of partition `p`, in key order.
    pub fn slaves_of(&self, p: u32) -> Vec<&NodeRecord> {
        self.map
            .nodes
            .values()
            .filter(|n| n.role == Role::Slave && n.partition == Some(p))
            .collect()
    }

    /// The master of the preparing partition, if one is being built.
    pub fn preparing(&self) -> Option<&NodeRecord> {
        self.map
            .nodes
            .values()
            .find(|n| n.role == Role::Master && matches!(n.state, State::Prepare | State::Ready))
    }

    /// Masters in list order (`--all` of `dump`).
    pub fn masters(&self) -> Vec<&NodeRecord> {
        self.sorted()
            .into_iter()
            .filter(|n| n.role == Role::Master)
            .collect()
    }
}

/// A `host:port[:balance[:partition]]` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeArg {
    /// The node.
    pub node: Endpoint,
    /// The balance, when the form has one.
    pub balance: Option<u32>,
    /// The partition, when the form has one.
    pub partition: Option<u32>,
}

/// Which fields an argument must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgForm {
    /// `host:port`.
    Node,
    /// `host:port:balance`.
    Balance,
    /// `host:port:balance:partition`.
    Full,
}

impl ArgForm {
    fn text(self) -> &'static str {
        match self {
            ArgForm::Node => "host:port",
            ArgForm::Balance => "host:port:balance",
            ArgForm::Full => "host:port:balance:partition",
        }
    }
}

/// Parses one argument of `form`.
pub fn parse_node_arg(s: &str, form: ArgForm) -> Result<NodeArg> {
    let bad = || AdminError::Usage(format!("invalid argument '{s}' (expected {})", form.text()));
    let parts: Vec<&str> = s.split(':').collect();
    let want = match form {
        ArgForm::Node => 2,
        ArgForm::Balance => 3,
        ArgForm::Full => 4,
    };
    if parts.len() != want || parts[0].is_empty() {
        return Err(bad());
    }
    let port = parts[1]
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let num = |i: usize| -> Result<Option<u32>> {
        parts
            .get(i)
            .map(|t| t.parse::<u32>().map_err(|_| bad()))
            .transpose()
    };
    Ok(NodeArg {
        node: Endpoint::new(parts[0], port),
        balance: num(2)?,
        partition: num(3)?,
    })
}

/// Parses every argument of `form`.
pub fn parse_node_args(args: &[String], form: ArgForm) -> Result<Vec<NodeArg>> {
    args.iter().map(|a| parse_node_arg(a, form)).collect()
}

/// How the index server was asked for (admin-tool.md §3), before the environment is consulted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexRequest {
    /// `-i/--index-server HOST[:PORT]`, repeated or a comma list (`--index-servers`): one entry per server.
    pub servers: Vec<String>,
    /// `-p/--index-server-port`.
    pub port: Option<u16>,
    /// `--cluster NAME`.
    pub cluster: Option<String>,
}

/// The environment variables of admin-tool.md §3.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexEnv {
    /// `FLARE_INDEX_SERVER=host[:port]` (ours: also a comma list, `a:p,b:p,c:p`).
    pub server: Option<String>,
    /// `FLARE_INDEX_SERVER_PORT` (flare-tools' README names it; its code ignores it. We read it.)
    pub port: Option<String>,
    /// `FLARE_INDEX_SERVERS=name:host:port;...` (ours: `name:host:port,host:port;...` for a group).
    pub servers: Option<String>,
}

impl IndexEnv {
    /// Reads the process environment.
    pub fn from_process() -> IndexEnv {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        IndexEnv {
            server: var("FLARE_INDEX_SERVER"),
            port: var("FLARE_INDEX_SERVER_PORT"),
            servers: var("FLARE_INDEX_SERVERS"),
        }
    }
}

/// Picks the index servers: `-i` first, then `--cluster`, then the cluster of `FLARE_INDEX_SERVERS` whose node list
/// holds every node in `node_keys` (`lists` reads the node keys of a cluster's index servers), then
/// `FLARE_INDEX_SERVER`, then `127.0.0.1:12120`. A port comes from `HOST:PORT`, else `-p`, else
/// `FLARE_INDEX_SERVER_PORT`, else 12120; giving both `HOST:PORT` and `-p` is an error. The list is in the order
/// given, without repeats, and never empty: which of them is the leader is asked later
/// ([`super::client::Conn::index_group`]).
pub fn choose_index(
    req: &IndexRequest,
    env: &IndexEnv,
    node_keys: &[String],
    lists: impl Fn(&[Endpoint]) -> Option<Vec<String>>,
) -> Result<Vec<Endpoint>> {
    let env_port = match &env.port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| {
            AdminError::Usage(format!("FLARE_INDEX_SERVER_PORT={p} is not a port"))
        })?),
        None => None,
    };
    let fallback_port = req.port.or(env_port).unwrap_or(DEFAULT_INDEX_PORT);
    let given: Vec<&str> = req
        .servers
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !given.is_empty() {
        let servers = parse_servers(&given, fallback_port)?;
        if req.port.is_some() && servers.iter().any(|(_, explicit)| *explicit) {
            return Err(AdminError::Usage(
                "give the index server's port either in --index-server or with --index-server-port, not both"
                    .into(),
            ));
        }
        return Ok(unique(servers));
    }
    let clusters = parse_clusters(env.servers.as_deref().unwrap_or(""))?;
    if let Some(name) = &req.cluster {
        return clusters
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
            .ok_or_else(|| {
                AdminError::Usage(format!(
                    "cluster {name} is not listed in FLARE_INDEX_SERVERS"
                ))
            });
    }
    if !node_keys.is_empty() {
        for (_, e) in &clusters {
            if let Some(keys) = lists(e) {
                if node_keys.iter().all(|k| keys.contains(k)) {
                    return Ok(e.clone());
                }
            }
        }
    }
    if let Some(s) = &env.server {
        let listed: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if !listed.is_empty() {
            return Ok(unique(parse_servers(&listed, fallback_port)?));
        }
    }
    Ok(vec![Endpoint::new(DEFAULT_INDEX_HOST, fallback_port)])
}

/// `host[:port]` entries, each with whether its port was written out.
fn parse_servers(entries: &[&str], fallback_port: u16) -> Result<Vec<(Endpoint, bool)>> {
    entries
        .iter()
        .map(|s| {
            let (host, port) = split_host(s)?;
            Ok((
                Endpoint::new(host, port.unwrap_or(fallback_port)),
                port.is_some(),
            ))
        })
        .collect()
}

/// The endpoints in their first order, each once.
fn unique(servers: Vec<(Endpoint, bool)>) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::with_capacity(servers.len());
    for (e, _) in servers {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

fn split_host(s: &str) -> Result<(String, Option<u16>)> {
    match s.split_once(':') {
        None if !s.is_empty() => Ok((s.to_string(), None)),
        None => Err(AdminError::Usage(
            "invalid index server '' (expected host[:port])".into(),
        )),
        Some((h, p)) => {
            let port = p.parse::<u16>().ok().filter(|p| *p != 0 && !h.is_empty());
            match port {
                Some(port) => Ok((h.to_string(), Some(port))),
                None => Err(AdminError::Usage(format!(
                    "invalid index server '{s}' (expected host[:port])"
                ))),
            }
        }
    }
}

/// `name:host:port;name:host:port` → (name, index servers); a cluster with several index servers lists them as
/// `name:host:port,host:port`.
fn parse_clusters(s: &str) -> Result<Vec<(String, Vec<Endpoint>)>> {
    s.split(';')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let bad = || {
                AdminError::Usage(format!(
                    "FLARE_INDEX_SERVERS: bad entry '{c}' (expected name:host:port[,host:port...])"
                ))
            };
            let mut parts = c.trim().splitn(2, ':');
            match (parts.next(), parts.next()) {
                (Some(name), Some(rest)) if !name.is_empty() => {
                    let servers = rest
                        .split(',')
                        .map(|e| Endpoint::parse(e.trim()).map_err(|_| bad()))
                        .collect::<Result<Vec<_>>>()?;
                    let servers = unique(servers.into_iter().map(|e| (e, true)).collect());
                    Ok((name.to_string(), servers))
                }
                _ => Err(bad()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sample() -> Nodes {
        let mut stats = Vec::new();
        for (key, role, state, part, bal) in [
            ("n2:12121", "proxy", "active", "-1", "0"),
            ("n1:12121", "master", "active", "0", "1"),
            ("n3:12121", "slave", "active", "0", "2"),
            ("n4:12121", "master", "prepare", "1", "1"),
        ] {
            for (f, v) in [
                ("role", role),
                ("state", state),
                ("partition", part),
                ("balance", bal),
                ("thread_type", "16"),
            ] {
                stats.push((format!("{key}:{f}"), v.to_string()));
            }
        }
        Nodes::parse(&stats).unwrap()
    }

    #[test]
    fn stats_nodes_parse_and_sort_like_list() {
        let n = sample();
        let keys: Vec<String> = n.sorted().iter().map(|r| r.key()).collect();
        assert_eq!(keys, ["n1:12121", "n3:12121", "n4:12121", "n2:12121"]);
        assert_eq!(n.partition_count(), 1);
        assert_eq!(n.master_of(0).unwrap().name, "n1");
        assert_eq!(n.slaves_of(0).len(), 1);
        assert_eq!(n.preparing().unwrap().name, "n4");
        assert_eq!(n.get("n2:12121").unwrap().partition, None);
    }

    #[test]
    fn bad_stats_nodes_are_errors_not_panics() {
        for bad in [
            &[("n1:12121", "x")][..],
            &[("n1:x:role", "master")],
            &[("n1:1:role", "king")],
            &[("n1:1:role", "master")],
        ] {
            assert!(Nodes::parse(&pairs(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_arguments() {
        let a = parse_node_arg("node1:12121:3:1", ArgForm::Full).unwrap();
        assert_eq!(a.node, Endpoint::new("node1", 12121));
        assert_eq!((a.balance, a.partition), (Some(3), Some(1)));
        assert_eq!(
            parse_node_arg("node1:12121:0", ArgForm::Balance)
                .unwrap()
                .balance,
            Some(0)
        );
        for (s, form) in [
            ("node1:12121", ArgForm::Full),
            ("node1:12121:1:-1", ArgForm::Full),
            ("node1:12121:1", ArgForm::Node),
            (":12121", ArgForm::Node),
            ("node1:x:1", ArgForm::Balance),
        ] {
            assert!(parse_node_arg(s, form).is_err(), "{s}");
        }
    }

    #[test]
    fn index_server_selection_order() {
        let none = |_: &[Endpoint]| None;
        let e = IndexEnv::default();
        let pick = |req: &IndexRequest, env: &IndexEnv| choose_index(req, env, &[], none);
        let one = |h: &str, p: u16| vec![Endpoint::new(h, p)];
        assert_eq!(
            pick(&IndexRequest::default(), &e).unwrap(),
            one("127.0.0.1", 12120)
        );
        let req = IndexRequest {
            servers: vec!["idx:1".into()],
            ..Default::default()
        };
        assert_eq!(pick(&req, &e).unwrap(), one("idx", 1));
        let both = IndexRequest {
            port: Some(2),
            ..req.clone()
        };
        assert!(pick(&both, &e).is_err());
        let env = IndexEnv {
            server: Some("envidx".into()),
            port: Some("3".into()),
            servers: Some("a:ia:10;b:ib:11".into()),
        };
        assert_eq!(
            pick(&IndexRequest::default(), &env).unwrap(),
            one("envidx", 3)
        );
        let by_name = IndexRequest {
            cluster: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(pick(&by_name, &env).unwrap(), one("ib", 11));
        let unknown = IndexRequest {
            cluster: Some("c".into()),
            ..Default::default()
        };
        assert!(pick(&unknown, &env).is_err());
        // The cluster that lists every node given on the command line.
        let lists = |e: &[Endpoint]| Some(vec![format!("node-of-{}:1", e[0].host)]);
        assert_eq!(
            choose_index(
                &IndexRequest::default(),
                &env,
                &["node-of-ib:1".into()],
                lists
            )
            .unwrap(),
            one("ib", 11)
        );
    }

    #[test]
    fn several_index_servers_as_a_list_or_repeated() {
        let none = |_: &[Endpoint]| None;
        let e = IndexEnv::default();
        let pick = |servers: &[&str], port: Option<u16>| {
            let req = IndexRequest {
                servers: servers.iter().map(|s| s.to_string()).collect(),
                port,
                ..Default::default()
            };
            choose_index(&req, &e, &[], none)
        };
        let three = vec![
            Endpoint::new("a", 1),
            Endpoint::new("b", 2),
            Endpoint::new("c", 3),
        ];
        // `--index-servers a:1,b:2,c:3` reaches here split by clap; a comma list in one entry is split too.
        assert_eq!(pick(&["a:1", "b:2", "c:3"], None).unwrap(), three);
        assert_eq!(pick(&["a:1,b:2", "c:3"], None).unwrap(), three);
        // In the order given, each once; blanks are ignored.
        assert_eq!(
            pick(&["a:1", " b:2 ", "", "a:1", "c:3"], None).unwrap(),
            three
        );
        // -p gives the port of entries without one, and is an error next to an explicit one.
        assert_eq!(
            pick(&["a", "b"], Some(7)).unwrap(),
            vec![Endpoint::new("a", 7), Endpoint::new("b", 7)]
        );
        assert!(pick(&["a", "b:2"], Some(7)).is_err());
        assert_eq!(
            pick(&["a", "b:2"], None).unwrap(),
            vec![Endpoint::new("a", 12120), Endpoint::new("b", 2)]
        );
        for bad in [&["a:1", "b:x"][..], &["a:0"], &[":1"], &["a:1,b:"]] {
            assert!(pick(bad, None).is_err(), "{bad:?}");
        }
        // FLARE_INDEX_SERVER may be a list; FLARE_INDEX_SERVERS' clusters may each have several.
        let env = IndexEnv {
            server: Some("x:1, y:2".into()),
            port: None,
            servers: Some("one:p:1,q:2;two:r:3".into()),
        };
        assert_eq!(
            choose_index(&IndexRequest::default(), &env, &[], none).unwrap(),
            vec![Endpoint::new("x", 1), Endpoint::new("y", 2)]
        );
        let one = IndexRequest {
            cluster: Some("one".into()),
            ..Default::default()
        };
        assert_eq!(
            choose_index(&one, &env, &[], none).unwrap(),
            vec![Endpoint::new("p", 1), Endpoint::new("q", 2)]
        );
        let bad = IndexEnv {
            servers: Some("one:p:1,q".into()),
            ..Default::default()
        };
        assert!(choose_index(&one, &bad, &[], none).is_err());
    }
}
