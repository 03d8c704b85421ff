//! Provenance of one record from a node's audit log: who signed it, the signed
//! evidence, its place in the signer's chain, when and from whom this node first got
//! it, what it decided, whom it relayed it to, later versions from the same origin,
//! and any equivocation by that origin.

use serde::{Deserialize, Serialize};
use tidings_audit::{AuditError, AuditLog, Entry, EntryKind, Query, RecordKey, Store};
use tidings_keys::{FederationId, NodeId};

use crate::proto::{EquivocationProof, RecordId, Specialist, VerifiedRecord};
use crate::recording::{proof_key, record_key};

/// Entries fetched per query when tracing.
const TRACE_LIMIT: usize = 10_000;

/// One audit entry, as a trace shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(schemars::JsonSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(schemars::JsonSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(schemars::JsonSchema))]
pub struct LaterVersion {
    /// Its id.
    pub record: RecordKey,
    /// Its seq.
    pub seq: u64,
    /// When this node got it.
    pub at_ms: u64,
}

/// The provenance of one record at one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(schemars::JsonSchema))]
pub struct Trace {
    /// The record.
    pub record: RecordKey,
    /// The origin the entries name.
    #[serde(deserialize_with = "Option::deserialize")]
    pub origin: Option<NodeId>,
    /// The signed evidence, when the log holds it (accepted or published records).
    #[serde(deserialize_with = "Option::deserialize")]
    pub evidence: Option<Evidence>,
    /// Whether evidence bytes were held but did not verify (tampered storage).
    pub evidence_invalid: bool,
    /// The first receipt: accepted from a peer, or published here.
    #[serde(deserialize_with = "Option::deserialize")]
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

/// Checks evidence stored under `key` in a log of `federation`: the bytes must
/// be the signed record whose id is `key` (or the equivocation proof whose key it
/// is), and every signature in them must verify (`verify_strict`) under the key of
/// the origin they name. Returns that origin: the signer, proven.
pub fn check_evidence(
    federation: &FederationId,
    key: &RecordKey,
    bytes: &[u8],
) -> Result<NodeId, String> {
    let record_error = match VerifiedRecord::from_bytes(bytes, Some(federation)) {
        Ok(record) if record_key(&record.id()) == *key => return Ok(record.origin()),
        Ok(record) => {
            return Err(format!(
                "the bytes are another record ({}, seq {} of {})",
                record.id(),
                record.seq(),
                record.origin()
            ))
        }
        Err(error) => error,
    };
    match EquivocationProof::decode(bytes) {
        Ok(proof) if proof_key(&proof) != *key => {
            Err("the bytes are another equivocation proof".into())
        }
        Ok(proof) => proof
            .verify(Some(federation))
            .map(|verified| verified.origin)
            .map_err(|error| format!("the equivocation proof does not verify: {error}")),
        Err(_) => Err(format!("not a valid signed record: {record_error}")),
    }
}

/// The evidence of `key`, if its bytes are that record and its signature verifies.
fn decode_evidence(
    federation: &FederationId,
    key: &RecordKey,
    bytes: &[u8],
) -> Option<(VerifiedRecord, Evidence)> {
    let record = VerifiedRecord::from_bytes(bytes, Some(federation)).ok()?;
    if record_key(&record.id()) != *key {
        return None;
    }
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
    let federation = log.federation();
    let decoded = stored
        .as_deref()
        .and_then(|bytes| decode_evidence(&federation, &record, bytes));
    let evidence_invalid = stored
        .as_deref()
        .is_some_and(|bytes| check_evidence(&federation, &record, bytes).is_err());
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
                    let later = log
                        .evidence(&key)?
                        .as_deref()
                        .and_then(|bytes| decode_evidence(&federation, &key, bytes));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::equivocation::EquivocationProof;
    use crate::proto::testkit::Federation;

    #[test]
    fn evidence_is_its_key_s_record_and_verifies_under_its_origin() {
        let fed = Federation::new(3);
        let first = fed.sign(1, fed.first(1, &["a"]));
        let other = fed.sign(2, fed.first(2, &["b"]));
        let key = record_key(&first.id());
        let bytes = first.wire_bytes().to_vec();
        assert_eq!(check_evidence(&fed.id, &key, &bytes), Ok(fed.node(1)));

        // Every byte changed anywhere makes it fail.
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x01;
            assert!(
                check_evidence(&fed.id, &key, &changed).is_err(),
                "a change at byte {at} passed"
            );
        }
        // Another record's valid bytes under this key.
        let error = check_evidence(&fed.id, &key, other.wire_bytes()).unwrap_err();
        assert!(error.contains("another record"), "{error}");
        // Another federation.
        let elsewhere = tidings_keys::FederationId::from_name("elsewhere");
        assert!(check_evidence(&elsewhere, &key, &bytes).is_err());
        // Empty and truncated.
        assert!(check_evidence(&fed.id, &key, &[]).is_err());
        assert!(check_evidence(&fed.id, &key, &bytes[..bytes.len() - 1]).is_err());

        // A proof: two records of member 1 with the same seq.
        let twin = fed.sign(1, fed.first(1, &["c"]));
        let proof = EquivocationProof::from_conflict(&first, &twin).unwrap();
        let proof_bytes = proof.encode();
        let pkey = proof_key(&proof);
        assert_eq!(
            check_evidence(&fed.id, &pkey, &proof_bytes),
            Ok(fed.node(1))
        );
        let error = check_evidence(&fed.id, &key, &proof_bytes).unwrap_err();
        assert!(error.contains("another equivocation proof"), "{error}");
        let mut changed = proof_bytes.clone();
        let last = changed.len() - 1;
        changed[last] ^= 0x01;
        assert!(check_evidence(&fed.id, &pkey, &changed).is_err());
    }
}
