//! Directory ingest of arbitrary bytes, mixed with valid and mutated records:
//! never panics, and the directory holds only records their origins signed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings::proto::{Directory, DirectoryConfig, Source, VerifiedRecord};
use tidings_fuzz::{Fixture, NOW};

fuzz_target!(|data: &[u8]| {
    let fixture = Fixture::new();
    let mut directory = Directory::new(DirectoryConfig::new(fixture.federation), fixture.roster.clone());
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let bytes: Vec<u8> = match op % 3 {
            // Raw bytes, length-prefixed.
            0 => {
                let length = usize::from(rest.first().copied().unwrap_or(0));
                let take = length.min(rest.len().saturating_sub(1));
                let chunk = rest.get(1..1 + take).unwrap_or(&[]).to_vec();
                rest = rest.get(1 + take..).unwrap_or(&[]);
                chunk
            }
            // A valid record, or one with one byte changed.
            _ => {
                let [member, seq, variant, position, xor] = match rest.get(..5) {
                    Some(&[a, b, c, d, e]) => [a, b, c, d, e],
                    _ => return,
                };
                rest = &rest[5..];
                let Some(record) = fixture.record(member, seq, variant) else { return };
                let mut bytes = record.wire_bytes().to_vec();
                if op % 3 == 2 {
                    let at = usize::from(position) % bytes.len();
                    bytes[at] ^= xor.max(1);
                }
                bytes
            }
        };
        let source = Source::Peer(fixture.id(op));
        let _ = directory.ingest(&bytes, source, NOW + u64::from(op) * 1000);
        assert!(directory.len() <= fixture.roster.len());
        for entry in directory.entries() {
            assert!(fixture.roster.contains(&entry.record.origin()));
            assert!(VerifiedRecord::from_bytes(entry.record.wire_bytes(), Some(&fixture.federation)).is_ok());
        }
    }
});
