//! The node's own chain: restoring it, recovering it from peers, and halting when
//! someone else signs with this node's key (see the module docs of `state`).

use tidings_keys::NodeId;

use super::{Chain, State};
use crate::proto::directory::Source;
use crate::proto::event::{AuditEvent, ChainStatus, Halt, Output};
use crate::proto::gossip;
use crate::proto::record::VerifiedRecord;
use crate::proto::verdict::Verdict;
use crate::proto::wire::Range;

impl State {
    /// Restores this node's latest own record (from its store or audit log, on
    /// restart): its chain is known and continues above this record.
    pub fn restore_own(&mut self, record: VerifiedRecord, now_ms: u64) {
        if record.origin() != self.me
            || self
                .own
                .as_ref()
                .is_some_and(|own| own.seq() >= record.seq())
        {
            return;
        }
        if self.desired.is_none() {
            self.desired = Some(super::announcement_of(&record));
        }
        self.own = Some(record.clone());
        self.note_desired();
        if !record.is_expired(now_ms) {
            // Our own record, restored: it never counts against the rate limit.
            let _ = self
                .directory
                .ingest_verified(record, Source::Local, now_ms);
        }
    }

    /// Tells the node it has lost its history (no own record on disk although it
    /// may have signed before): it signs nothing until it learned its latest
    /// record from peers.
    ///
    /// An own record restored before (from a disk that cannot be fully trusted)
    /// is kept as a lower bound: newer ones from peers replace it, and the first
    /// record signed after recovery jumps the chain to a line that moves with
    /// time, above every seq this key can have signed (see
    /// [`recovery_seq`](crate::proto::record::recovery_seq) for when that
    /// holds), so it cannot collide with one signed before the loss that no
    /// peer had seen, however few peers the node heard before it signed again.
    pub fn mark_lost(&mut self, now_ms: u64) {
        if matches!(self.chain, Chain::Known) {
            self.chain = Chain::Recovering {
                since_ms: now_ms,
                synced: false,
            };
        }
    }

    /// Applies the own-chain rules to a verdict on a record of this node's key.
    pub(super) fn on_own_verdict(&mut self, peer: Option<NodeId>, verdict: &Verdict) {
        match verdict {
            Verdict::Accepted { record, .. } if record.origin() == self.me => {
                let newer = self.own.as_ref().is_none_or(|own| record.seq() > own.seq());
                if !newer {
                    return;
                }
                match &self.chain {
                    Chain::Recovering { .. } => self.take_back(peer, record),
                    Chain::Known if self.recovered => {
                        // Signed before the loss, and late to arrive: take it back
                        // and sign above it again.
                        self.take_back(peer, record);
                        self.jump_next = true;
                        self.desired_unpublished = self.desired.is_some();
                    }
                    Chain::Halted(_) => {}
                    Chain::Known => self.halt(peer, Halt::ForeignSigner(record.clone())),
                }
            }
            Verdict::Equivocation(proof) if proof.claimed_origin() == Some(self.me) => {
                self.halt(peer, Halt::Quarantined(proof.clone()));
            }
            _ => {}
        }
    }

    /// Makes `record`, one of this node's own from before a loss, its latest, durably.
    fn take_back(&mut self, peer: Option<NodeId>, record: &VerifiedRecord) {
        self.own = Some(record.clone());
        self.note_desired();
        self.outputs.push_back(Output::Audit(AuditEvent::Recovered {
            peer,
            record: record.clone(),
        }));
        self.outputs.push_back(Output::Persist {
            record: record.clone(),
            jump_owed: true,
        });
    }

    /// While recovering: notes whether `ranges` from a peer show it holds nothing
    /// newer of this node's chain than the node holds now.
    pub(super) fn note_own_holding(&mut self, _from: NodeId, ranges: &[Range], now_ms: u64) {
        if let Chain::Recovering { synced, .. } = &mut self.chain {
            if gossip::holds_no_newer(&self.directory, ranges, &self.me) == Some(true) {
                *synced = true;
                self.check_recovered(now_ms);
            }
        }
    }

    /// Ends recovery once a peer showed what it holds of this node's chain and at
    /// least one interval passed.
    pub(super) fn check_recovered(&mut self, now_ms: u64) {
        let Chain::Recovering { since_ms, synced } = self.chain else {
            return;
        };
        if synced && now_ms >= since_ms.saturating_add(self.config.interval_ms) {
            // It may sign again; its status says Known once the jumped record is
            // durable (see `publish`).
            self.chain = Chain::Known;
            self.jump_next = true;
            self.recovered = true;
            // Sign at once: the jump is due even if the announcement is unchanged.
            self.desired_unpublished = self.desired.is_some();
        }
    }

    /// Stops signing for good (until a restart or a pardon), and says why.
    pub(super) fn halt(&mut self, peer: Option<NodeId>, halt: Halt) {
        if matches!(self.chain, Chain::Halted(_)) {
            return;
        }
        self.chain = Chain::Halted(halt.clone());
        self.outputs.push_back(Output::Audit(AuditEvent::Halted {
            peer,
            halt: halt.clone(),
        }));
        self.outputs
            .push_back(Output::ChainStatus(ChainStatus::Halted(halt)));
    }
}
