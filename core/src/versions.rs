//! The node-wide version clock: every write a node makes gets a version (memcached's CAS unique, Flare's version)
//! from one counter, so versions are unique across the node's keys and strictly increasing across restarts and
//! failovers (issue 10 item 3; `docs/compatibility.md`, "Versions").
//!
//! Rules kept here, and nowhere else:
//! - **Issue**: a new local write gets `last + 1`, where `last` is the highest version this node has issued or seen.
//! - **Witness**: a version that arrives from elsewhere (a replicated write, a dump item, a meta `E`, the floor of a
//!   node map) raises `last` to it, so a promoted slave continues above every version it holds.
//! - **High-water mark**: `last` never passes a mark that the engine has persisted. Before a version is issued or
//!   witnessed, the mark is moved [`STEP`] ahead when fewer than [`LOW_WATER`] versions remain below it. A restart
//!   resumes at the persisted mark, above every version used before it. The mark is written to the same write-ahead
//!   log as the items, and before them, so a crash that keeps an item also keeps a mark at or above its version.
//! - **Epoch floor**: a node map of version V raises `last` to `V << EPOCH_SHIFT` ([`epoch_floor`]): a master
//!   promoted by map V versions its writes above those its deposed predecessor gave under older maps, as long as a
//!   node issues fewer than 2^40 versions under one map version.
//!
//! No I/O here: the caller passes the function that persists a mark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How far ahead of `last` a new mark is set.
pub const STEP: u64 = 1 << 16;
/// A new mark is persisted when fewer versions than this remain below the current one. Far above the number of
/// writes that can be between their check and their issue (one per concurrent connection).
pub const LOW_WATER: u64 = STEP / 2;
/// Bits of a version below the node map version of its epoch floor.
pub const EPOCH_SHIFT: u32 = 40;

/// The lowest version a master may issue under node map `map_version` (see the module header). Map versions past
/// 2^24 - 1 keep the floor of 2^24 - 1.
pub fn epoch_floor(map_version: u64) -> u64 {
    map_version.min((1 << (64 - EPOCH_SHIFT)) - 1) << EPOCH_SHIFT
}

/// The clock. Shared by every connection: every method takes `&self`.
#[derive(Debug, Default)]
pub struct VersionClock {
    /// The highest version issued or witnessed.
    last: AtomicU64,
    /// The persisted high-water mark: `last` stays at or below it.
    mark: AtomicU64,
    /// Held while a new mark is persisted, so marks are written in increasing order.
    persisting: Mutex<()>,
}

impl VersionClock {
    /// A clock resuming at a persisted mark (0 for a new engine): every version it issues is above `mark`.
    pub fn resume(mark: u64) -> Self {
        VersionClock {
            last: AtomicU64::new(mark),
            mark: AtomicU64::new(mark),
            persisting: Mutex::new(()),
        }
    }

    /// The highest version issued or witnessed.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// The persisted high-water mark.
    pub fn mark(&self) -> u64 {
        self.mark.load(Ordering::Acquire)
    }

    /// Makes sure the mark leaves room for versions up to `upto`, persisting a new one with `persist` if not. Call
    /// it before issuing ([`VersionClock::reserve`]) or witnessing a version.
    pub fn cover<E>(&self, upto: u64, persist: impl FnOnce(u64) -> Result<(), E>) -> Result<(), E> {
        if upto.saturating_add(LOW_WATER) <= self.mark() {
            return Ok(());
        }
        let _one = self.persisting.lock().unwrap_or_else(|e| e.into_inner());
        let mark = self.mark();
        if upto.saturating_add(LOW_WATER) <= mark {
            return Ok(());
        }
        let new = upto.saturating_add(STEP).max(mark);
        persist(new)?;
        self.mark.store(new, Ordering::Release);
        Ok(())
    }

    /// Makes room for the next issued version (see [`VersionClock::cover`]).
    pub fn reserve<E>(&self, persist: impl FnOnce(u64) -> Result<(), E>) -> Result<(), E> {
        self.cover(self.last().saturating_add(1), persist)
    }

    /// Issues a new version, above every version issued or witnessed so far and above `key_last` (the version the
    /// key holds, 0 when not read). The caller has called [`VersionClock::reserve`] first.
    pub fn issue(&self, key_last: u64) -> u64 {
        let mut cur = self.last();
        loop {
            let next = cur.max(key_last).saturating_add(1);
            match self
                .last
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next,
                Err(now) => cur = now,
            }
        }
    }

    /// Records a version that came from elsewhere: later issues are above it. The caller has called
    /// [`VersionClock::cover`] for it first.
    pub fn witness(&self, version: u64) {
        self.last.fetch_max(version, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;
    use std::convert::Infallible;

    #[test]
    fn issues_in_order_and_persists_ahead() {
        let saved = RefCell::new(Vec::new());
        let clock = VersionClock::resume(0);
        let persist = |m| -> Result<(), Infallible> {
            saved.borrow_mut().push(m);
            Ok(())
        };
        let mut prev = 0;
        for _ in 0..(3 * STEP) {
            clock.reserve(persist).unwrap();
            let v = clock.issue(0);
            assert_eq!(v, prev + 1);
            assert!(v <= clock.mark());
            prev = v;
        }
        let saved = saved.into_inner();
        assert!(saved.windows(2).all(|w| w[0] < w[1]), "{saved:?}");
        // A mark per STEP / 2 versions or so, not per version.
        assert!(saved.len() <= 7, "{} marks", saved.len());
    }

    #[test]
    fn a_failed_persist_issues_nothing_above_the_old_mark() {
        let clock = VersionClock::resume(100);
        assert_eq!(clock.reserve(|_| Err("disk full")), Err("disk full"));
        assert_eq!(clock.mark(), 100);
        clock.reserve(|_| Ok::<(), ()>(())).unwrap();
        assert_eq!(clock.issue(0), 101);
    }

    #[test]
    fn witnessed_and_key_versions_come_before_the_next_issue() {
        let clock = VersionClock::resume(0);
        let ok = |_| Ok::<(), ()>(());
        clock.cover(5000, ok).unwrap();
        clock.witness(5000);
        clock.reserve(ok).unwrap();
        assert_eq!(clock.issue(0), 5001);
        assert_eq!(clock.issue(9000), 9001);
        // Witnessing an older version changes nothing.
        clock.witness(10);
        assert_eq!(clock.issue(0), 9002);
    }

    #[test]
    fn epoch_floor_saturates() {
        assert_eq!(epoch_floor(0), 0);
        assert_eq!(epoch_floor(3), 3 << 40);
        assert_eq!(epoch_floor(u64::MAX), ((1 << 24) - 1) << 40);
    }

    proptest! {
        /// Across any sequence of issues, witnesses and restarts from the persisted mark, every issued version is
        /// above every version issued or witnessed before it.
        #[test]
        fn strictly_increasing_across_restarts(
            ops in proptest::collection::vec((0u8..4, 0u64..1_000_000), 1..300)
        ) {
            let disk = RefCell::new(0u64);
            let persist = |m| -> Result<(), Infallible> { *disk.borrow_mut() = m; Ok(()) };
            let mut clock = VersionClock::resume(0);
            let mut highest = 0u64;
            for (op, n) in ops {
                match op {
                    0 | 1 => {
                        clock.reserve(persist).unwrap();
                        let v = clock.issue(0);
                        prop_assert!(v > highest);
                        prop_assert!(v <= *disk.borrow());
                        highest = v;
                    }
                    2 => {
                        let v = highest + n;
                        clock.cover(v, persist).unwrap();
                        clock.witness(v);
                        prop_assert!(v <= *disk.borrow());
                        highest = highest.max(v);
                    }
                    _ => clock = VersionClock::resume(*disk.borrow()),
                }
            }
        }
    }
}
