//! `tidings bench`: measured figures, one run, medians of repeated rounds.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use super::interrupt::ScratchDir;
use clap::Subcommand;
use serde::Serialize;
use tidings::audit::{
    AuditConfig, AuditLog, AuditWriter, EntryKind, NewEntry, RecordKey, SledStore,
};
use tidings::keys::{FederationId, Identity, Roster};
use tidings::net::checkers::Checkers;
use tidings::proto::event::AuditEvent;
use tidings::proto::{
    Announcement, Directory, DirectoryConfig, Record, Source, Specialist, VerifiedCache,
    VerifiedRecord,
};

/// Arguments of `tidings bench`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Print JSON (for the run of every figure).
    #[arg(long)]
    json: bool,
}

/// Every figure in one run, as the README's table shows them.
#[derive(Debug, Serialize)]
struct AllFigures {
    ingest: IngestBench,
    /// Bulk transfer over QUIC between two nodes, against the raw check.
    bulk: super::bench_bulk::Bulk,
    announce: super::bench_announce::AnnounceBench,
    batch_verification: &'static str,
    digest: Vec<tidings::sim::idle::ExchangeCost>,
    audit: AuditBench,
}

pub(crate) fn run_args(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    // Ctrl-C stops any benchmark at once and removes its scratch directories.
    super::interrupt::exit_on_interrupt();
    if let Some(command) = &args.command {
        return run(command);
    }
    if !args.json {
        eprintln!("measuring: verify and ingest, bulk transfer over QUIC, digest cost at 1,000 and 10,000 records, audit overhead, announcement latency (about two minutes)");
    }
    let ingest = ingest_bench(5_000, 7)?;
    let bulk = {
        let scratch = ScratchDir::new("bench-bulk")?;
        super::runtime()?.block_on(super::bench_bulk::run(scratch.path(), 5_000, 5))?
    };
    let mut digest = Vec::new();
    for size in [1_000, 10_000] {
        let federation = tidings::sim::world::Federation::new(size, 7);
        let records = tidings::sim::idle::records(&federation);
        for difference in [0, 1, 10] {
            digest.push(tidings::sim::idle::exchange_cost(
                &federation,
                &records,
                difference,
            ));
        }
    }
    let audit = audit(200_000, 5_000, 7)?;
    let announce = super::runtime()?.block_on(super::bench_announce::run(200, 5))?;
    let all = AllFigures {
        ingest,
        bulk,
        announce,
        batch_verification:
            "not used: every record is verified on its own with verify_strict, on every core",
        digest,
        audit,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        println!(
            "verify_strict per second (raw)        {:>10.0}",
            all.ingest.verify_strict_per_second
        );
        println!(
            "ingest per second (real path)         {:>10.0}",
            all.ingest.ingest_per_second
        );
        println!(
            "ratio ingest / raw                    {:>10.3}  ({:.3} to {:.3}; {} checker threads; target >= 1.6)",
            all.ingest.ratio, all.ingest.ratio_spread.0, all.ingest.ratio_spread.1, all.ingest.checkers
        );
        all.bulk.print();
        for cost in &all.digest {
            println!(
                "exchange at {:>6} records, {:>2} differing: {:>6} digest bytes, {:>6} total",
                cost.records, cost.difference, cost.digest_bytes, cost.bytes
            );
        }
        println!(
            "audit appends per second              {:>10.0}",
            all.audit.appends_per_second
        );
        println!(
            "audit bytes on disk per entry         {:>10.1}",
            all.audit.bytes_on_disk_per_entry
        );
        println!(
            "ingest ratio audit on / off           {:>10.3}  (target >= 0.90)",
            all.audit.audit_on_off_ratio
        );
        println!(
            "announcement, durable when answered   {:>10.2} ms p50, {:.2} ms p99 (syncing {:.2} ms)",
            all.announce.p50_ms, all.announce.p99_ms, all.announce.sync_mean_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tidings bench` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The audit log: appends per second, bytes per entry, ingest with the log on
    /// against off.
    Audit {
        /// Entries appended in the append benchmark.
        #[arg(long, default_value_t = 200_000)]
        entries: u64,
        /// Records in the ingest stream.
        #[arg(long, default_value_t = 5_000)]
        records: usize,
        /// Repetitions of each ingest measurement (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Raw `verify_strict` per second against ingest through the real path (decode,
    /// verify_strict, chain check, directory update) over the same records.
    Ingest {
        /// Records in the stream.
        #[arg(long, default_value_t = 5_000)]
        records: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 7)]
        repeat: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Announcement latency when every answer waits for the record and its audit
    /// entry to be synced (p50 and p99 over several rounds).
    Announce {
        /// Announcements per round.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One origin publishing as fast as it can while others publish normally.
    Load {
        /// Records the flooding origin sends.
        #[arg(long, default_value_t = 20_000)]
        records: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Over QUIC with mutual TLS on loopback: records per second from one node to
    /// another, then federations of real `tidings run` processes: the time for a
    /// new record to reach every node, every node publishing at once, and the
    /// idle cost per node.
    Net {
        /// Records the empty node pulls from the full one (100 to 5,000).
        #[arg(long, default_value_t = 5_000)]
        records: usize,
        /// Bulk transfers, each by a new empty node (the median is reported).
        #[arg(long, default_value_t = 5)]
        bulk_runs: usize,
        /// Federation sizes (processes), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "16,64")]
        nodes: Vec<usize>,
        /// Gossip intervals, milliseconds, comma-separated: one federation each.
        #[arg(long = "intervals", value_delimiter = ',', default_value = "200,1000")]
        intervals_ms: Vec<u64>,
        /// Single-record measurements per federation (the median is reported).
        #[arg(long, default_value_t = 11)]
        repeat: usize,
        /// Every-node-publishes measurements per federation.
        #[arg(long, default_value_t = 5)]
        bursts: usize,
        /// Seconds of idle cost measured per federation.
        #[arg(long, default_value_t = 20)]
        idle_seconds: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
struct AuditBench {
    entries: u64,
    /// Median of the per-round ratios, and their lowest and highest.
    audit_on_off_ratio_spread: (f64, f64),
    appends_per_second: f64,
    bytes_on_disk_per_entry: f64,
    logical_bytes_per_entry: f64,
    ingest_records: usize,
    ingest_records_per_second_audit_off: f64,
    ingest_records_per_second_audit_on: f64,
    audit_on_off_ratio: f64,
    repeat: usize,
    evidence_survival: super::bench_retention::EvidenceSurvival,
}

pub(crate) fn run(command: &BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Announce {
            count,
            rounds,
            json,
        } => {
            let runtime = super::runtime()?;
            let result = runtime.block_on(super::bench_announce::run(
                (*count).max(1),
                (*rounds).max(1),
            ))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                result.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Load { records, json } => {
            let runtime = super::runtime()?;
            let result = runtime.block_on(super::bench_load::run((*records).max(1)))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                result.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Ingest {
            records,
            repeat,
            json,
        } => {
            let result = ingest_bench(*records, (*repeat).max(1))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                println!("ingest benchmark (one run, medians of {})", result.repeat);
                println!(
                    "  raw verify_strict per second        {:>10.0}",
                    result.verify_strict_per_second
                );
                println!(
                    "  ingest per second (real path)       {:>10.0}",
                    result.ingest_per_second
                );
                println!(
                    "  ratio ingest / raw verify           {:>10.3}  (target >= 0.80)",
                    result.ratio
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Net {
            records,
            bulk_runs,
            nodes,
            intervals_ms,
            repeat,
            bursts,
            idle_seconds,
            json,
        } => {
            let runtime = super::runtime()?;
            let plan = super::bench_net::NetPlan {
                records: *records,
                bulk_runs: (*bulk_runs).max(1),
                nodes: nodes.clone(),
                intervals_ms: intervals_ms.clone(),
                repeat: (*repeat).max(1),
                bursts: (*bursts).max(1),
                idle_seconds: (*idle_seconds).max(1),
            };
            let result = runtime.block_on(super::bench_net::run(&plan))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                result.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Audit {
            entries,
            records,
            repeat,
            json,
        } => {
            let result = audit(*entries, *records, (*repeat).max(1))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                println!("audit log benchmark (sled, writer thread, one run)");
                println!(
                    "  appends per second             {:>12.0}  ({} entries, flushed)",
                    result.appends_per_second, result.entries
                );
                println!(
                    "  bytes on disk per entry        {:>12.1}  (no evidence; sled files)",
                    result.bytes_on_disk_per_entry
                );
                println!(
                    "  logical bytes per entry        {:>12.1}  (entry + index keys)",
                    result.logical_bytes_per_entry
                );
                println!(
                    "  ingest, audit off (records/s)  {:>12.0}  (median of {})",
                    result.ingest_records_per_second_audit_off, result.repeat
                );
                println!(
                    "  ingest, audit on  (records/s)  {:>12.0}",
                    result.ingest_records_per_second_audit_on
                );
                println!(
                    "  ratio on / off                 {:>12.3}  (median of per-round ratios, {:.3} to {:.3}; target >= 0.90)",
                    result.audit_on_off_ratio,
                    result.audit_on_off_ratio_spread.0,
                    result.audit_on_off_ratio_spread.1
                );
                result.evidence_survival.print();
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Debug, Serialize)]
struct IngestBench {
    records: usize,
    verify_strict_per_second: f64,
    ingest_per_second: f64,
    /// Median of the per-round ratios ingest / raw, and their lowest and highest.
    ratio: f64,
    ratio_spread: (f64, f64),
    /// Checker threads (one per core).
    checkers: usize,
    repeat: usize,
}

fn ingest_bench(records: usize, repeat: usize) -> anyhow::Result<IngestBench> {
    let stream = signed_stream(records)?;
    // The raw checks: each record's key, signed message and signature, prepared.
    let verified = stream
        .records
        .iter()
        .map(|bytes| VerifiedRecord::from_bytes(bytes, Some(&stream.federation)))
        .collect::<Result<Vec<_>, _>>()?;
    let prepared = super::bench_bulk::prepare(&stream.federation, &verified)?;
    let mut raw = Vec::new();
    let mut real = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..repeat {
        raw.push(super::bench_bulk::raw_rate(&prepared)?);
        real.push(ingest(&stream, None)?);
        ratios.push(real[real.len() - 1] / raw[raw.len() - 1]);
    }
    let spread = {
        let mut sorted = ratios.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        (sorted[0], sorted[sorted.len() - 1])
    };
    Ok(IngestBench {
        records: stream.records.len(),
        verify_strict_per_second: median(raw),
        ingest_per_second: median(real),
        ratio: median(ratios),
        ratio_spread: spread,
        checkers: std::thread::available_parallelism().map_or(1, usize::from),
        repeat,
    })
}

fn open_log(dir: &Path, identity: &Arc<Identity>) -> anyhow::Result<AuditWriter<SledStore>> {
    let store = SledStore::open(dir)?;
    let config = AuditConfig {
        max_bytes: None,
        max_age_ms: None,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(
        store,
        identity.clone(),
        FederationId::from_name("bench"),
        config,
    )?;
    // As a node runs it (see `net::priority`).
    Ok(AuditWriter::spawn_with(
        log,
        8192,
        tidings::net::priority::background,
    )?)
}

fn audit(entries: u64, records: usize, repeat: usize) -> anyhow::Result<AuditBench> {
    let scratch = ScratchDir::new("bench-audit")?;
    let temp = scratch.path();
    let identity = Arc::new(Identity::from_seed(&[7; 32]));
    let peers: Vec<_> = (0..64u8)
        .map(|i| Identity::from_seed(&[i; 32]).node_id())
        .collect();

    // Appends: typical verdict entries, no evidence.
    let writer = open_log(&temp.join("append"), &identity)?;
    let started = Instant::now();
    for i in 0..entries {
        let mut record = [0u8; 32];
        record[..8].copy_from_slice(&i.to_le_bytes());
        writer.append(NewEntry {
            at_ms: 1_700_000_000_000 + i,
            kind: if i % 3 == 0 {
                EntryKind::Accepted
            } else {
                EntryKind::Relayed
            },
            peer: Some(peers[(i % 64) as usize]),
            origin: Some(peers[(i / 7 % 64) as usize]),
            record: Some(RecordKey(record)),
            reason: format!("accepted seq {}", i / 64),
            evidence: None,
        })?;
    }
    writer.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    let log = writer.shutdown()?;
    let stats = log.stats()?;
    drop(log);

    let stream = signed_stream(records)?;
    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 0..repeat {
        off.push(ingest(&stream, None)?);
        let writer = open_log(&temp.join(format!("ingest-{round}")), &identity)?;
        on.push(ingest(&stream, Some(&writer))?);
        writer.shutdown()?;
    }
    drop(scratch);
    // Each round measures off and on back to back: the ratio within a round sees
    // the same machine load, and the median of those ratios is what is reported.
    let ratios: Vec<f64> = off.iter().zip(&on).map(|(off, on)| on / off).collect();
    let spread = (
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    let ratio = median(ratios);
    let (off, on) = (median(off), median(on));
    Ok(AuditBench {
        entries,
        appends_per_second: entries as f64 / elapsed,
        bytes_on_disk_per_entry: stats.store_bytes as f64 / entries as f64,
        logical_bytes_per_entry: stats.logical_bytes as f64 / entries as f64,
        ingest_records: stream.records.len(),
        ingest_records_per_second_audit_off: off,
        ingest_records_per_second_audit_on: on,
        audit_on_off_ratio: ratio,
        audit_on_off_ratio_spread: spread,
        repeat,
        evidence_survival: super::bench_retention::run()?,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// A stream of signed records: 10 versions from each of `records / 10` origins,
/// interleaved so that every one is accepted in order.
pub(crate) struct Stream {
    pub(crate) federation: FederationId,
    pub(crate) roster: Arc<Roster>,
    pub(crate) records: Vec<Vec<u8>>,
    pub(crate) now: u64,
}

pub(crate) fn signed_stream(records: usize) -> anyhow::Result<Stream> {
    let federation = FederationId::from_name("bench");
    let origins = (records / 10).max(1);
    let identities: Vec<Identity> = (0..origins as u64)
        .map(|i| {
            Identity::from_seed(&blake3::derive_key(
                "tidings bench origin",
                &i.to_le_bytes(),
            ))
        })
        .collect();
    let roster: Roster = identities.iter().map(Identity::node_id).collect();
    let now = 1_700_000_000_000;
    let mut chains: Vec<Vec<Vec<u8>>> = Vec::new();
    for (index, identity) in identities.iter().enumerate() {
        let announcement = |version: usize| Announcement {
            addrs: vec![format!("10.0.0.{}:7700", index % 250)],
            specialists: vec![Specialist {
                name: format!("agent-{index}"),
                capabilities: vec!["summarize".into(), format!("v{version}")],
                endpoint: format!("https://node-{index}.example/api"),
                meta: Default::default(),
            }],
        };
        let mut chain = Vec::new();
        let mut previous = VerifiedRecord::sign(
            identity,
            Record::first(
                federation,
                identity.node_id(),
                announcement(0),
                now,
                3_600_000,
            ),
        )?;
        chain.push(previous.wire_bytes().to_vec());
        for version in 1..10 {
            previous = VerifiedRecord::sign(
                identity,
                Record::next(
                    &previous,
                    announcement(version),
                    now + version as u64,
                    3_600_000,
                ),
            )?;
            chain.push(previous.wire_bytes().to_vec());
        }
        chains.push(chain);
    }
    let records = (0..10)
        .flat_map(|version| chains.iter().map(move |chain| chain[version].clone()))
        .collect();
    Ok(Stream {
        federation,
        roster: Arc::new(roster),
        records,
        now: now + 1000,
    })
}

/// Records per second through the real ingest path, optionally auditing every
/// verdict as the node does.
/// Frames checked ahead of the one being decided (a node has one per peer in
/// its receive loops, and as many more waiting, checked, in its inbox).
const CHECKED_AHEAD: usize = 4;

/// Records per second through a node's ingest path: the signature checks on
/// every core ([`Checkers`], a frame's records split among them), the directory's
/// decision on the actor's one thread, and (with `audit`) the audit entries of
/// each frame handed to the writer at once. Frames are checked ahead of the one
/// being decided, as receive loops do while the actor works.
fn ingest(stream: &Stream, audit: Option<&AuditWriter<SledStore>>) -> anyhow::Result<f64> {
    let mut directory = Directory::new(
        DirectoryConfig::new(stream.federation),
        stream.roster.clone(),
    );
    let checkers = Checkers::start(
        Arc::new(VerifiedCache::new(4096)),
        stream.federation,
        Arc::new(std::sync::RwLock::new((*stream.roster).clone())),
    )?;
    let peer = Identity::from_seed(&[1; 32]).node_id();
    let frames: Vec<Arc<Vec<Vec<u8>>>> = stream
        .records
        .chunks(64)
        .map(|frame| Arc::new(frame.to_vec()))
        .collect();
    let started = Instant::now();
    let mut ahead: std::collections::VecDeque<_> = frames
        .iter()
        .take(CHECKED_AHEAD)
        .map(|frame| checkers.submit(frame.clone()))
        .collect();
    for (index, frame) in frames.iter().enumerate() {
        let checked = ahead
            .pop_front()
            .map(|pending| pending.wait())
            .unwrap_or_default();
        if let Some(next) = frames.get(index + CHECKED_AHEAD) {
            ahead.push_back(checkers.submit(next.clone()));
        }
        let mut entries = Vec::with_capacity(frame.len());
        let mut checked = checked.into_iter();
        for bytes in frame.iter() {
            let verdict = directory.ingest_prechecked(
                bytes,
                checked.next().flatten(),
                Source::Peer(peer),
                stream.now,
            );
            if audit.is_some() {
                let event = AuditEvent::Verdict {
                    peer: Some(peer),
                    verdict,
                };
                entries.extend(tidings::recording::entry_for(&event, stream.now));
            }
        }
        if let Some(writer) = audit {
            writer.append_batch(entries)?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        directory.len() == stream.records.len() / 10,
        "every record must be accepted"
    );
    Ok(stream.records.len() as f64 / elapsed)
}
