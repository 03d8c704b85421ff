//! Record decoding and verification: never panics; a record that decodes is in
//! its one canonical form; nothing verifies unless its origin signed it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings::proto::{Record, UnverifiedRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        assert_eq!(record.encode(), data, "decoded bytes must be canonical");
    }
    if let Ok(unverified) = UnverifiedRecord::parse(data, None) {
        if let Ok(verified) = unverified.verify() {
            // A fuzzer cannot sign: this only happens for seeds that were signed.
            assert_eq!(verified.wire_bytes(), data);
        }
    }
});
