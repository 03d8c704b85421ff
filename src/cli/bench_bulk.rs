//! Bulk transfer over QUIC between two real nodes, against the raw signature
//! check: `tidings bench net` and `tidings bench` report it.
//!
//! In each run a full node holds `records` records of as many origins, and a new,
//! empty node joins it and pulls everything; both start from new data
//! directories, so no run inherits the logs and stores of the one before.
//! Every record is verified, stored and audited on the way, as in operation.
//! The rate is timed from the first record the empty node accepted (from its
//! own stream of directory changes) until it held them all and its audit
//! writer had appended their entries. Each run is paired with a timing of
//! single-core `verify_strict` over the same records, made just before it, and
//! the ratio reported is the median of the per-run ratios (a noisy machine slows
//! both halves of a pair alike).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tidings::keys::{FederationId, Identity, Roster};
use tidings::net::node::{Lookup, Node, NodeConfig};
use tidings::net::store::DirectoryStore;
use tidings::proto::{
    Announcement, DirectoryChange, GossipConfig, Record, Specialist, VerifiedRecord,
};
use tokio::sync::broadcast::error::RecvError;

use super::bench_load::specialist;
use super::bench_net::Spreadout;

/// How long one transfer may take before the benchmark gives up.
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

/// Records pulled by an empty node from a full one over QUIC.
#[derive(Debug, Serialize)]
pub(crate) struct Bulk {
    pub(crate) records: usize,
    pub(crate) repeat: usize,
    /// Records accepted per second, from the first to the last.
    pub(crate) records_per_second: Spreadout,
    /// Single-core `verify_strict` of the same records, one timing per run.
    pub(crate) verify_strict_per_second: Spreadout,
    /// Per run, the transfer rate over the raw check rate timed beside it.
    pub(crate) ratio: Spreadout,
    /// From starting the empty node until it held every record (this includes
    /// its start, its first dial and its first exchange).
    pub(crate) transfer_seconds: Spreadout,
    /// Cores busy (CPU seconds of this process, both nodes, per second) from
    /// the first record to the last.
    pub(crate) busy_cores: Spreadout,
    /// CPU per record while streaming, by kind of thread (both nodes): the
    /// checkers verify, the runtime's workers run both actors and QUIC, the
    /// audit writers append, sled's threads write its log, and the main thread
    /// waits for the changes.
    pub(crate) cpu_us_per_record: BTreeMap<String, Spreadout>,
}

impl Bulk {
    pub(crate) fn print(&self) {
        println!(
            "  {} records pulled by an empty node from a full one, {} runs:",
            self.records, self.repeat
        );
        println!(
            "    records/s, first to last:      {}",
            self.records_per_second
        );
        println!(
            "    raw verify_strict/s, one core: {}",
            self.verify_strict_per_second
        );
        println!(
            "    ratio to raw (target >= 0.80): {}",
            self.ratio.with_decimals(3)
        );
        println!(
            "    seconds from starting the node: {}",
            self.transfer_seconds.with_decimals(2)
        );
        println!(
            "    cores busy while streaming:    {}",
            self.busy_cores.with_decimals(2)
        );
        for (kind, spread) in &self.cpu_us_per_record {
            println!("    CPU µs per record, {kind:<16} {spread}");
        }
    }
}

fn config(dir: &Path, name: &str, identity: Arc<Identity>, roster: &Roster) -> NodeConfig {
    NodeConfig {
        gossip: GossipConfig::default(),
        specialists: vec![Specialist {
            capabilities: vec!["bench".into()],
            ..specialist(name)
        }],
        new_node: true,
        ..NodeConfig::new(dir.join(name), identity, "bench", roster.clone())
    }
}

/// The raw checks of `records`: key, signed message and signature, prepared.
pub(crate) type Prepared = Vec<(
    ed25519_dalek::VerifyingKey,
    Vec<u8>,
    ed25519_dalek::Signature,
)>;

pub(crate) fn prepare(
    federation: &FederationId,
    records: &[VerifiedRecord],
) -> anyhow::Result<Prepared> {
    records
        .iter()
        .map(|record| {
            let key = record.origin().verifying_key()?;
            let message = tidings::keys::signed_message(
                tidings::keys::Domain::Record,
                federation,
                record.signed().record_bytes(),
            );
            let signature = ed25519_dalek::Signature::from_bytes(&record.signed().signature().0);
            Ok((key, message, signature))
        })
        .collect()
}

/// Single-core `verify_strict` over `prepared`, per second.
pub(crate) fn raw_rate(prepared: &Prepared) -> anyhow::Result<f64> {
    let started = Instant::now();
    for (key, message, signature) in prepared {
        key.verify_strict(message, signature)?;
    }
    Ok(prepared.len() as f64 / started.elapsed().as_secs_f64())
}

/// CPU time of this process so far by kind of thread (names without their
/// numbers), nanoseconds.
fn cpu_by_thread() -> BTreeMap<String, u64> {
    let mut by_kind = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_kind;
    };
    for task in tasks.flatten() {
        let read = |file: &str| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
        let ns: u64 = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .unwrap_or(0);
        let kind = read("comm")
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_string();
        *by_kind.entry(kind).or_default() += ns;
    }
    by_kind
}

/// CPU time of this process so far (both nodes), nanoseconds.
fn process_cpu_ns() -> u64 {
    super::fleet::process_cpu_ns(std::process::id()).unwrap_or(0)
}

/// Runs the benchmark in `temp`: `repeat` transfers of `records` records.
pub(crate) async fn run(temp: &Path, records: usize, repeat: usize) -> anyhow::Result<Bulk> {
    anyhow::ensure!(
        (100..=5_000).contains(&records),
        "bulk transfers take 100 to 5,000 records (each has its own origin on the roster)"
    );
    let repeat = repeat.max(1);
    let federation = FederationId::from_name("bench");
    // Each run is a world of its own (two new nodes, new data directories), so
    // the keys are the same in every run.
    let full_key = Arc::new(Identity::from_seed(&[1; 32]));
    let empty_key = Arc::new(Identity::from_seed(&[2; 32]));
    let origins: Vec<Identity> = (0..records as u64)
        .map(|i| {
            Identity::from_seed(&blake3::derive_key(
                "tidings bench net origin",
                &i.to_le_bytes(),
            ))
        })
        .collect();
    let mut roster: Roster = origins.iter().map(Identity::node_id).collect();
    roster.insert(full_key.node_id(), None);
    roster.insert(empty_key.node_id(), None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let signed: Vec<VerifiedRecord> = origins
        .iter()
        .enumerate()
        .map(|(index, origin)| {
            let announcement = Announcement {
                addrs: vec![],
                specialists: vec![specialist(&format!("s{index}"))],
            };
            VerifiedRecord::sign(
                origin,
                Record::first(federation, origin.node_id(), announcement, now, 3_600_000),
            )
        })
        .collect::<Result<_, _>>()?;
    let prepared = prepare(&federation, &signed)?;
    let (mut rates, mut raws, mut ratios, mut transfers, mut busy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut by_kind: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in 0..repeat {
        // The full node's directory, written to its store before it starts.
        let full_name = format!("full-{run}");
        let store = DirectoryStore::open(&temp.join(&full_name).join("store"))?;
        for record in &signed {
            store.put_record(&record.origin(), record.wire_bytes())?;
        }
        store.flush()?;
        drop(store);
        let full = Node::spawn(config(temp, &full_name, full_key.clone(), &roster)).await?;
        let raw = raw_rate(&prepared)?;
        let mut config = config(temp, &format!("empty-{run}"), empty_key.clone(), &roster);
        config.bootstrap = vec![(full.node_id(), full.local_addr())];
        let data_dir = config.data_dir.clone();
        let started = Instant::now();
        let empty = Node::spawn(config).await?;
        let mut changes = empty.subscribe();
        // Every origin's record, and the full node's own.
        let (mut added, mut first) = (0usize, None);
        let mut cpu_first = 0;
        let mut threads_first = BTreeMap::new();
        while added < records + 1 {
            let left = TRANSFER_LIMIT.saturating_sub(started.elapsed());
            let change = tokio::time::timeout(left, changes.recv())
                .await
                .map_err(|_| anyhow::anyhow!("transfer not done within {TRANSFER_LIMIT:?}"))?;
            let arrived = match change {
                Ok(DirectoryChange::Added(record)) => {
                    usize::from(record.origin() != empty.node_id())
                }
                Ok(_) => 0,
                // The stream overflowed: the changes it skipped are additions.
                Err(RecvError::Lagged(skipped)) => skipped as usize,
                Err(RecvError::Closed) => anyhow::bail!("the empty node stopped"),
            };
            if arrived > 0 {
                let at = Instant::now();
                if first.is_none() {
                    cpu_first = process_cpu_ns();
                    threads_first = cpu_by_thread();
                }
                first.get_or_insert(at);
                added += arrived;
            }
        }
        // Audited means appended: wait for the entries of the last records
        // (the writer gathers entries before it appends them), asking again
        // until a second ask finds nothing more handed over; the end is when
        // the ask that the second one confirmed returned.
        let client = empty.client();
        let mut settled: Option<(u64, Instant)> = None;
        let last = loop {
            let settle = client.clone();
            let written = tokio::task::spawn_blocking(move || settle.settle_audit()).await??;
            let at = Instant::now();
            match settled {
                Some((before, before_at)) if before == written => break Some(before_at),
                _ => settled = Some((written, at)),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let cpu_last = process_cpu_ns();
        for (kind, ns) in cpu_by_thread() {
            let before = threads_first.get(&kind).copied().unwrap_or(0);
            let micros = ns.saturating_sub(before) as f64 / 1000.0 / records as f64;
            by_kind.entry(kind).or_default().push(micros);
        }
        let held = empty
            .lookup(Lookup {
                capability: Some("load".into()),
                ..Lookup::default()
            })
            .await?
            .len();
        anyhow::ensure!(
            held == records,
            "the empty node holds {held} of {records} records"
        );
        let transfer = started.elapsed().as_secs_f64();
        let (Some(first), Some(last)) = (first, last) else {
            anyhow::bail!("no record arrived");
        };
        let streaming = last.duration_since(first).as_secs_f64();
        anyhow::ensure!(
            streaming >= 0.01,
            "the transfer took {streaming:.4} s: too short to time, use more records"
        );
        empty.shutdown().await?;
        full.shutdown().await?;
        let _ = std::fs::remove_dir_all(&data_dir);
        let _ = std::fs::remove_dir_all(temp.join(&full_name));
        let rate = (added - 1) as f64 / streaming;
        rates.push(rate);
        raws.push(raw);
        ratios.push(rate / raw);
        transfers.push(transfer);
        busy.push(cpu_last.saturating_sub(cpu_first) as f64 / 1e9 / streaming);
    }
    Ok(Bulk {
        records,
        repeat,
        records_per_second: Spreadout::of(rates),
        verify_strict_per_second: Spreadout::of(raws),
        ratio: Spreadout::of(ratios),
        transfer_seconds: Spreadout::of(transfers),
        busy_cores: Spreadout::of(busy),
        cpu_us_per_record: by_kind
            .into_iter()
            .map(|(kind, runs)| (kind, Spreadout::of(runs)))
            .filter(|(_, spread)| spread.median() >= 0.05)
            .collect(),
    })
}
