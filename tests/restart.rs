//! Restarts after faults: lost, deleted, corrupted and truncated parts of a data
//! directory, a quarantined node, a second process on one directory or with one
//! key. Whatever happens: a clear error and exit, or a recovery that says what it
//! recovered; never a fork, never a silently shortened audit history, never a
//! panic.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::{config, eventually, federation, identity, roster, specialist};
use tidings::audit::{AuditLog, EntryKind, Query, SledStore};
use tidings::keys::NodeId;
use tidings::net::node::{Node, NodeError, NodeHandle, Signing};
use tidings::net::transport::{send_frame, Transport};
use tidings::proto::wire::Message;
use tidings::proto::{Record, VerifiedRecord};

fn node_dir(dir: &Path, seed: u8) -> PathBuf {
    dir.join(format!("node-{seed}"))
}

fn audit_of(dir: &Path, seed: u8) -> AuditLog<SledStore> {
    AuditLog::open_read_only(SledStore::open(&node_dir(dir, seed).join("audit")).unwrap()).unwrap()
}

/// Every (seq, record id) the node's audit log shows it published.
fn publications(dir: &Path, seed: u8) -> Vec<(u64, String)> {
    let log = audit_of(dir, seed);
    log.query(&Query {
        kind: Some(EntryKind::Published),
        limit: 100_000,
        ..Query::default()
    })
    .unwrap()
    .into_iter()
    .map(|entry| {
        let bytes = log.evidence(&entry.record.unwrap()).unwrap().unwrap();
        let record = VerifiedRecord::from_bytes(&bytes, None).unwrap();
        (record.seq(), record.id().to_string())
    })
    .collect()
}

/// No seq appears with two record ids in these publications.
fn assert_linear(publications: &[(u64, String)]) {
    let mut by_seq = std::collections::BTreeMap::new();
    for (seq, id) in publications {
        if let Some(other) = by_seq.insert(*seq, id.clone()) {
            assert_eq!(&other, id, "seq {seq} signed twice");
        }
    }
}

async fn own_seq_at(node: &NodeHandle, origin: NodeId) -> Option<u64> {
    node.record(origin)
        .await
        .unwrap()
        .map(|record| record.seq())
}

/// A federation of three; node 3 announces twice more; returns the nodes and its
/// latest record once both peers hold it.
async fn three_with_history(dir: &Path) -> (Vec<NodeHandle>, VerifiedRecord) {
    let nodes = federation(dir, 3).await;
    nodes[2].announce(specialist("first", "x")).await.unwrap();
    let latest = nodes[2].announce(specialist("second", "x")).await.unwrap();
    eventually(
        "peers hold its latest record",
        Duration::from_secs(10),
        || async {
            own_seq_at(&nodes[0], latest.origin()).await == Some(latest.seq())
                && own_seq_at(&nodes[1], latest.origin()).await == Some(latest.seq())
        },
    )
    .await;
    (nodes, latest)
}

/// Stops node 3 and returns the address it listened on.
async fn stop_three(nodes: &mut Vec<NodeHandle>) -> SocketAddr {
    let third = nodes.pop().unwrap();
    let addr = third.local_addr();
    third.shutdown().await.unwrap();
    addr
}

/// Node 3 again, on the address it had (as a node with a configured port would).
async fn restart_three(
    dir: &Path,
    nodes: &[NodeHandle],
    listen: SocketAddr,
    bootstrap: bool,
) -> NodeHandle {
    let peers = if bootstrap {
        vec![(nodes[0].node_id(), nodes[0].local_addr())]
    } else {
        vec![]
    };
    let mut config = config(dir, 3, &roster(&[1, 2, 3]), peers);
    config.listen = listen;
    config.new_node = false;
    Node::spawn(config).await.unwrap()
}

async fn assert_continues(back: &NodeHandle, nodes: &[NodeHandle], latest: &VerifiedRecord) {
    back.ready().await.unwrap();
    let next = back.announce(specialist("third", "x")).await.unwrap();
    // Above its old chain (a restart on a new port signs its new address first).
    assert!(next.seq() > latest.seq(), "the chain continues");
    eventually(
        "peers take the next record",
        Duration::from_secs(10),
        || async { own_seq_at(&nodes[0], latest.origin()).await == Some(next.seq()) },
    )
    .await;
    for node in nodes {
        assert!(node.members().await.unwrap().iter().all(|m| !m.quarantined));
    }
}

async fn stop(nodes: Vec<NodeHandle>) {
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// When `shutdown` returns, the node's UDP port is free: a node restarted at
/// once on its configured port starts (quinn closes the socket in a task of its
/// own, after the connections closed at shutdown drain; the node waits for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_has_freed_its_port() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = federation(dir.path(), 3).await;
        nodes[2].announce(specialist("first", "x")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200 + 40 * round)).await;
        let third = nodes.pop().unwrap();
        let addr = third.local_addr();
        third.shutdown().await.unwrap();
        let bound = std::net::UdpSocket::bind(addr);
        assert!(bound.is_ok(), "round {round}: {bound:?}");
        stop(nodes).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_store_is_recovered_from_the_audit_log_with_or_without_peers() {
    for bootstrap in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (mut nodes, latest) = three_with_history(dir.path()).await;
        let listen = stop_three(&mut nodes).await;
        std::fs::remove_dir_all(node_dir(dir.path(), 3).join("store")).unwrap();
        let back = restart_three(dir.path(), &nodes, listen, bootstrap).await;
        let health = back.health();
        // After a repair it first hears its peers (without a bootstrap peer, they
        // call it: its address is in its record).
        assert_eq!(health.signing, Signing::Recovering, "{health:?}");
        assert!(
            health
                .startup_warnings
                .iter()
                .any(|warning| warning.contains("audit log shows seq")),
            "it says what it recovered: {health:?}"
        );
        assert_continues(&back, &nodes, &latest).await;
        back.shutdown().await.unwrap();
        stop(nodes).await;
        assert_linear(&publications(dir.path(), 3));
        let log = audit_of(dir.path(), 3);
        log.verify().unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_audit_log_is_resumed_from_the_stores_head_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, latest) = three_with_history(dir.path()).await;
    let listen = stop_three(&mut nodes).await;
    let last_index = audit_of(dir.path(), 3).next_index() - 1;
    std::fs::remove_dir_all(node_dir(dir.path(), 3).join("audit")).unwrap();
    let back = restart_three(dir.path(), &nodes, listen, false).await;
    assert!(back
        .health()
        .startup_warnings
        .iter()
        .any(|warning| warning.contains("missing")));
    assert_continues(&back, &nodes, &latest).await;
    back.shutdown().await.unwrap();
    stop(nodes).await;
    let log = audit_of(dir.path(), 3);
    let verified = log.verify().unwrap().unwrap();
    assert_eq!(verified.first, last_index + 1, "no index is used twice");
    let first = log.entry(last_index + 1).unwrap().unwrap();
    assert_eq!(first.kind, EntryKind::LogResumed);
    assert!(first.reason.contains("missing"), "{}", first.reason);
}

/// Ways to damage a sled database on disk.
fn damage(db: &Path, how: usize) {
    let file = db.join("db");
    let bytes = std::fs::read(&file).unwrap();
    let damaged = match how {
        0 => bytes[..bytes.len() / 2].to_vec(),
        1 => bytes[..bytes.len().saturating_sub(100)].to_vec(),
        2 => {
            let mut flipped = bytes.clone();
            let middle = flipped.len() / 2;
            for byte in &mut flipped[middle..middle + 64] {
                *byte ^= 0x5a;
            }
            flipped
        }
        _ => vec![0xff; bytes.len()],
    };
    std::fs::write(&file, damaged).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_never_makes_the_node_fork() {
    for how in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let (mut nodes, latest) = three_with_history(dir.path()).await;
        let listen = stop_three(&mut nodes).await;
        damage(&node_dir(dir.path(), 3).join("store"), how);
        let back = restart_three(dir.path(), &nodes, listen, true).await;
        println!("store damage {how}: {:?}", back.health().startup_warnings);
        assert_continues(&back, &nodes, &latest).await;
        back.shutdown().await.unwrap();
        stop(nodes).await;
        assert_linear(&publications(dir.path(), 3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_audit_log_is_never_silently_shortened() {
    for how in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let (mut nodes, latest) = three_with_history(dir.path()).await;
        let listen = stop_three(&mut nodes).await;
        let before = audit_of(dir.path(), 3).head();
        damage(&node_dir(dir.path(), 3).join("audit"), how);
        let back = restart_three(dir.path(), &nodes, listen, true).await;
        println!("audit damage {how}: {:?}", back.health().startup_warnings);
        assert_continues(&back, &nodes, &latest).await;
        back.shutdown().await.unwrap();
        stop(nodes).await;
        let log = audit_of(dir.path(), 3);
        log.verify().unwrap().unwrap();
        let (first, _) = log.base();
        if first > 0 || log.entry(1).unwrap().is_none() {
            // Resumed: the gap is stated, and no index below the old head is reused.
            let resumed = log.entry(first + 1).unwrap().unwrap();
            assert_eq!(resumed.kind, EntryKind::LogResumed, "damage {how}");
            assert!(first + 1 > 1, "damage {how}: the head was known");
        } else {
            // Read intact: the entry the node last made durable is there, unchanged.
            assert_eq!(
                log.check_head(before.0, &before.1).unwrap(),
                Ok(()),
                "damage {how}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_rolled_back_to_an_older_copy_is_detected_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = three_with_history(dir.path()).await;
    let listen = stop_three(&mut nodes).await;
    let audit = node_dir(dir.path(), 3).join("audit");
    let old_copy = dir.path().join("audit-backup");
    copy_folder(&audit, &old_copy);
    let backed_up = audit_of(dir.path(), 3).next_index() - 1;
    // More history after the backup, then the log is replaced by the backup.
    let back = restart_three(dir.path(), &nodes, listen, true).await;
    let latest = back
        .announce(specialist("after-backup", "x"))
        .await
        .unwrap();
    back.shutdown().await.unwrap();
    let head = audit_of(dir.path(), 3).next_index() - 1;
    assert!(head > backed_up);
    std::fs::remove_dir_all(&audit).unwrap();
    copy_folder(&old_copy, &audit);
    // Offline, `audit verify` finds it against the store's record.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["audit", "verify", "-d"])
        .arg(node_dir(dir.path(), 3))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{said}");
    assert!(
        said.contains("INVALID") && said.contains("older copy"),
        "{said}"
    );
    let back = restart_three(dir.path(), &nodes, listen, true).await;
    let warnings = back.health().startup_warnings;
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(&format!("ends at entry {backed_up},"))),
        "{warnings:?}"
    );
    assert_continues(&back, &nodes, &latest).await;
    back.shutdown().await.unwrap();
    stop(nodes).await;
    let log = audit_of(dir.path(), 3);
    let verified = log.verify().unwrap().unwrap();
    assert!(verified.first > backed_up, "the old indices are not reused");
    let resumed = log.entry(verified.first).unwrap().unwrap();
    assert_eq!(resumed.kind, EntryKind::LogResumed);
    // The replaced log was kept aside.
    let kept = std::fs::read_dir(node_dir(dir.path(), 3))
        .unwrap()
        .any(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("audit.damaged-")
        });
    assert!(kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_took_its_record_back_from_a_peer_starts_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, latest) = three_with_history(dir.path()).await;
    let listen = stop_three(&mut nodes).await;
    std::fs::remove_dir_all(node_dir(dir.path(), 3)).unwrap();
    let back = restart_three(dir.path(), &nodes, listen, true).await;
    assert_eq!(back.health().signing, Signing::Recovering);
    assert_continues(&back, &nodes, &latest).await;
    back.shutdown().await.unwrap();
    // A clean stop, then a start with nobody to ask: its store has the chain.
    let again = restart_three(dir.path(), &nodes, listen, false).await;
    assert_eq!(again.health().signing, Signing::Ok);
    let next = again.announce(specialist("fourth", "x")).await.unwrap();
    assert!(next.seq() > latest.seq() + 1);
    again.shutdown().await.unwrap();
    stop(nodes).await;
    assert_linear(&publications(dir.path(), 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_one_data_directory_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1]);
    let first = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    let second = Node::spawn(config(dir.path(), 1, &members, vec![])).await;
    match second {
        Err(NodeError::Lock(error)) => {
            let message = error.to_string();
            assert!(
                message.contains(&format!("pid {}", std::process::id())),
                "{message}"
            );
        }
        other => panic!("a second node on one directory: {other:?}"),
    }
    first.shutdown().await.unwrap();
    // Released with the first.
    Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_node_starts_says_why_and_does_not_sign() {
    let dir = tempfile::tempdir().unwrap();
    // Seed 4 is admitted but not running: its key only delivers the evidence.
    let members = roster(&[1, 2, 3, 4]);
    let first = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    let bootstrap = vec![(first.node_id(), first.local_addr())];
    let second = Node::spawn(config(dir.path(), 2, &members, bootstrap.clone()))
        .await
        .unwrap();
    let third = Node::spawn(config(dir.path(), 3, &members, bootstrap.clone()))
        .await
        .unwrap();
    third.ready().await.unwrap();
    let own = third.announce(specialist("mine", "x")).await.unwrap();
    eventually("node 1 holds it", Duration::from_secs(10), || async {
        own_seq_at(&first, own.origin()).await == Some(own.seq())
    })
    .await;
    // A second history of node 3 (its key in the wrong hands), delivered to node 1.
    let mut fork = own.record().clone();
    fork.specialists = vec![specialist("forged", "x")];
    let fork = VerifiedRecord::sign(&identity(3), Record { ..fork }).unwrap();
    let shared = Arc::new(RwLock::new(members.clone()));
    let carrier = Transport::bind(&identity(4), shared, "127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = carrier
        .dial(first.node_id(), first.local_addr())
        .await
        .unwrap();
    send_frame(
        &connection,
        &Message::Records(vec![fork.wire_bytes().to_vec()]).encode(),
    )
    .await
    .unwrap();
    eventually(
        "node 3 learns it is quarantined",
        Duration::from_secs(15),
        || async { third.health().signing == Signing::Halted },
    )
    .await;
    assert!(third.health().quarantined);
    third.shutdown().await.unwrap();
    // Restarted: it starts, says why it cannot publish, and refuses to sign.
    let back = Node::spawn(config(dir.path(), 3, &members, bootstrap))
        .await
        .unwrap();
    let health = back.health();
    assert_eq!(health.signing, Signing::Halted, "{health:?}");
    assert!(health.problem.unwrap().contains("pardon"));
    assert!(matches!(
        back.announce(specialist("again", "x")).await,
        Err(NodeError::Publish(tidings::proto::PublishError::Halted(_)))
    ));
    back.shutdown().await.unwrap();
    for node in [first, second] {
        let members = node.members().await.unwrap();
        let quarantined: Vec<_> = members.iter().filter(|m| m.quarantined).collect();
        assert_eq!(quarantined.len(), 1, "only the forked key");
        node.shutdown().await.unwrap();
    }
    drop(connection);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_key_is_detected_and_nobody_else_pays() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = three_with_history(dir.path()).await;
    let original = nodes.pop().unwrap();
    original.shutdown().await.unwrap();
    // A copy of its folder, elsewhere, run on another port alongside the original.
    let copy_dir = dir.path().join("copy");
    copy_folder(&node_dir(dir.path(), 3), &copy_dir.join("node-3"));
    let members = roster(&[1, 2, 3]);
    let bootstrap = vec![(nodes[0].node_id(), nodes[0].local_addr())];
    let original = Node::spawn(config(dir.path(), 3, &members, bootstrap.clone()))
        .await
        .unwrap();
    let copy = Node::spawn(config(&copy_dir, 3, &members, bootstrap.clone()))
        .await
        .unwrap();
    eventually(
        "at least one of the two stops signing and says why",
        Duration::from_secs(20),
        || async {
            [&original, &copy].iter().any(|node| {
                let health = node.health();
                health.signing == Signing::Halted && (health.foreign_signer || health.quarantined)
            })
        },
    )
    .await;
    for node in &nodes {
        let quarantined: Vec<NodeId> = node
            .members()
            .await
            .unwrap()
            .iter()
            .filter(|m| m.quarantined)
            .map(|m| m.id)
            .collect();
        assert!(
            quarantined.iter().all(|id| *id == original.node_id()),
            "only the doubled key may be quarantined: {quarantined:?}"
        );
    }
    copy.shutdown().await.unwrap();
    original.shutdown().await.unwrap();
    // The real node still starts afterwards, and says where it stands.
    let again = Node::spawn(config(dir.path(), 3, &members, bootstrap))
        .await
        .unwrap();
    again.shutdown().await.unwrap();
    stop(nodes).await;
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_recovery_recovers_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, latest) = three_with_history(dir.path()).await;
    let listen = stop_three(&mut nodes).await;
    std::fs::remove_dir_all(node_dir(dir.path(), 3)).unwrap();
    // Its peers are down: it cannot finish recovering.
    let peers: Vec<(NodeId, SocketAddr)> = nodes
        .iter()
        .map(|node| (node.node_id(), node.local_addr()))
        .collect();
    stop(nodes).await;
    let members = roster(&[1, 2, 3]);
    let mut wiped = config(dir.path(), 3, &members, peers.clone());
    wiped.listen = listen;
    wiped.new_node = false;
    let back = Node::spawn(wiped.clone()).await.unwrap();
    assert_eq!(back.health().signing, Signing::Recovering);
    back.shutdown().await.unwrap();
    // Restarted before recovery ended: it recovers again, though its directory
    // now exists.
    let back = Node::spawn(wiped).await.unwrap();
    let health = back.health();
    assert_eq!(health.signing, Signing::Recovering, "{health:?}");
    assert!(health
        .startup_warnings
        .iter()
        .any(|warning| warning.contains("was recovering")));
    // A peer returns (and calls it): it takes back its chain and jumps above it.
    let first = Node::spawn(config(
        dir.path(),
        1,
        &members,
        vec![(back.node_id(), back.local_addr())],
    ))
    .await
    .unwrap();
    back.ready().await.unwrap();
    let next = back.announce(specialist("after", "x")).await.unwrap();
    assert!(next.seq() > latest.seq() + 1000, "{}", next.seq());
    eventually("node 1 takes it", Duration::from_secs(10), || async {
        own_seq_at(&first, latest.origin()).await == Some(next.seq())
    })
    .await;
    assert!(first
        .members()
        .await
        .unwrap()
        .iter()
        .all(|m| !m.quarantined));
    back.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}
