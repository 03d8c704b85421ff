//! `NodeId`: a node's ed25519 public key, the name every other part of tidings uses.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;

use crate::base32::{self, Base32Error};

/// A node's identity: the 32 bytes of its ed25519 public key.
///
/// Shown as 52 lowercase base32 characters. A `NodeId` is only a name: it may hold
/// any 32 bytes (it arrives from the network and from files). Use
/// [`NodeId::verifying_key`] to get a key that is safe to verify with; it refuses
/// encodings that are not canonical and keys of small order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 32]);

/// Why 32 bytes are not a usable ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakKeyError {
    /// The bytes do not decode to a curve point.
    #[error("not a valid ed25519 point")]
    NotAPoint,
    /// The point decodes, but from a non-canonical encoding (y >= p or a negative zero).
    #[error("non-canonical ed25519 point encoding")]
    NonCanonical,
    /// A point of small order: any message "verifies" under such a key.
    #[error("weak ed25519 key (small order)")]
    SmallOrder,
}

impl NodeId {
    /// Number of characters in the base32 form.
    pub const TEXT_LEN: usize = base32::encoded_len(32);

    /// Wraps raw key bytes without checking them.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as a verifier, refusing non-canonical encodings and small-order points.
    pub fn verifying_key(&self) -> Result<VerifyingKey, WeakKeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| WeakKeyError::NotAPoint)?;
        // `from_bytes` accepts some non-canonical encodings; the compressed form of the
        // decoded point is canonical, so a difference means the input was not.
        if key.to_bytes() != self.0 {
            return Err(WeakKeyError::NonCanonical);
        }
        if key.is_weak() {
            return Err(WeakKeyError::SmallOrder);
        }
        Ok(key)
    }

    /// A short prefix of the base32 form, for logs and tables.
    pub fn short(&self) -> String {
        let mut text = self.to_string();
        text.truncate(10);
        text
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a text is not a `NodeId`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id: {0}")]
pub struct ParseNodeIdError(pub Base32Error);

impl From<Base32Error> for ParseNodeIdError {
    fn from(error: Base32Error) -> Self {
        Self(error)
    }
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(base32::decode_exact::<32>(text.trim())?))
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_order_and_non_canonical_keys_are_refused() {
        // The identity point (order 1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            NodeId(identity).verifying_key(),
            Err(WeakKeyError::SmallOrder)
        );
        // The point of order 2: y = -1 = p - 1.
        let mut order_two = [0xffu8; 32];
        order_two[0] = 0xec;
        order_two[31] = 0x7f;
        assert_eq!(
            NodeId(order_two).verifying_key(),
            Err(WeakKeyError::SmallOrder)
        );
        // y = p + 1 is a non-canonical spelling of y = 1 (the identity).
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert!(NodeId(non_canonical).verifying_key().is_err());
        // The identity with the sign bit set: "negative zero" x, non-canonical.
        let mut negative_zero = identity;
        negative_zero[31] |= 0x80;
        assert!(NodeId(negative_zero).verifying_key().is_err());
    }

    #[test]
    fn display_parse_round_trip_and_errors() {
        let id = NodeId([7u8; 32]);
        let text = id.to_string();
        assert_eq!(text.len(), NodeId::TEXT_LEN);
        assert_eq!(text.parse::<NodeId>().unwrap(), id);
        assert!("short".parse::<NodeId>().is_err());
        assert_eq!(format!("{id:?}"), format!("NodeId({})", &text[..10]));
    }

    proptest! {
        #[test]
        fn text_round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
            let id = NodeId(bytes);
            prop_assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        }
    }
}
