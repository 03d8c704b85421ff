//! What one exchange costs between two nodes that hold N records, when they agree
//! and when they differ by a few records.
//!
//! Two real state machines hold the same N signed records (shared through one
//! verified-record cache); node A opens an exchange with B and every message is
//! delivered until both are quiet. The bytes of every frame are counted.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::world::{Federation, START_MS};
use crate::proto::directory::{DirectoryConfig, VerifiedCache};
use crate::proto::event::Output;
use crate::proto::gossip;
use crate::proto::record::{Announcement, Record, Specialist, VerifiedRecord};
use crate::proto::state::{GossipConfig, State};
use crate::proto::wire::Message;

/// The cost of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExchangeCost {
    /// Records held by the fuller node.
    pub records: usize,
    /// Records one node lacks.
    pub difference: usize,
    /// Frames sent, both ways.
    pub messages: u64,
    /// Bytes of all frames, both ways.
    pub bytes: u64,
    /// Bytes of digest frames only (sync and want), both ways.
    pub digest_bytes: u64,
}

fn node(federation: &Federation, index: usize, cache: &Arc<VerifiedCache>) -> State {
    let config = GossipConfig {
        spread: crate::proto::spread::SpreadConfig {
            neighbours: 0,
            ..Default::default()
        },
        audit_relays: false,
        ..GossipConfig::default()
    };
    let mut state = State::new(
        federation.identities[index].clone(),
        DirectoryConfig::new(federation.id),
        config,
        federation.ledger.clone(),
        START_MS,
    );
    state.set_verified_cache(cache.clone());
    state.assume_membership_known();
    state
}

/// Signed records, one per member of `federation`.
pub fn records(federation: &Federation) -> Vec<VerifiedRecord> {
    federation
        .identities
        .iter()
        .enumerate()
        .filter_map(|(index, identity)| {
            let announcement = Announcement {
                addrs: vec![format!("10.1.{}.{}:7700", index / 256, index % 256)],
                specialists: vec![Specialist {
                    name: format!("agent-{index}"),
                    capabilities: vec!["summarize".into()],
                    endpoint: format!("https://node-{index}.sim/api"),
                    meta: Default::default(),
                }],
            };
            let record = Record::first(
                federation.id,
                identity.node_id(),
                announcement,
                START_MS,
                3_600_000,
            );
            VerifiedRecord::sign(identity, record).ok()
        })
        .collect()
}

/// One exchange opened by a node holding every record with a node that lacks the
/// last `difference` of them.
pub fn exchange_cost(
    federation: &Federation,
    records: &[VerifiedRecord],
    difference: usize,
) -> ExchangeCost {
    let cache = Arc::new(VerifiedCache::new(records.len() + 16));
    let mut a = node(federation, 0, &cache);
    let mut b = node(federation, 1, &cache);
    let keep = records.len().saturating_sub(difference);
    for (index, record) in records.iter().enumerate() {
        a.restore_record(record.clone(), START_MS);
        if index < keep {
            b.restore_record(record.clone(), START_MS);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut cost = ExchangeCost {
        records: records.len(),
        difference,
        messages: 0,
        bytes: 0,
        digest_bytes: 0,
    };
    let (a_id, b_id) = (a.node_id(), b.node_id());
    let mut pending = vec![(true, gossip::opening(a.directory(), START_MS + 1000))];
    while let Some((from_a, message)) = pending.pop() {
        let frame = message.encode();
        cost.messages += 1;
        cost.bytes += frame.len() as u64;
        if matches!(
            message,
            Message::Open { .. } | Message::Sync(_) | Message::Want(_)
        ) {
            cost.digest_bytes += frame.len() as u64;
        }
        let (receiver, sender, peer) = if from_a {
            (&mut b, a_id, a_id)
        } else {
            (&mut a, b_id, b_id)
        };
        receiver.handle_frame(sender, &frame, START_MS + 1000, &mut rng);
        while let Some(output) = receiver.poll_output() {
            if let Output::Send { to, message } = output {
                if to == peer {
                    pending.push((!from_a, message));
                }
            }
        }
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converged_cost_is_flat_and_differences_cost_little() {
        let mut converged = Vec::new();
        for size in [16, 300] {
            let federation = Federation::new(size, 3);
            let records = records(&federation);
            let idle = exchange_cost(&federation, &records, 0);
            assert_eq!(idle.messages, 1, "a converged exchange is one digest");
            converged.push(idle.bytes);
            if size == 300 {
                let one = exchange_cost(&federation, &records, 1);
                let ten = exchange_cost(&federation, &records, 10);
                assert!(one.digest_bytes < 2_000, "{one:?}");
                assert!(ten.digest_bytes < 10 * one.digest_bytes, "{one:?} {ten:?}");
                // Listing every holding would take 300 * 48 bytes.
                assert!(ten.digest_bytes < 300 * 48 / 2, "{ten:?}");
            }
        }
        assert_eq!(converged[0], converged[1]);
    }
}
