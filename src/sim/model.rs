//! The federation-scale engine: anti-entropy over compact shared holdings.
//!
//! The state-machine engine ([`world`](super::world)) runs every node's real
//! [`State`](crate::proto::State), whose directory is a map of every record it
//! holds. When N nodes all publish that is N² entries of a few hundred bytes,
//! and beyond a few thousand nodes neither memory nor time suffices. This engine
//! keeps what dissemination needs and nothing more:
//!
//! - **Holdings are bits.** Each record is signed once per trial and known by
//!   its index in origin order. What a node holds is one bit per record (1.25 KB
//!   per node at N=10,000), with the XOR of their fingerprints and their count
//!   kept current as the directory keeps them.
//! - **Reconciliation is the nodes' own code.** A node's bits answer
//!   [`Holdings`], so an exchange runs [`gossip::reconcile`]: the same ranges
//!   split, the same listings, the same limits. Records being in origin order,
//!   a prefix range is an interval of indices.
//! - **The driver does what the state machine does in an exchange.** Each round
//!   every node opens `fanout` exchanges (a roster head, then its root range)
//!   with members chosen by the real [`Membership`], dial backoff included. A
//!   node answers ranges with the records the peer lacks, its own finer ranges
//!   and a `Want`; it answers a `Want` with records; it sends one peer no record
//!   twice in an interval, and batches records into frames as nodes do.
//! - **Records frames are measured, not built**: their length is computed
//!   ([`records_frame_len`]) and they carry record indices. Ranges travel as
//!   their encoded frames and are decoded on arrival by the wire codec, so a
//!   reply the codec would refuse fails the run (that is how an unsorted reply
//!   was found).
//!
//! Each node keeps the real [`WorkBudgets`] of its peers and charges every
//! frame as the state machine does (frame, bytes, ranges compared and listed,
//! records sent on request, duplicates); a frame beyond a peer's budget is
//! dropped and counted, so a federation too large for the budgets shows it.
//!
//! The link model is the other engine's: loss, NAT (a dial to a node behind NAT
//! fails unless it connected first, and the dialler backs off) and partitions.
//!
//! **What it leaves out**, and so refuses ([`Unsupported`]): adversaries,
//! crashes and churn (they need the signed chain's rules), spreading along
//! neighbours ([`spread`](crate::proto::spread), a state of its own per node),
//! and event-driven time. Those run on the state-machine engine. Where both can
//! run a scenario they agree on rounds, messages and bytes (tested).
//!
//! Besides rounds it counts, as iroh-gossip's simulator does, the **relative
//! message redundancy** (record copies received per first delivery, minus one)
//! and the **last delivery hop** (for each record, the hops from its publisher
//! to the last node it reached).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::RangeInclusive;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidings_keys::NodeId;

use super::scenario::{Mode, Scenario, Workload};
use super::world::{announcement, Federation, RoundSample, TrialOutcome, START_MS};
use crate::proto::budget::{cost, WorkBudgets};
use crate::proto::directory::Holding;
use crate::proto::gossip::{self, Holdings};
use crate::proto::limits::{MAX_FRAME_BYTES, MAX_RECORDS_PER_MESSAGE};
use crate::proto::membership::Membership;
use crate::proto::record::{Record, VerifiedRecord};
use crate::proto::state::GossipConfig;
use crate::proto::wire::{records_frame_len, Message, Range, RosterHead, Summary};

/// Most records a node remembers sending in one interval (as the state machine).
const MAX_SENT_REMEMBERED: u32 = 65_536;

/// Lockstep delivery steps in one round (as the other engine).
const MAX_STEPS: usize = 64;

/// Most nodes this engine packs into its keys (32 bits each).
const MAX_NODES: usize = 1 << 31;

/// Why a scenario cannot run on this engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the federation-scale engine does not model {0}; run it on the state-machine engine")]
pub struct Unsupported(pub &'static str);

/// Whether this engine can run `scenario`.
pub fn supports(scenario: &Scenario) -> Result<(), Unsupported> {
    if scenario.adversaries.total() > 0.0 {
        return Err(Unsupported("adversaries"));
    }
    if scenario.refresh.is_some() {
        return Err(Unsupported("refreshes"));
    }
    if scenario.crashes.is_some() {
        return Err(Unsupported("crashes"));
    }
    if scenario.churn.is_some() {
        return Err(Unsupported("churn"));
    }
    if scenario.neighbours > 0 {
        return Err(Unsupported("spreading along neighbours (neighbours > 0)"));
    }
    if scenario.mode != Mode::Rounds {
        return Err(Unsupported("event-driven time"));
    }
    if scenario.nodes > MAX_NODES {
        return Err(Unsupported("more than 2,147,483,648 nodes"));
    }
    Ok(())
}

/// The records of one trial, in origin order.
struct Catalogue {
    origins: Vec<NodeId>,
    /// The first eight bytes of each origin, big-endian: enough to place a
    /// prefix range (prefixes are at most sixteen hex digits).
    keys: Vec<u64>,
    /// For each value `v` of a key's top 16 bits, the index of the first key
    /// whose top bits are `v` or more (and one more entry: the length).
    buckets: Vec<u32>,
    holdings: Vec<Holding>,
    lens: Vec<usize>,
    publisher: Vec<u32>,
    by_origin: HashMap<NodeId, u32>,
}

impl Catalogue {
    /// The indices of the records whose origin is in `range`.
    fn interval(&self, range: &RangeInclusive<NodeId>) -> (usize, usize) {
        let (start, end) = (range.start().as_bytes(), range.end().as_bytes());
        if start[8..].iter().all(|&b| b == 0) && end[8..].iter().all(|&b| b == 0xff) {
            let (start, end) = (key_of(range.start()), key_of(range.end()));
            let low = self.first_at_least(start);
            let high = match end.checked_add(1) {
                Some(next) => self.first_at_least(next),
                None => self.keys.len(),
            };
            return (low, high.max(low));
        }
        let low = self
            .origins
            .partition_point(|origin| origin < range.start());
        let high = self.origins.partition_point(|origin| origin <= range.end());
        (low, high.max(low))
    }
}

fn key_of(origin: &NodeId) -> u64 {
    let mut key = [0; 8];
    key.copy_from_slice(&origin.as_bytes()[..8]);
    u64::from_be_bytes(key)
}

impl Catalogue {
    /// The index of the first key at or above `key`.
    fn first_at_least(&self, key: u64) -> usize {
        let bucket = (key >> 48) as usize;
        let (from, to) = (
            self.buckets[bucket] as usize,
            self.buckets[bucket + 1] as usize,
        );
        from + self.keys[from..to].partition_point(|&k| k < key)
    }
}

/// For each value of a key's top 16 bits, the index of the first of `keys`
/// (sorted) at or above it, and one more entry: the length.
fn buckets_of(keys: &[u64]) -> Vec<u32> {
    (0..=1usize << 16)
        .map(|bucket| keys.partition_point(|&key| ((key >> 48) as usize) < bucket) as u32)
        .collect()
}

/// Calls `each` with every set bit of `words` in `low..high`.
fn for_each_set(words: &[u64], low: usize, high: usize, mut each: impl FnMut(usize)) {
    if low >= high {
        return;
    }
    let (first, last) = (low / 64, (high - 1) / 64);
    for (word, &value) in words.iter().enumerate().take(last + 1).skip(first) {
        let mut bits = value;
        if word == first {
            bits &= u64::MAX << (low % 64);
        }
        if word == last && !high.is_multiple_of(64) {
            bits &= u64::MAX >> (64 - high % 64);
        }
        while bits != 0 {
            each(word * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

/// One node's holdings, as reconciliation reads them.
struct View<'a> {
    catalogue: &'a Catalogue,
    words: &'a [u64],
    fingerprint: u64,
    count: u32,
}

impl Holdings for View<'_> {
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn holdings_count(&self) -> usize {
        self.count as usize
    }

    fn summarize(&self, range: RangeInclusive<NodeId>) -> (u64, u32) {
        let (low, high) = self.catalogue.interval(&range);
        let (mut fingerprint, mut count) = (0, 0);
        for_each_set(self.words, low, high, |record| {
            fingerprint ^= self.catalogue.holdings[record].fingerprint();
            count += 1;
        });
        (fingerprint, count)
    }

    fn holdings_in(&self, range: RangeInclusive<NodeId>) -> Vec<Holding> {
        let (low, high) = self.catalogue.interval(&range);
        let mut holdings = Vec::new();
        for_each_set(self.words, low, high, |record| {
            holdings.push(self.catalogue.holdings[record]);
        });
        holdings
    }
}

/// What travels, with record indices in place of records.
enum Letter {
    /// The roster head an exchange opens with (the roster never changes here).
    RosterHead,
    /// `Open` or `Sync`: ranges to reconcile, as the encoded frame (a tenth of
    /// the memory of the decoded ranges, and decoded on arrival as a node does).
    Ranges(Vec<u8>),
    /// Records asked for.
    Want(Vec<u32>),
    /// Records sent.
    Records(Vec<u32>),
}

struct Envelope {
    from: u32,
    to: u32,
    letter: Letter,
    /// The frame's length.
    len: u32,
}

/// A hasher for the engine's packed integer keys.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, key: u64) {
        let mixed = (self.0 ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeySet = HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// One running trial.
struct ModelWorld<'a> {
    scenario: &'a Scenario,
    config: GossipConfig,
    rng: ChaCha8Rng,
    catalogue: Catalogue,
    ids: Vec<NodeId>,
    index: HashMap<NodeId, u32>,
    nat: Vec<bool>,
    memberships: Vec<Membership>,
    /// Each node's bits, `words` per node.
    held: Vec<u64>,
    words: usize,
    fingerprints: Vec<u64>,
    counts: Vec<u32>,
    /// Hops from the publisher at which each node got each record (node-major).
    hops: Vec<u8>,
    /// For each record, the largest of its hops so far.
    last_hop: Vec<u8>,
    held_total: u64,
    connections: KeySet,
    /// For each (sender, receiver) pair, the records sent this interval, as bits.
    sent: HashMap<u64, Vec<u64>, BuildHasherDefault<KeyHasher>>,
    sent_count: Vec<u32>,
    now: u64,
    round: u32,
    messages: u64,
    bytes: u64,
    opened: u64,
    copies: u64,
    first_deliveries: u64,
    head_bytes: usize,
    budgets: Vec<WorkBudgets>,
    /// Frames dropped because their sender's budget was spent.
    flooded: u64,
    /// Work units the frame being served caused at its receiver.
    units: u64,
}

/// Runs trial `seed` of `scenario` on this engine.
pub fn run_trial(
    scenario: &Scenario,
    federation: &Federation,
    seed: u64,
) -> Result<TrialOutcome, Unsupported> {
    supports(scenario)?;
    Ok(ModelWorld::new(scenario, federation, seed).run(seed))
}

impl<'a> ModelWorld<'a> {
    fn new(scenario: &'a Scenario, federation: &Federation, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = scenario.nodes;
        let nat: Vec<bool> = (0..n).map(|_| rng.gen_bool(scenario.nat_share)).collect();
        let publishers: Vec<usize> = match scenario.workload {
            Workload::OneAnnouncement => vec![0],
            Workload::AllPublish => (0..n).collect(),
        };
        let catalogue = catalogue(federation, &publishers, &nat);
        let records = catalogue.origins.len();
        let words = records.div_ceil(64).max(1);
        let ids: Vec<NodeId> = federation
            .identities
            .iter()
            .map(|identity| identity.node_id())
            .collect();
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        let memberships = ids
            .iter()
            .map(|id| {
                let mut membership = Membership::new(*id, federation.members.clone());
                membership.assume_everyone_known();
                membership
            })
            .collect();
        let state = federation.ledger.state();
        let head = Message::RosterHead(RosterHead {
            epoch: state.epoch(),
            head: state.head(),
            pending: Vec::new(),
            reply: false,
            forked: false,
        });
        let mut world = Self {
            scenario,
            config: GossipConfig {
                interval_ms: scenario.interval_ms,
                fanout: scenario.fanout,
                ..GossipConfig::default()
            },
            rng,
            ids,
            index,
            nat,
            memberships,
            held: vec![0; n * words],
            words,
            fingerprints: vec![0; n],
            counts: vec![0; n],
            hops: vec![u8::MAX; n * records],
            last_hop: vec![0; records],
            held_total: 0,
            connections: KeySet::default(),
            sent: HashMap::default(),
            sent_count: vec![0; n],
            now: START_MS,
            round: 0,
            messages: 0,
            bytes: 0,
            opened: 0,
            copies: 0,
            first_deliveries: 0,
            head_bytes: head.encode().len(),
            budgets: (0..n)
                .map(|_| WorkBudgets::new(GossipConfig::default().score.work))
                .collect(),
            flooded: 0,
            units: 0,
            catalogue,
        };
        for record in 0..records {
            let publisher = world.catalogue.publisher[record] as usize;
            world.take(publisher, record, 0);
        }
        world
    }

    fn holds(&self, node: usize, record: usize) -> bool {
        self.held[node * self.words + record / 64] & (1 << (record % 64)) != 0
    }

    /// Node `node` now holds `record`, `hop` hops from its publisher.
    fn take(&mut self, node: usize, record: usize, hop: u8) {
        self.held[node * self.words + record / 64] |= 1 << (record % 64);
        self.fingerprints[node] ^= self.catalogue.holdings[record].fingerprint();
        self.counts[node] += 1;
        self.held_total += 1;
        self.hops[node * self.catalogue.origins.len() + record] = hop;
        self.last_hop[record] = self.last_hop[record].max(hop);
    }

    fn view(&self, node: usize) -> View<'_> {
        View {
            catalogue: &self.catalogue,
            words: &self.held[node * self.words..(node + 1) * self.words],
            fingerprint: self.fingerprints[node],
            count: self.counts[node],
        }
    }

    fn run(mut self, seed: u64) -> TrialOutcome {
        let mut outcome = TrialOutcome {
            seed,
            ..TrialOutcome::default()
        };
        let target = self.scenario.nodes as u64 * self.catalogue.origins.len() as u64;
        let mut converged = None;
        for round in 1..=self.scenario.max_rounds {
            self.round = round;
            self.run_round();
            let sample = RoundSample {
                coverage: self.held_total as f64 / target as f64,
                quarantine: 1.0,
                forged_held: 0,
            };
            outcome.samples.push(sample);
            if self.held_total == target {
                converged = Some(round);
                break;
            }
        }
        outcome.converged_round = converged;
        outcome.messages = self.messages;
        outcome.bytes = self.bytes;
        outcome.payload_copies = self.copies;
        outcome.frames_over_budget = self.flooded;
        outcome.first_deliveries = self.first_deliveries;
        outcome.last_delivery_hops = self.last_hop.iter().map(|&hop| u32::from(hop)).collect();
        if converged.is_some() && self.scenario.workload == Workload::AllPublish {
            outcome.idle_bytes_per_exchange = Some(self.idle_round_bytes());
        }
        if let Some(partition) = self.scenario.partition {
            outcome.disturbance_end = Some(partition.heal_round);
        }
        outcome
    }

    /// Two more rounds once converged: bytes per exchange opened in the second.
    fn idle_round_bytes(&mut self) -> f64 {
        self.round += 1;
        self.run_round();
        let (bytes, opened) = (self.bytes, self.opened);
        self.round += 1;
        self.run_round();
        (self.bytes - bytes) as f64 / (self.opened - opened).max(1) as f64
    }

    fn run_round(&mut self) {
        self.now = START_MS + u64::from(self.round) * self.scenario.interval_ms;
        self.sent.clear();
        self.sent_count.fill(0);
        let mut queue = Vec::new();
        for node in 0..self.scenario.nodes {
            let peers = {
                let Self {
                    memberships,
                    rng,
                    index,
                    catalogue,
                    held,
                    words,
                    nat,
                    config,
                    now,
                    ..
                } = &mut *self;
                let mine = &held[node * *words..(node + 1) * *words];
                // As the state machine: a member whose record this node holds is
                // dialled only if the record lists addresses (behind NAT it lists
                // none); one it holds nothing of is known, so tried.
                memberships[node].pick(config.fanout, *now, rng, |peer| {
                    match catalogue.by_origin.get(peer) {
                        Some(&record) if mine[record as usize / 64] & (1 << (record % 64)) != 0 => {
                            !nat[index[peer] as usize]
                        }
                        _ => true,
                    }
                })
            };
            for peer in peers {
                let peer = self.index[&peer];
                self.opened += 1;
                let opening = gossip::opening(&self.view(node), self.now).encode();
                let len = opening.len();
                self.send(node, peer, Letter::RosterHead, self.head_bytes, &mut queue);
                self.send(node, peer, Letter::Ranges(opening), len, &mut queue);
            }
        }
        for _ in 0..MAX_STEPS {
            if queue.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for envelope in queue {
                self.deliver(envelope, &mut next);
            }
            queue = next;
        }
    }

    fn send(
        &mut self,
        from: usize,
        to: u32,
        letter: Letter,
        len: usize,
        queue: &mut Vec<Envelope>,
    ) {
        self.messages += 1;
        self.bytes += len as u64;
        queue.push(Envelope {
            from: from as u32,
            to,
            letter,
            len: len as u32,
        });
    }

    fn connection_key(a: u32, b: u32) -> u64 {
        (u64::from(a.min(b)) << 32) | u64::from(a.max(b))
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.scenario.partition.is_some_and(|partition| {
            (partition.from_round..partition.heal_round).contains(&self.round) && a % 2 != b % 2
        })
    }

    /// Delivers one envelope, as the other engine's link model does.
    fn deliver(&mut self, envelope: Envelope, queue: &mut Vec<Envelope>) {
        let Envelope {
            from,
            to,
            letter,
            len,
        } = envelope;
        let connected = self.connections.contains(&Self::connection_key(from, to));
        let (from, to) = (from as usize, to as usize);
        if self.nat[to] && !connected {
            let peer = self.ids[to];
            let backoff = self.config.backoff;
            self.memberships[from].dial_failed(peer, self.now, backoff, &mut self.rng);
            return;
        }
        if self.partitioned(from, to) || self.rng.gen_bool(self.scenario.loss) {
            return;
        }
        self.connections
            .insert(Self::connection_key(from as u32, to as u32));
        let sender = self.ids[from];
        if !self.budgets[to].has_budget(&sender, self.now) {
            self.flooded += 1;
            return;
        }
        self.units = cost::FRAME + cost::bytes(len as usize);
        self.memberships[to].reached(&sender);
        match letter {
            Letter::RosterHead => self.units += cost::RANGE,
            Letter::Ranges(frame) => match Message::decode(&frame) {
                Ok(Message::Open { ranges, .. } | Message::Sync(ranges)) => {
                    self.on_ranges(to, from, &ranges, queue);
                }
                other => unreachable!("the engine sent ranges it cannot read: {other:?}"),
            },
            Letter::Want(records) => self.send_records(to, from, &records, queue),
            Letter::Records(records) => self.receive(to, from, &records),
        }
        let units = std::mem::take(&mut self.units);
        self.budgets[to].charge(sender, units, self.now);
    }

    /// `node` answers `peer`'s ranges: records the peer lacks, finer ranges, and
    /// a `Want` for what it lacks itself (the state machine's order).
    fn on_ranges(&mut self, node: usize, peer: usize, ranges: &[Range], queue: &mut Vec<Envelope>) {
        let result = gossip::reconcile(&self.view(node), ranges, |_| true);
        for range in ranges.iter().chain(&result.reply) {
            self.units += cost::RANGE;
            if let Summary::Holdings(holdings) = &range.summary {
                self.units += cost::HOLDING * holdings.len() as u64;
            }
        }
        let push: Vec<u32> = result
            .push
            .iter()
            .filter_map(|origin| self.catalogue.by_origin.get(origin).copied())
            .collect();
        self.send_records(node, peer, &push, queue);
        if !result.reply.is_empty() {
            let frame = Message::Sync(result.reply).encode();
            let len = frame.len();
            self.send(node, peer as u32, Letter::Ranges(frame), len, queue);
        }
        if !result.want.is_empty() {
            let want: Vec<u32> = result
                .want
                .iter()
                .filter_map(|origin| self.catalogue.by_origin.get(origin).copied())
                .collect();
            let len = 2
                + crate::proto::codec::varint_len(result.want.len() as u64)
                + 32 * result.want.len();
            self.send(node, peer as u32, Letter::Want(want), len, queue);
        }
    }

    /// `node` sends `peer` those of `records` it holds and has not sent it this
    /// interval, in frames of at most 256 records and 1 MiB.
    fn send_records(
        &mut self,
        node: usize,
        peer: usize,
        records: &[u32],
        queue: &mut Vec<Envelope>,
    ) {
        let mut batch: Vec<u32> = Vec::new();
        let mut batch_bytes = 0;
        for &record in records {
            if !self.holds(node, record as usize) || !self.mark_sent(node, peer, record) {
                continue;
            }
            let len = self.catalogue.lens[record as usize];
            self.units += cost::RECORD_SENT + cost::bytes(len);
            if batch.len() == MAX_RECORDS_PER_MESSAGE || batch_bytes + len + 16 > MAX_FRAME_BYTES {
                self.send_batch(node, peer, std::mem::take(&mut batch), queue);
                batch_bytes = 0;
            }
            batch_bytes += len + 8;
            batch.push(record);
        }
        if !batch.is_empty() {
            self.send_batch(node, peer, batch, queue);
        }
    }

    fn send_batch(&mut self, node: usize, peer: usize, batch: Vec<u32>, queue: &mut Vec<Envelope>) {
        let len = records_frame_len(batch.iter().map(|&r| self.catalogue.lens[r as usize]));
        self.send(node, peer as u32, Letter::Records(batch), len, queue);
    }

    /// False if `node` sent `record` to `peer` this interval already.
    fn mark_sent(&mut self, node: usize, peer: usize, record: u32) -> bool {
        let words = self.words;
        let bits = self
            .sent
            .entry(((node as u64) << 32) | peer as u64)
            .or_insert_with(|| vec![0; words]);
        let (word, bit) = (record as usize / 64, 1u64 << (record % 64));
        if bits[word] & bit != 0 {
            return false;
        }
        if self.sent_count[node] < MAX_SENT_REMEMBERED {
            bits[word] |= bit;
            self.sent_count[node] += 1;
        }
        true
    }

    fn receive(&mut self, node: usize, from: usize, records: &[u32]) {
        let total = self.catalogue.origins.len();
        for &record in records {
            let record = record as usize;
            self.copies += 1;
            if self.holds(node, record) {
                // A duplicate: wasted work, charged to its sender.
                self.units += cost::WASTED_RECORD + cost::bytes(self.catalogue.lens[record]);
                continue;
            }
            let hop = self.hops[from * total + record].saturating_add(1);
            self.first_deliveries += 1;
            self.take(node, record, hop);
        }
    }
}

/// Signs the records of `publishers` (as they would publish them at the start)
/// and orders them by origin.
fn catalogue(federation: &Federation, publishers: &[usize], nat: &[bool]) -> Catalogue {
    let mut records: Vec<(NodeId, Holding, usize, u32)> = publishers
        .iter()
        .map(|&i| {
            let identity = &federation.identities[i];
            let record = Record::first(
                federation.id,
                identity.node_id(),
                announcement(i, nat[i], "summarize"),
                START_MS,
                GossipConfig::default().ttl_ms,
            );
            let signed =
                VerifiedRecord::sign(identity, record).expect("a simulated record is valid");
            (
                identity.node_id(),
                Holding::of_record(&signed),
                signed.wire_bytes().len(),
                i as u32,
            )
        })
        .collect();
    records.sort_unstable_by_key(|(origin, ..)| *origin);
    let keys: Vec<u64> = records.iter().map(|(origin, ..)| key_of(origin)).collect();
    let by_origin = records
        .iter()
        .enumerate()
        .map(|(index, (origin, ..))| (*origin, index as u32))
        .collect();
    Catalogue {
        origins: records.iter().map(|(origin, ..)| *origin).collect(),
        buckets: buckets_of(&keys),
        keys,
        holdings: records.iter().map(|(_, holding, ..)| *holding).collect(),
        lens: records.iter().map(|(_, _, len, _)| *len).collect(),
        publisher: records.iter().map(|(.., publisher)| *publisher).collect(),
        by_origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::Prefix;

    #[test]
    fn set_bits_are_found_across_word_edges() {
        let mut words = vec![0u64; 4];
        let set = [0, 1, 63, 64, 65, 127, 128, 200, 255];
        for &bit in &set {
            words[bit / 64] |= 1 << (bit % 64);
        }
        for (low, high) in [
            (0, 256),
            (1, 64),
            (63, 65),
            (64, 128),
            (65, 255),
            (0, 0),
            (7, 7),
        ] {
            let mut found = Vec::new();
            for_each_set(&words, low, high, |bit| found.push(bit));
            let expected: Vec<usize> = set
                .iter()
                .copied()
                .filter(|bit| (low..high).contains(bit))
                .collect();
            assert_eq!(found, expected, "{low}..{high}");
        }
    }

    #[test]
    fn a_prefix_range_is_the_interval_of_its_origins() {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut origins: Vec<NodeId> = (0..3_000).map(|_| NodeId::from_bytes(rng.gen())).collect();
        origins.sort_unstable();
        let keys: Vec<u64> = origins.iter().map(key_of).collect();
        let buckets = buckets_of(&keys);
        let catalogue = Catalogue {
            holdings: Vec::new(),
            lens: Vec::new(),
            publisher: Vec::new(),
            by_origin: HashMap::new(),
            origins: origins.clone(),
            keys,
            buckets,
        };
        let mut prefixes = vec![Prefix::ROOT];
        for depth in 1..=4u8 {
            for _ in 0..50 {
                let bits = rng.gen_range(0..1u64 << (4 * depth));
                prefixes.push(Prefix::new(depth, bits).unwrap());
            }
        }
        prefixes.push(
            Prefix::new(
                16,
                u64::from_be_bytes(origins[17].as_bytes()[..8].try_into().unwrap()),
            )
            .unwrap(),
        );
        for prefix in prefixes {
            let range = prefix.range();
            let (low, high) = catalogue.interval(&range);
            let inside: Vec<usize> = (0..origins.len())
                .filter(|&i| range.contains(&origins[i]))
                .collect();
            assert_eq!((low..high).collect::<Vec<_>>(), inside, "{prefix:?}");
        }
    }
}
