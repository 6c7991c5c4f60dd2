//! The index servers of a Raft group as the tool sees them (docs/index-servers.md), and the `index list`,
//! `index add` and `index remove` subcommands.
//!
//! What a server says about its group comes from its `stats`: `index_role` (leader, follower, candidate),
//! `index_term`, `index_leader` (`host:port`, or `-`), `index_applied` (the Raft applied index) and
//! `index_members` (the voters). A server without these lines (Flare's index, or one of ours before the group) is
//! a group of one: commands go to it as before. A follower that cannot do something answers
//! `SERVER_ERROR not the index leader; leader is <host:port>` or `...; no leader elected yet`; [`not_leader`]
//! reads those lines, so the connection ([`super::client::Conn`]) can move to the leader and send again.
//!
//! The parsing and the choice are pure functions of what was read; the table is in [`super::table`].

use std::time::{Duration, Instant};

use flare_core::protocol::admin::{AdminCommand, IndexCommand};
use flare_core::protocol::lines;

use super::args::{IndexListArgs, IndexMemberArgs};
use super::client::{Conn, Endpoint};
use super::error::{AdminError, Result};
use super::prompt::Prompter;
use super::table;
use super::{Ctx, Status};

/// The start of a follower's refusal (the wire contract of the index group).
const NOT_LEADER: &str = "SERVER_ERROR not the index leader";
/// What follows [`NOT_LEADER`] when the follower knows the leader.
const LEADER_IS: &str = "; leader is ";
/// The Raft role of the leader in `index_role`.
const LEADER: &str = "leader";
/// What the leader says when asked to remove itself (`SERVER_ERROR <host:port> is the leader; leadership is being
/// handed over, send the command again`).
const HANDING_OVER: &str = "leadership is being handed over";
/// The pause before sending such a removal again.
const HANDOVER_PAUSE: Duration = Duration::from_millis(300);

/// What one index server's `stats` says about its group. Every field is empty for a server that does not report
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupView {
    /// `index_role`: `leader`, `follower` or `candidate`.
    pub role: Option<String>,
    /// `index_term`.
    pub term: Option<u64>,
    /// `index_leader`, when one is known (`-` is none).
    pub leader: Option<Endpoint>,
    /// `index_applied`.
    pub applied: Option<u64>,
    /// `index_members`, in the server's order.
    pub members: Vec<Endpoint>,
    /// `node_map_version`.
    pub node_map_version: Option<u64>,
}

impl GroupView {
    /// From `stats` pairs; lines it does not know, and values it cannot read, are left out.
    pub fn from_stats(stats: &[(String, String)]) -> GroupView {
        let mut view = GroupView::default();
        for (k, v) in stats {
            let v = v.trim();
            match k.as_str() {
                "index_role" if !v.is_empty() => view.role = Some(v.to_string()),
                "index_term" => view.term = v.parse().ok(),
                "index_leader" => view.leader = Endpoint::parse(v).ok(),
                "index_applied" => view.applied = v.parse().ok(),
                "index_members" => view.members = parse_members(v),
                "node_map_version" => view.node_map_version = v.parse().ok(),
                _ => {}
            }
        }
        view
    }

    /// True when the server reports a Raft group at all.
    pub fn in_group(&self) -> bool {
        self.role.is_some()
    }

    /// True when the server says it is the leader.
    pub fn is_leader(&self) -> bool {
        self.role.as_deref() == Some(LEADER)
    }
}

/// `a:p,b:p,c:p`; entries that are not `host:port` are left out.
pub fn parse_members(s: &str) -> Vec<Endpoint> {
    s.split(',')
        .filter_map(|m| Endpoint::parse(m.trim()).ok())
        .collect()
}

/// Where to send the group's commands, from what the server at `at` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// This server: the leader, or a server that is not in a group.
    Here,
    /// The leader this follower names.
    Leader(Endpoint),
    /// Another server, if one does better: this one has no leader to name (an election is running). It still
    /// forwards what it can, so it is the last resort.
    Elsewhere,
}

/// Which server to use, given what the server at `at` reports.
pub fn choice(view: &GroupView, at: &Endpoint) -> Choice {
    if !view.in_group() || view.is_leader() {
        return Choice::Here;
    }
    match &view.leader {
        Some(l) if l != at => Choice::Leader(l.clone()),
        _ => Choice::Elsewhere,
    }
}

/// A follower's refusal: what it says about the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotLeader {
    /// `...; leader is <host:port>`.
    LeaderIs(Endpoint),
    /// `...; no leader elected yet`, or a leader that is not `host:port`.
    NoLeader,
}

/// Reads a follower's refusal line; `None` for any other reply.
pub fn not_leader(reply: &str) -> Option<NotLeader> {
    let rest = reply.strip_prefix(NOT_LEADER)?;
    Some(
        match rest
            .strip_prefix(LEADER_IS)
            .and_then(|l| Endpoint::parse(l.trim()).ok())
        {
            Some(l) => NotLeader::LeaderIs(l),
            None => NotLeader::NoLeader,
        },
    )
}

/// One index server and what its `stats` said, or why it said nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexStatus {
    /// The server, as given or as a member list names it.
    pub server: Endpoint,
    /// Its view of the group, or the reason it could not be read.
    pub view: std::result::Result<GroupView, String>,
}

impl IndexStatus {
    /// From a server's `stats` lines (`STAT <name> <value>`, as they arrive on the wire).
    pub fn from_lines(server: Endpoint, lines: &[&str]) -> IndexStatus {
        let stats: Vec<(String, String)> = lines
            .iter()
            .filter_map(|l| lines::stat_str(l.as_bytes()))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        IndexStatus {
            server,
            view: Ok(GroupView::from_stats(&stats)),
        }
    }
}

/// The group's members: the leader's list, else the first list any server reports; `None` when no server
/// reports one.
pub fn group_members(statuses: &[IndexStatus]) -> Option<Vec<Endpoint>> {
    let views = || statuses.iter().filter_map(|s| s.view.as_ref().ok());
    views()
        .find(|v| v.is_leader() && !v.members.is_empty())
        .or_else(|| views().find(|v| !v.members.is_empty()))
        .map(|v| v.members.clone())
}

/// The servers `index list` shows: `given`, then each member a status names that is not among them, each once.
pub fn servers_to_show(given: &[Endpoint], statuses: &[IndexStatus]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    let named = statuses
        .iter()
        .filter_map(|s| s.view.as_ref().ok())
        .flat_map(|v| v.members.iter());
    for e in given.iter().chain(named) {
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    out
}

/// How `index list` ends: OK when a server answered and, if they form a group, one of them is its leader.
pub fn health(statuses: &[IndexStatus]) -> Status {
    let views: Vec<&GroupView> = statuses
        .iter()
        .filter_map(|s| s.view.as_ref().ok())
        .collect();
    let grouped = views.iter().any(|v| v.in_group());
    let led = views.iter().any(|v| v.is_leader());
    if views.is_empty() || (grouped && !led) {
        Status::Ng
    } else {
        Status::Ok
    }
}

/// `index add` or `index remove`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// `index add <host:port>`.
    Add,
    /// `index remove <host:port>`.
    Remove,
}

impl MemberChange {
    /// The command line sent to the leader.
    pub fn line(self, server: &Endpoint) -> String {
        let command = match self {
            MemberChange::Add => IndexCommand::IndexAdd(server.to_string()),
            MemberChange::Remove => IndexCommand::IndexRemove(server.to_string()),
        };
        AdminCommand::Index(command).to_line()
    }

    /// The members after the change.
    pub fn apply(self, members: &[Endpoint], server: &Endpoint) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = members.iter().filter(|m| *m != server).cloned().collect();
        if self == MemberChange::Add {
            out.push(server.clone());
        }
        out
    }

    /// The confirmation question.
    pub fn question(self, server: &Endpoint, members: &[Endpoint]) -> String {
        let after = self.apply(members, server);
        let doing = match self {
            MemberChange::Add => "adding index server to the group",
            MemberChange::Remove => "removing index server from the group",
        };
        format!(
            "{doing} (server={server}, members={} -> {})",
            join(members),
            join(&after)
        )
    }
}

/// True for the leader's answer to its own removal: it hands its leadership over first, and the command is to be
/// sent again (to the next leader).
pub fn handing_over(reply: &str) -> bool {
    reply.starts_with("SERVER_ERROR ") && reply.contains(HANDING_OVER)
}

/// `a:p,b:p` in sorted order (or `-` for none).
pub fn join(servers: &[Endpoint]) -> String {
    if servers.is_empty() {
        return "-".into();
    }
    let mut names: Vec<String> = servers.iter().map(Endpoint::to_string).collect();
    names.sort();
    names.join(",")
}

/// `index list`: every index server's role, term, leader and applied index.
pub fn list(ctx: &Ctx, a: IndexListArgs) -> Result<Status> {
    let given = ctx.index_servers(&a.index, &[])?;
    let statuses = survey(ctx, &given);
    let members = group_members(&statuses);
    if a.json {
        println!("{:#}", table::index_json(&statuses, members.as_deref()));
    } else {
        print!("{}", table::index_table(&statuses, members.as_deref()));
    }
    Ok(health(&statuses))
}

/// `index add <host:port>`.
pub fn add(ctx: &Ctx, a: IndexMemberArgs) -> Result<Status> {
    change_members(ctx, a, MemberChange::Add)
}

/// `index remove <host:port>`.
pub fn remove(ctx: &Ctx, a: IndexMemberArgs) -> Result<Status> {
    change_members(ctx, a, MemberChange::Remove)
}

/// Reads every server in `given`, then every member they name that was not given, in parallel.
pub fn survey(ctx: &Ctx, given: &[Endpoint]) -> Vec<IndexStatus> {
    let mut statuses = probe(ctx, given);
    let more: Vec<Endpoint> = servers_to_show(given, &statuses)
        .into_iter()
        .filter(|e| !given.contains(e))
        .collect();
    statuses.extend(probe(ctx, &more));
    statuses
}

fn probe(ctx: &Ctx, servers: &[Endpoint]) -> Vec<IndexStatus> {
    std::thread::scope(|s| {
        let handles: Vec<_> = servers
            .iter()
            .map(|at| {
                s.spawn(move || {
                    let view = Conn::index(at, &ctx.conn)
                        .and_then(|mut c| c.stats(None))
                        .map(|stats| GroupView::from_stats(&stats))
                        .map_err(|e| e.to_string());
                    IndexStatus {
                        server: at.clone(),
                        view,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(servers)
            .map(|(h, at)| {
                h.join().unwrap_or_else(|_| IndexStatus {
                    server: at.clone(),
                    view: Err("the probe failed".into()),
                })
            })
            .collect()
    })
}

fn change_members(ctx: &Ctx, a: IndexMemberArgs, change: MemberChange) -> Result<Status> {
    let server = Endpoint::parse(&a.server).map_err(|_| {
        AdminError::Usage(format!(
            "invalid index server '{}' (expected host:port)",
            a.server
        ))
    })?;
    let given = ctx.index_servers(&a.index, &[])?;
    let mut index = ctx.index(&a.index, &[])?;
    let view = GroupView::from_stats(&index.stats(None)?);
    if !view.in_group() {
        return Err(AdminError::Failed(format!(
            "index server {} runs no group of index servers (its stats have no index_role), so it cannot {} one",
            index.addr(),
            match change {
                MemberChange::Add => "add",
                MemberChange::Remove => "remove",
            }
        )));
    }
    let members = view.members.clone();
    match change {
        MemberChange::Add if members.contains(&server) => {
            println!(
                "{server} is already a member of the index group ({}).",
                join(&members)
            );
            return Ok(Status::Ok);
        }
        MemberChange::Remove if !members.is_empty() && !members.contains(&server) => {
            return Err(AdminError::Usage(format!(
                "{server} is not a member of the index group ({})",
                join(&members)
            )));
        }
        _ => {}
    }
    let line = change.line(&server);
    if a.change.dry_run {
        println!("(dry run) would send to {}: {line}", index.addr());
        return Ok(Status::Ok);
    }
    let mut prompter = Prompter::new(a.change.force);
    if !prompter.confirm(&change.question(&server, &members))? {
        return Ok(Status::Ok);
    }
    let until = Instant::now() + ctx.conn.timeout;
    let reply = loop {
        let reply = match index.call_line(&line) {
            Ok(r) => r,
            // The leader removing itself may close the connection before its answer arrives.
            Err(AdminError::Io { addr, reason, .. }) => {
                return Err(AdminError::Failed(format!(
                    "index server {addr}: {reason} before answering `{line}`; whether it was applied is unknown: \
                     check with `flare-admin index list`"
                )))
            }
            Err(e) => return Err(e),
        };
        if !handing_over(&reply) || Instant::now() >= until {
            break reply;
        }
        // The leader asked to remove itself first hands its leadership to another member: ask that one.
        std::thread::sleep(HANDOVER_PAUSE);
        index = ctx.index(&a.index, &[])?;
    };
    if reply != "OK" {
        return Err(index.refused(&line, reply));
    }
    let done = match change {
        MemberChange::Add => "added to",
        MemberChange::Remove => "removed from",
    };
    println!("{server} has been {done} the index group.");
    drop(index);
    let mut show = given;
    for e in members.iter().chain([&server]) {
        if !show.contains(e) {
            show.push(e.clone());
        }
    }
    let statuses = survey(ctx, &show);
    print!(
        "{}",
        table::index_table(&statuses, group_members(&statuses).as_deref())
    );
    Ok(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Endpoint {
        Endpoint::parse(s).unwrap()
    }

    fn status(server: &str, lines: &[&str]) -> IndexStatus {
        IndexStatus::from_lines(at(server), lines)
    }

    #[test]
    fn group_stats_are_read_from_stats_lines() {
        let s = status(
            "i:1",
            &[
                "STAT pid 10",
                "STAT node_map_version 7",
                "STAT index_role follower",
                "STAT index_term 3",
                "STAT index_leader i:2",
                "STAT index_applied 42",
                "STAT index_members i:1,i:2,i:3",
            ],
        );
        let v = s.view.unwrap();
        assert_eq!(v.role.as_deref(), Some("follower"));
        assert_eq!(
            (v.term, v.applied, v.node_map_version),
            (Some(3), Some(42), Some(7))
        );
        assert_eq!(v.leader, Some(at("i:2")));
        assert_eq!(v.members, vec![at("i:1"), at("i:2"), at("i:3")]);
        assert!(v.in_group() && !v.is_leader());
        // `-` is no leader; a server without the lines is not in a group; bad values are left out.
        let v = status(
            "i:1",
            &[
                "STAT index_role candidate",
                "STAT index_leader -",
                "STAT index_term x",
            ],
        )
        .view
        .unwrap();
        assert_eq!((v.leader, v.term), (None, None));
        let flare = status("i:1", &["STAT node_map_version 3"]).view.unwrap();
        assert!(!flare.in_group());
    }

    #[test]
    fn the_leader_is_preferred_and_a_follower_names_it() {
        let view = |lines: &[&str]| status("i:1", lines).view.unwrap();
        let me = at("i:1");
        assert_eq!(
            choice(&view(&["STAT index_role leader"]), &me),
            Choice::Here
        );
        assert_eq!(choice(&view(&["STAT pid 1"]), &me), Choice::Here);
        assert_eq!(
            choice(
                &view(&["STAT index_role follower", "STAT index_leader i:3"]),
                &me
            ),
            Choice::Leader(at("i:3"))
        );
        assert_eq!(
            choice(
                &view(&["STAT index_role candidate", "STAT index_leader -"]),
                &me
            ),
            Choice::Elsewhere
        );
        // A follower naming itself (a stale line) is not a way to the leader.
        assert_eq!(
            choice(
                &view(&["STAT index_role follower", "STAT index_leader i:1"]),
                &me
            ),
            Choice::Elsewhere
        );
    }

    #[test]
    fn a_followers_refusal_names_the_leader_or_none() {
        assert_eq!(
            not_leader("SERVER_ERROR not the index leader; leader is 10.0.0.2:12120"),
            Some(NotLeader::LeaderIs(at("10.0.0.2:12120")))
        );
        assert_eq!(
            not_leader("SERVER_ERROR not the index leader; no leader elected yet"),
            Some(NotLeader::NoLeader)
        );
        assert_eq!(
            not_leader("SERVER_ERROR not the index leader; leader is garbage"),
            Some(NotLeader::NoLeader)
        );
        for other in [
            "OK",
            "SERVER_ERROR out of memory",
            "CLIENT_ERROR bad command line format",
            "",
        ] {
            assert_eq!(not_leader(other), None, "{other}");
        }
    }

    #[test]
    fn members_come_from_the_leader_and_unlisted_members_are_shown() {
        let statuses = vec![
            status(
                "i:1",
                &["STAT index_role follower", "STAT index_members i:1,i:2"],
            ),
            IndexStatus {
                server: at("i:2"),
                view: Err("cannot connect".into()),
            },
            status(
                "i:3",
                &["STAT index_role leader", "STAT index_members i:1,i:3,i:4"],
            ),
        ];
        assert_eq!(
            group_members(&statuses),
            Some(vec![at("i:1"), at("i:3"), at("i:4")])
        );
        assert_eq!(
            servers_to_show(&[at("i:1"), at("i:2"), at("i:3")], &statuses),
            vec![at("i:1"), at("i:2"), at("i:3"), at("i:4")]
        );
        assert_eq!(
            group_members(&statuses[..2]),
            Some(vec![at("i:1"), at("i:2")])
        );
        assert_eq!(group_members(&statuses[1..2]), None);
    }

    #[test]
    fn list_is_ng_without_an_answer_or_a_leader() {
        let down = IndexStatus {
            server: at("i:1"),
            view: Err("connection refused".into()),
        };
        let follower = status("i:2", &["STAT index_role follower"]);
        let leader = status("i:3", &["STAT index_role leader"]);
        let flare = status("i:4", &["STAT pid 1"]);
        assert_eq!(health(std::slice::from_ref(&down)), Status::Ng);
        assert_eq!(health(&[down.clone(), follower.clone()]), Status::Ng);
        assert_eq!(health(&[down, follower, leader]), Status::Ok);
        assert_eq!(health(&[flare]), Status::Ok);
    }

    #[test]
    fn the_leader_removing_itself_is_asked_again() {
        assert!(handing_over(
            "SERVER_ERROR 127.0.0.1:12121 is the leader; leadership is being handed over, send the command again"
        ));
        assert!(!handing_over(
            "SERVER_ERROR not the index leader; no leader elected yet"
        ));
        assert!(!handing_over("OK"));
    }

    #[test]
    fn member_changes_read_like_the_other_prompts() {
        let members = [at("i:1"), at("i:2"), at("i:3")];
        assert_eq!(MemberChange::Add.line(&at("i:4")), "index add i:4");
        assert_eq!(MemberChange::Remove.line(&at("i:2")), "index remove i:2");
        assert_eq!(
            MemberChange::Add.question(&at("i:4"), &members),
            "adding index server to the group (server=i:4, members=i:1,i:2,i:3 -> i:1,i:2,i:3,i:4)"
        );
        assert_eq!(
            MemberChange::Remove.question(&at("i:2"), &members),
            "removing index server from the group (server=i:2, members=i:1,i:2,i:3 -> i:1,i:3)"
        );
        assert_eq!(
            MemberChange::Add.question(&at("i:4"), &[]),
            "adding index server to the group (server=i:4, members=- -> i:4)"
        );
    }
}
