//! `tidings sim`: run the simulator from the command line.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use tidings::sim::{self, idle, scenario, Report, Scenario};

/// `tidings sim` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Reproduce Bet 15: one node holds a new announcement; count rounds until all
    /// N nodes hold it (each round every node exchanges with `fanout` random peers).
    Bet15(Bet15Args),
    /// Run a scenario: a built-in name (see `tidings sim list`) or a TOML file.
    Run(RunArgs),
    /// Governance: roster operations (adds, removals, a rotation, a pardon) with
    /// a third of the members Byzantine (withholding, proposing conflicting
    /// operations, signing twice, replaying and forging); reports the rounds
    /// until every honest member is at each new epoch.
    Governance(GovernanceArgs),
    /// List the built-in scenarios.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bytes of one exchange between two nodes holding N records, converged and
    /// differing by 1 and 10 records.
    Idle {
        /// Directory sizes, comma-separated.
        #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
        records: Vec<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Output options shared by the runs.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE.json")]
    out: Option<PathBuf>,
    /// Write an SVG plot of coverage per round here.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tidings sim bet15`.
#[derive(Debug, Args)]
pub(crate) struct Bet15Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Peers each node exchanges with per round.
    #[arg(long, default_value_t = 2)]
    fanout: usize,
    /// Independent trials.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Master seed (each trial derives its own; all are printed).
    #[arg(long, default_value_t = 15)]
    seed: u64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    #[command(flatten)]
    output: OutputArgs,
}

/// Arguments of `tidings sim governance`.
#[derive(Debug, Args)]
pub(crate) struct GovernanceArgs {
    /// Members at the genesis.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// The seed.
    #[arg(long, default_value_t = 12)]
    seed: u64,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE.json")]
    out: Option<PathBuf>,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tidings sim run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A built-in scenario name or a scenario TOML file.
    scenario: String,
    /// Override the number of nodes.
    #[arg(long)]
    nodes: Option<usize>,
    /// Override the number of trials.
    #[arg(long)]
    trials: Option<usize>,
    /// Override the master seed.
    #[arg(long)]
    seed: Option<u64>,
    /// The engine: `state-machine` runs every node's real protocol state
    /// machine; `compact` models anti-entropy over shared bitsets of holdings
    /// (federations of ten thousand; no adversaries, crashes, churn, spreading
    /// or event time); `auto` takes the state machine unless a trial would
    /// not fit in 3 GiB (every node publishing beyond about 1,900 nodes) and
    /// the compact engine models the scenario.
    #[arg(long, value_parser = parse_engine)]
    engine: Option<sim::Engine>,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_engine(name: &str) -> Result<sim::Engine, String> {
    sim::Engine::from_name(name)
        .ok_or_else(|| format!("expected auto, state-machine or compact, not {name:?}"))
}

pub(crate) fn run(command: &SimCommand) -> anyhow::Result<ExitCode> {
    match command {
        SimCommand::Bet15(args) => {
            let scenario = Scenario {
                nodes: args.nodes,
                fanout: args.fanout,
                trials: args.trials,
                seed: args.seed,
                loss: args.loss,
                ..scenario::named("bet15").context("the bet15 scenario is built in")?
            };
            execute(scenario, &args.output)
        }
        SimCommand::Run(args) => {
            let mut scenario = match scenario::named(&args.scenario) {
                Some(scenario) => scenario,
                None => {
                    let path = PathBuf::from(&args.scenario);
                    if !path.exists() {
                        bail!(
                            "no built-in scenario or file named {:?} (see `tidings sim list`)",
                            args.scenario
                        );
                    }
                    let text = fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    Scenario::from_toml(&text).with_context(|| format!("in {}", path.display()))?
                }
            };
            scenario.nodes = args.nodes.unwrap_or(scenario.nodes);
            scenario.trials = args.trials.unwrap_or(scenario.trials);
            scenario.seed = args.seed.unwrap_or(scenario.seed);
            scenario.engine = args.engine.unwrap_or(scenario.engine);
            execute(scenario, &args.output)
        }
        SimCommand::List { json } => {
            let scenarios = scenario::builtin();
            if *json {
                println!("{}", serde_json::to_string_pretty(&scenarios)?);
            } else {
                for scenario in scenarios {
                    println!("{:<12} {}", scenario.name, scenario.description);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Idle { records, json } => idle_costs(records, *json),
        SimCommand::Governance(args) => governance(args),
    }
}

fn governance(args: &GovernanceArgs) -> anyhow::Result<ExitCode> {
    if args.nodes < 4 {
        bail!("--nodes must be at least 4");
    }
    let started = Instant::now();
    eprintln!(
        "governance: {} members (a third Byzantine), 17 roster operations...",
        args.nodes
    );
    let report = sim::governance::run(sim::governance::GovernanceConfig {
        nodes: args.nodes,
        seed: args.seed,
        ..Default::default()
    });
    let value = serde_json::to_value(&report)?;
    if let Some(path) = &args.out {
        fs::write(path, serde_json::to_string_pretty(&value)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "{:>5}  {:>7}  {:>10}  {:>10}  action",
            "epoch", "needed", "threshold", "converged"
        );
        let rounds = |r: Option<u32>| r.map_or("-".to_string(), |r| format!("+{r}"));
        for op in &report.ops {
            let action: String = op.action.chars().take(60).collect();
            println!(
                "{:>5}  {:>7}  {:>10}  {:>10}  {action}",
                op.epoch,
                op.needed,
                rounds(op.rounds_to_threshold),
                rounds(op.rounds_to_converge),
            );
        }
        println!(
            "threshold: rounds from the proposal until some node applied it (every honest \
             member approves in the round it first holds the proposal)"
        );
        println!(
            "converged: rounds from then until every honest member was at the new epoch; \
             bound ceil(log2 N)+2 = {}; worst {}: {}",
            report.bound,
            report
                .max_rounds_to_converge
                .map_or("-".into(), |r| r.to_string()),
            if report.within_bound {
                "within the bound"
            } else {
                "NOT within the bound"
            }
        );
        println!(
            "same head on every honest node: {}; chain verifies from the genesis with only \
             scheduled operations: {}; unscheduled operations applied: {}; honest peers \
             banned: {}; Byzantine peers banned: {}",
            report.same_head,
            report.chain_valid,
            report.invalid_applied,
            report.honest_banned,
            report.byzantine_banned
        );
        println!(
            "{} messages, {:.1} MiB; {:.1} s",
            report.messages,
            report.bytes as f64 / (1024.0 * 1024.0),
            started.elapsed().as_secs_f64()
        );
    }
    let ok = report.within_bound
        && report.same_head
        && report.chain_valid
        && report.invalid_applied == 0
        && report.honest_banned == 0;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn execute(scenario: Scenario, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    scenario.validate()?;
    let engine = sim::engine_for(&scenario)?;
    let show_progress = std::io::stderr().is_terminal() && !output.json;
    eprintln!(
        "simulating {}: N={}, fanout {}, {} trials, seed {}, {} engine",
        scenario.name,
        scenario.nodes,
        scenario.fanout,
        scenario.trials,
        scenario.seed,
        engine.name()
    );
    let started = Instant::now();
    let report = sim::run(&scenario, |done, total| {
        if show_progress {
            let filled = done * 30 / total;
            eprint!(
                "\r[{}{}] trial {done}/{total}",
                "#".repeat(filled),
                " ".repeat(30 - filled)
            );
            let _ = std::io::stderr().flush();
        }
    })?;
    if show_progress {
        eprintln!();
    }
    let wall = started.elapsed();
    let peak = peak_memory_bytes();
    let mut value = serde_json::to_value(&report)?;
    value["summary"]["wall_seconds"] = serde_json::json!(wall.as_secs_f64());
    value["summary"]["peak_memory_bytes"] = serde_json::json!(peak);
    if let Some(path) = &output.out {
        fs::write(path, serde_json::to_string_pretty(&value)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &output.plot {
        fs::write(path, sim::svg::coverage_plot(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if output.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_table(&report);
        println!(
            "wall time {:.2} s, peak memory {}",
            wall.as_secs_f64(),
            peak.map(|bytes| format!("{:.0} MiB", bytes as f64 / 1_048_576.0))
                .unwrap_or_else(|| "unknown".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &Report) {
    println!("trial  seed                  rounds  messages         bytes  redundancy  last hop");
    for (index, trial) in report.trials.iter().enumerate() {
        println!(
            "{:>5}  {:<20}  {:>6}  {:>8}  {:>12}  {:>10}  {:>8}",
            index + 1,
            trial.seed,
            trial
                .rounds
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            trial.messages,
            trial.bytes,
            trial
                .redundancy
                .map_or_else(|| "-".into(), |r| format!("{r:.2}")),
            trial
                .last_delivery_hop
                .map_or_else(|| "-".into(), |h| h.to_string()),
        );
    }
    let s = &report.summary;
    let show = |value: Option<u32>| {
        value
            .map(|v| v.to_string())
            .unwrap_or_else(|| "never".into())
    };
    println!(
        "worst {}  average {}  best {}  bound ceil(log2 {}) = {}  verdict {}",
        show(s.worst),
        s.average
            .map(|a| format!("{a:.2}"))
            .unwrap_or_else(|| "-".into()),
        show(s.best),
        report.scenario.nodes,
        s.bound,
        s.verdict
    );
    if tidings::sim::report::disturbance_end(&report.scenario).is_some() {
        println!(
            "rounds are counted from the end of the disturbance (partition healed, churn, crashes or refreshes over); worst: {}",
            show(s.worst_after_disturbance)
        );
    }
    if report.scenario.adversaries.equivocating > 0.0 {
        println!(
            "worst rounds until every equivocator was quarantined everywhere: {}",
            show(s.worst_quarantine)
        );
    }
    if report.scenario.adversaries.total() > 0.0 {
        println!(
            "forged records accepted by honest nodes: {}",
            s.forged_accepted
        );
        for trial in &report.trials {
            let bans: Vec<String> = trial
                .bans
                .iter()
                .map(|(role, count)| format!("{role:?}: {count}"))
                .collect();
            println!(
                "  trial {} honest nodes banning each adversary kind: {}",
                trial.seed,
                bans.join(", ")
            );
        }
    }
    if report.scenario.crashes.is_some() {
        println!(
            "crashes at random moments: {}; honest origins quarantined at honest nodes: {}; \
             honest nodes that had to stop signing: {}",
            s.crashes, s.honest_quarantined, s.honest_halted
        );
    }
    if s.frames_over_budget > 0 {
        println!(
            "frames from honest peers dropped because their work budget was spent: {}",
            s.frames_over_budget
        );
    }
    if let Some(idle) = s.idle_bytes_per_exchange {
        println!("bytes per exchange once converged: {idle:.1}");
    }
    if let (Some(cost), Some(refresh)) = (s.refresh, report.scenario.refresh) {
        println!(
            "refreshes: {:.0} records a trial, {:.0} bytes each over all nodes (idle gossip included); \
             at one record per node every {} rounds of {} ms, each node sends {:.0} B/s in {:.1} messages/s \
             and checks {:.2} signatures/s",
            cost.records,
            cost.bytes_per_record,
            refresh.every_rounds,
            report.scenario.interval_ms,
            cost.bytes_per_node_s,
            cost.messages_per_node_s,
            cost.checks_per_node_s
        );
    }
    if let (Some(redundancy), Some(worst), Some(mean)) =
        (s.redundancy, s.last_delivery_hop, s.mean_last_delivery_hop)
    {
        println!(
            "redundancy (record copies received per first delivery, minus one): {redundancy:.2}; \
             last delivery hop: worst {worst}, mean over records {mean:.1}"
        );
    }
    println!(
        "engine: {}",
        match report.engine {
            sim::Engine::Compact => "compact (anti-entropy over shared holdings)",
            _ => "state machine (every node runs the protocol)",
        }
    );
    println!(
        "master seed {} (the same seed reproduces every trial exactly)",
        report.seed
    );
}

fn idle_costs(sizes: &[usize], json: bool) -> anyhow::Result<ExitCode> {
    let mut costs = Vec::new();
    for &size in sizes {
        if !(2..=200_000).contains(&size) {
            bail!("--records must be between 2 and 200000");
        }
        let federation = sim::world::Federation::new(size, 7);
        let records = idle::records(&federation);
        for difference in [0, 1, 10] {
            costs.push(idle::exchange_cost(&federation, &records, difference));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&costs)?);
    } else {
        println!("records  difference  messages  digest bytes  total bytes");
        for cost in costs {
            println!(
                "{:>7}  {:>10}  {:>8}  {:>12}  {:>11}",
                cost.records, cost.difference, cost.messages, cost.digest_bytes, cost.bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Peak resident memory of this process (Linux), from /proc/self/status.
fn peak_memory_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
