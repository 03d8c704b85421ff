//! Roster operations from peers: decoding, checking against a state and taking
//! them into a ledger never panic; whatever a ledger applies carries the
//! threshold of valid approvals of the state it changed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings::proto::roster::{Need, Received, RosterForkProof, SignedOp};
use tidings_fuzz::{Fixture, NOW};

fuzz_target!(|data: &[u8]| {
    let fixture = Fixture::new();
    let mut ledger = fixture.ledger();
    let before = ledger.state().clone();
    if let Ok(op) = SignedOp::decode(data) {
        let _ = before.check(&op, Need::Proposal { now_ms: NOW }, None);
        if let Received::Applied(applied) = ledger.receive(&op, NOW) {
            assert!(before.check(applied.op(), Need::Complete, None).is_ok());
            assert_eq!(ledger.state().epoch(), 1);
        }
    }
    if let Ok(proof) = RosterForkProof::decode(data) {
        let _ = proof.verify(&before, None);
        let _ = ledger.check_fork(&proof);
    }
});
