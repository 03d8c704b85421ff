//! `tidings demo`: a real federation over QUIC on loopback, with Byzantine members.
//!
//! Every member is a node started with [`Node::spawn`]: its own key, QUIC endpoint
//! with mutual TLS, audit log and directory store in a data directory. The
//! Byzantine members run ordinary nodes too (they are admitted members); their
//! misbehaviour goes in through a second QUIC endpoint bound with their own key,
//! which passes TLS admission like any member: forged records, a second history, a
//! flood of replayed records.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::rngs::OsRng;
use serde::Serialize;
use tidings::audit::{AuditLog, SledStore};
use tidings::keys::{Domain, FederationId, Identity, NodeId, Roster};
use tidings::net::node::{Lookup, Node, NodeConfig, NodeHandle};
use tidings::net::transport::{self, Transport};
use tidings::proto::record::SignedRecord;
use tidings::proto::roster::{countersign, Action, Received, RosterHash};
use tidings::proto::wire::Message;
use tidings::proto::{Announcement, GossipConfig, Record, RecordId, Specialist, VerifiedRecord};

/// Arguments of `tidings demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of member nodes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(4..=32))]
    nodes: u16,
    /// How many members are Byzantine (2: a forger and an equivocator; 3: and a flooder).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=3))]
    byzantine: u16,
    /// Time budget: each step waits at most this long for its outcome.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Keep the nodes' data directories here, for the audit commands the demo
    /// suggests (default: a temporary directory, removed at the end). DIR must
    /// be new, empty, or a previous demo's (which is replaced).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the temporary directory after the demo (it is removed otherwise).
    #[arg(long, conflicts_with = "data_dir")]
    keep: bool,
    /// Print a JSON summary instead of the narration.
    #[arg(long)]
    json: bool,
}

const INTERVAL_MS: u64 = 500;

#[derive(Debug, Default, Serialize)]
struct Summary {
    nodes: usize,
    honest_nodes: usize,
    byzantine: Vec<String>,
    honest_converged_rounds: Option<f64>,
    false_entry: Option<RecordId>,
    false_entry_signer: Option<NodeId>,
    false_entry_first_peer: Option<NodeId>,
    false_entry_listed_at: usize,
    forgery_rejected_at: Vec<String>,
    forgery_audited_with_peer: Option<String>,
    equivocator_quarantined_at: usize,
    flooder_banned_by: usize,
    update_during_flood_reached: usize,
    governance: Option<GovernanceSummary>,
    seconds: f64,
    /// Where the nodes' data directories are, when they were kept.
    data_dir: Option<String>,
}

/// What the governance step showed.
#[derive(Debug, Default, Serialize)]
struct GovernanceSummary {
    threshold: usize,
    frank_added_epoch: u64,
    frank_listed_at: usize,
    eve_still_quarantined_at: usize,
    rotated_member: String,
    rotated_to: Option<NodeId>,
    rotated_chain_continued_at: usize,
}

struct Member {
    name: String,
    identity: Arc<Identity>,
    node: NodeHandle,
}

struct Demo {
    members: Vec<Member>,
    honest: usize,
    federation: FederationId,
    roster: Arc<RwLock<Roster>>,
    /// The genesis roster (with its threshold), as the nodes were started with.
    genesis: Roster,
    /// The fixed threshold: the honest members, when they are a majority.
    threshold: Option<u32>,
    budget: Duration,
    quiet: bool,
}

fn specialist(name: &str, capability: &str, endpoint: &str) -> Specialist {
    Specialist {
        name: name.into(),
        capabilities: vec![capability.into()],
        endpoint: endpoint.into(),
        meta: Default::default(),
    }
}

impl Demo {
    fn say(&self, text: &str) {
        if !self.quiet {
            println!("{text}");
        }
    }

    fn honest(&self) -> &[Member] {
        &self.members[..self.honest]
    }

    /// Polls `check` until it holds or the budget is spent; returns the time taken.
    async fn until<F, Fut>(&self, mut check: F) -> Option<Duration>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while started.elapsed() < self.budget {
            if check().await {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn count_honest(
        &self,
        check: impl Fn(&[tidings::net::node::FoundSpecialist]) -> bool,
    ) -> usize {
        let mut count = 0;
        for member in self.honest() {
            if let Ok(found) = member.node.lookup(Lookup::default()).await {
                if check(&found) {
                    count += 1;
                }
            }
        }
        count
    }

    /// Honest members whose view of member `id` passes `check`.
    async fn count_member(
        &self,
        id: NodeId,
        check: impl Fn(&tidings::net::node::Member) -> bool,
    ) -> usize {
        let mut count = 0;
        for member in self.honest() {
            if let Ok(members) = member.node.members().await {
                if members.iter().any(|m| m.id == id && check(m)) {
                    count += 1;
                }
            }
        }
        count
    }

    /// Honest members whose current record of `origin` passes `check`.
    async fn count_record(&self, origin: NodeId, check: impl Fn(&VerifiedRecord) -> bool) -> usize {
        let mut count = 0;
        for member in self.honest() {
            if let Ok(Some(record)) = member.node.record(origin).await {
                if check(&record) {
                    count += 1;
                }
            }
        }
        count
    }

    /// A connection to `target` as `as_member`, through a second endpoint.
    /// Sends `frame` from a second endpoint of `as_member` to member `target`
    /// until `delivered` says it arrived (a node keeps one connection per key, so
    /// the member's own node may replace the second endpoint's connection before
    /// the frame is read: then it is sent again). The time it took, if it did.
    async fn inject<F, Fut>(
        &self,
        as_member: usize,
        target: usize,
        frame: &[u8],
        mut delivered: F,
    ) -> anyhow::Result<Option<Duration>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while started.elapsed() < self.budget {
            let connection = self.rogue(as_member, target).await?;
            let _ = transport::send_frame(&connection, frame).await;
            let attempt = Instant::now();
            while attempt.elapsed() < Duration::from_secs(1) {
                if delivered().await {
                    return Ok(Some(started.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(None)
    }

    async fn rogue(&self, as_member: usize, target: usize) -> anyhow::Result<quinn::Connection> {
        let transport = Transport::bind(
            &self.members[as_member].identity,
            self.roster.clone(),
            "127.0.0.1:0".parse()?,
        )?;
        let target = &self.members[target].node;
        Ok(transport
            .dial(target.node_id(), target.local_addr())
            .await?)
    }
}

async fn setup(args: &DemoArgs, root: &Path) -> anyhow::Result<Demo> {
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
    let identities: Vec<Arc<Identity>> = (0..total)
        .map(|_| Arc::new(Identity::generate(&mut OsRng)))
        .collect();
    let mut roster = Roster::new();
    for (identity, name) in identities.iter().zip(&names) {
        roster.insert(identity.node_id(), Some(name.clone()));
    }
    // The honest members alone make the threshold (a majority of the members,
    // so two quorums always overlap); without one, governance is not shown.
    let honest = total - byzantine;
    let threshold = (2 * honest > total).then_some(honest as u32);
    roster.set_threshold(threshold);
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::write(root.join("roster.toml"), roster.to_toml())?;
    let mut members: Vec<Member> = Vec::new();
    for (index, (identity, name)) in identities.into_iter().zip(names).enumerate() {
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir)?;
        identity.save(&dir.join("node.key"), true)?;
        let bootstrap = members
            .first()
            .map(|first| vec![(first.node.node_id(), first.node.local_addr())])
            .unwrap_or_default();
        let config = NodeConfig {
            bootstrap,
            gossip: GossipConfig {
                interval_ms: INTERVAL_MS,
                ..GossipConfig::default()
            },
            specialists: vec![specialist(
                &format!("summarizer-{}", index + 1),
                "summarize",
                &format!("https://{name}.demo.example/api"),
            )],
            new_node: true,
            ..NodeConfig::new(dir, identity.clone(), "demo", roster.clone())
        };
        let node = Node::spawn(config)
            .await
            .with_context(|| format!("starting {name}"))?;
        members.push(Member {
            name,
            identity,
            node,
        });
    }
    Ok(Demo {
        members,
        honest: total - byzantine,
        federation: FederationId::from_name("demo"),
        genesis: roster.clone(),
        threshold,
        roster: Arc::new(RwLock::new(roster)),
        budget: Duration::from_secs(args.seconds.max(5)),
        quiet: args.json,
    })
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    // Ctrl-C stops the demo at once; a temporary directory goes with it.
    super::interrupt::exit_on_interrupt();
    let scratch = match &args.data_dir {
        Some(dir) => {
            prepare_data_dir(dir)?;
            None
        }
        None => Some(super::interrupt::ScratchDir::new("demo")?),
    };
    let root = match (&args.data_dir, &scratch) {
        (Some(dir), _) => dir.clone(),
        (None, Some(scratch)) => scratch.path().to_path_buf(),
        (None, None) => unreachable!("a scratch directory is made when no --data-dir is given"),
    };
    let runtime = super::runtime()?;
    let started = Instant::now();
    let (mut summary, false_entry, names) = runtime.block_on(async {
        let mut demo = setup(args, &root).await?;
        let mut result = script(&demo).await;
        if let Ok((summary, _)) = &mut result {
            if demo.threshold.is_some() {
                match governance(&mut demo, &root).await {
                    Ok(governed) => summary.governance = Some(governed),
                    Err(error) => {
                        for member in demo.members.drain(..) {
                            let _ = member.node.shutdown().await;
                        }
                        return Err(error);
                    }
                }
            }
        }
        let names: Vec<String> = demo.members.iter().map(|m| m.name.clone()).collect();
        for member in demo.members {
            member.node.shutdown().await?;
        }
        let (summary, false_entry) = result?;
        anyhow::Ok((summary, false_entry, names))
    })?;
    summary.data_dir = Some(root.display().to_string());
    summary.seconds = started.elapsed().as_secs_f64();
    let node_one = root.join(&names[0]);
    let log = AuditLog::open_read_only(SledStore::open(&node_one.join("audit"))?)?;
    if !args.json {
        println!("\n7. after the incident: who signed the false \"payments\" entry, and who relayed it to node-1?");
    }
    if let Some(trace) = tidings::trace::trace(&log, tidings::recording::record_key(&false_entry))?
    {
        summary.false_entry_first_peer = trace.first_receipt.as_ref().and_then(|step| step.peer);
        if !args.json {
            println!(
                "   $ tidings audit trace --data-dir {} {}",
                node_one.display(),
                false_entry
            );
            if args.data_dir.is_none() && !args.keep {
                println!("   (this directory is removed when the demo ends: --keep or --data-dir keeps it)");
            }
            let names = super::audit::Names::find(None, Some(&node_one))?;
            super::audit::print_trace(&trace, &names);
        }
    }
    drop(log);
    // Finished: a temporary directory goes unless asked to stay.
    let kept = match scratch {
        Some(scratch) if args.keep => {
            scratch.keep();
            true
        }
        Some(scratch) => {
            drop(scratch);
            summary.data_dir = None;
            false
        }
        None => true,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        closing(&summary, kept.then_some(root.as_path()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Marks a directory as a demo's, so a later `--data-dir` may replace it.
const DEMO_MARKER: &str = ".tidings-demo";

/// Makes `dir` ready for the demo: created if absent; if it holds anything, it
/// must be a previous demo's (its marker file), whose contents are removed.
/// Anything else is refused, so a mistyped path never loses a node's data.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let marker = dir.join(DEMO_MARKER);
    let entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read {}", dir.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", dir.display())),
    };
    if !entries.is_empty() && !marker.exists() {
        anyhow::bail!(
            "{} is not empty and is not a previous demo's directory (no {DEMO_MARKER} in it); \
             give a new or empty directory",
            dir.display()
        );
    }
    for entry in entries {
        let removed = if entry.is_dir() {
            std::fs::remove_dir_all(&entry)
        } else {
            std::fs::remove_file(&entry)
        };
        removed.with_context(|| format!("cannot clear {}", entry.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        &marker,
        "made by `tidings demo`: a later `tidings demo --data-dir` may replace this directory\n",
    )
    .with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(())
}

async fn script(demo: &Demo) -> anyhow::Result<(Summary, RecordId)> {
    let total = demo.members.len();
    let byzantine = total - demo.honest;
    let (mallory, eve) = (demo.honest, demo.honest + 1);
    let flooder = (byzantine == 3).then_some(total - 1);
    let mut summary = Summary {
        nodes: total,
        honest_nodes: demo.honest,
        byzantine: demo.members[demo.honest..]
            .iter()
            .map(|m| m.name.clone())
            .collect(),
        ..Summary::default()
    };
    demo.say(&format!(
        "tidings demo: {total} nodes over QUIC with mutual TLS on 127.0.0.1, federation \"demo\", gossip every {INTERVAL_MS} ms;\n{byzantine} of them Byzantine ({})\n",
        summary.byzantine.join(", ")
    ));

    demo.say("1. every node announces a specialist; gossip spreads the signed records");
    let converged = demo
        .until(|| async { demo.count_honest(|found| found.len() >= total).await == demo.honest })
        .await;
    summary.honest_converged_rounds =
        converged.map(|d| (d.as_millis() as f64 / INTERVAL_MS as f64 * 10.0).round() / 10.0);
    match converged {
        Some(time) => demo.say(&format!("   every honest node holds all {total} records after {:.2} s ({:.1} gossip intervals)\n", time.as_secs_f64(), time.as_millis() as f64 / INTERVAL_MS as f64)),
        None => demo.say("   not converged within the time budget\n"),
    }

    demo.say("2. mallory, an admitted member, signs a false entry: a \"payments\" specialist at a phishing URL");
    let false_entry = demo.members[mallory]
        .node
        .announce(specialist(
            "payments",
            "pay",
            "https://payments.mallory.example/steal",
        ))
        .await?;
    let lists = |found: &[tidings::net::node::FoundSpecialist]| {
        found.iter().any(|f| f.specialist.name == "payments")
    };
    demo.until(|| async { demo.count_honest(lists).await == demo.honest })
        .await;
    summary.false_entry_listed_at = demo.count_honest(lists).await;
    demo.say(&format!(
        "   it is validly signed, so it spreads: {} of {} honest nodes list it",
        summary.false_entry_listed_at, demo.honest
    ));
    summary.false_entry = Some(false_entry.id());
    summary.false_entry_signer = Some(false_entry.origin());

    demo.say("\n3. mallory forges a record in node-2's name and sends it to node-1 over its own connection");
    let victim = demo.members[1].node.node_id();
    let mut forged = Record::first(
        demo.federation,
        victim,
        Announcement {
            addrs: vec![],
            specialists: vec![specialist(
                "summarizer-2",
                "summarize",
                "https://node-2.mallory.example",
            )],
        },
        now_ms(),
        600_000,
    );
    forged.seq = 99;
    forged.prev = RecordId([1; 32]);
    let bytes = forged.encode();
    let signature = demo.members[mallory]
        .identity
        .sign(Domain::Record, &demo.federation, &bytes);
    let node_one = &demo.members[0].node;
    let frame = Message::Records(vec![SignedRecord::new(bytes, signature).encode()]).encode();
    let rejected = demo
        .inject(mallory, 0, &frame, || async {
            node_one
                .stats()
                .await
                .map(|s| {
                    s.verdicts
                        .iter()
                        .any(|(k, n)| k == "bad_signature" && *n > 0)
                })
                .unwrap_or(false)
        })
        .await?;
    let kept = node_one.record(victim).await?.map(|r| r.seq()).unwrap_or(0);
    if rejected.is_some() {
        summary
            .forgery_rejected_at
            .push(demo.members[0].name.clone());
        summary.forgery_audited_with_peer = Some(demo.members[mallory].name.clone());
    }
    demo.say(&format!("   node-1 rejects it (bad signature), audits it with the peer that sent it (mallory), and keeps node-2's real record (seq {kept})"));

    demo.say("\n4. eve signs two histories: one next record to node-1, a different one with the same seq to node-3");
    let eve_id = demo.members[eve].node.node_id();
    let current = demo.members[eve]
        .node
        .record(eve_id)
        .await?
        .context("eve's record")?;
    let fork_a = Record::next(
        &current,
        Announcement {
            addrs: vec![],
            specialists: vec![specialist(
                "summarizer-x",
                "summarize",
                "https://a.eve.example",
            )],
        },
        now_ms(),
        600_000,
    );
    let mut fork_b = fork_a.clone();
    fork_b.specialists = vec![specialist(
        "summarizer-x",
        "summarize",
        "https://b.eve.example",
    )];
    let a = VerifiedRecord::sign(&demo.members[eve].identity, fork_a)?;
    let b = VerifiedRecord::sign(&demo.members[eve].identity, fork_b)?;
    let (node_one, node_three) = (&demo.members[0].node, &demo.members[2].node);
    let holds = |node: &'_ NodeHandle, id: RecordId| {
        let node = node.client();
        async move {
            node.record(eve_id)
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.id() == id)
                || node
                    .members()
                    .await
                    .is_ok_and(|members| members.iter().any(|m| m.id == eve_id && m.quarantined))
        }
    };
    let forked = Instant::now();
    let to_one = Message::Records(vec![a.wire_bytes().to_vec()]).encode();
    demo.inject(eve, 0, &to_one, || holds(node_one, a.id()))
        .await?;
    let to_three = Message::Records(vec![b.wire_bytes().to_vec()]).encode();
    demo.inject(eve, 2, &to_three, || holds(node_three, b.id()))
        .await?;
    let quarantined = || demo.count_member(eve_id, |m| m.quarantined);
    let caught = demo
        .until(|| async { quarantined().await == demo.honest })
        .await
        .map(|_| forked.elapsed());
    summary.equivocator_quarantined_at = quarantined().await;
    demo.say(&format!(
        "   the two records meet, the proof spreads: eve is quarantined at {} of {} honest nodes{}",
        summary.equivocator_quarantined_at,
        demo.honest,
        caught
            .map(|t| format!(" after {:.2} s", t.as_secs_f64()))
            .unwrap_or_default()
    ));

    if let Some(flooder) = flooder {
        demo.say(
            "\n5. the flooder replays node-2's record to node-1, 256 copies a frame, while node-2 publishes an update",
        );
        let flood_to = demo.members[0].node.client();
        let flooder_id = demo.members[flooder].node.node_id();
        let identity = demo.members[flooder].identity.clone();
        let roster = demo.roster.clone();
        let replayed = flood_to
            .record(demo.members[1].node.node_id())
            .await?
            .context("node-1 holds node-2's record")?;
        let flooding = tokio::spawn(async move {
            let transport = Transport::bind(&identity, roster, "127.0.0.1:0".parse()?)?;
            // Each copy changes nothing: node-1 charges each to the flooder's work
            // budget, drops its frames once the budget is spent, and bans it.
            let frame = Message::Records(vec![replayed.wire_bytes().to_vec(); 256]).encode();
            let mut sent = 0;
            // A connection replaced by the flooder's own node is dialled again,
            // until the frames are out or node-1 bans the flooder.
            for _ in 0..20 {
                let Ok(flood) = transport
                    .dial(flood_to.node_id(), flood_to.local_addr())
                    .await
                else {
                    break; // refused: banned
                };
                while sent < 2000 {
                    if transport::send_frame(&flood, &frame).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                let banned = flood_to
                    .members()
                    .await
                    .is_ok_and(|m| m.iter().any(|m| m.id == flooder_id && m.banned));
                if sent >= 2000 || banned {
                    break;
                }
            }
            anyhow::Ok(())
        });
        let update = demo.members[1]
            .node
            .announce(specialist(
                "summarizer-2",
                "summarize",
                "https://node-2.demo.example/v2",
            ))
            .await?;
        flooding.await??;
        let reached = || demo.count_record(update.origin(), |r| r.id() == update.id());
        demo.until(|| async { reached().await == demo.honest })
            .await;
        summary.update_during_flood_reached = reached().await;
        let flooder_id = demo.members[flooder].node.node_id();
        summary.flooder_banned_by = demo.count_member(flooder_id, |m| m.banned).await;
        demo.say(&format!(
            "   node-1 charges the flood to the flooder's work budget and bans it (banned at {}); node-2's update reached {} of {} honest nodes",
            super::format::counted(summary.flooder_banned_by as u64, "node", "nodes"), summary.update_during_flood_reached, demo.honest
        ));
    }
    Ok((summary, false_entry.id()))
}

fn now_ms() -> u64 {
    super::format::now_ms()
}

const PROPOSAL_LIFETIME_MS: u64 = 60 * 60 * 1000;

impl Demo {
    /// Whether every honest member holds roster epoch `epoch`.
    async fn at_epoch(&self, epoch: u64) -> bool {
        for member in self.honest() {
            match member.node.roster().await {
                Ok(view) if view.epoch >= epoch => {}
                _ => return false,
            }
        }
        true
    }

    /// Has honest members other than `proposer` approve `id` until it applies.
    async fn approve_all(&self, proposer: usize, id: RosterHash) -> anyhow::Result<()> {
        for (index, member) in self.honest().iter().enumerate() {
            if index == proposer {
                continue;
            }
            let holds = || async {
                member.node.roster().await.is_ok_and(|view| {
                    view.pending.iter().any(|p| p.op.id == id)
                        || view.chain.iter().any(|op| op.id == id)
                })
            };
            self.until(holds).await;
            let view = member.node.roster().await?;
            if view.chain.iter().any(|op| op.id == id) {
                return Ok(());
            }
            let received = match member.node.approve(id).await {
                Ok((_, received)) => received,
                Err(error) => {
                    // The approvals gossiped so far may have applied it here
                    // between the look and the approval: then it is done.
                    let view = member.node.roster().await?;
                    if view.chain.iter().any(|op| op.id == id) {
                        return Ok(());
                    }
                    return Err(error.into());
                }
            };
            if matches!(received, Received::Applied(_)) {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn spawn(
        &self,
        name: &str,
        identity: Arc<Identity>,
        root: &Path,
        specialists: Vec<Specialist>,
        new_node: bool,
    ) -> anyhow::Result<NodeHandle> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        identity.save(&dir.join("node.key"), true)?;
        let first = &self.members[0].node;
        let config = NodeConfig {
            bootstrap: vec![(first.node_id(), first.local_addr())],
            gossip: GossipConfig {
                interval_ms: INTERVAL_MS,
                ..GossipConfig::default()
            },
            specialists,
            new_node,
            ..NodeConfig::new(dir, identity, "demo", self.genesis.clone())
        };
        Node::spawn(config)
            .await
            .with_context(|| format!("starting {name}"))
    }
}

/// Step 6: a member joins by a threshold of approvals, live; eve stays
/// quarantined; node-2 rotates its key and its chain continues.
async fn governance(demo: &mut Demo, root: &Path) -> anyhow::Result<GovernanceSummary> {
    let threshold = demo.threshold.unwrap_or_default() as usize;
    let mut summary = GovernanceSummary {
        threshold,
        ..GovernanceSummary::default()
    };
    demo.say(&format!(
        "\n6. governance: the roster is a chain of operations, each approved by {threshold} of the {} members",
        demo.members.len()
    ));
    let frank = Arc::new(Identity::generate(&mut OsRng));
    let frank_node = demo
        .spawn(
            "frank",
            frank.clone(),
            root,
            vec![specialist(
                "translator-frank",
                "translate",
                "https://frank.demo.example/api",
            )],
            true,
        )
        .await?;
    let action = Action::Add {
        member: frank.node_id(),
        label: Some("frank".into()),
    };
    let countersignature = countersign(&frank, &demo.federation, &action);
    let (op, _) = demo.members[0]
        .node
        .propose(action, Some(countersignature), PROPOSAL_LIFETIME_MS)
        .await?;
    demo.say(&format!(
        "   frank starts outside the roster; node-1 proposes adding it (frank's key countersigns): operation {}",
        op.id().short()
    ));
    demo.approve_all(0, op.id()).await?;
    let epoch = op.body.epoch;
    let took = demo.until(|| demo.at_epoch(epoch)).await;
    summary.frank_added_epoch = epoch;
    let listed = || async {
        demo.count_honest(|found| {
            found
                .iter()
                .any(|f| f.specialist.name == "translator-frank")
        })
        .await
    };
    demo.until(|| async { listed().await == demo.honest }).await;
    summary.frank_listed_at = listed().await;
    demo.say(&format!(
        "   node-2..node-{} approve; every honest node is at epoch {epoch}{}; frank joined without a restart and its translator is listed at {} of {} honest nodes",
        demo.honest,
        took.map(|t| format!(" {:.1} s after the proposal", t.as_secs_f64())).unwrap_or_default(),
        summary.frank_listed_at,
        demo.honest
    ));
    let eve_id = demo.members[demo.honest + 1].node.node_id();
    summary.eve_still_quarantined_at = demo.count_member(eve_id, |m| m.quarantined).await;
    demo.say(&format!(
        "   eve stays out: quarantined at {} of {} honest nodes; only a pardon approved by {threshold} members would lift it",
        summary.eve_still_quarantined_at, demo.honest
    ));
    // frank is an honest member from here on.
    demo.members.insert(
        demo.honest,
        Member {
            name: "frank".into(),
            identity: frank,
            node: frank_node,
        },
    );
    demo.honest += 1;
    // node-2 rotates its key.
    let old = demo.members[1].node.node_id();
    let last = demo.members[1]
        .node
        .record(old)
        .await?
        .map_or(0, |r| r.seq());
    let new_key = Arc::new(Identity::generate(&mut OsRng));
    let action = Action::Rotate {
        from: old,
        to: new_key.node_id(),
    };
    let countersignature = countersign(&new_key, &demo.federation, &action);
    let (op, _) = demo.members[1]
        .node
        .propose(action, Some(countersignature), PROPOSAL_LIFETIME_MS)
        .await?;
    demo.approve_all(1, op.id()).await?;
    let epoch = op.body.epoch;
    demo.until(|| demo.at_epoch(epoch)).await;
    let member = demo.members.remove(1);
    member.node.shutdown().await?;
    let node = demo
        .spawn("node-2", new_key.clone(), root, Vec::new(), false)
        .await?;
    demo.members.insert(
        1,
        Member {
            name: "node-2".into(),
            identity: new_key.clone(),
            node,
        },
    );
    let new_id = new_key.node_id();
    let continued = || demo.count_record(new_id, |r| r.seq() == last + 1);
    demo.until(|| async { continued().await == demo.honest })
        .await;
    summary.rotated_member = "node-2".into();
    summary.rotated_to = Some(new_id);
    summary.rotated_chain_continued_at = continued().await;
    demo.say(&format!(
        "   node-2 rotates its key to {}: approved, applied at epoch {epoch}; restarted with the new key, its chain continues at seq {} at {} of {} honest nodes",
        new_id.short(),
        last + 1,
        summary.rotated_chain_continued_at,
        demo.honest
    ));
    Ok(summary)
}

fn closing(summary: &Summary, root: Option<&Path>) {
    let show = |value: Option<f64>| {
        value
            .map(|v| format!("{v} interval{}", if v == 1.0 { "" } else { "s" }))
            .unwrap_or_else(|| "not reached".into())
    };
    println!("\nsummary ({:.1} s)", summary.seconds);
    println!(
        "  honest convergence: {}",
        show(summary.honest_converged_rounds)
    );
    println!(
        "  forgery rejected and audited with the relaying peer ({})",
        summary
            .forgery_audited_with_peer
            .clone()
            .unwrap_or_else(|| "not observed".into())
    );
    println!(
        "  equivocator quarantined at {} of {} honest nodes",
        summary.equivocator_quarantined_at, summary.honest_nodes
    );
    if let Some(governed) = &summary.governance {
        println!(
            "  governance: frank added at epoch {} (listed at {} honest nodes), eve still quarantined at {}, node-2's chain continued under its new key at {}",
            governed.frank_added_epoch,
            governed.frank_listed_at,
            governed.eve_still_quarantined_at,
            governed.rotated_chain_continued_at
        );
    }
    if summary.flooder_banned_by > 0 || summary.update_during_flood_reached > 0 {
        println!(
            "  flooder banned; honest update still reached {} of {} honest nodes",
            summary.update_during_flood_reached, summary.honest_nodes
        );
    }
    println!("\ntry next:");
    match root {
        Some(root) => {
            println!(
                "  tidings audit log    --data-dir {}/node-1 --kind rejected",
                root.display()
            );
            println!(
                "  tidings audit verify --data-dir {}/node-1",
                root.display()
            );
        }
        None => println!(
            "  tidings demo --data-dir fed   (keeps the nodes' keys and audit logs, for `tidings audit`)"
        ),
    }
    println!("  tidings sim governance --nodes 200");
    println!("  tidings sim bet15 --nodes 1000");
}
