#![no_main]
//! Records read back from disk: decoding never panics, and what decodes re-encodes to the same bytes.
use bytes::Bytes;
use flare_core::item::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = Entry::decode(Bytes::copy_from_slice(data)) {
        assert_eq!(entry.encode().as_ref(), data, "decode/encode must round-trip");
    }
});
