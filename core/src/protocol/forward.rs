//! The forwarded form of a request: the bytes a node sends another node to have it run a request the node received
//! (protocol.md §9.1), and how the other node's answer becomes the reply the client expects.
//!
//! [`forward`] is total: every [`Command`] has a forwarded form, so no parsed request can reach a proxy and find
//! itself without one (a test runs every variant through it and parses the bytes back). Two forms:
//! - **Text**, Flare's own (`<path>set k 0 0 5 ...`), for every command a text client can send. Flare's extras
//!   (`sync`/`async`, the explicit `<version>` token of replication) travel only this way.
//! - **Meta** (`<path>ms k 5 T0 F0 MS c`), for what the text form cannot say (a binary `incr` that creates the item
//!   with an initial value, a binary `delete` with a CAS, a CAS on `append`) and for a binary client, whose replies
//!   carry the item's CAS: `STORED` does not say it, `HD c<cas>` does. Keys the meta parser would refuse (control
//!   characters) travel base64-encoded (`b`).
//!
//! The forwarded request is always answered (no `noreply`, no `q`), so a pooled or pipelined connection stays in
//! step; the node that forwarded it drops the answer when its own client asked for silence. [`answer`] turns the
//! peer's answer back into the [`Reply`] the command would have had if run locally, error variants included (a
//! binary client's status code depends on them).

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use super::lex::{parse_u64, Tokens};
use super::meta::MetaKind;
use super::reply::{PeerReply, ReplyKind, ValueBlock};
use super::{
    ArithOp, Command, ErrorReply, ProxyPath, ReplicationMode, Reply, StatsGroup, StoreMode,
    ValueItem, WriteOptions,
};

/// Which form a forwarded request took (decides how its answer is read back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Flare's text form.
    Text,
    /// A meta command.
    Meta,
}

/// A forwarded request: its bytes, its form and how its answer is framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The whole request, proxy prefix and data block included.
    pub bytes: Bytes,
    /// The form it was written in.
    pub form: Form,
    /// How the answer is framed.
    pub reply: ReplyKind,
}

/// The forwarded form of `command`, prefixed with `path` when given. `versions`: the client's reply must carry the
/// item's CAS (a binary client), so writes take the meta form. `noreply` is never forwarded (see the module header).
pub fn forward(path: Option<&ProxyPath>, command: &Command, versions: bool) -> Forward {
    let mut out = BytesMut::new();
    if let Some(path) = path {
        out.put_u8(b'<');
        for (i, node) in path.0.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_slice(node);
        }
        out.put_u8(b'>');
    }
    let form = if needs_meta(command, versions) {
        meta_form(command, &mut out);
        Form::Meta
    } else {
        text_form(command, &mut out);
        match command {
            Command::Meta(_) | Command::Noop => Form::Meta,
            _ => Form::Text,
        }
    };
    Forward {
        bytes: out.freeze(),
        form,
        reply: reply_kind(command, form),
    }
}

/// The command a peer parses from the text form of `command` (for tests of the round trip): `noreply` cleared,
/// `gat` as `gats` in memcached's form, the verbosity level 0. `None` for the commands whose forwarded form is not
/// the text form (the meta form, and meta commands, whose `q` is dropped).
pub fn as_forwarded(command: &Command, versions: bool) -> Option<Command> {
    if needs_meta(command, versions) {
        return None;
    }
    let mut c = command.clone();
    match &mut c {
        Command::Store(s) => s.options.noreply = false,
        Command::Delete { options, .. } | Command::Arith { options, .. } => options.noreply = false,
        Command::Touch { noreply, .. }
        | Command::FlushAll { noreply, .. }
        | Command::Verbosity { noreply } => *noreply = false,
        Command::Gat {
            cas,
            flare_form,
            noreply,
            ..
        } => {
            (*cas, *flare_form, *noreply) = (true, false, false);
        }
        Command::Meta(_) | Command::Noop => return None,
        _ => {}
    }
    Some(c)
}

/// Whether `command` goes in the meta form.
fn needs_meta(command: &Command, versions: bool) -> bool {
    match command {
        Command::Arith { create, cas, .. } => create.is_some() || cas.is_some() || versions,
        Command::Delete { cas, .. } => cas.is_some(),
        Command::Store(s) => {
            let cas_text = s.mode == StoreMode::Cas;
            (s.cas_unique != 0 && !cas_text) || (versions && s.version.is_none())
        }
        _ => false,
    }
}

fn reply_kind(command: &Command, form: Form) -> ReplyKind {
    match (command, form) {
        (_, Form::Meta) => ReplyKind::Meta,
        (Command::Get { .. } | Command::Gat { .. } | Command::Dump(_), _) => ReplyKind::Values,
        (
            Command::Stats(_)
            | Command::CacheDump { .. }
            | Command::ShowVariables
            | Command::Keys { .. }
            | Command::DumpKey(_),
            _,
        ) => ReplyKind::Lines,
        _ => ReplyKind::Line,
    }
}

fn word(out: &mut BytesMut, w: &[u8]) {
    out.put_u8(b' ');
    out.put_slice(w);
}

fn number(out: &mut BytesMut, n: impl itoa::Integer) {
    word(out, itoa::Buffer::new().format(n).as_bytes());
}

fn replication(out: &mut BytesMut, o: &WriteOptions) {
    match o.replication {
        ReplicationMode::Default => {}
        ReplicationMode::Sync => out.put_slice(b" sync"),
        ReplicationMode::Async => out.put_slice(b" async"),
    }
}

/// The text form. Every variant has one; the binary-only parts of a command (a delete's CAS, an incr's initial
/// value) are what [`needs_meta`] sends the other way.
fn text_form(command: &Command, out: &mut BytesMut) {
    match command {
        Command::Get { keys, cas } => {
            out.put_slice(if *cas { b"gets" } else { b"get" });
            keys.iter().for_each(|k| word(out, k));
        }
        // Always `gats`: a peer with `gat-compat = flare` reads `gat` in Flare's order, and never `gats`. Flare's
        // single-key form travels the same way; the forwarding node shapes the reply (and drops the CAS of `gat`).
        Command::Gat { exptime, keys, .. } => {
            out.put_slice(b"gats");
            number(out, *exptime);
            keys.iter().for_each(|k| word(out, k));
        }
        Command::Store(s) => {
            out.put_slice(match s.mode {
                StoreMode::Set => b"set".as_slice(),
                StoreMode::Add => b"add",
                StoreMode::Replace => b"replace",
                StoreMode::Append => b"append",
                StoreMode::Prepend => b"prepend",
                StoreMode::Cas => b"cas",
            });
            word(out, &s.key);
            number(out, s.flags);
            number(out, s.exptime);
            number(out, s.value.len());
            match (s.mode, s.version) {
                (StoreMode::Cas, _) => number(out, s.cas_unique),
                (_, Some(v)) => number(out, v),
                (_, None) => {}
            }
            replication(out, &s.options);
            out.put_slice(b"\r\n");
            out.put_slice(&s.value);
        }
        Command::Delete {
            key,
            hold,
            version,
            options,
            ..
        } => {
            out.put_slice(b"delete");
            word(out, key);
            if *hold != 0 || version.is_some() {
                number(out, *hold);
            }
            if let Some(v) = version {
                number(out, *v);
            }
            replication(out, options);
        }
        Command::Arith {
            op,
            key,
            delta,
            options,
            ..
        } => {
            out.put_slice(match op {
                ArithOp::Incr => b"incr",
                ArithOp::Decr => b"decr",
            });
            word(out, key);
            number(out, *delta);
            replication(out, options);
        }
        Command::Touch { key, exptime, .. } => {
            out.put_slice(b"touch");
            word(out, key);
            number(out, *exptime);
        }
        Command::FlushAll { delay, .. } => {
            out.put_slice(b"flush_all");
            if *delay != 0 {
                number(out, *delay);
            }
        }
        Command::Version => out.put_slice(b"version"),
        Command::Verbosity { .. } => out.put_slice(b"verbosity 0"),
        Command::Quit => out.put_slice(b"quit"),
        Command::Noop => out.put_slice(b"mn"),
        Command::Stats(group) => {
            out.put_slice(b"stats");
            let name: &[u8] = match group {
                StatsGroup::General => b"",
                StatsGroup::Items => b" items",
                StatsGroup::Slabs => b" slabs",
                StatsGroup::Sizes => b" sizes",
                StatsGroup::Settings => b" settings",
                StatsGroup::Threads => b" threads",
                StatsGroup::ThreadsRequest => b" threads request",
                StatsGroup::ThreadsSlave => b" threads slave",
                StatsGroup::ThreadsQueue => b" threads queue",
                StatsGroup::Nodes => b" nodes",
            };
            out.put_slice(name);
        }
        Command::Ping => out.put_slice(b"ping"),
        Command::Dump(args) | Command::DumpKey(args) => {
            let partition = args.partition.map_or(-1, i64::from);
            if let Command::Dump(_) = command {
                out.put_slice(b"dump");
                number(out, args.wait_usec);
            } else {
                out.put_slice(b"dump_key");
            }
            number(out, partition);
            number(out, args.partition_count);
            number(out, args.bwlimit_kbps);
        }
        Command::Keys { prefixes, limit } => {
            out.put_slice(b"keys");
            prefixes.iter().for_each(|p| word(out, p));
            number(out, *limit);
        }
        Command::CacheDump { class, limit } => {
            out.put_slice(b"stats cachedump");
            number(out, *class);
            number(out, *limit);
        }
        Command::ShowVariables => out.put_slice(b"show variables"),
        Command::Kill(id) => {
            out.put_slice(b"kill");
            number(out, *id);
        }
        Command::Shutdown { node } => {
            out.put_slice(b"shutdown");
            if let Some((name, port)) = node {
                word(out, name);
                number(out, *port);
            }
        }
        Command::NodeSync { version, nodes } => {
            out.put_slice(b"node sync");
            number(out, *version);
            for n in nodes {
                out.put_slice(b"\r\nNODE");
                word(out, &n.name);
                number(out, n.port);
                number(out, n.role);
                number(out, n.state);
                number(out, n.partition);
                number(out, n.balance);
                number(out, n.thread_type);
            }
            out.put_slice(b"\r\nEND");
        }
        Command::Meta(m) => {
            // Without `q` the peer always answers; the forwarding node suppresses what `q` would have hidden.
            let mut first = true;
            // The command and the key stay, whatever they spell (a key may be `q`); flags lose `q`.
            let kept = if m.kind == MetaKind::NoOp { 1 } else { 2 };
            let tokens = Tokens::new(&m.line).enumerate();
            for (_, t) in tokens.filter(|(i, t)| *i < kept || *t != b"q") {
                if !first {
                    out.put_u8(b' ');
                }
                first = false;
                out.put_slice(t);
            }
            if m.kind == MetaKind::Set {
                out.put_slice(b"\r\n");
                out.put_slice(&m.value);
            }
        }
    }
    out.put_slice(b"\r\n");
}

/// The meta form of a write: `ms`, `ma` or `md`, always asking for the CAS (`c`), and `v` on `ma` for the number.
/// Only the commands [`needs_meta`] selects come here; anything else takes the text form.
fn meta_form(command: &Command, out: &mut BytesMut) {
    let key = |out: &mut BytesMut, key: &Bytes| -> bool {
        if key.iter().all(|&c| c > b' ' && c != 0x7f) {
            word(out, key);
            false
        } else {
            word(
                out,
                base64::engine::general_purpose::STANDARD
                    .encode(key)
                    .as_bytes(),
            );
            true
        }
    };
    let flag = |out: &mut BytesMut, f: u8, n: Option<i128>| {
        out.put_u8(b' ');
        out.put_u8(f);
        if let Some(n) = n {
            out.put_slice(itoa::Buffer::new().format(n).as_bytes());
        }
    };
    let mut value = None;
    let b64 = match command {
        Command::Store(s) => {
            out.put_slice(b"ms");
            let b64 = key(out, &s.key);
            number(out, s.value.len());
            // Append and prepend keep the item's flags and exptime.
            if !matches!(s.mode, StoreMode::Append | StoreMode::Prepend) {
                flag(out, b'F', Some(s.flags.into()));
                flag(out, b'T', Some(s.exptime.into()));
            }
            let mode = match s.mode {
                StoreMode::Set | StoreMode::Cas => b'S',
                StoreMode::Add => b'E',
                StoreMode::Replace => b'R',
                StoreMode::Append => b'A',
                StoreMode::Prepend => b'P',
            };
            out.put_slice(&[b' ', b'M', mode]);
            if s.mode == StoreMode::Cas || s.cas_unique != 0 {
                flag(out, b'C', Some(s.cas_unique.into()));
            }
            value = Some(&s.value);
            b64
        }
        Command::Arith {
            op,
            key: k,
            delta,
            create,
            cas,
            ..
        } => {
            out.put_slice(b"ma");
            let b64 = key(out, k);
            out.put_slice(match op {
                ArithOp::Incr => b" MI",
                ArithOp::Decr => b" MD",
            });
            flag(out, b'D', Some((*delta).into()));
            if let Some((initial, exptime)) = create {
                flag(out, b'N', Some((*exptime).into()));
                flag(out, b'J', Some((*initial).into()));
            }
            if let Some(c) = cas {
                flag(out, b'C', Some((*c).into()));
            }
            out.put_slice(b" v");
            b64
        }
        Command::Delete { key: k, cas, .. } => {
            out.put_slice(b"md");
            let b64 = key(out, k);
            if let Some(c) = cas {
                flag(out, b'C', Some((*c).into()));
            }
            b64
        }
        _ => unreachable!("needs_meta selects only ms, ma and md commands"),
    };
    if b64 {
        out.put_slice(b" b");
    }
    out.put_slice(b" c\r\n");
    if let Some(v) = value {
        out.put_slice(v);
        out.put_slice(b"\r\n");
    }
}

/// The reply `command` would have had locally, from the peer's answer to its forwarded form. A `Values` answer is
/// returned as the items found (the caller merges and shapes them); an answer that does not fit the command is
/// `SERVER_ERROR proxy error`, never a false miss.
pub fn answer(command: &Command, form: Form, reply: PeerReply) -> Reply {
    let cas = matches!(
        command,
        Command::Get { cas: true, .. } | Command::Gat { cas: true, .. }
    );
    match (form, reply) {
        (Form::Text, PeerReply::Values(values)) => Reply::Values {
            items: values.into_iter().map(value_item).collect(),
            cas,
            end: true,
        },
        (Form::Text, PeerReply::Line(line)) => match command {
            // A values or lines reply that ended with an error line.
            Command::Get { .. } | Command::Gat { .. } => match ErrorReply::from_line(&line) {
                Some(e) => Reply::Error(e),
                None => proxy_error(),
            },
            _ => super::reply::line_reply(&line),
        },
        (Form::Text, PeerReply::Lines(lines)) => Reply::Lines(
            lines
                .into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect(),
        ),
        (Form::Meta, PeerReply::Meta(line, data)) => match command {
            Command::Meta(_) | Command::Noop => {
                let mut out = BytesMut::with_capacity(line.len() + 4);
                out.put_slice(&line);
                out.put_slice(b"\r\n");
                if let Some(d) = data {
                    out.put_slice(&d);
                    out.put_slice(b"\r\n");
                }
                Reply::Raw(out.freeze())
            }
            _ => meta_answer(command, &line, data.as_deref()),
        },
        _ => proxy_error(),
    }
}

fn proxy_error() -> Reply {
    Reply::Error(ErrorReply::Server("proxy error".into()))
}

fn value_item(v: ValueBlock) -> ValueItem {
    ValueItem {
        key: v.key,
        flags: v.flags,
        version: v.version.unwrap_or(0),
        value: v.value,
    }
}

/// A meta answer (`HD c<cas>`, `VA <n> c<cas>` + the number, `NS`, `EX`, `NF`, an error line) as the reply of the
/// classic command it was forwarded for.
fn meta_answer(command: &Command, line: &[u8], data: Option<&[u8]>) -> Reply {
    if let Some(e) = ErrorReply::from_line(line) {
        return Reply::Error(e);
    }
    let mut tokens = Tokens::new(line);
    let status = tokens.next().unwrap_or_default();
    let version = tokens
        .find_map(|t| t.strip_prefix(b"c").and_then(parse_u64))
        .unwrap_or(0);
    match (command, status) {
        (Command::Store(_), b"HD") => Reply::Stored { version },
        (Command::Store(_), b"NS") => Reply::NotStored,
        (Command::Store(_) | Command::Delete { .. } | Command::Arith { .. }, b"EX") => {
            Reply::Exists
        }
        (Command::Store(_) | Command::Delete { .. } | Command::Arith { .. }, b"NF") => {
            Reply::NotFound
        }
        (Command::Delete { .. }, b"HD") => Reply::Deleted,
        (Command::Arith { .. }, b"VA") => match data.and_then(parse_u64) {
            Some(value) => Reply::Number { value, version },
            None => proxy_error(),
        },
        _ => proxy_error(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use proptest::prelude::*;

    use super::*;
    use crate::exec::{self, Outcome, Tally};
    use crate::protocol::reply::{ReplyEvent, ReplyReader};
    use crate::protocol::text::Dialect;
    use crate::protocol::{
        response, Decoded, Decoder, DumpArgs, Framing, Limits, NodeLine, Request, StoreRequest,
    };
    use crate::storage::MemoryStorage;
    use crate::store::{Store, StoreConfig};

    const NOW: u64 = 1_800_000_000;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn decode(bytes: &[u8], dialect: Dialect) -> Vec<Decoded> {
        let mut d = Decoder::new(Limits::default(), dialect);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(x) = d.decode(&mut buf) {
            out.push(x);
        }
        assert!(buf.is_empty(), "bytes left after {bytes:?}");
        out
    }

    /// The one request `bytes` parse to.
    fn parse_one(bytes: &[u8], dialect: Dialect) -> Request {
        match &decode(bytes, dialect)[..] {
            [Decoded::Request(r)] => r.clone(),
            other => panic!("{:?} parsed to {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn store_req(mode: StoreMode, key: &str, value: &str) -> StoreRequest {
        StoreRequest {
            mode,
            key: b(key),
            flags: 3,
            exptime: -1,
            value: b(value),
            cas_unique: 0,
            version: None,
            options: WriteOptions {
                noreply: true,
                replication: ReplicationMode::Sync,
            },
        }
    }

    /// One command of every variant, so that a new variant without a forwarded form fails to compile here
    /// (`variant` is an exhaustive match) and the round trip below covers it.
    fn every_variant() -> Vec<Command> {
        let args = DumpArgs {
            wait_usec: 5,
            partition: Some(1),
            partition_count: 2,
            bwlimit_kbps: 9,
        };
        let all = vec![
            Command::Get {
                keys: vec![b("a"), b("b"), b("a")],
                cas: false,
            },
            Command::Gat {
                exptime: 10,
                keys: vec![b("a")],
                cas: false,
                flare_form: true,
                noreply: true,
            },
            Command::Store(store_req(StoreMode::Set, "k", "v")),
            Command::Delete {
                key: b("k"),
                hold: 0,
                version: Some(7),
                cas: None,
                options: WriteOptions::default(),
            },
            Command::Arith {
                op: ArithOp::Decr,
                key: b("n"),
                delta: u64::MAX,
                create: None,
                cas: None,
                options: WriteOptions::default(),
            },
            Command::Touch {
                key: b("k"),
                exptime: -5,
                noreply: true,
            },
            Command::FlushAll {
                delay: 30,
                noreply: true,
            },
            Command::Version,
            Command::Verbosity { noreply: true },
            Command::Quit,
            Command::Noop,
            Command::Stats(StatsGroup::ThreadsSlave),
            Command::Ping,
            Command::Dump(args),
            Command::DumpKey(DumpArgs {
                wait_usec: 0,
                ..args
            }),
            Command::Keys {
                prefixes: vec![b("a"), b("b")],
                limit: 3,
            },
            Command::CacheDump { class: 1, limit: 0 },
            Command::ShowVariables,
            Command::Kill(12),
            Command::Shutdown {
                node: Some((b("h"), 12121)),
            },
            Command::NodeSync {
                version: 9,
                nodes: vec![NodeLine {
                    name: b("h"),
                    port: 1,
                    role: 1,
                    state: 3,
                    partition: -1,
                    balance: 2,
                    thread_type: 16,
                }],
            },
            match parse_one(b"mg k v t q Oab\r\n", Dialect::default()).command {
                c @ Command::Meta(_) => c,
                other => panic!("{other:?}"),
            },
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(variant).collect();
        assert_eq!(names.len(), all.len(), "one command per variant");
        all
    }

    fn variant(c: &Command) -> &'static str {
        match c {
            Command::Get { .. } => "get",
            Command::Gat { .. } => "gat",
            Command::Store(_) => "store",
            Command::Delete { .. } => "delete",
            Command::Arith { .. } => "arith",
            Command::Touch { .. } => "touch",
            Command::FlushAll { .. } => "flush_all",
            Command::Version => "version",
            Command::Verbosity { .. } => "verbosity",
            Command::Quit => "quit",
            Command::Noop => "noop",
            Command::Stats(_) => "stats",
            Command::Ping => "ping",
            Command::Dump(_) => "dump",
            Command::DumpKey(_) => "dump_key",
            Command::Keys { .. } => "keys",
            Command::CacheDump { .. } => "cachedump",
            Command::ShowVariables => "show",
            Command::Kill(_) => "kill",
            Command::Shutdown { .. } => "shutdown",
            Command::NodeSync { .. } => "node_sync",
            Command::Meta(_) => "meta",
        }
    }

    #[test]
    fn every_command_has_a_forwarded_form_that_parses_back() {
        let path = ProxyPath(vec![b("h:1"), b("g:2#5")]);
        for command in every_variant() {
            for dialect in [
                Dialect::default(),
                Dialect {
                    gat_flare_syntax: true,
                    ..Dialect::default()
                },
            ] {
                let f = forward(Some(&path), &command, false);
                let r = parse_one(&f.bytes, dialect);
                assert_eq!(
                    r.framing,
                    Framing::Text {
                        proxy: Some(path.clone())
                    },
                    "{command:?}"
                );
                match (&command, &r.command, as_forwarded(&command, false)) {
                    (_, got, Some(want)) => assert_eq!(*got, want, "{command:?}"),
                    (Command::Meta(m), Command::Meta(got), None) => {
                        assert_eq!(got.kind, m.kind);
                        assert!(!got.quiet(), "q is not forwarded");
                        assert_eq!(got.flags.len(), m.flags.len() - 1);
                    }
                    (Command::Noop, Command::Meta(got), None) => {
                        assert_eq!(got.kind, MetaKind::NoOp)
                    }
                    (c, got, _) => panic!("{c:?} came back as {got:?}"),
                }
            }
        }
    }

    #[test]
    fn what_text_cannot_say_travels_as_meta() {
        let arith = Command::Arith {
            op: ArithOp::Incr,
            key: b("n"),
            delta: 2,
            create: Some((10, 0)),
            cas: None,
            options: WriteOptions::default(),
        };
        let f = forward(None, &arith, false);
        assert_eq!(&f.bytes[..], b"ma n MI D2 N0 J10 v c\r\n");
        assert_eq!((f.form, f.reply), (Form::Meta, ReplyKind::Meta));
        let delete = Command::Delete {
            key: b("k\x01"),
            hold: 0,
            version: None,
            cas: Some(5),
            options: WriteOptions::default(),
        };
        assert_eq!(
            &forward(None, &delete, false).bytes[..],
            b"md awE= C5 b c\r\n",
            "a key with a control character goes base64"
        );
        let mut set = store_req(StoreMode::Set, "k", "v");
        set.options.noreply = false;
        set.options.replication = ReplicationMode::Default;
        let set = Command::Store(set);
        assert_eq!(
            &forward(None, &set, false).bytes[..],
            b"set k 3 -1 1\r\nv\r\n"
        );
        assert_eq!(
            &forward(None, &set, true).bytes[..],
            b"ms k 1 F3 T-1 MS c\r\nv\r\n",
            "a binary client's set comes back with its CAS"
        );
    }

    /// Runs `command` on `store` and returns its reply.
    fn run(store: &Store<MemoryStorage>, command: Command) -> Reply {
        match exec::execute(store, command, NOW, &mut Tally::default()) {
            Outcome::Reply { reply, .. } => reply,
            other => panic!("{other:?}"),
        }
    }

    /// What a peer answers to `bytes`, read back as a forwarding node reads it.
    fn peer(store: &Store<MemoryStorage>, f: &Forward) -> PeerReply {
        let r = parse_one(&f.bytes, Dialect::default());
        let reply = run(store, r.command);
        let mut out = BytesMut::new();
        response::encode(&r.framing, &reply, &mut out);
        let mut reader = ReplyReader::new(Limits::default());
        let mut values = Vec::new();
        loop {
            match reader
                .next(&mut out, f.reply)
                .unwrap()
                .expect("a whole reply")
            {
                ReplyEvent::Value(v) => values.push(v),
                ReplyEvent::End if f.reply == ReplyKind::Values => {
                    return PeerReply::Values(values)
                }
                ReplyEvent::Line(l) if f.reply == ReplyKind::Meta => {
                    return PeerReply::Meta(l, None)
                }
                ReplyEvent::Line(l) => return PeerReply::Line(l),
                ReplyEvent::MetaValue { line, data } => return PeerReply::Meta(line, Some(data)),
                other => panic!("{other:?}"),
            }
        }
    }

    fn store() -> Store<MemoryStorage> {
        Store::new(MemoryStorage::new(), StoreConfig::default())
    }

    /// What a client sees of `reply`: a text client sees no version in `STORED`, a number or `VALUE` (unless it
    /// asked for them with `gets`).
    fn seen(reply: Reply, versions: bool) -> Reply {
        match reply {
            Reply::Stored { .. } if !versions => Reply::Stored { version: 0 },
            Reply::Number { value, .. } if !versions => Reply::Number { value, version: 0 },
            // A forwarded touch is answered with a text `TOUCHED`: a binary client through a proxy gets no flags
            // or CAS in its Touch reply (docs/compatibility.md).
            Reply::Touched { .. } => Reply::Touched {
                flags: 0,
                version: 0,
            },
            Reply::Values {
                mut items,
                cas: false,
                end,
            } => {
                items.iter_mut().for_each(|i| i.version = 0);
                Reply::Values {
                    items,
                    cas: false,
                    end,
                }
            }
            r => r,
        }
    }

    fn key() -> impl Strategy<Value = Bytes> {
        prop_oneof![Just(b("a")), Just(b("b")), Just(b("k\x01"))]
    }

    fn value() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            Just(b("7")),
            Just(b("abc")),
            Just(b("")),
            Just(b("18446744073709551615"))
        ]
    }

    fn exptime() -> impl Strategy<Value = i64> {
        prop_oneof![Just(0i64), Just(-1), Just(100), Just(4_000_000_000)]
    }

    fn cas() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0u64), 1..8u64]
    }

    /// Data commands, including the forms only the binary protocol can produce.
    fn command() -> impl Strategy<Value = Command> {
        let mode = prop_oneof![
            Just(StoreMode::Set),
            Just(StoreMode::Add),
            Just(StoreMode::Replace),
            Just(StoreMode::Append),
            Just(StoreMode::Prepend),
            Just(StoreMode::Cas),
        ];
        let op = prop_oneof![Just(ArithOp::Incr), Just(ArithOp::Decr)];
        prop_oneof![
            (mode, key(), 0..3u32, exptime(), value(), cas()).prop_map(
                |(mode, key, flags, exptime, value, cas_unique)| {
                    Command::Store(StoreRequest {
                        mode,
                        key,
                        flags,
                        exptime,
                        value,
                        // The parsers give a CAS to these modes only (binary set, add and replace with a CAS
                        // become `cas`).
                        cas_unique: match mode {
                            StoreMode::Cas | StoreMode::Append | StoreMode::Prepend => cas_unique,
                            _ => 0,
                        },
                        version: None,
                        options: WriteOptions::default(),
                    })
                }
            ),
            (key(), proptest::option::of(cas())).prop_map(|(key, cas)| Command::Delete {
                key,
                hold: 0,
                version: None,
                cas,
                options: WriteOptions::default(),
            }),
            (
                op,
                key(),
                prop_oneof![0..3u64, Just(u64::MAX)],
                proptest::option::of((0..20u64, exptime())),
                proptest::option::of(0..6u64),
            )
                .prop_map(|(op, key, delta, create, cas)| Command::Arith {
                    op,
                    key,
                    delta,
                    create,
                    cas,
                    options: WriteOptions::default(),
                }),
            (key(), exptime()).prop_map(|(key, exptime)| Command::Touch {
                key,
                exptime,
                noreply: false,
            }),
            (proptest::collection::vec(key(), 1..4), any::<bool>())
                .prop_map(|(keys, cas)| Command::Get { keys, cas }),
            (
                exptime(),
                proptest::collection::vec(key(), 1..4),
                any::<bool>()
            )
                .prop_map(|(exptime, keys, cas)| Command::Gat {
                    exptime,
                    keys,
                    cas,
                    flare_form: false,
                    noreply: false,
                }),
        ]
    }

    proptest! {
        /// Forwarding is transparent: on two stores with the same history, running a command here and running its
        /// forwarded form on a peer (its answer read back by [`answer`]) give the client the same reply and leave
        /// the same data, for text clients and binary ones (whose replies carry versions).
        #[test]
        fn a_forwarded_command_does_what_the_command_does(
            history in proptest::collection::vec(command(), 0..12),
            last in command(),
            versions in any::<bool>(),
        ) {
            let (here, there) = (store(), store());
            for c in history {
                let f = forward(None, &c, versions);
                let local = run(&here, c.clone());
                let remote = answer(&c, f.form, peer(&there, &f));
                prop_assert_eq!(seen(local, versions), seen(remote, versions), "history command {:?}", c);
            }
            let f = forward(None, &last, versions);
            let local = run(&here, last.clone());
            let remote = answer(&last, f.form, peer(&there, &f));
            prop_assert_eq!(seen(local, versions), seen(remote, versions), "{:?} sent as {:?}", last, f.bytes);
            for k in ["a", "b", "k\x01"] {
                prop_assert_eq!(here.get(k.as_bytes(), NOW).unwrap(), there.get(k.as_bytes(), NOW).unwrap());
            }
        }
    }
}
