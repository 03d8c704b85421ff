//! What the audit log records for each event of the protocol.
//!
//! The state machine reports [`AuditEvent`]s; this module turns each into log
//! entries, with the signed bytes as evidence where there are some: the accepted or
//! published record, or the equivocation proof. Duplicates never reach here (they
//! are only counted), and relays carry no evidence (the record was stored when it
//! was accepted or published).

pub mod coalesce;

use tidings_audit::{EntryKind, NewEntry, RecordKey};
use tidings_keys::NodeId;

use crate::proto::directory::ProofVerdict;
use crate::proto::event::{AuditEvent, Halt, RosterOutcome};
use crate::proto::verdict::{Ignored, Rejection, Verdict};
use crate::proto::{EquivocationProof, RecordId};

/// The log key of a record.
pub fn record_key(id: &RecordId) -> RecordKey {
    RecordKey(id.0)
}

/// The log key of an equivocation proof: a hash of its bytes.
pub fn proof_key(proof: &EquivocationProof) -> RecordKey {
    RecordKey(blake3::derive_key("tidings proof v1", &proof.encode()))
}

fn entry(at_ms: u64, kind: EntryKind, peer: Option<NodeId>, origin: Option<NodeId>) -> NewEntry {
    NewEntry {
        at_ms,
        kind,
        peer,
        origin,
        record: None,
        reason: String::new(),
        evidence: None,
    }
}

/// The entry for one event at `at_ms`, if it is recorded.
pub fn entry_for(event: &AuditEvent, at_ms: u64) -> Option<NewEntry> {
    Some(match event {
        AuditEvent::Verdict { peer, verdict } => verdict_entry(*peer, verdict, at_ms)?,
        AuditEvent::Published(record) => NewEntry {
            record: Some(record_key(&record.id())),
            reason: format!("published seq {}", record.seq()),
            evidence: Some(record.wire_bytes().to_vec()),
            ..entry(at_ms, EntryKind::Published, None, Some(record.origin()))
        },
        AuditEvent::Recovered { peer, record } => NewEntry {
            record: Some(record_key(&record.id())),
            reason: format!(
                "took back this node's own record seq {} (its history was lost)",
                record.seq()
            ),
            evidence: Some(record.wire_bytes().to_vec()),
            ..entry(at_ms, EntryKind::Recovered, *peer, Some(record.origin()))
        },
        AuditEvent::Halted { peer, halt } => {
            let (record, evidence, origin) = match halt {
                Halt::ForeignSigner(record) => (
                    record_key(&record.id()),
                    record.wire_bytes().to_vec(),
                    Some(record.origin()),
                ),
                Halt::Quarantined(proof) => {
                    (proof_key(proof), proof.encode(), proof.claimed_origin())
                }
                Halt::OffRoster { .. } => {
                    return Some(NewEntry {
                        reason: halt.to_string(),
                        ..entry(at_ms, EntryKind::Halted, *peer, None)
                    })
                }
            };
            NewEntry {
                record: Some(record),
                reason: halt.to_string(),
                evidence: Some(evidence),
                ..entry(at_ms, EntryKind::Halted, *peer, origin)
            }
        }
        AuditEvent::Roster {
            peer,
            id,
            epoch,
            action,
            outcome,
        } => {
            let (kind, what) = match outcome {
                RosterOutcome::Proposal { approvals, needed } => (
                    EntryKind::RosterProposal,
                    format!("proposal with {approvals} of {needed} approvals"),
                ),
                RosterOutcome::Signed => (EntryKind::RosterSigned, "signed by this node".into()),
                RosterOutcome::Applied => (EntryKind::RosterApplied, "applied".into()),
                RosterOutcome::Refused(error) => {
                    (EntryKind::RosterRefused, format!("refused: {error}"))
                }
                RosterOutcome::TooManyProposals => (
                    EntryKind::RosterRefused,
                    "refused: its proposer has the most open proposals allowed".into(),
                ),
                RosterOutcome::Expired => (EntryKind::RosterProposal, "expired unapproved".into()),
            };
            let action = if action.is_empty() {
                String::new()
            } else {
                format!(" ({action})")
            };
            NewEntry {
                record: Some(record_key(&RecordId(id.0))),
                reason: format!(
                    "roster operation {} for epoch {epoch}{action}: {what}",
                    id.short()
                ),
                ..entry(at_ms, kind, *peer, None)
            }
        }
        AuditEvent::RosterFork { peer, proof } => {
            let (first, second) = proof.ops();
            let signers: Vec<String> = proof.double_signers().iter().map(|id| id.short()).collect();
            NewEntry {
                record: Some(record_key(&RecordId(first.id().0))),
                reason: format!(
                    "roster fork at epoch {}: operations {} and {} both carry a threshold; \
                     approved both: {}; roster changes stop",
                    proof.epoch(),
                    first.id().short(),
                    second.id().short(),
                    signers.join(", ")
                ),
                ..entry(at_ms, EntryKind::RosterFork, *peer, None)
            }
        }
        AuditEvent::Relayed { to, record } => NewEntry {
            record: Some(record_key(&record.id())),
            ..entry(at_ms, EntryKind::Relayed, Some(*to), Some(record.origin()))
        },
        AuditEvent::Proof {
            peer,
            verdict,
            proof,
        } => {
            let (kind, origin, reason) = match verdict {
                ProofVerdict::Quarantined { origin, .. } => (
                    EntryKind::Quarantine,
                    Some(*origin),
                    "quarantined on a received equivocation proof".to_string(),
                ),
                ProofVerdict::AlreadyQuarantined(origin) => (
                    EntryKind::Ignored,
                    Some(*origin),
                    "proof for an origin already quarantined".into(),
                ),
                ProofVerdict::NotAdmitted(origin) => (
                    EntryKind::Ignored,
                    Some(*origin),
                    "proof about an origin outside the roster".into(),
                ),
                ProofVerdict::Pardoned(origin) => (
                    EntryKind::Ignored,
                    Some(*origin),
                    "proof of a fork the federation pardoned".into(),
                ),
                ProofVerdict::Rejected(error) => (
                    EntryKind::ProofRejected,
                    proof.claimed_origin(),
                    error.to_string(),
                ),
            };
            let evidence = (kind == EntryKind::Quarantine).then(|| proof.encode());
            NewEntry {
                record: Some(proof_key(proof)),
                reason,
                evidence,
                ..entry(at_ms, kind, *peer, origin)
            }
        }
        AuditEvent::MalformedFrame { peer, error } => NewEntry {
            reason: error.to_string(),
            ..entry(at_ms, EntryKind::MalformedFrame, Some(*peer), None)
        },
        AuditEvent::Penalised {
            peer,
            offence,
            points,
        } => NewEntry {
            reason: format!("{offence} ({points} points)"),
            ..entry(at_ms, EntryKind::Penalised, Some(*peer), None)
        },
        AuditEvent::Banned {
            peer,
            offence,
            until_ms,
        } => NewEntry {
            reason: format!(
                "{offence}; banned for {} s",
                until_ms.saturating_sub(at_ms) / 1000
            ),
            ..entry(at_ms, EntryKind::Banned, Some(*peer), None)
        },
        AuditEvent::Expired(record) => NewEntry {
            record: Some(record_key(&record.id())),
            reason: format!("seq {} expired", record.seq()),
            ..entry(at_ms, EntryKind::Expired, None, Some(record.origin()))
        },
    })
}

fn verdict_entry(peer: Option<NodeId>, verdict: &Verdict, at_ms: u64) -> Option<NewEntry> {
    let origin = verdict.origin();
    let base = |kind| entry(at_ms, kind, peer, origin);
    Some(match verdict {
        Verdict::Duplicate(_) => return None,
        Verdict::Accepted { record, replaced } => NewEntry {
            record: Some(record_key(&record.id())),
            reason: match replaced {
                Some(previous) => format!(
                    "accepted seq {}, replacing {}",
                    record.seq(),
                    previous.id().short()
                ),
                None => format!("accepted seq {}", record.seq()),
            },
            evidence: Some(record.wire_bytes().to_vec()),
            ..base(EntryKind::Accepted)
        },
        Verdict::Stale {
            record,
            current_seq,
        } => NewEntry {
            record: Some(record_key(&record.id)),
            reason: format!(
                "stale: seq {} is older than the held seq {current_seq}",
                record.seq
            ),
            ..base(EntryKind::Stale)
        },
        Verdict::Ignored(ignored) => {
            let record = match ignored {
                Ignored::Expired(r)
                | Ignored::RateLimited(r)
                | Ignored::FutureDated { record: r, .. } => Some(record_key(&r.id)),
                Ignored::Quarantined(_) | Ignored::NotOnRoster { .. } => None,
            };
            NewEntry {
                record,
                reason: ignored.to_string(),
                ..base(EntryKind::Ignored)
            }
        }
        Verdict::Rejected(rejection) => NewEntry {
            // The id of the refused record bytes, where they decoded that far: a
            // trace of that id shows the refusal and who sent it. The bytes are
            // not kept: a signature that does not verify proves nothing about
            // anyone, and the entry already names the peer to blame.
            record: match rejection {
                Rejection::BadSignature(record) | Rejection::TtlTooLong { record, .. } => {
                    Some(record_key(&record.id))
                }
                _ => None,
            },
            reason: format!("{}: {rejection}", rejection.kind()),
            ..base(EntryKind::Rejected)
        },
        Verdict::Equivocation(proof) => NewEntry {
            record: Some(proof_key(proof)),
            reason: {
                let (a, b) = proof.record_ids();
                format!(
                    "equivocation: records {} and {} conflict",
                    a.short(),
                    b.short()
                )
            },
            evidence: Some(proof.encode()),
            ..base(EntryKind::Equivocation)
        },
    })
}
