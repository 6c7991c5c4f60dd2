//! Tests of [`Group`] with several members on one explicit clock: a bus delivers their Raft messages (or drops
//! them across a cut), each member's store is a map that survives its restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::protocol::admin::NodeAddr;

/// One member: its group (None while down), its disk, its admin connection.
struct Member {
    addr: String,
    group: Option<Group>,
    disk: BTreeMap<Vec<u8>, Vec<u8>>,
    conn: ConnId,
    /// Replies that came later, by connection.
    replies: Vec<(ConnId, Reply)>,
    forwards: Vec<(ConnId, String, IndexCommand)>,
    /// (log version) of every map applied, in order.
    applied: Vec<Snapshot>,
    /// Probes asked for and not answered yet.
    probes: Vec<String>,
}

impl Member {
    /// A member that is not started yet, with an empty disk.
    fn new(addr: &str) -> Member {
        Member {
            addr: addr.to_owned(),
            group: None,
            disk: BTreeMap::new(),
            conn: ConnId(0),
            replies: Vec::new(),
            forwards: Vec::new(),
            applied: Vec::new(),
            probes: Vec::new(),
        }
    }
}

struct Bus {
    now: Instant,
    members: Vec<Member>,
    /// Members (by position) cut off from every other.
    cut: BTreeSet<usize>,
    seed: u64,
}

fn addr(i: usize) -> String {
    format!("127.0.0.1:{}", 12120 + i)
}

fn params() -> IndexParams {
    IndexParams::default()
}

impl Bus {
    fn new(n: usize, seed: u64) -> Bus {
        let now = Instant::now();
        let all: Vec<String> = (0..n).map(addr).collect();
        let mut bus = Bus {
            now,
            members: Vec::new(),
            cut: BTreeSet::new(),
            seed,
        };
        for a in &all {
            bus.members.push(Member::new(a));
        }
        for i in 0..n {
            let members = if n == 1 { Vec::new() } else { all.clone() };
            bus.start(i, members, false);
        }
        bus
    }

    fn start(&mut self, i: usize, members: Vec<String>, join: bool) {
        let m = &mut self.members[i];
        let settings = GroupSettings {
            me: m.addr.clone(),
            members,
            join,
            election_timeout: DEFAULT_ELECTION_TIMEOUT,
        };
        let stored = m.disk.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let seed = self.seed.wrapping_mul(31).wrapping_add(i as u64);
        // Members' ticks out of phase, as real processes' are.
        let phase = Duration::from_millis(7 * i as u64);
        let mut g =
            Group::new(params(), settings, stored, None, seed, self.now + phase).expect("start");
        m.conn = g.open_connection();
        m.group = Some(g);
        self.drain();
    }

    fn stop(&mut self, i: usize) {
        self.members[i].group = None;
    }

    fn group(&mut self, i: usize) -> &mut Group {
        self.members[i].group.as_mut().expect("member up")
    }

    /// Delivers every output until none is left.
    fn drain(&mut self) {
        loop {
            let mut sends = Vec::new();
            // Pushes are answered OK (the nodes of these tests take every map).
            let mut pushes = Vec::new();
            for (i, m) in self.members.iter_mut().enumerate() {
                let Some(g) = m.group.as_mut() else { continue };
                while let Some(out) = g.poll_output() {
                    match out {
                        Output::Store(ops) => {
                            for op in ops {
                                match op {
                                    KvOp::Put { key, value } => {
                                        m.disk.insert(key, value);
                                    }
                                    KvOp::DeleteRange { from, to } => {
                                        let doomed: Vec<_> = m
                                            .disk
                                            .range(from..to)
                                            .map(|(k, _)| k.clone())
                                            .collect();
                                        for k in doomed {
                                            m.disk.remove(&k);
                                        }
                                    }
                                }
                            }
                        }
                        Output::Send { to, bytes } => sends.push((i, to, bytes)),
                        Output::Applied(s) => m.applied.push(s),
                        Output::Reply { conn, outcome } => m.replies.push((conn, outcome.reply)),
                        Output::Forward { conn, to, command } => {
                            m.forwards.push((conn, to, command))
                        }
                        Output::Index(Action::Probe { node, .. }) => m.probes.push(node),
                        Output::Index(Action::Push { node, version, .. }) => {
                            pushes.push((i, node, version))
                        }
                        Output::Index(_) => {}
                        Output::Fatal(why) => panic!("fatal at {}: {why}", m.addr),
                    }
                }
            }
            let now = self.now;
            for (i, node, version) in &pushes {
                if let Some(g) = self.members[*i].group.as_mut() {
                    g.handle_push_result(now, node, *version, true);
                }
            }
            if sends.is_empty() && pushes.is_empty() {
                return;
            }
            for (from, to, bytes) in sends {
                let Some(j) = self.members.iter().position(|m| m.addr == to) else {
                    continue;
                };
                if self.cut.contains(&from) != self.cut.contains(&j) {
                    continue;
                }
                let now = self.now;
                if let Some(g) = self.members[j].group.as_mut() {
                    g.handle_raft(now, &bytes);
                }
            }
        }
    }

    /// Runs the clock forward by `d` in 2 ms steps.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(2);
            let now = self.now;
            for m in &mut self.members {
                if let Some(g) = m.group.as_mut() {
                    if g.poll_timeout().is_some_and(|t| t <= now) {
                        g.handle_timeout(now);
                    }
                }
            }
            self.drain();
        }
    }

    fn acting(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| {
                self.members[*i]
                    .group
                    .as_ref()
                    .is_some_and(|g| g.status().acting)
            })
            .collect()
    }

    /// Runs until exactly one member acts (at most `limit`); returns it and how long it took.
    fn until_leader(&mut self, limit: Duration) -> (usize, Duration) {
        let start = self.now;
        while self.now - start < limit {
            let a = self.acting();
            if a.len() == 1 {
                return (a[0], self.now - start);
            }
            self.run(Duration::from_millis(2));
        }
        panic!(
            "no single acting leader within {limit:?}: {:?}",
            self.acting()
        );
    }

    /// `cmd` on member `i`'s admin connection; the reply now or once it came.
    fn command(&mut self, i: usize, cmd: IndexCommand) -> Option<Reply> {
        let now = self.now;
        let conn = self.members[i].conn;
        let answer = self.group(i).handle_command(now, conn, cmd);
        self.drain();
        if let Some(a) = answer {
            return Some(a.reply);
        }
        self.run(Duration::from_millis(50));
        let m = &mut self.members[i];
        let at = m.replies.iter().position(|(c, _)| *c == conn)?;
        Some(m.replies.remove(at).1)
    }
}

fn node_add(name: &str) -> IndexCommand {
    IndexCommand::NodeAdd(NodeAddr {
        name: name.into(),
        port: 12121,
    })
}

fn versions(bus: &Bus, i: usize) -> Vec<u64> {
    bus.members[i].applied.iter().map(|s| s.version).collect()
}

#[test]
fn a_group_of_one_acts_at_once_and_answers_after_applying() {
    let mut bus = Bus::new(1, 1);
    assert_eq!(bus.acting(), vec![0]);
    let st = bus.group(0).status();
    assert_eq!(
        (st.role, st.members.clone()),
        (GroupRole::Leader, vec![addr(0)])
    );
    let reply = bus.command(0, node_add("n1")).expect("answered");
    assert!(matches!(reply, Reply::Lines(_)), "{reply:?}");
    assert_eq!(bus.group(0).applied().version, 1);
    assert_eq!(versions(&bus, 0), vec![1]);
}

#[test]
fn three_members_elect_one_leader_and_apply_the_same_maps() {
    let mut bus = Bus::new(3, 7);
    let (leader, took) = bus.until_leader(Duration::from_secs(3));
    assert!(
        took <= Duration::from_millis(1100),
        "first election took {took:?}"
    );
    for name in ["n1", "n2", "n3"] {
        let r = bus.command(leader, node_add(name)).expect("answered");
        assert!(matches!(r, Reply::Lines(_)), "{r:?}");
    }
    bus.run(Duration::from_millis(300));
    for i in 0..3 {
        assert_eq!(versions(&bus, i), vec![1, 2, 3], "member {i}");
        assert_eq!(bus.group(i).node_map().nodes.len(), 3);
    }
    assert_eq!(bus.acting(), vec![leader]);
}

#[test]
fn a_follower_forwards_writes_answers_reads_and_redirects_sessions() {
    let mut bus = Bus::new(3, 3);
    let (leader, _) = bus.until_leader(Duration::from_secs(3));
    bus.command(leader, node_add("n1"));
    bus.run(Duration::from_millis(200));
    let f = (leader + 1) % 3;
    assert_eq!(bus.command(f, IndexCommand::Ping), Some(Reply::Ok));
    match bus.command(f, IndexCommand::Stats(crate::protocol::StatsGroup::Nodes)) {
        Some(Reply::Stats(lines)) => assert!(!lines.is_empty()),
        other => panic!("stats nodes: {other:?}"),
    }
    assert_eq!(bus.command(f, node_add("n2")), None);
    let (_, to, _) = bus.members[f].forwards.pop().expect("forwarded");
    assert_eq!(to, addr(leader));
    let session = IndexCommand::NodeSession(NodeAddr {
        name: "n1".into(),
        port: 12121,
    });
    let want = format!("not the index leader; leader is {}", addr(leader));
    assert_eq!(
        bus.command(f, session),
        Some(Reply::Error(ErrorReply::Server(want.into())))
    );
}

#[test]
fn a_killed_leader_is_replaced_within_a_second_and_no_committed_map_is_lost() {
    let seeds = std::env::var("FLARE_GROUP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut worst = Duration::ZERO;
    for seed in 0..seeds {
        let mut bus = Bus::new(3, seed);
        let (leader, _) = bus.until_leader(Duration::from_secs(3));
        bus.command(leader, node_add("n1"));
        bus.command(leader, node_add("n2"));
        bus.stop(leader);
        let (next, took) = bus.until_leader(Duration::from_secs(3));
        assert_ne!(next, leader);
        worst = worst.max(took);
        assert!(
            took <= Duration::from_millis(1000),
            "seed {seed}: new leader after {took:?}"
        );
        assert_eq!(bus.group(next).applied().version, 2, "seed {seed}");
        let r = bus.command(next, node_add("n3")).expect("answered");
        assert!(matches!(r, Reply::Lines(_)), "seed {seed}: {r:?}");
        // The old leader restarts from its disk and follows with the same maps.
        bus.start(leader, (0..3).map(addr).collect(), false);
        bus.run(Duration::from_millis(500));
        assert_eq!(bus.acting(), vec![next], "seed {seed}");
        let want = bus.group(next).applied().clone();
        assert_eq!(bus.group(leader).applied(), &want, "seed {seed}");
    }
    eprintln!("{seeds} seeds: the slowest new leader took {worst:?}");
}

#[test]
fn a_leader_cut_off_alone_cannot_change_the_map_and_steps_down() {
    let mut bus = Bus::new(3, 11);
    let (leader, _) = bus.until_leader(Duration::from_secs(3));
    bus.command(leader, node_add("n1"));
    bus.run(Duration::from_millis(200));
    bus.cut.insert(leader);
    let now = bus.now;
    let conn = bus.members[leader].conn;
    let held = bus
        .group(leader)
        .handle_command(now, conn, node_add("lost"));
    assert!(held.is_none(), "a write waits for its commit");
    bus.drain();
    bus.run(Duration::from_secs(2));
    // Refused once it noticed it lost its quorum; never applied.
    let replies = &bus.members[leader].replies;
    assert!(
        matches!(
            replies.last(),
            Some((_, Reply::Error(ErrorReply::Server(_))))
        ),
        "{replies:?}"
    );
    assert_eq!(bus.group(leader).applied().version, 1);
    assert!(!bus.group(leader).status().acting);
    let acting = bus.acting();
    assert_eq!(acting.len(), 1);
    assert_ne!(acting[0], leader);
    // Healed: it follows the new leader, and the map it proposed alone is nowhere.
    bus.cut.clear();
    bus.run(Duration::from_secs(1));
    for i in 0..3 {
        assert_eq!(versions(&bus, i), vec![1], "member {i}");
        assert!(!bus.group(i).node_map().nodes.contains_key("lost:12121"));
    }
}

#[test]
fn a_joining_member_catches_up_from_a_snapshot_and_votes() {
    let mut bus = Bus::new(3, 5);
    let (leader, _) = bus.until_leader(Duration::from_secs(3));
    for i in 0..(COMPACT_EVERY + 3) {
        bus.command(leader, node_add(&format!("n{i}")));
    }
    bus.members.push(Member::new(&addr(3)));
    bus.start(3, (0..4).map(addr).collect(), true);
    assert_eq!(
        bus.command(leader, IndexCommand::IndexAdd(addr(3))),
        Some(Reply::Ok)
    );
    bus.run(Duration::from_secs(1));
    let want = bus.group(leader).applied().clone();
    assert_eq!(bus.group(3).applied(), &want);
    assert_eq!(bus.group(3).status().members.len(), 4);
    // With four voters, losing two of the old ones stops the group; losing one does not.
    let other = (0..3).find(|i| *i != leader).expect("a follower");
    bus.stop(other);
    let r = bus.command(leader, node_add("after")).expect("answered");
    assert!(matches!(r, Reply::Lines(_)), "{r:?}");
    assert_eq!(bus.group(3).applied().version, COMPACT_EVERY + 4);
}

#[test]
fn a_member_is_removed_and_the_leader_hands_over_before_removing_itself() {
    let mut bus = Bus::new(3, 9);
    let (leader, _) = bus.until_leader(Duration::from_secs(3));
    let f = (leader + 1) % 3;
    assert_eq!(
        bus.command(leader, IndexCommand::IndexRemove(addr(f))),
        Some(Reply::Ok)
    );
    bus.run(Duration::from_millis(200));
    assert_eq!(bus.group(leader).status().members.len(), 2);
    match bus.command(leader, IndexCommand::IndexRemove(addr(leader))) {
        Some(Reply::Error(ErrorReply::Server(why))) => {
            assert!(why.contains("handed over"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let (next, _) = bus.until_leader(Duration::from_secs(3));
    assert_ne!(next, leader);
}

#[test]
fn the_same_seed_elects_the_same_leader_at_the_same_moment() {
    let run = |seed| {
        let mut bus = Bus::new(5, seed);
        let (l, took) = bus.until_leader(Duration::from_secs(5));
        (l, took, bus.group(l).status().term)
    };
    for seed in 0..5 {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
}

#[test]
fn a_restarted_single_server_keeps_its_map() {
    let mut bus = Bus::new(1, 2);
    bus.command(0, node_add("n1"));
    bus.command(0, node_add("n2"));
    bus.stop(0);
    bus.start(0, Vec::new(), false);
    assert_eq!(bus.acting(), vec![0]);
    assert_eq!(bus.group(0).applied().version, 2);
    assert_eq!(bus.group(0).node_map().nodes.len(), 2);
}

proptest! {
    #[test]
    fn snapshot_data_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_snapshot_data(&bytes);
    }
}

#[test]
fn a_single_index_servers_map_of_an_earlier_release_is_taken_over() {
    // What an earlier release persisted: a map at version 7 with one node, no Raft log.
    let mut old = Bus::new(1, 4);
    for i in 0..7 {
        old.command(0, node_add(&format!("n{i}")));
    }
    let legacy = old.group(0).applied().clone();
    assert_eq!(legacy.version, 7);
    let now = Instant::now();
    let mut g = Group::new(
        params(),
        GroupSettings::alone(&addr(0)),
        Vec::new(),
        Some(legacy.clone()),
        1,
        now,
    )
    .expect("start");
    let mut applied = Vec::new();
    while let Some(out) = g.poll_output() {
        if let Output::Applied(s) = out {
            applied.push(s);
        }
    }
    assert_eq!(g.applied(), &legacy);
    assert_eq!(applied, vec![legacy.clone()]);
    assert!(g.status().acting);
    assert_eq!(g.node_map().nodes.len(), 7);
}

#[test]
fn a_wiped_member_catches_up_by_log_and_after_compaction_by_snapshot() {
    let mut bus = Bus::new(3, 13);
    let (leader, _) = bus.until_leader(Duration::from_secs(3));
    let f = (leader + 1) % 3;
    for round in 0..2 {
        // Few changes: the log still has them all; many: the leader compacted them into a snapshot.
        let changes = if round == 0 { 3 } else { COMPACT_EVERY + 5 };
        for i in 0..changes {
            bus.command(leader, node_add(&format!("r{round}n{i}")));
        }
        bus.stop(f);
        bus.members[f].disk.clear();
        bus.start(f, (0..3).map(addr).collect(), false);
        bus.run(Duration::from_secs(1));
        let want = bus.group(leader).applied().clone();
        assert_eq!(bus.group(f).applied(), &want, "round {round}");
        assert_eq!(bus.acting(), vec![leader], "round {round}");
    }
}

impl Bus {
    /// Runs until member `i` asks to probe `node`, then answers it failed.
    fn fail_probe(&mut self, i: usize, node: &str) {
        let start = self.now;
        while !self.members[i].probes.iter().any(|p| p == node) {
            assert!(
                self.now - start < Duration::from_secs(30),
                "no probe of {node} from member {i}"
            );
            self.run(Duration::from_millis(20));
        }
        self.members[i].probes.retain(|p| p != node);
        let now = self.now;
        self.group(i)
            .handle_probe_result(now, node, super::super::ProbeResult::default());
        self.drain();
    }

    fn state(&mut self, i: usize, node: &str) -> crate::node_map::State {
        self.group(i).node_map().nodes[node].state
    }
}

#[test]
fn a_new_leader_counts_a_nodes_failures_afresh() {
    use crate::node_map::State;
    let mut bus = Bus::new(3, 17);
    let (leader, _) = bus.until_leader(Duration::from_secs(3));
    bus.command(leader, node_add("n1"));
    let key = "n1:12121";
    // Two failures of three on the old leader: not down.
    bus.fail_probe(leader, key);
    bus.fail_probe(leader, key);
    assert_eq!(bus.state(leader, key), State::Active);
    bus.stop(leader);
    let (next, _) = bus.until_leader(Duration::from_secs(3));
    // One more failure seen by the new leader is its first: still active; its third makes the node down.
    bus.fail_probe(next, key);
    assert_eq!(
        bus.state(next, key),
        State::Active,
        "failures before it led counted"
    );
    bus.fail_probe(next, key);
    bus.fail_probe(next, key);
    bus.run(Duration::from_millis(100));
    assert_eq!(bus.state(next, key), State::Down);
    assert_eq!(
        bus.group(next)
            .applied()
            .nodes
            .iter()
            .find(|n| n.key() == key)
            .map(|n| n.state),
        Some(State::Down)
    );
}
