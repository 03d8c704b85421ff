//! Results of a simulation, as JSON, with the pre-registered criteria of Bet 15.
//!
//! Verdicts, for N nodes and bound B = ceil(log2 N):
//! - `CATASTROPHIC`: some trial did not converge within max(10, 2B) rounds (the
//!   seed's "within 10 rounds" at N = 10);
//! - `STRICT`: otherwise, if the worst trial converged within B rounds;
//! - `LENIENT`: otherwise, if the average is within B + 2 rounds;
//! - `FAIL`: none of these, or an honest node was quarantined anywhere or had to
//!   stop signing (it forked its own chain, or met its own record from before a
//!   crash that it had not kept: the crash scenarios check the durability contract
//!   this way).
//!
//! With a partition or churn, rounds are counted from the end of the disturbance
//! (the first healed round, or the last round in which departed nodes return);
//! with refreshes, from the round after the last one.

use serde::Serialize;

use super::adversary::Role;
use super::scenario::{Engine, Scenario};
use super::world::TrialOutcome;

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One trial in the report.
#[derive(Debug, Clone, Serialize)]
pub struct TrialReport {
    /// The trial's seed (rerun it with `--seed` and one trial).
    pub seed: u64,
    /// Rounds until every target was held everywhere (null: never).
    pub rounds: Option<u32>,
    /// Rounds from the end of a partition or of churn to convergence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds_after_disturbance: Option<u32>,
    /// Rounds until every equivocator was quarantined at every honest node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_rounds: Option<u32>,
    /// Messages sent until convergence.
    pub messages: u64,
    /// Bytes sent until convergence.
    pub bytes: u64,
    /// Relative message redundancy until convergence: record copies received
    /// per first delivery, minus one.
    pub redundancy: Option<f64>,
    /// The most hops any record took to reach the last node it reached.
    pub last_delivery_hop: Option<u32>,
    /// The mean over records of the hops to the last node each reached.
    pub mean_last_delivery_hop: Option<f64>,
    /// Bytes per exchange once converged (all-publish workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_bytes_per_exchange: Option<f64>,
    /// Forged records found accepted at honest nodes (sum over rounds).
    pub forged_accepted: u64,
    /// For each role, honest nodes that banned one of its members (an honest role
    /// here would be a defect: honest peers are never banned).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bans: Vec<(Role, u64)>,
    /// Crashes at random moments.
    #[serde(skip_serializing_if = "is_zero")]
    pub crashes: u64,
    /// (honest node, honest origin) pairs quarantined at the end (must be 0).
    pub honest_quarantined: u64,
    /// Honest nodes that stopped signing because they met a record of their own
    /// key they did not remember signing (must be 0).
    pub honest_halted: u64,
    /// Frames from honest senders dropped for want of work budget (must be 0).
    pub frames_over_budget: u64,
    /// Records every live honest node had to come to hold.
    pub targets: u64,
    /// Records accepted for the first time, over all nodes.
    pub first_deliveries: u64,
    /// Coverage at the end of each round.
    pub coverage: Vec<f64>,
}

/// What keeping records alive costs each node, from a scenario with refreshes:
/// the trial's messages and bytes (idle gossip included) per record published,
/// at the scenario's steady rate of `nodes / every_rounds` records a round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RefreshCost {
    /// Records published per trial (mean).
    pub records: f64,
    /// Bytes, over all nodes, per record published.
    pub bytes_per_record: f64,
    /// Bytes each node sends per second at the steady rate.
    pub bytes_per_node_s: f64,
    /// Messages each node sends per second at the steady rate.
    pub messages_per_node_s: f64,
    /// Records each node accepts (and checks the signature of) per second.
    pub checks_per_node_s: f64,
}

fn refresh_cost(scenario: &Scenario, trials: &[TrialReport]) -> Option<RefreshCost> {
    let refresh = scenario.refresh?;
    let records = mean(trials.iter().map(|trial| trial.targets as f64))?;
    if records == 0.0 {
        return None;
    }
    let bytes = mean(trials.iter().map(|trial| trial.bytes as f64))?;
    let messages = mean(trials.iter().map(|trial| trial.messages as f64))?;
    let accepted = mean(trials.iter().map(|trial| trial.first_deliveries as f64))?;
    // A node's share of one record's cost, times records per second: every
    // node publishes once per `every_rounds` intervals.
    let per_second = scenario.nodes as f64
        / (f64::from(refresh.every_rounds) * scenario.interval_ms as f64 / 1000.0);
    let nodes = scenario.nodes as f64;
    Some(RefreshCost {
        records,
        bytes_per_record: bytes / records,
        bytes_per_node_s: bytes / records * per_second / nodes,
        messages_per_node_s: messages / records * per_second / nodes,
        checks_per_node_s: accepted / records * per_second / nodes,
    })
}

/// Aggregates over trials.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Slowest trial's rounds (null if one never converged).
    pub worst: Option<u32>,
    /// Mean rounds over converged trials.
    pub average: Option<f64>,
    /// Fastest trial's rounds.
    pub best: Option<u32>,
    /// ceil(log2 N).
    pub bound: u32,
    /// STRICT, LENIENT, CATASTROPHIC or FAIL.
    pub verdict: &'static str,
    /// Trials that converged.
    pub converged: usize,
    /// Trials run.
    pub trials: usize,
    /// Worst rounds after a partition healed or churn ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_after_disturbance: Option<u32>,
    /// Worst rounds to quarantine every equivocator everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_quarantine: Option<u32>,
    /// Forged records accepted anywhere, over all trials (must be 0).
    pub forged_accepted: u64,
    /// Crashes at random moments, over all trials.
    pub crashes: u64,
    /// Honest origins quarantined at honest nodes, over all trials (must be 0).
    pub honest_quarantined: u64,
    /// Honest nodes halted at the end, over all trials (must be 0).
    pub honest_halted: u64,
    /// Mean bytes of an exchange between converged nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_bytes_per_exchange: Option<f64>,
    /// Mean messages per trial.
    pub average_messages: f64,
    /// Mean bytes per trial.
    pub average_bytes: f64,
    /// Frames from honest senders dropped for want of work budget, over all
    /// trials (must be 0).
    pub frames_over_budget: u64,
    /// Mean relative message redundancy over trials.
    pub redundancy: Option<f64>,
    /// The most hops any record took to its last node, over trials.
    pub last_delivery_hop: Option<u32>,
    /// Mean over trials of the mean last delivery hop.
    pub mean_last_delivery_hop: Option<f64>,
    /// The steady cost of refreshes (scenarios with refreshes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshCost>,
}

/// A whole simulation run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What ran.
    pub scenario: Scenario,
    /// The engine that ran it.
    pub engine: Engine,
    /// The master seed.
    pub seed: u64,
    /// Per trial.
    pub trials: Vec<TrialReport>,
    /// Aggregates.
    pub summary: Summary,
}

impl Report {
    /// Builds the report from trial outcomes.
    pub fn new(scenario: &Scenario, engine: Engine, outcomes: Vec<TrialOutcome>) -> Self {
        let disturbed = disturbance_end(scenario).is_some();
        let trials: Vec<TrialReport> = outcomes
            .into_iter()
            .map(|outcome| TrialReport {
                seed: outcome.seed,
                rounds: outcome.converged_round,
                rounds_after_disturbance: outcome.disturbance_end.filter(|_| disturbed).and_then(
                    |end| {
                        outcome
                            .converged_round
                            .map(|round| (round + 1).saturating_sub(end))
                    },
                ),
                quarantine_rounds: outcome.quarantined_round,
                messages: outcome.messages,
                bytes: outcome.bytes,
                redundancy: outcome.redundancy(),
                last_delivery_hop: outcome.last_delivery_hops.iter().max().copied(),
                mean_last_delivery_hop: mean(
                    outcome.last_delivery_hops.iter().map(|&hop| f64::from(hop)),
                ),
                idle_bytes_per_exchange: outcome.idle_bytes_per_exchange,
                forged_accepted: outcome.forged_accepted,
                bans: outcome.bans.into_iter().collect(),
                crashes: outcome.crashes,
                honest_quarantined: outcome.honest_quarantined,
                honest_halted: outcome.honest_halted,
                frames_over_budget: outcome.frames_over_budget,
                targets: outcome.targets,
                first_deliveries: outcome.first_deliveries,
                coverage: outcome
                    .samples
                    .iter()
                    .map(|sample| sample.coverage)
                    .collect(),
            })
            .collect();
        let summary = summarize(scenario, &trials);
        Self {
            scenario: scenario.clone(),
            engine,
            seed: scenario.seed,
            trials,
            summary,
        }
    }
}

/// The first round without the scenario's disturbance, if it has one.
pub fn disturbance_end(scenario: &Scenario) -> Option<u32> {
    let crashes = scenario
        .crashes
        .map(|crashes| crashes.until_round + crashes.away_rounds);
    let refresh = scenario.refresh.map(|refresh| refresh.until_round + 1);
    match (scenario.partition, scenario.churn) {
        (Some(partition), _) => Some(partition.heal_round),
        (None, Some(churn)) => Some(churn.until_round + churn.away_rounds).max(crashes),
        (None, None) => crashes.max(refresh),
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, count), value| {
        (sum + value, count + 1)
    });
    (count > 0).then(|| sum / count as f64)
}

fn summarize(scenario: &Scenario, trials: &[TrialReport]) -> Summary {
    let bound = scenario.log2_bound();
    let rounds: Vec<u32> = if disturbance_end(scenario).is_some() {
        trials
            .iter()
            .filter_map(|trial| trial.rounds_after_disturbance)
            .collect()
    } else {
        trials.iter().filter_map(|trial| trial.rounds).collect()
    };
    let all_converged = rounds.len() == trials.len();
    let worst = if all_converged {
        rounds.iter().max().copied()
    } else {
        None
    };
    let average = mean(rounds.iter().map(|&r| f64::from(r)));
    let catastrophe_limit = (2 * bound).max(10);
    let honest_quarantined: u64 = trials.iter().map(|trial| trial.honest_quarantined).sum();
    let honest_halted: u64 = trials.iter().map(|trial| trial.honest_halted).sum();
    let verdict = if honest_quarantined > 0 || honest_halted > 0 {
        "FAIL"
    } else if !all_converged || rounds.iter().any(|&r| r > catastrophe_limit) {
        "CATASTROPHIC"
    } else if worst.is_some_and(|worst| worst <= bound) {
        "STRICT"
    } else if average.is_some_and(|average| average <= f64::from(bound + 2)) {
        "LENIENT"
    } else {
        "FAIL"
    };
    let all_or_none = |values: Vec<Option<u32>>| -> Option<u32> {
        if values.iter().any(Option::is_none) {
            None
        } else {
            values.into_iter().flatten().max()
        }
    };
    let worst_quarantine = if trials.iter().any(|trial| trial.quarantine_rounds.is_some()) {
        all_or_none(trials.iter().map(|trial| trial.quarantine_rounds).collect())
    } else {
        None
    };
    Summary {
        worst,
        average,
        best: rounds.iter().min().copied(),
        bound,
        verdict,
        converged: rounds.len(),
        trials: trials.len(),
        worst_after_disturbance: disturbance_end(scenario).and_then(|_| {
            all_or_none(
                trials
                    .iter()
                    .map(|trial| trial.rounds_after_disturbance)
                    .collect(),
            )
        }),
        worst_quarantine,
        forged_accepted: trials.iter().map(|trial| trial.forged_accepted).sum(),
        crashes: trials.iter().map(|trial| trial.crashes).sum(),
        honest_quarantined,
        honest_halted,
        idle_bytes_per_exchange: mean(
            trials
                .iter()
                .filter_map(|trial| trial.idle_bytes_per_exchange),
        ),
        average_messages: mean(trials.iter().map(|trial| trial.messages as f64)).unwrap_or(0.0),
        average_bytes: mean(trials.iter().map(|trial| trial.bytes as f64)).unwrap_or(0.0),
        frames_over_budget: trials.iter().map(|trial| trial.frames_over_budget).sum(),
        redundancy: mean(trials.iter().filter_map(|trial| trial.redundancy)),
        last_delivery_hop: trials
            .iter()
            .filter_map(|trial| trial.last_delivery_hop)
            .max(),
        mean_last_delivery_hop: mean(
            trials
                .iter()
                .filter_map(|trial| trial.mean_last_delivery_hop),
        ),
        refresh: refresh_cost(scenario, trials),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(rounds: Option<u32>) -> TrialOutcome {
        TrialOutcome {
            converged_round: rounds,
            ..TrialOutcome::default()
        }
    }

    #[test]
    fn verdicts_follow_the_pre_registered_criteria() {
        let scenario = Scenario::default(); // N = 10, bound 4
        let verdict = |rounds: &[Option<u32>]| {
            Report::new(
                &scenario,
                Engine::StateMachine,
                rounds.iter().map(|&r| outcome(r)).collect(),
            )
            .summary
            .verdict
        };
        assert_eq!(verdict(&[Some(3), Some(4), Some(2)]), "STRICT");
        assert_eq!(verdict(&[Some(3), Some(5), Some(4)]), "LENIENT");
        assert_eq!(verdict(&[Some(7), Some(7), Some(7)]), "FAIL");
        assert_eq!(verdict(&[Some(3), None]), "CATASTROPHIC");
        assert_eq!(verdict(&[Some(3), Some(11)]), "CATASTROPHIC");
        let report = Report::new(
            &scenario,
            Engine::StateMachine,
            vec![outcome(Some(2)), outcome(Some(4))],
        );
        assert_eq!(report.summary.worst, Some(4));
        assert_eq!(report.summary.best, Some(2));
        assert_eq!(report.summary.average, Some(3.0));
    }
}
