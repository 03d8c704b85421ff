//! `tidings demo`: an offline walk through what the protocol core guarantees.
//!
//! Until the networked federation exists, the demo runs a small federation's
//! directories in memory: honest records are accepted everywhere, a forgery and a
//! tampered copy are refused, and an origin that signs two histories is caught
//! with a proof that anyone can check.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use rand::rngs::OsRng;
use tidings::keys::{FederationId, Identity, Roster};
use tidings::proto::limits::DEFAULT_TTL_MS;
use tidings::proto::{
    Announcement, Directory, DirectoryConfig, Record, Source, Specialist, Verdict, VerifiedRecord,
};

use super::format::now_ms;

/// Arguments of `tidings demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of member nodes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(3..=64))]
    nodes: u16,
}

fn specialist(name: &str, capability: &str) -> Specialist {
    Specialist {
        name: name.into(),
        capabilities: vec![capability.into()],
        endpoint: format!("https://{name}.example/api"),
        meta: Default::default(),
    }
}

fn show(step: &str, verdict: &Verdict) {
    println!("  {step:<44} -> {verdict}");
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    println!("tidings demo (offline): the networked federation demo is not built yet;");
    println!("this shows the acceptance rules every node applies, on in-memory directories.\n");
    let federation = FederationId::from_name("demo");
    let members: Vec<Identity> = (0..args.nodes)
        .map(|_| Identity::generate(&mut OsRng))
        .collect();
    let roster: Arc<Roster> = Arc::new(members.iter().map(Identity::node_id).collect());
    let mut directories: Vec<Directory> = (0..members.len())
        .map(|_| Directory::new(DirectoryConfig::new(federation), roster.clone()))
        .collect();
    let now = now_ms();
    let sign = |index: usize, specialists: Vec<Specialist>| -> anyhow::Result<VerifiedRecord> {
        let announcement = Announcement {
            addrs: vec![],
            specialists,
        };
        let record = Record::first(
            federation,
            members[index].node_id(),
            announcement,
            now,
            DEFAULT_TTL_MS,
        );
        Ok(VerifiedRecord::sign(&members[index], record)?)
    };

    println!("1. every member announces a specialist; every directory verifies and stores it");
    let records: Vec<VerifiedRecord> = (0..members.len())
        .map(|i| sign(i, vec![specialist(&format!("agent-{i}"), "summarize")]))
        .collect::<anyhow::Result<_>>()?;
    for directory in &mut directories {
        for record in &records {
            directory.ingest(record.wire_bytes(), Source::Local, now);
        }
    }
    let found = directories[0].by_capability("summarize").len();
    println!("  lookup capability=summarize at node 0: {found} specialists\n");

    println!("2. bad input is refused with a typed verdict");
    let target = &mut directories[1];
    let mut tampered = records[0].wire_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    show(
        "a copy with one flipped bit",
        &target.ingest(&tampered, Source::Local, now),
    );
    let outsider = Identity::generate(&mut OsRng);
    let forged = Record::first(
        federation,
        outsider.node_id(),
        Announcement {
            addrs: vec![],
            specialists: vec![specialist("fake", "summarize")],
        },
        now,
        DEFAULT_TTL_MS,
    );
    let forged = VerifiedRecord::sign(&outsider, forged)?;
    show(
        "a record signed by an unadmitted key",
        &target.ingest(forged.wire_bytes(), Source::Local, now),
    );
    show(
        "a replay of a record already held",
        &target.ingest(records[2].wire_bytes(), Source::Local, now),
    );

    println!("\n3. member 3 signs a second, different history");
    let fork = sign(3, vec![specialist("agent-3", "steal-data")])?;
    let verdict = directories[0].ingest(fork.wire_bytes(), Source::Local, now);
    show("node 0 receives the fork", &verdict);
    if let Verdict::Equivocation(proof) = verdict {
        let verified = proof.verify(Some(&federation))?;
        println!(
            "  the proof checks offline: {} is quarantined",
            verified.origin.short()
        );
        for directory in &mut directories[1..] {
            directory.ingest_proof(&proof);
        }
        let quarantined = directories
            .iter()
            .filter(|d| d.is_quarantined(&verified.origin))
            .count();
        println!(
            "  after the proof spreads: quarantined at {quarantined} of {} nodes",
            directories.len()
        );
    }
    println!("\nnext: `tidings keygen`, `tidings record sign`, `tidings verify` (see the README)");
    Ok(ExitCode::SUCCESS)
}
