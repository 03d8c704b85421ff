//! The `governance` scenario: roster operations through the real state machine,
//! with a third of the members Byzantine.
//!
//! N members (a third Byzantine) and ten honest nodes outside the roster run in
//! synchronous rounds of four lockstep hops: a message made in one hop is
//! delivered in the next, and what the fourth hop makes waits for the next
//! round, so news crosses at most four nodes a round however it is pushed. Honest
//! operators carry out a schedule, one operation at a time: the ten outsiders
//! are added, five members removed (three Byzantine, two of the newcomers), an
//! honest member's key rotated (its node restarts with the new key at the
//! genesis and must catch up), and an honest member quarantined at the start is
//! pardoned. One honest member proposes each operation; every honest member
//! approves it in the round it first holds it (operators approve explicitly:
//! nothing does so automatically).
//!
//! The Byzantine members split three ways: **withholders** send no roster
//! message at all; **conflicters** propose competing operations for every
//! epoch (removing honest members) and approve every proposal they see,
//! signing twice for one epoch; **replayers** send old operations, stale
//! proposals and operations with forged approvals to random peers every round.
//!
//! Per operation it reports the round the threshold was first reached
//! somewhere and the rounds until every honest member is at that epoch; at the
//! end it checks that every honest node holds the same chain, that the chain
//! verifies from the genesis with only the scheduled operations in it, and
//! that no honest node banned an honest peer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tidings_keys::{FederationId, Identity, NodeId, Roster, Signature};

use super::scenario::ceil_log2;
use crate::proto::directory::DirectoryConfig;
use crate::proto::equivocation::EquivocationProof;
use crate::proto::event::Output;
use crate::proto::limits::DEFAULT_TTL_MS;
use crate::proto::record::{Announcement, Record, VerifiedRecord};
use crate::proto::roster::{
    approve, countersign, verify_chain, Action, Approval, ApprovalCache, Genesis, Ledger,
    RosterHash, SignedOp,
};
use crate::proto::state::{GossipConfig, RosterCommand, State};
use crate::proto::wire::Message;

const START_MS: u64 = super::world::START_MS;
const INTERVAL_MS: u64 = 1000;
/// Rounds an operation may take before the scenario gives up on it.
const MAX_ROUNDS_PER_OP: u32 = 80;
/// Lockstep hops per round (see [`Sim::deliver`]).
const HOPS_PER_ROUND: usize = 4;
/// Deliveries one round may make (a bound, never reached in practice).
const MAX_DELIVERIES_PER_ROUND: usize = 20_000_000;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GovernanceConfig {
    /// Members at the genesis.
    pub nodes: usize,
    /// Honest nodes outside the genesis that the schedule adds.
    pub joiners: usize,
    /// Share of the genesis members that are Byzantine.
    pub byzantine: f64,
    /// The seed.
    pub seed: u64,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self {
            nodes: 1000,
            joiners: 10,
            byzantine: 1.0 / 3.0,
            seed: 12,
        }
    }
}

/// What happened to one operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpOutcome {
    /// The epoch it made.
    pub epoch: u64,
    /// What it did.
    pub action: String,
    /// Approvals it needed.
    pub needed: usize,
    /// Rounds from the proposal until the threshold was first reached somewhere.
    pub rounds_to_threshold: Option<u32>,
    /// Rounds from then until every honest member held the new epoch.
    pub rounds_to_converge: Option<u32>,
}

/// The scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct GovernanceReport {
    /// Members at the genesis.
    pub nodes: usize,
    /// Byzantine members at the genesis.
    pub byzantine: usize,
    /// The seed.
    pub seed: u64,
    /// Each operation.
    pub ops: Vec<OpOutcome>,
    /// The bound: ceil(log2 N) + 2 rounds after the threshold.
    pub bound: u32,
    /// The most rounds any operation took to converge after its threshold.
    pub max_rounds_to_converge: Option<u32>,
    /// Whether every operation converged within the bound.
    pub within_bound: bool,
    /// Whether every honest node ends with the same head.
    pub same_head: bool,
    /// Whether that chain verifies from the genesis and holds only scheduled operations.
    pub chain_valid: bool,
    /// Operations applied anywhere that were not scheduled.
    pub invalid_applied: u64,
    /// Honest peers banned by honest nodes.
    pub honest_banned: u64,
    /// Byzantine peers banned by honest nodes (at the end).
    pub byzantine_banned: u64,
    /// Messages delivered in all.
    pub messages: u64,
    /// Bytes delivered in all.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Honest,
    Withholder,
    Conflicter,
    Replayer,
}

struct Node {
    state: State,
    identity: Arc<Identity>,
    role: Role,
    live: bool,
    /// A conflicter that also proposes competing operations (a few do).
    proposes: bool,
}

struct Sim {
    nodes: Vec<Node>,
    index: BTreeMap<NodeId, usize>,
    federation: FederationId,
    genesis: Genesis,
    cache: Arc<ApprovalCache>,
    rng: ChaCha8Rng,
    now: u64,
    round: u32,
    messages: u64,
    bytes: u64,
    /// Ids of the scheduled operations applied so far.
    scheduled: Vec<RosterHash>,
    /// Messages made in a round's last hop, delivered first in the next.
    carried: VecDeque<(usize, Output)>,
}

fn gossip() -> GossipConfig {
    GossipConfig {
        interval_ms: INTERVAL_MS,
        audit_relays: false,
        ..GossipConfig::default()
    }
}

fn is_roster(message: &Message) -> bool {
    matches!(
        message,
        Message::RosterHead(_)
            | Message::RosterOps(_)
            | Message::RosterWant { .. }
            | Message::RosterFork(_)
    )
}

impl Sim {
    fn node(&self, id: &NodeId) -> Option<usize> {
        self.index.get(id).copied()
    }

    fn new_state(&self, identity: Arc<Identity>) -> State {
        let ledger = Ledger::new(self.genesis.clone());
        let mut state = State::new(
            identity,
            DirectoryConfig::new(self.federation),
            gossip(),
            ledger,
            self.now,
        );
        state.set_approval_cache(self.cache.clone());
        state.assume_membership_known();
        state
    }

    fn add_node(&mut self, identity: Arc<Identity>, role: Role) -> usize {
        let state = self.new_state(identity.clone());
        self.index.insert(identity.node_id(), self.nodes.len());
        self.nodes.push(Node {
            state,
            identity,
            role,
            live: true,
            proposes: false,
        });
        self.nodes.len() - 1
    }

    /// Honest nodes that are members of the current roster (as the most
    /// advanced honest node sees it) and alive.
    fn honest_members(&self) -> Vec<usize> {
        let Some(reference) = self.reference() else {
            return Vec::new();
        };
        let roster = self.nodes[reference]
            .state
            .ledger()
            .state()
            .members()
            .clone();
        (0..self.nodes.len())
            .filter(|&i| {
                let node = &self.nodes[i];
                node.live && node.role == Role::Honest && roster.contains(&node.identity.node_id())
            })
            .collect()
    }

    /// The honest node with the highest epoch.
    fn reference(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].live && self.nodes[i].role == Role::Honest)
            .max_by_key(|&i| self.nodes[i].state.ledger().state().epoch())
    }

    /// Delivers `queue` in lockstep hops: what a delivery makes is delivered in
    /// the next hop, and a round has [`HOPS_PER_ROUND`] hops (an exchange's
    /// depth: head, answer, request, delivery). What is left waits for the next
    /// round, so news crosses at most that many nodes per round.
    fn deliver(&mut self, queue: VecDeque<(usize, Output)>) {
        let mut wave: VecDeque<(usize, Output)> = std::mem::take(&mut self.carried);
        wave.extend(queue);
        let mut deliveries = 0;
        for _ in 0..HOPS_PER_ROUND {
            let mut next = VecDeque::new();
            while let Some((from, output)) = wave.pop_front() {
                let Output::Send { to, message } = output else {
                    continue;
                };
                if self.nodes[from].role == Role::Withholder && is_roster(&message) {
                    continue;
                }
                let Some(target) = self.node(&to) else {
                    continue;
                };
                if !self.nodes[target].live || deliveries >= MAX_DELIVERIES_PER_ROUND {
                    continue;
                }
                deliveries += 1;
                let bytes = message.encode();
                self.messages += 1;
                self.bytes += bytes.len() as u64;
                let sender = self.nodes[from].identity.node_id();
                let (now, rng) = (self.now, &mut self.rng);
                let state = &mut self.nodes[target].state;
                state.handle_frame(sender, &bytes, now, rng);
                while let Some(output) = state.poll_output() {
                    if matches!(output, Output::Send { .. }) {
                        next.push_back((target, output));
                    }
                }
            }
            wave = next;
            if wave.is_empty() {
                break;
            }
        }
        self.carried = wave;
    }

    fn drain(&mut self, i: usize, queue: &mut VecDeque<(usize, Output)>) {
        while let Some(output) = self.nodes[i].state.poll_output() {
            queue.push_back((i, output));
        }
    }

    /// One round: timeouts, honest approvals, Byzantine actions, delivery.
    fn round(&mut self, current: Option<RosterHash>) {
        self.round += 1;
        self.now += INTERVAL_MS;
        let mut queue = VecDeque::new();
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.shuffle(&mut self.rng);
        for &i in &order {
            if !self.nodes[i].live {
                continue;
            }
            let (now, rng) = (self.now, &mut self.rng);
            self.nodes[i].state.handle_timeout(now, rng);
            self.drain(i, &mut queue);
            match self.nodes[i].role {
                Role::Honest => {
                    if let Some(id) = current {
                        let node = &self.nodes[i];
                        let holds = node.state.ledger().proposal(&id).is_some();
                        let voted = node
                            .state
                            .ledger()
                            .signed()
                            .values()
                            .any(|signed| *signed == id);
                        let member = node
                            .state
                            .ledger()
                            .state()
                            .members()
                            .contains(&node.identity.node_id());
                        if holds && !voted && member {
                            let (now, rng) = (self.now, &mut self.rng);
                            self.nodes[i].state.handle_roster_command(
                                RosterCommand::Approve(id),
                                now,
                                rng,
                            );
                            self.drain(i, &mut queue);
                        }
                    }
                }
                Role::Conflicter => self.conflict(i, &mut queue),
                Role::Replayer => self.replay(i, &mut queue),
                Role::Withholder => {}
            }
        }
        self.deliver(queue);
    }

    /// Proposes a competing operation (once per epoch) and approves every open
    /// proposal it holds, signing twice for one epoch.
    fn conflict(&mut self, i: usize, queue: &mut VecDeque<(usize, Output)>) {
        let identity = self.nodes[i].identity.clone();
        let ledger = self.nodes[i].state.ledger();
        let state = ledger.state().clone();
        if !state.members().contains(&identity.node_id()) {
            return;
        }
        let mine = ledger
            .pending()
            .any(|op| op.body.proposer == identity.node_id());
        let mut ops: Vec<SignedOp> = ledger
            .pending()
            .filter(|op| !op.approvals.iter().any(|a| a.signer == identity.node_id()))
            .collect();
        if !mine && self.nodes[i].proposes && self.rng.gen_bool(0.5) {
            let honest: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|n| {
                    n.role == Role::Honest && state.members().contains(&n.identity.node_id())
                })
                .map(|n| n.identity.node_id())
                .collect();
            if let Some(victim) = honest.choose(&mut self.rng) {
                let body = state.propose(
                    identity.node_id(),
                    Action::Remove { member: *victim },
                    self.now,
                    24 * 60 * 60 * 1000,
                );
                ops.push(SignedOp {
                    body,
                    countersignature: None,
                    approvals: Vec::new(),
                });
            }
        }
        for mut op in ops {
            op.approvals.push(approve(&identity, &op.body));
            op.approvals.sort_by_key(|a| a.signer);
            let message = Message::RosterOps(vec![op.encode()]);
            for to in self.random_peers(i, 2) {
                queue.push_back((
                    i,
                    Output::Send {
                        to,
                        message: message.clone(),
                    },
                ));
            }
        }
    }

    /// Sends an old operation, a stale proposal and a forged operation.
    fn replay(&mut self, i: usize, queue: &mut VecDeque<(usize, Output)>) {
        let ledger = self.nodes[i].state.ledger();
        let mut items: Vec<Vec<u8>> = Vec::new();
        if let Some(old) = ledger.chain().choose(&mut self.rng) {
            items.push(old.op().encode());
            // A stale proposal: the old body with one approval.
            let stale = SignedOp {
                approvals: old.op().approvals.iter().take(1).copied().collect(),
                ..old.op().clone()
            };
            items.push(stale.encode());
        }
        // A forged operation for the next epoch: a removal of this replayer's
        // choice "approved" by every member, with made-up signatures.
        let state = ledger.state().clone();
        let members: Vec<NodeId> = state.members().iter().map(|(id, _)| *id).collect();
        if let Some(victim) = members.choose(&mut self.rng) {
            let mut body = state.propose(
                self.nodes[i].identity.node_id(),
                Action::Remove { member: *victim },
                self.now,
                60_000,
            );
            body.issued_at_ms += self.rng.gen_range(0..1000);
            let mut approvals: Vec<Approval> = members
                .iter()
                .take(state.needed())
                .map(|signer| Approval {
                    signer: *signer,
                    signature: Signature([7; 64]),
                })
                .collect();
            approvals.sort_by_key(|a| a.signer);
            items.push(
                SignedOp {
                    body,
                    countersignature: None,
                    approvals,
                }
                .encode(),
            );
        }
        if items.is_empty() {
            return;
        }
        let message = Message::RosterOps(items);
        for to in self.random_peers(i, 2) {
            queue.push_back((
                i,
                Output::Send {
                    to,
                    message: message.clone(),
                },
            ));
        }
    }

    fn random_peers(&mut self, me: usize, count: usize) -> Vec<NodeId> {
        let mut peers = Vec::new();
        for _ in 0..count * 4 {
            let j = self.rng.gen_range(0..self.nodes.len());
            if j != me && self.nodes[j].live {
                peers.push(self.nodes[j].identity.node_id());
            }
            if peers.len() == count {
                break;
            }
        }
        peers
    }

    /// Runs one scheduled operation to convergence; returns its outcome.
    fn run_op(&mut self, proposer: usize, action: Action, new_key: Option<&Identity>) -> OpOutcome {
        let epoch = self.nodes[proposer].state.ledger().state().epoch() + 1;
        let needed = self.nodes[proposer].state.ledger().state().needed();
        let countersignature = new_key.map(|key| countersign(key, &self.federation, &action));
        let summary = action.to_string();
        let (now, rng) = (self.now, &mut self.rng);
        self.nodes[proposer].state.handle_roster_command(
            RosterCommand::Propose {
                action,
                countersignature,
                lifetime_ms: 24 * 60 * 60 * 1000,
            },
            now,
            rng,
        );
        let mut queue = VecDeque::new();
        self.drain(proposer, &mut queue);
        let id = self.nodes[proposer]
            .state
            .ledger()
            .signed()
            .get(&epoch)
            .copied();
        self.deliver(queue);
        let start = self.round;
        let mut threshold_at = None;
        let mut converged_at = None;
        while self.round - start < MAX_ROUNDS_PER_OP {
            self.round(id);
            let reached = self
                .nodes
                .iter()
                .any(|n| n.live && n.state.ledger().state().epoch() >= epoch);
            if reached && threshold_at.is_none() {
                threshold_at = Some(self.round);
            }
            if threshold_at.is_some() {
                let members = self.honest_members();
                if members
                    .iter()
                    .all(|&i| self.nodes[i].state.ledger().state().epoch() >= epoch)
                {
                    converged_at = Some(self.round);
                    break;
                }
            }
        }
        if let Some(id) = id {
            self.scheduled.push(id);
        }
        OpOutcome {
            epoch,
            action: summary,
            needed,
            rounds_to_threshold: threshold_at.map(|at| at - start),
            rounds_to_converge: match (threshold_at, converged_at) {
                (Some(t), Some(c)) => Some(c - t),
                _ => None,
            },
        }
    }
}

fn derive(seed: u64, index: u64) -> Identity {
    let mut hasher = blake3::Hasher::new_derive_key("tidings sim governance identity v1");
    hasher.update(&seed.to_le_bytes());
    hasher.update(&index.to_le_bytes());
    Identity::from_seed(hasher.finalize().as_bytes())
}

/// Runs the scenario.
pub fn run(config: GovernanceConfig) -> GovernanceReport {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let n = config.nodes;
    let identities: Vec<Arc<Identity>> = (0..n as u64)
        .map(|i| Arc::new(derive(config.seed, i)))
        .collect();
    let roster: Roster = identities.iter().map(|i| i.node_id()).collect();
    let federation = FederationId::from_name("simulation");
    let genesis = Genesis::from_roster(federation, &roster).expect("a simulated genesis");
    let byzantine = ((n as f64) * config.byzantine).floor() as usize;
    let mut roles = vec![Role::Honest; n];
    let mut picks: Vec<usize> = (0..n).collect();
    picks.shuffle(&mut rng);
    for (k, &i) in picks.iter().take(byzantine).enumerate() {
        roles[i] = [Role::Withholder, Role::Conflicter, Role::Replayer][k % 3];
    }
    let mut sim = Sim {
        nodes: Vec::new(),
        index: BTreeMap::new(),
        federation,
        genesis,
        cache: Arc::new(ApprovalCache::default()),
        rng,
        now: START_MS,
        round: 0,
        messages: 0,
        bytes: 0,
        scheduled: Vec::new(),
        carried: VecDeque::new(),
    };
    for (i, identity) in identities.iter().enumerate() {
        sim.add_node(identity.clone(), roles[i]);
    }
    for (k, &i) in picks.iter().take(byzantine).enumerate() {
        // Five conflicters also propose competing operations every epoch.
        sim.nodes[i].proposes = k % 3 == 1 && k < 15;
    }
    let joiners: Vec<usize> = (0..config.joiners as u64)
        .map(|j| sim.add_node(Arc::new(derive(config.seed, 1_000_000 + j)), Role::Honest))
        .collect();
    let honest: Vec<usize> = (0..n).filter(|&i| roles[i] == Role::Honest).collect();
    let by_role = |role: Role| (0..n).find(|&i| roles[i] == role);
    // An honest member quarantined from the start (a crash fork, say).
    let pardoned = honest[honest.len() - 1];
    let rotated = honest[honest.len() - 2];
    let proof = {
        let key = &identities[pardoned];
        let record = |name: &str| {
            let announcement = Announcement {
                addrs: vec![],
                specialists: vec![],
            };
            let mut record = Record::first(
                federation,
                key.node_id(),
                announcement,
                START_MS,
                DEFAULT_TTL_MS,
            );
            record.addrs = vec![name.to_string()];
            VerifiedRecord::sign(key, record).expect("a simulated record")
        };
        EquivocationProof::from_conflict(&record("a"), &record("b")).expect("a fork")
    };
    for node in &mut sim.nodes {
        node.state.restore_proof(&proof);
        while node.state.poll_output().is_some() {}
    }
    let proposer = honest[0];
    let mut ops = Vec::new();
    for &j in &joiners {
        let key = sim.nodes[j].identity.clone();
        let action = Action::Add {
            member: key.node_id(),
            label: None,
        };
        ops.push(sim.run_op(proposer, action, Some(&key)));
    }
    for role in [Role::Withholder, Role::Conflicter, Role::Replayer] {
        if let Some(i) = by_role(role) {
            let member = sim.nodes[i].identity.node_id();
            ops.push(sim.run_op(proposer, Action::Remove { member }, None));
        }
    }
    for &j in joiners.iter().take(2) {
        let member = sim.nodes[j].identity.node_id();
        ops.push(sim.run_op(proposer, Action::Remove { member }, None));
        sim.nodes[j].live = false;
    }
    // A key rotation: the member's node restarts with the new key and must
    // learn the chain from its peers.
    let new_key = Arc::new(derive(config.seed, 2_000_000));
    let from = sim.nodes[rotated].identity.node_id();
    ops.push(sim.run_op(
        proposer,
        Action::Rotate {
            from,
            to: new_key.node_id(),
        },
        Some(&new_key),
    ));
    sim.nodes[rotated].live = false;
    sim.add_node(new_key, Role::Honest);
    let origin = sim.nodes[pardoned].identity.node_id();
    ops.push(sim.run_op(
        proposer,
        Action::Pardon {
            origin,
            above_seq: proof.highest_seq().unwrap_or(1),
        },
        None,
    ));
    // A few more rounds, so late nodes (the rotated key's) settle.
    for _ in 0..ceil_log2(n) + 2 {
        sim.round(None);
    }
    finish(sim, config, byzantine, ops)
}

fn finish(
    sim: Sim,
    config: GovernanceConfig,
    byzantine: usize,
    ops: Vec<OpOutcome>,
) -> GovernanceReport {
    let honest: Vec<&Node> = sim
        .nodes
        .iter()
        .filter(|n| n.live && n.role == Role::Honest)
        .collect();
    let heads: Vec<RosterHash> = honest
        .iter()
        .map(|n| n.state.ledger().state().head())
        .collect();
    let same_head = heads.windows(2).all(|w| w[0] == w[1]);
    let mut invalid_applied = 0;
    let mut chain_valid = true;
    for node in &sim.nodes {
        for op in node.state.ledger().chain() {
            if !sim.scheduled.contains(&op.id()) {
                invalid_applied += 1;
            }
        }
    }
    if let Some(node) = honest.first() {
        let chain: Vec<SignedOp> = node
            .state
            .ledger()
            .chain()
            .iter()
            .map(|op| op.op().clone())
            .collect();
        chain_valid = verify_chain(&sim.genesis, &chain).is_ok() && chain.len() == ops.len();
    }
    let (mut honest_banned, mut byzantine_banned) = (0, 0);
    let now = sim.now;
    for node in &honest {
        for other in &sim.nodes {
            if node.state.is_banned(&other.identity.node_id(), now) {
                if other.role == Role::Honest {
                    honest_banned += 1;
                } else {
                    byzantine_banned += 1;
                }
            }
        }
    }
    let bound = ceil_log2(config.nodes) + 2;
    let max_rounds_to_converge = ops.iter().filter_map(|op| op.rounds_to_converge).max();
    let within_bound = ops
        .iter()
        .all(|op| op.rounds_to_converge.is_some_and(|rounds| rounds <= bound));
    GovernanceReport {
        nodes: config.nodes,
        byzantine,
        seed: config.seed,
        ops,
        bound,
        max_rounds_to_converge,
        within_bound,
        same_head,
        chain_valid,
        invalid_applied,
        honest_banned,
        byzantine_banned,
        messages: sim.messages,
        bytes: sim.bytes,
    }
}
