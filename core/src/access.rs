//! What memcached's meta flags `h` (fetched before) and `l` (seconds since the last access) report, and `me`'s
//! `fetch=` and `la=`: per-item access data, kept in memory only (decisions.md #5), in a fixed table.
//!
//! memcached 1.6 (its default segmented LRU) keeps three things in each item: a "fetched" bit, an "active" bit and
//! the item's time, set when it is stored. The first read sets "fetched" and leaves the time; the second sets
//! "active" and the time (at once, or a moment later from another thread for an item in its cold LRU); later reads
//! change nothing, until memcached's LRU maintainer clears "active" when it moves
//! the item, on its own schedule. We refresh the time of an active item when it is more than 60 seconds old
//! (memcached's `ITEM_UPDATE_INTERVAL`) instead, so that `l` stays within a minute of the last read. `h` and `l`
//! report the data as it was before the read that asks.
//!
//! **Where it lives.** Writing access data into the stored record would turn reads into writes (a RocksDB write on
//! the first fetch of every item); instead each node keeps a table of [`SLOTS`] 64-bit slots, one per key hash
//! (2 MiB), updated with plain atomic loads and stores (`&self`, no lock; two racing updates of one slot keep one
//! of them). A slot holds a 30-bit tag of the key, the active and fetched bits and the time (Unix seconds, 32
//! bits).
//!
//! **What it costs in truth.** A key whose slot holds another key's tag (a hash collision, every key beyond the
//! table's size, or any key after a restart) is *unknown*: reported as never fetched and last accessed when this
//! table started, and known again from its next access. Each node has its own table: a client reading a key
//! through different replicas sees each replica's reads.
//!
//! **Which commands do what** (as memcached 1.6.18 does, checked by tests/tests/memcached.rs):
//! - a write that stores a new value (`set` and its family, `ms`, binary writes, a loaded dump item) starts a new
//!   item: not fetched, accessed now ([`AccessTable::stored`]);
//! - `incr`/`decr`/`ma` change the value in place: the bits stay and the time is now ([`AccessTable::changed`];
//!   memcached does so while the number keeps its length and no other request holds the item, and otherwise makes
//!   a new item);
//! - a read that hits (`get`, `gets`, `gat`, `gats`, `touch`, binary gets, `mg` without `u`) is a read as above
//!   ([`AccessTable::fetch`]);
//! - `delete` forgets the key; `mg ... u` and `me` only look ([`AccessTable::peek`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Slots in a node's table (a power of two): 2^18 × 8 bytes = 2 MiB.
pub const SLOTS: usize = 1 << 18;

/// memcached's `ITEM_UPDATE_INTERVAL`: a read refreshes the item's time only when it is at least this old.
pub const UPDATE_INTERVAL_SECS: u64 = 60;

const FETCHED: u64 = 1 << 32;
const ACTIVE: u64 = 1 << 33;
const TIME_MASK: u64 = u32::MAX as u64;
const TAG_MASK: u64 = !(ACTIVE | FETCHED | TIME_MASK);

/// An item's access data as of before the request that asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The item was read before (`h1`, `fetch=yes`).
    pub fetched: bool,
    /// Seconds since the item's time (`l`, `la=`).
    pub idle_secs: u64,
}

/// The per-node table of access data (see the module documentation).
#[derive(Debug)]
pub struct AccessTable {
    slots: Box<[AtomicU64]>,
    /// The Unix time of the first access recorded (0 until then): what an unknown key reports as its last access.
    started: AtomicU64,
}

impl Default for AccessTable {
    fn default() -> Self {
        AccessTable {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            started: AtomicU64::new(0),
        }
    }
}

impl AccessTable {
    /// A key was stored with a new value at `now`: not fetched, accessed now.
    pub fn stored(&self, key: &[u8], now: u64) {
        self.start(now);
        let (slot, tag) = self.locate(key);
        slot.store(tag | (now & TIME_MASK), Relaxed);
    }

    /// The key's value was changed in place at `now` (`incr`): its bits stay, its time is now.
    pub fn changed(&self, key: &[u8], now: u64) {
        self.start(now);
        let (slot, tag) = self.locate(key);
        let cur = slot.load(Relaxed);
        let bits = match cur & TAG_MASK == tag {
            true => cur & (ACTIVE | FETCHED),
            false => 0,
        };
        slot.store(tag | bits | (now & TIME_MASK), Relaxed);
    }

    /// A key was deleted: forget it.
    pub fn forget(&self, key: &[u8]) {
        let (slot, tag) = self.locate(key);
        if slot.load(Relaxed) & TAG_MASK == tag {
            slot.store(0, Relaxed);
        }
    }

    /// A read hit the key at `now`: returns the access data from before it, then records the read (module
    /// documentation). An unknown key becomes known, fetched, as of now.
    pub fn fetch(&self, key: &[u8], now: u64) -> Access {
        self.start(now);
        let (slot, tag) = self.locate(key);
        let cur = slot.load(Relaxed);
        let known = cur & TAG_MASK == tag;
        let (time, now32) = (cur & TIME_MASK, now & TIME_MASK);
        let next = match (known, cur & FETCHED != 0, cur & ACTIVE != 0) {
            (false, _, _) => tag | FETCHED | now32,
            (true, false, _) => cur | FETCHED,
            (true, true, false) => tag | ACTIVE | FETCHED | now32,
            (true, true, true) if time + UPDATE_INTERVAL_SECS < now32 => {
                tag | ACTIVE | FETCHED | now32
            }
            (true, true, true) => cur,
        };
        if next != cur {
            slot.store(next, Relaxed);
        }
        self.report(cur, known, now)
    }

    /// The key's access data at `now`, changing nothing.
    pub fn peek(&self, key: &[u8], now: u64) -> Access {
        let (slot, tag) = self.locate(key);
        let cur = slot.load(Relaxed);
        self.report(cur, cur & TAG_MASK == tag, now)
    }

    fn report(&self, slot: u64, known: bool, now: u64) -> Access {
        let since = match known {
            true => slot & TIME_MASK,
            // Nothing recorded yet: the table starts now.
            false => match self.started.load(Relaxed) {
                0 => now & TIME_MASK,
                started => started,
            },
        };
        Access {
            fetched: known && slot & FETCHED != 0,
            idle_secs: (now & TIME_MASK).saturating_sub(since),
        }
    }

    fn start(&self, now: u64) {
        if self.started.load(Relaxed) == 0 {
            let _ = self
                .started
                .compare_exchange(0, now & TIME_MASK, Relaxed, Relaxed);
        }
    }

    /// The key's slot and its tag, in the slot's top 30 bits (never 0, so an empty slot matches no key).
    fn locate(&self, key: &[u8]) -> (&AtomicU64, u64) {
        let h = fnv1a(key);
        let slot = &self.slots[(h as usize) & (self.slots.len() - 1)];
        let tag = ((h >> 34) | 1) << 34;
        (slot, tag)
    }
}

/// 64-bit FNV-1a (the `fnv` crate): deterministic across runs and builds (the index uses its low bits, the tag its
/// high bits).
fn fnv1a(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(key);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn fetched_and_idle_as_memcached_reports_them() {
        let t = AccessTable::default();
        t.stored(b"k", T0);
        assert_eq!(
            t.peek(b"k", T0 + 2),
            Access {
                fetched: false,
                idle_secs: 2
            }
        );
        // The first read sees "not fetched" and leaves the time; the second refreshes it; later ones do not.
        assert_eq!(
            t.fetch(b"k", T0 + 2),
            Access {
                fetched: false,
                idle_secs: 2
            }
        );
        assert_eq!(
            t.fetch(b"k", T0 + 5),
            Access {
                fetched: true,
                idle_secs: 5
            }
        );
        assert_eq!(
            t.fetch(b"k", T0 + 7),
            Access {
                fetched: true,
                idle_secs: 2
            }
        );
        assert_eq!(
            t.fetch(b"k", T0 + 65),
            Access {
                fetched: true,
                idle_secs: 60
            }
        );
        // More than a minute after the last refresh a read refreshes it.
        assert_eq!(
            t.fetch(b"k", T0 + 66),
            Access {
                fetched: true,
                idle_secs: 61
            }
        );
        assert_eq!(
            t.peek(b"k", T0 + 70),
            Access {
                fetched: true,
                idle_secs: 4
            }
        );
        // incr: the same bits, a new time.
        t.changed(b"k", T0 + 72);
        assert_eq!(
            t.peek(b"k", T0 + 73),
            Access {
                fetched: true,
                idle_secs: 1
            }
        );
        // A new value is a new item.
        t.stored(b"k", T0 + 80);
        assert_eq!(
            t.peek(b"k", T0 + 80),
            Access {
                fetched: false,
                idle_secs: 0
            }
        );
    }

    #[test]
    fn unknown_keys_are_unfetched_since_the_table_started() {
        let t = AccessTable::default();
        t.stored(b"a", T0);
        assert_eq!(
            t.peek(b"never-seen", T0 + 7),
            Access {
                fetched: false,
                idle_secs: 7
            }
        );
        t.fetch(b"a", T0 + 1);
        t.forget(b"a");
        assert_eq!(
            t.peek(b"a", T0 + 3),
            Access {
                fetched: false,
                idle_secs: 3
            }
        );
        // Forgetting a key leaves another key's slot alone.
        t.stored(b"b", T0);
        t.fetch(b"b", T0);
        t.forget(b"c");
        assert!(t.peek(b"b", T0).fetched);
    }

    #[test]
    fn a_colliding_key_takes_the_slot_and_the_other_becomes_unknown() {
        let t = AccessTable::default();
        let mask = (SLOTS - 1) as u64;
        let first = b"key-0".to_vec();
        let other = (1..)
            .map(|i| format!("key-{i}").into_bytes())
            .find(|k| fnv1a(k) & mask == fnv1a(&first) & mask)
            .expect("some key shares the slot");
        t.stored(&first, T0);
        t.fetch(&first, T0);
        t.stored(&other, T0 + 1);
        assert!(!t.peek(&first, T0 + 1).fetched);
        assert_eq!(
            t.peek(&other, T0 + 1),
            Access {
                fetched: false,
                idle_secs: 0
            }
        );
    }
}
