//! The deterministic simulator: N nodes running the real protocol state machine.
//!
//! Everything is seeded: a scenario's master seed gives each trial its own seed,
//! and a trial's seed fixes every random choice (roles, NAT, peer picks, losses,
//! latencies), so any trial can be rerun exactly. Maps whose order shows are
//! ordered. Two modes share one engine ([`world`]): synchronous rounds, Bet 15's
//! setting, and event-driven time with latency.
//!
//! - [`scenario`]: what to run, from TOML or built in.
//! - [`world`]: one trial: the nodes, the link model, the adversaries' actions.
//! - [`adversary`]: the Byzantine roles.
//! - [`report`]: JSON results and the Bet 15 verdict.
//! - [`svg`]: the coverage plot.
//! - [`idle`]: the cost of an exchange between converged nodes, by directory size.
//! - [`governance`]: roster operations with a third of the members Byzantine.

pub mod adversary;
pub mod governance;
pub mod idle;
pub mod report;
pub mod scenario;
pub mod svg;
pub mod world;

pub use report::Report;
pub use scenario::{Mode, Scenario, Workload};

/// The seed of trial `trial` of a run with master seed `seed` (splitmix64).
pub fn trial_seed(seed: u64, trial: usize) -> u64 {
    let mut z = seed.wrapping_add((trial as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs every trial of `scenario`, calling `progress(done, total)` after each.
pub fn run(scenario: &Scenario, mut progress: impl FnMut(usize, usize)) -> Report {
    let federation = world::Federation::new(scenario.nodes, scenario.seed);
    let mut outcomes = Vec::with_capacity(scenario.trials);
    for trial in 0..scenario.trials {
        let seed = trial_seed(scenario.seed, trial);
        outcomes.push(world::World::new(scenario, &federation, seed).run(seed));
        progress(trial + 1, scenario.trials);
    }
    Report::new(scenario, outcomes)
}

#[cfg(test)]
mod tests;
