//! Checking a log: the chain from its signed base, and every checkpoint.
//!
//! The same check runs on a stored log and on an export read back from JSON lines,
//! so a third party holding only an export and the node's id reaches the verdict
//! the node itself would.
//!
//! Entries at or below the base were kept when the range around them was pruned
//! (see [`crate::log`]). They come first, in runs of consecutive indices; each run
//! must start right after a signed checkpoint (or at entry 1, whose predecessor is
//! the zero hash) and end at one, and chain from the first to the last.

use std::collections::BTreeMap;

use serde::Serialize;
use tidings_keys::{FederationId, NodeId};

use crate::checkpoint::Checkpoint;
use crate::entry::{Entry, EntryKind, RecordKey};

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
    /// An entry kept from a pruned range is not tied to a signed checkpoint.
    #[error(
        "entry {index} was kept from a pruned range, but no signed checkpoint vouches \
         for its place in the chain"
    )]
    UnsignedKept { index: u64 },
    /// A routine entry below the base, where pruning keeps none.
    #[error(
        "entry {index} is routine but lies below the log's start, where pruning keeps \
         only offences and evidence: entries were removed around it"
    )]
    RoutineKept { index: u64 },
    /// Evidence does not check out: its bytes are not the record or proof its key
    /// names, or their signature does not verify.
    #[error("the evidence of record {record} (entry {index}) is not valid: {reason}")]
    BadEvidence {
        index: u64,
        record: RecordKey,
        reason: String,
    },
    /// An entry that is written with evidence points at evidence that is not there.
    #[error("entry {index} refers to evidence of record {record}, which is missing")]
    MissingEvidence { index: u64, record: RecordKey },
    /// An entry names another origin than the key that signed its evidence.
    #[error(
        "entry {index} names {claimed} as the origin of record {record}, but its evidence \
         is signed by {signer}"
    )]
    EvidenceOfAnotherOrigin {
        index: u64,
        record: RecordKey,
        claimed: NodeId,
        signer: NodeId,
    },
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
            | Problem::UnsignedKept { index }
            | Problem::BadEvidence { index, .. }
            | Problem::RoutineKept { index }
            | Problem::MissingEvidence { index, .. }
            | Problem::EvidenceOfAnotherOrigin { index, .. }
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
    /// Entries checked (kept ones included).
    pub entries: u64,
    /// Of those, entries kept below the base from pruned ranges.
    pub kept: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Entries after the last checkpoint (chained, not yet signed).
    pub unsigned_tail: u64,
    /// Evidence records checked (0 until the caller checks evidence, which needs
    /// the record format: see [`check_evidence`]).
    pub evidence: u64,
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
    base_index: u64,
    /// Signed heads by index (every checkpoint, verified).
    signed: BTreeMap<u64, [u8; 32]>,
    /// The last kept entry of the current run: index and chain hash.
    run: Option<(u64, [u8; 32])>,
    kept: u64,
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
            base_index,
            signed: checkpoints.iter().map(|c| (c.index, c.head)).collect(),
            run: None,
            kept: 0,
        })
    }

    /// Checks an entry kept below the base.
    fn push_kept(&mut self, entry: &Entry) -> Result<(), Problem> {
        if entry.index == 0 {
            return Err(Problem::OutOfOrder {
                expected: 1,
                found: 0,
            });
        }
        // Pruning keeps no routine entry, so one here means the start was moved
        // up over live entries to hide some of them.
        if entry.kind.is_routine() {
            return Err(Problem::RoutineKept { index: entry.index });
        }
        let prev = match self.run {
            Some((last, _)) if entry.index <= last => {
                return Err(Problem::OutOfOrder {
                    expected: last + 1,
                    found: entry.index,
                })
            }
            Some((last, hash)) if last + 1 == entry.index => hash,
            _ => {
                self.close_run()?;
                if entry.index == 1 {
                    [0; 32]
                } else {
                    *self
                        .signed
                        .get(&(entry.index - 1))
                        .ok_or(Problem::UnsignedKept { index: entry.index })?
                }
            }
        };
        let computed = entry.chain_hash(&prev);
        if computed != entry.hash {
            return Err(Problem::HashMismatch { index: entry.index });
        }
        if self
            .signed
            .get(&entry.index)
            .is_some_and(|head| *head != computed)
        {
            return Err(Problem::CheckpointMismatch { index: entry.index });
        }
        self.run = Some((entry.index, computed));
        self.kept += 1;
        self.count += 1;
        Ok(())
    }

    /// Ends a run of kept entries: its last hash must be signed.
    fn close_run(&mut self) -> Result<(), Problem> {
        match self.run.take() {
            Some((last, hash)) if self.signed.get(&last) != Some(&hash) => {
                Err(Problem::UnsignedKept { index: last })
            }
            _ => Ok(()),
        }
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &Entry) -> Result<(), Problem> {
        if entry.index <= self.base_index {
            if self.first.is_some() {
                return Err(Problem::OutOfOrder {
                    expected: self.expected,
                    found: entry.index,
                });
            }
            return self.push_kept(entry);
        }
        self.close_run()?;
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
    pub fn finish(mut self) -> Result<Verified, Problem> {
        self.close_run()?;
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
            kept: self.kept,
            checkpoints: self.checked_checkpoints,
            unsigned_tail: last - self.last_signed,
            evidence: 0,
        })
    }
}

/// Whether entries of `kind` are written with evidence when they name a record:
/// the signed record (accepted, published, taken back, or shown by a halt) or the
/// equivocation proof (equivocation, quarantine).
pub fn carries_evidence(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::Accepted
            | EntryKind::Published
            | EntryKind::Equivocation
            | EntryKind::Quarantine
            | EntryKind::Recovered
            | EntryKind::Halted
    )
}

/// Checks one piece of evidence stored under a record key: `Ok(signer)` when its
/// bytes are the record (or proof) that key names and their signatures verify.
/// The log does not know record formats; the node supplies this.
pub type EvidenceCheck<'a> = &'a dyn Fn(&RecordKey, &[u8]) -> Result<NodeId, String>;

/// Checks every piece of evidence with `check`, and every entry that should have
/// evidence against it: the evidence must be there and signed by the origin the
/// entry names. `evidence` looks evidence up by key; `stored` lists every key
/// held. Returns the number of evidence records checked.
pub fn check_evidence<'e>(
    entries: impl IntoIterator<Item = &'e Entry> + Clone,
    stored: &[RecordKey],
    evidence: &dyn Fn(&RecordKey) -> Option<Vec<u8>>,
    check: EvidenceCheck<'_>,
) -> Result<u64, Problem> {
    let first_mention = |record: &RecordKey| {
        entries
            .clone()
            .into_iter()
            .find(|entry| entry.record.as_ref() == Some(record))
            .map_or(0, |entry| entry.index)
    };
    let mut signers = BTreeMap::new();
    for record in stored {
        let Some(bytes) = evidence(record) else {
            continue;
        };
        match check(record, &bytes) {
            Ok(signer) => {
                signers.insert(*record, signer);
            }
            Err(reason) => {
                return Err(Problem::BadEvidence {
                    index: first_mention(record),
                    record: *record,
                    reason,
                })
            }
        }
    }
    check_carriers(entries, &signers)?;
    Ok(signers.len() as u64)
}

/// Checks that every entry that should have evidence has it in `signers` (the
/// signer each checked record's evidence proves), signed by the origin the
/// entry names.
pub fn check_carriers<'e>(
    entries: impl IntoIterator<Item = &'e Entry>,
    signers: &BTreeMap<RecordKey, NodeId>,
) -> Result<(), Problem> {
    for entry in entries {
        let Some(record) = entry.record else { continue };
        if !carries_evidence(entry.kind) {
            continue;
        }
        let Some(signer) = signers.get(&record) else {
            return Err(Problem::MissingEvidence {
                index: entry.index,
                record,
            });
        };
        if let Some(claimed) = entry.origin {
            if claimed != *signer {
                return Err(Problem::EvidenceOfAnotherOrigin {
                    index: entry.index,
                    record,
                    claimed,
                    signer: *signer,
                });
            }
        }
    }
    Ok(())
}
