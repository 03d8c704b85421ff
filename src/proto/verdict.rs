//! Verdicts: what a node decided about one input, and why.
//!
//! `Rejected` means the sending peer misbehaved (an honest peer verifies before it
//! relays), so it costs that peer score. `Ignored` costs no score: clock skew, races
//! and rate limits happen to honest peers too; like every input that changes
//! nothing, it is charged to the peer's work budget (see [`super::budget`]). Every
//! verdict but `Duplicate` is audited; duplicates are only counted.

use std::fmt;

use tidings_keys::{FederationId, NodeId};

use super::codec::DecodeError;
use super::equivocation::EquivocationProof;
use super::record::{RecordError, RecordId, VerifiedRecord};

/// The decision on one received record.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Stored: it replaced the origin's record (if any) and is to be relayed.
    Accepted {
        /// The record now current for its origin.
        record: VerifiedRecord,
        /// The record it replaced.
        replaced: Option<VerifiedRecord>,
    },
    /// The same record is already held.
    Duplicate(RecordRef),
    /// Older than the origin's current record.
    Stale {
        /// The stale record.
        record: RecordRef,
        /// The sequence number currently held.
        current_seq: u64,
    },
    /// Dropped without blame.
    Ignored(Ignored),
    /// Refused: the peer that sent it misbehaved.
    Rejected(Rejection),
    /// The origin signed two histories: here is the proof. The origin is now
    /// quarantined.
    Equivocation(Box<EquivocationProof>),
}

/// A short reference to a verified record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    /// Signer.
    pub origin: NodeId,
    /// Sequence number.
    pub seq: u64,
    /// Record id.
    pub id: RecordId,
}

impl From<&VerifiedRecord> for RecordRef {
    fn from(record: &VerifiedRecord) -> Self {
        Self {
            origin: record.origin(),
            seq: record.seq(),
            id: record.id(),
        }
    }
}

/// Why a record was dropped without blaming the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// The origin is quarantined for equivocation.
    Quarantined(NodeId),
    /// Its lifetime is over.
    Expired(RecordRef),
    /// Issued further in the future than the tolerated clock skew.
    FutureDated {
        /// The record.
        record: RecordRef,
        /// How far ahead of our clock it was issued.
        ahead_ms: u64,
    },
    /// The origin's token bucket is empty.
    RateLimited(RecordRef),
    /// The origin is not on this node's roster, but the sender is not to blame:
    /// the origin was removed within the grace period (the sender may not have
    /// applied the removal yet), or a peer showed a later roster epoch than this
    /// node's (the origin may have been added since).
    NotOnRoster {
        /// The origin.
        origin: NodeId,
        /// Why the sender is excused.
        excuse: RosterExcuse,
    },
}

/// Why a record of an origin off the roster is not blamed on its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterExcuse {
    /// The origin was removed recently.
    RecentlyRemoved,
    /// This node is behind on the roster.
    RosterBehind,
}

/// Why a record was refused; the sending peer is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Too large, truncated, garbage or non-canonical.
    Malformed(DecodeError),
    /// Signed for another federation.
    WrongFederation(FederationId),
    /// A record format version this node does not read.
    UnsupportedVersion(u8),
    /// The origin is not on the roster.
    NotAdmitted(NodeId),
    /// The signature does not verify under the claimed origin's key.
    BadSignature(RecordRef),
    /// The origin granted itself a lifetime above the maximum.
    TtlTooLong {
        /// The record.
        record: RecordRef,
        /// Its lifetime.
        ttl_ms: u64,
    },
}

impl From<RecordError> for Rejection {
    fn from(error: RecordError) -> Self {
        match error {
            RecordError::Malformed(decode) => Rejection::Malformed(decode),
            RecordError::WrongFederation { found } => Rejection::WrongFederation(found),
            RecordError::UnsupportedVersion(version) => Rejection::UnsupportedVersion(version),
            RecordError::BadSignature {
                origin, seq, id, ..
            } => Rejection::BadSignature(RecordRef { origin, seq, id }),
        }
    }
}

/// The kind of a verdict, without its data: for counters, logs and audit entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VerdictKind {
    /// See [`Verdict::Accepted`].
    Accepted,
    /// See [`Verdict::Duplicate`].
    Duplicate,
    /// See [`Verdict::Stale`].
    Stale,
    /// See [`Ignored::Quarantined`].
    Quarantined,
    /// See [`Ignored::Expired`].
    Expired,
    /// See [`Ignored::FutureDated`].
    FutureDated,
    /// See [`Ignored::RateLimited`].
    RateLimited,
    /// See [`Ignored::NotOnRoster`].
    NotOnRoster,
    /// See [`Rejection::Malformed`].
    Malformed,
    /// See [`Rejection::WrongFederation`].
    WrongFederation,
    /// See [`Rejection::UnsupportedVersion`].
    UnsupportedVersion,
    /// See [`Rejection::NotAdmitted`].
    NotAdmitted,
    /// See [`Rejection::BadSignature`].
    BadSignature,
    /// See [`Rejection::TtlTooLong`].
    TtlTooLong,
    /// See [`Verdict::Equivocation`].
    Equivocation,
}

impl VerdictKind {
    /// A stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Accepted => "accepted",
            VerdictKind::Duplicate => "duplicate",
            VerdictKind::Stale => "stale",
            VerdictKind::Quarantined => "quarantined",
            VerdictKind::Expired => "expired",
            VerdictKind::FutureDated => "future_dated",
            VerdictKind::RateLimited => "rate_limited",
            VerdictKind::NotOnRoster => "not_on_roster",
            VerdictKind::Malformed => "malformed",
            VerdictKind::WrongFederation => "wrong_federation",
            VerdictKind::UnsupportedVersion => "unsupported_version",
            VerdictKind::NotAdmitted => "not_admitted",
            VerdictKind::BadSignature => "bad_signature",
            VerdictKind::TtlTooLong => "ttl_too_long",
            VerdictKind::Equivocation => "equivocation",
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Verdict {
    /// The kind of this verdict.
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Accepted { .. } => VerdictKind::Accepted,
            Verdict::Duplicate(_) => VerdictKind::Duplicate,
            Verdict::Stale { .. } => VerdictKind::Stale,
            Verdict::Ignored(Ignored::Quarantined(_)) => VerdictKind::Quarantined,
            Verdict::Ignored(Ignored::Expired(_)) => VerdictKind::Expired,
            Verdict::Ignored(Ignored::FutureDated { .. }) => VerdictKind::FutureDated,
            Verdict::Ignored(Ignored::RateLimited(_)) => VerdictKind::RateLimited,
            Verdict::Ignored(Ignored::NotOnRoster { .. }) => VerdictKind::NotOnRoster,
            Verdict::Rejected(rejection) => rejection.kind(),
            Verdict::Equivocation(_) => VerdictKind::Equivocation,
        }
    }

    /// Whether the peer that sent the input is to blame.
    pub fn blames_peer(&self) -> bool {
        matches!(self, Verdict::Rejected(_))
    }

    /// The origin the input claimed, when it got far enough to know.
    pub fn origin(&self) -> Option<NodeId> {
        match self {
            Verdict::Accepted { record, .. } => Some(record.origin()),
            Verdict::Duplicate(record)
            | Verdict::Stale { record, .. }
            | Verdict::Ignored(
                Ignored::Expired(record)
                | Ignored::FutureDated { record, .. }
                | Ignored::RateLimited(record),
            )
            | Verdict::Rejected(
                Rejection::TtlTooLong { record, .. } | Rejection::BadSignature(record),
            ) => Some(record.origin),
            Verdict::Ignored(
                Ignored::Quarantined(origin) | Ignored::NotOnRoster { origin, .. },
            )
            | Verdict::Rejected(Rejection::NotAdmitted(origin)) => Some(*origin),
            Verdict::Equivocation(proof) => proof.claimed_origin(),
            Verdict::Rejected(_) => None,
        }
    }
}

impl Rejection {
    /// The kind of this rejection.
    pub fn kind(&self) -> VerdictKind {
        match self {
            Rejection::Malformed(_) => VerdictKind::Malformed,
            Rejection::WrongFederation(_) => VerdictKind::WrongFederation,
            Rejection::UnsupportedVersion(_) => VerdictKind::UnsupportedVersion,
            Rejection::NotAdmitted(_) => VerdictKind::NotAdmitted,
            Rejection::BadSignature(_) => VerdictKind::BadSignature,
            Rejection::TtlTooLong { .. } => VerdictKind::TtlTooLong,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accepted { record, .. } => {
                write!(f, "accepted seq {} of {}", record.seq(), record.origin())
            }
            Verdict::Duplicate(record) => write!(f, "duplicate of record {}", record.id.short()),
            Verdict::Stale {
                record,
                current_seq,
            } => write!(
                f,
                "stale: seq {} is older than the held seq {current_seq}",
                record.seq
            ),
            Verdict::Ignored(ignored) => write!(f, "ignored: {ignored}"),
            Verdict::Rejected(rejection) => write!(f, "rejected: {rejection}"),
            Verdict::Equivocation(_) => {
                f.write_str("equivocation: the origin signed two histories")
            }
        }
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::Quarantined(origin) => write!(f, "origin {origin} is quarantined"),
            Ignored::NotOnRoster {
                origin,
                excuse: RosterExcuse::RecentlyRemoved,
            } => write!(
                f,
                "origin {origin} was removed from the roster recently; the sender is not blamed"
            ),
            Ignored::NotOnRoster {
                origin,
                excuse: RosterExcuse::RosterBehind,
            } => write!(
                f,
                "origin {origin} is not on this node's roster, which is behind a peer's; \
                 the record is judged again once the roster caught up"
            ),
            Ignored::Expired(record) => write!(f, "record seq {} has expired", record.seq),
            Ignored::FutureDated { ahead_ms, .. } => {
                write!(
                    f,
                    "issued {ahead_ms} ms in the future, beyond the tolerated skew"
                )
            }
            Ignored::RateLimited(record) => {
                write!(f, "origin {} is over its rate limit", record.origin)
            }
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(error) => write!(f, "malformed: {error}"),
            Rejection::WrongFederation(found) => {
                write!(
                    f,
                    "belongs to another federation ({})",
                    &found.to_string()[..16]
                )
            }
            Rejection::UnsupportedVersion(version) => {
                write!(f, "unsupported record version {version}")
            }
            Rejection::NotAdmitted(origin) => write!(f, "origin {origin} is not on the roster"),
            Rejection::BadSignature(record) => write!(
                f,
                "signature on seq {} does not verify under the key of {}",
                record.seq, record.origin
            ),
            Rejection::TtlTooLong { ttl_ms, .. } => {
                write!(f, "lifetime of {ttl_ms} ms is above the maximum")
            }
        }
    }
}
