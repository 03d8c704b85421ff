//! The state machine driven by a tiny lossless network that delivers every message
//! at once, in order.

use std::collections::VecDeque;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tidings_keys::{Identity, NodeId};

use super::*;
use crate::proto::budget::WorkLimit;
use crate::proto::testkit::{announcement, Federation, NOW};

struct Net {
    federation: Federation,
    nodes: Vec<State>,
    /// Nodes whose records, pushes and proofs never leave (they still announce).
    withholders: Vec<usize>,
    /// Messages delivered, by name.
    by_name: std::collections::BTreeMap<&'static str, usize>,
    rng: ChaCha8Rng,
    now: u64,
    delivered: usize,
    audit: Vec<(usize, AuditEvent)>,
    queue: VecDeque<(usize, Output)>,
}

/// Every output `state` has, in order.
fn outputs(state: &mut State) -> Vec<Output> {
    std::iter::from_fn(|| state.poll_output()).collect()
}

impl Net {
    fn new(size: usize, neighbours: usize) -> Self {
        let federation = Federation::new(size);
        let ledger = federation.ledger();
        let gossip = GossipConfig {
            spread: crate::proto::spread::SpreadConfig {
                neighbours,
                ..Default::default()
            },
            ..GossipConfig::default()
        };
        let nodes = (0..size)
            .map(|i| {
                let identity = Arc::new(Identity::from_seed(&[(i + 1) as u8; 32]));
                let mut state = State::new(
                    identity,
                    DirectoryConfig::new(federation.id),
                    gossip.clone(),
                    ledger.clone(),
                    NOW,
                );
                state.assume_membership_known();
                state
            })
            .collect();
        Self {
            federation,
            nodes,
            withholders: Vec::new(),
            by_name: Default::default(),
            rng: ChaCha8Rng::seed_from_u64(5),
            now: NOW,
            delivered: 0,
            audit: vec![],
            queue: VecDeque::new(),
        }
    }

    /// Runs a command on node `i` and returns its answer; the node's other
    /// outputs wait for the next `settle`.
    fn command(&mut self, i: usize, command: Command) -> Result<VerifiedRecord, PublishError> {
        self.nodes[i].handle_command(command, self.now, &mut self.rng);
        let mut answer = None;
        for output in outputs(&mut self.nodes[i]) {
            match output {
                Output::CommandResult(result) => answer = Some(result),
                other => self.queue.push_back((i, other)),
            }
        }
        answer.expect("every command is answered")
    }

    fn publish(&mut self, i: usize, names: &[&str]) -> Result<VerifiedRecord, PublishError> {
        self.command(i, Command::Publish(announcement(names)))
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|node| node.node_id() == *id)
    }

    /// Delivers every pending output until the network is quiet.
    fn settle(&mut self) {
        let mut queue = std::mem::take(&mut self.queue);
        for (i, node) in self.nodes.iter_mut().enumerate() {
            queue.extend(outputs(node).into_iter().map(|output| (i, output)));
        }
        while let Some((from, output)) = queue.pop_front() {
            match output {
                Output::Send { to, message } => {
                    let Some(target) = self.index(&to) else {
                        continue;
                    };
                    let delivers = matches!(
                        message,
                        Message::Records(_) | Message::Push(_) | Message::Proofs(_)
                    );
                    if delivers && self.withholders.contains(&from) {
                        continue;
                    }
                    self.delivered += 1;
                    *self.by_name.entry(message.name()).or_default() += 1;
                    if matches!(&message, Message::Graft(asked) if !asked.is_empty()) {
                        *self.by_name.entry("graft asking for records").or_default() += 1;
                    }
                    let sender = self.nodes[from].node_id();
                    let bytes = message.encode();
                    self.nodes[target].handle_frame(sender, &bytes, self.now, &mut self.rng);
                    queue.extend(
                        outputs(&mut self.nodes[target])
                            .into_iter()
                            .map(|o| (target, o)),
                    );
                }
                Output::Audit(event) => self.audit.push((from, event)),
                _ => {}
            }
        }
    }

    /// Advances time by `ms`, runs the timers that are due (not a whole
    /// round unless one is due), and delivers.
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        for node in &mut self.nodes {
            if node.poll_timeout() <= self.now {
                node.handle_timeout(self.now, &mut self.rng);
            }
        }
        self.settle();
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
    let record = net.publish(0, &["ocr"]).unwrap();
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
fn spreading_reaches_every_node_without_rounds() {
    let mut net = Net::new(6, 5);
    let record = net.publish(2, &["a"]).unwrap();
    net.settle();
    assert!(net
        .nodes
        .iter()
        .all(|node| node.directory().entry(&record.origin()).is_some()));
}

#[test]
fn eager_links_thin_out_to_the_floor() {
    let size = 16;
    let mut net = Net::new(size, 4);
    for i in 0..10 {
        net.publish(i, &["warm-up"]).unwrap();
        net.settle();
    }
    let pruned: u64 = net.nodes.iter().map(|n| n.counters().pushes_pruned).sum();
    assert!(pruned > 0, "duplicates were pruned while the tree formed");
    let pushes_before = net.by_name.get("push").copied().unwrap_or(0);
    let record = net.publish(12, &["news"]).unwrap();
    net.settle();
    let pushes = net.by_name["push"] - pushes_before;
    for node in &net.nodes {
        let held = node.directory().entry(&record.origin()).unwrap();
        assert_eq!(held.record.id(), record.id(), "every node got it at once");
    }
    // Each node keeps about three eager links and pushes along all but the one
    // the record came by: two or three copies per node, far below flooding
    // every link (one copy per link end, less the first).
    let links: usize = net
        .nodes
        .iter()
        .map(|node| node.spread.neighbours().count())
        .sum();
    assert!(
        pushes <= 3 * size && pushes * 2 < links,
        "{pushes} pushes for {size} nodes with {links} link ends"
    );
    for node in &net.nodes {
        let (eager, _) = node.link_counts();
        assert!(
            eager >= crate::proto::spread::EAGER_FLOOR,
            "{eager} eager links"
        );
    }
    // The lazy links heard of it, in announcements, once their delay is up.
    let haves_before = net.by_name.get("have").copied().unwrap_or(0);
    net.advance(net.nodes[0].config().spread.announce_delay_ms);
    assert!(net.by_name["have"] > haves_before);
    assert!(net
        .nodes
        .iter()
        .all(|node| node.spread.awaited_count() == 0));
}

#[test]
fn a_withholding_neighbour_is_routed_around_within_graft_timeouts() {
    // Whether the withholders cut a node off depends on the neighbour graph the
    // nodes happened to choose: several graphs, and at least one must do it.
    let (mut cut_off, mut grafts) = (0, 0);
    for seed in 0..6 {
        let size = 12;
        let mut net = Net::new(size, 3);
        net.rng = ChaCha8Rng::seed_from_u64(seed);
        // Let the eager links thin out first, so that the withholder is the
        // only eager path to some nodes.
        for i in 1..8 {
            net.publish(i, &["warm-up"]).unwrap();
            net.settle();
            net.advance(10);
        }
        // Half the nodes withhold: some honest nodes may have only
        // withholders as eager neighbours.
        net.withholders = vec![3, 4, 5, 6, 7, 8];
        let record = net.publish(0, &["news"]).unwrap();
        net.settle();
        let lacking = |net: &Net| {
            net.nodes
                .iter()
                .enumerate()
                .filter(|(i, node)| {
                    !net.withholders.contains(i)
                        && node
                            .directory()
                            .entry(&record.origin())
                            .is_none_or(|entry| entry.record.id() != record.id())
                })
                .count()
        };
        let before_grafts = lacking(&net);
        let grafts_before: u64 = net.nodes.iter().map(|n| n.counters().grafts).sum();
        let graft_messages = net
            .by_name
            .get("graft asking for records")
            .copied()
            .unwrap_or(0);
        // Announcements, then asks: well before the first round (1,000 ms).
        for _ in 0..20 {
            net.advance(25);
        }
        assert!(net.now < NOW + 1000, "no round ran");
        assert_eq!(
            lacking(&net),
            0,
            "seed {seed}: {before_grafts} lacked it after the pushes"
        );
        if before_grafts > 0 {
            // A node cut off hears no news by push: its asks are grafts,
            // which turn the announcers' links eager.
            let asked = net.by_name.get("graft asking for records").copied();
            assert!(asked.unwrap_or(0) > graft_messages);
        }
        cut_off += before_grafts;
        grafts += net.nodes.iter().map(|n| n.counters().grafts).sum::<u64>() - grafts_before;
    }
    assert!(cut_off > 0, "the withholders cut some nodes off");
    assert!(grafts > 0, "the lacking nodes asked for it");
}

#[test]
fn announcements_of_unknown_origins_or_old_records_are_not_awaited() {
    let mut net = Net::new(3, 2);
    let record = net.publish(1, &["a"]).unwrap();
    net.settle();
    let peer = net.nodes[1].node_id();
    let old = Holding::of_record(&record);
    let outsider = Holding {
        origin: NodeId::from_bytes([0xee; 32]),
        seq: 9,
        tag: 1,
    };
    let newer = Holding {
        seq: old.seq + 1,
        ..old
    };
    let frame = Message::Have(vec![old, outsider]).encode();
    net.nodes[0].handle_frame(peer, &frame, net.now, &mut net.rng);
    assert_eq!(net.nodes[0].spread.awaited_count(), 0);
    let frame = Message::Have(vec![newer]).encode();
    net.nodes[0].handle_frame(peer, &frame, net.now, &mut net.rng);
    assert_eq!(net.nodes[0].spread.awaited_count(), 1);
    // Asked for at the graft timeout; never delivered: a broken promise.
    let graft_at = net.now + net.nodes[0].config().spread.graft_timeout_ms;
    assert_eq!(net.nodes[0].poll_timeout(), graft_at);
    net.nodes[0].handle_timeout(graft_at, &mut net.rng);
    let sent: Vec<Output> = outputs(&mut net.nodes[0]);
    assert!(sent.iter().any(|output| matches!(
        output,
        Output::Send { to, message: Message::Graft(origins) }
            if *to == peer && origins == &vec![record.origin()]
    )));
    let deadline = graft_at + net.nodes[0].config().want_timeout_ms;
    net.nodes[0].handle_timeout(deadline, &mut net.rng);
    assert!(net.nodes[0].peer_points(&peer, deadline) > 0);
}

/// Node 0 hears node 3 announce node 2's new record, which the eager path has
/// not brought by the graft timeout. Without `push_news` it is asked then.
/// With it, node 1 pushed node 0 a record that was news 40 ms before the
/// graft timeout, so the record is awaited once more, and another 50 ms before
/// the second due time, when it is asked. Returns how node 0 asked node 3.
fn late_record_asked(push_news: bool) -> Message {
    let mut net = Net::new(4, 2);
    let pushed = net.publish(1, &["a"]).unwrap();
    let pushed_later = net.publish(1, &["a", "c"]).unwrap();
    let late = net.publish(2, &["b"]).unwrap();
    let (from_1, from_3) = (net.nodes[1].node_id(), net.nodes[3].node_id());
    let start = net.now;
    let have = Message::Have(vec![Holding::of_record(&late)]).encode();
    net.nodes[0].handle_frame(from_3, &have, start, &mut net.rng);
    let push = |net: &mut Net, record: &VerifiedRecord, at: u64| {
        let push = Message::Push(vec![record.wire_bytes().to_vec()]).encode();
        net.nodes[0].handle_frame(from_1, &push, at, &mut net.rng);
    };
    if push_news {
        push(&mut net, &pushed, start + 60);
    }
    outputs(&mut net.nodes[0]);
    let timeout = net.nodes[0].config().spread.graft_timeout_ms;
    let asked = |net: &mut Net, at: u64| {
        net.nodes[0].handle_timeout(at, &mut net.rng);
        outputs(&mut net.nodes[0])
            .into_iter()
            .find_map(|output| match output {
                Output::Send { to, message } if to == from_3 => match message {
                    Message::Want(_) | Message::Graft(_) => Some(message),
                    _ => None,
                },
                _ => None,
            })
    };
    let first = asked(&mut net, start + timeout);
    if !push_news {
        return first.expect("the late record was asked of its announcer");
    }
    assert!(
        first.is_none(),
        "pushes bring news: the record is awaited once more"
    );
    push(&mut net, &pushed_later, start + timeout + 50);
    asked(&mut net, start + 2 * timeout).expect("the late record was asked after the second wait")
}

#[test]
fn a_late_record_is_wanted_after_a_second_wait_while_pushes_bring_news_and_grafted_when_they_do_not(
) {
    let origin = |message: &Message| match message {
        Message::Want(origins) | Message::Graft(origins) => origins.clone(),
        _ => Vec::new(),
    };
    let asked = late_record_asked(true);
    assert!(matches!(asked, Message::Want(_)), "{asked:?}");
    assert_eq!(origin(&asked).len(), 1);
    let asked = late_record_asked(false);
    assert!(matches!(asked, Message::Graft(_)), "{asked:?}");
    assert_eq!(origin(&asked).len(), 1);
}

#[test]
fn converged_nodes_exchange_only_root_digests() {
    let mut net = Net::new(5, 0);
    for i in 0..5 {
        net.publish(i, &["s"]).unwrap();
    }
    net.rounds(10);
    assert!(net.nodes.iter().all(|node| node.directory().len() == 5));
    // Without spreading, a quiet node never stretches its rounds.
    assert!(net.nodes.iter().all(|node| !node.is_idle()));
    let before = net.delivered;
    net.rounds(1);
    // Two openings per node, each a roster head and an open, and nothing else:
    // equal heads and equal root digests are not answered.
    assert_eq!(net.delivered - before, 20);
}

#[test]
fn quiet_spreading_nodes_stretch_their_rounds_until_news_stirs_them() {
    let mut net = Net::new(6, 3);
    for i in 0..6 {
        net.publish(i, &["s"]).unwrap();
    }
    net.rounds(3);
    assert!(net.nodes.iter().all(|node| node.directory().len() == 6));
    assert!(net.nodes.iter().all(|node| !node.is_idle()));
    net.rounds(QUIET_ROUNDS as usize + 1);
    assert!(net.nodes.iter().all(|node| node.is_idle()));
    // Idle: over one stretch, each node opens one exchange (a roster head and
    // an open), where it would open `fanout` every round.
    let stretch = net.nodes[0].config().idle_stretch as usize;
    assert!(stretch > 1);
    let opened = |net: &Net| -> u64 {
        net.nodes
            .iter()
            .map(|node| node.counters().exchanges_opened)
            .sum()
    };
    let (before, delivered) = (opened(&net), net.delivered);
    net.rounds(stretch);
    assert_eq!(opened(&net) - before, 6);
    assert_eq!(net.delivered - delivered, 12);
    // News stirs every node that receives it: the publisher's next round is one
    // interval away (not at once: the news spreads along neighbour links
    // first), with full fanout, and the others follow as it reaches them.
    let record = net.publish(2, &["s", "t"]).unwrap();
    assert!(!net.nodes[2].is_idle());
    let interval = net.nodes[2].config().interval_ms;
    assert!(net.nodes[2].poll_timeout() <= net.now + interval);
    let before = net.nodes[2].counters().exchanges_opened;
    let (now, rng) = (net.now, &mut net.rng);
    net.nodes[2].handle_timeout(now + interval - 1, rng);
    assert_eq!(net.nodes[2].counters().exchanges_opened, before);
    net.rounds(1);
    let fanout = net.nodes[2].config().fanout as u64;
    assert_eq!(net.nodes[2].counters().exchanges_opened - before, fanout);
    net.rounds(1);
    for node in &net.nodes {
        let held = node
            .directory()
            .entry(&record.origin())
            .map(|e| e.record.seq());
        assert_eq!(held, Some(record.seq()));
        assert!(!node.is_idle());
    }
}

#[test]
fn withdraw_and_refresh_continue_the_chain() {
    let mut net = Net::new(3, 2);
    net.publish(0, &["a", "b"]).unwrap();
    let second = net.command(0, Command::Withdraw("a".into())).unwrap();
    assert_eq!(second.seq(), 2);
    assert_eq!(second.record().specialists.len(), 1);
    assert_eq!(
        net.command(0, Command::Withdraw("zzz".into())).unwrap_err(),
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
    let mut seen = Vec::new();
    for _ in 0..3 {
        net.nodes[0].handle_frame(rogue, &[1, 200, 3], NOW, &mut rng);
        seen.extend(outputs(&mut net.nodes[0]));
    }
    assert!(seen
        .iter()
        .any(|o| matches!(o, Output::Disconnect { peer, .. } if *peer == rogue)));
    assert!(seen
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
        for output in outputs(&mut net.nodes[0]) {
            if let Output::Send { to, .. } = output {
                assert_ne!(to, rogue);
            }
        }
    }
}

#[test]
fn a_flood_is_cut_off() {
    // Node 1 replays node 0's current record to it, 256 copies a frame: each copy
    // is a duplicate that changes nothing, so each is charged.
    let mut net = Net::new(2, 0);
    net.publish(0, &["s"]).unwrap();
    let flooder = net.nodes[1].node_id();
    let record = net.nodes[0].own_record().unwrap().wire_bytes().to_vec();
    let frame = Message::Records(vec![record; 256]).encode();
    let per_frame = cost::FRAME
        + cost::bytes(frame.len())
        + 256 * (cost::WASTED_RECORD + cost::bytes(frame.len() / 256));
    let budget = WorkLimit::DEFAULT.burst / per_frame;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut sent = 0;
    while !net.nodes[0].is_banned(&flooder, NOW) && sent < 10 * budget {
        net.nodes[0].handle_frame(flooder, &frame, NOW, &mut rng);
        sent += 1;
    }
    let counters = net.nodes[0].counters();
    assert!(net.nodes[0].is_banned(&flooder, NOW));
    // The burst, then twenty dropped frames (five points each) and the ban.
    assert_eq!(counters.frames_flooded, 20);
    assert!(
        (budget..=budget + 2).contains(&(sent - 20)),
        "{sent} frames for a budget of {budget}"
    );
    assert_eq!(
        counters.verdicts[&VerdictKind::Duplicate],
        (sent - 20) * 256
    );
}

#[test]
fn news_costs_nothing_and_requests_cost_what_they_make_us_send() {
    let mut net = Net::new(4, 0);
    for i in 0..4 {
        net.publish(i, &["s"]).unwrap();
    }
    net.rounds(6);
    let peer = net.nodes[1].node_id();
    let full = WorkLimit::DEFAULT.burst as i64;
    // Everything exchanged so far was news or small requests.
    assert!(net.nodes[0].work_left(&peer, net.now) > full * 9 / 10);
    // A request for everything is charged for each record it makes node 0 send.
    let _ = outputs(&mut net.nodes[0]);
    let before = net.nodes[0].work_left(&peer, net.now);
    let mut all: Vec<NodeId> = net.nodes.iter().map(State::node_id).collect();
    all.sort();
    let want = Message::Want(all).encode();
    net.nodes[0].handle_frame(peer, &want, net.now, &mut net.rng);
    let sent: usize = outputs(&mut net.nodes[0])
        .iter()
        .map(|output| match output {
            Output::Send {
                message: Message::Records(records),
                ..
            } => records
                .iter()
                .map(|r| cost::bytes(r.len()) + cost::RECORD_SENT)
                .sum::<u64>() as usize,
            _ => 0,
        })
        .sum();
    assert!(sent > 0);
    let charged = before - net.nodes[0].work_left(&peer, net.now);
    assert_eq!(
        charged as u64,
        cost::FRAME + cost::bytes(want.len()) + sent as u64
    );
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
    let audited = outputs(&mut net.nodes[0]).into_iter().any(|o| {
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

fn restarted(net: &Net, seed: u8) -> State {
    State::new(
        Arc::new(Identity::from_seed(&[seed; 32])),
        DirectoryConfig::new(net.federation.id),
        GossipConfig::default(),
        net.federation.ledger(),
        net.now,
    )
}

/// The id of the record node 0 took back.
fn recovered_id(audit: &[(usize, AuditEvent)]) -> crate::proto::RecordId {
    audit
        .iter()
        .find_map(|(i, event)| match event {
            AuditEvent::Recovered { record, .. } if *i == 0 => Some(record.id()),
            _ => None,
        })
        .expect("a record was taken back")
}

fn position(outputs: &[Output], wanted: impl Fn(&Output) -> bool) -> Option<usize> {
    outputs.iter().position(wanted)
}

#[test]
fn a_publication_is_persisted_before_anything_reveals_it() {
    let mut net = Net::new(4, 3);
    net.nodes[0].handle_command(Command::Publish(announcement(&["a"])), NOW, &mut net.rng);
    let outputs = outputs(&mut net.nodes[0]);
    let persist = position(&outputs, |o| matches!(o, Output::Persist { .. })).unwrap();
    let published = position(&outputs, |o| {
        matches!(o, Output::Audit(AuditEvent::Published(_)))
    })
    .unwrap();
    assert!(
        published < persist,
        "the publication's audit entry is durable with it"
    );
    for (at, output) in outputs.iter().enumerate() {
        if matches!(
            output,
            Output::Send { .. } | Output::CommandResult(_) | Output::Change(_)
        ) {
            assert!(at > persist, "{output:?} before the record is durable");
        }
    }
    assert!(outputs.iter().any(|o| matches!(o, Output::Send { .. })));
}

#[test]
fn a_node_that_lost_its_history_takes_its_chain_back_before_signing() {
    let mut net = Net::new(3, 2);
    net.publish(0, &["a"]).unwrap();
    net.publish(0, &["a", "b"]).unwrap();
    net.settle();
    // Node 0 restarts with nothing on disk.
    net.nodes[0] = restarted(&net, 1);
    net.nodes[0].mark_lost(net.now);
    net.nodes[0].set_announcement(announcement(&["c"]));
    let bootstrap = net.nodes[1].node_id();
    net.nodes[0].add_bootstrap([bootstrap]);
    assert!(matches!(
        net.nodes[0].chain_status(),
        ChainStatus::Recovering
    ));
    assert_eq!(
        net.publish(0, &["x"]).unwrap_err(),
        PublishError::Recovering,
        "it signs nothing before it heard its peers"
    );
    net.rounds(4);
    assert!(matches!(net.nodes[0].chain_status(), ChainStatus::Known));
    // It took back seq 2 (durably, and audited), then published its announcement above it.
    let recovered: Vec<&AuditEvent> = net
        .audit
        .iter()
        .filter(|(i, e)| *i == 0 && matches!(e, AuditEvent::Recovered { .. }))
        .map(|(_, e)| e)
        .collect();
    assert_eq!(recovered.len(), 1);
    let own = net.nodes[0].own_record().unwrap().clone();
    assert!(
        own.seq() >= NOW,
        "continues the chain (well above what it took back: at least the time in ms) \
         instead of forking it: {}",
        own.seq()
    );
    assert_eq!(own.record().prev, recovered_id(&net.audit));
    assert_eq!(own.record().specialists[0].name, "c");
    net.rounds(3);
    assert!(net
        .nodes
        .iter()
        .all(|node| !node.directory().is_quarantined(&own.origin())));
}

#[test]
fn a_record_of_its_key_signed_elsewhere_halts_the_node() {
    let mut net = Net::new(3, 2);
    net.publish(0, &["a"]).unwrap();
    net.settle();
    // A second process holding node 0's key publishes above node 0's record.
    let mut twin = restarted(&net, 1);
    twin.restore_own(net.nodes[0].own_record().unwrap().clone(), net.now);
    twin.handle_command(
        Command::Publish(announcement(&["evil"])),
        net.now,
        &mut net.rng,
    );
    let foreign = outputs(&mut twin)
        .into_iter()
        .find_map(|o| match o {
            Output::CommandResult(Ok(record)) => Some(record),
            _ => None,
        })
        .unwrap();
    let relay = net.nodes[1].node_id();
    net.nodes[0].handle_frame(
        relay,
        &Message::Records(vec![foreign.wire_bytes().to_vec()]).encode(),
        net.now,
        &mut net.rng,
    );
    let seen = outputs(&mut net.nodes[0]);
    assert!(seen.iter().any(|o| matches!(
        o,
        Output::ChainStatus(ChainStatus::Halted(Halt::ForeignSigner(r))) if r.id() == foreign.id()
    )));
    assert!(seen
        .iter()
        .any(|o| matches!(o, Output::Audit(AuditEvent::Halted { .. }))));
    assert!(!seen.iter().any(|o| matches!(o, Output::Persist { .. })));
    assert!(matches!(
        net.publish(0, &["b"]),
        Err(PublishError::Halted(_))
    ));
    // Nor does it refresh: nothing is due.
    let refresh = foreign.record().issued_at_ms + net.nodes[0].config().ttl_ms / 2;
    net.nodes[0].handle_timeout(refresh, &mut net.rng);
    assert!(!outputs(&mut net.nodes[0])
        .iter()
        .any(|o| matches!(o, Output::Persist { .. })));
}

#[test]
fn a_quarantined_node_halts_and_says_so_after_a_restart() {
    let mut net = Net::new(3, 2);
    let own = net.publish(0, &["a"]).unwrap();
    let mut fork = own.record().clone();
    fork.specialists = announcement(&["b"]).specialists;
    let fork = VerifiedRecord::sign(&Identity::from_seed(&[1; 32]), fork).unwrap();
    let relay = net.nodes[1].node_id();
    net.nodes[0].handle_frame(
        relay,
        &Message::Records(vec![fork.wire_bytes().to_vec()]).encode(),
        net.now,
        &mut net.rng,
    );
    assert!(matches!(
        net.nodes[0].chain_status(),
        ChainStatus::Halted(Halt::Quarantined(_))
    ));
    let proof = net.nodes[0]
        .directory()
        .proof(&own.origin())
        .unwrap()
        .clone();
    // Restarted with the proof in its store: it starts, and knows it cannot sign.
    let mut restarted = restarted(&net, 1);
    restarted.restore_own(own, net.now);
    restarted.restore_proof(&proof);
    assert!(matches!(
        restarted.chain_status(),
        ChainStatus::Halted(Halt::Quarantined(_))
    ));
    restarted.handle_command(
        Command::Publish(announcement(&["c"])),
        net.now,
        &mut net.rng,
    );
    assert!(outputs(&mut restarted)
        .iter()
        .any(|o| matches!(o, Output::CommandResult(Err(PublishError::Halted(_))))));
}

#[test]
fn a_clock_far_from_the_peers_is_reported() {
    let mut net = Net::new(2, 0);
    let peer = net.nodes[1].node_id();
    let two_hours = 2 * 3600 * 1000;
    let opening = gossip::opening(net.nodes[1].directory(), NOW - two_hours);
    net.nodes[0].handle_frame(peer, &opening.encode(), NOW, &mut net.rng);
    let seen = outputs(&mut net.nodes[0]);
    assert!(seen.iter().any(|o| matches!(
        o,
        Output::ClockOffset { offset_ms, warning: true } if *offset_ms == -(two_hours as i64)
    )));
    assert_eq!(net.nodes[0].clock_offset_ms(), Some(-(two_hours as i64)));
}

#[test]
fn commands_are_answered_in_the_outputs() {
    let mut net = Net::new(2, 1);
    assert!(net.publish(0, &["a"]).is_ok());
    let replaced = net
        .command(
            0,
            Command::Announce(announcement(&["a"]).specialists[0].clone()),
        )
        .unwrap();
    assert_eq!(replaced.record().specialists.len(), 1);
    assert_eq!(
        net.command(0, Command::Withdraw("missing".into())),
        Err(PublishError::UnknownSpecialist("missing".into()))
    );
    assert!(
        net.audit.is_empty(),
        "outputs other than the answer wait for settle"
    );
    net.settle();
    assert!(net
        .audit
        .iter()
        .any(|(_, e)| matches!(e, AuditEvent::Published(_))));
}

#[test]
fn only_reachable_members_are_picked() {
    let federation = Federation::new(50);
    let mut state = State::new(
        Arc::new(Identity::from_seed(&[1; 32])),
        DirectoryConfig::new(federation.id),
        GossipConfig::default(),
        federation.ledger(),
        NOW,
    );
    let bootstrap = federation.node(7);
    state.add_bootstrap([bootstrap]);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for round in 1..20 {
        state.handle_timeout(NOW + round * 1000, &mut rng);
        for output in outputs(&mut state) {
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
        for output in outputs(&mut state) {
            if let Output::Send { to, .. } = output {
                seen.insert(to);
            }
        }
    }
    assert_eq!(seen, [bootstrap, caller].into_iter().collect());
}

#[test]
fn a_publication_is_due_only_when_the_announcement_changed() {
    let mut net = Net::new(2, 0);
    // Announced out of order: the record is signed sorted, and nothing is due after.
    net.command(0, Command::Publish(announcement(&["b", "a"])))
        .unwrap();
    net.command(
        0,
        Command::Announce(announcement(&["0"]).specialists[0].clone()),
    )
    .unwrap();
    assert_eq!(net.nodes[0].own_record().unwrap().seq(), 2);
    let due = net.nodes[0].poll_timeout();
    assert!(due > net.now, "nothing is due at once");
    net.nodes[0].handle_timeout(net.now + 10, &mut net.rng);
    assert!(!outputs(&mut net.nodes[0])
        .iter()
        .any(|o| matches!(o, Output::Persist { .. })));
    // A restart with the same specialists in another order signs nothing either,
    // while another address is published at the next timeout.
    let own = net.nodes[0].own_record().unwrap().clone();
    let mut back = restarted(&net, 1);
    back.restore_own(own.clone(), net.now);
    let mut same = announcement_of(&own);
    same.specialists.reverse();
    back.set_announcement(same);
    assert!(back.poll_timeout() > net.now);
    let mut moved = announcement_of(&own);
    moved.addrs = vec!["127.0.0.1:9".into()];
    back.set_announcement(moved);
    assert!(back.poll_timeout() <= net.now);
    back.handle_timeout(net.now, &mut net.rng);
    assert_eq!(back.own_record().unwrap().seq(), 3);
}

#[test]
fn a_peer_that_ends_recovery_early_cannot_make_the_node_fork() {
    let mut net = Net::new(3, 2);
    // Node 0 published seq 1..=3; only node 1 saw seq 3.
    net.publish(0, &["a"]).unwrap();
    net.publish(0, &["b"]).unwrap();
    net.settle();
    let lost = net
        .command(0, Command::Publish(announcement(&["c"])))
        .unwrap();
    net.queue.clear();
    let seen_by_one = Message::Records(vec![lost.wire_bytes().to_vec()]).encode();
    let zero = net.nodes[0].node_id();
    net.nodes[1].handle_frame(zero, &seen_by_one, net.now, &mut net.rng);
    let _ = outputs(&mut net.nodes[1]);
    // Node 0 loses everything; node 2 (which lacks seq 3) says it holds nothing
    // of node 0, listing an empty root range.
    let after = lose_disk_and_recover(&mut net, None, &["d"]);
    assert!(after.seq() >= crate::proto::limits::RECOVERY_SEQ_GAP);
    // The record only node 1 had (seq 3) now meets the new one: no conflict.
    net.settle();
    net.rounds(4);
    for node in &net.nodes {
        assert!(!node.directory().is_quarantined(&zero));
    }
    assert!(matches!(net.nodes[0].chain_status(), ChainStatus::Known));
    assert_eq!(
        net.nodes[1].directory().entry(&zero).unwrap().record.id(),
        after.id()
    );
}

/// Node 0 of `net` loses its disk and restarts; `shown` (sent by node 1) is
/// what its peers return of its chain, and node 2 then shows it holds nothing
/// of it (an empty root range). After an interval it signs again: the record
/// it jumps to.
fn lose_disk_and_recover(
    net: &mut Net,
    shown: Option<&VerifiedRecord>,
    names: &[&str],
) -> VerifiedRecord {
    net.queue.clear();
    net.nodes[0] = restarted(net, 1);
    net.nodes[0].mark_lost(net.now);
    net.nodes[0].set_announcement(announcement(names));
    let two = net.nodes[2].node_id();
    if let Some(shown) = shown {
        let one = net.nodes[1].node_id();
        let records = Message::Records(vec![shown.wire_bytes().to_vec()]).encode();
        net.nodes[0].handle_frame(one, &records, net.now, &mut net.rng);
    }
    let nothing_newer = Message::Open {
        clock_ms: net.now,
        ranges: vec![Range {
            prefix: crate::proto::wire::Prefix::ROOT,
            summary: crate::proto::wire::Summary::Holdings(vec![]),
        }],
    };
    net.now += 1000;
    net.nodes[0].handle_frame(two, &nothing_newer.encode(), net.now, &mut net.rng);
    net.nodes[0].handle_timeout(net.now, &mut net.rng);
    assert!(matches!(net.nodes[0].chain_status(), ChainStatus::Known));
    let signed = net.nodes[0]
        .own_record()
        .expect("signed after recovery")
        .clone();
    assert!(
        shown.is_none_or(|shown| signed.id() != shown.id()),
        "it signed a record of its own"
    );
    signed
}

#[test]
fn a_node_that_loses_its_disk_again_and_again_never_signs_below_itself() {
    let mut net = Net::new(3, 2);
    let first = net.publish(0, &["a"]).unwrap();
    net.queue.clear();
    // First loss: peers return seq 1; the node jumps.
    let jumped = lose_disk_and_recover(&mut net, Some(&first), &["b"]);
    assert!(jumped.seq() > first.seq());
    // Second loss, five seconds on: peers return the jumped record.
    net.now += 5_000;
    let again = lose_disk_and_recover(&mut net, Some(&jumped), &["c"]);
    assert!(again.seq() > jumped.seq());
    // Third loss: the peers it hears only have seq 1. It must still land above
    // everything it signed, or it would sign a seq twice (a fork) or, once
    // restarted, meet its own newer record and halt.
    net.now += 5_000;
    let third = lose_disk_and_recover(&mut net, Some(&first), &["d"]);
    assert!(
        third.seq() > again.seq(),
        "{} <= {}",
        third.seq(),
        again.seq()
    );
    // Restarted from its disk (the third record), it meets the second: older,
    // so no foreign signer.
    net.nodes[0] = restarted(&net, 1);
    net.nodes[0].restore_own(third.clone(), net.now);
    let one = net.nodes[1].node_id();
    let late = Message::Records(vec![again.wire_bytes().to_vec()]).encode();
    net.nodes[0].handle_frame(one, &late, net.now, &mut net.rng);
    assert!(matches!(net.nodes[0].chain_status(), ChainStatus::Known));
    assert_eq!(net.nodes[0].own_record().unwrap().id(), third.id());
}

#[test]
fn repeated_requests_get_each_record_once_an_interval() {
    let mut net = Net::new(4, 0);
    for i in 0..4 {
        net.publish(i, &["s"]).unwrap();
    }
    net.rounds(6);
    assert_eq!(net.nodes[0].directory().len(), 4);
    let asker = net.nodes[1].node_id();
    let _ = outputs(&mut net.nodes[0]);
    let records_sent = |state: &mut State| -> usize {
        outputs(state)
            .iter()
            .map(|output| match output {
                Output::Send {
                    message: Message::Records(records),
                    ..
                } => records.len(),
                _ => 0,
            })
            .sum()
    };
    // "I hold nothing", over the whole id space.
    let nothing = Message::Sync(vec![Range {
        prefix: crate::proto::wire::Prefix::ROOT,
        summary: crate::proto::wire::Summary::Holdings(vec![]),
    }])
    .encode();
    net.nodes[0].handle_frame(asker, &nothing, net.now, &mut net.rng);
    assert_eq!(records_sent(&mut net.nodes[0]), 4, "each record once");
    // Asked again, at once and by a want naming them all: nothing more.
    net.nodes[0].handle_frame(asker, &nothing, net.now + 10, &mut net.rng);
    let mut all: Vec<NodeId> = net.nodes.iter().map(State::node_id).collect();
    all.sort();
    let want = Message::Want(all).encode();
    net.nodes[0].handle_frame(asker, &want, net.now + 20, &mut net.rng);
    assert_eq!(records_sent(&mut net.nodes[0]), 0);
    // A later interval may send them again (a lost reply is repaired).
    net.now += 2000;
    net.nodes[0].handle_timeout(net.now, &mut net.rng);
    let _ = outputs(&mut net.nodes[0]);
    net.nodes[0].handle_frame(asker, &want, net.now, &mut net.rng);
    assert_eq!(records_sent(&mut net.nodes[0]), 4);
}

// ---- governance: roster operations through the state machine ----

impl Net {
    /// `members` nodes on the roster plus `extra` nodes with keys off it (seeds
    /// after the members'), all at the same genesis.
    fn governed(members: usize, extra: usize) -> Self {
        let mut net = Net::new(members, 2);
        let ledger = net.federation.ledger();
        for seed in members + 1..=members + extra {
            let mut state = State::new(
                Arc::new(Identity::from_seed(&[seed as u8; 32])),
                DirectoryConfig::new(net.federation.id),
                GossipConfig::default(),
                ledger.clone(),
                net.now,
            );
            state.assume_membership_known();
            net.nodes.push(state);
        }
        net
    }

    /// Runs a roster command on node `i` and returns its answer.
    fn roster(
        &mut self,
        i: usize,
        command: RosterCommand,
    ) -> Result<
        Box<(
            crate::proto::roster::SignedOp,
            crate::proto::roster::Received,
        )>,
        crate::proto::roster::SignError,
    > {
        self.nodes[i].handle_roster_command(command, self.now, &mut self.rng);
        let mut answer = None;
        let mut voted = false;
        for output in outputs(&mut self.nodes[i]) {
            match output {
                Output::RosterResult(result) => answer = Some(result),
                other => {
                    voted |= matches!(other, Output::PersistVote { .. });
                    if matches!(
                        &other,
                        Output::Send {
                            message: Message::RosterOps(_),
                            ..
                        }
                    ) {
                        assert!(voted, "a vote is durable before the approval is sent");
                    }
                    self.queue.push_back((i, other));
                }
            }
        }
        answer.expect("every roster command is answered")
    }

    fn epochs(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.ledger().state().epoch())
            .collect()
    }
}

fn penalties(net: &Net) -> Vec<String> {
    net.audit
        .iter()
        .filter_map(|(i, e)| match e {
            AuditEvent::Penalised { peer, offence, .. }
            | AuditEvent::Banned { peer, offence, .. } => {
                Some(format!("node {i} penalised {peer}: {offence}"))
            }
            _ => None,
        })
        .collect()
}

use crate::proto::event::RosterOutcome;
use crate::proto::roster::{countersign, Action, Received};
use crate::proto::wire::Message;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn propose(
    net: &mut Net,
    i: usize,
    action: Action,
    new_key: Option<&Identity>,
) -> crate::proto::roster::RosterHash {
    let countersignature = new_key.map(|key| countersign(key, &net.federation.id, &action));
    let (op, received) = *net
        .roster(
            i,
            RosterCommand::Propose {
                action,
                countersignature,
                lifetime_ms: DAY_MS,
            },
        )
        .expect("proposed");
    assert!(
        matches!(received, Received::Proposal { approvals: 1, .. }),
        "{received:?}"
    );
    net.settle();
    // Pushed to a few peers at once; the rest pull it at their next exchange.
    net.rounds(3);
    op.id()
}

fn approve_by(net: &mut Net, id: crate::proto::roster::RosterHash, voters: &[usize]) {
    for &i in voters {
        net.roster(i, RosterCommand::Approve(id)).expect("approved");
        net.settle();
        net.rounds(2);
    }
}

#[test]
fn a_member_added_by_a_threshold_joins_live_and_its_records_are_accepted() {
    // Five members (threshold 4) and a sixth node off the roster.
    let mut net = Net::governed(5, 1);
    let newcomer = Identity::from_seed(&[6; 32]);
    // Before: the newcomer's record is refused everywhere.
    assert!(net.publish(5, &["late"]).is_err(), "not admitted yet");
    let id = propose(
        &mut net,
        0,
        Action::Add {
            member: newcomer.node_id(),
            label: Some("frank".into()),
        },
        Some(&newcomer),
    );
    // The proposal spread with the approvals: all members hold it.
    for node in &net.nodes[..5] {
        assert_eq!(
            node.ledger().proposal(&id).map(|op| op.approvals.len()),
            Some(1)
        );
    }
    // Two more approvals: still a proposal (3 of 4).
    approve_by(&mut net, id, &[1, 2]);
    assert_eq!(net.epochs()[..5], [0, 0, 0, 0, 0]);
    // Nothing is approved automatically.
    net.rounds(3);
    assert_eq!(net.epochs()[..5], [0, 0, 0, 0, 0]);
    // The members have gone quiet; the newcomer, refused by all, has heard
    // nothing for as long but keeps its full rate: it waits to be admitted.
    net.rounds(QUIET_ROUNDS as usize);
    assert!(net.nodes[..5].iter().all(|node| node.is_idle()));
    assert!(!net.nodes[5].is_idle());
    // The fourth applies it, and it reaches every node (the newcomer too).
    approve_by(&mut net, id, &[3]);
    net.rounds(3);
    assert_eq!(net.epochs(), vec![1; 6], "every node at epoch 1");
    for node in &net.nodes {
        assert!(node.directory().roster().contains(&newcomer.node_id()));
    }
    // The newcomer publishes (its pending announcement) and everyone accepts it.
    let record = net.publish(5, &["ocr"]).expect("admitted");
    net.settle();
    net.rounds(3);
    for node in &net.nodes {
        assert_eq!(
            node.directory()
                .entry(&newcomer.node_id())
                .map(|e| e.record.id()),
            Some(record.id())
        );
    }
    assert!(penalties(&net).is_empty(), "{:?}", penalties(&net));
    // Every member audited the application.
    for i in 0..6 {
        assert!(net.audit.iter().any(|(n, e)| *n == i
            && matches!(
                e,
                AuditEvent::Roster {
                    outcome: RosterOutcome::Applied,
                    ..
                }
            )));
    }
}

#[test]
fn a_removed_member_leaves_everywhere_and_late_relays_blame_nobody() {
    let mut net = Net::governed(5, 0);
    let removed = net.nodes[4].node_id();
    let record = net.publish(4, &["soon-gone"]).unwrap();
    net.settle();
    net.rounds(3);
    for node in &net.nodes {
        assert!(node.directory().entry(&removed).is_some());
    }
    let id = propose(&mut net, 0, Action::Remove { member: removed }, None);
    // Node 1 applies the removal alone (the others are still behind), then a
    // lagging member relays the removed member's record to it.
    approve_by(&mut net, id, &[2, 3]);
    net.nodes[1].handle_roster_command(RosterCommand::Approve(id), net.now, &mut net.rng);
    let applied: Vec<Output> = outputs(&mut net.nodes[1]);
    assert!(applied.iter().any(
        |o| matches!(o, Output::RosterChanged { removed: gone, .. } if gone == &vec![removed])
    ));
    assert!(applied.iter().any(
        |o| matches!(o, Output::Change(DirectoryChange::LeftRoster(r)) if r.id() == record.id())
    ));
    let lagging = net.nodes[2].node_id();
    let bytes = Message::Records(vec![record.wire_bytes().to_vec()]).encode();
    net.nodes[1].handle_frame(lagging, &bytes, net.now, &mut net.rng);
    let verdicts: Vec<Output> = outputs(&mut net.nodes[1]);
    assert!(
        verdicts.iter().any(|o| matches!(
            o,
            Output::Audit(AuditEvent::Verdict {
                verdict: Verdict::Ignored(crate::proto::Ignored::NotOnRoster { .. }),
                ..
            })
        )),
        "{verdicts:?}"
    );
    assert_eq!(
        net.nodes[1].peer_points(&lagging, net.now),
        0,
        "the relaying peer is not blamed"
    );
    // Everyone applies it; the removed member halts and its record is gone.
    for output in applied {
        net.queue.push_back((1, output));
    }
    net.settle();
    net.rounds(3);
    assert!(net.epochs().iter().all(|e| *e == 1), "{:?}", net.epochs());
    for node in &net.nodes[..4] {
        assert!(node.directory().entry(&removed).is_none());
        assert!(!node.directory().roster().contains(&removed));
    }
    assert!(matches!(
        net.nodes[4].chain_status(),
        ChainStatus::Halted(Halt::OffRoster { rotated_to: None })
    ));
    assert!(penalties(&net).is_empty(), "{:?}", penalties(&net));
}

#[test]
fn a_pardoned_member_publishes_again_above_the_proof() {
    let mut net = Net::governed(5, 0);
    let (first, fork) = quarantine_and_pardon(&mut net, |seq| seq);
    let (origin, sender) = (net.nodes[3].node_id(), net.nodes[0].node_id());
    let proof_seq = first.seq();
    net.rounds(3);
    assert!(net.epochs().iter().all(|e| *e == 1), "{:?}", net.epochs());
    for node in &net.nodes {
        assert!(!node.directory().is_quarantined(&origin));
    }
    // The pardoned node signs again, above the proof, and everyone takes it.
    net.rounds(2);
    let record = net.nodes[3]
        .own_record()
        .cloned()
        .expect("published after the pardon");
    assert!(record.seq() > proof_seq);
    net.rounds(3);
    for node in &net.nodes {
        assert_eq!(
            node.directory().entry(&origin).map(|e| e.record.id()),
            Some(record.id())
        );
    }
    // The old proof, replayed, quarantines nobody again.
    let proof = crate::proto::EquivocationProof::from_conflict(&first, &fork).unwrap();
    let bytes = Message::Proofs(vec![proof.encode()]).encode();
    net.nodes[1].handle_frame(sender, &bytes, net.now, &mut net.rng);
    net.settle();
    assert!(!net.nodes[1].directory().is_quarantined(&origin));
}

/// Quarantines node 3 (an equivocation at the seq of its first record) and
/// has every member approve a pardon above `above_seq`; returns the record
/// the node had signed before it was quarantined, and the fork.
fn quarantine_and_pardon(
    net: &mut Net,
    above_seq: impl Fn(u64) -> u64,
) -> (VerifiedRecord, VerifiedRecord) {
    let first = net.publish(3, &["a"]).unwrap();
    net.settle();
    let fork = VerifiedRecord::sign(
        &Identity::from_seed(&[4; 32]),
        Record {
            issued_at_ms: first.record().issued_at_ms + 1,
            ..first.record().clone()
        },
    )
    .unwrap();
    let bytes = Message::Records(vec![fork.wire_bytes().to_vec()]).encode();
    let sender = net.nodes[0].node_id();
    net.nodes[1].handle_frame(sender, &bytes, net.now, &mut net.rng);
    net.settle();
    net.rounds(4);
    let origin = net.nodes[3].node_id();
    assert!(net
        .nodes
        .iter()
        .all(|n| n.directory().is_quarantined(&origin)));
    assert!(net.publish(3, &["b"]).is_err(), "halted");
    let above_seq = above_seq(first.seq());
    let id = propose(net, 0, Action::Pardon { origin, above_seq }, None);
    approve_by(net, id, &[1, 2, 4]);
    (first, fork)
}

#[test]
fn a_pardoned_member_that_restarts_before_it_signs_again_still_jumps_above_the_pardon() {
    let mut net = Net::governed(5, 0);
    // The key's other signer had gone on to higher seqs: the operators pardon
    // above those.
    let (first, _) = quarantine_and_pardon(&mut net, |seq| seq + 5);
    let above_seq = first.seq() + 5;
    // Node 3 applies the pardon (its store keeps the operation) and is killed
    // before its jumped record is durable: it restarts from the operation
    // and the record it signed before the quarantine.
    net.queue.clear();
    let mut restarted = restarted(&net, 4);
    for op in net.nodes[0].ledger().chain() {
        restarted.restore_roster_op(op.op(), net.now).unwrap();
    }
    restarted.restore_own(first.clone(), net.now);
    restarted.set_announcement(announcement(&["b"]));
    assert!(matches!(restarted.chain_status(), ChainStatus::Known));
    net.nodes[3] = restarted;
    net.rounds(3);
    let origin = net.nodes[3].node_id();
    let record = net.nodes[3]
        .own_record()
        .cloned()
        .expect("signs again after the restart");
    assert!(
        record.seq() >= above_seq + crate::proto::limits::RECOVERY_SEQ_GAP,
        "seq {} is not above the pardon's floor {above_seq} with its gap",
        record.seq()
    );
    net.rounds(3);
    for node in &net.nodes {
        assert_eq!(
            node.directory().entry(&origin).map(|e| e.record.id()),
            Some(record.id())
        );
    }
    // Signed once: later records follow it one by one.
    let next = net.publish(3, &["c"]).unwrap();
    assert_eq!(next.seq(), record.seq() + 1);
}

#[test]
fn a_rotated_key_continues_the_chain_and_the_old_key_halts() {
    let mut net = Net::governed(4, 0);
    let old = net.nodes[3].node_id();
    let before = net.publish(3, &["svc"]).unwrap();
    net.settle();
    net.rounds(2);
    let new_key = Identity::from_seed(&[40; 32]);
    let id = propose(
        &mut net,
        3,
        Action::Rotate {
            from: old,
            to: new_key.node_id(),
        },
        Some(&new_key),
    );
    approve_by(&mut net, id, &[0, 1]);
    net.rounds(3);
    assert!(net.epochs().iter().all(|e| *e == 1), "{:?}", net.epochs());
    assert!(matches!(
        net.nodes[3].chain_status(),
        ChainStatus::Halted(Halt::OffRoster { rotated_to: Some(to) }) if to == new_key.node_id()
    ));
    // Every node keeps the old chain's floor for the new key.
    for node in &net.nodes[..3] {
        assert_eq!(
            node.directory().floor(&new_key.node_id()),
            Some(before.seq())
        );
        assert!(node.directory().entry(&old).is_none());
    }
    // A record of the new key at or below the floor is stale; above, accepted.
    let low = VerifiedRecord::sign(
        &new_key,
        Record::first(
            net.federation.id,
            new_key.node_id(),
            announcement(&["svc"]),
            net.now,
            DEFAULT_TTL_MS,
        ),
    )
    .unwrap();
    let bytes = Message::Records(vec![low.wire_bytes().to_vec()]).encode();
    let sender = net.nodes[1].node_id();
    net.nodes[0].handle_frame(sender, &bytes, net.now, &mut net.rng);
    assert!(
        net.nodes[0].directory().entry(&new_key.node_id()).is_none(),
        "stale below the floor"
    );
    let next = VerifiedRecord::sign(
        &new_key,
        Record {
            origin: new_key.node_id(),
            ..Record::next(&before, announcement(&["svc"]), net.now, DEFAULT_TTL_MS)
        },
    )
    .unwrap();
    let bytes = Message::Records(vec![next.wire_bytes().to_vec()]).encode();
    net.nodes[0].handle_frame(sender, &bytes, net.now, &mut net.rng);
    assert_eq!(
        net.nodes[0]
            .directory()
            .entry(&new_key.node_id())
            .map(|e| e.record.seq()),
        Some(before.seq() + 1)
    );
    let _ = outputs(&mut net.nodes[0]);
}

#[test]
fn a_node_behind_on_the_roster_catches_up_from_any_peer() {
    let mut net = Net::governed(4, 0);
    let (bob, carol) = (net.nodes[1].node_id(), net.nodes[2].node_id());
    let id = propose(
        &mut net,
        0,
        Action::Relabel {
            member: bob,
            label: Some("bob".into()),
        },
        None,
    );
    approve_by(&mut net, id, &[1, 2]);
    let id = propose(
        &mut net,
        1,
        Action::Relabel {
            member: carol,
            label: Some("carol".into()),
        },
        None,
    );
    approve_by(&mut net, id, &[0, 2]);
    // A node that restarted at the genesis catches up in a round or two.
    net.nodes[3] = restarted(&net, 4);
    net.nodes[3].assume_membership_known();
    net.rounds(3);
    assert_eq!(net.epochs(), vec![2; 4]);
    assert_eq!(
        net.nodes[3]
            .directory()
            .roster()
            .label(&net.nodes[2].node_id()),
        Some("carol")
    );
}

#[test]
fn bad_roster_input_is_audited_and_blamed_only_when_no_honest_relay_sends_it() {
    let mut net = Net::governed(4, 0);
    let state = net.nodes[0].ledger().state().clone();
    let sender = net.nodes[1].node_id();
    let victim = net.nodes[3].node_id();
    let keys: Vec<Identity> = (1..=4u8)
        .map(|seed| Identity::from_seed(&[seed; 32]))
        .collect();
    let body = state.propose(sender, Action::Remove { member: victim }, net.now, DAY_MS);
    let mut forged = crate::proto::roster::SignedOp {
        approvals: keys[..3]
            .iter()
            .map(|k| crate::proto::roster::approve(k, &body))
            .collect(),
        countersignature: None,
        body: body.clone(),
    };
    forged.approvals.sort_by_key(|a| a.signer);
    forged.approvals[2].signature = tidings_keys::Signature([9; 64]);
    let frame = Message::RosterOps(vec![forged.encode(), vec![0xff; 40]]).encode();
    net.nodes[0].handle_frame(sender, &frame, net.now, &mut net.rng);
    let out = outputs(&mut net.nodes[0]);
    let refused = out.iter().any(|o| {
        matches!(
            o,
            Output::Audit(AuditEvent::Roster {
                outcome: RosterOutcome::Refused(
                    crate::proto::roster::RosterError::BadApproval { .. }
                ),
                ..
            })
        )
    });
    let malformed = out
        .iter()
        .any(|o| matches!(o, Output::Audit(AuditEvent::MalformedFrame { .. })));
    assert!(refused && malformed, "{out:?}");
    assert!(
        net.nodes[0].peer_points(&sender, net.now) >= 80,
        "a forged approval and garbage are blamed"
    );
    assert_eq!(net.nodes[0].ledger().state().epoch(), 0, "nothing applied");
    // An operation for a later epoch (this node is behind) and an expired
    // proposal are not blamed: an honest relay can send them.
    let other = net.nodes[2].node_id();
    let mut ahead = forged.clone();
    ahead.body.epoch = 5;
    let mut late_body = state.propose(
        other,
        Action::Remove { member: victim },
        net.now - 2 * DAY_MS,
        DAY_MS,
    );
    late_body.issued_at_ms = net.now - 2 * DAY_MS;
    let late = crate::proto::roster::SignedOp {
        approvals: vec![crate::proto::roster::approve(&keys[2], &late_body)],
        countersignature: None,
        body: late_body,
    };
    let frame = Message::RosterOps(vec![ahead.encode(), late.encode()]).encode();
    net.nodes[0].handle_frame(other, &frame, net.now, &mut net.rng);
    let out = outputs(&mut net.nodes[0]);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Audit(AuditEvent::Roster {
                outcome: RosterOutcome::Refused(crate::proto::roster::RosterError::Expired { .. }),
                ..
            })
        )),
        "{out:?}"
    );
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send {
                message: Message::RosterWant { after: Some(0), .. },
                ..
            }
        )),
        "it asks to catch up"
    );
    assert_eq!(net.nodes[0].peer_points(&other, net.now), 0);
}
