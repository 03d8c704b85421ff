//! Work budgets: what each peer's input has cost this node, and when it must stop.
//!
//! Counting frames is not enough: one frame may carry 256 records whose signatures
//! must be checked, or a request that makes this node send megabytes. So every peer
//! has a budget of *work units*, roughly microseconds of one core, and each input is
//! charged for the work it caused:
//!
//! | work | units |
//! |---|---|
//! | a frame received (wake-up, framing, decode) | [`cost::FRAME`] + [`cost::PER_KIB`] per KiB |
//! | a record that changed nothing (duplicate, stale, expired, rate-limited, ...) | [`cost::WASTED_RECORD`] + [`cost::PER_KIB`] per KiB |
//! | a signature check that changed nothing (a bad signature) | [`cost::SIGNATURE`] |
//! | an audit entry the input caused | [`cost::AUDIT_ENTRY`] |
//! | a range compared, or described in a reply | [`cost::RANGE`] + [`cost::HOLDING`] per holding listed |
//! | a record sent because the peer asked | [`cost::RECORD_SENT`] + [`cost::PER_KIB`] per KiB |
//!
//! Useful work is free: a record that is accepted, or a proof that quarantines a
//! forker, is what the node exists for, and its amount is bounded anyway by each
//! origin's own rate limit. So an honest peer, whose input is mostly news, spends
//! little; a peer replaying old records, duplicates or forgeries pays for each.
//!
//! A peer whose budget is spent has its frames dropped before they are decoded, and
//! each dropped frame is the offence of flooding: a flood ends in a ban within a few
//! dozen frames. The refill rate is the share of a core one peer may take for ever;
//! the burst is what it may take at once. Work is charged after it is done (its cost
//! is known only then), so a budget may go below zero by at most one frame's work.

use std::collections::BTreeMap;

use tidings_keys::NodeId;

/// Work units charged for each kind of work (about a microsecond each on one core).
pub mod cost {
    /// Receiving one frame: transport, wake-up, framing and decoding.
    pub const FRAME: u64 = 20;
    /// Each KiB received or sent: copying, decryption, hashing.
    pub const PER_KIB: u64 = 2;
    /// A record that changed nothing and needed no signature check.
    pub const WASTED_RECORD: u64 = 3;
    /// A signature check (`verify_strict`) that changed nothing.
    pub const SIGNATURE: u64 = 50;
    /// An audit entry written because of the input.
    pub const AUDIT_ENTRY: u64 = 20;
    /// A record sent to the peer on its request.
    pub const RECORD_SENT: u64 = 5;
    /// A range of the peer's compared with the directory, or one described back.
    pub const RANGE: u64 = 5;
    /// A holding compared or listed in a reply.
    pub const HOLDING: u64 = 1;

    /// The units for `bytes` bytes moved, rounded up to whole KiB.
    pub fn bytes(bytes: usize) -> u64 {
        (bytes as u64).div_ceil(1024) * PER_KIB
    }
}

/// How much work one peer may cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLimit {
    /// Units a peer may spend at once.
    pub burst: u64,
    /// Units regained per second: the share of a core one peer may hold for ever,
    /// in millionths (20,000 is a fiftieth of a core).
    pub per_second: u64,
}

impl WorkLimit {
    /// A fifth of a second of a core at once, a fiftieth of a core for ever. An
    /// honest peer costs far less: its input is mostly news (free), and a full
    /// sync of a thousand 64 KiB records from one peer costs about 135,000 units.
    pub const DEFAULT: WorkLimit = WorkLimit {
        burst: 200_000,
        per_second: 20_000,
    };

    /// The lasting share of a core this limit grants one peer.
    pub fn core_share(&self) -> f64 {
        self.per_second as f64 / 1_000_000.0
    }
}

impl Default for WorkLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Balance {
    /// Units left; below zero after a frame that cost more than was left.
    units: i64,
    last_ms: u64,
}

/// The work budget of every peer that has spent any.
#[derive(Debug, Clone, Default)]
pub struct WorkBudgets {
    limit: WorkLimit,
    peers: BTreeMap<NodeId, Balance>,
}

impl WorkBudgets {
    /// Budgets under `limit`.
    pub fn new(limit: WorkLimit) -> Self {
        Self {
            limit,
            peers: BTreeMap::new(),
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> WorkLimit {
        self.limit
    }

    fn refilled(&self, peer: &NodeId, now_ms: u64) -> Balance {
        let burst = i64::try_from(self.limit.burst).unwrap_or(i64::MAX);
        match self.peers.get(peer) {
            None => Balance {
                units: burst,
                last_ms: now_ms,
            },
            Some(balance) => {
                let elapsed = now_ms.saturating_sub(balance.last_ms);
                let gained = elapsed.saturating_mul(self.limit.per_second) / 1000;
                let gained = i64::try_from(gained).unwrap_or(i64::MAX);
                Balance {
                    units: balance.units.saturating_add(gained).min(burst),
                    last_ms: balance.last_ms.max(now_ms),
                }
            }
        }
    }

    /// Whether `peer` has any budget left for another input.
    pub fn has_budget(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.refilled(peer, now_ms).units > 0
    }

    /// Units `peer` has left (negative when it overspent).
    pub fn remaining(&self, peer: &NodeId, now_ms: u64) -> i64 {
        self.refilled(peer, now_ms).units
    }

    /// Charges `peer` for `units` of work already done. A budget goes at most one
    /// burst below zero, so a long flood is not owed for ever.
    pub fn charge(&mut self, peer: NodeId, units: u64, now_ms: u64) {
        if units == 0 {
            return;
        }
        let mut balance = self.refilled(&peer, now_ms);
        let floor = -i64::try_from(self.limit.burst).unwrap_or(i64::MAX);
        let units = i64::try_from(units).unwrap_or(i64::MAX);
        balance.units = balance.units.saturating_sub(units).max(floor);
        self.peers.insert(peer, balance);
    }

    /// Forgets `peer` (after a ban, its budget starts afresh).
    pub fn forget(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }

    /// Drops the balances that have refilled: they carry no information.
    pub fn prune(&mut self, now_ms: u64) {
        let burst = i64::try_from(self.limit.burst).unwrap_or(i64::MAX);
        let limit = self.limit;
        self.peers.retain(|_, balance| {
            let elapsed = now_ms.saturating_sub(balance.last_ms);
            let gained = elapsed.saturating_mul(limit.per_second) / 1000;
            balance
                .units
                .saturating_add(i64::try_from(gained).unwrap_or(i64::MAX))
                < burst
        });
    }

    /// Number of peers with a balance below the burst.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether every peer's budget is full.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: WorkLimit = WorkLimit {
        burst: 1000,
        per_second: 100,
    };

    #[test]
    fn spending_refilling_and_the_floor() {
        let mut budgets = WorkBudgets::new(LIMIT);
        let peer = NodeId::from_bytes([1; 32]);
        assert!(budgets.has_budget(&peer, 0));
        budgets.charge(peer, 900, 0);
        assert_eq!(budgets.remaining(&peer, 0), 100);
        budgets.charge(peer, 300, 0);
        assert!(!budgets.has_budget(&peer, 0), "overspent by one input");
        assert_eq!(budgets.remaining(&peer, 0), -200);
        assert!(!budgets.has_budget(&peer, 2000), "0 after two seconds");
        assert!(budgets.has_budget(&peer, 2010));
        // However much is charged, the debt stops at one burst.
        budgets.charge(peer, 1_000_000, 3000);
        assert_eq!(budgets.remaining(&peer, 3000), -1000);
        assert_eq!(
            budgets.remaining(&peer, 1_000_000),
            1000,
            "never above the burst"
        );
        // A clock that goes backwards refills nothing.
        budgets.charge(peer, 500, 1_000_000);
        assert_eq!(budgets.remaining(&peer, 10), 500);
    }

    #[test]
    fn full_budgets_are_forgotten() {
        let mut budgets = WorkBudgets::new(LIMIT);
        let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
        budgets.charge(a, 100, 0);
        budgets.charge(b, 1000, 0);
        budgets.prune(1000);
        assert_eq!(budgets.len(), 1, "a refilled, b has not");
        budgets.prune(10_000);
        assert!(budgets.is_empty());
    }

    #[test]
    fn byte_costs_round_up() {
        assert_eq!(cost::bytes(0), 0);
        assert_eq!(cost::bytes(1), cost::PER_KIB);
        assert_eq!(cost::bytes(1025), 2 * cost::PER_KIB);
    }
}
