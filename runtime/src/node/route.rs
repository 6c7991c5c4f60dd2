//! Running a client request on a cluster node: [`flare_core::node::plan`] decides where each part runs and merges
//! the answers; this module runs the parts (local ones on the store, the rest over the peer connections, all at
//! once in the client connection's own task) and hands the answers back until the plan is done.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use flare_core::exec::{self, Outcome, Tally};
use flare_core::node::plan::{self, Answer, Finish, Part, Pending, Plan};
use flare_core::node::targets::WriteFailure;
use flare_core::node::{ack, admit};
use flare_core::protocol::{Command, ErrorReply, Framing, Reply};
use flare_core::storage::Storage;
use tokio::time::Instant;

use super::cluster::{self, Wait};
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
    let published = shared.cluster.published();
    let view = published.view.clone();
    let (origin, replicated) = admit::origin(framing, operator);
    if let Some(seq) = replicated {
        cluster::applied(shared, seq);
    }
    let mut pick = || shared.cluster.pick();
    let planned = plan::plan(&view, origin, command, &mut pick);
    // A master whose lease ended refuses a client's write instead of acknowledging it (core::node::session).
    if let Some(reply) = published.lease_refusal(Instant::now().into_std(), &origin, &planned) {
        return Ran::Reply {
            reply,
            wrote: false,
        };
    }
    let as_master = replicated.is_none();
    let mut pending = match planned {
        Plan::Local { command, write } => {
            return local(shared, command, write, as_master, tally).await
        }
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
        let answers = run_parts(shared, &pending, as_master, tally, &mut wrote).await;
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
    as_master: bool,
    tally: &mut Tally,
    wrote: &mut bool,
) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(pending.parts.len());
    let mut remote = Vec::new();
    for (i, part) in pending.parts.iter().enumerate() {
        match part {
            Part::Local { command, write } => {
                let answer = match local(shared, command.clone(), *write, as_master, tally).await {
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
    for (i, r) in slots.into_iter().zip(crate::util::join_all(futures).await) {
        answers[i] = Some(Answer::Peer(r));
    }
    answers
        .into_iter()
        .map(|a| a.expect("invariant: every part was answered"))
        .collect()
}

/// Runs a command here; a write is replicated, and a sync write acknowledged once every active slave has it
/// ([`ack`] decides which writes wait and what a failed one answers).
async fn local<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    command: Command,
    write: bool,
    as_master: bool,
    tally: &mut Tally,
) -> Ran {
    let sync = ack::wants_sync(&command, shared.cluster.sync_default.load(Relaxed));
    match exec::execute(&shared.store, command, shared.now(), tally) {
        Outcome::Reply { reply, mutations } => {
            if !ack::replicates(write, &mutations) {
                return Ran::Reply {
                    reply,
                    wrote: !mutations.is_empty(),
                };
            }
            let failure = match cluster::replicate(shared, &mutations, sync, as_master) {
                Ok(Wait::None) => None,
                Ok(Wait::Sync(rx)) => match rx.await {
                    Ok(Ok(())) => None,
                    Ok(Err(f)) => Some(f),
                    Err(_) => Some(WriteFailure::Replication),
                },
                Err(f) => Some(f),
            };
            // The write is kept here either way (replication goes on in the background).
            let reply = failure.map_or(reply, ack::failure_reply);
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
