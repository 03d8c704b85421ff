//! Provenance of one record from a node's audit log: who signed it, the signed
//! evidence, its place in the signer's chain, when and from whom this node first got
//! it, what it decided, whom it relayed it to, later versions from the same origin,
//! and any equivocation by that origin.

use serde::Serialize;
use tidings_audit::{AuditError, AuditLog, Entry, EntryKind, Query, RecordKey, Store};
use tidings_keys::NodeId;

use crate::proto::{RecordId, Specialist, VerifiedRecord};

/// Entries fetched per query when tracing.
const TRACE_LIMIT: usize = 10_000;

/// One audit entry, as a trace shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Log index.
    pub index: u64,
    /// When.
    pub at_ms: u64,
    /// What.
    pub kind: EntryKind,
    /// The peer involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<NodeId>,
    /// Why.
    pub reason: String,
}

impl From<&Entry> for Step {
    fn from(entry: &Entry) -> Self {
        Self {
            index: entry.index,
            at_ms: entry.at_ms,
            kind: entry.kind,
            peer: entry.peer,
            reason: entry.reason.clone(),
        }
    }
}

/// What the signed evidence says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The signer (checked: the signature verifies under this key).
    pub signer: NodeId,
    /// Position in the signer's chain.
    pub seq: u64,
    /// The record before it in the chain.
    pub prev: RecordId,
    /// When the signer issued it.
    pub issued_at_ms: u64,
    /// When it expires.
    pub expires_at_ms: u64,
    /// What it announces.
    pub specialists: Vec<Specialist>,
    /// The signed record, hex, for anyone to check.
    pub signed_hex: String,
}

/// A later record of the same origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaterVersion {
    /// Its id.
    pub record: RecordKey,
    /// Its seq.
    pub seq: u64,
    /// When this node got it.
    pub at_ms: u64,
}

/// The provenance of one record at one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// The record.
    pub record: RecordKey,
    /// The origin the entries name.
    pub origin: Option<NodeId>,
    /// The signed evidence, when the log holds it (accepted or published records).
    pub evidence: Option<Evidence>,
    /// Whether evidence bytes were held but did not verify (tampered storage).
    pub evidence_invalid: bool,
    /// The first receipt: accepted from a peer, or published here.
    pub first_receipt: Option<Step>,
    /// Every verdict and event on this record except relays, oldest first.
    pub history: Vec<Step>,
    /// Peers this node sent it to.
    pub relays: Vec<Step>,
    /// Later records of the same origin.
    pub later_versions: Vec<LaterVersion>,
    /// Equivocations and quarantines of the origin.
    pub equivocations: Vec<Step>,
}

fn decode_evidence(bytes: &[u8]) -> Option<(VerifiedRecord, Evidence)> {
    let record = VerifiedRecord::from_bytes(bytes, None).ok()?;
    let fields = record.record();
    let evidence = Evidence {
        signer: record.origin(),
        seq: fields.seq,
        prev: fields.prev,
        issued_at_ms: fields.issued_at_ms,
        expires_at_ms: fields.expires_at_ms,
        specialists: fields.specialists.clone(),
        signed_hex: tidings_keys::hex::encode(bytes),
    };
    Some((record, evidence))
}

/// Traces `record` through `log`. `None` when the log never saw it.
pub fn trace<S: Store>(log: &AuditLog<S>, record: RecordKey) -> Result<Option<Trace>, AuditError> {
    let entries = log.query(&Query {
        record: Some(record),
        limit: TRACE_LIMIT,
        ..Query::default()
    })?;
    let stored = log.evidence(&record)?;
    if entries.is_empty() && stored.is_none() {
        return Ok(None);
    }
    let decoded = stored.as_deref().and_then(decode_evidence);
    let evidence_invalid = stored.is_some() && decoded.is_none();
    let origin = decoded
        .as_ref()
        .map(|(record, _)| record.origin())
        .or_else(|| entries.iter().find_map(|entry| entry.origin));
    let first_receipt = entries
        .iter()
        .find(|entry| matches!(entry.kind, EntryKind::Accepted | EntryKind::Published))
        .map(Step::from);
    let (relays, history): (Vec<&Entry>, Vec<&Entry>) = entries
        .iter()
        .partition(|entry| entry.kind == EntryKind::Relayed);
    let mut later_versions = Vec::new();
    let mut equivocations = Vec::new();
    if let Some(origin) = origin {
        let seq = decoded
            .as_ref()
            .map(|(record, _)| record.seq())
            .unwrap_or(0);
        let by_origin = log.query(&Query {
            origin: Some(origin),
            limit: TRACE_LIMIT,
            ..Query::default()
        })?;
        for entry in &by_origin {
            match entry.kind {
                EntryKind::Equivocation | EntryKind::Quarantine => {
                    equivocations.push(Step::from(entry))
                }
                EntryKind::Accepted | EntryKind::Published if entry.record != Some(record) => {
                    let Some(key) = entry.record else { continue };
                    let later = log.evidence(&key)?.as_deref().and_then(decode_evidence);
                    if let Some((version, _)) = later.filter(|(version, _)| version.seq() > seq) {
                        later_versions.push(LaterVersion {
                            record: key,
                            seq: version.seq(),
                            at_ms: entry.at_ms,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Some(Trace {
        record,
        origin,
        evidence: decoded.map(|(_, evidence)| evidence),
        evidence_invalid,
        first_receipt,
        history: history.into_iter().map(Step::from).collect(),
        relays: relays.into_iter().map(Step::from).collect(),
        later_versions,
        equivocations,
    }))
}
