//! Criterion benchmarks of the protocol core: raw `verify_strict`, ingest through
//! the real path (decode, verify_strict, chain check, directory update), and one
//! digest reconciliation between converged directories of 1,000 records.
//!
//! `cargo bench --bench core`; `tidings bench` reports the same figures in one run.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidings::keys::{Domain, FederationId, Identity, Roster};
use tidings::proto::gossip::{opening, reconcile};
use tidings::proto::wire::Message;
use tidings::proto::{
    Announcement, Directory, DirectoryConfig, Record, Source, Specialist, VerifiedRecord,
};

const NOW: u64 = 1_700_000_000_000;

fn records(count: usize) -> (FederationId, Arc<Roster>, Vec<VerifiedRecord>) {
    let federation = FederationId::from_name("bench");
    let identities: Vec<Identity> = (0..count as u64)
        .map(|i| Identity::from_seed(&blake3::derive_key("tidings criterion", &i.to_le_bytes())))
        .collect();
    let roster: Roster = identities.iter().map(Identity::node_id).collect();
    let records = identities
        .iter()
        .enumerate()
        .map(|(index, identity)| {
            let announcement = Announcement {
                addrs: vec!["127.0.0.1:7700".into()],
                specialists: vec![Specialist {
                    name: format!("agent-{index}"),
                    capabilities: vec!["summarize".into()],
                    endpoint: "https://agent.example/api".into(),
                    meta: Default::default(),
                }],
            };
            let record =
                Record::first(federation, identity.node_id(), announcement, NOW, 3_600_000);
            VerifiedRecord::sign(identity, record).expect("sign")
        })
        .collect();
    (federation, Arc::new(roster), records)
}

fn verify_and_ingest(c: &mut Criterion) {
    let (federation, roster, records) = records(256);
    let prepared: Vec<_> = records
        .iter()
        .map(|record| {
            let key = record.origin().verifying_key().expect("key");
            let message = tidings::keys::signed_message(
                Domain::Record,
                &federation,
                record.signed().record_bytes(),
            );
            let signature = ed25519_dalek::Signature::from_bytes(&record.signed().signature().0);
            (key, message, signature)
        })
        .collect();
    let mut group = c.benchmark_group("records");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("verify_strict", |b| {
        b.iter(|| {
            for (key, message, signature) in &prepared {
                key.verify_strict(message, signature).expect("valid");
            }
        })
    });
    group.bench_function("ingest", |b| {
        b.iter(|| {
            let mut directory = Directory::new(DirectoryConfig::new(federation), roster.clone());
            for record in &records {
                directory.ingest(record.wire_bytes(), Source::Local, NOW + 1);
            }
            directory.len()
        })
    });
    group.finish();
}

fn digest(c: &mut Criterion) {
    let (federation, roster, records) = records(1_000);
    let mut a = Directory::new(DirectoryConfig::new(federation), roster.clone());
    let mut b = Directory::new(DirectoryConfig::new(federation), roster.clone());
    for record in &records {
        a.ingest_verified(record.clone(), Source::Local, NOW + 1);
        b.ingest_verified(record.clone(), Source::Local, NOW + 1);
    }
    c.bench_function("digest: converged exchange at 1,000 records", |bench| {
        bench.iter(|| {
            let Message::Open { ranges, .. } = opening(&a, NOW + 1) else {
                unreachable!()
            };
            reconcile(&b, &ranges, |origin| roster.contains(origin))
        })
    });
}

criterion_group!(benches, verify_and_ingest, digest);
criterion_main!(benches);
