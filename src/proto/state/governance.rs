//! The roster inside the state machine: gossiping the chain and proposals,
//! applying operations live, and this node's votes.
//!
//! - **Ahead of records.** Every exchange this node opens starts with its
//!   [`RosterHead`] (and its fork proof, if it holds one) before `Open`. A peer
//!   that is behind asks for the operations after its epoch; one that is ahead
//!   is asked. Open proposals are compared by a fingerprint of their approvals
//!   and the differing ones pulled and pushed, so approvals merge everywhere.
//! - **Catching up before judging.** While a peer has shown a later epoch than
//!   this node's, a record of an origin off the roster is ignored, not blamed:
//!   it may be a member added since. For [`ROSTER_GRACE_MS`] after a removal,
//!   records of the removed origin are ignored the same way: the relaying peer
//!   may not have applied the removal yet.
//! - **Live apply.** An applied operation is made durable, then the directory
//!   admits the new roster (records of removed origins leave it; a rotated
//!   key's chain floor passes to the new key; a pardon lifts a quarantine and
//!   sets the floor above which the chain restarts), membership picks among
//!   the new members, and the driver is told ([`Output::RosterChanged`]) so
//!   that TLS admits new keys and connections of removed keys close. The
//!   operation is pushed at once to every neighbour (see
//!   [`spread`](crate::proto::spread)), or to `fanout` members while there are none.
//! - **Votes** are made only by local command, and are durable
//!   ([`Output::PersistVote`]) before the approval leaves the node.

use std::sync::Arc;

use rand::Rng;
use tidings_keys::{NodeId, Roster};

use super::State;
use crate::proto::budget::cost;
use crate::proto::event::{AuditEvent, ChainStatus, DirectoryChange, Halt, Output, RosterOutcome};
use crate::proto::limits::{
    MAX_FRAME_BYTES, MAX_ROSTER_OPS_PER_MESSAGE, RECOVERY_SEQ_GAP, ROSTER_GRACE_MS,
};
use crate::proto::record::{RecordId, VerifiedRecord};
use crate::proto::roster::{
    Action, Ledger, Received, RosterError, RosterForkProof, RosterHash, SignedOp, VerifiedOp,
};
use crate::proto::score::Offence;
use crate::proto::verdict::{Ignored, Rejection, RosterExcuse, Verdict};
use crate::proto::wire::{Message, RosterHead};

/// A roster command from this node's operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterCommand {
    /// Propose `action` for the next epoch (this node approves it).
    Propose {
        /// What to change.
        action: Action,
        /// The new key's countersignature (add and rotate).
        countersignature: Option<tidings_keys::Signature>,
        /// How long the proposal stays open.
        lifetime_ms: u64,
    },
    /// Approve an open proposal.
    Approve(RosterHash),
}

/// Whether a refused operation blames the peer that sent it: only for what no
/// honest relay sends (every node checks a proposal before relaying it). Wrong
/// epochs and prevs, and expiry, can come from an honest peer on a lagging
/// chain or a slow clock.
fn blames_sender(error: &RosterError) -> bool {
    !matches!(
        error,
        RosterError::WrongEpoch { .. }
            | RosterError::WrongPrev { .. }
            | RosterError::Expired { .. }
    )
}

impl State {
    /// The roster ledger: chain, proposals, votes.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Restores an applied operation from the store (at start, in epoch order,
    /// before records are restored): applied without outputs but the
    /// directory's and membership's, which the driver reads back.
    pub fn restore_roster_op(&mut self, op: &SignedOp, now_ms: u64) -> Result<(), RosterError> {
        match self.ledger.receive(op, now_ms) {
            Received::Applied(verified) => {
                self.apply_effects(&verified, now_ms);
                Ok(())
            }
            Received::Refused(error) => Err(error),
            other => Err(RosterError::Malformed(
                crate::proto::codec::DecodeError::Invalid {
                    field: crate::proto::codec::Field::RosterOp,
                    reason: match other {
                        Received::Known => "already in the chain",
                        Received::Ahead { .. } => "not the next epoch",
                        _ => "not a complete operation for the next epoch",
                    },
                },
            )),
        }
    }

    /// Continues the chain of the key this node's key replaced (a rotation):
    /// its first record under the new key comes right above `previous`.
    pub fn continue_chain(&mut self, previous: VerifiedRecord) {
        if self.own.is_none() {
            if self.desired.is_none() {
                self.desired = Some(super::announcement_of(&previous));
            }
            self.predecessor = Some(previous);
            self.note_desired();
        }
    }

    /// Shares a cache of verified approvals (the simulator's nodes share one).
    pub fn set_approval_cache(&mut self, cache: Arc<crate::proto::roster::ApprovalCache>) {
        self.ledger.set_cache(cache);
    }

    /// Restores this node's vote for `epoch` (at start).
    pub fn restore_vote(&mut self, epoch: u64, id: RosterHash) {
        self.ledger.restore_signed(epoch, id);
    }

    /// Restores a roster fork proof (at start).
    pub fn restore_roster_fork(&mut self, proof: RosterForkProof) -> Result<(), RosterError> {
        self.ledger.restore_fork(proof)
    }

    /// Handles a roster command; the answer is an [`Output::RosterResult`], after
    /// the [`Output::PersistVote`] of the vote it cast.
    pub fn handle_roster_command<R: Rng + ?Sized>(
        &mut self,
        command: RosterCommand,
        now_ms: u64,
        rng: &mut R,
    ) {
        let identity = self.identity.clone();
        let result = match command {
            RosterCommand::Propose {
                action,
                countersignature,
                lifetime_ms,
            } => self
                .ledger
                .propose(&identity, action, countersignature, now_ms, lifetime_ms),
            RosterCommand::Approve(id) => self.ledger.approve(&identity, &id, now_ms),
        };
        if let Ok((op, received)) = &result {
            // The audit entry first: it is durable with the vote (a store lost
            // later gives the vote back from the log).
            self.outputs.push_back(Output::Audit(AuditEvent::roster(
                None,
                op,
                RosterOutcome::Signed,
            )));
            self.outputs.push_back(Output::PersistVote {
                epoch: op.body.epoch,
                id: op.id(),
            });
            self.after_received(None, op, received.clone(), now_ms, rng);
            if !matches!(received, Received::Applied(_)) {
                // Applied operations were pushed by `after_received`.
                self.push_roster_op(op, None, now_ms, rng);
            }
        }
        self.outputs
            .push_back(Output::RosterResult(result.map(Box::new)));
        self.flush_pushes(now_ms);
    }

    /// This node's roster head, for a peer.
    pub(super) fn roster_head(&self, reply: bool) -> RosterHead {
        let state = self.ledger.state();
        RosterHead {
            epoch: state.epoch(),
            head: state.head(),
            pending: self.ledger.pending_digest(),
            reply,
            forked: self.ledger.fork().is_some(),
        }
    }

    /// What an exchange opens with, ahead of `Open`: the fork proof, if any,
    /// then the head.
    pub(super) fn open_roster(&mut self, peer: NodeId) {
        if let Some(proof) = self.ledger.fork() {
            let bytes = proof.encode();
            self.send(peer, Message::RosterFork(bytes));
        }
        let head = self.roster_head(false);
        self.send(peer, Message::RosterHead(head));
    }

    /// Answers a peer's roster head; returns the work units it cost.
    pub(super) fn on_roster_head(&mut self, from: NodeId, theirs: &RosterHead, now_ms: u64) -> u64 {
        let mut units = cost::RANGE + cost::HOLDING * theirs.pending.len() as u64;
        let mine = self.roster_head(true);
        if mine.forked && !theirs.forked {
            if let Some(proof) = self.ledger.fork() {
                let bytes = proof.encode();
                self.send(from, Message::RosterFork(bytes));
            }
        }
        let mut differs = mine.epoch != theirs.epoch || mine.head != theirs.head;
        if theirs.epoch > mine.epoch {
            self.note_ahead(theirs.epoch, now_ms);
            self.send(
                from,
                Message::RosterWant {
                    after: Some(mine.epoch),
                    proposals: Vec::new(),
                },
            );
        } else if theirs.epoch < mine.epoch {
            units += self.send_chain(from, theirs.epoch, now_ms);
        } else if theirs.head != mine.head && mine.epoch > 0 {
            // Same epoch, another operation: send ours, so a fork is found.
            units += self.send_chain(from, mine.epoch - 1, now_ms);
        } else if mine.epoch == theirs.epoch {
            // Same state: compare open proposals.
            let mut want = Vec::new();
            for (id, fingerprint) in &theirs.pending {
                let ours = mine.pending.iter().find(|(mine, _)| mine == id);
                if ours.is_none_or(|(_, f)| f != fingerprint) {
                    want.push(*id);
                    differs = true;
                }
            }
            let push: Vec<RosterHash> = mine
                .pending
                .iter()
                .filter(|(id, fingerprint)| {
                    theirs
                        .pending
                        .iter()
                        .find(|(theirs, _)| theirs == id)
                        .is_none_or(|(_, f)| f != fingerprint)
                })
                .map(|(id, _)| *id)
                .collect();
            differs |= !push.is_empty();
            units += self.send_proposals(from, &push, now_ms);
            if !want.is_empty() {
                self.send(
                    from,
                    Message::RosterWant {
                        after: None,
                        proposals: want,
                    },
                );
            }
        }
        if differs {
            self.stir(now_ms);
            if !theirs.reply {
                self.send(from, Message::RosterHead(mine));
            }
        }
        units
    }

    /// Answers a roster want; returns the work units it cost.
    pub(super) fn on_roster_want(
        &mut self,
        from: NodeId,
        after: Option<u64>,
        proposals: &[RosterHash],
        now_ms: u64,
    ) -> u64 {
        let mut units = cost::RANGE;
        if let Some(after) = after {
            units += self.send_chain(from, after, now_ms);
        }
        units + self.send_proposals(from, proposals, now_ms)
    }

    /// Sends `to` the applied operations after `epoch` (one frame's worth: it
    /// asks again if still behind). Returns the work units.
    fn send_chain(&mut self, to: NodeId, epoch: u64, now_ms: u64) -> u64 {
        let candidates: Vec<(RosterHash, Vec<u8>)> = self
            .ledger
            .after(epoch)
            .iter()
            .take(MAX_ROSTER_OPS_PER_MESSAGE)
            .map(|op| (op.id(), op.op().encode()))
            .collect();
        let mut ops = Vec::new();
        for (id, bytes) in candidates {
            if self.roster_mark_sent(to, id, 0, now_ms) {
                ops.push(bytes);
            }
        }
        self.send_roster_ops(to, ops)
    }

    /// Sends `to` the open proposals among `ids` that it was not sent, with the
    /// same approvals, within the last interval.
    fn send_proposals(&mut self, to: NodeId, ids: &[RosterHash], now_ms: u64) -> u64 {
        let digest = self.ledger.pending_digest();
        let mut ops = Vec::new();
        for id in ids {
            let Some(op) = self.ledger.proposal(id) else {
                continue;
            };
            let fingerprint = digest
                .iter()
                .find(|(pending, _)| pending == id)
                .map_or(0, |(_, f)| *f);
            if self.roster_mark_sent(to, *id, fingerprint, now_ms) {
                ops.push(op.encode());
            }
        }
        self.send_roster_ops(to, ops)
    }

    fn send_roster_ops(&mut self, to: NodeId, ops: Vec<Vec<u8>>) -> u64 {
        let mut units = 0;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        for op in ops {
            units += cost::RECORD_SENT + cost::bytes(op.len());
            if batch.len() == MAX_ROSTER_OPS_PER_MESSAGE || bytes + op.len() + 16 > MAX_FRAME_BYTES
            {
                self.send(to, Message::RosterOps(std::mem::take(&mut batch)));
                bytes = 0;
            }
            bytes += op.len() + 8;
            batch.push(op);
        }
        if !batch.is_empty() {
            self.send(to, Message::RosterOps(batch));
        }
        units
    }

    /// Like [`State::mark_sent`] for roster operations: each version (id and
    /// approvals) goes to a peer at most once an interval.
    fn roster_mark_sent(
        &mut self,
        to: NodeId,
        id: RosterHash,
        fingerprint: u64,
        now_ms: u64,
    ) -> bool {
        let mut key = id.0;
        for (byte, extra) in key.iter_mut().zip(fingerprint.to_le_bytes()) {
            *byte ^= extra;
        }
        key[31] ^= 0x5a;
        self.mark_sent(to, RecordId(key), now_ms)
    }

    /// Takes in roster operations from a peer; returns the work units wasted.
    pub(super) fn on_roster_ops<R: Rng + ?Sized>(
        &mut self,
        from: NodeId,
        items: &[Vec<u8>],
        now_ms: u64,
        rng: &mut R,
    ) -> u64 {
        let mut units = 0;
        for bytes in items {
            let op = match SignedOp::decode(bytes) {
                Ok(op) => op,
                Err(error) => {
                    self.malformed(from, error, Offence::InvalidRosterOp, now_ms);
                    units += cost::WASTED_RECORD + cost::bytes(bytes.len()) + cost::AUDIT_ENTRY;
                    continue;
                }
            };
            let received = self.ledger.receive(&op, now_ms);
            let useful = matches!(
                received,
                Received::Applied(_) | Received::Proposal { .. } | Received::Forked(_)
            );
            if useful {
                self.stir(now_ms);
            } else {
                // Signatures are charged only when they may have been checked
                // (a refusal); a duplicate, a stale proposal or a later epoch
                // costs its bytes, since honest peers send those too.
                let checked = match &received {
                    Received::Refused(_) | Received::TooManyProposals(_) => {
                        cost::SIGNATURE * (op.approvals.len() as u64 + 1)
                    }
                    _ => 0,
                };
                units += cost::WASTED_RECORD + cost::bytes(bytes.len()) + checked;
            }
            self.after_received(Some(from), &op, received, now_ms, rng);
        }
        units
    }

    /// Acts on what the ledger made of an operation.
    fn after_received<R: Rng + ?Sized>(
        &mut self,
        peer: Option<NodeId>,
        op: &SignedOp,
        received: Received,
        now_ms: u64,
        rng: &mut R,
    ) {
        match received {
            Received::Applied(verified) => self.on_applied(peer, *verified, now_ms, rng),
            Received::Proposal {
                approvals, needed, ..
            } => {
                self.outputs.push_back(Output::Audit(AuditEvent::roster(
                    peer,
                    op,
                    RosterOutcome::Proposal { approvals, needed },
                )));
            }
            Received::Known | Received::Stale | Received::Frozen => {}
            Received::Ahead { epoch } => {
                self.note_ahead(epoch, now_ms);
                if let Some(peer) = peer {
                    let after = self.ledger.state().epoch();
                    self.send(
                        peer,
                        Message::RosterWant {
                            after: Some(after),
                            proposals: Vec::new(),
                        },
                    );
                }
            }
            Received::Forked(proof) => self.on_fork(peer, *proof, now_ms, rng),
            Received::TooManyProposals(_) => {
                self.outputs.push_back(Output::Audit(AuditEvent::roster(
                    peer,
                    op,
                    RosterOutcome::TooManyProposals,
                )));
            }
            Received::Refused(error) => {
                let blame = blames_sender(&error);
                self.outputs.push_back(Output::Audit(AuditEvent::roster(
                    peer,
                    op,
                    RosterOutcome::Refused(error),
                )));
                if let (Some(peer), true) = (peer, blame) {
                    self.penalise(peer, Offence::InvalidRosterOp, now_ms);
                }
            }
        }
    }

    /// A received fork proof.
    pub(super) fn on_roster_fork<R: Rng + ?Sized>(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        now_ms: u64,
        rng: &mut R,
    ) -> u64 {
        let wasted = cost::WASTED_RECORD + cost::bytes(bytes.len());
        if self.ledger.fork().is_some() {
            return wasted;
        }
        let proof = match RosterForkProof::decode(bytes) {
            Ok(proof) => proof,
            Err(error) => {
                self.malformed(from, error, Offence::InvalidRosterOp, now_ms);
                return wasted;
            }
        };
        if proof.epoch() > self.ledger.state().epoch() {
            // A fork beyond this node's chain: catch up first, it comes again.
            self.note_ahead(proof.epoch(), now_ms);
            return wasted;
        }
        match self.ledger.restore_fork(proof.clone()) {
            Ok(()) => {
                self.on_fork(Some(from), proof, now_ms, rng);
                0
            }
            Err(error) => {
                let (first, _) = proof.ops();
                let first = first.clone();
                self.outputs.push_back(Output::Audit(AuditEvent::roster(
                    Some(from),
                    &first,
                    RosterOutcome::Refused(error),
                )));
                self.penalise(from, Offence::InvalidRosterOp, now_ms);
                wasted + cost::SIGNATURE * 2 * self.ledger.state().needed() as u64
            }
        }
    }

    fn on_fork<R: Rng + ?Sized>(
        &mut self,
        peer: Option<NodeId>,
        proof: RosterForkProof,
        now_ms: u64,
        rng: &mut R,
    ) {
        self.outputs
            .push_back(Output::PersistRosterFork(Box::new(proof.clone())));
        self.outputs
            .push_back(Output::Audit(AuditEvent::RosterFork {
                peer,
                proof: Box::new(proof.clone()),
            }));
        self.broadcast(Message::RosterFork(proof.encode()), peer, now_ms, rng);
    }

    /// Pushes an operation or proposal to a few peers at once.
    fn push_roster_op<R: Rng + ?Sized>(
        &mut self,
        op: &SignedOp,
        source: Option<NodeId>,
        now_ms: u64,
        rng: &mut R,
    ) {
        self.broadcast(Message::RosterOps(vec![op.encode()]), source, now_ms, rng);
    }

    fn on_applied<R: Rng + ?Sized>(
        &mut self,
        peer: Option<NodeId>,
        op: VerifiedOp,
        now_ms: u64,
        rng: &mut R,
    ) {
        self.outputs
            .push_back(Output::PersistRosterOp(Box::new(op.clone())));
        self.outputs.push_back(Output::Audit(AuditEvent::roster(
            peer,
            op.op(),
            RosterOutcome::Applied,
        )));
        let change = self.apply_effects(&op, now_ms);
        for output in change {
            self.outputs.push_back(output);
        }
        self.push_roster_op(op.op(), peer, now_ms, rng);
    }

    /// Applies an operation's effects on the directory, membership and this
    /// node's own chain; returns the outputs for the driver (none are pushed, so
    /// that a restore at start can drop them).
    fn apply_effects(&mut self, op: &VerifiedOp, now_ms: u64) -> Vec<Output> {
        let mut outputs = Vec::new();
        let old: Arc<Roster> = self.directory.roster().clone();
        let new: Arc<Roster> = self.ledger.state().members().clone();
        match &op.body().action {
            Action::Rotate { from, to } => {
                self.directory.carry_chain(from, *to);
                if *from == self.me {
                    self.halt_now(
                        &mut outputs,
                        Halt::OffRoster {
                            rotated_to: Some(*to),
                        },
                    );
                }
            }
            Action::Remove { member } if *member == self.me => {
                self.halt_now(&mut outputs, Halt::OffRoster { rotated_to: None });
            }
            Action::Pardon { origin, above_seq } => {
                self.directory.pardon(origin, *above_seq);
                outputs.push(Output::Change(DirectoryChange::Pardoned {
                    origin: *origin,
                    above_seq: *above_seq,
                }));
                if *origin == self.me {
                    // Kept whether or not this node knew it was quarantined, and
                    // set again from the stored operation at every restart: the
                    // next record jumps above it however long that takes.
                    self.jump_floor = self
                        .jump_floor
                        .max(above_seq.saturating_add(RECOVERY_SEQ_GAP));
                    self.pardon_self(&mut outputs);
                }
            }
            _ => {}
        }
        let added: Vec<NodeId> = new
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !old.contains(id))
            .collect();
        let removed: Vec<NodeId> = old
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !new.contains(id))
            .collect();
        for record in self.directory.set_roster(new.clone()) {
            outputs.push(Output::Change(DirectoryChange::LeftRoster(record)));
        }
        self.membership
            .set_members(self.ledger.state().member_list().clone());
        let grace_until = now_ms.saturating_add(ROSTER_GRACE_MS);
        for id in &removed {
            self.removed.insert(*id, grace_until);
            self.pending_wants
                .retain(|(peer, origin), _| peer != id && origin != id);
        }
        for id in &added {
            self.removed.remove(id);
        }
        if added.contains(&self.me) {
            // Admitted (a node that joined): publish what it announces.
            self.note_desired();
        }
        // Removed members hear of it before their connections close, so an
        // honest one stops (rather than retry a federation that refuses it).
        let bytes = op.op().encode();
        for id in removed.iter().filter(|id| **id != self.me) {
            self.counters.messages_out += 1;
            outputs.push(Output::Send {
                to: *id,
                message: Message::RosterOps(vec![bytes.clone()]),
            });
        }
        outputs.push(Output::RosterChanged {
            epoch: op.epoch(),
            roster: new,
            added,
            removed,
        });
        outputs
    }

    fn halt_now(&mut self, outputs: &mut Vec<Output>, halt: Halt) {
        self.halt(None, halt);
        // `halt` queued its outputs; move them into this change's list.
        let queued: Vec<Output> = self.outputs.drain(..).collect();
        let (mine, earlier): (Vec<Output>, Vec<Output>) = queued.into_iter().partition(|o| {
            matches!(
                o,
                Output::Audit(AuditEvent::Halted { .. }) | Output::ChainStatus(_)
            )
        });
        self.outputs.extend(earlier);
        outputs.extend(mine);
    }

    /// This node's own quarantine was pardoned: it signs again, its next record
    /// jumping above the pardoned seq (`jump_floor`).
    fn pardon_self(&mut self, outputs: &mut Vec<Output>) {
        if matches!(self.chain, super::Chain::Halted(Halt::Quarantined(_))) {
            self.chain = super::Chain::Known;
            self.jump_next = true;
            self.desired_unpublished = self.desired.is_some();
            outputs.push(Output::ChainStatus(ChainStatus::Known));
        }
    }

    /// Excuses a record of an origin off the roster when its sender cannot know
    /// better (see the module doc); other verdicts pass unchanged.
    pub(super) fn excuse(&self, verdict: Verdict, now_ms: u64) -> Verdict {
        let Verdict::Rejected(Rejection::NotAdmitted(origin)) = verdict else {
            return verdict;
        };
        let (claimed, until) = self.roster_ahead;
        let excuse = if self
            .removed
            .get(&origin)
            .is_some_and(|until| now_ms < *until)
        {
            RosterExcuse::RecentlyRemoved
        } else if (claimed > self.ledger.state().epoch() && now_ms < until)
            || self.ledger.proposes_key(&origin)
        {
            // A peer showed a later epoch lately, or an open proposal admits
            // this key: the relay may have applied it already.
            RosterExcuse::RosterBehind
        } else {
            return verdict;
        };
        Verdict::Ignored(Ignored::NotOnRoster { origin, excuse })
    }

    /// Notes a peer's claim of a later roster epoch. A claim excuses records of
    /// unknown origins for a few intervals only: it is not proof (the operations
    /// that would prove it are asked for at once), so a false one lapses.
    fn note_ahead(&mut self, epoch: u64, now_ms: u64) {
        if epoch <= self.ledger.state().epoch() {
            return;
        }
        let until = now_ms.saturating_add(4 * self.config.interval_ms);
        self.roster_ahead = (self.roster_ahead.0.max(epoch), until);
    }

    /// Shows `peer` this node's roster head (once an interval), after it sent a
    /// record of an origin this node does not admit.
    pub(super) fn ask_roster(&mut self, peer: NodeId, now_ms: u64) {
        if self.roster_mark_sent(peer, RosterHash([0xee; 32]), 0, now_ms) {
            let head = self.roster_head(false);
            self.send(peer, Message::RosterHead(head));
        }
    }

    /// Drops expired proposals and finished grace periods (each round).
    pub(super) fn expire_roster(&mut self, now_ms: u64) {
        self.removed.retain(|_, until| now_ms < *until);
        let expired: Vec<RosterHash> = self.ledger.expire(now_ms);
        for id in expired {
            self.outputs.push_back(Output::Audit(AuditEvent::Roster {
                peer: None,
                id,
                epoch: self.ledger.state().epoch() + 1,
                action: String::new(),
                outcome: RosterOutcome::Expired,
            }));
        }
    }
}
