//! Crash safety: a child process appends to a sled-backed log and is killed with
//! SIGKILL at a random moment; after each kill the log must open, its chain must
//! verify, every entry acknowledged as durable must be there, and the indexes must
//! agree with the entries.
//!
//! A few kills run in `cargo test`; `crash_recovery_many` (ignored) runs 50.
#![cfg(all(unix, feature = "sled"))]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_audit::{
    AuditConfig, AuditLog, AuditWriter, EntryKind, NewEntry, RecordKey, SledStore,
};
use tidings_keys::{FederationId, Identity};

const CHILD_ENV: &str = "TIDINGS_AUDIT_CRASH_DIR";

fn identity() -> Arc<Identity> {
    Arc::new(Identity::from_seed(&[42; 32]))
}

fn config() -> AuditConfig {
    AuditConfig {
        checkpoint_every_entries: 256,
        checkpoint_every_ms: 1_000,
        max_bytes: None,
        max_age_ms: None,
        prune_chunk: 1024,
    }
}

fn open(path: &Path) -> AuditLog<SledStore> {
    let store = SledStore::open(path).expect("the log opens after a crash");
    AuditLog::open(
        store,
        identity(),
        FederationId::from_name("crash"),
        config(),
    )
    .expect("metadata intact")
}

/// The child: appends until killed (or 200,000 entries), printing each durable index.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = open(Path::new(&dir));
    let start = log.next_index();
    let writer = AuditWriter::spawn(log, 256).unwrap();
    for i in start..start + 200_000 {
        let byte = (i % 251) as u8;
        writer
            .append(NewEntry {
                at_ms: 1_000 + i,
                kind: if i % 2 == 0 {
                    EntryKind::Accepted
                } else {
                    EntryKind::Relayed
                },
                peer: Some(Identity::from_seed(&[byte; 32]).node_id()),
                origin: Some(Identity::from_seed(&[byte / 2; 32]).node_id()),
                record: Some(RecordKey([byte; 32])),
                reason: format!("entry {i}"),
                evidence: Some(vec![byte; 100]),
            })
            .unwrap();
        if i % 97 == 0 {
            let durable = writer.flush().unwrap();
            println!("durable {durable}");
        }
    }
}

fn kill_once(dir: &Path, delay: Duration) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let durable = Arc::new(Mutex::new(0u64));
    let seen = durable.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(value) = line.strip_prefix("durable ") {
                if let Ok(value) = value.trim().parse::<u64>() {
                    *seen.lock().unwrap() = value;
                }
            }
        }
    });
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    let acknowledged = *durable.lock().unwrap();
    acknowledged
}

fn check(dir: &Path, acknowledged: u64) -> u64 {
    let log = open(dir);
    let verified = log
        .verify()
        .unwrap()
        .unwrap_or_else(|problem| panic!("chain broken after a crash: {problem}"));
    assert!(
        verified.last >= acknowledged,
        "entry {acknowledged} was acknowledged durable, but the log ends at {}",
        verified.last
    );
    log.check_indexes()
        .unwrap()
        .unwrap_or_else(|problem| panic!("indexes disagree: {problem}"));
    verified.last
}

fn run(iterations: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit");
    // A small deterministic generator for the kill delays; the seed is printed.
    let mut state: u64 = 0x5eed_0000 + iterations;
    println!("crash harness seed {state}");
    let mut last = 0;
    for iteration in 0..iterations {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_millis(150 + state % 400);
        let acknowledged = kill_once(&path, delay);
        last = check(&path, acknowledged);
        println!("iteration {iteration}: killed after {delay:?}, {acknowledged} acknowledged, {last} present");
    }
    assert!(last > 0, "the child wrote nothing");
}

#[test]
fn crash_recovery_few() {
    run(3);
}

#[test]
#[ignore = "50 kills: run with `cargo test -p tidings-audit --release -- --ignored`"]
fn crash_recovery_many() {
    run(50);
}

/// While another process (a running node) has the log open, opening it fails at
/// once with a clear error: sled takes an exclusive lock.
#[test]
fn a_log_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit");
    drop(open(&path));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait until the child has written something: it holds the lock by then.
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with("durable ") {
            break;
        }
    }
    let result = SledStore::open(&path);
    child.kill().unwrap();
    child.wait().unwrap();
    let error = result.expect_err("the log is in use");
    let message = error.to_string();
    assert!(
        message.contains("audit") && message.contains("node is running"),
        "{message}"
    );
}
