//! Property tests of the node machine over random event orders, in the [`testkit`](super::testkit): maps pushed in
//! any order (versions skipped), client writes (sync or not), replication answers good and bad, links opening,
//! renewals granted or lost, calls answered or failed, dumps ending, and time passing. After every event:
//!
//! - **no write acknowledged outside the map and the lease**: a client write answered `STORED` by this node (at
//!   once, or when its sync wait ends) was run while its map made it the active master of the key's partition,
//!   and while it held its lease;
//! - **no acknowledged sync write dropped**: a sync write reported done was answered `OK` by every slave that was
//!   active when it was written, on an entry of its key sent after it (entries carry the key's state when sent);
//! - **a copy is reported done only for the prepare it was asked for**: `node state <me> active <epoch>` names the
//!   map version that started the running copy, and only after that copy's dump ended well.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::testkit::{line, stats_nodes_reply, stats_reply, Answer, Kit, Rec};
use super::WriteId;
use crate::node_map::{Role, State};
use crate::protocol::reply::ReplyEvent;
use crate::protocol::Reply;

/// The maps node `b` may be pushed (all of one partition).
const MAPS: &[&[Rec<'static>]] = &[
    &[("b", "master", "active", 0), ("c", "slave", "active", 0)],
    &[("b", "master", "active", 0), ("c", "slave", "prepare", 0)],
    &[("a", "master", "active", 0), ("b", "slave", "active", 0)],
    &[("a", "master", "active", 0), ("b", "slave", "prepare", 0)],
    &[("a", "master", "active", 0), ("b", "proxy", "active", -1)],
    &[("b", "master", "active", 0), ("c", "proxy", "down", -1)],
    &[("a", "master", "active", 0), ("b", "slave", "down", 0)],
];

#[derive(Clone, Debug)]
enum Event {
    /// Push map `MAPS[i]`, one version up (two with `skip`).
    Sync(usize, bool),
    /// A client `set` of key `k<i>`.
    Write(u8, bool),
    /// Answer the oldest entry sent: `STORED` or an error.
    Ack(bool),
    /// Every link being opened opens.
    OpenLinks,
    /// Time passes.
    Advance(u64),
    /// Renewals waiting: granted, or lost for good.
    Renew(bool),
    /// A session being opened opens.
    OpenSession,
    /// The oldest call is answered (well or not).
    AnswerCall(bool),
    /// The oldest dump pull ends (well or not).
    DumpEnd(bool),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => (0..MAPS.len(), any::<bool>()).prop_map(|(i, s)| Event::Sync(i, s)),
        4 => (0u8..4, any::<bool>()).prop_map(|(k, s)| Event::Write(k, s)),
        4 => any::<bool>().prop_map(Event::Ack),
        2 => Just(Event::OpenLinks),
        3 => (1u64..1500).prop_map(Event::Advance),
        2 => any::<bool>().prop_map(Event::Renew),
        1 => Just(Event::OpenSession),
        3 => any::<bool>().prop_map(Event::AnswerCall),
        1 => any::<bool>().prop_map(Event::DumpEnd),
    ]
}

/// What the test remembers to check the invariants.
struct Model {
    version: u64,
    /// The map version that started the running copy, and whether its dump ended well.
    copy: Option<(u64, bool)>,
    /// Pulls that belong to an earlier copy.
    stale_pulls: BTreeSet<super::CallId>,
    /// Sync writes waiting: id, key, when, the active slaves then.
    waiting: Vec<(WriteId, String, Instant, Vec<String>)>,
    /// Reports already checked.
    reports: usize,
}

fn me_in(map: &[Rec<'_>]) -> (&'static str, &'static str) {
    let (_, role, state, _) = map
        .iter()
        .find(|r| r.0 == "b")
        .copied()
        .expect("b is in every map");
    let role = match role {
        "master" => "master",
        "slave" => "slave",
        _ => "proxy",
    };
    let state = match state {
        "active" => "active",
        "prepare" => "prepare",
        _ => "down",
    };
    (role, state)
}

fn active_slaves(kit: &Kit) -> Vec<String> {
    kit.node
        .view()
        .map()
        .nodes
        .iter()
        .filter(|(_, r)| r.role == Role::Slave && r.state == State::Active)
        .map(|(k, _)| k.clone())
        .collect()
}

fn step(
    kit: &mut Kit,
    m: &mut Model,
    held: &mut &'static [Rec<'static>],
    e: &Event,
) -> Result<(), TestCaseError> {
    match *e {
        Event::Sync(i, skip) => {
            let v = m.version + if skip { 2 } else { 1 };
            let before = me_in(held);
            if kit.sync(v, MAPS[i]).is_ok() {
                m.version = v;
                let after = me_in(MAPS[i]);
                if after == ("slave", "prepare") && (before != after || skip) {
                    m.copy = Some((v, false));
                    m.stale_pulls.extend(kit.pulls.iter().map(|p| p.0));
                } else if after != ("slave", "prepare") {
                    m.copy = None;
                    m.stale_pulls.extend(kit.pulls.iter().map(|p| p.0));
                }
                *held = MAPS[i];
            }
        }
        Event::Write(k, sync) => {
            let key = format!("k{k}");
            let master = kit.me() == ("master".into(), "active".into(), Some(0));
            let lease = kit.node.may_acknowledge(kit.now);
            let slaves = active_slaves(kit);
            match kit.set(&key, "v", sync) {
                Answer::Reply(Reply::Stored { .. }) => {
                    prop_assert!(
                        master && lease,
                        "STORED by a node that is not a leased master: {:?}",
                        kit.me()
                    );
                }
                Answer::Waiting(id, _) => {
                    prop_assert!(master, "a sync wait on a node that is not the master");
                    m.waiting.push((id, key, kit.now, slaves));
                }
                _ => {}
            }
        }
        Event::Ack(ok) => {
            if let Some(peer) = kit.sent.first().map(|s| s.peer.clone()) {
                kit.ack(
                    &peer,
                    if ok {
                        "STORED"
                    } else {
                        "SERVER_ERROR not a replica of the sender"
                    },
                );
            }
        }
        Event::OpenLinks => {
            for peer in kit.links_opening.clone() {
                kit.open_link(&peer);
            }
        }
        Event::Advance(ms) => kit.advance(Duration::from_millis(ms)),
        Event::Renew(grant) => {
            if grant {
                kit.grant_renewals();
            } else {
                kit.renewals.clear();
            }
        }
        Event::OpenSession => {
            if kit.session_opening.is_some() {
                kit.open_session();
            }
        }
        Event::AnswerCall(ok) => {
            if let Some(call) = kit.calls.first().cloned() {
                let first = call.lines.last().cloned().unwrap_or_default();
                let reply = match (ok, first.as_str()) {
                    (false, _) => Err("connection refused".to_string()),
                    (true, "stats nodes") => {
                        Ok(vec![stats_reply(m.version), stats_nodes_reply(held)])
                    }
                    (true, "stats") => Ok(vec![vec![ReplyEvent::End]]),
                    (true, _) => Ok(line("OK")),
                };
                kit.answer(&call.lines[0], reply);
            }
        }
        Event::DumpEnd(ok) => {
            if let Some((pull, _, _)) = kit.pulls.first().cloned() {
                kit.pulls.remove(0);
                if ok && !m.stale_pulls.contains(&pull) {
                    if let Some((v, _)) = m.copy {
                        m.copy = Some((v, true));
                    }
                }
                let result = if ok { Ok(()) } else { Err("reset".to_string()) };
                kit.node.handle_dump_end(kit.now, pull, result);
                kit.pump();
            }
        }
    }
    check(kit, m)
}

fn check(kit: &Kit, m: &mut Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        kit.done_without_lease,
        0,
        "a sync write acknowledged without a lease"
    );
    for (id, key, at, slaves) in &m.waiting {
        if kit.done.get(id) == Some(&Ok(())) {
            for s in slaves {
                let answered = kit.acks.iter().any(|(peer, sent, reply, _)| {
                    peer == s && sent.key == key.as_bytes() && sent.at >= *at && reply == "STORED"
                });
                prop_assert!(
                    answered,
                    "sync write of {} acknowledged without {}'s answer",
                    key,
                    s
                );
            }
        }
    }
    let reports: Vec<&String> = kit
        .log
        .iter()
        .filter(|l| l.starts_with("call index: node state b 1 active"))
        .collect();
    for r in &reports[m.reports.min(reports.len())..] {
        let epoch: u64 = r
            .rsplit(' ')
            .next()
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        prop_assert_eq!(
            m.copy,
            Some((epoch, true)),
            "report {} for a copy not asked for or not done",
            r
        );
    }
    m.reports = reports.len();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn the_node_keeps_its_invariants_whatever_the_order_of_events(events in prop::collection::vec(event(), 1..80)) {
        let mut kit = Kit::registered("b", 1, MAPS[0]);
        let mut held: &'static [Rec<'static>] = MAPS[0];
        let mut m = Model { version: 1, copy: None, stale_pulls: BTreeSet::new(), waiting: Vec::new(), reports: 0 };
        for e in &events {
            step(&mut kit, &mut m, &mut held, e)?;
        }
    }
}
