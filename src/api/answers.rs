//! The API's answers: one type per JSON body, written by the routes and read by
//! the command-line client.
//!
//! Both sides use these types, so a field renamed here is renamed for both; a
//! client that meets an answer it cannot read (a node of another version) says
//! which endpoint answered what, instead of printing `-` where a field was.
//! For the same reason an optional field the node always writes (as `null`
//! when empty) is required when read: those fields carry
//! `deserialize_with = "Option::deserialize"`, so a missing one is an error,
//! not a silent `None`.
//! The OpenAPI document's schemas (see [`openapi`](super::openapi)) are
//! generated from these types (`JsonSchema`), so their doc comments are the
//! fields' descriptions there. The watch stream's events are [`WatchEvent`]s.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tidings_audit::Entry;
use tidings_keys::{FederationId, NodeId};

use crate::net::node::{FoundSpecialist, Health, Member, OpView, ProposalView, Signing};
use crate::proto::{RecordId, Specialist, VerifiedRecord};
use crate::trace::Trace;

pub use super::watch::{EventKind, WatchEvent};

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthAnswer {
    /// In one word: `ok`, `clock_off`, `recovering` or `halted`.
    pub status: Status,
    /// This node.
    pub node: NodeId,
    /// Its federation.
    pub federation: FederationId,
    /// Records held in the directory.
    pub records: usize,
    /// Open peer connections.
    pub peers_connected: usize,
    /// Signing state, clock, startup repairs.
    #[serde(flatten)]
    pub health: Health,
}

/// The health of a node in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Signs, and its clock agrees with its peers'.
    Ok,
    /// Signs, but its clock is off from its peers' by more than the warning threshold.
    ClockOff,
    /// Lost its history and waits for peers before it signs.
    Recovering,
    /// Must not sign (see `problem`).
    Halted,
}

impl Status {
    /// The word for `health`.
    pub fn of(health: &Health) -> Self {
        match health.signing {
            Signing::Halted => Self::Halted,
            Signing::Recovering => Self::Recovering,
            Signing::Ok if health.clock_warning => Self::ClockOff,
            Signing::Ok => Self::Ok,
        }
    }
}

/// `GET /v1/specialists`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SpecialistsAnswer {
    /// What matched.
    pub specialists: Vec<FoundSpecialist>,
}

/// `POST /v1/specialists`, `DELETE /v1/specialists/{name}` and `POST
/// /v1/leave`: the record this node signed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Published {
    /// This node.
    pub origin: NodeId,
    /// The new record.
    pub record: RecordId,
    /// Its seq.
    pub seq: u64,
    /// After a leave: the node stops once the record is sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}

impl Published {
    /// The answer for `record`.
    pub fn of(record: &VerifiedRecord) -> Self {
        Self {
            origin: record.origin(),
            record: record.id(),
            seq: record.seq(),
            stopping: false,
        }
    }
}

/// `GET /v1/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MembersAnswer {
    /// The roster's members as this node sees them.
    pub members: Vec<Member>,
}

/// `GET /v1/records/{origin}`: an origin's current record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordAnswer {
    /// Its signer.
    pub origin: NodeId,
    /// Its id.
    pub record: RecordId,
    /// Its place in the signer's chain.
    pub seq: u64,
    /// The record before it.
    pub prev: RecordId,
    /// When it was signed, Unix milliseconds.
    pub issued_at_ms: u64,
    /// When it expires.
    pub expires_at_ms: u64,
    /// Where its signer listens.
    pub addrs: Vec<String>,
    /// What it announces.
    pub specialists: Vec<Specialist>,
    /// The signed bytes, hex, for anyone to check.
    pub signed_hex: String,
}

impl RecordAnswer {
    /// The answer for `record`.
    pub fn of(record: &VerifiedRecord) -> Self {
        let fields = record.record();
        Self {
            origin: record.origin(),
            record: record.id(),
            seq: fields.seq,
            prev: fields.prev,
            issued_at_ms: fields.issued_at_ms,
            expires_at_ms: fields.expires_at_ms,
            addrs: fields.addrs.clone(),
            specialists: fields.specialists.clone(),
            signed_hex: tidings_keys::hex::encode(record.wire_bytes()),
        }
    }
}

/// `GET /v1/provenance/{record}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProvenanceAnswer {
    /// What the audit log says of the record.
    pub trace: Trace,
    /// Whether it is its origin's current record here.
    pub current: bool,
    /// Whether its origin is quarantined here.
    pub origin_quarantined: bool,
    /// Its origin's roster label.
    #[serde(deserialize_with = "Option::deserialize")]
    pub origin_label: Option<String>,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditAnswer {
    /// The matching entries, oldest first.
    pub entries: Vec<Entry>,
}

/// `GET /v1/roster/pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PendingAnswer {
    /// The roster's epoch.
    pub epoch: u64,
    /// Approvals an operation needs now.
    pub needed: usize,
    /// The open proposals.
    pub pending: Vec<ProposalView>,
}

/// `POST /v1/roster/proposals` and `POST /v1/roster/proposals/{id}/approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RosterOutcome {
    /// What became of the operation.
    pub status: OutcomeStatus,
    /// Approvals it holds.
    pub approvals: usize,
    /// Approvals it needs (0 when refused or frozen).
    pub needed: usize,
    /// The operation.
    pub operation: OpView,
}

/// What became of a proposed or approved roster operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeStatus {
    /// It had its approvals and is applied.
    Applied,
    /// It is open, waiting for approvals.
    Pending,
    /// The roster refused it.
    Refused,
    /// Roster changes have stopped: two operations for one epoch were found.
    RosterForked,
    /// Anything else (a duplicate, an operation of a past epoch).
    NotApplied,
}
