//! `tidings verify FILE`: check an exported record, equivocation proof or audit
//! export offline.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use tidings::export::{Exported, MAX_EXPORT_BYTES};
use tidings::keys::{FederationId, NodeId, Roster};
use tidings::proto::{
    EquivocationProof, Record, RecordId, SignedRecord, UnverifiedRecord, VerifiedRecord,
};

use super::format::{counted, human_duration, now_ms, utc};

/// Arguments of `tidings verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The exported record or proof (`tidings record sign` writes one), or an audit
    /// export (`tidings audit export`).
    file: PathBuf,
    /// Require the item to belong to this federation (by name).
    #[arg(long)]
    federation: Option<String>,
    /// Require the signer to be on this roster file.
    #[arg(long, value_name = "FILE")]
    roster: Option<PathBuf>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    file: String,
    kind: &'static str,
    valid: bool,
    verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<RecordView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<ProofView>,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct RecordView {
    signer: NodeId,
    federation: FederationId,
    seq: u64,
    prev: RecordId,
    record_id: RecordId,
    issued_at: String,
    expires_at: String,
    expired: bool,
    addrs: Vec<String>,
    specialists: Vec<tidings::proto::Specialist>,
}

#[derive(Debug, Serialize)]
struct ProofView {
    origin: NodeId,
    conflict: tidings::proto::Conflict,
    first: RecordView,
    second: RecordView,
}

fn view(record: &Record, id: RecordId, now: u64) -> RecordView {
    RecordView {
        signer: record.origin,
        federation: record.federation,
        seq: record.seq,
        prev: record.prev,
        record_id: id,
        issued_at: utc(record.issued_at_ms),
        expires_at: utc(record.expires_at_ms),
        expired: now >= record.expires_at_ms,
        addrs: record.addrs.clone(),
        specialists: record.specialists.clone(),
    }
}

struct Checks {
    federation: Option<FederationId>,
    roster: Option<Roster>,
    now: u64,
}

impl Checks {
    fn admitted(&self, signer: &NodeId) -> Result<(), String> {
        match &self.roster {
            Some(roster) if !roster.contains(signer) => {
                Err(format!("signer {signer} is not on the roster"))
            }
            _ => Ok(()),
        }
    }

    fn record(&self, signed: SignedRecord, report: &mut Report) {
        report.kind = "record";
        // Show what the record claims even when it turns out to be invalid.
        if let Ok(claimed) = UnverifiedRecord::from_signed(signed.clone(), None) {
            report.record = Some(view(claimed.record(), claimed.id(), self.now));
        }
        let verified = UnverifiedRecord::from_signed(signed, self.federation.as_ref())
            .map_err(|error| error.to_string())
            .and_then(|record| {
                self.admitted(record.origin())?;
                record.verify().map_err(|error| error.to_string())
            });
        match verified {
            Ok(record) => self.valid_record(&record, report),
            Err(reason) => report.verdict = reason,
        }
    }

    fn valid_record(&self, record: &VerifiedRecord, report: &mut Report) {
        report.valid = true;
        report.verdict = "signed by its origin (checked with verify_strict)".into();
        let expires = record.record().expires_at_ms;
        if record.is_expired(self.now) {
            report.notes.push(format!(
                "expired {} ago",
                human_duration(self.now - expires)
            ));
        } else {
            report.notes.push(format!(
                "live for another {}",
                human_duration(expires - self.now)
            ));
        }
    }

    fn proof(&self, proof: EquivocationProof, report: &mut Report) {
        report.kind = "equivocation_proof";
        let verified = proof
            .verify(self.federation.as_ref())
            .map_err(|error| error.to_string())
            .and_then(|verified| self.admitted(&verified.origin).map(|()| verified));
        match verified {
            Ok(verified) => {
                report.valid = true;
                report.verdict = format!(
                    "{} signed two conflicting records ({})",
                    verified.origin,
                    match verified.conflict {
                        tidings::proto::Conflict::SameSeq => "same seq, different contents",
                        tidings::proto::Conflict::BrokenLink => "seq+1 does not link to seq",
                    }
                );
                let record_view =
                    |record: &VerifiedRecord| view(record.record(), record.id(), self.now);
                report.proof = Some(ProofView {
                    origin: verified.origin,
                    conflict: verified.conflict,
                    first: record_view(&verified.first),
                    second: record_view(&verified.second),
                });
            }
            Err(reason) => report.verdict = reason,
        }
    }
}

pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let roster = args
        .roster
        .as_deref()
        .map(Roster::load)
        .transpose()
        .context("cannot load the roster")?;
    let checks = Checks {
        federation: args.federation.as_deref().map(FederationId::from_name),
        roster,
        now: now_ms(),
    };
    let length = fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    let mut report = Report {
        file: args.file.display().to_string(),
        kind: "unknown",
        valid: false,
        verdict: String::new(),
        record: None,
        proof: None,
        notes: Vec::new(),
    };
    if starts_with(&args.file, tidings::proto::roster::EXPORT_HEADER)? {
        return roster_chain(args, length);
    }
    if is_audit_export(&args.file)? {
        let file = fs::File::open(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        let export = tidings::audit::export::read_export(std::io::BufReader::new(file))
            .with_context(|| format!("{} is not a readable audit export", args.file.display()))?;
        let result = super::audit::verify_export(&export, None);
        return super::audit::report_verification(
            &args.file.display().to_string(),
            &result,
            args.json,
        );
    }
    if length > MAX_EXPORT_BYTES as u64 {
        report.verdict = format!("file is {length} bytes, larger than any tidings export");
    } else {
        let bytes =
            fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
        match Exported::decode(&bytes) {
            Ok(Exported::Record(signed)) => checks.record(signed, &mut report),
            Ok(Exported::Proof(proof)) => checks.proof(proof, &mut report),
            Err(error) => report.verdict = error.to_string(),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether the file starts like an audit export (a JSON header line).
fn is_audit_export(path: &std::path::Path) -> anyhow::Result<bool> {
    starts_with(path, "{\"type\":\"header\"")
}

/// Whether the file's text starts with `prefix` (after white space).
fn starts_with(path: &std::path::Path, prefix: &str) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut start = [0u8; 64];
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let read = file.read(&mut start)?;
    let text = String::from_utf8_lossy(&start[..read]);
    Ok(text.trim_start().starts_with(prefix))
}

/// Largest roster chain export read.
const MAX_ROSTER_EXPORT_BYTES: u64 = 256 * 1024 * 1024;

/// Checks an exported roster chain from its genesis.
fn roster_chain(args: &VerifyArgs, length: u64) -> anyhow::Result<ExitCode> {
    use tidings::proto::roster::{parse_export, verify_chain, Genesis};
    if length > MAX_ROSTER_EXPORT_BYTES {
        anyhow::bail!(
            "{} is {length} bytes, larger than any roster chain",
            args.file.display()
        );
    }
    let text = fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut report = serde_json::json!({
        "file": args.file.display().to_string(),
        "kind": "roster_chain",
        "valid": false,
    });
    let verdict: Result<String, String> = (|| {
        let (genesis, ops) = parse_export(&text).map_err(|error| error.to_string())?;
        report["genesis"] = serde_json::json!(genesis.id());
        report["operations"] = serde_json::json!(ops.len());
        if let (Some(path), Some(name)) = (&args.roster, &args.federation) {
            let roster = Roster::load(path).map_err(|error| error.to_string())?;
            let expected = Genesis::from_roster(FederationId::from_name(name), &roster)
                .map_err(|error| error.to_string())?;
            if expected.id() != genesis.id() {
                return Err(format!(
                    "the chain starts from genesis {}, not from {} of federation {name} ({})",
                    genesis.id(),
                    path.display(),
                    expected.id()
                ));
            }
        } else if let Some(name) = &args.federation {
            if genesis.federation != FederationId::from_name(name) {
                return Err(format!(
                    "the chain belongs to another federation than {name}"
                ));
            }
        }
        let state = verify_chain(&genesis, &ops).map_err(|error| error.to_string())?;
        report["epoch"] = serde_json::json!(state.epoch());
        report["head"] = serde_json::json!(state.head());
        report["members"] = serde_json::json!(state.members().len());
        Ok(format!(
            "{} from genesis {}, each with its threshold of valid approvals: epoch {}, head {}, {}",
            counted(ops.len() as u64, "operation applies", "operations apply"),
            genesis.id(),
            state.epoch(),
            state.head(),
            counted(state.members().len() as u64, "member", "members")
        ))
    })();
    let valid = verdict.is_ok();
    let verdict = verdict.unwrap_or_else(|error| error);
    report["valid"] = serde_json::json!(valid);
    report["verdict"] = serde_json::json!(verdict);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}: roster chain", args.file.display());
        println!("{}: {verdict}", if valid { "VALID" } else { "INVALID" });
        if args.roster.is_none() {
            println!(
                "(compare the genesis id with `tidings roster create`'s, or give --roster and --federation)"
            );
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_record(prefix: &str, record: &RecordView) {
    println!("{prefix}signer:      {}", record.signer);
    println!("{prefix}federation:  {}", record.federation);
    println!("{prefix}seq:         {}", record.seq);
    println!("{prefix}prev:        {}", record.prev);
    println!("{prefix}record id:   {}", record.record_id);
    println!("{prefix}issued:      {}", record.issued_at);
    println!("{prefix}expires:     {}", record.expires_at);
    if !record.addrs.is_empty() {
        println!("{prefix}addrs:       {}", record.addrs.join(", "));
    }
    println!("{prefix}specialists: {}", record.specialists.len());
    for specialist in &record.specialists {
        println!(
            "{prefix}  {}  [{}]  {}",
            specialist.name,
            specialist.capabilities.join(", "),
            specialist.endpoint
        );
    }
}

fn print_report(report: &Report) {
    println!(
        "file:        {} ({})",
        report.file,
        report.kind.replace('_', " ")
    );
    if let Some(record) = &report.record {
        print_record("", record);
    }
    if let Some(proof) = &report.proof {
        println!("first record:");
        print_record("  ", &proof.first);
        println!("second record:");
        print_record("  ", &proof.second);
    }
    let status = if report.valid { "VALID" } else { "INVALID" };
    println!("verdict:     {status}: {}", report.verdict);
    for note in &report.notes {
        println!("note:        {note}");
    }
}
