//! `tidings bench net`: the network path measured on loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tidings::keys::{Identity, Roster};
use tidings::net::node::{Lookup, Node, NodeConfig, NodeHandle};
use tidings::net::store::DirectoryStore;
use tidings::proto::{Announcement, GossipConfig, Record, Specialist, VerifiedRecord};

#[derive(Debug, Serialize)]
pub(crate) struct NetBench {
    records: usize,
    /// From starting the empty node (including its wait for its first round).
    transfer_seconds: f64,
    /// From the first record received to the last.
    streaming_seconds: f64,
    /// Records over `streaming_seconds`.
    records_per_second: f64,
    nodes: usize,
    interval_ms: u64,
    spread_ms_median: f64,
    spread_intervals_median: f64,
    spread_ms_runs: Vec<f64>,
}

impl NetBench {
    pub(crate) fn print(&self) {
        println!("network benchmark (QUIC + mutual TLS on loopback, one run)");
        println!(
            "  {} records pulled by an empty node from a full one: {:.0} records/s ({:.2} s from the first record to the last; {:.2} s from starting the node)",
            self.records, self.records_per_second, self.streaming_seconds, self.transfer_seconds
        );
        println!(
            "  a new record reaches all {} nodes at a {} ms interval: median {:.0} ms = {:.1} intervals (runs: {:?})",
            self.nodes, self.interval_ms, self.spread_ms_median, self.spread_intervals_median, self.spread_ms_runs
        );
    }
}

fn specialist(name: &str, capability: &str) -> Specialist {
    Specialist {
        name: name.into(),
        capabilities: vec![capability.into()],
        endpoint: format!("https://{name}.example/api"),
        meta: Default::default(),
    }
}

fn config(
    dir: &Path,
    name: &str,
    identity: Arc<Identity>,
    roster: &Roster,
    interval_ms: u64,
) -> NodeConfig {
    NodeConfig {
        gossip: GossipConfig {
            interval_ms,
            ..GossipConfig::default()
        },
        specialists: vec![specialist(name, "bench")],
        new_node: true,
        ..NodeConfig::new(dir.join(name), identity, "bench", roster.clone())
    }
}

async fn holding(node: &NodeHandle, capability: &str) -> usize {
    node.lookup(Lookup {
        capability: Some(capability.into()),
        name: None,
    })
    .await
    .map(|found| found.len())
    .unwrap_or(0)
}

async fn wait_for(
    nodes: &[NodeHandle],
    capability: &str,
    count: usize,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let mut done = true;
        for node in nodes {
            if holding(node, capability).await < count {
                done = false;
                break;
            }
        }
        if done {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < limit, "not converged within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn run(
    records: usize,
    nodes: usize,
    interval_ms: u64,
    repeat: usize,
) -> anyhow::Result<NetBench> {
    anyhow::ensure!(
        nodes >= 2 && records >= 1,
        "--nodes must be at least 2 and --records at least 1"
    );
    let scratch = super::interrupt::ScratchDir::new("bench-net")?;
    let result = measure(scratch.path(), records, nodes, interval_ms, repeat).await;
    result
}

async fn measure(
    temp: &Path,
    records: usize,
    nodes: usize,
    interval_ms: u64,
    repeat: usize,
) -> anyhow::Result<NetBench> {
    // Transfer: node A holds `records` records of as many origins; B starts empty.
    let federation = tidings::keys::FederationId::from_name("bench");
    let (a, b) = (
        Arc::new(Identity::from_seed(&[1; 32])),
        Arc::new(Identity::from_seed(&[2; 32])),
    );
    let origins: Vec<Identity> = (0..records as u64)
        .map(|i| {
            Identity::from_seed(&blake3::derive_key(
                "tidings bench net origin",
                &i.to_le_bytes(),
            ))
        })
        .collect();
    let mut roster: Roster = origins.iter().map(Identity::node_id).collect();
    roster.insert(a.node_id(), None);
    roster.insert(b.node_id(), None);
    let store = DirectoryStore::open(&temp.join("a").join("store"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    for (index, origin) in origins.iter().enumerate() {
        let announcement = Announcement {
            addrs: vec![],
            specialists: vec![specialist(&format!("s{index}"), "load")],
        };
        let record = VerifiedRecord::sign(
            origin,
            Record::first(federation, origin.node_id(), announcement, now, 3_600_000),
        )?;
        store.put_record(&record.origin(), record.wire_bytes())?;
    }
    store.flush()?;
    drop(store);
    let full = Node::spawn(config(temp, "a", a, &roster, 1000)).await?;
    let mut empty_config = config(temp, "b", b, &roster, 1000);
    empty_config.bootstrap = vec![(full.node_id(), full.local_addr())];
    let started = Instant::now();
    let empty = Node::spawn(empty_config).await?;
    let mut first_seen = None;
    loop {
        let held = holding(&empty, "load").await;
        if held > 0 && first_seen.is_none() {
            first_seen = Some(Instant::now());
        }
        if held >= records {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "transfer not done within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let transfer = started.elapsed();
    let streaming = first_seen.map(|first| first.elapsed()).unwrap_or(transfer);
    let pulled = [empty];
    let [empty] = pulled;
    empty.shutdown().await?;
    full.shutdown().await?;

    // Spread: a new record on one of `nodes` nodes, until all hold it.
    let identities: Vec<Arc<Identity>> = (0..nodes as u64)
        .map(|i| {
            Arc::new(Identity::from_seed(&blake3::derive_key(
                "tidings bench net node",
                &i.to_le_bytes(),
            )))
        })
        .collect();
    let roster: Roster = identities
        .iter()
        .map(|identity| identity.node_id())
        .collect();
    let first = Node::spawn(config(
        temp,
        "m0",
        identities[0].clone(),
        &roster,
        interval_ms,
    ))
    .await?;
    let bootstrap = vec![(first.node_id(), first.local_addr())];
    let mut running = vec![first];
    for (index, identity) in identities.iter().enumerate().skip(1) {
        let mut node_config = config(
            temp,
            &format!("m{index}"),
            identity.clone(),
            &roster,
            interval_ms,
        );
        node_config.bootstrap = bootstrap.clone();
        running.push(Node::spawn(node_config).await?);
    }
    wait_for(&running, "bench", nodes, Duration::from_secs(60)).await?;
    let mut runs = Vec::new();
    for run in 0..repeat {
        let announcer = &running[(run * 7 + 3) % nodes];
        let capability = format!("needle-{run}");
        let started = Instant::now();
        announcer
            .announce(specialist(&format!("needle-{run}"), &capability))
            .await?;
        wait_for(&running, &capability, 1, Duration::from_secs(60)).await?;
        runs.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for node in running {
        node.shutdown().await?;
    }
    let mut sorted = runs.clone();
    sorted.sort_by(|x, y| x.total_cmp(y));
    let median = sorted[sorted.len() / 2];
    Ok(NetBench {
        records,
        transfer_seconds: transfer.as_secs_f64(),
        streaming_seconds: streaming.as_secs_f64(),
        records_per_second: records as f64 / streaming.as_secs_f64().max(1e-9),
        nodes,
        interval_ms,
        spread_ms_median: median,
        spread_intervals_median: median / interval_ms as f64,
        spread_ms_runs: runs.iter().map(|ms| (ms * 10.0).round() / 10.0).collect(),
    })
}
