//! A node's view of the cluster: the node map it holds, the partition tables derived from it, and every routing
//! decision a request needs (cluster.md §7, §8.1; protocol.md §9). The driver asks; this module decides.
//!
//! - [`ClusterView::route_read`]: serve a key locally, forward it to a read replica chosen by balance weight, or
//!   count it as a miss.
//! - [`ClusterView::route_write`]: run a write locally, forward it to the partition's master (refusing loops), or
//!   answer that no partition is available.
//! - [`ClusterView::replicas`]: after a local write, which nodes receive it (the master's slaves, and the preparing
//!   master when the key is moving to a new partition).
//!
//! A node is *fenced* by its own map: it runs a client write for a partition only while its map names it that
//! partition's master, so a deposed master forwards instead of acknowledging (cluster.md §14 and issue 4). A newer
//! map replaces an older one only ([`ClusterView::accepts_version`]).

use std::sync::Arc;

use crate::keys::Resolver;
use crate::node_map::{MapError, NodeMap, NodeRecord, Partition, Partitions, Role, State};
use crate::protocol::ProxyPath;

/// Where a read goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadRoute {
    /// Serve it from the local store.
    Local,
    /// Ask this node (`name:port`).
    Forward(String),
    /// Nobody can serve it: a miss (Flare's behaviour for reads).
    Miss,
}

/// Where a write goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRoute {
    /// Run it locally.
    Local,
    /// Forward it to the partition's master (`name:port`).
    Forward(String),
    /// No partition, or the partition has no master: `SERVER_ERROR no partition available`.
    NoPartition,
    /// The request already passed through this node: `SERVER_ERROR proxy loop`.
    Loop,
    /// A replicated write (tagged with the sender's replication sequence number) from a node that is not this
    /// node's master in its map: refused, never forwarded, so the sender retries once the maps agree (and a
    /// deposed master's replication is fenced off).
    NotReplica,
    /// A read another node forwarded here, for a partition this node does not serve in its own map (it is in
    /// `prepare`, a proxy, or not a reader): `SERVER_ERROR not serving this partition`, and the sender asks the
    /// master instead.
    NotServing,
}

/// A node's cluster view. Cheap to share behind an `Arc`; replaced whole when a new map arrives.
#[derive(Clone, Debug)]
pub struct ClusterView {
    map: NodeMap,
    partitions: Partitions,
    self_key: String,
    resolver: Arc<Resolver>,
    standalone: bool,
}

impl ClusterView {
    /// A node with no index server: the master of partition 0 of 1, on its own.
    pub fn standalone(self_key: String, resolver: Arc<Resolver>) -> Self {
        ClusterView {
            map: NodeMap::default(),
            partitions: Partitions {
                active: vec![Partition {
                    master: Some(self_key.clone()),
                    slaves: Vec::new(),
                    readers: vec![(self_key.clone(), 1)],
                }],
                preparing: None,
            },
            self_key,
            resolver,
            standalone: true,
        }
    }

    /// The view of a map received from the index server. An inconsistent map is refused (cluster.md §2.3: the
    /// caller keeps its previous view).
    pub fn from_map(
        map: NodeMap,
        self_key: String,
        resolver: Arc<Resolver>,
    ) -> Result<Self, MapError> {
        let partitions = map.partitions()?;
        Ok(ClusterView {
            map,
            partitions,
            self_key,
            resolver,
            standalone: false,
        })
    }

    /// A view of `map` for the same node and resolver.
    pub fn with_map(&self, map: NodeMap) -> Result<Self, MapError> {
        Self::from_map(map, self.self_key.clone(), self.resolver.clone())
    }

    /// Whether a pushed map of `version` may replace this one (equal is accepted, older refused; cluster.md §2.2).
    pub fn accepts_version(&self, version: u64) -> bool {
        self.standalone || version >= self.map.version
    }

    /// The node map (empty for a standalone node).
    pub fn map(&self) -> &NodeMap {
        &self.map
    }

    /// The derived partition tables.
    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// This node's key, `name:port`.
    pub fn self_key(&self) -> &str {
        &self.self_key
    }

    /// True when there is no index server.
    pub fn is_standalone(&self) -> bool {
        self.standalone
    }

    /// The key → partition resolver.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// This node's record (`None` for a standalone node, or before the index knows it).
    pub fn me(&self) -> Option<&NodeRecord> {
        self.map.nodes.get(&self.self_key)
    }

    /// The role and partition this node must copy (reconstruct) when `next` replaces this view, if any: it is in
    /// `prepare` as a slave or master in `next`, and either was not in this view, or `next` does not directly follow
    /// this view's version. In the versions a node did not see, the index may have marked it down and up again (a
    /// cut between it and the index) while its source, which saw that, stopped replicating to it: the copy running
    /// misses those writes and must start over.
    pub fn starts_reconstruction(&self, next: &ClusterView) -> Option<(Role, u32)> {
        let r = next.me()?;
        let (Role::Slave | Role::Master, State::Prepare, Some(p)) = (r.role, r.state, r.partition)
        else {
            return None;
        };
        let contiguous = next.map.version == self.map.version.saturating_add(1);
        (!(contiguous && self.building(r.role, p))).then_some((r.role, p))
    }

    /// Whether this map has this node in `prepare` as `role` of `partition` (being built for it).
    pub fn building(&self, role: Role, partition: u32) -> bool {
        self.me().is_some_and(|r| {
            r.role == role && r.state == State::Prepare && r.partition == Some(partition)
        })
    }

    /// Role, state, partition and balance for `stats` (a standalone node is an active master of partition 0).
    pub fn my_role(&self) -> (Role, State, Option<u32>, u32) {
        match (self.standalone, self.me()) {
            (true, _) => (Role::Master, State::Active, Some(0), 1),
            (false, Some(r)) => (r.role, r.state, r.partition, r.balance),
            (false, None) => (Role::Proxy, State::Active, None, 0),
        }
    }

    /// The number of active partitions P.
    pub fn partition_count(&self) -> u32 {
        self.partitions.active.len() as u32
    }

    /// The key's partition under the active count.
    pub fn partition_of(&self, key: &[u8]) -> Option<u32> {
        match self.partition_count() {
            0 => None,
            1 => Some(0),
            n => self.resolver.partition(key, n),
        }
    }

    /// `Some(P)` when a partition P is being prepared and the key moves to it (its partition under P+1).
    pub fn moving_to_preparing(&self, key: &[u8]) -> Option<u32> {
        self.partitions.preparing.as_ref()?;
        let p = self.partition_count();
        (self.resolver.partition(key, p + 1) == Some(p)).then_some(p)
    }

    fn is_master_of(&self, p: u32) -> bool {
        self.partitions
            .active
            .get(p as usize)
            .and_then(|x| x.master.as_deref())
            == Some(self.self_key.as_str())
    }

    fn is_preparing_master(&self) -> bool {
        self.partitions
            .preparing
            .as_ref()
            .and_then(|x| x.master.as_deref())
            == Some(self.self_key.as_str())
    }

    fn is_member_of(&self, part: Option<&Partition>) -> bool {
        part.is_some_and(|x| {
            x.master.as_deref() == Some(self.self_key.as_str()) || x.slaves.contains(&self.self_key)
        })
    }

    /// Where a read of `key` goes (cluster.md §7.1). `pick` is a random number from the driver's seeded RNG; it
    /// chooses among the read replicas by balance weight.
    pub fn route_read(&self, key: &[u8], pick: u32) -> ReadRoute {
        let Some(p) = self.partition_of(key) else {
            return ReadRoute::Miss;
        };
        if self.standalone || self.is_master_of(p) {
            return ReadRoute::Local;
        }
        let part = &self.partitions.active[p as usize];
        let me_reader = part
            .readers
            .iter()
            .any(|(k, w)| *k == self.self_key && *w > 0);
        if me_reader {
            return ReadRoute::Local;
        }
        match weighted(&part.readers, pick) {
            Some(node) => ReadRoute::Forward(node.to_string()),
            None => ReadRoute::Miss,
        }
    }

    /// Where a write of `key` goes (cluster.md §7.2). `path` is the request's proxy path when it came from another
    /// node.
    pub fn route_write(&self, key: &[u8], path: Option<&ProxyPath>) -> WriteRoute {
        if self.standalone {
            return WriteRoute::Local;
        }
        let Some(p) = self.partition_of(key) else {
            return WriteRoute::NoPartition;
        };
        let replication = path.and_then(ProxyPath::sender_seq).is_some();
        if self.is_master_of(p) && !replication {
            return WriteRoute::Local;
        }
        if let Some(sender) = path.and_then(ProxyPath::sender).filter(|_| replication) {
            // A replicated write (its sender tagged it with a sequence number) is applied here only when it comes
            // from the node that replicates to us: our master (replication to a slave), or, for a key moving to the
            // preparing partition, the key's current master (to the preparing master) or the preparing master (to
            // its slaves). A client write forwarded by our master is not replication, even though our master sent
            // it: the sender forwarded it because its newer map names us master, and applied here on our older
            // map (as a slave) it would be acknowledged without reaching the other slaves (core simulator, seed
            // 8668). It goes to the master our map names, and a loop is refused.
            let master = self.partitions.active[p as usize]
                .master
                .as_deref()
                .map(str::as_bytes);
            let from_master = master == Some(sender);
            if from_master && self.is_member_of(self.partitions.active.get(p as usize)) {
                return WriteRoute::Local;
            }
            if self.moving_to_preparing(key).is_some() {
                let prep = self.partitions.preparing.as_ref();
                let from_prep_master =
                    prep.and_then(|x| x.master.as_deref()).map(str::as_bytes) == Some(sender);
                if (from_master && self.is_preparing_master())
                    || (from_prep_master && self.is_member_of(prep))
                {
                    return WriteRoute::Local;
                }
            }
        }
        if replication {
            return WriteRoute::NotReplica;
        }
        if path.is_some_and(|path| path.count(self.self_key.as_bytes()) > 0) {
            return WriteRoute::Loop;
        }
        match self.partitions.active[p as usize].master.as_deref() {
            Some(m) => WriteRoute::Forward(m.to_string()),
            None => WriteRoute::NoPartition,
        }
    }

    /// The nodes that receive a write this node ran locally for `key` (cluster.md §8.1): as the partition's master,
    /// its slaves (prepare ones included) and, when the key is moving to the preparing partition, that partition's
    /// master; as the preparing master, its slaves. Empty otherwise (a slave applying replication).
    pub fn replicas(&self, key: &[u8]) -> Replicas {
        let mut out = Replicas::default();
        if self.standalone {
            return out;
        }
        let Some(p) = self.partition_of(key) else {
            return out;
        };
        if self.is_master_of(p) {
            let part = &self.partitions.active[p as usize];
            for s in &part.slaves {
                let active = self
                    .map
                    .nodes
                    .get(s)
                    .is_some_and(|r| r.state == State::Active);
                out.slaves.push((s.clone(), active));
            }
            if self.moving_to_preparing(key).is_some() {
                out.preparing_master = self
                    .partitions
                    .preparing
                    .as_ref()
                    .and_then(|x| x.master.clone());
            }
        } else if self.is_preparing_master() && self.moving_to_preparing(key).is_some() {
            let part = self
                .partitions
                .preparing
                .as_ref()
                .expect("invariant: is_preparing_master checked it");
            for s in &part.slaves {
                let active = self
                    .map
                    .nodes
                    .get(s)
                    .is_some_and(|r| r.state == State::Active);
                out.slaves.push((s.clone(), active));
            }
        }
        out
    }

    /// The nodes that receive a `flush_all` this node ran: the slaves of the partition it is master of (active or
    /// preparing). Empty for a slave or a proxy.
    pub fn flush_replicas(&self) -> Replicas {
        let mut out = Replicas::default();
        if self.standalone {
            return out;
        }
        let part = match self.my_role() {
            (Role::Master, _, Some(p), _) if self.is_master_of(p) => {
                self.partitions.active.get(p as usize)
            }
            _ if self.is_preparing_master() => self.partitions.preparing.as_ref(),
            _ => None,
        };
        for s in part.map(|p| &p.slaves[..]).unwrap_or_default() {
            let active = self
                .map
                .nodes
                .get(s)
                .is_some_and(|r| r.state == State::Active);
            out.slaves.push((s.clone(), active));
        }
        out
    }

    /// Whether `sender` (a node key) is the node that replicates to this one: the master of the partition (active
    /// or preparing) this node is a slave of. A replicated `flush_all` from anyone else is refused, as a replicated
    /// write is ([`WriteRoute::NotReplica`]).
    pub fn replicates_to_me(&self, sender: &[u8]) -> bool {
        let Some(me) = self.me() else { return false };
        if me.role != Role::Slave {
            return false;
        }
        let part = match me.partition {
            Some(p) if self.is_member_of(self.partitions.active.get(p as usize)) => {
                self.partitions.active.get(p as usize)
            }
            _ => self.partitions.preparing.as_ref(),
        };
        part.and_then(|p| p.master.as_deref()).map(str::as_bytes) == Some(sender)
    }

    /// Every node this node replicates to under this map: the slaves of the partitions it is master of (active or
    /// preparing), and the master of a preparing partition (keys moving to it are replicated there).
    pub fn replication_targets(&self) -> std::collections::BTreeSet<String> {
        let mut wanted = std::collections::BTreeSet::new();
        let parts = &self.partitions;
        for part in parts.active.iter().chain(parts.preparing.iter()) {
            if part.master.as_deref() == Some(self.self_key.as_str()) {
                wanted.extend(part.slaves.iter().cloned());
            }
        }
        if let Some(prep) = parts.preparing.as_ref().and_then(|p| p.master.clone()) {
            if prep != self.self_key {
                wanted.insert(prep);
            }
        }
        wanted
    }

    /// Whether `key`, held by this node as a member of partition `p`, no longer belongs here (a new partition was
    /// activated and the key moved to it): the moved-key cleanup removes it. False once this node is no longer a
    /// member of `p` (the cleanup then stops).
    pub fn moved_away(&self, key: &[u8], p: u32) -> bool {
        self.my_role().2 == Some(p) && self.partition_of(key) != Some(p)
    }

    /// The node record of `key`.
    pub fn node(&self, key: &str) -> Option<&NodeRecord> {
        self.map.nodes.get(key)
    }
}

/// Where a locally run write is replicated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    /// Slaves by key, with whether each is active (sync writes wait for active slaves only).
    pub slaves: Vec<(String, bool)>,
    /// The master of the partition the key is moving to (never waited for, cluster.md §8.2).
    pub preparing_master: Option<String>,
}

impl Replicas {
    /// True when nobody receives the write.
    pub fn is_empty(&self) -> bool {
        self.slaves.is_empty() && self.preparing_master.is_none()
    }
}

/// Picks from `(node, weight)` pairs in proportion to weight, with `pick` a random number; `None` when every weight
/// is 0.
fn weighted(readers: &[(String, u32)], pick: u32) -> Option<&str> {
    let total: u64 = readers.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut at = u64::from(pick) % total;
    for (node, w) in readers {
        let w = u64::from(*w);
        if at < w {
            return Some(node);
        }
        at -= w;
    }
    None
}

/// Views for tests: two partitions (m0 + s0; m1 + s1 in prepare) and a proxy px, every node on port 1.
#[cfg(test)]
pub(crate) mod fixtures {
    use bytes::Bytes;

    use super::*;
    use crate::keys::PartitionParams;

    pub(crate) fn rec(
        name: &str,
        role: Role,
        state: State,
        partition: Option<u32>,
        balance: u32,
    ) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            port: 1,
            role,
            state,
            partition,
            balance,
            thread_type: 16,
        }
    }

    pub(crate) fn view(me: &str, nodes: Vec<NodeRecord>) -> ClusterView {
        let map = NodeMap {
            version: 3,
            nodes: nodes.into_iter().map(|r| (r.key(), r)).collect(),
        };
        let resolver = Arc::new(Resolver::new(PartitionParams::default()).unwrap());
        ClusterView::from_map(map, format!("{me}:1"), resolver).unwrap()
    }

    /// Two partitions: m0 (+ slave s0, balance 1) and m1 (+ slave s1 in prepare), and a proxy.
    pub(crate) fn cluster(me: &str) -> ClusterView {
        view(
            me,
            vec![
                rec("m0", Role::Master, State::Active, Some(0), 1),
                rec("s0", Role::Slave, State::Active, Some(0), 1),
                rec("m1", Role::Master, State::Active, Some(1), 1),
                rec("s1", Role::Slave, State::Prepare, Some(1), 0),
                rec("px", Role::Proxy, State::Active, None, 0),
            ],
        )
    }

    pub(crate) fn path(nodes: &[&str]) -> ProxyPath {
        ProxyPath(
            nodes
                .iter()
                .map(|n| Bytes::copy_from_slice(n.as_bytes()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    /// `cluster()` with s1 in `state` under map `version`.
    fn s1_in(state: State, version: u64) -> ClusterView {
        let mut v = cluster("s1");
        let mut map = v.map().clone();
        map.version = version;
        map.nodes.get_mut("s1:1").unwrap().state = state;
        v = v.with_map(map).unwrap();
        v
    }

    #[test]
    fn reconstruction_starts_on_prepare_and_restarts_after_a_missed_map() {
        let building = Some((Role::Slave, 1));
        // proxy/active -> slave/prepare, or down -> prepare: a copy starts.
        assert_eq!(
            s1_in(State::Down, 3).starts_reconstruction(&s1_in(State::Prepare, 4)),
            building
        );
        // Still prepare in the next version: the copy running goes on.
        assert_eq!(
            s1_in(State::Prepare, 3).starts_reconstruction(&s1_in(State::Prepare, 4)),
            None
        );
        // Still prepare, but versions 4..5 were never seen (the index may have marked it down and up): start over.
        assert_eq!(
            s1_in(State::Prepare, 3).starts_reconstruction(&s1_in(State::Prepare, 6)),
            building
        );
        // Active, or not being built: nothing to copy.
        assert_eq!(
            s1_in(State::Prepare, 3).starts_reconstruction(&s1_in(State::Active, 9)),
            None
        );
        assert_eq!(cluster("px").starts_reconstruction(&cluster("px")), None);
    }

    // `key0` is partition 0 and `foo` partition 1 of 2 with the simple hash (cluster.md §9.2).

    #[test]
    fn reads_are_local_on_members_and_spread_by_weight_elsewhere() {
        assert_eq!(cluster("m0").route_read(b"key0", 0), ReadRoute::Local);
        assert_eq!(cluster("s0").route_read(b"key0", 0), ReadRoute::Local);
        let px = cluster("px");
        let picks: Vec<_> = (0..4).map(|i| px.route_read(b"key0", i)).collect();
        assert!(picks.contains(&ReadRoute::Forward("m0:1".into())));
        assert!(picks.contains(&ReadRoute::Forward("s0:1".into())));
        // The slave in prepare has weight 0: reads of partition 1 go to its master only.
        for i in 0..4 {
            assert_eq!(px.route_read(b"foo", i), ReadRoute::Forward("m1:1".into()));
        }
        // A slave with balance 0 does not serve its own partition's reads.
        assert_eq!(
            cluster("s1").route_read(b"foo", 0),
            ReadRoute::Forward("m1:1".into())
        );
    }

    #[test]
    fn writes_go_to_the_master_and_replication_is_applied_locally() {
        assert_eq!(cluster("m0").route_write(b"key0", None), WriteRoute::Local);
        assert_eq!(
            cluster("m0").route_write(b"foo", None),
            WriteRoute::Forward("m1:1".into())
        );
        assert_eq!(
            cluster("px").route_write(b"foo", None),
            WriteRoute::Forward("m1:1".into())
        );
        // A slave forwards client writes (fencing) but applies replicated ones (tagged with the master's
        // replication sequence number).
        assert_eq!(
            cluster("s0").route_write(b"key0", None),
            WriteRoute::Forward("m0:1".into())
        );
        assert_eq!(
            cluster("s0").route_write(b"key0", Some(&path(&["m0:1#17"]))),
            WriteRoute::Local
        );
        assert_eq!(
            cluster("s1").route_write(b"foo", Some(&path(&["m1:1#3"]))),
            WriteRoute::Local
        );
        // ... but only from its master: a client write forwarded on a stale map goes to the master.
        assert_eq!(
            cluster("s0").route_write(b"key0", Some(&path(&["px:1"]))),
            WriteRoute::Forward("m0:1".into())
        );
        // A client write our master forwarded (its newer map names us master) is not replication: applied here
        // as a slave it would be acknowledged without the other slaves (core simulator, seed 8668). It goes to
        // the master our map names (which, no longer master, sees itself in the path and refuses the loop).
        assert_eq!(
            cluster("s0").route_write(b"key0", Some(&path(&["px:1", "m0:1"]))),
            WriteRoute::Forward("m0:1".into())
        );
        // Replication from a node that is not our master is refused, not forwarded (fencing; maps disagreeing).
        for (me, from) in [("s0", "m1:1#3"), ("px", "m0:1#3"), ("m0", "s0:1#3")] {
            assert_eq!(
                cluster(me).route_write(b"key0", Some(&path(&[from]))),
                WriteRoute::NotReplica
            );
        }
        // A write that already passed through this node is a loop.
        assert_eq!(
            cluster("px").route_write(b"foo", Some(&path(&["px:1"]))),
            WriteRoute::Loop
        );
    }

    #[test]
    fn replicas_of_a_master_include_prepare_slaves() {
        let r = cluster("m1").replicas(b"foo");
        assert_eq!(r.slaves, vec![("s1:1".to_string(), false)]);
        assert_eq!(
            cluster("m0").replicas(b"key0").slaves,
            vec![("s0:1".to_string(), true)]
        );
        assert!(cluster("s0").replicas(b"key0").is_empty());
        assert!(cluster("px").replicas(b"key0").is_empty());
    }

    #[test]
    fn preserved_partition_has_no_master() {
        let v = view(
            "px",
            vec![
                rec("m0", Role::Master, State::Down, Some(0), 1),
                rec("px", Role::Proxy, State::Active, None, 0),
            ],
        );
        assert_eq!(v.route_write(b"key0", None), WriteRoute::NoPartition);
        assert_eq!(v.route_read(b"key0", 0), ReadRoute::Miss);
        let empty = view("px", vec![rec("px", Role::Proxy, State::Active, None, 0)]);
        assert_eq!(empty.route_write(b"key0", None), WriteRoute::NoPartition);
    }

    #[test]
    fn a_preparing_partition_receives_the_keys_moving_to_it() {
        let v = |me| {
            view(
                me,
                vec![
                    rec("m0", Role::Master, State::Active, Some(0), 1),
                    rec("n1", Role::Master, State::Prepare, Some(1), 1),
                    rec("t1", Role::Slave, State::Prepare, Some(1), 0),
                ],
            )
        };
        // With one active partition every key is partition 0; `foo` moves to partition 1 of 2.
        assert_eq!(v("m0").moving_to_preparing(b"foo"), Some(1));
        assert_eq!(v("m0").moving_to_preparing(b"key0"), None);
        let r = v("m0").replicas(b"foo");
        assert_eq!(r.preparing_master.as_deref(), Some("n1:1"));
        assert_eq!(v("m0").replicas(b"key0").preparing_master, None);
        // The preparing master applies the forwarded write and replicates it to its own slaves, who apply it.
        assert_eq!(
            v("n1").route_write(b"foo", Some(&path(&["m0:1#4"]))),
            WriteRoute::Local
        );
        assert_eq!(
            v("t1").route_write(b"foo", Some(&path(&["n1:1#9"]))),
            WriteRoute::Local
        );
        assert_eq!(
            v("t1").route_write(b"foo", Some(&path(&["m0:1#4"]))),
            WriteRoute::NotReplica
        );
        assert_eq!(
            v("n1").replicas(b"foo").slaves,
            vec![("t1:1".to_string(), false)]
        );
        // Client writes still go to the current master, and reads too.
        assert_eq!(
            v("n1").route_write(b"foo", None),
            WriteRoute::Forward("m0:1".into())
        );
        assert_eq!(
            v("n1").route_read(b"foo", 0),
            ReadRoute::Forward("m0:1".into())
        );
    }

    #[test]
    fn versions_only_move_forward() {
        let v = cluster("m0");
        assert!(v.accepts_version(3) && v.accepts_version(4) && !v.accepts_version(2));
        assert!(ClusterView::standalone("a:1".into(), v.resolver.clone()).accepts_version(0));
    }
}
