//! `tidings roster`: the federation's governed roster.
//!
//! `create` works on files (it checks a roster file as the genesis and prints
//! its id); `countersign` signs with a new key offline; the rest talk to a
//! running node through its API (`show`, `pending`, `propose`, `approve`,
//! `export`). `tidings verify` checks an export offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tidings::keys::{FederationId, Identity, NodeId, Roster};
use tidings::proto::roster::{countersign, Action, Genesis, Threshold};

use tidings::api::answers::{HealthAnswer, OutcomeStatus, PendingAnswer, RosterOutcome};
use tidings::net::node::RosterView;
use tidings::proto::roster::RosterHash;

use super::client::{print_json, read, Api, ApiArgs};
use super::format::{counted, utc};

/// `tidings roster ...`
#[derive(Debug, Subcommand)]
pub(crate) enum RosterCommand {
    /// Check a roster file as the federation's genesis (optionally setting its
    /// threshold) and print the genesis id every node must share.
    Create(CreateArgs),
    /// The roster a running node holds: epoch, members, threshold, chain, votes.
    Show(ApiOnly),
    /// Open proposals on a running node, with their approvals.
    Pending(ApiOnly),
    /// Propose a roster operation (the node approves it as its proposer).
    Propose(ProposeArgs),
    /// Approve an open proposal (by id, or a unique prefix of at least 12 characters).
    Approve(ApproveArgs),
    /// Sign, with a new key, the action that admits it (add or rotate): the
    /// holder of the key runs this and hands the output to a proposing member.
    Countersign(CountersignArgs),
    /// Write the node's roster chain (genesis and every applied operation) for
    /// `tidings verify`.
    Export(ExportArgs),
}

/// Arguments of `roster show` and `roster pending`.
#[derive(Debug, Args)]
pub(crate) struct ApiOnly {
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `roster create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The roster file (members and labels; `tidings init` writes one).
    #[arg(long, value_name = "FILE", default_value = "roster.toml")]
    roster: PathBuf,
    /// The federation's name (as in every node's configuration).
    #[arg(long)]
    federation: String,
    /// Approvals an operation needs: a number (a majority of the members) or
    /// `two-thirds` (floor(2n/3)+1, recomputed as members change; the default).
    #[arg(long)]
    threshold: Option<Threshold>,
    /// Write the genesis roster here instead of updating the roster file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `roster propose`.
#[derive(Debug, Args)]
pub(crate) struct ProposeArgs {
    #[command(subcommand)]
    action: ProposeAction,
    /// How long the proposal stays open, in seconds (default one day, at most seven).
    #[arg(long, global = true, value_name = "SECONDS")]
    lifetime: Option<u64>,
    /// Print only the operation's id (for scripts).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// What to propose.
#[derive(Debug, Subcommand)]
pub(crate) enum ProposeAction {
    /// Admit a new key. Give its countersignature (`roster countersign`), or the
    /// key file itself when this operator holds it.
    Add {
        /// The new member's node id.
        member: Option<NodeId>,
        /// Its label.
        #[arg(long)]
        label: Option<String>,
        /// The new key's countersignature (hex, from `roster countersign`).
        #[arg(long)]
        countersignature: Option<String>,
        /// The new member's key file: countersign here.
        #[arg(long, value_name = "FILE", conflicts_with = "countersignature")]
        key_file: Option<PathBuf>,
        /// The request the new key's holder wrote (`roster countersign --out`).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["countersignature", "key_file"])]
        request: Option<PathBuf>,
    },
    /// Remove a member: its connections close and its records leave everywhere.
    Remove {
        /// The member's node id.
        member: NodeId,
    },
    /// Replace a member's key (default: this node's); its record chain
    /// continues under the new key.
    Rotate {
        /// The member's current key (default: the node's own).
        #[arg(long)]
        from: Option<NodeId>,
        /// The new key's node id (with --countersignature).
        #[arg(long)]
        to: Option<NodeId>,
        /// The new key's countersignature (hex, from `roster countersign`).
        #[arg(long)]
        countersignature: Option<String>,
        /// The new key file: countersign here.
        #[arg(long, value_name = "FILE", conflicts_with = "countersignature")]
        key_file: Option<PathBuf>,
        /// The request the new key's holder wrote (`roster countersign --rotate-from ID --out`).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["countersignature", "key_file"])]
        request: Option<PathBuf>,
    },
    /// Change the threshold: a number (a majority) or `two-thirds`.
    Threshold {
        /// The new threshold.
        threshold: Threshold,
    },
    /// Set (or, with no label, clear) a member's label.
    Relabel {
        /// The member's node id.
        member: NodeId,
        /// The new label.
        label: Option<String>,
    },
    /// Lift a member's quarantine; its chain restarts above the proof.
    Pardon {
        /// The quarantined member's node id.
        origin: NodeId,
        /// The seq its chain restarts above; forks at or below it are pardoned
        /// (default: the highest seq in the proof this node holds, plus a
        /// million, so forks signed after that proof are covered too).
        #[arg(long)]
        above_seq: Option<u64>,
    },
}

/// Arguments of `roster approve`.
#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The proposal's id (or a unique prefix).
    id: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `roster countersign`.
#[derive(Debug, Args)]
pub(crate) struct CountersignArgs {
    /// The new key's file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The federation's name.
    #[arg(long)]
    federation: String,
    /// For a rotation: the member key this one replaces (default: an add).
    #[arg(long)]
    rotate_from: Option<NodeId>,
    /// For an add: the label the proposal gives the new member (it is signed).
    #[arg(long)]
    label: Option<String>,
    /// Write the request (id, label, countersignature) to this file, for the
    /// proposing member's `roster propose add|rotate --request FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `roster export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Write here (default: standard output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

pub(crate) fn run(command: &RosterCommand) -> anyhow::Result<ExitCode> {
    match command {
        RosterCommand::Create(args) => create(args),
        RosterCommand::Show(args) => show(&args.api),
        RosterCommand::Pending(args) => pending(&args.api),
        RosterCommand::Propose(args) => propose(args),
        RosterCommand::Approve(args) => approve(args),
        RosterCommand::Countersign(args) => countersign_cmd(args),
        RosterCommand::Export(args) => export(args),
    }
}

fn create(args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let mut roster = Roster::load(&args.roster)
        .with_context(|| format!("cannot load {}", args.roster.display()))?;
    if let Some(threshold) = args.threshold {
        roster.set_threshold(match threshold {
            Threshold::TwoThirds => None,
            Threshold::Fixed(k) => Some(k),
        });
    }
    let federation = FederationId::from_name(&args.federation);
    let genesis = Genesis::from_roster(federation, &roster)
        .with_context(|| format!("{} cannot be the genesis", args.roster.display()))?;
    let out = args.out.clone().unwrap_or_else(|| args.roster.clone());
    if args.threshold.is_some() || args.out.is_some() {
        std::fs::write(&out, roster.to_toml())
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let id = genesis.id();
    let needed = genesis.threshold.of(genesis.members.len());
    if args.json {
        return print_json(&json!({
            "genesis": id,
            "file": out.display().to_string(),
            "federation": args.federation,
            "members": genesis.members.len(),
            "threshold": genesis.threshold.to_string(),
            "needed": needed,
        }));
    }
    println!("genesis:    {id}");
    println!("file:       {}", out.display());
    println!("federation: {}", args.federation);
    println!(
        "members:    {} (an operation needs {}; threshold {})",
        genesis.members.len(),
        counted(needed as u64, "approval", "approvals"),
        genesis.threshold
    );
    println!(
        "Every node of the federation uses this file as its roster; `tidings roster show` \
         on each must print this genesis id."
    );
    Ok(ExitCode::SUCCESS)
}

fn show(api_args: &ApiArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(api_args)?;
    let (view, raw): (RosterView, Value) = api.get_as("/v1/roster")?;
    if Api::json(api_args) {
        return print_json(&raw);
    }
    println!("genesis:   {}", view.genesis);
    println!("epoch:     {} (head {})", view.epoch, view.head);
    println!(
        "threshold: {} ({} of {} members)",
        view.threshold,
        view.needed,
        view.members.len()
    );
    if let Some(fork) = &view.fork {
        println!(
            "FORKED at epoch {}: two operations carry a threshold; roster changes have stopped",
            fork.epoch
        );
    }
    println!("\nmembers:");
    for member in &view.members {
        println!("  {}  {}", member.id, member.label.as_deref().unwrap_or(""));
    }
    if !view.chain.is_empty() {
        println!("\nchain:");
        for op in &view.chain {
            println!(
                "  epoch {:>3}  {}  {}  ({})",
                op.epoch,
                short_hash(&op.id),
                op.summary,
                counted(op.approvals.len() as u64, "approval", "approvals")
            );
        }
    }
    if !view.pending.is_empty() {
        println!(
            "\n{}: see `tidings roster pending`",
            counted(view.pending.len() as u64, "open proposal", "open proposals")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The first ten hex digits of an operation id.
fn short_hash(id: &RosterHash) -> String {
    id.to_string().chars().take(10).collect()
}

fn pending(api_args: &ApiArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(api_args)?;
    let (answer, raw): (PendingAnswer, Value) = api.get_as("/v1/roster/pending")?;
    if Api::json(api_args) {
        return print_json(&raw);
    }
    let pending = answer.pending;
    if pending.is_empty() {
        println!("no open proposals (epoch {})", answer.epoch);
        return Ok(ExitCode::SUCCESS);
    }
    let epochs: Vec<u64> = pending.iter().map(|p| p.op.epoch).collect();
    for proposal in &pending {
        let mut notes = Vec::new();
        if proposal.approved_here {
            notes.push("approved by this node");
        }
        if proposal.voted_otherwise {
            notes.push("this node signed another operation for this epoch");
        }
        let op = &proposal.op;
        println!("{}  epoch {}  {}", op.id, op.epoch, op.summary);
        println!(
            "    proposed by {}, {} of {} approvals, expires {}{}",
            op.proposer.short(),
            op.approvals.len(),
            proposal.needed,
            utc(op.expires_at_ms),
            if notes.is_empty() {
                String::new()
            } else {
                format!("; {}", notes.join("; "))
            }
        );
    }
    let mut sorted = epochs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() < epochs.len() {
        println!(
            "\nSeveral proposals compete for one epoch: each member can approve only one of \
             them, so agree on one before approving, or none may reach the threshold."
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn countersignature_of(
    key_file: &std::path::Path,
    federation: &FederationId,
    action: &Action,
) -> anyhow::Result<String> {
    let identity = Identity::load(key_file)
        .with_context(|| format!("cannot load the new key {}", key_file.display()))?;
    Ok(tidings::keys::hex::encode(
        &countersign(&identity, federation, action).0,
    ))
}

fn propose(args: &ProposeArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let body = match &args.action {
        ProposeAction::Add {
            member,
            label,
            countersignature,
            key_file,
            request,
        } => {
            if let Some(path) = request {
                let request = read_request(path)?;
                if !request["rotate_from"].is_null() {
                    bail!(
                        "{} asks for a rotation: use `roster propose rotate --request`",
                        path.display()
                    );
                }
                return send_proposal(
                    &api,
                    args,
                    json!({"action": "add", "member": request["member"], "label": request["label"], "countersignature": request["countersignature"]}),
                );
            }
            let (member, countersignature) = match (key_file, countersignature, member) {
                (Some(file), _, _) => {
                    let identity = Identity::load(file)
                        .with_context(|| format!("cannot load the new key {}", file.display()))?;
                    let id = identity.node_id();
                    let (view, _): (RosterView, Value) = api.get_as("/v1/roster")?;
                    let action = Action::Add {
                        member: id,
                        label: label.clone(),
                    };
                    (id, countersignature_of(file, &view.federation, &action)?)
                }
                (None, Some(signature), Some(member)) => (*member, signature.clone()),
                _ => bail!(
                    "an add needs the new member's id and --countersignature (from `tidings roster \
                     countersign` run by the key's holder), or --key-file"
                ),
            };
            json!({"action": "add", "member": member, "label": label, "countersignature": countersignature})
        }
        ProposeAction::Remove { member } => json!({"action": "remove", "member": member}),
        ProposeAction::Rotate {
            from,
            to,
            countersignature,
            key_file,
            request,
        } => {
            if let Some(path) = request {
                let request = read_request(path)?;
                if request["rotate_from"].is_null() {
                    bail!(
                        "{} asks for an add: use `roster propose add --request`",
                        path.display()
                    );
                }
                return send_proposal(
                    &api,
                    args,
                    json!({"action": "rotate", "from": request["rotate_from"], "to": request["member"], "countersignature": request["countersignature"]}),
                );
            }
            let from = match from {
                Some(from) => *from,
                None => api.get_as::<HealthAnswer>("/v1/health")?.0.node,
            };
            let (to, countersignature) = match (key_file, countersignature, to) {
                (Some(file), _, _) => {
                    let identity = Identity::load(file)
                        .with_context(|| format!("cannot load the new key {}", file.display()))?;
                    let to = identity.node_id();
                    let (view, _): (RosterView, Value) = api.get_as("/v1/roster")?;
                    let action = Action::Rotate { from, to };
                    (to, countersignature_of(file, &view.federation, &action)?)
                }
                (None, Some(signature), Some(to)) => (*to, signature.clone()),
                _ => bail!(
                    "a rotation needs --to and --countersignature, or --key-file of the new key"
                ),
            };
            json!({"action": "rotate", "from": from, "to": to, "countersignature": countersignature})
        }
        ProposeAction::Threshold { threshold } => {
            json!({"action": "threshold", "threshold": threshold.to_string()})
        }
        ProposeAction::Relabel { member, label } => {
            json!({"action": "relabel", "member": member, "label": label})
        }
        ProposeAction::Pardon { origin, above_seq } => {
            json!({"action": "pardon", "origin": origin, "above_seq": above_seq})
        }
    };
    send_proposal(&api, args, body)
}

/// Reads a request written by `roster countersign --out`.
fn read_request(path: &std::path::Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let request: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a request from `roster countersign --out`",
            path.display()
        )
    })?;
    if !request["member"].is_string() || !request["countersignature"].is_string() {
        bail!(
            "{} is not a request from `roster countersign --out`",
            path.display()
        );
    }
    Ok(request)
}

fn send_proposal(api: &Api, args: &ProposeArgs, mut body: Value) -> anyhow::Result<ExitCode> {
    if let (Some(lifetime), Some(map)) = (args.lifetime, body.as_object_mut()) {
        map.insert("lifetime_s".into(), json!(lifetime));
    }
    let raw = api.post("/v1/roster/proposals", &body)?;
    let answer: RosterOutcome = read("POST /v1/roster/proposals", &raw)?;
    if args.quiet {
        println!("{}", answer.operation.id);
        return Ok(ExitCode::SUCCESS);
    }
    if Api::json(&args.api) {
        return print_json(&raw);
    }
    report(&answer, "proposed");
    Ok(ExitCode::SUCCESS)
}

fn report(answer: &RosterOutcome, verb: &str) {
    let op = &answer.operation;
    println!("{verb} {} for epoch {}: {}", op.id, op.epoch, op.summary);
    match answer.status {
        OutcomeStatus::Applied => println!("applied: it had the threshold of approvals"),
        OutcomeStatus::Pending => println!(
            "{} of {} approvals; other members approve with `tidings roster approve {}`",
            answer.approvals, answer.needed, op.id
        ),
        OutcomeStatus::Refused => println!("status: refused"),
        OutcomeStatus::RosterForked => println!("status: roster-forked"),
        OutcomeStatus::NotApplied => println!("status: not-applied"),
    }
}

fn approve(args: &ApproveArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let path = format!("/v1/roster/proposals/{}/approve", args.id.trim());
    // A proposal made a moment ago may not have reached this node yet: a full
    // id is waited for a few seconds.
    let started = std::time::Instant::now();
    let answer = loop {
        match api.post(&path, &json!({})) {
            Err(error)
                if args.id.trim().len() == 64
                    && error.to_string().contains("no open proposal")
                    && started.elapsed() < std::time::Duration::from_secs(5) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            other => break other?,
        }
    };
    if Api::json(&args.api) {
        return print_json(&answer);
    }
    report(&read(&format!("POST {path}"), &answer)?, "approved");
    Ok(ExitCode::SUCCESS)
}

fn countersign_cmd(args: &CountersignArgs) -> anyhow::Result<ExitCode> {
    let identity =
        Identity::load(&args.key).with_context(|| format!("cannot load {}", args.key.display()))?;
    let federation = FederationId::from_name(&args.federation);
    let action = match args.rotate_from {
        Some(from) => Action::Rotate {
            from,
            to: identity.node_id(),
        },
        None => Action::Add {
            member: identity.node_id(),
            label: args.label.clone(),
        },
    };
    let signature = tidings::keys::hex::encode(&countersign(&identity, &federation, &action).0);
    let request = json!({
        "member": identity.node_id(),
        "label": args.label,
        "rotate_from": args.rotate_from,
        "action": action.to_string(),
        "countersignature": signature,
    });
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&request)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        if args.json {
            return print_json(&request);
        }
        let verb = if args.rotate_from.is_some() {
            "rotate"
        } else {
            "add"
        };
        println!("wrote {}: {action}", path.display());
        println!(
            "give it to a member, who proposes it with `tidings roster propose {verb} --request {}`",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        return print_json(&request);
    }
    println!("member:           {}", identity.node_id());
    println!("action:           {action}");
    println!("countersignature: {signature}");
    let propose = match args.rotate_from {
        Some(from) => format!(
            "tidings roster propose rotate --from {from} --to {} --countersignature {signature}",
            identity.node_id()
        ),
        None => format!(
            "tidings roster propose add {}{} --countersignature {signature}",
            identity.node_id(),
            args.label
                .as_ref()
                .map(|l| format!(" --label {l}"))
                .unwrap_or_default()
        ),
    };
    println!("A member proposes it with:\n  {propose}");
    Ok(ExitCode::SUCCESS)
}

fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let text = api.get_text("/v1/roster/export")?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let ops = text.lines().filter(|line| line.starts_with("op ")).count();
            eprintln!(
                "wrote {} ({}); check it with `tidings verify {}`",
                path.display(),
                counted(ops as u64, "operation", "operations"),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
