//! One node's view of the roster chain: the applied operations, the open
//! proposals, a fork proof if one was found, and the epochs this node signed.
//!
//! [`Ledger::receive`] is the one entry for an operation from anywhere (a peer,
//! the store, a file) and returns a typed [`Received`]. The rules:
//!
//! - an operation for the **next epoch** with the threshold of valid approvals
//!   is applied at once; one with fewer is a **proposal**: its approvals merge
//!   with the copy this node holds (each approval verified once), and it applies
//!   when they reach the threshold. Proposals are bounded per proposer and in all,
//!   and dropped when they expire or when their epoch passes;
//! - an operation for a **later epoch** means this node is behind: it is not
//!   judged ([`Received::Ahead`]) and the caller catches up first;
//! - an operation for a **past epoch** that is the chain's is a replay
//!   ([`Received::Known`]); one that is not but carries a valid threshold of the
//!   state it changes is a **fork**: two valid operations for one epoch, which
//!   prove that members signed twice. Roster changes then stop
//!   ([`Received::Frozen`]) until operators act (a new genesis): an automatic
//!   choice between the two would let whoever signed twice pick the winner.
//!
//! This node's own approvals go through [`Ledger::approve`] and
//! [`Ledger::propose`], which refuse a second operation for an epoch this node
//! already signed (the map is restored from disk at start: see the durability
//! contract of the roster outputs in [`crate::proto::event`]).
//!
//! An honest member's vote is final for its epoch, so a split vote (two
//! proposals for one epoch, neither able to reach the threshold) stalls
//! governance until a proposal gathers the missing approvals from members that
//! have not voted; `roster pending` shows competing proposals so operators can
//! avoid the split.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidings_keys::{FederationId, Identity, NodeId};

use super::op::{Action, Approval, Genesis, RosterHash, SignedOp};
use super::state::{approve, ApprovalCache, Need, RosterError, RosterState, VerifiedOp};
use super::RosterForkProof;
use crate::proto::limits::{MAX_PENDING_PROPOSALS, MAX_PROPOSALS_PER_MEMBER};

/// What became of an operation given to [`Ledger::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// It reached the threshold and was applied: the roster is at its epoch.
    Applied(Box<VerifiedOp>),
    /// A proposal, new or with approvals this node lacked.
    Proposal {
        /// Its id.
        id: RosterHash,
        /// Distinct valid approvals now held.
        approvals: usize,
        /// The threshold.
        needed: usize,
    },
    /// Nothing new: an operation of the chain, or a proposal with no new approval.
    Known,
    /// It is for a later epoch than the next: this node is behind.
    Ahead {
        /// The epoch it makes.
        epoch: u64,
    },
    /// A proposal for an epoch that has passed: dropped.
    Stale,
    /// Two valid operations for one epoch: the proof. Roster changes stop.
    Forked(Box<RosterForkProof>),
    /// Roster changes have stopped (a fork was found); nothing is applied.
    Frozen,
    /// Its proposer already has the most open proposals allowed, or the node
    /// holds the most proposals it keeps.
    TooManyProposals(NodeId),
    /// It breaks a rule.
    Refused(RosterError),
}

/// Why this node will not sign an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// No open proposal has this id.
    #[error("no open proposal {0}")]
    NoSuchProposal(RosterHash),
    /// This node already signed another operation for that epoch.
    #[error("this node already signed operation {other} for epoch {epoch}; a member signs one operation per epoch")]
    AlreadySigned {
        /// The epoch.
        epoch: u64,
        /// What it signed.
        other: RosterHash,
    },
    /// This node already approved it.
    #[error("this node already approved {0}")]
    AlreadyApproved(RosterHash),
    /// This node is not a member of the current roster.
    #[error("this node is not a member of the current roster")]
    NotAMember,
    /// Roster changes have stopped (a fork was found).
    #[error("roster changes have stopped: two valid operations exist for epoch {0}")]
    Frozen(u64),
    /// This node holds the most open proposals it keeps, or this member has the
    /// most open proposals allowed.
    #[error("too many open proposals (at most 4 per member): approve or let some expire first")]
    PoolFull,
    /// The operation does not pass the rules.
    #[error("{0}")]
    Invalid(RosterError),
}

#[derive(Debug, Clone)]
struct Pending {
    op: SignedOp,
    /// Approvals by signer, each verified.
    approvals: BTreeMap<NodeId, Approval>,
}

impl Pending {
    fn current(&self) -> SignedOp {
        SignedOp {
            body: self.op.body.clone(),
            countersignature: self.op.countersignature,
            approvals: self.approvals.values().copied().collect(),
        }
    }
}

/// One node's roster chain, proposals and votes (cloning shares the genesis
/// and current roster, as the simulator does for its nodes).
#[derive(Debug, Clone)]
pub struct Ledger {
    genesis: Genesis,
    chain: Vec<VerifiedOp>,
    /// Approvals needed at each epoch (index = epoch), to judge past operations
    /// without rebuilding the state.
    needed: Vec<usize>,
    state: RosterState,
    pending: BTreeMap<RosterHash, Pending>,
    fork: Option<RosterForkProof>,
    signed: BTreeMap<u64, RosterHash>,
    cache: Option<Arc<ApprovalCache>>,
}

impl Ledger {
    /// A ledger at the genesis.
    pub fn new(genesis: Genesis) -> Self {
        let state = RosterState::from_genesis(&genesis);
        Self {
            needed: vec![state.needed()],
            genesis,
            chain: Vec::new(),
            state,
            pending: BTreeMap::new(),
            fork: None,
            signed: BTreeMap::new(),
            cache: None,
        }
    }

    /// Shares a cache of verified approvals.
    pub fn set_cache(&mut self, cache: Arc<ApprovalCache>) {
        self.cache = Some(cache);
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The current state.
    pub fn state(&self) -> &RosterState {
        &self.state
    }

    /// The federation.
    pub fn federation(&self) -> FederationId {
        self.state.federation()
    }

    /// The applied operations, epoch 1 first.
    pub fn chain(&self) -> &[VerifiedOp] {
        &self.chain
    }

    /// The applied operations after `epoch`.
    pub fn after(&self, epoch: u64) -> &[VerifiedOp] {
        let start = usize::try_from(epoch)
            .unwrap_or(usize::MAX)
            .min(self.chain.len());
        &self.chain[start..]
    }

    /// The fork proof, if roster changes have stopped.
    pub fn fork(&self) -> Option<&RosterForkProof> {
        self.fork.as_ref()
    }

    /// Open proposals with the approvals held, in id order.
    pub fn pending(&self) -> impl Iterator<Item = SignedOp> + '_ {
        self.pending.values().map(Pending::current)
    }

    /// One open proposal.
    pub fn proposal(&self, id: &RosterHash) -> Option<SignedOp> {
        self.pending.get(id).map(Pending::current)
    }

    /// Whether an open proposal would admit `key` (an add or a rotation to it).
    pub fn proposes_key(&self, key: &NodeId) -> bool {
        self.pending
            .values()
            .any(|pending| pending.op.body.action.new_key() == Some(*key))
    }

    /// A fingerprint of each open proposal's approvals (for gossip digests).
    pub fn pending_digest(&self) -> Vec<(RosterHash, u64)> {
        self.pending
            .iter()
            .map(|(id, pending)| {
                let mut hasher = blake3::Hasher::new();
                for signer in pending.approvals.keys() {
                    hasher.update(signer.as_bytes());
                }
                let bytes = hasher.finalize();
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes.as_bytes()[..8]);
                (*id, u64::from_le_bytes(word))
            })
            .collect()
    }

    /// The epoch this node signed `id`, if it did; and what it signed per epoch.
    pub fn signed(&self) -> &BTreeMap<u64, RosterHash> {
        &self.signed
    }

    /// Restores a vote of this node from its store (at start).
    pub fn restore_signed(&mut self, epoch: u64, id: RosterHash) {
        self.signed.insert(epoch, id);
    }

    /// Restores a fork proof from the store (at start).
    pub fn restore_fork(&mut self, proof: RosterForkProof) -> Result<(), RosterError> {
        self.check_fork(&proof)?;
        self.fork = Some(proof);
        Ok(())
    }

    /// Drops proposals that expired at `now_ms`; returns their ids.
    pub fn expire(&mut self, now_ms: u64) -> Vec<RosterHash> {
        let expired: Vec<RosterHash> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.op.body.expires_at_ms < now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.pending.remove(id);
        }
        expired
    }

    /// Judges one operation (see the module doc).
    pub fn receive(&mut self, op: &SignedOp, now_ms: u64) -> Received {
        let epoch = op.body.epoch;
        let current = self.state.epoch();
        if epoch == 0 || op.body.federation != self.federation() {
            return Received::Refused(if epoch == 0 {
                RosterError::WrongEpoch {
                    expected: current + 1,
                    found: 0,
                }
            } else {
                RosterError::WrongFederation
            });
        }
        if epoch <= current {
            return self.receive_past(op);
        }
        if self.fork.is_some() {
            return Received::Frozen;
        }
        if epoch > current + 1 {
            return Received::Ahead { epoch };
        }
        let id = op.id();
        let cache = self.cache.clone();
        let cache = cache.as_deref();
        if op.approvals.len() >= self.state.needed() && !self.pending.contains_key(&id) {
            return match self.state.check(op, Need::Complete, cache) {
                Ok(verified) => self.apply(verified),
                Err(error) => Received::Refused(error),
            };
        }
        if let Some(pending) = self.pending.get(&id) {
            // Every new approval is checked before any is taken in: a copy with
            // one forged approval adds nothing.
            let mut new: Vec<Approval> = Vec::new();
            for approval in &op.approvals {
                if pending.approvals.contains_key(&approval.signer)
                    || new.iter().any(|a| a.signer == approval.signer)
                {
                    continue;
                }
                if let Err(error) = self.state.check_approval(&op.body, approval, cache) {
                    return Received::Refused(error);
                }
                new.push(*approval);
            }
            let held = pending.approvals.len();
            if new.is_empty() && held < self.state.needed() {
                return Received::Known;
            }
            if let Some(pending) = self.pending.get_mut(&id) {
                for approval in new {
                    pending.approvals.insert(approval.signer, approval);
                }
            }
            // Applies it if the threshold is held, whatever brought it there.
            return self.settle(id);
        }
        let verified = match self.state.check(op, Need::Proposal { now_ms }, cache) {
            Ok(verified) => verified,
            Err(error) => return Received::Refused(error),
        };
        let proposer = op.body.proposer;
        let open = self
            .pending
            .values()
            .filter(|pending| pending.op.body.proposer == proposer)
            .count();
        // Every member has its own slots: the pool holds all of them, so
        // members flooding proposals cannot crowd out anyone else's.
        let pool = MAX_PENDING_PROPOSALS.max(MAX_PROPOSALS_PER_MEMBER * self.state.members().len());
        if open >= MAX_PROPOSALS_PER_MEMBER || self.pending.len() >= pool {
            return Received::TooManyProposals(proposer);
        }
        let op = verified.op().clone();
        self.pending.insert(
            id,
            Pending {
                approvals: op.approvals.iter().map(|a| (a.signer, *a)).collect(),
                op,
            },
        );
        self.settle(id)
    }

    /// Applies a proposal that reached the threshold, or reports its count.
    fn settle(&mut self, id: RosterHash) -> Received {
        let Some(pending) = self.pending.get(&id) else {
            return Received::Known;
        };
        let approvals = pending.approvals.len();
        let needed = self.state.needed();
        if approvals < needed {
            return Received::Proposal {
                id,
                approvals,
                needed,
            };
        }
        let op = pending.current();
        let cache = self.cache.clone();
        match self.state.check(&op, Need::Complete, cache.as_deref()) {
            Ok(verified) => self.apply(verified),
            Err(error) => Received::Refused(error),
        }
    }

    fn apply(&mut self, op: VerifiedOp) -> Received {
        let next = match self.state.apply(&op) {
            Ok(next) => next,
            Err(error) => return Received::Refused(error),
        };
        self.state = next;
        self.needed.push(self.state.needed());
        let epoch = self.state.epoch();
        self.pending
            .retain(|_, pending| pending.op.body.epoch > epoch);
        self.chain.push(op.clone());
        Received::Applied(Box::new(op))
    }

    /// An operation for an epoch this chain has passed.
    fn receive_past(&mut self, op: &SignedOp) -> Received {
        let epoch = op.body.epoch;
        let index = (epoch - 1) as usize;
        if self.chain[index].id() == op.id() {
            return Received::Known;
        }
        if self.fork.is_some() {
            // One proof is enough: further forks change nothing.
            return Received::Frozen;
        }
        // Fewer distinct approvals than that epoch needed: a proposal that
        // lost, or a replay of one; not worth rebuilding the state to look closer.
        let mut signers: Vec<NodeId> = op.approvals.iter().map(|a| a.signer).collect();
        signers.dedup();
        if signers.len() < self.needed[index] {
            return Received::Stale;
        }
        // Another state than the chain's at that epoch: not a fork of this chain.
        let prev = self.chain[index].body().prev;
        if op.body.prev != prev {
            return Received::Refused(RosterError::WrongPrev {
                expected: prev,
                found: op.body.prev,
            });
        }
        let proof = RosterForkProof::new(self.chain[index].op().clone(), op.clone());
        match self.check_fork(&proof) {
            Ok(()) => {
                if self.fork.is_none() {
                    self.fork = Some(proof.clone());
                }
                Received::Forked(Box::new(proof))
            }
            Err(error) => Received::Refused(error),
        }
    }

    /// The state before `epoch` (rebuilt from the genesis).
    pub fn state_before(&self, epoch: u64) -> Option<RosterState> {
        if epoch == 0 || epoch > self.state.epoch() + 1 {
            return None;
        }
        let mut state = RosterState::from_genesis(&self.genesis);
        for op in &self.chain[..(epoch - 1) as usize] {
            state = state.apply(op).ok()?;
        }
        Some(state)
    }

    /// Checks a fork proof against this chain.
    pub fn check_fork(&self, proof: &RosterForkProof) -> Result<(), RosterError> {
        let epoch = proof.epoch();
        let state = self.state_before(epoch).ok_or(RosterError::WrongEpoch {
            expected: self.state.epoch() + 1,
            found: epoch,
        })?;
        proof.verify(&state, self.cache.as_deref())
    }

    /// Signs a new proposal for the next epoch (its countersignature, for an add
    /// or rotate, made by the new key's holder) and takes it in.
    pub fn propose(
        &mut self,
        identity: &Identity,
        action: Action,
        countersignature: Option<tidings_keys::Signature>,
        now_ms: u64,
        lifetime_ms: u64,
    ) -> Result<(SignedOp, Received), SignError> {
        if let Some(proof) = &self.fork {
            return Err(SignError::Frozen(proof.epoch()));
        }
        let body = self
            .state
            .propose(identity.node_id(), action, now_ms, lifetime_ms);
        let op = SignedOp {
            countersignature,
            approvals: Vec::new(),
            body,
        };
        let id = op.id();
        self.may_sign(identity, op.body.epoch, id)?;
        let op = SignedOp {
            approvals: vec![approve(identity, &op.body)],
            ..op
        };
        // The vote is recorded only once the proposal is taken in: an invalid
        // one, or one the pool cannot hold, costs no vote.
        let received = self.receive(&op, now_ms);
        match &received {
            Received::Refused(error) => return Err(SignError::Invalid(error.clone())),
            Received::TooManyProposals(_) => return Err(SignError::PoolFull),
            _ => {}
        }
        self.signed.insert(op.body.epoch, id);
        Ok((op, received))
    }

    /// Adds this node's approval to an open proposal.
    pub fn approve(
        &mut self,
        identity: &Identity,
        id: &RosterHash,
        now_ms: u64,
    ) -> Result<(SignedOp, Received), SignError> {
        if let Some(proof) = &self.fork {
            return Err(SignError::Frozen(proof.epoch()));
        }
        let pending = self.pending.get(id).ok_or(SignError::NoSuchProposal(*id))?;
        if pending.approvals.contains_key(&identity.node_id()) {
            return Err(SignError::AlreadyApproved(*id));
        }
        if pending.op.body.expires_at_ms < now_ms {
            return Err(SignError::Invalid(RosterError::Expired {
                expires_at_ms: pending.op.body.expires_at_ms,
                now_ms,
            }));
        }
        let epoch = pending.op.body.epoch;
        let body = pending.op.body.clone();
        // A vote made before a crash whose approval never left: signing the same
        // body again gives the same signature (ed25519 is deterministic).
        if self.signed.get(&epoch) != Some(id) {
            self.may_sign(identity, epoch, *id)?;
        }
        let approval = approve(identity, &body);
        self.signed.insert(epoch, *id);
        let mut op = self.pending[id].current();
        op.approvals.push(approval);
        op.approvals.sort_by_key(|approval| approval.signer);
        let received = self.receive(&op, now_ms);
        Ok((op, received))
    }

    fn may_sign(&self, identity: &Identity, epoch: u64, id: RosterHash) -> Result<(), SignError> {
        if !self.state.members().contains(&identity.node_id()) {
            return Err(SignError::NotAMember);
        }
        match self.signed.get(&epoch) {
            Some(other) if *other != id => Err(SignError::AlreadySigned {
                epoch,
                other: *other,
            }),
            Some(_) => Err(SignError::AlreadyApproved(id)),
            None => Ok(()),
        }
    }
}
