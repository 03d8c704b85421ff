//! Small versions of every scenario: seconds each, in `cargo test`.

use super::scenario::{AdversaryShares, Churn, Crashes, Partition};
use super::*;

fn small(name: &str, nodes: usize, trials: usize) -> Scenario {
    Scenario {
        name: name.into(),
        nodes,
        trials,
        ..Scenario::default()
    }
}

#[test]
fn bet15_is_reproduced_strictly() {
    let report = run(&small("bet15", 10, 20), |_, _| {});
    assert_eq!(report.summary.verdict, "STRICT", "{:?}", report.summary);
    assert!(report.summary.worst.unwrap() <= 4);
    assert_eq!(report.trials.len(), 20);
}

#[test]
fn runs_are_reproducible_from_the_seed() {
    let scenario = small("repeat", 64, 3);
    let first = run(&scenario, |_, _| {});
    let second = run(&scenario, |_, _| {});
    let rounds = |report: &Report| {
        report
            .trials
            .iter()
            .map(|t| (t.seed, t.rounds, t.bytes))
            .collect::<Vec<_>>()
    };
    assert_eq!(rounds(&first), rounds(&second));
    let other = run(
        &Scenario {
            seed: 99,
            ..scenario
        },
        |_, _| {},
    );
    assert_ne!(rounds(&first), rounds(&other));
}

#[test]
fn larger_federations_stay_within_the_bound() {
    let report = run(&small("scale", 256, 5), |_, _| {});
    assert!(
        report.summary.worst.unwrap() <= report.summary.bound,
        "{:?}",
        report.summary
    );
}

#[test]
fn loss_costs_at_most_two_rounds() {
    let scenario = Scenario {
        loss: 0.10,
        ..small("loss", 200, 5)
    };
    let report = run(&scenario, |_, _| {});
    assert!(
        report.summary.worst.unwrap() <= report.summary.bound + 2,
        "{:?}",
        report.summary
    );
}

#[test]
fn nodes_behind_nat_converge() {
    let scenario = Scenario {
        nat_share: 0.2,
        workload: Workload::AllPublish,
        ..small("nat", 100, 2)
    };
    let report = run(&scenario, |_, _| {});
    assert_eq!(report.summary.converged, 2, "{:?}", report.summary);
}

#[test]
fn a_healed_partition_converges_quickly() {
    let scenario = Scenario {
        workload: Workload::AllPublish,
        partition: Some(Partition {
            from_round: 1,
            heal_round: 11,
        }),
        ..small("partition", 128, 2)
    };
    let report = run(&scenario, |_, _| {});
    for trial in &report.trials {
        // Nothing crosses while the partition holds.
        assert!(trial.coverage[8] < 0.6, "{:?}", trial.coverage);
    }
    assert!(
        report.summary.worst_after_disturbance.unwrap() <= report.summary.bound + 2,
        "{:?}",
        report.summary
    );
}

#[test]
fn churn_with_crashes_converges_after_it_stops() {
    let scenario = Scenario {
        workload: Workload::AllPublish,
        churn: Some(Churn {
            leave_per_round: 0.05,
            away_rounds: 3,
            until_round: 6,
        }),
        ..small("churn", 100, 2)
    };
    let report = run(&scenario, |_, _| {});
    assert_eq!(report.summary.converged, 2, "{:?}", report.summary);
}

#[test]
fn event_mode_with_latency_converges() {
    let scenario = Scenario {
        mode: Mode::Events,
        neighbours: 5,
        ..small("events", 128, 3)
    };
    let report = run(&scenario, |_, _| {});
    assert!(
        report.summary.worst.unwrap() <= report.summary.bound,
        "{:?}",
        report.summary
    );
}

#[test]
fn a_third_byzantine_cannot_stop_honest_nodes() {
    let scenario = Scenario {
        workload: Workload::AllPublish,
        adversaries: AdversaryShares::mixed_third(),
        neighbours: 5,
        ..small("byzantine", 120, 1)
    };
    let report = run(&scenario, |_, _| {});
    let summary = &report.summary;
    assert_eq!(
        summary.converged, 1,
        "every honest record at every honest node: {summary:?}"
    );
    assert_eq!(summary.forged_accepted, 0);
    assert!(
        summary.worst_quarantine.is_some(),
        "every equivocator quarantined everywhere: {summary:?}"
    );
    let bans: Vec<_> = report.trials[0]
        .bans
        .iter()
        .map(|(role, _)| *role)
        .collect();
    // Flooders are banned only while their floods cost more than their work
    // budget: with spreading, the directories converge within a few rounds,
    // the flooders' openings then match and cost little, and the trial ends
    // before a ban (`a_flood_is_cut_off` shows the ban of a costly flood).
    assert!(bans.contains(&adversary::Role::Forging), "{bans:?}");
    assert!(
        !bans.contains(&adversary::Role::Honest),
        "no honest node is ever banned: {bans:?}"
    );
}

fn crashes(durable_before_send: bool, disk_loss: f64) -> Scenario {
    Scenario {
        workload: Workload::AllPublish,
        crashes: Some(Crashes {
            per_output: 0.01,
            away_rounds: 2,
            until_round: 20,
            republish_per_round: 0.2,
            disk_loss,
            durable_before_send,
        }),
        neighbours: 5,
        ..small("crashes", 60, 3)
    }
}

#[test]
fn crashes_at_random_moments_never_fork_an_honest_chain() {
    // A fifth of the crashes also destroy the node's disk: it recovers its chain
    // from its peers.
    let report = run(&crashes(true, 0.2), |_, _| {});
    let summary = &report.summary;
    assert!(summary.crashes >= 30, "crashes happened: {summary:?}");
    assert_eq!(summary.honest_quarantined, 0, "{summary:?}");
    assert_eq!(summary.honest_halted, 0, "{summary:?}");
    assert_eq!(summary.converged, 3, "{summary:?}");
    assert_ne!(summary.verdict, "FAIL");
}

#[test]
fn without_the_durability_contract_crashes_fork_chains() {
    // The same crashes with the own record made durable only after it was sent:
    // what the first version of the node did. Honest nodes fork (and are
    // quarantined) or meet their own lost record and must stop signing, which shows
    // the check above can fail.
    let report = run(&crashes(false, 0.0), |_, _| {});
    assert!(
        report.summary.honest_quarantined + report.summary.honest_halted > 0,
        "{:?}",
        report.summary
    );
    assert_eq!(report.summary.verdict, "FAIL");
}

#[test]
fn governance_converges_with_a_third_byzantine() {
    let report = super::governance::run(super::governance::GovernanceConfig {
        nodes: 60,
        joiners: 10,
        byzantine: 1.0 / 3.0,
        seed: 3,
    });
    assert_eq!(report.ops.len(), 17, "{report:#?}");
    assert!(report.within_bound, "{report:#?}");
    assert!(report.same_head && report.chain_valid, "{report:#?}");
    assert_eq!(report.invalid_applied, 0);
    assert_eq!(report.honest_banned, 0, "{report:#?}");
    assert!(
        report.byzantine_banned > 0,
        "replayers of forged operations are banned"
    );
}
