//! Reconstruction (cluster.md §6.2, §6.3): a node in `prepare` copies its partition. A slave dumps its partition
//! from the master; the master of a preparing partition dumps the keys moving to it from every active master. When
//! every copy is done and durable it reports `active` (slave) or `ready` (new master) to the index, or gives the role
//! up (`proxy`) on failure.
//!
//! Per source, in order:
//! 1. **Does the source know this node?** `stats` and `stats nodes` on the source, until its map is at least as new
//!    as the prepare's and lists this node with the role
//!    and partition it is built for, in a state other than `down` (at most 5 × `proxy-timeout`, asked every
//!    [`CHECK_RETRY`]). A dump copies only what the source holds when it is read; later writes reach this node only
//!    by replication, which the source does only once its map lists this node. Without the check a slave could copy
//!    its master and report itself active while the master, not yet aware of it, acknowledged sync writes without
//!    it: missing on the slave for good.
//! 2. **How much?** `stats` on the source: its `curr_items` (all of it for a slave, about 1/n for a new master) is
//!    the progress total.
//! 3. **The dump**, `dump <interval> <p> <n> <bwlimit>`, each item loaded unlogged; a source silent for `idle`
//!    (10 s, or 10 × `proxy-timeout` if longer) fails the copy.
//!
//! Then the copy is made durable (`persist_unlogged`) and reported, with the **epoch of the prepare**: the map
//! version the copy started from. The index refuses a report for an older prepare than the node's current one (it
//! marked the node down and up meanwhile, so the copy missed writes); the report is retried every
//! [`REPORT_RETRY`] while this node's map still has it being built, and dropped otherwise.
//!
//! A newer map that starts another copy supersedes this one: its calls and items are ignored from then on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Action, CallId, Dest, Node, Purpose, RebuildStats, StoreOp};
use crate::node_map::{NodeMap, Role, State};
use crate::protocol::admin::{AdminCommand, IndexCommand, ServerQuery};
use crate::protocol::reply::{ReplyEvent, ReplyKind};
use crate::protocol::text::parse_u64;
use crate::protocol::StatsGroup;

/// Pause between two source checks.
pub const CHECK_RETRY: Duration = Duration::from_millis(100);
/// Pause between two attempts to report the end of a copy.
pub const REPORT_RETRY: Duration = Duration::from_secs(1);
/// How long a dump being pulled may stay silent (at least; 10 × proxy-timeout if longer) before the copy fails.
pub const DUMP_IDLE: Duration = Duration::from_secs(10);

/// One source of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Source {
    node: String,
    partition: u32,
    count: u32,
    bwlimit: u64,
    /// The share of the source's items that moves here (1 for a slave, the partition count for a new master).
    share: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Asking the source whether it lists this node; the call in flight, or the next try's time.
    Checking {
        call: Option<CallId>,
        retry_at: Option<Instant>,
        deadline: Instant,
    },
    Counting {
        call: CallId,
    },
    Pulling {
        pull: CallId,
        idle_until: Instant,
    },
    Persisting,
    Reporting {
        call: Option<CallId>,
        retry_at: Option<Instant>,
        ok: bool,
    },
}

#[derive(Debug)]
pub(super) struct Rebuild {
    generation: u64,
    role: Role,
    partition: u32,
    epoch: u64,
    sources: VecDeque<Source>,
    step: Step,
    items: u64,
    total: u64,
}

/// The reconstruction in progress, if any.
#[derive(Debug, Default)]
pub(super) struct Rebuilds {
    current: Option<Rebuild>,
    generation: u64,
    /// A copy whose report the index refused as stale (role, partition, epoch): it starts again from the first map
    /// newer than its epoch that still has this node being built.
    stale: Option<(Role, u32, u64)>,
}

impl Rebuilds {
    /// The copy of `generation`, if it is still the current one.
    fn of(&mut self, generation: u64) -> Option<&mut Rebuild> {
        self.current.as_mut().filter(|r| r.generation == generation)
    }

    pub(super) fn next_timeout(&self) -> Option<Instant> {
        match &self.current.as_ref()?.step {
            // Exactly what `rebuild_timeout` acts on (a time it ignores would make the driver's timer spin).
            Step::Checking {
                call: None,
                retry_at,
                deadline,
            } => Some(retry_at.unwrap_or(*deadline).min(*deadline)),
            Step::Checking { deadline, .. } => Some(*deadline),
            Step::Pulling { idle_until, .. } => Some(*idle_until),
            Step::Reporting {
                call: None,
                retry_at,
                ..
            } => *retry_at,
            _ => None,
        }
    }

    pub(super) fn stats(&self) -> RebuildStats {
        match &self.current {
            Some(r) => RebuildStats {
                running: !matches!(r.step, Step::Reporting { .. }),
                items: r.items,
                total: r.total,
            },
            None => RebuildStats::default(),
        }
    }
}

/// The sources of a copy of `partition` as `role` under `view`, or why there can be none.
fn sources(
    view: &super::ClusterView,
    role: Role,
    partition: u32,
    bwlimit: u64,
) -> Result<Vec<Source>, String> {
    let count = view.partition_count();
    let preparing = partition == count;
    let parts = view.partitions();
    let out: Vec<Source> = match (role, preparing) {
        (Role::Slave, false) => parts
            .active
            .get(partition as usize)
            .and_then(|p| p.master.clone())
            .map(|m| Source {
                node: m,
                partition,
                count,
                bwlimit,
                share: 1,
            })
            .into_iter()
            .collect(),
        (Role::Slave, true) => parts
            .preparing
            .iter()
            .filter_map(|p| p.master.clone())
            .map(|m| Source {
                node: m,
                partition,
                count: count + 1,
                bwlimit,
                share: 1,
            })
            .collect(),
        _ => {
            // A new partition's master copies its share from every active partition's master: one without a live
            // master (the index refuses to start that, but it may fail during the flow) leaves keys it cannot copy,
            // and the old master would drop them once it is back. Give the role up instead.
            if let Some(q) = parts.active.iter().position(|p| p.master.is_none()) {
                return Err(format!("partition {q} has no master to copy from"));
            }
            let per_source = match bwlimit {
                0 => 0,
                b => (b / u64::from(count.max(1))).max(1),
            };
            parts
                .active
                .iter()
                .filter_map(|p| p.master.clone())
                .map(|m| Source {
                    node: m,
                    partition,
                    count: count + 1,
                    bwlimit: per_source,
                    share: u64::from(count + 1),
                })
                .collect()
        }
    };
    if out.is_empty() && role == Role::Slave {
        return Err(format!("partition {partition} has no master to copy from"));
    }
    Ok(out)
}

/// Whether a source's `stats` shows a node map at least as new as `epoch` (the prepare's). A source on an older
/// map may list this node from before it went down (active, say) and still not replicate to it once it applies
/// the maps in between (core simulator, seed 151: the copy was reported done while the master, two maps behind,
/// then dropped this node as a target and acknowledged sync writes without it). A source that shows no version
/// (not one of ours) is taken at its word.
pub(super) fn holds_at_least(events: &[ReplyEvent], epoch: u64) -> bool {
    let version = events.iter().find_map(|e| match e {
        ReplyEvent::Item(l) => l
            .strip_prefix(b"STAT node_map_version ")
            .and_then(parse_u64),
        _ => None,
    });
    version.is_none_or(|v| v >= epoch)
}

/// Whether a source's `stats nodes` lists `me` as `role` of `partition`, in a state other than `down` (a source
/// whose map still has this node down replicates nothing to it).
pub(super) fn lists(events: &[ReplyEvent], me: &str, role: Role, partition: u32) -> bool {
    let fields = events.iter().filter_map(|e| match e {
        ReplyEvent::Item(l) => std::str::from_utf8(l.strip_prefix(b"STAT ")?)
            .ok()?
            .split_once(' '),
        _ => None,
    });
    NodeMap::from_stats_nodes(0, fields)
        .and_then(|m| m.nodes.get(me).cloned())
        .is_some_and(|r| r.role == role && r.partition == Some(partition) && r.state != State::Down)
}

impl Node {
    /// Starts again a copy refused as stale once the view is newer than its epoch and still has this node being
    /// built (forgets it when the view no longer does).
    pub(super) fn restart_stale(&mut self, now: Instant) {
        let Some((role, partition, epoch)) = self.rebuild.stale else {
            return;
        };
        if !self.view.building(role, partition) {
            self.rebuild.stale = None;
            return;
        }
        let version = self.view.map().version;
        if version > epoch {
            self.rebuild.stale = None;
            self.actions.push_back(Action::Store(StoreOp::FlushAll));
            self.start_rebuild(now, role, partition, version);
        }
    }

    /// A copy the view no longer asks for stops: this node left `prepare` for the role and partition it was
    /// copying (the index gave the role up, marked it down, or made it active after its report). Its items would
    /// land in a store nobody builds any more, and its report would speak for a prepare that ended. Found by the
    /// node's property test (`properties.rs`): a copy went on pulling and reported `active` after a push made the
    /// node the partition's active master.
    pub(super) fn drop_unwanted_rebuild(&mut self) {
        let Some(r) = self.rebuild.current.as_ref() else {
            return;
        };
        if !self.view.building(r.role, r.partition) {
            tracing::info!(role = ?r.role, partition = r.partition, "the map no longer has this node being built; the copy stops");
            self.supersede_rebuild();
        }
    }

    /// Any copy running is superseded by a newer one about to start.
    pub(super) fn supersede_rebuild(&mut self) {
        if let Some(Rebuild {
            step: Step::Pulling { pull, .. },
            ..
        }) = &self.rebuild.current
        {
            self.actions.push_back(Action::AbortDump { pull: *pull });
        }
        self.rebuild.current = None;
        self.rebuild.stale = None;
    }

    /// Starts copying `partition` as `role`, from the map of version `epoch` (the store was just emptied).
    pub(super) fn start_rebuild(&mut self, now: Instant, role: Role, partition: u32, epoch: u64) {
        self.supersede_rebuild();
        self.rebuild.generation += 1;
        let generation = self.rebuild.generation;
        let found = sources(
            &self.view,
            role,
            partition,
            self.settings.reconstruction_bwlimit,
        );
        tracing::info!(?role, partition, epoch, node = %self.settings.self_key(), "reconstruction started");
        let (sources, ok) = match found {
            Ok(s) => (s.into(), true),
            Err(e) => {
                tracing::error!(error = %e, "reconstruction cannot start; giving the role up");
                (VecDeque::new(), false)
            }
        };
        self.rebuild.current = Some(Rebuild {
            generation,
            role,
            partition,
            epoch,
            sources,
            step: Step::Persisting,
            items: 0,
            total: 0,
        });
        match ok {
            true => self.next_source(now, generation),
            false => self.report(now, generation, false),
        }
    }

    /// Starts the next source's check, or makes the copy durable when every source is done.
    fn next_source(&mut self, now: Instant, generation: u64) {
        let deadline = now + self.settings.proxy_timeout * 5;
        let Some(r) = self.rebuild.of(generation) else {
            return;
        };
        if r.sources.is_empty() {
            r.step = Step::Persisting;
            // The copy was written without the write-ahead log: durable before the index hears it is done.
            self.actions
                .push_back(Action::Store(StoreOp::PersistUnlogged));
            return;
        }
        r.step = Step::Checking {
            call: None,
            retry_at: Some(now),
            deadline,
        };
        self.check_source(now, generation);
    }

    fn check_source(&mut self, now: Instant, generation: u64) {
        let Some(r) = self.rebuild.of(generation) else {
            return;
        };
        let Step::Checking {
            call: None,
            retry_at: Some(at),
            deadline,
        } = r.step
        else {
            return;
        };
        if at > now {
            return;
        }
        let Some(source) = r.sources.front().map(|s| s.node.clone()) else {
            return;
        };
        let call = CallId(self.next_call);
        r.step = Step::Checking {
            call: Some(call),
            retry_at: None,
            deadline,
        };
        self.call(
            Purpose::SourceCheck { generation },
            Dest::Node(source),
            vec![
                (stats_line(), ReplyKind::Lines),
                (stats_nodes_line(), ReplyKind::Lines),
            ],
        );
    }

    pub(super) fn source_check_reply(
        &mut self,
        now: Instant,
        generation: u64,
        reply: Result<Vec<Vec<ReplyEvent>>, String>,
    ) {
        let me = self.settings.self_key();
        let Some(r) = self.rebuild.of(generation) else {
            return;
        };
        let Step::Checking { deadline, .. } = r.step else {
            return;
        };
        let (role, partition, epoch) = (r.role, r.partition, r.epoch);
        let listed = matches!(&reply, Ok(replies) if replies.len() == 2
            && holds_at_least(&replies[0], epoch)
            && lists(&replies[1], &me, role, partition));
        if listed {
            let source = r
                .sources
                .front()
                .cloned()
                .expect("invariant: checking a source");
            let call = CallId(self.next_call);
            r.step = Step::Counting { call };
            self.call(
                Purpose::Count { generation },
                Dest::Node(source.node),
                vec![(stats_line(), ReplyKind::Lines)],
            );
            return;
        }
        if now >= deadline {
            let source = r
                .sources
                .front()
                .map(|s| s.node.clone())
                .unwrap_or_default();
            tracing::error!(
                source,
                ?role,
                partition,
                "the source does not list this node; reconstruction failed"
            );
            return self.report(now, generation, false);
        }
        r.step = Step::Checking {
            call: None,
            retry_at: Some(now + CHECK_RETRY),
            deadline,
        };
    }

    pub(super) fn count_reply(
        &mut self,
        now: Instant,
        generation: u64,
        reply: Result<Vec<Vec<ReplyEvent>>, String>,
    ) {
        let idle = DUMP_IDLE.max(self.settings.proxy_timeout * 10);
        let wait = self.settings.reconstruction_interval_us;
        let Some(r) = self.rebuild.of(generation) else {
            return;
        };
        if !matches!(r.step, Step::Counting { .. }) {
            return;
        }
        let replies = match reply {
            Ok(replies) => replies,
            Err(e) => {
                tracing::error!(error = %e, "reconstruction failed: the source's stats");
                return self.report(now, generation, false);
            }
        };
        let source = r
            .sources
            .front()
            .cloned()
            .expect("invariant: counting a source");
        let items = replies.iter().flatten().find_map(|e| match e {
            ReplyEvent::Item(l) => l.strip_prefix(b"STAT curr_items ").and_then(parse_u64),
            _ => None,
        });
        r.total += items.unwrap_or(0) / source.share.max(1);
        let pull = CallId(self.next_call);
        self.next_call += 1;
        r.step = Step::Pulling {
            pull,
            idle_until: now + idle,
        };
        self.actions.push_back(Action::PullDump {
            pull,
            source: source.node,
            line: format!(
                "dump {wait} {} {} {}",
                source.partition, source.count, source.bwlimit
            ),
        });
    }

    pub(super) fn rebuild_item(&mut self, now: Instant, pull: CallId) -> bool {
        let idle = DUMP_IDLE.max(self.settings.proxy_timeout * 10);
        match self.rebuild.current.as_mut() {
            Some(Rebuild {
                step:
                    Step::Pulling {
                        pull: p,
                        idle_until,
                    },
                items,
                ..
            }) if *p == pull => {
                *items += 1;
                *idle_until = now + idle;
                true
            }
            _ => false,
        }
    }

    pub(super) fn rebuild_end(&mut self, now: Instant, pull: CallId, result: Result<(), String>) {
        let Some(r) = self.rebuild.current.as_mut() else {
            return;
        };
        if !matches!(r.step, Step::Pulling { pull: p, .. } if p == pull) {
            return;
        }
        let generation = r.generation;
        match result {
            Ok(()) => {
                r.sources.pop_front();
                self.next_source(now, generation);
            }
            Err(e) => {
                tracing::error!(error = %e, "reconstruction failed");
                self.report(now, generation, false);
            }
        }
    }

    pub(super) fn persisted(&mut self, now: Instant, ok: bool) {
        let Some(r) = self.rebuild.current.as_ref() else {
            return;
        };
        if r.step != Step::Persisting {
            return;
        }
        if !ok {
            tracing::error!("could not make the reconstructed data durable");
        }
        self.report(now, r.generation, ok);
    }

    /// The copy failed before it was reported (the store could not be emptied).
    pub(super) fn rebuild_failed(&mut self, now: Instant) {
        if let Some(g) = self.rebuild.current.as_ref().map(|r| r.generation) {
            self.report(now, g, false);
        }
    }

    /// Tells the index how the copy ended: `active` (slave), `ready` (new master), or the role given up.
    fn report(&mut self, now: Instant, generation: u64, ok: bool) {
        let Some(r) = self.rebuild.of(generation) else {
            return;
        };
        if let Step::Pulling { pull, .. } = r.step {
            self.actions.push_back(Action::AbortDump { pull });
        }
        r.step = Step::Reporting {
            call: None,
            retry_at: Some(now),
            ok,
        };
        self.send_report(now, generation);
    }

    fn send_report(&mut self, now: Instant, generation: u64) {
        let node = self.addr();
        let Some(r) = self.rebuild.of(generation) else {
            return;
        };
        let Step::Reporting {
            call: None,
            retry_at: Some(at),
            ok,
        } = r.step
        else {
            return;
        };
        if at > now {
            return;
        }
        let state = |state| IndexCommand::NodeState {
            node: node.clone(),
            state,
            epoch: Some(r.epoch),
        };
        let command = match (ok, r.role) {
            (true, Role::Slave) => state(State::Active),
            (true, _) => state(State::Ready),
            (false, _) => IndexCommand::NodeRole {
                node: node.clone(),
                role: Role::Proxy,
                balance: 0,
                partition: -1,
                epoch: Some(r.epoch),
            },
        };
        let line = AdminCommand::Index(command).to_line();
        let call = CallId(self.next_call);
        r.step = Step::Reporting {
            call: Some(call),
            retry_at: None,
            ok,
        };
        self.index_call(
            Purpose::Report { generation },
            vec![(line, ReplyKind::Line)],
        );
    }

    pub(super) fn report_reply(
        &mut self,
        now: Instant,
        generation: u64,
        reply: Result<Vec<Vec<ReplyEvent>>, String>,
    ) {
        let Some(r) = self.rebuild.of(generation) else {
            return;
        };
        let building = self.view.building(r.role, r.partition);
        let Some(r) = self.rebuild.of(generation) else {
            return;
        };
        let Step::Reporting { ok, .. } = r.step else {
            return;
        };
        let answer = match &reply {
            Ok(replies) => match replies.first().map(|l| &l[..]) {
                Some([ReplyEvent::Line(l)]) => Ok(l.clone()),
                _ => Err("no answer".to_string()),
            },
            Err(e) => Err(e.clone()),
        };
        match answer {
            Ok(l) if &l[..] == b"OK" => {
                tracing::info!(ok, node = %self.settings.self_key(), "reconstruction finished and reported");
                self.rebuild.current = None;
            }
            Ok(l) if l.starts_with(b"SERVER_ERROR stale") => {
                // The index has this node in a newer prepare: the copy missed writes. It starts again, from an
                // empty store, as soon as this node holds a map of that prepare (perhaps already).
                tracing::warn!(reply = %String::from_utf8_lossy(&l), "the index refused the report of an older prepare");
                self.rebuild.stale = Some((r.role, r.partition, r.epoch));
                self.rebuild.current = None;
                self.restart_stale(now);
            }
            other => {
                tracing::error!(reply = ?other, "could not report the end of reconstruction; retrying");
                if !building {
                    tracing::info!("the node's role changed meanwhile; the report is dropped");
                    self.rebuild.current = None;
                    return;
                }
                r.step = Step::Reporting {
                    call: None,
                    retry_at: Some(now + REPORT_RETRY),
                    ok,
                };
            }
        }
    }

    pub(super) fn rebuild_timeout(&mut self, now: Instant) {
        let Some(r) = self.rebuild.current.as_ref() else {
            return;
        };
        let generation = r.generation;
        match r.step {
            // Past the deadline, with a check in flight or between two: the source never listed this node.
            Step::Checking { deadline, .. } if now >= deadline => {
                tracing::error!("the source does not list this node; reconstruction failed");
                self.report(now, generation, false)
            }
            Step::Checking {
                call: None,
                retry_at: Some(_),
                ..
            } => self.check_source(now, generation),
            Step::Pulling { idle_until, pull } if now >= idle_until => {
                tracing::error!("reconstruction failed: the dump source went silent");
                self.actions.push_back(Action::AbortDump { pull });
                self.report(now, generation, false);
            }
            Step::Reporting {
                call: None,
                retry_at: Some(_),
                ..
            } => {
                if !self.view.building(r.role, r.partition) {
                    tracing::info!("the node's role changed meanwhile; the report is dropped");
                    self.rebuild.current = None;
                    return;
                }
                self.send_report(now, generation);
            }
            _ => {}
        }
    }
}

/// `stats`, as a source check and an item count ask it of a dump source.
fn stats_line() -> String {
    AdminCommand::Server(ServerQuery::Stats).to_line()
}

/// `stats nodes`: the source's map, which must list this node in the prepare it copies for.
fn stats_nodes_line() -> String {
    AdminCommand::Index(IndexCommand::Stats(StatsGroup::Nodes)).to_line()
}
