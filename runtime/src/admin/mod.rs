//! `flare-admin` and `flare-stats`: the operator tools (admin-tool.md), a re-implementation of Ruby flare-tools'
//! subcommands with the same names, argument forms (`host:port:balance:partition`), prompts, progress lines and exit
//! status (0 = OK, 1 = NG).
//!
//! Layout:
//! - [`args`]: the clap command line;
//! - [`client`]: one blocking connection (handshake, timeouts, replies read by core's `ReplyReader`);
//! - [`cluster`]: `stats nodes` as core's `NodeMap`, the index-server choice, node arguments;
//! - [`indexes`]: a group of index servers (their Raft role, term, leader and applied index from `stats`, the
//!   leader's refusal lines) and the `index list|add|remove` subcommands;
//! - [`prompt`], [`progress`], [`table`]: confirmations, progress display, output formats (pure where possible);
//! - `ops` (ping, list, stats, balance, down, activate, remove, index, threads), `build` (master, slave,
//!   reconstruct), `transfer` (dump, dumpkey, restore) and `verify`: the subcommands.
//!
//! Every subcommand reads the cluster from the index (`stats nodes`) before each change it makes, and changes it
//! only through the index's `node role`, `node state` and `node remove` commands and the node's `flush_all`, as
//! flare-tools does (cluster.md §6). Where our servers behave better than Flare's (a slave keeps the balance given
//! in `node role`, a slave that was down rebuilds itself), the tool follows what the index reports instead of
//! assuming Flare's behaviour, so it works against both.

pub mod args;
mod build;
pub mod client;
pub mod cluster;
pub mod error;
pub mod indexes;
mod ops;
pub mod progress;
pub mod prompt;
pub mod table;
mod transfer;
mod verify;

use std::ffi::OsString;
use std::io::Write;
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flare_core::node_map::{NodeRecord, Role, State};
use flare_core::protocol::admin::{AdminCommand, IndexCommand, NodeAddr};

use self::args::{Cli, Command, IndexAction, IndexArgs};
use self::client::{Conn, ConnOpts, Endpoint, Trace};
use self::cluster::{choose_index, IndexEnv, IndexRequest, Nodes};
use self::error::{AdminError, Result};

/// How a subcommand that ran to its end came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1: the subcommand ran, and what it checked or did was not all right (a node down, a check failed,
    /// a node skipped).
    Ng,
}

/// Runs the tool on `args` (`args[0]` is the program name). `shortcut` is the subcommand a shortcut binary
/// implies (`flare-stats` → `stats`); a program *named* `flare-stats` or `flare-ping` (a symlink to flare-admin)
/// implies it too, as flare-tools' shortcuts do (admin-tool.md §1).
pub fn main(mut args: Vec<OsString>, shortcut: Option<&str>) -> ExitCode {
    let program = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flare-admin".into());
    let implied = shortcut.or(match program.as_str() {
        "flare-stats" => Some("stats"),
        "flare-ping" => Some("ping"),
        _ => None,
    });
    if let Some(sub) = implied {
        // Parsed as `flare-admin <sub> ...`, so usage lines name the real command.
        args.insert(1.min(args.len()), sub.into());
        if let Some(first) = args.first_mut() {
            *first = "flare-admin".into();
        }
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::Ng) => ExitCode::from(1),
        // A reader that went away (`flare-admin dump ... | head`) is not worth a message.
        Err(AdminError::File { reason, .. }) if reason == "broken pipe" => ExitCode::from(1),
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("{program}: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<Status> {
    let trace = match (&cli.common.log_file, cli.common.debug) {
        (Some(path), true) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| AdminError::File {
                    path: path.display().to_string(),
                    reason: error::reason(&e),
                })?;
            Trace::to(Box::new(f))
        }
        (None, true) => Trace::to(Box::new(std::io::stderr())),
        (_, false) => Trace::default(),
    };
    let ctx = Ctx {
        conn: ConnOpts {
            timeout: Duration::from_secs(cli.common.timeout.max(1)),
            trace,
            secret: cli.common.cluster_secret.clone(),
        },
        top_index: cli.index,
        env: IndexEnv::from_process(),
    };
    match cli.command {
        Command::Ping(a) => ops::ping(&ctx, a),
        Command::List(a) => ops::list(&ctx, a),
        Command::Stats(a) => ops::stats(&ctx, a),
        Command::Master(a) => build::master(&ctx, a),
        Command::Slave(a) => build::slave(&ctx, a),
        Command::Balance(a) => ops::balance(&ctx, a),
        Command::Down(a) => ops::down(&ctx, a),
        Command::Activate(a) => ops::activate(&ctx, a),
        Command::Reconstruct(a) => build::reconstruct(&ctx, a),
        Command::Flush(a) => build::flush_nodes(&ctx, a),
        Command::Remove(a) => ops::remove(&ctx, a),
        Command::Index(a) => match a.action {
            None => ops::index(&ctx, a),
            Some(_) if a.output.is_some() || a.increment != 0 => Err(AdminError::Usage(
                "--output and --increment are options of `index` alone (the flare.xml), not of `index list|add|remove`"
                    .into(),
            )),
            Some(IndexAction::List(mut l)) => {
                l.index = l.index.or(&a.index);
                indexes::list(&ctx, l)
            }
            Some(IndexAction::Add(mut m)) => {
                m.index = m.index.or(&a.index);
                indexes::add(&ctx, m)
            }
            Some(IndexAction::Remove(mut m)) => {
                m.index = m.index.or(&a.index);
                indexes::remove(&ctx, m)
            }
        },
        Command::Threads(a) => ops::threads(&ctx, a),
        Command::Dump(a) => transfer::dump(&ctx, a),
        Command::Dumpkey(a) => transfer::dumpkey(&ctx, a),
        Command::Restore(a) => transfer::restore(&ctx, a),
        Command::Verify(a) => verify::verify(&ctx, a),
    }
}

/// What every subcommand shares: connection options and the index-server choice.
pub struct Ctx {
    /// Timeout and `--debug` trace.
    pub conn: ConnOpts,
    top_index: IndexArgs,
    env: IndexEnv,
}

impl Ctx {
    /// The index servers for a subcommand's options (which win over the ones before the subcommand); `node_keys`
    /// are the nodes the subcommand names, used to pick a cluster from `FLARE_INDEX_SERVERS`. Never empty.
    pub fn index_servers(&self, sub: &IndexArgs, node_keys: &[String]) -> Result<Vec<Endpoint>> {
        let servers = if sub.index_servers.is_empty() {
            self.top_index.index_servers.clone()
        } else {
            sub.index_servers.clone()
        };
        let req = IndexRequest {
            servers,
            port: sub.index_server_port.or(self.top_index.index_server_port),
            cluster: sub.cluster.clone().or(self.top_index.cluster.clone()),
        };
        choose_index(&req, &self.env, node_keys, |servers| {
            let mut c = Conn::index_group(servers, &self.conn).ok()?;
            let nodes = Nodes::fetch(&mut c).ok()?;
            Some(nodes.map.nodes.keys().cloned().collect())
        })
    }

    /// A connection to the index server (of several, the leader; see [`Conn::index_group`]).
    pub fn index(&self, sub: &IndexArgs, node_keys: &[String]) -> Result<Conn> {
        Conn::index_group(&self.index_servers(sub, node_keys)?, &self.conn)
    }

    /// A connection to a node.
    pub fn node(&self, at: &Endpoint) -> Result<Conn> {
        Conn::node(at, &self.conn)
    }
}

/// Sends a map-changing command (`node role`, `node state`, `node remove`) and requires `OK`. A refusal is retried
/// `retry` times, sleeping 1, 2, … s in between, as flare-tools does. In a dry run the command is only printed.
pub fn change(conn: &mut Conn, command: IndexCommand, retry: u32, dry_run: bool) -> Result<()> {
    let command = AdminCommand::Index(command).to_line();
    if dry_run {
        println!("(dry run) would send to {}: {command}", conn.addr());
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        match conn.expect_ok(&command) {
            Ok(()) => return Ok(()),
            // Retrying cannot cure a refusal of who is asking (cluster-secret, internal-netmask).
            Err(e @ AdminError::Refused { .. })
                if attempt < retry && !is_permission_refusal(&e) =>
            {
                attempt += 1;
                eprintln!("{e}; retrying in {attempt} s ({attempt}/{retry})");
                std::thread::sleep(Duration::from_secs(u64::from(attempt)));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `node role <n> <role> <balance> <partition>`, without the epoch only nodes send.
pub fn node_role(n: &NodeRecord, role: Role, balance: u32, partition: Option<u32>) -> IndexCommand {
    IndexCommand::NodeRole {
        node: NodeAddr::from(n),
        role,
        balance: balance.into(),
        partition: partition.map_or(-1, i64::from),
        epoch: None,
    }
}

/// `node state <n> <state>`, without the epoch only nodes send.
pub fn node_state(n: &NodeRecord, state: State) -> IndexCommand {
    IndexCommand::NodeState {
        node: NodeAddr::from(n),
        state,
        epoch: None,
    }
}

fn is_permission_refusal(e: &AdminError) -> bool {
    matches!(e, AdminError::Refused { reply, .. }
        if reply.starts_with("CLIENT_ERROR authentication") || reply.contains("not allowed from this address"))
}

/// The IPv4 (else any) address `name` resolves to, for prompts and `list --numeric-hosts`; the name itself when it
/// does not resolve.
pub fn address_of(name: &str) -> String {
    let addrs: Vec<std::net::SocketAddr> = match (name, 0).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => return name.to_string(),
    };
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map_or(name.to_string(), |a| a.ip().to_string())
}

/// Prints the `list` table of `keys` (as flare-tools does after each change).
pub fn print_nodes(index: &mut Conn, keys: &[String]) -> Result<()> {
    let nodes = Nodes::fetch(index)?;
    let mut shown: Vec<_> = nodes
        .sorted()
        .into_iter()
        .filter(|n| keys.contains(&n.key()))
        .collect();
    shown.dedup_by_key(|n| n.key());
    print!("{}", table::list_table(&shown, |n| n.name.clone()));
    Ok(())
}
