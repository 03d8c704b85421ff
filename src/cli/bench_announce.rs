//! `tidings bench announce`: what durability costs an announcement.
//!
//! One node (a real `Node::spawn`, its store and audit log on disk) takes
//! announcements one after another through its client, as the API does; each
//! answer comes only once the signed record and its audit entry are synced. The
//! latency of each is recorded, in several rounds; the report gives the median and
//! 99th percentile over all of them, the spread of the rounds' medians, and the
//! mean time the node spent syncing (the part durability adds).

use std::sync::Arc;
use std::time::Instant;

use rand::rngs::OsRng;
use serde::Serialize;
use tidings::keys::{Identity, Roster};
use tidings::net::node::{Node, NodeConfig};
use tidings::proto::rate::RateLimit;
use tidings::proto::Specialist;

use super::interrupt::ScratchDir;

/// The figures.
#[derive(Debug, Serialize)]
pub(crate) struct AnnounceBench {
    pub(crate) announcements: usize,
    pub(crate) rounds: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) round_p50_min_ms: f64,
    pub(crate) round_p50_max_ms: f64,
    pub(crate) sync_mean_ms: f64,
    pub(crate) announcements_per_second: f64,
}

fn percentile(sorted: &[f64], share: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * share).round() as usize;
    sorted.get(at).copied().unwrap_or(0.0)
}

/// `count` announcements in each of `rounds` rounds.
pub(crate) async fn run(count: usize, rounds: usize) -> anyhow::Result<AnnounceBench> {
    let scratch = ScratchDir::new("bench-announce")?;
    let identity = Arc::new(Identity::generate(&mut OsRng));
    let roster: Roster = [identity.node_id()].into_iter().collect();
    let node = Node::spawn(NodeConfig {
        origin_rate: RateLimit {
            burst: u32::MAX,
            per_minute: u32::MAX,
        },
        new_node: true,
        ..NodeConfig::new(scratch.path().join("node"), identity, "bench", roster)
    })
    .await?;
    node.ready().await?;
    let mut all = Vec::with_capacity(count * rounds);
    let mut medians = Vec::with_capacity(rounds);
    let started = Instant::now();
    for round in 0..rounds {
        let mut latencies = Vec::with_capacity(count);
        for index in 0..count {
            let specialist = Specialist {
                name: format!("slot-{}", index % 16),
                capabilities: vec!["bench".into()],
                endpoint: format!("https://bench.example/{round}/{index}"),
                meta: Default::default(),
            };
            let asked = Instant::now();
            node.announce(specialist).await?;
            latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        medians.push(percentile(&latencies, 0.5));
        all.extend(latencies);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = node.stats().await?;
    node.shutdown().await?;
    all.sort_by(f64::total_cmp);
    medians.sort_by(f64::total_cmp);
    Ok(AnnounceBench {
        announcements: all.len(),
        rounds,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        round_p50_min_ms: medians.first().copied().unwrap_or(0.0),
        round_p50_max_ms: medians.last().copied().unwrap_or(0.0),
        sync_mean_ms: stats.persist_seconds * 1000.0 / stats.persisted.max(1) as f64,
        announcements_per_second: all.len() as f64 / elapsed,
    })
}

impl AnnounceBench {
    pub(crate) fn print(&self) {
        println!(
            "announcement latency, durable before the answer ({} in {} rounds)",
            self.announcements, self.rounds
        );
        println!("  p50                          {:>8.2} ms", self.p50_ms);
        println!("  p99                          {:>8.2} ms", self.p99_ms);
        println!(
            "  rounds' medians              {:>8.2} .. {:.2} ms",
            self.round_p50_min_ms, self.round_p50_max_ms
        );
        println!(
            "  of which syncing (mean)      {:>8.2} ms  (store and audit log, in parallel)",
            self.sync_mean_ms
        );
        println!(
            "  announcements per second     {:>8.0}",
            self.announcements_per_second
        );
    }
}
