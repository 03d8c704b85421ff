//! Appends to a sled-backed audit log through its writer thread, in batches of
//! 64 entries (a frame's verdicts), and prints entries per second and the
//! process's CPU per entry (Linux: read from `/proc/self/stat`).
//!
//! `cargo run --release -p tidings-audit --example appends -- [ENTRIES] [EVIDENCE_BYTES]`
//! (defaults 100,000 and 300: about a record's size). The machine is shared and
//! noisy: run it several times and compare medians.

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use tidings_audit::{
    AuditConfig, AuditLog, AuditWriter, EntryKind, NewEntry, RecordKey, SledStore,
};
use tidings_keys::{FederationId, Identity};

/// CPU seconds this process has used, if the system says.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let entries: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let evidence: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(300);
    let dir = std::env::temp_dir().join(format!("tidings-appends-{}", std::process::id()));
    let result = run(&dir, entries, evidence);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(dir: &std::path::Path, entries: u64, evidence: usize) -> Result<(), Box<dyn Error>> {
    let identity = Arc::new(Identity::from_seed(&[7; 32]));
    let peers: Vec<_> = (0..64u8)
        .map(|i| Identity::from_seed(&[i; 32]).node_id())
        .collect();
    let config = AuditConfig {
        max_bytes: None,
        max_age_ms: None,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(
        SledStore::open(dir)?,
        identity,
        FederationId::from_name("appends"),
        config,
    )?;
    let writer = AuditWriter::spawn(log, 8192)?;
    let (cpu_before, started) = (cpu_seconds(), Instant::now());
    for batch in 0..entries / 64 {
        let batch = (0..64u64)
            .map(|j| {
                let i = batch * 64 + j;
                NewEntry {
                    at_ms: 1_700_000_000_000 + i,
                    kind: EntryKind::Accepted,
                    peer: Some(peers[(i % 64) as usize]),
                    origin: Some(peers[(i / 7 % 64) as usize]),
                    record: Some(RecordKey(*blake3::hash(&i.to_le_bytes()).as_bytes())),
                    reason: format!("accepted seq {}", i / 64),
                    evidence: (evidence > 0).then(|| vec![(i % 251) as u8; evidence]),
                }
            })
            .collect();
        writer.append_batch(batch)?;
    }
    writer.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let stats = writer.shutdown()?.stats()?;
    let written = (entries / 64 * 64) as f64;
    println!(
        "{written} entries with {evidence} bytes of evidence: {:.0} per second, {} CPU per entry, {:.0} bytes on disk per entry",
        written / elapsed,
        cpu.map_or("unknown".into(), |cpu| format!("{:.1} µs", cpu * 1e6 / written)),
        stats.store_bytes as f64 / written
    );
    Ok(())
}
