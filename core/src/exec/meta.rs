//! Execution of the meta commands (protocol.md §11) over a [`Store`], with memcached's reply rules.
//!
//! Each command is one atomic [`Storage::update`] (or the matching [`Store`] method), so a reply always describes
//! exactly the item it changed. Every change is reported as a [`Mutation`] carrying the resulting item or tombstone,
//! which is what replication sends (cluster.md §8.1).
//!
//! **Versions.** CAS is the item's version (§4.3). Every write gives the item a new version, `last + 1`, or the one
//! named by `E<cas>` when that is above `last`; an `E` at or below it answers `EX` ("Meta commands in a cluster").
//! Two meta changes that keep memcached's CAS get a new version here so that they replicate under the
//! explicit-version rule like any other write: handing out a recache win (`mg` answering `W`, which sets the item's
//! win-sent bit) and `md x` (empty the value). A `T` that only changes the TTL keeps the version, as `touch` does.
//!
//! **Meta state.** The stale bit (`X`) and the win-sent bit (`Z`) live in [`Item::meta`]; they are persisted and
//! replicated with the item. Any store of a new value clears them, except `ms ... C<older cas> I`, which stores the
//! value as stale (memcached's "serve stale"). A stale item hands out one `W` to the next `mg`, even without `N`/`R`,
//! so that `mg` is a write too (protocol.md §11 routes only `mg` with `N`/`R`/`T`/`E` to the master). Auto-create
//! (`mg N`, `ma N`, `ms MA N`/`MP N`) is an add: Flare's delete hold refuses it.
//!
//! **Access data.** `h`, `l` and `me`'s `la=`/`fetch=` come from the node's in-memory [`crate::access`] table (a
//! read still never writes to storage, decisions.md #5): `mg` reports them as they were before it and then marks the
//! item fetched, unless `u` is given. There is no LRU: `me` reports `cls=0`.
//!
//! **Quiet mode (`q`)**, as memcached 1.6.18: `mg` hides `EN`; `ms` hides `HD`; `md` hides `HD`; `ma` hides `HD`
//! (or `VA`) when it changed an existing counter, but not when `N` created it. Errors are always sent.

use bytes::Bytes;

use crate::exec::{Mutation, Tally};
use crate::item::{Entry, Item};
use crate::protocol::meta::{
    hidden_by_quiet, DebugInfo, MetaCommand, MetaFlag, MetaKind, MetaReply, MetaSetMode,
    MetaStatus, ReturnFlag,
};
use crate::protocol::{ArithOp, ErrorReply, Reply, StoreMode, StoreRequest, WriteOptions};
use crate::storage::{Change, Storage, StorageError};
use crate::store::{self, abs_exptime, alive, last_version, DeleteOutcome, Store, StoreOutcome};
use crate::versions::VersionClock;

/// Runs one meta command at `now`, recording what it changed in `mutations`.
pub fn execute<S: Storage>(
    store: &Store<S>,
    command: MetaCommand,
    now: u64,
    tally: &mut Tally,
    mutations: &mut Vec<Mutation>,
) -> Result<Reply, StorageError> {
    store.maybe_flush(now)?;
    match command.kind {
        MetaKind::NoOp => Ok(Reply::Meta(MetaReply::NoOp)),
        MetaKind::Debug => debug(store, &command, now),
        MetaKind::Get => get(store, &command, now, tally, mutations),
        MetaKind::Set => set(store, &command, now, tally, mutations),
        MetaKind::Delete => delete(store, &command, now, tally, mutations),
        MetaKind::Arith => arith(store, &command, now, tally, mutations),
    }
}

/// What `mg` found and did.
enum GetOutcome {
    Hit {
        item: Item,
        /// The TTL as of the `t` flag's position (a `T` before it counts, one after it does not).
        ttl_at_t: i64,
        /// A win was already handed out before this request (`Z`).
        already_won: bool,
        /// Stale before this request (`X`).
        stale: bool,
        /// This request won (`W`).
        won: bool,
        /// `N` created the item.
        created: bool,
    },
    Miss,
    /// `E` not above the current version.
    Exists,
}

/// `mg <key> <flags>*`.
fn get<S: Storage>(
    store: &Store<S>,
    cmd: &MetaCommand,
    now: u64,
    tally: &mut Tally,
    mutations: &mut Vec<Mutation>,
) -> Result<Reply, StorageError> {
    prepare_versions(store, cmd)?;
    let outcome = store.storage().update(&cmd.key, |cur| {
        let cur = cur.as_ref();
        let (mut item, created) = match (alive(cur, now), cmd.vivify()) {
            (Some(item), _) => (item.clone(), false),
            // memcached's vivified item: empty, flags 0, TTL set by `N` at its place among the flags. Creating it is
            // an add, which a delete hold refuses (a plain miss, no `W`).
            (None, Some(_)) if !held(cur, now) => (Item::default(), true),
            (None, _) => return (Change::Keep, GetOutcome::Miss),
        };
        let already_won = item.win_sent();
        let stale = item.is_stale();
        let mut won = false;
        let mut ttl_at_t = 0;
        // Flags act in request order, as memcached's loop does.
        for flag in &cmd.flags {
            match *flag {
                MetaFlag::Ttl(t) => item.exptime = abs_exptime(t, now),
                MetaFlag::Vivify(t) if created => {
                    item.exptime = abs_exptime(t, now);
                    won = true;
                }
                MetaFlag::Recache(t)
                    if !already_won
                        && !created
                        && item.exptime != 0
                        && item.exptime < abs_exptime(t, now) =>
                {
                    won = true
                }
                MetaFlag::ReturnTtl => ttl_at_t = remaining_ttl(item.exptime, now),
                _ => {}
            }
        }
        // The first reader of a stale item wins the recache.
        won |= stale && !already_won;
        if won {
            // As memcached 1.6.18: handing out the win of an existing item changes no CAS; an item `N` creates
            // gets a new one (a newer memcached's `E` sets either).
            item.meta |= Item::META_WIN_SENT;
            match cmd.new_cas() {
                Some(e) if e > last_version(cur) => item.version = e,
                Some(_) => return (Change::Keep, GetOutcome::Exists),
                None if created => item.version = store.versions().issue(last_version(cur)),
                None => {}
            }
        }
        let change = if won || cmd.ttl().is_some() {
            Change::Put(Entry::Item(item.clone()))
        } else {
            Change::Keep
        };
        let hit = GetOutcome::Hit {
            item,
            ttl_at_t,
            already_won,
            stale,
            won,
            created,
        };
        (change, hit)
    })?;
    tally.cmd_get += 1;
    let touched = cmd.ttl().is_some();
    if touched {
        tally.cmd_set += 1;
    }
    let (item, ttl_at_t, already_won, stale, won, created) = match outcome {
        GetOutcome::Hit {
            item,
            ttl_at_t,
            already_won,
            stale,
            won,
            created,
        } => (item, ttl_at_t, already_won, stale, won, created),
        GetOutcome::Miss => {
            tally.get_misses += 1;
            tally.touch_misses += u64::from(touched);
            let quiet = cmd.quiet() && hidden_by_quiet(cmd.kind, MetaStatus::Miss.code());
            return Ok(quiet_if(quiet, status(MetaStatus::Miss, echo(cmd))));
        }
        GetOutcome::Exists => return Ok(status(MetaStatus::Exists, echo(cmd))),
    };
    tally.get_hits += 1;
    tally.touch_hits += u64::from(touched);
    if created {
        store.access().stored(&cmd.key, now);
    }
    let access = match cmd.has(&MetaFlag::NoBump) {
        true => store.access().peek(&cmd.key, now),
        false => store.access().fetch(&cmd.key, now),
    };
    // A win on an existing item is this node's alone (its version is unchanged, so a slave could not take it).
    if created || (won && cmd.new_cas().is_some()) {
        mutations.push(Mutation::Put {
            key: cmd.key.clone(),
            item: item.clone(),
        });
    } else if touched {
        mutations.push(Mutation::Touch {
            key: cmd.key.clone(),
            exptime: item.exptime,
        });
    }
    let mut flags: Vec<ReturnFlag> = cmd
        .flags
        .iter()
        .filter_map(|f| match f {
            MetaFlag::ReturnSize => Some(ReturnFlag::Size(item.value.len() as u64)),
            MetaFlag::ReturnTtl => Some(ReturnFlag::Ttl(ttl_at_t)),
            MetaFlag::ReturnCas => Some(ReturnFlag::Cas(item.version)),
            MetaFlag::ReturnFlags => Some(ReturnFlag::ClientFlags(item.flags)),
            MetaFlag::ReturnLastAccess => Some(ReturnFlag::LastAccess(access.idle_secs)),
            MetaFlag::ReturnHit => Some(ReturnFlag::Hit(access.fetched)),
            other => echo_flag(cmd, other),
        })
        .collect();
    // memcached appends these after the requested flags, Z before X so that W and Z never come together.
    if already_won {
        flags.push(ReturnFlag::AlreadyWon);
    }
    if stale {
        flags.push(ReturnFlag::Stale);
    }
    if won {
        flags.push(ReturnFlag::Won);
    }
    let reply = if cmd.has(&MetaFlag::ReturnValue) {
        MetaReply::Value {
            flags,
            data: item.value,
        }
    } else {
        MetaReply::Status {
            status: MetaStatus::Done,
            flags,
        }
    };
    Ok(Reply::Meta(reply))
}

/// `ms <key> <datalen> <flags>*` and its data block.
fn set<S: Storage>(
    store: &Store<S>,
    cmd: &MetaCommand,
    now: u64,
    tally: &mut Tally,
    mutations: &mut Vec<Mutation>,
) -> Result<Reply, StorageError> {
    prepare_versions(store, cmd)?;
    tally.cmd_set += 1;
    let cas = cmd.compare_cas();
    // As memcached: a cas turns set and replace into cas; add ignores it; append/prepend check it (0 = no check).
    let (mode, cas_unique) = match (cmd.set_mode(), cas) {
        (MetaSetMode::Set | MetaSetMode::Replace, Some(c)) => (StoreMode::Cas, c),
        (MetaSetMode::Set, None) => (StoreMode::Set, 0),
        (MetaSetMode::Replace, None) => (StoreMode::Replace, 0),
        (MetaSetMode::Add, _) => (StoreMode::Add, 0),
        (MetaSetMode::Append, c) => (StoreMode::Append, c.unwrap_or(0)),
        (MetaSetMode::Prepend, c) => (StoreMode::Prepend, c.unwrap_or(0)),
    };
    let req = StoreRequest {
        mode,
        key: cmd.key.clone(),
        flags: cmd.client_flags(),
        exptime: cmd.ttl().unwrap_or(0),
        value: cmd.value.clone(),
        cas_unique,
        version: None,
        options: WriteOptions::default(),
    };
    let size_max = store.config().item_size_max as usize;
    let invalidate = cmd.has(&MetaFlag::Invalidate);
    let outcome = store.storage().update(&cmd.key, |cur| {
        let cur = cur.as_ref();
        // `E` gives the version (checked below); else a new one.
        let issue = |last| {
            cmd.new_cas()
                .unwrap_or_else(|| store.versions().issue(last))
        };
        let decided = match (alive(cur, now), cmd.vivify()) {
            // `I` with an older cas: store the value but keep the TTL and the win state, and mark it stale.
            (Some(old), _) if invalidate && mode == StoreMode::Cas && cas_unique < old.version => {
                StoreOutcome::Stored(Item {
                    flags: req.flags,
                    exptime: old.exptime,
                    version: issue(last_version(cur)),
                    value: req.value.clone(),
                    meta: Item::META_STALE | (old.meta & Item::META_WIN_SENT),
                })
            }
            // `N` in append/prepend mode: a miss stores the data as a new item (an add) with that TTL.
            (None, Some(ttl)) if matches!(mode, StoreMode::Append | StoreMode::Prepend) => {
                let add = StoreRequest {
                    mode: StoreMode::Add,
                    exptime: ttl,
                    ..req.clone()
                };
                store::decide_store(&add, cur, now, size_max, issue)
            }
            _ => store::decide_store(&req, cur, now, size_max, issue),
        };
        match decided {
            StoreOutcome::Stored(item) => match cmd.new_cas() {
                Some(e) if e <= last_version(cur) => (Change::Keep, StoreOutcome::Exists),
                _ => (
                    Change::Put(Entry::Item(item.clone())),
                    StoreOutcome::Stored(item),
                ),
            },
            other => (Change::Keep, other),
        }
    })?;
    let (code, item) = match outcome {
        StoreOutcome::Stored(item) => {
            tally.total_items += 1;
            tally.cas_hits += u64::from(cas.is_some());
            mutations.push(Mutation::Put {
                key: cmd.key.clone(),
                item: item.clone(),
            });
            (MetaStatus::Done, Some(item))
        }
        StoreOutcome::NotStored => (MetaStatus::NotStored, None),
        StoreOutcome::Exists => {
            tally.cas_badval += u64::from(cas.is_some());
            (MetaStatus::Exists, None)
        }
        StoreOutcome::NotFound => {
            tally.cas_misses += 1;
            (MetaStatus::NotFound, None)
        }
        StoreOutcome::TooLarge => return Ok(Reply::Error(ErrorReply::TooLarge)),
    };
    // memcached answers `c0` when nothing was stored, and the size of the data sent.
    let flags = cmd
        .flags
        .iter()
        .filter_map(|f| match f {
            MetaFlag::ReturnCas => Some(ReturnFlag::Cas(item.as_ref().map_or(0, |i| i.version))),
            MetaFlag::ReturnSize => Some(ReturnFlag::Size(
                item.as_ref().map_or(cmd.value.len(), |i| i.value.len()) as u64,
            )),
            other => echo_flag(cmd, other),
        })
        .collect();
    Ok(quiet_if(
        cmd.quiet() && hidden_by_quiet(cmd.kind, code.code()),
        status(code, flags),
    ))
}

/// `md <key> <flags>*`: delete; with `I` mark stale (and bump the version); with `x` empty the value.
fn delete<S: Storage>(
    store: &Store<S>,
    cmd: &MetaCommand,
    now: u64,
    tally: &mut Tally,
    mutations: &mut Vec<Mutation>,
) -> Result<Reply, StorageError> {
    prepare_versions(store, cmd)?;
    let invalidate = cmd.has(&MetaFlag::Invalidate);
    let remove_value = cmd.has(&MetaFlag::RemoveValue);
    let code = if !invalidate && !remove_value {
        match store.delete(&cmd.key, 0, None, cmd.compare_cas(), now)? {
            DeleteOutcome::Deleted(tombstone) => {
                mutations.push(Mutation::Delete {
                    key: cmd.key.clone(),
                    tombstone,
                });
                MetaStatus::Done
            }
            DeleteOutcome::NotFound => MetaStatus::NotFound,
            DeleteOutcome::Exists => MetaStatus::Exists,
        }
    } else {
        let outcome = store.storage().update(&cmd.key, |cur| {
            let cur = cur.as_ref();
            let Some(old) = alive(cur, now) else {
                return (Change::Keep, Err(MetaStatus::NotFound));
            };
            if cmd.compare_cas().is_some_and(|c| c != old.version) {
                return (Change::Keep, Err(MetaStatus::Exists));
            }
            let Some(version) = next_version(cmd, last_version(cur), store.versions()) else {
                return (Change::Keep, Err(MetaStatus::Exists));
            };
            let mut item = if remove_value {
                // memcached replaces the item with an empty one: flags from `F`, TTL from `T` (else none).
                Item {
                    flags: cmd.client_flags(),
                    exptime: cmd.ttl().map_or(0, |t| abs_exptime(t, now)),
                    version,
                    value: Bytes::new(),
                    meta: 0,
                }
            } else {
                Item {
                    version,
                    ..old.clone()
                }
            };
            if invalidate {
                if let Some(t) = cmd.ttl() {
                    item.exptime = abs_exptime(t, now);
                }
                // Stale, and the next reader may win again.
                item.meta = (item.meta | Item::META_STALE) & !Item::META_WIN_SENT;
            }
            (Change::Put(Entry::Item(item.clone())), Ok(item))
        })?;
        match outcome {
            Ok(item) => {
                mutations.push(Mutation::Put {
                    key: cmd.key.clone(),
                    item,
                });
                MetaStatus::Done
            }
            Err(code) => code,
        }
    };
    match code {
        MetaStatus::Done => tally.delete_hits += 1,
        MetaStatus::NotFound => tally.delete_misses += 1,
        _ => {}
    }
    let quiet = cmd.quiet() && hidden_by_quiet(cmd.kind, code.code());
    Ok(quiet_if(quiet, status(code, echo(cmd))))
}

/// What `ma` did.
enum ArithOutcome {
    Done {
        item: Item,
        value: u64,
        /// `N` created the counter.
        created: bool,
        ttl_at_t: i64,
    },
    Failed(MetaStatus),
    NonNumeric,
}

/// `ma <key> <flags>*`.
fn arith<S: Storage>(
    store: &Store<S>,
    cmd: &MetaCommand,
    now: u64,
    tally: &mut Tally,
    mutations: &mut Vec<Mutation>,
) -> Result<Reply, StorageError> {
    prepare_versions(store, cmd)?;
    let op = cmd.arith_mode();
    let config = *store.config();
    let outcome = store.storage().update(&cmd.key, |cur| {
        let cur = cur.as_ref();
        let (mut item, value, created) = match alive(cur, now) {
            Some(old) => {
                // memcached's do_add_delta: an empty value is not a number, then a non-zero cas is compared, then
                // the number is read.
                if old.value.is_empty() {
                    return (Change::Keep, ArithOutcome::NonNumeric);
                }
                if cmd
                    .compare_cas()
                    .is_some_and(|c| c != 0 && c != old.version)
                {
                    return (Change::Keep, ArithOutcome::Failed(MetaStatus::Exists));
                }
                let Some((value, bytes)) = store::arith_value(&old.value, op, cmd.delta(), &config)
                else {
                    return (Change::Keep, ArithOutcome::NonNumeric);
                };
                // Rewritten in place, as memcached does: the meta state (stale, win sent) stays.
                let item = Item {
                    value: bytes,
                    ..old.clone()
                };
                (item, value, false)
            }
            None if cmd.vivify().is_none() => {
                return (Change::Keep, ArithOutcome::Failed(MetaStatus::NotFound))
            }
            // Auto-create is an add, so a delete hold refuses it (protocol.md §4.4): `NS`.
            None if held(cur, now) => {
                return (Change::Keep, ArithOutcome::Failed(MetaStatus::NotStored))
            }
            None => {
                let initial = cmd.initial();
                let item = Item {
                    value: Bytes::from(initial.to_string()),
                    ..Item::default()
                };
                (item, initial, true)
            }
        };
        let Some(version) = next_version(cmd, last_version(cur), store.versions()) else {
            return (Change::Keep, ArithOutcome::Failed(MetaStatus::Exists));
        };
        item.version = version;
        let mut ttl_at_t = 0;
        for flag in &cmd.flags {
            match *flag {
                MetaFlag::Ttl(t) => item.exptime = abs_exptime(t, now),
                MetaFlag::Vivify(t) if created => item.exptime = abs_exptime(t, now),
                MetaFlag::ReturnTtl => ttl_at_t = remaining_ttl(item.exptime, now),
                _ => {}
            }
        }
        let done = ArithOutcome::Done {
            item: item.clone(),
            value,
            created,
            ttl_at_t,
        };
        (Change::Put(Entry::Item(item)), done)
    })?;
    let (hits, misses) = match op {
        ArithOp::Incr => (&mut tally.incr_hits, &mut tally.incr_misses),
        ArithOp::Decr => (&mut tally.decr_hits, &mut tally.decr_misses),
    };
    let (item, value, created, ttl_at_t) = match outcome {
        ArithOutcome::Done {
            item,
            value,
            created,
            ttl_at_t,
        } => (item, value, created, ttl_at_t),
        ArithOutcome::Failed(code) => {
            if code == MetaStatus::NotFound {
                *misses += 1;
            }
            return Ok(status(code, echo(cmd)));
        }
        ArithOutcome::NonNumeric => return Ok(Reply::Error(ErrorReply::NonNumeric)),
    };
    *hits += 1;
    mutations.push(Mutation::Put {
        key: cmd.key.clone(),
        item: item.clone(),
    });
    let flags = cmd
        .flags
        .iter()
        .filter_map(|f| match f {
            MetaFlag::ReturnCas => Some(ReturnFlag::Cas(item.version)),
            MetaFlag::ReturnTtl => Some(ReturnFlag::Ttl(ttl_at_t)),
            other => echo_flag(cmd, other),
        })
        .collect();
    let reply = if cmd.has(&MetaFlag::ReturnValue) {
        MetaReply::Value {
            flags,
            data: Bytes::from(value.to_string()),
        }
    } else {
        MetaReply::Status {
            status: MetaStatus::Done,
            flags,
        }
    };
    // memcached's quiet ma hides the reply of an update, not of an auto-create.
    let code: &[u8] = match &reply {
        MetaReply::Value { .. } => b"VA",
        _ => b"HD",
    };
    Ok(quiet_if(
        cmd.quiet() && !created && hidden_by_quiet(cmd.kind, code),
        Reply::Meta(reply),
    ))
}

/// `me <key> [b]`.
fn debug<S: Storage>(store: &Store<S>, cmd: &MetaCommand, now: u64) -> Result<Reply, StorageError> {
    let reply = match store.get(&cmd.key, now)? {
        Some(item) => {
            let access = store.access().peek(&cmd.key, now);
            MetaReply::Debug(DebugInfo {
                key: cmd.key.clone(),
                base64: cmd.base64,
                exp: remaining_ttl(item.exptime, now),
                la: access.idle_secs,
                cas: item.version,
                fetched: access.fetched,
                cls: 0,
                size: item.value.len() as u64,
            })
        }
        None => MetaReply::Status {
            status: MetaStatus::Miss,
            flags: Vec::new(),
        },
    };
    Ok(Reply::Meta(reply))
}

/// The version a modified item gets: `E<cas>` when above `last`, `None` (answer `EX`) when not, else a new one.
fn next_version(cmd: &MetaCommand, last: u64, versions: &VersionClock) -> Option<u64> {
    match cmd.new_cas() {
        Some(e) if e > last => Some(e),
        Some(_) => None,
        None => Some(versions.issue(last)),
    }
}

/// Before a meta command's update: room on the clock for the version it may issue, and its `E` witnessed.
fn prepare_versions<S: Storage>(store: &Store<S>, cmd: &MetaCommand) -> Result<(), StorageError> {
    if let Some(e) = cmd.new_cas() {
        store.witness_version(e)?;
    }
    store.reserve_version()
}

/// The key is in Flare's delete hold (protocol.md §4.4): creating it is refused like an `add`.
fn held(cur: Option<&Entry>, now: u64) -> bool {
    matches!(cur, Some(Entry::Tombstone(t)) if t.hold_until > now)
}

/// Seconds until `exptime`, -1 for an item that never expires.
fn remaining_ttl(exptime: u64, now: u64) -> i64 {
    if exptime == 0 {
        -1
    } else {
        i64::try_from(exptime.saturating_sub(now)).unwrap_or(i64::MAX)
    }
}

/// The flags every reply echoes: the opaque and the key, in request order.
fn echo(cmd: &MetaCommand) -> Vec<ReturnFlag> {
    cmd.flags.iter().filter_map(|f| echo_flag(cmd, f)).collect()
}

fn echo_flag(cmd: &MetaCommand, flag: &MetaFlag) -> Option<ReturnFlag> {
    match flag {
        MetaFlag::Opaque(o) => Some(ReturnFlag::Opaque(o.clone())),
        MetaFlag::ReturnKey => Some(ReturnFlag::Key {
            key: cmd.key.clone(),
            base64: cmd.base64,
        }),
        _ => None,
    }
}

fn status(status: MetaStatus, flags: Vec<ReturnFlag>) -> Reply {
    Reply::Meta(MetaReply::Status { status, flags })
}

fn quiet_if(quiet: bool, reply: Reply) -> Reply {
    if quiet {
        Reply::Nothing
    } else {
        reply
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::*;
    use crate::exec::{self, Outcome};
    use crate::protocol::text::Dialect;
    use crate::protocol::{response, Decoded, Decoder, Limits};
    use crate::storage::MemoryStorage;
    use crate::store::StoreConfig;

    const NOW: u64 = 1_800_000_000;

    fn limits() -> Limits {
        Limits {
            line_max: 512,
            key_max: 32,
            item_size_max: 64,
            keys_per_get_max: 8,
            nodes_max: 4,
            raft_message_max: 1024,
        }
    }

    fn store() -> Store<MemoryStorage> {
        Store::new(
            MemoryStorage::new(),
            StoreConfig {
                item_size_max: 64,
                ..StoreConfig::default()
            },
        )
    }

    /// Decodes every request in `input` (fed whole), runs it at `now` and returns the reply bytes and mutations.
    fn run_with(s: &Store<MemoryStorage>, input: &[u8], now: u64) -> (String, Vec<Mutation>) {
        let mut decoder = Decoder::new(limits(), Dialect::default());
        let mut buf = BytesMut::from(input);
        let mut out = BytesMut::new();
        let mut all = Vec::new();
        let mut tally = Tally::default();
        while let Some(decoded) = decoder.decode(&mut buf) {
            match decoded {
                Decoded::Request(r) | Decoded::Part(r) => {
                    match exec::execute(s, r.command, now, &mut tally) {
                        Outcome::Reply { reply, mutations } => {
                            response::encode(&r.framing, &reply, &mut out);
                            all.extend(mutations);
                        }
                        other => panic!("unexpected outcome {other:?}"),
                    }
                }
                Decoded::Error { framing, error, .. } => {
                    response::encode(&framing, &Reply::Error(error), &mut out)
                }
            }
        }
        assert!(buf.is_empty(), "undecoded bytes left: {buf:?}");
        (String::from_utf8_lossy(&out).into_owned(), all)
    }

    fn run(s: &Store<MemoryStorage>, input: &str) -> String {
        run_with(s, input.as_bytes(), NOW).0
    }

    /// Runs each `(request, expected reply)` pair in turn on one store.
    fn script(s: &Store<MemoryStorage>, steps: &[(&str, &str)]) {
        for (i, (input, want)) in steps.iter().enumerate() {
            assert_eq!(run(s, input), *want, "step {i}: {input:?}");
        }
    }

    #[test]
    fn noop_ends_a_pipeline() {
        let s = store();
        assert_eq!(run(&s, "mn\r\n"), "MN\r\n");
        assert_eq!(
            run(&s, "mg a v q\r\nmg b v q k\r\nmn\r\n"),
            "MN\r\n",
            "quiet misses are silent"
        );
        script(&s, &[("ms b 2 q\r\nhi\r\n", "")]);
        assert_eq!(
            run(&s, "mg a v q Oa1\r\nmg b v q Ob2 k\r\nmn\r\n"),
            "VA 2 Ob2 kb\r\nhi\r\nMN\r\n"
        );
    }

    #[test]
    fn set_then_get_every_return_flag_in_request_order() {
        let s = store();
        script(
            &s,
            &[
                ("ms foo 2 F7 T30\r\nhi\r\n", "HD\r\n"),
                ("mg foo v\r\n", "VA 2\r\nhi\r\n"),
                ("mg foo\r\n", "HD\r\n"),
                (
                    "mg foo k v c f s t Oxyz\r\n",
                    "VA 2 kfoo c1 f7 s2 t30 Oxyz\r\nhi\r\n",
                ),
                (
                    "mg foo Oxyz t s f c k v\r\n",
                    "VA 2 Oxyz t30 s2 f7 c1 kfoo\r\nhi\r\n",
                ),
                ("mg foo h l u\r\n", "HD h1 l0\r\n"),
                ("mg foo P123 L7 q\r\n", "HD\r\n"),
            ],
        );
        assert_eq!(run_with(&s, b"mg foo t\r\n", NOW + 10).0, "HD t20\r\n");
        assert_eq!(run_with(&s, b"mg foo t\r\n", NOW + 30).0, "EN\r\n");
        script(
            &s,
            &[
                ("ms bar 0\r\n\r\n", "HD\r\n"),
                ("mg bar t v\r\n", "VA 0 t-1\r\n\r\n"),
            ],
        );
    }

    /// `h` and `l` as memcached 1.6.18 answers them (the same steps, on a real memcached: tests/tests/memcached.rs).
    #[test]
    fn hit_before_and_last_access_follow_reads_and_writes() {
        let s = store();
        let at = |secs: u64, line: &str| run_with(&s, line.as_bytes(), NOW + secs).0;
        assert_eq!(at(0, "set k 0 0 1\r\n5\r\n"), "STORED\r\n");
        assert_eq!(at(0, "mg k h l t\r\n"), "HD h0 l0 t-1\r\n");
        // The second read refreshes the time, later ones leave it; `me` shows the same data.
        assert_eq!(at(2, "mg k h l\r\n"), "HD h1 l2\r\n");
        assert_eq!(
            at(3, "me k\r\n"),
            "ME k exp=-1 la=1 cas=1 fetch=yes cls=0 size=1\r\n"
        );
        assert_eq!(at(5, "mg k h l\r\n"), "HD h1 l3\r\n");
        // A read more than a minute after it refreshes it.
        assert_eq!(at(70, "get k\r\n"), "VALUE k 0 1\r\n5\r\nEND\r\n");
        assert_eq!(at(71, "mg k h l\r\n"), "HD h1 l1\r\n");
        // incr changes the number in place: the bits stay, the time is now.
        assert_eq!(at(75, "incr k 1\r\n"), "6\r\n");
        assert_eq!(at(76, "mg k h l u\r\n"), "HD h1 l1\r\n");
        // A new value is a new item.
        assert_eq!(at(80, "append k 0 0 1\r\nx\r\n"), "STORED\r\n");
        assert_eq!(at(81, "mg k h l\r\n"), "HD h0 l1\r\n");
        // `u` looks without marking it fetched; touch and gat are reads.
        for (i, read) in [
            "mg t u\r\n",
            "touch t 100\r\n",
            "gat 100 t\r\n",
            "gets t\r\n",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(at(90, "set t 0 0 1\r\nx\r\n"), "STORED\r\n");
            at(90, read);
            let want = if i == 0 { "HD h0\r\n" } else { "HD h1\r\n" };
            assert_eq!(at(90, "mg t h\r\n"), want, "after {read:?}");
        }
        // A vivified item: created unfetched by this mg, fetched for the next.
        assert_eq!(at(100, "mg v N30 h l\r\n"), "HD h0 l0 W\r\n");
        assert_eq!(at(101, "mg v h l\r\n"), "HD h1 l1 Z\r\n");
        // A deleted and re-created key starts over.
        assert_eq!(at(102, "delete v\r\n"), "DELETED\r\n");
        assert_eq!(at(103, "ms v 1\r\ny\r\n"), "HD\r\n");
        assert_eq!(at(105, "mg v h l\r\n"), "HD h0 l2\r\n");
    }

    #[test]
    fn miss_echoes_opaque_and_key_and_is_hidden_by_quiet() {
        let s = store();
        script(
            &s,
            &[
                ("mg nope v\r\n", "EN\r\n"),
                ("mg nope v c k O99 s\r\n", "EN knope O99\r\n"),
                ("mg nope v q O99\r\n", ""),
            ],
        );
    }

    #[test]
    fn set_modes_and_cas() {
        let s = store();
        script(
            &s,
            &[
                ("ms k 1 MR\r\na\r\n", "NS\r\n"),
                ("ms k 1 ME c\r\na\r\n", "HD c1\r\n"),
                ("ms k 1 ME c\r\nb\r\n", "NS c0\r\n"),
                ("ms k 2 MA s c\r\nbc\r\n", "HD s3 c2\r\n"),
                ("ms k 1 Mp\r\n_\r\n", "HD\r\n"),
                ("mg k v c\r\n", "VA 4 c3\r\n_abc\r\n"),
                ("ms k 1 C2 k\r\nx\r\n", "EX kk\r\n"),
                ("ms k 1 C3 c\r\nx\r\n", "HD c4\r\n"),
                ("ms k 1 MR C3\r\ny\r\n", "EX\r\n"),
                ("ms none 1 C3\r\ny\r\n", "NF\r\n"),
                ("ms k 1 MA C1\r\ny\r\n", "EX\r\n"),
                ("ms k 1 MS s\r\nz\r\n", "HD s1\r\n"),
                ("ms k 3 q\r\nabc\r\n", ""),
                ("ms k 3 q ME\r\nabc\r\n", "NS\r\n"),
                ("mg k v\r\n", "VA 3\r\nabc\r\n"),
                // Append with N creates a missing item, with N's TTL.
                ("ms a 1 MA N60 T5\r\nx\r\n", "HD\r\n"),
                ("mg a v t\r\n", "VA 1 t60\r\nx\r\n"),
                ("ms a 1 MA N60\r\ny\r\n", "HD\r\n"),
                ("mg a v t\r\n", "VA 2 t60\r\nxy\r\n"),
                ("ms b 1 MP\r\nx\r\n", "NS\r\n"),
            ],
        );
        // Classic commands see what ms stored.
        assert_eq!(run(&s, "gets k\r\n"), "VALUE k 0 3 6\r\nabc\r\nEND\r\n");
    }

    #[test]
    fn explicit_cas_with_e_must_grow() {
        let s = store();
        script(
            &s,
            &[
                ("ms k 1 E100 c\r\na\r\n", "HD c100\r\n"),
                ("ms k 1 E50 c\r\nb\r\n", "EX c0\r\n"),
                ("ms k 1 E100\r\nb\r\n", "EX\r\n"),
                ("ms k 1 c\r\nb\r\n", "HD c101\r\n"),
                ("md k I E200\r\n", "HD\r\n"),
                ("mg k c\r\n", "HD c200 X W\r\n"),
                ("ma n N0 E7 c\r\n", "HD c7\r\n"),
                ("ma n E7\r\n", "EX\r\n"),
            ],
        );
    }

    #[test]
    fn delete_codes_and_quiet() {
        let s = store();
        script(
            &s,
            &[
                ("md k\r\n", "NF\r\n"),
                ("md k q\r\n", "NF\r\n"),
                ("ms k 1\r\na\r\n", "HD\r\n"),
                ("md k C9 k O1\r\n", "EX kk O1\r\n"),
                ("md k C9 q\r\n", "EX\r\n"),
                ("md k C1 q\r\n", ""),
                ("mg k\r\n", "EN\r\n"),
                ("ms k 1\r\nb\r\n", "HD\r\n"),
                ("md k O1 k\r\n", "HD O1 kk\r\n"),
                ("md k O1 k\r\n", "NF O1 kk\r\n"),
            ],
        );
        // The version continues after a delete (the tombstone keeps it).
        script(&s, &[("ms k 1 c\r\nc\r\n", "HD c3\r\n")]);
    }

    #[test]
    fn invalidate_then_one_reader_wins_the_recache() {
        let s = store();
        script(
            &s,
            &[
                ("ms k 2 T100\r\nv1\r\n", "HD\r\n"),
                ("md k I T30\r\n", "HD\r\n"),
                // As memcached 1.6.18: `md I` takes a new CAS, the win does not.
                ("mg k v c t\r\n", "VA 2 c2 t30 X W\r\nv1\r\n"),
                ("mg k v c\r\n", "VA 2 c2 Z X\r\nv1\r\n"),
                // A set with the cas from before the invalidation stores, but stays stale with its TTL.
                ("ms k 2 C1 I\r\nv2\r\n", "HD\r\n"),
                ("mg k v c t\r\n", "VA 2 c3 t30 Z X\r\nv2\r\n"),
                // I with a newer cas is a plain mismatch.
                ("ms k 2 C9 I\r\nv3\r\n", "EX\r\n"),
                // The matching cas stores a fresh item: no longer stale.
                ("ms k 2 C3 T50\r\nv4\r\n", "HD\r\n"),
                ("mg k v t\r\n", "VA 2 t50\r\nv4\r\n"),
                ("md nope I\r\n", "NF\r\n"),
            ],
        );
    }

    /// memcached rewrites a number in place: an invalidated item stays stale through `ma` and `incr` (found by the
    /// differential test through a proxy, seed 3; checked against memcached 1.6.18).
    #[test]
    fn arithmetic_keeps_an_item_stale() {
        let s = store();
        script(
            &s,
            &[
                ("ms stk 1\r\n5\r\n", "HD\r\n"),
                ("md stk I\r\n", "HD\r\n"),
                ("ma stk\r\n", "HD\r\n"),
                ("incr stk 1\r\n", "7\r\n"),
                ("mg stk v\r\n", "VA 1 X W\r\n7\r\n"),
                ("mg stk v\r\n", "VA 1 Z X\r\n7\r\n"),
            ],
        );
    }

    #[test]
    fn vivify_and_early_recache() {
        let s = store();
        script(
            &s,
            &[
                // N sets the TTL at its place among the flags: a t before it sees none.
                ("mg k v c t N30\r\n", "VA 0 c1 t-1 W\r\n\r\n"),
                ("mg k t\r\n", "HD t30 Z\r\n"),
                ("md k\r\n", "HD\r\n"),
                ("mg k v c N30 t\r\n", "VA 0 c2 t30 W\r\n\r\n"),
                ("mg k v c N30\r\n", "VA 0 c2 Z\r\n\r\n"),
                ("mg k s N30 q\r\n", "HD s0 Z\r\n"),
                ("ms k 3 T20\r\nnew\r\n", "HD\r\n"),
                ("mg k v R10\r\n", "VA 3\r\nnew\r\n"),
                ("mg k c R30\r\n", "HD c3 W\r\n"),
                ("mg k c R30\r\n", "HD c3 Z\r\n"),
                ("ms k 3\r\nnew\r\n", "HD\r\n"),
                // No TTL: R never wins.
                ("mg k R30\r\n", "HD\r\n"),
                // T before t is seen by t; T after t is not.
                ("mg k t T40 t\r\n", "CLIENT_ERROR duplicate flag\r\n"),
                ("mg k T40 t\r\n", "HD t40\r\n"),
                ("mg k t T50\r\n", "HD t40\r\n"),
                ("mg k t\r\n", "HD t50\r\n"),
            ],
        );
    }

    #[test]
    fn arithmetic() {
        let s = store();
        script(
            &s,
            &[
                ("ma n\r\n", "NF\r\n"),
                ("ma n q O5 k\r\n", "NF O5 kn\r\n"),
                ("ma n N0 J10 v\r\n", "VA 2\r\n10\r\n"),
                ("ma n v\r\n", "VA 2\r\n11\r\n"),
                ("ma n v D9 c t\r\n", "VA 2 c3 t-1\r\n20\r\n"),
                ("ma n MD D15 v\r\n", "VA 1\r\n5\r\n"),
                ("ma n M- D15 v\r\n", "VA 1\r\n0\r\n"),
                ("ma n M+ q\r\n", ""),
                ("ma n\r\n", "HD\r\n"),
                ("mg n v\r\n", "VA 2\r\n2 \r\n"),
                ("ma n C1 v\r\n", "EX\r\n"),
                ("ma n C7 v\r\n", "VA 1\r\n3\r\n"),
                ("ma n T60 t v\r\n", "VA 1 t60\r\n4\r\n"),
                (
                    "ma n MX\r\n",
                    "CLIENT_ERROR invalid mode for ma M token\r\n",
                ),
                ("ms w 20\r\n18446744073709551615\r\n", "HD\r\n"),
                ("ma w v\r\n", "VA 1\r\n0\r\n"),
                ("ms t 3\r\nabc\r\n", "HD\r\n"),
                (
                    "ma t\r\n",
                    "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                ),
                // Quiet hides an update, not an auto-create (as memcached).
                ("ma c N0 q\r\n", "HD\r\n"),
                ("ma c q\r\n", ""),
                ("incr c 1\r\n", "2\r\n"),
            ],
        );
        // Auto-create is an add: a delete hold refuses it, for ma, mg and ms in append mode alike.
        script(
            &s,
            &[
                ("<m:1>delete c 60\r\n", "DELETED\r\n"),
                ("ma c N0\r\n", "NS\r\n"),
                ("mg c N30 v\r\n", "EN\r\n"),
                ("ms c 1 MA N30\r\nx\r\n", "NS\r\n"),
                ("ms c 1\r\nx\r\n", "HD\r\n"),
            ],
        );
    }

    #[test]
    fn remove_value_keeps_the_item() {
        let s = store();
        script(
            &s,
            &[
                ("ms k 3 F5 T100\r\nabc\r\n", "HD\r\n"),
                ("md k x\r\n", "HD\r\n"),
                ("mg k v f t c\r\n", "VA 0 f0 t-1 c2\r\n\r\n"),
                ("md k x F3 T9 I\r\n", "HD\r\n"),
                // Handing out the win is a change too: a new version.
                ("mg k f t c\r\n", "HD f3 t9 c3 X W\r\n"),
            ],
        );
    }

    #[test]
    fn debug_dump() {
        let s = store();
        script(
            &s,
            &[
                ("me k\r\n", "EN\r\n"),
                ("ms k 3 T100\r\nabc\r\n", "HD\r\n"),
                (
                    "me k\r\n",
                    "ME k exp=100 la=0 cas=1 fetch=no cls=0 size=3\r\n",
                ),
                (
                    "me k other\r\n",
                    "ME k exp=100 la=0 cas=1 fetch=no cls=0 size=3\r\n",
                ),
                ("ms n 1\r\nx\r\n", "HD\r\n"),
                (
                    "me bg== b\r\n",
                    // CAS uniques are node-wide, as memcached's: n's is k's + 1.
                    "ME bg== exp=-1 la=0 cas=2 fetch=no cls=0 size=1\r\n",
                ),
                ("me\r\n", "CLIENT_ERROR bad command line format\r\n"),
                ("me !!! b\r\n", "CLIENT_ERROR bad command line format\r\n"),
            ],
        );
    }

    #[test]
    fn base64_keys() {
        let s = store();
        // "k\xff" is a valid key once decoded; it is stored under its raw bytes.
        script(
            &s,
            &[
                ("ms a/8= 2 b\r\nhi\r\n", "HD\r\n"),
                ("mg a/8= b k v\r\n", "VA 2 ka/8= b\r\nhi\r\n"),
                ("mg a/8= k b\r\n", "HD ka/8= b\r\n"),
                ("mg a/8= b q k O1 v\r\n", "VA 2 ka/8= b O1\r\nhi\r\n"),
                ("md a/8= b k\r\n", "HD ka/8= b\r\n"),
                ("mg a/8= b k\r\n", "EN ka/8= b\r\n"),
                ("ms Zm9v 1 b k\r\nx\r\n", "HD kZm9v b\r\n"),
                ("ma bg== b N0 k\r\n", "HD kbg== b\r\n"),
            ],
        );
        assert_eq!(
            run(&s, "get foo n\r\n"),
            "VALUE foo 0 1\r\nx\r\nVALUE n 0 1\r\n0\r\nEND\r\n"
        );
        script(
            &s,
            &[
                ("mg !!! b\r\n", "CLIENT_ERROR error decoding key\r\n"),
                ("mg Zm9v\r\n", "EN\r\n"),
                // "a b" and "a\n" decode to bytes a classic key cannot hold.
                ("mg YSBi b\r\n", "CLIENT_ERROR bad command line format\r\n"),
                ("mg YQo= b\r\n", "CLIENT_ERROR bad command line format\r\n"),
                ("md !!! b\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
            ],
        );
    }

    #[test]
    fn syntax_errors_use_memcacheds_strings() {
        let s = store();
        let long_opaque = format!("mg k O{}\r\n", "x".repeat(31));
        let too_long_opaque = format!("mg k O{}\r\n", "x".repeat(32));
        assert_eq!(run(&s, &long_opaque), format!("EN O{}\r\n", "x".repeat(31)));
        assert_eq!(
            run(&s, &too_long_opaque),
            "CLIENT_ERROR opaque token too long\r\n"
        );
        let key = "k".repeat(33);
        script(
            &s,
            &[
                ("mg\r\n", "ERROR\r\n"),
                ("md\r\n", "ERROR\r\n"),
                ("ms\r\n", "ERROR\r\n"),
                ("mn anything\r\n", "MN\r\n"),
                ("mg k v v\r\n", "CLIENT_ERROR duplicate flag\r\n"),
                ("mg k w\r\n", "CLIENT_ERROR invalid flag\r\n"),
                (
                    "mg k T\r\n",
                    "CLIENT_ERROR bad token in command line format\r\n",
                ),
                (
                    "mg k Tx\r\n",
                    "CLIENT_ERROR bad token in command line format\r\n",
                ),
                (
                    "mg k MEE\r\n",
                    "CLIENT_ERROR incorrect length for M token\r\n",
                ),
                ("mg k MZ\r\n", "EN\r\n"),
                ("md k v v\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
                ("ma k Dx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
                ("mg k\x00 v\r\n", "CLIENT_ERROR bad command line format\r\n"),
                (
                    "mg k a b c d e f g h i j l m n o p q r s\r\n",
                    "CLIENT_ERROR options flags are too long\r\n",
                ),
                // Every mg flag at once; N vivifies with the E version, t comes before T and N.
                (
                    "mg k c f h k l q s t u v O1 P L T1 N1 R1 E5\r\n",
                    "VA 0 c5 f0 h0 kk l0 s0 t-1 O1 W\r\n\r\n",
                ),
            ],
        );
        assert_eq!(
            run(&s, &format!("mg {key} v\r\n")),
            "CLIENT_ERROR key too long\r\n"
        );
    }

    #[test]
    fn set_data_errors_keep_the_stream_in_sync() {
        let s = store();
        let big = "x".repeat(65);
        script(
            &s,
            &[
                // As memcached 1.6.18 answers them (checked against Debian's).
                ("ms k\r\n", "CLIENT_ERROR bad command line format\r\n"),
                ("ms k abc\r\n", "CLIENT_ERROR bad command line format\r\n"),
                ("ms k -1\r\n", "CLIENT_ERROR bad command line format\r\n"),
                (
                    "ms k 2\r\nabc\r\n",
                    "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
                ),
                (
                    "ms k 2 S5\r\nhi\r\nmn\r\n",
                    "CLIENT_ERROR invalid flag\r\nMN\r\n",
                ),
                (
                    "ms k 2 MX\r\nhi\r\nmn\r\n",
                    "CLIENT_ERROR invalid mode for ms M token\r\nMN\r\n",
                ),
                (
                    "ms k 2 F-1\r\nhi\r\nmn\r\n",
                    "CLIENT_ERROR bad command line format\r\nMN\r\n",
                ),
                ("mg k\r\n", "EN\r\n"),
            ],
        );
        assert_eq!(
            run(&s, &format!("ms k 65 T1\r\n{big}\r\nmn\r\n")),
            "SERVER_ERROR object too large for cache\r\nMN\r\n"
        );
        assert_eq!(
            run(&s, &format!("ms {} 2\r\nhi\r\nmn\r\n", "k".repeat(33))),
            "CLIENT_ERROR key too long\r\nMN\r\n"
        );
        // An append past the item size limit.
        let half = "y".repeat(40);
        assert_eq!(
            run(
                &s,
                &format!("ms k 40\r\n{half}\r\nms k 40 MA\r\n{half}\r\n")
            ),
            "HD\r\nSERVER_ERROR object too large for cache\r\n"
        );
    }

    #[test]
    fn set_split_at_every_offset() {
        let input = b"ms foo 5 T0 F3 c k Oq\r\nab\r\nc\r\nmg foo v f c\r\nmn\r\n";
        let want = "HD c1 kfoo Oq\r\nVA 5 f3 c1\r\nab\r\nc\r\nMN\r\n";
        for split in 0..=input.len() {
            let s = store();
            let mut decoder = Decoder::new(limits(), Dialect::default());
            let mut buf = BytesMut::new();
            let mut out = BytesMut::new();
            let mut tally = Tally::default();
            for part in [&input[..split], &input[split..]] {
                buf.extend_from_slice(part);
                while let Some(decoded) = decoder.decode(&mut buf) {
                    let Decoded::Request(r) = decoded else {
                        panic!("split {split}: {decoded:?}")
                    };
                    let Outcome::Reply { reply, .. } =
                        exec::execute(&s, r.command, NOW, &mut tally)
                    else {
                        panic!("split {split}")
                    };
                    response::encode(&r.framing, &reply, &mut out);
                }
            }
            assert_eq!(String::from_utf8_lossy(&out), want, "split at {split}");
        }
    }

    #[test]
    fn every_change_is_a_mutation() {
        let s = store();
        let (_, m) = run_with(&s, b"ms k 1 T10\r\na\r\n", NOW);
        assert!(
            matches!(&m[..], [Mutation::Put { item, .. }] if item.version == 1 && item.exptime == NOW + 10)
        );
        let (_, m) = run_with(&s, b"mg k v\r\nme k\r\nmn\r\nmg k T20\r\n", NOW);
        assert_eq!(
            m,
            vec![Mutation::Touch {
                key: Bytes::from_static(b"k"),
                exptime: NOW + 20
            }]
        );
        let (_, m) = run_with(&s, b"md k I\r\nmg k\r\nmg k\r\n", NOW);
        let [Mutation::Put { item: stale, .. }] = &m[..] else {
            panic!("{m:?}")
        };
        assert_eq!((stale.meta, stale.version), (Item::META_STALE, 2));
        // The win is recorded here, with the version unchanged, and not replicated.
        let won = s.storage().get(b"k").unwrap().unwrap();
        assert!(
            matches!(won, Entry::Item(i) if i.meta == Item::META_STALE | Item::META_WIN_SENT && i.version == 2)
        );
        let (_, m) = run_with(
            &s,
            b"ms k 1\r\n5\r\nma k\r\nmd k\r\nmd k\r\nma n N0\r\nmg v N5\r\n",
            NOW,
        );
        assert!(
            matches!(
                &m[..],
                [
                    Mutation::Put { .. },
                    Mutation::Put { .. },
                    Mutation::Delete { .. },
                    Mutation::Put { .. },
                    Mutation::Put { .. }
                ]
            ),
            "{m:?}"
        );
        let (_, m) = run_with(&s, b"ms k 1 ME\r\nx\r\nms k 1 ME\r\nx\r\nmd k C99\r\n", NOW);
        assert_eq!(m.len(), 1, "refused writes change nothing: {m:?}");
    }

    /// A classic-protocol operation and its meta equivalent.
    #[derive(Clone, Debug)]
    enum Op {
        Set(u8, Vec<u8>, u32),
        Add(u8, Vec<u8>),
        Replace(u8, Vec<u8>),
        Append(u8, Vec<u8>),
        Prepend(u8, Vec<u8>),
        Cas(u8, Vec<u8>, u64),
        Get(u8),
        Delete(u8),
        Incr(u8, u64),
        Decr(u8, u64),
        Touch(u8, i64),
    }

    /// The outcome both forms must agree on.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Stored,
        NotStored,
        Exists,
        NotFound,
        Deleted,
        Touched,
        Number(u64),
        Item(u32, u64, Vec<u8>),
        Error,
    }

    fn key(k: u8) -> String {
        format!("k{k}")
    }

    fn classic(op: &Op) -> Vec<u8> {
        let store = |cmd: &str, k: &u8, v: &[u8], flags: u32, extra: &str| {
            let mut b = format!("{cmd} {} {flags} 0 {}{extra}\r\n", key(*k), v.len()).into_bytes();
            b.extend_from_slice(v);
            b.extend_from_slice(b"\r\n");
            b
        };
        match op {
            Op::Set(k, v, f) => store("set", k, v, *f, ""),
            Op::Add(k, v) => store("add", k, v, 0, ""),
            Op::Replace(k, v) => store("replace", k, v, 0, ""),
            Op::Append(k, v) => store("append", k, v, 0, ""),
            Op::Prepend(k, v) => store("prepend", k, v, 0, ""),
            Op::Cas(k, v, c) => store("cas", k, v, 0, &format!(" {c}")),
            Op::Get(k) => format!("gets {}\r\n", key(*k)).into_bytes(),
            Op::Delete(k) => format!("delete {}\r\n", key(*k)).into_bytes(),
            Op::Incr(k, d) => format!("incr {} {d}\r\n", key(*k)).into_bytes(),
            Op::Decr(k, d) => format!("decr {} {d}\r\n", key(*k)).into_bytes(),
            Op::Touch(k, t) => format!("touch {} {t}\r\n", key(*k)).into_bytes(),
        }
    }

    fn meta(op: &Op) -> Vec<u8> {
        let store = |k: &u8, v: &[u8], flags: &str| {
            let mut b = format!("ms {} {} {flags}\r\n", key(*k), v.len()).into_bytes();
            b.extend_from_slice(v);
            b.extend_from_slice(b"\r\n");
            b
        };
        match op {
            Op::Set(k, v, f) => store(k, v, &format!("F{f}")),
            Op::Add(k, v) => store(k, v, "ME"),
            Op::Replace(k, v) => store(k, v, "MR"),
            Op::Append(k, v) => store(k, v, "MA"),
            Op::Prepend(k, v) => store(k, v, "MP"),
            Op::Cas(k, v, c) => store(k, v, &format!("C{c}")),
            Op::Get(k) => format!("mg {} f c v\r\n", key(*k)).into_bytes(),
            Op::Delete(k) => format!("md {}\r\n", key(*k)).into_bytes(),
            Op::Incr(k, d) => format!("ma {} D{d} v\r\n", key(*k)).into_bytes(),
            Op::Decr(k, d) => format!("ma {} MD D{d} v\r\n", key(*k)).into_bytes(),
            Op::Touch(k, t) => format!("mg {} T{t}\r\n", key(*k)).into_bytes(),
        }
    }

    fn seen_classic(op: &Op, reply: &str) -> Seen {
        match reply {
            "STORED\r\n" => Seen::Stored,
            "NOT_STORED\r\n" => Seen::NotStored,
            "EXISTS\r\n" => Seen::Exists,
            "NOT_FOUND\r\n" => Seen::NotFound,
            "DELETED\r\n" => Seen::Deleted,
            "TOUCHED\r\n" => Seen::Touched,
            "END\r\n" => Seen::NotFound,
            r if r.starts_with("CLIENT_ERROR") || r.starts_with("SERVER_ERROR") => Seen::Error,
            r if r.starts_with("VALUE ") => {
                let (head, rest) = r.split_once("\r\n").unwrap();
                let f: Vec<&str> = head.split(' ').collect();
                let len: usize = f[3].parse().unwrap();
                Seen::Item(
                    f[2].parse().unwrap(),
                    f[4].parse().unwrap(),
                    rest.as_bytes()[..len].to_vec(),
                )
            }
            r => Seen::Number(
                r.trim_end()
                    .parse()
                    .unwrap_or_else(|_| panic!("{op:?}: {r:?}")),
            ),
        }
    }

    fn seen_meta(op: &Op, reply: &str) -> Seen {
        let (head, rest) = reply.split_once("\r\n").unwrap_or((reply, ""));
        let mut t = head.split(' ');
        match (t.next().unwrap(), op) {
            ("HD", Op::Delete(_)) => Seen::Deleted,
            ("HD", Op::Touch(..)) => Seen::Touched,
            ("HD", _) => Seen::Stored,
            ("NS", _) => Seen::NotStored,
            ("EX", _) => Seen::Exists,
            ("NF" | "EN", _) => Seen::NotFound,
            ("VA", Op::Get(_)) => {
                let len: usize = t.next().unwrap().parse().unwrap();
                let f = t.next().unwrap()[1..].parse().unwrap();
                let c = t.next().unwrap()[1..].parse().unwrap();
                Seen::Item(f, c, rest.as_bytes()[..len].to_vec())
            }
            ("VA", _) => Seen::Number(rest.trim_end().parse().unwrap()),
            _ if head.starts_with("CLIENT_ERROR") || head.starts_with("SERVER_ERROR") => {
                Seen::Error
            }
            _ => panic!("{op:?}: {reply:?}"),
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0u8..3;
        let v = prop_oneof![
            proptest::collection::vec(b'a'..=b'z', 0..6),
            (0u64..30).prop_map(|n| n.to_string().into_bytes()),
        ];
        prop_oneof![
            (k.clone(), v.clone(), 0u32..3).prop_map(|(k, v, f)| Op::Set(k, v, f)),
            (k.clone(), v.clone()).prop_map(|(k, v)| Op::Add(k, v)),
            (k.clone(), v.clone()).prop_map(|(k, v)| Op::Replace(k, v)),
            (k.clone(), v.clone()).prop_map(|(k, v)| Op::Append(k, v)),
            (k.clone(), v.clone()).prop_map(|(k, v)| Op::Prepend(k, v)),
            (k.clone(), v, 0u64..8).prop_map(|(k, v, c)| Op::Cas(k, v, c)),
            k.clone().prop_map(Op::Get),
            k.clone().prop_map(Op::Delete),
            (k.clone(), 0u64..5).prop_map(|(k, d)| Op::Incr(k, d)),
            (k.clone(), 0u64..5).prop_map(|(k, d)| Op::Decr(k, d)),
            (k, prop_oneof![Just(0i64), Just(-1), Just(100)]).prop_map(|(k, t)| Op::Touch(k, t)),
        ]
    }

    proptest! {
        /// The meta form of each classic command has the same outcome, including versions, and leaves the same
        /// data (checked with `gets` on both stores at the end).
        #[test]
        fn meta_commands_agree_with_classic_commands(ops in proptest::collection::vec(op(), 1..40)) {
            let (c, m) = (store(), store());
            for op in &ops {
                let classic_reply = run_with(&c, &classic(op), NOW).0;
                let meta_reply = run_with(&m, &meta(op), NOW).0;
                prop_assert_eq!(
                    seen_classic(op, &classic_reply),
                    seen_meta(op, &meta_reply),
                    "{:?}: classic {:?} meta {:?}", op, classic_reply, meta_reply
                );
            }
            for k in 0..3 {
                let get = format!("gets {}\r\n", key(k));
                prop_assert_eq!(run(&c, &get), run(&m, &get));
            }
        }
    }
}
