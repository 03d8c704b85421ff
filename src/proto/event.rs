//! What the state machine asks its driver to do, and what it reports.
//!
//! The driver (the network actor or the simulator) drains these after every input:
//! it sends messages, writes audit events to the audit log, and publishes
//! directory changes to subscribers.

use tidings_keys::NodeId;

use super::codec::DecodeError;
use super::directory::ProofVerdict;
use super::equivocation::EquivocationProof;
use super::record::{RecordId, VerifiedRecord};
use super::score::Offence;
use super::verdict::Verdict;
use super::wire::Message;

/// One thing for the driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send a message to a peer (dialling it if needed).
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Append to the audit log.
    Audit(AuditEvent),
    /// Tell subscribers the directory changed.
    Change(DirectoryChange),
    /// A local command (publish, withdraw) could not be carried out.
    CommandFailed(super::state::PublishError),
    /// Close any connection to a banned peer and refuse it until the time given.
    Disconnect {
        /// The peer.
        peer: NodeId,
        /// End of the ban.
        until_ms: u64,
    },
}

/// A change to the directory.
#[derive(Debug, Clone)]
pub enum DirectoryChange {
    /// An origin's first record.
    Added(VerifiedRecord),
    /// An origin's newer record.
    Updated {
        /// The record it replaced.
        previous: RecordId,
        /// The new record.
        record: VerifiedRecord,
    },
    /// A record's lifetime ended.
    Expired(VerifiedRecord),
    /// An origin was caught equivocating; its record is gone.
    Quarantined {
        /// The origin.
        origin: NodeId,
    },
}

/// Something the audit log must record.
#[derive(Debug, Clone)]
pub enum AuditEvent {
    /// A verdict on a record received from a peer (or loaded locally).
    Verdict {
        /// Who sent it (`None` for local input).
        peer: Option<NodeId>,
        /// The verdict, with the verified record where there is one.
        verdict: Verdict,
    },
    /// This node signed and published a record.
    Published(VerifiedRecord),
    /// This node sent a record to a peer.
    Relayed {
        /// The peer.
        to: NodeId,
        /// The record.
        record: VerifiedRecord,
    },
    /// An equivocation proof arrived.
    Proof {
        /// Who sent it.
        peer: Option<NodeId>,
        /// What was decided.
        verdict: ProofVerdict,
        /// The proof.
        proof: Box<EquivocationProof>,
    },
    /// A frame that does not decode.
    MalformedFrame {
        /// The sender.
        peer: NodeId,
        /// Why.
        error: DecodeError,
    },
    /// A peer lost score.
    Penalised {
        /// The peer.
        peer: NodeId,
        /// What it did.
        offence: Offence,
        /// Its points after the offence.
        points: u32,
    },
    /// A peer was banned.
    Banned {
        /// The peer.
        peer: NodeId,
        /// The offence that crossed the threshold.
        offence: Offence,
        /// End of the ban.
        until_ms: u64,
    },
    /// A record expired and left the directory.
    Expired(VerifiedRecord),
}
