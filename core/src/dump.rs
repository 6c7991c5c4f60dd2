//! Serving `dump` and `dump_key` (protocol.md §5.2, §5.3; cluster.md §10): which records a dump sends, how each is
//! framed, and how long to pause after each one. The driver walks the store and writes; every decision is here.
//!
//! Several dumps may run at once (a cursor per dump, protocol.md §5.2 [Improve]): nothing here is shared.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::item::Entry;
use crate::keys::Resolver;
use crate::protocol::response::encode_value;
use crate::protocol::{DumpArgs, ValueItem};

/// What one dump sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpKind {
    /// `dump`: `VALUE <key> <flags> <bytes> <version> <exptime>` and the data, live items only.
    Items,
    /// `dump_key`: `KEY <key>` lines, expired-but-unswept items included (Flare does so).
    Keys,
}

/// Appends the stream record for `(key, entry)` to `out` if the dump sends it; returns whether it did.
pub fn encode_record(
    kind: DumpKind,
    args: &DumpArgs,
    resolver: &Resolver,
    key: &Bytes,
    entry: &Entry,
    now: u64,
    out: &mut BytesMut,
) -> bool {
    let Entry::Item(item) = entry else {
        return false;
    };
    if kind == DumpKind::Items && item.is_expired(now) {
        return false;
    }
    if let Some(p) = args.partition {
        if resolver.partition(key, args.partition_count) != Some(p) {
            return false;
        }
    }
    match kind {
        DumpKind::Items => encode_value(
            &ValueItem {
                key: key.clone(),
                flags: item.flags,
                version: item.version,
                value: item.value.clone(),
            },
            true,
            Some(item.exptime),
            out,
        ),
        DumpKind::Keys => {
            out.reserve(key.len() + 6);
            out.put_slice(b"KEY ");
            out.put_slice(key);
            out.put_slice(b"\r\n");
        }
    }
    true
}

/// The pause after each record (cluster.md §10): a fixed wait per item (`<wait_usec>`) and an rsync-style bandwidth
/// cap (`<bwlimit_kBps>`): keep the bytes sent minus elapsed time × rate, and sleep once that debt reaches 100 ms'
/// worth. Time slept for the cap counts toward the per-item wait.
#[derive(Clone, Debug)]
pub struct Throttle {
    wait: Duration,
    bytes_per_sec: f64,
    debt: f64,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle for a dump's arguments.
    pub fn new(args: &DumpArgs) -> Self {
        Throttle {
            wait: Duration::from_micros(args.wait_usec),
            bytes_per_sec: args.bwlimit_kbps as f64 * 1024.0,
            debt: 0.0,
            last: None,
        }
    }

    /// True when the dump runs unthrottled.
    pub fn is_unlimited(&self) -> bool {
        self.wait.is_zero() && self.bytes_per_sec == 0.0
    }

    /// Accounts one record of `bytes` sent at `now`; returns how long to pause before the next.
    pub fn on_record(&mut self, bytes: usize, now: Instant) -> Duration {
        let mut pause = Duration::ZERO;
        if self.bytes_per_sec > 0.0 {
            let elapsed = self
                .last
                .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
            self.debt = (self.debt - elapsed * self.bytes_per_sec).max(0.0) + bytes as f64;
            if self.debt >= self.bytes_per_sec / 10.0 {
                pause = Duration::from_secs_f64(self.debt / self.bytes_per_sec);
                self.debt = 0.0;
            }
        }
        // The caller sleeps `pause` from `now`; the next elapsed time starts after it.
        self.last = Some(now + pause.max(self.wait));
        pause.max(self.wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::Item;
    use crate::keys::PartitionParams;

    fn args(partition: Option<u32>, count: u32) -> DumpArgs {
        DumpArgs {
            wait_usec: 0,
            partition,
            partition_count: count,
            bwlimit_kbps: 0,
        }
    }

    fn item(exptime: u64) -> Entry {
        Entry::Item(Item {
            flags: 3,
            exptime,
            version: 7,
            value: Bytes::from_static(b"xy"),
            meta: 0,
        })
    }

    #[test]
    fn records_are_framed_and_filtered() {
        let r = Resolver::new(PartitionParams::default()).unwrap();
        let mut out = BytesMut::new();
        // `key0` is partition 0 and `foo` partition 1 of 2 with the simple hash (cluster.md §9.2).
        assert!(encode_record(
            DumpKind::Items,
            &args(Some(0), 2),
            &r,
            &Bytes::from_static(b"key0"),
            &item(0),
            10,
            &mut out
        ));
        assert!(!encode_record(
            DumpKind::Items,
            &args(Some(0), 2),
            &r,
            &Bytes::from_static(b"foo"),
            &item(0),
            10,
            &mut out
        ));
        assert!(!encode_record(
            DumpKind::Items,
            &args(None, 0),
            &r,
            &Bytes::from_static(b"old"),
            &item(5),
            10,
            &mut out
        ));
        assert!(encode_record(
            DumpKind::Keys,
            &args(None, 0),
            &r,
            &Bytes::from_static(b"old"),
            &item(5),
            10,
            &mut out
        ));
        assert_eq!(&out[..], b"VALUE key0 3 2 7 0\r\nxy\r\nKEY old\r\n");
    }

    #[test]
    fn bandwidth_cap_pauses_once_debt_reaches_100ms() {
        let mut t = Throttle::new(&DumpArgs {
            bwlimit_kbps: 100,
            ..args(None, 0)
        });
        let start = Instant::now();
        // 100 KiB/s: 10 KiB is 100 ms' worth.
        assert_eq!(t.on_record(5 * 1024, start), Duration::ZERO);
        let p = t.on_record(5 * 1024, start);
        assert!((p.as_secs_f64() - 0.1).abs() < 1e-6, "{p:?}");
        // After sleeping, sending at the allowed rate needs no pause.
        assert_eq!(
            t.on_record(1024, start + p + Duration::from_millis(10)),
            Duration::ZERO
        );
    }

    #[test]
    fn per_item_wait_absorbs_the_bandwidth_sleep() {
        let mut t = Throttle::new(&DumpArgs {
            wait_usec: 50_000,
            bwlimit_kbps: 100,
            ..args(None, 0)
        });
        let now = Instant::now();
        assert_eq!(t.on_record(10, now), Duration::from_millis(50));
        assert!(Throttle::new(&args(None, 0)).is_unlimited());
    }
}
