//! Local execution of one request on a node: [`Command`] → store operation → [`Reply`].
//!
//! This is the "Local" arm of a node's request path (ARCHITECTURE.md). Data commands run here against a
//! [`Store`]; commands that need process state, streams or timers (stats, dumps, delayed flush, kill, node sync,
//! shutdown) are handed back to the driver as [`Outcome::Driver`]. Counters for `stats` are accumulated in a
//! per-connection [`Tally`] that the driver merges into its shared counters.
//!
//! Every write that changed the store reports what it changed as [`Mutation`]s: the *result* of the write (the full
//! item with its version, the tombstone, the new exptime), which is what replication sends to slaves (cluster.md
//! §8.1), so that every replica ends with the same bytes and versions.

use bytes::Bytes;

use crate::item::{Item, Tombstone};
use crate::protocol::{ArithOp, Command, ErrorReply, Reply, StoreMode, ValueItem};
use crate::storage::{Storage, StorageError};
use crate::store::{self, ArithOutcome, DeleteOutcome, StoreOutcome, TouchOutcome};

pub mod meta;

/// A change a write made to one key, as replication carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The key now holds this item (set, add, replace, append, prepend, cas, incr, decr, meta writes).
    Put {
        /// The key.
        key: Bytes,
        /// The whole item, with its version and absolute exptime.
        item: Item,
    },
    /// The key was deleted.
    Delete {
        /// The key.
        key: Bytes,
        /// The tombstone left behind (its version and hold time).
        tombstone: Tombstone,
    },
    /// The key's exptime changed (touch, gat); the version is unchanged.
    Touch {
        /// The key.
        key: Bytes,
        /// The new absolute exptime.
        exptime: u64,
    },
    /// `flush_all`: every item goes, at once (`at` = `None`) or at the absolute time `at`.
    Flush {
        /// When, in Unix seconds; `None` = done already.
        at: Option<u64>,
    },
}

impl Mutation {
    /// The key changed; `None` for a change of the whole store (`flush_all`).
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Mutation::Put { key, .. }
            | Mutation::Delete { key, .. }
            | Mutation::Touch { key, .. } => Some(key),
            Mutation::Flush { .. } => None,
        }
    }
}

/// What the driver must do with a request after [`execute`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// Send this reply; replicate `mutations` (empty for reads and refused writes).
    Reply {
        /// The reply.
        reply: Reply,
        /// What the request changed.
        mutations: Vec<Mutation>,
    },
    /// The command needs the driver (stats, dump, delayed flush, kill, node sync, show variables, shutdown, keys).
    Driver(Command),
    /// Close the connection without a reply (`quit`).
    Close,
}

/// Per-connection counters behind the `stats` fields of stats.md §1. Plain integers: the driver merges them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Keys asked for by get/gets/gat.
    pub cmd_get: u64,
    /// Storage commands, cas, touch and gat run.
    pub cmd_set: u64,
    /// Keys found.
    pub get_hits: u64,
    /// Keys not found.
    pub get_misses: u64,
    /// Writes that ended `STORED`.
    pub total_items: u64,
    /// Deletes that answered `DELETED`.
    pub delete_hits: u64,
    /// Deletes that answered `NOT_FOUND`.
    pub delete_misses: u64,
    /// incr on an existing key.
    pub incr_hits: u64,
    /// incr on a missing key.
    pub incr_misses: u64,
    /// decr on an existing key.
    pub decr_hits: u64,
    /// decr on a missing key.
    pub decr_misses: u64,
    /// Successful cas.
    pub cas_hits: u64,
    /// cas on a missing key.
    pub cas_misses: u64,
    /// cas with a version mismatch.
    pub cas_badval: u64,
    /// Successful touch.
    pub touch_hits: u64,
    /// touch on a missing key.
    pub touch_misses: u64,
    /// Meta commands run.
    pub meta_cmds: u64,
    /// Storage errors.
    pub storage_errors: u64,
}

/// The reply to a storage failure (protocol.md §4.4). The driver also flags the node unhealthy.
pub fn storage_error_reply(_e: &StorageError) -> Reply {
    Reply::Error(ErrorReply::Server("i/o error".into()))
}

/// Runs `command` locally at time `now` (Unix seconds).
pub fn execute<S: Storage>(
    store: &store::Store<S>,
    command: Command,
    now: u64,
    tally: &mut Tally,
) -> Outcome {
    let mut mutations = Vec::new();
    // incr/decr change a number in place, and `mg` keeps its item (a win, a new TTL) or records the one it
    // creates itself: the item keeps its access data (crate::access).
    use crate::protocol::meta::MetaKind;
    let arith = match &command {
        Command::Arith { .. } => true,
        Command::Meta(m) => m.kind == MetaKind::Arith,
        _ => false,
    };
    let in_place = arith || matches!(&command, Command::Meta(m) if m.kind == MetaKind::Get);
    let step = apply(store, command, now, tally, &mut mutations).unwrap_or_else(|e| {
        tally.storage_errors += 1;
        tracing::error!(error = %e, "storage failure");
        // Whatever was applied before the failure (an earlier key of a gat) is still replicated.
        Step::Reply(storage_error_reply(&e))
    });
    for m in &mutations {
        match m {
            Mutation::Put { key, .. } if !in_place => store.access().stored(key, now),
            Mutation::Put { key, .. } if arith => store.access().changed(key, now),
            Mutation::Put { .. } => {}
            Mutation::Delete { key, .. } => store.access().forget(key),
            // touch, gat, mg T: a read that hits, for memcached.
            Mutation::Touch { key, .. } => {
                store.access().fetch(key, now);
            }
            Mutation::Flush { .. } => {}
        }
    }
    match step {
        Step::Reply(reply) => Outcome::Reply { reply, mutations },
        Step::Driver(command) => Outcome::Driver(command),
        Step::Close => Outcome::Close,
    }
}

/// What [`apply`] made of a command.
enum Step {
    Reply(Reply),
    Driver(Command),
    Close,
}

fn apply<S: Storage>(
    store: &store::Store<S>,
    command: Command,
    now: u64,
    tally: &mut Tally,
    mutations: &mut Vec<Mutation>,
) -> Result<Step, StorageError> {
    let reply = match command {
        Command::Get { keys, cas } => {
            let mut items = Vec::with_capacity(keys.len());
            for key in keys {
                tally.cmd_get += 1;
                match store.get(&key, now)? {
                    Some(item) => {
                        tally.get_hits += 1;
                        store.access().fetch(&key, now);
                        items.push(value_item(key, item));
                    }
                    None => tally.get_misses += 1,
                }
            }
            Reply::Values {
                items,
                cas,
                end: true,
            }
        }
        Command::Gat {
            exptime,
            keys,
            cas,
            flare_form,
            noreply,
        } => {
            let mut items = Vec::with_capacity(keys.len());
            for key in keys {
                tally.cmd_get += 1;
                tally.cmd_set += 1;
                match store.touch(&key, exptime, now)? {
                    store::TouchOutcome::Touched(item) => {
                        tally.get_hits += 1;
                        mutations.push(Mutation::Touch {
                            key: key.clone(),
                            exptime: item.exptime,
                        });
                        items.push(value_item(key, item));
                    }
                    store::TouchOutcome::NotFound => tally.get_misses += 1,
                }
            }
            if flare_form {
                // Flare's gat: one VALUE without END, or NOT_FOUND (protocol.md §4.6).
                match (noreply, items.is_empty()) {
                    (true, _) => Reply::Nothing,
                    (false, true) => Reply::NotFound,
                    (false, false) => Reply::Values {
                        items,
                        cas,
                        end: false,
                    },
                }
            } else {
                Reply::Values {
                    items,
                    cas,
                    end: true,
                }
            }
        }
        Command::Store(req) => {
            tally.cmd_set += 1;
            let noreply = req.options.noreply;
            let cas = req.mode == StoreMode::Cas;
            let reply = match store.store(&req, now)? {
                StoreOutcome::Stored(item) => {
                    tally.total_items += 1;
                    if cas {
                        tally.cas_hits += 1;
                    }
                    let version = item.version;
                    mutations.push(Mutation::Put {
                        key: req.key.clone(),
                        item,
                    });
                    Reply::Stored { version }
                }
                StoreOutcome::NotStored => Reply::NotStored,
                StoreOutcome::Exists => {
                    tally.cas_badval += 1;
                    Reply::Exists
                }
                StoreOutcome::NotFound => {
                    tally.cas_misses += 1;
                    Reply::NotFound
                }
                StoreOutcome::TooLarge => Reply::Error(ErrorReply::TooLarge),
            };
            quiet(noreply, reply)
        }
        Command::Delete {
            key,
            hold,
            version,
            cas,
            options,
        } => {
            let reply = match store.delete(&key, hold, version, cas, now)? {
                DeleteOutcome::Exists => Reply::Exists,
                DeleteOutcome::Deleted(tombstone) => {
                    tally.delete_hits += 1;
                    mutations.push(Mutation::Delete { key, tombstone });
                    Reply::Deleted
                }
                DeleteOutcome::NotFound => {
                    tally.delete_misses += 1;
                    Reply::NotFound
                }
            };
            quiet(options.noreply, reply)
        }
        Command::Arith {
            op,
            key,
            delta,
            create,
            cas,
            options,
        } => {
            let outcome = store.arith(&key, op, delta, create, cas, now)?;
            let (hits, misses) = match op {
                ArithOp::Incr => (&mut tally.incr_hits, &mut tally.incr_misses),
                ArithOp::Decr => (&mut tally.decr_hits, &mut tally.decr_misses),
            };
            let reply = match outcome {
                ArithOutcome::Value { value, item } => {
                    *hits += 1;
                    let version = item.version;
                    mutations.push(Mutation::Put { key, item });
                    Reply::Number { value, version }
                }
                ArithOutcome::NotFound => {
                    *misses += 1;
                    Reply::NotFound
                }
                ArithOutcome::NonNumeric => Reply::Error(ErrorReply::NonNumeric),
                ArithOutcome::Exists => Reply::Exists,
            };
            quiet(options.noreply, reply)
        }
        Command::Touch {
            key,
            exptime,
            noreply,
        } => {
            tally.cmd_set += 1;
            let reply = match store.touch(&key, exptime, now)? {
                TouchOutcome::Touched(item) => {
                    tally.touch_hits += 1;
                    mutations.push(Mutation::Touch {
                        key,
                        exptime: item.exptime,
                    });
                    Reply::Touched {
                        flags: item.flags,
                        version: item.version,
                    }
                }
                TouchOutcome::NotFound => {
                    tally.touch_misses += 1;
                    Reply::NotFound
                }
            };
            quiet(noreply, reply)
        }
        Command::FlushAll { delay, noreply } => {
            store.schedule_flush(delay, now)?;
            mutations.push(Mutation::Flush {
                at: store::flush_deadline(delay, now),
            });
            quiet(noreply, Reply::Ok)
        }
        Command::Verbosity { noreply } => quiet(noreply, Reply::Ok),
        Command::Noop => Reply::Ok,
        Command::Meta(m) => {
            tally.meta_cmds += 1;
            meta::execute(store, m, now, tally, mutations)?
        }
        Command::Quit => return Ok(Step::Close),
        Command::CacheDump { class, limit } => cachedump(store, class, limit, now)?,
        other => return Ok(Step::Driver(other)),
    };
    Ok(Step::Reply(reply))
}

/// Most bytes of a `stats cachedump` reply, as memcached caps it.
pub const CACHEDUMP_MAX_BYTES: usize = 2 * 1024 * 1024;

/// `stats cachedump <class> <limit>`: memcached's `ITEM <key> [<bytes> b; <exptime> s]` lines then `END`. Every item
/// is in class 1 (there are no slab classes here); the other classes are empty. Live items in key order, at most
/// `limit` (0 = no count limit) and at most [`CACHEDUMP_MAX_BYTES`], read a page at a time.
fn cachedump<S: Storage>(
    store: &store::Store<S>,
    class: u8,
    limit: u32,
    now: u64,
) -> Result<Reply, StorageError> {
    use std::io::Write;
    const PAGE: usize = 1024;
    let mut out = Vec::new();
    let mut listed = 0u64;
    let most = if limit == 0 {
        u64::MAX
    } else {
        u64::from(limit)
    };
    let mut after: Option<Bytes> = None;
    'pages: while class == 1 && listed < most {
        let page = store.storage().scan(after.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (key, entry) in &page {
            let Some(item) = store::alive(Some(entry), now) else {
                continue;
            };
            let start = out.len();
            out.extend_from_slice(b"ITEM ");
            out.extend_from_slice(key);
            let _ = write!(out, " [{} b; {} s]\r\n", item.value.len(), item.exptime);
            // memcached stops before a line that would take the reply (with its END) past the cap.
            if out.len() + 5 > CACHEDUMP_MAX_BYTES {
                out.truncate(start);
                break 'pages;
            }
            listed += 1;
            if listed == most {
                break 'pages;
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    out.extend_from_slice(crate::protocol::lines::END_LINE);
    Ok(Reply::Raw(Bytes::from(out)))
}

fn quiet(noreply: bool, reply: Reply) -> Reply {
    // noreply suppresses every reply, errors included, as in memcached.
    if noreply {
        Reply::Nothing
    } else {
        reply
    }
}

fn value_item(key: Bytes, item: Item) -> ValueItem {
    ValueItem {
        key,
        flags: item.flags,
        version: item.version,
        value: item.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{StoreRequest, WriteOptions};
    use crate::storage::MemoryStorage;
    use crate::store::{Store, StoreConfig};

    const NOW: u64 = 1_800_000_000;

    fn dump(store: &Store<MemoryStorage>, class: u8, limit: u32) -> String {
        match cachedump(store, class, limit, NOW).unwrap() {
            Reply::Raw(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cachedump_lists_live_items_in_class_one_within_the_limits() {
        let store = Store::new(MemoryStorage::new(), StoreConfig::default());
        let set = |k: &str, exptime: i64| StoreRequest {
            mode: StoreMode::Set,
            key: Bytes::copy_from_slice(k.as_bytes()),
            flags: 0,
            exptime,
            value: Bytes::from_static(b"abc"),
            cas_unique: 0,
            version: None,
            options: WriteOptions::default(),
        };
        for (k, e) in [("a", 0), ("b", 100), ("c", -1), ("d", 0)] {
            store.store(&set(k, e), NOW).unwrap();
        }
        store.delete(b"d", 0, None, None, NOW).unwrap();
        let b_exp = NOW + 100;
        assert_eq!(
            dump(&store, 1, 0),
            format!("ITEM a [3 b; 0 s]\r\nITEM b [3 b; {b_exp} s]\r\nEND\r\n")
        );
        assert_eq!(dump(&store, 1, 1), "ITEM a [3 b; 0 s]\r\nEND\r\n");
        assert_eq!(dump(&store, 2, 0), "END\r\n");
        // The 2 MB cap holds however many keys there are.
        for i in 0..40_000 {
            store.store(&set(&format!("{i:0>60}"), 0), NOW).unwrap();
        }
        let big = dump(&store, 1, 0);
        assert!(big.len() <= CACHEDUMP_MAX_BYTES && big.len() > CACHEDUMP_MAX_BYTES - 100);
        assert!(big.ends_with("]\r\nEND\r\n"));
    }
}
