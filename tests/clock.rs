//! Time: a node counts from its start with a monotonic clock, so a wall clock
//! stepped an hour back or forward during a run stalls nothing; a node whose clock
//! is far from its peers' says so; and its audit log's times never go backwards
//! and never freeze, even after a clock that ran ahead is fixed.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, count, eventually, roster, specialist};
use tidings::audit::{EntryKind, Query};
use tidings::net::clock::SteppedClock;
use tidings::net::node::{Node, NodeHandle};

const HOUR_MS: i64 = 3_600_000;

/// Times of every audit entry, in log order.
fn audit_times(node: &NodeHandle) -> Vec<(u64, u64)> {
    node.audit_log()
        .unwrap()
        .query(&Query {
            limit: 100_000,
            ..Query::default()
        })
        .unwrap()
        .into_iter()
        .map(|entry| (entry.index, entry.at_ms))
        .collect()
}

fn assert_never_backwards(times: &[(u64, u64)]) {
    for pair in times.windows(2) {
        assert!(
            pair[1].1 >= pair[0].1,
            "entry {} went back in time",
            pair[1].0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_steps_during_a_run_stall_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2]);
    let clock = Arc::new(SteppedClock::default());
    let mut first_config = config(dir.path(), 1, &members, vec![]);
    first_config.clock = clock.clone();
    let first = Node::spawn(first_config).await.unwrap();
    let second = Node::spawn(config(
        dir.path(),
        2,
        &members,
        vec![(first.node_id(), first.local_addr())],
    ))
    .await
    .unwrap();
    eventually("converged", Duration::from_secs(10), || async {
        count(&first, "summarize").await == 2 && count(&second, "summarize").await == 2
    })
    .await;
    for (step, name) in [(-HOUR_MS, "back"), (2 * HOUR_MS, "forward")] {
        clock.step(step);
        let exchanges = first.stats().await.unwrap().exchanges;
        let entries_before = audit_times(&first);
        // Rounds go on, the node's own bucket refills, and peers accept what it signs.
        let capability = format!("after-step-{name}");
        let record = first
            .announce(specialist(&capability, &capability))
            .await
            .unwrap();
        eventually(
            &format!("a record signed after the step {name} reaches the peer"),
            Duration::from_secs(10),
            || async { count(&second, &capability).await == 1 },
        )
        .await;
        eventually("rounds go on", Duration::from_secs(5), || async {
            first.stats().await.unwrap().exchanges > exchanges + 3
        })
        .await;
        let wall = first.health().wall_clock_step_ms;
        assert!(
            (wall - clock_total(step, name)).abs() < 5_000,
            "the step is seen: {wall}"
        );
        // Its record carries the node's time, not the stepped wall clock.
        let now = now_ms();
        assert!(record.record().issued_at_ms.abs_diff(now) < 5_000);
        let times = audit_times(&first);
        assert_never_backwards(&times);
        let last_before = entries_before.last().unwrap().1;
        let newest = times.last().unwrap().1;
        assert!(newest > last_before, "audit times advance after the step");
        assert!(newest.abs_diff(now) < 5_000, "and follow the node's time");
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

/// The wall clock's total offset after the steps so far.
fn clock_total(step: i64, name: &str) -> i64 {
    if name == "back" {
        step
    } else {
        step - HOUR_MS
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_two_hours_ahead_is_reported_and_fixing_it_keeps_audit_times_sane() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2]);
    let first = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    let bootstrap = vec![(first.node_id(), first.local_addr())];
    let mut ahead = config(dir.path(), 2, &members, bootstrap.clone());
    ahead.clock = Arc::new(SteppedClock::with_offset(2 * HOUR_MS));
    let second = Node::spawn(ahead).await.unwrap();
    eventually(
        "the node two hours ahead warns",
        Duration::from_secs(10),
        || async { second.health().clock_warning },
    )
    .await;
    let offset = second.health().clock_offset_ms.unwrap();
    assert!(
        (offset + 2 * HOUR_MS).abs() < 10_000,
        "peers are two hours behind it: {offset}"
    );
    let warned = second
        .audit_log()
        .unwrap()
        .query(&Query {
            kind: Some(EntryKind::ClockOffset),
            ..Query::default()
        })
        .unwrap();
    assert!(!warned.is_empty());
    let listen = second.local_addr();
    second.shutdown().await.unwrap();
    let before = last_time(dir.path(), 2);
    // Fixed: the same node, the system clock right again.
    let mut fixed = config(dir.path(), 2, &members, bootstrap);
    fixed.listen = listen;
    let second = Node::spawn(fixed).await.unwrap();
    eventually(
        "its records are accepted again",
        Duration::from_secs(10),
        || async {
            first
                .record(second.node_id())
                .await
                .unwrap()
                .is_some_and(|record| record.record().issued_at_ms <= now_ms() + 5_000)
        },
    )
    .await;
    eventually("the warning clears", Duration::from_secs(10), || async {
        !second.health().clock_warning
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let times = audit_times(&second);
    assert_never_backwards(&times);
    let after: Vec<u64> = times
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at >= before)
        .collect();
    assert!(after.len() > 3);
    assert!(
        after.last().unwrap() > after.first().unwrap(),
        "times after the fix advance instead of freezing at the last one"
    );
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}

fn last_time(dir: &std::path::Path, seed: u8) -> u64 {
    let path = dir.join(format!("node-{seed}")).join("audit");
    let log =
        tidings::audit::AuditLog::open_read_only(tidings::audit::SledStore::open(&path).unwrap())
            .unwrap();
    log.last_at_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_left_behind_follows_the_clock_forward_when_its_peers_agree() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2]);
    let first = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    // Node 2 starts two hours behind (a clock set late, or a suspended machine).
    let clock = Arc::new(SteppedClock::with_offset(-2 * HOUR_MS));
    let mut behind = config(
        dir.path(),
        2,
        &members,
        vec![(first.node_id(), first.local_addr())],
    );
    behind.clock = clock.clone();
    let second = Node::spawn(behind).await.unwrap();
    eventually("it sees it is behind", Duration::from_secs(10), || async {
        second.health().clock_warning
    })
    .await;
    // The system clock is set right: the node moves forward, never back.
    clock.step(2 * HOUR_MS);
    eventually(
        "its time follows and the warning clears",
        Duration::from_secs(10),
        || async { !second.health().clock_warning },
    )
    .await;
    second.ready().await.unwrap();
    let record = second
        .announce(specialist("caught-up", "caught-up"))
        .await
        .unwrap();
    assert!(record.record().issued_at_ms.abs_diff(now_ms()) < 5_000);
    eventually(
        "its record is accepted",
        Duration::from_secs(10),
        || async { count(&first, "caught-up").await == 1 },
    )
    .await;
    assert_never_backwards(&audit_times(&second));
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}
