//! The index's transitions: a table of role and state changes (start map, admin line, wanted map or refusal),
//! activation, partition sizing, failover and successor choice, node down/up, registration, map validation.

use super::*;
use crate::keys::{HashAlgorithm, PartitionParams};
use crate::protocol::admin::{parse_line, AdminCommand, IndexCommand};

/// A small resolver: partition-size 16, V = 256.
fn resolver() -> Resolver {
    Resolver::new(PartitionParams {
        partition_size: 16,
        virtual_slots: 256,
        hint: 1,
        hash: HashAlgorithm::Simple,
    })
    .unwrap()
}

/// A cluster from `"<name> <role> <state> <partition|-> <balance>"` lines (port 12121, thread types 16.. in
/// line order).
fn cluster(lines: &[&str]) -> MapState {
    let mut c = MapState::default();
    for l in lines {
        let r = record_from(l, c.next_thread_type);
        c.next_thread_type += 1;
        c.map.nodes.insert(r.key(), r);
    }
    c
}

fn record_from(line: &str, thread_type: u32) -> NodeRecord {
    let f: Vec<&str> = line.split_whitespace().collect();
    NodeRecord {
        name: f[0].into(),
        port: 12121,
        role: Role::parse(f[1]).unwrap(),
        state: State::parse(f[2]).unwrap(),
        partition: f[3].parse().ok(),
        balance: f[4].parse().unwrap(),
        thread_type,
    }
}

/// The map as the same lines, in key order.
fn lines(c: &MapState) -> Vec<String> {
    c.map
        .nodes
        .values()
        .map(|n| {
            let p = n.partition.map_or("-".to_string(), |p| p.to_string());
            format!("{} {} {} {p} {}", n.name, n.role, n.state, n.balance)
        })
        .collect()
}

/// Runs one admin line (keys use port 12121) against the transitions.
fn run_with(c: &MapState, line: &str, auto_activate: bool) -> Result<Step, Refusal> {
    let Ok(AdminCommand::Index(cmd)) = parse_line(line.as_bytes()) else {
        panic!("not an index command: {line}")
    };
    let none = BTreeMap::new();
    match cmd {
        IndexCommand::NodeRole {
            node,
            role,
            balance,
            partition,
            ..
        } => set_role(c, &node.key(), role, balance, partition, &resolver()),
        IndexCommand::NodeState { node, state, .. } => {
            set_state(c, &node.key(), state, auto_activate, &none)
        }
        IndexCommand::NodeRemove(node) => remove(c, &node.key()),
        IndexCommand::NodeAdd(node) => register(c, &node, 64, &none).map(|(s, _)| s),
        other => panic!("not a transition: {other:?}"),
    }
}

enum Want {
    Map(&'static [&'static str]),
    Same,
    Refused(&'static str),
}

fn check(name: &str, start: &[&str], line: &str, want: Want) {
    let c = cluster(start);
    let got = run_with(&c, line, false);
    match (want, got) {
        (Want::Map(m), Ok(Step::Changed { cluster, .. })) => {
            assert_eq!(lines(&cluster), m, "{name}: {line}");
            validate_map(&cluster.map, cluster.next_thread_type)
                .unwrap_or_else(|e| panic!("{name}: invalid result: {e}"));
        }
        (Want::Same, Ok(Step::Unchanged)) => {}
        (Want::Refused(msg), Err(e)) => {
            assert!(
                e.to_string().contains(msg),
                "{name}: {e} should contain {msg:?}"
            )
        }
        (_, got) => panic!("{name}: {line}: unexpected {got:?}"),
    }
}

const P0: &[&str] = &["m0 master active 0 1", "x proxy active - 0"];
const P1_SLAVES: &[&str] = &[
    "m0 master active 0 1",
    "s1 slave active 0 1",
    "s2 slave prepare 0 0",
    "x proxy active - 0",
];
const PREPARING: &[&str] = &[
    "m0 master active 0 1",
    "n1 master prepare 1 1",
    "t1 slave prepare 1 2",
    "x proxy active - 0",
];

/// cluster.md §6.1, one row (or one refusal) per case.
#[test]
fn transition_table() {
    use Want::*;
    let cases: Vec<(&str, &[&str], &str, Want)> = vec![
        (
            "down refuses node role",
            &["d proxy down - 0"],
            "node role d 12121 slave 0 0",
            Refused("node d:12121 is down"),
        ),
        (
            "prepare is never set",
            P0,
            "node state x 12121 prepare",
            Refused("state prepare cannot be set"),
        ),
        (
            "first master is active",
            &["x proxy active - 0"],
            "node role x 12121 master 1 0",
            Map(&["x master active 0 1"]),
        ),
        (
            "first master needs balance",
            &["x proxy active - 0"],
            "node role x 12121 master 0 0",
            Refused("balance sum of partition 0 would be 0"),
        ),
        (
            "missing balance",
            &["x proxy active - 0"],
            "node role x 12121 master",
            Refused("balance -1 is invalid"),
        ),
        (
            "missing partition",
            &["x proxy active - 0"],
            "node role x 12121 master 1",
            Refused("partition is missing"),
        ),
        (
            "next partition prepares",
            P0,
            "node role x 12121 master 2 1",
            Map(&["m0 master active 0 1", "x master prepare 1 2"]),
        ),
        (
            "partition with a master",
            P0,
            "node role x 12121 master 1 0",
            Refused("partition 0 already has master m0:12121"),
        ),
        (
            "partition beyond the next",
            P0,
            "node role x 12121 master 1 2",
            Refused("partition 2 is not the next partition 1"),
        ),
        (
            "second preparing partition",
            PREPARING,
            "node role x 12121 master 1 1",
            Refused("already being prepared by n1:12121"),
        ),
        (
            "replace a preserved master",
            &["m0 master down 0 1", "x proxy active - 0"],
            "node role x 12121 master 3 0",
            Map(&["m0 proxy down - 0", "x master active 0 3"]),
        ),
        (
            "slave of an active partition keeps its balance for when it is active",
            P0,
            "node role x 12121 slave 5 0",
            Map(&["m0 master active 0 1", "x slave prepare 0 5"]),
        ),
        (
            "slave of the preparing partition",
            PREPARING,
            "node role x 12121 slave 3 1",
            Map(&[
                "m0 master active 0 1",
                "n1 master prepare 1 1",
                "t1 slave prepare 1 2",
                "x slave prepare 1 3",
            ]),
        ),
        (
            "slave of no partition",
            P0,
            "node role x 12121 slave 0 1",
            Refused("partition 1 does not exist (partition count 1)"),
        ),
        (
            "slave of a preserved partition",
            &["m0 master down 0 1", "x proxy active - 0"],
            "node role x 12121 slave 0 0",
            Refused("partition 0 has no master"),
        ),
        ("proxy to proxy", P0, "node role x 12121 proxy", Same),
        (
            "preparing slave balance",
            PREPARING,
            "node role t1 12121 slave 7",
            Map(&[
                "m0 master active 0 1",
                "n1 master prepare 1 1",
                "t1 slave prepare 1 7",
                "x proxy active - 0",
            ]),
        ),
        (
            "active-partition preparing slave balance",
            P1_SLAVES,
            "node role s2 12121 slave 3 0",
            Map(&[
                "m0 master active 0 1",
                "s1 slave active 0 1",
                "s2 slave prepare 0 3",
                "x proxy active - 0",
            ]),
        ),
        (
            "retried slave 0 P is accepted",
            P1_SLAVES,
            "node role s2 12121 slave 0 0",
            Same,
        ),
        (
            "preparing slave gives up",
            P1_SLAVES,
            "node role s2 12121 proxy 0 -1",
            Map(&[
                "m0 master active 0 1",
                "s1 slave active 0 1",
                "s2 proxy active - 0",
                "x proxy active - 0",
            ]),
        ),
        (
            "preparing slave to master",
            P1_SLAVES,
            "node role s2 12121 master 1 0",
            Refused("promotion only happens through failover"),
        ),
        (
            "slave finished its dump",
            P1_SLAVES,
            "node state s2 12121 active",
            Map(&[
                "m0 master active 0 1",
                "s1 slave active 0 1",
                "s2 slave active 0 0",
                "x proxy active - 0",
            ]),
        ),
        (
            "active slave balance",
            P1_SLAVES,
            "node role s1 12121 slave 4 0",
            Map(&[
                "m0 master active 0 1",
                "s1 slave active 0 4",
                "s2 slave prepare 0 0",
                "x proxy active - 0",
            ]),
        ),
        (
            "active slave, other partition",
            P1_SLAVES,
            "node role s1 12121 slave 4 1",
            Refused("is in partition 0, not 1"),
        ),
        (
            "active slave balance sum",
            &["m0 master active 0 0", "s1 slave active 0 1"],
            "node role s1 12121 slave 0 0",
            Refused("balance sum of partition 0 would be 0"),
        ),
        (
            "active slave to proxy",
            P1_SLAVES,
            "node role s1 12121 proxy",
            Map(&[
                "m0 master active 0 1",
                "s1 proxy active - 0",
                "s2 slave prepare 0 0",
                "x proxy active - 0",
            ]),
        ),
        (
            "last reader to proxy",
            &["m0 master active 0 0", "s1 slave active 0 1"],
            "node role s1 12121 proxy",
            Refused("balance sum of partition 0 would be 0"),
        ),
        (
            "active slave to master",
            P1_SLAVES,
            "node role s1 12121 master 1 0",
            Refused("promotion only happens through failover"),
        ),
        (
            "preparing master balance",
            PREPARING,
            "node role n1 12121 master 5 1",
            Map(&[
                "m0 master active 0 1",
                "n1 master prepare 1 5",
                "t1 slave prepare 1 2",
                "x proxy active - 0",
            ]),
        ),
        (
            "preparing master to slave",
            PREPARING,
            "node role n1 12121 slave 1 1",
            Refused("a preparing master can only become a proxy"),
        ),
        (
            "preparing master to proxy",
            PREPARING,
            "node role n1 12121 proxy",
            Map(&[
                "m0 master active 0 1",
                "n1 proxy active - 0",
                "t1 proxy active - 0",
                "x proxy active - 0",
            ]),
        ),
        (
            "preparing master is ready",
            PREPARING,
            "node state n1 12121 ready",
            Map(&[
                "m0 master active 0 1",
                "n1 master ready 1 1",
                "t1 slave prepare 1 2",
                "x proxy active - 0",
            ]),
        ),
        (
            "ready again is a no-op",
            &["m0 master active 0 1", "n1 master ready 1 1"],
            "node state n1 12121 ready",
            Same,
        ),
        (
            "ready from a slave",
            P1_SLAVES,
            "node state s2 12121 ready",
            Refused("only a preparing master can become ready"),
        ),
        (
            "ready master is activated",
            &["m0 master active 0 1", "n1 master ready 1 1"],
            "node state n1 12121 active",
            Map(&["m0 master active 0 1", "n1 master active 1 1"]),
        ),
        (
            "preparing master is not ready",
            PREPARING,
            "node state n1 12121 active",
            Refused("master n1:12121 is still preparing"),
        ),
        (
            "active master balance",
            P0,
            "node role m0 12121 master 9 0",
            Map(&["m0 master active 0 9", "x proxy active - 0"]),
        ),
        (
            "active master balance sum",
            P0,
            "node role m0 12121 master 0 0",
            Refused("balance sum of partition 0 would be 0"),
        ),
        (
            "active master balance keeps its partition",
            P0,
            "node role m0 12121 master 9",
            Map(&["m0 master active 0 9", "x proxy active - 0"]),
        ),
        (
            "active master to slave",
            P0,
            "node role m0 12121 slave 1 0",
            Refused("set it down (failover), then remove it"),
        ),
        (
            "active master to proxy",
            P0,
            "node role m0 12121 proxy",
            Refused("set it down (failover), then remove it"),
        ),
        (
            "down on down",
            &["d proxy down - 0"],
            "node state d 12121 down",
            Same,
        ),
        // flare-admin reconstruct: the slave must come back as a proxy (admin-tool.md §6 #10), not as a slave
        // that the tool's flush_all then empties.
        (
            "operator sets an active slave down",
            P1_SLAVES,
            "node state s1 12121 down",
            Map(&[
                "m0 master active 0 1",
                "s1 proxy down - 0",
                "s2 slave prepare 0 0",
                "x proxy active - 0",
            ]),
        ),
        (
            "operator sets a preparing slave down",
            P1_SLAVES,
            "node state s2 12121 down",
            Map(&[
                "m0 master active 0 1",
                "s1 slave active 0 1",
                "s2 proxy down - 0",
                "x proxy active - 0",
            ]),
        ),
        ("active on active", P0, "node state x 12121 active", Same),
        (
            "down node comes up",
            &["d proxy down - 0"],
            "node state d 12121 active",
            Map(&["d proxy active - 0"]),
        ),
        (
            "remove a down node",
            &["d proxy down - 0", "x proxy active - 0"],
            "node remove d 12121",
            Map(&["x proxy active - 0"]),
        ),
        (
            "remove a live node",
            P0,
            "node remove x 12121",
            Refused("node x:12121 is active: only a down node can be removed"),
        ),
        (
            "remove a preserved master",
            &["m0 master down 0 1"],
            "node remove m0 12121",
            Refused("preserved master of partition 0"),
        ),
        (
            "unknown node",
            P0,
            "node role zz 12121 slave 0 0",
            Refused("no such node zz:12121"),
        ),
        (
            "proxy in prepare is reset first",
            &["m0 master active 0 1", "x proxy prepare - 0"],
            "node role x 12121 slave 0 0",
            Map(&["m0 master active 0 1", "x slave prepare 0 0"]),
        ),
        (
            "proxy in ready is reset by proxy",
            &["x proxy ready - 0"],
            "node role x 12121 proxy",
            Map(&["x proxy active - 0"]),
        ),
        (
            "negative partition",
            P0,
            "node role x 12121 slave 0 -2",
            Refused("invalid partition -2"),
        ),
        (
            "balance too large",
            P0,
            "node role m0 12121 master 2147483648 0",
            Refused("balance 2147483648 is invalid"),
        ),
    ];
    for (name, start, line, want) in cases {
        check(name, start, line, want);
    }
}

#[test]
fn auto_activate_turns_ready_into_active_at_once() {
    let c = cluster(PREPARING);
    let Ok(Step::Changed { cluster, prior }) = run_with(&c, "node state n1 12121 ready", true)
    else {
        panic!("not changed")
    };
    assert_eq!(cluster.map.nodes["n1:12121"].state, State::Active);
    assert_eq!(prior, ["n1:12121", "t1:12121"].map(String::from).into());
}

#[test]
fn activation_makes_master_and_slaves_prior() {
    let c = cluster(&[
        "m0 master active 0 1",
        "n1 master ready 1 1",
        "t1 slave prepare 1 0",
        "u1 slave active 1 1",
    ]);
    let Ok(Step::Changed { prior, cluster }) = run_with(&c, "node state n1 12121 active", false)
    else {
        panic!("not changed")
    };
    assert_eq!(
        prior,
        ["n1:12121", "t1:12121", "u1:12121"]
            .map(String::from)
            .into()
    );
    assert_eq!(partition_count(&cluster.map), 2);
}

#[test]
fn partition_size_and_empty_partitions_are_refused() {
    // partition-size 16: partitions 0..=14 can exist.
    let mut start = vec!["x proxy active - 0".to_string()];
    for p in 0..15 {
        start.push(format!("m{p:02} master active {p} 1"));
    }
    let refs: Vec<&str> = start.iter().map(String::as_str).collect();
    check(
        "partition 15 of size 16",
        &refs,
        "node role x 12121 master 1 15",
        Want::Refused("partition 15 exceeds partition-size 16 (at most 15 partitions)"),
    );
    // V = 4096, H = 1: partition 72 owns no slot (keys.rs).
    let r = Resolver::new(PartitionParams::default()).unwrap();
    assert!(check_new_partition(71, &r).is_ok());
    assert_eq!(
        check_new_partition(72, &r),
        Err(Refusal::EmptyPartition {
            partition: 72,
            virtual_slots: 4096
        })
    );
    assert_eq!(
        check_new_partition(72, &r).unwrap_err().to_string(),
        "partition 72 would own no keys: partition-modular-virtual 4096 is too small for 73 partitions"
    );
}

fn down(c: &MapState, key: &str, positions: &[(&str, u64)]) -> (Vec<String>, BTreeSet<String>) {
    let positions = positions
        .iter()
        .map(|(k, v)| (format!("{k}:12121"), *v))
        .collect();
    match mark_down(c, &format!("{key}:12121"), &positions) {
        Step::Changed { cluster, prior } => {
            validate_map(&cluster.map, cluster.next_thread_type).unwrap();
            (lines(&cluster), prior)
        }
        Step::Unchanged => (lines(c), BTreeSet::new()),
    }
}

const THREE_SLAVES: &[&str] = &[
    "m master active 0 1",
    "sb slave active 0 1",
    "sc slave active 0 2",
    "sd slave active 0 2",
    "se slave prepare 0 0",
];

#[test]
fn failover_follows_flare_rule_without_positions() {
    let (map, prior) = down(&cluster(THREE_SLAVES), "m", &[]);
    // First active slave, replaced only by a strictly greater balance: sc (2), not sd (2, later). Without
    // positions nobody knows what the other slaves missed: they rebuild from the new master.
    assert_eq!(
        map,
        [
            "m proxy down - 0",
            "sb slave prepare 0 1",
            "sc master active 0 2",
            "sd slave prepare 0 2",
            "se slave prepare 0 0"
        ]
    );
    assert_eq!(prior, ["sc:12121".to_string()].into());
}

#[test]
fn failover_prefers_the_highest_replication_position() {
    let c = cluster(THREE_SLAVES);
    let (map, _) = down(&c, "m", &[("sb", 10), ("sc", 5), ("sd", 9)]);
    assert_eq!(map[1], "sb master active 0 1");
    // A tie falls back to Flare's rule among the tied: sb (1) then sd (2, strictly greater).
    let (map, prior) = down(&c, "m", &[("sb", 10), ("sc", 5), ("sd", 10)]);
    assert_eq!(map[3], "sd master active 0 2");
    assert_eq!(prior, ["sd:12121".to_string()].into());
    // sb stands where sd does and stays active; sc missed writes sd holds and rebuilds from it (seed 9777).
    assert_eq!(map[1], "sb slave active 0 1");
    assert_eq!(map[2], "sc slave prepare 0 2");
    // One unknown position: positions cannot be compared, Flare's rule over all.
    let (map, _) = down(&c, "m", &[("sb", 10), ("sd", 10)]);
    assert_eq!(map[2], "sc master active 0 2");
}

#[test]
fn failover_with_zero_balances_gives_the_new_master_balance_1() {
    let c = cluster(&[
        "m master active 0 5",
        "s slave active 0 0",
        "t slave active 0 0",
    ]);
    let (map, _) = down(&c, "m", &[]);
    assert_eq!(
        map,
        [
            "m proxy down - 0",
            "s master active 0 1",
            "t slave prepare 0 0"
        ]
    );
}

#[test]
fn master_without_active_slave_is_preserved() {
    let c = cluster(&[
        "m master active 0 3",
        "n master active 1 1",
        "s slave prepare 0 0",
    ]);
    let (map, prior) = down(&c, "m", &[]);
    assert_eq!(
        map,
        [
            "m master down 0 3",
            "n master active 1 1",
            "s slave prepare 0 0"
        ]
    );
    assert!(prior.is_empty());
    let after = cluster(&map.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(partition_count(&after.map), 2, "P does not shrink");
    // It comes back as the master, with its old data.
    let Step::Changed { cluster: up, .. } = mark_up(&after, "m:12121") else {
        panic!()
    };
    assert_eq!(lines(&up)[0], "m master active 0 3");
}

#[test]
fn no_new_partition_while_a_partition_has_no_live_master() {
    // Found by swarm seed 1284: a new master prepared while partition 0's master was down copied nothing,
    // reported ready, and the old master dropped the moved keys when it came back.
    let c = cluster(&["m0 master down 0 1", "x proxy active - 0"]);
    assert_eq!(
        run_with(&c, "node role x 12121 master 1 1", false).err(),
        Some(Refusal::PartitionWithoutMaster(0))
    );
    let c = cluster(&["m0 master active 0 1", "x proxy active - 0"]);
    assert!(matches!(
        run_with(&c, "node role x 12121 master 1 1", false),
        Ok(Step::Changed { .. })
    ));
}

#[test]
fn preparing_master_down_resets_its_slaves() {
    let (map, _) = down(&cluster(PREPARING), "n1", &[]);
    assert_eq!(
        map,
        [
            "m0 master active 0 1",
            "n1 proxy down - 0",
            "t1 proxy active - 0",
            "x proxy active - 0"
        ]
    );
}

#[test]
fn a_slave_set_down_by_an_operator_comes_back_as_a_proxy() {
    // flare-admin reconstruct (admin-tool.md §4, §6 #10): `node state X down`, 3 s for the monitor to bring X
    // back, then `flush_all` on X and `node role X slave 0 P`, which starts a build only on a proxy. Post-mortem
    // (flare_tools_compat e2e): X came back as an active slave, the tool emptied it, `slave 0 P` only set its
    // balance, and the restored balance sent reads to an empty slave.
    let c = cluster(P1_SLAVES);
    let Ok(Step::Changed { cluster: down, .. }) = run_with(&c, "node state s1 12121 down", false)
    else {
        panic!("s1 goes down")
    };
    let Step::Changed { cluster: up, .. } = mark_up(&down, "s1:12121") else {
        panic!("s1 comes up")
    };
    assert_eq!(lines(&up)[1], "s1 proxy active - 0");
    let Ok(Step::Changed {
        cluster: rebuilt, ..
    }) = run_with(&up, "node role s1 12121 slave 0 0", false)
    else {
        panic!("s1 becomes a slave again")
    };
    assert_eq!(lines(&rebuilt)[1], "s1 slave prepare 0 0");
}

#[test]
fn other_nodes_go_down_as_proxies() {
    // A slave of an active partition stays a slave while down, and rebuilds itself when it comes back.
    let (map, _) = down(&cluster(P1_SLAVES), "s1", &[]);
    assert_eq!(map[1], "s1 slave down 0 1");
    let c = cluster(&["m0 master active 0 1", "s1 slave down 0 1"]);
    let Step::Changed { cluster: up, .. } = mark_up(&c, "s1:12121") else {
        panic!("s1 comes up")
    };
    assert_eq!(lines(&up)[1], "s1 slave prepare 0 1");
    let orphan = cluster(&["m0 master down 0 1", "s1 slave down 0 1"]);
    let Step::Changed { cluster: up, .. } = mark_up(&orphan, "s1:12121") else {
        panic!("s1 comes up")
    };
    assert_eq!(
        lines(&up)[1],
        "s1 proxy active - 0",
        "no active master to rebuild from"
    );
    let (map, _) = down(&cluster(P1_SLAVES), "x", &[]);
    assert_eq!(map[3], "x proxy down - 0");
    let c = cluster(&["d proxy down - 0"]);
    assert_eq!(mark_down(&c, "d:12121", &BTreeMap::new()), Step::Unchanged);
    assert_eq!(mark_down(&c, "nope:1", &BTreeMap::new()), Step::Unchanged);
}

#[test]
fn node_up_cases() {
    let c = cluster(&["d proxy down - 0", "m master active 0 1"]);
    let Step::Changed { cluster: up, .. } = mark_up(&c, "d:12121") else {
        panic!()
    };
    assert_eq!(lines(&up)[0], "d proxy active - 0");
    assert_eq!(mark_up(&c, "m:12121"), Step::Unchanged, "already active");
}

#[test]
fn registration() {
    let none = BTreeMap::new();
    let c = cluster(&["d proxy down - 0"]);
    let (step, known) = register(&c, &NodeAddr::new("n", 1), 64, &none).unwrap();
    let Step::Changed { cluster: added, .. } = step else {
        panic!()
    };
    assert!(!known);
    assert_eq!(added.map.nodes["n:1"].thread_type, 17);
    assert_eq!(added.next_thread_type, 18);
    assert_eq!(added.map.node_lines()[1], "NODE n 1 2 0 -1 0 17");
    // A known down node: a restart, nothing changes.
    assert_eq!(
        register(&c, &NodeAddr::new("d", 12121), 64, &none),
        Ok((Step::Unchanged, true))
    );
    // [Improve] a known live master: node down first (failover), then a restart.
    let c = cluster(&["m master active 0 1", "s slave active 0 1"]);
    let (step, known) = register(&c, &NodeAddr::new("m", 12121), 64, &none).unwrap();
    let Step::Changed {
        cluster: after,
        prior,
    } = step
    else {
        panic!()
    };
    assert!(known);
    assert_eq!(lines(&after), ["m proxy down - 0", "s master active 0 1"]);
    assert_eq!(prior, ["s:12121".to_string()].into());
}

#[test]
fn registration_refusals() {
    let none = BTreeMap::new();
    let c = cluster(&["a proxy active - 0"]);
    for (name, why) in [("a:b", "contains ':'"), ("a\tb", "control"), ("", "empty")] {
        let e = register(&c, &NodeAddr::new(name, 1), 64, &none).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
    let long = "h".repeat(256);
    assert!(register(&c, &NodeAddr::new(long, 1), 64, &none).is_err());
    assert_eq!(
        register(&c, &NodeAddr::new("b", 1), 1, &none),
        Err(Refusal::TooManyNodes(1))
    );
}

#[test]
fn choose_successor_rules() {
    let cands: Vec<(String, u32)> = [("a", 1), ("b", 3), ("c", 3), ("d", 2)]
        .iter()
        .map(|(k, b)| (k.to_string(), *b))
        .collect();
    let pos = |v: &[(&str, u64)]| v.iter().map(|(k, p)| (k.to_string(), *p)).collect();
    assert_eq!(choose_successor(&cands, &pos(&[])).as_deref(), Some("b"));
    assert_eq!(
        choose_successor(&cands, &pos(&[("a", 9), ("b", 1), ("c", 1), ("d", 1)])).as_deref(),
        Some("a")
    );
    assert_eq!(
        choose_successor(&cands, &pos(&[("a", 9), ("b", 1), ("c", 1), ("d", 9)])).as_deref(),
        Some("d")
    );
    assert_eq!(choose_successor(&[], &pos(&[])), None);
}

#[test]
fn validate_map_catches_what_partitions_does_not() {
    let ok = cluster(P1_SLAVES);
    assert_eq!(validate_map(&ok.map, ok.next_thread_type), Ok(()));
    let orphan = cluster(&["m0 master active 0 1", "s slave active 3 1"]);
    assert!(validate_map(&orphan.map, orphan.next_thread_type)
        .unwrap_err()
        .contains("does not exist"));
    let proxy = cluster(&["x proxy active 0 0"]);
    assert!(validate_map(&proxy.map, proxy.next_thread_type).is_err());
    let c = cluster(P0);
    assert!(validate_map(&c.map, 17)
        .unwrap_err()
        .contains("thread_type 17"));
}
