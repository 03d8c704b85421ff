//! What the state machine asks its driver to do, and what it reports.
//!
//! The driver (the network actor or the simulator) takes these one at a time with
//! [`State::poll_output`](super::state::State::poll_output) after every input, in
//! order, and acts on each before the next. Every output carries what the driver
//! needs to act on it: it never has to read the state back to guess what happened.
//!
//! **The durability contract.** [`Output::Persist`] names the node's own record
//! that must survive a crash. Before the driver acts on any output that follows
//! it — above all before it transmits a message or reports a publication as done
//! — it must have made durable (written and synced) both that record, as the
//! node's own latest, and every [`Output::Audit`] event that preceded it (among
//! them the publication's own entry). A record that may have left the node is
//! thus always on its disk first, and a restart continues the chain instead of
//! signing a second record with the same `seq`. With the record goes whether the
//! node still owes a jump of its chain (after taking back records it signed
//! before a loss): a restart while one is owed recovers again instead of signing
//! right above a record that may not be its last.
//!
//! The roster has the same contract: [`Output::PersistVote`] (this node signed
//! a roster operation for an epoch) must be durable before the driver acts on
//! any later output, since the approval is sent after it: a restart then still
//! refuses a second operation for that epoch. [`Output::PersistRosterOp`] and
//! [`Output::PersistRosterFork`] make the chain and a fork proof durable before
//! they are relayed, so a restart restores the roster it acted on.

use std::sync::Arc;

use tidings_keys::{NodeId, Roster};

use super::codec::DecodeError;
use super::directory::ProofVerdict;
use super::equivocation::EquivocationProof;
use super::record::{RecordError, VerifiedRecord};
use super::roster::{
    Received, RosterError, RosterForkProof, RosterHash, SignError, SignedOp, VerifiedOp,
};
use super::score::Offence;
use super::verdict::Verdict;
use super::wire::Message;

/// One thing for the driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Make `record` durable as the node's own latest record, together with every
    /// audit event output before it, before acting on any later output (see the
    /// module docs).
    Persist {
        /// The record.
        record: VerifiedRecord,
        /// Whether the node's next record must jump its chain (it took back a
        /// record from before a loss and has not yet signed above it): a restart
        /// from this disk must recover again.
        jump_owed: bool,
    },
    /// Send a message to a peer (dialling it if needed).
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// This node opened a gossip exchange with `peer` (its opening message is the
    /// next output); the driver may time the reply.
    ExchangeOpened {
        /// The peer.
        peer: NodeId,
    },
    /// Append to the audit log.
    Audit(AuditEvent),
    /// Tell subscribers the directory changed.
    Change(DirectoryChange),
    /// The answer to the local command just handled (publish or withdraw).
    CommandResult(Result<VerifiedRecord, PublishError>),
    /// Whether this node may sign records changed (see [`ChainStatus`]).
    ChainStatus(ChainStatus),
    /// The estimate of this node's clock offset from its peers crossed the warning
    /// threshold (half the tolerated skew), one way or the other.
    ClockOffset {
        /// Peers' clocks minus this node's, median over recent samples.
        offset_ms: i64,
        /// Whether the offset is now beyond the threshold.
        warning: bool,
    },
    /// Make this node's vote durable: it signed operation `id` for `epoch`
    /// (before any later output: the approval is sent after it).
    PersistVote {
        /// The epoch.
        epoch: u64,
        /// The operation signed.
        id: RosterHash,
    },
    /// Make an applied roster operation durable as the next link of the chain.
    PersistRosterOp(Box<VerifiedOp>),
    /// Make a roster fork proof durable: roster changes have stopped.
    PersistRosterFork(Box<RosterForkProof>),
    /// The roster changed: admit `roster` from now on (the TLS verifiers too),
    /// close connections of `removed` keys.
    RosterChanged {
        /// The new epoch.
        epoch: u64,
        /// The new members.
        roster: Arc<Roster>,
        /// Keys admitted by this change.
        added: Vec<NodeId>,
        /// Keys no longer admitted.
        removed: Vec<NodeId>,
    },
    /// The answer to a roster command (propose or approve).
    RosterResult(Result<Box<(SignedOp, Received)>, SignError>),
    /// Close any connection to a banned peer and refuse it until the time given.
    Disconnect {
        /// The peer.
        peer: NodeId,
        /// End of the ban.
        until_ms: u64,
    },
}

/// Whether the node knows its own chain and may sign.
#[derive(Debug, Clone)]
pub enum ChainStatus {
    /// Its history is intact: it signs above its latest own record.
    Known,
    /// It lost its history (no own record on disk although it may have signed
    /// before): it learns its latest record from peers before it signs anything.
    Recovering,
    /// It must not sign: see the reason.
    Halted(Halt),
}

/// Why a node stopped signing.
#[derive(Debug, Clone)]
pub enum Halt {
    /// A record of this node's key that this node did not sign reached it:
    /// another process is signing with this key (or this node's data was
    /// restored from an older copy). Signing above it would fork the chain.
    ForeignSigner(VerifiedRecord),
    /// This node's key is quarantined for equivocation; only a pardon lifts it.
    Quarantined(Box<EquivocationProof>),
    /// The roster no longer lists this node's key (removed, or rotated to
    /// another key: the node is restarted with that key).
    OffRoster {
        /// The key that replaced this one, for a rotation.
        rotated_to: Option<NodeId>,
    },
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::ForeignSigner(record) => write!(
                f,
                "another process is signing with this node's key: record {} (seq {}) was \
                 signed by this key but not by this node (or this node's data was restored \
                 from an older copy); this node stops publishing rather than fork its chain",
                record.id().short(),
                record.seq()
            ),
            Halt::Quarantined(proof) => {
                let (first, second) = proof.record_ids();
                write!(
                    f,
                    "this node's key is quarantined: it signed two conflicting records ({} and {}); \
                     it publishes nothing until the federation pardons it",
                    first.short(),
                    second.short()
                )
            }
            Halt::OffRoster { rotated_to: None } => f.write_str(
                "this node's key was removed from the roster; it publishes nothing",
            ),
            Halt::OffRoster {
                rotated_to: Some(to),
            } => write!(
                f,
                "this node's key was rotated to {to}; restart the node with that key to continue its chain"
            ),
        }
    }
}

/// Why a local publication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The announcement does not make a valid record.
    #[error("cannot publish: {0}")]
    Invalid(RecordError),
    /// This node has published too often; try again shortly.
    #[error("publishing too fast: this node's own rate limit is exhausted, try again shortly")]
    RateLimited,
    /// The node lost its history and waits for peers to return its latest record.
    #[error(
        "this node is waiting for its peers before it signs: it has no record of its own \
         chain on disk, and signing now could fork it; try again once a peer was heard"
    )]
    Recovering,
    /// The node must not sign (another signer of its key, or a quarantine).
    #[error("{0}")]
    Halted(String),
    /// The directory refused the node's own record.
    #[error("the directory refused this node's record: {0}")]
    Refused(String),
    /// No specialist of that name is announced.
    #[error("no specialist named {0:?} is announced by this node")]
    UnknownSpecialist(String),
}

/// A change to the directory.
#[derive(Debug, Clone)]
pub enum DirectoryChange {
    /// An origin's first record.
    Added(VerifiedRecord),
    /// An origin's newer record.
    Updated {
        /// The record it replaced.
        previous: VerifiedRecord,
        /// The new record.
        record: VerifiedRecord,
    },
    /// A record's lifetime ended.
    Expired(VerifiedRecord),
    /// An origin left the roster (removed, or its key rotated); its record is gone.
    LeftRoster(VerifiedRecord),
    /// An origin's quarantine was lifted by a roster pardon.
    Pardoned {
        /// The origin.
        origin: NodeId,
        /// Its chain restarts above this seq.
        above_seq: u64,
    },
    /// An origin was caught equivocating; its record is gone.
    Quarantined {
        /// The origin.
        origin: NodeId,
        /// The proof (what the driver stores).
        proof: Box<EquivocationProof>,
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
    /// This node took back its own latest record (after losing its history) from
    /// a peer, or from its own disk (`peer` is `None`).
    Recovered {
        /// The peer that held it.
        peer: Option<NodeId>,
        /// The record.
        record: VerifiedRecord,
    },
    /// This node stopped signing.
    Halted {
        /// The peer whose input revealed it, if any.
        peer: Option<NodeId>,
        /// Why.
        halt: Halt,
    },
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
    /// A roster operation or proposal was seen, signed, applied or refused.
    Roster {
        /// Who sent it (`None`: this node, its store, or its operator).
        peer: Option<NodeId>,
        /// The operation's id, epoch and action, in words.
        id: RosterHash,
        /// The epoch it makes.
        epoch: u64,
        /// What it does, in words.
        action: String,
        /// What happened.
        outcome: RosterOutcome,
    },
    /// Two valid roster operations for one epoch.
    RosterFork {
        /// Who sent the proof or the second operation.
        peer: Option<NodeId>,
        /// The proof.
        proof: Box<RosterForkProof>,
    },
}

/// What became of a roster operation, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterOutcome {
    /// A proposal seen, or new approvals merged into it.
    Proposal {
        /// Approvals held.
        approvals: usize,
        /// The threshold.
        needed: usize,
    },
    /// This node proposed or approved it.
    Signed,
    /// It reached its threshold and was applied.
    Applied,
    /// It was refused.
    Refused(RosterError),
    /// Its proposer has the most open proposals allowed.
    TooManyProposals,
    /// It expired unapproved.
    Expired,
}

impl AuditEvent {
    /// The audit event for `op` and `outcome`.
    pub fn roster(peer: Option<NodeId>, op: &SignedOp, outcome: RosterOutcome) -> Self {
        AuditEvent::Roster {
            peer,
            id: op.id(),
            epoch: op.body.epoch,
            action: op.body.action.to_string(),
            outcome,
        }
    }
}
