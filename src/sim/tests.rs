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
    let report = run(&small("bet15", 10, 20), |_, _| {}).unwrap();
    assert_eq!(report.summary.verdict, "STRICT", "{:?}", report.summary);
    assert!(report.summary.worst.unwrap() <= 4);
    assert_eq!(report.trials.len(), 20);
}

#[test]
fn runs_are_reproducible_from_the_seed() {
    let scenario = small("repeat", 64, 3);
    let first = run(&scenario, |_, _| {}).unwrap();
    let second = run(&scenario, |_, _| {}).unwrap();
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
    )
    .unwrap();
    assert_ne!(rounds(&first), rounds(&other));
}

#[test]
fn larger_federations_stay_within_the_bound() {
    let report = run(&small("scale", 256, 5), |_, _| {}).unwrap();
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
    let report = run(&scenario, |_, _| {}).unwrap();
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
    let report = run(&scenario, |_, _| {}).unwrap();
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
    let report = run(&scenario, |_, _| {}).unwrap();
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
    let report = run(&scenario, |_, _| {}).unwrap();
    assert_eq!(report.summary.converged, 2, "{:?}", report.summary);
}

#[test]
fn event_mode_with_latency_converges() {
    let scenario = Scenario {
        mode: Mode::Events,
        neighbours: 5,
        ..small("events", 128, 3)
    };
    let report = run(&scenario, |_, _| {}).unwrap();
    assert!(
        report.summary.worst.unwrap() <= report.summary.bound,
        "{:?}",
        report.summary
    );
}

#[test]
fn steady_refreshes_reach_everyone_and_their_cost_is_reported() {
    // 120 nodes, each refreshing once every 20 rounds, for 20 rounds: every
    // node publishes once, 6 a round.
    let scenario = Scenario {
        mode: Mode::Events,
        neighbours: 5,
        refresh: Some(scenario::Refresh {
            every_rounds: 20,
            until_round: 20,
        }),
        ..small("refresh", 120, 2)
    };
    let report = run(&scenario, |_, _| {}).unwrap();
    for trial in &report.trials {
        // The first announcement and one refresh of every node.
        assert_eq!(trial.targets, 121, "{trial:?}");
        // Converged only after the last refresh, and soon after it.
        assert!(trial.rounds.unwrap() > 20, "{trial:?}");
        assert!(
            trial.rounds_after_disturbance.unwrap() <= report.summary.bound,
            "{trial:?}"
        );
        // Each node accepted each record once.
        assert_eq!(trial.first_deliveries, 121 * 119, "{trial:?}");
    }
    let cost = report.summary.refresh.expect("a refresh cost");
    assert_eq!(cost.records, 121.0);
    // 120 nodes each publishing every 20 s: 6 records a second, each checked
    // once by every node but its publisher.
    assert!((cost.checks_per_node_s - 6.0).abs() < 0.1, "{cost:?}");
    assert!(cost.bytes_per_node_s > 0.0 && cost.messages_per_node_s > 0.0);
    // A refresh costs less than a copy along every neighbour link would.
    assert!(
        report.summary.redundancy.unwrap() < 5.0,
        "{:?}",
        report.summary
    );
    // The compact engine does not model it.
    assert!(model::supports(&scenario).is_err());
}

#[test]
fn a_third_byzantine_cannot_stop_honest_nodes() {
    let scenario = Scenario {
        workload: Workload::AllPublish,
        adversaries: AdversaryShares::mixed_third(),
        neighbours: 5,
        ..small("byzantine", 120, 1)
    };
    let report = run(&scenario, |_, _| {}).unwrap();
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
    let report = run(&crashes(true, 0.2), |_, _| {}).unwrap();
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
    let report = run(&crashes(false, 0.0), |_, _| {}).unwrap();
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

/// Means over trials of rounds, messages, bytes and redundancy.
fn means(report: &Report) -> (f64, f64, f64, f64) {
    let trials = report.trials.len() as f64;
    let sum = |value: &dyn Fn(&report::TrialReport) -> f64| {
        report.trials.iter().map(value).sum::<f64>() / trials
    };
    (
        sum(&|t| f64::from(t.rounds.expect("converged"))),
        sum(&|t| t.messages as f64),
        sum(&|t| t.bytes as f64),
        sum(&|t| t.redundancy.expect("records moved")),
    )
}

#[test]
fn the_compact_engine_agrees_with_the_state_machine() {
    let cases = [
        Scenario {
            nat_share: 0.2,
            workload: Workload::AllPublish,
            ..small("nat", 300, 4)
        },
        Scenario {
            loss: 0.05,
            workload: Workload::AllPublish,
            ..small("loss", 200, 4)
        },
        Scenario {
            workload: Workload::AllPublish,
            partition: Some(Partition {
                from_round: 1,
                heal_round: 6,
            }),
            ..small("partition", 200, 3)
        },
        small("one", 300, 6),
    ];
    for scenario in cases {
        let on = |engine| {
            let report = run(
                &Scenario {
                    engine,
                    ..scenario.clone()
                },
                |_, _| {},
            )
            .unwrap();
            assert_eq!(report.engine, engine);
            // Both engines charge work budgets; honest peers never exhaust them.
            assert_eq!(report.summary.frames_over_budget, 0, "{engine:?}");
            means(&report)
        };
        let (state, compact) = (on(Engine::StateMachine), on(Engine::Compact));
        let close = |a: f64, b: f64, share: f64| (a - b).abs() <= share * a.max(b);
        assert!(
            (state.0 - compact.0).abs() <= 1.0
                && close(state.1, compact.1, 0.1)
                && close(state.2, compact.2, 0.1)
                && (state.3 - compact.3).abs() <= 0.15,
            "{}: state machine {state:?}, compact {compact:?}",
            scenario.name
        );
    }
}

#[test]
fn the_compact_engine_refuses_what_it_does_not_model_and_auto_picks_it_only_beyond_memory() {
    let large = Scenario {
        workload: Workload::AllPublish,
        ..small("large", 5_000, 1)
    };
    assert_eq!(engine_for(&large), Ok(Engine::Compact));
    // The state machine runs whatever fits: one record at a hundred thousand
    // nodes, or every node publishing at a thousand.
    for fits in [
        small("one", 100_000, 1),
        Scenario {
            workload: Workload::AllPublish,
            ..small("small", 1_000, 1)
        },
    ] {
        assert_eq!(engine_for(&fits), Ok(Engine::StateMachine));
    }
    let byzantine = Scenario {
        adversaries: AdversaryShares::mixed_third(),
        ..large.clone()
    };
    assert_eq!(engine_for(&byzantine), Ok(Engine::StateMachine));
    for scenario in [
        byzantine,
        Scenario {
            neighbours: 5,
            ..large.clone()
        },
        Scenario {
            mode: Mode::Events,
            ..large.clone()
        },
        Scenario {
            churn: Some(Churn {
                leave_per_round: 0.01,
                away_rounds: 2,
                until_round: 3,
            }),
            ..large
        },
    ] {
        let forced = Scenario {
            engine: Engine::Compact,
            nodes: 50,
            ..scenario
        };
        let error = run(&forced, |_, _| {}).unwrap_err();
        assert!(error.to_string().contains("does not model"), "{error}");
    }
}

#[test]
fn hops_and_redundancy_are_counted_on_both_engines() {
    for engine in [Engine::StateMachine, Engine::Compact] {
        let report = run(
            &Scenario {
                engine,
                workload: Workload::AllPublish,
                ..small("hops", 64, 2)
            },
            |_, _| {},
        )
        .unwrap();
        for trial in &report.trials {
            let hop = trial.last_delivery_hop.unwrap();
            // Every record travels at least one hop, and no more than one per
            // message step of the rounds it took.
            assert!(
                hop >= 1 && hop <= 64 * trial.rounds.unwrap(),
                "{engine:?} {hop}"
            );
            let mean = trial.mean_last_delivery_hop.unwrap();
            assert!(mean >= 1.0 && mean <= f64::from(hop), "{engine:?} {mean}");
            assert!(trial.redundancy.unwrap() >= 0.0, "{engine:?}");
        }
    }
}
