//! Running a client request on a cluster node: [`admit::route`] plans it ([`flare_core::node::plan`]: where each
//! part runs, how the answers merge; the lease refusal), [`ack`] says what a local run leads to and what a
//! replicated write answers; this module runs the parts (local ones on the store, the rest over the peer
//! connections, all at once in the client connection's own task) and hands the answers back until the plan is done.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use flare_core::exec::{self, Tally};
pub(super) use flare_core::node::ack::Ran;
use flare_core::node::ack::{self, Executed};
use flare_core::node::admit;
use flare_core::node::plan::{Answer, Finish, Part, Pending, Plan};
use flare_core::node::targets::WriteFailure;
use flare_core::protocol::{Command, Framing};
use flare_core::storage::Storage;
use tokio::time::Instant;

use super::cluster;
use super::Shared;
use crate::net::Net;

/// Runs a command on a node of a cluster, as [`admit::route`] plans it.
pub(super) async fn run<N: Net, S: Storage + 'static>(
    shared: &Arc<Shared<N, S>>,
    framing: &Framing,
    operator: bool,
    command: Command,
    tally: &mut Tally,
) -> Ran {
    let published = shared.cluster.published();
    let now = Instant::now().into_std();
    let mut pick = || shared.cluster.pick();
    let routed = admit::route(&published, now, framing, operator, command, &mut pick);
    if let Some(seq) = routed.applied {
        cluster::applied(shared, seq);
    }
    let mut pending = match routed.plan {
        Plan::Local { command, write } => {
            return local(shared, command, write, routed.as_master, tally).await
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
        let answers = run_parts(shared, &pending, routed.as_master, tally, &mut wrote).await;
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
                let ran = local(shared, command.clone(), *write, as_master, tally).await;
                let (answer, w) = ran.into_part();
                *wrote |= w;
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
    let outcome = exec::execute(&shared.store, command, shared.now(), tally);
    let (reply, mutations) = match ack::executed(outcome, write) {
        Executed::Ran(ran) => return ran,
        Executed::Replicate { reply, mutations } => (reply, mutations),
    };
    let result = match cluster::replicate(shared, &mutations, sync, as_master) {
        Ok(None) => Ok(()),
        // A waiter dropped unanswered: the machine stopped waiting for the slaves.
        Ok(Some(rx)) => rx.await.unwrap_or(Err(WriteFailure::Replication)),
        Err(f) => Err(f),
    };
    ack::acknowledged(reply, result)
}
