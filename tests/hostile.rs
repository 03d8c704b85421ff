//! Hostile peers over real QUIC: what they cannot stall, amplify, exhaust or
//! erase. Each test plays one attack against nodes on loopback and checks the
//! bound the node promises.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{config, identity, roster};
use tidings::net::node::Node;
use tidings::net::transport::Transport;
use tokio::net::UdpSocket;

/// A UDP relay that passes a client's packets to `server` and drops every answer:
/// the client's handshake starts at the server and is never answered.
async fn black_hole(server: SocketAddr) -> SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 65_536];
        let mut answers = vec![0u8; 65_536];
        loop {
            tokio::select! {
                received = front.recv_from(&mut buffer) => {
                    let Ok((length, _)) = received else { return };
                    let _ = back.send_to(&buffer[..length], server).await;
                }
                // Answers are read and thrown away.
                _ = back.recv_from(&mut answers) => {}
            }
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_handshakes_do_not_delay_an_admitted_peer() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2, 3]);
    let victim = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    // Six handshakes opened through black holes, never answered (no key needed:
    // the stranger's key would be refused, but the handshake never gets that far).
    let shared = Arc::new(RwLock::new(members.clone()));
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let relay = black_hole(victim.local_addr()).await;
        let stranger =
            Transport::bind(&identity(9), shared.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let node = victim.node_id();
        stalled.push(tokio::spawn(async move {
            let _ = stranger.dial(node, relay).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An admitted peer dials meanwhile.
    let peer = Transport::bind(&identity(2), shared, "127.0.0.1:0".parse().unwrap()).unwrap();
    let started = Instant::now();
    let connection = peer
        .dial(victim.node_id(), victim.local_addr())
        .await
        .unwrap();
    let handshake = started.elapsed();
    println!("admitted handshake beside six stalled ones: {handshake:?}");
    assert!(handshake < Duration::from_secs(1), "{handshake:?}");
    drop(connection);
    // A new member joins as quickly.
    let started = Instant::now();
    let joining = Node::spawn(config(
        dir.path(),
        3,
        &members,
        vec![(victim.node_id(), victim.local_addr())],
    ))
    .await
    .unwrap();
    joining.ready().await.unwrap();
    println!(
        "a new member joined (it may sign) after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    for task in stalled {
        task.abort();
    }
    joining.shutdown().await.unwrap();
    victim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_listing_another_members_address_is_blamed_on_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2, 3]);
    let honest = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    let bootstrap = vec![(honest.node_id(), honest.local_addr())];
    // Node 2 advertises node 1's address as its own.
    let mut liar = config(dir.path(), 2, &members, bootstrap.clone());
    liar.advertise = Some(vec![honest.local_addr().to_string()]);
    let liar = Node::spawn(liar).await.unwrap();
    let victim = Node::spawn(config(dir.path(), 3, &members, bootstrap))
        .await
        .unwrap();
    let liar_id = liar.node_id();
    common::eventually(
        "the victim dials the liar at the listed address and says whose record lied",
        Duration::from_secs(20),
        || async {
            victim
                .audit_log()
                .unwrap()
                .query(&tidings::audit::Query {
                    kind: Some(tidings::audit::EntryKind::Misdirected),
                    ..Default::default()
                })
                .unwrap()
                .iter()
                .any(|entry| {
                    entry.peer == Some(liar_id)
                        && entry.record.is_some()
                        && entry.reason.contains("record's address is wrong")
                })
        },
    )
    .await;
    let refused = victim
        .audit_log()
        .unwrap()
        .query(&tidings::audit::Query {
            kind: Some(tidings::audit::EntryKind::ConnectionRefused),
            ..Default::default()
        })
        .unwrap();
    assert!(
        refused
            .iter()
            .all(|entry| entry.peer != Some(honest.node_id())),
        "the node that answered is never blamed: {refused:?}"
    );
    let members = victim.members().await.unwrap();
    assert!(members.iter().all(|member| !member.banned));
    victim.shutdown().await.unwrap();
    liar.shutdown().await.unwrap();
    honest.shutdown().await.unwrap();
}
