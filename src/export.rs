//! The file form of exported signed records and equivocation proofs.
//!
//! A file is the 8-byte magic `tidings1`, one kind byte (1: signed record,
//! 2: equivocation proof), then the item's wire form. It is what
//! `tidings record sign` writes and `tidings verify` checks offline: the signed
//! bytes are carried unchanged, so the origin's signature can be checked by anyone.

use crate::proto::codec::DecodeError;
use crate::proto::limits::MAX_PROOF_BYTES;
use crate::proto::{EquivocationProof, SignedRecord};

/// The first bytes of every export file.
pub const MAGIC: &[u8; 8] = b"tidings1";

const KIND_RECORD: u8 = 1;
const KIND_PROOF: u8 = 2;

/// Largest export file: a proof plus the header.
pub const MAX_EXPORT_BYTES: usize = MAX_PROOF_BYTES + MAGIC.len() + 1;

/// One exported item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exported {
    /// A signed record.
    Record(SignedRecord),
    /// An equivocation proof.
    Proof(EquivocationProof),
}

/// Why bytes are not an export file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Larger than any export.
    #[error("file is {found} bytes, larger than any tidings export ({MAX_EXPORT_BYTES})")]
    TooLarge { found: usize },
    /// The magic is missing.
    #[error("not a tidings export (it does not start with `tidings1`)")]
    NotAnExport,
    /// An item kind this version does not know.
    #[error("unknown export kind {0}")]
    UnknownKind(u8),
    /// The item does not decode.
    #[error("malformed export: {0}")]
    Malformed(DecodeError),
}

impl From<DecodeError> for ExportError {
    fn from(error: DecodeError) -> Self {
        Self::Malformed(error)
    }
}

impl Exported {
    /// The file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        match self {
            Exported::Record(record) => {
                out.push(KIND_RECORD);
                record.encode_into(&mut out);
            }
            Exported::Proof(proof) => {
                out.push(KIND_PROOF);
                proof.encode_into(&mut out);
            }
        }
        out
    }

    /// Reads file bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ExportError> {
        if bytes.len() > MAX_EXPORT_BYTES {
            return Err(ExportError::TooLarge { found: bytes.len() });
        }
        let body = bytes.strip_prefix(MAGIC).ok_or(ExportError::NotAnExport)?;
        let (&kind, payload) = body.split_first().ok_or(ExportError::NotAnExport)?;
        match kind {
            KIND_RECORD => Ok(Exported::Record(SignedRecord::decode(payload)?)),
            KIND_PROOF => Ok(Exported::Proof(EquivocationProof::decode(payload)?)),
            other => Err(ExportError::UnknownKind(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testkit::Federation;

    #[test]
    fn round_trip_and_errors() {
        let federation = Federation::new(1);
        let record = federation.sign(0, federation.first(0, &["a"]));
        let fork = federation.sign(0, federation.first(0, &["b"]));
        let items = [
            Exported::Record(record.signed().clone()),
            Exported::Proof(EquivocationProof::from_conflict(&record, &fork).unwrap()),
        ];
        for item in items {
            assert_eq!(Exported::decode(&item.encode()).unwrap(), item);
        }
        assert_eq!(Exported::decode(b"hello"), Err(ExportError::NotAnExport));
        assert_eq!(Exported::decode(b"tidings1"), Err(ExportError::NotAnExport));
        assert_eq!(
            Exported::decode(b"tidings1\x09"),
            Err(ExportError::UnknownKind(9))
        );
        assert!(matches!(
            Exported::decode(b"tidings1\x01\x05ab"),
            Err(ExportError::Malformed(_))
        ));
        let huge = vec![0u8; MAX_EXPORT_BYTES + 1];
        assert!(matches!(
            Exported::decode(&huge),
            Err(ExportError::TooLarge { .. })
        ));
    }
}
