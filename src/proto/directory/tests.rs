//! Acceptance rules: one test per kind of bad input, then properties.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tidings_keys::{Domain, FederationId, Identity, NodeId, Roster, Signature};

use super::*;

/// A change to a record that should make it invalid in one field.
type Mutation = Box<dyn Fn(&mut Record)>;
use crate::proto::codec::{DecodeError, Field};
use crate::proto::limits::*;
use crate::proto::record::{Record, SignedRecord};
use crate::proto::testkit::{announcement, sign_bytes, sign_unchecked, Federation, NOW};
use crate::proto::verdict::VerdictKind;

fn ingest(directory: &mut Directory, bytes: &[u8]) -> Verdict {
    directory.ingest(bytes, Source::Peer(NodeId::from_bytes([9; 32])), NOW)
}

fn rejection(verdict: Verdict) -> Rejection {
    match verdict {
        Verdict::Rejected(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn accepts_a_valid_record_and_answers_queries() {
    let federation = Federation::new(2);
    let mut directory = federation.directory();
    let record = federation.sign(0, federation.first(0, &["ocr", "translator"]));
    let verdict = ingest(&mut directory, record.wire_bytes());
    assert!(
        matches!(verdict, Verdict::Accepted { replaced: None, .. }),
        "{verdict:?}"
    );
    assert_eq!(directory.len(), 1);
    assert_eq!(directory.by_capability("cap-ocr").len(), 1);
    assert_eq!(directory.by_capability("generic").len(), 2);
    assert_eq!(
        directory.by_name("translator")[0].origin,
        federation.node(0)
    );
    assert_eq!(directory.by_origin(&federation.node(0)).len(), 2);
    assert!(directory.by_origin(&federation.node(1)).is_empty());
    assert!(directory.by_capability("nothing").is_empty());
    let entry = directory.entry(&federation.node(0)).unwrap();
    assert_eq!(entry.source.peer(), Some(NodeId::from_bytes([9; 32])));
}

#[test]
fn oversized_bytes_are_malformed() {
    let federation = Federation::new(1);
    let bytes = vec![0u8; MAX_SIGNED_RECORD_BYTES + 1];
    assert!(matches!(
        rejection(ingest(&mut federation.directory(), &bytes)),
        Rejection::Malformed(DecodeError::Oversized { .. })
    ));
}

#[test]
fn truncated_and_garbage_bytes_are_malformed() {
    let federation = Federation::new(1);
    let mut directory = federation.directory();
    let record = federation.sign(0, federation.first(0, &["a"]));
    let wire = record.wire_bytes();
    for cut in [0, 1, 10, wire.len() / 2, wire.len() - 1] {
        assert!(
            matches!(
                rejection(ingest(&mut directory, &wire[..cut])),
                Rejection::Malformed(_)
            ),
            "cut at {cut}"
        );
    }
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    assert!(matches!(
        rejection(ingest(&mut directory, &garbage)),
        Rejection::Malformed(_)
    ));
    assert!(directory.is_empty());
}

#[test]
fn another_federation_is_refused() {
    let federation = Federation::new(1);
    let mut record = federation.first(0, &["a"]);
    record.federation = FederationId::from_name("other");
    let bytes = sign_unchecked(&federation.members[0], &record);
    assert_eq!(
        rejection(ingest(&mut federation.directory(), &bytes)),
        Rejection::WrongFederation(FederationId::from_name("other"))
    );
}

#[test]
fn an_unsupported_version_is_refused() {
    let federation = Federation::new(1);
    let mut record = federation.first(0, &["a"]);
    record.version = 7;
    let bytes = sign_unchecked(&federation.members[0], &record);
    assert_eq!(
        rejection(ingest(&mut federation.directory(), &bytes)),
        Rejection::UnsupportedVersion(7)
    );
}

#[test]
fn an_unadmitted_origin_is_refused() {
    let federation = Federation::new(1);
    let outsider = Identity::from_seed(&[200; 32]);
    let record = Record::first(
        federation.id,
        outsider.node_id(),
        announcement(&["a"]),
        NOW,
        DEFAULT_TTL_MS,
    );
    let signed = VerifiedRecord::sign(&outsider, record).unwrap();
    assert_eq!(
        rejection(ingest(&mut federation.directory(), signed.wire_bytes())),
        Rejection::NotAdmitted(outsider.node_id())
    );
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let federation = Federation::new(2);
    // Member 1 signs a record that claims member 0 as its origin.
    let record = federation.first(0, &["a"]);
    let bytes = sign_unchecked(&federation.members[1], &record);
    assert_eq!(
        signature_refused(rejection(ingest(&mut federation.directory(), &bytes))),
        federation.node(0)
    );
}

#[test]
fn every_single_bit_flip_is_refused() {
    let federation = Federation::new(1);
    let mut directory = federation.directory();
    let record = federation.sign(0, federation.first(0, &["a"]));
    let wire = record.wire_bytes().to_vec();
    for bit in 0..wire.len() * 8 {
        let mut flipped = wire.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let verdict = ingest(&mut directory, &flipped);
        assert!(
            !matches!(verdict, Verdict::Accepted { .. }),
            "bit {bit}: {verdict:?}"
        );
    }
    assert!(directory.is_empty());
    assert!(matches!(
        ingest(&mut directory, &wire),
        Verdict::Accepted { .. }
    ));
}

/// The order L of the ed25519 base point, little-endian.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The encoding of the identity point, which has order 1.
const IDENTITY_POINT: [u8; 32] = {
    let mut bytes = [0u8; 32];
    bytes[0] = 1;
    bytes
};

fn wire(bytes: Vec<u8>, signature: [u8; 64]) -> Vec<u8> {
    SignedRecord::new(bytes, Signature(signature)).encode()
}

#[test]
fn a_non_canonical_signature_scalar_is_refused() {
    let federation = Federation::new(1);
    let record = federation.sign(0, federation.first(0, &["a"]));
    let mut signature = record.signed().signature().0;
    // s + L verifies in the group equation but is not the canonical scalar.
    let mut carry = 0u16;
    for (byte, order) in signature[32..].iter_mut().zip(GROUP_ORDER) {
        let sum = u16::from(*byte) + u16::from(order) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    let bytes = wire(record.signed().record_bytes().to_vec(), signature);
    assert_eq!(
        signature_refused(rejection(ingest(&mut federation.directory(), &bytes))),
        federation.node(0)
    );
}

#[test]
fn a_small_order_nonce_is_refused_although_plain_verify_accepts_it() {
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::hazmat::ExpandedSecretKey;
    use sha2::{Digest, Sha512};

    let federation = Federation::new(1);
    let identity = &federation.members[0];
    let record_bytes = federation.first(0, &["a"]).encode();
    let message = tidings_keys::signed_message(Domain::Record, &federation.id, &record_bytes);
    // With R the identity point, s = H(R‖A‖M)·a satisfies [s]B = R + [k]A.
    let secret = ExpandedSecretKey::from(&*identity.seed());
    let public = identity.node_id();
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(IDENTITY_POINT)
            .chain_update(public.as_bytes())
            .chain_update(&message),
    );
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&IDENTITY_POINT);
    signature[32..].copy_from_slice((k * secret.scalar).as_bytes());

    let key = ed25519_dalek::VerifyingKey::from_bytes(public.as_bytes()).unwrap();
    let dalek_signature = ed25519_dalek::Signature::from_bytes(&signature);
    assert!(
        key.verify_strict(&message, &dalek_signature).is_err()
            && ed25519_dalek::Verifier::verify(&key, &message, &dalek_signature).is_ok(),
        "the vector must pass plain verify and fail verify_strict"
    );
    let bytes = wire(record_bytes, signature);
    assert_eq!(
        signature_refused(rejection(ingest(&mut federation.directory(), &bytes))),
        public
    );
}

#[test]
fn a_small_order_key_is_refused_although_plain_verify_accepts_it() {
    let federation = Federation::new(0);
    let weak = NodeId::from_bytes(IDENTITY_POINT);
    let mut roster = Roster::new();
    roster.insert(weak, None); // bypasses the roster file's own check on purpose
    let mut directory = Directory::new(DirectoryConfig::new(federation.id), Arc::new(roster));
    let record = Record::first(
        federation.id,
        weak,
        announcement(&["a"]),
        NOW,
        DEFAULT_TTL_MS,
    );
    let record_bytes = record.encode();
    // R = identity, s = 0: [0]B = O + [k]O holds for every message.
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&IDENTITY_POINT);
    let message = tidings_keys::signed_message(Domain::Record, &federation.id, &record_bytes);
    let key = ed25519_dalek::VerifyingKey::from_bytes(&IDENTITY_POINT).unwrap();
    assert!(ed25519_dalek::Verifier::verify(
        &key,
        &message,
        &ed25519_dalek::Signature::from_bytes(&signature)
    )
    .is_ok());
    assert_eq!(
        signature_refused(rejection(ingest(
            &mut directory,
            &wire(record_bytes, signature)
        ))),
        weak
    );
}

#[test]
fn a_non_canonical_key_is_refused() {
    let federation = Federation::new(0);
    // y = p + 1: a second spelling of the identity point.
    let mut spelling = [0xffu8; 32];
    spelling[0] = 0xee;
    spelling[31] = 0x7f;
    let origin = NodeId::from_bytes(spelling);
    let roster: Roster = [origin].into_iter().collect();
    let mut directory = Directory::new(DirectoryConfig::new(federation.id), Arc::new(roster));
    let record = Record::first(
        federation.id,
        origin,
        announcement(&["a"]),
        NOW,
        DEFAULT_TTL_MS,
    );
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&IDENTITY_POINT);
    assert_eq!(
        signature_refused(rejection(ingest(
            &mut directory,
            &wire(record.encode(), signature)
        ))),
        origin
    );
}

fn with_times(federation: &Federation, issued: u64, ttl: u64) -> Verdict {
    let record = Record::first(
        federation.id,
        federation.node(0),
        announcement(&["a"]),
        issued,
        ttl,
    );
    let signed = federation.sign(0, record);
    ingest(&mut federation.directory(), signed.wire_bytes())
}

#[test]
fn an_expired_record_is_ignored() {
    let federation = Federation::new(1);
    let verdict = with_times(&federation, NOW - 2 * DEFAULT_TTL_MS, DEFAULT_TTL_MS);
    assert!(
        matches!(verdict, Verdict::Ignored(Ignored::Expired(_))),
        "{verdict:?}"
    );
    assert!(!verdict.blames_peer());
}

#[test]
fn a_record_dated_beyond_the_skew_is_ignored() {
    let federation = Federation::new(1);
    let verdict = with_times(&federation, NOW + MAX_CLOCK_SKEW_MS + 1, DEFAULT_TTL_MS);
    assert!(
        matches!(verdict, Verdict::Ignored(Ignored::FutureDated { ahead_ms, .. }) if ahead_ms == MAX_CLOCK_SKEW_MS + 1),
        "{verdict:?}"
    );
    // Within the skew is fine.
    let verdict = with_times(&federation, NOW + MAX_CLOCK_SKEW_MS, DEFAULT_TTL_MS);
    assert!(matches!(verdict, Verdict::Accepted { .. }), "{verdict:?}");
}

#[test]
fn a_lifetime_above_the_maximum_is_refused() {
    let federation = Federation::new(1);
    let verdict = with_times(&federation, NOW, MAX_TTL_MS + 1);
    assert!(
        matches!(verdict, Verdict::Rejected(Rejection::TtlTooLong { ttl_ms, .. }) if ttl_ms == MAX_TTL_MS + 1),
        "{verdict:?}"
    );
}

#[test]
fn an_older_record_is_stale_and_a_repeat_is_a_duplicate() {
    let federation = Federation::new(1);
    let mut directory = federation.directory();
    let first = federation.sign(0, federation.first(0, &["a"]));
    let second = federation.next(0, &first, &["a", "b"], 10);
    assert!(matches!(
        ingest(&mut directory, second.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    let verdict = ingest(&mut directory, first.wire_bytes());
    assert!(
        matches!(verdict, Verdict::Stale { current_seq: 2, .. }),
        "{verdict:?}"
    );
    let verdict = ingest(&mut directory, second.wire_bytes());
    assert_eq!(verdict.kind(), VerdictKind::Duplicate);
    assert_eq!(
        directory.entry(&federation.node(0)).unwrap().record.id(),
        second.id()
    );
}

#[test]
fn same_seq_with_another_body_is_equivocation_with_a_valid_proof() {
    let federation = Federation::new(1);
    let mut directory = federation.directory();
    let honest = federation.sign(0, federation.first(0, &["a"]));
    let fork = federation.sign(0, federation.first(0, &["evil"]));
    assert!(matches!(
        ingest(&mut directory, honest.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    let Verdict::Equivocation(proof) = ingest(&mut directory, fork.wire_bytes()) else {
        panic!("expected equivocation");
    };
    let verified = EquivocationProof::decode(&proof.encode())
        .unwrap()
        .verify(Some(&federation.id))
        .unwrap();
    assert_eq!(verified.origin, federation.node(0));
    assert_eq!(verified.conflict, crate::proto::Conflict::SameSeq);
    assert!(directory.is_quarantined(&federation.node(0)));
    assert!(
        directory.entry(&federation.node(0)).is_none(),
        "its record is withdrawn"
    );
    // The same proof, built from the other order, has the same bytes.
    let again = EquivocationProof::from_conflict(&fork, &honest).unwrap();
    assert_eq!(again.encode(), proof.encode());
}

#[test]
fn a_broken_link_at_the_next_seq_is_equivocation() {
    let federation = Federation::new(1);
    let mut directory = federation.directory();
    let first = federation.sign(0, federation.first(0, &["a"]));
    let mut forged_next = Record::next(&first, announcement(&["b"]), NOW + 5, DEFAULT_TTL_MS);
    forged_next.prev = crate::proto::RecordId([7; 32]);
    let forged_next = federation.sign(0, forged_next);
    assert!(matches!(
        ingest(&mut directory, first.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    let Verdict::Equivocation(proof) = ingest(&mut directory, forged_next.wire_bytes()) else {
        panic!("expected equivocation");
    };
    let verified = proof.verify(None).unwrap();
    assert_eq!(verified.conflict, crate::proto::Conflict::BrokenLink);
}

#[test]
fn records_from_a_quarantined_origin_are_ignored() {
    let federation = Federation::new(2);
    let mut directory = federation.directory();
    let honest = federation.sign(0, federation.first(0, &["a"]));
    let fork = federation.sign(0, federation.first(0, &["b"]));
    let proof = EquivocationProof::from_conflict(&honest, &fork).unwrap();
    // A proof from elsewhere quarantines the origin here too.
    let mut other = federation.directory();
    assert!(matches!(
        ingest(&mut other, honest.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    assert_eq!(
        other.ingest_proof(&proof),
        ProofVerdict::Quarantined {
            origin: federation.node(0),
            removed: Some(honest.id())
        }
    );
    assert_eq!(
        other.ingest_proof(&proof),
        ProofVerdict::AlreadyQuarantined(federation.node(0))
    );
    assert!(matches!(
        directory.ingest_proof(&proof),
        ProofVerdict::Quarantined { removed: None, .. }
    ));
    let later = federation.next(0, &honest, &["c"], 100);
    let verdict = ingest(&mut directory, later.wire_bytes());
    assert!(
        matches!(verdict, Verdict::Ignored(Ignored::Quarantined(origin)) if origin == federation.node(0))
    );
    // Other origins are unaffected.
    let record = federation.sign(1, federation.first(1, &["x"]));
    assert!(matches!(
        ingest(&mut directory, record.wire_bytes()),
        Verdict::Accepted { .. }
    ));
}

#[test]
fn invalid_proofs_are_rejected() {
    let federation = Federation::new(2);
    let first = federation.sign(0, federation.first(0, &["a"]));
    let second = federation.next(0, &first, &["b"], 10);
    assert!(
        EquivocationProof::from_conflict(&first, &second).is_none(),
        "an honest chain"
    );
    let other_origin = federation.sign(1, federation.first(1, &["a"]));
    assert!(EquivocationProof::from_conflict(&first, &other_origin).is_none());
    // Hand-made pairs that do not prove anything.
    let mut bytes = Vec::new();
    first.signed().encode_into(&mut bytes);
    second.signed().encode_into(&mut bytes);
    let no_conflict = EquivocationProof::decode(&bytes).unwrap();
    assert_eq!(
        no_conflict.verify(None).unwrap_err(),
        ProofError::NoConflict
    );
    let mut directory = federation.directory();
    assert!(matches!(
        directory.ingest_proof(&no_conflict),
        ProofVerdict::Rejected(_)
    ));
    let mut bytes = Vec::new();
    first.signed().encode_into(&mut bytes);
    other_origin.signed().encode_into(&mut bytes);
    let mixed = EquivocationProof::decode(&bytes).unwrap();
    assert_eq!(
        mixed.verify(None).unwrap_err(),
        ProofError::DifferentOrigins
    );
    // A tampered record inside a proof.
    let fork = federation.sign(0, federation.first(0, &["z"]));
    let mut tampered = EquivocationProof::from_conflict(&first, &fork)
        .unwrap()
        .encode();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = EquivocationProof::decode(&tampered).unwrap();
    assert!(matches!(
        tampered.verify(None),
        Err(ProofError::InvalidRecord(_))
    ));
    assert!(EquivocationProof::decode(&[1, 2, 3]).is_err());
}

#[test]
fn too_many_specialists_are_malformed() {
    let federation = Federation::new(1);
    let names: Vec<String> = (0..=MAX_SPECIALISTS).map(|i| format!("s{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut record = federation.first(0, &refs);
    record.normalize();
    let bytes = sign_unchecked(&federation.members[0], &record);
    assert!(matches!(
        rejection(ingest(&mut federation.directory(), &bytes)),
        Rejection::Malformed(DecodeError::TooMany { field: Field::Specialists, found, .. })
            if found == MAX_SPECIALISTS as u64 + 1
    ));
}

#[test]
fn over_long_strings_are_malformed() {
    let federation = Federation::new(1);
    let cases: Vec<(Mutation, Field)> = vec![
        (
            Box::new(|r| r.specialists[0].name = "n".repeat(MAX_NAME_BYTES + 1)),
            Field::Name,
        ),
        (
            Box::new(|r| {
                r.specialists[0].endpoint = format!("https://{}", "e".repeat(MAX_ENDPOINT_BYTES))
            }),
            Field::Endpoint,
        ),
        (
            Box::new(|r| {
                r.specialists[0].capabilities = vec!["c".repeat(MAX_CAPABILITY_BYTES + 1)]
            }),
            Field::Capability,
        ),
        (
            Box::new(|r| {
                r.specialists[0]
                    .meta
                    .insert("k".into(), "v".repeat(MAX_META_VALUE_BYTES + 1));
            }),
            Field::MetaValue,
        ),
        (
            Box::new(|r| r.addrs = vec!["a".repeat(MAX_ADDR_BYTES + 1)]),
            Field::Addr,
        ),
    ];
    for (mutate, field) in cases {
        let mut record = federation.first(0, &["a"]);
        mutate(&mut record);
        let bytes = sign_unchecked(&federation.members[0], &record);
        let rejection = rejection(ingest(&mut federation.directory(), &bytes));
        assert!(
            matches!(rejection, Rejection::Malformed(DecodeError::TooLong { field: found, .. }) if found == field),
            "{field}: {rejection:?}"
        );
    }
}

#[test]
fn an_origin_over_its_rate_is_limited_then_recovers() {
    let federation = Federation::new(1);
    let mut directory = federation.directory();
    let limit = directory.config().origin_rate;
    let mut previous = federation.sign(0, federation.first(0, &["a"]));
    assert!(matches!(
        ingest(&mut directory, previous.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    for _ in 1..limit.burst {
        previous = federation.next(0, &previous, &["a"], 1);
        assert!(matches!(
            ingest(&mut directory, previous.wire_bytes()),
            Verdict::Accepted { .. }
        ));
    }
    let over = federation.next(0, &previous, &["a"], 1);
    let verdict = ingest(&mut directory, over.wire_bytes());
    assert!(
        matches!(verdict, Verdict::Ignored(Ignored::RateLimited(_))),
        "{verdict:?}"
    );
    let later = NOW + 60_000 / u64::from(limit.per_minute);
    let verdict = directory.ingest(over.wire_bytes(), Source::Local, later);
    assert!(matches!(verdict, Verdict::Accepted { .. }), "{verdict:?}");
}

#[test]
fn expired_records_are_swept() {
    let federation = Federation::new(2);
    let mut directory = federation.directory();
    let short = Record::first(
        federation.id,
        federation.node(0),
        announcement(&["a"]),
        NOW,
        1000,
    );
    let short = federation.sign(0, short);
    let long = federation.sign(1, federation.first(1, &["b"]));
    ingest(&mut directory, short.wire_bytes());
    ingest(&mut directory, long.wire_bytes());
    assert_eq!(directory.next_expiry_ms(), Some(NOW + 1000));
    assert!(directory.sweep_expired(NOW + 999).is_empty());
    let swept = directory.sweep_expired(NOW + 1000);
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].id(), short.id());
    assert_eq!(directory.len(), 1);
}

#[test]
fn the_next_expiry_follows_replacements_and_removals() {
    let federation = Federation::new(2);
    let mut directory = federation.directory();
    let short = federation.sign(
        0,
        Record::first(
            federation.id,
            federation.node(0),
            announcement(&["a"]),
            NOW,
            1000,
        ),
    );
    let long = federation.sign(1, federation.first(1, &["b"]));
    ingest(&mut directory, short.wire_bytes());
    ingest(&mut directory, long.wire_bytes());
    let long_expiry = long.record().expires_at_ms;
    assert_eq!(directory.next_expiry_ms(), Some(NOW + 1000));
    // The short record is replaced by one that lives longer: its expiry goes.
    let successor = federation.next(0, &short, &["a", "c"], 1);
    assert!(matches!(
        ingest(&mut directory, successor.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    let expected = successor.record().expires_at_ms.min(long_expiry);
    assert_eq!(directory.next_expiry_ms(), Some(expected));
    assert!(directory.sweep_expired(NOW + 1000).is_empty());
    assert_eq!(directory.len(), 2);
    // A fork quarantines node 0: its record and its expiry go together.
    let fork = federation.next(0, &short, &["x"], 2);
    assert!(matches!(
        ingest(&mut directory, fork.wire_bytes()),
        Verdict::Equivocation(_)
    ));
    assert_eq!(directory.next_expiry_ms(), Some(long_expiry));
    assert_eq!(directory.sweep_expired(long_expiry).len(), 1);
    assert_eq!(directory.next_expiry_ms(), None);
    assert!(directory.is_empty());
}

#[test]
fn a_prechecked_record_is_judged_by_the_same_rules_and_its_check_is_counted() {
    let federation = Federation::new(2);
    let cache = VerifiedCache::new(16);
    let mut keys = HashMap::new();
    let mut directory = federation.directory();
    let first = federation.sign(0, federation.first(0, &["a"]));
    let checked = cache
        .check(first.wire_bytes(), &federation.id, &mut keys, |_| true)
        .expect("a good record passes");
    assert!(checked.checked);
    // Accepted without a check of its own, and the check made ahead is counted.
    let verdict = directory.ingest_prechecked(
        first.wire_bytes(),
        Some(checked.clone()),
        Source::Peer(federation.node(1)),
        NOW,
    );
    assert!(matches!(verdict, Verdict::Accepted { .. }));
    assert_eq!(directory.signature_checks(), 1);
    // A repeat is a duplicate; the same bytes again are found in the cache, so
    // they cost no check.
    let again = cache
        .check(first.wire_bytes(), &federation.id, &mut keys, |_| true)
        .expect("cached");
    assert!(!again.checked);
    let verdict = directory.ingest_prechecked(
        first.wire_bytes(),
        Some(again),
        Source::Peer(federation.node(1)),
        NOW,
    );
    assert_eq!(verdict.kind(), VerdictKind::Duplicate);
    assert_eq!(directory.signature_checks(), 1);
    // A prechecked record handed with other bytes is not trusted for them: the
    // bytes take the full path (and a bad signature is refused).
    let next = federation.next(0, &first, &["b"], 1);
    let mut forged = next.wire_bytes().to_vec();
    *forged.last_mut().expect("bytes") ^= 1;
    assert!(cache
        .check(&forged, &federation.id, &mut keys, |_| true)
        .is_none());
    let verdict = directory.ingest_prechecked(
        &forged,
        Some(checked),
        Source::Peer(federation.node(1)),
        NOW,
    );
    assert!(matches!(verdict, Verdict::Rejected(_)), "{verdict:?}");
    assert_eq!(directory.signature_checks(), 2);
    // A fork checked ahead is still caught as one.
    let fork = federation.sign(0, federation.first(0, &["z"]));
    let checked = cache.check(fork.wire_bytes(), &federation.id, &mut keys, |_| true);
    let verdict = directory.ingest_prechecked(
        fork.wire_bytes(),
        checked,
        Source::Peer(federation.node(1)),
        NOW,
    );
    assert!(matches!(verdict, Verdict::Equivocation(_)));
    // An origin the caller does not admit is not checked at all.
    let other = federation.sign(1, federation.first(1, &["b"]));
    assert!(cache
        .check(other.wire_bytes(), &federation.id, &mut keys, |_| false)
        .is_none());
}

#[test]
fn verified_records_go_through_the_same_rules() {
    let federation = Federation::new(1);
    let mut directory = federation.directory();
    let first = federation.sign(0, federation.first(0, &["a"]));
    assert!(matches!(
        directory.ingest_verified(first.clone(), Source::Local, NOW),
        Verdict::Accepted { .. }
    ));
    let fork = federation.sign(0, federation.first(0, &["b"]));
    assert!(matches!(
        directory.ingest_verified(fork, Source::Local, NOW),
        Verdict::Equivocation(_)
    ));
}

/// Chains of 1 to 4 records for 4 origins, as wire bytes, and each origin's newest id.
fn chains(federation: &Federation) -> (Vec<Vec<u8>>, Vec<(NodeId, crate::proto::RecordId)>) {
    let mut all = Vec::new();
    let mut newest = Vec::new();
    for index in 0..federation.members.len() {
        let mut record = federation.sign(index, federation.first(index, &["s"]));
        all.push(record.wire_bytes().to_vec());
        for step in 1..=index {
            record = federation.next(index, &record, &["s", &format!("v{step}")], 10);
            all.push(record.wire_bytes().to_vec());
        }
        newest.push((federation.node(index), record.id()));
    }
    (all, newest)
}

#[test]
fn interleavings_with_duplicates_converge_on_the_newest_records() {
    let federation = Federation::new(4);
    let (all, newest) = chains(&federation);
    let order: Vec<usize> = (0..all.len()).collect();
    let strategy = (
        Just(order).prop_shuffle(),
        proptest::collection::vec((0..all.len(), 0..all.len()), 0..12),
    );
    let mut runner = TestRunner::new(Config::with_cases(128));
    runner
        .run(&strategy, |(order, duplicates)| {
            let mut sequence = order.clone();
            for (which, at) in duplicates {
                sequence.insert(at.min(sequence.len()), which);
            }
            let mut directory = federation.directory();
            for index in sequence {
                let verdict = directory.ingest(&all[index], Source::Local, NOW + 1000);
                prop_assert!(
                    !verdict.blames_peer() && !matches!(verdict, Verdict::Equivocation(_)),
                    "{verdict:?}"
                );
            }
            for (origin, id) in &newest {
                prop_assert_eq!(directory.entry(origin).map(|e| e.record.id()), Some(*id));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn no_single_byte_mutation_is_accepted() {
    let federation = Federation::new(1);
    let record = federation.sign(0, federation.first(0, &["translator", "ocr"]));
    let wire = record.wire_bytes().to_vec();
    let strategy = (0..wire.len(), 1u8..=255);
    let mut runner = TestRunner::new(Config::with_cases(512));
    runner
        .run(&strategy, |(position, xor)| {
            let mut mutated = wire.clone();
            mutated[position] ^= xor;
            let mut directory = federation.directory();
            let verdict = directory.ingest(&mutated, Source::Local, NOW);
            prop_assert!(
                !matches!(verdict, Verdict::Accepted { .. }),
                "{:?}",
                verdict
            );
            prop_assert!(directory.is_empty());
            Ok(())
        })
        .unwrap();
}

#[test]
fn raw_signed_bytes_helper_matches_the_signer() {
    // Guards the helpers above: well-formed bytes signed by hand are accepted.
    let federation = Federation::new(1);
    let record = federation.first(0, &["a"]);
    let bytes = sign_bytes(&federation.members[0], &federation.id, record.encode());
    assert!(matches!(
        ingest(&mut federation.directory(), &bytes),
        Verdict::Accepted { .. }
    ));
}

#[test]
fn a_shared_cache_gives_the_same_verdicts() {
    let federation = Federation::new(2);
    let cache = Arc::new(VerifiedCache::new(16));
    let mut a = federation.directory().with_cache(cache.clone());
    let mut b = federation.directory().with_cache(cache.clone());
    let record = federation.sign(0, federation.first(0, &["a"]));
    assert!(matches!(
        ingest(&mut a, record.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    assert_eq!(cache.len(), 1);
    assert!(matches!(
        ingest(&mut b, record.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    assert_eq!(
        ingest(&mut b, record.wire_bytes()).kind(),
        VerdictKind::Duplicate
    );
    // The cached record is shared, not copied.
    let (x, y) = (
        &a.entry(&federation.node(0)).unwrap().record,
        &b.entry(&federation.node(0)).unwrap().record,
    );
    assert!(std::ptr::eq(x.record(), y.record()));
    // Bad bytes are never cached; a quarantined origin is still ignored on a hit.
    // (The held record with a spoiled signature is only a duplicate: its id is
    // the held one, and it is dropped before any signature check.)
    let mut spoiled = record.wire_bytes().to_vec();
    *spoiled.last_mut().unwrap() ^= 1;
    assert_eq!(ingest(&mut a, &spoiled).kind(), VerdictKind::Duplicate);
    let next = federation.next(0, &record, &["c"], 1);
    let mut bad = next.wire_bytes().to_vec();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(ingest(&mut a, &bad), Verdict::Rejected(_)));
    assert_eq!(cache.len(), 1);
    let fork = federation.sign(0, federation.first(0, &["b"]));
    assert!(matches!(
        ingest(&mut b, fork.wire_bytes()),
        Verdict::Equivocation(_)
    ));
    assert!(matches!(
        ingest(&mut b, record.wire_bytes()),
        Verdict::Ignored(Ignored::Quarantined(_))
    ));
}

#[test]
fn records_dropped_anyway_are_dropped_before_their_signature_is_checked() {
    let federation = Federation::new(2);
    let mut directory = federation.directory();
    let held = federation.sign(0, federation.first(0, &["a"]));
    assert!(matches!(
        ingest(&mut directory, held.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    let spoil = |record: &VerifiedRecord| {
        let mut bytes = record.wire_bytes().to_vec();
        *bytes.last_mut().unwrap() ^= 1;
        bytes
    };
    // Each of these carries a broken signature, yet gets the cheap verdict: the
    // signature was never looked at.
    let mut expired = federation.first(1, &["x"]);
    expired.issued_at_ms = NOW - 10_000;
    expired.expires_at_ms = NOW - 1;
    let expired = federation.sign(1, expired);
    assert_eq!(
        ingest(&mut directory, &spoil(&expired)).kind(),
        VerdictKind::Expired
    );
    let mut future = federation.first(1, &["x"]);
    future.issued_at_ms = NOW + 3_600_000;
    future.expires_at_ms = NOW + 7_200_000;
    let future = federation.sign(1, future);
    assert_eq!(
        ingest(&mut directory, &spoil(&future)).kind(),
        VerdictKind::FutureDated
    );
    let newer = federation.next(0, &held, &["b"], 1);
    assert!(matches!(
        ingest(&mut directory, newer.wire_bytes()),
        Verdict::Accepted { .. }
    ));
    assert_eq!(
        ingest(&mut directory, &spoil(&held)).kind(),
        VerdictKind::Stale
    );
    assert_eq!(
        ingest(&mut directory, &spoil(&newer)).kind(),
        VerdictKind::Duplicate
    );
    // A fresh record with a broken signature is still refused and blamed.
    let third = federation.next(0, &newer, &["c"], 2);
    assert!(matches!(
        rejection(ingest(&mut directory, &spoil(&third))),
        Rejection::BadSignature(_)
    ));
}

/// The origin whose signature a `BadSignature` rejection says did not verify.
fn signature_refused(rejection: Rejection) -> NodeId {
    match rejection {
        Rejection::BadSignature(record) => record.origin,
        other => panic!("not a bad signature: {other:?}"),
    }
}
