//! `tidings bench net`: the network path measured on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bench_bulk::Bulk;
use super::fleet::{self, Fleet, FleetSpec};

#[derive(Debug, Serialize)]
pub(crate) struct NetBench {
    bulk: Bulk,
    /// One federation of real processes per (nodes, interval).
    spread: Vec<Spread>,
}

/// A median with its lowest and highest value and every run.
#[derive(Debug, Serialize)]
pub(crate) struct Spreadout {
    median: f64,
    min: f64,
    max: f64,
    runs: Vec<f64>,
}

impl Spreadout {
    pub(crate) fn of(runs: Vec<f64>) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let pick = |i: usize| sorted.get(i).copied().unwrap_or(f64::NAN);
        Self {
            median: pick(sorted.len() / 2),
            min: pick(0),
            max: pick(sorted.len().saturating_sub(1)),
            runs: runs.iter().map(|v| (v * 1000.0).round() / 1000.0).collect(),
        }
    }
}

impl Spreadout {
    /// The median.
    pub(crate) fn median(&self) -> f64 {
        self.median
    }

    /// Shown with `decimals` decimals (the default display has one).
    pub(crate) fn with_decimals(&self, decimals: usize) -> impl std::fmt::Display + '_ {
        Shown(self, decimals)
    }
}

struct Shown<'a>(&'a Spreadout, usize);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (spread, decimals) = (self.0, self.1);
        write!(
            f,
            "median {:.decimals$} (from {:.decimals$} to {:.decimals$}, {} runs)",
            spread.median,
            spread.min,
            spread.max,
            spread.runs.len()
        )
    }
}

impl std::fmt::Display for Spreadout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_decimals(1).fmt(f)
    }
}

/// Spreading in one federation of real `tidings run` processes on loopback.
#[derive(Debug, Serialize)]
struct Spread {
    nodes: usize,
    interval_ms: u64,
    /// From starting the processes until every node held every node's record.
    start_seconds: f64,
    /// One new record, from the request to its node until the last node's watch
    /// stream reported it.
    one_record_ms: Spreadout,
    /// Of that, until the node answered the request: its record and audit
    /// entry durable (the record leaves the node only then).
    one_record_answered_ms: Spreadout,
    /// Every node announcing at once, until every node held every announcement.
    all_publish_ms: Spreadout,
    /// Of that, until every node had answered its request (its record and
    /// audit entry durable).
    all_publish_answered_ms: Spreadout,
    /// CPU every node together spent per burst (from its start until every
    /// node held every announcement), seconds: on a machine with fewer cores
    /// than processes, the burst takes at least this over the cores.
    cpu_seconds_per_burst: Spreadout,
    /// CPU one new record costs each node (everything each process did while
    /// it spread, less the idle rate), milliseconds.
    cpu_ms_per_record_per_node: f64,
    /// A converged, idle federation: CPU seconds per node per minute (the
    /// spread is over nodes).
    idle_cpu_seconds_per_minute: Spreadout,
    /// Bytes sent per node per second while idle (the spread is over nodes).
    idle_bytes_per_second: Spreadout,
    idle_seconds: u64,
    /// Over the whole run, per node: records asked for after an announcement
    /// because the eager path had not brought them, and pushes pruned.
    grafts_per_node: f64,
    pruned_per_node: f64,
    /// Over the whole run, per node: the mean time its actor waited for one of
    /// its own records to become durable (store and audit synced), during
    /// which it handles no other input, milliseconds (the spread is over nodes).
    own_persist_ms: Spreadout,
    /// Over the whole run, per node: messages sent, by kind.
    messages_per_node: std::collections::BTreeMap<String, f64>,
}

impl NetBench {
    pub(crate) fn print(&self) {
        println!("network benchmark (QUIC + mutual TLS on loopback, one run)");
        self.bulk.print();
        for spread in &self.spread {
            println!(
                "  {} processes at a {} ms interval (converged {:.1} s after start):",
                spread.nodes, spread.interval_ms, spread.start_seconds
            );
            println!(
                "    one new record reaches every node, ms: {}",
                spread.one_record_ms
            );
            println!(
                "      of which its node's durable answer:  {}",
                spread.one_record_answered_ms
            );
            println!(
                "    CPU per node per new record:           {:.2} ms",
                spread.cpu_ms_per_record_per_node
            );
            println!(
                "    every node publishing at once, ms:     {}",
                spread.all_publish_ms
            );
            println!(
                "      of which every node's durable answer: {}",
                spread.all_publish_answered_ms
            );
            println!(
                "      CPU of all nodes per burst, s:     {}",
                spread.cpu_seconds_per_burst.with_decimals(2)
            );
            println!(
                "    idle, CPU s per node per minute:       {}",
                spread.idle_cpu_seconds_per_minute
            );
            println!(
                "    idle, bytes sent per node per second:  {}",
                spread.idle_bytes_per_second
            );
            println!(
                "    per node over the run: {:.1} grafts, {:.1} pushes pruned",
                spread.grafts_per_node, spread.pruned_per_node
            );
            println!(
                "    own record made durable, ms per record: {}",
                spread.own_persist_ms
            );
            let sent: Vec<String> = spread
                .messages_per_node
                .iter()
                .map(|(kind, count)| format!("{count:.0} {kind}"))
                .collect();
            println!(
                "    messages sent per node over the run: {}",
                sent.join(", ")
            );
        }
    }
}

/// What `tidings bench net` measures.
#[derive(Debug, Clone)]
pub(crate) struct NetPlan {
    pub(crate) records: usize,
    pub(crate) bulk_runs: usize,
    pub(crate) nodes: Vec<usize>,
    pub(crate) intervals_ms: Vec<u64>,
    pub(crate) repeat: usize,
    pub(crate) bursts: usize,
    pub(crate) idle_seconds: u64,
}

pub(crate) async fn run(plan: &NetPlan) -> anyhow::Result<NetBench> {
    anyhow::ensure!(
        plan.nodes.iter().all(|n| (2..=200).contains(n)) && plan.records >= 1,
        "--nodes must be between 2 and 200, and --records at least 1"
    );
    anyhow::ensure!(
        plan.intervals_ms.iter().all(|ms| *ms >= 10),
        "--intervals must be at least 10 ms"
    );
    let scratch = super::interrupt::ScratchDir::new("bench-net")?;
    let bulk =
        super::bench_bulk::run(&scratch.path().join("bulk"), plan.records, plan.bulk_runs).await?;
    let mut spread = Vec::new();
    for &nodes in &plan.nodes {
        for &interval_ms in &plan.intervals_ms {
            let root = scratch.path().join(format!("fleet-{nodes}-{interval_ms}"));
            std::fs::create_dir_all(&root)?;
            spread.push(measure_spread(&root, nodes, interval_ms, plan).await?);
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    Ok(NetBench { bulk, spread })
}

async fn measure_spread(
    root: &Path,
    nodes: usize,
    interval_ms: u64,
    plan: &NetPlan,
) -> anyhow::Result<Spread> {
    let spec = FleetSpec {
        nodes,
        interval_ms,
        edits: vec![],
    };
    let started = Instant::now();
    let fleet = Fleet::start(root, &spec)?;
    fleet
        .wait_converged(nodes, Duration::from_secs(30 + nodes as u64))
        .await?;
    let start_seconds = started.elapsed().as_secs_f64();
    let mut events = fleet.watch().await?;
    let limit = Duration::from_secs(30);
    let quiet = Duration::from_millis((2 * interval_ms).max(300));
    let (mut one, mut answered) = (Vec::new(), Vec::new());
    let (mut all, mut all_answered, mut burst_cpu) = (Vec::new(), Vec::new(), Vec::new());
    // CPU of every node over each single-record run and the quiet after it,
    // with the seconds it lasted (the idle share is taken off below).
    let (mut one_cpu, mut one_seconds) = (0.0, 0.0);
    // Interleaved: a single record, then a burst, and so on.
    for run in 0..plan.repeat.max(plan.bursts) {
        if run < plan.repeat {
            let announcer = (run * 7 + 3) % nodes;
            let name = format!("needle-{run}");
            let cpu_before: f64 = fleet.cpu_seconds().iter().sum();
            let window = Instant::now();
            let timed = fleet::time_one(&fleet, &mut events, announcer, &name, limit).await?;
            one.push(timed.all_ms);
            answered.push(timed.answered_ms);
            tokio::time::sleep(quiet).await;
            one_cpu += fleet.cpu_seconds().iter().sum::<f64>() - cpu_before;
            one_seconds += window.elapsed().as_secs_f64();
        }
        if run < plan.bursts {
            let label = format!("burst-{run}");
            let cpu_before: f64 = fleet.cpu_seconds().iter().sum();
            let timed = fleet::time_burst(&fleet, &mut events, &label, limit).await?;
            burst_cpu.push(fleet.cpu_seconds().iter().sum::<f64>() - cpu_before);
            all.push(timed.all_ms);
            all_answered.push(timed.answered_ms);
            tokio::time::sleep(quiet).await;
        }
    }
    fleet.check_alive()?;
    // Idle: a few intervals to settle, then CPU and bytes over the window.
    tokio::time::sleep(Duration::from_millis(3 * interval_ms).max(Duration::from_secs(2))).await;
    let cpu_before = fleet.cpu_seconds();
    let mut bytes_before = Vec::new();
    for i in 0..nodes {
        bytes_before.push(fleet.bytes_sent(i).await?);
    }
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(plan.idle_seconds)).await;
    let cpu_after = fleet.cpu_seconds();
    let seconds = window.elapsed().as_secs_f64();
    let mut bytes_after = Vec::new();
    for i in 0..nodes {
        bytes_after.push(fleet.bytes_sent(i).await?);
    }
    fleet.check_alive()?;
    let (mut grafts, mut pruned) = (0.0, 0.0);
    let mut persist = Vec::new();
    let mut messages = std::collections::BTreeMap::<String, f64>::new();
    for i in 0..nodes {
        for (kind, count) in fleet
            .labelled(i, "tidings_messages_sent_total", "kind")
            .await?
        {
            *messages.entry(kind).or_default() += count / nodes as f64;
        }
        grafts += fleet.metric(i, "tidings_grafts_total").await?;
        pruned += fleet.metric(i, "tidings_pushes_pruned_total").await?;
        let records = fleet
            .metric(i, "tidings_own_records_persisted_total")
            .await?;
        let seconds = fleet
            .metric(i, "tidings_own_record_persist_seconds_total")
            .await?;
        if records > 0.0 {
            persist.push(seconds * 1000.0 / records);
        }
    }
    fleet.stop();
    let cpu: Vec<f64> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(before, after)| (after - before) * 60.0 / seconds)
        .collect();
    let bytes: Vec<f64> = bytes_before
        .iter()
        .zip(&bytes_after)
        .map(|(before, after)| (after - before) / seconds)
        .collect();
    let idle_cpu_per_second: f64 = cpu.iter().sum::<f64>() / 60.0;
    let record_cpu = one_cpu - idle_cpu_per_second * one_seconds;
    Ok(Spread {
        cpu_ms_per_record_per_node: record_cpu * 1000.0 / (plan.repeat * nodes) as f64,
        nodes,
        interval_ms,
        start_seconds,
        one_record_ms: Spreadout::of(one),
        one_record_answered_ms: Spreadout::of(answered),
        all_publish_ms: Spreadout::of(all),
        all_publish_answered_ms: Spreadout::of(all_answered),
        cpu_seconds_per_burst: Spreadout::of(burst_cpu),
        idle_cpu_seconds_per_minute: Spreadout::of(cpu),
        idle_bytes_per_second: Spreadout::of(bytes),
        idle_seconds: plan.idle_seconds,
        grafts_per_node: grafts / nodes as f64,
        pruned_per_node: pruned / nodes as f64,
        own_persist_ms: Spreadout::of(persist),
        messages_per_node: messages,
    })
}
