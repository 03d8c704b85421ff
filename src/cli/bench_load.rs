//! `tidings bench load`: one origin publishing as fast as it can while the others
//! publish normally, over QUIC on loopback.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tidings::keys::{FederationId, Identity, Roster};
use tidings::net::node::{Node, NodeConfig, NodeHandle};
use tidings::net::transport::{send_frame, Transport};
use tidings::proto::wire::Message;
use tidings::proto::{Announcement, GossipConfig, Record, Specialist, VerifiedRecord};

#[derive(Debug, Serialize)]
pub(crate) struct LoadBench {
    flood_records_sent: usize,
    flood_seconds: f64,
    flood_records_per_second: f64,
    accepted_from_flooding_origin: u64,
    rate_limited: u64,
    /// Every verdict the target reached, by kind.
    verdicts: Vec<(String, u64)>,
    honest_update_converged_ms: Option<f64>,
    target_records_held: usize,
    peak_memory_bytes: Option<u64>,
    memory_before_bytes: Option<u64>,
}

impl LoadBench {
    pub(crate) fn print(&self) {
        println!("load benchmark (QUIC on loopback, one run)");
        println!(
            "  one origin sent {} records in {:.2} s ({:.0}/s) to the target node",
            self.flood_records_sent, self.flood_seconds, self.flood_records_per_second
        );
        println!(
            "  the target accepted {} of them; {} were rate-limited",
            self.accepted_from_flooding_origin, self.rate_limited
        );
        match self.honest_update_converged_ms {
            Some(ms) => println!(
                "  an honest update published meanwhile reached every honest node in {ms:.0} ms"
            ),
            None => println!("  an honest update did NOT reach every honest node"),
        }
        println!(
            "  target holds {} records; process memory {} before, {} at peak",
            self.target_records_held,
            mib(self.memory_before_bytes),
            mib(self.peak_memory_bytes)
        );
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.0} MiB", b as f64 / 1_048_576.0))
        .unwrap_or_else(|| "unknown".into())
}

/// Resident memory (current, or peak with `peak`) of this process, from /proc.
pub(crate) fn memory(peak: bool) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = if peak { "VmHWM:" } else { "VmRSS:" };
    let line = status.lines().find(|line| line.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// A specialist of capability `load` (the load and bulk benchmarks' records).
pub(crate) fn specialist(name: &str) -> Specialist {
    Specialist {
        name: name.into(),
        capabilities: vec!["load".into()],
        endpoint: format!("https://{name}.example/api"),
        meta: Default::default(),
    }
}

fn config(
    dir: &Path,
    identity: Arc<Identity>,
    roster: &Roster,
    bootstrap: Vec<(tidings::keys::NodeId, std::net::SocketAddr)>,
) -> NodeConfig {
    NodeConfig {
        bootstrap,
        gossip: GossipConfig {
            interval_ms: 200,
            ..GossipConfig::default()
        },
        specialists: vec![specialist("honest")],
        new_node: true,
        ..NodeConfig::new(
            dir.join(identity.node_id().short()),
            identity,
            "load",
            roster.clone(),
        )
    }
}

/// Runs the load scenario with `records` flood records.
pub(crate) async fn run(records: usize) -> anyhow::Result<LoadBench> {
    let scratch = super::interrupt::ScratchDir::new("bench-load")?;
    let result = measure(scratch.path(), records).await;
    result
}

async fn measure(temp: &Path, records: usize) -> anyhow::Result<LoadBench> {
    let identities: Vec<Arc<Identity>> = (0..4u8)
        .map(|i| Arc::new(Identity::from_seed(&[100 + i; 32])))
        .collect();
    let roster: Roster = identities
        .iter()
        .map(|identity| identity.node_id())
        .collect();
    let flooder = identities[3].clone();
    let federation = FederationId::from_name("load");
    // The flooding origin's chain, signed up front.
    let mut chain = Vec::with_capacity(records);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let mut previous = VerifiedRecord::sign(
        &flooder,
        Record::first(
            federation,
            flooder.node_id(),
            Announcement {
                addrs: vec![],
                specialists: vec![specialist("v0")],
            },
            now,
            600_000,
        ),
    )?;
    chain.push(previous.wire_bytes().to_vec());
    for version in 1..records {
        previous = VerifiedRecord::sign(
            &flooder,
            Record::next(
                &previous,
                Announcement {
                    addrs: vec![],
                    specialists: vec![specialist(&format!("v{version}"))],
                },
                now,
                600_000,
            ),
        )?;
        chain.push(previous.wire_bytes().to_vec());
    }
    let memory_before = memory(false);
    let target = Node::spawn(config(temp, identities[0].clone(), &roster, vec![])).await?;
    let bootstrap = vec![(target.node_id(), target.local_addr())];
    let others: Vec<NodeHandle> = vec![
        Node::spawn(config(
            temp,
            identities[1].clone(),
            &roster,
            bootstrap.clone(),
        ))
        .await?,
        Node::spawn(config(temp, identities[2].clone(), &roster, bootstrap)).await?,
    ];
    // Fresh nodes with a bootstrap peer hear it before they sign.
    for node in &others {
        node.ready().await?;
    }
    let shared = Arc::new(RwLock::new(roster.clone()));
    let transport = Transport::bind(&flooder, shared, "127.0.0.1:0".parse()?)?;
    let connection = transport
        .dial(target.node_id(), target.local_addr())
        .await?;
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        for batch in chain.chunks(50) {
            if send_frame(&connection, &Message::Records(batch.to_vec()).encode())
                .await
                .is_err()
            {
                break;
            }
        }
        // Dropping the connection would discard what is still in flight.
        connection
    });
    // Meanwhile an honest node publishes an update.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let update = others[0].announce(specialist("update")).await?;
    let update_started = Instant::now();
    let mut converged = None;
    while update_started.elapsed() < Duration::from_secs(30) {
        let mut everywhere = true;
        for node in std::iter::once(&target).chain(others.iter()) {
            let current = node.record(update.origin()).await?;
            if current.is_none_or(|r| r.id() != update.id()) {
                everywhere = false;
            }
        }
        if everywhere {
            converged = Some(update_started.elapsed().as_secs_f64() * 1000.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connection = flood.await.context("the flooding task failed")?;
    let flood_seconds = started.elapsed().as_secs_f64();
    // Wait until every flood record has its verdict (up to 20 s).
    let mut stats = target.stats().await?;
    let waited = Instant::now();
    while stats.verdicts.iter().map(|(_, n)| *n).sum::<u64>() < records as u64
        && waited.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = target.stats().await?;
    }
    let verdict = |kind: &str| {
        stats
            .verdicts
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    let accepted_from_flooder = target
        .audit_log()?
        .query(&tidings::audit::Query {
            origin: Some(flooder.node_id()),
            kind: Some(tidings::audit::EntryKind::Accepted),
            limit: usize::MAX,
            ..Default::default()
        })?
        .len() as u64;
    drop(connection);
    let result = LoadBench {
        flood_records_sent: records,
        flood_seconds,
        flood_records_per_second: records as f64 / flood_seconds,
        accepted_from_flooding_origin: accepted_from_flooder,
        rate_limited: verdict("rate_limited"),
        verdicts: stats.verdicts.clone(),
        honest_update_converged_ms: converged,
        target_records_held: stats.records,
        peak_memory_bytes: memory(true),
        memory_before_bytes: memory_before,
    };
    target.shutdown().await?;
    for node in others {
        node.shutdown().await?;
    }
    Ok(result)
}
