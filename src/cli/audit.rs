//! `tidings audit log|trace|verify|export|merge`: read a node's audit log.
//!
//! These open the log in `DATA_DIR/audit` for reading. sled allows one process at a
//! time, so while a node runs on that data directory they report that the log is in
//! use; query the running node through its API instead, or stop it first.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tidings::api::ids::{self, IdError};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use tidings::audit::export::{self as audit_export, ReadExport};
use tidings::audit::{AuditLog, Entry, EntryKind, Query, RecordKey, SledStore};
use tidings::keys::NodeId;

use super::format::{counted, utc};

/// `tidings audit` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// List entries, newest last, filtered by record, origin, peer, kind or time.
    Log(LogArgs),
    /// The provenance of one record: signer, evidence, first receipt, relays, ...
    Trace(TraceArgs),
    /// Recompute the hash chain and check every signed checkpoint (of the log in a
    /// data directory, or of an export file). Exits 1 naming the first bad index.
    Verify(VerifyArgs),
    /// Write the whole log as JSON lines (checkpoints and evidence included).
    Export(ExportArgs),
    /// Merge several nodes' exports to show how one record spread.
    Merge(MergeArgs),
}

/// The data directory holding `audit/`.
#[derive(Debug, Args)]
pub(crate) struct DataDir {
    /// The node's data directory.
    #[arg(long, short = 'd', value_name = "DIR", env = "TIDINGS_DATA_DIR")]
    data_dir: PathBuf,
    /// A roster file whose labels name the nodes (default: roster.toml in or
    /// beside the data directory, if there is one).
    #[arg(long, value_name = "FILE")]
    roster: Option<PathBuf>,
}

/// Names node ids by their roster labels, where a roster is known, and knows
/// which keys were rotated to which (one member under two keys).
#[derive(Default)]
pub(crate) struct Names {
    roster: Option<tidings::keys::Roster>,
    /// Keys rotated away, each to the key that replaced it.
    rotated: BTreeMap<NodeId, NodeId>,
    /// The federation of an exported roster chain the names came from.
    federation: Option<tidings::keys::FederationId>,
}

impl Names {
    /// Loads `explicit` (a roster file, an exported roster chain, or a data
    /// directory), or the first roster.toml found in or beside `data_dir`; a data
    /// directory's stored roster chain adds the labels and rotations since its
    /// genesis.
    pub(crate) fn find(explicit: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(path) = explicit {
            if path.is_dir() {
                let names = Self::find(None, Some(path))?;
                if names.roster.is_none() {
                    bail!(
                        "no roster.toml in or beside {}: name a roster file or an exported roster chain",
                        path.display()
                    );
                }
                return Ok(names);
            }
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut names = if text.starts_with(tidings::proto::roster::EXPORT_HEADER) {
                Self::from_chain(&text)
                    .with_context(|| format!("{} is not a valid roster chain", path.display()))?
            } else {
                Self {
                    roster: Some(tidings::keys::Roster::load(path)?),
                    ..Self::default()
                }
            };
            if let Some(dir) = data_dir {
                names.apply(&stored_ops(dir));
            }
            return Ok(names);
        }
        let candidates = data_dir
            .into_iter()
            .flat_map(|dir| [dir.join("roster.toml"), dir.join("..").join("roster.toml")]);
        for path in candidates {
            if path.is_file() {
                if let Ok(roster) = tidings::keys::Roster::load(&path) {
                    let mut names = Self {
                        roster: Some(roster),
                        ..Self::default()
                    };
                    if let Some(dir) = data_dir {
                        names.apply(&stored_ops(dir));
                    }
                    return Ok(names);
                }
            }
        }
        Ok(Self::default())
    }

    /// The names an exported roster chain gives: its genesis's labels and its
    /// operations', each operation checked (its threshold of valid approvals)
    /// from the genesis the chain starts with.
    fn from_chain(text: &str) -> anyhow::Result<Self> {
        let (genesis, ops) = tidings::proto::roster::parse_export(text)?;
        tidings::proto::roster::verify_chain(&genesis, &ops)?;
        let mut names = Self {
            roster: Some((*genesis.members).clone()),
            rotated: BTreeMap::new(),
            federation: Some(genesis.federation),
        };
        names.apply(&ops);
        Ok(names)
    }

    /// Adds the labels of members added, relabelled or rotated by `ops`, and
    /// the rotations. A rotated-away key keeps its label.
    fn apply(&mut self, ops: &[tidings::proto::roster::SignedOp]) {
        use tidings::proto::roster::Action;
        let Some(roster) = self.roster.as_mut() else {
            return;
        };
        for op in ops {
            match &op.body.action {
                Action::Add { member, label } => {
                    roster.insert(*member, label.clone());
                }
                Action::Relabel { member, label } => {
                    roster.relabel(member, label.clone());
                }
                Action::Rotate { from, to } => {
                    let label = roster.label(from).map(str::to_owned);
                    roster.insert(*to, label);
                    self.rotated.insert(*from, *to);
                }
                _ => {}
            }
        }
    }

    /// Every key of the member that `id` is one key of, in rotation order
    /// (`id` alone when it was never rotated).
    pub(crate) fn keys_of(&self, id: &NodeId) -> Vec<NodeId> {
        // Back to the first key, then forward along the rotations (each walk
        // at most as long as the rotations, whatever they hold).
        let mut first = *id;
        for _ in 0..self.rotated.len() {
            match self.rotated.iter().find(|(_, to)| **to == first) {
                Some((from, _)) if from != id => first = *from,
                _ => break,
            }
        }
        let mut keys = vec![first];
        while let Some(next) = self.rotated.get(keys.last().expect("one key")) {
            if keys.contains(next) {
                break;
            }
            keys.push(*next);
        }
        keys
    }

    /// `label (short id)`, or the short id alone.
    pub(crate) fn short(&self, id: &NodeId) -> String {
        match self.roster.as_ref().and_then(|roster| roster.label(id)) {
            Some(label) => format!("{label} ({})", id.short()),
            None => id.short(),
        }
    }

    /// `label (full id)`, or the full id alone.
    pub(crate) fn full(&self, id: &NodeId) -> String {
        match self.roster.as_ref().and_then(|roster| roster.label(id)) {
            Some(label) => format!("{label} ({id})"),
            None => id.to_string(),
        }
    }
}

impl Names {
    /// The node `text` names: a full id, a roster label, or a unique prefix
    /// (at least 4 characters) of a member's id, as the API takes them.
    fn node(&self, text: &str) -> anyhow::Result<NodeId> {
        let members = self.roster.iter().flat_map(|roster| roster.iter());
        let members = members.map(|(id, label)| (*id, label));
        match ids::node_among(text, members) {
            Err(IdError::Unknown) if self.roster.is_none() => bail!(
                "{text:?} is not a full node id, and no roster was found to resolve labels and prefixes (use --roster)"
            ),
            Err(IdError::Unknown) => {
                bail!("no member of the roster is named or begins with {text:?}")
            }
            resolved => resolved.map_err(|error| id_error("node", text, error)),
        }
    }
}

/// The record `text` names: a full id or a unique prefix (at least 4 hex
/// characters) of a record whose evidence `log` holds.
fn record_named<S: tidings::audit::Store>(
    log: &AuditLog<S>,
    text: &str,
) -> anyhow::Result<RecordKey> {
    let prefix = match ids::record_text(text) {
        Ok(Ok(key)) => return Ok(key),
        Ok(Err(prefix)) => prefix,
        Err(error) => return Err(id_error("record", text, error)),
    };
    let matching = log.evidence_with_prefix(&prefix, 6)?;
    match ids::one(&matching) {
        Err(IdError::Unknown) => {
            bail!("no record whose evidence this log holds begins with {text:?}")
        }
        resolved => resolved.map_err(|error| id_error("record", text, error)),
    }
}

/// What to tell the user when `text` names no single `kind` id.
fn id_error(kind: &str, text: &str, error: IdError) -> anyhow::Error {
    match error {
        IdError::Invalid => anyhow::anyhow!(
            "{text:?} is not a {kind} id{}, or a prefix of at least {} characters",
            if kind == "node" {
                ", a roster label"
            } else {
                ""
            },
            ids::MIN_PREFIX
        ),
        IdError::Unknown => anyhow::anyhow!("no {kind} is named or begins with {text:?}"),
        IdError::Ambiguous(count, named) => anyhow::anyhow!(
            "{text:?} begins {count} {kind} ids ({}{}): give more characters",
            named.join(", "),
            if count > named.len() { ", …" } else { "" }
        ),
    }
}

/// A time as `--since` and `--until` take it: Unix milliseconds or RFC 3339.
fn time_arg(text: &str) -> Result<u64, String> {
    tidings::utc::parse_time_ms(text).ok_or_else(|| {
        format!("{text:?} is neither Unix milliseconds nor an RFC 3339 time (2026-11-22T07:41:00Z)")
    })
}

/// The roster operations stored in `data_dir`'s store (the chain since the
/// genesis; the roster file lists only the genesis), or none. A store in use
/// by a running node is left alone.
fn stored_ops(data_dir: &Path) -> Vec<tidings::proto::roster::SignedOp> {
    use tidings::proto::roster::SignedOp;
    let path = data_dir.join("store");
    if !path.is_dir() {
        return Vec::new();
    }
    let Ok(store) = tidings::net::store::DirectoryStore::open(&path) else {
        return Vec::new();
    };
    let Ok(loaded) = store.load() else {
        return Vec::new();
    };
    loaded
        .roster_ops
        .iter()
        .filter_map(|(_, bytes)| SignedOp::decode(bytes).ok())
        .collect()
}

/// Arguments of `tidings audit log`.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Only entries about this record: its id or a unique prefix (4+ characters).
    #[arg(long, value_name = "ID")]
    record: Option<String>,
    /// Only entries about this origin: its id, roster label or a unique prefix.
    #[arg(long, value_name = "NODE")]
    origin: Option<String>,
    /// Only entries involving this peer: its id, roster label or a unique prefix.
    #[arg(long, value_name = "NODE")]
    peer: Option<String>,
    /// Only entries of this kind (accepted, rejected, relayed, ...).
    #[arg(long)]
    kind: Option<EntryKind>,
    /// Only entries at or after this time: Unix milliseconds or RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    since: Option<u64>,
    /// Only entries before this time: Unix milliseconds or RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    until: Option<u64>,
    /// At most this many entries (the newest, or the first that match a filter).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tidings audit trace`.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    #[command(flatten)]
    dir: DataDir,
    /// The record id, or a unique prefix of it (4+ characters).
    record: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tidings audit verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The node's data directory (or use --export).
    #[arg(
        long,
        short = 'd',
        value_name = "DIR",
        env = "TIDINGS_DATA_DIR",
        required_unless_present = "export"
    )]
    data_dir: Option<PathBuf>,
    /// Verify an export file instead.
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    export: Option<PathBuf>,
    /// Require the log to be this node's.
    #[arg(long)]
    node: Option<NodeId>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tidings audit export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Write here instead of standard output. The logs of keys this node
    /// rotated away from (DIR/old-key-*) are written beside it, one file each
    /// (FILE's name with `.old-key-…` before its extension).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// Arguments of `tidings audit merge`.
#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The record to follow: its id, or a unique prefix (4+ characters) of a
    /// record some export holds evidence of.
    #[arg(long, value_name = "ID")]
    record: String,
    /// Export files, one per node.
    #[arg(required = true)]
    exports: Vec<PathBuf>,
    /// What names the nodes: a roster file, an exported roster chain
    /// (`tidings roster export`; checked from its genesis) or a node's data
    /// directory (its roster.toml and stored chain). With a chain, a member whose
    /// key was rotated is one member: it received the record if either key did.
    #[arg(long, value_name = "PATH")]
    roster: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(command: &AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Log(args) => log(args),
        AuditCommand::Trace(args) => trace(args),
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Export(args) => export(args),
        AuditCommand::Merge(args) => merge(args),
    }
}

/// Opens the log of a data directory for reading.
pub(crate) fn open(data_dir: &Path) -> anyhow::Result<AuditLog<SledStore>> {
    let path = data_dir.join("audit");
    if !path.exists() {
        bail!(
            "no audit log at {} (is {} a tidings data directory?)",
            path.display(),
            data_dir.display()
        );
    }
    // The node's own lock: a node cannot start on this directory (and move a part
    // it cannot open aside) while the command reads it. Held until the process
    // ends.
    match tidings::net::lock::DataDirLock::acquire(data_dir) {
        Ok(lock) => std::mem::forget(lock),
        Err(tidings::net::lock::LockError::Held { holder, .. }) => bail!(
            "{} is in use by a running node ({holder}): stop it first, or query the running \
             node: GET /v1/audit, GET /v1/provenance/{{record_id}}, `tidings show`",
            data_dir.display()
        ),
        Err(error) => return Err(error.into()),
    }
    let store = SledStore::open(&path)?;
    AuditLog::open_read_only(store)
        .with_context(|| format!("cannot read the audit log at {}", path.display()))
}

fn print_entries(entries: &[Entry], names: &Names) {
    let short = |id: &Option<NodeId>| id.map(|id| names.short(&id)).unwrap_or_else(|| "-".into());
    let width = |pick: &dyn Fn(&Entry) -> Option<NodeId>| {
        entries
            .iter()
            .map(|entry| short(&pick(entry)).len())
            .max()
            .unwrap_or(0)
            .max(6)
    };
    let (peers, origins) = (width(&|e| e.peer), width(&|e| e.origin));
    println!(
        "{:>7}  {:<24}  {:<18}  {:<peers$}  {:<origins$}  {:<12}  reason",
        "index", "time", "kind", "peer", "origin", "record"
    );
    for entry in entries {
        let record = entry
            .record
            .map(|r| r.to_string()[..12].to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:>7}  {:<24}  {:<18}  {:<peers$}  {:<origins$}  {:<12}  {}",
            entry.index,
            utc_ms(entry.at_ms),
            entry.kind.as_str(),
            short(&entry.peer),
            short(&entry.origin),
            record,
            entry.reason
        );
    }
}

fn utc_ms(ms: u64) -> String {
    let text = utc(ms);
    format!("{}.{:03}Z", text.trim_end_matches('Z'), ms % 1000)
}

fn log(args: &LogArgs) -> anyhow::Result<ExitCode> {
    let log = open(&args.dir.data_dir)?;
    let names = Names::find(args.dir.roster.as_deref(), Some(&args.dir.data_dir))?;
    let record = args
        .record
        .as_deref()
        .map(|text| record_named(&log, text))
        .transpose()?;
    let origin = args
        .origin
        .as_deref()
        .map(|text| names.node(text))
        .transpose()?;
    let peer = args
        .peer
        .as_deref()
        .map(|text| names.node(text))
        .transpose()?;
    let filtered = args.record.is_some()
        || args.origin.is_some()
        || args.peer.is_some()
        || args.kind.is_some()
        || args.since.is_some()
        || args.until.is_some();
    let entries = if filtered {
        log.query(&Query {
            record,
            origin,
            peer,
            kind: args.kind,
            since_ms: args.since,
            until_ms: args.until,
            after_index: 0,
            limit: args.limit,
        })?
    } else {
        log.latest(args.limit)?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print_entries(&entries, &names);
        if entries.len() == args.limit {
            eprintln!(
                "({} entries shown, the --limit; more may match: raise --limit, or narrow with --since)",
                entries.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let log = open(&args.dir.data_dir)?;
    let record = record_named(&log, &args.record)?;
    let Some(trace) = tidings::trace::trace(&log, record)? else {
        bail!("record {record} does not appear in this node's audit log");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        let names = Names::find(args.dir.roster.as_deref(), Some(&args.dir.data_dir))?;
        print_trace(&trace, &names);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a trace for people.
pub(crate) fn print_trace(trace: &tidings::trace::Trace, names: &Names) {
    let short = |id: &Option<NodeId>| id.map(|id| names.short(&id)).unwrap_or_else(|| "-".into());
    println!("record      {}", trace.record);
    match &trace.evidence {
        Some(evidence) => {
            println!(
                "signed by   {} (signature verified with verify_strict)",
                names.full(&evidence.signer)
            );
            println!("chain       seq {}, prev {}", evidence.seq, evidence.prev);
            println!(
                "issued      {}   expires {}",
                utc(evidence.issued_at_ms),
                utc(evidence.expires_at_ms)
            );
            for specialist in &evidence.specialists {
                println!(
                    "announces   {} [{}] {}",
                    specialist.name,
                    specialist.capabilities.join(", "),
                    specialist.endpoint
                );
            }
        }
        None if trace.evidence_invalid => {
            println!("evidence    STORED BYTES DO NOT VERIFY (the log was tampered with)")
        }
        None => println!(
            "origin      {} (no signed evidence kept for this record)",
            short(&trace.origin)
        ),
    }
    match &trace.first_receipt {
        Some(step) if step.kind == EntryKind::Published => {
            println!(
                "first seen  {} published by this node (entry {})",
                utc_ms(step.at_ms),
                step.index
            );
        }
        Some(step) => println!(
            "first seen  {} from peer {} (entry {})",
            utc_ms(step.at_ms),
            step.peer
                .map(|p| names.full(&p))
                .unwrap_or_else(|| "-".into()),
            step.index
        ),
        None => println!("first seen  never accepted by this node"),
    }
    println!("history:");
    for step in &trace.history {
        println!(
            "  {:>6}  {}  {:<14} peer {}  {}",
            step.index,
            utc_ms(step.at_ms),
            step.kind.as_str(),
            short(&step.peer),
            step.reason
        );
    }
    let relayed: Vec<String> = trace.relays.iter().map(|step| short(&step.peer)).collect();
    println!(
        "relayed to  {}",
        if relayed.is_empty() {
            "nobody".into()
        } else {
            relayed.join(", ")
        }
    );
    for later in &trace.later_versions {
        println!(
            "superseded  by seq {} ({}) at {}",
            later.seq,
            &later.record.to_string()[..12],
            utc_ms(later.at_ms)
        );
    }
    for step in &trace.equivocations {
        println!(
            "EQUIVOCATION  {} {}: {}",
            utc_ms(step.at_ms),
            step.kind.as_str(),
            step.reason
        );
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let (result, source) = match (&args.export, &args.data_dir) {
        (Some(path), _) => {
            let file =
                fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            let export = audit_export::read_export(BufReader::new(file))?;
            (
                verify_export(&export, args.node.as_ref()),
                path.display().to_string(),
            )
        }
        (None, Some(dir)) => {
            let log = open(dir)?;
            let mut result = log.verify()?;
            if let Ok(verified) = &mut result {
                let federation = log.federation();
                let check = |key: &RecordKey, bytes: &[u8]| {
                    tidings::trace::check_evidence(&federation, key, bytes)
                };
                match log.check_evidence(&check)? {
                    Ok(count) => verified.evidence = count,
                    Err(problem) => result = Err(problem),
                }
            }
            if let Ok(verified) = &result {
                if args.node.is_some_and(|node| node != verified.node) {
                    bail!(
                        "this log belongs to {}, not to the node given",
                        verified.node
                    );
                }
                if let Err(problem) = log.check_indexes()? {
                    result = Err(problem);
                }
            }
            if result.is_ok() {
                // The node's store remembers how far the log was durable: a log
                // cut back or swapped for an older copy is found here.
                if let Some((index, hash)) = remembered_head(dir)? {
                    if let Err(problem) = log.check_head(index, &hash)? {
                        result = Err(problem);
                    }
                }
            }
            (result, dir.join("audit").display().to_string())
        }
        (None, None) => bail!("give --data-dir or --export"),
    };
    report_verification(&source, &result, args.json)
}

/// The audit head the node's directory store recorded, if the store is there.
fn remembered_head(dir: &Path) -> anyhow::Result<Option<(u64, [u8; 32])>> {
    let path = dir.join("store");
    if !path.exists() {
        return Ok(None);
    }
    let store = tidings::net::store::DirectoryStore::open(&path)
        .with_context(|| format!("cannot read the directory store {}", path.display()))?;
    Ok(store.load()?.audit_head)
}

pub(crate) fn report_verification(
    source: &str,
    result: &Result<tidings::audit::Verified, tidings::audit::Problem>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        let value = match result {
            Ok(verified) => {
                serde_json::json!({ "source": source, "valid": true, "verified": verified })
            }
            Err(problem) => serde_json::json!({
                "source": source, "valid": false, "first_bad_index": problem.index(),
                "problem": problem, "message": problem.to_string(),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match result {
            Ok(verified) => {
                println!("audit log {source}: VALID");
                println!("  node {}", verified.node);
                println!(
                    "  entries {}..={} ({}), {}, {} after the last checkpoint",
                    verified.first,
                    verified.last,
                    verified.entries,
                    counted(
                        verified.checkpoints,
                        "signed checkpoint",
                        "signed checkpoints"
                    ),
                    counted(verified.unsigned_tail, "entry", "entries")
                );
                if verified.kept > 0 {
                    println!(
                        "  {} kept from pruned ranges (before entry {}), each run signed",
                        counted(verified.kept, "entry", "entries"),
                        verified.first
                    );
                }
                println!(
                    "  {}: each is the record its id names, its signature verified (verify_strict)",
                    counted(verified.evidence, "evidence record", "evidence records")
                );
            }
            Err(problem) => {
                println!("audit log {source}: INVALID at entry {}", problem.index());
                println!("  {problem}");
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Verifies an export: its chain and checkpoints, then its evidence (each
/// evidence line is the record its key names and verifies; each entry that should
/// have evidence has it, signed by the origin the entry names).
pub(crate) fn verify_export(
    export: &ReadExport,
    node: Option<&tidings::keys::NodeId>,
) -> Result<tidings::audit::Verified, tidings::audit::Problem> {
    let mut verified = export.verify(node)?;
    let check = |key: &RecordKey, bytes: &[u8]| {
        tidings::trace::check_evidence(&export.federation, key, bytes)
    };
    verified.evidence = export.check_evidence(&check)?;
    Ok(verified)
}

fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let old_keys = old_key_dirs(&args.dir.data_dir);
    match &args.out {
        Some(path) => {
            export_to(&args.dir.data_dir, path)?;
            for (name, dir) in &old_keys {
                let beside = beside(path, name);
                export_to(dir, &beside)?;
            }
        }
        None => {
            let log = open(&args.dir.data_dir)?;
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let summary = audit_export::export(&log, &mut out)?;
            out.flush()?;
            report_export(&summary, None);
            for (_, dir) in &old_keys {
                eprintln!(
                    "{} holds the log of a key this node rotated away from: export it too \
                     (tidings audit export -d {} -o FILE), or give -o to write both",
                    dir.display(),
                    dir.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The record `text` names: a full id, or a unique prefix of a record whose
/// evidence one of `exports` holds.
fn exported_record(exports: &[ReadExport], text: &str) -> anyhow::Result<RecordKey> {
    let prefix = match ids::record_text(text) {
        Ok(Ok(key)) => return Ok(key),
        Ok(Err(prefix)) => prefix,
        Err(error) => return Err(id_error("record", text, error)),
    };
    let matching: std::collections::BTreeSet<RecordKey> = exports
        .iter()
        .flat_map(|export| export.evidence.keys())
        .filter(|key| key.to_string().starts_with(&prefix))
        .copied()
        .collect();
    let matching: Vec<RecordKey> = matching.into_iter().collect();
    match ids::one(&matching) {
        Err(IdError::Unknown) => {
            bail!("no record whose evidence these exports hold begins with {text:?}")
        }
        resolved => resolved.map_err(|error| id_error("record", text, error)),
    }
}

/// Exports the log of `data_dir` to the file `path`.
fn export_to(data_dir: &Path, path: &Path) -> anyhow::Result<()> {
    let log = open(data_dir)?;
    let file =
        fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let summary = audit_export::export(&log, &mut out)?;
    out.flush()?;
    report_export(&summary, Some(path));
    Ok(())
}

fn report_export(summary: &audit_export::ExportSummary, path: Option<&Path>) {
    eprintln!(
        "exported {}, {}, {}{}",
        counted(summary.entries, "entry", "entries"),
        counted(summary.checkpoints, "checkpoint", "checkpoints"),
        counted(summary.evidence, "evidence record", "evidence records"),
        path.map(|path| format!(" to {}", path.display()))
            .unwrap_or_default()
    );
}

/// The logs set aside in `data_dir` when its key was rotated, by directory name
/// (`old-key-…`), oldest name first.
fn old_key_dirs(data_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(listing) = fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = listing
        .filter_map(Result::ok)
        .filter_map(|item| {
            let name = item.file_name().to_str()?.to_owned();
            let dir = item.path();
            (name.starts_with("old-key-") && dir.join("audit").is_dir()).then_some((name, dir))
        })
        .collect();
    found.sort();
    found
}

/// `FILE` with `.NAME` before its extension: `node-2.jsonl` beside `old-key-ab`
/// is `node-2.old-key-ab.jsonl`.
fn beside(path: &Path, name: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = match path.extension() {
        Some(extension) => format!("{stem}.{name}.{}", extension.to_string_lossy()),
        None => format!("{stem}.{name}"),
    };
    path.with_file_name(file)
}

fn merge(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let mut exports: Vec<ReadExport> = Vec::new();
    for path in &args.exports {
        let file =
            fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let export = audit_export::read_export(BufReader::new(file))
            .with_context(|| format!("in {}", path.display()))?;
        if let Err(problem) = verify_export(&export, None) {
            bail!(
                "{} does not verify ({problem}); refusing to merge it",
                path.display()
            );
        }
        exports.push(export);
    }
    let record = exported_record(&exports, &args.record)?;
    // The signer is the key whose signature the evidence carries (checked above),
    // never what the entries claim.
    let signer = exports.iter().find_map(|export| {
        let bytes = export.evidence.get(&record)?;
        tidings::trace::check_evidence(&export.federation, &record, bytes).ok()
    });
    let names = Names::find(args.roster.as_deref(), None)?;
    if let Some(federation) = names.federation {
        if let Some(export) = exports.iter().find(|e| e.federation != federation) {
            bail!(
                "the roster chain belongs to another federation than the export of {}",
                export.node
            );
        }
    }
    let mut spread = audit_export::spread(&exports, record, signer);
    // One member under several keys (a rotation the roster chain shows) received
    // the record if any of its keys did.
    let received: Vec<NodeId> = spread.receipts.iter().map(|r| r.node).collect();
    spread
        .missing
        .retain(|id| !names.keys_of(id).iter().any(|key| received.contains(key)));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&spread)?);
    } else {
        print!("{}", spread.render(&|id| names.short(id), &utc_ms));
    }
    Ok(ExitCode::SUCCESS)
}
