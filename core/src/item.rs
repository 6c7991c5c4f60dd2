//! The stored entry: a live item or a delete tombstone, and its on-disk encoding.
//!
//! Disk layout (little-endian), one record per key:
//!
//! ```text
//! item:      0x01 | flags u32 | exptime u64 | version u64 | value bytes...
//! tombstone: 0x02 | version u64 | hold_until u64 | expires_at u64
//! meta item: 0x03 | flags u32 | exptime u64 | version u64 | meta u8 | value bytes...
//! ```
//!
//! `exptime`, `hold_until` and `expires_at` are absolute Unix seconds; 0 means "never" / "no hold".
//! An item whose [`Item::meta`] bits are all clear is written as a `0x01` record, byte for byte what was written
//! before meta bits existed; only items carrying meta-command state (stale, win token sent; protocol.md §11) use
//! `0x03`. Meta bits this version does not know are kept as read.
//! [`Entry::decode`] reads bytes that come from disk, so it never panics on any input (a fuzz target checks it).

use bytes::{BufMut, Bytes, BytesMut};

/// A live item as memcached and Flare see it (protocol.md §2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Item {
    /// Opaque client flags.
    pub flags: u32,
    /// Absolute expiry in Unix seconds; 0 = never.
    pub exptime: u64,
    /// Per-key 64-bit version, exposed as the memcached `cas unique`.
    pub version: u64,
    /// The data block.
    pub value: Bytes,
    /// Meta-command state bits ([`Item::META_STALE`], [`Item::META_WIN_SENT`]); 0 for every item written by a
    /// classic command. Persisted and replicated with the item, because the master decides them (protocol.md §11,
    /// "Meta commands in a cluster").
    pub meta: u8,
}

impl Item {
    /// Marked stale by `md <key> I` or `ms ... I` (meta `X` flag); the next `mg` wins the recache (`W`).
    pub const META_STALE: u8 = 1 << 0;
    /// A `W` (win) has been handed out for this item; later `mg`s see `Z`.
    pub const META_WIN_SENT: u8 = 1 << 1;

    /// True when the item has expired at `now` (`exptime > 0 && exptime <= now`, protocol.md §3).
    pub fn is_expired(&self, now: u64) -> bool {
        self.exptime != 0 && self.exptime <= now
    }

    /// The item has been marked stale (meta `I`).
    pub fn is_stale(&self) -> bool {
        self.meta & Self::META_STALE != 0
    }

    /// A recache win (`W`) has already been handed out.
    pub fn win_sent(&self) -> bool {
        self.meta & Self::META_WIN_SENT != 0
    }
}

/// What a deleted key leaves behind: its last version, so a re-created key continues from it and a replicated or
/// dumped write older than the delete cannot bring the key back (cluster.md §8.4, persistent tombstones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The version the key had when it was deleted.
    pub version: u64,
    /// Absolute time until which `add` and `replace` are refused (Flare's delete hold); 0 = no hold.
    pub hold_until: u64,
    /// Absolute time after which the tombstone may be dropped.
    pub expires_at: u64,
}

/// One record in a storage engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A live (possibly expired, not yet swept) item.
    Item(Item),
    /// A delete marker.
    Tombstone(Tombstone),
}

/// Length of the fixed item header on disk (a `0x01` record; a `0x03` record has one more byte).
pub const ITEM_HEADER_LEN: usize = 1 + 4 + 8 + 8;
const META_ITEM_HEADER_LEN: usize = ITEM_HEADER_LEN + 1;
const TOMBSTONE_LEN: usize = 1 + 8 + 8 + 8;
const TAG_ITEM: u8 = 1;
const TAG_TOMBSTONE: u8 = 2;
const TAG_META_ITEM: u8 = 3;

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record is shorter than its header.
    #[error("record truncated")]
    Truncated,
    /// The first byte names no known record kind.
    #[error("unknown record tag {0}")]
    UnknownTag(u8),
    /// A tombstone record has trailing bytes.
    #[error("tombstone has trailing bytes")]
    TrailingBytes,
    /// A meta item record (0x03) whose meta bits are all clear: such an item is always written as 0x01, so the
    /// record is not one this code wrote (decode/encode must round-trip).
    #[error("meta item record without meta bits")]
    EmptyMeta,
}

impl Entry {
    /// The version carried by the entry.
    pub fn version(&self) -> u64 {
        match self {
            Entry::Item(i) => i.version,
            Entry::Tombstone(t) => t.version,
        }
    }

    /// Appends the disk encoding of the entry to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        match self {
            Entry::Item(i) => {
                out.reserve(META_ITEM_HEADER_LEN + i.value.len());
                out.put_u8(if i.meta == 0 { TAG_ITEM } else { TAG_META_ITEM });
                out.put_u32_le(i.flags);
                out.put_u64_le(i.exptime);
                out.put_u64_le(i.version);
                if i.meta != 0 {
                    out.put_u8(i.meta);
                }
                out.put_slice(&i.value);
            }
            Entry::Tombstone(t) => {
                out.reserve(TOMBSTONE_LEN);
                out.put_u8(TAG_TOMBSTONE);
                out.put_u64_le(t.version);
                out.put_u64_le(t.hold_until);
                out.put_u64_le(t.expires_at);
            }
        }
    }

    /// The disk encoding of the entry.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Decodes a record read from disk. The item's value shares `raw`'s buffer (no copy).
    pub fn decode(raw: Bytes) -> Result<Entry, DecodeError> {
        let tag = *raw.first().ok_or(DecodeError::Truncated)?;
        match tag {
            TAG_ITEM | TAG_META_ITEM => {
                let header = if tag == TAG_ITEM {
                    ITEM_HEADER_LEN
                } else {
                    META_ITEM_HEADER_LEN
                };
                if raw.len() < header {
                    return Err(DecodeError::Truncated);
                }
                if tag == TAG_META_ITEM && raw[21] == 0 {
                    return Err(DecodeError::EmptyMeta);
                }
                Ok(Entry::Item(Item {
                    flags: u32::from_le_bytes(raw[1..5].try_into().expect("4-byte slice")),
                    exptime: u64::from_le_bytes(raw[5..13].try_into().expect("8-byte slice")),
                    version: u64::from_le_bytes(raw[13..21].try_into().expect("8-byte slice")),
                    // Length checked above: a 0x03 record has its meta byte at offset 21.
                    meta: if tag == TAG_ITEM { 0 } else { raw[21] },
                    value: raw.slice(header..),
                }))
            }
            TAG_TOMBSTONE => {
                if raw.len() < TOMBSTONE_LEN {
                    return Err(DecodeError::Truncated);
                }
                if raw.len() > TOMBSTONE_LEN {
                    return Err(DecodeError::TrailingBytes);
                }
                Ok(Entry::Tombstone(Tombstone {
                    version: u64::from_le_bytes(raw[1..9].try_into().expect("8-byte slice")),
                    hold_until: u64::from_le_bytes(raw[9..17].try_into().expect("8-byte slice")),
                    expires_at: u64::from_le_bytes(raw[17..25].try_into().expect("8-byte slice")),
                }))
            }
            other => Err(DecodeError::UnknownTag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_round_trip() {
        let e = Entry::Item(Item {
            flags: 7,
            exptime: 1_900_000_000,
            version: 42,
            value: Bytes::from_static(b"hello"),
            meta: 0,
        });
        assert_eq!(Entry::decode(e.encode()).unwrap(), e);
    }

    #[test]
    fn item_without_meta_bits_keeps_the_old_record_format() {
        let item = Item {
            flags: 7,
            exptime: 9,
            version: 42,
            value: Bytes::from_static(b"v"),
            meta: 0,
        };
        // A record written before meta bits existed, byte for byte.
        let mut old = vec![1u8];
        old.extend_from_slice(&7u32.to_le_bytes());
        old.extend_from_slice(&9u64.to_le_bytes());
        old.extend_from_slice(&42u64.to_le_bytes());
        old.push(b'v');
        assert_eq!(&Entry::Item(item.clone()).encode()[..], &old[..]);
        assert_eq!(Entry::decode(Bytes::from(old)).unwrap(), Entry::Item(item));
    }

    #[test]
    fn item_with_meta_bits_round_trips_as_a_meta_record() {
        let e = Entry::Item(Item {
            flags: 1,
            exptime: 0,
            version: 3,
            value: Bytes::from_static(b"stale"),
            meta: Item::META_STALE | Item::META_WIN_SENT,
        });
        let raw = e.encode();
        assert_eq!(raw[0], 3);
        assert_eq!(raw.len(), 1 + 4 + 8 + 8 + 1 + 5);
        assert_eq!(Entry::decode(raw).unwrap(), e);
        // An empty value still needs the meta byte.
        assert_eq!(
            Entry::decode(Bytes::from_static(&[3; 21])),
            Err(DecodeError::Truncated)
        );
        // Clear meta bits are always written as 0x01, so a 0x03 record with none is refused.
        let mut empty = vec![3u8; 21];
        empty.push(0);
        assert_eq!(
            Entry::decode(Bytes::from(empty)),
            Err(DecodeError::EmptyMeta)
        );
    }

    #[test]
    fn tombstone_round_trip() {
        let e = Entry::Tombstone(Tombstone {
            version: 9,
            hold_until: 0,
            expires_at: 77,
        });
        assert_eq!(Entry::decode(e.encode()).unwrap(), e);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(Entry::decode(Bytes::new()), Err(DecodeError::Truncated));
        assert_eq!(
            Entry::decode(Bytes::from_static(&[1, 2, 3])),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Entry::decode(Bytes::from_static(&[9])),
            Err(DecodeError::UnknownTag(9))
        );
        assert_eq!(
            Entry::decode(Bytes::from_static(&[2; 40])),
            Err(DecodeError::TrailingBytes)
        );
    }
}
