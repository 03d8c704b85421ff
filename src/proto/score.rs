//! Peer scores: what a peer's misbehaviour has cost it, and when it is banned.
//!
//! Each offence adds penalty points; points drain by one per [`DECAY_MS`]. A peer
//! that reaches the threshold is banned for a while (the caller disconnects it and
//! audits the ban) and its score starts afresh when the ban ends. Only `Rejected`
//! inputs and protocol abuse are offences: an honest peer never sends them.
//! Separately, every peer has a work budget (see [`super::budget`]); input beyond
//! it is dropped and counts as flooding.

use std::collections::BTreeMap;
use std::fmt;

use tidings_keys::NodeId;

use super::budget::WorkLimit;
use super::verdict::VerdictKind;

/// Penalty points drain at one per this many milliseconds.
pub const DECAY_MS: u64 = 1000;

/// Something a peer did that an honest peer never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Offence {
    /// It sent a record that was `Rejected` (forged, malformed, unadmitted, ...).
    Rejected(VerdictKind),
    /// It sent a frame that does not decode.
    MalformedFrame,
    /// It sent an equivocation proof that proves nothing.
    InvalidProof,
    /// It sent input beyond its work budget.
    Flooding,
    /// It listed a record, was asked for it, and did not deliver.
    BrokenPromise,
    /// It sent a roster operation or proposal that breaks a rule no honest
    /// relay breaks (a forged approval or countersignature, a signer off the
    /// roster, an action the state forbids, a malformed encoding).
    InvalidRosterOp,
}

impl Offence {
    /// Penalty points of this offence.
    pub fn penalty(&self) -> u32 {
        match self {
            Offence::Rejected(VerdictKind::BadSignature | VerdictKind::NotAdmitted) => 40,
            Offence::Rejected(_) => 20,
            Offence::MalformedFrame | Offence::InvalidProof | Offence::InvalidRosterOp => 40,
            Offence::Flooding => 5,
            Offence::BrokenPromise => 1,
        }
    }
}

impl fmt::Display for Offence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offence::Rejected(kind) => write!(f, "sent a rejected record ({kind})"),
            Offence::MalformedFrame => f.write_str("sent a malformed frame"),
            Offence::InvalidProof => f.write_str("sent an invalid equivocation proof"),
            Offence::Flooding => f.write_str("exceeded its work budget"),
            Offence::BrokenPromise => f.write_str("did not deliver a record it listed"),
            Offence::InvalidRosterOp => f.write_str("sent an invalid roster operation"),
        }
    }
}

/// Score thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScorePolicy {
    /// Points at which a peer is banned.
    pub ban_threshold: u32,
    /// How long a ban lasts.
    pub ban_ms: u64,
    /// The work a peer's input may cause.
    pub work: WorkLimit,
}

impl Default for ScorePolicy {
    fn default() -> Self {
        Self {
            ban_threshold: 100,
            ban_ms: 10 * 60 * 1000,
            work: WorkLimit::DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerScore {
    points: u32,
    last_ms: u64,
}

/// The result of a penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Penalty {
    /// Points were added; the peer stays.
    Penalised {
        /// Points after this offence.
        points: u32,
    },
    /// The peer reached the threshold and is banned until the given time.
    Banned {
        /// Points after this offence.
        points: u32,
        /// End of the ban.
        until_ms: u64,
    },
}

/// Scores of every peer that has had any.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    policy: ScorePolicy,
    peers: BTreeMap<NodeId, PeerScore>,
}

impl Scores {
    /// Scores under `policy`.
    pub fn new(policy: ScorePolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Current points of `peer`, after decay.
    pub fn points(&self, peer: &NodeId, now_ms: u64) -> u32 {
        self.peers
            .get(peer)
            .map(|score| decayed(score, now_ms))
            .unwrap_or(0)
    }

    /// Charges `peer` for `offence`.
    pub fn penalise(&mut self, peer: NodeId, offence: Offence, now_ms: u64) -> Penalty {
        let points = self.points(&peer, now_ms).saturating_add(offence.penalty());
        if points >= self.policy.ban_threshold {
            self.peers.remove(&peer);
            return Penalty::Banned {
                points,
                until_ms: now_ms.saturating_add(self.policy.ban_ms),
            };
        }
        self.peers.insert(
            peer,
            PeerScore {
                points,
                last_ms: now_ms,
            },
        );
        Penalty::Penalised { points }
    }

    /// Drops state of peers whose points have fully drained.
    pub fn prune(&mut self, now_ms: u64) {
        self.peers.retain(|_, score| decayed(score, now_ms) > 0);
    }
}

fn decayed(score: &PeerScore, now_ms: u64) -> u32 {
    let drained = now_ms.saturating_sub(score.last_ms) / DECAY_MS;
    score
        .points
        .saturating_sub(u32::try_from(drained).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offences_accumulate_decay_and_ban() {
        let mut scores = Scores::new(ScorePolicy::default());
        let peer = NodeId::from_bytes([1; 32]);
        assert_eq!(
            scores.penalise(peer, Offence::MalformedFrame, 0),
            Penalty::Penalised { points: 40 }
        );
        assert_eq!(scores.points(&peer, 10_000), 30, "ten points drained");
        assert_eq!(
            scores.penalise(peer, Offence::MalformedFrame, 10_000),
            Penalty::Penalised { points: 70 }
        );
        assert!(matches!(
            scores.penalise(peer, Offence::Rejected(VerdictKind::BadSignature), 10_000),
            Penalty::Banned {
                points: 110,
                until_ms: 610_000
            }
        ));
        assert_eq!(
            scores.points(&peer, 10_000),
            0,
            "starts afresh after the ban"
        );
    }

    #[test]
    fn honest_noise_never_bans() {
        // A lossy link breaks a promise every second, forever.
        let mut scores = Scores::new(ScorePolicy::default());
        let peer = NodeId::from_bytes([2; 32]);
        for second in 0..10_000u64 {
            let outcome = scores.penalise(peer, Offence::BrokenPromise, second * 1000);
            assert!(matches!(outcome, Penalty::Penalised { .. }));
        }
    }
}
