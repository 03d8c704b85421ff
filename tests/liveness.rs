//! Liveness with real processes: a node that leaves is forgotten everywhere
//! within ceil(log2 N)+2 gossip intervals; a node stopped cleanly is not
//! connected at once and leaves live lookups; a node killed with SIGKILL is not
//! connected within one idle timeout; both stay in the plain directory until
//! their records expire. Bounded: every wait gives up, and every process is
//! stopped when the cluster is dropped.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;

const NODES: usize = 6;
const INTERVAL_MS: u64 = 1000;
/// The transport's idle timeout (`tidings::net::transport::IDLE_TIMEOUT`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Names of the specialists member `index` finds (`live`: only reachable ones).
fn names(cluster: &Cluster, index: usize, live: bool) -> Option<Vec<String>> {
    let path = if live {
        "/v1/specialists?capability=probe&live=true"
    } else {
        "/v1/specialists?capability=probe"
    };
    let answer = cluster.get(index, path)?;
    let mut names: Vec<String> = answer["specialists"]
        .as_array()?
        .iter()
        .filter_map(|found| found["specialist"]["name"].as_str().map(String::from))
        .collect();
    names.sort();
    Some(names)
}

/// Member `of` as member `index` lists it.
fn member(cluster: &Cluster, index: usize, of: usize) -> serde_json::Value {
    let id = cluster.members[of].id.to_string();
    let members = cluster.get(index, "/v1/members").unwrap();
    members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|member| member["id"] == id.as_str())
        .cloned()
        .unwrap()
}

/// Waits until `done` holds, up to `limit`; returns how long it took.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn leaving_stopping_and_dying_nodes_are_forgotten_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(dir.path(), NODES, INTERVAL_MS, &[]);
    cluster.start_all();
    for index in 0..NODES {
        cluster.wait_ready(index, Duration::from_secs(30));
    }
    for index in 0..NODES {
        let body = serde_json::json!({
            "name": format!("s{index}"), "capabilities": ["probe"],
            "endpoint": format!("https://s{index}.example/api"),
        });
        let url = format!("{}/v1/specialists", cluster.members[index].api);
        let response = reqwest::blocking::Client::new()
            .post(url)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let everyone: Vec<String> = (0..NODES).map(|index| format!("s{index}")).collect();
    wait_for(
        Duration::from_secs(30),
        "every node holds every specialist",
        || (0..NODES).all(|index| names(&cluster, index, false).as_ref() == Some(&everyone)),
    );

    // Commands take roster labels and id prefixes as tables print them.
    let shown = cluster.cli(0, &["show", "n1"]);
    assert!(
        shown.contains(&format!("origin {}", cluster.members[1].id)),
        "{shown}"
    );
    let prefix = cluster.members[2].id.to_string()[..10].to_string();
    let shown = cluster.cli(0, &["show", &prefix]);
    assert!(shown.contains("signed by"), "{shown}");
    let live = cluster.cli(0, &["lookup", "--capability", "probe", "--live"]);
    assert!(live.contains("s1") && live.contains("connected"), "{live}");

    // 1. `tidings leave` on the last node: its process stops by itself, and every
    // other node drops its specialist within ceil(log2 N)+2 intervals.
    let leaving = NODES - 1;
    let started = Instant::now();
    let said = cluster.cli(leaving, &["leave"]);
    assert!(said.contains("left"), "{said}");
    let bound =
        Duration::from_millis(INTERVAL_MS * (u64::from((NODES as f64).log2().ceil() as u32) + 2));
    let gone = format!("s{leaving}");
    wait_for(
        bound,
        "the leaving node's specialist is gone everywhere",
        || {
            (0..leaving).all(|index| {
                names(&cluster, index, false).is_some_and(|names| !names.contains(&gone))
            })
        },
    );
    println!(
        "left: its specialist was gone from all {} other nodes {} ms after `tidings leave` (bound {} ms)",
        leaving,
        started.elapsed().as_millis(),
        bound.as_millis()
    );
    let (_, status) = cluster.signal(leaving, "0", Duration::from_secs(10));
    assert_eq!(status, Some(0), "the node stopped by itself after leaving");

    // 2. A clean stop (SIGTERM, without leave_on_shutdown): the others see it
    // disconnected at once and drop it from live lookups, but keep its
    // specialist in the directory until its record expires.
    let stopped = NODES - 2;
    assert!(
        member(&cluster, 0, stopped)["connected"] == true || {
            // Idle connections close; a live lookup dials the origin again.
            names(&cluster, 0, true)
                .unwrap()
                .contains(&format!("s{stopped}"))
        }
    );
    let (_, status) = cluster.terminate(stopped, Duration::from_secs(20));
    assert_eq!(status, Some(0));
    wait_for(
        Duration::from_secs(5),
        "the stopped node shows as not connected",
        || (0..stopped).all(|index| member(&cluster, index, stopped)["connected"] == false),
    );
    let live = names(&cluster, 0, true).unwrap();
    assert!(!live.contains(&format!("s{stopped}")), "{live:?}");
    assert!(
        live.contains(&"s0".to_string()),
        "this node's own specialist is live"
    );
    assert!(
        live.contains(&"s1".to_string()),
        "a running node's is live: {live:?}"
    );
    let all = names(&cluster, 0, false).unwrap();
    assert!(all.contains(&format!("s{stopped}")), "{all:?}");
    let heard = member(&cluster, 0, stopped)["last_heard_ms"].as_u64();
    assert!(
        heard.is_some(),
        "the stopped node was heard from before it stopped"
    );

    // 3. SIGKILL: no goodbye. Within one idle timeout it is not connected, and
    // it leaves live lookups.
    let killed = NODES - 3;
    cluster.kill(killed);
    let took = wait_for(
        IDLE_TIMEOUT + Duration::from_secs(5),
        "the killed node shows as not connected",
        || (0..killed).all(|index| member(&cluster, index, killed)["connected"] == false),
    );
    println!(
        "killed: shown as not connected after {} ms",
        took.as_millis()
    );
    let live = names(&cluster, 1, true).unwrap();
    assert!(!live.contains(&format!("s{killed}")), "{live:?}");
    assert!(live.contains(&"s0".to_string()), "{live:?}");
}
