//! Command semantics over a [`Storage`]: what `set`, `add`, `cas`, `append`, `incr`, `delete`, `touch`, expiry and
//! `flush_all` do to one key (protocol.md §3, §4), with the time `now` (Unix seconds) passed in.
//!
//! Rules kept here, and nowhere else:
//! - **Versions** (§4.3): every write that changes a value or deletes a key takes a new version from the node-wide
//!   [`VersionClock`] (memcached's CAS unique: unique across the node's keys, and growing across deletes, restarts
//!   and failovers). A write carrying an explicit version (replication, dumps, meta `E`) is stored with exactly that
//!   version, and refused with `NOT_STORED` when the key already holds that version or a newer one; the clock
//!   witnesses it, so this node's own later writes are above it.
//! - **Expiry** (§3): client exptimes are converted to absolute time on arrival ([`abs_exptime`]). Reads treat an
//!   expired item as missing but never write; the sweeper ([`Store::sweep`]) turns expired items into tombstones and
//!   drops tombstones whose time has passed.
//! - **Delete hold** (§4.4): after `delete <key> <time>`, `add` and `replace` are refused until the time passes.
//! - **flush_all** (§4.10): immediate, or at a deadline ([`Store::schedule_flush`]); every operation first checks
//!   whether a scheduled flush is due, so no timer is needed for correctness.
//!
//! Each write returns the resulting item or tombstone, which is what replication sends to slaves (cluster.md §8.1).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::versions::VersionClock;

use bytes::{Bytes, BytesMut};

use crate::access::AccessTable;
use crate::item::{Entry, Item, Tombstone};
use crate::protocol::{ArithOp, StoreMode, StoreRequest};
use crate::storage::{Change, Storage, StorageError};

/// Client exptimes up to this many seconds are relative to now; larger ones are absolute Unix times (§3).
pub const RELATIVE_EXPTIME_MAX: i64 = 2_592_000;

/// Knobs of the command semantics (from the node configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// How long a delete tombstone is kept, in seconds (`tombstone-ttl`).
    pub tombstone_ttl: u64,
    /// Flare's incr/decr: leading digits only (none = 0), incr saturates at 2^64-1 (`incr-flare-semantics`).
    pub incr_flare_semantics: bool,
    /// A binary Increment/Decrement miss creates the item with its initial value, as memcached does.
    pub binary_incr_create: bool,
    /// Largest value an append, prepend or incr may produce (`max-item-size`).
    pub item_size_max: u32,
}

impl StoreConfig {
    /// The knobs of the node configured by `c` (one mapping for `flared` and the simulators).
    pub fn from_config(c: &crate::config::NodeConfig) -> StoreConfig {
        StoreConfig {
            tombstone_ttl: c.tombstone_ttl.as_secs(),
            incr_flare_semantics: c.incr_flare_semantics,
            binary_incr_create: c.binary_incr_create,
            item_size_max: c.max_item_size,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            tombstone_ttl: 3600,
            incr_flare_semantics: false,
            binary_incr_create: true,
            item_size_max: 64 * 1024 * 1024,
        }
    }
}

/// Result of a storage command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// `STORED`: the item as it now is.
    Stored(Item),
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`: cas mismatch.
    Exists,
    /// `NOT_FOUND`: cas on a missing key.
    NotFound,
    /// The result would exceed `max-item-size` (append/prepend).
    TooLarge,
}

/// Result of a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// `DELETED`: the tombstone now in place.
    Deleted(Tombstone),
    /// `NOT_FOUND`.
    NotFound,
    /// `EXISTS`: a compare-and-delete whose cas did not match.
    Exists,
}

/// Result of incr/decr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new number and the item now stored.
    Value {
        /// The new value.
        value: u64,
        /// The stored item.
        item: Item,
    },
    /// `NOT_FOUND`.
    NotFound,
    /// The stored value is not a decimal number.
    NonNumeric,
    /// The binary protocol's CAS did not match.
    Exists,
}

/// Result of touch (and of one gat key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TouchOutcome {
    /// `TOUCHED`: the item with its new exptime.
    Touched(Item),
    /// `NOT_FOUND`.
    NotFound,
}

/// What one sweeper step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepProgress {
    /// Where the next step starts; `None` when the whole store was walked.
    pub next: Option<Bytes>,
    /// Expired items turned into tombstones.
    pub expired: u64,
    /// Tombstones dropped because their time passed.
    pub tombstones_dropped: u64,
}

/// The command semantics of one node over its storage engine. Shared by every connection (`&self` everywhere; the
/// engine makes each [`Storage::update`] atomic per key).
#[derive(Debug)]
pub struct Store<S> {
    storage: S,
    config: StoreConfig,
    /// Absolute time of a scheduled `flush_all`, 0 = none.
    flush_at: AtomicU64,
    /// Where every new version comes from.
    versions: VersionClock,
    /// What meta `h`/`l` report (memory only; kept up to date by [`crate::exec`]).
    access: AccessTable,
}

/// The absolute expiry of a client exptime received at `now` (§3): 0 = never, negative = already expired, up to 30
/// days relative, otherwise absolute.
pub fn abs_exptime(exptime: i64, now: u64) -> u64 {
    match exptime {
        0 => 0,
        // Expired as of now, as an absolute time: replication and dumps carry it as such, so a slave cannot read it
        // as a relative exptime (which a small number like 1 would be).
        e if e < 0 => now.max(RELATIVE_EXPTIME_MAX as u64 + 1),
        e if e <= RELATIVE_EXPTIME_MAX => now.saturating_add(e as u64),
        e => e as u64,
    }
}

/// The live item of an entry at `now`, if any.
pub fn alive(entry: Option<&Entry>, now: u64) -> Option<&Item> {
    match entry {
        Some(Entry::Item(i)) if !i.is_expired(now) => Some(i),
        _ => None,
    }
}

/// The last version a key held, whatever the entry (live, expired or tombstone); 0 for a key with no history.
pub fn last_version(entry: Option<&Entry>) -> u64 {
    entry.map_or(0, Entry::version)
}

/// The highest version any record of `storage` holds (a one-time scan for an engine with no version mark).
fn highest_version<S: Storage>(storage: &S) -> Result<u64, StorageError> {
    let mut highest = 0;
    let mut after: Option<Bytes> = None;
    loop {
        let page = storage.scan(after.as_deref(), 4096)?;
        let Some((last, _)) = page.last() else {
            return Ok(highest);
        };
        after = Some(last.clone());
        highest = page
            .iter()
            .map(|(_, e)| e.version())
            .fold(highest, u64::max);
    }
}

impl<S: Storage> Store<S> {
    /// Semantics over `storage`, resuming its version clock at the persisted mark. An engine written before the
    /// clock existed has no mark: its records are scanned once for the highest version.
    pub fn open(storage: S, config: StoreConfig) -> Result<Self, StorageError> {
        let mark = match storage.version_mark()? {
            Some(m) => m,
            None => highest_version(&storage)?,
        };
        Ok(Store {
            storage,
            config,
            flush_at: AtomicU64::new(0),
            versions: VersionClock::resume(mark),
            access: AccessTable::default(),
        })
    }

    /// [`Store::open`] over an engine that cannot fail to read (the in-memory one, in tests and the simulator).
    pub fn new(storage: S, config: StoreConfig) -> Self {
        Self::open(storage, config)
            .expect("invariant: reading the version mark of this engine cannot fail")
    }

    /// The node-wide version clock.
    pub fn versions(&self) -> &VersionClock {
        &self.versions
    }

    /// Makes room on the clock for the next version this store issues (persisting a new mark if needed). Called
    /// before each write that issues one.
    pub fn reserve_version(&self) -> Result<(), StorageError> {
        self.versions.reserve(|m| self.storage.save_version_mark(m))
    }

    /// Records a version that came from elsewhere (replication, dumps, meta `E`): this node's later versions are
    /// above it. Called before the write that stores it.
    pub fn witness_version(&self, version: u64) -> Result<(), StorageError> {
        self.versions
            .cover(version, |m| self.storage.save_version_mark(m))?;
        self.versions.witness(version);
        Ok(())
    }

    /// The access data of the items (meta `h`, `l`; `me`).
    pub fn access(&self) -> &AccessTable {
        &self.access
    }

    /// Raises (never lowers) the lowest version this store gives a new write. A cluster node raises it to
    /// [`crate::versions::epoch_floor`] of each node map's version: a master promoted in map V then versions every
    /// write above anything its deposed predecessor (master in a map older than V) gave, so a slave that got some of
    /// the old master's writes the new one never had still takes the new master's writes of those keys (a slave
    /// skips a replicated write whose version is not above its own), instead of keeping the stale item, and the
    /// refusal being counted as replicated.
    pub fn raise_version_floor(&self, floor: u64) -> Result<(), StorageError> {
        match floor {
            0 => Ok(()),
            f => self.witness_version(f - 1),
        }
    }

    /// The engine.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the engine back (to close it).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Reads a live item.
    pub fn get(&self, key: &[u8], now: u64) -> Result<Option<Item>, StorageError> {
        self.maybe_flush(now)?;
        Ok(match self.storage.get(key)? {
            Some(Entry::Item(i)) if !i.is_expired(now) => Some(i),
            _ => None,
        })
    }

    /// `set`, `add`, `replace`, `append`, `prepend`, `cas` (§4.4), with Flare's explicit version (§4.3).
    pub fn store(&self, req: &StoreRequest, now: u64) -> Result<StoreOutcome, StorageError> {
        self.maybe_flush(now)?;
        let size_max = self.config.item_size_max as usize;
        match req.version {
            Some(v) => self.witness_version(v)?,
            None => self.reserve_version()?,
        }
        self.storage.update(&req.key, |cur| {
            let outcome = decide_store(req, cur.as_ref(), now, size_max, |last| {
                self.versions.issue(last)
            });
            match outcome {
                StoreOutcome::Stored(ref item) => (Change::Put(Entry::Item(item.clone())), outcome),
                _ => (Change::Keep, outcome),
            }
        })
    }

    /// `delete <key> [<time>]` (§4.7). `version`: a replicated delete, skipped when the key holds a newer version.
    /// `cas`: a compare-and-delete (binary Delete with CAS, meta `md C`).
    pub fn delete(
        &self,
        key: &[u8],
        hold: i64,
        version: Option<u64>,
        cas: Option<u64>,
        now: u64,
    ) -> Result<DeleteOutcome, StorageError> {
        self.maybe_flush(now)?;
        let ttl = self.config.tombstone_ttl;
        if let Some(v) = version {
            self.witness_version(v)?;
        }
        self.storage.update(key, |cur| {
            let last = last_version(cur.as_ref());
            if version.is_some_and(|v| last > v) {
                return (Change::Keep, DeleteOutcome::NotFound);
            }
            let live = alive(cur.as_ref(), now);
            if let (Some(c), Some(item)) = (cas, live) {
                if item.version != c {
                    return (Change::Keep, DeleteOutcome::Exists);
                }
            }
            let hold_until = if hold == 0 { 0 } else { abs_exptime(hold, now) };
            // A tombstone issues no version (memcached's delete uses no CAS unique); it keeps the clock's current
            // one, at or above the key's and the map's floor, so a slave holding a deposed master's newer write of
            // the key still takes it. A replicated delete keeps the master's.
            let tombstone = || Tombstone {
                version: match version {
                    Some(v) => v.max(last),
                    None => last.max(self.versions.last()),
                },
                hold_until,
                expires_at: now.saturating_add(ttl).max(hold_until),
            };
            match (live, cur.as_ref()) {
                (Some(_), _) => {
                    let t = tombstone();
                    (Change::Put(Entry::Tombstone(t)), DeleteOutcome::Deleted(t))
                }
                // An expired item is removed all the same (its version stays in the tombstone); a replicated delete
                // leaves a tombstone even for a key this node never had, so an older dump item cannot bring it back.
                (None, Some(Entry::Item(_))) => (
                    Change::Put(Entry::Tombstone(tombstone())),
                    DeleteOutcome::NotFound,
                ),
                (None, _) if version.is_some() => (
                    Change::Put(Entry::Tombstone(tombstone())),
                    DeleteOutcome::NotFound,
                ),
                (None, _) => (Change::Keep, DeleteOutcome::NotFound),
            }
        })
    }

    /// `incr`/`decr` (§4.8, decisions.md #3). `create`: the binary protocol's (initial, exptime) for a miss.
    pub fn arith(
        &self,
        key: &[u8],
        op: ArithOp,
        delta: u64,
        create: Option<(u64, i64)>,
        cas: Option<u64>,
        now: u64,
    ) -> Result<ArithOutcome, StorageError> {
        self.maybe_flush(now)?;
        let config = self.config;
        self.reserve_version()?;
        self.storage.update(key, |cur| {
            let last = last_version(cur.as_ref());
            let Some(item) = alive(cur.as_ref(), now) else {
                return match create {
                    Some((initial, exptime)) if config.binary_incr_create => {
                        let item = Item {
                            flags: 0,
                            exptime: abs_exptime(exptime, now),
                            version: self.versions.issue(last),
                            value: Bytes::from(initial.to_string()),
                            meta: 0,
                        };
                        let out = ArithOutcome::Value {
                            value: initial,
                            item: item.clone(),
                        };
                        (Change::Put(Entry::Item(item)), out)
                    }
                    _ => (Change::Keep, ArithOutcome::NotFound),
                };
            };
            // The binary protocol's CAS, in memcached's do_add_delta order: an empty value is not a number, then a
            // non-zero CAS is compared, then the number is read.
            if cas.is_some_and(|c| c != 0 && c != item.version) && !item.value.is_empty() {
                return (Change::Keep, ArithOutcome::Exists);
            }
            let Some((value, bytes)) = arith_value(&item.value, op, delta, &config) else {
                return (Change::Keep, ArithOutcome::NonNumeric);
            };
            // memcached rewrites the number in place: the item keeps its meta state (stale, win sent).
            let item = Item {
                flags: item.flags,
                exptime: item.exptime,
                version: self.versions.issue(last),
                value: bytes,
                meta: item.meta,
            };
            let out = ArithOutcome::Value {
                value,
                item: item.clone(),
            };
            (Change::Put(Entry::Item(item)), out)
        })
    }

    /// `touch <key> <exptime>` (§4.9): a new exptime, the version kept. `gat` uses it for each key.
    pub fn touch(&self, key: &[u8], exptime: i64, now: u64) -> Result<TouchOutcome, StorageError> {
        self.touch_abs(key, abs_exptime(exptime, now), now)
    }

    /// Touch with an absolute exptime (replicated touches carry the master's absolute time).
    pub fn touch_abs(
        &self,
        key: &[u8],
        exptime: u64,
        now: u64,
    ) -> Result<TouchOutcome, StorageError> {
        self.maybe_flush(now)?;
        self.storage
            .update(key, |cur| match alive(cur.as_ref(), now) {
                Some(item) => {
                    let item = Item {
                        exptime,
                        ..item.clone()
                    };
                    (
                        Change::Put(Entry::Item(item.clone())),
                        TouchOutcome::Touched(item),
                    )
                }
                None => (Change::Keep, TouchOutcome::NotFound),
            })
    }

    /// Applies one item of a dump (reconstruction): stored only when newer than whatever the key holds, tombstones
    /// included (cluster.md §8.4). Returns whether it was stored.
    pub fn load_dump_item(&self, key: &[u8], item: Item, now: u64) -> Result<bool, StorageError> {
        self.maybe_flush(now)?;
        self.witness_version(item.version)?;
        // Unlogged: a reconstruction interrupted by a crash starts again from an empty store, and the node makes the
        // load durable (`Storage::persist_unlogged`) before it reports the copy done.
        let loaded = self.storage.update_unlogged(key, |cur| {
            if last_version(cur.as_ref()) >= item.version {
                (Change::Keep, false)
            } else {
                (Change::Put(Entry::Item(item)), true)
            }
        })?;
        if loaded {
            self.access.stored(key, now);
        }
        Ok(loaded)
    }

    /// `flush_all` now: every record goes, tombstones included (the node is usually about to be rebuilt).
    pub fn flush_all(&self) -> Result<(), StorageError> {
        self.flush_at.store(0, Ordering::Relaxed);
        self.storage.clear()
    }

    /// `flush_all <delay>`: flush now when the deadline is not in the future, otherwise at the deadline. A later
    /// call replaces an earlier pending one, as memcached keeps a single flush time.
    pub fn schedule_flush(&self, delay: i64, now: u64) -> Result<(), StorageError> {
        match flush_deadline(delay, now) {
            None => {
                // memcached's immediate flush takes a CAS unique (its `oldest_cas`); a delayed one does not.
                self.reserve_version()?;
                self.versions.issue(0);
                self.flush_all()
            }
            Some(at) => {
                self.flush_at.store(at, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Runs a scheduled flush when its time has come. Called by every operation and by the driver's clock tick.
    pub fn maybe_flush(&self, now: u64) -> Result<(), StorageError> {
        let at = self.flush_at.load(Ordering::Relaxed);
        if at != 0
            && now >= at
            && self
                .flush_at
                .compare_exchange(at, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.storage.clear()?;
        }
        Ok(())
    }

    /// One step of the background sweeper: walks up to `max` records after `after`, turning expired items into
    /// tombstones (their version is kept) and dropping tombstones whose time has passed.
    pub fn sweep(
        &self,
        after: Option<&[u8]>,
        max: usize,
        now: u64,
    ) -> Result<SweepProgress, StorageError> {
        self.maybe_flush(now)?;
        let batch = self.storage.scan(after, max)?;
        let mut progress = SweepProgress {
            next: if batch.len() == max {
                batch.last().map(|(k, _)| k.clone())
            } else {
                None
            },
            ..Default::default()
        };
        let ttl = self.config.tombstone_ttl;
        for (key, entry) in batch {
            let stale = match &entry {
                Entry::Item(i) => i.is_expired(now),
                Entry::Tombstone(t) => t.expires_at <= now && t.hold_until <= now,
            };
            if !stale {
                continue;
            }
            // Re-check under the key's lock: a write may have come in since the scan.
            let (expired, dropped) = self.storage.update(&key, |cur| match cur {
                Some(Entry::Item(i)) if i.is_expired(now) => {
                    let t = Tombstone {
                        version: i.version,
                        hold_until: 0,
                        expires_at: now.saturating_add(ttl),
                    };
                    (Change::Put(Entry::Tombstone(t)), (1, 0))
                }
                Some(Entry::Tombstone(t)) if t.expires_at <= now && t.hold_until <= now => {
                    (Change::Remove, (0, 1))
                }
                _ => (Change::Keep, (0, 0)),
            })?;
            progress.expired += expired;
            progress.tombstones_dropped += dropped;
        }
        Ok(progress)
    }
}

/// The absolute time of a delayed `flush_all`, or `None` when it must happen now.
pub fn flush_deadline(delay: i64, now: u64) -> Option<u64> {
    if delay <= 0 {
        return None;
    }
    let at = abs_exptime(delay, now);
    (at > now).then_some(at)
}

/// The new number and stored bytes of `incr`/`decr` by `delta` on a stored `value` (§4.8, decisions.md #3, or
/// Flare's semantics when configured); `None` when the value is not a number. Shared with meta `ma`.
pub(crate) fn arith_value(
    value: &[u8],
    op: ArithOp,
    delta: u64,
    config: &StoreConfig,
) -> Option<(u64, Bytes)> {
    let current = if config.incr_flare_semantics {
        leading_number(value)
    } else {
        parse_number(value)?
    };
    let new = match (op, config.incr_flare_semantics) {
        (ArithOp::Incr, false) => current.wrapping_add(delta),
        (ArithOp::Incr, true) => current.saturating_add(delta),
        (ArithOp::Decr, _) => current.saturating_sub(delta),
    };
    Some((new, number_value(new, value.len())))
}

/// The decision of a storage command against what the key holds now. Shared with meta `ms`, which maps its modes
/// onto these commands. `issue` gives a stored item without an explicit version its version, from the key's last.
pub(crate) fn decide_store(
    req: &StoreRequest,
    cur: Option<&Entry>,
    now: u64,
    size_max: usize,
    issue: impl FnOnce(u64) -> u64,
) -> StoreOutcome {
    let live = alive(cur, now);
    let held = matches!(cur, Some(Entry::Tombstone(t)) if t.hold_until > now);
    let last = last_version(cur);
    let fresh = |value: Bytes| Item {
        flags: req.flags,
        exptime: abs_exptime(req.exptime, now),
        version: 0,
        value,
        meta: 0,
    };
    let mut item = match req.mode {
        StoreMode::Set => fresh(req.value.clone()),
        StoreMode::Add if live.is_some() || held => return StoreOutcome::NotStored,
        StoreMode::Add => fresh(req.value.clone()),
        StoreMode::Replace => match live {
            Some(_) => fresh(req.value.clone()),
            None => return StoreOutcome::NotStored,
        },
        StoreMode::Append | StoreMode::Prepend => {
            let Some(old) = live else {
                return StoreOutcome::NotStored;
            };
            // The binary protocol's CAS on append/prepend, as memcached checks it.
            if req.cas_unique != 0 && req.cas_unique != old.version {
                return StoreOutcome::Exists;
            }
            if old.value.len() + req.value.len() > size_max {
                return StoreOutcome::TooLarge;
            }
            let (a, b) = match req.mode {
                StoreMode::Append => (&old.value, &req.value),
                _ => (&req.value, &old.value),
            };
            let mut joined = BytesMut::with_capacity(a.len() + b.len());
            joined.extend_from_slice(a);
            joined.extend_from_slice(b);
            // A new value clears meta-command state (stale, win sent), as memcached's new item does.
            Item {
                value: joined.freeze(),
                meta: 0,
                ..old.clone()
            }
        }
        StoreMode::Cas => match live {
            None => return StoreOutcome::NotFound,
            Some(old) if old.version != req.cas_unique => return StoreOutcome::Exists,
            Some(_) => fresh(req.value.clone()),
        },
    };
    item.version = match req.version {
        Some(v) if v <= last => return StoreOutcome::NotStored,
        Some(v) => v,
        None => issue(last),
    };
    StoreOutcome::Stored(item)
}

/// memcached's reading of a stored number: optional leading spaces, decimal digits, optional trailing whitespace;
/// anything else (or a value over 2^64-1) is not a number.
fn parse_number(value: &[u8]) -> Option<u64> {
    let start = value.iter().position(|&c| c != b' ')?;
    let digits = &value[start..];
    let end = digits
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 || !digits[end..].iter().all(|c| c.is_ascii_whitespace()) {
        return None;
    }
    // Digits only, so the text is ASCII; an overflow is an error, as strtoull's ERANGE is for memcached.
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Flare's reading: the leading decimal digits, none = 0, saturating on overflow.
fn leading_number(value: &[u8]) -> u64 {
    value
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, &c| {
            n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
        })
}

/// The stored bytes of a new incr/decr value. As memcached does when it rewrites the item in place, a shorter
/// number is padded with spaces to the old length (so `decr` of "10" by 1 stores "9 "); a longer one grows.
fn number_value(value: u64, old_len: usize) -> Bytes {
    let mut text = value.to_string().into_bytes();
    if text.len() < old_len {
        text.resize(old_len, b' ');
    }
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::WriteOptions;
    use crate::storage::MemoryStorage;

    const NOW: u64 = 1_800_000_000;

    fn store() -> Store<MemoryStorage> {
        Store::new(MemoryStorage::new(), StoreConfig::default())
    }

    fn req(mode: StoreMode, key: &str, value: &str) -> StoreRequest {
        StoreRequest {
            mode,
            key: Bytes::copy_from_slice(key.as_bytes()),
            flags: 5,
            exptime: 0,
            value: Bytes::copy_from_slice(value.as_bytes()),
            cas_unique: 0,
            version: None,
            options: WriteOptions::default(),
        }
    }

    fn stored(o: StoreOutcome) -> Item {
        match o {
            StoreOutcome::Stored(i) => i,
            other => panic!("expected STORED, got {other:?}"),
        }
    }

    #[test]
    fn versions_start_at_one_and_grow_across_delete() {
        let s = store();
        assert_eq!(
            stored(s.store(&req(StoreMode::Set, "k", "a"), NOW).unwrap()).version,
            1
        );
        assert_eq!(
            stored(s.store(&req(StoreMode::Set, "k", "b"), NOW).unwrap()).version,
            2
        );
        assert!(
            matches!(s.delete(b"k", 0, None, None, NOW).unwrap(), DeleteOutcome::Deleted(t) if t.version == 2)
        );
        assert_eq!(s.get(b"k", NOW).unwrap(), None);
        assert_eq!(
            stored(s.store(&req(StoreMode::Add, "k", "c"), NOW).unwrap()).version,
            3
        );
    }

    #[test]
    fn add_replace_cas_rules() {
        let s = store();
        assert_eq!(
            s.store(&req(StoreMode::Replace, "k", "x"), NOW).unwrap(),
            StoreOutcome::NotStored
        );
        stored(s.store(&req(StoreMode::Add, "k", "x"), NOW).unwrap());
        assert_eq!(
            s.store(&req(StoreMode::Add, "k", "y"), NOW).unwrap(),
            StoreOutcome::NotStored
        );
        stored(s.store(&req(StoreMode::Replace, "k", "y"), NOW).unwrap());
        let mut cas = req(StoreMode::Cas, "k", "z");
        cas.cas_unique = 1;
        assert_eq!(s.store(&cas, NOW).unwrap(), StoreOutcome::Exists);
        cas.cas_unique = 2;
        assert_eq!(stored(s.store(&cas, NOW).unwrap()).version, 3);
        let mut missing = req(StoreMode::Cas, "nope", "z");
        missing.cas_unique = 1;
        assert_eq!(s.store(&missing, NOW).unwrap(), StoreOutcome::NotFound);
    }

    #[test]
    fn append_prepend_keep_flags_and_exptime() {
        let s = store();
        let mut first = req(StoreMode::Set, "k", "mid");
        first.exptime = 100;
        stored(s.store(&first, NOW).unwrap());
        let mut app = req(StoreMode::Append, "k", "-end");
        app.flags = 99;
        app.exptime = 5;
        let item = stored(s.store(&app, NOW).unwrap());
        assert_eq!(
            (item.flags, item.exptime, &item.value[..]),
            (5, NOW + 100, &b"mid-end"[..])
        );
        let item = stored(
            s.store(&req(StoreMode::Prepend, "k", "start-"), NOW)
                .unwrap(),
        );
        assert_eq!(&item.value[..], b"start-mid-end");
        assert_eq!(item.version, 3);
        assert_eq!(
            s.store(&req(StoreMode::Append, "none", "x"), NOW).unwrap(),
            StoreOutcome::NotStored
        );
    }

    #[test]
    fn expiry_relative_absolute_negative() {
        assert_eq!(abs_exptime(0, NOW), 0);
        assert_eq!(abs_exptime(10, NOW), NOW + 10);
        assert_eq!(
            abs_exptime(RELATIVE_EXPTIME_MAX, NOW),
            NOW + RELATIVE_EXPTIME_MAX as u64
        );
        assert_eq!(
            abs_exptime(RELATIVE_EXPTIME_MAX + 1, NOW),
            RELATIVE_EXPTIME_MAX as u64 + 1
        );
        let s = store();
        let mut r = req(StoreMode::Set, "k", "v");
        r.exptime = 10;
        stored(s.store(&r, NOW).unwrap());
        assert!(s.get(b"k", NOW + 9).unwrap().is_some());
        assert!(s.get(b"k", NOW + 10).unwrap().is_none());
        r.exptime = -1;
        stored(s.store(&r, NOW).unwrap());
        assert!(s.get(b"k", NOW).unwrap().is_none());
        // An expired key can be added again, and its version continues.
        assert_eq!(
            stored(s.store(&req(StoreMode::Add, "k", "w"), NOW).unwrap()).version,
            3
        );
    }

    #[test]
    fn explicit_version_rules() {
        let s = store();
        let mut r = req(StoreMode::Set, "k", "v");
        r.version = Some(10);
        assert_eq!(stored(s.store(&r, NOW).unwrap()).version, 10);
        assert_eq!(s.store(&r, NOW).unwrap(), StoreOutcome::NotStored);
        r.version = Some(9);
        assert_eq!(s.store(&r, NOW).unwrap(), StoreOutcome::NotStored);
        r.version = Some(11);
        assert_eq!(stored(s.store(&r, NOW).unwrap()).version, 11);
        // A replicated delete older than the item is skipped; a newer one leaves its version.
        assert_eq!(
            s.delete(b"k", 0, Some(5), None, NOW).unwrap(),
            DeleteOutcome::NotFound
        );
        assert!(s.get(b"k", NOW).unwrap().is_some());
        assert!(
            matches!(s.delete(b"k", 0, Some(12), None, NOW).unwrap(), DeleteOutcome::Deleted(t) if t.version == 12)
        );
        // A dump item older than the tombstone does not bring the key back.
        let old = Item {
            flags: 0,
            exptime: 0,
            version: 11,
            value: Bytes::from_static(b"old"),
            meta: 0,
        };
        assert!(!s.load_dump_item(b"k", old, NOW).unwrap());
        assert!(s.get(b"k", NOW).unwrap().is_none());
    }

    #[test]
    fn version_floor_puts_new_writes_above_it() {
        let s = store();
        assert_eq!(
            stored(s.store(&req(StoreMode::Set, "k", "v"), NOW).unwrap()).version,
            1
        );
        // A slave that holds a newer version of `k` (from a deposed master) than the new master: the master's
        // next write must still be above it.
        let f = crate::versions::epoch_floor;
        s.raise_version_floor(f(7)).unwrap();
        s.raise_version_floor(f(3)).unwrap(); // never lowered
        assert_eq!(
            stored(s.store(&req(StoreMode::Set, "k", "w"), NOW).unwrap()).version,
            f(7)
        );
        assert_eq!(
            stored(s.store(&req(StoreMode::Append, "k", "x"), NOW).unwrap()).version,
            f(7) + 1
        );
        stored(s.store(&req(StoreMode::Set, "n", "5"), NOW).unwrap());
        match s.arith(b"n", ArithOp::Incr, 1, None, None, NOW).unwrap() {
            ArithOutcome::Value { value, item } => assert_eq!((value, item.version), (6, f(7) + 3)),
            other => panic!("incr: {other:?}"),
        }
        s.raise_version_floor(f(9)).unwrap();
        assert!(
            matches!(s.delete(b"k", 0, None, None, NOW).unwrap(), DeleteOutcome::Deleted(t) if t.version == f(9) - 1)
        );
        // Replicated writes keep the version they carry.
        let mut r = req(StoreMode::Set, "r", "v");
        r.version = Some(12);
        assert_eq!(stored(s.store(&r, NOW).unwrap()).version, 12);
    }

    #[test]
    fn versions_are_unique_across_keys_as_memcached_cas_uniques_are() {
        let s = store();
        let a = stored(s.store(&req(StoreMode::Set, "a", "1"), NOW).unwrap()).version;
        let b = stored(s.store(&req(StoreMode::Set, "b", "1"), NOW).unwrap()).version;
        assert_ne!(a, b);
        assert!(b > a);
        // A cas with a's unique does not match b.
        let mut cas = req(StoreMode::Cas, "b", "2");
        cas.cas_unique = a;
        assert_eq!(s.store(&cas, NOW).unwrap(), StoreOutcome::Exists);
    }

    #[test]
    fn versions_grow_across_restarts_and_above_replicated_ones() {
        let engine = std::sync::Arc::new(MemoryStorage::new());
        let first = Store::new(engine.clone(), StoreConfig::default());
        let v1 = stored(first.store(&req(StoreMode::Set, "a", "1"), NOW).unwrap()).version;
        // A replicated write far ahead (a slave being promoted holds it).
        let mut r = req(StoreMode::Set, "r", "v");
        r.version = Some(1_000_000);
        stored(first.store(&r, NOW).unwrap());
        drop(first);
        let again = Store::new(engine.clone(), StoreConfig::default());
        let v2 = stored(again.store(&req(StoreMode::Set, "b", "1"), NOW).unwrap()).version;
        assert!(v2 > v1 && v2 > 1_000_000, "{v1} then {v2}");
        // flush_all keeps the clock (memcached's CAS uniques go on growing after a flush too).
        again.flush_all().unwrap();
        let v3 = stored(again.store(&req(StoreMode::Set, "b", "2"), NOW).unwrap()).version;
        assert!(v3 > v2);
    }

    #[test]
    fn an_engine_without_a_mark_resumes_above_its_records() {
        // Written before the clock existed: records with versions, no mark.
        let engine = MemoryStorage::new();
        engine
            .update(b"old", |_| {
                let item = Item {
                    version: 77,
                    ..Item::default()
                };
                (Change::Put(Entry::Item(item)), ())
            })
            .unwrap();
        let s = Store::new(engine, StoreConfig::default());
        let v = stored(s.store(&req(StoreMode::Set, "new", "1"), NOW).unwrap()).version;
        assert_eq!(v, 78);
    }

    #[test]
    fn delete_hold_blocks_add_and_replace_not_set() {
        let s = store();
        stored(s.store(&req(StoreMode::Set, "k", "v"), NOW).unwrap());
        assert!(matches!(
            s.delete(b"k", 60, None, None, NOW).unwrap(),
            DeleteOutcome::Deleted(_)
        ));
        assert_eq!(
            s.store(&req(StoreMode::Add, "k", "v"), NOW + 1).unwrap(),
            StoreOutcome::NotStored
        );
        assert_eq!(
            s.store(&req(StoreMode::Replace, "k", "v"), NOW + 1)
                .unwrap(),
            StoreOutcome::NotStored
        );
        stored(s.store(&req(StoreMode::Add, "k", "v"), NOW + 60).unwrap());
        assert!(matches!(
            s.delete(b"k", 60, None, None, NOW + 61).unwrap(),
            DeleteOutcome::Deleted(_)
        ));
        stored(s.store(&req(StoreMode::Set, "k", "v"), NOW + 62).unwrap());
    }

    #[test]
    fn incr_decr_memcached_rules() {
        let s = store();
        assert_eq!(
            s.arith(b"n", ArithOp::Incr, 1, None, None, NOW).unwrap(),
            ArithOutcome::NotFound
        );
        stored(s.store(&req(StoreMode::Set, "n", "10"), NOW).unwrap());
        let ArithOutcome::Value { value, item } =
            s.arith(b"n", ArithOp::Decr, 1, None, None, NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (value, &item.value[..], item.version, item.flags),
            (9, &b"9 "[..], 2, 5)
        );
        assert!(matches!(
            s.arith(b"n", ArithOp::Decr, 100, None, None, NOW).unwrap(),
            ArithOutcome::Value { value: 0, .. }
        ));
        stored(
            s.store(&req(StoreMode::Set, "n", &u64::MAX.to_string()), NOW)
                .unwrap(),
        );
        assert!(matches!(
            s.arith(b"n", ArithOp::Incr, 2, None, None, NOW).unwrap(),
            ArithOutcome::Value { value: 1, .. }
        ));
        stored(s.store(&req(StoreMode::Set, "n", "12abc"), NOW).unwrap());
        assert_eq!(
            s.arith(b"n", ArithOp::Incr, 1, None, None, NOW).unwrap(),
            ArithOutcome::NonNumeric
        );
        // The binary protocol creates a missing counter.
        assert!(matches!(
            s.arith(b"c", ArithOp::Incr, 5, Some((42, 0)), None, NOW)
                .unwrap(),
            ArithOutcome::Value { value: 42, .. }
        ));
    }

    #[test]
    fn incr_flare_semantics() {
        let s = Store::new(
            MemoryStorage::new(),
            StoreConfig {
                incr_flare_semantics: true,
                ..StoreConfig::default()
            },
        );
        stored(s.store(&req(StoreMode::Set, "n", "abc"), NOW).unwrap());
        assert!(matches!(
            s.arith(b"n", ArithOp::Incr, 7, None, None, NOW).unwrap(),
            ArithOutcome::Value { value: 7, .. }
        ));
        stored(
            s.store(&req(StoreMode::Set, "n", &u64::MAX.to_string()), NOW)
                .unwrap(),
        );
        assert!(matches!(
            s.arith(b"n", ArithOp::Incr, 2, None, None, NOW).unwrap(),
            ArithOutcome::Value {
                value: u64::MAX,
                ..
            }
        ));
    }

    #[test]
    fn touch_keeps_version() {
        let s = store();
        stored(s.store(&req(StoreMode::Set, "k", "v"), NOW).unwrap());
        let TouchOutcome::Touched(item) = s.touch(b"k", 5, NOW).unwrap() else {
            panic!()
        };
        assert_eq!((item.version, item.exptime), (1, NOW + 5));
        assert!(s.get(b"k", NOW + 5).unwrap().is_none());
        assert_eq!(s.touch(b"k", 5, NOW + 5).unwrap(), TouchOutcome::NotFound);
    }

    #[test]
    fn delayed_flush_happens_at_its_time() {
        let s = store();
        stored(s.store(&req(StoreMode::Set, "k", "v"), NOW).unwrap());
        s.schedule_flush(10, NOW).unwrap();
        assert!(s.get(b"k", NOW + 9).unwrap().is_some());
        assert!(s.get(b"k", NOW + 10).unwrap().is_none());
        stored(s.store(&req(StoreMode::Set, "k", "v"), NOW + 11).unwrap());
        assert!(s.get(b"k", NOW + 12).unwrap().is_some());
        s.schedule_flush(0, NOW + 12).unwrap();
        assert!(s.get(b"k", NOW + 12).unwrap().is_none());
    }

    #[test]
    fn sweeper_turns_expired_items_into_tombstones_then_drops_them() {
        let s = Store::new(
            MemoryStorage::new(),
            StoreConfig {
                tombstone_ttl: 100,
                ..StoreConfig::default()
            },
        );
        for i in 0..10 {
            let mut r = req(StoreMode::Set, &format!("k{i}"), "v");
            r.exptime = if i % 2 == 0 { 5 } else { 0 };
            stored(s.store(&r, NOW).unwrap());
        }
        let mut cursor: Option<Bytes> = None;
        let mut expired = 0;
        loop {
            let p = s.sweep(cursor.as_deref(), 3, NOW + 5).unwrap();
            expired += p.expired;
            match p.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(expired, 5);
        assert_eq!(s.storage().item_count(), 5);
        let p = s.sweep(None, 100, NOW + 5 + 100).unwrap();
        assert_eq!(p.tombstones_dropped, 5);
        assert_eq!(s.storage().scan(None, 100).unwrap().len(), 5);
    }

    #[test]
    fn number_parsing() {
        assert_eq!(parse_number(b"123"), Some(123));
        assert_eq!(parse_number(b"9 "), Some(9));
        assert_eq!(parse_number(b" 7"), Some(7));
        assert_eq!(parse_number(b""), None);
        assert_eq!(parse_number(b"1a"), None);
        assert_eq!(parse_number(b"18446744073709551616"), None);
        assert_eq!(leading_number(b"12ab"), 12);
        assert_eq!(leading_number(b"x"), 0);
    }
}
