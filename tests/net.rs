//! Nodes over real QUIC with mutual TLS on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{config, count, eventually, federation, identity, roster, specialist};
use tidings::audit::{AuditLog, EntryKind, Query, SledStore};
use tidings::net::node::Node;

fn audit_of(dir: &Path, seed: u8) -> AuditLog<SledStore> {
    let path: PathBuf = dir.join(format!("node-{seed}")).join("audit");
    AuditLog::open_read_only(SledStore::open(&path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_announce_and_withdraw() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = federation(dir.path(), 5).await;
    eventually(
        "every node holds all five records",
        Duration::from_secs(15),
        || async {
            for node in &nodes {
                if count(node, "summarize").await < 5 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    nodes[2]
        .announce(specialist("translator", "translate"))
        .await
        .unwrap();
    eventually(
        "the new specialist reaches every node",
        Duration::from_secs(10),
        || async {
            for node in &nodes {
                if count(node, "translate").await != 1 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    nodes[2].withdraw("translator").await.unwrap();
    eventually(
        "the withdrawn specialist disappears everywhere",
        Duration::from_secs(10),
        || async {
            for node in &nodes {
                if count(node, "translate").await != 0 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for node in nodes {
        node.shutdown().await.unwrap();
    }
    // Every node's audit log verifies and shows accepted records.
    for seed in 1..=5 {
        let log = audit_of(dir.path(), seed);
        log.verify().unwrap().unwrap();
        let accepted = log
            .query(&Query {
                kind: Some(EntryKind::Accepted),
                ..Default::default()
            })
            .unwrap();
        assert!(!accepted.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_has_its_directory_and_audit_log_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = federation(dir.path(), 3).await;
    eventually("converged", Duration::from_secs(15), || async {
        count(&nodes[2], "summarize").await == 3
    })
    .await;
    let node = nodes.pop().unwrap();
    node.shutdown().await.unwrap();
    let entries_before = audit_of(dir.path(), 3).next_index();
    // Back, from its data directory, with nobody to talk to yet: its directory is on disk.
    let roster = roster(&[1, 2, 3]);
    let alone = Node::spawn(config(dir.path(), 3, &roster, vec![]))
        .await
        .unwrap();
    assert_eq!(
        count(&alone, "summarize").await,
        3,
        "directory restored from the store"
    );
    let own = alone.record(alone.node_id()).await.unwrap().unwrap();
    assert!(own.seq() >= 2, "its own chain continues: seq {}", own.seq());
    alone.shutdown().await.unwrap();
    let log = audit_of(dir.path(), 3);
    assert!(log.next_index() > entries_before, "the audit log continues");
    log.verify().unwrap().unwrap();
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unadmitted_and_impersonating_peers_are_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = federation(dir.path(), 2).await;
    let target = (nodes[0].node_id(), nodes[0].local_addr());
    // A stranger (seed 9) who admits everyone but is on nobody's roster.
    let open_roster = roster(&[1, 2, 9]);
    let stranger = Node::spawn(config(dir.path(), 9, &open_roster, vec![target]))
        .await
        .unwrap();
    // An admitted node (seed 3 is not running) impersonated: node 2's bootstrap
    // claims seed 3 lives at node 1's address.
    let impostor_roster = roster(&[1, 2, 3, 4]);
    let dialler = Node::spawn(config(
        dir.path(),
        4,
        &impostor_roster,
        vec![(identity(3).node_id(), target.1)],
    ))
    .await
    .unwrap();
    // A node whose own key is not on its roster does not start.
    let unlisted = Node::spawn(config(dir.path(), 5, &roster(&[1]), vec![])).await;
    assert!(matches!(
        unlisted,
        Err(tidings::net::node::NodeError::NotOnRoster(_))
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stranger.shutdown().await.unwrap();
    dialler.shutdown().await.unwrap();
    assert_eq!(
        count(&nodes[1], "summarize").await,
        2,
        "the stranger's record got nowhere"
    );
    for node in nodes {
        node.shutdown().await.unwrap();
    }
    let log = audit_of(dir.path(), 1);
    let refused = log
        .query(&Query {
            kind: Some(EntryKind::StrangerRefused),
            ..Default::default()
        })
        .unwrap();
    assert!(
        refused
            .iter()
            .any(|entry| entry.peer == Some(identity(9).node_id())),
        "node 1 audited the stranger's key: {refused:?}"
    );
    let log = audit_of(dir.path(), 4);
    let misdirected = log
        .query(&Query {
            kind: Some(EntryKind::Misdirected),
            ..Default::default()
        })
        .unwrap();
    assert!(
        misdirected
            .iter()
            .any(|entry| entry.peer == Some(identity(3).node_id())
                && entry.reason.contains("bootstrap entry is wrong")),
        "the dialler blamed its bootstrap entry for node 3: {misdirected:?}"
    );
    let refused = log
        .query(&Query {
            kind: Some(EntryKind::ConnectionRefused),
            ..Default::default()
        })
        .unwrap();
    assert!(
        !refused
            .iter()
            .any(|entry| entry.peer == Some(identity(1).node_id())),
        "node 1, which answered honestly, is not blamed: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_stops_refreshing_disappears_when_its_record_expires() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2, 3]);
    let first = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    let bootstrap = vec![(first.node_id(), first.local_addr())];
    let second = Node::spawn(config(dir.path(), 2, &members, bootstrap.clone()))
        .await
        .unwrap();
    let mut short = config(dir.path(), 3, &members, bootstrap);
    short.gossip.ttl_ms = 3_000;
    let short_lived = Node::spawn(short).await.unwrap();
    eventually("its record arrives", Duration::from_secs(10), || async {
        count(&first, "summarize").await == 3 && count(&second, "summarize").await == 3
    })
    .await;
    short_lived.shutdown().await.unwrap();
    eventually(
        "its record expires everywhere",
        Duration::from_secs(10),
        || async {
            count(&first, "summarize").await == 2 && count(&second, "summarize").await == 2
        },
    )
    .await;
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_data_continues_its_chain_instead_of_forking_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = federation(dir.path(), 3).await;
    nodes[2].announce(specialist("first", "x")).await.unwrap();
    let latest = nodes[2].announce(specialist("second", "x")).await.unwrap();
    let (first, second) = (&nodes[0], &nodes[1]);
    eventually(
        "peers hold its latest record",
        Duration::from_secs(10),
        || async {
            first
                .record(latest.origin())
                .await
                .unwrap()
                .is_some_and(|r| r.id() == latest.id())
                && second
                    .record(latest.origin())
                    .await
                    .unwrap()
                    .is_some_and(|r| r.id() == latest.id())
        },
    )
    .await;
    let lost = nodes.pop().unwrap();
    lost.shutdown().await.unwrap();
    std::fs::remove_dir_all(dir.path().join("node-3")).unwrap();
    // Back with the same key, an empty data directory, and its bootstrap peer.
    let members = roster(&[1, 2, 3]);
    let bootstrap = vec![(nodes[0].node_id(), nodes[0].local_addr())];
    let mut wiped = config(dir.path(), 3, &members, bootstrap);
    wiped.new_node = false;
    let back = Node::spawn(wiped).await.unwrap();
    let (first, second) = (&nodes[0], &nodes[1]);
    eventually(
        "its new record follows the old chain",
        Duration::from_secs(10),
        || async {
            first
                .record(latest.origin())
                .await
                .unwrap()
                .is_some_and(|r| r.seq() > latest.seq())
        },
    )
    .await;
    for node in [first, second] {
        let members = node.members().await.unwrap();
        assert!(
            !members.iter().any(|m| m.quarantined),
            "nobody was quarantined"
        );
    }
    back.shutdown().await.unwrap();
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}
