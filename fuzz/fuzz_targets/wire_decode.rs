//! Wire frames: decoding never panics, and what decodes re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings::proto::wire::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        let encoded = message.encode();
        assert_eq!(Message::decode(&encoded).as_ref(), Ok(&message));
    }
});
