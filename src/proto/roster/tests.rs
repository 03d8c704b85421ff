//! Every rule of roster operations, and every bad input the issue lists, each
//! with its typed outcome.

use tidings_keys::{FederationId, Identity, NodeId, Roster, Signature};

use super::*;
use crate::proto::limits::{MAX_PROPOSALS_PER_MEMBER, MAX_ROSTER_OP_BYTES};
use crate::proto::testkit::NOW;

const DAY: u64 = 24 * 60 * 60 * 1000;

struct Fed {
    id: FederationId,
    keys: Vec<Identity>,
    genesis: Genesis,
}

fn key(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

/// `n` members with seeds 1..=n and the default threshold.
fn fed(n: u8) -> Fed {
    let keys: Vec<Identity> = (1..=n).map(key).collect();
    let mut roster = Roster::new();
    for (index, identity) in keys.iter().enumerate() {
        roster.insert(identity.node_id(), Some(format!("m{index}")));
    }
    let id = FederationId::from_name("governed");
    Fed {
        genesis: Genesis::from_roster(id, &roster).unwrap(),
        keys,
        id,
    }
}

impl Fed {
    fn state(&self) -> RosterState {
        RosterState::from_genesis(&self.genesis)
    }

    fn member(&self, index: usize) -> NodeId {
        self.keys[index].node_id()
    }

    /// `action` on `state`, proposed by member 0 and approved by `signers`,
    /// countersigned by `new_key` if given.
    fn op(
        &self,
        state: &RosterState,
        action: Action,
        signers: &[usize],
        new_key: Option<&Identity>,
    ) -> SignedOp {
        let body = state.propose(self.keys[signers[0]].node_id(), action.clone(), NOW, DAY);
        let mut approvals: Vec<Approval> = signers
            .iter()
            .map(|index| approve(&self.keys[*index], &body))
            .collect();
        approvals.sort_by_key(|approval| approval.signer);
        SignedOp {
            countersignature: new_key.map(|new_key| countersign(new_key, &self.id, &action)),
            approvals,
            body,
        }
    }
}

fn complete(state: &RosterState, op: &SignedOp) -> Result<VerifiedOp, RosterError> {
    state.check(op, Need::Complete, None)
}

#[test]
fn default_threshold_is_two_thirds_plus_one() {
    assert_eq!(Threshold::TwoThirds.of(3), 3);
    assert_eq!(Threshold::TwoThirds.of(4), 3);
    assert_eq!(Threshold::TwoThirds.of(5), 4);
    assert_eq!(Threshold::TwoThirds.of(6), 5);
    assert_eq!(Threshold::TwoThirds.of(1000), 667);
    assert!(
        Threshold::Fixed(2).unusable_for(4).is_some(),
        "not a majority"
    );
    assert!(Threshold::Fixed(3).unusable_for(4).is_none());
    assert!(Threshold::Fixed(5).unusable_for(4).is_some(), "more than n");
    assert!(Threshold::Fixed(0).unusable_for(1).is_some());
}

#[test]
fn each_action_applies_with_the_threshold() {
    let fed = fed(5);
    let mut state = fed.state();
    assert_eq!(state.needed(), 4);
    let newcomer = key(50);
    let add = fed.op(
        &state,
        Action::Add {
            member: newcomer.node_id(),
            label: Some("frank".into()),
        },
        &[0, 1, 2, 3],
        Some(&newcomer),
    );
    state = state.apply(&complete(&state, &add).unwrap()).unwrap();
    assert_eq!(state.epoch(), 1);
    assert_eq!(state.head(), add.id());
    assert!(state.members().contains(&newcomer.node_id()));
    assert_eq!(state.members().label(&newcomer.node_id()), Some("frank"));
    assert_eq!(state.needed(), 5, "six members need five");

    let rotated = key(51);
    let rotate = fed.op(
        &state,
        Action::Rotate {
            from: fed.member(4),
            to: rotated.node_id(),
        },
        &[0, 1, 2, 3, 4],
        Some(&rotated),
    );
    state = state.apply(&complete(&state, &rotate).unwrap()).unwrap();
    assert!(!state.members().contains(&fed.member(4)));
    assert_eq!(state.members().label(&rotated.node_id()), Some("m4"));

    let mut remove = fed.op(
        &state,
        Action::Remove {
            member: newcomer.node_id(),
        },
        &[0, 1, 2, 3],
        None,
    );
    assert!(matches!(
        complete(&state, &remove),
        Err(RosterError::TooFewApprovals {
            needed: 5,
            found: 4
        })
    ));
    remove.approvals.push(approve(&rotated, &remove.body));
    remove.approvals.sort_by_key(|a| a.signer);
    state = state.apply(&complete(&state, &remove).unwrap()).unwrap();
    assert_eq!(state.members().len(), 5);

    let relabel = fed.op(
        &state,
        Action::Relabel {
            member: fed.member(0),
            label: Some("alice".into()),
        },
        &[0, 1, 2, 3],
        None,
    );
    state = state.apply(&complete(&state, &relabel).unwrap()).unwrap();
    assert_eq!(state.members().label(&fed.member(0)), Some("alice"));

    let threshold = fed.op(
        &state,
        Action::Threshold(Threshold::Fixed(3)),
        &[0, 1, 2, 3],
        None,
    );
    state = state.apply(&complete(&state, &threshold).unwrap()).unwrap();
    assert_eq!(state.needed(), 3);

    let pardon = fed.op(
        &state,
        Action::Pardon {
            origin: fed.member(2),
            above_seq: 9,
        },
        &[0, 1, 3],
        None,
    );
    state = state.apply(&complete(&state, &pardon).unwrap()).unwrap();
    assert_eq!(state.epoch(), 6);

    // A pardon so high that the chain would run out of seqs is refused.
    let too_high = fed.op(
        &state,
        Action::Pardon {
            origin: fed.member(2),
            above_seq: MAX_PARDON_SEQ + 1,
        },
        &[0, 1, 3],
        None,
    );
    assert_eq!(
        complete(&state, &too_high),
        Err(RosterError::PardonTooHigh(MAX_PARDON_SEQ + 1))
    );
}

#[test]
fn bad_operations_get_typed_errors() {
    let fed = fed(4);
    let state = fed.state();
    let needed = state.needed();
    assert_eq!(needed, 3);
    let remove = |signers: &[usize]| {
        fed.op(
            &state,
            Action::Remove {
                member: fed.member(3),
            },
            signers,
            None,
        )
    };

    // k - 1 signatures: a proposal, not an operation.
    let short = remove(&[0, 1]);
    assert_eq!(
        complete(&state, &short),
        Err(RosterError::TooFewApprovals {
            needed: 3,
            found: 2
        })
    );
    assert!(state
        .check(&short, Need::Proposal { now_ms: NOW }, None)
        .is_ok());

    // k signatures from k - 1 distinct keys.
    let mut doubled = remove(&[0, 1]);
    doubled.approvals.push(doubled.approvals[1]);
    doubled.approvals.sort_by_key(|a| a.signer);
    assert!(matches!(
        complete(&state, &doubled),
        Err(RosterError::DuplicateApproval(_))
    ));

    // A signer not in the previous state.
    let mut stranger = remove(&[0, 1]);
    stranger.approvals.push(approve(&key(60), &stranger.body));
    assert_eq!(
        complete(&state, &stranger),
        Err(RosterError::NotAMember(key(60).node_id()))
    );

    // A forged approval.
    let mut forged = remove(&[0, 1, 2]);
    forged.approvals[0].signature = Signature([7; 64]);
    assert!(matches!(
        complete(&state, &forged),
        Err(RosterError::BadApproval { .. })
    ));

    // The proposer did not approve.
    let mut orphan = remove(&[0, 1, 2]);
    orphan.body.proposer = fed.member(3);
    let body = orphan.body.clone();
    orphan.approvals = [0, 1, 2]
        .iter()
        .map(|i| approve(&fed.keys[*i], &body))
        .collect();
    orphan.approvals.sort_by_key(|a| a.signer);
    assert_eq!(
        complete(&state, &orphan),
        Err(RosterError::ProposerDidNotApprove(fed.member(3)))
    );

    // Wrong prev, wrong epoch: approvals cover the body, so re-sign.
    let resign = |mut op: SignedOp| {
        let body = op.body.clone();
        op.approvals = [0, 1, 2]
            .iter()
            .map(|i| approve(&fed.keys[*i], &body))
            .collect();
        op.approvals.sort_by_key(|a| a.signer);
        op
    };
    let mut wrong_prev = remove(&[0, 1, 2]);
    wrong_prev.body.prev = RosterHash([9; 32]);
    assert!(matches!(
        complete(&state, &resign(wrong_prev)),
        Err(RosterError::WrongPrev { .. })
    ));
    let mut wrong_epoch = remove(&[0, 1, 2]);
    wrong_epoch.body.epoch = 2;
    assert_eq!(
        complete(&state, &resign(wrong_epoch)),
        Err(RosterError::WrongEpoch {
            expected: 1,
            found: 2
        })
    );
    let mut other_federation = remove(&[0, 1, 2]);
    other_federation.body.federation = FederationId::from_name("other");
    assert_eq!(
        complete(&state, &resign(other_federation)),
        Err(RosterError::WrongFederation)
    );

    // An approval made for another body does not carry over.
    let mut moved = remove(&[0, 1, 2]);
    moved.body.expires_at_ms += 1;
    assert!(matches!(
        complete(&state, &moved),
        Err(RosterError::BadApproval { .. })
    ));

    // Add without (or with a wrong) countersignature.
    let newcomer = key(61);
    let add = Action::Add {
        member: newcomer.node_id(),
        label: None,
    };
    assert_eq!(
        complete(&state, &fed.op(&state, add.clone(), &[0, 1, 2], None)),
        Err(RosterError::MissingCountersignature(newcomer.node_id()))
    );
    assert!(matches!(
        complete(
            &state,
            &fed.op(&state, add.clone(), &[0, 1, 2], Some(&key(62)))
        ),
        Err(RosterError::BadCountersignature { .. })
    ));
    assert!(complete(&state, &fed.op(&state, add, &[0, 1, 2], Some(&newcomer))).is_ok());
    assert_eq!(
        complete(
            &state,
            &fed.op(
                &state,
                Action::Remove {
                    member: fed.member(3)
                },
                &[0, 1, 2],
                Some(&newcomer)
            )
        ),
        Err(RosterError::UnexpectedCountersignature("remove"))
    );

    // Rotation to a key already on the roster; add of a member.
    let to = fed.member(1);
    assert_eq!(
        complete(
            &state,
            &fed.op(
                &state,
                Action::Rotate {
                    from: fed.member(3),
                    to
                },
                &[0, 1, 2],
                Some(&fed.keys[1])
            )
        ),
        Err(RosterError::AlreadyAMember(to))
    );
    assert_eq!(
        complete(
            &state,
            &fed.op(
                &state,
                Action::Add {
                    member: to,
                    label: None
                },
                &[0, 1, 2],
                Some(&fed.keys[1])
            )
        ),
        Err(RosterError::AlreadyAMember(to))
    );
    assert_eq!(
        complete(
            &state,
            &fed.op(
                &state,
                Action::Remove {
                    member: key(63).node_id()
                },
                &[0, 1, 2],
                None
            )
        ),
        Err(RosterError::NoSuchMember(key(63).node_id()))
    );

    // An expired proposal; a lifetime over the limit.
    let late = remove(&[0]);
    assert!(matches!(
        state.check(
            &late,
            Need::Proposal {
                now_ms: NOW + DAY + 1
            },
            None
        ),
        Err(RosterError::Expired { .. })
    ));
    let mut forever = remove(&[0, 1, 2]);
    forever.body.expires_at_ms = NOW + 8 * 7 * DAY;
    assert!(matches!(
        complete(&state, &resign(forever)),
        Err(RosterError::BadLifetime { .. })
    ));

    // A label with a control character.
    assert!(matches!(
        complete(
            &state,
            &fed.op(
                &state,
                Action::Relabel {
                    member: fed.member(0),
                    label: Some("a\nb".into())
                },
                &[0, 1, 2],
                None
            )
        ),
        Err(RosterError::BadLabel { .. })
    ));
}

#[test]
fn removing_below_the_threshold_is_refused() {
    let fed = fed(3);
    let mut roster = (*fed.state().members().clone()).clone();
    roster.set_threshold(Some(3));
    let genesis = Genesis::from_roster(fed.id, &roster).unwrap();
    let state = RosterState::from_genesis(&genesis);
    let op = fed.op(
        &state,
        Action::Remove {
            member: fed.member(2),
        },
        &[0, 1, 2],
        None,
    );
    assert!(matches!(
        complete(&state, &op),
        Err(RosterError::ThresholdUnusable { members: 2, .. })
    ));
    // A threshold that is not a majority.
    let op = fed.op(
        &state,
        Action::Threshold(Threshold::Fixed(1)),
        &[0, 1, 2],
        None,
    );
    assert!(matches!(
        complete(&state, &op),
        Err(RosterError::ThresholdUnusable { .. })
    ));
    // With the default rule, the last member cannot be removed.
    let one = fed_of(&[1]);
    let state = one.state();
    let op = one.op(
        &state,
        Action::Remove {
            member: one.member(0),
        },
        &[0],
        None,
    );
    assert!(matches!(
        complete(&state, &op),
        Err(RosterError::ThresholdUnusable { members: 0, .. })
    ));
}

fn fed_of(seeds: &[u8]) -> Fed {
    let keys: Vec<Identity> = seeds.iter().copied().map(key).collect();
    let roster: Roster = keys.iter().map(Identity::node_id).collect();
    let id = FederationId::from_name("governed");
    Fed {
        genesis: Genesis::from_roster(id, &roster).unwrap(),
        keys,
        id,
    }
}

#[test]
fn proposals_merge_and_apply_at_the_threshold() {
    let fed = fed(4);
    let mut ledger = Ledger::new(fed.genesis.clone());
    let state = fed.state();
    let action = Action::Remove {
        member: fed.member(3),
    };
    let (proposal, received) = ledger
        .propose(&fed.keys[0], action, None, NOW, DAY)
        .unwrap();
    assert_eq!(
        received,
        Received::Proposal {
            id: proposal.id(),
            approvals: 1,
            needed: 3
        }
    );
    // Another copy with another approval merges.
    let mut copy = proposal.clone();
    copy.approvals = vec![approve(&fed.keys[1], &proposal.body)];
    // A copy without the proposer's approval is still the same operation.
    assert!(matches!(
        ledger.receive(&copy, NOW),
        Received::Proposal { approvals: 2, .. }
    ));
    assert_eq!(ledger.receive(&copy, NOW), Received::Known);
    // A forged approval in a copy is refused, and not merged.
    let mut forged = proposal.clone();
    forged.approvals = vec![Approval {
        signer: fed.member(2),
        signature: Signature([1; 64]),
    }];
    assert!(matches!(
        ledger.receive(&forged, NOW),
        Received::Refused(RosterError::BadApproval { .. })
    ));
    assert_eq!(ledger.proposal(&proposal.id()).unwrap().approvals.len(), 2);
    // This node (member 0) cannot approve twice.
    assert_eq!(
        ledger
            .approve(&fed.keys[0], &proposal.id(), NOW)
            .unwrap_err(),
        SignError::AlreadyApproved(proposal.id())
    );
    // The third approval applies it.
    let mut third = proposal.clone();
    third.approvals = vec![approve(&fed.keys[2], &proposal.body)];
    let received = ledger.receive(&third, NOW);
    assert!(matches!(received, Received::Applied(_)), "{received:?}");
    assert_eq!(ledger.state().epoch(), 1);
    assert!(!ledger.state().members().contains(&fed.member(3)));
    assert_eq!(ledger.pending().count(), 0);
    // Replays of the applied operation, complete or not, are nothing new.
    let applied = ledger.chain()[0].op().clone();
    assert_eq!(ledger.receive(&applied, NOW + 10 * DAY), Received::Known);
    assert_eq!(ledger.receive(&proposal, NOW), Received::Known);
    // A losing proposal for the past epoch is stale.
    let loser = fed.op(
        &state,
        Action::Relabel {
            member: fed.member(0),
            label: None,
        },
        &[1],
        None,
    );
    assert_eq!(ledger.receive(&loser, NOW), Received::Stale);
    // An operation two epochs ahead means this node is behind.
    let mut ahead = loser.clone();
    ahead.body.epoch = 3;
    assert_eq!(ledger.receive(&ahead, NOW), Received::Ahead { epoch: 3 });
    // The chain verifies offline from its genesis.
    let ops: Vec<SignedOp> = ledger.chain().iter().map(|op| op.op().clone()).collect();
    assert_eq!(
        verify_chain(&fed.genesis, &ops).unwrap().head(),
        ledger.state().head()
    );
    let _ = state;
}

#[test]
fn an_honest_member_never_signs_two_operations_for_one_epoch() {
    let fed = fed(4);
    let mut ledger = Ledger::new(fed.genesis.clone());
    let (first, _) = ledger
        .propose(
            &fed.keys[0],
            Action::Remove {
                member: fed.member(3),
            },
            None,
            NOW,
            DAY,
        )
        .unwrap();
    let second = ledger.propose(
        &fed.keys[0],
        Action::Remove {
            member: fed.member(2),
        },
        None,
        NOW,
        DAY,
    );
    assert_eq!(
        second.unwrap_err(),
        SignError::AlreadySigned {
            epoch: 1,
            other: first.id()
        }
    );
    // Another member's competing proposal arrives; member 0 may not approve it.
    let competing = fed.op(
        &fed.state(),
        Action::Remove {
            member: fed.member(2),
        },
        &[1],
        None,
    );
    assert!(matches!(
        ledger.receive(&competing, NOW),
        Received::Proposal { .. }
    ));
    assert!(matches!(
        ledger.approve(&fed.keys[0], &competing.id(), NOW),
        Err(SignError::AlreadySigned { .. })
    ));
    // The vote survives a restart: it is restored from the store.
    let mut restarted = Ledger::new(fed.genesis.clone());
    for (epoch, id) in ledger.signed() {
        restarted.restore_signed(*epoch, *id);
    }
    restarted.receive(&competing, NOW);
    assert!(matches!(
        restarted.approve(&fed.keys[0], &competing.id(), NOW),
        Err(SignError::AlreadySigned { .. })
    ));
    // An invalid proposal costs no vote.
    let mut fresh = Ledger::new(fed.genesis.clone());
    assert!(matches!(
        fresh.propose(
            &fed.keys[0],
            Action::Remove {
                member: key(70).node_id()
            },
            None,
            NOW,
            DAY
        ),
        Err(SignError::Invalid(RosterError::NoSuchMember(_)))
    ));
    assert!(fresh.signed().is_empty());
    // Approving an expired proposal is refused.
    fresh.receive(&competing, NOW);
    assert!(matches!(
        fresh.approve(&fed.keys[2], &competing.id(), NOW + 2 * DAY),
        Err(SignError::Invalid(RosterError::Expired { .. }))
    ));
}

#[test]
fn two_valid_operations_for_one_epoch_are_a_fork_proof() {
    let fed = fed(4);
    let state = fed.state();
    let mut ledger = Ledger::new(fed.genesis.clone());
    let a = fed.op(
        &state,
        Action::Remove {
            member: fed.member(3),
        },
        &[0, 1, 2],
        None,
    );
    let b = fed.op(
        &state,
        Action::Remove {
            member: fed.member(2),
        },
        &[1, 2, 3],
        None,
    );
    assert!(matches!(ledger.receive(&a, NOW), Received::Applied(_)));
    let Received::Forked(proof) = ledger.receive(&b, NOW) else {
        panic!("not a fork")
    };
    let proof = *proof;
    assert_eq!(proof.epoch(), 1);
    let mut double = proof.double_signers();
    double.sort();
    let mut expected = vec![fed.member(1), fed.member(2)];
    expected.sort();
    assert_eq!(double, expected);
    // The proof checks offline, and roundtrips.
    let decoded = RosterForkProof::decode(&proof.encode()).unwrap();
    assert_eq!(decoded, proof);
    assert!(decoded.verify(&state, None).is_ok());
    // Roster changes stop.
    let next = fed.op(
        ledger.state(),
        Action::Relabel {
            member: fed.member(0),
            label: None,
        },
        &[0, 1, 2],
        None,
    );
    assert_eq!(ledger.receive(&next, NOW), Received::Frozen);
    assert!(matches!(
        ledger.propose(
            &fed.keys[0],
            Action::Threshold(Threshold::TwoThirds),
            None,
            NOW,
            DAY
        ),
        Err(SignError::Frozen(1))
    ));
    // Tampering with either half breaks the proof.
    let (first, second) = proof.ops();
    let mut tampered = first.clone();
    tampered.approvals.pop();
    assert!(RosterForkProof::new(tampered, second.clone())
        .verify(&state, None)
        .is_err());
    let mut tampered = second.clone();
    tampered.body.issued_at_ms += 1;
    assert!(RosterForkProof::new(first.clone(), tampered)
        .verify(&state, None)
        .is_err());
    assert!(RosterForkProof::new(first.clone(), first.clone())
        .verify(&state, None)
        .is_err());
    // Out of order encodings do not decode.
    let mut swapped = second.encode();
    swapped.extend_from_slice(&first.encode());
    assert!(RosterForkProof::decode(&swapped).is_err());
}

#[test]
fn a_proposal_flood_from_one_member_is_bounded() {
    let fed = fed(4);
    let state = fed.state();
    let mut ledger = Ledger::new(fed.genesis.clone());
    for index in 0..MAX_PROPOSALS_PER_MEMBER + 3 {
        let op = fed.op(
            &state,
            Action::Relabel {
                member: fed.member(0),
                label: Some(format!("spam{index}")),
            },
            &[1],
            None,
        );
        let received = ledger.receive(&op, NOW);
        if index < MAX_PROPOSALS_PER_MEMBER {
            assert!(
                matches!(received, Received::Proposal { .. }),
                "{received:?}"
            );
        } else {
            assert_eq!(received, Received::TooManyProposals(fed.member(1)));
        }
    }
    // Others may still propose; expiry frees the flooder's slots.
    let other = fed.op(&state, Action::Threshold(Threshold::Fixed(4)), &[2], None);
    assert!(matches!(
        ledger.receive(&other, NOW),
        Received::Proposal { .. }
    ));
    assert_eq!(
        ledger.expire(NOW + DAY + 1).len(),
        MAX_PROPOSALS_PER_MEMBER + 1
    );
}

#[test]
fn encodings_roundtrip_and_bad_bytes_are_typed_errors() {
    let fed = fed(4);
    let state = fed.state();
    let newcomer = key(80);
    let op = fed.op(
        &state,
        Action::Add {
            member: newcomer.node_id(),
            label: Some("new".into()),
        },
        &[0, 1, 2],
        Some(&newcomer),
    );
    let bytes = op.encode();
    assert_eq!(SignedOp::decode(&bytes).unwrap(), op);
    assert_eq!(Genesis::decode(&fed.genesis.encode()).unwrap(), fed.genesis);
    // Oversized.
    assert!(matches!(
        SignedOp::decode(&vec![0; MAX_ROSTER_OP_BYTES + 1]),
        Err(DecodeError::Oversized { .. })
    ));
    // Truncated at every length, and trailing bytes.
    for cut in 0..bytes.len() {
        assert!(SignedOp::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        SignedOp::decode(&long),
        Err(DecodeError::TrailingBytes { .. })
    ));
    // Approvals out of order.
    let mut unsorted = op.clone();
    unsorted.approvals.reverse();
    assert!(matches!(
        SignedOp::decode(&unsorted.encode()),
        Err(DecodeError::NotSorted { .. })
    ));
    // A count claiming more approvals than allowed is refused before allocating.
    let mut huge = op.clone();
    huge.approvals.clear();
    let mut bytes_huge = huge.encode();
    bytes_huge.pop();
    bytes_huge.extend_from_slice(&[0xff, 0xff, 0x03]);
    assert!(matches!(
        SignedOp::decode(&bytes_huge),
        Err(DecodeError::TooMany { .. })
    ));
    // Every single-byte change either fails to decode or fails the checks.
    for index in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[index] ^= 0x01;
        if let Ok(decoded) = SignedOp::decode(&changed) {
            assert!(
                complete(&state, &decoded).is_err(),
                "a flipped bit at {index} still verifies"
            );
        }
    }
    // Genesis: unsorted members, a weak key, an unusable threshold.
    let mut genesis = fed.genesis.encode();
    let tail = genesis.len() - 1;
    genesis[tail] ^= 0xff;
    assert!(Genesis::decode(&genesis).is_err());
    let mut weak = Roster::new();
    weak.insert(NodeId::from_bytes([0; 32]), None);
    let weak = Genesis {
        federation: fed.id,
        threshold: Threshold::TwoThirds,
        members: std::sync::Arc::new(weak),
    };
    assert!(Genesis::decode(&weak.encode()).is_err());
    let mut bad = fed.genesis.clone();
    bad.threshold = Threshold::Fixed(1);
    assert!(matches!(
        Genesis::decode(&bad.encode()),
        Err(GenesisError::Threshold { .. })
    ));
}

#[test]
fn verify_chain_names_the_first_invalid_operation() {
    let fed = fed(4);
    let mut ledger = Ledger::new(fed.genesis.clone());
    for label in ["a", "b", "c"] {
        let op = fed.op(
            ledger.state(),
            Action::Relabel {
                member: fed.member(0),
                label: Some(label.into()),
            },
            &[0, 1, 2],
            None,
        );
        assert!(matches!(ledger.receive(&op, NOW), Received::Applied(_)));
    }
    let ops: Vec<SignedOp> = ledger.chain().iter().map(|op| op.op().clone()).collect();
    assert_eq!(verify_chain(&fed.genesis, &ops).unwrap().epoch(), 3);

    // Drop an approval of the second: below the threshold.
    let mut short = ops.clone();
    short[1].approvals.pop();
    let error = verify_chain(&fed.genesis, &short).unwrap_err();
    assert_eq!((error.index, error.epoch), (2, 2));
    // Change the third's action: its approvals no longer verify.
    let mut changed = ops.clone();
    changed[2].body.action = Action::Relabel {
        member: fed.member(0),
        label: Some("evil".into()),
    };
    let error = verify_chain(&fed.genesis, &changed).unwrap_err();
    assert_eq!(error.index, 3);
    assert!(matches!(error.error, RosterError::BadApproval { .. }));
    // Remove the first: the second no longer follows the genesis.
    let error = verify_chain(&fed.genesis, &ops[1..]).unwrap_err();
    assert_eq!(error.index, 1);
    assert!(matches!(error.error, RosterError::WrongEpoch { .. }));
    // Another genesis: nothing follows.
    let other = fed_of(&[1, 2, 3, 4, 5]);
    assert!(matches!(
        verify_chain(&other.genesis, &ops).unwrap_err().error,
        RosterError::WrongPrev { .. }
    ));
}

use crate::proto::codec::DecodeError;

#[test]
fn a_copy_with_one_forged_approval_neither_merges_nor_blocks_the_threshold() {
    let fed = fed(4);
    let state = fed.state();
    let mut ledger = Ledger::new(fed.genesis.clone());
    let action = Action::Remove {
        member: fed.member(3),
    };
    let proposal = fed.op(&state, action, &[0], None);
    assert!(matches!(
        ledger.receive(&proposal, NOW),
        Received::Proposal { approvals: 1, .. }
    ));
    // Member 1's real approval and a forged one of member 2, in one copy.
    let mut copy = proposal.clone();
    copy.approvals = vec![
        approve(&fed.keys[1], &proposal.body),
        Approval {
            signer: fed.member(2),
            signature: Signature([5; 64]),
        },
    ];
    copy.approvals.sort_by_key(|a| a.signer);
    assert!(matches!(
        ledger.receive(&copy, NOW),
        Received::Refused(RosterError::BadApproval { .. })
    ));
    assert_eq!(
        ledger.proposal(&proposal.id()).unwrap().approvals.len(),
        1,
        "nothing merged"
    );
    // The complete operation, from nodes that applied it, applies here.
    let complete = fed.op(&state, proposal.body.action.clone(), &[0, 1, 2], None);
    let complete = SignedOp {
        body: proposal.body.clone(),
        ..complete
    };
    let complete = SignedOp {
        approvals: {
            let mut a: Vec<Approval> = [0, 1, 2]
                .iter()
                .map(|i| approve(&fed.keys[*i], &complete.body))
                .collect();
            a.sort_by_key(|a| a.signer);
            a
        },
        ..complete
    };
    assert!(matches!(
        ledger.receive(&complete, NOW),
        Received::Applied(_)
    ));
}

#[test]
fn proposals_from_the_future_are_refused_and_each_member_has_its_slots() {
    let fed = fed(4);
    let state = fed.state();
    let mut ledger = Ledger::new(fed.genesis.clone());
    let mut body = state.propose(
        fed.member(1),
        Action::Threshold(Threshold::Fixed(4)),
        u64::MAX - 2 * DAY,
        DAY,
    );
    body.expires_at_ms = body.issued_at_ms + DAY;
    let future = SignedOp {
        approvals: vec![approve(&fed.keys[1], &body)],
        countersignature: None,
        body,
    };
    assert!(matches!(
        ledger.receive(&future, NOW),
        Received::Refused(RosterError::FutureDated { .. })
    ));
    // A refused proposal costs the proposer no vote.
    let mut own = Ledger::new(fed.genesis.clone());
    for index in 0..MAX_PROPOSALS_PER_MEMBER {
        let op = fed.op(
            &state,
            Action::Relabel {
                member: fed.member(0),
                label: Some(format!("x{index}")),
            },
            &[1],
            None,
        );
        own.receive(&op, NOW);
    }
    let refused = own.propose(
        &fed.keys[2],
        Action::Remove {
            member: key(99).node_id(),
        },
        None,
        NOW,
        DAY,
    );
    assert!(refused.is_err());
    assert!(own.signed().is_empty());
    // Member 1 filled its slots; member 2 still proposes.
    assert!(own
        .propose(
            &fed.keys[2],
            Action::Threshold(Threshold::Fixed(4)),
            None,
            NOW,
            DAY
        )
        .is_ok());
}
