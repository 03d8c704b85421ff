//! Writes the small seed corpus of every fuzz target into `corpus/`.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use tidings::proto::wire::{Message, Prefix, Range, Summary};
use tidings::proto::EquivocationProof;
use tidings_audit::{AuditConfig, AuditLog, EntryKind, MemoryStore, NewEntry};
use tidings_fuzz::{Fixture, NOW};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let fixture = Fixture::new();
    let first = fixture.record(0, 0, 1).expect("record");
    let fork = fixture.record(0, 0, 2).expect("record");
    let proof = EquivocationProof::from_conflict(&first, &fork).expect("conflict");
    write("record_verify", "valid", first.wire_bytes());
    write("record_verify", "record_bytes", first.signed().record_bytes());
    write("proof_verify", "valid", &proof.encode());
    write("wire_decode", "records", &Message::Records(vec![first.wire_bytes().to_vec()]).encode());
    write("wire_decode", "want", &Message::Want(vec![fixture.id(1)]).encode());
    write("wire_decode", "proofs", &Message::Proofs(vec![proof.encode()]).encode());
    write(
        "wire_decode",
        "sync",
        &Message::Sync(vec![Range { prefix: Prefix::ROOT, summary: Summary::Fingerprint { fingerprint: 7, count: 3 } }]).encode(),
    );
    let mut ingest = vec![1u8, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 2, 1, 0, 2, 5, 3];
    ingest.extend([0u8, 4, 1, 2, 3, 4]);
    write("directory_ingest", "mixed", &ingest);
    write("state_machine", "mixed", &[1, 1, 0, 1, 0, 0, 3, 2, 3, 1, 0, 5, 5, 0, 0, 0, 0, 0, 2, 9, 9, 0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut log = AuditLog::open(MemoryStore::new(), Arc::new(fixture.members[0].clone_for_corpus()), fixture.federation, AuditConfig { checkpoint_every_entries: 2, ..AuditConfig::default() }).expect("log");
    log.append(
        (0..5u8)
            .map(|i| NewEntry {
                at_ms: NOW + u64::from(i),
                kind: EntryKind::Accepted,
                peer: Some(fixture.id(i)),
                origin: Some(fixture.id(i + 1)),
                record: Some(tidings_audit::RecordKey([i; 32])),
                reason: format!("entry {i}"),
                evidence: Some(vec![i; 8]),
            })
            .collect(),
    )
    .expect("append");
    let mut export = Vec::new();
    tidings_audit::export::export(&log, &mut export).expect("export");
    write("audit_export", "valid", &export);
    println!("corpus written to fuzz/corpus/");
}

trait CloneForCorpus {
    fn clone_for_corpus(&self) -> tidings::keys::Identity;
}

impl CloneForCorpus for tidings::keys::Identity {
    fn clone_for_corpus(&self) -> tidings::keys::Identity {
        tidings::keys::Identity::from_seed(&self.seed())
    }
}
