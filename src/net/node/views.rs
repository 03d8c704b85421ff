//! Answers to queries, read from the actor's state: lookups and members.

use tidings_keys::NodeId;

use super::actor::Actor;
use super::client::{
    ForkView, FoundSpecialist, Lookup, Member, OpView, ProposalView, Reach, RosterMember,
    RosterView,
};

impl Actor {
    pub(super) fn lookup(&self, query: &Lookup) -> Vec<FoundSpecialist> {
        let directory = self.state.directory();
        let found = match (&query.capability, &query.name) {
            (Some(capability), _) => directory.by_capability(capability),
            (None, Some(name)) => directory.by_name(name),
            (None, None) => directory
                .entries()
                .flat_map(|entry| directory.by_origin(&entry.record.origin()))
                .collect(),
        };
        let connected = self.links.connected();
        found
            .into_iter()
            .filter(|found| {
                query
                    .name
                    .as_ref()
                    .is_none_or(|name| &found.specialist.name == name)
            })
            .map(|found| FoundSpecialist {
                origin: found.origin,
                record: found.record.id(),
                specialist: found.specialist.clone(),
                reach: self.reach(&found.origin, &connected),
            })
            .filter(|found| !query.live || found.reach.connected)
            .collect()
    }

    /// What this node knows of `peer`'s reachability.
    fn reach(&self, peer: &NodeId, connected: &[NodeId]) -> Reach {
        let this_node = *peer == self.state.node_id();
        Reach {
            connected: this_node || connected.contains(peer),
            last_heard_ms: self.heard.get(peer).copied(),
        }
    }

    pub(super) fn members(&self, now: u64) -> Vec<Member> {
        let directory = self.state.directory();
        let connected: Vec<NodeId> = self.links.connected();
        directory
            .roster()
            .iter()
            .map(|(id, label)| {
                let entry = directory.entry(id);
                Member {
                    id: *id,
                    label: label.map(String::from),
                    seq: entry.map(|e| e.record.seq()),
                    record: entry.map(|e| e.record.id()),
                    addrs: entry
                        .map(|e| e.record.record().addrs.clone())
                        .unwrap_or_default(),
                    specialists: entry
                        .map(|e| e.record.record().specialists.len())
                        .unwrap_or(0),
                    quarantined: directory.is_quarantined(id),
                    banned: self.state.is_banned(id, now),
                    connected: connected.contains(id),
                    last_heard_ms: self.heard.get(id).copied(),
                    this_node: *id == self.state.node_id(),
                }
            })
            .collect()
    }

    pub(super) fn roster_view(&self) -> RosterView {
        let ledger = self.state.ledger();
        let state = ledger.state();
        let me = self.state.node_id();
        let votes: Vec<(u64, crate::proto::roster::RosterHash)> =
            ledger.signed().iter().map(|(e, id)| (*e, *id)).collect();
        RosterView {
            federation: state.federation(),
            genesis: state.genesis(),
            epoch: state.epoch(),
            head: state.head(),
            threshold: state.threshold().to_string(),
            needed: state.needed(),
            members: state
                .members()
                .iter()
                .map(|(id, label)| RosterMember {
                    id: *id,
                    label: label.map(String::from),
                })
                .collect(),
            pending: ledger
                .pending()
                .map(|op| ProposalView {
                    approved_here: op.approvals.iter().any(|a| a.signer == me),
                    voted_otherwise: ledger
                        .signed()
                        .get(&op.body.epoch)
                        .is_some_and(|id| *id != op.id()),
                    needed: state.needed(),
                    op: OpView::of(&op),
                })
                .collect(),
            chain: ledger
                .chain()
                .iter()
                .map(|op| OpView::of(op.op()))
                .collect(),
            fork: ledger.fork().map(|proof| {
                let (a, b) = proof.ops();
                ForkView {
                    epoch: proof.epoch(),
                    ops: [a.id(), b.id()],
                    double_signers: proof.double_signers(),
                }
            }),
            votes,
            quarantined: self
                .state
                .directory()
                .quarantined()
                .map(|(origin, proof)| (*origin, proof.highest_seq().unwrap_or(0)))
                .collect(),
        }
    }
}
