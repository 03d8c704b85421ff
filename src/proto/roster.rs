//! Governance: the roster as a signed, chained, gossiped object (DESIGN §12).
//!
//! The roster starts from a **genesis** (members, labels, threshold), made once
//! from a roster file; its id is the hash of its bytes. Every change after it is
//! an **operation** for the next epoch that names the state it changes (`prev`)
//! and carries approvals: signatures of members of that state over the
//! operation's body. It applies when `k` distinct members approved, where `k` is
//! the state's threshold (default `floor(2n/3) + 1`, so any two quorums share an
//! honest member while fewer than a third are Byzantine; a fixed threshold must
//! stay a majority). Everyone applies the same operations in the same order, so
//! everyone holds the same roster at an epoch, and anyone can check a chain
//! offline from its genesis ([`verify_chain`]).
//!
//! - [`op`]: the genesis, actions, operation bodies and signed operations, in one
//!   canonical byte form with bounded decoding.
//! - [`state`]: a roster state and the checks an operation must pass against it;
//!   the only maker of [`VerifiedOp`].
//! - [`ledger`]: one node's chain, open proposals, fork proof and own votes.
//!
//! Decisions, where the design is silent:
//!
//! - **Ids.** An operation's id is the hash of its body, not of its approvals, so
//!   copies of a proposal carrying different approvals merge, and two bodies for
//!   one epoch are two operations. A state is named by the id of the operation
//!   that made it (the genesis id at epoch 0).
//! - **Countersignatures** sign the action (`admit ‖ action bytes`, domain
//!   `tidings/roster-key/v1`), not the body: the holder of a new key can make one
//!   before any proposal exists and hand it to a member, and proves it holds the
//!   key it asks to be admitted with. Reusing an old countersignature can only
//!   re-admit a key the threshold approves again.
//! - **Expiry** bounds proposals: an expired proposal is not approved, not taken
//!   in and is dropped. A *complete* operation is judged by its approvals alone,
//!   since a node catching up meets operations long after they applied.
//! - **Forks**: two valid operations for one epoch stop all roster changes on
//!   every node that sees the proof (it spreads ahead of everything else). The
//!   way out is a new genesis chosen by the operators.
//! - **Pardon** names the seq above which the pardoned origin's chain restarts;
//!   the approvers choose it from the proof they saw (the highest seq in it).

pub mod ledger;
pub mod op;
pub mod state;

#[cfg(test)]
mod tests;

pub use ledger::{Ledger, Received, SignError};
pub use op::{
    check_label, Action, Approval, Genesis, GenesisError, OpBody, RosterHash, SignedOp, Threshold,
    ROSTER_VERSION,
};
pub use state::{
    approve, countersign, ApprovalCache, Need, RosterError, RosterState, VerifiedOp, MAX_PARDON_SEQ,
};

use super::codec::{check_size, DecodeError, Field, Reader};
use super::limits::MAX_ROSTER_FORK_BYTES;

/// Two operations for one epoch, each approved by a threshold of the state they
/// change: proof that members signed twice. Stored with the lower id first, so
/// one fork has one encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterForkProof {
    first: SignedOp,
    second: SignedOp,
}

impl RosterForkProof {
    /// The proof made of `a` and `b` (in either order).
    pub fn new(a: SignedOp, b: SignedOp) -> Self {
        if a.id() <= b.id() {
            Self {
                first: a,
                second: b,
            }
        } else {
            Self {
                first: b,
                second: a,
            }
        }
    }

    /// The epoch both operations claim (the first's).
    pub fn epoch(&self) -> u64 {
        self.first.body.epoch
    }

    /// The two operations.
    pub fn ops(&self) -> (&SignedOp, &SignedOp) {
        (&self.first, &self.second)
    }

    /// The members who approved both: at least one Byzantine or careless member
    /// when the threshold holds.
    pub fn double_signers(&self) -> Vec<tidings_keys::NodeId> {
        self.first
            .approvals
            .iter()
            .filter(|a| self.second.approvals.iter().any(|b| b.signer == a.signer))
            .map(|a| a.signer)
            .collect()
    }

    /// Checks that both operations are distinct, for the same epoch, and each
    /// valid with the threshold against `before`, the state they change.
    pub fn verify(
        &self,
        before: &RosterState,
        cache: Option<&ApprovalCache>,
    ) -> Result<(), RosterError> {
        if self.first.id() == self.second.id() {
            return Err(RosterError::Malformed(DecodeError::Invalid {
                field: Field::RosterFork,
                reason: "the two operations are the same",
            }));
        }
        before.check(&self.first, Need::Complete, cache)?;
        before.check(&self.second, Need::Complete, cache)?;
        Ok(())
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.first.encode();
        out.extend_from_slice(&self.second.encode());
        out
    }

    /// Decodes a proof (the two operations in id order).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_size(Field::RosterFork, MAX_ROSTER_FORK_BYTES, bytes.len())?;
        let mut reader = Reader::new(bytes);
        let first = SignedOp::read(&mut reader)?;
        let second = SignedOp::read(&mut reader)?;
        reader.finish()?;
        if first.id() >= second.id() {
            return Err(DecodeError::NotSorted {
                field: Field::RosterFork,
            });
        }
        Ok(Self { first, second })
    }
}

/// Where an exported chain stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation #{index} (epoch {epoch}): {error}")]
pub struct ChainError {
    /// Position of the operation in the export, from 1.
    pub index: usize,
    /// The epoch it claims.
    pub epoch: u64,
    /// Why it is invalid.
    pub error: RosterError,
}

/// Checks `ops` in order from `genesis`: each must apply, with its threshold,
/// to the state the ones before made. Returns the final state, or the first
/// invalid operation.
pub fn verify_chain(genesis: &Genesis, ops: &[SignedOp]) -> Result<RosterState, ChainError> {
    let mut state = RosterState::from_genesis(genesis);
    for (position, op) in ops.iter().enumerate() {
        let fail = |error| ChainError {
            index: position + 1,
            epoch: op.body.epoch,
            error,
        };
        let verified = state.check(op, Need::Complete, None).map_err(fail)?;
        state = state.apply(&verified).map_err(fail)?;
    }
    Ok(state)
}

/// The first line of an exported roster chain.
pub const EXPORT_HEADER: &str = "tidings roster chain v1";

/// An exported chain as text: the header, `genesis HEX`, then `op HEX` per
/// operation in epoch order. Line-based, so a damaged line is named by number.
pub fn export_chain(genesis: &Genesis, ops: &[SignedOp]) -> String {
    let mut out = format!(
        "{EXPORT_HEADER}\ngenesis {}\n",
        tidings_keys::hex::encode(&genesis.encode())
    );
    for op in ops {
        out.push_str("op ");
        out.push_str(&tidings_keys::hex::encode(&op.encode()));
        out.push('\n');
    }
    out
}

/// Why a text is not an exported roster chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The first line is not the header.
    #[error("not an exported roster chain (the first line is not {EXPORT_HEADER:?})")]
    NotAnExport,
    /// A line does not parse.
    #[error("line {line}: {reason}")]
    Line {
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No genesis line.
    #[error("the export has no genesis line")]
    NoGenesis,
}

/// Reads an exported chain (the inverse of [`export_chain`]); checks encodings
/// only: [`verify_chain`] checks the operations.
pub fn parse_export(text: &str) -> Result<(Genesis, Vec<SignedOp>), ExportError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first.trim() == EXPORT_HEADER => {}
        _ => return Err(ExportError::NotAnExport),
    }
    let mut genesis = None;
    let mut ops = Vec::new();
    for (index, line) in lines {
        let line_no = index + 1;
        let fail = |reason: String| ExportError::Line {
            line: line_no,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, hex) = line
            .split_once(' ')
            .ok_or_else(|| fail("expected `genesis HEX` or `op HEX`".into()))?;
        let bytes = tidings_keys::hex::decode(hex.trim()).map_err(|e| fail(e.to_string()))?;
        match kind {
            "genesis" if genesis.is_none() => {
                genesis = Some(Genesis::decode(&bytes).map_err(|e| fail(e.to_string()))?)
            }
            "genesis" => return Err(fail("a second genesis line".into())),
            "op" if genesis.is_some() => {
                ops.push(SignedOp::decode(&bytes).map_err(|e| fail(e.to_string()))?)
            }
            "op" => return Err(fail("an operation before the genesis line".into())),
            other => return Err(fail(format!("unknown line kind {other:?}"))),
        }
    }
    Ok((genesis.ok_or(ExportError::NoGenesis)?, ops))
}
