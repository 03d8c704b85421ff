//! A roster state and the rules an operation must pass to change it.
//!
//! [`RosterState::check`] is the one place a [`VerifiedOp`] is made. Checks that
//! need no signature come first (federation, epoch, prev, proposer, action,
//! lifetime, who signed and how many), so an operation that fails anyway costs
//! no `verify_strict`; then the countersignature; then each approval.

use std::collections::BTreeSet;
use std::sync::Arc;

use tidings_keys::{verify, Domain, FederationId, Identity, NodeId, Roster, VerifyError};

use super::op::{check_label, Action, Approval, Genesis, OpBody, RosterHash, SignedOp, Threshold};
use crate::proto::codec::DecodeError;
use crate::proto::limits::{MAX_CLOCK_SKEW_MS, MAX_PROPOSAL_LIFETIME_MS};

/// Highest seq a pardon may name: the pardoned chain restarts above it, past
/// a recovery gap, and must still have seqs left for as long as it runs (the
/// line recoveries jump to is near 2^51 today; this is 2^62).
pub const MAX_PARDON_SEQ: u64 = 1 << 62;

/// Why an operation does not apply to a state.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    /// The bytes are not an operation.
    #[error("malformed roster operation: {0}")]
    Malformed(DecodeError),
    /// It belongs to another federation.
    #[error("the operation belongs to another federation")]
    WrongFederation,
    /// It is not for the next epoch.
    #[error("the operation is for epoch {found}, the next epoch is {expected}")]
    WrongEpoch {
        /// The epoch it should make.
        expected: u64,
        /// The epoch it says.
        found: u64,
    },
    /// It changes another state than the current one.
    #[error("the operation changes state {found}, not the current state {expected}")]
    WrongPrev {
        /// The current state.
        expected: RosterHash,
        /// The state it names.
        found: RosterHash,
    },
    /// A signer (or the proposer) is not a member of the state it changes.
    #[error("{0} is not a member of the roster the operation changes")]
    NotAMember(NodeId),
    /// The proposer did not approve its own proposal.
    #[error("the proposer {0} did not approve the operation")]
    ProposerDidNotApprove(NodeId),
    /// One key approved twice.
    #[error("{0} approved twice; approvals count distinct keys")]
    DuplicateApproval(NodeId),
    /// Too few distinct members approved.
    #[error("{found} distinct approvals, the threshold is {needed}")]
    TooFewApprovals {
        /// The threshold.
        needed: usize,
        /// Distinct approvals.
        found: usize,
    },
    /// An approval does not verify.
    #[error("the approval of {signer} does not verify: {error}")]
    BadApproval {
        /// Whose approval.
        signer: NodeId,
        /// Why.
        error: VerifyError,
    },
    /// An add or rotate without the new key's countersignature.
    #[error("the new key {0} did not countersign the operation")]
    MissingCountersignature(NodeId),
    /// The countersignature does not verify, or the new key is unusable.
    #[error("the countersignature of the new key {key} does not verify: {error}")]
    BadCountersignature {
        /// The new key.
        key: NodeId,
        /// Why.
        error: VerifyError,
    },
    /// A countersignature on an action that admits no key.
    #[error("a {0} operation carries no countersignature")]
    UnexpectedCountersignature(&'static str),
    /// The key to admit is already on the roster.
    #[error("{0} is already a member")]
    AlreadyAMember(NodeId),
    /// The member to change is not on the roster.
    #[error("{0} is not a member")]
    NoSuchMember(NodeId),
    /// A pardon above a seq no chain can continue from: the pardoned node's
    /// next records would run out of seqs and repeat one (see
    /// [`MAX_PARDON_SEQ`]).
    #[error(
        "a pardon above seq {0} leaves the chain no room to continue (at most {MAX_PARDON_SEQ})"
    )]
    PardonTooHigh(u64),
    /// The change would leave a threshold the roster cannot meet or that no
    /// longer guarantees that two quorums overlap.
    #[error("after this operation, {members} members with threshold {threshold}: {reason}")]
    ThresholdUnusable {
        /// Members after the operation.
        members: usize,
        /// Threshold after the operation.
        threshold: Threshold,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// A label that is not allowed.
    #[error("label {label:?}: {reason}")]
    BadLabel {
        /// The label.
        label: String,
        /// Why.
        reason: &'static str,
    },
    /// The lifetime is empty or longer than allowed.
    #[error("the operation's lifetime ({issued_at_ms} to {expires_at_ms}) is empty or longer than seven days")]
    BadLifetime {
        /// Issued at.
        issued_at_ms: u64,
        /// Expires at.
        expires_at_ms: u64,
    },
    /// A proposal issued further in the future than the tolerated clock skew
    /// (it would stay open past any expiry a node could check).
    #[error("the proposal is issued {ahead_ms} ms in the future")]
    FutureDated {
        /// How far ahead of this node's clock.
        ahead_ms: u64,
    },
    /// A proposal past its expiry (complete operations are judged by their
    /// approvals alone: a node catching up meets old operations).
    #[error("the proposal expired at {expires_at_ms} (now {now_ms})")]
    Expired {
        /// When it expired.
        expires_at_ms: u64,
        /// Now.
        now_ms: u64,
    },
}

/// An operation that passed every check against the state it changes: the
/// only kind a state applies. Approvals are deduplicated and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOp {
    op: SignedOp,
    id: RosterHash,
}

impl VerifiedOp {
    /// The operation.
    pub fn op(&self) -> &SignedOp {
        &self.op
    }

    /// Its id.
    pub fn id(&self) -> RosterHash {
        self.id
    }

    /// Its body.
    pub fn body(&self) -> &OpBody {
        &self.op.body
    }

    /// The epoch it makes.
    pub fn epoch(&self) -> u64 {
        self.op.body.epoch
    }
}

/// How thoroughly [`RosterState::check`] judges an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A proposal: at least its proposer's approval, and not expired.
    Proposal {
        /// Now, to judge expiry.
        now_ms: u64,
    },
    /// An operation to apply: at least the threshold of approvals.
    Complete,
}

/// The roster at one epoch: members, threshold, and the id of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterState {
    federation: FederationId,
    genesis: RosterHash,
    epoch: u64,
    head: RosterHash,
    threshold: Threshold,
    members: Arc<Roster>,
    /// The members' ids in order, shared with membership.
    list: Arc<[NodeId]>,
}

impl RosterState {
    /// The state at epoch 0.
    pub fn from_genesis(genesis: &Genesis) -> Self {
        let id = genesis.id();
        Self {
            federation: genesis.federation,
            genesis: id,
            epoch: 0,
            head: id,
            threshold: genesis.threshold,
            list: genesis.members.iter().map(|(id, _)| *id).collect(),
            members: genesis.members.clone(),
        }
    }

    /// The federation.
    pub fn federation(&self) -> FederationId {
        self.federation
    }

    /// The genesis id: which chain this is.
    pub fn genesis(&self) -> RosterHash {
        self.genesis
    }

    /// The epoch (0 for the genesis).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The id of this state.
    pub fn head(&self) -> RosterHash {
        self.head
    }

    /// The threshold rule.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// Approvals an operation on this state needs.
    pub fn needed(&self) -> usize {
        self.threshold.of(self.members.len())
    }

    /// The members.
    pub fn members(&self) -> &Arc<Roster> {
        &self.members
    }

    /// The members' ids, in order.
    pub fn member_list(&self) -> &Arc<[NodeId]> {
        &self.list
    }

    /// The body of an operation on this state, proposed by `proposer` at `now_ms`.
    pub fn propose(
        &self,
        proposer: NodeId,
        action: Action,
        now_ms: u64,
        lifetime_ms: u64,
    ) -> OpBody {
        OpBody {
            federation: self.federation,
            epoch: self.epoch + 1,
            prev: self.head,
            proposer,
            issued_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(lifetime_ms),
            action,
        }
    }

    /// Checks `op` against this state (see the module doc for the order).
    pub fn check(
        &self,
        op: &SignedOp,
        need: Need,
        cache: Option<&ApprovalCache>,
    ) -> Result<VerifiedOp, RosterError> {
        let body = &op.body;
        let body_id = body.id();
        if body.federation != self.federation {
            return Err(RosterError::WrongFederation);
        }
        if body.epoch != self.epoch + 1 {
            return Err(RosterError::WrongEpoch {
                expected: self.epoch + 1,
                found: body.epoch,
            });
        }
        if body.prev != self.head {
            return Err(RosterError::WrongPrev {
                expected: self.head,
                found: body.prev,
            });
        }
        if !self.members.contains(&body.proposer) {
            return Err(RosterError::NotAMember(body.proposer));
        }
        self.after(&body.action)?;
        if body.expires_at_ms <= body.issued_at_ms
            || body.expires_at_ms - body.issued_at_ms > MAX_PROPOSAL_LIFETIME_MS
        {
            return Err(RosterError::BadLifetime {
                issued_at_ms: body.issued_at_ms,
                expires_at_ms: body.expires_at_ms,
            });
        }
        if let Need::Proposal { now_ms } = need {
            let ahead_ms = body.issued_at_ms.saturating_sub(now_ms);
            if ahead_ms > MAX_CLOCK_SKEW_MS {
                return Err(RosterError::FutureDated { ahead_ms });
            }
            if now_ms > body.expires_at_ms {
                return Err(RosterError::Expired {
                    expires_at_ms: body.expires_at_ms,
                    now_ms,
                });
            }
        }
        let mut signers = BTreeSet::new();
        for approval in &op.approvals {
            if !self.members.contains(&approval.signer) {
                return Err(RosterError::NotAMember(approval.signer));
            }
            if !signers.insert(approval.signer) {
                return Err(RosterError::DuplicateApproval(approval.signer));
            }
        }
        if !signers.contains(&body.proposer) {
            return Err(RosterError::ProposerDidNotApprove(body.proposer));
        }
        if need == Need::Complete && signers.len() < self.needed() {
            return Err(RosterError::TooFewApprovals {
                needed: self.needed(),
                found: signers.len(),
            });
        }
        match (body.action.new_key(), &op.countersignature) {
            (Some(key), None) => return Err(RosterError::MissingCountersignature(key)),
            (Some(key), Some(signature)) => {
                let message = countersigned_message(&body.action);
                verify(
                    &key,
                    Domain::RosterKey,
                    &self.federation,
                    &message,
                    signature,
                )
                .map_err(|error| RosterError::BadCountersignature { key, error })?;
            }
            (None, Some(_)) => {
                return Err(RosterError::UnexpectedCountersignature(body.action.name()))
            }
            (None, None) => {}
        }
        let bytes = body.encode();
        for approval in &op.approvals {
            if !cache.is_some_and(|cache| cache.contains(&body_id, approval)) {
                check_approval(&self.federation, &bytes, approval)?;
                if let Some(cache) = cache {
                    cache.insert(&body_id, approval);
                }
            }
        }
        Ok(VerifiedOp {
            op: op.clone(),
            id: body_id,
        })
    }

    /// Checks one approval of an operation on this state (for merging proposals
    /// one signature at a time).
    pub fn check_approval(
        &self,
        body: &OpBody,
        approval: &Approval,
        cache: Option<&ApprovalCache>,
    ) -> Result<(), RosterError> {
        if !self.members.contains(&approval.signer) {
            return Err(RosterError::NotAMember(approval.signer));
        }
        let id = body.id();
        if cache.is_some_and(|cache| cache.contains(&id, approval)) {
            return Ok(());
        }
        check_approval(&self.federation, &body.encode(), approval)?;
        if let Some(cache) = cache {
            cache.insert(&id, approval);
        }
        Ok(())
    }

    /// The members and threshold `action` would leave, if it may be applied.
    fn after(&self, action: &Action) -> Result<(Roster, Threshold), RosterError> {
        let mut members = (*self.members).clone();
        let mut threshold = self.threshold;
        let label_ok = |label: &Option<String>| match label {
            Some(label) => check_label(label).map_err(|reason| RosterError::BadLabel {
                label: label.clone(),
                reason,
            }),
            None => Ok(()),
        };
        match action {
            Action::Add { member, label } => {
                label_ok(label)?;
                if !members.insert(*member, label.clone()) {
                    return Err(RosterError::AlreadyAMember(*member));
                }
            }
            Action::Remove { member } => {
                if members.remove(member).is_none() {
                    return Err(RosterError::NoSuchMember(*member));
                }
            }
            Action::Rotate { from, to } => {
                if members.contains(to) {
                    return Err(RosterError::AlreadyAMember(*to));
                }
                let label = members
                    .remove(from)
                    .ok_or(RosterError::NoSuchMember(*from))?;
                members.insert(*to, label);
            }
            Action::Threshold(new) => threshold = *new,
            Action::Relabel { member, label } => {
                label_ok(label)?;
                if !members.relabel(member, label.clone()) {
                    return Err(RosterError::NoSuchMember(*member));
                }
            }
            Action::Pardon { origin, above_seq } => {
                if !members.contains(origin) {
                    return Err(RosterError::NoSuchMember(*origin));
                }
                if *above_seq > MAX_PARDON_SEQ {
                    return Err(RosterError::PardonTooHigh(*above_seq));
                }
            }
        }
        if let Some(reason) = threshold.unusable_for(members.len()) {
            return Err(RosterError::ThresholdUnusable {
                members: members.len(),
                threshold,
                reason,
            });
        }
        members.set_threshold(match threshold {
            Threshold::TwoThirds => None,
            Threshold::Fixed(k) => Some(k),
        });
        Ok((members, threshold))
    }

    /// The state `op` makes; an operation verified against another state is
    /// refused.
    pub fn apply(&self, op: &VerifiedOp) -> Result<RosterState, RosterError> {
        if op.epoch() != self.epoch + 1 {
            return Err(RosterError::WrongEpoch {
                expected: self.epoch + 1,
                found: op.epoch(),
            });
        }
        if op.body().prev != self.head {
            return Err(RosterError::WrongPrev {
                expected: self.head,
                found: op.body().prev,
            });
        }
        let (members, threshold) = self.after(&op.body().action)?;
        Ok(RosterState {
            federation: self.federation,
            genesis: self.genesis,
            epoch: op.epoch(),
            head: op.id(),
            threshold,
            list: members.iter().map(|(id, _)| *id).collect(),
            members: Arc::new(members),
        })
    }
}

/// What a new key countersigns: the action that admits it, in its federation
/// (not the epoch: the key's holder can make it before the proposal exists, and
/// hand it to a member who proposes; see the module doc of [`super`]).
pub fn countersigned_message(action: &Action) -> Vec<u8> {
    let mut out = b"admit ".to_vec();
    out.extend_from_slice(&OpBody::action_bytes(action));
    out
}

/// Approvals already verified, by operation id, signer and signature: merging
/// copies of one proposal verifies each approval once (and the simulator shares
/// one cache among its nodes, as it shares verified records). Bounded: when full
/// it is cleared.
#[derive(Debug, Default)]
pub struct ApprovalCache {
    seen: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
}

const APPROVAL_CACHE_ENTRIES: usize = 1 << 20;

impl ApprovalCache {
    fn key(op: &RosterHash, approval: &Approval) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&op.0);
        hasher.update(approval.signer.as_bytes());
        hasher.update(&approval.signature.0);
        *hasher.finalize().as_bytes()
    }

    fn contains(&self, op: &RosterHash, approval: &Approval) -> bool {
        self.seen
            .lock()
            .is_ok_and(|seen| seen.contains(&Self::key(op, approval)))
    }

    fn insert(&self, op: &RosterHash, approval: &Approval) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= APPROVAL_CACHE_ENTRIES {
                seen.clear();
            }
            seen.insert(Self::key(op, approval));
        }
    }
}

fn check_approval(
    federation: &FederationId,
    body: &[u8],
    approval: &Approval,
) -> Result<(), RosterError> {
    verify(
        &approval.signer,
        Domain::RosterOp,
        federation,
        body,
        &approval.signature,
    )
    .map_err(|error| RosterError::BadApproval {
        signer: approval.signer,
        error,
    })
}

/// `identity`'s approval of `body`.
pub fn approve(identity: &Identity, body: &OpBody) -> Approval {
    Approval {
        signer: identity.node_id(),
        signature: identity.sign(Domain::RosterOp, &body.federation, &body.encode()),
    }
}

/// The countersignature of a new key over the action that admits it.
pub fn countersign(
    new_key: &Identity,
    federation: &FederationId,
    action: &Action,
) -> tidings_keys::Signature {
    new_key.sign(
        Domain::RosterKey,
        federation,
        &countersigned_message(action),
    )
}
