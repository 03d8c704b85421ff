//! Checkpoints: the node's signature over the log's running hash.
//!
//! A checkpoint `(node, index, head, at_ms)` is signed in the `Checkpoint` domain of
//! the node's federation. Anyone with the node's public key can check that the log
//! up to `index` is the one the node wrote: to rewrite history, one must forge the
//! node's signature.

use serde::{Deserialize, Serialize};
use tidings_keys::{Domain, FederationId, Identity, NodeId, Signature};

use crate::entry::hex32;

/// A signed statement of the log's state at one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The node that wrote the log.
    pub node: NodeId,
    /// The last entry covered.
    pub index: u64,
    /// The chain hash at `index`.
    #[serde(with = "hex32")]
    pub head: [u8; 32],
    /// When it was signed (the time of the entry at `index`).
    pub at_ms: u64,
    /// The node's signature.
    #[serde(with = "signature_serde")]
    pub signature: Signature,
}

mod signature_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use tidings_keys::Signature;

    pub(crate) fn serialize<S: Serializer>(
        signature: &Signature,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&tidings_keys::hex::encode(&signature.0))
        } else {
            serializer.serialize_bytes(&signature.0)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Signature, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            tidings_keys::hex::decode_exact::<64>(&text)
                .map(Signature)
                .map_err(serde::de::Error::custom)
        } else {
            let bytes = <Vec<u8>>::deserialize(deserializer)?;
            let array: [u8; 64] = bytes
                .try_into()
                .map_err(|_| serde::de::Error::custom("a signature is 64 bytes"))?;
            Ok(Signature(array))
        }
    }
}

fn message(node: &NodeId, index: u64, head: &[u8; 32], at_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 8 + 32 + 8);
    out.extend_from_slice(node.as_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(&at_ms.to_be_bytes());
    out
}

impl Checkpoint {
    /// Signs the state `(index, head)` as `identity`.
    pub fn sign(
        identity: &Identity,
        federation: &FederationId,
        index: u64,
        head: [u8; 32],
        at_ms: u64,
    ) -> Self {
        let node = identity.node_id();
        let signature = identity.sign(
            Domain::Checkpoint,
            federation,
            &message(&node, index, &head, at_ms),
        );
        Self {
            node,
            index,
            head,
            at_ms,
            signature,
        }
    }

    /// Whether the signature is the node's.
    pub fn verify(&self, federation: &FederationId) -> bool {
        tidings_keys::verify(
            &self.node,
            Domain::Checkpoint,
            federation,
            &message(&self.node, self.index, &self.head, self.at_ms),
            &self.signature,
        )
        .is_ok()
    }
}
