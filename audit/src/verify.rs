//! Checking a log: the chain from its signed base, and every checkpoint.
//!
//! The same check runs on a stored log and on an export read back from JSON lines,
//! so a third party holding only an export and the node's id reaches the verdict
//! the node itself would.

use serde::Serialize;
use tidings_keys::{FederationId, NodeId};

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;

/// What is wrong at the first bad place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// An entry is missing.
    #[error("entry {expected} is missing (found {found} next)")]
    Missing { expected: u64, found: u64 },
    /// An entry is out of order.
    #[error("entry {found} appears where entry {expected} belongs (reordered)")]
    OutOfOrder { expected: u64, found: u64 },
    /// An entry does not decode.
    #[error("entry {index} cannot be decoded: {reason}")]
    Undecodable { index: u64, reason: String },
    /// An entry's content does not match its chain hash.
    #[error("entry {index} was altered: its chain hash does not match")]
    HashMismatch { index: u64 },
    /// A checkpoint's signature is not the node's.
    #[error("checkpoint at entry {index} is not signed by the node (forged or altered)")]
    BadCheckpointSignature { index: u64 },
    /// A checkpoint is signed by another node.
    #[error("checkpoint at entry {index} is signed by {signer}, not by the log's node")]
    ForeignCheckpoint { index: u64, signer: NodeId },
    /// A validly signed checkpoint disagrees with the entries.
    #[error("entries up to {index} differ from what the node signed at that index")]
    CheckpointMismatch { index: u64 },
    /// The log starts after pruning, but no signed checkpoint vouches for its start.
    #[error("the log starts after entry {index}, but no signed checkpoint covers that start")]
    UnsignedBase { index: u64 },
    /// An index key and the entries disagree.
    #[error("the indexes disagree with entry {index}")]
    IndexMismatch { index: u64 },
    /// Entries stop before the last checkpoint: the tail was removed.
    #[error("the log ends at entry {last} but a checkpoint covers entry {index}")]
    Truncated { last: u64, index: u64 },
    /// The log ends before a head its node recorded elsewhere as durable.
    #[error(
        "the log ends at entry {last}, but its node had made entries up to {remembered} \
         durable: entries were lost (the log was cut back, or replaced by an older copy)"
    )]
    CutBack { last: u64, remembered: u64 },
    /// The log holds another entry than the one its node recorded as durable there.
    #[error(
        "entry {index} is not the entry its node recorded as durable there (the log was \
         replaced or altered)"
    )]
    Replaced { index: u64 },
}

impl Problem {
    /// The first bad index.
    pub fn index(&self) -> u64 {
        match self {
            Problem::Missing { expected, .. } | Problem::OutOfOrder { expected, .. } => *expected,
            Problem::Undecodable { index, .. }
            | Problem::HashMismatch { index }
            | Problem::BadCheckpointSignature { index }
            | Problem::ForeignCheckpoint { index, .. }
            | Problem::CheckpointMismatch { index }
            | Problem::UnsignedBase { index }
            | Problem::IndexMismatch { index }
            | Problem::Replaced { index }
            | Problem::Truncated { index, .. } => *index,
            Problem::CutBack { last, .. } => last + 1,
        }
    }
}

/// A log that checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The node whose log it is.
    pub node: NodeId,
    /// First entry present.
    pub first: u64,
    /// Last entry present.
    pub last: u64,
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Entries after the last checkpoint (chained, not yet signed).
    pub unsigned_tail: u64,
}

/// Checks entries (in stored order) from `base` against `checkpoints`.
pub struct ChainCheck<'a> {
    node: NodeId,
    federation: &'a FederationId,
    checkpoints: &'a [Checkpoint],
    next_checkpoint: usize,
    expected: u64,
    hash: [u8; 32],
    first: Option<u64>,
    count: u64,
    checked_checkpoints: u64,
    last_signed: u64,
}

impl std::fmt::Debug for ChainCheck<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainCheck")
            .field("expected", &self.expected)
            .finish()
    }
}

impl<'a> ChainCheck<'a> {
    /// Starts after the base `(index, hash)`; checkpoints sorted by index.
    pub fn new(
        node: NodeId,
        federation: &'a FederationId,
        base: (u64, [u8; 32]),
        checkpoints: &'a [Checkpoint],
    ) -> Result<Self, Problem> {
        for checkpoint in checkpoints {
            if checkpoint.node != node {
                return Err(Problem::ForeignCheckpoint {
                    index: checkpoint.index,
                    signer: checkpoint.node,
                });
            }
            if !checkpoint.verify(federation) {
                return Err(Problem::BadCheckpointSignature {
                    index: checkpoint.index,
                });
            }
        }
        let (base_index, base_hash) = base;
        let mut next_checkpoint = 0;
        if base_index > 0 {
            let vouched = checkpoints
                .iter()
                .any(|c| c.index == base_index && c.head == base_hash);
            if !vouched {
                return Err(Problem::UnsignedBase { index: base_index });
            }
        }
        while checkpoints
            .get(next_checkpoint)
            .is_some_and(|c| c.index <= base_index)
        {
            next_checkpoint += 1;
        }
        Ok(Self {
            node,
            federation,
            checkpoints,
            next_checkpoint,
            expected: base_index + 1,
            hash: base_hash,
            first: None,
            count: 0,
            checked_checkpoints: next_checkpoint as u64,
            last_signed: base_index,
        })
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &Entry) -> Result<(), Problem> {
        if entry.index != self.expected {
            return Err(if entry.index > self.expected {
                Problem::Missing {
                    expected: self.expected,
                    found: entry.index,
                }
            } else {
                Problem::OutOfOrder {
                    expected: self.expected,
                    found: entry.index,
                }
            });
        }
        let computed = entry.chain_hash(&self.hash);
        if computed != entry.hash {
            return Err(Problem::HashMismatch { index: entry.index });
        }
        self.hash = computed;
        self.first.get_or_insert(entry.index);
        self.count += 1;
        self.expected += 1;
        while let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            if checkpoint.index != entry.index {
                break;
            }
            if checkpoint.head != computed {
                return Err(Problem::CheckpointMismatch { index: entry.index });
            }
            self.checked_checkpoints += 1;
            self.last_signed = entry.index;
            self.next_checkpoint += 1;
        }
        Ok(())
    }

    /// Ends the check.
    pub fn finish(self) -> Result<Verified, Problem> {
        let last = self.expected - 1;
        if let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            return Err(Problem::Truncated {
                last,
                index: checkpoint.index,
            });
        }
        let _ = self.federation;
        Ok(Verified {
            node: self.node,
            first: self.first.unwrap_or(last + 1),
            last,
            entries: self.count,
            checkpoints: self.checked_checkpoints,
            unsigned_tail: last - self.last_signed,
        })
    }
}
