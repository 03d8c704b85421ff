//! One trial: N nodes running the real protocol state machine over a simulated
//! network.
//!
//! The network model: each message is lost with the scenario's probability; a
//! node behind NAT accepts no inbound connection, so a dial to it fails (and the
//! dialler backs off) unless it opened the connection itself; during a partition,
//! messages between the two halves are lost; a departed node receives nothing.
//! Connections, once made, stay open while both ends live, as QUIC connections do.
//!
//! Memory: records live behind `Arc`, and one [`VerifiedCache`] is shared by every
//! node, so each unique signed record is decoded, verified and stored once however
//! many nodes hold it. The roster and member list are shared too.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidings_keys::{FederationId, Identity, NodeId, Roster};

use super::adversary::{self, Role};
use super::scenario::{Mode, Scenario, Workload};
use crate::proto::directory::{DirectoryConfig, VerifiedCache};
use crate::proto::event::{DirectoryChange, Output};
use crate::proto::membership::member_list;
use crate::proto::record::{Announcement, Record, RecordId, Specialist, VerifiedRecord};
use crate::proto::roster::{Genesis, Ledger};
use crate::proto::state::Command;
use crate::proto::state::{GossipConfig, State};
use crate::proto::wire::Message;

/// The simulated clock starts here (2024-01-01T00:00:00Z).
pub const START_MS: u64 = 1_704_067_200_000;

/// Identities and roster shared by every trial of a scenario.
#[derive(Debug)]
pub struct Federation {
    /// The federation id.
    pub id: FederationId,
    /// One identity per node.
    pub identities: Vec<Arc<Identity>>,
    /// The roster.
    pub roster: Arc<Roster>,
    /// The roster as a list.
    pub members: Arc<[NodeId]>,
    /// The roster chain at its genesis, cloned into each node (sharing it).
    pub ledger: Ledger,
    /// An identity outside the roster, for forgeries.
    pub outsider: Identity,
}

impl Federation {
    /// `nodes` identities derived from `seed`.
    pub fn new(nodes: usize, seed: u64) -> Self {
        let derive = |index: u64| {
            let mut hasher = blake3::Hasher::new_derive_key("tidings sim identity v1");
            hasher.update(&seed.to_le_bytes());
            hasher.update(&index.to_le_bytes());
            Identity::from_seed(hasher.finalize().as_bytes())
        };
        let identities: Vec<Arc<Identity>> =
            (0..nodes as u64).map(|i| Arc::new(derive(i))).collect();
        let roster: Roster = identities
            .iter()
            .map(|identity| identity.node_id())
            .collect();
        let members = member_list(&roster);
        let id = FederationId::from_name("simulation");
        // Beyond the size governance supports, the roster is fixed (see
        // `Genesis::fixed_membership`): the simulator's larger federations
        // exercise spreading, not governance.
        let genesis = Genesis::from_roster(id, &roster)
            .or_else(|_| Genesis::fixed_membership(id, &roster))
            .expect("a simulated roster is a genesis");
        Self {
            id,
            identities,
            ledger: Ledger::new(genesis),
            roster: Arc::new(roster),
            members,
            outsider: derive(u64::MAX),
        }
    }
}

struct Node {
    state: State,
    /// What survives a crash: the own record the node last made durable.
    disk: Option<VerifiedRecord>,
    /// Also on disk: the node was recovering its chain (as the real store's mark).
    disk_recovering: bool,
    role: Role,
    alive: bool,
    nat: bool,
    half: bool,
    back_at_round: u32,
    captured: Vec<Vec<u8>>,
    flood_chain: Option<VerifiedRecord>,
}

struct Envelope {
    from: usize,
    to: usize,
    bytes: Vec<u8>,
    /// Records (or pushed records) the frame carries.
    records: u32,
}

/// An event of event-driven mode, ordered by time then by creation.
struct Event {
    at: u64,
    sequence: u64,
    kind: EventKind,
}

enum EventKind {
    Timer(usize),
    Deliver(Envelope),
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

/// What was measured at the end of one round.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoundSample {
    /// Share of the target (node, record) pairs held.
    pub coverage: f64,
    /// Share of (honest node, equivocator) pairs quarantined.
    pub quarantine: f64,
    /// Forged records held by honest nodes (must stay 0).
    pub forged_held: u64,
}

/// Totals of one trial.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrialOutcome {
    /// The trial's seed.
    pub seed: u64,
    /// One sample per round, from round 1.
    pub samples: Vec<RoundSample>,
    /// First round with full coverage (with churn: once every node is back).
    pub converged_round: Option<u32>,
    /// First round free of the disturbance: the partition's first healed round,
    /// or the round in which the last departed node returned.
    pub disturbance_end: Option<u32>,
    /// First round with every equivocator quarantined at every live honest node.
    pub quarantined_round: Option<u32>,
    /// Messages sent until convergence (or the end).
    pub messages: u64,
    /// Bytes sent until convergence (or the end).
    pub bytes: u64,
    /// Bytes per exchange in the round after convergence (all-publish only).
    pub idle_bytes_per_exchange: Option<f64>,
    /// Forged records accepted by an honest node, over the whole trial.
    pub forged_accepted: u64,
    /// Honest nodes that banned at least one adversary, by adversary role.
    pub bans: BTreeMap<Role, u64>,
    /// Crashes at random moments.
    pub crashes: u64,
    /// (honest node, honest origin) pairs quarantined at the end: an honest node
    /// that forked its own chain (must be 0).
    pub honest_quarantined: u64,
    /// Honest nodes that stopped signing at the end because they met a record of
    /// their own key they did not remember signing (must be 0).
    pub honest_halted: u64,
    /// Record copies that honest nodes sent and a node received, until
    /// convergence (or the end).
    pub payload_copies: u64,
    /// Records a node accepted for the first time, until convergence (or the
    /// end).
    pub first_deliveries: u64,
    /// Records every live honest node had to come to hold (refreshes included).
    pub targets: u64,
    /// For each target record, the hops from its publisher to the last node
    /// that got it (at convergence, or the end).
    pub last_delivery_hops: Vec<u32>,
    /// Frames honest nodes dropped because an honest sender's work budget was
    /// spent (at the end; should be 0: honest peers are never treated as
    /// floods).
    pub frames_over_budget: u64,
}

impl TrialOutcome {
    /// Relative message redundancy: record copies received per first delivery,
    /// minus one (0 when every copy was news).
    pub fn redundancy(&self) -> Option<f64> {
        (self.first_deliveries > 0)
            .then(|| self.payload_copies as f64 / self.first_deliveries as f64 - 1.0)
    }
}

/// One running trial.
pub struct World<'a> {
    scenario: &'a Scenario,
    federation: &'a Federation,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    index: HashMap<NodeId, usize>,
    connections: HashSet<(u32, u32)>,
    now: u64,
    round: u32,
    targets: Vec<(NodeId, u64)>,
    /// Each target's index in `targets`, by origin.
    target_index: HashMap<NodeId, usize>,
    /// Hops from the publisher at which a node got a target: (node, target).
    hops: HashMap<(u32, u32), u32>,
    /// For each target, the largest of its hops so far.
    last_hop: Vec<u32>,
    payload_copies: u64,
    first_deliveries: u64,
    honest: Vec<usize>,
    equivocators: Vec<usize>,
    eclipse_target: usize,
    forged: HashMap<NodeId, HashSet<RecordId>>,
    messages: u64,
    bytes: u64,
    cache: Arc<VerifiedCache>,
    events: BinaryHeap<Reverse<Event>>,
    sequence: u64,
    timer_at: Vec<u64>,
    crashes: u64,
}

impl std::fmt::Debug for World<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("nodes", &self.nodes.len())
            .field("round", &self.round)
            .finish()
    }
}

fn specialist(index: usize, capability: &str) -> Specialist {
    Specialist {
        name: format!("agent-{index}"),
        capabilities: vec![capability.to_string()],
        endpoint: format!("https://node-{index}.sim/api"),
        meta: Default::default(),
    }
}

pub(super) fn announcement(index: usize, nat: bool, capability: &str) -> Announcement {
    Announcement {
        addrs: if nat {
            vec![]
        } else {
            vec![format!("10.0.{}.{}:7700", index / 256, index % 256)]
        },
        specialists: vec![specialist(index, capability)],
    }
}

/// Every output the state has for its driver, in order.
fn outputs_of(state: &mut State) -> Vec<Output> {
    std::iter::from_fn(|| state.poll_output()).collect()
}

fn assign_roles(scenario: &Scenario, rng: &mut ChaCha8Rng) -> Vec<Role> {
    let n = scenario.nodes;
    let shares = &scenario.adversaries;
    let kinds = [
        (Role::Silent, shares.silent),
        (Role::Withholding, shares.withholding),
        (Role::Forging, shares.forging),
        (Role::Equivocating, shares.equivocating),
        (Role::Flooding, shares.flooding),
        (Role::Replaying, shares.replaying),
        (Role::Eclipsing, shares.eclipsing),
    ];
    let mut roles = vec![Role::Honest; n];
    // Node 0 stays honest: it holds the announcement in the one-announcement workload.
    let mut order: Vec<usize> = (1..n).collect();
    order.shuffle(rng);
    let mut next = order.into_iter();
    for (role, share) in kinds {
        for _ in 0..(share * n as f64).round() as usize {
            if let Some(index) = next.next() {
                roles[index] = role;
            }
        }
    }
    roles
}

impl<'a> World<'a> {
    /// Sets up trial `seed` of `scenario`.
    pub fn new(scenario: &'a Scenario, federation: &'a Federation, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let roles = assign_roles(scenario, &mut rng);
        let cache = Arc::new(VerifiedCache::new(4 * scenario.nodes + 1024));
        let gossip = GossipConfig {
            interval_ms: scenario.interval_ms,
            fanout: scenario.fanout,
            spread: crate::proto::spread::SpreadConfig {
                neighbours: scenario.neighbours,
                ..Default::default()
            },
            audit_relays: false,
            ..GossipConfig::default()
        };
        let mut nodes = Vec::with_capacity(scenario.nodes);
        for (index, role) in roles.into_iter().enumerate() {
            // Event mode staggers first rounds across one interval.
            let offset = match scenario.mode {
                Mode::Rounds => 0,
                Mode::Events => rng.gen_range(0..scenario.interval_ms),
            };
            let mut state = State::new(
                federation.identities[index].clone(),
                DirectoryConfig::new(federation.id),
                gossip.clone(),
                federation.ledger.clone(),
                START_MS + offset,
            );
            state.set_verified_cache(cache.clone());
            state.assume_membership_known();
            nodes.push(Node {
                state,
                disk: None,
                disk_recovering: false,
                role,
                alive: true,
                nat: rng.gen_bool(scenario.nat_share),
                half: index % 2 == 1,
                back_at_round: 0,
                captured: Vec::new(),
                flood_chain: None,
            });
        }
        let cache_for_world = cache.clone();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.state.node_id(), i))
            .collect();
        let honest: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].role.is_honest())
            .collect();
        let equivocators = (0..nodes.len())
            .filter(|&i| nodes[i].role == Role::Equivocating)
            .collect();
        let eclipse_target = honest.get(1).copied().unwrap_or(0);
        let mut world = Self {
            scenario,
            federation,
            rng,
            nodes,
            index,
            connections: HashSet::new(),
            now: START_MS,
            round: 0,
            targets: Vec::new(),
            target_index: HashMap::new(),
            hops: HashMap::new(),
            last_hop: Vec::new(),
            payload_copies: 0,
            first_deliveries: 0,
            honest,
            equivocators,
            eclipse_target,
            forged: HashMap::new(),
            messages: 0,
            bytes: 0,
            cache: cache_for_world,
            events: BinaryHeap::new(),
            sequence: 0,
            timer_at: Vec::new(),
            crashes: 0,
        };
        world.publish_initial();
        world
    }

    fn publish_initial(&mut self) {
        let publishers: Vec<usize> = match self.scenario.workload {
            Workload::OneAnnouncement => vec![0],
            Workload::AllPublish => (0..self.nodes.len())
                .filter(|&i| self.nodes[i].role.publishes())
                .collect(),
        };
        for i in publishers {
            self.publish_target(i, "summarize");
        }
    }

    /// Node `i` publishes a new record, a target every live honest node must
    /// come to hold; its pushes go out at once.
    fn publish_target(&mut self, i: usize, capability: &str) {
        let nat = self.nodes[i].nat;
        let command = Command::Publish(announcement(i, nat, capability));
        self.nodes[i]
            .state
            .handle_command(command, self.now, &mut self.rng);
        let outputs = outputs_of(&mut self.nodes[i].state);
        let published = outputs.iter().find_map(|output| match output {
            Output::CommandResult(Ok(record)) => Some(record.clone()),
            _ => None,
        });
        let Some(record) = published else { return };
        if self.nodes[i].role.is_honest() {
            self.target_index
                .insert(record.origin(), self.targets.len());
            self.hops.insert((i as u32, self.targets.len() as u32), 0);
            self.last_hop.push(0);
            self.targets.push((record.origin(), record.seq()));
        }
        self.nodes[i].disk = Some(record);
        // The rumor pushes of the start are dropped in Bet 15's setting: the
        // announcement is only held, and spreads by exchanges.
        if self.scenario.neighbours > 0 {
            let mut queue = Vec::new();
            self.route(i, outputs, &mut queue);
            match self.scenario.mode {
                Mode::Rounds => self.deliver_all(queue),
                Mode::Events => {
                    let [low, high] = self.scenario.latency_ms;
                    for envelope in queue {
                        let at = self.now + self.rng.gen_range(low..=high);
                        self.push_event(at, EventKind::Deliver(envelope));
                    }
                    // Publishing stirs an idle node: its next round is sooner.
                    if !self.timer_at.is_empty() {
                        self.schedule_timer(i);
                    }
                }
            }
        }
    }

    /// The refreshes due at the start of this round: node `i` publishes in the
    /// rounds where `(i + round)` is a multiple of `every_rounds`.
    fn refresh_round(&mut self) {
        let Some(refresh) = self.scenario.refresh else {
            return;
        };
        if self.round > refresh.until_round {
            return;
        }
        let every = refresh.every_rounds as usize;
        let round = self.round as usize;
        let capability = format!("round-{round}");
        // The nodes due: i ≡ -round (mod every).
        let first = (every - round % every) % every;
        for i in (first..self.nodes.len()).step_by(every) {
            if self.nodes[i].alive && self.nodes[i].role.is_honest() {
                self.publish_target(i, &capability);
            }
        }
    }

    /// Runs the trial to convergence (or `max_rounds`) and reports.
    pub fn run(mut self, seed: u64) -> TrialOutcome {
        let mut outcome = TrialOutcome {
            seed,
            ..TrialOutcome::default()
        };
        let stop_after_quarantine = !self.equivocators.is_empty();
        for round in 1..=self.scenario.max_rounds {
            self.round = round;
            self.apply_churn();
            if self.scenario.mode == Mode::Events {
                // Refreshes happen at the start of the interval.
                self.now = START_MS + u64::from(round - 1) * self.scenario.interval_ms;
            }
            self.refresh_round();
            match self.scenario.mode {
                Mode::Rounds => self.run_round(),
                Mode::Events => self.run_interval(),
            }
            let sample = self.sample();
            outcome.forged_accepted += sample.forged_held;
            outcome.samples.push(sample);
            if self.nodes.iter().any(|node| !node.alive)
                || self
                    .scenario
                    .churn
                    .is_some_and(|churn| round <= churn.until_round)
                || self
                    .scenario
                    .crashes
                    .is_some_and(|crashes| round <= crashes.until_round)
            {
                outcome.disturbance_end = Some(round + 1);
            }
            let refreshed = self
                .scenario
                .refresh
                .is_none_or(|refresh| round > refresh.until_round);
            if outcome.converged_round.is_none()
                && sample.coverage >= 1.0
                && self.churn_over()
                && refreshed
            {
                outcome.converged_round = Some(round);
                self.take_counts(&mut outcome);
            }
            if outcome.quarantined_round.is_none()
                && stop_after_quarantine
                && sample.quarantine >= 1.0
            {
                outcome.quarantined_round = Some(round);
            }
            let done = outcome.converged_round.is_some()
                && (!stop_after_quarantine || outcome.quarantined_round.is_some())
                && self.churn_over();
            if done {
                break;
            }
        }
        if outcome.converged_round.is_none() {
            self.take_counts(&mut outcome);
        }
        if outcome.converged_round.is_some()
            && self.scenario.workload == Workload::AllPublish
            && self.equivocators.is_empty()
        {
            outcome.idle_bytes_per_exchange = Some(self.idle_round_bytes());
        }
        outcome.bans = self.bans();
        outcome.frames_over_budget = self.honest_frames_over_budget();
        outcome.crashes = self.crashes;
        outcome.honest_quarantined = self.honest_quarantined();
        outcome.honest_halted = self
            .honest
            .iter()
            .filter(|&&i| {
                matches!(
                    self.nodes[i].state.chain_status(),
                    crate::proto::event::ChainStatus::Halted(_)
                )
            })
            .count() as u64;
        if let Some(partition) = self.scenario.partition {
            outcome.disturbance_end = Some(partition.heal_round);
        } else if let Some(refresh) = self.scenario.refresh {
            outcome.disturbance_end = Some(refresh.until_round + 1);
        }
        outcome
    }

    /// The counts reported at convergence (or at the end).
    fn take_counts(&self, outcome: &mut TrialOutcome) {
        outcome.messages = self.messages;
        outcome.bytes = self.bytes;
        outcome.payload_copies = self.payload_copies;
        outcome.first_deliveries = self.first_deliveries;
        outcome.targets = self.targets.len() as u64;
        outcome.last_delivery_hops = self.last_hop.clone();
    }

    /// Node `to` took `record` from `from`: a first delivery, and for a target
    /// one hop further than `from` had it.
    fn note_delivery(&mut self, from: usize, to: usize, record: &VerifiedRecord) {
        self.first_deliveries += 1;
        let Some(&target) = self.target_index.get(&record.origin()) else {
            return;
        };
        if record.seq() < self.targets[target].1 {
            return;
        }
        let key = (to as u32, target as u32);
        if self.hops.contains_key(&key) {
            return;
        }
        if let Some(&hop) = self.hops.get(&(from as u32, target as u32)) {
            self.hops.insert(key, hop + 1);
            self.last_hop[target] = self.last_hop[target].max(hop + 1);
        }
    }

    fn churn_over(&self) -> bool {
        let last = self
            .scenario
            .churn
            .map(|churn| churn.until_round)
            .max(self.scenario.crashes.map(|crashes| crashes.until_round));
        match last {
            None => true,
            Some(last) => self.round > last && self.nodes.iter().all(|node| node.alive),
        }
    }

    /// Frames from honest senders that honest nodes dropped for want of budget.
    /// The state counts flooded frames per node, not per sender: in a scenario
    /// with adversaries the count includes theirs, so it is reported only
    /// without them.
    fn honest_frames_over_budget(&self) -> u64 {
        if self.scenario.adversaries.total() > 0.0 {
            return 0;
        }
        self.honest
            .iter()
            .map(|&i| self.nodes[i].state.counters().frames_flooded)
            .sum()
    }

    /// (honest node, honest origin) pairs with the origin quarantined.
    fn honest_quarantined(&self) -> u64 {
        let mut count = 0;
        for &i in &self.honest {
            count += self.nodes[i]
                .state
                .directory()
                .quarantined()
                .filter(|(origin, _)| {
                    self.index
                        .get(*origin)
                        .is_some_and(|&j| self.nodes[j].role.is_honest())
                })
                .count() as u64;
        }
        count
    }

    /// One more round after convergence: bytes per opened exchange.
    fn idle_round_bytes(&mut self) -> f64 {
        // One round first: announcements of the last records spread (sent at
        // the next timer) are not idle traffic.
        self.next_round();
        let (bytes, opened_before) = (self.bytes, self.opened());
        self.next_round();
        let opened = (self.opened() - opened_before).max(1);
        (self.bytes - bytes) as f64 / opened as f64
    }

    fn next_round(&mut self) {
        self.round += 1;
        match self.scenario.mode {
            Mode::Rounds => self.run_round(),
            Mode::Events => self.run_interval(),
        }
    }

    fn opened(&self) -> u64 {
        self.nodes
            .iter()
            .map(|node| node.state.counters().exchanges_opened)
            .sum()
    }

    fn bans(&self) -> BTreeMap<Role, u64> {
        let mut bans = BTreeMap::new();
        for &i in &self.honest {
            let mut seen = HashSet::new();
            for node in &self.nodes {
                if self.nodes[i]
                    .state
                    .is_banned(&node.state.node_id(), self.now)
                    && seen.insert(node.role)
                {
                    *bans.entry(node.role).or_insert(0) += 1;
                }
            }
        }
        bans
    }

    fn apply_churn(&mut self) {
        let round = self.round;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive && self.nodes[i].back_at_round <= round {
                self.nodes[i].alive = true;
                if !self.timer_at.is_empty() {
                    self.schedule_timer(i);
                }
            }
        }
        let Some(churn) = self.scenario.churn else {
            return;
        };
        if round > churn.until_round {
            return;
        }
        for i in 1..self.nodes.len() {
            if !self.nodes[i].alive
                || !self.nodes[i].role.is_honest()
                || !self.rng.gen_bool(churn.leave_per_round)
            {
                continue;
            }
            self.nodes[i].alive = false;
            self.nodes[i].back_at_round = round + churn.away_rounds;
            self.connections
                .retain(|&(a, b)| a as usize != i && b as usize != i);
            if self.rng.gen_bool(0.5) {
                self.crash(i);
            }
        }
    }

    /// A crash loses the in-memory directory; the own record the node made durable
    /// survives on its disk, as on a real node, unless the crash destroyed the
    /// disk too: then the node comes back with nothing and recovers its chain from
    /// its peers before it signs.
    fn crash(&mut self, i: usize) {
        let disk_lost = self
            .scenario
            .crashes
            .is_some_and(|crashes| self.rng.gen_bool(crashes.disk_loss));
        if disk_lost {
            self.nodes[i].disk = None;
            self.nodes[i].disk_recovering = true;
        }
        let recovering = self.nodes[i].disk_recovering;
        let own = self.nodes[i].disk.clone();
        let announcement = self.nodes[i].state.announcement().cloned();
        let config = self.nodes[i].state.config().clone();
        let mut state = State::new(
            self.federation.identities[i].clone(),
            DirectoryConfig::new(self.federation.id),
            config,
            self.federation.ledger.clone(),
            self.now,
        );
        state.set_verified_cache(self.cache.clone());
        state.assume_membership_known();
        if let Some(record) = own {
            state.restore_own(record, self.now);
        }
        if recovering {
            state.mark_lost(self.now);
            if let Some(announcement) = announcement {
                state.set_announcement(announcement);
            }
        }
        self.nodes[i].state = state;
    }

    fn run_round(&mut self) {
        self.now = START_MS + u64::from(self.round) * self.scenario.interval_ms;
        let mut queue = Vec::new();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive || self.nodes[i].role == Role::Silent {
                continue;
            }
            self.tick(i, &mut queue);
        }
        self.deliver_all(queue);
    }

    /// Node `i`'s timer fires: the adversary's injections, a republication where
    /// the scenario asks for one, then the state's own work.
    fn tick(&mut self, i: usize, queue: &mut Vec<Envelope>) {
        self.inject(i, queue);
        self.republish(i, queue);
        if !self.nodes[i].alive {
            return;
        }
        self.nodes[i].state.handle_timeout(self.now, &mut self.rng);
        let outputs = outputs_of(&mut self.nodes[i].state);
        self.route(i, outputs, queue);
    }

    fn republish(&mut self, i: usize, queue: &mut Vec<Envelope>) {
        let Some(crashes) = self.scenario.crashes else {
            return;
        };
        if self.round > crashes.until_round
            || !self.nodes[i].role.is_honest()
            || !self.rng.gen_bool(crashes.republish_per_round)
        {
            return;
        }
        let nat = self.nodes[i].nat;
        let capability = format!("round-{}", self.round);
        let command = Command::Publish(announcement(i, nat, &capability));
        self.nodes[i]
            .state
            .handle_command(command, self.now, &mut self.rng);
        let outputs = outputs_of(&mut self.nodes[i].state);
        self.route(i, outputs, queue);
    }

    /// Whether node `i` dies just before acting on its next output.
    fn crashes_now(&mut self, i: usize) -> bool {
        let Some(crashes) = self.scenario.crashes else {
            return false;
        };
        self.round <= crashes.until_round
            && self.nodes[i].alive
            && self.nodes[i].role.is_honest()
            && self.rng.gen_bool(crashes.per_output)
    }

    /// Node `i` dies now: it is down for a while and comes back from its disk.
    fn kill(&mut self, i: usize) {
        let away = self.scenario.crashes.map_or(1, |c| c.away_rounds);
        self.crashes += 1;
        self.nodes[i].alive = false;
        self.nodes[i].back_at_round = self.round + away;
        self.connections
            .retain(|&(a, b)| a as usize != i && b as usize != i);
        self.crash(i);
    }

    /// Delivers in lockstep steps until the network is quiet.
    fn deliver_all(&mut self, mut queue: Vec<Envelope>) {
        for _ in 0..64 {
            if queue.is_empty() {
                return;
            }
            let mut next = Vec::new();
            for envelope in queue {
                self.deliver(envelope, &mut next);
            }
            queue = next;
        }
    }

    /// Acts on node `from`'s outputs in order, as its driver would: a
    /// [`Output::Persist`] reaches its disk before the outputs after it (or, with
    /// the contract switched off, only once they were all sent); a crash may strike
    /// before any output, and then the rest are lost.
    fn route(&mut self, from: usize, outputs: Vec<Output>, queue: &mut Vec<Envelope>) {
        let durable_first = self
            .scenario
            .crashes
            .is_none_or(|crashes| crashes.durable_before_send);
        let mut deferred = None;
        for output in outputs {
            if self.crashes_now(from) {
                self.kill(from);
                return;
            }
            if let Output::Persist { record, jump_owed } = &output {
                if durable_first {
                    self.persisted(from, record.clone(), *jump_owed);
                } else {
                    deferred = Some((record.clone(), *jump_owed));
                }
                continue;
            }
            let Output::Send { to, message } = output else {
                continue;
            };
            let Some(&to) = self.index.get(&to) else {
                continue;
            };
            if self.nodes[from]
                .role
                .lets_out(&message, to == self.eclipse_target)
            {
                self.enqueue(from, to, &message, queue);
            }
        }
        if let Some((record, jump_owed)) = deferred {
            if self.crashes_now(from) {
                self.kill(from);
                return;
            }
            self.persisted(from, record, jump_owed);
        }
    }

    /// Node `i` made `record` durable, and whether it still owes a jump of its
    /// chain (the mark a restart reads to recover again).
    fn persisted(&mut self, i: usize, record: VerifiedRecord, jump_owed: bool) {
        let node = &mut self.nodes[i];
        node.disk = Some(record);
        node.disk_recovering = jump_owed;
    }

    fn enqueue(&mut self, from: usize, to: usize, message: &Message, queue: &mut Vec<Envelope>) {
        let bytes = message.encode();
        self.messages += 1;
        self.bytes += bytes.len() as u64;
        let records = match message {
            Message::Records(records) | Message::Push(records) => records.len() as u32,
            _ => 0,
        };
        queue.push(Envelope {
            from,
            to,
            bytes,
            records,
        });
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.connections
            .contains(&(a.min(b) as u32, a.max(b) as u32))
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.scenario.partition.is_some_and(|partition| {
            (partition.from_round..partition.heal_round).contains(&self.round)
                && self.nodes[a].half != self.nodes[b].half
        })
    }

    fn deliver(&mut self, envelope: Envelope, queue: &mut Vec<Envelope>) {
        let Envelope {
            from,
            to,
            bytes,
            records,
        } = envelope;
        let reachable = self.nodes[to].alive && (!self.nodes[to].nat || self.connected(from, to));
        if !reachable && !self.connected(from, to) {
            let peer = self.nodes[to].state.node_id();
            self.nodes[from]
                .state
                .handle_dial_failed(peer, self.now, &mut self.rng);
            return;
        }
        if !self.nodes[to].alive
            || self.partitioned(from, to)
            || self.rng.gen_bool(self.scenario.loss)
        {
            return;
        }
        self.connections
            .insert((from.min(to) as u32, from.max(to) as u32));
        if self.nodes[to].role == Role::Silent {
            return;
        }
        if self.nodes[from].role.is_honest() {
            self.payload_copies += u64::from(records);
        }
        let sender = self.nodes[from].state.node_id();
        self.nodes[to]
            .state
            .handle_frame(sender, &bytes, self.now, &mut self.rng);
        let outputs = outputs_of(&mut self.nodes[to].state);
        for output in &outputs {
            if let Output::Change(
                DirectoryChange::Added(record) | DirectoryChange::Updated { record, .. },
            ) = output
            {
                self.note_delivery(from, to, record);
            }
        }
        self.route(to, outputs, queue);
    }

    fn random_peers(&mut self, me: usize, count: usize) -> Vec<usize> {
        (0..count)
            .map(|_| self.rng.gen_range(0..self.nodes.len()))
            .filter(|&peer| peer != me)
            .collect()
    }

    /// What adversary `i` adds this round.
    fn inject(&mut self, i: usize, queue: &mut Vec<Envelope>) {
        match self.nodes[i].role {
            Role::Forging => {
                let forgeries = self.forge(i);
                for peer in self.random_peers(i, self.scenario.fanout.max(2)) {
                    self.enqueue(i, peer, &Message::Records(forgeries.clone()), queue);
                }
            }
            Role::Equivocating => {
                if let Some(fork) = self.fork(i) {
                    for peer in self.random_peers(i, 2) {
                        self.enqueue(i, peer, &Message::Records(vec![fork.clone()]), queue);
                    }
                }
            }
            Role::Flooding => self.flood(i, queue),
            Role::Replaying => {
                // Keep copies of valid records as they are now; replay them later,
                // when their origins have moved on.
                if self.nodes[i].captured.len() < 64 {
                    let more: Vec<Vec<u8>> = self.nodes[i]
                        .state
                        .directory()
                        .entries()
                        .take(8)
                        .map(|entry| entry.record.wire_bytes().to_vec())
                        .collect();
                    self.nodes[i].captured.extend(more);
                }
                let captured = self.nodes[i].captured.clone();
                if !captured.is_empty() {
                    for peer in self.random_peers(i, self.scenario.fanout) {
                        self.enqueue(i, peer, &Message::Records(captured.clone()), queue);
                    }
                }
            }
            Role::Eclipsing => {
                let target = self.eclipse_target;
                let opening =
                    crate::proto::gossip::opening(self.nodes[i].state.directory(), self.now);
                for _ in 0..adversary::ECLIPSE_FRAMES {
                    self.enqueue(i, target, &opening, queue);
                }
                let forgeries = self.forge(i);
                self.enqueue(i, target, &Message::Records(forgeries), queue);
            }
            Role::Honest | Role::Silent | Role::Withholding => {}
        }
    }

    /// Three forgeries: a record claiming an honest origin signed by `i`, a record
    /// by an unadmitted key, and a tampered copy of an honest record.
    fn forge(&mut self, i: usize) -> Vec<Vec<u8>> {
        let victim = self.honest[self.rng.gen_range(0..self.honest.len())];
        let victim_id = self.nodes[victim].state.node_id();
        let claim = Record::first(
            self.federation.id,
            victim_id,
            announcement(victim, false, "steal-credentials"),
            self.now,
            crate::proto::limits::DEFAULT_TTL_MS,
        );
        let mut claim = claim;
        claim.seq = 1_000 + u64::from(self.round);
        claim.prev = RecordId([7; 32]);
        let bytes = claim.encode();
        let signature = self.federation.identities[i].sign(
            tidings_keys::Domain::Record,
            &self.federation.id,
            &bytes,
        );
        let impersonation = crate::proto::record::SignedRecord::new(bytes, signature);
        self.forged
            .entry(victim_id)
            .or_default()
            .insert(impersonation.id());
        let mut forgeries = vec![impersonation.encode()];
        let outsider = Record::first(
            self.federation.id,
            self.federation.outsider.node_id(),
            announcement(0, false, "summarize"),
            self.now,
            crate::proto::limits::DEFAULT_TTL_MS,
        );
        if let Ok(record) = VerifiedRecord::sign(&self.federation.outsider, outsider) {
            forgeries.push(record.wire_bytes().to_vec());
        }
        if let Some(entry) = self.nodes[i].state.directory().entries().next() {
            let mut tampered = entry.record.wire_bytes().to_vec();
            let middle = tampered.len() / 2;
            tampered[middle] ^= 0x20;
            forgeries.push(tampered);
        }
        forgeries
    }

    /// The second history of equivocator `i`: same seq as its record, other contents.
    fn fork(&mut self, i: usize) -> Option<Vec<u8>> {
        let own = self.nodes[i].state.own_record()?.record().clone();
        let mut fork = own;
        fork.specialists = vec![specialist(i, "exfiltrate")];
        let record = VerifiedRecord::sign(&self.federation.identities[i], fork).ok()?;
        Some(record.wire_bytes().to_vec())
    }

    fn flood(&mut self, i: usize, queue: &mut Vec<Envelope>) {
        let mut records = Vec::new();
        for _ in 0..adversary::FLOOD_RECORDS {
            let previous = self.nodes[i]
                .flood_chain
                .clone()
                .or_else(|| self.nodes[i].state.own_record().cloned());
            let Some(previous) = previous else { break };
            let next = Record::next(
                &previous,
                announcement(i, false, "spam"),
                self.now,
                crate::proto::limits::DEFAULT_TTL_MS,
            );
            let Ok(record) = VerifiedRecord::sign(&self.federation.identities[i], next) else {
                break;
            };
            records.push(record.wire_bytes().to_vec());
            self.nodes[i].flood_chain = Some(record);
        }
        for peer in self.random_peers(i, 5) {
            self.enqueue(i, peer, &Message::Records(records.clone()), queue);
        }
        let opening = crate::proto::gossip::opening(self.nodes[i].state.directory(), self.now);
        for victim in self.random_peers(i, adversary::FLOOD_VICTIMS) {
            for _ in 0..adversary::FLOOD_FRAMES {
                self.enqueue(i, victim, &opening, queue);
            }
        }
    }

    fn push_event(&mut self, at: u64, kind: EventKind) {
        self.sequence += 1;
        self.events.push(Reverse(Event {
            at,
            sequence: self.sequence,
            kind,
        }));
    }

    fn schedule_timer(&mut self, i: usize) {
        let at = self.nodes[i].state.poll_timeout().max(self.now);
        self.timer_at[i] = at;
        self.push_event(at, EventKind::Timer(i));
    }

    /// Event mode: runs every event up to the end of the current interval.
    fn run_interval(&mut self) {
        let end = START_MS + u64::from(self.round) * self.scenario.interval_ms;
        if self.timer_at.is_empty() {
            self.timer_at = vec![u64::MAX; self.nodes.len()];
            for i in 0..self.nodes.len() {
                if self.nodes[i].role != Role::Silent {
                    self.schedule_timer(i);
                }
            }
        }
        while self
            .events
            .peek()
            .is_some_and(|Reverse(event)| event.at <= end)
        {
            let Some(Reverse(event)) = self.events.pop() else {
                break;
            };
            self.now = event.at;
            let mut queue = Vec::new();
            match event.kind {
                EventKind::Timer(i) => {
                    if self.timer_at[i] != event.at || !self.nodes[i].alive {
                        continue;
                    }
                    self.tick(i, &mut queue);
                    self.schedule_timer(i);
                }
                EventKind::Deliver(envelope) => self.deliver(envelope, &mut queue),
            }
            let [low, high] = self.scenario.latency_ms;
            for envelope in queue {
                let at = self.now + self.rng.gen_range(low..=high);
                self.push_event(at, EventKind::Deliver(envelope));
            }
        }
        self.now = end;
    }

    /// Coverage, quarantine and forgery counts over live honest nodes.
    fn sample(&self) -> RoundSample {
        let live: Vec<&Node> = self
            .honest
            .iter()
            .map(|&i| &self.nodes[i])
            .filter(|node| node.alive)
            .collect();
        let mut held = 0u64;
        let mut quarantined = 0u64;
        let mut forged_held = 0u64;
        for node in &live {
            let directory = node.state.directory();
            held += self
                .targets
                .iter()
                .filter(|(origin, seq)| {
                    directory
                        .entry(origin)
                        .is_some_and(|entry| entry.record.seq() >= *seq)
                })
                .count() as u64;
            quarantined += self
                .equivocators
                .iter()
                .filter(|&&e| directory.is_quarantined(&self.nodes[e].state.node_id()))
                .count() as u64;
            for (origin, ids) in &self.forged {
                if directory
                    .entry(origin)
                    .is_some_and(|entry| ids.contains(&entry.record.id()))
                {
                    forged_held += 1;
                }
            }
        }
        let ratio = |part: u64, whole: usize| {
            if whole == 0 {
                1.0
            } else {
                part as f64 / whole as f64
            }
        };
        RoundSample {
            coverage: ratio(held, live.len() * self.targets.len()),
            quarantine: ratio(quarantined, live.len() * self.equivocators.len()),
            forged_held,
        }
    }
}
