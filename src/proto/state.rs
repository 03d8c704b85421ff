//! The node state machine: one node's whole protocol, with no I/O.
//!
//! One driving API, in the manner of quinn-proto: inputs go in through `handle_*`
//! ([`State::handle_frame`], [`State::handle_timeout`], [`State::handle_command`],
//! [`State::handle_connected`], [`State::handle_dial_failed`],
//! [`State::handle_bad_frame`]); the driver then takes every [`Output`] with
//! [`State::poll_output`], in order, and sleeps until [`State::poll_timeout`]. The
//! state never reads a clock (every call takes `now_ms`, which must never go
//! backwards: the driver feeds wall time read once at start plus monotonic elapsed
//! time), never draws OS randomness (calls that need chance take an RNG), and owns
//! no socket or task; timers are deadlines. The same code runs under the network
//! actor and under the simulator.
//!
//! Per round (every `interval_ms`) the node opens a push-pull exchange with
//! `fanout` members picked uniformly at random (see [`gossip`](super::gossip) for the
//! digest). A converged, quiet node gossips less (see [Idle](self#idle)). A newly accepted record also spreads at once along the node's
//! neighbour links, pushed in full on eager links and announced on lazy ones (see
//! [`spread`](super::spread)); anti-entropy repairs whatever spreading misses.
//! Equivocation proofs are sent before records, and to every neighbour. Every frame is charged to its sender's message budget, and
//! every offence to its score.
//!
//! The node's own chain (see [`own`](self#own-chain)): a node signs only while it
//! knows its latest own record, and every record it signs leaves it as an
//! [`Output::Persist`] before anything that could reveal it (the durability
//! contract of [`event`](super::event)).
//!
//! # Idle
//!
//! Once [`QUIET_ROUNDS`] rounds in a row saw nothing new (no record or proof
//! accepted, no exchange that found a difference in records or roster), the
//! node runs its rounds every `idle_stretch` intervals, with one exchange each
//! instead of `fanout`: a converged node of 64 spent most of its idle CPU on
//! the wake-ups of 2 sent and 2 received exchanges a second. Anything new stirs
//! it back at once: the next round is then due one interval after the news
//! (not at once, as it was: at 64 processes every node a record reached opened
//! exchanges while the record was still spreading, and took the cores the
//! spread needed). Repair stays quick: a node that missed a record is still
//! contacted by the others' idle exchanges and opens its own, and whichever
//! side finds the difference stirs, and spreads what it learns; a node that
//! receives news exchanges at the full rate again. Each idle exchange is still
//! one root digest (O(1) bytes). Only a node that spreads (`neighbours` above
//! 0) stretches: without spreading, exchanges are the only way news arrives,
//! and a node that has heard nothing yet is not converged, only uninformed. Record expiry and spreading keep their own
//! deadlines; what rounds do besides exchanges (promises, neighbour upkeep,
//! pruning) waits for the stretched round, and none of it is pending on a node
//! that saw nothing new. A node whose key is not on its roster yet never
//! stretches: its peers refuse it until they apply the operation that admits
//! it, and it keeps trying every interval rather than every stretch.
//!
//! # Own chain
//!
//! - **Known**: the driver restored the latest own record ([`State::restore_own`])
//!   or there never was one. The node signs above it. A record of its own key that
//!   it did not sign (newer than its own) means another process holds the key: the
//!   node halts rather than sign over it.
//! - **Recovering** ([`State::mark_lost`]): the node has lost its history. It
//!   signs nothing; it takes back the newest own record peers return. Once a peer
//!   has shown, in a digest range covering this node's id, that it holds nothing
//!   newer of this node's chain than the node now holds, and at least one
//!   interval has passed (time for its first exchanges), the chain is known and
//!   the node publishes above it. Its first record jumps to a line that moves
//!   with time, above any seq this key can have signed ([`recovery_seq`] says
//!   when that holds), so a peer that had not seen its latest record cannot
//!   make it fork: the record turns up later as an older one.
//! - **Halted**: another signer, or a quarantine of its own key. It keeps gossiping
//!   and relaying, and signs nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::Rng;
use tidings_keys::{Identity, NodeId};

use super::budget::{cost, WorkBudgets};
use super::clock::ClockWatch;
use super::codec::DecodeError;
use super::directory::{Directory, DirectoryConfig, Holding, Prechecked, ProofVerdict, Source};
use super::equivocation::EquivocationProof;
use super::event::{AuditEvent, ChainStatus, DirectoryChange, Halt, Output, PublishError};
use super::gossip;
use super::limits::{
    DEFAULT_TTL_MS, MAX_ANNOUNCED, MAX_FRAME_BYTES, MAX_PROOFS_PER_MESSAGE,
    MAX_RECORDS_PER_MESSAGE, MAX_WANTS,
};
use super::membership::{BackoffPolicy, Membership};
use super::record::{recovery_seq, Announcement, Record, RecordId, Specialist, VerifiedRecord};
use super::roster::Ledger;
use super::score::{Offence, Penalty, ScorePolicy, Scores};
use super::spread::{Spread, SpreadConfig};
use super::verdict::{Verdict, VerdictKind};
use super::wire::{Message, Range, Summary};

/// Most (peer, record) pairs remembered as sent within the current interval.
const MAX_SENT_REMEMBERED: usize = 65_536;

mod governance;
mod own;

pub use governance::RosterCommand;

/// Gossip parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipConfig {
    /// Time between rounds.
    pub interval_ms: u64,
    /// Exchanges opened per round.
    pub fanout: usize,
    /// How new records spread between rounds (see [`spread`](super::spread)).
    pub spread: SpreadConfig,
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
    /// A quiet node runs a round, with one exchange, every this many intervals
    /// (1: never stretch; see [Idle](self#idle)).
    pub idle_stretch: u32,
}

/// Rounds in a row with nothing new before a node stretches its exchanges.
pub const QUIET_ROUNDS: u32 = 3;

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            interval_ms: 1000,
            fanout: 2,
            spread: SpreadConfig::default(),
            ttl_ms: DEFAULT_TTL_MS,
            want_timeout_ms: 5000,
            score: ScorePolicy::default(),
            backoff: BackoffPolicy {
                base_ms: 1000,
                max_ms: 60_000,
            },
            audit_relays: true,
            idle_stretch: 8,
        }
    }
}

/// The idle state of [Idle](State#idle).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Quiet {
    /// Rounds in a row with nothing new.
    rounds: u32,
    /// When the last round ran.
    last_round_ms: u64,
}

impl Quiet {
    fn is_quiet(&self) -> bool {
        self.rounds >= QUIET_ROUNDS
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
    /// Pushes that brought nothing new and were answered with a prune.
    pub pushes_pruned: u64,
    /// Announced records asked for because the eager path had not brought them.
    pub grafts: u64,
}

/// A local command: what a user of the node asks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Publish this announcement as the node's whole current set.
    Publish(Announcement),
    /// Add a specialist, or replace the one with its name, and publish.
    Announce(Specialist),
    /// Publish the current announcement without the specialist of this name.
    Withdraw(String),
    /// Publish the current addresses with no specialist: the node leaves the
    /// directory (its record stays, so peers learn that it withdrew everything).
    Leave,
}

/// Where the node stands with its own chain.
#[derive(Debug, Clone)]
enum Chain {
    Known,
    Recovering {
        since_ms: u64,
        /// A peer showed it holds nothing newer of this node's chain.
        synced: bool,
    },
    Halted(Halt),
}

/// One node's protocol state.
#[derive(Debug)]
pub struct State {
    identity: Arc<Identity>,
    me: NodeId,
    config: GossipConfig,
    directory: Directory,
    membership: Membership,
    /// Neighbour links for spreading new records.
    spread: Spread,
    /// Records to push, per eager neighbour, gathered while handling one input.
    pushes: BTreeMap<NodeId, Vec<VerifiedRecord>>,
    scores: Scores,
    work: WorkBudgets,
    /// What this node wants announced; published whenever its chain allows.
    desired: Option<Announcement>,
    /// Whether `desired` differs from the node's current record (kept with both,
    /// so the timer need not compare them on every poll).
    desired_unpublished: bool,
    own: Option<VerifiedRecord>,
    chain: Chain,
    /// The next record jumps the chain (the first after a recovery).
    jump_next: bool,
    /// The chain was recovered from peers since this state started: a newer
    /// record of its own that turns up later is one it signed before the loss,
    /// taken back and jumped over, not another signer's.
    recovered: bool,
    /// When a failed publication (rate limit) is tried again.
    retry_publish_ms: u64,
    next_round_ms: u64,
    /// Rounds since anything new, and idle rounds left before the next exchange.
    quiet: Quiet,
    /// Until when a new record does not look for missing neighbours: set when a
    /// search came up short, so that a node that knows few reachable members
    /// does not scan the whole roster for every record it accepts.
    neighbour_search_after_ms: u64,
    pending_wants: BTreeMap<(NodeId, NodeId), u64>,
    /// Records sent to each peer within the last interval: not sent again however
    /// often the peer asks (see [`State::handle_frame`]).
    sent: BTreeMap<(NodeId, RecordId), u64>,
    clock: ClockWatch,
    counters: Counters,
    outputs: VecDeque<Output>,
    /// The roster chain, proposals and this node's votes.
    ledger: Ledger,
    /// Keys removed from the roster, until the end of their grace period.
    removed: BTreeMap<NodeId, u64>,
    /// The highest roster epoch a peer has claimed lately, and until when the
    /// claim excuses records of unknown origins (claims are not proof: they
    /// lapse unless renewed, see `governance`).
    roster_ahead: (u64, u64),
    /// The least seq of the next record after a pardon of this node's key
    /// (its `above_seq` plus [`RECOVERY_SEQ_GAP`](crate::proto::limits::RECOVERY_SEQ_GAP)):
    /// a record below it is signed as a jump to it.
    jump_floor: u64,
    /// The record of this node's previous key, when its key was rotated and
    /// it has not signed under the new one yet: its chain continues above it.
    predecessor: Option<VerifiedRecord>,
}

impl State {
    /// A node with an empty directory and no record of its own yet (its chain is
    /// known: it never signed), at the roster `ledger` holds; its first round is
    /// one interval after `now_ms`.
    pub fn new(
        identity: Arc<Identity>,
        directory: DirectoryConfig,
        gossip: GossipConfig,
        ledger: Ledger,
        now_ms: u64,
    ) -> Self {
        let me = identity.node_id();
        let roster = ledger.state().members().clone();
        let members = ledger.state().member_list().clone();
        Self {
            ledger,
            removed: BTreeMap::new(),
            roster_ahead: (0, 0),
            jump_floor: 0,
            predecessor: None,
            identity,
            me,
            next_round_ms: now_ms.saturating_add(gossip.interval_ms),
            quiet: Quiet::default(),
            neighbour_search_after_ms: 0,
            scores: Scores::new(gossip.score),
            work: WorkBudgets::new(gossip.score.work),
            spread: Spread::new(gossip.spread),
            pushes: BTreeMap::new(),
            config: gossip,
            directory: Directory::new(directory, roster),
            membership: Membership::new(me, members),
            desired: None,
            desired_unpublished: false,
            own: None,
            chain: Chain::Known,
            jump_next: false,
            recovered: false,
            retry_publish_ms: 0,
            pending_wants: BTreeMap::new(),
            sent: BTreeMap::new(),
            clock: ClockWatch::default(),
            counters: Counters::default(),
            outputs: VecDeque::new(),
        }
    }

    /// Shares a cache of verified records (see [`VerifiedCache`](super::directory::VerifiedCache)).
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

    /// What this node announces (or will, once its chain allows).
    pub fn announcement(&self) -> Option<&Announcement> {
        self.desired.as_ref()
    }

    /// Whether the node may sign, and if not, why.
    pub fn chain_status(&self) -> ChainStatus {
        match &self.chain {
            Chain::Known => ChainStatus::Known,
            Chain::Recovering { .. } => ChainStatus::Recovering,
            Chain::Halted(halt) => ChainStatus::Halted(halt.clone()),
        }
    }

    /// The estimated offset of peers' clocks from this node's (median), if any
    /// peer was heard.
    pub fn clock_offset_ms(&self) -> Option<i64> {
        self.clock.offset_ms()
    }

    /// Neighbour links for spreading: (eager, lazy).
    pub fn link_counts(&self) -> (usize, usize) {
        self.spread.link_counts()
    }

    /// Whether this node chose `peer` as a spreading neighbour: its driver keeps
    /// the connection to such a peer open while idle.
    pub fn chose_neighbour(&self, peer: &NodeId) -> bool {
        self.spread.chose(peer)
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Current penalty points of `peer`.
    pub fn peer_points(&self, peer: &NodeId, now_ms: u64) -> u32 {
        self.scores.points(peer, now_ms)
    }

    /// Work units `peer` has left in its budget (see [`super::budget`]).
    pub fn work_left(&self, peer: &NodeId, now_ms: u64) -> i64 {
        self.work.remaining(peer, now_ms)
    }

    /// Whether `peer` is banned.
    pub fn is_banned(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.membership.is_banned(peer, now_ms)
    }

    /// The next output, in order; the driver acts on each before taking the next
    /// (see the durability contract of [`Output::Persist`]).
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next time [`State::handle_timeout`] has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> u64 {
        let mut next = self.next_round_ms;
        if let Some(expiry) = self.directory.next_expiry_ms() {
            next = next.min(expiry);
        }
        if let Some(publish) = self.publish_due_at() {
            next = next.min(publish);
        }
        if let Some(spread) = self.spread.next_deadline() {
            next = next.min(spread);
        }
        next
    }

    /// Handles a local command; its answer is an [`Output::CommandResult`], after
    /// the [`Output::Persist`] of the record it signed.
    pub fn handle_command<R: Rng + ?Sized>(&mut self, command: Command, now_ms: u64, rng: &mut R) {
        let announcement = match command {
            Command::Publish(announcement) => Ok(announcement),
            Command::Announce(specialist) => {
                let mut announcement = self.desired.clone().unwrap_or_default();
                announcement
                    .specialists
                    .retain(|existing| existing.name != specialist.name);
                announcement.specialists.push(specialist);
                Ok(announcement)
            }
            Command::Withdraw(name) => {
                let mut announcement = self.desired.clone().unwrap_or_default();
                let before = announcement.specialists.len();
                announcement
                    .specialists
                    .retain(|specialist| specialist.name != name);
                if announcement.specialists.len() == before {
                    Err(PublishError::UnknownSpecialist(name))
                } else {
                    Ok(announcement)
                }
            }
            Command::Leave => {
                let mut announcement = self.desired.clone().unwrap_or_default();
                announcement.specialists.clear();
                Ok(announcement)
            }
        };
        let result = announcement.and_then(|announcement| self.publish(announcement, now_ms, rng));
        self.outputs.push_back(Output::CommandResult(result));
        self.flush_pushes(now_ms);
    }

    /// Sets what this node announces (at start, from its configuration): it is
    /// published at the next timeout if it differs from the node's current record,
    /// or once the node's chain is known.
    pub fn set_announcement(&mut self, announcement: Announcement) {
        self.desired = Some(announcement.canonical());
        self.note_desired();
    }

    /// Recomputes whether the desired announcement still has to be signed.
    pub(super) fn note_desired(&mut self) {
        self.desired_unpublished = match (&self.desired, &self.own) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(desired), Some(own)) => announcement_of(own) != *desired,
        };
    }

    /// Loads a stored record into the directory (on restart), through every rule.
    pub fn restore_record(&mut self, record: VerifiedRecord, now_ms: u64) -> Verdict {
        let verdict = self
            .directory
            .ingest_verified(record, Source::Local, now_ms);
        self.on_own_verdict(None, &verdict);
        verdict
    }

    /// Loads a stored equivocation proof (on restart).
    pub fn restore_proof(&mut self, proof: &EquivocationProof) -> ProofVerdict {
        let verdict = self.directory.ingest_proof(proof);
        if let ProofVerdict::Quarantined { origin, .. } = &verdict {
            if *origin == self.me {
                self.halt(None, Halt::Quarantined(Box::new(proof.clone())));
            }
        }
        verdict
    }

    fn refresh_at(&self) -> Option<u64> {
        let own = self.own.as_ref()?.record();
        Some(own.issued_at_ms.saturating_add(own.ttl_ms() / 2))
    }

    /// Whether this node's own record claims a time peers would refuse as future
    /// (it was signed while the clock ran ahead): it is signed anew.
    fn own_from_the_future(&self, now_ms: u64) -> bool {
        matches!(self.chain, Chain::Known)
            && self.retry_publish_ms <= now_ms
            && self.own.as_ref().is_some_and(|own| {
                own.record().issued_at_ms
                    > now_ms.saturating_add(self.directory.config().max_clock_skew_ms)
            })
    }

    /// When the desired announcement is to be published: at once when it differs
    /// from the current record, at half-life for a refresh; never while the chain
    /// is unknown or halted.
    fn publish_due_at(&self) -> Option<u64> {
        if !matches!(self.chain, Chain::Known) {
            // Recovery is checked every round.
            return None;
        }
        self.desired.as_ref()?;
        let due = if self.desired_unpublished {
            0
        } else {
            self.refresh_at()?
        };
        Some(due.max(self.retry_publish_ms))
    }

    /// Runs whatever is due at `now_ms`: a gossip round, expiry, publication, timeouts.
    pub fn handle_timeout<R: Rng + ?Sized>(&mut self, now_ms: u64, rng: &mut R) {
        for record in self.directory.sweep_expired(now_ms) {
            self.outputs
                .push_back(Output::Change(DirectoryChange::Expired(record.clone())));
            self.outputs
                .push_back(Output::Audit(AuditEvent::Expired(record)));
        }
        self.check_recovered(now_ms);
        if self.publish_due_at().is_some_and(|at| now_ms >= at) || self.own_from_the_future(now_ms)
        {
            if let Some(announcement) = self.desired.clone() {
                if self.publish(announcement, now_ms, rng).is_err() {
                    // Rate limited: try again next interval.
                    self.retry_publish_ms = now_ms.saturating_add(self.config.interval_ms);
                }
            }
        }
        self.spread_due(now_ms);
        if now_ms >= self.next_round_ms {
            self.round(now_ms, rng);
            let period = if self.is_idle() {
                self.config
                    .interval_ms
                    .saturating_mul(u64::from(self.config.idle_stretch.max(1)))
            } else {
                self.config.interval_ms
            };
            let next = self.next_round_ms.saturating_add(period);
            self.next_round_ms = if next <= now_ms {
                now_ms.saturating_add(period)
            } else {
                next
            };
        }
        self.flush_pushes(now_ms);
    }

    /// Signs and publishes `announcement` as this node's whole current set.
    fn publish<R: Rng + ?Sized>(
        &mut self,
        announcement: Announcement,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<VerifiedRecord, PublishError> {
        match &self.chain {
            Chain::Known => {}
            Chain::Recovering { .. } => return Err(PublishError::Recovering),
            Chain::Halted(halt) => return Err(PublishError::Halted(halt.to_string())),
        }
        let federation = self.directory.config().federation;
        let ttl = self.config.ttl_ms;
        // A pardon of this node's key leaves a floor its chain must jump above;
        // a restart between the pardon and the jumped record forgets
        // `jump_next`, not the floor (the stored operation sets it again).
        let below_jump_floor = self.own.as_ref().map_or(0, VerifiedRecord::seq) < self.jump_floor;
        let record = match &self.own {
            _ if self.jump_next || below_jump_floor => Record::after_recovery(
                federation,
                self.me,
                self.own.as_ref(),
                recovery_seq(
                    self.own.as_ref().map_or(0, VerifiedRecord::seq),
                    now_ms,
                    // Above the directory's floor for this key too (a
                    // pardon's or a rotation's).
                    self.jump_floor.max(
                        self.directory
                            .floor(&self.me)
                            .map_or(0, |floor| floor.saturating_add(1)),
                    ),
                ),
                announcement,
                now_ms,
                ttl,
            ),
            // The first record under a rotated key continues the old key's chain.
            None if self.predecessor.is_some() => {
                let previous = self.predecessor.as_ref().expect("checked above");
                Record {
                    origin: self.me,
                    ..Record::next(previous, announcement, now_ms, ttl)
                }
            }
            // Issued now, even if the previous record claims a later time (a clock
            // that ran ahead and was fixed): the chain orders by seq, not by time.
            Some(previous) => Record::next(previous, announcement, now_ms, ttl),
            None => Record::first(federation, self.me, announcement, now_ms, ttl),
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
        // What was signed, in its canonical form: a due publication compares with it.
        self.desired = Some(announcement_of(&signed));
        self.desired_unpublished = false;
        self.own = Some(signed.clone());
        self.predecessor = None;
        self.retry_publish_ms = 0;
        self.outputs
            .push_back(Output::Audit(AuditEvent::Published(signed.clone())));
        let jumped = std::mem::take(&mut self.jump_next);
        self.outputs.push_back(Output::Persist {
            record: signed.clone(),
            jump_owed: false,
        });
        if jumped {
            // Recovery is over once the jumped record is durable.
            self.outputs
                .push_back(Output::ChainStatus(ChainStatus::Known));
        }
        self.note_change(&verdict, now_ms);
        self.spread_record(&signed, None, now_ms, rng);
        Ok(signed)
    }

    fn round<R: Rng + ?Sized>(&mut self, now_ms: u64, rng: &mut R) {
        self.check_promises(now_ms);
        self.expire_roster(now_ms);
        let window_start = now_ms.saturating_sub(self.config.interval_ms);
        self.sent.retain(|_, at| *at > window_start);
        self.membership.expire(now_ms);
        self.scores.prune(now_ms);
        self.work.prune(now_ms);
        self.maintain_neighbours(now_ms, rng);
        let fanout = if self.is_idle() {
            self.config.fanout.min(1)
        } else {
            self.config.fanout
        };
        self.quiet.rounds = self.quiet.rounds.saturating_add(1);
        self.quiet.last_round_ms = now_ms;
        let peers = self.pick(fanout, now_ms, rng, &[]);
        let opening = gossip::opening(&self.directory, now_ms);
        for peer in peers {
            self.counters.exchanges_opened += 1;
            self.outputs.push_back(Output::ExchangeOpened { peer });
            self.open_roster(peer);
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
        self.outputs.push_back(Output::Send { to, message });
    }

    /// Charges `peer` for a frame the driver refused before it could be decoded
    /// (oversized, truncated, or dripped too slowly), and audits it.
    pub fn handle_bad_frame(&mut self, peer: NodeId, error: DecodeError, now_ms: u64) {
        self.counters.frames_malformed += 1;
        self.outputs
            .push_back(Output::Audit(AuditEvent::MalformedFrame { peer, error }));
        self.penalise(peer, Offence::MalformedFrame, now_ms);
    }

    /// Records that `peer` connected to this node: it is reachable, and any dial
    /// backoff is cleared.
    pub fn handle_connected(&mut self, peer: &NodeId) {
        self.membership.reached(peer);
    }

    /// Records a failed dial (the peer backs off).
    pub fn handle_dial_failed<R: Rng + ?Sized>(&mut self, peer: NodeId, now_ms: u64, rng: &mut R) {
        self.membership
            .dial_failed(peer, now_ms, self.config.backoff, rng);
        // Its place is refilled at the next round.
        self.spread.drop_peer(&peer);
    }

    /// Handles one frame from an authenticated peer.
    pub fn handle_frame<R: Rng + ?Sized>(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        now_ms: u64,
        rng: &mut R,
    ) {
        self.handle_checked_frame(from, bytes, Vec::new(), now_ms, rng);
    }

    /// Handles one frame from an authenticated peer whose records were checked
    /// ahead (`prechecked[i]` for the frame's `i`-th record, if its check
    /// passed; see [`VerifiedCache::check`](super::directory::VerifiedCache::check)).
    /// Everything else is as [`State::handle_frame`].
    pub fn handle_checked_frame<R: Rng + ?Sized>(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        prechecked: Vec<Option<Prechecked>>,
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
        if !self.work.has_budget(&from, now_ms) {
            self.counters.frames_flooded += 1;
            self.penalise(from, Offence::Flooding, now_ms);
            return;
        }
        let units = cost::FRAME
            + cost::bytes(bytes.len())
            + self.serve(from, bytes, prechecked, now_ms, rng);
        self.work.charge(from, units, now_ms);
        self.flush_pushes(now_ms);
    }

    /// Decodes and acts on one frame from `from`; returns the work units it cost
    /// beyond receiving it (see [`super::budget`]).
    fn serve<R: Rng + ?Sized>(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        prechecked: Vec<Option<Prechecked>>,
        now_ms: u64,
        rng: &mut R,
    ) -> u64 {
        let message = match Message::decode(bytes) {
            Ok(message) => message,
            Err(error) => {
                self.counters.frames_malformed += 1;
                self.outputs
                    .push_back(Output::Audit(AuditEvent::MalformedFrame {
                        peer: from,
                        error,
                    }));
                self.penalise(from, Offence::MalformedFrame, now_ms);
                return cost::AUDIT_ENTRY;
            }
        };
        self.membership.reached(&from);
        match message {
            Message::Open { clock_ms, ranges } => {
                if let Some(change) = self.clock.sample(from, clock_ms, now_ms) {
                    self.outputs.push_back(Output::ClockOffset {
                        offset_ms: change.offset_ms,
                        warning: change.warning,
                    });
                }
                self.note_own_holding(from, &ranges, now_ms);
                self.on_sync(from, &ranges, now_ms)
            }
            Message::Sync(ranges) => {
                self.note_own_holding(from, &ranges, now_ms);
                self.on_sync(from, &ranges, now_ms)
            }
            Message::Records(records) => {
                self.on_records(from, records, prechecked, false, now_ms, rng)
                    .0
            }
            Message::Push(records) => {
                let (units, news, duplicates) =
                    self.on_records(from, records, prechecked, true, now_ms, rng);
                let redundant = !news && self.came_by_another_push(from, &duplicates);
                if self.spread.on_push(from, news, redundant, now_ms) {
                    self.counters.pushes_pruned += 1;
                    self.send(from, Message::Prune);
                }
                units
            }
            Message::Have(holdings) => self.on_have(from, &holdings, now_ms),
            Message::Graft(origins) => {
                if !self.spread.on_graft(from) && origins.is_empty() {
                    self.send(from, Message::Leave);
                }
                self.on_want(from, &origins, now_ms)
            }
            Message::Prune => {
                for peer in self.spread.on_prune(&from, rng) {
                    self.send(peer, Message::Graft(Vec::new()));
                }
                0
            }
            Message::Leave => {
                self.spread.on_leave(&from, now_ms);
                0
            }
            Message::Want(origins) => self.on_want(from, &origins, now_ms),
            Message::RosterHead(head) => self.on_roster_head(from, &head, now_ms),
            Message::RosterOps(items) => self.on_roster_ops(from, &items, now_ms, rng),
            Message::RosterWant { after, proposals } => {
                self.on_roster_want(from, after, &proposals, now_ms)
            }
            Message::RosterFork(bytes) => self.on_roster_fork(from, &bytes, now_ms, rng),
            Message::Proofs(proofs) => {
                let mut units = 0;
                for bytes in proofs {
                    let checks = self.directory.signature_checks();
                    let useful = self.on_proof(from, &bytes, now_ms, rng);
                    let checked = self.directory.signature_checks() - checks;
                    if !useful {
                        units += cost::WASTED_RECORD
                            + cost::bytes(bytes.len())
                            + checked * cost::SIGNATURE;
                    }
                }
                units
            }
        }
    }

    /// Ingests records from `from` (`pushed`: along an eager link); returns the
    /// work units wasted on them, whether any was news (accepted), and the
    /// duplicates (origin, seq).
    fn on_records<R: Rng + ?Sized>(
        &mut self,
        from: NodeId,
        records: Vec<Vec<u8>>,
        prechecked: Vec<Option<Prechecked>>,
        pushed: bool,
        now_ms: u64,
        rng: &mut R,
    ) -> (u64, bool, Vec<(NodeId, u64)>) {
        let mut units = 0;
        let mut unknown_origin = false;
        let mut news = false;
        let mut duplicates = Vec::new();
        let mut prechecked = prechecked.into_iter();
        for bytes in records {
            let checks = self.directory.signature_checks();
            let ahead = prechecked.next().flatten();
            let verdict =
                self.directory
                    .ingest_prechecked(&bytes, ahead, Source::Peer(from), now_ms);
            unknown_origin |= matches!(
                verdict,
                Verdict::Rejected(super::verdict::Rejection::NotAdmitted(_))
            );
            let verdict = self.excuse(verdict, now_ms);
            news |= matches!(
                verdict.kind(),
                VerdictKind::Accepted | VerdictKind::Equivocation
            );
            let checked = self.directory.signature_checks() - checks;
            units += wasted_record_cost(&verdict, bytes.len(), checked);
            match &verdict {
                Verdict::Duplicate(record) => {
                    duplicates.push((record.origin, record.seq));
                    self.spread.note_holder(from, &record.origin, record.seq);
                }
                Verdict::Accepted { record, .. } if pushed => {
                    self.spread
                        .accepted_from_push(record.origin(), record.seq(), from)
                }
                _ => {}
            }
            self.after_verdict(Some(from), verdict, now_ms, rng);
        }
        if unknown_origin {
            // The sender may know a roster this node has not applied
            // yet: show it ours, so that it answers with its own.
            self.ask_roster(from, now_ms);
        }
        (units, news, duplicates)
    }

    /// Whether every one of `duplicates` had first come by a push from a peer
    /// other than `from` (an eager path beside `from`'s).
    fn came_by_another_push(&self, from: NodeId, duplicates: &[(NodeId, u64)]) -> bool {
        !duplicates.is_empty()
            && duplicates
                .iter()
                .all(|(origin, seq)| self.spread.pushed_by_another(origin, *seq, &from))
    }

    /// Notes the records `from` announced that this node lacks: each is asked
    /// of an announcer if the eager path has not brought it by the graft
    /// timeout. Returns the work units the announcement cost.
    fn on_have(&mut self, from: NodeId, holdings: &[Holding], now_ms: u64) -> u64 {
        let mut units = cost::RANGE + cost::HOLDING * holdings.len() as u64;
        for holding in holdings {
            if !self.directory.roster().contains(&holding.origin) || holding.origin == self.me {
                continue;
            }
            self.spread.note_holder(from, &holding.origin, holding.seq);
            let lacking = self
                .directory
                .holding(&holding.origin)
                .is_none_or(|mine| mine.seq < holding.seq);
            if lacking && !self.spread.on_announced(from, holding, now_ms) {
                units += cost::WASTED_RECORD;
            }
        }
        units
    }

    /// Sends the announcements and grafts due by `now_ms`.
    fn spread_due(&mut self, now_ms: u64) {
        for (peer, holdings) in self.spread.take_announcements(now_ms) {
            for chunk in holdings.chunks(MAX_ANNOUNCED) {
                self.send(peer, Message::Have(chunk.to_vec()));
            }
        }
        let mend = !self.spread.eager_path_alive(now_ms);
        let directory = &self.directory;
        let grafts = self.spread.take_grafts(now_ms, |origin, seq| {
            directory.holding(origin).is_none_or(|mine| mine.seq < seq)
        });
        let deadline = now_ms.saturating_add(self.config.want_timeout_ms);
        for (peer, origins) in grafts {
            self.counters.grafts += origins.len() as u64;
            for origin in &origins {
                self.pending_wants.insert((peer, *origin), deadline);
            }
            for chunk in origins.chunks(MAX_WANTS) {
                if mend {
                    self.send(peer, Message::Graft(chunk.to_vec()));
                } else {
                    self.send(peer, Message::Want(chunk.to_vec()));
                }
            }
        }
    }

    /// Drops neighbours that are no longer fit (off the roster, banned,
    /// quarantined) and chooses new ones up to the configured number.
    fn maintain_neighbours<R: Rng + ?Sized>(&mut self, now_ms: u64, rng: &mut R) {
        if !self.spread.enabled() {
            return;
        }
        let (directory, membership) = (&self.directory, &self.membership);
        self.spread.retain(|peer| {
            directory.roster().contains(peer)
                && !directory.is_quarantined(peer)
                && !membership.is_banned(peer, now_ms)
        });
        for peer in self.spread.restore_floor(None, rng) {
            self.send(peer, Message::Graft(Vec::new()));
        }
        let wanted = self.spread.wanted();
        if wanted > 0 {
            let mut skip: Vec<NodeId> = self.spread.neighbours().copied().collect();
            skip.extend(self.spread.refusing(now_ms));
            let found = self.pick(wanted, now_ms, rng, &skip);
            self.neighbour_search_after_ms = if found.len() < wanted {
                now_ms + (self.config.interval_ms / 4).max(1)
            } else {
                0
            };
            for peer in found {
                self.spread.choose(peer);
                // An empty graft tells the peer it was chosen: it links back,
                // and pushes its news here too.
                self.send(peer, Message::Graft(Vec::new()));
            }
        }
    }

    /// Sends an urgent item (a proof, a roster operation) at once to every
    /// neighbour but `source`, or to `fanout` random members while there are none.
    pub(super) fn broadcast<R: Rng + ?Sized>(
        &mut self,
        message: Message,
        source: Option<NodeId>,
        now_ms: u64,
        rng: &mut R,
    ) {
        self.maintain_neighbours(now_ms, rng);
        let except: Vec<NodeId> = source.into_iter().collect();
        let mut targets: Vec<NodeId> = self
            .spread
            .neighbours()
            .filter(|peer| !except.contains(peer))
            .copied()
            .collect();
        if targets.is_empty() {
            targets = self.pick(self.config.fanout.max(2), now_ms, rng, &except);
        }
        for peer in targets {
            self.send(peer, message.clone());
        }
    }

    /// Answers a peer's ranges; returns the work units the answer cost.
    fn on_sync(&mut self, from: NodeId, ranges: &[Range], now_ms: u64) -> u64 {
        let roster = self.directory.roster().clone();
        let result = gossip::reconcile(&self.directory, ranges, |origin| roster.contains(origin));
        if !(result.reply.is_empty() && result.push.is_empty() && result.want.is_empty()) {
            self.stir(now_ms);
        }
        let mut units = self.push_holdings(from, &result.push, now_ms);
        for range in ranges.iter().chain(&result.reply) {
            units += cost::RANGE;
            if let Summary::Holdings(holdings) = &range.summary {
                units += cost::HOLDING * holdings.len() as u64;
            }
        }
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
        units
    }

    fn on_want(&mut self, from: NodeId, origins: &[NodeId], now_ms: u64) -> u64 {
        self.push_holdings(from, origins, now_ms)
    }

    /// Sends `to` this node's proof or record for each origin: proofs first.
    /// Returns the work units of what was sent, which `to` asked for.
    fn push_holdings(&mut self, to: NodeId, origins: &[NodeId], now_ms: u64) -> u64 {
        let proofs: Vec<(RecordId, Vec<u8>)> = origins
            .iter()
            .filter_map(|origin| self.directory.proof(origin))
            .map(|proof| (proof.record_ids().0, proof.encode()))
            .collect();
        let records: Vec<VerifiedRecord> = origins
            .iter()
            .filter_map(|origin| self.directory.entry(origin))
            .map(|entry| entry.record.clone())
            .collect();
        let mut units = 0;
        let mut fresh = Vec::new();
        for (id, proof) in proofs {
            if self.mark_sent(to, id, now_ms) {
                units += cost::RECORD_SENT + cost::bytes(proof.len());
                fresh.push(proof);
            }
        }
        for chunk in fresh.chunks(MAX_PROOFS_PER_MESSAGE) {
            self.send(to, Message::Proofs(chunk.to_vec()));
        }
        units + self.send_records(to, &records, false, now_ms)
    }

    /// Notes that `id` goes to `to` now; false if it went there within the last
    /// interval. Each record or proof goes to a peer at most once an interval,
    /// whatever and however often it asks: replies cannot be amplified by
    /// repetition.
    fn mark_sent(&mut self, to: NodeId, id: RecordId, now_ms: u64) -> bool {
        if self.sent.contains_key(&(to, id)) {
            return false;
        }
        if self.sent.len() < MAX_SENT_REMEMBERED {
            self.sent.insert((to, id), now_ms);
        }
        true
    }

    /// Sends `records` to `to` (as a `Push` of news, or `Records` that were
    /// asked for), but none it was sent within the last interval. Returns the
    /// work units of what was sent.
    fn send_records(
        &mut self,
        to: NodeId,
        records: &[VerifiedRecord],
        push: bool,
        now_ms: u64,
    ) -> u64 {
        let wrap = |batch: Vec<Vec<u8>>| {
            if push {
                Message::Push(batch)
            } else {
                Message::Records(batch)
            }
        };
        let mut units = 0;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0;
        for record in records {
            if !self.mark_sent(to, record.id(), now_ms) {
                continue;
            }
            let bytes = record.wire_bytes();
            units += cost::RECORD_SENT + cost::bytes(bytes.len());
            let full = batch.len() == MAX_RECORDS_PER_MESSAGE
                || batch_bytes + bytes.len() + 16 > MAX_FRAME_BYTES;
            if full {
                self.send(to, wrap(std::mem::take(&mut batch)));
                batch_bytes = 0;
            }
            batch_bytes += bytes.len() + 8;
            batch.push(bytes.to_vec());
            if self.config.audit_relays {
                self.outputs.push_back(Output::Audit(AuditEvent::Relayed {
                    to,
                    record: record.clone(),
                }));
            }
        }
        if !batch.is_empty() {
            self.send(to, wrap(batch));
        }
        units
    }

    /// Acts on a received proof; true if it quarantined an origin (useful work).
    fn on_proof<R: Rng + ?Sized>(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        now_ms: u64,
        rng: &mut R,
    ) -> bool {
        let proof = match EquivocationProof::decode(bytes) {
            Ok(proof) => proof,
            Err(error) => {
                self.malformed(from, error, Offence::InvalidProof, now_ms);
                return false;
            }
        };
        let verdict = self.directory.ingest_proof(&proof);
        if let ProofVerdict::Quarantined { origin, .. }
        | ProofVerdict::AlreadyQuarantined(origin)
        | ProofVerdict::Pardoned(origin) = &verdict
        {
            self.pending_wants.remove(&(from, *origin));
        }
        let quarantined = match &verdict {
            ProofVerdict::Quarantined { origin, .. } => Some(*origin),
            _ => None,
        };
        let rejected = matches!(verdict, ProofVerdict::Rejected(_));
        if !matches!(
            verdict,
            ProofVerdict::AlreadyQuarantined(_) | ProofVerdict::Pardoned(_)
        ) {
            self.outputs.push_back(Output::Audit(AuditEvent::Proof {
                peer: Some(from),
                verdict,
                proof: Box::new(proof.clone()),
            }));
        }
        if rejected {
            self.penalise(from, Offence::InvalidProof, now_ms);
        }
        if let Some(origin) = quarantined {
            self.outputs
                .push_back(Output::Change(DirectoryChange::Quarantined {
                    origin,
                    proof: Box::new(proof.clone()),
                }));
            if origin == self.me {
                self.halt(Some(from), Halt::Quarantined(Box::new(proof.clone())));
            }
            self.rumor_proof(&proof, Some(from), now_ms, rng);
        }
        quarantined.is_some()
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
        if let Verdict::Accepted { record, .. } = &verdict {
            self.spread.received(&record.origin(), record.seq());
        }
        if kind != VerdictKind::Duplicate {
            self.outputs.push_back(Output::Audit(AuditEvent::Verdict {
                peer,
                verdict: verdict.clone(),
            }));
        }
        self.on_own_verdict(peer, &verdict);
        self.note_change(&verdict, now_ms);
        match &verdict {
            Verdict::Accepted { record, .. } => self.spread_record(record, peer, now_ms, rng),
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
    }

    /// Something new was seen: exchanges go back to the full rate, the first
    /// one interval after the news (not at once: the news is spreading along
    /// the neighbour links, and an exchange in the middle of that spread would
    /// take the cores the spread needs and find differences that the next few
    /// pushes settle anyway).
    fn stir(&mut self, now_ms: u64) {
        let last = self.quiet.last_round_ms;
        self.quiet = Quiet {
            rounds: 0,
            last_round_ms: last,
        };
        if last > 0 {
            let due = now_ms.saturating_add(self.config.interval_ms);
            self.next_round_ms = self.next_round_ms.min(due);
        }
    }

    /// Whether this node is gossiping at its idle rate (see [Idle](self#idle)).
    pub fn is_idle(&self) -> bool {
        self.quiet.is_quiet()
            && self.config.idle_stretch > 1
            && self.spread.enabled()
            && self.directory().roster().contains(&self.me)
    }

    fn note_change(&mut self, verdict: &Verdict, now_ms: u64) {
        let change = match verdict {
            Verdict::Accepted {
                record,
                replaced: None,
            } => DirectoryChange::Added(record.clone()),
            Verdict::Accepted {
                record,
                replaced: Some(previous),
            } => DirectoryChange::Updated {
                previous: previous.clone(),
                record: record.clone(),
            },
            Verdict::Equivocation(proof) => match proof.claimed_origin() {
                Some(origin) => DirectoryChange::Quarantined {
                    origin,
                    proof: proof.clone(),
                },
                None => return,
            },
            _ => return,
        };
        self.stir(now_ms);
        self.outputs.push_back(Output::Change(change));
    }

    /// Spreads a record this node just accepted: pushed in full to its eager
    /// neighbours, announced to the lazy ones (see [`spread`](super::spread)).
    fn spread_record<R: Rng + ?Sized>(
        &mut self,
        record: &VerifiedRecord,
        source: Option<NodeId>,
        now_ms: u64,
        rng: &mut R,
    ) {
        if !self.spread.enabled() {
            return;
        }
        if self.spread.wanted() > 0 && now_ms >= self.neighbour_search_after_ms {
            self.maintain_neighbours(now_ms, rng);
        }
        let targets = self
            .spread
            .targets(Holding::of_record(record), source, now_ms);
        for peer in targets.eager {
            self.pushes.entry(peer).or_default().push(record.clone());
        }
    }

    /// Sends the pushes gathered while handling one input: one `Push` per
    /// eager neighbour, however many records the input brought.
    fn flush_pushes(&mut self, now_ms: u64) {
        for (peer, records) in std::mem::take(&mut self.pushes) {
            self.send_records(peer, &records, true, now_ms);
        }
    }

    fn rumor_proof<R: Rng + ?Sized>(
        &mut self,
        proof: &EquivocationProof,
        source: Option<NodeId>,
        now_ms: u64,
        rng: &mut R,
    ) {
        self.broadcast(Message::Proofs(vec![proof.encode()]), source, now_ms, rng);
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

    /// Audits an item of a frame that does not decode and penalises its sender.
    fn malformed(&mut self, peer: NodeId, error: DecodeError, offence: Offence, now_ms: u64) {
        self.outputs
            .push_back(Output::Audit(AuditEvent::MalformedFrame { peer, error }));
        self.penalise(peer, offence, now_ms);
    }

    fn penalise(&mut self, peer: NodeId, offence: Offence, now_ms: u64) {
        match self.scores.penalise(peer, offence, now_ms) {
            Penalty::Penalised { points } => {
                self.outputs.push_back(Output::Audit(AuditEvent::Penalised {
                    peer,
                    offence,
                    points,
                }));
            }
            Penalty::Banned { until_ms, .. } => {
                self.membership.ban(peer, until_ms);
                self.spread.drop_peer(&peer);
                self.work.forget(&peer);
                self.pending_wants.retain(|(from, _), _| *from != peer);
                self.outputs.push_back(Output::Audit(AuditEvent::Banned {
                    peer,
                    offence,
                    until_ms,
                }));
                self.outputs
                    .push_back(Output::Disconnect { peer, until_ms });
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

/// The work units a received record cost if it changed nothing: decoding and
/// hashing it, the signatures checked, and its audit entry. An accepted record or
/// a detected equivocation is useful and costs nothing (see [`super::budget`]).
fn wasted_record_cost(verdict: &Verdict, len: usize, signatures: u64) -> u64 {
    match verdict.kind() {
        VerdictKind::Accepted | VerdictKind::Equivocation => 0,
        kind => {
            let audit = if kind == VerdictKind::Duplicate {
                0
            } else {
                cost::AUDIT_ENTRY
            };
            cost::WASTED_RECORD + cost::bytes(len) + signatures * cost::SIGNATURE + audit
        }
    }
}
