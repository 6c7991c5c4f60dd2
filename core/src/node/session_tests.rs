//! The session with several index servers, through the [`testkit`](super::testkit): only the leader grants
//! sessions and leases, followers answer with a [`Redirect`], and the node moves its session to the leader (see
//! [`session`](super::session)'s header). Node `a` is the master of partition 0; the index servers are `i1`, `i2`,
//! `i3` on port 12120, configured in that order.

use std::time::Duration;

use super::registration::RETRY_DELAY;
use super::session::{Redirect, NO_LEADER_RETRY, REDIRECT_RETRY, RENEW_INTERVAL, REOPEN_DELAY};
use super::testkit::{line, settings, Kit, Rec};
use super::Dest;

const MAP: &[Rec<'static>] = &[("a", "master", "active", 0)];

fn ix(name: &str) -> (String, u16) {
    (name.to_string(), 12120)
}

fn ixs(names: &[&str]) -> Vec<(String, u16)> {
    names.iter().map(|n| ix(n)).collect()
}

fn leader_is(name: &str) -> String {
    Redirect::Leader(name.into(), 12120).line()
}

fn no_leader() -> String {
    Redirect::NoLeader.line()
}

/// Node `a` with three index servers, registered; its first session open waits for an answer.
fn three() -> Kit {
    let mut s = settings("a", Duration::from_secs(3));
    s.index_servers = ixs(&["i1", "i2", "i3"]);
    let mut k = Kit::with(s);
    k.answer_registration(1, MAP);
    assert!(k.session_opening.is_some());
    k
}

/// [`three`] with its session open at `at` and its lease granted.
fn three_with_session_at(at: &str) -> Kit {
    let mut k = three();
    k.answer_session(&leader_is(at));
    assert_eq!(k.session_order[0], ix(at));
    k.open_session();
    k.grant_renewals();
    assert!(k.node.may_acknowledge(k.now));
    k
}

/// Whether the node closed its session with the last of its actions (a publish of the ended lease may follow).
fn closed_just_now(k: &Kit) -> bool {
    let mut last = k.log.iter().rev().filter(|l| *l != "publish");
    last.next().map(String::as_str) == Some("session close")
}

#[test]
fn a_session_open_redirected_to_the_leader_goes_there_at_once() {
    let mut k = three();
    assert_eq!(k.session_order, ixs(&["i1", "i2", "i3"]));
    k.answer_session(&leader_is("i3"));
    assert!(k.session_opening.is_some(), "tried again at once");
    assert_eq!(k.session_order, ixs(&["i3", "i1", "i2"]));
    assert!(!k.node.may_acknowledge(k.now), "no lease from a follower");
    k.open_session();
    k.grant_renewals();
    assert!(k.node.may_acknowledge(k.now));
    assert_eq!(k.elapsed(), Duration::ZERO);
    // Calls go to the leader first too, and so does the next open.
    assert_eq!(
        k.node.call_addresses(&Dest::Index),
        ixs(&["i3", "i1", "i2"])
    );
    k.break_session();
    k.advance(REOPEN_DELAY);
    assert_eq!(k.session_order, ixs(&["i3", "i1", "i2"]));
}

#[test]
fn no_leader_elected_yet_is_retried_soon_through_the_list() {
    let mut k = three();
    k.answer_session(&no_leader());
    assert!(k.session_opening.is_none());
    k.advance(NO_LEADER_RETRY - Duration::from_millis(1));
    assert!(k.session_opening.is_none(), "not before NO_LEADER_RETRY");
    k.advance(Duration::from_millis(1));
    assert!(k.session_opening.is_some());
    assert_eq!(
        k.session_order,
        ixs(&["i2", "i3", "i1"]),
        "the next server first"
    );
    k.answer_session(&no_leader());
    k.advance(NO_LEADER_RETRY);
    assert_eq!(k.session_order, ixs(&["i3", "i1", "i2"]));
    // i3 knows the leader elected meanwhile.
    k.answer_session(&leader_is("i1"));
    assert_eq!(k.session_order, ixs(&["i1", "i3", "i2"]));
    k.open_session();
    k.grant_renewals();
    assert!(k.node.may_acknowledge(k.now));
    assert_eq!(k.elapsed(), NO_LEADER_RETRY * 2);
}

#[test]
fn a_renewal_redirected_moves_the_session_to_the_leader() {
    let mut k = three_with_session_at("i1");
    k.advance(RENEW_INTERVAL);
    assert_eq!(k.renewals.len(), 1);
    k.answer_renewal(&leader_is("i2"));
    assert!(closed_just_now(&k), "{:?}", k.log);
    assert!(
        !k.node.may_acknowledge(k.now),
        "a follower's answer extends no lease: the lease ends as on a refused renewal"
    );
    assert_eq!(k.node.lease_state(k.now), (false, None));
    // The open follows the close, on the timeout due now.
    assert!(k.session_opening.is_none());
    assert_eq!(k.node.poll_timeout(k.now), Some(k.now));
    k.advance(Duration::ZERO);
    assert!(k.session_opening.is_some());
    assert_eq!(k.session_order, ixs(&["i2", "i1", "i3"]));
    k.open_session();
    k.grant_renewals();
    assert!(k.node.may_acknowledge(k.now));
    assert_eq!(k.elapsed(), RENEW_INTERVAL);
    // A renewal the new leader has not answered yet extends nothing: only its own `OK` does.
    k.advance(RENEW_INTERVAL);
    k.answer_renewal(&no_leader());
    assert!(!k.node.may_acknowledge(k.now));
    assert!(k.log.iter().filter(|l| *l == "session close").count() == 2);
    k.advance(NO_LEADER_RETRY);
    assert_eq!(
        k.session_order,
        ixs(&["i3", "i1", "i2"]),
        "i2 knew no leader: passed over"
    );
}

#[test]
fn a_session_broken_by_a_killed_leader_moves_to_the_new_one_within_a_second() {
    let mut k = three_with_session_at("i1");
    k.advance(Duration::from_millis(300));
    let killed = k.now;
    k.break_session();
    k.advance(REOPEN_DELAY - Duration::from_millis(1));
    assert!(k.session_opening.is_none());
    k.advance(Duration::from_millis(1));
    // i1 first (the driver finds it refused); i2 answers, its election still running.
    assert_eq!(k.session_order, ixs(&["i1", "i2", "i3"]));
    assert!(
        k.node.may_acknowledge(k.now),
        "a broken session keeps its lease to its end"
    );
    k.answer_session_from(Some(ix("i2")), &no_leader());
    k.advance(NO_LEADER_RETRY);
    assert_eq!(k.session_order, ixs(&["i3", "i1", "i2"]));
    // i3 won the election.
    k.open_session();
    k.grant_renewals();
    assert!(k.node.may_acknowledge(k.now));
    assert_eq!(k.node.index_order(), ixs(&["i3", "i1", "i2"]));
    let moved = k.now - killed;
    assert!(moved < Duration::from_secs(1), "{moved:?}");
    assert_eq!(moved, REOPEN_DELAY + NO_LEADER_RETRY);
}

#[test]
fn a_session_left_unanswered_is_opened_with_another_server_first() {
    let mut k = three_with_session_at("i1");
    // i1 hangs: the renewal goes unanswered until the session is stuck, then closed (ending the lease).
    k.advance(RENEW_INTERVAL);
    assert_eq!(k.renewals.len(), 1);
    k.advance(Duration::from_millis(1500));
    assert!(closed_just_now(&k), "{:?}", k.log);
    k.advance(REOPEN_DELAY);
    assert_eq!(k.session_order, ixs(&["i2", "i3", "i1"]));
}

#[test]
fn two_servers_naming_each_other_cost_no_busy_loop() {
    let mut k = three();
    let mut opens = 0;
    while k.elapsed() < Duration::from_secs(1) {
        if k.session_opening.is_some() {
            opens += 1;
            let other = match k.session_order[0].0.as_str() {
                "i2" => "i1",
                _ => "i2",
            };
            k.answer_session(&leader_is(other));
        }
        k.advance(Duration::from_millis(1));
    }
    let most = 2 + (Duration::from_secs(1).as_millis() / REDIRECT_RETRY.as_millis()) as usize;
    assert!(opens <= most, "{opens} opens in a second");
    assert!(opens >= 10, "still following the redirects: {opens}");
}

#[test]
fn a_call_answered_with_a_redirect_goes_to_the_leader_first_next_time() {
    let mut s = settings("a", Duration::from_secs(3));
    s.index_servers = ixs(&["i1", "i2", "i3"]);
    let mut k = Kit::with(s);
    assert_eq!(
        k.node.call_addresses(&Dest::Index),
        ixs(&["i1", "i2", "i3"])
    );
    k.answer("node add", Ok(line(&no_leader())));
    assert_eq!(
        k.node.call_addresses(&Dest::Index),
        ixs(&["i1", "i2", "i3"])
    );
    k.advance(RETRY_DELAY);
    k.answer("node add", Ok(line(&leader_is("i2"))));
    assert_eq!(
        k.node.call_addresses(&Dest::Index),
        ixs(&["i2", "i1", "i3"])
    );
    k.advance(RETRY_DELAY);
    k.answer_registration(1, MAP);
    assert_eq!(k.session_order, ixs(&["i2", "i1", "i3"]));
    // Calls to nodes are not index calls.
    assert_eq!(
        k.node.call_addresses(&Dest::Node("b:1".into())),
        [("b".to_string(), 1)]
    );
}

#[test]
fn with_one_index_server_calls_and_delays_are_unchanged() {
    let mut k = Kit::new("a");
    let one = ixs(&["index"]);
    assert_eq!(k.node.call_addresses(&Dest::Index), one);
    k.answer_registration(1, MAP);
    assert_eq!(k.session_order, one);
    // A refused open is tried again after REOPEN_DELAY.
    k.answer_session("SERVER_ERROR unknown node");
    k.advance(REOPEN_DELAY - Duration::from_millis(1));
    assert!(k.session_opening.is_none());
    k.advance(Duration::from_millis(1));
    k.open_session();
    k.grant_renewals();
    // Renewed every second on the session.
    k.advance(RENEW_INTERVAL);
    k.grant_renewals();
    // A broken session: REOPEN_DELAY; a stuck one: closed, and REOPEN_DELAY again; always the one server.
    k.break_session();
    k.advance(REOPEN_DELAY);
    assert_eq!(k.session_order, one);
    k.open_session();
    k.advance(Duration::from_millis(1500));
    k.advance(REOPEN_DELAY);
    assert_eq!(k.session_order, one);
    assert_eq!(k.node.call_addresses(&Dest::Index), one);
    let session: Vec<&str> = k
        .log
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("session"))
        .collect();
    assert_eq!(
        session,
        [
            "session open: node session a 1",
            "session open: node session a 1",
            "session send: node lease a 1 1 3000",
            "session send: node lease a 1 1 3000",
            "session open: node session a 1",
            "session send: node lease a 1 1 3000",
            "session close",
            "session open: node session a 1",
        ]
    );
    assert_eq!(
        k.elapsed(),
        REOPEN_DELAY * 3 + RENEW_INTERVAL + Duration::from_millis(1500)
    );
}
