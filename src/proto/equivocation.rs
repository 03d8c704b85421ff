//! Equivocation proofs: two records by one origin that cannot both be honest.
//!
//! An origin's records form a chain: `seq` rises by one and `prev` names the record
//! before. Two signed records conflict when they have the same `seq` but different
//! ids, or when the second has `seq + 1` but its `prev` is not the first's id. A
//! proof is the pair itself; anyone holding the origin's public key (it is in the
//! records) can check it offline, with no trust in whoever produced the proof.
//!
//! The pair is stored in a canonical order (lower `seq`, then lower id first) so the
//! same conflict always encodes to the same bytes.

use tidings_keys::{FederationId, NodeId};

use super::codec::{DecodeError, Field, Reader};
use super::limits::MAX_PROOF_BYTES;
use super::record::{RecordError, RecordId, SignedRecord, UnverifiedRecord, VerifiedRecord};

/// Two conflicting signed records of one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquivocationProof {
    first: SignedRecord,
    second: SignedRecord,
}

/// How the two records conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conflict {
    /// Two different records with the same sequence number.
    SameSeq,
    /// A record at `seq + 1` whose `prev` is not the record at `seq`.
    BrokenLink,
}

/// A proof whose records and conflict have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    /// The origin that signed both records.
    pub origin: NodeId,
    /// How they conflict.
    pub conflict: Conflict,
    /// The lower record.
    pub first: VerifiedRecord,
    /// The higher record.
    pub second: VerifiedRecord,
}

/// Why a proof does not prove equivocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The bytes are not a proof.
    #[error("malformed equivocation proof: {0}")]
    Malformed(DecodeError),
    /// One of the two records is not validly signed (or malformed).
    #[error("record in proof is invalid: {0}")]
    InvalidRecord(RecordError),
    /// The two records come from different federations.
    #[error("the two records belong to different federations")]
    MixedFederations,
    /// The two records come from different origins.
    #[error("the two records are signed by different origins")]
    DifferentOrigins,
    /// The records do not conflict.
    #[error("the two records do not conflict")]
    NoConflict,
}

/// How two records of one origin relate, if they conflict.
pub fn conflict_between(lower: &VerifiedRecord, higher: &VerifiedRecord) -> Option<Conflict> {
    let (a, b) = (lower.record(), higher.record());
    if a.origin != b.origin || a.federation != b.federation {
        return None;
    }
    if a.seq == b.seq && lower.id() != higher.id() {
        Some(Conflict::SameSeq)
    } else if a.seq.checked_add(1) == Some(b.seq) && b.prev != lower.id() {
        Some(Conflict::BrokenLink)
    } else {
        None
    }
}

fn canonical_order(a: &VerifiedRecord, b: &VerifiedRecord) -> bool {
    (a.seq(), a.id()) <= (b.seq(), b.id())
}

impl EquivocationProof {
    /// Builds a proof from two verified records, if they conflict.
    pub fn from_conflict(a: &VerifiedRecord, b: &VerifiedRecord) -> Option<Self> {
        let (lower, higher) = if canonical_order(a, b) {
            (a, b)
        } else {
            (b, a)
        };
        conflict_between(lower, higher)?;
        Some(Self {
            first: lower.signed().clone(),
            second: higher.signed().clone(),
        })
    }

    /// The origin both records claim (check with [`EquivocationProof::verify`]).
    pub fn claimed_origin(&self) -> Option<NodeId> {
        UnverifiedRecord::from_signed(self.first.clone(), None)
            .ok()
            .map(|record| *record.origin())
    }

    /// The higher seq of the two records (what a pardon must cover).
    pub fn highest_seq(&self) -> Option<u64> {
        let seq = |signed: &SignedRecord| {
            UnverifiedRecord::from_signed(signed.clone(), None)
                .ok()
                .map(|record| record.record().seq)
        };
        Some(seq(&self.first)?.max(seq(&self.second)?))
    }

    /// The ids of both records.
    pub fn record_ids(&self) -> (RecordId, RecordId) {
        (self.first.id(), self.second.id())
    }

    /// The wire form: the two signed records, one after the other.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the wire form.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.first.encode_into(out);
        self.second.encode_into(out);
    }

    /// Decodes a proof (framing only; call [`EquivocationProof::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_PROOF_BYTES {
            return Err(DecodeError::Oversized {
                field: Field::Proof,
                max: MAX_PROOF_BYTES,
                found: bytes.len(),
            });
        }
        let mut reader = Reader::new(bytes);
        let proof = Self::read(&mut reader)?;
        reader.finish()?;
        Ok(proof)
    }

    /// Reads a proof from inside a larger message.
    pub fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            first: SignedRecord::read(reader)?,
            second: SignedRecord::read(reader)?,
        })
    }

    /// Checks both signatures and the conflict. With `federation`, both records
    /// must belong to it.
    pub fn verify(&self, federation: Option<&FederationId>) -> Result<VerifiedProof, ProofError> {
        let check = |signed: &SignedRecord| {
            UnverifiedRecord::from_signed(signed.clone(), federation)
                .and_then(UnverifiedRecord::verify)
                .map_err(ProofError::InvalidRecord)
        };
        let first = check(&self.first)?;
        let second = check(&self.second)?;
        if first.record().federation != second.record().federation {
            return Err(ProofError::MixedFederations);
        }
        if first.origin() != second.origin() {
            return Err(ProofError::DifferentOrigins);
        }
        let (lower, higher) = if canonical_order(&first, &second) {
            (first, second)
        } else {
            (second, first)
        };
        let conflict = conflict_between(&lower, &higher).ok_or(ProofError::NoConflict)?;
        Ok(VerifiedProof {
            origin: lower.origin(),
            conflict,
            first: lower,
            second: higher,
        })
    }
}
