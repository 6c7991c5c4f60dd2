//! What the index persists (decisions.md #4, cluster.md §9.1 and §11.1 \[Improve\]): the node map, its version, the
//! next `thread_type` and the partition parameters, in a small text format of our own.
//!
//! ```text
//! flare-index-snapshot 1\n                  magic and format version
//! <body bytes> <crc32 of body, 8 hex>\n     header
//! version 12\n                              body: fixed fields in this order, then one line per node,
//! next_thread_type 19\n                           in key order, then `end`
//! partition_size 1024\n
//! partition_modular_virtual 4096\n
//! partition_modular_hint 1\n
//! key_hash_algorithm simple\n
//! partition_type modular\n
//! node <name> <port> <role> <state> <partition|-1> <balance> <thread_type>\n
//! end\n
//! ```
//!
//! Roles and states are written by name. The driver writes [`Snapshot::encode`] to a temporary file, syncs it and
//! renames it over the previous one (atomic replace).
//!
//! Invariants (TigerBeetle's pair assertion): [`Snapshot::decode`] accepts only what [`Snapshot::encode`] can
//! produce from a valid snapshot — exact header, exact length, matching CRC, fields in order, no duplicate or
//! unsorted keys, and a map that passes [`validate_map`] (so `thread_type < next_thread_type`, §11.1). It never
//! panics and allocates at most in proportion to its input (fuzzed by the `admin` target).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::keys::{HashAlgorithm, PartitionParams};
use crate::node_map::{NodeMap, NodeRecord, Role, State};
use crate::protocol::lex::parse_u64;

use super::transitions::{check_name, validate_map};

/// The first line of every snapshot (format version 1).
pub const MAGIC: &str = "flare-index-snapshot 1";

/// Everything the index needs to resume the same cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The node-map version.
    pub version: u64,
    /// The next `thread_type` to give out.
    pub next_thread_type: u32,
    /// The node records in key order.
    pub nodes: Vec<NodeRecord>,
    /// The partition parameters the cluster was created with.
    pub partition: PartitionParams,
}

/// Why bytes are not a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The first line is not a snapshot magic line.
    #[error("not an index snapshot (bad first line)")]
    Magic,
    /// A snapshot of another format version.
    #[error("unsupported snapshot format {0}")]
    Format(String),
    /// The header line is malformed.
    #[error("bad snapshot header")]
    Header,
    /// The body is shorter or longer than the header says (a torn or appended write).
    #[error("snapshot body has {found} bytes, header says {expected}")]
    Length {
        /// From the header.
        expected: u64,
        /// Present.
        found: u64,
    },
    /// The body's CRC-32 differs from the header's.
    #[error("snapshot checksum mismatch: header {expected:08x}, body {found:08x}")]
    Checksum {
        /// From the header.
        expected: u32,
        /// Computed.
        found: u32,
    },
    /// A body line is malformed (1-based line number within the body).
    #[error("snapshot body line {line}: {why}")]
    Line {
        /// Line number in the body.
        line: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// The content decodes but is not a valid cluster.
    #[error("snapshot is not a valid cluster: {0}")]
    Invalid(String),
}

impl Snapshot {
    /// The node map this snapshot holds.
    pub fn node_map(&self) -> NodeMap {
        NodeMap {
            version: self.version,
            nodes: self.nodes.iter().map(|n| (n.key(), n.clone())).collect(),
        }
    }

    /// Checks the content: partition parameters usable, keys sorted and unique, names encodable, map valid.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        let invalid = |m: String| Err(SnapshotError::Invalid(m));
        if let Err(e) = self.partition.validate() {
            return invalid(e.to_string());
        }
        let mut last: Option<String> = None;
        for n in &self.nodes {
            let key = n.key();
            if last.as_ref().is_some_and(|l| *l >= key) {
                return invalid(format!("node {key} is out of order or repeated"));
            }
            if let Err(e) = check_name(&n.name) {
                return invalid(e.to_string());
            }
            last = Some(key);
        }
        validate_map(&self.node_map(), self.next_thread_type).or_else(invalid)
    }

    /// The encoded snapshot (magic, header, body).
    pub fn encode(&self) -> Vec<u8> {
        let body = self.body();
        let crc = crc32fast::hash(body.as_bytes());
        let mut out = format!("{MAGIC}\n{} {crc:08x}\n", body.len()).into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }

    /// Decodes and validates a snapshot.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let (magic, rest) = split_line(bytes).ok_or(SnapshotError::Magic)?;
        check_magic(magic)?;
        let (header, body) = split_line(rest).ok_or(SnapshotError::Header)?;
        let (len, crc) = parse_header(header)?;
        if body.len() as u64 != len {
            return Err(SnapshotError::Length {
                expected: len,
                found: body.len() as u64,
            });
        }
        let found = crc32fast::hash(body);
        if found != crc {
            return Err(SnapshotError::Checksum {
                expected: crc,
                found,
            });
        }
        let snapshot = parse_body(body)?;
        snapshot.validate()?;
        Ok(snapshot)
    }

    fn body(&self) -> String {
        let p = &self.partition;
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "version {}\nnext_thread_type {}\npartition_size {}\npartition_modular_virtual {}\n\
             partition_modular_hint {}\nkey_hash_algorithm {}\npartition_type modular\n",
            self.version, self.next_thread_type, p.partition_size, p.virtual_slots, p.hint, p.hash
        );
        for n in &self.nodes {
            let _ = writeln!(
                s,
                "node {} {} {} {} {} {} {}",
                n.name,
                n.port,
                n.role,
                n.state,
                n.partition.map_or(-1, i64::from),
                n.balance,
                n.thread_type
            );
        }
        s.push_str("end\n");
        s
    }
}

/// The first line (without `\n`) and the rest; `None` without a `\n`.
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(b'\n', bytes)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

fn check_magic(line: &[u8]) -> Result<(), SnapshotError> {
    if line == MAGIC.as_bytes() {
        return Ok(());
    }
    match line.strip_prefix(b"flare-index-snapshot ") {
        Some(v) => Err(SnapshotError::Format(
            String::from_utf8_lossy(&v[..v.len().min(32)]).into_owned(),
        )),
        None => Err(SnapshotError::Magic),
    }
}

fn parse_header(line: &[u8]) -> Result<(u64, u32), SnapshotError> {
    let mut t = line.split(|&c| c == b' ');
    let len = t
        .next()
        .and_then(canonical_u64)
        .ok_or(SnapshotError::Header)?;
    let crc = t
        .next()
        .filter(|h| h.len() == 8 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or(SnapshotError::Header)?;
    if t.next().is_some() {
        return Err(SnapshotError::Header);
    }
    Ok((len, crc))
}

/// A decimal number as [`Snapshot::encode`] writes it: digits, no leading zero (so every accepted input is
/// exactly what encoding its snapshot gives).
fn canonical_u64(t: &[u8]) -> Option<u64> {
    if t.len() > 1 && t[0] == b'0' {
        return None;
    }
    parse_u64(t)
}

fn canonical_u32(t: &str) -> Option<u32> {
    u32::try_from(canonical_u64(t.as_bytes())?).ok()
}

/// The fixed fields, in the order [`Snapshot::encode`] writes them.
const FIELDS: [&str; 7] = [
    "version",
    "next_thread_type",
    "partition_size",
    "partition_modular_virtual",
    "partition_modular_hint",
    "key_hash_algorithm",
    "partition_type",
];

fn parse_body(body: &[u8]) -> Result<Snapshot, SnapshotError> {
    let text = std::str::from_utf8(body).map_err(|_| SnapshotError::Line {
        line: 0,
        why: "not UTF-8",
    })?;
    let Some(text) = text.strip_suffix('\n') else {
        return Err(SnapshotError::Line {
            line: 0,
            why: "no final line end",
        });
    };
    let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    let mut fields = BTreeMap::new();
    for name in FIELDS {
        let (n, line) = lines.next().ok_or(SnapshotError::Line {
            line: 0,
            why: "missing field",
        })?;
        let value = line
            .strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .ok_or(SnapshotError::Line {
                line: n,
                why: "expected the next fixed field",
            })?;
        fields.insert(name, (n, value));
    }
    let mut snapshot = fixed_fields(&fields)?;
    for (n, line) in lines.by_ref() {
        if line == "end" {
            return match lines.next() {
                None => Ok(snapshot),
                Some((n, _)) => Err(SnapshotError::Line {
                    line: n,
                    why: "text after end",
                }),
            };
        }
        let record = parse_node(line).ok_or(SnapshotError::Line {
            line: n,
            why: "bad node line",
        })?;
        snapshot.nodes.push(record);
    }
    Err(SnapshotError::Line {
        line: 0,
        why: "missing end",
    })
}

fn fixed_fields(fields: &BTreeMap<&'static str, (usize, &str)>) -> Result<Snapshot, SnapshotError> {
    let get = |name: &str| fields.get(name).copied().unwrap_or((0, ""));
    let num = |name: &str| {
        let (line, v) = get(name);
        canonical_u64(v.as_bytes()).ok_or(SnapshotError::Line {
            line,
            why: "not a number",
        })
    };
    let num32 = |name: &str| {
        let line = get(name).0;
        u32::try_from(num(name)?).map_err(|_| SnapshotError::Line {
            line,
            why: "number too large",
        })
    };
    let (hash_line, hash) = get("key_hash_algorithm");
    let hash = HashAlgorithm::parse(hash).ok_or(SnapshotError::Line {
        line: hash_line,
        why: "unknown key_hash_algorithm",
    })?;
    let (type_line, partition_type) = get("partition_type");
    if partition_type != "modular" {
        return Err(SnapshotError::Line {
            line: type_line,
            why: "unknown partition_type",
        });
    }
    Ok(Snapshot {
        version: num("version")?,
        next_thread_type: num32("next_thread_type")?,
        nodes: Vec::new(),
        partition: PartitionParams {
            partition_size: num32("partition_size")?,
            virtual_slots: num32("partition_modular_virtual")?,
            hint: num32("partition_modular_hint")?,
            hash,
        },
    })
}

/// `node <name> <port> <role> <state> <partition|-1> <balance> <thread_type>`, single spaces.
fn parse_node(line: &str) -> Option<NodeRecord> {
    let f: Vec<&str> = line.split(' ').collect();
    let [b"node", name, port, role, state, partition, balance, thread_type] =
        f.iter().map(|s| s.as_bytes()).collect::<Vec<_>>()[..]
    else {
        return None;
    };
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    let partition = match partition {
        b"-1" => None,
        p => Some(canonical_u32(std::str::from_utf8(p).ok()?)?),
    };
    Some(NodeRecord {
        name: text(name)?,
        port: u16::try_from(canonical_u64(port)?).ok()?,
        role: Role::parse(&text(role)?)?,
        state: State::parse(&text(state)?)?,
        partition,
        balance: canonical_u32(&text(balance)?)?,
        thread_type: canonical_u32(&text(thread_type)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, role: Role, state: State, p: Option<u32>, b: u32, tt: u32) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            port: 12121,
            role,
            state,
            partition: p,
            balance: b,
            thread_type: tt,
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            version: 12,
            next_thread_type: 19,
            nodes: vec![
                rec("10.0.0.1", Role::Master, State::Active, Some(0), 1, 16),
                rec("10.0.0.2", Role::Slave, State::Prepare, Some(0), 0, 17),
                rec("10.0.0.3", Role::Proxy, State::Down, None, 0, 18),
            ],
            partition: PartitionParams::default(),
        }
    }

    #[test]
    fn exact_encoding() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let body = "version 12\nnext_thread_type 19\npartition_size 1024\npartition_modular_virtual 4096\n\
                    partition_modular_hint 1\nkey_hash_algorithm simple\npartition_type modular\n\
                    node 10.0.0.1 12121 master active 0 1 16\n\
                    node 10.0.0.2 12121 slave prepare 0 0 17\n\
                    node 10.0.0.3 12121 proxy down -1 0 18\nend\n";
        let crc = crc32fast::hash(body.as_bytes());
        assert_eq!(
            text,
            format!("flare-index-snapshot 1\n{} {crc:08x}\n{body}", body.len())
        );
    }

    #[test]
    fn round_trip() {
        for s in [
            sample(),
            Snapshot {
                nodes: vec![],
                ..sample()
            },
        ] {
            assert_eq!(Snapshot::decode(&s.encode()), Ok(s));
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(Snapshot::decode(&b).is_err(), "flipped byte {i}");
        }
        let mut longer = bytes.clone();
        longer.push(b'\n');
        assert!(matches!(
            Snapshot::decode(&longer),
            Err(SnapshotError::Length { .. })
        ));
    }

    /// Re-encodes a body with a correct header, to reach the body checks behind the CRC.
    fn with_body(body: &str) -> Vec<u8> {
        let crc = crc32fast::hash(body.as_bytes());
        format!("{MAGIC}\n{} {crc:08x}\n{body}", body.len()).into_bytes()
    }

    #[test]
    fn body_errors_name_the_problem() {
        let good = String::from_utf8(sample().encode()).unwrap();
        let body = good
            .split_once('\n')
            .unwrap()
            .1
            .split_once('\n')
            .unwrap()
            .1
            .to_owned();
        let cases = [
            (
                body.replace("version 12\n", ""),
                "expected the next fixed field",
            ),
            (body.replace("end\n", ""), "missing end"),
            (body.replace("end\n", "end\nx\n"), "text after end"),
            (
                body.replace("slave prepare", "boss prepare"),
                "bad node line",
            ),
            (
                body.replace("simple", "murmur"),
                "key-hash-algorithm murmur",
            ),
            (
                body.replace("modular\n", "hash\n"),
                "unknown partition_type",
            ),
            (
                body.replace("next_thread_type 19", "next_thread_type 18"),
                "thread_type 18",
            ),
            (body.replace("active 0 1 16", "active 1 1 16"), "no master"),
            (body.replace("10.0.0.3", "10.0.0.0"), "out of order"),
            (body.replace("version 12", "version 012"), "not a number"),
            (body.replace("0 1 16", "00 1 16"), "bad node line"),
            (
                body.replace("node 10.0.0.1", "node  10.0.0.1"),
                "bad node line",
            ),
            (body.replace("-1 0 18", "-0 0 18"), "bad node line"),
        ];
        for (b, want) in cases {
            let err = Snapshot::decode(&with_body(&b)).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn only_the_canonical_header_is_accepted() {
        let good = sample().encode();
        let text = String::from_utf8(good.clone()).unwrap();
        let header = text.lines().nth(1).unwrap();
        for bad in [
            header.to_uppercase(),
            format!("0{header}"),
            format!("{header} "),
            header.replace(' ', "  "),
        ] {
            let b = text.replacen(header, &bad, 1);
            assert_eq!(
                Snapshot::decode(b.as_bytes()),
                Err(SnapshotError::Header),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn other_formats_are_named() {
        assert_eq!(
            Snapshot::decode(b"<?xml version"),
            Err(SnapshotError::Magic)
        );
        assert_eq!(
            Snapshot::decode(b"flare-index-snapshot 2\n"),
            Err(SnapshotError::Format("2".into()))
        );
        assert_eq!(Snapshot::decode(b""), Err(SnapshotError::Magic));
    }
}
