//! Scenarios: what a simulation runs, as TOML or built in.
//!
//! A scenario fixes the federation size, the gossip parameters, the link model
//! (loss, latency, NAT, partitions, churn), the adversaries and the workload. Every
//! field has a default, so a scenario file states only what it changes:
//!
//! ```toml
//! name = "loss"
//! nodes = 1000
//! loss = 0.10
//! ```

use serde::{Deserialize, Serialize};

/// How time advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Synchronous rounds (Bet 15's setting): every node opens its exchanges at the
    /// start of a round, messages move in lockstep steps, and the round ends when
    /// the network is quiet.
    Rounds,
    /// Event-driven time: every message takes a random latency and every node keeps
    /// its own timer, with its first round at a random offset.
    Events,
}

/// Which engine runs the trials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// The state machine, unless a trial would not fit in memory and the
    /// compact engine models the scenario (see [`super::engine_for`]).
    #[default]
    Auto,
    /// Every node runs the real protocol state machine ([`super::world`]).
    StateMachine,
    /// Anti-entropy over compact shared holdings ([`super::model`]).
    Compact,
}

impl Engine {
    /// The name used in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Auto => "auto",
            Engine::StateMachine => "state-machine",
            Engine::Compact => "compact",
        }
    }

    /// The engine named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Engine::Auto, Engine::StateMachine, Engine::Compact]
            .into_iter()
            .find(|engine| engine.name() == name)
    }
}

/// What the honest nodes publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// One node holds a new announcement; the others know the membership only.
    /// Converged when every live honest node holds it.
    OneAnnouncement,
    /// Every node publishes its own record at the start. Converged when every live
    /// honest node holds the record of every honest node.
    AllPublish,
}

/// Shares of the members that are adversaries of each kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdversaryShares {
    /// Never answer, never send.
    pub silent: f64,
    /// Take part in digests but never deliver a record.
    pub withholding: f64,
    /// Send records signed for other origins, from unadmitted keys, or tampered.
    pub forging: f64,
    /// Sign two histories and show each to half the peers.
    pub equivocating: f64,
    /// Publish at their maximum rate and flood peers with frames.
    pub flooding: f64,
    /// Resend stale records.
    pub replaying: f64,
    /// Collude against one honest target: lie to it and never deliver.
    pub eclipsing: f64,
}

impl AdversaryShares {
    /// A third of the members, spread over every kind of adversary.
    pub fn mixed_third() -> Self {
        Self {
            silent: 0.05,
            withholding: 0.05,
            forging: 0.05,
            equivocating: 0.05,
            flooding: 0.04,
            replaying: 0.04,
            eclipsing: 0.05,
        }
    }

    /// Sum of all shares.
    pub fn total(&self) -> f64 {
        self.silent
            + self.withholding
            + self.forging
            + self.equivocating
            + self.flooding
            + self.replaying
            + self.eclipsing
    }
}

/// Two halves that cannot reach each other between two rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// First round of the partition.
    pub from_round: u32,
    /// First round after it heals.
    pub heal_round: u32,
}

/// Nodes leaving and returning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Share of live honest nodes that leave in each round (half of them crash and
    /// lose their in-memory state, half leave gracefully and keep it).
    pub leave_per_round: f64,
    /// Rounds a departed node stays away.
    pub away_rounds: u32,
    /// Last round in which nodes leave.
    pub until_round: u32,
}

/// Crashes at random moments, as a SIGKILL would strike a real node: while a node
/// acts on its outputs, each output has a chance of being the moment it dies.
/// What it made durable survives (the durability contract of
/// [`Output::Persist`](crate::proto::event::Output::Persist)); everything else is
/// lost, and the node comes back from its disk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crashes {
    /// Probability that an honest node dies just before acting on one output.
    pub per_output: f64,
    /// Rounds a crashed node stays down.
    pub away_rounds: u32,
    /// Last round in which nodes crash.
    pub until_round: u32,
    /// Probability that a live honest node publishes a new record in a round.
    pub republish_per_round: f64,
    /// Probability that a crash also destroys the node's disk: it comes back with
    /// nothing and recovers its chain from its peers.
    #[serde(default)]
    pub disk_loss: f64,
    /// Whether the simulated driver keeps the durability contract. `false` makes
    /// the own record durable only after the outputs that follow it were sent,
    /// as the first version of the node did: it shows what the contract prevents.
    pub durable_before_send: bool,
}

/// Records kept alive: every honest node publishes a new record of its own
/// every `every_rounds` rounds, the nodes taking turns (with a 300 s lifetime
/// refreshed at half of it and a 1 s interval, every 150 rounds), from round 1
/// to `until_round`. The trial converges once every refresh is everywhere;
/// rounds are counted from the round after the last refresh, and messages and
/// bytes over the whole trial give the steady cost of the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    /// Rounds between two records of one node.
    pub every_rounds: u32,
    /// Last round with refreshes.
    pub until_round: u32,
}

/// A simulation to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Federation size.
    pub nodes: usize,
    /// Independent trials.
    pub trials: usize,
    /// Master seed; each trial derives its own.
    pub seed: u64,
    /// How time advances.
    pub mode: Mode,
    /// Exchanges per node per round.
    pub fanout: usize,
    /// Neighbours each node chooses for spreading new records at once (0:
    /// anti-entropy only, as in Bet 15; see [`crate::proto::spread`]).
    #[serde(alias = "rumor_fanout")]
    pub neighbours: usize,
    /// Rounds after which a trial that has not converged is called a failure.
    pub max_rounds: u32,
    /// What is published.
    pub workload: Workload,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Message latency range in milliseconds (event mode).
    pub latency_ms: [u64; 2],
    /// Round interval in milliseconds.
    pub interval_ms: u64,
    /// Share of nodes that accept no inbound connection.
    pub nat_share: f64,
    /// A partition into two halves, if any.
    pub partition: Option<Partition>,
    /// Churn, if any.
    pub churn: Option<Churn>,
    /// Crashes at random moments, if any.
    pub crashes: Option<Crashes>,
    /// Refreshes at a steady rate, if any.
    pub refresh: Option<Refresh>,
    /// Adversaries.
    pub adversaries: AdversaryShares,
    /// The engine.
    pub engine: Engine,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "custom".into(),
            description: String::new(),
            nodes: 10,
            trials: 20,
            seed: 15,
            mode: Mode::Rounds,
            fanout: 2,
            neighbours: 0,
            max_rounds: 64,
            workload: Workload::OneAnnouncement,
            loss: 0.0,
            latency_ms: [10, 60],
            interval_ms: 1000,
            nat_share: 0.0,
            partition: None,
            churn: None,
            crashes: None,
            refresh: None,
            adversaries: AdversaryShares::default(),
            engine: Engine::Auto,
        }
    }
}

/// Why a scenario cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    /// Not valid TOML of the scenario shape.
    #[error("invalid scenario: {0}")]
    Syntax(String),
    /// A value out of range.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

impl Scenario {
    /// Parses a scenario file.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|error| ScenarioError::Syntax(error.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |message: &str| Err(ScenarioError::Invalid(message.to_string()));
        if !(2..=200_000).contains(&self.nodes) {
            return invalid("nodes must be between 2 and 200000");
        }
        if self.trials == 0 || self.trials > 10_000 {
            return invalid("trials must be between 1 and 10000");
        }
        if self.fanout == 0 || self.fanout >= self.nodes {
            return invalid("fanout must be at least 1 and below the number of nodes");
        }
        if !(0.0..1.0).contains(&self.loss) || !(0.0..1.0).contains(&self.nat_share) {
            return invalid("loss and nat_share must be in [0, 1)");
        }
        if self.adversaries.total() >= 0.5 {
            return invalid("adversaries must be less than half of the members");
        }
        if self.latency_ms[0] > self.latency_ms[1] || self.interval_ms == 0 {
            return invalid("latency_ms must be [low, high] and interval_ms above zero");
        }
        if self.neighbours > 64 {
            return invalid("neighbours must be at most 64");
        }
        if self.max_rounds == 0 || self.max_rounds > 100_000 {
            return invalid("max_rounds must be between 1 and 100000");
        }
        if let Some(partition) = self.partition {
            if partition.heal_round <= partition.from_round {
                return invalid("a partition must heal after it starts");
            }
        }
        if let Some(churn) = self.churn {
            if !(0.0..0.5).contains(&churn.leave_per_round) {
                return invalid("churn.leave_per_round must be in [0, 0.5)");
            }
        }
        if let Some(refresh) = self.refresh {
            if refresh.every_rounds == 0 || refresh.until_round >= self.max_rounds {
                return invalid(
                    "refresh.every_rounds must be at least 1 and refresh.until_round below max_rounds",
                );
            }
        }
        if let Some(crashes) = self.crashes {
            if !(0.0..0.5).contains(&crashes.per_output)
                || !(0.0..=1.0).contains(&crashes.republish_per_round)
                || !(0.0..=1.0).contains(&crashes.disk_loss)
            {
                return invalid(
                    "crashes.per_output must be in [0, 0.5), republish_per_round and disk_loss in [0, 1]",
                );
            }
        }
        Ok(())
    }

    /// The bound of Bet 15: ceil(log2 N).
    pub fn log2_bound(&self) -> u32 {
        ceil_log2(self.nodes)
    }
}

/// ceil(log2 n) for n >= 1.
pub fn ceil_log2(n: usize) -> u32 {
    usize::BITS - n.saturating_sub(1).leading_zeros()
}

/// The built-in scenarios, by name.
pub fn builtin() -> Vec<Scenario> {
    let base = Scenario::default;
    vec![
        Scenario {
            name: "bet15".into(),
            description: "Bet 15 reproduced: N=10, fanout 2, one new announcement, 20 trials"
                .into(),
            ..base()
        },
        Scenario {
            name: "scale-1000".into(),
            description: "Bet 15's experiment at N=1,000".into(),
            nodes: 1000,
            ..base()
        },
        Scenario {
            name: "scale-10000".into(),
            description: "Bet 15's experiment at N=10,000".into(),
            nodes: 10_000,
            trials: 5,
            ..base()
        },
        Scenario {
            name: "loss".into(),
            description: "10% message loss at N=1,000".into(),
            nodes: 1000,
            loss: 0.10,
            ..base()
        },
        Scenario {
            name: "nat".into(),
            description: "20% of nodes accept no inbound connection; every node publishes".into(),
            nodes: 1000,
            trials: 5,
            nat_share: 0.20,
            workload: Workload::AllPublish,
            ..base()
        },
        Scenario {
            name: "partition".into(),
            description: "two halves partitioned for 20 rounds, then healed; every node publishes"
                .into(),
            nodes: 1000,
            trials: 5,
            workload: Workload::AllPublish,
            partition: Some(Partition {
                from_round: 1,
                heal_round: 21,
            }),
            ..base()
        },
        Scenario {
            name: "churn".into(),
            description: "2% of nodes leave each round for 10 rounds (half crash), then return"
                .into(),
            nodes: 1000,
            trials: 5,
            workload: Workload::AllPublish,
            churn: Some(Churn {
                leave_per_round: 0.02,
                away_rounds: 5,
                until_round: 10,
            }),
            ..base()
        },
        Scenario {
            name: "crashes".into(),
            description: "nodes killed at random moments while they publish (every node \
                          publishes, then republishes); none may fork its own chain"
                .into(),
            nodes: 200,
            trials: 5,
            workload: Workload::AllPublish,
            crashes: Some(Crashes {
                per_output: 0.002,
                away_rounds: 3,
                until_round: 30,
                republish_per_round: 0.1,
                disk_loss: 0.2,
                durable_before_send: true,
            }),
            neighbours: 5,
            ..base()
        },
        Scenario {
            name: "events".into(),
            description: "event-driven time with 10-60 ms latency and neighbour spreading, N=1,000"
                .into(),
            nodes: 1000,
            mode: Mode::Events,
            neighbours: 5,
            ..base()
        },
        Scenario {
            name: "refresh".into(),
            description:
                "records kept alive: each node refreshes every 150 rounds (300 s lifetime), \
                          10 rounds of it, events with neighbour spreading, N=1,000"
                    .into(),
            nodes: 1000,
            trials: 3,
            mode: Mode::Events,
            neighbours: 5,
            refresh: Some(Refresh {
                every_rounds: 150,
                until_round: 10,
            }),
            ..base()
        },
        Scenario {
            name: "byzantine".into(),
            description:
                "one third of N=1,000 adversarial, a mix of every kind; every node publishes".into(),
            nodes: 1000,
            trials: 3,
            workload: Workload::AllPublish,
            adversaries: AdversaryShares::mixed_third(),
            neighbours: 5,
            ..base()
        },
    ]
}

/// A built-in scenario by name.
pub fn named(name: &str) -> Option<Scenario> {
    builtin().into_iter().find(|scenario| scenario.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(10), 4);
        assert_eq!(ceil_log2(1000), 10);
        assert_eq!(ceil_log2(1024), 10);
        assert_eq!(ceil_log2(10_000), 14);
    }

    #[test]
    fn builtins_are_valid_and_toml_round_trips() {
        for scenario in builtin() {
            scenario.validate().unwrap();
            let text = toml::to_string(&scenario).unwrap();
            assert_eq!(Scenario::from_toml(&text).unwrap(), scenario);
        }
        let small = Scenario::from_toml("nodes = 50\nloss = 0.1\n").unwrap();
        assert_eq!(small.fanout, 2);
        assert!(Scenario::from_toml("nodes = 1").is_err());
        assert!(Scenario::from_toml("bogus = 1").is_err());
        assert!(Scenario::from_toml("[adversaries]\nsilent = 0.6").is_err());
    }
}
