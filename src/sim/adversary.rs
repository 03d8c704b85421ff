//! Adversaries: admitted members that misbehave, each in one documented way.
//!
//! An adversary runs the real [`State`](crate::proto::State) where that helps it
//! look honest, and the world filters what it sends and adds what it injects.

use serde::Serialize;

use crate::proto::wire::Message;

/// What a simulated member does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Follows the protocol.
    Honest,
    /// Never answers and never sends.
    Silent,
    /// Takes part in digests, lists what it holds, and never delivers a record.
    Withholding,
    /// Sends records signed for other origins, from unadmitted keys, or tampered.
    Forging,
    /// Signs two records with the same seq and shows each to different peers.
    Equivocating,
    /// Publishes at its maximum rate and floods a few peers with frames each round.
    Flooding,
    /// Resends old records it has seen.
    Replaying,
    /// With the other eclipsers, targets one honest node: floods it with digests,
    /// sends it forgeries, and never delivers a record to it.
    Eclipsing,
}

impl Role {
    /// Whether the member follows the protocol.
    pub fn is_honest(self) -> bool {
        self == Role::Honest
    }

    /// Whether the member publishes its own (valid) record at the start.
    pub fn publishes(self) -> bool {
        !matches!(self, Role::Silent)
    }

    /// Whether a message the member's state wants to send actually leaves.
    pub fn lets_out(self, message: &Message, to_target: bool) -> bool {
        let delivers = matches!(
            message,
            Message::Records(_) | Message::Push(_) | Message::Proofs(_)
        );
        match self {
            Role::Silent => false,
            Role::Withholding => !delivers,
            Role::Eclipsing => !(delivers && to_target),
            _ => true,
        }
    }
}

/// Frames a flooder sends to each of its victims per round.
pub const FLOOD_FRAMES: usize = 600;
/// Victims a flooder picks per round.
pub const FLOOD_VICTIMS: usize = 3;
/// Records a flooder signs per round.
pub const FLOOD_RECORDS: usize = 5;
/// Digests each eclipser sends its target per round.
pub const ECLIPSE_FRAMES: usize = 30;
