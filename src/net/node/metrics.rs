//! Counters and gauges of a node, for `GET /metrics` and the benchmarks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tidings_keys::NodeId;

/// Upper bounds (ms) of the exchange latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 11] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

/// Counters and gauges for metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeStats {
    /// Records held.
    pub records: usize,
    /// Origins quarantined.
    pub quarantined: usize,
    /// Verdicts reached, by kind.
    pub verdicts: Vec<(String, u64)>,
    /// Open connections.
    pub connections: usize,
    /// Frame bytes sent.
    pub bytes_sent: u64,
    /// Frame bytes received.
    pub bytes_received: u64,
    /// Exchanges opened.
    pub exchanges: u64,
    /// Neighbour links for spreading: eager, lazy.
    pub links: (usize, usize),
    /// Announced records asked for because the eager path had not brought them.
    pub grafts: u64,
    /// Pushes of nothing new, answered with a prune.
    pub pushes_pruned: u64,
    /// Exchange latency: counts per bucket of [`LATENCY_BUCKETS_MS`] (cumulative
    /// counts are computed by the exporter), plus the overflow bucket.
    pub latency_buckets: Vec<u64>,
    /// Sum of observed latencies, seconds.
    pub latency_sum_seconds: f64,
    /// Audit entries written.
    pub audit_entries: u64,
    /// Audit entries queued but not yet written.
    pub audit_lag: u64,
    /// Records this node signed (or took back) and made durable.
    pub persisted: u64,
    /// Time spent making them durable (store and audit log synced), seconds.
    pub persist_seconds: f64,
    /// Bytes of received frames waiting for the node.
    pub inbox_bytes: usize,
    /// Frames dropped unread because their peer had spent its work budget.
    pub frames_over_budget: u64,
    /// Bytes queued for sending to peers, not yet handed to QUIC.
    pub send_queue_bytes: usize,
    /// Frames not sent because their peer's send queue was full.
    pub send_queue_dropped: u64,
    /// Signatures of received records and proofs checked.
    pub signature_checks: u64,
    /// Messages handed to the send queues, by kind (a frame carries one
    /// message; frames a full queue dropped are counted in `send_queue_dropped`).
    pub messages_sent: Vec<(String, u64)>,
}

/// Bytes moved, counted by the network tasks.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
}

impl Traffic {
    pub(super) fn add_sent(&self, bytes: usize) {
        self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn add_received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Exchange latency: from opening an exchange to the peer's first answer.
#[derive(Debug)]
pub(super) struct Latency {
    opened: HashMap<NodeId, Instant>,
    buckets: Vec<u64>,
    sum_seconds: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            opened: HashMap::new(),
            buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            sum_seconds: 0.0,
        }
    }
}

impl Latency {
    pub(super) fn opened(&mut self, peer: NodeId) {
        self.opened.entry(peer).or_insert_with(Instant::now);
    }

    pub(super) fn answered(&mut self, peer: &NodeId) {
        if let Some(opened) = self.opened.remove(peer) {
            let elapsed = opened.elapsed();
            let ms = elapsed.as_millis() as u64;
            let bucket = LATENCY_BUCKETS_MS
                .iter()
                .position(|&bound| ms <= bound)
                .unwrap_or(LATENCY_BUCKETS_MS.len());
            self.buckets[bucket] += 1;
            self.sum_seconds += elapsed.as_secs_f64();
        }
    }

    pub(super) fn fill(&self, stats: &mut NodeStats) {
        stats.latency_buckets = self.buckets.clone();
        stats.latency_sum_seconds = self.sum_seconds;
    }
}
