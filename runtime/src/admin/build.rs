//! The subcommands that build nodes and wait for them: `master`, `slave`, `reconstruct` (admin-tool.md §4, §5;
//! cluster.md §6.2, §6.3, §6.5).
//!
//! A build is followed from two sources once a second: the index's `stats nodes` decides when it is over (slave →
//! active; master → ready, or active for the first partition; back to proxy = it failed), and the node's `stats`
//! gives the numbers: `reconstruction_items` / `reconstruction_total` while `reconstruction_running` is 1, else
//! `curr_items` against the master's `curr_items`, as flare-tools does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flare_core::node_map::{NodeRecord, Role, State};

use super::args::{FlushArgs, MasterArgs, ReconstructArgs, SlaveArgs};
use super::client::{Conn, Endpoint};
use super::cluster::{parse_node_args, ArgForm, NodeArg, Nodes};
use super::error::{AdminError, Result};
use super::progress::{BuildSample, Progress};
use super::prompt::{Answer, Prompter};
use super::{address_of, change, node_role, node_state, print_nodes, Ctx, Status};

/// How long `reconstruct` waits for a node it turned down to come back (one monitor interval in Flare).
const BACK_TIMEOUT: Duration = Duration::from_secs(120);

/// What a build waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// slave/active.
    Slave,
    /// master/ready (a new partition) or master/active (the first partition, or a replaced master).
    Master,
}

/// `slave host:port:balance:partition ...`.
pub fn slave(ctx: &Ctx, a: SlaveArgs) -> Result<Status> {
    let args = parse_node_args(&a.nodes, ArgForm::Full)?;
    let keys: Vec<String> = args.iter().map(|x| x.node.key()).collect();
    let mut index = ctx.index(&a.index, &keys)?;
    let mut prompter = Prompter::new(a.change.force || a.change.dry_run);
    let dry = a.change.dry_run;
    let timeout = a.build_timeout.map(Duration::from_secs);
    let mut status = Status::Ok;
    for arg in &args {
        let (b, p) = full(arg)?;
        let nodes = Nodes::fetch(&mut index)?;
        let key = arg.node.key();
        let n = nodes.require(&key)?.clone();
        if n.role == Role::Slave && n.partition == Some(p) && n.state == State::Active {
            println!("{key} is already a slave of partition {p}.");
            continue;
        }
        if n.role == Role::Slave && n.partition == Some(p) && n.state == State::Prepare && !dry {
            // An earlier run was interrupted, or the slave is rebuilding itself: wait for it again.
            println!("{key} is being built as a slave of partition {p} already.");
            let built = wait_build(ctx, &mut index, &n, Goal::Slave, timeout)?;
            restore_balance(&mut index, &mut prompter, &built, b, a.retry, true)?;
            print_nodes(&mut index, &[key])?;
            continue;
        }
        if n.role != Role::Proxy || n.state != State::Active {
            println!("{key} is not a proxy.");
            status = Status::Ng;
            continue;
        }
        let count = nodes.partition_count();
        let preparing = nodes.preparing().and_then(|m| m.partition);
        if p >= count && Some(p) != preparing {
            return Err(AdminError::Usage(format!(
                "partition {p} does not exist (the cluster has {count} partition(s))"
            )));
        }
        if !a.without_clean {
            println!("items of {key} will be cleaned up (exec flush_all)");
        }
        let q = format!("making node slave (node={key}, role={} -> slave)", n.role);
        if !prompter.confirm(&q)? {
            continue;
        }
        if !a.without_clean {
            flush(ctx, &arg.node, dry)?;
        }
        // Our index keeps this balance once the slave is active; Flare's forces 0 (handled below).
        let command = node_role(&n, Role::Slave, b, Some(p));
        change(&mut index, command, a.retry, dry)?;
        if dry {
            continue;
        }
        println!("started constructing slave node...");
        let built = wait_build(ctx, &mut index, &n, Goal::Slave, timeout)?;
        restore_balance(&mut index, &mut prompter, &built, b, a.retry, true)?;
        print_nodes(&mut index, &[key])?;
    }
    Ok(status)
}

/// `master host:port:balance:partition ...`, in partition order.
pub fn master(ctx: &Ctx, a: MasterArgs) -> Result<Status> {
    let mut args = parse_node_args(&a.nodes, ArgForm::Full)?;
    args.sort_by_key(|x| x.partition);
    let keys: Vec<String> = args.iter().map(|x| x.node.key()).collect();
    let mut index = ctx.index(&a.index, &keys)?;
    let mut prompter = Prompter::new(a.change.force || a.change.dry_run);
    let dry = a.change.dry_run;
    let timeout = a.build_timeout.map(Duration::from_secs);
    let mut status = Status::Ok;
    for arg in &args {
        let (b, p) = full(arg)?;
        if b == 0 {
            return Err(AdminError::Usage(format!(
                "{}: a master needs a balance > 0",
                arg.node
            )));
        }
        let nodes = Nodes::fetch(&mut index)?;
        let key = arg.node.key();
        let n = nodes.require(&key)?.clone();
        let ip = format!("{}:{}", address_of(&n.name), n.port);
        let already = n.role == Role::Master && n.partition == Some(p);
        if already && n.state == State::Active {
            println!("{key} is already the master of partition {p}.");
            continue;
        }
        if !already {
            if let Err(why) = master_check(&nodes, &n, p) {
                println!("{why}");
                status = Status::Ng;
                continue;
            }
            if !a.without_clean {
                println!("items of {key} will be cleaned up (exec flush_all)");
            }
            let q = format!(
                "making the node master (node={ip}, role={} -> master)",
                n.role
            );
            if !prompter.confirm(&q)? {
                continue;
            }
            if !a.without_clean {
                flush(ctx, &arg.node, dry)?;
            }
            let command = node_role(&n, Role::Master, b, Some(p));
            change(&mut index, command, a.retry, dry)?;
            if dry {
                continue;
            }
        }
        let built = wait_build(ctx, &mut index, &n, Goal::Master, timeout)?;
        if built.state == State::Ready {
            if a.activate {
                let q = format!("changing node's state (node={ip}, state=ready -> active)");
                if prompter.confirm(&q)? {
                    change(&mut index, node_state(&n, State::Active), a.retry, dry)?;
                }
            } else {
                println!(
                    "{key} is ready: activate partition {p} with `flare-admin activate {key}`."
                );
            }
        }
        print_nodes(&mut index, &[key])?;
    }
    Ok(status)
}

/// Why `n` cannot become the master of partition `p`, if it cannot.
fn master_check(nodes: &Nodes, n: &NodeRecord, p: u32) -> std::result::Result<(), String> {
    let key = n.key();
    if n.role != Role::Proxy || n.state != State::Active {
        return Err(format!("{key} is not a proxy."));
    }
    let count = nodes.partition_count();
    if p > count {
        return Err(format!(
            "partition {p} cannot be made: the next new partition is {count}."
        ));
    }
    if p < count {
        // Only a preserved partition (its master down) takes a new master.
        return match nodes.master_of(p) {
            Some(m) if m.state != State::Down => {
                Err(format!("partition {p} already has a master ({}).", m.key()))
            }
            _ => Ok(()),
        };
    }
    match nodes.preparing() {
        Some(m) => Err(format!(
            "partition {} is being prepared by {}: activate it before adding another.",
            m.partition.map_or(-1, i64::from),
            m.key()
        )),
        None => Ok(()),
    }
}

/// `reconstruct host:port ...` or `--all`: each node is turned down, cleared and rebuilt as a slave, one at a time.
pub fn reconstruct(ctx: &Ctx, a: ReconstructArgs) -> Result<Status> {
    if !a.all && a.nodes.is_empty() {
        return Err(AdminError::Usage(
            "give the nodes to reconstruct (host:port ...) or --all".into(),
        ));
    }
    let named = parse_node_args(&a.nodes, ArgForm::Node)?;
    let named: Vec<String> = named.iter().map(|x| x.node.key()).collect();
    let mut index = ctx.index(&a.index, &named)?;
    let keys = if a.all {
        Nodes::fetch(&mut index)?
            .sorted()
            .into_iter()
            .filter(|n| matches!(n.role, Role::Master | Role::Slave))
            .map(NodeRecord::key)
            .collect()
    } else {
        named
    };
    print_nodes(&mut index, &keys)?;
    println!();
    let mut prompter = Prompter::new(a.change.force || a.change.dry_run);
    let timeout = a.build_timeout.map(Duration::from_secs);
    let mut status = Status::Ok;
    for key in &keys {
        let nodes = Nodes::fetch(&mut index)?;
        let n = nodes.require(key)?.clone();
        match check_reconstruct(&nodes, &n) {
            Check::Impossible(why) => {
                println!("{why}");
                status = Status::Ng;
                continue;
            }
            Check::Unsafe if !a.unsafe_ => {
                println!("The partition needs one more slave to reconstruct {key} safely.");
                status = Status::Ng;
                continue;
            }
            Check::Unsafe => println!("you are trying to reconstruct {key} without redundancy."),
            Check::Safe => {}
        }
        let q = format!("reconstructing node (node={key}, role={})", n.role);
        match prompter.confirm_each(&q)? {
            Answer::No => continue,
            Answer::Quit => break,
            Answer::Yes | Answer::All => {}
        }
        if a.change.dry_run {
            change(&mut index, node_state(&n, State::Down), 0, true)?;
            println!("(dry run) would flush_all {key} and make it a slave of its partition again");
            continue;
        }
        rebuild(ctx, &mut index, &n, a.retry, timeout)?;
        println!("done.");
    }
    print_nodes(&mut index, &keys)?;
    Ok(status)
}

/// Whether a node can be reconstructed (flare-tools' `reconstructable?` and `safely_reconstructable?`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// It would lose data or makes no sense (a proxy, a node not active, a master without an active slave).
    Impossible(String),
    /// Possible, but the partition has a single copy while it runs (`--unsafe` allows it).
    Unsafe,
    /// Another copy stays while it runs.
    Safe,
}

/// Checks node `n` against the current map: a slave needs another active slave to stay safe; a master needs one
/// active slave to take over, and two to stay safe.
pub fn check_reconstruct(nodes: &Nodes, n: &NodeRecord) -> Check {
    let key = n.key();
    let (Some(p), true) = (n.partition, n.state == State::Active) else {
        return Check::Impossible(format!(
            "{key} is {}/{}: only an active master or slave can be reconstructed.",
            n.role, n.state
        ));
    };
    let others = nodes
        .slaves_of(p)
        .iter()
        .filter(|s| s.state == State::Active && s.key() != key)
        .count();
    match n.role {
        Role::Proxy => Check::Impossible(format!("{key} is a proxy: nothing to reconstruct.")),
        Role::Master if others == 0 => Check::Impossible(format!(
            "{key} is the only copy of partition {p}: add a slave before reconstructing it."
        )),
        Role::Master if others < 2 => Check::Unsafe,
        Role::Slave if others < 1 => Check::Unsafe,
        _ => Check::Safe,
    }
}

/// cluster.md §6.5: down, wait until back, clear, make it a slave of its partition again, wait, restore balance.
fn rebuild(
    ctx: &Ctx,
    index: &mut Conn,
    n: &NodeRecord,
    retry: u32,
    timeout: Option<Duration>,
) -> Result<()> {
    let key = n.key();
    // check_reconstruct guarantees a partition.
    let p = n.partition.unwrap_or(0);
    println!("turning down...");
    change(index, node_state(n, State::Down), 0, false)?;
    println!("waiting for node to be active again...");
    let back = wait_back(index, &key)?;
    match back.role {
        // Flare, and our index for a master: it comes back as a proxy with stale data.
        Role::Proxy => {
            flush(ctx, &Endpoint::new(n.name.clone(), n.port), false)?;
            let command = node_role(n, Role::Slave, n.balance, Some(p));
            change(index, command, retry, false)?;
        }
        // Our index: a slave that was down comes back in prepare and rebuilds itself from its master.
        Role::Slave => {}
        Role::Master => {
            return Err(AdminError::Failed(format!(
                "{key} came back as the master of partition {p}: no slave took over, so it was not rebuilt"
            )))
        }
    }
    println!("started constructing node...");
    let built = wait_build(ctx, index, n, Goal::Slave, timeout)?;
    let mut prompter = Prompter::new(true);
    restore_balance(index, &mut prompter, &built, n.balance, retry, false)
}

/// Waits until `key` is no longer down (the index's monitor brings a live node back, cluster.md §5.1).
fn wait_back(index: &mut Conn, key: &str) -> Result<NodeRecord> {
    let started = Instant::now();
    loop {
        let nodes = Nodes::fetch(index)?;
        let n = nodes.require(key)?;
        if n.state != State::Down {
            return Ok(n.clone());
        }
        if started.elapsed() > BACK_TIMEOUT {
            return Err(AdminError::Failed(format!(
                "{key} is still down after {} s: is its process running?",
                BACK_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Sets the slave's balance to `balance` if the index did not keep it (Flare forces 0 during a build).
fn restore_balance(
    index: &mut Conn,
    prompter: &mut Prompter,
    built: &NodeRecord,
    balance: u32,
    retry: u32,
    ask: bool,
) -> Result<()> {
    if built.balance == balance {
        return Ok(());
    }
    let q = format!(
        "changing node's balance (node={}, balance={} -> {balance})",
        built.key(),
        built.balance
    );
    if !ask || prompter.confirm(&q)? {
        let command = node_role(built, Role::Slave, balance, built.partition);
        change(index, command, retry, false)?;
    }
    Ok(())
}

/// Waits once a second until `n` reaches `goal`, showing progress; fails when it falls back to proxy or `timeout`
/// passes.
pub fn wait_build(
    ctx: &Ctx,
    index: &mut Conn,
    n: &NodeRecord,
    goal: Goal,
    timeout: Option<Duration>,
) -> Result<NodeRecord> {
    let key = n.key();
    let at = Endpoint::new(n.name.clone(), n.port);
    let mut node_conn: Option<Conn> = None;
    let mut master_conn: Option<(String, Conn)> = None;
    let mut progress = Progress::build();
    let started = Instant::now();
    loop {
        let nodes = Nodes::fetch(index)?;
        let rec = nodes.get(&key).cloned().ok_or_else(|| {
            AdminError::Failed(format!("{key} left the node list during its build"))
        })?;
        let node_stats = stats_of(ctx, &mut node_conn, &at);
        let master_items = match (goal, rec.partition.and_then(|p| nodes.master_of(p))) {
            (Goal::Slave, Some(m)) => master_items(ctx, &mut master_conn, m),
            _ => None,
        };
        progress.build_update(&build_sample(&rec, node_stats.as_ref(), master_items));
        let done = match goal {
            Goal::Slave => rec.role == Role::Slave && rec.state == State::Active,
            Goal::Master => {
                rec.role == Role::Master && matches!(rec.state, State::Ready | State::Active)
            }
        };
        if done {
            progress.finish();
            eprintln!("state is {} -> stop waiting", rec.state);
            return Ok(rec);
        }
        if rec.role == Role::Proxy {
            progress.finish();
            return Err(AdminError::Failed(format!(
                "building {key} failed: the index shows it as proxy/{} again (see the node's log)",
                rec.state
            )));
        }
        if let Some(t) = timeout {
            if started.elapsed() >= t {
                progress.finish();
                return Err(AdminError::Failed(format!(
                    "{key} is still {}/{} after {} s (the build goes on)",
                    rec.role,
                    rec.state,
                    t.as_secs()
                )));
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What to show for a node being built (module docs).
pub fn build_sample(
    rec: &NodeRecord,
    node: Option<&BTreeMap<String, String>>,
    master_items: Option<u64>,
) -> BuildSample {
    let num = |k: &str| {
        node.and_then(|s| s.get(k))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let recorded_total = num("reconstruction_total").filter(|t| *t > 0);
    let (done, total) = if num("reconstruction_running") == Some(1) {
        (
            num("reconstruction_items").unwrap_or(0),
            recorded_total.or(master_items),
        )
    } else {
        (
            num("curr_items").unwrap_or(0),
            master_items.or(recorded_total),
        )
    };
    BuildSample {
        done,
        total,
        role: rec.role,
        state: rec.state,
    }
}

/// The node's `stats`, reconnecting when needed; `None` while it cannot be read (it may be restarting).
fn stats_of(ctx: &Ctx, conn: &mut Option<Conn>, at: &Endpoint) -> Option<BTreeMap<String, String>> {
    if conn.is_none() {
        *conn = Conn::node(at, &ctx.conn).ok();
    }
    match conn.as_mut()?.stats(None) {
        Ok(s) => Some(s.into_iter().collect()),
        Err(_) => {
            *conn = None;
            None
        }
    }
}

/// `curr_items` of the partition's master (it may change during a reconstruction's failover).
fn master_items(ctx: &Ctx, conn: &mut Option<(String, Conn)>, m: &NodeRecord) -> Option<u64> {
    if conn.as_ref().is_some_and(|(k, _)| *k != m.key()) {
        *conn = None;
    }
    let mut c = conn.take().map(|(_, c)| c);
    let stats = stats_of(ctx, &mut c, &Endpoint::new(m.name.clone(), m.port));
    *conn = c.map(|c| (m.key(), c));
    stats?.get("curr_items")?.parse().ok()
}

/// `flush host:port ...`: `flush_all` on each node alone. Every connection of this tool opens with `version`, which
/// makes it an operator's session whose `flush_all` is local to the node (docs/compatibility.md).
pub fn flush_nodes(ctx: &Ctx, a: FlushArgs) -> Result<Status> {
    let args = parse_node_args(&a.nodes, ArgForm::Node)?;
    let mut prompter = Prompter::new(a.change.force || a.change.dry_run);
    for arg in &args {
        let at = &arg.node;
        let q = format!("removing every item of {at} (flush_all, this node only)");
        if prompter.confirm(&q)? {
            flush(ctx, at, a.change.dry_run)?;
            if !a.change.dry_run {
                println!("{at}: flushed");
            }
        }
    }
    Ok(Status::Ok)
}

/// `flush_all` on a node (flare-tools clears a node before it builds it; cluster.md §6.2 step 1).
fn flush(ctx: &Ctx, at: &Endpoint, dry: bool) -> Result<()> {
    let mut c = ctx.node(at)?;
    if dry {
        println!("(dry run) would send to {at}: flush_all");
        return Ok(());
    }
    c.expect_ok("flush_all")
}

fn full(arg: &NodeArg) -> Result<(u32, u32)> {
    match (arg.balance, arg.partition) {
        (Some(b), Some(p)) => Ok((b, p)),
        _ => Err(AdminError::Usage(format!(
            "invalid argument '{}' (expected host:port:balance:partition)",
            arg.node
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(spec: &[(&str, &str, &str, &str)]) -> Nodes {
        let mut stats = Vec::new();
        for (key, role, state, part) in spec {
            for (f, v) in [
                ("role", *role),
                ("state", *state),
                ("partition", *part),
                ("balance", "1"),
                ("thread_type", "16"),
            ] {
                stats.push((format!("{key}:{f}"), v.to_string()));
            }
        }
        Nodes::parse(&stats).unwrap()
    }

    #[test]
    fn reconstruct_keeps_a_copy_of_every_partition() {
        let one = nodes(&[("m:1", "master", "active", "0")]);
        let m = one.get("m:1").unwrap();
        assert!(matches!(check_reconstruct(&one, m), Check::Impossible(_)));
        let two = nodes(&[
            ("m:1", "master", "active", "0"),
            ("s:1", "slave", "active", "0"),
        ]);
        assert_eq!(
            check_reconstruct(&two, two.get("m:1").unwrap()),
            Check::Unsafe
        );
        assert_eq!(
            check_reconstruct(&two, two.get("s:1").unwrap()),
            Check::Unsafe
        );
        let three = nodes(&[
            ("m:1", "master", "active", "0"),
            ("s:1", "slave", "active", "0"),
            ("t:1", "slave", "prepare", "0"),
            ("u:1", "slave", "active", "0"),
            ("p:1", "proxy", "active", "-1"),
        ]);
        assert_eq!(
            check_reconstruct(&three, three.get("m:1").unwrap()),
            Check::Safe
        );
        assert_eq!(
            check_reconstruct(&three, three.get("s:1").unwrap()),
            Check::Safe
        );
        assert!(matches!(
            check_reconstruct(&three, three.get("t:1").unwrap()),
            Check::Impossible(_)
        ));
        assert!(matches!(
            check_reconstruct(&three, three.get("p:1").unwrap()),
            Check::Impossible(_)
        ));
    }

    #[test]
    fn master_checks() {
        let n = nodes(&[
            ("m:1", "master", "active", "0"),
            ("p:1", "proxy", "active", "-1"),
            ("q:1", "proxy", "active", "-1"),
            ("r:1", "master", "prepare", "1"),
        ]);
        let p = n.get("p:1").unwrap();
        assert!(master_check(&n, p, 0)
            .unwrap_err()
            .contains("already has a master"));
        assert!(master_check(&n, p, 1)
            .unwrap_err()
            .contains("being prepared by r:1"));
        assert!(master_check(&n, p, 2)
            .unwrap_err()
            .contains("next new partition is 1"));
        assert!(master_check(&n, n.get("m:1").unwrap(), 1)
            .unwrap_err()
            .contains("not a proxy"));
        let fresh = nodes(&[("p:1", "proxy", "active", "-1")]);
        assert_eq!(master_check(&fresh, fresh.get("p:1").unwrap(), 0), Ok(()));
    }

    #[test]
    fn progress_numbers_come_from_the_reconstruction_while_it_runs() {
        let n = nodes(&[("s:1", "slave", "prepare", "0")]);
        let rec = n.get("s:1").unwrap();
        let stats = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let running = stats(&[
            ("reconstruction_running", "1"),
            ("reconstruction_items", "40"),
            ("reconstruction_total", "100"),
            ("curr_items", "55"),
        ]);
        let s = build_sample(rec, Some(&running), Some(120));
        assert_eq!((s.done, s.total), (40, Some(100)));
        let idle = stats(&[("reconstruction_running", "0"), ("curr_items", "120")]);
        let s = build_sample(rec, Some(&idle), Some(120));
        assert_eq!((s.done, s.total), (120, Some(120)));
        let s = build_sample(rec, None, None);
        assert_eq!((s.done, s.total), (0, None));
    }
}
