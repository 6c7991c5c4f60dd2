//! `verify`: every key is on the partition the resolver gives it, and every active slave holds what its master
//! holds (admin-tool.md §4, fixed as §7 asks: bit-exact `simple`, `crc32` and `jenkins` from core's resolver, and
//! proxies skipped).
//!
//! Each active master and slave is dumped without a partition filter (a filtered dump would hide misplaced keys),
//! one node at a time. Per partition, the master's items are kept as key → (flags, value hash); each slave is then
//! compared with them (missing, extra, different). The partitioning parameters come from the index's `meta`; the
//! partition count from `stats nodes` (P + 1 for the preparing partition, cluster.md §9.3).
//!
//! Writes that land between the master's dump and a slave's dump show up as differences: run it on a quiet
//! cluster, or run it again.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use flare_core::keys::{HashAlgorithm, PartitionParams, Resolver};
use flare_core::node_map::{NodeRecord, Role, State};
use flare_core::protocol::admin::{AdminCommand, IndexCommand};

use super::args::VerifyArgs;
use super::client::{Conn, Endpoint};
use super::cluster::Nodes;
use super::error::{AdminError, Result};
use super::{Ctx, Status};

/// Bad keys printed per node with `--verbose`.
const VERBOSE_KEYS_MAX: usize = 100;

/// What a partition's master holds: key → (flags, hash of the value).
type Digest = BTreeMap<Bytes, (u32, u64)>;

/// `verify`.
pub fn verify(ctx: &Ctx, a: VerifyArgs) -> Result<Status> {
    let mut index = ctx.index(&a.index, &[])?;
    let nodes = Nodes::fetch(&mut index)?;
    let mut params = meta(&mut index)?;
    if let Some(name) = &a.key_hash_algorithm {
        params.hash = HashAlgorithm::parse(name)
            .filter(|h| h.allowed_for_partitioning())
            .ok_or_else(|| {
                AdminError::Usage(format!(
                    "unknown key hash algorithm {name} (simple, crc32 or jenkins)"
                ))
            })?;
    }
    let resolver = Resolver::new(params)
        .map_err(|e| AdminError::Failed(format!("the index's partitioning cannot be used: {e}")))?;
    let count = nodes.partition_count();
    let say = |line: String| {
        if !a.quiet {
            println!("{line}");
        }
    };
    let mut ok = true;
    let preparing = nodes.preparing().and_then(|m| m.partition);
    let partitions = (0..count).chain(preparing);
    for p in partitions {
        let Some(master) = nodes.master_of(p).filter(|m| m.state != State::Down) else {
            say(format!("partition {p} has no live master: NG"));
            ok = false;
            continue;
        };
        // Keys of the preparing partition are placed as if it were active.
        let n = if Some(p) == preparing {
            count + 1
        } else {
            count
        };
        let (digest, misplaced) =
            dump_node(ctx, master, |key| resolver.partition(key, n) == Some(p))?;
        let mut line = format!(
            "checking {} (master, partition {p}) ... dump ... {} entries.",
            master.key(),
            digest.len() + misplaced.len()
        );
        if misplaced.is_empty() {
            line.push_str(" OK");
        } else {
            ok = false;
            line.push_str(&format!(
                " NG ({} keys of other partitions)",
                misplaced.len()
            ));
        }
        say(line);
        if a.verbose {
            for k in misplaced.iter().take(VERBOSE_KEYS_MAX) {
                say(format!("  misplaced: {}", String::from_utf8_lossy(k)));
            }
        }
        for s in nodes.slaves_of(p) {
            if s.state != State::Active {
                say(format!(
                    "skipping {} (slave, partition {p}): {}",
                    s.key(),
                    s.state
                ));
                continue;
            }
            let (held, misplaced) = dump_node(ctx, s, |key| resolver.partition(key, n) == Some(p))?;
            let diff = compare(&digest, &held);
            let mut line = format!(
                "checking {} (slave, partition {p}) ... dump ... {} entries.",
                s.key(),
                held.len() + misplaced.len()
            );
            if diff.is_empty() && misplaced.is_empty() {
                line.push_str(" OK");
            } else {
                ok = false;
                line.push_str(&format!(
                    " NG ({} missing, {} extra, {} different from the master, {} of other partitions)",
                    diff.missing.len(),
                    diff.extra.len(),
                    diff.different.len(),
                    misplaced.len()
                ));
            }
            say(line);
            if a.verbose {
                for (what, keys) in [
                    ("missing", &diff.missing),
                    ("extra", &diff.extra),
                    ("different", &diff.different),
                    ("misplaced", &misplaced),
                ] {
                    for k in keys.iter().take(VERBOSE_KEYS_MAX) {
                        say(format!("  {what}: {}", String::from_utf8_lossy(k)));
                    }
                }
            }
        }
    }
    let proxies = nodes
        .map
        .nodes
        .values()
        .filter(|n| n.role == Role::Proxy)
        .count();
    if proxies > 0 {
        say(format!("{proxies} proxies skipped."));
    }
    println!("{}", if ok { "OK" } else { "NG" });
    Ok(if ok { Status::Ok } else { Status::Ng })
}

/// The index's partitioning (`meta`, protocol.md §6).
fn meta(index: &mut Conn) -> Result<PartitionParams> {
    let mut p = PartitionParams::default();
    for line in index.call_lines(&AdminCommand::Index(IndexCommand::Meta).to_line())? {
        let mut t = line.split(' ');
        let (Some("META"), Some(name), Some(value)) = (t.next(), t.next(), t.next()) else {
            continue;
        };
        let num = || value.parse::<u32>().ok();
        match name {
            "partition-size" => p.partition_size = num().unwrap_or(p.partition_size),
            "partition-modular-virtual" => p.virtual_slots = num().unwrap_or(p.virtual_slots),
            "partition-modular-hint" => p.hint = num().unwrap_or(p.hint),
            "key-hash-algorithm" => {
                p.hash = HashAlgorithm::parse(value).ok_or_else(|| AdminError::Protocol {
                    what: "index server",
                    addr: index.addr().to_string(),
                    reason: format!("unknown key-hash-algorithm {value}"),
                })?
            }
            _ => {}
        }
    }
    Ok(p)
}

/// Dumps everything `n` holds: the digest of the keys `belongs` accepts, and the keys it does not.
fn dump_node(
    ctx: &Ctx,
    n: &NodeRecord,
    belongs: impl Fn(&[u8]) -> bool,
) -> Result<(Digest, Vec<Bytes>)> {
    let mut c = ctx.node(&Endpoint::new(n.name.clone(), n.port))?;
    let mut digest = Digest::new();
    let mut misplaced = Vec::new();
    c.dump("dump", |v| {
        if belongs(&v.key) {
            let mut h = DefaultHasher::new();
            v.value.hash(&mut h);
            digest.insert(v.key, (v.flags, h.finish()));
        } else {
            misplaced.push(v.key);
        }
        Ok(())
    })?;
    Ok((digest, misplaced))
}

/// Differences of a slave from its master.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// On the master, not on the slave.
    pub missing: Vec<Bytes>,
    /// On the slave, not on the master.
    pub extra: Vec<Bytes>,
    /// On both, with other flags or data.
    pub different: Vec<Bytes>,
}

impl Diff {
    /// True when the slave matches.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.different.is_empty()
    }
}

/// Compares a slave's digest with its master's.
pub fn compare(master: &Digest, slave: &Digest) -> Diff {
    let mut d = Diff::default();
    for (k, v) in master {
        match slave.get(k) {
            None => d.missing.push(k.clone()),
            Some(s) if s != v => d.different.push(k.clone()),
            Some(_) => {}
        }
    }
    d.extra = slave
        .keys()
        .filter(|k| !master.contains_key(*k))
        .cloned()
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(items: &[(&str, u32, u64)]) -> Digest {
        items
            .iter()
            .map(|(k, f, h)| (Bytes::copy_from_slice(k.as_bytes()), (*f, *h)))
            .collect()
    }

    #[test]
    fn slave_differences() {
        let m = digest(&[("a", 0, 1), ("b", 0, 2), ("c", 1, 3)]);
        assert!(compare(&m, &m).is_empty());
        let s = digest(&[("a", 0, 1), ("c", 2, 3), ("d", 0, 4)]);
        let d = compare(&m, &s);
        assert_eq!(d.missing, vec![Bytes::from_static(b"b")]);
        assert_eq!(d.different, vec![Bytes::from_static(b"c")]);
        assert_eq!(d.extra, vec![Bytes::from_static(b"d")]);
    }
}
