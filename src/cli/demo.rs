//! `tidings demo`: a small federation with Byzantine members, start to finish.
//!
//! The nodes run the real protocol state machine and write real audit logs (sled,
//! one per node, in a temporary or given data directory); messages pass between
//! them in process, in gossip rounds. The networked demo over QUIC replaces this
//! transport when the network layer lands; everything above the transport is the
//! same code.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tidings::audit::{AuditConfig, AuditLog, AuditWriter, SledStore};
use tidings::keys::{FederationId, Identity, NodeId, Roster};
use tidings::proto::directory::DirectoryConfig;
use tidings::proto::membership::member_list;
use tidings::proto::record::SignedRecord;
use tidings::proto::wire::Message;
use tidings::proto::{
    Announcement, GossipConfig, Output, Record, RecordId, Specialist, State, VerifiedRecord,
};

use super::format::now_ms;

/// Arguments of `tidings demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of member nodes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(4..=64))]
    nodes: u16,
    /// How many members are Byzantine (2 or 3: a forger, an equivocator, a flooder).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=3))]
    byzantine: u16,
    /// Keep the nodes' data directories (audit logs) here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print a JSON summary instead of the narration.
    #[arg(long)]
    json: bool,
}

struct Node {
    name: String,
    identity: Arc<Identity>,
    state: State,
    writer: AuditWriter<SledStore>,
}

struct Federation {
    nodes: Vec<Node>,
    id: FederationId,
    rng: StdRng,
    now: u64,
    round: u32,
    quiet: bool,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    nodes: usize,
    byzantine: Vec<String>,
    honest_converged_rounds: Option<u32>,
    false_entry: Option<RecordId>,
    false_entry_signer: Option<NodeId>,
    false_entry_first_peer: Option<NodeId>,
    forgery_rejected_at: Vec<String>,
    forgery_audited_with_peer: Option<String>,
    equivocator_quarantined_at: usize,
    honest_nodes: usize,
    flooder_banned_by: usize,
    update_during_flood_reached: usize,
    data_dir: String,
}

impl Federation {
    fn say(&self, text: &str) {
        if !self.quiet {
            println!("{text}");
        }
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.state.node_id() == *id)
    }

    fn record_outputs(
        &mut self,
        i: usize,
        queue: &mut VecDeque<(usize, usize, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let outputs: Vec<Output> = self.nodes[i].state.drain_outputs().collect();
        for output in outputs {
            match output {
                Output::Send { to, message } => {
                    if let Some(to) = self.index(&to) {
                        queue.push_back((i, to, message.encode()));
                    }
                }
                Output::Audit(event) => {
                    if let Some(entry) = tidings::recording::entry_for(&event, self.now) {
                        self.nodes[i].writer.append(entry)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn deliver(&mut self, mut queue: VecDeque<(usize, usize, Vec<u8>)>) -> anyhow::Result<()> {
        while let Some((from, to, bytes)) = queue.pop_front() {
            let sender = self.nodes[from].state.node_id();
            self.nodes[to]
                .state
                .handle_frame(sender, &bytes, self.now, &mut self.rng);
            self.record_outputs(to, &mut queue)?;
        }
        Ok(())
    }

    fn send(&mut self, from: usize, to: usize, message: &Message) -> anyhow::Result<()> {
        self.deliver(VecDeque::from([(from, to, message.encode())]))
    }

    fn rounds(&mut self, count: u32) -> anyhow::Result<()> {
        for _ in 0..count {
            self.round += 1;
            self.now += 1000;
            let mut queue = VecDeque::new();
            for i in 0..self.nodes.len() {
                self.nodes[i].state.handle_timeout(self.now, &mut self.rng);
                self.record_outputs(i, &mut queue)?;
            }
            self.deliver(queue)?;
        }
        Ok(())
    }

    fn publish(
        &mut self,
        i: usize,
        specialists: Vec<Specialist>,
    ) -> anyhow::Result<VerifiedRecord> {
        let announcement = Announcement {
            addrs: vec![format!("127.0.0.1:{}", 7700 + i)],
            specialists,
        };
        let record = self.nodes[i]
            .state
            .publish(announcement, self.now, &mut self.rng)?;
        let mut queue = VecDeque::new();
        self.record_outputs(i, &mut queue)?;
        self.deliver(queue)?;
        Ok(record)
    }
}

fn specialist(name: &str, capability: &str, endpoint: &str) -> Specialist {
    Specialist {
        name: name.into(),
        capabilities: vec![capability.into()],
        endpoint: endpoint.into(),
        meta: Default::default(),
    }
}

fn setup(args: &DemoArgs, root: &Path) -> anyhow::Result<Federation> {
    let total = usize::from(args.nodes);
    let byzantine = usize::from(args.byzantine);
    let names: Vec<String> = (0..total)
        .map(|i| match i.checked_sub(total - byzantine) {
            Some(0) => "mallory".to_string(),
            Some(1) => "eve".to_string(),
            Some(_) => "flooder".to_string(),
            None => format!("node-{}", i + 1),
        })
        .collect();
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let identities: Vec<Arc<Identity>> = (0..total)
        .map(|_| Arc::new(Identity::generate(&mut rand::rngs::OsRng)))
        .collect();
    let mut roster = Roster::new();
    for (identity, name) in identities.iter().zip(&names) {
        roster.insert(identity.node_id(), Some(name.clone()));
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::write(root.join("roster.toml"), roster.to_toml())?;
    let roster = Arc::new(roster);
    let members = member_list(&roster);
    let id = FederationId::from_name("demo");
    let now = now_ms();
    let mut nodes = Vec::new();
    for (identity, name) in identities.into_iter().zip(names) {
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        identity.save(&dir.join("node.key"), true)?;
        let store = SledStore::open(&dir.join("audit"))?;
        let log = AuditLog::open(store, identity.clone(), id, AuditConfig::default())?;
        let writer = AuditWriter::spawn(log, 4096)?;
        let gossip = GossipConfig {
            rumor_fanout: 2,
            ..GossipConfig::default()
        };
        let mut state = State::new(
            identity.clone(),
            DirectoryConfig::new(id),
            gossip,
            roster.clone(),
            members.clone(),
            now,
        );
        // The in-process transport reaches every member.
        state.assume_membership_known();
        nodes.push(Node {
            name,
            identity,
            state,
            writer,
        });
    }
    Ok(Federation {
        nodes,
        id,
        rng: StdRng::from_seed(seed),
        now,
        round: 0,
        quiet: args.json,
    })
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let temporary;
    let root = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = std::env::temp_dir().join(format!("tidings-demo-{}", std::process::id()));
            temporary
        }
    };
    let mut f = setup(args, &root)?;
    let (mut summary, false_entry) = script(&mut f, usize::from(args.byzantine))?;
    summary.data_dir = root.display().to_string();
    let mut logs = Vec::new();
    for node in f.nodes.drain(..) {
        logs.push((node.name, node.writer.shutdown()?));
    }
    if !args.json {
        println!("\n6. after the incident: who signed the false \"payments\" entry, and who relayed it to node-1?");
    }
    let (name, log) = &logs[0];
    if let Some(trace) = tidings::trace::trace(log, tidings::recording::record_key(&false_entry))? {
        summary.false_entry_first_peer = trace.first_receipt.as_ref().and_then(|step| step.peer);
        if !args.json {
            println!(
                "   $ tidings audit trace --data-dir {} {}",
                root.join(name).display(),
                false_entry
            );
            let names = super::audit::Names::find(None, Some(&root.join(name)))?;
            super::audit::print_trace(&trace, &names);
        }
    }
    drop(logs);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        closing(&summary, &root);
    }
    Ok(ExitCode::SUCCESS)
}

fn script(f: &mut Federation, byzantine: usize) -> anyhow::Result<(Summary, RecordId)> {
    let total = f.nodes.len();
    let honest: Vec<usize> = (0..total - byzantine).collect();
    let (mallory, eve) = (total - byzantine, total - byzantine + 1);
    let flooder = (byzantine == 3).then_some(total - 1);
    let mut summary = Summary {
        nodes: total,
        honest_nodes: honest.len(),
        byzantine: f.nodes[mallory..].iter().map(|n| n.name.clone()).collect(),
        ..Summary::default()
    };
    f.say(&format!(
        "tidings demo: {total} nodes in federation \"demo\"; {} of them Byzantine ({})",
        byzantine,
        summary.byzantine.join(", ")
    ));
    f.say("(in-process transport; real state machines, real signatures, real sled audit logs)\n");

    f.say("1. every node announces a specialist; gossip spreads the signed records");
    for i in 0..total {
        let name = format!("summarizer-{}", i + 1);
        let endpoint = format!("https://{}.demo.example/api", f.nodes[i].name);
        f.publish(i, vec![specialist(&name, "summarize", &endpoint)])?;
    }
    for _ in 0..20 {
        f.rounds(1)?;
        let converged = honest
            .iter()
            .all(|&i| f.nodes[i].state.directory().len() >= total);
        if converged {
            summary.honest_converged_rounds = Some(f.round);
            break;
        }
    }
    f.say(&format!(
        "   every node holds all {total} records after {} round(s)\n",
        summary
            .honest_converged_rounds
            .map(|r| r.to_string())
            .unwrap_or_else(|| "more than 20".into())
    ));

    f.say("2. mallory, an admitted member, signs a false entry: a \"payments\" specialist at a phishing URL");
    let false_entry = f.publish(
        mallory,
        vec![specialist(
            "payments",
            "pay",
            "https://payments.mallory.example/steal",
        )],
    )?;
    f.rounds(3)?;
    let holding = honest
        .iter()
        .filter(|&&i| f.nodes[i].state.directory().by_name("payments").len() == 1)
        .count();
    f.say(&format!(
        "   it is validly signed, so it spreads: {holding} of {} honest nodes list it",
        honest.len()
    ));
    summary.false_entry = Some(false_entry.id());
    summary.false_entry_signer = Some(false_entry.origin());

    f.say("\n3. mallory forges a record in node-2's name and pushes it to node-1");
    let victim = f.nodes[1].state.node_id();
    let mut forged = Record::first(
        f.id,
        victim,
        Announcement {
            addrs: vec![],
            specialists: vec![specialist(
                "summarizer-2",
                "summarize",
                "https://node-2.mallory.example",
            )],
        },
        f.now,
        600_000,
    );
    forged.seq = 99;
    forged.prev = RecordId([1; 32]);
    let bytes = forged.encode();
    let signature = f.nodes[mallory]
        .identity
        .sign(tidings::keys::Domain::Record, &f.id, &bytes);
    let forged_wire = SignedRecord::new(bytes, signature).encode();
    f.send(mallory, 0, &Message::Records(vec![forged_wire]))?;
    let kept = f.nodes[0]
        .state
        .directory()
        .entry(&victim)
        .map(|e| e.record.seq());
    f.say(&format!(
        "   node-1 rejects it (bad signature) and keeps node-2's real record (seq {})",
        kept.unwrap_or(0)
    ));
    f.say(&format!(
        "   node-1 now counts {} penalty points against mallory, the peer that sent it",
        f.nodes[0]
            .state
            .peer_points(&f.nodes[mallory].state.node_id(), f.now)
    ));
    summary.forgery_rejected_at.push(f.nodes[0].name.clone());
    summary.forgery_audited_with_peer = Some(f.nodes[mallory].name.clone());

    f.say("\n4. eve signs two histories: one record to node-1, a different one with the same seq to node-3");
    let eve_current = f.nodes[eve]
        .state
        .own_record()
        .cloned()
        .context("eve published")?;
    let mut fork_a = Record::next(
        &eve_current,
        Announcement {
            addrs: vec![],
            specialists: vec![specialist(
                "summarizer-x",
                "summarize",
                "https://a.eve.example",
            )],
        },
        f.now,
        600_000,
    );
    let mut fork_b = fork_a.clone();
    fork_b.specialists = vec![specialist(
        "summarizer-x",
        "summarize",
        "https://b.eve.example",
    )];
    fork_a.normalize();
    let eve_identity = f.nodes[eve].identity.clone();
    let a = VerifiedRecord::sign(&eve_identity, fork_a)?;
    let b = VerifiedRecord::sign(&eve_identity, fork_b)?;
    f.send(eve, 0, &Message::Records(vec![a.wire_bytes().to_vec()]))?;
    f.send(eve, 2, &Message::Records(vec![b.wire_bytes().to_vec()]))?;
    f.rounds(4)?;
    let eve_id = f.nodes[eve].state.node_id();
    summary.equivocator_quarantined_at = honest
        .iter()
        .filter(|&&i| f.nodes[i].state.directory().is_quarantined(&eve_id))
        .count();
    f.say(&format!(
        "   the two records meet, the proof spreads: eve is quarantined at {} of {} honest nodes",
        summary.equivocator_quarantined_at,
        honest.len()
    ));

    if let Some(flooder) = flooder {
        f.say("\n5. the flooder sends 2,000 frames to node-1 while node-2 publishes an update");
        let opening = Message::Want(vec![]);
        for _ in 0..2000 {
            f.send(flooder, 0, &opening)?;
        }
        let update = f.publish(
            1,
            vec![specialist(
                "summarizer-2",
                "summarize",
                "https://node-2.demo.example/v2",
            )],
        )?;
        f.rounds(4)?;
        let flooder_id = f.nodes[flooder].state.node_id();
        summary.flooder_banned_by = honest
            .iter()
            .filter(|&&i| f.nodes[i].state.is_banned(&flooder_id, f.now))
            .count();
        summary.update_during_flood_reached = honest
            .iter()
            .filter(|&&i| {
                f.nodes[i]
                    .state
                    .directory()
                    .entry(&update.origin())
                    .is_some_and(|e| e.record.id() == update.id())
            })
            .count();
        f.say(&format!(
            "   node-1 banned the flooder; node-2's update reached {} of {} honest nodes",
            summary.update_during_flood_reached,
            honest.len()
        ));
    }

    Ok((summary, false_entry.id()))
}

fn closing(summary: &Summary, root: &Path) {
    println!("\nsummary");
    println!(
        "  honest convergence: {} round(s)",
        summary
            .honest_converged_rounds
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "  forgery rejected and audited with the relaying peer ({})",
        summary
            .forgery_audited_with_peer
            .clone()
            .unwrap_or_default()
    );
    println!(
        "  equivocator quarantined at {} of {} honest nodes",
        summary.equivocator_quarantined_at, summary.honest_nodes
    );
    if summary.flooder_banned_by > 0 {
        println!(
            "  flooder banned; honest update still reached {} of {} honest nodes",
            summary.update_during_flood_reached, summary.honest_nodes
        );
    }
    println!("\ntry next:");
    println!(
        "  tidings audit log   --data-dir {}/node-1 --kind rejected",
        root.display()
    );
    println!(
        "  tidings audit verify --data-dir {}/node-1",
        root.display()
    );
    println!("  tidings sim bet15 --nodes 1000");
}
