use std::collections::BTreeMap;

use proptest::prelude::*;
use tidings_keys::{FederationId, Identity, NodeId};

use super::*;

/// A change to a record that should make it invalid in one field.
type Mutation = Box<dyn Fn(&mut Record)>;
use crate::proto::testkit::{sign_unchecked, Federation, NOW};

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,20}"
}

fn arbitrary_specialist() -> impl Strategy<Value = Specialist> {
    (
        name(),
        proptest::collection::btree_set("[a-z0-9:/+-]{1,12}", 0..6),
        "https?://[a-z0-9.]{1,16}(/[a-z0-9]{0,8})?",
        proptest::collection::btree_map(name(), "[ -~]{0,24}", 0..4),
    )
        .prop_map(|(name, capabilities, endpoint, meta)| Specialist {
            name,
            capabilities: capabilities.into_iter().collect(),
            endpoint,
            meta,
        })
}

prop_compose! {
    fn arbitrary_record()(
        origin in proptest::array::uniform32(any::<u8>()),
        seq in 1u64..u64::MAX,
        prev in proptest::array::uniform32(1u8..),
        issued_at_ms in 0u64..(u64::MAX / 2),
        ttl in 1u64..MAX_TTL_MS,
        addrs in proptest::collection::vec("[a-z0-9.:]{1,24}", 0..4),
        specialists in proptest::collection::vec(arbitrary_specialist(), 0..6),
    ) -> Record {
        let by_name: BTreeMap<String, Specialist> =
            specialists.into_iter().map(|s| (s.name.clone(), s)).collect();
        Record {
            version: RECORD_VERSION,
            federation: FederationId::from_name("prop"),
            origin: NodeId::from_bytes(origin),
            seq,
            prev: if seq == 1 { RecordId::ZERO } else { RecordId(prev) },
            issued_at_ms,
            expires_at_ms: issued_at_ms + ttl,
            addrs,
            specialists: by_name.into_values().collect(),
        }
    }
}

proptest! {
    #[test]
    fn encode_decode_round_trip(record in arbitrary_record()) {
        let bytes = record.encode();
        prop_assert_eq!(Record::decode(&bytes).unwrap(), record);
    }

    #[test]
    fn signed_record_round_trip(record in arbitrary_record(), signature in proptest::collection::vec(any::<u8>(), 64)) {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&signature);
        let signed = SignedRecord::new(record.encode(), Signature(sig));
        prop_assert_eq!(SignedRecord::decode(&signed.encode()).unwrap(), signed);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Record::decode(&bytes);
        let _ = SignedRecord::decode(&bytes);
        let _ = UnverifiedRecord::parse(&bytes, None);
    }
}

#[test]
fn sign_then_verify() {
    let federation = Federation::new(1);
    let record = federation.sign(0, federation.first(0, &["translator", "ocr"]));
    let bytes = record.wire_bytes().to_vec();
    let again = VerifiedRecord::from_bytes(&bytes, Some(&federation.id)).unwrap();
    assert_eq!(again.id(), record.id());
    assert_eq!(again.record().specialists[0].name, "ocr", "sorted by name");
    assert_eq!(record.id(), RecordId::of(record.signed().record_bytes()));
}

#[test]
fn signing_refuses_what_peers_would_refuse() {
    let federation = Federation::new(1);
    let mut record = federation.first(0, &["ok"]);
    record.specialists[0].name = "bad name".into();
    assert!(matches!(
        VerifiedRecord::sign(&federation.members[0], record),
        Err(RecordError::Malformed(DecodeError::Invalid {
            field: Field::Name,
            ..
        }))
    ));
    let mut duplicate = federation.first(0, &["same", "same"]);
    duplicate.normalize();
    assert!(matches!(
        VerifiedRecord::sign(&federation.members[0], duplicate),
        Err(RecordError::Malformed(DecodeError::NotSorted {
            field: Field::Specialists
        }))
    ));
}

#[test]
fn next_record_links_to_the_previous_one() {
    let federation = Federation::new(1);
    let first = federation.sign(0, federation.first(0, &["a"]));
    let second = federation.next(0, &first, &["a", "b"], 1000);
    assert_eq!(second.seq(), 2);
    assert_eq!(second.record().prev, first.id());
    assert_eq!(second.record().issued_at_ms, NOW + 1000);
}

fn decode_error(record: &Record) -> DecodeError {
    Record::decode(&postcard::to_allocvec(record).unwrap()).unwrap_err()
}

#[test]
fn non_canonical_forms_are_refused() {
    let federation = Federation::new(1);
    let base = federation.first(0, &["a", "b"]);

    let mut unsorted = base.clone();
    unsorted.specialists.reverse();
    assert_eq!(
        decode_error(&unsorted),
        DecodeError::NotSorted {
            field: Field::Specialists
        }
    );

    let mut caps = base.clone();
    caps.specialists[0].capabilities.reverse();
    assert_eq!(
        decode_error(&caps),
        DecodeError::NotSorted {
            field: Field::Capabilities
        }
    );

    let mut repeated_cap = base.clone();
    repeated_cap.specialists[0].capabilities = vec!["x".into(), "x".into()];
    assert_eq!(
        decode_error(&repeated_cap),
        DecodeError::NotSorted {
            field: Field::Capabilities
        }
    );

    // An overlong varint for seq (1 written as 0x81 0x00) changes nothing but bytes.
    let mut bytes = base.encode();
    let seq_at = 1 + 32 + 32;
    assert_eq!(bytes[seq_at], 1);
    bytes.splice(seq_at..seq_at + 1, [0x81, 0x00]);
    assert_eq!(Record::decode(&bytes), Err(DecodeError::NonCanonicalVarint));

    let mut trailing = base.encode();
    trailing.push(0);
    assert_eq!(
        Record::decode(&trailing),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
}

#[test]
fn field_rules_are_enforced() {
    let federation = Federation::new(1);
    let base = federation.first(0, &["a"]);
    let cases: Vec<(Mutation, Field)> = vec![
        (Box::new(|r| r.seq = 0), Field::Seq),
        (Box::new(|r| r.prev = RecordId([1; 32])), Field::Prev),
        (
            Box::new(|r| r.expires_at_ms = r.issued_at_ms),
            Field::Lifetime,
        ),
        (
            Box::new(|r| r.specialists[0].name = String::new()),
            Field::Name,
        ),
        (
            Box::new(|r| r.specialists[0].name = "-x".into()),
            Field::Name,
        ),
        (
            Box::new(|r| r.specialists[0].endpoint = "no-scheme".into()),
            Field::Endpoint,
        ),
        (
            Box::new(|r| r.specialists[0].endpoint = "http://a b".into()),
            Field::Endpoint,
        ),
        (
            Box::new(|r| r.specialists[0].endpoint = "file:///etc/passwd".into()),
            Field::Endpoint,
        ),
        (
            Box::new(|r| r.specialists[0].endpoint = "javascript://x".into()),
            Field::Endpoint,
        ),
        (
            Box::new(|r| r.specialists[0].endpoint = "https://user@/path".into()),
            Field::Endpoint,
        ),
        (
            Box::new(|r| r.specialists[0].capabilities = vec!["a b".into()]),
            Field::Capability,
        ),
        (Box::new(|r| r.addrs = vec![String::new()]), Field::Addr),
        (
            Box::new(|r| {
                r.specialists[0]
                    .meta
                    .insert("k".into(), "line\nbreak".into());
            }),
            Field::MetaValue,
        ),
    ];
    for (index, (mutate, field)) in cases.into_iter().enumerate() {
        let mut record = base.clone();
        mutate(&mut record);
        match decode_error(&record) {
            DecodeError::Invalid { field: found, .. } => assert_eq!(found, field, "case {index}"),
            other => panic!("case {index}: expected Invalid({field}), got {other:?}"),
        }
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    let federation = Federation::new(1);
    let record = federation.first(0, &["abc"]);
    let mut bytes = record.encode();
    let at = bytes.windows(3).position(|w| w == b"abc").unwrap();
    bytes[at + 1] = 0xff;
    assert_eq!(
        Record::decode(&bytes),
        Err(DecodeError::InvalidUtf8 { field: Field::Name })
    );
}

#[test]
fn version_and_federation_come_from_the_header() {
    let federation = Federation::new(1);
    let identity = &federation.members[0];
    let mut record = federation.first(0, &["a"]);
    record.version = 2;
    let bytes = sign_unchecked(identity, &record);
    assert_eq!(
        UnverifiedRecord::parse(&bytes, Some(&federation.id)).unwrap_err(),
        RecordError::UnsupportedVersion(2)
    );
    let other = FederationId::from_name("elsewhere");
    assert!(matches!(
        UnverifiedRecord::parse(&bytes, Some(&other)).unwrap_err(),
        RecordError::WrongFederation { .. }
    ));
}

#[test]
fn limits_name_the_field() {
    let federation = Federation::new(1);
    let identity = Identity::from_seed(&[1; 32]);
    let names: Vec<String> = (0..=MAX_SPECIALISTS).map(|i| format!("s{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut record = federation.first(0, &refs);
    record.normalize();
    let bytes = sign_unchecked(&identity, &record);
    assert!(matches!(
        UnverifiedRecord::parse(&bytes, None),
        Err(RecordError::Malformed(DecodeError::TooMany {
            field: Field::Specialists,
            ..
        }))
    ));
}

#[test]
fn a_recovery_lands_above_every_record_signed_before_it() {
    use crate::proto::limits::RECOVERY_SEQ_GAP;
    let t0 = 1_704_067_200_000;
    // Ordinary records 1..=5, then the disk is lost: the jump leaves them behind.
    let first = recovery_seq(5, t0, 0);
    assert!(first > 5 + RECOVERY_SEQ_GAP);
    // Lost again five seconds later; peers return the jumped record.
    let second = recovery_seq(first, t0 + 5_000, 0);
    assert!(second > first);
    // The node signs one more, then loses its disk a third time, and this time
    // its peers only have seq 5: it still lands above all it signed. (Adding the
    // gap to what was found jumped the second recovery ahead of the line, and
    // this one below what the second had signed.)
    let third = recovery_seq(5, t0 + 10_000, 0);
    assert!(third > second + 1, "{third} <= {}", second + 1);
    // Nothing found: on the line.
    assert_eq!(
        recovery_seq(0, t0, 0),
        t0 * SEQ_LINE_PER_MS + RECOVERY_SEQ_GAP
    );
    // A pardon's floor above the line wins; a second later, with nothing of it
    // returned, the line has passed a floor two gaps above it.
    let line = t0 * SEQ_LINE_PER_MS + RECOVERY_SEQ_GAP;
    let pardoned = recovery_seq(5, t0, line + 2 * RECOVERY_SEQ_GAP);
    assert_eq!(pardoned, line + 2 * RECOVERY_SEQ_GAP);
    assert!(recovery_seq(5, t0 + 3_000, 0) > pardoned + 1_000);
    // A jump of an earlier version (the time in milliseconds plus a gap or
    // two) is far below the line.
    assert!(recovery_seq(t0 + 2 * RECOVERY_SEQ_GAP, t0, 0) > t0 + 3 * RECOVERY_SEQ_GAP);
    // A chain found above the line (a clock set back) jumps the gap above it.
    let ahead = line + 10 * RECOVERY_SEQ_GAP;
    assert_eq!(recovery_seq(ahead, t0, 0), ahead + RECOVERY_SEQ_GAP);
    // No overflow at the top.
    assert_eq!(recovery_seq(u64::MAX, u64::MAX, 0), u64::MAX);
}
