//! Helpers shared by the tests that run nodes over QUIC on loopback.
#![allow(dead_code, clippy::unwrap_used)]

pub mod cluster;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::keys::{Identity, NodeId, Roster};
use tidings::net::node::{Lookup, Node, NodeConfig, NodeHandle};
use tidings::proto::{GossipConfig, Specialist};

pub fn specialist(name: &str, capability: &str) -> Specialist {
    Specialist {
        name: name.into(),
        capabilities: vec![capability.into()],
        endpoint: format!("https://{name}.example/api"),
        meta: Default::default(),
    }
}

pub fn identity(seed: u8) -> Arc<Identity> {
    Arc::new(Identity::from_seed(&[seed; 32]))
}

pub fn roster(seeds: &[u8]) -> Roster {
    seeds.iter().map(|&seed| identity(seed).node_id()).collect()
}

pub fn config(
    dir: &Path,
    seed: u8,
    roster: &Roster,
    bootstrap: Vec<(NodeId, SocketAddr)>,
) -> NodeConfig {
    NodeConfig {
        bootstrap,
        gossip: GossipConfig {
            interval_ms: 200,
            ..GossipConfig::default()
        },
        specialists: vec![specialist(&format!("agent-{seed}"), "summarize")],
        // Test keys start with empty directories; a test that restarts a node
        // after wiping its data says `new_node: false`.
        new_node: true,
        ..NodeConfig::new(
            dir.join(format!("node-{seed}")),
            identity(seed),
            "test",
            roster.clone(),
        )
    }
}

/// Starts nodes with seeds 1..=count; every node bootstraps from node 1.
pub async fn federation(dir: &Path, count: u8) -> Vec<NodeHandle> {
    let members: Vec<u8> = (1..=count).collect();
    let roster = roster(&members);
    let first = Node::spawn(config(dir, 1, &roster, vec![])).await.unwrap();
    let bootstrap = vec![(first.node_id(), first.local_addr())];
    let mut nodes = vec![first];
    for seed in 2..=count {
        nodes.push(
            Node::spawn(config(dir, seed, &roster, bootstrap.clone()))
                .await
                .unwrap(),
        );
    }
    // A fresh node with a bootstrap peer hears it before it signs.
    for node in &nodes {
        node.ready().await.unwrap();
    }
    nodes
}

pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {timeout:?}: {what}");
}

pub async fn count(node: &NodeHandle, capability: &str) -> usize {
    node.lookup(Lookup {
        capability: Some(capability.into()),
        ..Lookup::default()
    })
    .await
    .unwrap()
    .len()
}
