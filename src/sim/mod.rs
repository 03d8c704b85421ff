//! The deterministic simulator: N nodes running the real protocol state machine.
//!
//! Everything is seeded: a scenario's master seed gives each trial its own seed,
//! and a trial's seed fixes every random choice (roles, NAT, peer picks, losses,
//! latencies), so any trial can be rerun exactly. Maps whose order shows are
//! ordered. Two modes share one engine ([`world`]): synchronous rounds, Bet 15's
//! setting, and event-driven time with latency.
//!
//! - [`scenario`]: what to run, from TOML or built in.
//! - [`world`]: one trial on the state-machine engine: every node's real state
//!   machine, the link model, the adversaries' actions.
//! - [`model`]: one trial on the compact engine: anti-entropy over shared
//!   bitsets of holdings, for federations of ten thousand and more.
//! - [`adversary`]: the Byzantine roles.
//! - [`report`]: JSON results and the Bet 15 verdict.
//! - [`svg`]: the coverage plot.
//! - [`idle`]: the cost of an exchange between converged nodes, by directory size.
//! - [`governance`]: roster operations with a third of the members Byzantine.

pub mod adversary;
pub mod governance;
pub mod idle;
pub mod model;
pub mod report;
pub mod scenario;
pub mod svg;
pub mod world;

pub use report::Report;
pub use scenario::{Engine, Mode, Scenario, Workload};

/// The seed of trial `trial` of a run with master seed `seed` (splitmix64).
pub fn trial_seed(seed: u64, trial: usize) -> u64 {
    let mut z = seed.wrapping_add((trial as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The engine that runs `scenario`: the one it names, or for
/// [`Engine::Auto`] the state machine, unless one of its trials would not fit
/// in [`MEMORY_BUDGET`] and the compact engine models the scenario.
pub fn engine_for(scenario: &Scenario) -> Result<Engine, model::Unsupported> {
    match scenario.engine {
        Engine::Auto => Ok(
            if trial_memory(scenario, Engine::StateMachine) > MEMORY_BUDGET
                && model::supports(scenario).is_ok()
            {
                Engine::Compact
            } else {
                Engine::StateMachine
            },
        ),
        Engine::Compact => model::supports(scenario).map(|()| Engine::Compact),
        Engine::StateMachine => Ok(Engine::StateMachine),
    }
}

/// Runs every trial of `scenario`, calling `progress(done, total)` after each.
///
/// Trials are independent (each has its own seed), so they run side by side on
/// up to one thread per core, as many as [`MEMORY_BUDGET`] holds by
/// [`trial_memory`]'s estimate. The report lists them in trial order whatever
/// order they finish in: the same seed gives the same report.
pub fn run(
    scenario: &Scenario,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report, model::Unsupported> {
    let engine = engine_for(scenario)?;
    let federation = world::Federation::new(scenario.nodes, scenario.seed);
    let run_trial = |trial: usize| -> Result<world::TrialOutcome, model::Unsupported> {
        let seed = trial_seed(scenario.seed, trial);
        match engine {
            Engine::Compact => model::run_trial(scenario, &federation, seed),
            _ => Ok(world::World::new(scenario, &federation, seed).run(seed)),
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let fit = (MEMORY_BUDGET / trial_memory(scenario, engine).max(1)).max(1) as usize;
    let threads = cores.min(fit).min(scenario.trials).max(1);
    let mut outcomes: Vec<Option<world::TrialOutcome>> = vec![None; scenario.trials];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let sender = sender.clone();
            let (next, run_trial) = (&next, &run_trial);
            scope.spawn(move || loop {
                let trial = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if trial >= scenario.trials {
                    break;
                }
                if sender.send((trial, run_trial(trial))).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        let mut done = 0;
        for (trial, outcome) in receiver {
            outcomes[trial] = Some(outcome?);
            done += 1;
            progress(done, scenario.trials);
        }
        Ok::<(), model::Unsupported>(())
    })?;
    let outcomes = outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every trial ran"))
        .collect();
    Ok(Report::new(scenario, engine, outcomes))
}

/// The memory that trials running side by side may take together.
pub const MEMORY_BUDGET: u64 = 3 << 30;

/// A rough upper estimate of one trial's peak memory: per (node, record) pair
/// held and per node, from runs at 1,000 to 100,000 nodes (the state machine:
/// about 480 bytes per pair at 2,000 nodes that all publish, 850 with a third
/// of them adversaries, 8 KiB per node with one record; the compact engine:
/// about 10 bytes per pair at 10,000).
pub fn trial_memory(scenario: &Scenario, engine: Engine) -> u64 {
    let nodes = scenario.nodes as u64;
    let published = match scenario.workload {
        Workload::OneAnnouncement => 1,
        Workload::AllPublish => nodes,
    };
    // Refreshes: each node's new record, once per `every_rounds` rounds.
    let refreshes = scenario.refresh.map_or(0, |refresh| {
        let rounds = u64::from(refresh.until_round);
        (nodes * rounds).div_ceil(u64::from(refresh.every_rounds.max(1)))
    });
    let records = published + refreshes;
    match engine {
        Engine::Compact => 12 * nodes * records + 32 * 1024 * nodes,
        _ => 900 * nodes * records + 16 * 1024 * nodes,
    }
}

#[cfg(test)]
mod tests;
