//! `tidings record sign`: write a signed record file from a key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use tidings::export::Exported;
use tidings::keys::{FederationId, Identity};
use tidings::proto::limits::MAX_TTL_MS;
use tidings::proto::{Announcement, Record, Specialist, VerifiedRecord};

use super::format::{counted, now_ms, parse_duration_ms, utc};
use crate::KeyArg;

/// Arguments of `tidings record sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    key: KeyArg,
    /// Federation name the record belongs to (ignored with --after, which keeps
    /// the previous record's federation).
    #[arg(long, default_value = "default")]
    federation: String,
    /// A specialist, as NAME:CAPABILITY[,CAPABILITY...]:ENDPOINT, e.g.
    /// `translator:translate,fr-en:https://mt.example/api`. Repeat for several.
    #[arg(long = "specialist", value_name = "SPEC", value_parser = parse_specialist)]
    specialists: Vec<Specialist>,
    /// An address where this node accepts connections (host:port). Repeatable.
    #[arg(long = "addr", value_name = "HOST:PORT")]
    addrs: Vec<String>,
    /// Lifetime of the record (e.g. 30m, 1h; at most 1d).
    #[arg(long, default_value = "1h", value_parser = parse_duration_ms)]
    ttl: u64,
    /// Sign the successor of this previously exported record (seq + 1, linked to it).
    #[arg(long, value_name = "FILE")]
    after: Option<PathBuf>,
    /// Where to write the signed record.
    #[arg(long, short, default_value = "record.tidings", value_name = "FILE")]
    out: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

/// Parses `NAME:CAP,CAP:ENDPOINT`.
fn parse_specialist(text: &str) -> Result<Specialist, String> {
    let mut parts = text.splitn(3, ':');
    let (Some(name), Some(capabilities), Some(endpoint)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected NAME:CAPABILITY[,CAPABILITY...]:ENDPOINT".into());
    };
    Ok(Specialist {
        name: name.trim().to_string(),
        capabilities: capabilities
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect(),
        endpoint: endpoint.trim().to_string(),
        meta: Default::default(),
    })
}

fn read_previous(path: &Path, identity: &Identity) -> anyhow::Result<VerifiedRecord> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Exported::Record(signed) =
        Exported::decode(&bytes).with_context(|| format!("{} is not a record", path.display()))?
    else {
        bail!(
            "{} holds an equivocation proof, not a record",
            path.display()
        );
    };
    let record = tidings::proto::UnverifiedRecord::from_signed(signed, None)
        .and_then(|record| record.verify())
        .with_context(|| format!("{} is not a valid signed record", path.display()))?;
    if record.origin() != identity.node_id() {
        bail!(
            "{} was signed by {}, not by this key ({})",
            path.display(),
            record.origin(),
            identity.node_id()
        );
    }
    Ok(record)
}

pub(crate) fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let identity = Identity::load(&args.key.key)
        .context("cannot read the node key (create one with `tidings keygen`)")?;
    if args.ttl == 0 || args.ttl > MAX_TTL_MS {
        bail!("--ttl must be more than zero and at most one day");
    }
    let announcement = Announcement {
        addrs: args.addrs.clone(),
        specialists: args.specialists.clone(),
    };
    let now = now_ms();
    let ttl = args.ttl;
    let record = match &args.after {
        Some(path) => Record::next(&read_previous(path, &identity)?, announcement, now, ttl),
        None => Record::first(
            FederationId::from_name(&args.federation),
            identity.node_id(),
            announcement,
            now,
            ttl,
        ),
    };
    let signed = VerifiedRecord::sign(&identity, record).context("cannot sign this record")?;
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists (pass --force to replace it)",
            args.out.display()
        );
    }
    fs::write(
        &args.out,
        Exported::Record(signed.signed().clone()).encode(),
    )
    .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "signed record seq {} ({}, expires {}) -> {}",
        signed.seq(),
        counted(
            signed.record().specialists.len() as u64,
            "specialist",
            "specialists"
        ),
        utc(signed.record().expires_at_ms),
        args.out.display()
    );
    println!("record id: {}", signed.id());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specialist_syntax() {
        let s = parse_specialist("mt:translate, fr-en:https://mt.example:8443/api").unwrap();
        assert_eq!(s.name, "mt");
        assert_eq!(s.capabilities, ["translate", "fr-en"]);
        assert_eq!(s.endpoint, "https://mt.example:8443/api");
        assert!(parse_specialist("only-a-name").is_err());
    }
}
