//! The node map (cluster.md §2): node records keyed by `name:port`, its version, and the partition tables every
//! process derives from it.
//!
//! The map is kept sorted by node key (a `BTreeMap`), because Flare's failover walks slaves in key order. Role and
//! state have numeric wire codes (`NODE` lines, `node sync`) and names (`stats nodes`, admin commands).

use std::collections::BTreeMap;
use std::fmt;

use crate::protocol::NodeLine;

/// A node's role (cluster.md §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Owns a partition and accepts its writes.
    Master,
    /// Holds a copy of a partition and serves reads by balance.
    Slave,
    /// Stores nothing; forwards every request.
    Proxy,
}

/// A node's state (cluster.md §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// In service.
    Active,
    /// Copying data (new slave or new partition master).
    Prepare,
    /// Out of service.
    Down,
    /// A new partition master whose copy is complete, waiting for activation.
    Ready,
}

impl Role {
    /// Wire code: master=0, slave=1, proxy=2.
    pub fn code(self) -> u8 {
        match self {
            Role::Master => 0,
            Role::Slave => 1,
            Role::Proxy => 2,
        }
    }
    /// From a wire code.
    pub fn from_code(code: u8) -> Option<Role> {
        [Role::Master, Role::Slave, Role::Proxy]
            .into_iter()
            .find(|r| r.code() == code)
    }
    /// The name used by `stats nodes` and admin commands.
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Proxy => "proxy",
        }
    }
    /// From a name.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Master, Role::Slave, Role::Proxy]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

impl State {
    /// Wire code: active=0, prepare=1, down=2, ready=3.
    pub fn code(self) -> u8 {
        match self {
            State::Active => 0,
            State::Prepare => 1,
            State::Down => 2,
            State::Ready => 3,
        }
    }
    /// From a wire code.
    pub fn from_code(code: u8) -> Option<State> {
        [State::Active, State::Prepare, State::Down, State::Ready]
            .into_iter()
            .find(|s| s.code() == code)
    }
    /// The name used by `stats nodes` and admin commands.
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Prepare => "prepare",
            State::Down => "down",
            State::Ready => "ready",
        }
    }
    /// From a name.
    pub fn parse(name: &str) -> Option<State> {
        [State::Active, State::Prepare, State::Down, State::Ready]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One node record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// `server-name` exactly as the node registered it.
    pub name: String,
    /// `server-port`.
    pub port: u16,
    /// Role.
    pub role: Role,
    /// State.
    pub state: State,
    /// Partition; `None` is Flare's −1.
    pub partition: Option<u32>,
    /// Read weight.
    pub balance: u32,
    /// Stable node id (Flare's thread_type, from 16 up, never reused).
    pub thread_type: u32,
}

impl NodeRecord {
    /// The node key `name:port`.
    pub fn key(&self) -> String {
        node_key(&self.name, self.port)
    }

    /// The `NODE` line fields.
    pub fn to_line(&self) -> NodeLine {
        NodeLine {
            name: bytes::Bytes::copy_from_slice(self.name.as_bytes()),
            port: self.port,
            role: self.role.code(),
            state: self.state.code(),
            partition: self.partition.map_or(-1, |p| p as i32),
            balance: self.balance as i32,
            thread_type: self.thread_type,
        }
    }

    /// From a `NODE` line; `None` when a field is out of range.
    pub fn from_line(line: &NodeLine) -> Option<NodeRecord> {
        Some(NodeRecord {
            name: String::from_utf8(line.name.to_vec()).ok()?,
            port: line.port,
            role: Role::from_code(line.role)?,
            state: State::from_code(line.state)?,
            partition: match line.partition {
                -1 => None,
                p => Some(u32::try_from(p).ok()?),
            },
            balance: u32::try_from(line.balance).ok()?,
            thread_type: line.thread_type,
        })
    }
}

/// `name:port`.
pub fn node_key(name: &str, port: u16) -> String {
    format!("{name}:{port}")
}

/// The node map: records by key, and its version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMap {
    /// Bumped on every saved change (cluster.md §2.2).
    pub version: u64,
    /// Records sorted by node key.
    pub nodes: BTreeMap<String, NodeRecord>,
}

/// Why a map's partition tables cannot be built (cluster.md §2.3: Flare logs it and keeps the previous tables).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// Active partitions do not form 0..P−1.
    #[error("active partitions are not contiguous: partition {0} has no master")]
    Gap(u32),
    /// Two masters claim one partition.
    #[error("partition {0} has more than one master")]
    DuplicateMaster(u32),
    /// More than one preparing partition, or one that is not P.
    #[error("preparing partition {found} is not the next partition {expected}")]
    BadPreparing {
        /// The partition found.
        found: u32,
        /// P.
        expected: u32,
    },
}

/// One partition as routing sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    /// The master's key; `None` for a preserved partition whose master is down.
    pub master: Option<String>,
    /// Slaves (state ≠ down), in key order.
    pub slaves: Vec<String>,
    /// Read candidates with their weights (master and active slaves with balance > 0).
    pub readers: Vec<(String, u32)>,
}

/// The partition tables derived from a map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partitions {
    /// Partitions 0..P−1.
    pub active: Vec<Partition>,
    /// The preparing partition P, if any.
    pub preparing: Option<Partition>,
}

impl NodeMap {
    /// The map from `NODE` lines; `None` when a line is out of range.
    pub fn from_lines(version: u64, lines: &[NodeLine]) -> Option<NodeMap> {
        let mut nodes = BTreeMap::new();
        for l in lines {
            let r = NodeRecord::from_line(l)?;
            nodes.insert(r.key(), r);
        }
        Some(NodeMap { version, nodes })
    }

    /// The map `stats nodes` shows ([`NodeMap::stats_nodes`]: `<name>:<port>:<field> <value>`), with `version`.
    /// Fields other than the five of a record are ignored; `None` when a record lacks one or a value is malformed.
    pub fn from_stats_nodes<'a>(
        version: u64,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<NodeMap> {
        #[derive(Default)]
        struct Partial {
            role: Option<Role>,
            state: Option<State>,
            partition: Option<Option<u32>>,
            balance: Option<u32>,
            thread_type: Option<u32>,
        }
        let mut partial: BTreeMap<(String, u16), Partial> = BTreeMap::new();
        for (field, value) in fields {
            let Some((key, name)) = field.rsplit_once(':') else {
                continue;
            };
            if !matches!(
                name,
                "role" | "state" | "partition" | "balance" | "thread_type"
            ) {
                continue;
            }
            let (host, port) = key.rsplit_once(':')?;
            let p = partial
                .entry((host.to_string(), port.parse().ok()?))
                .or_default();
            match name {
                "role" => p.role = Some(Role::parse(value)?),
                "state" => p.state = Some(State::parse(value)?),
                "partition" => {
                    p.partition = Some(match value.parse::<i64>().ok()? {
                        -1 => None,
                        n => Some(u32::try_from(n).ok()?),
                    })
                }
                "balance" => p.balance = Some(value.parse().ok()?),
                _ => p.thread_type = Some(value.parse().ok()?),
            }
        }
        let mut nodes = BTreeMap::new();
        for ((name, port), p) in partial {
            let r = NodeRecord {
                name,
                port,
                role: p.role?,
                state: p.state?,
                partition: p.partition?,
                balance: p.balance?,
                thread_type: p.thread_type?,
            };
            nodes.insert(r.key(), r);
        }
        Some(NodeMap { version, nodes })
    }

    /// `NODE` lines in key order.
    pub fn to_lines(&self) -> Vec<NodeLine> {
        self.nodes.values().map(NodeRecord::to_line).collect()
    }

    /// `NODE <name> <port> <role> <state> <partition> <balance> <thread_type>` text lines
    /// ([`crate::protocol::lines`]).
    pub fn node_lines(&self) -> Vec<String> {
        self.to_lines().iter().map(NodeLine::to_string).collect()
    }

    /// `stats nodes` fields (stats.md §3), five per node in key order.
    pub fn stats_nodes(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.nodes.len() * 5);
        for (key, n) in &self.nodes {
            out.push((format!("{key}:role"), n.role.name().to_string()));
            out.push((format!("{key}:state"), n.state.name().to_string()));
            out.push((
                format!("{key}:partition"),
                n.partition.map_or(-1, |p| p as i64).to_string(),
            ));
            out.push((format!("{key}:balance"), n.balance.to_string()));
            out.push((format!("{key}:thread_type"), n.thread_type.to_string()));
        }
        out
    }

    /// Derives the partition tables (cluster.md §2.3).
    pub fn partitions(&self) -> Result<Partitions, MapError> {
        // Masters that are active, or down and preserved (role master keeps its partition reserved).
        let mut masters: BTreeMap<u32, (&String, &NodeRecord)> = BTreeMap::new();
        let mut preparing: Option<(u32, &String)> = None;
        for (key, n) in &self.nodes {
            let (Role::Master, Some(p)) = (n.role, n.partition) else {
                continue;
            };
            match n.state {
                State::Active | State::Down => {
                    if masters.insert(p, (key, n)).is_some() {
                        return Err(MapError::DuplicateMaster(p));
                    }
                }
                State::Prepare | State::Ready => {
                    if let Some((other, _)) = preparing {
                        return Err(MapError::BadPreparing {
                            found: p.max(other),
                            expected: p.min(other),
                        });
                    }
                    preparing = Some((p, key));
                }
            }
        }
        let count = masters.len() as u32;
        for (i, p) in masters.keys().enumerate() {
            if *p != i as u32 {
                return Err(MapError::Gap(i as u32));
            }
        }
        if let Some((p, _)) = preparing {
            if p != count {
                return Err(MapError::BadPreparing {
                    found: p,
                    expected: count,
                });
            }
        }
        let build = |p: u32, master: Option<&String>| {
            let mut part = Partition {
                master: master.cloned(),
                ..Partition::default()
            };
            if let Some(m) = master.and_then(|k| self.nodes.get(k)) {
                if m.state == State::Active && m.balance > 0 {
                    part.readers.push((m.key(), m.balance));
                }
            }
            for (key, n) in &self.nodes {
                if n.role == Role::Slave && n.partition == Some(p) && n.state != State::Down {
                    part.slaves.push(key.clone());
                    // Slaves in prepare are listed with weight 0 (cluster.md §2.3): not readable.
                    if n.state == State::Active && n.balance > 0 {
                        part.readers.push((key.clone(), n.balance));
                    }
                }
            }
            part
        };
        let active = masters
            .iter()
            .map(|(p, (key, n))| build(*p, (n.state == State::Active).then_some(*key)))
            .collect();
        let preparing = preparing.map(|(p, key)| build(p, Some(key)));
        Ok(Partitions { active, preparing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        name: &str,
        role: Role,
        state: State,
        partition: Option<u32>,
        balance: u32,
        tt: u32,
    ) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            port: 12121,
            role,
            state,
            partition,
            balance,
            thread_type: tt,
        }
    }

    fn map(records: Vec<NodeRecord>) -> NodeMap {
        NodeMap {
            version: 1,
            nodes: records.into_iter().map(|r| (r.key(), r)).collect(),
        }
    }

    #[test]
    fn stats_nodes_round_trip() {
        let mut m = map(vec![
            rec("10.0.0.1", Role::Master, State::Active, Some(0), 1, 16),
            rec("b", Role::Slave, State::Prepare, Some(0), 0, 17),
            rec("c", Role::Proxy, State::Down, None, 0, 18),
        ]);
        m.version = 9;
        let fields = m.stats_nodes();
        let mut lines: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Other `stats` lines are ignored.
        lines.push(("node_map_version", "9"));
        lines.push(("10.0.0.1:12121:hit", "3"));
        assert_eq!(NodeMap::from_stats_nodes(9, lines.iter().copied()), Some(m));
        // A record missing a field, or a bad value, is refused.
        assert_eq!(
            NodeMap::from_stats_nodes(9, lines[1..].iter().copied()),
            None
        );
        let mut bad = lines.clone();
        bad[0] = ("10.0.0.1:12121:role", "boss");
        assert_eq!(NodeMap::from_stats_nodes(9, bad), None);
    }

    #[test]
    fn codes_and_names_round_trip() {
        for r in [Role::Master, Role::Slave, Role::Proxy] {
            assert_eq!(Role::from_code(r.code()), Some(r));
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        for s in [State::Active, State::Prepare, State::Down, State::Ready] {
            assert_eq!(State::from_code(s.code()), Some(s));
            assert_eq!(State::parse(s.name()), Some(s));
        }
        assert_eq!(Role::from_code(3), None);
        assert_eq!(State::parse("up"), None);
    }

    #[test]
    fn partitions_with_slaves_and_read_weights() {
        let m = map(vec![
            rec("a", Role::Master, State::Active, Some(0), 1, 16),
            rec("b", Role::Slave, State::Active, Some(0), 2, 17),
            rec("c", Role::Slave, State::Prepare, Some(0), 0, 18),
            rec("d", Role::Master, State::Active, Some(1), 0, 19),
            rec("e", Role::Proxy, State::Active, None, 0, 20),
        ]);
        let p = m.partitions().unwrap();
        assert_eq!(p.active.len(), 2);
        assert_eq!(p.active[0].master.as_deref(), Some("a:12121"));
        assert_eq!(p.active[0].slaves, vec!["b:12121", "c:12121"]);
        assert_eq!(
            p.active[0].readers,
            vec![("a:12121".to_string(), 1), ("b:12121".to_string(), 2)]
        );
        assert!(
            p.active[1].readers.is_empty(),
            "a master with balance 0 is not a read candidate"
        );
        assert_eq!(p.preparing, None);
    }

    #[test]
    fn preserved_partition_keeps_its_number_without_master() {
        let m = map(vec![
            rec("a", Role::Master, State::Down, Some(0), 1, 16),
            rec("b", Role::Master, State::Active, Some(1), 1, 17),
        ]);
        let p = m.partitions().unwrap();
        assert_eq!(p.active.len(), 2);
        assert_eq!(p.active[0].master, None);
        assert_eq!(p.active[1].master.as_deref(), Some("b:12121"));
    }

    #[test]
    fn inconsistent_maps_are_rejected() {
        let gap = map(vec![rec("a", Role::Master, State::Active, Some(1), 1, 16)]);
        assert_eq!(gap.partitions(), Err(MapError::Gap(0)));
        let dup = map(vec![
            rec("a", Role::Master, State::Active, Some(0), 1, 16),
            rec("b", Role::Master, State::Active, Some(0), 1, 17),
        ]);
        assert_eq!(dup.partitions(), Err(MapError::DuplicateMaster(0)));
        let prep = map(vec![
            rec("a", Role::Master, State::Active, Some(0), 1, 16),
            rec("b", Role::Master, State::Prepare, Some(2), 1, 17),
        ]);
        assert_eq!(
            prep.partitions(),
            Err(MapError::BadPreparing {
                found: 2,
                expected: 1
            })
        );
    }

    #[test]
    fn preparing_partition_is_the_next_one() {
        let m = map(vec![
            rec("a", Role::Master, State::Active, Some(0), 1, 16),
            rec("n", Role::Master, State::Prepare, Some(1), 1, 17),
            rec("s", Role::Slave, State::Prepare, Some(1), 1, 18),
        ]);
        let p = m.partitions().unwrap();
        assert_eq!(p.active.len(), 1);
        let prep = p.preparing.unwrap();
        assert_eq!(prep.master.as_deref(), Some("n:12121"));
        assert_eq!(prep.slaves, vec!["s:12121"]);
    }

    #[test]
    fn node_lines_round_trip_and_stats_nodes_format() {
        let m = map(vec![
            rec("10.0.0.5", Role::Master, State::Active, Some(0), 1, 16),
            rec("10.0.0.6", Role::Proxy, State::Active, None, 0, 17),
        ]);
        let back = NodeMap::from_lines(1, &m.to_lines()).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.node_lines()[1], "NODE 10.0.0.6 12121 2 0 -1 0 17");
        let s = m.stats_nodes();
        assert_eq!(
            s[0],
            ("10.0.0.5:12121:role".to_string(), "master".to_string())
        );
        assert_eq!(
            s[7],
            ("10.0.0.6:12121:partition".to_string(), "-1".to_string())
        );
    }
}
