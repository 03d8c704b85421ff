//! How far this node's clock is from its peers'.
//!
//! Records carry their signer's clock (`issued_at`), and a node whose clock is off
//! by more than the tolerated skew silently refuses fresh records as expired or
//! future-dated. So every node compares its clock with its peers': each exchange
//! opens with the sender's time ([`Message::Open`](super::wire::Message::Open)),
//! and the receiver keeps the latest `their time − our time` of the
//! [`CLOCK_PEERS`] peers it heard from most recently. The estimate is the median
//! over those heard within [`SAMPLE_LIFETIME_MS`], so a minority of lying peers
//! cannot move it far. The samples include the one-way network delay
//! (milliseconds), which is negligible beside the thresholds (tens of seconds).
//!
//! Records' `issued_at` are not used: most records reach a node through relays, so
//! their issue time says when the origin signed them, not what its clock reads now.
//!
//! The estimate crosses into a warning beyond half the tolerated skew and out of
//! it below a quarter, so it does not flap around the threshold.

use tidings_keys::NodeId;

use super::limits::MAX_CLOCK_SKEW_MS;

/// A peer's sample is forgotten after this long without a new one.
pub const SAMPLE_LIFETIME_MS: u64 = 10 * 60 * 1000;

/// Offsets beyond this (either way) raise the warning.
pub const WARN_OFFSET_MS: u64 = MAX_CLOCK_SKEW_MS / 2;

/// Offsets below this end the warning.
pub const CLEAR_OFFSET_MS: u64 = MAX_CLOCK_SKEW_MS / 4;

/// Peers whose latest sample is kept: the most recently heard. Enough for a
/// median that a few liars cannot move, small enough to cost nothing per node.
pub const CLOCK_PEERS: usize = 9;

/// One peer's latest sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    peer: NodeId,
    offset_ms: i64,
    at_ms: u64,
}

/// Clock samples from peers.
#[derive(Debug, Clone, Default)]
pub struct ClockWatch {
    samples: Vec<Sample>,
    warning: bool,
}

/// A change of the warning state, for the driver to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetChange {
    /// The estimate: peers' clocks minus ours.
    pub offset_ms: i64,
    /// Whether it is now beyond the threshold.
    pub warning: bool,
}

impl ClockWatch {
    /// Records that `peer`'s clock read `their_ms` when ours read `now_ms`; returns
    /// a change of the warning state, if any.
    pub fn sample(&mut self, peer: NodeId, their_ms: u64, now_ms: u64) -> Option<OffsetChange> {
        let offset_ms = (i128::from(their_ms) - i128::from(now_ms))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        let sample = Sample {
            peer,
            offset_ms,
            at_ms: now_ms,
        };
        let cutoff = now_ms.saturating_sub(SAMPLE_LIFETIME_MS);
        self.samples
            .retain(|kept| kept.at_ms >= cutoff && kept.peer != peer);
        if self.samples.len() == CLOCK_PEERS {
            // The oldest sample makes room (samples are kept in arrival order).
            self.samples.remove(0);
        }
        self.samples.push(sample);
        let offset_ms = self.offset_ms()?;
        let size = offset_ms.unsigned_abs();
        let warning = if self.warning {
            size >= CLEAR_OFFSET_MS
        } else {
            size > WARN_OFFSET_MS
        };
        if warning == self.warning {
            return None;
        }
        self.warning = warning;
        Some(OffsetChange { offset_ms, warning })
    }

    /// The median offset over the peers heard recently (peers' clocks minus ours).
    pub fn offset_ms(&self) -> Option<i64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut buffer = [0i64; CLOCK_PEERS];
        let offsets = &mut buffer[..self.samples.len()];
        for (slot, sample) in offsets.iter_mut().zip(&self.samples) {
            *slot = sample.offset_ms;
        }
        offsets.sort_unstable();
        let middle = offsets.len() / 2;
        Some(if offsets.len() % 2 == 1 {
            offsets[middle]
        } else {
            ((i128::from(offsets[middle - 1]) + i128::from(offsets[middle])) / 2) as i64
        })
    }

    /// Peers sampled within the lifetime (as of the last sample), at most
    /// [`CLOCK_PEERS`].
    pub fn peers(&self) -> usize {
        self.samples.len()
    }

    /// Whether the offset is beyond the warning threshold.
    pub fn is_warning(&self) -> bool {
        self.warning
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn a_clock_two_hours_ahead_is_reported_once() {
        let mut watch = ClockWatch::default();
        let now = 1_700_000_000_000;
        let ahead = 2 * 3600 * 1000;
        // Peers' clocks read two hours less than ours: we are ahead.
        let change = watch.sample(peer(1), now - ahead, now).unwrap();
        assert!(change.warning);
        assert_eq!(change.offset_ms, -(ahead as i64));
        assert_eq!(watch.sample(peer(2), now - ahead + 5, now + 1), None);
        // Fixed: samples agree again and the warning clears once the median does.
        assert_eq!(watch.sample(peer(1), now + 10, now + 10), None);
        let cleared = watch.sample(peer(2), now + 20, now + 20).unwrap();
        assert!(!cleared.warning);
        assert!(cleared.offset_ms.unsigned_abs() < CLEAR_OFFSET_MS);
    }

    #[test]
    fn a_minority_of_liars_does_not_move_the_median() {
        let mut watch = ClockWatch::default();
        let now = 1_700_000_000_000;
        for n in 0..5 {
            assert_eq!(watch.sample(peer(n), now + 3, now), None);
        }
        for n in 5..8 {
            assert_eq!(watch.sample(peer(n), now + 9_000_000, now), None);
        }
        assert_eq!(watch.offset_ms(), Some(3));
        assert!(!watch.is_warning());
    }

    #[test]
    fn only_the_most_recent_peers_are_kept() {
        let mut watch = ClockWatch::default();
        let now = 1_700_000_000_000;
        for n in 0..20u8 {
            watch.sample(peer(n), now + u64::from(n), now);
        }
        assert_eq!(watch.peers(), CLOCK_PEERS);
        // Peers 11..=19 remain: their median offset is 15.
        assert_eq!(watch.offset_ms(), Some(15));
        // A peer heard again replaces its own sample.
        watch.sample(peer(19), now + 100, now);
        assert_eq!(watch.peers(), CLOCK_PEERS);
    }

    #[test]
    fn samples_age_out_and_extreme_values_do_not_overflow() {
        let mut watch = ClockWatch::default();
        watch.sample(peer(1), u64::MAX, 0);
        assert_eq!(watch.offset_ms(), Some(i64::MAX));
        let later = SAMPLE_LIFETIME_MS + 1;
        watch.sample(peer(2), later, later);
        assert_eq!(watch.peers(), 1);
        assert_eq!(watch.offset_ms(), Some(0));
    }
}
