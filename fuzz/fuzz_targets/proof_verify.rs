//! Equivocation proofs: decoding and verification never panic; a proof that
//! verifies names two records of one origin that really conflict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings::proto::equivocation::conflict_between;
use tidings::proto::EquivocationProof;

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = EquivocationProof::decode(data) {
        if let Ok(verified) = proof.verify(None) {
            assert_eq!(verified.first.origin(), verified.second.origin());
            assert!(conflict_between(&verified.first, &verified.second).is_some());
        }
    }
});
