//! Sixteen `tidings run` processes on loopback, configured by `tidings init`: an
//! announcement made by the last one to start appears at all the others. The time
//! it takes is printed in gossip intervals. Bounded: the test gives up after 60 s
//! and always stops every process.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

const NODES: usize = 16;
const INTERVAL_MS: u64 = 200;

#[test]
fn sixteen_processes_spread_an_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(dir.path(), NODES, INTERVAL_MS, &[]);
    let needle = "\n[[specialist]]\nname = \"needle\"\ncapabilities = [\"find\"]\nendpoint = \"https://needle.example/api\"\n";
    let last = cluster.members[NODES - 1].dir.join("tidings.toml");
    let text = std::fs::read_to_string(&last).unwrap() + needle;
    std::fs::write(&last, text).unwrap();
    for index in 0..NODES - 1 {
        cluster.start(index);
    }
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    cluster.start(NODES - 1);
    let holds = |index: usize| {
        let log = cluster.members[index].log.lock().unwrap();
        log.iter()
            .any(|line| line.contains("record accepted") && line.contains("needle"))
    };
    let mut holders = BTreeSet::new();
    while holders.len() < NODES - 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after 60 s only {} of {} nodes hold the announcement",
            holders.len(),
            NODES - 1
        );
        holders.extend((0..NODES - 1).filter(|&index| holds(index)));
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    println!(
        "the announcement reached all {} other processes {:.2} s after its node started: {:.1} gossip intervals of {} ms",
        NODES - 1,
        elapsed.as_secs_f64(),
        elapsed.as_millis() as f64 / INTERVAL_MS as f64,
        INTERVAL_MS
    );
}

/// `tidings lab` with every link through its emulator: lossy, delayed links
/// still carry records everywhere, a partition holds until it heals, and the
/// lab stops every process it started.
#[test]
fn the_lab_spreads_over_emulated_links_and_heals_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args([
            "lab",
            "--nodes",
            "6",
            "--interval-ms",
            "200",
            "--delay-ms",
            "10",
            "--jitter-ms",
            "5",
            "--loss",
            "0.05",
            "--duplicate",
            "0.02",
            "--reorder",
            "0.02",
            "--repeat",
            "2",
            "--bursts",
            "1",
            "--partition-seconds",
            "2",
            "--json",
        ])
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["nodes"], 6);
    assert_eq!(report["one_record_ms"]["runs"].as_array().unwrap().len(), 2);
    assert_eq!(
        report["all_publish_ms"]["runs"].as_array().unwrap().len(),
        1
    );
    assert_eq!(report["partition"]["leaked"], 0, "{report}");
    assert!(report["partition"]["heal_ms"].as_f64().is_some());
    let datagrams = &report["datagrams"];
    assert!(datagrams["forwarded"].as_u64().unwrap() > 0);
    assert!(datagrams["lost"].as_u64().unwrap() > 0, "{datagrams}");
    assert!(
        datagrams["partitioned"].as_u64().unwrap() > 0,
        "{datagrams}"
    );
    assert_eq!(datagrams["strangers"], 0);
    // Nothing left behind: the scratch directory with the nodes' data is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
