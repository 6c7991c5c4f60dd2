//! What a node does with a request before running it: refuse internal commands from outside `internal-netmask`
//! (decisions.md #10) and Flare's explicit `<version>` token from a plain client unless `allow-client-version` is on
//! (protocol.md §4.3); then run it on the store alone, or through the cluster's [`plan`](crate::node::plan).

use std::net::IpAddr;

use crate::config::Cidr;
use crate::node::plan::{is_routed, Origin};
use crate::node::view::ClusterView;
use crate::protocol::{Command, ErrorReply, Framing, ProxyPath, Reply};

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
}
