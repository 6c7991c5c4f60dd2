//! What a node does with a request before running it: answer a request that did not parse, refuse internal
//! commands from outside `internal-netmask` (decisions.md #10) and Flare's explicit `<version>` token from a plain
//! client unless `allow-client-version` is on (protocol.md §4.3) ([`admit`]); then run it on the store alone, or
//! through the cluster's [`plan`](crate::node::plan) ([`through_cluster`], [`route`]: who sent it, whether it runs
//! as master, and the refusal of a write, or of a read from this node's store, that a node without a lease may not
//! answer). Also the connection-level limits: `max-connection` ([`over_connection_limit`]) and `net-read-timeout`
//! ([`idle_expired`]).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Cidr;
use crate::node::plan::{self, is_routed, Origin, Plan, Session};
use crate::node::view::ClusterView;
use crate::node::Published;
use crate::protocol::{Command, Decoded, ErrorReply, Framing, ProxyPath, Reply};

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An internal command from an address outside `internal-netmask`.
    Internal,
    /// A plain client's write carrying a `<version>`.
    ClientVersion,
}

impl Refusal {
    /// The reply the refused request gets.
    pub fn reply(self) -> Reply {
        match self {
            Refusal::Internal => Reply::Error(ErrorReply::Client(
                "internal command not allowed from this address".into(),
            )),
            Refusal::ClientVersion => Reply::Error(ErrorReply::BadCommandLine),
        }
    }
}

/// What a decoded request becomes before anything runs ([`admit`]).
#[derive(Debug)]
pub enum Admission {
    /// Run it.
    Run(Framing, Command),
    /// Answer `reply` without running anything; close the connection after it when `close`.
    Answer {
        /// How to frame the reply.
        framing: Framing,
        /// The reply.
        reply: Reply,
        /// Close the connection after replying (a request the stream cannot be resynchronised after).
        close: bool,
        /// A request [`check`] refused: the command's name and why.
        refused: Option<(&'static str, Refusal)>,
    },
}

/// Admits `decoded`, the next request of a connection with routing `session`: a request that did not parse is
/// answered with its error, one [`check`] refuses with the refusal's reply; the others run. The session observes
/// every request, in order.
pub fn admit(
    decoded: Decoded,
    session: &mut Session,
    allow_client_version: bool,
    internal_allowed: impl FnOnce() -> bool,
) -> Admission {
    let (framing, command) = match decoded {
        Decoded::Request(r) | Decoded::Part(r) => (r.framing, r.command),
        Decoded::Error {
            framing,
            error,
            close,
        } => {
            session.observe_refused();
            let reply = Reply::Error(error);
            let refused = None;
            return Admission::Answer {
                framing,
                reply,
                close,
                refused,
            };
        }
    };
    session.observe(&framing, &command);
    match check(&framing, &command, allow_client_version, internal_allowed) {
        Ok(()) => Admission::Run(framing, command),
        Err(refusal) => Admission::Answer {
            framing,
            reply: refusal.reply(),
            close: false,
            refused: Some((command.op_name(), refusal)),
        },
    }
}

/// Whether a request may run: an internal command only when `internal_allowed()` says its peer may send one, a
/// client version only when `allow_client_version`. The netmask is looked up only for internal commands.
pub fn check(
    framing: &Framing,
    command: &Command,
    allow_client_version: bool,
    internal_allowed: impl FnOnce() -> bool,
) -> Result<(), Refusal> {
    if is_internal(framing, command) && !internal_allowed() {
        return Err(Refusal::Internal);
    }
    if !allow_client_version && carries_client_version(framing, command) {
        return Err(Refusal::ClientVersion);
    }
    Ok(())
}

/// Whether `peer` may send internal commands: inside one of `masks`, or any address when there is none.
pub fn internal_allowed(masks: &[Cidr], peer: IpAddr) -> bool {
    masks.is_empty() || masks.iter().any(|m| m.contains(peer))
}

/// Whether an admitted request goes through the cluster's plan: a routed command on a node of a cluster. A
/// standalone node runs everything on its store.
pub fn through_cluster(view: &ClusterView, command: &Command) -> bool {
    !view.is_standalone() && is_routed(command)
}

/// A routed request, ready to run ([`route`]).
#[derive(Debug)]
pub struct Routed {
    /// Its plan. A write this node would acknowledge as master while its lease has ended is a `Plan::Reply`
    /// refusal ([`Published::lease_refusal`]).
    pub plan: Plan,
    /// Its local writes run as master (replicated to this node's slaves); false for a replicated write, which this
    /// node applies as its master's slave.
    pub as_master: bool,
    /// A replicated write's sequence number, for [`crate::node::Node::applied`].
    pub applied: Option<u64>,
}

/// Routes an admitted request that goes [`through_cluster`], sent on `framing` by a connection that is an
/// `operator`'s or not, on what `published` says at `now`; `pick` draws the random numbers that choose read
/// replicas.
pub fn route(
    published: &Published,
    now: Instant,
    framing: &Framing,
    operator: bool,
    command: Command,
    pick: &mut impl FnMut() -> u32,
) -> Routed {
    let (origin, applied) = origin(framing, operator);
    let planned = plan::plan(&published.view, origin, command, pick);
    let plan = match published.lease_refusal(now, &origin, &planned) {
        Some(refusal) => Plan::Reply(refusal),
        None => planned,
    };
    Routed {
        plan,
        as_master: applied.is_none(),
        applied,
    }
}

/// Whether a new connection is over `max-connection` when `open` are open: it is answered
/// [`crate::protocol::response::TOO_MANY_CONNECTIONS`] and closed.
pub fn over_connection_limit(open: usize, max: usize) -> bool {
    open >= max
}

/// Whether a connection that has received nothing for `idle` is closed under `net-read-timeout` = `timeout`
/// (zero: never).
pub fn idle_expired(idle: Duration, timeout: Duration) -> bool {
    !timeout.is_zero() && idle >= timeout
}

/// Who sent an admitted request, for [`crate::node::plan::plan`], and the sequence number its sender tagged it
/// with when it is a replicated write: such a write is this node's copy of its master's, applied as a slave (not
/// as master) and recorded with [`crate::node::Node::applied`].
pub fn origin(framing: &Framing, operator: bool) -> (Origin<'_>, Option<u64>) {
    let (path, binary) = match framing {
        Framing::Text { proxy } => (proxy.as_ref(), false),
        Framing::Binary(_) => (None, true),
    };
    let origin = Origin {
        path,
        binary,
        operator,
    };
    (origin, path.and_then(ProxyPath::sender_seq))
}

/// Commands only other nodes, the index and the admin tools send: replication and proxied requests (with a
/// `<host:port>` prefix), `node sync`, `dump`, `dump_key`, `kill`.
pub fn is_internal(framing: &Framing, command: &Command) -> bool {
    matches!(framing, Framing::Text { proxy: Some(_) })
        || matches!(
            command,
            Command::NodeSync { .. } | Command::Dump(_) | Command::DumpKey(_) | Command::Kill(_)
        )
}

/// A plain (unproxied) client's write with Flare's explicit `<version>` token.
pub fn carries_client_version(framing: &Framing, command: &Command) -> bool {
    let proxied = matches!(framing, Framing::Text { proxy: Some(_) });
    !proxied
        && match command {
            Command::Store(s) => s.version.is_some(),
            Command::Delete { version, .. } => version.is_some(),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    use crate::protocol::{Decoded, Decoder, Limits};

    fn command(line: &str) -> Command {
        let mut decoder = Decoder::new(Limits::default(), Default::default());
        match decoder.decode(&mut BytesMut::from(line)) {
            Some(Decoded::Request(r)) => r.command,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn proxied() -> Framing {
        Framing::Text {
            proxy: Some(ProxyPath(vec![Bytes::from_static(b"m0:1")])),
        }
    }

    #[test]
    fn internal_commands_need_an_allowed_peer() {
        let plain = Framing::TEXT;
        for line in ["dump\r\n", "dump_key\r\n", "kill 3\r\n"] {
            let c = command(line);
            assert!(is_internal(&plain, &c), "{line}");
            assert_eq!(check(&plain, &c, false, || false), Err(Refusal::Internal));
            assert_eq!(check(&plain, &c, false, || true), Ok(()));
        }
        let get = command("get k\r\n");
        assert!(!is_internal(&plain, &get));
        assert!(is_internal(&proxied(), &get));
        // The netmask is not consulted for a client's command.
        assert_eq!(check(&plain, &get, false, || panic!("looked up")), Ok(()));
    }

    #[test]
    fn a_plain_clients_version_is_refused_unless_allowed() {
        let plain = Framing::TEXT;
        for line in ["set k 0 0 1 5\r\nx\r\n", "delete k 0 5\r\n"] {
            let c = command(line);
            assert!(carries_client_version(&plain, &c), "{line}");
            assert_eq!(
                check(&plain, &c, false, || true),
                Err(Refusal::ClientVersion)
            );
            assert_eq!(check(&plain, &c, true, || true), Ok(()));
            assert!(
                !carries_client_version(&proxied(), &c),
                "replication carries versions"
            );
        }
        assert!(!carries_client_version(
            &plain,
            &command("set k 0 0 1\r\nx\r\n")
        ));
        assert_eq!(
            Refusal::ClientVersion.reply(),
            Reply::Error(ErrorReply::BadCommandLine)
        );
    }

    #[test]
    fn a_replicated_write_carries_its_masters_sequence_number() {
        let (o, seq) = origin(&Framing::TEXT, true);
        assert!(o.path.is_none() && !o.binary && o.operator);
        assert_eq!(seq, None);
        let tagged = Framing::Text {
            proxy: Some(ProxyPath(vec![Bytes::from_static(b"m0:1#42")])),
        };
        assert_eq!(origin(&tagged, false).1, Some(42));
        assert_eq!(
            origin(&proxied(), false).1,
            None,
            "a forwarded request is not replicated"
        );
    }

    #[test]
    fn only_a_cluster_node_plans() {
        use std::sync::Arc;

        use crate::keys::{PartitionParams, Resolver};
        use crate::node::view::fixtures;

        let get = command("get k\r\n");
        assert!(through_cluster(&fixtures::cluster("m0"), &get));
        let resolver = Arc::new(Resolver::new(PartitionParams::default()).unwrap());
        let alone = ClusterView::standalone("a:1".into(), resolver);
        assert!(!through_cluster(&alone, &get));
        assert!(!through_cluster(
            &fixtures::cluster("m0"),
            &command("stats\r\n")
        ));
    }

    #[test]
    fn no_netmask_allows_every_peer() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(internal_allowed(&[], other));
        let masks = [Cidr::parse("127.0.0.0/8").unwrap()];
        assert!(internal_allowed(&masks, local));
        assert!(!internal_allowed(&masks, other));
    }

    #[test]
    fn admission_answers_parse_errors_and_refusals() {
        let mut decoder = Decoder::new(Limits::default(), Default::default());
        let mut session = Session::default();
        let bad = decoder.decode(&mut BytesMut::from("bogus\r\n")).unwrap();
        assert!(matches!(
            admit(bad, &mut session, false, || true),
            Admission::Answer {
                reply: Reply::Error(ErrorReply::UnknownCommand),
                close: false,
                refused: None,
                ..
            }
        ));
        // The refused line was the connection's first: a later `version` does not make it an operator's.
        let version = decoder.decode(&mut BytesMut::from("version\r\n")).unwrap();
        assert!(matches!(
            admit(version, &mut session, false, || true),
            Admission::Run(_, Command::Version)
        ));
        assert!(!session.operator());
        let dump = decoder.decode(&mut BytesMut::from("dump\r\n")).unwrap();
        assert!(matches!(
            admit(dump, &mut Session::default(), false, || false),
            Admission::Answer {
                refused: Some(("dump", Refusal::Internal)),
                close: false,
                ..
            }
        ));
        let mut operator = Session::default();
        let version = decoder.decode(&mut BytesMut::from("version\r\n")).unwrap();
        admit(version, &mut operator, false, || true);
        assert!(operator.operator());
    }

    #[test]
    fn a_master_without_a_lease_refuses_a_clients_write_not_its_masters() {
        use std::sync::Arc;

        use crate::node::no_lease_reply;
        use crate::node::view::fixtures;

        let published = |me: &str, enforced: bool| Published {
            view: Arc::new(fixtures::cluster(me)),
            lease_until: None,
            enforced,
        };
        let now = Instant::now();
        let view = fixtures::cluster("m0");
        let key = (0..100)
            .map(|i| format!("k{i}"))
            .find(|k| view.partition_of(k.as_bytes()) == Some(0))
            .unwrap();
        let set = || command(&format!("set {key} 0 0 1\r\nx\r\n"));
        let r = route(
            &published("m0", true),
            now,
            &Framing::TEXT,
            false,
            set(),
            &mut || 0,
        );
        assert!(matches!(r.plan, Plan::Reply(ref reply) if *reply == no_lease_reply()));
        assert!(r.as_master && r.applied.is_none());
        let r = route(
            &published("m0", false),
            now,
            &Framing::TEXT,
            false,
            set(),
            &mut || 0,
        );
        assert!(matches!(r.plan, Plan::Local { write: true, .. }));
        let replicated = Framing::Text {
            proxy: Some(ProxyPath(vec![Bytes::from_static(b"m0:1#42")])),
        };
        let r = route(
            &published("s0", true),
            now,
            &replicated,
            false,
            set(),
            &mut || 0,
        );
        assert!(
            matches!(r.plan, Plan::Local { write: true, .. }),
            "{:?}",
            r.plan
        );
        assert!(!r.as_master);
        assert_eq!(r.applied, Some(42));
    }

    #[test]
    fn connection_limits() {
        assert!(over_connection_limit(10, 10) && !over_connection_limit(9, 10));
        let s = Duration::from_secs;
        assert!(idle_expired(s(5), s(5)) && !idle_expired(s(4), s(5)));
        assert!(!idle_expired(s(1000), Duration::ZERO), "0 = never");
    }
}
