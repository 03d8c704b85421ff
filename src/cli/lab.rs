//! `tidings lab`: a federation of real `tidings run` processes whose every
//! link goes through the user-space [link emulator](super::linkemu), measured
//! as in `tidings bench net`: one new record reaching every node, every node
//! publishing at once, and a partition that heals.
//!
//! Arrival times come from the nodes' watch streams (the API is not emulated:
//! only the links between nodes are). Everything the lab starts (processes,
//! sockets, its scratch directory) ends with it, on Ctrl-C too.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::bench_net::Spreadout;
use super::fleet::{self, Fleet, FleetSpec};
use super::linkemu::{LinkCounts, LinkEmulator, LinkProfile};

/// `tidings lab` options.
#[derive(Debug, Args)]
pub(crate) struct LabArgs {
    /// Processes to start (each a `tidings run`).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Gossip interval, milliseconds.
    #[arg(long = "interval-ms", default_value_t = 1000)]
    interval_ms: u64,
    /// One-way delay of every link, milliseconds.
    #[arg(long = "delay-ms", default_value_t = 50)]
    delay_ms: u64,
    /// The delay varies uniformly by up to this much either way (this also
    /// reorders datagrams).
    #[arg(long = "jitter-ms", default_value_t = 20)]
    jitter_ms: u64,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.05)]
    loss: f64,
    /// Probability that a datagram is delivered twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a datagram is held back one more delay.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Single-record measurements (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Every-node-publishes measurements.
    #[arg(long, default_value_t = 3)]
    bursts: usize,
    /// How long the partition lasts, seconds (0: no partition measured).
    #[arg(long = "partition-seconds", default_value_t = 10)]
    partition_seconds: u64,
    /// Put each node in a Linux network namespace of its own, wired by veth
    /// pairs to a bridge in a hub namespace where the link emulator runs (every
    /// address inside the namespaces; all removed at the end). Needs root and
    /// `ip` (iproute2); without them the lab says so and runs on loopback.
    #[arg(long)]
    netns: bool,
    /// Internal: this process runs inside the hub namespace of the lab whose
    /// namespaces have this prefix.
    #[arg(long = "in-namespaces", hide = true, value_name = "PREFIX")]
    in_namespaces: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What one lab run measured.
#[derive(Debug, Serialize)]
struct LabReport {
    nodes: usize,
    /// `namespaces` (a network namespace per node) or `loopback`.
    isolation: &'static str,
    interval_ms: u64,
    links: LinkProfile,
    /// From starting the processes until every node held every node's specialist.
    start_seconds: f64,
    one_record_ms: Spreadout,
    all_publish_ms: Spreadout,
    partition: Option<PartitionReport>,
    /// Datagrams the emulator forwarded, lost, duplicated and cut.
    datagrams: LinkCounts,
}

#[derive(Debug, Serialize)]
struct PartitionReport {
    seconds: u64,
    /// Arrivals of a record on the other side during the partition (0 when the
    /// partition held).
    leaked: usize,
    /// From the heal until every node held both sides' records.
    heal_ms: f64,
}

/// Runs `tidings lab`.
pub(crate) fn run(args: &LabArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        (2..=200).contains(&args.nodes),
        "--nodes must be between 2 and 200"
    );
    anyhow::ensure!(args.interval_ms >= 10, "--interval-ms must be at least 10");
    let profile = LinkProfile {
        delay_ms: args.delay_ms,
        jitter_ms: args.jitter_ms,
        loss: args.loss,
        duplicate: args.duplicate,
        reorder: args.reorder,
    };
    profile.validate()?;
    if args.netns && args.in_namespaces.is_none() {
        match super::netns::check() {
            Ok(()) => return in_namespaces(args),
            Err(reason) => eprintln!(
                "--netns: {reason} to make network namespaces; running every node on loopback instead"
            ),
        }
    }
    let runtime = super::runtime()?;
    let report = runtime.block_on(lab(args, profile))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Makes the namespaces, runs the lab again inside the hub namespace, and
/// removes the namespaces when it ends (or on Ctrl-C).
fn in_namespaces(args: &LabArgs) -> anyhow::Result<std::process::ExitCode> {
    if !args.json {
        eprintln!(
            "making {} network namespaces (one per node, and a hub)",
            args.nodes + 1
        );
    }
    let namespaces = super::netns::Namespaces::create(args.nodes)?;
    let exe = std::env::current_exe().context("cannot find this program's executable")?;
    let forwarded: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--netns")
        .collect();
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &namespaces.hub()])
        .arg(exe)
        .args(forwarded)
        .args(["--in-namespaces", namespaces.prefix()])
        .spawn()
        .context("cannot start the lab inside its hub namespace")?;
    // On a signal to this process alone, the lab inside stops its nodes first
    // (SIGTERM runs its own hooks), then the namespaces go.
    let pid = child.id();
    super::interrupt::on_interrupt(Box::new(move || {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && std::path::Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }));
    let mut child = child;
    let status = child.wait().context("the lab inside its hub namespace")?;
    drop(namespaces);
    Ok(match status.code() {
        Some(0) => std::process::ExitCode::SUCCESS,
        Some(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => std::process::ExitCode::from(1),
    })
}

async fn lab(args: &LabArgs, profile: LinkProfile) -> anyhow::Result<LabReport> {
    let nodes = args.nodes;
    let scratch = super::interrupt::ScratchDir::new("lab")?;
    let spec = FleetSpec {
        nodes,
        interval_ms: args.interval_ms,
        edits: vec![],
    };
    let (prepared, at, isolation) = match &args.in_namespaces {
        None => (
            Fleet::prepare(scratch.path(), &spec)?,
            std::net::Ipv4Addr::LOCALHOST,
            "loopback",
        ),
        Some(prefix) => {
            let placed = (0..nodes)
                .map(|i| (format!("{prefix}-{i}"), super::netns::node_address(i)))
                .collect();
            (
                Fleet::prepare_in_namespaces(scratch.path(), &spec, placed)?,
                super::netns::HUB_ADDRESS,
                "namespaces",
            )
        }
    };
    let real = prepared
        .members
        .iter()
        .map(|member| member.listen)
        .collect();
    let emulator = LinkEmulator::start(real, profile, at.into()).await?;
    let faces: Vec<_> = (0..nodes).map(|i| emulator.face(i)).collect();
    if !args.json {
        eprintln!(
            "starting {nodes} processes; every link: {} ms ± {} ms, {:.1}% loss, {:.1}% duplicated, {:.1}% held back",
            profile.delay_ms,
            profile.jitter_ms,
            profile.loss * 100.0,
            profile.duplicate * 100.0,
            profile.reorder * 100.0
        );
    }
    let started = Instant::now();
    let fleet = prepared.launch(Some(&faces))?;
    fleet
        .wait_converged(nodes, Duration::from_secs(60 + nodes as u64))
        .await?;
    let start_seconds = started.elapsed().as_secs_f64();
    let mut events = fleet.watch().await?;
    let limit = Duration::from_secs(60);
    let quiet = Duration::from_millis((2 * args.interval_ms).max(500));
    let (mut one, mut all) = (Vec::new(), Vec::new());
    for run in 0..args.repeat.max(args.bursts) {
        if run < args.repeat {
            let name = format!("needle-{run}");
            let announcer = (run * 7 + 3) % nodes;
            one.push(
                fleet::time_one(&fleet, &mut events, announcer, &name, limit)
                    .await?
                    .all_ms,
            );
            tokio::time::sleep(quiet).await;
        }
        if run < args.bursts {
            let label = format!("burst-{run}");
            all.push(
                fleet::time_burst(&fleet, &mut events, &label, limit)
                    .await?
                    .all_ms,
            );
            tokio::time::sleep(quiet).await;
        }
    }
    let partition = if args.partition_seconds > 0 {
        Some(partition(&fleet, &emulator, &mut events, args.partition_seconds).await?)
    } else {
        None
    };
    fleet.check_alive()?;
    let datagrams = emulator.counts();
    fleet.stop();
    Ok(LabReport {
        nodes,
        isolation,
        interval_ms: args.interval_ms,
        links: profile,
        start_seconds,
        one_record_ms: Spreadout::of(one),
        all_publish_ms: Spreadout::of(all),
        partition,
        datagrams,
    })
}

/// Splits the nodes into two halves (even and odd), announces one record on
/// each side, holds the partition for `seconds`, heals it and times until
/// every node holds both records.
async fn partition(
    fleet: &Fleet,
    emulator: &LinkEmulator,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<fleet::Seen>,
    seconds: u64,
) -> anyhow::Result<PartitionReport> {
    let nodes = fleet.members.len();
    let side = |i: usize| i % 2 == 1;
    emulator.partition((0..nodes).map(side).collect());
    let names = ["split-even".to_string(), "split-odd".to_string()];
    fleet.announce(0, &names[0]).await?;
    fleet.announce(1, &names[1]).await?;
    let mut seen = vec![[None::<u64>; 2]; nodes];
    let mut leaked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Some(which) = names.iter().position(|name| *name == event.name) {
            if seen[event.node][which].is_none() {
                seen[event.node][which] = Some(event.at_ms);
                // Record `which` was announced on side `which == 1`.
                if side(event.node) != (which == 1) {
                    leaked += 1;
                }
            }
        }
    }
    let healed = fleet::wall_ms();
    emulator.heal();
    let limit = Duration::from_secs(60);
    let started = Instant::now();
    while seen.iter().any(|slots| slots.iter().any(Option::is_none)) {
        let left = limit.saturating_sub(started.elapsed());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the healed partition did not converge within {limit:?}"))?
            .ok_or_else(|| anyhow::anyhow!("every watch stream ended"))?;
        if let Some(which) = names.iter().position(|name| *name == event.name) {
            let slot = &mut seen[event.node][which];
            if slot.is_none() {
                *slot = Some(event.at_ms);
            }
        }
    }
    let last = seen
        .iter()
        .flatten()
        .flatten()
        .max()
        .copied()
        .unwrap_or(healed);
    Ok(PartitionReport {
        seconds,
        leaked,
        heal_ms: last.saturating_sub(healed) as f64,
    })
}

fn print(report: &LabReport) {
    let links = &report.links;
    println!(
        "lab: {} processes ({}) at a {} ms interval; every link {} ms ± {} ms, {:.1}% loss, {:.1}% duplicated, {:.1}% held back",
        report.nodes,
        match report.isolation {
            "namespaces" => "each in a network namespace of its own",
            _ => "on loopback",
        },
        report.interval_ms,
        links.delay_ms,
        links.jitter_ms,
        links.loss * 100.0,
        links.duplicate * 100.0,
        links.reorder * 100.0
    );
    println!("  converged {:.1} s after start", report.start_seconds);
    println!(
        "  one new record reaches every node, ms: {}",
        report.one_record_ms
    );
    println!(
        "  every node publishing at once, ms:     {}",
        report.all_publish_ms
    );
    if let Some(partition) = &report.partition {
        println!(
            "  partition of {} s (even and odd nodes): {} arrivals across it; after healing, every node held both sides' records in {:.0} ms",
            partition.seconds, partition.leaked, partition.heal_ms
        );
    }
    let d = &report.datagrams;
    println!(
        "  datagrams: {} forwarded, {} lost, {} duplicated, {} cut by the partition, {} from unknown addresses",
        d.forwarded, d.lost, d.duplicated, d.partitioned, d.strangers
    );
}
