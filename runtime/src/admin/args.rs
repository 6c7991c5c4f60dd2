//! The command line of `flare-admin` (clap derive): the subcommands and options of admin-tool.md §4, with
//! flare-tools' option names so runbooks keep working.
//!
//! The index-server options (`-i`, `-p`, `--cluster`) are accepted before the subcommand and after it (as
//! flare-tools takes them). They are not clap globals because two subcommands reuse the letters, as in
//! flare-tools: `restore -i FILE` and `dumpkey -p PARTITION`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `flare-admin`: manage a Flare cluster through its index server.
#[derive(Debug, Parser)]
#[command(
    name = "flare-admin",
    version,
    about = "Manage a Flare cluster: list and inspect nodes, add masters and slaves, reconstruct, remove, dump and restore data, verify placement.",
    after_help = "Exit status: 0 = OK, 1 = NG.\nThe index server is -i/--index-server, else --cluster (FLARE_INDEX_SERVERS), else FLARE_INDEX_SERVER, else 127.0.0.1:12120.\nSeveral index servers (--index-servers a:p,b:p,c:p, or -i repeated): map changes go to their leader, and a server that is down is skipped."
)]
pub struct Cli {
    /// Index server selection (may also follow the subcommand).
    #[command(flatten)]
    pub index: IndexArgs,
    /// Options of every subcommand.
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `-i/--index-server`, `-p/--index-server-port`, `--cluster` (admin-tool.md §3). Several index servers (a Raft
/// group, docs/index-servers.md) are given as a comma list (`--index-servers a:p,b:p,c:p`, the name `flared` and
/// `flarei` use for the option) or by repeating `-i`; the tool talks to the group's leader and, when a server is
/// down, to the next one.
#[derive(Clone, Debug, Default, Args)]
pub struct IndexArgs {
    /// Index server, HOST[:PORT]; several as a comma list or repeated (default: FLARE_INDEX_SERVER, else
    /// 127.0.0.1:12120).
    #[arg(
        short = 'i',
        long = "index-server",
        visible_alias = "index-servers",
        value_name = "HOST[:PORT][,...]",
        value_delimiter = ','
    )]
    pub index_servers: Vec<String>,
    /// Index server port (default: FLARE_INDEX_SERVER_PORT, else 12120).
    #[arg(short = 'p', long = "index-server-port", value_name = "PORT")]
    pub index_server_port: Option<u16>,
    /// Cluster name looked up in FLARE_INDEX_SERVERS (name:host:port;...).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

impl IndexArgs {
    /// These options, with `outer`'s where these give none (`flare-admin index -i HOST list`).
    pub fn or(self, outer: &IndexArgs) -> IndexArgs {
        IndexArgs {
            index_servers: if self.index_servers.is_empty() {
                outer.index_servers.clone()
            } else {
                self.index_servers
            },
            index_server_port: self.index_server_port.or(outer.index_server_port),
            cluster: self.cluster.or_else(|| outer.cluster.clone()),
        }
    }
}

/// The index options of `dumpkey`, whose `-p` is the partition (as in flare-tools).
#[derive(Clone, Debug, Default, Args)]
pub struct DumpkeyIndexArgs {
    /// Index server, HOST[:PORT]; several as a comma list or repeated.
    #[arg(
        short = 'i',
        long = "index-server",
        visible_alias = "index-servers",
        value_name = "HOST[:PORT][,...]",
        value_delimiter = ','
    )]
    pub index_servers: Vec<String>,
    /// Index server port.
    #[arg(long = "index-server-port", value_name = "PORT")]
    pub index_server_port: Option<u16>,
    /// Cluster name looked up in FLARE_INDEX_SERVERS.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

impl From<DumpkeyIndexArgs> for IndexArgs {
    fn from(a: DumpkeyIndexArgs) -> IndexArgs {
        IndexArgs {
            index_servers: a.index_servers,
            index_server_port: a.index_server_port,
            cluster: a.cluster,
        }
    }
}

/// Options shared by every subcommand.
#[derive(Clone, Debug, Args)]
pub struct CommonArgs {
    /// Seconds to wait for each reply (dumps wait as long as they need).
    #[arg(long, global = true, default_value_t = 10, value_name = "SEC")]
    pub timeout: u64,
    /// Print every command sent and every reply line read, to stderr (or --log-file).
    #[arg(long, global = true)]
    pub debug: bool,
    /// Write --debug output to FILE instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// The index server's `cluster-secret`, sent with `auth` before anything else (needed for map changes when the
    /// index has one). Prefer the environment variable: arguments are visible to other local users.
    #[arg(
        long,
        global = true,
        env = "FLARE_CLUSTER_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub cluster_secret: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that servers answer `ping` (prints `alive`).
    Ping(PingArgs),
    /// List the nodes the index server knows.
    List(ListArgs),
    /// Show the cluster's statistics table (also `flare-stats`).
    Stats(StatsArgs),
    /// Make proxies masters: start a new partition (or the first one).
    Master(MasterArgs),
    /// Make proxies slaves of a partition and wait until they are built.
    Slave(SlaveArgs),
    /// Change nodes' read balance (host:port:balance).
    Balance(ChangeArgs),
    /// Turn nodes down (a master's slave takes over).
    Down(ChangeArgs),
    /// Turn nodes up, or activate a ready master (its partition starts serving).
    Activate(ChangeArgs),
    /// Rebuild nodes from their partition's other copies, one by one.
    Reconstruct(ReconstructArgs),
    /// Remove every item from these nodes only (a master's slaves follow it); a client's flush_all flushes the
    /// whole cluster instead.
    Flush(FlushArgs),
    /// Remove down nodes from the cluster.
    Remove(RemoveArgs),
    /// Print the node map as Flare's flare.xml; `index list|add|remove`: the index servers' group.
    Index(IndexCmdArgs),
    /// Show the threads (connections, node monitors) of the index server or a node.
    Threads(ThreadsArgs),
    /// Dump the data of nodes to a file.
    Dump(DumpArgs),
    /// Dump the keys of nodes.
    Dumpkey(DumpkeyArgs),
    /// Restore a dump file into a cluster through a node.
    Restore(RestoreArgs),
    /// Check that every key is on its partition and that slaves hold what their master holds.
    Verify(VerifyArgs),
}

/// `ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Servers to ping, host:port (default: the index server).
    pub hosts: Vec<String>,
    /// Keep trying once a second until every server answers.
    #[arg(long)]
    pub wait: bool,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Show node addresses instead of names.
    #[arg(long)]
    pub numeric_hosts: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Show only these nodes (host:port).
    pub hosts: Vec<String>,
    /// Add qps, qps-r and qps-w columns.
    #[arg(short = 'q', long)]
    pub qps: bool,
    /// Seconds between samples.
    #[arg(short = 'w', long, default_value_t = 1, value_name = "SEC")]
    pub wait: u64,
    /// Number of tables to print (with --watch: refreshes before stopping; default forever).
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,
    /// Column delimiter.
    #[arg(short = 'd', long, default_value = " ", value_name = "CHAR")]
    pub delimiter: String,
    /// Refresh the table in place every --wait seconds until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of every subcommand that changes the cluster.
#[derive(Clone, Debug, Args)]
pub struct ChangeOpts {
    /// Do not ask for confirmation (safety checks still apply).
    #[arg(long)]
    pub force: bool,
    /// Show what would be sent; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// `master`.
#[derive(Debug, Args)]
pub struct MasterArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Nodes as host:port:balance:partition.
    #[arg(required = true)]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub change: ChangeOpts,
    /// Attempts of `node role` when the index refuses it.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub retry: u32,
    /// Activate the partition once its master is ready.
    #[arg(long)]
    pub activate: bool,
    /// Do not flush_all the node first.
    #[arg(long)]
    pub without_clean: bool,
    /// Give up waiting for the build after SEC seconds (default: wait as long as it takes).
    #[arg(long, value_name = "SEC")]
    pub build_timeout: Option<u64>,
}

/// `slave`.
#[derive(Debug, Args)]
pub struct SlaveArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Nodes as host:port:balance:partition.
    #[arg(required = true)]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub change: ChangeOpts,
    /// Attempts of `node role` when the index refuses it.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub retry: u32,
    /// Do not flush_all the node first.
    #[arg(long)]
    pub without_clean: bool,
    /// Obsolete (cleaning is the default); accepted for flare-tools runbooks.
    #[arg(long, hide = true)]
    pub clean: bool,
    /// Give up waiting for the build after SEC seconds (default: wait as long as it takes).
    #[arg(long, value_name = "SEC")]
    pub build_timeout: Option<u64>,
}

/// `balance`, `down`, `activate`.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Nodes as host:port (balance: host:port:balance).
    #[arg(required = true)]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub change: ChangeOpts,
}

/// `flush`.
#[derive(Debug, Args)]
pub struct FlushArgs {
    /// Nodes as host:port.
    #[arg(required = true)]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub change: ChangeOpts,
}

/// `reconstruct`.
#[derive(Debug, Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Nodes as host:port.
    pub nodes: Vec<String>,
    /// Every master and slave, one after the other.
    #[arg(long, conflicts_with = "nodes")]
    pub all: bool,
    #[command(flatten)]
    pub change: ChangeOpts,
    /// Allow a reconstruction that leaves the partition with a single copy while it runs.
    #[arg(long = "unsafe")]
    pub unsafe_: bool,
    /// Obsolete (safe is the default); accepted for flare-tools runbooks.
    #[arg(long, hide = true)]
    pub safe: bool,
    /// Attempts of `node role` when the index refuses it.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub retry: u32,
    /// Give up waiting for a build after SEC seconds (default: wait as long as it takes).
    #[arg(long, value_name = "SEC")]
    pub build_timeout: Option<u64>,
}

/// `remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Nodes as host:port.
    #[arg(required = true)]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub change: ChangeOpts,
    /// Attempts when the index refuses.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retry: u32,
}

/// `index`: without an action, flare-tools' `index` (the node map as `flare.xml`); with one, the index servers'
/// Raft group.
#[derive(Debug, Args)]
pub struct IndexCmdArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Write the XML to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Add N to the node map version written.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub increment: u64,
    /// The index servers' group; without one, print the node map as flare.xml.
    #[command(subcommand)]
    pub action: Option<IndexAction>,
}

/// `index list`, `index add`, `index remove`.
#[derive(Debug, Subcommand)]
pub enum IndexAction {
    /// Show each index server's Raft role, term, leader and applied index.
    List(IndexListArgs),
    /// Add an index server to the group (start it first with index-join and the list including it).
    Add(IndexMemberArgs),
    /// Remove an index server from the group (stop it afterwards).
    Remove(IndexMemberArgs),
}

/// `index list`.
#[derive(Debug, Args)]
pub struct IndexListArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `index add`, `index remove`.
#[derive(Debug, Args)]
pub struct IndexMemberArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// The index server, host:port (its server-name and server-port, as in index-servers).
    pub server: String,
    #[command(flatten)]
    pub change: ChangeOpts,
}

/// `threads`.
#[derive(Debug, Args)]
pub struct ThreadsArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// The server, host:port (default: the index server).
    pub host: Option<String>,
}

/// Output formats of `dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DumpFormat {
    /// `<key> <flag> <len> <version> <expire> '<data>'` per item (restorable).
    Default,
    /// `# key, flag, len, version, expire, data` and one CSV row per item.
    Csv,
}

/// Output formats of `dumpkey`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyFormat {
    /// One key per line.
    Plain,
    /// `# key` and one CSV row per key.
    Csv,
}

/// `dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Nodes as host:port.
    pub nodes: Vec<String>,
    /// Every master.
    #[arg(long, conflicts_with = "nodes")]
    pub all: bool,
    /// Output file (default: stdout).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value_t = DumpFormat::Default)]
    pub format: DumpFormat,
    /// Bandwidth limit: bits/s, or with k/M/G (bits) or B/kB/MB/GB (bytes) suffixes.
    #[arg(long, value_name = "BW")]
    pub bwlimit: Option<String>,
    /// Everything the node holds, without the partition filter (works without an index server).
    #[arg(long)]
    pub raw: bool,
}

/// `dumpkey`.
#[derive(Debug, Args)]
pub struct DumpkeyArgs {
    #[command(flatten)]
    pub index: DumpkeyIndexArgs,
    /// Nodes as host:port.
    pub nodes: Vec<String>,
    /// Every master, each with its own partition.
    #[arg(long, conflicts_with = "nodes")]
    pub all: bool,
    /// Only keys of this partition.
    #[arg(short = 'p', long, value_name = "N")]
    pub partition: Option<u32>,
    /// The partition count of the filter (default: the cluster's).
    #[arg(short = 's', long, value_name = "SIZE")]
    pub partition_size: Option<u32>,
    /// Output file (default: stdout).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value_t = KeyFormat::Plain)]
    pub format: KeyFormat,
    /// Bandwidth limit (as dump).
    #[arg(long, value_name = "BW")]
    pub bwlimit: Option<String>,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The node to send the items to, host:port (it routes each one to its partition's master).
    #[arg(required = true)]
    pub nodes: Vec<String>,
    /// The dump file (`dump -f default`); `-` or none for stdin.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Input format.
    #[arg(short = 'f', long, value_enum, default_value_t = DumpFormat::Default)]
    pub format: DumpFormat,
    /// Only keys matching this regular expression.
    #[arg(long, value_name = "RE")]
    pub include: Option<String>,
    /// Only keys starting with this prefix.
    #[arg(long, value_name = "PREFIX")]
    pub prefix_include: Option<String>,
    /// Skip keys matching this regular expression.
    #[arg(long, value_name = "RE")]
    pub exclude: Option<String>,
    /// Print each restored key.
    #[arg(long)]
    pub print_keys: bool,
    /// Bandwidth limit (as dump).
    #[arg(long, value_name = "BW")]
    pub bwlimit: Option<String>,
    /// Read the file and count; send nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Hash algorithm to place keys with (default: the index's `meta`).
    #[arg(long, value_name = "simple|crc32|jenkins")]
    pub key_hash_algorithm: Option<String>,
    /// Read the partitioning from the index's `meta` (the default; kept for flare-tools runbooks).
    #[arg(long)]
    pub meta: bool,
    /// Print every bad key.
    #[arg(long)]
    pub verbose: bool,
    /// Print only the result.
    #[arg(long)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn index_options_go_before_or_after_the_subcommand() {
        let c = Cli::try_parse_from(["flare-admin", "-i", "idx:1", "list"]).unwrap();
        assert_eq!(c.index.index_servers, ["idx:1"]);
        let c = Cli::try_parse_from(["flare-admin", "list", "-i", "idx:2", "--json"]).unwrap();
        match c.command {
            Command::List(l) => {
                assert_eq!(l.index.index_servers, ["idx:2"]);
                assert!(l.json);
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from([
            "flare-admin",
            "dumpkey",
            "-p",
            "1",
            "-s",
            "2",
            "n:1",
            "--timeout",
            "3",
        ])
        .unwrap();
        assert_eq!(c.common.timeout, 3);
        match c.command {
            Command::Dumpkey(d) => assert_eq!((d.partition, d.partition_size), (Some(1), Some(2))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn several_index_servers_as_a_list_or_repeated_flags() {
        let servers = |args: &[&str]| {
            let mut all = vec!["flare-admin"];
            all.extend_from_slice(args);
            let c = Cli::try_parse_from(all).unwrap();
            match c.command {
                Command::List(l) => l.index.or(&c.index).index_servers,
                other => panic!("{other:?}"),
            }
        };
        let three = ["a:1", "b:2", "c:3"];
        assert_eq!(servers(&["--index-servers", "a:1,b:2,c:3", "list"]), three);
        assert_eq!(servers(&["--index-servers=a:1,b:2,c:3", "list"]), three);
        assert_eq!(
            servers(&["-i", "a:1", "-i", "b:2", "--index-server", "c:3", "list"]),
            three
        );
        assert_eq!(
            servers(&["list", "-i", "a:1,b:2", "--index-servers", "c:3"]),
            three
        );
        // The subcommand's own options win over the ones before it.
        assert_eq!(servers(&["-i", "x:9", "list", "-i", "a:1"]), ["a:1"]);
        assert_eq!(servers(&["-i", "x:9", "list"]), ["x:9"]);
    }

    #[test]
    fn index_alone_is_the_flare_xml_and_index_actions_manage_the_group() {
        let parse = |args: &[&str]| {
            let mut all = vec!["flare-admin"];
            all.extend_from_slice(args);
            match Cli::try_parse_from(all).unwrap().command {
                Command::Index(i) => i,
                other => panic!("{other:?}"),
            }
        };
        let xml = parse(&["index", "--output", "f.xml", "--increment", "2"]);
        assert!(xml.action.is_none());
        assert_eq!(
            (xml.output.unwrap(), xml.increment),
            (PathBuf::from("f.xml"), 2)
        );
        let list = parse(&["index", "-i", "a:1,b:2", "list", "--json"]);
        assert_eq!(list.index.index_servers, ["a:1", "b:2"]);
        assert!(matches!(
            list.action,
            Some(IndexAction::List(IndexListArgs { json: true, .. }))
        ));
        match parse(&["index", "add", "10.0.0.4:12120", "--force"]).action {
            Some(IndexAction::Add(m)) => {
                assert_eq!(m.server, "10.0.0.4:12120");
                assert!(m.change.force && !m.change.dry_run);
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "index",
            "remove",
            "-n",
            "10.0.0.2:12120",
            "--index-servers",
            "a:1",
        ])
        .action
        {
            Some(IndexAction::Remove(m)) => {
                assert_eq!(
                    (m.server.as_str(), m.change.dry_run),
                    ("10.0.0.2:12120", true)
                );
                assert_eq!(m.index.index_servers, ["a:1"]);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &["index", "add"][..],
            &["index", "add", "a:1", "b:2"],
            &["index", "promote", "a:1"],
        ] {
            let mut all = vec!["flare-admin"];
            all.extend_from_slice(bad);
            assert!(Cli::try_parse_from(all).is_err(), "{bad:?}");
        }
    }
}
