//! Domain-separated signatures.
//!
//! Every signature in tidings covers `domain ‖ federation ‖ message`, where
//! `domain` is one of the fixed labels of [`Domain`] and `federation` is the
//! 32-byte [`FederationId`]. A signature made for one purpose (a record, an audit
//! checkpoint) or one federation therefore never verifies for another. No label is
//! a prefix of another, so the concatenation is unambiguous.
//!
//! Verification always uses ed25519-dalek's `verify_strict`, which refuses
//! small-order keys and nonces and non-canonical scalars; the key itself is first
//! checked by [`NodeId::verifying_key`].

use std::fmt;

use ed25519_dalek::Signature as DalekSignature;

use crate::node_id::{NodeId, WeakKeyError};

/// What a signature is for. Each purpose has its own fixed label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A directory record (`tidings/record/v1`).
    Record,
    /// An audit-log checkpoint (`tidings/checkpoint/v1`).
    Checkpoint,
    /// A member's approval of a roster operation (`tidings/roster-op/v1`).
    RosterOp,
    /// A new key's countersignature of the roster operation that admits it
    /// (`tidings/roster-key/v1`): proof that whoever asks for the key holds it.
    RosterKey,
}

impl Domain {
    /// Every domain, for tests and documentation.
    pub const ALL: [Domain; 4] = [
        Domain::Record,
        Domain::Checkpoint,
        Domain::RosterOp,
        Domain::RosterKey,
    ];

    /// The bytes that start every signed message of this domain.
    pub const fn label(self) -> &'static [u8] {
        match self {
            Domain::Record => b"tidings/record/v1",
            Domain::Checkpoint => b"tidings/checkpoint/v1",
            Domain::RosterOp => b"tidings/roster-op/v1",
            Domain::RosterKey => b"tidings/roster-key/v1",
        }
    }
}

/// The identity of a federation: `blake3::derive_key("tidings federation v1", name)`.
///
/// It is inside every signed message, so nothing signed for one federation can be
/// replayed into another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FederationId([u8; 32]);

impl serde::Serialize for FederationId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&crate::hex::encode(&self.0))
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> serde::Deserialize<'de> for FederationId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            crate::hex::decode_exact::<32>(&text)
                .map(Self)
                .map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

impl FederationId {
    /// The federation named `name`.
    pub fn from_name(name: &str) -> Self {
        Self(blake3::derive_key("tidings federation v1", name.as_bytes()))
    }

    /// Wraps raw bytes (as read from a record).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for FederationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for FederationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FederationId({})", crate::hex::encode(&self.0[..8]))
    }
}

/// A 64-byte ed25519 signature, as carried on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signer's key is not usable (weak or non-canonical).
    #[error("signer key refused: {0}")]
    WeakKey(WeakKeyError),
    /// The signature does not match (wrong key, changed bytes, or a malleable form).
    #[error("signature does not verify")]
    BadSignature,
}

/// The exact bytes a signature covers.
pub fn signed_message(domain: Domain, federation: &FederationId, message: &[u8]) -> Vec<u8> {
    let label = domain.label();
    let mut out = Vec::with_capacity(label.len() + 32 + message.len());
    out.extend_from_slice(label);
    out.extend_from_slice(federation.as_bytes());
    out.extend_from_slice(message);
    out
}

/// Checks `signature` over `message` with an already checked key (see
/// [`NodeId::verifying_key`]), with `verify_strict`.
pub fn verify_with_key(
    key: &ed25519_dalek::VerifyingKey,
    domain: Domain,
    federation: &FederationId,
    message: &[u8],
    signature: &Signature,
) -> Result<(), VerifyError> {
    let signature = DalekSignature::from_bytes(&signature.0);
    let signed = signed_message(domain, federation, message);
    key.verify_strict(&signed, &signature)
        .map_err(|_| VerifyError::BadSignature)
}

/// Checks `signature` by `signer` over `message` in `domain` and `federation`,
/// with `verify_strict`.
pub fn verify(
    signer: &NodeId,
    domain: Domain,
    federation: &FederationId,
    message: &[u8],
    signature: &Signature,
) -> Result<(), VerifyError> {
    let key = signer.verifying_key().map_err(VerifyError::WeakKey)?;
    let signature = DalekSignature::from_bytes(&signature.0);
    let signed = signed_message(domain, federation, message);
    key.verify_strict(&signed, &signature)
        .map_err(|_| VerifyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_domain_label_is_a_prefix_of_another() {
        for a in Domain::ALL {
            for b in Domain::ALL {
                if a != b {
                    assert!(!b.label().starts_with(a.label()), "{a:?} prefixes {b:?}");
                }
            }
        }
    }

    #[test]
    fn federation_ids_differ_by_name() {
        assert_ne!(FederationId::from_name("a"), FederationId::from_name("b"));
        assert_eq!(FederationId::from_name("a"), FederationId::from_name("a"));
    }
}
