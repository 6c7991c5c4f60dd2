//! Running a client request on a cluster node: [`flare_core::node::plan`] decides where each part runs and merges
//! the answers; this module runs the parts (local ones on the store, the rest over the peer connections, all at
//! once in the client connection's own task) and hands the answers back until the plan is done.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use flare_core::exec::{self, Outcome, Tally};
use flare_core::node::plan::{self, Answer, Finish, Origin, Part, Pending, Plan};
use flare_core::protocol::{Command, ErrorReply, Framing, ProxyPath, ReplicationMode, Reply};
use flare_core::storage::Storage;

use super::cluster::{replicate, wait_replicated};
use super::Shared;
use crate::net::Net;

/// What running a command gave.
pub(super) enum Ran {
    /// Send this reply; `wrote`: the local store changed (group commit waits for durability).
    Reply { reply: Reply, wrote: bool },
    /// The command is not a data command: the driver runs it.
    Driver(Command),
    /// Close the connection.
    Close,
}

/// Runs a command on a node of a cluster.
pub(super) async fn run<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    framing: &Framing,
    operator: bool,
    command: Command,
    tally: &mut Tally,
) -> Ran {
    let view = shared.cluster.view();
    let (path, binary) = match framing {
        Framing::Text { proxy } => (proxy.as_ref(), false),
        Framing::Binary(_) => (None, true),
    };
    let origin = Origin {
        path,
        binary,
        operator,
    };
    if let Some(seq) = path.and_then(ProxyPath::sender_seq) {
        shared.cluster.applied_seq.fetch_max(seq, Relaxed);
    }
    let mut pick = || shared.cluster.pick();
    let mut pending = match plan::plan(&view, origin, command, &mut pick) {
        Plan::Local { command, write } => return local(shared, command, write, tally).await,
        Plan::Reply(reply) => {
            return Ran::Reply {
                reply,
                wrote: false,
            }
        }
        Plan::Parts(p) => p,
    };
    let mut wrote = false;
    loop {
        let answers = run_parts(shared, &pending, tally, &mut wrote).await;
        match pending.finish(&shared.cluster.view(), answers, tally) {
            Finish::Done(reply) => return Ran::Reply { reply, wrote },
            Finish::Again(p) => pending = *p,
        }
    }
}

/// Runs every part: the local ones here, the peer ones concurrently.
async fn run_parts<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    pending: &Pending,
    tally: &mut Tally,
    wrote: &mut bool,
) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(pending.parts.len());
    let mut remote = Vec::new();
    for (i, part) in pending.parts.iter().enumerate() {
        match part {
            Part::Local { command, write } => {
                let answer = match local(shared, command.clone(), *write, tally).await {
                    Ran::Reply { reply, wrote: w } => {
                        *wrote |= w;
                        reply
                    }
                    _ => Reply::Error(ErrorReply::Server("proxy error".into())),
                };
                answers.push(Some(Answer::Local(answer)));
            }
            Part::Peer { node, forward } => {
                answers.push(None);
                remote.push((i, async move {
                    shared
                        .cluster
                        .peers
                        .request(node, &forward.bytes, forward.reply)
                        .await
                        .map_err(|e| tracing::debug!(node, error = %e, "forwarded request failed"))
                }));
            }
        }
    }
    let (slots, futures): (Vec<usize>, Vec<_>) = remote.into_iter().unzip();
    for (i, r) in slots.into_iter().zip(join_all(futures).await) {
        answers[i] = Some(Answer::Peer(r));
    }
    answers
        .into_iter()
        .map(|a| a.expect("invariant: every part was answered"))
        .collect()
}

/// Runs a command here; a write is replicated, and a sync write acknowledged once every active slave has it.
async fn local<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    command: Command,
    write: bool,
    tally: &mut Tally,
) -> Ran {
    let sync = match replication_mode(&command) {
        ReplicationMode::Sync => true,
        ReplicationMode::Async => false,
        ReplicationMode::Default => shared.cluster.sync_default.load(Relaxed),
    };
    match exec::execute(&shared.store, command, shared.now(), tally) {
        Outcome::Reply { reply, mutations } => {
            if mutations.is_empty() || !write {
                return Ran::Reply {
                    reply,
                    wrote: !mutations.is_empty(),
                };
            }
            let waits = match replicate(shared, &mutations, sync) {
                Ok(w) => w,
                Err(_) => return failed_replication(),
            };
            if sync && !waits.is_empty() && !wait_replicated(shared, &waits).await {
                return failed_replication();
            }
            Ran::Reply { reply, wrote: true }
        }
        Outcome::Close => Ran::Close,
        Outcome::Driver(c) => Ran::Driver(c),
        #[allow(unreachable_patterns)]
        _ => Ran::Reply {
            reply: Reply::Error(ErrorReply::Server("unknown error".into())),
            wrote: false,
        },
    }
}

fn replication_mode(command: &Command) -> ReplicationMode {
    match command {
        Command::Store(s) => s.options.replication,
        Command::Delete { options, .. } | Command::Arith { options, .. } => options.replication,
        _ => ReplicationMode::Default,
    }
}

fn failed_replication() -> Ran {
    // The write is kept here and replication goes on in the background; the client learns it is not on every slave.
    Ran::Reply {
        reply: Reply::Error(ErrorReply::Server("replication failed".into())),
        wrote: true,
    }
}

/// Runs every future to completion, concurrently, in the current task (no spawning, so no hand-off to another
/// thread); the outputs come back in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("invariant: every future completed before poll_fn returned Ready"))
        .collect()
}
