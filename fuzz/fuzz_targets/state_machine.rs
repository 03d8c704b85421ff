//! The node state machine driven by arbitrary inputs from its peers, the clock
//! and local commands. Invariants after every input: no panic; the directory holds
//! only records their origins signed, from admitted origins; what one input makes
//! the node send or remember stays bounded.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tidings::proto::wire::{Message, Prefix, Range, Summary};
use tidings::proto::{
    Announcement, Command, DirectoryConfig, GossipConfig, Holding, Output, State, VerifiedRecord,
};
use tidings_fuzz::{Fixture, NOW};

fuzz_target!(|data: &[u8]| {
    let fixture = Fixture::new();
    let me = Arc::new(tidings::keys::Identity::from_seed(&[1; 32]));
    let mut state = State::new(
        me,
        DirectoryConfig::new(fixture.federation),
        GossipConfig::default(),
        fixture.ledger(),
        NOW,
    );
    state.assume_membership_known();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut now = NOW;
    let mut chunks = data.chunks(6);
    while let Some(chunk) = chunks.next() {
        let [op, a, b, c, d, e] = match chunk {
            &[op, a, b, c, d, e] => [op, a, b, c, d, e],
            _ => return,
        };
        let peer = fixture.id(a);
        match op % 6 {
            0 => {
                // Raw bytes from a peer: the next chunks, up to `b` of them.
                let mut bytes = Vec::new();
                for _ in 0..(b % 8) {
                    if let Some(more) = chunks.next() {
                        bytes.extend_from_slice(more);
                    }
                }
                state.handle_frame(peer, &bytes, now, &mut rng);
            }
            1 => {
                if let Some(record) = fixture.record(b, c, d) {
                    let mut bytes = record.wire_bytes().to_vec();
                    if e & 1 == 1 {
                        let at = usize::from(e) % bytes.len();
                        bytes[at] ^= 0x40;
                    }
                    state.handle_frame(peer, &Message::Records(vec![bytes]).encode(), now, &mut rng);
                }
            }
            2 => now += u64::from(b) * 100 + u64::from(c) * 60_000,
            3 => {
                let holdings = (0..(b % 4))
                    .map(|i| Holding { origin: fixture.id(i.wrapping_add(c)), seq: u64::from(d), tag: u64::from(e) })
                    .collect::<Vec<_>>();
                let mut holdings = holdings;
                holdings.sort();
                holdings.dedup_by_key(|h| h.origin);
                let message = Message::Sync(vec![Range { prefix: Prefix::ROOT, summary: Summary::Holdings(holdings) }]);
                state.handle_frame(peer, &message.encode(), now, &mut rng);
            }
            4 => {
                let announcement = Announcement { addrs: vec![], specialists: vec![] };
                state.handle_command(Command::Publish(announcement), now, &mut rng);
            }
            _ => state.handle_timeout(now, &mut rng),
        }
        let mut outputs = 0;
        let mut persisted = false;
        while let Some(output) = state.poll_output() {
            outputs += 1;
            match output {
                Output::Persist { .. } => persisted = true,
                // The durability contract: nothing that reveals a new own record
                // comes before its Persist.
                Output::CommandResult(Ok(_)) => assert!(persisted),
                _ => {}
            }
        }
        assert!(outputs < 10_000, "one input produced {outputs} outputs");
        let directory = state.directory();
        assert!(directory.len() <= fixture.roster.len());
        for entry in directory.entries() {
            assert!(fixture.roster.contains(&entry.record.origin()));
            assert!(VerifiedRecord::from_bytes(entry.record.wire_bytes(), Some(&fixture.federation)).is_ok());
        }
    }
});
