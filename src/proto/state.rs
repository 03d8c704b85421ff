//! The node state machine: one node's whole protocol, with no I/O.
//!
//! A driver feeds it inputs — frames from peers, dial results, local commands, and
//! the passage of time — and drains its [`Output`]s after each one. It never reads a
//! clock (every call takes `now_ms`), never draws OS randomness (every call that
//! needs chance takes an RNG), and owns no socket or task; timers are a deadline
//! reported by [`State::poll_timeout`]. The same code runs under the network actor
//! and under the simulator.
//!
//! Per round (every `interval_ms`) the node opens a push-pull exchange with
//! `fanout` members picked uniformly at random (see [`gossip`](super::gossip) for the
//! digest). A newly accepted record is also pushed at once to `rumor_fanout`
//! members; anti-entropy repairs whatever such pushes miss. Equivocation proofs are
//! sent before records. Every frame is charged to its sender's message budget, and
//! every offence to its score.
//!
//! [`VerifiedCache`]: super::directory::VerifiedCache

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use tidings_keys::{Identity, NodeId, Roster};

use super::codec::DecodeError;
use super::directory::{Directory, DirectoryConfig, ProofVerdict, Source};
use super::equivocation::EquivocationProof;
use super::event::{AuditEvent, DirectoryChange, Output};
use super::gossip;
use super::limits::{
    DEFAULT_TTL_MS, MAX_FRAME_BYTES, MAX_PROOFS_PER_MESSAGE, MAX_RECORDS_PER_MESSAGE,
};
use super::membership::{BackoffPolicy, Membership};
use super::record::{Announcement, Record, RecordError, VerifiedRecord};
use super::score::{Offence, Penalty, ScorePolicy, Scores};
use super::verdict::{Verdict, VerdictKind};
use super::wire::{Message, Range};

/// Gossip parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipConfig {
    /// Time between rounds.
    pub interval_ms: u64,
    /// Exchanges opened per round.
    pub fanout: usize,
    /// Peers a newly accepted record is pushed to at once (0 turns the fast path off).
    pub rumor_fanout: usize,
    /// Lifetime of this node's own records; they are refreshed at half of it.
    pub ttl_ms: u64,
    /// How long a peer has to deliver a record it listed and was asked for.
    pub want_timeout_ms: u64,
    /// Scoring and bans.
    pub score: ScorePolicy,
    /// Dial backoff.
    pub backoff: BackoffPolicy,
    /// Whether every record sent to a peer is audited as a relay.
    pub audit_relays: bool,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            interval_ms: 1000,
            fanout: 2,
            rumor_fanout: 2,
            ttl_ms: DEFAULT_TTL_MS,
            want_timeout_ms: 5000,
            score: ScorePolicy::default(),
            backoff: BackoffPolicy {
                base_ms: 1000,
                max_ms: 60_000,
            },
            audit_relays: true,
        }
    }
}

/// Counters for metrics and experiments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Verdicts reached, by kind (duplicates included).
    pub verdicts: BTreeMap<VerdictKind, u64>,
    /// Frames received.
    pub frames_in: u64,
    /// Frames dropped because the sender is banned or not on the roster.
    pub frames_refused: u64,
    /// Frames dropped because the sender was over its message budget.
    pub frames_flooded: u64,
    /// Frames that did not decode.
    pub frames_malformed: u64,
    /// Messages handed to the driver to send.
    pub messages_out: u64,
    /// Exchanges opened.
    pub exchanges_opened: u64,
}

/// Why a local publication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The announcement does not make a valid record.
    #[error("cannot publish: {0}")]
    Invalid(RecordError),
    /// This node has published too often; try again shortly.
    #[error("publishing too fast: this node's own rate limit is exhausted, try again shortly")]
    RateLimited,
    /// The directory refused the node's own record (for example after a quarantine).
    #[error("the directory refused this node's record: {0}")]
    Refused(String),
    /// No specialist of that name is announced.
    #[error("no specialist named {0:?} is announced by this node")]
    UnknownSpecialist(String),
}

/// One input to [`State::handle`].
#[derive(Debug, Clone)]
pub enum Input {
    /// A frame from a peer.
    Frame {
        /// The peer (authenticated by the transport).
        from: NodeId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A dial to a peer failed.
    DialFailed(NodeId),
    /// Time passed: run whatever is due.
    Tick,
    /// Publish this announcement as the node's whole current set.
    Publish(Announcement),
    /// Publish the current announcement without the specialist of this name.
    Withdraw(String),
}

/// One node's protocol state.
#[derive(Debug)]
pub struct State {
    identity: Arc<Identity>,
    me: NodeId,
    config: GossipConfig,
    directory: Directory,
    membership: Membership,
    scores: Scores,
    announcement: Option<Announcement>,
    own: Option<VerifiedRecord>,
    next_round_ms: u64,
    pending_wants: BTreeMap<(NodeId, NodeId), u64>,
    counters: Counters,
    outputs: Vec<Output>,
}

impl State {
    /// A node with an empty directory; its first round is one interval after `now_ms`.
    pub fn new(
        identity: Arc<Identity>,
        directory: DirectoryConfig,
        gossip: GossipConfig,
        roster: Arc<Roster>,
        members: Arc<[NodeId]>,
        now_ms: u64,
    ) -> Self {
        let me = identity.node_id();
        Self {
            identity,
            me,
            next_round_ms: now_ms.saturating_add(gossip.interval_ms),
            scores: Scores::new(gossip.score),
            config: gossip,
            directory: Directory::new(directory, roster),
            membership: Membership::new(me, members),
            announcement: None,
            own: None,
            pending_wants: BTreeMap::new(),
            counters: Counters::default(),
            outputs: Vec::new(),
        }
    }

    /// Shares a cache of verified records (see [`VerifiedCache`]).
    pub fn set_verified_cache(&mut self, cache: Arc<super::directory::VerifiedCache>) {
        self.directory.set_cache(cache);
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The gossip parameters.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// This node's latest own record.
    pub fn own_record(&self) -> Option<&VerifiedRecord> {
        self.own.as_ref()
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Current penalty points of `peer`.
    pub fn peer_points(&self, peer: &NodeId, now_ms: u64) -> u32 {
        self.scores.points(peer, now_ms)
    }

    /// Whether `peer` is banned.
    pub fn is_banned(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.membership.is_banned(peer, now_ms)
    }

    /// The next time [`State::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> u64 {
        let mut next = self.next_round_ms;
        if let Some(expiry) = self.directory.next_expiry_ms() {
            next = next.min(expiry);
        }
        if let Some(refresh) = self.refresh_at() {
            next = next.min(refresh);
        }
        next
    }

    /// Everything produced since the last drain.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    /// Feeds one input and returns what it produced.
    pub fn handle<R: Rng + ?Sized>(
        &mut self,
        input: Input,
        now_ms: u64,
        rng: &mut R,
    ) -> Vec<Output> {
        match input {
            Input::Frame { from, bytes } => self.handle_frame(from, &bytes, now_ms, rng),
            Input::DialFailed(peer) => self.dial_failed(peer, now_ms, rng),
            Input::Tick => self.handle_timeout(now_ms, rng),
            Input::Publish(announcement) => {
                if let Err(error) = self.publish(announcement, now_ms, rng) {
                    self.outputs.push(Output::CommandFailed(error));
                }
            }
            Input::Withdraw(name) => {
                if let Err(error) = self.withdraw(&name, now_ms, rng) {
                    self.outputs.push(Output::CommandFailed(error));
                }
            }
        }
        self.outputs.drain(..).collect()
    }

    /// Restores this node's latest own record (from storage, on restart), so the
    /// next publication continues its chain instead of forking it.
    pub fn restore_own(&mut self, record: VerifiedRecord, now_ms: u64) {
        if record.origin() != self.me
            || self
                .own
                .as_ref()
                .is_some_and(|own| own.seq() >= record.seq())
        {
            return;
        }
        self.announcement = Some(announcement_of(&record));
        self.own = Some(record.clone());
        if !record.is_expired(now_ms) {
            self.directory
                .ingest_verified(record, Source::Local, now_ms);
        }
    }

    /// Loads a stored record into the directory (on restart), through every rule.
    pub fn restore(&mut self, record: VerifiedRecord, now_ms: u64) -> Verdict {
        self.directory
            .ingest_verified(record, Source::Local, now_ms)
    }

    /// Loads a stored equivocation proof (on restart).
    pub fn restore_proof(&mut self, proof: &EquivocationProof) -> ProofVerdict {
        self.directory.ingest_proof(proof)
    }

    /// Signs and publishes `announcement` as this node's whole current set.
    pub fn publish<R: Rng + ?Sized>(
        &mut self,
        announcement: Announcement,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<VerifiedRecord, PublishError> {
        let record = match &self.own {
            Some(previous) => {
                Record::next(previous, announcement.clone(), now_ms, self.config.ttl_ms)
            }
            None => Record::first(
                self.directory.config().federation,
                self.me,
                announcement.clone(),
                now_ms,
                self.config.ttl_ms,
            ),
        };
        let signed = VerifiedRecord::sign(&self.identity, record).map_err(PublishError::Invalid)?;
        let verdict = self
            .directory
            .ingest_verified(signed.clone(), Source::Local, now_ms);
        match &verdict {
            Verdict::Accepted { .. } => {}
            Verdict::Ignored(super::verdict::Ignored::RateLimited(_)) => {
                return Err(PublishError::RateLimited)
            }
            other => return Err(PublishError::Refused(other.to_string())),
        }
        self.own = Some(signed.clone());
        self.announcement = Some(announcement);
        self.outputs
            .push(Output::Audit(AuditEvent::Published(signed.clone())));
        self.note_change(&verdict);
        self.rumor_record(&signed, None, now_ms, rng);
        Ok(signed)
    }

    /// Publishes the current announcement without the specialist `name`.
    pub fn withdraw<R: Rng + ?Sized>(
        &mut self,
        name: &str,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<VerifiedRecord, PublishError> {
        let mut announcement = self.announcement.clone().unwrap_or_default();
        let before = announcement.specialists.len();
        announcement
            .specialists
            .retain(|specialist| specialist.name != name);
        if announcement.specialists.len() == before {
            return Err(PublishError::UnknownSpecialist(name.to_string()));
        }
        self.publish(announcement, now_ms, rng)
    }

    /// The current announcement of this node.
    pub fn announcement(&self) -> Option<&Announcement> {
        self.announcement.as_ref()
    }

    fn refresh_at(&self) -> Option<u64> {
        let own = self.own.as_ref()?.record();
        Some(own.issued_at_ms.saturating_add(own.ttl_ms() / 2))
    }

    /// Runs whatever is due at `now_ms`: a gossip round, expiry, refresh, timeouts.
    pub fn handle_timeout<R: Rng + ?Sized>(&mut self, now_ms: u64, rng: &mut R) {
        for record in self.directory.sweep_expired(now_ms) {
            self.outputs
                .push(Output::Change(DirectoryChange::Expired(record.clone())));
            self.outputs
                .push(Output::Audit(AuditEvent::Expired(record)));
        }
        if self.refresh_at().is_some_and(|at| now_ms >= at) {
            if let Some(announcement) = self.announcement.clone() {
                // A refused refresh is retried at the next timeout.
                let _ = self.publish(announcement, now_ms, rng);
            }
        }
        if now_ms >= self.next_round_ms {
            self.round(now_ms, rng);
            let next = self.next_round_ms.saturating_add(self.config.interval_ms);
            self.next_round_ms = if next <= now_ms {
                now_ms.saturating_add(self.config.interval_ms)
            } else {
                next
            };
        }
    }

    fn round<R: Rng + ?Sized>(&mut self, now_ms: u64, rng: &mut R) {
        self.check_promises(now_ms);
        self.membership.expire(now_ms);
        self.scores.prune(now_ms);
        let peers = self.pick(self.config.fanout, now_ms, rng, &[]);
        let opening = gossip::opening(&self.directory);
        for peer in peers {
            self.counters.exchanges_opened += 1;
            self.send(peer, opening.clone());
        }
    }

    /// Members to contact: available, reachable, not quarantined, not in `except`.
    /// Reachable: a bootstrap peer, a peer that contacted this node, or an origin
    /// whose record lists addresses (an origin whose record lists none is behind NAT).
    fn pick<R: Rng + ?Sized>(
        &self,
        count: usize,
        now_ms: u64,
        rng: &mut R,
        except: &[NodeId],
    ) -> Vec<NodeId> {
        let directory = &self.directory;
        let membership = &self.membership;
        self.membership.pick(count, now_ms, rng, |peer| {
            let dialable = match directory.entry(peer) {
                Some(entry) => !entry.record.record().addrs.is_empty(),
                None => membership.is_known(peer),
            };
            dialable && !except.contains(peer) && !directory.is_quarantined(peer)
        })
    }

    /// Marks bootstrap peers as reachable.
    pub fn add_bootstrap(&mut self, peers: impl IntoIterator<Item = NodeId>) {
        for peer in peers {
            self.membership.add_known(peer);
        }
    }

    /// Treats every admitted member as reachable, as in Bet 15 where the
    /// membership is known to all (the simulator's setting).
    pub fn assume_membership_known(&mut self) {
        self.membership.assume_everyone_known();
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.counters.messages_out += 1;
        self.outputs.push(Output::Send { to, message });
    }

    /// Charges `peer` for an offence the driver saw (a frame the transport refused:
    /// oversized, truncated, or dripped too slowly), and audits it.
    pub fn report_bad_frame(&mut self, peer: NodeId, error: DecodeError, now_ms: u64) {
        self.counters.frames_malformed += 1;
        self.outputs
            .push(Output::Audit(AuditEvent::MalformedFrame { peer, error }));
        self.penalise(peer, Offence::MalformedFrame, now_ms);
    }

    /// Records that `peer` connected to this node: it is reachable, and any dial
    /// backoff is cleared.
    pub fn reached(&mut self, peer: &NodeId) {
        self.membership.reached(peer);
    }

    /// Records a failed dial (the peer backs off).
    pub fn dial_failed<R: Rng + ?Sized>(&mut self, peer: NodeId, now_ms: u64, rng: &mut R) {
        self.membership
            .dial_failed(peer, now_ms, self.config.backoff, rng);
    }

    /// Handles one frame from an authenticated peer.
    pub fn handle_frame<R: Rng + ?Sized>(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        now_ms: u64,
        rng: &mut R,
    ) {
        self.counters.frames_in += 1;
        if from == self.me
            || !self.directory.roster().contains(&from)
            || self.membership.is_banned(&from, now_ms)
        {
            self.counters.frames_refused += 1;
            return;
        }
        if !self.scores.allow_message(from, now_ms) {
            self.counters.frames_flooded += 1;
            self.penalise(from, Offence::Flooding, now_ms);
            return;
        }
        let message = match Message::decode(bytes) {
            Ok(message) => message,
            Err(error) => {
                self.counters.frames_malformed += 1;
                self.outputs.push(Output::Audit(AuditEvent::MalformedFrame {
                    peer: from,
                    error,
                }));
                self.penalise(from, Offence::MalformedFrame, now_ms);
                return;
            }
        };
        self.membership.reached(&from);
        match message {
            Message::Sync(ranges) => self.on_sync(from, &ranges, now_ms),
            Message::Records(records) => {
                for bytes in records {
                    let verdict = self.directory.ingest(&bytes, Source::Peer(from), now_ms);
                    self.after_verdict(Some(from), verdict, now_ms, rng);
                }
            }
            Message::Want(origins) => self.on_want(from, &origins),
            Message::Proofs(proofs) => {
                for bytes in proofs {
                    self.on_proof(from, &bytes, now_ms, rng);
                }
            }
        }
    }

    fn on_sync(&mut self, from: NodeId, ranges: &[Range], now_ms: u64) {
        let roster = self.directory.roster().clone();
        let result = gossip::reconcile(&self.directory, ranges, |origin| roster.contains(origin));
        self.push_holdings(from, &result.push);
        if !result.reply.is_empty() {
            self.send(from, Message::Sync(result.reply));
        }
        if !result.want.is_empty() {
            let deadline = now_ms.saturating_add(self.config.want_timeout_ms);
            for origin in &result.want {
                self.pending_wants.insert((from, *origin), deadline);
            }
            self.send(from, Message::Want(result.want));
        }
    }

    fn on_want(&mut self, from: NodeId, origins: &[NodeId]) {
        self.push_holdings(from, origins);
    }

    /// Sends `to` this node's proof or record for each origin: proofs first.
    fn push_holdings(&mut self, to: NodeId, origins: &[NodeId]) {
        let proofs: Vec<Vec<u8>> = origins
            .iter()
            .filter_map(|origin| self.directory.proof(origin))
            .map(EquivocationProof::encode)
            .collect();
        let records: Vec<VerifiedRecord> = origins
            .iter()
            .filter_map(|origin| self.directory.entry(origin))
            .map(|entry| entry.record.clone())
            .collect();
        for chunk in proofs.chunks(MAX_PROOFS_PER_MESSAGE) {
            self.send(to, Message::Proofs(chunk.to_vec()));
        }
        self.send_records(to, &records);
    }

    fn send_records(&mut self, to: NodeId, records: &[VerifiedRecord]) {
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0;
        for record in records {
            let bytes = record.wire_bytes();
            let full = batch.len() == MAX_RECORDS_PER_MESSAGE
                || batch_bytes + bytes.len() + 16 > MAX_FRAME_BYTES;
            if full {
                self.send(to, Message::Records(std::mem::take(&mut batch)));
                batch_bytes = 0;
            }
            batch_bytes += bytes.len() + 8;
            batch.push(bytes.to_vec());
            if self.config.audit_relays {
                self.outputs.push(Output::Audit(AuditEvent::Relayed {
                    to,
                    record: record.clone(),
                }));
            }
        }
        if !batch.is_empty() {
            self.send(to, Message::Records(batch));
        }
    }

    fn on_proof<R: Rng + ?Sized>(&mut self, from: NodeId, bytes: &[u8], now_ms: u64, rng: &mut R) {
        let proof = match EquivocationProof::decode(bytes) {
            Ok(proof) => proof,
            Err(error) => {
                self.outputs.push(Output::Audit(AuditEvent::MalformedFrame {
                    peer: from,
                    error,
                }));
                self.penalise(from, Offence::InvalidProof, now_ms);
                return;
            }
        };
        let verdict = self.directory.ingest_proof(&proof);
        if let ProofVerdict::Quarantined { origin, .. } | ProofVerdict::AlreadyQuarantined(origin) =
            &verdict
        {
            self.pending_wants.remove(&(from, *origin));
        }
        let quarantined = matches!(verdict, ProofVerdict::Quarantined { .. });
        if let ProofVerdict::Quarantined { origin, .. } = &verdict {
            self.outputs
                .push(Output::Change(DirectoryChange::Quarantined {
                    origin: *origin,
                }));
        }
        let rejected = matches!(verdict, ProofVerdict::Rejected(_));
        if !matches!(verdict, ProofVerdict::AlreadyQuarantined(_)) {
            self.outputs.push(Output::Audit(AuditEvent::Proof {
                peer: Some(from),
                verdict,
                proof: Box::new(proof.clone()),
            }));
        }
        if rejected {
            self.penalise(from, Offence::InvalidProof, now_ms);
        }
        if quarantined {
            self.rumor_proof(&proof, Some(from), now_ms, rng);
        }
    }

    fn after_verdict<R: Rng + ?Sized>(
        &mut self,
        peer: Option<NodeId>,
        verdict: Verdict,
        now_ms: u64,
        rng: &mut R,
    ) {
        let kind = verdict.kind();
        *self.counters.verdicts.entry(kind).or_default() += 1;
        if let (Some(peer), Some(origin)) = (peer, verdict.origin()) {
            self.pending_wants.remove(&(peer, origin));
        }
        self.note_change(&verdict);
        match &verdict {
            Verdict::Accepted { record, .. } => {
                if record.origin() == self.me {
                    // A newer record of our own from a peer: we lost state; continue its chain.
                    self.restore_own(record.clone(), now_ms);
                }
                self.rumor_record(record, peer, now_ms, rng);
            }
            Verdict::Equivocation(proof) => {
                let proof = proof.as_ref().clone();
                self.rumor_proof(&proof, peer, now_ms, rng);
            }
            Verdict::Rejected(rejection) => {
                if let Some(peer) = peer {
                    self.penalise(peer, Offence::Rejected(rejection.kind()), now_ms);
                }
            }
            _ => {}
        }
        if kind != VerdictKind::Duplicate {
            self.outputs
                .push(Output::Audit(AuditEvent::Verdict { peer, verdict }));
        }
    }

    fn note_change(&mut self, verdict: &Verdict) {
        let change = match verdict {
            Verdict::Accepted {
                record,
                replaced: None,
            } => DirectoryChange::Added(record.clone()),
            Verdict::Accepted {
                record,
                replaced: Some(previous),
            } => DirectoryChange::Updated {
                previous: *previous,
                record: record.clone(),
            },
            Verdict::Equivocation(proof) => match proof.claimed_origin() {
                Some(origin) => DirectoryChange::Quarantined { origin },
                None => return,
            },
            _ => return,
        };
        self.outputs.push(Output::Change(change));
    }

    fn rumor_record<R: Rng + ?Sized>(
        &mut self,
        record: &VerifiedRecord,
        source: Option<NodeId>,
        now_ms: u64,
        rng: &mut R,
    ) {
        let except: Vec<NodeId> = source.into_iter().chain([record.origin()]).collect();
        for peer in self.pick(self.config.rumor_fanout, now_ms, rng, &except) {
            self.send_records(peer, std::slice::from_ref(record));
        }
    }

    fn rumor_proof<R: Rng + ?Sized>(
        &mut self,
        proof: &EquivocationProof,
        source: Option<NodeId>,
        now_ms: u64,
        rng: &mut R,
    ) {
        let except: Vec<NodeId> = source.into_iter().collect();
        let count = self.config.rumor_fanout.max(self.config.fanout);
        let bytes = proof.encode();
        for peer in self.pick(count, now_ms, rng, &except) {
            self.send(peer, Message::Proofs(vec![bytes.clone()]));
        }
    }

    fn check_promises(&mut self, now_ms: u64) {
        let broken: Vec<(NodeId, NodeId)> = self
            .pending_wants
            .iter()
            .filter(|(_, deadline)| now_ms >= **deadline)
            .map(|(key, _)| *key)
            .collect();
        let mut peers: Vec<NodeId> = Vec::new();
        for key in broken {
            self.pending_wants.remove(&key);
            if !peers.contains(&key.0) {
                peers.push(key.0);
            }
        }
        for peer in peers {
            self.penalise(peer, Offence::BrokenPromise, now_ms);
        }
    }

    fn penalise(&mut self, peer: NodeId, offence: Offence, now_ms: u64) {
        match self.scores.penalise(peer, offence, now_ms) {
            Penalty::Penalised { points } => {
                self.outputs.push(Output::Audit(AuditEvent::Penalised {
                    peer,
                    offence,
                    points,
                }));
            }
            Penalty::Banned { until_ms, .. } => {
                self.membership.ban(peer, until_ms);
                self.pending_wants.retain(|(from, _), _| *from != peer);
                self.outputs.push(Output::Audit(AuditEvent::Banned {
                    peer,
                    offence,
                    until_ms,
                }));
                self.outputs.push(Output::Disconnect { peer, until_ms });
            }
        }
    }
}

/// The announcement a record states.
pub fn announcement_of(record: &VerifiedRecord) -> Announcement {
    Announcement {
        addrs: record.record().addrs.clone(),
        specialists: record.record().specialists.clone(),
    }
}

#[cfg(test)]
mod tests;
