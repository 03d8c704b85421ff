//! The state machine driven by a tiny lossless network that delivers every message
//! at once, in order.

use std::collections::VecDeque;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tidings_keys::{Identity, NodeId};

use super::*;
use crate::proto::membership::member_list;
use crate::proto::testkit::{announcement, Federation, NOW};

struct Net {
    federation: Federation,
    nodes: Vec<State>,
    rng: ChaCha8Rng,
    now: u64,
    delivered: usize,
    audit: Vec<(usize, AuditEvent)>,
}

impl Net {
    fn new(size: usize, rumor_fanout: usize) -> Self {
        let federation = Federation::new(size);
        let members = member_list(&federation.roster);
        let gossip = GossipConfig {
            rumor_fanout,
            ..GossipConfig::default()
        };
        let nodes = (0..size)
            .map(|i| {
                let identity = Arc::new(Identity::from_seed(&[(i + 1) as u8; 32]));
                let mut state = State::new(
                    identity,
                    DirectoryConfig::new(federation.id),
                    gossip.clone(),
                    federation.roster.clone(),
                    members.clone(),
                    NOW,
                );
                state.assume_membership_known();
                state
            })
            .collect();
        Self {
            federation,
            nodes,
            rng: ChaCha8Rng::seed_from_u64(5),
            now: NOW,
            delivered: 0,
            audit: vec![],
        }
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|node| node.node_id() == *id)
    }

    /// Delivers every pending output until the network is quiet.
    fn settle(&mut self) {
        let mut queue: VecDeque<(usize, Output)> = VecDeque::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            queue.extend(node.drain_outputs().map(|output| (i, output)));
        }
        while let Some((from, output)) = queue.pop_front() {
            match output {
                Output::Send { to, message } => {
                    let Some(target) = self.index(&to) else {
                        continue;
                    };
                    self.delivered += 1;
                    let sender = self.nodes[from].node_id();
                    let bytes = message.encode();
                    self.nodes[target].handle_frame(sender, &bytes, self.now, &mut self.rng);
                    queue.extend(self.nodes[target].drain_outputs().map(|o| (target, o)));
                }
                Output::Audit(event) => self.audit.push((from, event)),
                _ => {}
            }
        }
    }

    fn rounds(&mut self, count: usize) {
        for _ in 0..count {
            self.now += 1000;
            for node in &mut self.nodes {
                node.handle_timeout(self.now, &mut self.rng);
            }
            self.settle();
        }
    }
}

#[test]
fn a_publication_reaches_every_node_by_anti_entropy_alone() {
    let mut net = Net::new(8, 0);
    let record = net.nodes[0]
        .publish(announcement(&["ocr"]), net.now, &mut net.rng)
        .unwrap();
    net.settle();
    net.rounds(8);
    for node in &net.nodes {
        let entry = node.directory().entry(&record.origin()).expect("converged");
        assert_eq!(entry.record.id(), record.id());
    }
    // The publisher audited its publication.
    assert!(net
        .audit
        .iter()
        .any(|(i, e)| *i == 0 && matches!(e, AuditEvent::Published(_))));
}

#[test]
fn the_rumor_path_spreads_without_rounds() {
    let mut net = Net::new(6, 5);
    let record = net.nodes[2]
        .publish(announcement(&["a"]), net.now, &mut net.rng)
        .unwrap();
    net.settle();
    assert!(net
        .nodes
        .iter()
        .all(|node| node.directory().entry(&record.origin()).is_some()));
}

#[test]
fn converged_nodes_exchange_only_root_digests() {
    let mut net = Net::new(5, 0);
    for i in 0..5 {
        net.nodes[i]
            .publish(announcement(&["s"]), net.now, &mut net.rng)
            .unwrap();
    }
    net.rounds(10);
    assert!(net.nodes.iter().all(|node| node.directory().len() == 5));
    let before = net.delivered;
    net.rounds(1);
    // Two openings per node and nothing else.
    assert_eq!(net.delivered - before, 10);
}

#[test]
fn withdraw_and_refresh_continue_the_chain() {
    let mut net = Net::new(3, 2);
    net.nodes[0]
        .publish(announcement(&["a", "b"]), net.now, &mut net.rng)
        .unwrap();
    let second = net.nodes[0].withdraw("a", net.now, &mut net.rng).unwrap();
    assert_eq!(second.seq(), 2);
    assert_eq!(second.record().specialists.len(), 1);
    assert_eq!(
        net.nodes[0]
            .withdraw("zzz", net.now, &mut net.rng)
            .unwrap_err(),
        PublishError::UnknownSpecialist("zzz".into())
    );
    net.settle();
    assert!(net.nodes[1].directory().by_name("a").is_empty());
    assert_eq!(net.nodes[1].directory().by_name("b").len(), 1);
    // Refresh at half the TTL.
    let refresh = second.record().issued_at_ms + net.nodes[0].config().ttl_ms / 2;
    assert_eq!(
        net.nodes[0].poll_timeout(),
        net.nodes[0].poll_timeout().min(refresh)
    );
    net.now = refresh;
    net.nodes[0].handle_timeout(refresh, &mut net.rng);
    assert_eq!(net.nodes[0].own_record().unwrap().seq(), 3);
}

#[test]
fn garbage_frames_get_a_peer_banned() {
    let mut net = Net::new(3, 2);
    let rogue = net.nodes[1].node_id();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut outputs = Vec::new();
    for _ in 0..3 {
        outputs.extend(net.nodes[0].handle(
            Input::Frame {
                from: rogue,
                bytes: vec![1, 200, 3],
            },
            NOW,
            &mut rng,
        ));
    }
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::Disconnect { peer, .. } if *peer == rogue)));
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::Audit(AuditEvent::Banned { .. }))));
    assert!(net.nodes[0].is_banned(&rogue, NOW));
    // While banned, its frames are not even read.
    let before = net.nodes[0].counters().frames_malformed;
    net.nodes[0].handle_frame(rogue, &[9, 9], NOW, &mut rng);
    assert_eq!(net.nodes[0].counters().frames_malformed, before);
    assert_eq!(net.nodes[0].counters().frames_refused, 1);
    // And it is never picked for gossip.
    for _ in 0..50 {
        net.nodes[0].handle_timeout(net.now, &mut rng);
        net.now += 1000;
        for output in net.nodes[0].drain_outputs() {
            if let Output::Send { to, .. } = output {
                assert_ne!(to, rogue);
            }
        }
    }
}

#[test]
fn a_flood_is_cut_off() {
    let mut net = Net::new(2, 0);
    let flooder = net.nodes[1].node_id();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let frame = Message::Want(vec![]).encode();
    for _ in 0..1000 {
        net.nodes[0].handle_frame(flooder, &frame, NOW, &mut rng);
    }
    assert!(net.nodes[0].counters().frames_flooded > 0);
    assert!(net.nodes[0].is_banned(&flooder, NOW));
}

#[test]
fn forged_records_cost_the_relaying_peer() {
    let mut net = Net::new(3, 0);
    let relay = net.nodes[1].node_id();
    // Node 2 signs a record claiming to be node 0's.
    let forged = crate::proto::testkit::sign_unchecked(
        &net.federation.members[2],
        &net.federation.first(0, &["fake"]),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    net.nodes[0].handle_frame(
        relay,
        &Message::Records(vec![forged]).encode(),
        NOW,
        &mut rng,
    );
    assert!(net.nodes[0].directory().is_empty());
    assert_eq!(net.nodes[0].peer_points(&relay, NOW), 40);
    let audited = net.nodes[0].drain_outputs().any(|o| {
        matches!(o, Output::Audit(AuditEvent::Verdict { peer: Some(p), verdict: Verdict::Rejected(_) }) if p == relay)
    });
    assert!(audited);
}

#[test]
fn an_equivocation_is_caught_and_its_proof_spreads() {
    let mut net = Net::new(6, 2);
    let honest = net.federation.sign(5, net.federation.first(5, &["a"]));
    let fork = net.federation.sign(5, net.federation.first(5, &["b"]));
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let from = net.nodes[5].node_id();
    // The forker shows one history to node 0 and the other to node 1.
    net.nodes[0].handle_frame(
        from,
        &Message::Records(vec![honest.wire_bytes().to_vec()]).encode(),
        NOW,
        &mut rng,
    );
    net.nodes[1].handle_frame(
        from,
        &Message::Records(vec![fork.wire_bytes().to_vec()]).encode(),
        NOW,
        &mut rng,
    );
    net.settle();
    net.rounds(6);
    for node in &net.nodes[..5] {
        assert!(
            node.directory().is_quarantined(&from),
            "quarantined at every honest node"
        );
        assert!(node.directory().entry(&from).is_none());
    }
}

#[test]
fn a_lost_own_record_is_recovered_from_peers() {
    let mut net = Net::new(3, 2);
    net.nodes[0]
        .publish(announcement(&["a"]), net.now, &mut net.rng)
        .unwrap();
    net.nodes[0]
        .publish(announcement(&["a", "b"]), net.now, &mut net.rng)
        .unwrap();
    net.settle();
    // Node 0 restarts with nothing.
    let federation_id = net.federation.id;
    let members = member_list(&net.federation.roster);
    net.nodes[0] = State::new(
        Arc::new(Identity::from_seed(&[1; 32])),
        DirectoryConfig::new(federation_id),
        GossipConfig::default(),
        net.federation.roster.clone(),
        members,
        net.now,
    );
    let bootstrap = net.nodes[1].node_id();
    net.nodes[0].add_bootstrap([bootstrap]);
    net.rounds(3);
    assert_eq!(net.nodes[0].own_record().map(|r| r.seq()), Some(2));
    let third = net.nodes[0]
        .publish(announcement(&["c"]), net.now, &mut net.rng)
        .unwrap();
    assert_eq!(third.seq(), 3, "continues the chain instead of forking it");
}

#[test]
fn commands_arrive_as_inputs_too() {
    let mut net = Net::new(2, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let outputs = net.nodes[0].handle(Input::Publish(announcement(&["a"])), NOW, &mut rng);
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::Audit(AuditEvent::Published(_)))));
    let outputs = net.nodes[0].handle(Input::Withdraw("missing".into()), NOW, &mut rng);
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::CommandFailed(PublishError::UnknownSpecialist(_)))));
}

#[test]
fn only_reachable_members_are_picked() {
    let federation = Federation::new(50);
    let members = member_list(&federation.roster);
    let mut state = State::new(
        Arc::new(Identity::from_seed(&[1; 32])),
        DirectoryConfig::new(federation.id),
        GossipConfig::default(),
        federation.roster.clone(),
        members,
        NOW,
    );
    let bootstrap = federation.node(7);
    state.add_bootstrap([bootstrap]);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for round in 1..20 {
        state.handle_timeout(NOW + round * 1000, &mut rng);
        for output in state.drain_outputs() {
            if let Output::Send { to, .. } = output {
                assert_eq!(to, bootstrap, "only the bootstrap peer is known");
            }
        }
    }
    // A peer that contacts this node becomes reachable.
    let caller = federation.node(9);
    state.handle_frame(
        caller,
        &Message::Want(vec![]).encode(),
        NOW + 30_000,
        &mut rng,
    );
    let mut seen = std::collections::BTreeSet::new();
    for round in 31..80 {
        state.handle_timeout(NOW + round * 1000, &mut rng);
        for output in state.drain_outputs() {
            if let Output::Send { to, .. } = output {
                seen.insert(to);
            }
        }
    }
    assert_eq!(seen, [bootstrap, caller].into_iter().collect());
}
