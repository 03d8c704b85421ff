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
    let holds = |cluster: &Cluster, index: usize| {
        let log = cluster.members[index].log.lock().unwrap();
        log.iter()
            .any(|line| line.contains("record accepted") && line.contains("needle"))
    };
    let mut holders = BTreeSet::new();
    while holders.len() < NODES - 1 {
        if started.elapsed() > Duration::from_secs(60) {
            let casualties = cluster.casualties();
            panic!(
                "after 60 s only {} of {} nodes hold the announcement\n{}\nthe announcer's last lines:\n{}",
                holders.len(),
                NODES - 1,
                casualties,
                cluster.log_tail(NODES - 1, 20)
            );
        }
        holders.extend((0..NODES - 1).filter(|&index| holds(&cluster, index)));
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

/// Runs `tidings lab` with short settings and `args`; returns its JSON report
/// and what it printed on stderr.
fn lab(scratch: &std::path::Path, args: &[&str]) -> (serde_json::Value, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args([
            "lab",
            "--interval-ms",
            "200",
            "--delay-ms",
            "10",
            "--jitter-ms",
            "5",
            "--bursts",
            "1",
            "--partition-seconds",
            "2",
            "--json",
        ])
        .args(args)
        .env("TMPDIR", scratch)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

/// `tidings lab` with every link through its emulator: lossy, delayed links
/// still carry records everywhere, a partition holds until it heals, and the
/// lab stops every process it started.
#[test]
fn the_lab_spreads_over_emulated_links_and_heals_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = lab(
        dir.path(),
        &[
            "--nodes",
            "6",
            "--loss",
            "0.05",
            "--duplicate",
            "0.02",
            "--reorder",
            "0.02",
            "--repeat",
            "2",
        ],
    );
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

fn namespaces() -> BTreeSet<String> {
    std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| line.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `tidings lab --netns`: with root and `ip`, every node in a namespace of its
/// own behind the emulator, and every namespace removed at the end; without
/// them, the lab says so and runs on loopback.
#[test]
fn the_lab_runs_nodes_in_namespaces_of_their_own_and_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let before = namespaces();
    let (report, stderr) = lab(dir.path(), &["--netns", "--nodes", "4", "--repeat", "1"]);
    if stderr.contains("running every node on loopback instead") {
        println!("no namespaces here (not root, or no `ip`): the lab fell back to loopback");
        assert_eq!(report["isolation"], "loopback");
    } else {
        assert_eq!(report["isolation"], "namespaces", "{stderr}");
    }
    assert_eq!(report["partition"]["leaked"], 0, "{report}");
    let datagrams = &report["datagrams"];
    assert!(datagrams["forwarded"].as_u64().unwrap() > 0);
    assert_eq!(datagrams["strangers"], 0);
    assert_eq!(namespaces(), before, "namespaces left behind");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
